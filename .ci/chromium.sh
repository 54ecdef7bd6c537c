#!/usr/bin/env bash
# Installs Debian's chromium package for the console's headless browser test
# (TestConsoleInChromium in app_console_test.go), unless it is already there:
#
#   bash .ci/chromium.sh && export CONCORD_TEST_CHROMIUM=/usr/bin/chromium
#
# Runs as root on Debian (through sudo otherwise). Only Debian's package is
# used: the test drives it with chromedp and downloads no browser build.
set -euo pipefail

log() { echo "chromium.sh: $*" >&2; }

if [[ -x /usr/bin/chromium ]]; then
	exit 0
fi
sudo=()
if [[ $(id -u) != 0 ]]; then
	sudo=(sudo)
fi
log "installing chromium"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq >&2
"${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium >&2
/usr/bin/chromium --version >&2
