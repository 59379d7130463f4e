#!/bin/bash
# SPDX-License-Identifier: MIT
# The generated playbooks against the real tools: for every diff fixture in
# tests/fixtures/diffs/, `fluid playbook generate --out` must give a playbook
# that is clean under `yamllint -s` (warnings count) and `ansible-lint`,
# passes `ansible-playbook --syntax-check`, and reads back through Ansible's
# own YAML loader with every task parameter equal to the generator's JSON
# and every string containing '{' loaded as unsafe (never templated).
# The blobs written to files/ match their sha256 names.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
FLUID=$ROOT/build/fluid
[ -x "$FLUID" ] || { echo "build/fluid missing"; exit 1; }
for t in yamllint ansible-lint ansible-playbook; do
	command -v $t >/dev/null || { echo "$t missing (apt-get install yamllint ansible-lint ansible-core)"; exit 1; }
done
T=$(mktemp -d /tmp/fluid-ansible-lint-XXXXXX)
trap 'rm -rf "$T"' EXIT

pass=0 fail=0
ok() { echo "ok   - $1"; pass=$((pass + 1)); }
bad() { echo "FAIL - $1"; fail=$((fail + 1)); }
check() { local name=$1; shift; if "$@" >"$T/out" 2>&1; then ok "$name"; else bad "$name"; cat "$T/out"; fi; }

roundtrip() { # roundtrip PLAYBOOK.yml PLAYBOOK.json
	# the interpreter Ansible itself runs with (its modules are there)
	local py; py=$(head -1 "$(command -v ansible-playbook)" | sed -n 's/^#! *\([^ ]*\).*/\1/p')
	"${py:-/usr/bin/python3}" - "$1" "$2" <<'EOF'
import json, sys
from ansible.parsing.yaml.loader import AnsibleLoader
from ansible.utils.unsafe_proxy import AnsibleUnsafe
doc = AnsibleLoader(open(sys.argv[1], encoding="utf-8").read()).get_single_data()
pb = json.load(open(sys.argv[2], encoding="utf-8"))
play = doc[0]
assert play["become"] is True and play["gather_facts"] is False
tasks = play.get("tasks") or []
assert len(tasks) == len(pb["tasks"]), (len(tasks), len(pb["tasks"]))
def same(want, got, where):
    if isinstance(want, str):
        assert isinstance(got, str) and str(got) == want, (where, want, got)
        assert isinstance(got, AnsibleUnsafe) == ("{" in want), ("unsafe tag", where, want)
    elif isinstance(want, bool) or isinstance(want, int):
        assert got == want and type(got) == type(want), (where, want, got)
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), (where, want, got)
        for i, (w, g) in enumerate(zip(want, got)):
            same(w, g, f"{where}[{i}]")
    elif isinstance(want, dict):
        assert isinstance(got, dict), (where, got)
        for k, v in want.items():
            assert k in got, (where, k)
            same(v, got[k], f"{where}.{k}")
for i, (t, y) in enumerate(zip(pb["tasks"], tasks)):
    assert y["name"] == t["name"], (i, y["name"], t["name"])
    same(t["params"], y[t["module"]], f"task {i} {t['name']!r}")
    for k in ("register", "changed_when", "failed_when", "environment"):
        if k in t:
            same(t[k], y[k], f"task {i} {k}")
print(f"{len(tasks)} tasks read back exactly")
EOF
}

for fx in "$ROOT"/tests/fixtures/diffs/*.json; do
	n=$(basename "$fx" .json)
	d=$T/$n
	"$FLUID" playbook generate "$fx" --out "$d" 2>"$T/gen.err" || { bad "$n: generate"; cat "$T/gen.err"; continue; }
	"$FLUID" playbook generate "$fx" --json >"$d/playbook.json" || { bad "$n: generate --json"; continue; }
	ok "$n: generated"
	check "$n: yamllint -s" yamllint -s "$d/playbook.yml"
	check "$n: ansible-lint" bash -c "cd '$d' && ansible-lint -q --offline playbook.yml"
	check "$n: ansible-playbook --syntax-check" ansible-playbook --syntax-check -i localhost, "$d/playbook.yml"
	check "$n: Ansible's loader reads back every parameter, braces unsafe" roundtrip "$d/playbook.yml" "$d/playbook.json"
	check "$n: blobs match their names" bash -c "cd '$d' && for f in files/*; do [ -e \"\$f\" ] || continue; [ \"\$(sha256sum \"\$f\" | cut -d' ' -f1)\" = \"\${f#files/}\" ] || exit 1; done"
done
# the default yamllint config (not only -s) and a missing file
check "full: yamllint default config" yamllint "$T/full/playbook.yml"
if "$FLUID" playbook generate "$T/nonexistent.json" >/dev/null 2>&1; then bad "missing diff file fails"; else ok "missing diff file fails"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
