#!/bin/sh
# SPDX-License-Identifier: MIT
# Installs the Debian packages fluid needs to build, test and run.
# Idempotent and silent when everything is already present.
set -eu

PKGS="build-essential pkg-config clang libclang-rt-14-dev
libjson-c-dev libcivetweb-dev libpq-dev libssh-dev liburing-dev libyaml-dev libcmocka-dev
qemu-system-x86 qemu-utils postgresql postgresql-client ansible-core
mmdebstrap e2fsprogs tmux busybox-static cpio zstd kmod
openssh-client openssh-server python3 python3-pytest curl iproute2
xz-utils ansible-lint yamllint libssl-dev procps
chromium fonts-dejavu-core
libvirt-dev libvirt-daemon-system dnsmasq-base iptables"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
# The web UI's npm packages (scripts/webui-deps.sh) need node and npm: any
# installation will do (Debian's nodejs + npm when there is none).
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
	missing="$missing nodejs npm"
fi
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "deps: missing packages:$missing" >&2
	echo "deps: run as root (or: sudo $0) to install them" >&2
	exit 1
fi
echo "deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
# shellcheck disable=SC2086
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing; } >"$log" 2>&1; then
	cat "$log" >&2
	rm -f "$log"
	exit 1
fi
rm -f "$log"
