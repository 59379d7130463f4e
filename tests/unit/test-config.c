// SPDX-License-Identifier: MIT
/*
 * Unit tests for appliance/config.c: defaults, a full valid file, every
 * class of bad input (each must name the line), environment overrides and
 * the derived values (absolute state dir, image dir, libpq conninfo).
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

#include "config.h"

/* A fake environment: NAME=VALUE pairs. */
static const char *const *fake_env;
static const char *env_lookup(const char *name)
{
	for (size_t i = 0; fake_env && fake_env[i]; i += 2)
		if (!strcmp(fake_env[i], name))
			return fake_env[i + 1];
	return NULL;
}

static int parse(const char *text, FlConfig **cfg, FlError *err)
{
	memset(err, 0, sizeof(*err));
	return fl_config_parse(text, text ? strlen(text) : 0, "test.yaml", env_lookup, cfg, err);
}

/* Asserts that text fails with -EINVAL and a message containing both needles. */
static void expect_error(const char *text, const char *needle1, const char *needle2)
{
	FlConfig *cfg = NULL;
	FlError err;
	int r = parse(text, &cfg, &err);
	if (r != -EINVAL || !strstr(err.msg, needle1) || (needle2 && !strstr(err.msg, needle2)))
		print_error("input:\n%s\ngot r=%d msg='%s', wanted '%s' '%s'\n", text, r, err.msg,
			    needle1, needle2 ? needle2 : "");
	assert_int_equal(r, -EINVAL);
	assert_non_null(strstr(err.msg, needle1));
	if (needle2)
		assert_non_null(strstr(err.msg, needle2));
	assert_null(cfg);
}

static void test_defaults(void **state)
{
	static const char *const env[] = {"HOME", "/home/u", NULL};
	FlConfig *cfg;
	FlError err;
	fake_env = env;
	assert_int_equal(parse(NULL, &cfg, &err), 0);
	assert_string_equal(cfg->server.listen, "127.0.0.1:8080");
	assert_int_equal(cfg->accelerator, FL_ACCEL_MODE_AUTO);
	assert_int_equal(cfg->accel_probe_timeout_ms, 3000);
	assert_string_equal(cfg->images.default_image, "debian-12");
	assert_string_equal(cfg->qemu, "qemu-system-x86_64");
	assert_false(cfg->database.configured);
	assert_null(fl_config_database_conninfo(cfg));
	assert_int_equal(cfg->limits.max_sandboxes, 16);
	assert_int_equal(cfg->limits.memory_mb, 256);
	assert_int_equal(cfg->n_hosts, 0);
	if (geteuid() == 0)
		assert_string_equal(cfg->state_dir, "/var/lib/fluid");
	else
		assert_string_equal(cfg->state_dir, "/home/u/.local/state/fluid");
	char want[4096];
	snprintf(want, sizeof(want), "%s/images", cfg->state_dir);
	assert_string_equal(cfg->images.dir, want);
	fl_config_free(cfg);
	fake_env = NULL;
}

static void test_full_file(void **state)
{
	const char *text = "# fluid\n"
			   "server:\n"
			   "  listen: \"0.0.0.0:9090\"\n"
			   "  threads: 4\n"
			   "database:\n"
			   "  host: db.example\n"
			   "  port: 6543\n"
			   "  name: audit\n"
			   "  user: fl\n"
			   "  password: \"it's\\\\secret\"\n"
			   "hosts:\n"
			   "  - name: web-1\n"
			   "    address: 10.0.0.5\n"
			   "  - {name: db-1, address: db.internal, user: deploy, port: 2222}\n"
			   "state_dir: /srv/fluid\n"
			   "accelerator: tcg\n"
			   "accelerator_probe_timeout_ms: 5000\n"
			   "qemu: /opt/qemu/bin/qemu-system-x86_64\n"
			   "limits:\n"
			   "  max_sandboxes: 40\n"
			   "  memory_mb: 512\n"
			   "  vcpus: 2\n"
			   "  ttl_seconds: 0\n"
			   "images:\n"
			   "  dir: /srv/images\n"
			   "  default: tiny\n"
			   "log_level: debug\n";
	FlConfig *cfg;
	FlError err;
	assert_int_equal(parse(text, &cfg, &err), 0);
	assert_string_equal(cfg->path, "test.yaml");
	assert_string_equal(cfg->server.listen, "0.0.0.0:9090");
	assert_int_equal(cfg->server.threads, 4);
	assert_true(cfg->database.configured);
	assert_string_equal(cfg->database.host, "db.example");
	assert_int_equal(cfg->database.port, 6543);
	char *ci = fl_config_database_conninfo(cfg);
	assert_string_equal(ci, "host='db.example' port='6543' dbname='audit' user='fl' "
				"password='it\\'s\\\\secret'");
	free(ci);
	assert_int_equal(cfg->n_hosts, 2);
	assert_string_equal(cfg->hosts[0].name, "web-1");
	assert_string_equal(cfg->hosts[0].address, "10.0.0.5");
	assert_int_equal(cfg->hosts[0].port, 22);
	assert_null(cfg->hosts[0].user);
	assert_string_equal(cfg->hosts[1].user, "deploy");
	assert_int_equal(cfg->hosts[1].port, 2222);
	assert_string_equal(cfg->state_dir, "/srv/fluid");
	assert_int_equal(cfg->accelerator, FL_ACCEL_MODE_TCG);
	assert_int_equal(cfg->accel_probe_timeout_ms, 5000);
	assert_string_equal(cfg->qemu, "/opt/qemu/bin/qemu-system-x86_64");
	assert_int_equal(cfg->limits.max_sandboxes, 40);
	assert_int_equal(cfg->limits.memory_mb, 512);
	assert_int_equal(cfg->limits.vcpus, 2);
	assert_int_equal(cfg->limits.ttl_seconds, 0);
	assert_string_equal(cfg->images.dir, "/srv/images");
	assert_string_equal(cfg->images.default_image, "tiny");
	assert_int_equal(cfg->log_level, FL_LOG_DEBUG);
	fl_config_free(cfg);
}

static void test_empty_sections_and_file(void **state)
{
	FlConfig *cfg;
	FlError err;
	assert_int_equal(parse("", &cfg, &err), 0);
	fl_config_free(cfg);
	assert_int_equal(parse("server:\ndatabase:\nhosts:\n", &cfg, &err), 0);
	assert_false(cfg->database.configured);
	fl_config_free(cfg);
	assert_int_equal(parse("hosts: []\n", &cfg, &err), 0);
	assert_int_equal(cfg->n_hosts, 0);
	fl_config_free(cfg);
}

static void test_unknown_keys(void **state)
{
	expect_error("server:\n  listen: 127.0.0.1:1\nfoo: 1\n", "test.yaml:3:", "unknown key 'foo'");
	expect_error("server:\n  listne: 127.0.0.1:1\n", "test.yaml:2:",
		     "unknown key 'listne' in server");
	expect_error("database:\n  host: x\n  sslmode: require\n", ":3:", "'sslmode' in database");
	expect_error("limits:\n\n\n  max_sandbox: 3\n", ":4:", "'max_sandbox' in limits");
	expect_error("images:\n  default: x\n  name: y\n", ":3:", "'name' in images");
	expect_error("hosts:\n  - name: a\n    address: b\n    pasword: c\n", ":4:",
		     "'pasword' in hosts[]");
}

static void test_wrong_types(void **state)
{
	expect_error("server:\n  listen: [a, b]\n", ":2:", "server.listen: expected a string");
	expect_error("server: 8080\n", ":1:", "server: expected a mapping");
	expect_error("limits:\n  max_sandboxes: many\n", ":2:", "expected an integer");
	expect_error("limits:\n  max_sandboxes: \"4\"\n", ":2:", "expected an integer");
	expect_error("limits:\n  max_sandboxes: -1\n", ":2:", "expected an integer");
	expect_error("limits:\n  max_sandboxes: 0\n", ":2:", "out of range");
	expect_error("limits:\n  vcpus: 99999999999999999999999\n", ":2:", "expected an integer");
	expect_error("hosts:\n  name: a\n", ":2:", "hosts: expected a list");
	expect_error("hosts:\n  - just-a-string\n", ":2:", "hosts[0]: expected a mapping");
	expect_error("state_dir:\n", ":1:", "state_dir: expected a string, got an empty value");
	expect_error("- a\n- b\n", ":1:", "top level must be a mapping");
	expect_error("database:\n  port: 70000\n", ":2:", "out of range");
}

static void test_bad_values(void **state)
{
	expect_error("accelerator: hvf\n", ":1:", "not one of auto, kvm, tcg");
	expect_error("server:\n  listen: localhost\n", ":2:", "is not HOST:PORT");
	expect_error("server:\n  listen: \"1.2.3.4:99999\"\n", ":2:", "is not HOST:PORT");
	expect_error("log_level: loud\n", ":1:", "log_level");
	expect_error("images:\n  default: ../etc\n", ":2:", "not a valid image name");
	expect_error("hosts:\n  - name: a\n", ":2:", "missing 'address'");
	expect_error("hosts:\n  - address: a\n", ":2:", "missing 'name'");
	expect_error("hosts:\n  - {name: a, address: x}\n  - {name: a, address: y}\n", ":3:",
		     "duplicate name 'a'");
	expect_error("accelerator_probe_timeout_ms: 5\n", ":1:", "out of range");
	/* Cross-field checks name the keys involved. */
	expect_error("limits:\n  memory_mb: 9000\n", "limits.memory_mb (9000)", "max_memory_mb");
	expect_error("limits:\n  vcpus: 9\n", "limits.vcpus", "max_vcpus");
}

static void test_duplicates_and_syntax(void **state)
{
	expect_error("server:\n  listen: 127.0.0.1:1\n  listen: 127.0.0.1:2\n", ":3:",
		     "duplicate key 'listen' in server (first on line 2)");
	expect_error("accelerator: kvm\naccelerator: tcg\n", ":2:", "duplicate key 'accelerator'");
	expect_error("server:\n  listen: [unclosed\n", "test.yaml:", NULL);
	expect_error("state_dir: /x\n---\nc: d\n", ":3:", "only one YAML document");
	expect_error("server:\n\tlisten: x\n", "test.yaml:2:", NULL);
}

static void test_env_overrides(void **state)
{
	static const char *const env[] = {
		"FLUID_ACCEL", "tcg", "DATABASE_URL", "postgresql:///x?host=/run/pg",
		"FLUID_STATE_DIR", "/tmp/st", "FLUID_LISTEN", "127.0.0.1:0",
		"FLUID_IMAGE_DIR", "/imgs", "FLUID_LOG_LEVEL", "warn", NULL,
	};
	FlConfig *cfg;
	FlError err;
	fake_env = env;
	assert_int_equal(parse("accelerator: kvm\nstate_dir: /srv/f\nserver:\n  listen: 1.1.1.1:1\n",
			       &cfg, &err),
			 0);
	assert_int_equal(cfg->accelerator, FL_ACCEL_MODE_TCG);
	assert_string_equal(cfg->state_dir, "/tmp/st");
	assert_string_equal(cfg->server.listen, "127.0.0.1:0");
	assert_string_equal(cfg->images.dir, "/imgs");
	assert_int_equal(cfg->log_level, FL_LOG_WARN);
	assert_true(cfg->database.configured);
	char *ci = fl_config_database_conninfo(cfg);
	assert_string_equal(ci, "postgresql:///x?host=/run/pg");
	free(ci);
	fl_config_free(cfg);

	static const char *const bad[] = {"FLUID_ACCEL", "fast", NULL};
	fake_env = bad;
	expect_error(NULL, "FLUID_ACCEL", "not one of auto, kvm, tcg");
	static const char *const bad2[] = {"FLUID_LISTEN", "nope", NULL};
	fake_env = bad2;
	expect_error(NULL, "FLUID_LISTEN", NULL);
	fake_env = NULL;
}

static void test_relative_paths(void **state)
{
	FlConfig *cfg;
	FlError err;
	char cwd[4096], want[4200];
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(parse("state_dir: ./.state\n", &cfg, &err), 0);
	snprintf(want, sizeof(want), "%s/.state", cwd);
	assert_string_equal(cfg->state_dir, want);
	snprintf(want, sizeof(want), "%s/.state/images", cwd);
	assert_string_equal(cfg->images.dir, want);
	fl_config_free(cfg);
}

static void test_listen_parse(void **state)
{
	char host[64];
	unsigned port;
	assert_int_equal(fl_config_parse_listen("127.0.0.1:8080", host, sizeof(host), &port), 0);
	assert_string_equal(host, "127.0.0.1");
	assert_int_equal(port, 8080);
	assert_int_equal(fl_config_parse_listen("[::1]:80", host, sizeof(host), &port), 0);
	assert_string_equal(host, "[::1]");
	assert_int_equal(fl_config_parse_listen("localhost:0", host, sizeof(host), &port), 0);
	assert_int_equal(port, 0);
	assert_int_equal(fl_config_parse_listen("::1:80", host, sizeof(host), &port), -EINVAL);
	assert_int_equal(fl_config_parse_listen(":80", host, sizeof(host), &port), -EINVAL);
	assert_int_equal(fl_config_parse_listen("h:", host, sizeof(host), &port), -EINVAL);
	assert_int_equal(fl_config_parse_listen("h:65536", host, sizeof(host), &port), -EINVAL);
	assert_int_equal(fl_config_parse_listen("h:+1", host, sizeof(host), &port), -EINVAL);
	assert_int_equal(fl_config_parse_listen("a b:1", host, sizeof(host), &port), -EINVAL);
}

static void test_load_files(void **state)
{
	FlConfig *cfg = NULL;
	FlError err = {0};
	char dir[] = "/tmp/test-config-XXXXXX", path[128];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/missing.yaml", dir);
	assert_int_equal(fl_config_load(path, &cfg, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "missing.yaml"));
	snprintf(path, sizeof(path), "%s/c.yaml", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("server:\n  listen: 127.0.0.1:7000\n  bogus: 1\n", f);
	fclose(f);
	assert_int_equal(fl_config_load(path, &cfg, &err), -EINVAL);
	char want[200];
	snprintf(want, sizeof(want), "%s:3: unknown key 'bogus' in server", path);
	assert_string_equal(err.msg, want);
	f = fopen(path, "w");
	fputs("server:\n  listen: 127.0.0.1:7000\n", f);
	fclose(f);
	assert_int_equal(fl_config_load(path, &cfg, &err), 0);
	assert_string_equal(cfg->path, path);
	fl_config_free(cfg);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_full_file),
		cmocka_unit_test(test_empty_sections_and_file),
		cmocka_unit_test(test_unknown_keys),
		cmocka_unit_test(test_wrong_types),
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_duplicates_and_syntax),
		cmocka_unit_test(test_env_overrides),
		cmocka_unit_test(test_relative_paths),
		cmocka_unit_test(test_listen_parse),
		cmocka_unit_test(test_load_files),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
