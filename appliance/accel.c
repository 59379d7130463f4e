// SPDX-License-Identifier: MIT
/*
 * accel: KVM/TCG decision by probe guest, with a cache in the state dir.
 *
 * DESIGN: the probe guest is a 512-byte boot sector built below from
 * hand-assembled x86 code (SeaBIOS loads it at 0x7c00). It prints '1' in
 * real mode, switches to protected mode and prints '2', builds an identity
 * map of the first 2 MiB, enters long mode and prints '3', then runs a
 * memory-bound loop of 5 million iterations (a few ms on real KVM and under
 * TCG; on the broken nested KVM of our development machines every
 * iteration costs microseconds, the same slowness that keeps Linux from
 * getting through early boot) and finally prints FL_ACCEL_PROBE_MARKER.
 * QEMU's serial port is a pipe (-chardev stdio) and the parent waits with
 * poll() on that pipe, QEMU's stderr and a pidfd, against one monotonic
 * deadline. No shell, no sleeps. The decision logic is separate from these
 * effects (FlAccelOps) so unit tests drive it with fakes.
 */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <linux/kvm.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "accel.h"
#include "cleanup.h"
#include "state.h"

extern char **environ;

/* Bump when the probe guest or the decision rules change: invalidates caches. */
#define PROBE_VERSION 1
#define PROBE_LOOP_ITERATIONS 5000000u

const char *fl_accel_name(FlAccelKind k) { return k == FL_ACCEL_KVM ? "kvm" : "tcg"; }

/* ---- Probe image ------------------------------------------------------ */

/* Offsets inside the boot sector (loaded at 0x7c00). */
#define PROBE_GDT_OFF 0xd0
#define PROBE_GDTR_OFF 0xf0
#define PROBE_MSG_OFF 0xf6

/* clang-format off */
static const uint8_t probe_code[] = {
	/* 0x00, 16-bit real mode */
	0xfa,                               /* cli */
	0x31, 0xc0,                         /* xor ax,ax */
	0x8e, 0xd8,                         /* mov ds,ax */
	0x8e, 0xc0,                         /* mov es,ax */
	0x8e, 0xd0,                         /* mov ss,ax */
	0xbc, 0x00, 0x7c,                   /* mov sp,0x7c00 */
	0xba, 0xf8, 0x03,                   /* mov dx,0x3f8 (COM1 data) */
	0xb0, '1',                          /* mov al,'1' */
	0xee,                               /* out dx,al */
	0xe4, 0x92,                         /* in al,0x92 (fast A20) */
	0x0c, 0x02,                         /* or al,2 */
	0xe6, 0x92,                         /* out 0x92,al */
	0x66, 0x0f, 0x01, 0x16, 0xf0, 0x7c, /* lgdt [0x7c00+PROBE_GDTR_OFF] */
	0x0f, 0x20, 0xc0,                   /* mov eax,cr0 */
	0x66, 0x83, 0xc8, 0x01,             /* or eax,1 (PE) */
	0x0f, 0x22, 0xc0,                   /* mov cr0,eax */
	0x66, 0xea, 0x30, 0x7c, 0x00, 0x00, 0x08, 0x00, /* jmp 0x08:0x7c30 */
	/* 0x30, 32-bit protected mode */
	0x66, 0xb8, 0x10, 0x00,             /* mov ax,0x10 */
	0x8e, 0xd8,                         /* mov ds,ax */
	0x8e, 0xc0,                         /* mov es,ax */
	0x8e, 0xd0,                         /* mov ss,ax */
	0x66, 0xba, 0xf8, 0x03,             /* mov dx,0x3f8 */
	0xb0, '2',                          /* mov al,'2' */
	0xee,                               /* out dx,al */
	0xbf, 0x00, 0x10, 0x00, 0x00,       /* mov edi,0x1000 */
	0x31, 0xc0,                         /* xor eax,eax */
	0xb9, 0x00, 0x0c, 0x00, 0x00,       /* mov ecx,3072: clear 0x1000-0x3fff */
	0xf3, 0xab,                         /* rep stosd */
	0xc7, 0x05, 0x00, 0x10, 0x00, 0x00, 0x03, 0x20, 0x00, 0x00, /* PML4[0] = 0x2000|3 */
	0xc7, 0x05, 0x00, 0x20, 0x00, 0x00, 0x03, 0x30, 0x00, 0x00, /* PDPT[0] = 0x3000|3 */
	0xc7, 0x05, 0x00, 0x30, 0x00, 0x00, 0x83, 0x00, 0x00, 0x00, /* PD[0] = 2 MiB page */
	0x0f, 0x20, 0xe0,                   /* mov eax,cr4 */
	0x83, 0xc8, 0x20,                   /* or eax,0x20 (PAE) */
	0x0f, 0x22, 0xe0,                   /* mov cr4,eax */
	0xb8, 0x00, 0x10, 0x00, 0x00,       /* mov eax,0x1000 */
	0x0f, 0x22, 0xd8,                   /* mov cr3,eax */
	0xb9, 0x80, 0x00, 0x00, 0xc0,       /* mov ecx,0xc0000080 (EFER) */
	0x0f, 0x32,                         /* rdmsr */
	0x0d, 0x00, 0x01, 0x00, 0x00,       /* or eax,0x100 (LME) */
	0x0f, 0x30,                         /* wrmsr */
	0x0f, 0x20, 0xc0,                   /* mov eax,cr0 */
	0x0d, 0x00, 0x00, 0x00, 0x80,       /* or eax,0x80000000 (PG) */
	0x0f, 0x22, 0xc0,                   /* mov cr0,eax */
	0xea, 0x9e, 0x7c, 0x00, 0x00, 0x18, 0x00, /* jmp 0x18:0x7c9e */
	/* 0x9e, 64-bit long mode */
	0x66, 0xba, 0xf8, 0x03,             /* mov dx,0x3f8 */
	0xb0, '3',                          /* mov al,'3' */
	0xee,                               /* out dx,al */
	0xb9,                               /* mov ecx,PROBE_LOOP_ITERATIONS */
	PROBE_LOOP_ITERATIONS & 0xff, (PROBE_LOOP_ITERATIONS >> 8) & 0xff,
	(PROBE_LOOP_ITERATIONS >> 16) & 0xff, PROBE_LOOP_ITERATIONS >> 24,
	/* 0xaa: loop */
	0x89, 0xcb,                         /* mov ebx,ecx */
	0x81, 0xe3, 0xff, 0xff, 0x00, 0x00, /* and ebx,0xffff */
	0x48, 0x89, 0x0c, 0x1d, 0x00, 0x00, 0x01, 0x00, /* mov [rbx+0x10000],rcx */
	0xff, 0xc9,                         /* dec ecx */
	0x75, 0xec,                         /* jnz loop */
	0x48, 0x8d, 0x35, 0x31, 0x00, 0x00, 0x00, /* lea rsi,[rip+msg] (0x7cf6) */
	/* 0xc5: print */
	0xac,                               /* lodsb */
	0x84, 0xc0,                         /* test al,al */
	0x74, 0x03,                         /* jz halt */
	0xee,                               /* out dx,al */
	0xeb, 0xf8,                         /* jmp print */
	/* 0xcd: halt */
	0xf4,                               /* hlt */
	0xeb, 0xfd,                         /* jmp halt */
};
/* clang-format on */

_Static_assert(sizeof(probe_code) <= PROBE_GDT_OFF, "probe code overlaps the GDT");

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void build_boot_sector(uint8_t sector[512])
{
	static const char msg[] = FL_ACCEL_PROBE_MARKER "\r\n";

	memset(sector, 0, 512);
	memcpy(sector, probe_code, sizeof(probe_code));
	/* GDT: null, 32-bit code (0x08), data (0x10), 64-bit code (0x18). */
	put_le64(sector + PROBE_GDT_OFF + 0, 0);
	put_le64(sector + PROBE_GDT_OFF + 8, 0x00cf9a000000ffffull);
	put_le64(sector + PROBE_GDT_OFF + 16, 0x00cf92000000ffffull);
	put_le64(sector + PROBE_GDT_OFF + 24, 0x00af9a000000ffffull);
	/* GDTR: limit, base. */
	sector[PROBE_GDTR_OFF] = 4 * 8 - 1;
	sector[PROBE_GDTR_OFF + 1] = 0;
	uint32_t base = 0x7c00 + PROBE_GDT_OFF;
	for (int i = 0; i < 4; i++)
		sector[PROBE_GDTR_OFF + 2 + i] = (uint8_t)(base >> (8 * i));
	memcpy(sector + PROBE_MSG_OFF, msg, sizeof(msg)); /* includes the NUL */
	sector[510] = 0x55;
	sector[511] = 0xaa;
}

_Static_assert(PROBE_MSG_OFF + sizeof(FL_ACCEL_PROBE_MARKER "\r\n") <= 510, "probe message too long");

int fl_accel_write_probe_image(int fd)
{
	uint8_t sector[512];
	build_boot_sector(sector);
	if (ftruncate(fd, 0) < 0)
		return -errno;
	size_t off = 0;
	while (off < sizeof(sector)) {
		ssize_t k = pwrite(fd, sector + off, sizeof(sector) - off, (off_t)off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		off += (size_t)k;
	}
	/* Sparse tail: SeaBIOS refuses disks smaller than a cylinder. */
	if (ftruncate(fd, FL_ACCEL_PROBE_IMAGE_SIZE) < 0)
		return -errno;
	return 0;
}

/* ---- Spawning QEMU and waiting on it ---------------------------------- */

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

typedef struct SpawnResult {
	bool marker_seen;
	bool timed_out;
	int exit_status; /* -1 = we killed it */
	unsigned elapsed_ms;
	char out[4096];
	size_t out_len;
	char err[1024];
	size_t err_len;
} SpawnResult;

static void closep_pair(int fds[2])
{
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

static int pidfd_open_compat(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

/*
 * Runs argv (PATH lookup), stdin from /dev/null, collecting stdout/stderr up to
 * their buffers, until it exits, stdout contains marker (if non-NULL), or
 * timeout_ms. The child is killed and reaped before return.
 */
static int spawn_wait(char *const argv[], int pass_fd, const char *marker, unsigned timeout_ms,
		      SpawnResult *res, FlError *err)
{
	int out[2] = {-1, -1}, errp[2] = {-1, -1};
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, dfl;
	pid_t pid;
	int r;

	memset(res, 0, sizeof(*res));
	res->exit_status = -1;
	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
		r = -errno;
		closep_pair(out);
		closep_pair(errp);
		return fl_error_set(err, r, "pipe: %s", strerror(-r));
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
	/* dup2 gives the child a copy without O_CLOEXEC; the original stays close-on-exec. */
	if (pass_fd >= 0)
		posix_spawn_file_actions_adddup2(&fa, pass_fd, 3);
	/* The server blocks SIGTERM/SIGINT in all threads; the child must not inherit that. */
	posix_spawnattr_init(&attr);
	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGPIPE);
	sigaddset(&dfl, SIGTERM);
	sigaddset(&dfl, SIGINT);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &dfl);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	r = posix_spawnp(&pid, argv[0], &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(out[1]);
	close(errp[1]);
	if (r != 0) {
		close(out[0]);
		close(errp[0]);
		return fl_error_set(err, -r, "cannot run %s: %s", argv[0], strerror(r));
	}

	_cleanup_close_ int outfd = out[0], errfd = errp[0];
	_cleanup_close_ int pidfd = pidfd_open_compat(pid);
	uint64_t start = now_ms(), deadline = start + timeout_ms;
	bool exited = false, out_eof = false, err_eof = false;
	int status = 0;

	if (pidfd < 0) {
		r = -errno;
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return fl_error_set(err, r, "pidfd_open: %s", strerror(-r));
	}
	for (;;) {
		if (marker && res->out_len && memmem(res->out, res->out_len, marker, strlen(marker))) {
			res->marker_seen = true;
			break;
		}
		/* After exit, drain the pipes (they hit EOF once QEMU's fds are gone). */
		if (exited && out_eof && err_eof)
			break;
		uint64_t t = now_ms();
		if (t >= deadline) {
			res->timed_out = !exited;
			break;
		}
		struct pollfd p[3] = {
			{.fd = out_eof ? -1 : outfd, .events = POLLIN},
			{.fd = err_eof ? -1 : errfd, .events = POLLIN},
			{.fd = exited ? -1 : pidfd, .events = POLLIN},
		};
		int n = poll(p, 3, (int)(deadline - t));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			break;
		}
		if (p[0].revents) {
			char tmp[512];
			ssize_t k = read(outfd, tmp, sizeof(tmp));
			if (k <= 0 && !(k < 0 && errno == EINTR)) {
				out_eof = true;
			} else if (k > 0) {
				/* Keep the tail: the marker may straddle reads. */
				size_t room = sizeof(res->out) - res->out_len;
				if ((size_t)k > room) {
					size_t drop = (size_t)k - room;
					memmove(res->out, res->out + drop, res->out_len - drop);
					res->out_len -= drop;
				}
				memcpy(res->out + res->out_len, tmp, (size_t)k);
				res->out_len += (size_t)k;
			}
		}
		if (p[1].revents) {
			char tmp[512];
			ssize_t k = read(errfd, tmp, sizeof(tmp));
			if (k <= 0 && !(k < 0 && errno == EINTR)) {
				err_eof = true;
			} else if (k > 0) {
				size_t room = sizeof(res->err) - 1 - res->err_len;
				size_t take = (size_t)k < room ? (size_t)k : room;
				memcpy(res->err + res->err_len, tmp, take);
				res->err_len += take;
			}
		}
		if (p[2].revents) {
			siginfo_t si = {0};
			if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG) == 0 && si.si_pid == pid) {
				exited = true;
				status = si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status;
			}
		}
	}
	res->elapsed_ms = (unsigned)(now_ms() - start);
	res->err[res->err_len] = 0;
	if (!exited) {
		syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
	} else {
		res->exit_status = status;
	}
	if (r < 0)
		return fl_error_set(err, r, "poll: %s", strerror(-r));
	return 0;
}

static void first_line(const char *s, char *buf, size_t len)
{
	/* Skip QEMU's harmless CPUID feature warnings; report the first real line. */
	const char *line = s;
	while (*line) {
		const char *nl = strchr(line, '\n');
		size_t n = nl ? (size_t)(nl - line) : strlen(line);
		if (n && !memmem(line, n, "warning:", 8)) {
			snprintf(buf, len, "%.*s", (int)n, line);
			return;
		}
		if (!nl)
			break;
		line = nl + 1;
	}
	snprintf(buf, len, "%s", "");
}

int fl_accel_probe(const char *qemu, const char *accel, unsigned timeout_ms,
		   FlAccelProbeResult *ret, FlError *err)
{
	SpawnResult res;
	int r;

	memset(ret, 0, sizeof(*ret));
	ret->exit_status = -1;
	/* The image lives in a memfd handed to QEMU as fd 3: nothing on disk to clean up. */
	_cleanup_close_ int fd = memfd_create("fluid-accel-probe", MFD_CLOEXEC);
	if (fd < 0)
		return fl_error_set(err, -errno, "memfd_create: %m");
	r = fl_accel_write_probe_image(fd);
	if (r < 0)
		return fl_error_set(err, r, "cannot write the probe image: %s", strerror(-r));
	char *const argv[] = {
		(char *)qemu, "-accel", (char *)accel, "-M", "q35", "-nodefaults", "-no-user-config",
		"-display", "none", "-m", "16", "-drive", "file=/proc/self/fd/3,format=raw,if=ide",
		"-chardev", "stdio,id=probe0,signal=off", "-serial", "chardev:probe0", NULL,
	};
	r = spawn_wait(argv, fd, FL_ACCEL_PROBE_MARKER, timeout_ms, &res, err);
	if (r < 0)
		return r;

	ret->ok = res.marker_seen;
	ret->timed_out = res.timed_out;
	ret->elapsed_ms = res.elapsed_ms;
	ret->exit_status = res.exit_status;
	size_t ns = 0;
	for (size_t i = 0; i < res.out_len && ns + 1 < sizeof(ret->stages); i++)
		if (res.out[i] >= '1' && res.out[i] <= '3' && !memchr(ret->stages, res.out[i], ns))
			ret->stages[ns++] = res.out[i];
	ret->stages[ns] = 0;
	first_line(res.err, ret->qemu_stderr, sizeof(ret->qemu_stderr));

	if (ret->ok) {
		snprintf(ret->reason, sizeof(ret->reason), "probe guest finished in %u ms",
			 ret->elapsed_ms);
	} else if (ret->timed_out) {
		static const char *const stage_names[] = {"real mode", "protected mode",
							  "long mode"};
		if (ns == 0)
			snprintf(ret->reason, sizeof(ret->reason),
				 "no guest output within %u ms", timeout_ms);
		else
			snprintf(ret->reason, sizeof(ret->reason),
				 "guest too slow: reached %s but did not finish within %u ms",
				 stage_names[ret->stages[ns - 1] - '1'], timeout_ms);
	} else {
		snprintf(ret->reason, sizeof(ret->reason), "qemu exited with status %d%s%s",
			 ret->exit_status, ret->qemu_stderr[0] ? ": " : "", ret->qemu_stderr);
	}
	return 0;
}

int fl_accel_qemu_version(const char *qemu, char *buf, size_t len, FlError *err)
{
	char *const argv[] = {(char *)qemu, "--version", NULL};
	SpawnResult res;
	int r = spawn_wait(argv, -1, NULL, 10000, &res, err);
	if (r < 0)
		return r;
	if (res.exit_status != 0)
		return fl_error_set(err, -ENOEXEC, "%s --version failed (status %d)", qemu,
				    res.exit_status);
	res.out[res.out_len < sizeof(res.out) ? res.out_len : sizeof(res.out) - 1] = 0;
	const char *v = strstr(res.out, "version ");
	if (!v)
		return fl_error_set(err, -EBADMSG, "%s --version: unexpected output", qemu);
	v += strlen("version ");
	size_t n = strcspn(v, " \n(");
	if (n == 0 || n >= len)
		return fl_error_set(err, -EBADMSG, "%s --version: unexpected output", qemu);
	memcpy(buf, v, n);
	buf[n] = 0;
	return 0;
}

int fl_accel_kvm_check(char *why, size_t len)
{
	_cleanup_close_ int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		int r = -errno;
		if (r == -ENOENT)
			snprintf(why, len, "/dev/kvm is missing");
		else
			snprintf(why, len, "/dev/kvm is not usable: %s", strerror(-r));
		return r;
	}
	int v = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (v != KVM_API_VERSION) {
		snprintf(why, len, "/dev/kvm speaks API version %d, not %d", v, KVM_API_VERSION);
		return -ENOTSUP;
	}
	return 0;
}

/* ---- Decision ---------------------------------------------------------- */

static void iso_now(char *buf, size_t len)
{
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)

static bool cache_load(const char *path, const char *key, FlAccelInfo *info)
{
	_cleanup_free_ char *text = NULL;
	if (fl_read_file(path, 65536, &text, NULL) < 0)
		return false;
	_cleanup_(json_object_putp) struct json_object *o = json_tokener_parse(text);
	struct json_object *k, *a, *why, *at;
	if (!o || !json_object_is_type(o, json_type_object) ||
	    !json_object_object_get_ex(o, "key", &k) || !json_object_object_get_ex(o, "accelerator", &a) ||
	    !json_object_object_get_ex(o, "reason", &why) || !json_object_object_get_ex(o, "decided_at", &at) ||
	    !json_object_is_type(k, json_type_string) || strcmp(json_object_get_string(k), key))
		return false;
	const char *acc = json_object_get_string(a);
	if (!strcmp(acc, "kvm"))
		info->kind = FL_ACCEL_KVM;
	else if (!strcmp(acc, "tcg"))
		info->kind = FL_ACCEL_TCG;
	else
		return false;
	snprintf(info->reason, sizeof(info->reason), "%s", json_object_get_string(why));
	snprintf(info->decided_at, sizeof(info->decided_at), "%s", json_object_get_string(at));
	return true;
}

static void cache_store(const char *path, const char *key, const FlAccelInfo *info)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	if (!o)
		return;
	json_object_object_add(o, "key", json_object_new_string(key));
	json_object_object_add(o, "accelerator", json_object_new_string(fl_accel_name(info->kind)));
	json_object_object_add(o, "reason", json_object_new_string(info->reason));
	json_object_object_add(o, "decided_at", json_object_new_string(info->decided_at));
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY);
	/* A cache that cannot be written only costs a probe next time. */
	(void)fl_write_file_atomic(path, s, strlen(s), 0644);
}

/* Prepends "what: " to err's message (the message may be cut, never overflows). */
static int error_context(FlError *err, int r, const char *what)
{
	if (err) {
		char old[sizeof(err->msg)];
		memcpy(old, err->msg, sizeof(old));
		if (snprintf(err->msg, sizeof(err->msg), "%s: %s", what, old) >= (int)sizeof(err->msg))
			err->msg[sizeof(err->msg) - 1] = 0;
		err->code = r;
	}
	return r;
}

int fl_accel_decide_with(FlAccelMode mode, unsigned timeout_ms, const char *cache_path,
			 const FlAccelOps *ops, FlAccelInfo *ret, FlError *err)
{
	FlAccelInfo info = {0};
	char why[200] = "", key[512];
	int r;

	snprintf(info.kernel_release, sizeof(info.kernel_release), "%s",
		 ops->kernel_release ? ops->kernel_release : "");
	info.kvm_device = ops->kvm_present(ops->ud);
	r = ops->qemu_version(ops->ud, info.qemu_version, sizeof(info.qemu_version), err);
	if (r < 0)
		return r;
	iso_now(info.decided_at, sizeof(info.decided_at));

	if (mode == FL_ACCEL_MODE_TCG) {
		info.kind = FL_ACCEL_TCG;
		snprintf(info.reason, sizeof(info.reason), "forced by configuration (accelerator: tcg)");
		*ret = info;
		return 0;
	}
	if (mode == FL_ACCEL_MODE_KVM) {
		r = ops->kvm_check(ops->ud, why, sizeof(why));
		if (r < 0)
			return fl_error_set(err, -ENODEV, "accelerator: kvm is configured but %s", why);
		info.kind = FL_ACCEL_KVM;
		snprintf(info.reason, sizeof(info.reason), "forced by configuration (accelerator: kvm)");
		*ret = info;
		return 0;
	}

	/* auto */
	r = ops->kvm_check(ops->ud, why, sizeof(why));
	if (r < 0) {
		info.kind = FL_ACCEL_TCG;
		snprintf(info.reason, sizeof(info.reason), "%s", why);
		*ret = info;
		return 0;
	}
	snprintf(key, sizeof(key), "probe=%d qemu=%s kernel=%s kvm=%d timeout=%u", PROBE_VERSION,
		 info.qemu_version, info.kernel_release, info.kvm_device, timeout_ms);
	if (cache_path && cache_load(cache_path, key, &info)) {
		info.cached = true;
		info.probed = true;
		*ret = info;
		return 0;
	}

	FlAccelProbeResult pr;
	r = ops->probe(ops->ud, "kvm", timeout_ms, &pr, err);
	if (r < 0)
		return error_context(err, r, "kvm probe");
	info.probed = true;
	if (pr.ok) {
		info.kind = FL_ACCEL_KVM;
		snprintf(info.reason, sizeof(info.reason), "kvm probe: %s", pr.reason);
	} else {
		info.kind = FL_ACCEL_TCG;
		snprintf(info.reason, sizeof(info.reason), "kvm probe: %s", pr.reason);
	}
	if (cache_path)
		cache_store(cache_path, key, &info);
	*ret = info;
	return 0;
}

/* ---- Real effects ------------------------------------------------------ */

typedef struct RealOps {
	const FlConfig *cfg;
} RealOps;

static int real_qemu_version(void *ud, char *buf, size_t len, FlError *err)
{
	RealOps *o = ud;
	return fl_accel_qemu_version(o->cfg->qemu, buf, len, err);
}

static bool real_kvm_present(void *ud)
{
	struct stat st;
	return stat("/dev/kvm", &st) == 0;
}

static int real_kvm_check(void *ud, char *why, size_t len) { return fl_accel_kvm_check(why, len); }

static int real_probe(void *ud, const char *accel, unsigned timeout_ms, FlAccelProbeResult *ret,
		      FlError *err)
{
	RealOps *o = ud;
	return fl_accel_probe(o->cfg->qemu, accel, timeout_ms, ret, err);
}

int fl_accel_decide(const FlConfig *cfg, FlAccelInfo *ret, FlError *err)
{
	struct utsname u;
	char cache[PATH_MAX];
	RealOps ro = {.cfg = cfg};

	if (uname(&u) < 0)
		snprintf(u.release, sizeof(u.release), "unknown");
	FlAccelOps ops = {
		.qemu_version = real_qemu_version,
		.kvm_present = real_kvm_present,
		.kvm_check = real_kvm_check,
		.probe = real_probe,
		.ud = &ro,
		.kernel_release = u.release,
	};
	int r = fl_mkdir_p(cfg->state_dir, 0750);
	if (r < 0)
		return fl_error_set(err, r, "cannot create state dir %s: %s", cfg->state_dir,
				    strerror(-r));
	snprintf(cache, sizeof(cache), "%s/accel.json", cfg->state_dir);
	return fl_accel_decide_with(cfg->accelerator, cfg->accel_probe_timeout_ms, cache, &ops, ret,
				    err);
}
