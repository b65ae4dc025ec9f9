package reconcile

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/judgement"
	"github.com/writ-sec/writ/internal/metrics"
	"github.com/writ-sec/writ/internal/playbook"
	"github.com/writ-sec/writ/internal/store"
)

// Drift detection: live state compared with the desired state of the
// playbooks writ applied, per environment, action and backend, every
// DriftOptions.Interval and on demand (CheckDrift). Typed findings
// (action.DriftMissing, DriftUnexpected, DriftChanged) are reported in the
// API (the latest report), the metric writ_drift_targets and, when they
// appear, change or go away, the audit log (drift.detected,
// drift.resolved), which notifies.
//
// In an environment whose mode is heal, the missing targets of a playbook
// in force are an incident, and the incident's heal is an operation of its
// own: (name, digest, heal, incident), trigger drift, input.change.type
// drift, judged by judgement.Judge like any operation (a fresh decision,
// a plan, approvals when the policies ask, the check at the moment of
// use), with statements that name the heal and its incident. The
// statements of the original apply never authorise it, and each incident
// is healed at most once. Unexpected and changed targets are reported,
// never acted on.

// Drift modes of an environment.
const (
	DriftModeReport = "report"
	DriftModeHeal   = "heal"
)

// DriftOptions configures drift detection.
type DriftOptions struct {
	// Interval between periodic checks (a step of the pass); 0: checked
	// only on demand (CheckDrift).
	Interval time.Duration
	// Modes maps environments to DriftModeReport (the default) or
	// DriftModeHeal.
	Modes map[string]string
	// CheckTimeout bounds reading one backend's live state. Default 2m.
	CheckTimeout time.Duration
}

func (o DriftOptions) mode(environment string) string {
	if o.Modes[environment] == DriftModeHeal {
		return DriftModeHeal
	}
	return DriftModeReport
}

// codeDriftResolved: a heal that had not run, or had failed, was cancelled
// because the drift it answers went away (fixed by hand, or the playbook
// left the branch, expired or was reverted).
const codeDriftResolved judgement.Code = "drift_resolved"

// DriftCounts counts findings by kind.
type DriftCounts struct {
	Missing    int `json:"missing"`
	Unexpected int `json:"unexpected"`
	Changed    int `json:"changed"`
}

func (c *DriftCounts) add(kind string) {
	switch kind {
	case action.DriftMissing:
		c.Missing++
	case action.DriftUnexpected:
		c.Unexpected++
	case action.DriftChanged:
		c.Changed++
	}
}

func (c DriftCounts) total() int { return c.Missing + c.Unexpected + c.Changed }

// DriftHeal is the heal of one incident.
type DriftHeal struct {
	Incident  int64  `json:"incident"`
	Execution int64  `json:"execution"`
	Playbook  string `json:"playbook"`
	Targets   int    `json:"targets"`
	State     string `json:"state"`
}

// Drift group statuses.
const (
	DriftInSync = "in_sync"
	DriftFound  = "drift"
	DriftError  = "error"
)

// DriftGroupReport is what a check found on one backend for an action in
// an environment (several environments when they share the backend).
type DriftGroupReport struct {
	Environment string      `json:"environment"`
	Action      string      `json:"action"`
	Backend     string      `json:"backend"`
	Mode        string      `json:"mode"`
	Status      string      `json:"status"`
	Since       *time.Time  `json:"since,omitempty"`
	Counts      DriftCounts `json:"counts"`
	// Findings are the first maxDriftFindings, FindingsTotal all of them.
	Findings      []action.DriftFinding `json:"findings"`
	FindingsTotal int                   `json:"findings_total"`
	Heals         []DriftHeal           `json:"heals,omitempty"`
	Error         string                `json:"error,omitempty"`
}

// DriftReport is one check's outcome.
type DriftReport struct {
	CheckedAt time.Time          `json:"checked_at"`
	InSync    bool               `json:"in_sync"`
	Counts    DriftCounts        `json:"counts"`
	Groups    []DriftGroupReport `json:"groups"`
}

// maxDriftFindings bounds the findings a report and an audit entry list
// (the counts say the rest).
const maxDriftFindings = 1000

// ErrNoDriftReport: no drift check has run yet.
var ErrNoDriftReport = errors.New("no drift check has run yet")

// LatestDrift is the last check's report (on any replica: it is read from
// the database).
func (r *Reconciler) LatestDrift(ctx context.Context) (*DriftReport, error) {
	raw, err := r.opts.Store.LatestDriftReport(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNoDriftReport
	}
	if err != nil {
		return nil, err
	}
	var rep DriftReport
	if err := json.Unmarshal(raw, &rep); err != nil {
		return nil, fmt.Errorf("stored drift report: %w", err)
	}
	return &rep, nil
}

// CheckDrift checks drift now (the API's on-demand check), between
// passes; heals it records run in the next pass, which it asks for.
func (r *Reconciler) CheckDrift(ctx context.Context) (*DriftReport, error) {
	r.passMu.Lock()
	rep, heals, err := r.checkDrift(ctx)
	r.passMu.Unlock()
	if heals > 0 {
		r.Nudge()
	}
	return rep, err
}

// stepDrift checks drift every DriftOptions.Interval; not while writ
// holds.
func (r *Reconciler) stepDrift(ctx context.Context, p *pass) error {
	if p.holding || r.opts.Drift.Interval <= 0 {
		return nil
	}
	if !r.lastDrift.IsZero() && r.opts.Now().Sub(r.lastDrift) < r.opts.Drift.Interval {
		return nil
	}
	_, _, err := r.checkDrift(ctx)
	return err
}

// driftGroup is one backend checked for one action, with what the
// playbooks of its environments should hold there.
type driftGroup struct {
	action  string
	backend action.Backend
	envs    []string
	// held: the targets each version in force holds; expected: targets
	// whose release is under way.
	held     map[int64][]string
	versions map[int64]store.DesiredTarget
	expected map[string]bool
	problem  error
}

func (g *driftGroup) environment() string { return strings.Join(g.envs, ",") }

// checkDrift runs one check (under passMu) and returns its report and how
// many heals it recorded.
func (r *Reconciler) checkDrift(ctx context.Context) (*DriftReport, int, error) {
	now := r.opts.Now()
	r.lastDrift = now
	desired, err := r.opts.Store.DriftDesired(ctx)
	if err != nil {
		return nil, 0, err
	}
	groups := r.driftGroups(desired)
	prev, err := r.opts.Store.DriftGroups(ctx)
	if err != nil {
		return nil, 0, err
	}
	before := map[string]store.DriftGroup{}
	for _, g := range prev {
		before[g.Environment+"\x00"+g.Action+"\x00"+g.Backend] = g
	}
	rep := &DriftReport{CheckedAt: now.UTC(), InSync: true, Groups: []DriftGroupReport{}}
	var gauges []metrics.DriftGroup
	heals := 0
	for _, g := range groups {
		gr, n, err := r.checkGroup(ctx, g, before, now)
		if err != nil {
			return nil, heals, err
		}
		heals += n
		delete(before, gr.Environment+"\x00"+gr.Action+"\x00"+gr.Backend)
		rep.Groups = append(rep.Groups, *gr)
		rep.Counts.Missing += gr.Counts.Missing
		rep.Counts.Unexpected += gr.Counts.Unexpected
		rep.Counts.Changed += gr.Counts.Changed
		if gr.Status != DriftInSync {
			rep.InSync = false
		}
		gauges = append(gauges, metrics.DriftGroup{Environment: gr.Environment, Action: gr.Action, Failed: gr.Status == DriftError,
			Counts: map[string]int{action.DriftMissing: gr.Counts.Missing, action.DriftUnexpected: gr.Counts.Unexpected, action.DriftChanged: gr.Counts.Changed}})
	}
	// Incidents of no group checked now (their version holds nothing any
	// more, expired, reverted or removed, and its backend lists nothing)
	// are over: their heal, not run or failed, is cancelled.
	if err := r.resolveUnchecked(ctx, groups, now); err != nil {
		return nil, heals, err
	}
	// Groups no longer checked (their last playbook and backend are gone):
	// forgotten, their drift resolved on record.
	for _, g := range before {
		err := r.store(ctx, func(tx *store.Store) error {
			if err := tx.DeleteDriftGroup(ctx, g.Environment, g.Action, g.Backend); err != nil {
				return err
			}
			if g.Fingerprint == "" {
				return nil
			}
			_, err := r.appendAudit(ctx, tx, driftResolved(g.Environment, g.Action, g.Backend, g.Since, "no longer checked"))
			return err
		})
		if err != nil {
			return nil, heals, err
		}
	}
	raw, err := json.Marshal(rep)
	if err != nil {
		return nil, heals, err
	}
	if err := r.store(ctx, func(tx *store.Store) error { return tx.SaveDriftReport(ctx, now, raw) }); err != nil {
		return nil, heals, err
	}
	r.opts.Metrics.DriftChecked(now, gauges)
	return rep, heals, nil
}

// resolveUnchecked resolves the open incidents whose action and
// environment no group checks: no playbook in force holds a target there
// any more (a group whose live state could not be read is checked, and
// keeps its incidents).
func (r *Reconciler) resolveUnchecked(ctx context.Context, groups []*driftGroup, now time.Time) error {
	checked := func(inc *store.DriftIncident) bool {
		return slices.ContainsFunc(groups, func(g *driftGroup) bool {
			return g.action == inc.Action && slices.Contains(g.envs, inc.Environment)
		})
	}
	return r.store(ctx, func(tx *store.Store) error {
		open, err := tx.OpenIncidents(ctx)
		if err != nil {
			return err
		}
		var entries []audit.Entry
		for _, id := range slices.Sorted(maps.Keys(open)) {
			if inc := open[id]; !checked(inc) {
				es, err := r.resolveIncident(ctx, tx, inc, now)
				if err != nil {
					return err
				}
				entries = append(entries, es...)
			}
		}
		if len(entries) == 0 {
			return nil
		}
		_, err = r.appendAudit(ctx, tx, entries...)
		return err
	})
}

// driftGroups sorts the desired state by the backend each target lives on:
// every action with a backend in every environment writ knows (a backend
// that can list what it holds is checked for unexpected entries even
// where no playbook holds anything), and every action and environment a
// playbook writ applied names. Environments sharing one backend share its
// group: what one holds is not unexpected in the other.
func (r *Reconciler) driftGroups(desired []store.DesiredTarget) []*driftGroup {
	type pair struct{ action, env string }
	pairs := map[pair]bool{}
	for _, env := range r.opts.Environments.Names() {
		for _, a := range r.opts.Backends.Actions() {
			pairs[pair{a, env}] = false
		}
	}
	for _, d := range desired {
		pairs[pair{d.Action, d.Environment}] = true
	}
	byBackend := map[string]*driftGroup{}
	var out []*driftGroup
	keys := slices.SortedFunc(maps.Keys(pairs), func(a, b pair) int { return cmp.Or(strings.Compare(a.action, b.action), strings.Compare(a.env, b.env)) })
	for _, p := range keys {
		b, err := r.opts.Backends.Lookup(p.action, p.env)
		if err != nil {
			if pairs[p] {
				g := &driftGroup{action: p.action, envs: []string{p.env}, problem: err}
				out = append(out, g)
			}
			continue
		}
		_, enumerates := b.(action.Inventory)
		if !enumerates && !pairs[p] {
			continue // nothing held there, and nothing to list
		}
		key := p.action + "\x00" + b.Name()
		g := byBackend[key]
		if g == nil {
			g = &driftGroup{action: p.action, backend: b, held: map[int64][]string{}, versions: map[int64]store.DesiredTarget{}, expected: map[string]bool{}}
			byBackend[key] = g
			out = append(out, g)
		}
		g.envs = append(g.envs, p.env)
	}
	for _, d := range desired {
		for _, g := range out {
			if g.backend == nil || g.action != d.Action || !slices.Contains(g.envs, d.Environment) {
				continue
			}
			if d.Held {
				g.held[d.VersionID] = append(g.held[d.VersionID], d.Target)
				g.versions[d.VersionID] = d
			} else {
				g.expected[d.Target] = true
			}
		}
	}
	return out
}

// checkGroup checks one group, records what changed (incidents, heals,
// the group's findings, their audit entries) in one transaction, and
// judges the heals it recorded.
func (r *Reconciler) checkGroup(ctx context.Context, g *driftGroup, before map[string]store.DriftGroup, now time.Time) (*DriftGroupReport, int, error) {
	gr := &DriftGroupReport{Environment: g.environment(), Action: g.action, Backend: "none", Mode: r.groupMode(g), Findings: []action.DriftFinding{}}
	if g.backend != nil {
		gr.Backend = g.backend.Name()
	}
	prev, seen := before[gr.Environment+"\x00"+gr.Action+"\x00"+gr.Backend]
	var findings []action.DriftFinding
	err := g.problem
	if err == nil {
		findings, err = r.inspect(ctx, g)
	}
	if err != nil {
		// Live state could not be read: reported, and the drift known
		// before stands (nothing resolves, nothing heals).
		gr.Status, gr.Error = DriftError, err.Error()
		r.log.WarnContext(ctx, "drift check failed", slog.String("environment", gr.Environment), slog.String("action", gr.Action), slog.Any("error", err))
		if seen {
			gr.Since = prev.Since
			_ = json.Unmarshal(prev.Findings, &gr.Findings)
		}
		err := r.store(ctx, func(tx *store.Store) error {
			g := prev
			if !seen {
				g = store.DriftGroup{Environment: gr.Environment, Action: gr.Action, Backend: gr.Backend, Mode: gr.Mode}
			}
			g.Error, g.CheckedAt = gr.Error, now
			return tx.SaveDriftGroup(ctx, g)
		})
		return gr, 0, err
	}
	for _, f := range findings {
		gr.Counts.add(f.Kind)
	}
	gr.FindingsTotal = len(findings)
	gr.Findings = append([]action.DriftFinding{}, findings[:min(len(findings), maxDriftFindings)]...)
	fingerprint := ""
	if len(findings) > 0 {
		fingerprint = digestJSON(findings)
		gr.Status = DriftFound
		since := now.UTC()
		if seen && prev.Since != nil {
			since = *prev.Since
		}
		gr.Since = &since
	} else {
		gr.Status = DriftInSync
	}

	// Missing targets per version in force: its incident.
	missing := map[int64][]string{}
	byName := map[string]int64{}
	for id, v := range g.versions {
		byName[v.Name] = id
	}
	for _, f := range findings {
		if f.Kind == action.DriftMissing {
			if id, ok := byName[f.Playbook]; ok {
				missing[id] = append(missing[id], f.Target)
			}
		}
	}
	var judge []int64
	err = r.store(ctx, func(tx *store.Store) error {
		judge, gr.Heals = judge[:0], nil
		open, err := tx.OpenIncidents(ctx)
		if err != nil {
			return err
		}
		var entries []audit.Entry
		for _, id := range slices.Sorted(maps.Keys(open)) {
			inc := open[id]
			if inc.Action != g.action || !slices.Contains(g.envs, inc.Environment) {
				continue
			}
			m := missing[id]
			if len(m) > 0 && targetsDigest(m) == inc.Fingerprint {
				continue
			}
			// Contained again, another set missing, or no longer in
			// force: the incident is over.
			es, err := r.resolveIncident(ctx, tx, inc, now)
			if err != nil {
				return err
			}
			entries = append(entries, es...)
			delete(open, id)
		}
		for _, id := range slices.Sorted(maps.Keys(missing)) {
			m := missing[id]
			slices.Sort(m)
			v := g.versions[id]
			inc := open[id]
			if inc == nil {
				if inc, err = tx.OpenIncident(ctx, store.DriftIncident{VersionID: id, Name: v.Name, Digest: v.Digest, Action: v.Action,
					Environment: v.Environment, Backend: gr.Backend, Targets: m, Fingerprint: targetsDigest(m), OpenedAt: now}); err != nil {
					return err
				}
			}
			if r.opts.Drift.mode(v.Environment) != DriftModeHeal {
				continue
			}
			e, created, err := tx.CreateExecution(ctx, store.Execution{
				VersionID: id, Name: v.Name, Digest: v.Digest, Path: v.Path, Action: v.Action, Environment: v.Environment,
				Operation: judgement.OperationHeal, Incident: inc.ID, Targets: inc.Targets,
				Trigger: string(judgement.Drift), ChangeType: "drift", State: store.ExecWaiting, ReasonCode: string(codeIntended),
				Reason: fmt.Sprintf("drift incident %d: %d targets of %s missing from live state on %s; re-applying them is judged as its own operation",
					inc.ID, len(inc.Targets), v.Name, gr.Backend),
			})
			if err != nil {
				return err
			}
			if created {
				entries = append(entries, executionEntry(e, eventIntended, e.Reason))
				judge = append(judge, e.ID)
			}
			gr.Heals = append(gr.Heals, DriftHeal{Incident: inc.ID, Execution: e.ID, Playbook: e.Name, Targets: len(e.Targets), State: string(e.State)})
		}
		switch {
		case fingerprint != "" && (!seen || fingerprint != prev.Fingerprint):
			entries = append(entries, r.driftDetected(gr, findings))
		case fingerprint == "" && seen && prev.Fingerprint != "":
			entries = append(entries, driftResolved(gr.Environment, gr.Action, gr.Backend, prev.Since, "live state matches the desired state"))
		}
		if err := tx.SaveDriftGroup(ctx, store.DriftGroup{Environment: gr.Environment, Action: gr.Action, Backend: gr.Backend, Mode: gr.Mode,
			Fingerprint: fingerprint, Findings: audit.MustJSON(gr.Findings), Since: gr.Since, CheckedAt: now}); err != nil {
			return err
		}
		if len(entries) == 0 {
			return nil
		}
		_, err = r.appendAudit(ctx, tx, entries...)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	for _, id := range judge {
		if err := r.judgeByID(ctx, id); err != nil {
			return nil, 0, err
		}
	}
	// The heals as judged.
	for i, h := range gr.Heals {
		if e, err := r.opts.Store.ExecutionByID(ctx, h.Execution); err == nil {
			gr.Heals[i].State = string(e.State)
		}
	}
	return gr, len(judge), nil
}

// groupMode is the group's mode: heal when every environment of it heals.
func (r *Reconciler) groupMode(g *driftGroup) string {
	for _, env := range g.envs {
		if r.opts.Drift.mode(env) != DriftModeHeal {
			return DriftModeReport
		}
	}
	return DriftModeHeal
}

// inspect reads the group's live state and compares it with what its
// playbooks hold.
func (r *Reconciler) inspect(ctx context.Context, g *driftGroup) ([]action.DriftFinding, error) {
	timeout := cmp.Or(r.opts.Drift.CheckTimeout, 2*time.Minute)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, enumerates := g.backend.(action.Inventory)
	ids := slices.Sorted(maps.Keys(g.held))
	var stored map[int64]*store.PlaybookVersion
	if !enumerates && len(ids) > 0 {
		// A backend asked per target is sent each playbook's params, as
		// its plans are.
		var err error
		if stored, err = r.opts.Store.PlaybookVersionsByID(ctx, ids); err != nil {
			return nil, err
		}
	}
	reqs := make([]action.Request, 0, len(ids))
	for _, id := range ids {
		v := g.versions[id]
		req := action.Request{Playbook: v.Name, Digest: v.Digest, Action: v.Action, Environment: v.Environment,
			Operation: action.Apply, Targets: g.held[id]}
		if sv := stored[id]; sv != nil {
			if pb, problems := r.parseVersion(sv); problems == nil {
				req.Params = pb.Spec.Params
			}
		}
		reqs = append(reqs, req)
	}
	return action.CheckDrift(ctx, g.backend, reqs, g.expected)
}

// resolveIncident closes an incident and cancels its heal if it has not
// started, or failed: what it would restore is back, or no longer wanted,
// and a failed heal of a resolved incident is final (never retried: the
// playbook may have expired or been reverted since).
func (r *Reconciler) resolveIncident(ctx context.Context, tx *store.Store, inc *store.DriftIncident, now time.Time) ([]audit.Entry, error) {
	if err := tx.ResolveIncident(ctx, inc.ID, now); err != nil {
		return nil, err
	}
	e, err := tx.HealExecution(ctx, inc.Name, inc.Digest, inc.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	from := []store.ExecState{store.ExecWaiting, store.ExecPending, store.ExecFailed}
	if !slices.Contains(from, e.State) {
		return nil, nil
	}
	reason := fmt.Sprintf("drift incident %d is over: live state holds the targets again, or the playbook is no longer in force", inc.ID)
	if e.State == store.ExecFailed {
		reason += "; its failed heal is final and is not retried"
	}
	err = tx.SetExecutionState(ctx, e.ID, from, store.ExecCancelled, string(codeDriftResolved), reason, nil)
	if errors.Is(err, store.ErrConflict) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ne, err := tx.ExecutionByID(ctx, e.ID)
	if err != nil {
		return nil, err
	}
	return []audit.Entry{executionEntry(ne, audit.EventExecutionCancelled, reason)}, nil
}

// driftDetected is the audit entry of drift that appeared or changed.
func (r *Reconciler) driftDetected(gr *DriftGroupReport, findings []action.DriftFinding) audit.Entry {
	lists := map[string][]string{}
	playbooks := map[string]bool{}
	for _, f := range findings {
		if len(lists[f.Kind]) < maxAuditList {
			lists[f.Kind] = append(lists[f.Kind], f.Target)
		}
		if f.Playbook != "" {
			playbooks[f.Playbook] = true
		}
	}
	payload := map[string]any{
		"environment": gr.Environment, "action": gr.Action, "backend": gr.Backend, "mode": gr.Mode,
		"missing": nonNil(lists[action.DriftMissing]), "unexpected": nonNil(lists[action.DriftUnexpected]),
		"changed": nonNil(lists[action.DriftChanged]), "counts": gr.Counts,
		"playbooks": slices.Sorted(maps.Keys(playbooks)), "findings_sha256": digestJSON(findings),
	}
	heal := []map[string]any{}
	for _, h := range gr.Heals {
		heal = append(heal, map[string]any{"incident": h.Incident, "execution": h.Execution, "playbook": h.Playbook, "targets": h.Targets})
	}
	payload["heal"] = heal
	return audit.Entry{
		Actor: audit.SystemActor, Event: audit.EventDriftDetected, Success: false,
		Subject: audit.Subject{Kind: audit.SubjectEnvironment, Name: gr.Environment},
		Payload: audit.MustJSON(payload),
	}
}

// driftResolved is the audit entry of drift gone.
func driftResolved(environment, act, backend string, since *time.Time, why string) audit.Entry {
	payload := map[string]any{"environment": environment, "action": act, "backend": backend, "reason": why}
	if since != nil {
		payload["since"] = since.UTC().Format(time.RFC3339)
	}
	return audit.Entry{
		Actor: audit.SystemActor, Event: audit.EventDriftResolved, Success: true,
		Subject: audit.Subject{Kind: audit.SubjectEnvironment, Name: environment},
		Payload: audit.MustJSON(payload),
	}
}

// healOperation is the operation a heal carries out: an apply of the
// incident's missing targets from the version in force, judged under its
// own identity (judgement.Operation.Signed is heal, with the incident).
func healOperation(e *store.Execution, pb *playbook.Playbook) judgement.Operation {
	return judgement.Operation{Kind: action.Apply, Trigger: judgement.Drift, ChangeType: "drift", Playbook: pb,
		Targets: slices.Clone(e.Targets), Incident: e.Incident}
}

func digestJSON(v any) string {
	h := sha256.Sum256(audit.MustJSON(v))
	return hex.EncodeToString(h[:])
}

// targetsDigest identifies a set of targets (sorted).
func targetsDigest(targets []string) string {
	s := slices.Sorted(slices.Values(targets))
	h := sha256.Sum256([]byte(strings.Join(s, "\n")))
	return hex.EncodeToString(h[:])
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
