#!/bin/bash
# SPDX-License-Identifier: MIT
# Integration test of the sandbox API against a real `fluid serve` with real
# QEMU (TCG) and the tiny image: every sandbox/command/file/snapshot endpoint
# through HTTP (both compatibility path sets), a bad-input table with exact
# statuses and error bodies (and nothing changed by them), streaming exec
# delivering output while the command runs, binary output, background
# processes, a 50 MiB upload/download with the same sha256, snapshots,
# restore and branches, and the `fluid sandbox` CLI (exit code propagation,
# streamed cp). With PostgreSQL available (FLUID_TEST_API_DB=0 skips it) the
# server runs on a private cluster with token auth: every request carries the
# admin token, commands land in the commands table and actions in the audit
# log.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
FLUID=$ROOT/build/fluid
[ -x "$FLUID" ] || { echo "build/fluid missing (make build/fluid)"; exit 1; }

T=$(mktemp -d /tmp/fluid-api-XXXXXX)
chmod 0755 "$T" # the PostgreSQL cluster's owner must reach it
spid=
DB=
cleanup() {
	if [ -n "$spid" ]; then
		kill -TERM "$spid" 2>/dev/null
		wait "$spid" 2>/dev/null
	fi
	[ -n "$DB" ] && FLUID_STATE_DIR=$T/state "$ROOT/scripts/pg.sh" stop >/dev/null 2>&1
	# QEMUs outlive the server by design: stop the ones of this state dir
	for p in $(pgrep -f "qemu-system.*$T/state" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT
unset FLUID_STATE_DIR FLUID_ACCEL FLUID_LISTEN FLUID_URL FLUID_TOKEN FLUID_TOKEN_FILE DATABASE_URL FLUID_IMAGE_DIR

pass=0 fail=0
ok() { echo "ok   - $1"; pass=$((pass + 1)); }
bad() { echo "FAIL - $1"; fail=$((fail + 1)); }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {"d": d}))' "$1"; }
jtrue() { python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if eval(sys.argv[1], {"d": d}) else 1)' "$1"; }

nm "$FLUID" 2>/dev/null | grep -q ' T fl_engine_new$' || { echo "build/fluid has no engine linked"; exit 1; }

if [ ! -f build/images/tiny/image.json ]; then
	./image-build/build-images --only tiny || { echo "cannot build the tiny image"; exit 1; }
fi

cat >"$T/config.yaml" <<EOF
server:
  listen: 127.0.0.1:0
state_dir: $T/state
accelerator: tcg
images:
  dir: $ROOT/build/images
  default: tiny
  pool_size: 1
limits:
  max_sandboxes: 8
EOF

AUTH=()
if [ "${FLUID_TEST_API_DB:-1}" != 0 ] && { command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }; then
	if FLUID_STATE_DIR=$T/state "$ROOT/scripts/pg.sh" start >"$T/pg.log" 2>&1; then
		DB=$(FLUID_STATE_DIR=$T/state "$ROOT/scripts/pg.sh" url)
		export DATABASE_URL=$DB
		ok "private PostgreSQL cluster started"
	else
		bad "private PostgreSQL cluster started"; cat "$T/pg.log"
	fi
fi

"$FLUID" serve --config "$T/config.yaml" >"$T/serve.log" 2>&1 &
spid=$!
for ((i = 0; i < 600; i++)); do [ -s "$T/state/serve.json" ] && break; sleep 0.1; done
[ -s "$T/state/serve.json" ] || { bad "server started"; cat "$T/serve.log"; exit 1; }
URL=$(json 'd["url"]' <"$T/state/serve.json")
ok "server started at $URL${DB:+ (with PostgreSQL and token auth)}"
if [ -n "$DB" ]; then
	TOKEN=$(cat "$T/state/admin.token")
	AUTH=(-H "Authorization: Bearer $TOKEN")
	export FLUID_TOKEN=$TOKEN
	code=$(curl -sS -o /dev/null -w '%{http_code}' "$URL/v1/sandboxes")
	check "no token -> 401" test "$code" = 401
fi

# req METHOD PATH [BODY] -> $code, $body
req() {
	local args=(-sS "${AUTH[@]}" -o "$T/resp" -w '%{http_code}' -X "$1" "$URL$2")
	[ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
	code=$(curl "${args[@]}")
	body=$(cat "$T/resp")
}
# expect NAME CODE ERROR METHOD PATH [BODY]: exact status and error body
expect() {
	local name=$1 want=$2 msg=$3
	shift 3
	req "$@"
	local got
	got=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d == {"error": sys.argv[2], "code": int(sys.argv[3]), "details": None})' "$body" "$msg" "$want" 2>/dev/null)
	if [ "$code" = "$want" ] && [ "$got" = True ]; then ok "$name -> $want"; else bad "$name: got $code $body"; fi
}

# ---- images --------------------------------------------------------------------
req GET /v1/vms
check "GET /v1/vms lists tiny (fluid.sh shape)" jtrue \
	'any(v["name"] == "tiny" and set(["name","uuid","state","persistent","disk_path"]) <= set(v) for v in d["vms"])' <<<"$body"

# ---- create (fluid.sh shape) ----------------------------------------------------
t0=$(date +%s.%N)
req POST /v1/sandboxes '{"source_vm_name":"tiny","agent_id":"agent-1","vm_name":"api-one","cpu":1,"memory_mb":256,"ttl_seconds":600,"auto_start":true,"wait_for_ip":true}'
t1=$(date +%s.%N)
echo "     create took $(python3 -c "print(round($t1 - $t0, 2))") s"
check "POST /v1/sandboxes -> 201" test "$code" = 201
check "create returns Sandbox + ip_address" jtrue \
	'set(["id","job_id","agent_id","sandbox_name","base_image","network","ip_address","state","ttl_seconds","created_at","updated_at"]) <= set(d["sandbox"]) and d["ip_address"] == "10.0.2.15" and d["sandbox"]["state"] == "RUNNING" and d["sandbox"]["sandbox_name"] == "api-one" and d["sandbox"]["agent_id"] == "agent-1" and d["sandbox"]["created_at"].endswith("Z")' <<<"$body"
SB=$(json 'd["sandbox"]["id"]' <<<"$body")

req POST /v1/sandboxes '{"base_image":"tiny","network":"none","job_id":"job-7"}'
check "POST /v1/sandboxes (fluid shape, network none) -> 201" test "$code" = 201
SB2=$(json 'd["sandbox"]["id"]' <<<"$body")

req POST /v1/sandboxes '{"base_image":"tiny","auto_start":false}'
check "auto_start false -> CREATED" jtrue 'd["sandbox"]["state"] == "CREATED" and d["sandbox"]["ip_address"] is None' <<<"$body"
SB3=$(json 'd["sandbox"]["id"]' <<<"$body")

# ---- list / get -----------------------------------------------------------------
req GET "/v1/sandboxes"
check "list: total counts all" jtrue 'd["total"] == 3 and len(d["sandboxes"]) == 3' <<<"$body"
req GET "/v1/sandboxes?agent_id=agent-1"
check "list filter agent_id" jtrue 'd["total"] == 1 and d["sandboxes"][0]["id"] == "'"$SB"'"' <<<"$body"
req GET "/v1/sandboxes?job_id=job-7&base_image=tiny"
check "list filter job_id+base_image" jtrue 'd["total"] == 1 and d["sandboxes"][0]["id"] == "'"$SB2"'"' <<<"$body"
req GET "/v1/sandboxes?state=RUNNING&limit=1&offset=1"
check "list state filter + paging: total is all matches" jtrue 'd["total"] == 2 and len(d["sandboxes"]) == 1' <<<"$body"
req GET "/v1/sandboxes?vm_name=api-one"
check "list filter vm_name" jtrue 'd["total"] == 1' <<<"$body"
req GET "/v1/sandboxes/$SB"
check "GET /v1/sandboxes/{id}" jtrue 'd["sandbox"]["id"] == "'"$SB"'" and "commands" not in d' <<<"$body"
req GET "/v1/sandboxes/api-one"
check "GET by name" jtrue 'd["sandbox"]["id"] == "'"$SB"'"' <<<"$body"
req GET "/v1/sandboxes/$SB/ip"
check "GET .../ip -> 10.0.2.15" jtrue 'd["ip_address"] == "10.0.2.15"' <<<"$body"

# ---- commands ---------------------------------------------------------------------
req POST "/v1/sandboxes/$SB/run" '{"command":"echo $GREETING; echo oops >&2; exit 4","env":{"GREETING":"hello"},"timeout_sec":60}'
check "POST .../run -> 200 Command" jtrue \
	'set(["id","sandbox_id","command","env","stdout","stderr","exit_code","started_at","ended_at"]) <= set(d["command"]) and d["command"]["stdout"] == "hello\n" and d["command"]["stderr"] == "oops\n" and d["command"]["exit_code"] == 4 and d["command"]["env"] == {"GREETING": "hello"}' <<<"$body"
check "command has sizes and sha256" jtrue \
	'd["command"]["stdout_bytes"] == 6 and d["command"]["stdout_sha256"] == "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"' <<<"$body"
CID=$(json 'd["command"]["id"]' <<<"$body")
req POST "/v1/sandboxes/$SB/command" '{"command":"hostname"}'
check "POST .../command (README) -> exit_code/stdout" jtrue 'd["exit_code"] == 0 and d["stdout"] == "api-one\n" and d["command"]["id"]' <<<"$body"
req POST "/v1/sandboxes/$SB/run" '{"command":"head -c 200000 /dev/zero | tr \"\\0\" x"}'
check "large output: record capped at 64 KiB, sizes exact" jtrue \
	'len(d["command"]["stdout"]) == 65536 and d["command"]["stdout_bytes"] == 200000 and d["command"]["stdout_truncated"]' <<<"$body"
BIG=$(json 'd["command"]["id"]' <<<"$body")
n=$(curl -sS "${AUTH[@]}" "$URL/v1/sandboxes/$SB/commands/$BIG/output?stream=stdout" | wc -c)
check "full output retrievable ($n bytes)" test "$n" = 200000
req GET "/v1/sandboxes/$SB/commands?limit=2"
check "GET .../commands: total + page" jtrue 'd["total"] == 3 and len(d["commands"]) == 2 and d["commands"][0]["id"] == "'"$CID"'"' <<<"$body"
req GET "/v1/sandboxes/$SB/commands/$CID"
check "GET .../commands/{cid}" jtrue 'd["command"]["exit_code"] == 4' <<<"$body"
req GET "/v1/sandboxes/$SB?include_commands=true"
check "GET ?include_commands=true" jtrue 'len(d["commands"]) == 3' <<<"$body"
req POST "/v1/sandboxes/$SB/exec" '{"argv":["cat"],"stdin":"from stdin"}'
check "exec without ndjson Accept -> Command (argv + stdin)" jtrue 'd["command"]["stdout"] == "from stdin"' <<<"$body"

# streaming: the first line arrives well before the command ends
cat >"$T/stream.py" <<'EOF'
import http.client, json, sys, time, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
h = {"Accept": "application/x-ndjson", "Content-Type": "application/json"}
if len(sys.argv) > 3:
    h["Authorization"] = "Bearer " + sys.argv[3]
c.request("POST", u.path, body=sys.argv[2], headers=h)
r = c.getresponse()
t0 = time.time()
out = {"status": r.status, "ctype": r.getheader("Content-Type"), "lines": []}
while True:
    line = r.readline()
    if not line:
        break
    out["lines"].append([round(time.time() - t0, 3), json.loads(line)])
print(json.dumps(out))
EOF
res=$(python3 "$T/stream.py" "$URL/v1/sandboxes/$SB/exec" '{"command":"echo a; sleep 2; echo b; exit 3"}' ${TOKEN:-})
echo "     stream: $res"
check "streaming exec is NDJSON" jtrue 'd["status"] == 200 and d["ctype"] == "application/x-ndjson"' <<<"$res"
check "streaming exec: a, b, then exit_code 3" jtrue \
	'[l[1] for l in d["lines"]][:2] == [{"stream":"stdout","data":"a\n"},{"stream":"stdout","data":"b\n"}] and d["lines"][2][1]["exit_code"] == 3' <<<"$res"
check "streaming exec: first line arrives >= 1.5 s before the second" jtrue 'd["lines"][1][0] - d["lines"][0][0] >= 1.5' <<<"$res"
res=$(python3 "$T/stream.py" "$URL/v1/sandboxes/$SB/exec" '{"command":"printf \"ok\\377\\001\"; printf \"\u00e9\" >&2"}' ${TOKEN:-})
check "binary output is base64 with encoding flag; UTF-8 stays text" jtrue \
	'{"stream":"stdout","data":"b2v/AQ==","encoding":"base64"} in [l[1] for l in d["lines"]] or ({"stream":"stdout","data":"ok"} in [l[1] for l in d["lines"]]) and any(l[1].get("encoding") == "base64" for l in d["lines"])' <<<"$res"
check "UTF-8 stderr stays text" jtrue '{"stream":"stderr","data":"\u00e9"} in [l[1] for l in d["lines"]]' <<<"$res"

# background processes
req POST "/v1/sandboxes/$SB/processes" '{"command":"sleep 300"}'
check "POST .../processes -> 201" test "$code" = 201
BG=$(json 'd["process"]["bg"]' <<<"$body")
req GET "/v1/sandboxes/$SB/processes"
check "GET .../processes lists it running" jtrue 'any(p["bg"] == '"$BG"' and p["running"] for p in d["processes"])' <<<"$body"
req POST "/v1/sandboxes/$SB/processes/$BG/kill" '{"signal":9}'
check "kill -> 200" test "$code" = 200
req GET "/v1/sandboxes/$SB/processes/$BG/wait?timeout_sec=10"
check "wait -> exited by signal 9" jtrue 'd["process"]["running"] == False and d["process"]["signal"] == 9' <<<"$body"
expect "stdin to a background process" 501 "background processes read /dev/null: the guest agent has no stdin for them; use a streaming exec with 'stdin' instead" POST "/v1/sandboxes/$SB/processes/$BG/stdin" '{}'
expect "kill unknown process" 404 "no such background process" POST "/v1/sandboxes/$SB/processes/999/kill" '{}'

# ---- files ---------------------------------------------------------------------------
head -c $((50 << 20)) /dev/urandom >"$T/big"
want=$(sha256sum "$T/big" | cut -d' ' -f1)
code=$(curl -sS "${AUTH[@]}" -o "$T/resp" -w '%{http_code}' -T "$T/big" "$URL/v1/sandboxes/$SB/files?path=/root/big")
check "PUT 50 MiB -> 201 with the same sha256" jtrue 'd["bytes"] == 52428800 and d["sha256"] == "'"$want"'"' <"$T/resp"
got=$(curl -sS "${AUTH[@]}" "$URL/v1/sandboxes/$SB/files?path=/root/big" | sha256sum | cut -d' ' -f1)
check "GET 50 MiB back: same sha256" test "$got" = "$want"
code=$(curl -sS "${AUTH[@]}" -o /dev/null -w '%{http_code}' -T "$T/config.yaml" "$URL/v1/sandboxes/$SB/files?path=/root/d/e/conf&mkdirs=true&mode=0600")
check "PUT with mkdirs and mode -> 201" test "$code" = 201
req GET "/v1/sandboxes/$SB/files/list?path=/root/d/e"
check "files/list" jtrue 'd["entries"][0]["name"] == "conf" and d["entries"][0]["mode"] == 0o600' <<<"$body"
req DELETE "/v1/sandboxes/$SB/files?path=/root/d&recursive=true"
check "DELETE recursive -> 200" test "$code" = 200
req GET "/v1/sandboxes/$SB/files?path=/root/d/e/conf"
check "deleted file -> 404" test "$code" = 404

# ---- SSH keys (fluid.sh) ----------------------------------------------------------------
KEY="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLW7u+g9pTh+y1tw6Gy9vnJGTq9JRUn test@fluid"
req POST "/v1/sandboxes/$SB/sshkey" "{\"public_key\":\"$KEY\",\"username\":\"root\"}"
check "POST sshkey -> 204" test "$code" = 204
req POST "/v1/sandboxes/$SB/run" '{"command":"cat /root/.ssh/authorized_keys; stat -c %a /root/.ssh"}'
check "the key is in root's authorized_keys (0700 dir)" jtrue "'$KEY' in d['command']['stdout'] and d['command']['stdout'].strip().endswith('700')" <<<"$body"
expect "sshkey: not a public key" 400 "public_key must be one OpenSSH public key line" \
	POST "/v1/sandboxes/$SB/sshkey" '{"public_key":"ssh-ed25519 AAAA$(reboot)","username":"root"}'
expect "sshkey: bad user name" 400 "username must match [a-z_][a-z0-9_-]*" \
	POST "/v1/sandboxes/$SB/sshkey" "{\"public_key\":\"$KEY\",\"username\":\"../root\"}"
expect "sshkey: unknown user" 400 "no user 'nobody2' in the sandbox" \
	POST "/v1/sandboxes/$SB/sshkey" "{\"public_key\":\"$KEY\",\"username\":\"nobody2\"}"

# ---- snapshots -------------------------------------------------------------------------
req POST "/v1/sandboxes/$SB/run" '{"command":"echo v1 > /root/v"}'
req POST "/v1/sandboxes/$SB/snapshots" '{"name":"s1"}'
check "POST .../snapshots -> 201" jtrue 'd["snapshot"]["name"] == "s1" and d["snapshot"]["memory"] == False' <<<"$body"
req POST "/v1/sandboxes/$SB/run" '{"command":"echo v2 > /root/v; mkdir -p /run/x; echo ram > /run/x/f"}'
req POST "/v1/sandboxes/$SB/snapshot" '{"name":"s2","external":true}'
check "POST .../snapshot (fluid.sh) -> 201" test "$code" = 201
req POST "/v1/sandboxes/$SB/snapshots" '{"name":"c3","memory":true}'
check "checkpoint with memory -> 201" jtrue 'd["snapshot"]["memory"] == True and d["snapshot"]["parent"] == "s2"' <<<"$body"
req GET "/v1/sandboxes/$SB/snapshots"
check "GET .../snapshots: tree" jtrue '[s["name"] for s in d["snapshots"]] == ["s1","s2","c3"] and d["head"] == "c3" and d["total"] == 3' <<<"$body"
req POST "/v1/sandboxes/$SB/snapshots/s1/restore"
check "restore s1 -> 200" test "$code" = 200
req POST "/v1/sandboxes/$SB/run" '{"command":"cat /root/v"}'
check "restored disk content" jtrue 'd["command"]["stdout"] == "v1\n"' <<<"$body"
req POST "/v1/sandboxes/$SB/snapshots/c3/restore" '{}'
req POST "/v1/sandboxes/$SB/run" '{"command":"cat /root/v /run/x/f"}'
check "restored checkpoint has RAM state" jtrue 'd["command"]["stdout"] == "v2\nram\n"' <<<"$body"
req POST /v1/sandboxes "{\"from_sandbox\":\"$SB\",\"from_snapshot\":\"s2\",\"vm_name\":\"api-branch\"}"
check "branch from a snapshot -> 201" test "$code" = 201
BR=$(json 'd["sandbox"]["id"]' <<<"$body")
req POST "/v1/sandboxes/$BR/run" '{"command":"cat /root/v"}'
check "branch has the snapshot's data" jtrue 'd["command"]["stdout"] == "v2\n"' <<<"$body"
req DELETE "/v1/sandboxes/$SB/snapshots/s2"
check "DELETE snapshot -> 200" jtrue 'd["deleted"] == "s2"' <<<"$body"

# ---- bad input table ---------------------------------------------------------------
before=$(curl -sS "${AUTH[@]}" "$URL/v1/sandboxes" | json 'd["total"]')
expect "invalid JSON" 400 "invalid JSON: unexpected end of input" POST /v1/sandboxes '{"source_vm_name":'
expect "trailing data" 400 "invalid JSON: unexpected character" POST /v1/sandboxes '{} x'
expect "body not an object" 400 "the body must be a JSON object" POST /v1/sandboxes '[1]'
expect "unknown field" 400 "unknown field 'bogus'" POST /v1/sandboxes '{"source_vm_name":"tiny","agent_id":"a","bogus":1}'
expect "wrong type cpu" 400 "field 'cpu' must be an integer" POST /v1/sandboxes '{"source_vm_name":"tiny","agent_id":"a","cpu":"2"}'
expect "wrong type auto_start" 400 "field 'auto_start' must be true or false" POST /v1/sandboxes '{"source_vm_name":"tiny","agent_id":"a","auto_start":1}'
expect "cpu out of range" 400 "field 'cpu' must be in 1..8" POST /v1/sandboxes '{"base_image":"tiny","cpu":99}'
expect "missing agent_id (fluid.sh shape)" 400 "missing field 'agent_id'" POST /v1/sandboxes '{"source_vm_name":"tiny"}'
expect "image name traversal" 400 "invalid image name '../etc'" POST /v1/sandboxes '{"base_image":"../etc"}'
expect "unknown image" 404 "unknown base image 'nope' (see GET /v1/vms)" POST /v1/sandboxes '{"base_image":"nope"}'
expect "bad network" 400 'network must be "nat", "none", "allowlist" or "tap"' POST /v1/sandboxes '{"base_image":"tiny","network":"bridge"}'
expect "half a branch" 400 "branching needs both from_sandbox and from_snapshot" POST /v1/sandboxes "{\"from_sandbox\":\"$SB\"}"
expect "branch from unknown snapshot" 404 "sandbox $SB has no snapshot 'zz'" POST /v1/sandboxes "{\"from_sandbox\":\"$SB\",\"from_snapshot\":\"zz\"}"
expect "duplicate vm_name" 409 "a sandbox named 'api-one' exists" POST /v1/sandboxes '{"base_image":"tiny","vm_name":"api-one"}'
python3 -c 'print("{\"base_image\":\"" + "x" * (2 << 20) + "\"}")' >"$T/huge.json"
code=$(curl -sS "${AUTH[@]}" -o "$T/resp" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary @"$T/huge.json" "$URL/v1/sandboxes")
check "oversized body -> 413 with error shape" jtrue 'd["code"] == 413 and d["error"] == "request body larger than 1048576 bytes"' <"$T/resp"
expect "unknown sandbox" 404 "no sandbox 'nope'" GET /v1/sandboxes/nope
expect "unknown sandbox (delete)" 404 "no sandbox 'nope'" DELETE /v1/sandboxes/nope
expect "id with dots" 400 "invalid sandbox id" GET /v1/sandboxes/a..b
expect "bad state filter" 400 "state must be one of CREATED, STARTING, RUNNING, STOPPED, DESTROYED, ERROR" GET "/v1/sandboxes?state=running"
expect "bad limit" 400 "limit must be an integer in 0..1000" GET "/v1/sandboxes?limit=abc"
expect "bad include_commands" 400 "include_commands must be true or false" GET "/v1/sandboxes/$SB?include_commands=yes"
expect "run: key file field refused" 400 "unknown field 'private_key_path'" POST "/v1/sandboxes/$SB/run" '{"command":"id","private_key_path":"/etc/shadow"}'
expect "run: missing command" 400 "missing field 'command'" POST "/v1/sandboxes/$SB/run" '{}'
expect "run: env wrong type" 400 "field 'env' must be an object of strings or an array of \"K=V\"" POST "/v1/sandboxes/$SB/run" '{"command":"id","env":"A=1"}'
expect "run: bad env name" 400 "env: invalid variable name 'A-B'" POST "/v1/sandboxes/$SB/run" '{"command":"id","env":{"A-B":"1"}}'
expect "run: timeout out of range" 400 "field 'timeout_sec' must be in 0..86400" POST "/v1/sandboxes/$SB/run" '{"command":"id","timeout_sec":100000}'
expect "run in a CREATED sandbox" 409 "sandbox $SB3 is CREATED, not RUNNING" POST "/v1/sandboxes/$SB3/run" '{"command":"id"}'
expect "ip of a CREATED sandbox" 409 "sandbox $SB3 is CREATED, not RUNNING: it has no address" GET "/v1/sandboxes/$SB3/ip"
expect "unknown command id" 404 "no command 'cmd-0000000000000000' in sandbox $SB" GET "/v1/sandboxes/$SB/commands/cmd-0000000000000000"
expect "file path traversal" 400 "path must not contain '..' segments" GET "/v1/sandboxes/$SB/files?path=/root/../etc/passwd"
expect "relative file path" 400 "path must be absolute" GET "/v1/sandboxes/$SB/files?path=etc/passwd"
expect "missing file path" 400 "query parameter 'path' is required (absolute, < 4096 bytes)" GET "/v1/sandboxes/$SB/files"
expect "directory as a file" 400 "/root is a dir, not a regular file (see files/list)" GET "/v1/sandboxes/$SB/files?path=/root"
expect "snapshot name traversal" 400 "invalid snapshot name: use 1-64 letters, digits, '.', '-' or '_'" POST "/v1/sandboxes/$SB/snapshots" '{"name":"../x"}'
expect "snapshot unknown field" 400 "unknown field 'external'" POST "/v1/sandboxes/$SB/snapshots" '{"name":"x","external":true}'
expect "duplicate snapshot" 409 "sandbox $SB already has a snapshot 's1'" POST "/v1/sandboxes/$SB/snapshots" '{"name":"s1"}'
expect "restore unknown snapshot" 404 "sandbox $SB has no snapshot 'zz'" POST "/v1/sandboxes/$SB/snapshots/zz/restore"
expect "restore name with dots" 400 "invalid snapshot name" POST "/v1/sandboxes/$SB/snapshots/a..b/restore"
expect "start: unknown field" 400 "unknown field 'force'" POST "/v1/sandboxes/$SB/start" '{"force":true}'
after=$(curl -sS "${AUTH[@]}" "$URL/v1/sandboxes" | json 'd["total"]')
check "bad inputs changed nothing ($before sandboxes)" test "$before" = "$after"
req GET "/v1/sandboxes/$SB/snapshots"
check "bad inputs left the snapshot tree alone" jtrue '[s["name"] for s in d["snapshots"]] == ["s1","c3"]' <<<"$body"

# ---- stop / start -------------------------------------------------------------------
req POST "/v1/sandboxes/$SB2/stop"
check "POST .../stop -> STOPPED" jtrue 'd["sandbox"]["state"] == "STOPPED"' <<<"$body"
req POST "/v1/sandboxes/$SB2/start" '{"wait_for_ip":true}'
check "POST .../start -> ip_address" jtrue 'd["ip_address"] == "10.0.2.15"' <<<"$body"
req POST "/v1/sandboxes/$SB3/start"
check "start a CREATED sandbox" jtrue 'd["sandbox"]["state"] == "RUNNING"' <<<"$body"

# ---- CLI ------------------------------------------------------------------------------
export FLUID_URL=$URL
"$FLUID" sandbox exec "$SB" -- 'echo to-out; echo to-err >&2; exit 7' >"$T/o" 2>"$T/e"
rc=$?
check "CLI exec exits with the remote code (7)" test "$rc" = 7
check "CLI exec stdout/stderr split" test "$(cat "$T/o")/$(cat "$T/e")" = "to-out/to-err"
"$FLUID" sandbox exec "$SB" -- ls /nonexistent >/dev/null 2>&1
check "CLI exec argv form propagates failure" test $? -ne 0
"$FLUID" sandbox exec "$SB" -- true
check "CLI exec exit 0" test $? = 0
"$FLUID" sandbox exec nope -- true 2>/dev/null
check "CLI exec on unknown sandbox -> 1" test $? = 1
head -c 3000000 /dev/urandom >"$T/f1"
"$FLUID" sandbox cp "$T/f1" "$SB:/root/f1" >/dev/null && "$FLUID" sandbox cp "$SB:/root/f1" "$T/f2" >/dev/null
check "CLI cp up and down" cmp -s "$T/f1" "$T/f2"
out=$("$FLUID" sandbox list --json)
check "CLI list --json" jtrue 'd["total"] == 4' <<<"$out"
out=$("$FLUID" sandbox snapshot "$SB" cli-snap && "$FLUID" sandbox restore "$SB" cli-snap)
check "CLI snapshot + restore" test $? = 0
out=$("$FLUID" sandbox branch --name cli-branch --json "$SB" cli-snap)
check "CLI branch" jtrue 'd["sandbox"]["sandbox_name"] == "cli-branch"' <<<"$out"
"$FLUID" sandbox destroy cli-branch >/dev/null
check "CLI destroy" test $? = 0

# ---- destroy ------------------------------------------------------------------------------
req DELETE "/v1/sandboxes/$SB"
check "DELETE -> DESTROYED shape" jtrue 'd["state"] == "DESTROYED" and d["sandbox_name"] == "api-one" and d["base_image"] == "tiny" and d["ttl_seconds"] == 600' <<<"$body"
expect "GET after destroy" 404 "no sandbox '$SB'" GET "/v1/sandboxes/$SB"
check "destroy removed its state dir" test ! -e "$T/state/sandboxes/$SB"
for id in $SB2 $SB3 $BR; do req DELETE "/v1/sandboxes/$id"; done
req GET /v1/sandboxes
check "all destroyed" jtrue 'd["total"] == 0' <<<"$body"

if [ -n "$DB" ]; then
	n=$(psql "$DB" -XtAc "select count(*) from commands where sandbox_id = '$SB'")
	check "commands recorded in PostgreSQL ($n rows)" test "$n" -ge 10
	n=$(psql "$DB" -XtAc "select count(*) from commands where sandbox_id = '$SB' and exit_code = 4 and stdout = E'hello\\n' and stdout_sha256 = '5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03'")
	check "command row has capped output and sha256" test "$n" = 1
	acts=$(psql "$DB" -XtAc "select string_agg(distinct action, ',' order by action) from audit_events where sandbox_id = '$SB'")
	echo "     audit actions for $SB: $acts"
	for a in sandbox.create command.start command.end snapshot.create snapshot.restore snapshot.delete sandbox.destroy; do
		check "audit has $a" grep -q "$a" <<<"$acts"
	done
	req GET "/v1/sandboxes?state=DESTROYED&agent_id=agent-1"
	check "destroyed sandboxes listed from the mirror" jtrue 'd["total"] == 1 and d["sandboxes"][0]["id"] == "'"$SB"'"' <<<"$body"
fi

kill -TERM "$spid"
wait "$spid"
check "server stops cleanly" test $? = 0
spid=
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
