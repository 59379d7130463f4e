// SPDX-License-Identifier: MIT
/*
 * egress: the "allowlist" network mode. A sandbox's user-mode network
 * (libslirp inside its QEMU process) opens ordinary host sockets for the
 * guest's outbound TCP connections and UDP datagrams, so the host kernel
 * can decide which of them may leave: fluid attaches cgroup socket-address
 * programs (BPF_PROG_TYPE_CGROUP_SOCK_ADDR) to the QEMU process's cgroup v2
 * group that allow connect()/sendmsg() only to the listed IPv4
 * networks and port ranges and refuse everything else with EPERM (the guest
 * sees its connection fail). IPv6 is refused entirely in this mode.
 *
 * DESIGN: the programs are tiny and generated here (no libbpf, no
 * compiler): load the destination address and port from the context,
 * compare them against each entry, return 1 (allow) or 0 (refuse). They
 * are attached with BPF_PROG_ATTACH, which keeps them attached for the
 * life of the group: they outlive fluid (VMs survive restarts) and go away
 * when the group is removed with the sandbox. The group is the sandbox's
 * cgroup v2 group: the one fl_cgroup_add made on pure v2 hosts, or one in
 * the hybrid layout's unified hierarchy (/sys/fs/cgroup/unified) on v1
 * hosts. The process is in the group before the guest runs, so nothing
 * can slip out first.
 *
 * Inside user networking the guest reaches the host's loopback as
 * 10.0.2.2; libslirp then connects to 127.0.0.1. An entry covering
 * 10.0.2.2 therefore also allows 127.0.0.1 with the same ports, so entries
 * can be written the way the guest sees them.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/bpf.h>
#include <linux/magic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cgroup.h"
#include "cleanup.h"

#define CG "/sys/fs/cgroup"
#define SLIRP_HOST 0x0a000202u /* 10.0.2.2 */
#define LOOPBACK 0x7f000001u

/* Instructions per entry and around them (see gen_v4). */
#define ENTRY_INSNS 7
#define MAX_INSNS (5 + 2 * (FL_NET_ALLOW_MAX + 1) * ENTRY_INSNS + 2)

static struct bpf_insn insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm)
{
	return (struct bpf_insn){.code = code, .dst_reg = dst, .src_reg = src, .off = off, .imm = imm};
}

static uint32_t prefix_mask(unsigned prefix)
{
	return prefix ? ~0u << (32 - prefix) : 0;
}

static bool covers(const FlNetAllow *a, uint32_t ip)
{
	return (ip & prefix_mask(a->prefix)) == (a->addr & prefix_mask(a->prefix));
}

static size_t gen_entry(struct bpf_insn *p, uint32_t addr, unsigned prefix, unsigned lo, unsigned hi)
{
	uint32_t mask = prefix_mask(prefix);
	size_t n = 0;
	p[n++] = insn(BPF_ALU64 | BPF_MOV | BPF_X, 4, 2, 0, 0);                  /* r4 = ip */
	p[n++] = insn(BPF_ALU | BPF_AND | BPF_K, 4, 0, 0, (int32_t)mask);         /* r4 &= mask */
	p[n++] = insn(BPF_JMP32 | BPF_JNE | BPF_K, 4, 0, 4, (int32_t)(addr & mask)); /* -> next */
	p[n++] = insn(BPF_JMP | BPF_JLT | BPF_K, 3, 0, 3, (int32_t)lo);           /* port < lo */
	p[n++] = insn(BPF_JMP | BPF_JGT | BPF_K, 3, 0, 2, (int32_t)hi);           /* port > hi */
	p[n++] = insn(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 1);                   /* allow */
	p[n++] = insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
	return n;
}

/* The IPv4 program: allow when some entry matches, else refuse. */
static size_t gen_v4(struct bpf_insn *p, const FlNetAllow *allow, size_t n_allow)
{
	size_t n = 0;
	p[n++] = insn(BPF_ALU64 | BPF_MOV | BPF_X, 6, 1, 0, 0); /* r6 = ctx */
	p[n++] = insn(BPF_LDX | BPF_MEM | BPF_W, 2, 6, offsetof(struct bpf_sock_addr, user_ip4), 0);
	p[n++] = insn(BPF_ALU | BPF_END | BPF_TO_BE, 2, 0, 0, 32);  /* network -> host order */
	p[n++] = insn(BPF_LDX | BPF_MEM | BPF_W, 3, 6, offsetof(struct bpf_sock_addr, user_port), 0);
	p[n++] = insn(BPF_ALU | BPF_END | BPF_TO_BE, 3, 0, 0, 16);
	for (size_t i = 0; i < n_allow; i++) {
		const FlNetAllow *a = &allow[i];
		n += gen_entry(p + n, a->addr, a->prefix, a->port_lo, a->port_hi);
		if (covers(a, SLIRP_HOST))
			n += gen_entry(p + n, LOOPBACK, 32, a->port_lo, a->port_hi);
	}
	p[n++] = insn(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0); /* refuse */
	p[n++] = insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
	return n;
}

static int load_attach(int cg_fd, enum bpf_attach_type type, const struct bpf_insn *p, size_t n,
		       FlError *err)
{
	char log[4096] = "";
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.prog_type = BPF_PROG_TYPE_CGROUP_SOCK_ADDR;
	a.expected_attach_type = type;
	a.insns = (uintptr_t)p;
	a.insn_cnt = (uint32_t)n;
	a.license = (uintptr_t) "Dual MIT/GPL";
	a.log_buf = (uintptr_t)log;
	a.log_size = sizeof(log);
	a.log_level = 1;
	_cleanup_close_ int prog = (int)syscall(SYS_bpf, BPF_PROG_LOAD, &a, sizeof(a));
	if (prog < 0) {
		int r = -errno;
		if (r == -EPERM)
			return fl_error_set(err, r, "network allowlist needs a host where fluid may load "
						    "cgroup BPF programs (root, CAP_BPF + CAP_NET_ADMIN)");
		return fl_error_set(err, r, "network allowlist: loading the filter failed: %s%s%.200s",
				    strerror(-r), log[0] ? ": " : "", log);
	}
	memset(&a, 0, sizeof(a));
	a.target_fd = (uint32_t)cg_fd;
	a.attach_bpf_fd = (uint32_t)prog;
	a.attach_type = type;
	if (syscall(SYS_bpf, BPF_PROG_ATTACH, &a, sizeof(a)) < 0)
		return fl_error_set(err, -errno, "network allowlist: attaching the filter failed: %m");
	return 0;
}

/* The sandbox's cgroup v2 group (created on hybrid hosts), pid moved in. */
static int v2_group(const char *id, pid_t pid, char *dir, size_t len, FlError *err)
{
	if (fl_cgroup_mode() == FL_CGROUP_V2) {
		snprintf(dir, len, CG "/fluid/%s", id); /* fl_cgroup_add made it */
		return 0;
	}
	struct statfs sf;
	if (statfs(CG "/unified", &sf) < 0 || sf.f_type != CGROUP2_SUPER_MAGIC)
		return fl_error_set(err, -EOPNOTSUPP,
				    "network allowlist needs cgroup v2 (unified or hybrid hierarchy)");
	mkdir(CG "/unified/fluid", 0755);
	snprintf(dir, len, CG "/unified/fluid/%s", id);
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return fl_error_set(err, -errno, "cgroup %s: %m", dir);
	char path[PATH_MAX], pidstr[24];
	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	int n = snprintf(pidstr, sizeof(pidstr), "%d", pid);
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, pidstr, (size_t)n) != n)
		return fl_error_set(err, -errno, "cgroup %s: %m", dir);
	return 0;
}

int fl_egress_restrict(const char *id, pid_t pid, const FlNetAllow *allow, size_t n_allow,
		       FlError *err)
{
	if (n_allow > FL_NET_ALLOW_MAX)
		return fl_error_set(err, -E2BIG, "at most %d allowlist entries", FL_NET_ALLOW_MAX);
	char dir[PATH_MAX];
	int r = v2_group(id, pid, dir, sizeof(dir), err);
	if (r < 0)
		return r;
	_cleanup_close_ int cg = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cg < 0)
		return fl_error_set(err, -errno, "cgroup %s: %m", dir);
	struct bpf_insn v4[MAX_INSNS], none[2];
	size_t n4 = gen_v4(v4, allow, n_allow);
	none[0] = insn(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0);
	none[1] = insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
	r = load_attach(cg, BPF_CGROUP_INET4_CONNECT, v4, n4, err);
	r = r ?: load_attach(cg, BPF_CGROUP_UDP4_SENDMSG, v4, n4, err);
	r = r ?: load_attach(cg, BPF_CGROUP_INET6_CONNECT, none, 2, err);
	r = r ?: load_attach(cg, BPF_CGROUP_UDP6_SENDMSG, none, 2, err);
	return r;
}

void fl_egress_remove(const char *id)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), CG "/unified/fluid/%s", id);
	rmdir(dir);
}

/* Decimal digits only (no sign, no space), at most max. */
static bool num(const char **p, unsigned max, unsigned *ret)
{
	unsigned v = 0;
	const char *q = *p;
	if (*q < '0' || *q > '9')
		return false;
	for (; *q >= '0' && *q <= '9'; q++)
		if ((v = v * 10 + (unsigned)(*q - '0')) > max)
			return false;
	*p = q;
	*ret = v;
	return true;
}

int fl_net_allow_parse(const char *s, FlNetAllow *ret, FlError *err)
{
	/* A.B.C.D[/P][:PORT[-PORT]] */
	unsigned o[4], prefix = 32, lo = 0, hi = 65535;
	const char *p = s;
	for (int i = 0; i < 4; i++)
		if (!num(&p, 255, &o[i]) || (i < 3 && *p++ != '.'))
			goto bad;
	if (*p == '/' && (++p, !num(&p, 32, &prefix)))
		goto bad;
	if (*p == ':') {
		p++;
		if (!num(&p, 65535, &lo))
			goto bad;
		hi = lo;
		if (*p == '-' && (++p, !num(&p, 65535, &hi)))
			goto bad;
		if (lo > hi)
			goto bad;
	}
	if (*p)
		goto bad;
	ret->addr = o[0] << 24 | o[1] << 16 | o[2] << 8 | o[3];
	ret->prefix = prefix;
	ret->port_lo = lo;
	ret->port_hi = hi;
	return 0;
bad:
	return fl_error_set(err, -EINVAL,
			    "bad allowlist entry \"%.64s\": use A.B.C.D[/PREFIX][:PORT[-PORT]]", s);
}

void fl_net_allow_format(const FlNetAllow *a, char *buf, size_t len)
{
	snprintf(buf, len, "%u.%u.%u.%u/%u:%u-%u", a->addr >> 24, (a->addr >> 16) & 255,
		 (a->addr >> 8) & 255, a->addr & 255, a->prefix, a->port_lo, a->port_hi);
}
