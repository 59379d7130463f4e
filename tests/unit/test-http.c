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

#include "http.h"

static int test_handler(FlHttpReq *req) { return 200; }
FL_ROUTE(test_handler, "POST", "/v1/test/{id}/snapshots/{name}/restore", FL_ROLE_REVIEWER);

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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
