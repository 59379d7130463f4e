/* SPDX-License-Identifier: MIT */
/*
 * db-policies: where safety policies are assigned (schema migration 4):
 * a token's policy and each sandbox's creator and policy. Same contracts
 * as db.h (blocking, thread-safe, one transaction per call, negative
 * errno, audit event written in the same transaction when given).
 * Policy names are not checked against the configuration here: the API
 * does that (a config may drop a policy later; the API then falls back to
 * the default and says so).
 */
#ifndef FL_DB_POLICIES_H
#define FL_DB_POLICIES_H

#include "db.h"

#define FL_DB_POLICY_NAME_MAX 64

/* A token's policy name ("" = none set). -ENOENT unknown token. */
int fl_db_token_policy_get(FlDb *db, const char *token_id, char ret[FL_DB_POLICY_NAME_MAX],
			   FlError *err);
/* Sets (policy NULL: clears) a token's policy. -ENOENT unknown or revoked token. */
int fl_db_token_policy_set(FlDb *db, const char *token_id, const char *policy,
			   const FlAuditEvent *audit, FlError *err);

/* Records a new sandbox's creator (token id; NULL = none). Idempotent. */
int fl_db_sandbox_policy_init(FlDb *db, const char *sandbox_id, const char *creator, FlError *err);
/*
 * A sandbox's policy ("" = inherit) and creator ("" = unknown). -ENOENT
 * when nothing was recorded for it.
 */
int fl_db_sandbox_policy_get(FlDb *db, const char *sandbox_id,
			     char ret_policy[FL_DB_POLICY_NAME_MAX], char ret_creator[FL_DB_ID_MAX],
			     FlError *err);
/* Sets (policy NULL: clears) a sandbox's own policy. */
int fl_db_sandbox_policy_set(FlDb *db, const char *sandbox_id, const char *policy,
			     const FlAuditEvent *audit, FlError *err);
/* How many of the sandboxes in ids (array of strings) creator made. */
int fl_db_sandboxes_count_by_creator(FlDb *db, const char *creator, struct json_object *ids,
				     uint64_t *ret, FlError *err);

#endif
