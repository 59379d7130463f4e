#!/bin/sh
# SPDX-License-Identifier: MIT
# mmdebstrap customize hook for debian-12: runs on the host with the finished
# root file system as $1. Everything fluid-specific about the image is here or
# in overlay/.
set -eu
R=$1
HERE=$(cd "$(dirname "$0")" && pwd)
cp -a "$HERE/overlay/." "$R/"
chown -R 0:0 "$R/etc/systemd/system" "$R/etc/systemd/network" "$R/usr/lib/fluid" \
	"$R/etc/ssh/sshd_config.d" "$R/etc/initramfs-tools"

chroot "$R" systemctl enable -q fluid-agent.service fluid-ssh-hostkeys.service \
	systemd-networkd.service systemd-resolved.service ssh.service
# Nothing may wait on devices or networks that never come, and nothing runs
# on a timer behind the agent's back. Masked (not disabled): the first boot
# with an empty machine-id runs `systemctl preset-all` in enable-only mode.
chroot "$R" systemctl mask -q \
	systemd-networkd-wait-online.service \
	apt-daily.timer apt-daily-upgrade.timer apt-daily.service apt-daily-upgrade.service \
	e2scrub_all.timer e2scrub_all.service e2scrub_reap.service \
	fstrim.timer \
	getty@tty1.service \
	systemd-pstore.service \
	systemd-journal-flush.service \
	motd-news.timer 2>/dev/null || true

# Boot time under TCG: every exec costs 0.1-0.2 s, so generators and module
# loaders that have nothing to do in a fluid VM are masked.
mkdir -p "$R/etc/systemd/system-generators"
for g in systemd-cryptsetup-generator systemd-gpt-auto-generator \
	systemd-hibernate-resume-generator systemd-integritysetup-generator \
	systemd-veritysetup-generator systemd-rc-local-generator \
	systemd-system-update-generator systemd-sysv-generator systemd-run-generator; do
	ln -sfn /dev/null "$R/etc/systemd/system-generators/$g"
done
chroot "$R" systemctl mask -q modprobe@drm.service modprobe@dm_mod.service \
	systemd-network-generator.service

# resolv.conf from systemd-resolved's stub.
ln -sfn ../run/systemd/resolve/stub-resolv.conf "$R/etc/resolv.conf"

# No password logins at all: root locked, no other accounts with passwords.
chroot "$R" usermod -p '*' root

# Identity is made per VM, never baked in: empty machine-id (systemd makes
# one at boot; the agent makes a new one for each clone), SSH host keys at
# first boot.
: >"$R/etc/machine-id"
rm -f "$R/var/lib/dbus/machine-id"
ln -s /etc/machine-id "$R/var/lib/dbus/machine-id"
rm -f "$R"/etc/ssh/ssh_host_*
rm -f "$R/var/lib/systemd/random-seed"

# Leftovers from the build. The downloaded .debs go (~95 MB); the apt lists
# stay, so `apt-get install` works in a sandbox before any `apt-get update`.
rm -f "$R"/var/cache/apt/archives/*.deb "$R"/var/cache/apt/archives/partial/* 2>/dev/null || true
rm -rf "$R"/var/log/*.log "$R"/var/log/apt/* "$R"/var/cache/apt/*.bin \
	"$R"/var/cache/debconf/*-old "$R"/var/lib/dpkg/*-old "$R"/tmp/* "$R"/var/tmp/*
printf 'fluid debian-12 image (bookworm)\n' >"$R/etc/fluid-image"
