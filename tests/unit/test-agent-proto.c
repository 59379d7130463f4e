// SPDX-License-Identifier: MIT
/*
 * Unit tests of the agent protocol framing (image-build/agent/agent-proto.c):
 * round trips at every split point, sync frames and hunting through stale
 * bytes, and malformed, truncated, oversized and hostile input.
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

#include "agent-proto.h"

typedef struct Got {
	int frames, syncs;
	char hdr[8][256];
	size_t plen[8];
	uint8_t payload[8][64];
	uint8_t nonce[AGENT_NONCE_LEN];
	int stop_after; /* return an error after this many frames (0: never) */
} Got;

static int got_frame(void *ud, struct json_object *hdr, const uint8_t *p, size_t plen)
{
	Got *g = ud;
	if (g->frames < 8) {
		snprintf(g->hdr[g->frames], sizeof(g->hdr[0]), "%s",
			 json_object_to_json_string_ext(hdr, JSON_C_TO_STRING_PLAIN));
		g->plen[g->frames] = plen;
		memcpy(g->payload[g->frames], p, plen < 64 ? plen : 64);
	}
	g->frames++;
	if (g->stop_after && g->frames >= g->stop_after)
		return -ECANCELED;
	return 0;
}

static int got_sync(void *ud, const uint8_t n[AGENT_NONCE_LEN])
{
	Got *g = ud;
	g->syncs++;
	memcpy(g->nonce, n, AGENT_NONCE_LEN);
	return 0;
}

static const AgentFramerOps ops = {.on_frame = got_frame, .on_sync = got_sync};

static void append(AgentBuf *b, const char *json, const void *p, size_t plen)
{
	struct json_object *o = json_tokener_parse(json);
	assert_non_null(o);
	assert_int_equal(agent_frame_append(b, o, p, plen), 0);
	json_object_put(o);
}

static void raw(AgentBuf *b, const char *magic, uint32_t hlen, uint32_t plen, const char *hdr)
{
	uint8_t pre[12];
	memcpy(pre, magic, 4);
	for (int i = 0; i < 4; i++) {
		pre[4 + i] = (uint8_t)(hlen >> (8 * i));
		pre[8 + i] = (uint8_t)(plen >> (8 * i));
	}
	agent_buf_append(b, pre, 12);
	if (hdr)
		agent_buf_append(b, hdr, strlen(hdr));
}

static void test_round_trip_every_split(void **state)
{
	AgentBuf b = {0};
	uint8_t nonce[AGENT_NONCE_LEN];
	for (int i = 0; i < AGENT_NONCE_LEN; i++)
		nonce[i] = (uint8_t)(i * 7 + 1);
	append(&b, "{\"type\":\"req\",\"id\":1,\"op\":\"ping\"}", NULL, 0);
	agent_sync_append(&b, nonce);
	append(&b, "{\"type\":\"data\",\"id\":2,\"fd\":1}", "\0binary\xff", 8);
	append(&b, "{\"a\":[1,2,{\"b\":\"\\u00e9\"}]}", "x", 1);
	for (size_t split = 0; split <= b.len; split++) {
		AgentFramer *f = agent_framer_new(1024, 1024);
		Got g = {0};
		assert_int_equal(agent_framer_feed(f, agent_buf_head(&b), split, &ops, &g), 0);
		assert_int_equal(agent_framer_feed(f, agent_buf_head(&b) + split, b.len - split, &ops, &g), 0);
		assert_int_equal(g.frames, 3);
		assert_int_equal(g.syncs, 1);
		assert_memory_equal(g.nonce, nonce, AGENT_NONCE_LEN);
		assert_string_equal(g.hdr[0], "{\"type\":\"req\",\"id\":1,\"op\":\"ping\"}");
		assert_int_equal(g.plen[1], 8);
		assert_memory_equal(g.payload[1], "\0binary\xff", 8);
		assert_int_equal(g.plen[2], 1);
		assert_false(agent_framer_partial(f));
		agent_framer_free(f);
	}
	/* byte by byte */
	AgentFramer *f = agent_framer_new(1024, 1024);
	Got g = {0};
	for (size_t i = 0; i < b.len; i++) {
		assert_int_equal(agent_framer_feed(f, agent_buf_head(&b) + i, 1, &ops, &g), 0);
		if (i + 1 < b.len && g.frames < 3)
			assert_true(agent_framer_partial(f) || i == 0 || g.frames > 0 || g.syncs > 0);
	}
	assert_int_equal(g.frames, 3);
	agent_framer_free(f);
	agent_buf_free(&b);
}

static void test_bad_magic_sticks(void **state)
{
	AgentFramer *f = agent_framer_new(1024, 1024);
	Got g = {0};
	assert_int_equal(agent_framer_feed(f, (const uint8_t *)"GET / HTTP/1.1\r\n", 16, &ops, &g), -EBADMSG);
	AgentBuf b = {0};
	append(&b, "{\"ok\":1}", NULL, 0);
	assert_int_equal(agent_framer_feed(f, agent_buf_head(&b), b.len, &ops, &g), -EBADMSG);
	assert_int_equal(g.frames, 0);
	/* reset recovers */
	agent_framer_reset(f);
	assert_int_equal(agent_framer_feed(f, agent_buf_head(&b), b.len, &ops, &g), 0);
	assert_int_equal(g.frames, 1);
	agent_buf_free(&b);
	agent_framer_free(f);
}

static void test_oversized(void **state)
{
	AgentFramer *f = agent_framer_new(64, 128);
	Got g = {0};
	AgentBuf b = {0};
	raw(&b, "FLA1", 65, 0, NULL);
	assert_int_equal(agent_framer_feed(f, agent_buf_head(&b), b.len, &ops, &g), -EMSGSIZE);
	agent_framer_reset(f);
	agent_buf_clear(&b);
	raw(&b, "FLA1", 2, 129, "{}");
	assert_int_equal(agent_framer_feed(f, agent_buf_head(&b), b.len, &ops, &g), -EMSGSIZE);
	agent_framer_reset(f);
	agent_buf_clear(&b);
	raw(&b, "FLA1", 0xffffffffu, 0xffffffffu, NULL);
	assert_int_equal(agent_framer_feed(f, agent_buf_head(&b), b.len, &ops, &g), -EMSGSIZE);
	/* exactly at the caps is fine */
	agent_framer_reset(f);
	agent_buf_clear(&b);
	char hdr[65];
	memset(hdr, ' ', 64);
	hdr[0] = '{';
	hdr[63] = '}';
	hdr[64] = 0;
	raw(&b, "FLA1", 64, 128, hdr);
	uint8_t pl[128] = {1};
	agent_buf_append(&b, pl, sizeof(pl));
	assert_int_equal(agent_framer_feed(f, agent_buf_head(&b), b.len, &ops, &g), 0);
	assert_int_equal(g.frames, 1);
	agent_buf_free(&b);
	agent_framer_free(f);
}

static void expect_bad_header(const char *hdr)
{
	AgentFramer *f = agent_framer_new(4096, 16);
	Got g = {0};
	AgentBuf b = {0};
	raw(&b, "FLA1", (uint32_t)strlen(hdr), 0, hdr);
	assert_int_equal(agent_framer_feed(f, agent_buf_head(&b), b.len, &ops, &g), -EBADMSG);
	assert_int_equal(g.frames, 0);
	agent_buf_free(&b);
	agent_framer_free(f);
}

static void test_malformed_headers(void **state)
{
	expect_bad_header("not json");
	expect_bad_header("[1,2,3]");
	expect_bad_header("\"string\"");
	expect_bad_header("42");
	expect_bad_header("{\"a\":1} trailing");
	expect_bad_header("{\"a\":1}{\"b\":2}");
	expect_bad_header("{\"a\":");
	expect_bad_header("{\"a\":1,}x");
	/* nesting deeper than the tokener allows */
	char deep[200];
	size_t n = 0;
	deep[n++] = '{';
	deep[n++] = '"';
	deep[n++] = 'a';
	deep[n++] = '"';
	deep[n++] = ':';
	for (int i = 0; i < 60; i++)
		deep[n++] = '[';
	for (int i = 0; i < 60; i++)
		deep[n++] = ']';
	deep[n++] = '}';
	deep[n] = 0;
	expect_bad_header(deep);
	/* embedded NUL */
	AgentFramer *f = agent_framer_new(4096, 16);
	Got g = {0};
	AgentBuf b = {0};
	raw(&b, "FLA1", 9, 0, NULL);
	agent_buf_append(&b, "{\"a\":1}\0x", 9);
	assert_int_equal(agent_framer_feed(f, agent_buf_head(&b), b.len, &ops, &g), -EBADMSG);
	/* zero-length header */
	agent_framer_reset(f);
	agent_buf_clear(&b);
	raw(&b, "FLA1", 0, 0, NULL);
	assert_int_equal(agent_framer_feed(f, agent_buf_head(&b), b.len, &ops, &g), -EBADMSG);
	agent_buf_free(&b);
	agent_framer_free(f);
}

static void test_truncated_is_partial(void **state)
{
	AgentBuf b = {0};
	append(&b, "{\"type\":\"data\"}", "abcdef", 6);
	AgentFramer *f = agent_framer_new(1024, 1024);
	Got g = {0};
	assert_int_equal(agent_framer_feed(f, agent_buf_head(&b), b.len - 1, &ops, &g), 0);
	assert_int_equal(g.frames, 0);
	assert_true(agent_framer_partial(f));
	agent_framer_reset(f);
	assert_false(agent_framer_partial(f));
	agent_buf_free(&b);
	agent_framer_free(f);
}

static void test_hunt(void **state)
{
	uint8_t n1[AGENT_NONCE_LEN], n2[AGENT_NONCE_LEN];
	memset(n1, 0x11, sizeof(n1));
	memset(n2, 0x22, sizeof(n2));
	AgentBuf b = {0};
	/* stale bytes: half frames, a foreign sync, "FLS" prefixes */
	agent_buf_append(&b, "FLA1\x05\x00garbageFLSFLS", 19);
	append(&b, "{\"stale\":1}", "zz", 2);
	agent_sync_append(&b, n2);
	append(&b, "{\"stale\":2}", NULL, 0);
	agent_buf_append(&b, "FLFLS1", 6);
	agent_buf_append(&b, n1, 5); /* cut short */
	agent_buf_append(&b, "FLS1", 4);
	agent_buf_append(&b, n1, sizeof(n1));
	append(&b, "{\"fresh\":1}", "p", 1);
	for (size_t split = 0; split <= b.len; split += 3) {
		AgentFramer *f = agent_framer_new(1024, 1024);
		agent_framer_hunt(f, n1);
		assert_true(agent_framer_hunting(f));
		Got g = {0};
		assert_int_equal(agent_framer_feed(f, agent_buf_head(&b), split, &ops, &g), 0);
		assert_int_equal(agent_framer_feed(f, agent_buf_head(&b) + split, b.len - split, &ops, &g), 0);
		assert_int_equal(g.syncs, 1);
		assert_memory_equal(g.nonce, n1, sizeof(n1));
		assert_int_equal(g.frames, 1);
		assert_string_equal(g.hdr[0], "{\"fresh\":1}");
		agent_framer_free(f);
	}
	/* hunting for any nonce stops at the first sync; what follows must
	 * then be frames ("FLFL..." is not) */
	AgentFramer *f = agent_framer_new(1024, 1024);
	agent_framer_hunt(f, NULL);
	Got g = {0};
	assert_int_equal(agent_framer_feed(f, agent_buf_head(&b), b.len, &ops, &g), -EBADMSG);
	assert_memory_equal(g.nonce, n2, sizeof(n2));
	assert_int_equal(g.syncs, 1);
	assert_int_equal(g.frames, 1);
	assert_string_equal(g.hdr[0], "{\"stale\":2}");
	agent_framer_free(f);
	agent_buf_free(&b);
}

static void test_callback_error_stops(void **state)
{
	AgentBuf b = {0};
	append(&b, "{\"n\":1}", NULL, 0);
	append(&b, "{\"n\":2}", NULL, 0);
	AgentFramer *f = agent_framer_new(1024, 1024);
	Got g = {.stop_after = 1};
	assert_int_equal(agent_framer_feed(f, agent_buf_head(&b), b.len, &ops, &g), -ECANCELED);
	assert_int_equal(g.frames, 1);
	agent_buf_free(&b);
	agent_framer_free(f);
}

static void test_buf(void **state)
{
	AgentBuf b = {0};
	for (int i = 0; i < 1000; i++)
		assert_int_equal(agent_buf_append(&b, "0123456789", 10), 0);
	assert_int_equal(b.len, 10000);
	agent_buf_consume(&b, 9995);
	assert_memory_equal(agent_buf_head(&b), "56789", 5);
	assert_int_equal(agent_buf_append(&b, "ab", 2), 0);
	assert_memory_equal(agent_buf_head(&b), "56789ab", 7);
	agent_buf_consume(&b, 100);
	assert_int_equal(b.len, 0);
	agent_buf_free(&b);
}

static void test_hex_and_json(void **state)
{
	uint8_t in[4] = {0x00, 0xab, 0x7f, 0xff}, out[4];
	char hex[9];
	agent_hex(in, 4, hex);
	assert_string_equal(hex, "00ab7fff");
	assert_int_equal(agent_unhex("00AB7fff", out, 4), 0);
	assert_memory_equal(in, out, 4);
	assert_int_equal(agent_unhex("00ab7ff", out, 4), -EINVAL);
	assert_int_equal(agent_unhex("00ab7fgf", out, 4), -EINVAL);
	assert_int_equal(agent_unhex(NULL, out, 4), -EINVAL);

	struct json_object *o = json_tokener_parse(
		"{\"i\":-5,\"u\":7,\"big\":99999999999999999999,\"s\":\"x\",\"d\":1.5,\"b\":true,\"n\":null}");
	int64_t i;
	uint64_t u;
	assert_int_equal(agent_json_get_i64(o, "i", &i), 0);
	assert_int_equal(i, -5);
	assert_int_equal(agent_json_get_u64(o, "i", &u), -ERANGE);
	assert_int_equal(agent_json_get_u64(o, "u", &u), 0);
	assert_int_equal(u, 7);
	assert_true(agent_json_get_i64(o, "big", &i) < 0);
	assert_int_equal(agent_json_get_i64(o, "s", &i), -EINVAL);
	assert_int_equal(agent_json_get_i64(o, "d", &i), -EINVAL);
	assert_int_equal(agent_json_get_i64(o, "missing", &i), -ENOENT);
	assert_string_equal(agent_json_get_str(o, "s"), "x");
	assert_null(agent_json_get_str(o, "i"));
	assert_null(agent_json_get_str(o, "n"));
	assert_true(agent_json_get_bool(o, "b"));
	assert_false(agent_json_get_bool(o, "i"));
	json_object_put(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_every_split),
		cmocka_unit_test(test_bad_magic_sticks),
		cmocka_unit_test(test_oversized),
		cmocka_unit_test(test_malformed_headers),
		cmocka_unit_test(test_truncated_is_partial),
		cmocka_unit_test(test_hunt),
		cmocka_unit_test(test_callback_error_stops),
		cmocka_unit_test(test_buf),
		cmocka_unit_test(test_hex_and_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
