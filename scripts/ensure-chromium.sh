#!/usr/bin/env bash
# Makes sure chromium is on PATH (the status page's browser test,
# TestStatusPageInBrowser in examples/ginapp, loads the page in headless
# Chromium). On Debian/Ubuntu as root it installs Debian's chromium package.
set -euo pipefail
if command -v chromium >/dev/null; then
	exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	echo "ensure-chromium: installing chromium with apt-get"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
	exit 0
fi
echo "ensure-chromium: chromium is not installed; install it (apt-get install chromium)" >&2
exit 1
