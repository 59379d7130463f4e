/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for QmpClient against a scripted fake QMP server.
 *
 * Most tests drive both ends from one thread: the fake server end of a
 * socketpair is read and written directly while the client is pumped with
 * poll()+qmp_client_dispatch(), so every interleaving is deterministic.
 * The blocking helpers (qmp_connect_sync & co.) are tested against a fake
 * server thread on a real unix socket.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "cleanup.h"
#include "qmp.h"

#define GREETING                                                                                   \
	"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, "         \
	"\"package\": \"\"}, \"capabilities\": [\"oob\"]}}\r\n"

/* ---- fake server (same thread) ------------------------------------------ */

#define FAKE_MAX 64

typedef struct Fake {
	int fd; /* server end */
	QmpParser *parser;
	struct json_object *msgs[FAKE_MAX];
	unsigned head, n;        /* queue of received commands */
	unsigned total;          /* commands received so far */
	int fds[8];              /* descriptors received, in order */
	unsigned fd_msg[8];      /* index (in total) of the command each came with */
	unsigned nfds;
} Fake;

static void fake_on_msg(struct json_object *msg, void *userdata)
{
	Fake *f = userdata;
	assert_true(f->head + f->n < FAKE_MAX);
	f->msgs[f->head + f->n++] = json_object_get(msg);
	f->total++;
}

static void fake_init(Fake *f, int fd)
{
	memset(f, 0, sizeof(*f));
	f->fd = fd;
	f->parser = qmp_parser_new(0);
}

static void fake_close(Fake *f)
{
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
}

static void fake_fini(Fake *f)
{
	fake_close(f);
	for (unsigned i = 0; i < f->n; i++)
		json_object_put(f->msgs[f->head + i]);
	for (unsigned i = 0; i < f->nfds; i++)
		close(f->fds[i]);
	qmp_parser_free(f->parser);
}

/* Reads what is available on the server end (non-blocking). */
static void fake_read(Fake *f)
{
	char buf[4096];
	union {
		char b[CMSG_SPACE(sizeof(int) * 4)];
		struct cmsghdr align;
	} ctl;
	for (;;) {
		struct iovec iov = { buf, sizeof(buf) };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
				     .msg_controllen = sizeof(ctl.b) };
		ssize_t n = recvmsg(f->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n <= 0)
			return;
		unsigned first = f->nfds;
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
				continue;
			size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < k; i++) {
				assert_true(f->nfds < 8);
				memcpy(&f->fds[f->nfds++], CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			}
		}
		assert_int_equal(qmp_parser_feed(f->parser, buf, (size_t)n, fake_on_msg, f), 0);
		/* The kernel ends a read after the bytes that carried
		 * descriptors: they belong to the last command of this read
		 * (the fake only sees whole commands from the client). */
		for (unsigned i = first; i < f->nfds; i++)
			f->fd_msg[i] = f->total - 1;
	}
}

static void fake_send(Fake *f, const char *fmt, ...)
{
	char buf[8192];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	assert_true(n > 0 && (size_t)n < sizeof(buf));
	assert_int_equal(write(f->fd, buf, (size_t)n), n);
}

/* One loop iteration: waits up to ms for the client or the server end. */
static int pump(QmpClient *c, Fake *f, int ms)
{
	struct pollfd pfd[2] = {
		{ .fd = qmp_client_fd(c), .events = qmp_client_poll_events(c) },
		{ .fd = f ? f->fd : -1, .events = POLLIN },
	};
	int64_t dl = qmp_client_next_deadline(c);
	if (dl >= 0) {
		int64_t left = dl - (int64_t)qmp_now_ms();
		if (left < ms)
			ms = left < 0 ? 0 : (int)left;
	}
	int n = poll(pfd, 2, ms);
	assert_true(n >= 0);
	if (f && f->fd >= 0)
		fake_read(f);
	return qmp_client_dispatch(c, pfd[0].revents);
}

/* Pumps until the server has a command; checks its name; returns its id. */
static int64_t fake_expect(Fake *f, QmpClient *c, const char *execute,
			   struct json_object **ret_msg)
{
	uint64_t end = qmp_now_ms() + 2000;
	while (f->n == 0 && qmp_now_ms() < end)
		pump(c, f, 20);
	if (f->n == 0)
		fail_msg("fake server: no command, wanted %s", execute);
	struct json_object *msg = f->msgs[f->head++];
	f->n--;
	struct json_object *v, *id;
	assert_true(json_object_object_get_ex(msg, "execute", &v));
	assert_string_equal(json_object_get_string(v), execute);
	assert_true(json_object_object_get_ex(msg, "id", &id));
	int64_t r = json_object_get_int64(id);
	if (ret_msg)
		*ret_msg = msg;
	else
		json_object_put(msg);
	return r;
}

/* ---- client side recorders --------------------------------------------- */

typedef struct Ctx {
	int state_calls;
	int state_r;
	int events;
	char event_names[16][32];
	char event_data[16][128];
	QmpClient *free_on_event; /* frees this client from the event handler */
} Ctx;

static void on_state(QmpClient *c, int r, void *userdata)
{
	Ctx *x = userdata;
	x->state_calls++;
	x->state_r = r;
}

static void on_event(QmpClient *c, const char *event, struct json_object *data, void *userdata)
{
	Ctx *x = userdata;
	if (x->events < 16) {
		snprintf(x->event_names[x->events], 32, "%s", event);
		snprintf(x->event_data[x->events], 128, "%s",
			 data ? json_object_to_json_string_ext(data, JSON_C_TO_STRING_PLAIN) : "");
	}
	x->events++;
	if (x->free_on_event)
		qmp_client_free(TAKE_PTR(x->free_on_event));
}

typedef struct Rec {
	int calls;
	int r;
	char ret[256];
	QmpReplyError qerr;
	int order; /* completion order, from a shared counter */
	int *counter;
	QmpClient *free_me;      /* frees this client from the callback */
	const char *then_command; /* queues this command from the callback */
	struct Rec *then_rec;
	int nested_r;            /* result of calls made from the callback */
} Rec;

static void on_reply(QmpClient *c, int r, struct json_object *ret, const QmpReplyError *qerr,
		     void *userdata);

static void on_reply(QmpClient *c, int r, struct json_object *ret, const QmpReplyError *qerr,
		     void *userdata)
{
	Rec *rec = userdata;
	rec->calls++;
	rec->r = r;
	if (ret)
		snprintf(rec->ret, sizeof(rec->ret), "%s",
			 json_object_to_json_string_ext(ret, JSON_C_TO_STRING_PLAIN));
	if (qerr)
		rec->qerr = *qerr;
	if (rec->counter)
		rec->order = ++*rec->counter;
	if (rec->then_command)
		rec->nested_r = qmp_client_command(c, rec->then_command, NULL, -1, 0, on_reply,
						   rec->then_rec);
	if (rec->free_me)
		qmp_client_free(TAKE_PTR(rec->free_me));
}

static QmpClient *new_pair(Fake *f, Ctx *x, const QmpClientOptions *base)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	fake_init(f, sv[1]);
	QmpClientOptions o = base ? *base : (QmpClientOptions){ 0 };
	o.on_state = on_state;
	o.on_event = on_event;
	o.userdata = x;
	QmpClient *c = NULL;
	FlError err = { 0 };
	assert_int_equal(qmp_client_new_fd(sv[0], &o, &c, &err), 0);
	assert_non_null(c);
	return c;
}

/* Greeting + capabilities; returns a ready client. */
static QmpClient *new_ready(Fake *f, Ctx *x, const QmpClientOptions *base)
{
	QmpClient *c = new_pair(f, x, base);
	fake_send(f, GREETING);
	int64_t id = fake_expect(f, c, "qmp_capabilities", NULL);
	fake_send(f, "{\"return\": {}, \"id\": %lld}\r\n", (long long)id);
	for (int i = 0; i < 100 && !qmp_client_is_ready(c); i++)
		pump(c, f, 20);
	assert_true(qmp_client_is_ready(c));
	assert_int_equal(x->state_calls, 1);
	assert_int_equal(x->state_r, 0);
	return c;
}

static void pump_until(QmpClient *c, Fake *f, const int *calls, int want)
{
	uint64_t end = qmp_now_ms() + 2000;
	while (*calls < want && qmp_now_ms() < end)
		pump(c, f, 20);
	assert_int_equal(*calls, want);
}

/* ---- tests -------------------------------------------------------------- */

static void test_handshake_and_queued_commands(void **state)
{
	Fake f;
	Ctx x = { 0 };
	QmpClient *c = new_pair(&f, &x, NULL);
	Rec a = { 0 };

	/* Queued before the greeting: must wait for the handshake. */
	assert_int_equal(qmp_client_command(c, "query-status", NULL, -1, 0, on_reply, &a), 0);
	assert_false(qmp_client_is_ready(c));
	pump(c, &f, 30);
	assert_int_equal(f.n, 0); /* nothing sent before the greeting */

	fake_send(&f, GREETING);
	struct json_object *msg;
	int64_t id = fake_expect(&f, c, "qmp_capabilities", &msg);
	assert_false(json_object_object_get_ex(msg, "arguments", NULL));
	json_object_put(msg);
	pump(c, &f, 30);
	assert_int_equal(f.n, 0); /* still held back until capabilities are accepted */

	fake_send(&f, "{\"return\": {}, \"id\": %lld}\r\n", (long long)id);
	int64_t qid = fake_expect(&f, c, "query-status", NULL);
	assert_true(qmp_client_is_ready(c));
	assert_int_equal(x.state_calls, 1);
	assert_int_equal(x.state_r, 0);
	assert_true(qid != id);

	fake_send(&f, "{\"return\": {\"status\": \"running\", \"running\": true}, \"id\": %lld}\n",
		  (long long)qid);
	pump_until(c, &f, &a.calls, 1);
	assert_int_equal(a.r, 0);
	assert_string_equal(a.ret, "{\"status\":\"running\",\"running\":true}");

	qmp_client_free(c);
	assert_int_equal(x.state_calls, 1);
	fake_fini(&f);
}

static void test_out_of_order_replies(void **state)
{
	Fake f;
	Ctx x = { 0 };
	QmpClient *c = new_ready(&f, &x, NULL);
	int counter = 0;
	Rec r[3] = { { .counter = &counter }, { .counter = &counter }, { .counter = &counter } };
	int64_t ids[3];
	const char *names[3] = { "query-status", "query-name", "query-version" };

	for (int i = 0; i < 3; i++) {
		struct json_object *args = i == 1 ? json_object_new_object() : NULL;
		if (args)
			json_object_object_add(args, "k", json_object_new_string("v/w"));
		assert_int_equal(qmp_client_command(c, names[i], args, -1, 0, on_reply, &r[i]), 0);
	}
	for (int i = 0; i < 3; i++) {
		struct json_object *msg, *a, *k;
		ids[i] = fake_expect(&f, c, names[i], &msg);
		if (i == 1) {
			assert_true(json_object_object_get_ex(msg, "arguments", &a));
			assert_true(json_object_object_get_ex(a, "k", &k));
			assert_string_equal(json_object_get_string(k), "v/w");
		}
		json_object_put(msg);
	}
	assert_true(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);

	/* Replies 3, 1, 2 in one write. */
	fake_send(&f, "{\"return\": 3, \"id\": %lld}{\"return\": 1, \"id\": %lld}\n"
		      "{\"return\": 2, \"id\": %lld}",
		  (long long)ids[2], (long long)ids[0], (long long)ids[1]);
	pump_until(c, &f, &r[1].calls, 1);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(r[i].calls, 1);
		assert_int_equal(r[i].r, 0);
		char want[8];
		snprintf(want, sizeof(want), "%d", i + 1);
		assert_string_equal(r[i].ret, want);
	}
	assert_int_equal(r[2].order, 1);
	assert_int_equal(r[0].order, 2);
	assert_int_equal(r[1].order, 3);
	qmp_client_free(c);
	fake_fini(&f);
}

static void test_events_interleaved(void **state)
{
	Fake f;
	Ctx x = { 0 };
	QmpClient *c = new_ready(&f, &x, NULL);
	Rec a = { 0 };
	assert_int_equal(qmp_client_command(c, "stop", NULL, -1, 0, on_reply, &a), 0);
	int64_t id = fake_expect(&f, c, "stop", NULL);
	fake_send(&f,
		  "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"STOP\"}\r\n"
		  "{\"return\": {}, \"id\": %lld}\r\n"
		  "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 3}, \"event\": \"BLOCK_JOB_READY\", "
		  "\"data\": {\"device\": \"j1\"}}\r\n",
		  (long long)id);
	uint64_t end = qmp_now_ms() + 2000;
	while ((x.events < 2 || a.calls < 1) && qmp_now_ms() < end)
		pump(c, &f, 20);
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.r, 0);
	assert_int_equal(x.events, 2);
	assert_string_equal(x.event_names[0], "STOP");
	assert_string_equal(x.event_data[0], "");
	assert_string_equal(x.event_names[1], "BLOCK_JOB_READY");
	assert_string_equal(x.event_data[1], "{\"device\":\"j1\"}");
	qmp_client_free(c);
	fake_fini(&f);
}

static void test_qmp_error_reply(void **state)
{
	Fake f;
	Ctx x = { 0 };
	QmpClient *c = new_ready(&f, &x, NULL);
	Rec a = { 0 }, b = { 0 };
	assert_int_equal(qmp_client_command(c, "no-such", NULL, -1, 0, on_reply, &a), 0);
	assert_int_equal(qmp_client_command(c, "weird", NULL, -1, 0, on_reply, &b), 0);
	int64_t id = fake_expect(&f, c, "no-such", NULL);
	int64_t id2 = fake_expect(&f, c, "weird", NULL);
	fake_send(&f, "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command no-such "
		      "has not been found\"}, \"id\": %lld}\n",
		  (long long)id);
	/* Neither return nor error: a protocol violation for that command. */
	fake_send(&f, "{\"id\": %lld}\n", (long long)id2);
	pump_until(c, &f, &b.calls, 1);
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.r, -EREMOTEIO);
	assert_string_equal(a.qerr.klass, "CommandNotFound");
	assert_string_equal(a.qerr.desc, "The command no-such has not been found");
	assert_int_equal(b.r, -EPROTO);
	assert_true(qmp_client_is_ready(c)); /* the connection survives both */
	qmp_client_free(c);
	fake_fini(&f);
}

static void test_unknown_and_missing_ids_ignored(void **state)
{
	Fake f;
	Ctx x = { 0 };
	QmpClient *c = new_ready(&f, &x, NULL);
	Rec a = { 0 };
	assert_int_equal(qmp_client_command(c, "query-status", NULL, -1, 0, on_reply, &a), 0);
	int64_t id = fake_expect(&f, c, "query-status", NULL);
	fake_send(&f, "{\"return\": {}, \"id\": 999999}\n{\"return\": {}}\n"
		      "{\"return\": {}, \"id\": \"%lld\"}\n{\"error\": {\"class\": \"GenericError\", "
		      "\"desc\": \"JSON parse error\"}}\n",
		  (long long)id);
	for (int i = 0; i < 5; i++)
		pump(c, &f, 10);
	assert_int_equal(a.calls, 0);
	fake_send(&f, "{\"return\": \"ok\", \"id\": %lld}\n", (long long)id);
	pump_until(c, &f, &a.calls, 1);
	assert_string_equal(a.ret, "\"ok\"");
	qmp_client_free(c);
	fake_fini(&f);
}

static void test_command_timeout(void **state)
{
	Fake f;
	Ctx x = { 0 };
	QmpClient *c = new_ready(&f, &x, NULL);
	Rec slow = { 0 }, fast = { 0 }, none = { 0 };
	assert_int_equal(qmp_client_next_deadline(c), -1);
	uint64_t t0 = qmp_now_ms();
	assert_int_equal(qmp_client_command(c, "slow", NULL, -1, 80, on_reply, &slow), 0);
	assert_int_equal(qmp_client_command(c, "forever", NULL, -1, 0, on_reply, &none), 0);
	int64_t dl = qmp_client_next_deadline(c);
	assert_true(dl >= (int64_t)(t0 + 80) && dl <= (int64_t)(qmp_now_ms() + 80));
	int64_t id = fake_expect(&f, c, "slow", NULL);
	fake_expect(&f, c, "forever", NULL);

	pump_until(c, &f, &slow.calls, 1);
	assert_int_equal(slow.r, -ETIMEDOUT);
	assert_true(qmp_now_ms() >= t0 + 80);
	assert_int_equal(qmp_client_next_deadline(c), -1);

	/* The late reply is dropped; the connection carries on. */
	fake_send(&f, "{\"return\": {}, \"id\": %lld}\n", (long long)id);
	assert_int_equal(qmp_client_command(c, "fast", NULL, -1, 1000, on_reply, &fast), 0);
	int64_t id2 = fake_expect(&f, c, "fast", NULL);
	fake_send(&f, "{\"return\": 7, \"id\": %lld}\n", (long long)id2);
	pump_until(c, &f, &fast.calls, 1);
	assert_int_equal(fast.r, 0);
	assert_int_equal(slow.calls, 1);
	assert_int_equal(none.calls, 0);
	assert_true(qmp_client_is_ready(c));

	qmp_client_free(c);
	assert_int_equal(none.calls, 1);
	assert_int_equal(none.r, -ECANCELED);
	fake_fini(&f);
}

/* A command that times out before it was written is never sent. */
static void test_timeout_before_sent(void **state)
{
	Fake f;
	Ctx x = { 0 };
	QmpClient *c = new_pair(&f, &x, NULL);
	Rec a = { 0 }, b = { 0 };
	int pfd[2];
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	assert_int_equal(qmp_client_command(c, "getfd", NULL, pfd[1], 30, on_reply, &a), 0);
	assert_int_equal(qmp_client_command(c, "later", NULL, -1, 0, on_reply, &b), 0);
	close(pfd[1]);
	pump_until(c, &f, &a.calls, 1);
	assert_int_equal(a.r, -ETIMEDOUT);

	fake_send(&f, GREETING);
	int64_t id = fake_expect(&f, c, "qmp_capabilities", NULL);
	fake_send(&f, "{\"return\": {}, \"id\": %lld}\n", (long long)id);
	fake_expect(&f, c, "later", NULL);
	assert_int_equal(f.nfds, 0);
	/* The withdrawn command's duplicate descriptor was closed: the pipe
	 * reports EOF once the only writer is gone. */
	char ch;
	assert_int_equal(read(pfd[0], &ch, 1), 0);
	close(pfd[0]);
	qmp_client_free(c);
	assert_int_equal(b.calls, 1);
	fake_fini(&f);
}

static void test_handshake_timeout(void **state)
{
	Fake f;
	Ctx x = { 0 };
	QmpClientOptions o = { .handshake_timeout_ms = 50 };
	QmpClient *c = new_pair(&f, &x, &o);
	Rec a = { 0 };
	assert_int_equal(qmp_client_command(c, "query-status", NULL, -1, 0, on_reply, &a), 0);
	uint64_t t0 = qmp_now_ms();
	int r = 0;
	while (r == 0 && qmp_now_ms() < t0 + 2000)
		r = pump(c, &f, 100);
	assert_int_equal(r, -ETIMEDOUT);
	assert_int_equal(x.state_calls, 1);
	assert_int_equal(x.state_r, -ETIMEDOUT);
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.r, -ETIMEDOUT);
	assert_int_equal(qmp_client_poll_events(c), 0);
	assert_int_equal(qmp_client_next_deadline(c), -1);
	assert_int_equal(qmp_client_command(c, "x", NULL, -1, 0, on_reply, &a), -ENOTCONN);
	qmp_client_free(c);
	assert_int_equal(a.calls, 1);
	assert_int_equal(x.state_calls, 1);
	fake_fini(&f);
}

static void test_eof_mid_message(void **state)
{
	Fake f;
	Ctx x = { 0 };
	QmpClient *c = new_ready(&f, &x, NULL);
	Rec a = { 0 };
	assert_int_equal(qmp_client_command(c, "query-status", NULL, -1, 1000, on_reply, &a), 0);
	int64_t id = fake_expect(&f, c, "query-status", NULL);
	fake_send(&f, "{\"return\": {\"status\": \"runn");
	pump(c, &f, 10);
	assert_int_equal(a.calls, 0);
	fake_close(&f);
	(void)id;
	int r = 0;
	for (int i = 0; i < 100 && r == 0; i++)
		r = pump(c, NULL, 20);
	assert_int_equal(r, -ECONNRESET);
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.r, -ECONNRESET);
	assert_int_equal(x.state_calls, 2);
	assert_int_equal(x.state_r, -ECONNRESET);
	assert_int_equal(qmp_client_dispatch(c, POLLIN), -ECONNRESET);
	assert_int_equal(qmp_client_command(c, "x", NULL, -1, 0, on_reply, &a), -ENOTCONN);
	qmp_client_free(c);
	assert_int_equal(a.calls, 1);
	assert_int_equal(x.state_calls, 2);
	fake_fini(&f);
}

static void test_eof_with_many_pending(void **state)
{
	Fake f;
	Ctx x = { 0 };
	QmpClient *c = new_ready(&f, &x, NULL);
	Rec r[10] = { 0 };
	for (int i = 0; i < 10; i++)
		assert_int_equal(qmp_client_command(c, "query-status", NULL, -1, i % 2 ? 5000 : 0,
						    on_reply, &r[i]),
				 0);
	for (int i = 0; i < 4; i++) {
		int64_t id = fake_expect(&f, c, "query-status", NULL);
		if (i == 1)
			fake_send(&f, "{\"return\": {}, \"id\": %lld}", (long long)id);
	}
	/* One reply, an event and the head of another message, then EOF. */
	fake_send(&f, "{\"event\": \"STOP\"}{\"return\"");
	fake_close(&f);
	int rc = 0;
	for (int i = 0; i < 100 && rc == 0; i++)
		rc = pump(c, NULL, 20);
	assert_int_equal(rc, -ECONNRESET);
	for (int i = 0; i < 10; i++) {
		assert_int_equal(r[i].calls, 1);
		assert_int_equal(r[i].r, i == 1 ? 0 : -ECONNRESET);
	}
	assert_int_equal(x.events, 1);
	assert_int_equal(x.state_calls, 2);
	/* Nothing fires a second time later. */
	pump(c, NULL, 10);
	qmp_client_free(c);
	for (int i = 0; i < 10; i++)
		assert_int_equal(r[i].calls, 1);
	assert_int_equal(x.state_calls, 2);
	fake_fini(&f);
}

static void test_eof_before_greeting(void **state)
{
	Fake f;
	Ctx x = { 0 };
	QmpClient *c = new_pair(&f, &x, NULL);
	Rec a = { 0 };
	assert_int_equal(qmp_client_command(c, "query-status", NULL, -1, 0, on_reply, &a), 0);
	fake_send(&f, "{\"QMP\": {\"vers");
	fake_close(&f);
	int r = 0;
	for (int i = 0; i < 100 && r == 0; i++)
		r = pump(c, NULL, 20);
	assert_int_equal(r, -ECONNRESET);
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.r, -ECONNRESET);
	assert_int_equal(x.state_calls, 1);
	assert_int_equal(x.state_r, -ECONNRESET);
	qmp_client_free(c);
	fake_fini(&f);
}

static void test_bad_greeting_and_garbage(void **state)
{
	/* Not a greeting. */
	Fake f;
	Ctx x = { 0 };
	QmpClient *c = new_pair(&f, &x, NULL);
	fake_send(&f, "{\"return\": {}}\n");
	int r = 0;
	for (int i = 0; i < 100 && r == 0; i++)
		r = pump(c, &f, 20);
	assert_int_equal(r, -EPROTO);
	assert_int_equal(x.state_r, -EPROTO);
	qmp_client_free(c);
	fake_fini(&f);

	/* Capabilities refused. */
	memset(&x, 0, sizeof(x));
	c = new_pair(&f, &x, NULL);
	fake_send(&f, GREETING);
	int64_t id = fake_expect(&f, c, "qmp_capabilities", NULL);
	fake_send(&f, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}, \"id\": %lld}\n",
		  (long long)id);
	r = 0;
	for (int i = 0; i < 100 && r == 0; i++)
		r = pump(c, &f, 20);
	assert_int_equal(r, -EPROTO);
	assert_int_equal(x.state_calls, 1);
	qmp_client_free(c);
	fake_fini(&f);

	/* Garbage after the handshake fails every pending command. */
	memset(&x, 0, sizeof(x));
	c = new_ready(&f, &x, NULL);
	Rec a = { 0 }, b = { 0 };
	assert_int_equal(qmp_client_command(c, "a", NULL, -1, 0, on_reply, &a), 0);
	assert_int_equal(qmp_client_command(c, "b", NULL, -1, 0, on_reply, &b), 0);
	fake_send(&f, "{\"event\": \"X\"} <html>");
	r = 0;
	for (int i = 0; i < 100 && r == 0; i++)
		r = pump(c, &f, 20);
	assert_int_equal(r, -EBADMSG);
	assert_int_equal(x.events, 1);
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.r, -EBADMSG);
	assert_int_equal(b.calls, 1);
	assert_int_equal(x.state_calls, 2);
	assert_int_equal(x.state_r, -EBADMSG);
	qmp_client_free(c);
	fake_fini(&f);

	/* An oversized reply. */
	memset(&x, 0, sizeof(x));
	QmpClientOptions o = { .max_message = 256 };
	c = new_ready(&f, &x, &o);
	memset(&a, 0, sizeof(a));
	assert_int_equal(qmp_client_command(c, "a", NULL, -1, 0, on_reply, &a), 0);
	char big[400];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	fake_send(&f, "{\"return\": \"%s\", \"id\": 1}", big);
	pump_until(c, &f, &a.calls, 1);
	assert_int_equal(a.r, -EMSGSIZE);
	qmp_client_free(c);
	fake_fini(&f);
}

static void test_free_with_pending(void **state)
{
	Fake f;
	Ctx x = { 0 };
	QmpClient *c = new_ready(&f, &x, NULL);
	Rec r[3] = { 0 };
	for (int i = 0; i < 3; i++)
		assert_int_equal(qmp_client_command(c, "query-status", NULL, -1, 100, on_reply, &r[i]),
				 0);
	qmp_client_free(c);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(r[i].calls, 1);
		assert_int_equal(r[i].r, -ECANCELED);
	}
	assert_int_equal(x.state_calls, 1); /* not reported for an explicit free */
	qmp_client_free(NULL);
	fake_fini(&f);
}

static void test_free_from_callbacks(void **state)
{
	/* From a reply callback, with other commands still pending. */
	Fake f;
	Ctx x = { 0 };
	QmpClient *c = new_ready(&f, &x, NULL);
	Rec a = { 0 }, b = { 0 }, d = { 0 };
	a.free_me = c;
	assert_int_equal(qmp_client_command(c, "a", NULL, -1, 0, on_reply, &a), 0);
	assert_int_equal(qmp_client_command(c, "b", NULL, -1, 0, on_reply, &b), 0);
	assert_int_equal(qmp_client_command(c, "d", NULL, -1, 0, on_reply, &d), 0);
	int64_t ida = fake_expect(&f, c, "a", NULL);
	int64_t idb = fake_expect(&f, c, "b", NULL);
	/* a's reply, then b's in the same buffer: b must not run after free. */
	fake_send(&f, "{\"return\": 1, \"id\": %lld}{\"return\": 2, \"id\": %lld}", (long long)ida,
		  (long long)idb);
	struct pollfd pfd = { .fd = qmp_client_fd(c), .events = POLLIN };
	assert_int_equal(poll(&pfd, 1, 2000), 1);
	assert_int_equal(qmp_client_dispatch(c, pfd.revents), -ECANCELED);
	/* c is gone now. */
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.r, 0);
	assert_int_equal(b.calls, 1);
	assert_int_equal(b.r, -ECANCELED);
	assert_int_equal(d.calls, 1);
	assert_int_equal(d.r, -ECANCELED);
	fake_fini(&f);

	/* From the event handler. */
	memset(&x, 0, sizeof(x));
	c = new_ready(&f, &x, NULL);
	memset(&a, 0, sizeof(a));
	assert_int_equal(qmp_client_command(c, "a", NULL, -1, 0, on_reply, &a), 0);
	x.free_on_event = c;
	fake_send(&f, "{\"event\": \"SHUTDOWN\"}{\"event\": \"STOP\"}");
	pfd.fd = qmp_client_fd(c);
	assert_int_equal(poll(&pfd, 1, 2000), 1);
	assert_int_equal(qmp_client_dispatch(c, pfd.revents), -ECANCELED);
	assert_int_equal(x.events, 1);
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.r, -ECANCELED);
	fake_fini(&f);
}

static void test_command_from_callback(void **state)
{
	Fake f;
	Ctx x = { 0 };
	QmpClient *c = new_ready(&f, &x, NULL);
	Rec second = { 0 };
	Rec first = { .then_command = "second", .then_rec = &second };
	assert_int_equal(qmp_client_command(c, "first", NULL, -1, 0, on_reply, &first), 0);
	int64_t id = fake_expect(&f, c, "first", NULL);
	fake_send(&f, "{\"return\": {}, \"id\": %lld}", (long long)id);
	int64_t id2 = fake_expect(&f, c, "second", NULL);
	assert_int_equal(first.nested_r, 0);
	fake_send(&f, "{\"return\": {}, \"id\": %lld}", (long long)id2);
	pump_until(c, &f, &second.calls, 1);
	assert_int_equal(second.r, 0);
	qmp_client_free(c);
	fake_fini(&f);
}

static void reentrant_reply(QmpClient *c, int r, struct json_object *ret,
			    const QmpReplyError *qerr, void *userdata)
{
	int *results = userdata;
	FlError err = { 0 };
	results[0] = qmp_client_dispatch(c, POLLIN);
	results[1] = qmp_call_sync(c, "x", json_object_new_object(), -1, 10, NULL, &err);
	results[2] = qmp_wait_event_sync(c, "X", 10, NULL, &err);
	results[3] = 1;
}

static void test_reentrancy_refused(void **state)
{
	Fake f;
	Ctx x = { 0 };
	QmpClient *c = new_ready(&f, &x, NULL);
	int results[4] = { 0 };
	assert_int_equal(qmp_client_command(c, "a", NULL, -1, 0, reentrant_reply, results), 0);
	int64_t id = fake_expect(&f, c, "a", NULL);
	fake_send(&f, "{\"return\": {}, \"id\": %lld}", (long long)id);
	pump_until(c, &f, &results[3], 1);
	assert_int_equal(results[0], -EDEADLK);
	assert_int_equal(results[1], -EDEADLK);
	assert_int_equal(results[2], -EDEADLK);
	assert_true(qmp_client_is_ready(c));
	qmp_client_free(c);
	fake_fini(&f);
}

static void test_limits_and_arguments(void **state)
{
	Fake f;
	Ctx x = { 0 };
	QmpClientOptions o = { .max_pending = 3, .max_message = 512 };
	QmpClient *c = new_ready(&f, &x, &o);
	Rec r[4] = { 0 };

	for (int i = 0; i < 3; i++)
		assert_int_equal(qmp_client_command(c, "q", NULL, -1, 0, on_reply, &r[i]), 0);
	assert_int_equal(qmp_client_command(c, "q", NULL, -1, 0, on_reply, &r[3]), -EAGAIN);
	/* Arguments are taken over even when the call fails (ASan checks). */
	assert_int_equal(qmp_client_command(c, "q", json_object_new_object(), -1, 0, on_reply, &r[3]),
			 -EAGAIN);
	assert_int_equal(qmp_client_command(c, "q", json_object_new_array(), -1, 0, on_reply, &r[3]),
			 -EINVAL);
	assert_int_equal(qmp_client_command(c, "", NULL, -1, 0, on_reply, &r[3]), -EINVAL);
	assert_int_equal(qmp_client_command(c, NULL, NULL, -1, 0, on_reply, &r[3]), -EINVAL);
	assert_int_equal(r[3].calls, 0);

	int64_t id = fake_expect(&f, c, "q", NULL);
	fake_send(&f, "{\"return\": {}, \"id\": %lld}", (long long)id);
	pump_until(c, &f, &r[0].calls, 1);
	/* A slot is free again. */
	struct json_object *args = json_object_new_object();
	char big[600];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	json_object_object_add(args, "blob", json_object_new_string(big));
	assert_int_equal(qmp_client_command(c, "q", args, -1, 0, on_reply, &r[3]), -EMSGSIZE);
	assert_int_equal(qmp_client_command(c, "q", NULL, 12345, 0, on_reply, &r[3]), -EBADF);
	assert_int_equal(qmp_client_command(c, "q", NULL, -1, 0, NULL, NULL), 0);
	assert_int_equal(r[3].calls, 0);
	qmp_client_free(c);
	assert_int_equal(r[1].calls, 1);
	assert_int_equal(r[2].calls, 1);
	fake_fini(&f);
}

/* The output queue is capped: a peer that stops reading cannot make the
 * client buffer without bound. */
static void test_output_queue_cap(void **state)
{
	Fake f;
	Ctx x = { 0 };
	QmpClientOptions o = { .max_pending = 100000, .max_message = 4096 };
	QmpClient *c = new_ready(&f, &x, &o);
	int bufsz = 4096;
	setsockopt(qmp_client_fd(c), SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof(bufsz));
	setsockopt(f.fd, SOL_SOCKET, SO_RCVBUF, &bufsz, sizeof(bufsz));
	char blob[3000];
	memset(blob, 'b', sizeof(blob) - 1);
	blob[sizeof(blob) - 1] = 0;
	int r = 0, n;
	for (n = 0; n < 10000; n++) {
		struct json_object *args = json_object_new_object();
		json_object_object_add(args, "blob", json_object_new_string(blob));
		r = qmp_client_command(c, "q", args, -1, 0, NULL, NULL);
		if (r < 0)
			break;
	}
	assert_int_equal(r, -ENOBUFS);
	assert_true(n < 10000);
	assert_true(qmp_client_poll_events(c) & POLLOUT);
	qmp_client_free(c);
	fake_fini(&f);
}

static void test_fd_passing(void **state)
{
	Fake f;
	Ctx x = { 0 };
	QmpClient *c = new_ready(&f, &x, NULL);
	Rec a = { 0 }, b = { 0 }, d = { 0 };
	int p1[2], p2[2];
	assert_int_equal(pipe2(p1, O_CLOEXEC), 0);
	assert_int_equal(pipe2(p2, O_CLOEXEC), 0);

	assert_int_equal(qmp_client_command(c, "query-status", NULL, -1, 0, on_reply, &d), 0);
	struct json_object *args = json_object_new_object();
	json_object_object_add(args, "fdname", json_object_new_string("one"));
	assert_int_equal(qmp_client_command(c, "getfd", args, p1[1], 0, on_reply, &a), 0);
	args = json_object_new_object();
	json_object_object_add(args, "fdname", json_object_new_string("two"));
	assert_int_equal(qmp_client_command(c, "getfd", args, p2[1], 0, on_reply, &b), 0);
	/* The caller keeps its copies and may close them at once. */
	close(p1[1]);
	close(p2[1]);

	int64_t id0 = fake_expect(&f, c, "query-status", NULL);
	struct json_object *msg, *margs, *name;
	int64_t id1 = fake_expect(&f, c, "getfd", &msg);
	assert_true(json_object_object_get_ex(msg, "arguments", &margs));
	assert_true(json_object_object_get_ex(margs, "fdname", &name));
	assert_string_equal(json_object_get_string(name), "one");
	json_object_put(msg);
	/* The second getfd waits until the first is answered, so QEMU never
	 * sees two unclaimed descriptors. */
	for (int i = 0; i < 5; i++)
		pump(c, &f, 10);
	assert_int_equal(f.n, 0);
	assert_int_equal(f.nfds, 1);
	assert_int_equal(f.fd_msg[0], 2); /* qmp_capabilities, query-status, then getfd */
	fake_send(&f, "{\"return\": {}, \"id\": %lld}", (long long)id1);
	pump_until(c, &f, &a.calls, 1);
	int64_t id2 = fake_expect(&f, c, "getfd", NULL);

	/* Each descriptor came with its own command, and works. */
	assert_int_equal(f.nfds, 2);
	assert_int_equal(f.fd_msg[1], 3);
	assert_int_equal(write(f.fds[0], "one", 3), 3);
	assert_int_equal(write(f.fds[1], "two", 3), 3);
	char buf[8] = { 0 };
	assert_int_equal(read(p1[0], buf, sizeof(buf)), 3);
	assert_string_equal(buf, "one");
	memset(buf, 0, sizeof(buf));
	assert_int_equal(read(p2[0], buf, sizeof(buf)), 3);
	assert_string_equal(buf, "two");

	fake_send(&f, "{\"return\": {}, \"id\": %lld}{\"return\": {}, \"id\": %lld}",
		  (long long)id0, (long long)id2);
	pump_until(c, &f, &b.calls, 1);
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.r, 0);

	/* The client kept no copy: once the server closes its copies the
	 * pipes see EOF. */
	for (unsigned i = 0; i < f.nfds; i++)
		close(f.fds[i]);
	f.nfds = 0;
	assert_int_equal(read(p1[0], buf, 1), 0);
	assert_int_equal(read(p2[0], buf, 1), 0);
	close(p1[0]);
	close(p2[0]);
	qmp_client_free(c);
	fake_fini(&f);
}

static void test_connect_errors(void **state)
{
	QmpClient *c = NULL;
	FlError err = { 0 };
	assert_int_equal(qmp_client_new("/nonexistent/dir/qmp.sock", NULL, &c, &err), -ENOENT);
	assert_null(c);
	assert_non_null(strstr(err.msg, "/nonexistent/dir/qmp.sock"));
	char longpath[200];
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = 0;
	assert_int_equal(qmp_client_new(longpath, NULL, &c, &err), -ENAMETOOLONG);
	assert_int_equal(qmp_connect_sync("/nonexistent/qmp.sock", 100, &c, NULL), -ENOENT);
	assert_int_equal(qmp_client_new_fd(-1, NULL, &c, NULL), -EINVAL);
}

static int count_fds(void)
{
	int n = 0;
	for (int fd = 0; fd < 1024; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			n++;
	return n;
}

/* A daemon opens and drops many connections: none may leak a descriptor,
 * whether it ends by EOF, by free, with descriptors still queued, or with
 * descriptors already sent. */
static void test_no_descriptor_leaks(void **state)
{
	int before = count_fds();
	for (int round = 0; round < 3; round++) {
		Fake f;
		Ctx x = { 0 };
		QmpClient *c = new_ready(&f, &x, NULL);
		int p[2];
		assert_int_equal(pipe2(p, O_CLOEXEC), 0);
		Rec a = { 0 }, b = { 0 };
		/* a's descriptor goes out; b's waits behind it. */
		assert_int_equal(qmp_client_command(c, "getfd", NULL, p[0], 0, on_reply, &a), 0);
		assert_int_equal(qmp_client_command(c, "getfd", NULL, p[1], 0, on_reply, &b), 0);
		close(p[0]);
		close(p[1]);
		fake_expect(&f, c, "getfd", NULL);
		if (round == 0) {
			qmp_client_free(c);
		} else {
			fake_close(&f);
			int r = 0;
			for (int i = 0; i < 100 && r == 0; i++)
				r = pump(c, NULL, 20);
			assert_int_equal(r, -ECONNRESET);
			qmp_client_free(c);
		}
		assert_int_equal(a.calls, 1);
		assert_int_equal(b.calls, 1);
		fake_fini(&f);
	}
	assert_int_equal(count_fds(), before);
}

/* ---- blocking helpers against a fake server thread ----------------------- */

typedef struct ThreadServer {
	int listen_fd;
	int mode;
	int fd_ok; /* the fd received with getfd worked */
	pthread_t thread;
} ThreadServer;

static int64_t ts_expect(Fake *f, const char *execute)
{
	uint64_t end = qmp_now_ms() + 5000;
	while (f->n == 0 && qmp_now_ms() < end) {
		struct pollfd pfd = { .fd = f->fd, .events = POLLIN };
		if (poll(&pfd, 1, 50) > 0) {
			if (pfd.revents & POLLHUP && !(pfd.revents & POLLIN))
				return -1;
			fake_read(f);
		}
	}
	if (f->n == 0)
		return -1;
	struct json_object *msg = f->msgs[f->head++], *v, *id;
	f->n--;
	int64_t r = -1;
	if (json_object_object_get_ex(msg, "execute", &v) &&
	    strcmp(json_object_get_string(v), execute) == 0 &&
	    json_object_object_get_ex(msg, "id", &id))
		r = json_object_get_int64(id);
	json_object_put(msg);
	return r;
}

static void *server_thread(void *arg)
{
	ThreadServer *ts = arg;
	int fd = accept4(ts->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return NULL;
	Fake f;
	fake_init(&f, fd);
	fake_send(&f, GREETING);
	int64_t id = ts_expect(&f, "qmp_capabilities");
	fake_send(&f, "{\"return\": {}, \"id\": %lld}\r\n", (long long)id);
	if (ts->mode == 1) {
		/* stop: an event before and after the reply. */
		id = ts_expect(&f, "stop");
		fake_send(&f, "{\"event\": \"STOP\", \"data\": {\"n\": 1}}");
		fake_send(&f, "{\"return\": {}, \"id\": %lld}", (long long)id);
		fake_send(&f, "{\"event\": \"OTHER\"}");
		/* An error reply. */
		id = ts_expect(&f, "bad");
		fake_send(&f, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"nope\"}, "
			      "\"id\": %lld}",
			  (long long)id);
		/* getfd with a descriptor; write through it. */
		id = ts_expect(&f, "getfd");
		if (f.nfds == 1 && write(f.fds[0], "x", 1) == 1)
			ts->fd_ok = 1;
		fake_send(&f, "{\"return\": {}, \"id\": %lld}", (long long)id);
		/* query-status answered late, RESUME meanwhile. */
		id = ts_expect(&f, "query-status");
		fake_send(&f, "{\"event\": \"RESUME\"}");
		fake_send(&f, "{\"return\": {\"status\": \"paused\"}, \"id\": %lld}", (long long)id);
		/* Never answers "hang"; closes after "die". */
		ts_expect(&f, "hang");
		ts_expect(&f, "die");
		fake_send(&f, "{\"event\": \"SHUTDOWN\"}");
	}
	fake_fini(&f);
	return NULL;
}

static void ts_start(ThreadServer *ts, char *dir, char *path, size_t pathsz, int mode)
{
	assert_non_null(mkdtemp(dir));
	snprintf(path, pathsz, "%s/qmp.sock", dir);
	ts->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	assert_true((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path) < sizeof(sa.sun_path));
	assert_int_equal(bind(ts->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(ts->listen_fd, 4), 0);
	ts->mode = mode;
	assert_int_equal(pthread_create(&ts->thread, NULL, server_thread, ts), 0);
}

static void ts_stop(ThreadServer *ts, const char *dir, const char *path)
{
	pthread_join(ts->thread, NULL);
	close(ts->listen_fd);
	unlink(path);
	rmdir(dir);
}

static void test_sync_helpers(void **state)
{
	char dir[] = "/tmp/test-qmp-client-XXXXXX";
	char path[128];
	ThreadServer ts = { 0 };
	ts_start(&ts, dir, path, sizeof(path), 1);

	QmpClient *c = NULL;
	FlError err = { 0 };
	assert_int_equal(qmp_connect_sync(path, 2000, &c, &err), 0);
	assert_true(qmp_client_is_ready(c));

	struct json_object *ret = NULL, *data = NULL, *v;
	assert_int_equal(qmp_call_sync(c, "stop", NULL, -1, 2000, &ret, &err), 0);
	assert_non_null(ret);
	json_object_put(ret);

	assert_int_equal(qmp_call_sync(c, "bad", NULL, -1, 2000, NULL, &err), -EREMOTEIO);
	assert_string_equal(err.msg, "GenericError: nope");
	assert_int_equal(err.code, -EREMOTEIO);

	/* STOP arrived during the call and was kept. */
	assert_int_equal(qmp_wait_event_sync(c, "STOP", 1000, &data, &err), 0);
	assert_non_null(data);
	assert_true(json_object_object_get_ex(data, "n", &v));
	assert_int_equal(json_object_get_int(v), 1);
	json_object_put(data);

	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	struct json_object *args = json_object_new_object();
	json_object_object_add(args, "fdname", json_object_new_string("mig"));
	assert_int_equal(qmp_call_sync(c, "getfd", args, p[1], 2000, NULL, &err), 0);
	close(p[1]);
	char ch = 0;
	assert_int_equal(read(p[0], &ch, 1), 1);
	assert_int_equal(ch, 'x');
	close(p[0]);

	assert_int_equal(qmp_call_sync(c, "query-status", NULL, -1, 2000, &ret, &err), 0);
	assert_true(json_object_object_get_ex(ret, "status", &v));
	assert_string_equal(json_object_get_string(v), "paused");
	json_object_put(ret);
	/* Consumed in any order; OTHER stays queued until asked for. */
	assert_int_equal(qmp_wait_event_sync(c, "RESUME", 1000, NULL, &err), 0);
	assert_int_equal(qmp_wait_event_sync(c, "OTHER", 1000, &data, &err), 0);
	assert_null(data);
	uint64_t t0 = qmp_now_ms();
	assert_int_equal(qmp_wait_event_sync(c, "STOP", 50, NULL, &err), -ETIMEDOUT);
	assert_true(qmp_now_ms() >= t0 + 50);

	t0 = qmp_now_ms();
	assert_int_equal(qmp_call_sync(c, "hang", NULL, -1, 60, NULL, &err), -ETIMEDOUT);
	assert_true(qmp_now_ms() >= t0 + 60);
	assert_true(qmp_client_is_ready(c));

	/* The server closes after "die": the call fails, and the event sent
	 * just before EOF can still be collected. */
	assert_int_equal(qmp_call_sync(c, "die", NULL, -1, 0, NULL, &err), -ECONNRESET);
	assert_int_equal(qmp_wait_event_sync(c, "SHUTDOWN", 1000, NULL, &err), 0);
	assert_int_equal(qmp_wait_event_sync(c, "SHUTDOWN", 1000, NULL, &err), -ECONNRESET);
	assert_int_equal(qmp_call_sync(c, "x", NULL, -1, 0, NULL, &err), -ENOTCONN);
	qmp_client_free(c);
	ts_stop(&ts, dir, path);
	assert_int_equal(ts.fd_ok, 1);
}

static void test_connect_sync_timeout(void **state)
{
	/* A listener that never accepts: the connect succeeds (backlog) but
	 * no greeting comes. */
	char dir[] = "/tmp/test-qmp-client-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[128];
	snprintf(path, sizeof(path), "%s/qmp.sock", dir);
	int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	assert_true((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path) < sizeof(sa.sun_path));
	assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(l, 4), 0);
	QmpClient *c = NULL;
	FlError err = { 0 };
	uint64_t t0 = qmp_now_ms();
	assert_int_equal(qmp_connect_sync(path, 80, &c, &err), -ETIMEDOUT);
	assert_true(qmp_now_ms() >= t0 + 80);
	assert_null(c);
	assert_non_null(strstr(err.msg, "QMP handshake"));

	/* Backlog full: the blocking helper waits (bounded) instead of
	 * failing at once with -EAGAIN. */
	int q[64], nq = 0;
	for (; nq < 64; nq++) {
		q[nq] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (connect(q[nq], (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			assert_int_equal(errno, EAGAIN);
			close(q[nq]);
			break;
		}
	}
	assert_true(nq < 64);
	assert_int_equal(qmp_client_new(path, NULL, &c, NULL), -EAGAIN);
	t0 = qmp_now_ms();
	assert_int_equal(qmp_connect_sync(path, 80, &c, &err), -ETIMEDOUT);
	assert_true(qmp_now_ms() >= t0 + 70);
	assert_non_null(strstr(err.msg, "busy"));
	for (int i = 0; i < nq; i++)
		close(q[i]);
	close(l);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_handshake_and_queued_commands),
		cmocka_unit_test(test_out_of_order_replies),
		cmocka_unit_test(test_events_interleaved),
		cmocka_unit_test(test_qmp_error_reply),
		cmocka_unit_test(test_unknown_and_missing_ids_ignored),
		cmocka_unit_test(test_command_timeout),
		cmocka_unit_test(test_timeout_before_sent),
		cmocka_unit_test(test_handshake_timeout),
		cmocka_unit_test(test_eof_mid_message),
		cmocka_unit_test(test_eof_with_many_pending),
		cmocka_unit_test(test_eof_before_greeting),
		cmocka_unit_test(test_bad_greeting_and_garbage),
		cmocka_unit_test(test_free_with_pending),
		cmocka_unit_test(test_free_from_callbacks),
		cmocka_unit_test(test_command_from_callback),
		cmocka_unit_test(test_reentrancy_refused),
		cmocka_unit_test(test_limits_and_arguments),
		cmocka_unit_test(test_output_queue_cap),
		cmocka_unit_test(test_fd_passing),
		cmocka_unit_test(test_connect_errors),
		cmocka_unit_test(test_no_descriptor_leaks),
		cmocka_unit_test(test_sync_helpers),
		cmocka_unit_test(test_connect_sync_timeout),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
