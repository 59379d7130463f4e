// SPDX-License-Identifier: MIT
/*
 * cgroup: per-sandbox resource limits for the QEMU process: memory (guest
 * RAM plus QEMU's own overhead), CPU (vCPUs x 100%) and pids.
 *
 * cgroup v2 (unified hierarchy, Debian 12's default): a group per sandbox
 * under <root>/fluid with memory.max, cpu.max and pids.max. cgroup v1
 * (these development machines): the same group under each of the memory,
 * cpu and pids hierarchies, nested below fluid's own group so that the
 * sandboxes stay inside whatever limits fluid itself runs under. Where no
 * hierarchy is usable (no permission, no controllers) sandboxes run without
 * limits and fl_cgroup_mode() says "none".
 *
 * The QEMU process is moved into its group right after spawn; the few
 * milliseconds before that are not accounted.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgroup.h"
#include "cleanup.h"

#define CG "/sys/fs/cgroup"
static const char *const v1_ctrls[] = {"memory", "cpu", "pids"};

static int write_str(const char *path, const char *s)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	return write(fd, s, strlen(s)) == (ssize_t)strlen(s) ? 0 : -errno;
}

/* fluid's own group in a v1 hierarchy ("" for the root). */
static void own_group(const char *ctrl, char *out, size_t len)
{
	out[0] = 0;
	_cleanup_fclose_ FILE *f = fopen("/proc/self/cgroup", "re");
	char line[1024];
	while (f && fgets(line, sizeof(line), f)) {
		char *a = strchr(line, ':'), *b = a ? strchr(a + 1, ':') : NULL;
		if (!b)
			continue;
		*b = 0;
		b[strcspn(b + 1, "\n") + 1] = 0;
		/* the controllers field may list several: "cpu,cpuacct" */
		char *tok, *save = NULL;
		for (tok = strtok_r(a + 1, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
			if (!strcmp(tok, ctrl)) {
				snprintf(out, len, "%s", strcmp(b + 1, "/") ? b + 1 : "");
				return;
			}
	}
}

FlCgroupMode fl_cgroup_mode(void)
{
	static int mode = -1;
	if (mode >= 0)
		return (FlCgroupMode)mode;
	mode = FL_CGROUP_NONE;
	if (access(CG "/cgroup.controllers", R_OK) == 0) {
		/* Pure v2: make the controllers available to our groups. */
		mkdir(CG "/fluid", 0755);
		write_str(CG "/cgroup.subtree_control", "+memory +pids +cpu");
		if (write_str(CG "/fluid/cgroup.subtree_control", "+memory +pids +cpu") == 0)
			mode = FL_CGROUP_V2;
	} else if (access(CG "/memory/cgroup.procs", W_OK) == 0 && access(CG "/pids/cgroup.procs", W_OK) == 0) {
		mode = FL_CGROUP_V1;
	}
	return (FlCgroupMode)mode;
}

const char *fl_cgroup_mode_name(void)
{
	static const char *const names[] = {"none", "v1", "v2"};
	return names[fl_cgroup_mode()];
}

static void v1_dir(const char *ctrl, const char *id, char *out, size_t len)
{
	char own[512];
	own_group(ctrl, own, sizeof(own));
	snprintf(out, len, CG "/%s%s/fluid%s%s", ctrl, own, id ? "/" : "", id ? id : "");
}

int fl_cgroup_add(const char *id, pid_t pid, const FlCgroupLimits *lim, FlError *err)
{
	char path[PATH_MAX], val[64], pidstr[24];
	snprintf(pidstr, sizeof(pidstr), "%d", pid);
	unsigned long long mem = (unsigned long long)lim->memory_mb << 20;
	switch (fl_cgroup_mode()) {
	case FL_CGROUP_NONE:
		return 0;
	case FL_CGROUP_V2: {
		char dir[PATH_MAX];
		snprintf(dir, sizeof(dir), CG "/fluid/%s", id);
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			return fl_error_set(err, -errno, "cgroup %s: %m", dir);
		snprintf(path, sizeof(path), "%s/memory.max", dir);
		snprintf(val, sizeof(val), "%llu", mem);
		int r = write_str(path, val);
		snprintf(path, sizeof(path), "%s/cpu.max", dir);
		snprintf(val, sizeof(val), "%u 100000", lim->vcpus * 100000);
		r = r ?: write_str(path, val);
		snprintf(path, sizeof(path), "%s/pids.max", dir);
		snprintf(val, sizeof(val), "%u", lim->pids);
		r = r ?: write_str(path, val);
		snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
		r = r ?: write_str(path, pidstr);
		return r < 0 ? fl_error_set(err, r, "cgroup %s: %s", dir, strerror(-r)) : 0;
	}
	case FL_CGROUP_V1:
		break;
	}
	for (size_t i = 0; i < FL_ARRAY_SIZE(v1_ctrls); i++) {
		const char *c = v1_ctrls[i];
		char dir[PATH_MAX];
		v1_dir(c, NULL, dir, sizeof(dir));
		mkdir(dir, 0755);
		v1_dir(c, id, dir, sizeof(dir));
		if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
			if (!strcmp(c, "cpu"))
				continue; /* cpu may be absent; memory and pids are what matter */
			return fl_error_set(err, -errno, "cgroup %s: %m", dir);
		}
		int r = 0;
		if (!strcmp(c, "memory")) {
			snprintf(path, sizeof(path), "%s/memory.limit_in_bytes", dir);
			snprintf(val, sizeof(val), "%llu", mem);
			r = write_str(path, val);
		} else if (!strcmp(c, "cpu")) {
			snprintf(path, sizeof(path), "%s/cpu.cfs_quota_us", dir);
			snprintf(val, sizeof(val), "%u", lim->vcpus * 100000);
			write_str(path, val); /* best effort: needs cfs bandwidth */
		} else {
			snprintf(path, sizeof(path), "%s/pids.max", dir);
			snprintf(val, sizeof(val), "%u", lim->pids);
			r = write_str(path, val);
		}
		snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
		r = r ?: write_str(path, pidstr);
		if (r < 0)
			return fl_error_set(err, r, "cgroup %s: %s", dir, strerror(-r));
	}
	return 0;
}

void fl_cgroup_remove(const char *id)
{
	char dir[PATH_MAX];
	switch (fl_cgroup_mode()) {
	case FL_CGROUP_NONE:
		return;
	case FL_CGROUP_V2:
		snprintf(dir, sizeof(dir), CG "/fluid/%s", id);
		rmdir(dir);
		return;
	case FL_CGROUP_V1:
		for (size_t i = 0; i < FL_ARRAY_SIZE(v1_ctrls); i++) {
			v1_dir(v1_ctrls[i], id, dir, sizeof(dir));
			rmdir(dir);
		}
		return;
	}
}
