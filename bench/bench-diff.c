// SPDX-License-Identifier: MIT
/*
 * bench-diff: the trusted diff (docs/diff.md) end to end through the engine
 * library, as POST /v1/sandboxes/{id}/diff runs it: inspector clone, push
 * of fluid-inspect, mounts, the walk of both trees and host validation.
 * A tiny sandbox gets ~200 changed files between two snapshots (100 added
 * text files, 60 modified, 40 removed); the diff between them is timed N
 * times (each run is a fresh inspector).
 *
 *   build/bench/bench-diff      -> {"name":"diff","unit":"ms",...}
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "benchlib.h"
#include "diff.h"
#include "engine.h"

static void noop(int stream, const void *buf, size_t len, void *ud) {}

static int sh(FlEngine *e, const char *id, const char *cmd)
{
	FlExecSpec s = {.shell = cmd, .timeout_ms = 300000};
	FlExecResult res;
	FlError err = {0};
	int r = fl_engine_exec(e, id, &s, noop, NULL, &res, &err);
	if (r < 0) {
		fprintf(stderr, "exec: %s\n", err.msg);
		return r;
	}
	return res.exit_code;
}

int main(void)
{
	const char *root = getenv("FLUID_ROOT") ? getenv("FLUID_ROOT") : ".";
	char state[] = "/tmp/fluid-bench-diff-XXXXXX", images[600], bin[600], cmd[512];
	snprintf(images, sizeof(images), "%s/build/images", root);
	snprintf(bin, sizeof(bin), "%s/build/fluid-inspect", root);
	if (!mkdtemp(state))
		return 1;
	FlEngineConfig c = {.state_dir = state, .image_dir = images, .accel = "tcg",
			    .boot_timeout_ms = 300000};
	FlEngine *e = NULL;
	FlError err = {0};
	int rc = 1;
	char *id = NULL;
	if (fl_engine_new(&c, &e, &err) < 0) {
		fprintf(stderr, "engine: %s\n", err.msg);
		goto out;
	}
	FlSandboxSpec spec = {.base_image = "tiny"};
	struct json_object *rec = NULL;
	if (fl_engine_create(e, &spec, &rec, &err) < 0) {
		fprintf(stderr, "create: %s\n", err.msg);
		goto out;
	}
	id = strdup(json_object_get_string(json_object_object_get(rec, "id")));
	json_object_put(rec);
	if (sh(e, id, "mkdir -p /srv/m /srv/r && i=0; while [ $i -lt 60 ]; do "
		      "seq 1 200 > /srv/m/f$i; i=$((i+1)); done; i=0; while [ $i -lt 40 ]; do "
		      "echo gone > /srv/r/f$i; i=$((i+1)); done; sync") != 0 ||
	    fl_engine_snapshot(e, id, "a", false, NULL, &err) < 0)
		goto out;
	if (sh(e, id, "mkdir -p /srv/a && i=0; while [ $i -lt 100 ]; do "
		      "seq $i 300 > /srv/a/f$i; i=$((i+1)); done; i=0; while [ $i -lt 60 ]; do "
		      "sed -i 's/^100$/hundred/' /srv/m/f$i; i=$((i+1)); done; rm -rf /srv/r; sync") != 0 ||
	    fl_engine_snapshot(e, id, "b", false, NULL, &err) < 0)
		goto out;
	BenchSamples s = {0};
	size_t n = bench_iterations(7, 2);
	for (size_t i = 0; i < n; i++) {
		FlDiffSpec ds = {.sandbox_id = id, .from = "a", .to = "b", .inspect_bin = bin};
		struct json_object *dj = NULL;
		uint64_t t0 = bench_now_ns();
		if (fl_diff_compute(e, &ds, &dj, NULL, &err) < 0) {
			fprintf(stderr, "diff: %s\n", err.msg);
			goto out;
		}
		bench_add(&s, (double)(bench_now_ns() - t0) / 1e6);
		size_t changed = json_object_array_length(json_object_object_get(dj, "files_added")) +
				 json_object_array_length(json_object_object_get(dj, "files_modified")) +
				 json_object_array_length(json_object_object_get(dj, "files_removed"));
		if (i == 0)
			fprintf(stderr, "diff: %zu changed paths\n", changed);
		json_object_put(dj);
	}
	bench_report("diff", "ms", &s, NULL, NULL);
	bench_samples_free(&s);
	rc = 0;
out:
	if (e && id)
		fl_engine_destroy(e, id, NULL);
	free(id);
	fl_engine_free(e);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", state);
	if (system(cmd) != 0)
		rc = 1;
	return rc;
}
