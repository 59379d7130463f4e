#!/bin/bash
# SPDX-License-Identifier: MIT
# Integration test for tokens, roles and the audit log with a real
# PostgreSQL (a private cluster from scripts/pg.sh in a temporary state dir)
# and `build/fluid serve` (accelerator: tcg) driven with curl, psql and the
# fluid CLI:
#  - first start creates one admin token, prints it once, STATE/admin.token 0600;
#    a restart neither prints nor changes it; migrations are idempotent
#  - no token 401, bad token 401, agent on admin/reviewer endpoints 403
#  - token create/list/revoke (CLI and API); revoked tokens stop working;
#    the last admin token cannot be revoked; no plaintext token in the DB
#  - every request is an audit row (actor = token id); verify ok
#  - the fluid role cannot UPDATE/DELETE/TRUNCATE the audit table
#  - a superuser UPDATE, a DELETE, and a cut tail are each detected
#  - PostgreSQL stopped: mutating calls 503 and change nothing, reads of
#    live state still work; after restart every acknowledged row is there
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
FLUID=$ROOT/build/fluid
PG=$ROOT/scripts/pg.sh
[ -x "$FLUID" ] || { echo "build/fluid missing"; exit 1; }
command -v psql >/dev/null || { echo "psql missing (install postgresql)"; exit 1; }

T=$(mktemp -d)
chmod 0755 "$T" # the cluster owner (user fluid when run as root) must reach it
export FLUID_STATE_DIR=$T/state
unset FLUID_CONFIG FLUID_LISTEN FLUID_ACCEL FLUID_URL FLUID_TOKEN FLUID_TOKEN_FILE DATABASE_URL
spid=""
cleanup() {
	[ -n "$spid" ] && kill -TERM "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
	"$PG" stop >/dev/null 2>&1
	rm -rf "$T"
}
trap cleanup EXIT

pass=0 fail=0
ok() { echo "ok   - $1"; pass=$((pass + 1)); }
bad() { echo "FAIL - $1"; fail=$((fail + 1)); }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }
jtrue() { python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if eval(sys.argv[1], {"d": d}) else 1)' "$1"; }
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {"d": d}))' "$1"; }

"$PG" start >/dev/null 2>&1 || { echo "cannot start PostgreSQL"; exit 1; }
export DATABASE_URL=$("$PG" url)
SU=${DATABASE_URL/user=fluid/user=postgres}
q() { psql "$DATABASE_URL" -XtAq -v ON_ERROR_STOP=1 -c "$1" 2>&1; }
qsu() { psql "$SU" -XtAq -v ON_ERROR_STOP=1 -c "$1" 2>&1; }

cat >"$T/config.yaml" <<EOF
server:
  listen: 127.0.0.1:0
accelerator: tcg
EOF

start_serve() {
	rm -f "$T/state/serve.json"
	"$FLUID" serve --config "$T/config.yaml" >"$T/serve$1.log" 2>&1 &
	spid=$!
	for ((i = 0; i < 300; i++)); do [ -s "$T/state/serve.json" ] && break; sleep 0.1; done
	[ -s "$T/state/serve.json" ] || { cat "$T/serve$1.log"; return 1; }
	URL=$(json 'd["url"]' <"$T/state/serve.json")
	export FLUID_URL=$URL
}
stop_serve() {
	kill -TERM "$spid"
	wait "$spid"
	spid=""
}
# code METHOD PATH TOKEN [BODY]: prints the HTTP status, body into $T/body
code() {
	local args=(-sS -o "$T/body" -w '%{http_code}' -X "$1" "$URL$2")
	[ -n "$3" ] && args+=(-H "Authorization: Bearer $3")
	[ $# -ge 4 ] && args+=(-H 'Content-Type: application/json' -d "$4")
	curl "${args[@]}"
}

# 1. First start: schema, one admin token printed and saved.
check "fluid serve starts with the private cluster" start_serve 1
ADMIN=$(cat "$T/state/admin.token" 2>/dev/null)
check "admin token file written" test -n "$ADMIN"
check "admin.token is mode 0600" test "$(stat -c %a "$T/state/admin.token")" = 600
check "the token was printed once at start" test "$(grep -c "^    $ADMIN\$" "$T/serve1.log")" = 1
check "schema migrated" test "$(q 'select max(version) from schema_migrations')" -ge 1

# 2. Roles.
check "no token -> 401" test "$(code GET /v1/status "")" = 401
check "malformed token -> 401" test "$(code GET /v1/status not-a-token)" = 401
check "unknown well-formed token -> 401" \
	test "$(code GET /v1/status flt_0000000000000000000000000000000000000000000000000000000000000000)" = 401
check "admin token -> 200" test "$(code GET /v1/status "$ADMIN")" = 200
check "health needs no token" test "$(code GET /v1/health "")" = 200

out=$("$FLUID" token create --role agent --name ci-bot 2>"$T/err")
AGENT=$(head -1 <<<"$out")
check "fluid token create --role agent prints a token" grep -qE '^flt_[0-9a-f]{64}$' <<<"$AGENT"
check "...and its id on stderr" grep -q 'token tok_' "$T/err"
check "agent token -> GET /v1/status 200" test "$(code GET /v1/status "$AGENT")" = 200
check "agent token -> GET /v1/tokens 403" test "$(code GET /v1/tokens "$AGENT")" = 403
check "403 body has the API.md shape" jtrue 'd["code"] == 403 and "admin" in d["error"] and "details" in d' <"$T/body"
check "agent token -> POST /v1/tokens 403" test "$(code POST /v1/tokens "$AGENT" '{"role":"admin"}')" = 403
check "agent token -> GET /v1/audit 403 (reviewer)" test "$(code GET /v1/audit "$AGENT")" = 403
check "no admin token was made by the agent" test "$(q "select count(*) from tokens where role='admin'")" = 1

check "POST /v1/tokens reviewer -> 201" test "$(code POST /v1/tokens "$ADMIN" '{"role":"reviewer","name":"alice"}')" = 201
REVIEWER=$(json 'd["token"]' <"$T/body")
REV_ID=$(json 'd["id"]' <"$T/body")
check "reviewer -> GET /v1/audit 200" test "$(code GET /v1/audit "$REVIEWER")" = 200
check "reviewer -> DELETE /v1/tokens/x 403" test "$(code DELETE "/v1/tokens/$REV_ID" "$REVIEWER")" = 403
check "bad role -> 400" test "$(code POST /v1/tokens "$ADMIN" '{"role":"root"}')" = 400
check "unknown field -> 400" test "$(code POST /v1/tokens "$ADMIN" '{"role":"agent","x":1}')" = 400
check "no token row from the bad requests" test "$(q 'select count(*) from tokens')" = 3

out=$("$FLUID" token list)
check "fluid token list shows the three tokens" test "$(grep -c '^tok_' <<<"$out")" = 3
check "fluid token list --json" jtrue 'len(d["tokens"]) == 3 and {t["role"] for t in d["tokens"]} == {"admin", "agent", "reviewer"}' <<<"$("$FLUID" token list --json)"
check "fluid token revoke" "$FLUID" token revoke "$REV_ID"
check "revoked token -> 401" test "$(code GET /v1/audit "$REVIEWER")" = 401
check "revoked token shown with --all only" test "$("$FLUID" token list | grep -c "$REV_ID")/$("$FLUID" token list --all | grep -c "$REV_ID")" = 0/1
check "revoking it again -> 404" test "$(code DELETE "/v1/tokens/$REV_ID" "$ADMIN")" = 404
ADMIN_ID=$(q "select id from tokens where role='admin'")
check "the last admin token cannot be revoked (409)" test "$(code DELETE "/v1/tokens/$ADMIN_ID" "$ADMIN")" = 409

# 3. Tokens are stored hashed: no plaintext anywhere in the database.
dump=$(pg_dump -d "$SU" 2>/dev/null)
check "pg_dump of the database worked" test -n "$dump"
leaks=0
for t in "$ADMIN" "$AGENT" "$REVIEWER"; do grep -qF "${t#flt_}" <<<"$dump" && leaks=$((leaks + 1)); done
check "no plaintext token in the database (pg_dump)" test $leaks = 0
check "tokens table holds sha256 hashes" test "$(q "select count(*) from tokens where hash ~ '^[0-9a-f]{64}\$'")" = 3
h=$(printf '%s' "$AGENT" | sha256sum | cut -d' ' -f1)
check "the agent token's row is sha256(token)" test "$(q "select role from tokens where hash = '$h'")" = agent

# 4. Audit rows for requests.
ag_id=$(q "select id from tokens where role='agent'")
check "the agent's 403 is audited with its token id" \
	test "$(q "select count(*) from audit_events where actor='$ag_id' and status=403 and details->>'path'='/v1/tokens'")" -ge 1
check "anonymous 401 audited" test "$(q "select count(*) from audit_events where actor='anonymous' and status=401")" -ge 1
check "token.create audited in the same transaction" test "$(q "select count(*) from audit_events where action='token.create'")" = 3
check "a POST has a begin and an end row (none before a 403)" \
	test "$(q "select string_agg(coalesce(details->>'phase','-') || status, ',' order by id) from audit_events where details->>'path'='/v1/tokens' and details->>'method'='POST'")" = "begin0,end201,end403,begin0,end201,begin0,end400,begin0,end400"
check "health is not audited" test "$(q "select count(*) from audit_events where details->>'path'='/v1/health'")" = 0
out=$("$FLUID" audit --limit 5)
check "fluid audit prints 5 lines" test "$(wc -l <<<"$out")" = 5
check "fluid audit --json" jtrue 'len(d["events"]) == 3 and d["events"][0]["id"] < d["events"][2]["id"]' <<<"$("$FLUID" audit --limit 3 --json)"
check "GET /v1/audit?action=token.create" test "$(code GET '/v1/audit?action=token.create' "$ADMIN")" = 200
check "...returns the 3 token.create rows" jtrue 'len(d["events"]) == 3' <"$T/body"
check "GET /v1/audit?limit=0 -> 400" test "$(code GET '/v1/audit?limit=0' "$ADMIN")" = 400
out=$("$FLUID" audit verify)
check "fluid audit verify: ok ($out)" grep -q '^audit chain ok' <<<"$out"

# 5. Append-only for the role fluid uses.
out=$(q "update audit_events set status = 1 where id = 1")
check "fluid role UPDATE -> permission denied" grep -q 'permission denied' <<<"$out"
out=$(q "delete from audit_events where id = 1")
check "fluid role DELETE -> permission denied" grep -q 'permission denied' <<<"$out"
out=$(q "truncate audit_events")
check "fluid role TRUNCATE -> permission denied" grep -q 'permission denied' <<<"$out"
out=$(qsu "update audit_events set status = 1 where id = 1")
check "even a superuser is stopped by the trigger" grep -q 'append-only' <<<"$out"

# 6. Tampering by a superuser who disables the triggers.
n_before=$(q 'select count(*) from audit_events')
qsu "begin; set local session_replication_role = replica; update audit_events set details = '{\"path\": \"/v1/nothing\"}' where id = 4; commit" >/dev/null
out=$("$FLUID" audit verify --json); rc=$?
check "modified row detected (exit $rc)" test $rc = 1
check "...first bad id 4, kind modified" jtrue 'not d["ok"] and d["first_bad_id"] == 4 and d["problems"][0]["kind"] == "modified"' <<<"$out"
out=$("$FLUID" audit verify); rc=$?
check "human verify output names row 4" grep -q 'first bad row 4' <<<"$out"
check "GET /v1/audit/verify answers 200 with ok=false" test "$(code GET /v1/audit/verify "$ADMIN")" = 200
# A row changed and its hash recomputed from psql (the documented formula):
# the next row's link gives it away.
H="encode(sha256(convert_to(concat_ws(E'\\n', 'fluid-audit-v1', prev_hash, id::text, ((extract(epoch FROM at) * 1000000)::bigint)::text, json_build_array(actor, role, action, sandbox_id, status)::text, coalesce(details::text, 'null')), 'UTF8')), 'hex')"
check "the documented formula reproduces row 8's hash" test "$(q "select $H = hash from audit_events where id = 8")" = t
qsu "begin; set local session_replication_role = replica; update audit_events set status = 299 where id = 8; update audit_events set hash = $H where id = 8; commit" >/dev/null
out=$("$FLUID" audit verify --json)
check "changed row with recomputed hash detected (relinked at 8)" jtrue 'any(p["kind"] == "relinked" and p["id"] == 8 for p in d["problems"]) and d["first_bad_id"] == 4' <<<"$out"
qsu "begin; set local session_replication_role = replica; delete from audit_events where id = 6; commit" >/dev/null
out=$("$FLUID" audit verify --json)
check "deleted row detected" jtrue 'd["first_bad_id"] == 4 and any(p["kind"] == "deleted" and p["id"] == 6 for p in d["problems"])' <<<"$out"
# Cut the tail and rewrite the head row to match: only the anchor outside
# the database notices.
last=$(q 'select max(id) from audit_events')
qsu "begin; set local session_replication_role = replica; delete from audit_events where id > $((last - 3)); update audit_head set last_id = $((last - 3)), last_hash = (select hash from audit_events where id = $((last - 3))); commit" >/dev/null
out=$(curl -sS -H "Authorization: Bearer $ADMIN" "$URL/v1/audit/verify")
check "cut tail detected through the anchor" jtrue 'any(p["kind"] == "truncated" for p in d["problems"]) and d["anchor"]["ok"] is False' <<<"$out"

# 7. PostgreSQL down.
stop_serve
# Start over with an intact chain for the outage part.
qsu "begin; set local session_replication_role = replica; truncate audit_events; update audit_head set last_id = 0, last_hash = repeat('0', 64); commit" >/dev/null
rm -f "$T/state/audit-head.json"
check "server restarts" start_serve 2
check "restart did not print a token" test "$(grep -c 'flt_' "$T/serve2.log")" = 0
check "restart kept admin.token" test "$(cat "$T/state/admin.token")" = "$ADMIN"
check "migrations idempotent (one row per version)" test "$(q 'select count(*) from schema_migrations')" = "$(q 'select max(version) from schema_migrations')"
for i in 1 2 3; do
	code POST /v1/tokens "$ADMIN" "{\"role\":\"agent\",\"name\":\"pre-$i\"}" >"$T/c"
	[ "$(cat "$T/c")" = 201 ] && acked+=("$(json 'd["id"]' <"$T/body")")
done
check "3 tokens acknowledged before the outage" test "${#acked[@]}" = 3
"$PG" stop >/dev/null 2>&1
check "PostgreSQL stopped" test "$("$PG" status)" = stopped
check "mutating call -> 503" test "$(code POST /v1/tokens "$ADMIN" '{"role":"agent","name":"during"}')" = 503
check "503 body says the database is unavailable" jtrue 'd["code"] == 503 and "database unavailable" in d["error"]' <"$T/body"
check "DELETE -> 503" test "$(code DELETE "/v1/tokens/${acked[0]}" "$ADMIN")" = 503
check "reads of live state still work (GET /v1/status 200)" test "$(code GET /v1/status "$ADMIN")" = 200
check "GET /v1/audit -> 503" test "$(code GET /v1/audit "$ADMIN")" = 503
out=$("$FLUID" token create --role agent 2>&1); rc=$?
check "fluid token create fails clearly (rc=$rc)" grep -q '503' <<<"$out"
"$PG" start >/dev/null 2>&1
check "PostgreSQL back" test "$("$PG" status)" = running
sleep 0.3
check "mutating call works again after restart" test "$(code POST /v1/tokens "$ADMIN" '{"role":"agent","name":"after"}')" = 201
missing=0
for id in "${acked[@]}"; do [ "$(q "select count(*) from tokens where id='$id' and revoked_at is null")" = 1 ] || missing=$((missing + 1)); done
check "every acknowledged token is there" test $missing = 0
check "nothing from the outage was half-done (no 'during' token)" test "$(q "select count(*) from tokens where name='during'")" = 0
check "first token not revoked by the refused DELETE" test "$(q "select revoked_at is null from tokens where id='${acked[0]}'")" = t
check "each acknowledged POST has its audit rows" \
	test "$(q "select count(*) from audit_events where action='token.create' and details->>'name' like 'pre-%'")" = 3
out=$("$FLUID" audit verify)
check "chain intact after the outage: $out" grep -q '^audit chain ok' <<<"$out"

stop_serve
check "server.stop audited" test "$(q "select action from audit_events order by id desc limit 1")" = server.stop

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
