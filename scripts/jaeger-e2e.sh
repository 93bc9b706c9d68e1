#!/usr/bin/env bash
# End-to-end telemetry check: builds Jaeger (from the nested tools module) and
# the example app, then runs scripts/tracecheck, which starts Jaeger on
# 127.0.0.1, runs the app against it, drives traffic that trips every inbound
# layer and the main outbound ones, and fails unless Jaeger's query API has
# spans tagged with each expected resilience.layer and error.type.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p tools/bin
echo "jaeger-e2e: building Jaeger (the first build takes several minutes)"
(cd tools && go build -o bin/jaeger github.com/jaegertracing/jaeger/cmd/jaeger)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/ginapp" ./examples/ginapp
go run ./scripts/tracecheck -jaeger tools/bin/jaeger -config scripts/jaeger.yaml -app "$work/ginapp" -logs "$work" || {
	echo "jaeger-e2e: logs follow"; tail -n 50 "$work"/*.log; exit 1; }
