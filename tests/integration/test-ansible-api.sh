#!/bin/bash
# SPDX-License-Identifier: MIT
# Integration test of the playbook store and API (docs/ansible.md) against a
# real `fluid serve` with a private PostgreSQL (scripts/pg.sh), QEMU under
# TCG and the tiny image:
#  - every /v1/ansible/playbooks endpoint, with the fluid.sh shapes
#  - a bad-input table with exact statuses (names, unknown fields, modules
#    that touch the controller, template-capable conditions, tasks of
#    another playbook, incomplete reorders) and nothing changed by them
#  - POST /v1/sandboxes/{id}/generate/ansible from the sandbox's newest
#    stored diff (a hand-written fixture placed as a diff record), its
#    export clean under yamllint, ansible-lint and --syntax-check, the
#    blobs exported next to it, regeneration replacing it, 404 without a diff
#  - every change audited, the audit chain still verifies
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
FLUID=$ROOT/build/fluid
PG=$ROOT/scripts/pg.sh
[ -x "$FLUID" ] || { echo "build/fluid missing"; exit 1; }
command -v psql >/dev/null || { echo "psql missing (install postgresql)"; exit 1; }
for t in yamllint ansible-lint ansible-playbook; do
	command -v $t >/dev/null || { echo "$t missing (apt-get install yamllint ansible-lint ansible-core)"; exit 1; }
done
if [ ! -f build/images/tiny/image.json ]; then
	./image-build/build-images --only tiny || { echo "cannot build the tiny image"; exit 1; }
fi

T=$(mktemp -d /tmp/fluid-ansible-api-XXXXXX)
chmod 0755 "$T"
export FLUID_STATE_DIR=$T/state
unset FLUID_CONFIG FLUID_LISTEN FLUID_ACCEL FLUID_URL FLUID_TOKEN FLUID_TOKEN_FILE DATABASE_URL FLUID_IMAGE_DIR
spid=""
cleanup() {
	[ -n "$spid" ] && kill -TERM "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
	for p in $(pgrep -f "qemu-system.*$T/state" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
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
jraw() { python3 -c 'import json,sys; d=json.load(sys.stdin); sys.stdout.write(eval(sys.argv[1], {"d": d}))' "$1"; }

"$PG" start >/dev/null 2>&1 || { echo "cannot start PostgreSQL"; exit 1; }
export DATABASE_URL=$("$PG" url)
q() { psql "$DATABASE_URL" -XtAq -v ON_ERROR_STOP=1 -c "$1" 2>&1; }

cat >"$T/config.yaml" <<EOF
server:
  listen: 127.0.0.1:0
accelerator: tcg
images:
  dir: $ROOT/build/images
  default: tiny
  pool_size: 0
EOF
"$FLUID" serve --config "$T/config.yaml" >"$T/serve.log" 2>&1 &
spid=$!
for ((i = 0; i < 300; i++)); do [ -s "$T/state/serve.json" ] && break; sleep 0.1; done
[ -s "$T/state/serve.json" ] || { bad "server started"; cat "$T/serve.log"; exit 1; }
URL=$(json 'd["url"]' <"$T/state/serve.json")
TOK=$(cat "$T/state/admin.token")
AGENT=$(curl -sS -X POST "$URL/v1/tokens" -H "Authorization: Bearer $TOK" -d '{"role":"agent"}' | json 'd["token"]')
ok "server started at $URL"

# code METHOD PATH [BODY]: prints the HTTP status, body into $T/body (agent token)
code() {
	local args=(-sS -o "$T/body" -w '%{http_code}' -X "$1" "$URL$2" -H "Authorization: Bearer $AGENT")
	[ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
	curl "${args[@]}"
}
expect() { # expect NAME STATUS METHOD PATH [BODY]
	local name=$1 want=$2; shift 2
	local got; got=$(code "$@")
	if [ "$got" = "$want" ]; then ok "$name ($want)"; else bad "$name: got $got, want $want: $(head -c 300 "$T/body")"; fi
}

# ---- CRUD -------------------------------------------------------------------
expect "create playbook" 201 POST /v1/ansible/playbooks '{"name":"web.setup_1","hosts":"web","become":true}'
check "create answers {playbook, tasks}" jtrue 'd["playbook"]["name"]=="web.setup_1" and d["playbook"]["hosts"]=="web" and d["tasks"]==[]' <"$T/body"
expect "duplicate name" 409 POST /v1/ansible/playbooks '{"name":"web.setup_1"}'
expect "bad name (slash)" 400 POST /v1/ansible/playbooks '{"name":"a/b"}'
expect "bad name (too long)" 400 POST /v1/ansible/playbooks "{\"name\":\"$(printf 'x%.0s' {1..65})\"}"
expect "bad name (..)" 400 POST /v1/ansible/playbooks '{"name":".."}'
expect "unknown field" 400 POST /v1/ansible/playbooks '{"name":"x1","color":"red"}'
expect "hosts with a template" 400 POST /v1/ansible/playbooks '{"name":"x2","hosts":"{{ evil }}"}'
expect "not JSON" 400 POST /v1/ansible/playbooks 'name=x'

T1='{"name":"Install nginx","module":"apt","params":{"name":["nginx"],"state":"present"}}'
expect "add task" 201 POST /v1/ansible/playbooks/web.setup_1/tasks "$T1"
TID1=$(json 'd["task"]["id"]' <"$T/body")
check "task normalised to FQCN, position 0" jtrue 'd["task"]["module"]=="ansible.builtin.apt" and d["task"]["position"]==0 and d["task"]["params"]["state"]=="present"' <"$T/body"
expect "add second task" 201 POST /v1/ansible/playbooks/web.setup_1/tasks \
	'{"name":"Write index","module":"ansible.builtin.copy","params":{"dest":"/var/www/index.html","content":"hi {{ not_templated }}\n","mode":"0644"}}'
TID2=$(json 'd["task"]["id"]' <"$T/body")
expect "add third task (flagged command)" 201 POST /v1/ansible/playbooks/web.setup_1/tasks \
	'{"name":"Run once","module":"command","params":{"argv":["true"]},"flagged":true,"register":"out","changed_when":"out.rc == 0"}'
TID3=$(json 'd["task"]["id"]' <"$T/body")

expect "module that reads the controller (template)" 400 POST /v1/ansible/playbooks/web.setup_1/tasks '{"name":"T","module":"template","params":{"src":"/etc/shadow","dest":"/x"}}'
expect "copy with a controller src" 400 POST /v1/ansible/playbooks/web.setup_1/tasks '{"name":"C","module":"copy","params":{"src":"/root/.ssh/id_rsa","dest":"/x"}}'
expect "fetch module" 400 POST /v1/ansible/playbooks/web.setup_1/tasks '{"name":"F","module":"fetch","params":{"src":"/etc/passwd","dest":"/tmp"}}'
expect "condition with a call" 400 POST /v1/ansible/playbooks/web.setup_1/tasks '{"name":"L","module":"command","params":{"argv":["true"]},"changed_when":"lookup(\"pipe\", \"id\")"}'
expect "condition with a filter" 400 POST /v1/ansible/playbooks/web.setup_1/tasks '{"name":"L","module":"command","params":{"argv":["true"]},"changed_when":"x | bool"}'
expect "task keyword smuggled (delegate_to)" 400 POST /v1/ansible/playbooks/web.setup_1/tasks '{"name":"D","module":"command","params":{"argv":["id"]},"delegate_to":"localhost"}'
expect "internal params key" 400 POST /v1/ansible/playbooks/web.setup_1/tasks '{"name":"R","module":"command","params":{"_raw_params":"id"}}'
expect "task without params" 400 POST /v1/ansible/playbooks/web.setup_1/tasks '{"name":"N","module":"apt"}'
expect "task on a missing playbook" 404 POST /v1/ansible/playbooks/nope/tasks "$T1"

expect "second playbook" 201 POST /v1/ansible/playbooks "{\"name\":\"other\",\"tasks\":[$T1]}"
OTID=$(json 'd["tasks"][0]["id"]' <"$T/body")
expect "update a task of another playbook" 404 PUT "/v1/ansible/playbooks/web.setup_1/tasks/$OTID" "$T1"
expect "delete a task of another playbook" 404 DELETE "/v1/ansible/playbooks/web.setup_1/tasks/$OTID"
expect "task id not a uuid" 404 DELETE "/v1/ansible/playbooks/web.setup_1/tasks/xyz"
expect "reorder with a foreign task" 400 PATCH /v1/ansible/playbooks/web.setup_1/tasks/reorder "{\"task_ids\":[\"$TID3\",\"$TID2\",\"$OTID\"]}"
expect "reorder missing one" 400 PATCH /v1/ansible/playbooks/web.setup_1/tasks/reorder "{\"task_ids\":[\"$TID3\",\"$TID2\"]}"
expect "reorder repeated" 400 PATCH /v1/ansible/playbooks/web.setup_1/tasks/reorder "{\"task_ids\":[\"$TID3\",\"$TID3\",\"$TID1\"]}"
expect "reorder unknown field" 400 PATCH /v1/ansible/playbooks/web.setup_1/tasks/reorder "{\"ids\":[]}"
expect "other playbook untouched" 200 GET /v1/ansible/playbooks/other
check "other playbook still has its task" jtrue "len(d['tasks'])==1 and d['tasks'][0]['id']=='$OTID'" <"$T/body"
expect "reorder" 200 PATCH /v1/ansible/playbooks/web.setup_1/tasks/reorder "{\"task_ids\":[\"$TID3\",\"$TID1\",\"$TID2\"]}"
check "reorder answers the new order" jtrue "[t['id'] for t in d['tasks']]==['$TID3','$TID1','$TID2'] and [t['position'] for t in d['tasks']]==[0,1,2]" <"$T/body"
expect "update task" 200 PUT "/v1/ansible/playbooks/web.setup_1/tasks/$TID1" '{"name":"Install nginx and curl","module":"apt","params":{"name":["nginx","curl"],"state":"present"}}'
check "update keeps the id and position" jtrue "d['task']['id']=='$TID1' and d['task']['position']==1 and d['task']['params']['name']==['nginx','curl']" <"$T/body"
expect "update with unknown field" 400 PUT "/v1/ansible/playbooks/web.setup_1/tasks/$TID1" '{"name":"x","module":"apt","params":{},"when":"true"}'
expect "get playbook" 200 GET /v1/ansible/playbooks/web.setup_1
check "get shows 3 tasks, 1 flagged" jtrue 'len(d["tasks"])==3 and d["playbook"]["task_count"]==3 and d["playbook"]["flagged"]==1 and d["tasks"][0]["flagged"] is True' <"$T/body"
expect "list" 200 GET "/v1/ansible/playbooks?limit=1"
check "list pages and counts" jtrue 'd["total"]==2 and len(d["playbooks"])==1 and d["playbooks"][0]["name"]=="other"' <"$T/body"
expect "list bad limit" 400 GET "/v1/ansible/playbooks?limit=x"

expect "export" 200 GET /v1/ansible/playbooks/web.setup_1/export
jraw 'd["yaml"]' <"$T/body" >"$T/manual.yml"
check "exported YAML keeps the user's braces literal (!unsafe)" grep -A1 -q 'content: !unsafe' "$T/manual.yml"
check "exported YAML: yamllint" yamllint -s "$T/manual.yml"
check "exported YAML: ansible-lint" ansible-lint -q "$T/manual.yml"
check "exported YAML: syntax-check" ansible-playbook --syntax-check -i localhost, "$T/manual.yml"

# the CLI through the same API
check "fluid playbook list" bash -c "FLUID_URL=$URL FLUID_TOKEN=$AGENT '$FLUID' playbook list | grep -qx web.setup_1"
check "fluid playbook export" bash -c "FLUID_URL=$URL FLUID_TOKEN=$AGENT '$FLUID' playbook export web.setup_1 | cmp -s - '$T/manual.yml'"
check "fluid playbook show (missing) fails" bash -c "! FLUID_URL=$URL FLUID_TOKEN=$AGENT '$FLUID' playbook show nope 2>/dev/null"

expect "delete task" 204 DELETE "/v1/ansible/playbooks/web.setup_1/tasks/$TID3"
expect "get after task delete" 200 GET /v1/ansible/playbooks/web.setup_1
check "positions stay dense after a delete" jtrue "[t['position'] for t in d['tasks']]==[0,1]" <"$T/body"
expect "delete playbook" 204 DELETE /v1/ansible/playbooks/other
expect "deleted playbook is gone" 404 GET /v1/ansible/playbooks/other
check "its tasks went with it" test "$(q "SELECT count(*) FROM playbook_tasks WHERE id = '$OTID'")" = 0
expect "delete missing playbook" 404 DELETE /v1/ansible/playbooks/other

# ---- generate from a sandbox's diff ------------------------------------------
expect "create tiny sandbox" 201 POST /v1/sandboxes '{"base_image":"tiny","agent_id":"t"}'
SID=$(json 'd["sandbox"]["id"]' <"$T/body")
expect "generate without a diff" 404 POST "/v1/sandboxes/$SID/generate/ansible"
expect "generate for a missing sandbox" 404 POST "/v1/sandboxes/nosuch/generate/ansible"
mkdir -p "$T/state/sandboxes/$SID/diffs"
DID=dif_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
python3 - "$ROOT/tests/fixtures/diffs/full.json" "$SID" "$DID" >"$T/state/sandboxes/$SID/diffs/$DID.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
print(json.dumps({"id": sys.argv[3], "sandbox_id": sys.argv[2], "from_snapshot": "a", "to_snapshot": "b",
                  "created_at": "2026-11-29T17:00:00Z", "diff_json": d}))
EOF
expect "generate unknown field" 400 POST "/v1/sandboxes/$SID/generate/ansible" '{"nme":"x"}'
expect "generate" 200 POST "/v1/sandboxes/$SID/generate/ansible"
check "generated playbook is sandbox-<id>, from that diff" jtrue "d['playbook']['name']=='sandbox-$SID' and d['playbook']['diff_id']=='$DID' and d['playbook']['sandbox_id']=='$SID' and len(d['tasks'])>30" <"$T/body"
check "generated playbook lists skipped changes and flags" jtrue 'd["playbook"]["flagged"]>=3 and any(s.get("path")=="/dev-fifo" for s in d["playbook"]["skipped"])' <"$T/body"
check "first tasks are groups, then users" jtrue 'd["tasks"][0]["module"]=="ansible.builtin.group" and any(t["module"]=="ansible.builtin.user" for t in d["tasks"][3:8])' <"$T/body"
N1=$(json 'len(d["tasks"])' <"$T/body")
expect "export generated" 200 GET "/v1/ansible/playbooks/sandbox-$SID/export"
mkdir -p "$T/gen/files"
jraw 'd["yaml"]' <"$T/body" >"$T/gen/playbook.yml"
python3 -c '
import base64, json, sys
d = json.load(open(sys.argv[2]))
for f in d.get("files", []):
    if "content_b64" in f:
        open(sys.argv[1] + "/" + f["src"], "wb").write(base64.b64decode(f["content_b64"]))
' "$T/gen" "$T/body"
check "exported blobs match their sha256" bash -c "cd '$T/gen' && for f in files/*; do [ \"\$(sha256sum \$f | cut -d' ' -f1)\" = \"\${f#files/}\" ] || exit 1; done"
check "generated YAML: yamllint" yamllint -s "$T/gen/playbook.yml"
check "generated YAML: ansible-lint" bash -c "cd '$T/gen' && ansible-lint -q playbook.yml"
check "generated YAML: syntax-check" ansible-playbook --syntax-check -i localhost, "$T/gen/playbook.yml"
expect "regenerate replaces" 200 POST "/v1/sandboxes/$SID/generate/ansible"
check "regenerated has the same task count" jtrue "len(d['tasks'])==$N1" <"$T/body"
expect "generate under a taken name" 409 POST "/v1/sandboxes/$SID/generate/ansible" '{"name":"web.setup_1"}'
expect "generate under a new name" 200 POST "/v1/sandboxes/$SID/generate/ansible" '{"name":"mine","hosts":"prod"}'
check "named generate uses hosts" jtrue 'd["playbook"]["name"]=="mine" and d["playbook"]["hosts"]=="prod"' <"$T/body"
expect "generate bad name" 400 POST "/v1/sandboxes/$SID/generate/ansible" '{"name":"a b"}'

# ---- audit ---------------------------------------------------------------
check "playbook changes are audited" test "$(q "SELECT count(*) FROM audit_events WHERE action LIKE 'playbook.%'")" -ge 12
check "generate audited with the sandbox id" test "$(q "SELECT count(*) FROM audit_events WHERE action = 'playbook.generate' AND sandbox_id = '$SID'")" -ge 2
check "audit chain verifies" jtrue 'd["ok"] is True' < <(curl -sS "$URL/v1/audit/verify" -H "Authorization: Bearer $TOK")
code DELETE "/v1/sandboxes/$SID" >/dev/null

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
