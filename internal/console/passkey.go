package console

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/writ-sec/writ/internal/approval"
)

// relyingPartyFor is the WebAuthn relying party of a request: the
// configured origin, or, when none is configured and the browser reached
// the console as localhost, the request's own origin.
func (c *Console) relyingPartyFor(r *http.Request) (relyingParty, error) {
	if c.rp.origin != "" {
		return c.rp, nil
	}
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		host = r.Host
	}
	if host != "localhost" {
		return relyingParty{}, errors.New("passkeys need the console's public origin: set console.origin in writ.yaml (or open the console as http://localhost:PORT)")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return relyingParty{origin: scheme + "://" + r.Host, id: "localhost", secure: r.TLS != nil}, nil
}

// passkeysUsable says why passkeys cannot be used here, or "".
func (c *Console) passkeysUsable(r *http.Request) string {
	if _, err := c.relyingPartyFor(r); err != nil {
		return err.Error()
	}
	return ""
}

// passkeyUser is the person registering, for go-webauthn.
type passkeyUser struct{ id string }

func (u passkeyUser) WebAuthnID() []byte {
	h := sha256.Sum256([]byte("writ person " + u.id))
	return h[:16]
}
func (u passkeyUser) WebAuthnName() string                       { return u.id }
func (u passkeyUser) WebAuthnDisplayName() string                { return u.id }
func (u passkeyUser) WebAuthnCredentials() []webauthn.Credential { return nil }

// registrationChallenge is the session's registration challenge: an HMAC
// under the session secret, so that no state is kept between the two
// steps (any replica can finish a ceremony) and no other session can
// answer it.
func registrationChallenge(cred string) protocol.URLEncodedBase64 {
	m := hmac.New(sha256.New, []byte(cred))
	m.Write([]byte("writ console passkey registration v1"))
	return m.Sum(nil)
}

// passkeyAlgorithms are the credential algorithms approvals accept.
var passkeyAlgorithms = []protocol.CredentialParameter{
	{Type: protocol.PublicKeyCredentialType, Algorithm: -7}, // ES256
	{Type: protocol.PublicKeyCredentialType, Algorithm: -8}, // EdDSA
}

// ceremony is the relying party of a request and its go-webauthn
// configuration; when there is none, it has answered the request.
func (c *Console) ceremony(w http.ResponseWriter, r *http.Request) (relyingParty, *webauthn.WebAuthn, bool) {
	rp, err := c.relyingPartyFor(r)
	if err != nil {
		problemJSON(w, http.StatusConflict, "no_passkeys", err.Error())
		return rp, nil, false
	}
	wa, err := webauthn.New(&webauthn.Config{RPID: rp.id, RPDisplayName: "writ", RPOrigins: []string{rp.origin}})
	if err != nil {
		c.fail(w, r, "set up passkeys", err)
		return rp, nil, false
	}
	return rp, wa, true
}

// session is the registration's go-webauthn session, made again from the
// request alone.
func registrationSession(rp relyingParty, cred, person string) webauthn.SessionData {
	return webauthn.SessionData{
		Challenge: registrationChallenge(cred).String(), RelyingPartyID: rp.id, UserID: passkeyUser{person}.WebAuthnID(),
		UserVerification: protocol.VerificationRequired, CredParams: passkeyAlgorithms,
	}
}

// passkeyPage explains passkeys and runs the registration.
func (c *Console) passkeyPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "passkey.html", "Your passkey", map[string]any{
		"Person": personID(principal(r)), "Unusable": c.passkeysUsable(r),
	})
}

// passkeyOptions starts a registration: the creation options for
// navigator.credentials.create, a discoverable credential with user
// verification, ES256 or EdDSA.
func (c *Console) passkeyOptions(w http.ResponseWriter, r *http.Request) {
	_, wa, ok := c.ceremony(w, r)
	if !ok {
		return
	}
	cred, _ := c.Credential(r)
	person := personID(principal(r))
	creation, _, err := wa.BeginRegistration(passkeyUser{person},
		webauthn.WithCredentialParameters(passkeyAlgorithms),
		webauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{
			ResidentKey: protocol.ResidentKeyRequirementRequired, RequireResidentKey: protocol.ResidentKeyRequired(),
			UserVerification: protocol.VerificationRequired,
		}),
		webauthn.WithConveyancePreference(protocol.PreferNoAttestation),
		func(o *protocol.PublicKeyCredentialCreationOptions) error {
			o.Challenge = registrationChallenge(cred)
			return nil
		})
	if err != nil {
		c.fail(w, r, "start the passkey registration", err)
		return
	}
	writeJSON(w, http.StatusOK, creation)
}

// passkeyRegister finishes a registration and answers the approvers file
// line for the new passkey. Nothing is stored: the passkey counts once an
// admin adopts the line into .writ/approvers.yaml like any keyring change.
func (c *Console) passkeyRegister(w http.ResponseWriter, r *http.Request) {
	rp, wa, ok := c.ceremony(w, r)
	if !ok {
		return
	}
	parsed, err := protocol.ParseCredentialCreationResponseBody(r.Body)
	if err != nil {
		problemJSON(w, http.StatusBadRequest, "bad_request", "the passkey's answer is not a registration: "+describeWebAuthnError(err))
		return
	}
	cred, _ := c.Credential(r)
	person := personID(principal(r))
	credential, err := wa.CreateCredential(passkeyUser{person}, registrationSession(rp, cred, person), parsed)
	if err != nil {
		problemJSON(w, http.StatusBadRequest, "refused", "the registration does not verify: "+describeWebAuthnError(err))
		return
	}
	line, err := approval.WebAuthnKeyLine(rp.id, rp.origin, credential.ID, credential.PublicKey, person+" console passkey")
	if err != nil {
		problemJSON(w, http.StatusBadRequest, "refused", err.Error())
		return
	}
	var entry bytes.Buffer
	fmt.Fprintf(&entry, "  - id: %s\n    roles: [approver]\n    keys:\n      - %q\n", person, line)
	writeJSON(w, http.StatusOK, map[string]string{"line": line, "entry": entry.String(),
		"note": "Nothing is stored yet: this passkey counts once an admin adds the line to your entry in .writ/approvers.yaml (a change to .writ/, adopted with admin approvals)."})
}

// describeWebAuthnError is go-webauthn's error with its details.
func describeWebAuthnError(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) && pe.DevInfo != "" {
		return strings.TrimSpace(pe.Details + ": " + pe.DevInfo)
	}
	return err.Error()
}
