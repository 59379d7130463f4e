// SPDX-License-Identifier: MIT
/*
 * Unit tests of approvals.c: ids, the state machine (every pair of
 * states), the playbook hash against an independent reference (Python's
 * hashlib over the bytes docs/approvals.md defines), the PLAY RECAP parser
 * on real and hostile output, and the output cleaner.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "approvals.h"

static void test_ids(void **state)
{
	(void)state;
	char id[FL_APPROVAL_ID_LEN + 1], id2[FL_APPROVAL_ID_LEN + 1];
	assert_int_equal(fl_approval_new_id(id), 0);
	assert_int_equal(fl_approval_new_id(id2), 0);
	assert_true(fl_approval_id_valid(id));
	assert_string_not_equal(id, id2);
	assert_true(fl_approval_id_valid("apr_0123456789abcdef0123456789abcdef"));
	assert_false(fl_approval_id_valid("apr_0123456789ABCDEF0123456789abcdef"));
	assert_false(fl_approval_id_valid("apr_0123456789abcdef0123456789abcde"));
	assert_false(fl_approval_id_valid("chg_0123456789abcdef0123456789abcdef"));
	assert_false(fl_approval_id_valid("apr_../../../../etc/passwd0000000000"));
	assert_false(fl_approval_id_valid(NULL));
	assert_true(fl_approval_kind_valid("change") && fl_approval_kind_valid("command") &&
		    fl_approval_kind_valid("question"));
	assert_false(fl_approval_kind_valid("Change") || fl_approval_kind_valid("") ||
		     fl_approval_kind_valid(NULL));
	assert_false(fl_approval_state_valid("done") || fl_approval_state_valid(NULL));
}

static void test_transitions(void **state)
{
	(void)state;
	static const char *const st[] = {"pending",  "approved", "rejected",
					 "applying", "applied",	 "failed"};
	static const char *const ok[][2] = {{"pending", "approved"},
					    {"pending", "rejected"},
					    {"approved", "applying"},
					    {"applying", "applied"},
					    {"applying", "failed"}};
	for (size_t i = 0; i < 6; i++)
		for (size_t j = 0; j < 6; j++) {
			bool want = false;
			for (size_t k = 0; k < 5; k++)
				want |= !strcmp(ok[k][0], st[i]) && !strcmp(ok[k][1], st[j]);
			FlError err = {0};
			int r = fl_approval_transition_check("apr_x", st[i], st[j], &err);
			if (want) {
				assert_int_equal(r, 0);
			} else {
				assert_int_equal(r, -EBUSY);
				assert_non_null(
					strstr(err.msg, st[i])); /* says which state it is in */
			}
		}
	FlError err = {0};
	assert_int_equal(fl_approval_transition_check(NULL, "rejected", "applying", &err), -EBUSY);
	assert_non_null(strstr(err.msg, "only approved approvals can be applied"));
	assert_int_equal(fl_approval_transition_check(NULL, "applied", "applying", &err), -EBUSY);
	assert_non_null(strstr(err.msg, "applied already"));
	assert_int_equal(fl_approval_transition_check(NULL, "approved", "rejected", &err), -EBUSY);
	assert_non_null(strstr(err.msg, "only pending"));
	assert_int_equal(fl_approval_transition_check(NULL, "pending", "bogus", &err), -EINVAL);
}

static void test_hash(void **state)
{
	(void)state;
	const char *yaml = "---\n- name: x\n";
	char h[FL_DB_HASH_HEX], h2[FL_DB_HASH_HEX];
	/* reference values: hashlib over the documented bytes */
	assert_int_equal(fl_approval_playbook_hash(yaml, strlen(yaml), NULL, h), 0);
	assert_string_equal(h, "1c9d073d89f261a3f5d550214d1450e7849ecbff95e4b190d2c3a1fbd9861f73");
	struct json_object *files = json_tokener_parse(
		"[{\"src\":\"files/b\",\"sha256\":\"bb\",\"content_b64\":\"Qg==\"},"
		" {\"src\":\"files/a\",\"sha256\":\"aa\",\"content_b64\":\"QQ==\"}]");
	assert_int_equal(fl_approval_playbook_hash(yaml, strlen(yaml), files, h), 0);
	assert_string_equal(h, "aedc1790d14e914d2d4b558dbc3aa2cec69c89e19c63849ca493af070e12e1bf");
	/* order of the files does not matter */
	struct json_object *rev = json_tokener_parse(
		"[{\"src\":\"files/a\",\"sha256\":\"aa\",\"content_b64\":\"QQ==\"},"
		" {\"src\":\"files/b\",\"sha256\":\"bb\",\"content_b64\":\"Qg==\"}]");
	assert_int_equal(fl_approval_playbook_hash(yaml, strlen(yaml), rev, h2), 0);
	assert_string_equal(h, h2);
	/* a changed blob, a changed byte of YAML, a moved boundary: all differ */
	json_object_object_add(json_object_array_get_idx(rev, 0), "content_b64",
			       json_object_new_string("Qw=="));
	assert_int_equal(fl_approval_playbook_hash(yaml, strlen(yaml), rev, h2), 0);
	assert_string_not_equal(h, h2);
	assert_int_equal(fl_approval_playbook_hash(yaml, strlen(yaml) - 1, files, h2), 0);
	assert_string_not_equal(h, h2);
	struct json_object *moved = json_tokener_parse(
		"[{\"src\":\"files/a\",\"sha256\":\"a\",\"content_b64\":\"aQQ==\"},"
		" {\"src\":\"files/b\",\"sha256\":\"bb\",\"content_b64\":\"Qg==\"}]");
	assert_int_equal(fl_approval_playbook_hash(yaml, strlen(yaml), moved, h2), 0);
	assert_string_not_equal(h, h2);
	json_object_put(files);
	json_object_put(rev);
	json_object_put(moved);
}

static void test_recap(void **state)
{
	(void)state;
	const char *out =
		"PLAY [x] ****\n\nTASK [y] ****\nchanged: [web-1]\n\n"
		"PLAY RECAP *********************************************************************\n"
		"web-1                      : ok=3    changed=2    unreachable=0    failed=0    "
		"skipped=1    rescued=0    ignored=0   \n"
		"db.example.com             : ok=0    changed=0    unreachable=1    failed=0    "
		"skipped=0    rescued=0    ignored=0   \n"
		"\nsomething after\nevil : ok=99\n";
	struct json_object *r = fl_approval_recap_parse(out, strlen(out));
	assert_int_equal(json_object_object_length(r), 2);
	struct json_object *w = json_object_object_get(r, "web-1");
	assert_int_equal(json_object_get_int(json_object_object_get(w, "ok")), 3);
	assert_int_equal(json_object_get_int(json_object_object_get(w, "changed")), 2);
	assert_int_equal(json_object_get_int(json_object_object_get(w, "skipped")), 1);
	struct json_object *d = json_object_object_get(r, "db.example.com");
	assert_int_equal(json_object_get_int(json_object_object_get(d, "unreachable")), 1);
	json_object_put(r);

	/* no recap, a truncated one, garbage numbers, a later recap wins */
	r = fl_approval_recap_parse("no recap here\n", 14);
	assert_int_equal(json_object_object_length(r), 0);
	json_object_put(r);
	const char *bad = "PLAY RECAP ***\nh : ok=-1 changed=1x failed=99999999999\n";
	r = fl_approval_recap_parse(bad, strlen(bad));
	assert_int_equal(json_object_object_length(r), 0);
	json_object_put(r);
	const char *two = "PLAY RECAP *\na : ok=1\n\nPLAY RECAP *\nb : ok=2\n";
	r = fl_approval_recap_parse(two, strlen(two));
	assert_int_equal(json_object_object_length(r), 1);
	assert_non_null(json_object_object_get(r, "b"));
	json_object_put(r);
	const char *cut = "PLAY RECAP *\nc : ok=1 changed=";
	r = fl_approval_recap_parse(cut, strlen(cut));
	assert_int_equal(
		json_object_get_int(json_object_object_get(json_object_object_get(r, "c"), "ok")),
		1);
	json_object_put(r);
}

static void test_clean(void **state)
{
	(void)state;
	char *t = fl_approval_text_clean("ok\n\ttab \x1b[31mred\x7f \xff\xfe caf\xc3\xa9", 26, 100);
	assert_string_equal(t, "ok\n\ttab ?[31mred? ?? caf\xc3\xa9");
	free(t);
	/* an embedded NUL, an overlong encoding, a surrogate */
	t = fl_approval_text_clean("a\0b\xc0\xaf\xed\xa0\x80", 8, 100);
	assert_string_equal(t, "a?b?????");
	free(t);
	/* the cap never cuts a sequence in half */
	t = fl_approval_text_clean("ab\xc3\xa9", 4, 3);
	assert_string_equal(t, "ab");
	free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ids),   cmocka_unit_test(test_transitions),
		cmocka_unit_test(test_hash),  cmocka_unit_test(test_recap),
		cmocka_unit_test(test_clean),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
