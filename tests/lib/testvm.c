// SPDX-License-Identifier: MIT
/*
 * Test helper: boots a fluid image under QEMU with the standard device set
 * (docs/CONVENTIONS.md) on a private qcow2 overlay and connects its agent;
 * plus SHA-256 for stream checks. Used by integration tests and benches.
 *
 * DESIGN: the QEMU process is ours alone: spawned with posix_spawn, killed
 * by pid, waited for. Test tooling may fork qemu-img (not a hot path).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <json-c/json.h>

#include "cleanup.h"
#include "testvm.h"

extern char **environ;

const char *testvm_root(void)
{
	const char *r = getenv("FLUID_ROOT");
	return r && *r ? r : ".";
}

int testvm_image_dir(const char *name, char *buf, size_t size, FlError *err)
{
	const char *d = getenv("FLUID_IMAGE_DIR");
	char tmp[512];
	if (d && *d)
		snprintf(tmp, sizeof(tmp), "%s/%s", d, name);
	else
		snprintf(tmp, sizeof(tmp), "%s/build/images/%s", testvm_root(), name);
	char *real = realpath(tmp, NULL);
	if (!real)
		return fl_error_set(err, -ENOENT, "image %s is not built (%s missing; run make images)",
				    name, tmp);
	snprintf(buf, size, "%s", real);
	free(real);
	char probe[600];
	static const char *const files[] = {"vmlinuz", "initrd.img", "disk.qcow2", "image.json"};
	for (size_t i = 0; i < FL_ARRAY_SIZE(files); i++) {
		snprintf(probe, sizeof(probe), "%s/%s", buf, files[i]);
		if (access(probe, R_OK) < 0)
			return fl_error_set(err, -ENOENT, "image %s incomplete: %s missing", name, probe);
	}
	return 0;
}

void testvm_console_tail(const TestVm *vm, char *buf, size_t size)
{
	buf[0] = 0;
	int fd = open(vm->console, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	off_t end = lseek(fd, 0, SEEK_END);
	off_t start = end > (off_t)size - 1 ? end - (off_t)size + 1 : 0;
	ssize_t n = pread(fd, buf, size - 1, start);
	close(fd);
	buf[n > 0 ? n : 0] = 0;
}

static int run_wait(char *const argv[])
{
	pid_t pid;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	int r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (r)
		return -r;
	int st;
	if (waitpid(pid, &st, 0) < 0)
		return -errno;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof(sa);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &l) < 0) {
		if (fd >= 0)
			close(fd);
		return -EADDRNOTAVAIL;
	}
	close(fd);
	return ntohs(sa.sin_port);
}

static void rm_rf_run(const char *dir)
{
	static const char *const files[] = {"overlay.qcow2", "console.log", "qemu.log", "agent.sock",
					    "qmp.sock", "mem.ram", "vmstate"};
	char p[300];
	for (size_t i = 0; i < FL_ARRAY_SIZE(files); i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
		unlink(p);
	}
	rmdir(dir);
}

void testvm_kill(TestVm *vm)
{
	agent_client_free(vm->agent);
	vm->agent = NULL;
	if (vm->pid > 0) {
		kill(vm->pid, SIGTERM);
		for (int i = 0; i < 50; i++) {
			if (waitpid(vm->pid, NULL, WNOHANG) == vm->pid) {
				vm->pid = 0;
				break;
			}
			struct timespec ts = {0, 100 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
		if (vm->pid > 0) {
			kill(vm->pid, SIGKILL);
			waitpid(vm->pid, NULL, 0);
		}
		vm->pid = 0;
	}
}

void testvm_destroy(TestVm *vm)
{
	if (!vm)
		return;
	testvm_kill(vm);
	if (!getenv("FLUID_TESTVM_KEEP"))
		rm_rf_run(vm->run_dir);
	free(vm);
}

static int read_image_json(TestVm *vm, char *cmdline, size_t size, unsigned *mem, FlError *err)
{
	char p[600];
	snprintf(p, sizeof(p), "%s/image.json", vm->image_dir);
	struct json_object *j = json_object_from_file(p);
	if (!j)
		return fl_error_set(err, -EINVAL, "cannot parse %s", p);
	struct json_object *v;
	if (!json_object_object_get_ex(j, "cmdline", &v) || !json_object_is_type(v, json_type_string)) {
		json_object_put(j);
		return fl_error_set(err, -EINVAL, "%s: no cmdline", p);
	}
	snprintf(cmdline, size, "%s", json_object_get_string(v));
	if (json_object_object_get_ex(j, "memory_mb", &v) && json_object_is_type(v, json_type_int))
		*mem = (unsigned)json_object_get_int(v);
	json_object_put(j);
	return 0;
}

/* Late-root images (image.json "late_root": true) start their agent in the
 * initramfs: ask it to mount and enter the root disk, as the engine does. */
static int enter_root(TestVm *vm, FlError *err)
{
	char p[700];
	snprintf(p, sizeof(p), "%s/image.json", vm->image_dir);
	struct json_object *j = json_object_from_file(p), *v;
	bool late = j && json_object_object_get_ex(j, "late_root", &v) && json_object_get_boolean(v);
	json_object_put(j);
	return late ? agent_call_sync(vm->agent, "root", NULL, 60000, NULL, err) : 0;
}

int testvm_start(const TestVmOptions *o, TestVm **ret, FlError *err)
{
	TestVm *vm = calloc(1, sizeof(*vm));
	if (!vm)
		return fl_error_set(err, -ENOMEM, "out of memory");
	snprintf(vm->image, sizeof(vm->image), "%s", o->image);
	int r = testvm_image_dir(o->image, vm->image_dir, sizeof(vm->image_dir), err);
	if (r < 0) {
		free(vm);
		return r;
	}
	snprintf(vm->run_dir, sizeof(vm->run_dir), "/tmp/fluid-testvm-XXXXXX");
	if (!mkdtemp(vm->run_dir)) {
		r = -errno;
		free(vm);
		return fl_error_set(err, r, "mkdtemp: %s", strerror(-r));
	}
	snprintf(vm->agent_sock, sizeof(vm->agent_sock), "%s/agent.sock", vm->run_dir);
	snprintf(vm->qmp_sock, sizeof(vm->qmp_sock), "%s/qmp.sock", vm->run_dir);
	snprintf(vm->console, sizeof(vm->console), "%s/console.log", vm->run_dir);

	char cmdline[2048];
	unsigned mem = 256;
	r = read_image_json(vm, cmdline, sizeof(cmdline), &mem, err);
	if (r < 0)
		goto fail;
	if (o->memory_mb)
		mem = o->memory_mb;

	char disk[600], overlay[300];
	if (o->base_disk)
		snprintf(disk, sizeof(disk), "%s", o->base_disk);
	else
		snprintf(disk, sizeof(disk), "%s/disk.qcow2", vm->image_dir);
	snprintf(overlay, sizeof(overlay), "%s/overlay.qcow2", vm->run_dir);
	char *img_argv[] = {"qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", disk, overlay, NULL};
	r = run_wait(img_argv);
	if (r < 0) {
		fl_error_set(err, r, "qemu-img create overlay on %s failed", disk);
		goto fail;
	}

	uint8_t u[16];
	if (getrandom(u, sizeof(u), 0) != sizeof(u))
		memset(u, 0x5a, sizeof(u));
	u[6] = (u[6] & 0x0f) | 0x40;
	u[8] = (u[8] & 0x3f) | 0x80;
	char args[24][700];
	int na = 0;
#define ARG(...) snprintf(args[na++], sizeof(args[0]), __VA_ARGS__)
	ARG("%s/vmlinuz", vm->image_dir);
	ARG("%s/initrd.img", vm->image_dir);
	ARG("%s", cmdline);
	ARG("file,id=con0,path=%s", vm->console);
	ARG("driver=qcow2,node-name=disk0,file.driver=file,file.filename=%s", overlay);
	ARG("socket,id=agent0,path=%s,server=on,wait=off", vm->agent_sock);
	if (o->ssh) {
		vm->ssh_port = free_port();
		ARG("user,id=net0,hostfwd=tcp:127.0.0.1:%d-:22", vm->ssh_port);
	} else {
		ARG("user,id=net0");
	}
	ARG("vmgenid,guid=%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0],
	    u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14],
	    u[15]);
	ARG("unix:%s,server=on,wait=off", vm->qmp_sock);
	ARG("%u", mem);
	ARG("%s", o->accel ? o->accel : "tcg");
	ARG("memory-backend-file,id=mem,size=%uM,mem-path=%s,share=%s", mem, o->mem_file ? o->mem_file : "",
	    o->mem_share ? "on" : "off");
#undef ARG
	char *argv[] = {
		"qemu-system-x86_64", "-accel", args[10], "-M", "q35", "-m", args[9], "-smp", "1",
		"-nodefaults", "-no-user-config", "-display", "none", "-sandbox", "on",
		"-kernel", args[0], "-initrd", args[1], "-append", args[2],
		"-chardev", args[3], "-serial", "chardev:con0",
		"-blockdev", args[4], "-device", "virtio-blk-pci,drive=disk0,id=vda",
		"-device", "virtio-serial-pci,id=vser0",
		"-chardev", args[5], "-device", "virtserialport,chardev=agent0,name=org.fluid.agent.0",
		"-netdev", args[6], "-device", "virtio-net-pci,netdev=net0,id=nic0",
		"-object", "rng-random,id=rng0,filename=/dev/urandom",
		"-device", "virtio-rng-pci,rng=rng0",
		"-device", args[7],
		"-device", "pcie-root-port,id=hp0,chassis=1,slot=1",
		"-qmp", args[8],
		NULL, NULL, NULL, NULL, NULL, NULL, NULL,
	};
	size_t na2 = FL_ARRAY_SIZE(argv) - 7;
	if (o->mem_file) {
		argv[na2++] = "-object";
		argv[na2++] = args[11];
		argv[na2++] = "-machine";
		argv[na2++] = "memory-backend=mem";
	}
	if (o->incoming) {
		argv[na2++] = "-incoming";
		argv[na2++] = "defer";
	}
	char logp[300];
	snprintf(logp, sizeof(logp), "%s/qemu.log", vm->run_dir);
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, logp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	vm->spawn_ms = agent_now_ms();
	r = posix_spawnp(&vm->pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (r) {
		vm->pid = 0;
		fl_error_set(err, -r, "spawn qemu: %s", strerror(r));
		r = -r;
		goto fail;
	}
	/* The chardev socket appears once QEMU is up. */
	unsigned boot = o->boot_timeout_ms ? o->boot_timeout_ms
					   : (!strcmp(o->image, "tiny") ? 60000 : 600000);
	uint64_t deadline = vm->spawn_ms + boot;
	while (access(vm->agent_sock, F_OK) < 0 || access(vm->qmp_sock, F_OK) < 0) {
		if (waitpid(vm->pid, NULL, WNOHANG) == vm->pid) {
			vm->pid = 0;
			char tail[400] = "";
			int fd = open(logp, O_RDONLY | O_CLOEXEC);
			if (fd >= 0) {
				ssize_t n = read(fd, tail, sizeof(tail) - 1);
				tail[n > 0 ? n : 0] = 0;
				close(fd);
			}
			r = fl_error_set(err, -ECHILD, "qemu exited: %s", tail);
			goto fail;
		}
		if (agent_now_ms() > deadline) {
			r = fl_error_set(err, -ETIMEDOUT, "qemu did not create its sockets in %s", vm->run_dir);
			goto fail;
		}
		struct timespec ts = {0, 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	if (o->no_agent || o->incoming) {
		*ret = vm;
		return 0;
	}
	r = agent_client_new(vm->agent_sock, NULL, &vm->agent, err);
	if (r < 0)
		goto fail;
	r = agent_wait_ready_sync(vm->agent, (unsigned)(deadline - agent_now_ms()), err);
	if (r >= 0)
		r = enter_root(vm, err);
	if (r < 0) {
		char tail[1500];
		testvm_console_tail(vm, tail, sizeof(tail));
		fl_error_prefix(err, "%s: agent not ready; console tail:\n%s\n", o->image, tail);
		goto fail;
	}
	vm->ready_ms = agent_now_ms();
	*ret = vm;
	return 0;
fail:
	testvm_destroy(vm);
	return r;
}

int testvm_reconnect(TestVm *vm, unsigned timeout_ms, FlError *err)
{
	agent_client_free(vm->agent);
	vm->agent = NULL;
	int r = agent_client_new(vm->agent_sock, NULL, &vm->agent, err);
	if (r < 0)
		return r;
	r = agent_wait_ready_sync(vm->agent, timeout_ms, err);
	return r < 0 ? r : enter_root(vm, err);
}

