// SPDX-License-Identifier: MIT
/*
 * Unit tests of the trusted diff's host half (appliance/diff.c) and of
 * fluid-inspect on hostile trees, without QEMU: a fake engine (defined
 * here) plays the inspector. Its exec runs the real build/fluid-inspect on
 * two local directories, or, in "lying inspector" mode, answers with
 * crafted output that the host must reject. Checked:
 *
 *  - hostile names (newline, quote, invalid UTF-8) come out as valid JSON
 *    with path_b64; /etc replaced by a symlink to the host's /etc is not
 *    followed (owners stay numeric); a FIFO does not block the walk; a tree
 *    deeper than the bound is reported truncated; big files carry no
 *    content; binary files no diff;
 *  - malformed inspector output (not JSON, unknown keys, wrong types, bad
 *    modes, unsorted paths, trailing bytes, NUL) is -EPROTO, and the
 *    inspector is closed on every path;
 *  - commands_run windows, Diff records stored, loaded, listed, and ids
 *    that could escape the state directory refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <setjmp.h>
#include <cmocka.h>

#include "diff.h"

/* ---- the fake engine ---------------------------------------------------------- */

static char tree_a[256], tree_b[256], inspect_bin[512];
static const char *lie; /* non-NULL: the inspector prints this instead */
static int opened, closed;

int fl_engine_get(FlEngine *e, const char *id, struct json_object **ret, FlError *err)
{
	if (strcmp(id, "sbx1"))
		return fl_error_set(err, -ENOENT, "no sandbox");
	*ret = json_tokener_parse("{\"id\":\"sbx1\",\"snapshots\":[{\"name\":\"a\",\"created_at\":100},"
				  "{\"name\":\"b\",\"created_at\":200}]}");
	return 0;
}

int fl_engine_inspector_open(FlEngine *e, const char *id, const char *const *snapshots, size_t n,
			     struct json_object **ret, FlError *err)
{
	opened++;
	*ret = json_tokener_parse("{\"id\":\"insp1\",\"disks\":[{\"snapshot\":\"a\",\"device\":\"/dev/vdb\"},"
				  "{\"snapshot\":\"b\",\"device\":\"/dev/vdc\"}]}");
	return 0;
}

int fl_engine_inspector_close(FlEngine *e, const char *id, FlError *err)
{
	closed++;
	return strcmp(id, "insp1") ? -EINVAL : 0;
}

struct FlStream {
	int in, out;
};

int fl_engine_stream_open(FlEngine *e, const char *id, const FlStreamSpec *spec, FlStream **ret,
			  FlError *err)
{
	json_object_put(spec->args);
	FlStream *s = calloc(1, sizeof(*s));
	s->in = open("/dev/null", O_WRONLY | O_CLOEXEC);
	s->out = open("/dev/null", O_RDONLY | O_CLOEXEC);
	*ret = s;
	return 0;
}
int fl_stream_in_fd(const FlStream *s) { return s->in; }
int fl_stream_out_fd(const FlStream *s) { return s->out; }
void fl_stream_close_input(FlStream *s) {}
void fl_stream_cancel(FlStream *s) {}
int fl_stream_finish(FlStream *s, struct json_object **ret, FlError *err)
{
	close(s->in);
	close(s->out);
	free(s);
	return 0;
}

int fl_engine_exec(FlEngine *e, const char *id, const FlExecSpec *spec, fl_output_fn out,
		   void *ud, FlExecResult *ret, FlError *err)
{
	memset(ret, 0, sizeof(*ret));
	if (spec->shell) /* the mount command */
		return strstr(spec->shell, "mount -o ro,noload /dev/vdb /mnt/a") ? 0 : -EINVAL;
	if (lie) {
		out(1, lie, strlen(lie), ud);
		return 0;
	}
	/* run the real fluid-inspect on the local trees */
	const char *argv[64];
	size_t n = 0;
	for (size_t i = 0; spec->argv[i] && n < 62; i++) {
		const char *a = spec->argv[i];
		argv[n++] = !strcmp(a, "/mnt/a") ? tree_a : !strcmp(a, "/mnt/b") ? tree_b
			    : i == 0 ? inspect_bin : a;
	}
	argv[n] = NULL;
	int p[2];
	if (pipe(p) < 0)
		return -errno;
	pid_t pid = fork();
	if (pid == 0) {
		dup2(p[1], 1);
		close(p[0]);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	char buf[65536];
	ssize_t k;
	while ((k = read(p[0], buf, sizeof(buf))) > 0)
		out(1, buf, (size_t)k, ud);
	close(p[0]);
	int st;
	waitpid(pid, &st, 0);
	ret->exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
	return 0;
}

/* ---- helpers -------------------------------------------------------------------- */

static char base[] = "/tmp/fluid-insp-host-XXXXXX";

static void shell(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	assert_int_equal(system(cmd), 0);
}

static int group_setup(void **state)
{
	const char *root = getenv("FLUID_ROOT") ? getenv("FLUID_ROOT") : ".";
	snprintf(inspect_bin, sizeof(inspect_bin), "%s/build/fluid-inspect", root);
	if (access(inspect_bin, X_OK) < 0) {
		fprintf(stderr, "%s missing\n", inspect_bin);
		return -1;
	}
	if (!mkdtemp(base))
		return -1;
	snprintf(tree_a, sizeof(tree_a), "%s/a", base);
	snprintf(tree_b, sizeof(tree_b), "%s/b", base);
	return 0;
}

static int group_teardown(void **state)
{
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", base);
	return system(cmd) == -1 ? -1 : 0;
}

static struct json_object *compute(int *ret_r)
{
	FlDiffSpec spec = {.sandbox_id = "sbx1", .from = "a", .to = "b", .inspect_bin = inspect_bin};
	struct json_object *dj = NULL;
	FlDiffInfo info;
	FlError err = {0};
	int o = opened, c = closed;
	*ret_r = fl_diff_compute(NULL, &spec, &dj, &info, &err);
	if (*ret_r < 0 && getenv("TEST_VERBOSE"))
		fprintf(stderr, "compute: %s\n", err.msg);
	assert_int_equal(opened, o + 1);
	assert_int_equal(closed, c + 1); /* closed whatever happened */
	if (*ret_r == 0) {
		assert_int_equal(info.from_created_at, 100);
		assert_int_equal(info.to_created_at, 200);
	}
	return dj;
}

static struct json_object *find(struct json_object *dj, const char *list, const char *path)
{
	struct json_object *a = json_object_object_get(dj, list);
	for (size_t i = 0; i < json_object_array_length(a); i++) {
		struct json_object *e = json_object_array_get_idx(a, i);
		if (!strcmp(json_object_get_string(json_object_object_get(e, "path")), path))
			return e;
	}
	return NULL;
}

static const char *s_of(struct json_object *o, const char *k)
{
	return json_object_get_string(json_object_object_get(o, k));
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_hostile_tree(void **state)
{
	shell("rm -rf %s %s && mkdir -p %s/etc %s/root %s/deep", tree_a, tree_b, tree_a, tree_a, tree_a);
	shell("printf 'root:x:0:0:root:/root:/bin/sh\\nbob:x:4242:4242::/:/bin/sh\\n' > %s/etc/passwd", tree_a);
	shell("printf 'root:x:0:\\n' > %s/etc/group && echo t > %s/root/text && printf 'a\\0b' > %s/root/bin",
	      tree_a, tree_a, tree_a);
	shell("cp -a %s %s", tree_a, tree_b);
	/* the new tree: hostile names, /etc swapped for the host's, a FIFO, depth, big file */
	shell("cd %s && touch \"root/new$(printf '\\nline')\" 'root/q\"uote' \"root/bad$(printf '\\377')byte\"",
	      tree_b);
	shell("cd %s && rm -rf etc && ln -s /etc etc && mkfifo root/fifo && "
	      "ln -s ../../../../etc/shadow root/escape && echo t2 > root/text && printf 'a\\0c' > root/bin && "
	      "head -c 300000 /dev/zero | tr '\\0' x > root/big && chown 4242 root/big",
	      tree_b);
	shell("cd %s/deep && for i in $(seq 1 70); do mkdir d && cd d; done && echo x > f", tree_b);
	int r;
	struct json_object *dj = compute(&r);
	assert_int_equal(r, 0);
	/* the JSON is valid and names survive */
	struct json_object *e = find(dj, "files_added", "/root/new\nline");
	assert_non_null(e);
	assert_non_null(find(dj, "files_added", "/root/q\"uote"));
	e = find(dj, "files_added", "/root/bad\xef\xbf\xbd" "byte");
	assert_non_null(e);
	assert_string_equal(s_of(e, "path_b64"), "L3Jvb3QvYmFk/2J5dGU=");
	e = find(dj, "files_added", "/root/fifo");
	assert_string_equal(s_of(e, "type"), "other");
	e = find(dj, "files_added", "/root/escape");
	assert_string_equal(s_of(e, "target"), "../../../../etc/shadow");
	assert_null(json_object_object_get(e, "content_b64"));
	/* /etc became a symlink to the host's /etc: recorded, never followed */
	e = find(dj, "files_modified", "/etc");
	assert_non_null(e);
	assert_string_equal(s_of(json_object_object_get(e, "new"), "type"), "symlink");
	assert_non_null(find(dj, "files_removed", "/etc/passwd"));
	/* so owner names of the new tree are unknown: numeric */
	e = find(dj, "files_added", "/root/big");
	assert_string_equal(s_of(e, "owner"), "4242");
	assert_null(json_object_object_get(e, "content_b64")); /* over 256 KiB */
	assert_int_equal(json_object_get_int(json_object_object_get(e, "size")), 300000);
	/* the old tree's passwd knew bob, the new one cannot be read: bob "removed" */
	assert_int_equal(json_object_array_length(json_object_object_get(dj, "users_removed")), 2);
	e = find(dj, "files_modified", "/root/text");
	assert_string_equal(s_of(e, "diff"), "--- a/root/text\n+++ b/root/text\n@@ -1 +1 @@\n-t\n+t2\n");
	e = find(dj, "files_modified", "/root/bin");
	assert_true(json_object_get_boolean(json_object_object_get(e, "binary")));
	assert_null(json_object_object_get(e, "diff"));
	/* 70 levels: beyond the walk's depth bound */
	assert_true(json_object_get_boolean(json_object_object_get(dj, "truncated")));
	json_object_put(dj);
}

/* systemd enablement, masks, unit edits; dpkg upgrades; account changes */
static void test_services_accounts(void **state)
{
	shell("rm -rf %s %s && mkdir -p %s/etc/systemd/system/multi-user.target.wants "
	      "%s/usr/lib/systemd/system %s/var/lib/dpkg",
	      tree_a, tree_b, tree_a, tree_a, tree_a);
	shell("cd %s && for u in en dis mask mod gone; do printf '[Service]\nExecStart=/bin/%%s\n' $u "
	      "> usr/lib/systemd/system/$u.service; done && "
	      "ln -s /usr/lib/systemd/system/dis.service etc/systemd/system/multi-user.target.wants/dis.service",
	      tree_a);
	shell("cd %s && printf 'Package: keep\nStatus: install ok installed\nVersion: 1\n\n"
	      "Package: up\nStatus: install ok installed\nVersion: 1.0\n\n"
	      "Package: rm\nStatus: install ok installed\nVersion: 2\n' > var/lib/dpkg/status && "
	      "printf 'root:x:0:0:root:/root:/bin/sh\nbob:x:1000:1000:Bob:/home/bob:/bin/sh\n"
	      "eve:x:1001:1001::/home/eve:/bin/sh\n' > etc/passwd && "
	      "printf 'root:x:0:\nstaff:x:50:bob\nold:x:60:\n' > etc/group && "
	      "printf 'root:*:1::::::\nbob:!:1::::::\neve:!:1::::::\n' > etc/shadow",
	      tree_a);
	shell("cp -a %s %s && cd %s && "
	      "ln -s /usr/lib/systemd/system/en.service etc/systemd/system/multi-user.target.wants/en.service && "
	      "rm etc/systemd/system/multi-user.target.wants/dis.service && "
	      "ln -s /dev/null etc/systemd/system/mask.service && "
	      "echo 'Restart=always' >> usr/lib/systemd/system/mod.service && "
	      "rm usr/lib/systemd/system/gone.service && "
	      "printf '[Service]\nExecStart=/bin/new\n[Install]\nWantedBy=multi-user.target\n' > etc/systemd/system/new.service && "
	      "ln -s ../new.service etc/systemd/system/multi-user.target.wants/new.service && "
	      "printf 'Package: keep\nStatus: install ok installed\nVersion: 1\n\n"
	      "Package: up\nStatus: install ok installed\nVersion: 1.1\n\n"
	      "Package: add\nStatus: install ok installed\nVersion: 3\n' > var/lib/dpkg/status && "
	      "printf 'root:x:0:0:root:/root:/bin/sh\nbob:x:1000:1000:Bob:/home/bob:/bin/bash\n' > etc/passwd && "
	      "printf 'root:x:0:\nstaff:x:50:\nsudo:x:27:bob\n' > etc/group && "
	      "printf 'root:*:1::::::\nbob:$6$h:1::::::\n' > etc/shadow",
	      tree_a, tree_b, tree_b);
	int r;
	struct json_object *dj = compute(&r);
	assert_int_equal(r, 0);
	const char *got = json_object_to_json_string_ext(json_object_object_get(dj, "services_changed"),
							  JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	assert_string_equal(
		got,
		"[{\"name\":\"dis.service\",\"enabled\":false,\"state\":\"disabled\",\"unit_path\":\"/usr/lib/systemd/system/dis.service\"},"
		"{\"name\":\"en.service\",\"enabled\":true,\"state\":\"enabled\",\"unit_path\":\"/usr/lib/systemd/system/en.service\"},"
		"{\"name\":\"gone.service\",\"enabled\":null,\"state\":\"removed\"},"
		"{\"name\":\"mask.service\",\"enabled\":false,\"state\":\"masked\",\"unit_path\":\"/usr/lib/systemd/system/mask.service\"},"
		"{\"name\":\"mod.service\",\"enabled\":false,\"state\":\"modified\",\"unit_path\":\"/usr/lib/systemd/system/mod.service\"},"
		"{\"name\":\"new.service\",\"enabled\":true,\"state\":\"added\",\"unit_path\":\"/etc/systemd/system/new.service\"}]");
	got = json_object_to_json_string_ext(json_object_object_get(dj, "packages_upgraded"), JSON_C_TO_STRING_PLAIN);
	assert_string_equal(got, "[{\"name\":\"up\",\"from\":\"1.0\",\"to\":\"1.1\"}]");
	got = json_object_to_json_string_ext(json_object_object_get(dj, "packages_added"), JSON_C_TO_STRING_PLAIN);
	assert_string_equal(got, "[{\"name\":\"add\",\"version\":\"3\"}]");
	got = json_object_to_json_string_ext(json_object_object_get(dj, "packages_removed"), JSON_C_TO_STRING_PLAIN);
	assert_string_equal(got, "[{\"name\":\"rm\",\"version\":\"2\"}]");
	got = json_object_to_json_string_ext(json_object_object_get(dj, "users_changed"),
					     JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	assert_string_equal(got, "[{\"name\":\"bob\",\"changes\":{\"shell\":{\"from\":\"/bin/sh\",\"to\":\"/bin/bash\"},"
				 "\"groups\":{\"from\":[\"staff\"],\"to\":[\"sudo\"]},"
				 "\"password\":{\"from\":\"locked\",\"to\":\"set\"}}}]");
	got = json_object_to_json_string_ext(json_object_object_get(dj, "users_removed"), JSON_C_TO_STRING_PLAIN);
	assert_string_equal(got, "[{\"name\":\"eve\"}]");
	got = json_object_to_json_string_ext(json_object_object_get(dj, "groups_changed"), JSON_C_TO_STRING_PLAIN);
	assert_string_equal(got, "[{\"name\":\"staff\",\"changes\":{\"members\":{\"from\":[\"bob\"],\"to\":[]}}}]");
	got = json_object_to_json_string_ext(json_object_object_get(dj, "groups_added"), JSON_C_TO_STRING_PLAIN);
	assert_string_equal(got, "[{\"name\":\"sudo\",\"gid\":27,\"members\":[\"bob\"]}]");
	got = json_object_to_json_string_ext(json_object_object_get(dj, "groups_removed"), JSON_C_TO_STRING_PLAIN);
	assert_string_equal(got, "[{\"name\":\"old\"}]");
	/* the shadow hash itself never leaves the inspector */
	assert_null(strstr(json_object_to_json_string(dj), "$6$h"));
	struct json_object *e = find(dj, "files_modified", "/etc/shadow");
	assert_true(json_object_get_boolean(json_object_object_get(e, "redacted")));
	assert_null(json_object_object_get(e, "diff"));
	assert_null(json_object_object_get(json_object_object_get(e, "new"), "content_b64"));
	assert_true(json_object_is_type(json_object_object_get(json_object_object_get(e, "new"), "sha256"),
					json_type_null));
	json_object_put(dj);
}

static void test_lying_inspector(void **state)
{
	static const char good[] =
		"{\"files_added\":[],\"files_removed\":[],\"files_modified\":[],\"packages_added\":[],"
		"\"packages_removed\":[],\"packages_upgraded\":[],\"services_changed\":[],"
		"\"users_added\":[],\"users_removed\":[],\"users_changed\":[],\"groups_added\":[],"
		"\"groups_removed\":[],\"groups_changed\":[],\"ignored\":{\"count\":0,\"patterns\":[]},"
		"\"truncated\":false}";
	int r;
	lie = good;
	struct json_object *dj = compute(&r);
	assert_int_equal(r, 0);
	json_object_put(dj);
	static const char *const bad[] = {
		"",
		"not json",
		"[]",
		"{\"files_added\":[]}",
		/* an unknown key */
		"{\"files_added\":[],\"files_removed\":[],\"files_modified\":[],\"packages_added\":[],"
		"\"packages_removed\":[],\"packages_upgraded\":[],\"services_changed\":[],"
		"\"users_added\":[],\"users_removed\":[],\"users_changed\":[],\"groups_added\":[],"
		"\"groups_removed\":[],\"groups_changed\":[],\"ignored\":{\"count\":0,\"patterns\":[]},"
		"\"truncated\":false,\"evil\":1}",
		/* wrong type */
		"{\"files_added\":{},\"files_removed\":[],\"files_modified\":[],\"packages_added\":[],"
		"\"packages_removed\":[],\"packages_upgraded\":[],\"services_changed\":[],"
		"\"users_added\":[],\"users_removed\":[],\"users_changed\":[],\"groups_added\":[],"
		"\"groups_removed\":[],\"groups_changed\":[],\"ignored\":{\"count\":0,\"patterns\":[]},"
		"\"truncated\":false}",
		/* a relative path */
		"{\"files_added\":[],\"files_removed\":[{\"path\":\"etc/x\",\"type\":\"file\"}],"
		"\"files_modified\":[],\"packages_added\":[],"
		"\"packages_removed\":[],\"packages_upgraded\":[],\"services_changed\":[],"
		"\"users_added\":[],\"users_removed\":[],\"users_changed\":[],\"groups_added\":[],"
		"\"groups_removed\":[],\"groups_changed\":[],\"ignored\":{\"count\":0,\"patterns\":[]},"
		"\"truncated\":false}",
		/* unsorted paths */
		"{\"files_added\":[],\"files_removed\":[{\"path\":\"/b\",\"type\":\"file\"},"
		"{\"path\":\"/a\",\"type\":\"file\"}],\"files_modified\":[],\"packages_added\":[],"
		"\"packages_removed\":[],\"packages_upgraded\":[],\"services_changed\":[],"
		"\"users_added\":[],\"users_removed\":[],\"users_changed\":[],\"groups_added\":[],"
		"\"groups_removed\":[],\"groups_changed\":[],\"ignored\":{\"count\":0,\"patterns\":[]},"
		"\"truncated\":false}",
		/* a bad mode and a bad type */
		"{\"files_added\":[{\"path\":\"/a\",\"type\":\"file\",\"mode\":\"0999\",\"owner\":\"r\","
		"\"group\":\"r\",\"size\":1,\"sha256\":null,\"binary\":false}],\"files_removed\":[],"
		"\"files_modified\":[],\"packages_added\":[],"
		"\"packages_removed\":[],\"packages_upgraded\":[],\"services_changed\":[],"
		"\"users_added\":[],\"users_removed\":[],\"users_changed\":[],\"groups_added\":[],"
		"\"groups_removed\":[],\"groups_changed\":[],\"ignored\":{\"count\":0,\"patterns\":[]},"
		"\"truncated\":false}",
		"{\"files_added\":[],\"files_removed\":[{\"path\":\"/a\",\"type\":\"device\"}],"
		"\"files_modified\":[],\"packages_added\":[],"
		"\"packages_removed\":[],\"packages_upgraded\":[],\"services_changed\":[],"
		"\"users_added\":[],\"users_removed\":[],\"users_changed\":[],\"groups_added\":[],"
		"\"groups_removed\":[],\"groups_changed\":[],\"ignored\":{\"count\":0,\"patterns\":[]},"
		"\"truncated\":false}",
		/* a negative number and a service state not in the contract */
		"{\"files_added\":[],\"files_removed\":[],\"files_modified\":[],\"packages_added\":[],"
		"\"packages_removed\":[],\"packages_upgraded\":[],\"services_changed\":[{\"name\":\"x\","
		"\"enabled\":true,\"state\":\"hacked\"}],"
		"\"users_added\":[],\"users_removed\":[],\"users_changed\":[],\"groups_added\":[],"
		"\"groups_removed\":[],\"groups_changed\":[],\"ignored\":{\"count\":-1,\"patterns\":[]},"
		"\"truncated\":false}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		lie = bad[i];
		dj = compute(&r);
		if (r != -EPROTO)
			fprintf(stderr, "bad[%zu] accepted\n", i);
		assert_int_equal(r, -EPROTO);
		assert_null(dj);
	}
	/* trailing bytes and NUL */
	FlError err;
	struct json_object *o = NULL;
	char buf[sizeof(good) + 8];
	snprintf(buf, sizeof(buf), "%s {}", good);
	assert_int_equal(fl_diff_parse(buf, strlen(buf), &o, &err), -EPROTO);
	memcpy(buf, good, sizeof(good));
	assert_int_equal(fl_diff_parse(buf, sizeof(good), &o, &err), -EPROTO); /* with its NUL */
	assert_int_equal(fl_diff_parse(good, strlen(good), &o, &err), 0);
	json_object_put(o);
	lie = NULL;
}

static void test_bad_requests(void **state)
{
	FlDiffSpec spec = {.sandbox_id = "sbx1", .from = "a", .to = "a", .inspect_bin = inspect_bin};
	struct json_object *dj = NULL;
	FlError err;
	assert_int_equal(fl_diff_compute(NULL, &spec, &dj, NULL, &err), -EINVAL);
	spec.to = "../b";
	assert_int_equal(fl_diff_compute(NULL, &spec, &dj, NULL, &err), -EINVAL);
	spec.to = "zz";
	assert_int_equal(fl_diff_compute(NULL, &spec, &dj, NULL, &err), -ENOENT);
	spec.to = "b";
	spec.sandbox_id = "other";
	assert_int_equal(fl_diff_compute(NULL, &spec, &dj, NULL, &err), -ENOENT);
	spec.sandbox_id = "sbx1";
	const char *ig[] = {"bad\npattern"};
	spec.ignore = ig;
	spec.n_ignore = 1;
	assert_int_equal(fl_diff_compute(NULL, &spec, &dj, NULL, &err), -EINVAL);
	spec.n_ignore = 0;
	spec.inspect_bin = "/nonexistent/fluid-inspect";
	assert_int_equal(fl_diff_compute(NULL, &spec, &dj, NULL, &err), -ENOEXEC);
}

static void test_commands_between(void **state)
{
	struct json_object *c = json_tokener_parse(
		"[{\"command\":\"late\",\"exit_code\":0,\"started_at\":\"1970-01-01T00:03:21.000Z\"},"
		"{\"command\":\"in2\",\"exit_code\":null,\"started_at\":\"1970-01-01T00:03:20.900Z\"},"
		"{\"command\":\"early\",\"exit_code\":0,\"started_at\":\"1970-01-01T00:01:39.999Z\"},"
		"{\"command\":\"in1\",\"exit_code\":3,\"started_at\":\"1970-01-01T00:01:40.000Z\"},"
		"{\"command\":\"junk\",\"started_at\":\"yesterday\"},{\"nothing\":1}]");
	struct json_object *r = fl_diff_commands_between(c, 100, 200);
	assert_string_equal(json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN),
			    "[{\"cmd\":\"in1\",\"exit_code\":3,\"at\":\"1970-01-01T00:01:40.000Z\"},"
			    "{\"cmd\":\"in2\",\"exit_code\":null,\"at\":\"1970-01-01T00:03:20.900Z\"}]");
	json_object_put(r);
	json_object_put(c);
	r = fl_diff_commands_between(NULL, 0, 1);
	assert_int_equal(json_object_array_length(r), 0);
	json_object_put(r);
}

static void test_records(void **state)
{
	char st[300];
	snprintf(st, sizeof(st), "%s/state", base);
	shell("mkdir -p %s/sandboxes/sbx1", st);
	FlError err;
	struct json_object *r1 = fl_diff_record("sbx1", "a", "b", json_tokener_parse("{\"files_added\":[]}"));
	assert_int_equal(fl_diff_store(st, r1, &err), 0);
	usleep(2000);
	struct json_object *r2 = fl_diff_record("sbx1", "b", "c", json_tokener_parse("{\"files_added\":[1,2]}"));
	assert_int_equal(fl_diff_store(st, r2, &err), 0);
	const char *id1 = s_of(r1, "id");
	assert_int_equal(strlen(id1), FL_DIFF_ID_LEN);
	struct json_object *o = NULL;
	assert_int_equal(fl_diff_load(st, "sbx1", id1, &o, &err), 0);
	assert_true(json_object_equal(o, r1));
	json_object_put(o);
	assert_int_equal(fl_diff_latest(st, "sbx1", &o, &err), 0);
	assert_string_equal(s_of(o, "id"), s_of(r2, "id"));
	json_object_put(o);
	assert_int_equal(fl_diff_list(st, "sbx1", &o, &err), 0);
	assert_int_equal(json_object_array_length(o), 2);
	struct json_object *first = json_object_array_get_idx(o, 0);
	assert_null(json_object_object_get(first, "diff_json"));
	assert_int_equal(json_object_get_int(json_object_object_get(
				 json_object_object_get(first, "counts"), "files_added")),
			 2);
	json_object_put(o);
	/* ids that could leave the state directory */
	assert_int_equal(fl_diff_load(st, "sbx1", "../../etc/passwd", &o, &err), -ENOENT);
	assert_int_equal(fl_diff_load(st, "..", id1, &o, &err), -EINVAL);
	assert_int_equal(fl_diff_load(st, "nosuch", id1, &o, &err), -ENOENT);
	assert_int_equal(fl_diff_latest(st, "nosuch", &o, &err), -ENOENT);
	char *sum = fl_diff_summary(r2);
	assert_non_null(strstr(sum, "b -> c"));
	free(sum);
	json_object_put(r1);
	json_object_put(r2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hostile_tree),   cmocka_unit_test(test_services_accounts),
		cmocka_unit_test(test_lying_inspector),
		cmocka_unit_test(test_bad_requests),   cmocka_unit_test(test_commands_between),
		cmocka_unit_test(test_records),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
