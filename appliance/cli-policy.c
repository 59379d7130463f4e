// SPDX-License-Identifier: MIT
/*
 * cli-policy: `fluid policy`, a client of the safety policy endpoints
 * (api-policies.h, docs/policies.md):
 *
 *   fluid policy list                         the configured policies
 *   fluid policy show NAME                    one policy
 *   fluid policy token ID [--set NAME|--clear]     a token's policy (set: admin)
 *   fluid policy sandbox ID [--set NAME|--clear]   a sandbox's effective policy
 *   fluid policy check [--config FILE] [--policy NAME] COMMAND...
 *                                             offline: what a policy of the
 *                                             configuration decides, and the
 *                                             simple commands it saw
 *
 * Human output by default, --json for scripts.
 */
#include <getopt.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "cli.h"
#include "config.h"
#include "policy.h"

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)

static void usage(FILE *f)
{
	fprintf(f, "usage: fluid policy list [--json]\n"
		   "       fluid policy show NAME [--json]\n"
		   "       fluid policy token ID [--set NAME | --clear] [--json]\n"
		   "       fluid policy sandbox ID [--set NAME | --clear] [--json]\n"
		   "       fluid policy check [--config FILE] [--policy NAME] COMMAND...\n"
		   "\n"
		   "Shows the safety policies of the running server and which one applies to a\n"
		   "token or a sandbox; --set/--clear change the assignment (admin token).\n"
		   "check decides a command line against a policy of the configuration file\n"
		   "without a server (exit 0 allow, 1 deny, 3 approval).\n"
		   "Common options: --url URL, --token-file FILE.\n");
}

static bool id_ok(const char *s)
{
	size_t n = strlen(s);
	if (!n || n > 63)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || strchr("._-", s[i])))
			return false;
	return true;
}

/* fluid policy check: the decision of a local configuration's policy. */
static int check_offline(const char *config, const char *name, int nargs, char **args, bool json)
{
	FlConfig *cfg = NULL;
	FlError err = {0};
	if (nargs < 1) {
		fl_cli_error("policy check needs a command line");
		return 2;
	}
	if (fl_config_load(config, &cfg, &err) < 0) {
		fl_cli_error("%s", err.msg);
		return 2;
	}
	_cleanup_(fl_config_freep) FlConfig *c = cfg;
	const FlPolicy *p = fl_config_policy(c, name);
	if (!p) {
		fl_cli_error("no policy '%s' in the configuration",
			     name ? name : c->default_policy);
		return 2;
	}
	size_t total = 1;
	for (int i = 0; i < nargs; i++)
		total += strlen(args[i]) + 1;
	_cleanup_free_ char *line = calloc(total, 1);
	if (!line)
		return 2;
	for (int i = 0; i < nargs; i++) {
		if (i)
			strcat(line, " ");
		strcat(line, args[i]);
	}
	FlPolicyDecision d;
	FlShellCmds cmds;
	if (fl_policy_check_command(p, line, NULL, &d) < 0 || fl_shell_parse(line, &cmds) < 0) {
		fl_cli_error("out of memory");
		return 2;
	}
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	json_object_object_add(o, "policy", json_object_new_string(p->name));
	json_object_object_add(o, "decision",
			       json_object_new_string(fl_policy_action_name(d.action)));
	json_object_object_add(o, "rule", d.rule[0] ? json_object_new_string(d.rule) : NULL);
	json_object_object_add(o, "matched",
			       d.command[0] ? json_object_new_string(d.command) : NULL);
	struct json_object *arr = json_object_new_array();
	for (size_t i = 0; i < cmds.n; i++) {
		struct json_object *e = json_object_new_object(), *av = json_object_new_array();
		for (size_t k = 0; k < cmds.v[i].argc; k++)
			json_object_array_add(av, json_object_new_string(cmds.v[i].argv[k]));
		json_object_object_add(e, "argv", av);
		json_object_object_add(e, "opaque", json_object_new_boolean(cmds.v[i].opaque));
		if (cmds.v[i].opaque)
			json_object_object_add(e, "reason",
					       json_object_new_string(cmds.v[i].reason));
		json_object_array_add(arr, e);
	}
	json_object_object_add(o, "commands", arr);
	json_object_object_add(o, "parse_error",
			       cmds.error[0] ? json_object_new_string(cmds.error) : NULL);
	fl_shell_cmds_clear(&cmds);
	if (json) {
		fl_cli_print_json(o);
	} else {
		printf("%s (policy %s%s%s)\n", fl_policy_action_name(d.action), p->name,
		       d.rule[0] ? ", " : "", d.rule);
		for (size_t i = 0; i < json_object_array_length(arr); i++) {
			struct json_object *e = json_object_array_get_idx(arr, i);
			struct json_object *av = json_object_object_get(e, "argv");
			printf("  ");
			for (size_t k = 0; k < json_object_array_length(av); k++)
				printf("%s%s", k ? " " : "",
				       json_object_get_string(json_object_array_get_idx(av, k)));
			if (json_object_get_boolean(json_object_object_get(e, "opaque")))
				printf("    [opaque: %s]", fl_json_str(e, "reason") ?: "");
			printf("\n");
		}
		if (fl_json_str(o, "parse_error"))
			printf("  [cannot parse: %s]\n", fl_json_str(o, "parse_error"));
	}
	return d.action == FL_POLICY_ALLOW ? 0 : d.action == FL_POLICY_DENY ? 1 : 3;
}

static void print_list(const char *label, struct json_object *arr)
{
	size_t n = arr ? json_object_array_length(arr) : 0;
	printf("  %-10s", label);
	if (!n)
		printf(" -");
	for (size_t i = 0; i < n; i++)
		printf("%s %s", i ? "," : "",
		       json_object_get_string(json_object_array_get_idx(arr, i)));
	printf("\n");
}

static void print_policy(struct json_object *p)
{
	struct json_object *c = json_object_object_get(p, "commands");
	struct json_object *f = json_object_object_get(p, "files");
	struct json_object *l = json_object_object_get(p, "limits");
	struct json_object *n = json_object_object_get(p, "network");
	printf("%s%s%s\n", fl_json_str(p, "name") ?: "?", fl_json_str(p, "description") ? ": " : "",
	       fl_json_str(p, "description") ?: "");
	printf("commands:\n");
	print_list("deny", json_object_object_get(c, "deny"));
	print_list("approval", json_object_object_get(c, "approval"));
	print_list("allow", json_object_object_get(c, "allow"));
	printf("  %-10s %s (approval timeout %s s)\n", "opaque", fl_json_str(c, "opaque") ?: "?",
	       json_object_get_string(json_object_object_get(c, "approval_timeout_sec")));
	printf("files:\n");
	print_list("read", json_object_object_get(f, "read"));
	print_list("write", json_object_object_get(f, "write"));
	printf("limits:\n");
	json_object_object_foreach(l, k, v) printf("  %-16s %s\n", k, json_object_get_string(v));
	printf("network:\n  %-10s %s\n", "egress", fl_json_str(n, "egress") ?: "?");
	print_list("allow", json_object_object_get(n, "allow"));
}

int fl_cmd_policy(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"set", required_argument, NULL, 's'},
		{"clear", no_argument, NULL, 'c'},
		{"json", no_argument, NULL, 'j'},
		{"url", required_argument, NULL, 'u'},
		{"token-file", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},
		{"config", required_argument, NULL, 'C'},
		{"policy", required_argument, NULL, 'p'},
		{0},
	};
	const char *url = NULL, *token_file = NULL, *set = NULL, *config = NULL, *pname = NULL;
	bool json = false, clear = false;
	int c;

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	const char *sub = argv[1];
	optind = 1;
	/* "+": options end at the first operand (a checked command has its own) */
	while ((c = getopt_long(argc - 1, argv + 1, "+s:cju:t:hC:p:", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			set = optarg;
			break;
		case 'c':
			clear = true;
			break;
		case 'j':
			json = true;
			break;
		case 'u':
			url = optarg;
			break;
		case 't':
			token_file = optarg;
			break;
		case 'C':
			config = optarg;
			break;
		case 'p':
			pname = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	int nargs = argc - 1 - optind;
	char **args = argv + 1 + optind;
	if (!strcmp(sub, "check"))
		return check_offline(config, pname, nargs, args, json);
	url = fl_client_url(url);
	_cleanup_free_ char *token = fl_client_token(token_file);
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	char path[300];

	if (!strcmp(sub, "list")) {
		if (nargs || set || clear) {
			usage(stderr);
			return 2;
		}
		if (fl_cli_call(url, token, "GET", "/v1/policies", NULL, 15000, &o))
			return 1;
		if (json) {
			fl_cli_print_json(o);
			return 0;
		}
		struct json_object *arr = json_object_object_get(o, "policies");
		const char *def = fl_json_str(o, "default") ?: "";
		for (size_t i = 0; arr && i < json_object_array_length(arr); i++) {
			struct json_object *p = json_object_array_get_idx(arr, i);
			const char *name = fl_json_str(p, "name") ?: "?";
			printf("%-20s %-8s %s\n", name, !strcmp(name, def) ? "default" : "",
			       fl_json_str(p, "description") ?: "");
		}
		return 0;
	}
	if (!strcmp(sub, "show")) {
		if (nargs != 1 || !id_ok(args[0]) || set || clear) {
			fl_cli_error("policy show needs one policy name");
			return 2;
		}
		snprintf(path, sizeof(path), "/v1/policies/%s", args[0]);
		if (fl_cli_call(url, token, "GET", path, NULL, 15000, &o))
			return 1;
		if (json)
			fl_cli_print_json(o);
		else
			print_policy(json_object_object_get(o, "policy"));
		return 0;
	}
	if (!strcmp(sub, "token") || !strcmp(sub, "sandbox")) {
		if (nargs != 1 || !id_ok(args[0]) || (set && clear) || (set && !id_ok(set))) {
			fl_cli_error("policy %s needs one %s id (and at most one of --set NAME, "
				     "--clear)",
				     sub, sub);
			return 2;
		}
		snprintf(path, sizeof(path), "/v1/%s/%s/policy",
			 !strcmp(sub, "token") ? "tokens" : "sandboxes", args[0]);
		if (set || clear) {
			_cleanup_(json_object_putp) struct json_object *b =
				json_object_new_object();
			json_object_object_add(b, "policy",
					       set ? json_object_new_string(set) : NULL);
			if (fl_cli_call(url, token, "PUT", path, json_object_to_json_string(b),
					15000, &o))
				return 1;
		} else if (fl_cli_call(url, token, "GET", path, NULL, 15000, &o)) {
			return 1;
		}
		if (json) {
			fl_cli_print_json(o);
			return 0;
		}
		printf("%s (%s)\n", fl_json_str(o, "policy") ?: "?",
		       fl_json_str(o, "source") ?: "?");
		return 0;
	}
	fl_cli_error("unknown policy command '%s' (list, show, token, sandbox, check)", sub);
	return 2;
}
