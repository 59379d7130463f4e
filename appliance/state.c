// SPDX-License-Identifier: MIT
/*
 * state: state-directory helpers. The state dir holds everything fluid keeps
 * on disk (accelerator cache, sandbox run dirs, the private PostgreSQL
 * cluster under pg/ when `make run` starts one). A lock file makes a second
 * `fluid serve` on the same state dir fail fast instead of racing the first.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "state.h"

int fl_state_dir_lock(const char *dir, int *ret_lock_fd, FlError *err)
{
	char path[PATH_MAX];
	int r = fl_mkdir_p(dir, 0750);
	if (r < 0)
		return fl_error_set(err, r, "cannot create state dir %s: %s", dir, strerror(-r));
	if (snprintf(path, sizeof(path), "%s/fluid.lock", dir) >= (int)sizeof(path))
		return fl_error_set(err, -ENAMETOOLONG, "state dir path too long");
	_cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return fl_error_set(err, -errno, "cannot open %s: %m", path);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK)
			return fl_error_set(err, -EBUSY,
					    "another fluid server is using the state dir %s", dir);
		return fl_error_set(err, -errno, "cannot lock %s: %m", path);
	}
	/* Record who holds it, for operators; the lock itself is the flock. */
	char pid[32];
	int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)n, 0) < 0) {
		/* Informational only. */
	}
	*ret_lock_fd = TAKE_FD(fd);
	return 0;
}

