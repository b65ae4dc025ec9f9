package approval

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/writ-sec/writ/internal/keys"
)

func TestParseKeyringValid(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../testdata/approval/keyring/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	kr, problems := ParseKeyring(KeyringPath, data)
	if problems != nil {
		t.Fatalf("problems: %v", problems)
	}
	if n := len(kr.People()); n != 3 {
		t.Fatalf("%d people; want 3", n)
	}
	alice, ok := kr.Person("alice")
	if !ok || alice.Name != "Alice Analyst" || alice.Email != "alice@example.com" || !alice.Has(RoleAnalyst) || alice.Has(RoleApprover) {
		t.Fatalf("alice = %+v", alice)
	}
	if p, ok := kr.PersonByLogin(ForgeGitHub, "Alice-GH"); !ok || p != alice {
		t.Fatalf("lookup by GitHub login (case-insensitive): %v %v", p, ok)
	}
	if _, ok := kr.PersonByLogin(ForgeGitHub, "bob"); ok {
		t.Fatal("bob has no GitHub login")
	}
	bob, _ := kr.Person("bob")
	if len(bob.Keys) != 2 || bob.Keys[0].Algorithm != keys.Ed25519 || bob.Keys[1].Algorithm != "ecdsa-p256" {
		t.Fatalf("bob's keys: %+v", bob.Keys)
	}
	for _, k := range bob.Keys {
		byID, ok1 := kr.Key(k.ID)
		byDSSE, ok2 := kr.Key(k.DSSEKeyID)
		if !ok1 || !ok2 || byID != k || byDSSE != k || k.Person != bob {
			t.Fatalf("key lookups for %s failed", k.ID)
		}
		if !strings.HasPrefix(k.DSSEKeyID, "SHA256:") || len(k.ID) != 64 {
			t.Fatalf("key ids %q %q", k.ID, k.DSSEKeyID)
		}
	}
	if carol, _ := kr.Person("carol.old"); !carol.Disabled {
		t.Fatal("carol.old should be disabled")
	}
	if _, ok := kr.Person("mallory"); ok {
		t.Fatal("mallory found")
	}
}

// TestParseKeyringInvalid runs every invalid file of
// testdata/approval/keyring: each says in "# want: LINE:COL: TEXT" lines
// which problems it must produce.
func TestParseKeyringInvalid(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("../../testdata/approval/keyring/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, file := range files {
		if filepath.Base(file) == "valid.yaml" {
			continue
		}
		ran++
		t.Run(filepath.Base(file), func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var wants []string
			sc := bufio.NewScanner(bytes.NewReader(data))
			for sc.Scan() {
				if w, ok := strings.CutPrefix(sc.Text(), "# want: "); ok {
					wants = append(wants, w)
				}
			}
			if len(wants) == 0 {
				t.Fatal("no # want: lines")
			}
			kr, problems := ParseKeyring(".writ/approvers.yaml", data)
			if kr != nil || len(problems) == 0 {
				t.Fatal("accepted")
			}
			for _, w := range wants {
				var line, col int
				var text string
				if n, _ := fmt.Sscanf(w, "%d:%d:", &line, &col); n != 2 {
					t.Fatalf("bad want line %q", w)
				}
				_, text, _ = strings.Cut(w, ": ")
				found := false
				for _, p := range problems {
					if p.Path == ".writ/approvers.yaml" && p.Line == line && p.Col == col && strings.Contains(p.Message, text) {
						found = true
					}
				}
				if !found {
					t.Errorf("problems:\n%s\nwant one at %d:%d containing %q", problems.Error(), line, col, text)
				}
			}
		})
	}
	if ran < 8 {
		t.Fatalf("only %d invalid files", ran)
	}
}

// TestKeyTypes signs and verifies with every accepted key type and size,
// and refuses the rest.
func TestKeyTypes(t *testing.T) {
	t.Parallel()
	for _, alg := range []string{keys.Ed25519, keys.ECDSAP256, keys.ECDSAP384, "rsa-2048", keys.RSA3072, keys.RSA4096} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			people := []testPerson{
				{id: "alice", roles: []string{RoleAnalyst}, alg: alg},
				{id: "bob", roles: []string{RoleApprover}, alg: alg},
			}
			f := newFixture(t, people)
			env := f.approve(t, "bob")
			in := baseInput(f, submitted(f.propose(t, "alice"), env))
			in.ApprovalsRequired = 1
			v := Verify(in)
			if !v.QuorumMet || len(v.Counted) != 1 {
				t.Fatalf("verdict %+v", v)
			}
			if got := f.kr.byID["bob"].Keys[0].Algorithm; got != alg {
				t.Fatalf("algorithm %s; want %s", got, alg)
			}
			// The same envelope with one bit of the signature flipped fails.
			bad := editEnvelope(t, env, func(m map[string]any) {
				s := m["signatures"].([]any)[0].(map[string]any)
				sig := []byte(s["sig"].(string))
				if sig[2] == 'A' {
					sig[2] = 'B'
				} else {
					sig[2] = 'A'
				}
				s["sig"] = string(sig)
			})
			in.Envelopes = submitted(f.propose(t, "alice"), bad)
			v = Verify(in)
			if c, _ := codeOf(v, 1); c != CodeBadSignature {
				t.Fatalf("flipped signature: %q", c)
			}
		})
	}
	t.Run("weak keys cannot sign", func(t *testing.T) {
		t.Parallel()
		rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			t.Fatal(err)
		}
		p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []crypto.Signer{rsa1024, p224} {
			if _, err := keys.Signer(k); !errors.Is(err, keys.ErrWeakKey) {
				t.Fatalf("keys.Signer(%T): %v; want ErrWeakKey", k, err)
			}
			// Sign refuses them too, whoever built the signer.
			s, err := signature.LoadSigner(k, crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Sign(s, stmt(pred("bob", Approve))); !errors.Is(err, keys.ErrWeakKey) {
				t.Fatalf("Sign with %T: %v; want ErrWeakKey", k, err)
			}
		}
	})
}
