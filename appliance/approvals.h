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

#endif
