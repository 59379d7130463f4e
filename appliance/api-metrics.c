// SPDX-License-Identifier: MIT
/*
 * api-metrics: GET /metrics in the Prometheus text exposition format
 * (version 0.0.4): process uptime, sandboxes by state and warm-pool size
 * (from fl_engine_status() when the engine runs), HTTP responses by status
 * (the router's counters, http.c), and the event bus counters (events.h).
 *
 * It needs the agent role like the rest of the API (it reveals sandbox
 * counts); Prometheus sends the token with `authorization: {credentials:
 * ...}` in its scrape config.
 *
 * DESIGN: the handler builds the whole text in a bounded buffer (every
 * figure is a small counter; the per-status series are at most 500) and
 * sends it at once. Engine figures come from the engine's status JSON, so
 * nothing here knows the engine's internals; unknown states are exported
 * as they are named.
 */
#include <civetweb.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "engine.h"
#include "events.h"
#include "http.h"


#define METRICS_MAX (64u * 1024u)

typedef struct Buf {
	char *p;
	size_t len, cap;
	bool full;
} Buf;

__attribute__((format(printf, 2, 3))) static void out(Buf *b, const char *fmt, ...)
{
	if (b->full)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= b->cap - b->len)
		b->full = true;
	else
		b->len += (size_t)n;
}

static void metric_head(Buf *b, const char *name, const char *type, const char *help)
{
	out(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Label values here are engine state names or image names: keep them to a
 * safe alphabet rather than escaping. */
static void label_safe(char *dst, size_t len, const char *s)
{
	size_t i = 0;
	for (; s && *s && i + 1 < len; s++)
		dst[i++] = (strchr("\\\"\n", *s)) ? '_' : *s;
	dst[i] = 0;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int64_t jint(struct json_object *o, const char *k, int64_t def)
{
	struct json_object *v;
	if (!o || !json_object_object_get_ex(o, k, &v) || !v)
		return def;
	return json_object_get_int64(v);
}

static void engine_metrics(Buf *b, FlApp *app)
{
	static const char *const states[] = {"CREATED", "STARTING", "RUNNING", "STOPPED",
					     "ERROR"};
	struct json_object *st = NULL, *v;

	metric_head(b, "fluid_engine_up", "gauge", "1 when the sandbox engine is running");
	out(b, "fluid_engine_up %d\n", app->engine ? 1 : 0);
	if (app->engine)
		st = fl_engine_status(app->engine);

	metric_head(b, "fluid_sandboxes", "gauge", "Sandboxes by state");
	struct json_object *by = NULL;
	if (st && json_object_object_get_ex(st, "sandboxes", &v) && json_object_is_type(v, json_type_object))
		by = v;
	for (size_t i = 0; i < FL_ARRAY_SIZE(states); i++)
		out(b, "fluid_sandboxes{state=\"%s\"} %" PRId64 "\n", states[i], jint(by, states[i], 0));
	if (by) {
		json_object_object_foreach(by, k, val)
		{
			bool known = false;
			for (size_t i = 0; i < FL_ARRAY_SIZE(states); i++)
				known |= !strcmp(states[i], k);
			if (known)
				continue;
			char l[64];
			label_safe(l, sizeof(l), k);
			out(b, "fluid_sandboxes{state=\"%s\"} %" PRId64 "\n", l, json_object_get_int64(val));
		}
	}
	metric_head(b, "fluid_sandboxes_max", "gauge", "Sandbox capacity (limits.max_sandboxes)");
	out(b, "fluid_sandboxes_max %" PRId64 "\n",
	    jint(st, "max_sandboxes", app->cfg->limits.max_sandboxes));

	metric_head(b, "fluid_warm_pool_size", "gauge", "Warm clones ready to be claimed");
	int64_t pool = jint(st, "warm_pool", 0);
	out(b, "fluid_warm_pool_size %" PRId64 "\n", pool);
	metric_head(b, "fluid_warm_pool_target", "gauge", "Warm clones kept per image and shape");
	out(b, "fluid_warm_pool_target %" PRId64 "\n", jint(st, "pool_size", 0));
	metric_head(b, "fluid_standbys", "gauge", "Standby VMs ready for disk restores");
	out(b, "fluid_standbys %" PRId64 "\n", jint(st, "standbys", 0));

	json_object_put(st);
}

static int get_metrics(FlHttpReq *req)
{
	FlApp *app = req->app;
	_cleanup_free_ char *p = malloc(METRICS_MAX);
	if (!p)
		return fl_http_fail(req, -ENOMEM, "out of memory");
	Buf b = {.p = p, .cap = METRICS_MAX};
	p[0] = 0;

	metric_head(&b, "fluid_build_info", "gauge", "fluid version and accelerator in use");
	out(&b, "fluid_build_info{version=\"%s\",accelerator=\"%s\"} 1\n", FL_VERSION,
	    fl_accel_name(app->accel.kind));
	metric_head(&b, "fluid_uptime_seconds", "gauge", "Seconds since fluid serve started");
	uint64_t now = mono_ms();
	out(&b, "fluid_uptime_seconds %.3f\n",
	    now > app->started_mono_ms ? (double)(now - app->started_mono_ms) / 1000.0 : 0.0);
	metric_head(&b, "fluid_start_time_seconds", "gauge", "Start time, seconds since the epoch");
	out(&b, "fluid_start_time_seconds %" PRId64 "\n", app->started_at);

	engine_metrics(&b, app);

	metric_head(&b, "fluid_http_responses_total", "counter",
		    "HTTP responses sent by the API router, by status code");
	if (req->conn) {
		uint64_t counts[FL_HTTP_STATUS_MAX];
		fl_http_status_counts(fl_http_server_of(req->conn), counts);
		for (int i = 100; i < FL_HTTP_STATUS_MAX; i++)
			if (counts[i])
				out(&b, "fluid_http_responses_total{code=\"%d\"} %" PRIu64 "\n", i,
				    counts[i]);
	}

	FlEventsStats es;
	fl_events_stats(&es);
	metric_head(&b, "fluid_events_published_total", "counter", "Sandbox events published");
	out(&b, "fluid_events_published_total %" PRIu64 "\n", es.published);
	metric_head(&b, "fluid_events_dropped_total", "counter",
		    "Events dropped for slow stream subscribers");
	out(&b, "fluid_events_dropped_total %" PRIu64 "\n", es.dropped);
	metric_head(&b, "fluid_event_subscribers", "gauge", "Open event subscriptions (streams)");
	out(&b, "fluid_event_subscribers %u\n", es.subscribers);

	if (b.full)
		return fl_http_fail(req, -EMSGSIZE, "metrics text larger than %u bytes", METRICS_MAX);
	req->responded = true;
	if (!req->conn)
		return 200;
	char clen[32];
	snprintf(clen, sizeof(clen), "%zu", b.len);
	mg_response_header_start(req->conn, 200);
	mg_response_header_add(req->conn, "Content-Type", "text/plain; version=0.0.4; charset=utf-8", -1);
	mg_response_header_add(req->conn, "Content-Length", clen, -1);
	mg_response_header_add(req->conn, "Cache-Control", "no-store", -1);
	mg_response_header_send(req->conn);
	if (strcmp(req->method, "HEAD") != 0)
		mg_write(req->conn, b.p, b.len);
	return 200;
}
FL_ROUTE(get_metrics, "GET", "/metrics", FL_ROLE_AGENT);
