/* SPDX-License-Identifier: MIT */
/*
 * db-internal: what the db-*.c files share and nothing else sees: the
 * connection pool's transaction handle, query helpers, the schema list and
 * a small SHA-256.
 */
#ifndef FL_DB_INTERNAL_H
#define FL_DB_INTERNAL_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "cleanup.h"
#include "db.h"

FL_DEFINE_CLEANUP(PGresult *, PQclear)
FL_DEFINE_CLEANUP(struct json_object *, json_object_put)

/*
 * One borrowed pool connection, optionally inside a transaction. Use with
 * _cleanup_(fl_dbtx_end): an uncommitted transaction is rolled back and the
 * connection goes back to the pool.
 */
typedef struct FlDbTx {
	FlDb *db;
	int slot; /* -1 = nothing borrowed */
	PGconn *conn;
	bool in_tx;
} FlDbTx;

/* Borrows a connection; with begin, opens a transaction (retrying once on a stale one). */
int fl_dbtx_begin(FlDb *db, FlDbTx *tx, bool begin, FlError *err);
int fl_dbtx_commit(FlDbTx *tx, FlError *err);
void fl_dbtx_end(FlDbTx *tx);

/*
 * Runs sql with n text parameters (NULL = SQL NULL). On success *ret (may
 * be NULL to discard) holds the result. Errors are mapped to -errno.
 */
int fl_dbtx_exec(FlDbTx *tx, PGresult **ret, FlError *err, const char *sql, int n,
		 const char *const *params);
/* The first column of the first row parsed as JSON (new reference). */
int fl_dbtx_json(FlDbTx *tx, struct json_object **ret, FlError *err, const char *sql, int n,
		 const char *const *params);

/* Appends an audit row inside tx; out_id/out_hash may be NULL. */
int fl_db_audit_tx(FlDbTx *tx, const FlAuditEvent *ev, int64_t *out_id,
		   char out_hash[FL_DB_HASH_HEX], FlError *err);
/* After a commit: moves the outside-the-database anchor forward. */
void fl_db_anchor_advance(FlDb *db, int64_t id, const char *hash);
/* Anchor state for verify (id 0 = none). */
void fl_db_anchor_get(FlDb *db, int64_t *id, char hash[FL_DB_HASH_HEX], const char **path);
/* Reads the anchor file at open. */
void fl_db_anchor_load(FlDb *db);

size_t fl_db_output_cap(const FlDb *db);

/* RFC 3339 UTC text of a timestamptz column, for SQL. */
#define FL_DB_TS(col) "to_char((" col ") AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

typedef struct FlDbMigration {
	int version;
	const char *name;
	const char *sql;
} FlDbMigration;
size_t fl_db_migrations(const FlDbMigration **ret);

/* SHA-256 */
#include "sha256.h"

/* Keeps the valid UTF-8 of in (others and NUL -> U+FFFD), at most cap output bytes.
 * Returns a new NUL-terminated string; *ret_used = input bytes consumed. */
char *fl_db_utf8_clean(const char *in, size_t len, size_t cap, size_t *ret_used);

#endif
