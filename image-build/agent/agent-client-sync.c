// SPDX-License-Identifier: MIT
/*
 * libagentc blocking helpers: connect, call, exec with fds or captured
 * output, file put/get, fsfreeze/thaw and identity refresh. Each runs a
 * private poll loop on the client (plus, for exec and put, the local fd it
 * copies from) until its op completes or the timeout passes.
 *
 * DESIGN: for tools and tests only; the daemon drives AgentClient from its
 * own loop. Memory stays bounded: output goes straight to the caller's fd
 * (or a buffer capped by max_out), input is read in 64 KiB pieces only when
 * the agent has credit for them.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "agent-client.h"
#include "agent-proto.h"
#include "cleanup.h"

typedef struct Waiter {
	bool done;
	int r;
	struct json_object *res;
	FlError err;
	/* exec/put input */
	int in_fd;
	uint8_t *in_buf;
	size_t in_len, in_off;
	const uint8_t *in_mem;
	size_t in_mem_len, in_mem_off;
	bool in_eof;
	/* output */
	int out_fd[3];
	char *cap[3];
	size_t cap_len[3], cap_max;
	uint64_t total[3];
	int write_err;
	AgentOp *op;
} Waiter;

static void w_done(AgentOp *op, int r, struct json_object *res, const FlError *err, void *ud)
{
	Waiter *w = ud;
	w->done = true;
	w->r = r;
	w->op = NULL;
	if (res)
		w->res = json_object_get(res);
	if (err)
		w->err = *err;
}

static void w_data(AgentOp *op, int fd, const void *buf, size_t len, void *ud)
{
	Waiter *w = ud;
	if (len == 0)
		return;
	w->total[fd] += len;
	if (w->out_fd[fd] >= 0) {
		const uint8_t *p = buf;
		while (len) {
			ssize_t n = write(w->out_fd[fd], p, len);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				if (!w->write_err)
					w->write_err = -errno;
				return;
			}
			p += n;
			len -= (size_t)n;
		}
	} else if (w->cap_max && w->cap_len[fd] < w->cap_max) {
		size_t n = len;
		if (n > w->cap_max - w->cap_len[fd])
			n = w->cap_max - w->cap_len[fd];
		char *nb = realloc(w->cap[fd], w->cap_len[fd] + n + 1);
		if (!nb) {
			w->write_err = -ENOMEM;
			return;
		}
		memcpy(nb + w->cap_len[fd], buf, n);
		w->cap[fd] = nb;
		w->cap_len[fd] += n;
		nb[w->cap_len[fd]] = 0;
	}
}

/* Pushes pending input into the op. */
static void w_pump(Waiter *w)
{
	AgentOp *op = w->op;
	while (op && !w->done) {
		const uint8_t *p;
		size_t avail;
		if (w->in_mem) {
			p = w->in_mem + w->in_mem_off;
			avail = w->in_mem_len - w->in_mem_off;
		} else {
			p = w->in_buf + w->in_off;
			avail = w->in_len - w->in_off;
		}
		if (avail == 0) {
			if (w->in_eof) {
				agent_op_close_input(op);
				w->op = NULL; /* nothing more to send */
			}
			return;
		}
		ssize_t n = agent_op_write(op, p, avail);
		if (n <= 0)
			return;
		if (w->in_mem)
			w->in_mem_off += (size_t)n;
		else
			w->in_off += (size_t)n;
	}
}

static void w_writable(AgentOp *op, void *ud)
{
	w_pump(ud);
}

static const AgentOpHandlers w_handlers = {
	.on_data = w_data,
	.on_writable = w_writable,
	.on_done = w_done,
};

static void w_free(Waiter *w)
{
	json_object_put(w->res);
	for (int i = 0; i < 3; i++)
		free(w->cap[i]);
	free(w->in_buf);
}

/* Runs the loop until *flag or the deadline (0: none). */
static int run(AgentClient *c, bool *flag, uint64_t deadline, Waiter *w)
{
	while (!*flag) {
		struct pollfd p[2];
		int n = 0;
		p[n++] = (struct pollfd){.fd = agent_client_fd(c), .events = agent_client_poll_events(c)};
		if (p[0].fd < 0)
			return -ECONNRESET;
		/* local input: read only when everything read before has gone */
		bool want_in = w && w->op && w->in_fd >= 0 && !w->in_eof && w->in_off == w->in_len;
		if (want_in)
			p[n++] = (struct pollfd){.fd = w->in_fd, .events = POLLIN};
		int64_t d = agent_client_next_deadline(c);
		if (deadline && (d < 0 || (uint64_t)d > deadline))
			d = (int64_t)deadline;
		uint64_t now = agent_now_ms();
		int timeout = d < 0 ? -1 : (uint64_t)d <= now ? 0 : (int)((uint64_t)d - now);
		int r = poll(p, (nfds_t)n, timeout);
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r > 0 && n > 1 && p[1].revents) {
			if (!w->in_buf)
				w->in_buf = malloc(AGENT_CHUNK);
			if (!w->in_buf)
				return -ENOMEM;
			ssize_t k = read(w->in_fd, w->in_buf, AGENT_CHUNK);
			if (k < 0 && errno != EINTR && errno != EAGAIN)
				return -errno;
			if (k == 0)
				w->in_eof = true;
			if (k >= 0) {
				w->in_len = (size_t)k;
				w->in_off = 0;
			}
			w_pump(w);
		}
		r = agent_client_dispatch(c, r > 0 ? p[0].revents : 0);
		if (r < 0 && !*flag)
			return r;
		if (!*flag && deadline && agent_now_ms() >= deadline)
			return -ETIMEDOUT;
	}
	return 0;
}

int agent_wait_ready_sync(AgentClient *c, unsigned timeout_ms, FlError *err)
{
	uint64_t deadline = timeout_ms ? agent_now_ms() + timeout_ms : 0;
	while (!agent_client_is_ready(c)) {
		struct pollfd p = {.fd = agent_client_fd(c), .events = agent_client_poll_events(c)};
		if (p.fd < 0)
			return fl_error_set(err, -ECONNRESET, "agent connection closed before hello");
		int64_t d = agent_client_next_deadline(c);
		if (deadline && (d < 0 || (uint64_t)d > deadline))
			d = (int64_t)deadline;
		uint64_t now = agent_now_ms();
		int timeout = d < 0 ? -1 : (uint64_t)d <= now ? 0 : (int)((uint64_t)d - now);
		int r = poll(&p, 1, timeout);
		if (r < 0 && errno != EINTR)
			return fl_error_set(err, -errno, "poll: %s", strerror(errno));
		r = agent_client_dispatch(c, r > 0 ? p.revents : 0);
		if (r < 0)
			return fl_error_set(err, r, "agent connection failed before hello: %s", strerror(-r));
		if (!agent_client_is_ready(c) && deadline && agent_now_ms() >= deadline)
			return fl_error_set(err, -ETIMEDOUT, "no answer from the agent within %u ms",
					    timeout_ms);
	}
	return 0;
}

int agent_connect_sync(const char *socket_path, unsigned timeout_ms, AgentClient **ret, FlError *err)
{
	AgentClient *c;
	int r = agent_client_new(socket_path, NULL, &c, err);
	if (r < 0)
		return r;
	r = agent_wait_ready_sync(c, timeout_ms, err);
	if (r < 0) {
		agent_client_free(c);
		return r;
	}
	*ret = c;
	return 0;
}

/* Starts op, waits for it; w may carry I/O state. */
static int op_sync(AgentClient *c, const char *opname, struct json_object *args,
		   unsigned timeout_ms, Waiter *w, FlError *err)
{
	FlError e = {0};
	int r = agent_op_start(c, opname, args, timeout_ms, &w_handlers, w, &w->op, &e);
	if (r < 0) {
		if (err)
			*err = e;
		return r;
	}
	if (w->in_mem || w->in_fd >= 0)
		w_pump(w);
	r = run(c, &w->done, 0, w);
	if (r < 0 && !w->done)
		return fl_error_set(err, r, "agent %s: %s", opname, strerror(-r));
	if (w->r < 0) {
		if (err)
			*err = w->err;
		return w->r;
	}
	if (w->write_err)
		return fl_error_set(err, w->write_err, "agent %s: local write: %s", opname,
				    strerror(-w->write_err));
	return 0;
}

int agent_call_sync(AgentClient *c, const char *op, struct json_object *args, unsigned timeout_ms,
		    struct json_object **ret_json, FlError *err)
{
	Waiter w = {.in_fd = -1, .out_fd = {-1, -1, -1}};
	int r = op_sync(c, op, args, timeout_ms, &w, err);
	if (r == 0 && ret_json)
		*ret_json = TAKE_PTR(w.res);
	w_free(&w);
	return r;
}

static int exec_common(AgentClient *c, const AgentExecSpec *spec, Waiter *w, unsigned timeout_ms,
		       AgentExecResult *res, FlError *err)
{
	AgentExecSpec s = *spec;
	s.stdin_stream = w->in_fd >= 0 || w->in_mem;
	s.pty = false;
	struct json_object *a;
	int r = agent_exec_args(&s, &a, err);
	if (r < 0)
		return r;
	r = op_sync(c, "exec", a, timeout_ms, w, err);
	if (r < 0)
		return r;
	AgentExecResult tmp;
	if (agent_exec_result_parse(w->res, res ? res : &tmp) < 0)
		return fl_error_set(err, -EPROTO, "exec: reply without exit status");
	if (res) {
		res->stdout_bytes = w->total[1];
		res->stderr_bytes = w->total[2];
	}
	return 0;
}

int agent_exec_sync(AgentClient *c, const AgentExecSpec *spec, int stdin_fd, int stdout_fd,
		    int stderr_fd, unsigned timeout_ms, AgentExecResult *res, FlError *err)
{
	Waiter w = {.in_fd = stdin_fd, .out_fd = {-1, stdout_fd, stderr_fd}};
	int r = exec_common(c, spec, &w, timeout_ms, res, err);
	w_free(&w);
	return r;
}

int agent_exec_capture_sync(AgentClient *c, const AgentExecSpec *spec, const void *in,
			    size_t in_len, size_t max_out, char **ret_out, size_t *ret_out_len,
			    char **ret_err, size_t *ret_err_len, unsigned timeout_ms,
			    AgentExecResult *res, FlError *err)
{
	Waiter w = {.in_fd = -1, .out_fd = {-1, -1, -1}, .cap_max = max_out};
	static const uint8_t empty[1];
	if (in) {
		w.in_mem = in_len ? in : empty;
		w.in_mem_len = in_len;
		w.in_eof = true;
	}
	int r = exec_common(c, spec, &w, timeout_ms, res, err);
	if (r == 0) {
		for (int fd = 1; fd < 3; fd++) {
			char **dst = fd == 1 ? ret_out : ret_err;
			size_t *dl = fd == 1 ? ret_out_len : ret_err_len;
			if (!dst)
				continue;
			if (!w.cap[fd])
				w.cap[fd] = calloc(1, 1);
			if (dl)
				*dl = w.cap_len[fd];
			*dst = TAKE_PTR(w.cap[fd]);
		}
	}
	w_free(&w);
	return r;
}

static struct json_object *put_args(const char *path, const AgentFileAttrs *a)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "path", json_object_new_string(path));
	if (a) {
		if (a->mode >= 0)
			json_object_object_add(o, "mode", json_object_new_int(a->mode));
		if (a->owner)
			json_object_object_add(o, "owner", json_object_new_string(a->owner));
		if (a->group)
			json_object_object_add(o, "group", json_object_new_string(a->group));
		if (a->mkdirs)
			json_object_object_add(o, "mkdirs", json_object_new_boolean(1));
	}
	return o;
}

int agent_file_put_sync(AgentClient *c, int local_fd, const char *guest_path,
			const AgentFileAttrs *attrs, unsigned timeout_ms, uint64_t *ret_bytes,
			FlError *err)
{
	Waiter w = {.in_fd = local_fd, .out_fd = {-1, -1, -1}};
	int r = op_sync(c, "file_write", put_args(guest_path, attrs), timeout_ms, &w, err);
	if (r == 0 && ret_bytes) {
		uint64_t b = 0;
		agent_json_get_u64(w.res, "bytes", &b);
		*ret_bytes = b;
	}
	w_free(&w);
	return r;
}

int agent_file_put_buf_sync(AgentClient *c, const void *buf, size_t len, const char *guest_path,
			    const AgentFileAttrs *attrs, unsigned timeout_ms, FlError *err)
{
	static const uint8_t empty[1];
	Waiter w = {.in_fd = -1, .out_fd = {-1, -1, -1}, .in_mem = len ? buf : empty,
		    .in_mem_len = len, .in_eof = true};
	int r = op_sync(c, "file_write", put_args(guest_path, attrs), timeout_ms, &w, err);
	w_free(&w);
	return r;
}

int agent_file_get_sync(AgentClient *c, const char *guest_path, int local_fd,
			unsigned timeout_ms, uint64_t *ret_bytes, FlError *err)
{
	Waiter w = {.in_fd = -1, .out_fd = {-1, local_fd, -1}};
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "path", json_object_new_string(guest_path));
	int r = op_sync(c, "file_read", o, timeout_ms, &w, err);
	if (r == 0 && ret_bytes)
		*ret_bytes = w.total[1];
	w_free(&w);
	return r;
}

static int count_call(AgentClient *c, const char *op, struct json_object *args,
		      unsigned timeout_ms, unsigned *ret_count, FlError *err)
{
	struct json_object *res = NULL;
	int r = agent_call_sync(c, op, args, timeout_ms, &res, err);
	if (r == 0 && ret_count) {
		uint64_t n = 0;
		agent_json_get_u64(res, "count", &n);
		*ret_count = (unsigned)n;
	}
	json_object_put(res);
	return r;
}

int agent_fsfreeze_sync(AgentClient *c, unsigned auto_thaw_ms, unsigned timeout_ms,
			unsigned *ret_count, FlError *err)
{
	struct json_object *a = json_object_new_object();
	if (auto_thaw_ms)
		json_object_object_add(a, "timeout_ms", json_object_new_int64(auto_thaw_ms));
	return count_call(c, "fsfreeze", a, timeout_ms, ret_count, err);
}

int agent_fsthaw_sync(AgentClient *c, unsigned timeout_ms, unsigned *ret_count, FlError *err)
{
	return count_call(c, "fsthaw", NULL, timeout_ms, ret_count, err);
}

int agent_identity_sync(AgentClient *c, const AgentIdentity *id, unsigned timeout_ms,
			struct json_object **ret_json, FlError *err)
{
	struct json_object *a = json_object_new_object();
	uint8_t rnd[64];
	const uint8_t *ent = id->entropy;
	size_t elen = id->entropy_len;
	if (!ent) {
		if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd)) {
			json_object_put(a);
			return fl_error_set(err, -EIO, "getrandom failed");
		}
		ent = rnd;
		elen = sizeof(rnd);
	}
	if (elen > 4096) {
		json_object_put(a);
		return fl_error_set(err, -EINVAL, "identity: at most 4096 bytes of entropy");
	}
	if (elen) {
		char *hex = malloc(2 * elen + 1);
		if (!hex) {
			json_object_put(a);
			return fl_error_set(err, -ENOMEM, "out of memory");
		}
		agent_hex(ent, elen, hex);
		json_object_object_add(a, "entropy", json_object_new_string(hex));
		free(hex);
	}
	if (id->hostname)
		json_object_object_add(a, "hostname", json_object_new_string(id->hostname));
	if (id->machine_id)
		json_object_object_add(a, "machine_id", json_object_new_string(id->machine_id));
	else
		json_object_object_add(a, "new_machine_id", json_object_new_boolean(1));
	if (id->set_clock) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		json_object_object_add(a, "time_ns",
				       json_object_new_int64((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec));
	}
	if (id->dhcp)
		json_object_object_add(a, "dhcp", json_object_new_boolean(1));
	return agent_call_sync(c, "identity", a, timeout_ms, ret_json, err);
}
