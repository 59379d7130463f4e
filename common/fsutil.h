/* SPDX-License-Identifier: MIT */
/* fsutil: mkdir -p, rm -rf, capped whole-file read, atomic replace. */
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

#endif
