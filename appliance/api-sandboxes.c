// SPDX-License-Identifier: MIT
/*
 * api-sandboxes: the sandbox resource.
 *
 *   POST   /v1/sandboxes                 create (fluid.sh shape + base_image, network,
 *                                        boot, from_sandbox/from_snapshot) -> 201
 *   GET    /v1/sandboxes                 list with filters, limit/offset, total
 *   GET    /v1/sandboxes/{id}            {"sandbox", "commands"?}
 *   DELETE /v1/sandboxes/{id}            destroy
 *   POST   /v1/sandboxes/{id}/start      {wait_for_ip?} -> {"ip_address"?}
 *   POST   /v1/sandboxes/{id}/stop
 *   GET    /v1/sandboxes/{id}/ip         {"ip_address"}
 *
 * DESIGN: the engine's records are the source of truth; handlers validate
 * strictly, call the engine on the civetweb worker thread (blocking calls:
 * one slow create does not hold up other requests) and answer with the
 * fluid.sh shapes built by engine-service.c. With a database, a mutating
 * call first checks it is reachable (503 otherwise, nothing done), and
 * the sandbox's mirror row plus an audit row are written after the
 * engine acted. {id} accepts a sandbox id or its name. A create first
 * passes the caller's safety policy (api-policies.h: vcpus, memory, ttl,
 * network egress, sandboxes per token).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api-policies.h"
#include "cleanup.h"
#include "db.h"
#include "engine-service.h"
#include "log.h"

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)

/* Mutating calls need the database up when there is one (API.md: 503). */
static int db_gate(FlHttpReq *req)
{
	FlError err = {0};
	if (!req->app->db)
		return 0;
	int r = fl_db_ping(req->app->db, &err);
	return r < 0 ? fl_http_fail(req, -ENOTCONN, "database unavailable: %s", err.msg) : 0;
}

/* Writes the mirror row with an audit event for the action. */
static void db_record(FlHttpReq *req, const char *action, struct json_object *sandbox,
		      struct json_object *details)
{
	FlError err = {0};
	if (!req->app->db || !sandbox)
		return;
	const char *id = json_object_get_string(json_object_object_get(sandbox, "id"));
	FlAuditEvent ev = {.role = fl_role_name(req->role), .action = action, .sandbox_id = id,
			   .details = details};
	if (fl_db_sandbox_upsert(req->app->db, sandbox, &ev, &err) < 0)
		fl_log_warn("%s %s: database: %s", action, id ? id : "", err.msg);
}

static struct json_object *sandbox_of(FlHttpReq *req, const char *id)
{
	struct json_object *rec = NULL;
	if (fl_engine_get(fl_api_engine(req), id, &rec, NULL) < 0)
		return NULL;
	struct json_object *o = fl_api_sandbox_json(rec);
	json_object_put(rec);
	return o;
}

/* ---- create ---------------------------------------------------------------- */

static int post_sandboxes(FlHttpReq *req)
{
	static const char *const allowed[] = {
		"source_vm_name", "agent_id", "vm_name", "cpu", "memory_mb", "ttl_seconds",
		"auto_start", "wait_for_ip", "base_image", "network", "boot", "from_sandbox",
		"from_snapshot", "job_id", NULL};
	const FlConfig *cfg = req->app->cfg;
	FlEngine *e = fl_api_engine(req);
	_cleanup_(json_object_putp) struct json_object *body = NULL;
	const char *source = NULL, *image = NULL, *agent = NULL, *name = NULL, *network = NULL,
		   *boot = NULL, *from_sb = NULL, *from_snap = NULL, *job = NULL;
	uint64_t cpu = 0, mem = 0, ttl = cfg->limits.ttl_seconds;
	bool auto_start = true, wait_ip = false;
	FlError *er = &req->err;
	int r;

	if (!e)
		return fl_http_fail(req, -ENODEV, "the sandbox engine is not available");
	if ((r = fl_http_read_json(req, &body)) < 0)
		return r;
	if ((r = fl_json_reject_unknown(body, allowed, er)) < 0 ||
	    (r = fl_json_get_string(body, "source_vm_name", false, 63, &source, er)) < 0 ||
	    (r = fl_json_get_string(body, "base_image", false, 63, &image, er)) < 0 ||
	    (r = fl_json_get_string(body, "agent_id", false, 128, &agent, er)) < 0 ||
	    (r = fl_json_get_string(body, "job_id", false, 128, &job, er)) < 0 ||
	    (r = fl_json_get_string(body, "vm_name", false, 63, &name, er)) < 0 ||
	    (r = fl_json_get_string(body, "network", false, 16, &network, er)) < 0 ||
	    (r = fl_json_get_string(body, "boot", false, 8, &boot, er)) < 0 ||
	    (r = fl_json_get_string(body, "from_sandbox", false, 63, &from_sb, er)) < 0 ||
	    (r = fl_json_get_string(body, "from_snapshot", false, 64, &from_snap, er)) < 0 ||
	    (r = fl_json_get_uint(body, "cpu", false, 1, cfg->limits.max_vcpus, &cpu, er)) < 0 ||
	    (r = fl_json_get_uint(body, "memory_mb", false, 64, cfg->limits.max_memory_mb, &mem, er)) < 0 ||
	    (r = fl_json_get_uint(body, "ttl_seconds", false, 0, cfg->limits.max_ttl_seconds, &ttl, er)) < 0 ||
	    (r = fl_json_get_bool(body, "auto_start", false, &auto_start, er)) < 0 ||
	    (r = fl_json_get_bool(body, "wait_for_ip", false, &wait_ip, er)) < 0)
		return r;
	if (source && image && strcmp(source, image))
		return fl_http_fail(req, -EINVAL, "source_vm_name and base_image name different images");
	if (source && !agent)
		return fl_http_fail(req, -EINVAL, "missing field 'agent_id'");
	if (!image)
		image = source;
	if (image && !fl_api_name_ok(image, 63))
		return fl_http_fail(req, -EINVAL, "invalid image name '%s'", image);
	if (name && !fl_api_name_ok(name, 63))
		return fl_http_fail(req, -EINVAL, "invalid vm_name: use 1-63 letters, digits, '-' or '_'");
	if (network && strcmp(network, "nat") && strcmp(network, "none") && strcmp(network, "allowlist") &&
	    strcmp(network, "tap"))
		return fl_http_fail(req, -EINVAL, "network must be \"nat\", \"none\", \"allowlist\" or \"tap\"");
	if (boot && strcmp(boot, "cold") && strcmp(boot, "clone"))
		return fl_http_fail(req, -EINVAL, "boot must be \"clone\" or \"cold\"");
	if (!!from_sb != !!from_snap)
		return fl_http_fail(req, -EINVAL, "branching needs both from_sandbox and from_snapshot");
	if (from_sb && (!fl_api_name_ok(from_sb, 63) || !fl_api_name_ok(from_snap, 64) ||
			strstr(from_snap, "..")))
		return fl_http_fail(req, -EINVAL, "invalid from_sandbox or from_snapshot");
	if (from_sb && image)
		return fl_http_fail(req, -EINVAL, "a branch has the image of its source: omit base_image");
	if (from_sb && boot)
		return fl_http_fail(req, -EINVAL, "a branch resumes or boots its snapshot: omit boot");
	if (!from_sb && !image)
		image = cfg->images.default_image;
	if ((r = db_gate(req)) < 0)
		return r;

	FlSandboxSpec spec = {
		.base_image = from_sb ? NULL : image, .name = name, .agent_id = agent, .job_id = job,
		.vcpus = (unsigned)cpu, .memory_mb = (unsigned)mem, .ttl_seconds = ttl,
		.cold_boot = boot && !strcmp(boot, "cold"), .no_start = !auto_start,
		.network = network, .from_sandbox = from_sb, .from_snapshot = from_snap,
	};
	FlError err = {0};
	_cleanup_(json_object_putp) struct json_object *rec = NULL;
	/* the caller's safety policy: limits, egress, sandboxes per token */
	FlPolicyCreate pc;
	if ((r = fl_api_policy_create(req, &spec, json_object_object_get_ex(body, "ttl_seconds", NULL),
				      &pc)) < 0)
		return r;
	r = fl_api_create(e, &spec, &rec, &err);
	fl_api_policy_create_done(req, &pc,
				  r < 0 ? NULL : json_object_get_string(json_object_object_get(rec, "id")));
	if (r < 0) {
		if (r == -ENOENT && from_sb)
			return fl_api_fail(req, r, &err);
		if (r == -ENOENT) /* the engine's message names host paths */
			return fl_http_fail(req, -ENOENT, "unknown base image '%s' (see GET /v1/vms)", image);
		if (r == -EUSERS || r == -EMLINK || r == -ENOSPC)
			return fl_http_fail(req, -EBUSY, "%s", err.msg[0] ? err.msg : "too many sandboxes");
		return fl_api_fail(req, r, &err);
	}
	_cleanup_(json_object_putp) struct json_object *sb = fl_api_sandbox_json(rec);
	_cleanup_(json_object_putp) struct json_object *details = json_object_new_object();
	json_object_object_add(details, "base_image", json_object_get(json_object_object_get(sb, "base_image")));
	if (from_sb) {
		json_object_object_add(details, "from_sandbox", json_object_new_string(from_sb));
		json_object_object_add(details, "from_snapshot", json_object_new_string(from_snap));
	}
	db_record(req, "sandbox.create", sb, details);
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	json_object_object_add(o, "sandbox", json_object_get(sb));
	struct json_object *ip = json_object_object_get(sb, "ip_address");
	if (wait_ip && ip)
		json_object_object_add(o, "ip_address", json_object_get(ip));
	return fl_http_send_json(req, 201, o);
}
FL_ROUTE(post_sandboxes, "POST", "/v1/sandboxes", FL_ROLE_AGENT);

/* ---- list / get ------------------------------------------------------------- */

static bool state_valid(const char *s)
{
	static const char *const states[] = {"CREATED", "STARTING", "RUNNING", "STOPPED",
					     "DESTROYED", "ERROR"};
	for (size_t i = 0; i < FL_ARRAY_SIZE(states); i++)
		if (!strcmp(s, states[i]))
			return true;
	return false;
}

static bool match(struct json_object *sb, const char *key, const char *want)
{
	if (!want)
		return true;
	const char *v = json_object_get_string(json_object_object_get(sb, key));
	return v && !strcmp(v, want);
}

static int cmp_created(const void *a, const void *b)
{
	struct json_object *x = *(struct json_object *const *)a, *y = *(struct json_object *const *)b;
	const char *cx = json_object_get_string(json_object_object_get(x, "created_at"));
	const char *cy = json_object_get_string(json_object_object_get(y, "created_at"));
	int c = strcmp(cx ? cx : "", cy ? cy : "");
	return c ? c : strcmp(json_object_get_string(json_object_object_get(x, "id")),
			      json_object_get_string(json_object_object_get(y, "id")));
}

static int get_sandboxes(FlHttpReq *req)
{
	static const char *const filters[] = {"agent_id", "job_id", "base_image", "state", "vm_name"};
	char vals[5][FL_HTTP_MAX_PARAM_LEN];
	const char *want[5];
	uint64_t limit, offset;
	FlEngine *e = fl_api_engine(req);
	int r;
	if (!e)
		return fl_http_fail(req, -ENODEV, "the sandbox engine is not available");
	for (size_t i = 0; i < 5; i++) {
		want[i] = fl_http_query(req, filters[i], vals[i], sizeof(vals[i]));
		if (want[i] && !*want[i])
			want[i] = NULL;
	}
	if (want[3] && !state_valid(want[3]))
		return fl_http_fail(req, -EINVAL,
				    "state must be one of CREATED, STARTING, RUNNING, STOPPED, DESTROYED, ERROR");
	if ((r = fl_api_paging(req, &limit, &offset)) < 0)
		return r;
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	if (want[3] && !strcmp(want[3], "DESTROYED")) {
		/* destroyed sandboxes only live on in the database mirror */
		struct json_object *arr = NULL;
		uint64_t total = 0;
		if (req->app->db) {
			FlError err = {0};
			FlDbSandboxFilter f = {want[0], want[1], want[2], want[3], want[4],
					       limit ? (unsigned)limit : 1, (unsigned)offset};
			if ((r = fl_db_sandboxes_list(req->app->db, &f, &arr, &total, &err)) < 0)
				return fl_api_fail(req, r, &err);
			if (!limit) {
				json_object_put(arr);
				arr = NULL;
			}
		}
		json_object_object_add(o, "sandboxes", arr ? arr : json_object_new_array());
		json_object_object_add(o, "total", json_object_new_int64((int64_t)total));
		return fl_http_send_json(req, 200, o);
	}
	_cleanup_(json_object_putp) struct json_object *list = NULL;
	fl_engine_list(e, &list);
	size_t n = list ? json_object_array_length(list) : 0, m = 0;
	_cleanup_free_ struct json_object **all = calloc(n ? n : 1, sizeof(*all));
	if (!all)
		return fl_http_fail(req, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		struct json_object *sb = fl_api_sandbox_json(json_object_array_get_idx(list, i));
		if (sb && match(sb, "agent_id", want[0]) && match(sb, "job_id", want[1]) &&
		    match(sb, "base_image", want[2]) && match(sb, "state", want[3]) &&
		    match(sb, "sandbox_name", want[4]))
			all[m++] = sb;
		else
			json_object_put(sb);
	}
	qsort(all, m, sizeof(*all), cmp_created);
	struct json_object *arr = json_object_new_array();
	for (size_t i = 0; i < m; i++) {
		if (i >= offset && i < offset + limit)
			json_object_array_add(arr, all[i]);
		else
			json_object_put(all[i]);
	}
	json_object_object_add(o, "sandboxes", arr);
	json_object_object_add(o, "total", json_object_new_int64((int64_t)m));
	return fl_http_send_json(req, 200, o);
}
FL_ROUTE(get_sandboxes, "GET", "/v1/sandboxes", FL_ROLE_AGENT);

static int get_sandbox(FlHttpReq *req)
{
	char id[64], buf[16];
	bool include = false;
	_cleanup_(json_object_putp) struct json_object *rec = NULL;
	int r = fl_api_sandbox_lookup(req, id, &rec);
	if (r < 0)
		return r;
	if (fl_http_query(req, "include_commands", buf, sizeof(buf))) {
		if (!strcmp(buf, "true") || !strcmp(buf, "1"))
			include = true;
		else if (strcmp(buf, "false") && strcmp(buf, "0"))
			return fl_http_fail(req, -EINVAL, "include_commands must be true or false");
	}
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	struct json_object *sb = fl_api_sandbox_json(rec);
	/* the effective safety policy: {name, source} (GET .../policy has all of it) */
	json_object_object_add(sb, "policy", fl_api_policy_brief(req, id));
	json_object_object_add(o, "sandbox", sb);
	if (include) {
		_cleanup_(json_object_putp) struct json_object *cmds = NULL;
		if ((r = fl_api_commands_list(req, id, 1000, 0, &cmds)) < 0)
			return r;
		json_object_object_add(o, "commands", json_object_get(json_object_object_get(cmds, "commands")));
	}
	return fl_http_send_json(req, 200, o);
}
FL_ROUTE(get_sandbox, "GET", "/v1/sandboxes/{id}", FL_ROLE_AGENT);

/* ---- destroy / start / stop ----------------------------------------------------- */

static int delete_sandbox(FlHttpReq *req)
{
	char id[64];
	FlError err = {0};
	_cleanup_(json_object_putp) struct json_object *rec = NULL;
	int r = fl_api_sandbox_lookup(req, id, &rec);
	if (r < 0)
		return r;
	if ((r = db_gate(req)) < 0)
		return r;
	r = fl_api_destroy(fl_api_engine(req), id, &err);
	if (r < 0)
		return r == -ENOENT ? fl_http_fail(req, r, "no sandbox '%s'", id) : fl_api_fail(req, r, &err);
	_cleanup_(json_object_putp) struct json_object *sb = fl_api_sandbox_json(rec);
	json_object_object_add(sb, "state", json_object_new_string("DESTROYED"));
	json_object_object_add(sb, "ip_address", NULL);
	db_record(req, "sandbox.destroy", sb, NULL);
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	json_object_object_add(o, "id", json_object_new_string(id));
	json_object_object_add(o, "job_id", json_object_get(json_object_object_get(sb, "job_id")));
	json_object_object_add(o, "state", json_object_new_string("DESTROYED"));
	json_object_object_add(o, "base_image", json_object_get(json_object_object_get(sb, "base_image")));
	json_object_object_add(o, "sandbox_name", json_object_get(json_object_object_get(sb, "sandbox_name")));
	json_object_object_add(o, "ttl_seconds", json_object_get(json_object_object_get(sb, "ttl_seconds")));
	return fl_http_send_json(req, 200, o);
}
FL_ROUTE(delete_sandbox, "DELETE", "/v1/sandboxes/{id}", FL_ROLE_AGENT);

static int post_start(FlHttpReq *req)
{
	static const char *const allowed[] = {"wait_for_ip", NULL};
	char id[64];
	bool wait_ip = false;
	FlError err = {0};
	_cleanup_(json_object_putp) struct json_object *body = NULL;
	int r = fl_api_sandbox_lookup(req, id, NULL);
	if (r < 0 || (r = fl_api_read_json_opt(req, &body)) < 0)
		return r;
	if ((r = fl_json_reject_unknown(body, allowed, &req->err)) < 0 ||
	    (r = fl_json_get_bool(body, "wait_for_ip", false, &wait_ip, &req->err)) < 0)
		return r;
	if ((r = db_gate(req)) < 0)
		return r;
	r = fl_api_start(fl_api_engine(req), id, &err);
	if (r < 0)
		return fl_api_fail(req, r, &err);
	_cleanup_(json_object_putp) struct json_object *sb = sandbox_of(req, id);
	db_record(req, "sandbox.start", sb, NULL);
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	struct json_object *ip = sb ? json_object_object_get(sb, "ip_address") : NULL;
	if (ip)
		json_object_object_add(o, "ip_address", json_object_get(ip));
	json_object_object_add(o, "sandbox", json_object_get(sb));
	return fl_http_send_json(req, 200, o);
}
FL_ROUTE(post_start, "POST", "/v1/sandboxes/{id}/start", FL_ROLE_AGENT);

static int post_stop(FlHttpReq *req)
{
	static const char *const allowed[] = {"force", NULL};
	char id[64];
	bool force = false;
	FlError err = {0};
	_cleanup_(json_object_putp) struct json_object *body = NULL;
	int r = fl_api_sandbox_lookup(req, id, NULL);
	if (r < 0 || (r = fl_api_read_json_opt(req, &body)) < 0)
		return r;
	if ((r = fl_json_reject_unknown(body, allowed, &req->err)) < 0 ||
	    (r = fl_json_get_bool(body, "force", false, &force, &req->err)) < 0)
		return r;
	if ((r = db_gate(req)) < 0)
		return r;
	r = fl_api_stop(fl_api_engine(req), id, &err);
	if (r < 0)
		return fl_api_fail(req, r, &err);
	_cleanup_(json_object_putp) struct json_object *sb = sandbox_of(req, id);
	db_record(req, "sandbox.stop", sb, NULL);
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	json_object_object_add(o, "stopped", json_object_new_boolean(1));
	json_object_object_add(o, "sandbox", json_object_get(sb));
	return fl_http_send_json(req, 200, o);
}
FL_ROUTE(post_stop, "POST", "/v1/sandboxes/{id}/stop", FL_ROLE_AGENT);

static int get_ip(FlHttpReq *req)
{
	char id[64];
	_cleanup_(json_object_putp) struct json_object *rec = NULL;
	int r = fl_api_sandbox_lookup(req, id, &rec);
	if (r < 0)
		return r;
	const char *state = json_object_get_string(json_object_object_get(rec, "state"));
	if (!state || strcmp(state, "RUNNING"))
		return fl_http_fail(req, -EBUSY, "sandbox %s is %s, not RUNNING: it has no address",
				    id, state ? state : "unknown");
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	/* tap: the bridge's DHCP lease, reachable from the host; user-mode
	 * networking: an address private to the sandbox (docs/api-notes.md) */
	struct json_object *ip = json_object_object_get(rec, "ip_address");
	json_object_object_add(o, "ip_address", ip ? json_object_get(ip) : json_object_new_string(FL_GUEST_IP));
	json_object_object_add(o, "network", json_object_get(json_object_object_get(rec, "network")));
	json_object_object_add(o, "reachable_from_host", json_object_new_boolean(ip != NULL));
	return fl_http_send_json(req, 200, o);
}
FL_ROUTE(get_ip, "GET", "/v1/sandboxes/{id}/ip", FL_ROLE_AGENT);
