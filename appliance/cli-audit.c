// SPDX-License-Identifier: MIT
/*
 * cli-audit: `fluid audit [--sandbox ID] [--action A] [--since T]
 * [--limit N] [--json]` lists audit rows (GET /v1/audit), one line each,
 * oldest first; `fluid audit verify [--json]` checks the hash chain
 * (GET /v1/audit/verify) and exits 1 when it is broken, so scripts and
 * cron jobs can alert on it.
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
	fprintf(f, "usage: fluid audit [--sandbox ID] [--action A] [--since TIME] [--limit N] [--json]\n"
		   "       fluid audit verify [--json]\n"
		   "\n"
		   "Lists the audit log (newest N, oldest first; default 50) or checks its hash\n"
		   "chain (exit 1 when a row was changed or deleted). TIME is RFC 3339 or unix\n"
		   "seconds. Common options: --url URL, --token-file FILE.\n");
}

static struct json_object *jget(struct json_object *o, const char *k)
{
	struct json_object *v;
	return o && json_object_object_get_ex(o, k, &v) ? v : NULL;
}

/* Appends &key=value (percent-encoded) to a query string. */
static void add_query(char *q, size_t len, const char *key, const char *val)
{
	size_t n = strlen(q);
	n += (size_t)snprintf(q + n, len > n ? len - n : 0, "%c%s=", n ? '&' : '?', key);
	for (const unsigned char *p = (const unsigned char *)val; *p && n + 4 < len; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		    strchr("-._~", *p))
			q[n++] = (char)*p;
		else
			n += (size_t)snprintf(q + n, len - n, "%%%02X", *p);
	}
	q[n] = 0;
}

static void print_event(struct json_object *e)
{
	struct json_object *d = jget(e, "details");
	const char *sb = fl_json_str(e, "sandbox_id");
	long long status = json_object_get_int64(jget(e, "status"));
	char st[16] = "-";
	if (status)
		snprintf(st, sizeof(st), "%lld", status);
	/* http.request rows read best as "METHOD PATH". */
	const char *m = fl_json_str(d, "method"), *p = fl_json_str(d, "path");
	printf("%6lld %s %-22s %-8s %-16s %-4s %s", (long long)json_object_get_int64(jget(e, "id")),
	       fl_json_str(e, "at") ?: "?", fl_json_str(e, "actor") ?: "?", fl_json_str(e, "role") ?: "?",
	       fl_json_str(e, "action") ?: "?", st, sb ? sb : "-");
	if (m && p)
		printf(" %s %s%s%s", m, p, fl_json_str(d, "phase") ? " " : "", fl_json_str(d, "phase") ?: "");
	else if (d && json_object_is_type(d, json_type_object))
		printf(" %s", json_object_to_json_string_ext(d, JSON_C_TO_STRING_PLAIN |
								     JSON_C_TO_STRING_NOSLASHESCAPE));
	putchar('\n');
}

static int verify(const char *url, const char *token, bool json)
{
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	if (fl_cli_call(url, token, "GET", "/v1/audit/verify", NULL, 60000, &o))
		return 1;
	bool ok = json_object_get_boolean(jget(o, "ok"));
	if (json) {
		puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
							       JSON_C_TO_STRING_NOSLASHESCAPE));
		return ok ? 0 : 1;
	}
	struct json_object *head = jget(o, "head"), *anchor = jget(o, "anchor");
	long long rows = json_object_get_int64(jget(o, "rows"));
	if (ok) {
		printf("audit chain ok: %lld rows, head %lld %s\n", rows,
		       (long long)json_object_get_int64(jget(head, "id")), fl_json_str(head, "hash") ?: "?");
		if (anchor)
			printf("anchor: row %lld matches %s\n",
			       (long long)json_object_get_int64(jget(anchor, "id")),
			       fl_json_str(anchor, "path") ?: "the server's record");
		return 0;
	}
	printf("audit chain BROKEN: first bad row %lld\n",
	       (long long)json_object_get_int64(jget(o, "first_bad_id")));
	struct json_object *probs = jget(o, "problems");
	for (size_t i = 0; probs && i < json_object_array_length(probs); i++) {
		struct json_object *p = json_object_array_get_idx(probs, i);
		printf("  %-9s %s\n", fl_json_str(p, "kind") ?: "?", fl_json_str(p, "message") ?: "?");
	}
	return 1;
}

int fl_cmd_audit(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"sandbox", required_argument, NULL, 's'}, {"action", required_argument, NULL, 'a'},
		{"since", required_argument, NULL, 'S'},   {"limit", required_argument, NULL, 'l'},
		{"json", no_argument, NULL, 'j'},          {"url", required_argument, NULL, 'u'},
		{"token-file", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *sandbox = NULL, *action = NULL, *since = NULL, *limit = "50", *url = NULL,
		   *token_file = NULL;
	bool json = false;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "s:a:S:l:ju:t:h", longopts, NULL)) != -1) {
		switch (c) {
		case 's': sandbox = optarg; break;
		case 'a': action = optarg; break;
		case 'S': since = optarg; break;
		case 'l': limit = optarg; break;
		case 'j': json = true; break;
		case 'u': url = optarg; break;
		case 't': token_file = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	url = fl_client_url(url);
	_cleanup_free_ char *token = fl_client_token(token_file);
	if (optind < argc) {
		if (!strcmp(argv[optind], "verify") && optind + 1 == argc)
			return verify(url, token, json);
		usage(stderr);
		return 2;
	}
	char *end;
	long lim = strtol(limit, &end, 10);
	if (*end || lim < 1 || lim > 1000) {
		fl_cli_error("--limit must be 1-1000");
		return 2;
	}
	char path[1024] = "";
	if (sandbox)
		add_query(path, sizeof(path), "sandbox_id", sandbox);
	if (action)
		add_query(path, sizeof(path), "action", action);
	if (since)
		add_query(path, sizeof(path), "since", since);
	add_query(path, sizeof(path), "limit", limit);
	char full[1100];
	snprintf(full, sizeof(full), "/v1/audit%s", path);
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	if (fl_cli_call(url, token, "GET", full, NULL, 60000, &o))
		return 1;
	if (json) {
		puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
							       JSON_C_TO_STRING_NOSLASHESCAPE));
		return 0;
	}
	struct json_object *ev = jget(o, "events");
	for (size_t i = 0; ev && i < json_object_array_length(ev); i++)
		print_event(json_object_array_get_idx(ev, i));
	return 0;
}
