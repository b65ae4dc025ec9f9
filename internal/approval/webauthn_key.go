package approval

import (
	"crypto"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unicode"

	"github.com/go-webauthn/webauthn/protocol/webauthncose"
	"golang.org/x/net/publicsuffix"

	"github.com/writ-sec/writ/internal/keys"
)

// Passkeys (docs/approvals.md, Passkeys (WebAuthn)): a keys: entry of the
// approvers file may be a WebAuthn credential, one line
//
//	webauthn rp=<rpId> origin=<origin> cred=<credential id> key=<COSE key> [comment]
//
// (credential id and COSE_Key base64url without padding). Its signatures
// are WebAuthn assertions over WebAuthnChallenge of the payload
// (webauthn.go).

// WebAuthnLinePrefix is the first word of a webauthn keyring line.
const WebAuthnLinePrefix = "webauthn"

// WebAuthnKeyIDPrefix prefixes the base64url credential id in the keyid of
// a passkey's envelope signatures and in its Key.DSSEKeyID.
const WebAuthnKeyIDPrefix = "webauthn:"

// Algorithm names of passkeys (Key.Algorithm).
const (
	WebAuthnES256   = "webauthn-es256"
	WebAuthnEd25519 = "webauthn-ed25519"
)

// Bounds of a webauthn keyring line's parts. A credential id is at most
// 1023 bytes (WebAuthn §5.1, rawId); a COSE_Key of an accepted algorithm
// is under 100 bytes.
const (
	maxCredentialIDBytes = 1023
	maxCOSEKeyBytes      = 1024
	maxWebAuthnLine      = 16 << 10
	maxWebAuthnComment   = 256
)

// WebAuthnKey is a passkey as the approvers file registers it.
type WebAuthnKey struct {
	// RPID is the relying party id the credential is scoped to (a host
	// name, e.g. writ.example.com).
	RPID string
	// Origin is the origin of the console that signs with it, e.g.
	// https://writ.example.com or https://writ.example.com:8443.
	Origin string
	// CredentialID is the credential's raw id (allowCredentials' id).
	CredentialID []byte
	// COSEKey is the credential public key as the authenticator returned
	// it at registration (a COSE_Key, CBOR).
	COSEKey []byte
	// Comment is the line's free text after the fields; "" when none.
	Comment string

	public    crypto.PublicKey // *ecdsa.PublicKey (P-256) or ed25519.PublicKey
	algorithm string           // WebAuthnES256 or WebAuthnEd25519
}

// KeyID is the keyid of the credential's envelope signatures, also its
// Key.DSSEKeyID: "webauthn:" and the base64url (unpadded) credential id.
func (w *WebAuthnKey) KeyID() string { return WebAuthnKeyID(w.CredentialID) }

// Public is the credential's public key: *ecdsa.PublicKey (P-256) or
// ed25519.PublicKey.
func (w *WebAuthnKey) Public() crypto.PublicKey { return w.public }

// Algorithm is WebAuthnES256 or WebAuthnEd25519.
func (w *WebAuthnKey) Algorithm() string { return w.algorithm }

// String is the keyring line.
func (w *WebAuthnKey) String() string {
	line := fmt.Sprintf("%s rp=%s origin=%s cred=%s key=%s", WebAuthnLinePrefix, w.RPID, w.Origin,
		b64url.EncodeToString(w.CredentialID), b64url.EncodeToString(w.COSEKey))
	if w.Comment != "" {
		line += " " + w.Comment
	}
	return line
}

// WebAuthnKeyID is the keyid of a credential's signatures: "webauthn:" and
// its id in base64url without padding.
func WebAuthnKeyID(credentialID []byte) string {
	return WebAuthnKeyIDPrefix + b64url.EncodeToString(credentialID)
}

// b64url is base64url without padding, strict: what WebAuthn and its JSON
// serializations use for binary values.
var b64url = base64.RawURLEncoding.Strict()

// IsWebAuthnLine reports whether a keys: entry is meant as a webauthn line:
// its first word is "webauthn".
func IsWebAuthnLine(text []byte) bool {
	s := strings.TrimLeft(string(text), " \t\r\n")
	rest, ok := strings.CutPrefix(s, WebAuthnLinePrefix)
	return ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t' || rest[0] == '\r' || rest[0] == '\n')
}

// WebAuthnKeyLine makes the keyring line of a passkey registered in the
// console: rpID and origin of the console, the credential's raw id and
// its COSE public key (from the attestation's authenticator data), and an
// optional one-line comment. The line is parsed back, so an unaccepted
// relying party, origin or key algorithm is an error here.
func WebAuthnKeyLine(rpID, origin string, credentialID, coseKey []byte, comment string) (string, error) {
	comment = strings.Join(strings.Fields(comment), " ")
	w := &WebAuthnKey{RPID: rpID, Origin: origin, CredentialID: credentialID, COSEKey: coseKey, Comment: comment}
	for _, v := range []string{rpID, origin} {
		if v == "" || strings.ContainsFunc(v, unicode.IsSpace) {
			return "", fmt.Errorf("webauthn key line: %q: relying party id and origin are single words", v)
		}
	}
	line := w.String()
	if _, err := ParseWebAuthnKeyLine(line); err != nil {
		return "", err
	}
	return line, nil
}

// ParseWebAuthnKeyLine parses one webauthn keyring line strictly: the
// fields rp, origin, cred and key, in any order, each once, then an
// optional comment; rp a host name, origin https://HOST[:PORT] (or
// http://localhost / http://127.0.0.1 with any port) whose host is rp or a
// subdomain of it; key an ES256 (P-256) or EdDSA (Ed25519) COSE_Key.
func ParseWebAuthnKeyLine(line string) (*WebAuthnKey, error) {
	w, err := parseWebAuthnLine(line)
	if err != nil {
		return nil, fmt.Errorf("parse webauthn key line: %w", err)
	}
	return w, nil
}

var webauthnFields = []string{"rp", "origin", "cred", "key"}

func parseWebAuthnLine(line string) (*WebAuthnKey, error) {
	text := strings.TrimSpace(line)
	switch {
	case len(text) > maxWebAuthnLine:
		return nil, fmt.Errorf("%d bytes; the limit is %d", len(text), maxWebAuthnLine)
	case strings.ContainsAny(text, "\r\n"):
		return nil, errors.New("one key per line: the text spans several lines")
	case strings.ContainsFunc(text, func(r rune) bool { return unicode.IsControl(r) && r != '\t' }):
		return nil, errors.New("the line holds control characters")
	}
	words := strings.Fields(text)
	if len(words) == 0 || words[0] != WebAuthnLinePrefix {
		return nil, fmt.Errorf("the line does not start with %q", WebAuthnLinePrefix)
	}
	words = words[1:]
	values := map[string]string{}
	i := 0
	for ; i < len(words) && len(values) < len(webauthnFields); i++ {
		name, value, ok := strings.Cut(words[i], "=")
		if !ok || !isWebAuthnField(name) {
			return nil, fmt.Errorf("%q is not one of the fields %s (the comment follows all four)", words[i], fieldList())
		}
		if _, dup := values[name]; dup {
			return nil, fmt.Errorf("field %s is given twice", name)
		}
		if value == "" {
			return nil, fmt.Errorf("field %s is empty", name)
		}
		values[name] = value
	}
	var missing []string
	for _, f := range webauthnFields {
		if _, ok := values[f]; !ok {
			missing = append(missing, f+"=")
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing %s (a webauthn line has %s)", strings.Join(missing, ", "), fieldList())
	}
	comment := words[i:]
	for _, c := range comment {
		if name, _, ok := strings.Cut(c, "="); ok && isWebAuthnField(name) {
			return nil, fmt.Errorf("field %s is given twice", name)
		}
	}
	w := &WebAuthnKey{RPID: values["rp"], Origin: values["origin"], Comment: strings.Join(comment, " ")}
	if len(w.Comment) > maxWebAuthnComment {
		return nil, fmt.Errorf("the comment is %d bytes; the limit is %d", len(w.Comment), maxWebAuthnComment)
	}
	if err := checkRPID(w.RPID); err != nil {
		return nil, err
	}
	if err := checkOrigin(w.Origin, w.RPID); err != nil {
		return nil, err
	}
	var err error
	if w.CredentialID, err = decodeField("cred", values["cred"], maxCredentialIDBytes); err != nil {
		return nil, err
	}
	if w.COSEKey, err = decodeField("key", values["key"], maxCOSEKeyBytes); err != nil {
		return nil, err
	}
	if w.public, w.algorithm, err = parseCOSEKey(w.COSEKey); err != nil {
		return nil, err
	}
	return w, nil
}

func isWebAuthnField(name string) bool {
	for _, f := range webauthnFields {
		if name == f {
			return true
		}
	}
	return false
}

func fieldList() string { return "rp=, origin=, cred= and key=" }

func decodeField(name, value string, limit int) ([]byte, error) {
	if len(value) > base64.RawURLEncoding.EncodedLen(limit) {
		return nil, fmt.Errorf("%s= is longer than %d bytes", name, limit)
	}
	b, err := b64url.DecodeString(value)
	if err != nil {
		return nil, fmt.Errorf("%s= is not base64url without padding: %v", name, err)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%s= is empty", name)
	}
	return b, nil
}

// hostLabelRE is one label of a host name, lowercase ASCII (an IDN in its
// xn-- form).
var hostLabelRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`) })

// checkRPID accepts a lowercase DNS host name (localhost included) or the
// IPv4 loopback 127.0.0.1; other IP addresses, and names whose last label
// is numeric (which browsers read as IPv4 addresses), are refused.
func checkRPID(rp string) error {
	if rp == "127.0.0.1" {
		return nil
	}
	if net.ParseIP(strings.Trim(rp, "[]")) != nil {
		return fmt.Errorf("rp=%s: a relying party id is a host name, not an IP address", rp)
	}
	if len(rp) > 253 {
		return fmt.Errorf("rp=%s: longer than 253 characters", rp)
	}
	labels := strings.Split(rp, ".")
	for _, l := range labels {
		if !hostLabelRE().MatchString(l) {
			return fmt.Errorf("rp=%s is not a host name (lowercase letters, digits and hyphens, in labels separated by dots)", rp)
		}
	}
	if _, err := strconv.Atoi(labels[len(labels)-1]); err == nil {
		return fmt.Errorf("rp=%s: a host name does not end in a number", rp)
	}
	return nil
}

// checkOrigin accepts the serialized origin browsers put in clientDataJSON:
// https://HOST[:PORT] without the default port, or http:// for localhost
// and 127.0.0.1 (which browsers treat as secure contexts). HOST is rp, or
// a subdomain of rp when rp is not a public suffix (HTML's "registrable
// domain suffix of or is equal to", which WebAuthn applies).
func checkOrigin(origin, rp string) error {
	u, err := url.Parse(origin)
	if err != nil {
		return fmt.Errorf("origin=%s is not an origin: %v", origin, err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return fmt.Errorf("origin=%s: the scheme is https (http only for localhost and 127.0.0.1)", origin)
	}
	host, port := u.Hostname(), u.Port()
	want := u.Scheme + "://" + host
	if port != "" {
		want += ":" + port
	}
	if u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Path != "" || u.ForceQuery || strings.HasSuffix(origin, "#") || origin != want || origin != strings.ToLower(origin) {
		return fmt.Errorf("origin=%s is not an origin: write it as scheme://host[:port], lowercase, with no path, user, query or fragment", origin)
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		switch {
		case err != nil || n < 1 || n > 65535 || port[0] == '0':
			return fmt.Errorf("origin=%s: port %s is not a port number", origin, port)
		case u.Scheme == "https" && n == 443, u.Scheme == "http" && n == 80:
			return fmt.Errorf("origin=%s: leave out the default port %d, as browsers do", origin, n)
		}
	}
	if u.Scheme == "http" && host != "localhost" && host != "127.0.0.1" {
		return fmt.Errorf("origin=%s: http is allowed only for localhost and 127.0.0.1; use https", origin)
	}
	if host == rp {
		return nil
	}
	if host == "127.0.0.1" || rp == "127.0.0.1" || !strings.HasSuffix(host, "."+rp) {
		return fmt.Errorf("origin=%s: its host %s is neither rp=%s nor a subdomain of it", origin, host, rp)
	}
	if err := checkRPID(host); err != nil {
		return fmt.Errorf("origin=%s: its host: %v", origin, err)
	}
	if ps, _ := publicsuffix.PublicSuffix(rp); ps == rp {
		return fmt.Errorf("rp=%s is a public suffix: a passkey is scoped to a registrable domain (or to the origin's host itself, %s)", rp, host)
	}
	return nil
}

// parseCOSEKey reads a credential public key through go-webauthn's COSE
// parser and accepts ES256 on P-256 and EdDSA on Ed25519 only.
func parseCOSEKey(cose []byte) (crypto.PublicKey, string, error) {
	parsed, err := webauthncose.ParsePublicKey(cose)
	if err != nil {
		return nil, "", fmt.Errorf("key= is not a COSE public key writ accepts: %s", coseErr(err))
	}
	refuse := func(alg int64) error {
		name := webauthncose.COSEAlgorithmIdentifier(alg).String()
		if name != strconv.FormatInt(alg, 10) {
			name += fmt.Sprintf(" (%d)", alg)
		}
		return fmt.Errorf("key= is a key of COSE algorithm %s: writ accepts passkeys of ES256 (-7, P-256) and EdDSA (-8, Ed25519) only", name)
	}
	var pub crypto.PublicKey
	var alg string
	switch k := parsed.(type) {
	case webauthncose.EC2PublicKeyData:
		if webauthncose.COSEAlgorithmIdentifier(k.Algorithm) != webauthncose.AlgES256 || webauthncose.COSEEllipticCurve(k.Curve) != webauthncose.P256 {
			return nil, "", refuse(k.Algorithm)
		}
		ec, err := k.ToECDSA()
		if err != nil {
			return nil, "", fmt.Errorf("key=: %s", coseErr(err))
		}
		pub, alg = ec, WebAuthnES256
	case webauthncose.OKPPublicKeyData:
		if webauthncose.COSEAlgorithmIdentifier(k.Algorithm) != webauthncose.AlgEdDSA || webauthncose.COSEEllipticCurve(k.Curve) != webauthncose.Ed25519 {
			return nil, "", refuse(k.Algorithm)
		}
		pub, alg = ed25519.PublicKey(k.XCoord), WebAuthnEd25519
	case webauthncose.RSAPublicKeyData:
		return nil, "", refuse(k.Algorithm)
	default:
		return nil, "", errors.New("key= is a COSE key of a type writ does not accept: passkeys of ES256 (-7, P-256) and EdDSA (-8, Ed25519) only")
	}
	if err := keys.CheckPublic(pub); err != nil {
		return nil, "", fmt.Errorf("key=: %w", err)
	}
	return pub, alg, nil
}

// newWebAuthnKey parses one webauthn line of the approvers file.
func newWebAuthnKey(text []byte, p *Person) (*Key, error) {
	w, err := ParseWebAuthnKeyLine(string(text))
	if err != nil {
		return nil, err
	}
	id, err := keys.ID(w.public)
	if err != nil {
		return nil, err
	}
	return &Key{ID: id, DSSEKeyID: w.KeyID(), Algorithm: w.algorithm, Public: w.public, WebAuthn: w, Person: p, material: id}, nil
}
