# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# Shared helpers for image-build/build-images and the per-image recipes.
# Sourced (bash), never executed. Everything here is boot-free and mount-free:
# file systems are made with `mke2fs -d`, edited with `debugfs`.

# Bump to invalidate every cached image when the layout of an image changes
# in a way the recipe files do not show.
FLUID_IMAGE_FORMAT=1

log() { [ "${QUIET:-0}" = 1 ] || echo "build-images: $*" >&2; }
die() { echo "build-images: error: $*" >&2; exit 1; }

# sha256 of a file, hex only.
sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# hash_tree DIR...: a stable digest of the relative paths, modes and contents
# of every regular file and symlink under the given paths (sorted).
hash_tree() {
	local p have=()
	for p in "$@"; do [ -e "$p" ] && have+=("$p"); done
	[ ${#have[@]} -gt 0 ] || { echo none; return 0; }
	{
		find "${have[@]}" \( -type f -o -type l \) -printf '%p %m %l\n' | sed "s|^$IB/||" | LC_ALL=C sort
		find "${have[@]}" -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum | sed "s|  $IB/| |"
	} | sha256sum | cut -d' ' -f1
}

# apt_candidates PKG...: "pkg=version" for the candidate version of each
# package in the host's apt lists (cheap; empty version when unknown).
apt_candidates() {
	LC_ALL=C apt-cache policy "$@" 2>/dev/null | awk '
		/^[^ ]/ { sub(":$", "", $1); p = $1 }
		/^  Candidate:/ { print p "=" $2 }'
}

# apt_memo CMD...: output of CMD, remembered under $CACHE/apt-memo until the
# host's apt package lists or dpkg status change (apt-cache takes ~0.5 s per
# call here; a cached no-op run of build-images must stay well under 1 s).
apt_memo() {
	local stamp key f out
	stamp=$(stat -c '%n %s %Y' /var/lib/apt/lists/*Packages* 2>/dev/null | sha256sum | cut -c1-16)
	key=$(printf '%s\n' "$@" | sha256sum | cut -c1-16)
	f=$CACHE/apt-memo/$stamp-$key
	if [ -f "$f" ]; then
		cat "$f"
		return 0
	fi
	out=$("$@") || return 1
	[ -n "$out" ] || return 1
	mkdir -p "$CACHE/apt-memo"
	find "$CACHE/apt-memo" -type f ! -name "$stamp-*" -delete 2>/dev/null || true
	printf '%s\n' "$out" >"$f.$$" && mv -f "$f.$$" "$f"
	printf '%s\n' "$out"
}

# apt_lists_present: true when the host has apt package lists. Some hosts
# (containers, after `apt-get clean`-style cleanups) have none; then versions
# cannot be looked up cheaply and the recipes reuse what they cached before.
apt_lists_present() { compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; }

# ensure_apt_lists: apt-get update once when the host has no package lists
# (fresh machine). Needs root.
ensure_apt_lists() {
	if [ -z "$(apt_candidates linux-image-amd64 | cut -d= -f2 | grep -v '(none)')" ]; then
		log "no apt package lists: running apt-get update"
		apt-get update -qq >&2 || die "apt-get update failed"
	fi
}

# kernel_pkg: name and version of the kernel package linux-image-amd64
# depends on, e.g. "linux-image-6.1.0-57-amd64 6.1.192-3".
kernel_pkg() {
	local d
	if apt_lists_present; then
		apt_memo kernel_pkg_uncached
		return
	fi
	# No lists: the newest kernel already unpacked, if any.
	d=$(ls -1d "$CACHE"/kernels/linux-image-*_*/.complete 2>/dev/null | sort -V | tail -1)
	[ -n "$d" ] || return 1
	d=$(basename "$(dirname "$d")")
	echo "${d%%_*} ${d#*_}"
}
kernel_pkg_uncached() {
	local meta_ver dep
	meta_ver=$(apt_candidates linux-image-amd64 | cut -d= -f2)
	dep=$(LC_ALL=C apt-cache show "linux-image-amd64=$meta_ver" 2>/dev/null |
		sed -n 's/^Depends: \(linux-image-[^ ,]*\).*/\1/p' | head -1)
	[ -n "$dep" ] || return 1
	echo "$dep $(apt_candidates "$dep" | cut -d= -f2)"
}

# fetch_kernel: downloads and unpacks the Debian kernel package once into
# $CACHE/kernels/<pkg>_<ver>/ (with modules.dep from depmod) and prints the
# directory. Atomic: a partial download never looks complete.
fetch_kernel() {
	local pkg ver dir tmp kver
	read -r pkg ver < <(kernel_pkg) || die "cannot resolve linux-image-amd64 (apt-get update?)"
	dir=$CACHE/kernels/${pkg}_$ver
	if [ ! -f "$dir/.complete" ]; then
		mkdir -p "$CACHE/kernels"
		tmp=$(mktemp -d "$CACHE/kernels/.tmp.XXXXXX")
		log "downloading $pkg $ver"
		(cd "$tmp" && apt-get download -q "$pkg=$ver" >/dev/null 2>"$tmp/apt.log") ||
			{ cat "$tmp/apt.log" >&2; rm -rf "$tmp"; die "apt-get download $pkg failed"; }
		dpkg-deb -x "$tmp"/*.deb "$tmp/root"
		kver=${pkg#linux-image-}
		depmod -b "$tmp/root" "$kver"
		echo "$kver" >"$tmp/root/KVER"
		rm -f "$tmp"/*.deb "$tmp/apt.log"
		mv "$tmp/root" "$tmp/unpacked" && touch "$tmp/unpacked/.complete"
		rm -rf "$dir"
		mv -T "$tmp/unpacked" "$dir"
		rmdir "$tmp"
		# Only the current kernel package is kept unpacked.
		local old
		for old in "$CACHE"/kernels/linux-image-*; do
			[ "$old" = "$dir" ] || rm -rf "$old"
		done
	fi
	echo "$dir"
}

# make_disk SRCDIR SIZE OUT.qcow2 [LABEL]: ext4 from a directory tree without
# mounting; inode tables and journal are written out now so the guest kernel
# never runs ext4lazyinit (that would cost CPU and overlay space in every
# clone).
make_disk() {
	local src=$1 size=$2 out=$3 label=${4:-fluid-root}
	local raw=$out.raw
	rm -f "$raw"
	truncate -s "$size" "$raw"
	mke2fs -q -F -t ext4 -L "$label" -m 1 -E lazy_itable_init=0,lazy_journal_init=0,root_owner=0:0 \
		-d "$src" "$raw" >&2 || die "mke2fs failed"
	echo "$raw"
}

# raw_to_qcow2 RAW OUT: converts and removes the raw file.
raw_to_qcow2() {
	qemu-img convert -f raw -O qcow2 -o cluster_size=65536 "$1" "$2" >&2 || die "qemu-img convert failed"
	rm -f "$1"
}

# debugfs_put RAW HOSTFILE GUESTPATH MODE: writes one file into an ext4 image
# (replacing it), owned by root.
debugfs_put() {
	local raw=$1 src=$2 dst=$3 mode=$4
	local dir=${dst%/*}
	debugfs -w -R "rm $dst" "$raw" >/dev/null 2>&1 || true
	debugfs -w -f - "$raw" >/dev/null 2>"$raw.dbg" <<-EOF
		cd $dir
		write $src ${dst##*/}
		sif $dst mode 0$(printf '%o' $((0100000 | 8#$mode)))
		sif $dst uid 0
		sif $dst gid 0
	EOF
	if grep -qiE 'error|not found|no such|could not' "$raw.dbg"; then
		cat "$raw.dbg" >&2; rm -f "$raw.dbg"; die "debugfs: cannot write $dst"
	fi
	rm -f "$raw.dbg"
}

# json_str S: S as a JSON string literal.
json_str() {
	local s=$1
	s=${s//\\/\\\\}; s=${s//\"/\\\"}; s=${s//$'\n'/\\n}; s=${s//$'\t'/\\t}
	printf '"%s"' "$s"
}

# write_image_json DIR NAME CMDLINE MEMORY_MB HASH EXTRA_JSON_FIELDS
write_image_json() {
	local dir=$1 name=$2 cmdline=$3 mem=$4 hash=$5 extra=${6:-}
	local qsize vsize
	qsize=$(stat -c %s "$dir/disk.qcow2")
	vsize=$(qemu-img info --output=json "$dir/disk.qcow2" | sed -n 's/.*"virtual-size": *\([0-9]*\).*/\1/p' | head -1)
	{
		printf '{\n'
		printf '  "name": %s,\n' "$(json_str "$name")"
		printf '  "cmdline": %s,\n' "$(json_str "$cmdline")"
		printf '  "memory_mb": %d,\n' "$mem"
		printf '  "inputs_hash": %s,\n' "$(json_str "$hash")"
		printf '  "built_at": %s,\n' "$(json_str "$(date -u +%Y-%m-%dT%H:%M:%SZ)")"
		printf '  "format": %d,\n' "$FLUID_IMAGE_FORMAT"
		printf '  "root_device": "/dev/vda",\n'
		printf '  "root_fstype": "ext4",\n'
		printf '  "agent_port": "org.fluid.agent.0",\n'
		printf '  "agent_path": "/usr/sbin/fluid-agent",\n'
		printf '  "agent_sha256": %s,\n' "$(json_str "${AGENT_SHA:-}")"
		printf '  "disk_virtual_size": %s,\n' "${vsize:-0}"
		printf '  "size": {"disk_qcow2": %s, "vmlinuz": %s, "initrd": %s}' \
			"$qsize" "$(stat -c %s "$dir/vmlinuz")" "$(stat -c %s "$dir/initrd.img")"
		[ -n "$extra" ] && printf ',\n  %s' "$extra"
		printf '\n}\n'
	} >"$dir/image.json"
}

# publish_image TMPDIR NAME HASH: atomically moves a finished image directory
# into place and points build/images/NAME at it.
publish_image() {
	local tmp=$1 name=$2 hash=$3
	local final=$CACHE/images/$name-$hash
	touch "$tmp/.complete"
	if [ -d "$final" ]; then rm -rf "$final"; fi
	mv -T "$tmp" "$final"
	link_image "$name" "$final"
}

# link_image NAME DIR: build/images/NAME -> DIR, replaced atomically.
link_image() {
	local name=$1 dir=$2
	mkdir -p "$ROOT/build/images"
	ln -sfn "$dir" "$ROOT/build/images/.$name.tmp$$"
	mv -T "$ROOT/build/images/.$name.tmp$$" "$ROOT/build/images/$name"
}

# install_kernel BZIMAGE CONFIG OUT: writes the kernel for direct boot to OUT
# and prints its format. When the kernel supports PVH entry (CONFIG_PVH=y, as
# Debian's does), OUT is the uncompressed ELF vmlinux taken out of the bzImage:
# QEMU boots it through its PVH entry point, which skips the in-guest xz
# decompression (measured under TCG: tiny boots to the agent in ~4 s instead
# of ~8 s). Otherwise OUT is the bzImage as is.
install_kernel() {
	local bz=$1 config=$2 out=$3 off
	if grep -q '^CONFIG_PVH=y' "$config" 2>/dev/null; then
		off=$(LC_ALL=C grep -obUaP '\xfd\x37\x7a\x58\x5a\x00' "$bz" | head -1 | cut -d: -f1)
		if [ -n "$off" ]; then
			# xz stops at the end of its stream; the bytes after it are not an error here.
			tail -c +$((off + 1)) "$bz" | xz -dc >"$out.tmp" 2>/dev/null || true
		fi
		if [ -s "$out.tmp" ] && [ "$(head -c 4 "$out.tmp" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then
			mv "$out.tmp" "$out"
			echo elf-pvh
			return 0
		fi
		rm -f "$out.tmp"
	fi
	cp "$bz" "$out"
	echo bzimage
}

# in_use DIR: true when a running process has a file under DIR open.
in_use() {
	[ -n "$(find /proc/[0-9]*/fd -maxdepth 1 -lname "$1/*" -print -quit 2>/dev/null)" ]
}

# prune_old NAME KEEP: removes image directories of NAME beyond the linked one
# and the KEEP newest others, skipping any a running process has open. (The
# engine imports base images into its own store; older builds are only kept
# as a grace period.)
prune_old() {
	local name=$1 keep=$2 cur d n=0
	cur=$(readlink -f "$ROOT/build/images/$name" 2>/dev/null || true)
	for d in $(ls -1dt "$CACHE/images/$name"-[0-9a-f]* 2>/dev/null); do
		[ "$d" = "$cur" ] && continue
		[ -d "$d" ] || continue
		n=$((n + 1))
		[ $n -le "$keep" ] && continue
		in_use "$d" && continue
		rm -rf "$d"
	done
}
