// SPDX-License-Identifier: MIT
/*
 * db-util: pure helpers of the database layer with no libpq in them, so
 * unit tests link them alone: SHA-256 (FIPS 180-4; token hashes are
 * computed here so a token's plaintext never reaches PostgreSQL), the
 * token format, and the UTF-8 cleaning applied to stored command output.
 */
#include <stdlib.h>
#include <string.h>

#include "db-internal.h"

void fl_db_token_hash(const char *plaintext, char ret_hex[FL_DB_HASH_HEX])
{
	fl_sha256_hex(plaintext, strlen(plaintext), ret_hex);
}

bool fl_db_token_wellformed(const char *t)
{
	if (!t || strncmp(t, "flt_", 4) || strlen(t) != 4 + 64)
		return false;
	for (const char *p = t + 4; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

/* Length of the valid UTF-8 sequence at p (1-4), or 0 if invalid/NUL. */
static size_t utf8_seq(const uint8_t *p, size_t avail)
{
	uint8_t c = p[0];
	size_t n;
	uint32_t cp;
	if (c == 0)
		return 0;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4, cp = c & 0x07;
	else
		return 0;
	if (avail < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

char *fl_db_utf8_clean(const char *in, size_t len, size_t cap, size_t *ret_used)
{
	/* Worst case every byte becomes the 3-byte U+FFFD. */
	size_t outmax = len < cap ? len * 3 : cap;
	if (outmax > cap)
		outmax = cap;
	char *out = malloc(outmax + 1);
	if (!out)
		return NULL;
	const uint8_t *p = (const uint8_t *)in;
	size_t i = 0, o = 0;
	while (i < len) {
		size_t n = utf8_seq(p + i, len - i);
		size_t need = n ? n : 3;
		if (o + need > outmax)
			break;
		if (n) {
			memcpy(out + o, p + i, n);
			i += n;
		} else {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			i++;
		}
		o += need;
	}
	out[o] = 0;
	if (ret_used)
		*ret_used = i;
	return out;
}
