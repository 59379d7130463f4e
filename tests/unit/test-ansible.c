// SPDX-License-Identifier: MIT
/*
 * Unit tests for appliance/ansible.c and ansible-gen.c: the playbook
 * generated from hand-written diffs (tests/fixtures/diffs/) covering every
 * change kind, in the documented order; hostile names (quotes, newlines,
 * colons, leading dashes, Jinja braces, bidi controls, NUL, "..") either
 * carried exactly or refused; flagged command tasks; and the YAML read back
 * with libyaml: every scalar equals the generator's string, strings with '{'
 * carry the !unsafe tag, no line is longer than 80 columns or ends in blanks.
 * Also the checks on tasks written by API callers.
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
#include <yaml.h>

#include "ansible.h"
#include "base64.h"

static struct json_object *fixture(const char *name)
{
	char path[4096];
	const char *root = getenv("FLUID_ROOT");
	snprintf(path, sizeof(path), "%s/tests/fixtures/diffs/%s", root ? root : ".", name);
	struct json_object *j = json_object_from_file(path);
	assert_non_null(j);
	return j;
}

static struct json_object *generate(const char *name)
{
	struct json_object *diff = fixture(name), *pb = NULL;
	FlError err = {0};
	assert_int_equal(fl_ansible_generate(diff, NULL, &pb, &err), 0);
	json_object_put(diff);
	return pb;
}

static struct json_object *tasks_of(struct json_object *pb)
{
	return json_object_object_get(pb, "tasks");
}

static const char *sget(struct json_object *o, const char *k)
{
	struct json_object *v = json_object_object_get(o, k);
	return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

/* The first task whose name starts with prefix, and its index. */
static struct json_object *find(struct json_object *pb, const char *prefix, int *ret_idx)
{
	struct json_object *t = tasks_of(pb);
	for (size_t i = 0; i < json_object_array_length(t); i++) {
		struct json_object *x = json_object_array_get_idx(t, i);
		if (!strncmp(sget(x, "name"), prefix, strlen(prefix))) {
			if (ret_idx)
				*ret_idx = (int)i;
			return x;
		}
	}
	return NULL;
}

static struct json_object *params(struct json_object *t)
{
	return json_object_object_get(t, "params");
}

static bool skipped(struct json_object *pb, const char *what)
{
	struct json_object *s = json_object_object_get(pb, "skipped");
	for (size_t i = 0; i < json_object_array_length(s); i++) {
		struct json_object *x = json_object_array_get_idx(s, i);
		const char *p = sget(x, "path") ? sget(x, "path") : sget(x, "item");
		if (p && !strcmp(p, what))
			return true;
	}
	return false;
}

/* ---- a tiny libyaml loader: YAML -> json, scalars as strings ------------ */

typedef struct Node {
	struct json_object *j;
} Node;

static int unsafe_count;

static struct json_object *load_node(yaml_parser_t *p, yaml_event_t *ev)
{
	struct json_object *out = NULL;
	if (ev->type == YAML_SCALAR_EVENT) {
		const char *tag = (const char *)ev->data.scalar.tag;
		if (tag && !strcmp(tag, "!unsafe"))
			unsafe_count++;
		out = json_object_new_string_len((const char *)ev->data.scalar.value,
						 (int)ev->data.scalar.length);
		/* remember which scalars were tagged: prefix marker for tests */
		if (tag && !strcmp(tag, "!unsafe")) {
			char *s = malloc(ev->data.scalar.length + 9);
			memcpy(s, "!unsafe:", 8);
			memcpy(s + 8, ev->data.scalar.value, ev->data.scalar.length);
			json_object_put(out);
			out = json_object_new_string_len(s, (int)ev->data.scalar.length + 8);
			free(s);
		}
	} else if (ev->type == YAML_SEQUENCE_START_EVENT) {
		out = json_object_new_array();
		for (;;) {
			yaml_event_t e;
			assert_true(yaml_parser_parse(p, &e));
			if (e.type == YAML_SEQUENCE_END_EVENT) {
				yaml_event_delete(&e);
				break;
			}
			json_object_array_add(out, load_node(p, &e));
			yaml_event_delete(&e);
		}
	} else if (ev->type == YAML_MAPPING_START_EVENT) {
		out = json_object_new_object();
		for (;;) {
			yaml_event_t k, v;
			assert_true(yaml_parser_parse(p, &k));
			if (k.type == YAML_MAPPING_END_EVENT) {
				yaml_event_delete(&k);
				break;
			}
			assert_int_equal(k.type, YAML_SCALAR_EVENT);
			assert_true(yaml_parser_parse(p, &v));
			json_object_object_add(out, (const char *)k.data.scalar.value, load_node(p, &v));
			yaml_event_delete(&k);
			yaml_event_delete(&v);
		}
	} else {
		fail_msg("unexpected YAML event %d", ev->type);
	}
	return out;
}

static struct json_object *load_yaml(const char *text)
{
	yaml_parser_t p;
	yaml_event_t ev;
	struct json_object *doc = NULL;
	assert_true(yaml_parser_initialize(&p));
	yaml_parser_set_input_string(&p, (const unsigned char *)text, strlen(text));
	for (;;) {
		if (!yaml_parser_parse(&p, &ev))
			fail_msg("YAML does not parse: %s at line %zu", p.problem,
				 p.problem_mark.line + 1);
		if (ev.type == YAML_STREAM_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		if (ev.type == YAML_SEQUENCE_START_EVENT && !doc)
			doc = load_node(&p, &ev);
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&p);
	assert_non_null(doc);
	return doc;
}

/* Every string of a (generator) JSON value equals the YAML scalar; strings
 * with '{' were tagged !unsafe, others were not. */
static void same(struct json_object *want, struct json_object *got)
{
	switch (json_object_get_type(want)) {
	case json_type_string: {
		const char *w = json_object_get_string(want), *g = json_object_get_string(got);
		assert_non_null(g);
		if (strchr(w, '{')) {
			assert_int_equal(strncmp(g, "!unsafe:", 8), 0);
			g += 8;
		} else {
			assert_int_not_equal(strncmp(g, "!unsafe:", 8), 0);
		}
		assert_string_equal(w, g);
		break;
	}
	case json_type_int:
	case json_type_boolean:
		assert_string_equal(json_object_to_json_string(want), json_object_get_string(got));
		break;
	case json_type_array:
		assert_int_equal(json_object_array_length(want), json_object_array_length(got));
		for (size_t i = 0; i < json_object_array_length(want); i++)
			same(json_object_array_get_idx(want, i), json_object_array_get_idx(got, i));
		break;
	case json_type_object: {
		json_object_object_foreach(want, k, v)
		{
			struct json_object *x;
			assert_true(json_object_object_get_ex(got, k, &x));
			same(v, x);
		}
		break;
	}
	default:
		break;
	}
}

/* Renders pb, checks the text's shape and that it reads back exactly. */
static void roundtrip(struct json_object *pb)
{
	char *yaml = NULL;
	size_t len = 0;
	FlError err = {0};
	assert_int_equal(fl_ansible_yaml(pb, &yaml, &len, &err), 0);
	assert_int_equal(strlen(yaml), len);
	assert_memory_equal(yaml, "---\n", 4);
	assert_int_equal(yaml[len - 1], '\n');
	for (char *l = yaml; *l;) {
		char *nl = strchr(l, '\n');
		size_t cols = 0;
		for (char *c = l; c < nl; c++)
			if (((unsigned char)*c & 0xc0) != 0x80)
				cols++;
		if (cols > FL_ANSIBLE_LINE_MAX)
			fail_msg("line longer than 80 columns: %.*s", (int)(nl - l), l);
		if (nl > l && (nl[-1] == ' ' || nl[-1] == '\t'))
			fail_msg("trailing blank: %.*s", (int)(nl - l), l);
		l = nl + 1;
	}
	struct json_object *doc = load_yaml(yaml);
	struct json_object *play = json_object_array_get_idx(doc, 0);
	struct json_object *ytasks = json_object_object_get(play, "tasks"), *tasks = tasks_of(pb);
	assert_int_equal(json_object_array_length(ytasks), json_object_array_length(tasks));
	for (size_t i = 0; i < json_object_array_length(tasks); i++) {
		struct json_object *t = json_object_array_get_idx(tasks, i);
		struct json_object *y = json_object_array_get_idx(ytasks, i);
		same(params(t), json_object_object_get(y, sget(t, "module")));
		struct json_object *env = json_object_object_get(t, "environment");
		if (env)
			same(env, json_object_object_get(y, "environment"));
	}
	json_object_put(doc);
	free(yaml);
}

/* ---- tests -------------------------------------------------------------- */

static void test_order_and_kinds(void **state)
{
	struct json_object *pb = generate("full.json"), *t;
	int g, u, a, d, f, l, s, x;

	/* phase order: groups, users, packages, dirs, files, links, services, deletions */
	assert_non_null(find(pb, "Create group alice", &g));
	assert_int_equal(g, 0);
	assert_non_null(t = find(pb, "Create user alice", &u));
	assert_non_null(find(pb, "Install packages", &a));
	assert_non_null(find(pb, "Create directory /etc/hello", &d));
	assert_non_null(find(pb, "Write file /etc/hello/hello.conf", &f));
	assert_non_null(find(pb, "Create symlink /etc/systemd", &l));
	assert_non_null(find(pb, "Disable unit cron.service", &s));
	assert_non_null(find(pb, "Remove /etc/obsolete.conf", &x));
	assert_true(g < u && u < a && a < d && d < f && f < l && l < s && s < x);

	/* users: uid, primary group, supplementary groups exactly, home made by the user module */
	assert_int_equal(json_object_get_int(json_object_object_get(params(t), "uid")), 1001);
	assert_string_equal(sget(params(t), "group"), "1001");
	assert_false(json_object_get_boolean(json_object_object_get(params(t), "append")));
	assert_true(json_object_get_boolean(json_object_object_get(params(t), "create_home")));
	t = find(pb, "Create user svc", NULL);
	assert_false(json_object_get_boolean(json_object_object_get(params(t), "create_home")));
	assert_true(json_object_get_boolean(json_object_object_get(params(t), "system")));
	assert_true(skipped(pb, "svc")); /* password hash not in the diff */
	/* a new member of a new group that is not a new user: user append */
	t = find(pb, "Add user carol to group devs", NULL);
	assert_non_null(t);
	assert_true(json_object_get_boolean(json_object_object_get(params(t), "append")));
	/* a member removed: flagged gpasswd with argv, never a shell string */
	t = find(pb, "Remove user dave from group audio", NULL);
	assert_non_null(t);
	assert_string_equal(sget(t, "module"), "ansible.builtin.command");
	assert_true(json_object_get_boolean(json_object_object_get(t, "flagged")));
	assert_int_equal(json_object_array_length(json_object_object_get(params(t), "argv")), 4);

	/* packages: pinned versions for added and upgraded, absent for removed */
	t = find(pb, "Install packages", NULL);
	struct json_object *names = json_object_object_get(params(t), "name");
	assert_int_equal(json_object_array_length(names), 3);
	assert_string_equal(json_object_get_string(json_object_array_get_idx(names, 0)), "hello=2.10-3");
	assert_string_equal(json_object_get_string(json_object_array_get_idx(names, 2)),
			    "openssl=3.0.15-1~deb12u1");
	t = find(pb, "Remove packages", NULL);
	assert_string_equal(sget(params(t), "state"), "absent");

	/* one changed line: lineinfile matching either version of the line */
	t = find(pb, "Set one line in /etc/app.conf", NULL);
	assert_non_null(t);
	assert_string_equal(sget(params(t), "line"), "port = 9090");
	assert_string_equal(sget(params(t), "regexp"), "^(?:port\\ \\=\\ 8080|port\\ \\=\\ 9090)$");
	/* one appended last line: lineinfile without regexp */
	t = find(pb, "Set one line in /etc/append.conf", NULL);
	assert_non_null(t);
	assert_null(json_object_object_get(params(t), "regexp"));
	/* a diff that does not match the sizes: whole content instead */
	t = find(pb, "Write file /etc/motd", NULL);
	assert_string_equal(sget(t, "module"), "ansible.builtin.copy");
	assert_string_equal(sget(params(t), "mode"), "0600");
	/* mode/owner only */
	t = find(pb, "Set mode and ownership of /etc/shadowish", NULL);
	assert_string_equal(sget(params(t), "mode"), "0640");
	assert_string_equal(sget(params(t), "owner"), "alice");
	assert_null(json_object_object_get(params(t), "content"));
	t = find(pb, "Set mode and ownership of /srv", NULL);
	assert_string_equal(sget(params(t), "state"), "directory");
	/* setgid bits kept */
	t = find(pb, "Write file /usr/local/bin/sgid", NULL);
	assert_string_equal(sget(params(t), "mode"), "2755");

	/* type change: a flagged fixup with the path in the environment, then the dir */
	int i1, i2;
	t = find(pb, "Remove /var/www if it is not of the new type", &i1);
	assert_non_null(t);
	assert_string_equal(sget(t, "module"), "ansible.builtin.shell");
	assert_true(json_object_get_boolean(json_object_object_get(t, "flagged")));
	assert_string_equal(sget(json_object_object_get(t, "environment"), "FL_PATH"), "/var/www");
	assert_null(strstr(sget(params(t), "cmd"), "/var/www"));
	assert_non_null(find(pb, "Create directory /var/www", &i2));
	assert_true(i2 == i1 + 1);

	/* binary content: files/<sha256> with the blob; big content: flagged, no blob */
	t = find(pb, "Write file /opt/blob.bin", NULL);
	assert_string_equal(sget(params(t), "src"),
			    "files/40aff2e9d2d8922e47afd4648e6967497158785fbd1da870e7110266bf944880");
	t = find(pb, "Write file /opt/big.tar", NULL);
	assert_true(json_object_get_boolean(json_object_object_get(t, "flagged")));
	struct json_object *files = json_object_object_get(pb, "files");
	assert_int_equal(json_object_array_length(files), 2);
	for (size_t i = 0; i < 2; i++) {
		struct json_object *f = json_object_array_get_idx(files, i);
		bool blob = !strcmp(sget(f, "path"), "/opt/blob.bin");
		assert_true(blob || !strcmp(sget(f, "path"), "/opt/big.tar"));
		assert_true(!!json_object_object_get(f, "content_b64") == blob);
	}

	/* symlinks */
	t = find(pb, "Create symlink /etc/alternatives/editor", NULL);
	assert_string_equal(sget(params(t), "src"), "/usr/bin/vim.basic");
	assert_string_equal(sget(params(t), "state"), "link");

	/* services: one daemon-reload, started only when enabled and startable */
	int reloads = 0;
	struct json_object *all = tasks_of(pb);
	for (size_t i = 0; i < json_object_array_length(all); i++)
		if (json_object_object_get(params(json_object_array_get_idx(all, i)), "daemon_reload"))
			reloads++;
	assert_int_equal(reloads, 1);
	t = find(pb, "Enable and start unit hello.service", NULL);
	assert_string_equal(sget(params(t), "state"), "started");
	t = find(pb, "Enable and start unit getty@.service", NULL);
	assert_null(json_object_object_get(params(t), "state"));
	t = find(pb, "Mask unit rsync.service", NULL);
	assert_true(json_object_get_boolean(json_object_object_get(params(t), "masked")));
	assert_null(find(pb, "Configure unit ssh.service", NULL)); /* nothing to say */

	/* deletions: a file under a removed directory goes with it */
	assert_non_null(find(pb, "Remove /etc/old.d", NULL));
	assert_null(find(pb, "Remove /etc/old.d/a.conf", NULL));
	assert_non_null(find(pb, "Remove user games", NULL));
	assert_non_null(find(pb, "Remove group games", NULL));

	/* what packages and the account tasks express is not written again */
	assert_null(find(pb, "Write file /usr/bin/hello", NULL));
	assert_null(find(pb, "Create directory /usr/share/doc/hello", NULL));
	assert_null(find(pb, "Write file /var/lib/dpkg", NULL));
	assert_null(find(pb, "Write file /etc/passwd", NULL));
	assert_null(find(pb, "Set one line in /etc/passwd", NULL));
	assert_non_null(find(pb, "Write file /etc/hello-pkg.conf", NULL)); /* maybe an edited conffile */
	struct json_object *cov = json_object_object_get(pb, "covered");
	assert_int_equal(json_object_get_int(json_object_object_get(cov, "package_files")), 4);
	assert_int_equal(json_object_get_int(json_object_object_get(cov, "account_files")), 1);

	/* what cannot be expressed is listed, not guessed */
	assert_true(skipped(pb, "/dev-fifo"));
	assert_true(skipped(pb, "/opt/bad\xef\xbf\xbdname"));
	assert_int_equal(json_object_get_int(json_object_object_get(pb, "flagged")), 3);

	roundtrip(pb);
	json_object_put(pb);
}

/* A package from a source the sandbox added: the source first, a fresh cache. */
static void test_apt_sources_first(void **state)
{
	const char *src = "deb [trusted=yes] http://10.0.2.2:8000/ ./\n";
	size_t n = strlen(src);
	char *b64 = fl_base64_encode(src, n);
	char json[2048];
	snprintf(json, sizeof(json),
		 "{\"files_added\": [{\"path\": \"/etc/apt/sources.list.d/local.list\", \"type\": \"file\","
		 " \"mode\": \"0644\", \"owner\": \"root\", \"group\": \"root\", \"binary\": false,"
		 " \"size\": %zu, \"sha256\": \"%064d\", \"content_b64\": \"%s\"},"
		 " {\"path\": \"/etc/motd\", \"type\": \"file\", \"mode\": \"0644\", \"owner\": \"root\","
		 " \"group\": \"root\", \"binary\": false, \"size\": 3, \"sha256\": \"%064d\","
		 " \"content_b64\": \"aGkK\"}],"
		 " \"packages_added\": [{\"name\": \"hello\", \"version\": \"2.10-3\"}]}",
		 n, 0, b64, 0);
	free(b64);
	struct json_object *diff = json_tokener_parse(json), *pb = NULL;
	assert_non_null(diff);
	FlError err = {0};
	assert_int_equal(fl_ansible_generate(diff, NULL, &pb, &err), 0);
	int s, a, m;
	assert_non_null(find(pb, "Write file /etc/apt/sources.list.d/local.list", &s));
	struct json_object *t = find(pb, "Install packages", &a);
	assert_non_null(find(pb, "Write file /etc/motd", &m));
	assert_true(s < a && a < m);
	assert_true(json_object_get_boolean(json_object_object_get(params(t), "update_cache")));
	assert_null(json_object_object_get(params(t), "cache_valid_time"));
	json_object_put(pb);
	json_object_put(diff);
	/* without new sources a fresh enough cache is kept */
	pb = generate("full.json");
	t = find(pb, "Install packages", NULL);
	assert_int_equal(json_object_get_int(json_object_object_get(params(t), "cache_valid_time")), 86400);
	json_object_put(pb);
}

static void test_hostile_names(void **state)
{
	struct json_object *pb = generate("hostile.json");
	static const char *const carried[] = {
		"/opt/\"", "/opt/'", "/opt/: x", "/opt/- dash", "/opt/{{ ansible_env }}", "/opt/{% if %}",
		"/opt/{# c #}", "/opt/a\nb", "/opt/ lead", "/opt/trail ", "/opt/\\back", "/opt/!unsafe",
		"/opt/&anchor", "/opt/*alias", "/opt/? q", "/opt/| pipe", "/opt/> gt", "/opt/%percent",
		"/opt/@at", "/opt/`tick", "/opt/yes", "/opt/null", "/opt/0o777", "/opt/\xc2\xa0nbsp",
		"/opt/\xef\xbb\xbf" "bom", NULL};
	struct json_object *tasks = tasks_of(pb);
	for (size_t i = 0; carried[i]; i++) {
		bool found = false;
		for (size_t k = 0; k < json_object_array_length(tasks) && !found; k++) {
			const char *dest = sget(params(json_object_array_get_idx(tasks, k)), "dest");
			found = dest && !strcmp(dest, carried[i]);
		}
		if (!found)
			fail_msg("path not carried: %s", carried[i]);
	}
	/* task names are display text: no braces (templates) and no control characters */
	for (size_t k = 0; k < json_object_array_length(tasks); k++) {
		const char *n = sget(json_object_array_get_idx(tasks, k), "name");
		assert_null(strchr(n, '{'));
		for (const char *c = n; *c; c++)
			assert_true((unsigned char)*c >= 0x20);
	}
	assert_true(skipped(pb, "/opt/../escape"));
	assert_true(skipped(pb, "relative/path"));
	assert_true(skipped(pb, "file entry")); /* the name with a NUL */
	unsafe_count = 0;
	roundtrip(pb);
	assert_true(unsafe_count >= 4); /* three paths and the content */
	json_object_put(pb);
}

static void test_yaml_text(void **state)
{
	struct json_object *pb = generate("hostile.json");
	char *yaml = NULL;
	assert_int_equal(fl_ansible_yaml(pb, &yaml, NULL, NULL), 0);
	assert_non_null(strstr(yaml, "dest: !unsafe \"/opt/{{ ansible_env }}\"\n"));
	assert_non_null(strstr(yaml, "dest: \"/opt/a\\nb\"\n"));
	assert_non_null(strstr(yaml, "dest: \"/opt/\\uFEFFbom\"\n"));
	/* lint exceptions are stated on the task that needs them */
	assert_non_null(strstr(yaml, "ansible.builtin.copy:  # noqa: jinja no-tabs\n"));
	free(yaml);
	json_object_put(pb);

	/* bidi controls are escaped so a reviewer sees them */
	struct json_object *t = json_object_new_object(), *p = json_object_new_object();
	json_object_object_add(p, "dest", json_object_new_string("/x\xe2\x80\xae" "cod.sh"));
	json_object_object_add(t, "name", json_object_new_string("Write"));
	json_object_object_add(t, "module", json_object_new_string("ansible.builtin.copy"));
	json_object_object_add(t, "params", p);
	struct json_object *tasks = json_object_new_array(), *pb2 = json_object_new_object();
	json_object_array_add(tasks, t);
	json_object_object_add(pb2, "tasks", tasks);
	assert_int_equal(fl_ansible_yaml(pb2, &yaml, NULL, NULL), 0);
	assert_non_null(strstr(yaml, "dest: \"/x\\u202Ecod.sh\""));
	free(yaml);
	/* a string YAML cannot carry */
	json_object_object_add(p, "dest", json_object_new_string("/x\xff"));
	FlError err = {0};
	assert_int_equal(fl_ansible_yaml(pb2, &yaml, NULL, &err), -EILSEQ);
	/* a long word wraps inside the quotes and reads back whole */
	char longs[400];
	memset(longs, 'a', sizeof(longs) - 1);
	longs[sizeof(longs) - 1] = 0;
	longs[150] = ' ';
	longs[151] = ' ';
	json_object_object_add(p, "dest", json_object_new_string(longs));
	roundtrip(pb2);
	json_object_put(pb2);
}

static void test_empty_and_truncated(void **state)
{
	struct json_object *pb = generate("empty.json");
	assert_int_equal(json_object_array_length(tasks_of(pb)), 0);
	char *yaml = NULL;
	assert_int_equal(fl_ansible_yaml(pb, &yaml, NULL, NULL), 0);
	assert_non_null(strstr(yaml, "  tasks: []\n"));
	free(yaml);
	json_object_put(pb);

	struct json_object *diff = fixture("empty.json");
	json_object_object_add(diff, "truncated", json_object_new_boolean(1));
	assert_int_equal(fl_ansible_generate(diff, NULL, &pb, NULL), 0);
	assert_true(json_object_get_boolean(json_object_object_get(pb, "incomplete")));
	assert_int_equal(fl_ansible_yaml(pb, &yaml, NULL, NULL), 0);
	assert_non_null(strstr(yaml, "# WARNING: the diff was truncated"));
	free(yaml);
	json_object_put(pb);

	/* wrong shapes are refused */
	json_object_object_add(diff, "files_added", json_object_new_string("x"));
	FlError err = {0};
	assert_int_equal(fl_ansible_generate(diff, NULL, &pb, &err), -EINVAL);
	struct json_object *arr = json_object_new_array();
	json_object_array_add(arr, json_object_new_int(1));
	json_object_object_add(diff, "files_added", arr);
	assert_int_equal(fl_ansible_generate(diff, NULL, &pb, &err), -EINVAL);
	json_object_put(diff);
	struct json_object *s = json_object_new_string("x");
	assert_int_equal(fl_ansible_generate(s, NULL, &pb, &err), -EINVAL);
	json_object_put(s);
}

static int check(const char *json, struct json_object **ret)
{
	struct json_object *t = json_tokener_parse(json), *out = NULL;
	assert_non_null(t);
	FlError err = {0};
	int r = fl_ansible_task_check(t, &out, &err);
	json_object_put(t);
	if (ret)
		*ret = out;
	else
		json_object_put(out);
	return r;
}

static void test_task_check(void **state)
{
	struct json_object *t = NULL;
	assert_int_equal(check("{\"name\":\"I\",\"module\":\"apt\",\"params\":{\"name\":\"x\"}}", &t), 0);
	assert_string_equal(sget(t, "module"), "ansible.builtin.apt");
	assert_false(json_object_get_boolean(json_object_object_get(t, "flagged")));
	json_object_put(t);
	assert_int_equal(check("{\"name\":\"C\",\"module\":\"ansible.builtin.command\",\"params\":"
			       "{\"argv\":[\"true\"]},\"register\":\"r\",\"changed_when\":\"r.rc == 0\","
			       "\"failed_when\":false,\"environment\":{\"A_B\":\"x\"},\"note\":\"n\","
			       "\"flagged\":true}", NULL), 0);
	assert_int_equal(check("{\"name\":\"C\",\"module\":\"copy\",\"params\":{\"src\":\"files/"
			       "40aff2e9d2d8922e47afd4648e6967497158785fbd1da870e7110266bf944880\","
			       "\"dest\":\"/x\"}}", NULL), 0);
	assert_int_equal(check("{\"name\":\"C\",\"module\":\"copy\",\"params\":{\"src\":\"/etc/x\","
			       "\"remote_src\":true,\"dest\":\"/x\"}}", NULL), 0);

	static const char *const bad[] = {
		"{\"module\":\"apt\",\"params\":{}}",
		"{\"name\":\"\",\"module\":\"apt\",\"params\":{}}",
		"{\"name\":\"a\\nb\",\"module\":\"apt\",\"params\":{}}",
		"{\"name\":\"x\",\"params\":{}}",
		"{\"name\":\"x\",\"module\":\"apt\"}",
		"{\"name\":\"x\",\"module\":\"apt\",\"params\":[]}",
		"{\"name\":\"x\",\"module\":\"template\",\"params\":{}}",
		"{\"name\":\"x\",\"module\":\"ansible.builtin.fetch\",\"params\":{}}",
		"{\"name\":\"x\",\"module\":\"script\",\"params\":{}}",
		"{\"name\":\"x\",\"module\":\"include_tasks\",\"params\":{}}",
		"{\"name\":\"x\",\"module\":\"community.general.foo\",\"params\":{}}",
		"{\"name\":\"x\",\"module\":\"copy\",\"params\":{\"src\":\"/root/.ssh/id_rsa\"}}",
		"{\"name\":\"x\",\"module\":\"copy\",\"params\":{\"src\":\"files/../x\"}}",
		"{\"name\":\"x\",\"module\":\"apt\",\"params\":{\"_raw_params\":\"x\"}}",
		"{\"name\":\"x\",\"module\":\"apt\",\"params\":{\"a b\":\"x\"}}",
		"{\"name\":\"x\",\"module\":\"apt\",\"params\":{\"a\":[[1]]}}",
		"{\"name\":\"x\",\"module\":\"apt\",\"params\":{},\"when\":\"true\"}",
		"{\"name\":\"x\",\"module\":\"apt\",\"params\":{},\"delegate_to\":\"localhost\"}",
		"{\"name\":\"x\",\"module\":\"apt\",\"params\":{},\"changed_when\":\"lookup('pipe','id')\"}",
		"{\"name\":\"x\",\"module\":\"apt\",\"params\":{},\"changed_when\":\"x | bool\"}",
		"{\"name\":\"x\",\"module\":\"apt\",\"params\":{},\"changed_when\":\"x.__class__\"}",
		"{\"name\":\"x\",\"module\":\"apt\",\"params\":{},\"changed_when\":\"{{ x }}\"}",
		"{\"name\":\"x\",\"module\":\"apt\",\"params\":{},\"register\":\"A-b\"}",
		"{\"name\":\"x\",\"module\":\"apt\",\"params\":{},\"environment\":{\"A\":1}}",
		"{\"name\":\"x\",\"module\":\"apt\",\"params\":{},\"flagged\":\"yes\"}",
		NULL};
	for (size_t i = 0; bad[i]; i++)
		if (check(bad[i], NULL) != -EINVAL)
			fail_msg("accepted: %s", bad[i]);
}

static void test_names(void **state)
{
	assert_true(fl_ansible_name_valid("sandbox-abc_1.2"));
	assert_true(fl_ansible_name_valid("A"));
	char n65[66];
	memset(n65, 'x', 65);
	n65[65] = 0;
	assert_false(fl_ansible_name_valid(n65));
	n65[64] = 0;
	assert_true(fl_ansible_name_valid(n65));
	static const char *const bad[] = {"", ".", "..", "a/b", "a b", "a\nb", "ä", "{{x}}", NULL};
	for (size_t i = 0; bad[i]; i++)
		assert_false(fl_ansible_name_valid(bad[i]));
	assert_false(fl_ansible_name_valid(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_order_and_kinds), cmocka_unit_test(test_apt_sources_first),
		cmocka_unit_test(test_hostile_names),
		cmocka_unit_test(test_yaml_text),	cmocka_unit_test(test_empty_and_truncated),
		cmocka_unit_test(test_task_check),	cmocka_unit_test(test_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
