// SPDX-License-Identifier: MIT
/*
 * api-approvals: human approvals and production apply (API.md
 * "Approvals", docs/approvals.md), and the approvals.h functions the rest
 * of the daemon uses.
 *
 *   POST /v1/approvals                  {kind?, summary*, change_id?, sandbox_id?,
 *                                        playbook?, details?, wait_seconds?} -> 201 {"approval"}
 *   GET  /v1/approvals                  ?state=&kind=&sandbox_id=&limit=&offset=
 *                                        -> {"approvals", "total"}
 *   GET  /v1/approvals/{id}             ?wait=SECONDS (long-poll) -> {"approval"}
 *   POST /v1/approvals/{id}/approve     {comment?} reviewer -> {"approval"}
 *   POST /v1/approvals/{id}/reject      {comment?} reviewer -> {"approval"}
 *   POST /v1/approvals/{id}/apply       {hosts?, check?} reviewer -> {"approval"} or NDJSON
 *   POST /api/v1/human/ask              {question*, sandbox_id?, change_id?,
 *                                        timeout_seconds?} -> blocks, {"approval", ...}
 *
 * DESIGN: PostgreSQL holds all approval state (db-approvals.c), so a
 * restart loses nothing and several handler threads see one truth. Waiters
 * (long-polls, fl_approval_wait) sleep on one condition variable with a
 * generation counter that every state change in this process bumps: a
 * decision wakes them at once, they re-read their row and go back to sleep
 * if it is still pending (no polling). Approve/reject/apply routes admit
 * agents so that the handler can audit the refused attempt before its 403.
 * An apply runs ansible-playbook in the handler thread (the HTTP worker is
 * the job: it streams the output to the caller) after the conditional
 * step approved -> applying; whatever happens it ends in applied or failed.
 * A crash in between leaves "applying", which the next start turns into
 * failed/"interrupted" (the playbook is never re-run by itself).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <civetweb.h>

#include "ansible-store.h"
#include "ansible.h"
#include "approvals.h"
#include "auth.h"
#include "base64.h"
#include "cleanup.h"
#include "engine-service.h"
#include "fsutil.h"
#include "log.h"

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)

extern char **environ;

#define MAX_WAITERS 48 /* HTTP long-polls at once (each holds a worker thread) */
#define MAX_APPLIES 2
#define APPLY_TIMEOUT_MS (30u * 60 * 1000)
#define MAX_APPLY_HOSTS 64

/* ---- waiters -------------------------------------------------------------- */

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv; /* CLOCK_MONOTONIC */
	uint64_t gen;	   /* bumped on every state change */
	bool stopping;
	unsigned http_waiters;
	unsigned applies;
} W = {.mu = PTHREAD_MUTEX_INITIALIZER};

static pthread_once_t w_once = PTHREAD_ONCE_INIT;

static void w_init(void)
{
	pthread_condattr_t a;
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(&W.cv, &a);
	pthread_condattr_destroy(&a);
}

static void notify(void)
{
	pthread_once(&w_once, w_init);
	pthread_mutex_lock(&W.mu);
	W.gen++;
	pthread_cond_broadcast(&W.cv);
	pthread_mutex_unlock(&W.mu);
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *jstr(struct json_object *o, const char *k)
{
	struct json_object *v;
	return o && json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string)
		       ? json_object_get_string(v)
		       : NULL;
}

int fl_approval_wait(FlApp *app, const char *id, int64_t timeout_ms, struct json_object **ret,
		     FlError *err)
{
	if (!app || !app->db)
		return fl_error_set(err, -ENOTCONN, "approvals need the database");
	pthread_once(&w_once, w_init);
	uint64_t deadline = mono_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
	for (;;) {
		pthread_mutex_lock(&W.mu);
		uint64_t gen = W.gen;
		bool stopping = W.stopping;
		pthread_mutex_unlock(&W.mu);
		/* read after taking gen: a decision committed from here on bumps it */
		struct json_object *rec = NULL;
		int r = fl_db_approval_get(app->db, id, &rec, err);
		if (r < 0)
			return r;
		const char *st = jstr(rec, "state");
		uint64_t now = mono_ms();
		if (!st || strcmp(st, "pending") || stopping || now >= deadline) {
			*ret = rec;
			return 0;
		}
		json_object_put(rec);
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t left = deadline - now;
		ts.tv_sec += (time_t)(left / 1000);
		ts.tv_nsec += (long)(left % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_mutex_lock(&W.mu);
		while (W.gen == gen && !W.stopping)
			if (pthread_cond_timedwait(&W.cv, &W.mu, &ts) == ETIMEDOUT)
				break;
		pthread_mutex_unlock(&W.mu);
	}
}

/* ---- creating ------------------------------------------------------------- */

static bool change_id_ok(const char *s)
{
	if (!s || strlen(s) != 36 || strncmp(s, "chg_", 4))
		return false;
	for (const char *p = s + 4; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

static bool text_ok(const char *s, bool multiline)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == 0x7f || (c < 0x20 && !(multiline && (c == '\n' || c == '\t'))))
			return false;
	}
	return true;
}

/*
 * The playbook as it would run: the rendered YAML, the render input and
 * the blobs, and the hash an approval pins (approvals.h).
 */
typedef struct Rendered {
	char *yaml;
	size_t len;
	struct json_object *got; /* {playbook, tasks} with content */
	struct json_object *in;	 /* fl_ansible_yaml input */
	char sha[FL_DB_HASH_HEX];
} Rendered;

static void rendered_clear(Rendered *p)
{
	free(p->yaml);
	json_object_put(p->got);
	json_object_put(p->in);
	*p = (Rendered){0};
}

static struct json_object *rendered_files(Rendered *p)
{
	struct json_object *pb = NULL, *f = NULL;
	if (json_object_object_get_ex(p->got, "playbook", &pb) &&
	    json_object_object_get_ex(pb, "files", &f))
		return f;
	return NULL;
}

static int render(FlDb *db, const char *name, Rendered *p, FlError *err)
{
	int r;
	if (!fl_ansible_name_valid(name))
		return fl_error_set(err, -EINVAL, "playbook names are [A-Za-z0-9._-]{1,64}");
	if ((r = fl_playbook_get(db, name, true, &p->got, err)) < 0)
		return r == -ENOENT ? fl_error_set(err, r, "no playbook %s", name) : r;
	p->in = fl_playbook_render_input(p->got);
	if (!p->in)
		return fl_error_set(err, -ENOMEM, "out of memory");
	if ((r = fl_ansible_yaml(p->in, &p->yaml, &p->len, err)) < 0)
		return r;
	return fl_approval_playbook_hash(p->yaml, p->len, rendered_files(p), p->sha) < 0
		       ? fl_error_set(err, -ENOMEM, "out of memory")
		       : 0;
}

/* The playbook a change (STATE/changes/<id>.json, api-changes.c) stored, and its sandbox. */
static int change_playbook(FlApp *app, const char *change_id, char name[FL_ANSIBLE_NAME_MAX + 1],
			   char sandbox[64], FlError *err)
{
	char path[4200];
	_cleanup_free_ char *text = NULL;
	size_t len;
	if ((size_t)snprintf(path, sizeof(path), "%s/changes/%s.json", app->cfg->state_dir,
			     change_id) >= sizeof(path) ||
	    fl_read_file(path, 64u << 20, &text, &len) < 0)
		return fl_error_set(err, -ENOENT, "no change %s", change_id);
	_cleanup_(json_object_putp) struct json_object *rec = json_tokener_parse(text);
	const char *pb = jstr(rec, "playbook"), *sid = jstr(rec, "sandbox_id"),
		   *st = jstr(rec, "state");
	if (st && !strcmp(st, "running"))
		return fl_error_set(err, -EBUSY, "change %s is still running; ask when it is done",
				    change_id);
	if (!pb || !fl_ansible_name_valid(pb))
		return fl_error_set(err, -EBUSY, "change %s has no stored playbook (state %s)",
				    change_id, st ? st : "?");
	snprintf(name, FL_ANSIBLE_NAME_MAX + 1, "%s", pb);
	snprintf(sandbox, 64, "%s", sid && fl_api_name_ok(sid, 63) ? sid : "");
	return 0;
}

static int approval_create(FlApp *app, const FlApprovalAsk *ask, const char *playbook,
			   struct json_object **ret, FlError *err)
{
	if (!app || !app->db)
		return fl_error_set(err, -ENOTCONN, "approvals need the database");
	const char *kind = ask->kind ? ask->kind : "question";
	if (!fl_approval_kind_valid(kind))
		return fl_error_set(err, -EINVAL, "kind must be change, command or question");
	if (!ask->summary || !ask->summary[0] || strlen(ask->summary) > FL_APPROVAL_SUMMARY_MAX ||
	    !text_ok(ask->summary, true))
		return fl_error_set(err, -EINVAL, "summary: 1-%d bytes of text",
				    FL_APPROVAL_SUMMARY_MAX);
	if (ask->sandbox_id && !fl_api_name_ok(ask->sandbox_id, 63))
		return fl_error_set(err, -EINVAL, "invalid sandbox_id");
	if (ask->change_id && !change_id_ok(ask->change_id))
		return fl_error_set(err, -EINVAL, "invalid change_id (chg_ + 32 hex digits)");
	if (ask->details) {
		if (!json_object_is_type(ask->details, json_type_object))
			return fl_error_set(err, -EINVAL, "details must be an object");
		size_t dl = 0;
		json_object_to_json_string_length(ask->details, JSON_C_TO_STRING_PLAIN, &dl);
		if (dl > FL_APPROVAL_DETAILS_MAX)
			return fl_error_set(err, -EMSGSIZE, "details: at most %u bytes of JSON",
					    FL_APPROVAL_DETAILS_MAX);
	}
	if (playbook && strcmp(kind, "change"))
		return fl_error_set(err, -EINVAL, "a playbook belongs to kind \"change\"");
	char pbname[FL_ANSIBLE_NAME_MAX + 1] = "", sandbox[64] = "";
	if (ask->sandbox_id)
		snprintf(sandbox, sizeof(sandbox), "%s", ask->sandbox_id);
	int r;
	if (playbook) {
		snprintf(pbname, sizeof(pbname), "%s", playbook);
	} else if (!strcmp(kind, "change") && ask->change_id) {
		char csb[64];
		if ((r = change_playbook(app, ask->change_id, pbname, csb, err)) < 0)
			return r;
		if (sandbox[0] && csb[0] && strcmp(sandbox, csb))
			return fl_error_set(err, -EINVAL, "change %s is of sandbox %s, not %s",
					    ask->change_id, csb, sandbox);
		if (!sandbox[0])
			snprintf(sandbox, sizeof(sandbox), "%s", csb);
	}
	if (!strcmp(kind, "change") && !pbname[0])
		return fl_error_set(err, -EINVAL,
				    "a change approval needs change_id (of a change "
				    "with a playbook) or playbook");
	_cleanup_(rendered_clear) Rendered pb = {0};
	if (pbname[0] && (r = render(app->db, pbname, &pb, err)) < 0)
		return r;

	char id[FL_APPROVAL_ID_LEN + 1];
	if ((r = fl_approval_new_id(id)) < 0)
		return fl_error_set(err, r, "no randomness: %s", strerror(-r));
	const char *who =
		ask->requested_by && ask->requested_by[0] ? ask->requested_by : "anonymous";
	FlDbApprovalNew a = {
		.id = id,
		.kind = kind,
		.summary = ask->summary,
		.details = ask->details,
		.sandbox_id = sandbox[0] ? sandbox : NULL,
		.change_id = ask->change_id,
		.playbook = pbname[0] ? pbname : NULL,
		.playbook_sha256 = pbname[0] ? pb.sha : NULL,
		.requested_by = who,
		.requested_role = fl_role_name(ask->requested_role),
	};
	_cleanup_(json_object_putp) struct json_object *d = json_object_new_object();
	json_object_object_add(d, "approval_id", json_object_new_string(id));
	json_object_object_add(d, "kind", json_object_new_string(kind));
	/* a prefix for the audit row, never cut inside a UTF-8 sequence */
	_cleanup_free_ char *brief =
		fl_approval_text_clean(ask->summary, strlen(ask->summary), 300);
	json_object_object_add(d, "summary", json_object_new_string(brief ? brief : ""));
	if (a.change_id)
		json_object_object_add(d, "change_id", json_object_new_string(a.change_id));
	if (a.playbook) {
		json_object_object_add(d, "playbook", json_object_new_string(a.playbook));
		json_object_object_add(d, "playbook_sha256", json_object_new_string(pb.sha));
	}
	FlAuditEvent ev = {.actor = who,
			   .role = a.requested_role,
			   .action = "approval.request",
			   .sandbox_id = a.sandbox_id,
			   .details = d};
	if ((r = fl_db_approval_insert(app->db, &a, &ev, ret, err)) < 0)
		return r;
	fl_log_info("approval %s requested by %s (%s): %.80s", id, who, kind, ask->summary);
	return 0;
}

int fl_approval_create(FlApp *app, const FlApprovalAsk *ask, struct json_object **ret, FlError *err)
{
	if (!ask || !ask->summary)
		return fl_error_set(err, -EINVAL, "an approval needs a summary");
	/* daemon callers pass what a guest or agent typed (a command line):
	 * cleaned and cut here rather than refused */
	_cleanup_free_ char *summary =
		fl_approval_text_clean(ask->summary, strlen(ask->summary), FL_APPROVAL_SUMMARY_MAX);
	if (!summary)
		return fl_error_set(err, -ENOMEM, "out of memory");
	FlApprovalAsk a = *ask;
	a.summary = summary;
	return approval_create(app, &a, NULL, ret, err);
}

/* ---- HTTP helpers ----------------------------------------------------------- */

static int need_db(FlHttpReq *req)
{
	if (!req->app->db)
		return fl_http_fail(req, -ENOTCONN,
				    "approvals need the database (none configured)");
	return 0;
}

static int send_approval(FlHttpReq *req, int status, struct json_object *rec)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	json_object_object_add(o, "approval", json_object_get(rec));
	return fl_http_send_json(req, status, o);
}

/* Strict non-negative integer query parameter; absent = def. */
static int query_uint(FlHttpReq *req, const char *name, uint64_t max, uint64_t def, uint64_t *ret)
{
	char buf[32];
	const char *v = fl_http_query(req, name, buf, sizeof(buf));
	if (!v) {
		*ret = def;
		return 0;
	}
	char *end;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 10);
	if (!*v || *end || errno || v[0] == '-' || v[0] == '+' || n > max)
		return fl_http_fail(req, -EINVAL, "%s: an integer 0..%llu", name,
				    (unsigned long long)max);
	*ret = n;
	return 0;
}

/* Long-poll on behalf of an HTTP caller: bounded in number (each holds a worker). */
static int http_wait(FlHttpReq *req, const char *id, uint64_t seconds, struct json_object **ret)
{
	FlError err = {0};
	pthread_once(&w_once, w_init);
	pthread_mutex_lock(&W.mu);
	bool full = W.http_waiters >= MAX_WAITERS;
	if (!full)
		W.http_waiters++;
	pthread_mutex_unlock(&W.mu);
	if (full)
		return fl_http_fail(req, -EUSERS, "too many long-polls at once (%d); retry",
				    MAX_WAITERS);
	int r = fl_approval_wait(req->app, id, (int64_t)seconds * 1000, ret, &err);
	pthread_mutex_lock(&W.mu);
	W.http_waiters--;
	pthread_mutex_unlock(&W.mu);
	return r < 0 ? fl_api_fail(req, r, &err) : 0;
}

/* A refused decision or apply: audited, then 403. reason NULL = the caller
 * is no reviewer. */
static int deny(FlHttpReq *req, const char *action, const char *id, const char *reason)
{
	char act[64];
	snprintf(act, sizeof(act), "%s.denied", action);
	_cleanup_(json_object_putp) struct json_object *d = json_object_new_object();
	json_object_object_add(d, "approval_id", json_object_new_string(id ? id : ""));
	json_object_object_add(d, "reason", json_object_new_string(
		reason ? reason : "requires the reviewer or admin role"));
	FlAuditEvent ev = fl_audit_event(req, act, NULL, d);
	ev.status = 403;
	FlError err = {0};
	if (req->app->db && fl_db_audit(req->app->db, &ev, NULL, &err) < 0)
		fl_log_warn("approvals: cannot audit a refused %s: %s", action, err.msg);
	fl_log_warn("approvals: %s by %s (%s) refused: %s", action,
		    req->actor[0] ? req->actor : "anonymous", fl_role_name(req->role),
		    reason ? reason : "not a reviewer");
	if (reason)
		return fl_http_fail(req, -EACCES, "%s of %s refused: %s", action, id, reason);
	return fl_http_fail(req, -EACCES,
			    "%s needs the reviewer role; agent tokens can never "
			    "approve, reject or apply",
			    action);
}

/* ---- handlers ----------------------------------------------------------------- */

static int post_approvals(FlHttpReq *req)
{
	static const char *const allowed[] = {"kind",	  "summary", "change_id",    "sandbox_id",
					      "playbook", "details", "wait_seconds", NULL};
	_cleanup_(json_object_putp) struct json_object *body = NULL, *rec = NULL;
	const char *kind = NULL, *summary = NULL, *change = NULL, *sandbox = NULL, *playbook = NULL;
	uint64_t wait = 0;
	struct json_object *details = NULL;
	int r;
	if ((r = need_db(req)) < 0 || (r = fl_http_read_json(req, &body)) < 0)
		return r;
	if ((r = fl_json_reject_unknown(body, allowed, &req->err)) < 0 ||
	    (r = fl_json_get_string(body, "kind", false, 16, &kind, &req->err)) < 0 ||
	    (r = fl_json_get_string(body, "summary", true, FL_APPROVAL_SUMMARY_MAX, &summary,
				    &req->err)) < 0 ||
	    (r = fl_json_get_string(body, "change_id", false, 64, &change, &req->err)) < 0 ||
	    (r = fl_json_get_string(body, "sandbox_id", false, 64, &sandbox, &req->err)) < 0 ||
	    (r = fl_json_get_string(body, "playbook", false, FL_ANSIBLE_NAME_MAX, &playbook,
				    &req->err)) < 0 ||
	    (r = fl_json_get_uint(body, "wait_seconds", false, 0, FL_APPROVAL_WAIT_MAX_S, &wait,
				  &req->err)) < 0)
		return r;
	if (json_object_object_get_ex(body, "details", &details) && details &&
	    !json_object_is_type(details, json_type_object))
		return fl_http_fail(req, -EINVAL, "details must be an object");
	if (!kind)
		kind = change || playbook ? "change" : "question";
	/* a "command" approval is what the safety policy asks before it runs
	 * a command; one made by a caller would only mislead a reviewer */
	if (!strcmp(kind, "command"))
		return fl_http_fail(req, -EINVAL, "kind \"command\" is reserved for the safety "
						  "policy: ask a \"question\" instead");
	if (sandbox && req->app->engine) {
		_cleanup_(json_object_putp) struct json_object *sb = NULL;
		if (fl_engine_get(req->app->engine, sandbox, &sb, NULL) == -ENOENT)
			return fl_http_fail(req, -ENOENT, "no sandbox %s", sandbox);
	}
	FlApprovalAsk ask = {.kind = kind,
			     .summary = summary,
			     .sandbox_id = sandbox,
			     .change_id = change,
			     .details = details,
			     .requested_by = req->actor,
			     .requested_role = req->role};
	FlError err = {0};
	if ((r = approval_create(req->app, &ask, playbook, &rec, &err)) < 0)
		return fl_api_fail(req, r, &err);
	if (wait) {
		const char *id = jstr(rec, "id");
		struct json_object *now = NULL;
		if ((r = http_wait(req, id, wait, &now)) < 0)
			return r;
		json_object_put(rec);
		rec = now;
	}
	return send_approval(req, 201, rec);
}
FL_ROUTE(post_approvals, "POST", "/v1/approvals", FL_ROLE_AGENT);

static int human_ask(FlHttpReq *req)
{
	static const char *const allowed[] = {"question", "sandbox_id", "change_id",
					      "timeout_seconds", NULL};
	_cleanup_(json_object_putp) struct json_object *body = NULL, *rec = NULL, *now = NULL;
	const char *q = NULL, *change = NULL, *sandbox = NULL;
	uint64_t timeout = 300;
	int r;
	if ((r = need_db(req)) < 0 || (r = fl_http_read_json(req, &body)) < 0)
		return r;
	if ((r = fl_json_reject_unknown(body, allowed, &req->err)) < 0 ||
	    (r = fl_json_get_string(body, "question", true, FL_APPROVAL_SUMMARY_MAX, &q,
				    &req->err)) < 0 ||
	    (r = fl_json_get_string(body, "change_id", false, 64, &change, &req->err)) < 0 ||
	    (r = fl_json_get_string(body, "sandbox_id", false, 64, &sandbox, &req->err)) < 0 ||
	    (r = fl_json_get_uint(body, "timeout_seconds", false, 0, FL_APPROVAL_ASK_MAX_S,
				  &timeout, &req->err)) < 0)
		return r;
	FlApprovalAsk ask = {.kind = change ? "change" : "question",
			     .summary = q,
			     .sandbox_id = sandbox,
			     .change_id = change,
			     .requested_by = req->actor,
			     .requested_role = req->role};
	FlError err = {0};
	if ((r = approval_create(req->app, &ask, NULL, &rec, &err)) < 0)
		return fl_api_fail(req, r, &err);
	if ((r = http_wait(req, jstr(rec, "id"), timeout, &now)) < 0)
		return r;
	const char *st = jstr(now, "state");
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	json_object_object_add(o, "approval", json_object_get(now));
	json_object_object_add(o, "state", json_object_new_string(st ? st : "pending"));
	json_object_object_add(
		o, "approved",
		json_object_new_boolean(st && strcmp(st, "pending") && strcmp(st, "rejected")));
	json_object_object_add(o, "comment",
			       json_object_get(json_object_object_get(now, "comment")));
	json_object_object_add(o, "timed_out",
			       json_object_new_boolean(!st || !strcmp(st, "pending")));
	return fl_http_send_json(req, 200, o);
}
FL_ROUTE(human_ask, "POST", "/api/v1/human/ask", FL_ROLE_AGENT);

static int list_approvals(FlHttpReq *req)
{
	char sb[64], kb[32], ib[80];
	const char *state = fl_http_query(req, "state", sb, sizeof(sb));
	const char *kind = fl_http_query(req, "kind", kb, sizeof(kb));
	const char *sandbox = fl_http_query(req, "sandbox_id", ib, sizeof(ib));
	uint64_t limit, offset;
	int r;
	if ((r = need_db(req)) < 0 || (r = fl_api_paging(req, &limit, &offset)) < 0)
		return r;
	if (state && !fl_approval_state_valid(state))
		return fl_http_fail(
			req, -EINVAL,
			"state: pending, approved, rejected, applying, applied or failed");
	if (kind && !fl_approval_kind_valid(kind))
		return fl_http_fail(req, -EINVAL, "kind: change, command or question");
	if (sandbox && !fl_api_name_ok(sandbox, 63))
		return fl_http_fail(req, -EINVAL, "invalid sandbox_id");
	if (offset > 1000000)
		return fl_http_fail(req, -EINVAL, "offset: at most 1000000");
	FlDbApprovalFilter f = {.state = state,
				.kind = kind,
				.sandbox_id = sandbox,
				.limit = (unsigned)limit,
				.offset = (unsigned)offset};
	_cleanup_(json_object_putp) struct json_object *arr = NULL;
	uint64_t total = 0;
	FlError err = {0};
	if ((r = fl_db_approvals_list(req->app->db, &f, &arr, &total, &err)) < 0)
		return fl_api_fail(req, r, &err);
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	json_object_object_add(o, "approvals",
			       limit ? json_object_get(arr) : json_object_new_array());
	json_object_object_add(o, "total", json_object_new_int64((int64_t)total));
	return fl_http_send_json(req, 200, o);
}
FL_ROUTE(list_approvals, "GET", "/v1/approvals", FL_ROLE_AGENT);

static int get_approval(FlHttpReq *req)
{
	const char *id = fl_http_param(req, "id");
	uint64_t wait = 0;
	int r;
	if ((r = need_db(req)) < 0 ||
	    (r = query_uint(req, "wait", FL_APPROVAL_WAIT_MAX_S, 0, &wait)) < 0)
		return r;
	if (!fl_approval_id_valid(id))
		return fl_http_fail(req, -ENOENT, "no approval %s", id ? id : "");
	_cleanup_(json_object_putp) struct json_object *rec = NULL;
	if (wait) {
		if ((r = http_wait(req, id, wait, &rec)) < 0)
			return r;
	} else {
		FlError err = {0};
		if ((r = fl_db_approval_get(req->app->db, id, &rec, &err)) < 0)
			return fl_api_fail(req, r, &err);
	}
	return send_approval(req, 200, rec);
}
FL_ROUTE(get_approval, "GET", "/v1/approvals/{id}", FL_ROLE_AGENT);

static int decide(FlHttpReq *req, bool approve)
{
	static const char *const allowed[] = {"comment", NULL};
	const char *action = approve ? "approval.approve" : "approval.reject";
	const char *id = fl_http_param(req, "id");
	if (req->role < FL_ROLE_REVIEWER)
		return deny(req, action, id, NULL);
	_cleanup_(json_object_putp) struct json_object *body = NULL, *cur = NULL, *rec = NULL;
	const char *comment = NULL;
	int r;
	if ((r = need_db(req)) < 0 || (r = fl_api_read_json_opt(req, &body)) < 0)
		return r;
	if ((r = fl_json_reject_unknown(body, allowed, &req->err)) < 0 ||
	    (r = fl_json_get_string(body, "comment", false, FL_APPROVAL_COMMENT_MAX, &comment,
				    &req->err)) < 0)
		return r;
	if (comment && !text_ok(comment, true))
		return fl_http_fail(req, -EINVAL, "comment: text without control characters");
	FlError err = {0};
	if ((r = fl_db_approval_get(req->app->db, id, &cur, &err)) < 0)
		return fl_api_fail(req, r, &err);
	/* Four eyes: whoever asked cannot approve (rejecting withdraws). */
	const char *asker = jstr(cur, "requested_by");
	if (approve && req->actor[0] && asker && !strcmp(asker, req->actor))
		return deny(req, action, id, "requested with the same token: another reviewer "
					     "must approve it");
	const char *to = approve ? "approved" : "rejected";
	_cleanup_(json_object_putp) struct json_object *d = json_object_new_object();
	json_object_object_add(d, "approval_id", json_object_new_string(id));
	json_object_object_add(d, "state", json_object_new_string(to));
	json_object_object_add(d, "kind", json_object_get(json_object_object_get(cur, "kind")));
	json_object_object_add(d, "playbook_sha256",
			       json_object_get(json_object_object_get(cur, "playbook_sha256")));
	json_object_object_add(d, "comment", comment ? json_object_new_string(comment) : NULL);
	FlAuditEvent ev = fl_audit_event(req, action, jstr(cur, "sandbox_id"), d);
	ev.status = 200;
	r = fl_db_approval_step(req->app->db, id, "pending", to,
				req->actor[0] ? req->actor : "anonymous", comment, NULL, &ev, &rec,
				&err);
	if (r < 0)
		return fl_api_fail(req, r, &err);
	notify();
	fl_log_info("approval %s %s by %s", id, to, req->actor[0] ? req->actor : "anonymous");
	return send_approval(req, 200, rec);
}

static int post_approve(FlHttpReq *req)
{
	return decide(req, true);
}
FL_ROUTE(post_approve, "POST", "/v1/approvals/{id}/approve", FL_ROLE_AGENT);
static int post_reject(FlHttpReq *req)
{
	return decide(req, false);
}
FL_ROUTE(post_reject, "POST", "/v1/approvals/{id}/reject", FL_ROLE_AGENT);

/* ---- production apply --------------------------------------------------------------- */

typedef struct Apply {
	FlHttpReq *req;
	bool ndjson, client_gone;
	char *tail; /* FL_APPROVAL_TAIL_MAX bytes */
	size_t tail_len;
	uint64_t bytes;
	bool hostkey_failed, truncated;
	char line[4096];
	size_t line_len;
} Apply;

static void send_line(Apply *a, struct json_object *o)
{
	if (!a->ndjson || a->client_gone)
		return;
	size_t len;
	const char *s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
	_cleanup_free_ char *line = malloc(len + 1);
	if (!line)
		return;
	memcpy(line, s, len);
	line[len] = '\n';
	/* a client that hangs up does not stop a production apply half way */
	if (mg_send_chunk(a->req->conn, line, (unsigned)(len + 1)) < 0)
		a->client_gone = true;
}

static void emit_line(Apply *a)
{
	if (!a->line_len)
		return;
	_cleanup_free_ char *t = fl_approval_text_clean(a->line, a->line_len, a->line_len);
	a->line_len = 0;
	if (!t)
		return;
	size_t k = strlen(t);
	if (strstr(t, "Host key verification failed") ||
	    strstr(t, "REMOTE HOST IDENTIFICATION HAS CHANGED") ||
	    strstr(t, "host key is known for"))
		a->hostkey_failed = true;
	if (a->ndjson && !a->client_gone) {
		_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
		json_object_object_add(o, "stream", json_object_new_string("stdout"));
		json_object_object_add(o, "data", json_object_new_string_len(t, (int)k));
		send_line(a, o);
	}
	if (k > FL_APPROVAL_TAIL_MAX)
		return;
	if (a->tail_len + k > FL_APPROVAL_TAIL_MAX) {
		size_t drop = a->tail_len + k - FL_APPROVAL_TAIL_MAX;
		memmove(a->tail, a->tail + drop, a->tail_len - drop);
		a->tail_len -= drop;
		a->truncated = true;
	}
	memcpy(a->tail + a->tail_len, t, k);
	a->tail_len += k;
}

static void on_output(Apply *a, const char *buf, size_t n)
{
	a->bytes += n;
	for (size_t i = 0; i < n; i++) {
		a->line[a->line_len++] = buf[i];
		if (buf[i] == '\n' || a->line_len == sizeof(a->line))
			emit_line(a);
	}
}

static int write_file(const char *dir, const char *name, const void *data, size_t len)
{
	char path[4200];
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
		return -ENAMETOOLONG;
	_cleanup_close_ int fd =
		open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	return fl_write_all(fd, data, len);
}

static bool address_ok(const char *s)
{
	if (!s || !*s || strlen(s) > 253)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || strchr(".:-", *s)))
			return false;
	return true;
}

static bool user_ok(const char *s)
{
	if (!s || !*s || strlen(s) > 32 || !((*s >= 'a' && *s <= 'z') || *s == '_'))
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || strchr("_.-", *s)))
			return false;
	return true;
}

/*
 * The production hosts to apply to: the names asked for, or every
 * configured host. Each needs an address, ssh_key and known_hosts.
 */
static int pick_hosts(FlHttpReq *req, struct json_object *names, const FlHostConfig **out,
		      size_t *n)
{
	const FlConfig *cfg = req->app->cfg;
	*n = 0;
	if (!cfg->n_hosts)
		return fl_http_fail(req, -EBUSY,
				    "no production hosts are configured (config hosts:)");
	size_t want = names ? json_object_array_length(names) : cfg->n_hosts;
	if (!want || want > MAX_APPLY_HOSTS)
		return fl_http_fail(req, -EINVAL, "hosts: 1-%d host names", MAX_APPLY_HOSTS);
	for (size_t i = 0; i < want; i++) {
		const FlHostConfig *h = NULL;
		if (names) {
			struct json_object *v = json_object_array_get_idx(names, i);
			const char *nm = json_object_is_type(v, json_type_string)
						 ? json_object_get_string(v)
						 : NULL;
			for (size_t j = 0; nm && j < cfg->n_hosts; j++)
				if (!strcmp(cfg->hosts[j].name, nm))
					h = &cfg->hosts[j];
			if (!h)
				return fl_http_fail(req, -EINVAL,
						    "hosts[%zu]: not a configured host", i);
			for (size_t j = 0; j < *n; j++)
				if (out[j] == h)
					return fl_http_fail(req, -EINVAL, "hosts: %s twice",
							    h->name);
		} else {
			h = &cfg->hosts[i];
		}
		if (!h->ssh_key || !h->known_hosts)
			return fl_http_fail(
				req, -EBUSY,
				"host %s has no ssh_key/known_hosts in the "
				"configuration: fluid applies only with a pinned host key",
				h->name);
		if (!address_ok(h->address) || (h->user && !user_ok(h->user)))
			return fl_http_fail(req, -EBUSY,
					    "host %s: address or user has characters fluid "
					    "does not pass to ssh",
					    h->name);
		out[(*n)++] = h;
	}
	return 0;
}

/* Work dir: playbook.yml (aimed at the inventory), files/, inventory.yml, ansible.cfg. */
static int prepare(const char *dir, const char *cm, Rendered *pb, const FlHostConfig *const *hosts,
		   size_t nh, FlError *err)
{
	char path[4200];
	int r;
	fl_rm_rf(dir);
	snprintf(path, sizeof(path), "%s/files", dir);
	if ((r = fl_mkdir_p(path, 0700)) < 0)
		return fl_error_set(err, r, "%s: %s", path, strerror(-r));
	snprintf(path, sizeof(path), "%s/tmp", dir);
	if ((r = fl_mkdir_p(path, 0700)) < 0)
		return fl_error_set(err, r, "%s: %s", path, strerror(-r));
	/* the approved play, aimed at the inventory (the hosts chosen for this apply) */
	_cleanup_(json_object_putp) struct json_object *play = json_object_new_object();
	json_object_object_foreach(pb->in, k, v)
	{
		if (strcmp(k, "hosts"))
			json_object_object_add(play, k, json_object_get(v));
	}
	json_object_object_add(play, "hosts", json_object_new_string("all"));
	_cleanup_free_ char *yaml = NULL;
	size_t len;
	if ((r = fl_ansible_yaml(play, &yaml, &len, err)) < 0)
		return r;
	if ((r = write_file(dir, "playbook.yml", yaml, len)) < 0)
		return fl_error_set(err, r, "playbook.yml: %s", strerror(-r));
	struct json_object *files = rendered_files(pb);
	for (size_t i = 0; files && i < json_object_array_length(files); i++) {
		struct json_object *f = json_object_array_get_idx(files, i);
		const char *src = jstr(f, "src"), *b64 = jstr(f, "content_b64");
		if (!src || strncmp(src, "files/", 6) || strchr(src + 6, '/') ||
		    strstr(src, "..") || !src[6])
			return fl_error_set(err, -EINVAL, "playbook file with a bad src");
		if (!b64)
			return fl_error_set(err, -EINVAL,
					    "%s: the playbook does not carry its content", src);
		_cleanup_free_ char *data = NULL;
		size_t dl;
		if (fl_base64_decode(b64, &data, &dl) < 0 || (r = write_file(dir, src, data, dl)) < 0)
			return fl_error_set(err, -EIO, "cannot write %s/%s", dir, src);
	}
	/* inventory as JSON (a YAML subset): no quoting pitfalls */
	_cleanup_(json_object_putp) struct json_object *inv = json_object_new_object();
	struct json_object *all = json_object_new_object(), *hs = json_object_new_object();
	json_object_object_add(inv, "all", all);
	json_object_object_add(all, "hosts", hs);
	for (size_t i = 0; i < nh; i++) {
		struct json_object *h = json_object_new_object();
		char args[1200];
		snprintf(args, sizeof(args), "-o UserKnownHostsFile=%s", hosts[i]->known_hosts);
		json_object_object_add(h, "ansible_host",
				       json_object_new_string(hosts[i]->address));
		json_object_object_add(h, "ansible_port", json_object_new_int((int)hosts[i]->port));
		if (hosts[i]->user)
			json_object_object_add(h, "ansible_user",
					       json_object_new_string(hosts[i]->user));
		json_object_object_add(h, "ansible_ssh_private_key_file",
				       json_object_new_string(hosts[i]->ssh_key));
		json_object_object_add(h, "ansible_ssh_common_args", json_object_new_string(args));
		json_object_object_add(hs, hosts[i]->name, h);
	}
	const char *it = json_object_to_json_string_ext(
		inv, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
	if ((r = write_file(dir, "inventory.yml", it, strlen(it))) < 0)
		return fl_error_set(err, r, "inventory: %s", strerror(-r));
	/*
	 * Host keys: only the configured known_hosts file (no global file, no
	 * ~/.ssh/config), StrictHostKeyChecking=yes, never accept-new. One
	 * connection per host for the run (control master in a short private
	 * directory).
	 */
	char cfgtext[2048];
	int n = snprintf(cfgtext, sizeof(cfgtext),
			 "[defaults]\nhost_key_checking = True\nretry_files_enabled = False\n"
			 "interpreter_python = auto_silent\ntimeout = 60\nforks = 8\n"
			 "[ssh_connection]\npipelining = True\n"
			 "ssh_args = -F /dev/null -o StrictHostKeyChecking=yes "
			 "-o GlobalKnownHostsFile=/dev/null -o IdentitiesOnly=yes -o BatchMode=yes "
			 "-o ControlMaster=auto -o ControlPersist=10s -o ControlPath=%s/%%C "
			 "-o ConnectTimeout=60\n",
			 cm);
	if ((r = write_file(dir, "ansible.cfg", cfgtext, (size_t)n)) < 0)
		return fl_error_set(err, r, "ansible.cfg: %s", strerror(-r));
	return 0;
}

/* Runs ansible-playbook in dir, output to a (streamed, tail kept). */
static int run_ansible(Apply *a, const char *dir, bool check, int *ret_status, bool *ret_timeout,
		       FlError *err)
{
	/* civetweb worker stacks are ~100 KiB: big buffers live on the heap */
	_cleanup_free_ char *cfg = NULL, *tmpd = NULL, *home = NULL, *buf = malloc(65536);
	if (!buf || asprintf(&cfg, "ANSIBLE_CONFIG=%s/ansible.cfg", dir) < 0 ||
	    asprintf(&tmpd, "ANSIBLE_LOCAL_TEMP=%s/tmp", dir) < 0 ||
	    asprintf(&home, "ANSIBLE_HOME=%s/home", dir) < 0)
		return fl_error_set(err, -ENOMEM, "out of memory");
	size_t ne = 0;
	for (char **v = environ; *v; v++)
		ne++;
	_cleanup_free_ char **envp = calloc(ne + 10, sizeof(char *));
	if (!envp)
		return fl_error_set(err, -ENOMEM, "out of memory");
	size_t k = 0;
	/* ours without ANSIBLE_* (no outside config) and without an ssh agent's keys */
	for (char **v = environ; *v; v++)
		if (strncmp(*v, "ANSIBLE_", 8) && strncmp(*v, "SSH_AUTH_SOCK=", 14))
			envp[k++] = *v;
	envp[k++] = cfg;
	envp[k++] = tmpd;
	envp[k++] = home;
	envp[k++] = (char *)"ANSIBLE_NOCOLOR=1";
	envp[k++] = (char *)"ANSIBLE_FORCE_COLOR=0";
	envp[k++] = (char *)"PYTHONUNBUFFERED=1";
	envp[k] = NULL;

	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return fl_error_set(err, -errno, "pipe: %m");
	_cleanup_close_ int rd = pfd[0];
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], STDOUT_FILENO);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], STDERR_FILENO);
	posix_spawn_file_actions_addchdir_np(&fa, dir);
	posix_spawnattr_t at;
	posix_spawnattr_init(&at);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);
	sigset_t none;
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setpgroup(&at, 0);
	char *argv[] = {(char *)"ansible-playbook",
			(char *)"-i",
			(char *)"inventory.yml",
			(char *)"playbook.yml",
			check ? (char *)"--check" : NULL,
			check ? (char *)"--diff" : NULL,
			NULL};
	pid_t pid;
	int r = posix_spawnp(&pid, "ansible-playbook", &fa, &at, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	close(pfd[1]);
	if (r)
		return fl_error_set(err, -r, "cannot run ansible-playbook: %s", strerror(r));

	/* output until the process exits (ssh masters it leaves may keep the pipe open) */
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	uint64_t deadline = mono_ms() + APPLY_TIMEOUT_MS;
	bool timed_out = false, exited = false, eof = false;
	while (!eof) {
		uint64_t now = mono_ms();
		if (now >= deadline) {
			kill(-pid, SIGKILL);
			timed_out = true;
			break;
		}
		struct pollfd p[2] = {{.fd = rd, .events = POLLIN},
				      {.fd = exited ? -1 : pidfd, .events = POLLIN}};
		int pr = poll(p, 2, exited ? 0 : (int)(deadline - now));
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr < 0)
			break;
		if (pr == 0 && exited)
			break; /* exited and nothing more to read now */
		if (p[0].revents) {
			ssize_t n = read(rd, buf, 65536);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				eof = true;
			else
				on_output(a, buf, (size_t)n);
		}
		if (p[1].revents)
			exited = true;
	}
	emit_line(a);
	if (pidfd >= 0)
		close(pidfd);
	int st = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	kill(-pid, SIGTERM); /* leftover ssh control masters of this run */
	*ret_timeout = timed_out;
	*ret_status = timed_out ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	return 0;
}

/* Runs the playbook; the result JSON (never NULL but on ENOMEM). */
static struct json_object *apply_run(Apply *a, const char *id, Rendered *pb,
				     const FlHostConfig *const *hosts, size_t nh, bool check)
{
	FlApp *app = a->req->app;
	struct json_object *res = json_object_new_object();
	char dir[4200], ts[32];
	uint64_t t0 = mono_ms();
	FlError err = {0};
	fl_api_time(time(NULL), ts);
	json_object_object_add(res, "started_at", json_object_new_string(ts));
	json_object_object_add(res, "check", json_object_new_boolean(check));
	json_object_object_add(res, "playbook_sha256", json_object_new_string(pb->sha));
	json_object_object_add(
		res, "applied_by",
		json_object_new_string(a->req->actor[0] ? a->req->actor : "anonymous"));
	struct json_object *hl = json_object_new_array();
	for (size_t i = 0; i < nh; i++)
		json_object_array_add(hl, json_object_new_string(hosts[i]->name));
	json_object_object_add(res, "hosts", hl);
	snprintf(dir, sizeof(dir), "%s/approvals/%s", app->cfg->state_dir, id);
	char cm[] = "/tmp/fl-apply-XXXXXX";
	int status = -1, r;
	bool timed_out = false;
	if (!mkdtemp(cm)) {
		r = fl_error_set(&err, -errno, "mkdtemp: %m");
		cm[0] = 0;
	} else if ((r = prepare(dir, cm, pb, hosts, nh, &err)) >= 0) {
		r = run_ansible(a, dir, check, &status, &timed_out, &err);
	}
	if (cm[0])
		fl_rm_rf(cm);
	fl_rm_rf(dir);
	_cleanup_free_ char *tail = fl_approval_text_clean(a->tail, a->tail_len, a->tail_len);
	struct json_object *recap = fl_approval_recap_parse(a->tail, a->tail_len);
	bool ok = r >= 0 && status == 0 && (size_t)json_object_object_length(recap) == nh;
	char unreach[512] = "";
	json_object_object_foreach(recap, hn, hv)
	{
		struct json_object *f = json_object_object_get(hv, "failed"),
				   *u = json_object_object_get(hv, "unreachable");
		if ((f && json_object_get_int(f)) || (u && json_object_get_int(u)))
			ok = false;
		size_t ul = strlen(unreach);
		if (u && json_object_get_int(u) && ul + strlen(hn) + 3 < sizeof(unreach))
			snprintf(unreach + ul, sizeof(unreach) - ul, "%s%s", ul ? ", " : "", hn);
	}
	json_object_object_add(res, "exit_code", status >= 0 ? json_object_new_int(status) : NULL);
	json_object_object_add(res, "ok", json_object_new_boolean(ok));
	json_object_object_add(res, "recap", recap);
	json_object_object_add(res, "output_tail", json_object_new_string(tail ? tail : ""));
	json_object_object_add(res, "output_bytes", json_object_new_int64((int64_t)a->bytes));
	json_object_object_add(res, "output_truncated", json_object_new_boolean(a->truncated));
	const char *error = NULL;
	char ebuf[600];
	if (r < 0)
		error = err.msg[0] ? err.msg : strerror(-r);
	else if (timed_out)
		error = "ansible-playbook timed out and was killed";
	else if (a->hostkey_failed)
		error = "host key verification failed: the host's key is not the one in its "
			"known_hosts file";
	else if (unreach[0]) {
		snprintf(ebuf, sizeof(ebuf), "unreachable over SSH: %s", unreach);
		error = ebuf;
	} else if (!ok) {
		snprintf(ebuf, sizeof(ebuf), "ansible-playbook exited %d%s", status,
			 (size_t)json_object_object_length(recap) < nh
				 ? " (not every host has a recap)"
				 : "");
		error = ebuf;
	}
	json_object_object_add(res, "error", error ? json_object_new_string(error) : NULL);
	fl_api_time(time(NULL), ts);
	json_object_object_add(res, "ended_at", json_object_new_string(ts));
	json_object_object_add(res, "duration_ms",
			       json_object_new_int64((int64_t)(mono_ms() - t0)));
	return res;
}

static struct json_object *audit_details(const char *id, struct json_object *res, const char *state)
{
	struct json_object *d = json_object_new_object();
	json_object_object_add(d, "approval_id", json_object_new_string(id));
	if (state)
		json_object_object_add(d, "state", json_object_new_string(state));
	static const char *const keys[] = {"hosts", "check", "playbook_sha256", "exit_code", "ok",
					   "recap", "error", "duration_ms",	NULL};
	for (size_t i = 0; res && keys[i]; i++) {
		struct json_object *v;
		if (json_object_object_get_ex(res, keys[i], &v))
			json_object_object_add(d, keys[i], json_object_get(v));
	}
	return d;
}

static int post_apply(FlHttpReq *req)
{
	static const char *const allowed[] = {"hosts", "check", NULL};
	const char *id = fl_http_param(req, "id");
	if (req->role < FL_ROLE_REVIEWER)
		return deny(req, "approval.apply", id, NULL);
	_cleanup_(json_object_putp) struct json_object *body = NULL, *cur = NULL, *rec = NULL,
						       *res = NULL;
	_cleanup_(rendered_clear) Rendered pb = {0};
	struct json_object *names = NULL;
	bool check = false;
	FlError err = {0};
	int r;
	if ((r = need_db(req)) < 0 || (r = fl_api_read_json_opt(req, &body)) < 0)
		return r;
	if ((r = fl_json_reject_unknown(body, allowed, &req->err)) < 0 ||
	    (r = fl_json_get_bool(body, "check", false, &check, &req->err)) < 0)
		return r;
	if (json_object_object_get_ex(body, "hosts", &names) &&
	    (!json_object_is_type(names, json_type_array) || !json_object_array_length(names)))
		return fl_http_fail(req, -EINVAL,
				    "hosts: a non-empty array of configured host names");
	if ((r = fl_db_approval_get(req->app->db, id, &cur, &err)) < 0)
		return fl_api_fail(req, r, &err);
	const char *state = jstr(cur, "state"), *sandbox = jstr(cur, "sandbox_id");
	if (!state)
		return fl_http_fail(req, -EIO, "approval %s has no state", id);
	if (!check && (r = fl_approval_transition_check(id, state, "applying", &err)) < 0)
		return fl_api_fail(req, r, &err);
	if (check && strcmp(state, "approved") && strcmp(state, "pending"))
		return fl_http_fail(req, -EBUSY,
				    "approval %s is %s: a check run needs a pending or "
				    "approved approval",
				    id, state);
	const char *pbname = jstr(cur, "playbook"), *want = jstr(cur, "playbook_sha256");
	if (!pbname || !want)
		return fl_http_fail(req, -EBUSY, "approval %s has no playbook to apply (kind %s)",
				    id, jstr(cur, "kind") ? jstr(cur, "kind") : "?");
	/* the playbook must still be, byte for byte, what the reviewer approved */
	if ((r = render(req->app->db, pbname, &pb, &err)) < 0)
		return fl_api_fail(req, r == -ENOENT ? -EBUSY : r, &err);
	if (strcmp(pb.sha, want)) {
		_cleanup_(json_object_putp) struct json_object *d = json_object_new_object();
		json_object_object_add(d, "approval_id", json_object_new_string(id));
		json_object_object_add(d, "approved_sha256", json_object_new_string(want));
		json_object_object_add(d, "current_sha256", json_object_new_string(pb.sha));
		FlAuditEvent ev = fl_audit_event(req, "approval.apply.refused", sandbox, d);
		ev.status = 409;
		if (fl_db_audit(req->app->db, &ev, NULL, &err) < 0)
			return fl_api_fail(req, -ENOTCONN, &err);
		return fl_http_fail(req, -EBUSY,
				    "playbook %s changed after approval (approved sha256 %.12s…, "
				    "now %.12s…): ask for a new approval",
				    pbname, want, pb.sha);
	}
	const FlHostConfig *hosts[MAX_APPLY_HOSTS];
	size_t nh = 0;
	if ((r = pick_hosts(req, names, hosts, &nh)) < 0)
		return r;
	pthread_once(&w_once, w_init);
	pthread_mutex_lock(&W.mu);
	bool busy = W.applies >= MAX_APPLIES || W.stopping;
	if (!busy)
		W.applies++;
	pthread_mutex_unlock(&W.mu);
	if (busy)
		return fl_http_fail(req, -EUSERS, "%d applies are running already", MAX_APPLIES);

	Apply a = {.req = req, .tail = malloc(FL_APPROVAL_TAIL_MAX)};
	const char *accept = fl_http_header(req, "Accept");
	a.ndjson = accept && strstr(accept, "application/x-ndjson");
	if (!a.tail) {
		r = fl_http_fail(req, -ENOMEM, "out of memory");
		goto out;
	}
	if (!check) {
		_cleanup_(json_object_putp) struct json_object *d =
			audit_details(id, NULL, "applying");
		struct json_object *hl = json_object_new_array();
		for (size_t i = 0; i < nh; i++)
			json_object_array_add(hl, json_object_new_string(hosts[i]->name));
		json_object_object_add(d, "hosts", hl);
		json_object_object_add(d, "playbook_sha256", json_object_new_string(pb.sha));
		FlAuditEvent ev = fl_audit_event(req, "approval.apply.start", sandbox, d);
		_cleanup_(json_object_putp) struct json_object *started = NULL;
		if ((r = fl_db_approval_step(req->app->db, id, "approved", "applying", NULL, NULL,
					     NULL, &ev, &started, &err)) < 0) {
			r = fl_api_fail(req, r, &err);
			goto out;
		}
		notify();
	}
	fl_log_info("approval %s: %s playbook %s on %zu host(s)", id,
		    check ? "check run of" : "applying", pbname, nh);
	if (a.ndjson) {
		mg_printf(req->conn,
			  "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
			  "Cache-Control: no-store\r\nX-Approval-Id: %s\r\n"
			  "Transfer-Encoding: chunked\r\n\r\n",
			  id);
		req->responded = true;
	}
	res = apply_run(&a, id, &pb, hosts, nh, check);
	bool ok = res && json_object_get_boolean(json_object_object_get(res, "ok"));
	if (check) {
		_cleanup_(json_object_putp) struct json_object *d = audit_details(id, res, NULL);
		FlAuditEvent ev = fl_audit_event(req, "approval.apply.check", sandbox, d);
		ev.status = 200;
		if (fl_db_audit(req->app->db, &ev, NULL, &err) < 0)
			fl_log_warn("approval %s: audit of the check run: %s", id, err.msg);
		rec = json_object_get(cur);
	} else {
		const char *to = ok ? "applied" : "failed";
		_cleanup_(json_object_putp) struct json_object *d = audit_details(id, res, to);
		FlAuditEvent ev = fl_audit_event(req, "approval.apply.done", sandbox, d);
		ev.status = 200;
		if ((r = fl_db_approval_step(req->app->db, id, "applying", to, NULL, NULL, res, &ev,
					     &rec, &err)) < 0) {
			/* stays "applying": the next start marks it interrupted */
			fl_log_error("approval %s: cannot record the apply result: %s", id,
				     err.msg);
			if (!a.ndjson) {
				r = fl_api_fail(req, r, &err);
				goto out;
			}
		}
		notify();
		fl_log_info("approval %s: %s (exit %d)", id, to,
			    json_object_get_int(json_object_object_get(res, "exit_code")));
	}
	if (a.ndjson) {
		_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
		json_object_object_add(o, "exit_code",
				       json_object_get(json_object_object_get(res, "exit_code")));
		json_object_object_add(o, "ok", json_object_new_boolean(ok));
		json_object_object_add(o, "error",
				       json_object_get(json_object_object_get(res, "error")));
		json_object_object_add(o, "state",
				       rec ? json_object_get(json_object_object_get(rec, "state"))
					   : NULL);
		json_object_object_add(o, "approval", json_object_get(rec));
		if (check)
			json_object_object_add(o, "check", json_object_get(res));
		send_line(&a, o);
		if (!a.client_gone)
			mg_send_chunk(req->conn, "", 0);
		r = 200;
	} else {
		_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
		json_object_object_add(o, "approval", json_object_get(rec));
		if (check)
			json_object_object_add(o, "check", json_object_get(res));
		r = fl_http_send_json(req, 200, o);
	}
out:
	free(a.tail);
	pthread_mutex_lock(&W.mu);
	W.applies--;
	pthread_mutex_unlock(&W.mu);
	return r;
}
FL_ROUTE(post_apply, "POST", "/v1/approvals/{id}/apply", FL_ROLE_AGENT);

/* ---- service ------------------------------------------------------------------------ */

static int approvals_start(FlApp *app, FlError *err)
{
	pthread_once(&w_once, w_init);
	pthread_mutex_lock(&W.mu);
	W.stopping = false;
	pthread_mutex_unlock(&W.mu);
	if (!app->db)
		return 0;
	unsigned n = 0;
	FlError e = {0};
	int r = fl_db_approvals_interrupted(app->db, &n, &e);
	if (r < 0)
		fl_log_warn("approvals: cannot check for interrupted applies: %s", e.msg);
	else if (n)
		fl_log_warn(
			"approvals: %u apply(ies) were interrupted by the last stop; marked failed "
			"(\"interrupted\"), not re-run",
			n);
	return 0;
}

/* Before the HTTP server waits for its handlers: long-polls answer now
 * (with the approval as it is) instead of at their timeout. */
static void approvals_wake(FlHttpServer *s)
{
	pthread_once(&w_once, w_init);
	pthread_mutex_lock(&W.mu);
	W.stopping = true;
	pthread_cond_broadcast(&W.cv);
	pthread_mutex_unlock(&W.mu);
}
FL_HTTP_STOP_HOOK(approvals_wake);
FL_SERVICE(approvals, 45, approvals_start, NULL);

int fl_approval_expire(FlApp *app, const char *id, const char *reason, FlError *err)
{
	if (!app || !app->db)
		return fl_error_set(err, -ENOTCONN, "approvals need the database");
	_cleanup_(json_object_putp) struct json_object *d = json_object_new_object(), *rec = NULL;
	json_object_object_add(d, "approval_id", json_object_new_string(id));
	json_object_object_add(d, "state", json_object_new_string("rejected"));
	json_object_object_add(d, "comment", json_object_new_string(reason));
	FlAuditEvent ev = {.actor = "system", .action = "approval.expire",
			   .status = 200, .details = d};
	int r = fl_db_approval_step(app->db, id, "pending", "rejected", "system", reason, NULL, &ev,
				    &rec, err);
	if (r >= 0)
		notify();
	return r;
}
