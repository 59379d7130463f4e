// SPDX-License-Identifier: MIT
/*
 * api-audit: reading the audit log (reviewer and admin).
 *   GET /v1/audit?sandbox_id=&action=&since=&after_id=&limit=
 *       -> {"events": [...]} oldest first; without since/after_id the
 *       newest `limit` (default 100, at most 1000). since is RFC 3339 or
 *       unix seconds.
 *   GET /v1/audit/verify -> the chain report of fl_db_audit_verify()
 *       (200 whether or not the chain is intact; "ok" says which).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "cleanup.h"
#include "http.h"

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)

static int need_db(FlHttpReq *req)
{
	if (!req->app->db)
		return fl_http_fail(req, -ENOTCONN, "the audit log needs the database (none is configured)");
	return 0;
}

/* Full-check unsigned decimal. */
static int parse_u64(const char *s, uint64_t max, uint64_t *ret)
{
	if (!s || !*s || strlen(s) > 19)
		return -EINVAL;
	for (const char *p = s; *p; p++)
		if (*p < '0' || *p > '9')
			return -EINVAL;
	unsigned long long v = strtoull(s, NULL, 10);
	if (v > max)
		return -ERANGE;
	*ret = v;
	return 0;
}

static int get_audit(FlHttpReq *req)
{
	char sb[FL_HTTP_MAX_PARAM_LEN], act[80], since[80], after[32], lim[16], ts[40];
	FlDbAuditQuery q = {0};
	uint64_t v;
	FlError err = {0};
	struct json_object *arr = NULL;
	int r;

	if ((r = need_db(req)) < 0)
		return r;
	q.sandbox_id = fl_http_query(req, "sandbox_id", sb, sizeof(sb));
	q.action = fl_http_query(req, "action", act, sizeof(act));
	const char *s = fl_http_query(req, "since", since, sizeof(since));
	if (s && *s) {
		if (parse_u64(s, (uint64_t)1 << 40, &v) == 0) {
			time_t t = (time_t)v;
			struct tm tm;
			gmtime_r(&t, &tm);
			strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
			q.since = ts;
		} else {
			q.since = s;
		}
	}
	const char *a = fl_http_query(req, "after_id", after, sizeof(after));
	if (a) {
		if (parse_u64(a, INT64_MAX, &v) < 0)
			return fl_http_fail(req, -EINVAL, "after_id must be a row id");
		q.after_id = (int64_t)v;
	}
	const char *l = fl_http_query(req, "limit", lim, sizeof(lim));
	if (l) {
		if (parse_u64(l, 1000, &v) < 0 || v == 0)
			return fl_http_fail(req, -EINVAL, "limit must be 1-1000");
		q.limit = (unsigned)v;
	}
	r = fl_db_audit_list(req->app->db, &q, &arr, &err);
	if (r == -EINVAL)
		return fl_http_fail(req, r, "bad query: %s", err.msg);
	if (r < 0)
		return fl_http_fail(req, r, "%s", err.msg);
	_cleanup_(json_object_putp) struct json_object *out = json_object_new_object();
	if (!out) {
		json_object_put(arr);
		return fl_http_fail(req, -ENOMEM, "out of memory");
	}
	json_object_object_add(out, "events", arr);
	return fl_http_send_json(req, 200, out);
}
FL_ROUTE(get_audit, "GET", "/v1/audit", FL_ROLE_REVIEWER);

static int get_audit_verify(FlHttpReq *req)
{
	_cleanup_(json_object_putp) struct json_object *rep = NULL;
	FlError err = {0};
	int r;
	if ((r = need_db(req)) < 0)
		return r;
	r = fl_db_audit_verify(req->app->db, &rep, &err);
	if (r < 0)
		return fl_http_fail(req, r, "%s", err.msg);
	return fl_http_send_json(req, 200, rep);
}
FL_ROUTE(get_audit_verify, "GET", "/v1/audit/verify", FL_ROLE_REVIEWER);
