# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# fluid image recipe: tiny. Sourced by image-build/build-images, which sets
# IB (image-build dir), ROOT, CACHE, AGENT, AGENT_SHA and sources lib/common.sh.
#
# Debian kernel (linux-image-amd64's current package, from apt, not the host's
# /boot) + a busybox initramfs that loads the virtio/ext4 modules + an ext4
# root disk with busybox (static), busybox init and fluid-agent.

TINY_DISK_SIZE=256M
TINY_MEMORY_MB=256
TINY_CMDLINE="console=ttyS0 root=/dev/vda rootfstype=ext4 rw panic=-1 random.trust_cpu=on tsc=reliable quiet loglevel=4"

# recipe_inputs: extra lines covered by the image hash (beyond the recipe
# files and the agent): package versions that end up in the image.
recipe_inputs() {
	local k
	k=$(kernel_pkg) || return 1
	echo "kernel $k"
	echo "busybox-static $(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null)"
	tmux_inputs
	echo "cmdline $TINY_CMDLINE"
}

recipe_check() {
	local p
	for p in busybox-static tmux ncurses-base libc-bin; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			die "tiny needs the $p package (scripts/deps.sh installs it)"
	done
}

# tmux for terminals (docs/terminal.md): Debian's binary with the shared
# libraries ldd resolves, the terminfo entries a client and its panes use,
# and the C.UTF-8 locale (tmux refuses to start without a UTF-8 one).
TINY_TERMINFO="x/xterm x/xterm-256color s/screen s/screen-256color t/tmux t/tmux-256color v/vt100 l/linux d/dumb"

# tmux_files: every host file that goes into the image for tmux.
tmux_files() {
	local t
	command -v tmux >/dev/null || die "tiny needs tmux (scripts/deps.sh installs it)"
	readlink -f "$(command -v tmux)"
	ldd "$(command -v tmux)" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
	for t in $TINY_TERMINFO; do
		[ -e "/lib/terminfo/$t" ] && echo "/lib/terminfo/$t" ||
			{ [ -e "/usr/share/terminfo/$t" ] && echo "/usr/share/terminfo/$t"; }
	done
	find /usr/lib/locale/C.utf8 -type f | LC_ALL=C sort
}

# tmux_inputs: the tmux package and the exact bytes copied, for the image hash.
tmux_inputs() {
	local f
	echo "tmux $(dpkg-query -W -f='${Version}' tmux 2>/dev/null)"
	tmux_files | while read -r f; do
		echo "file $f $(sha256sum <"$f" | cut -c1-64)"
	done
}

# install_tmux ROOTFS: copies tmux and what it needs, at the host's paths
# (the dynamic loader's default search path covers /lib/x86_64-linux-gnu).
install_tmux() {
	local rfs=$1 f dst bin
	bin=$(readlink -f "$(command -v tmux)")
	tmux_files | while read -r f; do
		dst=$f
		[ "$f" = "$bin" ] && dst=/usr/bin/tmux
		mkdir -p "$rfs$(dirname "$dst")"
		cp -L "$f" "$rfs$dst"
	done
	chmod 755 "$rfs/usr/bin/tmux"
	cmp -s "$bin" "$rfs/usr/bin/tmux" || die "tiny: /usr/bin/tmux is not the host's tmux"
}

# recipe_build OUT HASH: builds vmlinuz, initrd.img, disk.qcow2, image.json in OUT.
recipe_build() {
	local out=$1 hash=$2
	local kdir kver stage kfmt
	recipe_check
	kdir=$(fetch_kernel)
	read -r kver <"$kdir/KVER"
	stage=$(mktemp -d "$CACHE/tmp/tiny-stage.XXXXXX")

	# --- initramfs ---
	local ird=$stage/initramfs m
	mkdir -p "$ird"/{bin,dev,proc,sys,run,tmp,newroot,lib/modules,etc,usr/sbin,usr/lib/fluid}
	cp /bin/busybox "$ird/bin/busybox"
	for m in sh mount umount insmod usleep poweroff cat mkdir mv sleep init reboot ip udhcpc; do
		ln -s busybox "$ird/bin/$m"
	done
	install -m 755 "$IB/tiny/initramfs-init" "$ird/init"
	# late root: the agent runs from here until the host asks for the disk
	install -m 755 "$AGENT" "$ird/usr/sbin/fluid-agent"
	install -m 755 "$IB/tiny/rootfs/usr/lib/fluid/run-agent" "$ird/usr/lib/fluid/run-agent"
	install -D -m 755 "$IB/tiny/rootfs/usr/share/udhcpc/default.script" "$ird/usr/share/udhcpc/default.script"
	printf '::respawn:/usr/lib/fluid/run-agent\n::ctrlaltdel:/bin/reboot\n' >"$ird/etc/inittab"
	# Module load order: each module after its dependencies, each once.
	grep -v '^\s*\(#\|$\)' "$IB/tiny/modules" | while read -r m; do
		modprobe -d "$kdir" -S "$kver" --show-depends "$m" || die "module $m not in $kver"
	done | awk '$1 == "insmod" && !seen[$2]++ { print $2 }' >"$stage/order"
	while read -r m; do
		cp "$m" "$ird/lib/modules/"
		basename "$m" >>"$ird/lib/modules/load-order"
	done <"$stage/order"
	(cd "$ird" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) |
		gzip -6 >"$out/initrd.img"
	kfmt=$(install_kernel "$kdir/boot/vmlinuz-$kver" "$kdir/boot/config-$kver" "$out/vmlinuz")

	# --- root file system ---
	local rfs=$stage/rootfs a
	mkdir -p "$rfs"
	cp -a "$IB/tiny/rootfs/." "$rfs/"
	mkdir -p "$rfs"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,mnt,root,home,srv,opt,var/log,var/tmp,var/lib,etc/fluid}
	chmod 1777 "$rfs/tmp" "$rfs/var/tmp"
	chmod 700 "$rfs/root"
	chmod 640 "$rfs/etc/shadow"
	cp /bin/busybox "$rfs/bin/busybox"
	/bin/busybox --list-full | while read -r a; do
		[ -e "$rfs/$a" ] || [ -L "$rfs/$a" ] && continue
		mkdir -p "$rfs/$(dirname "$a")"
		ln -s /bin/busybox "$rfs/$a"
	done
	ln -sfn /bin/busybox "$rfs/sbin/init"
	install -m 755 "$AGENT" "$rfs/usr/sbin/fluid-agent"
	install_tmux "$rfs"
	mkdir -p "$rfs/lib/modules"
	echo "$kver" >"$rfs/etc/fluid/kernel-release"
	printf 'fluid tiny image, inputs %s\n' "$hash" >"$rfs/etc/fluid/image"

	local raw
	raw=$(make_disk "$rfs" "$TINY_DISK_SIZE" "$out/disk.qcow2")
	raw_to_qcow2 "$raw" "$out/disk.qcow2"
	rm -rf "$stage"
	write_image_json "$out" tiny "$TINY_CMDLINE" "$TINY_MEMORY_MB" "$hash" \
		"\"kernel\": $(json_str "$kver"), \"kernel_format\": \"$kfmt\", \"late_root\": true, \"base\": \"busybox $(dpkg-query -W -f='${Version}' busybox-static)\""
}
