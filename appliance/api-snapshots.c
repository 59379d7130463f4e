// SPDX-License-Identifier: MIT
/*
 * api-snapshots: the snapshot tree of a sandbox.
 *
 *   POST   /v1/sandboxes/{id}/snapshots                {name*, memory?} -> 201 {"snapshot"}
 *   POST   /v1/sandboxes/{id}/snapshot                 fluid.sh: {name*, external?} -> 201 {"snapshot"}
 *   GET    /v1/sandboxes/{id}/snapshots                {"snapshots", "head", "total"}
 *   POST   /v1/sandboxes/{id}/snapshots/{name}/restore {"restored", "sandbox"}
 *   DELETE /v1/sandboxes/{id}/snapshots/{name}         {"deleted"}
 *
 * Branching a new sandbox from a snapshot is POST /v1/sandboxes with
 * from_sandbox + from_snapshot (api-sandboxes.c).
 *
 * DESIGN: thin: names are validated here (400 before the engine is asked),
 * the engine serialises snapshot operations per sandbox and keeps the tree;
 * the database gets an audit row per change when it is running.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cleanup.h"
#include "db.h"
#include "engine-service.h"
#include "log.h"

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)

static bool snap_name_ok(const char *s)
{
	return fl_api_name_ok(s, 64) && !strstr(s, "..");
}

static int db_gate(FlHttpReq *req)
{
	FlError err = {0};
	if (!req->app->db)
		return 0;
	int r = fl_db_ping(req->app->db, &err);
	return r < 0 ? fl_http_fail(req, -ENOTCONN, "database unavailable: %s", err.msg) : 0;
}

static void audit(FlHttpReq *req, const char *action, const char *id, const char *name)
{
	FlError err = {0};
	if (!req->app->db)
		return;
	_cleanup_(json_object_putp) struct json_object *d = json_object_new_object();
	json_object_object_add(d, "snapshot", json_object_new_string(name));
	FlAuditEvent ev = {.role = fl_role_name(req->role), .action = action, .sandbox_id = id,
			   .details = d};
	if (fl_db_audit(req->app->db, &ev, NULL, &err) < 0)
		fl_log_warn("%s %s: audit: %s", action, id, err.msg);
}

/* The API Snapshot named `name` from the sandbox's current record. */
static struct json_object *find_snapshot(FlHttpReq *req, const char *id, const char *name)
{
	_cleanup_(json_object_putp) struct json_object *rec = NULL;
	struct json_object *snaps;
	if (fl_engine_get(fl_api_engine(req), id, &rec, NULL) < 0 ||
	    !json_object_object_get_ex(rec, "snapshots", &snaps))
		return NULL;
	for (size_t i = 0; i < json_object_array_length(snaps); i++) {
		struct json_object *s = json_object_array_get_idx(snaps, i);
		const char *n = json_object_get_string(json_object_object_get(s, "name"));
		if (n && !strcmp(n, name))
			return fl_api_snapshot_json(id, s);
	}
	return NULL;
}

static int create_snapshot(FlHttpReq *req, bool fluidsh)
{
	static const char *const allowed_own[] = {"name", "memory", NULL};
	static const char *const allowed_sh[] = {"name", "external", NULL};
	char id[64];
	const char *name = NULL;
	bool memory = false, external = true;
	FlError err = {0};
	_cleanup_(json_object_putp) struct json_object *body = NULL;
	int r = fl_api_sandbox_lookup(req, id, NULL);
	if (r < 0 || (r = fl_http_read_json(req, &body)) < 0)
		return r;
	if ((r = fl_json_reject_unknown(body, fluidsh ? allowed_sh : allowed_own, &req->err)) < 0 ||
	    (r = fl_json_get_string(body, "name", true, 64, &name, &req->err)) < 0 ||
	    (r = fl_json_get_bool(body, "memory", false, &memory, &req->err)) < 0 ||
	    (r = fl_json_get_bool(body, "external", false, &external, &req->err)) < 0)
		return r;
	if (!snap_name_ok(name))
		return fl_http_fail(req, -EINVAL,
				    "invalid snapshot name: use 1-64 letters, digits, '.', '-' or '_'");
	if ((r = db_gate(req)) < 0)
		return r;
	_cleanup_(json_object_putp) struct json_object *res = NULL;
	r = fl_api_snapshot(fl_api_engine(req), id, name, memory, &res, &err);
	if (r == -EEXIST)
		return fl_http_fail(req, r, "sandbox %s already has a snapshot '%s'", id, name);
	if (r < 0)
		return fl_api_fail(req, r, &err);
	audit(req, "snapshot.create", id, name);
	_cleanup_(json_object_putp) struct json_object *snap = find_snapshot(req, id, name);
	if (!snap)
		return fl_http_fail(req, -EIO, "snapshot '%s' vanished", name);
	struct json_object *v;
	if (res && json_object_object_get_ex(res, "consistent", &v))
		json_object_object_add(snap, "consistent", json_object_get(v));
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	json_object_object_add(o, "snapshot", json_object_get(snap));
	return fl_http_send_json(req, 201, o);
}

static int post_snapshots(FlHttpReq *req) { return create_snapshot(req, false); }
FL_ROUTE(post_snapshots, "POST", "/v1/sandboxes/{id}/snapshots", FL_ROLE_AGENT);

static int post_snapshot(FlHttpReq *req) { return create_snapshot(req, true); }
FL_ROUTE(post_snapshot, "POST", "/v1/sandboxes/{id}/snapshot", FL_ROLE_AGENT);

static int get_snapshots(FlHttpReq *req)
{
	char id[64];
	_cleanup_(json_object_putp) struct json_object *rec = NULL;
	int r = fl_api_sandbox_lookup(req, id, &rec);
	if (r < 0)
		return r;
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	struct json_object *arr = json_object_new_array(), *snaps;
	if (json_object_object_get_ex(rec, "snapshots", &snaps))
		for (size_t i = 0; i < json_object_array_length(snaps); i++)
			json_object_array_add(arr, fl_api_snapshot_json(id, json_object_array_get_idx(snaps, i)));
	json_object_object_add(o, "snapshots", arr);
	json_object_object_add(o, "head", json_object_get(json_object_object_get(rec, "head")));
	json_object_object_add(o, "total", json_object_new_int64((int64_t)json_object_array_length(arr)));
	return fl_http_send_json(req, 200, o);
}
FL_ROUTE(get_snapshots, "GET", "/v1/sandboxes/{id}/snapshots", FL_ROLE_AGENT);

static int post_restore(FlHttpReq *req)
{
	static const char *const allowed[] = {NULL};
	char id[64];
	const char *name = fl_http_param(req, "name");
	FlError err = {0};
	_cleanup_(json_object_putp) struct json_object *body = NULL;
	int r = fl_api_sandbox_lookup(req, id, NULL);
	if (r < 0)
		return r;
	if (!snap_name_ok(name))
		return fl_http_fail(req, -EINVAL, "invalid snapshot name");
	if ((r = fl_api_read_json_opt(req, &body)) < 0 ||
	    (r = fl_json_reject_unknown(body, allowed, &req->err)) < 0)
		return r;
	if ((r = db_gate(req)) < 0)
		return r;
	r = fl_api_restore(fl_api_engine(req), id, name, &err);
	if (r < 0)
		return fl_api_fail(req, r, &err);
	audit(req, "snapshot.restore", id, name);
	_cleanup_(json_object_putp) struct json_object *rec = NULL;
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	json_object_object_add(o, "restored", json_object_new_string(name));
	if (fl_engine_get(fl_api_engine(req), id, &rec, NULL) == 0)
		json_object_object_add(o, "sandbox", fl_api_sandbox_json(rec));
	return fl_http_send_json(req, 200, o);
}
FL_ROUTE(post_restore, "POST", "/v1/sandboxes/{id}/snapshots/{name}/restore", FL_ROLE_AGENT);

static int delete_snapshot(FlHttpReq *req)
{
	char id[64];
	const char *name = fl_http_param(req, "name");
	FlError err = {0};
	int r = fl_api_sandbox_lookup(req, id, NULL);
	if (r < 0)
		return r;
	if (!snap_name_ok(name))
		return fl_http_fail(req, -EINVAL, "invalid snapshot name");
	if ((r = db_gate(req)) < 0)
		return r;
	r = fl_api_snapshot_delete(fl_api_engine(req), id, name, &err);
	if (r < 0)
		return fl_api_fail(req, r, &err);
	audit(req, "snapshot.delete", id, name);
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	json_object_object_add(o, "deleted", json_object_new_string(name));
	return fl_http_send_json(req, 200, o);
}
FL_ROUTE(delete_snapshot, "DELETE", "/v1/sandboxes/{id}/snapshots/{name}", FL_ROLE_AGENT);
