// SPDX-License-Identifier: MIT
/*
 * ansible-gen: the playbook generator (diff_json -> tasks) and the check
 * of tasks written by API callers. Mapping and order in docs/ansible.md.
 *
 * DESIGN: one pass per diff section fills per-phase task arrays (groups,
 * users, APT configuration, packages, directories, files, symlinks,
 * services, deletions),
 * concatenated at the end. Each entry is validated on its own; an entry
 * that cannot be expressed safely (a path that is not UTF-8, a special
 * file, a password hash the diff never carries) is recorded in "skipped"
 * and the rest still produces tasks, so a reviewer sees both. Sandbox
 * strings only ever become YAML scalars (quoted and !unsafe by the
 * writer); the few command tasks get operands as argv or environment
 * variables, never spliced into shell text.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ansible.h"
#include "base64.h"
#include "cleanup.h"

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)

enum {
	PH_GROUPS,
	PH_USERS,
	PH_APT, /* APT's own configuration: sources and keys the packages come from */
	PH_PACKAGES,
	PH_DIRS,
	PH_FILES,
	PH_LINKS,
	PH_SERVICES,
	PH_DELETE,
	PH_N
};

typedef struct Gen {
	struct json_object *phase[PH_N];
	struct json_object *files, *skipped;
	struct json_object *new_users, *new_dirs, *blobs;
	struct json_object *pkg_paths; /* paths that installed packages own (dpkg .list files) */
	bool units_changed, units_removed;
	int flagged;
	int covered_pkg, covered_acct; /* file entries other tasks express */
} Gen;

/* ---- small helpers --------------------------------------------------- */

static struct json_object *jget(struct json_object *o, const char *key)
{
	struct json_object *v;
	if (!o || !json_object_object_get_ex(o, key, &v))
		return NULL;
	return v;
}

/* A string member that is valid UTF-8 without NUL bytes, else NULL. */
static const char *jstr(struct json_object *o, const char *key)
{
	struct json_object *v = jget(o, key);
	if (!v || !json_object_is_type(v, json_type_string))
		return NULL;
	const char *s = json_object_get_string(v);
	size_t len = (size_t)json_object_get_string_len(v);
	if (strlen(s) != len)
		return NULL;
	/* validated again by the writer; here to skip early and say why */
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0; i < len;) {
		unsigned c = p[i];
		size_t n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
				       : (c & 0xf8) == 0xf0	    ? 4
									    : 0;
		if (!n || i + n > len)
			return NULL;
		for (size_t k = 1; k < n; k++)
			if ((p[i + k] & 0xc0) != 0x80)
				return NULL;
		i += n;
	}
	return s;
}

static bool jbool(struct json_object *o, const char *key, bool def)
{
	struct json_object *v = jget(o, key);
	if (!v || !json_object_is_type(v, json_type_boolean))
		return def;
	return json_object_get_boolean(v);
}

static bool jint(struct json_object *o, const char *key, int64_t min, int64_t max, int64_t *ret)
{
	struct json_object *v = jget(o, key);
	if (!v || !json_object_is_type(v, json_type_int))
		return false;
	int64_t x = json_object_get_int64(v);
	if (x < min || x > max)
		return false;
	*ret = x;
	return true;
}

static void add_str(struct json_object *o, const char *k, const char *v)
{
	json_object_object_add(o, k, json_object_new_string(v));
}

static bool arr_has(struct json_object *arr, const char *s)
{
	size_t n = arr ? json_object_array_length(arr) : 0;
	for (size_t i = 0; i < n; i++) {
		struct json_object *v = json_object_array_get_idx(arr, i);
		if (json_object_is_type(v, json_type_string) && !strcmp(json_object_get_string(v), s))
			return true;
	}
	return false;
}

static bool set_has(struct json_object *set, const char *k)
{
	return json_object_object_get_ex(set, k, NULL);
}

static void set_add(struct json_object *set, const char *k)
{
	json_object_object_add(set, k, json_object_new_boolean(1));
}

static void skip(Gen *g, const char *kind, const char *what, const char *reason)
{
	struct json_object *s = json_object_new_object();
	add_str(s, kind, what ? what : "?");
	add_str(s, "reason", reason);
	json_object_array_add(g->skipped, s);
}

/*
 * Text for a task name: control and format characters become '?', braces
 * become parentheses (names are display only, and ansible-lint would read
 * braces as a template), long paths keep their head and tail.
 */
static void display(char *out, size_t outsz, const char *s)
{
	size_t len = strlen(s), o = 0;
	size_t keep_head = 50, keep_tail = 60;
	size_t cps = 0;
	for (size_t i = 0; i < len; i++)
		if (((unsigned char)s[i] & 0xc0) != 0x80)
			cps++;
	size_t cp_i = 0;
	bool elided = false;
	for (size_t i = 0; i < len && o + 8 < outsz;) {
		unsigned char c = (unsigned char)s[i];
		size_t n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : 4;
		if (i + n > len)
			n = len - i;
		if (cps > keep_head + keep_tail + 3 && cp_i >= keep_head && cp_i < cps - keep_tail) {
			if (!elided) {
				memcpy(out + o, "...", 3);
				o += 3;
				elided = true;
			}
		} else if (c < 0x20 || c == 0x7f) {
			out[o++] = '?';
		} else if (c == '{') {
			out[o++] = '(';
		} else if (c == '}') {
			out[o++] = ')';
		} else if (n == 2 && c == 0xc2 && (unsigned char)s[i + 1] < 0xa0) {
			out[o++] = '?'; /* C1 controls */
		} else if (n == 3 && c == 0xe2 &&
			   (((unsigned char)s[i + 1] == 0x80 &&
			     (((unsigned char)s[i + 2] >= 0x8b && (unsigned char)s[i + 2] <= 0x8f) ||
			      ((unsigned char)s[i + 2] >= 0xa8 && (unsigned char)s[i + 2] <= 0xae))) ||
			    ((unsigned char)s[i + 1] == 0x81 && (unsigned char)s[i + 2] >= 0xa0 &&
			     (unsigned char)s[i + 2] <= 0xa9))) {
			out[o++] = '?'; /* separators, zero-width and bidi controls */
		} else if (n == 3 && c == 0xef && (unsigned char)s[i + 1] == 0xbb &&
			   (unsigned char)s[i + 2] == 0xbf) {
			out[o++] = '?'; /* BOM */
		} else {
			memcpy(out + o, s + i, n);
			o += n;
		}
		i += n;
		cp_i++;
	}
	out[o] = 0;
}

static struct json_object *task_add(Gen *g, int phase, const char *module, const char *fmt,
				    const char *arg)
{
	char disp[400], name[512];
	display(disp, sizeof(disp), arg ? arg : "");
	snprintf(name, sizeof(name), fmt, disp);
	/* a package may come from a source the sandbox added: /etc/apt
	 * (sources, preferences, keys) is in place before the apt task */
	if ((phase == PH_DIRS || phase == PH_FILES || phase == PH_LINKS) && arg &&
	    !strncmp(arg, "/etc/apt/", 9))
		phase = PH_APT;
	struct json_object *t = json_object_new_object();
	add_str(t, "name", name);
	add_str(t, "module", module);
	struct json_object *params = json_object_new_object();
	json_object_object_add(t, "params", params);
	json_object_object_add(t, "flagged", json_object_new_boolean(0));
	json_object_array_add(g->phase[phase], t);
	return t;
}

static struct json_object *params_of(struct json_object *t) { return jget(t, "params"); }

static void flag(Gen *g, struct json_object *t, const char *note)
{
	json_object_object_add(t, "flagged", json_object_new_boolean(1));
	if (note)
		add_str(t, "note", note);
	g->flagged++;
}

/* ---- validation of names from the diff ------------------------------- */

/* Absolute, normalised (no empty, "." or ".." components), at most 4096 bytes. */
static bool path_ok(const char *p)
{
	size_t len = strlen(p);
	if (len == 0 || len > 4096 || p[0] != '/')
		return false;
	if (len == 1)
		return true;
	if (p[len - 1] == '/')
		return false;
	for (const char *c = p; *c;) {
		const char *e = strchr(c + 1, '/');
		size_t cl = (e ? (size_t)(e - c) : strlen(c)) - 1;
		if (cl == 0 || (cl == 1 && c[1] == '.') || (cl == 2 && c[1] == '.' && c[2] == '.'))
			return false;
		if (!e)
			break;
		c = e;
	}
	return true;
}

static const char *entry_path(Gen *g, struct json_object *e)
{
	const char *p = jstr(e, "path");
	if (jget(e, "path_b64")) {
		skip(g, "path", p, "name is not valid UTF-8: YAML cannot carry it");
		return NULL;
	}
	if (!p) {
		skip(g, "item", "file entry", "path missing or not valid UTF-8");
		return NULL;
	}
	if (!path_ok(p)) {
		skip(g, "path", p, "path is not absolute and normalised");
		return NULL;
	}
	return p;
}

/* "0644" / "644" / "04755" -> four octal digits. */
static bool mode_ok(const char *m, char out[5])
{
	if (!m)
		return false;
	size_t n = strlen(m);
	if (n < 3 || n > 5)
		return false;
	for (size_t i = 0; i < n; i++)
		if (m[i] < '0' || m[i] > '7')
			return false;
	if (n == 5) {
		if (m[0] != '0')
			return false;
		m++, n--;
	}
	snprintf(out, 5, "%s%s", n == 3 ? "0" : "", m);
	return true;
}

/* Account names: what useradd accepts, and decimal ids (unknown names). */
static bool account_ok(const char *s)
{
	if (!s || !*s || strlen(s) > 32)
		return false;
	for (const char *p = s; *p; p++) {
		char c = *p;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			  c == '_' || (p != s && (c == '.' || c == '-')) || (c == '$' && !p[1]);
		if (!ok)
			return false;
	}
	return true;
}

static bool pkg_ok(const char *s)
{
	if (!s || strlen(s) < 2 || strlen(s) > 128 || !((s[0] >= 'a' && s[0] <= 'z') ||
							(s[0] >= '0' && s[0] <= '9')))
		return false;
	bool arch = false;
	for (const char *p = s; *p; p++) {
		char c = *p;
		if (c == ':' && !arch && p[1]) {
			arch = true;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '.' ||
		      c == '-' || (arch && c == '_')))
			return false;
	}
	return true;
}

static bool version_ok(const char *s)
{
	if (!s || !*s || strlen(s) > 128)
		return false;
	for (const char *p = s; *p; p++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '+' || c == '~' || c == ':' || c == '-'))
			return false;
	}
	return true;
}

static bool unit_ok(const char *s)
{
	if (!s || !*s || strlen(s) > 255 || s[0] == '-' || s[0] == '.')
		return false;
	for (const char *p = s; *p; p++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == ':' || c == '_' || c == '.' || c == '@' || c == '-' || c == '\\'))
			return false;
	}
	return true;
}

static bool sha_ok(const char *s)
{
	if (!s || strlen(s) != 64)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

static bool unit_path(const char *p)
{
	static const char *const dirs[] = {"/etc/systemd/system/", "/lib/systemd/system/",
					   "/usr/lib/systemd/system/", NULL};
	for (size_t i = 0; dirs[i]; i++)
		if (!strncmp(p, dirs[i], strlen(dirs[i])))
			return true;
	return false;
}

static bool text_ok(const char *s, size_t len)
{
	if (memchr(s, 0, len))
		return false;
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0; i < len;) {
		unsigned c = p[i];
		size_t n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
				       : (c & 0xf8) == 0xf0	    ? 4
									    : 0;
		if (!n || i + n > len)
			return false;
		uint32_t v = n == 1 ? c : n == 2 ? c & 0x1f : n == 3 ? c & 0x0f : c & 0x07;
		for (size_t k = 1; k < n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			v = (v << 6) | (p[i + k] & 0x3f);
		}
		if ((n == 2 && v < 0x80) || (n == 3 && v < 0x800) || (n == 4 && v < 0x10000) ||
		    v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
			return false;
		i += n;
	}
	return true;
}

/* ---- file tasks ----------------------------------------------------- */

static void set_attrs(struct json_object *params, struct json_object *meta, bool with_mode)
{
	char mode[5];
	const char *o = jstr(meta, "owner"), *gr = jstr(meta, "group");
	if (with_mode && mode_ok(jstr(meta, "mode"), mode))
		add_str(params, "mode", mode);
	if (account_ok(o))
		add_str(params, "owner", o);
	if (account_ok(gr))
		add_str(params, "group", gr);
}

/*
 * Before a path changes type, whatever is there of the old type must go
 * (file, copy and link refuse or misbehave otherwise). A shell task, the
 * path in the environment: it removes only what is not already the wanted
 * type, so a second run changes nothing.
 */
static void type_fixup(Gen *g, int phase, const char *path, const char *want)
{
	struct json_object *t =
		task_add(g, phase, "ansible.builtin.shell", "Remove %s if it is not of the new type", path);
	struct json_object *p = params_of(t);
	char script[512];
	snprintf(script, sizeof(script),
		 "if [ -L \"$FL_PATH\" ]; then have=symlink; elif [ -d \"$FL_PATH\" ]; then "
		 "have=dir; elif [ -e \"$FL_PATH\" ]; then have=file; else exit 0; fi\n"
		 "if [ \"$have\" != %s ]; then rm -rf -- \"$FL_PATH\"; echo removed; fi\n",
		 want);
	add_str(p, "cmd", script);
	struct json_object *env = json_object_new_object();
	add_str(env, "FL_PATH", path);
	json_object_object_add(t, "environment", env);
	add_str(t, "register", "fl_result");
	add_str(t, "changed_when", "fl_result.stdout == 'removed'");
	flag(g, t, "type change: removes the old entry before the new one is created");
}

static void file_blob(Gen *g, const char *path, struct json_object *meta, const char *b64,
		      const char *sha)
{
	if (set_has(g->blobs, sha))
		return;
	set_add(g->blobs, sha);
	struct json_object *f = json_object_new_object();
	char src[80];
	snprintf(src, sizeof(src), "files/%s", sha);
	add_str(f, "src", src);
	add_str(f, "path", path);
	add_str(f, "sha256", sha);
	int64_t size = 0;
	if (jint(meta, "size", 0, INT64_MAX, &size))
		json_object_object_add(f, "size", json_object_new_int64(size));
	if (b64)
		add_str(f, "content_b64", b64);
	json_object_array_add(g->files, f);
}

/* Writes a regular file: copy with content (text) or src files/<sha256>. */
static void put_file(Gen *g, const char *path, struct json_object *meta)
{
	char mode[5];
	const char *b64 = jstr(meta, "content_b64"), *sha = jstr(meta, "sha256");
	if (!mode_ok(jstr(meta, "mode"), mode)) {
		skip(g, "path", path, "mode missing or invalid");
		return;
	}
	_cleanup_free_ char *data = NULL;
	size_t len = 0;
	if (b64 && fl_base64_decode(b64, &data, &len) < 0) {
		skip(g, "path", path, "content_b64 is not valid base64");
		return;
	}
	struct json_object *t;
	if (data && text_ok(data, len)) {
		t = task_add(g, PH_FILES, "ansible.builtin.copy", "Write file %s", path);
		struct json_object *p = params_of(t);
		add_str(p, "dest", path);
		json_object_object_add(p, "content", json_object_new_string_len(data, (int)len));
		set_attrs(p, meta, true);
		return;
	}
	if (!sha_ok(sha)) {
		skip(g, "path", path, "no content and no sha256");
		return;
	}
	file_blob(g, path, meta, b64, sha);
	t = task_add(g, PH_FILES, "ansible.builtin.copy", "Write file %s", path);
	struct json_object *p = params_of(t);
	char src[80];
	snprintf(src, sizeof(src), "files/%s", sha);
	add_str(p, "src", src);
	add_str(p, "dest", path);
	set_attrs(p, meta, true);
	if (!b64)
		flag(g, t, "content larger than the diff carries: files/<sha256> must be fetched");
}

static void put_dir(Gen *g, const char *path, struct json_object *meta)
{
	struct json_object *t =
		task_add(g, PH_DIRS, "ansible.builtin.file", "Create directory %s", path);
	struct json_object *p = params_of(t);
	add_str(p, "path", path);
	add_str(p, "state", "directory");
	set_attrs(p, meta, true);
}

static void put_link(Gen *g, const char *path, struct json_object *meta)
{
	const char *target = jstr(meta, "target");
	if (!target || !*target || strlen(target) > 4096) {
		skip(g, "path", path, "symlink target missing or not valid UTF-8");
		return;
	}
	struct json_object *t =
		task_add(g, PH_LINKS, "ansible.builtin.file", "Create symlink %s", path);
	struct json_object *p = params_of(t);
	add_str(p, "src", target);
	add_str(p, "dest", path);
	add_str(p, "state", "link");
	/* the target may not exist (yet, or on purpose): link anyway */
	json_object_object_add(p, "force", json_object_new_boolean(1));
	const char *o = jstr(meta, "owner"), *gr = jstr(meta, "group");
	if ((account_ok(o) && strcmp(o, "root")) || (account_ok(gr) && strcmp(gr, "root"))) {
		set_attrs(p, meta, false);
		json_object_object_add(p, "follow", json_object_new_boolean(0));
	}
}

static void put_new_entry(Gen *g, const char *path, struct json_object *meta, const char *type)
{
	if (!strcmp(type, "dir"))
		put_dir(g, path, meta);
	else if (!strcmp(type, "file"))
		put_file(g, path, meta);
	else if (!strcmp(type, "symlink"))
		put_link(g, path, meta);
	else
		skip(g, "path", path, "special file (type other): no module creates it faithfully");
}

/*
 * Files the playbook must not write itself: the account databases
 * (user/group tasks express those changes, and a copy would overwrite the
 * target's other accounts), dpkg's and apt's own state (apt tasks), and
 * files a package brings outside /etc (its install writes them). Package
 * files under /etc stay: they may be conffiles the agent edited, and a
 * copy with the package's own content changes nothing.
 */
static bool covered(Gen *g, const char *path)
{
	static const char *const acct[] = {"/etc/passwd", "/etc/shadow", "/etc/group",
					   "/etc/gshadow", "/etc/subuid", "/etc/subgid", NULL};
	for (size_t i = 0; acct[i]; i++)
		if (!strcmp(path, acct[i])) {
			g->covered_acct++;
			return true;
		}
	if (!strncmp(path, "/var/lib/dpkg/", 14) || !strcmp(path, "/var/lib/dpkg") ||
	    !strncmp(path, "/var/lib/apt/", 13) || !strcmp(path, "/var/lib/apt") ||
	    (strncmp(path, "/etc/", 5) && set_has(g->pkg_paths, path))) {
		g->covered_pkg++;
		return true;
	}
	return false;
}

/* Paths listed in dpkg's /var/lib/dpkg/info/<pkg>.list files of the new tree. */
static void collect_pkg_paths(Gen *g, struct json_object *arr, bool modified)
{
	size_t n = arr ? json_object_array_length(arr) : 0;
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(arr, i);
		const char *path = jstr(e, "path");
		size_t pl = path ? strlen(path) : 0;
		if (!path || strncmp(path, "/var/lib/dpkg/info/", 19) || pl < 25 ||
		    strcmp(path + pl - 5, ".list") || strchr(path + 19, '/'))
			continue;
		const char *b64 = jstr(modified ? jget(e, "new") : e, "content_b64");
		_cleanup_free_ char *data = NULL;
		size_t len;
		if (!b64 || fl_base64_decode(b64, &data, &len) < 0)
			continue;
		for (size_t st = 0; st < len;) {
			char *nl = memchr(data + st, '\n', len - st);
			size_t e2 = nl ? (size_t)(nl - data) : len;
			if (e2 > st && data[st] == '/') {
				data[e2] = 0;
				set_add(g->pkg_paths, data + st);
			}
			st = e2 + 1;
		}
	}
}

static int files_added(Gen *g, struct json_object *arr)
{
	size_t n = json_object_array_length(arr);
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(arr, i);
		const char *path = entry_path(g, e), *type = jstr(e, "type");
		if (!path || covered(g, path))
			continue;
		if (!type) {
			skip(g, "path", path, "type missing");
			continue;
		}
		if (unit_path(path))
			g->units_changed = true;
		if (!strcmp(type, "dir"))
			set_add(g->new_dirs, path);
		put_new_entry(g, path, e, type);
	}
	return 0;
}

/* Lines of text: count exact occurrences of line (without '\n'). */
static size_t count_line(const char *s, size_t len, const char *line, size_t ll)
{
	size_t c = 0;
	for (size_t st = 0; st < len;) {
		const char *nl = memchr(s + st, '\n', len - st);
		size_t e = nl ? (size_t)(nl - s) : len;
		if (e - st == ll && !memcmp(s + st, line, ll))
			c++;
		st = e + 1;
	}
	return c;
}

/* Python re escaping of a literal (ASCII punctuation and blanks). */
static void re_escape(char *out, size_t outsz, const char *s)
{
	size_t o = 0;
	for (const char *p = s; *p && o + 3 < outsz; p++) {
		unsigned char c = (unsigned char)*p;
		if (c < 0x80 && !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
				  (c >= '0' && c <= '9') || c == '_'))
			out[o++] = '\\';
		out[o++] = (char)c;
	}
	out[o] = 0;
}

/*
 * lineinfile when the change is exactly one line, provably: one hunk with
 * one line replaced (or one line appended at the end), the new content is
 * in the diff, the new line occurs once in it and the old one not at all,
 * and the sizes agree. Then a regexp matching either version of the line
 * finds exactly that line before and after, so a second run changes
 * nothing. Returns true when a task was added.
 */
static bool try_lineinfile(Gen *g, const char *path, struct json_object *e)
{
	struct json_object *nw = jget(e, "new"), *old = jget(e, "old");
	const char *diff = jstr(e, "diff"), *b64 = jstr(nw, "content_b64");
	if (!diff || !b64 || jbool(e, "diff_truncated", false) || jbool(e, "binary", false))
		return false;
	_cleanup_free_ char *data = NULL;
	size_t len;
	if (fl_base64_decode(b64, &data, &len) < 0 || !text_ok(data, len) || !len ||
	    data[len - 1] != '\n' || memchr(data, '\r', len))
		return false;
	int hunks = 0;
	const char *minus = NULL, *plus = NULL;
	size_t nminus = 0, nplus = 0, minus_len = 0, plus_len = 0;
	for (const char *l = diff; *l;) {
		const char *nl = strchr(l, '\n');
		size_t ll = nl ? (size_t)(nl - l) : strlen(l);
		if (!strncmp(l, "@@", 2))
			hunks++;
		else if (!hunks)
			; /* headers */
		else if (l[0] == '-')
			nminus++, minus = l + 1, minus_len = ll - 1;
		else if (l[0] == '+')
			nplus++, plus = l + 1, plus_len = ll - 1;
		else if (l[0] == '\\')
			return false; /* "\ No newline at end of file" */
		if (!nl)
			break;
		l = nl + 1;
	}
	if (hunks != 1 || nplus != 1 || nminus > 1 || plus_len == 0 || plus_len > 4000 ||
	    minus_len > 4000)
		return false;
	_cleanup_free_ char *line = strndup(plus, plus_len);
	_cleanup_free_ char *oldl = minus ? strndup(minus, minus_len) : NULL;
	if (!line || (minus && !oldl))
		return false;
	if (strspn(line, " \t") == plus_len || count_line(data, len, line, plus_len) != 1)
		return false;
	int64_t osz, nsz;
	if (!jint(old, "size", 0, INT64_MAX, &osz) || !jint(nw, "size", 0, INT64_MAX, &nsz) ||
	    (size_t)nsz != len)
		return false;
	if (oldl) {
		if (strspn(oldl, " \t") == minus_len || count_line(data, len, oldl, minus_len) != 0 ||
		    osz != nsz - (int64_t)plus_len + (int64_t)minus_len)
			return false;
	} else {
		/* appended: must be the last line */
		if (len < plus_len + 1 || memcmp(data + len - 1 - plus_len, line, plus_len) ||
		    (len > plus_len + 1 && data[len - plus_len - 2] != '\n') ||
		    osz != nsz - (int64_t)plus_len - 1)
			return false;
	}
	struct json_object *t =
		task_add(g, PH_FILES, "ansible.builtin.lineinfile", "Set one line in %s", path);
	struct json_object *p = params_of(t);
	add_str(p, "path", path);
	if (oldl) {
		size_t cap = 2 * (plus_len + minus_len) + 16;
		_cleanup_free_ char *a = malloc(cap), *bq = malloc(cap), *re = malloc(2 * cap);
		if (!a || !bq || !re)
			return false;
		re_escape(a, cap, oldl);
		re_escape(bq, cap, line);
		snprintf(re, 2 * cap, "^(?:%s|%s)$", a, bq);
		add_str(p, "regexp", re);
	}
	add_str(p, "line", line);
	set_attrs(p, nw, true);
	return true;
}

static int files_modified(Gen *g, struct json_object *arr)
{
	size_t n = json_object_array_length(arr);
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(arr, i);
		const char *path = entry_path(g, e);
		if (!path || covered(g, path))
			continue;
		struct json_object *ch = jget(e, "changes"), *nw = jget(e, "new");
		const char *type = jstr(nw, "type");
		if (!json_object_is_type(ch, json_type_array) || !json_object_is_type(nw, json_type_object) ||
		    !type) {
			skip(g, "path", path, "changes or new missing");
			continue;
		}
		if (unit_path(path))
			g->units_changed = true;
		if (arr_has(ch, "type")) {
			int ph = !strcmp(type, "dir") ? PH_DIRS : !strcmp(type, "symlink") ? PH_LINKS
											    : PH_FILES;
			if (strcmp(type, "dir") && strcmp(type, "file") && strcmp(type, "symlink")) {
				skip(g, "path", path, "changed into a special file (type other)");
				continue;
			}
			type_fixup(g, ph, path, type);
			put_new_entry(g, path, nw, type);
			continue;
		}
		if (!strcmp(type, "file") && arr_has(ch, "content")) {
			if (!try_lineinfile(g, path, e))
				put_file(g, path, nw);
			continue;
		}
		if (!strcmp(type, "symlink") && arr_has(ch, "target")) {
			put_link(g, path, nw);
			continue;
		}
		if (arr_has(ch, "mode") || arr_has(ch, "owner") || arr_has(ch, "group")) {
			bool link = !strcmp(type, "symlink");
			if (strcmp(type, "file") && strcmp(type, "dir") && !link) {
				skip(g, "path", path, "attributes of a special file");
				continue;
			}
			if (link && !arr_has(ch, "owner") && !arr_has(ch, "group"))
				continue; /* a link's own mode means nothing on Linux */
			struct json_object *t =
				task_add(g, !strcmp(type, "dir") ? PH_DIRS : link ? PH_LINKS : PH_FILES,
					 "ansible.builtin.file", "Set mode and ownership of %s", path);
			struct json_object *p = params_of(t);
			add_str(p, "path", path);
			add_str(p, "state", !strcmp(type, "dir") ? "directory" : link ? "link" : "file");
			if (link) {
				const char *target = jstr(nw, "target");
				if (target)
					add_str(p, "src", target);
				json_object_object_add(p, "follow", json_object_new_boolean(0));
			}
			set_attrs(p, nw, !link);
			continue;
		}
		skip(g, "path", path, "no change this generator knows");
	}
	return 0;
}

static int cmp_path(const void *a, const void *b)
{
	struct json_object *const *x = a, *const *y = b;
	const char *p = json_object_get_string(jget(*x, "path"));
	const char *q = json_object_get_string(jget(*y, "path"));
	return strcmp(p ? p : "", q ? q : "");
}

static int files_removed(Gen *g, struct json_object *arr)
{
	/* sorted by path: a removed directory comes before what was under it */
	_cleanup_(json_object_putp) struct json_object *sorted = json_object_new_array();
	size_t n = json_object_array_length(arr);
	for (size_t i = 0; i < n; i++)
		json_object_array_add(sorted, json_object_get(json_object_array_get_idx(arr, i)));
	json_object_array_sort(sorted, cmp_path);
	char last_dir[4100] = "";
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(sorted, i);
		const char *path = entry_path(g, e), *type = jstr(e, "type");
		if (!path || covered(g, path))
			continue;
		size_t ld = strlen(last_dir);
		if (ld && !strncmp(path, last_dir, ld) && (path[ld] == '/' || ld == 1))
			continue; /* gone with its directory */
		if (unit_path(path))
			g->units_removed = true;
		struct json_object *t = task_add(g, PH_DELETE, "ansible.builtin.file", "Remove %s", path);
		struct json_object *p = params_of(t);
		add_str(p, "path", path);
		add_str(p, "state", "absent");
		if (type && !strcmp(type, "dir"))
			snprintf(last_dir, sizeof(last_dir), "%s", path);
	}
	return 0;
}

/* ---- packages ------------------------------------------------------- */

static int packages(Gen *g, struct json_object *added, struct json_object *removed,
		    struct json_object *upgraded)
{
	struct json_object *install = json_object_new_array(), *remove = json_object_new_array();
	char spec[300];
	for (int pass = 0; pass < 2; pass++) {
		struct json_object *arr = pass ? upgraded : added;
		size_t n = arr ? json_object_array_length(arr) : 0;
		for (size_t i = 0; i < n; i++) {
			struct json_object *e = json_object_array_get_idx(arr, i);
			const char *name = jstr(e, "name"), *ver = jstr(e, pass ? "to" : "version");
			if (!pkg_ok(name)) {
				skip(g, "item", name ? name : "package", "invalid package name");
				continue;
			}
			if (ver && !version_ok(ver)) {
				skip(g, "item", name, "invalid package version");
				continue;
			}
			/* pinned: apt installs exactly what the sandbox had */
			snprintf(spec, sizeof(spec), "%s%s%s", name, ver ? "=" : "", ver ? ver : "");
			json_object_array_add(install, json_object_new_string(spec));
		}
	}
	size_t n = removed ? json_object_array_length(removed) : 0;
	for (size_t i = 0; i < n; i++) {
		const char *name = jstr(json_object_array_get_idx(removed, i), "name");
		if (!pkg_ok(name)) {
			skip(g, "item", name ? name : "package", "invalid package name");
			continue;
		}
		json_object_array_add(remove, json_object_new_string(name));
	}
	if (json_object_array_length(install)) {
		char what[64];
		snprintf(what, sizeof(what), "%zu", json_object_array_length(install));
		struct json_object *t = task_add(g, PH_PACKAGES, "ansible.builtin.apt",
						 "Install packages (%s, versions pinned)", what);
		struct json_object *p = params_of(t);
		json_object_object_add(p, "name", install);
		add_str(p, "state", "present");
		json_object_object_add(p, "update_cache", json_object_new_boolean(1));
		json_object_object_add(p, "cache_valid_time", json_object_new_int(86400));
	} else {
		json_object_put(install);
	}
	if (json_object_array_length(remove)) {
		char what[64];
		snprintf(what, sizeof(what), "%zu", json_object_array_length(remove));
		struct json_object *t =
			task_add(g, PH_PACKAGES, "ansible.builtin.apt", "Remove packages (%s)", what);
		struct json_object *p = params_of(t);
		json_object_object_add(p, "name", remove);
		add_str(p, "state", "absent");
	} else {
		json_object_put(remove);
	}
	return 0;
}

/* ---- users and groups ----------------------------------------------- */

/* {"from", "to"} -> to; a bare value is taken as the new value. */
static struct json_object *change_to(struct json_object *changes, const char *key)
{
	struct json_object *c = jget(changes, key);
	if (c && json_object_is_type(c, json_type_object) && json_object_object_get_ex(c, "to", NULL))
		return jget(c, "to");
	return c;
}

static struct json_object *names_array(Gen *g, struct json_object *arr, const char *owner)
{
	struct json_object *out = json_object_new_array();
	size_t n = arr && json_object_is_type(arr, json_type_array) ? json_object_array_length(arr) : 0;
	for (size_t i = 0; i < n; i++) {
		struct json_object *v = json_object_array_get_idx(arr, i);
		const char *s = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
		if (!account_ok(s)) {
			skip(g, "item", owner, "invalid group name in its list");
			continue;
		}
		json_object_array_add(out, json_object_new_string(s));
	}
	return out;
}

static void add_member(Gen *g, const char *user, const char *group)
{
	char what[80];
	snprintf(what, sizeof(what), "%s to group %s", user, group);
	struct json_object *t = task_add(g, PH_USERS, "ansible.builtin.user", "Add user %s", what);
	struct json_object *p = params_of(t);
	add_str(p, "name", user);
	struct json_object *gs = json_object_new_array();
	json_object_array_add(gs, json_object_new_string(group));
	json_object_object_add(p, "groups", gs);
	json_object_object_add(p, "append", json_object_new_boolean(1));
}

static void del_member(Gen *g, const char *user, const char *group)
{
	char what[80];
	snprintf(what, sizeof(what), "%s from group %s", user, group);
	struct json_object *t =
		task_add(g, PH_USERS, "ansible.builtin.command", "Remove user %s", what);
	struct json_object *p = params_of(t);
	struct json_object *argv = json_object_new_array();
	json_object_array_add(argv, json_object_new_string("gpasswd"));
	json_object_array_add(argv, json_object_new_string("-d"));
	json_object_array_add(argv, json_object_new_string(user));
	json_object_array_add(argv, json_object_new_string(group));
	json_object_object_add(p, "argv", argv);
	add_str(t, "register", "fl_result");
	add_str(t, "changed_when", "fl_result.rc == 0");
	add_str(t, "failed_when", "fl_result.rc not in [0, 3]");
	flag(g, t, "no module removes one supplementary group: gpasswd -d");
}

static int groups_users(Gen *g, struct json_object *diff)
{
	struct json_object *ga = jget(diff, "groups_added"), *gc = jget(diff, "groups_changed");
	struct json_object *ua = jget(diff, "users_added"), *uc = jget(diff, "users_changed");
	size_t n;

	n = ua ? json_object_array_length(ua) : 0;
	for (size_t i = 0; i < n; i++) {
		const char *name = jstr(json_object_array_get_idx(ua, i), "name");
		if (account_ok(name))
			set_add(g->new_users, name);
	}

	n = ga ? json_object_array_length(ga) : 0;
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(ga, i);
		const char *name = jstr(e, "name");
		int64_t gid;
		if (!account_ok(name)) {
			skip(g, "item", name ? name : "group", "invalid group name");
			continue;
		}
		struct json_object *t =
			task_add(g, PH_GROUPS, "ansible.builtin.group", "Create group %s", name);
		struct json_object *p = params_of(t);
		add_str(p, "name", name);
		if (jint(e, "gid", 0, 4294967294LL, &gid))
			json_object_object_add(p, "gid", json_object_new_int64(gid));
		add_str(p, "state", "present");
		struct json_object *mem = jget(e, "members");
		size_t m = mem && json_object_is_type(mem, json_type_array) ? json_object_array_length(mem) : 0;
		for (size_t k = 0; k < m; k++) {
			const char *u = json_object_get_string(json_object_array_get_idx(mem, k));
			if (!account_ok(u))
				continue;
			/* new users get their groups with their own task */
			if (!set_has(g->new_users, u))
				add_member(g, u, name);
		}
	}
	n = gc ? json_object_array_length(gc) : 0;
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(gc, i);
		const char *name = jstr(e, "name");
		struct json_object *ch = jget(e, "changes");
		if (!account_ok(name) || !json_object_is_type(ch, json_type_object)) {
			skip(g, "item", name ? name : "group", "invalid group change");
			continue;
		}
		struct json_object *gid = change_to(ch, "gid");
		if (gid && json_object_is_type(gid, json_type_int)) {
			struct json_object *t =
				task_add(g, PH_GROUPS, "ansible.builtin.group", "Set gid of group %s", name);
			struct json_object *p = params_of(t);
			add_str(p, "name", name);
			json_object_object_add(p, "gid", json_object_get(gid));
			add_str(p, "state", "present");
		}
		struct json_object *mc = jget(ch, "members");
		if (mc) {
			struct json_object *from = jget(mc, "from"), *to = jget(mc, "to");
			size_t m = to && json_object_is_type(to, json_type_array) ? json_object_array_length(to) : 0;
			for (size_t k = 0; k < m; k++) {
				const char *u = json_object_get_string(json_object_array_get_idx(to, k));
				if (account_ok(u) && !arr_has(from, u) && !set_has(g->new_users, u))
					add_member(g, u, name);
			}
			m = from && json_object_is_type(from, json_type_array) ? json_object_array_length(from) : 0;
			for (size_t k = 0; k < m; k++) {
				const char *u = json_object_get_string(json_object_array_get_idx(from, k));
				if (account_ok(u) && !arr_has(to, u))
					del_member(g, u, name);
			}
		}
	}

	n = ua ? json_object_array_length(ua) : 0;
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(ua, i);
		const char *name = jstr(e, "name"), *home = jstr(e, "home"), *shell = jstr(e, "shell");
		int64_t uid, gid;
		if (!account_ok(name)) {
			skip(g, "item", name ? name : "user", "invalid user name");
			continue;
		}
		struct json_object *t = task_add(g, PH_USERS, "ansible.builtin.user", "Create user %s", name);
		struct json_object *p = params_of(t);
		add_str(p, "name", name);
		if (jint(e, "uid", 0, 4294967294LL, &uid))
			json_object_object_add(p, "uid", json_object_new_int64(uid));
		if (jint(e, "gid", 0, 4294967294LL, &gid)) {
			char gs[24];
			snprintf(gs, sizeof(gs), "%" PRId64, gid);
			add_str(p, "group", gs);
		}
		struct json_object *groups = jget(e, "groups");
		if (groups && json_object_array_length(groups)) {
			json_object_object_add(p, "groups", names_array(g, groups, name));
			json_object_object_add(p, "append", json_object_new_boolean(0));
		}
		if (home && path_ok(home)) {
			add_str(p, "home", home);
			/* the diff lists the home directory when one was made */
			json_object_object_add(p, "create_home",
					       json_object_new_boolean(set_has(g->new_dirs, home)));
		}
		if (shell && path_ok(shell))
			add_str(p, "shell", shell);
		if (jbool(e, "system", false))
			json_object_object_add(p, "system", json_object_new_boolean(1));
		add_str(p, "state", "present");
		const char *pw = jstr(e, "password");
		if (pw && !strcmp(pw, "set"))
			skip(g, "item", name, "password hash is not in the diff: set it separately");
	}
	n = uc ? json_object_array_length(uc) : 0;
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(uc, i);
		const char *name = jstr(e, "name");
		struct json_object *ch = jget(e, "changes");
		if (!account_ok(name) || !json_object_is_type(ch, json_type_object)) {
			skip(g, "item", name ? name : "user", "invalid user change");
			continue;
		}
		struct json_object *t = task_add(g, PH_USERS, "ansible.builtin.user", "Update user %s", name);
		struct json_object *p = params_of(t);
		add_str(p, "name", name);
		struct json_object *v;
		if ((v = change_to(ch, "uid")) && json_object_is_type(v, json_type_int))
			json_object_object_add(p, "uid", json_object_get(v));
		if ((v = change_to(ch, "gid")) && json_object_is_type(v, json_type_int)) {
			char gs[24];
			snprintf(gs, sizeof(gs), "%" PRId64, json_object_get_int64(v));
			add_str(p, "group", gs);
		}
		if ((v = change_to(ch, "home")) && json_object_is_type(v, json_type_string) &&
		    path_ok(json_object_get_string(v)))
			add_str(p, "home", json_object_get_string(v));
		if ((v = change_to(ch, "shell")) && json_object_is_type(v, json_type_string) &&
		    path_ok(json_object_get_string(v)))
			add_str(p, "shell", json_object_get_string(v));
		if ((v = change_to(ch, "gecos")) && json_object_is_type(v, json_type_string) &&
		    jstr(jget(ch, "gecos"), "to"))
			add_str(p, "comment", json_object_get_string(v));
		if ((v = change_to(ch, "groups")) && json_object_is_type(v, json_type_array)) {
			json_object_object_add(p, "groups", names_array(g, v, name));
			json_object_object_add(p, "append", json_object_new_boolean(0));
		}
		if (jget(ch, "password"))
			skip(g, "item", name, "password change is not in the diff: set it separately");
		if (json_object_object_length(p) == 1) {
			/* nothing expressible: drop the task again */
			size_t len = json_object_array_length(g->phase[PH_USERS]);
			json_object_array_del_idx(g->phase[PH_USERS], len - 1, 1);
		}
	}
	return 0;
}

static void removals(Gen *g, struct json_object *diff)
{
	struct json_object *ur = jget(diff, "users_removed"), *gr = jget(diff, "groups_removed");
	size_t n = ur ? json_object_array_length(ur) : 0;
	for (size_t i = 0; i < n; i++) {
		const char *name = jstr(json_object_array_get_idx(ur, i), "name");
		if (!account_ok(name)) {
			skip(g, "item", name ? name : "user", "invalid user name");
			continue;
		}
		struct json_object *t = task_add(g, PH_DELETE, "ansible.builtin.user", "Remove user %s", name);
		add_str(params_of(t), "name", name);
		add_str(params_of(t), "state", "absent");
	}
	n = gr ? json_object_array_length(gr) : 0;
	for (size_t i = 0; i < n; i++) {
		const char *name = jstr(json_object_array_get_idx(gr, i), "name");
		if (!account_ok(name)) {
			skip(g, "item", name ? name : "group", "invalid group name");
			continue;
		}
		struct json_object *t =
			task_add(g, PH_DELETE, "ansible.builtin.group", "Remove group %s", name);
		add_str(params_of(t), "name", name);
		add_str(params_of(t), "state", "absent");
	}
}

/* ---- services -------------------------------------------------------- */

static bool startable(const char *unit)
{
	const char *dot = strrchr(unit, '.');
	if (strchr(unit, '@') && dot && dot[-1] == '@')
		return false; /* a template without an instance */
	return !dot || !strcmp(dot, ".service") || !strcmp(dot, ".socket") || !strcmp(dot, ".timer") ||
	       !strcmp(dot, ".path");
}

static int services(Gen *g, struct json_object *arr)
{
	size_t n = arr ? json_object_array_length(arr) : 0;
	/* one daemon-reload, on the first unit task, when unit files changed */
	bool reload_pending = g->units_changed;
	for (size_t i = 0; i < n; i++) {
		const char *state = jstr(json_object_array_get_idx(arr, i), "state");
		if (state && (!strcmp(state, "added") || !strcmp(state, "modified")))
			reload_pending = true;
	}
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(arr, i);
		const char *name = jstr(e, "name"), *state = jstr(e, "state");
		struct json_object *en = jget(e, "enabled");
		bool en_known = en && json_object_is_type(en, json_type_boolean);
		bool enabled = en_known && json_object_get_boolean(en);
		if (!unit_ok(name) || !state) {
			skip(g, "item", name ? name : "service", "invalid unit name or state");
			continue;
		}
		struct json_object *params = json_object_new_object();
		const char *what = NULL;
		if (!strcmp(state, "masked")) {
			json_object_object_add(params, "masked", json_object_new_boolean(1));
			what = "Mask unit %s";
		} else if (!strcmp(state, "unmasked")) {
			json_object_object_add(params, "masked", json_object_new_boolean(0));
			if (en_known)
				json_object_object_add(params, "enabled", json_object_new_boolean(enabled));
			what = "Unmask unit %s";
		} else if (!strcmp(state, "disabled")) {
			json_object_object_add(params, "enabled", json_object_new_boolean(0));
			what = "Disable unit %s";
		} else if (!strcmp(state, "enabled") || !strcmp(state, "added") ||
			   !strcmp(state, "modified")) {
			if (en_known)
				json_object_object_add(params, "enabled", json_object_new_boolean(enabled));
			/* an enabled unit runs after a boot: run it now too */
			if (enabled && startable(name))
				add_str(params, "state", "started");
			what = enabled ? "Enable and start unit %s" : "Configure unit %s";
		} else if (!strcmp(state, "removed")) {
			json_object_put(params);
			continue; /* its file goes with the deletions (then a reload) */
		} else {
			json_object_put(params);
			skip(g, "item", name, "unknown service state");
			continue;
		}
		if (!json_object_object_length(params)) {
			json_object_put(params);
			continue;
		}
		struct json_object *t = task_add(g, PH_SERVICES, "ansible.builtin.systemd", what, name);
		struct json_object *p = params_of(t);
		add_str(p, "name", name);
		json_object_object_foreach(params, k, v) json_object_object_add(p, k, json_object_get(v));
		json_object_put(params);
		if (reload_pending) {
			json_object_object_add(p, "daemon_reload", json_object_new_boolean(1));
			reload_pending = false;
		}
	}
	if (reload_pending) {
		struct json_object *t = task_add(g, PH_SERVICES, "ansible.builtin.systemd",
						 "Reload systemd units%s", "");
		json_object_object_add(params_of(t), "daemon_reload", json_object_new_boolean(1));
	}
	return 0;
}

/* ---- entry point -------------------------------------------------------- */

static void gen_free(Gen *g)
{
	for (int i = 0; i < PH_N; i++)
		json_object_put(g->phase[i]);
	json_object_put(g->files);
	json_object_put(g->skipped);
	json_object_put(g->new_users);
	json_object_put(g->new_dirs);
	json_object_put(g->blobs);
	json_object_put(g->pkg_paths);
}

int fl_ansible_generate(struct json_object *diff, const FlAnsibleGenOptions *opts,
			struct json_object **ret, FlError *err)
{
	static const char *const arrays[] = {
		"files_added",	"files_removed", "files_modified", "packages_added",
		"packages_removed", "packages_upgraded", "services_changed", "users_added",
		"users_removed", "users_changed", "groups_added", "groups_removed",
		"groups_changed", "commands_run", NULL};
	_cleanup_(gen_free) Gen g = {0};

	if (!json_object_is_type(diff, json_type_object))
		return fl_error_set(err, -EINVAL, "diff is not a JSON object");
	for (size_t i = 0; arrays[i]; i++) {
		struct json_object *v = jget(diff, arrays[i]);
		if (v && !json_object_is_type(v, json_type_array))
			return fl_error_set(err, -EINVAL, "diff: %s is not an array", arrays[i]);
		size_t n = v ? json_object_array_length(v) : 0;
		for (size_t k = 0; k < n; k++)
			if (!json_object_is_type(json_object_array_get_idx(v, k), json_type_object) &&
			    strcmp(arrays[i], "commands_run"))
				return fl_error_set(err, -EINVAL, "diff: %s[%zu] is not an object",
						    arrays[i], k);
	}
	for (int i = 0; i < PH_N; i++)
		g.phase[i] = json_object_new_array();
	g.files = json_object_new_array();
	g.skipped = json_object_new_array();
	g.new_users = json_object_new_object();
	g.new_dirs = json_object_new_object();
	g.blobs = json_object_new_object();
	g.pkg_paths = json_object_new_object();

	struct json_object *fa = jget(diff, "files_added"), *fm = jget(diff, "files_modified"),
			   *fr = jget(diff, "files_removed");
	collect_pkg_paths(&g, fa, false);
	collect_pkg_paths(&g, fm, true);
	/* directories first so that users know whether their home was made */
	if (fa)
		files_added(&g, fa);
	groups_users(&g, diff);
	packages(&g, jget(diff, "packages_added"), jget(diff, "packages_removed"),
		 jget(diff, "packages_upgraded"));
	if (fm)
		files_modified(&g, fm);
	if (fr)
		files_removed(&g, fr);
	services(&g, jget(diff, "services_changed"));
	removals(&g, diff);
	/* New APT sources must be read before installing from them: then the
	 * cache is always updated, however fresh it is (an install reports
	 * "changed" only for packages, so a rerun still changes nothing). */
	if (json_object_array_length(g.phase[PH_APT]))
		for (size_t i = 0; i < json_object_array_length(g.phase[PH_PACKAGES]); i++)
			json_object_object_del(params_of(json_object_array_get_idx(g.phase[PH_PACKAGES], i)),
					       "cache_valid_time");
	if (g.units_removed) {
		struct json_object *t = task_add(&g, PH_DELETE, "ansible.builtin.systemd",
						 "Reload systemd units after removals%s", "");
		json_object_object_add(params_of(t), "daemon_reload", json_object_new_boolean(1));
	}

	_cleanup_(json_object_putp) struct json_object *pb = json_object_new_object();
	add_str(pb, "name", opts && opts->name ? opts->name : "Reproduce sandbox changes");
	add_str(pb, "hosts", opts && opts->hosts ? opts->hosts : "all");
	json_object_object_add(pb, "become", json_object_new_boolean(1));
	struct json_object *tasks = json_object_new_array();
	json_object_object_add(pb, "tasks", tasks);
	for (int i = 0; i < PH_N; i++) {
		size_t n = json_object_array_length(g.phase[i]);
		for (size_t k = 0; k < n; k++)
			json_object_array_add(tasks, json_object_get(json_object_array_get_idx(g.phase[i], k)));
	}
	if (json_object_array_length(tasks) > FL_ANSIBLE_MAX_TASKS)
		return fl_error_set(err, -E2BIG, "the diff needs more than %d tasks", FL_ANSIBLE_MAX_TASKS);
	json_object_object_add(pb, "files", json_object_get(g.files));
	json_object_object_add(pb, "skipped", json_object_get(g.skipped));
	json_object_object_add(pb, "flagged", json_object_new_int(g.flagged));
	/* file entries left to the package and account tasks (docs/ansible.md) */
	struct json_object *cov = json_object_new_object();
	json_object_object_add(cov, "package_files", json_object_new_int(g.covered_pkg));
	json_object_object_add(cov, "account_files", json_object_new_int(g.covered_acct));
	json_object_object_add(pb, "covered", cov);
	if (jbool(diff, "truncated", false))
		json_object_object_add(pb, "incomplete", json_object_new_boolean(1));
	*ret = TAKE_PTR(pb);
	return 0;
}

/* ---- tasks written by API callers ------------------------------------ */

/*
 * Modules that act on the target only. Anything that reads or writes the
 * controller (template, fetch, script, include_*, set_fact with lookups,
 * copy with a controller src ...) could reach the appliance's own files
 * when fluid runs the playbook, so it is not accepted.
 */
static const char *const allowed_modules[] = {
	"apt",	   "apt_repository", "blockinfile", "command", "copy",	  "cron",
	"debconf", "file",	     "get_url",	    "git",     "group",	  "hostname",
	"lineinfile", "pip",	     "replace",	    "service", "shell",	  "systemd",
	"systemd_service", "user",   NULL};

static bool ident_ok(const char *s, size_t max, bool upper)
{
	if (!s || !*s || strlen(s) > max || (s[0] >= '0' && s[0] <= '9'))
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' ||
		      (upper && *p >= 'A' && *p <= 'Z')))
			return false;
	return true;
}

/* Jinja conditions without calls, filters, templates or dunder access. */
static bool condition_ok(struct json_object *v)
{
	if (json_object_is_type(v, json_type_boolean))
		return true;
	if (!json_object_is_type(v, json_type_string))
		return false;
	const char *s = json_object_get_string(v);
	if (!*s || strlen(s) > 200 || strstr(s, "__"))
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      strchr("_ .=!<>[],'", *p)))
			return false;
	return true;
}

static int check_value(struct json_object *v, int depth, size_t *nodes, bool in_array, FlError *err)
{
	if (++*nodes > 10000 || depth > 6)
		return fl_error_set(err, -EINVAL, "params too deep or too large");
	switch (json_object_get_type(v)) {
	case json_type_string: {
		size_t len = (size_t)json_object_get_string_len(v);
		const char *s = json_object_get_string(v);
		if (len > (4u << 20) || strlen(s) != len || !text_ok(s, len))
			return fl_error_set(err, -EINVAL, "a string in params is not valid UTF-8 text "
							  "(or larger than 4 MiB)");
		return 0;
	}
	case json_type_array: {
		if (in_array)
			return fl_error_set(err, -EINVAL, "nested lists are not supported in params");
		size_t n = json_object_array_length(v);
		for (size_t i = 0; i < n; i++) {
			int r = check_value(json_object_array_get_idx(v, i), depth + 1, nodes, true, err);
			if (r < 0)
				return r;
		}
		return 0;
	}
	case json_type_object: {
		json_object_object_foreach(v, k, x)
		{
			if (!ident_ok(k, 64, true) || k[0] == '_')
				return fl_error_set(err, -EINVAL, "params key must be [A-Za-z][A-Za-z0-9_]*");
			int r = check_value(x, depth + 1, nodes, false, err);
			if (r < 0)
				return r;
		}
		return 0;
	}
	default:
		return 0;
	}
}

int fl_ansible_task_check(struct json_object *task, struct json_object **ret, FlError *err)
{
	static const char *const keys[] = {"name", "module", "params", "flagged", "note", "register",
					   "changed_when", "failed_when", "environment", NULL};
	if (!json_object_is_type(task, json_type_object))
		return fl_error_set(err, -EINVAL, "a task is a JSON object");
	json_object_object_foreach(task, tk, tv)
	{
		(void)tv;
		bool ok = false;
		for (size_t i = 0; keys[i] && !ok; i++)
			ok = !strcmp(tk, keys[i]);
		if (!ok)
			return fl_error_set(err, -EINVAL, "unknown task field \"%.64s\"", tk);
	}
	const char *name = jstr(task, "name"), *module = jstr(task, "module");
	struct json_object *params = jget(task, "params");
	if (!name || !*name || strlen(name) > 512)
		return fl_error_set(err, -EINVAL, "name is required (UTF-8, at most 512 bytes)");
	for (const char *p = name; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return fl_error_set(err, -EINVAL, "name has control characters");
	if (!module)
		return fl_error_set(err, -EINVAL, "module is required");
	const char *shortm = !strncmp(module, "ansible.builtin.", 16) ? module + 16 : module;
	bool allowed = false;
	for (size_t i = 0; allowed_modules[i] && !allowed; i++)
		allowed = !strcmp(shortm, allowed_modules[i]);
	if (!allowed)
		return fl_error_set(err, -EINVAL,
				    "module \"%.80s\" is not allowed (only ansible.builtin modules that "
				    "act on the target; docs/ansible.md)", module);
	if (!params || !json_object_is_type(params, json_type_object))
		return fl_error_set(err, -EINVAL, "params must be an object");
	size_t nodes = 0;
	int r = check_value(params, 0, &nodes, false, err);
	if (r < 0)
		return r;
	if (!strcmp(shortm, "copy")) {
		const char *src = jstr(params, "src");
		bool remote = jbool(params, "remote_src", false);
		if (jget(params, "src") && !remote &&
		    (!src || strncmp(src, "files/", 6) || !sha_ok(src + 6)))
			return fl_error_set(err, -EINVAL,
					    "copy: src must be files/<sha256> (or remote_src: true)");
	}
	struct json_object *v;
	if ((v = jget(task, "flagged")) && !json_object_is_type(v, json_type_boolean))
		return fl_error_set(err, -EINVAL, "flagged must be a boolean");
	if ((v = jget(task, "note")) &&
	    (!jstr(task, "note") || strlen(jstr(task, "note")) > 1000))
		return fl_error_set(err, -EINVAL, "note must be a string of at most 1000 bytes");
	if ((v = jget(task, "register")) && !ident_ok(jstr(task, "register"), 64, false))
		return fl_error_set(err, -EINVAL, "register must be [a-z_][a-z0-9_]*");
	if ((v = jget(task, "changed_when")) && !condition_ok(v))
		return fl_error_set(err, -EINVAL, "changed_when: a boolean or a plain comparison "
						  "(no calls, filters or templates)");
	if ((v = jget(task, "failed_when")) && !condition_ok(v))
		return fl_error_set(err, -EINVAL, "failed_when: a boolean or a plain comparison "
						  "(no calls, filters or templates)");
	if ((v = jget(task, "environment"))) {
		if (!json_object_is_type(v, json_type_object))
			return fl_error_set(err, -EINVAL, "environment must be an object of strings");
		json_object_object_foreach(v, ek, ev)
		{
			if (!ident_ok(ek, 64, true) || !json_object_is_type(ev, json_type_string) ||
			    check_value(ev, 0, &nodes, false, err) < 0)
				return fl_error_set(err, -EINVAL,
						    "environment must map NAME to UTF-8 strings");
		}
	}

	_cleanup_(json_object_putp) struct json_object *out = json_object_new_object();
	add_str(out, "name", name);
	char fq[96];
	snprintf(fq, sizeof(fq), "ansible.builtin.%s", shortm);
	add_str(out, "module", fq);
	json_object_object_add(out, "params", json_object_get(params));
	json_object_object_add(out, "flagged", json_object_new_boolean(jbool(task, "flagged", false)));
	static const char *const copy_keys[] = {"note", "register", "changed_when", "failed_when",
						"environment", NULL};
	for (size_t i = 0; copy_keys[i]; i++)
		if ((v = jget(task, copy_keys[i])))
			json_object_object_add(out, copy_keys[i], json_object_get(v));
	*ret = TAKE_PTR(out);
	return 0;
}

bool fl_ansible_name_valid(const char *name)
{
	if (!name || !*name || strlen(name) > FL_ANSIBLE_NAME_MAX || !strcmp(name, ".") ||
	    !strcmp(name, ".."))
		return false;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      *p == '.' || *p == '_' || *p == '-'))
			return false;
	return true;
}
