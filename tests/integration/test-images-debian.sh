#!/bin/bash
# SPDX-License-Identifier: MIT
# debian-12 boots under TCG with the standard device set to the agent start,
# with its virtio-serial port present, and without units that failed.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
IMAGES=${FLUID_IMAGE_DIR:-$ROOT/build/images}
pass=0 fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }

[ -f "$IMAGES/debian-12/.complete" ] || ./image-build/build-images --only debian-12 ||
	{ echo "FAIL build-images --only debian-12"; echo "0 passed, 1 failed"; exit 1; }
log=$(mktemp)
if out=$(./image-build/lib/boot-check "$IMAGES/debian-12" --accel tcg --timeout 240 --after 20 --keep-log "$log"); then
	ok "debian-12: boots to the agent start under TCG ($out)"
	if grep -qE 'fluid: starting fluid-agent \(port org.fluid.agent.0: /dev/vport[0-9]+p[0-9]+\)' "$log"; then
		ok "debian-12: agent port org.fluid.agent.0 present in the guest"
	else
		bad "debian-12: agent port org.fluid.agent.0 present in the guest"
	fi
	if grep -qE 'A start job is running|Timed out waiting for device' "$log"; then
		bad "debian-12: no boot step waits on devices that never come"
	else
		ok "debian-12: no boot step waits on devices that never come"
	fi
else
	bad "debian-12: boots to the agent start under TCG"
	tail -n 40 "$log"
fi
rm -f "$log"

# A user's own image from a qcow2 (here: the debian-12 disk, partitioned) gets
# the agent written in without booting or mounting, and boots to the agent.
work=$(mktemp -d /tmp/test-images-custom.XXXXXX)
name=test-custom-$$
python3 - "$IMAGES/debian-12/disk.qcow2" "$work" <<'PY' && true
import os, struct, subprocess, sys
src, work = sys.argv[1], sys.argv[2]
fs = os.path.join(work, "fs.raw"); disk = os.path.join(work, "disk.raw")
subprocess.run(["qemu-img", "convert", "-O", "raw", src, fs], check=True)
n = os.path.getsize(fs) // 512
with open(disk, "wb") as f:
    f.truncate((2048 + n + 2048) * 512)
    mbr = bytearray(512)
    mbr[446:462] = bytes([0, 0, 0, 0, 0x83, 0, 0, 0]) + struct.pack("<II", 2048, n)
    mbr[510:512] = b"\x55\xaa"
    f.write(mbr)
subprocess.run(["dd", "if=" + fs, "of=" + disk, "bs=1M", "seek=1", "conv=notrunc,sparse", "status=none"], check=True)
os.unlink(fs)
subprocess.run(["qemu-img", "convert", "-O", "qcow2", disk, os.path.join(work, "user.qcow2")], check=True)
os.unlink(disk)
PY
if FLUID_CACHE_DIR=$work/cache ./image-build/build-images --custom "$name" --qcow2 "$work/user.qcow2" >"$work/build.log" 2>&1; then
	ok "custom image from a partitioned qcow2 builds"
	if out=$(./image-build/lib/boot-check "$IMAGES/$name" --accel tcg --timeout 240 --keep-log "$work/console.log"); then
		ok "custom image boots to the agent start ($out)"
	else
		bad "custom image boots to the agent start"
		tail -n 30 "$work/console.log"
	fi
else
	bad "custom image from a partitioned qcow2 builds"
	cat "$work/build.log"
fi
rm -f "$IMAGES/$name"
rm -rf "$work"

echo
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
