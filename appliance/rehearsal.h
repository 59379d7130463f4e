/* SPDX-License-Identifier: MIT */
/*
 * rehearsal: proves a playbook by running it (docs/ansible.md,
 * "Rehearsal"). A fresh clone of the sandbox's template is snapshotted
 * ("base"), given a one-time SSH key through the engine (file_write, not
 * the guest's SSH), its host key is read through the engine and pinned;
 * ansible-playbook runs over SSH with StrictHostKeyChecking=yes, twice
 * (the second run must change nothing); the clone is snapshotted again
 * ("applied") and diffed by an inspector (diff.h). The residual is what
 * differs between that diff and the sandbox's: empty means verified.
 *
 * Blocking, seconds to minutes under TCG; call from a worker thread with a
 * big stack (the engine's QMP calls need one). Thread-safe.
 */
#ifndef FL_REHEARSAL_H
#define FL_REHEARSAL_H

#include <stdbool.h>
#include <json-c/json.h>

#include "engine.h"
#include "error.h"

/* Stage names: "clone", "key", "apply", "reapply", "snapshot", "diff", "residual". */
typedef void (*fl_rehearsal_progress_fn)(const char *stage, void *userdata);

typedef struct FlRehearsalSpec {
	const char *sandbox_id;        /* canonical id: its base image is cloned */
	struct json_object *diff_json; /* the sandbox's diff (borrowed) */
	/* What fl_ansible_yaml() renders (borrowed), and the blobs: [{src,
	 * sha256, content_b64}] ("files" of the generator or the store). */
	struct json_object *playbook;
	struct json_object *files;
	const char *work_dir;          /* created; holds key, known_hosts, playbook, logs */
	const char *ansible_playbook;  /* NULL: "ansible-playbook" from PATH */
	unsigned timeout_ms;           /* per ansible-playbook run; 0 = 30 minutes */
	bool keep_clone;               /* tests: do not destroy the clone */
	int cancel_fd;                 /* > 0: readable means stop now (-ECANCELED); 0: none */
	fl_rehearsal_progress_fn progress;
	void *userdata;
} FlRehearsalSpec;

/*
 * Result (new reference):
 *   {"verified": bool (residual empty, both runs ok, second changed nothing),
 *    "idempotent": bool, "clone_id",
 *    "runs": [{"exit_code", "ok", "changed", "failures", "unreachable",
 *              "changed_tasks": [names]}, ...],
 *    "residual": [...fl_rehearsal_residual...], "target_diff": diff_json,
 *    "stages_ms": {...}}
 * A failing playbook is a result (verified false), not an error; errors are
 * for what prevented the rehearsal (clone, SSH, diff, no ansible-playbook).
 */
int fl_rehearse(FlEngine *e, const FlRehearsalSpec *spec, struct json_object **ret, FlError *err);

/*
 * Pure: what the rehearsal target's diff (got) does not reproduce of the
 * sandbox's (want). Files compare by final state (present: type, mode,
 * owner, group, sha256, target; or absent); packages, users (without
 * password presence), groups and services by their entries. Array of
 * {"kind": "file"|"package"|"service"|"user"|"group", "name", "sandbox",
 * "rehearsal" (the two states, null where absent), "generator"? (the
 * reason, when the playbook listed the entry as not expressible)}: skipped
 * changes are not reproduced, so they are residual too. New reference.
 */
struct json_object *fl_rehearsal_residual(struct json_object *want, struct json_object *got,
					  struct json_object *skipped);

/* Extra ignore patterns for the target's diff: what the rehearsal itself adds. */
extern const char *const fl_rehearsal_ignore[];

#endif
