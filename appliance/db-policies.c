// SPDX-License-Identifier: MIT
/*
 * db-policies: policy assignments of tokens and sandboxes (db-policies.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db-internal.h"
#include "db-policies.h"

static void copy_col(PGresult *res, int col, char *dst, size_t len)
{
	snprintf(dst, len, "%s", PQgetisnull(res, 0, col) ? "" : PQgetvalue(res, 0, col));
}

int fl_db_token_policy_get(FlDb *db, const char *token_id, char ret[FL_DB_POLICY_NAME_MAX],
			   FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	_cleanup_(PQclearp) PGresult *res = NULL;
	const char *p[] = {token_id};
	int r = fl_dbtx_begin(db, &tx, false, err);
	if (r < 0 ||
	    (r = fl_dbtx_exec(&tx, &res, err, "SELECT policy FROM tokens WHERE id = $1", 1, p)) < 0)
		return r;
	if (PQntuples(res) != 1)
		return fl_error_set(err, -ENOENT, "no token '%s'", token_id);
	copy_col(res, 0, ret, FL_DB_POLICY_NAME_MAX);
	return 0;
}

int fl_db_token_policy_set(FlDb *db, const char *token_id, const char *policy,
			   const FlAuditEvent *audit, FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	_cleanup_(PQclearp) PGresult *res = NULL;
	const char *p[] = {token_id, policy};
	int64_t aid = 0;
	char hash[FL_DB_HASH_HEX];
	int r = fl_dbtx_begin(db, &tx, true, err);
	if (r < 0 || (r = fl_dbtx_exec(&tx, &res, err,
				       "UPDATE tokens SET policy = $2 WHERE id = $1"
				       " AND revoked_at IS NULL RETURNING id",
				       2, p)) < 0)
		return r;
	if (PQntuples(res) != 1)
		return fl_error_set(err, -ENOENT, "no active token '%s'", token_id);
	if (audit && (r = fl_db_audit_tx(&tx, audit, &aid, hash, err)) < 0)
		return r;
	if ((r = fl_dbtx_commit(&tx, err)) < 0)
		return r;
	if (aid)
		fl_db_anchor_advance(db, aid, hash);
	return 0;
}

int fl_db_sandbox_policy_init(FlDb *db, const char *sandbox_id, const char *creator, FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	const char *p[] = {sandbox_id, creator && *creator ? creator : NULL};
	int r = fl_dbtx_begin(db, &tx, false, err);
	if (r < 0)
		return r;
	return fl_dbtx_exec(&tx, NULL, err,
			    "INSERT INTO sandbox_policies (sandbox_id, creator) VALUES ($1, $2)"
			    " ON CONFLICT (sandbox_id) DO NOTHING",
			    2, p);
}

int fl_db_sandbox_policy_get(FlDb *db, const char *sandbox_id,
			     char ret_policy[FL_DB_POLICY_NAME_MAX], char ret_creator[FL_DB_ID_MAX],
			     FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	_cleanup_(PQclearp) PGresult *res = NULL;
	const char *p[] = {sandbox_id};
	int r = fl_dbtx_begin(db, &tx, false, err);
	if (r < 0 || (r = fl_dbtx_exec(&tx, &res, err,
				       "SELECT policy, creator FROM sandbox_policies"
				       " WHERE sandbox_id = $1",
				       1, p)) < 0)
		return r;
	if (PQntuples(res) != 1)
		return fl_error_set(err, -ENOENT, "no policy record for sandbox '%s'", sandbox_id);
	copy_col(res, 0, ret_policy, FL_DB_POLICY_NAME_MAX);
	copy_col(res, 1, ret_creator, FL_DB_ID_MAX);
	return 0;
}

int fl_db_sandbox_policy_set(FlDb *db, const char *sandbox_id, const char *policy,
			     const FlAuditEvent *audit, FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	const char *p[] = {sandbox_id, policy};
	int64_t aid = 0;
	char hash[FL_DB_HASH_HEX];
	int r = fl_dbtx_begin(db, &tx, true, err);
	if (r < 0 ||
	    (r = fl_dbtx_exec(&tx, NULL, err,
			      "INSERT INTO sandbox_policies (sandbox_id, policy) VALUES ($1, $2)"
			      " ON CONFLICT (sandbox_id) DO UPDATE SET policy = $2,"
			      " updated_at = now()",
			      2, p)) < 0)
		return r;
	if (audit && (r = fl_db_audit_tx(&tx, audit, &aid, hash, err)) < 0)
		return r;
	if ((r = fl_dbtx_commit(&tx, err)) < 0)
		return r;
	if (aid)
		fl_db_anchor_advance(db, aid, hash);
	return 0;
}

int fl_db_sandboxes_count_by_creator(FlDb *db, const char *creator, struct json_object *ids,
				     uint64_t *ret, FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	_cleanup_(PQclearp) PGresult *res = NULL;
	const char *p[] = {creator, json_object_to_json_string_ext(ids, JSON_C_TO_STRING_PLAIN)};
	int r = fl_dbtx_begin(db, &tx, false, err);
	if (r < 0 ||
	    (r = fl_dbtx_exec(&tx, &res, err,
			      "SELECT count(*) FROM sandbox_policies WHERE creator = $1"
			      " AND sandbox_id IN (SELECT jsonb_array_elements_text($2::jsonb))",
			      2, p)) < 0)
		return r;
	*ret = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	return 0;
}
