#!/bin/bash
# SPDX-License-Identifier: MIT
# Integration test for scripts/pg.sh and scripts/run.sh: a private
# PostgreSQL cluster under a temporary state dir (initdb as the unprivileged
# `fluid` user when run as root), reachable over its unix socket only;
# start/stop/status are idempotent; run.sh starts it, serves, and stops it
# again when fluid exits.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
T=$(mktemp -d)
chmod 0755 "$T" # the cluster owner must reach it
export FLUID_STATE_DIR=$T/state
unset DATABASE_URL FLUID_CONFIG FLUID_LISTEN FLUID_ACCEL
runpid=""
cleanup() {
	[ -n "$runpid" ] && kill -TERM "$runpid" 2>/dev/null && wait "$runpid" 2>/dev/null
	"$ROOT/scripts/pg.sh" stop >/dev/null 2>&1
	rm -rf "$T"
}
trap cleanup EXIT

pass=0 fail=0
check() { local name=$1; shift; if "$@"; then echo "ok   - $name"; pass=$((pass + 1)); else echo "FAIL - $name"; fail=$((fail + 1)); fi; }
PG=$ROOT/scripts/pg.sh

out=$("$PG" status); rc=$?
check "status before start: stopped, exit 3" test "$out/$rc" = "stopped/3"
check "first start (initdb + start)" "$PG" start
check "status: running" test "$("$PG" status)" = running
URL=$("$PG" url)
check "url is a unix-socket URL: $URL" grep -q "^postgresql:///fluid?host=%2F.*&user=fluid$" <<<"$URL"
check "psql select 1 over the socket" test "$(psql "$URL" -XtAc 'select 1')" = 1
check "connected as role fluid to db fluid" test "$(psql "$URL" -XtAc 'select current_user || current_database()')" = fluidfluid
check "no TCP listener" test "$(psql "$URL" -XtAc 'show listen_addresses')" = ""
check "socket is in the state dir" test -S "$T/state/pg/run/.s.PGSQL.5432"
if [ "$(id -u)" = 0 ]; then
	check "cluster owned by the fluid system user" test "$(stat -c %U "$T/state/pg/data")" = fluid
fi
out=$("$PG" start 2>&1)
check "second start is idempotent: $out" grep -q 'already running' <<<"$out"
check "still answers" test "$(psql "$URL" -XtAc 'select 2')" = 2
check "stop" "$PG" stop
check "status after stop: stopped" test "$("$PG" status)" = stopped
check "second stop is idempotent" "$PG" stop
check "restart keeps the data" "$PG" start
check "answers after restart" test "$(psql "$URL" -XtAc 'select 3')" = 3
"$PG" stop >/dev/null 2>&1

# run.sh: private cluster up while fluid serves, down after SIGTERM.
if [ -x build/fluid ]; then
	cat >"$T/config.yaml" <<-EOF
		server:
		  listen: 127.0.0.1:0
		accelerator: tcg
	EOF
	FLUID_SKIP_IMAGES=1 FLUID_CONFIG=$T/config.yaml "$ROOT/scripts/run.sh" >"$T/run.log" 2>&1 &
	runpid=$!
	for ((i = 0; i < 300; i++)); do [ -s "$T/state/serve.json" ] && break; sleep 0.1; done
	check "run.sh started fluid serve" test -s "$T/state/serve.json"
	url=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$T/state/serve.json" 2>/dev/null)
	check "health through run.sh" test "$(curl -sS "$url/v1/health")" = '{"status":"ok"}'
	check "run.sh started the private cluster" test "$("$PG" status)" = running
	kill -TERM "$runpid"
	wait "$runpid"
	rc=$?
	runpid=""
	check "run.sh exits 0 after SIGTERM (rc=$rc)" test $rc -eq 0
	check "private cluster stopped with fluid" test "$("$PG" status)" = stopped
	grep -q 'received Terminated' "$T/run.log" || cat "$T/run.log"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
