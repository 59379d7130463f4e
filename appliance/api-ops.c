// SPDX-License-Identifier: MIT
/*
 * api-ops: operational endpoints. GET /v1/health (unauthenticated liveness),
 * GET /v1/status (accelerator in use and why, versions, capacity) and
 * GET /v1/hosts (production hosts from the configuration).
 *
 * DESIGN: both handlers only read the FlApp built at start-up (the
 * accelerator decision is made once, before the server listens) plus cheap
 * host figures from /proc, so they never block on the engine. The engine
 * adds its own live figures through app->status_extend when it is wired in.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "http.h"
#include "state.h"

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)

static int get_health(FlHttpReq *req)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	if (!o)
		return fl_http_fail(req, -ENOMEM, "out of memory");
	json_object_object_add(o, "status", json_object_new_string("ok"));
	return fl_http_send_json(req, 200, o);
}
FL_ROUTE(get_health, "GET", "/v1/health", FL_ROLE_NONE);

/* MemTotal/MemAvailable in MiB from /proc/meminfo; 0 when unknown. */
static void host_memory(uint64_t *total_mb, uint64_t *avail_mb)
{
	_cleanup_free_ char *text = NULL;
	*total_mb = *avail_mb = 0;
	if (fl_read_file("/proc/meminfo", 1 << 16, &text, NULL) < 0)
		return;
	const char *p;
	unsigned long long kb;
	if ((p = strstr(text, "MemTotal:")) && sscanf(p, "MemTotal: %llu kB", &kb) == 1)
		*total_mb = kb / 1024;
	if ((p = strstr(text, "MemAvailable:")) && sscanf(p, "MemAvailable: %llu kB", &kb) == 1)
		*avail_mb = kb / 1024;
}

static struct json_object *jstr(const char *s) { return s ? json_object_new_string(s) : NULL; }

static int get_status(FlHttpReq *req)
{
	const FlApp *app = req->app;
	const FlConfig *cfg = app->cfg;
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	struct json_object *cap = json_object_new_object(), *host = json_object_new_object();
	struct json_object *acc = json_object_new_object();
	struct timespec ts;
	uint64_t total_mb, avail_mb;

	if (!o || !cap || !host || !acc) {
		json_object_put(cap);
		json_object_put(host);
		json_object_put(acc);
		return fl_http_fail(req, -ENOMEM, "out of memory");
	}
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t now_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;

	json_object_object_add(o, "status", json_object_new_string("ok"));
	json_object_object_add(o, "version", json_object_new_string(FL_VERSION));
	json_object_object_add(o, "git_rev", json_object_new_string(FL_GIT_REV));
	json_object_object_add(o, "accelerator",
			       json_object_new_string(fl_accel_name(app->accel.kind)));
	json_object_object_add(o, "accelerator_reason", json_object_new_string(app->accel.reason));
	json_object_object_add(acc, "mode",
			       json_object_new_string(fl_accel_mode_to_string(cfg->accelerator)));
	json_object_object_add(acc, "cached", json_object_new_boolean(app->accel.cached));
	json_object_object_add(acc, "probed", json_object_new_boolean(app->accel.probed));
	json_object_object_add(acc, "decided_at", json_object_new_string(app->accel.decided_at));
	json_object_object_add(acc, "probe_timeout_ms",
			       json_object_new_int64(cfg->accel_probe_timeout_ms));
	json_object_object_add(acc, "kvm_device", json_object_new_boolean(app->accel.kvm_device));
	json_object_object_add(o, "accelerator_detail", acc);
	json_object_object_add(o, "qemu_version", json_object_new_string(app->accel.qemu_version));
	json_object_object_add(o, "kernel_release",
			       json_object_new_string(app->accel.kernel_release));
	json_object_object_add(o, "started_at", json_object_new_int64(app->started_at));
	json_object_object_add(o, "uptime_seconds",
			       json_object_new_int64((int64_t)((now_ms - app->started_mono_ms) / 1000)));
	json_object_object_add(o, "listen", json_object_new_string(app->listen));
	json_object_object_add(o, "state_dir", json_object_new_string(cfg->state_dir));
	json_object_object_add(o, "config_file", jstr(cfg->path));
	json_object_object_add(o, "database_configured",
			       json_object_new_boolean(cfg->database.configured));

	host_memory(&total_mb, &avail_mb);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	json_object_object_add(host, "cpus", json_object_new_int64(cpus > 0 ? cpus : 0));
	json_object_object_add(host, "memory_mb", json_object_new_int64((int64_t)total_mb));
	json_object_object_add(host, "memory_available_mb", json_object_new_int64((int64_t)avail_mb));

	json_object_object_add(cap, "max_sandboxes",
			       json_object_new_int64(cfg->limits.max_sandboxes));
	json_object_object_add(cap, "sandboxes", json_object_new_int64(0));
	json_object_object_add(cap, "default_memory_mb", json_object_new_int64(cfg->limits.memory_mb));
	json_object_object_add(cap, "default_vcpus", json_object_new_int64(cfg->limits.vcpus));
	json_object_object_add(cap, "max_memory_mb", json_object_new_int64(cfg->limits.max_memory_mb));
	json_object_object_add(cap, "max_vcpus", json_object_new_int64(cfg->limits.max_vcpus));
	json_object_object_add(cap, "host", host);
	json_object_object_add(o, "capacity", cap);

	struct json_object *img = json_object_new_object();
	if (img) {
		json_object_object_add(img, "dir", json_object_new_string(cfg->images.dir));
		json_object_object_add(img, "default",
				       json_object_new_string(cfg->images.default_image));
		json_object_object_add(o, "images", img);
	}
	if (app->status_extend)
		app->status_extend((FlApp *)app, o);
	return fl_http_send_json(req, 200, o);
}
FL_ROUTE(get_status, "GET", "/v1/status", FL_ROLE_AGENT);

/* GET /v1/hosts: the production hosts from the configuration (no secrets in them). */
static int get_hosts(FlHttpReq *req)
{
	const FlConfig *cfg = req->app->cfg;
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	struct json_object *arr = json_object_new_array();
	if (!o || !arr) {
		json_object_put(arr);
		return fl_http_fail(req, -ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < cfg->n_hosts; i++) {
		const FlHostConfig *h = &cfg->hosts[i];
		struct json_object *e = json_object_new_object();
		if (!e)
			break;
		json_object_object_add(e, "name", json_object_new_string(h->name));
		json_object_object_add(e, "address", json_object_new_string(h->address));
		json_object_object_add(e, "user", jstr(h->user));
		json_object_object_add(e, "port", json_object_new_int64(h->port));
		json_object_array_add(arr, e);
	}
	json_object_object_add(o, "hosts", arr);
	json_object_object_add(o, "total", json_object_new_int64((int64_t)cfg->n_hosts));
	return fl_http_send_json(req, 200, o);
}
FL_ROUTE(get_hosts, "GET", "/v1/hosts", FL_ROLE_ADMIN);
