/* SPDX-License-Identifier: MIT */
/*
 * approvals: human approval requests (API.md "Approvals", docs/approvals.md).
 *
 * An approval is asked by any role (agents mostly) and decided by a
 * reviewer or admin; it survives restarts (PostgreSQL, table approvals).
 * Kinds: "change" (a change/playbook to apply to production), "command" (a
 * command a safety policy sent for approval, policy.h), "question" (a plain
 * question, /api/v1/human/ask).
 *
 * Approval JSON = {id ("apr_" + 32 hex), kind, state, summary, details,
 *   sandbox_id, change_id, playbook, playbook_sha256, requested_by,
 *   requested_role, decided_by, comment, decided_at, created_at,
 *   updated_at, apply}
 * state: pending -> approved | rejected; approved -> applying -> applied |
 * failed. Only pending approvals can be decided, only approved ones applied.
 *
 * These functions are what other parts of the daemon (the command policy)
 * use; the REST handlers in api-approvals.c use them too. Blocking; call
 * from worker threads (never the engine loop). Thread-safe.
 */
#ifndef FL_APPROVALS_H
#define FL_APPROVALS_H

#include <stdint.h>
#include <json-c/json.h>

#include "error.h"
#include "http.h"

typedef struct FlApprovalAsk {
	const char *kind;          /* "change", "command" or "question" */
	const char *summary;       /* required: what the reviewer is asked */
	const char *sandbox_id;    /* may be NULL */
	const char *change_id;     /* may be NULL ("change" kind: the change to apply) */
	struct json_object *details; /* borrowed, may be NULL: e.g. {"command", "rule"} */
	const char *requested_by;  /* token id of the asker ("" / NULL = anonymous) */
	FlRole requested_role;
} FlApprovalAsk;

/* Creates a pending approval (audited). *ret = the Approval (new reference). */
int fl_approval_create(FlApp *app, const FlApprovalAsk *ask, struct json_object **ret,
		       FlError *err);

/*
 * Waits until approval id leaves "pending", timeout_ms passes or the server
 * stops, then *ret = its current record (new reference; state may still be
 * "pending" on timeout). -ENOENT for an unknown id.
 */
int fl_approval_wait(FlApp *app, const char *id, int64_t timeout_ms, struct json_object **ret,
		     FlError *err);

/*
 * Closes a still-pending approval nobody decided in time: rejected by
 * "system" with reason as the comment (audited), so it can no longer be
 * approved after its asker gave up. -EBUSY when it was decided meanwhile.
 */
int fl_approval_expire(FlApp *app, const char *id, const char *reason, FlError *err);

/* ---- Additions (approvals.c: pure helpers) ----------------------------- */

#include <stdbool.h>
#include <stddef.h>

#include "db.h"

#define FL_APPROVAL_ID_LEN 36          /* "apr_" + 32 hex */
#define FL_APPROVAL_SUMMARY_MAX 4096   /* bytes */
#define FL_APPROVAL_COMMENT_MAX 4096
#define FL_APPROVAL_DETAILS_MAX (64u * 1024) /* serialized JSON bytes */
#define FL_APPROVAL_WAIT_MAX_S 300     /* GET ?wait= and POST wait_seconds */
#define FL_APPROVAL_ASK_MAX_S 900      /* /api/v1/human/ask timeout_seconds */
#define FL_APPROVAL_TAIL_MAX (16u * 1024) /* apply output kept in the record */

bool fl_approval_id_valid(const char *id);
bool fl_approval_kind_valid(const char *kind);
bool fl_approval_state_valid(const char *state);
/* A new random id (FL_APPROVAL_ID_LEN + NUL bytes). 0 or -errno. */
int fl_approval_new_id(char out[FL_APPROVAL_ID_LEN + 1]);

/*
 * The state machine: 0 when from -> to is a step of it, else -EBUSY with a
 * message for the API ("approval apr_... is rejected: only pending
 * approvals can be decided"). id may be NULL (message without it).
 */
int fl_approval_transition_check(const char *id, const char *from, const char *to, FlError *err);

/*
 * What an approval pins: sha256 hex of the rendered playbook YAML plus its
 * files (the store's files array, [{src, sha256, content_b64?}]; order does
 * not matter). docs/approvals.md "Playbook hash" defines the bytes.
 */
int fl_approval_playbook_hash(const char *yaml, size_t yaml_len, struct json_object *files,
			      char out[FL_DB_HASH_HEX]);

/*
 * ansible-playbook's "PLAY RECAP" lines in text -> {host: {ok, changed,
 * unreachable, failed, skipped, rescued, ignored}} (new reference; {} when
 * there is none). Hostile input safe: bounded, unknown keys ignored.
 */
struct json_object *fl_approval_recap_parse(const char *text, size_t len);

/*
 * Copies at most cap bytes of in to a new string: valid UTF-8 kept, other
 * bytes and control characters but \n and \t as '?'. For untrusted output
 * that goes into JSON and PostgreSQL.
 */
char *fl_approval_text_clean(const char *in, size_t len, size_t cap);

/* ---- Additions (db-approvals.c: the approvals table, db.h conventions) ---- */

typedef struct FlDbApprovalNew {
	const char *id, *kind, *summary;
	struct json_object *details; /* borrowed, may be NULL */
	const char *sandbox_id, *change_id, *playbook, *playbook_sha256; /* may be NULL */
	const char *requested_by, *requested_role;
} FlDbApprovalNew;

/* Inserts a pending approval; *ret = the Approval. */
int fl_db_approval_insert(FlDb *db, const FlDbApprovalNew *a, const FlAuditEvent *audit,
			  struct json_object **ret, FlError *err);
int fl_db_approval_get(FlDb *db, const char *id, struct json_object **ret, FlError *err);

typedef struct FlDbApprovalFilter {
	const char *state, *kind, *sandbox_id; /* NULL = any */
	unsigned limit;                        /* 0 = 100, at most 1000 */
	unsigned offset;
} FlDbApprovalFilter;

/* Newest first; *ret_total counts every match. f may be NULL. */
int fl_db_approvals_list(FlDb *db, const FlDbApprovalFilter *f, struct json_object **ret_array,
			 uint64_t *ret_total, FlError *err);

/*
 * One step of the state machine, atomically: only when the row is in state
 * from. decided_by/comment (may be NULL) are set with approved/rejected
 * (decided_at = now); apply (may be NULL = unchanged) replaces the apply
 * result. -ENOENT unknown id, -EBUSY not in state from (err names the
 * state it is in), -EINVAL not a step of the machine.
 */
int fl_db_approval_step(FlDb *db, const char *id, const char *from, const char *to,
			const char *decided_by, const char *comment, struct json_object *apply,
			const FlAuditEvent *audit, struct json_object **ret, FlError *err);

/*
 * Start-up: every "applying" approval (its apply was cut short by a crash
 * or kill) becomes "failed" with apply.error "interrupted", one audit row
 * each (action approval.apply.interrupted). *ret_n = how many.
 */
int fl_db_approvals_interrupted(FlDb *db, unsigned *ret_n, FlError *err);

#endif
