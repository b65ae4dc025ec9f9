package auth

import (
	"context"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// BenchmarkHashPassword is the cost of one login's argon2id with the
// default parameters (RFC 9106: t=3, 64 MiB, p=4).
func BenchmarkHashPassword(b *testing.B) {
	for b.Loop() {
		if _, err := HashPassword("correct horse battery staple", DefaultHashParams); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuthenticateToken is the hot path of every API request with an
// API token: shape check, sha256, one indexed query.
func BenchmarkAuthenticateToken(b *testing.B) {
	f := newFixture(b, nil)
	ctx := context.Background()
	if _, _, err := f.a.CreateUser(ctx, admin, NewUser{Username: "bot", Roles: Roles(Viewer), NoPassword: true}); err != nil {
		b.Fatal(err)
	}
	_, tok, err := f.a.CreateToken(ctx, admin, NewToken{Username: "bot", Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := f.a.Authenticate(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuthenticateOIDC verifies an SSO token (ES256) with cached keys.
func BenchmarkAuthenticateOIDC(b *testing.B) {
	p := newIdP(b)
	clock := &testClock{now: time.Now().Truncate(time.Second)}
	v := newTestOIDC(b, p, clock, nil)
	tok := p.sign(b, jose.ES256, p.ecKey, "ec-1", p.claims(clock.Now(), nil))
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}
