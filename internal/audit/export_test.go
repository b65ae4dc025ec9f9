package audit

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
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

func TestPartialExportWithProofs(t *testing.T) {
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
	b := exportLog(t, l, ExportOptions{Actor: "user-3", Proofs: true})
	rep := verifyExport(t, b, trustOnly(t, oldKey))
	if rep.Bad != nil {
		t.Fatal(rep.Bad)
	}
	// user-3 is every 7th entry of each appendN; the rotation entry
	// comes along.
	want := uint64(0)
	for i := range 100 {
		if i%7 == 3 {
			want += 2
		}
	}
	if rep.Entries != want+1 || rep.Size != cp.Size || !bytes.Equal(rep.Root, cp.Root) {
		t.Fatalf("partial export: %d entries (want %d), size %d", rep.Entries, want+1, rep.Size)
	}
	// Without proofs a partial export cannot be verified.
	if _, err := VerifyExport(ctx, bytes.NewReader(exportLog(t, l, ExportOptions{Actor: "user-3"})), VerifyOptions{Trusted: trustOnly(t, oldKey)}); err == nil || !strings.Contains(err.Error(), "--proofs") {
		t.Fatalf("partial export without proofs: %v", err)
	}
	// A proof that does not fit the entry fails that entry.
	lines := strings.Split(string(b), "\n")
	var m map[string]any
	json.Unmarshal([]byte(lines[2]), &m)
	p := m["proof"].([]any)
	p[0] = strings.Repeat("ab", 32)
	nb, _ := json.Marshal(m)
	lines[2] = string(nb)
	wantFinding(t, verifyExport(t, []byte(strings.Join(lines, "\n")), trustOnly(t, oldKey)), int64(m["seq"].(float64)), "inclusion proof")
}

// FuzzParseEntryLine: the single-pass reader of export lines never panics
// and, whenever it accepts a line, reads what encoding/json reads.
func FuzzParseEntryLine(f *testing.F) {
	f.Add([]byte(`{"type":"entry","seq":3,"bytes":"e30=","prev_hash":"00ff","hash":"ab","key_id":"k","signature":"c2ln","entry":{},"proof":["0a","0b"]}`))
	f.Add([]byte(`{"type":"entry","seq":0,"bytes":"","prev_hash":"","hash":"","key_id":"","signature":"","entry":null}`))
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
			!bytes.Equal(ref.Readable, rec.Readable) || len(ref.Proof) != len(rec.Proof) {
			t.Fatalf("readers disagree on\n%s\n%+v\n%+v", line, rec, ref)
		}
		for i := range ref.Proof {
			if !bytes.Equal(ref.Proof[i], rec.Proof[i]) {
				t.Fatalf("proof %d differs", i)
			}
		}
	})
}
