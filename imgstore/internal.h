/* SPDX-License-Identifier: MIT */
/*
 * imgstore internals shared between its .c files (not installed, not part
 * of the public API).
 */
#ifndef FL_IMGSTORE_INTERNAL_H
#define FL_IMGSTORE_INTERNAL_H

#include <stdint.h>
#include <string.h>

#include "imgstore.h"

#define QCOW2_MAGIC 0x514649fbu
#define QCOW2_EXT_END 0x00000000u
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acau
#define QCOW2_INCOMPAT_DIRTY (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT (1ull << 1)
#define QCOW2_OFFSET_MASK 0x00fffffffffffe00ull
#define QCOW2_L2_COMPRESSED (1ull << 62)
#define QCOW2_L2_COPIED (1ull << 63)
#define QCOW2_L2_ZERO 1ull
#define QCOW2_V3_HEADER_LEN 104u
#define QCOW2_V2_HEADER_LEN 72u

static inline uint16_t img_be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t img_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t img_be64(const uint8_t *p)
{
	return (uint64_t)img_be32(p) << 32 | img_be32(p + 4);
}
static inline void img_put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}
static inline void img_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}
static inline void img_put_be64(uint8_t *p, uint64_t v)
{
	img_put_be32(p, (uint32_t)(v >> 32));
	img_put_be32(p + 4, (uint32_t)v);
}

/* Prepends "prefix: " to err's message (fl_error_prefix without its
 * format-truncation warning). Returns err->code, or 0 when err is NULL. */
static inline int img_error_prefix(FlError *err, const char *prefix)
{
	if (!err)
		return 0;
	size_t pl = strlen(prefix), ml = strnlen(err->msg, sizeof(err->msg) - 1);
	if (pl + 2 >= sizeof(err->msg))
		pl = sizeof(err->msg) - 3;
	if (pl + 2 + ml >= sizeof(err->msg))
		ml = sizeof(err->msg) - 1 - pl - 2;
	memmove(err->msg + pl + 2, err->msg, ml);
	memcpy(err->msg, prefix, pl);
	err->msg[pl] = ':';
	err->msg[pl + 1] = ' ';
	err->msg[pl + 2 + ml] = '\0';
	return err->code;
}

/* sha256.c */
#include "sha256.h" /* common/: the one SHA-256, compiled into this library */
void img_hex(const uint8_t *in, size_t n, char *out);

/* util.c */
/* Creates a temp file next to path (O_CLOEXEC, mode 0600); *ret_tmp is the
 * malloc'ed temp name. */
int img_tmpfile_near(const char *path, char **ret_tmp, FlError *err);
/* fsync (unless no_fsync) + fchmod(mode) + rename(tmp, path) + fsync dir. */
int img_tmpfile_commit(int fd, const char *tmp, const char *path, mode_t mode, bool no_fsync,
		       FlError *err);
int img_fsync_dir_of(const char *path);
int img_pread_full(int fd, void *buf, size_t len, uint64_t off);
int img_write_full(int fd, const void *buf, size_t len);
/* Resolves a backing name against the directory of image_path. */
int img_resolve_backing(const char *image_path, const char *name, char *out, size_t outlen);
/* Size of a regular file or block device. */
int img_fd_size(int fd, uint64_t *ret);

/* io.c: drives a synchronous producer into positional io_uring writes on
 * fd_out (out_path is reopened with O_DIRECT for aligned writes; a tail
 * ending at end_limit may be zero-padded, so the caller truncates to the
 * real size afterwards). fill() puts up to cap bytes in buf for output
 * offset *off and returns 1, or 0 at the end, or -errno (setting err). */
typedef int (*img_fill_fn)(void *ud, uint8_t *buf, size_t cap, uint64_t *off, size_t *len);
int img__pipe_fill_run(int fd_out, const char *out_path, uint64_t end_limit,
		       const ImgIoOptions *opts, img_fill_fn fill, void *ud, uint64_t *ret_bytes,
		       FlError *err);

#endif
