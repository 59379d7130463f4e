#!/bin/bash
# SPDX-License-Identifier: MIT
# Integration test of safety policies (docs/policies.md) against a real
# `fluid serve` with PostgreSQL (a private cluster from scripts/pg.sh), QEMU
# (TCG) and the tiny image:
#  - GET /v1/policies, token and sandbox policy endpoints; PUT is admin only
#  - sandbox limits: vcpus/memory/ttl over the policy's max -> 400, the
#    sandboxes-per-token limit -> 429 (nothing created)
#  - denied commands -> 403 with the rule, an audit row, and nothing run in
#    the guest (bypass attempts too); allowed commands audited
#  - timeouts over the maximum -> 400, the default timeout applies, output
#    kept per command capped
#  - path rules: outside prefixes 403; ".." 400; a symlink created in the
#    guest that leads out of an allowed prefix 403 (absolute and relative);
#    a symlink into a read-only prefix: read ok, write 403; bind mounts of
#    /root and / inside an allowed prefix 403
#  - file size: upload over the limit 413 (announced and chunked), nothing
#    written; download of a larger file 413
#  - an approval rule: the command waits, a reviewer approves through the
#    API, it runs; a rejected one is 403 with the approval id
#  - an admin sets another policy on the sandbox: it applies at once
#  - egress allowlist: a TCP server on the host's loopback is reached from
#    the guest as 10.0.2.2:PORT on the listed port only
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
FLUID=$ROOT/build/fluid
[ -x "$FLUID" ] || { echo "build/fluid missing"; exit 1; }

T=$(mktemp -d /tmp/fluid-policy-XXXXXX)
chmod 0755 "$T"
spid= DB= srv1= srv2=
cleanup() {
	[ -n "$spid" ] && kill -TERM "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
	[ -n "$srv1" ] && kill "$srv1" 2>/dev/null
	[ -n "$srv2" ] && kill "$srv2" 2>/dev/null
	[ -n "$DB" ] && FLUID_STATE_DIR=$T/state "$ROOT/scripts/pg.sh" stop >/dev/null 2>&1
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
body_json() { python3 -c 'import json,sys; print(json.dumps({"command": sys.argv[1]}))' "$1"; }

[ -f build/images/tiny/image.json ] || ./image-build/build-images --only tiny || { echo "no tiny image"; exit 1; }

# Two TCP servers on the host's loopback for the egress test: each answers
# every connection with its name.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P1=$(free_port) P2=$(free_port)
serve_tcp() {
	python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8)
while True:
    c, _ = s.accept(); c.sendall(sys.argv[2].encode() + b"\n"); c.close()' "$1" "$2" &
}
serve_tcp "$P1" hello-allowed; srv1=$!
serve_tcp "$P2" hello-other; srv2=$!

cat >"$T/config.yaml" <<EOF
server:
  listen: 127.0.0.1:0
state_dir: $T/state
accelerator: tcg
images:
  dir: $ROOT/build/images
  default: tiny
  pool_size: 0
limits:
  max_sandboxes: 8
policies:
  guarded:
    description: agents on a leash
    commands:
      deny: ["rm", "shutdown", "dd *of=/dev/*"]
      approval: ["touch /tmp/approved*"]
      approval_timeout_sec: 120
      # interactive: false (the default) refuses take-over, send-keys, SSH
    files:
      read: [/etc, /tmp]
      write: [/tmp/work]
    limits:
      timeout_sec: 30
      max_timeout_sec: 60
      output_bytes: 1000
      max_file_bytes: 4096
      max_sandboxes: 1
      max_vcpus: 1
      max_memory_mb: 256
      max_ttl_seconds: 600
  egress:
    network:
      egress: allowlist
      allow: ["10.0.2.2/32:$P1"]
EOF

"$FLUID" config check --config "$T/config.yaml" >"$T/check.log" 2>&1
check "config with policies validates" test $? = 0
printf 'policies:\n  bad:\n    commands:\n      deny: rm\n' >"$T/bad.yaml"
out=$("$FLUID" config check --config "$T/bad.yaml" 2>&1)
check "a bad policy names file, line and key ($out)" grep -q 'bad.yaml:3: policies.bad: commands.deny' <<<"$out"

out=$("$FLUID" policy check --config "$T/config.yaml" --policy guarded 'echo $(rm -rf /)' 2>&1); rc=$?
check "fluid policy check: offline decision, exit 1 for deny ($out)" test "$rc" = 1 -a "$(head -1 <<<"$out")" = "deny (policy guarded, deny: rm)"
"$FLUID" policy check --config "$T/config.yaml" --policy guarded 'touch /tmp/approved-x' >/dev/null 2>&1
check "fluid policy check: exit 3 for approval" test $? = 3
FLUID_STATE_DIR=$T/state "$ROOT/scripts/pg.sh" start >"$T/pg.log" 2>&1 || { bad "PostgreSQL"; cat "$T/pg.log"; exit 1; }
DB=$(FLUID_STATE_DIR=$T/state "$ROOT/scripts/pg.sh" url)
export DATABASE_URL=$DB
"$FLUID" serve --config "$T/config.yaml" >"$T/serve.log" 2>&1 &
spid=$!
for ((i = 0; i < 600; i++)); do [ -s "$T/state/serve.json" ] && break; sleep 0.1; done
[ -s "$T/state/serve.json" ] || { bad "server started"; cat "$T/serve.log"; exit 1; }
URL=$(json 'd["url"]' <"$T/state/serve.json")
ADMIN=$(cat "$T/state/admin.token")
ok "server started at $URL"

# req TOKEN METHOD PATH [BODY] -> $code, $body
req() {
	local tok=$1; shift
	local args=(-sS -H "Authorization: Bearer $tok" -o "$T/resp" -w '%{http_code}' -X "$1" "$URL$2")
	[ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
	code=$(curl "${args[@]}")
	body=$(cat "$T/resp")
}
run() { req "$1" POST "/v1/sandboxes/$2/run" "$(body_json "$3")"; }

req "$ADMIN" POST /v1/tokens '{"role":"agent","name":"leashed"}'
AG=$(json 'd["token"]' <<<"$body"); AGID=$(json 'd["id"]' <<<"$body")
req "$ADMIN" POST /v1/tokens '{"role":"reviewer","name":"rev"}'
REV=$(json 'd["token"]' <<<"$body")
req "$ADMIN" POST /v1/tokens '{"role":"agent","name":"net"}'
NET=$(json 'd["token"]' <<<"$body"); NETID=$(json 'd["id"]' <<<"$body")

# ---- policies and assignment ------------------------------------------------------
req "$AG" GET /v1/policies
check "GET /v1/policies lists the configured and the built-in default" jtrue \
	'd["default"] == "default" and [p["name"] for p in d["policies"]] == ["guarded", "egress", "default"] and d["policies"][0]["commands"]["deny"][0] == "rm"' <<<"$body"
req "$AG" GET /v1/policies/guarded
check "GET /v1/policies/guarded" jtrue 'd["policy"]["limits"]["max_sandboxes"] == 1 and d["policy"]["files"]["write"] == ["/tmp/work"]' <<<"$body"
req "$AG" GET /v1/policies/nope
check "unknown policy -> 404" test "$code" = 404
req "$AG" PUT "/v1/tokens/$AGID/policy" '{"policy":"default"}'
check "an agent cannot change policies -> 403" test "$code" = 403
req "$ADMIN" PUT "/v1/tokens/$AGID/policy" '{"policy":"nope"}'
check "PUT an unknown policy -> 400" test "$code" = 400
req "$ADMIN" PUT "/v1/tokens/$AGID/policy" '{"policy":"guarded"}'
check "admin sets the agent token's policy" jtrue 'd["policy"] == "guarded" and d["source"] == "token"' <<<"$body"
req "$ADMIN" PUT "/v1/tokens/$NETID/policy" '{"policy":"egress"}'
req "$AG" GET "/v1/tokens/$AGID/policy"
check "a token sees its own policy" jtrue 'd["policy"] == "guarded" and d["effective"]["limits"]["output_bytes"] == 1000' <<<"$body"
req "$AG" GET "/v1/tokens/$NETID/policy"
check "... but not another token's -> 403" test "$code" = 403
out=$(FLUID_URL=$URL FLUID_TOKEN=$ADMIN "$FLUID" policy token "$AGID" 2>&1)
check "fluid policy token ID ($out)" grep -q 'guarded' <<<"$out"
out=$(FLUID_URL=$URL FLUID_TOKEN=$AG "$FLUID" policy list 2>&1)
check "fluid policy list" grep -q '^guarded' <<<"$out"
out=$(FLUID_URL=$URL FLUID_TOKEN=$AG "$FLUID" policy show guarded 2>&1)
check "fluid policy show guarded" grep -q 'deny .*rm, shutdown' <<<"$out"

# ---- sandbox limits ----------------------------------------------------------------------
n_before=$(pgrep -fc "qemu-system.*$T/state")
req "$AG" POST /v1/sandboxes '{"base_image":"tiny","cpu":2}'
check "cpu over the policy's max -> 400 ($body)" jtrue 'd["code"] == 400 and "cpu 2 is over" in d["error"]' <<<"$body"
req "$AG" POST /v1/sandboxes '{"base_image":"tiny","memory_mb":512}'
check "memory over the policy's max -> 400" test "$code" = 400
req "$AG" POST /v1/sandboxes '{"base_image":"tiny","ttl_seconds":0}'
check "no TTL under a TTL limit -> 400" test "$code" = 400
req "$AG" POST /v1/sandboxes '{"base_image":"tiny","ttl_seconds":601}'
check "ttl over the policy's max -> 400" test "$code" = 400
req "$AG" POST /v1/sandboxes '{"base_image":"tiny","network":"none"}'
check "create under the policy -> 201" test "$code" = 201
SB=$(json 'd["sandbox"]["id"]' <<<"$body" 2>/dev/null)
[ -n "$SB" ] || { echo "cannot go on without a sandbox: $body"; echo "$pass passed, $((fail + 1)) failed"; exit 1; }
check "the TTL was capped to the policy's max" jtrue 'd["sandbox"]["ttl_seconds"] == 600' <<<"$body"
req "$AG" POST /v1/sandboxes '{"base_image":"tiny","network":"none"}'
check "second sandbox of the token -> 429 ($body)" test "$code" = 429
req "$ADMIN" GET /v1/sandboxes
check "nothing half-done: one sandbox exists" jtrue 'd["total"] == 1' <<<"$body"
req "$AG" GET "/v1/sandboxes/$SB"
check "GET sandbox shows the effective policy" jtrue 'd["sandbox"]["policy"] == {"name": "guarded", "source": "token"}' <<<"$body"
req "$AG" GET "/v1/sandboxes/$SB/policy"
check "GET sandbox policy: inherited from its creator" jtrue "d['policy'] == 'guarded' and d['source'] == 'token' and d['creator'] == '$AGID'" <<<"$body"

# ---- commands ---------------------------------------------------------------------------------
run "$AG" "$SB" 'mkdir -p /tmp/work && echo keep > /tmp/marker && echo ok'
check "an allowed command runs" jtrue 'd["command"]["exit_code"] == 0 and d["command"]["stdout"] == "ok\n"' <<<"$body"
denied=0
for c in 'rm /tmp/marker' '/bin/rm /tmp/marker' "sh -c 'rm /tmp/marker'" 'echo $(rm /tmp/marker)' \
	'echo `rm /tmp/marker`' 'X=rm; $X /tmp/marker' "'r''m' /tmp/marker" 'busybox rm /tmp/marker' \
	'env rm /tmp/marker' 'true
rm /tmp/marker' 'eval "rm /tmp/marker"'; do
	run "$AG" "$SB" "$c"
	if [ "$code" = 403 ] && jtrue 'd["details"]["decision"] == "deny" and d["details"]["rule"]' <<<"$body"; then
		denied=$((denied + 1))
	else
		echo "     not denied: $c -> $code $body"
	fi
done
check "11 spellings of rm denied with the rule (403)" test "$denied" = 11
run "$AG" "$SB" 'rm -f /tmp/marker'
check "403 body names the rule" jtrue 'd["code"] == 403 and d["details"]["rule"] == "deny: rm" and d["details"]["matched"] == "rm -f /tmp/marker" and d["details"]["policy"] == "guarded"' <<<"$body"
run "$AG" "$SB" 'cat /tmp/marker'
check "nothing denied reached the guest: the marker is still there" jtrue 'd["command"]["stdout"] == "keep\n"' <<<"$body"
req "$AG" POST "/v1/sandboxes/$SB/exec" '{"argv":["/bin/rm","/tmp/marker"]}'
check "exec with argv: denied too" test "$code" = 403
req "$AG" POST "/v1/sandboxes/$SB/processes" '{"command":"sleep 1; rm /tmp/marker"}'
check "background process: denied too" test "$code" = 403
req "$AG" POST "/v1/sandboxes/$SB/command" '{"command":"dd if=/dev/zero of=/dev/vda count=1"}'
check "POST .../command: a deny pattern with arguments" test "$code" = 403
# interactive channels would bypass the command rules: refused under them
req "$AG" POST /api/v1/tmux/panes/send-keys "{\"sandbox_id\":\"$SB\",\"keys\":\"rm /tmp/marker\",\"enter\":true}"
check "tmux send-keys under command rules -> 403 ($body)" jtrue 'd["code"] == 403 and d["details"]["channel"] == "tmux send-keys"' <<<"$body"
req "$AG" POST "/v1/sandboxes/$SB/sshkey" '{"public_key":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl t","username":"root"}'
check "ssh key under command rules -> 403" test "$code" = 403
ws() { curl -s -o /dev/null -m 5 -w '%{http_code}' -H 'Connection: Upgrade' -H 'Upgrade: websocket' \
	-H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' "$URL$1"; }
check "terminal take-over under command rules -> 403" test "$(ws "/v1/sandboxes/$SB/terminal?token=$AG&mode=control")" = 403
check "watching the terminal stays allowed (101)" test "$(ws "/v1/sandboxes/$SB/terminal?token=$AG&mode=watch")" = 101
req "$ADMIN" GET "/v1/audit?sandbox_id=$SB&action=policy.interactive&limit=10"
check "interactive refusals are audited" jtrue 'len(d["events"]) >= 3 and all(e["status"] == 403 for e in d["events"])' <<<"$body"
req "$ADMIN" GET "/v1/audit?sandbox_id=$SB&action=policy.command&limit=1000"
check "every decision is an audit row (deny with status 403 and rule)" jtrue \
	'sum(1 for r in d["events"] if r["status"] == 403 and r["details"]["decision"] == "deny") >= 15 and any(r["status"] == 0 and r["details"]["decision"] == "allow" for r in d["events"])' <<<"$body" || echo "$body" | head -c 600

# timeouts and output
req "$AG" POST "/v1/sandboxes/$SB/run" '{"command":"true","timeout_sec":61}'
check "timeout over the policy's max -> 400 ($body)" jtrue 'd["code"] == 400 and "maximum of 60" in d["error"]' <<<"$body"
req "$AG" POST "/v1/sandboxes/$SB/run" '{"command":"true","timeout_sec":0}'
check "no timeout under a finite max -> 400" test "$code" = 400
req "$AG" POST "/v1/sandboxes/$SB/run" '{"command":"sleep 10","timeout_sec":1}'
check "a command over its timeout is killed (timed_out)" jtrue 'd["command"]["timed_out"] == True' <<<"$body"
run "$AG" "$SB" 'head -c 5000 /dev/zero | tr "\0" x'
check "output kept per command capped at 1000 bytes" jtrue \
	'len(d["command"]["stdout"]) == 1000 and d["command"]["stdout_bytes"] == 5000 and d["command"]["stdout_truncated"]' <<<"$body"
CID=$(json 'd["command"]["id"]' <<<"$body")
n=$(curl -sS -H "Authorization: Bearer $AG" "$URL/v1/sandboxes/$SB/commands/$CID/output" | wc -c)
check "... in the output file too ($n bytes)" test "$n" = 1000

# ---- files ----------------------------------------------------------------------------------------
put() { code=$(curl -sS -H "Authorization: Bearer $AG" -o "$T/resp" -w '%{http_code}' -X PUT --data-binary "@$2" "$URL/v1/sandboxes/$SB/files?path=$1" "${@:3}"); body=$(cat "$T/resp"); }
get() { code=$(curl -sS -H "Authorization: Bearer $AG" -o "$T/got" -w '%{http_code}' "$URL/v1/sandboxes/$SB/files?path=$1"); body=$(cat "$T/got"); }
echo hello >"$T/small"
put /tmp/work/a.txt "$T/small"
check "write inside the write prefix -> 201" test "$code" = 201
put /tmp/other.txt "$T/small"
check "write outside the write prefixes -> 403" jtrue 'd["code"] == 403 and d["details"]["rule"] == "files.write"' <<<"$body"
get /etc/hostname
check "read inside a read prefix -> 200" test "$code" = 200
get /root/.profile
check "read outside the read prefixes -> 403" test "$code" = 403
get /tmp/work/../../root/x
check "'..' segments -> 400" test "$code" = 400
get //tmp/./work/a.txt
check "'//' and '.' are normalised -> 200" test "$code" = 200 -a "$body" = hello
run "$AG" "$SB" 'ln -s /root /tmp/work/esc && ln -s ../../root /tmp/work/rel && ln -s /etc /tmp/work/etc && ln -s /tmp/work /tmp/work/self'
check "symlinks created in the guest" jtrue 'd["command"]["exit_code"] == 0' <<<"$body"
put /tmp/work/esc/planted "$T/small"
check "write through an absolute symlink out of the prefix -> 403 ($body)" jtrue 'd["code"] == 403 and d["details"]["real_path"] == "/root/planted"' <<<"$body"
put /tmp/work/rel/planted "$T/small"
check "write through a relative symlink out of the prefix -> 403" test "$code" = 403
get /tmp/work/esc/.profile
check "read through a symlink out of the read prefixes -> 403" test "$code" = 403
get /tmp/work/etc/hostname
check "read through a symlink into a read prefix -> 200" test "$code" = 200
put /tmp/work/etc/planted "$T/small"
check "write through a symlink into a read-only prefix -> 403" test "$code" = 403
put /tmp/work/self/self/b.txt "$T/small"
check "a symlink that stays inside the prefix -> 201" test "$code" = 201
code=$(curl -sS -H "Authorization: Bearer $AG" -o "$T/resp" -w '%{http_code}' -X DELETE "$URL/v1/sandboxes/$SB/files?path=/tmp/work/esc/.profile")
check "delete through the symlink -> 403" test "$code" = 403
run "$AG" "$SB" 'ls /root/planted /tmp/other.txt /tmp/planted 2>&1; ls /tmp/work/b.txt'
check "nothing denied was written in the guest" jtrue '"/tmp/work/b.txt" in d["command"]["stdout"] and d["command"]["stdout"].count("No such file") == 3' <<<"$body"
run "$AG" "$SB" 'mkdir -p /tmp/work/bm /tmp/work/all /root/inner && mount --bind /root /tmp/work/bm && mount --bind / /tmp/work/all && echo mounted'
check "bind mounts made in the guest ($body)" jtrue 'd["command"]["stdout"] == "mounted\n"' <<<"$body"
put /tmp/work/bm/planted "$T/small"
check "write through a bind mount of /root inside the prefix -> 403 ($body)" jtrue 'd["code"] == 403 and d["details"]["rule"] == "bind mount" and d["details"]["mount"] == "/tmp/work/bm"' <<<"$body"
get /tmp/work/all/root/.profile
check "read through a bind mount of / inside a read prefix -> 403" test "$code" = 403
put /tmp/work/c.txt "$T/small"
check "a path beside the bind mounts is still fine -> 201" test "$code" = 201
run "$AG" "$SB" 'umount /tmp/work/bm /tmp/work/all; ls /root/planted 2>&1'
check "nothing was written through the bind mount" jtrue '"No such file" in d["command"]["stdout"]' <<<"$body"
head -c 5000 /dev/zero >"$T/big"
put /tmp/work/big "$T/big"
check "upload over max_file_bytes -> 413" test "$code" = 413
put /tmp/work/big2 "$T/big" -H 'Transfer-Encoding: chunked'
check "chunked upload over max_file_bytes -> 413 ($code)" test "$code" = 413
run "$AG" "$SB" 'ls /tmp/work/big /tmp/work/big2 2>&1 | grep -c "No such file"; ls -a /tmp/work | grep -c fluid-'
check "nothing half-written (no file, no temporary)" jtrue 'd["command"]["stdout"] == "2\n0\n"' <<<"$body"
run "$AG" "$SB" 'head -c 5000 /dev/zero > /tmp/work/made-big'
get /tmp/work/made-big
check "download over max_file_bytes -> 413" test "$code" = 413
req "$ADMIN" GET "/v1/audit?sandbox_id=$SB&action=policy.file&limit=1000"
check "file decisions are audit rows (allow and deny, with the real path)" jtrue \
	'any(r["status"] == 403 and r["details"].get("real_path") == "/root/planted" for r in d["events"]) and any(r["status"] == 0 for r in d["events"])' <<<"$body"

# ---- approval -----------------------------------------------------------------------------------
wait_pending() { # -> $APR: the pending command approval of this sandbox
	APR=
	for ((i = 0; i < 200; i++)); do
		req "$REV" GET "/v1/approvals?state=pending"
		APR=$(python3 -c 'import json,sys; a=[x["id"] for x in json.load(sys.stdin)["approvals"] if x["kind"] == "command" and x["sandbox_id"] == sys.argv[1]]; print(a[0] if a else "")' "$SB" <<<"$body")
		[ -n "$APR" ] && return 0
		sleep 0.1
	done
	return 1
}
curl -sS -H "Authorization: Bearer $AG" -o "$T/apr1" -w '%{http_code}' -H 'Content-Type: application/json' \
	--data-binary '{"command":"touch /tmp/approved1 && echo done"}' "$URL/v1/sandboxes/$SB/run" >"$T/apr1.code" &
cpid=$!
wait_pending
check "the command waits as a pending approval of kind command" test -n "$APR"
req "$REV" GET "/v1/approvals/$APR"
check "the approval names the command and the rule" jtrue 'd["approval"]["details"]["command"] == "touch /tmp/approved1 && echo done" and d["approval"]["details"]["rule"] == "approval: touch /tmp/approved*"' <<<"$body" || echo "$body" | head -c 400
req "$AG" POST "/v1/approvals/$APR/approve" '{}'
check "the agent cannot approve its own command -> 403" test "$code" = 403
req "$REV" POST "/v1/approvals/$APR/approve" '{"comment":"fine"}'
check "a reviewer approves" test "$code" = 200
wait "$cpid"
check "approved -> the command ran" jtrue 'd["command"]["stdout"] == "done\n"' <"$T/apr1"
curl -sS -H "Authorization: Bearer $AG" -o "$T/apr2" -w '%{http_code}' -H 'Content-Type: application/json' \
	--data-binary '{"command":"touch /tmp/approved2"}' "$URL/v1/sandboxes/$SB/run" >"$T/apr2.code" &
cpid=$!
wait_pending
req "$REV" POST "/v1/approvals/$APR/reject" '{"comment":"no"}'
wait "$cpid"
check "rejected -> 403 with the approval id" jtrue "d['code'] == 403 and d['details']['approval_id'] == '$APR' and d['details']['approval_state'] == 'rejected'" <"$T/apr2"
run "$AG" "$SB" 'ls /tmp/approved1 /tmp/approved2 2>&1'
check "only the approved command ran" jtrue '"No such file" in d["command"]["stdout"] and d["command"]["stdout"].count("approved1") == 1 and "approved2: No such" in d["command"]["stdout"]' <<<"$body"

# ---- sandbox policy set by an admin -----------------------------------------------------------
req "$AG" PUT "/v1/sandboxes/$SB/policy" '{"policy":"default"}'
check "an agent cannot set a sandbox's policy -> 403" test "$code" = 403
req "$ADMIN" PUT "/v1/sandboxes/$SB/policy" '{"policy":"default"}'
check "admin sets the sandbox's policy" jtrue 'd["policy"] == "default" and d["source"] == "sandbox"' <<<"$body"
out=$(FLUID_URL=$URL FLUID_TOKEN=$AG "$FLUID" policy sandbox "$SB" 2>&1)
check "fluid policy sandbox shows it ($out)" grep -q 'default (sandbox)' <<<"$out"
run "$AG" "$SB" 'rm /tmp/marker && echo removed'
check "the sandbox's own policy applies at once: rm runs" jtrue 'd["command"]["stdout"] == "removed\n"' <<<"$body"
run "$AG" "$SB" 'head -c 100000 /dev/zero | tr "\0" y'
CID=$(json 'd["command"]["id"]' <<<"$body")
n=$(curl -sS -H "Authorization: Bearer $AG" "$URL/v1/sandboxes/$SB/commands/$CID/output" | wc -c)
check "the default policy keeps all output (record 64 KiB, file $n bytes)" test "$n" = 100000 -a "$(json 'len(d["command"]["stdout"])' <<<"$body")" = 65536
req "$ADMIN" PUT "/v1/sandboxes/$SB/policy" '{"policy":null}'
check "clearing it falls back to the creator's policy" jtrue 'd["policy"] == "guarded" and d["source"] == "token"' <<<"$body"
req "$AG" DELETE "/v1/sandboxes/$SB"
req "$AG" POST /v1/sandboxes '{"base_image":"tiny","network":"none"}'
check "after destroying it the token may create again" test "$code" = 201
req "$AG" DELETE "/v1/sandboxes/$(json 'd["sandbox"]["id"]' <<<"$body")"

# ---- egress allowlist ---------------------------------------------------------------------------------
req "$NET" POST /v1/sandboxes '{"base_image":"tiny","network":"nat"}'
check "nat under an allowlist policy -> 403" test "$code" = 403
req "$NET" POST /v1/sandboxes '{"base_image":"tiny"}'
check "create under the egress policy -> 201 ($body)" test "$code" = 201
NSB=$(json 'd["sandbox"]["id"]' <<<"$body" 2>/dev/null)
check "the sandbox's network is allowlist" jtrue 'd["sandbox"]["network"] == "allowlist"' <<<"$body"
[ -n "$NSB" ] || { echo "$pass passed, $((fail + 2)) failed"; exit 1; }
run "$NET" "$NSB" "nc -w 5 10.0.2.2 $P1 </dev/null"
check "the listed destination is reachable ($body)" jtrue '"hello-allowed" in d["command"]["stdout"]' <<<"$body"
check "from the host, the other server answers (so the next check can fail)" \
	grep -q hello-other < <(python3 -c 'import socket,sys; print(socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5).recv(64).decode())' "$P2")
run "$NET" "$NSB" "nc -w 5 10.0.2.2 $P2 </dev/null; echo rc=\$?"
check "another port is not ($body)" jtrue '"hello-other" not in d["command"]["stdout"]' <<<"$body"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
