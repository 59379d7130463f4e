// SPDX-License-Identifier: MIT
/*
 * Unit tests of fluid-inspect's pure parts (image-build/inspect/inspect.h):
 * the unified line diff (checked by applying it back, on fixed cases and
 * random ones), the dpkg status and passwd/group/shadow parsers on normal
 * and hostile input, ignore globs, JSON escaping of hostile names, base64
 * and SHA-256.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "inspect.h"

/* ---- a small patch applier to check diffs ---------------------------------- */

typedef struct Text {
	char *p;
	size_t len, cap;
} Text;

static void tput(Text *t, const char *s, size_t n)
{
	if (t->len + n + 1 > t->cap) {
		t->cap = (t->len + n + 1) * 2;
		t->p = realloc(t->p, t->cap);
	}
	memcpy(t->p + t->len, s, n);
	t->len += n;
	t->p[t->len] = 0;
}

/* Applies a unified diff to a; returns the result (caller frees) or NULL. */
static char *apply(const char *a, size_t alen, const char *d, size_t *ret_len)
{
	Text out = {0};
	tput(&out, "", 0);
	size_t apos = 0, aline = 0; /* a offset and lines consumed */
	const char *p = d;
	/* skip headers */
	for (int k = 0; k < 2; k++) {
		p = strchr(p, '\n');
		if (!p)
			return NULL;
		p++;
	}
	bool last_was_from_a = false, last_added = false;
	size_t last_out_nl = 0;
	while (*p) {
		const char *e = strchr(p, '\n');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (p[0] == '@') {
			char *q;
			unsigned long as = strtoul(p + 4, &q, 10), ac = 1;
			if (*q == ',')
				ac = strtoul(q + 1, &q, 10);
			unsigned long start = ac == 0 ? as : as - 1;
			while (aline < start) { /* copy unchanged lines */
				const char *nl = memchr(a + apos, '\n', alen - apos);
				size_t l = nl ? (size_t)(nl - (a + apos)) + 1 : alen - apos;
				tput(&out, a + apos, l);
				apos += l;
				aline++;
			}
		} else if (p[0] == ' ' || p[0] == '-') {
			const char *nl = memchr(a + apos, '\n', alen - apos);
			size_t l = nl ? (size_t)(nl - (a + apos)) + 1 : alen - apos;
			size_t want = l - (nl ? 1 : 0);
			if (want != n - 1 || memcmp(a + apos, p + 1, want))
				return NULL; /* context does not match */
			if (p[0] == ' ')
				tput(&out, a + apos, l);
			apos += l;
			aline++;
			last_was_from_a = p[0] == ' ';
			last_added = false;
		} else if (p[0] == '+') {
			tput(&out, p + 1, n - 1);
			last_out_nl = out.len;
			tput(&out, "\n", 1);
			last_added = true;
			last_was_from_a = false;
		} else if (p[0] == '\\') {
			if (last_added && out.len == last_out_nl + 1)
				out.len--, out.p[out.len] = 0; /* the added line had no newline */
			(void)last_was_from_a;
		} else {
			return NULL;
		}
		p = e ? e + 1 : p + n;
	}
	tput(&out, a + apos, alen - apos);
	*ret_len = out.len;
	return out.p;
}

static void check_diff(const char *a, const char *b, bool expect_empty)
{
	InsBuf o;
	ins_buf_init(&o, 1u << 24);
	bool cut = true;
	assert_int_equal(ins_unified_diff(a, strlen(a), b, strlen(b), "/f", 1u << 24, &o, &cut), 0);
	assert_false(cut);
	if (expect_empty) {
		assert_int_equal(o.len, 0);
		ins_buf_free(&o);
		return;
	}
	assert_true(o.len > 0);
	size_t len = 0;
	char *r = apply(a, strlen(a), o.p, &len);
	if (!r || len != strlen(b) || memcmp(r, b, len))
		fprintf(stderr, "a=[%s]\nb=[%s]\ndiff=[%s]\ngot=[%s]\n", a, b, o.p, r ? r : "(null)");
	assert_non_null(r);
	assert_int_equal(len, strlen(b));
	assert_memory_equal(r, b, len);
	free(r);
	ins_buf_free(&o);
}

static void test_diff_basic(void **state)
{
	InsBuf o;
	ins_buf_init(&o, 1 << 20);
	bool cut;
	const char *a = "1\n2\n3\n4\n5\n6\n7\n8\n9\n", *b = "1\n2\n3\n4\nfive\n6\n7\n8\n9\n";
	assert_int_equal(ins_unified_diff(a, strlen(a), b, strlen(b), "/etc/x", 1 << 20, &o, &cut), 0);
	assert_string_equal(o.p, "--- a/etc/x\n+++ b/etc/x\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n");
	ins_buf_free(&o);
	check_diff("", "", true);
	check_diff("same\n", "same\n", true);
	check_diff("", "new\n", false);
	check_diff("old\n", "", false);
	check_diff("a\nb", "a\nb\n", false);  /* newline added at the end */
	check_diff("a\nb\n", "a\nc", false);  /* ... removed */
	check_diff("x\n", "y", false);
	check_diff("1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\n15\n16\n",
		   "0\n1\n2\n3\n4\n5\n6\n7\nX\n9\n10\n11\n12\n13\n14\n15\n", false);
	/* empty file gives "@@ -0,0 +1 @@" */
	ins_buf_init(&o, 1 << 20);
	assert_int_equal(ins_unified_diff("", 0, "n\n", 2, "/f", 1 << 20, &o, &cut), 0);
	assert_string_equal(o.p, "--- a/f\n+++ b/f\n@@ -0,0 +1 @@\n+n\n");
	ins_buf_free(&o);
}

static void test_diff_random(void **state)
{
	srand(42);
	for (int round = 0; round < 400; round++) {
		char a[2048] = "", b[2048] = "";
		int na = rand() % 40, nb;
		for (int i = 0; i < na; i++)
			snprintf(a + strlen(a), sizeof(a) - strlen(a), "l%d\n", rand() % 6);
		/* b: a mutated */
		nb = 0;
		const char *p = a;
		while (*p) {
			const char *e = strchr(p, '\n') + 1;
			int op = rand() % 5;
			if (op == 0) { /* delete */
			} else if (op == 1) { /* insert before */
				snprintf(b + strlen(b), sizeof(b) - strlen(b), "n%d\n", rand() % 6);
				strncat(b, p, (size_t)(e - p));
			} else {
				strncat(b, p, (size_t)(e - p));
			}
			p = e;
			nb++;
		}
		if (rand() % 4 == 0 && strlen(b)) /* drop the final newline */
			b[strlen(b) - 1] = 0;
		check_diff(a, b, !strcmp(a, b));
	}
}

static void test_diff_bounds(void **state)
{
	/* Entirely different files beyond the edit bound: still a correct diff. */
	size_t n = 3 * INS_DIFF_MAX_EDIT;
	char *a = malloc(n * 8), *b = malloc(n * 8);
	a[0] = b[0] = 0;
	size_t la = 0, lb = 0;
	for (size_t i = 0; i < n; i++) {
		la += (size_t)sprintf(a + la, "a%zu\n", i);
		lb += (size_t)sprintf(b + lb, "b%zu\n", i);
	}
	check_diff(a, b, false);
	/* the output cap cuts at a line and says so */
	InsBuf o;
	ins_buf_init(&o, 1 << 20);
	bool cut = false;
	assert_int_equal(ins_unified_diff(a, la, b, lb, "/f", 1000, &o, &cut), 0);
	assert_true(cut);
	assert_true(o.len <= 1000 && o.len > 0 && o.p[o.len - 1] == '\n');
	ins_buf_free(&o);
	/* a line too long, too many lines */
	char *longl = malloc(INS_DIFF_MAX_LINE + 10);
	memset(longl, 'x', INS_DIFF_MAX_LINE + 9);
	longl[INS_DIFF_MAX_LINE + 9] = 0;
	ins_buf_init(&o, 1 << 20);
	assert_int_equal(ins_unified_diff("x\n", 2, longl, strlen(longl), "/f", 1 << 20, &o, &cut),
			 -E2BIG);
	ins_buf_free(&o);
	char *many = malloc(2 * (INS_DIFF_MAX_LINES + 1) + 1);
	for (size_t i = 0; i < INS_DIFF_MAX_LINES + 1; i++)
		memcpy(many + 2 * i, "x\n", 2);
	ins_buf_init(&o, 1 << 20);
	assert_int_equal(ins_unified_diff(many, 2 * (INS_DIFF_MAX_LINES + 1), "y\n", 2, "/f", 1 << 20,
					  &o, &cut),
			 -E2BIG);
	ins_buf_free(&o);
	free(many);
	free(longl);
	free(a);
	free(b);
}

/* ---- dpkg ------------------------------------------------------------------------ */

static void test_dpkg(void **state)
{
	const char *s =
		"Package: zlib1g\nStatus: install ok installed\nPriority: required\nVersion: 1:1.2.13\n"
		"Description: compression\n more text\n .\n Package: fake\n\n"
		"Package: removed\r\nStatus: deinstall ok config-files\r\nVersion: 1\r\n\r\n"
		"Package: hello\nVersion: 2.10-3\nStatus: install ok installed\nArchitecture: amd64\n\n"
		"Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.36\n\n"
		"Package: libc6\nStatus: install ok installed\nArchitecture: i386\nVersion: 2.36\n\n"
		"Package: noversion\nStatus: install ok installed\n\n"
		"Package: bad name\nStatus: install ok installed\nVersion: 1\n\n"
		"Package: half\nStatus: install ok half-installed\nVersion: 1\n\n"
		"Package: last\nStatus: install ok installed\nVersion: 9"; /* no final newline */
	InsPkg *p;
	size_t n;
	bool cut;
	assert_int_equal(ins_dpkg_parse(s, strlen(s), &p, &n, &cut), 0);
	assert_false(cut);
	assert_int_equal(n, 5);
	assert_string_equal(p[0].name, "hello");
	assert_string_equal(p[0].version, "2.10-3");
	assert_string_equal(p[1].name, "last");
	assert_string_equal(p[2].name, "libc6");
	assert_string_equal(p[3].name, "libc6:i386");
	assert_string_equal(p[4].name, "zlib1g");
	assert_string_equal(p[4].version, "1:1.2.13");
	ins_pkgs_free(p, n);
	/* empty and garbage */
	assert_int_equal(ins_dpkg_parse("", 0, &p, &n, &cut), 0);
	assert_int_equal(n, 0);
	ins_pkgs_free(p, n);
	char junk[300];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (char)(i * 37);
	assert_int_equal(ins_dpkg_parse(junk, sizeof(junk), &p, &n, &cut), 0);
	ins_pkgs_free(p, n);
	/* an overlong field makes the record ignored */
	char *big = malloc(4000);
	snprintf(big, 4000, "Package: x\nStatus: install ok installed\nVersion: %02000d\n", 1);
	assert_int_equal(ins_dpkg_parse(big, strlen(big), &p, &n, &cut), 0);
	assert_int_equal(n, 0);
	ins_pkgs_free(p, n);
	free(big);
}

/* ---- passwd / group / shadow ---------------------------------------------------------- */

static void test_accounts(void **state)
{
	const char *pw = "root:x:0:0:root:/root:/bin/bash\n"
			 "# comment\n\n"
			 "alice:x:1000:1000:Alice A,,,:/home/alice:/bin/sh\r\n"
			 "root:x:5:5:second root:/:/bin/false\n" /* duplicate: first wins */
			 "bad:x:notanumber:0::/:/bin/sh\n"
			 "short:x:1:1\n"
			 "+nis::::::\n"
			 "big:x:99999999999:0::/:/bin/sh\n"
			 "ctl\x01:x:5:5::/:/bin/sh\n"
			 "bob:x:1001:1001::/home/bob:/bin/sh"; /* no final newline */
	InsUser *u;
	size_t n;
	bool cut;
	assert_int_equal(ins_passwd_parse(pw, strlen(pw), &u, &n, &cut), 0);
	assert_int_equal(n, 3);
	assert_string_equal(u[0].name, "alice");
	assert_string_equal(u[0].gecos, "Alice A,,,");
	assert_string_equal(u[0].shell, "/bin/sh");
	assert_int_equal(u[0].uid, 1000);
	assert_string_equal(u[1].name, "bob");
	assert_string_equal(u[2].name, "root");
	assert_int_equal(u[2].uid, 0);
	assert_string_equal(u[2].home, "/root");
	ins_users_free(u, n);

	const char *gr = "root:x:0:\nsudo:x:27:alice,bob,alice,,\ndevs:x:2001:zed,alice\nbad:x::\n";
	InsGroup *g;
	assert_int_equal(ins_group_parse(gr, strlen(gr), &g, &n, &cut), 0);
	assert_int_equal(n, 3);
	assert_string_equal(g[0].name, "devs");
	assert_int_equal(g[0].n_members, 2);
	assert_string_equal(g[0].members[0], "alice");
	assert_string_equal(g[0].members[1], "zed");
	assert_string_equal(g[2].name, "sudo");
	assert_int_equal(g[2].n_members, 2); /* duplicates collapse */
	assert_int_equal(g[1].n_members, 0);
	ins_groups_free(g, n);

	const char *sh = "root:$6$salt$hash:19000:0:99999:7:::\nalice:!:19000::::::\nbob::1::::::\n"
			 "carol:*:1::::::\nnocolon\n";
	InsShadow *s;
	assert_int_equal(ins_shadow_parse(sh, strlen(sh), &s, &n, &cut), 0);
	assert_int_equal(n, 4);
	assert_string_equal(s[0].name, "alice");
	assert_int_equal(s[0].pw, INS_PW_LOCKED);
	assert_int_equal(s[1].pw, INS_PW_NONE);
	assert_int_equal(s[2].pw, INS_PW_LOCKED);
	assert_string_equal(s[3].name, "root");
	assert_int_equal(s[3].pw, INS_PW_SET);
	assert_string_equal(ins_pw_name(s[3].pw), "set");
	ins_shadows_free(s, n);
}

/* ---- globs --------------------------------------------------------------------------- */

static void test_globs(void **state)
{
	static const struct {
		const char *pat, *path;
		bool match;
	} cases[] = {
		{"/var/log/**", "/var/log/syslog", true},
		{"/var/log/**", "/var/log/apt/history.log", true},
		{"/var/log/**", "/var/log", false},
		{"/var/log/**", "/var/logs/x", false},
		{"/etc/ssh/ssh_host_*", "/etc/ssh/ssh_host_rsa_key.pub", true},
		{"/etc/ssh/ssh_host_*", "/etc/ssh/ssh_host_dir/x", false},
		{"/home/*/.bash_history", "/home/alice/.bash_history", true},
		{"/home/*/.bash_history", "/home/a/b/.bash_history", false},
		{"*.pyc", "/usr/lib/python3/x.pyc", true},
		{"*.pyc", "/usr/lib/python3/x.pyc/y", false},
		{"**/__pycache__/**", "/usr/lib/x/__pycache__/m.cpython-311.pyc", true},
		{"**/__pycache__", "/usr/lib/x/__pycache__", true},
		{"/etc/machine-id", "/etc/machine-id", true},
		{"/etc/machine-id", "/etc/machine-idx", false},
		{"/tmp/?", "/tmp/a", true},
		{"/tmp/?", "/tmp/ab", false},
		{"/a/**/z", "/a/b/c/z", true},
		{"/a/**/z", "/a/z", false},
		{"/a/*/c/**", "/a/b/c/d/e", true},
		{"/a/*x*y", "/a/1x2x3y", true},
		{"/a/*x*y", "/a/1x2x3y/", false},
		{"**", "/anything/at/all", true},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		bool m = ins_glob_match(cases[i].pat, cases[i].path);
		if (m != cases[i].match)
			fprintf(stderr, "%s vs %s: %d\n", cases[i].pat, cases[i].path, m);
		assert_int_equal(m, cases[i].match);
	}
	/* pathological pattern stays fast (bounded backtracking) */
	char path[4097];
	memset(path, 'a', 4096);
	path[0] = '/';
	path[4096] = 0;
	assert_false(ins_glob_match("/*a*a*a*a*a*a*a*a*a*a*b", path));
	assert_false(ins_glob_match("/**a**a**a**a**a**a**b", path));

	InsIgnore ig = {0};
	for (size_t i = 0; ins_default_ignore[i]; i++)
		assert_int_equal(ins_ignore_add(&ig, ins_default_ignore[i]), 0);
	assert_true(ins_ignored(&ig, "/var/cache/apt/pkgcache.bin"));
	assert_true(ins_ignored(&ig, "/etc/hostname"));
	assert_false(ins_ignored(&ig, "/etc/nginx/nginx.conf"));
	assert_int_equal(ins_ignore_add_text(&ig, "# c\n\n  /srv/**  \n/opt/x\r\n", 25), 0);
	assert_true(ins_ignored(&ig, "/srv/data"));
	assert_true(ins_ignored(&ig, "/opt/x"));
	assert_int_equal(ins_ignore_add(&ig, "bad\npattern"), -EINVAL);
	assert_int_equal(ins_ignore_add(&ig, ""), -EINVAL);
	ins_ignore_free(&ig);
}

/* ---- JSON, base64, SHA-256 --------------------------------------------------------------- */

static char *json_of(const char *s, size_t len, bool *valid)
{
	InsBuf b;
	ins_buf_init(&b, 1 << 20);
	*valid = ins_json_str(&b, s, len);
	return b.p;
}

static void test_json_escape(void **state)
{
	bool valid;
	static const char name[] = "/root/we\"ird\nna\\me\t\x01\x7f";
	char *j = json_of(name, sizeof(name) - 1, &valid);
	assert_true(valid);
	struct json_object *o = json_tokener_parse(j);
	assert_non_null(o);
	assert_string_equal(json_object_get_string(o), name);
	json_object_put(o);
	free(j);
	/* invalid UTF-8: each bad byte becomes U+FFFD, the output is valid JSON */
	static const char bad[] = "a\xff" "b\xc0\xaf" "c\xed\xa0\x80" "d\xf4\x90\x80\x80" "e\xe2\x82";
	j = json_of(bad, sizeof(bad) - 1, &valid);
	assert_false(valid);
	o = json_tokener_parse(j);
	assert_non_null(o);
	const char *s = json_object_get_string(o);
	assert_true(ins_utf8_valid(s, strlen(s)));
	assert_int_equal(s[0], 'a');
	assert_memory_equal(s + 1, "\xef\xbf\xbd" "b", 4);
	json_object_put(o);
	free(j);
	/* valid multibyte passes unchanged; NUL is escaped */
	static const char ok[] = "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80";
	j = json_of(ok, sizeof(ok) - 1, &valid);
	assert_true(valid);
	assert_non_null(strstr(j, "\xf0\x9f\x98\x80"));
	free(j);
	j = json_of("a\0b", 3, &valid);
	assert_string_equal(j, "\"a\\u0000b\"");
	free(j);
	assert_false(ins_utf8_valid("\xc1\x81", 2)); /* overlong */
	assert_false(ins_utf8_valid("\xe0\x80\x80", 3));
	assert_true(ins_utf8_valid("", 0));

	/* the buffer refuses to grow past its max */
	InsBuf b;
	ins_buf_init(&b, 8);
	ins_buf_puts(&b, "12345678");
	assert_false(b.overflow);
	ins_buf_puts(&b, "9");
	assert_true(b.overflow);
	assert_int_equal(b.len, 8);
	ins_buf_free(&b);
}

static void test_base64_sha(void **state)
{
	static const struct {
		const char *in, *out;
	} v[] = {{"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"}, {"foob", "Zm9vYg=="},
		 {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"}};
	for (size_t i = 0; i < sizeof(v) / sizeof(*v); i++) {
		InsBuf b;
		ins_buf_init(&b, 100);
		ins_base64(&b, v[i].in, strlen(v[i].in));
		assert_string_equal(b.p ? b.p : "", v[i].out);
		ins_buf_free(&b);
	}
	FlSha256 s;
	char hex[65];
	fl_sha256_init(&s);
	fl_sha256_final_hex(&s, hex);
	assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	fl_sha256_init(&s);
	fl_sha256_update(&s, "ab", 2);
	fl_sha256_update(&s, "c", 1);
	fl_sha256_final_hex(&s, hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	/* a million 'a', fed in odd pieces */
	fl_sha256_init(&s);
	char chunk[997];
	memset(chunk, 'a', sizeof(chunk));
	size_t left = 1000000;
	while (left) {
		size_t k = left < sizeof(chunk) ? left : sizeof(chunk);
		fl_sha256_update(&s, chunk, k);
		left -= k;
	}
	fl_sha256_final_hex(&s, hex);
	assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_diff_basic),  cmocka_unit_test(test_diff_random),
		cmocka_unit_test(test_diff_bounds), cmocka_unit_test(test_dpkg),
		cmocka_unit_test(test_accounts),    cmocka_unit_test(test_globs),
		cmocka_unit_test(test_json_escape), cmocka_unit_test(test_base64_sha),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
