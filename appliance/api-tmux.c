// SPDX-License-Identifier: MIT
/*
 * api-tmux: the tmux session every sandbox has, for agents and the people
 * watching them (docs/terminal.md).
 *
 *   POST /api/v1/tmux/panes/send-keys  {sandbox_id*, pane_id?, keys*, enter?, literal?}
 *                                      -> {"ok": true, "pane_id"}
 *   POST /api/v1/tmux/panes/read       {sandbox_id*, pane_id?, lines?}
 *                                      -> {"pane_id", "content", "truncated"}
 *   GET  /v1/sandboxes/{id}/tmux/sessions   {"sessions": [Session]}
 *   POST /v1/sandboxes/{id}/tmux/sessions   {name?, command?} -> 201 {"session": Session}
 *
 * The default session ("fluid") is created on demand by the first call
 * that needs it; a pane_id names "%N" or "SESSION[:W[.P]]". Everything
 * runs as argv execs of tmux through the agent (tmux.c), one exec per
 * call in the common case.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api-policies.h"
#include "cleanup.h"
#include "engine-service.h"
#include "tmux.h"

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)

#define KEYS_MAX 16384
#define KEY_NAMES_MAX 32
#define KEY_NAME_LEN 32
#define READ_LINES_MAX 10000
#define COMMAND_MAX 4096
#define COMMAND_ARGV_MAX 32

/* The sandbox named by the body's sandbox_id (id or name), like the path's {id}. */
static int body_sandbox(FlHttpReq *req, struct json_object *body, char id[64])
{
	const char *sid;
	int r = fl_json_get_string(body, "sandbox_id", true, 63, &sid, &req->err);
	if (r < 0)
		return r;
	FlEngine *e = fl_api_engine(req);
	if (!e)
		return fl_http_fail(req, -ENODEV, "the sandbox engine is not available");
	if (!fl_api_name_ok(sid, 63) || strstr(sid, ".."))
		return fl_http_fail(req, -EINVAL, "invalid sandbox_id");
	_cleanup_(json_object_putp) struct json_object *rec = NULL;
	struct json_object *v;
	FlError err = {0};
	r = fl_engine_get(e, sid, &rec, &err);
	if (r < 0)
		return r == -ENOENT ? fl_http_fail(req, r, "no sandbox '%s'", sid)
				    : fl_api_fail(req, r, &err);
	if (!json_object_object_get_ex(rec, "id", &v))
		return fl_http_fail(req, -EIO, "engine record without id");
	snprintf(id, 64, "%s", json_object_get_string(v));
	return 0;
}

/* pane_id (optional) -> tmux target and the session it names ("" for %N). */
static int pane_target(FlHttpReq *req, struct json_object *body, char target[FL_TMUX_PANE_MAX + 8],
		       char session[FL_TMUX_NAME_MAX + 1])
{
	const char *pane = NULL;
	int r = fl_json_get_string(body, "pane_id", false, 256, &pane, &req->err);
	if (r < 0)
		return r;
	if (!pane)
		pane = FL_TMUX_DEFAULT_SESSION;
	if (fl_tmux_pane_target(pane, target, session) < 0)
		return fl_http_fail(req, -EINVAL,
				    "invalid pane_id: give \"%%N\" or SESSION[:WINDOW[.PANE]] "
				    "(session [A-Za-z0-9_-]{1,32}, indexes decimal)");
	return 0;
}

/*
 * Runs args; when tmux says the default session (or the server) is missing
 * and the target is in the default session, creates it and runs args again.
 * On success *res holds a result with exit code 0.
 */
static int run_on_pane(FlHttpReq *req, const char *id, const char *session, const char *const *args,
		       size_t out_cap, FlTmuxResult *res)
{
	FlEngine *e = fl_api_engine(req);
	FlError err = {0};
	for (int attempt = 0;; attempt++) {
		int r = fl_tmux_run(e, id, args, out_cap, res, &err);
		if (r < 0)
			return fl_api_fail(req, r, &err);
		if (res->exit_code == 0)
			return 0;
		if (attempt == 0 && fl_tmux_missing_session(res) &&
		    !strcmp(session, FL_TMUX_DEFAULT_SESSION)) {
			fl_tmux_result_clear(res);
			r = fl_tmux_ensure_session(e, id, session, NULL, NULL, &err);
			if (r < 0)
				return fl_api_fail(req, r, &err);
			continue;
		}
		r = fl_tmux_error(res, &err);
		fl_tmux_result_clear(res);
		return fl_api_fail(req, r, &err);
	}
}

/* The "%N" line display-message printed first; -EIO if it is not one. */
static int take_pane_id(FlHttpReq *req, const FlTmuxResult *res, char pane[24], size_t *ret_skip)
{
	size_t l = strcspn(res->out, "\n");
	if (l < 2 || l > 16 || res->out[0] != '%' || res->out[l] != '\n')
		return fl_http_fail(req, -EIO, "tmux did not report the pane");
	for (size_t i = 1; i < l; i++)
		if (res->out[i] < '0' || res->out[i] > '9')
			return fl_http_fail(req, -EIO, "tmux did not report the pane");
	memcpy(pane, res->out, l);
	pane[l] = 0;
	if (ret_skip)
		*ret_skip = l + 1;
	return 0;
}

static int send_keys(FlHttpReq *req)
{
	static const char *const allowed[] = {"sandbox_id", "pane_id", "keys",
					      "enter",	    "literal", NULL};
	_cleanup_(json_object_putp) struct json_object *body = NULL;
	char id[64], target[FL_TMUX_PANE_MAX + 8], session[FL_TMUX_NAME_MAX + 1];
	char names[KEY_NAMES_MAX][KEY_NAME_LEN + 1];
	const char *keys;
	bool enter = false, literal = true;
	int r;

	if ((r = fl_http_read_json(req, &body)) < 0 ||
	    (r = fl_json_reject_unknown(body, allowed, &req->err)) < 0 ||
	    (r = fl_json_get_string(body, "keys", true, KEYS_MAX, &keys, &req->err)) < 0 ||
	    (r = fl_json_get_bool(body, "enter", false, &enter, &req->err)) < 0 ||
	    (r = fl_json_get_bool(body, "literal", false, &literal, &req->err)) < 0 ||
	    (r = pane_target(req, body, target, session)) < 0)
		return r;
	struct json_object *kv = json_object_object_get(body, "keys");
	if (strlen(keys) != (size_t)json_object_get_string_len(kv))
		return fl_http_fail(req, -EINVAL, "keys must not contain NUL characters");

	const char *args[16 + KEY_NAMES_MAX];
	size_t n = 0;
	/* the pane first: an unknown one fails before anything is typed */
	args[n++] = "display-message";
	args[n++] = "-p";
	args[n++] = "-t";
	args[n++] = target;
	args[n++] = "#{pane_id}";
	if (literal && keys[0]) {
		args[n++] = FL_TMUX_SEP;
		args[n++] = "send-keys";
		args[n++] = "-t";
		args[n++] = target;
		args[n++] = "-l";
		args[n++] = "--";
		args[n++] = keys;
	} else if (!literal) {
		/* key names, e.g. "C-c" or "Up Up Enter": printable ASCII words */
		size_t k = 0;
		for (const char *p = keys; *p;) {
			while (*p == ' ')
				p++;
			if (!*p)
				break;
			size_t l = 0;
			while (p[l] && p[l] != ' ') {
				if (p[l] < 0x21 || p[l] > 0x7e)
					return fl_http_fail(
						req, -EINVAL,
						"keys: with literal false, keys are tmux key "
						"names (printable ASCII) separated by spaces");
				l++;
			}
			if (l > KEY_NAME_LEN || k >= KEY_NAMES_MAX)
				return fl_http_fail(req, -EINVAL,
						    "keys: at most %d key names of %d characters",
						    KEY_NAMES_MAX, KEY_NAME_LEN);
			memcpy(names[k], p, l);
			names[k][l] = 0;
			k++;
			p += l;
		}
		if (k) {
			args[n++] = FL_TMUX_SEP;
			args[n++] = "send-keys";
			args[n++] = "-t";
			args[n++] = target;
			args[n++] = "--";
			for (size_t i = 0; i < k; i++)
				args[n++] = names[i];
		}
	}
	if (enter) {
		args[n++] = FL_TMUX_SEP;
		args[n++] = "send-keys";
		args[n++] = "-t";
		args[n++] = target;
		args[n++] = "Enter";
	}
	args[n] = NULL;

	if ((r = body_sandbox(req, body, id)) < 0 ||
	    (r = fl_api_policy_interactive(req, id, "tmux send-keys")) < 0)
		return r;
	FlTmuxResult res;
	if ((r = run_on_pane(req, id, session, args, 4096, &res)) < 0)
		return r;
	char pane[24];
	r = take_pane_id(req, &res, pane, NULL);
	fl_tmux_result_clear(&res);
	if (r < 0)
		return r;
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	json_object_object_add(o, "ok", json_object_new_boolean(true));
	json_object_object_add(o, "pane_id", json_object_new_string(pane));
	return fl_http_send_json(req, 200, o);
}
FL_ROUTE(send_keys, "POST", "/api/v1/tmux/panes/send-keys", FL_ROLE_AGENT);

static int read_pane(FlHttpReq *req)
{
	static const char *const allowed[] = {"sandbox_id", "pane_id", "lines", NULL};
	_cleanup_(json_object_putp) struct json_object *body = NULL;
	char id[64], target[FL_TMUX_PANE_MAX + 8], session[FL_TMUX_NAME_MAX + 1], start[24];
	uint64_t lines = 0;
	int r;

	if ((r = fl_http_read_json(req, &body)) < 0 ||
	    (r = fl_json_reject_unknown(body, allowed, &req->err)) < 0 ||
	    (r = fl_json_get_uint(body, "lines", false, 0, READ_LINES_MAX, &lines, &req->err)) <
		    0 ||
	    (r = pane_target(req, body, target, session)) < 0 ||
	    (r = body_sandbox(req, body, id)) < 0)
		return r;
	const char *args[16];
	size_t n = 0;
	args[n++] = "display-message";
	args[n++] = "-p";
	args[n++] = "-t";
	args[n++] = target;
	args[n++] = "#{pane_id}";
	args[n++] = FL_TMUX_SEP;
	args[n++] = "capture-pane";
	args[n++] = "-p";
	args[n++] = "-J";
	args[n++] = "-t";
	args[n++] = target;
	if (lines) {
		/* -S -N: N lines of history above the visible screen */
		snprintf(start, sizeof(start), "-%llu", (unsigned long long)lines);
		args[n++] = "-S";
		args[n++] = start;
	}
	args[n] = NULL;

	FlTmuxResult res;
	if ((r = run_on_pane(req, id, session, args, 0, &res)) < 0)
		return r;
	char pane[24];
	size_t skip = 0;
	if ((r = take_pane_id(req, &res, pane, &skip)) < 0) {
		fl_tmux_result_clear(&res);
		return r;
	}
	/* The screen's empty rows below the last written one are noise: drop
	 * trailing blank lines, keep one final newline. */
	const char *content = res.out + skip;
	size_t len = res.out_len - skip;
	while (len > 0 && content[len - 1] == '\n')
		len--;
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	json_object_object_add(o, "pane_id", json_object_new_string(pane));
	if (!len) {
		json_object_object_add(o, "content", json_object_new_string(""));
	} else {
		_cleanup_free_ char *c = malloc(len + 1);
		if (!c) {
			fl_tmux_result_clear(&res);
			return fl_http_fail(req, -ENOMEM, "out of memory");
		}
		memcpy(c, content, len);
		c[len] = '\n';
		json_object_object_add(o, "content", fl_tmux_text_json(c, len + 1));
	}
	json_object_object_add(o, "truncated", json_object_new_boolean(res.out_truncated));
	fl_tmux_result_clear(&res);
	return fl_http_send_json(req, 200, o);
}
FL_ROUTE(read_pane, "POST", "/api/v1/tmux/panes/read", FL_ROLE_AGENT);

static int get_sessions(FlHttpReq *req)
{
	char id[64];
	int r = fl_api_sandbox_lookup(req, id, NULL);
	if (r < 0)
		return r;
	FlEngine *e = fl_api_engine(req);
	FlError err = {0};
	_cleanup_(json_object_putp) struct json_object *arr = NULL;
	if ((r = fl_tmux_list(e, id, NULL, &arr, &err)) < 0)
		return fl_api_fail(req, r, &err);
	bool have_default = false;
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		struct json_object *v;
		if (json_object_object_get_ex(json_object_array_get_idx(arr, i), "name", &v) &&
		    !strcmp(json_object_get_string(v), FL_TMUX_DEFAULT_SESSION))
			have_default = true;
	}
	if (!have_default) {
		/* every sandbox has its session: made on first use, a listing included */
		json_object_put(TAKE_PTR(arr));
		if ((r = fl_tmux_ensure_session(e, id, FL_TMUX_DEFAULT_SESSION, NULL, NULL, &err)) <
			    0 ||
		    (r = fl_tmux_list(e, id, NULL, &arr, &err)) < 0)
			return fl_api_fail(req, r, &err);
	}
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	json_object_object_add(o, "sessions", json_object_get(arr));
	return fl_http_send_json(req, 200, o);
}
FL_ROUTE(get_sessions, "GET", "/v1/sandboxes/{id}/tmux/sessions", FL_ROLE_AGENT);

static int create_session(FlHttpReq *req)
{
	static const char *const allowed[] = {"name", "command", NULL};
	_cleanup_(json_object_putp) struct json_object *body = NULL;
	const char *name = NULL, *command = NULL;
	const char *argv[COMMAND_ARGV_MAX + 1];
	bool use_argv = false;
	char id[64];
	int r;

	if ((r = fl_api_read_json_opt(req, &body)) < 0 ||
	    (r = fl_json_reject_unknown(body, allowed, &req->err)) < 0 ||
	    (r = fl_json_get_string(body, "name", false, 64, &name, &req->err)) < 0)
		return r;
	if (name && !fl_tmux_session_name_ok(name))
		return fl_http_fail(req, -EINVAL, "invalid name: [A-Za-z0-9_-]{1,%d}",
				    FL_TMUX_NAME_MAX);
	struct json_object *c = json_object_object_get(body, "command");
	if (c && json_object_is_type(c, json_type_string)) {
		command = json_object_get_string(c);
		if (!command[0] || strlen(command) != (size_t)json_object_get_string_len(c) ||
		    strlen(command) > COMMAND_MAX)
			return fl_http_fail(req, -EINVAL,
					    "command: a non-empty string of at most %d bytes",
					    COMMAND_MAX);
	} else if (c && json_object_is_type(c, json_type_array)) {
		size_t n = json_object_array_length(c);
		if (n == 0 || n > COMMAND_ARGV_MAX)
			return fl_http_fail(req, -EINVAL, "command: an array of 1 to %d strings",
					    COMMAND_ARGV_MAX);
		for (size_t i = 0; i < n; i++) {
			struct json_object *a = json_object_array_get_idx(c, i);
			if (!json_object_is_type(a, json_type_string) ||
			    strlen(json_object_get_string(a)) !=
				    (size_t)json_object_get_string_len(a) ||
			    strlen(json_object_get_string(a)) > COMMAND_MAX ||
			    (i == 0 && !json_object_get_string(a)[0]))
				return fl_http_fail(req, -EINVAL, "command: an array of strings");
			argv[i] = json_object_get_string(a);
		}
		argv[n] = NULL;
		use_argv = true;
	} else if (c) {
		return fl_http_fail(
			req, -EINVAL,
			"command: a string (run by the default shell) or an argv array");
	}
	if ((r = fl_api_sandbox_lookup(req, id, NULL)) < 0 ||
	    ((command || use_argv) && (r = fl_api_policy_interactive(req, id, "tmux session command")) < 0))
		return r;
	FlError err = {0};
	_cleanup_(json_object_putp) struct json_object *sess = NULL;
	r = fl_tmux_create(fl_api_engine(req), id, name, command, use_argv ? argv : NULL, &sess,
			   &err);
	if (r < 0)
		return fl_api_fail(req, r, &err);
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	json_object_object_add(o, "session", json_object_get(sess));
	return fl_http_send_json(req, 201, o);
}
FL_ROUTE(create_session, "POST", "/v1/sandboxes/{id}/tmux/sessions", FL_ROLE_AGENT);
