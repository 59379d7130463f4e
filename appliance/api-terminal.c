// SPDX-License-Identifier: MIT
/*
 * api-terminal: GET /v1/sandboxes/{id}/terminal, a live terminal on the
 * sandbox's tmux over WebSocket (docs/terminal.md).
 *
 *   ws://HOST/v1/sandboxes/{id}/terminal?token=T&mode=watch|control&session=fluid&cols=80&rows=24
 *
 * The server makes sure the tmux session exists, then opens an agent pty
 * running `tmux attach-session -t =SESSION` (watch mode adds `-r`: a
 * read-only client; its size counts like any client's, tmux's
 * window-size "latest", so the watcher sees the window fit its screen).
 * Server -> client: binary frames with the terminal's output bytes, text
 * frames {"type":"ready"|"error"|"exit", ...}. Client -> server: text
 * frames {"type":"input","data":S} (control mode only) and
 * {"type":"resize","cols":N,"rows":N}.
 *
 * DESIGN: like api-stream.c, civetweb routes the upgrade to handlers
 * installed by an FL_HTTP_START_HOOK, and the FL_ROUTE only answers plain
 * GETs with 426. The connect handler (civetweb worker, before the
 * handshake) authenticates (header or ?token=, browsers cannot set
 * headers), validates the query, checks the sandbox is RUNNING and takes
 * a slot; refusals are ordinary HTTP errors. The ready handler (same
 * worker) ensures the session, opens the pty stream and starts the pump
 * thread; a failure there is an error frame and a close. The pump reads
 * the stream's output records and writes binary frames; mg_websocket_write
 * blocks while the client is slow, so the pump stops reading, the engine
 * pauses the agent op and the guest's pty fills: nothing buffers without
 * bound (tmux itself copes with a client that stalls). The worker reads
 * client frames and writes keystrokes into its own non-blocking copy of
 * the stream's input fd (a stalled input is an error after 10 s, it never
 * blocks the worker for good); resizes go through fl_stream_resize under
 * the lock that guards the stream pointer. The pump alone finishes the
 * stream (fl_stream_finish) when its output ends, sends {"type":"exit"}
 * and a close frame. The close handler cancels the stream (the agent hangs
 * up the pty: the tmux client exits, the session stays) and joins the
 * pump, so no pty, client or thread outlives the connection.
 * Each terminal holds a civetweb worker and a pump thread: at most a
 * quarter of server.threads terminals are open at once (others get 503).
 */
#include <civetweb.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api-policies.h"
#include "cleanup.h"
#include "engine-service.h"
#include "fsutil.h"
#include "log.h"
#include "tmux.h"

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)

#define TERM_PING_MS 20000
#define TERM_MAX_CLIENT_FRAME 65536   /* a client frame, and one input's data */
#define TERM_MAX_RECORD (256u * 1024) /* an output record from the engine */
#define TERM_INPUT_STALL_MS 10000
#define TERM_MAX_COLS 1000
#define TERM_MAX_ROWS 500

typedef struct Term {
	FlEngine *e;
	char sandbox_id[64];
	char session[FL_TMUX_NAME_MAX + 1];
	bool watch;
	unsigned cols, rows;
	pthread_mutex_t lock;
	FlStream *stream; /* guarded by lock; NULL once the pump finished it */
	int in_fd;	  /* the worker's non-blocking copy of the input; -1 in watch mode */
	pthread_t pump;
	bool pump_started;
	bool ready; /* set up (worker thread only) */
	struct mg_connection *conn;
} Term;

static unsigned active_terms; /* atomic; one server per process */

/* A query parameter into buf (def when absent); -EINVAL when too long. */
static int query_str(const char *qs, const char *name, char *buf, size_t len, const char *def)
{
	snprintf(buf, len, "%s", def);
	if (!qs)
		return 0;
	char tmp[64];
	int n = mg_get_var(qs, strlen(qs), name, tmp, sizeof(tmp));
	if (n == -1)
		return 0;
	if (n < 0 || (size_t)n >= len)
		return -EINVAL;
	memcpy(buf, tmp, (size_t)n + 1);
	return 0;
}

/* Strict decimal query parameter in [min, max]; def when absent. */
static int query_uint(const char *qs, const char *name, unsigned min, unsigned max, unsigned def,
		      unsigned *ret)
{
	char buf[16];
	*ret = def;
	if (!qs)
		return 0;
	int n = mg_get_var(qs, strlen(qs), name, buf, sizeof(buf));
	if (n == -1)
		return 0;
	if (n <= 0 || n > 6)
		return -EINVAL;
	unsigned v = 0;
	for (int i = 0; i < n; i++) {
		if (buf[i] < '0' || buf[i] > '9')
			return -EINVAL;
		v = v * 10 + (unsigned)(buf[i] - '0');
	}
	if (v < min || v > max)
		return -EINVAL;
	*ret = v;
	return 0;
}

static void term_free(Term *t)
{
	if (!t)
		return;
	if (t->in_fd >= 0)
		close(t->in_fd);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static int ws_connect(const struct mg_connection *conn, void *cbdata)
{
	FlHttpServer *s = cbdata;
	FlApp *app = fl_http_app(s);
	const struct mg_request_info *ri = mg_get_request_info(conn);
	const char *qs = ri->query_string;
	char id[FL_HTTP_MAX_PARAM_LEN], mode[16], session[FL_TMUX_NAME_MAX + 2];
	FlRole role;
	int r = fl_http_ws_accept(conn, s, "/terminal", id, sizeof(id), &role);
	if (r)
		return r;

	if (query_str(qs, "mode", mode, sizeof(mode), "watch") < 0 ||
	    (strcmp(mode, "watch") && strcmp(mode, "control")))
		return fl_http_ws_refuse(conn, 400, "mode must be watch or control");
	if (query_str(qs, "session", session, sizeof(session), FL_TMUX_DEFAULT_SESSION) < 0 ||
	    !fl_tmux_session_name_ok(session))
		return fl_http_ws_refuse(conn, 400, "invalid session: [A-Za-z0-9_-]{1,32}");
	unsigned cols, rows;
	if (query_uint(qs, "cols", 2, TERM_MAX_COLS, 80, &cols) < 0 ||
	    query_uint(qs, "rows", 2, TERM_MAX_ROWS, 24, &rows) < 0)
		return fl_http_ws_refuse(conn, 400, "cols must be 2-1000 and rows 2-500");

	FlEngine *e = app->engine;
	if (!e)
		return fl_http_ws_refuse(conn, 503, "the sandbox engine is not running");
	if (!fl_api_name_ok(id, 63) || strstr(id, ".."))
		return fl_http_ws_refuse(conn, 400, "invalid sandbox id");
	_cleanup_(json_object_putp) struct json_object *rec = NULL;
	struct json_object *v;
	FlError err = {0};
	r = fl_engine_get(e, id, &rec, &err);
	if (r < 0)
		return fl_http_ws_refuse(conn, fl_http_status_from_errno(r),
			      r == -ENOENT ? "no such sandbox"
			      : err.msg[0] ? err.msg
					   : strerror(-r));
	if (!json_object_object_get_ex(rec, "state", &v) ||
	    strcmp(json_object_get_string(v), "RUNNING"))
		return fl_http_ws_refuse(conn, 409, "the sandbox is not RUNNING");
	json_object_object_get_ex(rec, "id", &v);
	if (strcmp(mode, "watch")) { /* typing into the guest: the safety policy decides */
		FlHttpReq preq = {.app = app, .method = "GET", .path = ri->local_uri, .role = role};
		int pr = fl_api_policy_interactive(&preq, json_object_get_string(v), "terminal");
		json_object_put(preq.err_details);
		if (pr < 0)
			return fl_http_ws_refuse(conn, fl_http_status_from_errno(pr), preq.err.msg);
	}

	unsigned limit = app->cfg->server.threads / 4 ? app->cfg->server.threads / 4 : 1;
	if (__atomic_add_fetch(&active_terms, 1, __ATOMIC_RELAXED) > limit) {
		__atomic_sub_fetch(&active_terms, 1, __ATOMIC_RELAXED);
		return fl_http_ws_refuse(conn, 503, "too many open terminals");
	}
	Term *t = calloc(1, sizeof(*t));
	if (!t) {
		__atomic_sub_fetch(&active_terms, 1, __ATOMIC_RELAXED);
		return fl_http_ws_refuse(conn, 500, "out of memory");
	}
	pthread_mutex_init(&t->lock, NULL);
	t->e = e;
	t->in_fd = -1;
	snprintf(t->sandbox_id, sizeof(t->sandbox_id), "%s", v ? json_object_get_string(v) : id);
	snprintf(t->session, sizeof(t->session), "%s", session);
	t->watch = !strcmp(mode, "watch");
	t->cols = cols;
	t->rows = rows;
	mg_set_user_connection_data(conn, t);
	return 0;
}

static int send_json(struct mg_connection *conn, struct json_object *o)
{
	size_t len;
	const char *s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
	return mg_websocket_write(conn, MG_WEBSOCKET_OPCODE_TEXT, s, len) > 0 ? 0 : -EPIPE;
}

static int send_error(struct mg_connection *conn, int code, const char *msg)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	json_object_object_add(o, "type", json_object_new_string("error"));
	json_object_object_add(o, "code", json_object_new_int(code));
	json_object_object_add(o, "error", json_object_new_string(msg));
	return send_json(conn, o);
}

/* 1000 normal, 1011 server error (RFC 6455 7.4.1). */
static void send_close(struct mg_connection *conn, unsigned code)
{
	char b[2] = {(char)(code >> 8), (char)(code & 0xff)};
	mg_websocket_write(conn, MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, b, 2);
}

static void *pump(void *p)
{
	Term *t = p;
	struct mg_connection *conn = t->conn;
	bool client_gone = false;
	_cleanup_free_ char *buf = malloc(TERM_MAX_RECORD);
	int fd = fl_stream_out_fd(t->stream); /* valid until this thread finishes the stream */
	int r = buf ? 0 : -ENOMEM;

	while (r == 0) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int k = poll(&pfd, 1, TERM_PING_MS);
		if (k < 0 && errno == EINTR)
			continue;
		if (k == 0) {
			if (mg_websocket_write(conn, MG_WEBSOCKET_OPCODE_PING, "", 0) <= 0)
				client_gone = true;
			if (client_gone)
				break;
			continue;
		}
		unsigned char hdr[5];
		r = fl_read_full(fd, hdr, sizeof(hdr));
		if (r <= 0)
			break;
		uint32_t len = (uint32_t)hdr[1] | (uint32_t)hdr[2] << 8 | (uint32_t)hdr[3] << 16 |
			       (uint32_t)hdr[4] << 24;
		if (len > TERM_MAX_RECORD) {
			r = -EPROTO;
			break;
		}
		r = fl_read_full(fd, buf, len);
		if (r < 0 || (r == 0 && len)) {
			r = r < 0 ? r : -EPROTO;
			break;
		}
		r = 0;
		if (len && mg_websocket_write(conn, MG_WEBSOCKET_OPCODE_BINARY, buf, len) <= 0) {
			client_gone = true;
			break;
		}
	}
	pthread_mutex_lock(&t->lock);
	if (r < 0 || client_gone)
		fl_stream_cancel(t->stream);
	FlStream *st = TAKE_PTR(t->stream);
	pthread_mutex_unlock(&t->lock);
	/* finish closes the output's read end: output still coming is dropped */
	_cleanup_(json_object_putp) struct json_object *res = NULL;
	FlError err = {0};
	int fr = fl_stream_finish(st, &res, &err);
	if (client_gone)
		return NULL;
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	struct json_object *v;
	json_object_object_add(o, "type", json_object_new_string("exit"));
	json_object_object_add(o, "exit_code",
			       res && json_object_object_get_ex(res, "exit_code", &v) &&
					       json_object_is_type(v, json_type_int)
				       ? json_object_new_int(json_object_get_int(v))
				       : NULL);
	json_object_object_add(o, "signal",
			       res && json_object_object_get_ex(res, "signal", &v) &&
					       json_object_is_type(v, json_type_int)
				       ? json_object_new_int(json_object_get_int(v))
				       : NULL);
	if (fr < 0 || r < 0)
		json_object_object_add(
			o, "error",
			json_object_new_string(
				fr < 0 && err.msg[0] ? err.msg : strerror(-(fr < 0 ? fr : r))));
	send_json(conn, o);
	send_close(conn, fr < 0 || r < 0 ? 1011 : 1000);
	return NULL;
}

/* The window's size, creating the session when it does not exist. */
static int prepare_session(Term *t, unsigned *ret_w, unsigned *ret_h, FlError *err)
{
	char target[FL_TMUX_NAME_MAX + 4];
	snprintf(target, sizeof(target), "=%s:", t->session);
	const char *args[] = {
		"display-message", "-p", "-t", target, "#{window_width} #{window_height}", NULL};
	for (int attempt = 0;; attempt++) {
		FlTmuxResult res;
		int r = fl_tmux_run(t->e, t->sandbox_id, args, 256, &res, err);
		if (r < 0)
			return r;
		if (res.exit_code == 0) {
			unsigned w = 0, h = 0;
			if (sscanf(res.out, "%5u %5u", &w, &h) != 2)
				w = h = 0;
			*ret_w = w;
			*ret_h = h;
			fl_tmux_result_clear(&res);
			return 0;
		}
		if (attempt > 0 || !fl_tmux_missing_session(&res)) {
			r = fl_tmux_error(&res, err);
			fl_tmux_result_clear(&res);
			return r;
		}
		fl_tmux_result_clear(&res);
		r = fl_tmux_ensure_session(t->e, t->sandbox_id, t->session, NULL, NULL, err);
		if (r < 0)
			return r;
	}
}

static void ws_ready(struct mg_connection *conn, void *cbdata)
{
	Term *t = mg_get_user_connection_data(conn);
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	FlError err = {0};
	unsigned w = 0, h = 0;
	if (!t)
		return;
	t->conn = conn;
	int r = prepare_session(t, &w, &h, &err);
	if (r < 0)
		goto fail;

	char target[FL_TMUX_NAME_MAX + 2];
	snprintf(target, sizeof(target), "=%s", t->session);
	const char *argv_control[] = {"tmux", "attach-session", "-t", target, NULL};
	const char *argv_watch[] = {"tmux", "attach-session", "-r", "-t", target, NULL};
	FlExecSpec spec = {.argv = t->watch ? argv_watch : argv_control};
	FlStreamSpec ss = {
		.op = "pty", .exec = &spec, .input = true, .rows = t->rows, .cols = t->cols};
	FlStream *st = NULL;
	r = fl_engine_stream_open(t->e, t->sandbox_id, &ss, &st, &err);
	if (r < 0)
		goto fail;
	t->stream = st;
	if (!t->watch) {
		t->in_fd = fcntl(fl_stream_in_fd(st), F_DUPFD_CLOEXEC, 3);
		if (t->in_fd < 0 || fcntl(t->in_fd, F_SETFL, O_NONBLOCK) < 0) {
			r = fl_error_set(&err, -errno, "input: %m");
			goto fail_stream;
		}
	}
	o = json_object_new_object();
	json_object_object_add(o, "type", json_object_new_string("ready"));
	json_object_object_add(o, "sandbox_id", json_object_new_string(t->sandbox_id));
	json_object_object_add(o, "session", json_object_new_string(t->session));
	json_object_object_add(o, "mode", json_object_new_string(t->watch ? "watch" : "control"));
	json_object_object_add(o, "cols", json_object_new_int((int)t->cols));
	json_object_object_add(o, "rows", json_object_new_int((int)t->rows));
	json_object_object_add(o, "window_width", w ? json_object_new_int((int)w) : NULL);
	json_object_object_add(o, "window_height", h ? json_object_new_int((int)h) : NULL);
	send_json(conn, o);
	r = pthread_create(&t->pump, NULL, pump, t);
	if (r != 0) {
		r = fl_error_set(&err, -r, "cannot start a thread: %s", strerror(r));
		goto fail_stream;
	}
	t->pump_started = true;
	t->ready = true;
	return;

fail_stream:
	fl_stream_cancel(t->stream);
	t->stream = NULL;
	fl_stream_finish(st, NULL, NULL);
fail:
	fl_log_warn("terminal %s/%s: %s", t->sandbox_id, t->session, err.msg);
	send_error(conn, fl_http_status_from_errno(r), err.msg[0] ? err.msg : strerror(-r));
	send_close(conn, 1011);
}

/* Writes all of data into the pty, waiting at most TERM_INPUT_STALL_MS for room. */
static int write_input(Term *t, const char *data, size_t len)
{
	size_t off = 0;
	while (off < len) {
		ssize_t n = write(t->in_fd, data + off, len - off);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			struct pollfd pfd = {.fd = t->in_fd, .events = POLLOUT};
			int k = poll(&pfd, 1, TERM_INPUT_STALL_MS);
			if (k == 0)
				return -ETIMEDOUT;
			continue;
		}
		return -errno; /* EPIPE: the terminal ended (SIGPIPE is ignored by serve) */
	}
	return 0;
}

/* One client text frame. Returns 0 to keep the connection, -1 to close it. */
static int handle_message(struct mg_connection *conn, Term *t, const char *data, size_t len)
{
	static const char *const input_keys[] = {"type", "data", NULL};
	static const char *const resize_keys[] = {"type", "cols", "rows", NULL};
	json_tokener *tok = json_tokener_new_ex(8);
	if (!tok)
		return send_error(conn, 500, "out of memory"), -1;
	_cleanup_(json_object_putp) struct json_object *o =
		json_tokener_parse_ex(tok, data, (int)len);
	bool complete = json_tokener_get_error(tok) == json_tokener_success &&
			json_tokener_get_parse_end(tok) == len;
	json_tokener_free(tok);
	struct json_object *type;
	if (!o || !complete || !json_object_is_type(o, json_type_object) ||
	    !json_object_object_get_ex(o, "type", &type) ||
	    !json_object_is_type(type, json_type_string))
		return send_error(conn, 400, "messages are JSON objects with a \"type\""), 0;
	const char *ty = json_object_get_string(type);
	FlError err = {0};

	if (!strcmp(ty, "input")) {
		const char *d;
		if (fl_json_reject_unknown(o, input_keys, &err) < 0 ||
		    fl_json_get_string(o, "data", true, TERM_MAX_CLIENT_FRAME, &d, &err) < 0)
			return send_error(conn, 400, err.msg), 0;
		if (t->watch)
			return send_error(conn, 403, "this terminal is read-only (mode=watch)"), 0;
		int r = write_input(
			t, d,
			(size_t)json_object_get_string_len(json_object_object_get(o, "data")));
		if (r == -ETIMEDOUT) {
			send_error(conn, 504, "the terminal takes no input (stalled for 10 s)");
			send_close(conn, 1011);
			return -1;
		}
		return 0; /* EPIPE: the exit frame is on its way */
	}
	if (!strcmp(ty, "resize")) {
		uint64_t c, rw;
		if (fl_json_reject_unknown(o, resize_keys, &err) < 0 ||
		    fl_json_get_uint(o, "cols", true, 2, TERM_MAX_COLS, &c, &err) < 0 ||
		    fl_json_get_uint(o, "rows", true, 2, TERM_MAX_ROWS, &rw, &err) < 0)
			return send_error(conn, 400, err.msg), 0;
		int r = -ESRCH;
		pthread_mutex_lock(&t->lock);
		if (t->stream)
			r = fl_stream_resize(t->stream, (unsigned)rw, (unsigned)c);
		pthread_mutex_unlock(&t->lock);
		if (r < 0 && r != -ESRCH)
			return send_error(conn, fl_http_status_from_errno(r), "resize failed"), 0;
		t->cols = (unsigned)c;
		t->rows = (unsigned)rw;
		return 0;
	}
	return send_error(conn, 400, "unknown message type (input, resize)"), 0;
}

static int ws_data(struct mg_connection *conn, int bits, char *data, size_t len, void *cbdata)
{
	Term *t = mg_get_user_connection_data(conn);
	int opcode = bits & 0x0f;
	if (opcode == MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE)
		return 0;
	if (opcode == MG_WEBSOCKET_OPCODE_PING || opcode == MG_WEBSOCKET_OPCODE_PONG || !t)
		return 1;
	if (len > TERM_MAX_CLIENT_FRAME) {
		send_error(conn, 413, "frame larger than 64 KiB");
		send_close(conn, 1009);
		return 0;
	}
	if (opcode != MG_WEBSOCKET_OPCODE_TEXT || !(bits & 0x80)) {
		send_error(conn, 400, "send whole text frames with JSON messages");
		return 1;
	}
	if (!t->ready) /* setup failed */
		return 1;
	return handle_message(conn, t, data, len) < 0 ? 0 : 1;
}

static void ws_close(const struct mg_connection *conn, void *cbdata)
{
	Term *t = mg_get_user_connection_data(conn);
	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	if (t->stream)
		fl_stream_cancel(t->stream); /* the agent hangs up the pty: tmux's client exits */
	pthread_mutex_unlock(&t->lock);
	if (t->pump_started)
		pthread_join(t->pump, NULL);
	mg_set_user_connection_data(conn, NULL);
	term_free(t);
	__atomic_sub_fetch(&active_terms, 1, __ATOMIC_RELAXED);
}

static void terminal_install(FlHttpServer *s)
{
	mg_set_websocket_handler(fl_http_context(s), "/v1/sandboxes/*/terminal$", ws_connect,
				 ws_ready, ws_data, ws_close, s);
}
FL_HTTP_START_HOOK(terminal_install);

/* A plain GET (no Upgrade: websocket) lands here through the router. */
static int get_sandbox_terminal(FlHttpReq *req)
{
	return fl_http_send_error(req, 426,
				  "this endpoint is a WebSocket: send Upgrade: websocket "
				  "(see docs/terminal.md)",
				  NULL);
}
FL_ROUTE(get_sandbox_terminal, "GET", "/v1/sandboxes/{id}/terminal", FL_ROLE_AGENT);
