// Package scim is the SCIM 2.0 backend of suspend_user (RFC 7643 and RFC
// 7644): it finds each target account on a SCIM service provider (an
// identity provider or directory) by userName, e-mail, externalId or id,
// says in its plan whether the account would be suspended, is suspended
// already or does not exist, and suspends by PATCHing the account's
// `active` attribute to false (true on revert).
//
// Requests carry a bearer token or an OAuth 2.0 client-credentials token
// (golang.org/x/oauth2/clientcredentials); TLS is always verified, an
// optional CA file replaces the system roots, redirects are refused and
// responses are size-limited. Rate limits (429 with Retry-After), 5xx
// answers and timeouts are retried with backoff within bounds, then
// reported as action.ErrTransient so the reconciler retries later. Tokens
// and client secrets never appear in errors, plans, results or logs.
package scim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2/clientcredentials"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/action/outbound"
	"github.com/writ-sec/writ/internal/config"
	"github.com/writ-sec/writ/internal/playbook"
)

// Match is the attribute a target names.
type Match string

// Ways to find an account.
const (
	MatchUserName   Match = "userName"   // filter userName eq "TARGET" (case-insensitive, RFC 7643 §4.1.1)
	MatchEmail      Match = "email"      // filter emails[value eq "TARGET"]
	MatchExternalID Match = "externalId" // filter externalId eq "TARGET"
	MatchID         Match = "id"         // GET /Users/TARGET
)

// Ambiguous is the planned result of a target that matches more than one
// account: writ never guesses which one to suspend.
const Ambiguous = "ambiguous"

// OAuth is the OAuth 2.0 client-credentials grant (RFC 6749 §4.4).
type OAuth struct {
	ClientID     string
	ClientSecret config.Secret
	TokenURL     string
	Scopes       []string
}

// Options configures a SCIM service provider.
type Options struct {
	// Name identifies the backend in plans, e.g. "scim:okta".
	Name string
	// BaseURL is the SCIM base (the Users endpoint is BaseURL/Users),
	// e.g. https://idp.example.com/scim/v2.
	BaseURL string
	// Match is the attribute targets name; default userName.
	Match Match
	// Token is a static bearer token; OAuth gets tokens instead. Exactly
	// one of them is required.
	Token config.Secret
	OAuth *OAuth
	// CAFile, when set, holds the only CA certificates trusted for the
	// service provider and the token endpoint (PEM).
	CAFile string
	// AllowHTTP permits http:// URLs (a sidecar on loopback); without it
	// only https:// is accepted.
	AllowHTTP bool
	// Timeout of one HTTP request; default 10s.
	Timeout time.Duration
	// Retries after the first attempt for 429, 5xx and network errors;
	// default 3, -1 for none.
	Retries int
	// RetryBase is the first backoff, doubled on each retry; default 500ms.
	RetryBase time.Duration
	// MaxRetryWait is the longest Retry-After honoured in place; a longer
	// one ends the call with action.ErrTransient. Default 30s.
	MaxRetryWait time.Duration
	// MaxResponseBytes bounds a response body; default 1 MiB.
	MaxResponseBytes int64
	// Logger receives request and retry records (never a token).
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.Name == "" {
		o.Name = "scim"
	}
	if o.Match == "" {
		o.Match = MatchUserName
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	switch {
	case o.Retries == 0:
		o.Retries = 3
	case o.Retries < 0:
		o.Retries = 0
	}
	if o.RetryBase == 0 {
		o.RetryBase = 500 * time.Millisecond
	}
	if o.MaxRetryWait == 0 {
		o.MaxRetryWait = 30 * time.Second
	}
	if o.MaxResponseBytes == 0 {
		o.MaxResponseBytes = 1 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

func (o *Options) validate() error {
	if err := checkURL("url", o.BaseURL, o.AllowHTTP); err != nil {
		return err
	}
	switch o.Match {
	case MatchUserName, MatchEmail, MatchExternalID, MatchID:
	default:
		return fmt.Errorf("scim: match %q is not one of userName, email, externalId, id", o.Match)
	}
	switch {
	case o.Token.Value() != "" && o.OAuth != nil:
		return errors.New("scim: give a bearer token or OAuth client credentials, not both")
	case o.Token.Value() == "" && o.OAuth == nil:
		return errors.New("scim: a bearer token (tokenEnv or tokenFile) or OAuth client credentials (oauth) are required")
	}
	if a := o.OAuth; a != nil {
		if a.ClientID == "" {
			return errors.New("scim: oauth.clientId is required")
		}
		if a.ClientSecret.Value() == "" {
			return errors.New("scim: oauth client secret (clientSecretEnv or clientSecretFile) is required")
		}
		if err := checkURL("oauth.tokenURL", a.TokenURL, o.AllowHTTP); err != nil {
			return err
		}
	}
	if err := outbound.CheckLimits(o.Timeout, o.Retries, o.RetryBase, o.MaxRetryWait, o.MaxResponseBytes); err != nil {
		return fmt.Errorf("scim: %w", err)
	}
	return nil
}

// checkURL accepts absolute https URLs (http with allowHTTP) without
// credentials, query or fragment.
func checkURL(field, s string, allowHTTP bool) error {
	u, err := url.Parse(s)
	if err != nil || s == "" {
		return fmt.Errorf("scim: %s %q is not a URL", field, s)
	}
	switch {
	case u.Scheme == "http" && !allowHTTP:
		return fmt.Errorf("scim: %s %s: http:// needs allowInsecureHTTP; use https://", field, u.Redacted())
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("scim: %s %q must be an https:// URL", field, u.Redacted())
	case u.Host == "":
		return fmt.Errorf("scim: %s %q has no host", field, u.Redacted())
	case u.User != nil:
		return fmt.Errorf("scim: %s must not hold credentials; use tokenEnv, tokenFile or oauth", field)
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("scim: %s %s must not have a query or fragment", field, u.Redacted())
	}
	return nil
}

// Backend is a SCIM service provider.
type Backend struct {
	opts   Options
	client *http.Client
	auth   *auth
	users  string // BaseURL/Users
}

var _ action.Backend = (*Backend)(nil)

// New checks the options and returns the backend. It sends nothing until
// the first plan.
func New(opts Options) (*Backend, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	client, err := outbound.NewClient(opts.CAFile)
	if err != nil {
		return nil, fmt.Errorf("scim: %w", err)
	}
	a := &auth{bearer: opts.Token.Value()}
	if o := opts.OAuth; o != nil {
		tokenClient := *client
		tokenClient.Timeout = opts.Timeout
		a.http = &tokenClient
		a.oauth = &clientcredentials.Config{
			ClientID: o.ClientID, ClientSecret: o.ClientSecret.Value(), TokenURL: o.TokenURL, Scopes: o.Scopes,
		}
	}
	return &Backend{opts: opts, client: client, auth: a, users: strings.TrimRight(opts.BaseURL, "/") + "/Users"}, nil
}

// Name identifies the backend.
func (b *Backend) Name() string { return b.opts.Name }

// LogValue names the backend's settings, never its secrets.
func (b *Backend) LogValue() slog.Value {
	auth := "bearer"
	if b.opts.OAuth != nil {
		auth = "oauth2"
	}
	return slog.GroupValue(slog.String("name", b.opts.Name), slog.String("url", b.opts.BaseURL),
		slog.String("match", string(b.opts.Match)), slog.String("auth", auth))
}

// Validate checks every target is an identity (a user name, e-mail address
// or id) and that no params are given.
func (b *Backend) Validate(req action.Request) error {
	if len(req.Targets) == 0 {
		return errors.New("no targets")
	}
	for _, t := range req.Targets {
		if _, err := playbook.ParseTarget(playbook.TargetIdentity, t); err != nil {
			return fmt.Errorf("target %v", err)
		}
	}
	if len(req.Params) > 0 {
		return errors.New("the scim backend takes no params")
	}
	return nil
}

// user is the part of a SCIM User resource writ reads.
type user struct {
	ID         string `json:"id"`
	UserName   string `json:"userName"`
	ExternalID string `json:"externalId"`
	Emails     []struct {
		Value string `json:"value"`
	} `json:"emails"`
	// Active absent means active (RFC 7643 §4.1.1 defines no default; every
	// provider treats an account without it as enabled).
	Active *bool `json:"active"`
}

func (u *user) suspended() bool { return u.Active != nil && !*u.Active }

// matches reports whether the resource really is the target: a provider
// that ignores the filter must not make writ suspend someone else.
func (u *user) matches(m Match, target string) bool {
	switch m {
	case MatchUserName:
		return strings.EqualFold(u.UserName, target)
	case MatchEmail:
		for _, e := range u.Emails {
			if strings.EqualFold(e.Value, target) {
				return true
			}
		}
		return false
	case MatchExternalID:
		return u.ExternalID == target
	}
	return u.ID == target
}

// lookup is what finding a target gave: a user, nothing, or several.
type lookup struct {
	user  *user
	count int // matches; 0 not found, >1 ambiguous
}

func (l lookup) describe(m Match, target string) string {
	if l.count == 0 {
		return fmt.Sprintf("no SCIM user with %s %q", m, target)
	}
	return fmt.Sprintf("%d SCIM users match %s %q", l.count, m, target)
}

// filterValue quotes a target for a SCIM filter (RFC 7644 §3.4.2.2: a JSON
// string).
func filterValue(s string) string {
	q, _ := json.Marshal(s)
	return string(q)
}

// find looks a target up on the service provider.
func (b *Backend) find(ctx context.Context, target string) (lookup, error) {
	if b.opts.Match == MatchID {
		resp, err := b.do(ctx, http.MethodGet, b.users+"/"+url.PathEscape(target), nil)
		if err != nil {
			return lookup{}, err
		}
		switch resp.status {
		case http.StatusOK:
			var u user
			if err := json.Unmarshal(resp.body, &u); err != nil {
				return lookup{}, fmt.Errorf("scim: user %s: the response is not a SCIM User: %v", target, err)
			}
			if !u.matches(MatchID, target) {
				return lookup{}, fmt.Errorf("scim: asked for user id %q, the provider answered with id %q", target, outbound.Clean(u.ID))
			}
			return lookup{user: &u, count: 1}, nil
		case http.StatusNotFound:
			return lookup{}, nil
		}
		return lookup{}, fmt.Errorf("scim: GET user %s: %s", target, resp.describe())
	}
	var f string
	switch b.opts.Match {
	case MatchEmail:
		// The value-path form (RFC 7644 §3.4.2.2) matches any of the
		// user's addresses.
		f = "emails[value eq " + filterValue(target) + "]"
	case MatchExternalID:
		f = "externalId eq " + filterValue(target)
	default:
		f = "userName eq " + filterValue(target)
	}
	q := url.Values{}
	q.Set("filter", f)
	q.Set("count", "2") // two are enough to tell one from many
	resp, err := b.do(ctx, http.MethodGet, b.users+"?"+q.Encode(), nil)
	if err != nil {
		return lookup{}, err
	}
	if resp.status != http.StatusOK {
		hint := ""
		if resp.status == http.StatusNotFound {
			hint = "; is the url setting the SCIM base (…/scim/v2)?"
		}
		return lookup{}, fmt.Errorf("scim: search %s: %s%s", b.users, resp.describe(), hint)
	}
	return parseList(resp.body, b.opts.Match, target)
}

// parseList reads a ListResponse (RFC 7644 §3.4.2) of a search for one
// target. It returns a user only when exactly one resource matches the
// target itself, whatever the provider did with the filter.
func parseList(body []byte, m Match, target string) (lookup, error) {
	var list struct {
		TotalResults int    `json:"totalResults"`
		Resources    []user `json:"Resources"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return lookup{}, fmt.Errorf("scim: search for %s %q: the response is not a SCIM ListResponse: %v", m, target, err)
	}
	var found []user
	for _, u := range list.Resources {
		if u.matches(m, target) {
			found = append(found, u)
		}
	}
	n := max(len(found), list.TotalResults)
	if len(list.Resources) == 0 && list.TotalResults > 0 {
		return lookup{}, fmt.Errorf("scim: search for %s %q: the provider counts %d users but returned none", m, target, list.TotalResults)
	}
	if len(found) == 0 && len(list.Resources) > 0 {
		return lookup{}, fmt.Errorf("scim: search for %s %q returned users that do not match it; refusing to act on them", m, target)
	}
	switch {
	case len(found) == 0:
		return lookup{}, nil
	case n > 1:
		return lookup{count: n}, nil
	}
	if found[0].ID == "" {
		return lookup{}, fmt.Errorf("scim: user %q has no id", target)
	}
	return lookup{user: &found[0], count: 1}, nil
}

// Plan looks every target up and says what apply (suspend) or revert
// (unsuspend) would do. It changes nothing.
func (b *Backend) Plan(ctx context.Context, req action.Request) (*action.Plan, error) {
	p := &action.Plan{Action: req.Action, Backend: b.Name(), Environment: req.Environment, Operation: req.Operation}
	for _, t := range req.Targets {
		l, err := b.find(ctx, t)
		if err != nil {
			return nil, b.redact(err)
		}
		tp := action.TargetPlan{Target: t}
		switch {
		case l.count == 0:
			tp.Result, tp.Detail = action.NotFound, l.describe(b.opts.Match, t)
		case l.count > 1:
			tp.Result, tp.Detail = Ambiguous, l.describe(b.opts.Match, t)
		case req.Operation == action.Revert && l.user.suspended():
			tp.Result, tp.Detail = action.WouldUnsuspend, "id "+outbound.Clean(l.user.ID)
		case req.Operation == action.Revert:
			tp.Result, tp.Detail = action.NotSuspended, "id "+outbound.Clean(l.user.ID)
		case l.user.suspended():
			tp.Result, tp.Detail = action.AlreadySuspended, "id "+outbound.Clean(l.user.ID)
		default:
			tp.Result, tp.Detail = action.WouldSuspend, "id "+outbound.Clean(l.user.ID)
		}
		p.Targets = append(p.Targets, tp)
	}
	return p, nil
}

// Apply suspends the targets that are active.
//
// A target that does not exist, or matches several accounts, fails (the
// plan said so before anyone approved). A 409 answer is met by reading the
// account again: if another client suspended it meanwhile the target is
// unchanged, otherwise it fails as transient, and the reconciler retries.
func (b *Backend) Apply(ctx context.Context, req action.Request) ([]action.TargetResult, error) {
	return b.change(ctx, req, false)
}

// Revert reactivates the targets that are suspended. An account deleted
// since is unchanged (there is nothing left to reactivate), so deleting a
// playbook never waits on it.
func (b *Backend) Revert(ctx context.Context, req action.Request) ([]action.TargetResult, error) {
	return b.change(ctx, req, true)
}

// targetError is a failed target's detail and whether retrying may help.
type targetError struct {
	detail    string
	transient bool
}

func (b *Backend) change(ctx context.Context, req action.Request, active bool) ([]action.TargetResult, error) {
	results := make([]action.TargetResult, 0, len(req.Targets))
	var failures []targetError
	for i, t := range req.Targets {
		res, terr := b.changeOne(ctx, t, active)
		if terr != nil {
			res = action.TargetResult{Target: t, Result: action.Failed, Detail: terr.detail}
			failures = append(failures, *terr)
		}
		res.Detail = b.redactString(res.Detail)
		results = append(results, res)
		if terr != nil && terr.transient {
			// The provider is unavailable: do not wait out the retries once
			// per remaining target; the reconciler retries the whole request.
			for _, rest := range req.Targets[i+1:] {
				results = append(results, action.TargetResult{Target: rest, Result: action.Failed, Detail: "not attempted: " + res.Detail})
			}
			break
		}
	}
	if len(failures) == 0 {
		return results, nil
	}
	err := fmt.Errorf("scim: %d of %d targets failed: %s", len(failures), len(req.Targets), failures[0].detail)
	for _, f := range failures {
		if f.transient {
			err = fmt.Errorf("%w: %w", action.ErrTransient, err)
			break
		}
	}
	return results, b.redact(err)
}

func (b *Backend) changeOne(ctx context.Context, target string, active bool) (action.TargetResult, *targetError) {
	verb := map[bool]string{false: "suspended", true: "unsuspended"}[active]
	l, err := b.find(ctx, target)
	if err != nil {
		return action.TargetResult{}, &targetError{detail: err.Error(), transient: errors.Is(err, action.ErrTransient)}
	}
	switch {
	case l.count == 0 && active:
		return action.TargetResult{Target: target, Result: action.Unchanged, Detail: l.describe(b.opts.Match, target) + " (deleted since?); nothing to unsuspend"}, nil
	case l.count == 0:
		return action.TargetResult{}, &targetError{detail: "not found: " + l.describe(b.opts.Match, target)}
	case l.count > 1:
		return action.TargetResult{}, &targetError{detail: "ambiguous: " + l.describe(b.opts.Match, target)}
	case l.user.suspended() != active:
		return action.TargetResult{Target: target, Result: action.Unchanged, Detail: "already " + verb + " (id " + outbound.Clean(l.user.ID) + ")"}, nil
	}
	id := l.user.ID
	for attempt := 0; ; attempt++ {
		resp, err := b.patchActive(ctx, id, active)
		if err != nil {
			return action.TargetResult{}, &targetError{detail: err.Error(), transient: errors.Is(err, action.ErrTransient)}
		}
		switch resp.status {
		case http.StatusOK, http.StatusNoContent:
			if resp.status == http.StatusOK && len(resp.body) > 0 {
				var u user
				if json.Unmarshal(resp.body, &u) == nil && u.Active != nil && *u.Active != active {
					return action.TargetResult{}, &targetError{detail: fmt.Sprintf("the provider accepted the PATCH of user %s but active is still %t", outbound.Clean(id), !active)}
				}
			}
			return action.TargetResult{Target: target, Result: action.Changed, Detail: verb + " (id " + outbound.Clean(id) + ")"}, nil
		case http.StatusNotFound:
			if active {
				return action.TargetResult{Target: target, Result: action.Unchanged, Detail: "user " + outbound.Clean(id) + " was deleted; nothing to unsuspend"}, nil
			}
			return action.TargetResult{}, &targetError{detail: "not found: user " + outbound.Clean(id) + " was deleted before it could be suspended"}
		case http.StatusConflict:
			// Someone else changed the account at the same time: read it
			// again; the change may already be what we want.
			again, err := b.find(ctx, target)
			if err == nil && again.user != nil && again.user.suspended() != active {
				return action.TargetResult{Target: target, Result: action.Unchanged, Detail: verb + " by another client meanwhile (HTTP 409 on PATCH; id " + outbound.Clean(id) + ")"}, nil
			}
			if attempt < 1 {
				continue
			}
			return action.TargetResult{}, &targetError{detail: fmt.Sprintf("conflict: PATCH of user %s: %s", outbound.Clean(id), resp.describe()), transient: true}
		case http.StatusUnauthorized, http.StatusForbidden:
			return action.TargetResult{}, &targetError{detail: fmt.Sprintf("PATCH of user %s refused: %s; check the backend's credentials and their rights", outbound.Clean(id), resp.describe())}
		default:
			return action.TargetResult{}, &targetError{detail: fmt.Sprintf("PATCH of user %s: %s", outbound.Clean(id), resp.describe())}
		}
	}
}

// patchActive sends PatchOp replace active (RFC 7644 §3.5.2.3).
func (b *Backend) patchActive(ctx context.Context, id string, active bool) (*response, error) {
	body := `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":` +
		strconv.FormatBool(active) + `}]}`
	return b.do(ctx, http.MethodPatch, b.users+"/"+url.PathEscape(id), []byte(body))
}

// redact removes every configured secret from an error, keeping whether it
// is transient.
func (b *Backend) redact(err error) error {
	if err == nil {
		return nil
	}
	msg := b.redactString(err.Error())
	if errors.Is(err, action.ErrTransient) {
		return &redacted{msg: msg, kind: action.ErrTransient}
	}
	for _, kind := range []error{context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, kind) {
			return &redacted{msg: msg, kind: kind}
		}
	}
	return &redacted{msg: msg}
}

func (b *Backend) redactString(s string) string {
	for _, secret := range []string{b.opts.Token.Value(), b.oauthSecret()} {
		if len(secret) >= 4 {
			s = strings.ReplaceAll(s, secret, "[redacted]")
		}
	}
	return s
}

func (b *Backend) oauthSecret() string {
	if b.opts.OAuth == nil {
		return ""
	}
	return b.opts.OAuth.ClientSecret.Value()
}

// redacted is an error whose text holds no secret; it unwraps only to its
// kind (action.ErrTransient or a context error), never to the original.
type redacted struct {
	msg  string
	kind error
}

func (r *redacted) Error() string { return r.msg }
func (r *redacted) Unwrap() error { return r.kind }
