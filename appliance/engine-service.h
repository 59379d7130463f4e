/* SPDX-License-Identifier: MIT */
/*
 * engine-service: what the sandbox API files (api-sandboxes.c,
 * api-commands.c, api-files.c, api-snapshots.c, api-vms.c) share: the
 * engine of the running server, the mapping of engine errors and records
 * to API responses, and the persistence seam for sandboxes and commands
 * (PostgreSQL when the database service is up, files under the sandbox's
 * state directory otherwise).
 *
 * Every function here is called on civetweb worker threads.
 */
#ifndef FL_ENGINE_SERVICE_H
#define FL_ENGINE_SERVICE_H

#include <stdbool.h>
#include <stdint.h>
#include <json-c/json.h>

#include "engine.h"
#include "http.h"

/*
 * Engine operations that talk QMP run on a helper thread with a roomy
 * stack: Debian's civetweb gives its workers ~100 KiB stacks and libqmp
 * reads into a 64 KiB stack buffer, which overflows past the guard page
 * into a neighbouring thread's stack (seen as random SIGSEGVs). Same
 * contracts as the fl_engine_* functions they wrap.
 */
int fl_api_create(FlEngine *e, const FlSandboxSpec *spec, struct json_object **ret, FlError *err);
int fl_api_start(FlEngine *e, const char *id, FlError *err);
int fl_api_stop(FlEngine *e, const char *id, FlError *err);
int fl_api_destroy(FlEngine *e, const char *id, FlError *err);
int fl_api_snapshot(FlEngine *e, const char *id, const char *name, bool memory,
		    struct json_object **ret, FlError *err);
int fl_api_restore(FlEngine *e, const char *id, const char *name, FlError *err);
int fl_api_snapshot_delete(FlEngine *e, const char *id, const char *name, FlError *err);

/* Guest address under user-mode networking (slirp): every sandbox has it. */
#define FL_GUEST_IP "10.0.2.15"

/* The engine, or NULL (then the handler answers 503 via fl_api_engine). */
FlEngine *fl_api_engine(FlHttpReq *req);

/*
 * Resolves the {id} path parameter (a sandbox id or name) to the engine's
 * record: -EINVAL bad id, -ENOENT unknown, -ENODEV no engine (the request's
 * error is set). ret_id gets the canonical id; ret_rec (may be NULL) a new
 * reference to the engine record.
 */
int fl_api_sandbox_lookup(FlHttpReq *req, char ret_id[64], struct json_object **ret_rec);

/* Validates a name-like token: [A-Za-z0-9._-]{1,max}, not starting with '.'. */
bool fl_api_name_ok(const char *s, size_t max);

/* Fails the request from an engine error: r and err->msg (or strerror). */
int fl_api_fail(FlHttpReq *req, int r, const FlError *err);

/* Formats unix seconds as RFC 3339 UTC ("2026-11-29T17:20:00Z"). */
void fl_api_time(int64_t t, char buf[32]);
struct json_object *fl_api_time_json(int64_t t);

/* The API Sandbox object (new reference) from an engine record (borrowed). */
struct json_object *fl_api_sandbox_json(struct json_object *rec);

/* The API Snapshot object (new reference) from an engine snapshot entry. */
struct json_object *fl_api_snapshot_json(const char *sandbox_id, struct json_object *snap);

/* Reads the optional JSON body: an empty body gives an empty object. */
int fl_api_read_json_opt(FlHttpReq *req, struct json_object **ret);

/* Strict "limit"/"offset" query parameters (defaults 50 / 0, limit <= 1000). */
int fl_api_paging(FlHttpReq *req, uint64_t *limit, uint64_t *offset);

/* Publishes an event on the sandbox's live stream (events.h). */
void fl_api_publish(const char *sandbox_id, const char *type, struct json_object *data);

#include "sha256.h" /* streamed output digests */

/* The directory guest images are read from. */
const char *fl_api_image_dir(void);

/* ---- command records (api-commands.c) ---------------------------------- */

/* {"commands": [...], "total": N} for a sandbox, newest last; new reference
 * in *ret. */
int fl_api_commands_list(FlHttpReq *req, const char *sandbox_id, uint64_t limit, uint64_t offset,
			 struct json_object **ret);

/* ---- sandbox mirror (engine-service.c) ---------------------------------- */

/* Mirrors a sandbox record into the database (no-op without one). */
void fl_api_mirror_sandbox(FlApp *app, struct json_object *api_sandbox);

/* Directory for a sandbox's command output files (created on demand). */
int fl_api_commands_dir(FlHttpReq *req, const char *sandbox_id, char *buf, size_t len);

#endif
