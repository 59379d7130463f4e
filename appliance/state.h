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
#include "fsutil.h"


/*
 * Creates the state directory (0750) if needed and takes an exclusive lock
 * on STATE/fluid.lock so that two servers never share one state dir.
 * On success *ret_lock_fd holds the lock until closed (O_CLOEXEC).
 * Errors: -EBUSY (another server holds it), other -errno.
 */
int fl_state_dir_lock(const char *dir, int *ret_lock_fd, FlError *err);


#endif
