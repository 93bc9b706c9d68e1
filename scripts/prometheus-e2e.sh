#!/usr/bin/env bash
# End-to-end check of monitoring/: builds the example app and scripts/promcheck,
# which runs the app (127.0.0.1 only) under an overload and a real Prometheus
# (127.0.0.1 only, config and storage in a temporary directory) scraping it
# every second with monitoring/sluice-alerts.yaml loaded, and fails unless
# every query of monitoring/sluice-dashboard.json returns data and the
# SluiceOutboundOverload alert fires. It takes 15-25 seconds and stops by
# itself within 2 minutes; every process it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-prometheus.sh
work=$(mktemp -d)
pid=
cleanup() {
	# promcheck stops the app and Prometheus; they also die with it (Pdeathsig).
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
go build -o "$work/ginapp" ./examples/ginapp
go build -o "$work/promcheck" ./scripts/promcheck
timeout 100s "$work/promcheck" -app "$work/ginapp" -work "$work" &
pid=$!
rc=0
wait "$pid" || rc=$?
pid=
if [ "$rc" != 0 ]; then
	echo "prometheus-e2e: FAIL (exit $rc); logs follow"
	tail -n 30 "$work"/*.log
	exit 1
fi
