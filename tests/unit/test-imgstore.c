// SPDX-License-Identifier: MIT
/*
 * Unit tests for imgstore's qcow2 side: the header parser against valid
 * and corrupt headers, native overlay creation (structure checked by
 * re-parsing; QEMU's own checks are in the integration test), backing
 * chains (relative names, raw terminals, loops, depth limit, missing
 * files), SHA-256 vectors, and the liburing copy/stream helpers.
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "imgstore.h"
#include "internal.h"

static char g_dir[256];

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(p);
}

static int setup(void **state)
{
	snprintf(g_dir, sizeof(g_dir), "/tmp/test-imgstore-XXXXXX");
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
	static char buf[8][512];
	static int k;
	char *b = buf[k++ % 8];
	snprintf(b, 512, "%s/%s", g_dir, name);
	return b;
}

static size_t slurp(const char *path, uint8_t **ret)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	uint8_t *b = malloc((size_t)st.st_size + 1);
	assert_non_null(b);
	assert_int_equal(read(fd, b, (size_t)st.st_size), st.st_size);
	close(fd);
	*ret = b;
	return (size_t)st.st_size;
}

static void spit(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

/* A valid overlay image read back into memory, for corruption tests. */
static size_t make_image(uint8_t **ret, unsigned cluster_bits)
{
	FlError e = { 0 };
	assert_int_equal(img_qcow2_create_overlay(P("raw.img"), NULL, NULL, 0, 0, &e), -EINVAL);
	int fd = open(P("base.raw"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 64 << 20), 0);
	close(fd);
	assert_int_equal(img_qcow2_create_overlay(P("ov.qcow2"), "base.raw", "raw", 0, cluster_bits, &e), 0);
	return slurp(P("ov.qcow2"), ret);
}

static int parse(const uint8_t *b, size_t n, ImgInfo *in, FlError *e)
{
	return img_qcow2_parse_header(b, n, n, in, e);
}

static void test_overlay_roundtrip(void **state)
{
	uint8_t *b;
	size_t n = make_image(&b, 0);
	ImgInfo in;
	FlError e = { 0 };
	assert_int_equal(parse(b, n, &in, &e), 0);
	assert_int_equal(in.format, IMG_FMT_QCOW2);
	assert_int_equal(in.version, 3);
	assert_int_equal(in.cluster_bits, 16);
	assert_int_equal(in.virtual_size, 64 << 20);
	assert_true(in.has_backing);
	assert_string_equal(in.backing_file, "base.raw");
	assert_string_equal(in.backing_format, "raw");
	assert_false(in.dirty);
	assert_false(in.corrupt);
	/* Header, refcount table, refcount block, L1: four clusters, all counted. */
	assert_int_equal(n, 4 * 65536);
	uint64_t rb = img_be64(b + in.refcount_table_offset);
	assert_int_equal(rb, 2 * 65536);
	for (int i = 0; i < 4; i++)
		assert_int_equal(img_be16(b + rb + 2 * i), 1);
	assert_int_equal(img_be16(b + rb + 8), 0);
	struct stat st;
	assert_int_equal(stat(P("ov.qcow2"), &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);
	free(b);

	/* Every cluster size QEMU accepts. */
	for (unsigned cb = 9; cb <= 21; cb++) {
		assert_int_equal(img_qcow2_create_overlay(P("c.qcow2"), "base.raw", NULL, 0, cb, &e), 0);
		assert_int_equal(img_qcow2_info(P("c.qcow2"), &in, &e), 0);
		assert_int_equal(in.cluster_bits, cb);
		assert_string_equal(in.backing_format, "raw");
	}
	assert_int_equal(img_qcow2_create_overlay(P("c.qcow2"), "base.raw", NULL, 0, 22, &e), -EINVAL);
	assert_int_equal(img_qcow2_create_overlay(P("c.qcow2"), "base.raw", "vmdk", 0, 0, &e), -EINVAL);
	assert_int_equal(img_qcow2_create_overlay(P("c.qcow2"), "nbd:evil:1", NULL, 0, 0, &e), -EINVAL);
	assert_int_equal(img_qcow2_create_overlay(P("c.qcow2"), "missing.img", NULL, 0, 0, &e), -ENOENT);
	assert_non_null(strstr(e.msg, "missing.img"));
	/* No temp files left behind by failures. */
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "ls %s | grep -q tmp", g_dir);
	assert_int_not_equal(system(cmd), 0);
}

static void test_standalone_and_sizes(void **state)
{
	FlError e = { 0 };
	ImgInfo in;
	assert_int_equal(img_qcow2_create_overlay(P("s.qcow2"), NULL, NULL, 1000, 0, &e), 0);
	assert_int_equal(img_qcow2_info(P("s.qcow2"), &in, &e), 0);
	assert_int_equal(in.virtual_size, 1024); /* rounded up to 512 */
	assert_false(in.has_backing);
	assert_int_equal(img_qcow2_create_overlay(P("s.qcow2"), NULL, NULL, 1ull << 44, 21, &e), 0);
	assert_int_equal(img_qcow2_info(P("s.qcow2"), &in, &e), 0);
	assert_int_equal(in.virtual_size, 1ull << 44);
	assert_int_equal(img_qcow2_create_overlay(P("s.qcow2"), NULL, NULL, 1ull << 40, 9, &e), -EFBIG);
	assert_int_equal(img_qcow2_create_overlay(P("s.qcow2"), NULL, NULL, IMG_MAX_VIRTUAL_SIZE + 1, 0, &e), -EFBIG);
	/* img_qcow2_info on a raw file */
	assert_int_equal(img_qcow2_create_overlay(P("x.qcow2"), NULL, NULL, 4096, 0, &e), 0);
	spit(P("r.img"), "hello", 5);
	assert_int_equal(img_qcow2_info(P("r.img"), &in, &e), -EINVAL);
	assert_int_equal(img_probe(P("r.img"), &in, &e), 0);
	assert_int_equal(in.format, IMG_FMT_RAW);
	assert_int_equal(in.virtual_size, 5);
}

static void test_corrupt_headers(void **state)
{
	uint8_t *orig;
	size_t n = make_image(&orig, 0);
	uint8_t *b = malloc(n);
	ImgInfo in;
	FlError e = { 0 };
#define RESET() memcpy(b, orig, n)

	/* truncated at every length below the header */
	RESET();
	for (size_t len = 0; len < 104; len++)
		assert_int_equal(img_qcow2_parse_header(b, len, len, &in, &e), -EINVAL);
	/* buffer holds all, but file_size says it is shorter */
	assert_int_not_equal(img_qcow2_parse_header(b, n, 4096, &in, &e), 0);
	/* bad magic */
	RESET();
	b[0] = 'X';
	assert_int_equal(parse(b, n, &in, &e), -EMEDIUMTYPE);
	/* versions */
	RESET();
	img_put_be32(b + 4, 4);
	assert_int_equal(parse(b, n, &in, &e), -ENOTSUP);
	RESET();
	img_put_be32(b + 4, 1);
	assert_int_equal(parse(b, n, &in, &e), -ENOTSUP);
	/* cluster bits */
	RESET();
	img_put_be32(b + 20, 8);
	assert_int_equal(parse(b, n, &in, &e), -EINVAL);
	img_put_be32(b + 20, 22);
	assert_int_equal(parse(b, n, &in, &e), -EINVAL);
	img_put_be32(b + 20, 0xffffffff);
	assert_int_equal(parse(b, n, &in, &e), -EINVAL);
	/* huge virtual size (L1 no longer covers it, or above the cap) */
	RESET();
	img_put_be64(b + 24, UINT64_MAX);
	assert_int_equal(parse(b, n, &in, &e), -EINVAL);
	RESET();
	img_put_be64(b + 24, 1ull << 40);
	assert_int_equal(parse(b, n, &in, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "L1"));
	/* encryption */
	RESET();
	img_put_be32(b + 32, 1);
	assert_int_equal(parse(b, n, &in, &e), -ENOTSUP);
	/* L1 outside the file / misaligned / huge */
	RESET();
	img_put_be64(b + 40, 1ull << 40);
	assert_int_equal(parse(b, n, &in, &e), -EINVAL);
	RESET();
	img_put_be64(b + 40, 3 * 65536 + 8);
	assert_int_equal(parse(b, n, &in, &e), -EINVAL);
	RESET();
	img_put_be32(b + 36, 0xffffffff);
	assert_int_equal(parse(b, n, &in, &e), -EINVAL);
	RESET();
	img_put_be32(b + 36, 65536 / 8 + 1); /* L1 runs past the end of the file */
	assert_int_equal(parse(b, n, &in, &e), -EINVAL);
	/* refcount table */
	RESET();
	img_put_be64(b + 48, UINT64_MAX & ~0xffffull);
	assert_int_equal(parse(b, n, &in, &e), -EINVAL);
	RESET();
	img_put_be64(b + 48, 0);
	assert_int_equal(parse(b, n, &in, &e), -EINVAL);
	RESET();
	img_put_be32(b + 56, 0);
	assert_int_equal(parse(b, n, &in, &e), -EINVAL);
	RESET();
	img_put_be32(b + 56, 0xffffffff);
	assert_int_equal(parse(b, n, &in, &e), -EINVAL);
	/* snapshots */
	RESET();
	img_put_be32(b + 60, 1);
	img_put_be64(b + 64, 1ull << 50);
	assert_int_equal(parse(b, n, &in, &e), -EINVAL);
	/* incompatible features: dirty/corrupt understood, others refused */
	RESET();
	img_put_be64(b + 72, 3);
	assert_int_equal(parse(b, n, &in, &e), 0);
	assert_true(in.dirty && in.corrupt);
	for (int bit = 2; bit < 64; bit += 7) {
		RESET();
		img_put_be64(b + 72, 1ull << bit);
		assert_int_equal(parse(b, n, &in, &e), -ENOTSUP);
	}
	/* compatible/autoclear bits are fine */
	RESET();
	img_put_be64(b + 80, ~0ull);
	assert_int_equal(parse(b, n, &in, &e), 0);
	/* header_length */
	RESET();
	img_put_be32(b + 100, 50);
	assert_int_equal(parse(b, n, &in, &e), -EINVAL);
	RESET();
	img_put_be32(b + 100, 1u << 20);
	assert_int_equal(parse(b, n, &in, &e), -EINVAL);
	/* refcount order */
	RESET();
	img_put_be32(b + 96, 7);
	assert_int_equal(parse(b, n, &in, &e), -EINVAL);
	/* backing name: too long, past the cluster, past the buffer, overlapping the header */
	RESET();
	img_put_be32(b + 16, 5000);
	assert_int_equal(parse(b, n, &in, &e), -EINVAL);
	RESET();
	img_put_be64(b + 8, 65536 - 4);
	assert_int_equal(parse(b, n, &in, &e), -EINVAL);
	RESET();
	img_put_be64(b + 8, UINT64_MAX);
	assert_int_equal(parse(b, n, &in, &e), -EINVAL);
	RESET();
	img_put_be64(b + 8, 16);
	assert_int_equal(parse(b, n, &in, &e), -EINVAL);
	RESET();
	assert_int_equal(img_qcow2_parse_header(b, 130, n, &in, &e), -EINVAL); /* name not in buffer */
	/* backing names QEMU would treat as protocols or with control chars */
	RESET();
	uint64_t bo = img_be64(b + 8);
	memcpy(b + bo, "json:{x}", 8);
	img_put_be32(b + 16, 8);
	assert_int_equal(parse(b, n, &in, &e), -EINVAL);
	memcpy(b + bo, "a/b:c\n", 6);
	img_put_be32(b + 16, 6);
	assert_int_equal(parse(b, n, &in, &e), -EINVAL);
	memcpy(b + bo, "./x:y", 5);
	img_put_be32(b + 16, 5);
	assert_int_equal(parse(b, n, &in, &e), 0);
	assert_string_equal(in.backing_file, "./x:y");
	/* header extensions: overflowing length, bad backing format */
	RESET();
	img_put_be32(b + 108, 0x7fffffff);
	assert_int_equal(parse(b, n, &in, &e), -EINVAL);
	RESET();
	b[112] = '/';
	assert_int_equal(parse(b, n, &in, &e), -EINVAL);
	RESET();
	img_put_be32(b + 108, 0);
	assert_int_equal(parse(b, n, &in, &e), -EINVAL); /* empty backing format */
	/* unknown extension types are skipped */
	RESET();
	img_put_be32(b + 104, 0x12345678);
	assert_int_equal(parse(b, n, &in, &e), 0);
	assert_string_equal(in.backing_format, "");
	/* Random single-byte corruptions never crash and never read out of bounds (ASan). */
	srand(42);
	for (int i = 0; i < 20000; i++) {
		RESET();
		for (int k = 0; k < 3; k++)
			b[rand() % 256] ^= (uint8_t)(1u << (rand() % 8));
		(void)parse(b, 256 + (size_t)(rand() % 2) * (n - 256), &in, &e);
	}
	free(b);
	free(orig);
}

static void test_v2_header(void **state)
{
	/* A hand-built v2 image: header, refcount table at cluster 1, L1 at cluster 3. */
	uint8_t b[4 * 512] = { 0 };
	img_put_be32(b, QCOW2_MAGIC);
	img_put_be32(b + 4, 2);
	img_put_be32(b + 20, 9);
	img_put_be64(b + 24, 512 * 64);
	img_put_be32(b + 36, 1);
	img_put_be64(b + 40, 3 * 512);
	img_put_be64(b + 48, 512);
	img_put_be32(b + 56, 1);
	memcpy(b + 200, "backing.img", 11);
	img_put_be64(b + 8, 200);
	img_put_be32(b + 16, 11);
	ImgInfo in;
	FlError e = { 0 };
	assert_int_equal(parse(b, sizeof(b), &in, &e), 0);
	assert_int_equal(in.version, 2);
	assert_int_equal(in.refcount_order, 4);
	assert_string_equal(in.backing_file, "backing.img");
	assert_string_equal(in.backing_format, "");
}

static void test_chain(void **state)
{
	FlError e = { 0 };
	int fd = open(P("base.raw"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_int_equal(ftruncate(fd, 8 << 20), 0);
	close(fd);
	assert_int_equal(mkdir(P("sub"), 0755), 0);
	assert_int_equal(img_qcow2_create_overlay(P("l1.qcow2"), "base.raw", "raw", 0, 0, &e), 0);
	assert_int_equal(img_qcow2_create_overlay(P("sub/l2.qcow2"), "../l1.qcow2", NULL, 0, 0, &e), 0);
	assert_int_equal(img_qcow2_create_overlay(P("top.qcow2"), P("sub/l2.qcow2"), "qcow2", 16 << 20, 12, &e), 0);
	ImgChain *c = NULL;
	assert_int_equal(img_chain_resolve(P("top.qcow2"), IMG_FMT_UNKNOWN, 0, &c, &e), 0);
	assert_int_equal(img_chain_length(c), 4);
	assert_int_equal(img_chain_layer(c, 0)->info.virtual_size, 16 << 20);
	assert_int_equal(img_chain_layer(c, 0)->info.cluster_bits, 12);
	assert_string_equal(img_chain_layer(c, 1)->path, P("sub/l2.qcow2"));
	assert_int_equal(img_chain_layer(c, 3)->info.format, IMG_FMT_RAW);
	assert_int_equal(img_chain_layer(c, 3)->info.virtual_size, 8 << 20);
	assert_null(img_chain_layer(c, 4));
	img_chain_free(c);

	/* depth limit */
	assert_int_equal(img_chain_resolve(P("top.qcow2"), IMG_FMT_UNKNOWN, 3, &c, &e), -E2BIG);
	assert_int_equal(img_chain_resolve(P("top.qcow2"), IMG_FMT_UNKNOWN, 4, &c, &e), 0);
	img_chain_free(c);
	/* A chain of 70 layers is refused at the default depth. */
	char prev[64] = "base.raw", name[64];
	for (int i = 0; i < 70; i++) {
		snprintf(name, sizeof(name), "d%d.qcow2", i);
		assert_int_equal(img_qcow2_create_overlay(P(name), prev, NULL, 0, 0, &e), 0);
		memcpy(prev, name, sizeof(prev));
	}
	assert_int_equal(img_chain_resolve(P(prev), IMG_FMT_UNKNOWN, 0, &c, &e), -E2BIG);
	assert_int_equal(img_chain_resolve(P(prev), IMG_FMT_UNKNOWN, 100, &c, &e), 0);
	assert_int_equal(img_chain_length(c), 71);
	img_chain_free(c);

	/* raw declared by the caller: a qcow2 file is then read as raw data */
	assert_int_equal(img_chain_resolve(P("l1.qcow2"), IMG_FMT_RAW, 0, &c, &e), 0);
	assert_int_equal(img_chain_length(c), 1);
	img_chain_free(c);

	/* missing backing file: the error names it and its user */
	assert_int_equal(unlink(P("base.raw")), 0);
	assert_int_equal(img_chain_resolve(P("top.qcow2"), IMG_FMT_UNKNOWN, 0, &c, &e), -ENOENT);
	assert_non_null(strstr(e.msg, "base.raw"));
	assert_non_null(strstr(e.msg, "l1.qcow2"));
	assert_int_equal(img_chain_resolve(P("nope.qcow2"), IMG_FMT_UNKNOWN, 0, &c, &e), -ENOENT);
	assert_non_null(strstr(e.msg, "nope.qcow2"));

	/* loop: base.raw becomes an overlay on top.qcow2 */
	assert_int_equal(img_qcow2_create_overlay(P("base.raw"), NULL, NULL, 8 << 20, 0, &e), 0);
	uint8_t *b;
	size_t n = slurp(P("top.qcow2"), &b);
	(void)n;
	free(b);
	/* build x -> y -> x by rewriting y's header after creation */
	assert_int_equal(img_qcow2_create_overlay(P("y.qcow2"), NULL, NULL, 1 << 20, 0, &e), 0);
	assert_int_equal(img_qcow2_create_overlay(P("x.qcow2"), "y.qcow2", NULL, 0, 0, &e), 0);
	assert_int_equal(img_qcow2_create_overlay(P("y.qcow2"), "x.qcow2", NULL, 0, 0, &e), 0);
	assert_int_equal(img_chain_resolve(P("x.qcow2"), IMG_FMT_UNKNOWN, 0, &c, &e), -ELOOP);
	assert_non_null(strstr(e.msg, "loops"));
	/* a self-loop through a hard link is caught by inode, not by name */
	assert_int_equal(img_qcow2_create_overlay(P("self.qcow2"), NULL, NULL, 1 << 20, 0, &e), 0);
	assert_int_equal(img_qcow2_create_overlay(P("self.qcow2"), "self-link.qcow2", "qcow2", 1 << 20, 0, &e), -ENOENT);
	assert_int_equal(link(P("x.qcow2"), P("x-link.qcow2")), 0);
	assert_int_equal(img_qcow2_create_overlay(P("y.qcow2"), "x-link.qcow2", NULL, 0, 0, &e), 0);
	assert_int_equal(img_chain_resolve(P("x.qcow2"), IMG_FMT_UNKNOWN, 0, &c, &e), -ELOOP);
}

static void test_sha256(void **state)
{
	static const struct {
		const char *in, *out;
	} v[] = {
		{ "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
		{ "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
		{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
	};
	for (size_t i = 0; i < FL_ARRAY_SIZE(v); i++) {
		FlSha256 s;
		uint8_t d[32];
		char hex[65];
		fl_sha256_init(&s);
		/* feed byte by byte to exercise buffering */
		for (const char *p = v[i].in; *p; p++)
			fl_sha256_update(&s, p, 1);
		fl_sha256_final(&s, d);
		img_hex(d, 32, hex);
		assert_string_equal(hex, v[i].out);
	}
	/* one million 'a' through the file API */
	char *m = malloc(1000000);
	memset(m, 'a', 1000000);
	spit(P("a.bin"), m, 1000000);
	free(m);
	char hex[IMG_ID_SIZE];
	FlError e = { 0 };
	assert_int_equal(img_sha256_file(P("a.bin"), hex, &e), 0);
	assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void test_copy_sparse(void **state)
{
	/* 40 MiB file: data at 0, 17 MiB (unaligned length) and the last byte. */
	int fd = open(P("src.img"), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_int_equal(ftruncate(fd, 40 << 20), 0);
	uint8_t *buf = malloc(3 << 20);
	for (size_t i = 0; i < (3u << 20); i++)
		buf[i] = (uint8_t)(i * 7 + (i >> 12));
	assert_int_equal(pwrite(fd, buf, 3 << 20, 0), 3 << 20);
	assert_int_equal(pwrite(fd, buf, 1234567, 17 << 20), 1234567);
	assert_int_equal(pwrite(fd, "Z", 1, (40 << 20) - 1), 1);
	close(fd);
	free(buf);
	FlError e = { 0 };
	uint64_t bytes = 0;
	ImgIoOptions o = { .chunk_size = 256 << 10, .queue_depth = 4 };
	assert_int_equal(img_copy_file(P("src.img"), P("dst.img"), &o, &bytes, &e), 0);
	assert_true(bytes < (8u << 20)); /* only the data extents */
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "cmp -s %s %s", P("src.img"), P("dst.img"));
	assert_int_equal(system(cmd), 0);
	struct stat st;
	assert_int_equal(stat(P("dst.img"), &st), 0);
	assert_int_equal(st.st_size, 40 << 20);
	assert_true(st.st_blocks * 512 < (16 << 20)); /* holes stayed holes */
	/* buffered output only (what tmpfs gets), odd chunk size, depth 1 */
	ImgIoOptions ob = { .chunk_size = 5000, .queue_depth = 1, .no_direct = true, .no_fsync = true };
	assert_int_equal(img_copy_file(P("src.img"), P("dst3.img"), &ob, &bytes, &e), 0);
	snprintf(cmd, sizeof(cmd), "cmp -s %s %s", P("src.img"), P("dst3.img"));
	assert_int_equal(system(cmd), 0);
	/* a source on tmpfs, if there is one, and a destination there */
	if (access("/dev/shm", W_OK) == 0) {
		char shm[64];
		snprintf(shm, sizeof(shm), "/dev/shm/test-imgstore-%d", (int)getpid());
		assert_int_equal(img_copy_file(P("src.img"), shm, NULL, NULL, &e), 0);
		snprintf(cmd, sizeof(cmd), "cmp -s %s %s", P("src.img"), shm);
		assert_int_equal(system(cmd), 0);
		unlink(shm);
	}
	/* default options, empty file, missing source */
	assert_int_equal(img_copy_file(P("src.img"), P("dst2.img"), NULL, NULL, &e), 0);
	spit(P("empty"), "", 0);
	assert_int_equal(img_copy_file(P("empty"), P("empty2"), NULL, &bytes, &e), 0);
	assert_int_equal(bytes, 0);
	assert_int_equal(img_copy_file(P("none"), P("x"), NULL, NULL, &e), -ENOENT);
	assert_non_null(strstr(e.msg, "none"));
}

static void test_streams(void **state)
{
	size_t len = (5u << 20) + 333;
	uint8_t *buf = malloc(len);
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(i ^ (i >> 9));
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid_t pid = fork();
	if (pid == 0) {
		close(p[0]);
		size_t off = 0;
		while (off < len) {
			size_t n = len - off > 70000 ? 70000 : len - off;
			ssize_t w = write(p[1], buf + off, n);
			if (w <= 0)
				_exit(1);
			off += (size_t)w;
		}
		_exit(0);
	}
	close(p[1]);
	FlError e = { 0 };
	uint64_t bytes = 0;
	assert_int_equal(img_stream_to_file(p[0], P("ram.state"), 0, NULL, &bytes, &e), 0);
	close(p[0]);
	int status;
	waitpid(pid, &status, 0);
	assert_int_equal(bytes, len);
	uint8_t *back;
	assert_int_equal(slurp(P("ram.state"), &back), len);
	assert_memory_equal(back, buf, len);
	free(back);

	/* max_bytes enforced, no file left behind */
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	if (pid == 0) {
		close(p[0]);
		for (int i = 0; i < 40; i++)
			if (write(p[1], buf, 65536) <= 0)
				_exit(0);
		_exit(0);
	}
	close(p[1]);
	assert_int_equal(img_stream_to_file(p[0], P("big.state"), 1 << 20, NULL, NULL, &e), -EFBIG);
	close(p[0]);
	waitpid(pid, &status, 0);
	assert_int_equal(access(P("big.state"), F_OK), -1);

	/* from file into a pipe, read back by a child that checks the bytes */
	spit(P("in.state"), buf, len);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	if (pid == 0) {
		close(p[1]);
		size_t off = 0;
		uint8_t tmp[65536];
		for (;;) {
			ssize_t n = read(p[0], tmp, sizeof(tmp));
			if (n <= 0)
				break;
			if (off + (size_t)n > len || memcmp(tmp, buf + off, (size_t)n))
				_exit(2);
			off += (size_t)n;
		}
		_exit(off == len ? 0 : 3);
	}
	close(p[0]);
	/* the same stream into a file with buffered writes only */
	spit(P("in.state"), buf, len);
	ImgIoOptions nb = { .no_direct = true, .chunk_size = 12345 };
	int in = open(P("in.state"), O_RDONLY | O_CLOEXEC);
	assert_int_equal(img_stream_to_file(in, P("ram2.state"), 0, &nb, &bytes, &e), 0);
	close(in);
	assert_int_equal(bytes, len);
	assert_int_equal(slurp(P("ram2.state"), &back), len);
	assert_memory_equal(back, buf, len);
	free(back);

	ImgIoOptions o = { .chunk_size = 100000, .queue_depth = 5 };
	assert_int_equal(img_stream_from_file(P("in.state"), p[1], &o, &bytes, &e), 0);
	close(p[1]);
	waitpid(pid, &status, 0);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(bytes, len);

	/* reader goes away early: -EPIPE, not a hang or a crash */
	signal(SIGPIPE, SIG_IGN);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	close(p[0]);
	assert_int_equal(img_stream_from_file(P("in.state"), p[1], NULL, NULL, &e), -EPIPE);
	close(p[1]);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_overlay_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_standalone_and_sizes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_headers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v2_header, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sha256, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy_sparse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_streams, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
