// SPDX-License-Identifier: MIT
/*
 * api-commands: running commands in a sandbox and their records.
 *
 *   POST /v1/sandboxes/{id}/run        fluid.sh: {command*, user?, timeout_sec?, env?}
 *                                      -> {"command": Command}
 *   POST /v1/sandboxes/{id}/command    product README: the same, with the
 *                                      result's exit_code/stdout/stderr also at top level
 *   POST /v1/sandboxes/{id}/exec       streaming: Accept: application/x-ndjson gives
 *                                      {"stream","data"} lines as produced, then
 *                                      {"exit_code", ...}; otherwise like /run
 *   GET  /v1/sandboxes/{id}/commands   {"commands", "total"} (limit/offset)
 *   GET  /v1/sandboxes/{id}/commands/{cid}          one Command
 *   GET  /v1/sandboxes/{id}/commands/{cid}/output   full raw output (?stream=stdout|stderr)
 *   /v1/sandboxes/{id}/processes[...]  background processes (agent bg_* ops)
 *
 * DESIGN: every command runs as an engine "exec" stream read on the
 * handler thread (civetweb has a worker per request, so a long command
 * blocks nobody else). Its full stdout/stderr go to
 * STATE/sandboxes/<id>/commands/<cid>.{out,err} (removed with the sandbox)
 * while a SHA-256 of each stream is computed on the fly; the record keeps
 * the first 64 KiB of each, the sizes and the hashes. Records go to
 * PostgreSQL when the database service is running (app->db), else to
 * <cid>.json next to the output. Output chunks are also published as live
 * events (command.start/output/end). Before anything reaches the guest the
 * sandbox's safety policy decides (api-policies.h: deny 403, approval waits
 * for a reviewer) and bounds the timeout and the output kept.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <dirent.h>
#include <civetweb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "api-policies.h"
#include "base64.h"
#include "cleanup.h"
#include "db.h"
#include "engine-service.h"
#include "fsutil.h"
#include "log.h"
#include "state.h"

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)
FL_DEFINE_CLEANUP(DIR *, closedir)

#define OUTPUT_CAP (64u * 1024)
#define DEFAULT_TIMEOUT_SEC 600
#define MAX_TIMEOUT_SEC 86400
#define MAX_ENV 256
#define MAX_ARGV 4096

/* ---- SHA-256 (FIPS 180-4) ------------------------------------------------ */


/* ---- text encoding ---------------------------------------------------------- */

/* Length of the longest valid UTF-8 prefix of p; *incomplete gets the number
 * of trailing bytes that start a sequence cut by the end of the buffer. */
static size_t utf8_valid_prefix(const unsigned char *p, size_t len, size_t *incomplete)
{
	size_t i = 0;
	*incomplete = 0;
	while (i < len) {
		unsigned char c = p[i];
		size_t n;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			n = 2, cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			n = 3, cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			n = 4, cp = c & 0x07;
		} else {
			return i;
		}
		if (i + n > len) {
			for (size_t k = i + 1; k < len; k++)
				if ((p[k] & 0xc0) != 0x80)
					return i;
			*incomplete = len - i;
			return i;
		}
		for (size_t k = 1; k < n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return i;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return i;
		i += n;
	}
	return i;
}

/* A JSON string of bytes for a record: invalid UTF-8 (and NUL) become U+FFFD. */
static struct json_object *lossy_string(const char *p, size_t len)
{
	_cleanup_free_ char *out = malloc(len * 3 + 1);
	size_t o = 0, i = 0;
	if (!out)
		return NULL;
	while (i < len) {
		size_t inc, n = utf8_valid_prefix((const unsigned char *)p + i, len - i, &inc);
		for (size_t k = 0; k < n; k++)
			if (p[i + k])
				out[o++] = p[i + k];
			else
				o += (size_t)sprintf(out + o, "\xef\xbf\xbd");
		i += n;
		if (i < len) {
			o += (size_t)sprintf(out + o, "\xef\xbf\xbd");
			i += inc ? inc : 1;
		}
	}
	return json_object_new_string_len(out, (int)o);
}

/* ---- request parsing ------------------------------------------------------- */

typedef struct ExecReq {
	const char *command;          /* shell command, or NULL with argv */
	const char **argv;            /* NULL-terminated, owned array of borrowed strings */
	const char **env;             /* "K=V", NULL-terminated */
	char **env_owned;
	size_t n_env;
	const char *user, *cwd;
	const char *stdin_data;
	size_t stdin_len;
	uint64_t timeout_sec;
	struct json_object *env_json; /* borrowed from the body */
	char display[4096];           /* the command line as recorded */
} ExecReq;

static void exec_req_clear(ExecReq *x)
{
	free(x->argv);
	for (size_t i = 0; i < x->n_env; i++)
		free(x->env_owned[i]);
	free(x->env_owned);
	free(x->env);
}

static bool env_key_ok(const char *k)
{
	size_t n = strlen(k);
	if (n == 0 || n > 128 || (k[0] >= '0' && k[0] <= '9'))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((k[i] >= 'A' && k[i] <= 'Z') || (k[i] >= 'a' && k[i] <= 'z') ||
		      (k[i] >= '0' && k[i] <= '9') || k[i] == '_'))
			return false;
	return true;
}

static int add_env(FlHttpReq *req, ExecReq *x, const char *k, size_t klen, const char *v)
{
	char key[130];
	if (klen >= sizeof(key))
		return fl_http_fail(req, -EINVAL, "env: invalid variable name");
	memcpy(key, k, klen);
	key[klen] = 0;
	if (!env_key_ok(key))
		return fl_http_fail(req, -EINVAL, "env: invalid variable name '%.64s'", key);
	if (strlen(v) > 32768)
		return fl_http_fail(req, -EINVAL, "env: value of %s longer than 32768 bytes", key);
	if (x->n_env >= MAX_ENV)
		return fl_http_fail(req, -EINVAL, "env: more than %d variables", MAX_ENV);
	if (asprintf(&x->env_owned[x->n_env], "%s=%s", key, v) < 0)
		return fl_http_fail(req, -ENOMEM, "out of memory");
	x->env[x->n_env] = x->env_owned[x->n_env];
	x->n_env++;
	return 0;
}

static int parse_exec(FlHttpReq *req, struct json_object *body, ExecReq *x)
{
	static const char *const allowed[] = {"command", "argv", "user", "timeout_sec", "env",
					      "cwd", "stdin", NULL};
	int r;
	struct json_object *v;
	memset(x, 0, sizeof(*x));
	x->timeout_sec = DEFAULT_TIMEOUT_SEC;
	if ((r = fl_json_reject_unknown(body, allowed, &req->err)) < 0 ||
	    (r = fl_json_get_string(body, "command", false, 65536, &x->command, &req->err)) < 0 ||
	    (r = fl_json_get_string(body, "user", false, 64, &x->user, &req->err)) < 0 ||
	    (r = fl_json_get_string(body, "cwd", false, 4095, &x->cwd, &req->err)) < 0 ||
	    (r = fl_json_get_uint(body, "timeout_sec", false, 0, MAX_TIMEOUT_SEC, &x->timeout_sec,
				  &req->err)) < 0)
		return r;
	if (x->user && !fl_api_name_ok(x->user, 64))
		return fl_http_fail(req, -EINVAL, "user must be a user name or uid");
	if (x->cwd && x->cwd[0] != '/')
		return fl_http_fail(req, -EINVAL, "cwd must be an absolute path");
	if (json_object_object_get_ex(body, "stdin", &v) && v) {
		if (!json_object_is_type(v, json_type_string))
			return fl_http_fail(req, -EINVAL, "field 'stdin' must be a string");
		x->stdin_data = json_object_get_string(v);
		x->stdin_len = (size_t)json_object_get_string_len(v);
	}
	if (json_object_object_get_ex(body, "argv", &v) && v) {
		if (x->command)
			return fl_http_fail(req, -EINVAL, "give either 'command' or 'argv', not both");
		if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) == 0 ||
		    json_object_array_length(v) > MAX_ARGV)
			return fl_http_fail(req, -EINVAL,
					    "field 'argv' must be a non-empty array of strings");
		size_t n = json_object_array_length(v), off = 0;
		x->argv = calloc(n + 1, sizeof(*x->argv));
		if (!x->argv)
			return fl_http_fail(req, -ENOMEM, "out of memory");
		for (size_t i = 0; i < n; i++) {
			struct json_object *a = json_object_array_get_idx(v, i);
			if (!json_object_is_type(a, json_type_string) ||
			    strlen(json_object_get_string(a)) != (size_t)json_object_get_string_len(a))
				return fl_http_fail(req, -EINVAL, "field 'argv' must be an array of strings");
			x->argv[i] = json_object_get_string(a);
			off += (size_t)snprintf(x->display + (off < sizeof(x->display) ? off : sizeof(x->display) - 1),
						off < sizeof(x->display) ? sizeof(x->display) - off : 1,
						"%s%s", i ? " " : "", x->argv[i]);
		}
	} else if (!x->command) {
		return fl_http_fail(req, -EINVAL, "missing field 'command'");
	} else {
		if (!x->command[0])
			return fl_http_fail(req, -EINVAL, "field 'command' must not be empty");
		snprintf(x->display, sizeof(x->display), "%s", x->command);
	}
	if (json_object_object_get_ex(body, "env", &v) && v) {
		x->env_json = v;
		size_t n;
		if (json_object_is_type(v, json_type_object))
			n = (size_t)json_object_object_length(v);
		else if (json_object_is_type(v, json_type_array))
			n = json_object_array_length(v);
		else
			return fl_http_fail(req, -EINVAL,
					    "field 'env' must be an object of strings or an array of \"K=V\"");
		if (n > MAX_ENV)
			return fl_http_fail(req, -EINVAL, "env: more than %d variables", MAX_ENV);
		x->env = calloc(n + 1, sizeof(*x->env));
		x->env_owned = calloc(n + 1, sizeof(*x->env_owned));
		if (!x->env || !x->env_owned)
			return fl_http_fail(req, -ENOMEM, "out of memory");
		if (json_object_is_type(v, json_type_object)) {
			json_object_object_foreach(v, key, val)
			{
				if (!json_object_is_type(val, json_type_string))
					return fl_http_fail(req, -EINVAL, "env: value of %.64s must be a string", key);
				if ((r = add_env(req, x, key, strlen(key), json_object_get_string(val))) < 0)
					return r;
			}
		} else {
			for (size_t i = 0; i < n; i++) {
				struct json_object *a = json_object_array_get_idx(v, i);
				const char *kv = json_object_is_type(a, json_type_string) ? json_object_get_string(a) : NULL;
				const char *eq = kv ? strchr(kv, '=') : NULL;
				if (!eq)
					return fl_http_fail(req, -EINVAL, "env: entries must be \"K=V\" strings");
				if ((r = add_env(req, x, kv, (size_t)(eq - kv), eq + 1)) < 0)
					return r;
			}
		}
	}
	return 0;
}

/* ---- command records ---------------------------------------------------- */

typedef struct StreamAcc {
	FlSha256 sha;
	uint64_t total;
	char *kept;
	size_t kept_len;
	int fd;
	unsigned char carry[4]; /* ndjson: bytes of a UTF-8 sequence cut by a chunk */
	size_t carry_len;
} StreamAcc;

typedef struct Run {
	FlHttpReq *req;
	char sandbox_id[64];
	char cmd_id[FL_DB_ID_MAX];
	char dir[PATH_MAX];
	bool db;
	bool ndjson;
	bool client_gone;
	int64_t started_ms, ended_ms;
	StreamAcc s[2];
	int exit_code, signal;
	bool timed_out, has_exit;
	char error[256];
	uint64_t keep; /* output bytes kept per stream (record and file); 0 = all */
} Run;

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct json_object *time_ms_json(int64_t ms)
{
	char buf[40], base[32];
	if (ms <= 0)
		return NULL;
	fl_api_time(ms / 1000, base);
	base[strlen(base) - 1] = 0; /* drop the Z */
	snprintf(buf, sizeof(buf), "%s.%03dZ", base, (int)(ms % 1000));
	return json_object_new_string(buf);
}

static void random_id(char *buf, size_t len)
{
	unsigned char raw[8];
	if (getrandom(raw, sizeof(raw), 0) != sizeof(raw))
		memset(raw, 0, sizeof(raw));
	snprintf(buf, len, "cmd-%02x%02x%02x%02x%02x%02x%02x%02x", raw[0], raw[1], raw[2], raw[3],
		 raw[4], raw[5], raw[6], raw[7]);
}

static FlAuditEvent audit_ev(FlHttpReq *req, const char *action, const char *sandbox_id,
			     struct json_object *details)
{
	return (FlAuditEvent){.actor = NULL, .role = fl_role_name(req->role), .action = action,
			      .sandbox_id = sandbox_id, .status = 0, .details = details};
}

/* The Command object of a finished (or running) command kept in files. */
static struct json_object *run_json(Run *run, const ExecReq *x, bool done)
{
	struct json_object *o = json_object_new_object();
	char hex[65];
	if (!o)
		return NULL;
	json_object_object_add(o, "id", json_object_new_string(run->cmd_id));
	json_object_object_add(o, "sandbox_id", json_object_new_string(run->sandbox_id));
	json_object_object_add(o, "command", json_object_new_string(x->display));
	json_object_object_add(o, "env", x->env_json ? json_object_get(x->env_json) : NULL);
	json_object_object_add(o, "user", x->user ? json_object_new_string(x->user) : NULL);
	static const char *const names[2] = {"stdout", "stderr"};
	for (int k = 0; k < 2; k++) {
		StreamAcc *s = &run->s[k];
		char key[32];
		json_object_object_add(o, names[k], lossy_string(s->kept ? s->kept : "", s->kept_len));
		snprintf(key, sizeof(key), "%s_bytes", names[k]);
		json_object_object_add(o, key, json_object_new_int64((int64_t)s->total));
		snprintf(key, sizeof(key), "%s_truncated", names[k]);
		json_object_object_add(o, key, json_object_new_boolean(s->total > s->kept_len));
		snprintf(key, sizeof(key), "%s_sha256", names[k]);
		if (done) {
			FlSha256 copy = s->sha;
			fl_sha256_final_hex(&copy, hex);
			json_object_object_add(o, key, json_object_new_string(hex));
		} else {
			json_object_object_add(o, key, NULL);
		}
	}
	json_object_object_add(o, "exit_code", done && run->has_exit ? json_object_new_int(run->exit_code) : NULL);
	json_object_object_add(o, "signal", run->signal ? json_object_new_int(run->signal) : NULL);
	json_object_object_add(o, "timed_out", json_object_new_boolean(run->timed_out));
	json_object_object_add(o, "error", run->error[0] ? json_object_new_string(run->error) : NULL);
	json_object_object_add(o, "started_at", time_ms_json(run->started_ms));
	json_object_object_add(o, "ended_at", done ? time_ms_json(run->ended_ms) : NULL);
	json_object_object_add(o, "duration_ms",
			       done ? json_object_new_int64(run->ended_ms - run->started_ms) : NULL);
	return o;
}

static int save_record_file(Run *run, struct json_object *o)
{
	char path[PATH_MAX + 80];
	snprintf(path, sizeof(path), "%s/%s.json", run->dir, run->cmd_id);
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	return fl_write_file_atomic(path, s, strlen(s), 0600);
}

static int run_begin(Run *run, const ExecReq *x)
{
	FlHttpReq *req = run->req;
	FlApp *app = req->app;
	int r = fl_api_commands_dir(req, run->sandbox_id, run->dir, sizeof(run->dir));
	if (r < 0)
		return r;
	run->started_ms = now_ms();
	if (app->db) {
		FlError err = {0};
		FlDbCommandStart cs = {.sandbox_id = run->sandbox_id, .command = x->display,
				       .env = x->env_json, .user = x->user};
		_cleanup_(json_object_putp) struct json_object *d = json_object_new_object();
		json_object_object_add(d, "command", json_object_new_string(x->display));
		FlAuditEvent ev = audit_ev(req, "command.start", run->sandbox_id, d);
		r = fl_db_command_begin(app->db, &cs, &ev, run->cmd_id, &err);
		if (r < 0)
			return fl_api_fail(req, r, &err);
		run->db = true;
	} else {
		random_id(run->cmd_id, sizeof(run->cmd_id));
		_cleanup_(json_object_putp) struct json_object *o = run_json(run, x, false);
		if (!o || (r = save_record_file(run, o)) < 0)
			return fl_http_fail(req, r < 0 ? r : -ENOMEM, "cannot record the command");
	}
	static const char *const ext[2] = {"out", "err"};
	for (int k = 0; k < 2; k++) {
		char path[PATH_MAX + 80];
		snprintf(path, sizeof(path), "%s/%s.%s", run->dir, run->cmd_id, ext[k]);
		fl_sha256_init(&run->s[k].sha);
		run->s[k].fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (run->s[k].fd < 0)
			fl_log_warn("command output %s: %m", path);
	}
	_cleanup_(json_object_putp) struct json_object *ev = json_object_new_object();
	json_object_object_add(ev, "command_id", json_object_new_string(run->cmd_id));
	json_object_object_add(ev, "command", json_object_new_string(x->display));
	fl_api_publish(run->sandbox_id, "command.start", ev);
	return 0;
}

static struct json_object *run_end(Run *run, const ExecReq *x)
{
	FlHttpReq *req = run->req;
	run->ended_ms = now_ms();
	for (int k = 0; k < 2; k++)
		if (run->s[k].fd >= 0) {
			close(run->s[k].fd);
			run->s[k].fd = -1;
		}
	struct json_object *o = run_json(run, x, true);
	if (run->db) {
		FlError err = {0};
		char hex[2][65];
		for (int k = 0; k < 2; k++) {
			FlSha256 copy = run->s[k].sha;
			fl_sha256_final_hex(&copy, hex[k]);
		}
		FlDbCommandEnd ce = {
			.has_exit_code = run->has_exit, .exit_code = run->exit_code, .signal = run->signal,
			.out = {run->s[0].kept, run->s[0].kept_len, run->s[0].total, hex[0]},
			.err = {run->s[1].kept, run->s[1].kept_len, run->s[1].total, hex[1]},
			.error = run->error[0] ? run->error : run->timed_out ? "timeout" : NULL,
		};
		_cleanup_(json_object_putp) struct json_object *d = json_object_new_object();
		json_object_object_add(d, "exit_code", run->has_exit ? json_object_new_int(run->exit_code) : NULL);
		FlAuditEvent ev = audit_ev(req, "command.end", run->sandbox_id, d);
		int r = fl_db_command_end(req->app->db, run->cmd_id, &ce, &ev, &err);
		if (r < 0)
			fl_log_warn("command %s: cannot record its end: %s", run->cmd_id, err.msg);
		struct json_object *dbrec = NULL;
		if (r >= 0 && fl_db_command_get(req->app->db, run->cmd_id, &dbrec, &err) >= 0) {
			/* keep our exact sizes/duration, the DB's shape otherwise */
			json_object_object_foreach(o, k, v)
			{
				if (!json_object_object_get_ex(dbrec, k, NULL))
					json_object_object_add(dbrec, k, json_object_get(v));
			}
			json_object_put(o);
			o = dbrec;
		}
	} else if (o) {
		save_record_file(run, o);
	}
	_cleanup_(json_object_putp) struct json_object *ev = json_object_new_object();
	json_object_object_add(ev, "command_id", json_object_new_string(run->cmd_id));
	json_object_object_add(ev, "exit_code", run->has_exit ? json_object_new_int(run->exit_code) : NULL);
	json_object_object_add(ev, "signal", run->signal ? json_object_new_int(run->signal) : NULL);
	json_object_object_add(ev, "timed_out", json_object_new_boolean(run->timed_out));
	json_object_object_add(ev, "duration_ms", json_object_new_int64(run->ended_ms - run->started_ms));
	json_object_object_add(ev, "stdout_bytes", json_object_new_int64((int64_t)run->s[0].total));
	json_object_object_add(ev, "stderr_bytes", json_object_new_int64((int64_t)run->s[1].total));
	fl_api_publish(run->sandbox_id, "command.end", ev);
	for (int k = 0; k < 2; k++) {
		free(run->s[k].kept);
		run->s[k].kept = NULL;
	}
	return o;
}

/* ---- running ------------------------------------------------------------- */

static int send_line(Run *run, struct json_object *o)
{
	if (run->client_gone)
		return -EPIPE;
	size_t len;
	const char *s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
	_cleanup_free_ char *line = malloc(len + 1);
	if (!line)
		return -ENOMEM;
	memcpy(line, s, len);
	line[len] = '\n';
	if (mg_send_chunk(run->req->conn, line, (unsigned)(len + 1)) < 0) {
		run->client_gone = true;
		return -EPIPE;
	}
	return 0;
}

/* A data object: {"stream", "data"} with UTF-8 text, or base64 + "encoding". */
static struct json_object *chunk_json(const char *stream, const unsigned char *p, size_t len,
				      bool base64_enc)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "stream", json_object_new_string(stream));
	if (base64_enc) {
		_cleanup_free_ char *b = fl_base64_encode(p, len);
		json_object_object_add(o, "data", b ? json_object_new_string(b) : NULL);
		json_object_object_add(o, "encoding", json_object_new_string("base64"));
	} else {
		json_object_object_add(o, "data", json_object_new_string_len((const char *)p, (int)len));
	}
	return o;
}

/* Emits one output chunk: text while it is valid UTF-8 (a sequence cut
 * at the end waits for the next chunk), base64 for the invalid part. */
static void emit_chunk(Run *run, int k, const unsigned char *buf, size_t len)
{
	static const char *const names[2] = {"stdout", "stderr"};
	StreamAcc *s = &run->s[k];
	_cleanup_free_ unsigned char *joined = NULL;
	if (s->carry_len) {
		joined = malloc(s->carry_len + len);
		if (!joined)
			return;
		memcpy(joined, s->carry, s->carry_len);
		memcpy(joined + s->carry_len, buf, len);
		buf = joined;
		len += s->carry_len;
		s->carry_len = 0;
	}
	while (len) {
		size_t inc, n = utf8_valid_prefix(buf, len, &inc);
		bool has_nul = memchr(buf, 0, n) != NULL;
		if (n && !has_nul) {
			_cleanup_(json_object_putp) struct json_object *o = chunk_json(names[k], buf, n, false);
			if (run->ndjson)
				send_line(run, o);
			_cleanup_(json_object_putp) struct json_object *ev = json_object_new_object();
			json_object_object_add(ev, "command_id", json_object_new_string(run->cmd_id));
			json_object_object_add(ev, "stream", json_object_new_string(names[k]));
			json_object_object_add(ev, "data", json_object_new_string_len((const char *)buf, (int)n));
			fl_api_publish(run->sandbox_id, "command.output", ev);
			buf += n, len -= n;
			continue;
		}
		if (n == 0 && inc && inc == len) {
			memcpy(s->carry, buf, len);
			s->carry_len = len;
			return;
		}
		/* binary: send this whole remainder base64-encoded */
		_cleanup_(json_object_putp) struct json_object *o = chunk_json(names[k], buf, len, true);
		if (run->ndjson)
			send_line(run, o);
		_cleanup_(json_object_putp) struct json_object *ev = json_object_new_object();
		json_object_object_add(ev, "command_id", json_object_new_string(run->cmd_id));
		json_object_object_add(ev, "stream", json_object_new_string(names[k]));
		json_object_object_add(ev, "data", json_object_get(json_object_object_get(o, "data")));
		json_object_object_add(ev, "encoding", json_object_new_string("base64"));
		fl_api_publish(run->sandbox_id, "command.output", ev);
		return;
	}
}

static void flush_carry(Run *run)
{
	static const char *const names[2] = {"stdout", "stderr"};
	for (int k = 0; k < 2; k++) {
		StreamAcc *s = &run->s[k];
		if (!s->carry_len || !run->ndjson)
			continue;
		_cleanup_(json_object_putp) struct json_object *o =
			chunk_json(names[k], s->carry, s->carry_len, true);
		send_line(run, o);
		s->carry_len = 0;
	}
}

static void on_output(Run *run, int stream, const unsigned char *buf, size_t len)
{
	int k = stream == 2 ? 1 : 0;
	StreamAcc *s = &run->s[k];
	s->total += len;
	fl_sha256_update(&s->sha, buf, len);
	/* bytes of this chunk still under the policy's cap (the total counts all) */
	uint64_t keep = run->keep ? run->keep : UINT64_MAX;
	size_t file_len = s->total - len >= keep ? 0
			  : keep - (s->total - len) < len ? (size_t)(keep - (s->total - len)) : len;
	if (s->fd >= 0) {
		size_t off = 0;
		while (off < file_len) {
			ssize_t n = write(s->fd, buf + off, file_len - off);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				fl_log_warn("command %s: output file: %m", run->cmd_id);
				close(s->fd);
				s->fd = -1;
				break;
			}
			off += (size_t)n;
		}
	}
	size_t cap = keep < OUTPUT_CAP ? (size_t)keep : OUTPUT_CAP;
	if (s->kept_len < cap) {
		size_t n = cap - s->kept_len < len ? cap - s->kept_len : len;
		if (!s->kept)
			s->kept = malloc(OUTPUT_CAP);
		if (s->kept) {
			memcpy(s->kept + s->kept_len, buf, n);
			s->kept_len += n;
		}
	}
	emit_chunk(run, k, buf, len);
}

/*
 * Runs x in the sandbox, recording it; with run->ndjson the response is
 * streamed as it goes. Returns 0 with the final Command in *ret, or a
 * negative errno with the request's error set (nothing sent yet).
 */
static int run_command(Run *run, const ExecReq *x, struct json_object **ret)
{
	FlHttpReq *req = run->req;
	FlEngine *e = fl_api_engine(req);
	FlError err = {0};
	FlStream *st = NULL;
	FlExecSpec spec = {
		.argv = x->argv, .shell = x->argv ? NULL : x->command, .env = x->env, .cwd = x->cwd,
		.user = x->user, .timeout_ms = (unsigned)(x->timeout_sec * 1000),
	};
	FlStreamSpec ss = {.op = "exec", .exec = &spec, .input = x->stdin_data != NULL,
			   .timeout_ms = x->timeout_sec ? (unsigned)(x->timeout_sec * 1000) + 15000 : 0};
	run->s[0].fd = run->s[1].fd = -1;

	int r = fl_engine_stream_open(e, run->sandbox_id, &ss, &st, &err);
	if (r < 0)
		return fl_api_fail(req, r, &err);
	r = run_begin(run, x);
	if (r < 0) {
		fl_stream_cancel(st);
		fl_stream_finish(st, NULL, NULL);
		return r;
	}
	if (x->stdin_data) {
		/* small (inside the 1 MiB body): the pipe drains into the agent */
		size_t off = 0;
		while (off < x->stdin_len) {
			ssize_t n = write(fl_stream_in_fd(st), x->stdin_data + off, x->stdin_len - off);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			off += (size_t)n;
		}
		fl_stream_close_input(st);
	}
	if (run->ndjson) {
		mg_printf(req->conn,
			  "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
			  "Cache-Control: no-store\r\nX-Command-Id: %s\r\n"
			  "Transfer-Encoding: chunked\r\n\r\n",
			  run->cmd_id);
		req->responded = true;
	}
	int fd = fl_stream_out_fd(st);
	unsigned char hdr[5];
	_cleanup_free_ unsigned char *buf = malloc(1u << 20);
	for (;;) {
		int k = fl_read_full(fd, hdr, 5);
		if (k <= 0)
			break;
		uint32_t n = hdr[1] | hdr[2] << 8 | hdr[3] << 16 | (uint32_t)hdr[4] << 24;
		if (!buf || n > (1u << 20) || fl_read_full(fd, buf, n) <= 0) {
			snprintf(run->error, sizeof(run->error), "malformed output stream");
			fl_stream_cancel(st);
			break;
		}
		on_output(run, hdr[0], buf, n);
		if (run->client_gone) {
			/* the client hung up on a streamed exec: stop the command */
			fl_stream_cancel(st);
			run->client_gone = false;
			run->ndjson = false;
		}
	}
	flush_carry(run);
	_cleanup_(json_object_putp) struct json_object *res = NULL;
	r = fl_stream_finish(st, &res, &err);
	struct json_object *v;
	if (r >= 0 && res) {
		if (json_object_object_get_ex(res, "exit_code", &v) && v) {
			run->exit_code = json_object_get_int(v);
			run->has_exit = true;
		}
		if (json_object_object_get_ex(res, "signal", &v) && v) {
			run->signal = json_object_get_int(v);
			run->exit_code = 128 + run->signal;
			run->has_exit = true;
		}
		if (json_object_object_get_ex(res, "timed_out", &v))
			run->timed_out = json_object_get_boolean(v);
	} else if (r < 0) {
		snprintf(run->error, sizeof(run->error), "%s", err.msg[0] ? err.msg : strerror(-r));
	}
	*ret = run_end(run, x);
	if (!*ret)
		return fl_http_fail(req, -ENOMEM, "out of memory");
	if (r < 0 && !run->ndjson) {
		/* the command was recorded; the caller still learns why it failed */
		int status = fl_http_status_from_errno(r);
		fl_http_send_error(req, status, run->error, *ret);
		json_object_put(*ret);
		*ret = NULL;
		return status;
	}
	return 0;
}

/*
 * The safety policy on a parsed request: the command must be allowed (or
 * approved), and its timeout within the policy's maximum (a larger one,
 * or 0 = none under a finite maximum, is refused with 400: nothing ran).
 * Without timeout_sec the policy's default applies (background processes:
 * none, unless the policy's maximum is finite).
 */
static int policy_gate(FlHttpReq *req, const char *sandbox_id, struct json_object *body,
		       ExecReq *x, bool background, uint64_t *ret_keep)
{
	const FlPolicy *pol = NULL;
	int r = fl_api_policy_command(req, sandbox_id, x->argv ? NULL : x->command, x->argv, &pol);
	if (r < 0)
		return r;
	bool bounded = pol->limits.max_timeout_sec < MAX_TIMEOUT_SEC;
	if (!json_object_object_get_ex(body, "timeout_sec", NULL))
		/* background processes run until stopped unless the policy bounds them */
		x->timeout_sec = background && !bounded ? 0 : pol->limits.timeout_sec;
	else if (x->timeout_sec > pol->limits.max_timeout_sec ||
		 (x->timeout_sec == 0 && bounded))
		return fl_http_fail(req, -EINVAL,
				    "timeout_sec %llu is over the policy's maximum of %u s (policy %s)",
				    (unsigned long long)x->timeout_sec, pol->limits.max_timeout_sec,
				    pol->name);
	if (ret_keep)
		*ret_keep = pol->limits.output_bytes;
	return 0;
}

static int exec_common(FlHttpReq *req, bool readme_shape, bool allow_stream)
{
	_cleanup_(json_object_putp) struct json_object *body = NULL;
	ExecReq x;
	Run run = {.req = req};
	int r = fl_api_sandbox_lookup(req, run.sandbox_id, NULL);
	if (r < 0)
		return r;
	r = fl_http_read_json(req, &body);
	if (r < 0)
		return r;
	r = parse_exec(req, body, &x);
	if (r >= 0)
		r = policy_gate(req, run.sandbox_id, body, &x, false, &run.keep);
	if (r < 0) {
		exec_req_clear(&x);
		return r;
	}
	const char *accept = fl_http_header(req, "Accept");
	run.ndjson = allow_stream && accept && strstr(accept, "application/x-ndjson");
	struct json_object *cmd = NULL;
	r = run_command(&run, &x, &cmd);
	exec_req_clear(&x);
	if (r != 0 || !cmd)
		return r;
	_cleanup_(json_object_putp) struct json_object *c = cmd;
	if (req->responded) {
		/* streamed: the last line carries the result */
		_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
		json_object_object_add(o, "exit_code", json_object_get(json_object_object_get(c, "exit_code")));
		json_object_object_add(o, "command_id", json_object_new_string(run.cmd_id));
		json_object_object_add(o, "signal", json_object_get(json_object_object_get(c, "signal")));
		json_object_object_add(o, "timed_out", json_object_get(json_object_object_get(c, "timed_out")));
		json_object_object_add(o, "duration_ms", json_object_get(json_object_object_get(c, "duration_ms")));
		json_object_object_add(o, "stdout_bytes", json_object_get(json_object_object_get(c, "stdout_bytes")));
		json_object_object_add(o, "stderr_bytes", json_object_get(json_object_object_get(c, "stderr_bytes")));
		if (run.error[0])
			json_object_object_add(o, "error", json_object_new_string(run.error));
		send_line(&run, o);
		mg_send_chunk(req->conn, "", 0);
		return 200;
	}
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	if (readme_shape) {
		json_object_object_add(o, "exit_code", json_object_get(json_object_object_get(c, "exit_code")));
		json_object_object_add(o, "stdout", json_object_get(json_object_object_get(c, "stdout")));
		json_object_object_add(o, "stderr", json_object_get(json_object_object_get(c, "stderr")));
	}
	json_object_object_add(o, "command", json_object_get(c));
	return fl_http_send_json(req, 200, o);
}

static int post_run(FlHttpReq *req) { return exec_common(req, false, false); }
FL_ROUTE(post_run, "POST", "/v1/sandboxes/{id}/run", FL_ROLE_AGENT);

static int post_command(FlHttpReq *req) { return exec_common(req, true, false); }
FL_ROUTE(post_command, "POST", "/v1/sandboxes/{id}/command", FL_ROLE_AGENT);

static int post_exec(FlHttpReq *req) { return exec_common(req, false, true); }
FL_ROUTE(post_exec, "POST", "/v1/sandboxes/{id}/exec", FL_ROLE_AGENT);

/* ---- listing ----------------------------------------------------------------- */

static int cmp_started(const void *a, const void *b)
{
	struct json_object *x = *(struct json_object *const *)a, *y = *(struct json_object *const *)b;
	const char *sx = json_object_get_string(json_object_object_get(x, "started_at"));
	const char *sy = json_object_get_string(json_object_object_get(y, "started_at"));
	int c = strcmp(sx ? sx : "", sy ? sy : "");
	return c ? c : strcmp(json_object_get_string(json_object_object_get(x, "id")),
			      json_object_get_string(json_object_object_get(y, "id")));
}

int fl_api_commands_list(FlHttpReq *req, const char *sandbox_id, uint64_t limit, uint64_t offset,
			 struct json_object **ret)
{
	FlApp *app = req->app;
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	if (!o)
		return fl_http_fail(req, -ENOMEM, "out of memory");
	if (app->db) {
		FlError err = {0};
		struct json_object *arr = NULL;
		uint64_t total = 0;
		int r = fl_db_commands_list(app->db, sandbox_id, limit ? (unsigned)limit : 1,
					    (unsigned)offset, &arr, &total, &err);
		if (r < 0)
			return fl_api_fail(req, r, &err);
		if (!limit) {
			json_object_put(arr);
			arr = json_object_new_array();
		}
		json_object_object_add(o, "commands", arr);
		json_object_object_add(o, "total", json_object_new_int64((int64_t)total));
		*ret = TAKE_PTR(o);
		return 0;
	}
	char dir[PATH_MAX];
	int r = fl_api_commands_dir(req, sandbox_id, dir, sizeof(dir));
	if (r < 0)
		return r;
	_cleanup_(closedirp) DIR *d = opendir(dir);
	struct json_object **all = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	while (d && (de = readdir(d))) {
		size_t l = strlen(de->d_name);
		if (l < 6 || strcmp(de->d_name + l - 5, ".json") || de->d_name[0] == '.')
			continue;
		char path[PATH_MAX + 300];
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		struct json_object *c = json_object_from_file(path);
		if (!c)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			struct json_object **na = realloc(all, cap * sizeof(*all));
			if (!na) {
				json_object_put(c);
				break;
			}
			all = na;
		}
		all[n++] = c;
	}
	if (n)
		qsort(all, n, sizeof(*all), cmp_started);
	struct json_object *arr = json_object_new_array();
	for (size_t i = 0; i < n; i++) {
		if (i >= offset && i < offset + limit)
			json_object_array_add(arr, all[i]);
		else
			json_object_put(all[i]);
	}
	free(all);
	json_object_object_add(o, "commands", arr);
	json_object_object_add(o, "total", json_object_new_int64((int64_t)n));
	*ret = TAKE_PTR(o);
	return 0;
}

static int get_commands(FlHttpReq *req)
{
	char id[64];
	uint64_t limit, offset;
	int r = fl_api_sandbox_lookup(req, id, NULL);
	if (r < 0)
		return r;
	if ((r = fl_api_paging(req, &limit, &offset)) < 0)
		return r;
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	if ((r = fl_api_commands_list(req, id, limit, offset, &o)) < 0)
		return r;
	return fl_http_send_json(req, 200, o);
}
FL_ROUTE(get_commands, "GET", "/v1/sandboxes/{id}/commands", FL_ROLE_AGENT);

static bool cmd_id_ok(const char *s)
{
	return fl_api_name_ok(s, 63) && !strchr(s, '.');
}

static int get_command(FlHttpReq *req)
{
	char id[64], dir[PATH_MAX];
	const char *cid = fl_http_param(req, "cid");
	int r = fl_api_sandbox_lookup(req, id, NULL);
	if (r < 0)
		return r;
	if (!cmd_id_ok(cid))
		return fl_http_fail(req, -EINVAL, "invalid command id");
	_cleanup_(json_object_putp) struct json_object *c = NULL;
	if (req->app->db) {
		FlError err = {0};
		r = fl_db_command_get(req->app->db, cid, &c, &err);
		if (r < 0)
			return r == -ENOENT || r == -EINVAL
				       ? fl_http_fail(req, -ENOENT, "no command '%s' in sandbox %s", cid, id)
				       : fl_api_fail(req, r, &err);
		const char *sid = json_object_get_string(json_object_object_get(c, "sandbox_id"));
		if (!sid || strcmp(sid, id))
			return fl_http_fail(req, -ENOENT, "no command '%s' in sandbox %s", cid, id);
	} else {
		if ((r = fl_api_commands_dir(req, id, dir, sizeof(dir))) < 0)
			return r;
		char path[PATH_MAX + 80];
		snprintf(path, sizeof(path), "%s/%s.json", dir, cid);
		c = json_object_from_file(path);
		if (!c)
			return fl_http_fail(req, -ENOENT, "no command '%s' in sandbox %s", cid, id);
	}
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	json_object_object_add(o, "command", json_object_get(c));
	return fl_http_send_json(req, 200, o);
}
FL_ROUTE(get_command, "GET", "/v1/sandboxes/{id}/commands/{cid}", FL_ROLE_AGENT);

/* The full raw output of a command, streamed from its file. */
static int get_command_output(FlHttpReq *req)
{
	char id[64], dir[PATH_MAX], which[16] = "stdout";
	const char *cid = fl_http_param(req, "cid");
	int r = fl_api_sandbox_lookup(req, id, NULL);
	if (r < 0)
		return r;
	if (!cmd_id_ok(cid))
		return fl_http_fail(req, -EINVAL, "invalid command id");
	fl_http_query(req, "stream", which, sizeof(which));
	if (strcmp(which, "stdout") && strcmp(which, "stderr"))
		return fl_http_fail(req, -EINVAL, "stream must be stdout or stderr");
	if ((r = fl_api_commands_dir(req, id, dir, sizeof(dir))) < 0)
		return r;
	char path[PATH_MAX + 80];
	snprintf(path, sizeof(path), "%s/%s.%s", dir, cid, !strcmp(which, "stdout") ? "out" : "err");
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fl_http_fail(req, -ENOENT, "no output of command '%s' in sandbox %s", cid, id);
	off_t size = lseek(fd, 0, SEEK_END);
	lseek(fd, 0, SEEK_SET);
	mg_printf(req->conn,
		  "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
		  "Cache-Control: no-store\r\nContent-Length: %lld\r\n\r\n",
		  (long long)size);
	req->responded = true;
	/* heap: civetweb worker stacks are small (~100 KiB) */
	_cleanup_free_ char *buf = malloc(65536);
	off_t left = buf ? size : 0;
	while (left > 0) {
		ssize_t n = read(fd, buf, (size_t)(left < 65536 ? left : 65536));
		if (n <= 0 || mg_write(req->conn, buf, (size_t)n) <= 0)
			break;
		left -= n;
	}
	return 200;
}
FL_ROUTE(get_command_output, "GET", "/v1/sandboxes/{id}/commands/{cid}/output", FL_ROLE_AGENT);

/* ---- background processes ---------------------------------------------------- */

static int agent_call(FlHttpReq *req, const char *id, const char *op, struct json_object *args,
		      unsigned timeout_ms, struct json_object **ret)
{
	FlError err = {0};
	int r = fl_engine_agent_call(fl_api_engine(req), id, op, args, timeout_ms, ret, &err);
	if (r == -ESRCH)
		return fl_http_fail(req, -ENOENT, "no such background process");
	return r < 0 ? fl_api_fail(req, r, &err) : 0;
}

static int get_processes(FlHttpReq *req)
{
	char id[64];
	int r = fl_api_sandbox_lookup(req, id, NULL);
	if (r < 0)
		return r;
	_cleanup_(json_object_putp) struct json_object *res = NULL;
	if ((r = agent_call(req, id, "bg_list", NULL, 10000, &res)) < 0)
		return r;
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	struct json_object *procs = json_object_object_get(res, "processes");
	json_object_object_add(o, "processes", procs ? json_object_get(procs) : json_object_new_array());
	json_object_object_add(o, "total", json_object_new_int64(procs ? (int64_t)json_object_array_length(procs) : 0));
	return fl_http_send_json(req, 200, o);
}
FL_ROUTE(get_processes, "GET", "/v1/sandboxes/{id}/processes", FL_ROLE_AGENT);

static int post_processes(FlHttpReq *req)
{
	char id[64];
	ExecReq x;
	_cleanup_(json_object_putp) struct json_object *body = NULL;
	int r = fl_api_sandbox_lookup(req, id, NULL);
	if (r < 0)
		return r;
	if ((r = fl_http_read_json(req, &body)) < 0)
		return r;
	r = parse_exec(req, body, &x);
	if (r >= 0 && x.stdin_data)
		r = fl_http_fail(req, -EINVAL, "background processes take no stdin");
	if (r >= 0)
		r = policy_gate(req, id, body, &x, true, NULL);
	if (r < 0) {
		exec_req_clear(&x);
		return r;
	}
	struct json_object *args = json_object_new_object();
	if (x.argv) {
		struct json_object *a = json_object_new_array();
		for (size_t i = 0; x.argv[i]; i++)
			json_object_array_add(a, json_object_new_string(x.argv[i]));
		json_object_object_add(args, "argv", a);
	} else {
		json_object_object_add(args, "shell", json_object_new_string(x.command));
	}
	if (x.env) {
		struct json_object *a = json_object_new_array();
		for (size_t i = 0; x.env[i]; i++)
			json_object_array_add(a, json_object_new_string(x.env[i]));
		json_object_object_add(args, "env", a);
	}
	if (x.cwd)
		json_object_object_add(args, "cwd", json_object_new_string(x.cwd));
	if (x.user)
		json_object_object_add(args, "user", json_object_new_string(x.user));
	if (x.timeout_sec)
		json_object_object_add(args, "timeout_ms", json_object_new_int64((int64_t)x.timeout_sec * 1000));
	json_object_object_add(args, "background", json_object_new_boolean(1));
	exec_req_clear(&x);
	_cleanup_(json_object_putp) struct json_object *res = NULL;
	if ((r = agent_call(req, id, "exec", args, 30000, &res)) < 0)
		return r;
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	json_object_object_add(o, "process", json_object_get(res));
	return fl_http_send_json(req, 201, o);
}
FL_ROUTE(post_processes, "POST", "/v1/sandboxes/{id}/processes", FL_ROLE_AGENT);

/* The {pid} parameter is the agent's background id (a positive integer). */
static int bg_param(FlHttpReq *req, int64_t *ret)
{
	const char *p = fl_http_param(req, "pid");
	int64_t v = 0;
	if (!p || !*p || strlen(p) > 12)
		return fl_http_fail(req, -EINVAL, "invalid process id");
	for (const char *c = p; *c; c++) {
		if (*c < '0' || *c > '9')
			return fl_http_fail(req, -EINVAL, "invalid process id");
		v = v * 10 + (*c - '0');
	}
	if (v <= 0)
		return fl_http_fail(req, -EINVAL, "invalid process id");
	*ret = v;
	return 0;
}

static int post_process_kill(FlHttpReq *req)
{
	char id[64];
	int64_t bg;
	uint64_t sig = 15;
	_cleanup_(json_object_putp) struct json_object *body = NULL;
	static const char *const allowed[] = {"signal", NULL};
	int r = fl_api_sandbox_lookup(req, id, NULL);
	if (r < 0 || (r = bg_param(req, &bg)) < 0 || (r = fl_api_read_json_opt(req, &body)) < 0)
		return r;
	if ((r = fl_json_reject_unknown(body, allowed, &req->err)) < 0 ||
	    (r = fl_json_get_uint(body, "signal", false, 1, 64, &sig, &req->err)) < 0)
		return r;
	struct json_object *args = json_object_new_object();
	json_object_object_add(args, "bg", json_object_new_int64(bg));
	json_object_object_add(args, "signal", json_object_new_int64((int64_t)sig));
	if ((r = agent_call(req, id, "bg_kill", args, 10000, NULL)) < 0)
		return r;
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	json_object_object_add(o, "signalled", json_object_new_boolean(1));
	return fl_http_send_json(req, 200, o);
}
FL_ROUTE(post_process_kill, "POST", "/v1/sandboxes/{id}/processes/{pid}/kill", FL_ROLE_AGENT);

static int get_process_wait(FlHttpReq *req)
{
	char id[64], buf[32];
	int64_t bg;
	uint64_t timeout = 30;
	int r = fl_api_sandbox_lookup(req, id, NULL);
	if (r < 0 || (r = bg_param(req, &bg)) < 0)
		return r;
	if (fl_http_query(req, "timeout_sec", buf, sizeof(buf))) {
		char *end;
		errno = 0;
		unsigned long long v = strtoull(buf, &end, 10);
		if (!buf[0] || *end || errno || buf[0] == '-' || v < 1 || v > 3600)
			return fl_http_fail(req, -EINVAL, "timeout_sec must be in 1..3600");
		timeout = v;
	}
	struct json_object *args = json_object_new_object();
	json_object_object_add(args, "bg", json_object_new_int64(bg));
	json_object_object_add(args, "timeout_ms", json_object_new_int64((int64_t)timeout * 1000));
	_cleanup_(json_object_putp) struct json_object *res = NULL;
	if ((r = agent_call(req, id, "bg_wait", args, (unsigned)timeout * 1000 + 10000, &res)) < 0)
		return r;
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	json_object_object_add(o, "process", json_object_get(res));
	return fl_http_send_json(req, 200, o);
}
FL_ROUTE(get_process_wait, "GET", "/v1/sandboxes/{id}/processes/{pid}/wait", FL_ROLE_AGENT);

static int post_process_wait(FlHttpReq *req) { return get_process_wait(req); }
FL_ROUTE(post_process_wait, "POST", "/v1/sandboxes/{id}/processes/{pid}/wait", FL_ROLE_AGENT);

static int post_process_stdin(FlHttpReq *req)
{
	char id[64];
	int64_t bg;
	int r = fl_api_sandbox_lookup(req, id, NULL);
	if (r < 0 || (r = bg_param(req, &bg)) < 0)
		return r;
	return fl_http_fail(req, -EOPNOTSUPP,
			    "background processes read /dev/null: the guest agent has no stdin for "
			    "them; use a streaming exec with 'stdin' instead");
}
FL_ROUTE(post_process_stdin, "POST", "/v1/sandboxes/{id}/processes/{pid}/stdin", FL_ROLE_AGENT);
