/* SPDX-License-Identifier: MIT */
/*
 * Spawns a throw-away QEMU for libqmp's integration test and benchmark
 * (see qemu-spawn.h). posix_spawnp() with the pre-bound QMP listener dup'ed
 * to fd 3; every other descriptor is close-on-exec.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "qemu-spawn.h"

extern char **environ;

static void remove_files(TestQemu *q)
{
	if (!q->dir[0])
		return;
	unlink(q->qmp_path);
	unlink(q->log_path);
	rmdir(q->dir);
	q->dir[0] = 0;
}

int test_qemu_start(TestQemu *q, const char *machine, const char *const *extra_args, FlError *err)
{
	memset(q, 0, sizeof(*q));
	snprintf(q->dir, sizeof(q->dir), "/tmp/fluid-qmp-XXXXXX");
	if (!mkdtemp(q->dir)) {
		q->dir[0] = 0;
		return fl_error_set(err, -errno, "mkdtemp: %m");
	}
	snprintf(q->qmp_path, sizeof(q->qmp_path), "%s/qmp.sock", q->dir);
	snprintf(q->log_path, sizeof(q->log_path), "%s/qemu.log", q->dir);

	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int lfd = -1;
	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", q->qmp_path) >= sizeof(sa.sun_path)) {
		remove_files(q);
		return fl_error_set(err, -ENAMETOOLONG, "QMP socket path too long");
	}
	/*
	 * Non-blocking on purpose. Seen here under load with a blocking
	 * listener: QEMU's main thread stuck in accept4 on an empty queue,
	 * the monitor silent, about once per 300 starts; never in 2250 with
	 * a non-blocking one. Our reading: QEMU 7.2 watches the listener from
	 * its main loop until the QMP monitor moves it to the monitor I/O
	 * thread, a connection arriving in that window wakes both, and the
	 * loser's accept() blocks (or, non-blocking, gets EAGAIN).
	 */
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 16) < 0) {
		int r = fl_error_set(err, -errno, "QMP listener %s: %m", q->qmp_path);
		remove_files(q);
		return r;
	}
	/* dup2() onto the same number would keep close-on-exec: move it
	 * out of the way first. */
	if (lfd == 3) {
		int n = fcntl(lfd, F_DUPFD_CLOEXEC, 10);
		close(lfd);
		lfd = n;
	}
	_cleanup_close_ int logfd = open(q->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (lfd < 0 || logfd < 0) {
		int r = fl_error_set(err, -errno, "QEMU setup: %m");
		remove_files(q);
		return r;
	}

	const char *qemu = getenv("FLUID_QEMU");
	if (!qemu || !*qemu)
		qemu = "qemu-system-x86_64";
	const char *argv[64];
	size_t n = 0;
	argv[n++] = qemu;
	argv[n++] = "-M";
	argv[n++] = machine ? machine : "none";
	argv[n++] = "-accel";
	argv[n++] = "tcg";
	argv[n++] = "-nodefaults";
	argv[n++] = "-no-user-config";
	argv[n++] = "-display";
	argv[n++] = "none";
	argv[n++] = "-S";
	argv[n++] = "-chardev";
	argv[n++] = "socket,id=qmp,fd=3,server=on,wait=off";
	argv[n++] = "-mon";
	argv[n++] = "chardev=qmp,mode=control";
	for (size_t i = 0; extra_args && extra_args[i] && n < FL_ARRAY_SIZE(argv) - 1; i++)
		argv[n++] = extra_args[i];
	argv[n] = NULL;

	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, logfd, 1);
	posix_spawn_file_actions_adddup2(&fa, logfd, 2);
	posix_spawn_file_actions_adddup2(&fa, lfd, 3);
	posix_spawnattr_t attr;
	posix_spawnattr_init(&attr);
	/* Default signal dispositions and mask in QEMU whatever the test does. */
	sigset_t none, dfl;
	sigemptyset(&none);
	sigemptyset(&dfl);
	static const int sigs[] = { SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGALRM, SIGUSR1, SIGUSR2 };
	for (size_t i = 0; i < FL_ARRAY_SIZE(sigs); i++)
		sigaddset(&dfl, sigs[i]);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &dfl);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

	int r = posix_spawnp(&q->pid, qemu, &fa, &attr, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (r != 0) {
		q->pid = 0;
		remove_files(q);
		return fl_error_set(err, -r, "spawn %s: %s", qemu, strerror(r));
	}
	return 0;
}

int test_qemu_reap(TestQemu *q)
{
	int status = 0;
	if (q->pid > 0) {
		while (waitpid(q->pid, &status, 0) < 0 && errno == EINTR)
			;
		q->pid = 0;
	}
	return status;
}

void test_qemu_stop(TestQemu *q)
{
	if (q->pid > 0) {
		kill(q->pid, SIGKILL);
		test_qemu_reap(q);
	}
	remove_files(q);
}
