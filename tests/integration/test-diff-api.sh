#!/bin/bash
# SPDX-License-Identifier: MIT
# The trusted diff through the HTTP API and the CLI (docs/diff.md), against a
# real `fluid serve` with QEMU (TCG) and the tiny image, without a database
# (command records as files): POST /v1/sandboxes/{id}/diff between a snapshot
# and "live" lists exactly the files changed and the API commands run in
# between (not those before the first snapshot), GET .../diffs/{diff_id}
# returns the stored record, bad input gets the right statuses, and
# `fluid diff` prints the summary.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
FLUID=$ROOT/build/fluid
[ -x "$FLUID" ] || { echo "build/fluid missing (make build/fluid)"; exit 1; }
[ -x "$ROOT/build/fluid-inspect" ] || { echo "build/fluid-inspect missing"; exit 1; }
[ -f build/images/tiny/image.json ] || { echo "build/images/tiny missing"; exit 1; }

T=$(mktemp -d /tmp/fluid-diffapi-XXXXXX)
spid=
cleanup() {
	if [ -n "$spid" ]; then
		kill -TERM "$spid" 2>/dev/null
		wait "$spid" 2>/dev/null
	fi
	for p in $(pgrep -f "qemu-system.*$T/state" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT
unset FLUID_STATE_DIR FLUID_ACCEL FLUID_LISTEN FLUID_URL FLUID_TOKEN FLUID_TOKEN_FILE DATABASE_URL FLUID_IMAGE_DIR FLUID_INSPECT

pass=0 fail=0
ok() { echo "ok   - $1"; pass=$((pass + 1)); }
bad() { echo "FAIL - $1"; fail=$((fail + 1)); }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {"d": d}))' "$1"; }
jtrue() { python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if eval(sys.argv[1], {"d": d}) else 1)' "$1"; }

cat >"$T/config.yaml" <<EOF
server:
  listen: 127.0.0.1:0
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
[ -s "$T/state/serve.json" ] || { bad "server started"; cat "$T/serve.log"; exit 1; }
URL=$(json 'd["url"]' <"$T/state/serve.json")
ok "server started at $URL"

req() {
	local args=(-sS -o "$T/resp" -w '%{http_code}' -X "$1" "$URL$2")
	[ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
	code=$(curl "${args[@]}")
	body=$(cat "$T/resp")
}
run() { req POST "/v1/sandboxes/$SB/run" "$(python3 -c 'import json,sys; print(json.dumps({"command": sys.argv[1]}))' "$1")"; }

req POST /v1/sandboxes '{"base_image":"tiny","agent_id":"diff-test"}'
check "create -> 201" test "$code" = 201
SB=$(json 'd["sandbox"]["id"]' <<<"$body")

run "echo before > /root/before && sync"
check "command before the first snapshot" test "$code" = 200
sleep 1.2 # snapshot times have 1 s resolution
req POST "/v1/sandboxes/$SB/snapshots" '{"name":"a"}'
check "snapshot a -> 201" test "$code" = 201
sleep 1.2
run "mkdir -p /srv && echo two > /srv/two && rm /root/before && sync"
run "chmod 600 /etc/profile; false"
req POST "/v1/sandboxes/$SB/diff" '{"from_snapshot":"a","to_snapshot":"live"}'
check "POST diff a..live -> 200" test "$code" = 200
cp "$T/resp" "$T/diff1.json"; [ -n "${TEST_VERBOSE:-}" ] && cp "$T/resp" /tmp/diff-api-1.json
check "Diff shape (id, sandbox_id, from/to, created_at, diff_json)" jtrue \
	'set(d["diff"]) == {"id","sandbox_id","from_snapshot","to_snapshot","created_at","diff_json"} and d["diff"]["from_snapshot"] == "a" and d["diff"]["to_snapshot"].startswith("live-")' <"$T/diff1.json"
check "files: exactly /srv/two added, /root/before removed, /etc/profile mode" jtrue \
	'[f["path"] for f in d["diff"]["diff_json"]["files_added"]] == ["/srv/two"] and [f["path"] for f in d["diff"]["diff_json"]["files_removed"]] == ["/root/before"] and [(f["path"], f["changes"]) for f in d["diff"]["diff_json"]["files_modified"]] == [("/etc/profile", ["mode"])]' <"$T/diff1.json"
check "commands_run: the two commands after snapshot a, with exit codes" jtrue \
	'[(c["cmd"], c["exit_code"]) for c in d["diff"]["diff_json"]["commands_run"]] == [("mkdir -p /srv && echo two > /srv/two && rm /root/before && sync", 0), ("chmod 600 /etc/profile; false", 1)]' <"$T/diff1.json"
check "API.md keys present" jtrue \
	'all(k in d["diff"]["diff_json"] for k in ["files_modified","files_added","files_removed","packages_added","packages_removed","services_changed","commands_run"])' <"$T/diff1.json"
DID=$(json 'd["diff"]["id"]' <"$T/diff1.json")
LIVE=$(json 'd["diff"]["to_snapshot"]' <"$T/diff1.json")
req GET "/v1/sandboxes/$SB/snapshots"
check "the live snapshot exists" jtrue "any(s['name'] == '$LIVE' for s in d['snapshots'])" <<<"$body"

req GET "/v1/sandboxes/$SB/diffs/$DID"
check "GET diffs/{id} -> 200" test "$code" = 200
check "GET returns the stored record" python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); b=json.loads(sys.argv[2]); sys.exit(0 if a == b else 1)' "$T/diff1.json" "$body"

req POST "/v1/sandboxes/$SB/diff" '{"from_snapshot":"a","to_snapshot":"a"}'
check "same snapshot twice -> 400" test "$code" = 400
req POST "/v1/sandboxes/$SB/diff" '{"from_snapshot":"a","to_snapshot":"nope"}'
check "unknown snapshot -> 404" test "$code" = 404
req POST "/v1/sandboxes/$SB/diff" '{"from_snapshot":"a","to_snapshot":"b","bogus":1}'
check "unknown field -> 400" test "$code" = 400
req POST "/v1/sandboxes/$SB/diff" '{"from_snapshot":"../x","to_snapshot":"a"}'
check "bad snapshot name -> 400" test "$code" = 400
req POST "/v1/sandboxes/nosuch/diff" '{"from_snapshot":"a","to_snapshot":"b"}'
check "unknown sandbox -> 404" test "$code" = 404
req GET "/v1/sandboxes/$SB/diffs/dif_0123"
check "malformed diff id -> 404" test "$code" = 404
req GET "/v1/sandboxes/$SB/diffs/dif_00000000000000000000000000000000"
check "unknown diff id -> 404" test "$code" = 404

# extra ignore patterns for one diff
req POST "/v1/sandboxes/$SB/diff" '{"from_snapshot":"a","to_snapshot":"'"$LIVE"'","ignore":["/srv/**"]}'
check "ignore: /srv/** hides /srv/two" jtrue \
	'd["diff"]["diff_json"]["files_added"] == [] and d["diff"]["diff_json"]["ignored"]["count"] == 1' <<<"$body"

out=$("$FLUID" diff "$SB" a "$LIVE" --url "$URL" 2>&1)
check "fluid diff prints the summary" grep -q '^A /srv/two file$' <<<"$out"
check "fluid diff shows the commands" grep -q '^\$ chmod 600 /etc/profile; false  (exit 1' <<<"$out"
out=$("$FLUID" diff get "$SB" "$DID" --json --url "$URL" 2>&1)
check "fluid diff get --json" jtrue "d['diff']['id'] == '$DID'" <<<"$out"
"$FLUID" diff "$SB" a nope --url "$URL" >/dev/null 2>&1
check "fluid diff exit status on error" test $? = 1

req DELETE "/v1/sandboxes/$SB"
check "destroy -> 200" test "$code" = 200
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
