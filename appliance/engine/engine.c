// SPDX-License-Identifier: MIT
/*
 * engine: sandbox lifecycle (create by template clone or cold boot,
 * start/stop/destroy, exec, snapshots, checkpoints, restore, branching,
 * TTLs) and crash recovery.
 *
 * DESIGN: see engine.h for the threading model and engine-internal.h for
 * the locks. Every multi-step operation writes its intent into the sandbox
 * record (sb->pending) before it changes anything outside the record, and
 * clears it when done; recovery at start-up (recover_sandbox) rolls each
 * kind of interrupted operation forward or back. Disk layers live in the
 * imgstore registry; a sandbox holds its active layer under the holder
 * "sbx-<id>" and each snapshot under "snap-<id>-<name>", so layers shared
 * by branches and snapshot trees are freed only when nothing uses them.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"
#include "cleanup.h"
#include "engine-internal.h"
#include "qmp.h"

#define AGENT_CLONE_TIMEOUT_MS 60000
#define FREEZE_TIMEOUT_MS 30000

/* ---- table ---------------------------------------------------------------- */

static void sb_free(Sandbox *sb)
{
	if (!sb)
		return;
	if (sb->vm.pidfd >= 0)
		close(sb->vm.pidfd);
	pthread_mutex_destroy(&sb->op_lock);
	free(sb->snaps);
	free(sb);
}

static Sandbox *sb_alloc(void)
{
	Sandbox *sb = calloc(1, sizeof(*sb));
	if (!sb)
		return NULL;
	sb->vm.pidfd = -1;
	pthread_mutex_init(&sb->op_lock, NULL);
	return sb;
}

/* Warm-pool entries and standbys (and entries being claimed) are not
 * sandboxes yet. */
static bool sb_hidden(const Sandbox *sb)
{
	return !strcmp(sb->pending, "pool");
}

/* Inspectors are internal VMs: reachable by id (to run the differ in
 * them) but not listed and not counted. */
static bool sb_internal(const Sandbox *sb)
{
	return !strcmp(sb->pending, "inspector");
}

static Sandbox *table_find(FlEngine *e, const char *id)
{
	for (size_t i = 0; i < e->n_sbs; i++) {
		Sandbox *sb = e->sbs[i];
		if (sb_hidden(sb))
			continue;
		if (!strcmp(sb->id, id) || (!sb_internal(sb) && !strcmp(sb->name, id)))
			return sb;
	}
	return NULL;
}

static int table_add(FlEngine *e, Sandbox *sb)
{
	Sandbox **n = realloc(e->sbs, (e->n_sbs + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	e->sbs = n;
	e->sbs[e->n_sbs++] = sb;
	return 0;
}

static void table_remove(FlEngine *e, Sandbox *sb)
{
	for (size_t i = 0; i < e->n_sbs; i++)
		if (e->sbs[i] == sb) {
			e->sbs[i] = e->sbs[--e->n_sbs];
			return;
		}
}

/* Looks up a sandbox and takes its op lock. Release with sb_release(). */
static int sb_acquire(FlEngine *e, const char *id, Sandbox **ret, FlError *err)
{
	pthread_mutex_lock(&e->lock);
	Sandbox *sb = id ? table_find(e, id) : NULL;
	if (!sb || sb->state == SB_DESTROYED) {
		pthread_mutex_unlock(&e->lock);
		return fl_error_set(err, -ENOENT, "no sandbox '%s'", id ? id : "");
	}
	sb->refs++;
	pthread_mutex_unlock(&e->lock);
	pthread_mutex_lock(&sb->op_lock);
	if (sb->state == SB_DESTROYED) { /* destroyed while we waited */
		pthread_mutex_unlock(&sb->op_lock);
		pthread_mutex_lock(&e->lock);
		bool last = --sb->refs == 0;
		pthread_mutex_unlock(&e->lock);
		if (last)
			sb_free(sb);
		return fl_error_set(err, -ENOENT, "no sandbox '%s'", id);
	}
	*ret = sb;
	return 0;
}

static void sb_release(FlEngine *e, Sandbox *sb)
{
	pthread_mutex_unlock(&sb->op_lock);
	pthread_mutex_lock(&e->lock);
	bool last = --sb->refs == 0 && sb->state == SB_DESTROYED;
	pthread_mutex_unlock(&e->lock);
	if (last)
		sb_free(sb);
}

static struct json_object *sb_json(FlEngine *e, Sandbox *sb);

static void emit(FlEngine *e, Sandbox *sb, const char *event)
{
	if (!e->cfg.on_event)
		return;
	struct json_object *o = sb_json(e, sb);
	e->cfg.on_event(sb->id, event, o, e->cfg.userdata);
	json_object_put(o);
}

/* Updates the record under e->lock and persists it. */
static int sb_commit(FlEngine *e, Sandbox *sb, FlError *err)
{
	pthread_mutex_lock(&e->lock);
	sb->updated_at = fl_unix_now();
	int r = sb_save(e, sb, err);
	pthread_mutex_unlock(&e->lock);
	return r;
}

static void sb_set_state(FlEngine *e, Sandbox *sb, SbState st)
{
	pthread_mutex_lock(&e->lock);
	sb->state = st;
	sb->pid = sb->vm.pidfd >= 0 ? sb->vm.pid : 0;
	sb->updated_at = fl_unix_now();
	sb_save(e, sb, NULL);
	pthread_mutex_unlock(&e->lock);
	emit(e, sb, "state");
}

static Snapshot *snap_find(Sandbox *sb, const char *name)
{
	for (size_t i = 0; i < sb->n_snaps; i++)
		if (!strcmp(sb->snaps[i].name, name))
			return &sb->snaps[i];
	return NULL;
}

/* ---- registry helpers ------------------------------------------------------- */

static void holder_active(const Sandbox *sb, char *buf)
{
	snprintf(buf, IMG_HOLDER_MAX, "sbx-%s", sb->id);
}

static void holder_snap(const Sandbox *sb, const char *name, char *buf)
{
	snprintf(buf, IMG_HOLDER_MAX, "snap-%s-%s", sb->id, name);
}

static int layer_path(FlEngine *e, const char *id, char *buf, size_t len, FlError *err)
{
	pthread_mutex_lock(&e->reg_lock);
	int r = img_registry_layer_path(e->reg, id, buf, len, err);
	pthread_mutex_unlock(&e->reg_lock);
	return r;
}

static int new_active(FlEngine *e, Sandbox *sb, const char *parent, FlError *err)
{
	char holder[IMG_HOLDER_MAX];
	holder_active(sb, holder);
	pthread_mutex_lock(&e->reg_lock);
	int r = img_registry_new_overlay_flags(e->reg, parent, holder, 0, IMG_CREATE_NO_SYNC, sb->active, err);
	pthread_mutex_unlock(&e->reg_lock);
	return r < 0 ? fl_error_prefix(err, "new disk layer") : 0;
}

static void drop_layer(FlEngine *e, const char *id, const char *holder)
{
	if (!id[0])
		return;
	pthread_mutex_lock(&e->reg_lock);
	img_registry_unref(e->reg, id, holder, NULL);
	img_registry_gc(e->reg, NULL, NULL);
	pthread_mutex_unlock(&e->reg_lock);
}

static void state_path(FlEngine *e, const char *layer, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s.state", e->states_dir, layer);
}

/* Removes RAM state files whose layer the registry no longer has. */
static void gc_states(FlEngine *e)
{
	_cleanup_(closedirp) DIR *d = opendir(e->states_dir);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		char id[IMG_ID_SIZE];
		if (strlen(de->d_name) != IMG_ID_LEN + 6 || strcmp(de->d_name + IMG_ID_LEN, ".state"))
			continue;
		memcpy(id, de->d_name, IMG_ID_LEN);
		id[IMG_ID_LEN] = 0;
		ImgLayer info;
		pthread_mutex_lock(&e->reg_lock);
		int r = img_registry_layer_info(e->reg, id, &info, NULL);
		pthread_mutex_unlock(&e->reg_lock);
		if (r == -ENOENT) {
			char p[800];
			state_path(e, id, p, sizeof(p));
			unlink(p);
		}
	}
}

/* ---- VM start/stop ---------------------------------------------------------- */

static bool vm_alive(Sandbox *sb)
{
	if (sb->vm.pidfd < 0)
		return false;
	struct pollfd p = {.fd = sb->vm.pidfd, .events = POLLIN};
	return poll(&p, 1, 0) == 0;
}

static void vm_stop(FlEngine *e, Sandbox *sb)
{
	ea_disconnect(e, sb);
	fl_vm_kill(&sb->vm);
	fl_cgroup_remove(sb->id);
	fl_egress_remove(sb->id);
	char p[700];
	const char *files[] = {"qmp.sock", "agent.sock", "qemu.pid"};
	for (size_t i = 0; i < FL_ARRAY_SIZE(files); i++) {
		snprintf(p, sizeof(p), "%s/%s", sb->dir, files[i]);
		unlink(p);
	}
}

/* Replaces err's message with the last line QEMU printed before exiting. */
static void qemu_error(Sandbox *sb, FlError *err)
{
	char path[700], buf[4096];
	snprintf(path, sizeof(path), "%s/qemu.log", sb->dir);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : pread(fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return;
	buf[n] = 0;
	while (n > 0 && buf[n - 1] == '\n')
		buf[--n] = 0;
	char *last = strrchr(buf, '\n');
	fl_error_set(err, -EIO, "QEMU exited: %s", last ? last + 1 : buf);
}

/* A free port on the host's loopback for the guest's SSH forward. */
static int free_port(void)
{
	_cleanup_close_ int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		return 0;
	return ntohs(sa.sin_port);
}

static void suspend_path(const Sandbox *sb, char *buf, size_t len)
{
	snprintf(buf, len, "%s/suspend.state", sb->dir);
}

/* BOOT_TEMPLATE: the template's (pre-root) state, then the root is
 * mounted; BOOT_STANDBY: the same without the root (a standby, below);
 * BOOT_ROOTED: a late-root template's rooted state, on an overlay of the
 * template's own layer. */
typedef enum BootKind { BOOT_COLD, BOOT_TEMPLATE, BOOT_STANDBY, BOOT_ROOTED, BOOT_STATE } BootKind;

/* Late-root images: asks the agent to mount and enter the root disk. A
 * no-op for a guest that is already in it (resumed from saved RAM). */
static int enter_root(FlEngine *e, Sandbox *sb, const Image *img, FlError *err)
{
	if (!img->late_root)
		return 0;
	int r = ea_call(e, sb, "root", image_root_args(img), 60000, NULL, err);
	return r < 0 ? fl_error_prefix(err, "entering the root filesystem") : 0;
}

/*
 * Boots the sandbox's VM on its active layer: cold, from its template
 * (clone), or from a checkpoint's state file. Waits for the agent.
 */
static int tap_lease(FlEngine *e, Sandbox *sb, FlError *err);

static FlCgroupLimits vm_limits(const Sandbox *sb)
{
	/* QEMU's own overhead (TCG buffer, devices, page tables) on top of RAM */
	return (FlCgroupLimits){.memory_mb = sb->memory_mb + 384, .vcpus = sb->vcpus, .pids = 512};
}

static int vm_boot(FlEngine *e, Sandbox *sb, BootKind kind, const char *state_file, FlError *err)
{
	Image img;
	int r = image_load(e, sb->base_image, &img, err);
	if (r < 0)
		return r;
	char disk[IMG_PATH_MAX];
	r = layer_path(e, sb->active, disk, sizeof(disk), err);
	if (r < 0)
		return r;
	ImgChain *chain = NULL;
	r = img_chain_resolve(disk, IMG_FMT_QCOW2, 0, &chain, err);
	img_chain_free(chain);
	if (r < 0)
		return fl_error_prefix(err, "sandbox %s disk is unusable", sb->id);
	char ram[700] = "", statef[800] = "";
	if (kind == BOOT_TEMPLATE || kind == BOOT_STANDBY || kind == BOOT_ROOTED) {
		const char *sfx = kind == BOOT_ROOTED ? "-rooted" : "";
		snprintf(ram, sizeof(ram), "%s/ram%s", sb->template_dir, sfx);
		snprintf(statef, sizeof(statef), "%s/state%s", sb->template_dir, sfx);
	} else if (kind == BOOT_STATE) {
		snprintf(statef, sizeof(statef), "%s", state_file);
	}
	bool tap = !strcmp(sb->network, "tap");
	_cleanup_close_ int tap_fd = tap ? fl_tap_open(e->cfg.tap_bridge, err) : -1;
	if (tap && tap_fd < 0)
		return tap_fd;
	FlVmSpec spec = {
		.tap_fd = tap_fd,
		.run_dir = sb->dir, .accel = e->cfg.accel, .vcpus = sb->vcpus, .memory_mb = sb->memory_mb,
		.kernel = img.kernel, .initrd = img.initrd, .cmdline = img.cmdline, .disk = disk,
		.ram_path = ram[0] ? ram : NULL, .ram_shared = false,
		.boot = kind == BOOT_COLD ? FL_BOOT_COLD : FL_BOOT_INCOMING,
		.incoming_path = statef[0] ? statef : NULL,
		.net_none = !strcmp(sb->network, "none"), .tb_size_mb = e->cfg.tb_size_mb,
		.ssh_port = tap ? 0 : free_port(),
	};
	sb->ssh_port = spec.ssh_port;
	uint64_t t = 0;
	fl_trace("boot", &t);
	r = fl_vm_spawn(&spec, &sb->vm, err);
	if (r < 0)
		return r;
	FlCgroupLimits lim = vm_limits(sb);
	r = fl_cgroup_add(sb->id, sb->vm.pid, &lim, err);
	if (r < 0) {
		vm_stop(e, sb);
		return fl_error_prefix(err, "resource limits");
	}
	if (!strcmp(sb->network, "allowlist")) {
		r = fl_egress_restrict(sb->id, sb->vm.pid, sb->net_allow, sb->n_net_allow, err);
		if (r < 0) {
			vm_stop(e, sb);
			return r;
		}
	}
	fl_trace("spawn", &t);
	if (kind != BOOT_COLD) {
		r = fl_vm_incoming(&sb->vm, err);
		fl_trace("incoming", &t);
		if (r < 0) {
			fl_vm_wait_exit(&sb->vm, 1000); /* QEMU says why on its way out */
			qemu_error(sb, err);
			vm_stop(e, sb);
			return r;
		}
	}
	pthread_mutex_lock(&e->lock);
	sb->pid = sb->vm.pid;
	pthread_mutex_unlock(&e->lock);
	unsigned timeout = kind == BOOT_COLD ? e->cfg.boot_timeout_ms : AGENT_CLONE_TIMEOUT_MS;
	r = ea_connect(e, sb, timeout, err);
	fl_trace("agent hello", &t);
	if (r < 0) {
		if (!vm_alive(sb))
			qemu_error(sb, err);
		else
			fl_error_prefix(err, "guest agent did not answer (console: %s/console.log)", sb->dir);
		vm_stop(e, sb);
		return r;
	}
	if (kind != BOOT_ROOTED && kind != BOOT_STANDBY)
		r = enter_root(e, sb, &img, err);
	fl_trace("root", &t);
	if (r >= 0 && tap)
		r = tap_lease(e, sb, err);
	if (r < 0)
		vm_stop(e, sb);
	return r;
}

static void collect(int stream, const void *buf, size_t len, void *ud)
{
	char *out = ud; /* 64 bytes: an address is all we want */
	size_t have = strlen(out);
	if (stream == 1 && have < 63)
		strncat(out, buf, len < 63 - have ? len : 63 - have);
}

/*
 * network "tap": every clone of a template starts with the template's MAC
 * and lease, so the guest's NIC gets the sandbox's own MAC (derived from
 * its id, stable across restores) and a fresh lease from the bridge's DHCP
 * server; *sb->ip is what the guest then reports (validated: it is guest
 * output).
 */
static int tap_lease(FlEngine *e, Sandbox *sb, FlError *err)
{
	char script[1400], out[64] = "";
	snprintf(script, sizeof(script),
		 "dev=; for d in /sys/class/net/*; do n=${d##*/}; [ \"$n\" = lo ] || { dev=$n; break; }; done\n"
		 "[ -n \"$dev\" ] || exit 3\n"
		 "pkill udhcpc 2>/dev/null; pkill dhclient 2>/dev/null\n"
		 "ip link set dev \"$dev\" down; ip addr flush dev \"$dev\"\n"
		 "ip link set dev \"$dev\" address 52:54:%.2s:%.2s:%.2s:%.2s || exit 4\n"
		 "ip link set dev \"$dev\" up\n"
		 "if [ -d /run/systemd/system ]; then systemctl restart systemd-networkd\n"
		 "elif command -v udhcpc >/dev/null; then udhcpc -i \"$dev\" -b -t 10 -T 1 "
		 "-s /usr/share/udhcpc/default.script >/dev/null 2>&1 </dev/null\n"
		 "else dhclient -1 \"$dev\"; fi\n"
		 "for i in $(seq 150); do set -- $(ip -4 -o addr show dev \"$dev\"); a=${4%%%%/*}\n"
		 "[ -n \"$a\" ] && { echo \"$a\"; exit 0; }; sleep 0.2; done; exit 5\n",
		 sb->id, sb->id + 2, sb->id + 4, sb->id + 6);
	FlExecSpec x = {.shell = script, .timeout_ms = 40000};
	FlExecResult res;
	int r = ea_exec(e, sb, &x, collect, out, &res, err);
	if (r < 0)
		return fl_error_prefix(err, "tap network set-up");
	out[strcspn(out, "\n")] = 0;
	struct in_addr a;
	if (res.exit_code != 0 || inet_pton(AF_INET, out, &a) != 1)
		return fl_error_set(err, -ENETUNREACH, "tap network: the guest got no address from the "
						       "bridge's DHCP server (exit %d)", res.exit_code);
	pthread_mutex_lock(&e->lock);
	snprintf(sb->ip, sizeof(sb->ip), "%s", out);
	pthread_mutex_unlock(&e->lock);
	return 0;
}

/* How to boot a sandbox on a disk without saved RAM: from its template
 * when the image is late-root (the template's RAM holds no disk state),
 * else cold. */
static BootKind disk_boot(FlEngine *e, const Sandbox *sb)
{
	Image img;
	char ram[700];
	snprintf(ram, sizeof(ram), "%s/ram", sb->template_dir);
	if (sb->template_dir[0] && image_load(e, sb->base_image, &img, NULL) == 0 && img.late_root &&
	    access(ram, R_OK) == 0)
		return BOOT_TEMPLATE;
	return BOOT_COLD;
}

/* The host's wall clock, for the guest's (agent "identity" time_ns). */
static int64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Gives a freshly cloned or branched guest its own identity. */
static int refresh_identity(FlEngine *e, Sandbox *sb, FlError *err)
{
	struct json_object *a = json_object_new_object();
	json_object_object_add(a, "hostname", json_object_new_string(sb->name));
	char mid[33];
	fl_random_hex(mid, 32);
	json_object_object_add(a, "machine_id", json_object_new_string(mid));
	unsigned char seed[64];
	char seedhex[129];
	if (getentropy(seed, sizeof(seed)) < 0) {
		json_object_put(a);
		return fl_error_set(err, -errno, "getentropy: %m");
	}
	for (size_t i = 0; i < sizeof(seed); i++)
		snprintf(seedhex + 2 * i, 3, "%02x", seed[i]);
	json_object_object_add(a, "entropy", json_object_new_string(seedhex));
	json_object_object_add(a, "time_ns", json_object_new_int64(wall_ns()));
	/* No DHCP: with user networking every sandbox has its own private
	 * 10.0.2.0/24 in which the template's lease stays valid. */
	uint64_t t = 0;
	fl_trace("identity", &t);
	int r = ea_call(e, sb, "identity", a, 30000, NULL, err);
	fl_trace("identity op", &t);
	return r < 0 ? fl_error_prefix(err, "identity refresh") : 0;
}

static void destroy_locked(FlEngine *e, Sandbox *sb);

/* The record as the API shows it (new reference). */
static struct json_object *sb_json(FlEngine *e, Sandbox *sb)
{
	pthread_mutex_lock(&e->lock);
	struct json_object *o = sb_to_json(sb, false);
	pthread_mutex_unlock(&e->lock);
	return o;
}

/* Sandboxes that count against max_sandboxes; caller holds e->lock. */
static unsigned live_count(FlEngine *e)
{
	unsigned n = 0;
	for (size_t i = 0; i < e->n_sbs; i++)
		n += e->sbs[i]->state != SB_DESTROYED && !sb_hidden(e->sbs[i]) && !sb_internal(e->sbs[i]);
	return n;
}

/* Ends a successful create (or claim): commit the state, wake the janitor
 * for a TTL, hand out the record, release. */
static void created(FlEngine *e, Sandbox *sb, SbState st, struct json_object **ret)
{
	sb->pending[0] = 0;
	sb_set_state(e, sb, st);
	if (sb->ttl_seconds) { /* the janitor may be asleep until a later expiry */
		pthread_mutex_lock(&e->lock);
		pthread_cond_broadcast(&e->janitor_cond);
		pthread_mutex_unlock(&e->lock);
	}
	if (ret)
		*ret = sb_json(e, sb);
	sb_release(e, sb);
}

static void pool_key(const char *image, unsigned mem, unsigned vcpus, const char *net, bool standby,
		     char *out);

/* A guest resumed from saved RAM believes it is still the moment of the
 * save: give it the wall clock (monotonic time simply continues). */
static void set_clock(FlEngine *e, Sandbox *sb)
{
	struct json_object *a = json_object_new_object();
	json_object_object_add(a, "time_ns", json_object_new_int64(wall_ns()));
	ea_call(e, sb, "identity", a, 10000, NULL, NULL);
}

/* ---- create -------------------------------------------------------------- */

static int validate_spec(FlEngine *e, const FlSandboxSpec *s, FlError *err)
{
	if (s->name && !fl_name_valid(s->name, 63, false))
		return fl_error_set(err, -EINVAL, "invalid sandbox name: use 1-63 letters, digits, '-' or '_'");
	if (s->network && strcmp(s->network, "nat") && strcmp(s->network, "none") &&
	    strcmp(s->network, "allowlist") && strcmp(s->network, "tap"))
		return fl_error_set(err, -EINVAL, "network must be \"nat\", \"none\", \"allowlist\" or \"tap\"");
	if (s->network && !strcmp(s->network, "tap") && !e->cfg.tap_bridge)
		return fl_error_set(err, -EINVAL, "network tap needs network.bridge in the configuration "
						  "(see `fluid provision network`)");
	if (s->n_net_allow && (!s->network || strcmp(s->network, "allowlist")))
		return fl_error_set(err, -EINVAL, "net_allow needs network \"allowlist\"");
	if (s->n_net_allow > FL_NET_ALLOW_MAX)
		return fl_error_set(err, -EINVAL, "at most %d allowlist entries", FL_NET_ALLOW_MAX);
	for (size_t i = 0; i < s->n_net_allow; i++)
		if (s->net_allow[i].prefix > 32 || s->net_allow[i].port_lo > s->net_allow[i].port_hi ||
		    s->net_allow[i].port_hi > 65535)
			return fl_error_set(err, -EINVAL, "allowlist entry %zu is malformed", i);
	if (s->vcpus > 16)
		return fl_error_set(err, -EINVAL, "vcpus must be between 1 and 16");
	if (s->memory_mb && (s->memory_mb < 64 || s->memory_mb > 65536))
		return fl_error_set(err, -EINVAL, "memory_mb must be between 64 and 65536");
	if (s->agent_id && strlen(s->agent_id) > 128)
		return fl_error_set(err, -EINVAL, "agent_id longer than 128 characters");
	if (s->job_id && strlen(s->job_id) > 128)
		return fl_error_set(err, -EINVAL, "job_id longer than 128 characters");
	if (!!s->from_sandbox != !!s->from_snapshot)
		return fl_error_set(err, -EINVAL, "branching needs both the source sandbox and snapshot");
	if (!s->from_sandbox && !s->base_image)
		return fl_error_set(err, -EINVAL, "base image required");
	return 0;
}

/* Source of a branch, copied out under the source's lock. */
typedef struct BranchSrc {
	char base_image[FL_NAME_MAX + 1];
	char template_dir[512];
	char layer[IMG_ID_SIZE];
	bool memory;
	unsigned vcpus, memory_mb;
} BranchSrc;

static int branch_source(FlEngine *e, const FlSandboxSpec *s, BranchSrc *src, FlError *err)
{
	Sandbox *from;
	int r = sb_acquire(e, s->from_sandbox, &from, err);
	if (r < 0)
		return r;
	Snapshot *sn = snap_find(from, s->from_snapshot);
	if (!sn) {
		sb_release(e, from);
		return fl_error_set(err, -ENOENT, "sandbox %s has no snapshot '%s'", from->id, s->from_snapshot);
	}
	snprintf(src->base_image, sizeof(src->base_image), "%s", from->base_image);
	snprintf(src->template_dir, sizeof(src->template_dir), "%s", from->template_dir);
	memcpy(src->layer, sn->layer, IMG_ID_SIZE);
	src->memory = sn->memory;
	src->vcpus = from->vcpus;
	src->memory_mb = from->memory_mb;
	sb_release(e, from);
	return 0;
}

typedef enum CreateKind { CREATE_SANDBOX, CREATE_POOL, CREATE_STANDBY, CREATE_INSPECTOR } CreateKind;

static int pool_warm(FlEngine *e, Sandbox *sb, const Image *img, FlError *err);
static int boot_disk(FlEngine *e, Sandbox *sb, const char *backing, BootKind *ret_kind, FlError *err);

static int create_sandbox(FlEngine *e, const FlSandboxSpec *s, CreateKind ck, struct json_object **ret,
			  FlError *err)
{
	bool pooled = ck != CREATE_SANDBOX; /* internal VMs skip the sandbox limit */
	int r;
	BranchSrc src = {0};
	if (s->from_sandbox) {
		r = branch_source(e, s, &src, err);
		if (r < 0)
			return r;
	}
	Image img;
	r = image_load(e, s->from_sandbox ? src.base_image : s->base_image, &img, err);
	if (r < 0)
		return r;

	Sandbox *sb = sb_alloc();
	if (!sb)
		return fl_error_set(err, -ENOMEM, "out of memory");
	fl_random_hex(sb->id, FL_ID_LEN);
	if (ck == CREATE_POOL || ck == CREATE_STANDBY)
		snprintf(sb->name, sizeof(sb->name), "%s-%.8s", ck == CREATE_POOL ? "pool" : "standby", sb->id);
	else if (ck == CREATE_INSPECTOR)
		snprintf(sb->name, sizeof(sb->name), "insp-%.8s", sb->id);
	else if (s->name)
		snprintf(sb->name, sizeof(sb->name), "%s", s->name);
	else
		snprintf(sb->name, sizeof(sb->name), "sbx-%.8s", sb->id);
	snprintf(sb->agent_id, sizeof(sb->agent_id), "%s", s->agent_id ? s->agent_id : "");
	snprintf(sb->job_id, sizeof(sb->job_id), "%s", s->job_id ? s->job_id : "");
	snprintf(sb->base_image, sizeof(sb->base_image), "%s", img.name);
	snprintf(sb->network, sizeof(sb->network), "%s", s->network ? s->network : "nat");
	sb->n_net_allow = s->n_net_allow;
	if (s->n_net_allow)
		memcpy(sb->net_allow, s->net_allow, s->n_net_allow * sizeof(*s->net_allow));
	sb->vcpus = s->vcpus ? s->vcpus : src.vcpus ? src.vcpus : e->cfg.default_vcpus ? e->cfg.default_vcpus : 1;
	sb->memory_mb = s->memory_mb ? s->memory_mb : src.memory_mb ? src.memory_mb
					 : e->cfg.default_memory_mb ? e->cfg.default_memory_mb : img.memory_mb;
	sb->ttl_seconds = s->ttl_seconds;
	sb->created_at = sb->updated_at = fl_unix_now();
	sb->state = SB_CREATED;
	snprintf(sb->dir, sizeof(sb->dir), "%s/%s", e->sandboxes_dir, sb->id);
	bool cold = s->cold_boot;
	if (s->from_sandbox && src.memory && (s->vcpus || s->memory_mb) &&
	    (sb->vcpus != src.vcpus || sb->memory_mb != src.memory_mb)) {
		sb_free(sb);
		return fl_error_set(err, -EINVAL, "a branch from a checkpoint keeps the source's vcpus and memory");
	}

	/* Reserve a slot and the name. */
	pthread_mutex_lock(&e->lock);
	if (!pooled && live_count(e) >= e->cfg.max_sandboxes) {
		pthread_mutex_unlock(&e->lock);
		sb_free(sb);
		return fl_error_set(err, -EUSERS, "sandbox limit reached (%u)", e->cfg.max_sandboxes);
	}
	if (table_find(e, sb->name)) {
		pthread_mutex_unlock(&e->lock);
		sb_free(sb);
		return fl_error_set(err, -EEXIST, "a sandbox named '%s' exists", s->name);
	}
	r = table_add(e, sb);
	sb->refs = 1;
	pthread_mutex_unlock(&e->lock);
	if (r < 0) {
		sb_free(sb);
		return fl_error_set(err, r, "out of memory");
	}
	pthread_mutex_lock(&sb->op_lock);

	Template t;
	char parent[IMG_ID_SIZE];
	BootKind kind;
	char statef[800] = "";
	if (s->from_sandbox) {
		memcpy(parent, src.layer, IMG_ID_SIZE);
		snprintf(sb->boot, sizeof(sb->boot), "branch");
		snprintf(sb->template_dir, sizeof(sb->template_dir), "%s", src.template_dir);
		kind = src.memory ? BOOT_STATE : disk_boot(e, sb);
		if (src.memory)
			state_path(e, src.layer, statef, sizeof(statef));
	} else if (cold) {
		r = image_base_layer(e, &img, parent, err);
		if (r < 0)
			goto fail;
		snprintf(sb->boot, sizeof(sb->boot), "cold");
		kind = BOOT_COLD;
	} else {
		r = template_get(e, &img, sb->memory_mb, sb->vcpus, &t, err);
		if (r < 0)
			goto fail;
		memcpy(parent, t.layer, IMG_ID_SIZE);
		snprintf(sb->boot, sizeof(sb->boot), "clone");
		snprintf(sb->template_dir, sizeof(sb->template_dir), "%s", t.dir);
		kind = ck == CREATE_STANDBY ? BOOT_STANDBY : t.rooted ? BOOT_ROOTED : BOOT_TEMPLATE;
	}

	uint64_t tr = 0;
	fl_trace("create", &tr);
	r = fl_mkdir_p(sb->dir, 0700);
	if (r < 0) {
		fl_error_set(err, r, "mkdir %s: %s", sb->dir, strerror(-r));
		goto fail;
	}
	snprintf(sb->pending, sizeof(sb->pending), "%s",
		 ck == CREATE_POOL || ck == CREATE_STANDBY ? "pool" : ck == CREATE_INSPECTOR ? "inspector" : "create");
	if (ck == CREATE_POOL || ck == CREATE_STANDBY)
		pool_key(s->base_image, sb->memory_mb, sb->vcpus, sb->network, ck == CREATE_STANDBY, sb->pool_key);
	r = sb_commit(e, sb, err);
	if (r < 0)
		goto fail;
	fl_trace("record", &tr);
	r = new_active(e, sb, parent, err);
	if (r < 0)
		goto fail;
	r = sb_commit(e, sb, err);
	if (r < 0)
		goto fail;
	fl_trace("overlay", &tr);
	if (!s->no_start) {
		sb_set_state(e, sb, SB_STARTING);
		if (s->from_sandbox && kind == BOOT_TEMPLATE) /* a branch from a disk snapshot */
			r = boot_disk(e, sb, parent, &kind, err);
		else
			r = vm_boot(e, sb, kind, statef, err);
		if (r < 0)
			goto fail;
		fl_trace("boot", &tr);
		if (kind != BOOT_COLD && kind != BOOT_STANDBY) {
			if (kind == BOOT_STATE)
				ea_call(e, sb, "fsthaw", NULL, FREEZE_TIMEOUT_MS, NULL, NULL);
			r = refresh_identity(e, sb, err);
			if (r < 0)
				goto fail;
			fl_trace("identity", &tr);
		}
	}
	if (ck == CREATE_INSPECTOR) {
		sb_set_state(e, sb, SB_RUNNING);
		if (ret)
			*ret = sb_json(e, sb);
		sb_release(e, sb);
		return 0;
	}
	if (ck == CREATE_POOL || ck == CREATE_STANDBY) {
		r = pool_warm(e, sb, ck == CREATE_STANDBY ? &img : NULL, err);
		if (r < 0)
			goto fail;
		sb_set_state(e, sb, SB_RUNNING);
		sb_release(e, sb);
		return 0;
	}
	created(e, sb, s->no_start ? SB_CREATED : SB_RUNNING, ret);
	return 0;

fail:
	vm_stop(e, sb);
	char holder[IMG_HOLDER_MAX];
	holder_active(sb, holder);
	drop_layer(e, sb->active, holder);
	fl_rm_rf(sb->dir);
	pthread_mutex_lock(&e->lock);
	sb->state = SB_DESTROYED;
	table_remove(e, sb);
	pthread_mutex_unlock(&e->lock);
	sb_release(e, sb);
	return r;
}

/* ---- warm pool ------------------------------------------------------------- */

/*
 * The warm pool keeps pool_size clones per (image, shape, network) running
 * and warmed up (identity refreshed once and `true` executed, so the guest
 * and TCG have seen those code paths). A create that matches claims one:
 * it only needs its real identity. The pool thread refills in the
 * background. Entries are hidden from lists and limits, recorded with
 * pending "pool", and destroyed at start-up like an unfinished create.
 */
#define STANDBY_KEY "standby:" /* prefix of a standby's pool key */

static void pool_key(const char *image, unsigned mem, unsigned vcpus, const char *net, bool standby,
		     char *out)
{
	snprintf(out, 160, "%s%s/%um/%uc/%s", standby ? STANDBY_KEY : "", image, mem, vcpus, net);
}

/* Registers demand for a kind of sandbox (or of standby); caller holds
 * e->lock. */
static void pool_want(FlEngine *e, const char *image, unsigned mem, unsigned vcpus, const char *net,
		      bool standby)
{
	char key[160];
	pool_key(image, mem, vcpus, net, standby, key);
	for (size_t i = 0; i < e->n_pool; i++)
		if (!strcmp(e->pool[i].key, key))
			return;
	if (e->n_pool >= FL_POOL_KEYS)
		return;
	PoolKey *k = &e->pool[e->n_pool++];
	memset(k, 0, sizeof(*k));
	snprintf(k->key, sizeof(k->key), "%s", key);
	snprintf(k->image, sizeof(k->image), "%s", image);
	snprintf(k->network, sizeof(k->network), "%s", net);
	k->memory_mb = mem;
	k->vcpus = vcpus;
	k->standby = standby;
	pthread_cond_broadcast(&e->pool_cond);
}

static unsigned pool_count(FlEngine *e, const char *key)
{
	unsigned n = 0;
	for (size_t i = 0; i < e->n_sbs; i++)
		n += sb_hidden(e->sbs[i]) && !strcmp(e->sbs[i]->pool_key, key) &&
		     e->sbs[i]->state == SB_RUNNING;
	return n;
}

static void *pool_main(void *arg)
{
	FlEngine *e = arg;
	pthread_mutex_lock(&e->lock);
	while (!e->stopping) {
		PoolKey *want = NULL;
		int64_t now = fl_unix_now();
		for (size_t i = 0; i < e->n_pool && !want; i++) {
			PoolKey *k = &e->pool[i];
			unsigned want_n = k->standby ? 1 : e->cfg.pool_size; /* restores are rarer */
			if (k->retry_at <= now && pool_count(e, k->key) + k->building < want_n)
				want = k;
		}
		if (!want) {
			struct timespec ts = {.tv_sec = now + 30};
			pthread_cond_timedwait(&e->pool_cond, &e->lock, &ts);
			continue;
		}
		want->building++;
		FlSandboxSpec s = {.base_image = want->image, .memory_mb = want->memory_mb,
				   .vcpus = want->vcpus, .network = want->network};
		pthread_mutex_unlock(&e->lock);
		int r = create_sandbox(e, &s, want->standby ? CREATE_STANDBY : CREATE_POOL, NULL, NULL);
		pthread_mutex_lock(&e->lock);
		want->building--;
		if (r < 0)
			want->retry_at = fl_unix_now() + 30;
	}
	pthread_mutex_unlock(&e->lock);
	return NULL;
}

/* A ready entry of the pool with this key, or NULL; caller holds e->lock. */
static Sandbox *pool_find(FlEngine *e, const char *key)
{
	for (size_t i = 0; i < e->n_sbs; i++)
		if (sb_hidden(e->sbs[i]) && e->sbs[i]->state == SB_RUNNING && !strcmp(e->sbs[i]->pool_key, key))
			return e->sbs[i];
	return NULL;
}

/* Claims a warm clone for spec. -ENOENT: none ready (the caller clones). */
static int pool_claim(FlEngine *e, const FlSandboxSpec *s, const char *key, struct json_object **ret,
		      FlError *err)
{
	pthread_mutex_lock(&e->lock);
	Sandbox *sb = pool_find(e, key);
	if (!sb) {
		pthread_mutex_unlock(&e->lock);
		return -ENOENT;
	}
	if (live_count(e) >= e->cfg.max_sandboxes) {
		pthread_mutex_unlock(&e->lock);
		return fl_error_set(err, -EUSERS, "sandbox limit reached (%u)", e->cfg.max_sandboxes);
	}
	if (s->name && table_find(e, s->name)) {
		pthread_mutex_unlock(&e->lock);
		return fl_error_set(err, -EEXIST, "a sandbox named '%s' exists", s->name);
	}
	sb->pool_key[0] = 0; /* no longer claimable */
	sb->refs++;
	pthread_cond_broadcast(&e->pool_cond); /* refill */
	pthread_mutex_unlock(&e->lock);

	pthread_mutex_lock(&sb->op_lock);
	if (s->name)
		snprintf(sb->name, sizeof(sb->name), "%s", s->name);
	else
		snprintf(sb->name, sizeof(sb->name), "sbx-%.8s", sb->id);
	snprintf(sb->agent_id, sizeof(sb->agent_id), "%s", s->agent_id ? s->agent_id : "");
	snprintf(sb->job_id, sizeof(sb->job_id), "%s", s->job_id ? s->job_id : "");
	sb->ttl_seconds = s->ttl_seconds;
	sb->created_at = fl_unix_now();
	int r = vm_alive(sb) ? refresh_identity(e, sb, err) : fl_error_set(err, -ESRCH, "pooled VM died");
	if (r < 0) {
		destroy_locked(e, sb);
		sb_release(e, sb);
		return -ENOENT;
	}
	created(e, sb, SB_RUNNING, ret);
	return 0;
}

/*
 * Standbys. A restore of a late-root sandbox to a disk snapshot, or a
 * branch from one, needs a VM resumed from the template's pre-root state
 * with that disk mounted. Spawning one costs QEMU's start, the incoming
 * migration and the agent's hello, and then the root mount and the first
 * exec run through freshly translated code: 450-650 ms under TCG. A
 * standby is such a VM made in the background by the pool thread (one per
 * kind, once a restore or branch of that kind asked for it) and warmed by
 * mounting its throwaway disk, running a program from it and unmounting it
 * again. Taking it for sb: the standby's disk moves onto sb's new active
 * layer (QMP: the new overlay goes on top of the old disk, is reopened onto
 * its real backing layer, and the old disk is deleted), its run files move
 * into sb's directory and its process into sb's cgroup, and the agent
 * mounts sb's root.
 */
/* Warms a pool entry's translation cache: the exec path for a warm clone
 * (img NULL); for a standby, mounting, using and unmounting img's root. */
static int pool_warm(FlEngine *e, Sandbox *sb, const Image *img, FlError *err)
{
	const char *argv[] = {"/bin/true", NULL};
	FlExecSpec xs = {.argv = argv, .timeout_ms = 60000};
	char script[1024];
	if (img) {
		if (strspn(img->root_device, "/abcdefghijklmnopqrstuvwxyz0123456789") != strlen(img->root_device) ||
		    strspn(img->root_fstype, "abcdefghijklmnopqrstuvwxyz0123456789") != strlen(img->root_fstype))
			return fl_error_set(err, -EINVAL, "image %s: bad root_device or root_fstype", img->name);
		snprintf(script, sizeof(script),
			 "set -e; r=/newroot; mount -t %s %s $r; mount -t proc proc $r/proc; "
			 "mount -t sysfs sysfs $r/sys; mount -o bind /dev $r/dev; mount -t tmpfs tmpfs $r/tmp; "
			 "busybox chroot $r /bin/true; read -r h <$r/etc/hostname || true; "
			 "umount $r/tmp $r/dev $r/sys $r/proc; umount $r",
			 img->root_fstype, img->root_device);
		xs = (FlExecSpec){.shell = script, .timeout_ms = 60000};
	}
	FlExecResult xr;
	int r = ea_exec(e, sb, &xs, NULL, NULL, &xr, err);
	if (r >= 0 && xr.exit_code != 0)
		r = fl_error_set(err, -EIO, "warming a pool VM up failed (exit %d)", xr.exit_code);
	return r;
}

static struct json_object *qcow2_node(const char *name, const char *path, bool read_only)
{
	struct json_object *a = json_object_new_object(), *file = json_object_new_object();
	json_object_object_add(a, "driver", json_object_new_string("qcow2"));
	json_object_object_add(a, "node-name", json_object_new_string(name));
	json_object_object_add(a, "read-only", json_object_new_boolean(read_only));
	json_object_object_add(file, "driver", json_object_new_string("file"));
	json_object_object_add(file, "filename", json_object_new_string(path));
	json_object_object_add(a, "file", file);
	return a;
}

/* A new writable overlay for blockdev-add, without its backing (which
 * blockdev-snapshot wants so); fnode: its file node's name, or NULL. */
static struct json_object *overlay_node(const char *name, const char *fnode, const char *path)
{
	struct json_object *a = qcow2_node(name, path, false), *file, *cache = json_object_new_object();
	json_object_object_get_ex(a, "file", &file);
	if (fnode)
		json_object_object_add(file, "node-name", json_object_new_string(fnode));
	json_object_object_add(file, "aio", json_object_new_string("threads"));
	json_object_object_add(cache, "no-flush", json_object_new_boolean(1));
	json_object_object_add(a, "cache", cache);
	json_object_object_add(a, "backing", NULL);
	return a;
}

/* Puts overlay (added, without a backing) on top of node: the device
 * writes to overlay, whose backing becomes node. */
static int blockdev_snapshot(QmpClient *c, const char *node, const char *overlay, FlError *err)
{
	struct json_object *a = json_object_new_object();
	json_object_object_add(a, "node", json_object_new_string(node));
	json_object_object_add(a, "overlay", json_object_new_string(overlay));
	return qmp_call_sync(c, "blockdev-snapshot", a, -1, 10000, NULL, err);
}

/* Moves the standby x's disk onto sb's active layer, an overlay of backing. */
static int standby_disk(FlEngine *e, Sandbox *x, Sandbox *sb, const char *backing, FlError *err)
{
	char path[IMG_PATH_MAX], bpath[IMG_PATH_MAX], node[24], fnode[24], bnode[24];
	int r = layer_path(e, sb->active, path, sizeof(path), err);
	if (r >= 0)
		r = layer_path(e, backing, bpath, sizeof(bpath), err);
	if (r < 0)
		return r;
	snprintf(node, sizeof(node), "l%.16s", sb->active);
	snprintf(fnode, sizeof(fnode), "f%.16s", sb->active);
	snprintf(bnode, sizeof(bnode), "b%.16s", backing);
	_cleanup_(qmp_client_freep) QmpClient *c = NULL;
	r = qmp_connect_sync(x->vm.qmp_path, 5000, &c, err);
	if (r < 0)
		return r;
	r = qmp_call_sync(c, "blockdev-add", qcow2_node(bnode, bpath, true), -1, 10000, NULL, err);
	if (r < 0)
		return r;
	struct json_object *a = overlay_node(node, fnode, path);
	r = qmp_call_sync(c, "blockdev-add", json_object_get(a), -1, 10000, NULL, err);
	if (r < 0) {
		json_object_put(a);
		return r;
	}
	r = blockdev_snapshot(c, "disk0", node, err);
	if (r < 0) {
		json_object_put(a);
		return r;
	}
	json_object_object_add(a, "file", json_object_new_string(fnode));
	json_object_object_add(a, "backing", json_object_new_string(bnode));
	json_object_object_del(a, "read-only");
	struct json_object *opts = json_object_new_array(), *ro = json_object_new_object();
	json_object_array_add(opts, a);
	json_object_object_add(ro, "options", opts);
	r = qmp_call_sync(c, "blockdev-reopen", ro, -1, 10000, NULL, err);
	if (r < 0)
		return r;
	struct json_object *del = json_object_new_object();
	json_object_object_add(del, "node-name", json_object_new_string("disk0"));
	return qmp_call_sync(c, "blockdev-del", del, -1, 10000, NULL, err);
}

/*
 * Boots sb on its active layer (an overlay of backing) from a standby.
 * -ENOENT: no standby ready (the caller boots as usual); any other error
 * leaves sb without a VM.
 */
static int standby_boot(FlEngine *e, Sandbox *sb, const char *backing, FlError *err)
{
	if (!e->cfg.pool_size || (strcmp(sb->network, "nat") && strcmp(sb->network, "none")))
		return -ENOENT;
	char key[160];
	pool_key(sb->base_image, sb->memory_mb, sb->vcpus, sb->network, true, key);
	pthread_mutex_lock(&e->lock);
	pool_want(e, sb->base_image, sb->memory_mb, sb->vcpus, sb->network, true);
	Sandbox *x = pool_find(e, key);
	if (x && strcmp(x->template_dir, sb->template_dir))
		x = NULL; /* the image changed since sb was made: its kernel must stay */
	if (x) {
		x->pool_key[0] = 0; /* no longer claimable */
		x->refs++;
		pthread_cond_broadcast(&e->pool_cond); /* refill */
	}
	pthread_mutex_unlock(&e->lock);
	if (!x)
		return -ENOENT;
	pthread_mutex_lock(&x->op_lock);
	uint64_t t = 0;
	fl_trace("standby", &t);
	int r = vm_alive(x) ? standby_disk(e, x, sb, backing, NULL) : -ESRCH;
	fl_trace("standby disk", &t);
	if (r < 0) { /* nothing of sb's changed yet */
		destroy_locked(e, x);
		sb_release(e, x);
		return -ENOENT;
	}
	ea_disconnect(e, x);
	const char *const files[] = {"qmp.sock", "agent.sock", "console.log", "qemu.log", "qemu.pid"};
	for (size_t i = 0; i < FL_ARRAY_SIZE(files); i++) {
		char from[700], to[700];
		snprintf(from, sizeof(from), "%s/%s", x->dir, files[i]);
		snprintf(to, sizeof(to), "%s/%s", sb->dir, files[i]);
		if (rename(from, to) < 0 && !r)
			r = fl_error_set(err, -errno, "move %s: %m", from);
	}
	pthread_mutex_lock(&e->lock);
	sb->vm = x->vm;
	snprintf(sb->vm.qmp_path, sizeof(sb->vm.qmp_path), "%s/qmp.sock", sb->dir);
	snprintf(sb->vm.agent_path, sizeof(sb->vm.agent_path), "%s/agent.sock", sb->dir);
	snprintf(sb->vm.console_path, sizeof(sb->vm.console_path), "%s/console.log", sb->dir);
	sb->pid = sb->vm.pid;
	sb->ssh_port = x->ssh_port;
	x->vm.pidfd = -1;
	x->vm.pid = x->pid = 0;
	pthread_mutex_unlock(&e->lock);
	FlCgroupLimits lim = vm_limits(sb);
	if (r >= 0)
		r = fl_cgroup_add(sb->id, sb->vm.pid, &lim, err);
	destroy_locked(e, x); /* its cgroup, old disk, directory and record */
	sb_release(e, x);
	if (r >= 0)
		r = ea_connect(e, sb, AGENT_CLONE_TIMEOUT_MS, err);
	fl_trace("standby moved", &t);
	Image img;
	if (r >= 0)
		r = image_load(e, sb->base_image, &img, err);
	if (r >= 0)
		r = enter_root(e, sb, &img, err);
	fl_trace("root", &t);
	if (r < 0)
		vm_stop(e, sb);
	return r;
}

/* Boots sb on its active layer, an overlay of backing: from a standby when
 * one is ready, else as disk_boot() says. */
static int boot_disk(FlEngine *e, Sandbox *sb, const char *backing, BootKind *ret_kind, FlError *err)
{
	*ret_kind = disk_boot(e, sb);
	int r = *ret_kind == BOOT_TEMPLATE ? standby_boot(e, sb, backing, err) : -ENOENT;
	return r == -ENOENT ? vm_boot(e, sb, *ret_kind, NULL, err) : r;
}

int fl_engine_create(FlEngine *e, const FlSandboxSpec *s, struct json_object **ret, FlError *err)
{
	int r = validate_spec(e, s, err);
	if (r < 0)
		return r;
	/* Pooled clones have user networking; an allowlist must be in place
	 * before the guest runs. */
	bool pooled = !s->network || !strcmp(s->network, "nat") || !strcmp(s->network, "none");
	if (e->cfg.pool_size && pooled && !s->from_sandbox && !s->cold_boot && !s->no_start) {
		Image img;
		r = image_load(e, s->base_image, &img, err);
		if (r < 0)
			return r;
		unsigned vcpus = s->vcpus ? s->vcpus : e->cfg.default_vcpus ? e->cfg.default_vcpus : 1;
		unsigned mem = s->memory_mb ? s->memory_mb : e->cfg.default_memory_mb ? e->cfg.default_memory_mb : img.memory_mb;
		const char *net = s->network ? s->network : "nat";
		char key[160];
		pool_key(img.name, mem, vcpus, net, false, key);
		pthread_mutex_lock(&e->lock);
		pool_want(e, img.name, mem, vcpus, net, false);
		pthread_mutex_unlock(&e->lock);
		r = pool_claim(e, s, key, ret, err);
		if (r != -ENOENT)
			return r;
	}
	return create_sandbox(e, s, CREATE_SANDBOX, ret, err);
}

/* ---- queries ---------------------------------------------------------------- */

/* Notices a VM that exited on its own (crash, guest poweroff). */
static void refresh_liveness(FlEngine *e, Sandbox *sb)
{
	if ((sb->state == SB_RUNNING || sb->state == SB_STARTING) && !vm_alive(sb) && !sb->pending[0]) {
		ea_disconnect(e, sb);
		fl_vm_kill(&sb->vm);
		sb_set_state(e, sb, SB_STOPPED);
	}
}

int fl_engine_get(FlEngine *e, const char *id, struct json_object **ret, FlError *err)
{
	/* Never waits behind a long operation (snapshot, restore): while one
	 * runs, the record it keeps up to date is the answer. */
	pthread_mutex_lock(&e->lock);
	Sandbox *sb = id ? table_find(e, id) : NULL;
	if (!sb || sb->state == SB_DESTROYED) {
		pthread_mutex_unlock(&e->lock);
		return fl_error_set(err, -ENOENT, "no sandbox '%s'", id ? id : "");
	}
	sb->refs++;
	pthread_mutex_unlock(&e->lock);
	if (pthread_mutex_trylock(&sb->op_lock) == 0) {
		refresh_liveness(e, sb);
		pthread_mutex_unlock(&sb->op_lock);
	}
	*ret = sb_json(e, sb);
	pthread_mutex_lock(&e->lock);
	bool last = --sb->refs == 0 && sb->state == SB_DESTROYED;
	pthread_mutex_unlock(&e->lock);
	if (last)
		sb_free(sb);
	return 0;
}

int fl_engine_list(FlEngine *e, struct json_object **ret)
{
	struct json_object *arr = json_object_new_array();
	pthread_mutex_lock(&e->lock);
	for (size_t i = 0; i < e->n_sbs; i++)
		if (e->sbs[i]->state != SB_DESTROYED && !sb_hidden(e->sbs[i]) && !sb_internal(e->sbs[i]))
			json_object_array_add(arr, sb_to_json(e->sbs[i], false));
	pthread_mutex_unlock(&e->lock);
	*ret = arr;
	return 0;
}

/* ---- start / stop / destroy -------------------------------------------------- */

int fl_engine_start(FlEngine *e, const char *id, FlError *err)
{
	Sandbox *sb;
	int r = sb_acquire(e, id, &sb, err);
	if (r < 0)
		return r;
	refresh_liveness(e, sb);
	if (sb->state == SB_RUNNING) {
		sb_release(e, sb);
		return 0;
	}
	/* A never-started clone still starts from its template; any other
	 * sandbox's disk has moved on from saved RAM, so it boots cold. */
	bool clone = sb->state == SB_CREATED && !strcmp(sb->boot, "clone");
	char susp[700];
	suspend_path(sb, susp, sizeof(susp));
	bool resume = !clone && access(susp, R_OK) == 0;
	sb_set_state(e, sb, SB_STARTING);
	BootKind kind = clone ? BOOT_TEMPLATE : resume ? BOOT_STATE : disk_boot(e, sb);
	r = vm_boot(e, sb, kind, susp, err);
	if (r < 0 && resume) { /* a state that no longer loads (e.g. another accelerator) */
		kind = disk_boot(e, sb);
		r = vm_boot(e, sb, kind, NULL, err);
	}
	if (r >= 0 && kind != BOOT_COLD && !clone)
		set_clock(e, sb);
	unlink(susp);
	if (r >= 0 && clone)
		r = refresh_identity(e, sb, err);
	if (r < 0)
		vm_stop(e, sb);
	sb_set_state(e, sb, r < 0 ? SB_ERROR : SB_RUNNING);
	sb_release(e, sb);
	return r;
}

int fl_engine_stop(FlEngine *e, const char *id, FlError *err)
{
	Sandbox *sb;
	int r = sb_acquire(e, id, &sb, err);
	if (r < 0)
		return r;
	/* Stop suspends: RAM and devices go to a state file next to the
	 * record, the disk stays as it is, and start resumes from both. If the
	 * save fails the guest's caches are at least flushed to disk and start
	 * boots cold. */
	char susp[700];
	suspend_path(sb, susp, sizeof(susp));
	if (vm_alive(sb)) {
		FlError serr = {0};
		ea_disconnect(e, sb);
		if (vm_save_state(sb->vm.qmp_path, susp, &serr) < 0) {
			unlink(susp);
			qmp_simple(sb->vm.qmp_path, "cont", NULL, NULL, NULL);
			if (ea_connect(e, sb, 10000, NULL) >= 0)
				ea_call(e, sb, "sync", NULL, 10000, NULL, NULL);
		}
	}
	vm_stop(e, sb);
	sb_set_state(e, sb, SB_STOPPED);
	sb_release(e, sb);
	return 0;
}

static void destroy_locked(FlEngine *e, Sandbox *sb)
{
	snprintf(sb->pending, sizeof(sb->pending), "destroy");
	sb_commit(e, sb, NULL);
	vm_stop(e, sb);
	char holder[IMG_HOLDER_MAX];
	for (size_t i = 0; i < sb->n_snaps; i++) {
		holder_snap(sb, sb->snaps[i].name, holder);
		drop_layer(e, sb->snaps[i].layer, holder);
	}
	holder_active(sb, holder);
	drop_layer(e, sb->active, holder);
	gc_states(e);
	fl_rm_rf(sb->dir);
	pthread_mutex_lock(&e->lock);
	sb->state = SB_DESTROYED;
	sb->updated_at = fl_unix_now();
	table_remove(e, sb);
	pthread_mutex_unlock(&e->lock);
	emit(e, sb, "destroyed");
}

int fl_engine_destroy(FlEngine *e, const char *id, FlError *err)
{
	Sandbox *sb;
	int r = sb_acquire(e, id, &sb, err);
	if (r < 0)
		return r;
	destroy_locked(e, sb);
	sb_release(e, sb);
	return 0;
}

/* ---- exec ------------------------------------------------------------------- */

static int need_running(FlEngine *e, Sandbox *sb, FlError *err)
{
	refresh_liveness(e, sb);
	if (sb->state != SB_RUNNING)
		return fl_error_set(err, -EBUSY, "sandbox %s is %s, not RUNNING", sb->id, sb_state_name(sb->state));
	if (!sb->conn) { /* after a daemon restart, or an agent restarted in the guest */
		int r = ea_connect(e, sb, 10000, err);
		if (r < 0)
			return r;
		Image img;
		if (image_load(e, sb->base_image, &img, NULL) == 0 && (r = enter_root(e, sb, &img, err)) < 0)
			return r;
	}
	return 0;
}

int fl_engine_exec(FlEngine *e, const char *id, const FlExecSpec *spec, fl_output_fn out,
		   void *userdata, FlExecResult *ret, FlError *err)
{
	if (!spec->shell && (!spec->argv || !spec->argv[0]))
		return fl_error_set(err, -EINVAL, "command required");
	Sandbox *sb;
	int r = sb_acquire(e, id, &sb, err);
	if (r < 0)
		return r;
	r = need_running(e, sb, err);
	/* Execs run concurrently: only the liveness check holds the op lock. */
	pthread_mutex_unlock(&sb->op_lock);
	if (r >= 0)
		r = ea_exec(e, sb, spec, out, userdata, ret, err);
	pthread_mutex_lock(&sb->op_lock);
	sb_release(e, sb);
	return r;
}

int fl_engine_agent_call(FlEngine *e, const char *id, const char *op, struct json_object *args,
			 unsigned timeout_ms, struct json_object **ret, FlError *err)
{
	Sandbox *sb;
	int r = sb_acquire(e, id, &sb, err);
	if (r < 0) {
		json_object_put(args);
		return r;
	}
	r = need_running(e, sb, err);
	pthread_mutex_unlock(&sb->op_lock);
	if (r >= 0)
		r = ea_call(e, sb, op, args, timeout_ms, ret, err);
	else
		json_object_put(args);
	pthread_mutex_lock(&sb->op_lock);
	sb_release(e, sb);
	return r;
}

/* A stream holds a reference on its sandbox (not its op lock) until
 * fl_stream_finish(), so a destroy waits for nothing but ends the stream. */
int fl_engine_stream_open(FlEngine *e, const char *id, const FlStreamSpec *spec, FlStream **ret,
			  FlError *err)
{
	bool known = spec->op && (!strcmp(spec->op, "exec") || !strcmp(spec->op, "pty") ||
				  !strcmp(spec->op, "file_read") || !strcmp(spec->op, "file_write") ||
				  !strcmp(spec->op, "bg_output"));
	if (!known || (!strcmp(spec->op, "exec") || !strcmp(spec->op, "pty")) != !!spec->exec) {
		json_object_put(spec->args);
		return fl_error_set(err, -EINVAL, "unsupported stream op");
	}
	Sandbox *sb;
	int r = sb_acquire(e, id, &sb, err);
	if (r < 0) {
		json_object_put(spec->args);
		return r;
	}
	r = need_running(e, sb, err);
	if (r < 0) {
		json_object_put(spec->args);
		sb_release(e, sb);
		return r;
	}
	pthread_mutex_lock(&e->lock);
	sb->refs++;
	pthread_mutex_unlock(&e->lock);
	r = ea_stream_open(e, sb, spec, ret, err);
	if (r < 0) {
		pthread_mutex_lock(&e->lock);
		sb->refs--;
		pthread_mutex_unlock(&e->lock);
	}
	sb_release(e, sb);
	return r;
}

int fl_stream_finish(FlStream *s, struct json_object **ret, FlError *err)
{
	FlEngine *e = NULL;
	Sandbox *sb = NULL;
	int r = ea_stream_finish(s, &e, &sb, ret, err);
	pthread_mutex_lock(&e->lock);
	bool last = --sb->refs == 0 && sb->state == SB_DESTROYED;
	pthread_mutex_unlock(&e->lock);
	if (last)
		sb_free(sb);
	return r;
}

/* ---- snapshots ------------------------------------------------------------ */

/*
 * Moves the running VM onto a new active overlay of its current active
 * layer, which becomes frozen. The VM is paused (QMP stop) around the
 * switch so that no write can reach the layer after it is frozen.
 */
static int switch_layer(FlEngine *e, Sandbox *sb, char frozen[IMG_ID_SIZE], const char *ram_state,
			FlError *err)
{
	_cleanup_(qmp_client_freep) QmpClient *c = NULL;
	uint64_t tr = 0;
	fl_trace("switch", &tr);
	int r = qmp_connect_sync(sb->vm.qmp_path, 5000, &c, err);
	if (r < 0)
		return r;
	fl_trace("qmp connect", &tr);
	r = qmp_call_sync(c, "stop", NULL, -1, 10000, NULL, err);
	if (r < 0)
		return r;
	fl_trace("stop", &tr);
	char old[IMG_ID_SIZE], holder[IMG_HOLDER_MAX], path[IMG_PATH_MAX];
	memcpy(old, sb->active, IMG_ID_SIZE);
	holder_active(sb, holder);
	pthread_mutex_lock(&e->reg_lock);
	r = img_registry_freeze(e->reg, old, 0, err);
	if (r >= 0)
		r = img_registry_new_overlay_flags(e->reg, old, holder, 0, IMG_CREATE_NO_SYNC, sb->pending_layer, err);
	if (r >= 0)
		r = img_registry_layer_path(e->reg, sb->pending_layer, path, sizeof(path), err);
	pthread_mutex_unlock(&e->reg_lock);
	if (r < 0)
		goto cont;
	fl_trace("registry", &tr);
	r = sb_commit(e, sb, err); /* journal: the new layer's id */
	if (r < 0)
		goto cont;
	fl_trace("journal", &tr);
	char node[40];
	snprintf(node, sizeof(node), "l%.16s", sb->pending_layer);
	r = qmp_call_sync(c, "blockdev-add", overlay_node(node, NULL, path), -1, 10000, NULL, err);
	if (r < 0)
		goto cont;
	/* The device's current top node: "disk0" at boot, l<id> after. */
	_cleanup_(json_object_putp) struct json_object *blk = NULL;
	r = qmp_call_sync(c, "query-block", NULL, -1, 10000, &blk, err);
	if (r < 0)
		goto cont;
	const char *top = NULL;
	for (size_t i = 0; i < json_object_array_length(blk); i++) {
		struct json_object *d = json_object_array_get_idx(blk, i), *q, *ins, *nn;
		if (json_object_object_get_ex(d, "qdev", &q) && strstr(json_object_get_string(q), "vda") &&
		    json_object_object_get_ex(d, "inserted", &ins) && json_object_object_get_ex(ins, "node-name", &nn))
			top = json_object_get_string(nn);
	}
	if (!top) {
		r = fl_error_set(err, -EIO, "cannot find the sandbox disk in QEMU's block graph");
		goto cont;
	}
	r = blockdev_snapshot(c, top, node, err);
	if (r < 0)
		goto cont;
	fl_trace("qmp switch", &tr);
	memcpy(frozen, old, IMG_ID_SIZE);
	memcpy(sb->active, sb->pending_layer, IMG_ID_SIZE);
	sb->pending_layer[0] = 0;
	pthread_mutex_lock(&e->reg_lock);
	img_registry_unref(e->reg, old, holder, NULL); /* now held by its child and the snapshot */
	pthread_mutex_unlock(&e->reg_lock);
	if (ram_state) {
		qmp_client_free(TAKE_PTR(c));
		r = vm_save_state(sb->vm.qmp_path, ram_state, err);
		if (r < 0)
			unlink(ram_state);
		FlError cerr;
		int r2 = qmp_simple(sb->vm.qmp_path, "cont", NULL, NULL, &cerr);
		if (r >= 0 && r2 < 0) {
			*err = cerr;
			r = r2;
		}
		return r;
	}
cont:;
	FlError cerr;
	int r2 = c ? qmp_call_sync(c, "cont", NULL, -1, 10000, NULL, &cerr) : 0;
	if (r >= 0 && r2 < 0) {
		if (err)
			*err = cerr;
		r = r2;
	}
	return r;
}

int fl_engine_snapshot(FlEngine *e, const char *id, const char *name, bool memory,
		       struct json_object **ret, FlError *err)
{
	if (!fl_name_valid(name, FL_NAME_MAX, true))
		return fl_error_set(err, -EINVAL, "invalid snapshot name: use 1-64 letters, digits, '.', '-' or '_'");
	Sandbox *sb;
	int r = sb_acquire(e, id, &sb, err);
	if (r < 0)
		return r;
	r = need_running(e, sb, err);
	if (r < 0)
		goto out;
	if (snap_find(sb, name)) {
		r = fl_error_set(err, -EEXIST, "sandbox %s already has a snapshot '%s'", sb->id, name);
		goto out;
	}
	if (sb->n_snaps >= e->cfg.max_snapshots) {
		r = fl_error_set(err, -EUSERS, "snapshot limit reached (%u)", e->cfg.max_snapshots);
		goto out;
	}
	Snapshot *grown = realloc(sb->snaps, (sb->n_snaps + 1) * sizeof(*grown));
	if (!grown) {
		r = fl_error_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	sb->snaps = grown;

	snprintf(sb->pending, sizeof(sb->pending), "snapshot");
	snprintf(sb->pending_arg, sizeof(sb->pending_arg), "%s", name);
	r = sb_commit(e, sb, err);
	if (r < 0)
		goto out;
	/* Consistent filesystems: freeze through the agent (it thaws by itself
	 * if we die), switch layers, thaw. A guest that refuses to freeze gets
	 * a crash-consistent snapshot and the reply says so. */
	struct json_object *fa = json_object_new_object();
	json_object_object_add(fa, "timeout_ms", json_object_new_int(FREEZE_TIMEOUT_MS));
	uint64_t tr = 0;
	fl_trace("snapshot", &tr);
	bool frozen_fs = ea_call(e, sb, "fsfreeze", fa, FREEZE_TIMEOUT_MS, NULL, NULL) >= 0;
	fl_trace("fsfreeze", &tr);
	char layer[IMG_ID_SIZE], ram[800] = "";
	if (memory) {
		/* Name the state after the layer that the switch will freeze. */
		state_path(e, sb->active, ram, sizeof(ram));
	}
	r = switch_layer(e, sb, layer, memory ? ram : NULL, err);
	fl_trace("switch", &tr);
	if (frozen_fs)
		ea_call(e, sb, "fsthaw", NULL, FREEZE_TIMEOUT_MS, NULL, NULL);
	fl_trace("fsthaw", &tr);
	if (r < 0) {
		sb->pending[0] = 0;
		if (sb->pending_layer[0]) { /* created but never used */
			char holder[IMG_HOLDER_MAX];
			holder_active(sb, holder);
			drop_layer(e, sb->pending_layer, holder);
			sb->pending_layer[0] = 0;
		}
		sb_commit(e, sb, NULL);
		goto out;
	}
	char holder[IMG_HOLDER_MAX];
	holder_snap(sb, name, holder);
	pthread_mutex_lock(&e->reg_lock);
	img_registry_ref(e->reg, layer, holder, NULL);
	pthread_mutex_unlock(&e->reg_lock);

	pthread_mutex_lock(&e->lock);
	Snapshot *sn = &sb->snaps[sb->n_snaps++];
	memset(sn, 0, sizeof(*sn));
	snprintf(sn->name, sizeof(sn->name), "%s", name);
	snprintf(sn->parent, sizeof(sn->parent), "%s", sb->head);
	memcpy(sn->layer, layer, IMG_ID_SIZE);
	sn->memory = memory;
	sn->created_at = fl_unix_now();
	snprintf(sb->head, sizeof(sb->head), "%s", name);
	sb->pending[0] = 0;
	sb->updated_at = fl_unix_now();
	r = sb_save(e, sb, err);
	if (ret) {
		struct json_object *o = json_object_new_object();
		json_object_object_add(o, "name", json_object_new_string(name));
		json_object_object_add(o, "sandbox_id", json_object_new_string(sb->id));
		json_object_object_add(o, "parent", sn->parent[0] ? json_object_new_string(sn->parent) : NULL);
		json_object_object_add(o, "memory", json_object_new_boolean(memory));
		json_object_object_add(o, "consistent", json_object_new_boolean(frozen_fs));
		json_object_object_add(o, "created_at", json_object_new_int64(sn->created_at));
		*ret = o;
	}
	pthread_mutex_unlock(&e->lock);
	emit(e, sb, "snapshot");
out:
	sb_release(e, sb);
	return r;
}

/* Points the sandbox at a new overlay of the snapshot and boots it. Used by
 * restore and by recovery of an interrupted restore. */
static int restore_locked(FlEngine *e, Sandbox *sb, Snapshot *sn, FlError *err)
{
	snprintf(sb->pending, sizeof(sb->pending), "restore");
	snprintf(sb->pending_arg, sizeof(sb->pending_arg), "%s", sn->name);
	int r = sb_commit(e, sb, err);
	if (r < 0)
		return r;
	vm_stop(e, sb);
	char susp[700];
	suspend_path(sb, susp, sizeof(susp));
	unlink(susp);
	char holder[IMG_HOLDER_MAX];
	holder_active(sb, holder);
	drop_layer(e, sb->active, holder);
	sb->active[0] = 0;
	r = new_active(e, sb, sn->layer, err);
	if (r < 0)
		goto fail;
	snprintf(sb->head, sizeof(sb->head), "%s", sn->name);
	r = sb_commit(e, sb, err);
	if (r < 0)
		goto fail;
	sb_set_state(e, sb, SB_STARTING);
	BootKind kind = BOOT_STATE;
	if (sn->memory) {
		char statef[800];
		state_path(e, sn->layer, statef, sizeof(statef));
		r = vm_boot(e, sb, kind, statef, err);
	} else {
		r = boot_disk(e, sb, sn->layer, &kind, err);
	}
	if (r < 0)
		goto fail;
	if (sn->memory)
		ea_call(e, sb, "fsthaw", NULL, FREEZE_TIMEOUT_MS, NULL, NULL);
	if (kind != BOOT_COLD)
		set_clock(e, sb);
	sb->pending[0] = 0;
	sb_set_state(e, sb, SB_RUNNING);
	emit(e, sb, "restored");
	return 0;
fail:
	sb->pending[0] = 0;
	sb_set_state(e, sb, SB_ERROR);
	return r;
}

int fl_engine_restore(FlEngine *e, const char *id, const char *name, FlError *err)
{
	Sandbox *sb;
	int r = sb_acquire(e, id, &sb, err);
	if (r < 0)
		return r;
	Snapshot *sn = name ? snap_find(sb, name) : NULL;
	if (!sn)
		r = fl_error_set(err, -ENOENT, "sandbox %s has no snapshot '%s'", sb->id, name ? name : "");
	else
		r = restore_locked(e, sb, sn, err);
	sb_release(e, sb);
	return r;
}

int fl_engine_snapshot_delete(FlEngine *e, const char *id, const char *name, FlError *err)
{
	Sandbox *sb;
	int r = sb_acquire(e, id, &sb, err);
	if (r < 0)
		return r;
	Snapshot *sn = name ? snap_find(sb, name) : NULL;
	if (!sn) {
		sb_release(e, sb);
		return fl_error_set(err, -ENOENT, "sandbox %s has no snapshot '%s'", sb->id, name ? name : "");
	}
	/* Children of the deleted snapshot hang from its parent; its layer
	 * stays in the registry for as long as a newer layer is built on it. */
	char holder[IMG_HOLDER_MAX], layer[IMG_ID_SIZE], parent[FL_NAME_MAX + 1];
	memcpy(layer, sn->layer, IMG_ID_SIZE);
	snprintf(parent, sizeof(parent), "%s", sn->parent);
	holder_snap(sb, sn->name, holder);
	pthread_mutex_lock(&e->lock);
	for (size_t i = 0; i < sb->n_snaps; i++)
		if (!strcmp(sb->snaps[i].parent, name))
			snprintf(sb->snaps[i].parent, sizeof(sb->snaps[i].parent), "%s", parent);
	if (!strcmp(sb->head, name))
		snprintf(sb->head, sizeof(sb->head), "%s", parent);
	*sn = sb->snaps[--sb->n_snaps];
	sb->updated_at = fl_unix_now();
	r = sb_save(e, sb, err);
	pthread_mutex_unlock(&e->lock);
	drop_layer(e, layer, holder);
	gc_states(e);
	emit(e, sb, "snapshot_deleted");
	sb_release(e, sb);
	return r;
}

/* ---- inspectors ------------------------------------------------------------ */

typedef struct SmallOut {
	char buf[512];
	size_t len;
} SmallOut;

static void small_out(int stream, const void *buf, size_t len, void *ud)
{
	SmallOut *o = ud;
	if (stream == 1 && o->len + len < sizeof(o->buf)) {
		memcpy(o->buf + o->len, buf, len);
		o->len += len;
	}
}

/* Finds the guest device of each attached disk by its serial number. */
static int inspector_devices(FlEngine *e, Sandbox *insp, size_t n, struct json_object *disks, FlError *err)
{
	char script[1024];
	snprintf(script, sizeof(script),
		 "for k in $(seq 0 %zu); do i=0; while :; do d=''; "
		 "for s in /sys/block/*/serial; do [ \"$(cat $s 2>/dev/null)\" = fluid-insp-$k ] && d=${s%%/serial}; done; "
		 "[ -n \"$d\" ] && [ -b /dev/${d##*/} ] && { echo /dev/${d##*/}; break; }; "
		 "i=$((i+1)); [ $i -gt 300 ] && exit 1; sleep 0.1; done; done",
		 n - 1);
	FlExecSpec x = {.shell = script, .timeout_ms = 60000};
	SmallOut so = {0};
	FlExecResult res;
	int r = ea_exec(e, insp, &x, small_out, &so, &res, err);
	char *out = so.buf;
	if (r < 0)
		return r;
	if (res.exit_code != 0)
		return fl_error_set(err, -ETIMEDOUT, "hot-plugged disks did not appear in the inspector");
	char *save = NULL, *line = strtok_r(out, "\n", &save);
	for (size_t k = 0; k < n; k++, line = strtok_r(NULL, "\n", &save)) {
		if (!line)
			return fl_error_set(err, -EIO, "inspector did not report disk %zu", k);
		json_object_object_add(json_object_array_get_idx(disks, k), "device", json_object_new_string(line));
	}
	return 0;
}

int fl_engine_inspector_open(FlEngine *e, const char *id, const char *const *snapshots, size_t n,
			     struct json_object **ret, FlError *err)
{
	if (n == 0 || n > FL_HOTPLUG_PORTS)
		return fl_error_set(err, -EINVAL, "an inspector takes 1 to %d snapshots", FL_HOTPLUG_PORTS);
	char layers[FL_HOTPLUG_PORTS][IMG_ID_SIZE], image[FL_NAME_MAX + 1];
	Sandbox *src;
	int r = sb_acquire(e, id, &src, err);
	if (r < 0)
		return r;
	for (size_t k = 0; k < n && r >= 0; k++) {
		Snapshot *sn = snap_find(src, snapshots[k]);
		if (!sn)
			r = fl_error_set(err, -ENOENT, "sandbox %s has no snapshot '%s'", src->id, snapshots[k]);
		else
			memcpy(layers[k], sn->layer, IMG_ID_SIZE);
	}
	snprintf(image, sizeof(image), "%s", src->base_image);
	sb_release(e, src);
	if (r < 0)
		return r;

	/* A fresh clone of the pristine template, with no network: nothing of
	 * the sandbox's own guest takes part in the inspection. */
	FlSandboxSpec spec = {.base_image = image, .network = "none"};
	struct json_object *rec = NULL;
	r = create_sandbox(e, &spec, CREATE_INSPECTOR, &rec, err);
	if (r < 0)
		return fl_error_prefix(err, "inspector");
	struct json_object *idv;
	json_object_object_get_ex(rec, "id", &idv);
	char iid[FL_ID_LEN + 1];
	snprintf(iid, sizeof(iid), "%s", json_object_get_string(idv));
	json_object_put(rec);

	Sandbox *insp;
	r = sb_acquire(e, iid, &insp, err);
	if (r < 0)
		return r;
	struct json_object *disks = json_object_new_array();
	_cleanup_(qmp_client_freep) QmpClient *c = NULL;
	/* Hold each layer for as long as the inspector lives (its record
	 * lists them as snapshots, so destroy and recovery release them). */
	Snapshot *grown = realloc(insp->snaps, n * sizeof(*grown));
	if (!grown) {
		r = fl_error_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	insp->snaps = grown;
	for (size_t k = 0; k < n; k++) {
		char holder[IMG_HOLDER_MAX];
		Snapshot *sn = &insp->snaps[k];
		memset(sn, 0, sizeof(*sn));
		snprintf(sn->name, sizeof(sn->name), "disk%zu", k);
		memcpy(sn->layer, layers[k], IMG_ID_SIZE);
		holder_snap(insp, sn->name, holder);
		pthread_mutex_lock(&e->reg_lock);
		r = img_registry_ref(e->reg, layers[k], holder, err);
		pthread_mutex_unlock(&e->reg_lock);
		if (r < 0)
			goto fail;
		pthread_mutex_lock(&e->lock);
		insp->n_snaps = k + 1;
		pthread_mutex_unlock(&e->lock);
	}
	r = sb_commit(e, insp, err);
	if (r < 0)
		goto fail;
	r = qmp_connect_sync(insp->vm.qmp_path, 5000, &c, err);
	for (size_t k = 0; k < n && r >= 0; k++) {
		char path[IMG_PATH_MAX], node[32], dev[32], port[8], serial[32];
		r = layer_path(e, layers[k], path, sizeof(path), err);
		if (r < 0)
			break;
		snprintf(node, sizeof(node), "insp%zu", k);
		snprintf(dev, sizeof(dev), "inspdev%zu", k);
		snprintf(port, sizeof(port), "hp%zu", k);
		snprintf(serial, sizeof(serial), "fluid-insp-%zu", k);
		struct json_object *a = json_object_new_object(), *file = json_object_new_object();
		json_object_object_add(a, "driver", json_object_new_string("qcow2"));
		json_object_object_add(a, "node-name", json_object_new_string(node));
		json_object_object_add(a, "read-only", json_object_new_boolean(1));
		json_object_object_add(file, "driver", json_object_new_string("file"));
		json_object_object_add(file, "filename", json_object_new_string(path));
		json_object_object_add(file, "read-only", json_object_new_boolean(1));
		json_object_object_add(a, "file", file);
		r = qmp_call_sync(c, "blockdev-add", a, -1, 10000, NULL, err);
		if (r < 0)
			break;
		a = json_object_new_object();
		json_object_object_add(a, "driver", json_object_new_string("virtio-blk-pci"));
		json_object_object_add(a, "drive", json_object_new_string(node));
		json_object_object_add(a, "id", json_object_new_string(dev));
		json_object_object_add(a, "bus", json_object_new_string(port));
		json_object_object_add(a, "serial", json_object_new_string(serial));
		r = qmp_call_sync(c, "device_add", a, -1, 10000, NULL, err);
		struct json_object *d = json_object_new_object();
		json_object_object_add(d, "snapshot", json_object_new_string(snapshots[k]));
		json_object_array_add(disks, d);
	}
	if (r >= 0)
		r = inspector_devices(e, insp, n, disks, err);
	if (r < 0)
		goto fail;
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "id", json_object_new_string(iid));
	json_object_object_add(o, "disks", disks);
	*ret = o;
	sb_release(e, insp);
	return 0;
fail:
	json_object_put(disks);
	destroy_locked(e, insp);
	sb_release(e, insp);
	return fl_error_prefix(err, "inspector");
}

int fl_engine_inspector_close(FlEngine *e, const char *inspector_id, FlError *err)
{
	Sandbox *sb;
	int r = sb_acquire(e, inspector_id, &sb, err);
	if (r < 0)
		return r;
	if (!sb_internal(sb)) {
		sb_release(e, sb);
		return fl_error_set(err, -EINVAL, "%s is not an inspector", inspector_id);
	}
	destroy_locked(e, sb);
	sb_release(e, sb);
	return 0;
}

/* ---- status --------------------------------------------------------------- */

struct json_object *fl_engine_status(FlEngine *e)
{
	struct json_object *o = json_object_new_object();
	unsigned counts[SB_ERROR + 1] = {0}, pooled = 0, standbys = 0;
	pthread_mutex_lock(&e->lock);
	for (size_t i = 0; i < e->n_sbs; i++) {
		if (!sb_hidden(e->sbs[i]))
			counts[e->sbs[i]->state]++;
		else if (e->sbs[i]->state != SB_RUNNING)
			continue; /* still warming up */
		else if (!strncmp(e->sbs[i]->pool_key, STANDBY_KEY, strlen(STANDBY_KEY)))
			standbys++;
		else
			pooled++;
	}
	pthread_mutex_unlock(&e->lock);
	json_object_object_add(o, "warm_pool", json_object_new_int((int)pooled));
	json_object_object_add(o, "standbys", json_object_new_int((int)standbys));
	json_object_object_add(o, "pool_size", json_object_new_int((int)e->cfg.pool_size));
	struct json_object *c = json_object_new_object();
	for (int s = SB_CREATED; s <= SB_ERROR; s++)
		if (s != SB_DESTROYED)
			json_object_object_add(c, sb_state_name(s), json_object_new_int((int)counts[s]));
	json_object_object_add(o, "sandboxes", c);
	json_object_object_add(o, "max_sandboxes", json_object_new_int((int)e->cfg.max_sandboxes));
	json_object_object_add(o, "accelerator", json_object_new_string(e->cfg.accel));
	json_object_object_add(o, "cgroups", json_object_new_string(fl_cgroup_mode_name()));
	return o;
}

int fl_engine_prepare_template(FlEngine *e, const char *image, unsigned memory_mb, unsigned vcpus,
			       FlError *err)
{
	Image img;
	int r = image_load(e, image, &img, err);
	if (r < 0)
		return r;
	Template t;
	memory_mb = memory_mb ? memory_mb : e->cfg.default_memory_mb ? e->cfg.default_memory_mb : img.memory_mb;
	vcpus = vcpus ? vcpus : e->cfg.default_vcpus ? e->cfg.default_vcpus : 1;
	r = template_get(e, &img, memory_mb, vcpus, &t, err);
	if (r >= 0 && e->cfg.pool_size) {
		pthread_mutex_lock(&e->lock);
		pool_want(e, img.name, memory_mb, vcpus, "nat", false);
		pthread_mutex_unlock(&e->lock);
	}
	return r;
}

/* ---- recovery ------------------------------------------------------------- */

/* Kills QEMU processes that run from our state dir but belong to no
 * sandbox (a crash between spawn and record, or a half-built template). */
static void kill_orphans(FlEngine *e)
{
	_cleanup_(closedirp) DIR *d = opendir("/proc");
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		if (*end || pid <= 1)
			continue;
		char path[64], cmd[8192];
		snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
		_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t n = read(fd, cmd, sizeof(cmd) - 1);
		if (n <= 0)
			continue;
		cmd[n] = 0;
		for (ssize_t i = 0; i < n; i++)
			if (!cmd[i])
				cmd[i] = ' ';
		if (!strstr(cmd, "qemu-system") || !strstr(cmd, e->state_dir))
			continue;
		bool owned = false;
		for (size_t i = 0; i < e->n_sbs && !owned; i++)
			owned = e->sbs[i]->vm.pid == (pid_t)pid;
		if (!owned)
			kill((pid_t)pid, SIGKILL);
	}
}

static void recover_sandbox(FlEngine *e, Sandbox *sb)
{
	if (sb->pid > 0 && fl_vm_adopt(sb->pid, sb->dir, &sb->vm) < 0)
		sb->vm.pidfd = -1;
	char holder[IMG_HOLDER_MAX];
	holder_active(sb, holder);
	if (!strcmp(sb->pending, "create") || !strcmp(sb->pending, "destroy") || sb_hidden(sb) ||
	    sb_internal(sb)) {
		destroy_locked(e, sb);
		return;
	}
	if (!strcmp(sb->pending, "snapshot")) {
		/* Roll back: the snapshot was never acknowledged. If QEMU already
		 * runs on the new layer, keep the layer as the active one. */
		bool switched = false;
		if (sb->pending_layer[0] && vm_alive(sb)) {
			_cleanup_(json_object_putp) struct json_object *blk = NULL;
			if (qmp_simple(sb->vm.qmp_path, "query-block", NULL, &blk, NULL) >= 0)
				switched = strstr(json_object_to_json_string(blk), sb->pending_layer) != NULL;
		}
		if (switched) {
			char old[IMG_ID_SIZE];
			memcpy(old, sb->active, IMG_ID_SIZE);
			memcpy(sb->active, sb->pending_layer, IMG_ID_SIZE);
			drop_layer(e, old, holder);
		} else if (sb->pending_layer[0]) {
			drop_layer(e, sb->pending_layer, holder);
		}
		sb->pending[0] = 0;
		sb->pending_layer[0] = 0;
	}
	if (!strcmp(sb->pending, "restore")) {
		Snapshot *sn = snap_find(sb, sb->pending_arg);
		if (sn && restore_locked(e, sb, sn, NULL) >= 0)
			return;
		sb->pending[0] = 0;
	}
	if (sb->state == SB_RUNNING || sb->state == SB_STARTING)
		sb->state = vm_alive(sb) ? SB_RUNNING : SB_STOPPED;
	if (vm_alive(sb)) {
		/* An operation that died with the VM paused (snapshot switch,
		 * state save for stop) leaves it paused: resume it. */
		_cleanup_(json_object_putp) struct json_object *st = NULL;
		struct json_object *v;
		if (qmp_simple(sb->vm.qmp_path, "query-status", NULL, &st, NULL) >= 0 &&
		    json_object_object_get_ex(st, "running", &v) && !json_object_get_boolean(v))
			qmp_simple(sb->vm.qmp_path, "cont", NULL, NULL, NULL);
	} else {
		fl_vm_kill(&sb->vm);
		sb->pid = 0;
	}
	sb_save(e, sb, NULL);
}

static bool template_in_use(FlEngine *e, const char *dir)
{
	for (size_t i = 0; i < e->n_sbs; i++)
		if (!strcmp(e->sbs[i]->template_dir, dir))
			return true;
	return false;
}

static int load_sandboxes(FlEngine *e, FlError *err)
{
	_cleanup_(closedirp) DIR *d = opendir(e->sandboxes_dir);
	if (!d)
		return fl_error_set(err, -errno, "open %s: %m", e->sandboxes_dir);
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char dir[700], path[800];
		snprintf(dir, sizeof(dir), "%s/%s", e->sandboxes_dir, de->d_name);
		snprintf(path, sizeof(path), "%s/sandbox.json", dir);
		_cleanup_(json_object_putp) struct json_object *o = json_object_from_file(path);
		Sandbox *sb = sb_alloc();
		if (!sb)
			return fl_error_set(err, -ENOMEM, "out of memory");
		if (!o || sb_from_json(o, sb, NULL) < 0 || strcmp(sb->id, de->d_name)) {
			/* A directory without a valid record: a create that died
			 * before its first commit. Nothing was acknowledged. */
			sb_free(sb);
			fl_rm_rf(dir);
			continue;
		}
		snprintf(sb->dir, sizeof(sb->dir), "%s", dir);
		if (table_add(e, sb) < 0) {
			sb_free(sb);
			return fl_error_set(err, -ENOMEM, "out of memory");
		}
	}
	return 0;
}

/* ---- TTL janitor --------------------------------------------------------- */

static void *janitor_main(void *arg)
{
	FlEngine *e = arg;
	pthread_mutex_lock(&e->lock);
	while (!e->stopping) {
		int64_t now = fl_unix_now(), next = now + 30;
		char expired[FL_ID_LEN + 1] = "";
		for (size_t i = 0; i < e->n_sbs; i++) {
			Sandbox *sb = e->sbs[i];
			if (!sb->ttl_seconds || sb->state == SB_DESTROYED || sb->pending[0])
				continue;
			int64_t at = sb->created_at + (int64_t)sb->ttl_seconds;
			if (at <= now) {
				snprintf(expired, sizeof(expired), "%s", sb->id);
				break;
			}
			if (at < next)
				next = at;
		}
		if (expired[0]) {
			pthread_mutex_unlock(&e->lock);
			fl_engine_destroy(e, expired, NULL);
			pthread_mutex_lock(&e->lock);
			continue;
		}
		struct timespec ts = {.tv_sec = next};
		pthread_cond_timedwait(&e->janitor_cond, &e->lock, &ts);
	}
	pthread_mutex_unlock(&e->lock);
	return NULL;
}

/* ---- life of the engine ----------------------------------------------------- */

static void *loop_main(void *arg)
{
	FlEngine *e = arg;
	fl_loop_run(e->loop);
	return NULL;
}

int fl_engine_new(const FlEngineConfig *cfg, FlEngine **ret, FlError *err)
{
	FlEngine *e = calloc(1, sizeof(*e));
	if (!e)
		return fl_error_set(err, -ENOMEM, "out of memory");
	if (!cfg->state_dir || strlen(cfg->state_dir) > 200 || !cfg->image_dir || strlen(cfg->image_dir) > 300) {
		free(e);
		return fl_error_set(err, -ENAMETOOLONG, "state and image directories must be set and short (unix socket paths)");
	}
	e->cfg = *cfg;
	/* Under TCG, QEMU asks for huge pages on its translation buffer; the
	 * few code pages an idle clone touches then cost whole 2 MiB pages
	 * (~24 MiB per clone). The flag is inherited by every QEMU spawned
	 * from here (it survives execve); under KVM huge pages stay on. */
	if (cfg->accel && !strcmp(cfg->accel, "tcg"))
		prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
	if (!e->cfg.max_sandboxes)
		e->cfg.max_sandboxes = 64;
	if (!e->cfg.tb_size_mb)
		e->cfg.tb_size_mb = 32;
	if (!e->cfg.boot_timeout_ms)
		e->cfg.boot_timeout_ms = 300000;
	if (!e->cfg.max_snapshots)
		e->cfg.max_snapshots = 64;
	if (!e->cfg.accel)
		e->cfg.accel = "tcg";
	snprintf(e->state_dir, sizeof(e->state_dir), "%s", cfg->state_dir);
	snprintf(e->image_dir, sizeof(e->image_dir), "%s", cfg->image_dir);
	snprintf(e->sandboxes_dir, sizeof(e->sandboxes_dir), "%s/sandboxes", e->state_dir);
	snprintf(e->templates_dir, sizeof(e->templates_dir), "%s/templates", e->state_dir);
	snprintf(e->states_dir, sizeof(e->states_dir), "%s/states", e->state_dir);
	pthread_mutex_init(&e->lock, NULL);
	pthread_mutex_init(&e->reg_lock, NULL);
	pthread_mutex_init(&e->tmpl_lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_cond_init(&e->janitor_cond, &ca);
	pthread_cond_init(&e->pool_cond, &ca);
	pthread_condattr_destroy(&ca);

	const char *dirs[] = {e->state_dir, e->sandboxes_dir, e->templates_dir, e->states_dir};
	int r;
	for (size_t i = 0; i < FL_ARRAY_SIZE(dirs); i++) {
		r = fl_mkdir_p(dirs[i], 0700);
		if (r < 0) {
			fl_error_set(err, r, "mkdir %s: %s", dirs[i], strerror(-r));
			goto fail;
		}
	}
	char regdir[700];
	snprintf(regdir, sizeof(regdir), "%s/images", e->state_dir);
	r = img_registry_open(regdir, &e->reg, err);
	if (r < 0)
		goto fail;
	r = fl_loop_new(&e->loop);
	if (r < 0) {
		fl_error_set(err, r, "event loop: %s", strerror(-r));
		goto fail;
	}
	r = -pthread_create(&e->loop_thread, NULL, loop_main, e);
	if (r < 0) {
		fl_error_set(err, r, "loop thread: %s", strerror(-r));
		fl_loop_free(e->loop);
		e->loop = NULL;
		goto fail;
	}
	r = load_sandboxes(e, err);
	if (r >= 0) {
		for (size_t i = e->n_sbs; i-- > 0;) {
			Sandbox *sb = e->sbs[i];
			sb->refs = 1;
			pthread_mutex_lock(&sb->op_lock);
			recover_sandbox(e, sb);
			bool gone = sb->state == SB_DESTROYED;
			pthread_mutex_unlock(&sb->op_lock);
			sb->refs = 0;
			if (gone)
				sb_free(sb);
		}
		kill_orphans(e);
		template_gc(e, template_in_use);
		pthread_mutex_lock(&e->reg_lock);
		img_registry_gc(e->reg, NULL, NULL);
		pthread_mutex_unlock(&e->reg_lock);
		gc_states(e);
		r = -pthread_create(&e->janitor_thread, NULL, janitor_main, e);
		if (r >= 0 && e->cfg.pool_size)
			r = -pthread_create(&e->pool_thread, NULL, pool_main, e);
	}
	if (r < 0) {
		fl_engine_free(e);
		return r;
	}
	*ret = e;
	return 0;
fail:
	img_registry_free(e->reg);
	free(e);
	return r;
}

void fl_engine_free(FlEngine *e)
{
	if (!e)
		return;
	pthread_mutex_lock(&e->lock);
	e->stopping = true;
	pthread_cond_broadcast(&e->janitor_cond);
	pthread_cond_broadcast(&e->pool_cond);
	pthread_mutex_unlock(&e->lock);
	if (e->janitor_thread)
		pthread_join(e->janitor_thread, NULL);
	if (e->pool_thread)
		pthread_join(e->pool_thread, NULL);
	for (size_t i = 0; i < e->n_sbs; i++)
		ea_disconnect(e, e->sbs[i]);
	/* Sandboxes outlive the daemon; warm clones and inspectors would only
	 * be discarded at the next start, so they go now. */
	for (size_t i = e->n_sbs; i-- > 0;) {
		Sandbox *sb = e->sbs[i];
		if (sb_hidden(sb) || sb_internal(sb))
			destroy_locked(e, sb);
	}
	fl_loop_quit(e->loop);
	pthread_join(e->loop_thread, NULL);
	fl_loop_free(e->loop);
	for (size_t i = 0; i < e->n_sbs; i++)
		sb_free(e->sbs[i]); /* closes pidfds; VMs keep running */
	free(e->sbs);
	img_registry_free(e->reg);
	pthread_cond_destroy(&e->janitor_cond);
	pthread_cond_destroy(&e->pool_cond);
	free(e);
}
