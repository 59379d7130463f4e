/* SPDX-License-Identifier: MIT */
/*
 * db: fluid's PostgreSQL layer (libpq). Schema migrations, the hash-chained
 * append-only audit log, command records, the sandbox mirror used for list
 * filters, and API tokens. docs/audit.md describes the schema and the chain.
 *
 * Calls are blocking and thread-safe: FlDb holds a small pool of libpq
 * connections and every call borrows one for its duration (civetweb handler
 * threads call these directly). Every call is exactly one transaction:
 * either all of it is committed or nothing is.
 *
 * Errors (negative errno, err carries a message):
 *   -ENOTCONN  PostgreSQL unreachable or the connection died (the HTTP
 *              layer's errno table maps it to 503). After a failure the
 *              pool does not retry connecting for 250 ms, so a dead
 *              database costs callers no connect timeout each.
 *   -EAGAIN    serialisation failure / deadlock (503, retry)
 *   -EINVAL    bad argument or a value PostgreSQL rejected (400)
 *   -ENOENT    no such row (404)
 *   -EEXIST    unique key taken (409)
 *   -EBUSY     refused for consistency (409, e.g. revoking the last admin)
 *   -EIO       any other database error (500)
 *
 * "audit" arguments: the mutating calls below take an optional
 * FlAuditEvent that is appended to the audit log in the SAME transaction,
 * so a state change and its audit row are committed together or not at all.
 * Pass NULL to skip.
 *
 * Ownership: json_object arguments are borrowed; json returned through
 * ret_ parameters is a new reference the caller puts. ret_ parameters are
 * written only on success. Timestamps in JSON are RFC 3339 UTC strings
 * ("2026-11-29T17:30:00.123456Z") unless said otherwise.
 */
#ifndef FL_DB_H
#define FL_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

#include "error.h"

typedef struct FlDb FlDb;

#define FL_DB_ID_MAX 64          /* buffer size for ids returned below */
#define FL_DB_HASH_HEX 65        /* sha256 hex + NUL */
#define FL_DB_DEFAULT_POOL 4
#define FL_DB_DEFAULT_OUTPUT_CAP (64u * 1024) /* stored bytes per stream per command */

typedef struct FlDbOptions {
	unsigned pool_size;    /* connections; 0 = FL_DB_DEFAULT_POOL */
	size_t output_cap;     /* stdout/stderr bytes kept per command row; 0 = default */
	/*
	 * Optional file (e.g. STATE/audit-head.json) where the newest audit
	 * row id+hash written by this process is kept outside the database,
	 * so that verify can detect a truncated tail. NULL = none.
	 */
	const char *anchor_path;
	unsigned connect_timeout_s; /* 0 = 5 */
} FlDbOptions;

/*
 * Connects (conninfo: libpq URL or key=value string), runs the pending
 * schema migrations (each in its own transaction, serialised across
 * processes by an advisory lock, idempotent) and returns the handle.
 * opts may be NULL. Errors: -ENOTCONN (cannot connect), -EIO (migration
 * failed; err names it).
 */
int fl_db_open(const char *conninfo, const FlDbOptions *opts, FlDb **ret, FlError *err);
/* Closes every connection. Accepts NULL. No call may be running. */
void fl_db_close(FlDb *db);

/* Cheap round trip (SELECT 1). 0 or -ENOTCONN. */
int fl_db_ping(FlDb *db, FlError *err);
/* Highest applied schema version. */
int fl_db_schema_version(FlDb *db, int *ret, FlError *err);

/* ---- Audit ---------------------------------------------------------- */

typedef struct FlAuditEvent {
	const char *actor;      /* token id, "system", "anonymous"; NULL = "system" */
	const char *role;       /* "agent" | "reviewer" | "admin" | "none"; NULL = "none" */
	const char *action;     /* "sandbox.create", "command.run", "http.request", ... (required) */
	const char *sandbox_id; /* NULL when not about one sandbox */
	int status;             /* HTTP status, or 0 */
	struct json_object *details; /* borrowed, may be NULL (stored as jsonb) */
	/*
	 * fl_db_audit() only: commit without waiting for PostgreSQL's WAL flush
	 * (synchronous_commit off). A crash of PostgreSQL may then lose the
	 * last such rows (the chain stays intact). For rows written after the
	 * fact, e.g. of read requests; never for the row that admits a change.
	 */
	bool lazy;
} FlAuditEvent;

/*
 * Appends one row. Rows get gapless ids 1, 2, 3, ... and
 * hash = sha256(canonical(prev_hash, id, at, actor, role, action,
 * sandbox_id, status, details)); appends are serialised so the chain is
 * linear. ret_id may be NULL.
 */
int fl_db_audit(FlDb *db, const FlAuditEvent *ev, int64_t *ret_id, FlError *err);

typedef struct FlDbAuditQuery {
	const char *sandbox_id; /* NULL = all */
	const char *action;     /* NULL = all; exact match */
	int64_t after_id;       /* > 0: rows with id > after_id, oldest first */
	const char *since;      /* timestamp PostgreSQL understands (RFC 3339); NULL = none */
	unsigned limit;         /* 0 = 100; at most 1000 */
} FlDbAuditQuery;

/*
 * Audit rows as a JSON array, oldest first: [{id, at, actor, role, action,
 * sandbox_id, status, details, prev_hash, hash}]. With after_id or since,
 * the first `limit` rows from there; otherwise the newest `limit` rows.
 * q may be NULL.
 */
int fl_db_audit_list(FlDb *db, const FlDbAuditQuery *q, struct json_object **ret_array,
		     FlError *err);

/*
 * Checks the whole chain in one consistent snapshot. The report:
 *   {"ok": bool, "rows": N, "head": {"id", "hash"},
 *    "first_bad_id": id | null, "problem": "..." | null,
 *    "problems": [{"id", "kind", "message"}] (at most 20),
 *    "anchor": {"id", "hash", "path", "ok"} | null}
 * kind is one of "modified" (stored hash does not match the row),
 * "deleted" (a gap in the ids), "relinked" (prev_hash does not match the
 * previous row), "head" (the chain head row disagrees with the table),
 * "truncated" (the anchor kept outside the database is missing or differs).
 * A broken chain is not an error: the call returns 0 with ok=false.
 */
int fl_db_audit_verify(FlDb *db, struct json_object **ret_report, FlError *err);

/* ---- Commands ------------------------------------------------------- */

typedef struct FlDbCommandStart {
	const char *sandbox_id;        /* required */
	const char *command;           /* required: the command line as given */
	struct json_object *env;       /* borrowed object of strings, may be NULL */
	const char *user;              /* may be NULL */
} FlDbCommandStart;

/* One output stream of a finished command. */
typedef struct FlDbStream {
	const char *data;       /* the bytes kept (may be more than the cap: cut here) */
	size_t len;
	uint64_t total_bytes;   /* size of the whole stream */
	const char *sha256_hex; /* of the whole stream, NULL if unknown */
} FlDbStream;

typedef struct FlDbCommandEnd {
	bool has_exit_code;
	int exit_code;
	int signal;             /* terminating signal number, 0 if none */
	FlDbStream out, err;
	const char *error;      /* e.g. "timeout", "agent lost"; NULL if none */
} FlDbCommandEnd;

/* Inserts a command row (started_at = now). ret_id receives its id (uuid). */
int fl_db_command_begin(FlDb *db, const FlDbCommandStart *c, const FlAuditEvent *audit,
			char ret_id[FL_DB_ID_MAX], FlError *err);
/*
 * Completes it (ended_at = now). Output beyond the configured cap is cut
 * (at a UTF-8 boundary); invalid UTF-8 and NUL bytes are stored as U+FFFD.
 * -ENOENT unknown id, -EALREADY already ended.
 */
int fl_db_command_end(FlDb *db, const char *id, const FlDbCommandEnd *r,
		      const FlAuditEvent *audit, FlError *err);
/*
 * Command JSON (API.md shape plus extras): {id, sandbox_id, command, env,
 * user, stdout, stderr, exit_code, signal, error, started_at, ended_at,
 * stdout_bytes, stderr_bytes, stdout_sha256, stderr_sha256,
 * stdout_truncated, stderr_truncated}; exit_code/ended_at are null while
 * running.
 */
int fl_db_command_get(FlDb *db, const char *id, struct json_object **ret, FlError *err);
/* Commands of a sandbox, oldest first; ret_total counts all of them. limit 0 = 100. */
int fl_db_commands_list(FlDb *db, const char *sandbox_id, unsigned limit, unsigned offset,
			struct json_object **ret_array, uint64_t *ret_total, FlError *err);

/*
 * Commands of a sandbox started in [from_unix, to_unix) (unix seconds; to 0
 * = now), oldest first, in the Diff's commands_run shape:
 * [{cmd, exit_code, at}]. At most 10000.
 */
int fl_db_commands_between(FlDb *db, const char *sandbox_id, int64_t from_unix, int64_t to_unix,
			   struct json_object **ret_array, FlError *err);

/* ---- Sandbox mirror ------------------------------------------------- */

/*
 * Inserts or replaces the mirror row of a sandbox from the engine's record
 * JSON ({id*, sandbox_name, agent_id, job_id, base_image, state, network,
 * ip_address, ttl_seconds, created_at, updated_at, ...}; created_at and
 * updated_at as unix seconds or strings). The record is stored whole and
 * returned as is by get/list. The engine's files stay the source of truth.
 */
int fl_db_sandbox_upsert(FlDb *db, struct json_object *record, const FlAuditEvent *audit,
			 FlError *err);
/* The stored record (new reference) or -ENOENT. */
int fl_db_sandbox_get(FlDb *db, const char *id, struct json_object **ret, FlError *err);
/* Removes mirror rows whose id is not in keep_ids (array of strings; reconciliation). */
int fl_db_sandboxes_prune(FlDb *db, struct json_object *keep_ids, FlError *err);

typedef struct FlDbSandboxFilter {
	const char *agent_id, *job_id, *base_image, *state, *vm_name; /* NULL = any */
	unsigned limit;  /* 0 = 100 */
	unsigned offset;
} FlDbSandboxFilter;

/* Records matching every given filter (vm_name matches sandbox_name),
 * oldest first; ret_total counts all matches, not the page. f may be NULL. */
int fl_db_sandboxes_list(FlDb *db, const FlDbSandboxFilter *f, struct json_object **ret_array,
			 uint64_t *ret_total, FlError *err);

/* ---- Tokens --------------------------------------------------------- */

/*
 * Tokens are "flt_" + 64 hex characters (32 random bytes); only their
 * sha256 is stored. role: "agent", "reviewer" or "admin". name may be NULL.
 * *ret_plaintext (caller frees) is the only copy of the secret.
 */
int fl_db_token_create(FlDb *db, const char *role, const char *name, const FlAuditEvent *audit,
		       char **ret_plaintext, char ret_id[FL_DB_ID_MAX], FlError *err);
/*
 * Looks a presented token up. 0 with its id and role, -ENOENT if unknown
 * or revoked, -ENOTCONN if the database is down.
 */
int fl_db_token_check(FlDb *db, const char *plaintext, char ret_id[FL_DB_ID_MAX],
		      char ret_role[16], FlError *err);
/* [{id, name, role, created_at, revoked_at}], newest first. */
int fl_db_tokens_list(FlDb *db, bool include_revoked, struct json_object **ret_array,
		      FlError *err);
/* Revokes an active token: -ENOENT unknown or already revoked, -EBUSY the last admin. */
int fl_db_token_revoke(FlDb *db, const char *id, const FlAuditEvent *audit, FlError *err);
/*
 * First-start bootstrap: when no active admin token exists, creates one
 * (returns 1, *ret_plaintext set) — atomically, so two servers starting on
 * one database create one. Returns 0 when an admin token already exists.
 */
int fl_db_token_bootstrap(FlDb *db, char **ret_plaintext, char ret_id[FL_DB_ID_MAX],
			  FlError *err);

/* Token format helpers (pure): sha256 hex of a token; a valid-looking token? */
void fl_db_token_hash(const char *plaintext, char ret_hex[FL_DB_HASH_HEX]);
bool fl_db_token_wellformed(const char *plaintext);

static inline void fl_db_closep(FlDb **p)
{
	if (*p)
		fl_db_close(*p);
}

#endif
