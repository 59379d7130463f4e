// SPDX-License-Identifier: MIT
/*
 * vm: one QEMU process. fluid spawns QEMU itself (posix_spawn, never a
 * shell), in its own session so that VMs outlive the daemon, with every fd
 * but the ones it needs closed. The QMP and agent sockets are created and
 * listening before QEMU starts and are handed over as fds: a connect() right
 * after spawn succeeds, and QEMU accepts it as soon as its main loop runs.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "qmp.h"
#include "vm.h"

extern char **environ;

#define QEMU_BIN "qemu-system-x86_64"
enum { FD_QMP = 3, FD_AGENT = 4, FD_INCOMING = 5, FD_TAP = 6, FD_FIRST_FREE = 7 };

static int pidfd_open_(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int listen_unix(const char *path, FlError *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path))
		return fl_error_set(err, -ENAMETOOLONG, "socket path too long: %s", path);
	strcpy(sa.sun_path, path);
	/* Non-blocking, as QEMU expects of a listening socket it inherits:
	 * with a blocking one its main thread can hang in accept() forever
	 * when a connection is reset between poll and accept. */
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return fl_error_set(err, -errno, "socket: %m");
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4) < 0) {
		int r = -errno;
		close(fd);
		return fl_error_set(err, r, "listen on %s: %s", path, strerror(-r));
	}
	chmod(path, 0600);
	return fd;
}

/* A small argv builder; QEMU's command line is bounded. */
typedef struct Argv {
	char *v[96];
	int n;
	char buf[8192];
	size_t used;
} Argv;

__attribute__((format(printf, 2, 3))) static int arg(Argv *a, const char *fmt, ...)
{
	if (a->n >= (int)FL_ARRAY_SIZE(a->v) - 1)
		return -E2BIG;
	va_list ap;
	va_start(ap, fmt);
	int len = vsnprintf(a->buf + a->used, sizeof(a->buf) - a->used, fmt, ap);
	va_end(ap);
	if (len < 0 || (size_t)len >= sizeof(a->buf) - a->used)
		return -E2BIG;
	a->v[a->n++] = a->buf + a->used;
	a->v[a->n] = NULL;
	a->used += (size_t)len + 1;
	return 0;
}

static int build_argv(const FlVmSpec *s, const FlVm *vm, Argv *a)
{
	int r = 0;
	char uuid[40];
	_cleanup_fclose_ FILE *f = fopen("/proc/sys/kernel/random/uuid", "re");
	if (!f || !fgets(uuid, sizeof(uuid), f))
		return -EIO;
	uuid[strcspn(uuid, "\n")] = 0;

	r |= arg(a, QEMU_BIN);
	if (!strcmp(s->accel, "tcg") && s->tb_size_mb)
		r |= arg(a, "-accel"), r |= arg(a, "tcg,tb-size=%u", s->tb_size_mb);
	else
		r |= arg(a, "-accel"), r |= arg(a, "%s", s->accel);
	r |= arg(a, "-M"), r |= arg(a, "q35,memory-backend=mem");
	r |= arg(a, "-m"), r |= arg(a, "%u", s->memory_mb);
	r |= arg(a, "-smp"), r |= arg(a, "%u", s->vcpus ? s->vcpus : 1);
	if (s->ram_path)
		r |= arg(a, "-object"), r |= arg(a, "memory-backend-file,id=mem,size=%uM,mem-path=%s,share=%s",
					     s->memory_mb, s->ram_path, s->ram_shared ? "on" : "off");
	else
		r |= arg(a, "-object"), r |= arg(a, "memory-backend-ram,id=mem,size=%uM", s->memory_mb);
	r |= arg(a, "-nodefaults"), r |= arg(a, "-no-user-config");
	r |= arg(a, "-display"), r |= arg(a, "none");
	r |= arg(a, "-sandbox"), r |= arg(a, "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
	r |= arg(a, "-kernel"), r |= arg(a, "%s", s->kernel);
	r |= arg(a, "-initrd"), r |= arg(a, "%s", s->initrd);
	/* Under TCG the guest's TSC runs at the host's rate but its
	 * frequency is calibrated against emulated timers while the vCPU
	 * thread competes for the host's CPUs: on a loaded host a template's
	 * kernel can get it wrong by 10x, and every clone inherits a clock
	 * (and timeouts) running that much too fast. The HPET is emulated
	 * from the host's clock and needs no calibration. */
	if (!strcmp(s->accel, "tcg"))
		r |= arg(a, "-append"), r |= arg(a, "%s clocksource=hpet", s->cmdline);
	else
		r |= arg(a, "-append"), r |= arg(a, "%s", s->cmdline);
	r |= arg(a, "-chardev"), r |= arg(a, "file,id=con0,path=%s", vm->console_path);
	r |= arg(a, "-serial"), r |= arg(a, "chardev:con0");
	r |= arg(a, "-blockdev"), r |= arg(a, "driver=qcow2,node-name=disk0,cache.no-flush=on,file.driver=file,file.filename=%s,file.aio=threads", s->disk);
	r |= arg(a, "-device"), r |= arg(a, "virtio-blk-pci,drive=disk0,id=vda");
	r |= arg(a, "-device"), r |= arg(a, "virtio-serial-pci,id=vser0");
	r |= arg(a, "-chardev"), r |= arg(a, "socket,id=agent0,fd=%d,server=on,wait=off", FD_AGENT);
	r |= arg(a, "-device"), r |= arg(a, "virtserialport,chardev=agent0,name=org.fluid.agent.0");
	/* The backend may differ from the template's (a tap without
	 * IFF_VNET_HDR offers the guest the same features as user networking),
	 * but the template's saved state carries libslirp's own section: an
	 * unattached, fully restricted user netdev takes it. */
	if (s->tap_fd >= 0) {
		r |= arg(a, "-netdev"), r |= arg(a, "tap,id=net0,fd=%d", FD_TAP);
		r |= arg(a, "-netdev"), r |= arg(a, "user,id=slirp0,restrict=on");
	} else if (s->ssh_port > 0)
		r |= arg(a, "-netdev"), r |= arg(a, "user,id=net0%s,hostfwd=tcp:127.0.0.1:%d-:22",
						  s->net_none ? ",restrict=on" : "", s->ssh_port);
	else
		r |= arg(a, "-netdev"), r |= arg(a, "user,id=net0%s", s->net_none ? ",restrict=on" : "");
	/* No guest announce: after every incoming migration (each clone and
	 * restore) it made the guest send gratuitous ARPs and IPv6 neighbour
	 * adverts through freshly translated code; neither user networking nor
	 * a tap (which re-leases with the sandbox's own MAC) needs them. */
	r |= arg(a, "-device"), r |= arg(a, "virtio-net-pci,netdev=net0,id=nic0,guest_announce=off");
	r |= arg(a, "-object"), r |= arg(a, "rng-random,id=rng0,filename=/dev/urandom");
	r |= arg(a, "-device"), r |= arg(a, "virtio-rng-pci,rng=rng0");
	r |= arg(a, "-device"), r |= arg(a, "vmgenid,guid=%s", uuid);
	/* free ports for hot-plugging read-only layers into inspectors */
	r |= arg(a, "-device"), r |= arg(a, "pcie-root-port,id=hp0,chassis=1,slot=1");
	r |= arg(a, "-device"), r |= arg(a, "pcie-root-port,id=hp1,chassis=2,slot=2");
	r |= arg(a, "-chardev"), r |= arg(a, "socket,id=qmp0,fd=%d,server=on,wait=off", FD_QMP);
	r |= arg(a, "-mon"), r |= arg(a, "chardev=qmp0,mode=control");
	if (s->boot == FL_BOOT_INCOMING)
		r |= arg(a, "-incoming"), r |= arg(a, "defer");
	return r ? -E2BIG : 0;
}

int fl_vm_spawn(const FlVmSpec *s, FlVm *vm, FlError *err)
{
	int r;
	memset(vm, 0, sizeof(*vm));
	vm->pidfd = -1;
	if ((size_t)snprintf(vm->qmp_path, sizeof(vm->qmp_path), "%s/qmp.sock", s->run_dir) >= sizeof(vm->qmp_path) ||
	    (size_t)snprintf(vm->agent_path, sizeof(vm->agent_path), "%s/agent.sock", s->run_dir) >= sizeof(vm->agent_path) ||
	    (size_t)snprintf(vm->console_path, sizeof(vm->console_path), "%s/console.log", s->run_dir) >= sizeof(vm->console_path))
		return fl_error_set(err, -ENAMETOOLONG, "run directory path too long: %s", s->run_dir);

	_cleanup_close_ int qmp = listen_unix(vm->qmp_path, err);
	if (qmp < 0)
		return qmp;
	_cleanup_close_ int agent = listen_unix(vm->agent_path, err);
	if (agent < 0)
		return agent;
	_cleanup_close_ int incoming = -1;
	if (s->boot == FL_BOOT_INCOMING) {
		incoming = open(s->incoming_path, O_RDONLY | O_CLOEXEC);
		if (incoming < 0)
			return fl_error_set(err, -errno, "open state file %s: %m", s->incoming_path);
	}

	_cleanup_free_ Argv *a = calloc(1, sizeof(*a));
	if (!a)
		return fl_error_set(err, -ENOMEM, "out of memory");
	r = build_argv(s, vm, a);
	if (r < 0)
		return fl_error_set(err, r, "QEMU command line too long");

	_cleanup_free_ char *stderr_path = NULL;
	if (asprintf(&stderr_path, "%s/qemu.log", s->run_dir) < 0)
		return fl_error_set(err, -ENOMEM, "out of memory");

	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, stderr_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	posix_spawn_file_actions_adddup2(&fa, qmp, FD_QMP);
	posix_spawn_file_actions_adddup2(&fa, agent, FD_AGENT);
	if (incoming >= 0)
		posix_spawn_file_actions_adddup2(&fa, incoming, FD_INCOMING);
	if (s->tap_fd >= 0)
		posix_spawn_file_actions_adddup2(&fa, s->tap_fd, FD_TAP);
	posix_spawn_file_actions_addclosefrom_np(&fa, FD_FIRST_FREE);
	sigset_t none;
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&attr, &none);
	sigset_t dfl;
	sigfillset(&dfl);
	posix_spawnattr_setsigdefault(&attr, &dfl);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	pid_t pid;
	r = posix_spawnp(&pid, QEMU_BIN, &fa, &attr, a->v, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (r != 0)
		return fl_error_set(err, -r, "spawn %s: %s", QEMU_BIN, strerror(r));
	vm->pid = pid;
	vm->pidfd = pidfd_open_(pid);
	if (vm->pidfd < 0) {
		r = -errno;
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return fl_error_set(err, r, "pidfd_open: %s", strerror(-r));
	}
	_cleanup_free_ char *pidpath = NULL;
	if (asprintf(&pidpath, "%s/qemu.pid", s->run_dir) >= 0) {
		FILE *pf = fopen(pidpath, "we");
		if (pf) {
			fprintf(pf, "%d\n", pid);
			fclose(pf);
		}
	}
	return 0;
}

int fl_vm_wait_exit(FlVm *vm, int timeout_ms)
{
	if (vm->pidfd < 0)
		return 0;
	struct pollfd p = {.fd = vm->pidfd, .events = POLLIN};
	int n;
	do
		n = poll(&p, 1, timeout_ms);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return n < 0 ? -errno : -ETIMEDOUT;
	waitpid(vm->pid, NULL, WNOHANG); /* reap if it was our child */
	return 0;
}

void fl_vm_kill(FlVm *vm)
{
	if (vm->pidfd < 0)
		return;
	syscall(SYS_pidfd_send_signal, vm->pidfd, SIGKILL, NULL, 0);
	fl_vm_wait_exit(vm, 5000);
	close(vm->pidfd);
	vm->pidfd = -1;
	vm->pid = 0;
}

int fl_vm_adopt(pid_t pid, const char *run_dir, FlVm *vm)
{
	char path[64], cmd[8192];
	snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -ESRCH;
	int pidfd = pidfd_open_(pid);
	if (pidfd < 0)
		return -ESRCH;
	ssize_t n = read(fd, cmd, sizeof(cmd) - 1);
	if (n <= 0) {
		close(pidfd);
		return -ESRCH;
	}
	cmd[n] = 0;
	for (ssize_t i = 0; i < n; i++)
		if (!cmd[i])
			cmd[i] = ' ';
	/* A VM may have been spawned for another directory of the same
	 * parent (a standby taken over by a sandbox): match the parent. */
	char parent[512];
	snprintf(parent, sizeof(parent), "%s", run_dir);
	char *slash = strrchr(parent, '/');
	if (slash)
		slash[1] = 0;
	if (!strstr(cmd, QEMU_BIN) || !strstr(cmd, parent)) {
		close(pidfd);
		return -ESRCH;
	}
	memset(vm, 0, sizeof(*vm));
	vm->pid = pid;
	vm->pidfd = pidfd;
	snprintf(vm->qmp_path, sizeof(vm->qmp_path), "%s/qmp.sock", run_dir);
	snprintf(vm->agent_path, sizeof(vm->agent_path), "%s/agent.sock", run_dir);
	snprintf(vm->console_path, sizeof(vm->console_path), "%s/console.log", run_dir);
	return 0;
}

struct json_object *fl_vm_migration_caps(void)
{
	/* x-ignore-shared on every save and load, so that the template's
	 * shared RAM stays out of its state file and clones and checkpoints
	 * agree on the stream format; events so we can wait for MIGRATION. */
	const char *caps[] = {"x-ignore-shared", "events"};
	struct json_object *arr = json_object_new_array();
	for (size_t i = 0; i < FL_ARRAY_SIZE(caps); i++) {
		struct json_object *c = json_object_new_object();
		json_object_object_add(c, "capability", json_object_new_string(caps[i]));
		json_object_object_add(c, "state", json_object_new_boolean(1));
		json_object_array_add(arr, c);
	}
	struct json_object *args = json_object_new_object();
	json_object_object_add(args, "capabilities", arr);
	return args;
}

int fl_vm_wait_migration(QmpClient *c, unsigned timeout_ms, FlError *err)
{
	for (;;) {
		struct json_object *data = NULL;
		int r = qmp_wait_event_sync(c, "MIGRATION", timeout_ms, &data, err);
		if (r < 0)
			return r;
		struct json_object *st;
		char s[32] = "";
		if (data && json_object_object_get_ex(data, "status", &st))
			snprintf(s, sizeof(s), "%s", json_object_get_string(st));
		json_object_put(data);
		if (!strcmp(s, "completed"))
			return 0;
		if (!strcmp(s, "failed") || !strcmp(s, "cancelled"))
			return fl_error_set(err, -EIO, "VM state transfer %s", s);
	}
}

int fl_vm_incoming(FlVm *vm, FlError *err)
{
	QmpClient *c = NULL;
	int r = qmp_connect_sync(vm->qmp_path, 10000, &c, err);
	if (r < 0)
		return r;
	r = qmp_call_sync(c, "migrate-set-capabilities", fl_vm_migration_caps(), -1, 10000, NULL, err);
	if (r >= 0) {
		struct json_object *a = json_object_new_object();
		char uri[16];
		snprintf(uri, sizeof(uri), "fd:%d", FD_INCOMING);
		json_object_object_add(a, "uri", json_object_new_string(uri));
		r = qmp_call_sync(c, "migrate-incoming", a, -1, 10000, NULL, err);
	}
	if (r >= 0)
		r = fl_vm_wait_migration(c, 60000, err);
	/* The saved run state is "paused" (we stop VMs before saving). */
	if (r >= 0)
		r = qmp_call_sync(c, "cont", NULL, -1, 10000, NULL, err);
	qmp_client_free(c);
	return r < 0 ? fl_error_prefix(err, "loading VM state") : 0;
}
