// SPDX-License-Identifier: MIT
/*
 * Unit tests for the imgstore registry: content ids, references, freeze,
 * garbage collection (chains go away bottom-up only when nothing uses
 * them), persistence across reopen, recovery from crash leftovers
 * (staging directories, half-deleted layers, orphaned references) and
 * strict validation of ids, holder names and metadata.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "imgstore.h"

static char g_dir[256];
static char g_reg[300];

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(p);
}

static int setup(void **state)
{
	snprintf(g_dir, sizeof(g_dir), "/tmp/test-imgreg-XXXXXX");
	assert_non_null(mkdtemp(g_dir));
	snprintf(g_reg, sizeof(g_reg), "%s/images", g_dir);
	return 0;
}

static int teardown(void **state)
{
	nftw(g_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

static char *P(const char *fmt, ...)
{
	static char buf[8][600];
	static int k;
	char *b = buf[k++ % 8];
	char rel[300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(rel, sizeof(rel), fmt, ap);
	va_end(ap);
	snprintf(b, 600, "%s/%s", g_dir, rel);
	return b;
}

/* A raw image with some content (seed makes the content, hence the id, differ). */
static void make_raw(const char *path, int seed)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4 << 20), 0);
	char buf[4096];
	memset(buf, 'a' + seed, sizeof(buf));
	assert_int_equal(pwrite(fd, buf, sizeof(buf), 1 << 20), (ssize_t)sizeof(buf));
	close(fd);
}

static bool exists(const char *p) { return access(p, F_OK) == 0; }

static void test_import_ids(void **state)
{
	FlError e = { 0 };
	ImgRegistry *r = NULL;
	assert_int_equal(img_registry_open(g_reg, &r, &e), 0);
	make_raw(P("a.img"), 0);
	char id[IMG_ID_SIZE], id2[IMG_ID_SIZE], sha[IMG_ID_SIZE];
	assert_int_equal(img_registry_import(r, P("a.img"), "debian-12", "template:debian", id, &e), 0);
	assert_int_equal(img_sha256_file(P("a.img"), sha, &e), 0);
	assert_string_equal(id, sha); /* base id = content hash */
	/* same content again: same id, one more holder */
	assert_int_equal(img_registry_import(r, P("a.img"), NULL, "other", id2, &e), 0);
	assert_string_equal(id, id2);
	assert_int_equal(img_registry_refcount(r, id, &e), 2);

	ImgLayer l;
	assert_int_equal(img_registry_layer_info(r, id, &l, &e), 0);
	assert_int_equal(l.kind, IMG_LAYER_BASE);
	assert_int_equal(l.state, IMG_LAYER_FROZEN);
	assert_int_equal(l.format, IMG_FMT_RAW);
	assert_int_equal(l.virtual_size, 4 << 20);
	assert_string_equal(l.name, "debian-12");
	assert_string_equal(l.parent, "");
	char path[IMG_PATH_MAX];
	assert_int_equal(img_registry_layer_path(r, id, path, sizeof(path), &e), 0);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0444); /* immutable once frozen */
	assert_int_equal(img_registry_verify(r, id, &e), 0);

	/* qcow2 with a backing file cannot be imported */
	assert_int_equal(img_qcow2_create_overlay(P("ov.qcow2"), "a.img", "raw", 0, 0, &e), 0);
	assert_int_equal(img_registry_import(r, P("ov.qcow2"), NULL, NULL, id2, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "backing"));
	/* bad names */
	assert_int_equal(img_registry_import(r, P("a.img"), "../x", NULL, id2, &e), -EINVAL);
	assert_int_equal(img_registry_import(r, P("a.img"), NULL, "a/b", id2, &e), -EINVAL);
	assert_int_equal(img_registry_import(r, P("missing"), NULL, NULL, id2, &e), -ENOENT);
	assert_int_equal(img_registry_ref(r, "../../etc", "h", &e), -EINVAL);
	assert_int_equal(img_registry_ref(r, id, ".hidden", &e), -EINVAL);
	assert_int_equal(img_registry_ref(r, id, "", &e), -EINVAL);
	char longname[200];
	memset(longname, 'x', sizeof(longname) - 1);
	longname[199] = '\0';
	assert_int_equal(img_registry_ref(r, id, longname, &e), -EINVAL);
	assert_int_equal(img_registry_ref(r, "0000000000000000000000000000000000000000000000000000000000000000", "h", &e), -ENOENT);
	/* Corrupting the stored image is detected by verify. */
	assert_int_equal(chmod(path, 0644), 0);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	assert_int_equal(pwrite(fd, "X", 1, 0), 1);
	close(fd);
	assert_int_equal(img_registry_verify(r, id, &e), -EBADMSG);
	img_registry_free(r);
}

static int count_cb(const ImgLayer *l, void *ud)
{
	(*(int *)ud)++;
	return 0;
}

static int nlayers(ImgRegistry *r)
{
	int n = 0;
	assert_int_equal(img_registry_list(r, count_cb, &n, NULL), 0);
	return n;
}

static void test_overlays_refs_gc(void **state)
{
	FlError e = { 0 };
	ImgRegistry *r = NULL;
	assert_int_equal(img_registry_open(g_reg, &r, &e), 0);
	make_raw(P("a.img"), 1);
	char base[IMG_ID_SIZE], snap[IMG_ID_SIZE], act[IMG_ID_SIZE], br[IMG_ID_SIZE];
	assert_int_equal(img_registry_import(r, P("a.img"), "tiny", "image:tiny", base, &e), 0);
	/* sandbox: active overlay on the base */
	assert_int_equal(img_registry_new_overlay(r, base, "sandbox-1", 0, snap, &e), 0);
	ImgLayer l;
	assert_int_equal(img_registry_layer_info(r, snap, &l, &e), 0);
	assert_int_equal(l.state, IMG_LAYER_ACTIVE);
	assert_int_equal(l.kind, IMG_LAYER_OVERLAY);
	assert_string_equal(l.parent, base);
	assert_int_equal(l.virtual_size, 4 << 20);
	assert_string_not_equal(snap, base);
	/* The overlay's chain resolves through the relative backing name. */
	char path[IMG_PATH_MAX];
	assert_int_equal(img_registry_layer_path(r, snap, path, sizeof(path), &e), 0);
	ImgChain *c = NULL;
	assert_int_equal(img_chain_resolve(path, IMG_FMT_QCOW2, 0, &c, &e), 0);
	assert_int_equal(img_chain_length(c), 2);
	assert_int_equal(img_chain_layer(c, 1)->info.format, IMG_FMT_RAW);
	img_chain_free(c);
	/* snapshot sequence: new overlay on the still-active layer, then freeze it */
	assert_int_equal(img_registry_new_overlay(r, snap, "sandbox-1", 0, act, &e), 0);
	assert_int_equal(img_registry_freeze(r, snap, IMG_FREEZE_HASH, &e), 0);
	assert_int_equal(img_registry_freeze(r, snap, 0, &e), 0); /* idempotent */
	assert_int_equal(img_registry_layer_info(r, snap, &l, &e), 0);
	assert_int_equal(l.state, IMG_LAYER_FROZEN);
	assert_true(l.sha256[0]);
	assert_true(l.size > 0);
	assert_int_equal(img_registry_verify(r, snap, &e), 0);
	assert_int_equal(img_registry_ref(r, snap, "snapshot-1", &e), 0);
	assert_int_equal(img_registry_unref(r, snap, "sandbox-1", &e), 0);
	assert_int_equal(img_registry_unref(r, snap, "sandbox-1", &e), 0); /* idempotent */
	/* hot-path allocation without fsyncs: same result */
	char fast[IMG_ID_SIZE];
	assert_int_equal(img_registry_new_overlay_flags(r, base, "sandbox-3", 0, 0x80, fast, &e), -EINVAL);
	assert_int_equal(img_registry_new_overlay_flags(r, base, "sandbox-3", 0, IMG_CREATE_NO_SYNC, fast, &e), 0);
	assert_int_equal(img_registry_refcount(r, fast, &e), 1);
	assert_int_equal(img_registry_layer_path(r, fast, path, sizeof(path), &e), 0);
	assert_int_equal(img_chain_resolve(path, IMG_FMT_QCOW2, 0, &c, &e), 0);
	assert_int_equal(img_chain_length(c), 2);
	img_chain_free(c);
	assert_int_equal(img_registry_freeze(r, fast, 0, &e), 0);
	assert_int_equal(img_registry_unref(r, fast, "sandbox-3", &e), 0);
	unsigned gone = 0;
	assert_int_equal(img_registry_gc(r, &gone, &e), 0);
	assert_int_equal(gone, 1);
	/* a branch from the snapshot */
	assert_int_equal(img_registry_new_overlay(r, snap, "sandbox-2", 0, br, &e), 0);
	assert_int_equal(img_registry_children(r, snap, &e), 2);
	assert_int_equal(img_registry_children(r, base, &e), 1);
	assert_int_equal(nlayers(r), 4);

	unsigned removed = 99;
	assert_int_equal(img_registry_gc(r, &removed, &e), 0);
	assert_int_equal(removed, 0);

	/* snapshot deleted but two sandboxes still use it: nothing goes */
	assert_int_equal(img_registry_unref(r, snap, "snapshot-1", &e), 0);
	assert_int_equal(img_registry_refcount(r, snap, &e), 0);
	assert_int_equal(img_registry_gc(r, &removed, &e), 0);
	assert_int_equal(removed, 0);
	/* sandbox-1 destroyed: its active layer goes, the snapshot stays for sandbox-2 */
	assert_int_equal(img_registry_unref(r, act, "sandbox-1", &e), 0);
	assert_int_equal(img_registry_gc(r, &removed, &e), 0);
	assert_int_equal(removed, 1);
	assert_int_equal(img_registry_layer_info(r, act, &l, &e), -ENOENT);
	assert_int_equal(img_registry_layer_info(r, snap, &l, &e), 0);
	/* sandbox-2 destroyed: branch and snapshot go; the base stays (image:tiny) */
	assert_int_equal(img_registry_unref(r, br, "sandbox-2", &e), 0);
	assert_int_equal(img_registry_gc(r, &removed, &e), 0);
	assert_int_equal(removed, 2);
	assert_int_equal(nlayers(r), 1);
	assert_int_equal(img_registry_unref(r, base, "image:tiny", &e), 0);
	assert_int_equal(img_registry_gc(r, &removed, &e), 0);
	assert_int_equal(removed, 1);
	assert_int_equal(nlayers(r), 0);
	assert_false(exists(P("images/refs/%s", base)));
	img_registry_free(r);
}

static void test_persistence_and_crash_leftovers(void **state)
{
	FlError e = { 0 };
	ImgRegistry *r = NULL;
	assert_int_equal(img_registry_open(g_reg, &r, &e), 0);
	make_raw(P("a.img"), 2);
	char base[IMG_ID_SIZE], ov[IMG_ID_SIZE];
	assert_int_equal(img_registry_import(r, P("a.img"), NULL, "image:x", base, &e), 0);
	assert_int_equal(img_registry_new_overlay(r, base, "sandbox-9", 12, ov, &e), 0);
	img_registry_free(r);

	/* Simulate crashes: a staging dir of a dead process, a half-deleted
	 * layer, and references recorded for a layer that was never published. */
	assert_int_equal(mkdir(P("images/layers/.staging-deadbeef"), 0755), 0);
	int fd = open(P("images/layers/.staging-deadbeef/disk"), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	close(fd);
	fd = open(P("images/layers/.staging-deadbeef/lock"), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	close(fd);
	assert_int_equal(mkdir(P("images/layers/.dead-1234"), 0755), 0);
	const char *ghost = "abababababababababababababababababababababababababababababababab";
	assert_int_equal(mkdir(P("images/refs/%s", ghost), 0755), 0);
	fd = open(P("images/refs/%s/sandbox-x", ghost), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	close(fd);
	/* a live staging dir (lock held by a child process) must survive */
	assert_int_equal(mkdir(P("images/layers/.staging-alive"), 0755), 0);
	int lk = open(P("images/layers/.staging-alive/lock"), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	int sync_pipe[2];
	assert_int_equal(pipe(sync_pipe), 0);
	pid_t pid = fork();
	if (pid == 0) {
		flock(lk, LOCK_EX);
		char ch = 1;
		if (write(sync_pipe[1], &ch, 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	char ch;
	assert_int_equal(read(sync_pipe[0], &ch, 1), 1);
	close(lk);

	/* Restart: the registry is as it was. */
	assert_int_equal(img_registry_open(g_reg, &r, &e), 0);
	assert_false(exists(P("images/layers/.staging-deadbeef")));
	assert_false(exists(P("images/layers/.dead-1234")));
	assert_true(exists(P("images/layers/.staging-alive")));
	assert_int_equal(nlayers(r), 2);
	assert_int_equal(img_registry_refcount(r, base, &e), 1);
	assert_int_equal(img_registry_refcount(r, ov, &e), 1);
	ImgLayer l;
	assert_int_equal(img_registry_layer_info(r, ov, &l, &e), 0);
	assert_int_equal(l.state, IMG_LAYER_ACTIVE);
	unsigned removed;
	assert_int_equal(img_registry_gc(r, &removed, &e), 0);
	assert_int_equal(removed, 0);
	assert_false(exists(P("images/refs/%s", ghost)));
	assert_int_equal(img_registry_ref(r, ghost, "x", &e), -ENOENT);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	assert_int_equal(img_registry_gc(r, &removed, &e), 0);
	assert_false(exists(P("images/layers/.staging-alive")));

	/* Malformed metadata is reported and never deleted by gc. */
	fd = open(P("images/layers/%s/meta", ov), O_WRONLY | O_TRUNC | O_CLOEXEC);
	assert_int_equal(write(fd, "id=zz\n", 6), 6);
	close(fd);
	assert_int_equal(img_registry_layer_info(r, ov, &l, &e), -EBADMSG);
	assert_int_equal(img_registry_unref(r, ov, "sandbox-9", &e), 0);
	assert_int_equal(img_registry_unref(r, base, "image:x", &e), 0);
	/* gc refuses to guess: the broken layer may depend on the base */
	assert_int_equal(img_registry_gc(r, &removed, &e), -EBADMSG);
	assert_non_null(strstr(e.msg, ov));
	assert_true(exists(P("images/layers/%s/disk", ov)));
	assert_true(exists(P("images/layers/%s/disk", base)));
	img_registry_free(r);
}

static void test_concurrent_processes(void **state)
{
	/* Two processes adding references and collecting garbage at the same
	 * time never lose a reference nor delete a referenced layer. */
	FlError e = { 0 };
	ImgRegistry *r = NULL;
	assert_int_equal(img_registry_open(g_reg, &r, &e), 0);
	make_raw(P("a.img"), 3);
	char base[IMG_ID_SIZE];
	assert_int_equal(img_registry_import(r, P("a.img"), NULL, "image:y", base, &e), 0);
	img_registry_free(r);
	pid_t pid = fork();
	if (pid == 0) {
		ImgRegistry *c = NULL;
		if (img_registry_open(g_reg, &c, NULL) < 0)
			_exit(1);
		for (int i = 0; i < 30; i++)
			if (img_registry_gc(c, NULL, NULL) < 0)
				_exit(2);
		img_registry_free(c);
		_exit(0);
	}
	assert_int_equal(img_registry_open(g_reg, &r, &e), 0);
	char ids[20][IMG_ID_SIZE];
	for (int i = 0; i < 20; i++) {
		char h[32];
		snprintf(h, sizeof(h), "sandbox-%d", i);
		assert_int_equal(img_registry_new_overlay(r, base, h, 0, ids[i], &e), 0);
	}
	int status;
	waitpid(pid, &status, 0);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(nlayers(r), 21);
	for (int i = 0; i < 20; i++)
		assert_int_equal(img_registry_refcount(r, ids[i], &e), 1);
	img_registry_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_import_ids, setup, teardown),
		cmocka_unit_test_setup_teardown(test_overlays_refs_gc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_persistence_and_crash_leftovers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_processes, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
