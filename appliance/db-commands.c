// SPDX-License-Identifier: MIT
/*
 * db-commands: one row per command run in a sandbox. begin inserts it
 * when the command starts, end completes it with the exit status and the
 * output. Stored output is capped per stream (FlDbOptions.output_cap); the
 * row keeps the total size and the sha256 of each whole stream, so what
 * was cut is known and the full output (kept by the engine while the
 * sandbox exists) can be checked against it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db-internal.h"

#define COMMAND_JSON                                                                            \
	"json_build_object('id', id, 'sandbox_id', sandbox_id, 'command', command,"             \
	" 'env', coalesce(env, '{}'::jsonb), 'user', run_as, 'stdout', coalesce(stdout, ''),"   \
	" 'stderr', coalesce(stderr, ''), 'exit_code', exit_code, 'signal', signal,"            \
	" 'error', error, 'started_at', " FL_DB_TS("started_at") ","                           \
	" 'ended_at', " FL_DB_TS("ended_at") ", 'stdout_bytes', coalesce(stdout_bytes, 0),"     \
	" 'stderr_bytes', coalesce(stderr_bytes, 0), 'stdout_sha256', stdout_sha256,"          \
	" 'stderr_sha256', stderr_sha256,"                                                     \
	" 'stdout_truncated', coalesce(stdout_truncated, false),"                              \
	" 'stderr_truncated', coalesce(stderr_truncated, false))"

static bool valid_uuid(const char *s)
{
	if (!s || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		char c = s[i];
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return false;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
			     (c >= 'A' && c <= 'F'))) {
			return false;
		}
	}
	return true;
}

static bool valid_sha(const char *s)
{
	if (!s)
		return true;
	if (strlen(s) != 64)
		return false;
	for (; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return false;
	return true;
}

int fl_db_command_begin(FlDb *db, const FlDbCommandStart *c, const FlAuditEvent *audit,
			char ret_id[FL_DB_ID_MAX], FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	_cleanup_(PQclearp) PGresult *res = NULL;
	_cleanup_free_ char *cmd = NULL;
	char hash[FL_DB_HASH_HEX];
	int64_t aid = 0;

	if (!c || !c->sandbox_id || !*c->sandbox_id || !c->command)
		return fl_error_set(err, -EINVAL, "command needs a sandbox id and a command");
	if (c->env && !json_object_is_type(c->env, json_type_object))
		return fl_error_set(err, -EINVAL, "command env must be an object");
	/* The command line is caller input: store it valid, bounded by 1 MiB. */
	cmd = fl_db_utf8_clean(c->command, strlen(c->command), 1u << 20, NULL);
	if (!cmd)
		return fl_error_set(err, -ENOMEM, "out of memory");
	const char *env = c->env ? json_object_to_json_string_ext(c->env, JSON_C_TO_STRING_PLAIN)
				 : NULL;
	const char *p[] = {c->sandbox_id, cmd, env, c->user};
	int r = fl_dbtx_begin(db, &tx, true, err);
	if (r < 0)
		return r;
	r = fl_dbtx_exec(&tx, &res, err,
			 "INSERT INTO commands (sandbox_id, command, env, run_as)"
			 " VALUES ($1, $2, $3::jsonb, $4) RETURNING id",
			 4, p);
	if (r < 0)
		return r;
	if (audit && (r = fl_db_audit_tx(&tx, audit, &aid, hash, err)) < 0)
		return r;
	r = fl_dbtx_commit(&tx, err);
	if (r < 0)
		return r;
	if (audit)
		fl_db_anchor_advance(db, aid, hash);
	snprintf(ret_id, FL_DB_ID_MAX, "%s", PQgetvalue(res, 0, 0));
	return 0;
}

int fl_db_command_end(FlDb *db, const char *id, const FlDbCommandEnd *e,
		      const FlAuditEvent *audit, FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	_cleanup_(PQclearp) PGresult *res = NULL;
	_cleanup_free_ char *out = NULL, *errs = NULL;
	char exit_code[16], sig[16], ob[24], eb[24], hash[FL_DB_HASH_HEX];
	size_t out_used = 0, err_used = 0, cap = fl_db_output_cap(db);
	int64_t aid = 0;

	if (!valid_uuid(id))
		return fl_error_set(err, -ENOENT, "no command %s", id ? id : "(null)");
	if (!valid_sha(e->out.sha256_hex) || !valid_sha(e->err.sha256_hex))
		return fl_error_set(err, -EINVAL, "sha256 must be 64 lowercase hex digits");
	out = fl_db_utf8_clean(e->out.data ? e->out.data : "", e->out.data ? e->out.len : 0, cap,
			       &out_used);
	errs = fl_db_utf8_clean(e->err.data ? e->err.data : "", e->err.data ? e->err.len : 0, cap,
				&err_used);
	if (!out || !errs)
		return fl_error_set(err, -ENOMEM, "out of memory");
	uint64_t otot = e->out.total_bytes > out_used ? e->out.total_bytes : out_used;
	uint64_t etot = e->err.total_bytes > err_used ? e->err.total_bytes : err_used;
	snprintf(exit_code, sizeof(exit_code), "%d", e->exit_code);
	snprintf(sig, sizeof(sig), "%d", e->signal);
	snprintf(ob, sizeof(ob), "%" PRIu64, otot);
	snprintf(eb, sizeof(eb), "%" PRIu64, etot);
	const char *p[] = {id,
			   e->has_exit_code ? exit_code : NULL,
			   e->signal ? sig : NULL,
			   e->error,
			   out,
			   errs,
			   ob,
			   eb,
			   e->out.sha256_hex,
			   e->err.sha256_hex,
			   out_used < otot ? "true" : "false",
			   err_used < etot ? "true" : "false"};
	int r = fl_dbtx_begin(db, &tx, true, err);
	if (r < 0)
		return r;
	r = fl_dbtx_exec(&tx, &res, err, "SELECT ended_at IS NOT NULL FROM commands WHERE id = $1 FOR UPDATE",
			 1, p);
	if (r < 0)
		return r;
	if (PQntuples(res) != 1)
		return fl_error_set(err, -ENOENT, "no command %s", id);
	if (PQgetvalue(res, 0, 0)[0] == 't')
		return fl_error_set(err, -EALREADY, "command %s has already ended", id);
	r = fl_dbtx_exec(&tx, NULL, err,
			 "UPDATE commands SET ended_at = clock_timestamp(), exit_code = $2,"
			 " signal = $3, error = $4, stdout = $5, stderr = $6, stdout_bytes = $7,"
			 " stderr_bytes = $8, stdout_sha256 = $9, stderr_sha256 = $10,"
			 " stdout_truncated = $11, stderr_truncated = $12 WHERE id = $1",
			 12, p);
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

int fl_db_command_get(FlDb *db, const char *id, struct json_object **ret, FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	if (!valid_uuid(id))
		return fl_error_set(err, -ENOENT, "no command %s", id ? id : "(null)");
	const char *p[] = {id};
	int r = fl_dbtx_begin(db, &tx, false, err);
	if (r < 0)
		return r;
	r = fl_dbtx_json(&tx, ret, err, "SELECT " COMMAND_JSON " FROM commands WHERE id = $1", 1, p);
	if (r == -ENOENT)
		return fl_error_set(err, -ENOENT, "no command %s", id);
	return r;
}

int fl_db_commands_list(FlDb *db, const char *sandbox_id, unsigned limit, unsigned offset,
			struct json_object **ret_array, uint64_t *ret_total, FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	struct json_object *o = NULL, *arr = NULL, *tot = NULL;
	char lim[16], off[16];
	snprintf(lim, sizeof(lim), "%u", limit ? (limit > 1000 ? 1000 : limit) : 100);
	snprintf(off, sizeof(off), "%u", offset);
	const char *p[] = {sandbox_id ? sandbox_id : "", lim, off};
	int r = fl_dbtx_begin(db, &tx, false, err);
	if (r < 0)
		return r;
	r = fl_dbtx_json(&tx, &o, err,
			 "SELECT json_build_object('total', (SELECT count(*) FROM commands WHERE sandbox_id = $1),"
			 " 'items', coalesce((SELECT json_agg(" COMMAND_JSON " ORDER BY started_at, id)"
			 " FROM (SELECT * FROM commands WHERE sandbox_id = $1"
			 " ORDER BY started_at, id LIMIT $2 OFFSET $3) c), '[]'))",
			 3, p);
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

int fl_db_commands_between(FlDb *db, const char *sandbox_id, int64_t from_unix, int64_t to_unix,
			   struct json_object **ret_array, FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	char from[32], to[32];
	snprintf(from, sizeof(from), "%" PRId64, from_unix);
	snprintf(to, sizeof(to), "%" PRId64, to_unix);
	const char *p[] = {sandbox_id ? sandbox_id : "", from, to};
	int r = fl_dbtx_begin(db, &tx, false, err);
	if (r < 0)
		return r;
	return fl_dbtx_json(&tx, ret_array, err,
			    "SELECT coalesce(json_agg(json_build_object('cmd', command,"
			    " 'exit_code', exit_code, 'at', " FL_DB_TS("started_at") ")"
			    " ORDER BY started_at, id), '[]') FROM (SELECT * FROM commands"
			    " WHERE sandbox_id = $1 AND started_at >= to_timestamp($2::bigint)"
			    " AND ($3::bigint = 0 OR started_at < to_timestamp($3::bigint))"
			    " ORDER BY started_at, id LIMIT 10000) c",
			    3, p);
}
