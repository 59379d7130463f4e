// SPDX-License-Identifier: MIT
/*
 * cli-hosts: `fluid hosts list`, the production hosts of the server's
 * configuration (GET /v1/hosts, admin token). Human output by default,
 * --json for scripts.
 */
#include <getopt.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cleanup.h"
#include "cli.h"

int fl_cmd_hosts(int argc, char **argv)
{
	static const struct option lo[] = {
		{"json", no_argument, NULL, 'j'},       {"url", required_argument, NULL, 'u'},
		{"token-file", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'}, {0},
	};
	bool json = false;
	const char *url = NULL, *token_file = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'u':
			url = optarg;
			break;
		case 't':
			token_file = optarg;
			break;
		case 'h':
			puts("usage: fluid hosts list [--json] [--url URL] [--token-file FILE]");
			return 0;
		default:
			return 2;
		}
	}
	if (optind >= argc || strcmp(argv[optind], "list")) {
		fl_cli_error("usage: fluid hosts list [--json]");
		return 2;
	}
	_cleanup_free_ char *token = fl_client_token(token_file);
	struct json_object *o = NULL, *hosts;
	int r = fl_cli_call(url, token, "GET", "/v1/hosts", NULL, 15000, &o);
	if (r)
		return r;
	if (json) {
		fl_cli_print_json(o);
	} else if (json_object_object_get_ex(o, "hosts", &hosts) && json_object_array_length(hosts)) {
		printf("%-24s %s\n", "NAME", "ADDRESS");
		for (size_t i = 0; i < json_object_array_length(hosts); i++) {
			struct json_object *h = json_object_array_get_idx(hosts, i);
			printf("%-24s %s\n", fl_json_str(h, "name") ?: "?", fl_json_str(h, "address") ?: "?");
		}
	} else {
		puts("no production hosts configured (hosts: in the configuration file)");
	}
	json_object_put(o);
	return 0;
}
