// Package gitlabfake is a GitLab REST API (v4) on loopback for tests: it
// speaks the wire format of the endpoints writ uses — a project, a merge
// request, the merge requests of a commit, a merge request's notes
// (listed with GitLab's offset pagination headers, created, edited), and
// commit statuses — with GitLab's documented limits (a note body of at
// most 1,000,000 characters, a status description of at most 255, the
// commit status state machine that refuses to set a pending or running
// status again) and its rate-limit answer (429 with Retry-After and the
// RateLimit-* headers). It authenticates Private-Token headers, records
// what its clients did so tests assert on it, and sends webhooks as
// GitLab does (hooks.go). The git contents are not its business: tests
// keep a real repository for them.
package gitlabfake

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// GitLab's documented limits.
const (
	MaxNoteBody          = 1_000_000 // characters
	MaxStatusDescription = 255       // characters
	MaxPerPage           = 100
)

// Server is the fake.
type Server struct {
	t   testing.TB
	srv *httptest.Server
	// Path is the project's path with namespace; ID its numeric id.
	Path string
	ID   int64

	mu sync.Mutex
	// maxPerPage caps per_page (GitLab's is 100); see SetMaxPerPage.
	maxPerPage int
	tokens     map[string]string // token -> username
	users      map[string]int64  // username -> id
	mrs        map[int64]*MergeRequest
	commits    map[string][]int64 // commit sha -> merge request iids
	statuses   []*Status
	nextID     int64
	requests   []Request
	// failing requests are answered 502.
	failing int
	// limited requests are answered 429 with retryAfter seconds.
	limited    int
	retryAfter int
	resetAt    time.Time
}

// Request is one request the fake served.
type Request struct {
	Method, Path, Query string
	Status              int
}

// MergeRequest is a merge request's state.
type MergeRequest struct {
	ID, IID                    int64
	Title, Description         string
	Author                     string
	SourceBranch, TargetBranch string
	SHA                        string // the head commit
	BaseSHA                    string
	State                      string // opened, closed, merged
	MergeCommitSHA             string
	Notes                      []*Note
	Created, Updated           time.Time
}

// Note is a note on a merge request.
type Note struct {
	ID       int64
	Author   string
	Body     string
	System   bool
	Created  time.Time
	Updated  time.Time
	Deleted  bool
	Edits    int
	MRIID    int64
	internal bool
}

// Status is a commit status as set.
type Status struct {
	ID          int64
	SHA, Ref    string
	Name        string
	State       string
	Description string
	TargetURL   string
	Author      string
	Created     time.Time
	Finished    time.Time
}

// New starts the fake for one project.
func New(t testing.TB, path string, id int64) *Server {
	s := &Server{t: t, Path: path, ID: id, tokens: map[string]string{}, users: map[string]int64{},
		mrs: map[int64]*MergeRequest{}, commits: map[string][]int64{}, nextID: 1000, maxPerPage: MaxPerPage}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

// URL is the instance's base URL (the API is under /api/v4).
func (s *Server) URL() string { return s.srv.URL }

// Client is an HTTP client for the fake.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// AddToken accepts a token for a user (a project access token's bot user).
func (s *Server) AddToken(token, username string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[token] = username
	s.addUser(username)
}

// AddUser makes a user.
func (s *Server) AddUser(username string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addUser(username)
}

func (s *Server) addUser(username string) int64 {
	if id, ok := s.users[username]; ok {
		return id
	}
	s.nextID++
	s.users[username] = s.nextID
	return s.nextID
}

// AddMergeRequest opens a merge request (State "opened" unless set).
func (s *Server) AddMergeRequest(m MergeRequest) *MergeRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addUser(m.Author)
	s.nextID++
	m.ID = s.nextID
	if m.State == "" {
		m.State = "opened"
	}
	if m.Created.IsZero() {
		m.Created = time.Now().UTC()
	}
	m.Updated = m.Created
	mr := &m
	s.mrs[m.IID] = mr
	s.commits[m.SHA] = append(s.commits[m.SHA], m.IID)
	return mr
}

// MR is a copy of a merge request's state.
func (s *Server) MR(iid int64) MergeRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := *s.mustMR(iid)
	m.Notes = nil
	for _, n := range s.mrs[iid].Notes {
		c := *n
		m.Notes = append(m.Notes, &c)
	}
	return m
}

func (s *Server) mustMR(iid int64) *MergeRequest {
	m, ok := s.mrs[iid]
	if !ok {
		s.t.Fatalf("gitlabfake: no merge request !%d", iid)
	}
	return m
}

// Merge marks a merge request merged by mergeSHA and records that the
// commits belong to it.
func (s *Server) Merge(iid int64, mergeSHA string, commits ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.mustMR(iid)
	m.State, m.MergeCommitSHA, m.Updated = "merged", mergeSHA, time.Now().UTC()
	for _, c := range append([]string{mergeSHA}, commits...) {
		if !slices.Contains(s.commits[c], iid) {
			s.commits[c] = append(s.commits[c], iid)
		}
	}
}

// SetDescription edits a merge request's description.
func (s *Server) SetDescription(iid int64, description string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.mustMR(iid)
	m.Description, m.Updated = description, time.Now().UTC()
}

// SetHead moves a merge request's head (a push to its source branch).
func (s *Server) SetHead(iid int64, sha string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.mustMR(iid)
	m.SHA, m.Updated = sha, time.Now().UTC()
	s.commits[sha] = append(s.commits[sha], iid)
}

// AddNote adds a note by a user, as the web interface does.
func (s *Server) AddNote(iid int64, author, body string) *Note {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addNote(iid, author, body, false)
}

// AddSystemNote adds a system note ("added 1 commit").
func (s *Server) AddSystemNote(iid int64, body string) *Note {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addNote(iid, "root", body, true)
}

func (s *Server) addNote(iid int64, author, body string, system bool) *Note {
	m := s.mustMR(iid)
	s.addUser(author)
	s.nextID++
	now := time.Now().UTC()
	n := &Note{ID: s.nextID, Author: author, Body: body, System: system, Created: now, Updated: now, MRIID: iid}
	m.Notes = append(m.Notes, n)
	return n
}

// EditNote changes a note's body.
func (s *Server) EditNote(iid, id int64, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.note(iid, id)
	if n == nil {
		s.t.Fatalf("gitlabfake: no note %d on !%d", id, iid)
	}
	n.Body, n.Updated = body, time.Now().UTC()
	n.Edits++
}

// DeleteNote deletes a note (GitLab sends no webhook for it).
func (s *Server) DeleteNote(iid, id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.note(iid, id)
	if n == nil {
		s.t.Fatalf("gitlabfake: no note %d on !%d", id, iid)
	}
	n.Deleted = true
}

func (s *Server) note(iid, id int64) *Note {
	for _, n := range s.mustMR(iid).Notes {
		if n.ID == id && !n.Deleted {
			return n
		}
	}
	return nil
}

// Note is a copy of a note (ok false when deleted or unknown).
func (s *Server) Note(iid, id int64) (Note, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.note(iid, id)
	if n == nil {
		return Note{}, false
	}
	return *n, true
}

// NotesBy lists the live notes a user wrote on a merge request.
func (s *Server) NotesBy(iid int64, author string) []Note {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Note
	for _, n := range s.mustMR(iid).Notes {
		if !n.Deleted && n.Author == author {
			out = append(out, *n)
		}
	}
	return out
}

// Statuses lists the statuses set on a commit, oldest first.
func (s *Server) Statuses(sha string) []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Status
	for _, st := range s.statuses {
		if st.SHA == sha {
			out = append(out, *st)
		}
	}
	return out
}

// LatestStatus is the last status set on a commit under a name.
func (s *Server) LatestStatus(sha, name string) (Status, bool) {
	all := s.Statuses(sha)
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].Name == name {
			return all[i], true
		}
	}
	return Status{}, false
}

// SetMaxPerPage caps per_page lower than GitLab's 100, so that short
// lists span pages.
func (s *Server) SetMaxPerPage(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxPerPage = max(n, 1)
}

// RateLimit answers the next n requests 429, asking to retry after
// retryAfter seconds.
func (s *Server) RateLimit(n, retryAfter int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limited, s.retryAfter = n, retryAfter
	s.resetAt = time.Now().Add(time.Duration(retryAfter) * time.Second)
}

// Fail answers the next n requests 502 Bad Gateway.
func (s *Server) Fail(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing = n
}

// Requests lists the requests served.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// ---- the API ----

var (
	projectRE   = regexp.MustCompile(`^/api/v4/projects/([^/]+)(/.*)?$`)
	mrRE        = regexp.MustCompile(`^/merge_requests/([0-9]+)$`)
	notesRE     = regexp.MustCompile(`^/merge_requests/([0-9]+)/notes$`)
	noteRE      = regexp.MustCompile(`^/merge_requests/([0-9]+)/notes/([0-9]+)$`)
	statusRE    = regexp.MustCompile(`^/statuses/([0-9a-f]{40})$`)
	commitMRsRE = regexp.MustCompile(`^/repository/commits/([0-9a-f]{40})/merge_requests$`)
)

type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	rec := &recorder{ResponseWriter: w, status: 200}
	s.mu.Lock()
	defer s.mu.Unlock()
	defer func() {
		s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery, Status: rec.status})
	}()
	s.route(rec, r)
}

func jsonError(w http.ResponseWriter, code int, message any) {
	writeJSON(w, code, map[string]any{"message": message})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	user, ok := s.tokens[r.Header.Get("Private-Token")]
	if !ok {
		jsonError(w, http.StatusUnauthorized, "401 Unauthorized")
		return
	}
	if s.failing > 0 {
		s.failing--
		jsonError(w, http.StatusBadGateway, "502 Bad Gateway")
		return
	}
	w.Header().Set("RateLimit-Limit", "2000")
	if s.limited > 0 {
		s.limited--
		w.Header().Set("RateLimit-Observed", "2001")
		w.Header().Set("RateLimit-Remaining", "0")
		w.Header().Set("RateLimit-Reset", strconv.FormatInt(s.resetAt.Unix(), 10))
		w.Header().Set("RateLimit-ResetTime", s.resetAt.UTC().Format(http.TimeFormat))
		w.Header().Set("Retry-After", strconv.Itoa(s.retryAfter))
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, "Retry later\n")
		return
	}
	m := projectRE.FindStringSubmatch(r.URL.EscapedPath())
	if m == nil {
		jsonError(w, http.StatusNotFound, "404 Not Found")
		return
	}
	id, err := url.PathUnescape(m[1])
	if err != nil || (id != s.Path && id != strconv.FormatInt(s.ID, 10)) {
		jsonError(w, http.StatusNotFound, "404 Project Not Found")
		return
	}
	rest := m[2]
	switch {
	case rest == "" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, s.projectJSON())
	case mrRE.MatchString(rest) && r.Method == http.MethodGet:
		iid, _ := strconv.ParseInt(mrRE.FindStringSubmatch(rest)[1], 10, 64)
		mr, ok := s.mrs[iid]
		if !ok {
			jsonError(w, http.StatusNotFound, "404 Not found")
			return
		}
		writeJSON(w, http.StatusOK, s.mrJSON(mr))
	case notesRE.MatchString(rest) && r.Method == http.MethodGet:
		iid, _ := strconv.ParseInt(notesRE.FindStringSubmatch(rest)[1], 10, 64)
		s.listNotes(w, r, iid)
	case notesRE.MatchString(rest) && r.Method == http.MethodPost:
		iid, _ := strconv.ParseInt(notesRE.FindStringSubmatch(rest)[1], 10, 64)
		s.createNote(w, r, iid, user)
	case noteRE.MatchString(rest) && r.Method == http.MethodPut:
		sm := noteRE.FindStringSubmatch(rest)
		iid, _ := strconv.ParseInt(sm[1], 10, 64)
		nid, _ := strconv.ParseInt(sm[2], 10, 64)
		s.updateNote(w, r, iid, nid, user)
	case statusRE.MatchString(rest) && r.Method == http.MethodPost:
		s.setStatus(w, r, statusRE.FindStringSubmatch(rest)[1], user)
	case commitMRsRE.MatchString(rest) && r.Method == http.MethodGet:
		sha := commitMRsRE.FindStringSubmatch(rest)[1]
		out := []any{}
		for _, iid := range s.commits[sha] {
			out = append(out, s.mrJSON(s.mrs[iid]))
		}
		writeJSON(w, http.StatusOK, out)
	default:
		jsonError(w, http.StatusNotFound, "404 Not Found")
	}
}

// decodeBody reads a JSON or form body (the client sends JSON).
func decodeBody(r *http.Request) (map[string]any, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, 20<<20))
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		return out, json.Unmarshal(b, &out)
	}
	q, err := url.ParseQuery(string(b))
	for k := range q {
		out[k] = q.Get(k)
	}
	for k := range r.URL.Query() {
		out[k] = r.URL.Query().Get(k)
	}
	return out, err
}

func str(m map[string]any, k string) (string, bool) {
	v, ok := m[k].(string)
	return v, ok
}

func (s *Server) listNotes(w http.ResponseWriter, r *http.Request, iid int64) {
	mr, ok := s.mrs[iid]
	if !ok {
		jsonError(w, http.StatusNotFound, "404 Not found")
		return
	}
	q := r.URL.Query()
	page, _ := strconv.Atoi(q.Get("page"))
	perPage, _ := strconv.Atoi(q.Get("per_page"))
	page = max(page, 1)
	if perPage <= 0 {
		perPage = 20
	}
	perPage = min(perPage, s.maxPerPage)
	var live []*Note
	for _, n := range mr.Notes {
		if !n.Deleted {
			live = append(live, n)
		}
	}
	// GitLab's default order is created_at descending.
	if q.Get("sort") != "asc" {
		slices.Reverse(live)
	}
	total := len(live)
	pages := max((total+perPage-1)/perPage, 1)
	from := min((page-1)*perPage, total)
	to := min(from+perPage, total)
	out := []any{}
	for _, n := range live[from:to] {
		out = append(out, s.noteJSON(n))
	}
	h := w.Header()
	h.Set("X-Page", strconv.Itoa(page))
	h.Set("X-Per-Page", strconv.Itoa(perPage))
	h.Set("X-Total", strconv.Itoa(total))
	h.Set("X-Total-Pages", strconv.Itoa(pages))
	h.Set("X-Prev-Page", "")
	if page > 1 {
		h.Set("X-Prev-Page", strconv.Itoa(page-1))
	}
	h.Set("X-Next-Page", "")
	var links []string
	link := func(p int, rel string) {
		u := *r.URL
		u.Scheme, u.Host = "http", r.Host
		v := u.Query()
		v.Set("page", strconv.Itoa(p))
		u.RawQuery = v.Encode()
		links = append(links, fmt.Sprintf("<%s>; rel=%q", u.String(), rel))
	}
	if page < pages {
		h.Set("X-Next-Page", strconv.Itoa(page+1))
		link(page+1, "next")
	}
	link(1, "first")
	link(pages, "last")
	h.Set("Link", strings.Join(links, ", "))
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) createNote(w http.ResponseWriter, r *http.Request, iid int64, user string) {
	if _, ok := s.mrs[iid]; !ok {
		jsonError(w, http.StatusNotFound, "404 Not found")
		return
	}
	in, err := decodeBody(r)
	body, _ := str(in, "body")
	if err != nil || body == "" {
		jsonError(w, http.StatusBadRequest, "400 (Bad request) \"body\" not given")
		return
	}
	if utf8.RuneCountInString(body) > MaxNoteBody {
		jsonError(w, http.StatusBadRequest, map[string]any{"note": []string{fmt.Sprintf("is too long (maximum is %d characters)", MaxNoteBody)}})
		return
	}
	n := s.addNote(iid, user, body, false)
	writeJSON(w, http.StatusCreated, s.noteJSON(n))
}

func (s *Server) updateNote(w http.ResponseWriter, r *http.Request, iid, id int64, user string) {
	if _, ok := s.mrs[iid]; !ok {
		jsonError(w, http.StatusNotFound, "404 Not found")
		return
	}
	n := s.note(iid, id)
	if n == nil {
		jsonError(w, http.StatusNotFound, "404 Note Not Found")
		return
	}
	if n.Author != user {
		jsonError(w, http.StatusForbidden, "403 Forbidden")
		return
	}
	in, err := decodeBody(r)
	body, _ := str(in, "body")
	if err != nil || body == "" {
		jsonError(w, http.StatusBadRequest, "400 (Bad request) \"body\" not given")
		return
	}
	if utf8.RuneCountInString(body) > MaxNoteBody {
		jsonError(w, http.StatusBadRequest, map[string]any{"note": []string{fmt.Sprintf("is too long (maximum is %d characters)", MaxNoteBody)}})
		return
	}
	n.Body, n.Updated = body, time.Now().UTC()
	n.Edits++
	writeJSON(w, http.StatusOK, s.noteJSON(n))
}

var statusStates = []string{"pending", "running", "success", "failed", "canceled", "skipped"}

// setStatus follows GitLab's commit status API: a status of the same name
// that is still pending or running is moved to the new state (and GitLab
// refuses a transition its state machine lacks: pending to pending,
// running to running or pending); a completed one is replaced by a new.
func (s *Server) setStatus(w http.ResponseWriter, r *http.Request, sha, user string) {
	in, err := decodeBody(r)
	if err != nil {
		jsonError(w, http.StatusBadRequest, "400 Bad request")
		return
	}
	state, _ := str(in, "state")
	if !slices.Contains(statusStates, state) {
		jsonError(w, http.StatusBadRequest, "state does not have a valid value")
		return
	}
	name, _ := str(in, "name")
	if name == "" {
		name, _ = str(in, "context")
	}
	if name == "" {
		name = "default"
	}
	desc, _ := str(in, "description")
	if utf8.RuneCountInString(desc) > MaxStatusDescription {
		jsonError(w, http.StatusBadRequest, map[string]any{"description": []string{fmt.Sprintf("is too long (maximum is %d characters)", MaxStatusDescription)}})
		return
	}
	target, _ := str(in, "target_url")
	known := false
	for _, mr := range s.mrs {
		if mr.SHA == sha {
			known = true
		}
	}
	if _, ok := s.commits[sha]; ok {
		known = true
	}
	if !known {
		jsonError(w, http.StatusNotFound, "404 References for commit Not Found")
		return
	}
	var open *Status
	for _, st := range s.statuses {
		if st.SHA == sha && st.Name == name && (st.State == "pending" || st.State == "running") {
			open = st
		}
	}
	now := time.Now().UTC()
	if open != nil {
		event := map[string]string{"pending": "enqueue", "running": "run", "success": "success", "failed": "drop", "canceled": "cancel", "skipped": "skip"}[state]
		if state == "pending" || (state == "running" && open.State == "running") || state == "skipped" {
			jsonError(w, http.StatusBadRequest, fmt.Sprintf("Cannot transition status via :%s from :%s", event, open.State))
			return
		}
		open.State, open.Description, open.TargetURL = state, desc, target
		if state != "running" {
			open.Finished = now
		}
		writeJSON(w, http.StatusCreated, statusJSON(open))
		return
	}
	s.nextID++
	st := &Status{ID: s.nextID, SHA: sha, Ref: "", Name: name, State: state, Description: desc, TargetURL: target, Author: user, Created: now}
	if state != "pending" && state != "running" {
		st.Finished = now
	}
	s.statuses = append(s.statuses, st)
	writeJSON(w, http.StatusCreated, statusJSON(st))
}

func ts(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

func statusJSON(st *Status) map[string]any {
	return map[string]any{"id": st.ID, "sha": st.SHA, "ref": st.Ref, "status": st.State, "name": st.Name,
		"target_url": st.TargetURL, "description": st.Description, "created_at": ts(st.Created), "started_at": nil,
		"finished_at": ts(st.Finished), "allow_failure": false, "coverage": nil,
		"author": map[string]any{"username": st.Author, "name": st.Author, "state": "active"}}
}

func (s *Server) userJSON(username string) map[string]any {
	return map[string]any{"id": s.users[username], "username": username, "name": username, "state": "active",
		"avatar_url": "", "web_url": s.srv.URL + "/" + username}
}

func (s *Server) projectJSON() map[string]any {
	name := s.Path[strings.LastIndex(s.Path, "/")+1:]
	return map[string]any{"id": s.ID, "name": name, "path": name, "path_with_namespace": s.Path,
		"name_with_namespace": strings.ReplaceAll(s.Path, "/", " / "), "default_branch": "main",
		"web_url": s.srv.URL + "/" + s.Path, "http_url_to_repo": s.srv.URL + "/" + s.Path + ".git",
		"ssh_url_to_repo": "git@fake:" + s.Path + ".git", "visibility": "private"}
}

// MRWebURL is a merge request's web address.
func (s *Server) MRWebURL(iid int64) string {
	return fmt.Sprintf("%s/%s/-/merge_requests/%d", s.srv.URL, s.Path, iid)
}

func (s *Server) mrJSON(m *MergeRequest) map[string]any {
	var merged any
	if m.State == "merged" {
		merged = ts(m.Updated)
	}
	var mergeSHA any
	if m.MergeCommitSHA != "" {
		mergeSHA = m.MergeCommitSHA
	}
	return map[string]any{
		"id": m.ID, "iid": m.IID, "project_id": s.ID, "title": m.Title, "description": m.Description, "state": m.State,
		"created_at": ts(m.Created), "updated_at": ts(m.Updated), "merged_at": merged, "closed_at": nil,
		"target_branch": m.TargetBranch, "source_branch": m.SourceBranch, "author": s.userJSON(m.Author),
		"source_project_id": s.ID, "target_project_id": s.ID, "draft": false, "work_in_progress": false,
		"merge_when_pipeline_succeeds": false, "merge_status": "can_be_merged", "detailed_merge_status": "mergeable",
		"sha": m.SHA, "merge_commit_sha": mergeSHA, "squash_commit_sha": nil, "squash": false,
		"user_notes_count": len(m.Notes), "web_url": s.MRWebURL(m.IID),
		"references": map[string]any{"short": fmt.Sprintf("!%d", m.IID), "relative": fmt.Sprintf("!%d", m.IID), "full": fmt.Sprintf("%s!%d", s.Path, m.IID)},
		"diff_refs":  map[string]any{"base_sha": m.BaseSHA, "head_sha": m.SHA, "start_sha": m.BaseSHA},
	}
}

func (s *Server) noteJSON(n *Note) map[string]any {
	return map[string]any{"id": n.ID, "type": nil, "body": n.Body, "attachment": nil, "author": s.userJSON(n.Author),
		"created_at": ts(n.Created), "updated_at": ts(n.Updated), "system": n.System, "noteable_id": s.mrs[n.MRIID].ID,
		"noteable_type": "MergeRequest", "project_id": s.ID, "noteable_iid": n.MRIID, "resolvable": false,
		"confidential": false, "internal": n.internal}
}
