// SPDX-License-Identifier: MIT
/*
 * fluid-agent: whole-guest operations. fsfreeze/thaw of every writable,
 * block-backed filesystem (for consistent disk snapshots), sync, identity
 * refresh after a clone (hostname, machine-id, RNG reseed, wall clock,
 * DHCP), and /etc/passwd + /etc/group lookups (a static binary has no NSS).
 *
 * DESIGN: a freeze is always temporary: it is undone after a deadline
 * (default 60 s), when the host session ends, and when the agent exits, so
 * a lost host can never leave the guest frozen. The frozen set is the
 * agent's only global state besides the Agent itself.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/random.h>
#include <mntent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

#define MAX_FROZEN 64
#define FREEZE_DEFAULT_MS 60000
#define FREEZE_MAX_MS 600000

static struct {
	char *mnt[MAX_FROZEN];
	int fd[MAX_FROZEN];
	int n;
	uint64_t deadline;
} frozen;

bool sys_frozen(void)
{
	return frozen.n > 0;
}

uint64_t sys_freeze_deadline(void)
{
	return frozen.n ? frozen.deadline : 0;
}

static int thaw_all(void)
{
	int n = 0;
	for (int i = frozen.n - 1; i >= 0; i--) {
		if (ioctl(frozen.fd[i], FITHAW, 0) == 0)
			n++;
		close(frozen.fd[i]);
		free(frozen.mnt[i]);
	}
	frozen.n = 0;
	frozen.deadline = 0;
	return n;
}

void sys_thaw_all(const char *why)
{
	if (!frozen.n)
		return;
	int n = thaw_all();
	ag_log("thawed %d filesystem(s): %s", n, why);
}

void sys_timer(uint64_t now)
{
	if (frozen.n && now >= frozen.deadline)
		sys_thaw_all("freeze deadline passed");
}

static bool pseudo_fs(const char *type)
{
	static const char *const skip[] = {
		"proc", "sysfs", "devtmpfs", "devpts", "tmpfs", "ramfs", "cgroup", "cgroup2",
		"securityfs", "debugfs", "tracefs", "pstore", "bpf", "mqueue", "hugetlbfs",
		"configfs", "fusectl", "autofs", "efivarfs", "binfmt_misc", "rpc_pipefs", "nsfs",
		"overlay", "squashfs", "iso9660", "nfs", "nfs4", "cifs", "fuse", "9p", "virtiofs",
		"rootfs", "selinuxfs",
	};
	for (size_t i = 0; i < FL_ARRAY_SIZE(skip); i++)
		if (!strcmp(type, skip[i]))
			return true;
	return !strncmp(type, "fuse.", 5);
}

static int freeze(uint64_t timeout_ms, struct json_object *list, char *err, size_t errsz)
{
	FILE *f = setmntent("/proc/self/mounts", "re");
	if (!f) {
		snprintf(err, errsz, "/proc/self/mounts");
		return -errno;
	}
	char *mnts[MAX_FROZEN];
	dev_t devs[MAX_FROZEN];
	int n = 0;
	struct mntent *m;
	while ((m = getmntent(f)) && n < MAX_FROZEN) {
		if (pseudo_fs(m->mnt_type) || strncmp(m->mnt_fsname, "/dev/", 5) != 0 ||
		    hasmntopt(m, "ro"))
			continue;
		struct stat st;
		if (stat(m->mnt_dir, &st) < 0)
			continue;
		bool dup = false;
		for (int i = 0; i < n; i++)
			if (devs[i] == st.st_dev)
				dup = true;
		if (dup)
			continue;
		devs[n] = st.st_dev;
		mnts[n++] = strdup(m->mnt_dir);
	}
	endmntent(f);
	int r = 0;
	/* Reverse mount order: submounts before the filesystems under them. */
	for (int i = n - 1; i >= 0; i--) {
		if (!mnts[i])
			continue;
		int fd = open(mnts[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0) {
			free(mnts[i]);
			continue;
		}
		if (ioctl(fd, FIFREEZE, 0) < 0) {
			int e = errno;
			close(fd);
			if (e == EOPNOTSUPP || e == ENOTTY || e == EBUSY) {
				/* not freezable, or frozen by someone else */
				free(mnts[i]);
				continue;
			}
			snprintf(err, errsz, "FIFREEZE %s", mnts[i]);
			free(mnts[i]);
			for (int j = i - 1; j >= 0; j--)
				free(mnts[j]);
			r = -e;
			break;
		}
		frozen.fd[frozen.n] = fd;
		frozen.mnt[frozen.n++] = mnts[i];
		json_object_array_add(list, json_object_new_string(mnts[i]));
	}
	if (r < 0) {
		thaw_all();
		return r;
	}
	frozen.deadline = ag_now_ms() + timeout_ms;
	return frozen.n;
}

/* ---- passwd / group ---------------------------------------------------- */

static bool parse_uint(const char *s, unsigned long *ret)
{
	if (!*s || !isdigit((unsigned char)*s))
		return false;
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || v > 0x7fffffffUL)
		return false;
	*ret = v;
	return true;
}

/* Splits a colon-separated line into at most n fields. Returns the count. */
static int split(char *line, char **f, int n)
{
	int i = 0;
	line[strcspn(line, "\n")] = 0;
	f[i++] = line;
	for (char *p = line; *p && i < n; p++)
		if (*p == ':') {
			*p = 0;
			f[i++] = p + 1;
		}
	return i;
}

static void user_groups(AgUser *u)
{
	u->ngroups = 0;
	FILE *f = fopen("/etc/group", "re");
	if (!f)
		return;
	char line[4096];
	while (fgets(line, sizeof(line), f) && u->ngroups < (int)FL_ARRAY_SIZE(u->groups)) {
		char *fl[4];
		unsigned long gid;
		if (split(line, fl, 4) < 4 || !parse_uint(fl[2], &gid))
			continue;
		if ((gid_t)gid == u->gid) {
			u->groups[u->ngroups++] = (gid_t)gid;
			continue;
		}
		char *save, *mem = strtok_r(fl[3], ",", &save);
		for (; mem; mem = strtok_r(NULL, ",", &save))
			if (!strcmp(mem, u->name)) {
				u->groups[u->ngroups++] = (gid_t)gid;
				break;
			}
	}
	fclose(f);
	if (u->ngroups == 0)
		u->groups[u->ngroups++] = u->gid;
}

int sys_lookup_user(const char *spec, AgUser *ret)
{
	unsigned long num;
	bool numeric = parse_uint(spec, &num);
	FILE *f = fopen("/etc/passwd", "re");
	if (f) {
		char line[4096];
		while (fgets(line, sizeof(line), f)) {
			char *fl[7];
			unsigned long uid, gid;
			if (split(line, fl, 7) < 7 || !parse_uint(fl[2], &uid) || !parse_uint(fl[3], &gid))
				continue;
			if (numeric ? uid != num : strcmp(fl[0], spec) != 0)
				continue;
			AgUser u = {.uid = (uid_t)uid, .gid = (gid_t)gid};
			snprintf(u.name, sizeof(u.name), "%s", fl[0]);
			snprintf(u.home, sizeof(u.home), "%s", fl[5][0] ? fl[5] : "/");
			snprintf(u.shell, sizeof(u.shell), "%s", fl[6][0] ? fl[6] : "/bin/sh");
			fclose(f);
			user_groups(&u);
			*ret = u;
			return 0;
		}
		fclose(f);
	}
	if (numeric) {
		/* A uid without a passwd entry is still a valid identity. */
		AgUser u = {.uid = (uid_t)num, .gid = (gid_t)num, .ngroups = 1};
		u.groups[0] = (gid_t)num;
		snprintf(u.name, sizeof(u.name), "%lu", num);
		snprintf(u.home, sizeof(u.home), num == 0 ? "/root" : "/");
		snprintf(u.shell, sizeof(u.shell), "/bin/sh");
		if (num == 0) {
			snprintf(u.name, sizeof(u.name), "root");
			u.ngroups = 1;
		}
		*ret = u;
		return 0;
	}
	return -ESRCH;
}

int sys_lookup_group(const char *spec, gid_t *ret)
{
	unsigned long num;
	if (parse_uint(spec, &num)) {
		*ret = (gid_t)num;
		return 0;
	}
	FILE *f = fopen("/etc/group", "re");
	if (!f)
		return -ESRCH;
	char line[4096];
	int r = -ESRCH;
	while (fgets(line, sizeof(line), f)) {
		char *fl[4];
		unsigned long gid;
		if (split(line, fl, 4) >= 3 && !strcmp(fl[0], spec) && parse_uint(fl[2], &gid)) {
			*ret = (gid_t)gid;
			r = 0;
			break;
		}
	}
	fclose(f);
	return r;
}

/* ---- identity ---------------------------------------------------------- */

/* Replaces a small file atomically (or in place when rename cannot work,
 * e.g. a bind-mounted /etc/machine-id). */
static int write_small_file(const char *path, const char *content, mode_t mode)
{
	char tmp[512];
	snprintf(tmp, sizeof(tmp), "%s.fluid-new", path);
	size_t len = strlen(content);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd >= 0) {
		ssize_t w = write(fd, content, len);
		int r = (w == (ssize_t)len && fchmod(fd, mode) == 0) ? 0 : -EIO;
		close(fd);
		if (r == 0 && rename(tmp, path) == 0)
			return 0;
		unlink(tmp);
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	ssize_t w = write(fd, content, len);
	close(fd);
	return w == (ssize_t)len ? 0 : -EIO;
}

static bool valid_hostname(const char *h)
{
	size_t l = strlen(h);
	if (l == 0 || l > 63 || h[0] == '-' || h[0] == '.')
		return false;
	for (const char *p = h; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.')
			return false;
	return true;
}

static void update_hosts(const char *host)
{
	FILE *f = fopen("/etc/hosts", "re");
	char out[16384];
	size_t n = 0;
	bool done = false;
	if (f) {
		char line[1024];
		while (fgets(line, sizeof(line), f)) {
			if (!strncmp(line, "127.0.1.1", 9) && (line[9] == ' ' || line[9] == '\t')) {
				if (done)
					continue;
				n += (size_t)snprintf(out + n, sizeof(out) - n, "127.0.1.1\t%s\n", host);
				done = true;
			} else {
				n += (size_t)snprintf(out + n, sizeof(out) - n, "%s", line);
			}
			if (n >= sizeof(out) - 100) {
				fclose(f);
				return; /* unusually large hosts file: leave it alone */
			}
		}
		fclose(f);
	} else {
		n += (size_t)snprintf(out + n, sizeof(out) - n, "127.0.0.1\tlocalhost\n");
	}
	if (!done)
		n += (size_t)snprintf(out + n, sizeof(out) - n, "127.0.1.1\t%s\n", host);
	write_small_file("/etc/hosts", out, 0644);
}

static bool in_path(const char *name, char *out, size_t size)
{
	static const char *const dirs[] = {"/usr/sbin", "/usr/bin", "/sbin", "/bin"};
	for (size_t i = 0; i < FL_ARRAY_SIZE(dirs); i++) {
		snprintf(out, size, "%s/%s", dirs[i], name);
		if (access(out, X_OK) == 0)
			return true;
	}
	return false;
}

/* Non-loopback network interfaces, space-separated. */
static int net_ifaces(char **names, int max)
{
	_cleanup_(closedirp) DIR *d = opendir("/sys/class/net");
	if (!d)
		return 0;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) && n < max) {
		if (de->d_name[0] == '.' || !strcmp(de->d_name, "lo"))
			continue;
		names[n++] = strdup(de->d_name);
	}
	return n;
}

/* Starts the guest's DHCP client. Returns the client's name, NULL if none. */
static const char *dhcp_start(Agent *ag, uint64_t id, struct json_object *reply)
{
	char p[256], cmd[1024];
	char *ifs[8];
	int nif = net_ifaces(ifs, 8);
	const char *client = NULL;
	char *argv[16] = {0};
	int a = 0;
	size_t cl = 0;
	cmd[0] = 0;
	for (int i = 0; i < nif; i++)
		cl += (size_t)snprintf(cmd + cl, sizeof(cmd) - cl, "%s%s", i ? " " : "", ifs[i]);
	if (nif == 0)
		goto out;
	if (access("/run/systemd/netif/state", F_OK) == 0 && in_path("networkctl", p, sizeof(p))) {
		client = "networkctl";
		argv[a++] = p;
		argv[a++] = "renew";
		for (int i = 0; i < nif && a < 15; i++)
			argv[a++] = ifs[i];
	} else if (in_path("dhclient", p, sizeof(p))) {
		client = "dhclient";
		static char sh[1200];
		snprintf(sh, sizeof(sh), "%s -r %s >/dev/null 2>&1; exec %s -1 %s", p, cmd, p, cmd);
		argv[a++] = "/bin/sh";
		argv[a++] = "-c";
		argv[a++] = sh;
	} else if (in_path("udhcpc", p, sizeof(p)) || in_path("busybox", p, sizeof(p))) {
		client = "udhcpc";
		static char sh[1200];
		bool bb = strstr(p, "busybox") != NULL;
		/* one run per interface, in the foreground, quit once bound */
		size_t l = 0;
		for (int i = 0; i < nif; i++)
			l += (size_t)snprintf(sh + l, sizeof(sh) - l, "%s%s%s -i %s -n -q -t 4 -T 1 >/dev/null 2>&1",
					      i ? "; " : "", p, bb ? " udhcpc" : "", ifs[i]);
		argv[a++] = "/bin/sh";
		argv[a++] = "-c";
		argv[a++] = sh;
	}
	if (client && exec_internal(ag, id, argv, 20000, json_object_get(reply)) < 0) {
		json_object_put(reply);
		client = NULL;
	}
out:
	for (int i = 0; i < nif; i++)
		free(ifs[i]);
	return client;
}

static void identity(Agent *ag, uint64_t id, struct json_object *req)
{
	if (sys_frozen()) {
		ag_reply_err(ag, id, -EBUSY, "identity: filesystems are frozen");
		return;
	}
	struct json_object *o = json_object_new_object();
	const char *ent = agent_json_get_str(req, "entropy");
	if (ent) {
		size_t l = strlen(ent) / 2;
		struct {
			struct rand_pool_info info;
			uint8_t buf[4096];
		} rp;
		if (l == 0 || l > sizeof(rp.buf) || agent_unhex(ent, rp.buf, l) < 0) {
			json_object_put(o);
			ag_reply_err(ag, id, -EINVAL, "identity: entropy must be 1-4096 hex bytes");
			return;
		}
		rp.info.entropy_count = (int)(l * 8);
		rp.info.buf_size = (int)l;
		int fd = open("/dev/random", O_WRONLY | O_CLOEXEC);
		int r = fd < 0 ? -errno : (ioctl(fd, RNDADDENTROPY, &rp) < 0 ? -errno : 0);
		if (fd >= 0) {
			ioctl(fd, RNDRESEEDCRNG, 0);
			close(fd);
		}
		json_object_object_add(o, "entropy_added", json_object_new_int(r < 0 ? r : (int)l));
	}
	int64_t tns;
	if (agent_json_get_i64(req, "time_ns", &tns) == 0 && tns > 0) {
		struct timespec ts = {.tv_sec = tns / 1000000000, .tv_nsec = tns % 1000000000};
		int r = clock_settime(CLOCK_REALTIME, &ts) < 0 ? -errno : 0;
		json_object_object_add(o, "clock_set", json_object_new_boolean(r == 0));
	}
	const char *host = agent_json_get_str(req, "hostname");
	if (host) {
		if (!valid_hostname(host)) {
			json_object_put(o);
			ag_reply_err(ag, id, -EINVAL, "identity: bad hostname");
			return;
		}
		if (sethostname(host, strlen(host)) < 0) {
			int r = -errno;
			json_object_put(o);
			ag_reply_err(ag, id, r, "sethostname");
			return;
		}
		char line[80];
		snprintf(line, sizeof(line), "%s\n", host);
		write_small_file("/etc/hostname", line, 0644);
		update_hosts(host);
	}
	const char *mid = agent_json_get_str(req, "machine_id");
	char midbuf[33];
	if (mid) {
		uint8_t raw[16];
		if (agent_unhex(mid, raw, 16) < 0) {
			json_object_put(o);
			ag_reply_err(ag, id, -EINVAL, "identity: machine_id must be 32 hex digits");
			return;
		}
		agent_hex(raw, 16, midbuf);
	} else if (agent_json_get_bool(req, "new_machine_id")) {
		uint8_t raw[16];
		if (getrandom(raw, sizeof(raw), 0) != sizeof(raw)) {
			json_object_put(o);
			ag_reply_err(ag, id, -EIO, "getrandom");
			return;
		}
		raw[6] = (raw[6] & 0x0f) | 0x40; /* a v4 UUID, as systemd makes them */
		raw[8] = (raw[8] & 0x3f) | 0x80;
		agent_hex(raw, 16, midbuf);
		mid = midbuf;
	}
	if (mid) {
		char line[40];
		snprintf(line, sizeof(line), "%s\n", midbuf);
		int r = write_small_file("/etc/machine-id", line, 0444);
		if (r < 0) {
			json_object_put(o);
			ag_reply_err(ag, id, r, "write /etc/machine-id");
			return;
		}
	}
	char cur[256] = "";
	gethostname(cur, sizeof(cur) - 1);
	json_object_object_add(o, "hostname", json_object_new_string(cur));
	FILE *f = fopen("/etc/machine-id", "re");
	char mline[64] = "";
	if (f) {
		if (fgets(mline, sizeof(mline), f))
			mline[strcspn(mline, "\n")] = 0;
		fclose(f);
	}
	json_object_object_add(o, "machine_id", json_object_new_string(mline));
	if (agent_json_get_bool(req, "dhcp")) {
		const char *c = dhcp_start(ag, id, o);
		json_object_object_add(o, "dhcp", json_object_new_string(c ? c : "none"));
		if (c) {
			json_object_put(o); /* the DHCP op holds it and replies */
			return;
		}
	}
	ag_reply(ag, id, o);
}

/* ---- late root ---------------------------------------------------------- */

/*
 * Late-root images start the agent from their initramfs, before any disk
 * is mounted, so that a template's RAM holds no file-system state and can
 * resume on any disk layer. The host then asks for the root: mount it on
 * /newroot, move the agent into it (chroot: every later exec and file op
 * sees the real root) and run its start script. Idempotent: a guest resumed
 * with its root mounted, or an agent restarted in the initramfs, only
 * (re)enters it.
 */
#define LATE_ROOT "/newroot"

static bool is_mounted(const char *dir)
{
	FILE *f = setmntent("/proc/self/mounts", "re");
	if (!f)
		return false;
	bool found = false;
	struct mntent *m;
	while (!found && (m = getmntent(f)))
		found = !strcmp(m->mnt_dir, dir);
	endmntent(f);
	return found;
}

static void root_op(Agent *ag, uint64_t id, struct json_object *req)
{
	const char *dev = agent_json_get_str(req, "device");
	const char *fstype = agent_json_get_str(req, "fstype");
	if (!dev)
		dev = "/dev/vda";
	if (!fstype)
		fstype = "ext4";
	if (strncmp(dev, "/dev/", 5) || strstr(dev, "..") || strlen(dev) > 64 || strlen(fstype) > 16) {
		ag_reply_err(ag, id, -EINVAL, "root: bad device or fstype");
		return;
	}
	struct stat st;
	if (stat(LATE_ROOT, &st) < 0 || !S_ISDIR(st.st_mode)) {
		/* already in the real root (chrooted, or not a late-root image) */
		struct json_object *o = json_object_new_object();
		json_object_object_add(o, "already", json_object_new_boolean(1));
		ag_reply(ag, id, o);
		return;
	}
	bool mounted = is_mounted(LATE_ROOT);
	if (!mounted) {
		/* the disk shows up when virtio_blk has probed it */
		for (int i = 0; i < 100 && access(dev, F_OK) < 0; i++)
			usleep(50000);
		if (mount(dev, LATE_ROOT, fstype, 0, NULL) < 0) {
			ag_reply_err(ag, id, -errno, "root: mount %s on %s", dev, LATE_ROOT);
			return;
		}
	}
	/* What a start script would do, without a fork+exec per step (each
	 * costs 80-220 ms under TCG): the kernel file systems, then the
	 * hostname stored on the disk. Networking is up already: the kernel's
	 * interface state came from the template, configured in the initramfs. */
	static const struct {
		const char *src, *dir, *type;
		unsigned long flags;
		const char *data;
	} mounts[] = {
		{"/dev", "/dev", NULL, MS_BIND | MS_REC, NULL},
		{"proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL},
		{"sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL},
		{"devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=620,ptmxmode=666"},
		{"tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"},
		{"tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"},
		{"tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=755"},
	};
	for (size_t i = 0; i < sizeof(mounts) / sizeof(mounts[0]); i++) {
		char dir[PATH_MAX];
		snprintf(dir, sizeof(dir), LATE_ROOT "%s", mounts[i].dir);
		if (is_mounted(dir))
			continue;
		mkdir(dir, 0755);
		mount(mounts[i].src, dir, mounts[i].type, mounts[i].flags, mounts[i].data);
	}
	if (chroot(LATE_ROOT) < 0 || chdir("/") < 0) {
		ag_reply_err(ag, id, -errno, "root: chroot %s", LATE_ROOT);
		return;
	}
	char host[80] = "";
	FILE *hf = fopen("/etc/hostname", "re");
	if (hf) {
		if (fgets(host, sizeof(host), hf)) {
			host[strcspn(host, "\n")] = 0;
			if (valid_hostname(host))
				sethostname(host, strlen(host));
		}
		fclose(hf);
	}
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "mounted", json_object_new_boolean(!mounted));
	ag_reply(ag, id, o);
}

void sys_op(Agent *ag, uint64_t id, const char *op, struct json_object *req)
{
	if (!strcmp(op, "root")) {
		root_op(ag, id, req);
		return;
	}
	if (!strcmp(op, "fsfreeze")) {
		if (frozen.n) {
			ag_reply_err(ag, id, -EALREADY, "fsfreeze: already frozen");
			return;
		}
		uint64_t t = FREEZE_DEFAULT_MS;
		agent_json_get_u64(req, "timeout_ms", &t);
		if (t == 0)
			t = FREEZE_DEFAULT_MS;
		if (t > FREEZE_MAX_MS)
			t = FREEZE_MAX_MS;
		struct json_object *list = json_object_new_array();
		char err[300] = "";
		int r = freeze(t, list, err, sizeof(err));
		if (r < 0) {
			json_object_put(list);
			ag_reply_err(ag, id, r, "fsfreeze: %s", err);
			return;
		}
		struct json_object *o = json_object_new_object();
		json_object_object_add(o, "frozen", list);
		json_object_object_add(o, "count", json_object_new_int(r));
		json_object_object_add(o, "auto_thaw_ms", json_object_new_int64((int64_t)t));
		ag_reply(ag, id, o);
	} else if (!strcmp(op, "fsthaw")) {
		int n = thaw_all();
		struct json_object *o = json_object_new_object();
		json_object_object_add(o, "count", json_object_new_int(n));
		ag_reply(ag, id, o);
	} else if (!strcmp(op, "fsfreeze_status")) {
		struct json_object *o = json_object_new_object();
		struct json_object *list = json_object_new_array();
		for (int i = 0; i < frozen.n; i++)
			json_object_array_add(list, json_object_new_string(frozen.mnt[i]));
		json_object_object_add(o, "frozen", list);
		json_object_object_add(o, "count", json_object_new_int(frozen.n));
		uint64_t now = ag_now_ms();
		json_object_object_add(o, "remaining_ms",
				       json_object_new_int64(frozen.n && frozen.deadline > now
								     ? (int64_t)(frozen.deadline - now) : 0));
		ag_reply(ag, id, o);
	} else if (!strcmp(op, "sync")) {
		if (!frozen.n)
			sync();
		ag_reply(ag, id, NULL);
	} else if (!strcmp(op, "identity")) {
		identity(ag, id, req);
	} else {
		ag_reply_err(ag, id, -EOPNOTSUPP, "unknown op '%s'", op);
	}
}
