#!/usr/bin/env bash
# Mutation testing: scripts/mutation.sh [PACKAGE...] (default: the packages
# that carry the guarantees, below). For each package, gremlins changes one
# operator at a time in the package's code (a < becomes <=, a + becomes -,
# an == becomes !=, ...) and runs that package's own tests against each
# change; a change the tests still pass ("LIVED") is code whose behaviour no
# test pins down. Mutators: gremlins' defaults (arithmetic, conditional
# boundaries and negations, ++/--, negatives) plus && <-> || and += <-> -=. docs/testing.md, "Mutation score", has the current scores
# and a reason for every surviving mutant.
#
# The tool is github.com/go-gremlins/gremlins, pinned in tools/go.mod (a
# `tool` line, like buf) and built into $CONFGATE_TOOLBIN (default
# .cache/toolbin), rebuilt when the pin changes.
#
# Tests run against the in-process dev broker (kfake) with -short:
# CONFGATE_KAFKA_BROKERS is unset, so no Apache Kafka is needed. gremlins has
# no option for test flags; it runs `go test` with our environment, and
# `go test` takes -short from GOFLAGS.
#
# gremlins copies the whole module once per worker; to keep that small (no
# .git, no .cache) and to keep edits made during a run out of it, the run
# happens in a copy of the work tree: tracked and untracked files that git
# does not ignore.
#
# Knobs (environment):
#   MUTATION_WORKERS      parallel mutant test runs (default 1). More than
#                         one on a 2-core machine makes the timing-sensitive
#                         store/client/gateway tests slower, so more mutants
#                         time out; the pure packages are fine with 2.
#   MUTATION_TIMEOUT_COEF a mutant's test run may take this many times the
#                         package's first (coverage) run, compile included
#                         (default 10; gremlins' own default is 3).
#   MUTATION_OUT          where each package's JSON report goes
#                         (default .cache/mutation/<pkg>.json).
#   MUTATION_THRESHOLD    if set, fail when a package's efficacy (killed /
#                         (killed + lived), in percent) is below it.
#   MUTATION_ARGS         more gremlins unleash flags, e.g. to mutate only
#                         some files: MUTATION_ARGS="-E ^config.go$"
#                         (-E: a regexp of file paths, relative to the package, to leave alone).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

workers="${MUTATION_WORKERS:-1}"
coef="${MUTATION_TIMEOUT_COEF:-10}"
out="${MUTATION_OUT:-$root/.cache/mutation}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

if [[ $# -eq 0 ]]; then
  set -- internal/cursor internal/digest internal/keyspace client gateway store
fi

# Build the pinned gremlins when missing or when tools/go.mod's pin changed.
bin="${CONFGATE_TOOLBIN:-$root/.cache/toolbin}"
mkdir -p "$bin"
pin="$(cd tools && go list -m -f '{{.Version}}' github.com/go-gremlins/gremlins)"
if [[ ! -x "$bin/gremlins" || "$(cat "$bin/gremlins.version" 2>/dev/null)" != "$pin" ]]; then
  echo "== building gremlins $pin (tools/go.mod)" >&2
  (cd tools && go build -o "$bin/gremlins" github.com/go-gremlins/gremlins/cmd/gremlins)
  echo "$pin" >"$bin/gremlins.version"
fi

tree="$(mktemp -d "${TMPDIR:-/tmp}/confgate-mutation-XXXXXX")"
trap 'rm -rf "$tree"' EXIT
git ls-files -z --cached --others --exclude-standard |
  tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -C "$tree" -xf -

unset CONFGATE_KAFKA_BROKERS
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-short"

read -r -a extra <<<"${MUTATION_ARGS:-}"
threshold=()
if [[ -n "${MUTATION_THRESHOLD:-}" ]]; then
  threshold=(--threshold-efficacy "$MUTATION_THRESHOLD")
fi

summary=()
status=0
for pkg in "$@"; do
  pkg="${pkg#./}"
  pkg="${pkg%/}"
  pkg="${pkg%/...}"
  if [[ ! -d "$tree/$pkg" ]]; then
    echo "no such package directory: $pkg" >&2
    exit 2
  fi
  report="$out/${pkg//\//_}.json"
  rm -f "$report"
  echo "== gremlins $pin: $pkg (workers $workers, timeout x$coef)" >&2
  start=$SECONDS
  # Print every mutant that is not killed: lived, timed out, not covered,
  # not viable (does not compile).
  if ! (cd "$tree" && "$bin/gremlins" unleash --workers "$workers" \
    --timeout-coefficient "$coef" --invert-logical --invert-assignments -S lctv -o "$report" "${threshold[@]}" "${extra[@]}" "./$pkg"); then
    status=1
  fi
  took=$((SECONDS - start))
  summary+=("$(printf '%-18s %4ds  %s' "$pkg" "$took" "$(python3 - "$report" <<'EOF'
import json, os, sys
if not os.path.exists(sys.argv[1]):
    print("no mutants")
    sys.exit()
r = json.load(open(sys.argv[1]))
c = {}
for f in r.get("files", []):
    for m in f.get("mutations", []):
        c[m["status"]] = c.get(m["status"], 0) + 1
k, l = c.get("KILLED", 0), c.get("LIVED", 0)
eff = f"{100 * k / (k + l):.1f}%" if k + l else "n/a"
print(f"killed {k}, lived {l}, timed out {c.get('TIMED OUT', 0)}, "
      f"not covered {c.get('NOT COVERED', 0)}, not viable {c.get('NOT VIABLE', 0)}; efficacy {eff}")
EOF
)")")
done

echo "== mutation summary (reports in $out)" >&2
printf '%s\n' "${summary[@]}"
exit $status
