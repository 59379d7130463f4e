#!/bin/bash
# SPDX-License-Identifier: MIT
# Integration test of GET /v1/sandboxes/{id}/stream (WebSocket) and GET
# /metrics against a real `fluid serve` (accelerator tcg):
#  - a plain GET gets 426 with the API error shape; an unknown sandbox 404;
#  - an event published for a sandbox reaches a connected client within a
#    bound (pushed: the client only waits on its socket), in order, and does
#    not reach a client of another sandbox (publishing through the server's
#    FLUID_TEST_EVENTS hook, no VM needed);
#  - with the tiny image: a command run with POST /v1/sandboxes/{id}/run
#    produces command.start, command.output (stdout and stderr) and
#    command.end frames for that command, and stop/start produce state frames;
#  - /metrics is Prometheus text (every line a comment or `name{labels} value`)
#    and counts the events and HTTP responses;
#  - with token auth (a private PostgreSQL cluster, when initdb exists): no
#    or a bad token is refused with 401 before the handshake, a token in the
#    Authorization header or in the `token` query parameter is accepted.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
FLUID=$ROOT/build/fluid
WS="python3 $ROOT/tests/integration/test-stream-ws.py"
IMAGES=${FLUID_IMAGE_DIR:-$ROOT/build/images}
[ -x "$FLUID" ] || { echo "build/fluid missing"; exit 1; }

T=$(mktemp -d)
chmod 0755 "$T" # the private PostgreSQL cluster's owner must reach it
spid=
DB=
cleanup() {
	[ -n "$spid" ] && kill -TERM "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
	[ -n "$DB" ] && FLUID_STATE_DIR=$T/auth "$ROOT/scripts/pg.sh" stop >/dev/null 2>&1
	# VMs outlive the daemon by design: stop the ones this test's server made.
	for p in $(pgrep -f "qemu-system.*$T/" 2>/dev/null); do kill "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT
unset FLUID_STATE_DIR FLUID_ACCEL FLUID_LISTEN FLUID_URL FLUID_TOKEN DATABASE_URL

pass=0 fail=0
ok() { echo "ok   - $1"; pass=$((pass + 1)); }
bad() { echo "FAIL - $1"; fail=$((fail + 1)); }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }
# wait_open FILE...: until each client has printed its stream.open frame
# (it is subscribed from then on), at most 20 s.
wait_open() {
	local f i
	for f in "$@"; do
		for ((i = 0; i < 200; i++)); do grep -q stream.open "$f" 2>/dev/null && break; sleep 0.1; done
	done
}
jtrue() { python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if eval(sys.argv[1], {"d": d}) else 1)' "$1"; }

cat >"$T/config.yaml" <<EOF
server:
  listen: 127.0.0.1:0
state_dir: $T/state
accelerator: tcg
images:
  dir: $IMAGES
  default: tiny
  pool_size: 0
EOF
FLUID_TEST_EVENTS=1 "$FLUID" serve --config "$T/config.yaml" >"$T/serve.log" 2>&1 &
spid=$!
for ((i = 0; i < 600; i++)); do [ -s "$T/state/serve.json" ] && break; sleep 0.1; done
if [ ! -s "$T/state/serve.json" ]; then
	bad "server started"; tail -20 "$T/serve.log"; exit 1
fi
URL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$T/state/serve.json")
WSURL=ws://${URL#http://}
ok "server started at $URL"

# 1. Not a WebSocket / unknown sandbox.
code=$(curl -sS -o "$T/out" -w '%{http_code}' "$URL/v1/sandboxes/test-a/stream")
check "plain GET of the stream -> 426 with the error shape" \
	test "$code" = 426 -a "$(jtrue 'd["code"] == 426 and "WebSocket" in d["error"] and "details" in d' <"$T/out" && echo y)" = y
out=$($WS "$WSURL/v1/sandboxes/no-such-sandbox/stream" --status-only 2>&1)
check "WebSocket to an unknown sandbox is refused (404): $(head -1 <<<"$out")" grep -q '^HTTP/1.1 404' <<<"$out"

# 2. Pushed delivery, order and per-sandbox filtering (test hook publishes).
$WS "$WSURL/v1/sandboxes/test-a/stream" --expect-type test.third --timeout 10 >"$T/a.out" 2>&1 &
apid=$!
$WS "$WSURL/v1/sandboxes/test-b/stream" --timeout 4 >"$T/b.out" 2>&1 &
bpid=$!
wait_open "$T/a.out" "$T/b.out"
t0=$(date +%s%N)
$WS "$WSURL/v1/sandboxes/test-a/stream" --count 4 --timeout 10 \
	--send '{"publish":{"type":"test.first","data":{"n":1}}}' \
	--send '{"publish":{"type":"test.second","data":{"n":2}}}' \
	--send '{"publish":{"type":"test.third","data":{"n":3}}}' >"$T/pub.out" 2>&1
wait $apid
arc=$?
t1=$(date +%s%N)
ms=$(((t1 - t0) / 1000000))
check "subscriber of test-a got the events pushed (${ms} ms for three, bound 3000 ms)" test $arc -eq 0 -a $ms -lt 3000
python3 - "$T/a.out" >"$T/a.check" 2>&1 <<'EOF'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert lines[0].startswith("HTTP/1.1 101"), lines[0]
evs = [json.loads(l) for l in lines[1:]]
assert evs[0]["type"] == "stream.open" and evs[0]["sandbox_id"] == "test-a", evs[0]
got = [e for e in evs[1:] if e["type"].startswith("test.")]
assert [e["type"] for e in got] == ["test.first", "test.second", "test.third"], got
assert [e["data"]["n"] for e in got] == [1, 2, 3]
seqs = [e["seq"] for e in got]
assert seqs == sorted(seqs) and len(set(seqs)) == 3, seqs
for e in got:
    assert e["sandbox_id"] == "test-a" and e["at"].endswith("Z"), e
print("ok")
EOF
check "events arrive in publish order with seq, sandbox_id, at, data: $(tail -1 "$T/a.check")" grep -qx ok "$T/a.check"
wait $bpid
check "a client of another sandbox sees none of them" \
	test "$(grep -c '"test\.' "$T/b.out")" = 0 -a "$(grep -c stream.open "$T/b.out")" = 1

# 3. /metrics is Prometheus text and counts what happened.
code=$(curl -sS -o "$T/metrics" -w '%{http_code} %{content_type}' "$URL/metrics")
check "GET /metrics -> 200 text/plain ($code)" grep -q '^200 text/plain' <<<"$code"
python3 - "$T/metrics" >"$T/metrics.check" 2>&1 <<'EOF'
import re, sys
sample = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*"(,[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*")*\})? [-+]?([0-9.]+([eE][-+]?[0-9]+)?|NaN|[+-]Inf)$')
vals, typed = {}, set()
for i, line in enumerate(open(sys.argv[1]).read().split("\n")[:-1], 1):
    if line.startswith("# HELP ") or line.startswith("# TYPE "):
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
        continue
    if line.startswith("#"):
        continue
    assert sample.match(line), f"line {i} is not a sample: {line!r}"
    name = re.split(r"[{ ]", line)[0]
    assert name in typed, f"line {i}: {name} has no # TYPE"
    vals[line.rsplit(" ", 1)[0]] = float(line.rsplit(" ", 1)[1])
assert vals["fluid_events_published_total"] >= 3, vals
assert vals["fluid_uptime_seconds"] > 0
assert any(k.startswith("fluid_http_responses_total{code=\"426\"}") for k in vals), vals
assert "fluid_sandboxes{state=\"RUNNING\"}" in vals
assert "fluid_warm_pool_size" in vals
assert "fluid_standbys" in vals
print("ok", len(vals), "samples")
EOF
check "every /metrics line is a comment or name{labels} value, and the counters move: $(tail -1 "$T/metrics.check")" \
	grep -q '^ok' "$T/metrics.check"

# 4. Real command and state events (tiny image, real QEMU under TCG).
if [ ! -f "$IMAGES/tiny/image.json" ]; then
	echo "skip - no tiny image under $IMAGES (make images): command events not checked"
else
	code=$(curl -sS -m 600 -o "$T/create.out" -w '%{http_code}' -X POST "$URL/v1/sandboxes" \
		-d '{"base_image":"tiny","agent_id":"test-stream"}')
	SB=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sandbox"]["id"])' "$T/create.out" 2>/dev/null)
	if [ "$code" != 201 ] || [ -z "$SB" ]; then
		bad "create a tiny sandbox: $code $(head -c 300 "$T/create.out")"
	else
		ok "created sandbox $SB"
		$WS "$WSURL/v1/sandboxes/$SB/stream" --expect-type command.end --timeout 60 >"$T/cmd.out" 2>&1 &
		wpid=$!
		wait_open "$T/cmd.out"
		curl -sS -m 60 -o "$T/run.out" -X POST "$URL/v1/sandboxes/$SB/run" \
			-d '{"command":"echo out-line; echo err-line >&2; exit 3"}'
		wait $wpid
		check "the stream delivered command.end" test $? -eq 0
		python3 - "$T/cmd.out" "$T/run.out" "$SB" >"$T/cmd.check" 2>&1 <<'EOF'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
run = json.load(open(sys.argv[2]))["command"]
evs = [json.loads(l) for l in lines[1:]]
assert evs[0]["type"] == "stream.open" and evs[0]["data"]["sandbox"]["state"] == "RUNNING", evs[0]
mine = [e for e in evs if (e.get("data") or {}).get("command_id") == run["id"]]
types = [e["type"] for e in mine]
assert types and types[0] == "command.start" and types[-1] == "command.end", (types, evs)
assert mine[0]["data"]["command"] == "echo out-line; echo err-line >&2; exit 3"
out = "".join(e["data"]["data"] for e in mine if e["type"] == "command.output" and e["data"]["stream"] == "stdout")
err = "".join(e["data"]["data"] for e in mine if e["type"] == "command.output" and e["data"]["stream"] == "stderr")
assert out == "out-line\n" and err == "err-line\n", (out, err)
assert mine[-1]["data"]["exit_code"] == 3 == run["exit_code"], mine[-1]
assert all(e["sandbox_id"] == sys.argv[3] for e in evs)
print("ok")
EOF
		check "command.start, command.output (stdout, stderr), command.end for the run: $(tail -1 "$T/cmd.check")" \
			grep -qx ok "$T/cmd.check"

		$WS "$WSURL/v1/sandboxes/$SB/stream" --count 3 --timeout 60 >"$T/state.out" 2>&1 &
		wpid=$!
		wait_open "$T/state.out"
		curl -sS -m 60 -o /dev/null -X POST "$URL/v1/sandboxes/$SB/stop"
		curl -sS -m 60 -o /dev/null -X POST "$URL/v1/sandboxes/$SB/start"
		wait $wpid
		check "stop and start are pushed as state frames" \
			test "$(grep -c '"type":"state"' "$T/state.out")" -ge 2
		code=$(curl -sS -m 60 -o /dev/null -w '%{http_code}' -X DELETE "$URL/v1/sandboxes/$SB")
		check "sandbox destroyed ($code)" test "$code" = 200
	fi
fi

# 5. Token auth: header or query parameter, refusals before the handshake.
if [ "${FLUID_TEST_STREAM_DB:-1}" = 0 ] || ! { command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }; then
	echo "skip - no PostgreSQL here: stream token auth not checked"
else
	kill -TERM "$spid" 2>/dev/null; wait "$spid" 2>/dev/null; spid=
	sed "s|state_dir: .*|state_dir: $T/auth|" "$T/config.yaml" >"$T/auth.yaml"
	if FLUID_STATE_DIR=$T/auth "$ROOT/scripts/pg.sh" start >"$T/pg.log" 2>&1; then
		DB=$(FLUID_STATE_DIR=$T/auth "$ROOT/scripts/pg.sh" url)
		DATABASE_URL=$DB FLUID_TEST_EVENTS=1 "$FLUID" serve --config "$T/auth.yaml" >"$T/auth.log" 2>&1 &
		spid=$!
		for ((i = 0; i < 600; i++)); do [ -s "$T/auth/serve.json" ] && break; sleep 0.1; done
		URL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$T/auth/serve.json")
		WSURL=ws://${URL#http://}
		TOKEN=$(cat "$T/auth/admin.token" 2>/dev/null)
		check "server with token auth started" test -n "$TOKEN"
		out=$($WS "$WSURL/v1/sandboxes/test-a/stream" --status-only 2>&1)
		check "no token -> 401 before the handshake ($(head -1 <<<"$out"))" \
			grep -q '^HTTP/1.1 401' <<<"$out"
		check "  with the error shape" grep -q '"code":401' <<<"$out"
		out=$($WS "$WSURL/v1/sandboxes/test-a/stream?token=nope" --status-only 2>&1)
		check "bad token in the query -> 401" grep -q '^HTTP/1.1 401' <<<"$out"
		out=$($WS "$WSURL/v1/sandboxes/test-a/stream" --header "Authorization: Bearer nope" --status-only 2>&1)
		check "bad token in the header -> 401" grep -q '^HTTP/1.1 401' <<<"$out"
		out=$($WS "$WSURL/v1/sandboxes/test-a/stream" --header "Authorization: Bearer $TOKEN" --count 1 --timeout 10 2>&1)
		check "token in the Authorization header -> stream opens" grep -q '"type":"stream.open"' <<<"$out"
		out=$($WS "$WSURL/v1/sandboxes/test-a/stream?token=$TOKEN" --count 1 --timeout 10 2>&1)
		check "token in the query parameter (browsers) -> stream opens" grep -q '"type":"stream.open"' <<<"$out"
		code=$(curl -sS -o /dev/null -w '%{http_code}' "$URL/metrics")
		check "/metrics without a token -> 401" test "$code" = 401
		code=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$URL/metrics")
		check "/metrics with a token -> 200" test "$code" = 200
	else
		bad "private PostgreSQL cluster started"; tail -5 "$T/pg.log"
	fi
fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
