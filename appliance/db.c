// SPDX-License-Identifier: MIT
/*
 * db: the PostgreSQL connection pool, error mapping, schema migrations and
 * the transaction helpers every db-*.c file uses.
 *
 * DESIGN: a fixed array of PGconn slots guarded by one mutex and condition
 * variable. A caller borrows a slot for one transaction and returns it;
 * connecting happens outside the lock. A connection that died (server
 * restarted) is noticed when BEGIN fails on it: that is retried once on a
 * fresh connection, which is safe because nothing has run yet. A failure
 * after BEGIN is reported (-ENOTCONN) and never retried here, since the
 * caller must not be told "done" about something that may not be. After a
 * failed connect the pool answers -ENOTCONN at once for 250 ms instead
 * of making every request wait for the connect timeout.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db-internal.h"

#define DOWN_BACKOFF_MS 250
#define MIGRATION_LOCK "7324151001" /* pg_advisory_lock key for migrations */

struct FlDb {
	char *conninfo;
	unsigned n;
	size_t output_cap;
	unsigned connect_timeout_s;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	PGconn **conns;
	bool *busy;
	uint64_t down_until_ms;
	char down_msg[256];

	pthread_mutex_t anchor_mu;
	char *anchor_path;
	int64_t anchor_id;
	char anchor_hash[FL_DB_HASH_HEX];
};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

size_t fl_db_output_cap(const FlDb *db) { return db->output_cap; }

/* The first line of a libpq message, without "FATAL:  " noise. */
static void first_line(const char *msg, char *buf, size_t len)
{
	if (!msg)
		msg = "";
	snprintf(buf, len, "%s", msg);
	char *nl = strchr(buf, '\n');
	if (nl)
		*nl = 0;
}

static PGconn *connect_one(FlDb *db, char *errbuf, size_t errlen)
{
	char timeout[16];
	snprintf(timeout, sizeof(timeout), "%u", db->connect_timeout_s);
	/*
	 * Earlier keywords are overridden by what the expanded dbname says.
	 * Over TCP, a server that vanished without closing the connection is
	 * noticed within ~30 s instead of blocking a request thread for hours.
	 */
	const char *const keys[] = {"connect_timeout", "application_name", "keepalives_idle",
				    "keepalives_interval", "keepalives_count", "tcp_user_timeout",
				    "dbname", NULL};
	const char *const vals[] = {timeout, "fluid", "10", "5", "3", "30000", db->conninfo, NULL};
	PGconn *c = PQconnectdbParams(keys, vals, 1);
	if (!c) {
		snprintf(errbuf, errlen, "out of memory");
		return NULL;
	}
	if (PQstatus(c) != CONNECTION_OK) {
		first_line(PQerrorMessage(c), errbuf, errlen);
		PQfinish(c);
		return NULL;
	}
	/* Timestamps we format ourselves; keep server-side defaults sane. */
	PGresult *r = PQexec(c, "SET TimeZone = 'UTC'; SET client_min_messages = warning");
	PQclear(r);
	return c;
}

/* Gets a usable connection into slot (connecting if needed). */
static int slot_connect(FlDb *db, int slot, bool force, FlError *err)
{
	char msg[256];
	if (!force && db->conns[slot] && PQstatus(db->conns[slot]) == CONNECTION_OK)
		return 0;
	pthread_mutex_lock(&db->mu);
	uint64_t until = db->down_until_ms;
	snprintf(msg, sizeof(msg), "%s", db->down_msg);
	pthread_mutex_unlock(&db->mu);
	if (until && now_ms() < until)
		return fl_error_set(err, -ENOTCONN, "database unavailable: %s", msg);
	if (db->conns[slot]) {
		PQfinish(db->conns[slot]);
		db->conns[slot] = NULL;
	}
	PGconn *c = connect_one(db, msg, sizeof(msg));
	pthread_mutex_lock(&db->mu);
	if (!c) {
		db->down_until_ms = now_ms() + DOWN_BACKOFF_MS;
		snprintf(db->down_msg, sizeof(db->down_msg), "%s", msg);
	} else {
		db->down_until_ms = 0;
	}
	pthread_mutex_unlock(&db->mu);
	if (!c)
		return fl_error_set(err, -ENOTCONN, "database unavailable: %s", msg);
	db->conns[slot] = c;
	return 0;
}

static int map_error(FlDbTx *tx, const PGresult *res, FlError *err)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	char msg[300];
	first_line(primary ? primary : PQerrorMessage(tx->conn), msg, sizeof(msg));
	bool lost = PQstatus(tx->conn) != CONNECTION_OK;
	if (lost || !state || !strncmp(state, "08", 2) || !strncmp(state, "57P", 3)) {
		/* A dead connection (status BAD) is replaced by the next borrower. */
		tx->in_tx = false;
		return fl_error_set(err, -ENOTCONN, "database unavailable: %s",
				    msg[0] ? msg : "connection lost");
	}
	if (!strcmp(state, "40001") || !strcmp(state, "40P01"))
		return fl_error_set(err, -EAGAIN, "database busy, retry: %s", msg);
	if (!strcmp(state, "23505"))
		return fl_error_set(err, -EEXIST, "%s", msg);
	if (!strncmp(state, "22", 2) || !strcmp(state, "23502") || !strcmp(state, "23514"))
		return fl_error_set(err, -EINVAL, "%s", msg);
	if (!strcmp(state, "53100"))
		return fl_error_set(err, -ENOSPC, "database disk full: %s", msg);
	return fl_error_set(err, -EIO, "database error %s: %s", state, msg);
}

int fl_dbtx_exec(FlDbTx *tx, PGresult **ret, FlError *err, const char *sql, int n,
		 const char *const *params)
{
	_cleanup_(PQclearp) PGresult *res =
		PQexecParams(tx->conn, sql, n, NULL, params, NULL, NULL, 0);
	ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		return map_error(tx, res, err);
	if (ret)
		*ret = TAKE_PTR(res);
	return 0;
}

int fl_dbtx_json(FlDbTx *tx, struct json_object **ret, FlError *err, const char *sql, int n,
		 const char *const *params)
{
	_cleanup_(PQclearp) PGresult *res = NULL;
	int r = fl_dbtx_exec(tx, &res, err, sql, n, params);
	if (r < 0)
		return r;
	if (PQntuples(res) < 1 || PQgetisnull(res, 0, 0))
		return fl_error_set(err, -ENOENT, "not found");
	struct json_tokener *tok = json_tokener_new_ex(64);
	if (!tok)
		return fl_error_set(err, -ENOMEM, "out of memory");
	const char *text = PQgetvalue(res, 0, 0);
	struct json_object *o = json_tokener_parse_ex(tok, text, PQgetlength(res, 0, 0) + 1);
	enum json_tokener_error je = json_tokener_get_error(tok);
	json_tokener_free(tok);
	if (!o || je != json_tokener_success) {
		json_object_put(o);
		return fl_error_set(err, -EIO, "database returned bad JSON");
	}
	*ret = o;
	return 0;
}

int fl_dbtx_begin(FlDb *db, FlDbTx *tx, bool begin, FlError *err)
{
	int r;
	*tx = (FlDbTx){.db = db, .slot = -1};
	pthread_mutex_lock(&db->mu);
	for (;;) {
		for (unsigned i = 0; i < db->n; i++)
			if (!db->busy[i]) {
				tx->slot = (int)i;
				break;
			}
		if (tx->slot >= 0)
			break;
		pthread_cond_wait(&db->cond, &db->mu);
	}
	db->busy[tx->slot] = true;
	pthread_mutex_unlock(&db->mu);

	for (int attempt = 0; attempt < 2; attempt++) {
		r = slot_connect(db, tx->slot, attempt > 0, err);
		if (r < 0)
			return r;
		tx->conn = db->conns[tx->slot];
		if (!begin)
			return 0;
		_cleanup_(PQclearp) PGresult *res = PQexec(tx->conn, "BEGIN");
		if (res && PQresultStatus(res) == PGRES_COMMAND_OK) {
			tx->in_tx = true;
			return 0;
		}
		if (PQstatus(tx->conn) == CONNECTION_OK)
			return map_error(tx, res, err);
		/* Stale connection (server restarted): nothing ran, reconnect once. */
	}
	return fl_error_set(err, -ENOTCONN, "database unavailable: connection lost");
}

int fl_dbtx_commit(FlDbTx *tx, FlError *err)
{
	_cleanup_(PQclearp) PGresult *res = PQexec(tx->conn, "COMMIT");
	ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (st != PGRES_COMMAND_OK)
		return map_error(tx, res, err);
	tx->in_tx = false;
	return 0;
}

void fl_dbtx_end(FlDbTx *tx)
{
	if (!tx->db || tx->slot < 0)
		return;
	FlDb *db = tx->db;
	PGconn *c = db->conns[tx->slot];
	if (c && PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) != PQTRANS_IDLE) {
		PGresult *res = PQexec(c, "ROLLBACK");
		PQclear(res);
		if (PQtransactionStatus(c) != PQTRANS_IDLE) {
			PQfinish(c);
			db->conns[tx->slot] = NULL;
		}
	}
	pthread_mutex_lock(&db->mu);
	db->busy[tx->slot] = false;
	pthread_cond_signal(&db->cond);
	pthread_mutex_unlock(&db->mu);
	tx->slot = -1;
	tx->conn = NULL;
	tx->in_tx = false;
}

int fl_db_ping(FlDb *db, FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	int r = fl_dbtx_begin(db, &tx, false, err);
	if (r < 0)
		return r;
	r = fl_dbtx_exec(&tx, NULL, err, "SELECT 1", 0, NULL);
	if (r == -ENOTCONN) {
		/* A stale connection after a server restart: one fresh try. */
		r = slot_connect(db, tx.slot, true, err);
		if (r < 0)
			return r;
		tx.conn = db->conns[tx.slot];
		r = fl_dbtx_exec(&tx, NULL, err, "SELECT 1", 0, NULL);
	}
	return r;
}

int fl_db_schema_version(FlDb *db, int *ret, FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	_cleanup_(PQclearp) PGresult *res = NULL;
	int r = fl_dbtx_begin(db, &tx, false, err);
	if (r < 0)
		return r;
	r = fl_dbtx_exec(&tx, &res, err, "SELECT coalesce(max(version), 0) FROM schema_migrations",
			 0, NULL);
	if (r < 0)
		return r;
	*ret = atoi(PQgetvalue(res, 0, 0));
	return 0;
}

static int migrate(FlDb *db, FlError *err)
{
	_cleanup_(fl_dbtx_end) FlDbTx tx = {0};
	_cleanup_(PQclearp) PGresult *res = NULL;
	const FlDbMigration *m;
	size_t nm = fl_db_migrations(&m);
	int r = fl_dbtx_begin(db, &tx, false, err);
	if (r < 0)
		return r;
	/* Session lock: a second fluid starting on the same database waits. */
	r = fl_dbtx_exec(&tx, NULL, err, "SELECT pg_advisory_lock(" MIGRATION_LOCK ")", 0, NULL);
	if (r < 0)
		return fl_error_prefix(err, "schema migration");
	r = fl_dbtx_exec(&tx, NULL, err,
			 "CREATE TABLE IF NOT EXISTS schema_migrations ("
			 " version integer PRIMARY KEY, name text NOT NULL,"
			 " applied_at timestamptz NOT NULL DEFAULT now())",
			 0, NULL);
	if (r < 0)
		goto out;
	r = fl_dbtx_exec(&tx, &res, err, "SELECT coalesce(max(version), 0) FROM schema_migrations",
			 0, NULL);
	if (r < 0)
		goto out;
	int have = atoi(PQgetvalue(res, 0, 0));
	for (size_t i = 0; i < nm; i++) {
		if (m[i].version <= have)
			continue;
		char ver[16];
		snprintf(ver, sizeof(ver), "%d", m[i].version);
		const char *p[] = {ver, m[i].name};
		PGresult *x = PQexec(tx.conn, "BEGIN");
		PQclear(x);
		/* Simple-query protocol: a migration is several statements. */
		_cleanup_(PQclearp) PGresult *mr = PQexec(tx.conn, m[i].sql);
		if (!mr || PQresultStatus(mr) != PGRES_COMMAND_OK) {
			r = map_error(&tx, mr, err);
			fl_error_prefix(err, "schema migration %d (%s)", m[i].version, m[i].name);
			goto out;
		}
		r = fl_dbtx_exec(&tx, NULL, err,
				 "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", 2,
				 p);
		if (r < 0)
			goto out;
		tx.in_tx = true;
		r = fl_dbtx_commit(&tx, err);
		if (r < 0) {
			fl_error_prefix(err, "schema migration %d (%s)", m[i].version, m[i].name);
			goto out;
		}
	}
	r = 0;
out:
	if (PQstatus(tx.conn) == CONNECTION_OK) {
		PGresult *x = NULL;
		if (PQtransactionStatus(tx.conn) != PQTRANS_IDLE) {
			x = PQexec(tx.conn, "ROLLBACK");
			PQclear(x);
		}
		x = PQexec(tx.conn, "SELECT pg_advisory_unlock(" MIGRATION_LOCK ")");
		PQclear(x);
	}
	return r;
}

int fl_db_open(const char *conninfo, const FlDbOptions *opts, FlDb **ret, FlError *err)
{
	if (!conninfo || !*conninfo)
		return fl_error_set(err, -EINVAL, "no database connection string");
	FlDb *db = calloc(1, sizeof(*db));
	if (!db)
		return fl_error_set(err, -ENOMEM, "out of memory");
	db->n = opts && opts->pool_size ? opts->pool_size : FL_DB_DEFAULT_POOL;
	if (db->n > 64)
		db->n = 64;
	db->output_cap = opts && opts->output_cap ? opts->output_cap : FL_DB_DEFAULT_OUTPUT_CAP;
	db->connect_timeout_s = opts && opts->connect_timeout_s ? opts->connect_timeout_s : 5;
	db->conninfo = strdup(conninfo);
	db->conns = calloc(db->n, sizeof(*db->conns));
	db->busy = calloc(db->n, sizeof(*db->busy));
	if (opts && opts->anchor_path)
		db->anchor_path = strdup(opts->anchor_path);
	pthread_mutex_init(&db->mu, NULL);
	pthread_cond_init(&db->cond, NULL);
	pthread_mutex_init(&db->anchor_mu, NULL);
	if (!db->conninfo || !db->conns || !db->busy ||
	    (opts && opts->anchor_path && !db->anchor_path)) {
		fl_db_close(db);
		return fl_error_set(err, -ENOMEM, "out of memory");
	}
	int r = migrate(db, err);
	if (r < 0) {
		fl_db_close(db);
		return r;
	}
	fl_db_anchor_load(db);
	*ret = db;
	return 0;
}

void fl_db_close(FlDb *db)
{
	if (!db)
		return;
	for (unsigned i = 0; db->conns && i < db->n; i++)
		if (db->conns[i])
			PQfinish(db->conns[i]);
	free(db->conns);
	free(db->busy);
	free(db->conninfo);
	free(db->anchor_path);
	pthread_mutex_destroy(&db->mu);
	pthread_cond_destroy(&db->cond);
	pthread_mutex_destroy(&db->anchor_mu);
	free(db);
}

/* ---- Anchor: the newest audit row this process wrote, outside PostgreSQL. */

void fl_db_anchor_load(FlDb *db)
{
	if (!db->anchor_path)
		return;
	struct json_object *o = json_object_from_file(db->anchor_path), *v;
	if (o && json_object_object_get_ex(o, "id", &v)) {
		int64_t id = json_object_get_int64(v);
		const char *h = json_object_object_get_ex(o, "hash", &v) ? json_object_get_string(v)
									 : NULL;
		if (id > 0 && h && strlen(h) == 64) {
			db->anchor_id = id;
			snprintf(db->anchor_hash, sizeof(db->anchor_hash), "%s", h);
		}
	}
	json_object_put(o);
}

void fl_db_anchor_advance(FlDb *db, int64_t id, const char *hash)
{
	pthread_mutex_lock(&db->anchor_mu);
	if (id > db->anchor_id) {
		db->anchor_id = id;
		snprintf(db->anchor_hash, sizeof(db->anchor_hash), "%s", hash);
		if (db->anchor_path) {
			/* No fsync: a crash may leave an older anchor, which is
			 * still a true statement about the chain (a lower bound). */
			char tmp[4200], text[160];
			snprintf(tmp, sizeof(tmp), "%s.tmp", db->anchor_path);
			int len = snprintf(text, sizeof(text), "{\"id\": %lld, \"hash\": \"%s\"}\n",
					   (long long)id, hash);
			FILE *f = fopen(tmp, "we");
			if (f) {
				bool ok = fwrite(text, 1, (size_t)len, f) == (size_t)len;
				ok = fclose(f) == 0 && ok;
				if (ok)
					rename(tmp, db->anchor_path);
				else
					unlink(tmp);
			}
		}
	}
	pthread_mutex_unlock(&db->anchor_mu);
}

void fl_db_anchor_get(FlDb *db, int64_t *id, char hash[FL_DB_HASH_HEX], const char **path)
{
	pthread_mutex_lock(&db->anchor_mu);
	*id = db->anchor_id;
	memcpy(hash, db->anchor_hash, FL_DB_HASH_HEX);
	*path = db->anchor_path;
	pthread_mutex_unlock(&db->anchor_mu);
}
