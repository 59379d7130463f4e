#!/bin/bash
# SPDX-License-Identifier: MIT
# The server and docs/openapi.json agree:
#  - every route the binary registers (`fluid routes`) is in the document
#    with the same method and path template;
#  - every operation in the document is routed, unless marked
#    "x-fluid-planned": true (contract paths not served yet); a planned
#    operation that is routed fails too (drop the marker);
#  - every path of API.md (both compatibility sets and fluid's own, listed
#    below) is in the document;
#  - the document is well formed (OpenAPI 3, $refs resolve, every {param}
#    of a path is declared, every operation has responses and an operationId,
#    operationIds are unique, the error shape is the API.md one);
#  - a live `fluid serve` serves the same bytes at GET /v1/openapi.json, and
#    answers every documented, non-planned operation with something other
#    than the router's 404 "no such endpoint" or 405.
set -u
cd "$(dirname "$0")/../.."
FLUID=$PWD/build/fluid
DOC=$PWD/docs/openapi.json
[ -x "$FLUID" ] || { echo "build/fluid missing"; exit 1; }

T=$(mktemp -d)
spid=
cleanup() {
	[ -n "$spid" ] && kill -TERM "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
	# VMs outlive the daemon by design: stop any this test's server made.
	for p in $(pgrep -f "qemu-system.*$T/" 2>/dev/null); do kill "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT
unset FLUID_STATE_DIR FLUID_ACCEL FLUID_LISTEN FLUID_URL FLUID_TOKEN DATABASE_URL

pass=0 fail=0
ok() { echo "ok   - $1"; pass=$((pass + 1)); }
bad() { echo "FAIL - $1"; fail=$((fail + 1)); }

"$FLUID" routes >"$T/routes" || { bad "fluid routes runs"; exit 1; }
ok "fluid routes lists $(wc -l <"$T/routes") routes"

# The paths of API.md (../shared/API.md), which the document must describe.
cat >"$T/contract" <<'EOF'
POST /v1/sandboxes
GET /v1/sandboxes/{id}
POST /v1/sandboxes/{id}/start
POST /v1/sandboxes/{id}/stop
DELETE /v1/sandboxes/{id}
POST /v1/sandboxes/{id}/command
POST /api/v1/tmux/panes/send-keys
POST /api/v1/tmux/panes/read
POST /v1/sandboxes/{id}/snapshots
GET /v1/sandboxes/{id}/snapshots
POST /v1/sandboxes/{id}/snapshots/{name}/restore
POST /api/v1/human/ask
GET /v1/health
GET /v1/vms
GET /v1/sandboxes
GET /v1/sandboxes/{id}/commands
POST /v1/sandboxes/{id}/run
GET /v1/sandboxes/{id}/ip
POST /v1/sandboxes/{id}/sshkey
POST /v1/sandboxes/{id}/snapshot
POST /v1/sandboxes/{id}/diff
POST /v1/sandboxes/{id}/generate/ansible
GET /v1/ansible/playbooks
POST /v1/ansible/playbooks
GET /v1/ansible/playbooks/{name}
DELETE /v1/ansible/playbooks/{name}
GET /v1/ansible/playbooks/{name}/export
POST /v1/ansible/playbooks/{name}/tasks
PUT /v1/ansible/playbooks/{name}/tasks/{task_id}
DELETE /v1/ansible/playbooks/{name}/tasks/{task_id}
PATCH /v1/ansible/playbooks/{name}/tasks/reorder
POST /v1/access/request
GET /v1/access/ca-pubkey
GET /v1/access/certificate/{id}
DELETE /v1/access/certificate/{id}
GET /v1/access/certificates
GET /v1/sandboxes/{id}/stream
POST /v1/sandboxes/{id}/exec
GET /v1/sandboxes/{id}/files
PUT /v1/sandboxes/{id}/files
DELETE /v1/sandboxes/{id}/files
GET /v1/sandboxes/{id}/files/list
DELETE /v1/sandboxes/{id}/snapshots/{name}
POST /v1/sandboxes/{id}/changes
GET /v1/changes/{id}
POST /v1/approvals
GET /v1/approvals
GET /v1/approvals/{id}
POST /v1/approvals/{id}/approve
POST /v1/approvals/{id}/reject
POST /v1/approvals/{id}/apply
GET /v1/audit
GET /v1/audit/verify
GET /v1/status
GET /metrics
GET /v1/hosts
GET /v1/openapi.json
EOF

# 1-3: static comparison and document checks (one line per problem).
python3 - "$DOC" "$T/routes" "$T/contract" >"$T/static.out" 2>&1 <<'EOF'
import json, re, sys
doc = json.load(open(sys.argv[1]))
contract = {tuple(l.split()) for l in open(sys.argv[3]) if l.strip()}
routes = set()
for line in open(sys.argv[2]):
    m, p, _role = line.split()
    routes.add((m, p))
METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
documented, planned = set(), set()
problems = []
if not str(doc.get("openapi", "")).startswith("3."):
    problems.append("document: openapi is not 3.x")
op_ids = {}
def resolve(ref):
    node = doc
    for part in ref.lstrip("#/").split("/"):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
def walk(node, where):
    if isinstance(node, dict):
        if "$ref" in node and resolve(node["$ref"]) is None:
            problems.append(f"{where}: unresolved $ref {node['$ref']}")
        for k, v in node.items():
            walk(v, where)
    elif isinstance(node, list):
        for v in node:
            walk(v, where)
for path, item in doc["paths"].items():
    tmpl = set(re.findall(r"{([^}]+)}", path))
    for method, op in item.items():
        if method not in METHODS:
            continue
        key = (method.upper(), path)
        documented.add(key)
        if op.get("x-fluid-planned"):
            planned.add(key)
        where = f"{method.upper()} {path}"
        if not op.get("operationId"):
            problems.append(f"{where}: no operationId")
        elif op["operationId"] in op_ids:
            problems.append(f"{where}: operationId {op['operationId']} also used by {op_ids[op['operationId']]}")
        else:
            op_ids[op["operationId"]] = where
        if not op.get("responses"):
            problems.append(f"{where}: no responses")
        declared = {p["name"] for p in op.get("parameters", []) + item.get("parameters", []) if p.get("in") == "path"}
        if declared != tmpl:
            problems.append(f"{where}: path parameters {sorted(declared)} do not match the template {sorted(tmpl)}")
        walk(op, where)
err = doc["components"]["schemas"].get("Error", {})
if sorted(err.get("required", [])) != ["code", "details", "error"]:
    problems.append("document: Error schema is not {error, code, details}")
for m, p in sorted(routes - documented):
    problems.append(f"routed but not in the document: {m} {p}")
for m, p in sorted(documented - routes - planned):
    problems.append(f"in the document but not routed (mark it x-fluid-planned if it is not served yet): {m} {p}")
for m, p in sorted(planned & routes):
    problems.append(f"routed but marked x-fluid-planned in the document (drop the marker): {m} {p}")
for m, p in sorted(contract - documented):
    problems.append(f"API.md path missing from the document: {m} {p}")
for pr in problems:
    print(pr)
print(f"SUMMARY routes={len(routes)} documented={len(documented)} planned={len(planned)} problems={len(problems)}", file=sys.stderr)
# Operations to probe live: documented and routed.
with open(sys.argv[2] + ".live", "w") as f:
    for m, p in sorted(documented & routes):
        f.write(f"{m} {p}\n")
sys.exit(1 if problems else 0)
EOF
rc=$?
cat "$T/static.out"
if [ $rc -eq 0 ]; then ok "document and router agree ($(tail -1 "$T/static.out" | sed 's/SUMMARY //'))"; else bad "document and router disagree (see above)"; fi

# 4: a live server serves the document and routes what it documents.
cat >"$T/config.yaml" <<EOF
server:
  listen: 127.0.0.1:0
state_dir: $T/state
accelerator: tcg
images:
  dir: $T/no-images
  pool_size: 0
EOF
mkdir -p "$T/no-images"
"$FLUID" serve --config "$T/config.yaml" >"$T/serve.log" 2>&1 &
spid=$!
for ((i = 0; i < 600; i++)); do [ -s "$T/state/serve.json" ] && break; sleep 0.1; done
if [ ! -s "$T/state/serve.json" ]; then
	bad "server started"; tail -20 "$T/serve.log"; exit 1
fi
URL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$T/state/serve.json")
AUTH=()
tokfile=$(ls "$T"/state/*token* "$T"/state/*/admin*token* 2>/dev/null | head -1)
[ -n "$tokfile" ] && [ -f "$tokfile" ] && AUTH=(-H "Authorization: Bearer $(tr -d '\n' <"$tokfile")")

code=$(curl -sS -o "$T/served.json" -w '%{http_code}' "${AUTH[@]}" "$URL/v1/openapi.json")
if [ "$code" = 200 ] && cmp -s "$T/served.json" "$DOC"; then
	ok "GET /v1/openapi.json serves docs/openapi.json byte for byte"
else
	bad "GET /v1/openapi.json: status $code, same bytes: $(cmp -s "$T/served.json" "$DOC" && echo yes || echo no)"
fi
ctype=$(curl -sS -o /dev/null -w '%{content_type}' "${AUTH[@]}" "$URL/v1/openapi.json")
[ "$ctype" = application/json ] && ok "served as application/json" || bad "content type '$ctype'"

live_bad=0 live_n=0
while read -r m p; do
	[ "$p" = /v1/sandboxes/{id}/stream ] && continue # WebSocket: test-stream.sh
	url=$URL$(sed 's/{[^}]*}/fluid-openapi-probe/g' <<<"$p")
	# Harmless probes: ids that do not exist, bodies with an unknown field
	# (rejected before anything happens), short timeouts.
	code=$(curl -sS -m 20 -o "$T/probe.out" -w '%{http_code}' -X "$m" "${AUTH[@]}" \
		-H 'Content-Type: application/json' \
		$([ "$m" != GET ] && [ "$m" != DELETE ] && echo --data '{"fluid_openapi_probe":1}') "$url" 2>/dev/null)
	live_n=$((live_n + 1))
	if [ "$code" = 000 ]; then
		echo "     $m $p -> no answer in 20 s"
		live_bad=$((live_bad + 1))
	elif [ "$code" = 405 ] || { [ "$code" = 404 ] && grep -q '"no such endpoint"' "$T/probe.out"; }; then
		echo "     $m $p -> $code $(head -c 200 "$T/probe.out")"
		live_bad=$((live_bad + 1))
	fi
done <"$T/routes.live"
[ $live_bad -eq 0 ] && ok "live server routes all $live_n documented operations it serves" ||
	bad "$live_bad of $live_n documented operations not routed by the live server"

code=$(curl -sS -o "$T/probe.out" -w '%{http_code}' "${AUTH[@]}" "$URL/v1/not-in-the-document")
[ "$code" = 404 ] && grep -q '"code":404' "$T/probe.out" && ok "an undocumented path is 404 with the error shape" ||
	bad "undocumented path -> $code $(cat "$T/probe.out")"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
