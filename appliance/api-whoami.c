// SPDX-License-Identifier: MIT
/*
 * api-whoami: GET /v1/whoami -> {token_id, role, name}, the caller's own
 * token (any role). The web UI asks it at sign-in to decide what to show;
 * the server still checks the role of every request itself.
 *
 * token_id is the id the audit log records as actor (set by the auth
 * service's request hook); name is the token's name, looked up in the
 * token list (null when it has none, or when the database cannot be read:
 * the role alone is enough for the caller). With no database configured
 * (development mode, every request allowed) the answer is
 * {"token_id": null, "role": "admin", "name": null}.
 */
#include <errno.h>
#include <string.h>

#include "cleanup.h"
#include "db.h"
#include "http.h"

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)

/* The name of token id in the database, as a new JSON string, or NULL. */
static struct json_object *token_name(FlHttpReq *req, const char *id)
{
	_cleanup_(json_object_putp) struct json_object *arr = NULL;
	FlError err = {0};
	if (!req->app->db || fl_db_tokens_list(req->app->db, false, &arr, &err) < 0 ||
	    !json_object_is_type(arr, json_type_array))
		return NULL;
	size_t n = json_object_array_length(arr);
	for (size_t i = 0; i < n; i++) {
		struct json_object *t = json_object_array_get_idx(arr, i), *v;
		if (!json_object_object_get_ex(t, "id", &v) ||
		    strcmp(json_object_get_string(v) ? json_object_get_string(v) : "", id))
			continue;
		if (json_object_object_get_ex(t, "name", &v) && json_object_is_type(v, json_type_string))
			return json_object_new_string(json_object_get_string(v));
		return NULL;
	}
	return NULL;
}

static int get_whoami(FlHttpReq *req)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	if (!o)
		return fl_http_fail(req, -ENOMEM, "out of memory");
	bool known = req->actor[0] && strcmp(req->actor, "anonymous");
	json_object_object_add(o, "token_id", known ? json_object_new_string(req->actor) : NULL);
	json_object_object_add(o, "role", json_object_new_string(fl_role_name(req->role)));
	json_object_object_add(o, "name", known ? token_name(req, req->actor) : NULL);
	return fl_http_send_json(req, 200, o);
}
FL_ROUTE(get_whoami, "GET", "/v1/whoami", FL_ROLE_AGENT);
