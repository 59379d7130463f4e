// SPDX-License-Identifier: MIT
/*
 * ansible-store: the playbook store on PostgreSQL (ansible-store.h).
 *
 * DESIGN: a playbook row holds the play settings and, in `meta` (json),
 * what the generator learned besides tasks: the blobs a copy task needs
 * (files/<sha256>, content inline as base64), the changes it could not
 * express, whether the diff was truncated. Each task is a row with a
 * position; positions are unique per playbook (deferred, so a reorder is
 * one UPDATE). Every change takes the playbook row FOR UPDATE first, so
 * concurrent edits of one playbook serialise, and writes its audit row in
 * the same transaction. Task ids are only ever looked up together with
 * the playbook of the path: a task of another playbook is "not found".
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ansible-store.h"
#include "ansible.h"
#include "db-internal.h"

#define PB_JSON                                                                                \
	"json_build_object('id', p.id, 'name', p.name, 'hosts', p.hosts, 'become', p.become,"   \
	" 'file_path', NULL, 'sandbox_id', p.sandbox_id, 'diff_id', p.diff_id,"                  \
	" 'created_at', " FL_DB_TS("p.created_at") ", 'updated_at', " FL_DB_TS("p.updated_at") "," \
	" 'task_count', (SELECT count(*) FROM playbook_tasks t WHERE t.playbook_id = p.id),"     \
	" 'flagged', (SELECT count(*) FROM playbook_tasks t WHERE t.playbook_id = p.id"          \
	"   AND coalesce((t.extra->>'flagged')::boolean, false)),"                               \
	" 'meta', p.meta)"

#define TASK_JSON                                                                              \
	"json_build_object('id', t.id, 'playbook_id', t.playbook_id, 'name', t.name,"           \
	" 'position', t.position, 'module', t.module, 'params', t.params, 'extra', t.extra,"     \
	" 'created_at', " FL_DB_TS("t.created_at") ")"

static const char *const task_extras[] = {"flagged", "note", "register", "changed_when",
					  "failed_when", "environment", NULL};

static bool uuid_ok(const char *s)
{
	if (!s || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		char c = s[i];
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return false;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
			return false;
		}
	}
	return true;
}

/* Task row JSON -> API Task (extras flattened). Takes over row. */
static struct json_object *task_out(struct json_object *row)
{
	struct json_object *extra;
	if (json_object_object_get_ex(row, "extra", &extra) &&
	    json_object_is_type(extra, json_type_object)) {
		json_object_object_foreach(extra, k, v)
		{
			for (size_t i = 0; task_extras[i]; i++)
				if (!strcmp(k, task_extras[i]))
					json_object_object_add(row, k, json_object_get(v));
		}
	}
	json_object_object_del(row, "extra");
	if (!json_object_object_get_ex(row, "flagged", NULL))
		json_object_object_add(row, "flagged", json_object_new_boolean(0));
	return row;
}

/* Playbook row JSON -> API Playbook. Takes over row. */
static struct json_object *pb_out(struct json_object *row, bool with_content)
{
	struct json_object *meta, *v;
	if (json_object_object_get_ex(row, "meta", &meta) &&
	    json_object_is_type(meta, json_type_object)) {
		struct json_object *files = json_object_new_array();
		if (json_object_object_get_ex(meta, "files", &v) &&
		    json_object_is_type(v, json_type_array)) {
			for (size_t i = 0; i < json_object_array_length(v); i++) {
				struct json_object *f = json_object_array_get_idx(v, i), *c;
				struct json_object *o = json_object_new_object();
				json_object_object_foreach(f, k, x)
				{
					if (strcmp(k, "content_b64") || with_content)
						json_object_object_add(o, k, json_object_get(x));
				}
				json_object_object_add(
					o, "has_content",
					json_object_new_boolean(json_object_object_get_ex(f, "content_b64", &c)));
				json_object_array_add(files, o);
			}
		}
		json_object_object_add(row, "files", files);
		json_object_object_add(row, "skipped",
				       json_object_object_get_ex(meta, "skipped", &v)
					       ? json_object_get(v) : json_object_new_array());
		json_object_object_add(row, "incomplete",
				       json_object_new_boolean(json_object_object_get_ex(meta, "incomplete", &v) &&
							       json_object_get_boolean(v)));
	}
	json_object_object_del(row, "meta");
	return row;
}

/* A checked task -> {name, module, params, extra} for the INSERT. New reference. */
static struct json_object *task_row(struct json_object *task)
{
	struct json_object *o = json_object_new_object(), *extra = json_object_new_object(), *v;
	static const char *const base[] = {"name", "module", "params", NULL};
	for (size_t i = 0; base[i]; i++)
		if (json_object_object_get_ex(task, base[i], &v))
			json_object_object_add(o, base[i], json_object_get(v));
	for (size_t i = 0; task_extras[i]; i++)
		if (json_object_object_get_ex(task, task_extras[i], &v))
			json_object_object_add(extra, task_extras[i], json_object_get(v));
	json_object_object_add(o, "extra", extra);
	return o;
}

static int finish(FlDbTx *tx, FlDb *db, const FlAuditEvent *audit, FlError *err)
{
	char hash[FL_DB_HASH_HEX];
	int64_t aid = 0;
	int r;
	if (audit && (r = fl_db_audit_tx(tx, audit, &aid, hash, err)) < 0)
		return r;
	if ((r = fl_dbtx_commit(tx, err)) < 0)
		return r;
	if (audit)
		fl_db_anchor_advance(db, aid, hash);
	return 0;
}

/* Locks the playbook row; its id into id (37 bytes). */
static int lock_playbook(FlDbTx *tx, const char *name, char id[37], FlError *err)
{
	_cleanup_(PQclearp) PGresult *res = NULL;
	if (!fl_ansible_name_valid(name))
		return fl_error_set(err, -ENOENT, "no playbook %s", name ? name : "(null)");
	const char *p[] = {name};
	int r = fl_dbtx_exec(tx, &res, err, "SELECT id FROM playbooks WHERE name = $1 FOR UPDATE", 1, p);
	if (r < 0)
		return r;
	if (PQntuples(res) != 1)
		return fl_error_set(err, -ENOENT, "no playbook %s", name);
	snprintf(id, 37, "%s", PQgetvalue(res, 0, 0));
	return 0;
}

static int touch(FlDbTx *tx, const char *id, FlError *err)
{
	const char *p[] = {id};
	return fl_dbtx_exec(tx, NULL, err, "UPDATE playbooks SET updated_at = now() WHERE id = $1", 1, p);
}

static int get_tx(FlDbTx *tx, const char *name, bool with_content, struct json_object **ret,
		  FlError *err)
{
	struct json_object *pb = NULL, *tasks = NULL;
	const char *p[] = {name};
	int r = fl_dbtx_json(tx, &pb, err, "SELECT " PB_JSON " FROM playbooks p WHERE p.name = $1", 1, p);
	if (r == -ENOENT)
		return fl_error_set(err, -ENOENT, "no playbook %s", name);
	if (r < 0)
		return r;
	r = fl_dbtx_json(tx, &tasks, err,
			 "SELECT coalesce(json_agg(" TASK_JSON " ORDER BY t.position), '[]')"
			 " FROM playbook_tasks t JOIN playbooks p ON p.id = t.playbook_id WHERE p.name = $1",
			 1, p);
	if (r < 0) {
		json_object_put(pb);
		return r;
	}
	for (size_t i = 0; i < json_object_array_length(tasks); i++)
		task_out(json_object_array_get_idx(tasks, i));
	struct json_object *out = json_object_new_object();
	json_object_object_add(out, "playbook", pb_out(pb, with_content));
	json_object_object_add(out, "tasks", tasks);
	*ret = out;
	return 0;
}

int fl_playbook_put(FlDb *db, const FlPlaybookPut *pp, const FlAuditEvent *audit,
		    struct json_object **ret, FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	_cleanup_(PQclearp) PGresult *res = NULL;
	_cleanup_(json_object_putp) struct json_object *meta = NULL, *rows = NULL;

	if (!pp || !fl_ansible_name_valid(pp->name))
		return fl_error_set(err, -EINVAL, "playbook name must be [A-Za-z0-9._-]{1,64}");
	size_t nt = pp->tasks ? json_object_array_length(pp->tasks) : 0;
	if (nt > FL_ANSIBLE_MAX_TASKS)
		return fl_error_set(err, -E2BIG, "at most %d tasks", FL_ANSIBLE_MAX_TASKS);
	meta = json_object_new_object();
	json_object_object_add(meta, "files", pp->files ? json_object_get(pp->files)
							: json_object_new_array());
	json_object_object_add(meta, "skipped", pp->skipped ? json_object_get(pp->skipped)
							    : json_object_new_array());
	if (pp->incomplete)
		json_object_object_add(meta, "incomplete", json_object_new_boolean(1));
	rows = json_object_new_array();
	for (size_t i = 0; i < nt; i++)
		json_object_array_add(rows, task_row(json_object_array_get_idx(pp->tasks, i)));

	int r = fl_dbtx_begin(db, &tx, true, err);
	if (r < 0)
		return r;
	const char *pn[] = {pp->name};
	r = fl_dbtx_exec(&tx, &res, err,
			 "SELECT sandbox_id FROM playbooks WHERE name = $1 FOR UPDATE", 1, pn);
	if (r < 0)
		return r;
	if (PQntuples(res) == 1) {
		bool same = pp->replace_generated && pp->sandbox_id && !PQgetisnull(res, 0, 0) &&
			    !strcmp(PQgetvalue(res, 0, 0), pp->sandbox_id);
		if (!same)
			return fl_error_set(err, -EEXIST, "playbook %s exists", pp->name);
		if ((r = fl_dbtx_exec(&tx, NULL, err, "DELETE FROM playbooks WHERE name = $1", 1, pn)) < 0)
			return r;
	}
	PQclear(res);
	res = NULL;
	const char *p[] = {pp->name,
			   pp->hosts ? pp->hosts : "all",
			   pp->become ? "true" : "false",
			   pp->sandbox_id,
			   pp->diff_id,
			   json_object_to_json_string_ext(meta, JSON_C_TO_STRING_PLAIN)};
	r = fl_dbtx_exec(&tx, &res, err,
			 "INSERT INTO playbooks (name, hosts, become, sandbox_id, diff_id, meta)"
			 " VALUES ($1, $2, $3::boolean, $4, $5, $6::json) RETURNING id",
			 6, p);
	if (r < 0)
		return r;
	const char *p2[] = {PQgetvalue(res, 0, 0),
			    json_object_to_json_string_ext(rows, JSON_C_TO_STRING_PLAIN)};
	if (nt && (r = fl_dbtx_exec(&tx, NULL, err,
				    "INSERT INTO playbook_tasks (playbook_id, position, name, module,"
				    " params, extra) SELECT $1::uuid, (x.ord - 1)::integer, x.e->>'name',"
				    " x.e->>'module', x.e->'params', x.e->'extra'"
				    " FROM json_array_elements($2::json) WITH ORDINALITY AS x(e, ord)",
				    2, p2)) < 0)
		return r;
	struct json_object *out = NULL;
	if (ret && (r = get_tx(&tx, pp->name, false, &out, err)) < 0)
		return r;
	if ((r = finish(&tx, db, audit, err)) < 0) {
		json_object_put(out);
		return r;
	}
	if (ret)
		*ret = out;
	return 0;
}

int fl_playbook_get(FlDb *db, const char *name, bool with_content, struct json_object **ret,
		    FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	if (!fl_ansible_name_valid(name))
		return fl_error_set(err, -ENOENT, "no playbook %s", name ? name : "(null)");
	/* repeatable read: the playbook and its tasks from one snapshot */
	int r = fl_dbtx_begin(db, &tx, true, err);
	if (r < 0)
		return r;
	if ((r = fl_dbtx_exec(&tx, NULL, err, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", 0,
			      NULL)) < 0)
		return r;
	return get_tx(&tx, name, with_content, ret, err);
}

int fl_playbook_list(FlDb *db, unsigned limit, unsigned offset, struct json_object **ret_array,
		     uint64_t *ret_total, FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	struct json_object *o = NULL, *items = NULL, *tot = NULL;
	char lim[16], off[16];
	snprintf(lim, sizeof(lim), "%u", limit ? (limit > 1000 ? 1000 : limit) : 100);
	snprintf(off, sizeof(off), "%u", offset);
	const char *p[] = {lim, off};
	int r = fl_dbtx_begin(db, &tx, false, err);
	if (r < 0)
		return r;
	r = fl_dbtx_json(&tx, &o, err,
			 "SELECT json_build_object('total', (SELECT count(*) FROM playbooks),"
			 " 'items', coalesce((SELECT json_agg(" PB_JSON " ORDER BY p.name)"
			 " FROM (SELECT * FROM playbooks ORDER BY name LIMIT $1 OFFSET $2) p), '[]'))",
			 2, p);
	if (r < 0)
		return r;
	json_object_object_get_ex(o, "items", &items);
	json_object_object_get_ex(o, "total", &tot);
	struct json_object *arr = json_object_new_array();
	for (size_t i = 0; items && i < json_object_array_length(items); i++)
		json_object_array_add(arr, pb_out(json_object_get(json_object_array_get_idx(items, i)),
						  false));
	*ret_total = (uint64_t)json_object_get_int64(tot);
	*ret_array = arr;
	json_object_put(o);
	return 0;
}

int fl_playbook_delete(FlDb *db, const char *name, const FlAuditEvent *audit, FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	char id[37];
	int r = fl_dbtx_begin(db, &tx, true, err);
	if (r < 0 || (r = lock_playbook(&tx, name, id, err)) < 0)
		return r;
	const char *p[] = {id};
	if ((r = fl_dbtx_exec(&tx, NULL, err, "DELETE FROM playbooks WHERE id = $1", 1, p)) < 0)
		return r;
	return finish(&tx, db, audit, err);
}

static int task_get_tx(FlDbTx *tx, const char *pb_id, const char *task_id, struct json_object **ret,
		       FlError *err)
{
	const char *p[] = {pb_id, task_id};
	struct json_object *t = NULL;
	int r = fl_dbtx_json(tx, &t, err,
			     "SELECT " TASK_JSON " FROM playbook_tasks t WHERE t.playbook_id = $1"
			     " AND t.id = $2::uuid",
			     2, p);
	if (r < 0)
		return r;
	*ret = task_out(t);
	return 0;
}

int fl_playbook_task_add(FlDb *db, const char *name, struct json_object *task,
			 const FlAuditEvent *audit, struct json_object **ret, FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	_cleanup_(PQclearp) PGresult *res = NULL;
	_cleanup_(json_object_putp) struct json_object *row = task_row(task);
	char id[37];
	int r = fl_dbtx_begin(db, &tx, true, err);
	if (r < 0 || (r = lock_playbook(&tx, name, id, err)) < 0)
		return r;
	const char *p[] = {id, json_object_to_json_string_ext(row, JSON_C_TO_STRING_PLAIN)};
	r = fl_dbtx_exec(&tx, &res, err,
			 "INSERT INTO playbook_tasks (playbook_id, position, name, module, params, extra)"
			 " SELECT $1::uuid, coalesce((SELECT max(position) + 1 FROM playbook_tasks"
			 "   WHERE playbook_id = $1::uuid), 0), e->>'name', e->>'module', e->'params',"
			 " e->'extra' FROM (SELECT $2::json AS e) x"
			 " WHERE (SELECT count(*) FROM playbook_tasks WHERE playbook_id = $1::uuid) < 10000"
			 " RETURNING id",
			 2, p);
	if (r < 0)
		return r;
	if (PQntuples(res) != 1)
		return fl_error_set(err, -E2BIG, "playbook %s has %d tasks already", name,
				    FL_ANSIBLE_MAX_TASKS);
	struct json_object *t = NULL;
	if ((r = touch(&tx, id, err)) < 0 || (r = task_get_tx(&tx, id, PQgetvalue(res, 0, 0), &t, err)) < 0)
		return r;
	if ((r = finish(&tx, db, audit, err)) < 0) {
		json_object_put(t);
		return r;
	}
	*ret = t;
	return 0;
}

int fl_playbook_task_update(FlDb *db, const char *name, const char *task_id,
			    struct json_object *task, const FlAuditEvent *audit,
			    struct json_object **ret, FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	_cleanup_(PQclearp) PGresult *res = NULL;
	_cleanup_(json_object_putp) struct json_object *row = task_row(task);
	char id[37];
	if (!uuid_ok(task_id))
		return fl_error_set(err, -ENOENT, "no task %s in playbook %s", task_id ? task_id : "",
				    name ? name : "");
	int r = fl_dbtx_begin(db, &tx, true, err);
	if (r < 0 || (r = lock_playbook(&tx, name, id, err)) < 0)
		return r;
	const char *p[] = {id, task_id, json_object_to_json_string_ext(row, JSON_C_TO_STRING_PLAIN)};
	r = fl_dbtx_exec(&tx, &res, err,
			 "UPDATE playbook_tasks SET name = $3::json->>'name', module = $3::json->>'module',"
			 " params = $3::json->'params', extra = $3::json->'extra'"
			 " WHERE playbook_id = $1::uuid AND id = $2::uuid RETURNING id",
			 3, p);
	if (r < 0)
		return r;
	if (PQntuples(res) != 1)
		return fl_error_set(err, -ENOENT, "no task %s in playbook %s", task_id, name);
	struct json_object *t = NULL;
	if ((r = touch(&tx, id, err)) < 0 || (r = task_get_tx(&tx, id, task_id, &t, err)) < 0)
		return r;
	if ((r = finish(&tx, db, audit, err)) < 0) {
		json_object_put(t);
		return r;
	}
	*ret = t;
	return 0;
}

int fl_playbook_task_delete(FlDb *db, const char *name, const char *task_id,
			    const FlAuditEvent *audit, FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	_cleanup_(PQclearp) PGresult *res = NULL;
	char id[37];
	if (!uuid_ok(task_id))
		return fl_error_set(err, -ENOENT, "no task %s in playbook %s", task_id ? task_id : "",
				    name ? name : "");
	int r = fl_dbtx_begin(db, &tx, true, err);
	if (r < 0 || (r = lock_playbook(&tx, name, id, err)) < 0)
		return r;
	const char *p[] = {id, task_id};
	r = fl_dbtx_exec(&tx, &res, err,
			 "DELETE FROM playbook_tasks WHERE playbook_id = $1::uuid AND id = $2::uuid"
			 " RETURNING position",
			 2, p);
	if (r < 0)
		return r;
	if (PQntuples(res) != 1)
		return fl_error_set(err, -ENOENT, "no task %s in playbook %s", task_id, name);
	/* keep positions dense: 0..n-1 */
	const char *p2[] = {id, PQgetvalue(res, 0, 0)};
	if ((r = fl_dbtx_exec(&tx, NULL, err,
			      "UPDATE playbook_tasks SET position = position - 1"
			      " WHERE playbook_id = $1::uuid AND position > $2::integer",
			      2, p2)) < 0 ||
	    (r = touch(&tx, id, err)) < 0)
		return r;
	return finish(&tx, db, audit, err);
}

int fl_playbook_task_reorder(FlDb *db, const char *name, struct json_object *ids,
			     const FlAuditEvent *audit, struct json_object **ret_tasks, FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	_cleanup_(PQclearp) PGresult *res = NULL;
	char id[37];
	if (!json_object_is_type(ids, json_type_array))
		return fl_error_set(err, -EINVAL, "task_ids must be an array of task ids");
	size_t n = json_object_array_length(ids);
	if (n > FL_ANSIBLE_MAX_TASKS)
		return fl_error_set(err, -EINVAL, "too many task ids");
	for (size_t i = 0; i < n; i++) {
		struct json_object *v = json_object_array_get_idx(ids, i);
		if (!json_object_is_type(v, json_type_string) || !uuid_ok(json_object_get_string(v)))
			return fl_error_set(err, -EINVAL, "task_ids[%zu] is not a task id", i);
		for (size_t k = 0; k < i; k++)
			if (!strcmp(json_object_get_string(v),
				    json_object_get_string(json_object_array_get_idx(ids, k))))
				return fl_error_set(err, -EINVAL, "task_ids[%zu] is repeated", i);
	}
	int r = fl_dbtx_begin(db, &tx, true, err);
	if (r < 0 || (r = lock_playbook(&tx, name, id, err)) < 0)
		return r;
	const char *p[] = {id};
	r = fl_dbtx_exec(&tx, &res, err, "SELECT id FROM playbook_tasks WHERE playbook_id = $1::uuid",
			 1, p);
	if (r < 0)
		return r;
	size_t have = (size_t)PQntuples(res);
	for (size_t i = 0; i < n; i++) {
		const char *want = json_object_get_string(json_object_array_get_idx(ids, i));
		bool found = false;
		for (size_t k = 0; k < have && !found; k++)
			found = !strcmp(PQgetvalue(res, (int)k, 0), want);
		if (!found)
			return fl_error_set(err, -EINVAL, "task %s is not a task of playbook %s", want,
					    name);
	}
	if (n != have)
		return fl_error_set(err, -EINVAL,
				    "task_ids must list every task of playbook %s once (%zu given, %zu exist)",
				    name, n, have);
	const char *p2[] = {id, json_object_to_json_string_ext(ids, JSON_C_TO_STRING_PLAIN)};
	if ((r = fl_dbtx_exec(&tx, NULL, err,
			      "UPDATE playbook_tasks t SET position = (x.ord - 1)::integer"
			      " FROM json_array_elements_text($2::json) WITH ORDINALITY AS x(tid, ord)"
			      " WHERE t.playbook_id = $1::uuid AND t.id = x.tid::uuid",
			      2, p2)) < 0 ||
	    (r = touch(&tx, id, err)) < 0)
		return r;
	struct json_object *got = NULL;
	if (ret_tasks && (r = get_tx(&tx, name, false, &got, err)) < 0)
		return r;
	if ((r = finish(&tx, db, audit, err)) < 0) {
		json_object_put(got);
		return r;
	}
	if (ret_tasks) {
		struct json_object *t;
		json_object_object_get_ex(got, "tasks", &t);
		*ret_tasks = json_object_get(t);
		json_object_put(got);
	}
	return 0;
}

struct json_object *fl_playbook_render_input(struct json_object *got)
{
	struct json_object *pb, *tasks, *v;
	struct json_object *o = json_object_new_object();
	if (!json_object_object_get_ex(got, "playbook", &pb) ||
	    !json_object_object_get_ex(got, "tasks", &tasks))
		return o;
	static const char *const keys[] = {"name", "hosts", "become", "skipped", "incomplete", NULL};
	for (size_t i = 0; keys[i]; i++)
		if (json_object_object_get_ex(pb, keys[i], &v))
			json_object_object_add(o, keys[i], json_object_get(v));
	json_object_object_add(o, "tasks", json_object_get(tasks));
	return o;
}
