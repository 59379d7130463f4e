#!/bin/bash
# SPDX-License-Identifier: MIT
# Integration test of the sandbox's tmux (docs/terminal.md) against a real
# `fluid serve` with the tiny image under TCG:
#  - POST /api/v1/tmux/panes/send-keys then /read shows the output of echo
#    (the default session "fluid" is made on demand); a trailing ';' in the
#    keys reaches the shell (tmux would take it as a command separator);
#  - GET /v1/sandboxes/{id}/tmux/sessions lists sessions and panes; POST
#    creates a second session (409 for a duplicate), which send-keys reaches;
#  - bad pane ids and session names are 400, an unknown sandbox or pane 404;
#  - with token auth (a private PostgreSQL cluster): the terminal and the
#    REST calls refuse no or a bad token (401), an agent token works, in
#    the query (browsers) or the Authorization header;
#  - terminal WebSocket: a plain GET is 426, bad query 400, unknown sandbox
#    404; a watch-mode terminal sees text typed with send-keys (latency
#    printed) and refuses input; a control-mode terminal typing a command
#    sees its output; a resize reaches tmux (client and window size in the
#    guest); after the clients disconnect no tmux client is left in the
#    guest; killing the session ends the terminal with an exit frame.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
FLUID=$ROOT/build/fluid
WS="python3 $ROOT/tests/integration/test-tmux-ws.py"
IMAGES=${FLUID_IMAGE_DIR:-$ROOT/build/images}
[ -x "$FLUID" ] || { echo "build/fluid missing"; exit 1; }
[ -f "$IMAGES/tiny/image.json" ] || { echo "no tiny image under $IMAGES (image-build/build-images --only tiny)"; exit 1; }

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
jq_() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {"d": d}))' "$1"; }
jtrue() { python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if eval(sys.argv[1], {"d": d}) else 1)' "$1"; }
# post PATH JSON: prints the body, then the status on the last line
post() { curl -sS -m 60 -w '\n%{http_code}' -X POST "$URL$1" -d "$2"; }
status_of() { tail -1 <<<"$1"; }
body_of() { sed '$d' <<<"$1"; }
# guest SHELL-COMMAND: its stdout (through POST /run, not through tmux)
guest() {
	curl -sS -m 60 -X POST "$URL/v1/sandboxes/$SB/run" -d "$(python3 -c 'import json,sys; print(json.dumps({"command": sys.argv[1]}))' "$1")" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["command"]["stdout"], end="")'
}
# read_until TEXT [PANE]: reads the pane until TEXT shows (10 s)
read_until() {
	local i out pane=${2:+,\"pane_id\":\"$2\"}
	for ((i = 0; i < 50; i++)); do
		out=$(post /api/v1/tmux/panes/read "{\"sandbox_id\":\"$SB\"$pane}")
		grep -qF -- "$1" <<<"$out" && { body_of "$out"; return 0; }
		sleep 0.2
	done
	body_of "$out"
	return 1
}

cat >"$T/config.yaml" <<EOF
server:
  listen: 127.0.0.1:0
  threads: 8
state_dir: $T/state
accelerator: tcg
images:
  dir: $IMAGES
  default: tiny
  pool_size: 0
EOF
"$FLUID" serve --config "$T/config.yaml" >"$T/serve.log" 2>&1 &
spid=$!
for ((i = 0; i < 600; i++)); do [ -s "$T/state/serve.json" ] && break; sleep 0.1; done
if [ ! -s "$T/state/serve.json" ]; then
	bad "server started"; tail -20 "$T/serve.log"; exit 1
fi
URL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$T/state/serve.json")
WSURL=ws://${URL#http://}
ok "server started at $URL"

out=$(post /v1/sandboxes '{"base_image":"tiny","agent_id":"test-tmux"}')
SB=$(body_of "$out" | jq_ 'd["sandbox"]["id"]' 2>/dev/null)
if [ "$(status_of "$out")" != 201 ] || [ -z "$SB" ]; then
	bad "create a tiny sandbox: $(head -c 300 <<<"$out")"; tail -20 "$T/serve.log"
	echo "$pass passed, $fail failed"; exit 1
fi
ok "created sandbox $SB"

# 1. send-keys + read, the default session made on demand.
out=$(post /api/v1/tmux/panes/send-keys "{\"sandbox_id\":\"$SB\",\"keys\":\"echo hello-\$((6*7))\",\"enter\":true}")
check "send-keys to the default session -> 200 {ok, pane_id} ($(tr '\n' ' ' <<<"$out"))" \
	test "$(status_of "$out")" = 200 -a "$(body_of "$out" | jtrue 'd["ok"] is True and d["pane_id"].startswith("%")' && echo y)" = y
PANE=$(body_of "$out" | jq_ 'd["pane_id"]' 2>/dev/null)
out=$(read_until hello-42)
check "read shows the echo's output" grep -q '^hello-42$' <<<"$(jq_ 'd["content"]' <<<"$out")"
check "  and names the pane ($PANE)" test "$(jq_ 'd["pane_id"]' <<<"$out")" = "$PANE"
post /api/v1/tmux/panes/send-keys "{\"sandbox_id\":\"$SB\",\"keys\":\"echo semi-\$((1+1));\",\"enter\":true}" >/dev/null
out=$(read_until semi-2)
check "a trailing ';' in keys is typed, not a tmux separator" \
	grep -qF 'echo semi-$((1+1));' <<<"$(jq_ 'd["content"]' <<<"$out")"
post /api/v1/tmux/panes/send-keys "{\"sandbox_id\":\"$SB\",\"pane_id\":\"fluid:0.0\",\"keys\":\"printf 'k-%s\\\\n' 9\"}" >/dev/null
out=$(post /api/v1/tmux/panes/send-keys "{\"sandbox_id\":\"$SB\",\"pane_id\":\"$PANE\",\"keys\":\"Enter\",\"literal\":false}")
check "key names with literal:false (Enter) -> 200" test "$(status_of "$out")" = 200
read_until k-9 >/dev/null
check "  the command typed with pane_id SESSION:W.P ran" test $? = 0
out=$(post /api/v1/tmux/panes/read "{\"sandbox_id\":\"$SB\",\"lines\":2000}")
check "read with lines (scrollback) -> 200" test "$(status_of "$out")" = 200

# 2. sessions: list, create, duplicate, reach the new one.
out=$(curl -sS -m 60 -w '\n%{http_code}' "$URL/v1/sandboxes/$SB/tmux/sessions")
check "list sessions -> fluid with its pane ($(body_of "$out" | head -c 300))" \
	test "$(status_of "$out")" = 200 -a "$(body_of "$out" | jtrue '[s for s in d["sessions"] if s["name"] == "fluid" and s["windows"] == 1 and s["created_at"].endswith("Z") and s["panes"][0]["pane_id"] == "'"$PANE"'" and s["panes"][0]["width"] == 200 and s["panes"][0]["height"] == 50 and s["panes"][0]["active"] is True and s["panes"][0]["session"] == "fluid"]' && echo y)" = y
out=$(post "/v1/sandboxes/$SB/tmux/sessions" '{"name":"second","command":["sh"]}')
check "create session 'second' -> 201 {session} ($(body_of "$out" | head -c 200))" \
	test "$(status_of "$out")" = 201 -a "$(body_of "$out" | jtrue 'd["session"]["name"] == "second" and len(d["session"]["panes"]) == 1' && echo y)" = y
out=$(post "/v1/sandboxes/$SB/tmux/sessions" '{"name":"second"}')
check "a duplicate session name -> 409" test "$(status_of "$out")" = 409
out=$(curl -sS -m 60 "$URL/v1/sandboxes/$SB/tmux/sessions")
check "the listing has both sessions" jtrue 'sorted(s["name"] for s in d["sessions"]) == ["fluid", "second"]' <<<"$out"
post /api/v1/tmux/panes/send-keys "{\"sandbox_id\":\"$SB\",\"pane_id\":\"second\",\"keys\":\"echo in-second\",\"enter\":true}" >/dev/null
read_until in-second second >/dev/null
check "send-keys/read reach the second session by name" test $? = 0
out=$(post /api/v1/tmux/panes/read "{\"sandbox_id\":\"$SB\"}")
check "  and the default pane did not get them" test "$(grep -c in-second <<<"$out")" = 0

# 3. refusals.
for p in 'fluid;kill-server' '%x' '%' 'fluid:0.0.0' 'a b' '=fluid' 'fluid:' '../x' "$(printf 'x%.0s' {1..40})"; do
	out=$(post /api/v1/tmux/panes/send-keys "$(python3 -c 'import json,sys; print(json.dumps({"sandbox_id": sys.argv[1], "pane_id": sys.argv[2], "keys": "x"}))' "$SB" "$p")")
	check "pane_id '$p' -> 400" test "$(status_of "$out")" = 400
done
for n in 'bad name' 'x;y' '' "$(printf 'n%.0s' {1..33})"; do
	out=$(post "/v1/sandboxes/$SB/tmux/sessions" "{\"name\":\"$n\"}")
	check "session name '$n' -> 400" test "$(status_of "$out")" = 400
done
out=$(post /api/v1/tmux/panes/send-keys "{\"sandbox_id\":\"$SB\",\"keys\":\"x\",\"extra\":1}")
check "an unknown field -> 400" test "$(status_of "$out")" = 400
out=$(post /api/v1/tmux/panes/read "{\"sandbox_id\":\"$SB\",\"lines\":100001}")
check "lines over the cap -> 400" test "$(status_of "$out")" = 400
out=$(post /api/v1/tmux/panes/read "{\"sandbox_id\":\"$SB\",\"pane_id\":\"%999\"}")
check "an unknown pane -> 404" test "$(status_of "$out")" = 404
out=$(post /api/v1/tmux/panes/read "{\"sandbox_id\":\"$SB\",\"pane_id\":\"nosuch:0\"}")
check "an unknown session -> 404 (not made on demand)" test "$(status_of "$out")" = 404
out=$(post /api/v1/tmux/panes/send-keys '{"sandbox_id":"no-such-sandbox","keys":"x"}')
check "send-keys to an unknown sandbox -> 404" test "$(status_of "$out")" = 404
out=$(post /api/v1/tmux/panes/read '{"sandbox_id":"no-such-sandbox"}')
check "read of an unknown sandbox -> 404" test "$(status_of "$out")" = 404
code=$(curl -sS -m 60 -o /dev/null -w '%{http_code}' "$URL/v1/sandboxes/no-such-sandbox/tmux/sessions")
check "sessions of an unknown sandbox -> 404" test "$code" = 404

# 4. Terminal WebSocket refusals.
code=$(curl -sS -o "$T/out" -w '%{http_code}' "$URL/v1/sandboxes/$SB/terminal")
check "plain GET of the terminal -> 426 with the error shape" \
	test "$code" = 426 -a "$(jtrue 'd["code"] == 426 and "WebSocket" in d["error"]' <"$T/out" && echo y)" = y
out=$($WS "$WSURL/v1/sandboxes/no-such-sandbox/terminal" --status-only 2>&1)
check "terminal of an unknown sandbox -> 404 ($(head -1 <<<"$out"))" grep -q '^HTTP/1.1 404' <<<"$out"
for q in 'mode=steal' 'session=a%3Bb' 'cols=0' 'rows=x' 'cols=100000'; do
	out=$($WS "$WSURL/v1/sandboxes/$SB/terminal?$q" --status-only 2>&1)
	check "terminal ?$q -> 400" grep -q '^HTTP/1.1 400' <<<"$out"
done

# 5. Watch mode: send-keys typed by the agent appear live; input refused.
$WS "$WSURL/v1/sandboxes/$SB/terminal?mode=watch&cols=100&rows=30" --timeout 20 \
	"post:$URL/api/v1/tmux/panes/send-keys|{\"sandbox_id\":\"$SB\",\"keys\":\"echo watched-\$((40+2))\",\"enter\":true}" \
	"expect:watched-42" 'send:{"type":"input","data":"echo typed-in-watch\r"}' 'frame:error' close >"$T/watch.out" 2>&1
wrc=$?
cat "$T/watch.out" | sed 's/^/    /' | head -20
check "watch terminal: ready frame with session and mode" grep -q '"type": "ready".*"session": "fluid", "mode": "watch"' "$T/watch.out"
check "watch terminal sees the text typed by send-keys ($(grep -o 'after [0-9]* ms' "$T/watch.out"))" \
	test $wrc = 0 -a "$(grep -c '^SEEN watched-42' "$T/watch.out")" = 1
check "watch terminal refuses input with a 403 error frame" grep -q '"type": "error", "code": 403' "$T/watch.out"
out=$(read_until watched-42)
check "  and the refused input never reached the pane" test "$(grep -c typed-in-watch <<<"$out")" = 0

# 6. Control mode: type a command, see its output; resize reaches tmux.
$WS "$WSURL/v1/sandboxes/$SB/terminal?mode=control&cols=90&rows=20" --timeout 20 mark \
	'send:{"type":"input","data":"echo ctl-$((5*5))\r"}' 'expect:ctl-25' \
	'send:{"type":"resize","cols":120,"rows":40}' 'sleep:2' \
	"post:$URL/v1/sandboxes/$SB/run|{\"command\":\"tmux list-clients -F 'client=#{client_width}x#{client_height}' >/tmp/clients; tmux display -p -t =fluid: 'window=#{window_width}x#{window_height}' >>/tmp/clients\"}" \
	close >"$T/control.out" 2>&1
crc=$?
sed 's/^/    /' "$T/control.out" | grep -v '^    POST' | head -20
check "control terminal: typing a command shows its output ($(grep -o 'after [0-9]* ms' "$T/control.out"))" \
	test $crc = 0 -a "$(grep -c '^SEEN ctl-25' "$T/control.out")" = 1
sizes=$(guest 'cat /tmp/clients')
check "resize to 120x40 reaches tmux ($(tr '\n' ' ' <<<"$sizes"))" \
	test "$(grep -c '^client=120x40$' <<<"$sizes")" = 1 -a "$(grep -c '^window=120x39$' <<<"$sizes")" = 1

# 7. Disconnects leave no tmux client behind.
left=x
for ((i = 0; i < 50; i++)); do
	left=$(guest 'tmux list-clients | wc -l')
	[ "$left" = 0 ] && break
	sleep 0.2
done
check "after the terminals closed, no tmux client is left in the guest (list-clients: $left)" test "$left" = 0
# a client that vanishes without a close frame
$WS "$WSURL/v1/sandboxes/$SB/terminal?mode=control" --timeout 20 'sleep:30' >"$T/kill.out" 2>&1 &
kpid=$!
for ((i = 0; i < 100; i++)); do grep -q '"type": "ready"' "$T/kill.out" && break; sleep 0.1; done
n=$(guest 'tmux list-clients | wc -l')
kill -9 $kpid 2>/dev/null; wait $kpid 2>/dev/null
left=x
for ((i = 0; i < 50; i++)); do
	left=$(guest 'tmux list-clients | wc -l')
	[ "$left" = 0 ] && break
	sleep 0.2
done
check "a client killed mid-session ($n tmux client while connected) leaves none ($left)" test "$n" = 1 -a "$left" = 0

# Each terminal holds a worker: at most threads/4 (here 2) at once.
$WS "$WSURL/v1/sandboxes/$SB/terminal" --timeout 30 'sleep:30' >"$T/t1.out" 2>&1 &
t1=$!
$WS "$WSURL/v1/sandboxes/$SB/terminal" --timeout 30 'sleep:30' >"$T/t2.out" 2>&1 &
t2=$!
for ((i = 0; i < 200; i++)); do grep -q '"type": "ready"' "$T/t1.out" && grep -q '"type": "ready"' "$T/t2.out" && break; sleep 0.1; done
out=$($WS "$WSURL/v1/sandboxes/$SB/terminal" --status-only 2>&1)
check "a third terminal with server.threads 8 -> 503 ($(head -1 <<<"$out"))" grep -q '^HTTP/1.1 503' <<<"$out"
code=$(curl -sS -m 60 -o /dev/null -w '%{http_code}' "$URL/v1/sandboxes/$SB/tmux/sessions")
check "  while the REST API still answers ($code)" test "$code" = 200
kill $t1 $t2 2>/dev/null; wait $t1 $t2 2>/dev/null
out=x
for ((i = 0; i < 50; i++)); do
	out=$($WS "$WSURL/v1/sandboxes/$SB/terminal" --timeout 20 close 2>&1)
	grep -q '"type": "ready"' <<<"$out" && break
	sleep 0.2
done
check "  and once they closed, a terminal opens again" grep -q '"type": "ready"' <<<"$out"

# 8. The session ends: the terminal gets an exit frame and a close.
$WS "$WSURL/v1/sandboxes/$SB/terminal?mode=watch&session=second" --timeout 20 \
	"post:$URL/v1/sandboxes/$SB/run|{\"command\":\"tmux kill-session -t =second\"}" 'frame:exit' 'sleep:3' >"$T/exit.out" 2>&1
check "killing the session ends the terminal with an exit frame and a close" \
	test "$(grep -c '"type": "exit"' "$T/exit.out")" = 1 -a "$(grep -c '^CLOSE 1000' "$T/exit.out")" = 1
out=$($WS "$WSURL/v1/sandboxes/$SB/terminal?session=made-by-terminal" --timeout 20 close 2>&1)
check "a terminal on a missing session creates it" grep -q '"session": "made-by-terminal"' <<<"$out"

code=$(curl -sS -m 60 -o /dev/null -w '%{http_code}' -X DELETE "$URL/v1/sandboxes/$SB")
check "sandbox destroyed ($code)" test "$code" = 200

# 9. Token auth: a second server with PostgreSQL (tokens, roles, audit).
kill -TERM "$spid" 2>/dev/null; wait "$spid" 2>/dev/null; spid=
sed "s|state_dir: .*|state_dir: $T/auth|" "$T/config.yaml" >"$T/auth.yaml"
if ! FLUID_STATE_DIR=$T/auth "$ROOT/scripts/pg.sh" start >"$T/pg.log" 2>&1; then
	bad "private PostgreSQL cluster started"; tail -5 "$T/pg.log"
	echo "$pass passed, $fail failed"; exit 1
fi
DB=$(FLUID_STATE_DIR=$T/auth "$ROOT/scripts/pg.sh" url)
DATABASE_URL=$DB "$FLUID" serve --config "$T/auth.yaml" >"$T/auth.log" 2>&1 &
spid=$!
for ((i = 0; i < 600; i++)); do [ -s "$T/auth/serve.json" ] && break; sleep 0.1; done
URL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$T/auth/serve.json")
WSURL=ws://${URL#http://}
ADMIN=$(cat "$T/auth/admin.token" 2>/dev/null)
AGENT=$("$FLUID" token create --role agent --name test-tmux --url "$URL" --token-file "$T/auth/admin.token" --json 2>/dev/null |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' 2>/dev/null)
check "server with token auth and an agent token" test -n "$ADMIN" -a -n "$AGENT"
out=$(curl -sS -m 600 -H "Authorization: Bearer $AGENT" -X POST "$URL/v1/sandboxes" -d '{"base_image":"tiny","agent_id":"test-tmux"}')
SB=$(jq_ 'd["sandbox"]["id"]' <<<"$out" 2>/dev/null)
check "an agent creates a sandbox ($SB)" test -n "$SB"
code=$(curl -sS -m 60 -o /dev/null -w '%{http_code}' -X POST "$URL/api/v1/tmux/panes/send-keys" -d "{\"sandbox_id\":\"$SB\",\"keys\":\"x\"}")
check "send-keys without a token -> 401" test "$code" = 401
out=$(curl -sS -m 60 -w '\n%{http_code}' -H "Authorization: Bearer $AGENT" -X POST "$URL/api/v1/tmux/panes/send-keys" \
	-d "{\"sandbox_id\":\"$SB\",\"keys\":\"echo auth-\$((2+3))\",\"enter\":true}")
check "send-keys with an agent token -> 200" test "$(status_of "$out")" = 200
out=$($WS "$WSURL/v1/sandboxes/$SB/terminal" --status-only 2>&1)
check "terminal without a token -> 401 before the handshake ($(head -1 <<<"$out"))" grep -q '^HTTP/1.1 401' <<<"$out"
out=$($WS "$WSURL/v1/sandboxes/$SB/terminal?token=nope" --status-only 2>&1)
check "terminal with a bad token in the query -> 401" grep -q '^HTTP/1.1 401' <<<"$out"
out=$($WS "$WSURL/v1/sandboxes/$SB/terminal?mode=control&token=$AGENT" --timeout 30 \
	'send:{"type":"input","data":"echo q-$((3*3))\r"}' 'expect:q-9' close 2>&1)
check "terminal with an agent token in the query (browsers) types and shows output" grep -q '^SEEN q-9' <<<"$out"
out=$($WS "$WSURL/v1/sandboxes/$SB/terminal" --header "Authorization: Bearer $AGENT" --timeout 30 'expect:auth-5' close 2>&1)
check "terminal with the token in the Authorization header shows the screen" grep -q '^SEEN auth-5' <<<"$out"
code=$(curl -sS -m 60 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $AGENT" -X DELETE "$URL/v1/sandboxes/$SB")
check "sandbox destroyed ($code)" test "$code" = 200

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
