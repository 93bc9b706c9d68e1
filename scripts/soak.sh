#!/usr/bin/env bash
# Runs the soak test: the example app for about 60s at twice its vendor's
# capacity, with Redis killed and restarted twice, checking that goroutines
# and heap stay flat and every answer is documented. It prints the samples as
# a table. Needs redis-server on the PATH (scripts/ensure-redis.sh).
#
#   scripts/soak.sh
#   SLUICE_SOAK_DURATION=5m scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SLUICE_SOAK=1 go test -race -count=1 -timeout 15m -run '^TestSoak$' -v ./examples/ginapp/
