package gitlabfake

import (
	"bytes"
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// The documented example payloads (testdata/README.md).
//
//go:embed testdata/*.json
var examples embed.FS

// Event names (X-Gitlab-Event).
const (
	EventMergeRequest = "Merge Request Hook"
	EventNote         = "Note Hook"
	EventPush         = "Push Hook"
)

// UserAgent is what GitLab's webhooks send.
const UserAgent = "GitLab/17.11.0"

// Delivery is a webhook delivery as GitLab sends it.
type Delivery struct {
	Event string // X-Gitlab-Event
	// UUID is X-Gitlab-Event-UUID; a new one when empty. GitLab keeps it
	// when an event is resent.
	UUID    string
	Payload []byte
	// Token overrides X-Gitlab-Token ("" sends the secret; "-" none).
	Token string
	// WebhookUUID is X-Gitlab-Webhook-UUID (the hook's id); fixed when
	// empty.
	WebhookUUID string
}

// Answer is the receiver's response.
type Answer struct {
	Status int
	Body   string
	UUID   string
}

// NewUUID is a random (version 4) UUID.
func NewUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return fmt.Sprintf("%s-%s-%s-%s-%s", h[:8], h[8:12], h[12:16], h[16:20], h[20:])
}

// Deliver posts a delivery to a webhook receiver with GitLab's headers.
func Deliver(ctx context.Context, client *http.Client, url, secret string, d Delivery) (Answer, error) {
	if d.UUID == "" {
		d.UUID = NewUUID()
	}
	if d.WebhookUUID == "" {
		d.WebhookUUID = "0b4a2d3c-5e6f-4a1b-8c9d-0e1f2a3b4c5d"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(d.Payload))
	if err != nil {
		return Answer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set("X-Gitlab-Event", d.Event)
	req.Header.Set("X-Gitlab-Event-UUID", d.UUID)
	req.Header.Set("X-Gitlab-Webhook-UUID", d.WebhookUUID)
	req.Header.Set("X-Gitlab-Instance", "https://gitlab.example.com")
	req.Header.Set("Idempotency-Key", d.UUID)
	switch d.Token {
	case "":
		req.Header.Set("X-Gitlab-Token", secret)
	case "-":
	default:
		req.Header.Set("X-Gitlab-Token", d.Token)
	}
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return Answer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return Answer{Status: resp.StatusCode, Body: string(body), UUID: d.UUID}, err
}

func example(name string) map[string]any {
	b, err := examples.ReadFile("testdata/" + name)
	if err != nil {
		panic(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		panic(fmt.Sprintf("gitlabfake: %s: %v", name, err))
	}
	return m
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// hookTime is how GitLab writes times in hook payloads.
func hookTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

func (s *Server) hookProject() map[string]any {
	p := s.projectJSON()
	return map[string]any{"id": s.ID, "name": p["name"], "description": "", "web_url": p["web_url"], "avatar_url": nil,
		"git_ssh_url": p["ssh_url_to_repo"], "git_http_url": p["http_url_to_repo"], "namespace": s.Path[:len(s.Path)-len(p["name"].(string))-1],
		"visibility_level": 0, "path_with_namespace": s.Path, "default_branch": "main", "ci_config_path": nil,
		"homepage": p["web_url"], "url": p["ssh_url_to_repo"], "ssh_url": p["ssh_url_to_repo"], "http_url": p["http_url_to_repo"]}
}

func (s *Server) hookUser(username string) map[string]any {
	return map[string]any{"id": s.users[username], "name": username, "username": username, "avatar_url": "", "email": "[REDACTED]"}
}

func (s *Server) hookRepository() map[string]any {
	p := s.projectJSON()
	return map[string]any{"name": p["name"], "url": p["ssh_url_to_repo"], "description": "", "homepage": p["web_url"]}
}

func (s *Server) lastCommit(sha string) map[string]any {
	return map[string]any{"id": sha, "message": "change\n", "title": "change", "timestamp": time.Now().UTC().Format(time.RFC3339),
		"url": fmt.Sprintf("%s/%s/-/commit/%s", s.srv.URL, s.Path, sha), "author": map[string]any{"name": "Test", "email": "test@example.com"}}
}

// MergeRequestHook is a Merge Request Hook payload for a merge request as
// it is now (action: open, reopen, update, close, merge, ...), sent
// because of by.
func (s *Server) MergeRequestHook(iid int64, action, by string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.mustMR(iid)
	s.addUser(by)
	p := example("merge_request_hook.json")
	p["user"] = s.hookUser(by)
	p["project"] = s.hookProject()
	p["repository"] = s.hookRepository()
	a := p["object_attributes"].(map[string]any)
	a["id"], a["iid"], a["title"], a["description"] = m.ID, m.IID, m.Title, m.Description
	a["target_branch"], a["source_branch"] = m.TargetBranch, m.SourceBranch
	a["source_project_id"], a["target_project_id"], a["author_id"] = s.ID, s.ID, s.users[m.Author]
	a["state"], a["action"] = m.State, action
	a["state_id"] = map[string]int{"opened": 1, "closed": 2, "merged": 3, "locked": 4}[m.State]
	a["created_at"], a["updated_at"] = hookTime(m.Created), hookTime(m.Updated)
	a["last_commit"] = s.lastCommit(m.SHA)
	a["url"] = s.MRWebURL(m.IID)
	a["source"], a["target"] = s.hookProject(), s.hookProject()
	if m.MergeCommitSHA != "" {
		a["merge_commit_sha"] = m.MergeCommitSHA
	}
	if action == "update" {
		a["oldrev"] = m.BaseSHA
	}
	p["changes"] = map[string]any{}
	p["labels"], p["assignees"], p["reviewers"] = []any{}, []any{}, []any{}
	return mustJSON(p)
}

// NoteHook is a Note Hook payload for a note on a merge request (action:
// create or update).
func (s *Server) NoteHook(iid, noteID int64, action string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.mustMR(iid)
	n := s.note(iid, noteID)
	if n == nil {
		s.t.Fatalf("gitlabfake: no note %d on !%d", noteID, iid)
	}
	p := example("note_hook_merge_request.json")
	p["user"] = s.hookUser(n.Author)
	p["project_id"] = s.ID
	p["project"] = s.hookProject()
	p["repository"] = s.hookRepository()
	a := p["object_attributes"].(map[string]any)
	a["id"], a["note"], a["description"] = n.ID, n.Body, n.Body
	a["noteable_type"], a["noteable_id"], a["author_id"], a["project_id"] = "MergeRequest", m.ID, s.users[n.Author], s.ID
	a["created_at"], a["updated_at"] = hookTime(n.Created), hookTime(n.Updated)
	a["system"], a["action"] = n.System, action
	a["url"] = fmt.Sprintf("%s#note_%d", s.MRWebURL(m.IID), n.ID)
	mr := p["merge_request"].(map[string]any)
	mr["id"], mr["iid"], mr["title"], mr["description"] = m.ID, m.IID, m.Title, m.Description
	mr["target_branch"], mr["source_branch"], mr["state"] = m.TargetBranch, m.SourceBranch, m.State
	mr["source_project_id"], mr["target_project_id"], mr["author_id"] = s.ID, s.ID, s.users[m.Author]
	mr["last_commit"] = s.lastCommit(m.SHA)
	mr["url"] = s.MRWebURL(m.IID)
	mr["source"], mr["target"] = s.hookProject(), s.hookProject()
	return mustJSON(p)
}

// PushHook is a Push Hook payload: branch moved from before to after by
// by, with the commits pushed (oldest first).
func (s *Server) PushHook(branch, before, after, by string, commits []string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addUser(by)
	p := example("push_hook.json")
	p["before"], p["after"], p["ref"], p["checkout_sha"] = before, after, "refs/heads/"+branch, after
	p["ref_protected"] = true
	p["user_id"], p["user_name"], p["user_username"], p["user_email"] = s.users[by], by, by, ""
	p["project_id"] = s.ID
	p["project"] = s.hookProject()
	p["repository"] = map[string]any{"name": s.hookRepository()["name"], "url": s.hookRepository()["url"], "description": "",
		"homepage": s.hookRepository()["homepage"], "git_http_url": s.projectJSON()["http_url_to_repo"],
		"git_ssh_url": s.projectJSON()["ssh_url_to_repo"], "visibility_level": 0}
	var cs []any
	for _, c := range commits {
		lc := s.lastCommit(c)
		lc["added"], lc["modified"], lc["removed"] = []any{}, []any{}, []any{}
		cs = append(cs, lc)
	}
	p["commits"] = cs
	p["total_commits_count"] = len(commits)
	return mustJSON(p)
}
