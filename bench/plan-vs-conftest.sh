#!/usr/bin/env bash
# plan-vs-conftest.sh: writ plan and conftest side by side on the same
# generated playbooks, the same Rego and the same data (issue 22).
#
#   bench/plan-vs-conftest.sh [N [RUNS]]      # default 1000 playbooks, 5 runs
#
# It builds writ from this checkout (with its PGO profile), installs
# conftest at a pinned version with `go install` into a scratch directory,
# generates N block_ip / suspend_user / isolate_host playbooks in a
# repository laid out as writ expects (playbooks/, policies/ = the default
# policy set), and runs each tool RUNS times, after one warm-up run each.
# conftest evaluates the default policies through a wrapper (package main)
# that builds writ's input (input.playbook, input.environment, ...) from
# the playbook it is given and turns data.writ.decision into deny and warn
# rules. It prints each run's wall, user and system seconds, the medians,
# and the ratios conftest/writ (wall, and CPU = user + system).
set -euo pipefail

N=${1:-1000}
RUNS=${2:-5}
CONFTEST_VERSION=${CONFTEST_VERSION:-v0.71.1}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "building writ and conftest $CONFTEST_VERSION ..." >&2
(cd "$root" && go build -o "$work/writ" ./cmd/writ)
GOBIN="$work/bin" GOFLAGS=-mod=mod go install "github.com/open-policy-agent/conftest@$CONFTEST_VERSION"

repo="$work/repo"
mkdir -p "$repo/playbooks" "$repo/policies" "$work/wrapper"
cp "$root"/policies/*.rego "$root"/policies/data.yaml "$repo/policies/"
rm -f "$repo"/policies/*_test.rego

# The corpus: one playbook in ten of each kind, as
# cmd/writ/plan_bench_test.go's planCorpus generates it.
for ((i = 0; i < N; i++)); do
  a=$((i / 250 % 250)); b=$((i % 250))
  action=block_ip targets="[203.0.$a.$b, 198.51.100.$((b % 200))/32]" severity=high env=production
  case $((i % 10)) in
    1) env=staging severity=low ;;
    2) targets="[10.$a.$b.1]" ;;
    3) severity=critical ;;
    4) action=suspend_user targets="[user$i@example.com]" ;;
    5) action=isolate_host targets="[ws-$i.corp.example.com]" ;;
    6) targets="[127.0.0.1]" ;;
    7) targets="[8.8.8.8]" ;;
  esac
  name=$(printf 'pb-%05d' "$i")
  printf 'apiVersion: writ/v1\nkind: Playbook\nmetadata:\n  name: %s\nspec:\n  action: %s\n  targets: %s\n  justification: plan bench\n  severity: %s\n  environment: %s\n' \
    "$name" "$action" "$targets" "$severity" "$env" >"$repo/playbooks/$name.yaml"
done

# conftest's wrapper: writ's input from the playbook conftest parsed, then
# writ's decision as deny (refusals) and warn (approvals needed).
cat >"$work/wrapper/wrapper.rego" <<'REGO'
package main

environments := {
	"production": {"name": "production", "production": true},
	"staging": {"name": "staging", "production": false},
}

spec := object.union({"execution": "auto", "params": {}}, input.spec)

writ_input := {
	"operation": "apply",
	"playbook": {
		"path": "playbooks/x.yaml", "apiVersion": input.apiVersion, "kind": input.kind,
		"metadata": object.union({"labels": {}}, input.metadata), "spec": spec,
	},
	"change": {"type": "create", "author": ""},
	"environment": environments[input.spec.environment],
	"emergency": false,
}

decision := d if {
	d := data.writ.decision with input as writ_input
}

deny contains r.msg if some r in decision.deny

warn contains r.msg if some r in decision.require_approval
REGO

run() { # run LABEL CMD...: appends "wall user sys" to $work/LABEL.times
  local label=$1; shift
  # Both exit non-zero when a playbook is denied: that is expected here.
  /usr/bin/time -f '%e %U %S' -o "$work/last.time" "$@" >/dev/null 2>&1 || true
  tail -1 "$work/last.time" >>"$work/$label.times"
}

cd "$repo"
writ_cmd=("$work/writ" plan --format json .)
conftest_cmd=("$work/bin/conftest" test --no-color -o json --policy policies --policy "$work/wrapper" --data policies/data.yaml playbooks)

# Both must judge: a check that nothing failed silently.
"${writ_cmd[@]}" >"$work/writ.json" || true
"${conftest_cmd[@]}" >"$work/conftest.json" || true
wd=$(grep -c '"decision": "deny"' "$work/writ.json" || true)
cd_=$(python3 -c 'import json,sys; print(sum(1 for r in json.load(open(sys.argv[1])) if r.get("failures")))' "$work/conftest.json")
echo "denied: writ $wd, conftest $cd_ (of $N)" >&2
if [ "$wd" != "$cd_" ]; then
  echo "writ and conftest disagree on what is denied: not comparable" >&2
  exit 1
fi

for ((r = 0; r < RUNS; r++)); do
  run writ "${writ_cmd[@]}"
  run conftest "${conftest_cmd[@]}"
done

python3 - "$work" "$N" "$(nproc)" <<'PY'
import statistics, sys
work, n, cores = sys.argv[1], sys.argv[2], sys.argv[3]
def load(label):
    rows = [list(map(float, l.split())) for l in open(f"{work}/{label}.times") if l.strip()]
    wall = statistics.median(r[0] for r in rows)
    cpu = statistics.median(r[1] + r[2] for r in rows)
    return rows, wall, cpu
print(f"{n} playbooks, {cores} cores; seconds per run (wall user sys)")
res = {}
for label in ("writ", "conftest"):
    rows, wall, cpu = load(label)
    res[label] = (wall, cpu)
    print(f"{label:9s} " + "  ".join(f"{r[0]:.2f}/{r[1]:.2f}/{r[2]:.2f}" for r in rows))
    print(f"{label:9s} median wall {wall:.3f} s, CPU {cpu:.3f} s")
w, c = res["writ"], res["conftest"]
print(f"conftest/writ: wall {c[0]/w[0]:.1f}x, CPU {c[1]/w[1]:.1f}x")
PY
