package notify

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/writ-sec/writ/internal/audit"
)

// driftDescription says what a drift entry found and what to do next; t
// escapes text for the channel.
func driftDescription(e audit.Entry, t func(string) string) Description {
	var p struct {
		Environment string   `json:"environment"`
		Action      string   `json:"action"`
		Backend     string   `json:"backend"`
		Mode        string   `json:"mode"`
		Missing     []string `json:"missing"`
		Unexpected  []string `json:"unexpected"`
		Changed     []string `json:"changed"`
		Counts      struct {
			Missing    int `json:"missing"`
			Unexpected int `json:"unexpected"`
			Changed    int `json:"changed"`
		} `json:"counts"`
		Heal []struct {
			Incident  int64  `json:"incident"`
			Execution int64  `json:"execution"`
			Playbook  string `json:"playbook"`
		} `json:"heal"`
		Since string `json:"since"`
	}
	_ = json.Unmarshal(e.Payload, &p)
	where := fmt.Sprintf("%s in %s (%s)", p.Action, p.Environment, p.Backend)
	if e.Event == audit.EventDriftResolved {
		since := ""
		if p.Since != "" {
			since = " (drifted since " + p.Since + ")"
		}
		return Description{":white_check_mark:", t(fmt.Sprintf("Live state of %s matches the playbooks in force again%s", where, since)), nil, ""}
	}
	var parts []string
	list := func(n int, kind string, targets []string) {
		if n == 0 {
			return
		}
		shown := strings.Join(targets[:min(len(targets), 5)], ", ")
		if n > 5 {
			shown += ", …"
		}
		parts = append(parts, fmt.Sprintf("%d %s (%s)", n, kind, shown))
	}
	list(p.Counts.Missing, "missing", p.Missing)
	list(p.Counts.Unexpected, "unexpected", p.Unexpected)
	list(p.Counts.Changed, "changed", p.Changed)
	next := "Check who changed it; writ reports this environment's drift and changes nothing (drift: report). Re-apply by changing the playbook, or set drift: heal."
	if p.Mode == "heal" && len(p.Heal) > 0 {
		var ops []string
		for _, h := range p.Heal {
			ops = append(ops, fmt.Sprintf("`writ approve op-%d` (%s, incident %d)", h.Execution, h.Playbook, h.Incident))
		}
		next = "writ heals the missing targets as operations of their own, judged like any other: where approvals are required, review and sign " + strings.Join(ops, ", ") + "."
	} else if p.Mode == "heal" {
		next = "Nothing is missing, so nothing is healed: unexpected and changed targets are only reported. Check who changed it."
	}
	return Description{":rotating_light:", t(fmt.Sprintf("Drift on %s: %s", where, strings.Join(parts, ", "))), nil, t(next)}
}
