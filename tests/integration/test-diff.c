// SPDX-License-Identifier: MIT
/*
 * Integration tests of the trusted diff (docs/diff.md) against real QEMU
 * (TCG) through the engine library, as the API does it:
 *
 *  - tiny: scripted changes (files added, modified, deleted, chmod,
 *    symlink, a name with a quote and a newline, a user and a group added by
 *    editing /etc/passwd and /etc/group) give exactly those entries; any
 *    other change not on the ignore list fails the test;
 *  - tiny, lying sandbox: /bin/ls and /bin/cat replaced by scripts that
 *    lie, the guest agent's binary overwritten: the diff still shows
 *    exactly what changed (it never asks the sandbox);
 *  - debian-12 (skipped without build/images/debian-12 or with
 *    FLUID_TEST_NO_DEBIAN=1): a .deb installed with dpkg -i (hello from
 *    `apt-get download` when the host can, else a package built here with
 *    dpkg-deb) and a systemd service created and enabled show up as
 *    packages_added and services_changed.
 *
 * FLUID_TEST_SAMPLE=FILE writes the debian diff JSON there.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <setjmp.h>
#include <cmocka.h>

#include "diff.h"
#include "engine.h"

static char state_dir[256];
static char image_dir[512];
static char inspect_bin[600];
static FlEngine *E;

typedef struct Out {
	char buf[65536];
	size_t len;
} Out;

static void collect(int stream, const void *buf, size_t len, void *ud)
{
	Out *o = ud;
	size_t n = len < sizeof(o->buf) - 1 - o->len ? len : sizeof(o->buf) - 1 - o->len;
	memcpy(o->buf + o->len, buf, n);
	o->len += n;
	o->buf[o->len] = 0;
}

static int sh(const char *id, const char *cmd, char **out)
{
	static Out o;
	memset(&o, 0, sizeof(o));
	FlExecSpec s = {.shell = cmd, .timeout_ms = 300000};
	FlExecResult res;
	FlError err = {0};
	int r = fl_engine_exec(E, id, &s, collect, &o, &res, &err);
	if (r < 0) {
		fprintf(stderr, "exec '%s' in %s: %s\n", cmd, id, err.msg);
		return -1000 + r;
	}
	if (res.exit_code)
		fprintf(stderr, "'%s' -> %d: %s\n", cmd, res.exit_code, o.buf);
	if (out)
		*out = o.buf;
	return res.signal ? 128 + res.signal : res.exit_code;
}

static char *create(const char *image)
{
	FlSandboxSpec spec = {.base_image = image};
	struct json_object *o = NULL, *id;
	FlError err = {0};
	int r = fl_engine_create(E, &spec, &o, &err);
	if (r < 0)
		fprintf(stderr, "create: %s\n", err.msg);
	assert_int_equal(r, 0);
	assert_true(json_object_object_get_ex(o, "id", &id));
	char *s = strdup(json_object_get_string(id));
	json_object_put(o);
	return s;
}

static void snapshot(const char *id, const char *name)
{
	FlError err = {0};
	int r = fl_engine_snapshot(E, id, name, false, NULL, &err);
	if (r < 0)
		fprintf(stderr, "snapshot %s: %s\n", name, err.msg);
	assert_int_equal(r, 0);
}

static struct json_object *diff(const char *id, const char *from, const char *to)
{
	FlDiffSpec spec = {.sandbox_id = id, .from = from, .to = to, .inspect_bin = inspect_bin};
	struct json_object *dj = NULL;
	FlDiffInfo info;
	FlError err = {0};
	int r = fl_diff_compute(E, &spec, &dj, &info, &err);
	if (r < 0)
		fprintf(stderr, "diff: %s\n", err.msg);
	assert_int_equal(r, 0);
	fprintf(stderr, "diff %s..%s: inspector %llu ms, total %llu ms\n", from, to,
		(unsigned long long)info.inspector_ms, (unsigned long long)info.total_ms);
	if (getenv("TEST_VERBOSE"))
		fprintf(stderr, "%s\n", json_object_to_json_string_ext(dj, JSON_C_TO_STRING_PRETTY));
	return dj;
}

/* "a,b,c": the values of key in array dj[list], in order. */
static void keys_of(struct json_object *dj, const char *list, const char *key, char *buf, size_t len)
{
	struct json_object *a = json_object_object_get(dj, list);
	buf[0] = 0;
	for (size_t i = 0; a && i < json_object_array_length(a); i++) {
		const char *v = json_object_get_string(
			json_object_object_get(json_object_array_get_idx(a, i), key));
		size_t l = strlen(buf);
		snprintf(buf + l, len - l, "%s%s", l ? "," : "", v ? v : "(null)");
	}
}

static void expect(struct json_object *dj, const char *list, const char *key, const char *want)
{
	char got[8192];
	keys_of(dj, list, key, got, sizeof(got));
	if (strcmp(got, want))
		fprintf(stderr, "%s: got\n  %s\nwant\n  %s\n", list, got, want);
	assert_string_equal(got, want);
}

static struct json_object *entry(struct json_object *dj, const char *list, const char *key,
				 const char *val)
{
	struct json_object *a = json_object_object_get(dj, list);
	for (size_t i = 0; a && i < json_object_array_length(a); i++) {
		struct json_object *e = json_object_array_get_idx(a, i);
		const char *v = json_object_get_string(json_object_object_get(e, key));
		if (v && !strcmp(v, val))
			return e;
	}
	fprintf(stderr, "no %s with %s=%s\n", list, key, val);
	fail();
	return NULL;
}

static const char *str(struct json_object *o, const char *path)
{
	/* "a.b.c" */
	char buf[128];
	snprintf(buf, sizeof(buf), "%s", path);
	struct json_object *cur = o;
	for (char *save, *k = strtok_r(buf, ".", &save); k; k = strtok_r(NULL, ".", &save))
		if (!json_object_object_get_ex(cur, k, &cur))
			return NULL;
	return json_object_get_string(cur);
}

static bool changes_has(struct json_object *e, const char *c)
{
	struct json_object *a = json_object_object_get(e, "changes");
	for (size_t i = 0; a && i < json_object_array_length(a); i++)
		if (!strcmp(json_object_get_string(json_object_array_get_idx(a, i)), c))
			return true;
	return false;
}

static int group_setup(void **state)
{
	const char *root = getenv("FLUID_ROOT") ? getenv("FLUID_ROOT") : ".";
	const char *imgs = getenv("FLUID_IMAGE_DIR");
	if (imgs)
		snprintf(image_dir, sizeof(image_dir), "%s", imgs);
	else
		snprintf(image_dir, sizeof(image_dir), "%s/build/images", root);
	snprintf(inspect_bin, sizeof(inspect_bin), "%s/build/fluid-inspect", root);
	if (access(inspect_bin, R_OK) < 0) {
		fprintf(stderr, "%s missing (make build/fluid-inspect)\n", inspect_bin);
		return -1;
	}
	snprintf(state_dir, sizeof(state_dir), "/tmp/fluid-diff-XXXXXX");
	if (!mkdtemp(state_dir))
		return -1;
	FlEngineConfig c = {.state_dir = state_dir, .image_dir = image_dir, .accel = "tcg",
			    .boot_timeout_ms = 300000};
	FlError err = {0};
	if (fl_engine_new(&c, &E, &err) < 0) {
		fprintf(stderr, "engine: %s\n", err.msg);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	struct json_object *list = NULL;
	if (E && fl_engine_list(E, &list) == 0) {
		for (size_t i = 0; i < json_object_array_length(list); i++) {
			const char *id = json_object_get_string(
				json_object_object_get(json_object_array_get_idx(list, i), "id"));
			fl_engine_destroy(E, id, NULL);
		}
		json_object_put(list);
	}
	fl_engine_free(E);
	E = NULL;
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", state_dir);
	return system(cmd) == -1 ? -1 : 0;
}

/* ---- tests ------------------------------------------------------------------ */

static void test_tiny_exact(void **state)
{
	char *id = create("tiny");
	assert_int_equal(sh(id, "echo bye > /root/todelete && echo m > /root/modefile && "
			    "chmod 644 /root/modefile && sync", NULL), 0);
	snapshot(id, "a");
	assert_int_equal(
		sh(id,
		   "mkdir -p /data/app && printf 'hello\\n' > /data/app/new.txt && "
		   "printf 'export FOO=1\\n' >> /etc/profile && rm /root/todelete && "
		   "chmod 600 /root/modefile && ln -s /data/app/new.txt /root/link && "
		   "touch \"/root/we\\\"ird$(printf '\\nname')\" && "
		   "echo 'alice:x:1001:1001:Alice:/home/alice:/bin/sh' >> /etc/passwd && "
		   "echo 'alice:x:1001:' >> /etc/group && echo 'devs:x:2001:alice' >> /etc/group && "
		   "mkdir -p /var/log/x && echo noise > /var/log/x/l && sync",
		   NULL),
		0);
	snapshot(id, "b");
	struct json_object *dj = diff(id, "a", "b");
	expect(dj, "files_added", "path",
	       "/data,/data/app,/data/app/new.txt,/root/link,/root/we\"ird\nname");
	expect(dj, "files_removed", "path", "/root/todelete");
	expect(dj, "files_modified", "path", "/etc/group,/etc/passwd,/etc/profile,/root/modefile");
	struct json_object *e = entry(dj, "files_modified", "path", "/root/modefile");
	assert_true(changes_has(e, "mode") && !changes_has(e, "content"));
	assert_string_equal(str(e, "old.mode"), "0644");
	assert_string_equal(str(e, "new.mode"), "0600");
	e = entry(dj, "files_modified", "path", "/etc/profile");
	assert_non_null(strstr(str(e, "diff"), "\n+export FOO=1\n"));
	assert_non_null(str(e, "new.content_b64"));
	e = entry(dj, "files_added", "path", "/root/link");
	assert_string_equal(str(e, "type"), "symlink");
	assert_string_equal(str(e, "target"), "/data/app/new.txt");
	e = entry(dj, "files_added", "path", "/data/app/new.txt");
	assert_string_equal(str(e, "content_b64"), "aGVsbG8K");
	assert_string_equal(str(e, "sha256"),
			    "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");
	assert_string_equal(str(e, "owner"), "root");
	expect(dj, "users_added", "name", "alice");
	e = entry(dj, "users_added", "name", "alice");
	assert_string_equal(str(e, "home"), "/home/alice");
	assert_string_equal(json_object_to_json_string(json_object_object_get(e, "groups")),
			    "[ \"devs\" ]");
	expect(dj, "groups_added", "name", "alice,devs");
	expect(dj, "users_removed", "name", "");
	expect(dj, "groups_changed", "name", "");
	expect(dj, "packages_added", "name", "");
	expect(dj, "services_changed", "name", "");
	struct json_object *ig = json_object_object_get(dj, "ignored");
	assert_true(json_object_get_int(json_object_object_get(ig, "count")) >= 2);
	assert_false(json_object_get_boolean(json_object_object_get(dj, "truncated")));

	/* stored and read back like the API does */
	struct json_object *rec = fl_diff_record(id, "a", "b", dj);
	FlError err = {0};
	assert_int_equal(fl_diff_store(state_dir, rec, &err), 0);
	struct json_object *back = NULL, *latest = NULL;
	const char *did = json_object_get_string(json_object_object_get(rec, "id"));
	assert_int_equal(fl_diff_load(state_dir, id, did, &back, &err), 0);
	assert_int_equal(fl_diff_validate(json_object_object_get(back, "diff_json"), &err), 0);
	assert_int_equal(fl_diff_latest(state_dir, id, &latest, &err), 0);
	assert_string_equal(json_object_get_string(json_object_object_get(latest, "id")), did);
	char *sum = fl_diff_summary(back);
	assert_non_null(strstr(sum, "D /root/todelete\n"));
	assert_non_null(strstr(sum, "M /root/modefile (mode)\n"));
	free(sum);
	json_object_put(back);
	json_object_put(latest);
	json_object_put(rec);

	/* the same snapshot twice and unknown snapshots are refused */
	FlDiffSpec bad = {.sandbox_id = id, .from = "a", .to = "a", .inspect_bin = inspect_bin};
	struct json_object *none = NULL;
	assert_int_equal(fl_diff_compute(E, &bad, &none, NULL, &err), -EINVAL);
	bad.to = "nope";
	assert_int_equal(fl_diff_compute(E, &bad, &none, NULL, &err), -ENOENT);
	/* no inspector is left behind */
	struct json_object *list;
	fl_engine_list(E, &list);
	assert_int_equal(json_object_array_length(list), 1);
	json_object_put(list);
	fl_engine_destroy(E, id, NULL);
	free(id);
}

static void test_tiny_liar(void **state)
{
	char *id = create("tiny");
	char *out;
	snapshot(id, "a");
	/* The guest lies: ls and cat hide files, the agent binary is replaced. */
	assert_int_equal(
		sh(id,
		   "echo secret > /root/secret && "
		   "rm -f /bin/ls /bin/cat && printf '#!/bin/sh\\necho nothing here\\n' > /bin/ls && "
		   "cp /bin/ls /bin/cat && chmod 755 /bin/ls /bin/cat && "
		   "rm -f /usr/sbin/fluid-agent && printf '#!/bin/sh\\nexit 0\\n' > /usr/sbin/fluid-agent && "
		   "chmod 755 /usr/sbin/fluid-agent && sync",
		   NULL),
		0);
	assert_int_equal(sh(id, "/bin/ls /root", &out), 0);
	assert_string_equal(out, "nothing here\n");
	snapshot(id, "b");
	struct json_object *dj = diff(id, "a", "b");
	expect(dj, "files_added", "path", "/root/secret");
	expect(dj, "files_removed", "path", "");
	expect(dj, "files_modified", "path", "/bin/cat,/bin/ls,/usr/sbin/fluid-agent");
	struct json_object *e = entry(dj, "files_modified", "path", "/usr/sbin/fluid-agent");
	assert_true(changes_has(e, "content"));
	assert_true(json_object_get_boolean(json_object_object_get(e, "binary")));
	e = entry(dj, "files_modified", "path", "/bin/ls");
	assert_string_equal(str(e, "new.type"), "file");
	assert_string_equal(str(e, "new.content_b64"), "IyEvYmluL3NoCmVjaG8gbm90aGluZyBoZXJlCg==");
	json_object_put(dj);
	fl_engine_destroy(E, id, NULL);
	free(id);
}

/* A .deb for the guest: `apt-get download hello` when the host can, else one built here. */
static int make_deb(char *path, size_t len, char *name, size_t nlen)
{
	char cmd[2048];
	snprintf(cmd, sizeof(cmd),
		 "cd %s && (apt-get download hello >/dev/null 2>&1 && ls hello_*.deb | head -1) ", state_dir);
	FILE *p = popen(cmd, "r");
	char line[512] = "";
	if (p) {
		if (!fgets(line, sizeof(line), p))
			line[0] = 0;
		pclose(p);
	}
	line[strcspn(line, "\n")] = 0;
	if (line[0]) {
		snprintf(path, len, "%s/%s", state_dir, line);
		snprintf(name, nlen, "hello");
		return 0;
	}
	snprintf(cmd, sizeof(cmd),
		 "set -e; d=%s/debsrc; mkdir -p $d/DEBIAN $d/usr/bin $d/usr/share/doc/fluid-hello; "
		 "printf 'Package: fluid-hello\\nVersion: 1.2-3\\nArchitecture: all\\n"
		 "Maintainer: fluid tests <t@example.invalid>\\nDescription: test package\\n' > $d/DEBIAN/control; "
		 "printf '#!/bin/sh\\necho hello\\n' > $d/usr/bin/fluid-hello; chmod 755 $d/usr/bin/fluid-hello; "
		 "echo test > $d/usr/share/doc/fluid-hello/README; "
		 "dpkg-deb --root-owner-group -b $d %s/fluid-hello.deb >/dev/null",
		 state_dir, state_dir);
	if (system(cmd) != 0)
		return -1;
	snprintf(path, len, "%s/fluid-hello.deb", state_dir);
	snprintf(name, nlen, "fluid-hello");
	return 0;
}

static void put_file(const char *id, const char *local, const char *remote)
{
	int fd = open(local, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	struct json_object *args = json_object_new_object();
	json_object_object_add(args, "path", json_object_new_string(remote));
	FlStreamSpec ss = {.op = "file_write", .args = args, .input = true, .timeout_ms = 120000};
	FlStream *s = NULL;
	FlError err = {0};
	assert_int_equal(fl_engine_stream_open(E, id, &ss, &s, &err), 0);
	char buf[65536];
	ssize_t n;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		assert_int_equal(write(fl_stream_in_fd(s), buf, (size_t)n), n);
	close(fd);
	fl_stream_close_input(s);
	while (read(fl_stream_out_fd(s), buf, sizeof(buf)) > 0)
		;
	int r = fl_stream_finish(s, NULL, &err);
	if (r < 0)
		fprintf(stderr, "file_write: %s\n", err.msg);
	assert_int_equal(r, 0);
}

static void test_debian_packages_services(void **state)
{
	char img[700];
	snprintf(img, sizeof(img), "%s/debian-12/image.json", image_dir);
	if (getenv("FLUID_TEST_NO_DEBIAN") || access(img, R_OK) < 0)
		skip();
	char deb[600], pkg[64];
	assert_int_equal(make_deb(deb, sizeof(deb), pkg, sizeof(pkg)), 0);
	time_t t0 = time(NULL);
	char *id = create("debian-12");
	fprintf(stderr, "debian-12 sandbox ready in %lds\n", (long)(time(NULL) - t0));
	snapshot(id, "before");
	put_file(id, deb, "/root/pkg.deb");
	assert_int_equal(
		sh(id,
		   "dpkg -i /root/pkg.deb >/dev/null && rm /root/pkg.deb && "
		   "printf '[Unit]\\nDescription=fluid test\\n[Service]\\nExecStart=/bin/sleep infinity\\n"
		   "[Install]\\nWantedBy=multi-user.target\\n' > /etc/systemd/system/fluid-test.service && "
		   "systemctl daemon-reload && systemctl enable fluid-test.service 2>/dev/null && "
		   "printf 'x\\n' > /etc/fluid-test.conf && sync",
		   NULL),
		0);
	snapshot(id, "after");
	struct json_object *dj = diff(id, "before", "after");
	const char *sample = getenv("FLUID_TEST_SAMPLE");
	if (sample)
		json_object_to_file_ext(sample, dj, JSON_C_TO_STRING_PRETTY);
	expect(dj, "packages_added", "name", pkg);
	expect(dj, "packages_removed", "name", "");
	struct json_object *s = entry(dj, "services_changed", "name", "fluid-test.service");
	assert_string_equal(str(s, "state"), "added");
	assert_true(json_object_get_boolean(json_object_object_get(s, "enabled")));
	assert_string_equal(str(s, "unit_path"), "/etc/systemd/system/fluid-test.service");
	entry(dj, "files_added", "path", "/etc/systemd/system/fluid-test.service");
	entry(dj, "files_added", "path",
	      "/etc/systemd/system/multi-user.target.wants/fluid-test.service");
	entry(dj, "files_added", "path", "/etc/fluid-test.conf");
	expect(dj, "files_modified", "path", "/var/lib/dpkg/status");
	expect(dj, "files_removed", "path", "");
	expect(dj, "users_added", "name", "");
	expect(dj, "groups_added", "name", "");
	expect(dj, "services_changed", "name", "fluid-test.service");
	/* nothing but what the session did (dpkg's own bookkeeping and the package's files) */
	struct json_object *a = json_object_object_get(dj, "files_added");
	for (size_t i = 0; i < json_object_array_length(a); i++) {
		const char *p = str(json_object_array_get_idx(a, i), "path");
		if (strncmp(p, "/usr/", 5) && strncmp(p, "/var/lib/dpkg/", 14) &&
		    strncmp(p, "/etc/systemd/system/", 20) && strcmp(p, "/etc/fluid-test.conf")) {
			fprintf(stderr, "unexpected added path %s\n", p);
			fail();
		}
	}
	json_object_put(dj);
	fl_engine_destroy(E, id, NULL);
	free(id);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tiny_exact),
		cmocka_unit_test(test_tiny_liar),
		cmocka_unit_test(test_debian_packages_services),
	};
	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
