// SPDX-License-Identifier: MIT
/*
 * libagentc: the host side of the fluid agent protocol (see agent-client.h
 * and docs/agent-protocol.md). One AgentClient per connection to a guest
 * agent; requests are AgentOps with flow-controlled streams.
 *
 * DESIGN: single-threaded and loop-agnostic like libqmp. All input from the
 * guest is checked before it is acted on: frames are capped by the framer;
 * every frame must name a request id we issued; data must fit the window we
 * granted and arrive on an output stream that is still open; acks may not
 * exceed what we sent. Any violation kills the connection with -EPROTO.
 * Frames for ops the host already finished (timed out, cancelled) are
 * dropped, since the agent may still have had them in flight. Memory held
 * per connection: one frame in the framer plus an output queue bounded by
 * max_outq; nothing is buffered per stream (output goes straight to the
 * callback, and credit goes back only after it returns).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "agent-client.h"
#include "agent-proto.h"
#include "cleanup.h"

#define HELLO_RESEND_MS 2000

enum state { ST_CONNECTING, ST_HELLO, ST_READY, ST_DEAD };

struct AgentOp {
	AgentOp *next;
	AgentClient *c;
	uint64_t id;
	AgentOpHandlers h;
	void *ud;
	uint64_t deadline;
	bool input;       /* has an input stream */
	bool in_closed;
	bool want_write;  /* a write was cut short: call on_writable */
	uint64_t in_sent, in_acked;
	uint64_t out_recv[3], out_acked[3];
	bool out_eof[3];
	bool paused;
	bool internal;    /* our own cancel requests: no handlers */
};

struct AgentClient {
	int fd;
	enum state state;
	AgentClientOptions o;
	uint8_t nonce[AGENT_NONCE_LEN];
	AgentFramer *fr;
	AgentBuf outq;
	AgentOp *ops;
	unsigned nops;
	uint64_t next_id;
	struct json_object *hello;
	uint64_t agent_window;
	size_t agent_max_payload;
	uint64_t hello_deadline, hello_resend;
	bool have_sync;
	int dead_r;
	FlError dead_err;
	bool state_reported;
};

uint64_t agent_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int queue_frame(AgentClient *c, struct json_object *hdr, const void *p, size_t plen)
{
	int r = agent_frame_append(&c->outq, hdr, p, plen);
	json_object_put(hdr);
	return r;
}

static int flush(AgentClient *c)
{
	while (c->outq.len > 0 && c->fd >= 0 && c->state != ST_CONNECTING) {
		ssize_t w = send(c->fd, agent_buf_head(&c->outq), c->outq.len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == ENOTSOCK)
			w = write(c->fd, agent_buf_head(&c->outq), c->outq.len);
		if (w < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return 0;
			return -errno;
		}
		agent_buf_consume(&c->outq, (size_t)w);
	}
	return 0;
}

static void op_unlink(AgentOp *op)
{
	AgentClient *c = op->c;
	for (AgentOp **p = &c->ops; *p; p = &(*p)->next)
		if (*p == op) {
			*p = op->next;
			c->nops--;
			return;
		}
}

static void op_complete(AgentOp *op, int r, struct json_object *res, const FlError *err)
{
	op_unlink(op);
	if (op->h.on_done)
		op->h.on_done(op, r, res, err, op->ud);
	free(op);
}

/* Ends the connection: every op completes with r, then on_state(r). */
static void die(AgentClient *c, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void die(AgentClient *c, int r, const char *fmt, ...)
{
	if (c->state == ST_DEAD)
		return;
	c->state = ST_DEAD;
	c->dead_r = r;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->dead_err.msg, sizeof(c->dead_err.msg), fmt, ap);
	va_end(ap);
	c->dead_err.code = r;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	agent_buf_free(&c->outq);
	while (c->ops)
		op_complete(c->ops, r, NULL, &c->dead_err);
	if (c->o.on_state)
		c->o.on_state(c, r, &c->dead_err, c->o.userdata);
}

static int send_hello(AgentClient *c)
{
	char hex[2 * AGENT_NONCE_LEN + 1];
	agent_hex(c->nonce, AGENT_NONCE_LEN, hex);
	struct json_object *h = json_object_new_object();
	json_object_object_add(h, "type", json_object_new_string("hello"));
	json_object_object_add(h, "nonce", json_object_new_string(hex));
	json_object_object_add(h, "protocol", json_object_new_int(AGENT_PROTOCOL));
	json_object_object_add(h, "window", json_object_new_int64((int64_t)c->o.window));
	json_object_object_add(h, "max_payload", json_object_new_int64((int64_t)c->o.max_payload));
	json_object_object_add(h, "max_header", json_object_new_int64((int64_t)c->o.max_header));
	int r = agent_sync_append(&c->outq, c->nonce);
	if (r < 0) {
		json_object_put(h);
		return r;
	}
	c->hello_resend = agent_now_ms() + HELLO_RESEND_MS;
	return queue_frame(c, h, NULL, 0);
}

static int client_init(AgentClient **ret, const AgentClientOptions *opts, FlError *err)
{
	AgentClient *c = calloc(1, sizeof(*c));
	if (!c)
		return fl_error_set(err, -ENOMEM, "out of memory");
	if (opts)
		c->o = *opts;
	if (!c->o.max_header)
		c->o.max_header = 1024 * 1024;
	if (!c->o.max_payload)
		c->o.max_payload = AGENT_DEFAULT_MAX_PAYLOAD;
	if (!c->o.window)
		c->o.window = AGENT_DEFAULT_WINDOW;
	if (c->o.window < 4096)
		c->o.window = 4096;
	if (!c->o.max_ops)
		c->o.max_ops = 64;
	if (!c->o.max_outq)
		c->o.max_outq = 2 * 1024 * 1024;
	c->fd = -1;
	c->next_id = 1;
	c->agent_window = 64 * 1024;
	c->agent_max_payload = AGENT_CHUNK;
	if (c->o.test_nonce)
		memcpy(c->nonce, c->o.test_nonce, AGENT_NONCE_LEN);
	else if (getrandom(c->nonce, sizeof(c->nonce), 0) != sizeof(c->nonce)) {
		free(c);
		return fl_error_set(err, -EIO, "getrandom failed");
	}
	c->fr = agent_framer_new(c->o.max_header, c->o.max_payload);
	if (!c->fr) {
		free(c);
		return fl_error_set(err, -ENOMEM, "out of memory");
	}
	agent_framer_hunt(c->fr, c->nonce);
	c->o.test_nonce = NULL;
	*ret = c;
	return 0;
}

static void start_hello(AgentClient *c)
{
	c->state = ST_HELLO;
	if (c->o.hello_timeout_ms)
		c->hello_deadline = agent_now_ms() + c->o.hello_timeout_ms;
	send_hello(c);
}

int agent_client_new_fd(int fd, const AgentClientOptions *opts, AgentClient **ret, FlError *err)
{
	AgentClient *c;
	int r = client_init(&c, opts, err);
	if (r < 0) {
		close(fd);
		return r;
	}
	c->fd = fd;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	start_hello(c);
	*ret = c;
	return 0;
}

int agent_client_new(const char *socket_path, const AgentClientOptions *opts, AgentClient **ret,
		     FlError *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(socket_path) >= sizeof(sa.sun_path))
		return fl_error_set(err, -ENAMETOOLONG, "socket path too long: %s", socket_path);
	strcpy(sa.sun_path, socket_path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return fl_error_set(err, -errno, "socket: %s", strerror(errno));
	bool pending = false;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno != EINPROGRESS && errno != EAGAIN) {
			int r = -errno;
			close(fd);
			return fl_error_set(err, r, "connect %s: %s", socket_path, strerror(-r));
		}
		pending = true;
	}
	AgentClient *c;
	int r = client_init(&c, opts, err);
	if (r < 0) {
		close(fd);
		return r;
	}
	c->fd = fd;
	if (pending)
		c->state = ST_CONNECTING;
	else
		start_hello(c);
	*ret = c;
	return 0;
}

void agent_client_free(AgentClient *c)
{
	if (!c)
		return;
	c->o.on_state = NULL;
	if (c->state != ST_DEAD) {
		c->state = ST_DEAD;
		if (c->fd >= 0)
			close(c->fd);
		c->fd = -1;
		FlError e = {.code = -ECANCELED};
		snprintf(e.msg, sizeof(e.msg), "agent client closed");
		while (c->ops)
			op_complete(c->ops, -ECANCELED, NULL, &e);
	}
	agent_buf_free(&c->outq);
	agent_framer_free(c->fr);
	json_object_put(c->hello);
	free(c);
}

int agent_client_fd(const AgentClient *c)
{
	return c->fd;
}

short agent_client_poll_events(const AgentClient *c)
{
	if (c->state == ST_DEAD)
		return 0;
	if (c->state == ST_CONNECTING)
		return POLLOUT;
	return POLLIN | (c->outq.len ? POLLOUT : 0);
}

int64_t agent_client_next_deadline(const AgentClient *c)
{
	int64_t d = -1;
	if (c->state == ST_DEAD)
		return -1;
	if (c->state == ST_HELLO) {
		d = (int64_t)c->hello_resend;
		if (c->hello_deadline && (int64_t)c->hello_deadline < d)
			d = (int64_t)c->hello_deadline;
	}
	for (AgentOp *op = c->ops; op; op = op->next)
		if (op->deadline && (d < 0 || (int64_t)op->deadline < d))
			d = (int64_t)op->deadline;
	return d;
}

bool agent_client_is_ready(const AgentClient *c)
{
	return c->state == ST_READY;
}

struct json_object *agent_client_hello(const AgentClient *c)
{
	return c->state == ST_READY ? c->hello : NULL;
}

static AgentOp *op_find(AgentClient *c, uint64_t id)
{
	for (AgentOp *op = c->ops; op; op = op->next)
		if (op->id == id)
			return op;
	return NULL;
}

static void send_ack(AgentOp *op, int fd)
{
	uint64_t n = op->out_recv[fd] - op->out_acked[fd];
	if (!n)
		return;
	struct json_object *h = json_object_new_object();
	json_object_object_add(h, "type", json_object_new_string("ack"));
	json_object_object_add(h, "id", json_object_new_int64((int64_t)op->id));
	json_object_object_add(h, "fd", json_object_new_int(fd));
	json_object_object_add(h, "bytes", json_object_new_int64((int64_t)n));
	if (queue_frame(op->c, h, NULL, 0) == 0)
		op->out_acked[fd] = op->out_recv[fd];
}

/* A request frame to the agent; no callbacks. */
static int queue_request(AgentClient *c, uint64_t id, const char *opname, struct json_object *args)
{
	struct json_object *h = args ? args : json_object_new_object();
	json_object_object_add(h, "type", json_object_new_string("req"));
	json_object_object_add(h, "id", json_object_new_int64((int64_t)id));
	json_object_object_add(h, "op", json_object_new_string(opname));
	return queue_frame(c, h, NULL, 0);
}

static void send_cancel(AgentClient *c, uint64_t target)
{
	if (c->state != ST_READY)
		return;
	AgentOp *op = calloc(1, sizeof(*op));
	if (!op)
		return;
	op->c = c;
	op->id = c->next_id++;
	op->internal = true;
	op->deadline = agent_now_ms() + 30000;
	struct json_object *a = json_object_new_object();
	json_object_object_add(a, "target", json_object_new_int64((int64_t)target));
	if (queue_request(c, op->id, "cancel", a) < 0) {
		free(op);
		return;
	}
	op->next = c->ops;
	c->ops = op;
	c->nops++;
}

/* ---- incoming frames ---------------------------------------------------- */

static int proto_err(AgentClient *c, const char *what)
{
	die(c, -EPROTO, "agent protocol violation: %s", what);
	return -EPROTO;
}

static int on_sync(void *userdata, const uint8_t nonce[AGENT_NONCE_LEN])
{
	AgentClient *c = userdata;
	if (memcmp(nonce, c->nonce, AGENT_NONCE_LEN) != 0)
		return proto_err(c, "sync frame with a foreign nonce");
	c->have_sync = true;
	return 0;
}

static int handle_hello(AgentClient *c, struct json_object *hdr)
{
	uint8_t n[AGENT_NONCE_LEN];
	if (agent_unhex(agent_json_get_str(hdr, "nonce"), n, sizeof(n)) < 0 ||
	    memcmp(n, c->nonce, sizeof(n)) != 0)
		return proto_err(c, "hello with a wrong nonce");
	if (!c->have_sync)
		return proto_err(c, "hello without sync");
	c->have_sync = false;
	if (c->state == ST_READY)
		return 0; /* answer to a resent hello */
	int64_t proto;
	if (agent_json_get_i64(hdr, "protocol", &proto) < 0 || proto != AGENT_PROTOCOL)
		return proto_err(c, "unsupported protocol version");
	uint64_t w = 0, mp = 0;
	if (agent_json_get_u64(hdr, "window", &w) == 0 && w >= 4096 && w <= 64u * 1024 * 1024)
		c->agent_window = w;
	if (agent_json_get_u64(hdr, "max_payload", &mp) == 0 && mp >= 4096) {
		c->agent_max_payload = mp < AGENT_CHUNK ? (size_t)mp : AGENT_CHUNK;
	}
	c->hello = json_object_get(hdr);
	c->state = ST_READY;
	c->hello_deadline = 0;
	if (c->o.on_state && !c->state_reported) {
		c->state_reported = true;
		c->o.on_state(c, 0, NULL, c->o.userdata);
	}
	return 0;
}

static int handle_data(AgentClient *c, AgentOp *op, struct json_object *hdr, const uint8_t *p,
		       size_t plen)
{
	int64_t fd;
	if (agent_json_get_i64(hdr, "fd", &fd) < 0 || (fd != 1 && fd != 2))
		return proto_err(c, "data on a bad stream");
	bool eof = agent_json_get_bool(hdr, "eof");
	if (!op)
		return 0; /* finished on our side */
	if (op->internal || op->out_eof[fd])
		return proto_err(c, "data after end of stream");
	if (plen > c->o.window || op->out_recv[fd] + plen - op->out_acked[fd] > c->o.window)
		return proto_err(c, "data beyond the flow-control window");
	op->out_recv[fd] += plen;
	if (eof)
		op->out_eof[fd] = true;
	uint64_t id = op->id;
	if (plen && op->h.on_data)
		op->h.on_data(op, (int)fd, p, plen, op->ud);
	if (c->state == ST_DEAD)
		return -ECANCELED;
	op = op_find(c, id); /* the callback may have cancelled it */
	if (!op)
		return 0;
	if (eof && op->h.on_data)
		op->h.on_data(op, (int)fd, NULL, 0, op->ud);
	if (c->state == ST_DEAD)
		return -ECANCELED;
	op = op_find(c, id);
	if (op && !op->paused && !op->out_eof[fd] &&
	    op->out_recv[fd] - op->out_acked[fd] >= c->o.window / 4)
		send_ack(op, (int)fd);
	return 0;
}

static int on_frame(void *userdata, struct json_object *hdr, const uint8_t *p, size_t plen)
{
	AgentClient *c = userdata;
	const char *type = agent_json_get_str(hdr, "type");
	if (!type)
		return proto_err(c, "frame without type");
	if (!strcmp(type, "hello"))
		return handle_hello(c, hdr);
	if (c->state != ST_READY)
		return proto_err(c, "frame before hello");
	if (!strcmp(type, "reset")) {
		/* the agent lost our session (restarted, or resynchronised) */
		const char *why = agent_json_get_str(hdr, "reason");
		die(c, -ECONNRESET, "agent reset the session: %.200s", why ? why : "no reason given");
		return -ECONNRESET;
	}
	c->have_sync = false;
	uint64_t id;
	if (agent_json_get_u64(hdr, "id", &id) < 0 || id == 0 || id >= c->next_id)
		return proto_err(c, "frame for a request never made");
	AgentOp *op = op_find(c, id);
	if (!strcmp(type, "data"))
		return handle_data(c, op, hdr, p, plen);
	if (plen)
		return proto_err(c, "payload on a control frame");
	if (!strcmp(type, "ack")) {
		int64_t fd;
		uint64_t n;
		if (agent_json_get_i64(hdr, "fd", &fd) < 0 || fd != 0 ||
		    agent_json_get_u64(hdr, "bytes", &n) < 0)
			return proto_err(c, "bad ack");
		if (!op)
			return 0;
		if (!op->input || n > op->in_sent - op->in_acked)
			return proto_err(c, "ack for bytes never sent");
		op->in_acked += n;
		if (op->want_write && !op->in_closed && op->h.on_writable) {
			op->want_write = false;
			op->h.on_writable(op, op->ud);
			if (c->state == ST_DEAD)
				return -ECANCELED;
		}
		return 0;
	}
	if (!strcmp(type, "event")) {
		const char *ev = agent_json_get_str(hdr, "event");
		if (!ev)
			return proto_err(c, "event without name");
		if (op && !op->internal && op->h.on_event) {
			op->h.on_event(op, ev, hdr, op->ud);
			if (c->state == ST_DEAD)
				return -ECANCELED;
		}
		return 0;
	}
	if (!strcmp(type, "res")) {
		struct json_object *okv;
		if (!json_object_object_get_ex(hdr, "ok", &okv) || !json_object_is_type(okv, json_type_boolean))
			return proto_err(c, "reply without ok");
		if (!op)
			return 0;
		if (json_object_get_boolean(okv)) {
			op_complete(op, 0, hdr, NULL);
		} else {
			int64_t e = 0;
			if (agent_json_get_i64(hdr, "errno", &e) < 0 || e <= 0 || e >= 4096)
				e = EPROTO;
			FlError fe = {.code = (int)-e};
			const char *m = agent_json_get_str(hdr, "error");
			snprintf(fe.msg, sizeof(fe.msg), "agent: %.400s", m ? m : strerror((int)e));
			op_complete(op, (int)-e, NULL, &fe);
		}
		return c->state == ST_DEAD ? -ECANCELED : 0;
	}
	return proto_err(c, "unknown frame type");
}

static const AgentFramerOps framer_ops = {.on_frame = on_frame, .on_sync = on_sync};

static int do_read(AgentClient *c)
{
	uint8_t buf[64 * 1024];
	for (int i = 0; i < 16 && c->state != ST_DEAD; i++) {
		ssize_t n = read(c->fd, buf, sizeof(buf));
		if (n == 0) {
			die(c, -ECONNRESET, "agent connection closed");
			return -ECONNRESET;
		}
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return 0;
			int r = -errno;
			die(c, r, "agent connection: %s", strerror(-r));
			return r;
		}
		int r = agent_framer_feed(c->fr, buf, (size_t)n, &framer_ops, c);
		if (r < 0) {
			if (c->state != ST_DEAD)
				die(c, r == -EMSGSIZE ? -EMSGSIZE : -EPROTO, "agent sent a bad frame (%s)",
				    strerror(-r));
			return r;
		}
	}
	return 0;
}

static void writable_all(AgentClient *c)
{
	/* Output queue drained: writers that were cut short may go on. */
	for (AgentOp *op = c->ops; op && c->state != ST_DEAD;) {
		AgentOp *next = op->next;
		uint64_t id = op->id;
		if (op->want_write && !op->in_closed && op->h.on_writable &&
		    op->in_sent - op->in_acked < c->agent_window) {
			op->want_write = false;
			op->h.on_writable(op, op->ud);
			/* the list may have changed: restart after this id */
			if (c->state == ST_DEAD)
				return;
			next = NULL;
			for (AgentOp *o = c->ops; o; o = o->next)
				if (o->id == id) {
					next = o->next;
					break;
				}
		}
		op = next;
	}
}

int agent_client_dispatch(AgentClient *c, short revents)
{
	if (c->state == ST_DEAD)
		return c->dead_r;
	if (c->state == ST_CONNECTING) {
		if (!(revents & (POLLOUT | POLLERR | POLLHUP)))
			goto timers;
		int e = 0;
		socklen_t l = sizeof(e);
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &l);
		if (e) {
			die(c, -e, "connect: %s", strerror(e));
			return c->dead_r;
		}
		start_hello(c);
	}
	if (revents & (POLLIN | POLLHUP | POLLERR)) {
		if (do_read(c) < 0 && c->state == ST_DEAD)
			return c->dead_r;
	}
timers:;
	uint64_t now = agent_now_ms();
	if (c->state == ST_HELLO) {
		if (c->hello_deadline && now >= c->hello_deadline) {
			die(c, -ETIMEDOUT, "no hello from the agent within %u ms", c->o.hello_timeout_ms);
			return c->dead_r;
		}
		if (now >= c->hello_resend)
			send_hello(c);
	}
	for (AgentOp *op = c->ops; op && c->state != ST_DEAD;) {
		AgentOp *next = op->next;
		if (op->deadline && now >= op->deadline) {
			uint64_t id = op->id;
			bool internal = op->internal;
			FlError e = {.code = -ETIMEDOUT};
			snprintf(e.msg, sizeof(e.msg), "agent request timed out");
			op_complete(op, -ETIMEDOUT, NULL, &e);
			if (!internal)
				send_cancel(c, id);
			next = c->ops; /* restart: callbacks may have changed the list */
		}
		op = next;
	}
	if (c->state == ST_DEAD)
		return c->dead_r;
	bool had = c->outq.len > 0;
	int r = flush(c);
	if (r < 0) {
		die(c, r, "agent connection: %s", strerror(-r));
		return c->dead_r;
	}
	if (had && c->outq.len == 0)
		writable_all(c);
	return c->state == ST_DEAD ? c->dead_r : 0;
}

/* ---- requests ---------------------------------------------------------- */

static bool has_input(const char *opname, struct json_object *args)
{
	if (!strcmp(opname, "file_write") || !strcmp(opname, "pty_open"))
		return true;
	if (!strcmp(opname, "exec"))
		return agent_json_get_bool(args, "stdin") && !agent_json_get_bool(args, "background");
	return false;
}

int agent_op_start(AgentClient *c, const char *opname, struct json_object *args,
		   unsigned timeout_ms, const AgentOpHandlers *h, void *userdata, AgentOp **ret,
		   FlError *err)
{
	if (args && !json_object_is_type(args, json_type_object)) {
		json_object_put(args);
		return fl_error_set(err, -EINVAL, "agent %s: arguments must be an object", opname);
	}
	if (c->state != ST_READY) {
		json_object_put(args);
		return fl_error_set(err, -ENOTCONN, "agent %s: not connected", opname);
	}
	if (c->nops >= c->o.max_ops || c->outq.len >= c->o.max_outq) {
		json_object_put(args);
		return fl_error_set(err, -ENOBUFS, "agent %s: too many requests in flight", opname);
	}
	AgentOp *op = calloc(1, sizeof(*op));
	if (!op) {
		json_object_put(args);
		return fl_error_set(err, -ENOMEM, "out of memory");
	}
	op->c = c;
	op->id = c->next_id++;
	if (h)
		op->h = *h;
	op->ud = userdata;
	op->input = has_input(opname, args);
	if (timeout_ms)
		op->deadline = agent_now_ms() + timeout_ms;
	int r = queue_request(c, op->id, opname, args);
	if (r < 0) {
		free(op);
		return fl_error_set(err, r, "agent %s: %s", opname, strerror(-r));
	}
	op->next = c->ops;
	c->ops = op;
	c->nops++;
	if (ret)
		*ret = op;
	return 0;
}

ssize_t agent_op_write(AgentOp *op, const void *buf, size_t len)
{
	AgentClient *c = op->c;
	if (!op->input)
		return -EBADF;
	if (op->in_closed || c->state != ST_READY)
		return -EPIPE;
	size_t done = 0;
	while (done < len) {
		uint64_t credit = c->agent_window - (op->in_sent - op->in_acked);
		size_t room = c->outq.len < c->o.max_outq ? c->o.max_outq - c->outq.len : 0;
		size_t n = len - done;
		if (n > credit)
			n = (size_t)credit;
		if (n > room)
			n = room;
		if (n > c->agent_max_payload)
			n = c->agent_max_payload;
		if (n == 0)
			break;
		struct json_object *h = json_object_new_object();
		json_object_object_add(h, "type", json_object_new_string("data"));
		json_object_object_add(h, "id", json_object_new_int64((int64_t)op->id));
		json_object_object_add(h, "fd", json_object_new_int(0));
		int r = queue_frame(c, h, (const uint8_t *)buf + done, n);
		if (r < 0)
			return done ? (ssize_t)done : r;
		op->in_sent += n;
		done += n;
	}
	if (done < len)
		op->want_write = true;
	return (ssize_t)done;
}

int agent_op_close_input(AgentOp *op)
{
	AgentClient *c = op->c;
	if (!op->input)
		return -EBADF;
	if (op->in_closed)
		return 0;
	if (c->state != ST_READY)
		return -EPIPE;
	struct json_object *h = json_object_new_object();
	json_object_object_add(h, "type", json_object_new_string("data"));
	json_object_object_add(h, "id", json_object_new_int64((int64_t)op->id));
	json_object_object_add(h, "fd", json_object_new_int(0));
	json_object_object_add(h, "eof", json_object_new_boolean(1));
	int r = queue_frame(c, h, NULL, 0);
	if (r == 0)
		op->in_closed = true;
	return r;
}

void agent_op_pause(AgentOp *op, bool paused)
{
	op->paused = paused;
	if (!paused && op->c->state == ST_READY)
		for (int fd = 1; fd < 3; fd++)
			if (!op->out_eof[fd])
				send_ack(op, fd);
}

static int target_request(AgentOp *op, const char *name, struct json_object *a)
{
	AgentClient *c = op->c;
	if (c->state != ST_READY) {
		json_object_put(a);
		return -ENOTCONN;
	}
	AgentOp *x = calloc(1, sizeof(*x));
	if (!x) {
		json_object_put(a);
		return -ENOMEM;
	}
	x->c = c;
	x->id = c->next_id++;
	x->internal = true;
	x->deadline = agent_now_ms() + 30000;
	json_object_object_add(a, "target", json_object_new_int64((int64_t)op->id));
	int r = queue_request(c, x->id, name, a);
	if (r < 0) {
		free(x);
		return r;
	}
	x->next = c->ops;
	c->ops = x;
	c->nops++;
	return 0;
}

int agent_op_cancel(AgentOp *op)
{
	return target_request(op, "cancel", json_object_new_object());
}

int agent_op_signal(AgentOp *op, int sig)
{
	struct json_object *a = json_object_new_object();
	json_object_object_add(a, "signal", json_object_new_int(sig));
	return target_request(op, "signal", a);
}

int agent_pty_resize(AgentOp *op, unsigned rows, unsigned cols)
{
	struct json_object *a = json_object_new_object();
	json_object_object_add(a, "rows", json_object_new_int((int)rows));
	json_object_object_add(a, "cols", json_object_new_int((int)cols));
	return target_request(op, "pty_resize", a);
}

uint64_t agent_op_id(const AgentOp *op)
{
	return op->id;
}

AgentClient *agent_op_client(const AgentOp *op)
{
	return op->c;
}

/* ---- exec helpers ------------------------------------------------------- */

int agent_exec_args(const AgentExecSpec *s, struct json_object **ret, FlError *err)
{
	if (!!s->argv == !!s->shell || (s->argv && !s->argv[0]))
		return fl_error_set(err, -EINVAL, "exec: give exactly one of argv and shell");
	struct json_object *a = json_object_new_object();
	if (s->argv) {
		struct json_object *v = json_object_new_array();
		for (const char *const *p = s->argv; *p; p++)
			json_object_array_add(v, json_object_new_string(*p));
		json_object_object_add(a, "argv", v);
	} else {
		json_object_object_add(a, "shell", json_object_new_string(s->shell));
	}
	if (s->env) {
		struct json_object *v = json_object_new_array();
		for (const char *const *p = s->env; *p; p++)
			json_object_array_add(v, json_object_new_string(*p));
		json_object_object_add(a, "env", v);
	}
	if (s->cwd)
		json_object_object_add(a, "cwd", json_object_new_string(s->cwd));
	if (s->user)
		json_object_object_add(a, "user", json_object_new_string(s->user));
	if (s->stdin_stream)
		json_object_object_add(a, "stdin", json_object_new_boolean(1));
	if (s->background)
		json_object_object_add(a, "background", json_object_new_boolean(1));
	if (s->timeout_ms)
		json_object_object_add(a, "timeout_ms", json_object_new_int64(s->timeout_ms));
	if (s->pty) {
		json_object_object_add(a, "rows", json_object_new_int(s->rows ? (int)s->rows : 24));
		json_object_object_add(a, "cols", json_object_new_int(s->cols ? (int)s->cols : 80));
	}
	*ret = a;
	return 0;
}

int agent_exec_start(AgentClient *c, const AgentExecSpec *spec, unsigned host_timeout_ms,
		     const AgentOpHandlers *h, void *userdata, AgentOp **ret, FlError *err)
{
	struct json_object *a;
	int r = agent_exec_args(spec, &a, err);
	if (r < 0)
		return r;
	return agent_op_start(c, spec->pty ? "pty_open" : "exec", a, host_timeout_ms, h, userdata,
			      ret, err);
}

int agent_exec_result_parse(struct json_object *reply, AgentExecResult *res)
{
	*res = (AgentExecResult){0};
	int64_t v;
	uint64_t u;
	if (agent_json_get_i64(reply, "exit_code", &v) == 0)
		res->exit_code = (int)v;
	else if (agent_json_get_i64(reply, "signal", &v) == 0 && v > 0 && v < 128)
		res->signal = (int)v;
	else
		return -EPROTO;
	res->timed_out = agent_json_get_bool(reply, "timed_out");
	if (agent_json_get_i64(reply, "pid", &v) == 0)
		res->pid = (int)v;
	if (agent_json_get_u64(reply, "duration_ms", &u) == 0)
		res->duration_ms = u;
	if (agent_json_get_u64(reply, "stdout_bytes", &u) == 0)
		res->stdout_bytes = u;
	if (agent_json_get_u64(reply, "stderr_bytes", &u) == 0)
		res->stderr_bytes = u;
	return 0;
}
