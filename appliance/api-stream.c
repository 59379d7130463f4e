// SPDX-License-Identifier: MIT
/*
 * api-stream: GET /v1/sandboxes/{id}/stream, the per-sandbox live event
 * stream over WebSocket (docs/websocket.md). Every event published on the
 * bus (events.h) for the sandbox is pushed to the client as one JSON text
 * frame, in publish order, as soon as it is published.
 *
 * Auth: the route needs the agent role. Browsers cannot set headers on a
 * WebSocket, so the token may come as `Authorization: Bearer T` or as the
 * `token` query parameter; both go through the router's authenticator
 * (fl_http_authenticate).
 *
 * DESIGN: civetweb sends upgrade requests to WebSocket handlers, not to the
 * router, so the handlers are installed by an FL_HTTP_START_HOOK; the
 * FL_ROUTE below only answers plain GETs (426) and keeps the route in the
 * route table (OpenAPI check, 405s). The connect handler (civetweb worker,
 * before the handshake) authenticates, checks the sandbox and subscribes,
 * so nothing published after the handshake can be missed. After the
 * handshake a pump thread per connection waits on the subscriber's eventfd
 * and writes frames (mg_websocket_write locks the connection, so it is safe
 * next to civetweb's own pong/close replies); the worker thread keeps
 * reading client frames. The close handler closes the subscriber, which
 * wakes the pump, and joins it: the pump never outlives the connection.
 * A slow client never slows a publisher: its bounded queue overflows, it
 * gets a "stream.dropped" frame with the count and then newer events.
 * Each stream holds a civetweb worker, so at most half of server.threads
 * streams run at once (others get 503) and the REST API keeps its workers.
 *
 * Test hook: when `fluid serve` runs with FLUID_TEST_EVENTS=1, a client
 * may send {"publish": {"type": T, "data": D}} to publish on its sandbox,
 * and sandbox ids starting with "test-" need no engine record. Integration
 * tests use it to check push delivery without booting a VM.
 */
#include <civetweb.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "engine.h"
#include "events.h"
#include "http.h"
#include "log.h"

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)

#define STREAM_PING_MS 20000
#define STREAM_MAX_CLIENT_FRAME 65536

typedef struct Stream {
	FlEventSub *sub;
	pthread_t pump;
	bool pump_started;
	bool test_mode;
	char sandbox_id[FL_HTTP_MAX_PARAM_LEN];
	struct json_object *hello; /* sent first by the pump */
} Stream;

static unsigned active_streams; /* atomic; one server per process */

static bool test_mode(void)
{
	const char *v = getenv("FLUID_TEST_EVENTS");
	return v && !strcmp(v, "1");
}

static void stream_free(Stream *st)
{
	if (!st)
		return;
	fl_events_unsubscribe(st->sub);
	json_object_put(st->hello);
	free(st);
}

static int ws_connect(const struct mg_connection *conn, void *cbdata)
{
	FlHttpServer *s = cbdata;
	FlApp *app = fl_http_app(s);
	char id[FL_HTTP_MAX_PARAM_LEN];
	FlRole role;
	int r = fl_http_ws_accept(conn, s, "/stream", id, sizeof(id), &role);
	if (r)
		return r;

	_cleanup_(json_object_putp) struct json_object *rec = NULL;
	bool test = test_mode() && !strncmp(id, "test-", 5);
	if (!test) {
		if (!app->engine)
			return fl_http_ws_refuse(conn, 503, "the sandbox engine is not running");
		FlError err = {0};
		r = fl_engine_get(app->engine, id, &rec, &err);
		if (r < 0)
			return fl_http_ws_refuse(conn, fl_http_status_from_errno(r),
				      err.msg[0] ? err.msg : strerror(-r));
	}

	unsigned limit = app->cfg->server.threads / 2 ? app->cfg->server.threads / 2 : 1;
	if (__atomic_add_fetch(&active_streams, 1, __ATOMIC_RELAXED) > limit) {
		__atomic_sub_fetch(&active_streams, 1, __ATOMIC_RELAXED);
		return fl_http_ws_refuse(conn, 503, "too many open streams");
	}
	Stream *st = calloc(1, sizeof(*st));
	if (!st) {
		__atomic_sub_fetch(&active_streams, 1, __ATOMIC_RELAXED);
		return fl_http_ws_refuse(conn, 500, "out of memory");
	}
	st->test_mode = test_mode();
	snprintf(st->sandbox_id, sizeof(st->sandbox_id), "%s", id);
	r = fl_events_subscribe(&(FlEventSubOpts){.sandbox_id = id}, &st->sub);
	if (r < 0) {
		stream_free(st);
		__atomic_sub_fetch(&active_streams, 1, __ATOMIC_RELAXED);
		return fl_http_ws_refuse(conn, fl_http_status_from_errno(r), "cannot subscribe");
	}
	/* The first frame: the sandbox record as it was when the subscription
	 * began, so a client needs no separate GET to know the starting state. */
	st->hello = json_object_new_object();
	struct json_object *d = json_object_new_object();
	json_object_object_add(st->hello, "seq", json_object_new_int(0));
	json_object_object_add(st->hello, "sandbox_id", json_object_new_string(id));
	json_object_object_add(st->hello, "type", json_object_new_string("stream.open"));
	json_object_object_add(d, "sandbox", rec ? json_object_get(rec) : NULL);
	json_object_object_add(d, "queue_events",
			       json_object_new_int(FL_EVENTS_DEFAULT_QUEUE_EVENTS));
	json_object_object_add(st->hello, "data", d);
	mg_set_user_connection_data(conn, st);
	return 0;
}

static int send_text(struct mg_connection *conn, const char *s, size_t len)
{
	return mg_websocket_write(conn, MG_WEBSOCKET_OPCODE_TEXT, s, len) > 0 ? 0 : -EPIPE;
}

static void *pump(void *p)
{
	struct mg_connection *conn = p;
	Stream *st = mg_get_user_connection_data(conn);
	size_t len;
	const char *h = json_object_to_json_string_length(st->hello, JSON_C_TO_STRING_PLAIN, &len);
	if (send_text(conn, h, len) < 0)
		return NULL;
	for (;;) {
		char *t = NULL;
		uint64_t dropped = 0;
		int r = fl_events_next(st->sub, 0, &t, &len, &dropped);
		if (r == 1) {
			r = send_text(conn, t, len);
			free(t);
			if (r < 0)
				return NULL;
			continue;
		}
		if (r == -ENOBUFS) {
			char msg[256];
			int n = snprintf(msg, sizeof(msg),
					 "{\"seq\":0,\"sandbox_id\":\"%s\",\"type\":\"stream.dropped\","
					 "\"data\":{\"dropped\":%llu}}",
					 st->sandbox_id, (unsigned long long)dropped);
			if (send_text(conn, msg, (size_t)n) < 0)
				return NULL;
			continue;
		}
		if (r < 0 && r != -EINTR)
			return NULL; /* -ESHUTDOWN: the connection is closing */
		struct pollfd pfd = {.fd = fl_events_fd(st->sub), .events = POLLIN};
		int k = poll(&pfd, 1, STREAM_PING_MS);
		if (k == 0 && mg_websocket_write(conn, MG_WEBSOCKET_OPCODE_PING, "", 0) <= 0)
			return NULL;
	}
}

static void ws_ready(struct mg_connection *conn, void *cbdata)
{
	Stream *st = mg_get_user_connection_data(conn);
	if (!st)
		return;
	int r = pthread_create(&st->pump, NULL, pump, conn);
	if (r != 0) {
		fl_log_warn("stream %s: cannot start a thread: %s", st->sandbox_id, strerror(r));
		mg_websocket_write(conn, MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, "\x03\xf3", 2);
		return;
	}
	st->pump_started = true;
}

/* Test hook only: {"publish": {"type": T, "data": D}}. */
static void test_publish(Stream *st, const char *data, size_t len)
{
	_cleanup_(json_object_putp) struct json_object *o = json_tokener_parse(data);
	struct json_object *p, *type = NULL, *d = NULL;
	(void)len;
	if (!o || !json_object_object_get_ex(o, "publish", &p) || !json_object_is_type(p, json_type_object))
		return;
	json_object_object_get_ex(p, "type", &type);
	json_object_object_get_ex(p, "data", &d);
	if (type && json_object_is_type(type, json_type_string))
		fl_events_publish(st->sandbox_id, json_object_get_string(type), d);
}

static int ws_data(struct mg_connection *conn, int bits, char *data, size_t len, void *cbdata)
{
	Stream *st = mg_get_user_connection_data(conn);
	int opcode = bits & 0x0f;
	if (opcode == MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE)
		return 0;
	if (len > STREAM_MAX_CLIENT_FRAME)
		return 0;
	if (st && st->test_mode && opcode == MG_WEBSOCKET_OPCODE_TEXT && len > 0) {
		/* civetweb's buffer is not NUL-terminated */
		_cleanup_free_ char *copy = strndup(data, len);
		if (copy)
			test_publish(st, copy, len);
	}
	return 1; /* client frames are otherwise ignored */
}

static void ws_close(const struct mg_connection *conn, void *cbdata)
{
	Stream *st = mg_get_user_connection_data(conn);
	if (!st)
		return;
	fl_events_close(st->sub);
	if (st->pump_started)
		pthread_join(st->pump, NULL);
	mg_set_user_connection_data(conn, NULL);
	stream_free(st);
	__atomic_sub_fetch(&active_streams, 1, __ATOMIC_RELAXED);
}

static void stream_install(FlHttpServer *s)
{
	mg_set_websocket_handler(fl_http_context(s), "/v1/sandboxes/*/stream$", ws_connect,
				 ws_ready, ws_data, ws_close, s);
}
FL_HTTP_START_HOOK(stream_install);

/* A plain GET (no Upgrade: websocket) lands here through the router. */
static int get_sandbox_stream(FlHttpReq *req)
{
	return fl_http_send_error(req, 426,
				  "this endpoint is a WebSocket: send Upgrade: websocket "
				  "(see docs/websocket.md)",
				  NULL);
}
FL_ROUTE(get_sandbox_stream, "GET", "/v1/sandboxes/{id}/stream", FL_ROLE_AGENT);
