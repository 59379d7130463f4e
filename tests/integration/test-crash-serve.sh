#!/bin/bash
# SPDX-License-Identifier: MIT
# kill -9 of `fluid serve` in the middle of creates and execs, then a
# restart: every acknowledged sandbox and command is still there and
# consistent with the running VMs, and no QEMU runs that no sandbox owns.
# Real server, real PostgreSQL, real QEMU (TCG, tiny image).
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
T=$(mktemp -d /tmp/fluid-crash-XXXXXX)
chmod 0755 "$T"
spid=
cleanup() {
	[ -n "$spid" ] && kill -9 "$spid" 2>/dev/null
	[ -n "${lpid:-}" ] && kill "$lpid" 2>/dev/null
	FLUID_STATE_DIR=$T/state scripts/pg.sh stop >/dev/null 2>&1
	for p in $(pgrep -f "qemu-system.*$T/state" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT
unset FLUID_STATE_DIR FLUID_URL FLUID_TOKEN FLUID_TOKEN_FILE DATABASE_URL FLUID_IMAGE_DIR

pass=0 fail=0
check() { local n=$1; shift; if "$@"; then echo "ok   - $n"; pass=$((pass + 1)); else echo "FAIL - $n"; fail=$((fail + 1)); fi; }

[ -f build/images/tiny/image.json ] || ./image-build/build-images --only tiny || exit 1
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
  max_sandboxes: 16
EOF
FLUID_STATE_DIR=$T/state scripts/pg.sh start >"$T/pg.log" 2>&1 || { cat "$T/pg.log"; exit 1; }
export DATABASE_URL
DATABASE_URL=$(FLUID_STATE_DIR=$T/state scripts/pg.sh url)

start_serve() {
	rm -f "$T/state/serve.json"
	build/fluid serve --config "$T/config.yaml" >>"$T/serve.log" 2>&1 &
	spid=$!
	for _ in $(seq 600); do
		[ -f "$T/state/serve.json" ] && break
		sleep 0.1
	done
	URL=http://$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["listen"])' "$T/state/serve.json")
	TOKEN=$(cat "$T/state/admin.token")
}
check "server starts" start_serve
api() { curl -sS -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' "$@"; }

# Load: create sandboxes and run commands until the server dies; record
# what the server acknowledged (2xx with an id).
: >"$T/acked-sandboxes"
: >"$T/acked-commands"
(
	while :; do
		r=$(api -X POST "$URL/v1/sandboxes" -d '{"base_image":"tiny"}' -w '\n%{http_code}') || break
		[ "${r##*$'\n'}" = 201 ] || continue
		id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["sandbox"]["id"])' "${r%$'\n'*}")
		echo "$id" >>"$T/acked-sandboxes"
		for k in 1 2 3; do
			r=$(api -X POST "$URL/v1/sandboxes/$id/run" -d "{\"command\":\"echo run-$k\"}" -w '\n%{http_code}') || break 2
			[ "${r##*$'\n'}" = 200 ] || continue
			python3 -c 'import json,sys; c=json.loads(sys.argv[1])["command"]; print(sys.argv[2], c["id"], c["stdout"].strip())' \
				"${r%$'\n'*}" "$id" >>"$T/acked-commands"
		done
	done
) >/dev/null 2>&1 &
lpid=$!
# Let a few creates and commands through, then kill in the middle of more.
for _ in $(seq 600); do
	[ "$(wc -l <"$T/acked-commands")" -ge 4 ] && break
	sleep 0.1
done
sleep 0.7
kill -9 "$spid"
wait "$spid" 2>/dev/null
spid=
wait "$lpid" 2>/dev/null
lpid=
check "some sandboxes were acknowledged before the kill" test "$(wc -l <"$T/acked-sandboxes")" -ge 2
check "some commands were acknowledged before the kill" test "$(wc -l <"$T/acked-commands")" -ge 4

check "server restarts" start_serve
list=$(api "$URL/v1/sandboxes?limit=100")
while read -r id; do
	st=$(api "$URL/v1/sandboxes/$id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["sandbox"]["state"])' 2>/dev/null)
	check "acknowledged sandbox $id is there ($st)" test "$st" = RUNNING -o "$st" = STOPPED
	if [ "$st" = RUNNING ]; then
		out=$(api -X POST "$URL/v1/sandboxes/$id/run" -d '{"command":"echo alive"}' |
			python3 -c 'import json,sys; print(json.load(sys.stdin)["command"]["stdout"].strip())' 2>/dev/null)
		check "running sandbox $id answers" test "$out" = alive
	fi
done <"$T/acked-sandboxes"
while read -r id cid text; do
	got=$(api "$URL/v1/sandboxes/$id/commands/$cid" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["command"]["stdout"].strip())' 2>/dev/null)
	check "acknowledged command $cid is recorded" test "$got" = "$text"
done <"$T/acked-commands"

# Every QEMU of this state dir belongs to a listed sandbox or the warm pool.
running=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(sum(s["state"] == "RUNNING" for s in d["sandboxes"]))' "$list")
warm=$(api "$URL/v1/status" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("engine", {}).get("warm_pool", 0))')
qemus=$(pgrep -fc "qemu-system.*$T/state/sandboxes" || true)
check "no orphan QEMU ($qemus = $running running + at most $warm warm + 1 refilling)" \
	test "$qemus" -le $((running + warm + 1)) -a "$qemus" -ge "$running"
check "audit chain intact" test "$(api "$URL/v1/audit/verify" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ok"])')" = True

echo
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
