// SPDX-License-Identifier: MIT
/*
 * imgstore benchmarks (benchlib JSON lines), one per argument:
 *
 *   overlay_create  native qcow2 overlay creation (img_qcow2_create_overlay,
 *                   durable: fsync + rename + dir fsync) vs the baseline
 *                   `qemu-img create -f qcow2 -b BASE -F qcow2` fork+exec
 *                   (which does not fsync); overlay_create_nosync is the
 *                   hot-path variant (IMG_CREATE_NO_SYNC). Microseconds.
 *   bulk_copy       img_copy_file (io_uring, O_DIRECT output) vs `cp` (which
 *                   uses copy_file_range, an in-kernel page-cache copy) on a
 *                   1 GiB file of real (non-zero, incompressible) data
 *                   (256 MiB with --quick). bulk_copy: neither side fsyncs;
 *                   bulk_copy_fsync: ours with its fsync vs cp + fsync of the
 *                   copy (durable import, the case that matters). The page
 *                   cache cannot be dropped here, so the runs alternate
 *                   (ours, cp, ours+fsync, cp+fsync, ...) after one warm-up
 *                   round, and every destination is deleted before the next
 *                   run so all see the same cache state. Milliseconds.
 *   flatten         img_flatten to qcow2 vs `qemu-img convert -O qcow2` of a
 *                   two-layer chain (256 MiB virtual, ~96 MiB of data, 64 MiB
 *                   with --quick). Alternating, milliseconds.
 *
 * Scratch files live under build/bench-work/ (on disk, not tmpfs) and are
 * removed at exit. Progress goes to stderr; only result lines to stdout.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "benchlib.h"
#include "imgstore.h"

extern char **environ;

static char g_dir[512];

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(p);
}

static void cleanup(void)
{
	if (g_dir[0])
		nftw(g_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static char *P(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *P(const char *fmt, ...)
{
	static char buf[8][700];
	static int k;
	char *b = buf[k++ % 8];
	char rel[128];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(rel, sizeof(rel), fmt, ap);
	va_end(ap);
	snprintf(b, 700, "%s/%s", g_dir, rel);
	return b;
}

/* fork+exec argv quietly and wait; returns the exit status or -1. */
static int run(char *const argv[])
{
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	pid_t pid;
	int r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (r != 0)
		return -1;
	int st;
	if (waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static double ms_since(uint64_t t0) { return (double)(bench_now_ns() - t0) / 1e6; }

static int bench_overlay_create(void)
{
	FlError e = { 0 };
	char *base = strdup(P("base.qcow2"));
	char *args[] = { "qemu-img", "create", "-q", "-f", "qcow2", base, "10G", NULL };
	if (run(args) != 0) {
		fprintf(stderr, "overlay_create: qemu-img create failed\n");
		return 1;
	}
	size_t n = bench_iterations(300, 40);
	BenchSamples ours = { 0 }, theirs = { 0 }, nosync = { 0 };
	for (size_t i = 0; i < n + 5; i++) {
		char *ov = P("ov-%zu.qcow2", i), *q = strdup(P("q-%zu.qcow2", i));
		uint64_t t0 = bench_now_ns();
		if (img_qcow2_create_overlay(ov, base, "qcow2", 0, 0, &e) < 0) {
			fprintf(stderr, "overlay_create: %s\n", e.msg);
			return 1;
		}
		double a = (double)(bench_now_ns() - t0) / 1e3;
		unlink(ov);
		t0 = bench_now_ns();
		if (img_qcow2_create_overlay_flags(ov, base, "qcow2", 0, 0, IMG_CREATE_NO_SYNC, &e) < 0) {
			fprintf(stderr, "overlay_create: %s\n", e.msg);
			return 1;
		}
		double c = (double)(bench_now_ns() - t0) / 1e3;
		char *qa[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", q, NULL };
		t0 = bench_now_ns();
		if (run(qa) != 0) {
			fprintf(stderr, "overlay_create: qemu-img create -b failed\n");
			return 1;
		}
		double b = (double)(bench_now_ns() - t0) / 1e3;
		if (i >= 5) { /* warm-up */
			bench_add(&ours, a);
			bench_add(&nosync, c);
			bench_add(&theirs, b);
		}
		unlink(ov);
		unlink(q);
		free(q);
	}
	bench_report("overlay_create_qemu_img", "us", &theirs, NULL, NULL);
	bench_report("overlay_create", "us", &ours, "overlay_create_qemu_img", &theirs);
	bench_report("overlay_create_nosync", "us", &nosync, "overlay_create_qemu_img", &theirs);
	free(base);
	return 0;
}

/* Incompressible data (xorshift), so neither side can take shortcuts. */
static int make_data_file(const char *path, uint64_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	size_t chunk = 4 << 20;
	uint64_t *buf = malloc(chunk), x = 0x9e3779b97f4a7c15ull;
	for (uint64_t off = 0; off < size; off += chunk) {
		for (size_t i = 0; i < chunk / 8; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			buf[i] = x;
		}
		if (write(fd, buf, chunk) != (ssize_t)chunk) {
			free(buf);
			close(fd);
			return -EIO;
		}
	}
	free(buf);
	fsync(fd);
	close(fd);
	return 0;
}

static int bench_bulk_copy(void)
{
	FlError e = { 0 };
	uint64_t size = bench_quick() ? 256ull << 20 : 1ull << 30;
	char *src = strdup(P("src.img"));
	if (make_data_file(src, size) < 0) {
		fprintf(stderr, "bulk_copy: cannot create the source\n");
		return 1;
	}
	size_t n = bench_iterations(5, 3);
	BenchSamples ours = { 0 }, theirs = { 0 }, ours_sync = { 0 }, theirs_sync = { 0 };
	ImgIoOptions o = { .no_fsync = true };
	for (size_t i = 0; i < n + 1; i++) {
		char *d1 = P("copy-ours.img"), *d2 = strdup(P("copy-cp.img"));
		uint64_t t0 = bench_now_ns();
		if (img_copy_file(src, d1, &o, NULL, &e) < 0) {
			fprintf(stderr, "bulk_copy: %s\n", e.msg);
			return 1;
		}
		double a = ms_since(t0);
		unlink(d1);
		char *ca[] = { "cp", src, d2, NULL };
		t0 = bench_now_ns();
		if (run(ca) != 0) {
			fprintf(stderr, "bulk_copy: cp failed\n");
			return 1;
		}
		double b = ms_since(t0);
		unlink(d2);
		free(d2);
		/* Durable variant: ours with its fsync, cp followed by fsync. */
		d2 = strdup(P("copy-cp.img"));
		t0 = bench_now_ns();
		if (img_copy_file(src, d1, NULL, NULL, &e) < 0) {
			fprintf(stderr, "bulk_copy: %s\n", e.msg);
			return 1;
		}
		double c = ms_since(t0);
		unlink(d1);
		char *cb[] = { "cp", src, d2, NULL };
		t0 = bench_now_ns();
		int fd = -1;
		if (run(cb) != 0 || (fd = open(d2, O_RDONLY | O_CLOEXEC)) < 0 || fsync(fd) < 0) {
			fprintf(stderr, "bulk_copy: cp + fsync failed\n");
			return 1;
		}
		close(fd);
		double d = ms_since(t0);
		unlink(d2);
		free(d2);
		fprintf(stderr, "bulk_copy: run %zu: ours %.0f ms, cp %.0f ms; with fsync: ours %.0f ms, cp %.0f ms\n",
			i, a, b, c, d);
		if (i >= 1) {
			bench_add(&ours, a);
			bench_add(&theirs, b);
			bench_add(&ours_sync, c);
			bench_add(&theirs_sync, d);
		}
	}
	bench_report("bulk_copy_cp", "ms", &theirs, NULL, NULL);
	bench_report("bulk_copy", "ms", &ours, "bulk_copy_cp", &theirs);
	bench_report("bulk_copy_fsync_cp", "ms", &theirs_sync, NULL, NULL);
	bench_report("bulk_copy_fsync", "ms", &ours_sync, "bulk_copy_fsync_cp", &theirs_sync);
	free(src);
	return 0;
}

static int bench_flatten(void)
{
	FlError e = { 0 };
	char *base = strdup(P("fbase.qcow2")), *top = strdup(P("ftop.qcow2"));
	bool quick = bench_quick();
	/* base: 64 (or 32) MiB of data in 1 MiB runs every 2 MiB; top: scattered writes */
	char script[4096] = "", *s = script;
	unsigned runs = quick ? 32 : 64;
	for (unsigned i = 0; i < runs; i++)
		s += snprintf(s, sizeof(script) - (size_t)(s - script), "write -P %u %uM 1M\n",
			      i % 250 + 1, i * 2);
	FILE *f = fopen(P("base.io"), "w");
	fputs(script, f);
	fclose(f);
	s = script;
	for (unsigned i = 0; i < runs; i++)
		s += snprintf(s, sizeof(script) - (size_t)(s - script), "write -P %u %uk 64k\n",
			      i % 200 + 3, i * 3000 + 100);
	f = fopen(P("top.io"), "w");
	fputs(script, f);
	fclose(f);
	char cmd[2048];
	snprintf(cmd, sizeof(cmd),
		 "qemu-img create -q -f qcow2 '%s' 256M && qemu-io '%s' < '%s' >/dev/null && "
		 "qemu-img create -q -f qcow2 -b '%s' -F qcow2 '%s' && qemu-io '%s' < '%s' >/dev/null "
		 "&& dd if=/dev/urandom bs=1M count=%d 2>/dev/null | qemu-io -c 'write -s /dev/stdin 128M %dM' '%s' >/dev/null",
		 base, base, P("base.io"), base, top, top, P("top.io"), quick ? 32 : 32, 32, top);
	if (system(cmd) != 0) {
		/* qemu-io may not read a pipe with -s; fall back to plain writes */
		snprintf(cmd, sizeof(cmd),
			 "qemu-img create -q -f qcow2 '%s' 256M && qemu-io '%s' < '%s' >/dev/null && "
			 "qemu-img create -q -f qcow2 -b '%s' -F qcow2 '%s' && qemu-io '%s' < '%s' >/dev/null",
			 base, base, P("base.io"), base, top, top, P("top.io"));
		if (system(cmd) != 0) {
			fprintf(stderr, "flatten: cannot build the chain\n");
			return 1;
		}
	}
	size_t n = bench_iterations(7, 3);
	BenchSamples ours = { 0 }, theirs = { 0 };
	ImgIoOptions o = { .no_fsync = true };
	for (size_t i = 0; i < n + 1; i++) {
		char *d1 = P("flat-ours.qcow2"), *d2 = strdup(P("flat-qemu.qcow2"));
		uint64_t t0 = bench_now_ns();
		if (img_flatten(top, IMG_FMT_QCOW2, d1, IMG_FMT_QCOW2, &o, &e) < 0) {
			fprintf(stderr, "flatten: %s\n", e.msg);
			return 1;
		}
		double a = ms_since(t0);
		char *ca[] = { "qemu-img", "convert", "-O", "qcow2", top, d2, NULL };
		t0 = bench_now_ns();
		if (run(ca) != 0) {
			fprintf(stderr, "flatten: qemu-img convert failed\n");
			return 1;
		}
		double b = ms_since(t0);
		if (i == 0) {
			char *cmpa[] = { "qemu-img", "compare", "-q", d1, d2, NULL };
			if (run(cmpa) != 0) {
				fprintf(stderr, "flatten: outputs differ\n");
				return 1;
			}
		}
		unlink(d1);
		unlink(d2);
		free(d2);
		if (i >= 1) {
			bench_add(&ours, a);
			bench_add(&theirs, b);
		}
	}
	bench_report("flatten_qemu_img_convert", "ms", &theirs, NULL, NULL);
	bench_report("flatten", "ms", &ours, "flatten_qemu_img_convert", &theirs);
	free(base);
	free(top);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: bench-imgstore overlay_create|bulk_copy|flatten\n");
		return 2;
	}
	const char *root = getenv("FLUID_ROOT");
	snprintf(g_dir, sizeof(g_dir), "%s/build/bench-work", root && *root ? root : ".");
	mkdir(g_dir, 0755);
	strncat(g_dir, "/imgstore-XXXXXX", sizeof(g_dir) - strlen(g_dir) - 1);
	if (!mkdtemp(g_dir)) {
		perror("mkdtemp");
		return 1;
	}
	atexit(cleanup);
	if (!strcmp(argv[1], "overlay_create"))
		return bench_overlay_create();
	if (!strcmp(argv[1], "bulk_copy"))
		return bench_bulk_copy();
	if (!strcmp(argv[1], "flatten"))
		return bench_flatten();
	fprintf(stderr, "bench-imgstore: unknown benchmark %s\n", argv[1]);
	return 2;
}
