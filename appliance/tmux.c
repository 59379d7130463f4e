// SPDX-License-Identifier: MIT
/*
 * tmux: tmux in a sandbox's guest through the agent (tmux.h,
 * docs/terminal.md).
 *
 * DESIGN: one agent exec of argv ["tmux", ...] per call (no shell in
 * between), several tmux commands joined with tmux's own ";" separator
 * when a call needs more than one (under TCG every fork+exec in the guest
 * costs tens of milliseconds, so the common paths are one exec each). tmux
 * ends a command at any argument ending in ';' (and turns a trailing "\;"
 * into ';'), so every caller-supplied argument that ends in ';' gets a
 * backslash before it: user text cannot start a second tmux command.
 * Each call is an engine "exec" stream read on the caller's thread, with a
 * host-side timeout (the guest's clock is not trusted to time anything);
 * stdout is kept up to a cap, stderr up to 511 bytes. The
 * guest is hostile: list output is parsed field by field with fixed
 * counts, numbers strictly, strings cleaned to printable UTF-8 and capped,
 * malformed lines dropped, sessions and panes counted against caps.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "engine-service.h"
#include "fsutil.h"
#include "tmux.h"

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)

const char FL_TMUX_SEP[] = ";";

#define TMUX_TIMEOUT_MS 20000
#define TMUX_MAX_ARGS 64
#define LIST_MAX_SESSIONS 256
#define LIST_MAX_PANES 4096
#define LIST_MAX_STR 256

bool fl_tmux_session_name_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > FL_TMUX_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
			return false;
	return true;
}

/* [0-9]{1,6} from p to end; advances *p. */
static bool take_index(const char **p, const char *end)
{
	const char *s = *p;
	size_t n = 0;
	while (s + n < end && s[n] >= '0' && s[n] <= '9')
		n++;
	if (n == 0 || n > 6)
		return false;
	*p = s + n;
	return true;
}

int fl_tmux_pane_target(const char *pane, char out[FL_TMUX_PANE_MAX + 8],
			char ret_session[FL_TMUX_NAME_MAX + 1])
{
	size_t n = pane ? strlen(pane) : 0;
	if (n == 0 || n > FL_TMUX_PANE_MAX)
		return -EINVAL;
	const char *end = pane + n, *p = pane;
	if (pane[0] == '%') {
		p++;
		if (!take_index(&p, end) || p != end)
			return -EINVAL;
		snprintf(out, FL_TMUX_PANE_MAX + 8, "%s", pane);
		if (ret_session)
			ret_session[0] = 0;
		return 0;
	}
	const char *colon = memchr(pane, ':', n);
	size_t sl = colon ? (size_t)(colon - pane) : n;
	char sess[FL_TMUX_NAME_MAX + 1];
	if (sl == 0 || sl > FL_TMUX_NAME_MAX)
		return -EINVAL;
	memcpy(sess, pane, sl);
	sess[sl] = 0;
	if (!fl_tmux_session_name_ok(sess))
		return -EINVAL;
	if (colon) {
		p = colon + 1;
		if (!take_index(&p, end))
			return -EINVAL;
		if (p < end) {
			if (*p++ != '.' || !take_index(&p, end) || p != end)
				return -EINVAL;
		}
		snprintf(out, FL_TMUX_PANE_MAX + 8, "=%s", pane);
	} else {
		/* "=SESSION:" is the session's current window and active pane */
		snprintf(out, FL_TMUX_PANE_MAX + 8, "=%s:", sess);
	}
	if (ret_session)
		snprintf(ret_session, FL_TMUX_NAME_MAX + 1, "%s", sess);
	return 0;
}

void fl_tmux_result_clear(FlTmuxResult *r)
{
	if (!r)
		return;
	free(r->out);
	memset(r, 0, sizeof(*r));
}

typedef struct Capture {
	FlTmuxResult *res;
	size_t cap, alloc;
	size_t err_len;
	bool oom;
} Capture;

static void capture_out(int stream, const void *buf, size_t len, void *ud)
{
	Capture *c = ud;
	FlTmuxResult *r = c->res;
	if (stream == 2) {
		size_t room = sizeof(r->err) - 1 - c->err_len;
		size_t n = len < room ? len : room;
		memcpy(r->err + c->err_len, buf, n);
		c->err_len += n;
		r->err[c->err_len] = 0;
		return;
	}
	if (r->out_len >= c->cap || c->oom) {
		r->out_truncated = r->out_truncated || len > 0;
		return;
	}
	size_t n = len;
	if (n > c->cap - r->out_len) {
		n = c->cap - r->out_len;
		r->out_truncated = true;
	}
	if (r->out_len + n + 1 > c->alloc) {
		size_t a = c->alloc ? c->alloc : 4096;
		while (a < r->out_len + n + 1)
			a *= 2;
		char *p = realloc(r->out, a);
		if (!p) {
			c->oom = true;
			return;
		}
		r->out = p;
		c->alloc = a;
	}
	memcpy(r->out + r->out_len, buf, n);
	r->out_len += n;
	r->out[r->out_len] = 0;
}

int fl_tmux_run(FlEngine *e, const char *sandbox_id, const char *const *args, size_t out_cap,
		FlTmuxResult *ret, FlError *err)
{
	const char *argv[TMUX_MAX_ARGS + 2];
	char *owned[TMUX_MAX_ARGS] = {0};
	struct json_object *res = NULL;
	size_t n = 0, n_owned = 0;
	int r;

	memset(ret, 0, sizeof(*ret));
	ret->exit_code = -1;
	argv[n++] = "tmux";
	for (size_t i = 0; args[i]; i++) {
		if (n > TMUX_MAX_ARGS) {
			r = fl_error_set(err, -E2BIG, "too many tmux arguments");
			goto out;
		}
		const char *a = args[i];
		size_t l = strlen(a);
		if (a == FL_TMUX_SEP) {
			argv[n++] = ";";
		} else if (l > 0 && a[l - 1] == ';') {
			char *c = malloc(l + 2);
			if (!c) {
				r = fl_error_set(err, -ENOMEM, "out of memory");
				goto out;
			}
			memcpy(c, a, l - 1);
			memcpy(c + l - 1, "\\;", 3);
			owned[n_owned++] = c;
			argv[n++] = c;
		} else {
			argv[n++] = a;
		}
	}
	argv[n] = NULL;

	Capture cap = {.res = ret, .cap = out_cap ? out_cap : FL_TMUX_OUT_MAX};
	FlExecSpec spec = {.argv = argv};
	/* The timeout is the host's: a guest's clock can run fast (a TSC
	 * calibrated under load), and a guest-side timeout would then fire
	 * early. The agent kills the process group when the host cancels. */
	FlStreamSpec ss = {.op = "exec", .exec = &spec, .timeout_ms = TMUX_TIMEOUT_MS};
	FlStream *st = NULL;
	r = fl_engine_stream_open(e, sandbox_id, &ss, &st, err);
	if (r < 0)
		goto out;
	int fd = fl_stream_out_fd(st);
	char buf[16384];
	for (;;) {
		unsigned char hdr[5];
		int k = fl_read_full(fd, hdr, sizeof(hdr));
		if (k <= 0)
			break;
		uint32_t len = (uint32_t)hdr[1] | (uint32_t)hdr[2] << 8 | (uint32_t)hdr[3] << 16 |
			       (uint32_t)hdr[4] << 24;
		while (len > 0) {
			size_t n = len < sizeof(buf) ? len : sizeof(buf);
			if (fl_read_full(fd, buf, n) <= 0) {
				len = UINT32_MAX;
				break;
			}
			capture_out(hdr[0], buf, n, &cap);
			len -= (uint32_t)n;
		}
		if (len == UINT32_MAX)
			break;
	}
	r = fl_stream_finish(st, &res, err);
	if (r < 0) {
		/* the agent names the failed stage: "execve tmux: ..." */
		if (r == -ENOENT && strstr(err->msg, "tmux"))
			r = fl_error_set(err, -EOPNOTSUPP, "this sandbox's image has no tmux");
		else if (r == -ETIMEDOUT)
			r = fl_error_set(err, -ETIMEDOUT, "tmux did not answer within %d s",
					 TMUX_TIMEOUT_MS / 1000);
		goto out;
	}
	if (cap.oom) {
		r = fl_error_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	struct json_object *v;
	bool has_exit = json_object_object_get_ex(res, "exit_code", &v) &&
			json_object_is_type(v, json_type_int);
	ret->exit_code = has_exit ? json_object_get_int(v) : -1;
	if (!ret->out) {
		ret->out = strdup("");
		if (!ret->out) {
			r = fl_error_set(err, -ENOMEM, "out of memory");
			goto out;
		}
	}
	/* stderr is shown in error messages: printable only */
	for (char *p = ret->err; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f ||
		    (unsigned char)*p >= 0x80)
			*p = *p == '\n' && !p[1] ? 0 : ' ';
	r = 0;
out:
	json_object_put(res);
	for (size_t i = 0; i < n_owned; i++)
		free(owned[i]);
	if (r < 0) {
		free(ret->out);
		ret->out = NULL;
	}
	return r;
}

bool fl_tmux_missing_session(const FlTmuxResult *res)
{
	return !strncmp(res->err, "can't find session", 18) ||
	       !strncmp(res->err, "no server running", 17) ||
	       !strncmp(res->err, "error connecting to", 19) ||
	       !strncmp(res->err, "no current session", 18);
}

int fl_tmux_error(const FlTmuxResult *res, FlError *err)
{
	const char *m = res->err[0] ? res->err : "tmux failed";
	if (!strncmp(m, "no server running", 17) || !strncmp(m, "error connecting to", 19))
		return fl_error_set(err, -ENOENT,
				    "no tmux server runs in the sandbox (no session yet)");
	if (!strncmp(m, "can't find ", 11) || !strncmp(m, "no current session", 18))
		return fl_error_set(err, -ENOENT, "tmux: %.200s", m);
	if (!strncmp(m, "duplicate session", 17))
		return fl_error_set(err, -EEXIST, "tmux: %.200s", m);
	if (!strncmp(m, "unknown ", 8) || !strncmp(m, "invalid ", 8) || !strncmp(m, "usage:", 6) ||
	    !strncmp(m, "command ", 8))
		return fl_error_set(err, -EINVAL, "tmux: %.200s", m);
	return fl_error_set(err, -EIO, "tmux (exit %d): %.200s", res->exit_code, m);
}

/* new-session's arguments; cols/rows are the caller's buffers. */
static int session_args(const char **args, size_t max, const char *name, const char *command,
			const char *const *command_argv, char cols[16], char rows[16], FlError *err)
{
	size_t n = 0;
	snprintf(cols, 16, "%d", FL_TMUX_DEFAULT_COLS);
	snprintf(rows, 16, "%d", FL_TMUX_DEFAULT_ROWS);
	args[n++] = "new-session";
	args[n++] = "-d";
	if (name) {
		args[n++] = "-s";
		args[n++] = name;
	}
	args[n++] = "-x";
	args[n++] = cols;
	args[n++] = "-y";
	args[n++] = rows;
	if (command || command_argv)
		args[n++] = "--";
	if (command)
		args[n++] = command;
	for (size_t i = 0; command_argv && command_argv[i]; i++) {
		if (n >= max)
			return fl_error_set(err, -E2BIG, "command: too many arguments");
		args[n++] = command_argv[i];
	}
	return (int)n;
}

int fl_tmux_ensure_session(FlEngine *e, const char *sandbox_id, const char *name,
			   const char *command, const char *const *command_argv, FlError *err)
{
	char cols[16], rows[16];
	const char *args[TMUX_MAX_ARGS + 1];
	if (!fl_tmux_session_name_ok(name))
		return fl_error_set(err, -EINVAL, "invalid tmux session name");
	int n = session_args(args, TMUX_MAX_ARGS, name, command, command_argv, cols, rows, err);
	if (n < 0)
		return n;
	args[n] = NULL;
	FlTmuxResult res;
	int r = fl_tmux_run(e, sandbox_id, args, 4096, &res, err);
	if (r < 0)
		return r;
	if (res.exit_code == 0)
		r = 0;
	else if (!strncmp(res.err, "duplicate session", 17))
		r = 1;
	else
		r = fl_tmux_error(&res, err);
	fl_tmux_result_clear(&res);
	return r;
}

/* ---- listing ---------------------------------------------------------------- */

struct json_object *fl_tmux_text_json(const char *p, size_t len)
{
	_cleanup_free_ char *out = malloc(len * 3 + 1);
	size_t o = 0, i = 0;
	if (!out)
		return NULL;
	while (i < len) {
		unsigned char c = (unsigned char)p[i];
		size_t k = c < 0x80		? 1
			   : (c & 0xe0) == 0xc0 ? 2
			   : (c & 0xf0) == 0xe0 ? 3
			   : (c & 0xf8) == 0xf0 ? 4
						: 0;
		bool ok = k > 0 && i + k <= len;
		uint32_t cp = k == 1 ? c : k == 2 ? c & 0x1f : k == 3 ? c & 0x0f : c & 0x07;
		for (size_t j = 1; ok && j < k; j++) {
			ok = ((unsigned char)p[i + j] & 0xc0) == 0x80;
			cp = cp << 6 | ((unsigned char)p[i + j] & 0x3f);
		}
		if (ok &&
		    ((k == 2 && cp < 0x80) || (k == 3 && cp < 0x800) || (k == 4 && cp < 0x10000) ||
		     cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)))
			ok = false;
		if (!ok) {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
			continue;
		}
		if (c != 0) {
			memcpy(out + o, p + i, k);
			o += k;
		}
		i += k;
	}
	return json_object_new_string_len(out, (int)o);
}

static const char SESSION_FMT[] =
	"S\t#{session_created}\t#{session_windows}\t#{session_attached}\t#{session_name}";
static const char PANE_FMT[] = "P\t#{pane_id}\t#{window_index}\t#{pane_index}\t#{pane_active}\t"
			       "#{window_active}\t#{pane_width}\t#{pane_height}\t#{session_name}\t"
			       "#{pane_current_command}";

/* Strict decimal in [0, max]. */
static bool num(const char *s, long long max, long long *ret)
{
	if (!*s || strlen(s) > 18)
		return false;
	long long v = 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		v = v * 10 + (*s - '0');
	}
	if (v > max)
		return false;
	*ret = v;
	return true;
}

/* A JSON string of guest text: printable UTF-8 only (others become '?'), capped. */
static struct json_object *clean_string(const char *s)
{
	char buf[LIST_MAX_STR * 4 + 1];
	size_t o = 0, i = 0, len = strlen(s);
	while (i < len && o + 4 < sizeof(buf)) {
		unsigned char c = (unsigned char)s[i];
		size_t k = c < 0x80		? 1
			   : (c & 0xe0) == 0xc0 ? 2
			   : (c & 0xf0) == 0xe0 ? 3
			   : (c & 0xf8) == 0xf0 ? 4
						: 0;
		bool ok = k > 0 && i + k <= len;
		for (size_t j = 1; ok && j < k; j++)
			ok = ((unsigned char)s[i + j] & 0xc0) == 0x80;
		if (ok && k == 2 && c < 0xc2)
			ok = false; /* overlong */
		if (!ok || (k == 1 && (c < 0x20 || c == 0x7f))) {
			buf[o++] = '?';
			i++;
			continue;
		}
		memcpy(buf + o, s + i, k);
		o += k;
		i += k;
	}
	buf[o] = 0;
	return json_object_new_string(buf);
}

/* Splits line in place into exactly n tab-separated fields (the last takes the rest). */
static bool split(char *line, char **f, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		f[i] = line;
		if (i == n - 1)
			break;
		char *t = strchr(line, '\t');
		if (!t)
			return false;
		*t = 0;
		line = t + 1;
	}
	return true;
}

static struct json_object *find_session(struct json_object *arr, const char *name)
{
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		struct json_object *s = json_object_array_get_idx(arr, i), *v;
		if (json_object_object_get_ex(s, "name", &v) &&
		    !strcmp(json_object_get_string(v), name))
			return s;
	}
	return NULL;
}

struct json_object *fl_tmux_parse_list(const char *out, size_t len, const char *only)
{
	struct json_object *arr = json_object_new_array();
	_cleanup_free_ char *copy = strndup(out, len);
	size_t n_panes = 0;
	if (!arr || !copy) {
		json_object_put(arr);
		return NULL;
	}
	char *save = NULL;
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *f[10];
		long long a, b, c, d, w, h;
		if (line[0] == 'S' && line[1] == '\t') {
			if (!split(line + 2, f, 4) || !num(f[0], INT64_MAX / 2, &a) ||
			    !num(f[1], 1000000, &b) || !num(f[2], 1000000, &c) || !*f[3] ||
			    strlen(f[3]) > LIST_MAX_STR || (only && strcmp(f[3], only)) ||
			    json_object_array_length(arr) >= LIST_MAX_SESSIONS ||
			    find_session(arr, f[3]))
				continue;
			struct json_object *s = json_object_new_object();
			json_object_object_add(s, "name", clean_string(f[3]));
			json_object_object_add(s, "windows", json_object_new_int((int)b));
			json_object_object_add(s, "attached", json_object_new_int((int)c));
			json_object_object_add(s, "created_at", fl_api_time_json(a));
			json_object_object_add(s, "panes", json_object_new_array());
			json_object_array_add(arr, s);
		} else if (line[0] == 'P' && line[1] == '\t') {
			long long id;
			if (!split(line + 2, f, 9) || f[0][0] != '%' ||
			    !num(f[0] + 1, 999999999, &id) || !num(f[1], 1000000, &a) ||
			    !num(f[2], 1000000, &b) || !num(f[3], 1, &c) || !num(f[4], 1, &d) ||
			    !num(f[5], 100000, &w) || !num(f[6], 100000, &h) ||
			    n_panes >= LIST_MAX_PANES)
				continue;
			/* sessions come first in the output: a pane of an unlisted one is dropped
			 */
			struct json_object *s = find_session(arr, f[7]), *panes;
			if (!s || !json_object_object_get_ex(s, "panes", &panes))
				continue;
			struct json_object *p = json_object_new_object();
			json_object_object_add(p, "pane_id", json_object_new_string(f[0]));
			json_object_object_add(p, "session", clean_string(f[7]));
			json_object_object_add(p, "window", json_object_new_int((int)a));
			json_object_object_add(p, "index", json_object_new_int((int)b));
			json_object_object_add(p, "active", json_object_new_boolean(c == 1));
			json_object_object_add(p, "window_active", json_object_new_boolean(d == 1));
			json_object_object_add(p, "command", clean_string(f[8]));
			json_object_object_add(p, "width", json_object_new_int((int)w));
			json_object_object_add(p, "height", json_object_new_int((int)h));
			json_object_array_add(panes, p);
			n_panes++;
		}
	}
	return arr;
}

int fl_tmux_create(FlEngine *e, const char *sandbox_id, const char *name, const char *command,
		   const char *const *command_argv, struct json_object **ret_session, FlError *err)
{
	char cols[16], rows[16];
	const char *args[TMUX_MAX_ARGS + 1];
	if (name && !fl_tmux_session_name_ok(name))
		return fl_error_set(err, -EINVAL, "invalid tmux session name");
	int n = session_args(args, TMUX_MAX_ARGS - 12, name, command, command_argv, cols, rows,
			     err);
	if (n < 0)
		return n;
	/* -P -F go before "--" and the command */
	size_t at = 0;
	while (at < (size_t)n && strcmp(args[at], "--"))
		at++;
	memmove(args + at + 3, args + at, ((size_t)n - at) * sizeof(*args));
	args[at] = "-P";
	args[at + 1] = "-F";
	args[at + 2] = "N\t#{session_name}";
	n += 3;
	const char *tail[] = {
		FL_TMUX_SEP, "list-sessions", "-F", SESSION_FMT, FL_TMUX_SEP, "list-panes", "-a",
		"-F",	     PANE_FMT,	      NULL};
	for (size_t i = 0; tail[i]; i++)
		args[n++] = tail[i];
	args[n] = NULL;
	FlTmuxResult res;
	int r = fl_tmux_run(e, sandbox_id, args, 0, &res, err);
	if (r < 0)
		return r;
	if (res.exit_code != 0) {
		r = fl_tmux_error(&res, err);
		fl_tmux_result_clear(&res);
		return r;
	}
	/* the new session's name: the "N<TAB>name" line new-session printed */
	char created[FL_TMUX_NAME_MAX + 1] = "";
	if (!strncmp(res.out, "N\t", 2)) {
		size_t l = strcspn(res.out + 2, "\n");
		if (l <= FL_TMUX_NAME_MAX) {
			memcpy(created, res.out + 2, l);
			created[l] = 0;
		}
	}
	if (!created[0]) {
		fl_tmux_result_clear(&res);
		return fl_error_set(err, -EIO, "tmux did not report the new session");
	}
	_cleanup_(json_object_putp) struct json_object *arr =
		fl_tmux_parse_list(res.out, res.out_len, created);
	fl_tmux_result_clear(&res);
	if (!arr || json_object_array_length(arr) != 1)
		return fl_error_set(err, -EIO, "tmux did not list the new session %s", created);
	*ret_session = json_object_get(json_object_array_get_idx(arr, 0));
	return 0;
}

int fl_tmux_list(FlEngine *e, const char *sandbox_id, const char *only, struct json_object **ret,
		 FlError *err)
{
	const char *args[] = {
		"list-sessions", "-F", SESSION_FMT, FL_TMUX_SEP, "list-panes", "-a", "-F",
		PANE_FMT,	 NULL};
	FlTmuxResult res;
	int r = fl_tmux_run(e, sandbox_id, args, 0, &res, err);
	if (r < 0)
		return r;
	if (res.exit_code != 0 && !strncmp(res.err, "no server running", 17)) {
		r = 0; /* no server: no sessions */
	} else if (res.exit_code != 0 && !strncmp(res.err, "error connecting to", 19)) {
		r = 0;
	} else if (res.exit_code != 0) {
		r = fl_tmux_error(&res, err);
	}
	if (r == 0) {
		*ret = res.exit_code == 0 ? fl_tmux_parse_list(res.out, res.out_len, only)
					  : json_object_new_array();
		if (!*ret)
			r = fl_error_set(err, -ENOMEM, "out of memory");
	}
	fl_tmux_result_clear(&res);
	return r;
}
