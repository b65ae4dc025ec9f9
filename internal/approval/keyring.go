package approval

import (
	"crypto"
	"fmt"
	"maps"
	"slices"
	"strings"

	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/sigstore/pkg/signature"
	"golang.org/x/crypto/ssh"

	"github.com/writ-sec/writ/internal/diag"
	"github.com/writ-sec/writ/internal/keys"
	"github.com/writ-sec/writ/internal/yamldoc"
	"github.com/writ-sec/writ/schemas"
)

// Roles a person can hold (docs/design.md says what each may do).
const (
	RoleViewer   = "viewer"
	RoleAnalyst  = "analyst"
	RoleApprover = "approver"
	RoleExecutor = "executor"
	RoleAdmin    = "admin"
	// RoleBreakGlass may invoke break-glass: one signed statement of theirs
	// lets an emergency apply run where the policies allow it, before its
	// normal quorum (docs/design.md, Break-glass containment).
	RoleBreakGlass = "break-glass"
)

// Roles lists every role.
var Roles = []string{RoleViewer, RoleAnalyst, RoleApprover, RoleExecutor, RoleAdmin, RoleBreakGlass}

// KeyringPath is the keyring's place in a content repository.
const KeyringPath = ".writ/approvers.yaml"

// MaxKeyringBytes bounds the approvers file.
const MaxKeyringBytes = 4 << 20

// Person is one entry of the approvers file.
type Person struct {
	ID    string
	Name  string
	Email string
	// Logins are the person's accounts on forges (ForgeGitHub,
	// ForgeGitLab): a statement a forge delivers counts only when the
	// account that submitted it is the signer's login on that forge.
	Logins   map[string]string
	Roles    []string
	Keys     []*Key
	Disabled bool
}

// Forges whose logins the approvers file names (logins.NAME).
const (
	ForgeGitHub = "github"
	ForgeGitLab = "gitlab"
)

// Login is the person's account on a forge, "" when none.
func (p *Person) Login(forge string) string { return p.Logins[forge] }

// Has reports whether the person holds a role.
func (p *Person) Has(role string) bool { return slices.Contains(p.Roles, role) }

// Key is one registered public key: a PEM key, whose signatures are
// sigstore's (raw, over the DSSE PAE), an OpenSSH key, whose signatures
// are armored SSHSIGs (docs/approvals.md, SSH keys), or a passkey, whose
// signatures are WebAuthn assertions (docs/approvals.md, Passkeys
// (WebAuthn)).
type Key struct {
	// ID is writ's key id: the hex sha256 of the PKIX DER (keys.ID), also
	// for ssh-ed25519 and ecdsa-sha2-nistp256 keys and for passkeys, so a
	// key has one id in every form; for an sk-ssh-ed25519@openssh.com key,
	// the hex sha256 of its SSH wire encoding (keys.SSHID).
	ID string
	// DSSEKeyID is what signers put in an envelope's keyid: the SSH-style
	// SHA256 fingerprint (ssh.FingerprintSHA256 of the key) for PEM and
	// SSH keys, WebAuthnKeyID of the credential ("webauthn:" and its
	// base64url id) for a passkey.
	DSSEKeyID string
	// Algorithm is keys.Algorithm's name, "sk-ed25519" for a FIDO key, or
	// WebAuthnES256 / WebAuthnEd25519 for a passkey.
	Algorithm string
	// Public is the key inside: ed25519.PublicKey or *ecdsa.PublicKey (for
	// a FIDO key, its ed25519 key), *rsa.PublicKey for PEM keys.
	Public crypto.PublicKey
	// SSH is set for a key given as an OpenSSH line: its signatures are
	// SSHSIGs in namespace SSHNamespace. Nil otherwise.
	SSH ssh.PublicKey
	// WebAuthn is set for a key given as a webauthn line: its signatures
	// are WebAuthn assertions over WebAuthnChallenge. Nil otherwise.
	WebAuthn *WebAuthnKey
	Person   *Person

	verifier signature.Verifier // PEM keys only
	material string             // keys.ID of the key inside, for duplicates
}

// Keyring is the trusted set of people and keys, read from the approvers
// file of the trusted base (trust rule 1).
type Keyring struct {
	people  []*Person
	byID    map[string]*Person
	byLogin map[string]*Person // forge + "\x00" + lowercased login
	byKey   map[string]*Key    // by Key.ID and by Key.DSSEKeyID
	keys    []*Key
}

// People returns everyone in file order.
func (k *Keyring) People() []*Person { return slices.Clone(k.people) }

// Person looks a person up by id.
func (k *Keyring) Person(id string) (*Person, bool) {
	p, ok := k.byID[id]
	return p, ok
}

// PersonByLogin looks a person up by their login on a forge
// (case-insensitive, as GitHub and GitLab logins are).
func (k *Keyring) PersonByLogin(forge, login string) (*Person, bool) {
	p, ok := k.byLogin[loginKey(forge, login)]
	return p, ok
}

func loginKey(forge, login string) string { return forge + "\x00" + strings.ToLower(login) }

// Key looks a key up by writ's key id (hex sha256 of the PKIX DER) or by
// its DSSE key id (SHA256:... fingerprint, or webauthn:... for a passkey).
func (k *Keyring) Key(id string) (*Key, bool) {
	key, ok := k.byKey[id]
	return key, ok
}

// KeysOf returns the keys of a person, in file order; nil when the person
// is not in the keyring. A passkey's Key.WebAuthn carries its relying
// party, origin and credential id (for allowCredentials).
func (k *Keyring) KeysOf(personID string) []*Key {
	p, ok := k.byID[personID]
	if !ok {
		return nil
	}
	return slices.Clone(p.Keys)
}

// forgeName is how messages name a forge.
func forgeName(forge string) string {
	switch forge {
	case ForgeGitHub:
		return "GitHub"
	case ForgeGitLab:
		return "GitLab"
	}
	return forge
}

// keyringFile is the approvers file's shape (after schema validation).
type keyringFile struct {
	APIVersion string       `yaml:"apiVersion"`
	Kind       string       `yaml:"kind"`
	People     []personFile `yaml:"people"`
}

type personFile struct {
	ID       string            `yaml:"id"`
	Name     string            `yaml:"name"`
	Email    string            `yaml:"email"`
	GitHub   string            `yaml:"github"`
	Logins   map[string]string `yaml:"logins"`
	Roles    []string          `yaml:"roles"`
	Keys     []string          `yaml:"keys"`
	Disabled bool              `yaml:"disabled"`
}

var keyringHints = yamldoc.Hints{
	"/people/*/id":            "is not a person id: lowercase letters, digits and . _ -",
	"/people/*/keys/*":        "is not a PEM public key (-----BEGIN PUBLIC KEY-----) or an OpenSSH public key line (ssh-ed25519, sk-ssh-ed25519@openssh.com or ecdsa-sha2-nistp256, then the base64 key data and an optional comment), nor a passkey line (webauthn rp=… origin=… cred=… key=… and an optional comment)",
	"/people/*/github":        "is not a GitHub login: letters, digits and single hyphens",
	"/people/*/logins/github": "is not a GitHub login: letters, digits and single hyphens",
	"/people/*/logins/gitlab": "is not a GitLab username: letters, digits, _ . and -, not starting or ending with . or -",
	"/people/*/email":         "is not an e-mail address",
}

// ParseKeyring reads an approvers file (.writ/approvers.yaml) strictly:
// strict YAML, the approvers schema, PEM public keys, OpenSSH public key
// lines and webauthn lines of accepted algorithms and sizes, unique person
// ids, GitHub logins, keys (a key given once as PEM and once as an SSH or
// webauthn line is the same key) and passkey credential ids. Every problem is
// located path:line:col; on any problem the keyring is nil.
func ParseKeyring(path string, data []byte) (*Keyring, diag.Problems) {
	doc, problems := yamldoc.Parse(path, data, yamldoc.Limits{MaxBytes: MaxKeyringBytes})
	if problems != nil {
		return nil, problems
	}
	if _, ok := doc.Value.(map[string]any); !ok {
		return nil, diag.Problems{doc.Errorf("", "schema", "an approvers file is a mapping with apiVersion, kind and people")}
	}
	if problems := doc.Validate(schemas.Must(schemas.Approvers), keyringHints); problems != nil {
		return nil, problems
	}
	var f keyringFile
	if err := doc.Decode(&f); err != nil {
		return nil, diag.Problems{doc.Errorf("", "schema", "%v", err)}
	}
	k := &Keyring{
		byID:    make(map[string]*Person, len(f.People)),
		byLogin: make(map[string]*Person, len(f.People)),
		byKey:   make(map[string]*Key, len(f.People)*2),
	}
	byMaterial := make(map[string]*Key, len(f.People))
	for i, pf := range f.People {
		ptr := fmt.Sprintf("/people/%d", i)
		p := &Person{ID: pf.ID, Name: pf.Name, Email: pf.Email, Logins: map[string]string{},
			Roles: slices.Clone(pf.Roles), Disabled: pf.Disabled}
		for forge, login := range pf.Logins {
			p.Logins[forge] = login
		}
		if pf.GitHub != "" {
			if l, both := pf.Logins[ForgeGitHub]; both && !strings.EqualFold(l, pf.GitHub) {
				problems = append(problems, doc.Errorf(ptr+"/github", "conflicting-login",
					"github %q and logins.github %q name two accounts: keep one", pf.GitHub, l))
			}
			p.Logins[ForgeGitHub] = pf.GitHub
		}
		if prev, dup := k.byID[p.ID]; dup {
			problems = append(problems, doc.Errorf(ptr+"/id", "duplicate-person",
				"person id %q is already used at %s", p.ID, at(doc, personIndex(k.people, prev))))
			continue
		}
		for _, forge := range slices.Sorted(maps.Keys(p.Logins)) {
			login := p.Logins[forge]
			lptr := ptr + "/logins/" + forge
			if forge == ForgeGitHub && pf.GitHub != "" {
				lptr = ptr + "/github"
			}
			if prev, dup := k.byLogin[loginKey(forge, login)]; dup {
				problems = append(problems, doc.Errorf(lptr, "duplicate-login",
					"%s login %q already belongs to %q", forgeName(forge), login, prev.ID))
			} else {
				k.byLogin[loginKey(forge, login)] = p
			}
		}
		for j, text := range pf.Keys {
			kptr := fmt.Sprintf("%s/keys/%d", ptr, j)
			key, err := parseKeyEntry([]byte(text), p)
			if err != nil {
				problems = append(problems, doc.Errorf(kptr, "invalid-key", "people[%d].keys[%d]: %v", i, j, err))
				continue
			}
			prev, dup := k.byKey[key.ID]
			if !dup {
				prev, dup = byMaterial[key.material]
			}
			if prevCred, credDup := k.byKey[key.DSSEKeyID]; !dup && credDup {
				owner := "is listed twice"
				if prevCred.Person != p {
					owner = fmt.Sprintf("already belongs to %q", prevCred.Person.ID)
				}
				problems = append(problems, doc.Errorf(kptr, "duplicate-key", "people[%d].keys[%d]: passkey credential %s %s", i, j, key.DSSEKeyID, owner))
				continue
			}
			if dup {
				if prev.Person == p {
					problems = append(problems, doc.Errorf(kptr, "duplicate-key", "people[%d].keys[%d]: key %.16s… is listed twice", i, j, key.ID))
				} else {
					problems = append(problems, doc.Errorf(kptr, "duplicate-key",
						"people[%d].keys[%d]: key %.16s… already belongs to %q: a key identifies one person", i, j, key.ID, prev.Person.ID))
				}
				continue
			}
			k.byKey[key.ID] = key
			k.byKey[key.DSSEKeyID] = key
			byMaterial[key.material] = key
			k.keys = append(k.keys, key)
			p.Keys = append(p.Keys, key)
		}
		k.byID[p.ID] = p
		k.people = append(k.people, p)
	}
	if len(problems) > 0 {
		problems.Sort()
		return nil, problems
	}
	return k, nil
}

// RecoveryKey is one key the server's operator keeps for lost-key
// recovery (writ.yaml approvals.recovery): a name and a PEM public key.
type RecoveryKey struct {
	ID  string
	PEM []byte
}

// NewRecoveryKeyring makes the keyring of recovery keys: one admin per
// key, named by its id. It is never read from the repository; a change to
// policies/ or .writ/ it adopts is signed, audited and notified like any
// other.
func NewRecoveryKeyring(rks []RecoveryKey) (*Keyring, error) {
	k := &Keyring{byID: map[string]*Person{}, byLogin: map[string]*Person{}, byKey: map[string]*Key{}}
	for _, rk := range rks {
		if !personIDRE.MatchString(rk.ID) {
			return nil, fmt.Errorf("recovery key id %q is not a person id", rk.ID)
		}
		if _, dup := k.byID[rk.ID]; dup {
			return nil, fmt.Errorf("recovery key id %q is used twice", rk.ID)
		}
		p := &Person{ID: rk.ID, Name: "recovery key " + rk.ID, Roles: []string{RoleAdmin}}
		key, err := newKey(rk.PEM, p)
		if err != nil {
			return nil, fmt.Errorf("recovery key %s: %w", rk.ID, err)
		}
		if prev, dup := k.byKey[key.ID]; dup {
			return nil, fmt.Errorf("recovery key %s is the same key as %s", rk.ID, prev.Person.ID)
		}
		k.byKey[key.ID], k.byKey[key.DSSEKeyID] = key, key
		k.keys = append(k.keys, key)
		p.Keys = []*Key{key}
		k.byID[p.ID] = p
		k.people = append(k.people, p)
	}
	if len(k.people) == 0 {
		return nil, fmt.Errorf("no recovery keys")
	}
	return k, nil
}

func personIndex(people []*Person, p *Person) int { return slices.Index(people, p) }

func at(doc *yamldoc.Doc, i int) string {
	pos := doc.Pos(fmt.Sprintf("/people/%d/id", i))
	return fmt.Sprintf("line %d, column %d", pos.Line, pos.Col)
}

// parseKeyEntry parses one keys: entry of the approvers file: a PEM public
// key, an OpenSSH public key line, or a webauthn line.
func parseKeyEntry(text []byte, p *Person) (*Key, error) {
	if IsWebAuthnLine(text) {
		return newWebAuthnKey(text, p)
	}
	if keys.IsSSHLine(text) {
		return newSSHKey(text, p)
	}
	return newKey(text, p)
}

// newSSHKey parses one OpenSSH public key line of an accepted type.
func newSSHKey(line []byte, p *Person) (*Key, error) {
	pub, _, err := keys.ParseSSHPublic(line)
	if err != nil {
		return nil, err
	}
	id, err := keys.SSHID(pub)
	if err != nil {
		return nil, err
	}
	material, err := keys.SSHMaterialID(pub)
	if err != nil {
		return nil, err
	}
	return &Key{ID: id, DSSEKeyID: ssh.FingerprintSHA256(pub), Algorithm: keys.SSHAlgorithm(pub),
		Public: pub.(ssh.CryptoPublicKey).CryptoPublicKey(), SSH: pub, Person: p, material: material}, nil
}

// newKey parses one PEM public key of an accepted algorithm and size.
func newKey(pemBytes []byte, p *Person) (*Key, error) {
	pub, err := keys.ParsePublic(pemBytes)
	if err != nil {
		return nil, err
	}
	id, err := keys.ID(pub)
	if err != nil {
		return nil, err
	}
	dsseID, err := ssldsse.SHA256KeyID(pub)
	if err != nil {
		return nil, fmt.Errorf("key fingerprint: %w", err)
	}
	v, err := keys.Verifier(pub)
	if err != nil {
		return nil, err
	}
	return &Key{ID: id, DSSEKeyID: dsseID, Algorithm: keys.Algorithm(pub), Public: pub, Person: p, verifier: v, material: id}, nil
}
