// SPDX-License-Identifier: MIT
/*
 * diff: the trusted diff's host half (see diff.h, docs/diff.md): inspector
 * lifecycle, pushing and running fluid-inspect, strict validation of its
 * output, commands_run from command records, Diff records on disk, and the
 * CLI summary.
 *
 * DESIGN: fl_diff_compute runs on a helper thread with an 8 MiB stack
 * (inspector open/close talk QMP through libqmp, which needs a big stack;
 * civetweb workers have ~100 KiB). The inspector's stdout arrives through
 * the engine's exec callback on the engine loop thread and is appended to
 * a buffer capped at FL_DIFF_MAX_OUTPUT; everything else happens on the
 * helper thread. The inspector is closed on every path once opened.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "diff.h"
#include "fsutil.h"

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)
FL_DEFINE_CLEANUP(DIR *, closedir)

#define DEFAULT_TIMEOUT_MS (15u * 60 * 1000)
#define MAX_INSPECT_BIN (16u << 20)
#define MAX_RECORD_FILE (96u << 20)
#define MAX_LIST 1000
#define STDERR_CAP 4096

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool id_ok(const char *s, size_t max)
{
	size_t n = s ? strlen(s) : 0;
	if (!n || n > max || s[0] == '.' || strstr(s, ".."))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' || s[i] == '-'))
			return false;
	return true;
}

static bool diff_id_ok(const char *s)
{
	if (!s || strlen(s) != FL_DIFF_ID_LEN || strncmp(s, "dif_", 4))
		return false;
	for (size_t i = 4; i < FL_DIFF_ID_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* ---- Validation of the inspector's output ------------------------------------ */

enum { T_STR = 1, T_INT = 2, T_BOOL = 4, T_NULL = 8, T_ARR_STR = 16, T_OBJ = 32, T_ARR = 64 };

typedef struct Shape Shape;
typedef struct Field {
	const char *name;
	unsigned types;
	bool required;
	size_t max;               /* string bytes or array length; 0 = 16 KiB / 100000 */
	const Shape *sub;         /* for T_OBJ and T_ARR (elements) */
	const char *const *enums; /* allowed string values (also for T_ARR_STR elements) */
} Field;
struct Shape {
	const Field *fields; /* NULL-name terminated */
	bool any_key_sub;    /* unlisted keys allowed, each of shape `sub` of fields[0] */
};

static const char *const E_TYPES[] = {"file", "dir", "symlink", "other", NULL};
static const char *const E_CHANGES[] = {"content", "mode", "owner", "group", "type", "target", NULL};
static const char *const E_STATES[] = {"added", "removed", "enabled", "disabled", "masked",
				       "unmasked", "modified", NULL};
static const char *const E_PW[] = {"set", "locked", "none", NULL};

#define PATH_MAX_JSON 16384
#define BIG (48u << 20)

static const Field F_META[] = {
	{"type", T_STR, true, 16, NULL, E_TYPES},
	{"mode", T_STR, true, 8, NULL, NULL},
	{"owner", T_STR, true, 1024, NULL, NULL},
	{"group", T_STR, true, 1024, NULL, NULL},
	{"size", T_INT, true, 0, NULL, NULL},
	{"sha256", T_STR | T_NULL, true, 64, NULL, NULL},
	{"target", T_STR, false, PATH_MAX_JSON, NULL, NULL},
	{"content_b64", T_STR, false, BIG, NULL, NULL},
	{NULL, 0, false, 0, NULL, NULL},
};
static const Shape S_META = {F_META, false};

static const Field F_ADDED[] = {
	{"path", T_STR, true, PATH_MAX_JSON, NULL, NULL},
	{"path_b64", T_STR, false, PATH_MAX_JSON, NULL, NULL},
	{"type", T_STR, true, 16, NULL, E_TYPES},
	{"mode", T_STR, true, 8, NULL, NULL},
	{"owner", T_STR, true, 1024, NULL, NULL},
	{"group", T_STR, true, 1024, NULL, NULL},
	{"size", T_INT, true, 0, NULL, NULL},
	{"sha256", T_STR | T_NULL, true, 64, NULL, NULL},
	{"target", T_STR, false, PATH_MAX_JSON, NULL, NULL},
	{"content_b64", T_STR, false, BIG, NULL, NULL},
	{"redacted", T_BOOL, false, 0, NULL, NULL},
	{"binary", T_BOOL, true, 0, NULL, NULL},
	{NULL, 0, false, 0, NULL, NULL},
};
static const Shape S_ADDED = {F_ADDED, false};

static const Field F_REMOVED[] = {
	{"path", T_STR, true, PATH_MAX_JSON, NULL, NULL},
	{"path_b64", T_STR, false, PATH_MAX_JSON, NULL, NULL},
	{"type", T_STR, true, 16, NULL, E_TYPES},
	{NULL, 0, false, 0, NULL, NULL},
};
static const Shape S_REMOVED = {F_REMOVED, false};

static const Field F_MODIFIED[] = {
	{"path", T_STR, true, PATH_MAX_JSON, NULL, NULL},
	{"path_b64", T_STR, false, PATH_MAX_JSON, NULL, NULL},
	{"changes", T_ARR_STR, true, 6, NULL, E_CHANGES},
	{"old", T_OBJ, true, 0, &S_META, NULL},
	{"new", T_OBJ, true, 0, &S_META, NULL},
	{"diff", T_STR, false, 8u << 20, NULL, NULL},
	{"diff_truncated", T_BOOL, false, 0, NULL, NULL},
	{"redacted", T_BOOL, false, 0, NULL, NULL},
	{"binary", T_BOOL, true, 0, NULL, NULL},
	{NULL, 0, false, 0, NULL, NULL},
};
static const Shape S_MODIFIED = {F_MODIFIED, false};

static const Field F_PKG[] = {
	{"name", T_STR, true, 512, NULL, NULL},
	{"version", T_STR, true, 512, NULL, NULL},
	{NULL, 0, false, 0, NULL, NULL},
};
static const Shape S_PKG = {F_PKG, false};

static const Field F_PKGUP[] = {
	{"name", T_STR, true, 512, NULL, NULL},
	{"from", T_STR, true, 512, NULL, NULL},
	{"to", T_STR, true, 512, NULL, NULL},
	{NULL, 0, false, 0, NULL, NULL},
};
static const Shape S_PKGUP = {F_PKGUP, false};

static const Field F_SERVICE[] = {
	{"name", T_STR, true, 1024, NULL, NULL},
	{"enabled", T_BOOL | T_NULL, true, 0, NULL, NULL},
	{"state", T_STR, true, 16, NULL, E_STATES},
	{"unit_path", T_STR, false, PATH_MAX_JSON, NULL, NULL},
	{NULL, 0, false, 0, NULL, NULL},
};
static const Shape S_SERVICE = {F_SERVICE, false};

static const Field F_USER_ADDED[] = {
	{"name", T_STR, true, 1024, NULL, NULL},
	{"uid", T_INT, true, 0, NULL, NULL},
	{"gid", T_INT, true, 0, NULL, NULL},
	{"home", T_STR, true, 4096, NULL, NULL},
	{"shell", T_STR, true, 4096, NULL, NULL},
	{"gecos", T_STR, false, 4096, NULL, NULL},
	{"groups", T_ARR_STR, true, 100000, NULL, NULL},
	{"password", T_STR, false, 8, NULL, E_PW},
	{"system", T_BOOL, false, 0, NULL, NULL},
	{NULL, 0, false, 0, NULL, NULL},
};
static const Shape S_USER_ADDED = {F_USER_ADDED, false};

static const Field F_NAME[] = {
	{"name", T_STR, true, 1024, NULL, NULL},
	{NULL, 0, false, 0, NULL, NULL},
};
static const Shape S_NAME = {F_NAME, false};

static const Field F_FROMTO[] = {
	{"from", T_STR | T_INT | T_ARR_STR, true, 100000, NULL, NULL},
	{"to", T_STR | T_INT | T_ARR_STR, true, 100000, NULL, NULL},
	{NULL, 0, false, 0, NULL, NULL},
};
static const Shape S_FROMTO = {F_FROMTO, false};

static const Field F_USER_CHANGES[] = {
	{"uid", T_OBJ, false, 0, &S_FROMTO, NULL},
	{"gid", T_OBJ, false, 0, &S_FROMTO, NULL},
	{"home", T_OBJ, false, 0, &S_FROMTO, NULL},
	{"shell", T_OBJ, false, 0, &S_FROMTO, NULL},
	{"gecos", T_OBJ, false, 0, &S_FROMTO, NULL},
	{"groups", T_OBJ, false, 0, &S_FROMTO, NULL},
	{"password", T_OBJ, false, 0, &S_FROMTO, NULL},
	{NULL, 0, false, 0, NULL, NULL},
};
static const Shape S_USER_CHANGES = {F_USER_CHANGES, false};

static const Field F_USER_CHANGED[] = {
	{"name", T_STR, true, 1024, NULL, NULL},
	{"changes", T_OBJ, true, 0, &S_USER_CHANGES, NULL},
	{NULL, 0, false, 0, NULL, NULL},
};
static const Shape S_USER_CHANGED = {F_USER_CHANGED, false};

static const Field F_GROUP_ADDED[] = {
	{"name", T_STR, true, 1024, NULL, NULL},
	{"gid", T_INT, true, 0, NULL, NULL},
	{"members", T_ARR_STR, true, 100000, NULL, NULL},
	{NULL, 0, false, 0, NULL, NULL},
};
static const Shape S_GROUP_ADDED = {F_GROUP_ADDED, false};

static const Field F_GROUP_CHANGES[] = {
	{"gid", T_OBJ, false, 0, &S_FROMTO, NULL},
	{"members", T_OBJ, false, 0, &S_FROMTO, NULL},
	{NULL, 0, false, 0, NULL, NULL},
};
static const Shape S_GROUP_CHANGES = {F_GROUP_CHANGES, false};

static const Field F_GROUP_CHANGED[] = {
	{"name", T_STR, true, 1024, NULL, NULL},
	{"changes", T_OBJ, true, 0, &S_GROUP_CHANGES, NULL},
	{NULL, 0, false, 0, NULL, NULL},
};
static const Shape S_GROUP_CHANGED = {F_GROUP_CHANGED, false};

static const Field F_IGNORED[] = {
	{"count", T_INT, true, 0, NULL, NULL},
	{"patterns", T_ARR_STR, true, 2048, NULL, NULL},
	{NULL, 0, false, 0, NULL, NULL},
};
static const Shape S_IGNORED = {F_IGNORED, false};

static const Field F_STATS[] = {
	{"old_entries", T_INT, true, 0, NULL, NULL},
	{"new_entries", T_INT, true, 0, NULL, NULL},
	{"compared_bytes", T_INT, true, 0, NULL, NULL},
	{"elapsed_ms", T_INT, true, 0, NULL, NULL},
	{NULL, 0, false, 0, NULL, NULL},
};
static const Shape S_STATS = {F_STATS, false};

static const Field F_COMMAND[] = {
	{"cmd", T_STR, true, 1u << 20, NULL, NULL},
	{"exit_code", T_INT | T_NULL, true, 0, NULL, NULL},
	{"at", T_STR, true, 64, NULL, NULL},
	{NULL, 0, false, 0, NULL, NULL},
};
static const Shape S_COMMAND = {F_COMMAND, false};

static const Field F_TOP[] = {
	{"files_added", T_ARR, true, 100000, &S_ADDED, NULL},
	{"files_removed", T_ARR, true, 100000, &S_REMOVED, NULL},
	{"files_modified", T_ARR, true, 100000, &S_MODIFIED, NULL},
	{"packages_added", T_ARR, true, 100000, &S_PKG, NULL},
	{"packages_removed", T_ARR, true, 100000, &S_PKG, NULL},
	{"packages_upgraded", T_ARR, true, 100000, &S_PKGUP, NULL},
	{"services_changed", T_ARR, true, 100000, &S_SERVICE, NULL},
	{"users_added", T_ARR, true, 100000, &S_USER_ADDED, NULL},
	{"users_removed", T_ARR, true, 100000, &S_NAME, NULL},
	{"users_changed", T_ARR, true, 100000, &S_USER_CHANGED, NULL},
	{"groups_added", T_ARR, true, 100000, &S_GROUP_ADDED, NULL},
	{"groups_removed", T_ARR, true, 100000, &S_NAME, NULL},
	{"groups_changed", T_ARR, true, 100000, &S_GROUP_CHANGED, NULL},
	{"ignored", T_OBJ, true, 0, &S_IGNORED, NULL},
	{"truncated", T_BOOL, true, 0, NULL, NULL},
	{"stats", T_OBJ, false, 0, &S_STATS, NULL},
	/* added by the host, accepted when validating a stored diff */
	{"commands_run", T_ARR, false, 100000, &S_COMMAND, NULL},
	{NULL, 0, false, 0, NULL, NULL},
};
static const Shape S_TOP = {F_TOP, false};

static bool in_enum(const char *const *e, const char *s)
{
	for (; *e; e++)
		if (!strcmp(*e, s))
			return true;
	return false;
}

static int check_value(struct json_object *v, const Field *f, const char *where, FlError *err);

static int check_shape(struct json_object *o, const Shape *sh, const char *where, FlError *err)
{
	if (!json_object_is_type(o, json_type_object))
		return fl_error_set(err, -EPROTO, "%s: not an object", where);
	json_object_object_foreach(o, key, val)
	{
		const Field *f = sh->fields;
		while (f->name && strcmp(f->name, key))
			f++;
		if (!f->name)
			return fl_error_set(err, -EPROTO, "%s: unexpected key \"%.64s\"", where, key);
		char w[256];
		snprintf(w, sizeof(w), "%s.%s", where, key);
		int r = check_value(val, f, w, err);
		if (r < 0)
			return r;
	}
	for (const Field *f = sh->fields; f->name; f++)
		if (f->required && !json_object_object_get_ex(o, f->name, NULL))
			return fl_error_set(err, -EPROTO, "%s: missing \"%s\"", where, f->name);
	return 0;
}

static int check_value(struct json_object *v, const Field *f, const char *where, FlError *err)
{
	enum json_type t = json_object_get_type(v);
	size_t maxlen = f->max ? f->max : 16384, maxarr = f->max ? f->max : 100000;
	if (t == json_type_null && (f->types & T_NULL))
		return 0;
	if (t == json_type_string && (f->types & T_STR)) {
		if ((size_t)json_object_get_string_len(v) > maxlen)
			return fl_error_set(err, -EPROTO, "%s: too long", where);
		if (f->enums && !in_enum(f->enums, json_object_get_string(v)))
			return fl_error_set(err, -EPROTO, "%s: unexpected value", where);
		return 0;
	}
	if (t == json_type_int && (f->types & T_INT))
		return json_object_get_int64(v) < 0 ? fl_error_set(err, -EPROTO, "%s: negative", where)
						    : 0;
	if (t == json_type_boolean && (f->types & T_BOOL))
		return 0;
	if (t == json_type_object && (f->types & T_OBJ))
		return check_shape(v, f->sub, where, err);
	if (t == json_type_array && (f->types & (T_ARR | T_ARR_STR))) {
		size_t n = json_object_array_length(v);
		if (n > maxarr)
			return fl_error_set(err, -EPROTO, "%s: too many entries", where);
		for (size_t i = 0; i < n; i++) {
			struct json_object *e = json_object_array_get_idx(v, i);
			if (f->types & T_ARR_STR) {
				if (!json_object_is_type(e, json_type_string) ||
				    json_object_get_string_len(e) > 4096 ||
				    (f->enums && !in_enum(f->enums, json_object_get_string(e))))
					return fl_error_set(err, -EPROTO, "%s[%zu]: bad value", where, i);
			} else {
				char w[256];
				snprintf(w, sizeof(w), "%s[%zu]", where, i);
				int r = check_shape(e, f->sub, w, err);
				if (r < 0)
					return r;
			}
		}
		return 0;
	}
	return fl_error_set(err, -EPROTO, "%s: wrong type", where);
}

static bool mode_ok(const char *s)
{
	if (!s || strlen(s) != 4)
		return false;
	for (int i = 0; i < 4; i++)
		if (s[i] < '0' || s[i] > '7')
			return false;
	return true;
}

static bool sha_ok(struct json_object *v)
{
	if (json_object_is_type(v, json_type_null))
		return true;
	const char *s = json_object_get_string(v);
	if (strlen(s) != 64)
		return false;
	for (int i = 0; i < 64; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static const char *sget(struct json_object *o, const char *k)
{
	struct json_object *v;
	return json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string)
		       ? json_object_get_string(v)
		       : NULL;
}

/* Checks beyond types: absolute paths, octal modes, hex hashes, sorted unique paths. */
static int check_files(struct json_object *arr, const char *what, FlError *err)
{
	const char *prev = NULL;
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		struct json_object *e = json_object_array_get_idx(arr, i), *v;
		const char *p = sget(e, "path");
		if (!p || p[0] != '/')
			return fl_error_set(err, -EPROTO, "%s[%zu]: path not absolute", what, i);
		if (prev && strcmp(prev, p) >= 0 && !json_object_object_get_ex(e, "path_b64", NULL))
			return fl_error_set(err, -EPROTO, "%s[%zu]: paths not sorted", what, i);
		prev = p;
		struct json_object *sides[3] = {e, NULL, NULL};
		json_object_object_get_ex(e, "old", &sides[1]);
		json_object_object_get_ex(e, "new", &sides[2]);
		for (int k = 0; k < 3; k++) {
			if (!sides[k])
				continue;
			const char *m = sget(sides[k], "mode");
			if (json_object_object_get_ex(sides[k], "mode", NULL) && !mode_ok(m))
				return fl_error_set(err, -EPROTO, "%s[%zu]: bad mode", what, i);
			if (json_object_object_get_ex(sides[k], "sha256", &v) && !sha_ok(v))
				return fl_error_set(err, -EPROTO, "%s[%zu]: bad sha256", what, i);
		}
	}
	return 0;
}

int fl_diff_validate(struct json_object *j, FlError *err)
{
	int r = check_shape(j, &S_TOP, "diff_json", err);
	if (r < 0)
		return r;
	static const char *const files[] = {"files_added", "files_removed", "files_modified"};
	for (int i = 0; i < 3; i++) {
		struct json_object *a = json_object_object_get(j, files[i]);
		if ((r = check_files(a, files[i], err)) < 0)
			return r;
	}
	return 0;
}

int fl_diff_parse(const char *buf, size_t len, struct json_object **ret, FlError *err)
{
	if (len > FL_DIFF_MAX_OUTPUT)
		return fl_error_set(err, -EPROTO, "inspector output too large");
	if (memchr(buf, 0, len))
		return fl_error_set(err, -EPROTO, "inspector output contains NUL");
	json_tokener *tok = json_tokener_new_ex(16);
	if (!tok)
		return fl_error_set(err, -ENOMEM, "out of memory");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	_cleanup_(json_object_putp) struct json_object *j =
		json_tokener_parse_ex(tok, buf, (int)len);
	enum json_tokener_error je = json_tokener_get_error(tok);
	size_t used = (size_t)json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (!j || je != json_tokener_success)
		return fl_error_set(err, -EPROTO, "inspector output is not JSON: %s",
				    json_tokener_error_desc(je));
	for (; used < len; used++)
		if (buf[used] != '\n' && buf[used] != ' ')
			return fl_error_set(err, -EPROTO, "trailing bytes after the inspector's JSON");
	int r = fl_diff_validate(j, err);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(j);
	return 0;
}

/* ---- commands_run -------------------------------------------------------------- */

static bool parse_time(const char *s, int64_t *ret)
{
	struct tm tm = {0};
	const char *e = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
	if (!e)
		return false;
	*ret = (int64_t)timegm(&tm);
	return true;
}

static int cmp_at(const void *a, const void *b)
{
	struct json_object *x = *(struct json_object *const *)a, *y = *(struct json_object *const *)b;
	return strcmp(sget(x, "at"), sget(y, "at"));
}

struct json_object *fl_diff_commands_between(struct json_object *commands, int64_t from, int64_t to)
{
	struct json_object *out = json_object_new_array();
	size_t n = commands && json_object_is_type(commands, json_type_array)
			   ? json_object_array_length(commands)
			   : 0;
	for (size_t i = 0; out && i < n; i++) {
		struct json_object *c = json_object_array_get_idx(commands, i), *ec;
		const char *at = sget(c, "started_at"), *cmd = sget(c, "command");
		int64_t t;
		if (!at || !cmd || !parse_time(at, &t) || t < from || t > to)
			continue;
		struct json_object *o = json_object_new_object();
		json_object_object_add(o, "cmd", json_object_new_string(cmd));
		json_object_object_add(o, "exit_code",
				       json_object_object_get_ex(c, "exit_code", &ec) &&
						       json_object_is_type(ec, json_type_int)
					       ? json_object_new_int(json_object_get_int(ec))
					       : NULL);
		json_object_object_add(o, "at", json_object_new_string(at));
		json_object_array_add(out, o);
	}
	if (out && json_object_array_length(out) > 1)
		json_object_array_sort(out, cmp_at);
	return out;
}

/* ---- Records ------------------------------------------------------------------- */

struct json_object *fl_diff_record(const char *sandbox_id, const char *from, const char *to,
				   struct json_object *diff_json)
{
	uint8_t rnd[16];
	char id[FL_DIFF_ID_LEN + 1] = "dif_";
	if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd)) {
		json_object_put(diff_json);
		return NULL;
	}
	for (int i = 0; i < 16; i++)
		snprintf(id + 4 + 2 * i, 3, "%02x", rnd[i]);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char at[40];
	strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(at + strlen(at), sizeof(at) - strlen(at), ".%03ldZ", ts.tv_nsec / 1000000);
	struct json_object *o = json_object_new_object();
	if (!o) {
		json_object_put(diff_json);
		return NULL;
	}
	json_object_object_add(o, "id", json_object_new_string(id));
	json_object_object_add(o, "sandbox_id", json_object_new_string(sandbox_id));
	json_object_object_add(o, "from_snapshot", json_object_new_string(from));
	json_object_object_add(o, "to_snapshot", json_object_new_string(to));
	json_object_object_add(o, "created_at", json_object_new_string(at));
	json_object_object_add(o, "diff_json", diff_json);
	return o;
}

static int diffs_dir(const char *state_dir, const char *sandbox_id, char *buf, size_t len,
		     bool create, FlError *err)
{
	if (!id_ok(sandbox_id, 63))
		return fl_error_set(err, -EINVAL, "bad sandbox id");
	if ((size_t)snprintf(buf, len, "%s/sandboxes/%s", state_dir, sandbox_id) >= len)
		return fl_error_set(err, -ENAMETOOLONG, "state path too long");
	struct stat st;
	if (stat(buf, &st) < 0)
		return fl_error_set(err, -ENOENT, "no sandbox %s", sandbox_id);
	strncat(buf, "/diffs", len - strlen(buf) - 1);
	if (create && mkdir(buf, 0750) < 0 && errno != EEXIST)
		return fl_error_set(err, -errno, "mkdir %s: %s", buf, strerror(errno));
	return 0;
}

int fl_diff_store(const char *state_dir, struct json_object *rec, FlError *err)
{
	char dir[PATH_MAX], path[PATH_MAX + 64], tmp[PATH_MAX + 80];
	const char *sid = sget(rec, "sandbox_id"), *id = sget(rec, "id");
	if (!diff_id_ok(id))
		return fl_error_set(err, -EINVAL, "bad diff id");
	int r = diffs_dir(state_dir, sid, dir, sizeof(dir), true, err);
	if (r < 0)
		return r;
	snprintf(path, sizeof(path), "%s/%s.json", dir, id);
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, id);
	size_t len;
	const char *s = json_object_to_json_string_length(rec, JSON_C_TO_STRING_PLAIN, &len);
	if (!s)
		return fl_error_set(err, -ENOMEM, "out of memory");
	_cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd < 0)
		return fl_error_set(err, -errno, "%s: %s", tmp, strerror(errno));
	for (size_t off = 0; off < len;) {
		ssize_t k = write(fd, s + off, len - off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			r = k < 0 ? -errno : -EIO;
			unlink(tmp);
			return fl_error_set(err, r, "write %s: %s", tmp, strerror(-r));
		}
		off += (size_t)k;
	}
	if (fsync(fd) < 0 || rename(tmp, path) < 0) {
		r = -errno;
		unlink(tmp);
		return fl_error_set(err, r, "store %s: %s", path, strerror(-r));
	}
	return 0;
}

static int load_file(const char *path, struct json_object **ret)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_RECORD_FILE)
		return -EFBIG;
	_cleanup_free_ char *buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return -ENOMEM;
	size_t len = 0;
	while (len < (size_t)st.st_size) {
		ssize_t k = read(fd, buf + len, (size_t)st.st_size - len);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		len += (size_t)k;
	}
	buf[len] = 0;
	struct json_object *j = json_tokener_parse(buf);
	if (!j || !json_object_is_type(j, json_type_object)) {
		json_object_put(j);
		return -EIO;
	}
	*ret = j;
	return 0;
}

int fl_diff_load(const char *state_dir, const char *sandbox_id, const char *diff_id,
		 struct json_object **ret, FlError *err)
{
	char dir[PATH_MAX], path[PATH_MAX + 64];
	if (!diff_id_ok(diff_id))
		return fl_error_set(err, -ENOENT, "no diff %s", diff_id);
	int r = diffs_dir(state_dir, sandbox_id, dir, sizeof(dir), false, err);
	if (r < 0)
		return r;
	snprintf(path, sizeof(path), "%s/%s.json", dir, diff_id);
	r = load_file(path, ret);
	if (r == -ENOENT)
		return fl_error_set(err, r, "no diff %s in sandbox %s", diff_id, sandbox_id);
	if (r < 0)
		return fl_error_set(err, r, "diff %s: %s", diff_id, strerror(-r));
	return 0;
}

static int cmp_created_desc(const void *a, const void *b)
{
	struct json_object *x = *(struct json_object *const *)a, *y = *(struct json_object *const *)b;
	const char *cx = sget(x, "created_at"), *cy = sget(y, "created_at");
	int c = strcmp(cy ? cy : "", cx ? cx : "");
	return c ? c : strcmp(sget(y, "id") ?: "", sget(x, "id") ?: "");
}

static struct json_object *counts_of(struct json_object *dj)
{
	static const char *const keys[] = {
		"files_added", "files_removed", "files_modified", "packages_added",
		"packages_removed", "packages_upgraded", "services_changed", "users_added",
		"users_removed", "users_changed", "groups_added", "groups_removed",
		"groups_changed", "commands_run"};
	struct json_object *o = json_object_new_object(), *a;
	for (size_t i = 0; o && i < FL_ARRAY_SIZE(keys); i++)
		if (json_object_object_get_ex(dj, keys[i], &a) && json_object_is_type(a, json_type_array))
			json_object_object_add(o, keys[i],
					       json_object_new_int((int)json_object_array_length(a)));
	return o;
}

/* All records of a sandbox, newest first (full, with diff_json). */
static int load_all(const char *state_dir, const char *sandbox_id, struct json_object ***ret,
		    size_t *ret_n, FlError *err)
{
	char dir[PATH_MAX];
	int r = diffs_dir(state_dir, sandbox_id, dir, sizeof(dir), false, err);
	if (r < 0)
		return r;
	_cleanup_(closedirp) DIR *d = opendir(dir);
	struct json_object **v = NULL;
	size_t n = 0;
	struct dirent *de;
	while (d && (de = readdir(d)) && n < MAX_LIST) {
		char id[FL_DIFF_ID_LEN + 1], path[PATH_MAX + 64];
		size_t l = strlen(de->d_name);
		if (l != FL_DIFF_ID_LEN + 5 || strcmp(de->d_name + FL_DIFF_ID_LEN, ".json"))
			continue;
		memcpy(id, de->d_name, FL_DIFF_ID_LEN);
		id[FL_DIFF_ID_LEN] = 0;
		if (!diff_id_ok(id))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		struct json_object *j;
		if (load_file(path, &j) < 0)
			continue;
		struct json_object **nv = realloc(v, (n + 1) * sizeof(*v));
		if (!nv) {
			json_object_put(j);
			break;
		}
		v = nv;
		v[n++] = j;
	}
	if (n > 1)
		qsort(v, n, sizeof(*v), cmp_created_desc);
	*ret = v;
	*ret_n = n;
	return 0;
}

int fl_diff_list(const char *state_dir, const char *sandbox_id, struct json_object **ret,
		 FlError *err)
{
	struct json_object **v = NULL;
	size_t n = 0;
	int r = load_all(state_dir, sandbox_id, &v, &n, err);
	if (r == -ENOENT && err) /* a sandbox without a state dir has no diffs */
		r = 0;
	if (r < 0)
		return r;
	struct json_object *arr = json_object_new_array();
	for (size_t i = 0; i < n; i++) {
		struct json_object *dj;
		if (arr && json_object_object_get_ex(v[i], "diff_json", &dj)) {
			struct json_object *c = counts_of(dj);
			json_object_object_del(v[i], "diff_json");
			json_object_object_add(v[i], "counts", c);
		}
		if (arr)
			json_object_array_add(arr, v[i]);
		else
			json_object_put(v[i]);
	}
	free(v);
	if (!arr)
		return fl_error_set(err, -ENOMEM, "out of memory");
	*ret = arr;
	return 0;
}

int fl_diff_latest(const char *state_dir, const char *sandbox_id, struct json_object **ret,
		   FlError *err)
{
	struct json_object **v = NULL;
	size_t n = 0;
	int r = load_all(state_dir, sandbox_id, &v, &n, err);
	if (r < 0)
		return r;
	for (size_t i = 1; i < n; i++)
		json_object_put(v[i]);
	struct json_object *first = n ? v[0] : NULL;
	free(v);
	if (!first)
		return fl_error_set(err, -ENOENT, "sandbox %s has no diff", sandbox_id);
	*ret = first;
	return 0;
}

/* ---- Computing ------------------------------------------------------------------ */

typedef struct Collect {
	char *buf;
	size_t len, cap;
	bool overflow;
	char err[STDERR_CAP];
	size_t err_len;
} Collect;

/* Runs on the engine loop thread: append only. */
static void collect(int stream, const void *data, size_t len, void *ud)
{
	Collect *c = ud;
	if (stream == 2) {
		size_t k = len < sizeof(c->err) - 1 - c->err_len ? len : sizeof(c->err) - 1 - c->err_len;
		memcpy(c->err + c->err_len, data, k);
		c->err_len += k;
		c->err[c->err_len] = 0;
		return;
	}
	if (c->overflow || len > FL_DIFF_MAX_OUTPUT - c->len) {
		c->overflow = true;
		return;
	}
	if (c->len + len + 1 > c->cap) {
		size_t nc = c->cap ? c->cap : 1u << 16;
		while (nc < c->len + len + 1)
			nc *= 2;
		char *nb = realloc(c->buf, nc);
		if (!nb) {
			c->overflow = true;
			return;
		}
		c->buf = nb;
		c->cap = nc;
	}
	memcpy(c->buf + c->len, data, len);
	c->len += len;
	c->buf[c->len] = 0;
}

static int find_inspect_bin(const FlDiffSpec *spec, char *buf, size_t len)
{
	const char *p = spec->inspect_bin ? spec->inspect_bin : getenv("FLUID_INSPECT");
	if (p) {
		snprintf(buf, len, "%s", p);
		return access(buf, R_OK) == 0 ? 0 : -ENOEXEC;
	}
	char exe[PATH_MAX];
	ssize_t k = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (k > 0) {
		exe[k] = 0;
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = 0;
			snprintf(buf, len, "%s/fluid-inspect", exe);
			if (access(buf, R_OK) == 0)
				return 0;
			snprintf(buf, len, "%s/../lib/fluid/fluid-inspect", exe);
			if (access(buf, R_OK) == 0)
				return 0;
		}
	}
	snprintf(buf, len, "/usr/lib/fluid/fluid-inspect");
	return access(buf, R_OK) == 0 ? 0 : -ENOEXEC;
}

/* file_write of the local file `bin` to `path` in the inspector. */
static int push_binary(FlEngine *e, const char *iid, const char *bin, const char *path,
		       FlError *err)
{
	_cleanup_close_ int fd = open(bin, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fl_error_set(err, -ENOEXEC, "%s: %s", bin, strerror(errno));
	struct json_object *args = json_object_new_object();
	json_object_object_add(args, "path", json_object_new_string(path));
	json_object_object_add(args, "mode", json_object_new_int(0755));
	json_object_object_add(args, "mkdirs", json_object_new_boolean(1));
	FlStreamSpec ss = {.op = "file_write", .args = args, .input = true, .timeout_ms = 120000};
	FlStream *s = NULL;
	int r = fl_engine_stream_open(e, iid, &ss, &s, err);
	if (r < 0)
		return r;
	_cleanup_free_ char *buf = malloc(65536);
	uint64_t total = 0;
	bool failed = !buf;
	while (!failed) {
		ssize_t n = read(fd, buf, 65536);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			failed = n < 0;
			break;
		}
		total += (uint64_t)n;
		if (total > MAX_INSPECT_BIN) {
			failed = true;
			break;
		}
		for (ssize_t off = 0; off < n;) {
			ssize_t k = write(fl_stream_in_fd(s), buf + off, (size_t)(n - off));
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0) {
				failed = true;
				break;
			}
			off += k;
		}
	}
	if (failed)
		fl_stream_cancel(s);
	fl_stream_close_input(s);
	unsigned char hdr[5];
	while (buf && fl_read_full(fl_stream_out_fd(s), hdr, 5) > 0) {
		uint32_t n = hdr[1] | hdr[2] << 8 | hdr[3] << 16 | (uint32_t)hdr[4] << 24;
		while (n) {
			uint32_t k = n < 65536 ? n : 65536;
			if (fl_read_full(fl_stream_out_fd(s), buf, k) <= 0)
				break;
			n -= k;
		}
	}
	r = fl_stream_finish(s, NULL, err);
	if (r < 0)
		return fl_error_prefix(err, "pushing fluid-inspect"), r;
	if (failed)
		return fl_error_set(err, -EIO, "pushing fluid-inspect: reading %s failed", bin);
	return 0;
}

static bool dev_ok(const char *d)
{
	if (!d || strncmp(d, "/dev/vd", 7) || !d[7] || strlen(d) > 12)
		return false;
	for (const char *p = d + 7; *p; p++)
		if (*p < 'a' || *p > 'z')
			return false;
	return true;
}

static int snapshot_time(struct json_object *rec, const char *name, int64_t *ret)
{
	struct json_object *snaps, *v;
	if (!json_object_object_get_ex(rec, "snapshots", &snaps))
		return -ENOENT;
	for (size_t i = 0; i < json_object_array_length(snaps); i++) {
		struct json_object *s = json_object_array_get_idx(snaps, i);
		const char *n = sget(s, "name");
		if (n && !strcmp(n, name)) {
			*ret = json_object_object_get_ex(s, "created_at", &v) ? json_object_get_int64(v) : 0;
			return 0;
		}
	}
	return -ENOENT;
}

static int compute(FlEngine *e, const FlDiffSpec *spec, struct json_object **ret,
		   FlDiffInfo *info, FlError *err)
{
	uint64_t t0 = now_ms();
	char bin[PATH_MAX];
	if (!id_ok(spec->sandbox_id, 63) || !id_ok(spec->from, 64) || !id_ok(spec->to, 64))
		return fl_error_set(err, -EINVAL, "bad sandbox or snapshot name");
	if (!strcmp(spec->from, spec->to))
		return fl_error_set(err, -EINVAL, "from_snapshot and to_snapshot are the same");
	if (spec->n_ignore > FL_DIFF_MAX_IGNORE)
		return fl_error_set(err, -EINVAL, "at most %d ignore patterns", FL_DIFF_MAX_IGNORE);
	for (size_t i = 0; i < spec->n_ignore; i++) {
		size_t l = strlen(spec->ignore[i]);
		if (!l || l > 255)
			return fl_error_set(err, -EINVAL, "ignore patterns are 1-255 bytes");
		for (size_t k = 0; k < l; k++)
			if ((unsigned char)spec->ignore[i][k] < 0x20)
				return fl_error_set(err, -EINVAL, "ignore patterns have no control characters");
	}
	if (find_inspect_bin(spec, bin, sizeof(bin)) < 0)
		return fl_error_set(err, -ENOEXEC, "fluid-inspect not found (build it: make build/fluid-inspect)");
	_cleanup_(json_object_putp) struct json_object *rec = NULL;
	int r = fl_engine_get(e, spec->sandbox_id, &rec, err);
	if (r < 0)
		return r;
	FlDiffInfo in = {0};
	if (snapshot_time(rec, spec->from, &in.from_created_at) < 0)
		return fl_error_set(err, -ENOENT, "sandbox %s has no snapshot '%s'", spec->sandbox_id, spec->from);
	if (snapshot_time(rec, spec->to, &in.to_created_at) < 0)
		return fl_error_set(err, -ENOENT, "sandbox %s has no snapshot '%s'", spec->sandbox_id, spec->to);

	const char *snaps[2] = {spec->from, spec->to};
	_cleanup_(json_object_putp) struct json_object *insp = NULL;
	if ((r = fl_engine_inspector_open(e, spec->sandbox_id, snaps, 2, &insp, err)) < 0)
		return fl_error_prefix(err, "inspector"), r;
	char iid[128], dev[2][16];
	struct json_object *disks;
	snprintf(iid, sizeof(iid), "%s", sget(insp, "id") ?: "");
	bool ok = json_object_object_get_ex(insp, "disks", &disks) &&
		  json_object_array_length(disks) == 2;
	for (int k = 0; ok && k < 2; k++) {
		const char *d = sget(json_object_array_get_idx(disks, k), "device");
		ok = dev_ok(d);
		if (ok)
			snprintf(dev[k], sizeof(dev[k]), "%s", d);
	}
	Collect c = {0};
	FlExecResult res;
	if (!ok) {
		r = fl_error_set(err, -EIO, "inspector gave no usable disks");
		goto close;
	}
	if ((r = push_binary(e, iid, bin, "/var/lib/fluid/fluid-inspect", err)) < 0)
		goto close;
	char mount_cmd[256];
	snprintf(mount_cmd, sizeof(mount_cmd),
		 "mkdir -p /mnt/a /mnt/b && mount -o ro,noload %s /mnt/a && mount -o ro,noload %s /mnt/b",
		 dev[0], dev[1]);
	FlExecSpec ms = {.shell = mount_cmd, .timeout_ms = 60000};
	if ((r = fl_engine_exec(e, iid, &ms, collect, &c, &res, err)) < 0)
		goto close;
	if (res.exit_code || res.signal) {
		r = fl_error_set(err, -EIO, "mounting the snapshots failed (exit %d): %.300s",
				 res.exit_code, c.err);
		goto close;
	}
	c.len = 0;
	c.err_len = 0;
	c.err[0] = 0;
	const char *argv[8 + 2 * FL_DIFF_MAX_IGNORE];
	size_t a = 0;
	argv[a++] = "/var/lib/fluid/fluid-inspect";
	argv[a++] = "--old";
	argv[a++] = "/mnt/a";
	argv[a++] = "--new";
	argv[a++] = "/mnt/b";
	for (size_t i = 0; i < spec->n_ignore; i++) {
		argv[a++] = "--ignore-pattern";
		argv[a++] = spec->ignore[i];
	}
	argv[a] = NULL;
	uint64_t t1 = now_ms();
	FlExecSpec xs = {.argv = argv, .timeout_ms = spec->timeout_ms ? spec->timeout_ms : DEFAULT_TIMEOUT_MS};
	if ((r = fl_engine_exec(e, iid, &xs, collect, &c, &res, err)) < 0)
		goto close;
	in.inspector_ms = now_ms() - t1;
	if (res.timed_out) {
		r = fl_error_set(err, -ETIMEDOUT, "fluid-inspect timed out");
		goto close;
	}
	if (res.exit_code || res.signal) {
		r = fl_error_set(err, -EPROTO, "fluid-inspect failed (exit %d, signal %d): %.300s",
				 res.exit_code, res.signal, c.err);
		goto close;
	}
	if (c.overflow) {
		r = fl_error_set(err, -EPROTO, "fluid-inspect output over %u bytes", FL_DIFF_MAX_OUTPUT);
		goto close;
	}
	r = fl_diff_parse(c.buf ? c.buf : "", c.len, ret, err);
close:
	free(c.buf);
	FlError cerr = {0};
	if (fl_engine_inspector_close(e, iid, &cerr) < 0 && r >= 0)
		r = fl_error_set(err, cerr.code ? cerr.code : -EIO, "closing the inspector: %s", cerr.msg);
	if (r >= 0 && info) {
		in.total_ms = now_ms() - t0;
		*info = in;
	}
	if (r < 0 && *ret) {
		json_object_put(*ret);
		*ret = NULL;
	}
	return r;
}

typedef struct Job {
	FlEngine *e;
	const FlDiffSpec *spec;
	struct json_object *ret;
	FlDiffInfo *info;
	FlError *err;
	int r;
} Job;

static void *job_main(void *arg)
{
	Job *j = arg;
	j->r = compute(j->e, j->spec, &j->ret, j->info, j->err);
	return NULL;
}

int fl_diff_compute(FlEngine *e, const FlDiffSpec *spec, struct json_object **ret_diff_json,
		    FlDiffInfo *ret_info, FlError *err)
{
	Job j = {.e = e, .spec = spec, .info = ret_info, .err = err};
	pthread_attr_t attr;
	pthread_t t;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 8u << 20);
	int r = pthread_create(&t, &attr, job_main, &j);
	pthread_attr_destroy(&attr);
	if (r != 0)
		return fl_error_set(err, -r, "cannot start a diff thread: %s", strerror(r));
	pthread_join(t, NULL);
	if (j.r < 0)
		return j.r;
	*ret_diff_json = j.ret;
	return 0;
}

/* ---- Summary ------------------------------------------------------------------- */

typedef struct Sb {
	char *p;
	size_t len, cap;
} Sb;

__attribute__((format(printf, 2, 3))) static void sb_printf(Sb *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (b->len + (size_t)n + 1 > b->cap) {
		size_t nc = b->cap ? b->cap : 1024;
		while (nc < b->len + (size_t)n + 1)
			nc *= 2;
		char *np = realloc(b->p, nc);
		if (!np)
			return;
		b->p = np;
		b->cap = nc;
	}
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

static size_t alen(struct json_object *dj, const char *k)
{
	struct json_object *a;
	return json_object_object_get_ex(dj, k, &a) && json_object_is_type(a, json_type_array)
		       ? json_object_array_length(a)
		       : 0;
}

#define EACH(dj, key, e)                                                                     \
	for (size_t _i = 0, _n = alen(dj, key); _i < _n; _i++)                                   \
		for (struct json_object *e = json_object_array_get_idx(json_object_object_get(dj, key), _i); \
		     e; e = NULL)

char *fl_diff_summary(struct json_object *d)
{
	Sb b = {0};
	struct json_object *dj = d, *v;
	if (json_object_object_get_ex(d, "diff_json", &v)) {
		dj = v;
		sb_printf(&b, "diff %s of sandbox %s: %s -> %s (%s)\n", sget(d, "id") ?: "?",
			  sget(d, "sandbox_id") ?: "?", sget(d, "from_snapshot") ?: "?",
			  sget(d, "to_snapshot") ?: "?", sget(d, "created_at") ?: "?");
	}
	sb_printf(&b,
		  "files: %zu added, %zu removed, %zu modified; packages: %zu added, %zu removed, "
		  "%zu upgraded; services: %zu; users: +%zu -%zu ~%zu; groups: +%zu -%zu ~%zu; "
		  "commands: %zu\n",
		  alen(dj, "files_added"), alen(dj, "files_removed"), alen(dj, "files_modified"),
		  alen(dj, "packages_added"), alen(dj, "packages_removed"),
		  alen(dj, "packages_upgraded"), alen(dj, "services_changed"), alen(dj, "users_added"),
		  alen(dj, "users_removed"), alen(dj, "users_changed"), alen(dj, "groups_added"),
		  alen(dj, "groups_removed"), alen(dj, "groups_changed"), alen(dj, "commands_run"));
	EACH(dj, "files_added", e)
	{
		const char *t = sget(e, "target");
		sb_printf(&b, "A %s %s%s%s\n", sget(e, "path"), sget(e, "type"), t ? " -> " : "",
			  t ? t : "");
	}
	EACH(dj, "files_removed", e)
	sb_printf(&b, "D %s\n", sget(e, "path"));
	EACH(dj, "files_modified", e)
	{
		struct json_object *ch = json_object_object_get(e, "changes");
		sb_printf(&b, "M %s (", sget(e, "path"));
		for (size_t i = 0; i < json_object_array_length(ch); i++)
			sb_printf(&b, "%s%s", i ? ", " : "",
				  json_object_get_string(json_object_array_get_idx(ch, i)));
		sb_printf(&b, ")\n");
	}
	EACH(dj, "packages_added", e)
	sb_printf(&b, "+pkg %s %s\n", sget(e, "name"), sget(e, "version"));
	EACH(dj, "packages_removed", e)
	sb_printf(&b, "-pkg %s %s\n", sget(e, "name"), sget(e, "version"));
	EACH(dj, "packages_upgraded", e)
	sb_printf(&b, "~pkg %s %s -> %s\n", sget(e, "name"), sget(e, "from"), sget(e, "to"));
	EACH(dj, "services_changed", e)
	sb_printf(&b, "service %s %s (enabled: %s)\n", sget(e, "name"), sget(e, "state"),
		  json_object_get_string(json_object_object_get(e, "enabled")) ?: "null");
	EACH(dj, "users_added", e)
	sb_printf(&b, "+user %s\n", sget(e, "name"));
	EACH(dj, "users_removed", e)
	sb_printf(&b, "-user %s\n", sget(e, "name"));
	EACH(dj, "users_changed", e)
	sb_printf(&b, "~user %s %s\n", sget(e, "name"),
		  json_object_to_json_string(json_object_object_get(e, "changes")));
	EACH(dj, "groups_added", e)
	sb_printf(&b, "+group %s\n", sget(e, "name"));
	EACH(dj, "groups_removed", e)
	sb_printf(&b, "-group %s\n", sget(e, "name"));
	EACH(dj, "groups_changed", e)
	sb_printf(&b, "~group %s %s\n", sget(e, "name"),
		  json_object_to_json_string(json_object_object_get(e, "changes")));
	EACH(dj, "commands_run", e)
	sb_printf(&b, "$ %s  (exit %s, %s)\n", sget(e, "cmd"),
		  json_object_get_string(json_object_object_get(e, "exit_code")) ?: "?",
		  sget(e, "at"));
	struct json_object *ig;
	if (json_object_object_get_ex(dj, "ignored", &ig))
		sb_printf(&b, "ignored: %lld changed paths\n",
			  (long long)json_object_get_int64(json_object_object_get(ig, "count")));
	if (json_object_object_get_ex(dj, "truncated", &v) && json_object_get_boolean(v))
		sb_printf(&b, "WARNING: the diff is truncated (a bound was hit); it is incomplete\n");
	return b.p ? b.p : strdup("");
}
