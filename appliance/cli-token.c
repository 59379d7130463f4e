// SPDX-License-Identifier: MIT
/*
 * cli-token: `fluid token create|list|revoke`, a client of /v1/tokens
 * (admin token needed). Human output by default, --json for scripts.
 * `create` prints the new token on stdout alone on its line (human mode),
 * so `T=$(fluid token create --role agent | head -1)` works.
 */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "cli.h"

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)

static void usage(FILE *f)
{
	fprintf(f, "usage: fluid token create --role agent|reviewer|admin [--name NAME] [--json]\n"
		   "       fluid token list [--all] [--json]\n"
		   "       fluid token revoke ID [--json]\n"
		   "\n"
		   "Manages API tokens on the running server (needs an admin token).\n"
		   "Common options: --url URL, --token-file FILE.\n");
}

int fl_cmd_token(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"role", required_argument, NULL, 'r'}, {"name", required_argument, NULL, 'n'},
		{"all", no_argument, NULL, 'a'},        {"json", no_argument, NULL, 'j'},
		{"url", required_argument, NULL, 'u'},  {"token-file", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},       {0},
	};
	const char *role = NULL, *name = NULL, *url = NULL, *token_file = NULL;
	bool json = false, all = false;
	int c;

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	const char *sub = argv[1];
	optind = 1;
	while ((c = getopt_long(argc - 1, argv + 1, "r:n:aju:t:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'r': role = optarg; break;
		case 'n': name = optarg; break;
		case 'a': all = true; break;
		case 'j': json = true; break;
		case 'u': url = optarg; break;
		case 't': token_file = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	int nargs = argc - 1 - optind;
	char **args = argv + 1 + optind;
	url = fl_client_url(url);
	_cleanup_free_ char *token = fl_client_token(token_file);
	_cleanup_(json_object_putp) struct json_object *o = NULL;

	if (!strcmp(sub, "create")) {
		if (!role || nargs != 0) {
			fl_cli_error("token create needs --role agent|reviewer|admin");
			return 2;
		}
		_cleanup_(json_object_putp) struct json_object *body = json_object_new_object();
		json_object_object_add(body, "role", json_object_new_string(role));
		if (name)
			json_object_object_add(body, "name", json_object_new_string(name));
		if (fl_cli_call(url, token, "POST", "/v1/tokens", json_object_to_json_string(body), 15000, &o))
			return 1;
		if (json) {
			fl_cli_print_json(o);
			return 0;
		}
		printf("%s\n", fl_json_str(o, "token") ?: "?");
		fprintf(stderr, "token %s (role %s%s%s): shown only this once, keep it safe\n",
			fl_json_str(o, "id") ?: "?", fl_json_str(o, "role") ?: "?", name ? ", name " : "",
			name ? name : "");
		return 0;
	}
	if (!strcmp(sub, "list")) {
		if (nargs != 0) {
			usage(stderr);
			return 2;
		}
		if (fl_cli_call(url, token, "GET", all ? "/v1/tokens?include_revoked=true" : "/v1/tokens",
				NULL, 15000, &o))
			return 1;
		if (json) {
			fl_cli_print_json(o);
			return 0;
		}
		struct json_object *arr = NULL;
		json_object_object_get_ex(o, "tokens", &arr);
		size_t n = arr ? json_object_array_length(arr) : 0;
		printf("%-22s %-9s %-28s %-20s %s\n", "ID", "ROLE", "CREATED", "NAME",
		       all ? "REVOKED" : "");
		for (size_t i = 0; i < n; i++) {
			struct json_object *t = json_object_array_get_idx(arr, i);
			printf("%-22s %-9s %-28s %-20s %s\n", fl_json_str(t, "id") ?: "", fl_json_str(t, "role") ?: "",
			       fl_json_str(t, "created_at") ?: "", fl_json_str(t, "name") ?: "-",
			       all ? (fl_json_str(t, "revoked_at") ?: "-") : "");
		}
		return 0;
	}
	if (!strcmp(sub, "revoke")) {
		if (nargs != 1) {
			fl_cli_error("token revoke needs one token ID (see: fluid token list)");
			return 2;
		}
		char path[300];
		for (const char *p = args[0]; *p; p++)
			if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_') ||
			    strlen(args[0]) > 64) {
				fl_cli_error("'%s' is not a token id", args[0]);
				return 2;
			}
		snprintf(path, sizeof(path), "/v1/tokens/%s", args[0]);
		if (fl_cli_call(url, token, "DELETE", path, NULL, 15000, &o))
			return 1;
		if (json)
			fl_cli_print_json(o);
		else
			printf("revoked %s\n", args[0]);
		return 0;
	}
	fl_cli_error("unknown token command '%s' (create, list, revoke)", sub);
	return 2;
}
