/* SPDX-License-Identifier: MIT */
/*
 * Test/benchmark support: a throw-away QEMU with a QMP monitor, for
 * libqmp's integration test and the qmp_rtt benchmark. Not product code.
 *
 * The QMP socket is bound and listening before QEMU starts (QEMU inherits
 * the listening fd through -chardev socket,fd=3), so a client may connect
 * at once: no waiting for the socket file to appear, no retry loop. The
 * listener must be non-blocking (see qemu-spawn.c and docs/qmp.md).
 */
#ifndef FL_QEMU_SPAWN_H
#define FL_QEMU_SPAWN_H

#include <sys/types.h>

#include "error.h"

typedef struct TestQemu {
	pid_t pid;          /* 0 once reaped */
	char dir[64];       /* mkdtemp() run directory */
	char qmp_path[128]; /* dir/qmp.sock */
	char log_path[128]; /* dir/qemu.log (QEMU's stdout and stderr) */
} TestQemu;

/*
 * Starts qemu-system-x86_64 ($FLUID_QEMU overrides) paused (-S) under TCG
 * with -M machine (NULL = "none"), -nodefaults -no-user-config -display
 * none, plus extra_args (NULL-terminated, may be NULL).
 */
int test_qemu_start(TestQemu *q, const char *machine, const char *const *extra_args, FlError *err);

/* SIGKILLs QEMU if it still runs, reaps it, removes every file. Idempotent. */
void test_qemu_stop(TestQemu *q);

/* Reaps QEMU after it was killed by someone else; returns its wait status. */
int test_qemu_reap(TestQemu *q);

#endif
