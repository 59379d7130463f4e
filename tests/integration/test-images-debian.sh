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
echo
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
