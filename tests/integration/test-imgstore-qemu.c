// SPDX-License-Identifier: MIT
/*
 * imgstore against the real QEMU tools: overlays we write natively must be
 * clean for `qemu-img check`, readable by `qemu-img info --backing-chain`,
 * and usable by a real qemu-system-x86_64 (TCG, paused, -blockdev) whose
 * writes land in the overlay and never in the backing file. img_flatten()
 * must equal `qemu-img convert`, img_copy_file() must equal its source,
 * registry chains must be valid QEMU chains, and a real migration stream
 * saved with img_stream_to_file() must load back through
 * img_stream_from_file().
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
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "imgstore.h"

static char g_dir[256];

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(p);
}

static int setup(void **state)
{
	snprintf(g_dir, sizeof(g_dir), "/tmp/test-imgqemu-XXXXXX");
	assert_non_null(mkdtemp(g_dir));
	return 0;
}

static int teardown(void **state)
{
	nftw(g_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

static char *P(const char *name)
{
	static char buf[8][600];
	static int k;
	char *b = buf[k++ % 8];
	snprintf(b, 600, "%s/%s", g_dir, name);
	return b;
}

/* Runs a shell command in the test directory; returns its exit status. */
__attribute__((format(printf, 1, 2))) static int sh(const char *fmt, ...)
{
	char cmd[4096], full[4400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	snprintf(full, sizeof(full), "cd '%s' && { %s ; } >>'%s/log' 2>&1", g_dir, cmd, g_dir);
	int st = system(full);
	if (st != 0) {
		fprintf(stderr, "command failed (%d): %s\n", st, cmd);
		char tail[700];
		snprintf(tail, sizeof(tail), "tail -n 20 '%s/log' >&2", g_dir);
		if (system(tail) != 0)
			fprintf(stderr, "(no log)\n");
	}
	return st == -1 ? -1 : WEXITSTATUS(st);
}

/* Output of a shell command (malloc'ed, NUL-terminated). */
__attribute__((format(printf, 1, 2))) static char *sh_out(const char *fmt, ...)
{
	char cmd[4096], full[4400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	snprintf(full, sizeof(full), "cd '%s' && { %s ; } 2>&1", g_dir, cmd);
	FILE *f = popen(full, "r");
	assert_non_null(f);
	size_t cap = 1 << 16, n = 0;
	char *out = malloc(cap);
	size_t k;
	while ((k = fread(out + n, 1, cap - n - 1, f)) > 0) {
		n += k;
		if (n + 1 == cap) {
			cap *= 2;
			out = realloc(out, cap);
		}
	}
	out[n] = '\0';
	pclose(f);
	return out;
}

static void test_overlays_pass_qemu_img_check(void **state)
{
	FlError e = { 0 };
	assert_int_equal(sh("qemu-img create -q -f qcow2 base.qcow2 100M"), 0);
	assert_int_equal(sh("qemu-img create -q -f raw base.raw 33M"), 0);
	static const unsigned bits[] = { 0, 9, 12, 16, 20, 21 };
	for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++) {
		assert_int_equal(img_qcow2_create_overlay(P("ov.qcow2"), "base.qcow2", "qcow2", 0, bits[i], &e), 0);
		assert_int_equal(sh("qemu-img check -q ov.qcow2"), 0);
		assert_int_equal(img_qcow2_create_overlay(P("ovr.qcow2"), P("base.raw"), NULL, 0, bits[i], &e), 0);
		assert_int_equal(sh("qemu-img check -q ovr.qcow2"), 0);
		assert_int_equal(img_qcow2_create_overlay(P("solo.qcow2"), NULL, NULL, 5ull << 30, bits[i], &e), 0);
		assert_int_equal(sh("qemu-img check -q solo.qcow2"), 0);
	}
	/* A large sparse standalone image needs several refcount-table entries' worth. */
	assert_int_equal(img_qcow2_create_overlay(P("huge.qcow2"), NULL, NULL, 1ull << 44, 21, &e), 0);
	assert_int_equal(sh("qemu-img check -q huge.qcow2"), 0);
	assert_int_equal(img_qcow2_create_overlay(P("ov.qcow2"), "base.qcow2", NULL, 0, 0, &e), 0);
	assert_int_equal(img_qcow2_create_overlay(P("ov2.qcow2"), "ov.qcow2", NULL, 200 << 20, 0, &e), 0);
	char *out = sh_out("qemu-img info --backing-chain --output=json ov2.qcow2");
	assert_non_null(strstr(out, "\"backing-filename\": \"ov.qcow2\""));
	assert_non_null(strstr(out, "\"backing-filename\": \"base.qcow2\""));
	assert_non_null(strstr(out, "\"backing-filename-format\": \"qcow2\""));
	assert_non_null(strstr(out, "\"virtual-size\": 209715200"));
	free(out);
	/* And QEMU's view of what we parse agrees with ours. */
	ImgInfo in;
	assert_int_equal(sh("qemu-img create -q -f qcow2 -o cluster_size=4096 -b ov2.qcow2 -F qcow2 q.qcow2"), 0);
	assert_int_equal(img_qcow2_info(P("q.qcow2"), &in, &e), 0);
	assert_int_equal(in.cluster_size, 4096);
	assert_int_equal(in.virtual_size, 200 << 20);
	assert_string_equal(in.backing_file, "ov2.qcow2");
	assert_string_equal(in.backing_format, "qcow2");
	assert_int_equal(sh("qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 1G"), 0);
	assert_int_equal(img_qcow2_info(P("v2.qcow2"), &in, &e), 0);
	assert_int_equal(in.version, 2);
}

static void test_qemu_writes_land_in_overlay(void **state)
{
	FlError e = { 0 };
	assert_int_equal(sh("qemu-img create -q -f qcow2 base.qcow2 64M && "
			    "qemu-io -c 'write -P 0x11 0 4M' base.qcow2 >/dev/null"),
			 0);
	assert_int_equal(img_qcow2_create_overlay(P("ov.qcow2"), "base.qcow2", "qcow2", 0, 0, &e), 0);
	/* A paused q35 VM with the overlay as a virtio-blk disk; QMP over stdio
	 * writes through QEMU's block layer (HMP qemu-io), then quits. */
	FILE *f = fopen(P("qmp.in"), "w");
	assert_non_null(f);
	fputs("{\"execute\":\"qmp_capabilities\"}\n"
	      "{\"execute\":\"query-named-block-nodes\"}\n"
	      "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":"
	      "\"qemu-io d0 \\\"write -P 0x5a 1M 64k\\\"\"}}\n"
	      "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":"
	      "\"qemu-io d0 \\\"write -P 0x6b 50M 4k\\\"\"}}\n"
	      "{\"execute\":\"quit\"}\n",
	      f);
	fclose(f);
	char *out = sh_out("timeout 120 qemu-system-x86_64 -accel tcg -M q35 -m 64 -nodefaults "
			   "-no-user-config -display none -S "
			   "-blockdev driver=qcow2,node-name=d0,file.driver=file,file.filename=ov.qcow2 "
			   "-device virtio-blk-pci,drive=d0,share-rw=on -qmp stdio < qmp.in; echo rc=$?");
	assert_non_null(strstr(out, "\"QMP\""));
	assert_non_null(strstr(out, "ov.qcow2"));
	assert_non_null(strstr(out, "base.qcow2")); /* QEMU opened our backing chain */
	assert_null(strstr(out, "\"error\""));
	assert_non_null(strstr(out, "wrote 65536/65536 bytes at offset 1048576"));
	assert_non_null(strstr(out, "wrote 4096/4096 bytes at offset 52428800"));
	assert_non_null(strstr(out, "rc=0"));
	free(out);
	/* The writes are in the overlay, the base is untouched, both are clean. */
	assert_int_equal(sh("qemu-img check -q ov.qcow2"), 0);
	assert_int_equal(sh("qemu-img check -q base.qcow2"), 0);
	char *rd = sh_out("qemu-io -r -c 'read -P 0x5a 1M 64k' -c 'read -P 0x6b 50M 4k' "
			  "-c 'read -P 0x11 0 1M' -c 'read -P 0x11 1088k 2M' ov.qcow2");
	assert_null(strstr(rd, "Pattern verification failed"));
	free(rd);
	rd = sh_out("qemu-io -r -c 'read -P 0x11 1M 64k' -c 'read -P 0 50M 4k' base.qcow2");
	assert_null(strstr(rd, "Pattern verification failed"));
	free(rd);
	/* Our parser agrees the result is a sane image; its map shows only the overlay's data. */
	ImgChain *c = NULL;
	assert_int_equal(img_chain_resolve(P("ov.qcow2"), IMG_FMT_QCOW2, 0, &c, &e), 0);
	assert_int_equal(img_chain_length(c), 2);
	assert_false(img_chain_layer(c, 0)->info.dirty);
	img_chain_free(c);
	/* qemu-io directly on a chain of our overlays, too */
	assert_int_equal(img_qcow2_create_overlay(P("ov2.qcow2"), "ov.qcow2", NULL, 0, 12, &e), 0);
	assert_int_equal(sh("qemu-io -c 'write -P 0x7c 3M 4k' ov2.qcow2 >/dev/null"), 0);
	assert_int_equal(sh("qemu-img check -q ov2.qcow2"), 0);
	rd = sh_out("qemu-io -r -c 'read -P 0x7c 3M 4k' -c 'read -P 0x5a 1M 64k' ov2.qcow2; "
		    "qemu-io -r -c 'read -P 0x11 3M 4k' ov.qcow2");
	assert_null(strstr(rd, "Pattern verification failed"));
	assert_null(strstr(rd, "rror"));
	free(rd);
}

static void make_chain(void)
{
	FlError e = { 0 };
	/* base (64K clusters): data, zero clusters, partial clusters */
	assert_int_equal(sh("qemu-img create -q -f qcow2 base.qcow2 64M && "
			    "qemu-io -c 'write -P 0x11 0 4M' -c 'write -P 0x22 10M 1M' "
			    "-c 'write -z 30M 1M' -c 'write -P 0x23 63M 1M' base.qcow2 >/dev/null"),
			 0);
	/* mid: ours, 4K clusters; zero over base data, partial writes */
	assert_int_equal(img_qcow2_create_overlay(P("mid.qcow2"), "base.qcow2", "qcow2", 0, 12, &e), 0);
	assert_int_equal(sh("qemu-io -c 'write -P 0x33 1M 1M' -c 'write -z 10M 64k' "
			    "-c 'write -P 0x44 40M 3k' -c 'write -P 0x45 2047k 3k' mid.qcow2 >/dev/null"),
			 0);
	/* top: ours, larger than its backing (reads past the backing's end are zeros) */
	assert_int_equal(img_qcow2_create_overlay(P("top.qcow2"), "mid.qcow2", NULL, 80 << 20, 0, &e), 0);
	assert_int_equal(sh("qemu-io -c 'write -P 0x55 65M 100k' -c 'write -P 0x66 3M 7k' "
			    "-c 'write -z 0 64k' top.qcow2 >/dev/null"),
			 0);
}

static void test_flatten_matches_convert(void **state)
{
	FlError e = { 0 };
	make_chain();
	assert_int_equal(sh("qemu-img convert -O raw top.qcow2 ref.raw"), 0);
	assert_int_equal(img_flatten(P("top.qcow2"), IMG_FMT_UNKNOWN, P("flat.raw"), IMG_FMT_RAW, NULL, &e), 0);
	assert_int_equal(sh("qemu-img compare -q -f raw -F raw ref.raw flat.raw"), 0);
	assert_int_equal(sh("cmp -s ref.raw flat.raw"), 0);
	ImgIoOptions o = { .chunk_size = 192 << 10, .queue_depth = 3 };
	assert_int_equal(img_flatten(P("top.qcow2"), IMG_FMT_QCOW2, P("flat.qcow2"), IMG_FMT_QCOW2, &o, &e), 0);
	assert_int_equal(sh("qemu-img check -q flat.qcow2"), 0);
	assert_int_equal(sh("qemu-img compare -q -f raw -F qcow2 ref.raw flat.qcow2"), 0);
	char *out = sh_out("qemu-img info --output=json flat.qcow2");
	assert_null(strstr(out, "backing"));
	free(out);
	/* standalone: much smaller than the raw image */
	struct stat st;
	assert_int_equal(stat(P("flat.qcow2"), &st), 0);
	assert_true(st.st_size < (16 << 20));
	assert_int_equal(stat(P("flat.raw"), &st), 0);
	assert_int_equal(st.st_size, 80 << 20);
	assert_true(st.st_blocks * 512 < (16 << 20)); /* sparse */
	/* A raw base at the bottom of the chain. */
	assert_int_equal(sh("qemu-img convert -O raw base.qcow2 base.raw"), 0);
	assert_int_equal(img_qcow2_create_overlay(P("onraw.qcow2"), "base.raw", "raw", 0, 0, &e), 0);
	assert_int_equal(sh("qemu-io -c 'write -P 0x77 5M 5k' onraw.qcow2 >/dev/null"), 0);
	assert_int_equal(img_flatten(P("onraw.qcow2"), IMG_FMT_QCOW2, P("f2.raw"), IMG_FMT_RAW, NULL, &e), 0);
	assert_int_equal(sh("qemu-img compare -q onraw.qcow2 f2.raw"), 0);
}

static void test_flatten_big_sparse_chain(void **state)
{
	/* 1 TiB virtual, a few MiB of data: flatten must skip the unallocated
	 * ranges through the L1 tables instead of reading a terabyte of zeros. */
	FlError e = { 0 };
	assert_int_equal(sh("qemu-img create -q -f qcow2 big.qcow2 1T && "
			    "qemu-io -c 'write -P 0x21 0 1M' -c 'write -P 0x22 700G 64k' big.qcow2 >/dev/null"),
			 0);
	assert_int_equal(img_qcow2_create_overlay(P("bigtop.qcow2"), "big.qcow2", NULL, 0, 0, &e), 0);
	assert_int_equal(sh("qemu-io -c 'write -P 0x23 1023G 8k' -c 'write -P 0x24 4k 4k' bigtop.qcow2 >/dev/null"), 0);
	time_t t0 = time(NULL);
	assert_int_equal(img_flatten(P("bigtop.qcow2"), IMG_FMT_QCOW2, P("bigflat.qcow2"), IMG_FMT_QCOW2, NULL, &e), 0);
	assert_int_equal(img_flatten(P("bigtop.qcow2"), IMG_FMT_QCOW2, P("bigflat.raw"), IMG_FMT_RAW, NULL, &e), 0);
	assert_true(time(NULL) - t0 < 30);
	assert_int_equal(sh("qemu-img check -q bigflat.qcow2"), 0);
	assert_int_equal(sh("qemu-img compare -q bigtop.qcow2 bigflat.qcow2"), 0);
	assert_int_equal(sh("qemu-img compare -q -F raw bigtop.qcow2 bigflat.raw"), 0);
	struct stat st;
	assert_int_equal(stat(P("bigflat.raw"), &st), 0);
	assert_int_equal((uint64_t)st.st_size, 1ull << 40);
	assert_true(st.st_blocks * 512 < (64 << 20));
}

static void test_flatten_refuses_compressed(void **state)
{
	FlError e = { 0 };
	assert_int_equal(sh("qemu-img create -q -f qcow2 a.qcow2 8M && "
			    "qemu-io -c 'write -P 0x11 0 1M' a.qcow2 >/dev/null && "
			    "qemu-img convert -c -O qcow2 a.qcow2 c.qcow2"),
			 0);
	assert_int_equal(img_flatten(P("c.qcow2"), IMG_FMT_QCOW2, P("out.raw"), IMG_FMT_RAW, NULL, &e), -ENOTSUP);
	assert_non_null(strstr(e.msg, "compressed"));
	assert_non_null(strstr(e.msg, "c.qcow2"));
	assert_int_equal(access(P("out.raw"), F_OK), -1);
	char *ls = sh_out("ls");
	assert_null(strstr(ls, ".tmp."));
	free(ls);
}

static void test_copy_equals_source(void **state)
{
	FlError e = { 0 };
	make_chain();
	assert_int_equal(sh("qemu-img convert -O qcow2 top.qcow2 img.qcow2 && "
			    "head -c 3000000 /dev/urandom > rnd && "
			    "qemu-img convert -O raw top.qcow2 img.raw && "
			    "dd if=rnd of=img.raw bs=1k seek=7000 conv=notrunc status=none"),
			 0);
	uint64_t bytes = 0;
	assert_int_equal(img_copy_file(P("img.qcow2"), P("copy.qcow2"), NULL, &bytes, &e), 0);
	assert_int_equal(sh("cmp -s img.qcow2 copy.qcow2 && qemu-img compare -q img.qcow2 copy.qcow2 && "
			    "qemu-img check -q copy.qcow2"),
			 0);
	assert_int_equal(img_copy_file(P("img.raw"), P("copy.raw"), NULL, &bytes, &e), 0);
	assert_int_equal(sh("cmp -s img.raw copy.raw"), 0);
}

static void test_registry_chain_is_a_qemu_chain(void **state)
{
	FlError e = { 0 };
	assert_int_equal(sh("qemu-img create -q -f qcow2 img.qcow2 32M && "
			    "qemu-io -c 'write -P 0x01 0 1M' img.qcow2 >/dev/null"),
			 0);
	ImgRegistry *r = NULL;
	char reg[700];
	snprintf(reg, sizeof(reg), "%s/images", g_dir);
	assert_int_equal(img_registry_open(reg, &r, &e), 0);
	char base[IMG_ID_SIZE], l1[IMG_ID_SIZE], l2[IMG_ID_SIZE];
	assert_int_equal(img_registry_import(r, P("img.qcow2"), "tiny", "image:tiny", base, &e), 0);
	assert_int_equal(img_registry_new_overlay(r, base, "sandbox-1", 0, l1, &e), 0);
	char p1[IMG_PATH_MAX], p2[IMG_PATH_MAX];
	assert_int_equal(img_registry_layer_path(r, l1, p1, sizeof(p1), &e), 0);
	assert_int_equal(sh("qemu-io -c 'write -P 0x02 512k 4k' '%s' >/dev/null", p1), 0);
	assert_int_equal(img_registry_new_overlay(r, l1, "sandbox-1", 0, l2, &e), 0);
	assert_int_equal(img_registry_freeze(r, l1, 0, &e), 0);
	assert_int_equal(img_registry_layer_path(r, l2, p2, sizeof(p2), &e), 0);
	assert_int_equal(sh("qemu-io -c 'write -P 0x03 0 4k' '%s' >/dev/null", p2), 0);
	assert_int_equal(sh("qemu-img check -q '%s' && qemu-img info --backing-chain '%s' | grep -c '^image:' | grep -qx 3", p2, p2), 0);
	char *rd = sh_out("qemu-io -r -c 'read -P 0x03 0 4k' -c 'read -P 0x02 512k 4k' "
			  "-c 'read -P 0x01 516k 4k' '%s'", p2);
	assert_null(strstr(rd, "Pattern verification failed"));
	assert_null(strstr(rd, "rror"));
	free(rd);
	/* the frozen layer is read-only for QEMU too */
	assert_int_equal(sh("chmod 0444 '%s' && ! qemu-io -c 'write 0 4k' '%s' 2>/dev/null >/dev/null "
			    "|| test $(id -u) = 0", p1, p1), 0);
	img_registry_free(r);
}

/* ---- A QEMU driven over QMP on its stdin/stdout (tests only) ---------- */

typedef struct Qemu {
	pid_t pid;
	int in, out; /* our ends: QEMU's stdin, QEMU's stdout */
	char buf[1 << 16];
	size_t fill;
} Qemu;

static void qemu_start(Qemu *q, const char *extra, int inherit_fd)
{
	int pin[2], pout[2];
	assert_int_equal(pipe2(pin, O_CLOEXEC), 0);
	assert_int_equal(pipe2(pout, O_CLOEXEC), 0);
	q->fill = 0;
	q->pid = fork();
	assert_true(q->pid >= 0);
	if (q->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* no stray QEMU if a test fails */
		dup2(pin[0], 0);
		dup2(pout[1], 1);
		if (inherit_fd >= 0)
			fcntl(inherit_fd, F_SETFD, 0);
		char cmd[2048];
		snprintf(cmd, sizeof(cmd),
			 "exec qemu-system-x86_64 -accel tcg -M q35 -m 64 -nodefaults -no-user-config "
			 "-display none -S -qmp stdio %s 2>>'%s/log'", extra, g_dir);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(pin[0]);
	close(pout[1]);
	q->in = pin[1];
	q->out = pout[0];
}

/* Next line from QEMU (NUL-terminated, in q->buf), or NULL after timeout_ms. */
static char *qemu_line(Qemu *q, int timeout_ms)
{
	static char line[1 << 16];
	for (;;) {
		char *nl = memchr(q->buf, '\n', q->fill);
		if (nl) {
			size_t n = (size_t)(nl - q->buf);
			memcpy(line, q->buf, n);
			line[n] = '\0';
			memmove(q->buf, nl + 1, q->fill - n - 1);
			q->fill -= n + 1;
			return line;
		}
		struct pollfd pfd = { .fd = q->out, .events = POLLIN };
		if (poll(&pfd, 1, timeout_ms) <= 0 || q->fill == sizeof(q->buf))
			return NULL;
		ssize_t k = read(q->out, q->buf + q->fill, sizeof(q->buf) - q->fill);
		if (k <= 0)
			return NULL;
		q->fill += (size_t)k;
	}
}

/* Sends one command and returns its reply line (events before it are skipped;
 * the line stays valid until the next call). */
static char *qemu_cmd(Qemu *q, const char *json)
{
	assert_int_equal(write(q->in, json, strlen(json)), (ssize_t)strlen(json));
	assert_int_equal(write(q->in, "\n", 1), 1);
	for (;;) {
		char *l = qemu_line(q, 60000);
		assert_non_null(l);
		if (strstr(l, "\"return\"") || strstr(l, "\"error\""))
			return l;
	}
}

/* Waits for a MIGRATION event whose status is status (the real event, not polling). */
static bool qemu_wait_migration(Qemu *q, const char *status)
{
	char want[64];
	snprintf(want, sizeof(want), "\"status\": \"%s\"", status);
	for (;;) {
		char *l = qemu_line(q, 120000);
		if (!l)
			return false;
		if (strstr(l, "\"MIGRATION\"") && strstr(l, want))
			return true;
		if (strstr(l, "\"MIGRATION\"") && strstr(l, "\"failed\""))
			return false;
	}
}

static void qemu_quit(Qemu *q)
{
	(void)!write(q->in, "{\"execute\":\"quit\"}\n", 20);
	close(q->in);
	int st;
	assert_int_equal(waitpid(q->pid, &st, 0), q->pid);
	close(q->out);
}

static void test_ram_state_roundtrip_with_qemu(void **state)
{
	/* Save: QEMU migrates a paused VM into a pipe; img_stream_to_file()
	 * writes it to a file. Restore: a fresh QEMU with -incoming defer loads
	 * it from a pipe fed by img_stream_from_file(). QEMU validates the
	 * stream, so a completed incoming migration means the bytes survived. */
	FlError e = { 0 };
	assert_int_equal(mkfifo(P("mig.fifo"), 0600), 0);
	pid_t saver = fork();
	if (saver == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int fd = open(P("mig.fifo"), O_RDONLY | O_CLOEXEC);
		uint64_t bytes = 0;
		int r = fd < 0 ? -1 : img_stream_to_file(fd, P("ram.state"), 1ull << 30, NULL, &bytes, NULL);
		_exit(r == 0 && bytes > 0 ? 0 : 1);
	}
	Qemu a;
	qemu_start(&a, "", -1);
	assert_non_null(qemu_line(&a, 60000)); /* greeting */
	assert_non_null(strstr(qemu_cmd(&a, "{\"execute\":\"qmp_capabilities\"}"), "return"));
	assert_non_null(strstr(qemu_cmd(&a, "{\"execute\":\"migrate-set-capabilities\",\"arguments\":"
					     "{\"capabilities\":[{\"capability\":\"events\",\"state\":true}]}}"),
			       "return"));
	char src_status[64];
	char *st0 = strstr(qemu_cmd(&a, "{\"execute\":\"query-status\"}"), "\"status\": \"");
	assert_non_null(st0);
	snprintf(src_status, sizeof(src_status), "%.*s", (int)(strchr(st0 + 11, '"') - st0 + 1), st0);
	char cmd[1200];
	snprintf(cmd, sizeof(cmd),
		 "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"exec:cat > %s\"}}", P("mig.fifo"));
	assert_non_null(strstr(qemu_cmd(&a, cmd), "return"));
	assert_true(qemu_wait_migration(&a, "completed"));
	qemu_quit(&a);
	int st;
	assert_int_equal(waitpid(saver, &st, 0), saver);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	struct stat sb;
	assert_int_equal(stat(P("ram.state"), &sb), 0);
	assert_true(sb.st_size > 100000);

	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	Qemu b;
	char extra[64];
	snprintf(extra, sizeof(extra), "-incoming defer");
	qemu_start(&b, extra, p[0]);
	close(p[0]);
	assert_non_null(qemu_line(&b, 60000));
	assert_non_null(strstr(qemu_cmd(&b, "{\"execute\":\"qmp_capabilities\"}"), "return"));
	assert_non_null(strstr(qemu_cmd(&b, "{\"execute\":\"migrate-set-capabilities\",\"arguments\":"
					     "{\"capabilities\":[{\"capability\":\"events\",\"state\":true}]}}"),
			       "return"));
	snprintf(cmd, sizeof(cmd), "{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"fd:%d\"}}", p[0]);
	assert_non_null(strstr(qemu_cmd(&b, cmd), "return"));
	uint64_t bytes = 0;
	assert_int_equal(img_stream_from_file(P("ram.state"), p[1], NULL, &bytes, &e), 0);
	close(p[1]);
	assert_int_equal(bytes, (uint64_t)sb.st_size);
	assert_true(qemu_wait_migration(&b, "completed"));
	char *status = qemu_cmd(&b, "{\"execute\":\"query-status\"}");
	/* The destination takes over the source's run state (paused before boot). */
	assert_non_null(strstr(status, src_status));
	assert_non_null(strstr(status, "\"running\": false"));
	qemu_quit(&b);
}

int main(void)
{
	if (system("command -v qemu-img >/dev/null && command -v qemu-system-x86_64 >/dev/null") != 0) {
		fprintf(stderr, "qemu-img/qemu-system-x86_64 missing (make deps)\n");
		return 1;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_overlays_pass_qemu_img_check, setup, teardown),
		cmocka_unit_test_setup_teardown(test_qemu_writes_land_in_overlay, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flatten_matches_convert, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flatten_big_sparse_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flatten_refuses_compressed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy_equals_source, setup, teardown),
		cmocka_unit_test_setup_teardown(test_registry_chain_is_a_qemu_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ram_state_roundtrip_with_qemu, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
