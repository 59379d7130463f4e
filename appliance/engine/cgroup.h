/* SPDX-License-Identifier: MIT */
/* cgroup: per-sandbox memory/CPU/pids limits on cgroup v2 or v1 hosts. */
#ifndef FL_CGROUP_H
#define FL_CGROUP_H

#include <sys/types.h>

#include "engine.h"
#include "error.h"

typedef enum FlCgroupMode { FL_CGROUP_NONE, FL_CGROUP_V1, FL_CGROUP_V2 } FlCgroupMode;

typedef struct FlCgroupLimits {
	unsigned memory_mb; /* for the whole QEMU process */
	unsigned vcpus;     /* CPU quota: vcpus x 100% */
	unsigned pids;
} FlCgroupLimits;

/* Detected once; "none" when no hierarchy is usable. */
FlCgroupMode fl_cgroup_mode(void);
const char *fl_cgroup_mode_name(void);
/* Creates the group of sandbox id with lim and moves pid into it. */
int fl_cgroup_add(const char *id, pid_t pid, const FlCgroupLimits *lim, FlError *err);
/* Removes the (empty) group; the process must have exited. */
void fl_cgroup_remove(const char *id);

/*
 * egress.c: restricts the outbound connections of pid (the sandbox's QEMU)
 * to allow (network "allowlist"); the filter stays attached to the
 * sandbox's cgroup v2 group until fl_egress_remove() after the process
 * exited.
 */
int fl_egress_restrict(const char *id, pid_t pid, const FlNetAllow *allow, size_t n_allow,
		       FlError *err);
void fl_egress_remove(const char *id);

/*
 * tap.c: a new tap device, up, an isolated port of bridge; returns its fd
 * (for QEMU's -netdev tap,fd=) or -errno. The device goes away with the
 * last fd.
 */
int fl_tap_open(const char *bridge, FlError *err);

#endif
