// SPDX-License-Identifier: MIT
/*
 * Unit tests for appliance/db-util.c: SHA-256 against the FIPS 180-4
 * example vectors (one-shot and fed in odd pieces), the token format and
 * its hash, and the UTF-8 cleaning of stored command output (invalid
 * sequences and NUL become U+FFFD, the cap never splits a character).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "db-internal.h"

static void hex_of(const char *s, size_t len, char out[FL_DB_HASH_HEX])
{
	fl_sha256_hex(s, len, out);
}

static void test_sha256_vectors(void **state)
{
	char h[FL_DB_HASH_HEX];
	hex_of("", 0, h);
	assert_string_equal(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	hex_of("abc", 3, h);
	assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	hex_of(two, strlen(two), h);
	assert_string_equal(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_sha256_million_a_in_pieces(void **state)
{
	char *buf = malloc(1000000);
	assert_non_null(buf);
	memset(buf, 'a', 1000000);
	FlSha256 s;
	uint8_t d[32];
	fl_sha256_init(&s);
	/* Odd piece sizes cross the 64-byte block boundary in every way. */
	size_t off = 0, step = 1;
	while (off < 1000000) {
		size_t n = step < 1000000 - off ? step : 1000000 - off;
		fl_sha256_update(&s, buf + off, n);
		off += n;
		step = step * 7 % 997 + 1;
	}
	fl_sha256_final(&s, d);
	char h[65];
	for (int i = 0; i < 32; i++)
		sprintf(h + 2 * i, "%02x", d[i]);
	assert_string_equal(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	free(buf);
}

static void test_token_format(void **state)
{
	const char *good = "flt_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	assert_true(fl_db_token_wellformed(good));
	assert_false(fl_db_token_wellformed(NULL));
	assert_false(fl_db_token_wellformed(""));
	assert_false(fl_db_token_wellformed("flt_"));
	assert_false(fl_db_token_wellformed(
		"flt_0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"));
	assert_false(fl_db_token_wellformed(
		"xyz_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
	assert_false(fl_db_token_wellformed(
		"flt_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0"));
	char a[FL_DB_HASH_HEX], b[FL_DB_HASH_HEX];
	fl_db_token_hash(good, a);
	fl_sha256_hex(good, strlen(good), b);
	assert_string_equal(a, b);
	assert_int_equal(strlen(a), 64);
}

static void clean_eq(const char *in, size_t len, size_t cap, const char *want, size_t want_used)
{
	size_t used = 999;
	char *out = fl_db_utf8_clean(in, len, cap, &used);
	assert_non_null(out);
	assert_string_equal(out, want);
	assert_int_equal(used, want_used);
	free(out);
}

static void test_utf8_clean(void **state)
{
	clean_eq("hello", 5, 100, "hello", 5);
	clean_eq("h\xc3\xa9llo", 6, 100, "h\xc3\xa9llo", 6);            /* é kept */
	clean_eq("a\xff" "b", 3, 100, "a\xef\xbf\xbd" "b", 3);          /* bad byte */
	clean_eq("a\0b", 3, 100, "a\xef\xbf\xbd" "b", 3);               /* NUL */
	clean_eq("\xc0\x80", 2, 100, "\xef\xbf\xbd\xef\xbf\xbd", 2);    /* overlong NUL */
	clean_eq("\xed\xa0\x80", 3, 100, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 3); /* surrogate */
	clean_eq("ab\xe2\x82", 4, 100, "ab\xef\xbf\xbd\xef\xbf\xbd", 4); /* cut sequence */
	clean_eq("\xf0\x9f\x98\x80!", 5, 100, "\xf0\x9f\x98\x80!", 5);  /* 4-byte kept */
	/* The cap never splits a character. */
	clean_eq("a\xc3\xa9", 3, 2, "a", 1);
	clean_eq("a\xc3\xa9", 3, 3, "a\xc3\xa9", 3);
	clean_eq("abcdef", 6, 4, "abcd", 4);
	clean_eq("a\xff", 2, 3, "a", 1); /* no room for the 3-byte replacement */
	clean_eq("", 0, 10, "", 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sha256_vectors),
		cmocka_unit_test(test_sha256_million_a_in_pieces),
		cmocka_unit_test(test_token_format),
		cmocka_unit_test(test_utf8_clean),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
