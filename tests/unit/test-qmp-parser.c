/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for QmpParser: framing (split at every byte, batches,
 * whitespace between messages), limits (size, nesting) and every kind of
 * malformed input the framer or json-c must refuse, with sticky errors.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cleanup.h"
#include "qmp.h"

#define MAX_SEEN 64

typedef struct Seen {
	unsigned n;
	char *text[MAX_SEEN];
} Seen;

static void seen_clear(Seen *s)
{
	for (unsigned i = 0; i < s->n; i++)
		free(s->text[i]);
	s->n = 0;
}

static void on_msg(struct json_object *msg, void *userdata)
{
	Seen *s = userdata;
	assert_true(json_object_is_type(msg, json_type_object));
	assert_true(s->n < MAX_SEEN);
	s->text[s->n++] = strdup(json_object_to_json_string_ext(msg, JSON_C_TO_STRING_PLAIN));
}

/* Feeds a whole buffer in one call. */
static int feed_all(size_t max, const char *buf, size_t len, Seen *s)
{
	QmpParser *p = qmp_parser_new(max);
	assert_non_null(p);
	int r = qmp_parser_feed(p, buf, len, on_msg, s);
	qmp_parser_free(p);
	return r;
}

/* Feeds one byte at a time; returns the first error. */
static int feed_bytes(size_t max, const char *buf, size_t len, Seen *s)
{
	QmpParser *p = qmp_parser_new(max);
	assert_non_null(p);
	int r = 0;
	for (size_t i = 0; i < len && r == 0; i++)
		r = qmp_parser_feed(p, buf + i, 1, on_msg, s);
	qmp_parser_free(p);
	return r;
}

static const char STREAM[] =
	"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}}, "
	"\"capabilities\": [\"oob\"]}}\r\n"
	"{\"return\": {}, \"id\": 1}\r\n"
	"{\"timestamp\": {\"seconds\": 1700000000, \"microseconds\": 5}, \"event\": \"STOP\"}\r\n"
	"  \t\n{\"return\": {\"status\": \"running\", \"singlestep\": false, \"running\": true}, \"id\": 2}"
	"{\"a\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \\\"}{\\\" \\\\\",\"b\":[1,-2.5e3,true,false,null,{}]}";

static void check_stream(Seen *s)
{
	assert_int_equal(s->n, 5);
	assert_non_null(strstr(s->text[0], "\"QMP\""));
	assert_string_equal(s->text[1], "{\"return\":{},\"id\":1}");
	assert_non_null(strstr(s->text[2], "\"event\":\"STOP\""));
	assert_non_null(strstr(s->text[3], "\"id\":2"));
	assert_non_null(strstr(s->text[4], "\\\"}{\\\""));
}

static void test_whole_buffer(void **state)
{
	Seen s = { 0 };
	assert_int_equal(feed_all(0, STREAM, sizeof(STREAM) - 1, &s), 0);
	check_stream(&s);
	seen_clear(&s);
}

static void test_byte_by_byte(void **state)
{
	Seen s = { 0 };
	assert_int_equal(feed_bytes(0, STREAM, sizeof(STREAM) - 1, &s), 0);
	check_stream(&s);
	seen_clear(&s);
}

/* Splits the stream in two at every position, and in three at many. */
static void test_every_split(void **state)
{
	size_t len = sizeof(STREAM) - 1;
	for (size_t i = 0; i <= len; i++) {
		Seen s = { 0 };
		QmpParser *p = qmp_parser_new(0);
		assert_int_equal(qmp_parser_feed(p, STREAM, i, on_msg, &s), 0);
		assert_int_equal(qmp_parser_feed(p, STREAM + i, len - i, on_msg, &s), 0);
		check_stream(&s);
		seen_clear(&s);
		qmp_parser_free(p);
	}
	for (size_t i = 0; i <= len; i += 7) {
		for (size_t j = i; j <= len; j += 5) {
			Seen s = { 0 };
			QmpParser *p = qmp_parser_new(0);
			assert_int_equal(qmp_parser_feed(p, STREAM, i, on_msg, &s), 0);
			assert_int_equal(qmp_parser_feed(p, STREAM + i, j - i, on_msg, &s), 0);
			assert_int_equal(qmp_parser_feed(p, STREAM + j, len - j, on_msg, &s), 0);
			check_stream(&s);
			seen_clear(&s);
			qmp_parser_free(p);
		}
	}
}

static void test_many_per_buffer(void **state)
{
	char buf[64 * 32];
	size_t off = 0;
	for (int i = 0; i < 60; i++)
		off += (size_t)snprintf(buf + off, sizeof(buf) - off, "{\"id\":%d}%s", i,
					i % 3 == 0 ? "" : (i % 3 == 1 ? "\n" : " \r\n\t "));
	Seen s = { 0 };
	assert_int_equal(feed_all(0, buf, off, &s), 0);
	assert_int_equal(s.n, 60);
	for (int i = 0; i < 60; i++) {
		char want[32];
		snprintf(want, sizeof(want), "{\"id\":%d}", i);
		assert_string_equal(s.text[i], want);
	}
	seen_clear(&s);
}

static void test_empty_and_whitespace(void **state)
{
	Seen s = { 0 };
	QmpParser *p = qmp_parser_new(0);
	assert_int_equal(qmp_parser_feed(p, "", 0, on_msg, &s), 0);
	assert_int_equal(qmp_parser_feed(p, " \r\n\t", 4, on_msg, &s), 0);
	assert_int_equal(qmp_parser_feed(p, "{}", 2, on_msg, &s), 0);
	assert_int_equal(qmp_parser_feed(p, "\n\n", 2, on_msg, &s), 0);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.text[0], "{}");
	/* Whitespace between messages does not count towards the size cap. */
	qmp_parser_free(p);
	seen_clear(&s);

	p = qmp_parser_new(8);
	for (int i = 0; i < 100; i++)
		assert_int_equal(qmp_parser_feed(p, "        ", 8, on_msg, &s), 0);
	assert_int_equal(qmp_parser_feed(p, "{\"a\":1}", 7, on_msg, &s), 0);
	assert_int_equal(s.n, 1);
	qmp_parser_free(p);
	seen_clear(&s);
}

static void test_null_callback(void **state)
{
	QmpParser *p = qmp_parser_new(0);
	assert_int_equal(qmp_parser_feed(p, "{}{}", 4, NULL, NULL), 0);
	qmp_parser_free(p);
	qmp_parser_free(NULL);
}

static void test_size_limit(void **state)
{
	Seen s = { 0 };
	/* Exactly max bytes passes, one more fails, even split up. */
	assert_int_equal(feed_all(10, "{\"a\":1234}", 10, &s), 0);
	assert_int_equal(s.n, 1);
	seen_clear(&s);
	assert_int_equal(feed_all(10, "{\"a\":12345}", 11, &s), -EMSGSIZE);
	assert_int_equal(feed_bytes(10, "{\"a\":12345}", 11, &s), -EMSGSIZE);
	assert_int_equal(s.n, 0);

	/* An endless message is refused once it passes the cap, without
	 * waiting for its end. */
	QmpParser *p = qmp_parser_new(1024);
	assert_int_equal(qmp_parser_feed(p, "{\"a\":\"", 6, on_msg, &s), 0);
	char chunk[100];
	memset(chunk, 'x', sizeof(chunk));
	int r = 0, i;
	for (i = 0; i < 100 && r == 0; i++)
		r = qmp_parser_feed(p, chunk, sizeof(chunk), on_msg, &s);
	assert_int_equal(r, -EMSGSIZE);
	assert_true(i <= 11);
	qmp_parser_free(p);

	/* Default cap: 1 MiB. A 900 KiB reply passes split in pieces. */
	size_t big = 900 * 1024;
	char *buf = malloc(big + 16);
	memcpy(buf, "{\"a\":\"", 6);
	memset(buf + 6, 'y', big);
	memcpy(buf + 6 + big, "\"}", 2);
	p = qmp_parser_new(0);
	for (size_t off = 0; off < big + 8; off += 4096) {
		size_t n = big + 8 - off < 4096 ? big + 8 - off : 4096;
		assert_int_equal(qmp_parser_feed(p, buf + off, n, on_msg, &s), 0);
	}
	assert_int_equal(s.n, 1);
	assert_int_equal(strlen(s.text[0]), big + 8);
	qmp_parser_free(p);
	free(buf);
	seen_clear(&s);
}

static void test_nesting(void **state)
{
	Seen s = { 0 };
	char buf[2 * 600 + 16];
	/* 200 levels: fine (a long backing chain in query-block). */
	size_t off = 0;
	buf[off++] = '{';
	memcpy(buf + off, "\"a\":", 4), off += 4;
	for (int i = 0; i < 198; i++)
		buf[off++] = '[';
	for (int i = 0; i < 198; i++)
		buf[off++] = ']';
	buf[off++] = '}';
	assert_int_equal(feed_all(0, buf, off, &s), 0);
	assert_int_equal(s.n, 1);
	seen_clear(&s);

	/* A nesting bomb is refused as soon as it is too deep. */
	off = 0;
	buf[off++] = '{';
	memcpy(buf + off, "\"a\":", 4), off += 4;
	for (int i = 0; i < 600; i++)
		buf[off++] = '[';
	assert_int_equal(feed_all(0, buf, off, &s), -EBADMSG);
	assert_int_equal(feed_bytes(0, buf, off, &s), -EBADMSG);
	assert_int_equal(s.n, 0);
}

typedef struct BadCase {
	const char *what;
	const char *text;
	size_t len; /* 0 = strlen */
} BadCase;

static const BadCase BAD[] = {
	{ "garbage", "hello", 0 },
	{ "garbage after message", "{}x", 0 },
	{ "top-level array", "[1,2]", 0 },
	{ "top-level number", "42 ", 0 },
	{ "top-level string", "\"abc\"", 0 },
	{ "top-level true", "true", 0 },
	{ "top-level null", "null", 0 },
	{ "unmatched close", "}", 0 },
	{ "mismatched brackets", "{\"a\":[}]", 0 },
	{ "mismatched brackets 2", "{\"a\":{]}", 0 },
	{ "missing colon", "{\"a\" 1}", 0 },
	{ "missing comma", "{\"a\":1 \"b\":2}", 0 },
	{ "trailing comma", "{\"a\":1,}", 0 },
	{ "leading comma", "{,\"a\":1}", 0 },
	{ "array trailing comma", "{\"a\":[1,]}", 0 },
	{ "unquoted key", "{a:1}", 0 },
	{ "numeric key", "{1:1}", 0 },
	{ "single quotes", "{'a':1}", 0 },
	{ "comment", "{/* c */\"a\":1}", 0 },
	{ "line comment", "{\"a\":1 // c\n}", 0 },
	{ "NaN", "{\"a\":NaN}", 0 },
	{ "nan", "{\"a\":nan}", 0 },
	{ "Infinity", "{\"a\":Infinity}", 0 },
	{ "-Infinity", "{\"a\":-Infinity}", 0 },
	{ "True", "{\"a\":True}", 0 },
	{ "truncated literal", "{\"a\":tru}", 0 },
	{ "bad literal", "{\"a\":nulll}", 0 },
	{ "plus number", "{\"a\":+1}", 0 },
	{ "dot number", "{\"a\":.5}", 0 },
	{ "lone minus", "{\"a\":-}", 0 },
	{ "bad exponent", "{\"a\":1e}", 0 },
	{ "bad escape", "{\"a\":\"\\x\"}", 0 },
	{ "short unicode escape", "{\"a\":\"\\u12\"}", 0 },
	{ "raw newline in string", "{\"a\":\"x\ny\"}", 0 },
	{ "raw tab in string", "{\"a\":\"x\ty\"}", 0 },
	{ "raw control in string", "{\"a\":\"x\001y\"}", 0 },
	{ "NUL in string", "{\"a\":\"x\0y\"}", 10 },
	{ "NUL outside string", "{\"a\":1\0}", 8 },
	{ "NUL between messages", "{}\0{}", 5 },
	{ "NUL at start", "\0", 1 },
	{ "escaped control", "{\"a\":\"\\\001\"}", 0 },
	{ "invalid UTF-8 byte", "{\"a\":\"\xff\"}", 0 },
	{ "UTF-8 continuation alone", "{\"a\":\"\x80\"}", 0 },
	{ "truncated UTF-8", "{\"a\":\"\xc3\"}", 0 },
	{ "overlong UTF-8 NUL", "{\"a\":\"\xc0\x80\"}", 0 },
	{ "overlong UTF-8 3 bytes", "{\"a\":\"\xe0\x80\xaf\"}", 0 },
	{ "overlong UTF-8 4 bytes", "{\"a\":\"\xf0\x80\x80\xaf\"}", 0 },
	{ "UTF-8 surrogate", "{\"a\":\"\xed\xa0\x80\"}", 0 },
	{ "UTF-8 above U+10FFFF", "{\"a\":\"\xf4\x90\x80\x80\"}", 0 },
	{ "UTF-8 5 bytes", "{\"a\":\"\xf8\x88\x80\x80\x80\"}", 0 },
	{ "UTF-8 outside string", "{\"a\":1\xc3\xa9}", 0 },
	{ "BOM", "\xef\xbb\xbf{}", 0 },
	{ "HTTP", "GET / HTTP/1.1\r\n\r\n", 0 },
	{ "unterminated string, then newline", "{\"a\":\"abc\n", 0 },
	{ "unterminated key, then CR LF", "{\"abc\r\n{}", 0 },
};

static void test_malformed(void **state)
{
	for (size_t i = 0; i < FL_ARRAY_SIZE(BAD); i++) {
		const BadCase *b = &BAD[i];
		size_t len = b->len ? b->len : strlen(b->text);
		Seen s = { 0 };
		int r1 = feed_all(0, b->text, len, &s);
		int r2 = feed_bytes(0, b->text, len, &s);
		/* A valid message before the bad bytes is still delivered. */
		if (r1 != -EBADMSG || r2 != -EBADMSG)
			fail_msg("%s: got %d / %d, want -EBADMSG", b->what, r1, r2);
		for (unsigned k = 0; k < s.n; k++)
			assert_string_equal(s.text[k], "{}");
		seen_clear(&s);
	}
}

static void test_valid_edge_cases(void **state)
{
	static const char *const GOOD[] = {
		"{}",
		"{\"a\":{}}",
		"{\"a\":[]}",
		"{\"a\":\"\"}",
		"{\"a\":\"\\u00e9\\ud83d\\ude00\\n\\t\\\"\\\\\\/\"}",
		"{\"a\":\"\\u0000\"}",
		"{\"a\":-0.5e-3,\"b\":1E+2,\"c\":0}",
		"{\"a\":true,\"b\":false,\"c\":null}",
		"{\"\xe4\xb8\xad\":\"\xf4\x8f\xbf\xbf\"}",
		"{ \"a\" : [ 1 , 2 ] }",
	};
	for (size_t i = 0; i < FL_ARRAY_SIZE(GOOD); i++) {
		Seen s = { 0 };
		size_t len = strlen(GOOD[i]);
		if (feed_all(0, GOOD[i], len, &s) != 0 || feed_bytes(0, GOOD[i], len, &s) != 0)
			fail_msg("rejected valid input %s", GOOD[i]);
		assert_int_equal(s.n, 2);
		seen_clear(&s);
	}
}

/* Incomplete input is not an error: the parser waits for the rest, and
 * what looks like a closing brace inside an open string stays text. */
static void test_incomplete(void **state)
{
	Seen s = { 0 };
	QmpParser *p = qmp_parser_new(0);
	assert_int_equal(qmp_parser_feed(p, "{\"a\":\"abc", 9, on_msg, &s), 0);
	assert_int_equal(qmp_parser_feed(p, "}", 1, on_msg, &s), 0);
	assert_int_equal(qmp_parser_feed(p, "\\\"}", 3, on_msg, &s), 0);
	assert_int_equal(s.n, 0);
	assert_int_equal(qmp_parser_feed(p, "\"}", 2, on_msg, &s), 0);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.text[0], "{\"a\":\"abc}\\\"}\"}");
	/* A UTF-8 sequence split across feeds. */
	assert_int_equal(qmp_parser_feed(p, "{\"e\":\"\xe2\x82", 8, on_msg, &s), 0);
	assert_int_equal(qmp_parser_feed(p, "\xac\"}", 3, on_msg, &s), 0);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.text[1], "{\"e\":\"\xe2\x82\xac\"}");
	qmp_parser_free(p);
	seen_clear(&s);
}

static void test_sticky_errors(void **state)
{
	Seen s = { 0 };
	QmpParser *p = qmp_parser_new(16);
	assert_int_equal(qmp_parser_feed(p, "{}[", 3, on_msg, &s), -EBADMSG);
	assert_int_equal(s.n, 1);
	assert_int_equal(qmp_parser_feed(p, "{}", 2, on_msg, &s), -EBADMSG);
	assert_int_equal(qmp_parser_feed(p, "", 0, on_msg, &s), -EBADMSG);
	assert_int_equal(s.n, 1);
	qmp_parser_free(p);
	seen_clear(&s);

	p = qmp_parser_new(16);
	assert_int_equal(qmp_parser_feed(p, "{\"aaaaaaaaaaaaaaaaaaaa\":1}", 26, on_msg, &s),
			 -EMSGSIZE);
	assert_int_equal(qmp_parser_feed(p, "{}", 2, on_msg, &s), -EMSGSIZE);
	assert_int_equal(s.n, 0);
	qmp_parser_free(p);
}

/* Messages delivered before an error in the same buffer keep their order,
 * and the callback sees borrowed objects it can keep with a reference. */
static void keep_ref(struct json_object *msg, void *userdata)
{
	struct json_object **slot = userdata;
	if (!*slot)
		*slot = json_object_get(msg);
}

static void test_borrowed_reference(void **state)
{
	struct json_object *kept = NULL;
	QmpParser *p = qmp_parser_new(0);
	assert_int_equal(qmp_parser_feed(p, "{\"x\":1}{\"y\":2}", 14, keep_ref, &kept), 0);
	qmp_parser_free(p);
	assert_non_null(kept);
	struct json_object *x;
	assert_true(json_object_object_get_ex(kept, "x", &x));
	assert_int_equal(json_object_get_int(x), 1);
	json_object_put(kept);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_whole_buffer),
		cmocka_unit_test(test_byte_by_byte),
		cmocka_unit_test(test_every_split),
		cmocka_unit_test(test_many_per_buffer),
		cmocka_unit_test(test_empty_and_whitespace),
		cmocka_unit_test(test_null_callback),
		cmocka_unit_test(test_size_limit),
		cmocka_unit_test(test_nesting),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_valid_edge_cases),
		cmocka_unit_test(test_incomplete),
		cmocka_unit_test(test_sticky_errors),
		cmocka_unit_test(test_borrowed_reference),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
