#!/bin/bash
# SPDX-License-Identifier: MIT
# The generated playbook on real guests (debian-12 image, QEMU under TCG,
# real PostgreSQL, real ansible-playbook over SSH):
#  1. a scripted session in a sandbox between two snapshots: a group and a
#     user with a home, a new directory and config file, a one-line edit
#     (lineinfile), a systemd unit created and enabled, a deleted file, a
#     mode change, a symlink, a binary file, a file whose name has quotes
#     and Jinja braces;
#  2. the trusted diff (POST .../diff), the playbook (POST .../generate/ansible),
#     its export clean under yamllint and ansible-lint;
#  3. a fresh clone of the same template, a one-time SSH key written into
#     it through the engine (not through the guest's own SSH), its host key
#     read through the engine and pinned (StrictHostKeyChecking=yes);
#  4. ansible-playbook twice: the first run succeeds, the second reports
#     changed=0 (idempotent);
#  5. the clone's own diff (base -> applied) compared with the sandbox's:
#     every file, package, service, user and group change of the sandbox is
#     reproduced (the residual is empty, apart from what the generator
#     itself lists as skipped).
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
FLUID=$ROOT/build/fluid
PG=$ROOT/scripts/pg.sh
[ -x "$FLUID" ] || { echo "build/fluid missing"; exit 1; }
for t in psql yamllint ansible-lint ansible-playbook ssh-keygen; do
	command -v $t >/dev/null || { echo "$t missing"; exit 1; }
done
[ -f build/images/debian-12/image.json ] || { echo "build/images/debian-12 missing (image-build/build-images --only debian-12)"; exit 1; }

T=$(mktemp -d /tmp/fluid-ansible-vm-XXXXXX)
chmod 0755 "$T"
export FLUID_STATE_DIR=$T/state
unset FLUID_CONFIG FLUID_LISTEN FLUID_ACCEL FLUID_URL FLUID_TOKEN FLUID_TOKEN_FILE DATABASE_URL FLUID_IMAGE_DIR
spid=""
cleanup() {
	[ -n "$spid" ] && kill -TERM "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
	for p in $(pgrep -f "qemu-system.*$T/state" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
	"$PG" stop >/dev/null 2>&1
	[ -n "${CM:-}" ] && rm -rf "$CM"
	[ -n "${KEEP:-}" ] || rm -rf "$T"
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

code() { # code METHOD PATH [BODY]: status; body in $T/body
	local args=(-sS -o "$T/body" -w '%{http_code}' -X "$1" "$URL$2" -H "Authorization: Bearer $TOK" --max-time 1800)
	[ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
	curl "${args[@]}"
}
must() { # must NAME STATUS METHOD PATH [BODY]
	local name=$1 want=$2; shift 2
	local got; got=$(code "$@")
	if [ "$got" = "$want" ]; then ok "$name"; else bad "$name: got $got: $(head -c 400 "$T/body")"; exit 1; fi
}
run() { # run SANDBOX SHELL-COMMAND: fails the test on a non-zero exit
	local body; body=$(python3 -c 'import json,sys; print(json.dumps({"command": sys.argv[1], "timeout_sec": 600}))' "$2")
	local got; got=$(code POST "/v1/sandboxes/$1/run" "$body")
	if [ "$got" != 200 ] || ! jtrue 'd["command"]["exit_code"]==0' <"$T/body"; then
		bad "command failed: $2: $(head -c 600 "$T/body")"; exit 1
	fi
}

# ---- 1. the session ---------------------------------------------------------
must "create the sandbox (debian-12)" 201 POST /v1/sandboxes '{"base_image":"debian-12","agent_id":"t"}'
SID=$(json 'd["sandbox"]["id"]' <"$T/body")
# "before" is the template's state: the target clone starts from it too
must "snapshot before" 201 POST "/v1/sandboxes/$SID/snapshots" '{"name":"before"}'
run "$SID" 'groupadd -g 2001 devs && useradd -m -u 2001 -g devs -G users -s /bin/bash alice'
run "$SID" "mkdir -p /etc/hello && printf 'greeting = hi\n' > /etc/hello/hello.conf && chmod 0640 /etc/hello/hello.conf && chgrp devs /etc/hello/hello.conf"
run "$SID" "sed -i '1s/.*/Authorized use only/' /etc/issue.net && grep -qx 'Authorized use only' /etc/issue.net"
run "$SID" "printf '#!/bin/sh\nexec sleep infinity\n' > /usr/local/bin/hello && chmod 0755 /usr/local/bin/hello"
run "$SID" "printf '[Unit]\nDescription=Hello\n\n[Service]\nExecStart=/usr/local/bin/hello\n\n[Install]\nWantedBy=multi-user.target\n' > /etc/systemd/system/hello.service && systemctl daemon-reload && systemctl enable --now hello.service"
run "$SID" "rm /etc/motd && chmod 0600 /etc/issue.net && ln -s /etc/hello/hello.conf /etc/hello.conf"
run "$SID" "head -c 3000 /dev/urandom > /opt/blob.bin && printf 'literal {{ not_a_template }}\n' > '/opt/we{{ird}} \"name\": x' && sync"
must "snapshot after" 201 POST "/v1/sandboxes/$SID/snapshots" '{"name":"after"}'

# ---- 2. diff and playbook ------------------------------------------------------
must "trusted diff" 200 POST "/v1/sandboxes/$SID/diff" '{"from_snapshot":"before","to_snapshot":"after"}'
cp "$T/body" "$T/diff.json"
check "diff: user, group, unit, deletion" jtrue '[u["name"] for u in d["diff"]["diff_json"]["users_added"]]==["alice"] and any(g["name"]=="devs" for g in d["diff"]["diff_json"]["groups_added"]) and any(s["name"]=="hello.service" for s in d["diff"]["diff_json"]["services_changed"]) and any(f["path"]=="/etc/motd" for f in d["diff"]["diff_json"]["files_removed"])' <"$T/diff.json"
must "generate the playbook" 200 POST "/v1/sandboxes/$SID/generate/ansible"
cp "$T/body" "$T/generated.json"
check "playbook: lineinfile for the one-line edit" jtrue 'any(t["module"]=="ansible.builtin.lineinfile" and t["params"]["path"]=="/etc/issue.net" for t in d["tasks"])' <"$T/generated.json"
check "playbook: no flagged task for this session" jtrue 'd["playbook"]["flagged"]==0' <"$T/generated.json"
must "export" 200 GET "/v1/ansible/playbooks/sandbox-$SID/export"
mkdir -p "$T/pb/files"
jraw 'd["yaml"]' <"$T/body" >"$T/pb/playbook.yml"
python3 -c '
import base64, json, sys
d = json.load(open(sys.argv[2]))
for f in d.get("files", []):
    open(sys.argv[1] + "/" + f["src"], "wb").write(base64.b64decode(f["content_b64"]))
' "$T/pb" "$T/body"
check "export: yamllint -s" yamllint -s "$T/pb/playbook.yml"
check "export: ansible-lint" bash -c "cd '$T/pb' && ansible-lint -q --offline playbook.yml >'$T/lint.log' 2>&1 || { cat '$T/lint.log'; exit 1; }"

# ---- 3. a fresh clone, key injected and host key pinned through the engine ----
must "create the target clone" 201 POST /v1/sandboxes '{"base_image":"debian-12","agent_id":"rehearsal"}'
RID=$(json 'd["sandbox"]["id"]' <"$T/body")
must "snapshot target base" 201 POST "/v1/sandboxes/$RID/snapshots" '{"name":"base"}'
ssh-keygen -q -t ed25519 -N '' -C fluid-test -f "$T/key"
st=$(curl -sS -o "$T/body" -w '%{http_code}' -X PUT "$URL/v1/sandboxes/$RID/files?path=/root/.ssh/authorized_keys&mode=0600&mkdirs=true" \
	-H "Authorization: Bearer $TOK" --data-binary @"$T/key.pub")
check "one-time key written through the engine" test "${st:0:1}" = 2
PORT=$(json 'd["ssh_port"]' <"$T/state/sandboxes/$RID/sandbox.json")
curl -sS -f "$URL/v1/sandboxes/$RID/files?path=/etc/ssh/ssh_host_ed25519_key.pub" -H "Authorization: Bearer $TOK" >"$T/hostkey.pub"
check "host key read through the engine" grep -q '^ssh-ed25519 ' "$T/hostkey.pub"
echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$T/hostkey.pub")" >"$T/known_hosts"
cat >"$T/inventory" <<EOF
target ansible_host=127.0.0.1 ansible_port=$PORT ansible_user=root ansible_python_interpreter=/usr/bin/python3
EOF
CM=$(mktemp -d /tmp/fl-ssh-XXXXXX) # control sockets: short path (108-byte limit)
cat >"$T/ansible.cfg" <<EOF
[defaults]
host_key_checking = True
stdout_callback = json
local_tmp = $T/ansible-tmp
retry_files_enabled = False
[ssh_connection]
pipelining = True
ssh_args = -o UserKnownHostsFile=$T/known_hosts -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o ControlMaster=auto -o ControlPersist=30s -o ControlPath=$CM/%C
EOF
apply() {
	(cd "$T/pb" && ANSIBLE_CONFIG=$T/ansible.cfg ansible-playbook -i "$T/inventory" --private-key "$T/key" \
		--timeout 120 playbook.yml) >"$T/run$1.json" 2>"$T/run$1.err"
}
# a wrong pinned key is refused (no trust on first use)
cp "$T/known_hosts" "$T/known_hosts.good"
echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$T/key.pub")" >"$T/known_hosts"
if apply 0; then bad "a wrong host key is refused"; else ok "a wrong host key is refused"; fi
cp "$T/known_hosts.good" "$T/known_hosts"

# ---- 4. apply twice ------------------------------------------------------------
if apply 1; then ok "first run succeeds"; else bad "first run: $(tail -c 2000 "$T/run1.json") $(tail -c 800 "$T/run1.err")"; fi
check "first run changed something, no failures" jtrue 'd["stats"]["target"]["changed"]>0 and d["stats"]["target"]["failures"]==0 and d["stats"]["target"]["unreachable"]==0' <"$T/run1.json"
if apply 2; then ok "second run succeeds"; else bad "second run: $(tail -c 800 "$T/run2.err")"; fi
check "second run reports changed=0 (idempotent)" jtrue 'd["stats"]["target"]["changed"]==0 and d["stats"]["target"]["failures"]==0' <"$T/run2.json"
jtrue 'd["stats"]["target"]["changed"]==0' <"$T/run2.json" ||
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))
for p in d["plays"]:
    for t in p["tasks"]:
        for h, r in t["hosts"].items():
            if r.get("changed"): print("  changed on 2nd run:", t["task"]["name"])' "$T/run2.json"

# ---- 5. residual: the clone's diff against the sandbox's -----------------------
must "snapshot target applied" 201 POST "/v1/sandboxes/$RID/snapshots" '{"name":"applied"}'
must "target diff" 200 POST "/v1/sandboxes/$RID/diff" '{"from_snapshot":"base","to_snapshot":"applied","ignore":["/root/.ssh","/root/.ssh/**","/root/.ansible","/root/.ansible/**"]}'
cp "$T/body" "$T/target-diff.json"
python3 - "$T/diff.json" "$T/target-diff.json" "$T/generated.json" >"$T/residual.txt" <<'EOF'
import json, sys
want = json.load(open(sys.argv[1]))["diff"]["diff_json"]
got = json.load(open(sys.argv[2]))["diff"]["diff_json"]
skipped = {s.get("path") or s.get("item") for s in json.load(open(sys.argv[3]))["playbook"]["skipped"]}
def files(d):
    out = {}
    for e in d["files_added"]:
        out[e["path"]] = ("present", e["type"], e.get("mode"), e.get("owner"), e.get("group"), e.get("sha256"), e.get("target"))
    for e in d["files_modified"]:
        n = e["new"]
        out[e["path"]] = ("present", n["type"], n.get("mode"), n.get("owner"), n.get("group"), n.get("sha256"), n.get("target"))
    for e in d["files_removed"]:
        out[e["path"]] = ("absent",)
    return out
res = []
a, b = files(want), files(got)
for p in sorted(set(a) | set(b)):
    if p in skipped: continue
    if a.get(p) != b.get(p):
        res.append(f"file {p}: sandbox {a.get(p)} rehearsal {b.get(p)}")
for k in ("packages_added", "packages_removed", "packages_upgraded", "users_added", "users_removed", "groups_added", "groups_removed"):
    x = sorted(json.dumps(e, sort_keys=True) for e in want[k] if e.get("name") not in skipped or k not in ("users_added",))
    y = sorted(json.dumps(e, sort_keys=True) for e in got[k])
    if k == "users_added":  # password presence is not reproduced by design
        x = sorted(json.dumps({kk: vv for kk, vv in json.loads(e).items() if kk != "password"}, sort_keys=True) for e in x)
        y = sorted(json.dumps({kk: vv for kk, vv in json.loads(e).items() if kk != "password"}, sort_keys=True) for e in y)
    if x != y:
        res.append(f"{k}: sandbox {x} rehearsal {y}")
sa = sorted((s["name"], s["state"], s["enabled"]) for s in want["services_changed"])
sb = sorted((s["name"], s["state"], s["enabled"]) for s in got["services_changed"])
if sa != sb:
    res.append(f"services: sandbox {sa} rehearsal {sb}")
if res:
    print("\n".join(res))
EOF
if [ -s "$T/residual.txt" ]; then bad "residual is empty"; sed 's/^/  /' "$T/residual.txt"; else ok "residual is empty (the playbook reproduces the diff)"; fi

code DELETE "/v1/sandboxes/$RID" >/dev/null
code DELETE "/v1/sandboxes/$SID" >/dev/null
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
