// Package githubfake is a GitHub REST API on loopback for tests: it speaks
// the wire format of the endpoints writ uses (request paths, JSON bodies
// shaped as GitHub documents them, Link pagination, the rate-limit headers
// and GitHub's primary and secondary rate-limit answers), authenticates
// tokens and GitHub App installation tokens (RS256 JWTs), and records what
// its clients did — check runs with their annotations, reviews requested,
// reviews and comments posted — so tests assert on it. The git contents
// are not its business: tests keep a real repository for them.
package githubfake

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v4"
)

// Server is the fake.
type Server struct {
	t   testing.TB
	srv *httptest.Server
	// Owner and Name of the one repository it hosts.
	Owner, Name string

	mu sync.Mutex
	// MaxPerPage caps per_page (GitHub's is 100); see SetMaxPerPage.
	MaxPerPage int
	tokens     map[string]string // token -> login
	users      map[string]int64  // login -> id
	names      map[string]string // login -> profile name
	sshKeys    map[string][]SSHSigningKey
	apps       map[int64]*rsa.PublicKey
	installs   map[int64]int64 // installation -> app
	pulls      map[int]*PullRequest
	commitPRs  map[string][]int // commit sha -> pull request numbers
	runs       []*CheckRun
	nextID     int64
	requests   []Request

	// rate limits
	limit, remaining int
	reset            time.Time
	secondary        int // requests to answer with a secondary rate limit
	retryAfter       int
	failNext         int // requests to answer 502
	failPath         string
	stallPath        string        // requests whose path contains it wait...
	stall            chan struct{} // ...until this is closed (or they are cancelled)
}

// Request is one request the fake served (for assertions).
type Request struct {
	Method, Path, Query string
	Status              int
}

// PullRequest is a pull request's state.
type PullRequest struct {
	Number             int
	Title, Body        string
	Author             string
	BaseRef, BaseSHA   string
	HeadRef, HeadSHA   string
	State              string // open, closed
	Merged             bool
	MergeCommitSHA     string
	Reviews            []*Review
	Comments           []*Comment
	RequestedReviewers []string
	Created            time.Time
}

// Review is a pull request review.
type Review struct {
	ID       int64
	Login    string
	Body     string
	State    string // APPROVED, CHANGES_REQUESTED, COMMENTED, DISMISSED
	CommitID string
	At       time.Time
}

// Comment is an issue comment on a pull request.
type Comment struct {
	ID    int64
	Login string
	Body  string
	At    time.Time
}

// CheckRun is a check run with every annotation it was sent.
type CheckRun struct {
	ID          int64
	Name        string
	HeadSHA     string
	Status      string
	Conclusion  string
	ExternalID  string
	DetailsURL  string
	Title       string
	Summary     string
	Text        string
	Annotations []Annotation
	StartedAt   time.Time
	CompletedAt time.Time
	// Writes counts the requests that created or updated it.
	Writes int
}

// Annotation is a check run annotation as sent.
type Annotation struct {
	Path            string `json:"path"`
	StartLine       int    `json:"start_line"`
	EndLine         int    `json:"end_line"`
	StartColumn     *int   `json:"start_column,omitempty"`
	EndColumn       *int   `json:"end_column,omitempty"`
	AnnotationLevel string `json:"annotation_level"`
	Message         string `json:"message"`
	Title           string `json:"title,omitempty"`
	RawDetails      string `json:"raw_details,omitempty"`
}

// New starts the fake on loopback for repository owner/name; it stops with
// the test.
func New(t testing.TB, owner, name string) *Server {
	f := &Server{t: t, Owner: owner, Name: name, MaxPerPage: 100,
		tokens: map[string]string{}, users: map[string]int64{}, names: map[string]string{}, sshKeys: map[string][]SSHSigningKey{}, apps: map[int64]*rsa.PublicKey{}, installs: map[int64]int64{},
		pulls: map[int]*PullRequest{}, commitPRs: map[string][]int{}, nextID: 1000,
		limit: 5000, remaining: 5000, reset: time.Now().Add(time.Hour)}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// URL is the fake's base URL (as an Enterprise Server's: append /api/v3/
// or let the client do it).
func (f *Server) URL() string { return f.srv.URL + "/" }

// Repository is OWNER/NAME.
func (f *Server) Repository() string { return f.Owner + "/" + f.Name }

// SetMaxPerPage caps per_page, so that short lists span pages.
func (f *Server) SetMaxPerPage(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.MaxPerPage = n
}

// AddToken lets a token in as login.
func (f *Server) AddToken(token, login string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens[token] = login
	f.userID(login)
}

// AddApp registers a GitHub App (its public key) and an installation of it.
func (f *Server) AddApp(appID, installationID int64, pub *rsa.PublicKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.apps[appID] = pub
	f.installs[installationID] = appID
}

func (f *Server) userID(login string) int64 {
	if id, ok := f.users[login]; ok {
		return id
	}
	id := int64(len(f.users) + 1)
	f.users[login] = id
	return id
}

func (f *Server) id() int64 {
	f.nextID++
	return f.nextID
}

// AddPullRequest opens a pull request.
func (f *Server) AddPullRequest(pr PullRequest) *PullRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := pr
	if p.State == "" {
		p.State = "open"
	}
	if p.Title == "" {
		p.Title = fmt.Sprintf("Pull request %d", p.Number)
	}
	p.Created = time.Now().UTC()
	f.userID(p.Author)
	f.pulls[p.Number] = &p
	f.commitPRs[p.HeadSHA] = append(f.commitPRs[p.HeadSHA], p.Number)
	return &p
}

// SetHead moves a pull request's head (a push to its branch).
func (f *Server) SetHead(number int, sha string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.pulls[number]
	p.HeadSHA = sha
	f.commitPRs[sha] = append(f.commitPRs[sha], number)
}

// SetBody edits a pull request's description.
func (f *Server) SetBody(number int, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pulls[number].Body = body
}

// Merge closes a pull request as merged by commit sha (and associates the
// commit with it, as GitHub does for every merge method).
func (f *Server) Merge(number int, sha string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.pulls[number]
	p.State, p.Merged, p.MergeCommitSHA = "closed", true, sha
	f.commitPRs[sha] = append(f.commitPRs[sha], number)
}

// AddReview submits a review as login and returns it.
func (f *Server) AddReview(number int, login, state, body string) *Review {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.pulls[number]
	r := &Review{ID: f.id(), Login: login, Body: body, State: state, CommitID: p.HeadSHA, At: time.Now().UTC()}
	f.userID(login)
	p.Reviews = append(p.Reviews, r)
	return r
}

// DismissReview dismisses a review.
func (f *Server) DismissReview(number int, id int64) *Review {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.pulls[number].Reviews {
		if r.ID == id {
			r.State = "DISMISSED"
			return r
		}
	}
	return nil
}

// EditReview replaces a review's body (PUT .../reviews/{id} or an edit in
// the web page) and returns the body it had.
func (f *Server) EditReview(number int, id int64, body string) (old string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.pulls[number].Reviews {
		if r.ID == id {
			old, r.Body = r.Body, body
			return old
		}
	}
	return ""
}

// AddComment comments on a pull request as login.
func (f *Server) AddComment(number int, login, body string) *Comment {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := &Comment{ID: f.id(), Login: login, Body: body, At: time.Now().UTC()}
	f.userID(login)
	f.pulls[number].Comments = append(f.pulls[number].Comments, c)
	return c
}

// Pull returns a copy of a pull request's state.
func (f *Server) Pull(number int) PullRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := *f.pulls[number]
	p.Reviews = slices.Clone(p.Reviews)
	p.Comments = slices.Clone(p.Comments)
	p.RequestedReviewers = slices.Clone(p.RequestedReviewers)
	return p
}

// CheckRuns returns copies of the check runs of a head commit, oldest
// first.
func (f *Server) CheckRuns(headSHA string) []CheckRun {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []CheckRun
	for _, r := range f.runs {
		if r.HeadSHA == headSHA {
			c := *r
			c.Annotations = slices.Clone(r.Annotations)
			out = append(out, c)
		}
	}
	return out
}

// LatestCheckRun is the newest check run of a name on a head commit (what
// GitHub shows), and whether there is one.
func (f *Server) LatestCheckRun(headSHA, name string) (CheckRun, bool) {
	runs := f.CheckRuns(headSHA)
	for i := len(runs) - 1; i >= 0; i-- {
		if runs[i].Name == name {
			return runs[i], true
		}
	}
	return CheckRun{}, false
}

// Requests returns the requests served so far.
func (f *Server) Requests() []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

// ExhaustRateLimit spends the primary rate limit until resetIn from now,
// and returns the reset time as X-RateLimit-Reset announces it (whole
// seconds).
func (f *Server) ExhaustRateLimit(resetIn time.Duration) time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.remaining = 0
	f.reset = time.Now().Add(resetIn)
	return time.Unix(f.reset.Unix(), 0)
}

// SecondaryRateLimit answers the next n requests with a secondary rate
// limit and Retry-After: retryAfter seconds.
func (f *Server) SecondaryRateLimit(n, retryAfter int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.secondary, f.retryAfter = n, retryAfter
}

// FailNext answers the next n requests whose path contains pathPart
// with 502 Bad Gateway.
func (f *Server) FailNext(n int, pathPart string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failNext, f.failPath = n, pathPart
}

// Stall makes requests whose path contains pathPart wait, as a GitHub
// that stopped answering, until release is called or the client gives up.
func (f *Server) Stall(pathPart string) (release func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan struct{})
	f.stallPath, f.stall = pathPart, ch
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			if f.stall == ch {
				f.stallPath, f.stall = "", nil
			}
			f.mu.Unlock()
			close(ch)
		})
	}
}

var (
	reCheckRuns   = regexp.MustCompile(`^/repos/([^/]+)/([^/]+)/check-runs$`)
	reCheckRun    = regexp.MustCompile(`^/repos/([^/]+)/([^/]+)/check-runs/(\d+)$`)
	reAnnotations = regexp.MustCompile(`^/repos/([^/]+)/([^/]+)/check-runs/(\d+)/annotations$`)
	rePull        = regexp.MustCompile(`^/repos/([^/]+)/([^/]+)/pulls/(\d+)$`)
	reReviews     = regexp.MustCompile(`^/repos/([^/]+)/([^/]+)/pulls/(\d+)/reviews$`)
	reDismiss     = regexp.MustCompile(`^/repos/([^/]+)/([^/]+)/pulls/(\d+)/reviews/(\d+)/dismissals$`)
	reRequested   = regexp.MustCompile(`^/repos/([^/]+)/([^/]+)/pulls/(\d+)/requested_reviewers$`)
	reComments    = regexp.MustCompile(`^/repos/([^/]+)/([^/]+)/issues/(\d+)/comments$`)
	reCommitPulls = regexp.MustCompile(`^/repos/([^/]+)/([^/]+)/commits/([0-9a-f]{40})/pulls$`)
	reAccessToken = regexp.MustCompile(`^/app/installations/(\d+)/access_tokens$`)
	reUser        = regexp.MustCompile(`^/users/([^/]+)$`)
	reUserSSHKeys = regexp.MustCompile(`^/users/([^/]+)/ssh_signing_keys$`)
)

func (f *Server) serve(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/api/v3")
	rec := &statusRecorder{ResponseWriter: w, status: 200}
	defer func() {
		f.mu.Lock()
		f.requests = append(f.requests, Request{Method: r.Method, Path: path, Query: r.URL.RawQuery, Status: rec.status})
		f.mu.Unlock()
	}()
	w = rec
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil || !utf8.Valid(body) {
		// JSON text is UTF-8 (RFC 8259 §8.1): GitHub cannot parse a body
		// that is not, and answers as for any unparsable JSON.
		writeError(w, http.StatusBadRequest, "Problems parsing JSON")
		return
	}
	if m := reAccessToken.FindStringSubmatch(path); m != nil && r.Method == http.MethodPost {
		f.accessToken(w, r, m[1])
		return
	}
	f.mu.Lock()
	if stall := f.stall; stall != nil && strings.Contains(path, f.stallPath) {
		f.mu.Unlock()
		select {
		case <-stall:
		case <-r.Context().Done():
			rec.status = 499 // the client went away
			return
		}
		f.mu.Lock()
	}
	defer f.mu.Unlock()
	login, ok := f.authenticate(r)
	// Users' profiles and keys are public: GitHub answers them without
	// credentials too (but not with bad ones).
	public := r.Method == http.MethodGet && (reUser.MatchString(path) || reUserSSHKeys.MatchString(path))
	if !ok && !(public && r.Header.Get("Authorization") == "") {
		writeError(w, http.StatusUnauthorized, "Bad credentials")
		return
	}
	if !f.rateLimit(w, path) {
		return
	}
	if m := repoOf(path); m != "" && m != f.Owner+"/"+f.Name {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	switch {
	case reCheckRuns.MatchString(path) && r.Method == http.MethodPost:
		f.createCheckRun(w, body)
	case reCheckRun.MatchString(path) && r.Method == http.MethodPatch:
		f.updateCheckRun(w, atoi64(reCheckRun.FindStringSubmatch(path)[3]), body)
	case reCheckRun.MatchString(path) && r.Method == http.MethodGet:
		run := f.run(atoi64(reCheckRun.FindStringSubmatch(path)[3]))
		if run == nil {
			writeError(w, http.StatusNotFound, "Not Found")
			return
		}
		writeJSON(w, http.StatusOK, f.runJSON(run))
	case reAnnotations.MatchString(path) && r.Method == http.MethodGet:
		run := f.run(atoi64(reAnnotations.FindStringSubmatch(path)[3]))
		if run == nil {
			writeError(w, http.StatusNotFound, "Not Found")
			return
		}
		items := make([]any, len(run.Annotations))
		for i, a := range run.Annotations {
			items[i] = a
		}
		f.page(w, r, items)
	case rePull.MatchString(path) && r.Method == http.MethodGet:
		p := f.pulls[atoi(rePull.FindStringSubmatch(path)[3])]
		if p == nil {
			writeError(w, http.StatusNotFound, "Not Found")
			return
		}
		writeJSON(w, http.StatusOK, f.PullJSON(p))
	case reReviews.MatchString(path):
		p := f.pulls[atoi(reReviews.FindStringSubmatch(path)[3])]
		if p == nil {
			writeError(w, http.StatusNotFound, "Not Found")
			return
		}
		if r.Method == http.MethodPost {
			f.createReview(w, p, login, body)
			return
		}
		items := make([]any, len(p.Reviews))
		for i, rv := range p.Reviews {
			items[i] = f.ReviewJSON(p, rv)
		}
		f.page(w, r, items)
	case reDismiss.MatchString(path) && r.Method == http.MethodPut:
		m := reDismiss.FindStringSubmatch(path)
		p := f.pulls[atoi(m[3])]
		if p == nil {
			writeError(w, http.StatusNotFound, "Not Found")
			return
		}
		for _, rv := range p.Reviews {
			if rv.ID == atoi64(m[4]) {
				rv.State = "DISMISSED"
				writeJSON(w, http.StatusOK, f.ReviewJSON(p, rv))
				return
			}
		}
		writeError(w, http.StatusNotFound, "Not Found")
	case reRequested.MatchString(path) && r.Method == http.MethodPost:
		f.requestReviewers(w, f.pulls[atoi(reRequested.FindStringSubmatch(path)[3])], body)
	case reComments.MatchString(path):
		p := f.pulls[atoi(reComments.FindStringSubmatch(path)[3])]
		if p == nil {
			writeError(w, http.StatusNotFound, "Not Found")
			return
		}
		if r.Method == http.MethodPost {
			var in struct {
				Body string `json:"body"`
			}
			if json.Unmarshal(body, &in) != nil || in.Body == "" {
				writeError(w, http.StatusUnprocessableEntity, "Validation Failed")
				return
			}
			c := &Comment{ID: f.id(), Login: login, Body: in.Body, At: time.Now().UTC()}
			p.Comments = append(p.Comments, c)
			writeJSON(w, http.StatusCreated, f.CommentJSON(p, c))
			return
		}
		items := make([]any, len(p.Comments))
		for i, c := range p.Comments {
			items[i] = f.CommentJSON(p, c)
		}
		f.page(w, r, items)
	case reUser.MatchString(path) && r.Method == http.MethodGet:
		who, ok := f.knownUser(reUser.FindStringSubmatch(path)[1])
		if !ok {
			writeError(w, http.StatusNotFound, "Not Found")
			return
		}
		writeJSON(w, http.StatusOK, f.ProfileJSON(who))
	case reUserSSHKeys.MatchString(path) && r.Method == http.MethodGet:
		who, ok := f.knownUser(reUserSSHKeys.FindStringSubmatch(path)[1])
		if !ok {
			writeError(w, http.StatusNotFound, "Not Found")
			return
		}
		var items []any
		for _, k := range f.sshKeys[who] {
			// GitHub's documented payload: id, key, title, created_at.
			items = append(items, map[string]any{"id": k.ID, "key": k.Key, "title": k.Title,
				"created_at": k.CreatedAt.UTC().Format(time.RFC3339)})
		}
		f.page(w, r, items)
	case reCommitPulls.MatchString(path) && r.Method == http.MethodGet:
		var items []any
		for _, n := range f.commitPRs[reCommitPulls.FindStringSubmatch(path)[3]] {
			items = append(items, f.PullJSON(f.pulls[n]))
		}
		f.page(w, r, items)
	default:
		writeError(w, http.StatusNotFound, "Not Found")
	}
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func repoOf(path string) string {
	parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if len(parts) >= 3 && parts[0] == "repos" {
		return parts[1] + "/" + parts[2]
	}
	return ""
}

func atoi(s string) int     { n, _ := strconv.Atoi(s); return n }
func atoi64(s string) int64 { n, _ := strconv.ParseInt(s, 10, 64); return n }

// authenticate accepts "Bearer TOKEN" and "token TOKEN".
func (f *Server) authenticate(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		tok, ok = strings.CutPrefix(h, "token ")
	}
	if !ok {
		return "", false
	}
	login, ok := f.tokens[tok]
	return login, ok
}

// rateLimit sets the rate-limit headers and answers a request over a
// limit as GitHub does; false when it answered.
func (f *Server) rateLimit(w http.ResponseWriter, path string) bool {
	now := time.Now()
	if !now.Before(f.reset) {
		f.remaining, f.reset = f.limit, now.Add(time.Hour)
	}
	h := w.Header()
	h.Set("X-RateLimit-Limit", strconv.Itoa(f.limit))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(f.reset.Unix(), 10))
	h.Set("X-RateLimit-Resource", "core")
	h.Set("X-GitHub-Media-Type", "github.v3; format=json")
	h.Set("X-GitHub-Request-Id", fmt.Sprintf("FAKE:%d", len(f.requests)))
	if f.remaining <= 0 {
		h.Set("X-RateLimit-Remaining", "0")
		h.Set("X-RateLimit-Used", strconv.Itoa(f.limit))
		writeJSON(w, http.StatusForbidden, map[string]string{
			"message":           "API rate limit exceeded for installation ID 1.",
			"documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-the-primary-rate-limit",
		})
		return false
	}
	if f.secondary > 0 {
		f.secondary--
		h.Set("X-RateLimit-Remaining", strconv.Itoa(f.remaining))
		h.Set("Retry-After", strconv.Itoa(f.retryAfter))
		writeJSON(w, http.StatusForbidden, map[string]string{
			"message":           "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
			"documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
		})
		return false
	}
	f.remaining--
	h.Set("X-RateLimit-Remaining", strconv.Itoa(f.remaining))
	h.Set("X-RateLimit-Used", strconv.Itoa(f.limit-f.remaining))
	if f.failNext > 0 && strings.Contains(path, f.failPath) {
		f.failNext--
		writeError(w, http.StatusBadGateway, "Server Error")
		return false
	}
	return true
}

// page answers a list with GitHub's page/per_page and Link header.
func (f *Server) page(w http.ResponseWriter, r *http.Request, items []any) {
	per := 30
	if v, err := strconv.Atoi(r.URL.Query().Get("per_page")); err == nil && v > 0 {
		per = min(v, 100)
	}
	per = min(per, f.MaxPerPage)
	pg := 1
	if v, err := strconv.Atoi(r.URL.Query().Get("page")); err == nil && v > 0 {
		pg = v
	}
	last := max((len(items)+per-1)/per, 1)
	start := min((pg-1)*per, len(items))
	end := min(start+per, len(items))
	link := func(n int, rel string) string {
		u := *r.URL
		u.Scheme, u.Host = "http", r.Host
		q := u.Query()
		q.Set("page", strconv.Itoa(n))
		q.Set("per_page", strconv.Itoa(per))
		u.RawQuery = q.Encode()
		return fmt.Sprintf("<%s>; rel=\"%s\"", u.String(), rel)
	}
	var links []string
	if pg < last {
		links = append(links, link(pg+1, "next"), link(last, "last"))
	}
	if pg > 1 {
		links = append(links, link(1, "first"), link(pg-1, "prev"))
	}
	if len(links) > 0 {
		w.Header().Set("Link", strings.Join(links, ", "))
	}
	out := items[start:end]
	if out == nil {
		out = []any{}
	}
	writeJSON(w, http.StatusOK, out)
}

func (f *Server) run(id int64) *CheckRun {
	for _, r := range f.runs {
		if r.ID == id {
			return r
		}
	}
	return nil
}

// checkRunBody is POST/PATCH /check-runs as documented.
type checkRunBody struct {
	Name        *string `json:"name"`
	HeadSHA     *string `json:"head_sha"`
	Status      *string `json:"status"`
	Conclusion  *string `json:"conclusion"`
	ExternalID  *string `json:"external_id"`
	DetailsURL  *string `json:"details_url"`
	StartedAt   *string `json:"started_at"`
	CompletedAt *string `json:"completed_at"`
	Output      *struct {
		Title       *string      `json:"title"`
		Summary     *string      `json:"summary"`
		Text        *string      `json:"text"`
		Annotations []Annotation `json:"annotations"`
	} `json:"output"`
}

// GitHub's documented limits on a check run's text, as the fake enforces
// them: output.summary and output.text at most 65535 characters (code
// points, as GitHub's JSON Schema validation counts them); an
// annotation's title at most 255 characters, its message and raw_details
// at most 64 KB (read as 64 KiB of UTF-8).
const (
	MaxSummaryChars         = 65535
	MaxAnnotationTitleChars = 255
	MaxAnnotationBytes      = 64 << 10
)

// tooLong says, as GitHub does, that s has more than limit characters;
// "" when it does not.
func tooLong(s string, limit int) string {
	if n := utf8.RuneCountInString(s); n > limit {
		return fmt.Sprintf("Invalid request.\n\nOnly %d characters are allowed; %d were supplied.", limit, n)
	}
	return ""
}

var conclusions = []string{"action_required", "cancelled", "failure", "neutral", "success", "skipped", "stale", "timed_out"}

// apply validates and applies a check run body as GitHub does.
func (f *Server) apply(run *CheckRun, in checkRunBody) (int, string) {
	if in.Status != nil {
		if !slices.Contains([]string{"queued", "in_progress", "completed"}, *in.Status) {
			return http.StatusUnprocessableEntity, "status is not valid"
		}
		run.Status = *in.Status
	}
	if in.Conclusion != nil {
		if !slices.Contains(conclusions, *in.Conclusion) {
			return http.StatusUnprocessableEntity, "conclusion is not valid"
		}
		run.Conclusion, run.Status = *in.Conclusion, "completed"
		run.CompletedAt = time.Now().UTC()
	}
	if run.Status == "completed" && run.Conclusion == "" {
		return http.StatusUnprocessableEntity, "conclusion is required when status is completed"
	}
	if in.ExternalID != nil {
		run.ExternalID = *in.ExternalID
	}
	if in.DetailsURL != nil {
		run.DetailsURL = *in.DetailsURL
	}
	if run.Conclusion == "action_required" && run.DetailsURL == "" {
		// "When the conclusion is action_required, additional details
		// should be provided on the site specified by details_url."
		return http.StatusUnprocessableEntity, "details_url is required when the conclusion is action_required"
	}
	if o := in.Output; o != nil {
		if o.Title == nil || o.Summary == nil {
			return http.StatusUnprocessableEntity, "output needs a title and a summary"
		}
		if msg := tooLong(*o.Summary, MaxSummaryChars); msg != "" {
			return http.StatusUnprocessableEntity, msg
		}
		if o.Text != nil {
			if msg := tooLong(*o.Text, MaxSummaryChars); msg != "" {
				return http.StatusUnprocessableEntity, msg
			}
		}
		if len(o.Annotations) > 50 {
			return http.StatusUnprocessableEntity, "output.annotations: at most 50 per request"
		}
		for _, a := range o.Annotations {
			if a.Path == "" || a.StartLine < 1 || a.EndLine < a.StartLine || a.Message == "" ||
				!slices.Contains([]string{"notice", "warning", "failure"}, a.AnnotationLevel) {
				return http.StatusUnprocessableEntity, "output.annotations: invalid annotation"
			}
			if msg := tooLong(a.Title, MaxAnnotationTitleChars); msg != "" {
				return http.StatusUnprocessableEntity, "output.annotations: title: " + msg
			}
			if len(a.Message) > MaxAnnotationBytes || len(a.RawDetails) > MaxAnnotationBytes {
				return http.StatusUnprocessableEntity, "output.annotations: message and raw_details are at most 64 KB"
			}
			if (a.StartColumn != nil || a.EndColumn != nil) && a.StartLine != a.EndLine {
				return http.StatusUnprocessableEntity, "output.annotations: columns need start_line == end_line"
			}
		}
		run.Title, run.Summary = *o.Title, *o.Summary
		if o.Text != nil {
			run.Text = *o.Text
		}
		run.Annotations = append(run.Annotations, o.Annotations...)
	}
	run.Writes++
	return 0, ""
}

func (f *Server) createCheckRun(w http.ResponseWriter, body []byte) {
	var in checkRunBody
	if err := json.Unmarshal(body, &in); err != nil {
		writeError(w, http.StatusBadRequest, "Problems parsing JSON")
		return
	}
	if in.Name == nil || *in.Name == "" || in.HeadSHA == nil || !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(*in.HeadSHA) {
		writeError(w, http.StatusUnprocessableEntity, "name and head_sha are required")
		return
	}
	run := &CheckRun{ID: f.id(), Name: *in.Name, HeadSHA: *in.HeadSHA, Status: "queued", StartedAt: time.Now().UTC()}
	if code, msg := f.apply(run, in); code != 0 {
		writeError(w, code, msg)
		return
	}
	f.runs = append(f.runs, run)
	writeJSON(w, http.StatusCreated, f.runJSON(run))
}

func (f *Server) updateCheckRun(w http.ResponseWriter, id int64, body []byte) {
	run := f.run(id)
	if run == nil {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	var in checkRunBody
	if err := json.Unmarshal(body, &in); err != nil {
		writeError(w, http.StatusBadRequest, "Problems parsing JSON")
		return
	}
	c := *run
	c.Annotations = slices.Clone(run.Annotations)
	if code, msg := f.apply(&c, in); code != 0 {
		writeError(w, code, msg)
		return
	}
	*run = c
	writeJSON(w, http.StatusOK, f.runJSON(run))
}

func (f *Server) base() string { return f.srv.URL + "/api/v3" }

func (f *Server) repoURL() string { return f.base() + "/repos/" + f.Owner + "/" + f.Name }

func ts(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(time.RFC3339)
}

func (f *Server) runJSON(r *CheckRun) map[string]any {
	return map[string]any{
		"id": r.ID, "node_id": fmt.Sprintf("CR_%d", r.ID), "head_sha": r.HeadSHA, "external_id": r.ExternalID,
		"url": fmt.Sprintf("%s/check-runs/%d", f.repoURL(), r.ID), "html_url": fmt.Sprintf("%s/%s/%s/runs/%d", f.srv.URL, f.Owner, f.Name, r.ID),
		"details_url": r.DetailsURL, "status": r.Status, "conclusion": nilIfEmpty(r.Conclusion),
		"started_at": ts(r.StartedAt), "completed_at": ts(r.CompletedAt), "name": r.Name,
		"output": map[string]any{"title": r.Title, "summary": r.Summary, "text": r.Text,
			"annotations_count": len(r.Annotations), "annotations_url": fmt.Sprintf("%s/check-runs/%d/annotations", f.repoURL(), r.ID)},
		"check_suite":   map[string]any{"id": 5},
		"app":           map[string]any{"id": 1, "slug": "writ", "name": "writ"},
		"pull_requests": []any{},
	}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// UserJSON is a simple user object.
func (f *Server) UserJSON(login string) map[string]any {
	id := f.userID(login)
	typ := "User"
	if strings.HasSuffix(login, "[bot]") {
		typ = "Bot"
	}
	return map[string]any{"login": login, "id": id, "node_id": fmt.Sprintf("U_%d", id), "type": typ, "site_admin": false,
		"url": f.base() + "/users/" + login, "html_url": f.srv.URL + "/" + login}
}

func (f *Server) repoJSON() map[string]any {
	return map[string]any{"id": 1296269, "node_id": "R_1", "name": f.Name, "full_name": f.Owner + "/" + f.Name, "private": true,
		"owner": f.UserJSON(f.Owner), "html_url": f.srv.URL + "/" + f.Owner + "/" + f.Name, "url": f.repoURL(), "default_branch": "main"}
}

// PullJSON is a pull request object as the REST API and webhook payloads
// carry it. Call with the fake's lock held or from PullRequestJSON.
func (f *Server) PullJSON(p *PullRequest) map[string]any {
	var merged, closed any
	if p.Merged {
		merged = ts(time.Now())
	}
	if p.State == "closed" {
		closed = ts(time.Now())
	}
	return map[string]any{
		"url": fmt.Sprintf("%s/pulls/%d", f.repoURL(), p.Number), "id": int64(p.Number) * 100, "node_id": fmt.Sprintf("PR_%d", p.Number),
		"html_url": fmt.Sprintf("%s/%s/%s/pull/%d", f.srv.URL, f.Owner, f.Name, p.Number), "number": p.Number,
		"state": p.State, "locked": false, "title": p.Title, "user": f.UserJSON(p.Author), "body": p.Body,
		"created_at": ts(p.Created), "updated_at": ts(time.Now()), "closed_at": closed, "merged_at": merged,
		"merge_commit_sha": nilIfEmpty(p.MergeCommitSHA), "draft": false, "merged": p.Merged,
		"head":               map[string]any{"label": f.Owner + ":" + p.HeadRef, "ref": p.HeadRef, "sha": p.HeadSHA, "user": f.UserJSON(f.Owner), "repo": f.repoJSON()},
		"base":               map[string]any{"label": f.Owner + ":" + p.BaseRef, "ref": p.BaseRef, "sha": p.BaseSHA, "user": f.UserJSON(f.Owner), "repo": f.repoJSON()},
		"author_association": "MEMBER",
	}
}

// PullRequestJSON is PullJSON for tests (takes the lock).
func (f *Server) PullRequestJSON(number int) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.PullJSON(f.pulls[number])
}

// ReviewJSON is a review object.
func (f *Server) ReviewJSON(p *PullRequest, r *Review) map[string]any {
	return map[string]any{
		"id": r.ID, "node_id": fmt.Sprintf("PRR_%d", r.ID), "user": f.UserJSON(r.Login), "body": r.Body, "state": r.State,
		"html_url":         fmt.Sprintf("%s/%s/%s/pull/%d#pullrequestreview-%d", f.srv.URL, f.Owner, f.Name, p.Number, r.ID),
		"pull_request_url": fmt.Sprintf("%s/pulls/%d", f.repoURL(), p.Number), "submitted_at": ts(r.At), "commit_id": r.CommitID,
		"author_association": "MEMBER",
	}
}

// ReviewObject is ReviewJSON for tests (takes the lock).
func (f *Server) ReviewObject(number int, id int64) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.pulls[number]
	for _, r := range p.Reviews {
		if r.ID == id {
			return f.ReviewJSON(p, r)
		}
	}
	return nil
}

// CommentJSON is an issue comment object.
func (f *Server) CommentJSON(p *PullRequest, c *Comment) map[string]any {
	return map[string]any{
		"id": c.ID, "node_id": fmt.Sprintf("IC_%d", c.ID), "url": fmt.Sprintf("%s/issues/comments/%d", f.repoURL(), c.ID),
		"html_url": fmt.Sprintf("%s/%s/%s/pull/%d#issuecomment-%d", f.srv.URL, f.Owner, f.Name, p.Number, c.ID),
		"body":     c.Body, "user": f.UserJSON(c.Login), "created_at": ts(c.At), "updated_at": ts(c.At),
		"issue_url": fmt.Sprintf("%s/issues/%d", f.repoURL(), p.Number), "author_association": "MEMBER",
	}
}

// CommentObject is CommentJSON for tests (takes the lock).
func (f *Server) CommentObject(number int, id int64) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.pulls[number]
	for _, c := range p.Comments {
		if c.ID == id {
			return f.CommentJSON(p, c)
		}
	}
	return nil
}

// RepositoryJSON is the repository object of payloads.
func (f *Server) RepositoryJSON() map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.repoJSON()
}

// SenderJSON is a user object for a payload's sender.
func (f *Server) SenderJSON(login string) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.UserJSON(login)
}

func (f *Server) createReview(w http.ResponseWriter, p *PullRequest, login string, body []byte) {
	var in struct {
		Body     string `json:"body"`
		Event    string `json:"event"`
		CommitID string `json:"commit_id"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		writeError(w, http.StatusBadRequest, "Problems parsing JSON")
		return
	}
	state, ok := map[string]string{"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED", "COMMENT": "COMMENTED"}[in.Event]
	if !ok {
		writeError(w, http.StatusUnprocessableEntity, "Unprocessable Entity: event must be APPROVE, REQUEST_CHANGES or COMMENT")
		return
	}
	if in.Event != "APPROVE" && in.Body == "" {
		writeError(w, http.StatusUnprocessableEntity, "Unprocessable Entity: body is required for this event")
		return
	}
	if in.Event == "APPROVE" && login == p.Author {
		writeError(w, http.StatusUnprocessableEntity, "Unprocessable Entity: Can not approve your own pull request")
		return
	}
	commit := in.CommitID
	if commit == "" {
		commit = p.HeadSHA
	}
	r := &Review{ID: f.id(), Login: login, Body: in.Body, State: state, CommitID: commit, At: time.Now().UTC()}
	p.Reviews = append(p.Reviews, r)
	writeJSON(w, http.StatusOK, f.ReviewJSON(p, r))
}

func (f *Server) requestReviewers(w http.ResponseWriter, p *PullRequest, body []byte) {
	if p == nil {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	var in struct {
		Reviewers     []string `json:"reviewers"`
		TeamReviewers []string `json:"team_reviewers"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		writeError(w, http.StatusBadRequest, "Problems parsing JSON")
		return
	}
	for _, l := range in.Reviewers {
		if l == p.Author {
			writeError(w, http.StatusUnprocessableEntity, "Review cannot be requested from pull request author.")
			return
		}
		if _, known := f.users[l]; !known {
			writeError(w, http.StatusUnprocessableEntity, "Reviews may only be requested from collaborators.")
			return
		}
	}
	for _, l := range in.Reviewers {
		if !slices.Contains(p.RequestedReviewers, l) {
			p.RequestedReviewers = append(p.RequestedReviewers, l)
		}
	}
	out := f.PullJSON(p)
	var users []any
	for _, l := range p.RequestedReviewers {
		users = append(users, f.UserJSON(l))
	}
	out["requested_reviewers"] = users
	writeJSON(w, http.StatusCreated, out)
}

// SSHSigningKey is one SSH signing key of a user, as
// GET /users/{username}/ssh_signing_keys lists it.
type SSHSigningKey struct {
	ID        int64
	Key       string // the public key line, "TYPE BASE64"
	Title     string
	CreatedAt time.Time
}

// AddSSHSigningKey registers an SSH signing key of login (making the user
// known) and returns its id.
func (f *Server) AddSSHSigningKey(login, key, title string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.userID(login)
	id := f.id()
	f.sshKeys[login] = append(f.sshKeys[login], SSHSigningKey{ID: id, Key: key, Title: title, CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)})
	return id
}

// SetUserName sets login's profile name (making the user known).
func (f *Server) SetUserName(login, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.userID(login)
	f.names[login] = name
}

// knownUser finds a known login case-insensitively, as GitHub does.
func (f *Server) knownUser(login string) (string, bool) {
	for l := range f.users {
		if strings.EqualFold(l, login) {
			return l, true
		}
	}
	return "", false
}

// ProfileJSON is a user's public profile (GET /users/{username}).
func (f *Server) ProfileJSON(login string) map[string]any {
	u := f.UserJSON(login)
	u["name"] = nilIfEmpty(f.names[login])
	u["company"], u["blog"], u["location"], u["email"], u["bio"] = nil, "", nil, nil, nil
	u["public_repos"], u["public_gists"], u["followers"], u["following"] = 2, 0, 1, 0
	u["created_at"] = "2020-01-01T00:00:00Z"
	u["updated_at"] = "2026-01-01T00:00:00Z"
	return u
}

// AddUser makes login known (a collaborator who may be asked for reviews).
func (f *Server) AddUser(login string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.userID(login)
}

// accessToken mints an installation token for an app's JWT (RS256, as
// GitHub requires, iat/exp within ten minutes).
func (f *Server) accessToken(w http.ResponseWriter, r *http.Request, installation string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	appID, ok := f.installs[atoi64(installation)]
	if !ok {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		writeError(w, http.StatusUnauthorized, "A JSON web token could not be decoded")
		return
	}
	claims := &jwt.RegisteredClaims{}
	_, err := jwt.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		if t.Method.Alg() != "RS256" {
			return nil, fmt.Errorf("alg %s", t.Method.Alg())
		}
		return f.apps[appID], nil
	})
	if err != nil || claims.Issuer != strconv.FormatInt(appID, 10) || claims.ExpiresAt == nil || time.Until(claims.ExpiresAt.Time) > 11*time.Minute {
		writeError(w, http.StatusUnauthorized, "A JSON web token could not be decoded")
		return
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	tok := "ghs_" + hex.EncodeToString(b)
	login := "writ-app[bot]"
	f.tokens[tok] = login
	f.userID(login)
	writeJSON(w, http.StatusCreated, map[string]any{"token": tok, "expires_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
		"permissions": map[string]string{"checks": "write", "pull_requests": "write", "contents": "read"}, "repository_selection": "selected"})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"message": msg, "documentation_url": "https://docs.github.com/rest"})
}
