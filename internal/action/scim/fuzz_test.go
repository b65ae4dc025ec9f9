package scim

import (
	"testing"
)

// parseList decodes what a remote provider sends: whatever the bytes, it
// returns a user only when that user is the target and the only match.
func FuzzParseList(f *testing.F) {
	f.Add([]byte(`{"totalResults":1,"Resources":[{"id":"1","userName":"alice","active":true}]}`), "alice", 0)
	f.Add([]byte(`{"totalResults":2,"Resources":[{"id":"1","userName":"alice"},{"id":"2","userName":"ALICE"}]}`), "alice", 0)
	f.Add([]byte(`{"totalResults":1,"Resources":[{"id":"1","emails":[{"value":"a@x.example"}]}]}`), "a@x.example", 1)
	f.Add([]byte(`{"totalResults":1,"Resources":[{"id":"1","externalId":"E1","active":"false"}]}`), "E1", 2)
	f.Add([]byte(`{"totalResults":5,"Resources":[]}`), "bob", 0)
	f.Add([]byte(`[]`), "bob", 0)
	matches := []Match{MatchUserName, MatchEmail, MatchExternalID}
	f.Fuzz(func(t *testing.T, body []byte, target string, m int) {
		match := matches[uint(m)%uint(len(matches))]
		l, err := parseList(body, match, target)
		if err != nil {
			if l.user != nil || l.count != 0 {
				t.Fatalf("an error with a result: %+v", l)
			}
			return
		}
		switch {
		case l.user != nil:
			if l.count != 1 || l.user.ID == "" || !l.user.matches(match, target) {
				t.Fatalf("returned %+v for %s %q", l.user, match, target)
			}
		case l.count == 1:
			t.Fatal("one match without a user")
		}
	})
}
