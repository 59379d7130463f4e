// SPDX-License-Identifier: MIT
/*
 * Engine benchmarks (one program, several JSON lines), with the tiny image
 * unless FLUID_BENCH_IMAGE says otherwise:
 *   clone_to_exec     create to the first `true` answered, with a warm clone
 *                     ready in the pool; clone_to_exec_nopool: a template
 *                     clone made on demand; baseline cold_boot_to_exec
 *                     (boot: cold) in the same run
 *   snapshot_disk     disk snapshot of a running sandbox
 *   checkpoint        RAM + disk checkpoint
 *   restore_to_exec   restore of a disk snapshot / of a checkpoint, to the
 *                     first `true` answered (restore_checkpoint_to_exec)
 *   idle_pss          PSS added per idle clone with 10 clones running (MiB)
 *   churn             create + exec + destroy cycles per minute over 60 s
 * The template is built before anything is timed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "benchlib.h"
#include "engine.h"

static FlEngine *E;
static const char *image = "tiny";

static double ms_since(uint64_t t0)
{
	return (double)(bench_now_ns() - t0) / 1e6;
}

static void die(const char *what, const FlError *err)
{
	fprintf(stderr, "bench-engine: %s: %s\n", what, err->msg);
	exit(1);
}

static char *create(bool cold)
{
	FlSandboxSpec s = {.base_image = image, .cold_boot = cold};
	struct json_object *o, *id;
	FlError err = {0};
	if (fl_engine_create(E, &s, &o, &err) < 0)
		die("create", &err);
	json_object_object_get_ex(o, "id", &id);
	char *r = strdup(json_object_get_string(id));
	json_object_put(o);
	return r;
}

static void run_true(const char *id)
{
	const char *argv[] = {"/bin/true", NULL};
	FlExecSpec s = {.argv = argv, .timeout_ms = 60000};
	FlExecResult res;
	FlError err = {0};
	if (fl_engine_exec(E, id, &s, NULL, NULL, &res, &err) < 0 || res.exit_code != 0)
		die("exec true", &err);
}

static void destroy(char *id)
{
	FlError err = {0};
	if (fl_engine_destroy(E, id, &err) < 0)
		die("destroy", &err);
	free(id);
}

static double create_to_exec(bool cold)
{
	uint64_t t0 = bench_now_ns();
	char *id = create(cold);
	run_true(id);
	double ms = ms_since(t0);
	destroy(id);
	return ms;
}

static FlEngineConfig cfg;

static void reopen(unsigned pool_size)
{
	FlError err = {0};
	fl_engine_free(E);
	cfg.pool_size = pool_size;
	if (fl_engine_new(&cfg, &E, &err) < 0)
		die("engine", &err);
	if (fl_engine_prepare_template(E, image, 0, 0, &err) < 0)
		die("template", &err);
}

static int status_count(const char *field)
{
	struct json_object *st = fl_engine_status(E), *v;
	int n = json_object_object_get_ex(st, field, &v) ? json_object_get_int(v) : 0;
	json_object_put(st);
	return n;
}

/*
 * clone_to_exec: what an API user sees with the warm pool on (default):
 * each create finds a warmed clone (we wait for the refill between
 * iterations; back-to-back creates are what churn measures).
 * clone_to_exec_nopool: a template clone made on demand.
 * Both against a cold boot of the same image in the same run.
 */
static void bench_clone(void)
{
	BenchSamples pooled = {0}, clone = {0}, cold = {0};
	size_t n = bench_iterations(20, 5), nc = bench_iterations(5, 2);
	for (size_t i = 0; i < n; i++)
		bench_add(&clone, create_to_exec(false));
	for (size_t i = 0; i < nc; i++)
		bench_add(&cold, create_to_exec(true));
	reopen(2);
	for (size_t i = 0; i < n; i++) {
		for (int w = 0; w < 1200 && status_count("warm_pool") < 2; w++)
			usleep(50000);
		bench_add(&pooled, create_to_exec(false));
	}
	reopen(0);
	bench_report("clone_to_exec", "ms", &pooled, "cold_boot_to_exec", &cold);
	bench_report("clone_to_exec_nopool", "ms", &clone, "cold_boot_to_exec", &cold);
	bench_samples_free(&pooled);
	bench_samples_free(&clone);
	bench_samples_free(&cold);
}

static void bench_snapshots(void)
{
	BenchSamples snap = {0}, ckpt = {0}, rdisk = {0}, rdisk_nopool = {0}, rckpt = {0};
	size_t n = bench_iterations(10, 3);
	char *id = create(false);
	FlError err = {0};
	for (size_t i = 0; i < n; i++) {
		char name[32];
		snprintf(name, sizeof(name), "s%zu", i);
		uint64_t t0 = bench_now_ns();
		if (fl_engine_snapshot(E, id, name, false, NULL, &err) < 0)
			die("snapshot", &err);
		bench_add(&snap, ms_since(t0));
		snprintf(name, sizeof(name), "c%zu", i);
		t0 = bench_now_ns();
		if (fl_engine_snapshot(E, id, name, true, NULL, &err) < 0)
			die("checkpoint", &err);
		bench_add(&ckpt, ms_since(t0));
	}
	for (size_t i = 0; i < n; i++) {
		char name[32];
		snprintf(name, sizeof(name), "s%zu", i);
		uint64_t t0 = bench_now_ns();
		if (fl_engine_restore(E, id, name, &err) < 0)
			die("restore", &err);
		run_true(id);
		bench_add(&rdisk_nopool, ms_since(t0));
		snprintf(name, sizeof(name), "c%zu", i);
		t0 = bench_now_ns();
		if (fl_engine_restore(E, id, name, &err) < 0)
			die("restore checkpoint", &err);
		run_true(id);
		bench_add(&rckpt, ms_since(t0));
	}
	destroy(id);
	/* What an API user sees with the pool on (default): the restore takes
	 * a standby (we wait for the refill between iterations). */
	reopen(1);
	id = create(false);
	if (fl_engine_snapshot(E, id, "s", false, NULL, &err) < 0)
		die("snapshot", &err);
	for (size_t i = 0; i < n + 1; i++) {
		for (int w = 0; w < 1200 && i > 0 && (status_count("standbys") < 1 || status_count("warm_pool") < 1); w++)
			usleep(50000);
		uint64_t t0 = bench_now_ns();
		if (fl_engine_restore(E, id, "s", &err) < 0)
			die("restore", &err);
		run_true(id);
		if (i > 0) /* the first one asks for standbys */
			bench_add(&rdisk, ms_since(t0));
	}
	destroy(id);
	reopen(0);
	bench_report("snapshot_disk", "ms", &snap, NULL, NULL);
	bench_report("checkpoint", "ms", &ckpt, NULL, NULL);
	bench_report("restore_to_exec", "ms", &rdisk, "restore_to_exec_nopool", &rdisk_nopool);
	bench_report("restore_to_exec_nopool", "ms", &rdisk_nopool, NULL, NULL);
	bench_report("restore_checkpoint_to_exec", "ms", &rckpt, NULL, NULL);
	bench_samples_free(&snap);
	bench_samples_free(&ckpt);
	bench_samples_free(&rdisk);
	bench_samples_free(&rdisk_nopool);
	bench_samples_free(&rckpt);
}

/* Sum of Pss over every QEMU process of ours, in KiB. */
static double qemu_pss_kib(const char *state_dir)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	double total = 0;
	while ((de = readdir(d))) {
		char p[300], buf[8192];
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(p, sizeof(p), "/proc/%s/cmdline", de->d_name);
		int fd = open(p, O_RDONLY);
		if (fd < 0)
			continue;
		ssize_t n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			continue;
		buf[n] = 0;
		for (ssize_t i = 0; i < n; i++)
			if (!buf[i])
				buf[i] = ' ';
		if (!strstr(buf, "qemu-system") || !strstr(buf, state_dir))
			continue;
		snprintf(p, sizeof(p), "/proc/%s/smaps_rollup", de->d_name);
		FILE *f = fopen(p, "r");
		if (!f)
			continue;
		while (fgets(buf, sizeof(buf), f)) {
			unsigned long kb;
			if (sscanf(buf, "Pss: %lu kB", &kb) == 1)
				total += (double)kb;
		}
		fclose(f);
	}
	closedir(d);
	return total;
}

static void bench_pss(const char *state_dir)
{
	enum { N = 10 };
	char *ids[N];
	BenchSamples per = {0};
	for (int i = 0; i < N; i++) {
		ids[i] = create(false);
		run_true(ids[i]);
	}
	sleep(2); /* let the guests go idle */
	double total = qemu_pss_kib(state_dir);
	bench_add(&per, total / N / 1024.0);
	for (int i = 0; i < N; i++)
		destroy(ids[i]);
	bench_report("idle_pss", "MiB", &per, NULL, NULL);
	bench_samples_free(&per);
}

static void bench_churn(void)
{
	double seconds = bench_quick() ? 15 : 60;
	uint64_t t0 = bench_now_ns();
	size_t cycles = 0;
	BenchSamples cyc = {0}, rate = {0};
	while (ms_since(t0) < seconds * 1000) {
		uint64_t c0 = bench_now_ns();
		char *id = create(false);
		run_true(id);
		destroy(id);
		bench_add(&cyc, ms_since(c0));
		cycles++;
	}
	bench_add(&rate, (double)cycles * 60000.0 / ms_since(t0));
	bench_report("churn", "cycles/min", &rate, NULL, NULL);
	bench_report("churn_cycle", "ms", &cyc, NULL, NULL);
	bench_samples_free(&cyc);
	bench_samples_free(&rate);
}

int main(int argc, char **argv)
{
	const char *root = getenv("FLUID_ROOT") ? getenv("FLUID_ROOT") : ".";
	if (getenv("FLUID_BENCH_IMAGE"))
		image = getenv("FLUID_BENCH_IMAGE");
	char image_dir[512], state_dir[] = "/tmp/fluid-bench-XXXXXX";
	snprintf(image_dir, sizeof(image_dir), "%s/build/images", root);
	if (!mkdtemp(state_dir))
		return 1;
	cfg = (FlEngineConfig){.state_dir = state_dir, .image_dir = image_dir, .accel = "tcg"};
	reopen(0);
	bool all = argc < 2;
	for (int i = 1; i < argc || all; i++) {
		const char *what = all ? "all" : argv[i];
		if (all || !strcmp(what, "clone"))
			bench_clone();
		if (all || !strcmp(what, "snapshot"))
			bench_snapshots();
		if (all || !strcmp(what, "pss"))
			bench_pss(state_dir);
		if (all || !strcmp(what, "churn"))
			bench_churn();
		all = false;
	}
	fl_engine_free(E);
	char cmd[300];
	/* pool entries outlive the engine by design (VMs outlive the daemon) */
	snprintf(cmd, sizeof(cmd), "pkill -9 -f '[q]emu-system.*%s'; rm -rf %s", state_dir, state_dir);
	return system(cmd) == 0 ? 0 : 1;
}
