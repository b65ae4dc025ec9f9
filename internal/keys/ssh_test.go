package keys

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestParseSSHPublic(t *testing.T) {
	t.Parallel()
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	ed, _ := ssh.NewPublicKey(edPub)
	p256, _ := ssh.NewPublicKey(&ec.PublicKey)
	p384, _ := ssh.NewPublicKey(&ec384.PublicKey)
	sk, err := ssh.ParsePublicKey(ssh.Marshal(struct {
		Name        string
		KeyBytes    []byte
		Application string
	}{SSHSKEd25519, edPub, "ssh:"}))
	if err != nil {
		t.Fatal(err)
	}
	line := func(k ssh.PublicKey) string { return MarshalSSHLine(k, "") }

	for _, tc := range []struct {
		in      string
		key     ssh.PublicKey
		comment string
	}{
		{line(ed), ed, ""},
		{line(ed) + " alice@laptop\n", ed, "alice@laptop"},
		{"  " + line(p256) + "  two  words ", p256, "two words"},
		{line(sk) + " yubikey", sk, "yubikey"},
	} {
		k, c, err := ParseSSHPublic([]byte(tc.in))
		if err != nil || string(k.Marshal()) != string(tc.key.Marshal()) || c != tc.comment {
			t.Errorf("%q: %v %q %v", tc.in, k, c, err)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"", "empty"},
		{line(p384), `SSH key type "ecdsa-sha2-nistp384"`},
		{"ssh-rsa AAAAB3NzaC1yc2E=", `SSH key type "ssh-rsa"`},
		{"no-touch-required " + line(sk), "options"},
		{`command="x" ` + line(ed), "options"},
		{"ssh-ed25519", "without key data"},
		{"ssh-ed25519 !!!", "not base64"},
		{strings.Replace(line(ed), "ssh-ed25519", "ecdsa-sha2-nistp256", 1), "the line says ecdsa-sha2-nistp256, but the key data is a ssh-ed25519 key"},
		{line(ed) + "\n" + line(ed), "one key per line"},
		{line(ed) + " a\x07b", "control characters"},
	} {
		if _, _, err := ParseSSHPublic([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v; want %q", tc.in, err, tc.want)
		}
	}
	if _, _, err := ParseSSHPublic([]byte(line(p384))); !errors.Is(err, ErrWeakKey) {
		t.Errorf("P-384: %v; want ErrWeakKey", err)
	}

	// Ids: a key's id is the same as an SSH line and as PEM; a FIDO key's
	// is the sha256 of its wire encoding, its material the ed25519 key's.
	for _, k := range []ssh.PublicKey{ed, p256} {
		id, err := SSHID(k)
		pemID, _ := ID(k.(ssh.CryptoPublicKey).CryptoPublicKey())
		if err != nil || id != pemID {
			t.Errorf("%s: id %s, PEM id %s, %v", k.Type(), id, pemID, err)
		}
	}
	skID, _ := SSHID(sk)
	h := sha256.Sum256(sk.Marshal())
	material, _ := SSHMaterialID(sk)
	edID, _ := ID(edPub)
	if skID != hex.EncodeToString(h[:]) || material != edID || SSHAlgorithm(sk) != SKEd25519 || !IsSK(sk) || IsSK(ed) {
		t.Errorf("FIDO key: id %s, material %s", skID, material)
	}
	if SSHAlgorithm(p256) != ECDSAP256 || SSHAlgorithm(ed) != Ed25519 {
		t.Errorf("algorithms %s %s", SSHAlgorithm(p256), SSHAlgorithm(ed))
	}
	if !IsSSHLine([]byte(line(ed))) || IsSSHLine([]byte("-----BEGIN PUBLIC KEY-----\n")) {
		t.Error("IsSSHLine")
	}
}
