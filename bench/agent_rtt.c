// SPDX-License-Identifier: MIT
/*
 * agent_rtt: round trip of a command through fluid-agent on a debian-12
 * guest (TCG), against the same command over SSH to the same guest with a
 * fresh connection each time (the baseline). The SSH key is made for the
 * run and put into the guest through the agent's file write.
 *
 * Lines: agent_rtt (exec of `true` by argv, baseline `ssh ... true`),
 * agent_rtt_shell (`sh -c true`, to show what a shell costs under TCG),
 * agent_rtt_tiny (exec of `true` on the tiny image).
 */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "benchlib.h"
#include "testvm.h"

extern char **environ;

static int run_quiet(char *const argv[])
{
	pid_t pid;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	int r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (r)
		return -r;
	int st;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 255;
}

static int exec_true(AgentClient *c, bool shell)
{
	const char *av[] = {"true", NULL};
	AgentExecSpec s = {.argv = shell ? NULL : av, .shell = shell ? "true" : NULL};
	AgentExecResult res;
	FlError e = {0};
	int r = agent_exec_sync(c, &s, -1, -1, -1, 60000, &res, &e);
	if (r < 0) {
		fprintf(stderr, "agent_rtt: exec: %s\n", e.msg);
		return r;
	}
	return res.exit_code == 0 ? 0 : -EIO;
}

static int measure(AgentClient *c, bool shell, size_t n, BenchSamples *s)
{
	for (size_t i = 0; i < 3; i++) /* warm up: first runs translate code */
		if (exec_true(c, shell) < 0)
			return -EIO;
	for (size_t i = 0; i < n; i++) {
		uint64_t t0 = bench_now_ns();
		if (exec_true(c, shell) < 0)
			return -EIO;
		bench_add(s, (double)(bench_now_ns() - t0) / 1e6);
	}
	return 0;
}

static int setup_ssh(TestVm *vm, const char *dir, char *key, size_t ksz)
{
	snprintf(key, ksz, "%s/id_ed25519", dir);
	char *kg[] = {"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key, NULL};
	if (run_quiet(kg) != 0)
		return -EIO;
	char pub[600];
	snprintf(pub, sizeof(pub), "%s.pub", key);
	int fd = open(pub, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	FlError e = {0};
	struct json_object *a = json_object_new_object();
	json_object_object_add(a, "path", json_object_new_string("/root/.ssh"));
	json_object_object_add(a, "mode", json_object_new_int(0700));
	json_object_object_add(a, "parents", json_object_new_boolean(1));
	agent_call_sync(vm->agent, "mkdir", a, 60000, NULL, &e);
	AgentFileAttrs at = {.mode = 0600};
	int r = agent_file_put_sync(vm->agent, fd, "/root/.ssh/authorized_keys", &at, 60000, NULL, &e);
	close(fd);
	if (r < 0) {
		fprintf(stderr, "agent_rtt: put key: %s\n", e.msg);
		return r;
	}
	/* wait for sshd to accept connections */
	AgentExecSpec s = {.shell = "for i in $(seq 300); do systemctl is-active -q ssh && exit 0; "
				    "systemctl start ssh 2>/dev/null; sleep 1; done; exit 1"};
	AgentExecResult res;
	r = agent_exec_sync(vm->agent, &s, -1, -1, -1, 400000, &res, &e);
	return r < 0 ? r : res.exit_code ? -EIO : 0;
}

static int ssh_true(const char *key, int port)
{
	char p[16];
	snprintf(p, sizeof(p), "%d", port);
	char *av[] = {"ssh", "-i", (char *)key, "-p", p, "-o", "StrictHostKeyChecking=no",
		      "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
		      "-o", "ConnectTimeout=60", "-o", "LogLevel=ERROR", "root@127.0.0.1", "true", NULL};
	return run_quiet(av);
}

int main(void)
{
	size_t n = bench_iterations(30, 5), nssh = bench_iterations(10, 3);
	FlError e = {0};
	TestVm *vm;
	TestVmOptions o = {.image = "debian-12", .ssh = true};
	if (testvm_start(&o, &vm, &e) < 0) {
		fprintf(stderr, "agent_rtt: %s\n", e.msg);
		return 1;
	}
	char dir[] = "/tmp/fluid-bench-ssh-XXXXXX", key[300];
	if (!mkdtemp(dir) || setup_ssh(vm, dir, key, sizeof(key)) < 0) {
		fprintf(stderr, "agent_rtt: ssh setup failed\n");
		testvm_destroy(vm);
		return 1;
	}
	BenchSamples agent = {0}, shell = {0}, ssh = {0};
	int rc = 0;
	if (measure(vm->agent, false, n, &agent) < 0 || measure(vm->agent, true, n, &shell) < 0)
		rc = 1;
	/* first connection warms sshd up */
	if (!rc && ssh_true(key, vm->ssh_port) != 0) {
		fprintf(stderr, "agent_rtt: ssh to the guest failed\n");
		rc = 1;
	}
	for (size_t i = 0; !rc && i < nssh; i++) {
		uint64_t t0 = bench_now_ns();
		if (ssh_true(key, vm->ssh_port) != 0) {
			rc = 1;
			break;
		}
		bench_add(&ssh, (double)(bench_now_ns() - t0) / 1e6);
	}
	if (!rc) {
		bench_report("agent_rtt", "ms", &agent, "ssh_true_fresh_connection", &ssh);
		bench_report("agent_rtt_shell", "ms", &shell, "ssh_true_fresh_connection", &ssh);
	}
	testvm_destroy(vm);
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		rc = 1;
	if (rc)
		return rc;

	TestVmOptions ot = {.image = "tiny"};
	if (testvm_start(&ot, &vm, &e) < 0) {
		fprintf(stderr, "agent_rtt: %s\n", e.msg);
		return 1;
	}
	BenchSamples tiny = {0};
	if (measure(vm->agent, false, n, &tiny) == 0)
		bench_report("agent_rtt_tiny", "ms", &tiny, NULL, NULL);
	else
		rc = 1;
	testvm_destroy(vm);
	bench_samples_free(&agent);
	bench_samples_free(&shell);
	bench_samples_free(&ssh);
	bench_samples_free(&tiny);
	return rc;
}
