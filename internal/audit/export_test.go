package audit

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func exportLog(t *testing.T, l *Log, opts ExportOptions) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := Export(context.Background(), l.Store(), &buf, opts); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func verifyExport(t *testing.T, b []byte, trusted *KeySet, checkpoints ...[]byte) *Report {
	t.Helper()
	rep, err := VerifyExport(context.Background(), bytes.NewReader(b), VerifyOptions{Trusted: trusted, Checkpoints: checkpoints})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestExportVerifiesOffline(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, st := newLog(t)
	trusted := trustOnly(t, l.Key())
	appendN(t, l, 500, 50)
	old := checkpointNow(t, l)
	c, _ := NewCheckpointer(CheckpointerOptions{Log: l})
	if _, err := c.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 20, 20)
	head, _ := l.Head(ctx)
	for _, format := range []string{FormatNDJSON, FormatJSON} {
		t.Run(format, func(t *testing.T) {
			b := exportLog(t, l, ExportOptions{Format: format})
			if format == FormatJSON && !json.Valid(b) {
				t.Fatal("the JSON export is not one JSON document")
			}
			rep := verifyExport(t, b, trusted, old)
			if rep.Bad != nil || rep.Entries != 520 || !bytes.Equal(rep.Root, head.Root) {
				t.Fatalf("verify export: %+v %v", rep, rep.Bad)
			}
			if len(rep.Checkpoints) != 2 {
				t.Fatalf("checkpoints checked: %v", rep.Checkpoints)
			}
		})
	}
	_ = st
}

func TestExportTamperedOrCut(t *testing.T) {
	t.Parallel()
	l, _ := newLog(t)
	trusted := trustOnly(t, l.Key())
	appendN(t, l, 30, 10)
	b := exportLog(t, l, ExportOptions{})
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 32 || !strings.Contains(lines[0], `"type":"header"`) || !strings.Contains(lines[31], `"type":"end"`) {
		t.Fatalf("export lines: %d\n%s", len(lines), lines[0])
	}
	edit := func(i int, f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal([]byte(lines[i]), &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		nb, _ := json.Marshal(m)
		out := append([]string(nil), lines...)
		out[i] = string(nb)
		return []byte(strings.Join(out, "\n") + "\n")
	}
	// Entry 7's bytes altered.
	altered := edit(8, func(m map[string]any) {
		raw, _ := base64.StdEncoding.DecodeString(m["bytes"].(string))
		raw = bytes.Replace(raw, []byte(`"success":true`), []byte(`"success":false`), 1)
		m["bytes"] = base64.StdEncoding.EncodeToString(raw)
	})
	wantFinding(t, verifyExport(t, altered, trusted), 7, "")
	// The readable copy edited to say something else.
	readable := edit(9, func(m map[string]any) { m["entry"].(map[string]any)["success"] = false })
	wantFinding(t, verifyExport(t, readable, trusted), 8, "readable copy")
	// Pretty-printed JSON is the same document.
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, exportLog(t, l, ExportOptions{Format: FormatJSON}), "", "  "); err != nil {
		t.Fatal(err)
	}
	if rep := verifyExport(t, pretty.Bytes(), trusted); rep.Bad != nil || rep.Entries != 30 {
		t.Fatalf("pretty-printed export: %v", rep.Bad)
	}
	// Cut anywhere: an error, never a shorter valid log.
	for _, cut := range []int{len(b) - 5, len(b) / 2, len(lines[0]) + 1} {
		if rep, err := VerifyExport(context.Background(), bytes.NewReader(b[:cut]), VerifyOptions{Trusted: trusted}); err == nil && rep.Bad == nil {
			t.Fatalf("export cut at %d verified", cut)
		}
	}
	// An entry line dropped (and the end count edited to match).
	dropped := append(append([]string(nil), lines[:5]...), lines[6:]...)
	dropped[len(dropped)-1] = `{"type":"end","entries":29}`
	wantFinding(t, verifyExport(t, []byte(strings.Join(dropped, "\n")+"\n"), trusted), 4, "entry missing")
}

func TestFilteredExportWithProofs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, _ := newLog(t)
	oldKey := l.Key()
	appendN(t, l, 100, 10)
	if _, err := Export(ctx, l.Store(), &bytes.Buffer{}, ExportOptions{Actor: "user-3", Proofs: true}); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("proofs without a checkpoint: %v", err)
	}
	if _, err := l.RotateKey(ctx, SystemActor, newKey(t)); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 100, 10)
	c, _ := NewCheckpointer(CheckpointerOptions{Log: l})
	cp, err := c.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 10, 10) // after the checkpoint: not in a proved export
	// user-3 is every 7th entry of each appendN; the rotation entry is
	// left out like any other (its bytes travel in its omitted line).
	want := uint64(0)
	for i := range 100 {
		if i%7 == 3 {
			want += 2
		}
	}
	for _, format := range []string{FormatNDJSON, FormatJSON} {
		b := exportLog(t, l, ExportOptions{Actor: "user-3", Proofs: true, Format: format})
		rep := verifyExport(t, b, trustOnly(t, oldKey))
		if rep.Bad != nil {
			t.Fatal(rep.Bad)
		}
		if rep.Entries != want || rep.Entries+rep.Omitted != uint64(cp.Size) || rep.Size != uint64(cp.Size) || !bytes.Equal(rep.Root, cp.Root) {
			t.Fatalf("%s: %d entries (want %d), %d left out, size %d", format, rep.Entries, want, rep.Omitted, rep.Size)
		}
	}
	// Without proofs a filtered export covers the whole log and verifies
	// as well.
	sum, err := Export(ctx, l.Store(), &bytes.Buffer{}, ExportOptions{Actor: "user-3"})
	if err != nil || sum.Entries != want+1 || sum.Entries+sum.Omitted != 211 || !sum.Complete {
		t.Fatalf("filtered export: %+v %v", sum, err)
	}
	rep := verifyExport(t, exportLog(t, l, ExportOptions{Actor: "user-3"}), trustOnly(t, oldKey))
	if rep.Bad != nil || rep.Entries != want+1 || rep.Size != 211 {
		t.Fatalf("filtered export without proofs: %+v %v", rep, rep.Bad)
	}
	// A proof that does not fit the entry fails that entry.
	b := exportLog(t, l, ExportOptions{Actor: "user-3", Proofs: true})
	lines := strings.Split(string(b), "\n")
	i := slices.IndexFunc(lines, func(s string) bool { return strings.HasPrefix(s, entryLinePrefix) })
	var m map[string]any
	json.Unmarshal([]byte(lines[i]), &m)
	p := m["proof"].([]any)
	p[0] = strings.Repeat("ab", 32)
	nb, _ := json.Marshal(m)
	lines[i] = string(nb)
	wantFinding(t, verifyExport(t, []byte(strings.Join(lines, "\n")), trustOnly(t, oldKey)), int64(m["seq"].(float64)), "inclusion proof")
	// A partial export of an older writ (selected entries only) is
	// refused: nothing in it shows that no entry was left out.
	old := strings.Replace(string(b), `"complete":true`, `"complete":false`, 1)
	if _, err := VerifyExport(ctx, strings.NewReader(old), VerifyOptions{Trusted: trustOnly(t, oldKey)}); err == nil || !strings.Contains(err.Error(), "partial export") {
		t.Fatalf("partial export: %v", err)
	}
}

// exportLines splits an NDJSON export into its lines.
func exportLines(b []byte) []string {
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// joinExport joins edited lines, rewriting the end line's counts to match
// them, as a careful forger would.
func joinExport(t *testing.T, lines []string) []byte {
	t.Helper()
	var n, omitted int
	for _, l := range lines {
		var m struct{ Type string }
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		switch m.Type {
		case lineEntry:
			n++
		case lineOmitted:
			omitted++
		}
	}
	out := append([]string(nil), lines...)
	out[len(out)-1] = fmt.Sprintf(`{"type":"end","entries":%d,"omitted":%d}`, n, omitted)
	return []byte(strings.Join(out, "\n") + "\n")
}

// lineOf is the index of seq's line in an NDJSON export.
func lineOf(t *testing.T, lines []string, seq int) int {
	t.Helper()
	for i, l := range lines {
		if strings.Contains(l, fmt.Sprintf(`,"seq":%d,`, seq)) {
			return i
		}
	}
	t.Fatalf("no line for seq %d", seq)
	return -1
}

// A filter selects on the entries' signed bytes: changing a column does
// not move an entry in or out of a filtered export, and the export says
// which entries' columns disagree with their bytes.
func TestFilteredExportSelectsOnBytes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tl := newTamperLog(t, 60)
	a := newAttacker(t, tl.url)
	// Entry 10 is user-3's (testEntry: user-(i%7)); its column now says
	// mallory.
	a.exec(`UPDATE audit_entries SET actor_id = 'mallory' WHERE seq = 10`)
	want := uint64(0)
	for i := range 60 {
		if i%7 == 3 {
			want++
		}
	}
	var buf bytes.Buffer
	sum, err := Export(ctx, tl.st, &buf, ExportOptions{Actor: "user-3"})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Entries != want || !slices.Equal(sum.Disagree, []uint64{10}) {
		t.Fatalf("export by bytes: %d entries (want %d), disagreeing %v", sum.Entries, want, sum.Disagree)
	}
	lines := exportLines(buf.Bytes())
	if !strings.HasPrefix(lines[lineOf(t, lines, 10)], entryLinePrefix) {
		t.Fatal("entry 10 left out of the user-3 export")
	}
	rep := verifyExport(t, buf.Bytes(), tl.trusted, tl.checkpoint)
	if rep.Bad != nil || rep.Entries != want || rep.Omitted != 60-want {
		t.Fatalf("verify: %+v %v", rep, rep.Bad)
	}
	// An export for mallory holds none of user-3's entries.
	sum, err = Export(ctx, tl.st, &buf, ExportOptions{Actor: "mallory"})
	if err != nil || sum.Entries != 0 || sum.Omitted != 60 {
		t.Fatalf("mallory's export: %+v %v", sum, err)
	}
	// The label of the user-3 export changed to mallory: the first entry
	// it holds says otherwise.
	relabelled := strings.Replace(string(exportLog(t, tl.l, ExportOptions{Actor: "user-3"})), `"actor":"user-3"`, `"actor":"mallory"`, 1)
	wantFinding(t, verifyExport(t, []byte(relabelled), tl.trusted), 3, `its bytes say actor "user-3"`)
	// The database verification reports the column.
	rep, err = VerifyDatabase(ctx, tl.st, VerifyOptions{Trusted: tl.trusted})
	if err != nil {
		t.Fatal(err)
	}
	wantFinding(t, rep, 10, "column actor_id")
}

// Whatever a forger does to a filtered export's lines (and its end
// counts), dropping or hiding a selected entry is detected.
func TestFilteredExportDropDetected(t *testing.T) {
	t.Parallel()
	l, _ := newLog(t)
	trusted := trustOnly(t, l.Key())
	appendN(t, l, 40, 10)
	lines := exportLines(exportLog(t, l, ExportOptions{Actor: "user-3"}))
	if rep := verifyExport(t, joinExport(t, lines), trusted); rep.Bad != nil || rep.Entries != 6 || rep.Omitted != 34 {
		t.Fatalf("untouched: %+v %v", rep, rep.Bad)
	}
	drop := func(i int) []string { return append(append([]string(nil), lines[:i]...), lines[i+1:]...) }
	// A selected entry deleted.
	wantFinding(t, verifyExport(t, joinExport(t, drop(lineOf(t, lines, 17))), trusted), 17, "entry missing")
	// A selected entry turned into a left-out one.
	hidden := append([]string(nil), lines...)
	i := lineOf(t, lines, 24)
	var m map[string]any
	json.Unmarshal([]byte(lines[i]), &m)
	m["type"], m["entry"] = "omitted", nil
	nb, _ := json.Marshal(m)
	hidden[i] = string(nb)
	wantFinding(t, verifyExport(t, joinExport(t, hidden), trusted), 24, "the export left it out")
	// A left-out entry deleted.
	wantFinding(t, verifyExport(t, joinExport(t, drop(lineOf(t, lines, 5))), trusted), 5, "entry missing")
	// The last entries cut, end counts fixed: the header's size shows it.
	cut := append(append([]string(nil), lines[:len(lines)-3]...), lines[len(lines)-1])
	wantFinding(t, verifyExport(t, joinExport(t, cut), trusted), 38, "covers 40 entries")
	// A left-out entry shown as selected.
	shown := append([]string(nil), lines...)
	i = lineOf(t, lines, 6)
	shown[i] = strings.Replace(shown[i], omittedLinePrefix, entryLinePrefix, 1)
	wantFinding(t, verifyExport(t, joinExport(t, shown), trusted), 6, "filtered on actor=user-3")
	// The filter dropped from the header: left-out lines no longer fit.
	unfiltered := append([]string(nil), lines...)
	unfiltered[0] = strings.Replace(unfiltered[0], `"filter":{"actor":"user-3"},`, "", 1)
	wantFinding(t, verifyExport(t, joinExport(t, unfiltered), trusted), 0, "no filter")
}

// FuzzParseEntryLine: the single-pass reader of export lines never panics
// and, whenever it accepts a line, reads what encoding/json reads.
func FuzzParseEntryLine(f *testing.F) {
	f.Add([]byte(`{"type":"entry","seq":3,"bytes":"e30=","prev_hash":"00ff","hash":"ab","key_id":"k","signature":"c2ln","entry":{},"proof":["0a","0b"]}`))
	f.Add([]byte(`{"type":"entry","seq":0,"bytes":"","prev_hash":"","hash":"","key_id":"","signature":"","entry":null}`))
	f.Add([]byte(`{"type":"omitted","seq":2,"bytes":"e30=","prev_hash":"00","hash":"00","key_id":"k","signature":"","entry":null}`))
	f.Add([]byte(`{"type":"entry","seq":1,"bytes":"e30=","prev_hash":"00","hash":"00","key_id":"\u00e9","signature":"","entry":{"a":[1,"x"]}}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		rec, ok := parseEntryLine(line)
		if !ok {
			return
		}
		var e exportEntry
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("accepted a line encoding/json rejects: %v\n%s", err, line)
		}
		ref := e.record()
		if ref.Seq != rec.Seq || !bytes.Equal(ref.Entry, rec.Entry) || !bytes.Equal(ref.PrevHash, rec.PrevHash) ||
			!bytes.Equal(ref.Hash, rec.Hash) || ref.KeyID != rec.KeyID || !bytes.Equal(ref.Signature, rec.Signature) ||
			!bytes.Equal(ref.Readable, rec.Readable) || len(ref.Proof) != len(rec.Proof) || ref.Omitted != rec.Omitted {
			t.Fatalf("readers disagree on\n%s\n%+v\n%+v", line, rec, ref)
		}
		for i := range ref.Proof {
			if !bytes.Equal(ref.Proof[i], rec.Proof[i]) {
				t.Fatalf("proof %d differs", i)
			}
		}
	})
}
