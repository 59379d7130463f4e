// SPDX-License-Identifier: MIT
/*
 * db-tokens: API bearer tokens. A token is 32 bytes from getrandom()
 * written as "flt_" + 64 hex digits; the database keeps only its sha256
 * (computed here, so the plaintext never travels to PostgreSQL). A fast
 * hash is enough because the secret has 256 bits of entropy: there is
 * nothing to guess that a slow hash would protect.
 *
 * Token changes take one advisory transaction lock, so "create the first
 * admin" and "never revoke the last admin" hold with several servers on
 * one database.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "db-internal.h"

#define TOKENS_LOCK "SELECT pg_advisory_xact_lock(7324151002)"

static bool valid_role(const char *r)
{
	return r && (!strcmp(r, "agent") || !strcmp(r, "reviewer") || !strcmp(r, "admin"));
}

static int random_hex(char *out, size_t nbytes)
{
	static const char hx[] = "0123456789abcdef";
	uint8_t b[64];
	if (nbytes > sizeof(b))
		return -EINVAL;
	size_t got = 0;
	while (got < nbytes) {
		ssize_t n = getrandom(b + got, nbytes - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)n;
	}
	for (size_t i = 0; i < nbytes; i++) {
		out[2 * i] = hx[b[i] >> 4];
		out[2 * i + 1] = hx[b[i] & 15];
	}
	out[2 * nbytes] = 0;
	explicit_bzero(b, sizeof(b));
	return 0;
}

/* Inserts a new token inside tx. */
static int insert_token(FlDbTx *tx, const char *role, const char *name, char **ret_plaintext,
			char ret_id[FL_DB_ID_MAX], FlError *err)
{
	char secret[65], idhex[17], id[32], hash[FL_DB_HASH_HEX];
	int r = random_hex(secret, 32);
	if (r < 0 || (r = random_hex(idhex, 8)) < 0)
		return fl_error_set(err, r, "getrandom: %s", strerror(-r));
	_cleanup_free_ char *plain = NULL;
	if (asprintf(&plain, "flt_%s", secret) < 0)
		return fl_error_set(err, -ENOMEM, "out of memory");
	explicit_bzero(secret, sizeof(secret));
	snprintf(id, sizeof(id), "tok_%s", idhex);
	fl_db_token_hash(plain, hash);
	const char *p[] = {id, name, role, hash};
	r = fl_dbtx_exec(tx, NULL, err,
			 "INSERT INTO tokens (id, name, role, hash) VALUES ($1, $2, $3, $4)", 4, p);
	if (r < 0)
		return r;
	*ret_plaintext = TAKE_PTR(plain);
	snprintf(ret_id, FL_DB_ID_MAX, "%s", id);
	return 0;
}

static void free_secret(char **p)
{
	if (*p) {
		explicit_bzero(*p, strlen(*p));
		free(*p);
	}
}

int fl_db_token_create(FlDb *db, const char *role, const char *name, const FlAuditEvent *audit,
		       char **ret_plaintext, char ret_id[FL_DB_ID_MAX], FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	_cleanup_(free_secret) char *plain = NULL;
	char id[FL_DB_ID_MAX], hash[FL_DB_HASH_HEX];
	int64_t aid = 0;

	if (!valid_role(role))
		return fl_error_set(err, -EINVAL, "role must be agent, reviewer or admin");
	if (name) {
		size_t n = strlen(name);
		if (n == 0 || n > 100)
			return fl_error_set(err, -EINVAL, "name must be 1-100 characters");
		for (const char *s = name; *s; s++)
			if ((unsigned char)*s < 0x20 || *s == 0x7f)
				return fl_error_set(err, -EINVAL, "name has control characters");
	}
	int r = fl_dbtx_begin(db, &tx, true, err);
	if (r < 0)
		return r;
	if ((r = fl_dbtx_exec(&tx, NULL, err, TOKENS_LOCK, 0, NULL)) < 0 ||
	    (r = insert_token(&tx, role, name, &plain, id, err)) < 0)
		return r;
	if (audit && (r = fl_db_audit_tx(&tx, audit, &aid, hash, err)) < 0)
		return r;
	r = fl_dbtx_commit(&tx, err);
	if (r < 0)
		return r;
	if (audit)
		fl_db_anchor_advance(db, aid, hash);
	*ret_plaintext = TAKE_PTR(plain);
	snprintf(ret_id, FL_DB_ID_MAX, "%s", id);
	return 0;
}

int fl_db_token_check(FlDb *db, const char *plaintext, char ret_id[FL_DB_ID_MAX],
		      char ret_role[16], FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	_cleanup_(PQclearp) PGresult *res = NULL;
	char hash[FL_DB_HASH_HEX];
	if (!fl_db_token_wellformed(plaintext))
		return fl_error_set(err, -ENOENT, "unknown token");
	fl_db_token_hash(plaintext, hash);
	const char *p[] = {hash};
	int r = fl_dbtx_begin(db, &tx, false, err);
	if (r < 0)
		return r;
	r = fl_dbtx_exec(&tx, &res, err,
			 "SELECT id, role FROM tokens WHERE hash = $1 AND revoked_at IS NULL", 1, p);
	if (r < 0)
		return r;
	if (PQntuples(res) != 1)
		return fl_error_set(err, -ENOENT, "unknown or revoked token");
	snprintf(ret_id, FL_DB_ID_MAX, "%s", PQgetvalue(res, 0, 0));
	snprintf(ret_role, 16, "%s", PQgetvalue(res, 0, 1));
	return 0;
}

int fl_db_tokens_list(FlDb *db, bool include_revoked, struct json_object **ret_array,
		      FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	const char *p[] = {include_revoked ? "true" : "false"};
	int r = fl_dbtx_begin(db, &tx, false, err);
	if (r < 0)
		return r;
	return fl_dbtx_json(&tx, ret_array, err,
			    "SELECT coalesce(json_agg(json_build_object('id', id, 'name', name,"
			    " 'role', role, 'created_at', " FL_DB_TS("created_at") ","
			    " 'revoked_at', " FL_DB_TS("revoked_at") ") ORDER BY created_at DESC, id),"
			    " '[]') FROM tokens WHERE $1::boolean OR revoked_at IS NULL",
			    1, p);
}

int fl_db_token_revoke(FlDb *db, const char *id, const FlAuditEvent *audit, FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	_cleanup_(PQclearp) PGresult *res = NULL, *cnt = NULL;
	char hash[FL_DB_HASH_HEX];
	int64_t aid = 0;
	const char *p[] = {id ? id : ""};
	int r = fl_dbtx_begin(db, &tx, true, err);
	if (r < 0)
		return r;
	if ((r = fl_dbtx_exec(&tx, NULL, err, TOKENS_LOCK, 0, NULL)) < 0 ||
	    (r = fl_dbtx_exec(&tx, &res, err,
			      "SELECT role FROM tokens WHERE id = $1 AND revoked_at IS NULL", 1, p)) <
		    0)
		return r;
	if (PQntuples(res) != 1)
		return fl_error_set(err, -ENOENT, "no active token %s", id ? id : "(null)");
	if (!strcmp(PQgetvalue(res, 0, 0), "admin")) {
		r = fl_dbtx_exec(&tx, &cnt, err,
				 "SELECT count(*) FROM tokens WHERE role = 'admin' AND revoked_at IS NULL",
				 0, NULL);
		if (r < 0)
			return r;
		if (atoll(PQgetvalue(cnt, 0, 0)) <= 1)
			return fl_error_set(err, -EBUSY,
					    "%s is the last admin token (create another admin token first)",
					    id);
	}
	r = fl_dbtx_exec(&tx, NULL, err, "UPDATE tokens SET revoked_at = now() WHERE id = $1", 1, p);
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

int fl_db_token_bootstrap(FlDb *db, char **ret_plaintext, char ret_id[FL_DB_ID_MAX],
			  FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	_cleanup_(PQclearp) PGresult *res = NULL;
	_cleanup_(free_secret) char *plain = NULL;
	char id[FL_DB_ID_MAX], hash[FL_DB_HASH_HEX];
	int64_t aid = 0;
	int r = fl_dbtx_begin(db, &tx, true, err);
	if (r < 0)
		return r;
	if ((r = fl_dbtx_exec(&tx, NULL, err, TOKENS_LOCK, 0, NULL)) < 0 ||
	    (r = fl_dbtx_exec(&tx, &res, err,
			      "SELECT 1 FROM tokens WHERE role = 'admin' AND revoked_at IS NULL LIMIT 1",
			      0, NULL)) < 0)
		return r;
	if (PQntuples(res) > 0)
		return 0;
	if ((r = insert_token(&tx, "admin", "bootstrap admin", &plain, id, err)) < 0)
		return r;
	_cleanup_(json_object_putp) struct json_object *d = json_object_new_object();
	json_object_object_add(d, "token_id", json_object_new_string(id));
	json_object_object_add(d, "role", json_object_new_string("admin"));
	const FlAuditEvent ev = {.actor = "system", .role = "none", .action = "token.create",
				 .details = d};
	if ((r = fl_db_audit_tx(&tx, &ev, &aid, hash, err)) < 0)
		return r;
	r = fl_dbtx_commit(&tx, err);
	if (r < 0)
		return r;
	fl_db_anchor_advance(db, aid, hash);
	*ret_plaintext = TAKE_PTR(plain);
	snprintf(ret_id, FL_DB_ID_MAX, "%s", id);
	return 1;
}
