#!/bin/bash
# SPDX-License-Identifier: MIT
# The change pipeline as one job (POST /v1/sandboxes/{id}/changes, GET
# /v1/changes/{id}) on debian-12 guests under TCG with a real PostgreSQL and
# real ansible-playbook: diff -> playbook -> rehearsal on a fresh clone.
#  1. an expressible session (a package from a local APT repository the
#     host serves, user, group, config file, one-line edit, enabled unit,
#     deletion, mode change, symlink): the job reports its
#     stages, ends "verified" with an empty residual, both runs ok and the
#     second one changed nothing; the playbook is stored; the clone is gone.
#  2. a session with what the generator cannot express (a FIFO) and what it
#     can only flag (a supplementary group removed with gpasswd): the job
#     ends "unverified", the FIFO is in the residual with the generator's
#     reason, the flagged task is counted.
#  3. bad input: unknown fields, bad names, unknown change ids.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
FLUID=$ROOT/build/fluid
PG=$ROOT/scripts/pg.sh
[ -x "$FLUID" ] || { echo "build/fluid missing"; exit 1; }
for t in psql ansible-playbook ssh-keygen; do command -v $t >/dev/null || { echo "$t missing"; exit 1; }; done
[ -f build/images/debian-12/image.json ] || { echo "build/images/debian-12 missing"; exit 1; }

T=$(mktemp -d /tmp/fluid-rehearsal-XXXXXX)
chmod 0755 "$T"
export FLUID_STATE_DIR=$T/state
unset FLUID_CONFIG FLUID_LISTEN FLUID_ACCEL FLUID_URL FLUID_TOKEN FLUID_TOKEN_FILE DATABASE_URL FLUID_IMAGE_DIR
spid="" rpid=""
cleanup() {
	[ -n "$spid" ] && kill -TERM "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
	[ -n "$rpid" ] && kill "$rpid" 2>/dev/null
	for p in $(pgrep -f "qemu-system.*$T/state" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
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

# A local APT repository served from the host (guests see it at 10.0.2.2):
# Debian's hello fetched with apt-get download, or a package built here
# when the host's apt cannot download; no outside network for the guests.
mkdir -p "$T/repo"
if (cd "$T/repo" && apt-get download hello >/dev/null 2>&1) && ls "$T/repo"/hello_*.deb >/dev/null 2>&1; then
	PKG=hello
else
	d=$T/debsrc; PKG=fluid-hello
	mkdir -p $d/DEBIAN $d/usr/bin
	printf 'Package: fluid-hello\nVersion: 1.2-3\nArchitecture: all\nMaintainer: fluid tests <t@example.invalid>\nDescription: test package\n' >$d/DEBIAN/control
	printf '#!/bin/sh\necho hello\n' >$d/usr/bin/fluid-hello; chmod 755 $d/usr/bin/fluid-hello
	dpkg-deb --root-owner-group -b $d "$T/repo/fluid-hello.deb" >/dev/null
fi
(cd "$T/repo" && dpkg-scanpackages -m . >Packages 2>/dev/null)
RPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$T/repo" "$RPORT" >/dev/null 2>&1 &
rpid=$!

"$PG" start >/dev/null 2>&1 || { echo "cannot start PostgreSQL"; exit 1; }
export DATABASE_URL=$("$PG" url)
cat >"$T/config.yaml" <<EOF
server:
  listen: 127.0.0.1:0
accelerator: tcg
images:
  dir: $ROOT/build/images
  default: debian-12
  pool_size: 0
EOF
"$FLUID" serve --config "$T/config.yaml" >"$T/serve.log" 2>&1 &
spid=$!
for ((i = 0; i < 300; i++)); do [ -s "$T/state/serve.json" ] && break; sleep 0.1; done
[ -s "$T/state/serve.json" ] || { bad "server started"; cat "$T/serve.log"; exit 1; }
URL=$(json 'd["url"]' <"$T/state/serve.json")
TOK=$(cat "$T/state/admin.token")
ok "server started at $URL"

code() {
	local args=(-sS -o "$T/body" -w '%{http_code}' -X "$1" "$URL$2" -H "Authorization: Bearer $TOK" --max-time 1800)
	[ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
	curl "${args[@]}"
}
must() {
	local name=$1 want=$2; shift 2
	local got; got=$(code "$@")
	if [ "$got" = "$want" ]; then ok "$name"; else bad "$name: got $got: $(head -c 400 "$T/body")"; exit 1; fi
}
expect() {
	local name=$1 want=$2; shift 2
	local got; got=$(code "$@")
	if [ "$got" = "$want" ]; then ok "$name ($want)"; else bad "$name: got $got, want $want: $(head -c 300 "$T/body")"; fi
}
run() {
	local body; body=$(python3 -c 'import json,sys; print(json.dumps({"command": sys.argv[1], "timeout_sec": 600}))' "$2")
	local got; got=$(code POST "/v1/sandboxes/$1/run" "$body")
	if [ "$got" != 200 ] || ! jtrue 'd["command"]["exit_code"]==0' <"$T/body"; then
		bad "command failed: $2: $(head -c 600 "$T/body")"; exit 1
	fi
}
# wait_change ID: polls until the job leaves "running" (progress printed), body in $T/change.json
wait_change() {
	local last=""
	for ((i = 0; i < 1800; i++)); do
		code GET "/v1/changes/$1" >/dev/null
		cp "$T/body" "$T/change.json"
		local st; st=$(json 'd["change"]["state"] + " " + d["change"]["stage"] + " " + str(d["change"].get("rehearsal_stage") or "")' <"$T/change.json")
		[ "$st" != "$last" ] && echo "     ... $st" && last=$st
		[[ "$st" != running* ]] && return 0
		sleep 2
	done
	return 1
}

# ---- 3. bad input first (cheap) --------------------------------------------------
must "create the sandbox" 201 POST /v1/sandboxes '{"base_image":"debian-12","agent_id":"t"}'
SID=$(json 'd["sandbox"]["id"]' <"$T/body")
expect "changes: unknown field" 400 POST "/v1/sandboxes/$SID/changes" '{"from_snapshot":"a","to_snapshot":"b","x":1}'
expect "changes: missing to_snapshot" 400 POST "/v1/sandboxes/$SID/changes" '{"from_snapshot":"a"}'
expect "changes: bad snapshot name" 400 POST "/v1/sandboxes/$SID/changes" '{"from_snapshot":"../a","to_snapshot":"b"}'
expect "changes: bad playbook name" 400 POST "/v1/sandboxes/$SID/changes" '{"from_snapshot":"a","to_snapshot":"b","name":"a b"}'
expect "changes: unknown sandbox" 404 POST "/v1/sandboxes/nosuch/changes" '{"from_snapshot":"a","to_snapshot":"b"}'
expect "change: unknown id" 404 GET "/v1/changes/chg_00000000000000000000000000000000"
expect "change: malformed id" 404 GET "/v1/changes/..%2Fserve"

# ---- 1. an expressible session -------------------------------------------------------
# "before" is the template's state: the rehearsal clone starts from it too
must "snapshot before" 201 POST "/v1/sandboxes/$SID/snapshots" '{"name":"before"}'
run "$SID" "echo 'deb [trusted=yes] http://10.0.2.2:$RPORT/ ./' > /etc/apt/sources.list && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $PKG >/dev/null && dpkg -s $PKG >/dev/null"
run "$SID" 'groupadd -g 2001 devs && useradd -m -u 2001 -g devs -s /bin/bash alice'
run "$SID" "mkdir -p /etc/hello && printf 'greeting = hi\n' > /etc/hello/hello.conf && sed -i '1s/.*/Authorized use only/' /etc/issue.net && grep -qx 'Authorized use only' /etc/issue.net"
run "$SID" "printf '#!/bin/sh\nexec sleep infinity\n' > /usr/local/bin/hello && chmod 0755 /usr/local/bin/hello && printf '[Unit]\nDescription=Hello\n\n[Service]\nExecStart=/usr/local/bin/hello\n\n[Install]\nWantedBy=multi-user.target\n' > /etc/systemd/system/hello.service && systemctl daemon-reload && systemctl enable --now hello.service"
run "$SID" "rm /etc/motd && chmod 0600 /etc/issue.net && ln -s /etc/hello/hello.conf /etc/hello.conf && sync"
must "snapshot after" 201 POST "/v1/sandboxes/$SID/snapshots" '{"name":"after"}'
must "start the change job" 202 POST "/v1/sandboxes/$SID/changes" '{"from_snapshot":"before","to_snapshot":"after"}'
CID=$(json 'd["change"]["id"]' <"$T/body")
check "job starts running" jtrue 'd["change"]["state"]=="running" and d["change"]["id"].startswith("chg_")' <"$T/body"
check "job finishes" wait_change "$CID"
check "change verified" jtrue 'd["change"]["state"]=="verified" and d["change"]["verified"] is True and d["change"]["residual"]==[]' <"$T/change.json" ||
	python3 -c 'import json,sys; c=json.load(sys.stdin)["change"]; print(json.dumps({k: c.get(k) for k in ("state","error","residual","rehearsal")}, indent=1)[:4000])' <"$T/change.json"
check "two runs, the second changed nothing" jtrue 'len(d["change"]["rehearsal"]["runs"])==2 and d["change"]["rehearsal"]["runs"][1]["changed"]==0 and d["change"]["rehearsal"]["idempotent"] is True' <"$T/change.json"
check "stages timed" jtrue 'all(k in d["change"]["stages_ms"] for k in ("diff","playbook","rehearsal","total"))' <"$T/change.json"
check "the playbook installs $PKG after writing the APT source" jtrue "(lambda t: [i for i,x in enumerate(t) if x['name'].startswith('Write file /etc/apt/sources.list') or x['name'].startswith('Set one line in /etc/apt/sources.list')][0] < [i for i,x in enumerate(t) if x['module']=='ansible.builtin.apt'][0] and any('$PKG=' in n for x in t if x['module']=='ansible.builtin.apt' for n in x['params']['name']))(d['tasks'])" < <(code GET "/v1/ansible/playbooks/sandbox-$SID" >/dev/null; cat "$T/body")
check "diff and playbook recorded" jtrue 'd["change"]["diff_id"].startswith("dif_") and d["change"]["playbook"].startswith("sandbox-")' <"$T/change.json"
expect "the playbook is stored" 200 GET "/v1/ansible/playbooks/sandbox-$SID"
CLONE=$(json 'd["change"]["rehearsal"]["clone_id"]' <"$T/change.json")
expect "the rehearsal clone is gone" 404 GET "/v1/sandboxes/$CLONE"

# ---- 2. what cannot be expressed shows up ---------------------------------------------
run "$SID" 'usermod -a -G audio alice && sync'
must "snapshot before2" 201 POST "/v1/sandboxes/$SID/snapshots" '{"name":"before2"}'
run "$SID" 'mkfifo -m 0600 /opt/pipe && gpasswd -d alice audio && sync'
must "snapshot after2" 201 POST "/v1/sandboxes/$SID/snapshots" '{"name":"after2"}'
must "start the second job" 202 POST "/v1/sandboxes/$SID/changes" '{"from_snapshot":"before2","to_snapshot":"after2","name":"second"}'
CID2=$(json 'd["change"]["id"]' <"$T/body")
check "second job finishes" wait_change "$CID2"
check "second change unverified" jtrue 'd["change"]["state"]=="unverified" and d["change"]["verified"] is False' <"$T/change.json"
check "the FIFO is residual, with the generator's reason" jtrue 'any(r["name"]=="/opt/pipe" and "generator" in r for r in d["change"]["residual"])' <"$T/change.json"
check "the gpasswd task is flagged" jtrue 'd["change"]["flagged"]>=1' <"$T/change.json"
python3 -c 'import json,sys; c=json.load(sys.stdin)["change"]; print("     residual:", json.dumps(c["residual"])[:1500])' <"$T/change.json"

code DELETE "/v1/sandboxes/$SID" >/dev/null
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
