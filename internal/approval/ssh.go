package approval

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hiddeco/sshsig"
	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/writ-sec/writ/internal/keys"
)

// SSH signatures (docs/approvals.md, SSH keys): for a key registered as an
// OpenSSH line, an envelope signature's sig is the base64 of the armored
// SSHSIG (OpenSSH's PROTOCOL.sshsig, what `ssh-keygen -Y sign` writes)
// over the DSSE PAE, in namespace SSHNamespace, hashed with SSHHash; its
// keyid is the key's SHA256 fingerprint.

// SSHNamespace is the SSHSIG namespace of writ approvals: a signature made
// for another purpose (git commits are "git", files "file") never counts
// as an approval, and an approval never verifies as anything else.
const SSHNamespace = "writ-approval"

// SSHHash is the hash writ signs with; verification accepts sha256 too,
// which PROTOCOL.sshsig allows.
const SSHHash = sshsig.HashSHA512

// skUserPresent is the user-presence flag (UP) of a FIDO signature: the
// security key was touched (PROTOCOL.u2f).
const skUserPresent = 0x01

// maxSSHAgentWait bounds one exchange with ssh-agent when the context has
// no deadline; a FIDO key waits for its touch, so this is generous.
const maxSSHAgentWait = 2 * time.Minute

// sshSignature is an envelope signature read as an SSHSIG.
type sshSignature struct {
	// armored: sig decodes to an SSH signature (armored, or the bare
	// SSHSIG blob), whether or not it parses.
	armored bool
	sig     *sshsig.Signature
	// fingerprint of the key the SSHSIG names (sig.PublicKey).
	fingerprint string
	// err says why an armored signature cannot be used.
	err error
}

// readSSHSignature looks at an envelope signature's sig: when it decodes
// to an armored SSHSIG, it is parsed once here (through sshsig), and
// verify checks it for SSH keys.
func readSSHSignature(sigB64 string) sshSignature {
	raw, err := base64.StdEncoding.DecodeString(sigB64)
	if err != nil {
		if raw, err = base64.URLEncoding.DecodeString(sigB64); err != nil {
			return sshSignature{}
		}
	}
	text := bytes.TrimLeft(raw, " \t\r\n")
	if bytes.HasPrefix(text, []byte("SSHSIG")) {
		return sshSignature{armored: true, err: errors.New("the SSH signature is the bare SSHSIG blob: it must be armored (-----BEGIN SSH SIGNATURE-----)")}
	}
	if !bytes.HasPrefix(text, []byte("-----BEGIN "+sshsig.PEMType+"-----")) {
		return sshSignature{}
	}
	s := sshSignature{armored: true}
	block, rest := pem.Decode(text)
	switch {
	case block == nil:
		s.err = errors.New("the SSH signature's armor is truncated or garbled: no complete -----BEGIN SSH SIGNATURE----- … -----END SSH SIGNATURE----- block")
	case block.Type != sshsig.PEMType:
		s.err = fmt.Errorf("the SSH signature's armor is garbled: a %q block", block.Type)
	case len(block.Headers) > 0:
		s.err = errors.New("the SSH signature's armor is garbled: it has headers")
	case len(bytes.TrimSpace(rest)) > 0:
		s.err = errors.New("the SSH signature's armor is followed by other data")
	}
	if s.err != nil {
		return s
	}
	sig, err := sshsig.ParseSignature(block.Bytes)
	if err != nil {
		s.err = fmt.Errorf("the SSH signature inside the armor is garbled: %v", err)
		return s
	}
	s.sig, s.fingerprint = sig, ssh.FingerprintSHA256(sig.PublicKey)
	return s
}

// verifySSH checks the envelope's SSHSIG with an SSH key of the keyring,
// and says why it does not count: no SSH signature, garbled armor, a key
// of another type or another key, another namespace, a FIDO signature
// without user presence, or a signature that does not verify.
func (e *Envelope) verifySSH(k *Key) error {
	s := &e.ssh
	switch {
	case !s.armored:
		return fmt.Errorf("not an SSH signature: key %s is an SSH key, whose signatures are armored SSHSIGs (-----BEGIN SSH SIGNATURE-----)", k.DSSEKeyID)
	case s.err != nil:
		return s.err
	}
	sig := s.sig
	if got, want := sig.PublicKey.Type(), k.SSH.Type(); got != want {
		return fmt.Errorf("signed by a %s key, but key %s is a %s key", got, k.DSSEKeyID, want)
	}
	if s.fingerprint != k.DSSEKeyID {
		return fmt.Errorf("signed by SSH key %s, not by key %s", s.fingerprint, k.DSSEKeyID)
	}
	if sig.Signature == nil {
		return errors.New("the SSH signature holds no signature")
	}
	if sig.Signature.Format != k.SSH.Type() {
		return fmt.Errorf("a signature of type %q by a %s key", sig.Signature.Format, k.SSH.Type())
	}
	if sig.Namespace != SSHNamespace {
		return fmt.Errorf("the SSH signature is for namespace %q; writ approvals are signed in namespace %q", sig.Namespace, SSHNamespace)
	}
	if err := sig.HashAlgorithm.Available(); err != nil {
		return fmt.Errorf("the SSH signature's hash: %w", err)
	}
	if keys.IsSK(k.SSH) {
		if err := checkUserPresence(sig.Signature); err != nil {
			return err
		}
	}
	pae := ssldsse.PAE(e.dsse.PayloadType, e.Payload)
	if err := sshsig.Verify(bytes.NewReader(pae), sig, k.SSH, sig.HashAlgorithm, SSHNamespace); err != nil {
		return fmt.Errorf("the SSH signature does not verify: %v", err)
	}
	return nil
}

// checkUserPresence refuses a FIDO signature made without the security
// key being touched. Its flags follow the signature blob (PROTOCOL.u2f:
// byte flags, uint32 counter), in ssh.Signature.Rest.
func checkUserPresence(sig *ssh.Signature) error {
	var sk struct {
		Flags   byte
		Counter uint32
	}
	if err := ssh.Unmarshal(sig.Rest, &sk); err != nil {
		return fmt.Errorf("a FIDO signature without its flags and counter: %v", err)
	}
	if sk.Flags&skUserPresent == 0 {
		return fmt.Errorf("a FIDO signature without the user-presence flag (flags 0x%02x): the security key was not touched", sk.Flags)
	}
	return nil
}

// sshSigner signs with an ssh.Signer: a private key, or one ssh-agent
// holds.
type sshSigner struct {
	pub   ssh.PublicKey
	keyID string
	// signer returns the ssh.Signer to use, and a function to call once
	// done with it.
	signer func(ctx context.Context) (ssh.Signer, func(), error)
}

func (s *sshSigner) KeyID() (string, error)      { return s.keyID, nil }
func (s *sshSigner) SSHPublicKey() ssh.PublicKey { return s.pub }

// Sign makes the armored SSHSIG of the PAE in namespace SSHNamespace.
func (s *sshSigner) Sign(ctx context.Context, pae []byte) ([]byte, error) {
	signer, done, err := s.signer(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	sig, err := sshsig.Sign(bytes.NewReader(pae), signer, SSHHash, SSHNamespace)
	if err != nil {
		return nil, fmt.Errorf("SSH signature with key %s: %w", s.keyID, err)
	}
	return sshsig.Armor(sig), nil
}

// NewSSHSigner signs with an OpenSSH private key (ssh.ParsePrivateKey and
// friends) of an accepted type: ssh-ed25519 or ecdsa-sha2-nistp256. A FIDO
// key signs only where its security key is: through ssh-agent.
func NewSSHSigner(signer ssh.Signer) (EnvelopeSigner, error) {
	pub := signer.PublicKey()
	if err := keys.CheckSSHPublic(pub); err != nil {
		return nil, err
	}
	return &sshSigner{pub: pub, keyID: ssh.FingerprintSHA256(pub),
		signer: func(context.Context) (ssh.Signer, func(), error) { return signer, func() {}, nil }}, nil
}

// NewSSHAgentSigner signs through the ssh-agent listening on socket (the
// path SSH_AUTH_SOCK names) with the key whose public half is pub: an
// ssh-ed25519, ecdsa-sha2-nistp256 or FIDO sk-ssh-ed25519@openssh.com key.
// It asks the agent now whether it holds the key, and connects again for
// each signature, so nothing stays open between them.
func NewSSHAgentSigner(ctx context.Context, socket string, pub ssh.PublicKey) (EnvelopeSigner, error) {
	if err := keys.CheckSSHPublic(pub); err != nil {
		return nil, err
	}
	if socket == "" {
		return nil, errors.New("ssh-agent: no socket (SSH_AUTH_SOCK is not set)")
	}
	s := &sshSigner{pub: pub, keyID: ssh.FingerprintSHA256(pub)}
	s.signer = func(ctx context.Context) (ssh.Signer, func(), error) {
		return agentSigner(ctx, socket, pub)
	}
	_, done, err := s.signer(ctx)
	if err != nil {
		return nil, err
	}
	done()
	return s, nil
}

// agentSigner connects to ssh-agent and finds the signer of pub; done
// closes the connection.
func agentSigner(ctx context.Context, socket string, pub ssh.PublicKey) (ssh.Signer, func(), error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, nil, fmt.Errorf("ssh-agent: %w", err)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(maxSSHAgentWait)
	}
	if err := conn.SetDeadline(deadline); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("ssh-agent: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	done := func() {
		stop()
		conn.Close()
	}
	signers, err := agent.NewClient(conn).Signers()
	if err != nil {
		done()
		return nil, nil, fmt.Errorf("ssh-agent: list keys: %w", err)
	}
	want := pub.Marshal()
	for _, s := range signers {
		if bytes.Equal(s.PublicKey().Marshal(), want) {
			return s, done, nil
		}
	}
	done()
	return nil, nil, fmt.Errorf("ssh-agent does not hold key %s (%s): add it with ssh-add", ssh.FingerprintSHA256(pub), pub.Type())
}
