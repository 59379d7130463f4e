// SPDX-License-Identifier: MIT
/*
 * cli-provision: `fluid provision network`, the only place fluid uses
 * libvirt. It defines (or checks) a persistent libvirt NAT network whose
 * bridge sandboxes with network "tap" join: libvirt runs its DHCP/DNS
 * server (dnsmasq) and the NAT rules; fluid itself adds each sandbox's tap
 * to the bridge as an isolated port (appliance/engine/tap.c), so libvirtd
 * is not needed in the hot path and fluid works where it is absent.
 *
 *   fluid provision network [--config FILE] [--remove]
 *
 * Settings come from the configuration's network section (name "fluid",
 * bridge "fluidbr0", subnet 10.213.0.0/24, libvirt_uri qemu:///system by
 * default; docs/config.md). Idempotent: an existing network of that name
 * is kept (started and set to autostart) when its bridge matches, and
 * refused with a clear error when it does not.
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cleanup.h"
#include "cli.h"
#include "config.h"

static void quiet(void *ud, virErrorPtr e)
{
}

static const char *last_error(void)
{
	virErrorPtr e = virGetLastError();
	return e && e->message ? e->message : "unknown libvirt error";
}

/* "A.B.C.0/24" -> the /24's first three octets as "A.B.C". */
static int subnet24(const char *subnet, char *ret, size_t len)
{
	char buf[32];
	struct in_addr a;
	const char *slash = subnet ? strchr(subnet, '/') : NULL;
	if (!slash || strcmp(slash, "/24") || (size_t)(slash - subnet) >= sizeof(buf))
		return -1;
	memcpy(buf, subnet, (size_t)(slash - subnet));
	buf[slash - subnet] = 0;
	if (inet_pton(AF_INET, buf, &a) != 1 || (ntohl(a.s_addr) & 0xff))
		return -1;
	*strrchr(buf, '.') = 0;
	snprintf(ret, len, "%s", buf);
	return 0;
}

static int remove_network(virConnectPtr conn, const char *name)
{
	virNetworkPtr net = virNetworkLookupByName(conn, name);
	if (!net) {
		printf("network %s: not defined, nothing to remove\n", name);
		return 0;
	}
	int r = 0;
	if (virNetworkIsActive(net) == 1 && virNetworkDestroy(net) < 0)
		r = -1;
	if (r == 0 && virNetworkUndefine(net) < 0)
		r = -1;
	virNetworkFree(net);
	if (r < 0) {
		fl_cli_error("removing network %s: %s", name, last_error());
		return 1;
	}
	printf("network %s: removed\n", name);
	return 0;
}

static int ensure_network(virConnectPtr conn, const char *name, const char *bridge, const char *net24)
{
	virNetworkPtr net = virNetworkLookupByName(conn, name);
	if (net) {
		char *have = virNetworkGetBridgeName(net);
		bool same = have && !strcmp(have, bridge);
		if (!same)
			fl_cli_error("network %s exists with bridge %s, not %s (set network.bridge, or "
				     "--remove it first)", name, have ? have : "?", bridge);
		free(have);
		if (!same) {
			virNetworkFree(net);
			return 1;
		}
	} else {
		char xml[1024];
		snprintf(xml, sizeof(xml),
			 "<network><name>%s</name><forward mode='nat'/>"
			 "<bridge name='%s' stp='off' delay='0'/>"
			 "<ip address='%s.1' netmask='255.255.255.0'>"
			 "<dhcp><range start='%s.10' end='%s.250'/></dhcp></ip></network>",
			 name, bridge, net24, net24, net24);
		net = virNetworkDefineXML(conn, xml);
		if (!net) {
			fl_cli_error("defining network %s: %s", name, last_error());
			return 1;
		}
	}
	int r = 0;
	if (virNetworkIsActive(net) != 1 && virNetworkCreate(net) < 0) {
		fl_cli_error("starting network %s: %s", name, last_error());
		r = 1;
	} else if (virNetworkSetAutostart(net, 1) < 0) {
		fl_cli_error("autostart of network %s: %s", name, last_error());
		r = 1;
	}
	virNetworkFree(net);
	if (r == 0)
		printf("network %s: active on bridge %s (%s.0/24, DHCP %s.10-%s.250)\n"
		       "sandboxes use it with network \"tap\" when the configuration has\n"
		       "  network:\n    bridge: %s\n",
		       name, bridge, net24, net24, net24, bridge);
	return r;
}

int fl_cmd_provision(int argc, char **argv)
{
	static const struct option lo[] = {
		{"config", required_argument, NULL, 'c'}, {"remove", no_argument, NULL, 'r'},
		{"help", no_argument, NULL, 'h'}, {0},
	};
	const char *path = NULL;
	bool remove = false;
	int c;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 'r':
			remove = true;
			break;
		case 'h':
			puts("usage: fluid provision network [--config FILE] [--remove]");
			return 0;
		default:
			return 2;
		}
	}
	if (optind >= argc || strcmp(argv[optind], "network")) {
		fl_cli_error("usage: fluid provision network [--config FILE] [--remove]");
		return 2;
	}
	FlConfig *cfg = NULL;
	FlError err = {0};
	if (fl_config_load(path, &cfg, &err) < 0) {
		fl_cli_error("%s", err.msg);
		return 1;
	}
	const char *name = cfg->network.name ?: "fluid";
	const char *bridge = cfg->network.bridge ?: "fluidbr0";
	const char *uri = cfg->network.libvirt_uri ?: "qemu:///system";
	char net24[16];
	int r = 1;
	if (subnet24(cfg->network.subnet ?: "10.213.0.0/24", net24, sizeof(net24)) < 0) {
		fl_cli_error("network.subnet must be an IPv4 /24 such as 10.213.0.0/24");
		goto out;
	}
	virSetErrorFunc(NULL, quiet);
	virConnectPtr conn = virConnectOpen(uri);
	if (!conn) {
		fl_cli_error("cannot reach libvirt at %s (is libvirtd running?): %s", uri, last_error());
		goto out;
	}
	r = remove ? remove_network(conn, name) : ensure_network(conn, name, bridge, net24);
	virConnectClose(conn);
out:
	fl_config_free(cfg);
	return r;
}
