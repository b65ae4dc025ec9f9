package audit

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/writ-sec/writ/internal/keys"
)

func TestEnsureKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var wg sync.WaitGroup
	ids := make([]string, 8)
	created := make([]bool, 8)
	for i := range ids {
		wg.Go(func() {
			k, c, err := EnsureKey(dir)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i], created[i] = k.ID(), c
		})
	}
	wg.Wait()
	n := 0
	for i := range ids {
		if ids[i] != ids[0] {
			t.Fatalf("racing EnsureKey calls made different keys: %v", ids)
		}
		if created[i] {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d calls report creating the key", n)
	}
	fi, err := os.Stat(filepath.Join(dir, "audit", "audit.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", fi.Mode(), err)
	}
	ks, err := LoadKeySet(filepath.Join(dir, "audit", "audit.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ks.Get(ids[0]); !ok || ks.Len() != 1 {
		t.Fatal("audit.pub is not the key's public half")
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "audit")); len(entries) != 2 {
		t.Fatalf("left-over files: %v", entries)
	}
	k, c, err := EnsureKey(dir)
	if err != nil || c || k.ID() != ids[0] {
		t.Fatalf("second EnsureKey: %v %v", c, err)
	}
}

func TestSigningKeyNeverPrintsMaterial(t *testing.T) {
	t.Parallel()
	k := newKey(t)
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("x", slog.Any("key", k), slog.Any("opts", LogOptions{Key: k}))
	out := buf.String() + fmt.Sprintf("%v %+v %#v %s", k, k, k, k)
	pemBytes, _ := keys.MarshalPrivate(k.priv, nil)
	seed := k.priv.(interface{ Seed() []byte }).Seed()
	for _, secret := range []string{string(pemBytes), fmt.Sprintf("%x", seed), fmt.Sprint(seed)} {
		if strings.Contains(out, secret) {
			t.Fatalf("key material in output: %s", out)
		}
	}
	if !strings.Contains(out, k.ID()) {
		t.Fatalf("key id missing from %s", out)
	}
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	if _, err := NewSigningKey(rsaKey); err == nil {
		t.Fatal("RSA accepted for the audit log")
	}
}

func TestLoadKeySet(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a, b := newKey(t), newKey(t)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c, _ := NewSigningKey(ec)
	withHeaders := strings.Replace(b.PublicPEM(), "-----BEGIN PUBLIC KEY-----\n",
		"-----BEGIN PUBLIC KEY-----\nValid-From: 2026-01-01T00:00:00Z\nValid-Until: 2027-01-01T00:00:00Z\n\n", 1)
	os.WriteFile(filepath.Join(dir, "two.pem"), []byte(a.PublicPEM()+withHeaders), 0o644)
	os.WriteFile(filepath.Join(dir, "c.pub"), []byte(c.PublicPEM()), 0o644)
	os.WriteFile(filepath.Join(dir, "README"), []byte("not a key"), 0o644)
	ks, err := LoadKeySet(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ks.Len() != 3 {
		t.Fatalf("%d keys", ks.Len())
	}
	kb, _ := ks.Get(b.ID())
	if !kb.ValidFrom.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) || !kb.ValidUntil.Equal(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("validity %v..%v", kb.ValidFrom, kb.ValidUntil)
	}
	if kc, _ := ks.Get(c.ID()); kc.Algorithm != "ecdsa-p256" {
		t.Fatalf("algorithm %s", kc.Algorithm)
	}
	bad := map[string]string{
		"private":    string(mustPEM(t, a)),
		"header":     strings.Replace(withHeaders, "Valid-From", "Valid-Since", 1),
		"bad time":   strings.Replace(withHeaders, "2026-01-01T00:00:00Z", "yesterday", 1),
		"empty":      "",
		"trailing":   a.PublicPEM() + "junk",
		"wrong type": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
	}
	for name, content := range bad {
		p := filepath.Join(t.TempDir(), "k.pem")
		os.WriteFile(p, []byte(content), 0o644)
		if _, err := LoadKeySet(p); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.Contains(err.Error(), p) && name != "empty" {
			t.Errorf("%s: error does not name the file: %v", name, err)
		}
	}
}

func mustPEM(t *testing.T, k *SigningKey) []byte {
	b, err := keys.MarshalPrivate(k.priv, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, st := newLog(t)
	oldKey := l.Key()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	newK, err := NewSigningKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 20, 5)
	rec, err := l.RotateKey(ctx, Actor{ID: "alice", Role: "admin"}, newK)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Seq != 20 || l.Key().ID() != newK.ID() {
		t.Fatalf("rotation at %d, key %s", rec.Seq, l.Key())
	}
	appendN(t, l, 20, 5)
	rows, _ := st.AuditEntries(ctx, 0, 100)
	for _, r := range rows {
		want := oldKey.ID()
		if r.Seq > 20 {
			want = newK.ID()
		}
		if r.KeyID != want {
			t.Fatalf("seq %d signed by %.12s; want %.12s", r.Seq, r.KeyID, want)
		}
	}
	// Trusting the old key is enough: the rotation introduces the new one.
	rep := verifyDB(t, st, trustOnly(t, oldKey))
	if rep.Bad != nil || rep.Entries != 41 || rep.Signatures != 41 {
		t.Fatalf("verify across the rotation: %+v %v", rep, rep.Bad)
	}
	// Trusting only the new key verifies nothing before it.
	wantFinding(t, verifyDB(t, st, trustOnly(t, newK)), 0, "not trusted")

	// The old key is retired: an entry it signs after the rotation fails,
	// even from a process that missed the rotation.
	stale, _ := NewLog(LogOptions{Store: st, Key: oldKey})
	appendN(t, stale, 1, 1)
	wantFinding(t, verifyDB(t, st, trustOnly(t, oldKey)), 41, "which the rotation at seq 20 retired")

	// A key outside its validity fails too.
	pk, _ := NewPublicKey(oldKey.Public())
	pk.ValidUntil = time.Now().Add(-time.Hour)
	wantFinding(t, verifyDB(t, st, NewKeySet(pk)), 0, "outside its validity")

	if _, err := l.RotateKey(ctx, SystemActor, newK); err == nil {
		t.Fatal("rotating to the current key")
	}
}

func TestRotationNeedsProofOfPossession(t *testing.T) {
	t.Parallel()
	tl := newTamperLog(t, 5)
	ctx := context.Background()
	next := newKey(t)
	if _, err := tl.l.RotateKey(ctx, SystemActor, next); err != nil {
		t.Fatal(err)
	}
	if rep := verifyDB(t, tl.st, tl.trusted); rep.Bad != nil {
		t.Fatal(rep.Bad)
	}
	// The attacker points the rotation at their own key and re-signs the
	// entry with the (stolen) old key... except they do not have it: they
	// can only edit, and the signature check stops them. With the old key
	// in hand but not the new one's proof, the rotation itself fails.
	a := newAttacker(t, tl.url)
	mallory := newKey(t)
	b := bytes.Replace(a.entry(5), []byte(next.ID()), []byte(mallory.ID()), -1)
	oldPEM, _ := json.Marshal(next.PublicPEM())
	newPEM, _ := json.Marshal(mallory.PublicPEM())
	b = bytes.Replace(b, oldPEM, newPEM, 1)
	a.exec(`UPDATE audit_entries SET entry = $2 WHERE seq = $1`, 5, b)
	a.rechain(5, tl.l.opts.Key) // the old key, as if stolen
	rep := verifyDB(t, tl.st, tl.trusted)
	if rep.Bad == nil || rep.Bad.Seq != 5 || !strings.Contains(rep.Bad.Reason, "proof of possession does not verify") {
		t.Fatalf("forged rotation: %+v", rep.Bad)
	}
	t.Logf("detected: %s", rep.Bad.Error())
}
