// SPDX-License-Identifier: MIT
/* base64: the one encoder/decoder of the tree (playbook files, command output). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "cleanup.h"

static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *fl_base64_encode(const void *data, size_t len)
{
	const unsigned char *p = data;
	char *out = malloc(4 * ((len + 2) / 3) + 1), *o = out;
	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < len ? (uint32_t)p[i + 1] << 8 : 0) |
			     (i + 2 < len ? p[i + 2] : 0);
		*o++ = tbl[v >> 18 & 63];
		*o++ = tbl[v >> 12 & 63];
		*o++ = i + 1 < len ? tbl[v >> 6 & 63] : '=';
		*o++ = i + 2 < len ? tbl[v & 63] : '=';
	}
	*o = 0;
	return out;
}

static int val(char c)
{
	const char *p = c ? strchr(tbl, c) : NULL;
	return p ? (int)(p - tbl) : -1;
}

int fl_base64_decode(const char *s, char **ret, size_t *ret_len)
{
	size_t n = strlen(s);
	if (n % 4)
		return -EINVAL;
	_cleanup_free_ char *out = malloc(n / 4 * 3 + 1);
	if (!out)
		return -ENOMEM;
	size_t o = 0;
	for (size_t i = 0; i < n; i += 4) {
		int v[4];
		for (int k = 0; k < 4; k++) {
			if (s[i + k] == '=' && i + 4 == n && k >= 2) {
				v[k] = -2;
				continue;
			}
			if ((v[k] = val(s[i + k])) < 0)
				return -EINVAL;
		}
		if (v[2] == -2 && v[3] != -2)
			return -EINVAL;
		out[o++] = (char)((v[0] << 2) | (v[1] >> 4));
		if (v[2] != -2)
			out[o++] = (char)(((v[1] & 15) << 4) | (v[2] >> 2));
		if (v[3] != -2)
			out[o++] = (char)(((v[2] & 3) << 6) | v[3]);
	}
	out[o] = 0;
	*ret_len = o;
	*ret = TAKE_PTR(out);
	return 0;
}
