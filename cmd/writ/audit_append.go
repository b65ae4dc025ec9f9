package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/writ-sec/writ/internal/audit"
)

type auditAppendParams struct {
	event   string
	subject string
	actor   string
	role    string
	payload string
	failure bool
	key     string
	idemKey string
	timeout time.Duration
}

func newAuditAppendCmd(env *cliEnv, g *globals) *cobra.Command {
	p := auditAppendParams{}
	cmd := &cobra.Command{
		Use:   "append --event TYPE --subject S [--actor ID] [--payload JSON|@FILE] [--idempotency-key K]",
		Short: "Record an external event (a manual action, an incident note)",
		Long: `Append records an event that happened outside writ: a manual containment
step, a note from an incident, a decision taken by phone. It is signed and
chained like every other entry.

--event is dotted lower-case words (incident.note, manual.block); the
"audit." namespace is the log's own. --subject is KIND:NAME[@DIGEST]
(playbook:block-c2-beacon@<sha256>) or just a name (kind "external").
--payload is JSON, @FILE, or @- for standard input. --actor defaults to
$USER; --role to admin.

--idempotency-key makes a retry safe: an append that timed out or lost
its answer may still have committed, and running the same command again
with the same key prints the first append's sequence number and hash
instead of recording a duplicate. The same key with a different entry
(actor, event, subject, --failure or payload) is refused. Keys (1-256
printable ASCII characters, no spaces) are stored with the log, outside
the signed entry; use a new one for each new entry, e.g. a UUID.

Prints the entry's sequence number and hash. Exit status: 0 recorded
(or already recorded with the key), 1 failure, 2 usage error.`,
		Example: `  writ audit append --event incident.note --subject INC-4211 \
      --payload '{"note":"blocked 203.0.113.7 at the edge firewall by hand"}' \
      --idempotency-key inc-4211-note-1
  writ audit append --event manual.block --subject playbook:block-c2-beacon --payload @note.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAuditAppend(cmd, env, g, p)
		},
	}
	f := cmd.Flags()
	f.StringVar(&p.event, "event", "", "event type, e.g. incident.note (required)")
	f.StringVar(&p.subject, "subject", "", "what the event concerns: KIND:NAME[@DIGEST] or NAME (required)")
	f.StringVar(&p.actor, "actor", "", "who acted (default $USER)")
	f.StringVar(&p.role, "role", "admin", "the actor's role")
	f.StringVar(&p.payload, "payload", "", "JSON payload, @FILE, or @- for standard input")
	f.BoolVar(&p.failure, "failure", false, "record the event as unsuccessful")
	f.StringVar(&p.key, "key", "", "audit signing key (default DATA_DIR/audit/audit.key; password from WRIT_KEY_PASSWORD)")
	f.StringVar(&p.idemKey, "idempotency-key", "", "a retry with this key returns the first append's result instead of a duplicate")
	f.DurationVar(&p.timeout, "timeout", time.Minute, "give up after this long")
	return cmd
}

const maxPayload = 512 << 10

func runAuditAppend(cmd *cobra.Command, env *cliEnv, g *globals, p auditAppendParams) error {
	if p.event == "" || p.subject == "" {
		return usageError("--event and --subject are required")
	}
	if strings.HasPrefix(p.event, "audit.") {
		return usageError("--event %q: the audit. namespace is written by the log itself", p.event)
	}
	actor := p.actor
	if actor == "" {
		actor = localUser(env)
	}
	if actor == "" {
		return usageError("--actor is required (no $USER, $LOGNAME or account name for uid %d)", os.Getuid())
	}
	subject, err := parseSubject(p.subject)
	if err != nil {
		return usageError("%v", err)
	}
	payload, err := readPayload(env, p.payload)
	if err != nil {
		return usageError("--payload: %v", err)
	}
	e := audit.Entry{
		Actor:   audit.Actor{ID: actor, Role: p.role},
		Event:   audit.Event(p.event),
		Subject: subject,
		Success: !p.failure,
		Payload: payload,
	}
	// Check the entry before touching keys or the database.
	if err := e.Validate(); err != nil {
		return usageError("%v", err)
	}
	if cmd.Flags().Changed("idempotency-key") {
		if err := audit.CheckIdempotencyKey(p.idemKey); err != nil {
			return usageError("--idempotency-key: %v", err)
		}
	}
	key, err := loadAuditKey(env, g, p.key, "WRIT_KEY_PASSWORD")
	if err != nil {
		return err
	}
	ctx, cancel := withTimeout(cmd.Context(), p.timeout)
	defer cancel()
	db, err := openAuditStore(ctx, env, g)
	if err != nil {
		return err
	}
	defer db.Close()
	l, err := audit.NewLog(audit.LogOptions{Store: db.store, Key: key, Logger: g.logger(env.stderr)})
	if err != nil {
		return exitWith(exitFailure, err)
	}
	if p.idemKey == "" {
		recs, err := l.Append(ctx, db.store, e)
		if err != nil {
			return exitWith(exitFailure, err)
		}
		fmt.Fprintf(env.stdout, "appended seq %d, hash %x\n", recs[0].Seq, recs[0].Hash)
		return nil
	}
	rec, replayed, err := l.AppendIdempotent(ctx, db.store, p.idemKey, e)
	if errors.Is(err, audit.ErrIdempotencyConflict) {
		return exitWith(exitFailure, fmt.Errorf("--idempotency-key %q: %w", p.idemKey, err))
	}
	if err != nil {
		return exitWith(exitFailure, err)
	}
	if replayed {
		fmt.Fprintf(env.stderr, "writ: already appended with idempotency key %q; nothing new recorded\n", p.idemKey)
	}
	fmt.Fprintf(env.stdout, "appended seq %d, hash %x\n", rec.Seq, rec.Hash)
	return nil
}

// parseSubject reads KIND:NAME[@DIGEST], or a bare NAME of kind external.
func parseSubject(s string) (audit.Subject, error) {
	kind, rest, ok := strings.Cut(s, ":")
	if !ok {
		return audit.Subject{Kind: "external", Name: s}, nil
	}
	name, digest, _ := strings.Cut(rest, "@")
	if kind == "" || name == "" {
		return audit.Subject{}, fmt.Errorf("--subject %q: want KIND:NAME[@DIGEST] or NAME", s)
	}
	return audit.Subject{Kind: kind, Name: name, Digest: digest}, nil
}

// readPayload reads --payload: inline JSON, @FILE or @- (size-limited).
func readPayload(env *cliEnv, v string) (json.RawMessage, error) {
	if v == "" {
		return nil, nil
	}
	var b []byte
	if name, ok := strings.CutPrefix(v, "@"); ok {
		var r io.Reader
		if name == "-" {
			r = env.stdin
		} else {
			f, err := os.Open(name)
			if err != nil {
				return nil, err
			}
			defer f.Close()
			r = f
		}
		var err error
		if b, err = io.ReadAll(io.LimitReader(r, maxPayload+1)); err != nil {
			return nil, err
		}
		if len(b) > maxPayload {
			return nil, fmt.Errorf("%s is larger than %d bytes", name, maxPayload)
		}
	} else {
		b = []byte(v)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, fmt.Errorf("empty")
	}
	c, err := audit.CanonicalJSON(b)
	if err != nil {
		return nil, err
	}
	return c, nil
}
