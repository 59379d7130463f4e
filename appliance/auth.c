// SPDX-License-Identifier: MIT
/*
 * auth: the database service (PostgreSQL, migrations, app->db) and the
 * auth service (bearer tokens -> roles, the first admin token, the audit
 * hooks around every request). See auth.h for the behaviour.
 *
 * DESIGN: both hooks and the authenticator run on civetweb worker threads
 * and only call the thread-safe FlDb and the token cache below (one mutex,
 * a fixed array: bounded no matter how many tokens are presented). The
 * cache is a fallback for when PostgreSQL is down; while it is up, every
 * request's token is checked against the database, so a revocation made by
 * another server on the same database takes effect at once.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "cleanup.h"
#include "log.h"
#include "state.h"

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)

#define CACHE_SLOTS 256

typedef struct CacheEntry {
	char hash[FL_DB_HASH_HEX];
	char id[FL_DB_ID_MAX];
	FlRole role;
} CacheEntry;

typedef struct FlAuth {
	FlDb *db;
	pthread_mutex_t mu;
	CacheEntry cache[CACHE_SLOTS];
	unsigned next;
	uint64_t audit_failures;
} FlAuth;

FlRole fl_role_from_name(const char *name)
{
	if (!name)
		return FL_ROLE_NONE;
	if (!strcmp(name, "agent"))
		return FL_ROLE_AGENT;
	if (!strcmp(name, "reviewer"))
		return FL_ROLE_REVIEWER;
	if (!strcmp(name, "admin"))
		return FL_ROLE_ADMIN;
	return FL_ROLE_NONE;
}

FlAuditEvent fl_audit_event(const FlHttpReq *req, const char *action, const char *sandbox_id,
			    struct json_object *details)
{
	return (FlAuditEvent){
		.actor = req->actor[0] ? req->actor : "anonymous",
		.role = fl_role_name(req->role),
		.action = action,
		.sandbox_id = sandbox_id,
		.details = details,
	};
}

static int auth_check(void *ud, const char *token, FlRole *ret_role);

/* ---- Token cache ------------------------------------------------------ */

static void cache_put(FlAuth *a, const char *hash, const char *id, FlRole role)
{
	pthread_mutex_lock(&a->mu);
	CacheEntry *e = NULL;
	for (unsigned i = 0; i < CACHE_SLOTS; i++)
		if (!strcmp(a->cache[i].hash, hash)) {
			e = &a->cache[i];
			break;
		}
	if (!e) {
		e = &a->cache[a->next];
		a->next = (a->next + 1) % CACHE_SLOTS;
	}
	snprintf(e->hash, sizeof(e->hash), "%s", hash);
	snprintf(e->id, sizeof(e->id), "%s", id);
	e->role = role;
	pthread_mutex_unlock(&a->mu);
}

static bool cache_get(FlAuth *a, const char *hash, char id[FL_DB_ID_MAX], FlRole *role)
{
	bool found = false;
	pthread_mutex_lock(&a->mu);
	for (unsigned i = 0; i < CACHE_SLOTS; i++)
		if (a->cache[i].hash[0] && !strcmp(a->cache[i].hash, hash)) {
			if (id)
				snprintf(id, FL_DB_ID_MAX, "%s", a->cache[i].id);
			if (role)
				*role = a->cache[i].role;
			found = true;
			break;
		}
	pthread_mutex_unlock(&a->mu);
	return found;
}

static void cache_drop(FlAuth *a, const char *hash, const char *id)
{
	pthread_mutex_lock(&a->mu);
	for (unsigned i = 0; i < CACHE_SLOTS; i++)
		if ((hash && !strcmp(a->cache[i].hash, hash)) || (id && !strcmp(a->cache[i].id, id)))
			memset(&a->cache[i], 0, sizeof(a->cache[i]));
	pthread_mutex_unlock(&a->mu);
}

void fl_auth_forget(FlApp *app, const char *token_id)
{
	FlAuth *a = app && app->auth == auth_check ? app->auth_ud : NULL;
	if (a && token_id)
		cache_drop(a, NULL, token_id);
}

static int auth_check(void *ud, const char *token, FlRole *ret_role)
{
	FlAuth *a = ud;
	char id[FL_DB_ID_MAX], role[16], hash[FL_DB_HASH_HEX];
	FlError err = {0};

	if (!token)
		return -ENOKEY;
	if (!fl_db_token_wellformed(token))
		return -EKEYREJECTED;
	fl_db_token_hash(token, hash);
	int r = fl_db_token_check(a->db, token, id, role, &err);
	if (r == 0) {
		FlRole rl = fl_role_from_name(role);
		cache_put(a, hash, id, rl);
		*ret_role = rl;
		return 0;
	}
	if (r == -ENOENT) {
		cache_drop(a, hash, NULL);
		return -EKEYREJECTED;
	}
	/* Database unreachable: tokens seen valid keep their role. */
	FlRole rl;
	if (cache_get(a, hash, NULL, &rl)) {
		*ret_role = rl;
		return 0;
	}
	fl_log_warn("token check: %s", err.msg);
	return -EKEYREJECTED;
}

/* ---- Request hooks ------------------------------------------------------ */

static bool is_mutating(const char *m)
{
	return !strcmp(m, "POST") || !strcmp(m, "PUT") || !strcmp(m, "PATCH") ||
	       !strcmp(m, "DELETE");
}

/* Sets req->actor from the bearer token (the authenticator has just cached
 * it); returns the token's role, which the router leaves unset on a 403. */
static FlRole fill_actor(FlAuth *a, FlHttpReq *req)
{
	const char *h = fl_http_header(req, "Authorization");
	char hash[FL_DB_HASH_HEX], id[FL_DB_ID_MAX];
	FlRole role = req->role;
	if (h && !strncasecmp(h, "Bearer ", 7) && fl_db_token_wellformed(h + 7)) {
		fl_db_token_hash(h + 7, hash);
		if (cache_get(a, hash, id, &role)) {
			if (!req->actor[0])
				snprintf(req->actor, sizeof(req->actor), "%s", id);
			return role;
		}
	}
	if (!req->actor[0])
		snprintf(req->actor, sizeof(req->actor), "anonymous");
	return role;
}

static struct json_object *request_details(const FlHttpReq *req, const char *phase)
{
	struct json_object *d = json_object_new_object();
	if (!d)
		return NULL;
	json_object_object_add(d, "method", json_object_new_string(req->method));
	json_object_object_add(d, "path", json_object_new_string_len(
						  req->path, (int)strnlen(req->path, 1024)));
	if (req->query && *req->query)
		json_object_object_add(d, "query", json_object_new_string_len(
							   req->query, (int)strnlen(req->query, 1024)));
	if (phase)
		json_object_object_add(d, "phase", json_object_new_string(phase));
	return d;
}

/* The sandbox a /v1/sandboxes/{id}/... request is about, for audit filters. */
static const char *request_sandbox(const FlHttpReq *req)
{
	if (strncmp(req->path, "/v1/sandboxes/", 14))
		return NULL;
	return fl_http_param(req, "id");
}

static int request_begin(FlApp *app, FlHttpReq *req)
{
	FlAuth *a = app->auth_ud;
	FlError err = {0};
	fill_actor(a, req);
	if (!is_mutating(req->method))
		return 0;
	_cleanup_(json_object_putp) struct json_object *d = request_details(req, "begin");
	FlAuditEvent ev = fl_audit_event(req, "http.request", request_sandbox(req), d);
	int r = fl_db_audit(a->db, &ev, NULL, &err);
	if (r < 0) {
		fl_log_warn("%s %s refused: audit log unavailable: %s", req->method, req->path,
			    err.msg);
		return fl_http_fail(req, r == -ENOTCONN || r == -EAGAIN ? r : -ENOTCONN,
				    "%s (nothing was changed)", err.msg);
	}
	return 0;
}

static void request_end(FlApp *app, FlHttpReq *req, int status)
{
	FlAuth *a = app->auth_ud;
	FlError err = {0};
	if (!strcmp(req->method, "GET") &&
	    (!strcmp(req->path, "/v1/health") || !strcmp(req->path, "/metrics")))
		return;
	FlRole role = fill_actor(a, req);
	_cleanup_(json_object_putp) struct json_object *d =
		request_details(req, is_mutating(req->method) ? "end" : NULL);
	FlAuditEvent ev = fl_audit_event(req, "http.request", request_sandbox(req), d);
	ev.role = fl_role_name(role);
	ev.status = status;
	/* Reads, and the end of a change whose begin row is durable already:
	 * no need to wait for the WAL flush after the answer was sent. */
	ev.lazy = true;
	if (fl_db_audit(a->db, &ev, NULL, &err) < 0) {
		/* Only reads and already-answered requests get here: log, rate-limited. */
		uint64_t n = __atomic_add_fetch(&a->audit_failures, 1, __ATOMIC_RELAXED);
		if (n == 1 || n % 100 == 0)
			fl_log_warn("audit row for %s %s (%d) not written (%llu so far): %s",
				    req->method, req->path, status, (unsigned long long)n, err.msg);
	}
}

/* ---- Services ------------------------------------------------------------ */

static int database_start(FlApp *app, FlError *err)
{
	_cleanup_free_ char *conninfo = fl_config_database_conninfo(app->cfg);
	char anchor[4096];
	FlDb *db = NULL;
	if (!conninfo) {
		fl_log_warn("no database configured (database.* or DATABASE_URL): no audit log, "
			    "no tokens, every request is allowed");
		return 0;
	}
	snprintf(anchor, sizeof(anchor), "%s/audit-head.json", app->cfg->state_dir);
	FlDbOptions opts = {.anchor_path = anchor};
	int r = fl_db_open(conninfo, &opts, &db, err);
	if (r < 0)
		return fl_error_prefix(err, "database");
	int ver = 0;
	fl_db_schema_version(db, &ver, NULL);
	fl_log_info("database: connected, schema version %d", ver);
	const FlAuditEvent ev = {.actor = "system", .action = "server.start"};
	if ((r = fl_db_audit(db, &ev, NULL, err)) < 0) {
		fl_db_close(db);
		return fl_error_prefix(err, "database");
	}
	app->db = db;
	return 0;
}

static void database_stop(FlApp *app)
{
	if (!app->db)
		return;
	const FlAuditEvent ev = {.actor = "system", .action = "server.stop"};
	FlError err = {0};
	if (fl_db_audit(app->db, &ev, NULL, &err) < 0)
		fl_log_warn("audit: %s", err.msg);
	fl_db_close(app->db);
	app->db = NULL;
}
FL_SERVICE(database, 10, database_start, database_stop);

/* Writes the bootstrap admin token to STATE/admin.token, owner-only. */
static int write_token_file(const char *path, const char *token)
{
	char tmp[4200];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	_cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	if (fchmod(fd, 0600) < 0)
		return -errno;
	size_t len = strlen(token);
	if (write(fd, token, len) != (ssize_t)len || write(fd, "\n", 1) != 1 || fsync(fd) < 0) {
		int r = -errno ? -errno : -EIO;
		unlink(tmp);
		return r;
	}
	if (rename(tmp, path) < 0) {
		int r = -errno;
		unlink(tmp);
		return r;
	}
	return 0;
}

static int auth_start(FlApp *app, FlError *err)
{
	if (!app->db)
		return 0;
	FlAuth *a = calloc(1, sizeof(*a));
	if (!a)
		return fl_error_set(err, -ENOMEM, "out of memory");
	a->db = app->db;
	pthread_mutex_init(&a->mu, NULL);

	char *plain = NULL, id[FL_DB_ID_MAX], path[4200];
	int r = fl_db_token_bootstrap(app->db, &plain, id, err);
	if (r < 0) {
		pthread_mutex_destroy(&a->mu);
		free(a);
		return fl_error_prefix(err, "admin token");
	}
	if (r > 0) {
		snprintf(path, sizeof(path), "%s/admin.token", app->cfg->state_dir);
		int w = write_token_file(path, plain);
		fprintf(stderr,
			"\nfluid: created the first admin token (%s); it is shown only this once:\n\n"
			"    %s\n\n",
			id, plain);
		if (w < 0)
			fprintf(stderr, "fluid: could not save it to %s: %s\n\n", path, strerror(-w));
		else
			fprintf(stderr,
				"fluid: saved to %s (mode 0600). The CLI uses it with\n"
				"    export FLUID_STATE_DIR=%s    (or --token-file %s)\n"
				"and curl with -H \"Authorization: Bearer $(cat %s)\"\n\n",
				path, app->cfg->state_dir, path, path);
		explicit_bzero(plain, strlen(plain));
		free(plain);
	}
	app->auth = auth_check;
	app->auth_ud = a;
	app->request_begin = request_begin;
	app->request_end = request_end;
	return 0;
}

static void auth_stop(FlApp *app)
{
	FlAuth *a = app->auth_ud;
	if (!a || app->auth != auth_check)
		return;
	app->auth = NULL;
	app->auth_ud = NULL;
	app->request_begin = NULL;
	app->request_end = NULL;
	pthread_mutex_destroy(&a->mu);
	free(a);
}
FL_SERVICE(auth, 30, auth_start, auth_stop);
