// SPDX-License-Identifier: MIT
/*
 * db-approvals: the approvals table (migration 3, docs/approvals.md).
 * Same conventions as db.h: blocking, thread-safe, one transaction per
 * call, the optional audit row inside it.
 *
 * DESIGN: every state change is one conditional UPDATE (WHERE state =
 * from), so two reviewers deciding at once, or two applies of one
 * approval, cannot both win: the loser sees -EBUSY and the state the row is
 * in. PostgreSQL's CHECK constraints repeat the state list, and the state
 * machine itself is approvals.c's (checked before any SQL runs).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "approvals.h"
#include "db-internal.h"

#define APPROVAL_JSON                                                                              \
	"json_build_object('id', id, 'kind', kind, 'state', state, 'summary', summary,"            \
	" 'details', details, 'sandbox_id', sandbox_id, 'change_id', change_id,"                   \
	" 'playbook', playbook, 'playbook_sha256', playbook_sha256,"                               \
	" 'requested_by', requested_by, 'requested_role', requested_role,"                         \
	" 'decided_by', decided_by, 'comment', comment, 'decided_at', " FL_DB_TS(                  \
		"decided_at") ", 'created_at', " FL_DB_TS("created_at") ", "                       \
									"'updated_at', " FL_DB_TS("updated_at") ", 'apply', apply)"

static int audit_commit(FlDbTx *tx, const FlAuditEvent *audit, FlError *err)
{
	int64_t aid = 0;
	char hash[FL_DB_HASH_HEX];
	int r;
	if (audit && (r = fl_db_audit_tx(tx, audit, &aid, hash, err)) < 0)
		return r;
	if ((r = fl_dbtx_commit(tx, err)) < 0)
		return r;
	if (audit)
		fl_db_anchor_advance(tx->db, aid, hash);
	return 0;
}

int fl_db_approval_insert(FlDb *db, const FlDbApprovalNew *a, const FlAuditEvent *audit,
			  struct json_object **ret, FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	if (!a || !fl_approval_id_valid(a->id) || !fl_approval_kind_valid(a->kind) || !a->summary ||
	    !a->requested_by || !a->requested_role)
		return fl_error_set(err, -EINVAL,
				    "approval: id, kind, summary and requester are required");
	const char *details =
		a->details ? json_object_to_json_string_ext(a->details, JSON_C_TO_STRING_PLAIN)
			   : NULL;
	const char *p[] = {a->id,	    a->kind,	      a->summary,  details,
			   a->sandbox_id,   a->change_id,     a->playbook, a->playbook_sha256,
			   a->requested_by, a->requested_role};
	int r = fl_dbtx_begin(db, &tx, true, err);
	if (r < 0)
		return r;
	r = fl_dbtx_json(
		&tx, &o, err,
		"INSERT INTO approvals (id, kind, summary, details, sandbox_id, change_id,"
		" playbook, playbook_sha256, requested_by, requested_role)"
		" VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9, $10) RETURNING " APPROVAL_JSON,
		10, p);
	if (r < 0 || (r = audit_commit(&tx, audit, err)) < 0)
		return r;
	if (ret)
		*ret = TAKE_PTR(o);
	return 0;
}

int fl_db_approval_get(FlDb *db, const char *id, struct json_object **ret, FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	if (!fl_approval_id_valid(id))
		return fl_error_set(err, -ENOENT, "no approval %s", id ? id : "");
	const char *p[] = {id};
	int r = fl_dbtx_begin(db, &tx, false, err);
	if (r < 0)
		return r;
	r = fl_dbtx_json(&tx, ret, err, "SELECT " APPROVAL_JSON " FROM approvals WHERE id = $1", 1,
			 p);
	if (r == -ENOENT)
		return fl_error_set(err, -ENOENT, "no approval %s", id);
	return r;
}

int fl_db_approvals_list(FlDb *db, const FlDbApprovalFilter *f, struct json_object **ret_array,
			 uint64_t *ret_total, FlError *err)
{
	static const FlDbApprovalFilter none = {0};
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	struct json_object *arr = NULL, *tot = NULL;
	char lim[16], off[16];
	if (!f)
		f = &none;
	snprintf(lim, sizeof(lim), "%u", f->limit ? (f->limit > 1000 ? 1000 : f->limit) : 100);
	snprintf(off, sizeof(off), "%u", f->offset);
	const char *p[] = {f->state, f->kind, f->sandbox_id, lim, off};
	int r = fl_dbtx_begin(db, &tx, false, err);
	if (r < 0)
		return r;
	r = fl_dbtx_json(
		&tx, &o, err,
		"WITH m AS (SELECT * FROM approvals WHERE ($1::text IS NULL OR state = $1)"
		" AND ($2::text IS NULL OR kind = $2) AND ($3::text IS NULL OR sandbox_id = $3))"
		" SELECT json_build_object('total', (SELECT count(*) FROM m),"
		" 'items', coalesce((SELECT json_agg(j ORDER BY created_at DESC, id) FROM"
		" (SELECT " APPROVAL_JSON " AS j, created_at, id FROM m"
		"  ORDER BY created_at DESC, id LIMIT $4::bigint OFFSET $5::bigint) x), '[]'))",
		5, p);
	if (r < 0)
		return r;
	json_object_object_get_ex(o, "items", &arr);
	json_object_object_get_ex(o, "total", &tot);
	*ret_array = json_object_get(arr);
	if (ret_total)
		*ret_total = (uint64_t)json_object_get_int64(tot);
	return 0;
}

int fl_db_approval_step(FlDb *db, const char *id, const char *from, const char *to,
			const char *decided_by, const char *comment, struct json_object *apply,
			const FlAuditEvent *audit, struct json_object **ret, FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	_cleanup_(PQclearp) PGresult *res = NULL;
	if (!fl_approval_id_valid(id))
		return fl_error_set(err, -ENOENT, "no approval %s", id ? id : "");
	int r = fl_approval_transition_check(id, from, to, err);
	if (r < 0)
		return r == -EBUSY ? fl_error_set(err, -EINVAL, "%s", err ? err->msg : "bad step")
				   : r;
	const char *ap =
		apply ? json_object_to_json_string_ext(apply, JSON_C_TO_STRING_PLAIN) : NULL;
	const char *p[] = {id, from, to, decided_by, comment, ap};
	if ((r = fl_dbtx_begin(db, &tx, true, err)) < 0)
		return r;
	r = fl_dbtx_json(
		&tx, &o, err,
		"UPDATE approvals SET state = $3,"
		" decided_by = CASE WHEN $3 IN ('approved', 'rejected') THEN $4 ELSE decided_by "
		"END,"
		" comment = CASE WHEN $3 IN ('approved', 'rejected') THEN $5 ELSE comment END,"
		" decided_at = CASE WHEN $3 IN ('approved', 'rejected') THEN clock_timestamp()"
		"   ELSE decided_at END,"
		" apply = coalesce($6::jsonb, apply), updated_at = clock_timestamp()"
		" WHERE id = $1 AND state = $2 RETURNING " APPROVAL_JSON,
		6, p);
	if (r == -ENOENT) {
		/* not there, or not in state from: say which */
		const char *q[] = {id};
		if ((r = fl_dbtx_exec(&tx, &res, err, "SELECT state FROM approvals WHERE id = $1",
				      1, q)) < 0)
			return r;
		if (PQntuples(res) < 1)
			return fl_error_set(err, -ENOENT, "no approval %s", id);
		const char *now = PQgetvalue(res, 0, 0);
		r = fl_approval_transition_check(id, now, to, err);
		return r < 0 ? r : fl_error_set(err, -EBUSY, "approval %s is %s", id, now);
	}
	if (r < 0 || (r = audit_commit(&tx, audit, err)) < 0)
		return r;
	if (ret)
		*ret = TAKE_PTR(o);
	return 0;
}

int fl_db_approvals_interrupted(FlDb *db, unsigned *ret_n, FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	_cleanup_(PQclearp) PGresult *res = NULL;
	int64_t aid = 0;
	char hash[FL_DB_HASH_HEX];
	int r = fl_dbtx_begin(db, &tx, true, err);
	if (r < 0)
		return r;
	r = fl_dbtx_exec(
		&tx, &res, err,
		"UPDATE approvals SET state = 'failed', updated_at = clock_timestamp(),"
		" apply = coalesce(apply, '{}'::jsonb) || jsonb_build_object('ok', false,"
		"   'error', 'interrupted', 'interrupted_detected_at', " FL_DB_TS(
			"clock_timestamp()") ")"
					     " WHERE state = 'applying' RETURNING id, sandbox_id",
		0, NULL);
	if (r < 0)
		return r;
	int n = PQntuples(res);
	for (int i = 0; i < n; i++) {
		_cleanup_(json_object_putp) struct json_object *d = json_object_new_object();
		json_object_object_add(d, "approval_id",
				       json_object_new_string(PQgetvalue(res, i, 0)));
		json_object_object_add(d, "state", json_object_new_string("failed"));
		json_object_object_add(d, "error", json_object_new_string("interrupted"));
		FlAuditEvent ev = {.actor = "system",
				   .role = "none",
				   .action = "approval.apply.interrupted",
				   .sandbox_id =
					   PQgetisnull(res, i, 1) ? NULL : PQgetvalue(res, i, 1),
				   .details = d};
		if ((r = fl_db_audit_tx(&tx, &ev, &aid, hash, err)) < 0)
			return r;
	}
	if ((r = fl_dbtx_commit(&tx, err)) < 0)
		return r;
	if (n)
		fl_db_anchor_advance(db, aid, hash);
	if (ret_n)
		*ret_n = (unsigned)n;
	return 0;
}
