package action

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Inventory is implemented by backends that can read everything they hold
// live in one go (the nftables drop sets, the blocklist file): a drift
// check then finds what nobody asked for (unexpected) as well as what is
// missing, and reads live state once instead of per target. Backends that
// cannot enumerate (a SCIM provider, a webhook receiver) are checked per
// target through Plan.
type Inventory interface {
	// Inventory reads what the backend holds live now.
	Inventory(ctx context.Context) (Live, error)
}

// Live is what a backend holds live, as one Inventory read it.
type Live interface {
	// Contains reports whether the target (spelled as RequestFor spells
	// it) is contained live.
	Contains(target string) bool
	// Beyond lists what is contained live beyond the given targets (an
	// address or range no playbook asked for), each spelled as a target
	// or, for a range that is not one, FIRST-LAST.
	Beyond(targets []string) []string
}

// Blind is implemented by backends that may be unable to read live state
// (a webhook receiver without a status endpoint): when Blind reports
// true, a drift check finds nothing there, rather than every target
// missing.
type Blind interface {
	Blind() bool
}

// Kinds of drift.
const (
	// DriftMissing: a playbook in force holds the target, and live state
	// does not contain it (an address deleted from the set, an account
	// active again, a host released).
	DriftMissing = "missing"
	// DriftUnexpected: live state contains the target and no playbook
	// writ applied holds it (only backends with an Inventory can tell).
	DriftUnexpected = "unexpected"
	// DriftChanged: the target is there, but not as the playbook put it:
	// an address blocked only by a wider entry (its own entry is gone, so
	// releasing the wider one would release it), an account that no
	// longer exists or is ambiguous, a host the receiver no longer knows.
	DriftChanged = "changed"
)

// DriftFinding is one target whose live state differs from the desired
// state.
type DriftFinding struct {
	Target string `json:"target"`
	Kind   string `json:"kind"`
	// Playbook is the playbook in force that holds the target (none for
	// unexpected).
	Playbook string `json:"playbook,omitempty"`
	Detail   string `json:"detail,omitempty"`
}

// AlreadyApplied is a webhook receiver's word for a team-defined action in
// force (webhook.AlreadyApplied).
const AlreadyApplied = "already_applied"

// contained are the planned results of an apply whose target is in force.
var contained = map[string]bool{AlreadyBlocked: true, AlreadySuspended: true, AlreadyIsolated: true, AlreadyApplied: true}

// missingResults are the planned results of an apply that would contain
// the target: it is not contained.
var missingResults = map[string]bool{WouldBlock: true, WouldSuspend: true, WouldIsolate: true, WouldSend: true, "overlaps": true}

// CheckDrift compares live state on one backend with the desired state:
// held are the apply requests of the playbooks in force on this backend
// (one per playbook version, with the targets it holds), expected the
// targets whose release is under way (contained live is no drift). It
// reads live state once when the backend has an Inventory, and plans
// (Plan, an apply, changing nothing) only the targets it cannot settle
// from it; findings are sorted by kind, then target.
func CheckDrift(ctx context.Context, b Backend, held []Request, expected map[string]bool) ([]DriftFinding, error) {
	var findings []DriftFinding
	if bl, ok := b.(Blind); ok && bl.Blind() {
		return nil, nil
	}
	inv, enumerates := b.(Inventory)
	var live Live
	if enumerates {
		var err error
		if live, err = inv.Inventory(ctx); err != nil {
			return nil, fmt.Errorf("inventory of %s: %w", b.Name(), err)
		}
	}
	var wanted []string
	for _, req := range held {
		wanted = append(wanted, req.Targets...)
		ask := req.Targets
		if enumerates {
			ask = slices.DeleteFunc(slices.Clone(req.Targets), live.Contains)
		}
		if len(ask) == 0 {
			continue
		}
		req.Operation = Apply
		req.Targets = ask
		if err := b.Validate(req); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", b.Name(), req.Playbook, err)
		}
		p, err := b.Plan(ctx, req)
		if err != nil {
			return nil, fmt.Errorf("plan %s on %s: %w", req.Playbook, b.Name(), err)
		}
		for _, tp := range p.Targets {
			f := DriftFinding{Target: tp.Target, Playbook: req.Playbook}
			switch {
			case contained[tp.Result]:
				continue
			case missingResults[tp.Result]:
				f.Kind, f.Detail = DriftMissing, "not contained: plans as "+tp.Result
				if tp.Detail != "" {
					f.Detail += " (" + tp.Detail + ")"
				}
			case tp.Result == CoveredBy:
				f.Kind, f.Detail = DriftChanged, "its own entry is gone; still blocked "+tp.Detail
			default:
				f.Kind, f.Detail = DriftChanged, tp.Result
				if tp.Detail != "" {
					f.Detail += ": " + tp.Detail
				}
			}
			findings = append(findings, f)
		}
	}
	if enumerates {
		for t := range expected {
			wanted = append(wanted, t)
		}
		for _, t := range live.Beyond(wanted) {
			findings = append(findings, DriftFinding{Target: t, Kind: DriftUnexpected, Detail: "contained live; no playbook writ applied holds it"})
		}
	}
	slices.SortFunc(findings, func(a, b DriftFinding) int {
		if c := strings.Compare(a.Kind, b.Kind); c != 0 {
			return c
		}
		if c := strings.Compare(a.Target, b.Target); c != 0 {
			return c
		}
		return strings.Compare(a.Playbook, b.Playbook)
	})
	return findings, nil
}
