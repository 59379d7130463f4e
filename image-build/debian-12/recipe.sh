# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# fluid image recipe: debian-12. Sourced by image-build/build-images (see
# tiny/recipe.sh for the environment).
#
# Two stages, cached separately:
#  1. rootfs: mmdebstrap (bookworm, --variant=apt + packages, no Recommends,
#     no docs/man/locales, no GPU/sound/wireless modules) + customize.sh +
#     overlay/, into $CACHE/rootfs/debian-12-<hash>/ (a directory). Keyed by the
#     recipe files, the mirrors and the candidate versions of the listed
#     packages. ~1.5-3 min.
#  2. assembly: kernel + initrd copied out of the rootfs' /boot, ext4 made from
#     the rootfs directory with mke2fs -d, the agent written with debugfs,
#     converted to qcow2. Keyed additionally by the agent. ~15-30 s.

DEB_SUITE=bookworm
DEB_DISK_SIZE=2G
DEB_MEMORY_MB=1024
DEB_CMDLINE="console=ttyS0 root=/dev/vda rootfstype=ext4 rw net.ifnames=0 fsck.mode=skip panic=-1 random.trust_cpu=on tsc=reliable quiet loglevel=4 systemd.show_status=auto"

deb_packages() { grep -v '^\s*\(#\|$\)' "$IB/debian-12/packages" | tr -s ' \t' '\n\n' | grep -v '^$'; }

# Debian sources as the host's apt has them (only Debian's own archives for
# this suite, main), one "deb URI SUITE main" line each, URIs without a
# trailing slash, sorted: the same text whether or not the host has package
# lists (the fallback is Debian's default mirrors), so the cache key is too.
deb_sources_uncached() {
	apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 'Identifier: Packages' 2>/dev/null |
		awk -v s="$DEB_SUITE" '$2 ~ ("^" s "(-updates|-security)?$") && $3 == "main" { sub("/+$", "", $1); print "deb " $1 " " $2 " main" }' |
		LC_ALL=C sort -u
}
deb_sources() {
	local out
	out=$(apt_memo deb_sources_uncached 2>/dev/null) || out=""
	if [ -z "$out" ]; then
		out="deb http://deb.debian.org/debian $DEB_SUITE main
deb http://deb.debian.org/debian $DEB_SUITE-updates main
deb http://deb.debian.org/debian-security $DEB_SUITE-security main"
	fi
	printf '%s\n' "$out"
}

deb_versions_uncached() { apt_candidates $(deb_packages); }

# rootfs_key: <recipe-and-sources hash>-<package versions hash>. Without
# host package lists the versions are unknown: the newest rootfs cached for
# the same recipe is used then ("nolists" when there is none yet).
rootfs_key() {
	local rkey vkey d
	rkey=$({
		echo "format $FLUID_IMAGE_FORMAT"
		echo "recipe $(hash_tree "$IB/debian-12/packages" "$IB/debian-12/mmdebstrap.sh" \
			"$IB/debian-12/customize.sh" "$IB/debian-12/overlay")"
		deb_sources
	} | sha256sum | cut -c1-12)
	if apt_lists_present; then
		vkey=$(apt_memo deb_versions_uncached | sha256sum | cut -c1-8) || return 1
	else
		d=$(ls -1td "$CACHE/rootfs/debian-12-$rkey"-*/.fluid-rootfs-complete 2>/dev/null | head -1)
		if [ -n "$d" ]; then
			d=$(basename "$(dirname "$d")")
			vkey=${d##*-}
		else
			vkey=nolists
		fi
	fi
	echo "$rkey-$vkey"
}

recipe_inputs() {
	local k
	k=$(rootfs_key) || return 1
	echo "rootfs $k"
	echo "cmdline $DEB_CMDLINE"
}

recipe_check() {
	command -v mmdebstrap >/dev/null || die "debian-12 needs mmdebstrap (scripts/deps.sh installs it)"
}

# build_rootfs: sets ROOTFS_DIR to the cached rootfs directory, building it
# when missing (not in a subshell: an interrupted build's temp dir is removed).
build_rootfs() {
	local key dir tmp pkgs start
	key=$(rootfs_key) || die "debian-12: cannot resolve package versions"
	dir=$CACHE/rootfs/debian-12-$key
	ROOTFS_DIR=$dir
	if [ -f "$dir/.fluid-rootfs-complete" ]; then
		return 0
	fi
	mkdir -p "$CACHE/rootfs"
	exec 8>"$CACHE/rootfs/.debian-12.lock"
	flock 8
	# A rootfs cached under another versions key (e.g. built while the host
	# had no apt lists) that has exactly the candidate versions is adopted.
	if [ ! -f "$dir/.fluid-rootfs-complete" ] && apt_lists_present; then
		local want have old
		want=$(apt_memo deb_versions_uncached | LC_ALL=C sort)
		for old in "$CACHE/rootfs/debian-12-${key%-*}"-*; do
			[ -f "$old/.fluid-rootfs-complete" ] || continue
			have=$(dpkg-query --admindir="$old/var/lib/dpkg" -W -f='${Package}=${Version}\n' \
				$(deb_packages) 2>/dev/null | LC_ALL=C sort)
			if [ "$have" = "$want" ]; then
				log "debian-12: reusing rootfs $(basename "$old") (same package versions)"
				rm -rf "$dir"
				mv -T "$old" "$dir"
				break
			fi
		done
	fi
	if [ ! -f "$dir/.fluid-rootfs-complete" ]; then
		start=$SECONDS
		log "debian-12: mmdebstrap $DEB_SUITE (rootfs $key)"
		tmp=$(mktemp -d "$CACHE/rootfs/.debian-12-$key.tmp.XXXXXX")
		TMP_DIRS+=("$tmp")
		pkgs=$(deb_packages | paste -sd, -)
		local -a srcs=()
		while IFS= read -r l; do srcs+=("$l"); done < <(deb_sources)
		"$IB/debian-12/mmdebstrap.sh" "$DEB_SUITE" "$tmp/root" "$pkgs" "${srcs[@]}" >&2 ||
			die "debian-12: mmdebstrap failed"
		ls "$tmp"/root/boot/vmlinuz-* "$tmp"/root/boot/initrd.img-* >/dev/null ||
			die "debian-12: no kernel or initrd in /boot"
		touch "$tmp/root/.fluid-rootfs-complete"
		rm -rf "$dir"
		mv -T "$tmp/root" "$dir"
		rmdir "$tmp"
		# Older rootfs trees are only intermediates (images are self-contained).
		local old
		for old in "$CACHE"/rootfs/debian-12-*; do
			[ "$old" = "$dir" ] || [ ! -d "$old" ] || rm -rf "$old"
		done
		log "debian-12: rootfs in $((SECONDS - start)) s ($(du -sm "$dir" | cut -f1) MB)"
	fi
	exec 8>&-
}

recipe_build() {
	local out=$1 hash=$2
	local rootfs kver kfmt raw
	recipe_check
	build_rootfs
	rootfs=$ROOTFS_DIR
	kver=$(basename "$(ls -1 "$rootfs"/boot/vmlinuz-* | sort -V | tail -1)")
	kver=${kver#vmlinuz-}
	kfmt=$(install_kernel "$rootfs/boot/vmlinuz-$kver" "$rootfs/boot/config-$kver" "$out/vmlinuz")
	cp "$rootfs/boot/initrd.img-$kver" "$out/initrd.img"
	raw=$(make_disk "$rootfs" "$DEB_DISK_SIZE" "$out/disk.qcow2")
	debugfs -w -R "rm /.fluid-rootfs-complete" "$raw" >/dev/null 2>&1 || true
	debugfs_put "$raw" "$AGENT" /usr/sbin/fluid-agent 755
	raw_to_qcow2 "$raw" "$out/disk.qcow2"
	write_image_json "$out" debian-12 "$DEB_CMDLINE" "$DEB_MEMORY_MB" "$hash" \
		"\"kernel\": $(json_str "$kver"), \"kernel_format\": \"$kfmt\", \"base\": \"debian bookworm\", \"rootfs\": $(json_str "$(basename "$rootfs")")"
}
