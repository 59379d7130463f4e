#!/bin/bash
# SPDX-License-Identifier: MIT
# change_pipeline: the change job end to end through the API on debian-12
# (TCG, private PostgreSQL): a session that adds a user and a group, writes
# 20 files, edits a config line and enables a unit; then POST
# /v1/sandboxes/{id}/changes (trusted diff -> playbook -> rehearsal on a
# fresh clone) and the job's own stage timings. Prints
#   change_pipeline            total, with {"stages": {...}, "state", "files"}
#   change_pipeline_diff       the trusted diff stage
#   change_pipeline_playbook   generating and storing the playbook
#   change_pipeline_rehearsal  fresh clone + two ansible-playbook runs + diff of the clone
# One sample each (a run takes minutes under TCG); --quick skips the rehearsal.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
T=$(mktemp -d /tmp/fluid-bench-change-XXXXXX)
chmod 0755 "$T"
spid=
cleanup() {
	[ -n "$spid" ] && kill -TERM "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
	FLUID_STATE_DIR=$T/state scripts/pg.sh stop >/dev/null 2>&1
	for p in $(pgrep -f "qemu-system.*$T/state" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT
unset FLUID_URL FLUID_TOKEN FLUID_TOKEN_FILE DATABASE_URL FLUID_IMAGE_DIR
[ -f build/images/debian-12/image.json ] || ./image-build/build-images --only debian-12 >&2 || exit 1
make -s build/fluid >&2 || exit 1

cat >"$T/config.yaml" <<EOF
server:
  listen: 127.0.0.1:0
state_dir: $T/state
accelerator: tcg
images:
  dir: $ROOT/build/images
  default: debian-12
  pool_size: 0
EOF
FLUID_STATE_DIR=$T/state scripts/pg.sh start >"$T/pg.log" 2>&1 || { cat "$T/pg.log" >&2; exit 1; }
DATABASE_URL=$(FLUID_STATE_DIR=$T/state scripts/pg.sh url)
export DATABASE_URL
build/fluid serve --config "$T/config.yaml" >"$T/serve.log" 2>&1 &
spid=$!
for _ in $(seq 300); do
	[ -f "$T/state/serve.json" ] && [ -f "$T/state/admin.token" ] && break
	sleep 0.2
done
URL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$T/state/serve.json")
TOK=$(cat "$T/state/admin.token")

api() { # METHOD PATH [BODY] -> body on stdout; fails on HTTP errors
	local args=(-sS -f -X "$1" "$URL$2" -H "Authorization: Bearer $TOK" --max-time 1800)
	[ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
	curl "${args[@]}"
}
jget() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {"d": d}))' "$1"; }
run() {
	local body
	body=$(python3 -c 'import json,sys; print(json.dumps({"command": sys.argv[1], "timeout_sec": 600}))' "$2")
	[ "$(api POST "/v1/sandboxes/$1/run" "$body" | jget 'd["command"]["exit_code"]')" = 0 ] ||
		{ echo "change bench: command failed: $2" >&2; exit 1; }
}

SID=$(api POST /v1/sandboxes '{"base_image":"debian-12","agent_id":"bench"}' | jget 'd["sandbox"]["id"]') || exit 1
api POST "/v1/sandboxes/$SID/snapshots" '{"name":"before"}' >/dev/null || exit 1
run "$SID" 'groupadd -g 2001 devs && useradd -m -u 2001 -g devs -s /bin/bash alice'
run "$SID" 'mkdir -p /opt/bench && for i in $(seq 1 20); do printf "file %s\nline two\n" $i > /opt/bench/f$i.conf; done'
run "$SID" "sed -i '1s/.*/Authorized use only/' /etc/issue.net"
run "$SID" "printf '[Unit]\nDescription=B\n\n[Service]\nExecStart=/bin/sleep infinity\n\n[Install]\nWantedBy=multi-user.target\n' > /etc/systemd/system/bench.service && systemctl daemon-reload && systemctl enable bench.service && sync"
api POST "/v1/sandboxes/$SID/snapshots" '{"name":"after"}' >/dev/null || exit 1
rehearse=true
[ "${FLUID_BENCH_QUICK:-0}" = 1 ] && rehearse=false
CID=$(api POST "/v1/sandboxes/$SID/changes" "{\"from_snapshot\":\"before\",\"to_snapshot\":\"after\",\"rehearse\":$rehearse}" |
	jget 'd["change"]["id"]') || exit 1
for _ in $(seq 1800); do
	api GET "/v1/changes/$CID" >"$T/change.json" || exit 1
	[ "$(jget 'd["change"]["state"]' <"$T/change.json")" != running ] && break
	sleep 1
done
python3 - "$T/change.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))["change"]
if c["state"] not in ("verified", "unverified"):
    sys.exit("change bench: the job ended %s: %s" % (c["state"], c.get("error")))
st = c["stages_ms"]
def line(name, ms, **extra):
    print(json.dumps(dict(name=name, unit="ms", n=1, p50=ms, p95=ms, **extra)))
line("change_pipeline", st["total"], stages=st, state=c["state"], residual=len(c.get("residual") or []))
for k in ("diff", "playbook", "rehearsal"):
    if k in st:
        line("change_pipeline_" + k, st[k])
EOF
