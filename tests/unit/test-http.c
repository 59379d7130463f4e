// SPDX-License-Identifier: MIT
/*
 * Unit tests for appliance/http.c without a network: route matching
 * (literal and {param} segments, 404 vs 405), the linker-set route table,
 * the errno -> HTTP status table and the JSON validation helpers that later
 * handlers use (unknown fields, typed getters).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "cli.h"
#include "http.h"

/* A handler in the style later api-*.c files use: strict JSON body. */
static int test_handler(FlHttpReq *req)
{
	static const char *const allowed[] = {"name", "memory", NULL};
	struct json_object *body = NULL;
	const char *name = NULL;
	int r = fl_http_read_json(req, &body);
	if (r < 0)
		return r;
	if ((r = fl_json_reject_unknown(body, allowed, &req->err)) < 0 ||
	    (r = fl_json_get_string(body, "name", true, 63, &name, &req->err)) < 0) {
		json_object_put(body);
		return r;
	}
	if (!strcmp(name, "missing")) {
		r = fl_http_fail(req, -ENOENT, "no snapshot '%s'", name);
		json_object_put(body);
		return r;
	}
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "id", json_object_new_string(fl_http_param(req, "id")));
	json_object_object_add(o, "name", json_object_new_string(name));
	r = fl_http_send_json(req, 201, o);
	json_object_put(o);
	json_object_put(body);
	return r;
}
FL_ROUTE(test_handler, "POST", "/v1/test/{id}/snapshots/{name}/restore", FL_ROLE_REVIEWER);

static int svc_log[8], svc_n;
static int svc_a_start(FlApp *app, FlError *err) { svc_log[svc_n++] = 1; return 0; }
static int svc_b_start(FlApp *app, FlError *err) { svc_log[svc_n++] = 2; return 0; }
FL_SERVICE(test_b, 30, svc_b_start, NULL);
FL_SERVICE(test_a, 10, svc_a_start, NULL);

static void test_services_sorted(void **state)
{
	const FlService *sv[FL_MAX_SERVICES];
	size_t n = fl_services(sv, FL_MAX_SERVICES);
	assert_int_equal(n, 2);
	assert_string_equal(sv[0]->name, "test_a");
	assert_string_equal(sv[1]->name, "test_b");
	for (size_t i = 0; i < n; i++)
		assert_int_equal(sv[i]->start(NULL, NULL), 0);
	assert_int_equal(svc_log[0], 1);
	assert_int_equal(svc_log[1], 2);
}

static int fake_auth(void *ud, const char *token, FlRole *ret)
{
	if (!token)
		return -ENOKEY;
	if (!strcmp(token, "agent-tok"))
		*ret = FL_ROLE_AGENT;
	else if (!strcmp(token, "rev-tok"))
		*ret = FL_ROLE_REVIEWER;
	else
		return -EACCES;
	return 0;
}

/* Sends one request to the live server, returns the status; body in *resp. */
static int call(const char *url, const char *method, const char *path, const char *token,
		const char *body, size_t len, FlClientResponse *resp)
{
	FlError err = {0};
	fl_client_response_clear(resp);
	int r = fl_client_request(url, method, path, token, body, len, 10000, resp, &err);
	if (r < 0)
		print_error("request failed: %s\n", err.msg);
	assert_int_equal(r, 0);
	return resp->status;
}

static void expect_error_body(const FlClientResponse *resp, int code, const char *needle)
{
	struct json_object *o = json_tokener_parse(resp->body), *v;
	assert_non_null(o);
	assert_true(json_object_object_get_ex(o, "code", &v));
	assert_int_equal(json_object_get_int(v), code);
	assert_true(json_object_object_get_ex(o, "error", &v));
	if (!strstr(json_object_get_string(v), needle))
		print_error("error '%s' lacks '%s'\n", json_object_get_string(v), needle);
	assert_non_null(strstr(json_object_get_string(v), needle));
	assert_true(json_object_object_get_ex(o, "details", &v));
	json_object_put(o);
}

static void test_live_server(void **state)
{
	FlConfig *cfg = NULL;
	FlError err = {0};
	const char *yaml = "server:\n  listen: 127.0.0.1:0\n  threads: 2\nstate_dir: /tmp\n";
	assert_int_equal(fl_config_parse(yaml, strlen(yaml), "t", NULL, &cfg, &err), 0);
	FlApp app = {.cfg = cfg, .auth = fake_auth};
	FlHttpServer *srv = NULL;
	assert_int_equal(fl_http_start(&app, &srv, &err), 0);
	char url[320];
	snprintf(url, sizeof(url), "http://%s", app.listen);
	FlClientResponse resp = {0};
	const char *path = "/v1/test/sbx-9/snapshots/s1/restore";
	const char *good = "{\"name\": \"s1\"}";

	/* Health needs no token; status needs one. */
	assert_int_equal(call(url, "GET", "/v1/health", NULL, NULL, 0, &resp), 200);
	assert_string_equal(resp.body, "{\"status\":\"ok\"}\n");
	assert_int_equal(call(url, "GET", "/v1/status", NULL, NULL, 0, &resp), 401);
	expect_error_body(&resp, 401, "missing bearer token");
	assert_int_equal(call(url, "GET", "/v1/status", "agent-tok", NULL, 0, &resp), 200);

	/* Role per route. */
	assert_int_equal(call(url, "POST", path, "bogus", good, strlen(good), &resp), 401);
	expect_error_body(&resp, 401, "invalid token");
	assert_int_equal(call(url, "POST", path, "agent-tok", good, strlen(good), &resp), 403);
	expect_error_body(&resp, 403, "reviewer");
	assert_int_equal(call(url, "POST", path, "rev-tok", good, strlen(good), &resp), 201);
	assert_non_null(strstr(resp.body, "\"id\":\"sbx-9\""));

	/* Bad bodies. */
	static const struct {
		const char *body;
		int status;
		const char *needle;
	} bad[] = {
		{"", 400, "body is required"},
		{"{", 400, "invalid JSON"},
		{"{\"name\": \"a\"} x", 400, "invalid JSON"},
		{"[1]", 400, "must be a JSON object"},
		{"{\"name\": \"a\", \"key_file\": \"/etc/shadow\"}", 400, "unknown field 'key_file'"},
		{"{\"name\": 5}", 400, "must be a string"},
		{"{}", 400, "missing field 'name'"},
		{"{\"name\": \"missing\"}", 404, "no snapshot 'missing'"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(call(url, "POST", path, "rev-tok", bad[i].body, strlen(bad[i].body),
				      &resp),
				 bad[i].status);
		expect_error_body(&resp, bad[i].status, bad[i].needle);
	}
	/* Over the 1 MiB cap: 413. */
	size_t big = FL_HTTP_MAX_BODY + 10;
	char *huge = malloc(big);
	memset(huge, ' ', big);
	huge[0] = '{';
	huge[big - 1] = '}';
	assert_int_equal(call(url, "POST", path, "rev-tok", huge, big, &resp), 413);
	expect_error_body(&resp, 413, "larger than");
	free(huge);

	assert_int_equal(call(url, "GET", "/v1/nothing", "rev-tok", NULL, 0, &resp), 404);
	expect_error_body(&resp, 404, "no such endpoint");
	assert_int_equal(call(url, "GET", path, "rev-tok", NULL, 0, &resp), 405);
	fl_client_response_clear(&resp);
	fl_http_stop(srv);
	fl_config_free(cfg);
}

static void test_table_has_ops_routes(void **state)
{
	const FlRoute *const *routes;
	size_t n = fl_http_routes(&routes);
	bool health = false, status = false, mine = false;
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(routes[i]->pattern, "/v1/health")) {
			health = true;
			assert_int_equal(routes[i]->role, FL_ROLE_NONE);
		}
		if (!strcmp(routes[i]->pattern, "/v1/status"))
			status = true;
		if (routes[i]->handler == test_handler)
			mine = true;
	}
	assert_true(health && status && mine);
}

static void test_match(void **state)
{
	FlHttpReq req;
	int status = 0;
	memset(&req, 0, sizeof(req));
	const FlRoute *rt = fl_http_match("GET", "/v1/health", &req, &status);
	assert_non_null(rt);
	assert_string_equal(rt->name, "get_health");

	rt = fl_http_match("POST", "/v1/test/sbx-1/snapshots/s1/restore", &req, &status);
	assert_non_null(rt);
	assert_ptr_equal(rt->handler, test_handler);
	assert_int_equal(rt->role, FL_ROLE_REVIEWER);
	assert_int_equal(req.n_params, 2);
	assert_string_equal(fl_http_param(&req, "id"), "sbx-1");
	assert_string_equal(fl_http_param(&req, "name"), "s1");
	assert_null(fl_http_param(&req, "i"));
	assert_null(fl_http_param(&req, "nam"));

	assert_null(fl_http_match("GET", "/v1/test/sbx-1/snapshots/s1/restore", &req, &status));
	assert_int_equal(status, 405);
	assert_null(fl_http_match("POST", "/v1/health", &req, &status));
	assert_int_equal(status, 405);
	static const char *const misses[] = {
		"/v1/healthz", "/v1/health/", "/v1", "/", "", "/v1//health",
		"/v1/test//snapshots/s1/restore", "/v1/test/a/snapshots/s1/restore/x",
		"/v1/test/a/snapshots/s1",
	};
	for (size_t i = 0; i < sizeof(misses) / sizeof(misses[0]); i++) {
		status = 0;
		assert_null(fl_http_match("GET", misses[i], &req, &status));
		assert_int_equal(status, 404);
	}
	/* A parameter segment longer than the cap does not match. */
	char longp[600] = "/v1/test/";
	memset(longp + strlen(longp), 'a', 300);
	strcat(longp, "/snapshots/s/restore");
	assert_null(fl_http_match("POST", longp, &req, &status));
}

static void test_status_table(void **state)
{
	assert_int_equal(fl_http_status_from_errno(-EINVAL), 400);
	assert_int_equal(fl_http_status_from_errno(-ENOKEY), 401);
	assert_int_equal(fl_http_status_from_errno(-EACCES), 403);
	assert_int_equal(fl_http_status_from_errno(-ENOENT), 404);
	assert_int_equal(fl_http_status_from_errno(-EEXIST), 409);
	assert_int_equal(fl_http_status_from_errno(-EBUSY), 409);
	assert_int_equal(fl_http_status_from_errno(-EMSGSIZE), 413);
	assert_int_equal(fl_http_status_from_errno(-ECONNREFUSED), 503);
	assert_int_equal(fl_http_status_from_errno(-ETIMEDOUT), 504);
	assert_int_equal(fl_http_status_from_errno(-EIO), 500);
}

static void test_reject_unknown(void **state)
{
	static const char *const allowed[] = {"command", "timeout_sec", "env", NULL};
	FlError err = {0};
	struct json_object *o = json_tokener_parse("{\"command\":\"ls\",\"env\":{}}");
	assert_int_equal(fl_json_reject_unknown(o, allowed, &err), 0);
	json_object_put(o);
	o = json_tokener_parse("{\"command\":\"ls\",\"key_file\":\"/etc/shadow\"}");
	assert_int_equal(fl_json_reject_unknown(o, allowed, &err), -EINVAL);
	assert_string_equal(err.msg, "unknown field 'key_file'");
	json_object_put(o);
}

static void test_getters(void **state)
{
	FlError err = {0};
	struct json_object *o = json_tokener_parse(
		"{\"s\":\"abc\",\"n\":5,\"neg\":-1,\"b\":true,\"f\":1.5,\"nul\":null}");
	const char *s = NULL;
	uint64_t u = 0;
	bool b = false;
	assert_int_equal(fl_json_get_string(o, "s", true, 0, &s, &err), 1);
	assert_string_equal(s, "abc");
	assert_int_equal(fl_json_get_string(o, "s", true, 2, &s, &err), -EINVAL);
	assert_int_equal(fl_json_get_string(o, "missing", false, 0, &s, &err), 0);
	assert_int_equal(fl_json_get_string(o, "missing", true, 0, &s, &err), -EINVAL);
	assert_string_equal(err.msg, "missing field 'missing'");
	assert_int_equal(fl_json_get_string(o, "n", true, 0, &s, &err), -EINVAL);
	assert_int_equal(fl_json_get_string(o, "nul", false, 0, &s, &err), 0);
	assert_int_equal(fl_json_get_uint(o, "n", true, 1, 10, &u, &err), 1);
	assert_int_equal(u, 5);
	assert_int_equal(fl_json_get_uint(o, "n", true, 6, 10, &u, &err), -EINVAL);
	assert_int_equal(fl_json_get_uint(o, "neg", true, 0, 10, &u, &err), -EINVAL);
	assert_int_equal(fl_json_get_uint(o, "f", true, 0, 10, &u, &err), -EINVAL);
	assert_int_equal(fl_json_get_uint(o, "s", true, 0, 10, &u, &err), -EINVAL);
	assert_int_equal(fl_json_get_bool(o, "b", true, &b, &err), 1);
	assert_true(b);
	assert_int_equal(fl_json_get_bool(o, "n", true, &b, &err), -EINVAL);
	json_object_put(o);
}

static void test_fail_sets_message(void **state)
{
	FlHttpReq req;
	memset(&req, 0, sizeof(req));
	assert_int_equal(fl_http_fail(&req, -ENOENT, "no sandbox %s", "x"), -ENOENT);
	assert_string_equal(req.err.msg, "no sandbox x");
	assert_int_equal(req.err.code, -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table_has_ops_routes),
		cmocka_unit_test(test_match),
		cmocka_unit_test(test_status_table),
		cmocka_unit_test(test_reject_unknown),
		cmocka_unit_test(test_getters),
		cmocka_unit_test(test_fail_sets_message),
		cmocka_unit_test(test_services_sorted),
		cmocka_unit_test(test_live_server),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
