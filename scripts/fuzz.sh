#!/usr/bin/env bash
# Runs each fuzz target briefly, one per go test invocation (Go fuzzes one
# target at a time), and fails if any finds a crasher. A crasher is written to
# the package's testdata/fuzz/<Target>/ directory; commit it with the fix so
# it stays a regression seed.
#
#   scripts/fuzz.sh            # 10s per target
#   FUZZTIME=60s scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime="${FUZZTIME:-10s}"
targets=(
	"FuzzRetryAfter ./internal/httpx/"
	"FuzzRedisKey ./internal/gcra/"
	"FuzzKey ./internal/quota/"
	"FuzzCooldownFromResponse ./internal/quota/"
	"FuzzKeyFromHeader ./middleware/"
	"FuzzChatInput ./examples/ginapp/"
)

failed=()
for t in "${targets[@]}"; do
	read -r name pkg <<<"$t"
	echo "== $name ($pkg, $fuzztime)"
	if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg"; then
		failed+=("$name")
	fi
done

if ((${#failed[@]})); then
	echo "fuzz: crashers found by: ${failed[*]}" >&2
	exit 1
fi
echo "fuzz: no crashers"
