// SPDX-License-Identifier: MIT
/*
 * api-changes: the change pipeline as one job (API.md "Change pipeline",
 * docs/ansible.md "Changes").
 *
 *   POST /v1/sandboxes/{id}/changes  {from_snapshot*, to_snapshot*, ignore?, name?,
 *                                     rehearse? (true)} -> 202 {"change"}
 *   GET  /v1/changes/{id}            -> {"change"}
 *
 * A change runs diff (trusted, diff.h) -> playbook (generator, stored as
 * sandbox-<id> or name) -> rehearsal (rehearsal.h) and records its state
 * and progress in STATE/changes/<id>.json (atomic replace) after every
 * stage: {id, sandbox_id, from_snapshot, to_snapshot, state, stage,
 * rehearsal_stage, diff_id, playbook, flagged, skipped, rehearsal,
 * residual, verified, error, stages_ms, created_at, updated_at}.
 * state: running -> verified | unverified | failed; a record left
 * "running" by a previous process reads as "interrupted".
 *
 * DESIGN: each job is a detached thread with an 8 MiB stack (engine calls
 * talk QMP, which needs it). The only shared state is the job registry
 * below (running ids, a stopping flag, a condition variable, a cancel
 * eventfd): the service's stop cancels running jobs (their ansible-playbook
 * children are killed, a diff in progress is let finish) and waits for them
 * before the engine and the database go; new jobs are refused (503) then. Jobs are bounded by
 * MAX_JOBS: each holds an inspector and a clone (two VMs).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "ansible-store.h"
#include "ansible.h"
#include "auth.h"
#include "cleanup.h"
#include "diff.h"
#include "engine-service.h"
#include "fsutil.h"
#include "log.h"
#include "rehearsal.h"

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)

#define MAX_JOBS 4

#define CHANGE_ID_LEN 36 /* "chg_" + 32 hex */

static struct {
	pthread_mutex_t mu;
	pthread_cond_t idle;
	unsigned running;
	bool stopping;
	int cancel_fd; /* eventfd: written once when the server stops */
	char ids[MAX_JOBS][CHANGE_ID_LEN + 1]; /* running jobs; "" = free slot */
} jobs = {.mu = PTHREAD_MUTEX_INITIALIZER, .idle = PTHREAD_COND_INITIALIZER};

/* Called with jobs.mu held. */
static bool job_running(const char *id)
{
	for (int i = 0; i < MAX_JOBS; i++)
		if (!strcmp(jobs.ids[i], id))
			return true;
	return false;
}

static void job_slot(const char *id, bool add)
{
	for (int i = 0; i < MAX_JOBS; i++) {
		if (add && !jobs.ids[i][0]) {
			snprintf(jobs.ids[i], sizeof(jobs.ids[i]), "%s", id);
			return;
		}
		if (!add && !strcmp(jobs.ids[i], id)) {
			jobs.ids[i][0] = 0;
			return;
		}
	}
}

typedef struct Job {
	FlApp *app;
	char id[CHANGE_ID_LEN + 1];
	char sandbox_id[64];
	char from[80], to[80];
	char name[FL_ANSIBLE_NAME_MAX + 1];
	char actor[64];
	char role[16];
	bool rehearse;
	struct json_object *ignore; /* array of strings */
	struct json_object *rec;    /* the change record, written after each stage */
	uint64_t t0;
} Job;

static bool change_id_ok(const char *s)
{
	if (!s || strlen(s) != CHANGE_ID_LEN || strncmp(s, "chg_", 4))
		return false;
	for (const char *p = s + 4; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

static int change_path(const FlApp *app, const char *id, char *buf, size_t len)
{
	if ((size_t)snprintf(buf, len, "%s/changes/%s.json", app->cfg->state_dir, id) >= len)
		return -ENAMETOOLONG;
	return 0;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct json_object *now_json(void)
{
	char buf[32];
	fl_api_time(time(NULL), buf);
	return json_object_new_string(buf);
}

static void save(Job *j)
{
	char path[4200];
	json_object_object_add(j->rec, "updated_at", now_json());
	const char *text = json_object_to_json_string_ext(j->rec, JSON_C_TO_STRING_PLAIN |
								       JSON_C_TO_STRING_NOSLASHESCAPE);
	int r = change_path(j->app, j->id, path, sizeof(path));
	if (r >= 0)
		r = fl_write_file_atomic(path, text, strlen(text), 0640);
	if (r < 0)
		fl_log_warn("change %s: cannot save %s: %s", j->id, path, strerror(-r));
}

static void set_str(Job *j, const char *k, const char *v)
{
	json_object_object_add(j->rec, k, v ? json_object_new_string(v) : NULL);
}

static void stage_done(Job *j, const char *name, uint64_t started)
{
	struct json_object *st = json_object_object_get(j->rec, "stages_ms");
	json_object_object_add(st, name, json_object_new_int64((int64_t)(mono_ms() - started)));
}

static void on_rehearsal_stage(const char *stage, void *ud)
{
	Job *j = ud;
	set_str(j, "rehearsal_stage", stage);
	save(j);
	fl_api_publish(j->sandbox_id, "change.progress", j->rec);
}

static void audit_change(Job *j, const char *action)
{
	if (!j->app->db)
		return;
	_cleanup_(json_object_putp) struct json_object *d = json_object_new_object();
	json_object_object_add(d, "change_id", json_object_new_string(j->id));
	json_object_object_add(d, "state", json_object_get(json_object_object_get(j->rec, "state")));
	json_object_object_add(d, "verified", json_object_get(json_object_object_get(j->rec, "verified")));
	FlAuditEvent ev = {.actor = j->actor[0] ? j->actor : NULL, .role = j->role, .action = action,
			   .sandbox_id = j->sandbox_id, .details = d};
	FlError err = {0};
	if (fl_db_audit(j->app->db, &ev, NULL, &err) < 0)
		fl_log_warn("change %s: audit: %s", j->id, err.msg);
}

static void job_fail(Job *j, const char *fmt, const char *msg)
{
	char buf[700];
	snprintf(buf, sizeof(buf), fmt, msg);
	set_str(j, "state", "failed");
	set_str(j, "error", buf);
	fl_log_warn("change %s of %s failed: %s", j->id, j->sandbox_id, buf);
}

static bool stopping(void)
{
	pthread_mutex_lock(&jobs.mu);
	bool s = jobs.stopping;
	pthread_mutex_unlock(&jobs.mu);
	return s;
}

static void run_job(Job *j)
{
	FlApp *app = j->app;
	FlEngine *e = app->engine;
	FlError err = {0};
	uint64_t t;
	int r;

	/* 1. trusted diff */
	set_str(j, "stage", "diff");
	save(j);
	t = mono_ms();
	const char *ignore[FL_DIFF_MAX_IGNORE];
	size_t ni = 0;
	for (size_t i = 0; j->ignore && i < json_object_array_length(j->ignore) && ni < FL_DIFF_MAX_IGNORE; i++)
		ignore[ni++] = json_object_get_string(json_object_array_get_idx(j->ignore, i));
	if (!strcmp(j->to, "live")) {
		snprintf(j->to, sizeof(j->to), "live-%lld", (long long)time(NULL));
		if ((r = fl_engine_snapshot(e, j->sandbox_id, j->to, false, NULL, &err)) < 0)
			return job_fail(j, "live snapshot: %s", err.msg);
		set_str(j, "to_snapshot", j->to);
	}
	FlDiffSpec ds = {.sandbox_id = j->sandbox_id, .from = j->from, .to = j->to, .ignore = ignore,
			 .n_ignore = ni};
	struct json_object *dj = NULL;
	FlDiffInfo info = {0};
	if ((r = fl_diff_compute(e, &ds, &dj, &info, &err)) < 0)
		return job_fail(j, "diff: %s", err.msg[0] ? err.msg : strerror(-r));
	/* commands between the snapshots, as the diff API does */
	FlHttpReq fake = {.app = app};
	_cleanup_(json_object_putp) struct json_object *all = json_object_new_array();
	for (unsigned page = 0; page < 100; page++) {
		_cleanup_(json_object_putp) struct json_object *o = NULL;
		if (fl_api_commands_list(&fake, j->sandbox_id, 1000, (uint64_t)page * 1000, &o) < 0)
			break;
		struct json_object *cmds = json_object_object_get(o, "commands");
		size_t n = cmds ? json_object_array_length(cmds) : 0;
		for (size_t i = 0; i < n; i++)
			json_object_array_add(all, json_object_get(json_object_array_get_idx(cmds, i)));
		if (n < 1000)
			break;
	}
	json_object_object_add(dj, "commands_run",
			       fl_diff_commands_between(all, info.from_created_at, info.to_created_at));
	_cleanup_(json_object_putp) struct json_object *drec = fl_diff_record(j->sandbox_id, j->from, j->to, dj);
	if (!drec || (r = fl_diff_store(app->cfg->state_dir, drec, &err)) < 0)
		return job_fail(j, "storing the diff: %s", err.msg);
	const char *diff_id = json_object_get_string(json_object_object_get(drec, "id"));
	set_str(j, "diff_id", diff_id);
	stage_done(j, "diff", t);

	/* 2. playbook */
	if (stopping())
		return job_fail(j, "%s", "the server stopped after the diff");
	set_str(j, "stage", "playbook");
	save(j);
	t = mono_ms();
	_cleanup_(json_object_putp) struct json_object *pb = NULL, *stored = NULL;
	FlAnsibleGenOptions go = {.name = j->name};
	if ((r = fl_ansible_generate(dj, &go, &pb, &err)) < 0)
		return job_fail(j, "playbook: %s", err.msg);
	struct json_object *tasks = json_object_object_get(pb, "tasks");
	struct json_object *files = json_object_object_get(pb, "files");
	struct json_object *skipped = json_object_object_get(pb, "skipped");
	struct json_object *inc = json_object_object_get(pb, "incomplete");
	if (app->db) {
		_cleanup_(json_object_putp) struct json_object *d = json_object_new_object();
		json_object_object_add(d, "playbook", json_object_new_string(j->name));
		json_object_object_add(d, "diff_id", json_object_new_string(diff_id));
		json_object_object_add(d, "change_id", json_object_new_string(j->id));
		FlAuditEvent ev = {.actor = j->actor[0] ? j->actor : NULL, .role = j->role,
				   .action = "playbook.generate", .sandbox_id = j->sandbox_id, .details = d};
		FlPlaybookPut p = {.name = j->name, .become = true, .tasks = tasks, .files = files,
				   .skipped = skipped, .incomplete = inc && json_object_get_boolean(inc),
				   .sandbox_id = j->sandbox_id, .diff_id = diff_id,
				   .replace_generated = true};
		if ((r = fl_playbook_put(app->db, &p, &ev, &stored, &err)) < 0)
			return job_fail(j, "storing the playbook: %s", err.msg);
		set_str(j, "playbook", j->name);
	} else {
		json_object_object_add(j->rec, "playbook", NULL); /* not stored without a database */
	}
	json_object_object_add(j->rec, "flagged", json_object_get(json_object_object_get(pb, "flagged")));
	json_object_object_add(j->rec, "skipped", json_object_get(skipped));
	json_object_object_add(j->rec, "incomplete", json_object_new_boolean(inc && json_object_get_boolean(inc)));
	stage_done(j, "playbook", t);

	/* 3. rehearsal */
	if (!j->rehearse) {
		set_str(j, "state", "unverified");
		set_str(j, "stage", "done");
		json_object_object_add(j->rec, "verified", json_object_new_boolean(0));
		return;
	}
	set_str(j, "stage", "rehearsal");
	save(j);
	t = mono_ms();
	char wd[4200];
	snprintf(wd, sizeof(wd), "%s/changes/%s.d", app->cfg->state_dir, j->id);
	_cleanup_(json_object_putp) struct json_object *res = NULL;
	if (stopping())
		return job_fail(j, "%s", "the server stopped before the rehearsal");
	FlRehearsalSpec rs = {.sandbox_id = j->sandbox_id, .diff_json = dj, .playbook = pb,
			      .files = files, .work_dir = wd, .progress = on_rehearsal_stage,
			      .userdata = j, .cancel_fd = jobs.cancel_fd};
	if ((r = fl_rehearse(e, &rs, &res, &err)) < 0)
		return job_fail(j, "rehearsal: %s", err.msg[0] ? err.msg : strerror(-r));
	stage_done(j, "rehearsal", t);
	bool verified = json_object_get_boolean(json_object_object_get(res, "verified"));
	json_object_object_add(j->rec, "verified", json_object_new_boolean(verified));
	json_object_object_add(j->rec, "residual", json_object_get(json_object_object_get(res, "residual")));
	/* the summary without the clone's whole diff (kept in the work dir's logs) */
	json_object_object_del(res, "target_diff");
	json_object_object_del(res, "residual");
	json_object_object_add(j->rec, "rehearsal", json_object_get(res));
	set_str(j, "state", verified ? "verified" : "unverified");
	set_str(j, "stage", "done");
}

static void *job_thread(void *arg)
{
	Job *j = arg;
	run_job(j);
	stage_done(j, "total", j->t0);
	save(j);
	fl_api_publish(j->sandbox_id, "change.done", j->rec);
	audit_change(j, "change.done");
	pthread_mutex_lock(&jobs.mu);
	job_slot(j->id, false);
	jobs.running--;
	pthread_cond_broadcast(&jobs.idle);
	pthread_mutex_unlock(&jobs.mu);
	json_object_put(j->rec);
	json_object_put(j->ignore);
	free(j);
	return NULL;
}

static int post_changes(FlHttpReq *req)
{
	static const char *const allowed[] = {"from_snapshot", "to_snapshot", "ignore", "name",
					      "rehearse", NULL};
	_cleanup_(json_object_putp) struct json_object *body = NULL;
	const char *from = NULL, *to = NULL, *name = NULL;
	bool rehearse = true;
	char id[64];
	struct json_object *ig = NULL;
	int r = fl_api_sandbox_lookup(req, id, NULL);
	if (r < 0 || (r = fl_http_read_json(req, &body)) < 0)
		return r;
	if ((r = fl_json_reject_unknown(body, allowed, &req->err)) < 0 ||
	    (r = fl_json_get_string(body, "from_snapshot", true, 64, &from, &req->err)) < 0 ||
	    (r = fl_json_get_string(body, "to_snapshot", true, 64, &to, &req->err)) < 0 ||
	    (r = fl_json_get_string(body, "name", false, FL_ANSIBLE_NAME_MAX, &name, &req->err)) < 0 ||
	    (r = fl_json_get_bool(body, "rehearse", false, &rehearse, &req->err)) < 0)
		return r;
	if (!fl_api_name_ok(from, 64) || (strcmp(to, "live") && !fl_api_name_ok(to, 64)))
		return fl_http_fail(req, -EINVAL, "invalid snapshot name");
	if (name && !fl_ansible_name_valid(name))
		return fl_http_fail(req, -EINVAL, "playbook names are [A-Za-z0-9._-]{1,64}");
	if (json_object_object_get_ex(body, "ignore", &ig)) {
		if (!json_object_is_type(ig, json_type_array) ||
		    json_object_array_length(ig) > FL_DIFF_MAX_IGNORE)
			return fl_http_fail(req, -EINVAL, "ignore: an array of at most %d patterns",
					    FL_DIFF_MAX_IGNORE);
		for (size_t i = 0; i < json_object_array_length(ig); i++) {
			struct json_object *p = json_object_array_get_idx(ig, i);
			if (!json_object_is_type(p, json_type_string) ||
			    json_object_get_string_len(p) > 255 || strchr(json_object_get_string(p), '\n'))
				return fl_http_fail(req, -EINVAL, "ignore: patterns are strings (255 bytes, no newline)");
		}
	}
	if (!fl_api_engine(req))
		return fl_http_fail(req, -ENODEV, "no sandbox engine");

	Job *j = calloc(1, sizeof(*j));
	if (!j)
		return fl_http_fail(req, -ENOMEM, "out of memory");
	unsigned char rnd[16];
	if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd)) {
		free(j);
		return fl_http_fail(req, -EIO, "no randomness");
	}
	memcpy(j->id, "chg_", 4);
	for (int i = 0; i < 16; i++)
		snprintf(j->id + 4 + 2 * i, 3, "%02x", rnd[i]);
	j->app = req->app;
	snprintf(j->sandbox_id, sizeof(j->sandbox_id), "%s", id);
	snprintf(j->from, sizeof(j->from), "%s", from);
	snprintf(j->to, sizeof(j->to), "%s", to);
	if (name)
		snprintf(j->name, sizeof(j->name), "%s", name);
	else if ((size_t)snprintf(j->name, sizeof(j->name), "sandbox-%s", id) >= sizeof(j->name) ||
		 !fl_ansible_name_valid(j->name)) {
		free(j);
		return fl_http_fail(req, -EINVAL, "give a name: sandbox-%s is not a valid playbook name", id);
	}
	snprintf(j->actor, sizeof(j->actor), "%s", req->actor);
	snprintf(j->role, sizeof(j->role), "%s", fl_role_name(req->role));
	j->rehearse = rehearse;
	j->ignore = ig ? json_object_get(ig) : NULL;
	j->t0 = mono_ms();
	j->rec = json_object_new_object();
	set_str(j, "id", j->id);
	set_str(j, "sandbox_id", id);
	set_str(j, "from_snapshot", from);
	set_str(j, "to_snapshot", to);
	set_str(j, "state", "running");
	set_str(j, "stage", "queued");
	json_object_object_add(j->rec, "created_at", now_json());
	json_object_object_add(j->rec, "stages_ms", json_object_new_object());

	char dir[4200];
	snprintf(dir, sizeof(dir), "%s/changes", req->app->cfg->state_dir);
	if ((r = fl_mkdir_p(dir, 0750)) < 0) {
		json_object_put(j->rec);
		json_object_put(j->ignore);
		free(j);
		return fl_http_fail(req, r, "%s: %s", dir, strerror(-r));
	}
	pthread_mutex_lock(&jobs.mu);
	if (jobs.stopping || jobs.running >= MAX_JOBS) {
		bool stopping = jobs.stopping;
		pthread_mutex_unlock(&jobs.mu);
		json_object_put(j->rec);
		json_object_put(j->ignore);
		free(j);
		return stopping ? fl_http_fail(req, -ENOTCONN, "the server is stopping")
				: fl_http_fail(req, -EBUSY, "%d change jobs are running already", MAX_JOBS);
	}
	jobs.running++;
	job_slot(j->id, true);
	pthread_mutex_unlock(&jobs.mu);
	save(j);
	_cleanup_(json_object_putp) struct json_object *out = json_object_new_object();
	json_object_object_add(out, "change", json_object_get(j->rec));
	audit_change(j, "change.start");

	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setstacksize(&at, 8u << 20);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_t th;
	r = pthread_create(&th, &at, job_thread, j);
	pthread_attr_destroy(&at);
	if (r) {
		set_str(j, "state", "failed");
		set_str(j, "error", "cannot start the job thread");
		save(j);
		pthread_mutex_lock(&jobs.mu);
		job_slot(j->id, false);
		jobs.running--;
		pthread_cond_broadcast(&jobs.idle);
		pthread_mutex_unlock(&jobs.mu);
		json_object_put(j->rec);
		json_object_put(j->ignore);
		free(j);
		return fl_http_fail(req, -r, "cannot start the change job");
	}
	return fl_http_send_json(req, 202, out);
}
FL_ROUTE(post_changes, "POST", "/v1/sandboxes/{id}/changes", FL_ROLE_AGENT);

static int get_change(FlHttpReq *req)
{
	const char *id = fl_http_param(req, "id");
	char path[4200];
	_cleanup_free_ char *text = NULL;
	size_t len;
	if (!change_id_ok(id))
		return fl_http_fail(req, -ENOENT, "no change %s", id ? id : "");
	int r = change_path(req->app, id, path, sizeof(path));
	if (r < 0 || (r = fl_read_file(path, 64u << 20, &text, &len)) < 0)
		return fl_http_fail(req, -ENOENT, "no change %s", id);
	_cleanup_(json_object_putp) struct json_object *rec = json_tokener_parse(text);
	if (!rec)
		return fl_http_fail(req, -EIO, "change %s: unreadable record", id);
	/* a job of a previous process that never finished */
	struct json_object *st = json_object_object_get(rec, "state");
	if (st && !strcmp(json_object_get_string(st), "running")) {
		pthread_mutex_lock(&jobs.mu);
		bool live = job_running(id);
		pthread_mutex_unlock(&jobs.mu);
		if (!live)
			json_object_object_add(rec, "state", json_object_new_string("interrupted"));
	}
	_cleanup_(json_object_putp) struct json_object *out = json_object_new_object();
	json_object_object_add(out, "change", json_object_get(rec));
	return fl_http_send_json(req, 200, out);
}
FL_ROUTE(get_change, "GET", "/v1/changes/{id}", FL_ROLE_AGENT);

static int changes_start(FlApp *app, FlError *err)
{
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fd < 0)
		return fl_error_set(err, -errno, "eventfd: %m");
	pthread_mutex_lock(&jobs.mu);
	jobs.stopping = false;
	jobs.cancel_fd = fd;
	pthread_mutex_unlock(&jobs.mu);
	return 0;
}

/* After the HTTP server stopped, before the engine and the database go. */
static void changes_stop(FlApp *app)
{
	pthread_mutex_lock(&jobs.mu);
	jobs.stopping = true;
	if (jobs.running)
		fl_log_info("cancelling %u change job(s)", jobs.running);
	/* running ansible-playbook children are killed; a diff in progress
	 * (bounded by its own timeout) is waited for */
	uint64_t one = 1;
	if (jobs.cancel_fd > 0 && write(jobs.cancel_fd, &one, sizeof(one)) < 0)
		fl_log_warn("change jobs: cannot signal the cancel eventfd: %m");
	while (jobs.running)
		pthread_cond_wait(&jobs.idle, &jobs.mu);
	if (jobs.cancel_fd > 0)
		close(jobs.cancel_fd);
	jobs.cancel_fd = 0;
	pthread_mutex_unlock(&jobs.mu);
}
FL_SERVICE(changes, 40, changes_start, changes_stop);
