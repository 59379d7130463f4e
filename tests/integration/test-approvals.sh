#!/bin/bash
# SPDX-License-Identifier: MIT
# Approvals and production apply (docs/approvals.md) against a real
# `fluid serve`, a private PostgreSQL (scripts/pg.sh), real ansible-playbook
# and a debian-12 VM under TCG as the "production host":
#  - bad input with exact statuses; an agent asks, a reviewer lists and
#    approves with a comment; the agent's long-poll returns as soon as the
#    reviewer decides (the latency is printed, not asserted);
#  - agent tokens can never approve, reject or apply: 403 and an audit row
#    of the refused attempt each; deciding twice is 409; reject path;
#  - /api/v1/human/ask blocks until decided, or answers pending on timeout;
#  - a change approval pins the playbook's sha256: pending and rejected
#    approvals are never applied, a playbook modified after approval is
#    refused (409, audited);
#  - the CLI: fluid approvals list|show|approve|reject|apply;
#  - a restart of fluid with a pending approval loses nothing;
#  - production apply for real: a debian-12 sandbox reached over its SSH
#    forward with a key added through the API and its host key pinned in a
#    known_hosts file (read through the agent); the config's hosts entry,
#    fluid restarted (the VM survives); a wrong known_hosts fails the apply
#    with a host-key error and changes nothing; the right one applies (NDJSON
#    streamed), the file and user exist on the host, a second apply is 409;
#  - an apply cut short by a kill -9 of fluid is "failed"/"interrupted"
#    after the restart, never re-run; the audit chain still verifies.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
FLUID=$ROOT/build/fluid
PG=$ROOT/scripts/pg.sh
[ -x "$FLUID" ] || { echo "build/fluid missing"; exit 1; }
for t in psql ansible-playbook ssh-keygen curl; do command -v $t >/dev/null || { echo "$t missing"; exit 1; }; done
if [ ! -f build/images/debian-12/image.json ]; then
	./image-build/build-images --only debian-12 || { echo "cannot build the debian-12 image"; exit 1; }
fi

T=$(mktemp -d /tmp/fluid-approvals-XXXXXX)
chmod 0755 "$T"
# one binary for every restart below, even if build/fluid is rebuilt meanwhile
cp "$FLUID" "$T/fluid" && FLUID=$T/fluid
export FLUID_STATE_DIR=$T/state
unset FLUID_CONFIG FLUID_LISTEN FLUID_ACCEL FLUID_URL FLUID_TOKEN FLUID_TOKEN_FILE DATABASE_URL FLUID_IMAGE_DIR
spid=""
cleanup() {
	[ -n "$spid" ] && kill -TERM "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
	for p in $(pgrep -f "qemu-system.*$T/state" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
	# an ansible-playbook orphaned by the kill -9 below runs in $T
	for p in $(pgrep -f ansible-playbook 2>/dev/null); do
		case "$(readlink "/proc/$p/cwd" 2>/dev/null)" in "$T"/*) kill -9 "$p" 2>/dev/null ;; esac
	done
	"$PG" stop >/dev/null 2>&1
	[ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT

pass=0 fail=0
ok() { echo "ok   - $1"; pass=$((pass + 1)); }
bad() { echo "FAIL - $1"; fail=$((fail + 1)); }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }
jtrue() { python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if eval(sys.argv[1], {"d": d}) else 1)' "$1"; }
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {"d": d}))' "$1"; }
now_ms() { date +%s%3N; }

"$PG" start >/dev/null 2>&1 || { echo "cannot start PostgreSQL"; exit 1; }
export DATABASE_URL=$("$PG" url)
q() { psql "$DATABASE_URL" -XtAq -v ON_ERROR_STOP=1 -c "$1" 2>&1; }

write_config() { # [hosts yaml]
	cat >"$T/config.yaml" <<EOF
server:
  listen: 127.0.0.1:0
accelerator: tcg
images:
  dir: $ROOT/build/images
  default: debian-12
  pool_size: 0
${1:-}
EOF
}
start_server() {
	rm -f "$T/state/serve.json"
	"$FLUID" serve --config "$T/config.yaml" >>"$T/serve.log" 2>&1 &
	spid=$!
	for ((i = 0; i < 600; i++)); do [ -s "$T/state/serve.json" ] && break; sleep 0.1; done
	[ -s "$T/state/serve.json" ] || { bad "server started"; tail -30 "$T/serve.log"; exit 1; }
	URL=$(json 'd["url"]' <"$T/state/serve.json")
}
stop_server() { kill -TERM "$spid" && wait "$spid"; spid=""; }

write_config
start_server
ADMIN=$(cat "$T/state/admin.token")
mktoken() { curl -sS -X POST "$URL/v1/tokens" -H "Authorization: Bearer $ADMIN" -d "{\"role\":\"$1\"}"; }
mktoken agent >"$T/agent.json"
mktoken reviewer >"$T/reviewer.json"
AGENT=$(json 'd["token"]' <"$T/agent.json")
AGENT_ID=$(json 'd["id"]' <"$T/agent.json")
REVIEWER=$(json 'd["token"]' <"$T/reviewer.json")
REVIEWER_ID=$(json 'd["id"]' <"$T/reviewer.json")
ok "server started at $URL"

# call TOKEN METHOD PATH [BODY]: prints the HTTP status, body into $T/body
call() {
	local tok=$1; shift
	local args=(-sS -o "$T/body" -w '%{http_code}' -X "$1" "$URL$2" -H "Authorization: Bearer $tok" --max-time 1800)
	[ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
	curl "${args[@]}"
}
expect() { # expect NAME STATUS TOKEN METHOD PATH [BODY]
	local name=$1 want=$2; shift 2
	local got; got=$(call "$@")
	if [ "$got" = "$want" ]; then ok "$name ($want)"; else bad "$name: got $got, want $want: $(head -c 400 "$T/body")"; fi
}
must() {
	local name=$1 want=$2; shift 2
	local got; got=$(call "$@")
	if [ "$got" = "$want" ]; then ok "$name"; else bad "$name: got $got, want $want: $(head -c 400 "$T/body")"; exit 1; fi
}
audit_count() { q "SELECT count(*) FROM audit_events WHERE action = '$1' AND actor = '$2' AND details->>'approval_id' = '$3'"; }

# ---- a production host: a debian-12 sandbox, made first (its template boots once;
# the restarts below then find it ready) ------------------------------------------------
t0=$(now_ms)
must "create the production VM" 201 "$ADMIN" POST /v1/sandboxes '{"base_image":"debian-12","agent_id":"production"}'
PROD=$(json 'd["sandbox"]["id"]' <"$T/body")
echo "     production VM $PROD up in $(($(now_ms) - t0)) ms"
ssh-keygen -q -t ed25519 -N '' -C fluid-apply -f "$T/apply_key"
ssh-keygen -q -t ed25519 -N '' -C not-the-host -f "$T/wrong_host"
expect "authorize fluid's apply key on the host" 204 "$ADMIN" POST "/v1/sandboxes/$PROD/sshkey" "$(python3 -c 'import json,sys; print(json.dumps({"public_key": open(sys.argv[1]).read().strip(), "username": "root"}))' "$T/apply_key.pub")"
must "read the host key through the agent" 200 "$ADMIN" GET "/v1/sandboxes/$PROD/files?path=/etc/ssh/ssh_host_ed25519_key.pub"
cp "$T/body" "$T/hostkey.pub"
check "it is an ed25519 key" grep -q '^ssh-ed25519 ' "$T/hostkey.pub"
must "learn the SSH port" 201 "$ADMIN" POST /v1/access/request "$(python3 -c 'import json,sys; print(json.dumps({"sandbox_id": sys.argv[1], "user_id": "test", "public_key": open(sys.argv[2]).read().strip(), "ttl_minutes": 1}))' "$PROD" "$T/apply_key.pub")"
PORT=$(json 'd["ssh_port"]' <"$T/body")
echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$T/hostkey.pub")" >"$T/known_hosts"
echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$T/wrong_host.pub")" >"$T/known_hosts.wrong"
# ---- bad input --------------------------------------------------------------------
expect "ask: unknown field" 400 "$AGENT" POST /v1/approvals '{"summary":"x","colour":"red"}'
expect "ask: no summary" 400 "$AGENT" POST /v1/approvals '{"kind":"question"}'
expect "ask: empty summary" 400 "$AGENT" POST /v1/approvals '{"summary":""}'
expect "ask: bad kind" 400 "$AGENT" POST /v1/approvals '{"summary":"x","kind":"please"}'
expect "ask: change without playbook" 400 "$AGENT" POST /v1/approvals '{"summary":"x","kind":"change"}'
expect "ask: details not an object" 400 "$AGENT" POST /v1/approvals '{"summary":"x","details":[1]}'
expect "ask: wait_seconds too long" 400 "$AGENT" POST /v1/approvals '{"summary":"x","wait_seconds":301}'
expect "ask: bad change id" 400 "$AGENT" POST /v1/approvals '{"summary":"x","change_id":"../x"}'
expect "ask: unknown change" 404 "$AGENT" POST /v1/approvals '{"summary":"x","change_id":"chg_00000000000000000000000000000000"}'
expect "ask: unknown playbook" 404 "$AGENT" POST /v1/approvals '{"summary":"x","playbook":"nope"}'
expect "ask: control characters" 400 "$AGENT" POST /v1/approvals '{"summary":"a\u0007b"}'
expect "get: unknown id" 404 "$AGENT" GET /v1/approvals/apr_00000000000000000000000000000000
expect "get: malformed id" 404 "$AGENT" GET /v1/approvals/..%2Fx
expect "get: bad wait" 400 "$AGENT" GET "/v1/approvals/apr_00000000000000000000000000000000?wait=abc"
expect "get: wait too long" 400 "$AGENT" GET "/v1/approvals/apr_00000000000000000000000000000000?wait=301"
expect "list: bad state" 400 "$AGENT" GET "/v1/approvals?state=maybe"
expect "list: bad limit" 400 "$AGENT" GET "/v1/approvals?limit=x"
expect "no token" 401 "" GET /v1/approvals
check "bad input created nothing" test "$(q 'SELECT count(*) FROM approvals')" = 0

# ---- ask, refuse the agent, long-poll, approve ------------------------------------------
must "agent asks" 201 "$AGENT" POST /v1/approvals '{"summary":"May I restart nginx on web-1?","details":{"why":"config reload failed"}}'
A1=$(json 'd["approval"]["id"]' <"$T/body")
check "pending question by the agent" jtrue "d['approval']['state']=='pending' and d['approval']['kind']=='question' and d['approval']['requested_by']=='$AGENT_ID' and d['approval']['requested_role']=='agent' and d['approval']['details']=={'why':'config reload failed'}" <"$T/body"
check "the request is audited" test "$(audit_count approval.request "$AGENT_ID" "$A1")" = 1
expect "agent cannot approve" 403 "$AGENT" POST "/v1/approvals/$A1/approve" '{"comment":"self-service"}'
check "the refused approve is audited" test "$(audit_count approval.approve.denied "$AGENT_ID" "$A1")" = 1
check "its audit row says 403 and why" test "$(q "SELECT status || ' ' || role || ' ' || (details->>'reason') FROM audit_events WHERE action = 'approval.approve.denied'")" = "403 agent requires the reviewer or admin role"
expect "agent cannot reject" 403 "$AGENT" POST "/v1/approvals/$A1/reject"
check "the refused reject is audited" test "$(audit_count approval.reject.denied "$AGENT_ID" "$A1")" = 1
expect "agent cannot apply" 403 "$AGENT" POST "/v1/approvals/$A1/apply"
check "the refused apply is audited" test "$(audit_count approval.apply.denied "$AGENT_ID" "$A1")" = 1
expect "still pending after the agent's attempts" 200 "$AGENT" GET "/v1/approvals/$A1"
check "state pending, nobody decided" jtrue 'd["approval"]["state"]=="pending" and d["approval"]["decided_by"] is None' <"$T/body"

expect "reviewer lists pending" 200 "$REVIEWER" GET "/v1/approvals?state=pending"
check "the question is listed" jtrue "d['total']==1 and d['approvals'][0]['id']=='$A1'" <"$T/body"

# the agent long-polls; the reviewer decides a moment later
( s=$(now_ms); curl -sS -o "$T/poll.json" -w '%{http_code}' "$URL/v1/approvals/$A1?wait=120" -H "Authorization: Bearer $AGENT" >"$T/poll.code"; now_ms >"$T/poll.end"; echo "$s" >"$T/poll.start" ) &
ppid_=$!
sleep 2
t_dec=$(now_ms)
expect "reviewer approves with a comment" 200 "$REVIEWER" POST "/v1/approvals/$A1/approve" '{"comment":"ok, during the maintenance window"}'
t_decided=$(now_ms)
wait $ppid_
check "long-poll answered 200" test "$(cat "$T/poll.code")" = 200
check "long-poll sees the decision and comment" jtrue "d['approval']['state']=='approved' and d['approval']['comment']=='ok, during the maintenance window' and d['approval']['decided_by']=='$REVIEWER_ID' and d['approval']['decided_at']" <"$T/poll.json"
WAKE_MS=$(($(cat "$T/poll.end") - t_dec))
echo "     long-poll: returned ${WAKE_MS} ms after the approve request was sent (the approve call itself took $((t_decided - t_dec)) ms; the poll waited $(($(cat "$T/poll.end") - $(cat "$T/poll.start"))) ms in total)"
check "the approval is audited with its comment" test "$(q "SELECT details->>'comment' FROM audit_events WHERE action = 'approval.approve' AND actor = '$REVIEWER_ID'")" = "ok, during the maintenance window"
expect "deciding twice" 409 "$REVIEWER" POST "/v1/approvals/$A1/approve"
expect "rejecting an approved one" 409 "$REVIEWER" POST "/v1/approvals/$A1/reject"
check "409 says why" jtrue '"only pending" in d["error"]' <"$T/body"
expect "approving an unknown id" 404 "$REVIEWER" POST /v1/approvals/apr_00000000000000000000000000000000/approve
expect "decide: unknown field" 400 "$REVIEWER" POST "/v1/approvals/$A1/approve" '{"comment":"x","force":true}'
expect "a question has nothing to apply" 409 "$REVIEWER" POST "/v1/approvals/$A1/apply"

# ---- reject path ------------------------------------------------------------------
expect "kind command is the policy's, not a caller's" 400 "$AGENT" POST /v1/approvals '{"summary":"May I?","kind":"command"}'
expect "an unknown sandbox_id" 404 "$AGENT" POST /v1/approvals '{"summary":"May I?","sandbox_id":"sbx-nope"}'
must "agent asks again" 201 "$AGENT" POST /v1/approvals "{\"summary\":\"May I drop the staging database?\",\"sandbox_id\":\"$PROD\",\"details\":{\"command\":\"dropdb staging\"}}"
A2=$(json 'd["approval"]["id"]' <"$T/body")
expect "reviewer rejects" 200 "$REVIEWER" POST "/v1/approvals/$A2/reject" '{"comment":"no"}'
check "rejected with the comment" jtrue 'd["approval"]["state"]=="rejected" and d["approval"]["comment"]=="no"' <"$T/body"
expect "approve after reject" 409 "$REVIEWER" POST "/v1/approvals/$A2/approve"
expect "list by kind and sandbox" 200 "$AGENT" GET "/v1/approvals?kind=question&sandbox_id=$PROD"
check "filters work" jtrue "d['total']==1 and d['approvals'][0]['id']=='$A2'" <"$T/body"
must "a reviewer asks" 201 "$REVIEWER" POST /v1/approvals '{"summary":"May I, myself?"}'
A4=$(json 'd["approval"]["id"]' <"$T/body")
expect "four eyes: the asker cannot approve its own request" 403 "$REVIEWER" POST "/v1/approvals/$A4/approve"
check "403 says another reviewer must approve" jtrue '"another reviewer" in d["error"]' <"$T/body"
expect "another reviewer (admin) can" 200 "$ADMIN" POST "/v1/approvals/$A4/approve"
expect "list paging" 200 "$AGENT" GET "/v1/approvals?limit=1&offset=1"
check "total is all matches, page is 1" jtrue "d['total']==3 and len(d['approvals'])==1 and d['approvals'][0]['id']=='$A2'" <"$T/body"

# ---- the README's blocking ask ------------------------------------------------------
( curl -sS -o "$T/ask.json" -w '%{http_code}' -X POST "$URL/api/v1/human/ask" -H "Authorization: Bearer $AGENT" \
	-d '{"question":"Deploy now?","timeout_seconds":120}' >"$T/ask.code" ) &
apid=$!
for ((i = 0; i < 100; i++)); do
	call "$REVIEWER" GET "/v1/approvals?state=pending" >/dev/null
	A3=$(json 'd["approvals"][0]["id"] if d["approvals"] else ""' <"$T/body")
	[ -n "$A3" ] && break
	sleep 0.1
done
check "the blocking ask shows up as pending" test -n "$A3"
expect "reviewer approves the ask" 200 "$REVIEWER" POST "/v1/approvals/$A3/approve" '{"comment":"go"}'
wait $apid
check "human/ask answers 200 when decided" test "$(cat "$T/ask.code")" = 200
check "human/ask: approved with the comment" jtrue 'd["approved"] is True and d["state"]=="approved" and d["comment"]=="go" and d["timed_out"] is False' <"$T/ask.json"
expect "human/ask timeout" 200 "$AGENT" POST /api/v1/human/ask '{"question":"Anyone there?","timeout_seconds":1}'
check "human/ask: timed out, still pending" jtrue 'd["timed_out"] is True and d["approved"] is False and d["approval"]["state"]=="pending"' <"$T/body"
A4=$(json 'd["approval"]["id"]' <"$T/body")
expect "human/ask: unknown field" 400 "$AGENT" POST /api/v1/human/ask '{"question":"x","callback":"http://x"}'
expect "ask with wait_seconds times out pending" 201 "$AGENT" POST /v1/approvals '{"summary":"quick?","wait_seconds":1}'
check "wait_seconds: pending after the wait" jtrue 'd["approval"]["state"]=="pending"' <"$T/body"

# ---- change approvals pin the playbook --------------------------------------------------
PB_TASKS='[{"name":"Marker file","module":"ansible.builtin.copy","params":{"dest":"/etc/fluid-approved.txt","content":"approved by a human\n","mode":"0644","owner":"root","group":"root"}},{"name":"Deploy user","module":"ansible.builtin.user","params":{"name":"deployer","shell":"/bin/bash","create_home":true,"state":"present"}}]'
for pbn in prod-setup prod-setup2 prod-setup3; do
	expect "playbook $pbn" 201 "$AGENT" POST /v1/ansible/playbooks "{\"name\":\"$pbn\",\"hosts\":\"web\",\"tasks\":$PB_TASKS}"
done
must "ask to apply prod-setup" 201 "$AGENT" POST /v1/approvals '{"summary":"Apply prod-setup","playbook":"prod-setup"}'
P1=$(json 'd["approval"]["id"]' <"$T/body")
SHA1=$(json 'd["approval"]["playbook_sha256"]' <"$T/body")
check "kind change with the playbook's sha256" jtrue 'd["approval"]["kind"]=="change" and d["approval"]["playbook"]=="prod-setup" and len(d["approval"]["playbook_sha256"])==64' <"$T/body"
expect "apply a pending approval" 409 "$REVIEWER" POST "/v1/approvals/$P1/apply"
check "409: only approved ones" jtrue '"only approved" in d["error"]' <"$T/body"
must "ask to apply prod-setup3" 201 "$AGENT" POST /v1/approvals '{"summary":"Apply prod-setup3","playbook":"prod-setup3"}'
P3=$(json 'd["approval"]["id"]' <"$T/body")
expect "reject prod-setup3" 200 "$REVIEWER" POST "/v1/approvals/$P3/reject" '{"comment":"not today"}'
expect "apply a rejected approval" 409 "$REVIEWER" POST "/v1/approvals/$P3/apply"
expect "approve prod-setup" 200 "$REVIEWER" POST "/v1/approvals/$P1/approve" '{"comment":"looks right"}'
expect "modify prod-setup after approval" 201 "$AGENT" POST /v1/ansible/playbooks/prod-setup/tasks '{"name":"Sneaky","module":"ansible.builtin.copy","params":{"dest":"/root/.ssh/authorized_keys","content":"ssh-ed25519 AAAA evil\n"}}'
expect "apply of a modified playbook" 409 "$REVIEWER" POST "/v1/approvals/$P1/apply"
check "409 names the change" jtrue '"changed after approval" in d["error"]' <"$T/body"
check "the refusal is audited with both hashes" test "$(q "SELECT count(*) FROM audit_events WHERE action = 'approval.apply.refused' AND details->>'approved_sha256' = '$SHA1' AND details->>'current_sha256' <> '$SHA1'")" = 1
expect "still approved, not applied" 200 "$AGENT" GET "/v1/approvals/$P1"
check "P1 approved, no apply result" jtrue 'd["approval"]["state"]=="approved" and d["approval"]["apply"] is None' <"$T/body"
expect "apply without configured hosts" 409 "$REVIEWER" POST "/v1/approvals/$P1/apply"

# a change's playbook (STATE/changes/<id>.json, written by the change job; here by hand)
mkdir -p "$T/state/changes"
CHG=chg_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
CHG2=chg_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "{\"id\":\"$CHG\",\"sandbox_id\":\"sbx-9\",\"state\":\"verified\",\"playbook\":\"prod-setup2\"}" >"$T/state/changes/$CHG.json"
echo "{\"id\":\"$CHG2\",\"sandbox_id\":\"sbx-9\",\"state\":\"running\",\"stage\":\"diff\"}" >"$T/state/changes/$CHG2.json"
must "ask for a change" 201 "$AGENT" POST /v1/approvals "{\"summary\":\"apply my change\",\"change_id\":\"$CHG\"}"
check "the change's playbook and sandbox are pinned" jtrue "d['approval']['kind']=='change' and d['approval']['playbook']=='prod-setup2' and d['approval']['sandbox_id']=='sbx-9' and d['approval']['change_id']=='$CHG'" <"$T/body"
SHA_CHG=$(json 'd["approval"]["playbook_sha256"]' <"$T/body")
must "ask for prod-setup2 by name" 201 "$AGENT" POST /v1/approvals '{"summary":"same playbook","playbook":"prod-setup2"}'
check "same playbook, same hash" jtrue "d['approval']['playbook_sha256']=='$SHA_CHG' and '$SHA_CHG'!='$SHA1'" <"$T/body"
expect "ask for a running change" 409 "$AGENT" POST /v1/approvals "{\"summary\":\"too early\",\"change_id\":\"$CHG2\"}"
expect "ask for a change of another sandbox" 400 "$AGENT" POST /v1/approvals "{\"summary\":\"x\",\"change_id\":\"$CHG\",\"sandbox_id\":\"$PROD\"}"

# ---- the CLI -------------------------------------------------------------------------
must "ask for the CLI" 201 "$AGENT" POST /v1/approvals '{"summary":"CLI question"}'
C1=$(json 'd["approval"]["id"]' <"$T/body")
cli() { FLUID_URL=$URL FLUID_TOKEN=$1 "$FLUID" approvals "${@:2}"; }
cli_list() { cli "$REVIEWER" list --state pending 2>/dev/null | grep -q "^$C1  pending"; }
cli_agent_approve() { ! cli "$AGENT" approve "$C1" 2>/dev/null; }
cli_approve() { cli "$REVIEWER" approve "$C1" --comment 'via cli' | grep -qx "$C1 approved"; }
cli_show() { cli "$AGENT" show "$C1" --wait 5 | grep -q '^comment *via cli$'; }
cli_reject_decided() { ! cli "$REVIEWER" reject "$C1" 2>/dev/null; }
cli_apply_rejected() { ! cli "$REVIEWER" apply "$P3" 2>/dev/null; }
check "fluid approvals list --state pending" cli_list
check "fluid approvals approve (agent token) fails" cli_agent_approve
check "fluid approvals approve --comment" cli_approve
check "fluid approvals show --wait" cli_show
check "fluid approvals reject (decided) fails" cli_reject_decided
check "fluid approvals apply (rejected) fails" cli_apply_rejected

# ---- restart with a pending approval ----------------------------------------------------------
must "ask before the restart" 201 "$AGENT" POST /v1/approvals '{"summary":"survive a restart?"}'
R1=$(json 'd["approval"]["id"]' <"$T/body")
stop_server
start_server
expect "after restart: still there" 200 "$AGENT" GET "/v1/approvals/$R1"
check "after restart: still pending" jtrue 'd["approval"]["state"]=="pending" and d["approval"]["summary"]=="survive a restart?"' <"$T/body"
expect "after restart: decidable" 200 "$REVIEWER" POST "/v1/approvals/$R1/approve" '{"comment":"after restart"}'
expect "after restart: the older ones too" 200 "$AGENT" GET "/v1/approvals/$A4"
check "A4 still pending" jtrue 'd["approval"]["state"]=="pending"' <"$T/body"

# ---- the production host gets its config entry; fluid restarts (the VM survives) ----
write_config "hosts:
  - name: prod
    address: 127.0.0.1
    port: $PORT
    user: root
    ssh_key: $T/apply_key
    known_hosts: $T/known_hosts
  - name: prod-wrongkey
    address: 127.0.0.1
    port: $PORT
    user: root
    ssh_key: $T/apply_key
    known_hosts: $T/known_hosts.wrong"
stop_server
start_server
expect "the production VM survived the restart" 200 "$ADMIN" GET "/v1/sandboxes/$PROD"
expect "GET /v1/hosts" 200 "$ADMIN" GET /v1/hosts
check "both hosts listed" jtrue 'd["total"]==2' <"$T/body"
check "no key material or key paths in /v1/hosts" bash -c "! grep -qE 'PRIVATE|apply_key|known_hosts|ssh_key' '$T/body'"
on_prod() { # on_prod COMMAND: exit status of a command in the production VM
	local body; body=$(python3 -c 'import json,sys; print(json.dumps({"command": sys.argv[1], "timeout_sec": 120}))' "$1")
	call "$ADMIN" POST "/v1/sandboxes/$PROD/run" "$body" >/dev/null
	json 'd["command"]["exit_code"]' <"$T/body"
}

# wrong host key: the apply fails and the host is untouched
must "ask to apply prod-setup2" 201 "$AGENT" POST /v1/approvals '{"summary":"Apply prod-setup2","playbook":"prod-setup2"}'
P2=$(json 'd["approval"]["id"]' <"$T/body")
must "approve prod-setup2" 200 "$REVIEWER" POST "/v1/approvals/$P2/approve" '{"comment":"go"}'
expect "apply: unknown host name" 400 "$REVIEWER" POST "/v1/approvals/$P2/apply" '{"hosts":["nope"]}'
expect "apply: unknown field" 400 "$REVIEWER" POST "/v1/approvals/$P2/apply" '{"hosts":["prod"],"force":true}'
t0=$(now_ms)
expect "apply against a host with the wrong pinned key" 200 "$REVIEWER" POST "/v1/approvals/$P2/apply" '{"hosts":["prod-wrongkey"]}'
echo "     failed apply took $(($(now_ms) - t0)) ms"
check "the apply failed on the host key" jtrue 'd["approval"]["state"]=="failed" and "host key" in d["approval"]["apply"]["error"] and d["approval"]["apply"]["ok"] is False' <"$T/body" ||
	python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["approval"].get("apply"), indent=1)[:3000])' <"$T/body"
check "nothing changed on the host (no file)" test "$(on_prod 'test -e /etc/fluid-approved.txt')" = 1
check "nothing changed on the host (no user)" test "$(on_prod 'id deployer')" = 1
expect "a failed approval is not applied again" 409 "$REVIEWER" POST "/v1/approvals/$P2/apply" '{"hosts":["prod"]}'

# the right key: applied, streamed
must "ask again for prod-setup2" 201 "$AGENT" POST /v1/approvals '{"summary":"Apply prod-setup2 (right key)","playbook":"prod-setup2"}'
P4=$(json 'd["approval"]["id"]' <"$T/body")
expect "check run of a pending approval" 200 "$REVIEWER" POST "/v1/approvals/$P4/apply" '{"hosts":["prod"],"check":true}'
check "check run: ok, would change the host, state unchanged" jtrue 'd["check"]["ok"] is True and d["check"]["check"] is True and d["check"]["recap"]["prod"]["changed"]>=1 and d["approval"]["state"]=="pending"' <"$T/body" ||
	python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin), indent=1)[:3000])' <"$T/body"
check "a check run changes nothing" test "$(on_prod 'test -e /etc/fluid-approved.txt || id deployer')" = 1
must "approve it" 200 "$REVIEWER" POST "/v1/approvals/$P4/approve"
t0=$(now_ms)
curl -sS -N -X POST "$URL/v1/approvals/$P4/apply" -H "Authorization: Bearer $REVIEWER" -H 'Accept: application/x-ndjson' \
	-H 'Content-Type: application/json' -d '{"hosts":["prod"]}' --max-time 1800 -D "$T/apply.hdr" >"$T/apply.ndjson"
APPLY_MS=$(($(now_ms) - t0))
echo "     production apply took $APPLY_MS ms"
check "apply streamed NDJSON" grep -qi '^content-type: application/x-ndjson' "$T/apply.hdr"
check "output lines, then the result" python3 -c '
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
out = "".join(l.get("data", "") for l in lines[:-1])
last = lines[-1]
ok = len(lines) > 3 and all(l.get("stream") == "stdout" for l in lines[:-1]) and "PLAY RECAP" in out \
    and last["state"] == "applied" and last["ok"] is True and last["exit_code"] == 0
if not ok:
    print(out[-3000:], json.dumps(last)[:2000])
sys.exit(0 if ok else 1)' "$T/apply.ndjson"
expect "the approval records the apply" 200 "$AGENT" GET "/v1/approvals/$P4"
check "state applied, recap per host" jtrue 'd["approval"]["state"]=="applied" and d["approval"]["apply"]["recap"]["prod"]["failed"]==0 and d["approval"]["apply"]["recap"]["prod"]["changed"]>=2 and d["approval"]["apply"]["hosts"]==["prod"] and "PLAY RECAP" in d["approval"]["apply"]["output_tail"]' <"$T/body"
check "the file is on the host" test "$(on_prod 'grep -qx "approved by a human" /etc/fluid-approved.txt')" = 0
check "the user is on the host" test "$(on_prod 'id deployer && test -d /home/deployer')" = 0
expect "apply twice" 409 "$REVIEWER" POST "/v1/approvals/$P4/apply" '{"hosts":["prod"]}'
check "409: applied already" jtrue '"applied already" in d["error"]' <"$T/body"
check "check run, apply start and done are audited" test "$(q "SELECT string_agg(action || ':' || coalesce(details->>'state', ''), ',' ORDER BY id) FROM audit_events WHERE details->>'approval_id' = '$P4' AND action LIKE 'approval.apply.%'")" = "approval.apply.check:,approval.apply.start:applying,approval.apply.done:applied"

# an apply cut short by a crash is "interrupted", never re-run
must "ask for prod-setup3 again" 201 "$AGENT" POST /v1/approvals '{"summary":"Apply prod-setup3","playbook":"prod-setup3"}'
P5=$(json 'd["approval"]["id"]' <"$T/body")
must "approve it too" 200 "$REVIEWER" POST "/v1/approvals/$P5/approve"
curl -sS -o /dev/null -X POST "$URL/v1/approvals/$P5/apply" -H "Authorization: Bearer $REVIEWER" -d '{"hosts":["prod"]}' --max-time 600 &
cpid=$!
for ((i = 0; i < 200; i++)); do
	[ "$(q "SELECT state FROM approvals WHERE id = '$P5'")" = applying ] && break
	sleep 0.05
done
check "the apply is running" test "$(q "SELECT state FROM approvals WHERE id = '$P5'")" = applying
kill -9 "$spid"; wait "$spid" 2>/dev/null; spid=""
wait $cpid 2>/dev/null
start_server
expect "after the crash" 200 "$AGENT" GET "/v1/approvals/$P5"
check "marked failed: interrupted" jtrue 'd["approval"]["state"]=="failed" and d["approval"]["apply"]["error"]=="interrupted"' <"$T/body"
check "the interruption is audited" test "$(q "SELECT count(*) FROM audit_events WHERE action = 'approval.apply.interrupted' AND details->>'approval_id' = '$P5'")" = 1
expect "an interrupted apply is not re-run" 409 "$REVIEWER" POST "/v1/approvals/$P5/apply" '{"hosts":["prod"]}'

check "audit chain verifies" jtrue 'd["ok"] is True' < <(curl -sS "$URL/v1/audit/verify" -H "Authorization: Bearer $ADMIN")
call "$ADMIN" DELETE "/v1/sandboxes/$PROD" >/dev/null
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
