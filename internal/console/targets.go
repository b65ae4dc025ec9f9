package console

import (
	"encoding/json"
	"fmt"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/playbook"
	"github.com/writ-sec/writ/internal/reconcile"
	"github.com/writ-sec/writ/internal/store"
)

// Long lists (a targets file holds up to 100,000 targets) are shown as
// their first action.ShownTargets items and counts; the API has them
// whole.

// targetsView is a list of targets as the pages show it.
type targetsView struct {
	Shown []string
	More  int
	Total int
}

func viewTargets(ts []string) targetsView {
	v := targetsView{Shown: ts, Total: len(ts)}
	if len(ts) > action.ShownTargets {
		v.Shown, v.More = ts[:action.ShownTargets], len(ts)-action.ShownTargets
	}
	return v
}

// planView is a recorded plan as the pages show it: whole when it is
// short, else its counts per result and first targets.
type planView struct {
	Raw    json.RawMessage // the plan, when it is short enough to show whole
	Counts string
	Total  int
	Shown  []action.TargetPlan
	More   int
}

func viewPlan(raw json.RawMessage) *planView {
	if len(raw) == 0 {
		return nil
	}
	var p action.Plan
	if err := json.Unmarshal(raw, &p); err != nil || len(p.Targets) <= action.ShownTargets {
		return &planView{Raw: raw}
	}
	shown, more := p.Shown()
	return &planView{Counts: p.CountsText(), Total: len(p.Targets), Shown: shown, More: more}
}

// resultsView is an execution's per-target results as its page shows them.
type resultsView struct {
	Shown  []store.TargetResult
	More   int
	Counts string
}

func viewResults(rs []store.TargetResult) resultsView {
	v := resultsView{Shown: rs}
	if len(rs) <= action.ShownTargets {
		return v
	}
	p := action.Plan{Targets: make([]action.TargetPlan, len(rs))}
	for i, r := range rs {
		p.Targets[i] = action.TargetPlan{Target: r.Target, Result: r.Result}
	}
	v.Shown, v.More, v.Counts = rs[:action.ShownTargets], len(rs)-action.ShownTargets, p.CountsText()
	return v
}

// targetsFileDiff shows a targets file against the one of the version it
// replaces as the targets added and removed (the first of each, and how
// many), instead of a line diff of up to 100,000 lines.
func targetsFileDiff(now, was *reconcile.PendingFile) fileDiff {
	d := fileDiff{Path: now.Path}
	targets, dups, problems := playbook.ParseTargetsFile(now.Path, []byte(now.Content))
	if problems != nil {
		d.Lines = []diffLine{{" ", "does not parse: " + problems[0].String()}}
		return d
	}
	note := fmt.Sprintf("%s targets, sha256 %s", action.Thousands(len(targets)), playbook.Digest([]byte(now.Content)))
	if dups > 0 {
		note += fmt.Sprintf(" (%s repeated lines merged)", action.Thousands(dups))
	}
	var before []string
	if was != nil {
		before, _, _ = playbook.ParseTargetsFile(was.Path, []byte(was.Content))
	}
	old := make(map[string]bool, len(before))
	for _, t := range before {
		old[t] = true
	}
	cur := make(map[string]bool, len(targets))
	for _, t := range targets {
		cur[t] = true
	}
	var added, removed []string
	for _, t := range targets {
		if !old[t] {
			added = append(added, t)
		}
	}
	for _, t := range before {
		if !cur[t] {
			removed = append(removed, t)
		}
	}
	d.Lines = append(d.Lines, diffLine{" ", fmt.Sprintf("%s; %s added, %s removed", note, action.Thousands(len(added)), action.Thousands(len(removed)))})
	for _, part := range []struct {
		op   string
		list []string
	}{{"-", removed}, {"+", added}} {
		v := viewTargets(part.list)
		for _, t := range v.Shown {
			d.Lines = append(d.Lines, diffLine{part.op, t})
		}
		if v.More > 0 {
			d.Lines = append(d.Lines, diffLine{part.op, fmt.Sprintf("… and %s more", action.Thousands(v.More))})
		}
	}
	return d
}
