// SPDX-License-Identifier: MIT
/*
 * cli-accel: `fluid accel probe [--accel kvm|tcg] [--timeout MS]` runs the
 * accelerator probe guest once and prints what happened, without touching
 * the cache (for operators checking a host, and for tests showing that the
 * probe succeeds under TCG). `fluid accel decide` runs the real decision
 * (cache included) for the configuration.
 */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "accel.h"
#include "cleanup.h"
#include "cli.h"
#include "config.h"
#include "state.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: fluid accel probe [--accel kvm|tcg] [--timeout MS] [--config FILE]\n"
		   "       fluid accel decide [--config FILE]\n");
}

int fl_cmd_accel(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"accel", required_argument, NULL, 'a'},
		{"timeout", required_argument, NULL, 't'},
		{"config", required_argument, NULL, 'c'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *accel = "kvm", *path = NULL;
	long timeout = -1;
	FlError err = {0};
	int c;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *verb = argv[1];
	optind = 2;
	while ((c = getopt_long(argc, argv, "a:t:c:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'a':
			accel = optarg;
			break;
		case 't': {
			char *end;
			timeout = strtol(optarg, &end, 10);
			if (*end || timeout < 100 || timeout > 600000) {
				fl_cli_error("--timeout: expected 100..600000 ms");
				return 2;
			}
			break;
		}
		case 'c':
			path = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc || (strcmp(accel, "kvm") && strcmp(accel, "tcg"))) {
		usage(stderr);
		return 2;
	}
	_cleanup_(fl_config_freep) FlConfig *cfg = NULL;
	if (fl_config_load(path, &cfg, &err) < 0) {
		fl_cli_error("%s", err.msg);
		return 1;
	}
	if (!strcmp(verb, "decide")) {
		FlAccelInfo info;
		if (fl_accel_decide(cfg, &info, &err) < 0) {
			fl_cli_error("%s", err.msg);
			return 1;
		}
		printf("accelerator: %s (%s)\n", fl_accel_name(info.kind), info.reason);
		printf("decided:     %s%s\n", info.decided_at, info.cached ? ", from the cache" : "");
		return 0;
	}
	if (strcmp(verb, "probe") != 0) {
		usage(stderr);
		return 2;
	}
	FlAccelProbeResult pr;
	if (fl_accel_probe(cfg->qemu, accel,
			   timeout > 0 ? (unsigned)timeout : cfg->accel_probe_timeout_ms, &pr,
			   &err) < 0) {
		fl_cli_error("%s", err.msg);
		return 1;
	}
	printf("%s probe: %s: %s (stages %s)\n", accel, pr.ok ? "ok" : "failed", pr.reason,
	       pr.stages[0] ? pr.stages : "none");
	return pr.ok ? 0 : 1;
}
