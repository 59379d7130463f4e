// SPDX-License-Identifier: MIT
/*
 * fluid-agent: file operations. Reads and writes are streamed in chunks
 * under the flow-control window, so files of any size move with bounded
 * memory; writes go to a temporary file in the target directory and are
 * renamed into place at the end (atomic replace), keeping an existing
 * file's mode and owner unless the host sets them.
 *
 * DESIGN: file I/O is synchronous in the loop (regular files do not block
 * for long), except that nothing here may touch a frozen filesystem: every
 * mutating operation fails with EBUSY while an fsfreeze is in force,
 * otherwise the agent itself would hang and could never thaw.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

#define LIST_MAX_ENTRIES 20000
#define LIST_MAX_BYTES (192u * 1024)

static const char *ftype(mode_t m)
{
	if (S_ISREG(m))
		return "file";
	if (S_ISDIR(m))
		return "dir";
	if (S_ISLNK(m))
		return "symlink";
	if (S_ISCHR(m))
		return "char";
	if (S_ISBLK(m))
		return "block";
	if (S_ISFIFO(m))
		return "fifo";
	if (S_ISSOCK(m))
		return "socket";
	return "unknown";
}

static struct json_object *stat_json(const struct stat *st)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "kind", json_object_new_string(ftype(st->st_mode)));
	json_object_object_add(o, "mode", json_object_new_int((int)(st->st_mode & 07777)));
	json_object_object_add(o, "size", json_object_new_int64((int64_t)st->st_size));
	json_object_object_add(o, "uid", json_object_new_int64(st->st_uid));
	json_object_object_add(o, "gid", json_object_new_int64(st->st_gid));
	json_object_object_add(o, "nlink", json_object_new_int64((int64_t)st->st_nlink));
	json_object_object_add(o, "mtime", json_object_new_int64((int64_t)st->st_mtim.tv_sec));
	json_object_object_add(o, "mtime_ns", json_object_new_int64((int64_t)st->st_mtim.tv_nsec));
	return o;
}

static const char *req_path(struct json_object *req, const char *key)
{
	const char *p = agent_json_get_str(req, key);
	if (!p || p[0] != '/' || strlen(p) >= PATH_MAX)
		return NULL;
	return p;
}

static int mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	if (strlen(path) >= sizeof(buf))
		return -ENAMETOOLONG;
	strcpy(buf, path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return -errno;
	struct stat st;
	if (stat(buf, &st) < 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)f;
	int r = flag == FTW_DP ? rmdir(p) : unlink(p);
	return r < 0 ? -1 : 0;
}

static int owner_of(struct json_object *req, int *uid, int *gid)
{
	const char *o = agent_json_get_str(req, "owner");
	const char *g = agent_json_get_str(req, "group");
	*uid = *gid = -1;
	if (o) {
		AgUser u;
		int r = sys_lookup_user(o, &u);
		if (r < 0)
			return r;
		*uid = (int)u.uid;
		*gid = (int)u.gid;
	}
	if (g) {
		gid_t gg;
		int r = sys_lookup_group(g, &gg);
		if (r < 0)
			return r;
		*gid = (int)gg;
	}
	return 0;
}

static void file_read_start(Agent *ag, uint64_t id, struct json_object *req)
{
	const char *path = req_path(req, "path");
	if (!path) {
		ag_reply_err(ag, id, -EINVAL, "file_read: need an absolute path");
		return;
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		ag_reply_err(ag, id, -errno, "open %s", path);
		return;
	}
	struct stat st;
	/* FIFOs and sockets could block the agent's loop: regular files and
	 * devices only. */
	if (fstat(fd, &st) < 0 || S_ISDIR(st.st_mode) || S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)) {
		int r = S_ISDIR(st.st_mode) ? -EISDIR : S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) ? -EINVAL : -errno;
		close(fd);
		ag_reply_err(ag, id, r, "file_read %s", path);
		return;
	}
	uint64_t off = 0;
	if (agent_json_get_u64(req, "offset", &off) == 0 && off && lseek(fd, (off_t)off, SEEK_SET) < 0) {
		int r = -errno;
		close(fd);
		ag_reply_err(ag, id, r, "seek %s", path);
		return;
	}
	Op *op = ag_op_new(ag, id, OP_FREAD);
	if (!op) {
		close(fd);
		ag_reply_err(ag, id, -EAGAIN, "file_read: too many operations");
		return;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	op->out_fd[1] = fd;
	op->out_eof[1] = false;
	uint64_t len = 0;
	if (agent_json_get_u64(req, "length", &len) == 0 && len)
		op->deadline_ms = 0, op->bg_target = len; /* bytes left to send */
	ag_event(ag, id, "stat", stat_json(&st));
}

void file_read_pump(Op *op)
{
	Agent *ag = op->ag;
	uint8_t buf[AGENT_CHUNK];
	while (op->out_fd[1] >= 0 && op->credit[1] > 0 && ag_outq_room(ag)) {
		size_t want = op->credit[1] < sizeof(buf) ? (size_t)op->credit[1] : sizeof(buf);
		if (op->bg_target && op->bg_target - op->sent[1] < want)
			want = (size_t)(op->bg_target - op->sent[1]);
		ssize_t n = want ? read(op->out_fd[1], buf, want) : 0;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ag_reply_err(ag, op->id, -errno, "read");
			ag_op_finish(op);
			return;
		}
		if (n == 0) {
			close(op->out_fd[1]);
			op->out_fd[1] = -1;
			ag_send_data(ag, op->id, 1, NULL, 0);
			struct json_object *o = json_object_new_object();
			json_object_object_add(o, "bytes", json_object_new_int64((int64_t)op->sent[1]));
			ag_reply(ag, op->id, o);
			ag_op_finish(op);
			return;
		}
		op->credit[1] -= (uint64_t)n;
		op->sent[1] += (uint64_t)n;
		ag_send_data(ag, op->id, 1, buf, (size_t)n);
	}
}

static void file_write_start(Agent *ag, uint64_t id, struct json_object *req)
{
	const char *path = req_path(req, "path");
	if (!path) {
		ag_reply_err(ag, id, -EINVAL, "file_write: need an absolute path");
		return;
	}
	int uid, gid, r;
	if ((r = owner_of(req, &uid, &gid)) < 0) {
		ag_reply_err(ag, id, r, "file_write: owner/group");
		return;
	}
	int64_t mode = -1;
	if (agent_json_get_i64(req, "mode", &mode) == 0 && (mode < 0 || mode > 07777)) {
		ag_reply_err(ag, id, -EINVAL, "file_write: mode");
		return;
	}
	if (agent_json_get_bool(req, "mkdirs")) {
		char dir[PATH_MAX];
		strcpy(dir, path);
		char *sl = strrchr(dir, '/');
		if (sl && sl != dir) {
			*sl = 0;
			if ((r = mkdir_p(dir, 0755)) < 0) {
				ag_reply_err(ag, id, r, "mkdir %s", dir);
				return;
			}
		}
	}
	Op *op = ag_op_new(ag, id, OP_FWRITE);
	if (!op) {
		ag_reply_err(ag, id, -EAGAIN, "file_write: too many operations");
		return;
	}
	op->path = strdup(path);
	op->mode = (int)mode;
	op->uid = uid;
	op->gid = gid;
	op->fsync = agent_json_get_bool(req, "fsync");
	op->in_wanted = true;
	struct stat st;
	bool exists = stat(path, &st) == 0;
	bool atomic = exists ? S_ISREG(st.st_mode) : true;
	if (agent_json_get_bool(req, "append"))
		atomic = false;
	if (atomic) {
		size_t l = strlen(path) + 32;
		op->tmp_path = malloc(l);
		if (!op->path || !op->tmp_path) {
			ag_reply_err(ag, id, -ENOMEM, "file_write");
			ag_op_finish(op);
			return;
		}
		snprintf(op->tmp_path, l, "%s.fluid-XXXXXX", path);
		op->in_fd = mkostemp(op->tmp_path, O_CLOEXEC);
		if (op->in_fd < 0) {
			r = -errno;
			free(op->tmp_path);
			op->tmp_path = NULL;
			ag_reply_err(ag, id, r, "create %s", path);
			ag_op_finish(op);
			return;
		}
		/* keep the old file's mode/owner unless told otherwise */
		if (exists) {
			if (op->mode < 0)
				op->mode = (int)(st.st_mode & 07777);
			if (op->uid < 0)
				op->uid = (int)st.st_uid;
			if (op->gid < 0)
				op->gid = (int)st.st_gid;
		}
		if (op->mode < 0)
			op->mode = 0644;
	} else {
		/* O_NONBLOCK: opening a FIFO without a reader must not hang us */
		int fl = O_WRONLY | O_CLOEXEC | O_NOCTTY | O_CREAT | O_NONBLOCK;
		fl |= agent_json_get_bool(req, "append") ? O_APPEND : O_TRUNC;
		op->in_fd = open(path, fl, op->mode >= 0 ? op->mode : 0644);
		if (op->in_fd < 0) {
			ag_reply_err(ag, id, -errno, "open %s", path);
			ag_op_finish(op);
			return;
		}
		fcntl(op->in_fd, F_SETFL, fcntl(op->in_fd, F_GETFL) & ~O_NONBLOCK);
	}
	ag_event(ag, id, "ready", NULL);
}

int file_write_data(Op *op, const uint8_t *buf, size_t len)
{
	while (len) {
		ssize_t w = write(op->in_fd, buf, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			ag_reply_err(op->ag, op->id, -errno, "write %s", op->path);
			ag_op_finish(op);
			return -1;
		}
		buf += w;
		len -= (size_t)w;
		op->in_done += (uint64_t)w;
	}
	uint64_t pend = op->in_done - op->in_acked;
	if (pend >= ag_window(op->ag) / 4) {
		ag_send_ack(op->ag, op->id, 0, pend);
		op->in_acked = op->in_done;
	}
	return 0;
}

void file_write_eof(Op *op)
{
	Agent *ag = op->ag;
	int r = 0;
	const char *what = "write";
	if (op->fsync && fsync(op->in_fd) < 0)
		r = -errno, what = "fsync";
	if (!r && op->mode >= 0 && fchmod(op->in_fd, (mode_t)op->mode) < 0)
		r = -errno, what = "chmod";
	if (!r && (op->uid >= 0 || op->gid >= 0) && fchown(op->in_fd, (uid_t)op->uid, (gid_t)op->gid) < 0)
		r = -errno, what = "chown";
	/* chown clears setuid bits: apply the mode again */
	if (!r && op->mode >= 0 && (op->uid >= 0 || op->gid >= 0))
		fchmod(op->in_fd, (mode_t)op->mode);
	if (close(op->in_fd) < 0 && !r)
		r = -errno, what = "close";
	op->in_fd = -1;
	if (!r && op->tmp_path) {
		if (rename(op->tmp_path, op->path) < 0)
			r = -errno, what = "rename";
		else {
			free(op->tmp_path);
			op->tmp_path = NULL;
		}
	}
	if (r < 0) {
		ag_reply_err(ag, op->id, r, "%s %s", what, op->path);
	} else {
		struct json_object *o = json_object_new_object();
		json_object_object_add(o, "bytes", json_object_new_int64((int64_t)op->in_done));
		ag_reply(ag, op->id, o);
	}
	ag_op_finish(op);
}

void file_op_cancel(Op *op)
{
	ag_op_finish(op); /* removes a temporary file */
}

static void do_list(Agent *ag, uint64_t id, const char *path)
{
	_cleanup_(closedirp) DIR *d = opendir(path);
	if (!d) {
		ag_reply_err(ag, id, -errno, "list %s", path);
		return;
	}
	struct json_object *a = json_object_new_array();
	size_t bytes = 0, n = 0;
	bool truncated = false;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (n >= LIST_MAX_ENTRIES || bytes >= LIST_MAX_BYTES) {
			truncated = true;
			break;
		}
		struct stat st;
		struct json_object *e;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
			e = stat_json(&st);
		else
			e = json_object_new_object();
		json_object_object_add(e, "name", json_object_new_string(de->d_name));
		json_object_array_add(a, e);
		bytes += strlen(de->d_name) * 2 + 160;
		n++;
	}
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "entries", a);
	json_object_object_add(o, "truncated", json_object_new_boolean(truncated));
	ag_reply(ag, id, o);
}

void file_op(Agent *ag, uint64_t id, const char *op, struct json_object *req)
{
	bool mutating = strcmp(op, "file_read") && strcmp(op, "stat") && strcmp(op, "list");
	if (mutating && sys_frozen()) {
		ag_reply_err(ag, id, -EBUSY, "%s: filesystems are frozen", op);
		return;
	}
	if (!strcmp(op, "file_read")) {
		file_read_start(ag, id, req);
		return;
	}
	if (!strcmp(op, "file_write")) {
		file_write_start(ag, id, req);
		return;
	}
	const char *path = req_path(req, !strcmp(op, "rename") ? "from" : "path");
	if (!path) {
		ag_reply_err(ag, id, -EINVAL, "%s: need an absolute path", op);
		return;
	}
	if (!strcmp(op, "stat")) {
		struct stat st;
		int r = agent_json_get_bool(req, "follow") ? stat(path, &st) : lstat(path, &st);
		if (r < 0) {
			ag_reply_err(ag, id, -errno, "stat %s", path);
			return;
		}
		struct json_object *o = stat_json(&st);
		if (S_ISLNK(st.st_mode)) {
			char t[PATH_MAX];
			ssize_t n = readlink(path, t, sizeof(t) - 1);
			if (n >= 0) {
				t[n] = 0;
				json_object_object_add(o, "target", json_object_new_string(t));
			}
		}
		ag_reply(ag, id, o);
	} else if (!strcmp(op, "list")) {
		do_list(ag, id, path);
	} else if (!strcmp(op, "mkdir")) {
		int64_t mode = 0755;
		agent_json_get_i64(req, "mode", &mode);
		if (mode < 0 || mode > 07777) {
			ag_reply_err(ag, id, -EINVAL, "mkdir: mode");
			return;
		}
		int r = agent_json_get_bool(req, "parents") ? mkdir_p(path, (mode_t)mode)
							    : (mkdir(path, (mode_t)mode) < 0 ? -errno : 0);
		if (r < 0)
			ag_reply_err(ag, id, r, "mkdir %s", path);
		else
			ag_reply(ag, id, NULL);
	} else if (!strcmp(op, "remove")) {
		struct stat st;
		if (lstat(path, &st) < 0) {
			if (errno == ENOENT && agent_json_get_bool(req, "force"))
				ag_reply(ag, id, NULL);
			else
				ag_reply_err(ag, id, -errno, "remove %s", path);
			return;
		}
		int r;
		if (S_ISDIR(st.st_mode)) {
			if (!strcmp(path, "/")) {
				ag_reply_err(ag, id, -EPERM, "remove /");
				return;
			}
			if (agent_json_get_bool(req, "recursive"))
				r = nftw(path, rm_cb, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0 ? -errno : 0;
			else
				r = rmdir(path) < 0 ? -errno : 0;
		} else {
			r = unlink(path) < 0 ? -errno : 0;
		}
		if (r < 0)
			ag_reply_err(ag, id, r ? r : -EIO, "remove %s", path);
		else
			ag_reply(ag, id, NULL);
	} else if (!strcmp(op, "rename")) {
		const char *to = req_path(req, "to");
		if (!to) {
			ag_reply_err(ag, id, -EINVAL, "rename: need an absolute 'to'");
			return;
		}
		if (rename(path, to) < 0)
			ag_reply_err(ag, id, -errno, "rename %s -> %s", path, to);
		else
			ag_reply(ag, id, NULL);
	} else {
		ag_reply_err(ag, id, -EOPNOTSUPP, "unknown op '%s'", op);
	}
}
