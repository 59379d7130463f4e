/* SPDX-License-Identifier: MIT */
/*
 * vm: spawning and killing one QEMU process for a sandbox, template or
 * inspector. Builds the standard device set of docs/CONVENTIONS.md so that
 * templates and their clones always match, pre-creates the QMP and agent
 * listening sockets (passed to QEMU as fds, so fluid can connect at once
 * without waiting for QEMU to create them), and hands back a pidfd.
 */
#ifndef FL_VM_H
#define FL_VM_H

#include <stdbool.h>
#include <sys/types.h>

#include "error.h"

/* Version of the device set and kernel options below: part of every
 * template's key, since saved device state only loads into the same
 * devices (3: clocksource=hpet under TCG; 4: no guest announce, saved
 * after the guest's network settled, a rooted state for late-root images). */
#define FL_DEVICE_SET 4
/* Hot-plug ports (pcie-root-port hp0..hpN-1) for inspector disks. */
#define FL_HOTPLUG_PORTS 2

typedef enum FlBootMode {
	FL_BOOT_COLD,     /* direct kernel boot */
	FL_BOOT_INCOMING, /* load device state (and RAM unless shared) from incoming_path */
} FlBootMode;

typedef struct FlVmSpec {
	const char *run_dir;   /* sockets, console.log, pid file */
	const char *accel;     /* "kvm" or "tcg" */
	unsigned vcpus;
	unsigned memory_mb;
	const char *kernel, *initrd, *cmdline;
	const char *disk;      /* qcow2 path of the active layer */
	const char *ram_path;  /* file-backed RAM (templates, clones); NULL = anonymous */
	bool ram_shared;       /* share=on (template) or copy-on-write (clone) */
	FlBootMode boot;
	const char *incoming_path; /* state file for FL_BOOT_INCOMING */
	bool net_none;         /* user networking with restrict=on (no egress) */
	int tap_fd;            /* >= 0: tap backend (fl_tap_open) instead of user networking */
	int ssh_port;          /* host port forwarded to guest :22, 0 = none */
	unsigned tb_size_mb;   /* TCG translation buffer, 0 = QEMU default */
} FlVmSpec;

typedef struct FlVm {
	pid_t pid;
	int pidfd;             /* readable when QEMU exits; owned */
	char qmp_path[256], agent_path[256], console_path[256];
} FlVm;

/* Spawns QEMU. On success *vm is filled; the caller owns vm->pidfd. */
int fl_vm_spawn(const FlVmSpec *spec, FlVm *vm, FlError *err);

/* For FL_BOOT_INCOMING: loads the state file over QMP and resumes. */
int fl_vm_incoming(FlVm *vm, FlError *err);

struct QmpClient;
struct json_object;
/* Arguments for migrate-set-capabilities used by every save and load. */
struct json_object *fl_vm_migration_caps(void);
/* Waits for the MIGRATION event to reach completed (0) or failed. */
int fl_vm_wait_migration(struct QmpClient *c, unsigned timeout_ms, FlError *err);

/* SIGKILLs the process behind pidfd and reaps it. Accepts pidfd < 0. */
void fl_vm_kill(FlVm *vm);

/* Opens a pidfd for an existing QEMU whose command line names run_dir's
 * parent directory (guards against pid reuse). -ESRCH when it is gone. */
int fl_vm_adopt(pid_t pid, const char *run_dir, FlVm *vm);

/* Waits up to timeout_ms for the process to exit; 0 when it did. */
int fl_vm_wait_exit(FlVm *vm, int timeout_ms);

#endif
