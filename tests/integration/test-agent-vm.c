// SPDX-License-Identifier: MIT
/*
 * Integration tests of fluid-agent inside real guests: boots build/images/
 * tiny and build/images/debian-12 under QEMU (TCG) with the standard device
 * set and checks, through the agent over virtio-serial: uname and exit
 * codes, 20 MiB of streamed stdout (checksum, bounded memory), a 50 MiB file
 * round trip, timeouts killing a process tree, stdin to cat, fsfreeze
 * blocking writes until thaw, identity refresh, ptys, and background
 * processes surviving a host reconnect, and the agent carrying on in a
 * clone made from a RAM snapshot of a running VM (template/clone as in
 * DESIGN.md). A missing image is a failure.
 * FLUID_AGENT_VM_IMAGES="tiny" (or "debian-12", "clone") limits the runs.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "qmp.h"
#include "testvm.h"

#define MiB (1024u * 1024)

static TestVm *vm_of(void **state)
{
	return *state;
}

static int boot(void **state, const char *image)
{
	TestVm *vm;
	FlError e = {0};
	TestVmOptions o = {.image = image};
	int r = testvm_start(&o, &vm, &e);
	if (r < 0) {
		fprintf(stderr, "boot %s failed: %s\n", image, e.msg);
		return -1;
	}
	fprintf(stderr, "# %s: cold boot to agent ready in %llu ms\n", image,
		(unsigned long long)(vm->ready_ms - vm->spawn_ms));
	*state = vm;
	return 0;
}

static int setup_tiny(void **state) { return boot(state, "tiny"); }
static int setup_debian(void **state) { return boot(state, "debian-12"); }
static int teardown(void **state)
{
	testvm_destroy(*state);
	return 0;
}

/* Runs a shell command, returns its stdout (malloc'ed), asserts success. */
static char *sh(TestVm *vm, const char *cmd, int *exit_code)
{
	AgentExecSpec s = {.shell = cmd};
	char *out = NULL, *err = NULL;
	AgentExecResult res;
	FlError e = {0};
	int r = agent_exec_capture_sync(vm->agent, &s, NULL, 0, 4 * MiB, &out, NULL, &err, NULL,
					 600000, &res, &e);
	if (r < 0)
		fprintf(stderr, "exec '%s': %s\n", cmd, e.msg);
	assert_int_equal(r, 0);
	if (exit_code)
		*exit_code = res.signal ? 128 + res.signal : res.exit_code;
	else if (res.exit_code || res.signal)
		fprintf(stderr, "'%s' failed (%d/%d): %s\n", cmd, res.exit_code, res.signal, err);
	if (!exit_code) {
		assert_int_equal(res.signal, 0);
		assert_int_equal(res.exit_code, 0);
	}
	free(err);
	return out;
}

static void test_uname_exit_codes(void **state)
{
	TestVm *vm = vm_of(state);
	const char *av[] = {"uname", "-a", NULL};
	AgentExecSpec s = {.argv = av};
	char *out = NULL;
	AgentExecResult res;
	FlError e = {0};
	assert_int_equal(agent_exec_capture_sync(vm->agent, &s, NULL, 0, MiB, &out, NULL, NULL, NULL,
						 60000, &res, &e), 0);
	assert_non_null(strstr(out, "Linux "));
	assert_non_null(strstr(out, "x86_64"));
	assert_int_equal(res.exit_code, 0);
	free(out);

	int code;
	free(sh(vm, "exit 7", &code));
	assert_int_equal(code, 7);
	free(sh(vm, "kill -9 $$", &code));
	assert_int_equal(code, 128 + 9);
	const char *missing[] = {"/nonexistent/binary", NULL};
	AgentExecSpec m = {.argv = missing};
	assert_int_equal(agent_exec_sync(vm->agent, &m, -1, -1, -1, 60000, &res, &e), -ENOENT);
	/* environment, cwd and user are applied */
	const char *env[] = {"FLUID_T=42", NULL};
	AgentExecSpec x = {.shell = "echo $FLUID_T $(pwd) $(id -u)", .env = env, .cwd = "/tmp",
			   .user = "nobody"};
	assert_int_equal(agent_exec_capture_sync(vm->agent, &x, NULL, 0, MiB, &out, NULL, NULL, NULL,
						 60000, &res, &e), 0);
	assert_int_equal(res.exit_code, 0);
	assert_true(!strncmp(out, "42 /tmp ", 8));
	assert_string_not_equal(out + 8, "0\n");
	free(out);
}

typedef struct Stream {
	FlSha256 sha;
	uint64_t bytes;
	bool done;
	int r;
	AgentExecResult res;
} Stream;

static void st_data(AgentOp *op, int fd, const void *buf, size_t len, void *ud)
{
	Stream *s = ud;
	if (fd == 1) {
		fl_sha256_update(&s->sha, buf, len);
		s->bytes += len;
	}
}

static void st_done(AgentOp *op, int r, struct json_object *res, const FlError *err, void *ud)
{
	Stream *s = ud;
	s->done = true;
	s->r = r;
	if (r == 0)
		agent_exec_result_parse(res, &s->res);
	else
		fprintf(stderr, "op failed: %s\n", err ? err->msg : "");
}

/* Drives the client until *flag or timeout; returns true if *flag. */
static bool pump(AgentClient *c, bool *flag, unsigned ms)
{
	uint64_t end = agent_now_ms() + ms;
	while (!*flag && agent_now_ms() < end) {
		struct pollfd p = {.fd = agent_client_fd(c), .events = agent_client_poll_events(c)};
		if (p.fd < 0)
			return *flag;
		int r = poll(&p, 1, 50);
		agent_client_dispatch(c, r > 0 ? p.revents : 0);
	}
	return *flag;
}

static long maxrss_kb(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

static long agent_hwm_kb(TestVm *vm)
{
	int64_t pid = 0;
	struct json_object *v;
	if (json_object_object_get_ex(agent_client_hello(vm->agent), "pid", &v))
		pid = json_object_get_int64(v);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "grep VmHWM /proc/%lld/status | tr -dc 0-9", (long long)pid);
	char *out = sh(vm, cmd, NULL);
	long kb = atol(out);
	free(out);
	return kb;
}

/* utime + stime of the agent in clock ticks, read in the guest. */
static long agent_cpu_ticks(TestVm *vm)
{
	int64_t pid = 0;
	struct json_object *v;
	if (json_object_object_get_ex(agent_client_hello(vm->agent), "pid", &v))
		pid = json_object_get_int64(v);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "cut -d' ' -f14,15 /proc/%lld/stat", (long long)pid);
	char *out = sh(vm, cmd, NULL);
	long u = 0, st = 0;
	if (sscanf(out, "%ld %ld", &u, &st) != 2)
		u = -1;
	free(out);
	return u < 0 ? -1 : u + st;
}

static void test_stream_20m(void **state)
{
	TestVm *vm = vm_of(state);
	char *out = sh(vm, "head -c 20971520 /dev/urandom > /root/big20 && sha256sum /root/big20", NULL);
	char want[65];
	assert_true(strlen(out) >= 64);
	memcpy(want, out, 64);
	want[64] = 0;
	free(out);

	long rss0 = maxrss_kb();
	Stream s = {0};
	fl_sha256_init(&s.sha);
	AgentExecSpec spec = {.shell = "cat /root/big20"};
	AgentOpHandlers h = {.on_data = st_data, .on_done = st_done};
	FlError e = {0};
	uint64_t t0 = agent_now_ms();
	assert_int_equal(agent_exec_start(vm->agent, &spec, 0, &h, &s, NULL, &e), 0);
	assert_true(pump(vm->agent, &s.done, 600000));
	uint64_t ms = agent_now_ms() - t0;
	assert_int_equal(s.r, 0);
	assert_int_equal(s.res.exit_code, 0);
	assert_int_equal(s.bytes, 20971520);
	char got[65];
	fl_sha256_final_hex(&s.sha, got);
	assert_string_equal(got, want);
	long grew = maxrss_kb() - rss0;
	long hwm = agent_hwm_kb(vm);
	fprintf(stderr, "# %s: 20 MiB stdout in %llu ms (%.1f MiB/s), host RSS growth %ld KiB, agent VmHWM %ld KiB\n",
		vm->image, (unsigned long long)ms, 20.0 * 1000 / (double)(ms ? ms : 1), grew, hwm);
	assert_true(grew < 16 * 1024);
	assert_true(hwm > 0 && hwm < 24 * 1024);
	free(sh(vm, "rm -f /root/big20", NULL));
}

static void fill(uint8_t *p, size_t n, uint64_t *x)
{
	for (size_t i = 0; i < n; i++) {
		*x ^= *x << 13;
		*x ^= *x >> 7;
		*x ^= *x << 17;
		p[i] = (uint8_t)(*x >> 24);
	}
}

static void test_file_50m(void **state)
{
	TestVm *vm = vm_of(state);
	char src[] = "/tmp/fluid-agent-50m-XXXXXX", dst[] = "/tmp/fluid-agent-50m-back-XXXXXX";
	int fd = mkostemp(src, O_CLOEXEC), fd2 = mkostemp(dst, O_CLOEXEC);
	assert_true(fd >= 0 && fd2 >= 0);
	unlink(src);
	unlink(dst);
	FlSha256 sha;
	fl_sha256_init(&sha);
	static uint8_t buf[MiB];
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (int i = 0; i < 50; i++) {
		fill(buf, sizeof(buf), &x);
		fl_sha256_update(&sha, buf, sizeof(buf));
		assert_int_equal(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	}
	char want[65];
	fl_sha256_final_hex(&sha, want);
	lseek(fd, 0, SEEK_SET);

	FlError e = {0};
	uint64_t bytes = 0;
	AgentFileAttrs a = {.mode = 0600, .mkdirs = true};
	uint64_t t0 = agent_now_ms();
	int r = agent_file_put_sync(vm->agent, fd, "/root/fluid-test/big50", &a, 900000, &bytes, &e);
	if (r < 0)
		fprintf(stderr, "put: %s\n", e.msg);
	assert_int_equal(r, 0);
	uint64_t put_ms = agent_now_ms() - t0;
	assert_int_equal(bytes, 50 * MiB);
	char *out = sh(vm, "sha256sum /root/fluid-test/big50; stat -c %a /root/fluid-test/big50", NULL);
	assert_memory_equal(out, want, 64);
	assert_non_null(strstr(out, "\n600\n"));
	free(out);

	t0 = agent_now_ms();
	r = agent_file_get_sync(vm->agent, "/root/fluid-test/big50", fd2, 900000, &bytes, &e);
	if (r < 0)
		fprintf(stderr, "get: %s\n", e.msg);
	assert_int_equal(r, 0);
	uint64_t get_ms = agent_now_ms() - t0;
	assert_int_equal(bytes, 50 * MiB);
	lseek(fd2, 0, SEEK_SET);
	fl_sha256_init(&sha);
	ssize_t n;
	while ((n = read(fd2, buf, sizeof(buf))) > 0)
		fl_sha256_update(&sha, buf, (size_t)n);
	char got[65];
	fl_sha256_final_hex(&sha, got);
	assert_string_equal(got, want);
	fprintf(stderr, "# %s: 50 MiB put %llu ms, get %llu ms\n", vm->image,
		(unsigned long long)put_ms, (unsigned long long)get_ms);
	close(fd);
	close(fd2);
	struct json_object *args = json_object_new_object();
	json_object_object_add(args, "path", json_object_new_string("/root/fluid-test"));
	json_object_object_add(args, "recursive", json_object_new_boolean(1));
	assert_int_equal(agent_call_sync(vm->agent, "remove", args, 60000, NULL, &e), 0);
}

static void test_timeout_kills_tree(void **state)
{
	TestVm *vm = vm_of(state);
	AgentExecSpec s = {.shell = "sleep 1001 & sleep 1002", .timeout_ms = 3000};
	AgentExecResult res;
	FlError e = {0};
	uint64_t t0 = agent_now_ms();
	assert_int_equal(agent_exec_sync(vm->agent, &s, -1, -1, -1, 120000, &res, &e), 0);
	assert_true(res.timed_out);
	assert_int_equal(res.signal, 9);
	assert_true(agent_now_ms() - t0 < 60000);
	/* neither sleep survives ("[1]" keeps this grep from matching itself) */
	char *out = sh(vm, "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' | grep -c 'sleep 100[1]\\|sleep 100[2]'", (int[]){0});
	assert_string_equal(out, "0\n");
	free(out);
}

static void test_stdin_cat(void **state)
{
	TestVm *vm = vm_of(state);
	size_t n = 3 * MiB + 17;
	uint8_t *in = malloc(n);
	uint64_t x = 12345;
	fill(in, n, &x);
	const char *av[] = {"cat", NULL};
	AgentExecSpec s = {.argv = av};
	char *out = NULL;
	size_t olen = 0;
	AgentExecResult res;
	FlError e = {0};
	assert_int_equal(agent_exec_capture_sync(vm->agent, &s, in, n, 8 * MiB, &out, &olen, NULL, NULL,
						 600000, &res, &e), 0);
	assert_int_equal(res.exit_code, 0);
	assert_int_equal(olen, n);
	assert_memory_equal(out, in, n);
	free(out);
	free(in);
}

static void test_fsfreeze_blocks_writes(void **state)
{
	TestVm *vm = vm_of(state);
	FlError e = {0};
	unsigned n = 0;
	int r = agent_fsfreeze_sync(vm->agent, 120000, 60000, &n, &e);
	if (r < 0)
		fprintf(stderr, "fsfreeze: %s\n", e.msg);
	assert_int_equal(r, 0);
	assert_true(n >= 1);
	/* a write to / must wait for the thaw */
	Stream s = {0};
	fl_sha256_init(&s.sha);
	AgentExecSpec spec = {.shell = "echo frozen-ok > /root/freeze-test && echo written"};
	AgentOpHandlers h = {.on_data = st_data, .on_done = st_done};
	assert_int_equal(agent_exec_start(vm->agent, &spec, 0, &h, &s, NULL, &e), 0);
	assert_false(pump(vm->agent, &s.done, 3000));
	/* mutating agent operations refuse to run while frozen */
	struct json_object *a = json_object_new_object();
	json_object_object_add(a, "path", json_object_new_string("/root/x-frozen"));
	assert_int_equal(agent_call_sync(vm->agent, "mkdir", a, 60000, NULL, &e), -EBUSY);
	assert_false(s.done);
	unsigned t = 0;
	assert_int_equal(agent_fsthaw_sync(vm->agent, 60000, &t, &e), 0);
	assert_int_equal(t, n);
	assert_true(pump(vm->agent, &s.done, 120000));
	assert_int_equal(s.r, 0);
	assert_int_equal(s.res.exit_code, 0);
	assert_int_equal(s.bytes, strlen("written\n"));
	char *out = sh(vm, "cat /root/freeze-test; rm /root/freeze-test", NULL);
	assert_string_equal(out, "frozen-ok\n");
	free(out);

	/* a freeze never outlives its deadline ... */
	assert_int_equal(agent_fsfreeze_sync(vm->agent, 1500, 60000, &n, &e), 0);
	bool never = false;
	pump(vm->agent, &never, 2500);
	struct json_object *res = NULL;
	assert_int_equal(agent_call_sync(vm->agent, "fsfreeze_status", NULL, 60000, &res, &e), 0);
	assert_int_equal(json_object_get_int(json_object_object_get(res, "count")), 0);
	json_object_put(res);
	/* ... nor the host connection that asked for it */
	assert_int_equal(agent_fsfreeze_sync(vm->agent, 120000, 60000, &n, &e), 0);
	assert_int_equal(testvm_reconnect(vm, 60000, &e), 0);
	res = NULL;
	assert_int_equal(agent_call_sync(vm->agent, "fsfreeze_status", NULL, 60000, &res, &e), 0);
	assert_int_equal(json_object_get_int(json_object_object_get(res, "count")), 0);
	json_object_put(res);
	free(sh(vm, "echo ok > /root/after-thaw && rm /root/after-thaw", NULL));
}

static void test_identity_refresh(void **state)
{
	TestVm *vm = vm_of(state);
	char *old_mid = sh(vm, "cat /etc/machine-id", NULL);
	char host[64];
	snprintf(host, sizeof(host), "fluid-it-%d", getpid());
	AgentIdentity id = {.hostname = host, .set_clock = true, .dhcp = true};
	struct json_object *res = NULL;
	FlError e = {0};
	int r = agent_identity_sync(vm->agent, &id, 120000, &res, &e);
	if (r < 0)
		fprintf(stderr, "identity: %s\n", e.msg);
	assert_int_equal(r, 0);
	fprintf(stderr, "# %s: identity reply %s\n", vm->image, json_object_to_json_string(res));
	char *out = sh(vm, "hostname", NULL);
	char want[80];
	snprintf(want, sizeof(want), "%s\n", host);
	assert_string_equal(out, want);
	free(out);
	char *mid = sh(vm, "cat /etc/machine-id", NULL);
	assert_int_equal(strlen(mid), 33);
	assert_string_not_equal(mid, old_mid);
	struct json_object *v;
	assert_true(json_object_object_get_ex(res, "machine_id", &v));
	assert_memory_equal(json_object_get_string(v), mid, 32);
	free(mid);
	free(old_mid);
	json_object_put(res);
}

typedef struct Pty {
	char out[8192];
	size_t len;
	bool done;
	int r;
	AgentExecResult res;
} Pty;

static void pty_data(AgentOp *op, int fd, const void *buf, size_t len, void *ud)
{
	Pty *p = ud;
	size_t c = len < sizeof(p->out) - 1 - p->len ? len : sizeof(p->out) - 1 - p->len;
	memcpy(p->out + p->len, buf, c);
	p->len += c;
	p->out[p->len] = 0;
}

static void pty_done(AgentOp *op, int r, struct json_object *res, const FlError *err, void *ud)
{
	Pty *p = ud;
	p->done = true;
	p->r = r;
	if (r == 0)
		agent_exec_result_parse(res, &p->res);
}

static void test_pty_session(void **state)
{
	TestVm *vm = vm_of(state);
	Pty p = {0};
	AgentExecSpec s = {.shell = "stty size; exec sh -i", .pty = true, .rows = 33, .cols = 101};
	AgentOpHandlers h = {.on_data = pty_data, .on_done = pty_done};
	AgentOp *op;
	FlError e = {0};
	assert_int_equal(agent_exec_start(vm->agent, &s, 0, &h, &p, &op, &e), 0);
	bool never = false;
	pump(vm->agent, &never, 1500);
	const char *cmd = "echo pty-$((6*7)); exit 5\n";
	assert_int_equal(agent_op_write(op, cmd, strlen(cmd)), (ssize_t)strlen(cmd));
	assert_true(pump(vm->agent, &p.done, 120000));
	assert_int_equal(p.r, 0);
	assert_non_null(strstr(p.out, "33 101"));
	assert_non_null(strstr(p.out, "pty-42"));
	assert_int_equal(p.res.exit_code, 5);
}

static void test_background_survives_reconnect(void **state)
{
	TestVm *vm = vm_of(state);
	AgentExecSpec s = {.shell = "echo started; exec sleep 1003", .background = true};
	struct json_object *a, *res = NULL;
	FlError e = {0};
	assert_int_equal(agent_exec_args(&s, &a, &e), 0);
	assert_int_equal(agent_call_sync(vm->agent, "exec", a, 60000, &res, &e), 0);
	uint64_t bg = json_object_get_int64(json_object_object_get(res, "bg"));
	json_object_put(res);
	assert_true(bg > 0);

	/* Disconnected, the agent waits for SIGIO instead of spinning on the
	 * port's POLLHUP: it uses (almost) no CPU meanwhile. */
	long t0 = agent_cpu_ticks(vm);
	agent_client_free(vm->agent);
	vm->agent = NULL;
	struct timespec ts = {4, 0};
	nanosleep(&ts, NULL);
	assert_int_equal(testvm_reconnect(vm, 60000, &e), 0);
	long t1 = agent_cpu_ticks(vm);
	fprintf(stderr, "# %s: agent CPU while disconnected 4 s (+ one exec): %ld ticks\n", vm->image, t1 - t0);
	assert_true(t0 >= 0 && t1 - t0 < 50);
	res = NULL;
	assert_int_equal(agent_call_sync(vm->agent, "bg_list", NULL, 60000, &res, &e), 0);
	struct json_object *procs = json_object_object_get(res, "processes");
	bool found = false;
	for (size_t i = 0; i < json_object_array_length(procs); i++) {
		struct json_object *p = json_object_array_get_idx(procs, i);
		if ((uint64_t)json_object_get_int64(json_object_object_get(p, "bg")) == bg) {
			found = true;
			assert_true(json_object_get_boolean(json_object_object_get(p, "running")));
		}
	}
	json_object_put(res);
	assert_true(found);
	a = json_object_new_object();
	json_object_object_add(a, "bg", json_object_new_int64((int64_t)bg));
	assert_int_equal(agent_call_sync(vm->agent, "bg_kill", json_object_get(a), 60000, NULL, &e), 0);
	json_object_object_add(a, "timeout_ms", json_object_new_int(30000));
	res = NULL;
	assert_int_equal(agent_call_sync(vm->agent, "bg_wait", a, 60000, &res, &e), 0);
	assert_int_equal(json_object_get_int(json_object_object_get(res, "signal")), 15);
	json_object_put(res);
}

typedef struct StateRec {
	int calls;
	int r;
} StateRec;

static void state_rec(AgentClient *c, int r, const FlError *err, void *ud)
{
	StateRec *s = ud;
	s->calls++;
	s->r = r;
}

/* The agent dies and is restarted by init/systemd under a connected host:
 * virtio-serial gives the host no sign of it, the agent's reset frame does. */
static void test_agent_restart_detected(void **state)
{
	TestVm *vm = vm_of(state);
	FlError e = {0};
	assert_int_equal(testvm_reconnect(vm, 60000, &e), 0);
	int64_t pid = json_object_get_int64(json_object_object_get(agent_client_hello(vm->agent), "pid"));
	AgentClient *c;
	StateRec sr = {0};
	AgentClientOptions o = {.on_state = state_rec, .userdata = &sr};
	agent_client_free(vm->agent);
	vm->agent = NULL;
	assert_int_equal(agent_client_new(vm->agent_sock, &o, &c, &e), 0);
	assert_int_equal(agent_wait_ready_sync(c, 60000, &e), 0);
	/* upgrade in place: the restarted agent is this tree's build (atomic
	 * replace; the running binary is not disturbed) */
	char bin[512];
	snprintf(bin, sizeof(bin), "%s/build/fluid-agent", testvm_root());
	int fd = open(bin, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	AgentFileAttrs at = {.mode = 0755};
	assert_int_equal(agent_file_put_sync(c, fd, "/usr/sbin/fluid-agent", &at, 120000, NULL, &e), 0);
	close(fd);
	char cmd[80];
	snprintf(cmd, sizeof(cmd), "sleep 1; kill -9 %lld", (long long)pid);
	AgentExecSpec s = {.shell = cmd, .background = true};
	struct json_object *a;
	assert_int_equal(agent_exec_args(&s, &a, &e), 0);
	assert_int_equal(agent_call_sync(c, "exec", a, 60000, NULL, &e), 0);
	uint64_t end = agent_now_ms() + 60000;
	while (agent_client_fd(c) >= 0 && agent_now_ms() < end) {
		struct pollfd p = {.fd = agent_client_fd(c), .events = agent_client_poll_events(c)};
		int r = poll(&p, 1, 100);
		agent_client_dispatch(c, r > 0 ? p.revents : 0);
	}
	assert_int_equal(sr.calls, 2);
	assert_int_equal(sr.r, -ECONNRESET);
	agent_client_free(c);
	assert_int_equal(testvm_reconnect(vm, 60000, &e), 0);
	int64_t pid2 = json_object_get_int64(json_object_object_get(agent_client_hello(vm->agent), "pid"));
	assert_true(pid2 != pid);
	free(sh(vm, "true", NULL));
}

/* Polls a QMP query until member "status" differs from `while_status`. */
static int qmp_wait_status(QmpClient *q, const char *query, const char *while_status,
			   char *final, size_t fsz)
{
	for (int i = 0; i < 3000; i++) {
		struct json_object *r = NULL;
		FlError e = {0};
		int k = qmp_call_sync(q, query, NULL, -1, 10000, &r, &e);
		if (k < 0) {
			fprintf(stderr, "%s: %s\n", query, e.msg);
			return k;
		}
		struct json_object *st;
		const char *s = json_object_object_get_ex(r, "status", &st) ? json_object_get_string(st) : "";
		snprintf(final, fsz, "%s", s);
		json_object_put(r);
		if (strcmp(final, while_status) != 0 && (strcmp(query, "query-migrate") != 0 ||
							 strcmp(final, "setup") != 0))
			return 0;
		struct timespec ts = {0, 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	return -ETIMEDOUT;
}

static struct json_object *ignore_shared(void)
{
	return json_tokener_parse("{\"capabilities\":[{\"capability\":\"x-ignore-shared\",\"state\":true}]}");
}

static void test_clone_keeps_agent(void **state)
{
	char dir[] = "/tmp/fluid-agent-clone-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char mem[128], st[128];
	snprintf(mem, sizeof(mem), "%s/mem.ram", dir);
	snprintf(st, sizeof(st), "%s/vmstate", dir);
	FlError e = {0};
	TestVm *tpl, *clone;
	TestVmOptions ot = {.image = "tiny", .mem_file = mem, .mem_share = true};
	int r = testvm_start(&ot, &tpl, &e);
	if (r < 0)
		fprintf(stderr, "template: %s\n", e.msg);
	assert_int_equal(r, 0);
	/* a background process (must survive) and a foreground one (belongs to
	 * the template's host session, must not) */
	AgentExecSpec bgs = {.shell = "exec sleep 1008", .background = true};
	struct json_object *a;
	assert_int_equal(agent_exec_args(&bgs, &a, &e), 0);
	assert_int_equal(agent_call_sync(tpl->agent, "exec", a, 60000, NULL, &e), 0);
	Stream fg = {0};
	fl_sha256_init(&fg.sha);
	AgentExecSpec fgs = {.shell = "exec sleep 1009"};
	AgentOpHandlers h = {.on_data = st_data, .on_done = st_done};
	assert_int_equal(agent_exec_start(tpl->agent, &fgs, 0, &h, &fg, NULL, &e), 0);
	bool never = false;
	pump(tpl->agent, &never, 1000);

	/* save the template: device state only, RAM stays in the shared file */
	QmpClient *q;
	assert_int_equal(qmp_connect_sync(tpl->qmp_sock, 10000, &q, &e), 0);
	assert_int_equal(qmp_call_sync(q, "migrate-set-capabilities", ignore_shared(), -1, 10000, NULL, &e), 0);
	assert_int_equal(qmp_call_sync(q, "stop", NULL, -1, 10000, NULL, &e), 0);
	int sfd = open(st, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(sfd >= 0);
	assert_int_equal(qmp_call_sync(q, "getfd", json_tokener_parse("{\"fdname\":\"mig\"}"), sfd, 10000, NULL, &e), 0);
	close(sfd);
	assert_int_equal(qmp_call_sync(q, "migrate", json_tokener_parse("{\"uri\":\"fd:mig\"}"), -1, 10000, NULL, &e), 0);
	char status[64];
	assert_int_equal(qmp_wait_status(q, "query-migrate", "active", status, sizeof(status)), 0);
	assert_string_equal(status, "completed");
	qmp_client_free(q);
	char tpl_disk[300];
	snprintf(tpl_disk, sizeof(tpl_disk), "%s/overlay.qcow2", tpl->run_dir);
	testvm_kill(tpl); /* the template's host connection goes with it */
	assert_int_equal(fg.done, 1);

	/* the clone: same RAM file copy-on-write, overlay on the template's disk */
	TestVmOptions oc = {.image = "tiny", .mem_file = mem, .mem_share = false, .base_disk = tpl_disk,
			    .incoming = true};
	r = testvm_start(&oc, &clone, &e);
	if (r < 0)
		fprintf(stderr, "clone: %s\n", e.msg);
	assert_int_equal(r, 0);
	uint64_t t0 = agent_now_ms();
	assert_int_equal(qmp_connect_sync(clone->qmp_sock, 10000, &q, &e), 0);
	assert_int_equal(qmp_call_sync(q, "migrate-set-capabilities", ignore_shared(), -1, 10000, NULL, &e), 0);
	sfd = open(st, O_RDONLY | O_CLOEXEC);
	assert_true(sfd >= 0);
	assert_int_equal(qmp_call_sync(q, "getfd", json_tokener_parse("{\"fdname\":\"mig\"}"), sfd, 10000, NULL, &e), 0);
	close(sfd);
	assert_int_equal(qmp_call_sync(q, "migrate-incoming", json_tokener_parse("{\"uri\":\"fd:mig\"}"), -1, 10000, NULL, &e), 0);
	assert_int_equal(qmp_wait_status(q, "query-status", "inmigrate", status, sizeof(status)), 0);
	assert_int_equal(qmp_call_sync(q, "cont", NULL, -1, 10000, NULL, &e), 0);
	qmp_client_free(q);
	r = agent_client_new(clone->agent_sock, NULL, &clone->agent, &e);
	assert_int_equal(r, 0);
	r = agent_wait_ready_sync(clone->agent, 60000, &e);
	if (r < 0)
		fprintf(stderr, "clone agent: %s\n", e.msg);
	assert_int_equal(r, 0);
	uint64_t ready = agent_now_ms() - t0;
	char *out = sh(clone, "echo clone-ok", NULL);
	fprintf(stderr, "# clone: agent ready %llu ms after migrate-incoming, first command %llu ms\n",
		(unsigned long long)ready, (unsigned long long)(agent_now_ms() - t0));
	assert_string_equal(out, "clone-ok\n");
	free(out);
	out = sh(clone, "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' | grep -o 'sleep 100[89]' | sort", (int[]){0});
	assert_string_equal(out, "sleep 1008\n");
	free(out);
	AgentIdentity id = {.hostname = "fluid-clone-1"};
	assert_int_equal(agent_identity_sync(clone->agent, &id, 60000, NULL, &e), 0);
	out = sh(clone, "hostname", NULL);
	assert_string_equal(out, "fluid-clone-1\n");
	free(out);
	testvm_destroy(clone);
	testvm_destroy(tpl);
	unlink(mem);
	unlink(st);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uname_exit_codes),
		cmocka_unit_test(test_stdin_cat),
		cmocka_unit_test(test_timeout_kills_tree),
		cmocka_unit_test(test_stream_20m),
		cmocka_unit_test(test_file_50m),
		cmocka_unit_test(test_fsfreeze_blocks_writes),
		cmocka_unit_test(test_pty_session),
		cmocka_unit_test(test_background_survives_reconnect),
		cmocka_unit_test(test_identity_refresh),
		cmocka_unit_test(test_agent_restart_detected),
	};
	const char *only = getenv("FLUID_AGENT_VM_IMAGES");
	int fails = 0;
	const struct CMUnitTest clone_tests[] = {
		cmocka_unit_test(test_clone_keeps_agent),
	};
	if (!only || strstr(only, "tiny"))
		fails += cmocka_run_group_tests_name("agent-vm-tiny", tests, setup_tiny, teardown);
	if (!only || strstr(only, "tiny") || strstr(only, "clone"))
		fails += cmocka_run_group_tests_name("agent-vm-clone", clone_tests, NULL, NULL);
	if (!only || strstr(only, "debian-12"))
		fails += cmocka_run_group_tests_name("agent-vm-debian-12", tests, setup_debian, teardown);
	return fails ? 1 : 0;
}
