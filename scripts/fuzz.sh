#!/usr/bin/env bash
# Runs every Go fuzz target of the module, each for SECONDS (default 10).
#
#   scripts/fuzz.sh [SECONDS]
#
# Targets are discovered, not listed: every package's `go test -list
# '^Fuzz'`, so a new FuzzXxx anywhere is picked up. Each runs alone with
# `go test -run '^$' -fuzz '^Name$' -fuzztime Ns PKG` (go test fuzzes one
# target at a time). A failure leaves the failing input under the package's
# testdata/fuzz/Name/ (commit it with the fix: it becomes a regression test)
# and makes the script exit non-zero after running the other targets.
# Exits non-zero as well when no target is found.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-10}"
[[ "$secs" =~ ^[0-9]+$ && "$secs" -gt 0 ]] || { echo "usage: $0 [SECONDS]" >&2; exit 2; }

mapfile -t pkgs < <(go list ./...)
targets=() failed=()
for pkg in "${pkgs[@]}"; do
  dir="$(go list -f '{{.Dir}}' "$pkg")"
  compgen -G "$dir/*_test.go" >/dev/null || continue
  # -list prints matching names, then "ok <pkg> <time>"; a build failure
  # is a failure, not "no targets".
  if ! out="$(go test -list '^Fuzz' "$pkg" 2>&1)"; then
    echo "fuzz: listing $pkg failed:" >&2
    echo "$out" >&2
    failed+=("$pkg (list)")
    continue
  fi
  while read -r name; do
    [[ "$name" =~ ^Fuzz[A-Za-z0-9_]*$ ]] && targets+=("$pkg $name")
  done <<<"$out"
done

((${#targets[@]} > 0)) || { echo "fuzz: no fuzz targets found" >&2; exit 1; }
echo "fuzz: ${#targets[@]} targets, ${secs}s each"

# Go 1.26's fuzz coordinator can fail a target with a bare "context
# deadline exceeded" when -fuzztime ends while a worker is busy, having
# found nothing (go.dev/issue/75804, fixed in Go 1.27). A real finding
# always prints "Failing input written to" and leaves the input in
# testdata; such a run is judged by replaying the target's corpus instead.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
flaked=()
for t in "${targets[@]}"; do
  read -r pkg name <<<"$t"
  echo "== $name ($pkg)"
  # The time limit covers building and the seed corpus too; fuzzing itself
  # stops after -fuzztime.
  if timeout $((secs + 300)) go test -run '^$' -fuzz "^${name}\$" -fuzztime "${secs}s" "$pkg" 2>&1 | tee "$log"; then
    continue
  fi
  # Nothing found: no input written, no panic, no t.Error line (file.go:N:).
  if grep -q 'context deadline exceeded' "$log" && ! grep -qE 'Failing input written to|panic:|^[[:space:]]+[^[:space:]]+\.go:[0-9]+:' "$log"; then
    echo "fuzz: $name stopped at the fuzztime boundary with nothing found (go.dev/issue/75804); replaying its corpus" >&2
    if go test -count=1 -run "^${name}\$" "$pkg"; then
      flaked+=("$name")
      continue
    fi
  fi
  failed+=("$name ($pkg)")
done
((${#flaked[@]} == 0)) || echo "fuzz: ended at the fuzztime boundary, corpus replay passed: ${flaked[*]}" >&2

if ((${#failed[@]} > 0)); then
  echo "fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets passed"
