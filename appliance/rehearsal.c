// SPDX-License-Identifier: MIT
/*
 * rehearsal: runs a playbook on a fresh clone of the sandbox's template and
 * measures what it does not reproduce (rehearsal.h, docs/ansible.md).
 *
 * DESIGN: the clone is a new sandbox from the same image and shape (so the
 * same template), made by the engine, never derived from the sandbox's own
 * disk: nothing the agent wrote can influence the target or the
 * measurement. Access is bootstrapped through the engine only: the
 * one-time key goes in with a file_write stream and the host key comes out
 * with a file_read stream of the pristine clone, so the SSH connection that
 * ansible-playbook makes is pinned from the first packet (no
 * trust-on-first-use). ansible-playbook runs as a child process with a
 * private ansible.cfg in the work directory (json callback, host key
 * checking on, its own temp dir), waited for through a pidfd with a
 * deadline. The comparison is a diff of diffs: the clone's own trusted
 * diff (base -> applied) against the sandbox's (from -> to); both start
 * from the same template, so equal diffs mean the playbook reproduces the
 * change. The clone is destroyed on every path.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ansible.h"
#include "base64.h"
#include "cleanup.h"
#include "diff.h"
#include "fsutil.h"
#include "rehearsal.h"

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)

extern char **environ;

const char *const fl_rehearsal_ignore[] = {"/root/.ssh", "/root/.ssh/**", "/root/.ansible",
					   "/root/.ansible/**", NULL};

/* ---- residual (pure) ------------------------------------------------------ */

static struct json_object *jget(struct json_object *o, const char *k)
{
	struct json_object *v;
	return o && json_object_object_get_ex(o, k, &v) ? v : NULL;
}

static const char *jstr(struct json_object *o, const char *k)
{
	struct json_object *v = jget(o, k);
	return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

static struct json_object *file_state(struct json_object *m)
{
	static const char *const keys[] = {"type", "mode", "owner", "group", "sha256", "target", NULL};
	struct json_object *s = json_object_new_object();
	for (size_t i = 0; keys[i]; i++) {
		struct json_object *v = jget(m, keys[i]);
		json_object_object_add(s, keys[i], v ? json_object_get(v) : NULL);
	}
	return s;
}

static void put_state(struct json_object *map, const char *k, struct json_object *state)
{
	if (k)
		json_object_object_add(map, k, state);
	else
		json_object_put(state);
}

static void files_map(struct json_object *d, struct json_object *map)
{
	struct json_object *a;
	if ((a = jget(d, "files_added")))
		for (size_t i = 0; i < json_object_array_length(a); i++) {
			struct json_object *e = json_object_array_get_idx(a, i);
			put_state(map, jstr(e, "path"), file_state(e));
		}
	if ((a = jget(d, "files_modified")))
		for (size_t i = 0; i < json_object_array_length(a); i++) {
			struct json_object *e = json_object_array_get_idx(a, i);
			put_state(map, jstr(e, "path"), file_state(jget(e, "new")));
		}
	if ((a = jget(d, "files_removed")))
		for (size_t i = 0; i < json_object_array_length(a); i++) {
			struct json_object *e = json_object_array_get_idx(a, i);
			put_state(map, jstr(e, "path"), json_object_new_string("absent"));
		}
}

/* name -> entry without the keys in drop (NULL-terminated), or "absent". */
static void named_map(struct json_object *d, const char *added, const char *removed,
		      const char *changed, const char *const *drop, struct json_object *map)
{
	const char *secs[] = {added, changed};
	for (int s = 0; s < 2; s++) {
		struct json_object *a = secs[s] ? jget(d, secs[s]) : NULL;
		for (size_t i = 0; a && i < json_object_array_length(a); i++) {
			struct json_object *e = json_object_array_get_idx(a, i);
			struct json_object *c = json_object_new_object();
			json_object_object_foreach(e, k, v)
			{
				bool skip = !strcmp(k, "name");
				for (size_t x = 0; drop && drop[x] && !skip; x++)
					skip = !strcmp(k, drop[x]);
				if (!skip)
					json_object_object_add(c, k, json_object_get(v));
			}
			/* drop nested password changes of users_changed too */
			struct json_object *ch = jget(c, "changes");
			if (ch && json_object_is_type(ch, json_type_object))
				json_object_object_del(ch, "password");
			put_state(map, jstr(e, "name"), c);
		}
	}
	struct json_object *a = removed ? jget(d, removed) : NULL;
	for (size_t i = 0; a && i < json_object_array_length(a); i++) {
		struct json_object *e = json_object_array_get_idx(a, i);
		put_state(map, jstr(e, "name"), json_object_new_string("absent"));
	}
}

/* The generator's reason when it listed k as not expressible, else NULL. */
static const char *skip_reason(struct json_object *skipped, const char *k)
{
	for (size_t i = 0; skipped && i < json_object_array_length(skipped); i++) {
		struct json_object *s = json_object_array_get_idx(skipped, i);
		const char *p = jstr(s, "path") ? jstr(s, "path") : jstr(s, "item");
		if (p && !strcmp(p, k))
			return jstr(s, "reason") ? jstr(s, "reason") : "skipped";
	}
	return NULL;
}

static void compare(const char *kind, struct json_object *a, struct json_object *b,
		    struct json_object *skipped, struct json_object *out)
{
	/* keys of both, sorted for a stable report */
	struct json_object *keys = json_object_new_array();
	json_object_object_foreach(a, ka, va)
	{
		(void)va;
		json_object_array_add(keys, json_object_new_string(ka));
	}
	json_object_object_foreach(b, kb, vb)
	{
		(void)vb;
		if (!json_object_object_get_ex(a, kb, NULL))
			json_object_array_add(keys, json_object_new_string(kb));
	}
	for (size_t i = 0; i < json_object_array_length(keys); i++) {
		const char *k = json_object_get_string(json_object_array_get_idx(keys, i));
		struct json_object *x = jget(a, k), *y = jget(b, k);
		if (x && y && json_object_equal(x, y))
			continue;
		struct json_object *r = json_object_new_object();
		json_object_object_add(r, "kind", json_object_new_string(kind));
		json_object_object_add(r, "name", json_object_new_string(k));
		json_object_object_add(r, "sandbox", x ? json_object_get(x) : NULL);
		json_object_object_add(r, "rehearsal", y ? json_object_get(y) : NULL);
		const char *why = skip_reason(skipped, k);
		if (why)
			json_object_object_add(r, "generator", json_object_new_string(why));
		json_object_array_add(out, r);
	}
	json_object_put(keys);
}

struct json_object *fl_rehearsal_residual(struct json_object *want, struct json_object *got,
					  struct json_object *skipped)
{
	struct json_object *out = json_object_new_array();
	static const char *const no_pw[] = {"password", NULL};
	static const char *const svc_drop[] = {"unit_path", NULL};
	struct {
		const char *kind, *added, *removed, *changed;
		const char *const *drop;
		bool files;
	} secs[] = {
		{"file", NULL, NULL, NULL, NULL, true},
		{"package", "packages_added", "packages_removed", "packages_upgraded", NULL, false},
		{"user", "users_added", "users_removed", "users_changed", no_pw, false},
		{"group", "groups_added", "groups_removed", "groups_changed", NULL, false},
		{"service", "services_changed", NULL, NULL, svc_drop, false},
	};
	for (size_t s = 0; s < FL_ARRAY_SIZE(secs); s++) {
		struct json_object *a = json_object_new_object(), *b = json_object_new_object();
		if (secs[s].files) {
			files_map(want, a);
			files_map(got, b);
		} else {
			named_map(want, secs[s].added, secs[s].removed, secs[s].changed, secs[s].drop, a);
			named_map(got, secs[s].added, secs[s].removed, secs[s].changed, secs[s].drop, b);
		}
		compare(secs[s].kind, a, b, skipped, out);
		json_object_put(a);
		json_object_put(b);
	}
	return out;
}

/* ---- engine helpers --------------------------------------------------------- */

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Drains a stream's records; data of stream 1 into buf (at most cap). */
static int drain(FlStream *s, char *buf, size_t cap, size_t *ret_len)
{
	unsigned char hdr[5];
	char tmp[65536];
	size_t len = 0;
	int r;
	while ((r = fl_read_full(fl_stream_out_fd(s), hdr, 5)) > 0) {
		uint32_t n = hdr[1] | hdr[2] << 8 | hdr[3] << 16 | (uint32_t)hdr[4] << 24;
		while (n) {
			uint32_t k = n < sizeof(tmp) ? n : sizeof(tmp);
			if ((r = fl_read_full(fl_stream_out_fd(s), tmp, k)) <= 0)
				return r < 0 ? r : -EPROTO;
			if (hdr[0] == 1 && buf) {
				if (len + k > cap)
					return -EFBIG;
				memcpy(buf + len, tmp, k);
				len += k;
			}
			n -= k;
		}
	}
	if (ret_len)
		*ret_len = len;
	return r;
}

static int guest_write(FlEngine *e, const char *id, const char *path, const void *data, size_t len,
		       int mode, FlError *err)
{
	struct json_object *args = json_object_new_object();
	json_object_object_add(args, "path", json_object_new_string(path));
	json_object_object_add(args, "mode", json_object_new_int(mode));
	json_object_object_add(args, "owner", json_object_new_string("root"));
	json_object_object_add(args, "group", json_object_new_string("root"));
	json_object_object_add(args, "mkdirs", json_object_new_boolean(1));
	FlStreamSpec ss = {.op = "file_write", .args = args, .input = true, .timeout_ms = 60000};
	FlStream *s = NULL;
	int r = fl_engine_stream_open(e, id, &ss, &s, err);
	if (r < 0)
		return r;
	r = fl_write_all(fl_stream_in_fd(s), data, len);
	fl_stream_close_input(s);
	int d = drain(s, NULL, 0, NULL);
	int f = fl_stream_finish(s, NULL, err);
	if (r < 0)
		return fl_error_set(err, r, "writing %s into the clone: %s", path, strerror(-r));
	return f < 0 ? f : d < 0 ? fl_error_set(err, d, "writing %s into the clone", path) : 0;
}

static int guest_read(FlEngine *e, const char *id, const char *path, char *buf, size_t cap,
		      size_t *ret_len, FlError *err)
{
	struct json_object *args = json_object_new_object();
	json_object_object_add(args, "path", json_object_new_string(path));
	FlStreamSpec ss = {.op = "file_read", .args = args, .timeout_ms = 60000};
	FlStream *s = NULL;
	int r = fl_engine_stream_open(e, id, &ss, &s, err);
	if (r < 0)
		return r;
	int d = drain(s, buf, cap, ret_len);
	if (d < 0)
		fl_stream_cancel(s);
	int f = fl_stream_finish(s, NULL, err);
	if (f < 0)
		return f;
	return d < 0 ? fl_error_set(err, d, "reading %s from the clone", path) : 0;
}

static int write_file(const char *dir, const char *name, const void *data, size_t len, mode_t mode)
{
	char path[4096];
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
		return -ENAMETOOLONG;
	_cleanup_close_ int fd =
		open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0)
		return -errno;
	return fl_write_all(fd, data, len);
}

/* ---- ansible-playbook ---------------------------------------------------------- */

/*
 * Runs ansible-playbook in dir with the private config; stdout (the json
 * callback) to runN.json, stderr to runN.err. *ret_status: exit status or
 * -1 when killed at the deadline.
 */
static int run_playbook(const FlRehearsalSpec *spec, const char *dir, int n, int *ret_status,
			FlError *err)
{
	char out[4200], errp[4200], cfg[4200], inv[4200], key[4200], tmpd[4200], home[4200];
	snprintf(out, sizeof(out), "%s/run%d.json", dir, n);
	snprintf(errp, sizeof(errp), "%s/run%d.err", dir, n);
	snprintf(cfg, sizeof(cfg), "ANSIBLE_CONFIG=%s/ansible.cfg", dir);
	snprintf(inv, sizeof(inv), "%s/inventory", dir);
	snprintf(key, sizeof(key), "%s/key", dir);
	snprintf(tmpd, sizeof(tmpd), "ANSIBLE_LOCAL_TEMP=%s/tmp", dir);
	snprintf(home, sizeof(home), "ANSIBLE_HOME=%s/home", dir);

	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, errp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_addchdir_np(&fa, dir);
	posix_spawnattr_t at;
	posix_spawnattr_init(&at);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);
	sigset_t none;
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setpgroup(&at, 0);

	/* the environment: ours without ANSIBLE_* (no outside config), plus the private one */
	size_t ne = 0;
	for (char **v = environ; *v; v++)
		ne++;
	_cleanup_free_ char **envp = calloc(ne + 8, sizeof(char *));
	if (!envp)
		return fl_error_set(err, -ENOMEM, "out of memory");
	size_t k = 0;
	for (char **v = environ; *v; v++)
		if (strncmp(*v, "ANSIBLE_", 8))
			envp[k++] = *v;
	envp[k++] = cfg;
	envp[k++] = tmpd;
	envp[k++] = home;
	envp[k++] = (char *)"ANSIBLE_NOCOLOR=1";
	envp[k++] = (char *)"ANSIBLE_FORCE_COLOR=0";
	envp[k] = NULL;

	const char *prog = spec->ansible_playbook ? spec->ansible_playbook : "ansible-playbook";
	char *argv[] = {(char *)prog, (char *)"-i", inv, (char *)"--private-key", key,
			(char *)"playbook.yml", NULL};
	pid_t pid;
	int r = posix_spawnp(&pid, prog, &fa, &at, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	if (r)
		return fl_error_set(err, -r, "cannot run %s: %s", prog, strerror(r));

	/* wait on the process itself (pidfd), with a deadline */
	int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
	unsigned timeout = spec->timeout_ms ? spec->timeout_ms : 30 * 60 * 1000;
	bool killed = false, cancelled = false;
	if (pfd >= 0) {
		struct pollfd p[2] = {{.fd = pfd, .events = POLLIN},
				      {.fd = spec->cancel_fd > 0 ? spec->cancel_fd : -1, .events = POLLIN}};
		uint64_t deadline = now_ms() + timeout;
		for (;;) {
			uint64_t t = now_ms();
			if (t >= deadline) {
				kill(-pid, SIGKILL);
				killed = true;
				break;
			}
			int pr = poll(p, 2, (int)(deadline - t));
			if (pr > 0 && p[1].revents) {
				kill(-pid, SIGKILL);
				killed = cancelled = true;
				break;
			}
			if (pr > 0 || (pr < 0 && errno != EINTR))
				break;
		}
		close(pfd);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (cancelled)
		return fl_error_set(err, -ECANCELED, "rehearsal cancelled (the server is stopping)");
	*ret_status = killed ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	return 0;
}

/* {exit_code, ok, changed, failures, unreachable, changed_tasks} from runN.json. */
static struct json_object *run_summary(const char *dir, int n, int status)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/run%d.json", dir, n);
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "exit_code", json_object_new_int(status));
	_cleanup_(json_object_putp) struct json_object *j = json_object_from_file(path);
	struct json_object *stats = jget(jget(j, "stats"), "target");
	static const char *const keys[] = {"ok", "changed", "failures", "unreachable", "skipped", NULL};
	for (size_t i = 0; keys[i]; i++) {
		struct json_object *v = jget(stats, keys[i]);
		json_object_object_add(o, keys[i], json_object_new_int(v ? json_object_get_int(v) : -1));
	}
	struct json_object *names = json_object_new_array(), *failed = json_object_new_array();
	struct json_object *plays = jget(j, "plays");
	for (size_t p = 0; plays && p < json_object_array_length(plays); p++) {
		struct json_object *tasks = jget(json_object_array_get_idx(plays, p), "tasks");
		for (size_t t = 0; tasks && t < json_object_array_length(tasks); t++) {
			struct json_object *task = json_object_array_get_idx(tasks, t);
			struct json_object *h = jget(jget(task, "hosts"), "target");
			const char *name = jstr(jget(task, "task"), "name");
			struct json_object *c = jget(h, "changed"), *f = jget(h, "failed");
			if (c && json_object_get_boolean(c) && name)
				json_object_array_add(names, json_object_new_string(name));
			if (f && json_object_get_boolean(f) && name) {
				struct json_object *x = json_object_new_object();
				json_object_object_add(x, "task", json_object_new_string(name));
				const char *msg = jstr(h, "msg");
				json_object_object_add(x, "msg", json_object_new_string(msg ? msg : ""));
				json_object_array_add(failed, x);
			}
		}
	}
	json_object_object_add(o, "changed_tasks", names);
	json_object_object_add(o, "failed_tasks", failed);
	if (!j)
		json_object_object_add(o, "error", json_object_new_string("no JSON output (see runN.err)"));
	return o;
}

/* ---- the rehearsal ------------------------------------------------------------- */

typedef struct Clone {
	FlEngine *e;
	char id[64];
	bool keep;
	char cm_dir[32]; /* SSH control socket directory, "" = none */
} Clone;

static void clone_destroy(Clone *c)
{
	if (c->cm_dir[0])
		fl_rm_rf(c->cm_dir); /* the master exits by itself (ControlPersist) */
	if (c->id[0] && !c->keep)
		fl_engine_destroy(c->e, c->id, NULL);
}

static void stage(const FlRehearsalSpec *spec, const char *name)
{
	if (spec->progress)
		spec->progress(name, spec->userdata);
}

static int keygen(const char *dir, FlError *err)
{
	char key[4200];
	snprintf(key, sizeof(key), "%s/key", dir);
	char *argv[] = {(char *)"ssh-keygen", (char *)"-q", (char *)"-t", (char *)"ed25519",
			(char *)"-N", (char *)"", (char *)"-C", (char *)"fluid-rehearsal", (char *)"-f",
			key, NULL};
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
	pid_t pid;
	int r = posix_spawnp(&pid, "ssh-keygen", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (r)
		return fl_error_set(err, -r, "cannot run ssh-keygen: %s", strerror(r));
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		return fl_error_set(err, -EIO, "ssh-keygen failed");
	return 0;
}

int fl_rehearse(FlEngine *e, const FlRehearsalSpec *spec, struct json_object **ret, FlError *err)
{
	_cleanup_(json_object_putp) struct json_object *rec = NULL, *crec = NULL, *snap = NULL,
						       *pb = NULL, *tdiff = NULL, *out = NULL;
	_cleanup_(clone_destroy) Clone c = {.e = e, .keep = spec->keep_clone};
	_cleanup_free_ char *yaml = NULL;
	const char *dir = spec->work_dir;
	char buf[8192], path[4200];
	size_t len;
	int r;
	uint64_t t0 = now_ms(), t;

	if (!spec->sandbox_id || !spec->diff_json || !spec->playbook || !dir)
		return fl_error_set(err, -EINVAL, "rehearsal needs a sandbox, its diff, a playbook and a work dir");
	out = json_object_new_object();
	struct json_object *stages = json_object_new_object();
	json_object_object_add(out, "stages_ms", stages);

	/* work dir: playbook (hosts: all, rendered from the stored tasks) and blobs */
	snprintf(path, sizeof(path), "%s/files", dir);
	if ((mkdir(dir, 0700) < 0 && errno != EEXIST) || (mkdir(path, 0700) < 0 && errno != EEXIST))
		return fl_error_set(err, -errno, "%s: %m", dir);
	/* a copy of the play aimed at the inventory's one host (hosts: all) */
	pb = json_object_new_object();
	json_object_object_foreach(spec->playbook, pk, pv)
	{
		if (strcmp(pk, "hosts"))
			json_object_object_add(pb, pk, json_object_get(pv));
	}
	json_object_object_add(pb, "hosts", json_object_new_string("all"));
	if ((r = fl_ansible_yaml(pb, &yaml, &len, err)) < 0)
		return r;
	if ((r = write_file(dir, "playbook.yml", yaml, len, 0600)) < 0)
		return fl_error_set(err, r, "%s/playbook.yml: %s", dir, strerror(-r));
	for (size_t i = 0; spec->files && i < json_object_array_length(spec->files); i++) {
		struct json_object *f = json_object_array_get_idx(spec->files, i);
		const char *src = jstr(f, "src"), *b64 = jstr(f, "content_b64");
		if (!src || !b64 || strncmp(src, "files/", 6) || strchr(src + 6, '/') || strstr(src, ".."))
			continue; /* missing blobs show up in the residual */
		_cleanup_free_ char *data = NULL;
		size_t dl;
		if (fl_base64_decode(b64, &data, &dl) < 0 || (r = write_file(dir, src, data, dl, 0600)) < 0)
			return fl_error_set(err, -EIO, "cannot write %s/%s", dir, src);
	}
	if ((r = keygen(dir, err)) < 0)
		return r;

	/* a fresh clone of the same template (same image and shape) */
	stage(spec, "clone");
	if ((r = fl_engine_get(e, spec->sandbox_id, &rec, err)) < 0)
		return r;
	FlSandboxSpec ss = {
		.base_image = jstr(rec, "base_image"),
		.agent_id = "fluid-rehearsal",
		.vcpus = (unsigned)json_object_get_int(jget(rec, "vcpus")),
		.memory_mb = (unsigned)json_object_get_int(jget(rec, "memory_mb")),
		.ttl_seconds = 4 * 3600, /* a leaked clone does not live forever */
		.network = jstr(rec, "network"),
	};
	if (!ss.base_image)
		return fl_error_set(err, -EINVAL, "sandbox %s has no base image", spec->sandbox_id);
	if ((r = fl_engine_create(e, &ss, &crec, err)) < 0)
		return r;
	snprintf(c.id, sizeof(c.id), "%s", jstr(crec, "id") ? jstr(crec, "id") : "");
	json_object_object_add(out, "clone_id", json_object_new_string(c.id));
	if ((r = fl_engine_snapshot(e, c.id, "base", false, &snap, err)) < 0)
		return r;
	json_object_object_add(stages, "clone", json_object_new_int64((int64_t)((t = now_ms()) - t0)));

	/* access through the engine only: key in, host key out, pinned */
	stage(spec, "key");
	snprintf(path, sizeof(path), "%s/key.pub", dir);
	{
		_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
		ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
		if (n <= 0)
			return fl_error_set(err, -EIO, "cannot read %s", path);
		if ((r = guest_write(e, c.id, "/root/.ssh/authorized_keys", buf, (size_t)n, 0600, err)) < 0)
			return r;
	}
	if ((r = guest_read(e, c.id, "/etc/ssh/ssh_host_ed25519_key.pub", buf, sizeof(buf) - 1, &len,
			    err)) < 0)
		return fl_error_set(err, r, "reading the clone's host key: %s", err ? err->msg : "");
	buf[len] = 0;
	char *sp = strchr(buf, ' ');
	sp = sp ? strchr(sp + 1, ' ') : NULL;
	if (strncmp(buf, "ssh-ed25519 ", 12) || !sp)
		return fl_error_set(err, -EPROTO, "the clone's host key is not an ed25519 public key");
	*sp = 0;
	int port = json_object_get_int(jget(crec, "ssh_port"));
	if (port <= 0) {
		json_object_put(crec);
		crec = NULL;
		if ((r = fl_engine_get(e, c.id, &crec, err)) < 0)
			return r;
		port = json_object_get_int(jget(crec, "ssh_port"));
	}
	if (port <= 0 || port > 65535)
		return fl_error_set(err, -EPROTO, "the clone has no SSH port forward");
	char line[9000];
	int ll = snprintf(line, sizeof(line), "[127.0.0.1]:%d %s\n", port, buf);
	if ((r = write_file(dir, "known_hosts", line, (size_t)ll, 0600)) < 0)
		return fl_error_set(err, r, "known_hosts: %s", strerror(-r));
	ll = snprintf(line, sizeof(line),
		      "target ansible_host=127.0.0.1 ansible_port=%d ansible_user=root "
		      "ansible_python_interpreter=/usr/bin/python3\n",
		      port);
	if ((r = write_file(dir, "inventory", line, (size_t)ll, 0600)) < 0)
		return fl_error_set(err, r, "inventory: %s", strerror(-r));
	/*
	 * One SSH connection for the whole run (a control master in a short
	 * private directory: socket paths are limited to 108 bytes) and
	 * pipelining: under TCG every new connection costs seconds.
	 */
	char cm[] = "/tmp/fl-ssh-XXXXXX";
	if (!mkdtemp(cm))
		return fl_error_set(err, -errno, "mkdtemp: %m");
	snprintf(c.cm_dir, sizeof(c.cm_dir), "%s", cm);
	ll = snprintf(line, sizeof(line),
		      "[defaults]\nhost_key_checking = True\nstdout_callback = json\ntimeout = 120\n"
		      "retry_files_enabled = False\ninterpreter_python = /usr/bin/python3\n"
		      "[ssh_connection]\npipelining = True\n"
		      "ssh_args = -o UserKnownHostsFile=%s/known_hosts "
		      "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o ControlMaster=auto "
		      "-o ControlPersist=30s -o ControlPath=%s/%%C -o ConnectTimeout=120\n",
		      dir, cm);
	if ((r = write_file(dir, "ansible.cfg", line, (size_t)ll, 0600)) < 0)
		return fl_error_set(err, r, "ansible.cfg: %s", strerror(-r));
	json_object_object_add(stages, "key", json_object_new_int64((int64_t)(now_ms() - t)));

	/* twice: the second run must change nothing */
	struct json_object *runs = json_object_new_array();
	json_object_object_add(out, "runs", runs);
	bool runs_ok = true, idempotent = false;
	for (int n = 1; n <= 2; n++) {
		stage(spec, n == 1 ? "apply" : "reapply");
		t = now_ms();
		int status = -1;
		if ((r = run_playbook(spec, dir, n, &status, err)) < 0)
			return r;
		struct json_object *s = run_summary(dir, n, status);
		json_object_array_add(runs, s);
		json_object_object_add(stages, n == 1 ? "apply" : "reapply",
				       json_object_new_int64((int64_t)(now_ms() - t)));
		int unreach = json_object_get_int(jget(s, "unreachable"));
		if (unreach > 0 || json_object_get_int(jget(s, "ok")) < 0)
			return fl_error_set(err, -EHOSTUNREACH,
					    "ansible-playbook could not reach the clone (see %s/run%d.err)",
					    dir, n);
		if (status != 0 || json_object_get_int(jget(s, "failures")) != 0) {
			runs_ok = false;
			break;
		}
		if (n == 2)
			idempotent = json_object_get_int(jget(s, "changed")) == 0;
	}
	json_object_object_add(out, "idempotent", json_object_new_boolean(idempotent));

	/* the clone's own trusted diff, then the diff of diffs */
	stage(spec, "snapshot");
	t = now_ms();
	json_object_put(snap);
	snap = NULL;
	if ((r = fl_engine_snapshot(e, c.id, "applied", false, &snap, err)) < 0)
		return r;
	stage(spec, "diff");
	size_t ni = 0;
	while (fl_rehearsal_ignore[ni])
		ni++;
	FlDiffSpec ds = {.sandbox_id = c.id, .from = "base", .to = "applied",
			 .ignore = fl_rehearsal_ignore, .n_ignore = ni};
	if ((r = fl_diff_compute(e, &ds, &tdiff, NULL, err)) < 0)
		return r;
	json_object_object_add(stages, "diff", json_object_new_int64((int64_t)(now_ms() - t)));
	stage(spec, "residual");
	struct json_object *residual =
		fl_rehearsal_residual(spec->diff_json, tdiff, jget(spec->playbook, "skipped"));
	json_object_object_add(out, "residual", residual);
	json_object_object_add(out, "target_diff", json_object_get(tdiff));
	json_object_object_add(out, "verified",
			       json_object_new_boolean(runs_ok && idempotent &&
						       json_object_array_length(residual) == 0));
	json_object_object_add(stages, "total", json_object_new_int64((int64_t)(now_ms() - t0)));
	*ret = TAKE_PTR(out);
	return 0;
}
