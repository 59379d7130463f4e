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
