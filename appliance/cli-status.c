// SPDX-License-Identifier: MIT
/*
 * cli-status: `fluid status`, a client of GET /v1/status on the running
 * server. Human output by default (the accelerator line first, so scripts
 * and people see it at once), --json for the raw document.
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
	fprintf(f, "usage: fluid status [--json] [--url URL] [--token-file FILE]\n"
		   "\n"
		   "Shows the running server's status: accelerator and why, versions, capacity.\n"
		   "URL defaults to $FLUID_URL or " FL_DEFAULT_URL ".\n");
}

static const char *jget_str(struct json_object *o, const char *k)
{
	struct json_object *v;
	if (!o || !json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static long long jget_int(struct json_object *o, const char *k)
{
	struct json_object *v;
	if (!o || !json_object_object_get_ex(o, k, &v))
		return -1;
	return json_object_get_int64(v);
}

static struct json_object *jget(struct json_object *o, const char *k)
{
	struct json_object *v;
	return o && json_object_object_get_ex(o, k, &v) ? v : NULL;
}

int fl_cmd_status(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"json", no_argument, NULL, 'j'},
		{"url", required_argument, NULL, 'u'},
		{"token-file", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *url = NULL, *token_file = NULL;
	bool json = false;
	FlError err = {0};
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "ju:t:h", longopts, NULL)) != -1) {
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
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	url = fl_client_url(url);
	_cleanup_free_ char *token = fl_client_token(token_file);
	FlClientResponse resp = {0};
	int r = fl_client_request(url, "GET", "/v1/status", token, NULL, 0, 15000, &resp, &err);
	if (r < 0) {
		fl_cli_error("%s", err.msg);
		return 1;
	}
	_cleanup_(json_object_putp) struct json_object *o = json_tokener_parse(resp.body);
	if (resp.status != 200) {
		const char *msg = jget_str(o, "error");
		fl_cli_error("%s: GET /v1/status: %d %s%s", url, resp.status,
			     msg ? msg : "unexpected answer",
			     resp.status == 401 ? " (set FLUID_TOKEN or use --token-file)" : "");
		fl_client_response_clear(&resp);
		return 1;
	}
	if (!o || !json_object_is_type(o, json_type_object)) {
		fl_cli_error("%s: GET /v1/status: not a JSON object", url);
		fl_client_response_clear(&resp);
		return 1;
	}
	if (json) {
		fputs(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY), stdout);
		fputc('\n', stdout);
		fl_client_response_clear(&resp);
		return 0;
	}
	fl_client_response_clear(&resp);

	const char *acc = jget_str(o, "accelerator"), *why = jget_str(o, "accelerator_reason");
	struct json_object *detail = jget(o, "accelerator_detail");
	struct json_object *cached = jget(detail, "cached");
	printf("accelerator: %s (%s)\n", acc ? acc : "unknown", why ? why : "no reason given");
	printf("decided:     %s, mode %s%s\n", jget_str(detail, "decided_at") ?: "?",
	       jget_str(detail, "mode") ?: "?",
	       cached && json_object_get_boolean(cached) ? ", from the cache" : "");
	printf("server:      fluid %s (%s) at %s, up %llds\n", jget_str(o, "version") ?: "?",
	       jget_str(o, "git_rev") ?: "?", url, jget_int(o, "uptime_seconds"));
	printf("qemu:        %s\n", jget_str(o, "qemu_version") ?: "unknown");
	struct json_object *cap = jget(o, "capacity"), *host = jget(cap, "host");
	printf("sandboxes:   %lld of %lld (default %lld MiB, %lld vcpu)\n", jget_int(cap, "sandboxes"),
	       jget_int(cap, "max_sandboxes"), jget_int(cap, "default_memory_mb"),
	       jget_int(cap, "default_vcpus"));
	printf("host:        %lld cpus, %lld MiB memory (%lld MiB available), kernel %s\n",
	       jget_int(host, "cpus"), jget_int(host, "memory_mb"),
	       jget_int(host, "memory_available_mb"), jget_str(o, "kernel_release") ?: "?");
	printf("state dir:   %s\n", jget_str(o, "state_dir") ?: "?");
	return 0;
}
