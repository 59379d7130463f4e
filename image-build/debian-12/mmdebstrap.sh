#!/bin/bash
# SPDX-License-Identifier: MIT
# The mmdebstrap run that makes the debian-12 root file system (stage 1 of
# recipe.sh). Its content is part of the rootfs cache key, recipe.sh is not.
#   mmdebstrap.sh SUITE TARGET_DIR PACKAGES_COMMA_LIST SOURCE_LINE...
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
suite=$1 target=$2 pkgs=$3
shift 3
exec mmdebstrap --quiet --mode=root --variant=apt --include="$pkgs" \
	--aptopt='APT::Install-Recommends "false"' \
	--aptopt='APT::Install-Suggests "false"' \
	--aptopt='Acquire::Languages "none"' \
	--dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/info/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	--dpkgopt='path-include=/usr/share/locale/locale.alias' \
	--dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-include=/usr/share/doc/*/copyright' \
	--dpkgopt='path-exclude=/usr/share/lintian/*' \
	--dpkgopt='path-exclude=/usr/share/linda/*' \
	--dpkgopt='path-exclude=/lib/modules/*/kernel/drivers/gpu/*' \
	--dpkgopt='path-exclude=/lib/modules/*/kernel/drivers/media/*' \
	--dpkgopt='path-exclude=/lib/modules/*/kernel/drivers/net/wireless/*' \
	--dpkgopt='path-exclude=/lib/modules/*/kernel/drivers/net/ethernet/*' \
	--dpkgopt='path-exclude=/lib/modules/*/kernel/drivers/infiniband/*' \
	--dpkgopt='path-exclude=/lib/modules/*/kernel/drivers/staging/*' \
	--dpkgopt='path-exclude=/lib/modules/*/kernel/drivers/bluetooth/*' \
	--dpkgopt='path-exclude=/lib/modules/*/kernel/drivers/isdn/*' \
	--dpkgopt='path-exclude=/lib/modules/*/kernel/drivers/iio/*' \
	--dpkgopt='path-exclude=/lib/modules/*/kernel/sound/*' \
	--dpkgopt='path-exclude=/lib/modules/*/kernel/net/wireless/*' \
	--dpkgopt='path-exclude=/lib/modules/*/kernel/net/mac80211/*' \
	--dpkgopt='path-exclude=/lib/modules/*/kernel/net/bluetooth/*' \
	--setup-hook='mkdir -p "$1/etc/initramfs-tools"' \
	--setup-hook="cp -a '$HERE/overlay/etc/initramfs-tools/.' \"\$1/etc/initramfs-tools/\"" \
	--customize-hook="'$HERE/customize.sh' \"\$1\"" \
	"$suite" "$target" "$@"
