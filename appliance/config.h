/* SPDX-License-Identifier: MIT */
/*
 * config: fluid's configuration, loaded once from YAML (libyaml) and read-only
 * afterwards. Keys are documented in docs/config.md.
 *
 * Precedence, lowest first: built-in defaults, the YAML file, environment
 * variables (FLUID_STATE_DIR, FLUID_ACCEL, FLUID_LISTEN, FLUID_IMAGE_DIR,
 * FLUID_QEMU, FLUID_LOG_LEVEL, DATABASE_URL), then command-line flags (which
 * the CLI applies before fl_config_install()).
 *
 * Ownership: fl_config_load()/fl_config_parse() return a new FlConfig that
 * the caller frees with fl_config_free(), or hands to fl_config_install(),
 * after which it lives until exit and fl_config_get() returns it from any
 * thread. Every string in it is owned by the FlConfig.
 */
#ifndef FL_CONFIG_H
#define FL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "log.h"

#define FL_CONFIG_DEFAULT_PATH "/etc/fluid/config.yaml"

typedef enum FlAccelMode {
	FL_ACCEL_MODE_AUTO = 0, /* probe KVM, fall back to TCG */
	FL_ACCEL_MODE_KVM,      /* force KVM, no probe */
	FL_ACCEL_MODE_TCG,      /* force TCG, no probe */
} FlAccelMode;

typedef struct FlHostConfig {
	char *name;    /* unique, [A-Za-z0-9._-]{1,63} */
	char *address; /* hostname or IP address */
	char *user;    /* SSH user, NULL = unset */
	unsigned port; /* SSH port, default 22 */
	/* Production apply (docs/approvals.md): both required to apply to
	 * the host; absolute paths, read by ssh, never served by the API. */
	char *ssh_key;     /* private key file, NULL = unset */
	char *known_hosts; /* the host's pinned key(s), NULL = unset */
} FlHostConfig;

typedef struct FlConfig {
	char *path; /* the file that was loaded, NULL for built-in defaults */

	struct {
		char *listen;     /* "HOST:PORT", default 127.0.0.1:8080 */
		unsigned threads; /* HTTP worker threads, default 64 */
		char *webui_dir;  /* static UI files, NULL = not served */
	} server;

	struct {
		bool configured; /* url or host given (file or DATABASE_URL) */
		char *url;       /* DATABASE_URL or database.url, NULL if unset */
		char *host;
		unsigned port; /* default 5432 */
		char *name;    /* default "fluid" */
		char *user;    /* default "fluid" */
		char *password;
	} database;

	FlHostConfig *hosts;
	size_t n_hosts;

	char *state_dir; /* absolute */
	FlAccelMode accelerator;
	unsigned accel_probe_timeout_ms; /* default 3000 */
	char *qemu;                      /* default "qemu-system-x86_64" (PATH lookup) */

	struct {
		unsigned max_sandboxes;   /* default 16 */
		unsigned memory_mb;       /* per sandbox default, 256 */
		unsigned max_memory_mb;   /* largest a caller may ask for, 8192 */
		unsigned vcpus;           /* per sandbox default, 1 */
		unsigned max_vcpus;       /* 8 */
		uint64_t ttl_seconds;     /* default TTL, 0 = none; default 3600 */
		uint64_t max_ttl_seconds; /* 86400 */
	} limits;

	struct {
		char *dir;           /* images root; default $FLUID_IMAGE_DIR or STATE/images */
		char *default_image; /* "debian-12" */
		unsigned pool_size;  /* warm clones kept ready per image and shape, default 2 */
	} images;

	/* Tap networking (docs/config.md "network"): the libvirt NAT network
	 * `fluid provision network` defines, and the bridge sandboxes with
	 * network "tap" join. */
	struct {
		char *bridge;      /* NULL = tap networking unavailable */
		char *libvirt_uri; /* default qemu:///system */
		char *name;        /* libvirt network name, default "fluid" */
		char *subnet;      /* IPv4 /24 "A.B.C.0/24", default 10.213.0.0/24 */
	} network;

	FlLogLevel log_level; /* default info */

	/* Safety policies (policy.h, docs/policies.md), in file order. There is
	 * always one named default_policy (a built-in permissive "default" when
	 * the file defines none of that name). */
	struct FlPolicy **policies;
	size_t n_policies;
	char *default_policy;
} FlConfig;

/* Looks an environment variable up; tests pass a fake. NULL = unset. */
typedef const char *(*fl_getenv_fn)(const char *name);

/*
 * Loads the configuration. path NULL means FL_CONFIG_DEFAULT_PATH when that
 * file exists, else built-in defaults. An explicitly given path must exist.
 * Environment overrides come from getenv(3).
 * Errors: -ENOENT (missing file), -EINVAL (bad YAML, unknown key, wrong
 * type; err says "FILE:LINE: ..."), -ENOMEM.
 */
int fl_config_load(const char *path, FlConfig **ret, FlError *err);

/*
 * Parses YAML text (len bytes; text NULL = defaults only). name is used in
 * messages and stored as cfg->path. env may be NULL (no overrides).
 */
int fl_config_parse(const char *text, size_t len, const char *name, fl_getenv_fn env,
		    FlConfig **ret, FlError *err);

void fl_config_free(FlConfig *cfg);

/* The policy called name (NULL = the default policy), or NULL if none. */
const struct FlPolicy *fl_config_policy(const FlConfig *cfg, const char *name);

/* libpq connection string (URL or key=value form); NULL if none configured. New string. */
char *fl_config_database_conninfo(const FlConfig *cfg);

const char *fl_accel_mode_to_string(FlAccelMode m);

/* Makes cfg the process-wide configuration (takes ownership; call once). */
void fl_config_install(FlConfig *cfg);
/* The installed configuration, or NULL before fl_config_install(). */
const FlConfig *fl_config_get(void);

/*
 * Splits "HOST:PORT" / "[V6]:PORT". host_len is the size of host. Port may be
 * 0 (pick a free port). Returns 0 or -EINVAL.
 */
int fl_config_parse_listen(const char *s, char *host, size_t host_len, unsigned *port);

static inline void fl_config_freep(FlConfig **p)
{
	if (*p)
		fl_config_free(*p);
}

#endif
