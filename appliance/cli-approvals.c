// SPDX-License-Identifier: MIT
/*
 * cli-approvals: `fluid approvals ...` (docs/approvals.md), through the
 * server's API:
 *
 *   list [--state S] [--kind K] [--sandbox ID] [--limit N] [--json]
 *   show ID [--wait SECONDS] [--json]
 *   approve ID [--comment TEXT]     reject ID [--comment TEXT]
 *   apply ID [--host NAME]... [--check] [--json]
 *
 * Common options: --url URL, --token-file FILE. Deciding and applying need
 * a reviewer (or admin) token; the server refuses agent tokens.
 */
#include <getopt.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "approvals.h"
#include "cleanup.h"
#include "cli.h"

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)

#define MAX_HOST_ARGS 64

static void usage(FILE *f)
{
	fprintf(f, "usage: fluid approvals list [--state S] [--kind K] [--sandbox ID] [--limit N] "
		   "[--json]\n"
		   "       fluid approvals show ID [--wait SECONDS] [--json]\n"
		   "       fluid approvals approve ID [--comment TEXT]\n"
		   "       fluid approvals reject ID [--comment TEXT]\n"
		   "       fluid approvals apply ID [--host NAME]... [--check] [--json]\n"
		   "\n"
		   "States: pending, approved, rejected, applying, applied, failed.\n"
		   "Common options: --url URL, --token-file FILE.\n");
}

static struct json_object *jget(struct json_object *o, const char *k)
{
	struct json_object *v;
	return o && json_object_object_get_ex(o, k, &v) ? v : NULL;
}

static void add_query(char *q, size_t len, const char *key, const char *val)
{
	size_t n = strlen(q);
	n += (size_t)snprintf(q + n, len > n ? len - n : 0, "%c%s=", n ? '&' : '?', key);
	for (const unsigned char *p = (const unsigned char *)val; *p && n + 4 < len; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		    (*p >= '0' && *p <= '9') || strchr("-._~", *p))
			q[n++] = (char)*p;
		else
			n += (size_t)snprintf(q + n, len - n, "%%%02X", *p);
	}
	q[n] = 0;
}

static void print_one(struct json_object *a)
{
	printf("%s  %-8s %-8s %-22s %s\n", fl_json_str(a, "id") ?: "?",
	       fl_json_str(a, "state") ?: "?", fl_json_str(a, "kind") ?: "?",
	       fl_json_str(a, "requested_by") ?: "-", fl_json_str(a, "summary") ?: "");
}

static void print_detail(struct json_object *a)
{
	static const char *const keys[] = {
		"id",		"state",	  "kind",	"summary",
		"sandbox_id",	"change_id",	  "playbook",	"playbook_sha256",
		"requested_by", "requested_role", "created_at", "decided_by",
		"decided_at",	"comment",	  NULL};
	for (size_t i = 0; keys[i]; i++) {
		const char *v = fl_json_str(a, keys[i]);
		if (v)
			printf("%-16s %s\n", keys[i], v);
	}
	struct json_object *d = jget(a, "details");
	if (d && json_object_is_type(d, json_type_object))
		printf("%-16s %s\n", "details",
		       json_object_to_json_string_ext(d, JSON_C_TO_STRING_PLAIN |
								 JSON_C_TO_STRING_NOSLASHESCAPE));
	struct json_object *ap = jget(a, "apply");
	if (ap && json_object_is_type(ap, json_type_object)) {
		printf("apply:           ok=%s exit=%s hosts=%s%s%s\n",
		       json_object_get_boolean(jget(ap, "ok")) ? "yes" : "no",
		       jget(ap, "exit_code") ? json_object_get_string(jget(ap, "exit_code")) : "-",
		       jget(ap, "hosts") ? json_object_to_json_string_ext(jget(ap, "hosts"),
									  JSON_C_TO_STRING_PLAIN)
					 : "[]",
		       fl_json_str(ap, "error") ? " error: " : "", fl_json_str(ap, "error") ?: "");
		const char *tail = fl_json_str(ap, "output_tail");
		if (tail && *tail)
			printf("---- output (tail) ----\n%s%s", tail,
			       tail[strlen(tail) - 1] == '\n' ? "" : "\n");
	}
}

int fl_cmd_approvals(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"state", required_argument, NULL, 's'},
		{"kind", required_argument, NULL, 'k'},
		{"sandbox", required_argument, NULL, 'S'},
		{"limit", required_argument, NULL, 'l'},
		{"comment", required_argument, NULL, 'c'},
		{"wait", required_argument, NULL, 'w'},
		{"host", required_argument, NULL, 'H'},
		{"check", no_argument, NULL, 'C'},
		{"json", no_argument, NULL, 'j'},
		{"url", required_argument, NULL, 'u'},
		{"token-file", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *state = NULL, *kind = NULL, *sandbox = NULL, *limit = "50", *comment = NULL,
		   *wait = NULL, *url = NULL, *token_file = NULL, *hosts[MAX_HOST_ARGS];
	size_t nhosts = 0;
	bool json = false, check = false;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "s:k:S:l:c:w:H:Cju:t:h", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			state = optarg;
			break;
		case 'k':
			kind = optarg;
			break;
		case 'S':
			sandbox = optarg;
			break;
		case 'l':
			limit = optarg;
			break;
		case 'c':
			comment = optarg;
			break;
		case 'w':
			wait = optarg;
			break;
		case 'H':
			if (nhosts == MAX_HOST_ARGS) {
				fl_cli_error("at most %d --host options", MAX_HOST_ARGS);
				return 2;
			}
			hosts[nhosts++] = optarg;
			break;
		case 'C':
			check = true;
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
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	const char *sub = argv[optind];
	const char *id = optind + 1 < argc ? argv[optind + 1] : NULL;
	if (optind + (id ? 2 : 1) != argc) {
		usage(stderr);
		return 2;
	}
	url = fl_client_url(url);
	_cleanup_free_ char *token = fl_client_token(token_file);
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	char path[1200];

	if (!strcmp(sub, "list") && !id) {
		char q[1024] = "";
		char *end;
		long lim = strtol(limit, &end, 10);
		if (*end || lim < 1 || lim > 1000) {
			fl_cli_error("--limit must be 1-1000");
			return 2;
		}
		if (state)
			add_query(q, sizeof(q), "state", state);
		if (kind)
			add_query(q, sizeof(q), "kind", kind);
		if (sandbox)
			add_query(q, sizeof(q), "sandbox_id", sandbox);
		add_query(q, sizeof(q), "limit", limit);
		snprintf(path, sizeof(path), "/v1/approvals%s", q);
		if (fl_cli_call(url, token, "GET", path, NULL, 60000, &o))
			return 1;
		if (json) {
			fl_cli_print_json(o);
			return 0;
		}
		struct json_object *arr = jget(o, "approvals");
		for (size_t i = 0; arr && i < json_object_array_length(arr); i++)
			print_one(json_object_array_get_idx(arr, i));
		fprintf(stderr, "%zu shown, %lld in total\n",
			arr ? json_object_array_length(arr) : 0,
			(long long)json_object_get_int64(jget(o, "total")));
		return 0;
	}
	if (!id || !fl_approval_id_valid(id)) {
		if (id)
			fl_cli_error("'%s' is not an approval id (apr_ + 32 hex digits)", id);
		else
			usage(stderr);
		return 2;
	}
	if (!strcmp(sub, "show")) {
		unsigned timeout = 60000;
		if (wait) {
			char *end;
			long w = strtol(wait, &end, 10);
			if (*end || w < 0 || w > FL_APPROVAL_WAIT_MAX_S) {
				fl_cli_error("--wait must be 0-%d seconds", FL_APPROVAL_WAIT_MAX_S);
				return 2;
			}
			snprintf(path, sizeof(path), "/v1/approvals/%s?wait=%ld", id, w);
			timeout += (unsigned)w * 1000;
		} else {
			snprintf(path, sizeof(path), "/v1/approvals/%s", id);
		}
		if (fl_cli_call(url, token, "GET", path, NULL, timeout, &o))
			return 1;
		if (json)
			fl_cli_print_json(o);
		else
			print_detail(jget(o, "approval"));
		return 0;
	}
	if (!strcmp(sub, "approve") || !strcmp(sub, "reject")) {
		_cleanup_(json_object_putp) struct json_object *b = json_object_new_object();
		if (comment)
			json_object_object_add(b, "comment", json_object_new_string(comment));
		snprintf(path, sizeof(path), "/v1/approvals/%s/%s", id, sub);
		if (fl_cli_call(url, token, "POST", path, json_object_to_json_string(b), 60000, &o))
			return 1;
		if (json)
			fl_cli_print_json(o);
		else
			printf("%s %s\n", id, fl_json_str(jget(o, "approval"), "state") ?: "?");
		return 0;
	}
	if (!strcmp(sub, "apply")) {
		_cleanup_(json_object_putp) struct json_object *b = json_object_new_object();
		if (nhosts) {
			struct json_object *h = json_object_new_array();
			for (size_t i = 0; i < nhosts; i++)
				json_object_array_add(h, json_object_new_string(hosts[i]));
			json_object_object_add(b, "hosts", h);
		}
		if (check)
			json_object_object_add(b, "check", json_object_new_boolean(1));
		snprintf(path, sizeof(path), "/v1/approvals/%s/apply", id);
		if (fl_cli_call(url, token, "POST", path, json_object_to_json_string(b),
				35 * 60 * 1000, &o))
			return 1;
		if (json) {
			fl_cli_print_json(o);
		} else if (check) {
			struct json_object *r = jget(o, "check");
			const char *tail = fl_json_str(r, "output_tail");
			if (tail)
				fputs(tail, stdout);
			printf("check run: %s\n",
			       json_object_get_boolean(jget(r, "ok")) ? "ok" : "FAILED");
		} else {
			print_detail(jget(o, "approval"));
		}
		struct json_object *a = jget(o, "approval");
		const char *st = fl_json_str(a, "state");
		if (check)
			return json_object_get_boolean(jget(jget(o, "check"), "ok")) ? 0 : 1;
		return st && !strcmp(st, "applied") ? 0 : 1;
	}
	usage(stderr);
	return 2;
}
