/* SPDX-License-Identifier: MIT */
/*
 * QmpClient: one QMP connection to one QEMU process. Performs the greeting
 * and qmp_capabilities handshake, sends commands with client-generated
 * integer ids, matches replies by id (in any order), hands events to a
 * handler, enforces per-command and handshake timeouts, and passes file
 * descriptors with SCM_RIGHTS.
 *
 * DESIGN: loop-agnostic and single-threaded. The owner polls the fd for
 * qmp_client_poll_events() and calls qmp_client_dispatch() on readiness or
 * when qmp_client_next_deadline() passes; nothing here blocks except the
 * *_sync helpers at the bottom, which run a private poll() loop.
 *
 * Each command is a Cmd (waiting for its reply, in the pending list) plus,
 * until fully written, an OutBuf in the output queue. A command that times
 * out before any of its bytes were written is withdrawn from the queue; one
 * that was partly written keeps its bytes queued (the stream must stay
 * well formed) and its late reply is dropped as an unknown id. A command
 * carrying a file descriptor owns a duplicate of it until the first
 * sendmsg() of its bytes has carried it; each OutBuf is written with its
 * own sendmsg(). QEMU keeps only the descriptors of its latest read (a new
 * batch closes unclaimed ones), so a command with a descriptor is not
 * written while an earlier one is still waiting for its reply: getfd and
 * add-fd can be pipelined without one stealing the other's descriptor.
 *
 * Callbacks run only from qmp_client_dispatch() and qmp_client_free(),
 * never from qmp_client_command(). A callback may queue commands and may
 * free the client; the free is finished when the outermost dispatch
 * returns. When the connection ends (EOF, I/O error, protocol error,
 * handshake timeout) every pending command completes exactly once with the
 * cause, then on_state() reports it once.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "qmp.h"

#define QMP_MAX_PENDING_DEFAULT 64
#define QMP_HANDSHAKE_TIMEOUT_DEFAULT 5000
#define QMP_MAX_COMMAND_NAME 128
/* Events kept for qmp_wait_event_sync(); the oldest is dropped beyond. */
#define QMP_EVENT_QUEUE_MAX 32

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)

enum client_state {
	CS_CONNECTING,  /* non-blocking connect() in progress */
	CS_GREETING,    /* waiting for {"QMP": ...} */
	CS_NEGOTIATING, /* qmp_capabilities sent or queued */
	CS_READY,
	CS_DEAD,
};

typedef struct Cmd Cmd;
typedef struct OutBuf OutBuf;

struct OutBuf {
	OutBuf *next;
	char *data;
	size_t len, off;
	int fd;       /* duplicate to pass with the first byte, or -1 */
	Cmd *cmd;     /* NULL once the command has completed */
	bool internal;
};

struct Cmd {
	Cmd *prev, *next;
	int64_t id;
	uint64_t deadline; /* CLOCK_MONOTONIC ms, 0 = none */
	qmp_reply_fn fn;
	void *userdata;
	OutBuf *ob; /* while not fully written */
	bool internal;
};

typedef struct QueuedEvent {
	char *name;
	struct json_object *data;
} QueuedEvent;

struct QmpClient {
	int fd;
	enum client_state state;
	int error; /* why the connection ended, once CS_DEAD */

	QmpParser *parser;
	size_t max_message;
	size_t max_out;
	unsigned max_pending;
	uint64_t handshake_deadline;
	qmp_state_fn on_state;
	qmp_event_fn on_event;
	void *userdata;

	int64_t next_id;
	Cmd *pending_head, *pending_tail;
	unsigned n_pending; /* user commands only */

	OutBuf *out_head, *out_tail;
	size_t out_bytes;
	Cmd *fd_cmd; /* sent with a descriptor, reply not yet seen */

	unsigned busy;       /* >0 while callbacks may run */
	bool free_requested; /* qmp_client_free() called from a callback */
	bool *gone;          /* set when the client is destroyed (sync helpers) */

	bool evq_enabled;
	QueuedEvent evq[QMP_EVENT_QUEUE_MAX];
	unsigned evq_len;
};

uint64_t qmp_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- queues ------------------------------------------------------------ */

static void outbuf_free(OutBuf *ob)
{
	if (ob->fd >= 0)
		close(ob->fd);
	free(ob->data);
	free(ob);
}

static void out_unlink(QmpClient *c, OutBuf *ob)
{
	OutBuf **pp = &c->out_head;
	OutBuf *prev = NULL;
	while (*pp && *pp != ob) {
		prev = *pp;
		pp = &(*pp)->next;
	}
	if (!*pp)
		return;
	*pp = ob->next;
	if (c->out_tail == ob)
		c->out_tail = prev;
	c->out_bytes -= ob->len - ob->off;
}

static void pending_unlink(QmpClient *c, Cmd *cmd)
{
	if (cmd->prev)
		cmd->prev->next = cmd->next;
	else
		c->pending_head = cmd->next;
	if (cmd->next)
		cmd->next->prev = cmd->prev;
	else
		c->pending_tail = cmd->prev;
	cmd->prev = cmd->next = NULL;
	if (!cmd->internal)
		c->n_pending--;
}

/* Detaches a command from the output queue: withdrawn if nothing of it was
 * written, otherwise its bytes still go out but nobody waits for them. */
static void cmd_forget_output(QmpClient *c, Cmd *cmd)
{
	OutBuf *ob = cmd->ob;
	if (!ob)
		return;
	cmd->ob = NULL;
	if (ob->off == 0) {
		out_unlink(c, ob);
		outbuf_free(ob);
	} else {
		ob->cmd = NULL;
	}
}

static void evq_clear(QmpClient *c)
{
	for (unsigned i = 0; i < c->evq_len; i++) {
		free(c->evq[i].name);
		json_object_put(c->evq[i].data);
	}
	c->evq_len = 0;
}

static void evq_push(QmpClient *c, const char *name, struct json_object *data)
{
	char *n = strdup(name);
	if (!n)
		return; /* an event lost to OOM; the queue is best effort */
	if (c->evq_len == QMP_EVENT_QUEUE_MAX) {
		free(c->evq[0].name);
		json_object_put(c->evq[0].data);
		memmove(&c->evq[0], &c->evq[1], sizeof(c->evq[0]) * (QMP_EVENT_QUEUE_MAX - 1));
		c->evq_len--;
	}
	c->evq[c->evq_len].name = n;
	c->evq[c->evq_len].data = data ? json_object_get(data) : NULL;
	c->evq_len++;
}

/* Removes the oldest queued event called name; hands out its data. */
static bool evq_take(QmpClient *c, const char *name, struct json_object **ret_data)
{
	for (unsigned i = 0; i < c->evq_len; i++) {
		if (strcmp(c->evq[i].name, name) != 0)
			continue;
		free(c->evq[i].name);
		if (ret_data)
			*ret_data = c->evq[i].data;
		else
			json_object_put(c->evq[i].data);
		memmove(&c->evq[i], &c->evq[i + 1], sizeof(c->evq[0]) * (c->evq_len - i - 1));
		c->evq_len--;
		return true;
	}
	return false;
}

/* ---- lifecycle --------------------------------------------------------- */

/* Ends the connection: every pending command completes with r (once), then
 * on_state reports r when notify is set. */
static void die(QmpClient *c, int r, bool notify)
{
	if (c->state == CS_DEAD)
		return;
	c->state = CS_DEAD;
	c->error = r;

	while (c->out_head) {
		OutBuf *ob = c->out_head;
		c->out_head = ob->next;
		if (ob->cmd)
			ob->cmd->ob = NULL;
		outbuf_free(ob);
	}
	c->out_tail = NULL;
	c->out_bytes = 0;
	c->fd_cmd = NULL;

	Cmd *list = c->pending_head;
	c->pending_head = c->pending_tail = NULL;
	c->n_pending = 0;
	while (list) {
		Cmd *cmd = list;
		list = cmd->next;
		if (!cmd->internal && cmd->fn)
			cmd->fn(c, r, NULL, NULL, cmd->userdata);
		free(cmd);
	}

	if (notify && c->on_state)
		c->on_state(c, r, c->userdata);
}

static void destroy(QmpClient *c)
{
	if (c->gone)
		*c->gone = true;
	if (c->fd >= 0)
		close(c->fd);
	qmp_parser_free(c->parser);
	evq_clear(c);
	free(c);
}

void qmp_client_free(QmpClient *c)
{
	if (!c)
		return;
	if (c->busy) {
		/* Called from one of our callbacks: finish in dispatch. */
		c->free_requested = true;
		die(c, -ECANCELED, false);
		return;
	}
	c->busy++;
	die(c, -ECANCELED, false);
	c->busy--;
	destroy(c);
}

/* Called when dispatch unwinds; returns its result. */
static int finish(QmpClient *c)
{
	if (c->busy == 0 && c->free_requested) {
		destroy(c);
		return -ECANCELED;
	}
	return c->state == CS_DEAD ? c->error : 0;
}

/* ---- output ------------------------------------------------------------ */

static bool can_send(const QmpClient *c)
{
	if (!c->out_head)
		return false;
	if (c->out_head->fd >= 0 && c->fd_cmd)
		return false;
	return c->state == CS_READY || (c->state == CS_NEGOTIATING && c->out_head->internal);
}

/* Writes as much queued output as the socket takes. Returns 0, or a
 * negative errno on a hard error (the caller decides whether to end the
 * connection now or let the next dispatch find out). */
static int flush(QmpClient *c)
{
	while (can_send(c)) {
		OutBuf *ob = c->out_head;
		struct iovec iov = { .iov_base = ob->data + ob->off, .iov_len = ob->len - ob->off };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} ctl;

		if (ob->fd >= 0) {
			memset(&ctl, 0, sizeof(ctl));
			mh.msg_control = ctl.buf;
			mh.msg_controllen = sizeof(ctl.buf);
			struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cm), &ob->fd, sizeof(int));
		}

		ssize_t n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -errno;
		}
		if (ob->fd >= 0) {
			/* The kernel holds its own reference now. */
			close(ob->fd);
			ob->fd = -1;
			c->fd_cmd = ob->cmd;
		}
		ob->off += (size_t)n;
		c->out_bytes -= (size_t)n;
		if (ob->off == ob->len) {
			c->out_head = ob->next;
			if (!c->out_head)
				c->out_tail = NULL;
			if (ob->cmd)
				ob->cmd->ob = NULL;
			outbuf_free(ob);
		}
	}
	return 0;
}

/* Serialises and queues one command; never calls callbacks. */
static int enqueue(QmpClient *c, const char *command, struct json_object *args, int pass_fd,
		   unsigned timeout_ms, qmp_reply_fn fn, void *userdata, bool internal)
{
	_cleanup_(json_object_putp) struct json_object *args_owned = args;
	_cleanup_(json_object_putp) struct json_object *msg = NULL;
	_cleanup_close_ int fd = -1;
	int64_t id = c->next_id;

	msg = json_object_new_object();
	if (!msg)
		return -ENOMEM;
	if (json_object_object_add(msg, "execute", json_object_new_string(command)) < 0)
		return -ENOMEM;
	if (args_owned && json_object_object_add(msg, "arguments", TAKE_PTR(args_owned)) < 0)
		return -ENOMEM;
	if (json_object_object_add(msg, "id", json_object_new_int64(id)) < 0)
		return -ENOMEM;

	size_t len;
	const char *text = json_object_to_json_string_length(
		msg, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	if (!text)
		return -ENOMEM;
	if (len + 1 > c->max_message)
		return -EMSGSIZE;
	if (c->out_bytes + len + 1 > c->max_out)
		return -ENOBUFS;

	if (pass_fd >= 0) {
		fd = fcntl(pass_fd, F_DUPFD_CLOEXEC, 3);
		if (fd < 0)
			return -errno;
	}

	_cleanup_free_ char *data = malloc(len + 1);
	_cleanup_free_ OutBuf *ob = calloc(1, sizeof(*ob));
	_cleanup_free_ Cmd *cmd = calloc(1, sizeof(*cmd));
	if (!data || !ob || !cmd)
		return -ENOMEM;
	memcpy(data, text, len);
	data[len] = '\n';

	cmd->id = id;
	cmd->deadline = timeout_ms ? qmp_now_ms() + timeout_ms : 0;
	cmd->fn = fn;
	cmd->userdata = userdata;
	cmd->internal = internal;
	cmd->ob = ob;

	ob->data = TAKE_PTR(data);
	ob->len = len + 1;
	ob->fd = TAKE_FD(fd);
	ob->cmd = cmd;
	ob->internal = internal;

	if (internal) {
		/* The handshake goes ahead of anything queued before it. */
		ob->next = c->out_head;
		c->out_head = ob;
		if (!c->out_tail)
			c->out_tail = ob;
	} else {
		if (c->out_tail)
			c->out_tail->next = ob;
		else
			c->out_head = ob;
		c->out_tail = ob;
		c->n_pending++;
	}
	c->out_bytes += ob->len;
	TAKE_PTR(ob);

	cmd->prev = c->pending_tail;
	if (c->pending_tail)
		c->pending_tail->next = cmd;
	else
		c->pending_head = cmd;
	c->pending_tail = cmd;
	TAKE_PTR(cmd);

	c->next_id++;
	return 0;
}

int qmp_client_command(QmpClient *c, const char *command, struct json_object *args, int pass_fd,
		       unsigned timeout_ms, qmp_reply_fn fn, void *userdata)
{
	_cleanup_(json_object_putp) struct json_object *args_owned = args;

	if (!c || !command || !*command || strlen(command) > QMP_MAX_COMMAND_NAME)
		return -EINVAL;
	if (args && !json_object_is_type(args, json_type_object))
		return -EINVAL;
	if (c->state == CS_DEAD || c->free_requested)
		return -ENOTCONN;
	if (c->n_pending >= c->max_pending)
		return -EAGAIN;

	int r = enqueue(c, command, TAKE_PTR(args_owned), pass_fd, timeout_ms, fn, userdata, false);
	if (r < 0)
		return r;
	/* Write now to save a loop iteration; a hard error surfaces as
	 * POLLHUP/EOF in the next dispatch, which completes the command. */
	(void)flush(c);
	return 0;
}

/* ---- input ------------------------------------------------------------- */

static Cmd *find_cmd(QmpClient *c, int64_t id)
{
	for (Cmd *cmd = c->pending_head; cmd; cmd = cmd->next)
		if (cmd->id == id)
			return cmd;
	return NULL;
}

static void complete(QmpClient *c, Cmd *cmd, int r, struct json_object *ret,
		     const QmpReplyError *qerr)
{
	pending_unlink(c, cmd);
	cmd_forget_output(c, cmd);
	if (c->fd_cmd == cmd)
		c->fd_cmd = NULL;
	if (cmd->fn)
		cmd->fn(c, r, ret, qerr, cmd->userdata);
	free(cmd);
}

static void handshake_done(QmpClient *c, int r, struct json_object *ret,
			   const QmpReplyError *qerr, void *userdata)
{
	if (c->state == CS_DEAD)
		return;
	if (r < 0) {
		die(c, r == -EREMOTEIO ? -EPROTO : r, true);
		return;
	}
	c->state = CS_READY;
	if (c->on_state)
		c->on_state(c, 0, c->userdata);
}

static void copy_str(char *dst, size_t size, struct json_object *o)
{
	const char *s = o && json_object_is_type(o, json_type_string) ? json_object_get_string(o) : "";
	snprintf(dst, size, "%s", s);
}

static void on_message(struct json_object *msg, void *userdata)
{
	QmpClient *c = userdata;
	struct json_object *v, *id;

	if (c->state == CS_DEAD)
		return;

	if (c->state == CS_GREETING) {
		if (json_object_object_get_ex(msg, "QMP", &v) &&
		    json_object_is_type(v, json_type_object))
			c->state = CS_NEGOTIATING;
		else
			die(c, -EPROTO, true);
		return;
	}

	if (json_object_object_get_ex(msg, "event", &v)) {
		if (!json_object_is_type(v, json_type_string))
			return;
		const char *name = json_object_get_string(v);
		struct json_object *data = NULL;
		json_object_object_get_ex(msg, "data", &data);
		if (c->evq_enabled)
			evq_push(c, name, data);
		if (c->on_event)
			c->on_event(c, name, data, c->userdata);
		return;
	}

	/* A reply. Ids we do not know belong to commands that timed out;
	 * replies without an id cannot be attributed. Both are dropped. */
	if (!json_object_object_get_ex(msg, "id", &id) || !json_object_is_type(id, json_type_int))
		return;
	Cmd *cmd = find_cmd(c, json_object_get_int64(id));
	if (!cmd)
		return;

	if (json_object_object_get_ex(msg, "return", &v)) {
		complete(c, cmd, 0, v, NULL);
	} else if (json_object_object_get_ex(msg, "error", &v) &&
		   json_object_is_type(v, json_type_object)) {
		QmpReplyError qerr;
		struct json_object *f = NULL;
		json_object_object_get_ex(v, "class", &f);
		copy_str(qerr.klass, sizeof(qerr.klass), f);
		f = NULL;
		json_object_object_get_ex(v, "desc", &f);
		copy_str(qerr.desc, sizeof(qerr.desc), f);
		complete(c, cmd, -EREMOTEIO, NULL, &qerr);
	} else {
		complete(c, cmd, -EPROTO, NULL, NULL);
	}
}

static void do_read(QmpClient *c)
{
	char buf[4096]; /* small: callers may be threads with small stacks (civetweb) */

	/* Bounded so one busy connection cannot starve the owner's loop;
	 * poll() reports the rest. */
	for (int round = 0; round < 64 && c->state != CS_DEAD; round++) {
		ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				die(c, -errno, true);
			return;
		}
		if (n == 0) {
			die(c, -ECONNRESET, true);
			return;
		}
		int r = qmp_parser_feed(c->parser, buf, (size_t)n, on_message, c);
		if (r < 0) {
			die(c, r, true);
			return;
		}
	}
}

static void check_timeouts(QmpClient *c)
{
	uint64_t now = qmp_now_ms();

	if (c->state != CS_READY && now >= c->handshake_deadline) {
		die(c, -ETIMEDOUT, true);
		return;
	}
	/* Restart after each callback: it may have queued or ended things. */
	for (;;) {
		Cmd *cmd;
		for (cmd = c->pending_head; cmd; cmd = cmd->next)
			if (!cmd->internal && cmd->deadline && now >= cmd->deadline)
				break;
		if (!cmd || c->state == CS_DEAD)
			return;
		complete(c, cmd, -ETIMEDOUT, NULL, NULL);
	}
}

int qmp_client_dispatch(QmpClient *c, short revents)
{
	if (c->busy)
		return -EDEADLK;
	if (c->state == CS_DEAD)
		return c->error;

	c->busy++;
	if (c->state == CS_CONNECTING && (revents & (POLLOUT | POLLERR | POLLHUP))) {
		int e = 0;
		socklen_t l = sizeof(e);
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &l) < 0)
			e = errno;
		if (e)
			die(c, -e, true);
		else
			c->state = CS_GREETING;
	}
	if (c->state != CS_DEAD && c->state != CS_CONNECTING &&
	    (revents & (POLLIN | POLLHUP | POLLERR)))
		do_read(c);
	if (c->state != CS_DEAD && c->state != CS_CONNECTING) {
		int r = flush(c);
		if (r < 0)
			die(c, r == -EPIPE ? -ECONNRESET : r, true);
	}
	if (c->state != CS_DEAD)
		check_timeouts(c);
	c->busy--;
	return finish(c);
}

/* ---- setup and accessors ----------------------------------------------- */

static int client_setup(int fd, enum client_state state, const QmpClientOptions *opts,
			QmpClient **ret, FlError *err)
{
	static const QmpClientOptions defaults = { 0 };
	if (!opts)
		opts = &defaults;

	_cleanup_free_ QmpClient *c = calloc(1, sizeof(*c));
	if (!c)
		return fl_error_set(err, -ENOMEM, "out of memory");
	c->fd = -1;
	c->max_message = opts->max_message ? opts->max_message : QMP_MAX_MESSAGE_DEFAULT;
	/* Room for a few commands of the largest size. */
	c->max_out = c->max_message * 4;
	c->max_pending = opts->max_pending ? opts->max_pending : QMP_MAX_PENDING_DEFAULT;
	c->handshake_deadline = qmp_now_ms() + (opts->handshake_timeout_ms ? opts->handshake_timeout_ms
									    : QMP_HANDSHAKE_TIMEOUT_DEFAULT);
	c->on_state = opts->on_state;
	c->on_event = opts->on_event;
	c->userdata = opts->userdata;
	c->state = state;
	c->next_id = 1;
	c->parser = qmp_parser_new(c->max_message);
	if (!c->parser)
		return fl_error_set(err, -ENOMEM, "out of memory");

	int r = enqueue(c, "qmp_capabilities", NULL, -1, 0, handshake_done, NULL, true);
	if (r < 0) {
		qmp_parser_free(c->parser);
		return fl_error_set(err, r, "cannot queue qmp_capabilities: %s", strerror(-r));
	}
	c->fd = fd;
	*ret = TAKE_PTR(c);
	return 0;
}

int qmp_client_new_fd(int fd, const QmpClientOptions *opts, QmpClient **ret, FlError *err)
{
	_cleanup_close_ int owned = fd;

	if (fd < 0 || !ret)
		return fl_error_set(err, -EINVAL, "invalid argument");
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		return fl_error_set(err, -errno, "cannot configure QMP socket: %m");

	int r = client_setup(fd, CS_GREETING, opts, ret, err);
	if (r < 0)
		return r;
	TAKE_FD(owned);
	return 0;
}

int qmp_client_new(const char *socket_path, const QmpClientOptions *opts, QmpClient **ret,
		   FlError *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	if (!socket_path || !ret)
		return fl_error_set(err, -EINVAL, "invalid argument");
	if (strlen(socket_path) >= sizeof(sa.sun_path))
		return fl_error_set(err, -ENAMETOOLONG, "QMP socket path too long: %s", socket_path);
	strcpy(sa.sun_path, socket_path);

	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fl_error_set(err, -errno, "socket: %m");

	enum client_state state = CS_GREETING;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		/* A unix socket with a full backlog says EAGAIN; that is
		 * reported rather than retried here. */
		if (errno != EINPROGRESS)
			return fl_error_set(err, -errno, "connect to %s: %m", socket_path);
		state = CS_CONNECTING;
	}

	int r = client_setup(fd, state, opts, ret, err);
	if (r < 0)
		return r;
	TAKE_FD(fd);
	return 0;
}

int qmp_client_fd(const QmpClient *c)
{
	return c->fd;
}

short qmp_client_poll_events(const QmpClient *c)
{
	if (c->state == CS_DEAD)
		return 0;
	if (c->state == CS_CONNECTING)
		return POLLOUT;
	return POLLIN | (can_send(c) ? POLLOUT : 0);
}

int64_t qmp_client_next_deadline(const QmpClient *c)
{
	if (c->state == CS_DEAD)
		return -1;
	int64_t best = c->state != CS_READY ? (int64_t)c->handshake_deadline : -1;
	for (const Cmd *cmd = c->pending_head; cmd; cmd = cmd->next)
		if (cmd->deadline && (best < 0 || (int64_t)cmd->deadline < best))
			best = (int64_t)cmd->deadline;
	return best;
}

int qmp_client_is_ready(const QmpClient *c)
{
	return c->state == CS_READY;
}

/* ---- blocking helpers -------------------------------------------------- */

typedef bool (*sync_done_fn)(QmpClient *c, void *arg);

/*
 * Runs poll()+dispatch until done() holds, the connection ends, or
 * deadline (ms, 0 = none) passes. Returns 0 when done, 1 when the client
 * was destroyed by a callback meanwhile (c is gone), or a negative errno.
 */
static int sync_loop(QmpClient *c, sync_done_fn done, void *arg, uint64_t deadline)
{
	bool gone = false;
	int r = 0;

	c->gone = &gone;
	for (;;) {
		if (done(c, arg)) {
			r = 0;
			break;
		}
		if (c->state == CS_DEAD) {
			r = c->error;
			break;
		}
		uint64_t now = qmp_now_ms();
		if (deadline && now >= deadline) {
			r = -ETIMEDOUT;
			break;
		}
		int64_t wake = qmp_client_next_deadline(c);
		if (deadline && (wake < 0 || (uint64_t)wake > deadline))
			wake = (int64_t)deadline;
		int timeout = -1;
		if (wake >= 0)
			timeout = (uint64_t)wake <= now ? 0 : (int)((uint64_t)wake - now > INT_MAX ? INT_MAX : (uint64_t)wake - now);

		struct pollfd pfd = { .fd = c->fd, .events = qmp_client_poll_events(c) };
		int n = poll(&pfd, 1, timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			/* End the connection so that nothing stays pending with
			 * a callback pointing into a returning stack frame. */
			c->busy++;
			die(c, r, true);
			c->busy--;
			(void)finish(c);
			if (gone)
				return 1;
			break;
		}
		(void)qmp_client_dispatch(c, n > 0 ? pfd.revents : 0);
		if (gone)
			return 1;
	}
	c->gone = NULL;
	return r;
}

static bool sync_ready_or_dead(QmpClient *c, void *arg)
{
	return c->state == CS_READY;
}

/*
 * A blocking connect() on a unix socket sleeps in the kernel while the
 * listener's backlog is full (QEMU accepts one monitor client at a time and
 * leaves the others queued), bounded by SO_SNDTIMEO: so a busy monitor
 * means waiting, not an immediate -EAGAIN.
 */
static int connect_blocking(const char *path, uint64_t deadline, FlError *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	if (!path)
		return fl_error_set(err, -EINVAL, "invalid argument");
	if (strlen(path) >= sizeof(sa.sun_path))
		return fl_error_set(err, -ENAMETOOLONG, "QMP socket path too long: %s", path);
	strcpy(sa.sun_path, path);

	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fl_error_set(err, -errno, "socket: %m");
	for (;;) {
		uint64_t now = qmp_now_ms();
		uint64_t left = deadline > now ? deadline - now : 1;
		struct timeval tv = { .tv_sec = (time_t)(left / 1000),
				      .tv_usec = (suseconds_t)(left % 1000) * 1000 };
		if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
			return fl_error_set(err, -errno, "SO_SNDTIMEO: %m");
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			break;
		if (errno == EINTR && qmp_now_ms() < deadline)
			continue;
		if (errno == EAGAIN || errno == EINPROGRESS || errno == EINTR)
			return fl_error_set(err, -ETIMEDOUT, "connect to %s: listener busy", path);
		return fl_error_set(err, -errno, "connect to %s: %m", path);
	}
	struct timeval zero = { 0 };
	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &zero, sizeof(zero)) < 0)
		return fl_error_set(err, -errno, "SO_SNDTIMEO: %m");
	return TAKE_FD(fd);
}

int qmp_connect_sync(const char *socket_path, unsigned timeout_ms, QmpClient **ret, FlError *err)
{
	QmpClient *c = NULL;

	if (!ret)
		return fl_error_set(err, -EINVAL, "invalid argument");
	if (!timeout_ms)
		timeout_ms = QMP_HANDSHAKE_TIMEOUT_DEFAULT;
	uint64_t deadline = qmp_now_ms() + timeout_ms;
	int fd = connect_blocking(socket_path, deadline, err);
	if (fd < 0)
		return fd;
	uint64_t now = qmp_now_ms();
	QmpClientOptions opts = { .handshake_timeout_ms = deadline > now ? (unsigned)(deadline - now) : 1 };
	int r = qmp_client_new_fd(fd, &opts, &c, err);
	if (r < 0)
		return r;
	c->evq_enabled = true;
	r = sync_loop(c, sync_ready_or_dead, NULL, 0);
	if (r != 0) {
		if (r == 1)
			r = -ECANCELED;
		else
			qmp_client_free(c);
		return fl_error_set(err, r, "QMP handshake on %s: %s", socket_path,
				    r == -EPROTO ? "not a QMP server" : strerror(-r));
	}
	*ret = c;
	return 0;
}

typedef struct SyncCall {
	bool done;
	int r;
	struct json_object *ret;
	QmpReplyError qerr;
} SyncCall;

static void sync_reply(QmpClient *c, int r, struct json_object *ret, const QmpReplyError *qerr,
		       void *userdata)
{
	SyncCall *sc = userdata;
	sc->done = true;
	sc->r = r;
	if (ret)
		sc->ret = json_object_get(ret);
	if (qerr)
		sc->qerr = *qerr;
}

static bool sync_call_done(QmpClient *c, void *arg)
{
	return ((SyncCall *)arg)->done;
}

int qmp_call_sync(QmpClient *c, const char *command, struct json_object *args, int pass_fd,
		  unsigned timeout_ms, struct json_object **ret_json, FlError *err)
{
	SyncCall sc = { 0 };

	if (!c || !command) {
		json_object_put(args);
		return fl_error_set(err, -EINVAL, "invalid argument");
	}
	if (c->busy) {
		json_object_put(args);
		return fl_error_set(err, -EDEADLK, "qmp_call_sync called from a QMP callback");
	}
	c->evq_enabled = true;
	int r = qmp_client_command(c, command, args, pass_fd, timeout_ms, sync_reply, &sc);
	if (r < 0)
		return fl_error_set(err, r, "cannot send QMP command %s: %s", command, strerror(-r));

	(void)sync_loop(c, sync_call_done, &sc, 0);
	/* Every exit of sync_loop leaves the command completed. */
	if (sc.r == -EREMOTEIO)
		return fl_error_set(err, sc.r, "%s: %s", sc.qerr.klass, sc.qerr.desc);
	if (sc.r < 0)
		return fl_error_set(err, sc.r, "QMP command %s: %s", command, strerror(-sc.r));
	if (ret_json)
		*ret_json = sc.ret;
	else
		json_object_put(sc.ret);
	return 0;
}

typedef struct SyncEvent {
	const char *name;
	bool found;
	struct json_object *data;
} SyncEvent;

static bool sync_event_done(QmpClient *c, void *arg)
{
	SyncEvent *se = arg;
	if (!se->found)
		se->found = evq_take(c, se->name, &se->data);
	return se->found;
}

int qmp_wait_event_sync(QmpClient *c, const char *event, unsigned timeout_ms,
			struct json_object **ret_data, FlError *err)
{
	SyncEvent se = { .name = event };

	if (!c || !event)
		return fl_error_set(err, -EINVAL, "invalid argument");
	if (c->busy)
		return fl_error_set(err, -EDEADLK, "qmp_wait_event_sync called from a QMP callback");
	c->evq_enabled = true;

	uint64_t deadline = timeout_ms ? qmp_now_ms() + timeout_ms : 0;
	/* An event queued before the connection ended is still delivered:
	 * sync_loop checks for it before looking at the connection. */
	int r = sync_loop(c, sync_event_done, &se, deadline);
	if (r == 1)
		r = -ECANCELED;
	if (!se.found)
		return fl_error_set(err, r, "waiting for QMP event %s: %s", event, strerror(-r));
	if (ret_data)
		*ret_data = se.data;
	else
		json_object_put(se.data);
	return 0;
}
