#!/bin/bash
# SPDX-License-Identifier: MIT
# Guest images: both built-in images exist and are well-formed, a cached
# build-images run is a fast silent no-op, and tiny boots under TCG with the
# standard device set to the agent start, with its virtio-serial port present.
# (test-images-debian.sh boots debian-12.)
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
IMAGES=${FLUID_IMAGE_DIR:-$ROOT/build/images}
pass=0 fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }

# Make sure the images are there (a no-op after `make test`'s build-images).
./image-build/build-images >/tmp/test-images.$$.log 2>&1 || { cat /tmp/test-images.$$.log; bad "build-images"; }
rm -f /tmp/test-images.$$.log

# A second run is a no-op: well under a second, at most one line of output.
start=$(date +%s%N)
out=$(./image-build/build-images 2>&1); rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
echo "cached build-images run: ${ms} ms"
check "cached build-images exits 0" [ $rc -eq 0 ]
check "cached build-images under 1 s (${ms} ms)" [ $ms -lt 1000 ]
check "cached build-images prints at most one line" [ "$(printf '%s' "$out" | grep -c .)" -le 1 ]

for name in tiny debian-12; do
	d=$IMAGES/$name
	check "$name: build/images/$name is a symlink to a complete image" \
		bash -c '[ -L "$1" ] && [ -f "$1/.complete" ]' _ "$d"
	for f in vmlinuz initrd.img disk.qcow2 image.json; do
		check "$name: $f present and non-empty" [ -s "$d/$f" ]
	done
	check "$name: image.json well-formed" python3 - "$d" "$name" <<'PY'
import json, os, sys
d, name = sys.argv[1], sys.argv[2]
j = json.load(open(os.path.join(d, "image.json")))
for k in ("name", "cmdline", "memory_mb", "inputs_hash", "built_at", "size", "disk_virtual_size"):
    assert k in j, "missing " + k
assert j["name"] == name, j["name"]
assert "root=/dev/vda" in j["cmdline"] and "console=ttyS0" in j["cmdline"], j["cmdline"]
assert isinstance(j["memory_mb"], int) and j["memory_mb"] >= 128
assert os.path.basename(os.path.realpath(d)) == name + "-" + j["inputs_hash"]
assert j["size"]["disk_qcow2"] == os.path.getsize(os.path.join(d, "disk.qcow2"))
print("  %s: qcow2 %.1f MiB, virtual %d MiB, kernel %s (%s)" % (name,
    j["size"]["disk_qcow2"] / 2**20, j["disk_virtual_size"] // 2**20, j.get("kernel"), j.get("kernel_format")))
PY
	check "$name: qemu-img check" qemu-img check -q "$d/disk.qcow2"
	check "$name: disk is qcow2 without a backing file" bash -c \
		'qemu-img info --output=json "$1" | python3 -c "import json,sys; j=json.load(sys.stdin); assert j[\"format\"]==\"qcow2\" and \"backing-filename\" not in j"' _ "$d/disk.qcow2"
	check "$name: image.json agent_sha256 is build/fluid-agent's" bash -c \
		'[ "$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[\"agent_sha256\"])" "$1/image.json")" = "$(sha256sum <"$2" | cut -d" " -f1)" ]' \
		_ "$d" "${FLUID_AGENT:-$ROOT/build/fluid-agent}"
	check "$name: agent inside the disk matches image.json agent_sha256" bash -c '
		t=$(mktemp); trap "rm -f $t $t.raw" EXIT
		qemu-img convert -O raw "$1/disk.qcow2" "$t.raw" &&
		debugfs -R "dump /usr/sbin/fluid-agent $t" "$t.raw" >/dev/null 2>&1 &&
		want=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[\"agent_sha256\"])" "$1/image.json") &&
		[ "$(sha256sum <"$t" | cut -d" " -f1)" = "$want" ]' _ "$d"
done

# Boot tiny under TCG with the standard device set.
log=$(mktemp)
if out=$(./image-build/lib/boot-check "$IMAGES/tiny" --accel tcg --timeout 90 --keep-log "$log"); then
	ok "tiny: boots to the agent start under TCG ($out)"
	check "tiny: agent port org.fluid.agent.0 present in the guest" \
		grep -qE 'fluid: starting fluid-agent \(port org.fluid.agent.0: /dev/vport[0-9]+p[0-9]+\)' "$log"
else
	bad "tiny: boots to the agent start under TCG"
	tail -n 30 "$log"
fi
rm -f "$log"

echo
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
