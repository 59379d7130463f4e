#!/bin/bash
# SPDX-License-Identifier: MIT
# Integration test for `fluid serve` and `fluid status` with a real QEMU:
# the accelerator probe succeeds under TCG, the auto decision on this host is
# made with a reason and cached, /v1/health and /v1/status answer, errors
# have the API.md shape, `fluid status` prints the accelerator line, a dead
# server is reported clearly, the state dir is locked, bad configs name the
# line, and SIGTERM shuts down cleanly.
set -u
cd "$(dirname "$0")/../.."
FLUID=$PWD/build/fluid
[ -x "$FLUID" ] || { echo "build/fluid missing"; exit 1; }

T=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT
unset FLUID_STATE_DIR FLUID_ACCEL FLUID_LISTEN FLUID_URL FLUID_TOKEN DATABASE_URL

pass=0 fail=0
ok() { echo "ok   - $1"; pass=$((pass + 1)); }
bad() { echo "FAIL - $1"; fail=$((fail + 1)); }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }

# Waits up to $2 seconds for file $1.
wait_file() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		[ -s "$1" ] && return 0
		sleep 0.1
	done
	return 1
}
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {"d": d}))' "$1"; }
# jtrue EXPR: succeeds when EXPR (over the JSON on stdin as d) is true.
jtrue() { python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if eval(sys.argv[1], {"d": d}) else 1)' "$1"; }

cat >"$T/config.yaml" <<EOF
server:
  listen: 127.0.0.1:0
state_dir: $T/state
accelerator: auto
accelerator_probe_timeout_ms: 3000
hosts:
  - name: web-1
    address: 10.0.0.5
    user: deploy
EOF

# 1. The probe guest itself works under TCG (proves the probe can succeed).
out=$("$FLUID" accel probe --accel tcg --timeout 20000 --config "$T/config.yaml" 2>&1)
check "probe under tcg prints the marker: $out" grep -q '^tcg probe: ok: probe guest finished in [0-9]* ms (stages 123)$' <<<"$out"

# 2. Start the server with accelerator: auto.
start=$SECONDS
"$FLUID" serve --config "$T/config.yaml" >"$T/serve.log" 2>&1 &
pids+=($!)
spid=$!
if ! wait_file "$T/state/serve.json" 60; then
	bad "server started"; cat "$T/serve.log"; exit 1
fi
ok "server started in $((SECONDS - start)) s"
URL=$(json 'd["url"]' <"$T/state/serve.json")

body=$(curl -sS "$URL/v1/health")
check "GET /v1/health -> {\"status\":\"ok\"}" test "$(json 'd' <<<"$body")" = "{'status': 'ok'}"

status=$(curl -sS "$URL/v1/status")
acc=$(json 'd["accelerator"]' <<<"$status")
why=$(json 'd["accelerator_reason"]' <<<"$status")
echo "     status: accelerator=$acc reason=$why"
check "status has version, qemu_version, capacity" \
	jtrue 'd["version"] and d["qemu_version"] and d["capacity"]["max_sandboxes"] > 0' <<<"$status"
check "status reason is non-empty" test -n "$why"
if [ -e /dev/kvm ]; then
	# On the development machines nested KVM guests hang, so this is tcg with the
	# probe's reason; on bare metal the probe succeeds and this is kvm.
	# FLUID_TEST_EXPECT_ACCEL=tcg|kvm pins the expectation.
	if [ "$acc" = tcg ]; then
		check "tcg decision comes from a failed kvm probe" grep -qE '^kvm probe: (no guest output|guest too slow|qemu exited)' <<<"$why"
	else
		check "kvm decision comes from a successful kvm probe" grep -qE '^kvm probe: probe guest finished in [0-9]+ ms$' <<<"$why"
	fi
	if [ -n "${FLUID_TEST_EXPECT_ACCEL:-}" ]; then
		check "decision is $FLUID_TEST_EXPECT_ACCEL as expected" test "$acc" = "$FLUID_TEST_EXPECT_ACCEL"
	fi
else
	check "no /dev/kvm -> tcg" test "$acc" = tcg
	check "reason names /dev/kvm" grep -q '/dev/kvm' <<<"$why"
fi
check "decision cached in the state dir" test -s "$T/state/accel.json"

hosts=$(curl -sS "$URL/v1/hosts")
check "GET /v1/hosts lists the configured host" \
	jtrue 'd["total"] == 1 and d["hosts"][0] == {"name": "web-1", "address": "10.0.0.5", "user": "deploy", "port": 22}' <<<"$hosts"

# 3. fluid status against it.
out=$(FLUID_URL=$URL "$FLUID" status)
echo "$out" | sed 's/^/     /'
check "fluid status prints the accelerator line" grep -qE "^accelerator: $acc \(.+\)" <<<"$out"
check "fluid status line carries the reason" grep -qF "accelerator: $acc ($why)" <<<"$out"
out=$("$FLUID" status --json --url "$URL")
check "fluid status --json is the API document" test "$(json 'd["accelerator"]' <<<"$out")" = "$acc"

# 4. Error shapes.
resp=$(curl -sS -w '\n%{http_code}' "$URL/v1/no-such-thing")
check "unknown path -> 404 JSON error" test "$(tail -1 <<<"$resp")" = 404
check "404 body has error/code/details" \
	jtrue 'd["code"] == 404 and d["error"] and "details" in d' <<<"$(head -1 <<<"$resp")"
resp=$(curl -sS -D "$T/h" -o "$T/b" -w '%{http_code}' -X DELETE "$URL/v1/health")
check "wrong method -> 405" test "$resp" = 405
check "405 has Allow: GET" grep -qi '^Allow: GET' "$T/h"

# 5. A second server on the same state dir is refused.
out=$("$FLUID" serve --config "$T/config.yaml" --listen 127.0.0.1:0 2>&1)
rc=$?
check "second server on the same state dir refused (rc=$rc)" test $rc -ne 0
check "...saying why" grep -q 'another fluid server is using the state dir' <<<"$out"

# 6. SIGTERM: clean exit, serve.json removed.
kill -TERM "$spid"
wait "$spid"
rc=$?
pids=()
check "SIGTERM -> exit 0 (rc=$rc)" test $rc -eq 0
check "serve.json removed on exit" test ! -e "$T/state/serve.json"
check "shutdown logged" grep -q 'stopped' "$T/serve.log"

# 7. No server: fluid status says so and fails.
out=$(FLUID_URL=$URL "$FLUID" status 2>&1)
rc=$?
check "status without a server fails (rc=$rc)" test $rc -ne 0
check "...and says no server is running: $out" grep -q "no fluid server is running at $URL" <<<"$out"

# 8. Restart: the cached decision makes start-up instant.
start_ms=$(date +%s%3N)
"$FLUID" serve --config "$T/config.yaml" >"$T/serve2.log" 2>&1 &
spid=$!
pids+=($spid)
wait_file "$T/state/serve.json" 30 || { bad "restart"; cat "$T/serve2.log"; }
elapsed=$(($(date +%s%3N) - start_ms))
URL=$(json 'd["url"]' <"$T/state/serve.json")
status=$(curl -sS "$URL/v1/status")
check "restart uses the cache (started in ${elapsed} ms)" \
	jtrue 'd["accelerator_detail"]["cached"]' <<<"$status"
check "cached start under 3 s" test "$elapsed" -lt 3000
check "same decision after restart" test "$(json 'd["accelerator"]' <<<"$status")" = "$acc"
kill -TERM "$spid"; wait "$spid"; pids=()

# 9. Overrides: accelerator: tcg skips the probe.
sed 's/^accelerator: auto/accelerator: tcg/' "$T/config.yaml" >"$T/tcg.yaml"
out=$("$FLUID" accel decide --config "$T/tcg.yaml")
check "accelerator: tcg forces tcg: $out" grep -q '^accelerator: tcg (forced by configuration' <<<"$out"
out=$(FLUID_ACCEL=tcg "$FLUID" accel decide --config "$T/config.yaml")
check "FLUID_ACCEL=tcg overrides the file" grep -q 'forced by configuration' <<<"$out"

# 10. Bad configuration: exit non-zero with the line number.
printf 'server:\n  listen: 127.0.0.1:0\n  bogus: 1\n' >"$T/bad.yaml"
out=$("$FLUID" serve --config "$T/bad.yaml" 2>&1)
rc=$?
check "bad config refused (rc=$rc): $out" test $rc -ne 0
check "...with file and line" grep -qF "$T/bad.yaml:3: unknown key 'bogus' in server" <<<"$out"
out=$("$FLUID" serve --config "$T/missing.yaml" 2>&1)
check "missing explicit config refused" grep -q 'cannot open' <<<"$out"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
