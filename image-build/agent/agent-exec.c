// SPDX-License-Identifier: MIT
/*
 * fluid-agent: running commands. Foreground execs stream stdout/stderr to
 * the host under its credit and take stdin from it; ptys do the same on a
 * pseudo-terminal; background processes keep the tail of their output in a
 * ring and survive host reconnects.
 *
 * DESIGN: commands are started with vfork+execve directly (no shell unless
 * the host asks for one): under TCG each fork+exec of a shell costs 80-220
 * ms. The child runs in its own session, so a timeout or cancel kills the
 * whole process group with one kill(-pgid). User switching reads
 * /etc/passwd and /etc/group itself (no NSS in a static binary). The vfork
 * child only makes raw system calls and reports a failure through a
 * variable it shares with the suspended parent.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "agent.h"

#define MAX_ARGS 4096
#define MAX_ENV 1024
#define EXIT_GRACE_MS 1000
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

typedef struct Spawn {
	char **argv;
	char **envp;
	char path[4096];
	const char *cwd;
	AgUser user;
	int fds[3];
	bool pty;
} Spawn;

static void strv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

static void spawn_clear(Spawn *s)
{
	strv_free(s->argv);
	strv_free(s->envp);
	s->argv = s->envp = NULL;
}

static int env_set(char **envp, size_t *n, const char *kv)
{
	size_t klen = strcspn(kv, "=");
	if (klen == 0 || kv[klen] != '=')
		return -EINVAL;
	for (size_t i = 0; i < *n; i++) {
		if (!strncmp(envp[i], kv, klen + 1)) {
			char *d = strdup(kv);
			if (!d)
				return -ENOMEM;
			free(envp[i]);
			envp[i] = d;
			return 0;
		}
	}
	if (*n >= MAX_ENV)
		return -E2BIG;
	envp[*n] = strdup(kv);
	if (!envp[*n])
		return -ENOMEM;
	(*n)++;
	return 0;
}

static int env_setf(char **envp, size_t *n, const char *k, const char *v)
{
	char *buf;
	if (asprintf(&buf, "%s=%s", k, v) < 0)
		return -ENOMEM;
	int r = env_set(envp, n, buf);
	free(buf);
	return r;
}

static const char *env_get(char **envp, const char *k)
{
	size_t l = strlen(k);
	for (char **p = envp; *p; p++)
		if (!strncmp(*p, k, l) && (*p)[l] == '=')
			return *p + l + 1;
	return NULL;
}

static int resolve_path(Spawn *s)
{
	const char *a0 = s->argv[0];
	if (strchr(a0, '/')) {
		if (strlen(a0) >= sizeof(s->path))
			return -ENAMETOOLONG;
		strcpy(s->path, a0);
		return 0;
	}
	const char *path = env_get(s->envp, "PATH");
	if (!path)
		path = DEFAULT_PATH;
	int r = -ENOENT;
	while (*path) {
		size_t l = strcspn(path, ":");
		char cand[4096];
		int m = snprintf(cand, sizeof(cand), "%.*s/%s", (int)(l ? l : 1), l ? path : ".", a0);
		if (m > 0 && (size_t)m < sizeof(cand)) {
			struct stat st;
			if (stat(cand, &st) == 0 && S_ISREG(st.st_mode)) {
				if (access(cand, X_OK) == 0) {
					strcpy(s->path, cand);
					return 0;
				}
				r = -EACCES;
			}
		}
		path += l;
		if (*path == ':')
			path++;
	}
	return r;
}

/* Parses argv/shell/env/cwd/user of a request into s. */
static int spawn_prepare(Spawn *s, struct json_object *req, bool pty, char *err, size_t errsz)
{
	struct json_object *a, *e;
	const char *shell = agent_json_get_str(req, "shell");
	size_t n = 0;
	if (json_object_object_get_ex(req, "argv", &a) && json_object_is_type(a, json_type_array)) {
		n = json_object_array_length(a);
		if (n == 0 || n > MAX_ARGS) {
			snprintf(err, errsz, "argv: 1..%d strings", MAX_ARGS);
			return -EINVAL;
		}
		s->argv = calloc(n + 1, sizeof(char *));
		if (!s->argv)
			return -ENOMEM;
		for (size_t i = 0; i < n; i++) {
			struct json_object *x = json_object_array_get_idx(a, i);
			if (!json_object_is_type(x, json_type_string)) {
				snprintf(err, errsz, "argv[%zu] is not a string", i);
				return -EINVAL;
			}
			s->argv[i] = strdup(json_object_get_string(x));
			if (!s->argv[i])
				return -ENOMEM;
		}
	} else if (shell) {
		s->argv = calloc(4, sizeof(char *));
		if (!s->argv)
			return -ENOMEM;
		s->argv[0] = strdup("/bin/sh");
		s->argv[1] = strdup("-c");
		s->argv[2] = strdup(shell);
		if (!s->argv[0] || !s->argv[1] || !s->argv[2])
			return -ENOMEM;
	} else {
		snprintf(err, errsz, "need argv or shell");
		return -EINVAL;
	}

	const char *user = agent_json_get_str(req, "user");
	int r = sys_lookup_user(user ? user : "0", &s->user);
	if (r < 0) {
		if (user) {
			snprintf(err, errsz, "user '%s'", user);
			return r;
		}
		s->user = (AgUser){.uid = 0, .gid = 0, .name = "root", .home = "/root", .shell = "/bin/sh"};
	}
	s->envp = calloc(MAX_ENV + 1, sizeof(char *));
	if (!s->envp)
		return -ENOMEM;
	size_t ne = 0;
	env_setf(s->envp, &ne, "PATH", DEFAULT_PATH);
	env_setf(s->envp, &ne, "HOME", s->user.home);
	env_setf(s->envp, &ne, "USER", s->user.name);
	env_setf(s->envp, &ne, "LOGNAME", s->user.name);
	env_setf(s->envp, &ne, "SHELL", s->user.shell[0] ? s->user.shell : "/bin/sh");
	env_setf(s->envp, &ne, "LANG", "C.UTF-8");
	if (pty)
		env_setf(s->envp, &ne, "TERM", "xterm-256color");
	if (json_object_object_get_ex(req, "env", &e)) {
		if (json_object_is_type(e, json_type_array)) {
			size_t m = json_object_array_length(e);
			for (size_t i = 0; i < m; i++) {
				struct json_object *x = json_object_array_get_idx(e, i);
				if (!json_object_is_type(x, json_type_string) ||
				    (r = env_set(s->envp, &ne, json_object_get_string(x))) < 0) {
					snprintf(err, errsz, "env[%zu]: want NAME=value", i);
					return -EINVAL;
				}
			}
		} else if (json_object_is_type(e, json_type_object)) {
			json_object_object_foreach(e, k, v)
			{
				if (!json_object_is_type(v, json_type_string) || !k[0] || strchr(k, '=') ||
				    env_setf(s->envp, &ne, k, json_object_get_string(v)) < 0) {
					snprintf(err, errsz, "env: bad entry '%s'", k);
					return -EINVAL;
				}
			}
		} else {
			snprintf(err, errsz, "env: want an array or object");
			return -EINVAL;
		}
	}
	s->cwd = agent_json_get_str(req, "cwd");
	if (!s->cwd) {
		struct stat st;
		s->cwd = stat(s->user.home, &st) == 0 && S_ISDIR(st.st_mode) ? s->user.home : "/";
	}
	r = resolve_path(s);
	if (r < 0) {
		snprintf(err, errsz, "%s", s->argv[0]);
		return r;
	}
	return 0;
}

/* vfork + execve. fds[0..2] become the child's stdio. */
static int spawn_run(Spawn *s, pid_t *ret, char *err, size_t errsz)
{
	volatile int child_errno = 0;
	volatile int child_stage = 0;
	sigset_t empty;
	sigemptyset(&empty);
	pid_t pid = vfork();
	if (pid == 0) {
		setsid();
		for (int i = 0; i < 3; i++) {
			if (s->fds[i] == i)
				fcntl(i, F_SETFD, 0);
			else if (dup2(s->fds[i], i) < 0)
				goto fail;
		}
		if (s->pty && ioctl(0, TIOCSCTTY, 0) < 0) {
			child_stage = 4;
			goto fail;
		}
		if (s->user.uid != 0 || s->user.gid != 0 || s->user.ngroups) {
			child_stage = 1;
			if (setgroups((size_t)s->user.ngroups, s->user.groups) < 0 ||
			    setresgid(s->user.gid, s->user.gid, s->user.gid) < 0 ||
			    setresuid(s->user.uid, s->user.uid, s->user.uid) < 0)
				goto fail;
		}
		child_stage = 2;
		if (chdir(s->cwd) < 0)
			goto fail;
		signal(SIGPIPE, SIG_DFL);
		sigprocmask(SIG_SETMASK, &empty, NULL);
		child_stage = 3;
		execve(s->path, s->argv, s->envp);
	fail:
		child_errno = errno ? errno : EIO;
		_exit(127);
	}
	if (pid < 0) {
		snprintf(err, errsz, "vfork");
		return -errno;
	}
	if (child_errno) {
		int st;
		waitpid(pid, &st, 0);
		static const char *const stage[] = {"dup2", "setuid", "chdir", "execve", "controlling tty"};
		snprintf(err, errsz, "%s %s", stage[child_stage],
			 child_stage == 2 ? s->cwd : s->path);
		return -child_errno;
	}
	*ret = pid;
	return 0;
}

static void set_nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static int bg_start(Agent *ag, uint64_t id, Spawn *s, char *err, size_t errsz);

void exec_op_start(Agent *ag, uint64_t id, struct json_object *req, bool pty)
{
	Spawn s = {.fds = {-1, -1, -1}};
	char err[512] = "";
	int r = spawn_prepare(&s, req, pty, err, sizeof(err));
	if (r < 0) {
		ag_reply_err(ag, id, r, "exec: %s", err);
		spawn_clear(&s);
		return;
	}
	if (agent_json_get_bool(req, "background") && !pty) {
		r = bg_start(ag, id, &s, err, sizeof(err));
		if (r < 0)
			ag_reply_err(ag, id, r, "exec: %s", err);
		spawn_clear(&s);
		return;
	}
	Op *op = ag_op_new(ag, id, pty ? OP_PTY : OP_EXEC);
	if (!op) {
		ag_reply_err(ag, id, -EAGAIN, "exec: too many operations");
		spawn_clear(&s);
		return;
	}
	int child[3] = {-1, -1, -1};
	if (pty) {
		int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
		char name[128];
		if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0 || ptsname_r(m, name, sizeof(name)) != 0) {
			r = -errno;
			if (m >= 0)
				close(m);
			snprintf(err, sizeof(err), "pty");
			goto fail;
		}
		int sl = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (sl < 0) {
			r = -errno;
			close(m);
			snprintf(err, sizeof(err), "open %s", name);
			goto fail;
		}
		uint64_t rows = 24, cols = 80;
		agent_json_get_u64(req, "rows", &rows);
		agent_json_get_u64(req, "cols", &cols);
		struct winsize ws = {.ws_row = (unsigned short)(rows && rows < 1000 ? rows : 24),
				     .ws_col = (unsigned short)(cols && cols < 1000 ? cols : 80)};
		ioctl(m, TIOCSWINSZ, &ws);
		set_nonblock(m);
		op->out_fd[1] = m;
		op->in_fd = m;
		op->in_wanted = true;
		op->out_eof[1] = false;
		child[0] = child[1] = child[2] = sl;
		s.pty = true;
	} else {
		int po[2], pe[2];
		if (pipe2(po, O_CLOEXEC) < 0) {
			r = -errno;
			goto fail;
		}
		op->out_fd[1] = po[0];
		child[1] = po[1];
		if (pipe2(pe, O_CLOEXEC) < 0) {
			r = -errno;
			goto fail;
		}
		op->out_fd[2] = pe[0];
		child[2] = pe[1];
		op->out_eof[1] = op->out_eof[2] = false;
		if (agent_json_get_bool(req, "stdin")) {
			int pi[2];
			if (pipe2(pi, O_CLOEXEC) < 0) {
				r = -errno;
				goto fail;
			}
			child[0] = pi[0];
			op->in_fd = pi[1];
			op->in_wanted = true;
		} else {
			child[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
			if (child[0] < 0) {
				r = -errno;
				goto fail;
			}
		}
		set_nonblock(op->out_fd[1]);
		set_nonblock(op->out_fd[2]);
		if (op->in_fd >= 0)
			set_nonblock(op->in_fd);
	}
	memcpy(s.fds, child, sizeof(child));
	r = spawn_run(&s, &op->pid, err, sizeof(err));
	if (pty) {
		close_fd(&child[0]);
	} else {
		for (int i = 0; i < 3; i++)
			close_fd(&child[i]);
	}
	if (r < 0)
		goto fail_closed;
	uint64_t t = 0;
	agent_json_get_u64(req, "timeout_ms", &t);
	if (t)
		op->deadline_ms = op->start_ms + t;
	struct json_object *ev = json_object_new_object();
	json_object_object_add(ev, "pid", json_object_new_int(op->pid));
	ag_event(ag, id, "started", ev);
	spawn_clear(&s);
	return;
fail:
	if (pty)
		close_fd(&child[0]);
	else
		for (int i = 0; i < 3; i++)
			close_fd(&child[i]);
fail_closed:
	ag_reply_err(ag, id, r, "exec: %s", err[0] ? err : "setup");
	spawn_clear(&s);
	ag_op_finish(op);
}

int exec_internal(Agent *ag, uint64_t id, char **argv, unsigned timeout_ms, struct json_object *extra)
{
	Spawn s = {.fds = {-1, -1, -1}};
	char err[256];
	int r;
	size_t n = 0;
	while (argv[n])
		n++;
	s.argv = calloc(n + 1, sizeof(char *));
	s.envp = calloc(3, sizeof(char *));
	if (!s.argv || !s.envp) {
		spawn_clear(&s);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		s.argv[i] = strdup(argv[i]);
	s.envp[0] = strdup("PATH=" DEFAULT_PATH);
	s.cwd = "/";
	r = resolve_path(&s);
	if (r < 0) {
		spawn_clear(&s);
		return r;
	}
	Op *op = ag_op_new(ag, id, OP_EXEC);
	if (!op) {
		spawn_clear(&s);
		return -EAGAIN;
	}
	op->internal = true;
	int po[2];
	int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (nul < 0 || pipe2(po, O_CLOEXEC) < 0) {
		r = -errno;
		close_fd(&nul);
		spawn_clear(&s);
		ag_op_finish(op);
		return r;
	}
	s.fds[0] = nul;
	s.fds[1] = s.fds[2] = po[1];
	op->out_fd[1] = po[0];
	op->out_eof[1] = false;
	set_nonblock(po[0]);
	r = spawn_run(&s, &op->pid, err, sizeof(err));
	close(po[1]);
	close(nul);
	spawn_clear(&s);
	if (r < 0) {
		ag_op_finish(op);
		return r;
	}
	if (timeout_ms)
		op->deadline_ms = op->start_ms + timeout_ms;
	op->extra = extra;
	return 0;
}

static void exec_finish(Op *op)
{
	Agent *ag = op->ag;
	struct json_object *o = op->extra ? json_object_get(op->extra) : json_object_new_object();
	struct json_object *res = o;
	if (op->internal) {
		/* identity's DHCP run: its status goes into the identity reply */
		res = json_object_new_object();
		json_object_object_add(o, "dhcp_result", res);
	}
	if (WIFEXITED(op->status))
		json_object_object_add(res, "exit_code", json_object_new_int(WEXITSTATUS(op->status)));
	else if (WIFSIGNALED(op->status))
		json_object_object_add(res, "signal", json_object_new_int(WTERMSIG(op->status)));
	json_object_object_add(res, "timed_out", json_object_new_boolean(op->timed_out));
	json_object_object_add(res, "pid", json_object_new_int(op->pid));
	json_object_object_add(res, "duration_ms", json_object_new_int64((int64_t)(ag_now_ms() - op->start_ms)));
	json_object_object_add(res, "stdout_bytes", json_object_new_int64((int64_t)op->sent[1]));
	json_object_object_add(res, "stderr_bytes", json_object_new_int64((int64_t)op->sent[2]));
	if (op->orphan)
		json_object_put(o);
	else
		ag_reply(ag, op->id, o);
	ag_op_finish(op);
}

void exec_op_progress(Op *op)
{
	if (op->exited && op->out_eof[1] && op->out_eof[2])
		exec_finish(op);
}

void exec_on_child(Agent *ag, pid_t pid, int status)
{
	for (Op *op = ag_ops(ag); op; op = op->next) {
		if ((op->kind == OP_EXEC || op->kind == OP_PTY) && op->pid == pid && !op->exited) {
			op->exited = true;
			op->status = status;
			op->grace_ms = ag_now_ms() + EXIT_GRACE_MS;
			/* stdin has no reader any more */
			if (op->kind == OP_EXEC && op->in_fd >= 0) {
				close(op->in_fd);
				op->in_fd = -1;
				agent_buf_clear(&op->in);
			}
			exec_op_progress(op);
			return;
		}
	}
	for (Bg *b = *ag_bg_list(ag); b; b = b->next) {
		if (b->pid == pid && !b->exited) {
			b->exited = true;
			b->status = status;
			b->end_ms = ag_now_ms();
			return;
		}
	}
}

void exec_op_timer(Op *op, uint64_t now)
{
	if (op->deadline_ms && !op->exited && now >= op->deadline_ms) {
		op->timed_out = !op->closing;
		op->deadline_ms = 0;
		kill(-op->pid, SIGKILL);
		kill(op->pid, SIGKILL);
	}
	if (op->grace_ms && now >= op->grace_ms) {
		/* The leader is gone but something (a background child) still
		 * holds the output open. Stop waiting, unless we are only held
		 * up by the host's flow control. */
		bool blocked = false;
		for (int k = 1; k < 3; k++)
			if (op->out_fd[k] >= 0 && op->credit[k] == 0)
				blocked = true;
		if (blocked) {
			op->grace_ms = now + EXIT_GRACE_MS;
			return;
		}
		op->grace_ms = 0;
		for (int k = 1; k < 3; k++) {
			if (op->out_fd[k] >= 0) {
				/* take what is already in the pipe */
				uint8_t buf[AGENT_CHUNK];
				ssize_t n = read(op->out_fd[k], buf,
						 op->credit[k] < sizeof(buf) ? (size_t)op->credit[k] : sizeof(buf));
				if (n > 0) {
					op->sent[k] += (uint64_t)n;
					if (!op->internal) {
						op->credit[k] -= (uint64_t)n;
						ag_send_data(op->ag, op->id, k, buf, (size_t)n);
					}
				}
				if (op->in_fd == op->out_fd[k])
					op->in_fd = -1;
				close(op->out_fd[k]);
				op->out_fd[k] = -1;
				op->out_eof[k] = true;
				if (!op->internal)
					ag_send_data(op->ag, op->id, k, NULL, 0);
			}
		}
		exec_op_progress(op);
	}
}

void exec_op_cancel(Op *op, bool disconnect)
{
	(void)disconnect;
	if (!op->exited) {
		kill(-op->pid, op->kind == OP_PTY ? SIGHUP : SIGKILL);
		kill(-op->pid, SIGKILL);
	}
	ag_op_finish(op);
}

int exec_op_close(Op *op)
{
	if (op->kind != OP_PTY)
		return exec_op_signal(op, SIGKILL);
	/* like a terminal going away: SIGHUP, then SIGKILL for the stubborn */
	op->closing = true;
	op->deadline_ms = ag_now_ms() + 2000;
	return exec_op_signal(op, SIGHUP);
}

int exec_op_signal(Op *op, int sig)
{
	if (kill(-op->pid, sig) < 0) {
		if (errno == ESRCH && !op->exited && kill(op->pid, sig) == 0)
			return 0;
		return errno == ESRCH && op->exited ? 0 : -errno;
	}
	return 0;
}

int exec_pty_resize(Op *op, unsigned rows, unsigned cols)
{
	if (rows == 0 || cols == 0 || rows > 10000 || cols > 10000)
		return -EINVAL;
	if (op->out_fd[1] < 0)
		return -EPIPE;
	struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
	if (ioctl(op->out_fd[1], TIOCSWINSZ, &ws) < 0)
		return -errno;
	return 0;
}

/* ---- background processes ---------------------------------------------- */

static void bg_free(Bg *b)
{
	for (int k = 1; k < 3; k++) {
		if (b->fd[k] >= 0)
			close(b->fd[k]);
		free(b->ring[k]);
	}
	free(b->cmd);
	free(b);
}

static unsigned bg_count(Agent *ag)
{
	unsigned n = 0;
	for (Bg *b = *ag_bg_list(ag); b; b = b->next)
		n++;
	return n;
}

/* Makes room by forgetting the oldest finished process. */
static bool bg_evict(Agent *ag)
{
	Bg **victim = NULL;
	for (Bg **p = ag_bg_list(ag); *p; p = &(*p)->next)
		if ((*p)->exited)
			victim = p; /* list is newest first: the last one is oldest */
	if (!victim)
		return false;
	Bg *b = *victim;
	*victim = b->next;
	bg_free(b);
	return true;
}

static int bg_start(Agent *ag, uint64_t id, Spawn *s, char *err, size_t errsz)
{
	if (bg_count(ag) >= AG_MAX_BG && !bg_evict(ag)) {
		snprintf(err, errsz, "too many background processes");
		return -EAGAIN;
	}
	Bg *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->fd[0] = b->fd[1] = b->fd[2] = -1;
	int po[2] = {-1, -1}, pe[2] = {-1, -1};
	int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
	int r = 0;
	b->ring[1] = malloc(AG_BG_RING);
	b->ring[2] = malloc(AG_BG_RING);
	size_t cl = 0;
	for (char **a = s->argv; *a; a++)
		cl += strlen(*a) + 1;
	b->cmd = malloc(cl + 1);
	if (nul < 0 || pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0 || !b->ring[1] ||
	    !b->ring[2] || !b->cmd) {
		r = errno ? -errno : -ENOMEM;
		snprintf(err, errsz, "setup");
		goto out;
	}
	b->cmd[0] = 0;
	for (char **a = s->argv; *a; a++) {
		if (a != s->argv)
			strcat(b->cmd, " ");
		strcat(b->cmd, *a);
	}
	s->fds[0] = nul;
	s->fds[1] = po[1];
	s->fds[2] = pe[1];
	r = spawn_run(s, &b->pid, err, errsz);
	if (r < 0)
		goto out;
	b->fd[1] = po[0];
	b->fd[2] = pe[0];
	po[0] = pe[0] = -1;
	set_nonblock(b->fd[1]);
	set_nonblock(b->fd[2]);
	b->id = ag_next_bg_id(ag);
	b->start_ms = ag_now_ms();
	Bg **head = ag_bg_list(ag);
	b->next = *head;
	*head = b;
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "bg", json_object_new_int64((int64_t)b->id));
	json_object_object_add(o, "pid", json_object_new_int(b->pid));
	ag_reply(ag, id, o);
	b = NULL;
out:
	close_fd(&nul);
	close_fd(&po[0]);
	close_fd(&po[1]);
	close_fd(&pe[0]);
	close_fd(&pe[1]);
	if (b)
		bg_free(b);
	return r;
}

void bg_read(Bg *b, int k)
{
	uint8_t buf[AGENT_CHUNK];
	ssize_t n = read(b->fd[k], buf, sizeof(buf));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		close(b->fd[k]);
		b->fd[k] = -1;
		return;
	}
	b->total[k] += (uint64_t)n;
	/* keep the tail in the ring */
	const uint8_t *p = buf;
	size_t len = (size_t)n;
	while (len) {
		size_t room = AG_BG_RING - b->ring_pos[k];
		size_t c = len < room ? len : room;
		memcpy(b->ring[k] + b->ring_pos[k], p, c);
		b->ring_pos[k] = (b->ring_pos[k] + c) % AG_BG_RING;
		if (b->ring_len[k] < AG_BG_RING)
			b->ring_len[k] = b->ring_len[k] + c > AG_BG_RING ? AG_BG_RING : b->ring_len[k] + c;
		p += c;
		len -= c;
	}
}

static Bg *bg_find(Agent *ag, struct json_object *req)
{
	uint64_t id;
	if (agent_json_get_u64(req, "bg", &id) < 0)
		return NULL;
	for (Bg *b = *ag_bg_list(ag); b; b = b->next)
		if (b->id == id)
			return b;
	return NULL;
}

static struct json_object *bg_json(Bg *b)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "bg", json_object_new_int64((int64_t)b->id));
	json_object_object_add(o, "pid", json_object_new_int(b->pid));
	json_object_object_add(o, "cmd", json_object_new_string(b->cmd));
	json_object_object_add(o, "running", json_object_new_boolean(!b->exited));
	uint64_t end = b->exited ? b->end_ms : ag_now_ms();
	json_object_object_add(o, "runtime_ms", json_object_new_int64((int64_t)(end - b->start_ms)));
	if (b->exited) {
		if (WIFEXITED(b->status))
			json_object_object_add(o, "exit_code", json_object_new_int(WEXITSTATUS(b->status)));
		else if (WIFSIGNALED(b->status))
			json_object_object_add(o, "signal", json_object_new_int(WTERMSIG(b->status)));
	}
	json_object_object_add(o, "stdout_bytes", json_object_new_int64((int64_t)b->total[1]));
	json_object_object_add(o, "stderr_bytes", json_object_new_int64((int64_t)b->total[2]));
	return o;
}

static void ring_send(Agent *ag, uint64_t id, Bg *b, int k)
{
	if (b->ring_len[k] < AG_BG_RING) {
		if (b->ring_len[k])
			ag_send_data(ag, id, k, b->ring[k], b->ring_len[k]);
	} else {
		size_t p = b->ring_pos[k];
		if (AG_BG_RING - p)
			ag_send_data(ag, id, k, b->ring[k] + p, AG_BG_RING - p);
		if (p)
			ag_send_data(ag, id, k, b->ring[k], p);
	}
	ag_send_data(ag, id, k, NULL, 0);
}

void bg_op(Agent *ag, uint64_t id, const char *op, struct json_object *req)
{
	if (!strcmp(op, "bg_list")) {
		struct json_object *a = json_object_new_array();
		for (Bg *b = *ag_bg_list(ag); b; b = b->next)
			json_object_array_add(a, bg_json(b));
		struct json_object *o = json_object_new_object();
		json_object_object_add(o, "processes", a);
		ag_reply(ag, id, o);
		return;
	}
	Bg *b = bg_find(ag, req);
	if (!b) {
		ag_reply_err(ag, id, -ESRCH, "%s: no such background process", op);
		return;
	}
	if (!strcmp(op, "bg_kill")) {
		int64_t sig = SIGTERM;
		if (agent_json_get_i64(req, "signal", &sig) == -EINVAL || sig < 1 || sig > 64) {
			ag_reply_err(ag, id, -EINVAL, "bg_kill: signal");
			return;
		}
		if (!b->exited && kill(-b->pid, (int)sig) < 0 && kill(b->pid, (int)sig) < 0) {
			ag_reply_err(ag, id, -errno, "bg_kill");
			return;
		}
		ag_reply(ag, id, NULL);
	} else if (!strcmp(op, "bg_wait")) {
		if (b->exited) {
			ag_reply(ag, id, bg_json(b));
			return;
		}
		Op *w = ag_op_new(ag, id, OP_BGWAIT);
		if (!w) {
			ag_reply_err(ag, id, -EAGAIN, "bg_wait: too many operations");
			return;
		}
		w->bg_target = b->id;
		uint64_t t = 0;
		agent_json_get_u64(req, "timeout_ms", &t);
		if (t)
			w->grace_ms = w->start_ms + t;
	} else if (!strcmp(op, "bg_output")) {
		ring_send(ag, id, b, 1);
		ring_send(ag, id, b, 2);
		ag_reply(ag, id, bg_json(b));
	} else if (!strcmp(op, "bg_remove")) {
		if (!b->exited) {
			ag_reply_err(ag, id, -EBUSY, "bg_remove: still running");
			return;
		}
		for (Bg **p = ag_bg_list(ag); *p; p = &(*p)->next)
			if (*p == b) {
				*p = b->next;
				break;
			}
		bg_free(b);
		ag_reply(ag, id, NULL);
	} else {
		ag_reply_err(ag, id, -EOPNOTSUPP, "unknown op '%s'", op);
	}
}

void bg_wait_check(Agent *ag)
{
	uint64_t now = ag_now_ms();
	for (Op *op = ag_ops(ag), *next; op; op = next) {
		next = op->next;
		if (op->kind != OP_BGWAIT)
			continue;
		Bg *b;
		for (b = *ag_bg_list(ag); b; b = b->next)
			if (b->id == op->bg_target)
				break;
		if (!b) {
			ag_reply_err(ag, op->id, -ESRCH, "bg_wait: process forgotten");
			ag_op_finish(op);
		} else if (b->exited) {
			ag_reply(ag, op->id, bg_json(b));
			ag_op_finish(op);
		} else if (op->grace_ms && now >= op->grace_ms) {
			ag_reply_err(ag, op->id, -ETIMEDOUT, "bg_wait");
			ag_op_finish(op);
		}
	}
}
