// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for fluid-inspect's parsers of hostile guest files and
 * its other pure parts. The first byte picks the target:
 *   0 dpkg status, 1 passwd, 2 group, 3 shadow: output sorted by name,
 *     names unique, printable and bounded;
 *   4 line diff of the two halves (split at the first 0xff byte): never
 *     crashes, stays within its output cap, and is empty iff equal;
 *   5 glob: pattern and path split at the first NUL;
 *   6 JSON string escaping: the output is valid UTF-8 without raw control
 *     bytes, and "valid" matches ins_utf8_valid().
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "inspect.h"

static void check_name(const char *s)
{
	size_t n = strlen(s);
	if (!n || n > 600)
		abort();
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20)
			abort();
}

#define CHECK_SORTED(v, n)                                                      \
	for (size_t i = 0; i < (n); i++) {                                      \
		check_name((v)[i].name);                                        \
		if (i && strcmp((v)[i - 1].name, (v)[i].name) >= 0)             \
			abort();                                                \
	}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const char *s = (const char *)data + 1;
	size_t len = size - 1;
	bool cut;
	switch (data[0] % 7) {
	case 0: {
		InsPkg *p;
		size_t n;
		if (ins_dpkg_parse(s, len, &p, &n, &cut) == 0) {
			CHECK_SORTED(p, n);
			ins_pkgs_free(p, n);
		}
		break;
	}
	case 1: {
		InsUser *u;
		size_t n;
		if (ins_passwd_parse(s, len, &u, &n, &cut) == 0) {
			CHECK_SORTED(u, n);
			ins_users_free(u, n);
		}
		break;
	}
	case 2: {
		InsGroup *g;
		size_t n;
		if (ins_group_parse(s, len, &g, &n, &cut) == 0) {
			CHECK_SORTED(g, n);
			for (size_t i = 0; i < n; i++)
				for (size_t k = 0; k < g[i].n_members; k++)
					check_name(g[i].members[k]);
			ins_groups_free(g, n);
		}
		break;
	}
	case 3: {
		InsShadow *sh;
		size_t n;
		if (ins_shadow_parse(s, len, &sh, &n, &cut) == 0) {
			CHECK_SORTED(sh, n);
			ins_shadows_free(sh, n);
		}
		break;
	}
	case 4: {
		const char *sep = memchr(s, 0xff, len);
		size_t la = sep ? (size_t)(sep - s) : len / 2;
		const char *b = sep ? sep + 1 : s + la;
		size_t lb = len - la - (sep ? 1 : 0);
		InsBuf o;
		ins_buf_init(&o, 1u << 20);
		int r = ins_unified_diff(s, la, b, lb, "/f", 4096, &o, &cut);
		if (r == 0 && o.len > 4096)
			abort();
		if (r == 0 && (o.len == 0) != (la == lb && !memcmp(s, b, la)))
			abort();
		ins_buf_free(&o);
		break;
	}
	case 5: {
		char pat[256], path[4097];
		const char *z = memchr(s, 0, len);
		size_t lp = z ? (size_t)(z - s) : len;
		if (lp >= sizeof(pat) || len - lp - (z ? 1 : 0) >= sizeof(path))
			break;
		memcpy(pat, s, lp);
		pat[lp] = 0;
		memcpy(path, z ? z + 1 : s + lp, len - lp - (z ? 1 : 0));
		path[len - lp - (z ? 1 : 0)] = 0;
		(void)ins_glob_match(pat, path);
		break;
	}
	case 6: {
		InsBuf o;
		ins_buf_init(&o, 16 * size + 16);
		bool valid = ins_json_str(&o, s, len);
		if (valid != ins_utf8_valid(s, len))
			abort();
		if (o.overflow || !ins_utf8_valid(o.p, o.len))
			abort();
		for (size_t i = 0; i < o.len; i++)
			if ((unsigned char)o.p[i] < 0x20)
				abort();
		ins_buf_free(&o);
		break;
	}
	}
	return 0;
}
