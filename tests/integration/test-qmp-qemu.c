/* SPDX-License-Identifier: MIT */
/*
 * libqmp against a real qemu-system-x86_64 (TCG, -M none, paused): the
 * handshake, query-status, stop/cont with their events, QMP errors, fd
 * passing proven by migrating into a pipe through getfd + "fd:" and by
 * add-fd/query-fdsets, several commands in flight on the non-blocking API,
 * and QEMU killed with SIGKILL under pending commands.
 *
 * Each test gets its own QEMU (setup/teardown), which is killed, reaped
 * and whose run directory is removed even when the test fails.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "cleanup.h"
#include "qmp.h"
#include "testing/qemu-spawn.h"

typedef struct Fixture {
	TestQemu qemu;
	QmpClient *c;
} Fixture;

static int setup(void **state)
{
	Fixture *fx = calloc(1, sizeof(*fx));
	FlError err = { 0 };
	if (!fx)
		return -1;
	if (test_qemu_start(&fx->qemu, "none", NULL, &err) < 0) {
		fprintf(stderr, "cannot start QEMU: %s\n", err.msg);
		free(fx);
		return -1;
	}
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	Fixture *fx = *state;
	qmp_client_free(fx->c);
	test_qemu_stop(&fx->qemu);
	free(fx);
	return 0;
}

/* Shows QEMU's output and process state when something goes wrong. */
static void dump_qemu(const TestQemu *q)
{
	char path[64], buf[4096];
	FILE *f = fopen(q->log_path, "re");
	if (f) {
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		buf[n] = 0;
		fprintf(stderr, "qemu.log:\n%s\n", buf);
		fclose(f);
	}
	/* Where each QEMU thread sleeps, and its sockets. */
	snprintf(buf, sizeof(buf),
		 "for t in /proc/%d/task/*; do echo \"$t $(cat $t/comm) $(cut -d' ' -f3 $t/stat) "
		 "$(cat $t/wchan) $(cut -d' ' -f1 $t/syscall)\"; done; ls -l /proc/%d/fd; "
		 "ls -l /proc/%d/fd; grep fluid-qmp /proc/net/unix; "
		 "ss -xpa | grep -E 'pid=(%d|%d),|fluid-qmp'",
		 (int)q->pid, (int)q->pid, (int)getpid(), (int)q->pid, (int)getpid());
	fflush(stderr);
	if (system(buf) < 0)
		fprintf(stderr, "cannot run diagnostics\n");
	(void)path;
}

static QmpClient *connect_sync(Fixture *fx)
{
	FlError err = { 0 };
	uint64_t t0 = qmp_now_ms();
	int r = qmp_connect_sync(fx->qemu.qmp_path, 20000, &fx->c, &err);
	if (r < 0) {
		dump_qemu(&fx->qemu);
		fail_msg("qmp_connect_sync after %llu ms: %s",
			 (unsigned long long)(qmp_now_ms() - t0), err.msg);
	}
	return fx->c;
}

static const char *status_of(QmpClient *c, bool *running)
{
	static char buf[64];
	struct json_object *ret = NULL, *v;
	FlError err = { 0 };
	if (qmp_call_sync(c, "query-status", NULL, -1, 5000, &ret, &err) < 0)
		fail_msg("query-status: %s", err.msg);
	assert_true(json_object_object_get_ex(ret, "status", &v));
	snprintf(buf, sizeof(buf), "%s", json_object_get_string(v));
	assert_true(json_object_object_get_ex(ret, "running", &v));
	*running = json_object_get_boolean(v);
	json_object_put(ret);
	return buf;
}

static void test_negotiate_and_query_status(void **state)
{
	Fixture *fx = *state;
	QmpClient *c = connect_sync(fx);
	assert_true(qmp_client_is_ready(c));
	bool running = true;
	assert_string_equal(status_of(c, &running), "prelaunch");
	assert_false(running);

	struct json_object *ret = NULL, *q, *v;
	assert_int_equal(qmp_call_sync(c, "query-version", NULL, -1, 5000, &ret, NULL), 0);
	assert_true(json_object_object_get_ex(ret, "qemu", &q));
	assert_true(json_object_object_get_ex(q, "major", &v));
	assert_true(json_object_get_int(v) >= 7);
	json_object_put(ret);
}

static void test_stop_cont_events(void **state)
{
	Fixture *fx = *state;
	QmpClient *c = connect_sync(fx);
	FlError err = { 0 };
	bool running;

	assert_int_equal(qmp_call_sync(c, "cont", NULL, -1, 5000, NULL, &err), 0);
	assert_int_equal(qmp_wait_event_sync(c, "RESUME", 5000, NULL, &err), 0);
	assert_string_equal(status_of(c, &running), "running");
	assert_true(running);

	assert_int_equal(qmp_call_sync(c, "stop", NULL, -1, 5000, NULL, &err), 0);
	assert_int_equal(qmp_wait_event_sync(c, "STOP", 5000, NULL, &err), 0);
	assert_string_equal(status_of(c, &running), "paused");
	assert_false(running);

	/* Both events arrive while we are busy elsewhere: neither is lost. */
	assert_int_equal(qmp_call_sync(c, "cont", NULL, -1, 5000, NULL, &err), 0);
	assert_int_equal(qmp_call_sync(c, "stop", NULL, -1, 5000, NULL, &err), 0);
	assert_int_equal(qmp_wait_event_sync(c, "STOP", 5000, NULL, &err), 0);
	assert_int_equal(qmp_wait_event_sync(c, "RESUME", 5000, NULL, &err), 0);
	assert_int_equal(qmp_wait_event_sync(c, "RESUME", 100, NULL, &err), -ETIMEDOUT);
}

static void test_qmp_errors(void **state)
{
	Fixture *fx = *state;
	QmpClient *c = connect_sync(fx);
	FlError err = { 0 };

	assert_int_equal(qmp_call_sync(c, "no-such-command", NULL, -1, 5000, NULL, &err),
			 -EREMOTEIO);
	assert_non_null(strstr(err.msg, "CommandNotFound"));

	struct json_object *args = json_object_new_object();
	json_object_object_add(args, "fdname", json_object_new_string("nope"));
	assert_int_equal(qmp_call_sync(c, "closefd", args, -1, 5000, NULL, &err), -EREMOTEIO);
	assert_non_null(strstr(err.msg, "GenericError"));
	assert_non_null(strstr(err.msg, "nope"));

	/* getfd without a descriptor: QEMU says so. */
	args = json_object_new_object();
	json_object_object_add(args, "fdname", json_object_new_string("x"));
	assert_int_equal(qmp_call_sync(c, "getfd", args, -1, 5000, NULL, &err), -EREMOTEIO);
	assert_non_null(strstr(err.msg, "SCM_RIGHTS"));
	assert_true(qmp_client_is_ready(c));
}

/* getfd + migrate "fd:NAME" into a pipe: QEMU writes its migration stream
 * (magic "QEVM") through the descriptor we passed. */
static void test_getfd_migrate_to_pipe(void **state)
{
	Fixture *fx = *state;
	QmpClient *c = connect_sync(fx);
	FlError err = { 0 };
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);

	struct json_object *args = json_object_new_object();
	struct json_object *caps = json_object_new_array();
	struct json_object *cap = json_object_new_object();
	json_object_object_add(cap, "capability", json_object_new_string("events"));
	json_object_object_add(cap, "state", json_object_new_boolean(1));
	json_object_array_add(caps, cap);
	json_object_object_add(args, "capabilities", caps);
	assert_int_equal(qmp_call_sync(c, "migrate-set-capabilities", args, -1, 5000, NULL, &err), 0);

	args = json_object_new_object();
	json_object_object_add(args, "fdname", json_object_new_string("mig"));
	if (qmp_call_sync(c, "getfd", args, p[1], 5000, NULL, &err) < 0)
		fail_msg("getfd: %s", err.msg);
	close(p[1]); /* QEMU holds the only write end now */

	args = json_object_new_object();
	json_object_object_add(args, "uri", json_object_new_string("fd:mig"));
	if (qmp_call_sync(c, "migrate", args, -1, 5000, NULL, &err) < 0)
		fail_msg("migrate: %s", err.msg);

	/* Read the stream to EOF (QEMU closes the fd when done) while
	 * collecting MIGRATION events. */
	char head[4] = { 0 };
	size_t total = 0;
	for (;;) {
		char buf[65536];
		ssize_t n = read(p[0], buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		assert_true(n >= 0);
		if (n == 0)
			break;
		if (total < 4)
			memcpy(head + total, buf, (size_t)n < 4 - total ? (size_t)n : 4 - total);
		total += (size_t)n;
	}
	close(p[0]);
	assert_memory_equal(head, "QEVM", 4);
	assert_true(total > 16);

	bool completed = false;
	for (int i = 0; i < 10 && !completed; i++) {
		struct json_object *data = NULL, *st;
		assert_int_equal(qmp_wait_event_sync(c, "MIGRATION", 5000, &data, &err), 0);
		assert_true(json_object_object_get_ex(data, "status", &st));
		completed = strcmp(json_object_get_string(st), "completed") == 0;
		json_object_put(data);
	}
	assert_true(completed);
	/* The name was consumed by migrate. */
	args = json_object_new_object();
	json_object_object_add(args, "fdname", json_object_new_string("mig"));
	assert_int_equal(qmp_call_sync(c, "closefd", args, -1, 5000, NULL, &err), -EREMOTEIO);
}

/* add-fd puts our descriptor into an fd set that query-fdsets lists;
 * two add-fd in flight each get their own descriptor. */
typedef struct AddFd {
	int calls;
	int r;
	int64_t fd;
} AddFd;

static void on_add_fd(QmpClient *c, int r, struct json_object *ret, const QmpReplyError *qerr,
		      void *userdata)
{
	AddFd *a = userdata;
	struct json_object *v;
	a->calls++;
	a->r = r;
	if (r == 0 && json_object_object_get_ex(ret, "fd", &v))
		a->fd = json_object_get_int64(v);
}

static void test_add_fd_pipelined(void **state)
{
	Fixture *fx = *state;
	QmpClient *c = connect_sync(fx);
	FlError err = { 0 };
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);

	AddFd a[2] = { { 0 } };
	for (int i = 0; i < 2; i++) {
		struct json_object *args = json_object_new_object();
		json_object_object_add(args, "fdset-id", json_object_new_int(7));
		json_object_object_add(args, "opaque", json_object_new_string(i ? "b" : "a"));
		assert_int_equal(qmp_client_command(c, "add-fd", args, p[i], 5000, on_add_fd, &a[i]), 0);
	}
	close(p[0]);
	close(p[1]);
	/* A sync call behind them runs the loop until all three are done. */
	struct json_object *ret = NULL;
	assert_int_equal(qmp_call_sync(c, "query-fdsets", NULL, -1, 5000, &ret, &err), 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(a[i].calls, 1);
		assert_int_equal(a[i].r, 0);
		assert_true(a[i].fd >= 0);
	}
	assert_true(a[0].fd != a[1].fd);

	assert_int_equal(json_object_array_length(ret), 1);
	struct json_object *set = json_object_array_get_idx(ret, 0), *v, *fds;
	assert_true(json_object_object_get_ex(set, "fdset-id", &v));
	assert_int_equal(json_object_get_int(v), 7);
	assert_true(json_object_object_get_ex(set, "fds", &fds));
	assert_int_equal(json_object_array_length(fds), 2);
	json_object_put(ret);
}

/* The non-blocking API in a plain poll loop, several commands in flight. */
typedef struct Slot {
	int calls;
	int r;
} Slot;

static void slot_reply(QmpClient *c, int r, struct json_object *ret, const QmpReplyError *qerr,
		       void *userdata)
{
	Slot *s = userdata;
	s->calls++;
	s->r = r;
}

typedef struct Many {
	Slot s[4];
	int ready;
} Many;

static void many_state(QmpClient *c, int r, void *userdata)
{
	Many *m = userdata;
	m->ready = r == 0 ? 1 : r;
}

static int run_loop(QmpClient *c, bool (*done)(void *), void *arg, int ms)
{
	uint64_t end = qmp_now_ms() + (uint64_t)ms;
	int r = 0;
	while (!done(arg) && r == 0 && qmp_now_ms() < end) {
		struct pollfd pfd = { .fd = qmp_client_fd(c), .events = qmp_client_poll_events(c) };
		int64_t dl = qmp_client_next_deadline(c);
		int timeout = 100;
		if (dl >= 0) {
			int64_t left = dl - (int64_t)qmp_now_ms();
			timeout = left < 0 ? 0 : (left < 100 ? (int)left : 100);
		}
		int n = poll(&pfd, 1, timeout);
		r = qmp_client_dispatch(c, n > 0 ? pfd.revents : 0);
	}
	return r;
}

static bool many_done(void *arg)
{
	Many *m = arg;
	return m->s[0].calls && m->s[1].calls && m->s[2].calls && m->s[3].calls;
}

static void test_async_many_in_flight(void **state)
{
	Fixture *fx = *state;
	Many m = { 0 };
	QmpClientOptions o = { .on_state = many_state, .userdata = &m };
	FlError err = { 0 };
	assert_int_equal(qmp_client_new(fx->qemu.qmp_path, &o, &fx->c, &err), 0);
	QmpClient *c = fx->c;
	/* Queued before the handshake, sent after it. */
	const char *cmds[4] = { "query-status", "query-version", "bogus", "query-name" };
	for (int i = 0; i < 4; i++)
		assert_int_equal(qmp_client_command(c, cmds[i], NULL, -1, 5000, slot_reply, &m.s[i]), 0);
	int lr = run_loop(c, many_done, &m, 10000);
	if (lr != 0)
		dump_qemu(&fx->qemu);
	assert_int_equal(lr, 0);
	assert_int_equal(m.ready, 1);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(m.s[i].calls, 1);
		assert_int_equal(m.s[i].r, i == 2 ? -EREMOTEIO : 0);
	}
}

/* QEMU dies (SIGKILL) while commands are pending: each completes exactly
 * once with an error, the state callback reports the end once. */
typedef struct Killed {
	Slot s[3];
	int state_calls;
	int state_r;
} Killed;

static void killed_state(QmpClient *c, int r, void *userdata)
{
	Killed *k = userdata;
	k->state_calls++;
	k->state_r = r;
}

static bool killed_done(void *arg)
{
	return false;
}

static void test_sigkill_with_pending(void **state)
{
	Fixture *fx = *state;
	Killed k;
	memset(&k, 0, sizeof(k));
	QmpClientOptions o = { .on_state = killed_state, .userdata = &k };
	FlError err = { 0 };
	assert_int_equal(qmp_client_new(fx->qemu.qmp_path, &o, &fx->c, &err), 0);
	QmpClient *c = fx->c;
	/* Wait for the handshake through the public loop API. */
	uint64_t end = qmp_now_ms() + 10000;
	while (!qmp_client_is_ready(c) && qmp_now_ms() < end) {
		struct pollfd pfd = { .fd = qmp_client_fd(c), .events = qmp_client_poll_events(c) };
		int n = poll(&pfd, 1, 100);
		assert_int_equal(qmp_client_dispatch(c, n > 0 ? pfd.revents : 0), 0);
	}
	if (!qmp_client_is_ready(c))
		dump_qemu(&fx->qemu);
	assert_true(qmp_client_is_ready(c));
	assert_int_equal(k.state_calls, 1);

	/* Freeze QEMU so the commands cannot be answered, then kill it. */
	assert_int_equal(kill(fx->qemu.pid, SIGSTOP), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(qmp_client_command(c, "query-status", NULL, -1, i == 2 ? 30000 : 0,
						    slot_reply, &k.s[i]),
				 0);
	assert_int_equal(kill(fx->qemu.pid, SIGKILL), 0);
	int status = test_qemu_reap(&fx->qemu);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

	int r = run_loop(c, killed_done, NULL, 10000);
	assert_int_equal(r, -ECONNRESET);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(k.s[i].calls, 1);
		assert_int_equal(k.s[i].r, -ECONNRESET);
	}
	assert_int_equal(k.state_calls, 2);
	assert_int_equal(k.state_r, -ECONNRESET);
	/* Nothing fires again, not even on free. */
	assert_int_equal(qmp_client_dispatch(c, POLLIN), -ECONNRESET);
	qmp_client_free(TAKE_PTR(fx->c));
	for (int i = 0; i < 3; i++)
		assert_int_equal(k.s[i].calls, 1);
	assert_int_equal(k.state_calls, 2);
}

/* The same through the blocking helper: a one-shot timer kills the frozen
 * QEMU while qmp_call_sync() waits for the reply. */
static volatile pid_t victim;

static void kill_victim(int sig)
{
	if (victim > 0)
		kill(victim, SIGKILL);
}

static void test_sigkill_during_call_sync(void **state)
{
	Fixture *fx = *state;
	QmpClient *c = connect_sync(fx);
	FlError err = { 0 };
	assert_int_equal(kill(fx->qemu.pid, SIGSTOP), 0);

	struct sigaction sa = { .sa_handler = kill_victim }, old;
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGALRM, &sa, &old), 0);
	victim = fx->qemu.pid;
	struct itimerval it = { .it_value = { .tv_sec = 0, .tv_usec = 100000 } };
	assert_int_equal(setitimer(ITIMER_REAL, &it, NULL), 0);
	uint64_t t0 = qmp_now_ms();
	int r = qmp_call_sync(c, "query-status", NULL, -1, 10000, NULL, &err);
	sigaction(SIGALRM, &old, NULL);
	victim = 0;
	assert_int_equal(r, -ECONNRESET);
	assert_true(qmp_now_ms() >= t0 + 90);
	int status = test_qemu_reap(&fx->qemu);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	assert_int_equal(qmp_call_sync(c, "query-status", NULL, -1, 1000, NULL, &err), -ENOTCONN);
}

/* QEMU's monitor serves one client at a time: a second qmp_connect_sync()
 * waits (its greeting comes when the first client leaves) instead of
 * failing. */
typedef struct Second {
	const char *path;
	int r;
	uint64_t ready_at;
	char status[32];
} Second;

static void *second_client(void *arg)
{
	Second *s = arg;
	QmpClient *c = NULL;
	s->r = qmp_connect_sync(s->path, 20000, &c, NULL);
	__atomic_store_n(&s->ready_at, qmp_now_ms(), __ATOMIC_SEQ_CST);
	if (s->r == 0) {
		struct json_object *ret = NULL, *v;
		s->r = qmp_call_sync(c, "query-status", NULL, -1, 5000, &ret, NULL);
		if (s->r == 0 && json_object_object_get_ex(ret, "status", &v))
			snprintf(s->status, sizeof(s->status), "%s", json_object_get_string(v));
		json_object_put(ret);
	}
	qmp_client_free(c);
	return NULL;
}

static void test_second_client_waits(void **state)
{
	Fixture *fx = *state;
	QmpClient *c = connect_sync(fx);
	FlError err = { 0 };
	assert_int_equal(qmp_call_sync(c, "cont", NULL, -1, 5000, NULL, &err), 0);
	assert_int_equal(qmp_call_sync(c, "stop", NULL, -1, 5000, NULL, &err), 0);

	Second s = { .path = fx->qemu.qmp_path, .r = 1 };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, second_client, &s), 0);
	/* Keep the first connection busy for a while: the second one gets
	 * nothing meanwhile. */
	for (int i = 0; i < 20; i++)
		assert_int_equal(qmp_call_sync(c, "query-status", NULL, -1, 5000, NULL, &err), 0);
	struct json_object *data = NULL;
	assert_int_equal(qmp_wait_event_sync(c, "NO_SUCH_EVENT", 200, &data, &err), -ETIMEDOUT);
	uint64_t released = qmp_now_ms();
	assert_int_equal(__atomic_load_n(&s.ready_at, __ATOMIC_SEQ_CST), 0);
	qmp_client_free(TAKE_PTR(fx->c));

	pthread_join(t, NULL);
	assert_int_equal(s.r, 0);
	assert_true(s.ready_at >= released);
	assert_string_equal(s.status, "paused");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_negotiate_and_query_status, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_cont_events, setup, teardown),
		cmocka_unit_test_setup_teardown(test_qmp_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_getfd_migrate_to_pipe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_add_fd_pipelined, setup, teardown),
		cmocka_unit_test_setup_teardown(test_async_many_in_flight, setup, teardown),
		cmocka_unit_test_setup_teardown(test_second_client_waits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sigkill_with_pending, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sigkill_during_call_sync, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
