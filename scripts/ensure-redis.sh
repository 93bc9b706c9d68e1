#!/usr/bin/env bash
# Makes sure redis-server and redis-cli are on PATH (the tests start their own
# instances from them). On Debian/Ubuntu as root it installs them with apt-get.
set -euo pipefail
if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
	exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	echo "ensure-redis: installing redis-server with apt-get"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
	exit 0
fi
echo "ensure-redis: redis-server is not installed; install it (apt-get install redis-server) or set REDIS_URL" >&2
exit 1
