// SPDX-License-Identifier: MIT
/*
 * api-playbooks: Ansible playbooks (API.md, fluid.sh shapes; docs/ansible.md).
 *
 *   GET    /v1/ansible/playbooks                       ?limit&offset -> {playbooks, total}
 *   POST   /v1/ansible/playbooks                       {name*, hosts?, become?, tasks?}
 *                                                      -> 201 {playbook, tasks}
 *   GET    /v1/ansible/playbooks/{name}                -> {playbook, tasks}
 *   DELETE /v1/ansible/playbooks/{name}                -> 204
 *   GET    /v1/ansible/playbooks/{name}/export         -> {yaml, files}
 *   POST   /v1/ansible/playbooks/{name}/tasks          Task -> 201 {task}
 *   PUT    /v1/ansible/playbooks/{name}/tasks/{task_id} Task -> {task}
 *   DELETE /v1/ansible/playbooks/{name}/tasks/{task_id} -> 204
 *   PATCH  /v1/ansible/playbooks/{name}/tasks/reorder  {task_ids*} -> {tasks}
 *   POST   /v1/sandboxes/{id}/generate/ansible         {name?, hosts?} -> {playbook, tasks, diff_id}
 *
 * DESIGN: validation here (names, unknown fields, task checks through
 * fl_ansible_task_check), storage in ansible-store.c (PostgreSQL, one
 * transaction per call with its audit row). Generation reads the newest
 * stored diff of the sandbox (diff.h) and never the sandbox itself.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ansible-store.h"
#include "ansible.h"
#include "auth.h"
#include "cleanup.h"
#include "diff.h"
#include "engine-service.h"

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)

static int need_db(FlHttpReq *req)
{
	if (!req->app->db)
		return fl_http_fail(req, -ENOTCONN, "playbooks need the database (none is configured)");
	return 0;
}

static int fail(FlHttpReq *req, int r, const FlError *err)
{
	return fl_http_fail(req, r, "%s", err->msg[0] ? err->msg : strerror(-r));
}

static int path_name(FlHttpReq *req, const char **ret)
{
	const char *name = fl_http_param(req, "name");
	if (!fl_ansible_name_valid(name))
		return fl_http_fail(req, -EINVAL, "playbook names are [A-Za-z0-9._-]{1,64}");
	*ret = name;
	return 0;
}

static struct json_object *details(const char *name, const char *task_id)
{
	struct json_object *d = json_object_new_object();
	json_object_object_add(d, "playbook", json_object_new_string(name));
	if (task_id)
		json_object_object_add(d, "task_id", json_object_new_string(task_id));
	return d;
}

static int list_playbooks(FlHttpReq *req)
{
	uint64_t limit, offset, total = 0;
	struct json_object *arr = NULL;
	FlError err = {0};
	int r;
	if ((r = need_db(req)) < 0 || (r = fl_api_paging(req, &limit, &offset)) < 0)
		return r;
	if ((r = fl_playbook_list(req->app->db, (unsigned)limit, (unsigned)offset, &arr, &total,
				  &err)) < 0)
		return fail(req, r, &err);
	_cleanup_(json_object_putp) struct json_object *out = json_object_new_object();
	json_object_object_add(out, "playbooks", arr);
	json_object_object_add(out, "total", json_object_new_int64((int64_t)total));
	return fl_http_send_json(req, 200, out);
}
FL_ROUTE(list_playbooks, "GET", "/v1/ansible/playbooks", FL_ROLE_AGENT);

/* Checks an array of API tasks; *ret the normalised array. */
static int check_tasks(FlHttpReq *req, struct json_object *tasks, struct json_object **ret)
{
	if (!json_object_is_type(tasks, json_type_array))
		return fl_http_fail(req, -EINVAL, "tasks must be an array");
	size_t n = json_object_array_length(tasks);
	if (n > FL_ANSIBLE_MAX_TASKS)
		return fl_http_fail(req, -E2BIG, "at most %d tasks", FL_ANSIBLE_MAX_TASKS);
	_cleanup_(json_object_putp) struct json_object *out = json_object_new_array();
	for (size_t i = 0; i < n; i++) {
		struct json_object *t = NULL;
		FlError err = {0};
		int r = fl_ansible_task_check(json_object_array_get_idx(tasks, i), &t, &err);
		if (r < 0)
			return fl_http_fail(req, r, "tasks[%zu]: %s", i, err.msg);
		json_object_array_add(out, t);
	}
	*ret = TAKE_PTR(out);
	return 0;
}

static int create_playbook(FlHttpReq *req)
{
	static const char *const allowed[] = {"name", "hosts", "become", "tasks", NULL};
	_cleanup_(json_object_putp) struct json_object *body = NULL, *tasks = NULL, *out = NULL,
						       *d = NULL;
	const char *name = NULL, *hosts = NULL;
	bool become = true;
	struct json_object *tv;
	FlError err = {0};
	int r;

	if ((r = need_db(req)) < 0 || (r = fl_http_read_json(req, &body)) < 0)
		return r;
	if ((r = fl_json_reject_unknown(body, allowed, &req->err)) < 0 ||
	    (r = fl_json_get_string(body, "name", true, FL_ANSIBLE_NAME_MAX, &name, &req->err)) < 0 ||
	    (r = fl_json_get_string(body, "hosts", false, 255, &hosts, &req->err)) < 0 ||
	    (r = fl_json_get_bool(body, "become", false, &become, &req->err)) < 0)
		return r;
	if (!fl_ansible_name_valid(name))
		return fl_http_fail(req, -EINVAL, "playbook names are [A-Za-z0-9._-]{1,64}");
	if (hosts && (!*hosts || strpbrk(hosts, "{}\n\r\t\"\\")))
		return fl_http_fail(req, -EINVAL, "hosts must be an inventory pattern");
	if (json_object_object_get_ex(body, "tasks", &tv) && (r = check_tasks(req, tv, &tasks)) < 0)
		return r;
	d = details(name, NULL);
	FlAuditEvent ev = fl_audit_event(req, "playbook.create", NULL, d);
	FlPlaybookPut p = {.name = name, .hosts = hosts, .become = become, .tasks = tasks};
	if ((r = fl_playbook_put(req->app->db, &p, &ev, &out, &err)) < 0)
		return fail(req, r, &err);
	return fl_http_send_json(req, 201, out);
}
FL_ROUTE(create_playbook, "POST", "/v1/ansible/playbooks", FL_ROLE_AGENT);

static int get_playbook(FlHttpReq *req)
{
	_cleanup_(json_object_putp) struct json_object *out = NULL;
	const char *name = NULL;
	FlError err = {0};
	int r;
	if ((r = need_db(req)) < 0 || (r = path_name(req, &name)) < 0)
		return r;
	if ((r = fl_playbook_get(req->app->db, name, false, &out, &err)) < 0)
		return fail(req, r, &err);
	return fl_http_send_json(req, 200, out);
}
FL_ROUTE(get_playbook, "GET", "/v1/ansible/playbooks/{name}", FL_ROLE_AGENT);

static int delete_playbook(FlHttpReq *req)
{
	_cleanup_(json_object_putp) struct json_object *d = NULL;
	const char *name = NULL;
	FlError err = {0};
	int r;
	if ((r = need_db(req)) < 0 || (r = path_name(req, &name)) < 0)
		return r;
	d = details(name, NULL);
	FlAuditEvent ev = fl_audit_event(req, "playbook.delete", NULL, d);
	if ((r = fl_playbook_delete(req->app->db, name, &ev, &err)) < 0)
		return fail(req, r, &err);
	return fl_http_send_json(req, 204, NULL);
}
FL_ROUTE(delete_playbook, "DELETE", "/v1/ansible/playbooks/{name}", FL_ROLE_AGENT);

static int export_playbook(FlHttpReq *req)
{
	_cleanup_(json_object_putp) struct json_object *got = NULL, *in = NULL, *out = NULL;
	_cleanup_free_ char *yaml = NULL;
	struct json_object *pb, *files;
	const char *name = NULL;
	size_t len;
	FlError err = {0};
	int r;
	if ((r = need_db(req)) < 0 || (r = path_name(req, &name)) < 0)
		return r;
	if ((r = fl_playbook_get(req->app->db, name, true, &got, &err)) < 0)
		return fail(req, r, &err);
	in = fl_playbook_render_input(got);
	if ((r = fl_ansible_yaml(in, &yaml, &len, &err)) < 0)
		return fail(req, r, &err);
	out = json_object_new_object();
	json_object_object_add(out, "yaml", json_object_new_string_len(yaml, (int)len));
	/* blobs that copy tasks expect under files/ next to the playbook */
	if (json_object_object_get_ex(got, "playbook", &pb) &&
	    json_object_object_get_ex(pb, "files", &files))
		json_object_object_add(out, "files", json_object_get(files));
	return fl_http_send_json(req, 200, out);
}
FL_ROUTE(export_playbook, "GET", "/v1/ansible/playbooks/{name}/export", FL_ROLE_AGENT);

static int read_task(FlHttpReq *req, struct json_object **ret)
{
	_cleanup_(json_object_putp) struct json_object *body = NULL;
	FlError err = {0};
	int r;
	if ((r = fl_http_read_json(req, &body)) < 0)
		return r;
	if ((r = fl_ansible_task_check(body, ret, &err)) < 0)
		return fl_http_fail(req, r, "%s", err.msg);
	return 0;
}

static int add_task(FlHttpReq *req)
{
	_cleanup_(json_object_putp) struct json_object *task = NULL, *t = NULL, *d = NULL, *out = NULL;
	const char *name = NULL;
	FlError err = {0};
	int r;
	if ((r = need_db(req)) < 0 || (r = path_name(req, &name)) < 0 || (r = read_task(req, &task)) < 0)
		return r;
	d = details(name, NULL);
	FlAuditEvent ev = fl_audit_event(req, "playbook.task.add", NULL, d);
	if ((r = fl_playbook_task_add(req->app->db, name, task, &ev, &t, &err)) < 0)
		return fail(req, r, &err);
	out = json_object_new_object();
	json_object_object_add(out, "task", TAKE_PTR(t));
	return fl_http_send_json(req, 201, out);
}
FL_ROUTE(add_task, "POST", "/v1/ansible/playbooks/{name}/tasks", FL_ROLE_AGENT);

static int update_task(FlHttpReq *req)
{
	_cleanup_(json_object_putp) struct json_object *task = NULL, *t = NULL, *d = NULL, *out = NULL;
	const char *name = NULL, *tid = fl_http_param(req, "task_id");
	FlError err = {0};
	int r;
	if ((r = need_db(req)) < 0 || (r = path_name(req, &name)) < 0 || (r = read_task(req, &task)) < 0)
		return r;
	d = details(name, tid);
	FlAuditEvent ev = fl_audit_event(req, "playbook.task.update", NULL, d);
	if ((r = fl_playbook_task_update(req->app->db, name, tid, task, &ev, &t, &err)) < 0)
		return fail(req, r, &err);
	out = json_object_new_object();
	json_object_object_add(out, "task", TAKE_PTR(t));
	return fl_http_send_json(req, 200, out);
}
FL_ROUTE(update_task, "PUT", "/v1/ansible/playbooks/{name}/tasks/{task_id}", FL_ROLE_AGENT);

static int delete_task(FlHttpReq *req)
{
	_cleanup_(json_object_putp) struct json_object *d = NULL;
	const char *name = NULL, *tid = fl_http_param(req, "task_id");
	FlError err = {0};
	int r;
	if ((r = need_db(req)) < 0 || (r = path_name(req, &name)) < 0)
		return r;
	d = details(name, tid);
	FlAuditEvent ev = fl_audit_event(req, "playbook.task.delete", NULL, d);
	if ((r = fl_playbook_task_delete(req->app->db, name, tid, &ev, &err)) < 0)
		return fail(req, r, &err);
	return fl_http_send_json(req, 204, NULL);
}
FL_ROUTE(delete_task, "DELETE", "/v1/ansible/playbooks/{name}/tasks/{task_id}", FL_ROLE_AGENT);

static int reorder_tasks(FlHttpReq *req)
{
	static const char *const allowed[] = {"task_ids", NULL};
	_cleanup_(json_object_putp) struct json_object *body = NULL, *tasks = NULL, *d = NULL,
						       *out = NULL;
	struct json_object *ids;
	const char *name = NULL;
	FlError err = {0};
	int r;
	if ((r = need_db(req)) < 0 || (r = path_name(req, &name)) < 0 ||
	    (r = fl_http_read_json(req, &body)) < 0)
		return r;
	if ((r = fl_json_reject_unknown(body, allowed, &req->err)) < 0)
		return r;
	if (!json_object_object_get_ex(body, "task_ids", &ids))
		return fl_http_fail(req, -EINVAL, "task_ids is required");
	d = details(name, NULL);
	FlAuditEvent ev = fl_audit_event(req, "playbook.task.reorder", NULL, d);
	if ((r = fl_playbook_task_reorder(req->app->db, name, ids, &ev, &tasks, &err)) < 0)
		return fail(req, r, &err);
	out = json_object_new_object();
	json_object_object_add(out, "tasks", TAKE_PTR(tasks));
	return fl_http_send_json(req, 200, out);
}
FL_ROUTE(reorder_tasks, "PATCH", "/v1/ansible/playbooks/{name}/tasks/reorder", FL_ROLE_AGENT);

static int generate_ansible(FlHttpReq *req)
{
	static const char *const allowed[] = {"name", "hosts", NULL};
	_cleanup_(json_object_putp) struct json_object *body = NULL, *rec = NULL, *diff = NULL,
						       *pb = NULL, *out = NULL, *d = NULL;
	const char *name = NULL, *hosts = NULL;
	char id[64], defname[80];
	FlError err = {0};
	int r;

	if ((r = need_db(req)) < 0 || (r = fl_api_read_json_opt(req, &body)) < 0)
		return r;
	if ((r = fl_json_reject_unknown(body, allowed, &req->err)) < 0 ||
	    (r = fl_json_get_string(body, "name", false, FL_ANSIBLE_NAME_MAX, &name, &req->err)) < 0 ||
	    (r = fl_json_get_string(body, "hosts", false, 255, &hosts, &req->err)) < 0)
		return r;
	if (name && !fl_ansible_name_valid(name))
		return fl_http_fail(req, -EINVAL, "playbook names are [A-Za-z0-9._-]{1,64}");
	if (hosts && (!*hosts || strpbrk(hosts, "{}\n\r\t\"\\")))
		return fl_http_fail(req, -EINVAL, "hosts must be an inventory pattern");
	if ((r = fl_api_sandbox_lookup(req, id, &rec)) < 0)
		return r;
	r = fl_diff_latest(req->app->cfg->state_dir, id, &diff, &err);
	if (r == -ENOENT)
		return fl_http_fail(req, -ENOENT,
				    "sandbox %s has no diff yet (POST /v1/sandboxes/%s/diff first)", id, id);
	if (r < 0)
		return fail(req, r, &err);
	struct json_object *dj, *did;
	if (!json_object_object_get_ex(diff, "diff_json", &dj))
		return fl_http_fail(req, -EIO, "stored diff of %s has no diff_json", id);
	const char *diff_id =
		json_object_object_get_ex(diff, "id", &did) ? json_object_get_string(did) : NULL;
	if (!name) {
		snprintf(defname, sizeof(defname), "sandbox-%s", id);
		if (!fl_ansible_name_valid(defname))
			return fl_http_fail(req, -EINVAL, "give a name: sandbox-%s is not a valid name", id);
		name = defname;
	}
	FlAnsibleGenOptions go = {.name = name, .hosts = hosts};
	if ((r = fl_ansible_generate(dj, &go, &pb, &err)) < 0)
		return fail(req, r, &err);
	struct json_object *tasks = NULL, *files = NULL, *skipped = NULL, *inc = NULL;
	json_object_object_get_ex(pb, "tasks", &tasks);
	json_object_object_get_ex(pb, "files", &files);
	json_object_object_get_ex(pb, "skipped", &skipped);
	json_object_object_get_ex(pb, "incomplete", &inc);
	d = details(name, NULL);
	if (diff_id)
		json_object_object_add(d, "diff_id", json_object_new_string(diff_id));
	FlAuditEvent ev = fl_audit_event(req, "playbook.generate", id, d);
	FlPlaybookPut p = {.name = name, .hosts = hosts, .become = true, .tasks = tasks,
			   .files = files, .skipped = skipped, .incomplete = inc && json_object_get_boolean(inc),
			   .sandbox_id = id, .diff_id = diff_id, .replace_generated = true};
	if ((r = fl_playbook_put(req->app->db, &p, &ev, &out, &err)) < 0)
		return fail(req, r, &err);
	if (diff_id)
		json_object_object_add(out, "diff_id", json_object_new_string(diff_id));
	return fl_http_send_json(req, 200, out);
}
FL_ROUTE(generate_ansible, "POST", "/v1/sandboxes/{id}/generate/ansible", FL_ROLE_AGENT);
