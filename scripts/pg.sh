#!/bin/bash
# SPDX-License-Identifier: MIT
# A private PostgreSQL cluster for fluid under the state dir, reachable only
# through a unix socket there (no TCP).
#
#   scripts/pg.sh start    initdb on first use, start, create role+db "fluid"
#   scripts/pg.sh stop     fast shutdown (nothing to do when not running)
#   scripts/pg.sh status   prints running|stopped; exit 0 when running, 3 when not
#   scripts/pg.sh url      prints the libpq URL (postgresql:///fluid?host=...&user=fluid)
#   scripts/pg.sh psql ... runs psql against the cluster
#
# State: ${FLUID_STATE_DIR:-<checkout>/.state}/pg/{data,run,postgres.log}.
# initdb and postgres refuse to run as root, so when called as root the
# cluster belongs to the unprivileged system user ${FLUID_PG_USER:-fluid}
# (created with useradd --system when missing). Every command is idempotent.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${FLUID_STATE_DIR:-$ROOT/.state}
case "$STATE" in /*) ;; *) STATE=$PWD/$STATE ;; esac
PGROOT=$STATE/pg
DATA=$PGROOT/data
SOCK=$PGROOT/run
LOG=$PGROOT/postgres.log
OSUSER=${FLUID_PG_USER:-fluid}
DB=fluid
ROLE=fluid

die() { echo "pg: $*" >&2; exit 1; }

bindir() {
	local d best=""
	for d in /usr/lib/postgresql/*/bin; do
		[ -x "$d/initdb" ] && best=$d
	done
	[ -n "$best" ] || best=$(dirname "$(command -v initdb 2>/dev/null || true)")
	[ -x "$best/initdb" ] || die "PostgreSQL server binaries not found (install postgresql)"
	echo "$best"
}

is_root() { [ "$(id -u)" = 0 ]; }

# Runs a command as the cluster owner.
as_owner() {
	if is_root; then
		runuser -u "$OSUSER" -- "$@"
	else
		"$@"
	fi
}

ensure_user() {
	is_root || return 0
	if ! id -u "$OSUSER" >/dev/null 2>&1; then
		useradd --system --user-group --no-create-home --home-dir /nonexistent \
			--shell /usr/sbin/nologin "$OSUSER" ||
			die "cannot create the system user $OSUSER"
	fi
	# The owner must be able to reach the state dir through its parents;
	# the state dir itself (0750 when fluid created it) gets o+x, search only.
	mkdir -p "$STATE"
	runuser -u "$OSUSER" -- test -x "$STATE" 2>/dev/null || chmod o+x "$STATE"
	if ! runuser -u "$OSUSER" -- test -x "$STATE"; then
		die "user $OSUSER cannot reach $STATE (a parent directory is not searchable; chmod o+x it or set FLUID_STATE_DIR)"
	fi
}

running() {
	[ -f "$DATA/PG_VERSION" ] || return 1
	as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

init_cluster() {
	mkdir -p "$STATE"
	mkdir -p "$PGROOT"
	if is_root; then chown "$OSUSER:" "$PGROOT"; fi
	chmod 0700 "$PGROOT"
	as_owner mkdir -p "$SOCK"
	as_owner chmod 0700 "$SOCK"
	[ -f "$DATA/PG_VERSION" ] && return 0
	# A half-done initdb leaves a data dir without PG_VERSION: start over.
	as_owner rm -rf "$DATA"
	if ! as_owner "$BIN/initdb" -D "$DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
		--auth-local=trust --auth-host=reject >"$PGROOT/initdb.log" 2>&1; then
		cat "$PGROOT/initdb.log" >&2
		die "initdb failed"
	fi
	as_owner tee -a "$DATA/postgresql.conf" >/dev/null <<-EOF
		# fluid: private cluster, unix socket only
		listen_addresses = ''
		unix_socket_directories = '$SOCK'
		unix_socket_permissions = 0700
	EOF
}

psql_admin() {
	as_owner "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -U postgres -d postgres "$@"
}

cmd_start() {
	ensure_user
	init_cluster
	if running; then
		echo "pg: already running ($SOCK)" >&2
	else
		as_owner "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 -s start >/dev/null ||
			{ tail -n 20 "$LOG" >&2 || true; die "cannot start PostgreSQL (log: $LOG)"; }
		echo "pg: started ($SOCK)" >&2
	fi
	if [ "$(psql_admin -tAc "select 1 from pg_roles where rolname = '$ROLE'")" != 1 ]; then
		psql_admin -c "create role $ROLE login"
	fi
	if [ "$(psql_admin -tAc "select 1 from pg_database where datname = '$DB'")" != 1 ]; then
		psql_admin -c "create database $DB owner $ROLE"
	fi
}

cmd_stop() {
	if ! running; then
		echo "pg: not running" >&2
		return 0
	fi
	as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 -s stop >/dev/null
	echo "pg: stopped" >&2
}

cmd_status() {
	if running; then
		echo running
		return 0
	fi
	echo stopped
	return 3
}

urlencode() {
	local s=$1 out="" c i
	for ((i = 0; i < ${#s}; i++)); do
		c=${s:i:1}
		case "$c" in
		[A-Za-z0-9._~-]) out+=$c ;;
		*) out+=$(printf '%%%02X' "'$c") ;;
		esac
	done
	echo "$out"
}

cmd_url() { echo "postgresql:///$DB?host=$(urlencode "$SOCK")&user=$ROLE"; }

[ $# -ge 1 ] || { sed -n '3,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
BIN=$(bindir)
case "$1" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
url) cmd_url ;;
psql) shift; exec "$BIN/psql" -X "$(cmd_url)" "$@" ;;
*) sed -n '3,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
