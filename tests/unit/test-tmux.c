// SPDX-License-Identifier: MIT
/*
 * Unit tests for appliance/tmux.c with a fake engine: session names and
 * pane targets (accepted forms, exact-match '=' prefix, everything else
 * refused), the argv handed to the agent (a caller's argument ending in
 * ';' escaped so tmux cannot read it as a command separator, the real
 * separators kept), output caps, error classification from tmux's stderr,
 * and the listing parser against hostile guest output (wrong field counts,
 * bad numbers, control characters and invalid UTF-8 in names, panes of
 * unknown sessions, duplicates).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "engine-service.h"
#include "tmux.h"

/* ---- fake engine ------------------------------------------------------------ */

static char fake_argv[80][256];
static size_t fake_argc;
static const char *fake_stdout, *fake_stderr;
static int fake_exit;

struct FlStream {
	int fd;
};

static void put_record(int fd, int stream, const char *s)
{
	size_t n = strlen(s);
	unsigned char h[5] = {(unsigned char)stream, (unsigned char)n, (unsigned char)(n >> 8),
			      (unsigned char)(n >> 16), (unsigned char)(n >> 24)};
	assert_int_equal(write(fd, h, 5), 5);
	assert_int_equal(write(fd, s, n), (ssize_t)n);
}

int fl_engine_stream_open(FlEngine *e, const char *id, const FlStreamSpec *spec, FlStream **ret,
			  FlError *err)
{
	int p[2];
	assert_string_equal(spec->op, "exec");
	assert_true(spec->timeout_ms > 0); /* the host's clock bounds every call */
	fake_argc = 0;
	for (size_t i = 0; spec->exec->argv[i]; i++)
		snprintf(fake_argv[fake_argc++], sizeof(fake_argv[0]), "%s", spec->exec->argv[i]);
	assert_int_equal(pipe(p), 0);
	if (fake_stdout && *fake_stdout)
		put_record(p[1], 1, fake_stdout);
	if (fake_stderr && *fake_stderr)
		put_record(p[1], 2, fake_stderr);
	close(p[1]);
	*ret = calloc(1, sizeof(**ret));
	(*ret)->fd = p[0];
	return 0;
}

int fl_stream_out_fd(const FlStream *s)
{
	return s->fd;
}

int fl_stream_finish(FlStream *s, struct json_object **ret, FlError *err)
{
	close(s->fd);
	free(s);
	*ret = json_object_new_object();
	json_object_object_add(*ret, "exit_code", json_object_new_int(fake_exit));
	return 0;
}

struct json_object *fl_api_time_json(int64_t t)
{
	return json_object_new_int64(t);
}

static void fake(const char *out, const char *err, int code)
{
	fake_stdout = out;
	fake_stderr = err;
	fake_exit = code;
}

/* ---- names and targets ---------------------------------------------------- */

static void test_session_names(void **state)
{
	assert_true(fl_tmux_session_name_ok("fluid"));
	assert_true(fl_tmux_session_name_ok("a-b_C9"));
	assert_true(fl_tmux_session_name_ok("12345678901234567890123456789012"));
	const char *bad[] = {"",    "a b", "a;b",
			     "a:b", "a.b", "=a",
			     "%1",  "a\n", "123456789012345678901234567890123",
			     "é",   NULL};
	for (size_t i = 0; bad[i]; i++)
		assert_false(fl_tmux_session_name_ok(bad[i]));
	assert_false(fl_tmux_session_name_ok(NULL));
}

static void test_pane_targets(void **state)
{
	char t[FL_TMUX_PANE_MAX + 8], s[FL_TMUX_NAME_MAX + 1];
	assert_int_equal(fl_tmux_pane_target("%0", t, s), 0);
	assert_string_equal(t, "%0");
	assert_string_equal(s, "");
	assert_int_equal(fl_tmux_pane_target("fluid", t, s), 0);
	assert_string_equal(t, "=fluid:");
	assert_string_equal(s, "fluid");
	assert_int_equal(fl_tmux_pane_target("fluid:0.0", t, s), 0);
	assert_string_equal(t, "=fluid:0.0");
	assert_int_equal(fl_tmux_pane_target("web-1:12", t, s), 0);
	assert_string_equal(t, "=web-1:12");
	assert_string_equal(s, "web-1");
	const char *bad[] = {"",
			     "%",
			     "%x",
			     "%1x",
			     "%-1",
			     "%1234567",
			     "fluid:",
			     "fluid:x",
			     "fluid:0.",
			     "fluid:0.x",
			     "fluid:0.0.0",
			     "fluid:0:0",
			     ":0",
			     "=fluid",
			     "fluid;kill-server",
			     "fluid:0;",
			     "a b",
			     "fluid:1234567",
			     "fluid:+1",
			     "fluid:{last}",
			     "../x",
			     "fluid:0.0 ",
			     NULL};
	for (size_t i = 0; bad[i]; i++) {
		if (fl_tmux_pane_target(bad[i], t, s) != -EINVAL)
			fail_msg("pane '%s' accepted as '%s'", bad[i], t);
	}
	char longp[100];
	memset(longp, 'a', sizeof(longp) - 1);
	longp[sizeof(longp) - 1] = 0;
	assert_int_equal(fl_tmux_pane_target(longp, t, s), -EINVAL);
}

/* ---- running ---------------------------------------------------------------- */

static void test_argv_escaping(void **state)
{
	FlTmuxResult res;
	FlError err = {0};
	fake("%3\n", NULL, 0);
	const char *args[] = {"send-keys", "-l", "--",	 "echo hi;", FL_TMUX_SEP,
			      "send-keys", ";",	 "a\\;", "x",	     NULL};
	assert_int_equal(fl_tmux_run(NULL, "sb", args, 0, &res, &err), 0);
	assert_int_equal(res.exit_code, 0);
	assert_string_equal(res.out, "%3\n");
	fl_tmux_result_clear(&res);
	assert_int_equal(fake_argc, 10);
	assert_string_equal(fake_argv[0], "tmux");
	assert_string_equal(fake_argv[4], "echo hi\\;"); /* tmux turns "\;" back into ";" */
	assert_string_equal(fake_argv[5], ";");		 /* the real separator */
	assert_string_equal(fake_argv[7], "\\;");	 /* a user's ";" alone */
	assert_string_equal(fake_argv[8], "a\\\\;");	 /* "a\;" stays "a\;" for tmux */
	assert_string_equal(fake_argv[9], "x");
}

static void test_output_cap_and_errors(void **state)
{
	FlTmuxResult res;
	FlError err = {0};
	const char *args[] = {"list-sessions", NULL};
	fake("0123456789", "can't find pane: %9\n", 1);
	assert_int_equal(fl_tmux_run(NULL, "sb", args, 4, &res, &err), 0);
	assert_int_equal(res.out_len, 4);
	assert_string_equal(res.out, "0123");
	assert_true(res.out_truncated);
	assert_int_equal(res.exit_code, 1);
	assert_string_equal(res.err, "can't find pane: %9");
	assert_int_equal(fl_tmux_error(&res, &err), -ENOENT);
	assert_false(fl_tmux_missing_session(&res));
	fl_tmux_result_clear(&res);

	static const struct {
		const char *stderr_text;
		int r;
		bool missing;
	} cases[] = {
		{"no server running on /tmp/tmux-0/default\n", -ENOENT, true},
		{"error connecting to /tmp/tmux-0/default (No such file or directory)\n", -ENOENT,
		 true},
		{"can't find session: fluid\n", -ENOENT, true},
		{"duplicate session: x\n", -EEXIST, false},
		{"unknown key: Foo\n", -EINVAL, false},
		{"something else\x1b[31m\n", -EIO, false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fake("", cases[i].stderr_text, 1);
		assert_int_equal(fl_tmux_run(NULL, "sb", args, 0, &res, &err), 0);
		assert_int_equal(fl_tmux_error(&res, &err), cases[i].r);
		assert_int_equal(fl_tmux_missing_session(&res), cases[i].missing);
		assert_null(strchr(res.err, '\x1b')); /* control characters cleaned */
		fl_tmux_result_clear(&res);
	}
}

static void test_create_reports_session(void **state)
{
	FlError err = {0};
	struct json_object *sess = NULL;
	fake("N\tbuild\nS\t100\t1\t0\tbuild\nS\t99\t1\t0\tfluid\n"
	     "P\t%4\t0\t0\t1\t1\t200\t50\tbuild\tmake\n",
	     NULL, 0);
	const char *argv[] = {"make", "-j2;", NULL};
	assert_int_equal(fl_tmux_create(NULL, "sb", "build", NULL, argv, &sess, &err), 0);
	struct json_object *v;
	assert_true(json_object_object_get_ex(sess, "name", &v));
	assert_string_equal(json_object_get_string(v), "build");
	assert_true(json_object_object_get_ex(sess, "panes", &v));
	assert_int_equal(json_object_array_length(v), 1);
	json_object_put(sess);
	/* -P -F before "--", the command after it, escaped */
	size_t dd = 0;
	for (size_t i = 0; i < fake_argc; i++)
		if (!strcmp(fake_argv[i], "--"))
			dd = i;
	assert_true(dd > 0);
	assert_string_equal(fake_argv[dd + 1], "make");
	assert_string_equal(fake_argv[dd + 2], "-j2\\;");
	assert_string_equal(fake_argv[dd - 1], "N\t#{session_name}");

	fake("", "duplicate session: build\n", 1);
	assert_int_equal(fl_tmux_create(NULL, "sb", "build", NULL, NULL, &sess, &err), -EEXIST);
	assert_int_equal(fl_tmux_create(NULL, "sb", "bad name", NULL, NULL, &sess, &err), -EINVAL);
	fake("", "", 0);
	assert_int_equal(fl_tmux_create(NULL, "sb", "x", NULL, NULL, &sess, &err), -EIO);
}

/* ---- listing ------------------------------------------------------------------ */

static void test_parse_list_hostile(void **state)
{
	const char out[] =
		"S\t1700000000\t2\t1\tfluid\n"
		"S\t1700000001\t1\t0\tfluid\n"	   /* duplicate: dropped */
		"S\tnotanumber\t1\t0\tx\n"	   /* bad number */
		"S\t1\t1\t0\n"			   /* too few fields */
		"S\t1\t1\t0\twe\x01ird\xff\xc3(\n" /* cleaned */
		"P\t%0\t0\t0\t1\t1\t200\t50\tfluid\tbash\n"
		"P\t%1\t1\t0\t1\t0\t80\t24\tfluid\tvim\tx\n"   /* tab in the command: kept */
		"P\t%2\t0\t0\t1\t1\t80\t24\tghost\tsh\n"       /* unknown session */
		"P\tx2\t0\t0\t1\t1\t80\t24\tfluid\tsh\n"       /* bad pane id */
		"P\t%3\t0\t0\t2\t1\t80\t24\tfluid\tsh\n"       /* active not 0/1 */
		"P\t%4\t0\t0\t0\t1\t99999999\t24\tfluid\tsh\n" /* width out of range */
		"Q\tsomething\n"
		"\n";
	struct json_object *arr = fl_tmux_parse_list(out, sizeof(out) - 1, NULL);
	assert_non_null(arr);
	assert_int_equal(json_object_array_length(arr), 2);
	struct json_object *s = json_object_array_get_idx(arr, 0), *v, *panes;
	assert_true(json_object_object_get_ex(s, "name", &v));
	assert_string_equal(json_object_get_string(v), "fluid");
	assert_true(json_object_object_get_ex(s, "windows", &v));
	assert_int_equal(json_object_get_int(v), 2);
	assert_true(json_object_object_get_ex(s, "panes", &panes));
	assert_int_equal(json_object_array_length(panes), 2);
	struct json_object *p = json_object_array_get_idx(panes, 1);
	assert_true(json_object_object_get_ex(p, "command", &v));
	assert_string_equal(json_object_get_string(v), "vim?x");
	assert_true(json_object_object_get_ex(p, "window_active", &v));
	assert_false(json_object_get_boolean(v));
	s = json_object_array_get_idx(arr, 1);
	assert_true(json_object_object_get_ex(s, "name", &v));
	assert_string_equal(json_object_get_string(v), "we?ird?"
						       "?(");
	json_object_put(arr);

	arr = fl_tmux_parse_list(out, sizeof(out) - 1, "nosuch");
	assert_int_equal(json_object_array_length(arr), 0);
	json_object_put(arr);
}

static void test_text_json(void **state)
{
	const char in[] = "ok\ttab\nline\xff\xc3\x28 \xe2\x82\xac\0end";
	struct json_object *o = fl_tmux_text_json(in, sizeof(in) - 1);
	assert_string_equal(json_object_get_string(o),
			    "ok\ttab\nline\xef\xbf\xbd\xef\xbf\xbd( \xe2\x82\xac"
			    "end");
	json_object_put(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_session_names),
		cmocka_unit_test(test_pane_targets),
		cmocka_unit_test(test_argv_escaping),
		cmocka_unit_test(test_output_cap_and_errors),
		cmocka_unit_test(test_create_reports_session),
		cmocka_unit_test(test_parse_list_hostile),
		cmocka_unit_test(test_text_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
