/* SPDX-License-Identifier: MIT */
/* fsutil: mkdir -p, rm -rf, capped whole-file read, atomic replace, and
 * reading/writing exactly n bytes of a descriptor. */
#ifndef FL_FSUTIL_H
#define FL_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

/* Creates path and its missing parents (parents 0755, path mode). 0 or -errno. */
int fl_mkdir_p(const char *path, mode_t mode);
/* Removes path recursively (never follows symlinks). Missing is not an error. */
int fl_rm_rf(const char *path);
/* Reads a whole file of at most max bytes, NUL-terminated. -EFBIG if larger. */
int fl_read_file(const char *path, size_t max, char **ret, size_t *ret_len);
/* Writes path atomically: temporary file in the same dir, fsync, rename,
 * fsync of the directory. 0 or -errno. */
int fl_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);
/* Reads exactly len bytes (retrying EINTR): 1 when read, 0 at EOF before
 * the first byte, -EPROTO at EOF after it, -errno on errors. */
int fl_read_full(int fd, void *buf, size_t len);
/* Writes all len bytes (retrying EINTR and short writes). 0 or -errno. */
int fl_write_all(int fd, const void *buf, size_t len);

#endif
