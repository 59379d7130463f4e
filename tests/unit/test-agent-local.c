// SPDX-License-Identifier: MIT
/*
 * Host-only tests of the real fluid-agent binary (build/fluid-agent, run
 * with --socket in a temporary directory) through libagentc: exec with exit
 * codes, signals, env/cwd/user, streaming 20 MiB, timeouts killing a
 * process tree, stdin, concurrent execs, cancel, background processes,
 * ptys, file transfers and file operations, reconnects. Nothing here
 * freezes filesystems or changes identity: that would hit the host; those
 * run in tests/integration/test-agent-vm.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "agent-client.h"

#define MiB (1024u * 1024)

extern char **environ;

typedef struct Fx {
	pid_t agent;
	char dir[64];
	char sock[128];
	AgentClient *c;
} Fx;

static int start_agent(Fx *f)
{
	const char *root = getenv("FLUID_ROOT");
	char bin[512];
	snprintf(bin, sizeof(bin), "%s/build/fluid-agent", root && *root ? root : ".");
	char *argv[] = {bin, "--socket", f->sock, NULL};
	unlink(f->sock);
	if (posix_spawn(&f->agent, bin, NULL, NULL, argv, environ) != 0)
		return -1;
	for (int i = 0; i < 500 && access(f->sock, F_OK) < 0; i++) {
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	return 0;
}

static int setup(void **state)
{
	Fx *f = calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/fluid-agent-test-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->sock, sizeof(f->sock), "%s/agent.sock", f->dir);
	if (start_agent(f) < 0)
		return -1;
	FlError e = {0};
	*state = f;
	if (agent_connect_sync(f->sock, 10000, &f->c, &e) < 0) {
		fprintf(stderr, "connect: %s\n", e.msg);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	Fx *f = *state;
	if (!f)
		return 0;
	agent_client_free(f->c);
	kill(f->agent, SIGTERM);
	waitpid(f->agent, NULL, 0);
	char cmd[200];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup of %s failed\n", f->dir);
	free(f);
	return 0;
}

static char *run(Fx *f, const char *shell, AgentExecResult *res)
{
	AgentExecSpec s = {.shell = shell};
	char *out = NULL;
	FlError e = {0};
	int r = agent_exec_capture_sync(f->c, &s, NULL, 0, MiB, &out, NULL, NULL, NULL, 30000, res, &e);
	if (r < 0)
		fprintf(stderr, "exec %s: %s\n", shell, e.msg);
	assert_int_equal(r, 0);
	return out;
}

/* Counts live processes whose command line contains needle. */
static int count_procs(const char *needle)
{
	DIR *d = opendir("/proc");
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		char p[300], buf[512];
		snprintf(p, sizeof(p), "/proc/%s/cmdline", de->d_name);
		int fd = open(p, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t k = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (k <= 0)
			continue;
		for (ssize_t i = 0; i < k; i++)
			if (!buf[i])
				buf[i] = ' ';
		buf[k] = 0;
		/* zombies keep no cmdline; a live match counts */
		if (strstr(buf, needle))
			n++;
	}
	closedir(d);
	return n;
}

static void test_exec_basics(void **state)
{
	Fx *f = *state;
	AgentExecResult res;
	const char *av[] = {"echo", "hello", "world", NULL};
	AgentExecSpec s = {.argv = av};
	char *out = NULL, *err = NULL;
	FlError e = {0};
	assert_int_equal(agent_exec_capture_sync(f->c, &s, NULL, 0, MiB, &out, NULL, &err, NULL, 10000,
						 &res, &e), 0);
	assert_string_equal(out, "hello world\n");
	assert_string_equal(err, "");
	assert_int_equal(res.exit_code, 0);
	assert_true(res.pid > 0);
	free(out);
	free(err);
	free(run(f, "exit 42", &res));
	assert_int_equal(res.exit_code, 42);
	free(run(f, "kill -TERM $$", &res));
	assert_int_equal(res.signal, SIGTERM);
	out = run(f, "echo out; echo err >&2", &res);
	assert_string_equal(out, "out\n");
	assert_int_equal(res.stderr_bytes, 4);
	free(out);
	const char *env[] = {"FOO=bar baz", "PATH=/usr/bin:/bin", NULL};
	AgentExecSpec x = {.shell = "echo \"$FOO\" $(pwd) $PATH", .env = env, .cwd = "/tmp"};
	assert_int_equal(agent_exec_capture_sync(f->c, &x, NULL, 0, MiB, &out, NULL, NULL, NULL, 10000,
						 &res, &e), 0);
	assert_string_equal(out, "bar baz /tmp /usr/bin:/bin\n");
	free(out);
	/* errors reported as errno, callbacks of failed calls never run */
	const char *missing[] = {"no-such-command-fluid", NULL};
	AgentExecSpec m = {.argv = missing};
	assert_int_equal(agent_exec_sync(f->c, &m, -1, -1, -1, 10000, &res, &e), -ENOENT);
	AgentExecSpec bad = {.shell = "true", .cwd = "/nonexistent-dir"};
	assert_int_equal(agent_exec_sync(f->c, &bad, -1, -1, -1, 10000, &res, &e), -ENOENT);
	assert_non_null(strstr(e.msg, "chdir"));
	AgentExecSpec nouser = {.shell = "true", .user = "no-such-user-fluid"};
	assert_int_equal(agent_exec_sync(f->c, &nouser, -1, -1, -1, 10000, &res, &e), -ESRCH);
	/* switching user: nobody exists on Debian */
	AgentExecSpec u = {.shell = "id -u; id -g", .user = "nobody"};
	assert_int_equal(agent_exec_capture_sync(f->c, &u, NULL, 0, MiB, &out, NULL, NULL, NULL, 10000,
						 &res, &e), 0);
	assert_string_equal(out, "65534\n65534\n");
	free(out);
}

typedef struct Sink {
	uint64_t bytes;
	bool bad;
	bool done;
	int r;
	AgentExecResult res;
	char buf[256];
	size_t blen;
} Sink;

static void sink_data(AgentOp *op, int fd, const void *buf, size_t len, void *ud)
{
	Sink *s = ud;
	if (!len)
		return;
	const char *pat = "abcdefghij\n";
	const uint8_t *p = buf;
	for (size_t i = 0; i < len; i++)
		if (fd == 1 && p[i] != (uint8_t)pat[(s->bytes + i) % 11])
			s->bad = true;
	if (fd == 1)
		s->bytes += len;
	size_t c = len < sizeof(s->buf) - 1 - s->blen ? len : sizeof(s->buf) - 1 - s->blen;
	memcpy(s->buf + s->blen, buf, c);
	s->blen += c;
	s->buf[s->blen] = 0;
}

static void sink_done(AgentOp *op, int r, struct json_object *res, const FlError *err, void *ud)
{
	Sink *s = ud;
	s->done = true;
	s->r = r;
	if (r == 0)
		agent_exec_result_parse(res, &s->res);
}

static const AgentOpHandlers SINK = {.on_data = sink_data, .on_done = sink_done};

static void loop_until(AgentClient *c, bool (*cond)(void *), void *arg, unsigned ms)
{
	uint64_t end = agent_now_ms() + ms;
	while (!cond(arg) && agent_now_ms() < end) {
		struct pollfd p = {.fd = agent_client_fd(c), .events = agent_client_poll_events(c)};
		int r = poll(&p, 1, 20);
		agent_client_dispatch(c, r > 0 ? p.revents : 0);
	}
}

static bool sink_is_done(void *a)
{
	return ((Sink *)a)->done;
}

static bool never_done(void *a)
{
	return false;
}

static void test_stream_20m_bounded(void **state)
{
	Fx *f = *state;
	struct rusage r0, r1;
	getrusage(RUSAGE_SELF, &r0);
	Sink s = {0};
	AgentExecSpec spec = {.shell = "yes abcdefghij | head -c 20971520"};
	FlError e = {0};
	assert_int_equal(agent_exec_start(f->c, &spec, 0, &SINK, &s, NULL, &e), 0);
	loop_until(f->c, sink_is_done, &s, 60000);
	assert_true(s.done);
	assert_int_equal(s.r, 0);
	assert_int_equal(s.res.exit_code, 0);
	assert_int_equal(s.bytes, 20 * MiB);
	assert_false(s.bad);
	getrusage(RUSAGE_SELF, &r1);
	assert_true(r1.ru_maxrss - r0.ru_maxrss < 32 * 1024);
	/* the agent stays small too */
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", f->agent);
	FILE *st = fopen(path, "re");
	long hwm = -1;
	while (st && fgets(line, sizeof(line), st))
		if (sscanf(line, "VmHWM: %ld", &hwm) == 1)
			break;
	if (st)
		fclose(st);
	assert_true(hwm > 0 && hwm < 24 * 1024);
}

static void test_slow_consumer_backpressure(void **state)
{
	Fx *f = *state;
	Sink s = {0};
	AgentOp *op;
	AgentExecSpec spec = {.shell = "yes abcdefghij | head -c 8388608"};
	FlError e = {0};
	assert_int_equal(agent_exec_start(f->c, &spec, 0, &SINK, &s, &op, &e), 0);
	agent_op_pause(op, true);
	loop_until(f->c, never_done, NULL, 1500);
	/* paused: only one window (256 KiB) arrives */
	assert_true(s.bytes <= 256 * 1024);
	assert_false(s.done);
	agent_op_pause(op, false);
	loop_until(f->c, sink_is_done, &s, 60000);
	assert_int_equal(s.bytes, 8 * MiB);
	assert_false(s.bad);
}

static void test_timeout_kills_process_tree(void **state)
{
	Fx *f = *state;
	/* durations unique to this run: other runs' processes do not count */
	char cmd[64], a[32], b[32];
	unsigned base = 10000 + 2 * ((unsigned)getpid() % 20000);
	snprintf(a, sizeof(a), "sleep %u", base);
	snprintf(b, sizeof(b), "sleep %u", base + 1);
	snprintf(cmd, sizeof(cmd), "%s & %s", a, b);
	AgentExecSpec s = {.shell = cmd, .timeout_ms = 700};
	AgentExecResult res;
	FlError e = {0};
	uint64_t t0 = agent_now_ms();
	assert_int_equal(agent_exec_sync(f->c, &s, -1, -1, -1, 30000, &res, &e), 0);
	assert_true(res.timed_out);
	assert_int_equal(res.signal, SIGKILL);
	assert_true(agent_now_ms() - t0 < 10000);
	/* both sleeps are gone (give the kernel a moment to reap) */
	for (int i = 0; i < 100 && (count_procs(a) || count_procs(b)); i++) {
		struct timespec ts = {0, 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	assert_int_equal(count_procs(a), 0);
	assert_int_equal(count_procs(b), 0);
}

static void test_stdin_to_cat(void **state)
{
	Fx *f = *state;
	size_t n = 3 * MiB + 5;
	uint8_t *in = malloc(n);
	for (size_t i = 0; i < n; i++)
		in[i] = (uint8_t)(i * 131 + (i >> 9));
	const char *av[] = {"cat", NULL};
	AgentExecSpec s = {.argv = av};
	char *out = NULL;
	size_t olen;
	AgentExecResult res;
	FlError e = {0};
	assert_int_equal(agent_exec_capture_sync(f->c, &s, in, n, 4 * MiB, &out, &olen, NULL, NULL,
						 30000, &res, &e), 0);
	assert_int_equal(olen, n);
	assert_memory_equal(out, in, n);
	free(out);
	/* empty stdin: EOF at once */
	const char *wc[] = {"wc", "-c", NULL};
	AgentExecSpec w = {.argv = wc};
	assert_int_equal(agent_exec_capture_sync(f->c, &w, "", 0, MiB, &out, NULL, NULL, NULL, 30000,
						 &res, &e), 0);
	assert_string_equal(out, "0\n");
	free(out);
	/* from a local fd */
	int p[2];
	assert_int_equal(pipe(p), 0);
	assert_int_equal(write(p[1], "via fd\n", 7), 7);
	close(p[1]);
	int o[2];
	assert_int_equal(pipe(o), 0);
	assert_int_equal(agent_exec_sync(f->c, &s, p[0], o[1], -1, 30000, &res, &e), 0);
	char buf[32] = "";
	assert_int_equal(read(o[0], buf, sizeof(buf)), 7);
	assert_memory_equal(buf, "via fd\n", 7);
	close(p[0]);
	close(o[0]);
	close(o[1]);
	free(in);
}

static bool all_done(void *a)
{
	Sink *s = a;
	for (int i = 0; i < 8; i++)
		if (!s[i].done)
			return false;
	return true;
}

static void test_concurrent_execs(void **state)
{
	Fx *f = *state;
	Sink s[8] = {0};
	FlError e = {0};
	uint64_t t0 = agent_now_ms();
	for (int i = 0; i < 8; i++) {
		char cmd[64];
		snprintf(cmd, sizeof(cmd), "sleep 0.5; echo job-%d", i);
		AgentExecSpec spec = {.shell = cmd};
		assert_int_equal(agent_exec_start(f->c, &spec, 0, &SINK, &s[i], NULL, &e), 0);
	}
	loop_until(f->c, all_done, s, 30000);
	assert_true(agent_now_ms() - t0 < 3500);
	for (int i = 0; i < 8; i++) {
		char want[16];
		snprintf(want, sizeof(want), "job-%d\n", i);
		assert_int_equal(s[i].r, 0);
		assert_string_equal(s[i].buf, want);
	}
}

static void test_cancel_and_signal(void **state)
{
	Fx *f = *state;
	Sink s = {0};
	AgentOp *op;
	FlError e = {0};
	AgentExecSpec spec = {.shell = "trap 'echo got-usr1' USR1; sleep 7303 & wait; sleep 7303 & wait"};
	assert_int_equal(agent_exec_start(f->c, &spec, 0, &SINK, &s, &op, &e), 0);
	loop_until(f->c, never_done, NULL, 400);
	assert_int_equal(agent_op_signal(op, SIGUSR1), 0);
	uint64_t end = agent_now_ms() + 5000;
	while (!strstr(s.buf, "got-usr1") && agent_now_ms() < end)
		loop_until(f->c, sink_is_done, &s, 50);
	assert_non_null(strstr(s.buf, "got-usr1"));
	assert_int_equal(agent_op_cancel(op), 0);
	loop_until(f->c, sink_is_done, &s, 10000);
	assert_true(s.done);
	assert_int_equal(s.res.signal, SIGKILL);
}

static void test_background(void **state)
{
	Fx *f = *state;
	AgentExecSpec s = {.shell = "echo bg-out; echo bg-err >&2; exec sleep 7304", .background = true};
	struct json_object *a, *res = NULL;
	FlError e = {0};
	assert_int_equal(agent_exec_args(&s, &a, &e), 0);
	assert_int_equal(agent_call_sync(f->c, "exec", a, 10000, &res, &e), 0);
	int64_t bg = json_object_get_int64(json_object_object_get(res, "bg"));
	json_object_put(res);
	assert_true(bg > 0);
	/* output is kept in a ring; ask for it */
	struct timespec ts = {0, 200 * 1000 * 1000};
	nanosleep(&ts, NULL);
	Sink out = {0};
	a = json_object_new_object();
	json_object_object_add(a, "bg", json_object_new_int64(bg));
	assert_int_equal(agent_op_start(f->c, "bg_output", json_object_get(a), 10000, &SINK, &out, NULL, &e), 0);
	loop_until(f->c, sink_is_done, &out, 10000);
	assert_int_equal(out.r, 0);
	assert_non_null(strstr(out.buf, "bg-out\n"));
	assert_non_null(strstr(out.buf, "bg-err\n"));
	/* wait with a timeout that passes */
	struct json_object *w = json_object_new_object();
	json_object_object_add(w, "bg", json_object_new_int64(bg));
	json_object_object_add(w, "timeout_ms", json_object_new_int(200));
	assert_int_equal(agent_call_sync(f->c, "bg_wait", w, 10000, NULL, &e), -ETIMEDOUT);
	assert_int_equal(agent_call_sync(f->c, "bg_remove", json_object_get(a), 10000, NULL, &e), -EBUSY);
	assert_int_equal(agent_call_sync(f->c, "bg_kill", json_object_get(a), 10000, NULL, &e), 0);
	assert_int_equal(agent_call_sync(f->c, "bg_wait", json_object_get(a), 10000, &res, &e), 0);
	assert_int_equal(json_object_get_int(json_object_object_get(res, "signal")), SIGTERM);
	json_object_put(res);
	assert_int_equal(agent_call_sync(f->c, "bg_remove", json_object_get(a), 10000, NULL, &e), 0);
	assert_int_equal(agent_call_sync(f->c, "bg_kill", a, 10000, NULL, &e), -ESRCH);
}

static void test_pty(void **state)
{
	Fx *f = *state;
	Sink s = {0};
	AgentOp *op;
	FlError e = {0};
	AgentExecSpec spec = {.shell = "stty size; read line; echo got:$line; exit 3", .pty = true,
			      .rows = 33, .cols = 101};
	assert_int_equal(agent_exec_start(f->c, &spec, 0, &SINK, &s, &op, &e), 0);
	uint64_t end = agent_now_ms() + 5000;
	while (!strstr(s.buf, "33 101") && agent_now_ms() < end)
		loop_until(f->c, sink_is_done, &s, 50);
	assert_non_null(strstr(s.buf, "33 101"));
	assert_int_equal(agent_pty_resize(op, 40, 120), 0);
	assert_int_equal(agent_op_write(op, "typed\n", 6), 6);
	loop_until(f->c, sink_is_done, &s, 10000);
	assert_true(s.done);
	assert_non_null(strstr(s.buf, "got:typed"));
	assert_int_equal(s.res.exit_code, 3);

	/* closing a terminal: SIGHUP, and SIGKILL for what ignores it */
	Sink h = {0}, k = {0};
	AgentOp *oh, *ok;
	AgentExecSpec sh = {.shell = "exec sleep 7310", .pty = true};
	AgentExecSpec sk = {.shell = "trap '' HUP; sleep 7311; true", .pty = true};
	assert_int_equal(agent_exec_start(f->c, &sh, 0, &SINK, &h, &oh, &e), 0);
	assert_int_equal(agent_exec_start(f->c, &sk, 0, &SINK, &k, &ok, &e), 0);
	loop_until(f->c, never_done, NULL, 500);
	uint64_t t0 = agent_now_ms();
	assert_int_equal(agent_op_cancel(oh), 0);
	assert_int_equal(agent_op_cancel(ok), 0);
	loop_until(f->c, sink_is_done, &h, 10000);
	loop_until(f->c, sink_is_done, &k, 10000);
	assert_int_equal(h.res.signal, SIGHUP);
	assert_int_equal(k.res.signal, SIGKILL);
	assert_false(k.res.timed_out);
	assert_true(agent_now_ms() - t0 >= 1900);
}

static void test_files(void **state)
{
	Fx *f = *state;
	FlError e = {0};
	char path[200], dir[200];
	snprintf(dir, sizeof(dir), "%s/a/b/c", f->dir);
	snprintf(path, sizeof(path), "%s/data.bin", dir);
	size_t n = 5 * MiB + 3;
	uint8_t *buf = malloc(n);
	for (size_t i = 0; i < n; i++)
		buf[i] = (uint8_t)(i ^ (i >> 11));
	AgentFileAttrs at = {.mode = 0640, .mkdirs = true};
	assert_int_equal(agent_file_put_buf_sync(f->c, buf, n, path, &at, 30000, &e), 0);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, (off_t)n);
	assert_int_equal(st.st_mode & 07777, 0640);
	/* read it back into a local fd */
	char local[200];
	snprintf(local, sizeof(local), "%s/back", f->dir);
	int fd = open(local, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	uint64_t got = 0;
	assert_int_equal(agent_file_get_sync(f->c, path, fd, 30000, &got, &e), 0);
	assert_int_equal(got, n);
	uint8_t *back = malloc(n);
	assert_int_equal(pread(fd, back, n, 0), (ssize_t)n);
	assert_memory_equal(back, buf, n);
	close(fd);
	/* owner and group by name */
	char owned[220];
	snprintf(owned, sizeof(owned), "%s/owned", f->dir);
	AgentFileAttrs ow = {.mode = 0604, .owner = "nobody", .group = "0"};
	assert_int_equal(agent_file_put_buf_sync(f->c, "x", 1, owned, &ow, 30000, &e), 0);
	assert_int_equal(stat(owned, &st), 0);
	assert_int_equal(st.st_uid, 65534);
	assert_int_equal(st.st_gid, 0);
	assert_int_equal(st.st_mode & 07777, 0604);
	AgentFileAttrs bad = {.mode = -1, .owner = "no-such-user-fluid"};
	assert_int_equal(agent_file_put_buf_sync(f->c, "x", 1, owned, &bad, 30000, &e), -ESRCH);
	/* replacing keeps the mode; empty files work */
	assert_int_equal(agent_file_put_buf_sync(f->c, "", 0, path, NULL, 30000, &e), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 0);
	assert_int_equal(st.st_mode & 07777, 0640);

	struct json_object *a = json_object_new_object(), *res = NULL;
	json_object_object_add(a, "path", json_object_new_string(path));
	assert_int_equal(agent_call_sync(f->c, "stat", a, 10000, &res, &e), 0);
	assert_string_equal(json_object_get_string(json_object_object_get(res, "kind")), "file");
	assert_int_equal(json_object_get_int(json_object_object_get(res, "mode")), 0640);
	json_object_put(res);
	a = json_object_new_object();
	json_object_object_add(a, "path", json_object_new_string(dir));
	assert_int_equal(agent_call_sync(f->c, "list", a, 10000, &res, &e), 0);
	struct json_object *ents = json_object_object_get(res, "entries");
	assert_int_equal(json_object_array_length(ents), 1);
	assert_string_equal(json_object_get_string(json_object_object_get(json_object_array_get_idx(ents, 0), "name")),
			    "data.bin");
	json_object_put(res);
	char to[220];
	snprintf(to, sizeof(to), "%s/renamed", f->dir);
	a = json_object_new_object();
	json_object_object_add(a, "from", json_object_new_string(path));
	json_object_object_add(a, "to", json_object_new_string(to));
	assert_int_equal(agent_call_sync(f->c, "rename", a, 10000, NULL, &e), 0);
	assert_int_equal(access(to, F_OK), 0);
	char mk[220];
	snprintf(mk, sizeof(mk), "%s/x/y", f->dir);
	a = json_object_new_object();
	json_object_object_add(a, "path", json_object_new_string(mk));
	json_object_object_add(a, "parents", json_object_new_boolean(1));
	json_object_object_add(a, "mode", json_object_new_int(0700));
	assert_int_equal(agent_call_sync(f->c, "mkdir", a, 10000, NULL, &e), 0);
	assert_int_equal(stat(mk, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	char top[220];
	snprintf(top, sizeof(top), "%s/a", f->dir);
	a = json_object_new_object();
	json_object_object_add(a, "path", json_object_new_string(top));
	assert_int_equal(agent_call_sync(f->c, "remove", json_object_get(a), 10000, NULL, &e), -ENOTEMPTY);
	json_object_object_add(a, "recursive", json_object_new_boolean(1));
	assert_int_equal(agent_call_sync(f->c, "remove", a, 10000, NULL, &e), 0);
	assert_int_equal(access(top, F_OK), -1);
	/* errors */
	int lfd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	assert_int_equal(agent_file_get_sync(f->c, "/nonexistent/file", lfd, 10000, NULL, &e), -ENOENT);
	assert_int_equal(agent_file_get_sync(f->c, "relative/path", lfd, 10000, NULL, &e), -EINVAL);
	assert_int_equal(agent_file_get_sync(f->c, f->dir, lfd, 10000, NULL, &e), -EISDIR);
	close(lfd);
	assert_int_equal(agent_file_put_buf_sync(f->c, "x", 1, "/nonexistent-dir/f", NULL, 10000, &e), -ENOENT);
	free(buf);
	free(back);
}

static void test_reconnect(void **state)
{
	Fx *f = *state;
	FlError e = {0};
	/* a foreground exec dies with its connection, a background one lives */
	Sink s = {0};
	/* durations unique to this run: other runs' processes do not count */
	char fgcmd[64], bgcmd[64], fgname[32], bgname[32];
	unsigned base = 50000 + 2 * ((unsigned)getpid() % 20000);
	snprintf(fgname, sizeof(fgname), "sleep %u", base);
	snprintf(bgname, sizeof(bgname), "sleep %u", base + 1);
	snprintf(fgcmd, sizeof(fgcmd), "exec %s", fgname);
	snprintf(bgcmd, sizeof(bgcmd), "exec %s", bgname);
	AgentExecSpec fg = {.shell = fgcmd};
	assert_int_equal(agent_exec_start(f->c, &fg, 0, &SINK, &s, NULL, &e), 0);
	AgentExecSpec bgs = {.shell = bgcmd, .background = true};
	struct json_object *a, *res = NULL;
	assert_int_equal(agent_exec_args(&bgs, &a, &e), 0);
	assert_int_equal(agent_call_sync(f->c, "exec", a, 10000, &res, &e), 0);
	int64_t bg = json_object_get_int64(json_object_object_get(res, "bg"));
	json_object_put(res);
	assert_int_equal(count_procs(fgname), 1);
	agent_client_free(f->c);
	f->c = NULL;
	assert_true(s.done);
	assert_int_equal(s.r, -ECANCELED);
	/* garbage from a broken host, then a proper one */
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->sock);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(write(fd, "FLA1\xff\xff\xff\x7fgarbage", 15), 15);
	close(fd);
	assert_int_equal(agent_connect_sync(f->sock, 10000, &f->c, &e), 0);
	for (int i = 0; i < 100 && count_procs(fgname); i++) {
		struct timespec ts = {0, 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	assert_int_equal(count_procs(fgname), 0);
	assert_int_equal(count_procs(bgname), 1);
	assert_int_equal(agent_call_sync(f->c, "bg_list", NULL, 10000, &res, &e), 0);
	struct json_object *p = json_object_array_get_idx(json_object_object_get(res, "processes"), 0);
	assert_int_equal(json_object_get_int64(json_object_object_get(p, "bg")), bg);
	assert_true(json_object_get_boolean(json_object_object_get(p, "running")));
	json_object_put(res);
	a = json_object_new_object();
	json_object_object_add(a, "bg", json_object_new_int64(bg));
	json_object_object_add(a, "signal", json_object_new_int(SIGKILL));
	assert_int_equal(agent_call_sync(f->c, "bg_kill", a, 10000, NULL, &e), 0);
}

static bool tmp_left(const char *dir)
{
	DIR *d = opendir(dir);
	bool found = false;
	struct dirent *de;
	while (d && (de = readdir(d)))
		if (strstr(de->d_name, ".fluid-"))
			found = true;
	if (d)
		closedir(d);
	return found;
}

static void test_transfer_aborted_by_disconnect(void **state)
{
	Fx *f = *state;
	FlError e = {0};
	char path[200];
	snprintf(path, sizeof(path), "%s/partial", f->dir);
	struct json_object *a = json_object_new_object();
	json_object_object_add(a, "path", json_object_new_string(path));
	Sink s = {0};
	AgentOp *op;
	assert_int_equal(agent_op_start(f->c, "file_write", a, 0, &SINK, &s, &op, &e), 0);
	static uint8_t chunk[100000];
	assert_true(agent_op_write(op, chunk, sizeof(chunk)) > 0);
	loop_until(f->c, never_done, NULL, 300);
	assert_true(tmp_left(f->dir));
	agent_client_free(f->c);
	f->c = NULL;
	assert_int_equal(s.r, -ECANCELED);
	assert_int_equal(agent_connect_sync(f->sock, 10000, &f->c, &e), 0);
	/* the agent dropped the half-written temporary file, the target was
	 * never created */
	assert_false(tmp_left(f->dir));
	assert_int_equal(access(path, F_OK), -1);
}

static void test_many_round_trips(void **state)
{
	Fx *f = *state;
	FlError e = {0};
	const char *av[] = {"true", NULL};
	AgentExecSpec s = {.argv = av};
	AgentExecResult res;
	for (int i = 0; i < 200; i++) {
		assert_int_equal(agent_exec_sync(f->c, &s, -1, -1, -1, 10000, &res, &e), 0);
		assert_int_equal(res.exit_code, 0);
	}
	struct json_object *r = NULL;
	assert_int_equal(agent_call_sync(f->c, "capabilities", NULL, 10000, &r, &e), 0);
	assert_true(json_object_array_length(json_object_object_get(r, "ops")) > 10);
	json_object_put(r);
	assert_int_equal(agent_call_sync(f->c, "no_such_op", NULL, 10000, NULL, &e), -EOPNOTSUPP);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exec_basics),
		cmocka_unit_test(test_stream_20m_bounded),
		cmocka_unit_test(test_slow_consumer_backpressure),
		cmocka_unit_test(test_timeout_kills_process_tree),
		cmocka_unit_test(test_stdin_to_cat),
		cmocka_unit_test(test_concurrent_execs),
		cmocka_unit_test(test_cancel_and_signal),
		cmocka_unit_test(test_background),
		cmocka_unit_test(test_pty),
		cmocka_unit_test(test_files),
		cmocka_unit_test(test_reconnect),
		cmocka_unit_test(test_transfer_aborted_by_disconnect),
		cmocka_unit_test(test_many_round_trips),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
