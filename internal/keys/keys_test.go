package keys

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"
)

func TestRoundTripEveryAlgorithm(t *testing.T) {
	t.Parallel()
	for _, alg := range Algorithms {
		for _, password := range [][]byte{nil, []byte("correct horse")} {
			name := alg
			if password != nil {
				name += "/encrypted"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				priv, err := Generate(alg)
				if err != nil {
					t.Fatal(err)
				}
				pemBytes, err := MarshalPrivate(priv, password)
				if err != nil {
					t.Fatal(err)
				}
				if IsEncrypted(pemBytes) != (password != nil) {
					t.Fatalf("IsEncrypted = %v", IsEncrypted(pemBytes))
				}
				if password != nil {
					if bytes.Contains(pemBytes, []byte("BEGIN PRIVATE KEY")) {
						t.Fatal("encrypted key written as plain PKCS#8")
					}
					if _, err := ParsePrivate(pemBytes, nil); err == nil || !strings.Contains(err.Error(), "password") {
						t.Fatalf("no password: %v", err)
					}
					if _, err := ParsePrivate(pemBytes, []byte("wrong")); err == nil {
						t.Fatal("wrong password accepted")
					}
				}
				back, err := ParsePrivate(pemBytes, password)
				if err != nil {
					t.Fatal(err)
				}
				pubPEM, err := MarshalPublic(back.Public())
				if err != nil {
					t.Fatal(err)
				}
				pub, err := ParsePublic(pubPEM)
				if err != nil {
					t.Fatal(err)
				}
				id1, _ := ID(priv.Public())
				id2, _ := ID(pub)
				if id1 != id2 || len(id1) != 64 {
					t.Fatalf("ids %s %s", id1, id2)
				}
				s, err := Signer(back)
				if err != nil {
					t.Fatal(err)
				}
				msg := []byte("approve block-c2-beacon")
				sig, err := s.SignMessage(bytes.NewReader(msg))
				if err != nil {
					t.Fatal(err)
				}
				v, err := Verifier(pub)
				if err != nil {
					t.Fatal(err)
				}
				if err := v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(msg)); err != nil {
					t.Fatalf("verify: %v", err)
				}
				if err := v.VerifySignature(bytes.NewReader(sig), bytes.NewReader([]byte("approve something else"))); err == nil {
					t.Fatal("signature verified for another message")
				}
			})
		}
	}
}

func TestWeakKeysAreRefused(t *testing.T) {
	t.Parallel()
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	for name, pub := range map[string]any{"rsa-1024": &small.PublicKey, "p224": &p224.PublicKey} {
		if err := CheckPublic(pub); !errors.Is(err, ErrWeakKey) {
			t.Errorf("%s: CheckPublic = %v", name, err)
		}
	}
	pemBytes, err := MarshalPrivate(small, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParsePrivate(pemBytes, nil); !errors.Is(err, ErrWeakKey) {
		t.Errorf("ParsePrivate(rsa-1024) = %v", err)
	}
	pubPEM, _ := MarshalPublic(&small.PublicKey)
	if _, err := ParsePublic(pubPEM); !errors.Is(err, ErrWeakKey) {
		t.Errorf("ParsePublic(rsa-1024) = %v", err)
	}
}

func TestParsePublicRejectsJunk(t *testing.T) {
	t.Parallel()
	priv, _ := Generate(Ed25519)
	good, _ := MarshalPublic(priv.Public())
	privPEM, _ := MarshalPrivate(priv, nil)
	for name, in := range map[string][]byte{
		"empty":        nil,
		"not pem":      []byte("ssh-ed25519 AAAA"),
		"private key":  privPEM,
		"trailing":     append(append([]byte{}, good...), []byte("garbage")...),
		"corrupt body": bytes.Replace(good, []byte("MC"), []byte("XX"), 1),
	} {
		if _, err := ParsePublic(in); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := Generate("dsa"); err == nil {
		t.Error("Generate(dsa) accepted")
	}
}
