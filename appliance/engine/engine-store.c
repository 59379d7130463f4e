// SPDX-License-Identifier: MIT
/*
 * engine-store: sandbox records on disk and small file helpers. A record is
 * STATE/sandboxes/<id>/sandbox.json, replaced atomically (write temp, fsync,
 * rename, fsync dir) so a crash at any point leaves the old or the new
 * record, never a torn one.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "engine-internal.h"

static const char *const state_names[] = {
	[SB_CREATED] = "CREATED", [SB_STARTING] = "STARTING", [SB_RUNNING] = "RUNNING",
	[SB_STOPPED] = "STOPPED", [SB_DESTROYED] = "DESTROYED", [SB_ERROR] = "ERROR",
};

const char *sb_state_name(SbState s)
{
	return (unsigned)s < FL_ARRAY_SIZE(state_names) ? state_names[s] : "ERROR";
}

int sb_state_parse(const char *s, SbState *ret)
{
	for (size_t i = 0; i < FL_ARRAY_SIZE(state_names); i++)
		if (s && !strcmp(s, state_names[i])) {
			*ret = (SbState)i;
			return 0;
		}
	return -EINVAL;
}

int64_t fl_unix_now(void)
{
	return (int64_t)time(NULL);
}

int fl_random_hex(char *buf, size_t nhex)
{
	unsigned char raw[64];
	if (nhex / 2 > sizeof(raw))
		return -EINVAL;
	if (getrandom(raw, (nhex + 1) / 2, 0) < 0)
		return -errno;
	for (size_t i = 0; i < nhex; i++)
		buf[i] = "0123456789abcdef"[(raw[i / 2] >> (i % 2 ? 0 : 4)) & 0xf];
	buf[nhex] = 0;
	return 0;
}

bool fl_name_valid(const char *s, size_t max, bool allow_dot)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > max || s[0] == '.' || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || (allow_dot && c == '.')))
			return false;
	}
	return true;
}

int fl_save_file(const char *path, const void *data, size_t len, FlError *err)
{
	int r = fl_write_file_atomic(path, data, len, 0600);
	return r < 0 ? fl_error_set(err, r, "save %s: %s", path, strerror(-r)) : 0;
}


static struct json_object *snap_to_json(const Snapshot *s)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "name", json_object_new_string(s->name));
	json_object_object_add(o, "parent", s->parent[0] ? json_object_new_string(s->parent) : NULL);
	json_object_object_add(o, "layer", json_object_new_string(s->layer));
	json_object_object_add(o, "memory", json_object_new_boolean(s->memory));
	json_object_object_add(o, "created_at", json_object_new_int64(s->created_at));
	return o;
}

struct json_object *sb_to_json(const Sandbox *sb, bool internal)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "id", json_object_new_string(sb->id));
	json_object_object_add(o, "sandbox_name", json_object_new_string(sb->name));
	json_object_object_add(o, "agent_id", json_object_new_string(sb->agent_id));
	json_object_object_add(o, "job_id", json_object_new_string(sb->job_id));
	json_object_object_add(o, "base_image", json_object_new_string(sb->base_image));
	json_object_object_add(o, "network", json_object_new_string(sb->network));
	if (sb->ip[0])
		json_object_object_add(o, "ip_address", json_object_new_string(sb->ip));
	if (!strcmp(sb->network, "allowlist")) {
		struct json_object *a = json_object_new_array();
		for (size_t i = 0; i < sb->n_net_allow; i++) {
			char buf[48];
			fl_net_allow_format(&sb->net_allow[i], buf, sizeof(buf));
			json_object_array_add(a, json_object_new_string(buf));
		}
		json_object_object_add(o, "net_allow", a);
	}
	json_object_object_add(o, "boot", json_object_new_string(sb->boot));
	json_object_object_add(o, "state", json_object_new_string(sb_state_name(sb->state)));
	json_object_object_add(o, "vcpus", json_object_new_int((int)sb->vcpus));
	json_object_object_add(o, "memory_mb", json_object_new_int((int)sb->memory_mb));
	json_object_object_add(o, "ttl_seconds", json_object_new_int64((int64_t)sb->ttl_seconds));
	json_object_object_add(o, "created_at", json_object_new_int64(sb->created_at));
	json_object_object_add(o, "updated_at", json_object_new_int64(sb->updated_at));
	json_object_object_add(o, "head", sb->head[0] ? json_object_new_string(sb->head) : NULL);
	json_object_object_add(o, "ssh_port", sb->ssh_port ? json_object_new_int(sb->ssh_port) : NULL);
	struct json_object *snaps = json_object_new_array();
	for (size_t i = 0; i < sb->n_snaps; i++)
		json_object_array_add(snaps, snap_to_json(&sb->snaps[i]));
	json_object_object_add(o, "snapshots", snaps);
	if (internal) {
		json_object_object_add(o, "template_dir", json_object_new_string(sb->template_dir));
		json_object_object_add(o, "active", json_object_new_string(sb->active));
		json_object_object_add(o, "pid", json_object_new_int(sb->pid));
		json_object_object_add(o, "pending", json_object_new_string(sb->pending));
		json_object_object_add(o, "pending_arg", json_object_new_string(sb->pending_arg));
		json_object_object_add(o, "pending_layer", json_object_new_string(sb->pending_layer));
	}
	return o;
}

static int get_str(struct json_object *o, const char *key, char *buf, size_t len, bool required)
{
	struct json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null)) {
		if (required)
			return -EINVAL;
		buf[0] = 0;
		return 0;
	}
	if (!json_object_is_type(v, json_type_string) || (size_t)json_object_get_string_len(v) >= len)
		return -EINVAL;
	strcpy(buf, json_object_get_string(v));
	return 0;
}

static int64_t get_int(struct json_object *o, const char *key)
{
	struct json_object *v;
	return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

int sb_from_json(struct json_object *o, Sandbox *sb, FlError *err)
{
	char state[16];
	int r = 0;
	r |= get_str(o, "id", sb->id, sizeof(sb->id), true);
	r |= get_str(o, "sandbox_name", sb->name, sizeof(sb->name), true);
	r |= get_str(o, "agent_id", sb->agent_id, sizeof(sb->agent_id), false);
	r |= get_str(o, "job_id", sb->job_id, sizeof(sb->job_id), false);
	r |= get_str(o, "base_image", sb->base_image, sizeof(sb->base_image), true);
	r |= get_str(o, "network", sb->network, sizeof(sb->network), true);
	r |= get_str(o, "boot", sb->boot, sizeof(sb->boot), true);
	r |= get_str(o, "state", state, sizeof(state), true);
	r |= get_str(o, "head", sb->head, sizeof(sb->head), false);
	r |= get_str(o, "ip_address", sb->ip, sizeof(sb->ip), false);
	r |= get_str(o, "template_dir", sb->template_dir, sizeof(sb->template_dir), false);
	r |= get_str(o, "active", sb->active, sizeof(sb->active), false);
	r |= get_str(o, "pending", sb->pending, sizeof(sb->pending), false);
	r |= get_str(o, "pending_arg", sb->pending_arg, sizeof(sb->pending_arg), false);
	r |= get_str(o, "pending_layer", sb->pending_layer, sizeof(sb->pending_layer), false);
	if (r || sb_state_parse(state, &sb->state) < 0 || !fl_name_valid(sb->id, FL_ID_LEN, false))
		return fl_error_set(err, -EINVAL, "malformed sandbox record");
	struct json_object *allow;
	if (json_object_object_get_ex(o, "net_allow", &allow)) {
		size_t n = json_object_is_type(allow, json_type_array) ? json_object_array_length(allow) : SIZE_MAX;
		if (n > FL_NET_ALLOW_MAX)
			return fl_error_set(err, -EINVAL, "malformed sandbox record (net_allow)");
		for (size_t i = 0; i < n; i++) {
			const char *v = json_object_get_string(json_object_array_get_idx(allow, i));
			if (!v || fl_net_allow_parse(v, &sb->net_allow[i], err) < 0)
				return fl_error_set(err, -EINVAL, "malformed sandbox record (net_allow)");
		}
		sb->n_net_allow = n;
	}
	sb->vcpus = (unsigned)get_int(o, "vcpus");
	sb->memory_mb = (unsigned)get_int(o, "memory_mb");
	sb->ttl_seconds = (uint64_t)get_int(o, "ttl_seconds");
	sb->created_at = get_int(o, "created_at");
	sb->updated_at = get_int(o, "updated_at");
	sb->pid = (int)get_int(o, "pid");
	sb->ssh_port = (int)get_int(o, "ssh_port");
	struct json_object *snaps;
	if (json_object_object_get_ex(o, "snapshots", &snaps) && json_object_is_type(snaps, json_type_array)) {
		size_t n = json_object_array_length(snaps);
		sb->snaps = calloc(n ? n : 1, sizeof(Snapshot));
		if (!sb->snaps)
			return fl_error_set(err, -ENOMEM, "out of memory");
		for (size_t i = 0; i < n; i++) {
			struct json_object *s = json_object_array_get_idx(snaps, i);
			Snapshot *sn = &sb->snaps[i];
			struct json_object *m;
			if (get_str(s, "name", sn->name, sizeof(sn->name), true) ||
			    get_str(s, "parent", sn->parent, sizeof(sn->parent), false) ||
			    get_str(s, "layer", sn->layer, sizeof(sn->layer), true))
				return fl_error_set(err, -EINVAL, "malformed snapshot in sandbox record");
			sn->memory = json_object_object_get_ex(s, "memory", &m) && json_object_get_boolean(m);
			sn->created_at = get_int(s, "created_at");
		}
		sb->n_snaps = n;
	}
	return 0;
}

int sb_save(FlEngine *e, Sandbox *sb, FlError *err)
{
	char path[700];
	snprintf(path, sizeof(path), "%s/sandbox.json", sb->dir);
	_cleanup_(json_object_putp) struct json_object *o = sb_to_json(sb, true);
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY);
	return fl_save_file(path, s, strlen(s), err);
}

void fl_trace(const char *what, uint64_t *t)
{
	static int on = -1;
	if (on < 0)
		on = getenv("FLUID_TRACE") != NULL;
	uint64_t now = fl_now_ms();
	if (on && *t)
		fprintf(stderr, "trace: %-24s %4llu ms\n", what, (unsigned long long)(now - *t));
	*t = now;
}
