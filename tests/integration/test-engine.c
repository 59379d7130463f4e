// SPDX-License-Identifier: MIT
/*
 * Integration tests of the sandbox engine against real QEMU (TCG) with the
 * tiny image: clones, isolation, snapshots, checkpoints, branches, destroy,
 * crash recovery (kill -9 of the process driving the engine), bad images,
 * egress policy. The template is built once in the group set-up and shared.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <setjmp.h>
#include <cmocka.h>

#include "engine.h"
#include "vm.h"

static char state_dir[256];
static char image_dir[512];
static FlEngine *E;

typedef struct Out {
	char buf[65536];
	size_t len;
} Out;

static void collect(int stream, const void *buf, size_t len, void *ud)
{
	Out *o = ud;
	if (stream != 1)
		return;
	size_t n = len < sizeof(o->buf) - 1 - o->len ? len : sizeof(o->buf) - 1 - o->len;
	memcpy(o->buf + o->len, buf, n);
	o->len += n;
	o->buf[o->len] = 0;
}

/* Runs a shell command; returns its exit code, output in *out (static). */
static int sh(const char *id, const char *cmd, char **out)
{
	static Out o;
	memset(&o, 0, sizeof(o));
	FlExecSpec s = {.shell = cmd, .timeout_ms = 60000};
	FlExecResult res;
	FlError err = {0};
	int r = fl_engine_exec(E, id, &s, collect, &o, &res, &err);
	if (r < 0) {
		fprintf(stderr, "exec '%s' in %s: %s\n", cmd, id, err.msg);
		return -1000 + r;
	}
	if (out)
		*out = o.buf;
	return res.signal ? 128 + res.signal : res.exit_code;
}

static char *create(const FlSandboxSpec *spec)
{
	struct json_object *o = NULL;
	FlError err = {0};
	int r = fl_engine_create(E, spec, &o, &err);
	if (r < 0)
		fprintf(stderr, "create: %s\n", err.msg);
	assert_int_equal(r, 0);
	struct json_object *id;
	assert_true(json_object_object_get_ex(o, "id", &id));
	char *s = strdup(json_object_get_string(id));
	json_object_put(o);
	return s;
}

static char *clone_tiny(void)
{
	FlSandboxSpec s = {.base_image = "tiny"};
	return create(&s);
}

static void destroy(char *id)
{
	FlError err = {0};
	assert_int_equal(fl_engine_destroy(E, id, &err), 0);
	free(id);
}

static unsigned pool_size;

static int open_engine(void)
{
	FlEngineConfig c = {.state_dir = state_dir, .image_dir = image_dir, .accel = "tcg",
			    .boot_timeout_ms = 120000, .pool_size = pool_size};
	FlError err = {0};
	int r = fl_engine_new(&c, &E, &err);
	if (r < 0)
		fprintf(stderr, "engine: %s\n", err.msg);
	return r;
}

/* Counts QEMU processes whose command line mentions our state dir. */
static int count_qemus(const char *needle)
{
	DIR *d = opendir("/proc");
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		char p[64], cmd[8192];
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(p, sizeof(p), "/proc/%s/cmdline", de->d_name);
		int fd = open(p, O_RDONLY);
		if (fd < 0)
			continue;
		ssize_t len = read(fd, cmd, sizeof(cmd) - 1);
		close(fd);
		if (len <= 0)
			continue;
		cmd[len] = 0;
		for (ssize_t i = 0; i < len; i++)
			if (!cmd[i])
				cmd[i] = ' ';
		/* zombies have an empty cmdline and are skipped */
		if (strstr(cmd, "qemu-system") && strstr(cmd, needle)) {
			n++;
			if (getenv("TEST_VERBOSE"))
				fprintf(stderr, "qemu %s: %.200s\n", de->d_name, strstr(cmd, "path="));
		}
	}
	closedir(d);
	return n;
}

static int group_setup(void **state)
{
	const char *root = getenv("FLUID_ROOT");
	const char *imgs = getenv("FLUID_IMAGE_DIR");
	if (imgs)
		snprintf(image_dir, sizeof(image_dir), "%s", imgs);
	else
		snprintf(image_dir, sizeof(image_dir), "%s/build/images", root ? root : ".");
	snprintf(state_dir, sizeof(state_dir), "/tmp/fluid-engine-XXXXXX");
	if (!mkdtemp(state_dir))
		return -1;
	if (open_engine() < 0)
		return -1;
	FlError err = {0};
	time_t t0 = time(NULL);
	int r = fl_engine_prepare_template(E, "tiny", 0, 0, &err);
	if (r < 0) {
		fprintf(stderr, "template: %s\n", err.msg);
		return -1;
	}
	fprintf(stderr, "template ready in %lds\n", (long)(time(NULL) - t0));
	return 0;
}

static int group_teardown(void **state)
{
	fl_engine_free(E);
	E = NULL;
	char cmd[400];
	/* Kill anything left (a failed test) before removing the files. */
	snprintf(cmd, sizeof(cmd), "pkill -9 -f 'qemu-system.*%s' ; rm -rf %s", state_dir, state_dir);
	return system(cmd) == -1 ? -1 : 0;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_clone_exec(void **state)
{
	char *id = clone_tiny();
	char *out;
	assert_int_equal(sh(id, "uname -s", &out), 0);
	assert_non_null(strstr(out, "Linux"));
	assert_int_equal(sh(id, "exit 3", NULL), 3);
	/* identity: the hostname is the sandbox name, not the template's */
	struct json_object *o;
	assert_int_equal(fl_engine_get(E, id, &o, NULL), 0);
	struct json_object *name;
	json_object_object_get_ex(o, "sandbox_name", &name);
	char want[80];
	snprintf(want, sizeof(want), "%s\n", json_object_get_string(name));
	json_object_put(o);
	assert_int_equal(sh(id, "hostname", &out), 0);
	assert_string_equal(out, want);
	destroy(id);
}

static void test_clones_independent(void **state)
{
	char *a = clone_tiny(), *b = clone_tiny();
	char *out;
	assert_int_equal(sh(a, "echo only-a > /root/mark && sync", NULL), 0);
	assert_int_equal(sh(a, "cat /root/mark", &out), 0);
	assert_string_equal(out, "only-a\n");
	assert_int_not_equal(sh(b, "test -e /root/mark", NULL), 0);
	/* and the machine ids differ */
	char ida[64];
	assert_int_equal(sh(a, "cat /etc/machine-id", &out), 0);
	snprintf(ida, sizeof(ida), "%s", out);
	assert_int_equal(sh(b, "cat /etc/machine-id", &out), 0);
	assert_string_not_equal(ida, out);
	destroy(a);
	destroy(b);
}

static void test_snapshot_restore(void **state)
{
	char *id = clone_tiny();
	char *out;
	FlError err = {0};
	assert_int_equal(sh(id, "echo v1 > /root/f", NULL), 0);
	assert_int_equal(fl_engine_snapshot(E, id, "s1", false, NULL, &err), 0);
	assert_int_equal(sh(id, "echo v2 > /root/f; echo new > /root/g", NULL), 0);
	assert_int_equal(fl_engine_snapshot(E, id, "s2", false, NULL, &err), 0);
	assert_int_equal(fl_engine_restore(E, id, "s1", &err), 0);
	assert_int_equal(sh(id, "cat /root/f", &out), 0);
	assert_string_equal(out, "v1\n");
	assert_int_not_equal(sh(id, "test -e /root/g", NULL), 0);
	/* the tree: restore forward to s2 */
	assert_int_equal(fl_engine_restore(E, id, "s2", &err), 0);
	assert_int_equal(sh(id, "cat /root/f /root/g", &out), 0);
	assert_string_equal(out, "v2\nnew\n");
	/* errors: duplicate name, unknown snapshot, bad name */
	assert_int_equal(fl_engine_snapshot(E, id, "s1", false, NULL, &err), -EEXIST);
	assert_int_equal(fl_engine_restore(E, id, "nope", &err), -ENOENT);
	assert_int_equal(fl_engine_snapshot(E, id, "../x", false, NULL, &err), -EINVAL);
	/* deleting a snapshot that s2 builds on keeps s2 usable */
	assert_int_equal(fl_engine_snapshot_delete(E, id, "s1", &err), 0);
	assert_int_equal(fl_engine_restore(E, id, "s2", &err), 0);
	assert_int_equal(sh(id, "cat /root/f", &out), 0);
	assert_string_equal(out, "v2\n");
	destroy(id);
}

static void test_checkpoint(void **state)
{
	char *id = clone_tiny();
	char *out;
	FlError err = {0};
	/* RAM-only state: a tmpfs file and a live process */
	assert_int_equal(sh(id, "mkdir -p /run/t && echo ram > /run/t/x && (sleep 1000 >/dev/null 2>&1 &) ; pidof sleep", &out), 0);
	char pid[32];
	snprintf(pid, sizeof(pid), "%s", out);
	pid[strcspn(pid, "\n")] = 0;
	assert_true(pid[0] != 0);
	assert_int_equal(fl_engine_snapshot(E, id, "c1", true, NULL, &err), 0);
	/* the sandbox keeps running after the checkpoint */
	assert_int_equal(sh(id, "cat /run/t/x", &out), 0);
	assert_int_equal(sh(id, "rm /run/t/x; kill -9 $(pidof sleep); echo gone > /root/after", NULL), 0);
	assert_int_equal(fl_engine_restore(E, id, "c1", &err), 0);
	assert_int_equal(sh(id, "cat /run/t/x", &out), 0);
	assert_string_equal(out, "ram\n");
	char cmd[64];
	snprintf(cmd, sizeof(cmd), "kill -0 %s", pid);
	assert_int_equal(sh(id, cmd, NULL), 0);
	assert_int_not_equal(sh(id, "test -e /root/after", NULL), 0);
	destroy(id);
}

/* Stop suspends and start resumes: RAM-only state survives, the clock is
 * right again, and the record shows the SSH forward. */
static void test_stop_start(void **state)
{
	char *id = clone_tiny();
	char *out;
	FlError err = {0};
	assert_int_equal(sh(id, "mkdir -p /run/t && echo kept > /run/t/s", NULL), 0);
	assert_int_equal(fl_engine_stop(E, id, &err), 0);
	struct json_object *o, *v;
	assert_int_equal(fl_engine_get(E, id, &o, &err), 0);
	json_object_object_get_ex(o, "state", &v);
	assert_string_equal(json_object_get_string(v), "STOPPED");
	json_object_put(o);
	assert_true(sh(id, "true", NULL) < -900); /* exec refused while stopped */
	sleep(2);
	assert_int_equal(fl_engine_start(E, id, &err), 0);
	assert_int_equal(sh(id, "cat /run/t/s", &out), 0);
	assert_string_equal(out, "kept\n");
	assert_int_equal(sh(id, "date +%s", &out), 0);
	long guest = strtol(out, NULL, 10), host = (long)time(NULL);
	assert_true(guest > host - 5 && guest <= host + 1);
	assert_int_equal(fl_engine_get(E, id, &o, &err), 0);
	assert_true(json_object_object_get_ex(o, "ssh_port", &v) && json_object_get_int(v) > 0);
	json_object_put(o);

	/* the QEMU process runs in the sandbox's memory cgroup with its limit */
	char path[512], line[512];
	snprintf(path, sizeof(path), "%s/sandboxes/%s/qemu.pid", state_dir, id);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	int pid = 0;
	assert_int_equal(fscanf(f, "%d", &pid), 1);
	fclose(f);
	struct json_object *st = fl_engine_status(E), *mode;
	json_object_object_get_ex(st, "cgroups", &mode);
	char cgmode[8];
	snprintf(cgmode, sizeof(cgmode), "%s", json_object_get_string(mode));
	json_object_put(st);
	fprintf(stderr, "cgroups: %s\n", cgmode);
	assert_string_not_equal(cgmode, "none"); /* these hosts have v1, Debian 12 has v2 */
	snprintf(path, sizeof(path), "/proc/%d/cgroup", pid);
	f = fopen(path, "r");
	bool in_group = false;
	char group[400] = "";
	while (fgets(line, sizeof(line), f)) {
		char *p = strstr(line, "/fluid/");
		if (p && strstr(p, id) && (strstr(line, ":memory:") || !strncmp(line, "0::", 3))) {
			in_group = true;
			snprintf(group, sizeof(group), "%s", strchr(strchr(line, ':') + 1, ':') + 1);
			group[strcspn(group, "\n")] = 0;
		}
	}
	fclose(f);
	assert_true(in_group);
	if (!strcmp(cgmode, "v1"))
		snprintf(path, sizeof(path), "/sys/fs/cgroup/memory%s/memory.limit_in_bytes", group);
	else
		snprintf(path, sizeof(path), "/sys/fs/cgroup%s/memory.max", group);
	f = fopen(path, "r");
	assert_non_null(f);
	unsigned long long limit = 0;
	assert_int_equal(fscanf(f, "%llu", &limit), 1);
	fclose(f);
	assert_int_equal(limit, (256ULL + 384) << 20);
	destroy(id);
	assert_int_equal(access(path, F_OK), -1); /* the group is gone */
}

static void test_branch(void **state)
{
	char *src = clone_tiny();
	FlError err = {0};
	char *out;
	assert_int_equal(sh(src, "echo base > /root/b", NULL), 0);
	assert_int_equal(fl_engine_snapshot(E, src, "cp", true, NULL, &err), 0);
	FlSandboxSpec s = {.from_sandbox = src, .from_snapshot = "cp"};
	char *x = create(&s), *y = create(&s);
	assert_int_equal(sh(x, "echo x >> /root/b", NULL), 0);
	assert_int_equal(sh(y, "echo y >> /root/b", NULL), 0);
	assert_int_equal(sh(x, "cat /root/b", &out), 0);
	assert_string_equal(out, "base\nx\n");
	assert_int_equal(sh(y, "cat /root/b", &out), 0);
	assert_string_equal(out, "base\ny\n");
	/* branches outlive their source */
	destroy(src);
	assert_int_equal(sh(x, "cat /root/b", &out), 0);
	assert_string_equal(out, "base\nx\n");
	/* disk-only snapshot branch (cold boot on the layer) */
	assert_int_equal(fl_engine_snapshot(E, x, "d", false, NULL, &err), 0);
	FlSandboxSpec s2 = {.from_sandbox = x, .from_snapshot = "d"};
	char *z = create(&s2);
	assert_int_equal(sh(z, "cat /root/b", &out), 0);
	assert_string_equal(out, "base\nx\n");
	destroy(x);
	destroy(y);
	destroy(z);
}

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

static void test_destroy_leaves_nothing(void **state)
{
	char layers[400], sbdir[400], states[400];
	snprintf(layers, sizeof(layers), "%s/images/layers", state_dir);
	snprintf(sbdir, sizeof(sbdir), "%s/sandboxes", state_dir);
	snprintf(states, sizeof(states), "%s/states", state_dir);
	int layers0 = count_entries(layers), sb0 = count_entries(sbdir);
	int q0 = count_qemus(state_dir);
	char *id = clone_tiny();
	FlError err = {0};
	assert_int_equal(fl_engine_snapshot(E, id, "a", false, NULL, &err), 0);
	assert_int_equal(fl_engine_snapshot(E, id, "b", true, NULL, &err), 0);
	assert_true(count_entries(layers) > layers0);
	assert_int_equal(count_qemus(state_dir), q0 + 1);
	destroy(id);
	assert_int_equal(count_entries(layers), layers0);
	assert_int_equal(count_entries(sbdir), sb0);
	assert_int_equal(count_entries(states), 0);
	assert_int_equal(count_qemus(state_dir), q0);
	assert_int_equal(fl_engine_get(E, "nonexistent", &(struct json_object *){NULL}, &err), -ENOENT);
}

/*
 * kill -9 of the process driving the engine in the middle of an operation,
 * then a new engine on the same state: every recorded sandbox is usable or
 * gone, and no QEMU runs that no record owns.
 */
static void crash_during(const char *what, int delay_ms)
{
	/* A sandbox to act on, created by this process and then released. */
	char *id = clone_tiny();
	assert_int_equal(sh(id, "echo keep > /root/k", NULL), 0);
	FlError err = {0};
	assert_int_equal(fl_engine_snapshot(E, id, "base", false, NULL, &err), 0);
	fl_engine_free(E);
	E = NULL;

	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		if (open_engine() < 0)
			_exit(2);
		if (!strcmp(what, "create")) {
			FlSandboxSpec s = {.base_image = "tiny"};
			fl_engine_create(E, &s, NULL, NULL);
		} else if (!strcmp(what, "snapshot")) {
			for (int i = 0; i < 50; i++) {
				char n[16];
				snprintf(n, sizeof(n), "x%d", i);
				fl_engine_snapshot(E, id, n, false, NULL, NULL);
			}
		} else {
			for (;;)
				fl_engine_restore(E, id, "base", NULL);
		}
		_exit(0);
	}
	struct timespec ts = {.tv_sec = delay_ms / 1000, .tv_nsec = (delay_ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);

	assert_int_equal(open_engine(), 0);
	struct json_object *list;
	fl_engine_list(E, &list);
	int running = 0;
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		struct json_object *sb = json_object_array_get_idx(list, i), *st, *sid;
		json_object_object_get_ex(sb, "state", &st);
		json_object_object_get_ex(sb, "id", &sid);
		const char *s = json_object_get_string(st);
		if (!strcmp(s, "RUNNING")) {
			running++;
			char *out;
			assert_int_equal(sh(json_object_get_string(sid), "cat /root/k 2>/dev/null || echo none", &out), 0);
		} else {
			assert_true(!strcmp(s, "STOPPED") || !strcmp(s, "CREATED"));
		}
	}
	json_object_put(list);
	/* no orphans: every QEMU of ours is a RUNNING sandbox's */
	assert_int_equal(count_qemus(state_dir), running);
	/* the original sandbox survived with its data */
	char *out;
	struct json_object *o;
	assert_int_equal(fl_engine_get(E, id, &o, &err), 0);
	json_object_put(o);
	FlError e2 = {0};
	fl_engine_start(E, id, &e2);
	assert_int_equal(sh(id, "cat /root/k", &out), 0);
	assert_string_equal(out, "keep\n");
	/* clean up every sandbox */
	fl_engine_list(E, &list);
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		struct json_object *sid;
		json_object_object_get_ex(json_object_array_get_idx(list, i), "id", &sid);
		fl_engine_destroy(E, json_object_get_string(sid), NULL);
	}
	json_object_put(list);
	free(id);
	assert_int_equal(count_qemus(state_dir), 0);
}

static void test_crash_create(void **state)
{
	crash_during("create", 120);
}

static void test_crash_snapshot(void **state)
{
	crash_during("snapshot", 400);
}

static void test_crash_restore(void **state)
{
	crash_during("restore", 900);
}

static void test_bad_images(void **state)
{
	FlError err = {0};
	FlSandboxSpec s = {.base_image = "no-such-image"};
	assert_int_equal(fl_engine_create(E, &s, NULL, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "no-such-image"));
	FlSandboxSpec bad = {.base_image = "../etc"};
	assert_int_equal(fl_engine_create(E, &bad, NULL, &err), -EINVAL);

	/* A stopped sandbox whose active layer is corrupted does not start,
	 * and says why. */
	char *id = clone_tiny();
	assert_int_equal(fl_engine_stop(E, id, &err), 0);
	char path[512];
	snprintf(path, sizeof(path), "%s/sandboxes/%s/sandbox.json", state_dir, id);
	struct json_object *rec = json_object_from_file(path), *active;
	assert_non_null(rec);
	json_object_object_get_ex(rec, "active", &active);
	char disk[600];
	snprintf(disk, sizeof(disk), "%s/images/layers/%s/disk", state_dir, json_object_get_string(active));
	json_object_put(rec);
	int fd = open(disk, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "garbage!", 8, 0), 8);
	close(fd);
	memset(&err, 0, sizeof(err));
	assert_true(fl_engine_start(E, id, &err) < 0);
	assert_true(err.msg[0] != 0);
	fprintf(stderr, "corrupt layer: %s\n", err.msg);
	assert_non_null(strstr(err.msg, "not a qcow2 image"));
	/* and a missing one */
	unlink(disk);
	memset(&err, 0, sizeof(err));
	assert_true(fl_engine_start(E, id, &err) < 0);
	fprintf(stderr, "missing layer: %s\n", err.msg);
	assert_non_null(strstr(err.msg, "No such file"));
	destroy(id);
}

/* A TCP server on the host's loopback, reachable from a guest with user
 * networking at 10.0.2.2. Accepts connections and answers "hello". */
static void *serve(void *arg)
{
	int fd = (int)(intptr_t)arg;
	for (;;) {
		int c = accept(fd, NULL, NULL);
		if (c < 0)
			return NULL;
		(void)!write(c, "hello\n", 6);
		close(c);
	}
}

/* A loopback TCP server answering "hello\n"; returns its port. */
static int hello_server(int *ret_fd, pthread_t *t)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	socklen_t sl = sizeof(sa);
	getsockname(fd, (struct sockaddr *)&sa, &sl);
	listen(fd, 8);
	pthread_create(t, NULL, serve, (void *)(intptr_t)fd);
	*ret_fd = fd;
	return ntohs(sa.sin_port);
}

static void hello_server_stop(int fd, pthread_t t)
{
	shutdown(fd, SHUT_RDWR);
	close(fd);
	pthread_join(t, NULL);
}

static void connect_cmd(char *cmd, size_t len, int port)
{
	/* wait for DHCP, then connect */
	snprintf(cmd, len,
		 "for i in $(seq 50); do ip -4 addr show eth0 | grep -q inet && break; sleep 0.2; done; "
		 "nc -w 5 10.0.2.2 %d </dev/null", port);
}

static void test_egress(void **state)
{
	int fd1, fd2;
	pthread_t t1, t2;
	int p1 = hello_server(&fd1, &t1), p2 = hello_server(&fd2, &t2);
	char cmd1[200], cmd2[200];
	connect_cmd(cmd1, sizeof(cmd1), p1);
	connect_cmd(cmd2, sizeof(cmd2), p2);

	FlSandboxSpec nat = {.base_image = "tiny", .network = "nat"};
	char *a = create(&nat), *out;
	int rc = sh(a, cmd1, &out);
	if (rc != 0) {
		sh(a, "ip addr; ip route; which nc udhcpc; cat /etc/resolv.conf; ps", &out);
		fprintf(stderr, "nat sandbox cannot connect (exit %d):\n%s\n", rc, out);
	}
	assert_int_equal(rc, 0);
	assert_string_equal(out, "hello\n");
	FlSandboxSpec none = {.base_image = "tiny", .network = "none"};
	char *b = create(&none);
	assert_int_not_equal(sh(b, cmd1, &out), 0);
	assert_null(strstr(out, "hello"));

	/* allowlist: only p1 on the host (as the guest sees it, 10.0.2.2) */
	char entry[64];
	snprintf(entry, sizeof(entry), "10.0.2.2:%d", p1);
	FlNetAllow allow[2];
	FlError err = {0};
	assert_int_equal(fl_net_allow_parse(entry, &allow[0], &err), 0);
	assert_int_equal(fl_net_allow_parse("192.0.2.0/24:1-1024", &allow[1], &err), 0);
	FlSandboxSpec al = {.base_image = "tiny", .network = "allowlist", .net_allow = allow, .n_net_allow = 2};
	char *c = create(&al);
	assert_int_equal(sh(c, cmd1, &out), 0);
	assert_string_equal(out, "hello\n");
	assert_int_not_equal(sh(c, cmd2, &out), 0);
	assert_null(strstr(out, "hello"));
	struct json_object *rec = NULL;
	assert_int_equal(fl_engine_get(E, c, &rec, &err), 0);
	struct json_object *na = json_object_object_get(rec, "net_allow");
	assert_int_equal(json_object_array_length(na), 2);
	assert_string_equal(json_object_get_string(json_object_array_get_idx(na, 1)), "192.0.2.0/24:1-1024");
	json_object_put(rec);
	/* bad input changes nothing */
	FlSandboxSpec bad = {.base_image = "tiny", .network = "nat", .net_allow = allow, .n_net_allow = 1};
	struct json_object *o = NULL;
	assert_int_equal(fl_engine_create(E, &bad, &o, &err), -EINVAL);
	assert_int_equal(fl_net_allow_parse("10.0.2.2:70000", &allow[0], &err), -EINVAL);
	assert_int_equal(fl_net_allow_parse("10.0.2.2/33", &allow[0], &err), -EINVAL);
	assert_int_equal(fl_net_allow_parse(" 10.0.2.2", &allow[0], &err), -EINVAL);
	assert_int_equal(fl_net_allow_parse("10.0.2.2:+5", &allow[0], &err), -EINVAL);
	destroy(a);
	destroy(b);
	destroy(c);
	hello_server_stop(fd1, t1);
	hello_server_stop(fd2, t2);
}

static void test_ttl(void **state)
{
	FlSandboxSpec s = {.base_image = "tiny", .ttl_seconds = 1, .no_start = true};
	char *id = create(&s);
	struct json_object *o = NULL;
	FlError err = {0};
	/* the janitor wakes at the expiry; give it a few seconds */
	for (int i = 0; i < 100 && fl_engine_get(E, id, &o, &err) == 0; i++) {
		json_object_put(o);
		o = NULL;
		usleep(100000);
	}
	assert_int_equal(fl_engine_get(E, id, &o, &err), -ENOENT);
	free(id);
}

/* Reads a stream's records until EOF; stdout/data into *buf (grown). */
static size_t drain(FlStream *st, char **buf, size_t *err_bytes)
{
	size_t len = 0, cap = 0;
	*buf = NULL;
	FILE *f = fdopen(dup(fl_stream_out_fd(st)), "r");
	unsigned char hdr[5];
	while (fread(hdr, 1, 5, f) == 5) {
		uint32_t n = hdr[1] | hdr[2] << 8 | hdr[3] << 16 | (uint32_t)hdr[4] << 24;
		char *chunk = malloc(n);
		assert_int_equal(fread(chunk, 1, n, f), n);
		if (hdr[0] == 1) {
			if (len + n > cap) {
				cap = (len + n) * 2;
				*buf = realloc(*buf, cap);
			}
			memcpy(*buf + len, chunk, n);
			len += n;
		} else if (err_bytes) {
			*err_bytes += n;
		}
		free(chunk);
	}
	fclose(f);
	return len;
}

static void *feed(void *arg)
{
	FlStream *st = arg;
	unsigned char block[65536];
	for (int i = 0; i < 80; i++) { /* 5 MiB */
		for (size_t j = 0; j < sizeof(block); j++)
			block[j] = (unsigned char)(i * 31 + j * 7);
		size_t off = 0;
		while (off < sizeof(block)) {
			ssize_t n = write(fl_stream_in_fd(st), block + off, sizeof(block) - off);
			if (n <= 0)
				return NULL;
			off += (size_t)n;
		}
	}
	fl_stream_close_input(st);
	return NULL;
}

/* Streams: a 5 MiB file both ways, exec output split by stream, a pty. */
static void test_streams(void **state)
{
	char *id = clone_tiny();
	FlError err = {0};
	FlStream *st;
	struct json_object *a = json_object_new_object();
	json_object_object_add(a, "path", json_object_new_string("/root/big"));
	json_object_object_add(a, "mode", json_object_new_int(0600));
	FlStreamSpec ws = {.op = "file_write", .args = a, .input = true, .timeout_ms = 120000};
	assert_int_equal(fl_engine_stream_open(E, id, &ws, &st, &err), 0);
	pthread_t t;
	pthread_create(&t, NULL, feed, st);
	char *buf;
	drain(st, &buf, NULL);
	free(buf);
	pthread_join(t, NULL);
	assert_int_equal(fl_stream_finish(st, NULL, &err), 0);

	char *out;
	assert_int_equal(sh(id, "stat -c '%s %a' /root/big", &out), 0);
	assert_string_equal(out, "5242880 600\n");

	a = json_object_new_object();
	json_object_object_add(a, "path", json_object_new_string("/root/big"));
	FlStreamSpec rs = {.op = "file_read", .args = a, .timeout_ms = 120000};
	assert_int_equal(fl_engine_stream_open(E, id, &rs, &st, &err), 0);
	size_t len = drain(st, &buf, NULL);
	assert_int_equal(fl_stream_finish(st, NULL, &err), 0);
	assert_int_equal(len, 5242880);
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)buf[i] != (unsigned char)((i / 65536) * 31 + (i % 65536) * 7))
			fail_msg("byte %zu differs", i);
	free(buf);

	/* exec: stdout and stderr arrive separately, exit code in the reply */
	FlExecSpec x = {.shell = "seq 1 20000; echo oops >&2; exit 7", .timeout_ms = 60000};
	FlStreamSpec es = {.op = "exec", .exec = &x};
	assert_int_equal(fl_engine_stream_open(E, id, &es, &st, &err), 0);
	size_t errb = 0;
	len = drain(st, &buf, &errb);
	struct json_object *res = NULL;
	assert_int_equal(fl_stream_finish(st, &res, &err), 0);
	struct json_object *ec;
	assert_true(json_object_object_get_ex(res, "exit_code", &ec));
	assert_int_equal(json_object_get_int(ec), 7);
	json_object_put(res);
	assert_int_equal(errb, 5);
	assert_int_equal(len, 108894); /* bytes of `seq 1 20000` */
	free(buf);

	/* pty: keystrokes in, screen out */
	FlExecSpec px = {.shell = "/bin/sh", .timeout_ms = 60000};
	FlStreamSpec ps = {.op = "pty", .exec = &px, .input = true, .rows = 30, .cols = 100};
	assert_int_equal(fl_engine_stream_open(E, id, &ps, &st, &err), 0);
	assert_int_equal(fl_stream_resize(st, 40, 120), 0);
	const char *keys = "stty size; echo pty-$((6*7)); exit\n";
	assert_int_equal(write(fl_stream_in_fd(st), keys, strlen(keys)), (ssize_t)strlen(keys));
	len = drain(st, &buf, NULL);
	assert_int_equal(fl_stream_finish(st, NULL, &err), 0);
	buf = realloc(buf, len + 1);
	buf[len] = 0;
	assert_non_null(strstr(buf, "pty-42"));
	assert_non_null(strstr(buf, "40 120"));
	free(buf);
	destroy(id);
}

/* An inspector sees each snapshot's frozen disk, read-only, from a clean
 * clone: even a guest that replaced its own tools cannot change that view. */
static void test_inspector(void **state)
{
	char *id = clone_tiny();
	char *out;
	FlError err = {0};
	assert_int_equal(sh(id, "echo before > /root/x", NULL), 0);
	assert_int_equal(fl_engine_snapshot(E, id, "a", false, NULL, &err), 0);
	/* the sandbox lies: it replaces cat and rewrites the file */
	assert_int_equal(sh(id, "echo after > /root/x; echo added > /root/y; "
			    "rm /bin/cat; printf '#!/bin/sh\\necho lie\\n' > /bin/cat; chmod +x /bin/cat", NULL), 0);
	assert_int_equal(fl_engine_snapshot(E, id, "b", false, NULL, &err), 0);
	const char *snaps[] = {"a", "b"};
	struct json_object *insp = NULL;
	int r = fl_engine_inspector_open(E, id, snaps, 2, &insp, &err);
	if (r < 0)
		fprintf(stderr, "inspector: %s\n", err.msg);
	assert_int_equal(r, 0);
	struct json_object *iid, *disks;
	json_object_object_get_ex(insp, "id", &iid);
	json_object_object_get_ex(insp, "disks", &disks);
	assert_int_equal(json_object_array_length(disks), 2);
	const char *dev[2];
	for (int k = 0; k < 2; k++) {
		struct json_object *d;
		json_object_object_get_ex(json_object_array_get_idx(disks, k), "device", &d);
		dev[k] = json_object_get_string(d);
	}
	char cmd[512];
	snprintf(cmd, sizeof(cmd),
		 "mkdir -p /mnt/a /mnt/b && mount -o ro,noload %s /mnt/a && mount -o ro,noload %s /mnt/b && "
		 "cat /mnt/a/root/x /mnt/b/root/x; test ! -e /mnt/a/root/y && cat /mnt/b/root/y && "
		 "head -c 2 /mnt/b/bin/cat && echo && touch /mnt/b/root/z 2>/dev/null || echo read-only",
		 dev[0], dev[1]);
	const char *insp_id = json_object_get_string(iid);
	assert_int_equal(sh(insp_id, cmd, &out), 0);
	assert_string_equal(out, "before\nafter\nadded\n#!\nread-only\n");
	/* inspectors are not sandboxes */
	struct json_object *list;
	fl_engine_list(E, &list);
	assert_int_equal(json_object_array_length(list), 1);
	json_object_put(list);
	assert_int_equal(fl_engine_inspector_close(E, insp_id, &err), 0);
	assert_int_equal(fl_engine_inspector_close(E, id, &err), -EINVAL); /* not an inspector */
	json_object_put(insp);
	destroy(id);
}

static int status_count(const char *field)
{
	struct json_object *st = fl_engine_status(E), *v;
	int n = json_object_object_get_ex(st, field, &v) ? json_object_get_int(v) : 0;
	json_object_put(st);
	return n;
}

/* The warm pool: claims get their own identity, the pool refills, and a
 * restart discards warm clones (they were never acknowledged to anyone). */
static void test_pool(void **state)
{
	fl_engine_free(E);
	pool_size = 1;
	assert_int_equal(open_engine(), 0);
	FlError err = {0};
	assert_int_equal(fl_engine_prepare_template(E, "tiny", 0, 0, &err), 0);
	for (int i = 0; i < 600 && status_count("warm_pool") < 1; i++)
		usleep(100000);
	assert_int_equal(status_count("warm_pool"), 1);
	struct json_object *list;
	fl_engine_list(E, &list);
	size_t listed = json_object_array_length(list);
	json_object_put(list);
	assert_int_equal(listed, 0); /* warm clones are not sandboxes */

	FlSandboxSpec s = {.base_image = "tiny", .name = "claimed-one"};
	char *a = create(&s), *out;
	assert_int_equal(sh(a, "hostname", &out), 0);
	assert_string_equal(out, "claimed-one\n");
	for (int i = 0; i < 600 && status_count("warm_pool") < 1; i++)
		usleep(100000);
	assert_int_equal(status_count("warm_pool"), 1);
	FlSandboxSpec s2 = {.base_image = "tiny"};
	char *b = create(&s2);
	char ida[64];
	assert_int_equal(sh(a, "cat /etc/machine-id", &out), 0);
	snprintf(ida, sizeof(ida), "%s", out);
	assert_int_equal(sh(b, "cat /etc/machine-id", &out), 0);
	assert_string_not_equal(ida, out);
	/* a name taken by a sandbox is refused, pool or not */
	assert_int_equal(fl_engine_create(E, &s, NULL, &err), -EEXIST);
	destroy(a);
	destroy(b);
	for (int i = 0; i < 600 && status_count("warm_pool") < 1; i++)
		usleep(100000);
	fl_engine_free(E);
	pool_size = 0;
	assert_int_equal(open_engine(), 0);
	assert_int_equal(status_count("warm_pool"), 0);
	assert_int_equal(count_qemus(state_dir), 0);
}

/* With the pool on, a disk restore takes a standby (a pre-root VM warmed
 * on a throwaway disk): the sandbox then runs the snapshot's disk with a
 * fresh guest (no process survives), keeps working (snapshot, restore),
 * and a restart adopts the VM that moved into it. */
static void test_standby_restore(void **state)
{
	fl_engine_free(E);
	pool_size = 1;
	assert_int_equal(open_engine(), 0);
	FlError err = {0};
	char *id = clone_tiny(), *out;
	assert_int_equal(sh(id, "echo v1 > /root/f", NULL), 0);
	assert_int_equal(fl_engine_snapshot(E, id, "s1", false, NULL, &err), 0);
	assert_int_equal(sh(id, "echo v2 > /root/f", NULL), 0);
	assert_int_equal(fl_engine_restore(E, id, "s1", &err), 0); /* asks for standbys */
	for (int i = 0; i < 600 && status_count("standbys") < 1; i++)
		usleep(100000);
	assert_int_equal(status_count("standbys"), 1);
	assert_int_equal(sh(id, "echo v3 > /root/f; (sleep 1000 >/dev/null 2>&1 &)", NULL), 0);
	assert_int_equal(fl_engine_restore(E, id, "s1", &err), 0);
	assert_int_equal(status_count("standbys"), 0); /* taken (a refill takes seconds) */
	assert_int_equal(sh(id, "cat /root/f", &out), 0);
	assert_string_equal(out, "v1\n");
	assert_int_not_equal(sh(id, "pidof sleep", NULL), 0);
	assert_int_equal(sh(id, "cat /proc/mounts", &out), 0);
	assert_non_null(strstr(out, "/dev/vda / ext4 rw"));

	/* the moved VM snapshots and restores like any other */
	assert_int_equal(sh(id, "echo v4 > /root/f", NULL), 0);
	assert_int_equal(fl_engine_snapshot(E, id, "s2", false, NULL, &err), 0);
	assert_int_equal(sh(id, "echo v5 > /root/f", NULL), 0);
	for (int i = 0; i < 600 && status_count("standbys") < 1; i++)
		usleep(100000);
	assert_int_equal(fl_engine_restore(E, id, "s2", &err), 0);
	assert_int_equal(status_count("standbys"), 0);
	assert_int_equal(sh(id, "cat /root/f", &out), 0);
	assert_string_equal(out, "v4\n");

	/* a branch from a disk snapshot takes one too, with its own identity */
	for (int i = 0; i < 600 && status_count("standbys") < 1; i++)
		usleep(100000);
	FlSandboxSpec bs = {.from_sandbox = id, .from_snapshot = "s1", .name = "standby-branch"};
	char *b = create(&bs);
	assert_int_equal(status_count("standbys"), 0);
	assert_int_equal(sh(b, "cat /root/f; hostname", &out), 0);
	assert_string_equal(out, "v1\nstandby-branch\n");
	destroy(b);

	/* a restart adopts it; standbys go (never acknowledged to anyone) */
	fl_engine_free(E);
	pool_size = 0;
	assert_int_equal(open_engine(), 0);
	assert_int_equal(sh(id, "cat /root/f", &out), 0);
	assert_string_equal(out, "v4\n");
	assert_int_equal(fl_engine_restore(E, id, "s1", &err), 0);
	assert_int_equal(sh(id, "cat /root/f", &out), 0);
	assert_string_equal(out, "v1\n");
	destroy(id);
	assert_int_equal(count_qemus(state_dir), 0);
}

/* A changed image gets a new template; the old one goes at the next start
 * unless a sandbox still runs on it. */
static void test_template_gc(void **state)
{
	char dir[] = "/tmp/fluid-tgc-XXXXXX", cmd[2048], tdir[300];
	assert_non_null(mkdtemp(dir));
	/* An image dir whose "tiny" is the real one with another inputs hash. */
	snprintf(cmd, sizeof(cmd),
		 "mkdir -p %s/images/tiny %s/state && for f in vmlinuz initrd.img disk.qcow2; do "
		 "ln -s $(readlink -f %s/tiny/$f) %s/images/tiny/$f; done && "
		 "sed 's/\"inputs_hash\": *\"[^\"]*\"/\"inputs_hash\": \"aaaa000000000001\"/' %s/tiny/image.json > %s/images/tiny/image.json",
		 dir, dir, image_dir, dir, image_dir, dir);
	assert_int_equal(system(cmd), 0);
	char sd[300], id[300];
	snprintf(sd, sizeof(sd), "%s/state", dir);
	snprintf(id, sizeof(id), "%s/images", dir);
	FlEngineConfig c = {.state_dir = sd, .image_dir = id, .accel = "tcg"};
	FlEngine *e2;
	FlError err = {0};
	assert_int_equal(fl_engine_new(&c, &e2, &err), 0);
	assert_int_equal(fl_engine_prepare_template(e2, "tiny", 0, 0, &err), 0);
	snprintf(tdir, sizeof(tdir), "%s/templates/tiny-aaaa00000000-256m-1c-tcg-d%d", sd, FL_DEVICE_SET);
	assert_int_equal(access(tdir, F_OK), 0);
	fl_engine_free(e2);

	snprintf(cmd, sizeof(cmd), "sed -i 's/aaaa000000000001/bbbb000000000002/' %s/images/tiny/image.json", dir);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(fl_engine_new(&c, &e2, &err), 0);
	assert_int_equal(access(tdir, F_OK), -1); /* old template gone */
	assert_int_equal(fl_engine_prepare_template(e2, "tiny", 0, 0, &err), 0);
	snprintf(tdir, sizeof(tdir), "%s/templates/tiny-bbbb00000000-256m-1c-tcg-d%d", sd, FL_DEVICE_SET);
	assert_int_equal(access(tdir, F_OK), 0);
	fl_engine_free(e2);
	/* only the new base and template layers remain */
	snprintf(cmd, sizeof(cmd), "test $(ls %s/images/layers | wc -l) -eq 2", sd);
	assert_int_equal(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clone_exec),
		cmocka_unit_test(test_clones_independent),
		cmocka_unit_test(test_snapshot_restore),
		cmocka_unit_test(test_checkpoint),
		cmocka_unit_test(test_branch),
		cmocka_unit_test(test_stop_start),
		cmocka_unit_test(test_destroy_leaves_nothing),
		cmocka_unit_test(test_bad_images),
		cmocka_unit_test(test_egress),
		cmocka_unit_test(test_ttl),
		cmocka_unit_test(test_streams),
		cmocka_unit_test(test_inspector),
		cmocka_unit_test(test_pool),
		cmocka_unit_test(test_standby_restore),
		cmocka_unit_test(test_template_gc),
		cmocka_unit_test(test_crash_create),
		cmocka_unit_test(test_crash_snapshot),
		cmocka_unit_test(test_crash_restore),
	};
	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
