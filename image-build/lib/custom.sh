# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# build-images --custom NAME (--rootfs TARBALL | --qcow2 FILE): a user's own
# base image with fluid-agent installed, without booting it and without
# mounting anything (mke2fs -d for tarballs, debugfs for disks).
# Sourced by build-images after common.sh; see docs/images.md.

CUSTOM_AGENT_UNIT=$IB/debian-12/overlay/etc/systemd/system/fluid-agent.service
CUSTOM_BANNER=$IB/debian-12/overlay/usr/lib/fluid/agent-banner

custom_default_cmdline="console=ttyS0 root=/dev/vda rootfstype=ext4 rw net.ifnames=0 fsck.mode=skip panic=-1 random.trust_cpu=on tsc=reliable quiet loglevel=4"

# tiny's kernel and initramfs boot any root file system whose /sbin/init is
# a real init: the initramfs loads the virtio + ext4 modules and switch_roots.
custom_tiny_kernel() {
	local t=$ROOT/build/images/tiny
	if [ ! -f "$t/.complete" ]; then
		"$IB/build-images" --only tiny >&2 || die "cannot build tiny (its kernel is the fallback)"
	fi
	c_kernel=$t/vmlinuz c_initrd=$t/initrd.img
	log "$custom: no kernel in the image: using tiny's kernel and initramfs"
}

custom_build() {
	local name=$custom hash tmp src
	[[ "$name" =~ ^[a-z0-9][a-z0-9._-]{0,40}$ ]] || die "--custom NAME: lower-case letters, digits, . _ - only"
	case "$name" in tiny|debian-12) die "--custom $name: that name is a built-in image" ;; esac
	if [ -n "$c_rootfs" ] && [ -n "$c_qcow2" ]; then die "--rootfs and --qcow2 exclude each other"; fi
	src=${c_rootfs:-$c_qcow2}
	[ -n "$src" ] || die "--custom needs --rootfs TARBALL or --qcow2 FILE"
	[ -f "$src" ] || die "$src: no such file"
	[ -z "$c_kernel" ] || [ -f "$c_kernel" ] || die "$c_kernel: no such file"
	[ -z "$c_initrd" ] || [ -f "$c_initrd" ] || die "$c_initrd: no such file"
	[ -n "$c_cmdline" ] || c_cmdline=$custom_default_cmdline
	# Inputs: the source file (size+mtime+name: hashing GBs each run is not
	# "cheap"), the agent, this recipe, options.
	hash=$({
		echo "format $FLUID_IMAGE_FORMAT custom"
		stat -L -c '%n %s %Y' "$src" ${c_kernel:+"$c_kernel"} ${c_initrd:+"$c_initrd"}
		echo "agent $AGENT_SHA"
		hash_tree "$IB/lib/common.sh" "$IB/lib/custom.sh" "$CUSTOM_AGENT_UNIT" "$CUSTOM_BANNER"
		echo "$c_cmdline $c_memory $c_size"
	} | sha256sum | cut -c1-16)
	if [ $force = 0 ] && current "$name" "$hash"; then
		return 0
	fi
	mkdir -p "$CACHE/images" "$CACHE/tmp"
	tmp=$(mktemp -d "$CACHE/images/.$name-$hash.tmp.XXXXXX")
	chmod 755 "$tmp"
	TMP_DIRS+=("$tmp")
	log "$name: building from $src"
	if [ -n "$c_rootfs" ]; then
		custom_from_rootfs "$tmp" "$hash"
	else
		custom_from_qcow2 "$tmp" "$hash"
	fi
	write_image_json "$tmp" "$name" "$c_cmdline" "$c_memory" "$hash" \
		"\"base\": $(json_str "custom: $(basename "$src")")"
	publish_image "$tmp" "$name" "$hash"
	log "$name: built -> build/images/$name"
}

# fstab_fix FILE: makes / be /dev/vda (the VM's only disk), keeps the rest.
fstab_fix() {
	local f=$1
	if [ -f "$f" ] && awk '$1 !~ /^#/ && $2 == "/" { found = 1 } END { exit !found }' "$f"; then
		awk 'BEGIN { OFS = "\t" } $1 !~ /^#/ && $2 == "/" { $1 = "/dev/vda"; $3 = "ext4" } { print }' "$f" >"$f.new"
		mv "$f.new" "$f"
	else
		printf '/dev/vda\t/\text4\trw,relatime,errors=remount-ro\t0\t0\n' >>"$f"
	fi
}

custom_from_rootfs() {
	local out=$1 r k i raw size
	r=$(mktemp -d "$CACHE/tmp/custom-root.XXXXXX")
	TMP_DIRS+=("$r")
	tar --numeric-owner -xpf "$c_rootfs" -C "$r" || die "cannot unpack $c_rootfs"
	[ -e "$r/sbin/init" ] || [ -L "$r/sbin/init" ] || [ -e "$r/lib/systemd/systemd" ] ||
		die "$c_rootfs has no /sbin/init (install systemd-sysv, or an init)"
	install -D -m 755 "$AGENT" "$r/usr/sbin/fluid-agent"
	install -D -m 755 "$CUSTOM_BANNER" "$r/usr/lib/fluid/agent-banner"
	install -D -m 644 "$CUSTOM_AGENT_UNIT" "$r/etc/systemd/system/fluid-agent.service"
	mkdir -p "$r/etc/systemd/system/sysinit.target.wants"
	ln -sfn /etc/systemd/system/fluid-agent.service "$r/etc/systemd/system/sysinit.target.wants/fluid-agent.service"
	: >"$r/etc/machine-id"
	rm -f "$r"/etc/ssh/ssh_host_*
	fstab_fix "$r/etc/fstab"
	if [ -z "$c_kernel" ]; then
		k=$(ls -1 "$r"/boot/vmlinuz-* 2>/dev/null | sort -V | tail -1 || true)
		i=${k/vmlinuz-/initrd.img-}
		if [ -n "$k" ] && [ -f "$i" ]; then
			c_kernel=$k c_initrd=$i
		else
			custom_tiny_kernel
		fi
	fi
	install_kernel "$c_kernel" "${c_kernel/vmlinuz-/config-}" "$out/vmlinuz" >/dev/null
	cp "$c_initrd" "$out/initrd.img"
	size=${c_size:-$(( ($(du -sm "$r" | cut -f1) * 3 / 2 + 1024) ))M}
	raw=$(make_disk "$r" "$size" "$out/disk.qcow2")
	raw_to_qcow2 "$raw" "$out/disk.qcow2"
	rm -rf "$r"
}

# list_partitions RAW: "start_sector sectors" for each MBR or GPT partition
# (python3 here: no extra host package for reading a partition table).
list_partitions() {
	python3 - "$1" <<'PY'
import struct, sys
f = open(sys.argv[1], "rb")
mbr = f.read(512)
if len(mbr) < 512 or mbr[510:512] != b"\x55\xaa":
    sys.exit(0)
parts = []
for i in range(4):
    e = mbr[446 + 16 * i: 462 + 16 * i]
    ptype = e[4]
    start, count = struct.unpack("<II", e[8:16])
    if ptype == 0xEE:  # protective MBR: GPT
        f.seek(512)
        h = f.read(92)
        if h[:8] != b"EFI PART":
            break
        lba, n, size = struct.unpack("<QII", h[72:88])
        f.seek(lba * 512)
        for j in range(min(n, 256)):
            ent = f.read(size)
            if ent[:16] == b"\0" * 16:
                continue
            first, last = struct.unpack("<QQ", ent[32:48])
            parts.append((first, last - first + 1))
        break
    if ptype and count:
        parts.append((start, count))
for s, c in parts:
    print(s, c)
PY
}

# custom_from_qcow2: the disk's root file system must be ext4 (whole disk or
# the largest ext4 partition). It becomes the whole disk (/dev/vda).
custom_from_qcow2() {
	local out=$1 raw fs start sectors best=0 bests=0 bestn="" dump
	raw=$out/src.raw
	qemu-img convert -O raw "$c_qcow2" "$raw" || die "cannot read $c_qcow2"
	fs=$out/disk.raw
	if [ "$(od -An -tx1 -j 1080 -N 2 "$raw" | tr -d ' ')" = 53ef ]; then
		mv "$raw" "$fs"
	else
		# partitioned: pick the largest partition holding ext4
		while read -r start sectors; do
			[ "$(od -An -tx1 -j $((start * 512 + 1080)) -N 2 "$raw" | tr -d ' ')" = 53ef ] || continue
			if [ "$sectors" -gt "$bests" ]; then best=$start bests=$sectors bestn=1; fi
		done < <(list_partitions "$raw")
		[ -n "$bestn" ] || die "$c_qcow2: no ext4 file system found (whole disk or partition)"
		dd if="$raw" of="$fs" bs=512 skip="$best" count="$bests" conv=sparse status=none
		rm -f "$raw"
	fi
	e2fsck -fp "$fs" >/dev/null 2>&1 || true
	[ -n "$c_size" ] && { truncate -s "$c_size" "$fs"; resize2fs -f "$fs" >/dev/null 2>&1 || die "resize2fs failed"; }
	dump=$(mktemp -d "$CACHE/tmp/custom-dump.XXXXXX")
	TMP_DIRS+=("$dump")
	debugfs -R "stat /sbin/init" "$fs" 2>/dev/null | grep -q Inode ||
		debugfs -R "stat /lib/systemd/systemd" "$fs" 2>/dev/null | grep -q Inode ||
		die "$c_qcow2: no /sbin/init on its root file system"
	debugfs -w -f - "$fs" >/dev/null 2>&1 <<-EOF || true
		mkdir /usr/lib/fluid
		mkdir /etc/systemd/system/sysinit.target.wants
	EOF
	debugfs_put "$fs" "$AGENT" /usr/sbin/fluid-agent 755
	debugfs_put "$fs" "$CUSTOM_BANNER" /usr/lib/fluid/agent-banner 755
	debugfs_put "$fs" "$CUSTOM_AGENT_UNIT" /etc/systemd/system/fluid-agent.service 644
	debugfs -w -R "rm /etc/systemd/system/sysinit.target.wants/fluid-agent.service" "$fs" >/dev/null 2>&1 || true
	debugfs -w -R "symlink /etc/systemd/system/sysinit.target.wants/fluid-agent.service /etc/systemd/system/fluid-agent.service" "$fs" >/dev/null 2>&1
	: >"$dump/machine-id"
	debugfs_put "$fs" "$dump/machine-id" /etc/machine-id 444
	debugfs -R "dump /etc/fstab $dump/fstab" "$fs" >/dev/null 2>&1 || : >"$dump/fstab"
	fstab_fix "$dump/fstab"
	debugfs_put "$fs" "$dump/fstab" /etc/fstab 644
	for f in $(debugfs -R "ls -p /etc/ssh" "$fs" 2>/dev/null | awk -F/ '$6 ~ /^ssh_host_/ { print $6 }'); do
		debugfs -w -R "rm /etc/ssh/$f" "$fs" >/dev/null 2>&1 || true
	done
	if [ -z "$c_kernel" ]; then
		local k
		k=$(debugfs -R "ls -p /boot" "$fs" 2>/dev/null | awk -F/ '$6 ~ /^vmlinuz-/ { print $6 }' | sort -V | tail -1)
		if [ -n "$k" ] && debugfs -R "dump /boot/$k $dump/vmlinuz" "$fs" >/dev/null 2>&1 &&
			debugfs -R "dump /boot/initrd.img-${k#vmlinuz-} $dump/initrd.img" "$fs" >/dev/null 2>&1 &&
			[ -s "$dump/vmlinuz" ] && [ -s "$dump/initrd.img" ]; then
			debugfs -R "dump /boot/config-${k#vmlinuz-} $dump/config" "$fs" >/dev/null 2>&1 || true
			c_kernel=$dump/vmlinuz c_initrd=$dump/initrd.img
			install_kernel "$c_kernel" "$dump/config" "$out/vmlinuz" >/dev/null
			cp "$c_initrd" "$out/initrd.img"
		else
			custom_tiny_kernel
		fi
	fi
	if [ ! -f "$out/vmlinuz" ]; then
		install_kernel "$c_kernel" /dev/null "$out/vmlinuz" >/dev/null
		cp "$c_initrd" "$out/initrd.img"
	fi
	raw_to_qcow2 "$fs" "$out/disk.qcow2"
}
