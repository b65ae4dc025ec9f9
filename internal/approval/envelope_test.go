package approval

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/writ-sec/writ/internal/keys"
)

func TestSignParseRoundTrip(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testPeople[:2])
	st := stmt(pred("bob", Approve))
	env := signWith(t, f.priv["bob"], st)
	e, err := Parse(env)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(e.Statement, st) {
		t.Fatalf("statement\n%+v\nwant\n%+v", e.Statement, st)
	}
	if e.KeyID != f.kr.byID["bob"].Keys[0].DSSEKeyID {
		t.Fatalf("keyid %q; want bob's fingerprint", e.KeyID)
	}
	if len(e.SHA256) != 64 || string(e.Raw) != string(env) {
		t.Fatal("raw or digest wrong")
	}
	// The payload is the in-toto Statement v1 JSON with our predicate type.
	var generic map[string]any
	if err := json.Unmarshal(e.Payload, &generic); err != nil {
		t.Fatal(err)
	}
	if generic["_type"] != StatementV1 || generic["predicateType"] != PredicateType {
		t.Fatalf("payload %s", e.Payload)
	}
	pr := generic["predicate"].(map[string]any)
	for _, k := range []string{"decision", "approver", "repository", "pullRequest", "headCommit", "policyDigest", "planDigest", "reason", "issuedAt", "expiresAt"} {
		if _, ok := pr[k]; !ok {
			t.Errorf("predicate lacks %q: %s", k, e.Payload)
		}
	}
}

func TestSignRefusesInvalidStatements(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testPeople[:2])
	s := mustSigner(t, f, "bob")
	p := pred("bob", Approve)
	p.ExpiresAt = time.Time{}
	if _, err := Sign(s, stmt(p)); err == nil || !strings.Contains(err.Error(), "expiresAt") {
		t.Fatalf("err %v", err)
	}
	if _, err := Sign(s, NewStatement(nil, pred("bob", Approve))); err == nil {
		t.Fatal("statement without subjects signed")
	}
	big := pred("bob", Approve)
	big.Reason = strings.Repeat("x", MaxReasonBytes+1)
	if _, err := Sign(s, stmt(big)); err == nil {
		t.Fatal("oversized reason signed")
	}
}

func TestParseStatementV01(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testPeople[:2])
	st := stmt(pred("bob", Approve))
	st.Type = StatementV01
	e, err := Parse(signWith(t, f.priv["bob"], st))
	if err != nil || e.Statement.Type != StatementV01 {
		t.Fatalf("%v %+v", err, e)
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testPeople[:2])
	other := statementJSON(t, stmt(pred("bob", Approve)), func(m map[string]any) { m["predicateType"] = "https://example.com/x" })
	_, err := Parse(signRaw(t, f.priv["bob"], other))
	if !errors.Is(err, ErrMalformed) || !errors.Is(err, ErrNotApproval) {
		t.Fatalf("foreign predicate: %v", err)
	}
	_, err = Parse([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"","signatures":[{"keyid":"","sig":"AA=="}]} trailing`))
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("trailing data: %v", err)
	}
	deep := strings.Repeat("[", 100) + strings.Repeat("]", 100)
	payload := base64.StdEncoding.EncodeToString([]byte(`{"_type":` + deep + `}`))
	_, err = Parse([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"` + payload + `","signatures":[{"keyid":"","sig":"AA=="}]}`))
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("deep nesting: %v", err)
	}
	if err := checkDuplicateKeys([]byte(deep)); err == nil || !strings.Contains(err.Error(), "nested") {
		t.Fatalf("deep nesting in the scanner: %v", err)
	}
}

func TestCheckDuplicateKeys(t *testing.T) {
	t.Parallel()
	for doc, dup := range map[string]bool{
		`{"a":1,"b":2}`:                             false,
		`{"a":1,"a":2}`:                             true,
		`{"a":{"b":1},"c":{"b":2}}`:                 false,
		`{"a":{"b":1,"b":2}}`:                       true,
		`{"a":[{"b":1},{"b":2}]}`:                   false,
		`{"a":[{"b":1,"b":1}]}`:                     true,
		`{"a":[1,2],"b":[3],"a":0}`:                 true,
		`[{"x":1},{"x":1}]`:                         false,
		`{"a":{"x":{}},"b":1,"c":[],"b":2}`:         true,
		`{"a":"\u0062","\u0061":1}`:                 true,
		`{"k":{"k":{"k":1}},"j":{"k":{"k":1}}}`:     false,
		`{"a":"x\"y","a\"":1,"b":"}","b\\":[",{"]}`: false,
		`{"a\"":1,"a\u0022":2}`:                     true,
		`{"s":"{\"a\":1,\"a\":2}"}`:                 false,
	} {
		err := checkDuplicateKeys([]byte(doc))
		if (err != nil) != dup {
			t.Errorf("%s: %v; want duplicate=%v", doc, err, dup)
		}
	}
}

func mustSigner(t *testing.T, f *fixture, who string) signature.Signer {
	t.Helper()
	s, err := keys.Signer(f.priv[who])
	if err != nil {
		t.Fatal(err)
	}
	return s
}
