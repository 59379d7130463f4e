/* SPDX-License-Identifier: MIT */
/*
 * ansible-store: playbooks and their tasks in PostgreSQL (tables
 * playbooks, playbook_tasks: migration 2 in db-schema.c). Same conventions
 * as db.h: blocking, thread-safe, one transaction per call with the
 * optional audit row inside it, -ENOENT/-EEXIST/-EINVAL/-ENOTCONN...
 *
 * Shapes (docs/ansible.md):
 *   Playbook = {id, name, hosts, become, file_path: null, sandbox_id,
 *               diff_id, created_at, updated_at, task_count, flagged,
 *               files: [{src, path, sha256, size, has_content}],
 *               skipped: [...], incomplete}
 *   Task     = {id, playbook_id, name, position, module, params,
 *               created_at, flagged, note?, register?, changed_when?,
 *               failed_when?, environment?}
 * Tasks given to these functions are already checked
 * (fl_ansible_task_check or the generator).
 */
#ifndef FL_ANSIBLE_STORE_H
#define FL_ANSIBLE_STORE_H

#include <stdbool.h>
#include <stdint.h>
#include <json-c/json.h>

#include "db.h"

typedef struct FlPlaybookPut {
	const char *name;        /* required, fl_ansible_name_valid */
	const char *hosts;       /* NULL = "all" */
	bool become;
	struct json_object *tasks;   /* array of tasks (borrowed), may be NULL */
	struct json_object *files;   /* generator "files" (with content_b64), may be NULL */
	struct json_object *skipped; /* may be NULL */
	bool incomplete;
	const char *sandbox_id, *diff_id; /* provenance, may be NULL */
	/*
	 * Replace an existing playbook of the same name generated from the
	 * same sandbox (regeneration). Otherwise an existing name is -EEXIST.
	 */
	bool replace_generated;
} FlPlaybookPut;

/* Creates (or replaces, see above); *ret = {playbook, tasks}. ret may be NULL. */
int fl_playbook_put(FlDb *db, const FlPlaybookPut *p, const FlAuditEvent *audit,
		    struct json_object **ret, FlError *err);
/* {playbook, tasks}; with_content: files[] keep content_b64 (for export and runs). */
int fl_playbook_get(FlDb *db, const char *name, bool with_content, struct json_object **ret,
		    FlError *err);
/* Playbooks (no tasks), by name; *ret_total all of them. limit 0 = 100 (max 1000). */
int fl_playbook_list(FlDb *db, unsigned limit, unsigned offset, struct json_object **ret_array,
		     uint64_t *ret_total, FlError *err);
int fl_playbook_delete(FlDb *db, const char *name, const FlAuditEvent *audit, FlError *err);

/* Appends a task; *ret the stored Task. */
int fl_playbook_task_add(FlDb *db, const char *name, struct json_object *task,
			 const FlAuditEvent *audit, struct json_object **ret, FlError *err);
/* Replaces a task's name/module/params/extras. -ENOENT unless task_id is a task of name. */
int fl_playbook_task_update(FlDb *db, const char *name, const char *task_id,
			    struct json_object *task, const FlAuditEvent *audit,
			    struct json_object **ret, FlError *err);
int fl_playbook_task_delete(FlDb *db, const char *name, const char *task_id,
			    const FlAuditEvent *audit, FlError *err);
/*
 * New order: task_ids (array of strings) must be exactly the playbook's
 * task ids, each once (-EINVAL naming the first offender otherwise).
 */
int fl_playbook_task_reorder(FlDb *db, const char *name, struct json_object *task_ids,
			     const FlAuditEvent *audit, struct json_object **ret_tasks, FlError *err);

/* {playbook, tasks} (from get) -> the JSON fl_ansible_yaml() renders. New reference. */
struct json_object *fl_playbook_render_input(struct json_object *got);

#endif
