// SPDX-License-Identifier: MIT
/*
 * http: civetweb server, routing table and JSON helpers.
 *
 * DESIGN: civetweb owns the listening socket and a pool of worker threads
 * (server.threads). One catch-all civetweb handler runs the router: it
 * matches the request against the FL_ROUTE descriptors collected from the
 * "fl_routes" linker section, checks the route's role through the
 * installed authenticator, and calls the handler on the worker thread.
 * Handlers report failures as negative errno plus a message; this file is
 * the only place that turns an errno into an HTTP status, so every error
 * body has the same shape ({"error", "code", "details"}, API.md).
 * FlHttpServer is created and destroyed by the main thread; the route table
 * and the authenticator are fixed before the first request.
 */
#include <civetweb.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "http.h"
#include "log.h"

struct FlHttpServer {
	struct mg_context *ctx;
	FlApp *app;
	fl_http_auth_fn auth;
	void *auth_ud;
	uint64_t status_counts[FL_HTTP_STATUS_MAX]; /* atomic; GET /metrics */
};

/* Bounds of the linker set filled by FL_ROUTE (weak: there may be no routes). */
extern const FlRoute *const __start_fl_routes[] __attribute__((weak));
extern const FlRoute *const __stop_fl_routes[] __attribute__((weak));

size_t fl_http_routes(const FlRoute *const **ret)
{
	if (!__start_fl_routes || !__stop_fl_routes) {
		*ret = NULL;
		return 0;
	}
	*ret = __start_fl_routes;
	return (size_t)(__stop_fl_routes - __start_fl_routes);
}

extern const FlService *const __start_fl_service_set[] __attribute__((weak));
extern const FlService *const __stop_fl_service_set[] __attribute__((weak));

static int service_cmp(const void *a, const void *b)
{
	const FlService *x = *(const FlService *const *)a, *y = *(const FlService *const *)b;
	if (x->order != y->order)
		return x->order < y->order ? -1 : 1;
	return strcmp(x->name, y->name);
}

size_t fl_services(const FlService **out, size_t max)
{
	size_t n = 0;
	if (__start_fl_service_set && __stop_fl_service_set)
		n = (size_t)(__stop_fl_service_set - __start_fl_service_set);
	if (n > max)
		n = max;
	for (size_t i = 0; i < n; i++)
		out[i] = __start_fl_service_set[i];
	qsort(out, n, sizeof(out[0]), service_cmp);
	return n;
}

const char *fl_role_name(FlRole r)
{
	switch (r) {
	case FL_ROLE_NONE:
		return "none";
	case FL_ROLE_AGENT:
		return "agent";
	case FL_ROLE_REVIEWER:
		return "reviewer";
	case FL_ROLE_ADMIN:
		return "admin";
	}
	return "unknown";
}

/* ---- Routing ------------------------------------------------------- */

/* Matches one pattern; fills params. Returns true on a path match. */
static bool match_pattern(const char *pattern, const char *path, FlHttpReq *req)
{
	const char *p = pattern, *u = path;
	size_t np = 0;

	while (*p && *u) {
		if (*p != '/' || *u != '/')
			return false;
		p++, u++;
		const char *pe = strchrnul(p, '/'), *ue = strchrnul(u, '/');
		size_t pl = (size_t)(pe - p), ul = (size_t)(ue - u);
		if (pl >= 2 && p[0] == '{' && p[pl - 1] == '}') {
			if (ul == 0 || ul >= FL_HTTP_MAX_PARAM_LEN || np >= FL_HTTP_MAX_PARAMS)
				return false;
			if (req) {
				req->params[np].name = p + 1; /* terminated by '}' */
				memcpy(req->params[np].value, u, ul);
				req->params[np].value[ul] = 0;
			}
			np++;
		} else if (pl != ul || memcmp(p, u, pl)) {
			return false;
		}
		p = pe, u = ue;
	}
	if (*p || *u)
		return false;
	if (req)
		req->n_params = np;
	return true;
}

const FlRoute *fl_http_match(const char *method, const char *path, FlHttpReq *req,
			     int *ret_status)
{
	const FlRoute *const *routes;
	size_t n = fl_http_routes(&routes);
	bool path_matched = false;

	for (size_t i = 0; i < n; i++) {
		const FlRoute *rt = routes[i];
		if (!match_pattern(rt->pattern, path, NULL))
			continue;
		path_matched = true;
		if (strcmp(rt->method, method) != 0)
			continue;
		if (req)
			match_pattern(rt->pattern, path, req);
		return rt;
	}
	*ret_status = path_matched ? 405 : 404;
	return NULL;
}

const char *fl_http_param(const FlHttpReq *req, const char *name)
{
	size_t n = strlen(name);
	for (size_t i = 0; i < req->n_params; i++)
		if (!strncmp(req->params[i].name, name, n) && req->params[i].name[n] == '}')
			return req->params[i].value;
	return NULL;
}

const char *fl_http_query(const FlHttpReq *req, const char *name, char *buf, size_t len)
{
	if (!req->query)
		return NULL;
	int r = mg_get_var(req->query, strlen(req->query), name, buf, len);
	return r >= 0 ? buf : NULL;
}

const char *fl_http_header(const FlHttpReq *req, const char *name)
{
	return req->conn ? mg_get_header(req->conn, name) : NULL;
}

/* ---- Errors and responses ------------------------------------------ */

int fl_http_status_from_errno(int r)
{
	switch (-r) {
	case EINVAL:
	case EBADMSG:
	case EDOM:
	case ERANGE:
	case EPROTO:
	case EILSEQ:
		return 400;
	case ENOKEY:
	case EKEYREJECTED:
	case EKEYEXPIRED:
		return 401;
	case EACCES:
	case EPERM:
		return 403;
	case ENOENT:
	case ESRCH:
	case ENXIO:
		return 404;
	case EEXIST:
	case EBUSY:
	case EALREADY:
	case ENOTEMPTY:
	case EISCONN:
	case ESTALE:
		return 409;
	case EMSGSIZE:
	case E2BIG:
	case EFBIG:
		return 413;
	case EUSERS:
	case EMLINK:
		return 429;
	case EOPNOTSUPP:
	case ENOSYS:
		return 501;
	case ECONNREFUSED:
	case ECONNRESET:
	case EHOSTDOWN:
	case EHOSTUNREACH:
	case ENETDOWN:
	case ENOTCONN:
	case EPIPE:
	case EAGAIN:
	case ENODEV:
		return 503;
	case ETIMEDOUT:
	case ETIME:
		return 504;
	case ENOSPC:
	case EDQUOT:
		return 507;
	default:
		return 500;
	}
}

static int send_raw(FlHttpReq *req, int status, const char *ctype, const char *body, size_t len,
		    const char *extra_name, const char *extra_value)
{
	char clen[32];
	req->responded = true;
	if (!req->conn)
		return status;
	snprintf(clen, sizeof(clen), "%zu", len);
	mg_response_header_start(req->conn, status);
	if (ctype)
		mg_response_header_add(req->conn, "Content-Type", ctype, -1);
	mg_response_header_add(req->conn, "Content-Length", clen, -1);
	mg_response_header_add(req->conn, "Cache-Control", "no-store", -1);
	if (extra_name)
		mg_response_header_add(req->conn, extra_name, extra_value, -1);
	mg_response_header_send(req->conn);
	if (len && strcmp(req->method, "HEAD") != 0)
		mg_write(req->conn, body, len);
	return status;
}

int fl_http_send_json(FlHttpReq *req, int status, struct json_object *body)
{
	if (!body)
		return send_raw(req, status, NULL, "", 0, NULL, NULL);
	size_t len;
	const char *s = json_object_to_json_string_length(body, JSON_C_TO_STRING_PLAIN, &len);
	/* A trailing newline makes curl output readable; JSON parsers ignore it. */
	_cleanup_free_ char *buf = malloc(len + 2);
	if (!buf)
		return send_raw(req, 500, "application/json",
				"{\"error\":\"out of memory\",\"code\":500,\"details\":null}\n", 52,
				NULL, NULL);
	memcpy(buf, s, len);
	buf[len] = '\n';
	return send_raw(req, status, "application/json", buf, len + 1, NULL, NULL);
}

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)

static int send_error_ext(FlHttpReq *req, int status, const char *msg, struct json_object *details,
			  const char *extra_name, const char *extra_value)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	if (!o)
		return send_raw(req, 500, NULL, "", 0, NULL, NULL);
	json_object_object_add(o, "error", json_object_new_string(msg));
	json_object_object_add(o, "code", json_object_new_int(status));
	json_object_object_add(o, "details", details ? json_object_get(details) : NULL);
	size_t len;
	const char *s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
	_cleanup_free_ char *buf = malloc(len + 2);
	if (!buf)
		return send_raw(req, 500, NULL, "", 0, NULL, NULL);
	memcpy(buf, s, len);
	buf[len] = '\n';
	return send_raw(req, status, "application/json", buf, len + 1, extra_name, extra_value);
}

int fl_http_send_error(FlHttpReq *req, int status, const char *msg, struct json_object *details)
{
	return send_error_ext(req, status, msg, details, NULL, NULL);
}

int fl_http_fail(FlHttpReq *req, int r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(req->err.msg, sizeof(req->err.msg), fmt, ap);
	va_end(ap);
	req->err.code = r;
	return r;
}

/* ---- Bodies and JSON ------------------------------------------------- */

int fl_http_read_body(FlHttpReq *req, size_t max, char **ret, size_t *ret_len)
{
	const struct mg_request_info *ri = mg_get_request_info(req->conn);
	_cleanup_free_ char *buf = NULL;
	size_t len = 0, cap;

	if (max == 0)
		max = FL_HTTP_MAX_BODY;
	if (ri->content_length > (long long)max)
		return fl_http_fail(req, -EMSGSIZE, "request body larger than %zu bytes", max);
	cap = ri->content_length >= 0 ? (size_t)ri->content_length : 16384;
	buf = malloc(cap + 1);
	if (!buf)
		return fl_http_fail(req, -ENOMEM, "out of memory");
	for (;;) {
		if (len == cap) {
			if (ri->content_length >= 0)
				break;
			if (cap >= max + 1)
				return fl_http_fail(req, -EMSGSIZE,
						    "request body larger than %zu bytes", max);
			size_t ncap = cap * 2 > max + 1 ? max + 1 : cap * 2;
			char *n = realloc(buf, ncap + 1);
			if (!n)
				return fl_http_fail(req, -ENOMEM, "out of memory");
			buf = n;
			cap = ncap;
		}
		int k = mg_read(req->conn, buf + len, cap - len);
		if (k < 0)
			return fl_http_fail(req, -EIO, "cannot read the request body");
		if (k == 0)
			break;
		len += (size_t)k;
	}
	if (len > max)
		return fl_http_fail(req, -EMSGSIZE, "request body larger than %zu bytes", max);
	buf[len] = 0;
	*ret = TAKE_PTR(buf);
	if (ret_len)
		*ret_len = len;
	return 0;
}

int fl_http_read_json(FlHttpReq *req, struct json_object **ret)
{
	_cleanup_free_ char *body = NULL;
	size_t len;
	int r = fl_http_read_body(req, 0, &body, &len);
	if (r < 0)
		return r;
	if (len == 0)
		return fl_http_fail(req, -EINVAL, "a JSON object body is required");
	json_tokener *tok = json_tokener_new_ex(64);
	if (!tok)
		return fl_http_fail(req, -ENOMEM, "out of memory");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	struct json_object *o = json_tokener_parse_ex(tok, body, (int)len);
	enum json_tokener_error jerr = json_tokener_get_error(tok);
	size_t used = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (!o || jerr != json_tokener_success) {
		json_object_put(o);
		return fl_http_fail(req, -EINVAL, "invalid JSON: %s",
				    jerr == json_tokener_continue ? "unexpected end of input"
								  : json_tokener_error_desc(jerr));
	}
	for (size_t i = used; i < len; i++) {
		if (!isspace((unsigned char)body[i])) {
			json_object_put(o);
			return fl_http_fail(req, -EINVAL, "invalid JSON: trailing data");
		}
	}
	if (!json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return fl_http_fail(req, -EINVAL, "the body must be a JSON object");
	}
	*ret = o;
	return 0;
}

int fl_json_reject_unknown(const struct json_object *obj, const char *const allowed[],
			   FlError *err)
{
	json_object_object_foreach((struct json_object *)obj, key, val)
	{
		(void)val;
		bool ok = false;
		for (size_t i = 0; allowed[i]; i++)
			if (!strcmp(allowed[i], key)) {
				ok = true;
				break;
			}
		if (!ok)
			return fl_error_set(err, -EINVAL, "unknown field '%s'", key);
	}
	return 0;
}

int fl_json_get_string(struct json_object *obj, const char *key, bool required, size_t max_len,
		       const char **ret, FlError *err)
{
	struct json_object *v;
	if (!json_object_object_get_ex(obj, key, &v) || !v) {
		if (required)
			return fl_error_set(err, -EINVAL, "missing field '%s'", key);
		return 0;
	}
	if (!json_object_is_type(v, json_type_string))
		return fl_error_set(err, -EINVAL, "field '%s' must be a string", key);
	size_t n = (size_t)json_object_get_string_len(v);
	const char *s = json_object_get_string(v);
	if (strlen(s) != n)
		return fl_error_set(err, -EINVAL, "field '%s' contains a NUL byte", key);
	if (max_len && n > max_len)
		return fl_error_set(err, -EINVAL, "field '%s' is longer than %zu bytes", key, max_len);
	*ret = s;
	return 1;
}

int fl_json_get_uint(struct json_object *obj, const char *key, bool required, uint64_t min,
		     uint64_t max, uint64_t *ret, FlError *err)
{
	struct json_object *v;
	if (!json_object_object_get_ex(obj, key, &v) || !v) {
		if (required)
			return fl_error_set(err, -EINVAL, "missing field '%s'", key);
		return 0;
	}
	if (!json_object_is_type(v, json_type_int))
		return fl_error_set(err, -EINVAL, "field '%s' must be an integer", key);
	errno = 0;
	int64_t i = json_object_get_int64(v);
	uint64_t u = json_object_get_uint64(v);
	if (i < 0 && u == 0)
		return fl_error_set(err, -EINVAL, "field '%s' must not be negative", key);
	if (u < min || u > max)
		return fl_error_set(err, -EINVAL, "field '%s' must be in %llu..%llu", key,
				    (unsigned long long)min, (unsigned long long)max);
	*ret = u;
	return 1;
}

int fl_json_get_bool(struct json_object *obj, const char *key, bool required, bool *ret,
		     FlError *err)
{
	struct json_object *v;
	if (!json_object_object_get_ex(obj, key, &v) || !v) {
		if (required)
			return fl_error_set(err, -EINVAL, "missing field '%s'", key);
		return 0;
	}
	if (!json_object_is_type(v, json_type_boolean))
		return fl_error_set(err, -EINVAL, "field '%s' must be true or false", key);
	*ret = json_object_get_boolean(v);
	return 1;
}

/* ---- Dispatch ---------------------------------------------------------- */

static bool is_api_path(const char *path)
{
	return !strncmp(path, "/v1/", 4) || !strcmp(path, "/v1") || !strncmp(path, "/api/", 5) ||
	       !strcmp(path, "/metrics");
}

static int dispatch(struct mg_connection *conn, void *cbdata)
{
	FlHttpServer *s = cbdata;
	const struct mg_request_info *ri = mg_get_request_info(conn);
	FlHttpReq *req = calloc(1, sizeof(*req));
	int status, r;

	if (!req) {
		mg_send_http_error(conn, 500, "out of memory");
		return 500;
	}
	req->conn = conn;
	req->app = s->app;
	req->method = ri->request_method;
	req->path = ri->local_uri ? ri->local_uri : "/";
	req->query = ri->query_string;

	const FlRoute *rt = fl_http_match(req->method, req->path, req, &status);
	if (!rt && !strcmp(req->method, "HEAD"))
		rt = fl_http_match("GET", req->path, req, &status);
	if (!rt) {
		if (status == 404 && !is_api_path(req->path) && s->app->cfg->server.webui_dir) {
			free(req);
			return 0; /* civetweb serves the static UI */
		}
		if (status == 405) {
			char allow[128] = "";
			const FlRoute *const *routes;
			size_t n = fl_http_routes(&routes);
			for (size_t i = 0; i < n; i++) {
				if (!match_pattern(routes[i]->pattern, req->path, NULL) ||
				    strstr(allow, routes[i]->method))
					continue;
				size_t l = strlen(allow);
				snprintf(allow + l, sizeof(allow) - l, "%s%s", l ? ", " : "",
					 routes[i]->method);
			}
			send_error_ext(req, 405, "method not allowed", NULL, "Allow", allow);
			status = 405;
		} else {
			status = fl_http_send_error(req, 404, "no such endpoint", NULL);
		}
		goto done;
	}
	fl_http_auth_fn auth = s->auth ? s->auth : s->app->auth;
	void *auth_ud = s->auth ? s->auth_ud : s->app->auth_ud;
	if (rt->role > FL_ROLE_NONE && auth) {
		const char *h = mg_get_header(conn, "Authorization");
		const char *token = NULL;
		FlRole role = FL_ROLE_NONE;
		if (h && !strncasecmp(h, "Bearer ", 7))
			token = h + 7;
		r = auth(auth_ud, token, &role);
		if (r < 0 || !token) {
			status = send_error_ext(req, 401,
						token ? "invalid token" : "missing bearer token", NULL,
						"WWW-Authenticate", "Bearer");
			goto done;
		}
		if (role < rt->role) {
			char msg[128];
			snprintf(msg, sizeof(msg), "this needs the %s role", fl_role_name(rt->role));
			status = fl_http_send_error(req, 403, msg, NULL);
			goto done;
		}
		req->role = role;
	} else {
		req->role = auth ? FL_ROLE_NONE : FL_ROLE_ADMIN;
	}

	if (s->app->request_begin && (r = s->app->request_begin(s->app, req)) < 0) {
		status = fl_http_send_error(req, fl_http_status_from_errno(r),
					    req->err.msg[0] ? req->err.msg : strerror(-r), NULL);
		goto done;
	}
	r = rt->handler(req);
	if (r < 0) {
		status = fl_http_status_from_errno(r);
		if (!req->responded)
			fl_http_send_error(req, status,
					   req->err.msg[0] ? req->err.msg : strerror(-r),
					   req->err_details);
		if (status >= 500)
			fl_log_warn("%s %s: %d %s", req->method, req->path, status,
				    req->err.msg[0] ? req->err.msg : strerror(-r));
	} else {
		status = r;
	}
done:
	if (s->app->request_end)
		s->app->request_end(s->app, req, status);
	if (status >= 100 && status < FL_HTTP_STATUS_MAX)
		__atomic_add_fetch(&s->status_counts[status], 1, __ATOMIC_RELAXED);
	fl_log_debug("%s %s -> %d", req->method, req->path, status);
	json_object_put(req->err_details);
	free(req);
	return status > 0 && status < 1000 ? status : 500;
}

static int log_message_cb(const struct mg_connection *conn, const char *message)
{
	fl_log_warn("http: %s", message);
	return 1;
}

void fl_http_set_auth(FlHttpServer *s, fl_http_auth_fn fn, void *ud)
{
	s->auth = fn;
	s->auth_ud = ud;
}

struct mg_context *fl_http_context(FlHttpServer *s) { return s->ctx; }

/* ---- Hooks for WebSockets and metrics (see http.h) ---------------------- */

extern const fl_http_start_hook_fn __start_fl_http_start_hooks[] __attribute__((weak));
extern const fl_http_start_hook_fn __stop_fl_http_start_hooks[] __attribute__((weak));

static void run_start_hooks(FlHttpServer *s)
{
	if (!__start_fl_http_start_hooks || !__stop_fl_http_start_hooks)
		return;
	for (const fl_http_start_hook_fn *h = __start_fl_http_start_hooks;
	     h < __stop_fl_http_start_hooks; h++)
		(*h)(s);
}

FlHttpServer *fl_http_server_of(const struct mg_connection *conn)
{
	return mg_get_user_data(mg_get_context(conn));
}

FlApp *fl_http_app(FlHttpServer *s) { return s->app; }

int fl_http_authenticate(FlHttpServer *s, const char *token, FlRole *ret_role)
{
	fl_http_auth_fn auth = s->auth ? s->auth : s->app->auth;
	void *auth_ud = s->auth ? s->auth_ud : s->app->auth_ud;
	FlRole role = FL_ROLE_NONE;
	if (!auth) {
		*ret_role = FL_ROLE_ADMIN;
		return 0;
	}
	if (!token || !*token)
		return -ENOKEY;
	if (auth(auth_ud, token, &role) < 0)
		return -EKEYREJECTED;
	*ret_role = role;
	return 0;
}

int fl_http_ws_refuse(const struct mg_connection *cconn, int status, const char *msg)
{
	struct mg_connection *conn = (struct mg_connection *)cconn;
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	if (!o)
		return 1;
	json_object_object_add(o, "error", json_object_new_string(msg));
	json_object_object_add(o, "code", json_object_new_int(status));
	json_object_object_add(o, "details", NULL);
	size_t len;
	const char *body = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
	const char *reason = mg_get_response_code_text(conn, status);
	mg_printf(conn,
		  "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
		  "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n",
		  status, reason ? reason : "Error", len + 1,
		  status == 401 ? "WWW-Authenticate: Bearer\r\n" : "");
	mg_write(conn, body, len);
	mg_write(conn, "\n", 1);
	return 1;
}

int fl_http_ws_accept(const struct mg_connection *conn, FlHttpServer *s, const char *suffix, char *id,
		      size_t id_len, FlRole *ret_role)
{
	static const char pre[] = "/v1/sandboxes/";
	const struct mg_request_info *ri = mg_get_request_info(conn);
	const char *uri = ri->local_uri ? ri->local_uri : "";
	size_t n = strlen(uri), pl = sizeof(pre) - 1, sl = strlen(suffix);
	if (n <= pl + sl || strncmp(uri, pre, pl) || strcmp(uri + n - sl, suffix))
		return fl_http_ws_refuse(conn, 404, "no such endpoint");
	size_t il = n - pl - sl;
	if (il >= id_len || memchr(uri + pl, '/', il))
		return fl_http_ws_refuse(conn, 404, "no such endpoint");
	memcpy(id, uri + pl, il);
	id[il] = 0;

	char token[512];
	const char *tok = NULL, *h = mg_get_header(conn, "Authorization"), *qs = ri->query_string;
	if (h && !strncasecmp(h, "Bearer ", 7))
		tok = h + 7;
	else if (qs && mg_get_var(qs, strlen(qs), "token", token, sizeof(token)) >= 0)
		tok = token;
	int r = fl_http_authenticate(s, tok, ret_role);
	if (r == -ENOKEY)
		return fl_http_ws_refuse(conn, 401, "missing bearer token");
	if (r < 0)
		return fl_http_ws_refuse(conn, 401, "invalid token");
	if (*ret_role < FL_ROLE_AGENT)
		return fl_http_ws_refuse(conn, 403, "this needs the agent role");
	return 0;
}

size_t fl_http_status_counts(FlHttpServer *s, uint64_t counts[FL_HTTP_STATUS_MAX])
{
	size_t n = 0;
	for (size_t i = 0; i < FL_HTTP_STATUS_MAX; i++) {
		counts[i] = __atomic_load_n(&s->status_counts[i], __ATOMIC_RELAXED);
		n += counts[i] != 0;
	}
	return n;
}

int fl_http_start(FlApp *app, FlHttpServer **ret, FlError *err)
{
	const FlConfig *cfg = app->cfg;
	char threads[16], host[256];
	unsigned port;
	const char *opts[16];
	size_t n = 0;

	if (fl_config_parse_listen(cfg->server.listen, host, sizeof(host), &port) < 0)
		return fl_error_set(err, -EINVAL, "server.listen: '%s' is not HOST:PORT",
				    cfg->server.listen);
	FlHttpServer *s = calloc(1, sizeof(*s));
	if (!s)
		return fl_error_set(err, -ENOMEM, "out of memory");
	s->app = app;
	snprintf(threads, sizeof(threads), "%u", cfg->server.threads);
	opts[n++] = "listening_ports";
	opts[n++] = cfg->server.listen;
	opts[n++] = "num_threads";
	opts[n++] = threads;
	opts[n++] = "request_timeout_ms";
	opts[n++] = "60000";
	opts[n++] = "enable_keep_alive";
	opts[n++] = "yes";
	opts[n++] = "enable_directory_listing";
	opts[n++] = "no";
	if (cfg->server.webui_dir) {
		opts[n++] = "document_root";
		opts[n++] = cfg->server.webui_dir;
	}
	opts[n] = NULL;

	struct mg_callbacks cb = {.log_message = log_message_cb};
	mg_init_library(0);
	s->ctx = mg_start(&cb, s, opts);
	if (!s->ctx) {
		free(s);
		mg_exit_library();
		return fl_error_set(err, -EADDRINUSE,
				    "cannot listen on %s (address in use or not available)",
				    cfg->server.listen);
	}
	mg_set_request_handler(s->ctx, "/", dispatch, s);
	run_start_hooks(s);

	struct mg_server_port ports[4];
	int np = mg_get_server_ports(s->ctx, 4, ports);
	if (np > 0)
		snprintf(app->listen, sizeof(app->listen), "%s:%d", host, ports[0].port);
	else
		snprintf(app->listen, sizeof(app->listen), "%s", cfg->server.listen);
	*ret = s;
	return 0;
}

extern const fl_http_stop_hook_fn __start_fl_http_stop_hooks[] __attribute__((weak));
extern const fl_http_stop_hook_fn __stop_fl_http_stop_hooks[] __attribute__((weak));

void fl_http_stop(FlHttpServer *s)
{
	if (!s)
		return;
	if (__start_fl_http_stop_hooks && __stop_fl_http_stop_hooks)
		for (const fl_http_stop_hook_fn *h = __start_fl_http_stop_hooks;
		     h < __stop_fl_http_stop_hooks; h++)
			(*h)(s);
	mg_stop(s->ctx);
	mg_exit_library();
	free(s);
}
