#!/bin/bash
# SPDX-License-Identifier: MIT
# The web UI end to end (docs/webui.md): a real `fluid serve` (QEMU under
# TCG, the tiny image, a private PostgreSQL from scripts/pg.sh) serving
# webui-dist/, three tokens (admin, reviewer, agent), and the browser tests
# under tests/browser/ driven in headless Debian chromium by playwright-core
# (webui/node_modules). Checks here: the UI and its vendored xterm.js are
# served, GET /v1/whoami tells each token its role; then every browser test
# prints its own ok/FAIL line. Screenshots of each screen (laptop and narrow)
# go to build/test-artifacts/webui/. Closes with "N passed, N failed".
#   FLUID_BROWSER_ONLY=REGEX runs the browser tests whose name matches.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
FLUID=$ROOT/build/fluid
PG=$ROOT/scripts/pg.sh
ART=${FLUID_ARTIFACTS:-$ROOT/build/test-artifacts/webui}

pass=0 fail=0
ok() { echo "ok   - $1"; pass=$((pass + 1)); }
bad() { echo "FAIL - $1"; fail=$((fail + 1)); }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {"d": d}))' "$1"; }
finish() { echo "$pass passed, $fail failed"; [ "$fail" = 0 ]; exit $?; }
need() { bad "$1"; finish; }

[ -x "$FLUID" ] || need "build/fluid exists (make)"
[ -f build/images/tiny/image.json ] || need "build/images/tiny exists (image-build/build-images --only tiny)"
[ -x /usr/bin/chromium ] || need "Debian's chromium is installed (scripts/deps.sh)"
command -v node >/dev/null || need "node is installed (scripts/deps.sh)"
[ -f webui/node_modules/playwright-core/package.json ] || need "webui/node_modules has playwright-core (scripts/webui-deps.sh)"
[ -f webui-dist/vendor/xterm/xterm.js ] || need "webui-dist/vendor/xterm is built (make webui)"

badjs=""
for f in $(find webui-dist/js tests/browser -name '*.js' -o -name '*.mjs' | sort); do
	node --input-type=module --check <"$f" 2>/dev/null || badjs="$badjs $f"
done
check "every UI and test module parses${badjs:+ (not:$badjs)}" test -z "$badjs"

T=$(mktemp -d /tmp/fluid-webui-XXXXXX)
chmod 0755 "$T" # the cluster owner (user fluid when run as root) must reach it
export FLUID_STATE_DIR=$T/state
unset FLUID_CONFIG FLUID_LISTEN FLUID_ACCEL FLUID_URL FLUID_TOKEN FLUID_TOKEN_FILE DATABASE_URL FLUID_IMAGE_DIR
spid=
cleanup() {
	if [ -n "$spid" ]; then
		kill -TERM "$spid" 2>/dev/null
		wait "$spid" 2>/dev/null
	fi
	# VMs outlive the daemon by design: stop the ones this test's server made.
	for p in $(pgrep -f "qemu-system.*$T/" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
	"$PG" stop >/dev/null 2>&1
	# Browsers of this run only (their profile lives under TMPDIR=$T).
	for p in $(pgrep -f "chromium.*$T/" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT

"$PG" start >/dev/null 2>&1 || need "private PostgreSQL starts"
DATABASE_URL=$("$PG" url)
export DATABASE_URL

# A production host that is never reachable (a closed port on loopback):
# applying to it streams ansible's output and ends "failed".
ssh-keygen -q -t ed25519 -N '' -C webui-test -f "$T/prod_key" >/dev/null 2>&1 || need "ssh-keygen makes a key"
echo "[127.0.0.1]:1 $(cut -d' ' -f1-2 "$T/prod_key.pub")" >"$T/prod_known_hosts"

cat >"$T/config.yaml" <<EOF
hosts:
  - name: prod-unreachable
    address: 127.0.0.1
    port: 1
    user: root
    ssh_key: $T/prod_key
    known_hosts: $T/prod_known_hosts
server:
  listen: 127.0.0.1:0
  webui_dir: $ROOT/webui-dist
state_dir: $T/state
accelerator: tcg
images:
  dir: $ROOT/build/images
  default: tiny
  pool_size: 0
EOF

"$FLUID" serve --config "$T/config.yaml" >"$T/serve.log" 2>&1 &
spid=$!
for ((i = 0; i < 600; i++)); do [ -s "$T/state/serve.json" ] && break; sleep 0.1; done
[ -s "$T/state/serve.json" ] || { cat "$T/serve.log"; need "fluid serve started"; }
URL=$(json 'd["url"]' <"$T/state/serve.json")
ok "fluid serve started at $URL"
ADMIN=$(cat "$T/state/admin.token")

code() { curl -sS -o "$T/body" -w '%{http_code}' "$@"; }
check "GET / serves the UI (index.html)" bash -c "[ \"\$(curl -sS -o '$T/index' -w '%{http_code}' '$URL/')\" = 200 ] && grep -q 'js/app.js' '$T/index'"
check "the vendored xterm.js is served as JavaScript" bash -c "curl -sS -o /dev/null -w '%{http_code} %{content_type}' '$URL/vendor/xterm/xterm.js' | grep -q '^200 .*javascript'"
check "ES modules are served as JavaScript" bash -c "curl -sS -o /dev/null -w '%{http_code} %{content_type}' '$URL/js/app.js' | grep -q '^200 .*javascript'"
check "an unknown API path is still the API's 404" test "$(code "$URL/v1/no-such-thing")" = 404

mk_token() {
	curl -sS -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
		-d "{\"role\":\"$1\",\"name\":\"webui test $1\"}" "$URL/v1/tokens" | json 'd["token"]'
}
REVIEWER=$(mk_token reviewer)
AGENT=$(mk_token agent)
check "reviewer and agent tokens created" test -n "$REVIEWER" -a -n "$AGENT"
for r in admin:$ADMIN reviewer:$REVIEWER agent:$AGENT; do
	role=${r%%:*} tok=${r#*:}
	check "GET /v1/whoami says $role" bash -c "curl -sS -H 'Authorization: Bearer $tok' '$URL/v1/whoami' | grep -q '\"role\":\"$role\"'"
done
check "GET /v1/whoami without a token -> 401" test "$(code "$URL/v1/whoami")" = 401

mkdir -p "$ART"
rm -f "$ART"/*.png
export FLUID_URL=$URL FLUID_ADMIN_TOKEN=$ADMIN FLUID_REVIEWER_TOKEN=$REVIEWER FLUID_AGENT_TOKEN=$AGENT FLUID_ARTIFACTS=$ART
# chromium's profile and temporary files under $T, so cleanup finds them.
export TMPDIR=$T HOME=$T
node tests/browser/run.mjs >"$T/browser.log" 2>&1
brc=$?
grep -E '^(ok   - |FAIL - |# )' "$T/browser.log"
bp=$(grep -c '^ok   - ' "$T/browser.log")
bf=$(grep -c '^FAIL - ' "$T/browser.log")
pass=$((pass + bp)) fail=$((fail + bf))
if [ $brc -ne 0 ] && [ "$bf" = 0 ]; then
	bad "browser test runner exited $brc"
	tail -20 "$T/browser.log"
fi
if [ "$bf" != 0 ] || [ $brc -ne 0 ]; then
	echo "# last lines of fluid serve's log:"
	tail -15 "$T/serve.log" | sed 's/^/#   /'
fi
finish
