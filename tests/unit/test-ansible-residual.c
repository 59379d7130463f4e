// SPDX-License-Identifier: MIT
/*
 * Unit tests for the rehearsal's residual (appliance/rehearsal.c,
 * fl_rehearsal_residual): the diff of the sandbox against the diff of the
 * rehearsal clone. Equal changes leave nothing; a file with other content,
 * mode or owner, a missing or extra file, a package at another version, a
 * service not enabled, a user with another shell are each reported with
 * both states; password presence is not compared; what the generator
 * skipped is reported with its reason. The engine and the diff are faked
 * (never called here).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "diff.h"
#include "rehearsal.h"

/* ---- fakes for what fl_rehearse links against ---------------------------- */
int fl_engine_get(FlEngine *e, const char *id, struct json_object **ret, FlError *err) { return -ENOSYS; }
int fl_engine_create(FlEngine *e, const FlSandboxSpec *s, struct json_object **ret, FlError *err) { return -ENOSYS; }
int fl_engine_destroy(FlEngine *e, const char *id, FlError *err) { return -ENOSYS; }
int fl_engine_snapshot(FlEngine *e, const char *id, const char *n, bool m, struct json_object **ret,
		       FlError *err) { return -ENOSYS; }
int fl_engine_stream_open(FlEngine *e, const char *id, const FlStreamSpec *s, FlStream **ret,
			  FlError *err) { return -ENOSYS; }
int fl_stream_in_fd(const FlStream *s) { return -1; }
int fl_stream_out_fd(const FlStream *s) { return -1; }
void fl_stream_close_input(FlStream *s) {}
void fl_stream_cancel(FlStream *s) {}
int fl_stream_finish(FlStream *s, struct json_object **ret, FlError *err) { return -ENOSYS; }
int fl_diff_compute(FlEngine *e, const FlDiffSpec *s, struct json_object **ret, FlDiffInfo *i,
		    FlError *err) { return -ENOSYS; }

static struct json_object *J(const char *s)
{
	struct json_object *j = json_tokener_parse(s);
	assert_non_null(j);
	return j;
}

#define BASE                                                                                       \
	"\"files_added\":[{\"path\":\"/etc/a\",\"type\":\"file\",\"mode\":\"0644\",\"owner\":\"root\"," \
	"\"group\":\"root\",\"size\":2,\"sha256\":\"aa\",\"binary\":false},"                          \
	"{\"path\":\"/etc/l\",\"type\":\"symlink\",\"mode\":\"0777\",\"owner\":\"root\",\"group\":\"root\"," \
	"\"size\":0,\"sha256\":null,\"target\":\"/etc/a\",\"binary\":false}],"                         \
	"\"files_removed\":[{\"path\":\"/etc/gone\",\"type\":\"file\"}],"                               \
	"\"files_modified\":[{\"path\":\"/etc/m\",\"changes\":[\"mode\"],\"old\":{},\"new\":{\"type\":\"file\"," \
	"\"mode\":\"0600\",\"owner\":\"root\",\"group\":\"root\",\"size\":1,\"sha256\":\"mm\"},\"binary\":false}]," \
	"\"packages_added\":[{\"name\":\"hello\",\"version\":\"1\"}],\"packages_removed\":[],"      \
	"\"packages_upgraded\":[],"                                                                     \
	"\"services_changed\":[{\"name\":\"h.service\",\"enabled\":true,\"state\":\"added\","         \
	"\"unit_path\":\"/etc/systemd/system/h.service\"}],"                                            \
	"\"users_added\":[{\"name\":\"alice\",\"uid\":1001,\"gid\":1001,\"home\":\"/home/alice\","     \
	"\"shell\":\"/bin/bash\",\"groups\":[],\"password\":%s,\"system\":false}],"                     \
	"\"users_removed\":[],\"users_changed\":[],\"groups_added\":[],\"groups_removed\":[],"         \
	"\"groups_changed\":[],\"commands_run\":[]"

static struct json_object *base(const char *password)
{
	char buf[4096];
	snprintf(buf, sizeof(buf), "{" BASE "}", password);
	return J(buf);
}

static struct json_object *residual(struct json_object *a, struct json_object *b, struct json_object *sk)
{
	struct json_object *r = fl_rehearsal_residual(a, b, sk);
	assert_non_null(r);
	return r;
}

static struct json_object *entry(struct json_object *res, const char *name)
{
	for (size_t i = 0; i < json_object_array_length(res); i++) {
		struct json_object *e = json_object_array_get_idx(res, i);
		if (!strcmp(json_object_get_string(json_object_object_get(e, "name")), name))
			return e;
	}
	return NULL;
}

static void test_equal_is_empty(void **state)
{
	struct json_object *a = base("\"locked\""), *b = base("\"set\"");
	struct json_object *r = residual(a, b, NULL);
	assert_int_equal(json_object_array_length(r), 0); /* password presence not compared */
	json_object_put(r);
	/* commands_run and unit_path do not matter either */
	json_object_object_add(b, "commands_run", J("[{\"cmd\":\"x\",\"exit_code\":0,\"at\":\"t\"}]"));
	r = residual(a, b, NULL);
	assert_int_equal(json_object_array_length(r), 0);
	json_object_put(r);
	json_object_put(a);
	json_object_put(b);
}

static void test_differences(void **state)
{
	struct json_object *a = base("null"), *b = base("null");
	struct json_object *fa = json_object_object_get(b, "files_added");
	/* other content of /etc/a, /etc/l missing, an extra file */
	json_object_object_add(json_object_array_get_idx(fa, 0), "sha256", json_object_new_string("bb"));
	json_object_array_del_idx(fa, 1, 1);
	json_object_array_add(fa, J("{\"path\":\"/etc/extra\",\"type\":\"dir\",\"mode\":\"0755\","
				    "\"owner\":\"root\",\"group\":\"root\",\"size\":0,\"sha256\":null,"
				    "\"binary\":false}"));
	/* /etc/gone not removed, /etc/m with another mode */
	json_object_object_add(b, "files_removed", json_object_new_array());
	struct json_object *m = json_object_array_get_idx(json_object_object_get(b, "files_modified"), 0);
	json_object_object_add(json_object_object_get(m, "new"), "mode", json_object_new_string("0644"));
	/* package at another version, service not enabled, user with another shell */
	json_object_object_add(b, "packages_added", J("[{\"name\":\"hello\",\"version\":\"2\"}]"));
	json_object_object_add(json_object_array_get_idx(json_object_object_get(b, "services_changed"), 0),
			       "enabled", json_object_new_boolean(0));
	json_object_object_add(json_object_array_get_idx(json_object_object_get(b, "users_added"), 0),
			       "shell", json_object_new_string("/bin/sh"));

	struct json_object *sk = J("[{\"path\":\"/etc/l\",\"reason\":\"because\"}]");
	struct json_object *r = residual(a, b, sk);
	assert_int_equal(json_object_array_length(r), 8);
	struct json_object *e = entry(r, "/etc/a");
	assert_string_equal(json_object_get_string(json_object_object_get(e, "kind")), "file");
	assert_string_equal(json_object_get_string(json_object_object_get(
				    json_object_object_get(e, "sandbox"), "sha256")), "aa");
	assert_string_equal(json_object_get_string(json_object_object_get(
				    json_object_object_get(e, "rehearsal"), "sha256")), "bb");
	e = entry(r, "/etc/l");
	assert_null(json_object_object_get(e, "rehearsal"));
	assert_string_equal(json_object_get_string(json_object_object_get(e, "generator")), "because");
	e = entry(r, "/etc/extra");
	assert_null(json_object_object_get(e, "sandbox"));
	e = entry(r, "/etc/gone");
	assert_string_equal(json_object_get_string(json_object_object_get(e, "sandbox")), "absent");
	assert_non_null(entry(r, "/etc/m"));
	e = entry(r, "hello");
	assert_string_equal(json_object_get_string(json_object_object_get(e, "kind")), "package");
	e = entry(r, "h.service");
	assert_string_equal(json_object_get_string(json_object_object_get(e, "kind")), "service");
	e = entry(r, "alice");
	assert_string_equal(json_object_get_string(json_object_object_get(e, "kind")), "user");
	json_object_put(r);
	json_object_put(sk);
	json_object_put(a);
	json_object_put(b);
}

static void test_missing_sections(void **state)
{
	/* a diff with nothing in it against a full one: everything is residual */
	struct json_object *a = base("null"), *b = J("{}");
	struct json_object *r = residual(a, b, NULL);
	assert_int_equal(json_object_array_length(r), 7);
	json_object_put(r);
	r = residual(b, b, NULL);
	assert_int_equal(json_object_array_length(r), 0);
	json_object_put(r);
	json_object_put(a);
	json_object_put(b);
}

static void test_rehearse_refuses_bad_spec(void **state)
{
	struct json_object *ret = NULL;
	FlError err = {0};
	FlRehearsalSpec s = {0};
	assert_int_equal(fl_rehearse(NULL, &s, &ret, &err), -EINVAL);
	assert_null(ret);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_equal_is_empty),
		cmocka_unit_test(test_differences),
		cmocka_unit_test(test_missing_sections),
		cmocka_unit_test(test_rehearse_refuses_bad_spec),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
