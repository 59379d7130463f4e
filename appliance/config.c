// SPDX-License-Identifier: MIT
/*
 * config: YAML configuration loading and validation.
 *
 * DESIGN: libyaml loads the file into a document tree; a small schema walk
 * (one function per section) copies known keys into FlConfig. Every node
 * carries its start line, so an unknown key, a duplicate key, a wrong type or
 * an out-of-range number is reported as "FILE:LINE: what is wrong". Nothing
 * unknown is ignored: a typo must not silently fall back to a default.
 * Environment overrides are applied after the file, then derived defaults
 * (state dir, image dir) are filled in. The result is never modified after
 * fl_config_install().
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "cleanup.h"
#include "config.h"
#include "policy.h"

#define CONFIG_MAX_BYTES (1u << 20)
#define CONFIG_MAX_HOSTS 1024
#define CONFIG_MAX_POLICIES 64

static FlConfig *installed;

typedef struct Ctx {
	yaml_document_t *doc;
	const char *name;
	FlError *err;
} Ctx;

static unsigned line_of(const yaml_node_t *n) { return (unsigned)n->start_mark.line + 1; }

__attribute__((format(printf, 3, 4))) static int cerr(Ctx *c, const yaml_node_t *n,
						       const char *fmt, ...)
{
	char msg[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n)
		return fl_error_set(c->err, -EINVAL, "%s:%u: %s", c->name, line_of(n), msg);
	return fl_error_set(c->err, -EINVAL, "%s: %s", c->name, msg);
}

static const char *node_type_name(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_SCALAR_NODE:
		return "a scalar";
	case YAML_SEQUENCE_NODE:
		return "a list";
	case YAML_MAPPING_NODE:
		return "a mapping";
	default:
		return "nothing";
	}
}

static bool scalar_is_null(const yaml_node_t *n)
{
	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	const char *v = (const char *)n->data.scalar.value;
	return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") ||
	       !strcmp(v, "NULL");
}

static int get_string(Ctx *c, const char *key, const yaml_node_t *n, char **dst)
{
	if (n->type != YAML_SCALAR_NODE || scalar_is_null(n))
		return cerr(c, n, "%s: expected a string, got %s", key,
			    scalar_is_null(n) ? "an empty value" : node_type_name(n));
	if (n->data.scalar.length > 4096)
		return cerr(c, n, "%s: value too long", key);
	if (strlen((const char *)n->data.scalar.value) != n->data.scalar.length)
		return cerr(c, n, "%s: NUL byte in value", key);
	char *s = strdup((const char *)n->data.scalar.value);
	if (!s)
		return fl_error_set(c->err, -ENOMEM, "out of memory");
	free(*dst);
	*dst = s;
	return 0;
}

static int parse_u64(const char *s, uint64_t *ret)
{
	if (!*s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*ret = v;
	return 0;
}

static int get_u64(Ctx *c, const char *key, const yaml_node_t *n, uint64_t min, uint64_t max,
		   uint64_t *dst)
{
	uint64_t v;
	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
	    parse_u64((const char *)n->data.scalar.value, &v) < 0)
		return cerr(c, n, "%s: expected an integer, got %s", key,
			    n->type == YAML_SCALAR_NODE ? "a string" : node_type_name(n));
	if (v < min || v > max)
		return cerr(c, n, "%s: %llu is out of range %llu..%llu", key,
			    (unsigned long long)v, (unsigned long long)min,
			    (unsigned long long)max);
	*dst = v;
	return 0;
}

static int get_uint(Ctx *c, const char *key, const yaml_node_t *n, unsigned min, unsigned max,
		    unsigned *dst)
{
	uint64_t v;
	int r = get_u64(c, key, n, min, max, &v);
	if (r < 0)
		return r;
	*dst = (unsigned)v;
	return 0;
}

static bool valid_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
			return false;
	return s[0] != '.' && s[0] != '-';
}

int fl_config_parse_listen(const char *s, char *host, size_t host_len, unsigned *port)
{
	const char *colon;
	size_t hl;

	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':')
			return -EINVAL;
		colon = close + 1;
		hl = (size_t)(close - s) + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || memchr(s, ':', (size_t)(colon - s)))
			return -EINVAL;
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= host_len)
		return -EINVAL;
	for (size_t i = 0; i < hl; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr(".-[]:", s[i]))
			return -EINVAL;
	uint64_t p;
	if (parse_u64(colon + 1, &p) < 0 || p > 65535)
		return -EINVAL;
	memcpy(host, s, hl);
	host[hl] = 0;
	*port = (unsigned)p;
	return 0;
}

/* Iterates the pairs of a mapping node. Rejects non-string and duplicate keys. */
typedef int (*pair_fn)(Ctx *c, const char *key, yaml_node_t *kn, yaml_node_t *vn, void *ud);

static int walk_mapping(Ctx *c, const char *section, yaml_node_t *map, pair_fn fn, void *ud)
{
	if (scalar_is_null(map))
		return 0; /* "section:" with nothing under it */
	if (map->type != YAML_MAPPING_NODE)
		return cerr(c, map, "%s: expected a mapping, got %s", section, node_type_name(map));
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *kn = yaml_document_get_node(c->doc, p->key);
		yaml_node_t *vn = yaml_document_get_node(c->doc, p->value);
		if (!kn || !vn)
			return cerr(c, map, "%s: malformed mapping", section);
		if (kn->type != YAML_SCALAR_NODE)
			return cerr(c, kn, "%s: keys must be strings", section);
		const char *key = (const char *)kn->data.scalar.value;
		for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
			yaml_node_t *qk = yaml_document_get_node(c->doc, q->key);
			if (qk && qk->type == YAML_SCALAR_NODE &&
			    !strcmp((const char *)qk->data.scalar.value, key))
				return cerr(c, kn, "duplicate key '%s'%s%s (first on line %u)", key,
					    *section ? " in " : "", section, line_of(qk));
		}
		int r = fn(c, key, kn, vn, ud);
		if (r < 0)
			return r;
	}
	return 0;
}

static int unknown(Ctx *c, const char *section, const char *key, yaml_node_t *kn)
{
	if (*section)
		return cerr(c, kn, "unknown key '%s' in %s", key, section);
	return cerr(c, kn, "unknown key '%s'", key);
}

static int server_pair(Ctx *c, const char *key, yaml_node_t *kn, yaml_node_t *vn, void *ud)
{
	FlConfig *cfg = ud;
	if (!strcmp(key, "listen")) {
		char host[256];
		unsigned port;
		int r = get_string(c, "server.listen", vn, &cfg->server.listen);
		if (r < 0)
			return r;
		if (fl_config_parse_listen(cfg->server.listen, host, sizeof(host), &port) < 0)
			return cerr(c, vn, "server.listen: '%s' is not HOST:PORT",
				    cfg->server.listen);
		return 0;
	}
	if (!strcmp(key, "threads"))
		return get_uint(c, "server.threads", vn, 1, 256, &cfg->server.threads);
	if (!strcmp(key, "webui_dir"))
		return get_string(c, "server.webui_dir", vn, &cfg->server.webui_dir);
	return unknown(c, "server", key, kn);
}

static int database_pair(Ctx *c, const char *key, yaml_node_t *kn, yaml_node_t *vn, void *ud)
{
	FlConfig *cfg = ud;
	if (!strcmp(key, "url"))
		return get_string(c, "database.url", vn, &cfg->database.url);
	if (!strcmp(key, "host"))
		return get_string(c, "database.host", vn, &cfg->database.host);
	if (!strcmp(key, "port"))
		return get_uint(c, "database.port", vn, 1, 65535, &cfg->database.port);
	if (!strcmp(key, "name"))
		return get_string(c, "database.name", vn, &cfg->database.name);
	if (!strcmp(key, "user"))
		return get_string(c, "database.user", vn, &cfg->database.user);
	if (!strcmp(key, "password"))
		return get_string(c, "database.password", vn, &cfg->database.password);
	return unknown(c, "database", key, kn);
}

static int limits_pair(Ctx *c, const char *key, yaml_node_t *kn, yaml_node_t *vn, void *ud)
{
	FlConfig *cfg = ud;
	if (!strcmp(key, "max_sandboxes"))
		return get_uint(c, "limits.max_sandboxes", vn, 1, 4096, &cfg->limits.max_sandboxes);
	if (!strcmp(key, "memory_mb"))
		return get_uint(c, "limits.memory_mb", vn, 16, 1u << 20, &cfg->limits.memory_mb);
	if (!strcmp(key, "max_memory_mb"))
		return get_uint(c, "limits.max_memory_mb", vn, 16, 1u << 20,
				&cfg->limits.max_memory_mb);
	if (!strcmp(key, "vcpus"))
		return get_uint(c, "limits.vcpus", vn, 1, 256, &cfg->limits.vcpus);
	if (!strcmp(key, "max_vcpus"))
		return get_uint(c, "limits.max_vcpus", vn, 1, 256, &cfg->limits.max_vcpus);
	if (!strcmp(key, "ttl_seconds"))
		return get_u64(c, "limits.ttl_seconds", vn, 0, UINT32_MAX, &cfg->limits.ttl_seconds);
	if (!strcmp(key, "max_ttl_seconds"))
		return get_u64(c, "limits.max_ttl_seconds", vn, 1, UINT32_MAX,
			       &cfg->limits.max_ttl_seconds);
	return unknown(c, "limits", key, kn);
}

static int images_pair(Ctx *c, const char *key, yaml_node_t *kn, yaml_node_t *vn, void *ud)
{
	FlConfig *cfg = ud;
	if (!strcmp(key, "dir"))
		return get_string(c, "images.dir", vn, &cfg->images.dir);
	if (!strcmp(key, "default")) {
		int r = get_string(c, "images.default", vn, &cfg->images.default_image);
		if (r < 0)
			return r;
		if (!valid_name(cfg->images.default_image))
			return cerr(c, vn, "images.default: '%s' is not a valid image name",
				    cfg->images.default_image);
		return 0;
	}
	if (!strcmp(key, "pool_size"))
		return get_uint(c, "images.pool_size", vn, 0, 64, &cfg->images.pool_size);
	return unknown(c, "images", key, kn);
}

static int network_pair(Ctx *c, const char *key, yaml_node_t *kn, yaml_node_t *vn, void *ud)
{
	FlConfig *cfg = ud;
	if (!strcmp(key, "bridge")) {
		int r = get_string(c, "network.bridge", vn, &cfg->network.bridge);
		if (r < 0)
			return r;
		if (!valid_name(cfg->network.bridge) || strlen(cfg->network.bridge) > 15)
			return cerr(c, vn, "network.bridge: '%s' is not a valid interface name (1-15 characters)",
				    cfg->network.bridge);
		return 0;
	}
	if (!strcmp(key, "libvirt_uri"))
		return get_string(c, "network.libvirt_uri", vn, &cfg->network.libvirt_uri);
	if (!strcmp(key, "name")) {
		int r = get_string(c, "network.name", vn, &cfg->network.name);
		if (r == 0 && !valid_name(cfg->network.name))
			return cerr(c, vn, "network.name: '%s' is not a valid name", cfg->network.name);
		return r;
	}
	if (!strcmp(key, "subnet"))
		return get_string(c, "network.subnet", vn, &cfg->network.subnet);
	return unknown(c, "network", key, kn);
}

static int host_pair(Ctx *c, const char *key, yaml_node_t *kn, yaml_node_t *vn, void *ud)
{
	FlHostConfig *h = ud;
	if (!strcmp(key, "name")) {
		int r = get_string(c, "hosts[].name", vn, &h->name);
		if (r < 0)
			return r;
		if (!valid_name(h->name))
			return cerr(c, vn, "hosts[].name: '%s' is not a valid name", h->name);
		return 0;
	}
	if (!strcmp(key, "address"))
		return get_string(c, "hosts[].address", vn, &h->address);
	if (!strcmp(key, "user"))
		return get_string(c, "hosts[].user", vn, &h->user);
	if (!strcmp(key, "port"))
		return get_uint(c, "hosts[].port", vn, 1, 65535, &h->port);
	if (!strcmp(key, "ssh_key") || !strcmp(key, "known_hosts")) {
		char **dst = !strcmp(key, "ssh_key") ? &h->ssh_key : &h->known_hosts;
		int r = get_string(c, !strcmp(key, "ssh_key") ? "hosts[].ssh_key" : "hosts[].known_hosts",
				   vn, dst);
		if (r < 0)
			return r;
		/* goes into ssh options and an Ansible inventory: plain absolute paths only */
		bool ok = (*dst)[0] == '/' && strlen(*dst) < 1024;
		for (const char *s = *dst; ok && *s; s++)
			ok = (unsigned char)*s > 0x20 && *s != 0x7f && !strchr("\"'{}%$`\\", *s);
		if (!ok)
			return cerr(c, vn, "hosts[].%s: an absolute path without spaces, quotes, "
				    "braces or %%", key);
		return 0;
	}
	return unknown(c, "hosts[]", key, kn);
}

static int parse_hosts(Ctx *c, FlConfig *cfg, yaml_node_t *seq)
{
	if (scalar_is_null(seq))
		return 0;
	if (seq->type != YAML_SEQUENCE_NODE)
		return cerr(c, seq, "hosts: expected a list, got %s", node_type_name(seq));
	size_t n = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
	if (n > CONFIG_MAX_HOSTS)
		return cerr(c, seq, "hosts: more than %d entries", CONFIG_MAX_HOSTS);
	if (n == 0)
		return 0;
	cfg->hosts = calloc(n, sizeof(*cfg->hosts));
	if (!cfg->hosts)
		return fl_error_set(c->err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *item = yaml_document_get_node(c->doc, seq->data.sequence.items.start[i]);
		FlHostConfig *h = &cfg->hosts[i];
		cfg->n_hosts = i + 1;
		h->port = 22;
		if (!item || item->type != YAML_MAPPING_NODE)
			return cerr(c, item ? item : seq, "hosts[%zu]: expected a mapping", i);
		int r = walk_mapping(c, "hosts[]", item, host_pair, h);
		if (r < 0)
			return r;
		if (!h->name)
			return cerr(c, item, "hosts[%zu]: missing 'name'", i);
		if (!h->address)
			return cerr(c, item, "hosts[%zu]: missing 'address'", i);
		for (size_t j = 0; j < i; j++)
			if (!strcmp(cfg->hosts[j].name, h->name))
				return cerr(c, item, "hosts: duplicate name '%s'", h->name);
	}
	return 0;
}

/* A YAML subtree as JSON, for policy.c (plain integers and booleans typed). */
static int yaml_to_json(Ctx *c, yaml_node_t *n, unsigned depth, struct json_object **ret)
{
	if (depth > 16)
		return cerr(c, n, "nested too deeply");
	if (n->type == YAML_SCALAR_NODE) {
		const char *v = (const char *)n->data.scalar.value;
		uint64_t u;
		if (strlen(v) != n->data.scalar.length)
			return cerr(c, n, "NUL byte in value");
		if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
			if (scalar_is_null(n)) {
				*ret = NULL;
				return 0;
			}
			if (parse_u64(v, &u) == 0 && u <= INT64_MAX) {
				*ret = json_object_new_int64((int64_t)u);
				return 0;
			}
			if (v[0] == '-' && parse_u64(v + 1, &u) == 0) {
				*ret = json_object_new_int64(-1); /* negative: rejected by range checks */
				return 0;
			}
			if (!strcmp(v, "true") || !strcmp(v, "false")) {
				*ret = json_object_new_boolean(v[0] == 't');
				return 0;
			}
		}
		*ret = json_object_new_string(v);
		return *ret ? 0 : fl_error_set(c->err, -ENOMEM, "out of memory");
	}
	if (n->type == YAML_SEQUENCE_NODE) {
		struct json_object *a = json_object_new_array();
		for (yaml_node_item_t *it = n->data.sequence.items.start;
		     a && it < n->data.sequence.items.top; it++) {
			struct json_object *e = NULL;
			yaml_node_t *in = yaml_document_get_node(c->doc, *it);
			int r = in ? yaml_to_json(c, in, depth + 1, &e) : cerr(c, n, "malformed list");
			if (r < 0) {
				json_object_put(a);
				return r;
			}
			json_object_array_add(a, e);
		}
		*ret = a;
		return a ? 0 : fl_error_set(c->err, -ENOMEM, "out of memory");
	}
	if (n->type == YAML_MAPPING_NODE) {
		struct json_object *o = json_object_new_object();
		for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
		     o && p < n->data.mapping.pairs.top; p++) {
			yaml_node_t *kn = yaml_document_get_node(c->doc, p->key);
			yaml_node_t *vn = yaml_document_get_node(c->doc, p->value);
			struct json_object *e = NULL;
			int r;
			if (!kn || !vn || kn->type != YAML_SCALAR_NODE)
				r = cerr(c, n, "keys must be strings");
			else if (json_object_object_get_ex(o, (const char *)kn->data.scalar.value, NULL))
				r = cerr(c, kn, "duplicate key '%s'", (const char *)kn->data.scalar.value);
			else
				r = yaml_to_json(c, vn, depth + 1, &e);
			if (r < 0) {
				json_object_put(o);
				return r;
			}
			json_object_object_add(o, (const char *)kn->data.scalar.value, e);
		}
		*ret = o;
		return o ? 0 : fl_error_set(c->err, -ENOMEM, "out of memory");
	}
	return cerr(c, n, "unexpected YAML node");
}

static int policy_pair(Ctx *c, const char *key, yaml_node_t *kn, yaml_node_t *vn, void *ud)
{
	FlConfig *cfg = ud;
	struct json_object *obj = NULL;
	FlPolicy *p = NULL;
	FlError perr = {0};
	if (!valid_name(key))
		return cerr(c, kn, "policies: '%s' is not a valid policy name", key);
	if (cfg->n_policies >= CONFIG_MAX_POLICIES)
		return cerr(c, kn, "policies: more than %d policies", CONFIG_MAX_POLICIES);
	if (vn->type != YAML_MAPPING_NODE && !scalar_is_null(vn))
		return cerr(c, vn, "policies.%s: expected a mapping", key);
	int r = yaml_to_json(c, vn, 0, &obj);
	if (r < 0)
		return r;
	r = fl_policy_from_json(key, obj, &p, &perr);
	json_object_put(obj);
	if (r < 0)
		return cerr(c, vn, "policies.%s: %s", key, perr.msg);
	FlPolicy **nv = realloc(cfg->policies, (cfg->n_policies + 1) * sizeof(*nv));
	if (!nv) {
		fl_policy_free(p);
		return fl_error_set(c->err, -ENOMEM, "out of memory");
	}
	cfg->policies = nv;
	cfg->policies[cfg->n_policies++] = p;
	return 0;
}

static int top_pair(Ctx *c, const char *key, yaml_node_t *kn, yaml_node_t *vn, void *ud)
{
	FlConfig *cfg = ud;
	if (!strcmp(key, "server"))
		return walk_mapping(c, "server", vn, server_pair, cfg);
	if (!strcmp(key, "database"))
		return walk_mapping(c, "database", vn, database_pair, cfg);
	if (!strcmp(key, "limits"))
		return walk_mapping(c, "limits", vn, limits_pair, cfg);
	if (!strcmp(key, "images"))
		return walk_mapping(c, "images", vn, images_pair, cfg);
	if (!strcmp(key, "network"))
		return walk_mapping(c, "network", vn, network_pair, cfg);
	if (!strcmp(key, "hosts"))
		return parse_hosts(c, cfg, vn);
	if (!strcmp(key, "policies"))
		return walk_mapping(c, "policies", vn, policy_pair, cfg);
	if (!strcmp(key, "default_policy")) {
		int r = get_string(c, "default_policy", vn, &cfg->default_policy);
		if (r >= 0 && !valid_name(cfg->default_policy))
			return cerr(c, vn, "default_policy: '%s' is not a valid policy name",
				    cfg->default_policy);
		return r;
	}
	if (!strcmp(key, "state_dir"))
		return get_string(c, "state_dir", vn, &cfg->state_dir);
	if (!strcmp(key, "qemu"))
		return get_string(c, "qemu", vn, &cfg->qemu);
	if (!strcmp(key, "accelerator_probe_timeout_ms"))
		return get_uint(c, "accelerator_probe_timeout_ms", vn, 100, 600000,
				&cfg->accel_probe_timeout_ms);
	if (!strcmp(key, "accelerator")) {
		_cleanup_free_ char *s = NULL;
		int r = get_string(c, "accelerator", vn, &s);
		if (r < 0)
			return r;
		if (!strcmp(s, "auto"))
			cfg->accelerator = FL_ACCEL_MODE_AUTO;
		else if (!strcmp(s, "kvm"))
			cfg->accelerator = FL_ACCEL_MODE_KVM;
		else if (!strcmp(s, "tcg"))
			cfg->accelerator = FL_ACCEL_MODE_TCG;
		else
			return cerr(c, vn, "accelerator: '%s' is not one of auto, kvm, tcg", s);
		return 0;
	}
	if (!strcmp(key, "log_level")) {
		_cleanup_free_ char *s = NULL;
		int r = get_string(c, "log_level", vn, &s);
		if (r < 0)
			return r;
		if (fl_log_level_from_string(s, &cfg->log_level) < 0)
			return cerr(c, vn, "log_level: '%s' is not one of error, warn, info, debug",
				    s);
		return 0;
	}
	return unknown(c, "", key, kn);
}

static int set_str(char **dst, const char *v)
{
	char *s = strdup(v);
	if (!s)
		return -ENOMEM;
	free(*dst);
	*dst = s;
	return 0;
}

static int absolutize(char **path)
{
	if ((*path)[0] == '/')
		return 0;
	char cwd[PATH_MAX];
	if (!getcwd(cwd, sizeof(cwd)))
		return -errno;
	char *abs;
	const char *rel = *path;
	if (!strcmp(rel, "."))
		rel = "";
	else if (!strncmp(rel, "./", 2))
		rel += 2;
	if (asprintf(&abs, "%s%s%s", cwd, *rel ? "/" : "", rel) < 0)
		return -ENOMEM;
	free(*path);
	*path = abs;
	return 0;
}

static int apply_env(FlConfig *cfg, fl_getenv_fn env, const char *name, FlError *err)
{
	const char *v;
	if (!env)
		return 0;
	if ((v = env("FLUID_STATE_DIR")) && *v && set_str(&cfg->state_dir, v) < 0)
		return -ENOMEM;
	if ((v = env("FLUID_IMAGE_DIR")) && *v && set_str(&cfg->images.dir, v) < 0)
		return -ENOMEM;
	if ((v = env("FLUID_QEMU")) && *v && set_str(&cfg->qemu, v) < 0)
		return -ENOMEM;
	if ((v = env("DATABASE_URL")) && *v && set_str(&cfg->database.url, v) < 0)
		return -ENOMEM;
	if ((v = env("FLUID_LISTEN")) && *v) {
		char host[256];
		unsigned port;
		if (fl_config_parse_listen(v, host, sizeof(host), &port) < 0)
			return fl_error_set(err, -EINVAL, "FLUID_LISTEN: '%s' is not HOST:PORT", v);
		if (set_str(&cfg->server.listen, v) < 0)
			return -ENOMEM;
	}
	if ((v = env("FLUID_ACCEL")) && *v) {
		if (!strcmp(v, "auto"))
			cfg->accelerator = FL_ACCEL_MODE_AUTO;
		else if (!strcmp(v, "kvm"))
			cfg->accelerator = FL_ACCEL_MODE_KVM;
		else if (!strcmp(v, "tcg"))
			cfg->accelerator = FL_ACCEL_MODE_TCG;
		else
			return fl_error_set(err, -EINVAL,
					    "FLUID_ACCEL: '%s' is not one of auto, kvm, tcg", v);
	}
	if ((v = env("FLUID_LOG_LEVEL")) && *v &&
	    fl_log_level_from_string(v, &cfg->log_level) < 0)
		return fl_error_set(err, -EINVAL, "FLUID_LOG_LEVEL: '%s' is not a log level", v);
	(void)name;
	return 0;
}

/* Fills defaults that depend on other values (after file and environment). */
static int finish(FlConfig *cfg, fl_getenv_fn env, FlError *err)
{
	if (!cfg->state_dir) {
		const char *home = env ? env("HOME") : NULL;
		const char *xdg = env ? env("XDG_STATE_HOME") : NULL;
		int r;
		if (geteuid() == 0 || (!home && !xdg))
			r = set_str(&cfg->state_dir, "/var/lib/fluid");
		else if (xdg && *xdg)
			r = asprintf(&cfg->state_dir, "%s/fluid", xdg) < 0 ? -ENOMEM : 0;
		else
			r = asprintf(&cfg->state_dir, "%s/.local/state/fluid", home) < 0 ? -ENOMEM
											    : 0;
		if (r < 0)
			return fl_error_set(err, -ENOMEM, "out of memory");
	}
	if (absolutize(&cfg->state_dir) < 0)
		return fl_error_set(err, -ENOMEM, "cannot make state_dir absolute");
	if (!cfg->images.dir && asprintf(&cfg->images.dir, "%s/images", cfg->state_dir) < 0)
		return fl_error_set(err, -ENOMEM, "out of memory");
	if (absolutize(&cfg->images.dir) < 0)
		return fl_error_set(err, -ENOMEM, "cannot make images.dir absolute");
	if (cfg->server.webui_dir && absolutize(&cfg->server.webui_dir) < 0)
		return fl_error_set(err, -ENOMEM, "cannot make server.webui_dir absolute");
	if (cfg->limits.memory_mb > cfg->limits.max_memory_mb)
		return fl_error_set(err, -EINVAL,
				    "%s: limits.memory_mb (%u) is above limits.max_memory_mb (%u)",
				    cfg->path ? cfg->path : "config", cfg->limits.memory_mb,
				    cfg->limits.max_memory_mb);
	if (cfg->limits.vcpus > cfg->limits.max_vcpus)
		return fl_error_set(err, -EINVAL,
				    "%s: limits.vcpus (%u) is above limits.max_vcpus (%u)",
				    cfg->path ? cfg->path : "config", cfg->limits.vcpus,
				    cfg->limits.max_vcpus);
	if (cfg->limits.ttl_seconds > cfg->limits.max_ttl_seconds)
		return fl_error_set(err, -EINVAL, "%s: limits.ttl_seconds is above max_ttl_seconds",
				    cfg->path ? cfg->path : "config");
	cfg->database.configured = cfg->database.url || cfg->database.host;
	if (cfg->default_policy) {
		if (!fl_config_policy(cfg, cfg->default_policy))
			return fl_error_set(err, -EINVAL, "%s: default_policy '%s' is not defined in policies",
					    cfg->path ? cfg->path : "config", cfg->default_policy);
	} else {
		if (set_str(&cfg->default_policy, "default") < 0)
			return fl_error_set(err, -ENOMEM, "out of memory");
		if (!fl_config_policy(cfg, "default")) {
			FlPolicy *p = NULL;
			FlPolicy **nv = realloc(cfg->policies, (cfg->n_policies + 1) * sizeof(*nv));
			if (!nv)
				return fl_error_set(err, -ENOMEM, "out of memory");
			cfg->policies = nv;
			if (fl_policy_new_default("default", &p) < 0)
				return fl_error_set(err, -ENOMEM, "out of memory");
			cfg->policies[cfg->n_policies++] = p;
		}
	}
	return 0;
}

const struct FlPolicy *fl_config_policy(const FlConfig *cfg, const char *name)
{
	if (!name)
		name = cfg->default_policy;
	for (size_t i = 0; name && i < cfg->n_policies; i++)
		if (!strcmp(cfg->policies[i]->name, name))
			return cfg->policies[i];
	return NULL;
}

static FlConfig *config_defaults(void)
{
	FlConfig *cfg = calloc(1, sizeof(*cfg));
	if (!cfg)
		return NULL;
	cfg->server.threads = 64; /* streaming execs and long-polls each hold one */
	cfg->database.port = 5432;
	cfg->accelerator = FL_ACCEL_MODE_AUTO;
	cfg->accel_probe_timeout_ms = 3000;
	cfg->limits.max_sandboxes = 16;
	cfg->limits.memory_mb = 256;
	cfg->limits.max_memory_mb = 8192;
	cfg->limits.vcpus = 1;
	cfg->limits.max_vcpus = 8;
	cfg->limits.ttl_seconds = 3600;
	cfg->limits.max_ttl_seconds = 86400;
	cfg->images.pool_size = 2;
	cfg->log_level = FL_LOG_INFO;
	if (set_str(&cfg->server.listen, "127.0.0.1:8080") < 0 ||
	    set_str(&cfg->database.name, "fluid") < 0 || set_str(&cfg->database.user, "fluid") < 0 ||
	    set_str(&cfg->qemu, "qemu-system-x86_64") < 0 ||
	    set_str(&cfg->images.default_image, "debian-12") < 0) {
		fl_config_free(cfg);
		return NULL;
	}
	return cfg;
}

static int parse_yaml(FlConfig *cfg, const char *text, size_t len, const char *name, FlError *err)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	int r = 0;

	if (!yaml_parser_initialize(&parser))
		return fl_error_set(err, -ENOMEM, "cannot initialise the YAML parser");
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		r = fl_error_set(err, -EINVAL, "%s:%zu: %s%s%s", name,
				 (size_t)parser.problem_mark.line + 1,
				 parser.problem ? parser.problem : "YAML syntax error",
				 parser.context ? " " : "", parser.context ? parser.context : "");
		yaml_parser_delete(&parser);
		return r;
	}
	Ctx c = {.doc = &doc, .name = name, .err = err};
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	if (root && !scalar_is_null(root)) {
		if (root->type != YAML_MAPPING_NODE)
			r = cerr(&c, root, "the top level must be a mapping, got %s",
				 node_type_name(root));
		else
			r = walk_mapping(&c, "", root, top_pair, cfg);
	}
	/* A second document in the same file is a mistake, not something to ignore. */
	if (r >= 0 && root) {
		yaml_document_t next;
		if (!yaml_parser_load(&parser, &next)) {
			r = fl_error_set(err, -EINVAL, "%s:%zu: %s", name,
					 (size_t)parser.problem_mark.line + 1,
					 parser.problem ? parser.problem : "YAML syntax error");
		} else {
			yaml_node_t *n2 = yaml_document_get_root_node(&next);
			if (n2)
				r = fl_error_set(err, -EINVAL, "%s:%u: only one YAML document is allowed",
						 name, line_of(n2));
			yaml_document_delete(&next);
		}
	}
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	return r;
}

int fl_config_parse(const char *text, size_t len, const char *name, fl_getenv_fn env,
		    FlConfig **ret, FlError *err)
{
	_cleanup_(fl_config_freep) FlConfig *cfg = config_defaults();
	int r;

	if (!cfg)
		return fl_error_set(err, -ENOMEM, "out of memory");
	if (name && set_str(&cfg->path, name) < 0)
		return fl_error_set(err, -ENOMEM, "out of memory");
	if (text) {
		if (len > CONFIG_MAX_BYTES)
			return fl_error_set(err, -EFBIG, "%s: larger than %u bytes", name,
					    CONFIG_MAX_BYTES);
		r = parse_yaml(cfg, text, len, name ? name : "config", err);
		if (r < 0)
			return r;
	}
	r = apply_env(cfg, env, name, err);
	if (r == -ENOMEM)
		return fl_error_set(err, r, "out of memory");
	if (r < 0)
		return r;
	r = finish(cfg, env, err);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(cfg);
	return 0;
}

static const char *real_getenv(const char *name) { return getenv(name); }

int fl_config_load(const char *path, FlConfig **ret, FlError *err)
{
	bool explicit = path != NULL;
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *text = NULL;
	size_t len = 0;

	if (!path)
		path = FL_CONFIG_DEFAULT_PATH;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		int r = -errno;
		if (r == -ENOENT && !explicit)
			return fl_config_parse(NULL, 0, NULL, real_getenv, ret, err);
		return fl_error_set(err, r, "cannot open %s: %s", path, strerror(-r));
	}
	struct stat st;
	if (fstat(fd, &st) < 0)
		return fl_error_set(err, -errno, "cannot stat %s: %m", path);
	if (!S_ISREG(st.st_mode))
		return fl_error_set(err, -EINVAL, "%s: not a regular file", path);
	if (st.st_size > CONFIG_MAX_BYTES)
		return fl_error_set(err, -EFBIG, "%s: larger than %u bytes", path, CONFIG_MAX_BYTES);
	text = malloc((size_t)st.st_size + 1);
	if (!text)
		return fl_error_set(err, -ENOMEM, "out of memory");
	while (len < (size_t)st.st_size) {
		ssize_t n = read(fd, text + len, (size_t)st.st_size - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fl_error_set(err, -errno, "cannot read %s: %m", path);
		if (n == 0)
			break;
		len += (size_t)n;
	}
	text[len] = 0;
	return fl_config_parse(text, len, path, real_getenv, ret, err);
}

void fl_config_free(FlConfig *cfg)
{
	if (!cfg)
		return;
	free(cfg->path);
	free(cfg->server.listen);
	free(cfg->server.webui_dir);
	free(cfg->database.url);
	free(cfg->database.host);
	free(cfg->database.name);
	free(cfg->database.user);
	free(cfg->database.password);
	for (size_t i = 0; i < cfg->n_hosts; i++) {
		free(cfg->hosts[i].name);
		free(cfg->hosts[i].address);
		free(cfg->hosts[i].user);
		free(cfg->hosts[i].ssh_key);
		free(cfg->hosts[i].known_hosts);
	}
	free(cfg->hosts);
	free(cfg->state_dir);
	free(cfg->qemu);
	free(cfg->images.dir);
	free(cfg->network.bridge);
	free(cfg->network.libvirt_uri);
	free(cfg->network.name);
	free(cfg->network.subnet);
	free(cfg->images.default_image);
	for (size_t i = 0; i < cfg->n_policies; i++)
		fl_policy_free(cfg->policies[i]);
	free(cfg->policies);
	free(cfg->default_policy);
	free(cfg);
}

/* Appends " key='value'" with libpq quoting (backslash before ' and \). */
static int append_kv(char **buf, size_t *len, size_t *cap, const char *key, const char *val)
{
	size_t need = strlen(key) + 2 * strlen(val) + 6;
	if (*len + need >= *cap) {
		size_t ncap = (*cap + need) * 2;
		char *n = realloc(*buf, ncap);
		if (!n)
			return -ENOMEM;
		*buf = n;
		*cap = ncap;
	}
	char *p = *buf + *len;
	if (*len)
		*p++ = ' ';
	p += sprintf(p, "%s='", key);
	for (const char *v = val; *v; v++) {
		if (*v == '\'' || *v == '\\')
			*p++ = '\\';
		*p++ = *v;
	}
	*p++ = '\'';
	*p = 0;
	*len = (size_t)(p - *buf);
	return 0;
}

char *fl_config_database_conninfo(const FlConfig *cfg)
{
	if (cfg->database.url)
		return strdup(cfg->database.url);
	if (!cfg->database.host)
		return NULL;
	char *buf = NULL, port[16];
	size_t len = 0, cap = 0;
	snprintf(port, sizeof(port), "%u", cfg->database.port);
	if (append_kv(&buf, &len, &cap, "host", cfg->database.host) < 0 ||
	    append_kv(&buf, &len, &cap, "port", port) < 0 ||
	    append_kv(&buf, &len, &cap, "dbname", cfg->database.name) < 0 ||
	    append_kv(&buf, &len, &cap, "user", cfg->database.user) < 0 ||
	    (cfg->database.password &&
	     append_kv(&buf, &len, &cap, "password", cfg->database.password) < 0)) {
		free(buf);
		return NULL;
	}
	return buf;
}

const char *fl_accel_mode_to_string(FlAccelMode m)
{
	switch (m) {
	case FL_ACCEL_MODE_KVM:
		return "kvm";
	case FL_ACCEL_MODE_TCG:
		return "tcg";
	default:
		return "auto";
	}
}

void fl_config_install(FlConfig *cfg) { installed = cfg; }
const FlConfig *fl_config_get(void) { return installed; }
