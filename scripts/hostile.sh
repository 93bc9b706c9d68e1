#!/usr/bin/env bash
# Runs the hostile-peer suite: exactly the tests that docs/hostile-peers.md
# names, package by package, with -race. TestHostileSuiteIndex (root package)
# checks that every test named there exists.
#
#   scripts/hostile.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# package -> "TestA|TestB" from the index's "`TestA`, `TestB` (pkg)" cells.
declare -A runs
while IFS=$'\t' read -r pkg tests; do
	runs[$pkg]="${runs[$pkg]:+${runs[$pkg]}|}$tests"
done < <(grep '^|' docs/hostile-peers.md |
	grep -oE '(`Test[A-Za-z0-9_]+`(, )?)+ \([a-z0-9_/]+\)' |
	sed -E 's/`//g; s/, /|/g; s/ \(([a-z0-9_/]+)\)$/\t\1/' |
	awk -F'\t' '{print $2 "\t" $1}')

if ((${#runs[@]} == 0)); then
	echo "hostile: no tests found in docs/hostile-peers.md" >&2
	exit 1
fi
args=()
pkgs=()
for pkg in "${!runs[@]}"; do pkgs+=("$pkg"); done
IFS=$'\n' pkgs=($(sort <<<"${pkgs[*]}")); unset IFS
failed=()
for pkg in "${pkgs[@]}"; do
	echo "== ./$pkg: ${runs[$pkg]}"
	# SLUICE_LONG=1: the index names a few long real-time tests too (a
	# Redis Cluster failover under load), which the default suite skips.
	if ! SLUICE_LONG=1 go test -race -count=1 -run "^(${runs[$pkg]})\$" "./$pkg"; then
		failed+=("$pkg")
	fi
done
if ((${#failed[@]})); then
	echo "hostile: failures in: ${failed[*]}" >&2
	exit 1
fi
echo "hostile: every bound held"
