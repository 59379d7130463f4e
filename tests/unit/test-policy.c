// SPDX-License-Identifier: MIT
/*
 * Unit tests for appliance/policy.c: a table of command lines against a
 * deny/approval policy and an allowlist policy with the exact expected
 * decision (including bypass attempts: quoting, $(...), backticks, env
 * indirection, absolute paths, sh -c, newlines, wrappers, very long
 * lines), the shell splitter's output, path normalisation and prefixes,
 * network entries and the policy JSON parser's errors.
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

#include "config.h"
#include "policy.h"

static FlPolicy *load(const char *json)
{
	FlError err = {0};
	FlPolicy *p = NULL;
	struct json_object *o = json_tokener_parse(json);
	assert_non_null(o);
	int r = fl_policy_from_json("t", o, &p, &err);
	if (r < 0)
		fail_msg("policy: %s", err.msg);
	json_object_put(o);
	return p;
}

static const char *DENY_POLICY =
	"{\"commands\": {\"deny\": [\"rm\", \"shutdown\", \"reboot\", \"dd *of=/dev/*\", "
	"\"curl * | *\", \"mkfs*\", \"chmod -R 777 /*\"],"
	" \"approval\": [\"apt-get install *\", \"systemctl restart *\"]}}";

static const char *ALLOW_POLICY =
	"{\"commands\": {\"allow\": [\"ls\", \"cat *\", \"echo\", \"grep\", \"true\", \"uname *\"],"
	" \"deny\": [\"cat /etc/shadow\"], \"approval\": [\"grep -r *\"], \"opaque\": "
	"\"approval\"}}";

typedef struct Case {
	const char *cmd;
	FlPolicyAction want;
} Case;

static void run_table(const char *policy, const Case *cases, size_t n)
{
	FlPolicy *p = load(policy);
	int bad = 0;
	for (size_t i = 0; i < n; i++) {
		FlPolicyDecision d;
		assert_int_equal(fl_policy_check_command(p, cases[i].cmd, NULL, &d), 0);
		if (d.action != cases[i].want) {
			print_error("'%s': got %s (%s), want %s\n", cases[i].cmd,
				    fl_policy_action_name(d.action), d.rule,
				    fl_policy_action_name(cases[i].want));
			bad++;
		}
	}
	fl_policy_free(p);
	assert_int_equal(bad, 0);
}

#define A FL_POLICY_ALLOW
#define D FL_POLICY_DENY
#define Q FL_POLICY_APPROVAL

static void test_deny_table(void **state)
{
	(void)state;
	static const Case cases[] = {
		{"ls -la /tmp", A},
		{"rm -rf /", D},
		{"rm", D},
		{"/bin/rm -rf /", D},
		{"/usr/bin/rm x", D},
		{"'r''m' -rf /", D},
		{"\"rm\" -rf /", D},
		{"r\"m\" -rf /", D},
		{"\\rm -rf /", D},
		{"$'\\x72\\x6d' -rf /", D},
		{"$'\\162m' x", D},
		{"command rm x", D},
		{"env rm x", D},
		{"env -i FOO=1 rm x", D},
		{"FOO=bar rm x", D},
		{"busybox rm x", D},
		{"sudo -u root rm x", D},
		{"sudo -E -- rm x", D},
		{"nice -n 5 rm x", D},
		{"timeout 5 rm x", D},
		{"timeout -s KILL 5 rm x", D},
		{"nohup rm x &", D},
		{"exec rm x", D},
		{"stdbuf -oL rm x", D},
		{"xargs rm < list", D},
		{"find / -name x -exec rm {} \\;", D},
		{"find /tmp -delete", A},
		{"echo hi; rm x", D},
		{"echo hi && rm x", D},
		{"false || rm x", D},
		{"echo hi | rm x", D},
		{"echo hi\nrm x", D},
		{"echo hi\r\nrm x", D}, /* the CR ends up in "hi\r"; rm is a command */
		{"(rm x)", D},
		{"{ rm x; }", D},
		{"if true; then rm x; fi", D},
		{"while false; do rm x; done", D},
		{"for f in a b; do rm $f; done", D},
		{"f() { rm x; }; f", D},
		{"echo $(rm x)", D},
		{"echo \"$(rm x)\"", D},
		{"echo `rm x`", D},
		{"echo \"`rm x`\"", D},
		{"echo $(echo $(rm x))", D},
		{"cat <(rm x)", D},
		{"X=rm; $X -rf /", D},
		{"$(echo rm) -rf /", D},
		{"`echo rm` -rf /", D},
		{"${X} -rf /", D},
		{"eval rm x", D},
		{"eval ls", D},
		{"source ./script.sh", D},
		{". ./script.sh", D},
		{"sh -c 'rm -rf /'", D},
		{"bash -c \"rm -rf /\"", D},
		{"bash -lc 'echo ok'", A},
		{"sh -c \"sh -c 'rm x'\"", D},
		{"sh -c \"$CMD\"", D},
		{"sh script.sh", D},
		{"echo rm -rf / | sh", D},
		{"sh <<EOF\nrm -rf /\nEOF", D},
		{"cat <<EOF\nhello $(rm x)\nEOF", D},
		{"cat <<'EOF'\nhello $(rm x)\nEOF", A},
		{"cat <<EOF\nrm -rf /\nEOF\nls", A},
		{"su -c 'rm x'", D},
		{"watch -n 1 rm x", D},
		{"echo rm", A},
		{"echo 'rm -rf /'", A},
		{"grep rm file", A},
		{"ls > rm", A},
		{"ls 2>/dev/null", A},
		{"rmdir x", A},
		{"dd if=/dev/zero of=/dev/sda bs=1M", D},
		{"dd if=/dev/zero of=/tmp/x", A},
		{"mkfs.ext4 /dev/vdb", D},
		{"/sbin/shutdown -h now", D},
		{"systemctl reboot", A},
		{"reboot", D},
		{"apt-get install -y nginx", Q},
		{"apt-get update && apt-get install -y nginx", Q},
		{"apt-get install -y nginx; rm x", D},
		{"sudo apt-get install nginx", Q},
		{"systemctl restart nginx", Q},
		{"systemctl status nginx", A},
		{"echo 'unterminated", D},
		{"echo )", D},
		{"case x in a) rm x;; esac", D},
		{"python3 -c 'import os'", A},
		{"ls; # rm x", A},
		{"chmod -R 777 /etc", D},
		{"echo $((1 + $(rm x)))", D},
		{"echo ${X:-$(rm x)}", D},
		{"/bin/r? x", D},
		{"r* x", D},
		{"trap 'rm x' EXIT", D},
		{"alias x=rm", D},
		{"env -S 'rm x'", D},
		{"time rm x", D},
		{"! rm x", D},
		{"env - rm x", D},
		{"{rm,x}", D},
		{"rm${IFS}-rf /", D},
		{"ls;rm x", D},
		{"ls&&rm x", D},
		{"ls|rm x", D},
		{"./rm x", D},
		{"nice -10 rm x", D},
		{"xargs -n1 rm", D},
		{"echo / | xargs -0 rm -rf", D},
		{"{ ls; }", A},
		{"command -v rm", A},
		{"D=/dev/sda; dd if=/dev/zero of=$D", D}, /* argument known only at run time */
		{"dd if=/dev/zero of=/dev/s[d]a", D},	  /* glob in an argument */
		{"dd if=/dev/zero of=/tmp/x", A},
		{"apt-get install $PKG", Q},
		{"ls $HOME", A},
	};
	run_table(DENY_POLICY, cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_allow_table(void **state)
{
	(void)state;
	static const Case cases[] = {
		{"ls", A},
		{"ls -la /", A},
		{"/bin/ls /", A},
		{"cat /etc/hostname", A},
		{"cat /etc/shadow", D},
		{"cat", D}, /* "cat *" needs an argument */
		{"ls | grep x", A},
		{"ls | grep -r x /", Q},
		{"ls && rm x", D},
		{"rm x", D},
		{"echo $(ls)", A},
		{"echo $(rm x)", D},
		{"$X", Q}, /* opaque: approval per this policy */
		{"eval ls", Q},
		{"sh -c 'ls'", D}, /* wrappers and shells are commands too: sh is not allowed */
		{"sh -c 'rm x'", D},
		{"sh", Q},
		{"uname -a", A},
		{"true", A},
		{"env ls", D}, /* env itself is not allowed */
		{"FOO=1 ls", A},
		{"ls $HOME", A},
		{"echo 'x", Q},
	};
	run_table(ALLOW_POLICY, cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_no_rules_allows_everything(void **state)
{
	(void)state;
	FlPolicy *p = NULL;
	assert_int_equal(fl_policy_new_default("default", &p), 0);
	FlPolicyDecision d;
	assert_int_equal(fl_policy_check_command(p, "rm -rf / ; $(x) ; eval y", NULL, &d), 0);
	assert_int_equal(d.action, FL_POLICY_ALLOW);
	fl_policy_free(p);
}

static void test_argv(void **state)
{
	(void)state;
	FlPolicy *p = load(DENY_POLICY);
	FlPolicyDecision d;
	const char *a1[] = {"/bin/rm", "-rf", "/", NULL};
	assert_int_equal(fl_policy_check_command(p, NULL, a1, &d), 0);
	assert_int_equal(d.action, FL_POLICY_DENY);
	assert_string_equal(d.rule, "deny: rm");
	assert_string_equal(d.command, "/bin/rm -rf /");
	const char *a2[] = {"sh", "-c", "echo a; rm b", NULL};
	assert_int_equal(fl_policy_check_command(p, NULL, a2, &d), 0);
	assert_int_equal(d.action, FL_POLICY_DENY);
	assert_string_equal(d.command, "rm b");
	/* argv words are literal: "$(rm x)" is an argument, not a substitution */
	const char *a3[] = {"echo", "$(rm x)", NULL};
	assert_int_equal(fl_policy_check_command(p, NULL, a3, &d), 0);
	assert_int_equal(d.action, FL_POLICY_ALLOW);
	fl_policy_free(p);
}

static void test_very_long(void **state)
{
	(void)state;
	FlPolicy *p = load(DENY_POLICY);
	FlPolicyDecision d;
	/* a line over the cap is opaque (denied), whatever it contains */
	size_t n = FL_SHELL_MAX_LEN + 10;
	char *s = malloc(n + 1);
	memset(s, 'a', n);
	memcpy(s, "echo ", 5);
	s[n] = 0;
	assert_int_equal(fl_policy_check_command(p, s, NULL, &d), 0);
	assert_int_equal(d.action, FL_POLICY_DENY);
	assert_non_null(strstr(d.rule, "opaque"));
	/* many words: over the word cap */
	size_t words = FL_SHELL_MAX_WORDS + 10;
	char *w = malloc(words * 2 + 8);
	strcpy(w, "echo");
	for (size_t i = 0; i < words; i++)
		memcpy(w + 4 + i * 2, " x", 3);
	assert_int_equal(fl_policy_check_command(p, w, NULL, &d), 0);
	assert_int_equal(d.action, FL_POLICY_DENY);
	/* deep nesting */
	char deep[512] = "";
	for (int i = 0; i < 20; i++)
		strcat(deep, "$(");
	strcat(deep, "ls");
	for (int i = 0; i < 20; i++)
		strcat(deep, ")");
	assert_int_equal(fl_policy_check_command(p, deep, NULL, &d), 0);
	assert_int_equal(d.action, FL_POLICY_DENY);
	/* a long but legal line: the rm at its end is found */
	char *l = malloc(60000);
	strcpy(l, "echo");
	for (int i = 0; i < 2000; i++)
		strcat(l, " abcdefghijklmnopqrstu");
	strcat(l, "; rm x");
	assert_int_equal(fl_policy_check_command(p, l, NULL, &d), 0);
	assert_int_equal(d.action, FL_POLICY_DENY);
	assert_string_equal(d.rule, "deny: rm");
	free(l);
	free(w);
	free(s);
	fl_policy_free(p);
}

static void test_split(void **state)
{
	(void)state;
	FlShellCmds c;
	assert_int_equal(
		fl_shell_parse("A=1 B=2 sudo -u x env C=3 /bin/ls -l 'a b' 2>&1 | wc -l", &c), 0);
	assert_string_equal(c.error, "");
	assert_int_equal(c.n, 4); /* sudo..., env..., /bin/ls..., wc -l */
	assert_string_equal(c.v[0].argv[0], "sudo");
	assert_string_equal(c.v[2].argv[0], "/bin/ls");
	assert_int_equal(c.v[2].argc, 3);
	assert_string_equal(c.v[2].argv[2], "a b");
	assert_string_equal(c.v[3].argv[0], "wc");
	fl_shell_cmds_clear(&c);

	assert_int_equal(fl_shell_parse("echo \"a\\\"b\" 'c\\d' e\\ f", &c), 0);
	assert_int_equal(c.n, 1);
	assert_string_equal(c.v[0].argv[1], "a\"b");
	assert_string_equal(c.v[0].argv[2], "c\\d");
	assert_string_equal(c.v[0].argv[3], "e f");
	fl_shell_cmds_clear(&c);

	assert_int_equal(fl_shell_parse("X=$(id -u) ; echo `date`", &c), 0);
	assert_int_equal(c.n, 3);
	assert_string_equal(c.v[0].argv[0], "id");
	fl_shell_cmds_clear(&c);

	assert_int_equal(fl_shell_parse("echo 'open", &c), 0);
	assert_string_not_equal(c.error, "");
	fl_shell_cmds_clear(&c);
}

static void test_paths(void **state)
{
	(void)state;
	char out[64];
	static const char *const norm[][2] = {
		{"/", "/"},
		{"//", "/"},
		{"/a/b/", "/a/b"},
		{"/a/./b", "/a/b"},
		{"/a/../b", "/b"},
		{"/../../etc", "/etc"},
		{"/tmp/x/../../etc/passwd", "/etc/passwd"},
		{"/a//b///c", "/a/b/c"},
		{"/a/b/..", "/a"},
		{"/a/..", "/"},
		{"/.../x", "/.../x"},
	};
	for (size_t i = 0; i < sizeof(norm) / sizeof(norm[0]); i++) {
		assert_int_equal(fl_policy_path_normalize(norm[i][0], out, sizeof(out)), 0);
		assert_string_equal(out, norm[i][1]);
	}
	assert_int_equal(fl_policy_path_normalize("rel/x", out, sizeof(out)), -EINVAL);
	assert_int_equal(fl_policy_path_normalize("/a\nb", out, sizeof(out)), -EINVAL);
	char big[200];
	memset(big, 'a', sizeof(big));
	big[0] = '/';
	big[sizeof(big) - 1] = 0;
	assert_int_equal(fl_policy_path_normalize(big, out, sizeof(out)), -ENAMETOOLONG);

	FlPolicy *p = load("{\"files\": {\"read\": [\"/etc\", \"/home/\"], \"write\": [\"/tmp\", "
			   "\"/home/agent/\"]}}");
	const char *by = NULL;
	assert_true(fl_policy_path_allowed(p, "/etc/passwd", false, NULL));
	assert_true(fl_policy_path_allowed(p, "/etc", false, NULL));
	assert_false(fl_policy_path_allowed(p, "/etcx/passwd", false, &by));
	assert_string_equal(by, "files.read");
	assert_false(fl_policy_path_allowed(p, "/etc/passwd", true, &by));
	assert_string_equal(by, "files.write");
	assert_true(fl_policy_path_allowed(p, "/tmp/a", false, NULL)); /* write implies read */
	assert_true(fl_policy_path_allowed(p, "/tmp/a", true, NULL));
	assert_true(fl_policy_path_allowed(p, "/home/agent/x", true, NULL));
	assert_false(fl_policy_path_allowed(p, "/home/other/x", true, NULL));
	assert_false(fl_policy_path_allowed(p, "/", false, NULL));
	fl_policy_free(p);
}

static void test_net(void **state)
{
	(void)state;
	FlPolicyNet n;
	char buf[64];
	assert_int_equal(fl_policy_parse_net("10.0.2.2/32:8080", &n), 0);
	assert_int_equal(n.addr, 0x0a000202u);
	assert_int_equal(n.prefix, 32);
	assert_int_equal(n.port_lo, 8080);
	assert_int_equal(n.port_hi, 8080);
	fl_policy_format_net(&n, buf, sizeof(buf));
	assert_string_equal(buf, "10.0.2.2/32:8080");
	assert_int_equal(fl_policy_parse_net("192.168.0.0/16:1000-2000", &n), 0);
	assert_int_equal(n.port_hi, 2000);
	assert_int_equal(fl_policy_parse_net("1.2.3.4", &n), 0);
	assert_int_equal(n.prefix, 32);
	assert_int_equal(n.port_lo, 0);
	assert_int_equal(n.port_hi, 65535);
	assert_int_equal(fl_policy_parse_net("1.2.3.4/24", &n), -EINVAL); /* host bits */
	assert_int_equal(fl_policy_parse_net("1.2.3.0/33", &n), -EINVAL);
	assert_int_equal(fl_policy_parse_net("1.2.3.4:0", &n), -EINVAL);
	assert_int_equal(fl_policy_parse_net("1.2.3.4:70000", &n), -EINVAL);
	assert_int_equal(fl_policy_parse_net("1.2.3.4:20-10", &n), -EINVAL);
	assert_int_equal(fl_policy_parse_net("example.com:80", &n), -EINVAL);
}

static void expect_bad(const char *json, const char *needle)
{
	FlError err = {0};
	FlPolicy *p = NULL;
	struct json_object *o = json_tokener_parse(json);
	assert_non_null(o);
	assert_int_equal(fl_policy_from_json("t", o, &p, &err), -EINVAL);
	if (!strstr(err.msg, needle))
		fail_msg("'%s' does not mention '%s'", err.msg, needle);
	json_object_put(o);
}

static void test_parse_errors(void **state)
{
	(void)state;
	expect_bad("{\"comands\": {}}", "comands");
	expect_bad("{\"commands\": {\"deny\": \"rm\"}}", "commands.deny");
	expect_bad("{\"commands\": {\"deny\": [1]}}", "commands.deny[0]");
	expect_bad("{\"commands\": {\"opaque\": \"maybe\"}}", "opaque");
	expect_bad("{\"files\": {\"read\": [\"tmp\"]}}", "files.read[0]");
	expect_bad("{\"limits\": {\"timeout_sec\": 100, \"max_timeout_sec\": 10}}", "timeout_sec");
	expect_bad("{\"limits\": {\"max_vcpus\": -1}}", "max_vcpus");
	expect_bad("{\"network\": {\"egress\": \"open\"}}", "egress");
	expect_bad("{\"network\": {\"egress\": \"nat\", \"allow\": [\"1.2.3.4\"]}}", "allowlist");
	expect_bad("{\"network\": {\"egress\": \"allowlist\", \"allow\": [\"x\"]}}",
		   "network.allow[0]");

	FlPolicy *p =
		load("{\"description\": \"d\", \"files\": {\"read\": [\"/a/./b/\"]},"
		     " \"network\": {\"egress\": \"allowlist\", \"allow\": [\"10.0.2.2:80\"]},"
		     " \"limits\": {\"max_sandboxes\": 2, \"output_bytes\": 100}}");
	assert_string_equal(p->files.read.v[0], "/a/b");
	assert_int_equal(p->network.egress, FL_EGRESS_ALLOWLIST);
	assert_int_equal(p->network.n_allow, 1);
	assert_int_equal(p->limits.max_sandboxes, 2);
	struct json_object *j = fl_policy_to_json(p);
	FlPolicy *q = NULL;
	FlError err = {0};
	/* the printed form reads back */
	assert_int_equal(fl_policy_from_json("t", j, &q, &err), 0);
	assert_int_equal(q->limits.output_bytes, 100);
	assert_string_equal(json_object_get_string(json_object_object_get(
				    json_object_object_get(j, "network"), "egress")),
			    "allowlist");
	json_object_put(j);
	fl_policy_free(q);
	fl_policy_free(p);
}

static int parse_config(const char *yaml, FlConfig **cfg, FlError *err)
{
	memset(err, 0, sizeof(*err));
	return fl_config_parse(yaml, strlen(yaml), "t.yaml", NULL, cfg, err);
}

static void test_config_section(void **state)
{
	(void)state;
	FlConfig *cfg = NULL;
	FlError err;
	/* no policies: a built-in permissive default */
	assert_int_equal(parse_config("log_level: info\n", &cfg, &err), 0);
	assert_int_equal(cfg->n_policies, 1);
	assert_string_equal(cfg->default_policy, "default");
	assert_false(fl_policy_has_command_rules(fl_config_policy(cfg, NULL)));
	fl_config_free(cfg);

	static const char *yaml = "default_policy: strict\n"
				  "policies:\n"
				  "  strict:\n"
				  "    commands:\n"
				  "      deny: [rm, \"dd *\"]\n"
				  "      approval_timeout_sec: 5\n"
				  "    limits: {max_sandboxes: 2, max_file_bytes: 1024}\n"
				  "    network: {egress: allowlist, allow: [\"10.0.2.2:80\"]}\n"
				  "  open: {}\n";
	assert_int_equal(parse_config(yaml, &cfg, &err), 0);
	assert_int_equal(cfg->n_policies, 2); /* no built-in default: one is named */
	const FlPolicy *p = fl_config_policy(cfg, NULL);
	assert_string_equal(p->name, "strict");
	assert_int_equal(p->commands.deny.n, 2);
	assert_int_equal(p->commands.approval_timeout_sec, 5);
	assert_int_equal(p->limits.max_sandboxes, 2);
	assert_int_equal(p->network.n_allow, 1);
	assert_non_null(fl_config_policy(cfg, "open"));
	assert_null(fl_config_policy(cfg, "nope"));
	fl_config_free(cfg);

	assert_int_equal(parse_config("default_policy: nope\n", &cfg, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "default_policy 'nope' is not defined"));
	assert_int_equal(
		parse_config("policies:\n  a:\n    limits:\n      max_vcpus: x\n", &cfg, &err),
		-EINVAL);
	assert_non_null(strstr(err.msg, "t.yaml:3: policies.a: limits.max_vcpus"));
	assert_int_equal(parse_config("policies:\n  a: {}\n  a: {}\n", &cfg, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "duplicate key 'a'"));
	assert_int_equal(parse_config("policies:\n  \"bad name\": {}\n", &cfg, &err), -EINVAL);
	assert_int_equal(parse_config("policies:\n  a: [1]\n", &cfg, &err), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_deny_table),
		cmocka_unit_test(test_allow_table),
		cmocka_unit_test(test_no_rules_allows_everything),
		cmocka_unit_test(test_argv),
		cmocka_unit_test(test_very_long),
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_paths),
		cmocka_unit_test(test_net),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_config_section),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
