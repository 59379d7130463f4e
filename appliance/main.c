// SPDX-License-Identifier: MIT
/*
 * main: the `fluid` binary, daemon and CLI in one. argv[1] selects a
 * command from the table below (crun style: one cli-<family>.c per command
 * family). Only the CLI layer prints; everything underneath returns -errno
 * with an FlError that the command prints once.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct Command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
} Command;

static int cmd_help(int argc, char **argv);
int fl_cmd_routes(int argc, char **argv); /* api-openapi.c */
static int cmd_version(int argc, char **argv);
int fl_cmd_sandbox(int argc, char **argv); /* cli-sandbox.c */
int fl_cmd_playbook(int argc, char **argv); /* cli-playbook.c */
int fl_cmd_diff(int argc, char **argv); /* cli-diff.c */
int fl_cmd_approvals(int argc, char **argv); /* cli-approvals.c */
int fl_cmd_policy(int argc, char **argv); /* cli-policy.c */
int fl_cmd_provision(int argc, char **argv); /* cli-provision.c */

static const Command commands[] = {
	{"serve", fl_cmd_serve, "run the server (REST API, web UI, sandbox engine)"},
	{"status", fl_cmd_status, "show the running server's status (accelerator, capacity)"},
	{"config", fl_cmd_config, "check or show the configuration"},
	{"accel", fl_cmd_accel, "run the KVM/TCG accelerator probe"},
	{"sandbox", fl_cmd_sandbox, "create, list, exec in, copy to/from, snapshot, destroy sandboxes"},
	{"token", fl_cmd_token, "create, list or revoke API tokens (admin)"},
	{"hosts", fl_cmd_hosts, "list the production hosts of the configuration (admin)"},
	{"diff", fl_cmd_diff, "trusted diff between two snapshots of a sandbox (or one and live)"},
	{"playbook", fl_cmd_playbook, "generate Ansible playbooks from diffs; list, show, export them"},
	{"approvals", fl_cmd_approvals, "list, show, approve, reject and apply approvals (reviewer)"},
	{"audit", fl_cmd_audit, "show the audit log, or verify its hash chain"},
	{"policy", fl_cmd_policy, "show safety policies; assign them to tokens and sandboxes (admin)"},
	{"provision", fl_cmd_provision, "define the libvirt NAT network for tap networking (root)"},
	{"routes", fl_cmd_routes, "list the API routes this binary serves (tests, docs)"},
	{"version", cmd_version, "print the version"},
	{"help", cmd_help, "show this help"},
};

static int cmd_version(int argc, char **argv)
{
	printf("fluid %s (%s)\n", FL_VERSION, FL_GIT_REV);
	return 0;
}

static int cmd_help(int argc, char **argv)
{
	printf("usage: fluid COMMAND [OPTIONS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		printf("  %-10s %s\n", commands[i].name, commands[i].summary);
	printf("\nfluid COMMAND --help shows a command's options. fluid --version prints the version.\n");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		cmd_help(0, NULL);
		return 2;
	}
	const char *name = argv[1];
	if (!strcmp(name, "--version") || !strcmp(name, "-V"))
		return cmd_version(argc - 1, argv + 1);
	if (!strcmp(name, "--help") || !strcmp(name, "-h"))
		return cmd_help(argc - 1, argv + 1);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(commands[i].name, name))
			return commands[i].fn(argc - 1, argv + 1);
	fl_cli_error("unknown command '%s' (see: fluid help)", name);
	return 2;
}
