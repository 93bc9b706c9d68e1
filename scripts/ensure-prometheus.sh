#!/usr/bin/env bash
# Makes sure prometheus and promtool are on PATH (the alert rule tests and
# scripts/prometheus-e2e.sh run them). On Debian/Ubuntu as root it installs
# Debian's prometheus package, which brings both (on a host with systemd the
# package also enables its prometheus service; the e2e check runs its own).
set -euo pipefail
if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
	exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	echo "ensure-prometheus: installing prometheus (and promtool) with apt-get"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
	exit 0
fi
echo "ensure-prometheus: prometheus is not installed; install it (apt-get install prometheus)" >&2
exit 1
