#!/usr/bin/env bash
# Runs the long real-time tests: those that call testenv.Long(t) and so skip
# in the default suite (multi-process fleets sharing a quota through Redis for
# ten seconds, a Redis replica failing over). Package by package, with -race
# and SLUICE_LONG=1. CI runs this as its own stage.
#
#   scripts/long.sh            # every long test
#   scripts/long.sh -list      # only print what it would run
set -euo pipefail
cd "$(dirname "$0")/.."

# package dir -> "TestA|TestB": the Test function whose body calls
# testenv.Long(t).
declare -A runs
while IFS=$'\t' read -r dir name; do
	runs[$dir]="${runs[$dir]:+${runs[$dir]}|}$name"
done < <(grep -rl --include='*_test.go' 'testenv\.Long(t)' . | sort | while read -r f; do
	awk -v dir="$(dirname "$f")" '
		/^func Test[A-Za-z0-9_]*\(/ { name = $2; sub(/\(.*/, "", name) }
		/testenv\.Long\(t\)/ && name != "" { print dir "\t" name; name = "" }' "$f"
done)

if ((${#runs[@]} == 0)); then
	echo "long: no test calls testenv.Long(t)" >&2
	exit 1
fi
mapfile -t dirs < <(printf '%s\n' "${!runs[@]}" | sort)
if [ "${1:-}" = "-list" ]; then
	for d in "${dirs[@]}"; do echo "$d: ${runs[$d]}"; done
	exit 0
fi
failed=()
for d in "${dirs[@]}"; do
	echo "== $d: ${runs[$d]}"
	if ! SLUICE_LONG=1 go test -race -count=1 -run "^(${runs[$d]})\$" "$d"; then
		failed+=("$d")
	fi
done
if ((${#failed[@]})); then
	echo "long: failures in: ${failed[*]}" >&2
	exit 1
fi
echo "long: every long test passed"
