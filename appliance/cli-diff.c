// SPDX-License-Identifier: MIT
/*
 * cli-diff: `fluid diff` (and `fluid sandbox diff` once cli-sandbox.c
 * forwards to fl_cmd_diff): trusted diffs through the REST API.
 *
 *   fluid diff ID FROM TO [--ignore PATTERN]... [--json]   compute (TO may be "live")
 *   fluid diff get ID DIFF_ID [--json]                     show a stored diff
 *
 * Options: --url URL, --token-file FILE (see cli.h). Without --json a
 * human summary is printed (fl_diff_summary).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <json-c/json.h>

#include "cleanup.h"
#include "cli.h"
#include "diff.h"

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)

#define DIFF_TIMEOUT_MS (30u * 60 * 1000)


static void usage(FILE *f)
{
	fprintf(f, "usage: fluid diff ID FROM TO [--ignore PATTERN]... [--json]\n"
		   "       fluid diff get ID DIFF_ID [--json]\n"
		   "options: --url URL, --token-file FILE\n"
		   "TO may be \"live\": the running sandbox is snapshotted first.\n");
}

static bool arg_ok(const char *s)
{
	size_t n = strlen(s);
	if (!n || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' || s[i] == '-'))
			return false;
	return true;
}

int fl_cmd_diff(int argc, char **argv)
{
	const char *url = NULL, *token_file = NULL, *pos[4];
	const char *ignore[FL_DIFF_MAX_IGNORE];
	size_t n_ignore = 0;
	int npos = 0;
	bool json = false;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = true;
		else if (!strcmp(argv[i], "--url") && i + 1 < argc)
			url = argv[++i];
		else if (!strcmp(argv[i], "--token-file") && i + 1 < argc)
			token_file = argv[++i];
		else if (!strcmp(argv[i], "--ignore") && i + 1 < argc && n_ignore < FL_DIFF_MAX_IGNORE)
			ignore[n_ignore++] = argv[++i];
		else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		} else if (argv[i][0] == '-' || npos == 4) {
			usage(stderr);
			return 2;
		} else
			pos[npos++] = argv[i];
	}
	char path[256];
	const char *method = "GET";
	_cleanup_(json_object_putp) struct json_object *body = NULL;
	if (npos == 3 && !strcmp(pos[0], "get")) {
		if (!arg_ok(pos[1]) || !arg_ok(pos[2]))
			return fl_cli_error("bad sandbox or diff id"), 2;
		snprintf(path, sizeof(path), "/v1/sandboxes/%s/diffs/%s", pos[1], pos[2]);
	} else if (npos == 3) {
		if (!arg_ok(pos[0]) || !arg_ok(pos[1]) || !arg_ok(pos[2]))
			return fl_cli_error("bad sandbox or snapshot name"), 2;
		snprintf(path, sizeof(path), "/v1/sandboxes/%s/diff", pos[0]);
		method = "POST";
		body = json_object_new_object();
		json_object_object_add(body, "from_snapshot", json_object_new_string(pos[1]));
		json_object_object_add(body, "to_snapshot", json_object_new_string(pos[2]));
		if (n_ignore) {
			struct json_object *a = json_object_new_array();
			for (size_t i = 0; i < n_ignore; i++)
				json_object_array_add(a, json_object_new_string(ignore[i]));
			json_object_object_add(body, "ignore", a);
		}
	} else {
		usage(stderr);
		return 2;
	}
	_cleanup_free_ char *token = fl_client_token(token_file);
	const char *b = body ? json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN) : NULL;
	FlClientResponse res = {0};
	FlError err = {0};
	int r = fl_client_request(fl_client_url(url), method, path, token, b, b ? strlen(b) : 0,
				  DIFF_TIMEOUT_MS, &res, &err);
	if (r < 0) {
		fl_cli_error("%s", err.msg);
		return 1;
	}
	struct json_object *o = json_tokener_parse(res.body ? res.body : "");
	int rc = 0;
	if (res.status >= 300) {
		struct json_object *m;
		fl_cli_error("%s (HTTP %d)",
			     o && json_object_object_get_ex(o, "error", &m) ? json_object_get_string(m)
									   : "request failed",
			     res.status);
		rc = 1;
	} else if (!o) {
		fl_cli_error("the server's answer is not JSON");
		rc = 1;
	} else if (json) {
		puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
							       JSON_C_TO_STRING_NOSLASHESCAPE));
	} else {
		char *s = fl_diff_summary(json_object_object_get(o, "diff"));
		fputs(s ? s : "", stdout);
		free(s);
	}
	json_object_put(o);
	fl_client_response_clear(&res);
	return rc;
}
