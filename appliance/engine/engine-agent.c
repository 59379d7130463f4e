// SPDX-License-Identifier: MIT
/*
 * engine-agent: the bridge between handler threads and the guest-agent
 * connections, which live on the engine's loop thread.
 *
 * DESIGN: a handler thread fills a Call, posts it to the loop with
 * fl_loop_post() and waits on the Call's semaphore. On the loop thread the
 * Call becomes an agent op (or a connect/disconnect); its completion posts
 * the semaphore exactly once. Output callbacks of execs run on the loop
 * thread. One AgentConn per running sandbox: the agent client, its fd watch
 * and its deadline timer. A connection that ends (VM gone, hostile guest)
 * fails every call in flight; the next ea_connect() makes a new one.
 */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <poll.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "cleanup.h"
#include "engine-internal.h"

typedef enum CallKind { CALL_CONNECT, CALL_DISCONNECT, CALL_OP, CALL_EXEC } CallKind;

typedef struct Call {
	CallKind kind;
	FlEngine *e;
	Sandbox *sb;
	sem_t done;
	bool completed;
	int r;
	FlError err;
	/* CALL_CONNECT */
	unsigned timeout_ms;
	/* CALL_OP */
	const char *op;
	struct json_object *args;
	struct json_object *res;
	/* CALL_EXEC */
	const FlExecSpec *spec;
	fl_output_fn out;
	void *ud;
	size_t stdin_off;
	FlExecResult result;
	struct Call *next_waiter;
} Call;

struct AgentConn {
	FlEngine *e;
	Sandbox *sb;
	AgentClient *c;
	FlWatch *watch;
	FlTimer *timer;
	int64_t timer_at;
	bool ready, dead;
	FlError dead_err;
	Call *waiters; /* CALL_CONNECTs waiting for ready */
};

static void call_complete(Call *call, int r, const FlError *err)
{
	if (call->completed)
		return;
	call->completed = true;
	call->r = r;
	if (r < 0 && err && err->msg[0])
		call->err = *err;
	else if (r < 0)
		fl_error_set(&call->err, r, "guest agent: %s", strerror(-r));
	sem_post(&call->done);
}

static void conn_update(AgentConn *ac);

static void conn_free(AgentConn *ac)
{
	if (!ac)
		return;
	FlLoop *l = ac->e->loop;
	fl_loop_unwatch(l, ac->watch);
	fl_loop_timer_cancel(l, ac->timer);
	AgentClient *c = TAKE_PTR(ac->c);
	agent_client_free(c); /* completes in-flight ops with -ECANCELED */
	FlError err = ac->dead_err;
	if (!err.msg[0])
		fl_error_set(&err, -ECONNRESET, "guest agent connection closed");
	while (ac->waiters) {
		Call *w = ac->waiters;
		ac->waiters = w->next_waiter;
		call_complete(w, err.code ? err.code : -ECONNRESET, &err);
	}
	if (ac->sb->conn == ac)
		ac->sb->conn = NULL;
	free(ac);
}

static void on_state(AgentClient *c, int r, const FlError *err, void *userdata)
{
	AgentConn *ac = userdata;
	if (r == 0) {
		ac->ready = true;
		while (ac->waiters) {
			Call *w = ac->waiters;
			ac->waiters = w->next_waiter;
			call_complete(w, 0, NULL);
		}
		return;
	}
	ac->dead = true;
	if (err && err->msg[0])
		ac->dead_err = *err;
	else
		fl_error_set(&ac->dead_err, r, "guest agent connection lost: %s", strerror(-r));
}

static void conn_dispatch(AgentConn *ac, short revents)
{
	int r = agent_client_dispatch(ac->c, revents);
	if (r < 0 || ac->dead) {
		if (!ac->dead_err.msg[0])
			fl_error_set(&ac->dead_err, r, "guest agent connection lost: %s", strerror(-r));
		conn_free(ac);
		return;
	}
	conn_update(ac);
}

static void on_watch(FlLoop *l, int fd, uint32_t revents, void *userdata)
{
	short ev = 0;
	if (revents & EPOLLIN)
		ev |= POLLIN;
	if (revents & EPOLLOUT)
		ev |= POLLOUT;
	if (revents & EPOLLHUP)
		ev |= POLLHUP;
	if (revents & EPOLLERR)
		ev |= POLLERR;
	conn_dispatch(userdata, ev);
}

static void on_timer(FlLoop *l, void *userdata)
{
	AgentConn *ac = userdata;
	ac->timer = NULL;
	ac->timer_at = -1;
	conn_dispatch(ac, 0);
}

/* Re-arms the fd watch and the deadline timer after anything changed. */
static void conn_update(AgentConn *ac)
{
	FlLoop *l = ac->e->loop;
	short ev = agent_client_poll_events(ac->c);
	uint32_t want = (ev & POLLIN ? EPOLLIN : 0) | (ev & POLLOUT ? EPOLLOUT : 0);
	fl_loop_watch_set(l, ac->watch, want);
	int64_t dl = agent_client_next_deadline(ac->c);
	if (dl != ac->timer_at) {
		fl_loop_timer_cancel(l, ac->timer);
		ac->timer = NULL;
		ac->timer_at = dl;
		if (dl >= 0)
			fl_loop_timer(l, (uint64_t)dl, on_timer, ac, &ac->timer);
	}
}

static int conn_open(FlEngine *e, Sandbox *sb, unsigned timeout_ms, AgentConn **ret, FlError *err)
{
	AgentConn *ac = calloc(1, sizeof(*ac));
	if (!ac)
		return fl_error_set(err, -ENOMEM, "out of memory");
	ac->e = e;
	ac->sb = sb;
	ac->timer_at = -1;
	AgentClientOptions o = {
		.hello_timeout_ms = timeout_ms,
		.on_state = on_state,
		.userdata = ac,
	};
	int r = agent_client_new(sb->vm.agent_path, &o, &ac->c, err);
	if (r < 0) {
		free(ac);
		return r;
	}
	r = fl_loop_watch(e->loop, agent_client_fd(ac->c), EPOLLIN | EPOLLOUT, on_watch, ac, &ac->watch);
	if (r < 0) {
		agent_client_free(ac->c);
		free(ac);
		return fl_error_set(err, r, "watch agent socket: %s", strerror(-r));
	}
	sb->conn = ac;
	conn_update(ac);
	*ret = ac;
	return 0;
}

/* ---- ops ---------------------------------------------------------------- */

static void op_on_done(AgentOp *op, int r, struct json_object *res, const FlError *err, void *ud)
{
	Call *call = ud;
	if (r == 0 && res)
		call->res = json_object_get(res);
	if (r == 0 && call->kind == CALL_EXEC) {
		AgentExecResult ar;
		if (agent_exec_result_parse(res, &ar) == 0) {
			call->result.exit_code = ar.exit_code;
			call->result.signal = ar.signal;
			call->result.timed_out = ar.timed_out;
			call->result.duration_ms = ar.duration_ms;
			call->result.stdout_bytes = ar.stdout_bytes;
			call->result.stderr_bytes = ar.stderr_bytes;
		} else {
			r = -EPROTO;
			err = NULL;
		}
	}
	call_complete(call, r, err);
}

static void op_on_data(AgentOp *op, int fd, const void *buf, size_t len, void *ud)
{
	Call *call = ud;
	if (call->out && len > 0)
		call->out(fd, buf, len, call->ud);
}

static void op_feed_stdin(AgentOp *op, void *ud)
{
	Call *call = ud;
	const FlExecSpec *s = call->spec;
	while (call->stdin_off < s->stdin_len) {
		ssize_t n = agent_op_write(op, (const char *)s->stdin_data + call->stdin_off,
					   s->stdin_len - call->stdin_off);
		if (n <= 0)
			break;
		call->stdin_off += (size_t)n;
	}
	if (call->stdin_off >= s->stdin_len)
		agent_op_close_input(op);
}

static void run_call(FlLoop *l, void *userdata)
{
	Call *call = userdata;
	Sandbox *sb = call->sb;
	AgentConn *ac = sb->conn;
	FlError err = {0};
	int r;

	switch (call->kind) {
	case CALL_CONNECT:
		if (ac && ac->ready) {
			call_complete(call, 0, NULL);
			return;
		}
		if (!ac) {
			r = conn_open(call->e, sb, call->timeout_ms, &ac, &err);
			if (r < 0) {
				call_complete(call, r, &err);
				return;
			}
		}
		call->next_waiter = ac->waiters;
		ac->waiters = call;
		return;
	case CALL_DISCONNECT:
		conn_free(ac);
		call_complete(call, 0, NULL);
		return;
	case CALL_OP:
	case CALL_EXEC:
		break;
	}
	if (!ac || !ac->ready) {
		fl_error_set(&err, -ENOTCONN, "sandbox agent is not connected");
		call_complete(call, -ENOTCONN, &err);
		return;
	}
	AgentOpHandlers h = {.on_done = op_on_done, .on_data = op_on_data};
	AgentOp *op = NULL;
	if (call->kind == CALL_OP) {
		r = agent_op_start(ac->c, call->op, TAKE_PTR(call->args), call->timeout_ms, &h, call, &op, &err);
	} else {
		const FlExecSpec *s = call->spec;
		AgentExecSpec as = {
			.argv = s->argv, .shell = s->shell, .env = s->env, .cwd = s->cwd, .user = s->user,
			.stdin_stream = s->stdin_data != NULL, .timeout_ms = s->timeout_ms,
		};
		h.on_writable = op_feed_stdin;
		unsigned host_timeout = s->timeout_ms ? s->timeout_ms + 10000 : 0;
		r = agent_exec_start(ac->c, &as, host_timeout, &h, call, &op, &err);
		if (r >= 0 && s->stdin_data)
			op_feed_stdin(op, call);
	}
	if (r < 0)
		call_complete(call, r, &err);
	conn_update(ac);
}

static int post_and_wait(Call *call)
{
	sem_init(&call->done, 0, 0);
	int r = fl_loop_post(call->e->loop, run_call, call);
	if (r < 0) {
		sem_destroy(&call->done);
		return fl_error_set(&call->err, r, "engine is shutting down");
	}
	while (sem_wait(&call->done) < 0 && errno == EINTR)
		;
	sem_destroy(&call->done);
	return call->r;
}

int ea_connect(FlEngine *e, Sandbox *sb, unsigned timeout_ms, FlError *err)
{
	Call call = {.kind = CALL_CONNECT, .e = e, .sb = sb, .timeout_ms = timeout_ms};
	int r = post_and_wait(&call);
	if (r < 0 && err)
		*err = call.err;
	return r;
}

void ea_disconnect(FlEngine *e, Sandbox *sb)
{
	Call call = {.kind = CALL_DISCONNECT, .e = e, .sb = sb};
	post_and_wait(&call);
}

int ea_call(FlEngine *e, Sandbox *sb, const char *op, struct json_object *args,
	    unsigned timeout_ms, struct json_object **ret, FlError *err)
{
	Call call = {.kind = CALL_OP, .e = e, .sb = sb, .op = op, .args = args, .timeout_ms = timeout_ms};
	int r = post_and_wait(&call);
	json_object_put(call.args); /* not taken if the post failed */
	if (r < 0) {
		if (err)
			*err = call.err;
		json_object_put(call.res);
		return r;
	}
	if (ret)
		*ret = call.res;
	else
		json_object_put(call.res);
	return 0;
}

int ea_exec(FlEngine *e, Sandbox *sb, const FlExecSpec *spec, fl_output_fn out, void *ud,
	    FlExecResult *ret, FlError *err)
{
	Call call = {.kind = CALL_EXEC, .e = e, .sb = sb, .spec = spec, .out = out, .ud = ud};
	int r = post_and_wait(&call);
	json_object_put(call.res);
	if (r < 0) {
		if (err)
			*err = call.err;
		return r;
	}
	*ret = call.result;
	return 0;
}

/* ---- streams ---------------------------------------------------------- */

#define STREAM_CHUNK 65536

struct FlStream {
	FlEngine *e;
	Sandbox *sb;
	FlStreamSpec spec;
	AgentExecSpec exec;
	int in_rd, in_wr, out_rd, out_wr;
	/* loop thread only */
	AgentOp *op;
	FlWatch *in_watch, *out_watch;
	char inbuf[STREAM_CHUNK];
	size_t in_len, in_off;
	bool in_done, op_done, completed;
	char *outq;
	size_t out_len, out_cap;
	/* results, valid after `done` */
	sem_t done;
	int r;
	FlError err;
	struct json_object *res;
};

static void stream_complete(FlStream *st)
{
	if (st->completed)
		return;
	st->completed = true;
	FlLoop *l = st->e->loop;
	fl_loop_unwatch(l, st->in_watch);
	fl_loop_unwatch(l, st->out_watch);
	st->in_watch = st->out_watch = NULL;
	close(st->out_wr); /* EOF for the reader */
	st->out_wr = -1;
	close(st->in_rd);
	st->in_rd = -1;
	sem_post(&st->done);
}

/* Writes queued output to the pipe; pauses the op while the reader lags. */
static void stream_flush(FlStream *st)
{
	while (st->out_len > 0) {
		ssize_t n = write(st->out_wr, st->outq, st->out_len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0) { /* the reader went away: nothing more to deliver */
			st->out_len = 0;
			if (st->op)
				agent_op_cancel(st->op);
			break;
		}
		memmove(st->outq, st->outq + n, st->out_len - (size_t)n);
		st->out_len -= (size_t)n;
	}
	bool backlog = st->out_len > 0;
	if (st->op)
		agent_op_pause(st->op, backlog);
	if (st->out_watch)
		fl_loop_watch_set(st->e->loop, st->out_watch, backlog ? EPOLLOUT : 0);
	if (!backlog && st->op_done)
		stream_complete(st);
	else if (st->sb->conn)
		conn_update(st->sb->conn);
}

static void stream_on_out(FlLoop *l, int fd, uint32_t revents, void *ud)
{
	stream_flush(ud);
}

static void stream_on_data(AgentOp *op, int fd, const void *buf, size_t len, void *ud)
{
	FlStream *st = ud;
	if (len == 0)
		return;
	size_t need = st->out_len + 5 + len;
	if (need > st->out_cap) {
		size_t cap = st->out_cap ? st->out_cap : STREAM_CHUNK;
		while (cap < need)
			cap *= 2;
		char *q = realloc(st->outq, cap);
		if (!q) {
			agent_op_cancel(op);
			return;
		}
		st->outq = q;
		st->out_cap = cap;
	}
	uint32_t l32 = (uint32_t)len;
	st->outq[st->out_len] = (char)fd;
	for (int i = 0; i < 4; i++)
		st->outq[st->out_len + 1 + i] = (char)(l32 >> (8 * i));
	memcpy(st->outq + st->out_len + 5, buf, len);
	st->out_len += 5 + len;
	stream_flush(st);
}

static void stream_pump_input(FlStream *st)
{
	while (st->op && !st->in_done) {
		if (st->in_off == st->in_len) {
			ssize_t n = read(st->in_rd, st->inbuf, sizeof(st->inbuf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno == EAGAIN)
				break;
			if (n <= 0) {
				st->in_done = true;
				agent_op_close_input(st->op);
				break;
			}
			st->in_len = (size_t)n;
			st->in_off = 0;
		}
		ssize_t k = agent_op_write(st->op, st->inbuf + st->in_off, st->in_len - st->in_off);
		if (k < 0) { /* the op no longer takes input */
			st->in_done = true;
			break;
		}
		st->in_off += (size_t)k;
		if (st->in_off < st->in_len)
			break; /* wait for on_writable */
	}
	if (st->in_watch)
		fl_loop_watch_set(st->e->loop, st->in_watch,
				  !st->in_done && st->in_off == st->in_len ? EPOLLIN : 0);
	if (st->in_done && st->in_watch) {
		fl_loop_unwatch(st->e->loop, st->in_watch);
		st->in_watch = NULL;
	}
	if (st->sb->conn)
		conn_update(st->sb->conn);
}

static void stream_on_in(FlLoop *l, int fd, uint32_t revents, void *ud)
{
	stream_pump_input(ud);
}

static void stream_on_writable(AgentOp *op, void *ud)
{
	stream_pump_input(ud);
}

static void stream_on_done(AgentOp *op, int r, struct json_object *res, const FlError *err, void *ud)
{
	FlStream *st = ud;
	st->r = r;
	if (r == 0 && res)
		st->res = json_object_get(res);
	if (r < 0) {
		if (err && err->msg[0])
			st->err = *err;
		else
			fl_error_set(&st->err, r, "guest agent: %s", strerror(-r));
	}
	st->op = NULL;
	st->op_done = true;
	if (st->in_watch) {
		fl_loop_unwatch(st->e->loop, st->in_watch);
		st->in_watch = NULL;
	}
	if (st->out_len == 0)
		stream_complete(st);
}

static void stream_start(FlLoop *l, void *ud)
{
	FlStream *st = ud;
	AgentConn *ac = st->sb->conn;
	FlError err = {0};
	int r = -ENOTCONN;
	if (!ac || !ac->ready) {
		fl_error_set(&err, r, "sandbox agent is not connected");
		goto fail;
	}
	AgentOpHandlers h = {.on_data = stream_on_data, .on_writable = stream_on_writable,
			     .on_done = stream_on_done};
	r = fl_loop_watch(l, st->out_wr, 0, stream_on_out, st, &st->out_watch);
	if (r >= 0 && st->spec.input)
		r = fl_loop_watch(l, st->in_rd, EPOLLIN, stream_on_in, st, &st->in_watch);
	if (r < 0) {
		fl_error_set(&err, r, "watch stream: %s", strerror(-r));
		goto fail;
	}
	if (st->spec.exec)
		r = agent_exec_start(ac->c, &st->exec, st->spec.timeout_ms, &h, st, &st->op, &err);
	else
		r = agent_op_start(ac->c, st->spec.op, TAKE_PTR(st->spec.args), st->spec.timeout_ms, &h, st,
				   &st->op, &err);
	if (r < 0)
		goto fail;
	if (!st->spec.input) {
		st->in_done = true;
		if (st->spec.exec && st->exec.stdin_stream)
			agent_op_close_input(st->op);
	}
	conn_update(ac);
	return;
fail:
	st->r = r;
	st->err = err;
	st->op_done = true;
	stream_complete(st);
}

int ea_stream_open(FlEngine *e, Sandbox *sb, const FlStreamSpec *spec, FlStream **ret, FlError *err)
{
	FlStream *st = calloc(1, sizeof(*st));
	if (!st) {
		json_object_put(spec->args);
		return fl_error_set(err, -ENOMEM, "out of memory");
	}
	st->e = e;
	st->sb = sb;
	st->spec = *spec;
	if (spec->exec) {
		const FlExecSpec *x = spec->exec;
		st->exec = (AgentExecSpec){
			.argv = x->argv, .shell = x->shell, .env = x->env, .cwd = x->cwd, .user = x->user,
			.stdin_stream = spec->input, .timeout_ms = x->timeout_ms,
			.pty = !strcmp(spec->op, "pty"), .rows = spec->rows, .cols = spec->cols,
		};
	}
	int in[2], out[2];
	if (pipe2(in, O_CLOEXEC) < 0) {
		free(st);
		json_object_put(spec->args);
		return fl_error_set(err, -errno, "pipe: %m");
	}
	if (pipe2(out, O_CLOEXEC) < 0) {
		close(in[0]);
		close(in[1]);
		free(st);
		json_object_put(spec->args);
		return fl_error_set(err, -errno, "pipe: %m");
	}
	/* the loop's ends never block it */
	fcntl(in[0], F_SETFL, O_NONBLOCK);
	fcntl(out[1], F_SETFL, O_NONBLOCK);
	st->in_rd = in[0];
	st->in_wr = in[1];
	st->out_rd = out[0];
	st->out_wr = out[1];
	if (!spec->input) {
		close(st->in_wr);
		st->in_wr = -1;
	}
	sem_init(&st->done, 0, 0);
	int r = fl_loop_post(e->loop, stream_start, st);
	if (r < 0) {
		json_object_put(st->spec.args);
		close(st->in_rd);
		if (st->in_wr >= 0)
			close(st->in_wr);
		close(st->out_rd);
		close(st->out_wr);
		sem_destroy(&st->done);
		free(st);
		return fl_error_set(err, r, "engine is shutting down");
	}
	*ret = st;
	return 0;
}

int fl_stream_in_fd(const FlStream *s)
{
	return s->in_wr;
}

int fl_stream_out_fd(const FlStream *s)
{
	return s->out_rd;
}

void fl_stream_close_input(FlStream *s)
{
	if (s->in_wr >= 0)
		close(s->in_wr);
	s->in_wr = -1;
}

/*
 * Cancel and resize run on the loop thread and the caller waits for them:
 * once they return, the loop holds no pointer to the stream, so the caller
 * may fl_stream_finish() it at once.
 */
typedef struct StreamCtl {
	FlStream *st;
	bool cancel;
	unsigned rows, cols;
	sem_t done;
	int r;
} StreamCtl;

static void stream_ctl(FlLoop *l, void *ud)
{
	StreamCtl *c = ud;
	if (!c->st->op)
		c->r = -ESRCH;
	else if (c->cancel)
		agent_op_cancel(c->st->op);
	else
		c->r = agent_pty_resize(c->st->op, c->rows, c->cols);
	if (c->st->sb->conn)
		conn_update(c->st->sb->conn);
	sem_post(&c->done);
}

static int stream_ctl_run(StreamCtl *c)
{
	sem_init(&c->done, 0, 0);
	int r = fl_loop_post(c->st->e->loop, stream_ctl, c);
	if (r >= 0) {
		while (sem_wait(&c->done) < 0 && errno == EINTR)
			;
		r = c->r;
	}
	sem_destroy(&c->done);
	return r;
}

void fl_stream_cancel(FlStream *s)
{
	StreamCtl c = {.st = s, .cancel = true};
	stream_ctl_run(&c);
}

int fl_stream_resize(FlStream *s, unsigned rows, unsigned cols)
{
	StreamCtl c = {.st = s, .rows = rows, .cols = cols};
	return stream_ctl_run(&c);
}

int ea_stream_finish(FlStream *st, FlEngine **ret_e, Sandbox **ret_sb, struct json_object **ret,
		     FlError *err)
{
	*ret_e = st->e;
	*ret_sb = st->sb;
	fl_stream_close_input(st);
	/* Closing our read end makes further output fail with EPIPE, which
	 * cancels an op whose reader stopped reading before the end. */
	close(st->out_rd);
	while (sem_wait(&st->done) < 0 && errno == EINTR)
		;
	sem_destroy(&st->done);
	int r = st->r;
	if (r < 0 && err)
		*err = st->err;
	if (r >= 0 && ret)
		*ret = TAKE_PTR(st->res);
	json_object_put(st->res);
	free(st->outq);
	free(st);
	return r;
}
