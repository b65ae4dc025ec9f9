package auth

import (
	"errors"
	"strings"
	"testing"
)

var cheap = HashParams{Time: 1, MemoryKiB: 64, Threads: 1}

func TestHashAndVerify(t *testing.T) {
	t.Parallel()
	h, err := HashPassword("correct horse battery", cheap)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("hash %q is not a PHC argon2id string", h)
	}
	h2, _ := HashPassword("correct horse battery", cheap)
	if h == h2 {
		t.Fatal("two hashes of one password are equal: no salt")
	}
	for pw, want := range map[string]bool{
		"correct horse battery":                 true,
		"correct horse battery ":                false,
		"Correct horse battery":                 false,
		"":                                      false,
		strings.Repeat("x", MaxPasswordBytes+1): false,
	} {
		ok, err := VerifyPassword(pw, h)
		if err != nil || ok != want {
			t.Errorf("VerifyPassword(%.20q) = %v, %v; want %v", pw, ok, err, want)
		}
	}
	if _, err := HashPassword("x", HashParams{Time: 0, MemoryKiB: 64, Threads: 1}); err == nil {
		t.Fatal("time 0 accepted")
	}
}

func TestParsePHCRefusesWhatIsNotArgon2id(t *testing.T) {
	t.Parallel()
	good, _ := HashPassword("a password that is long", cheap)
	parts := strings.Split(good, "$")
	salt, key := parts[4], parts[5]
	for name, h := range map[string]string{
		"empty":           "",
		"bcrypt":          "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy",
		"argon2i":         "$argon2i$v=19$m=64,t=1,p=1$" + salt + "$" + key,
		"old version":     "$argon2id$v=16$m=64,t=1,p=1$" + salt + "$" + key,
		"order":           "$argon2id$v=19$t=1,m=64,p=1$" + salt + "$" + key,
		"leading zero":    "$argon2id$v=19$m=064,t=1,p=1$" + salt + "$" + key,
		"huge memory":     "$argon2id$v=19$m=4194304,t=1,p=1$" + salt + "$" + key,
		"huge time":       "$argon2id$v=19$m=64,t=1000,p=1$" + salt + "$" + key,
		"zero threads":    "$argon2id$v=19$m=64,t=1,p=0$" + salt + "$" + key,
		"padded salt":     "$argon2id$v=19$m=64,t=1,p=1$" + salt + "==$" + key,
		"short key":       "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$AAAA",
		"extra field":     good + "$x",
		"negative":        "$argon2id$v=19$m=-64,t=1,p=1$" + salt + "$" + key,
		"missing dollar":  strings.TrimPrefix(good, "$"),
		"threads overflw": "$argon2id$v=19$m=64,t=1,p=257$" + salt + "$" + key,
	} {
		if _, err := parsePHC(h); !errors.Is(err, errBadHash) {
			t.Errorf("%s: parsePHC(%q) = %v; want errBadHash", name, h, err)
		}
		if ok, err := VerifyPassword("a password that is long", h); ok || err == nil {
			t.Errorf("%s: VerifyPassword matched or did not fail: %v %v", name, ok, err)
		}
	}
	if _, err := parsePHC(good); err != nil {
		t.Fatalf("good hash: %v", err)
	}
}

func FuzzParsePHC(f *testing.F) {
	good, _ := HashPassword("a password that is long", cheap)
	f.Add(good)
	f.Add("$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA")
	f.Add("$argon2id$v=19$m=1,t=1,p=1$$")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := parsePHC(s)
		if err != nil {
			return
		}
		if h.params.validate() != nil || len(h.salt) < 8 || len(h.key) < 16 {
			t.Fatalf("parsed out-of-bounds hash %q: %+v", s, h.params)
		}
	})
}

func TestPasswordRules(t *testing.T) {
	t.Parallel()
	for pw, ok := range map[string]bool{
		"short":                         false,
		"exactly12chr":                  true,
		"ünïcödé-pässwörd":              true,
		"alice-the-analyst":             false, // the username
		"\xff\xfe not utf-8 at all":     false,
		strings.Repeat("a", 1025):       false,
		"twelve chars but with spaces ": true,
	} {
		err := CheckPasswordRules("alice-the-analyst", pw)
		if (err == nil) != ok || (err != nil && !errors.Is(err, ErrInvalid)) {
			t.Errorf("CheckPasswordRules(%.20q) = %v; want ok=%v", pw, err, ok)
		}
	}
}

func TestRandomPassword(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 100 {
		pw, err := RandomPassword()
		if err != nil {
			t.Fatal(err)
		}
		if len(pw) != 24+3 || strings.Count(pw, "-") != 3 {
			t.Fatalf("password %q is not 4 groups of 6", pw)
		}
		for _, c := range strings.ReplaceAll(pw, "-", "") {
			if !strings.ContainsRune(passwordAlphabet, c) {
				t.Fatalf("password %q has %q outside the alphabet", pw, c)
			}
		}
		if err := CheckPasswordRules("admin", pw); err != nil {
			t.Fatalf("a random password breaks the rules: %v", err)
		}
		if seen[pw] {
			t.Fatalf("password %q made twice", pw)
		}
		seen[pw] = true
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	s, _, _ := newSecret(SessionPrefix)
	tok, _, _ := newSecret(TokenPrefix)
	for cred, want := range map[string]credKind{
		s:                           credSession,
		tok:                         credToken,
		s[:len(s)-1]:                credMalformed,
		tok + "A":                   credMalformed,
		SessionPrefix + "!" + s[8:]: credMalformed,
		"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln": credJWT,
		"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.":      credJWT, // alg none: refused by OIDC, not here
		"eyJhbGciOiJSUzI1NiJ9..c2ln":                credMalformed,
		"a.b.c.d":                                   credMalformed,
		"hunter2":                                   credMalformed,
		"":                                          credMalformed,
		strings.Repeat("a", MaxCredentialBytes+1): credMalformed,
	} {
		if got := classify(cred); got != want {
			t.Errorf("classify(%.30q) = %d; want %d", cred, got, want)
		}
	}
	if len(s) != len(SessionPrefix)+secretChars {
		t.Fatalf("session secret %d characters", len(s))
	}
}

func TestBearerCredential(t *testing.T) {
	t.Parallel()
	for h, want := range map[string]struct {
		cred string
		ok   bool
	}{
		"":                 {"", false},
		"Bearer abc":       {"abc", true},
		"bearer  abc ":     {"abc", true},
		"Basic YWxpY2U6eA": {"", true},
		"Bearer":           {"", true},
	} {
		cred, ok := BearerCredential(h)
		if cred != want.cred || ok != want.ok {
			t.Errorf("BearerCredential(%q) = %q, %v; want %q, %v", h, cred, ok, want.cred, want.ok)
		}
	}
}

func TestRoleSet(t *testing.T) {
	t.Parallel()
	s, err := ParseRoles([]string{"admin", "viewer"})
	if err != nil || s.String() != "viewer,admin" || !s.Has(Admin) || s.Has(Analyst) {
		t.Fatalf("ParseRoles = %v, %v", s, err)
	}
	if _, err := ParseRoles([]string{"root"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown role: %v", err)
	}
	if !Roles(Viewer).Subset(s) || Roles(Executor).Subset(s) || RoleSet(0).String() != "none" {
		t.Fatal("subset or empty set wrong")
	}
	b, _ := s.MarshalJSON()
	if string(b) != `["viewer","admin"]` {
		t.Fatalf("JSON %s", b)
	}
}

// FuzzBearer feeds Authorization headers to the parsing every request
// goes through before any query.
func FuzzBearer(f *testing.F) {
	s, _, _ := newSecret(SessionPrefix)
	f.Add("Bearer " + s)
	f.Add("bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")
	f.Add("Basic YWRtaW46YWRtaW4=")
	f.Add("Bearer writ_t_" + strings.Repeat("-", 43))
	f.Fuzz(func(t *testing.T, header string) {
		cred, present := BearerCredential(header)
		if !present && header != "" {
			t.Fatalf("header %q read as absent", header)
		}
		switch classify(cred) {
		case credSession, credToken:
			if len(cred) != len(SessionPrefix)+secretChars || !isBase64URL(cred[len(SessionPrefix):]) {
				t.Fatalf("%q accepted as a writ secret", cred)
			}
		case credJWT:
			if strings.Count(cred, ".") != 2 || len(cred) > MaxCredentialBytes {
				t.Fatalf("%q accepted as a JWT", cred)
			}
		}
	})
}
