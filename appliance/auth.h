/* SPDX-License-Identifier: MIT */
/*
 * auth: the database and auth services of `fluid serve`, and what API
 * handlers use to audit.
 *
 * Services (auth.c):
 *   database (order 10): opens PostgreSQL from the configuration
 *     (database.* or DATABASE_URL), runs migrations, sets app->db. With no
 *     database configured it logs a warning and leaves app->db NULL
 *     (development mode: no tokens, no audit).
 *   auth (order 30): with a database, installs the bearer-token
 *     authenticator (app->auth) and the audit hooks (app->request_begin /
 *     request_end); on the first start creates an admin token, prints it
 *     once and writes it to STATE/admin.token (0600).
 *
 * Request auditing: every routed request gets an "http.request" audit row
 * after its response (method, path, status, actor = token id), except the
 * unauthenticated GET /v1/health and GET /metrics. A mutating request
 * (POST, PUT, PATCH, DELETE) also gets a row BEFORE its handler runs
 * (status 0, details.phase "begin"); when that row cannot be written the
 * request fails with 503 and its handler never runs, so nothing changes
 * while the audit log is unavailable.
 *
 * When PostgreSQL is down, tokens seen valid since start-up keep working
 * (an in-memory cache of token hash -> id, role), so reads of live state
 * still answer; unknown tokens get 401.
 */
#ifndef FL_AUTH_H
#define FL_AUTH_H

#include "db.h"
#include "http.h"

/* "agent" -> FL_ROLE_AGENT ...; FL_ROLE_NONE for anything else. */
FlRole fl_role_from_name(const char *name);

/*
 * An audit event for a handler: actor and role of the caller (token id, or
 * "anonymous"), the given action, sandbox id and details (borrowed).
 */
FlAuditEvent fl_audit_event(const FlHttpReq *req, const char *action, const char *sandbox_id,
			    struct json_object *details);

/* Forgets a revoked token in the fallback cache (api-tokens.c). */
void fl_auth_forget(FlApp *app, const char *token_id);

#endif
