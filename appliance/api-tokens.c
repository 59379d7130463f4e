// SPDX-License-Identifier: MIT
/*
 * api-tokens: API tokens, admin only (API.md).
 *   POST   /v1/tokens        {role*, name?} -> 201 {id, role, name, token}
 *   GET    /v1/tokens        ?include_revoked=true -> {"tokens": [...]}
 *   DELETE /v1/tokens/{id}   -> {id, revoked: true}
 * The plaintext token is in the POST answer only; the database keeps its
 * sha256 (db-tokens.c). Each change is audited in the same transaction.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "cleanup.h"
#include "http.h"

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)

static void free_secret(char **p)
{
	if (*p) {
		explicit_bzero(*p, strlen(*p));
		free(*p);
	}
}

static int need_db(FlHttpReq *req)
{
	if (!req->app->db)
		return fl_http_fail(req, -ENOTCONN, "tokens need the database (none is configured)");
	return 0;
}

static int fail_db(FlHttpReq *req, int r, const FlError *err)
{
	return fl_http_fail(req, r, "%s", err->msg[0] ? err->msg : strerror(-r));
}

static int post_tokens(FlHttpReq *req)
{
	static const char *const allowed[] = {"role", "name", NULL};
	_cleanup_(json_object_putp) struct json_object *body = NULL, *out = NULL, *d = NULL;
	_cleanup_(free_secret) char *plain = NULL;
	const char *role = NULL, *name = NULL;
	char id[FL_DB_ID_MAX];
	FlError err = {0};
	int r;

	if ((r = need_db(req)) < 0 || (r = fl_http_read_json(req, &body)) < 0)
		return r;
	if ((r = fl_json_reject_unknown(body, allowed, &req->err)) < 0 ||
	    (r = fl_json_get_string(body, "role", true, 16, &role, &req->err)) < 0 ||
	    (r = fl_json_get_string(body, "name", false, 100, &name, &req->err)) < 0)
		return r;
	if (fl_role_from_name(role) == FL_ROLE_NONE)
		return fl_http_fail(req, -EINVAL, "role must be agent, reviewer or admin");
	d = json_object_new_object();
	json_object_object_add(d, "role", json_object_new_string(role));
	if (name)
		json_object_object_add(d, "name", json_object_new_string(name));
	FlAuditEvent ev = fl_audit_event(req, "token.create", NULL, d);
	r = fl_db_token_create(req->app->db, role, name, &ev, &plain, id, &err);
	if (r < 0)
		return fail_db(req, r, &err);
	out = json_object_new_object();
	if (!out)
		return fl_http_fail(req, -ENOMEM, "out of memory");
	json_object_object_add(out, "id", json_object_new_string(id));
	json_object_object_add(out, "role", json_object_new_string(role));
	json_object_object_add(out, "name", name ? json_object_new_string(name) : NULL);
	json_object_object_add(out, "token", json_object_new_string(plain));
	return fl_http_send_json(req, 201, out);
}
FL_ROUTE(post_tokens, "POST", "/v1/tokens", FL_ROLE_ADMIN);

static int get_tokens(FlHttpReq *req)
{
	_cleanup_(json_object_putp) struct json_object *out = NULL;
	struct json_object *arr = NULL;
	char buf[16];
	FlError err = {0};
	int r;

	if ((r = need_db(req)) < 0)
		return r;
	const char *inc = fl_http_query(req, "include_revoked", buf, sizeof(buf));
	if (inc && strcmp(inc, "true") && strcmp(inc, "false"))
		return fl_http_fail(req, -EINVAL, "include_revoked must be true or false");
	r = fl_db_tokens_list(req->app->db, inc && !strcmp(inc, "true"), &arr, &err);
	if (r < 0)
		return fail_db(req, r, &err);
	out = json_object_new_object();
	if (!out) {
		json_object_put(arr);
		return fl_http_fail(req, -ENOMEM, "out of memory");
	}
	json_object_object_add(out, "tokens", arr);
	return fl_http_send_json(req, 200, out);
}
FL_ROUTE(get_tokens, "GET", "/v1/tokens", FL_ROLE_ADMIN);

static int delete_token(FlHttpReq *req)
{
	_cleanup_(json_object_putp) struct json_object *out = NULL, *d = NULL;
	const char *id = fl_http_param(req, "id");
	FlError err = {0};
	int r;

	if ((r = need_db(req)) < 0)
		return r;
	d = json_object_new_object();
	json_object_object_add(d, "token_id", json_object_new_string(id));
	FlAuditEvent ev = fl_audit_event(req, "token.revoke", NULL, d);
	r = fl_db_token_revoke(req->app->db, id, &ev, &err);
	if (r < 0)
		return fail_db(req, r, &err);
	fl_auth_forget(req->app, id);
	out = json_object_new_object();
	if (!out)
		return fl_http_fail(req, -ENOMEM, "out of memory");
	json_object_object_add(out, "id", json_object_new_string(id));
	json_object_object_add(out, "revoked", json_object_new_boolean(1));
	return fl_http_send_json(req, 200, out);
}
FL_ROUTE(delete_token, "DELETE", "/v1/tokens/{id}", FL_ROLE_ADMIN);
