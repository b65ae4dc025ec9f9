package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/keys"
)

func TestKeygen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	prefix := filepath.Join(dir, "alice")
	code, out, errOut := runCLI(t, "keygen", "--out", prefix)
	if code != exitOK {
		t.Fatalf("keygen: %d %s", code, errOut)
	}
	fi, err := os.Stat(prefix + ".key")
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode %v, %v", fi.Mode(), err)
	}
	privPEM, _ := os.ReadFile(prefix + ".key")
	pubPEM, _ := os.ReadFile(prefix + ".pub")
	priv, err := keys.ParsePrivate(privPEM, nil)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := keys.ParsePublic(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := keys.ID(pub)
	privID, _ := keys.ID(priv.Public())
	if id != privID || !strings.Contains(out, "key id:      "+id) || !strings.Contains(out, "ed25519") {
		t.Fatalf("output %q; id %s", out, id)
	}
	// No silent overwrite.
	if code, _, errOut := runCLI(t, "keygen", "--out", prefix); code != exitUsage || !strings.Contains(errOut, "--force") {
		t.Fatalf("overwrite: %d %q", code, errOut)
	}
	if code, _, _ := runCLI(t, "keygen", "--out", prefix, "--force", "--algorithm", "ecdsa-p384"); code != exitOK {
		t.Fatalf("force: %d", code)
	}
}

func TestKeygenPassword(t *testing.T) {
	t.Parallel()
	prefix := filepath.Join(t.TempDir(), "audit")
	code, _, errOut := runCLIEnv(t, map[string]string{"WRIT_KEY_PASSWORD": "s3cret-pass"}, "keygen", "--out", prefix, "--password")
	if code != exitOK {
		t.Fatalf("keygen: %d %s", code, errOut)
	}
	privPEM, _ := os.ReadFile(prefix + ".key")
	if !strings.Contains(string(privPEM), "ENCRYPTED PRIVATE KEY") {
		t.Fatal("key not encrypted")
	}
	if _, err := keys.ParsePrivate(privPEM, []byte("s3cret-pass")); err != nil {
		t.Fatal(err)
	}
	// Without a password source and no terminal: a clear usage error.
	code, _, errOut = runCLI(t, "keygen", "--out", prefix+"2", "--password")
	if code != exitUsage || !strings.Contains(errOut, "WRIT_KEY_PASSWORD") {
		t.Fatalf("no password: %d %q", code, errOut)
	}
	if code, _, _ := runCLI(t, "keygen", "--out", prefix+"3", "--algorithm", "dsa"); code != exitUsage {
		t.Fatalf("bad algorithm: %d", code)
	}
}
