// SPDX-License-Identifier: MIT
/*
 * db-audit: the hash-chained, append-only audit log.
 *
 * DESIGN: audit_head holds the last id and hash. An append locks that one
 * row (SELECT ... FOR UPDATE), so appends are serialised and ids are
 * gapless (a PostgreSQL sequence would leave gaps on rollback, and a gap is
 * how a deleted row shows). The row hash is computed by PostgreSQL in the
 * INSERT from the very values stored (the timestamp included), with the
 * expression below; verify recomputes it with the same expression over the
 * stored rows. The canonical text is
 *
 *   fluid-audit-v1 \n prev_hash \n id \n at (unix microseconds) \n
 *   json [actor, role, action, sandbox_id, status] \n details (jsonb text)
 *
 * jsonb's text form is canonical (sorted keys, fixed spacing), and the JSON
 * array quotes the free-text fields, so no two rows share a canonical text.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db-internal.h"


#define GENESIS "0000000000000000000000000000000000000000000000000000000000000000"

#define AUDIT_HASH_SQL                                                                          \
	"encode(sha256(convert_to(concat_ws(E'\\n', 'fluid-audit-v1', prev_hash, id::text,"     \
	" ((extract(epoch FROM at) * 1000000)::bigint)::text,"                                  \
	" json_build_array(actor, role, action, sandbox_id, status)::text,"                     \
	" coalesce(details::text, 'null')), 'UTF8')), 'hex')"

static bool valid_word(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n == 0 || n > max)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s < 0x21 || *s == 0x7f)
			return false;
	return true;
}

int fl_db_audit_tx(FlDbTx *tx, const FlAuditEvent *ev, int64_t *out_id,
		   char out_hash[FL_DB_HASH_HEX], FlError *err)
{
	_cleanup_(PQclearp) PGresult *head = NULL, *ins = NULL;
	const char *actor = ev->actor ? ev->actor : "system";
	const char *role = ev->role ? ev->role : "none";
	char idbuf[32], status[16];
	int r;

	if (!ev->action || !valid_word(ev->action, 64) || !valid_word(actor, 128) ||
	    !valid_word(role, 16) || (ev->sandbox_id && strlen(ev->sandbox_id) > 256))
		return fl_error_set(err, -EINVAL, "bad audit event (action '%s')",
				    ev->action ? ev->action : "(null)");
	r = fl_dbtx_exec(tx, &head, err, "SELECT last_id, last_hash FROM audit_head WHERE id = 1 FOR UPDATE",
			 0, NULL);
	if (r < 0)
		return r;
	if (PQntuples(head) != 1)
		return fl_error_set(err, -EIO, "audit_head row missing");
	long long id = strtoll(PQgetvalue(head, 0, 0), NULL, 10) + 1;
	snprintf(idbuf, sizeof(idbuf), "%lld", id);
	snprintf(status, sizeof(status), "%d", ev->status);
	const char *details = ev->details ? json_object_to_json_string_ext(ev->details,
									   JSON_C_TO_STRING_PLAIN)
					  : NULL;
	const char *p[] = {idbuf, actor, role, ev->action, ev->sandbox_id, status, details,
			   PQgetvalue(head, 0, 1)};
	r = fl_dbtx_exec(tx, &ins, err,
			 "INSERT INTO audit_events (id, at, actor, role, action, sandbox_id, status,"
			 " details, prev_hash, hash)"
			 " SELECT id, at, actor, role, action, sandbox_id, status, details, prev_hash, "
			 AUDIT_HASH_SQL
			 " FROM (SELECT $1::bigint AS id, clock_timestamp() AS at, $2::text AS actor,"
			 " $3::text AS role, $4::text AS action, $5::text AS sandbox_id,"
			 " $6::integer AS status, $7::jsonb AS details, $8::text AS prev_hash) v"
			 " RETURNING hash",
			 8, p);
	if (r < 0)
		return r;
	const char *hp[] = {idbuf, PQgetvalue(ins, 0, 0)};
	r = fl_dbtx_exec(tx, NULL, err,
			 "UPDATE audit_head SET last_id = $1, last_hash = $2 WHERE id = 1", 2, hp);
	if (r < 0)
		return r;
	if (out_id)
		*out_id = id;
	if (out_hash)
		snprintf(out_hash, FL_DB_HASH_HEX, "%s", PQgetvalue(ins, 0, 0));
	return 0;
}

int fl_db_audit(FlDb *db, const FlAuditEvent *ev, int64_t *ret_id, FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	char hash[FL_DB_HASH_HEX];
	int64_t id;
	int r = fl_dbtx_begin(db, &tx, true, err);
	if (r < 0)
		return r;
	if (ev->lazy &&
	    (r = fl_dbtx_exec(&tx, NULL, err, "SET LOCAL synchronous_commit = off", 0, NULL)) < 0)
		return r;
	r = fl_db_audit_tx(&tx, ev, &id, hash, err);
	if (r < 0)
		return r;
	r = fl_dbtx_commit(&tx, err);
	if (r < 0)
		return r;
	fl_db_anchor_advance(db, id, hash);
	if (ret_id)
		*ret_id = id;
	return 0;
}

#define AUDIT_ROW_JSON                                                                          \
	"json_build_object('id', id, 'at', " FL_DB_TS("at") ", 'actor', actor, 'role', role,"   \
	" 'action', action, 'sandbox_id', sandbox_id, 'status', status, 'details', details,"    \
	" 'prev_hash', prev_hash, 'hash', hash)"

int fl_db_audit_list(FlDb *db, const FlDbAuditQuery *q, struct json_object **ret_array,
		     FlError *err)
{
	static const FlDbAuditQuery none = {0};
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	char sql[1024], after[32], limit[16];
	const char *p[5];
	int n = 0;

	if (!q)
		q = &none;
	unsigned lim = q->limit ? q->limit : 100;
	if (lim > 1000)
		lim = 1000;
	snprintf(limit, sizeof(limit), "%u", lim);
	size_t len = (size_t)snprintf(sql, sizeof(sql), "SELECT id FROM audit_events WHERE true");
	if (q->sandbox_id) {
		p[n++] = q->sandbox_id;
		len += (size_t)snprintf(sql + len, sizeof(sql) - len, " AND sandbox_id = $%d", n);
	}
	if (q->action) {
		p[n++] = q->action;
		len += (size_t)snprintf(sql + len, sizeof(sql) - len, " AND action = $%d", n);
	}
	bool forward = q->after_id > 0 || q->since;
	if (q->after_id > 0) {
		snprintf(after, sizeof(after), "%" PRId64, q->after_id);
		p[n++] = after;
		len += (size_t)snprintf(sql + len, sizeof(sql) - len, " AND id > $%d", n);
	}
	if (q->since) {
		p[n++] = q->since;
		len += (size_t)snprintf(sql + len, sizeof(sql) - len, " AND at >= $%d::timestamptz", n);
	}
	p[n++] = limit;
	len += (size_t)snprintf(sql + len, sizeof(sql) - len, " ORDER BY id %s LIMIT $%d",
				forward ? "ASC" : "DESC", n);

	char outer[2048];
	snprintf(outer, sizeof(outer),
		 "SELECT coalesce(json_agg(" AUDIT_ROW_JSON " ORDER BY id), '[]')"
		 " FROM audit_events WHERE id IN (%s)",
		 sql);
	int r = fl_dbtx_begin(db, &tx, false, err);
	if (r < 0)
		return r;
	return fl_dbtx_json(&tx, ret_array, err, outer, n, p);
}

static void add_problem(struct json_object *list, int64_t id, const char *kind, const char *fmt,
			...) __attribute__((format(printf, 4, 5)));
static void add_problem(struct json_object *list, int64_t id, const char *kind, const char *fmt,
			...)
{
	char msg[300];
	va_list ap;
	if (json_object_array_length(list) >= 20)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "id", json_object_new_int64(id));
	json_object_object_add(o, "kind", json_object_new_string(kind));
	json_object_object_add(o, "message", json_object_new_string(msg));
	json_object_array_add(list, o);
}

int fl_db_audit_verify(FlDb *db, struct json_object **ret_report, FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	_cleanup_(PQclearp) PGresult *bad = NULL, *tail = NULL, *head = NULL, *anc = NULL;
	_cleanup_(json_object_putp) struct json_object *rep = json_object_new_object();
	struct json_object *problems = json_object_new_array();
	int64_t first_bad = 0;
	int r;

	if (!rep || !problems) {
		json_object_put(problems);
		return fl_error_set(err, -ENOMEM, "out of memory");
	}
	json_object_object_add(rep, "problems", problems);
	/* The anchor only moves after a commit: read before the snapshot, its
	 * row is always in it (rows committed meanwhile are not). */
	int64_t aid;
	char ahash[FL_DB_HASH_HEX];
	const char *apath;
	fl_db_anchor_get(db, &aid, ahash, &apath);
	r = fl_dbtx_begin(db, &tx, true, err);
	if (r < 0)
		return r;
	/* One snapshot for all the queries below. */
	r = fl_dbtx_exec(&tx, NULL, err, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
			 0, NULL);
	if (r < 0)
		return r;
	r = fl_dbtx_exec(
		&tx, &bad, err,
		"SELECT id, calc <> hash, id <> coalesce(lag_id, 0) + 1, coalesce(lag_id, 0),"
		" prev_hash <> coalesce(lag_hash, '" GENESIS "')"
		" FROM (SELECT id, hash, prev_hash, " AUDIT_HASH_SQL " AS calc,"
		"   lag(id) OVER w AS lag_id, lag(hash) OVER w AS lag_hash"
		"   FROM audit_events WINDOW w AS (ORDER BY id)) s"
		" WHERE calc <> hash OR id <> coalesce(lag_id, 0) + 1"
		"   OR prev_hash <> coalesce(lag_hash, '" GENESIS "')"
		" ORDER BY id LIMIT 21",
		0, NULL);
	if (r < 0)
		return r;
	for (int i = 0; i < PQntuples(bad); i++) {
		int64_t id = strtoll(PQgetvalue(bad, i, 0), NULL, 10);
		int64_t lag = strtoll(PQgetvalue(bad, i, 3), NULL, 10);
		bool modified = PQgetvalue(bad, i, 1)[0] == 't';
		bool gap = PQgetvalue(bad, i, 2)[0] == 't';
		bool relinked = PQgetvalue(bad, i, 4)[0] == 't';
		int64_t at = id;
		if (gap) {
			at = lag + 1;
			if (id - 1 > lag + 1)
				add_problem(problems, at, "deleted",
					    "rows %" PRId64 "..%" PRId64 " are missing (deleted)",
					    lag + 1, id - 1);
			else if (id > lag + 1)
				add_problem(problems, at, "deleted",
					    "row %" PRId64 " is missing (deleted)", lag + 1);
			else
				add_problem(problems, at, "deleted", "row ids out of order at %" PRId64,
					    id);
		} else if (relinked) {
			at = lag;
			add_problem(problems, lag, "relinked",
				    "row %" PRId64 " does not link to row %" PRId64
				    " (row %" PRId64 " was changed and its hash recomputed)",
				    id, lag, lag);
		}
		if (modified)
			add_problem(problems, id, "modified",
				    "row %" PRId64 " was modified (its hash does not match its content)",
				    id);
		if (!first_bad || at < first_bad)
			first_bad = at;
		if (modified && id < first_bad)
			first_bad = id;
	}

	r = fl_dbtx_exec(&tx, &tail, err,
			 "SELECT count(*), coalesce(max(id), 0),"
			 " coalesce((SELECT hash FROM audit_events ORDER BY id DESC LIMIT 1), '" GENESIS "')"
			 " FROM audit_events",
			 0, NULL);
	if (r < 0)
		return r;
	int64_t rows = strtoll(PQgetvalue(tail, 0, 0), NULL, 10);
	int64_t max_id = strtoll(PQgetvalue(tail, 0, 1), NULL, 10);
	const char *max_hash = PQgetvalue(tail, 0, 2);
	r = fl_dbtx_exec(&tx, &head, err, "SELECT last_id, last_hash FROM audit_head WHERE id = 1", 0,
			 NULL);
	if (r < 0)
		return r;
	if (PQntuples(head) != 1) {
		add_problem(problems, max_id, "head", "the chain head row is missing");
	} else {
		int64_t hid = strtoll(PQgetvalue(head, 0, 0), NULL, 10);
		if (hid != max_id || strcmp(PQgetvalue(head, 0, 1), max_hash)) {
			int64_t at = hid > max_id ? max_id + 1 : hid;
			add_problem(problems, at, "head",
				    "the chain head says row %" PRId64 " is the last, the table ends at %" PRId64
				    " (rows at the end were deleted, or the head was edited)",
				    hid, max_id);
			if (!first_bad || at < first_bad)
				first_bad = at;
		}
	}

	if (aid > 0) {
		char idbuf[32];
		snprintf(idbuf, sizeof(idbuf), "%" PRId64, aid);
		const char *p[] = {idbuf};
		r = fl_dbtx_exec(&tx, &anc, err, "SELECT hash FROM audit_events WHERE id = $1", 1, p);
		if (r < 0)
			return r;
		bool ok = PQntuples(anc) == 1 && !strcmp(PQgetvalue(anc, 0, 0), ahash);
		struct json_object *a = json_object_new_object();
		json_object_object_add(a, "id", json_object_new_int64(aid));
		json_object_object_add(a, "hash", json_object_new_string(ahash));
		json_object_object_add(a, "path", apath ? json_object_new_string(apath) : NULL);
		json_object_object_add(a, "ok", json_object_new_boolean(ok));
		json_object_object_add(rep, "anchor", a);
		if (!ok) {
			add_problem(problems, aid, "truncated",
				    PQntuples(anc) == 1
					    ? "row %" PRId64 " differs from the hash kept outside the database"
					    : "row %" PRId64 " (written by this server, anchored outside the database) is gone",
				    aid);
			if (!first_bad || aid < first_bad)
				first_bad = aid;
		}
	} else {
		json_object_object_add(rep, "anchor", NULL);
	}

	bool ok = json_object_array_length(problems) == 0;
	struct json_object *h = json_object_new_object();
	json_object_object_add(h, "id", json_object_new_int64(max_id));
	json_object_object_add(h, "hash", json_object_new_string(max_hash));
	json_object_object_add(rep, "ok", json_object_new_boolean(ok));
	json_object_object_add(rep, "rows", json_object_new_int64(rows));
	json_object_object_add(rep, "head", h);
	json_object_object_add(rep, "first_bad_id", ok ? NULL : json_object_new_int64(first_bad));
	if (ok) {
		json_object_object_add(rep, "problem", NULL);
	} else {
		struct json_object *m = NULL, *p0 = json_object_array_get_idx(problems, 0);
		json_object_object_get_ex(p0, "message", &m);
		json_object_object_add(rep, "problem", json_object_get(m));
	}
	*ret_report = TAKE_PTR(rep);
	return 0;
}
