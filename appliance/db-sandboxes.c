// SPDX-License-Identifier: MIT
/*
 * db-sandboxes: a mirror of the engine's sandbox records, so the API can
 * filter and page (agent_id, job_id, base_image, state, vm_name) with a
 * total count, and so audit and commands can be joined to sandboxes that
 * no longer exist. The engine's record files remain the source of truth:
 * the API layer upserts a record after each state change and reconciles
 * the mirror at start-up (upsert all, prune the rest).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "db-internal.h"

static const char *str_field(struct json_object *o, const char *k, char *buf, size_t len)
{
	struct json_object *v;
	if (!json_object_object_get_ex(o, k, &v) || !v)
		return NULL;
	if (json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	if (json_object_is_type(v, json_type_int)) {
		snprintf(buf, len, "%lld", (long long)json_object_get_int64(v));
		return buf;
	}
	return NULL;
}

int fl_db_sandbox_upsert(FlDb *db, struct json_object *rec, const FlAuditEvent *audit,
			 FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	char b[8][32], hash[FL_DB_HASH_HEX];
	int64_t aid = 0;

	if (!rec || !json_object_is_type(rec, json_type_object))
		return fl_error_set(err, -EINVAL, "sandbox record must be an object");
	const char *id = str_field(rec, "id", b[0], sizeof(b[0]));
	if (!id || !*id || strlen(id) > 128)
		return fl_error_set(err, -EINVAL, "sandbox record without an id");
	const char *p[] = {
		id,
		str_field(rec, "sandbox_name", b[1], sizeof(b[1])),
		str_field(rec, "agent_id", b[2], sizeof(b[2])),
		str_field(rec, "job_id", b[3], sizeof(b[3])),
		str_field(rec, "base_image", b[4], sizeof(b[4])),
		str_field(rec, "state", b[5], sizeof(b[5])),
		str_field(rec, "created_at", b[6], sizeof(b[6])),
		str_field(rec, "updated_at", b[7], sizeof(b[7])),
		json_object_to_json_string_ext(rec, JSON_C_TO_STRING_PLAIN),
	};
	int r = fl_dbtx_begin(db, &tx, true, err);
	if (r < 0)
		return r;
	/* Times arrive as unix seconds (the engine) or as timestamp text. */
#define TS_PARAM(n)                                                                            \
	"CASE WHEN $" #n " ~ '^[0-9]+$' THEN to_timestamp($" #n "::bigint)"                    \
	" ELSE $" #n "::timestamptz END"
	r = fl_dbtx_exec(&tx, NULL, err,
			 "INSERT INTO sandboxes (id, sandbox_name, agent_id, job_id, base_image, state,"
			 " created_at, updated_at, record) VALUES ($1, $2, $3, $4, $5, $6, "
			 TS_PARAM(7) ", " TS_PARAM(8) ", $9::jsonb)"
			 " ON CONFLICT (id) DO UPDATE SET sandbox_name = EXCLUDED.sandbox_name,"
			 " agent_id = EXCLUDED.agent_id, job_id = EXCLUDED.job_id,"
			 " base_image = EXCLUDED.base_image, state = EXCLUDED.state,"
			 " created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at,"
			 " record = EXCLUDED.record, mirrored_at = now()",
			 9, p);
#undef TS_PARAM
	if (r < 0)
		return r;
	if (audit && (r = fl_db_audit_tx(&tx, audit, &aid, hash, err)) < 0)
		return r;
	r = fl_dbtx_commit(&tx, err);
	if (r < 0)
		return r;
	if (audit)
		fl_db_anchor_advance(db, aid, hash);
	return 0;
}

int fl_db_sandbox_get(FlDb *db, const char *id, struct json_object **ret, FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	const char *p[] = {id ? id : ""};
	int r = fl_dbtx_begin(db, &tx, false, err);
	if (r < 0)
		return r;
	r = fl_dbtx_json(&tx, ret, err, "SELECT record FROM sandboxes WHERE id = $1", 1, p);
	if (r == -ENOENT)
		return fl_error_set(err, -ENOENT, "no sandbox %s", id ? id : "(null)");
	return r;
}

int fl_db_sandboxes_prune(FlDb *db, struct json_object *keep_ids, FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	if (!keep_ids || !json_object_is_type(keep_ids, json_type_array))
		return fl_error_set(err, -EINVAL, "keep_ids must be an array");
	const char *p[] = {json_object_to_json_string_ext(keep_ids, JSON_C_TO_STRING_PLAIN)};
	int r = fl_dbtx_begin(db, &tx, true, err);
	if (r < 0)
		return r;
	r = fl_dbtx_exec(&tx, NULL, err,
			 "DELETE FROM sandboxes WHERE id NOT IN"
			 " (SELECT jsonb_array_elements_text($1::jsonb))",
			 1, p);
	if (r < 0)
		return r;
	return fl_dbtx_commit(&tx, err);
}

int fl_db_sandboxes_list(FlDb *db, const FlDbSandboxFilter *f, struct json_object **ret_array,
			 uint64_t *ret_total, FlError *err)
{
	static const FlDbSandboxFilter none = {0};
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	struct json_object *o = NULL, *arr = NULL, *tot = NULL;
	char lim[16], off[16];
	if (!f)
		f = &none;
	snprintf(lim, sizeof(lim), "%u", f->limit ? (f->limit > 1000 ? 1000 : f->limit) : 100);
	snprintf(off, sizeof(off), "%u", f->offset);
	/* NULL parameters match everything. */
	const char *p[] = {f->agent_id, f->job_id, f->base_image, f->state, f->vm_name, lim, off};
	int r = fl_dbtx_begin(db, &tx, false, err);
	if (r < 0)
		return r;
	r = fl_dbtx_json(&tx, &o, err,
			 "WITH m AS (SELECT * FROM sandboxes WHERE ($1::text IS NULL OR agent_id = $1)"
			 " AND ($2::text IS NULL OR job_id = $2) AND ($3::text IS NULL OR base_image = $3)"
			 " AND ($4::text IS NULL OR state = $4) AND ($5::text IS NULL OR sandbox_name = $5))"
			 " SELECT json_build_object('total', (SELECT count(*) FROM m),"
			 " 'items', coalesce((SELECT json_agg(record ORDER BY created_at, id) FROM"
			 " (SELECT record, created_at, id FROM m ORDER BY created_at, id"
			 "  LIMIT $6::bigint OFFSET $7::bigint) x), '[]'))",
			 7, p);
	if (r < 0)
		return r;
	json_object_object_get_ex(o, "items", &arr);
	json_object_object_get_ex(o, "total", &tot);
	*ret_array = json_object_get(arr);
	if (ret_total)
		*ret_total = (uint64_t)json_object_get_int64(tot);
	json_object_put(o);
	return 0;
}
