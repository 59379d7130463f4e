// SPDX-License-Identifier: MIT
/*
 * Integration test of the database layer (appliance/db*.c) against a real
 * PostgreSQL: a private cluster started with scripts/pg.sh in a temporary
 * state dir (or $FLUID_TEST_DATABASE_URL, an empty database, when set).
 *
 * Checks: migrations are idempotent; concurrent audit appends from many
 * threads form one gapless, verifiable chain; audit queries; an audit event
 * that cannot be written undoes the change it accompanies; commands (caps,
 * totals, hashes, UTF-8, double end); the sandbox mirror's filters and
 * totals; tokens (hash only, check, revoke, last admin, bootstrap once);
 * PostgreSQL stopped -> -ENOTCONN quickly, and the pool recovers after it
 * restarts.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "db.h"

static char tmpdir[] = "/tmp/fluid-test-db.XXXXXX";
static char url[1024];
static char pgsh[1024];
static bool own_cluster;

static int pg(const char *cmd)
{
	char buf[2300];
	snprintf(buf, sizeof(buf), "FLUID_STATE_DIR=%s/state %s %s >/dev/null 2>&1", tmpdir, pgsh,
		 cmd);
	return system(buf);
}

static int setup_cluster(void **state)
{
	const char *given = getenv("FLUID_TEST_DATABASE_URL");
	if (given) {
		snprintf(url, sizeof(url), "%s", given);
		return 0;
	}
	const char *root = getenv("FLUID_ROOT");
	snprintf(pgsh, sizeof(pgsh), "%s/scripts/pg.sh", root ? root : ".");
	if (!mkdtemp(tmpdir) || chmod(tmpdir, 0755) < 0)
		return -1;
	if (pg("start") != 0) {
		fprintf(stderr, "cannot start PostgreSQL with %s\n", pgsh);
		return -1;
	}
	own_cluster = true;
	char cmd[2300];
	snprintf(cmd, sizeof(cmd), "FLUID_STATE_DIR=%s/state %s url", tmpdir, pgsh);
	FILE *f = popen(cmd, "r");
	if (!f || !fgets(url, sizeof(url), f))
		return -1;
	pclose(f);
	url[strcspn(url, "\n")] = 0;
	return 0;
}

static int teardown_cluster(void **state)
{
	if (own_cluster) {
		pg("stop");
		char cmd[200];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
		if (system(cmd) != 0)
			return -1;
	}
	return 0;
}

static FlDb *open_db(const FlDbOptions *o)
{
	FlDb *db = NULL;
	FlError err = {0};
	int r = fl_db_open(url, o, &db, &err);
	if (r < 0)
		fail_msg("fl_db_open: %s", err.msg);
	return db;
}

static void test_migrations_idempotent(void **state)
{
	FlDb *a = open_db(NULL), *b = open_db(NULL);
	int va = 0, vb = 0;
	assert_int_equal(fl_db_schema_version(a, &va, NULL), 0);
	assert_int_equal(fl_db_schema_version(b, &vb, NULL), 0);
	assert_true(va >= 1); /* every migration applied once, whoever came first */
	assert_int_equal(vb, va);
	assert_int_equal(fl_db_ping(a, NULL), 0);
	fl_db_close(a);
	fl_db_close(b);
	FlDb *c = open_db(NULL);
	int vc = 0;
	assert_int_equal(fl_db_schema_version(c, &vc, NULL), 0);
	assert_int_equal(vc, va); /* opening again applies nothing */
	fl_db_close(c);
}

static void test_open_bad_conninfo(void **state)
{
	FlDb *db = NULL;
	FlError err = {0};
	int r = fl_db_open("postgresql:///fluid?host=/nonexistent&user=fluid", NULL, &db, &err);
	assert_int_equal(r, -ENOTCONN);
	assert_null(db);
	assert_non_null(strstr(err.msg, "database unavailable"));
}

typedef struct {
	FlDb *db;
	int n;
	int failures;
} Worker;

static void *append_worker(void *p)
{
	Worker *w = p;
	for (int i = 0; i < w->n; i++) {
		struct json_object *d = json_object_new_object();
		json_object_object_add(d, "i", json_object_new_int(i));
		json_object_object_add(d, "text", json_object_new_string("quote \" newline \n ü"));
		FlAuditEvent ev = {.actor = "tok_test", .role = "agent", .action = "test.append",
				   .sandbox_id = i % 2 ? "sbx-odd" : NULL, .status = 200, .details = d};
		if (fl_db_audit(w->db, &ev, NULL, NULL) < 0)
			w->failures++;
		json_object_put(d);
	}
	return NULL;
}

static int64_t jint(struct json_object *o, const char *k)
{
	struct json_object *v;
	return json_object_object_get_ex(o, k, &v) ? json_object_get_int64(v) : -1;
}

static bool jbool(struct json_object *o, const char *k)
{
	struct json_object *v;
	return json_object_object_get_ex(o, k, &v) && json_object_get_boolean(v);
}

static void test_audit_chain_concurrent(void **state)
{
	FlDbOptions o = {.pool_size = 4};
	FlDb *db = open_db(&o);
	struct json_object *rep = NULL;
	assert_int_equal(fl_db_audit_verify(db, &rep, NULL), 0);
	int64_t before = jint(rep, "rows");
	json_object_put(rep);

	enum { THREADS = 6, EACH = 40 };
	pthread_t t[THREADS];
	Worker w[THREADS];
	for (int i = 0; i < THREADS; i++) {
		w[i] = (Worker){.db = db, .n = EACH};
		pthread_create(&t[i], NULL, append_worker, &w[i]);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].failures, 0);
	}
	assert_int_equal(fl_db_audit_verify(db, &rep, NULL), 0);
	assert_true(jbool(rep, "ok"));
	assert_int_equal(jint(rep, "rows"), before + THREADS * EACH);
	struct json_object *head = NULL;
	json_object_object_get_ex(rep, "head", &head);
	/* Gapless: the last id is the row count. */
	assert_int_equal(jint(head, "id"), jint(rep, "rows"));
	json_object_put(rep);

	/* Queries: newest N oldest-first, filters, after_id. */
	struct json_object *arr = NULL;
	FlDbAuditQuery q = {.action = "test.append", .limit = 5};
	assert_int_equal(fl_db_audit_list(db, &q, &arr, NULL), 0);
	assert_int_equal(json_object_array_length(arr), 5);
	int64_t first = jint(json_object_array_get_idx(arr, 0), "id");
	int64_t last = jint(json_object_array_get_idx(arr, 4), "id");
	assert_true(first < last);
	assert_int_equal(last, before + THREADS * EACH);
	json_object_put(arr);
	q = (FlDbAuditQuery){.sandbox_id = "sbx-odd", .limit = 1000};
	assert_int_equal(fl_db_audit_list(db, &q, &arr, NULL), 0);
	assert_int_equal(json_object_array_length(arr), THREADS * EACH / 2);
	json_object_put(arr);
	q = (FlDbAuditQuery){.after_id = before + 1, .limit = 3};
	assert_int_equal(fl_db_audit_list(db, &q, &arr, NULL), 0);
	assert_int_equal(json_object_array_length(arr), 3);
	assert_int_equal(jint(json_object_array_get_idx(arr, 0), "id"), before + 2);
	json_object_put(arr);
	q = (FlDbAuditQuery){.since = "not a time"};
	FlError err = {0};
	assert_int_equal(fl_db_audit_list(db, &q, &arr, &err), -EINVAL);
	fl_db_close(db);
}

static void test_audit_bad_event(void **state)
{
	FlDb *db = open_db(NULL);
	FlAuditEvent ev = {.action = "has space"};
	assert_int_equal(fl_db_audit(db, &ev, NULL, NULL), -EINVAL);
	ev = (FlAuditEvent){.action = NULL};
	assert_int_equal(fl_db_audit(db, &ev, NULL, NULL), -EINVAL);
	/* A change whose audit row cannot be written is not made. */
	char *plain = NULL, id[FL_DB_ID_MAX];
	ev = (FlAuditEvent){.action = ""};
	assert_int_equal(fl_db_token_create(db, "agent", "atomic-test", &ev, &plain, id, NULL),
			 -EINVAL);
	struct json_object *arr = NULL;
	assert_int_equal(fl_db_tokens_list(db, true, &arr, NULL), 0);
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		struct json_object *n = NULL;
		json_object_object_get_ex(json_object_array_get_idx(arr, i), "name", &n);
		assert_false(n && !strcmp(json_object_get_string(n), "atomic-test"));
	}
	json_object_put(arr);
	fl_db_close(db);
}

static void test_commands(void **state)
{
	FlDbOptions o = {.output_cap = 16};
	FlDb *db = open_db(&o);
	char id[FL_DB_ID_MAX], id2[FL_DB_ID_MAX];
	struct json_object *env = json_object_new_object();
	json_object_object_add(env, "FOO", json_object_new_string("bar"));
	FlDbCommandStart cs = {.sandbox_id = "sbx-cmd", .command = "echo hi", .env = env};
	FlAuditEvent ev = {.actor = "tok_x", .role = "agent", .action = "command.start",
			   .sandbox_id = "sbx-cmd"};
	assert_int_equal(fl_db_command_begin(db, &cs, &ev, id, NULL), 0);
	assert_int_equal(strlen(id), 36);

	struct json_object *c = NULL, *v;
	assert_int_equal(fl_db_command_get(db, id, &c, NULL), 0);
	assert_true(json_object_object_get_ex(c, "exit_code", &v) && v == NULL);
	assert_true(json_object_object_get_ex(c, "ended_at", &v) && v == NULL);
	json_object_object_get_ex(c, "env", &v);
	assert_string_equal(json_object_get_string(json_object_object_get(v, "FOO")), "bar");
	json_object_put(c);

	const char *out = "0123456789abcdefghij"; /* 20 bytes > cap 16 */
	FlDbCommandEnd e = {
		.has_exit_code = true,
		.exit_code = 3,
		.out = {.data = out, .len = 20, .total_bytes = 5000,
			.sha256_hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		.err = {.data = "bad\xff\0x", .len = 6, .total_bytes = 6},
	};
	assert_int_equal(fl_db_command_end(db, id, &e, NULL, NULL), 0);
	assert_int_equal(fl_db_command_end(db, id, &e, NULL, NULL), -EALREADY);
	assert_int_equal(fl_db_command_end(db, "00000000-0000-0000-0000-000000000000", &e, NULL,
					   NULL),
			 -ENOENT);
	assert_int_equal(fl_db_command_end(db, "../etc", &e, NULL, NULL), -ENOENT);
	FlDbCommandEnd badsha = {.out = {.sha256_hex = "xyz"}};
	assert_int_equal(fl_db_command_end(db, id, &badsha, NULL, NULL), -EINVAL);

	assert_int_equal(fl_db_command_get(db, id, &c, NULL), 0);
	assert_string_equal(json_object_get_string(json_object_object_get(c, "stdout")),
			    "0123456789abcdef");
	assert_int_equal(jint(c, "stdout_bytes"), 5000);
	assert_true(jbool(c, "stdout_truncated"));
	assert_int_equal(jint(c, "exit_code"), 3);
	assert_string_equal(json_object_get_string(json_object_object_get(c, "stderr")),
			    "bad\xef\xbf\xbd\xef\xbf\xbdx");
	assert_false(jbool(c, "stderr_truncated"));
	assert_int_equal(jint(c, "stderr_bytes"), 6);
	assert_non_null(json_object_get_string(json_object_object_get(c, "ended_at")));
	json_object_put(c);

	cs.command = "second";
	assert_int_equal(fl_db_command_begin(db, &cs, NULL, id2, NULL), 0);
	struct json_object *arr = NULL;
	uint64_t total = 0;
	assert_int_equal(fl_db_commands_list(db, "sbx-cmd", 1, 0, &arr, &total, NULL), 0);
	assert_int_equal(total, 2);
	assert_int_equal(json_object_array_length(arr), 1);
	assert_string_equal(json_object_get_string(json_object_object_get(
				    json_object_array_get_idx(arr, 0), "id")),
			    id);
	json_object_put(arr);
	assert_int_equal(fl_db_commands_list(db, "sbx-cmd", 10, 1, &arr, &total, NULL), 0);
	assert_int_equal(json_object_array_length(arr), 1);
	json_object_put(arr);
	assert_int_equal(fl_db_commands_list(db, "sbx-none", 10, 0, &arr, &total, NULL), 0);
	assert_int_equal(total, 0);
	assert_int_equal(json_object_array_length(arr), 0);
	json_object_put(arr);
	assert_int_equal(fl_db_command_get(db, "11111111-1111-1111-1111-111111111111", &c, NULL),
			 -ENOENT);
	/* For diffs: the commands between two snapshots. */
	int64_t now = (int64_t)time(NULL);
	assert_int_equal(fl_db_commands_between(db, "sbx-cmd", now - 60, 0, &arr, NULL), 0);
	assert_int_equal(json_object_array_length(arr), 2);
	struct json_object *c0 = json_object_array_get_idx(arr, 0);
	assert_string_equal(json_object_get_string(json_object_object_get(c0, "cmd")), "echo hi");
	assert_int_equal(jint(c0, "exit_code"), 3);
	json_object_put(arr);
	assert_int_equal(fl_db_commands_between(db, "sbx-cmd", now - 60, now - 30, &arr, NULL), 0);
	assert_int_equal(json_object_array_length(arr), 0);
	json_object_put(arr);
	json_object_put(env);
	fl_db_close(db);
}

static struct json_object *record(const char *id, const char *agent, const char *state,
				  int64_t created)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "id", json_object_new_string(id));
	json_object_object_add(o, "sandbox_name", json_object_new_string(id));
	json_object_object_add(o, "agent_id", json_object_new_string(agent));
	json_object_object_add(o, "job_id", NULL);
	json_object_object_add(o, "base_image", json_object_new_string("debian-12"));
	json_object_object_add(o, "state", json_object_new_string(state));
	json_object_object_add(o, "created_at", json_object_new_int64(created));
	json_object_object_add(o, "updated_at", json_object_new_int64(created));
	json_object_object_add(o, "extra", json_object_new_string("kept as is"));
	return o;
}

static void test_sandbox_mirror(void **state)
{
	FlDb *db = open_db(NULL);
	const char *ids[] = {"sb-a", "sb-b", "sb-c", "sb-d", "sb-e"};
	for (int i = 0; i < 5; i++) {
		struct json_object *r = record(ids[i], i < 3 ? "agent-1" : "agent-2",
					       i % 2 ? "STOPPED" : "RUNNING", 1700000000 + i);
		assert_int_equal(fl_db_sandbox_upsert(db, r, NULL, NULL), 0);
		json_object_put(r);
	}
	struct json_object *arr = NULL;
	uint64_t total = 0;
	FlDbSandboxFilter f = {.agent_id = "agent-1", .limit = 2};
	assert_int_equal(fl_db_sandboxes_list(db, &f, &arr, &total, NULL), 0);
	assert_int_equal(total, 3);
	assert_int_equal(json_object_array_length(arr), 2);
	assert_string_equal(json_object_get_string(json_object_object_get(
				    json_object_array_get_idx(arr, 0), "extra")),
			    "kept as is");
	json_object_put(arr);
	f = (FlDbSandboxFilter){.agent_id = "agent-1", .state = "RUNNING"};
	assert_int_equal(fl_db_sandboxes_list(db, &f, &arr, &total, NULL), 0);
	assert_int_equal(total, 2); /* sb-a, sb-c */
	json_object_put(arr);
	f = (FlDbSandboxFilter){.vm_name = "sb-e"};
	assert_int_equal(fl_db_sandboxes_list(db, &f, &arr, &total, NULL), 0);
	assert_int_equal(total, 1);
	json_object_put(arr);
	f = (FlDbSandboxFilter){.offset = 4, .limit = 10};
	assert_int_equal(fl_db_sandboxes_list(db, &f, &arr, &total, NULL), 0);
	assert_true(total >= 5);
	json_object_put(arr);

	/* Update in place. */
	struct json_object *r = record("sb-a", "agent-1", "DESTROYED", 1700000000);
	assert_int_equal(fl_db_sandbox_upsert(db, r, NULL, NULL), 0);
	json_object_put(r);
	assert_int_equal(fl_db_sandbox_get(db, "sb-a", &r, NULL), 0);
	assert_string_equal(json_object_get_string(json_object_object_get(r, "state")), "DESTROYED");
	json_object_put(r);
	assert_int_equal(fl_db_sandbox_get(db, "sb-zzz", &r, NULL), -ENOENT);

	/* Prune keeps only the given ids. */
	struct json_object *keep = json_object_new_array();
	json_object_array_add(keep, json_object_new_string("sb-a"));
	json_object_array_add(keep, json_object_new_string("sb-e"));
	assert_int_equal(fl_db_sandboxes_prune(db, keep, NULL), 0);
	json_object_put(keep);
	assert_int_equal(fl_db_sandboxes_list(db, NULL, &arr, &total, NULL), 0);
	assert_int_equal(total, 2);
	json_object_put(arr);

	struct json_object *bad = json_object_new_object();
	assert_int_equal(fl_db_sandbox_upsert(db, bad, NULL, NULL), -EINVAL);
	json_object_put(bad);
	fl_db_close(db);
}

static void test_tokens(void **state)
{
	FlDb *db = open_db(NULL);
	char *plain = NULL, id[FL_DB_ID_MAX], cid[FL_DB_ID_MAX], role[16];
	int r = fl_db_token_bootstrap(db, &plain, id, NULL);
	assert_true(r == 0 || r == 1);
	if (r == 1) {
		assert_true(fl_db_token_wellformed(plain));
		assert_int_equal(fl_db_token_check(db, plain, cid, role, NULL), 0);
		assert_string_equal(role, "admin");
		assert_string_equal(cid, id);
		free(plain);
		plain = NULL;
	}
	assert_int_equal(fl_db_token_bootstrap(db, &plain, id, NULL), 0);
	assert_null(plain);

	assert_int_equal(fl_db_token_create(db, "superuser", NULL, NULL, &plain, id, NULL), -EINVAL);
	assert_int_equal(fl_db_token_create(db, "reviewer", "bob", NULL, &plain, id, NULL), 0);
	assert_int_equal(fl_db_token_check(db, plain, cid, role, NULL), 0);
	assert_string_equal(role, "reviewer");
	assert_string_equal(cid, id);
	plain[10] ^= 1;
	assert_int_equal(fl_db_token_check(db, plain, cid, role, NULL), -ENOENT);
	plain[10] ^= 1;
	assert_int_equal(fl_db_token_check(db, "garbage", cid, role, NULL), -ENOENT);
	assert_int_equal(fl_db_token_revoke(db, id, NULL, NULL), 0);
	assert_int_equal(fl_db_token_check(db, plain, cid, role, NULL), -ENOENT);
	assert_int_equal(fl_db_token_revoke(db, id, NULL, NULL), -ENOENT);
	free(plain);

	/* The last admin token cannot be revoked; with two, one can. */
	struct json_object *arr = NULL;
	assert_int_equal(fl_db_tokens_list(db, false, &arr, NULL), 0);
	char admin[FL_DB_ID_MAX] = "";
	int admins = 0;
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		struct json_object *t = json_object_array_get_idx(arr, i);
		if (!strcmp(json_object_get_string(json_object_object_get(t, "role")), "admin")) {
			snprintf(admin, sizeof(admin), "%s",
				 json_object_get_string(json_object_object_get(t, "id")));
			admins++;
		}
	}
	json_object_put(arr);
	assert_int_equal(admins, 1);
	assert_int_equal(fl_db_token_revoke(db, admin, NULL, NULL), -EBUSY);
	assert_int_equal(fl_db_token_create(db, "admin", "second", NULL, &plain, id, NULL), 0);
	free(plain);
	assert_int_equal(fl_db_token_revoke(db, admin, NULL, NULL), 0);
	assert_int_equal(fl_db_token_revoke(db, id, NULL, NULL), -EBUSY);
	fl_db_close(db);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_database_down_and_back(void **state)
{
	if (!own_cluster)
		skip();
	FlDb *db = open_db(NULL);
	FlAuditEvent ev = {.action = "test.outage"};
	int64_t id1 = 0, id2 = 0;
	assert_int_equal(fl_db_audit(db, &ev, &id1, NULL), 0);
	assert_int_equal(pg("stop"), 0);
	FlError err = {0};
	double t0 = now_s();
	assert_int_equal(fl_db_audit(db, &ev, NULL, &err), -ENOTCONN);
	assert_non_null(strstr(err.msg, "database unavailable"));
	assert_int_equal(fl_db_ping(db, NULL), -ENOTCONN);
	char *plain = NULL, id[FL_DB_ID_MAX];
	assert_int_equal(fl_db_token_create(db, "agent", NULL, NULL, &plain, id, NULL), -ENOTCONN);
	assert_true(now_s() - t0 < 2.0);
	assert_int_equal(pg("start"), 0);
	usleep(300 * 1000); /* past the pool's connect back-off */
	assert_int_equal(fl_db_audit(db, &ev, &id2, NULL), 0);
	assert_int_equal(id2, id1 + 1);
	struct json_object *rep = NULL;
	assert_int_equal(fl_db_audit_verify(db, &rep, NULL), 0);
	assert_true(jbool(rep, "ok"));
	json_object_put(rep);
	fl_db_close(db);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_migrations_idempotent),
		cmocka_unit_test(test_open_bad_conninfo),
		cmocka_unit_test(test_audit_chain_concurrent),
		cmocka_unit_test(test_audit_bad_event),
		cmocka_unit_test(test_commands),
		cmocka_unit_test(test_sandbox_mirror),
		cmocka_unit_test(test_tokens),
		cmocka_unit_test(test_database_down_and_back),
	};
	return cmocka_run_group_tests(tests, setup_cluster, teardown_cluster);
}
