/* SPDX-License-Identifier: MIT */
/*
 * ansible: turns a trusted diff (docs/diff.md) into an Ansible playbook and
 * writes playbooks as YAML. Pure logic: no I/O, no threads, no globals;
 * every function may be called from any thread. docs/ansible.md describes
 * the mapping, the task order and the quoting rules.
 *
 * Playbook JSON (what the generator returns, what the store keeps and
 * what fl_ansible_yaml() renders):
 *
 *   {"name": "...", "hosts": "all", "become": true,
 *    "tasks": [Task...],
 *    "files": [{"src": "files/<sha256>", "path", "sha256", "size",
 *               "content_b64"?}],        blobs a copy task needs next to the
 *                                        playbook (content_b64 absent = still
 *                                        to be fetched from the snapshot)
 *    "skipped": [{"path"|"item", "reason"}],  changes not expressed
 *    "flagged": N}                       tasks that need a reviewer's eye
 *
 *   Task = {"name", "module" (FQCN), "params": {...}, "flagged": bool,
 *           "note"?, "register"?, "changed_when"?, "failed_when"?,
 *           "environment"?: {VAR: "string"}}
 *
 * Every string is emitted double-quoted (or as a literal block for tidy
 * text) and, when it contains '{', tagged !unsafe so Ansible never
 * templates what came out of a sandbox. Strings that are not valid UTF-8
 * cannot be carried by YAML: the generator skips such entries (listed in
 * "skipped") and the renderer refuses them (-EILSEQ).
 *
 * Ownership: json arguments are borrowed; *ret values are new references
 * or malloc'd strings the caller frees.
 */
#ifndef FL_ANSIBLE_H
#define FL_ANSIBLE_H

#include <stdbool.h>
#include <stddef.h>
#include <json-c/json.h>

#include "error.h"

#define FL_ANSIBLE_NAME_MAX 64           /* playbook names: [A-Za-z0-9._-]{1,64} */
#define FL_ANSIBLE_MAX_TASKS 10000
#define FL_ANSIBLE_MAX_YAML (64u << 20)   /* rendered playbook cap */
#define FL_ANSIBLE_LINE_MAX 80            /* yamllint's default line-length */

typedef struct FlAnsibleGenOptions {
	const char *name;  /* play name; NULL = "Reproduce sandbox changes" */
	const char *hosts; /* NULL = "all" */
} FlAnsibleGenOptions;

/*
 * diff (the diff_json object) -> playbook JSON (above). Entries the
 * generator cannot express safely are listed in "skipped", not fatal.
 * -EINVAL when diff is not an object or a section has the wrong type.
 */
int fl_ansible_generate(struct json_object *diff, const FlAnsibleGenOptions *opts,
			struct json_object **ret, FlError *err);

/*
 * Renders a playbook JSON as YAML (one play). Task objects may carry other
 * keys (id, position, created_at ...): they are ignored. -EILSEQ for a
 * string that is not valid UTF-8, -EINVAL for a malformed task, -E2BIG
 * past FL_ANSIBLE_MAX_YAML. *ret is NUL-terminated; ret_len may be NULL.
 */
int fl_ansible_yaml(struct json_object *playbook, char **ret, size_t *ret_len, FlError *err);

/*
 * Checks a task an API caller wrote ({name*, module*, params*, flagged?,
 * note?, register?, changed_when?, failed_when?, environment?}) and returns
 * it normalised (module as FQCN). Only modules that act on the target are
 * allowed (no controller-side file access: copy's src must be
 * files/<sha256>), conditions are plain comparisons (no calls, filters or
 * templates). -EINVAL with a message otherwise.
 */
int fl_ansible_task_check(struct json_object *task, struct json_object **ret, FlError *err);

/* [A-Za-z0-9._-]{1,64}, not "." or "..". */
bool fl_ansible_name_valid(const char *name);

#endif
