#!/usr/bin/env bash
# Runs the test suite N times while busy loops keep every core busy, so that a
# test that depends on how fast this machine is fails here and not in CI. It
# stops at the first failing run and prints that run's failures.
#
#   scripts/stress.sh                      # 5 runs of go test -race -count=1 ./...
#   scripts/stress.sh -n 2 ./internal/quota/ ./internal/sharedcb/
#   LOAD=4 scripts/stress.sh               # 4 busy loops instead of one per core
#
# Exit status: 0 when every run passed, 1 at the first failing run, 2 on a
# usage error. The busy loops are killed however the script ends.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: $0 [-n runs] [package...]" >&2; }

runs=5
while getopts "n:h" opt; do
	case $opt in
	n) runs=$OPTARG ;;
	h) usage; exit 0 ;;
	*) usage; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
if ! [[ $runs =~ ^[1-9][0-9]*$ ]]; then
	echo "stress: -n wants a positive number, got '$runs'" >&2
	exit 2
fi
pkgs=("$@")
if [ ${#pkgs[@]} -eq 0 ]; then
	pkgs=(./...)
fi
load=${LOAD:-$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)}

# Each background job gets its own process group (job control on), so that
# cleanup ends a go test run together with its test binaries and the
# processes they start.
set -m
busy=()
gotest=
logdir=$(mktemp -d "${TMPDIR:-/tmp}/sluice-stress.XXXXXX")
cleanup() {
	for pid in "${busy[@]}" $gotest; do
		kill -TERM -- "-$pid" 2>/dev/null || true
	done
	for pid in "${busy[@]}" $gotest; do
		wait "$pid" 2>/dev/null || true
	done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Build first, unloaded and once: the runs then measure the tests, not the compiler.
go test -race -count=1 -run '^$' "${pkgs[@]}" >/dev/null

for ((i = 0; i < load; i++)); do
	(while :; do :; done) &
	busy+=($!)
done
echo "stress: $runs runs of go test -race -count=1 ${pkgs[*]} with $load busy loops (logs in $logdir)"

total=$SECONDS
for ((run = 1; run <= runs; run++)); do
	log="$logdir/run$run.log"
	t0=$SECONDS
	# In the background, so that a signal ends the script at once.
	go test -race -count=1 "${pkgs[@]}" >"$log" 2>&1 &
	gotest=$!
	if wait "$gotest"; then
		gotest=
		printf 'stress: run %d/%d ok in %ds\n' "$run" "$runs" $((SECONDS - t0))
		continue
	fi
	gotest=
	printf 'stress: run %d/%d FAILED after %ds; its failures (full log: %s):\n' "$run" "$runs" $((SECONDS - t0)) "$log"
	# Without -v, go test prints output only for what failed.
	grep -v -E '^(ok|\?) ' "$log" || true
	exit 1
done
printf 'stress: all %d runs passed in %ds\n' "$runs" $((SECONDS - total))
rm -rf "$logdir"
