/* SPDX-License-Identifier: MIT */
/*
 * state: the daemon's state directory and small file helpers used with it
 * (mkdir -p, whole-file read with a cap, atomic replace, the serve lock).
 */
#ifndef FL_STATE_H
#define FL_STATE_H

#include <stddef.h>
#include <sys/types.h>

#include "error.h"

/* Creates path and its missing parents with mode. Returns 0 or -errno. */
int fl_mkdir_p(const char *path, mode_t mode);

/*
 * Creates the state directory (0750) if needed and takes an exclusive lock
 * on STATE/fluid.lock so that two servers never share one state dir.
 * On success *ret_lock_fd holds the lock until closed (O_CLOEXEC).
 * Errors: -EBUSY (another server holds it), other -errno.
 */
int fl_state_dir_lock(const char *dir, int *ret_lock_fd, FlError *err);

/* Reads a whole file of at most max bytes, NUL-terminated. -EFBIG if larger. */
int fl_read_file(const char *path, size_t max, char **ret, size_t *ret_len);

/* Writes path atomically (temporary file in the same dir, fsync, rename). */
int fl_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);

#endif
