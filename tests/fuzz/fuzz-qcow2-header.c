// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for imgstore's qcow2 parsing: the pure header parser on
 * the raw input, then the file-based paths (chain resolution and, for small
 * images, flattening through the L1/L2 tables) on two files made from the
 * input. Input format: image A, optionally followed by "\n--8<--\n" and
 * image B; A is the top of the chain and may name "b" (or "a", a loop) as
 * its backing file. Seeds: tests/fuzz/corpus/qcow2-header/.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imgstore.h"

static char g_dir[64];
static char g_a[128], g_b[128], g_out[128];

static void cleanup(void)
{
	unlink(g_a);
	unlink(g_b);
	unlink(g_out);
	rmdir(g_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	snprintf(g_dir, sizeof(g_dir), "/tmp/fuzz-qcow2-XXXXXX");
	if (!mkdtemp(g_dir))
		abort();
	snprintf(g_a, sizeof(g_a), "%s/a", g_dir);
	snprintf(g_b, sizeof(g_b), "%s/b", g_dir);
	snprintf(g_out, sizeof(g_out), "%s/out", g_dir);
	atexit(cleanup);
	return 0;
}

static void put(const char *path, const uint8_t *d, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		abort();
	if (n && write(fd, d, n) != (ssize_t)n)
		abort();
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ImgInfo in;
	FlError err = { 0 };
	(void)img_qcow2_parse_header(data, size, size, &in, &err);
	/* The file may be longer than what the buffer holds. */
	(void)img_qcow2_parse_header(data, size, (uint64_t)size * 4 + 65536, &in, &err);

	static const char sep[] = "\n--8<--\n";
	const uint8_t *cut = memmem(data, size, sep, sizeof(sep) - 1);
	size_t na = cut ? (size_t)(cut - data) : size;
	put(g_a, data, na);
	if (cut)
		put(g_b, cut + sizeof(sep) - 1, size - na - (sizeof(sep) - 1));
	else
		unlink(g_b);

	ImgChain *c = NULL;
	if (img_chain_resolve(g_a, IMG_FMT_UNKNOWN, 8, &c, &err) == 0) {
		bool small = true;
		for (size_t i = 0; i < img_chain_length(c); i++) {
			const ImgChainLayer *l = img_chain_layer(c, i);
			if (!l->path || l->info.virtual_size > (4u << 20))
				small = false;
		}
		img_chain_free(c);
		if (small) {
			ImgIoOptions o = { .chunk_size = 64 << 10, .queue_depth = 2, .no_fsync = true };
			if (img_flatten(g_a, IMG_FMT_UNKNOWN, g_out, IMG_FMT_RAW, &o, &err) == 0)
				unlink(g_out);
		}
	}
	return 0;
}
