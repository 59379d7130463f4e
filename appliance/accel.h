/* SPDX-License-Identifier: MIT */
/*
 * accel: decides whether sandboxes run under KVM or TCG.
 *
 * /dev/kvm existing is not enough: under some nested hypervisors KVM guests
 * run so slowly that they never get through early boot. So in "auto" mode
 * fluid boots a tiny probe guest (a boot sector that enters long mode, runs
 * a short memory-bound loop and writes a marker to the serial port) under
 * KVM with a deadline. The answer and its reason are cached in
 * STATE/accel.json, keyed by the probe version, the QEMU version, the kernel
 * release, /dev/kvm presence and the deadline, so later starts are instant.
 * "accelerator: kvm|tcg" in the config (or FLUID_ACCEL) skips the probe.
 *
 * The engine gets its answer from fl_accel_decide() once at start-up (the
 * server does this and keeps the FlAccelInfo; fl_accel_name(info.kind) is
 * the string for QEMU's -accel).
 */
#ifndef FL_ACCEL_H
#define FL_ACCEL_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "error.h"

typedef enum FlAccelKind {
	FL_ACCEL_TCG = 0,
	FL_ACCEL_KVM = 1,
} FlAccelKind;

typedef struct FlAccelInfo {
	FlAccelKind kind;
	char reason[256];        /* e.g. "kvm probe: no guest output within 3000 ms" */
	char qemu_version[64];   /* e.g. "7.2.19", "" if unknown */
	char kernel_release[128];
	bool kvm_device;         /* /dev/kvm exists */
	bool cached;             /* answer came from STATE/accel.json */
	bool probed;             /* a probe ran (now or when the cache was written) */
	char decided_at[32];     /* UTC, ISO 8601 */
} FlAccelInfo;

/* "kvm" or "tcg": what QEMU's -accel takes. */
const char *fl_accel_name(FlAccelKind k);

/*
 * Decides the accelerator for cfg (mode, probe deadline, qemu binary, state
 * dir for the cache). May take up to cfg->accel_probe_timeout_ms plus QEMU
 * start-up when it probes. Errors: -ENODEV when "kvm" is forced but
 * /dev/kvm is unusable, -ENOENT when QEMU cannot be run.
 */
int fl_accel_decide(const FlConfig *cfg, FlAccelInfo *ret, FlError *err);

/* ---- The probe itself (public for tests and `fluid accel probe`). ---- */

#define FL_ACCEL_PROBE_MARKER "FLUID-PROBE-OK"
#define FL_ACCEL_PROBE_IMAGE_SIZE (1u << 20) /* SeaBIOS wants a few cylinders */

typedef struct FlAccelProbeResult {
	bool ok;             /* the marker arrived before the deadline */
	bool timed_out;      /* the deadline passed first */
	unsigned elapsed_ms; /* from spawn to marker, exit or deadline */
	int exit_status;     /* QEMU's exit status if it exited by itself, else -1 */
	char stages[8];      /* stage characters the guest printed: 1 real, 2 protected, 3 long mode */
	char qemu_stderr[120]; /* first line QEMU printed on stderr (truncated) */
	char reason[200];    /* human summary, e.g. "no guest output within 3000 ms" */
} FlAccelProbeResult;

/* Writes the probe disk image (FL_ACCEL_PROBE_IMAGE_SIZE bytes) to fd. */
int fl_accel_write_probe_image(int fd);

/*
 * Boots the probe guest with "-accel accel" and waits (poll on the serial
 * pipe and a pidfd) until the marker, QEMU's exit or timeout_ms. The image
 * is a memfd passed to QEMU as fd 3. QEMU is always killed and
 * reaped before return. Returns 0 when the probe ran (see ret->ok), -errno
 * when it could not run (err says why).
 */
int fl_accel_probe(const char *qemu, const char *accel, unsigned timeout_ms,
		   FlAccelProbeResult *ret, FlError *err);

/* Runs `qemu --version` and extracts "7.2.19". */
int fl_accel_qemu_version(const char *qemu, char *buf, size_t len, FlError *err);

/* 0 when /dev/kvm can be opened and speaks API 12; else -errno and why. */
int fl_accel_kvm_check(char *why, size_t len);

/* ---- Decision logic with injectable effects (unit tests use fakes). ---- */

typedef struct FlAccelOps {
	int (*qemu_version)(void *ud, char *buf, size_t len, FlError *err);
	bool (*kvm_present)(void *ud);
	int (*kvm_check)(void *ud, char *why, size_t len);
	int (*probe)(void *ud, const char *accel, unsigned timeout_ms, FlAccelProbeResult *ret,
		     FlError *err);
	void *ud;
	const char *kernel_release;
} FlAccelOps;

/* cache_path NULL = no cache. */
int fl_accel_decide_with(FlAccelMode mode, unsigned timeout_ms, const char *cache_path,
			 const FlAccelOps *ops, FlAccelInfo *ret, FlError *err);

#endif
