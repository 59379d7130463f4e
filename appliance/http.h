/* SPDX-License-Identifier: MIT */
/*
 * http: fluid's HTTP front end on civetweb: server start/stop, the routing
 * table, and JSON request/response helpers shared by every api-*.c file.
 *
 * Registering a handler: in an api-<resource>.c file,
 *
 *     static int get_sandbox(FlHttpReq *req)
 *     {
 *             const char *id = fl_http_param(req, "id");
 *             ...
 *             return fl_http_send_json(req, 200, body);     // or
 *             return fl_http_fail(req, -ENOENT, "no sandbox %s", id);
 *     }
 *     FL_ROUTE(get_sandbox, "GET", "/v1/sandboxes/{id}", FL_ROLE_AGENT);
 *
 * FL_ROUTE puts a descriptor into a linker section; the router collects
 * every descriptor at start-up, so adding a file adds its routes without
 * touching a central list. Patterns are literal segments and {name}
 * parameters (one whole segment each). A request whose path matches no
 * route gets 404, one whose path matches but method does not gets 405.
 * Paths outside /v1/ and /api/ with no route fall through to the static
 * web UI directory (server.webui_dir) when one is configured.
 *
 * Handler contract: return the HTTP status sent (>= 100) on success, or a
 * negative errno; in that case the router sends the error body
 * {"error", "code", "details"} with the status chosen by
 * fl_http_status_from_errno() (the one errno->status table), using the
 * message set by fl_http_fail() (or strerror). A handler that already
 * started a response must not return a negative value.
 *
 * Roles: each route names the least role it needs. The router asks the
 * authenticator in app->auth (installed by a service; tokens come in a later
 * issue); with none installed every request passes (development only, and
 * logged at start-up).
 *
 * Threads: handlers run on civetweb worker threads. They may block briefly;
 * long work goes to the engine loop or a worker. FlHttpReq lives for one
 * request.
 */
#ifndef FL_HTTP_H
#define FL_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

#include "accel.h"
#include "config.h"
#include "error.h"

struct mg_connection;
struct mg_context;

#define FL_HTTP_MAX_BODY (1u << 20) /* 1 MiB, API.md */
#define FL_HTTP_MAX_PARAMS 4
#define FL_HTTP_MAX_PARAM_LEN 256

typedef enum FlRole {
	FL_ROLE_NONE = 0, /* unauthenticated */
	FL_ROLE_AGENT = 1,
	FL_ROLE_REVIEWER = 2,
	FL_ROLE_ADMIN = 3,
} FlRole;

const char *fl_role_name(FlRole r);

struct FlApp;
struct FlHttpReq;

/*
 * Authenticator: given the bearer token (NULL if none), return 0 and the
 * caller's role, or -EACCES (bad token). Called on civetweb threads.
 */
typedef int (*fl_http_auth_fn)(void *ud, const char *token, FlRole *ret_role);

/*
 * Everything the API handlers share, built by `fluid serve`. Read-only
 * after the server starts, except what the engine guards itself.
 */
typedef struct FlApp {
	const FlConfig *cfg;
	FlAccelInfo accel;
	int64_t started_at;   /* CLOCK_REALTIME seconds */
	uint64_t started_mono_ms;
	char listen[300];     /* actual address after binding (port 0 resolved) */
	void *engine;         /* FlEngine *, set by the engine's FL_SERVICE */
	void *db;             /* database handle, set by the audit FL_SERVICE */
	/* Optional: adds live figures to GET /v1/status (it may replace
	 * "capacity"."sandboxes" with the running count). */
	void (*status_extend)(struct FlApp *app, struct json_object *status);
	/* Optional: token authenticator, set by a service before listening. */
	fl_http_auth_fn auth;
	void *auth_ud;
	/*
	 * Optional request hooks, set by the audit service (auth.c).
	 * request_begin runs after authorisation and before the handler; a
	 * negative errno fails the request with that errno's status (message
	 * in req->err) and the handler does not run. request_end runs once the
	 * response to any routed request (including 401/403/404/405) was sent.
	 */
	int (*request_begin)(struct FlApp *app, struct FlHttpReq *req);
	void (*request_end)(struct FlApp *app, struct FlHttpReq *req, int status);
} FlApp;

/*
 * Services: subsystems `fluid serve` starts after the accelerator decision
 * and before the HTTP server listens (lowest order first), and stops in
 * reverse after the HTTP server has stopped. Declared in the subsystem's
 * own appliance/<name>.c file, so wiring one in touches no shared file:
 *
 *     static int engine_start(FlApp *app, FlError *err) { ... app->engine = e; }
 *     static void engine_stop(FlApp *app) { fl_engine_free(app->engine); }
 *     FL_SERVICE(engine, 20, engine_start, engine_stop);
 *
 * start returns 0 or -errno with err set (start-up then fails and the
 * services already started are stopped). stop may be NULL.
 * Order convention: 10 database/audit, 20 engine, 30 auth.
 */
typedef struct FlService {
	const char *name;
	int order;
	int (*start)(FlApp *app, FlError *err);
	void (*stop)(FlApp *app);
} FlService;

#define FL_SERVICE(name_, order_, start_, stop_)                                         \
	static const FlService fl_service_##name_ = {                                   \
		.name = #name_, .order = (order_), .start = (start_), .stop = (stop_)}; \
	__attribute__((used, section("fl_service_set"))) static const FlService *const     \
		fl_service_ptr_##name_ = &fl_service_##name_

#define FL_MAX_SERVICES 32
/* Fills out (max entries) with the registered services sorted by order. */
size_t fl_services(const FlService **out, size_t max);

typedef struct FlHttpReq {
	struct mg_connection *conn;
	FlApp *app;
	const char *method;
	const char *path;  /* decoded, without query string */
	const char *query; /* raw query string or NULL */
	FlRole role;       /* role of the caller after authentication */
	size_t n_params;
	struct {
		const char *name; /* points into the pattern */
		char value[FL_HTTP_MAX_PARAM_LEN];
	} params[FL_HTTP_MAX_PARAMS];
	bool responded;
	FlError err; /* message for the error body when a handler fails */
	char actor[64]; /* caller's token id for audit rows, set by request_begin; "" if none */
	struct json_object *err_details; /* optional, owned */
} FlHttpReq;

typedef int (*fl_http_handler_fn)(FlHttpReq *req);

typedef struct FlRoute {
	const char *method;  /* "GET", "POST", ... */
	const char *pattern; /* "/v1/sandboxes/{id}/start" */
	FlRole role;         /* least role required */
	fl_http_handler_fn handler;
	const char *name;
} FlRoute;

#define FL_ROUTE(fn, method_, pattern_, role_)                                          \
	static const FlRoute fl_route_##fn = {                                          \
		.method = (method_), .pattern = (pattern_), .role = (role_),           \
		.handler = (fn), .name = #fn};                                         \
	__attribute__((used, section("fl_routes"))) static const FlRoute *const         \
		fl_route_ptr_##fn = &fl_route_##fn

/* ---- Server --------------------------------------------------------- */

typedef struct FlHttpServer FlHttpServer;

/* Overrides app->auth for this server (tests). */
void fl_http_set_auth(FlHttpServer *s, fl_http_auth_fn fn, void *ud);

/* Binds app->cfg->server.listen and starts serving; fills app->listen. */
int fl_http_start(FlApp *app, FlHttpServer **ret, FlError *err);
/* Stops accepting, waits for running handlers, frees. Accepts NULL. */
void fl_http_stop(FlHttpServer *s);
/* civetweb context, for WebSocket handlers (mg_set_websocket_handler). */
struct mg_context *fl_http_context(FlHttpServer *s);

/* All registered routes (the linker set), for listings and tests. */
size_t fl_http_routes(const FlRoute *const **ret);

/*
 * Matches method+path against the table. Returns the route and fills
 * req->params; NULL with *ret_status 404 or 405 otherwise. Pure, for tests.
 */
const FlRoute *fl_http_match(const char *method, const char *path, FlHttpReq *req,
			     int *ret_status);

/* ---- Hooks for WebSockets and metrics (api-stream.c, api-metrics.c) ---- */

/*
 * Start hooks: functions called by fl_http_start() after the router is
 * installed and before it returns, e.g. to register civetweb WebSocket
 * handlers (whose upgrade requests bypass the router):
 *
 *     static void stream_install(FlHttpServer *s) { mg_set_websocket_handler(...); }
 *     FL_HTTP_START_HOOK(stream_install);
 */
typedef void (*fl_http_start_hook_fn)(FlHttpServer *s);
#define FL_HTTP_START_HOOK(fn)                                                         \
	__attribute__((used, section("fl_http_start_hooks"))) static const              \
		fl_http_start_hook_fn fl_http_start_hook_##fn = (fn)

/*
 * Stop hooks: called by fl_http_stop() before it waits for the running
 * handlers, to wake handlers that wait on something (long-polls), so that
 * a stop never waits out their timeouts.
 */
typedef void (*fl_http_stop_hook_fn)(FlHttpServer *s);
#define FL_HTTP_STOP_HOOK(fn)                                                          \
	__attribute__((used, section("fl_http_stop_hooks"))) static const               \
		fl_http_stop_hook_fn fl_http_stop_hook_##fn = (fn)

/* The server a civetweb connection belongs to, and its app. */
FlHttpServer *fl_http_server_of(const struct mg_connection *conn);
FlApp *fl_http_app(FlHttpServer *s);
/*
 * The router's authentication, for handlers outside it: checks token (NULL
 * = none) with the server's authenticator. 0 and *ret_role on success
 * (FL_ROLE_ADMIN when no authenticator is installed, as the router does);
 * -ENOKEY without a token, -EKEYREJECTED for a bad one.
 */
int fl_http_authenticate(FlHttpServer *s, const char *token, FlRole *ret_role);

/*
 * WebSocket endpoints (GET /v1/sandboxes/{id}<suffix>) are civetweb
 * handlers outside the router; their connect handlers share these.
 * fl_http_ws_refuse: an HTTP error in the API's error shape, written raw
 * (civetweb refuses its header API on a WebSocket request); returns 1, the
 * connect handler's "refused". fl_http_ws_accept: the path's {id} into id
 * (404 unless the path has that shape), the bearer token (header or
 * ?token=) and at least the agent role; 0 and *ret_role, else it refused
 * and returns 1.
 */
int fl_http_ws_refuse(const struct mg_connection *conn, int status, const char *msg);
int fl_http_ws_accept(const struct mg_connection *conn, FlHttpServer *s, const char *suffix, char *id,
		      size_t id_len, FlRole *ret_role);

/* Responses sent by the router, by status code (100..599), for GET /metrics.
 * Fills counts[0..599]; returns the number of non-zero entries. */
#define FL_HTTP_STATUS_MAX 600
size_t fl_http_status_counts(FlHttpServer *s, uint64_t counts[FL_HTTP_STATUS_MAX]);

/* ---- Request helpers ---------------------------------------------- */

/* Path parameter by name, or NULL. */
const char *fl_http_param(const FlHttpReq *req, const char *name);
/* Query parameter (URL-decoded into buf), or NULL if absent. */
const char *fl_http_query(const FlHttpReq *req, const char *name, char *buf, size_t len);
/* Header value or NULL. */
const char *fl_http_header(const FlHttpReq *req, const char *name);

/*
 * Reads the body (at most max bytes, 0 = FL_HTTP_MAX_BODY). -EMSGSIZE when
 * larger (413). Caller frees *ret.
 */
int fl_http_read_body(FlHttpReq *req, size_t max, char **ret, size_t *ret_len);
/* Reads the body as one JSON object. -EINVAL (400) on bad JSON or a non-object. */
int fl_http_read_json(FlHttpReq *req, struct json_object **ret);

/* ---- JSON validation helpers (set req->err on failure) --------------- */

/* -EINVAL if obj has a key not in allowed (NULL-terminated). */
int fl_json_reject_unknown(const struct json_object *obj, const char *const allowed[],
			   FlError *err);
/* Typed getters: -EINVAL if present with the wrong type, or missing and required. */
int fl_json_get_string(struct json_object *obj, const char *key, bool required, size_t max_len,
		       const char **ret, FlError *err);
int fl_json_get_uint(struct json_object *obj, const char *key, bool required, uint64_t min,
		     uint64_t max, uint64_t *ret, FlError *err);
int fl_json_get_bool(struct json_object *obj, const char *key, bool required, bool *ret,
		     FlError *err);

/* ---- Responses ---------------------------------------------------- */

/* Sends body (borrowed; NULL = no body) with status. Returns status. */
int fl_http_send_json(FlHttpReq *req, int status, struct json_object *body);
/* Sends {"error": msg, "code": status, "details": details|null}. Returns status. */
int fl_http_send_error(FlHttpReq *req, int status, const char *msg, struct json_object *details);
/* Records a message for the error body and returns r (negative errno). */
__attribute__((format(printf, 3, 4))) int fl_http_fail(FlHttpReq *req, int r, const char *fmt,
						       ...);
/* The one errno -> HTTP status table. */
int fl_http_status_from_errno(int r);

#endif
