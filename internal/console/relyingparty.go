package console

import (
	"fmt"
	"net/url"
	"strings"
)

// relyingParty is the console's WebAuthn identity: the origin browsers
// reach it at and its host as the relying party id. A passkey is bound to
// both; the keyring line made at registration names them, and an
// approval's signature verifies only with them.
type relyingParty struct {
	origin string // "" when not configured
	id     string // the origin's host
	secure bool   // https
}

func newRelyingParty(origin string) (relyingParty, error) {
	if origin == "" {
		return relyingParty{}, nil
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return relyingParty{}, fmt.Errorf("console origin %q: want scheme://host[:port] and nothing else", origin)
	}
	host := u.Hostname()
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && (host == "localhost" || host == "127.0.0.1"):
	default:
		return relyingParty{}, fmt.Errorf("console origin %q: must be https (http only for localhost)", origin)
	}
	// Browsers serialize an origin in lower case, without a default port.
	hostport := strings.ToLower(u.Host)
	if u.Port() == "443" && u.Scheme == "https" || u.Port() == "80" && u.Scheme == "http" {
		hostport = strings.ToLower(host)
	}
	return relyingParty{origin: u.Scheme + "://" + hostport, id: strings.ToLower(host), secure: u.Scheme == "https"}, nil
}
