package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/writ-sec/writ/internal/store"
)

// ExportFormat is the format field of an export's header.
const ExportFormat = "writ-audit-export/v1"

// Export output formats.
const (
	FormatNDJSON = "ndjson"
	FormatJSON   = "json"
)

// ExportOptions selects what Export writes.
type ExportOptions struct {
	// Since and Until bound entry times (Since <= time < Until); zero:
	// unbounded.
	Since, Until time.Time
	// Actor and Event select one actor id or event type; empty: any.
	Actor, Event string
	// Format is FormatNDJSON (default) or FormatJSON.
	Format string
	// Proofs adds to each selected entry its inclusion proof in the
	// latest checkpoint, and limits the export to the entries that
	// checkpoint covers.
	Proofs bool
}

// entryFilter selects entries by what their signed bytes say, never by
// the columns stored beside them. Export and VerifyExport share it, so an
// export is checked against the very rule that made it.
type entryFilter struct {
	since, until time.Time
	actor, event string
}

// selector is the filter of opts; nil when opts selects every entry.
func (o *ExportOptions) selector() *entryFilter {
	if !o.filtered() {
		return nil
	}
	return &entryFilter{since: o.Since, until: o.Until, actor: o.Actor, event: o.Event}
}

func (f *entryFilter) match(at time.Time, actor, event string) bool {
	return (f.since.IsZero() || !at.Before(f.since)) && (f.until.IsZero() || at.Before(f.until)) &&
		(f.actor == "" || actor == f.actor) && (f.event == "" || event == f.event)
}

func (f *entryFilter) String() string {
	var parts []string
	if !f.since.IsZero() {
		parts = append(parts, "since="+f.since.UTC().Format(time.RFC3339Nano))
	}
	if !f.until.IsZero() {
		parts = append(parts, "until="+f.until.UTC().Format(time.RFC3339Nano))
	}
	if f.actor != "" {
		parts = append(parts, "actor="+f.actor)
	}
	if f.event != "" {
		parts = append(parts, "event="+f.event)
	}
	return strings.Join(parts, " ")
}

// parse reads a filter from an export's header.
func (x *exportFilter) parse() (*entryFilter, error) {
	f := &entryFilter{actor: x.Actor, event: x.Event}
	var err error
	if x.Since != "" {
		if f.since, err = time.Parse(time.RFC3339Nano, x.Since); err != nil {
			return nil, fmt.Errorf("filter since: %w", err)
		}
	}
	if x.Until != "" {
		if f.until, err = time.Parse(time.RFC3339Nano, x.Until); err != nil {
			return nil, fmt.Errorf("filter until: %w", err)
		}
	}
	return f, nil
}

func (o *ExportOptions) setDefaults() {
	if o.Format == "" {
		o.Format = FormatNDJSON
	}
}

func (o *ExportOptions) validate() error {
	if o.Format != FormatNDJSON && o.Format != FormatJSON {
		return fmt.Errorf("audit: export format %q (ndjson or json)", o.Format)
	}
	if !o.Since.IsZero() && !o.Until.IsZero() && !o.Since.Before(o.Until) {
		return fmt.Errorf("audit: export: since %s is not before until %s", o.Since.Format(time.RFC3339), o.Until.Format(time.RFC3339))
	}
	return nil
}

func (o *ExportOptions) filtered() bool {
	return !o.Since.IsZero() || !o.Until.IsZero() || o.Actor != "" || o.Event != ""
}

// ErrNoCheckpoint is returned when proofs are asked for and the log has no
// checkpoint to prove them in.
var ErrNoCheckpoint = errors.New("audit: the log has no checkpoint yet (writ audit checkpoint makes one)")

type hexBytes []byte

func (h hexBytes) MarshalText() ([]byte, error) {
	out := make([]byte, hex.EncodedLen(len(h)))
	hex.Encode(out, h)
	return out, nil
}

func (h *hexBytes) UnmarshalText(b []byte) error {
	out := make([]byte, hex.DecodedLen(len(b)))
	if _, err := hex.Decode(out, b); err != nil {
		return err
	}
	*h = out
	return nil
}

type exportFilter struct {
	Since string `json:"since,omitempty"`
	Until string `json:"until,omitempty"`
	Actor string `json:"actor,omitempty"`
	Event string `json:"event,omitempty"`
}

type exportKey struct {
	ID        string `json:"id"`
	Algorithm string `json:"algorithm"`
	PublicKey string `json:"public_key"`
}

// exportHeader opens an export. Size is the log size the export covers;
// Complete says every entry below it is in the export: as an "entry" line,
// or, in a filtered export, as an "omitted" line (the entry's bytes,
// hashes and signature without the readable copy) when its bytes do not
// match Filter. Proved says each selected entry carries its inclusion
// proof in Checkpoint (whose size is Size).
type exportHeader struct {
	Type       string        `json:"type,omitempty"`
	Format     string        `json:"format"`
	Origin     string        `json:"origin"`
	Size       uint64        `json:"size"`
	Complete   bool          `json:"complete"`
	Proved     bool          `json:"proved"`
	Filter     *exportFilter `json:"filter,omitempty"`
	Keys       []exportKey   `json:"keys"`
	Checkpoint string        `json:"checkpoint,omitempty"`
	ExportedAt string        `json:"exported_at"`
}

type exportEntry struct {
	Type      string          `json:"type,omitempty"`
	Seq       uint64          `json:"seq"`
	Bytes     []byte          `json:"bytes"`
	PrevHash  hexBytes        `json:"prev_hash"`
	Hash      hexBytes        `json:"hash"`
	KeyID     string          `json:"key_id"`
	Signature []byte          `json:"signature"`
	Entry     json.RawMessage `json:"entry"`
	Proof     []hexBytes      `json:"proof,omitempty"`
}

// Line types of an export's entries: selected, or left out by the filter.
const (
	lineEntry   = "entry"
	lineOmitted = "omitted"
)

// exportEnd closes an export, so a cut-off file is told from a short log.
// Entries counts the selected entries, Omitted the left-out ones.
type exportEnd struct {
	Type    string `json:"type,omitempty"`
	Entries uint64 `json:"entries"`
	Omitted uint64 `json:"omitted,omitempty"`
}

// ExportSummary says what Export wrote.
type ExportSummary struct {
	// Entries are the entries selected; Omitted those of the covered
	// range left out by the filter (carried without a readable copy).
	Entries, Omitted uint64
	Size             uint64
	Complete         bool
	// Disagree are the seqs (the first 100) whose stored actor_id, event
	// or at column disagrees with the entry's signed bytes: the export
	// selected them by their bytes; writ audit verify reports them.
	Disagree []uint64
}

const exportPage = 4096

// Export streams the log (or the entries opts selects) from one snapshot
// of st, with what offline verification needs: the log's recorded public
// keys, its latest checkpoint and, on request, inclusion proofs.
//
// A filter selects on each entry's signed bytes (its time, actor id and
// event), not on the columns stored beside them. A filtered export still
// carries every entry of the covered range: those the filter leaves out
// as "omitted" lines with their bytes, hashes and signature but no
// readable copy. The verifier so replays the whole chain and tree and
// checks, entry by entry, that exactly the entries whose bytes match the
// filter were selected: an entry dropped, or moved from selected to
// omitted, or one that does not match, fails verification.
func Export(ctx context.Context, st *store.Store, w io.Writer, opts ExportOptions) (ExportSummary, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return ExportSummary{}, err
	}
	var sum ExportSummary
	err := st.AuditSnapshot(ctx, func(st *store.Store) error {
		var err error
		sum, err = export(ctx, st, w, opts)
		return err
	})
	return sum, err
}

func export(ctx context.Context, st *store.Store, w io.Writer, opts ExportOptions) (ExportSummary, error) {
	origin, err := st.AuditOrigin(ctx)
	if err != nil {
		return ExportSummary{}, err
	}
	head, err := st.AuditHead(ctx)
	if err != nil {
		return ExportSummary{}, err
	}
	keyRows, err := st.AuditKeys(ctx)
	if err != nil {
		return ExportSummary{}, err
	}
	hdr := exportHeader{
		Format:     ExportFormat,
		Origin:     origin,
		Size:       uint64(head.Size),
		Complete:   true,
		Proved:     opts.Proofs,
		Keys:       []exportKey{},
		ExportedAt: time.Now().UTC().Format(TimeLayout),
	}
	for _, k := range keyRows {
		hdr.Keys = append(hdr.Keys, exportKey{ID: k.ID, Algorithm: k.Algorithm, PublicKey: k.PublicKey})
	}
	cp, err := st.LatestAuditCheckpoint(ctx)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if opts.Proofs {
			return ExportSummary{}, ErrNoCheckpoint
		}
	case err != nil:
		return ExportSummary{}, err
	default:
		// With the witnesses' cosignatures of its tree, so an offline
		// verifier holding their keys checks them too.
		if hdr.Checkpoint, err = cosignedNote(ctx, st, cp); err != nil {
			return ExportSummary{}, err
		}
		if opts.Proofs {
			hdr.Size = uint64(cp.Size)
		}
	}
	if opts.filtered() {
		f := &exportFilter{Actor: opts.Actor, Event: opts.Event}
		if !opts.Since.IsZero() {
			f.Since = opts.Since.UTC().Format(time.RFC3339Nano)
		}
		if !opts.Until.IsZero() {
			f.Until = opts.Until.UTC().Format(time.RFC3339Nano)
		}
		hdr.Filter = f
	}

	ew := newExportWriter(w, opts.Format)
	if err := ew.header(hdr); err != nil {
		return ExportSummary{}, err
	}
	// Every entry of the covered range is read: the filter is applied to
	// the bytes below, not to the columns in the query.
	filter := store.AuditFilter{Below: int64(hdr.Size)}
	if hdr.Size == 0 {
		filter.Below = -1 // nothing to export
	}
	sel := opts.selector()
	nodes := dbNodes(st)
	var sum ExportSummary
	after := int64(-1)
	for {
		if err := ctx.Err(); err != nil {
			return ExportSummary{}, err
		}
		var rows []store.AuditEntry
		if filter.Below < 0 {
			rows = nil
		} else if rows, err = st.AuditEntriesFiltered(ctx, filter, after, exportPage); err != nil {
			return ExportSummary{}, err
		}
		if len(rows) == 0 {
			break
		}
		for _, r := range rows {
			e := exportEntry{
				Seq: uint64(r.Seq), Bytes: r.Entry, PrevHash: r.PrevHash, Hash: r.Hash,
				KeyID: r.KeyID, Signature: r.Signature, Entry: json.RawMessage(r.Entry),
			}
			if !json.Valid(r.Entry) {
				// Tampered bytes still export (verification reports them).
				e.Entry = nil
			}
			if sel != nil {
				// Bytes that do not decode are selected: verification
				// reports them.
				if d, err := Decode(r.Entry); err == nil {
					if !sel.match(d.Time, d.Actor.ID, string(d.Event)) {
						e.Type, e.Entry = lineOmitted, nil
					}
					if !d.Time.Equal(r.At) || d.Actor.ID != r.ActorID || string(d.Event) != r.Event {
						if len(sum.Disagree) < 100 {
							sum.Disagree = append(sum.Disagree, uint64(r.Seq))
						}
					}
				}
			}
			if e.Type == lineOmitted {
				sum.Omitted++
			} else {
				sum.Entries++
			}
			if opts.Proofs && e.Type != lineOmitted {
				p, err := inclusionProof(ctx, nodes, uint64(r.Seq), hdr.Size)
				if err != nil {
					return ExportSummary{}, fmt.Errorf("audit: export: proof of %d: %w", r.Seq, err)
				}
				e.Proof = make([]hexBytes, len(p))
				for i := range p {
					e.Proof[i] = p[i]
				}
			}
			if err := ew.entry(e); err != nil {
				return ExportSummary{}, err
			}
		}
		after = rows[len(rows)-1].Seq
	}
	if err := ew.end(exportEnd{Entries: sum.Entries, Omitted: sum.Omitted}); err != nil {
		return ExportSummary{}, err
	}
	sum.Size, sum.Complete = hdr.Size, hdr.Complete
	return sum, nil
}

// exportWriter writes NDJSON (one object a line: header, entries, end) or
// one JSON object {"header", "entries", "end"}, streaming either way.
type exportWriter struct {
	w      *bufio.Writer
	format string
	enc    *json.Encoder
	n      int
}

func newExportWriter(w io.Writer, format string) *exportWriter {
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	return &exportWriter{w: bw, format: format, enc: enc}
}

func (ew *exportWriter) header(h exportHeader) error {
	if ew.format == FormatNDJSON {
		h.Type = "header"
		return ew.write(h)
	}
	if _, err := ew.w.WriteString(`{"header":`); err != nil {
		return err
	}
	if err := ew.write(h); err != nil {
		return err
	}
	_, err := ew.w.WriteString(`,"entries":[`)
	return err
}

// entry writes an entry; e.Type is lineOmitted for a left-out one, else
// empty.
func (ew *exportWriter) entry(e exportEntry) error {
	if ew.format == FormatNDJSON {
		if e.Type == "" {
			e.Type = lineEntry
		}
		return ew.write(e)
	}
	if ew.n > 0 {
		if err := ew.w.WriteByte(','); err != nil {
			return err
		}
	}
	ew.n++
	return ew.write(e)
}

func (ew *exportWriter) end(e exportEnd) error {
	if ew.format == FormatNDJSON {
		e.Type = "end"
		if err := ew.write(e); err != nil {
			return err
		}
	} else {
		if _, err := ew.w.WriteString(`],"end":`); err != nil {
			return err
		}
		if err := ew.write(e); err != nil {
			return err
		}
		if _, err := ew.w.WriteString("}\n"); err != nil {
			return err
		}
	}
	if err := ew.w.Flush(); err != nil {
		return fmt.Errorf("audit: write export: %w", err)
	}
	return nil
}

func (ew *exportWriter) write(v any) error {
	if err := ew.enc.Encode(v); err != nil {
		return fmt.Errorf("audit: write export: %w", err)
	}
	return nil
}

// MaxExportLine bounds one NDJSON line or JSON value of an export.
const MaxExportLine = 4 * MaxEntrySize

// exportReader reads an export in either format, streaming.
type exportReader struct {
	dec     *json.Decoder
	br      *bufio.Reader // under dec
	lines   *bufio.Reader // NDJSON after the header
	ndjson  bool
	header  exportHeader
	end     *exportEnd
	entries uint64 // entry and omitted lines read
	omitted uint64
	inArray bool
	done    bool
}

// readExport reads the header of an export.
func readExport(r io.Reader) (*exportReader, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	dec := json.NewDecoder(br)
	er := &exportReader{dec: dec, br: br}
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("export: not a JSON object")
	}
	tok, err = dec.Token()
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	switch tok {
	case "type":
		// NDJSON: the first line is the header object, read here field by
		// field.
		er.ndjson = true
		var typ string
		if err := dec.Decode(&typ); err != nil || typ != "header" {
			return nil, errors.New("export: the first line is not the header")
		}
		if err := decodeRestOfObject(dec, &er.header); err != nil {
			return nil, fmt.Errorf("export: header: %w", err)
		}
		// The entry lines are read as lines and decoded by verification's
		// workers, in parallel.
		er.lines = bufio.NewReaderSize(io.MultiReader(dec.Buffered(), br), 64<<10)
	case "header":
		if err := dec.Decode(&er.header); err != nil {
			return nil, fmt.Errorf("export: header: %w", err)
		}
		tok, err := dec.Token()
		if err != nil || tok != "entries" {
			return nil, errors.New(`export: "entries" must follow "header"`)
		}
		if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
			return nil, errors.New(`export: "entries" is not an array`)
		}
		er.inArray = true
	default:
		return nil, fmt.Errorf("export: unexpected first field %v", tok)
	}
	if er.header.Format != ExportFormat {
		return nil, fmt.Errorf("export: format %q, want %q", er.header.Format, ExportFormat)
	}
	return er, nil
}

// decodeRestOfObject reads the remaining fields of an object whose opening
// brace and first field were consumed, into v (a struct pointer).
func decodeRestOfObject(dec *json.Decoder, v any) error {
	var buf bytes.Buffer
	buf.WriteByte('{')
	first := true
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, ok := tok.(string)
		if !ok {
			return errors.New("malformed object")
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return err
		}
		if !first {
			buf.WriteByte(',')
		}
		first = false
		k, _ := json.Marshal(key)
		buf.Write(k)
		buf.WriteByte(':')
		buf.Write(raw)
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return err
	}
	buf.WriteByte('}')
	dec2 := json.NewDecoder(&buf)
	dec2.DisallowUnknownFields()
	return dec2.Decode(v)
}

// Records implements Source.
func (er *exportReader) Records(ctx context.Context, emit func([]Record) error) error {
	for !er.done {
		out := make([]Record, 0, verifyChunk)
		for len(out) < cap(out) {
			if err := ctx.Err(); err != nil {
				return err
			}
			rec, ok, err := er.read()
			if err != nil {
				return err
			}
			if !ok {
				er.done = true
				break
			}
			out = append(out, rec)
		}
		if len(out) > 0 {
			if err := emit(out); err != nil {
				return err
			}
		}
	}
	return nil
}

// entryLinePrefix and omittedLinePrefix start every entry line Export
// writes; such lines are handed to verification's workers undecoded.
const (
	entryLinePrefix   = `{"type":"entry",`
	omittedLinePrefix = `{"type":"omitted",`
)

// read returns the next entry; ok is false after the end object.
func (er *exportReader) read() (Record, bool, error) {
	if er.ndjson {
		line, err := er.line()
		if err != nil {
			return Record{}, false, err
		}
		er.entries++
		if bytes.HasPrefix(line, []byte(entryLinePrefix)) {
			return Record{line: line}, true, nil
		}
		if bytes.HasPrefix(line, []byte(omittedLinePrefix)) {
			er.omitted++
			return Record{line: line}, true, nil
		}
		var e struct {
			exportEntry
			Entries *uint64 `json:"entries"`
			Omitted uint64  `json:"omitted"`
		}
		if err := json.Unmarshal(line, &e); err != nil {
			return Record{}, false, fmt.Errorf("export: line %d: %w", er.entries+1, err)
		}
		switch e.Type {
		case lineEntry:
			return e.record(), true, nil
		case lineOmitted:
			er.omitted++
			return e.record(), true, nil
		case "end":
			er.entries--
			return Record{}, false, er.finish(e.Entries, e.Omitted)
		}
		return Record{}, false, fmt.Errorf("export: line %d: unexpected line type %q", er.entries+1, e.Type)
	}
	if !er.dec.More() {
		if _, err := er.dec.Token(); err != nil { // ]
			return Record{}, false, fmt.Errorf("export is cut off: %w", err)
		}
		tok, err := er.dec.Token()
		if err != nil || tok != "end" {
			return Record{}, false, errors.New(`export is cut off: no "end"`)
		}
		var end exportEnd
		if err := er.dec.Decode(&end); err != nil {
			return Record{}, false, fmt.Errorf("export: end: %w", err)
		}
		return Record{}, false, er.finish(&end.Entries, end.Omitted)
	}
	var e exportEntry
	if err := er.dec.Decode(&e); err != nil {
		return Record{}, false, fmt.Errorf("export is cut off or malformed after %d entries: %w", er.entries, err)
	}
	er.entries++
	if e.Type == lineOmitted {
		er.omitted++
	}
	return e.record(), true, nil
}

// line reads the next non-empty NDJSON line, at most MaxExportLine bytes.
func (er *exportReader) line() ([]byte, error) {
	for {
		var line []byte
		for {
			chunk, err := er.lines.ReadSlice('\n')
			line = append(line, chunk...)
			if len(line) > MaxExportLine {
				return nil, fmt.Errorf("export: line %d is longer than %d bytes", er.entries+2, MaxExportLine)
			}
			if err == nil {
				break
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if errors.Is(err, io.EOF) {
				if len(bytes.TrimSpace(line)) > 0 {
					break
				}
				return nil, errors.New("export is cut off: no end line")
			}
			return nil, fmt.Errorf("export: %w", err)
		}
		if line = bytes.TrimSpace(line); len(line) > 0 {
			return line, nil
		}
	}
}

// record is an entry of an export as verification reads it.
func (e *exportEntry) record() Record {
	rec := Record{
		Seq: e.Seq, Entry: e.Bytes, PrevHash: e.PrevHash, Hash: e.Hash, KeyID: e.KeyID, Signature: e.Signature,
		Readable: e.Entry, Omitted: e.Type == lineOmitted,
	}
	if rec.Readable == nil || string(rec.Readable) == "null" {
		// Left out when the bytes were not JSON at export.
		rec.Readable = []byte{}
	}
	for _, p := range e.Proof {
		rec.Proof = append(rec.Proof, p)
	}
	return rec
}

// parseLine fills a record from its export line (in a worker): by a
// single pass when the line is laid out as Export writes it, else with
// encoding/json.
func (r *Record) parseLine() error {
	if rec, ok := parseEntryLine(r.line); ok {
		*r = rec
		return nil
	}
	var e exportEntry
	dec := json.NewDecoder(bytes.NewReader(r.line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return err
	}
	if e.Type != lineEntry && e.Type != lineOmitted {
		return fmt.Errorf("line type %q", e.Type)
	}
	*r = e.record()
	return nil
}

func (er *exportReader) finish(n *uint64, omitted uint64) error {
	if n == nil {
		return errors.New("export's end does not count its entries")
	}
	if *n != er.entries-er.omitted || omitted != er.omitted {
		return fmt.Errorf("export's end says %d entries and %d left out but it holds %d and %d: it was cut or edited",
			*n, omitted, er.entries-er.omitted, er.omitted)
	}
	er.end = &exportEnd{Entries: *n, Omitted: omitted}
	return nil
}

// VerifyExport verifies an export. It is replayed like the database: every
// entry of the covered range, selected or left out by the filter, in
// order, through the chain, the signatures and the tree, against the
// export's checkpoint and opts.Checkpoints. A filtered export must have
// selected exactly the entries whose bytes match its filter. Inclusion
// proofs, when the export carries them, are checked against its
// checkpoint. The keys an export carries are candidates, never trusted:
// opts.Trusted decides.
func VerifyExport(ctx context.Context, r io.Reader, opts VerifyOptions) (*Report, error) {
	er, err := readExport(r)
	if err != nil {
		return nil, fmt.Errorf("audit: verify export: %w", err)
	}
	h := er.header
	if opts.Origin == "" {
		opts.Origin = h.Origin
	}
	if opts.Candidates == nil {
		opts.Candidates = NewKeySet()
	}
	for _, k := range h.Keys {
		if pk, err := ParsePublicKey([]byte(k.PublicKey)); err == nil && pk.ID == k.ID {
			opts.Candidates.Add(pk)
		}
	}
	if !h.Complete {
		// Made by an older writ: the selected entries with their proofs,
		// nothing to show that none was left out.
		return nil, errors.New("audit: verify export: a partial export does not carry the entries it left out, so it cannot show it is complete; export it again with this writ")
	}
	if h.Proved && h.Checkpoint == "" {
		return nil, errors.New("audit: verify export: the export says it carries inclusion proofs but has no checkpoint")
	}
	if h.Checkpoint != "" {
		opts.Checkpoints = append(append([][]byte(nil), opts.Checkpoints...), []byte(h.Checkpoint))
	}
	if h.Proved {
		opts.Proved = []byte(h.Checkpoint)
	}
	if h.Filter != nil {
		if opts.filter, err = h.Filter.parse(); err != nil {
			return nil, fmt.Errorf("audit: verify export: %w", err)
		}
	}
	rep, err := Verify(ctx, er, opts)
	if err != nil {
		return nil, err
	}
	if h.Checkpoint != "" {
		rep.Checkpoint = []byte(h.Checkpoint)
	}
	if n := rep.Entries + rep.Omitted; rep.Bad == nil && n != h.Size {
		rep.Bad = &Finding{Seq: int64(n), Reason: fmt.Sprintf("the export's header says it covers %d entries but it holds %d", h.Size, n)}
	}
	return rep, nil
}

// parseEntryLine reads an entry line laid out exactly as Export writes
// it; ok is false for anything else (which encoding/json then reads).
func parseEntryLine(line []byte) (rec Record, ok bool) {
	p := &parser{b: line}
	b64 := func(key string) ([]byte, bool) {
		if !p.lit(key) {
			return nil, false
		}
		s, err := p.str()
		if err != nil {
			return nil, false
		}
		out, err := base64.StdEncoding.DecodeString(s)
		return out, err == nil
	}
	hx := func() ([]byte, bool) {
		s, err := p.str()
		if err != nil {
			return nil, false
		}
		out, err := hex.DecodeString(s)
		return out, err == nil
	}
	switch {
	case p.lit(entryLinePrefix + `"seq":`):
	case p.lit(omittedLinePrefix + `"seq":`):
		rec.Omitted = true
	default:
		return rec, false
	}
	var err error
	if rec.Seq, err = p.uint(); err != nil {
		return rec, false
	}
	if rec.Entry, ok = b64(`,"bytes":`); !ok {
		return rec, false
	}
	if !p.lit(`,"prev_hash":`) {
		return rec, false
	}
	if rec.PrevHash, ok = hx(); !ok || !p.lit(`,"hash":`) {
		return rec, false
	}
	if rec.Hash, ok = hx(); !ok || !p.lit(`,"key_id":`) {
		return rec, false
	}
	if rec.KeyID, err = p.str(); err != nil {
		return rec, false
	}
	if rec.Signature, ok = b64(`,"signature":`); !ok || !p.lit(`,"entry":`) {
		return rec, false
	}
	if p.lit("null") {
		rec.Readable = []byte{}
	} else {
		start := p.i
		if p.value() != nil {
			return rec, false
		}
		rec.Readable = line[start:p.i:p.i]
	}
	if p.lit(`,"proof":[`) {
		for first := true; !p.lit("]"); first = false {
			if !first && !p.lit(",") {
				return rec, false
			}
			h, ok := hx()
			if !ok {
				return rec, false
			}
			rec.Proof = append(rec.Proof, h)
		}
	}
	if !p.lit("}") || p.i != len(line) {
		return rec, false
	}
	return rec, true
}
