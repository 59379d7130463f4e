#!/bin/bash
# SPDX-License-Identifier: MIT
# API benchmarks: starts a private PostgreSQL cluster and `fluid serve` (tiny
# image, TCG, warm pool of 2) in a temporary state dir, then runs
# bench/api_bench.py against it, which prints the JSON result lines:
#   api_create_to_exec   HTTP create + first exec (warm pool refilled between runs)
#   api_exec_rtt         POST /run of `true` on a running sandbox
#   api_load             10 sandboxes, concurrent GETs and execs for 20 s (10 s --quick):
#                        throughput, p50/p99, and the error count (must be 0)
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
T=$(mktemp -d /tmp/fluid-bench-api-XXXXXX)
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
[ -f build/images/tiny/image.json ] || ./image-build/build-images --only tiny >&2 || exit 1
make -s build/fluid >&2 || exit 1

cat >"$T/config.yaml" <<EOF
server:
  listen: 127.0.0.1:0
state_dir: $T/state
accelerator: tcg
images:
  dir: $ROOT/build/images
  default: tiny
  pool_size: 2
limits:
  max_sandboxes: 16
EOF
FLUID_STATE_DIR=$T/state scripts/pg.sh start >"$T/pg.log" 2>&1 || { cat "$T/pg.log" >&2; exit 1; }
export DATABASE_URL
DATABASE_URL=$(FLUID_STATE_DIR=$T/state scripts/pg.sh url)
build/fluid serve --config "$T/config.yaml" >"$T/serve.log" 2>&1 &
spid=$!
for _ in $(seq 300); do
	[ -f "$T/state/serve.json" ] && [ -f "$T/state/admin.token" ] && break
	sleep 0.2
done
URL=http://$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["listen"])' "$T/state/serve.json")
FLUID_URL=$URL FLUID_TOKEN=$(cat "$T/state/admin.token") python3 bench/api_bench.py || {
	tail -20 "$T/serve.log" >&2
	exit 1
}
