package store_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/writ-sec/writ/internal/dbtest"
)

// Channels configured together start together, where the notifier of
// earlier versions stood; a channel added later starts where the furthest
// stands; cursors only move forward, except when the audit log is rolled
// back under them.
func TestNotificationChannelCursors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.Store(t)
	if err := st.SetNotificationCursor(ctx, 7); err != nil {
		t.Fatal(err)
	}
	if err := st.EnsureChannelCursors(ctx, []string{"mail", "chat"}); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []string{"mail", "chat"} {
		if c, err := st.ChannelCursor(ctx, ch); err != nil || c != 7 {
			t.Fatalf("%s: %d %v", ch, c, err)
		}
	}
	if err := st.SetChannelCursor(ctx, "chat", 20); err != nil {
		t.Fatal(err)
	}
	if err := st.SetChannelCursor(ctx, "chat", 15); err != nil {
		t.Fatal(err)
	}
	if c, _ := st.ChannelCursor(ctx, "chat"); c != 20 {
		t.Fatalf("chat moved back: %d", c)
	}
	if c, _ := st.ChannelCursor(ctx, "pager"); c != 20 {
		t.Fatalf("a channel added later: %d", c)
	}
	if c, _ := st.ChannelCursor(ctx, "mail"); c != 7 {
		t.Fatalf("mail: %d", c)
	}
	if err := st.RewindNotificationCursor(ctx, 10); err != nil {
		t.Fatal(err)
	}
	for ch, want := range map[string]int64{"mail": 7, "chat": 10, "pager": 10} {
		if c, _ := st.ChannelCursor(ctx, ch); c != want {
			t.Fatalf("%s after the rewind: %d, want %d", ch, c, want)
		}
	}
	if err := st.SetChannelCursor(ctx, "Bad Name", 1); err != nil {
		t.Fatal(err) // no row: nothing to update
	}
	if _, err := st.ChannelCursor(ctx, "Bad Name"); err == nil {
		t.Fatal("a bad channel name was stored")
	}
}

// An invalid playbook file is recorded, replaced and cleared by path.
func TestInvalidPlaybooks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.Store(t)
	sha := strings.Repeat("a", 40)
	p1 := json.RawMessage(`[{"path":"playbooks/a.yaml","line":3,"col":5,"message":"x"}]`)
	if err := st.SetInvalidPlaybook(ctx, "playbooks/b.yaml", sha, p1); err != nil {
		t.Fatal(err)
	}
	if err := st.SetInvalidPlaybook(ctx, "playbooks/a.yaml", sha, p1); err != nil {
		t.Fatal(err)
	}
	p2 := json.RawMessage(`[{"path":"playbooks/a.yaml","line":4,"col":1,"message":"y"}]`)
	if err := st.SetInvalidPlaybook(ctx, "playbooks/a.yaml", strings.Repeat("b", 40), p2); err != nil {
		t.Fatal(err)
	}
	list, err := st.InvalidPlaybooks(ctx)
	if err != nil || len(list) != 2 || list[0].Path != "playbooks/a.yaml" || list[0].CommitSHA != strings.Repeat("b", 40) ||
		!strings.Contains(string(list[0].Problems), `"line": 4`) && !strings.Contains(string(list[0].Problems), `"line":4`) {
		t.Fatalf("%+v %v", list, err)
	}
	if err := st.ClearInvalidPlaybook(ctx, "playbooks/a.yaml"); err != nil {
		t.Fatal(err)
	}
	if list, _ := st.InvalidPlaybooks(ctx); len(list) != 1 || list[0].Path != "playbooks/b.yaml" {
		t.Fatalf("after clearing: %+v", list)
	}
	if err := st.SetInvalidPlaybook(ctx, "playbooks/c.yaml", "not-a-sha", p1); err == nil {
		t.Fatal("a bad commit was stored")
	}
}
