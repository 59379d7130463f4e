/* SPDX-License-Identifier: MIT */
/*
 * Test helpers shared by integration tests and benches: boot a fluid image
 * (build/images/<name>, or $FLUID_IMAGE_DIR/<name>) under QEMU with the
 * standard device set of docs/CONVENTIONS.md on a throw-away qcow2 overlay,
 * and connect its guest agent.
 *
 * DESIGN: one QEMU process per TestVm, started with posix_spawn and killed
 * by its pid only (never by name). Everything lives in a private run
 * directory under /tmp that testvm_destroy() removes.
 */
#ifndef FL_TESTVM_H
#define FL_TESTVM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent-client.h"
#include "error.h"

typedef struct TestVmOptions {
	const char *image;          /* "tiny", "debian-12", ... */
	const char *accel;          /* NULL: "tcg" (nested KVM does not boot here) */
	unsigned memory_mb;         /* 0: image.json memory_mb */
	bool ssh;                   /* forward a free 127.0.0.1 port to guest :22 */
	unsigned boot_timeout_ms;   /* 0: 60 s for tiny, 600 s otherwise */
	bool no_agent;              /* do not wait for the agent */
	/* Templates and clones (DESIGN.md "Template cloning"): guest RAM in
	 * mem_file (shared with the file when mem_share), the overlay on
	 * base_disk instead of the image's disk, and -incoming defer (implies
	 * no_agent: connect after migrate-incoming + cont). */
	const char *mem_file;
	bool mem_share;
	const char *base_disk;
	bool incoming;
} TestVmOptions;

typedef struct TestVm {
	pid_t pid;                  /* QEMU */
	char image[64];
	char image_dir[512];
	char run_dir[128];
	char agent_sock[192];
	char qmp_sock[192];
	char console[192];
	int ssh_port;               /* 0 without ssh */
	AgentClient *agent;         /* connected and ready, NULL with no_agent */
	uint64_t spawn_ms;          /* agent_now_ms() when QEMU was started */
	uint64_t ready_ms;          /* ... when the agent answered its hello */
} TestVm;

/* Resolves the directory of image name; -ENOENT if it is not built. */
int testvm_image_dir(const char *name, char *buf, size_t size, FlError *err);
/* Boots a VM and (unless no_agent) connects its agent. On failure the VM is
 * cleaned up and err says why (console tail included). */
int testvm_start(const TestVmOptions *opts, TestVm **ret, FlError *err);
/* Closes the agent connection and opens a new one (new hello). */
int testvm_reconnect(TestVm *vm, unsigned timeout_ms, FlError *err);
/* Kills QEMU (by pid) and waits for it; files stay. */
void testvm_kill(TestVm *vm);
/* Kills QEMU (by pid), removes the run directory. Accepts NULL. */
void testvm_destroy(TestVm *vm);
/* Last bytes of the console log, for failure messages. */
void testvm_console_tail(const TestVm *vm, char *buf, size_t size);

/* Path of the repository root ($FLUID_ROOT or the current directory). */
const char *testvm_root(void);

#include "sha256.h" /* for checking streams */

#endif
