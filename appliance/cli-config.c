// SPDX-License-Identifier: MIT
/*
 * cli-config: `fluid config check|show|get KEY` to validate a configuration
 * file and to let scripts (scripts/run.sh) read effective values without
 * parsing YAML themselves.
 */
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "cli.h"
#include "config.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: fluid config check [--config FILE]\n"
		   "       fluid config show [--config FILE]\n"
		   "       fluid config get KEY [--config FILE]\n"
		   "\n"
		   "KEY: state_dir, server.listen, accelerator, images.dir, images.default,\n"
		   "     database.configured, database.conninfo, log_level, qemu\n");
}

static struct json_object *to_json(const FlConfig *cfg)
{
	struct json_object *o = json_object_new_object(), *s = json_object_new_object(),
			   *d = json_object_new_object(), *l = json_object_new_object(),
			   *im = json_object_new_object(), *h = json_object_new_array();
#define S(x) ((x) ? json_object_new_string(x) : NULL)
	json_object_object_add(o, "config_file", S(cfg->path));
	json_object_object_add(s, "listen", S(cfg->server.listen));
	json_object_object_add(s, "threads", json_object_new_int64(cfg->server.threads));
	json_object_object_add(s, "webui_dir", S(cfg->server.webui_dir));
	json_object_object_add(o, "server", s);
	json_object_object_add(d, "configured", json_object_new_boolean(cfg->database.configured));
	json_object_object_add(d, "url", S(cfg->database.url ? "(set)" : NULL));
	json_object_object_add(d, "host", S(cfg->database.host));
	json_object_object_add(d, "port", json_object_new_int64(cfg->database.port));
	json_object_object_add(d, "name", S(cfg->database.name));
	json_object_object_add(d, "user", S(cfg->database.user));
	json_object_object_add(d, "password", S(cfg->database.password ? "(set)" : NULL));
	json_object_object_add(o, "database", d);
	for (size_t i = 0; i < cfg->n_hosts; i++) {
		struct json_object *e = json_object_new_object();
		json_object_object_add(e, "name", S(cfg->hosts[i].name));
		json_object_object_add(e, "address", S(cfg->hosts[i].address));
		json_object_object_add(e, "user", S(cfg->hosts[i].user));
		json_object_object_add(e, "port", json_object_new_int64(cfg->hosts[i].port));
		json_object_array_add(h, e);
	}
	json_object_object_add(o, "hosts", h);
	json_object_object_add(o, "state_dir", S(cfg->state_dir));
	json_object_object_add(o, "accelerator", S(fl_accel_mode_to_string(cfg->accelerator)));
	json_object_object_add(o, "accelerator_probe_timeout_ms",
			       json_object_new_int64(cfg->accel_probe_timeout_ms));
	json_object_object_add(o, "qemu", S(cfg->qemu));
	json_object_object_add(l, "max_sandboxes", json_object_new_int64(cfg->limits.max_sandboxes));
	json_object_object_add(l, "memory_mb", json_object_new_int64(cfg->limits.memory_mb));
	json_object_object_add(l, "max_memory_mb", json_object_new_int64(cfg->limits.max_memory_mb));
	json_object_object_add(l, "vcpus", json_object_new_int64(cfg->limits.vcpus));
	json_object_object_add(l, "max_vcpus", json_object_new_int64(cfg->limits.max_vcpus));
	json_object_object_add(l, "ttl_seconds", json_object_new_int64((int64_t)cfg->limits.ttl_seconds));
	json_object_object_add(l, "max_ttl_seconds",
			       json_object_new_int64((int64_t)cfg->limits.max_ttl_seconds));
	json_object_object_add(o, "limits", l);
	json_object_object_add(im, "dir", S(cfg->images.dir));
	json_object_object_add(im, "default", S(cfg->images.default_image));
	json_object_object_add(o, "images", im);
	json_object_object_add(o, "log_level", S(fl_log_level_to_string(cfg->log_level)));
#undef S
	return o;
}

int fl_cmd_config(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *path = NULL;
	FlError err = {0};
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+c:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	const char *verb = argv[optind++];
	const char *key = NULL;
	if (!strcmp(verb, "get")) {
		if (optind >= argc) {
			usage(stderr);
			return 2;
		}
		key = argv[optind++];
	}
	/* Options may also follow the verb. */
	while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
		if (c != 'c') {
			usage(stderr);
			return 2;
		}
		path = optarg;
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}

	_cleanup_(fl_config_freep) FlConfig *cfg = NULL;
	if (fl_config_load(path, &cfg, &err) < 0) {
		fl_cli_error("%s", err.msg);
		return 1;
	}
	if (!strcmp(verb, "check")) {
		printf("%s: ok\n", cfg->path ? cfg->path : "built-in defaults");
		return 0;
	}
	if (!strcmp(verb, "show")) {
		struct json_object *o = to_json(cfg);
		puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
		json_object_put(o);
		return 0;
	}
	if (strcmp(verb, "get") != 0) {
		usage(stderr);
		return 2;
	}
	_cleanup_free_ char *conninfo = NULL;
	const char *v = NULL;
	if (!strcmp(key, "state_dir"))
		v = cfg->state_dir;
	else if (!strcmp(key, "server.listen"))
		v = cfg->server.listen;
	else if (!strcmp(key, "accelerator"))
		v = fl_accel_mode_to_string(cfg->accelerator);
	else if (!strcmp(key, "images.dir"))
		v = cfg->images.dir;
	else if (!strcmp(key, "images.default"))
		v = cfg->images.default_image;
	else if (!strcmp(key, "database.configured"))
		v = cfg->database.configured ? "true" : "false";
	else if (!strcmp(key, "database.conninfo"))
		v = conninfo = fl_config_database_conninfo(cfg);
	else if (!strcmp(key, "log_level"))
		v = fl_log_level_to_string(cfg->log_level);
	else if (!strcmp(key, "qemu"))
		v = cfg->qemu;
	else {
		fl_cli_error("config get: unknown key '%s'", key);
		return 2;
	}
	if (!v)
		return 1;
	puts(v);
	return 0;
}
