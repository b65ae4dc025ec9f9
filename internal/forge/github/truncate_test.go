package github

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	gh "github.com/google/go-github/v88/github"

	"github.com/writ-sec/writ/internal/forge/github/githubfake"
)

// Texts cut to a limit stay valid UTF-8, within the limit (in code points
// and in UTF-16 code units, or in bytes), a prefix of the original that
// splits no character nor combining sequence, with the visible mark.
func TestFitCutsOnCharacterBoundaries(t *testing.T) {
	t.Parallel()
	const mark = "… (truncated)"
	pad := strings.Repeat("z", 30)
	cases := []struct {
		name  string
		unit  string // chars or bytes
		s     string
		limit int
		want  string // the kept text, before the mark
	}{
		{"fits", "chars", "üü", 2, "üü"},
		{"two-byte letters, bytes", "bytes", strings.Repeat("ü", 20), 16 + len(mark), "üüüüüüüü"},
		{"two-byte letters, odd byte limit", "bytes", strings.Repeat("ü", 20), 17 + len(mark), "üüüüüüüü"},
		{"four-byte emoji, bytes", "bytes", strings.Repeat("😀", 10), 10 + len(mark), "😀😀"},
		{"emoji count two characters", "chars", strings.Repeat("😀", 10), 5 + utf8.RuneCountInString(mark), "😀😀"},
		{"combining accent kept with its letter", "chars", "abcde\u0301" + pad, 5 + utf8.RuneCountInString(mark), "abcd"},
		{"variation selector", "chars", "ab\u2764\uFE0F" + pad, 3 + utf8.RuneCountInString(mark), "ab"},
		{"zero-width joiner sequence", "chars", "a👩\u200D💻" + pad, 4 + utf8.RuneCountInString(mark), "a"},
		{"skin tone modifier", "chars", "a👍🏽" + pad, 3 + utf8.RuneCountInString(mark), "a"},
		{"flag pair", "chars", "a🇫🇷🇩🇪" + pad, 5 + utf8.RuneCountInString(mark), "a🇫🇷"},
		{"half a flag", "chars", "a🇫🇷🇩🇪" + pad, 3 + utf8.RuneCountInString(mark), "a"},
		{"invalid UTF-8 in the input", "bytes", "ab\xffcd" + pad, 6 + len(mark), "ab\uFFFDc"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got string
			if tc.unit == "bytes" {
				got = fitBytes(tc.s, tc.limit, mark)
			} else {
				got = fitChars(tc.s, tc.limit, mark)
			}
			checkFit(t, tc.s, got, tc.limit, tc.unit, mark)
			if want := tc.want; want != tc.s {
				want += mark
				if got != want {
					t.Errorf("got %q, want %q", got, want)
				}
			} else if got != tc.s {
				t.Errorf("a text within the limit changed: %q", got)
			}
		})
	}
	// Every cut of a mixed text, at every limit near its length.
	mixed := strings.Repeat("aü😀e\u0301🇫🇷👩\u200D💻", 40)
	for limit := 20; limit < 400; limit++ {
		checkFit(t, mixed, fitChars(mixed, limit, mark), limit, "chars", mark)
		checkFit(t, mixed, fitBytes(mixed, limit, mark), limit, "bytes", mark)
	}
	// A combining sequence longer than the back-off is cut inside, never
	// emptied.
	zalgo := "a" + strings.Repeat("\u0301", 500)
	if got := fitChars(zalgo, 100, mark); !utf8.ValidString(got) || len(got) <= len(mark)+1 {
		t.Errorf("long combining sequence: %q", got)
	}
}

func checkFit(t *testing.T, orig, got string, limit int, unit, mark string) {
	t.Helper()
	if !utf8.ValidString(got) {
		t.Fatalf("invalid UTF-8: %q", got)
	}
	switch unit {
	case "bytes":
		if len(got) > limit {
			t.Fatalf("%d bytes > %d", len(got), limit)
		}
	default:
		if n := utf8.RuneCountInString(got); n > limit {
			t.Fatalf("%d code points > %d", n, limit)
		}
		if n := measure(got, chars); n > limit {
			t.Fatalf("%d UTF-16 code units > %d", n, limit)
		}
	}
	if got == strings.ToValidUTF8(orig, "\uFFFD") {
		return
	}
	kept, ok := strings.CutSuffix(got, mark)
	if !ok {
		t.Fatalf("no mark: %q", got)
	}
	valid := strings.ToValidUTF8(orig, "\uFFFD")
	if !strings.HasPrefix(valid, kept) {
		t.Fatalf("%q is not a prefix of %q", kept, valid)
	}
	if rest := valid[len(kept):]; rest != "" {
		r, _ := utf8.DecodeRuneInString(rest)
		last, _ := utf8.DecodeLastRuneInString(kept)
		if (extends(r) || last == zwj || splitsFlag(kept, r)) && len(kept) > 0 && !strings.Contains(valid, strings.Repeat("\u0301", maxBackoff)) {
			t.Fatalf("cut inside a combining sequence: %q | %q", kept, rest[:min(len(rest), 12)])
		}
	}
}

// The fake refuses what GitHub documents it refuses: too long a summary
// or text (characters), annotation title (characters) or message (64
// KB), and a body that is not UTF-8.
func TestFakeEnforcesCheckRunLimits(t *testing.T) {
	t.Parallel()
	f := githubfake.New(t, testOwner, testName)
	f.AddToken(testToken, botLogin)
	client, err := NewClient(ClientOptions{BaseURL: f.URL(), Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	head := strings.Repeat("a", 40)
	create := func(summary string, ann *gh.CheckRunAnnotation) error {
		o := &gh.CheckRunOutput{Title: gh.Ptr("t"), Summary: gh.Ptr(summary)}
		if ann != nil {
			o.Annotations = []*gh.CheckRunAnnotation{ann}
		}
		_, _, err := client.Checks.CreateCheckRun(ctx, testOwner, testName, gh.CreateCheckRunOptions{Name: "writ", HeadSHA: head, Output: o})
		return err
	}
	ann := func(title, msg string) *gh.CheckRunAnnotation {
		return &gh.CheckRunAnnotation{Path: gh.Ptr("p.yaml"), StartLine: gh.Ptr(1), EndLine: gh.Ptr(1),
			AnnotationLevel: gh.Ptr("failure"), Title: gh.Ptr(title), Message: gh.Ptr(msg)}
	}
	status := func(err error) int {
		if e, ok := err.(*gh.ErrorResponse); ok {
			return e.Response.StatusCode
		}
		return 0
	}
	// 65535 characters of two bytes each: within the limit.
	if err := create(strings.Repeat("ü", githubfake.MaxSummaryChars), ann(strings.Repeat("ü", 255), strings.Repeat("ü", 32<<10))); err != nil {
		t.Fatalf("at the limits: %v", err)
	}
	for name, err := range map[string]error{
		"summary":            create(strings.Repeat("ü", githubfake.MaxSummaryChars+1), nil),
		"annotation title":   create("s", ann(strings.Repeat("ü", 256), "m")),
		"annotation message": create("s", ann("t", strings.Repeat("x", 64<<10+1))),
	} {
		if status(err) != http.StatusUnprocessableEntity {
			t.Errorf("%s over the limit: %v, want 422", name, err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.URL()+"api/v3/repos/"+testOwner+"/"+testName+"/check-runs",
		strings.NewReader(`{"name":"writ","head_sha":"`+head+`","output":{"title":"t","summary":"cut \xc3"}}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "token "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a body that is not UTF-8: %d, want 400", resp.StatusCode)
	}
}

// A pull request whose problems quote tens of thousands of two-byte
// letters gets a summary and an annotation cut to GitHub's limits on a
// character boundary, with the mark, and no U+FFFD (which is what a byte
// cut inside a letter becomes on the wire).
func TestLongMultibyteTextIsCutOnCharacters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	key := "x" + strings.Repeat("ü", 40000)
	long := playbookYAML("long", "INC-9", "203.0.113.9", "low", "staging") + "  ? " + key + "\n  : 1\n"
	long2 := playbookYAML("long2", "INC-9", "203.0.113.10", "low", "staging") + "  ? " + key + "\n  : 1\n"
	p := e.openPR(9, "alice-gh", "", map[string]string{pbPath("long"): long, pbPath("long2"): long2})
	e.process()
	run := e.check(p.head)
	if run.Conclusion != ConclusionFailure {
		t.Fatalf("check %s: %s", run.Conclusion, run.Title)
	}
	if !utf8.ValidString(run.Summary) || strings.ContainsRune(run.Summary, utf8.RuneError) {
		t.Errorf("summary has a broken character")
	}
	if n := utf8.RuneCountInString(run.Summary); n > maxSummary || !strings.HasSuffix(run.Summary, summaryCut) {
		t.Errorf("summary of %d characters, ends %q", n, run.Summary[max(0, len(run.Summary)-80):])
	}
	if len(run.Annotations) != 2 {
		t.Fatalf("%d annotations", len(run.Annotations))
	}
	for _, a := range run.Annotations {
		full := `unknown field "` + key + `"`
		kept, cut := strings.CutSuffix(a.Message, truncatedMark)
		if !cut || !strings.HasPrefix(full, kept) || len(a.Message) > maxAnnotationMessage || strings.ContainsRune(a.Message, utf8.RuneError) {
			t.Errorf("%s: message of %d bytes, ends %q", a.Path, len(a.Message), a.Message[max(0, len(a.Message)-40):])
		}
	}
}

// BenchmarkCapSummary cuts a 100,000-character summary of mixed text
// (two-byte letters, emoji, combining accents) to GitHub's limit.
func BenchmarkCapSummary(b *testing.B) {
	s := strings.Repeat("aü😀e\u0301", 25000)
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		_ = capSummary(s)
	}
}
