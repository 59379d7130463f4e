// SPDX-License-Identifier: MIT
/*
 * api-diff: trusted diffs of a sandbox (docs/diff.md).
 *
 *   POST /v1/sandboxes/{id}/diff             {from_snapshot*, to_snapshot*, ignore?}
 *                                            -> 200 {"diff": Diff} (docs/openapi.json)
 *   GET  /v1/sandboxes/{id}/diffs/{diff_id}  {"diff": Diff}
 *
 * to_snapshot "live" first takes a disk snapshot "live-<unix time>" of the
 * running sandbox. commands_run comes from the command records (PostgreSQL
 * or the files next to the sandbox), never from the sandbox itself.
 *
 * DESIGN: the handler thread blocks for the whole diff (an inspector clone
 * boots and walks two filesystems; seconds for tiny, a minute or more for
 * big Debian trees under TCG); the engine calls that need a big stack run
 * on diff.c's helper thread. Records are files under the sandbox's state
 * directory, removed with it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "db.h"
#include "diff.h"
#include "engine-service.h"
#include "log.h"

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)

#define MAX_COMMAND_PAGES 50

static void audit(FlHttpReq *req, const char *id, struct json_object *rec)
{
	FlError err = {0};
	if (!req->app->db)
		return;
	_cleanup_(json_object_putp) struct json_object *d = json_object_new_object();
	static const char *const keys[] = {"id", "from_snapshot", "to_snapshot"};
	for (size_t i = 0; i < FL_ARRAY_SIZE(keys); i++)
		json_object_object_add(d, keys[i] == keys[0] ? "diff_id" : keys[i],
				       json_object_get(json_object_object_get(rec, keys[i])));
	FlAuditEvent ev = {.actor = req->actor[0] ? req->actor : NULL,
			   .role = fl_role_name(req->role), .action = "diff.create",
			   .sandbox_id = id, .status = 200, .details = d};
	if (fl_db_audit(req->app->db, &ev, NULL, &err) < 0)
		fl_log_warn("diff.create %s: audit: %s", id, err.msg);
}

/* Every command record of the sandbox (bounded), for commands_run. */
static int all_commands(FlHttpReq *req, const char *id, struct json_object **ret)
{
	_cleanup_(json_object_putp) struct json_object *all = json_object_new_array();
	for (unsigned page = 0; all && page < MAX_COMMAND_PAGES; page++) {
		_cleanup_(json_object_putp) struct json_object *o = NULL;
		int r = fl_api_commands_list(req, id, 1000, (uint64_t)page * 1000, &o);
		if (r < 0)
			return r;
		struct json_object *cmds = json_object_object_get(o, "commands");
		size_t n = cmds ? json_object_array_length(cmds) : 0;
		for (size_t i = 0; i < n; i++)
			json_object_array_add(all, json_object_get(json_object_array_get_idx(cmds, i)));
		if (n < 1000)
			break;
	}
	if (!all)
		return fl_http_fail(req, -ENOMEM, "out of memory");
	*ret = TAKE_PTR(all);
	return 0;
}

static int post_diff(FlHttpReq *req)
{
	static const char *const allowed[] = {"from_snapshot", "to_snapshot", "ignore", NULL};
	char id[64], live[80];
	const char *from = NULL, *to = NULL;
	_cleanup_(json_object_putp) struct json_object *body = NULL;
	FlError err = {0};
	int r = fl_api_sandbox_lookup(req, id, NULL);
	if (r < 0 || (r = fl_http_read_json(req, &body)) < 0)
		return r;
	if ((r = fl_json_reject_unknown(body, allowed, &req->err)) < 0 ||
	    (r = fl_json_get_string(body, "from_snapshot", true, 64, &from, &req->err)) < 0 ||
	    (r = fl_json_get_string(body, "to_snapshot", true, 64, &to, &req->err)) < 0)
		return r;
	const char *ignore[FL_DIFF_MAX_IGNORE];
	size_t n_ignore = 0;
	struct json_object *ig;
	if (json_object_object_get_ex(body, "ignore", &ig)) {
		if (!json_object_is_type(ig, json_type_array) ||
		    json_object_array_length(ig) > FL_DIFF_MAX_IGNORE)
			return fl_http_fail(req, -EINVAL, "ignore: an array of at most %d patterns",
					    FL_DIFF_MAX_IGNORE);
		for (size_t i = 0; i < json_object_array_length(ig); i++) {
			struct json_object *p = json_object_array_get_idx(ig, i);
			if (!json_object_is_type(p, json_type_string))
				return fl_http_fail(req, -EINVAL, "ignore: patterns are strings");
			ignore[n_ignore++] = json_object_get_string(p);
		}
	}
	if (!fl_api_name_ok(from, 64) || (strcmp(to, "live") && !fl_api_name_ok(to, 64)))
		return fl_http_fail(req, -EINVAL, "invalid snapshot name");
	FlEngine *e = fl_api_engine(req);
	if (!strcmp(to, "live")) {
		/* a name no caller could have taken this second; retry on a clash */
		for (int k = 0; k < 10; k++) {
			if (k)
				snprintf(live, sizeof(live), "live-%lld-%d", (long long)time(NULL), k);
			else
				snprintf(live, sizeof(live), "live-%lld", (long long)time(NULL));
			r = fl_api_snapshot(e, id, live, false, NULL, &err);
			if (r != -EEXIST)
				break;
		}
		if (r < 0)
			return fl_api_fail(req, r, &err);
		to = live;
	}
	FlDiffSpec spec = {.sandbox_id = id, .from = from, .to = to, .ignore = ignore,
			   .n_ignore = n_ignore};
	struct json_object *dj = NULL;
	FlDiffInfo info = {0};
	r = fl_diff_compute(e, &spec, &dj, &info, &err);
	if (r == -EPROTO || r == -ENOEXEC) /* our inspector failed us: a server error */
		return fl_http_fail(req, -EIO, "%s", err.msg);
	if (r < 0)
		return fl_api_fail(req, r, &err);
	_cleanup_(json_object_putp) struct json_object *cmds = NULL;
	if ((r = all_commands(req, id, &cmds)) < 0) {
		json_object_put(dj);
		return r;
	}
	json_object_object_add(dj, "commands_run",
			       fl_diff_commands_between(cmds, info.from_created_at, info.to_created_at));
	_cleanup_(json_object_putp) struct json_object *rec = fl_diff_record(id, from, to, dj);
	if (!rec)
		return fl_http_fail(req, -ENOMEM, "out of memory");
	if ((r = fl_diff_store(req->app->cfg->state_dir, rec, &err)) < 0)
		return fl_api_fail(req, r, &err);
	fl_log_info("diff %s of %s: %s..%s in %llu ms (inspector %llu ms)",
		    json_object_get_string(json_object_object_get(rec, "id")), id, from, to,
		    (unsigned long long)info.total_ms, (unsigned long long)info.inspector_ms);
	audit(req, id, rec);
	_cleanup_(json_object_putp) struct json_object *ev = json_object_new_object();
	json_object_object_add(ev, "diff_id", json_object_get(json_object_object_get(rec, "id")));
	json_object_object_add(ev, "from_snapshot", json_object_new_string(from));
	json_object_object_add(ev, "to_snapshot", json_object_new_string(to));
	fl_api_publish(id, "diff.created", ev);
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	json_object_object_add(o, "diff", json_object_get(rec));
	return fl_http_send_json(req, 200, o);
}
FL_ROUTE(post_diff, "POST", "/v1/sandboxes/{id}/diff", FL_ROLE_AGENT);

static int get_diff(FlHttpReq *req)
{
	char id[64];
	FlError err = {0};
	int r = fl_api_sandbox_lookup(req, id, NULL);
	if (r < 0)
		return r;
	_cleanup_(json_object_putp) struct json_object *rec = NULL;
	if ((r = fl_diff_load(req->app->cfg->state_dir, id, fl_http_param(req, "diff_id"), &rec,
			      &err)) < 0)
		return fl_api_fail(req, r, &err);
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	json_object_object_add(o, "diff", json_object_get(rec));
	return fl_http_send_json(req, 200, o);
}
FL_ROUTE(get_diff, "GET", "/v1/sandboxes/{id}/diffs/{diff_id}", FL_ROLE_AGENT);
