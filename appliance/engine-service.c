// SPDX-License-Identifier: MIT
/*
 * engine-service: wires the sandbox engine into `fluid serve` (service
 * order 20, after the database) and holds the helpers every sandbox API
 * file shares: engine error -> HTTP mapping, the API shapes of sandboxes
 * and snapshots (fluid.sh compatible, RFC 3339 times), paging, events.
 *
 * DESIGN: the engine is created from the read-only configuration and the
 * accelerator decision; its state lives under STATE_DIR (sandboxes/,
 * templates/, states/, images/ = the layer registry). Guest images are read
 * from images.dir, except when that is the built-in default (STATE/images,
 * which is the engine's own layer registry): then the checkout's
 * build/images next to the binary is used (`make run` sets FLUID_IMAGE_DIR
 * anyway). A background thread builds the default image's template right
 * after start so the first create is a fast clone; stop waits for it (a
 * template build cannot be interrupted half-way without leaving a QEMU).
 * Engine state changes are forwarded to the live event bus (events.h) and
 * mirrored into the database when one is wired in.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "db.h"
#include "engine-service.h"
#include "events.h"
#include "log.h"

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)

typedef struct EngineService {
	FlEngine *engine;
	FlApp *app;
	pthread_t prep_thread;
	bool prep_started;
	char image_dir[PATH_MAX];
	char default_image[128];
} EngineService;

static EngineService svc;

static bool is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

const char *fl_api_image_dir(void)
{
	return svc.image_dir;
}

FlEngine *fl_api_engine(FlHttpReq *req)
{
	return req->app ? req->app->engine : NULL;
}

bool fl_api_name_ok(const char *s, size_t max)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > max || s[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.'))
			return false;
	}
	return true;
}

int fl_api_sandbox_lookup(FlHttpReq *req, char ret_id[64], struct json_object **ret_rec)
{
	FlEngine *e = fl_api_engine(req);
	const char *id = fl_http_param(req, "id");
	FlError err = {0};
	struct json_object *rec = NULL, *v;
	if (!e)
		return fl_http_fail(req, -ENODEV, "the sandbox engine is not available");
	if (!fl_api_name_ok(id, 63) || strstr(id, ".."))
		return fl_http_fail(req, -EINVAL, "invalid sandbox id");
	int r = fl_engine_get(e, id, &rec, &err);
	if (r < 0)
		return r == -ENOENT ? fl_http_fail(req, r, "no sandbox '%s'", id) : fl_api_fail(req, r, &err);
	if (!json_object_object_get_ex(rec, "id", &v)) {
		json_object_put(rec);
		return fl_http_fail(req, -EIO, "engine record without id");
	}
	snprintf(ret_id, 64, "%s", json_object_get_string(v));
	if (ret_rec)
		*ret_rec = rec;
	else
		json_object_put(rec);
	return 0;
}

int fl_api_commands_dir(FlHttpReq *req, const char *sandbox_id, char *buf, size_t len)
{
	const FlConfig *cfg = req->app->cfg;
	char sbdir[PATH_MAX];
	snprintf(sbdir, sizeof(sbdir), "%s/sandboxes/%s", cfg->state_dir, sandbox_id);
	if (!is_dir(sbdir))
		return fl_http_fail(req, -ENOENT, "no sandbox '%s'", sandbox_id);
	snprintf(buf, len, "%s/commands", sbdir);
	if (mkdir(buf, 0700) < 0 && errno != EEXIST)
		return fl_http_fail(req, -errno, "mkdir %s: %m", buf);
	return 0;
}

int fl_api_fail(FlHttpReq *req, int r, const FlError *err)
{
	if (r >= 0)
		r = -EIO;
	/* Errors the guest reports about paths are the caller's input. */
	if (r == -EISDIR || r == -ENOTDIR || r == -ENAMETOOLONG || r == -ELOOP)
		return fl_http_fail(req, -EINVAL, "%s", err && err->msg[0] ? err->msg : strerror(-r));
	if (r == -ECANCELED)
		return fl_http_fail(req, -EBUSY, "%s", err && err->msg[0] ? err->msg : "operation cancelled");
	return fl_http_fail(req, r, "%s", err && err->msg[0] ? err->msg : strerror(-r));
}

void fl_api_time(int64_t t, char buf[32])
{
	struct tm tm;
	time_t tt = (time_t)t;
	gmtime_r(&tt, &tm);
	strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

struct json_object *fl_api_time_json(int64_t t)
{
	char buf[32];
	if (t <= 0)
		return NULL;
	fl_api_time(t, buf);
	return json_object_new_string(buf);
}

static struct json_object *copy_field(struct json_object *rec, const char *key)
{
	struct json_object *v;
	return json_object_object_get_ex(rec, key, &v) ? json_object_get(v) : NULL;
}

static int64_t int_field(struct json_object *rec, const char *key)
{
	struct json_object *v;
	return json_object_object_get_ex(rec, key, &v) ? json_object_get_int64(v) : 0;
}

static const char *str_field(struct json_object *rec, const char *key)
{
	struct json_object *v;
	return json_object_object_get_ex(rec, key, &v) && json_object_is_type(v, json_type_string)
		       ? json_object_get_string(v)
		       : "";
}

struct json_object *fl_api_snapshot_json(const char *sandbox_id, struct json_object *snap)
{
	struct json_object *o = json_object_new_object();
	if (!o)
		return NULL;
	const char *name = str_field(snap, "name");
	char id[160];
	snprintf(id, sizeof(id), "%s:%s", sandbox_id, name);
	bool memory = false;
	struct json_object *m;
	if (json_object_object_get_ex(snap, "memory", &m))
		memory = json_object_get_boolean(m);
	json_object_object_add(o, "id", json_object_new_string(id));
	json_object_object_add(o, "sandbox_id", json_object_new_string(sandbox_id));
	json_object_object_add(o, "name", json_object_new_string(name));
	/* fluid's snapshots are always external qcow2 layers (docs/api-notes.md) */
	json_object_object_add(o, "kind", json_object_new_string("EXTERNAL"));
	json_object_object_add(o, "memory", json_object_new_boolean(memory));
	json_object_object_add(o, "parent", copy_field(snap, "parent"));
	json_object_object_add(o, "ref", copy_field(snap, "layer"));
	json_object_object_add(o, "created_at", fl_api_time_json(int_field(snap, "created_at")));
	return o;
}

struct json_object *fl_api_sandbox_json(struct json_object *rec)
{
	struct json_object *o = json_object_new_object();
	if (!o)
		return NULL;
	const char *id = str_field(rec, "id");
	const char *state = str_field(rec, "state");
	bool running = !strcmp(state, "RUNNING");
	json_object_object_add(o, "id", json_object_new_string(id));
	json_object_object_add(o, "job_id", copy_field(rec, "job_id"));
	json_object_object_add(o, "agent_id", copy_field(rec, "agent_id"));
	json_object_object_add(o, "sandbox_name", copy_field(rec, "sandbox_name"));
	json_object_object_add(o, "base_image", copy_field(rec, "base_image"));
	json_object_object_add(o, "network", copy_field(rec, "network"));
	struct json_object *ip = json_object_object_get(rec, "ip_address"); /* tap */
	json_object_object_add(o, "ip_address", !running ? NULL : ip ? json_object_get(ip)
							 : json_object_new_string(FL_GUEST_IP));
	json_object_object_add(o, "state", json_object_new_string(state));
	json_object_object_add(o, "ttl_seconds", copy_field(rec, "ttl_seconds"));
	json_object_object_add(o, "created_at", fl_api_time_json(int_field(rec, "created_at")));
	json_object_object_add(o, "updated_at", fl_api_time_json(int_field(rec, "updated_at")));
	/* fluid's additions */
	json_object_object_add(o, "cpu", copy_field(rec, "vcpus"));
	json_object_object_add(o, "memory_mb", copy_field(rec, "memory_mb"));
	json_object_object_add(o, "boot", copy_field(rec, "boot"));
	json_object_object_add(o, "head", copy_field(rec, "head"));
	struct json_object *snaps = json_object_new_array(), *src;
	if (snaps && json_object_object_get_ex(rec, "snapshots", &src))
		for (size_t i = 0; i < json_object_array_length(src); i++)
			json_object_array_add(snaps, fl_api_snapshot_json(
							     id, json_object_array_get_idx(src, i)));
	json_object_object_add(o, "snapshots", snaps);
	return o;
}

int fl_api_read_json_opt(FlHttpReq *req, struct json_object **ret)
{
	_cleanup_free_ char *body = NULL;
	size_t len = 0;
	int r = fl_http_read_body(req, 0, &body, &len);
	if (r < 0)
		return r;
	size_t i = 0;
	while (i < len && strchr(" \t\r\n", body[i]))
		i++;
	if (i == len) {
		*ret = json_object_new_object();
		return *ret ? 0 : fl_http_fail(req, -ENOMEM, "out of memory");
	}
	json_tokener *tok = json_tokener_new_ex(64);
	if (!tok)
		return fl_http_fail(req, -ENOMEM, "out of memory");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	struct json_object *o = json_tokener_parse_ex(tok, body, (int)len);
	enum json_tokener_error jerr = json_tokener_get_error(tok);
	size_t used = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (!o || jerr != json_tokener_success) {
		json_object_put(o);
		return fl_http_fail(req, -EINVAL, "invalid JSON: %s",
				    jerr == json_tokener_continue ? "unexpected end of input"
								  : json_tokener_error_desc(jerr));
	}
	for (; used < len; used++)
		if (!strchr(" \t\r\n", body[used])) {
			json_object_put(o);
			return fl_http_fail(req, -EINVAL, "invalid JSON: trailing data");
		}
	if (!json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return fl_http_fail(req, -EINVAL, "the body must be a JSON object");
	}
	*ret = o;
	return 0;
}

/* Strict unsigned decimal, no sign, no spaces, bounded. */
static int parse_u64(const char *s, uint64_t max, uint64_t *ret)
{
	uint64_t v = 0;
	if (!s || !*s || strlen(s) > 19)
		return -EINVAL;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (v > max)
		return -ERANGE;
	*ret = v;
	return 0;
}

int fl_api_paging(FlHttpReq *req, uint64_t *limit, uint64_t *offset)
{
	char buf[64];
	*limit = 50;
	*offset = 0;
	if (fl_http_query(req, "limit", buf, sizeof(buf)) && parse_u64(buf, 1000, limit) < 0)
		return fl_http_fail(req, -EINVAL, "limit must be an integer in 0..1000");
	if (fl_http_query(req, "offset", buf, sizeof(buf)) &&
	    parse_u64(buf, 1000000000, offset) < 0)
		return fl_http_fail(req, -EINVAL, "offset must be a non-negative integer");
	return 0;
}

void fl_api_publish(const char *sandbox_id, const char *type, struct json_object *data)
{
	fl_events_publish(sandbox_id, type, data);
}

/* ---- engine calls on a big stack ---------------------------------------------- */

typedef enum JobKind { JOB_CREATE, JOB_START, JOB_STOP, JOB_DESTROY, JOB_SNAPSHOT, JOB_RESTORE,
		       JOB_SNAPSHOT_DELETE } JobKind;

typedef struct Job {
	JobKind kind;
	FlEngine *e;
	const FlSandboxSpec *spec;
	const char *id, *name;
	bool memory;
	struct json_object **ret;
	FlError *err;
	int r;
} Job;

static void *job_main(void *arg)
{
	Job *j = arg;
	switch (j->kind) {
	case JOB_CREATE:
		j->r = fl_engine_create(j->e, j->spec, j->ret, j->err);
		break;
	case JOB_START:
		j->r = fl_engine_start(j->e, j->id, j->err);
		break;
	case JOB_STOP:
		j->r = fl_engine_stop(j->e, j->id, j->err);
		break;
	case JOB_DESTROY:
		j->r = fl_engine_destroy(j->e, j->id, j->err);
		break;
	case JOB_SNAPSHOT:
		j->r = fl_engine_snapshot(j->e, j->id, j->name, j->memory, j->ret, j->err);
		break;
	case JOB_RESTORE:
		j->r = fl_engine_restore(j->e, j->id, j->name, j->err);
		break;
	case JOB_SNAPSHOT_DELETE:
		j->r = fl_engine_snapshot_delete(j->e, j->id, j->name, j->err);
		break;
	}
	return NULL;
}

static int run_job(Job *j)
{
	pthread_attr_t attr;
	pthread_t t;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 8u << 20); /* address space only */
	int r = pthread_create(&t, &attr, job_main, j);
	pthread_attr_destroy(&attr);
	if (r != 0)
		return fl_error_set(j->err, -r, "cannot start an engine thread: %s", strerror(r));
	pthread_join(t, NULL);
	return j->r;
}

int fl_api_create(FlEngine *e, const FlSandboxSpec *spec, struct json_object **ret, FlError *err)
{
	Job j = {.kind = JOB_CREATE, .e = e, .spec = spec, .ret = ret, .err = err};
	return run_job(&j);
}

int fl_api_start(FlEngine *e, const char *id, FlError *err)
{
	Job j = {.kind = JOB_START, .e = e, .id = id, .err = err};
	return run_job(&j);
}

int fl_api_stop(FlEngine *e, const char *id, FlError *err)
{
	Job j = {.kind = JOB_STOP, .e = e, .id = id, .err = err};
	return run_job(&j);
}

int fl_api_destroy(FlEngine *e, const char *id, FlError *err)
{
	Job j = {.kind = JOB_DESTROY, .e = e, .id = id, .err = err};
	return run_job(&j);
}

int fl_api_snapshot(FlEngine *e, const char *id, const char *name, bool memory,
		    struct json_object **ret, FlError *err)
{
	Job j = {.kind = JOB_SNAPSHOT, .e = e, .id = id, .name = name, .memory = memory, .ret = ret,
		 .err = err};
	return run_job(&j);
}

int fl_api_restore(FlEngine *e, const char *id, const char *name, FlError *err)
{
	Job j = {.kind = JOB_RESTORE, .e = e, .id = id, .name = name, .err = err};
	return run_job(&j);
}

int fl_api_snapshot_delete(FlEngine *e, const char *id, const char *name, FlError *err)
{
	Job j = {.kind = JOB_SNAPSHOT_DELETE, .e = e, .id = id, .name = name, .err = err};
	return run_job(&j);
}

/* ---- database mirror ---------------------------------------------------- */

/* The sandbox records on disk are the source of truth; the database keeps
 * a mirror for list filters and history (destroyed sandboxes). */
void fl_api_mirror_sandbox(FlApp *app, struct json_object *api_sandbox)
{
	FlError err = {0};
	if (!app->db || !api_sandbox)
		return;
	if (fl_db_sandbox_upsert(app->db, api_sandbox, NULL, &err) < 0)
		fl_log_warn("sandbox mirror: %s", err.msg);
}

/* Mirror rows of live states whose sandbox the engine no longer has (it
 * was destroyed while fluid was down, or never acknowledged): DESTROYED. */
static void reconcile_mirror(FlApp *app, FlEngine *e)
{
	static const char *const live[] = {"CREATED", "STARTING", "RUNNING", "STOPPED", "ERROR"};
	if (!app->db)
		return;
	for (size_t i = 0; i < FL_ARRAY_SIZE(live); i++) {
		FlError err = {0};
		struct json_object *arr = NULL;
		uint64_t total = 0;
		FlDbSandboxFilter f = {.state = live[i], .limit = 1000};
		if (fl_db_sandboxes_list(app->db, &f, &arr, &total, &err) < 0) {
			fl_log_warn("sandbox mirror: %s", err.msg);
			return;
		}
		for (size_t k = 0; k < json_object_array_length(arr); k++) {
			struct json_object *row = json_object_array_get_idx(arr, k), *rec = NULL;
			const char *id = str_field(row, "id");
			if (!*id || fl_engine_get(e, id, &rec, NULL) == 0) {
				json_object_put(rec);
				continue;
			}
			json_object_object_add(row, "state", json_object_new_string("DESTROYED"));
			json_object_object_add(row, "ip_address", NULL);
			fl_api_mirror_sandbox(app, row);
			fl_log_info("sandbox mirror: %s is gone, marked DESTROYED", id);
		}
		json_object_put(arr);
	}
}

static void on_engine_event(const char *sandbox_id, const char *event, struct json_object *data,
			    void *userdata)
{
	EngineService *s = userdata;
	fl_events_engine_hook(sandbox_id, event, data, NULL);
	if (s->app && data) {
		_cleanup_(json_object_putp) struct json_object *o = fl_api_sandbox_json(data);
		if (o && !strcmp(event, "destroyed"))
			json_object_object_add(o, "state", json_object_new_string("DESTROYED"));
		if (o)
			fl_api_mirror_sandbox(s->app, o);
	}
}

/* ---- the service ----------------------------------------------------------- */

static void pick_image_dir(const FlConfig *cfg, char *buf, size_t len)
{
	char def[PATH_MAX + 16], exe[PATH_MAX];
	const char *env = getenv("FLUID_IMAGE_DIR");
	snprintf(def, sizeof(def), "%s/images", cfg->state_dir);
	snprintf(buf, len, "%s", cfg->images.dir);
	if ((env && *env) || strcmp(cfg->images.dir, def) != 0)
		return;
	/* The default collides with the engine's layer registry: use the
	 * images built next to the binary (build/fluid -> build/images). */
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return;
	exe[n] = 0;
	char *slash = strrchr(exe, '/');
	if (!slash)
		return;
	*slash = 0;
	char cand[PATH_MAX + 16];
	snprintf(cand, sizeof(cand), "%s/images", exe);
	if (is_dir(cand))
		snprintf(buf, len, "%s", cand);
}

static void *prepare_main(void *arg)
{
	EngineService *s = arg;
	FlError err = {0};
	char img[PATH_MAX + 200];
	snprintf(img, sizeof(img), "%s/%s/image.json", s->image_dir, s->default_image);
	if (access(img, R_OK) != 0) {
		fl_log_info("engine: default image '%s' is not built (%s): no template prepared",
			    s->default_image, img);
		return NULL;
	}
	fl_log_info("engine: preparing the template of '%s' in the background", s->default_image);
	int r = fl_engine_prepare_template(s->engine, s->default_image, s->app->cfg->limits.memory_mb,
					   s->app->cfg->limits.vcpus, &err);
	if (r < 0)
		fl_log_warn("engine: template of '%s': %s", s->default_image, err.msg);
	else
		fl_log_info("engine: template of '%s' ready", s->default_image);
	return NULL;
}

static void engine_status_extend(FlApp *app, struct json_object *status)
{
	if (!app->engine)
		return;
	struct json_object *st = fl_engine_status(app->engine), *cap, *v;
	if (!st)
		return;
	int64_t n = 0;
	if (json_object_object_get_ex(st, "sandboxes", &v) && json_object_is_type(v, json_type_object)) {
		json_object_object_foreach(v, k, cnt)
		{
			(void)k;
			n += json_object_get_int64(cnt);
		}
	}
	if (json_object_object_get_ex(status, "capacity", &cap))
		json_object_object_add(cap, "sandboxes", json_object_new_int64(n));
	json_object_object_add(st, "image_dir", json_object_new_string(svc.image_dir));
	json_object_object_add(status, "engine", st);
}

static int engine_start(FlApp *app, FlError *err)
{
	const FlConfig *cfg = app->cfg;
	EngineService *s = &svc;
	memset(s, 0, sizeof(*s));
	s->app = app;
	pick_image_dir(cfg, s->image_dir, sizeof(s->image_dir));
	snprintf(s->default_image, sizeof(s->default_image), "%s", cfg->images.default_image);

	FlEngineConfig ec = {
		.state_dir = cfg->state_dir,
		.image_dir = s->image_dir,
		.accel = fl_accel_name(app->accel.kind),
		.max_sandboxes = cfg->limits.max_sandboxes,
		.default_memory_mb = cfg->limits.memory_mb,
		.default_vcpus = cfg->limits.vcpus,
		.pool_size = cfg->images.pool_size,
		.tap_bridge = cfg->network.bridge,
		.on_event = on_engine_event,
		.userdata = s,
	};
	int r = fl_engine_new(&ec, &s->engine, err);
	if (r < 0)
		return fl_error_prefix(err, "sandbox engine");
	app->engine = s->engine;
	app->status_extend = engine_status_extend;
	fl_log_info("engine: state %s, images %s, accelerator %s, warm pool %u", cfg->state_dir,
		    s->image_dir, ec.accel, ec.pool_size);

	/* Reconcile the database mirror with what the engine recovered. */
	reconcile_mirror(app, s->engine);
	_cleanup_(json_object_putp) struct json_object *list = NULL;
	if (fl_engine_list(s->engine, &list) >= 0 && list) {
		for (size_t i = 0; i < json_object_array_length(list); i++) {
			_cleanup_(json_object_putp) struct json_object *o =
				fl_api_sandbox_json(json_object_array_get_idx(list, i));
			if (o)
				fl_api_mirror_sandbox(app, o);
		}
	}

	if (pthread_create(&s->prep_thread, NULL, prepare_main, s) == 0)
		s->prep_started = true;
	return 0;
}

static void engine_stop(FlApp *app)
{
	EngineService *s = &svc;
	if (s->prep_started) {
		pthread_join(s->prep_thread, NULL);
		s->prep_started = false;
	}
	app->status_extend = NULL;
	app->engine = NULL;
	if (s->engine)
		fl_engine_free(s->engine);
	s->engine = NULL;
}

FL_SERVICE(engine, 20, engine_start, engine_stop);
