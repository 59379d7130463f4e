// SPDX-License-Identifier: MIT
/*
 * fluid-agent: the in-guest agent. Speaks the framed protocol of
 * docs/agent-protocol.md over the virtio-serial port org.fluid.agent.0
 * (or --device PATH, --socket PATH to listen on a unix socket, --stdio),
 * and serves exec, ptys, files, fsfreeze and identity requests.
 *
 * DESIGN: one thread, one poll loop. The host may connect and disconnect at
 * any time (VMs are snapshotted and cloned while the agent runs). A
 * virtio-serial port without a host reads 0 bytes and polls POLLHUP forever,
 * so while disconnected the port is left out of the poll set and the agent
 * waits for SIGIO (virtio_console signals host open/close through O_ASYNC,
 * read here from a signalfd) with a slow fallback timer. Every connection
 * starts in "hunt" mode: bytes are discarded until a sync frame followed by
 * a hello; the agent then answers with its own sync frame and hello reply.
 * Ops (foreground execs, ptys, transfers) belong to the session and are
 * cancelled when it ends; background processes survive. Memory is bounded:
 * one frame being parsed, per-stream windows, and an output queue that
 * producers stop filling above AG_OUTQ_SOFT.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "cleanup.h"

/* Only the release version, no git revision: images are cached by a hash
 * that includes this binary, and unrelated commits must not rebuild them. */
#ifndef FL_VERSION
#define FL_VERSION "0.0.0"
#endif

#define PORT_NAME "org.fluid.agent.0"
#define AG_MAX_HEADER (256u * 1024)
#define PORT_RECHECK_MS 2000
#define PARTIAL_FRAME_TIMEOUT_MS 10000

enum mode { MODE_VIRTIO, MODE_SOCKET, MODE_STDIO };

struct Agent {
	enum mode mode;
	const char *path;
	int port_fd;     /* virtio: the port, kept open */
	int listen_fd;   /* socket mode */
	int rfd, wfd;    /* the host connection, -1 when none */
	int sfd;
	AgentFramer *fr;
	AgentBuf outq;
	bool session;
	bool have_sync;
	uint8_t sync_nonce[AGENT_NONCE_LEN];
	uint8_t nonce[AGENT_NONCE_LEN];
	uint32_t host_window;
	Op *ops;
	unsigned nops;
	Bg *bg;
	uint64_t next_bg;
	uint64_t last_rx_ms;
	uint64_t next_port_check;
	bool verbose;
	bool quit;
};

static const char *const ops_list[] = {
	"ping", "version", "capabilities", "exec", "pty_open", "pty_resize", "cancel", "signal",
	"bg_list", "bg_kill", "bg_wait", "bg_output", "bg_remove", "file_read", "file_write",
	"stat", "list", "mkdir", "remove", "rename", "fsfreeze", "fsthaw", "fsfreeze_status",
	"sync", "identity", "root",
};

static bool g_verbose;

uint64_t ag_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Logs to stderr only when that cannot block: stderr may be a journald pipe
 * and journald may be stuck on a filesystem we froze. */
void ag_log(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	struct pollfd p = {.fd = 2, .events = POLLOUT};
	if (poll(&p, 1, 0) == 1 && (p.revents & POLLOUT)) {
		ssize_t w = write(2, "fluid-agent: ", 13);
		if (w > 0)
			w = write(2, buf, (size_t)n);
		(void)w;
	}
}

bool ag_connected(const Agent *ag)
{
	return ag->rfd >= 0 && ag->session;
}

bool ag_outq_room(const Agent *ag)
{
	return ag_connected(ag) && ag->outq.len < AG_OUTQ_SOFT;
}

uint32_t ag_window(const Agent *ag)
{
	(void)ag;
	return AGENT_DEFAULT_WINDOW;
}

Op *ag_ops(Agent *ag)
{
	return ag->ops;
}

Bg **ag_bg_list(Agent *ag)
{
	return &ag->bg;
}

uint64_t ag_next_bg_id(Agent *ag)
{
	return ++ag->next_bg;
}

static void queue_frame(Agent *ag, struct json_object *hdr, const void *payload, size_t plen)
{
	if (ag->rfd < 0 || !ag->session) {
		json_object_put(hdr);
		return;
	}
	if (agent_frame_append(&ag->outq, hdr, payload, plen) < 0)
		ag_log("out of memory queueing a frame");
	json_object_put(hdr);
}

void ag_reply(Agent *ag, uint64_t id, struct json_object *obj)
{
	if (!obj)
		obj = json_object_new_object();
	json_object_object_add(obj, "type", json_object_new_string("res"));
	json_object_object_add(obj, "id", json_object_new_int64((int64_t)id));
	json_object_object_add(obj, "ok", json_object_new_boolean(1));
	queue_frame(ag, obj, NULL, 0);
}

void ag_reply_err(Agent *ag, uint64_t id, int r, const char *fmt, ...)
{
	char msg[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (r >= 0)
		r = -EIO;
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "type", json_object_new_string("res"));
	json_object_object_add(o, "id", json_object_new_int64((int64_t)id));
	json_object_object_add(o, "ok", json_object_new_boolean(0));
	json_object_object_add(o, "errno", json_object_new_int(-r));
	char full[512];
	snprintf(full, sizeof(full), "%s: %s", msg, strerror(-r));
	json_object_object_add(o, "error", json_object_new_string(full));
	queue_frame(ag, o, NULL, 0);
}

void ag_event(Agent *ag, uint64_t id, const char *event, struct json_object *obj)
{
	if (!obj)
		obj = json_object_new_object();
	json_object_object_add(obj, "type", json_object_new_string("event"));
	json_object_object_add(obj, "id", json_object_new_int64((int64_t)id));
	json_object_object_add(obj, "event", json_object_new_string(event));
	queue_frame(ag, obj, NULL, 0);
}

int ag_send_data(Agent *ag, uint64_t id, int fd, const void *buf, size_t len)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "type", json_object_new_string("data"));
	json_object_object_add(o, "id", json_object_new_int64((int64_t)id));
	json_object_object_add(o, "fd", json_object_new_int(fd));
	if (len == 0)
		json_object_object_add(o, "eof", json_object_new_boolean(1));
	queue_frame(ag, o, buf, len);
	return 0;
}

int ag_send_ack(Agent *ag, uint64_t id, int fd, uint64_t bytes)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "type", json_object_new_string("ack"));
	json_object_object_add(o, "id", json_object_new_int64((int64_t)id));
	json_object_object_add(o, "fd", json_object_new_int(fd));
	json_object_object_add(o, "bytes", json_object_new_int64((int64_t)bytes));
	queue_frame(ag, o, NULL, 0);
	return 0;
}

Op *ag_op_find(Agent *ag, uint64_t id)
{
	for (Op *o = ag->ops; o; o = o->next)
		if (o->id == id)
			return o;
	return NULL;
}

Op *ag_op_new(Agent *ag, uint64_t id, enum op_kind kind)
{
	if (ag->nops >= AG_MAX_OPS)
		return NULL;
	Op *op = calloc(1, sizeof(*op));
	if (!op)
		return NULL;
	op->ag = ag;
	op->id = id;
	op->kind = kind;
	op->in_fd = -1;
	for (int i = 0; i < 3; i++) {
		op->out_fd[i] = -1;
		op->credit[i] = ag->host_window;
		op->out_eof[i] = true;
	}
	op->start_ms = ag_now_ms();
	op->mode = -1;
	op->uid = op->gid = -1;
	op->next = ag->ops;
	ag->ops = op;
	ag->nops++;
	return op;
}

void ag_op_finish(Op *op)
{
	Agent *ag = op->ag;
	for (Op **p = &ag->ops; *p; p = &(*p)->next) {
		if (*p == op) {
			*p = op->next;
			ag->nops--;
			break;
		}
	}
	if (op->in_fd >= 0 && op->in_fd != op->out_fd[1])
		close(op->in_fd);
	for (int i = 1; i < 3; i++)
		if (op->out_fd[i] >= 0)
			close(op->out_fd[i]);
	agent_buf_free(&op->in);
	json_object_put(op->extra);
	if (op->tmp_path)
		unlink(op->tmp_path);
	free(op->tmp_path);
	free(op->path);
	free(op);
}

/* ---- sessions ---------------------------------------------------------- */

/* Tells a host that may still believe in an old session (the agent was
 * restarted, or the stream broke) that it is gone. A host still looking
 * for its hello reply skips this as stale bytes; a ready one reconnects. */
static void send_reset(Agent *ag, const char *why)
{
	if (ag->rfd < 0)
		return;
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "type", json_object_new_string("reset"));
	json_object_object_add(o, "reason", json_object_new_string(why));
	agent_frame_append(&ag->outq, o, NULL, 0);
	json_object_put(o);
}

static void session_end(Agent *ag, const char *why)
{
	if (ag->session && ag->verbose)
		ag_log("session ended: %s", why);
	ag->session = false;
	ag->have_sync = false;
	agent_buf_clear(&ag->outq);
	/* Ops belong to the session; internal ones (DHCP) finish on their own. */
	Op *next;
	for (Op *op = ag->ops; op; op = next) {
		next = op->next;
		if (op->internal) {
			op->orphan = true;
			continue;
		}
		switch (op->kind) {
		case OP_EXEC:
		case OP_PTY:
			exec_op_cancel(op, true);
			break;
		case OP_FREAD:
		case OP_FWRITE:
			file_op_cancel(op);
			break;
		case OP_BGWAIT:
			ag_op_finish(op);
			break;
		}
	}
	sys_thaw_all(why);
	agent_framer_hunt(ag->fr, NULL);
}

static void port_check(Agent *ag);

static void conn_close(Agent *ag, const char *why)
{
	session_end(ag, why);
	if (ag->mode == MODE_SOCKET && ag->rfd >= 0)
		close(ag->rfd);
	if (ag->mode == MODE_STDIO)
		ag->quit = true;
	if (ag->mode == MODE_VIRTIO && ag->port_fd >= 0) {
		/* Wait for the host through SIGIO from now on. */
		int fl = fcntl(ag->port_fd, F_GETFL);
		fcntl(ag->port_fd, F_SETFL, fl | O_ASYNC);
		ag->next_port_check = ag_now_ms() + PORT_RECHECK_MS;
	}
	ag->rfd = ag->wfd = -1;
	/* A host that came back before O_ASYNC was set sent no SIGIO: look
	 * now rather than at the fallback timer (a clone's host connects
	 * right after the guest sees the template's host leave). */
	port_check(ag);
}

static void conn_open(Agent *ag, int rfd, int wfd)
{
	ag->rfd = rfd;
	ag->wfd = wfd;
	ag->session = false;
	ag->have_sync = false;
	agent_buf_clear(&ag->outq);
	agent_framer_hunt(ag->fr, NULL);
	send_reset(ag, "agent (re)started or host reconnected");
	if (ag->verbose)
		ag_log("host connected");
}

/* virtio: is a host on the other end of the port? */
static void port_check(Agent *ag)
{
	if (ag->mode != MODE_VIRTIO || ag->rfd >= 0 || ag->port_fd < 0)
		return;
	ag->next_port_check = ag_now_ms() + PORT_RECHECK_MS;
	struct pollfd p = {.fd = ag->port_fd, .events = POLLIN | POLLOUT};
	if (poll(&p, 1, 0) < 0)
		return;
	if (p.revents & POLLHUP)
		return;
	int fl = fcntl(ag->port_fd, F_GETFL);
	fcntl(ag->port_fd, F_SETFL, fl & ~O_ASYNC);
	conn_open(ag, ag->port_fd, ag->port_fd);
}

static struct json_object *hello_reply(Agent *ag)
{
	char hex[2 * AGENT_NONCE_LEN + 1];
	agent_hex(ag->nonce, AGENT_NONCE_LEN, hex);
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "type", json_object_new_string("hello"));
	json_object_object_add(o, "nonce", json_object_new_string(hex));
	json_object_object_add(o, "protocol", json_object_new_int(AGENT_PROTOCOL));
	json_object_object_add(o, "version", json_object_new_string(FL_VERSION));
	json_object_object_add(o, "window", json_object_new_int64(AGENT_DEFAULT_WINDOW));
	json_object_object_add(o, "max_payload", json_object_new_int64(AGENT_DEFAULT_MAX_PAYLOAD));
	json_object_object_add(o, "max_header", json_object_new_int64(AG_MAX_HEADER));
	json_object_object_add(o, "pid", json_object_new_int(getpid()));
	json_object_object_add(o, "frozen", json_object_new_boolean(sys_frozen()));
	char host[256] = "";
	gethostname(host, sizeof(host) - 1);
	json_object_object_add(o, "hostname", json_object_new_string(host));
	struct json_object *ops = json_object_new_array();
	for (size_t i = 0; i < FL_ARRAY_SIZE(ops_list); i++)
		json_object_array_add(ops, json_object_new_string(ops_list[i]));
	json_object_object_add(o, "ops", ops);
	return o;
}

static void handle_hello(Agent *ag, struct json_object *hdr)
{
	uint8_t nonce[AGENT_NONCE_LEN];
	if (!ag->have_sync || agent_unhex(agent_json_get_str(hdr, "nonce"), nonce, sizeof(nonce)) < 0 ||
	    memcmp(nonce, ag->sync_nonce, sizeof(nonce)) != 0) {
		/* A stray "FLS1" in stale bytes: keep hunting. */
		if (!ag->session)
			agent_framer_hunt(ag->fr, NULL);
		return;
	}
	ag->have_sync = false;
	bool same = ag->session && memcmp(nonce, ag->nonce, sizeof(nonce)) == 0;
	if (!same) {
		if (ag->session)
			session_end(ag, "new host session");
		agent_framer_reset(ag->fr);
		memcpy(ag->nonce, nonce, sizeof(nonce));
		uint64_t w = AGENT_DEFAULT_WINDOW;
		uint64_t hw;
		if (agent_json_get_u64(hdr, "window", &hw) == 0 && hw >= 4096 && hw < w)
			w = hw;
		ag->host_window = (uint32_t)w;
		ag->session = true;
		if (ag->verbose)
			ag_log("host session started");
	}
	if (agent_sync_append(&ag->outq, ag->nonce) < 0)
		return;
	queue_frame(ag, hello_reply(ag), NULL, 0);
}

static void handle_req(Agent *ag, uint64_t id, struct json_object *hdr)
{
	const char *op = agent_json_get_str(hdr, "op");
	if (!op) {
		ag_reply_err(ag, id, -EINVAL, "request without op");
		return;
	}
	if (ag_op_find(ag, id)) {
		ag_reply_err(ag, id, -EEXIST, "request id %llu in use", (unsigned long long)id);
		return;
	}
	if (!strcmp(op, "ping")) {
		ag_reply(ag, id, NULL);
	} else if (!strcmp(op, "version")) {
		struct json_object *o = json_object_new_object();
		json_object_object_add(o, "version", json_object_new_string(FL_VERSION));
			json_object_object_add(o, "protocol", json_object_new_int(AGENT_PROTOCOL));
		ag_reply(ag, id, o);
	} else if (!strcmp(op, "capabilities")) {
		struct json_object *o = json_object_new_object();
		struct json_object *ops = json_object_new_array();
		for (size_t i = 0; i < FL_ARRAY_SIZE(ops_list); i++)
			json_object_array_add(ops, json_object_new_string(ops_list[i]));
		json_object_object_add(o, "ops", ops);
		json_object_object_add(o, "max_ops", json_object_new_int(AG_MAX_OPS));
		json_object_object_add(o, "max_bg", json_object_new_int(AG_MAX_BG));
		json_object_object_add(o, "window", json_object_new_int64(AGENT_DEFAULT_WINDOW));
		ag_reply(ag, id, o);
	} else if (!strcmp(op, "exec")) {
		exec_op_start(ag, id, hdr, false);
	} else if (!strcmp(op, "pty_open")) {
		exec_op_start(ag, id, hdr, true);
	} else if (!strcmp(op, "pty_resize") || !strcmp(op, "cancel") || !strcmp(op, "signal")) {
		uint64_t target;
		if (agent_json_get_u64(hdr, "target", &target) < 0) {
			ag_reply_err(ag, id, -EINVAL, "%s: missing target", op);
			return;
		}
		Op *t = ag_op_find(ag, target);
		if (!t || t->internal) {
			ag_reply_err(ag, id, -ESRCH, "%s: no op %llu", op, (unsigned long long)target);
			return;
		}
		int r = 0;
		if (!strcmp(op, "pty_resize")) {
			uint64_t rows = 0, cols = 0;
			agent_json_get_u64(hdr, "rows", &rows);
			agent_json_get_u64(hdr, "cols", &cols);
			r = t->kind == OP_PTY ? exec_pty_resize(t, (unsigned)rows, (unsigned)cols) : -ENOTTY;
		} else if (!strcmp(op, "signal")) {
			int64_t sig = 0;
			if (agent_json_get_i64(hdr, "signal", &sig) < 0 || sig < 1 || sig > 64)
				r = -EINVAL;
			else if (t->kind == OP_EXEC || t->kind == OP_PTY)
				r = exec_op_signal(t, (int)sig);
			else
				r = -EINVAL;
		} else {
			if (t->kind == OP_EXEC || t->kind == OP_PTY) {
				r = exec_op_close(t);
			} else if (t->kind == OP_BGWAIT) {
				ag_reply_err(ag, t->id, -ECANCELED, "bg_wait");
				ag_op_finish(t);
			} else {
				ag_reply_err(ag, t->id, -ECANCELED, "transfer");
				file_op_cancel(t);
			}
		}
		if (r < 0)
			ag_reply_err(ag, id, r, "%s", op);
		else
			ag_reply(ag, id, NULL);
	} else if (!strncmp(op, "bg_", 3)) {
		bg_op(ag, id, op, hdr);
	} else if (!strcmp(op, "file_read") || !strcmp(op, "file_write") || !strcmp(op, "stat") ||
		   !strcmp(op, "list") || !strcmp(op, "mkdir") || !strcmp(op, "remove") ||
		   !strcmp(op, "rename")) {
		file_op(ag, id, op, hdr);
	} else if (!strcmp(op, "fsfreeze") || !strcmp(op, "fsthaw") ||
		   !strcmp(op, "fsfreeze_status") || !strcmp(op, "sync") || !strcmp(op, "identity") ||
		   !strcmp(op, "root")) {
		sys_op(ag, id, op, hdr);
	} else {
		ag_reply_err(ag, id, -EOPNOTSUPP, "unknown op '%s'", op);
	}
}

static int handle_data(Agent *ag, uint64_t id, struct json_object *hdr, const uint8_t *payload,
		       size_t plen)
{
	int64_t fd = -1;
	if (agent_json_get_i64(hdr, "fd", &fd) < 0 || fd != 0)
		return -EPROTO;
	Op *op = ag_op_find(ag, id);
	if (!op || op->internal)
		return 0; /* finished while the host was still sending: drop */
	if (!op->in_wanted || op->in_eof)
		return -EPROTO;
	if (op->in_recv + plen - op->in_acked > ag_window(ag))
		return -EPROTO; /* beyond the window we granted */
	op->in_recv += plen;
	bool eof = agent_json_get_bool(hdr, "eof");
	if (op->kind == OP_FWRITE) {
		if (plen && file_write_data(op, payload, plen) < 0)
			return 0; /* op finished with an error reply */
		if (eof) {
			op->in_eof = true;
			file_write_eof(op);
		}
		return 0;
	}
	if (plen && agent_buf_append(&op->in, payload, plen) < 0)
		return -ENOMEM;
	if (eof) {
		op->in_eof = true;
		if (op->in.len == 0 && op->in_fd >= 0 && op->kind == OP_EXEC) {
			close(op->in_fd);
			op->in_fd = -1;
		}
	}
	return 0;
}

static int on_sync(void *userdata, const uint8_t nonce[AGENT_NONCE_LEN])
{
	Agent *ag = userdata;
	memcpy(ag->sync_nonce, nonce, AGENT_NONCE_LEN);
	ag->have_sync = true;
	return 0;
}

static int on_frame(void *userdata, struct json_object *hdr, const uint8_t *payload, size_t plen)
{
	Agent *ag = userdata;
	const char *type = agent_json_get_str(hdr, "type");
	if (!type)
		return -EPROTO;
	if (!strcmp(type, "hello")) {
		handle_hello(ag, hdr);
		return 0;
	}
	if (!ag->session) {
		agent_framer_hunt(ag->fr, NULL);
		return 0;
	}
	ag->have_sync = false;
	uint64_t id;
	if (agent_json_get_u64(hdr, "id", &id) < 0 || id == 0)
		return -EPROTO;
	if (!strcmp(type, "req")) {
		if (plen)
			return -EPROTO;
		handle_req(ag, id, hdr);
		return 0;
	}
	if (!strcmp(type, "data"))
		return handle_data(ag, id, hdr, payload, plen);
	if (!strcmp(type, "ack")) {
		int64_t fd;
		uint64_t bytes;
		if (agent_json_get_i64(hdr, "fd", &fd) < 0 || (fd != 1 && fd != 2) ||
		    agent_json_get_u64(hdr, "bytes", &bytes) < 0)
			return -EPROTO;
		Op *op = ag_op_find(ag, id);
		if (!op)
			return 0;
		if (bytes > ag->host_window || op->credit[fd] + bytes > ag->host_window)
			return -EPROTO;
		op->credit[fd] += bytes;
		return 0;
	}
	return -EPROTO;
}

static const AgentFramerOps framer_ops = {.on_frame = on_frame, .on_sync = on_sync};

static void conn_read(Agent *ag)
{
	uint8_t buf[64 * 1024];
	for (int rounds = 0; rounds < 8 && ag->rfd >= 0; rounds++) {
		/* Stop reading while a slow host leaves our replies unread. */
		if (ag->outq.len > AG_OUTQ_SOFT * 4)
			return;
		ssize_t n = read(ag->rfd, buf, sizeof(buf));
		if (n == 0) {
			conn_close(ag, "host closed");
			return;
		}
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			conn_close(ag, "read error");
			return;
		}
		ag->last_rx_ms = ag_now_ms();
		int r = agent_framer_feed(ag->fr, buf, (size_t)n, &framer_ops, ag);
		if (r < 0) {
			if (ag->verbose)
				ag_log("protocol error (%s): resynchronising", strerror(-r));
			session_end(ag, "protocol error");
			send_reset(ag, "protocol error");
			return;
		}
	}
}

static void conn_write(Agent *ag)
{
	while (ag->wfd >= 0 && ag->outq.len > 0) {
		size_t n = ag->outq.len;
		if (n > 64 * 1024)
			n = 64 * 1024;
		ssize_t w = write(ag->wfd, agent_buf_head(&ag->outq), n);
		if (w < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			conn_close(ag, "write error");
			return;
		}
		agent_buf_consume(&ag->outq, (size_t)w);
	}
	if (ag->outq.len > AG_OUTQ_HARD)
		conn_close(ag, "host not reading");
}

/* ---- startup ------------------------------------------------------------ */

static int find_port(char *path, size_t size)
{
	_cleanup_(closedirp) DIR *d = opendir("/sys/class/virtio-ports");
	if (!d)
		return -errno;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char p[512], name[128] = "";
		snprintf(p, sizeof(p), "/sys/class/virtio-ports/%s/name", de->d_name);
		_cleanup_close_ int fd = open(p, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t n = read(fd, name, sizeof(name) - 1);
		if (n <= 0)
			continue;
		name[n] = 0;
		name[strcspn(name, "\n")] = 0;
		if (strcmp(name, PORT_NAME) != 0)
			continue;
		snprintf(path, size, "/dev/%s", de->d_name);
		if (access(path, F_OK) == 0)
			return 0;
		/* No devtmpfs node: make one from the dev numbers. */
		char devp[512], devs[32] = "";
		snprintf(devp, sizeof(devp), "/sys/class/virtio-ports/%s/dev", de->d_name);
		_cleanup_close_ int dfd = open(devp, O_RDONLY | O_CLOEXEC);
		unsigned ma, mi;
		if (dfd < 0 || read(dfd, devs, sizeof(devs) - 1) <= 0 || sscanf(devs, "%u:%u", &ma, &mi) != 2)
			return -ENODEV;
		snprintf(path, size, "/run/fluid-agent.port");
		unlink(path);
		if (mknod(path, S_IFCHR | 0600, makedev(ma, mi)) < 0)
			return -errno;
		return 0;
	}
	return -ENODEV;
}

static int open_listen(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	/* Bind under a temporary name and rename once listening, so a client
	 * that sees the path can connect. */
	char tmp[sizeof(sa.sun_path)];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, tmp);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	unlink(tmp);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4) < 0 ||
	    rename(tmp, path) < 0) {
		int r = -errno;
		close(fd);
		unlink(tmp);
		return r;
	}
	return fd;
}

static void notify_ready(void)
{
	const char *ns = getenv("NOTIFY_SOCKET");
	if (!ns || (ns[0] != '/' && ns[0] != '@'))
		return;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t l = strlen(ns);
	if (l >= sizeof(sa.sun_path))
		return;
	memcpy(sa.sun_path, ns, l);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = 0;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	sendto(fd, "READY=1", 7, MSG_DONTWAIT, (struct sockaddr *)&sa,
	       (socklen_t)(offsetof(struct sockaddr_un, sun_path) + l));
	close(fd);
}

static void reap_children(Agent *ag)
{
	for (;;) {
		int st;
		pid_t pid = waitpid(-1, &st, WNOHANG);
		if (pid <= 0)
			return;
		exec_on_child(ag, pid, st);
	}
}

static void drain_signals(Agent *ag)
{
	struct signalfd_siginfo si[8];
	ssize_t n;
	while ((n = read(ag->sfd, si, sizeof(si))) > 0) {
		for (size_t i = 0; i < (size_t)n / sizeof(si[0]); i++) {
			switch (si[i].ssi_signo) {
			case SIGCHLD:
				reap_children(ag);
				break;
			case SIGIO:
				port_check(ag);
				break;
			case SIGTERM:
			case SIGINT:
				ag->quit = true;
				break;
			default:
				break;
			}
		}
	}
}

enum tag { T_SIG, T_LISTEN, T_CONN, T_CONNW, T_OPOUT, T_OPIN, T_BG };
struct watch {
	enum tag tag;
	uint64_t id;
	int which;
};

static void usage(void)
{
	fprintf(stderr, "usage: fluid-agent [--device PATH | --socket PATH | --stdio] [--verbose]\n"
			"  default: the virtio-serial port named " PORT_NAME "\n");
}

static void op_write_input(Op *op)
{
	while (op->in.len > 0 && op->in_fd >= 0) {
		ssize_t w = write(op->in_fd, agent_buf_head(&op->in), op->in.len);
		if (w < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			/* Reader gone (EPIPE): drop the rest, keep acking. */
			op->in_done += op->in.len;
			agent_buf_clear(&op->in);
			if (op->kind == OP_EXEC) {
				close(op->in_fd);
				op->in_fd = -1;
			}
			break;
		}
		op->in_done += (uint64_t)w;
		agent_buf_consume(&op->in, (size_t)w);
	}
	if (op->in.len == 0 && op->in_eof && op->in_fd >= 0 && op->kind == OP_EXEC) {
		close(op->in_fd);
		op->in_fd = -1;
	}
	uint64_t pend = op->in_done - op->in_acked;
	if (pend && (pend >= ag_window(op->ag) / 4 || op->in.len == 0)) {
		ag_send_ack(op->ag, op->id, 0, pend);
		op->in_acked = op->in_done;
	}
}

static void op_read_output(Op *op, int k)
{
	Agent *ag = op->ag;
	if (op->out_fd[k] < 0 || op->credit[k] == 0 || (!op->internal && !ag_outq_room(ag)))
		return;
	uint8_t buf[AGENT_CHUNK];
	size_t want = op->credit[k] < sizeof(buf) ? (size_t)op->credit[k] : sizeof(buf);
	ssize_t n = read(op->out_fd[k], buf, want);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) { /* EOF, or EIO on a pty whose slave side is gone */
		close(op->out_fd[k]);
		if (op->in_fd == op->out_fd[k])
			op->in_fd = -1;
		op->out_fd[k] = -1;
		op->out_eof[k] = true;
		if (!op->internal)
			ag_send_data(ag, op->id, k, NULL, 0);
		exec_op_progress(op);
		return;
	}
	op->sent[k] += (uint64_t)n;
	if (op->internal)
		return;
	op->credit[k] -= (uint64_t)n;
	ag_send_data(ag, op->id, k, buf, (size_t)n);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"device", required_argument, NULL, 'd'},
		{"socket", required_argument, NULL, 's'},
		{"stdio", no_argument, NULL, 'i'},
		{"verbose", no_argument, NULL, 'v'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	Agent ag_s = {.mode = MODE_VIRTIO, .port_fd = -1, .listen_fd = -1, .rfd = -1, .wfd = -1,
		      .host_window = AGENT_DEFAULT_WINDOW};
	Agent *ag = &ag_s;
	int c;
	while ((c = getopt_long(argc, argv, "d:s:ivVh", opts, NULL)) != -1) {
		switch (c) {
		case 'd': ag->mode = MODE_VIRTIO; ag->path = optarg; break;
		case 's': ag->mode = MODE_SOCKET; ag->path = optarg; break;
		case 'i': ag->mode = MODE_STDIO; break;
		case 'v': ag->verbose = g_verbose = true; break;
		case 'V': printf("fluid-agent %s protocol %d\n", FL_VERSION, AGENT_PROTOCOL); return 0;
		case 'h': usage(); return 0;
		default: usage(); return 2;
		}
	}
	/* Children get fds 0-2 from us; make sure they exist so pipes never
	 * land on them. */
	for (int fd = 0; fd < 3; fd++) {
		if (fcntl(fd, F_GETFD) < 0) {
			int n = open("/dev/null", O_RDWR);
			if (n >= 0 && n != fd) {
				dup2(n, fd);
				close(n);
			}
		}
	}
	signal(SIGPIPE, SIG_IGN);
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	sigset_t ss;
	sigemptyset(&ss);
	sigaddset(&ss, SIGCHLD);
	sigaddset(&ss, SIGIO);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	sigaddset(&ss, SIGHUP);
	sigprocmask(SIG_BLOCK, &ss, NULL);
	ag->sfd = signalfd(-1, &ss, SFD_NONBLOCK | SFD_CLOEXEC);
	ag->fr = agent_framer_new(AG_MAX_HEADER, AGENT_DEFAULT_MAX_PAYLOAD);
	if (ag->sfd < 0 || !ag->fr) {
		ag_log("setup failed: %m");
		return 1;
	}

	if (ag->mode == MODE_SOCKET) {
		ag->listen_fd = open_listen(ag->path);
		if (ag->listen_fd < 0) {
			ag_log("listen on %s: %s", ag->path, strerror(-ag->listen_fd));
			return 1;
		}
	} else if (ag->mode == MODE_STDIO) {
		fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
		fcntl(1, F_SETFL, fcntl(1, F_GETFL) | O_NONBLOCK);
		conn_open(ag, 0, 1);
	} else {
		char pbuf[256];
		const char *path = ag->path;
		/* The port may appear a little after we start (module load). */
		for (int tries = 0; !path; tries++) {
			int r = find_port(pbuf, sizeof(pbuf));
			if (r == 0) {
				path = pbuf;
				break;
			}
			if (tries == 0)
				ag_log("waiting for virtio port %s", PORT_NAME);
			if (tries >= 600) {
				ag_log("no virtio port %s", PORT_NAME);
				return 1;
			}
			struct timespec ts = {0, 200 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
		ag->port_fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
		if (ag->port_fd < 0) {
			ag_log("open %s: %m", path);
			return 1;
		}
		fcntl(ag->port_fd, F_SETOWN, getpid());
		int fl = fcntl(ag->port_fd, F_GETFL);
		fcntl(ag->port_fd, F_SETFL, fl | O_ASYNC);
		port_check(ag);
	}
	ag_log("ready (%s)", ag->mode == MODE_VIRTIO ? "virtio-serial" : ag->mode == MODE_SOCKET ? "socket" : "stdio");
	notify_ready();

	struct pollfd pfd[3 + 3 * (AG_MAX_OPS + AG_MAX_BG)];
	struct watch w[FL_ARRAY_SIZE(pfd)];
	while (!ag->quit) {
		/* Producers that need no poll: file reads. */
		for (Op *op = ag->ops, *next; op; op = next) {
			next = op->next;
			if (op->kind == OP_FREAD)
				file_read_pump(op);
		}
		if (ag->wfd >= 0 && ag->outq.len)
			conn_write(ag);

		size_t n = 0;
		pfd[n] = (struct pollfd){.fd = ag->sfd, .events = POLLIN};
		w[n++] = (struct watch){T_SIG, 0, 0};
		if (ag->listen_fd >= 0) {
			pfd[n] = (struct pollfd){.fd = ag->listen_fd, .events = POLLIN};
			w[n++] = (struct watch){T_LISTEN, 0, 0};
		}
		if (ag->rfd >= 0) {
			/* A host that sends but does not read gets no more reads
			 * from us (and we do not spin on its readable fd). */
			short ev = ag->outq.len > AG_OUTQ_SOFT * 4 ? 0 : POLLIN;
			if (ag->outq.len && ag->wfd == ag->rfd)
				ev |= POLLOUT;
			pfd[n] = (struct pollfd){.fd = ag->rfd, .events = ev};
			w[n++] = (struct watch){T_CONN, 0, 0};
			if (ag->outq.len && ag->wfd != ag->rfd) {
				pfd[n] = (struct pollfd){.fd = ag->wfd, .events = POLLOUT};
				w[n++] = (struct watch){T_CONNW, 0, 0};
			}
		}
		int64_t deadline = -1;
		uint64_t now = ag_now_ms();
		for (Op *op = ag->ops; op; op = op->next) {
			if (op->kind == OP_EXEC || op->kind == OP_PTY) {
				for (int k = 1; k < 3; k++)
					if (op->out_fd[k] >= 0 && op->credit[k] > 0 &&
					    (op->internal || ag_outq_room(ag))) {
						pfd[n] = (struct pollfd){.fd = op->out_fd[k], .events = POLLIN};
						w[n++] = (struct watch){T_OPOUT, op->id, k};
					}
				if (op->in_fd >= 0 && op->in.len > 0) {
					pfd[n] = (struct pollfd){.fd = op->in_fd, .events = POLLOUT};
					w[n++] = (struct watch){T_OPIN, op->id, 0};
				}
			}
			uint64_t d = 0;
			if (op->deadline_ms && !op->exited)
				d = op->deadline_ms;
			if (op->grace_ms && (!d || op->grace_ms < d))
				d = op->grace_ms;
			if (d && (deadline < 0 || (int64_t)d < deadline))
				deadline = (int64_t)d;
		}
		for (Bg *b = ag->bg; b; b = b->next)
			for (int k = 1; k < 3; k++)
				if (b->fd[k] >= 0) {
					pfd[n] = (struct pollfd){.fd = b->fd[k], .events = POLLIN};
					w[n++] = (struct watch){T_BG, b->id, k};
				}
		uint64_t fd_deadline = sys_freeze_deadline();
		if (fd_deadline && (deadline < 0 || (int64_t)fd_deadline < deadline))
			deadline = (int64_t)fd_deadline;
		if (ag->mode == MODE_VIRTIO && ag->rfd < 0 &&
		    (deadline < 0 || (int64_t)ag->next_port_check < deadline))
			deadline = (int64_t)ag->next_port_check;
		if (ag->rfd >= 0 && agent_framer_partial(ag->fr)) {
			uint64_t d = ag->last_rx_ms + PARTIAL_FRAME_TIMEOUT_MS;
			if (deadline < 0 || (int64_t)d < deadline)
				deadline = (int64_t)d;
		}
		int timeout = -1;
		if (deadline >= 0)
			timeout = deadline <= (int64_t)now ? 0 : (int)((uint64_t)deadline - now);
		/* File reads still having credit: come back at once. */
		for (Op *op = ag->ops; op; op = op->next)
			if (op->kind == OP_FREAD && op->out_fd[1] >= 0 && op->credit[1] && ag_outq_room(ag))
				timeout = 0;

		int r = poll(pfd, n, timeout);
		if (r < 0 && errno != EINTR) {
			ag_log("poll: %m");
			return 1;
		}
		for (size_t i = 0; r > 0 && i < n; i++) {
			if (!pfd[i].revents)
				continue;
			Op *op;
			switch (w[i].tag) {
			case T_SIG:
				drain_signals(ag);
				break;
			case T_LISTEN: {
				int cfd = accept4(ag->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
				if (cfd >= 0) {
					if (ag->rfd >= 0)
						conn_close(ag, "replaced by a new connection");
					conn_open(ag, cfd, cfd);
				}
				break;
			}
			case T_CONN:
				if (pfd[i].fd != ag->rfd)
					break;
				if (pfd[i].revents & POLLOUT)
					conn_write(ag);
				if (ag->rfd >= 0 && (pfd[i].revents & (POLLIN | POLLERR)))
					conn_read(ag);
				else if (ag->rfd >= 0 && (pfd[i].revents & POLLHUP))
					conn_close(ag, "host hung up");
				break;
			case T_CONNW:
				if (pfd[i].fd == ag->wfd)
					conn_write(ag);
				break;
			case T_OPOUT:
				op = ag_op_find(ag, w[i].id);
				if (op && op->out_fd[w[i].which] == pfd[i].fd)
					op_read_output(op, w[i].which);
				break;
			case T_OPIN:
				op = ag_op_find(ag, w[i].id);
				if (op && op->in_fd == pfd[i].fd)
					op_write_input(op);
				break;
			case T_BG:
				for (Bg *b = ag->bg; b; b = b->next)
					if (b->id == w[i].id && b->fd[w[i].which] == pfd[i].fd)
						bg_read(b, w[i].which);
				break;
			}
		}
		/* Input that arrived this round for ops whose fd was not polled. */
		for (Op *op = ag->ops, *next; op; op = next) {
			next = op->next;
			if ((op->kind == OP_EXEC || op->kind == OP_PTY) && op->in.len && op->in_fd >= 0)
				op_write_input(op);
			else if (op->kind == OP_EXEC && op->in_eof && op->in.len == 0 && op->in_fd >= 0) {
				close(op->in_fd);
				op->in_fd = -1;
			}
		}
		now = ag_now_ms();
		for (Op *op = ag->ops, *next; op; op = next) {
			next = op->next;
			if (op->kind == OP_EXEC || op->kind == OP_PTY)
				exec_op_timer(op, now);
		}
		bg_wait_check(ag);
		sys_timer(now);
		if (ag->mode == MODE_VIRTIO && ag->rfd < 0 && now >= ag->next_port_check)
			port_check(ag);
		if (ag->rfd >= 0 && agent_framer_partial(ag->fr) &&
		    now >= ag->last_rx_ms + PARTIAL_FRAME_TIMEOUT_MS) {
			/* A frame cut short long ago: stale bytes from an old host. */
			session_end(ag, "incomplete frame timed out");
			send_reset(ag, "incomplete frame timed out");
		}
	}
	sys_thaw_all("exit");
	return 0;
}
