package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
)

// Bearer secrets writ issues: a prefix naming the kind (so a leaked one is
// recognised by secret scanners and routed without a database query)
// followed by 32 random bytes in unpadded base64url. Only their sha256 is
// stored.
const (
	SessionPrefix = "writ_s_"
	TokenPrefix   = "writ_t_"
	secretBytes   = 32
	secretChars   = 43 // base64url of 32 bytes, unpadded
	// MaxCredentialBytes bounds an Authorization header's credential: an
	// SSO token is a few KiB at most.
	MaxCredentialBytes = 16 << 10
)

// credential kinds
type credKind int

const (
	credMalformed credKind = iota
	credSession
	credToken
	credJWT
)

// newSecret makes a bearer secret of a kind and its hash.
func newSecret(prefix string) (secret string, hash []byte, err error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", nil, fmt.Errorf("random secret: %w", err)
	}
	secret = prefix + base64.RawURLEncoding.EncodeToString(b)
	return secret, hashSecret(secret), nil
}

// hashSecret is what the database stores of a secret.
func hashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

func isBase64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// classify tells what a bearer credential is from its shape alone.
func classify(cred string) credKind {
	switch {
	case len(cred) > MaxCredentialBytes || cred == "":
		return credMalformed
	case strings.HasPrefix(cred, SessionPrefix):
		if rest := cred[len(SessionPrefix):]; len(rest) == secretChars && isBase64URL(rest) {
			return credSession
		}
		return credMalformed
	case strings.HasPrefix(cred, TokenPrefix):
		if rest := cred[len(TokenPrefix):]; len(rest) == secretChars && isBase64URL(rest) {
			return credToken
		}
		return credMalformed
	}
	// A JWS in compact form: three base64url parts, the last (the
	// signature) possibly empty as in alg "none", which OIDC refuses.
	parts := strings.Split(cred, ".")
	if len(parts) == 3 && parts[0] != "" && parts[1] != "" && isBase64URL(parts[0]) && isBase64URL(parts[1]) && isBase64URL(parts[2]) {
		return credJWT
	}
	return credMalformed
}

// BearerCredential extracts the credential of an Authorization header
// ("Bearer <credential>", scheme case-insensitive). ok is false when the
// header is absent; a present header of another scheme yields "".
func BearerCredential(header string) (cred string, ok bool) {
	if header == "" {
		return "", false
	}
	scheme, rest, found := strings.Cut(header, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", true
	}
	return strings.TrimSpace(rest), true
}
