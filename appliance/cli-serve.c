// SPDX-License-Identifier: MIT
/*
 * cli-serve: `fluid serve`, the daemon. Loads the configuration, takes the
 * state-dir lock, decides the accelerator (probe or cache), starts the
 * HTTP server and waits for SIGTERM/SIGINT, then shuts down cleanly.
 *
 * Start order: config, state-dir lock, accelerator, FL_SERVICE entries
 * (database, engine, auth: see http.h) in their order, then HTTP. Stop
 * order is the reverse, so no request runs against a stopped engine.
 *
 * DESIGN: SIGTERM/SIGINT/SIGHUP are blocked before any thread exists, so
 * civetweb's workers inherit the mask and the main thread alone receives
 * them through a signalfd it polls. The listening address actually bound
 * (port 0 = any free port) is written to STATE/serve.json for scripts and
 * tests, and removed at exit.
 */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "accel.h"
#include "cleanup.h"
#include "cli.h"
#include "config.h"
#include "http.h"
#include "log.h"
#include "state.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: fluid serve [--config FILE] [--listen HOST:PORT] [--state-dir DIR]\n"
		   "\n"
		   "Runs the fluid server. Without --config, /etc/fluid/config.yaml is read\n"
		   "when it exists. See docs/config.md.\n");
}

static int set_opt(char **dst, const char *v)
{
	char *s = strdup(v);
	if (!s)
		return -ENOMEM;
	free(*dst);
	*dst = s;
	return 0;
}

static void write_serve_json(const FlApp *app, char *path, size_t len)
{
	struct json_object *o = json_object_new_object();
	if (!o)
		return;
	json_object_object_add(o, "pid", json_object_new_int64(getpid()));
	json_object_object_add(o, "listen", json_object_new_string(app->listen));
	char url[320];
	snprintf(url, sizeof(url), "http://%s", app->listen);
	json_object_object_add(o, "url", json_object_new_string(url));
	json_object_object_add(o, "accelerator",
			       json_object_new_string(fl_accel_name(app->accel.kind)));
	snprintf(path, len, "%s/serve.json", app->cfg->state_dir);
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY);
	int r = fl_write_file_atomic(path, s, strlen(s), 0644);
	if (r < 0)
		fl_log_warn("cannot write %s: %s", path, strerror(-r));
	json_object_put(o);
}

/* Stops the first n services in reverse order. */
static void stop_services(FlApp *app, const FlService *const *services, size_t n)
{
	while (n-- > 0) {
		if (services[n]->stop) {
			fl_log_info("stopping %s", services[n]->name);
			services[n]->stop(app);
		}
	}
}

int fl_cmd_serve(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'},
		{"listen", required_argument, NULL, 'l'},
		{"state-dir", required_argument, NULL, 's'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *config_path = NULL, *listen = NULL, *state_dir = NULL;
	FlError err = {0};
	int c, r;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:l:s:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config_path = optarg;
			break;
		case 'l':
			listen = optarg;
			break;
		case 's':
			state_dir = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}

	FlConfig *cfg = NULL;
	r = fl_config_load(config_path, &cfg, &err);
	if (r < 0) {
		fl_cli_error("%s", err.msg);
		return 1;
	}
	if (listen) {
		char host[256];
		unsigned port;
		if (fl_config_parse_listen(listen, host, sizeof(host), &port) < 0) {
			fl_cli_error("--listen: '%s' is not HOST:PORT", listen);
			fl_config_free(cfg);
			return 2;
		}
		if (set_opt(&cfg->server.listen, listen) < 0)
			return 1;
	}
	if (state_dir) {
		char abs[PATH_MAX];
		if (state_dir[0] != '/' && getcwd(abs, sizeof(abs)))
			snprintf(abs + strlen(abs), sizeof(abs) - strlen(abs), "/%s", state_dir);
		else
			snprintf(abs, sizeof(abs), "%s", state_dir);
		if (set_opt(&cfg->state_dir, abs) < 0)
			return 1;
	}
	fl_config_install(cfg); /* read-only from here on */
	fl_log_set_level(cfg->log_level);

	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	_cleanup_close_ int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (sfd < 0) {
		fl_cli_error("signalfd: %s", strerror(errno));
		return 1;
	}

	_cleanup_close_ int lock_fd = -1;
	r = fl_state_dir_lock(cfg->state_dir, &lock_fd, &err);
	if (r < 0) {
		fl_cli_error("%s", err.msg);
		return 1;
	}
	fl_log_info("fluid %s (%s) starting: config %s, state dir %s", FL_VERSION, FL_GIT_REV,
		    cfg->path ? cfg->path : "(built-in defaults)", cfg->state_dir);

	static FlApp app;
	struct timespec ts;
	app.cfg = cfg;
	app.started_at = (int64_t)time(NULL);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	app.started_mono_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;

	if (cfg->accelerator == FL_ACCEL_MODE_AUTO)
		fl_log_info("deciding the accelerator (kvm probe deadline %u ms unless cached)",
			    cfg->accel_probe_timeout_ms);
	r = fl_accel_decide(cfg, &app.accel, &err);
	if (r < 0) {
		fl_cli_error("cannot decide the accelerator: %s", err.msg);
		return 1;
	}
	fl_log_info("accelerator: %s (%s)%s", fl_accel_name(app.accel.kind), app.accel.reason,
		    app.accel.cached ? " [cached]" : "");

	/* Services (database, engine, auth, ...) come up before the first request. */
	const FlService *services[FL_MAX_SERVICES];
	size_t nsvc = fl_services(services, FL_MAX_SERVICES), started = 0;
	for (; started < nsvc; started++) {
		const FlService *sv = services[started];
		fl_log_info("starting %s", sv->name);
		r = sv->start(&app, &err);
		if (r < 0) {
			fl_cli_error("cannot start %s: %s", sv->name, err.msg);
			stop_services(&app, services, started);
			return 1;
		}
	}

	FlHttpServer *http = NULL;
	r = fl_http_start(&app, &http, &err);
	if (r < 0) {
		fl_cli_error("%s", err.msg);
		stop_services(&app, services, started);
		return 1;
	}
	const FlRoute *const *routes;
	size_t nroutes = fl_http_routes(&routes);
	fl_log_info("listening on http://%s (%zu routes)", app.listen, nroutes);
	if (!app.auth)
		fl_log_warn("no token authentication installed: role checks are not enforced");

	char serve_json[PATH_MAX];
	write_serve_json(&app, serve_json, sizeof(serve_json));

	for (;;) {
		struct pollfd p = {.fd = sfd, .events = POLLIN};
		int n = poll(&p, 1, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fl_log_errno(-errno, "poll");
			break;
		}
		struct signalfd_siginfo si;
		if (read(sfd, &si, sizeof(si)) != sizeof(si))
			continue;
		if (si.ssi_signo == SIGHUP) {
			fl_log_info("SIGHUP: configuration reload is not supported; restart instead");
			continue;
		}
		fl_log_info("received %s, shutting down", strsignal((int)si.ssi_signo));
		break;
	}
	fl_http_stop(http);
	stop_services(&app, services, started);
	unlink(serve_json);
	fl_log_info("stopped");
	return 0;
}
