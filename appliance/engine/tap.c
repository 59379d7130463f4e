// SPDX-License-Identifier: MIT
/*
 * tap: the "tap" network mode. The sandbox's NIC is a tap device on a host
 * bridge, normally the one `fluid provision network` defined as a libvirt
 * NAT network (its dnsmasq hands out addresses, libvirt NATs outbound
 * traffic). fluid opens the tap itself (/dev/net/tun), adds it to the
 * bridge and passes the fd to QEMU, so neither libvirtd nor QEMU's setuid
 * bridge helper is in the hot path.
 *
 * Sandboxes on one bridge must not reach each other: each tap is an
 * isolated bridge port (brport/isolated), which lets it talk to the
 * bridge itself (the gateway, DHCP, DNS) and the outside, never to another
 * isolated port. The tap is not persistent: it disappears when the QEMU
 * process holding it exits, so nothing is left to clean up.
 */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cgroup.h"
#include "cleanup.h"

static int write_sys(const char *path, const char *s)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	return write(fd, s, strlen(s)) == (ssize_t)strlen(s) ? 0 : -errno;
}

int fl_tap_open(const char *bridge, FlError *err)
{
	if (!bridge || !bridge[0] || strlen(bridge) >= IFNAMSIZ || strchr(bridge, '/'))
		return fl_error_set(err, -EINVAL, "network tap needs network.bridge in the configuration "
						  "(see `fluid provision network`)");
	unsigned br_index = if_nametoindex(bridge);
	char path[128];
	snprintf(path, sizeof(path), "/sys/class/net/%s/bridge", bridge);
	if (!br_index || access(path, F_OK) < 0)
		return fl_error_set(err, -ENODEV, "bridge %s does not exist (run `fluid provision network`)",
				    bridge);
	_cleanup_close_ int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return fl_error_set(err, -errno, "open /dev/net/tun: %m");
	struct ifreq ifr = {0};
	snprintf(ifr.ifr_name, IFNAMSIZ, "fltap%%d");
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0)
		return fl_error_set(err, -errno, "creating a tap device: %m (fluid needs CAP_NET_ADMIN for tap)");
	_cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return fl_error_set(err, -errno, "socket: %m");
	struct ifreq br = {0};
	snprintf(br.ifr_name, IFNAMSIZ, "%s", bridge);
	br.ifr_ifindex = (int)if_nametoindex(ifr.ifr_name);
	if (ioctl(s, SIOCBRADDIF, &br) < 0)
		return fl_error_set(err, -errno, "adding %s to bridge %s: %m", ifr.ifr_name, bridge);
	snprintf(path, sizeof(path), "/sys/class/net/%s/brport/isolated", ifr.ifr_name);
	int r = write_sys(path, "1");
	if (r < 0)
		return fl_error_set(err, r, "isolating bridge port %s: %s", ifr.ifr_name, strerror(-r));
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		return fl_error_set(err, -errno, "%s: %m", ifr.ifr_name);
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		return fl_error_set(err, -errno, "bringing %s up: %m", ifr.ifr_name);
	return TAKE_FD(fd);
}
