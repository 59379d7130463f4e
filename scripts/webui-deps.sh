#!/bin/bash
# SPDX-License-Identifier: MIT
# Installs the web UI's npm packages (webui/package.json, pinned by
# webui/package-lock.json) into webui/node_modules: xterm.js for the
# terminal (vendored into webui-dist/vendor/ by `make webui`) and
# playwright-core for the browser tests (which drive Debian's chromium).
# Node.js and npm come from Debian (scripts/deps.sh installs them; this
# script does too when they are missing). Idempotent: nothing is done when
# node_modules matches the lock file.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT/webui"

if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
	if [ "$(id -u)" != 0 ]; then
		echo "webui-deps: node and npm are missing: install the Debian packages nodejs and npm" >&2
		exit 1
	fi
	echo "webui-deps: installing nodejs npm" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

stamp=node_modules/.package-lock.json
if [ -f "$stamp" ] && [ "$stamp" -nt package-lock.json ] && [ "$stamp" -nt package.json ]; then
	exit 0
fi
echo "webui-deps: npm ci (webui/)" >&2
npm ci --no-audit --no-fund --loglevel=error >&2
touch "$stamp"
