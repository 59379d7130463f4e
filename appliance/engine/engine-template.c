// SPDX-License-Identifier: MIT
/*
 * engine-template: base images and templates.
 *
 * A template is a base image booted once to a ready guest agent and then
 * paused and saved: its RAM lives in a file the template QEMU mapped shared
 * (STATE/templates/<key>/ram), its device state in a small file
 * (STATE/templates/<key>/state, saved with x-ignore-shared so RAM is not in
 * the stream), and its disk in a frozen registry layer. A clone maps the
 * same RAM file copy-on-write, loads the device state and runs on a new
 * overlay of the frozen layer: no guest boot at all.
 *
 * The key covers the image's inputs hash, the VM shape and the accelerator
 * (device state is not portable between KVM and TCG); a template is rebuilt
 * when any of them changes. Builds happen in <key>.build and are renamed
 * into place when complete, so an interrupted build is never used.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "engine-internal.h"
#include "qmp.h"


static int read_json_file(const char *path, struct json_object **ret, FlError *err)
{
	struct json_object *o = json_object_from_file(path);
	if (!o)
		return fl_error_set(err, -ENOENT, "cannot read %s", path);
	*ret = o;
	return 0;
}

static int json_str(struct json_object *o, const char *key, char *buf, size_t len)
{
	struct json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string) ||
	    (size_t)json_object_get_string_len(v) >= len)
		return -EINVAL;
	strcpy(buf, json_object_get_string(v));
	return 0;
}

int image_load(FlEngine *e, const char *name, Image *img, FlError *err)
{
	memset(img, 0, sizeof(*img));
	if (!fl_name_valid(name, FL_NAME_MAX, true))
		return fl_error_set(err, -EINVAL, "invalid image name");
	snprintf(img->name, sizeof(img->name), "%s", name);
	snprintf(img->dir, sizeof(img->dir), "%s/%s", e->image_dir, name);
	char meta[700];
	snprintf(meta, sizeof(meta), "%s/image.json", img->dir);
	if (access(meta, R_OK) < 0)
		return fl_error_set(err, -ENOENT, "unknown base image '%s' (no %s)", name, meta);
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	int r = read_json_file(meta, &o, err);
	if (r < 0)
		return r;
	if (json_str(o, "cmdline", img->cmdline, sizeof(img->cmdline)) < 0 ||
	    json_str(o, "inputs_hash", img->inputs_hash, sizeof(img->inputs_hash)) < 0)
		return fl_error_set(err, -EINVAL, "%s: missing cmdline or inputs_hash", meta);
	struct json_object *m;
	img->late_root = json_object_object_get_ex(o, "late_root", &m) && json_object_get_boolean(m);
	if (json_str(o, "root_device", img->root_device, sizeof(img->root_device)) < 0)
		snprintf(img->root_device, sizeof(img->root_device), "/dev/vda");
	if (json_str(o, "root_fstype", img->root_fstype, sizeof(img->root_fstype)) < 0)
		snprintf(img->root_fstype, sizeof(img->root_fstype), "ext4");
	img->memory_mb = json_object_object_get_ex(o, "memory_mb", &m) ? (unsigned)json_object_get_int(m) : 256;
	if (img->memory_mb < 64 || img->memory_mb > 65536)
		img->memory_mb = 256;
	snprintf(img->kernel, sizeof(img->kernel), "%s/vmlinuz", img->dir);
	snprintf(img->initrd, sizeof(img->initrd), "%s/initrd.img", img->dir);
	snprintf(img->disk, sizeof(img->disk), "%s/disk.qcow2", img->dir);
	if (access(img->kernel, R_OK) < 0 || access(img->initrd, R_OK) < 0 || access(img->disk, R_OK) < 0)
		return fl_error_set(err, -ENOENT, "image '%s' is incomplete (kernel, initrd or disk missing)", name);
	return 0;
}

int image_base_layer(FlEngine *e, const Image *img, char ret_id[IMG_ID_SIZE], FlError *err)
{
	char idfile[800];
	snprintf(idfile, sizeof(idfile), "%s/base-%s-%.16s.id", e->templates_dir, img->name, img->inputs_hash);
	_cleanup_fclose_ FILE *f = fopen(idfile, "re");
	if (f) {
		char id[IMG_ID_SIZE + 2] = "";
		if (fgets(id, sizeof(id), f) && strlen(id) >= IMG_ID_LEN) {
			id[IMG_ID_LEN] = 0;
			ImgLayer info;
			pthread_mutex_lock(&e->reg_lock);
			int r = img_registry_layer_info(e->reg, id, &info, NULL);
			pthread_mutex_unlock(&e->reg_lock);
			if (r == 0) {
				memcpy(ret_id, id, IMG_ID_SIZE);
				return 0;
			}
		}
	}
	char holder[IMG_HOLDER_MAX];
	snprintf(holder, sizeof(holder), "image-%s-%.16s", img->name, img->inputs_hash);
	pthread_mutex_lock(&e->reg_lock);
	int r = img_registry_import(e->reg, img->disk, img->name, holder, ret_id, err);
	pthread_mutex_unlock(&e->reg_lock);
	if (r < 0)
		return fl_error_prefix(err, "import base image %s", img->name);
	char line[IMG_ID_SIZE + 1];
	snprintf(line, sizeof(line), "%s\n", ret_id);
	return fl_save_file(idfile, line, strlen(line), err);
}

int qmp_simple(const char *qmp_path, const char *cmd, struct json_object *args,
	       struct json_object **ret, FlError *err)
{
	_cleanup_(qmp_client_freep) QmpClient *c = NULL;
	int r = qmp_connect_sync(qmp_path, 5000, &c, err);
	if (r < 0) {
		json_object_put(args);
		return r;
	}
	return qmp_call_sync(c, cmd, args, -1, 30000, ret, err);
}

int vm_save_state(const char *qmp_path, const char *path, FlError *err)
{
	_cleanup_(qmp_client_freep) QmpClient *c = NULL;
	int r = qmp_connect_sync(qmp_path, 5000, &c, err);
	if (r < 0)
		return r;
	r = qmp_call_sync(c, "stop", NULL, -1, 10000, NULL, err);
	if (r < 0)
		return r;
	r = qmp_call_sync(c, "migrate-set-capabilities", fl_vm_migration_caps(), -1, 10000, NULL, err);
	if (r < 0)
		return r;
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return fl_error_set(err, -errno, "create %s: %m", path);
	struct json_object *a = json_object_new_object();
	json_object_object_add(a, "fdname", json_object_new_string("state"));
	r = qmp_call_sync(c, "getfd", a, fd, 10000, NULL, err);
	if (r < 0)
		return r;
	a = json_object_new_object();
	json_object_object_add(a, "uri", json_object_new_string("fd:state"));
	r = qmp_call_sync(c, "migrate", a, -1, 10000, NULL, err);
	if (r < 0)
		return r;
	r = fl_vm_wait_migration(c, 120000, err);
	if (r < 0)
		return fl_error_prefix(err, "saving VM state");
	if (fsync(fd) < 0)
		return fl_error_set(err, -errno, "fsync %s: %m", path);
	return 0;
}

struct json_object *image_root_args(const Image *img)
{
	struct json_object *a = json_object_new_object();
	json_object_object_add(a, "device", json_object_new_string(img->root_device));
	json_object_object_add(a, "fstype", json_object_new_string(img->root_fstype));
	return a;
}

/* A template's saved files: the first two always, all four when rooted. */
static const char *const template_files[] = {"ram", "state", "ram-rooted", "state-rooted"};

static int template_load(Template *t)
{
	char meta[700];
	snprintf(meta, sizeof(meta), "%s/template.json", t->dir);
	_cleanup_(json_object_putp) struct json_object *o = json_object_from_file(meta);
	if (!o || json_str(o, "layer", t->layer, sizeof(t->layer)) < 0)
		return -ENOENT;
	struct json_object *v;
	t->rooted = json_object_object_get_ex(o, "rooted", &v) && json_object_get_boolean(v);
	for (size_t i = 0; i < (t->rooted ? 4 : 2); i++) {
		char p[800];
		snprintf(p, sizeof(p), "%s/%s", t->dir, template_files[i]);
		if (access(p, R_OK) < 0)
			return -ENOENT;
	}
	return 0;
}

/*
 * Late-root images get a second, rooted state from the same build: the
 * pre-root one (ram, state) resumes on any disk layer and serves restores
 * and starts, which mount their own layer; the rooted one (ram-rooted,
 * state-rooted) has the template's layer mounted already, so a fresh clone
 * skips the mount (150-300 ms of freshly translated code under TCG) and
 * shares the page cache it filled. The VM is paused on the pre-root save:
 * keep a copy of that RAM, resume, enter the root, flush the journal, save
 * again. The template's layer is frozen after this second save.
 */
static int template_root(const Image *img, const char *build, FlVm *vm, FlError *err)
{
	char ram[800], preroot[800], rooted[800], state[800];
	snprintf(ram, sizeof(ram), "%s/ram", build);
	snprintf(preroot, sizeof(preroot), "%s/ram.preroot", build);
	snprintf(rooted, sizeof(rooted), "%s/ram-rooted", build);
	snprintf(state, sizeof(state), "%s/state-rooted", build);
	int r = img_copy_file(ram, preroot, NULL, NULL, err);
	if (r < 0)
		return fl_error_prefix(err, "copying the template's RAM");
	r = qmp_simple(vm->qmp_path, "cont", NULL, NULL, err);
	if (r < 0)
		return r;
	{
		_cleanup_(agent_client_freep) AgentClient *ac = NULL;
		r = agent_connect_sync(vm->agent_path, 60000, &ac, err);
		if (r < 0)
			return fl_error_prefix(err, "template agent after the pre-root save");
		r = agent_call_sync(ac, "root", image_root_args(img), 120000, NULL, err);
		if (r < 0)
			return fl_error_prefix(err, "template: entering the root filesystem");
		/* Freezing flushes the journal: the frozen layer holds every
		 * change in place, as snapshots do. */
		r = agent_fsfreeze_sync(ac, 60000, 60000, NULL, err);
		if (r >= 0)
			r = agent_fsthaw_sync(ac, 60000, NULL, err);
		if (r < 0)
			return fl_error_prefix(err, "template: flushing the root filesystem");
	}
	r = vm_save_state(vm->qmp_path, state, err);
	if (r < 0)
		return r;
	if (rename(ram, rooted) < 0 || rename(preroot, ram) < 0)
		return fl_error_set(err, -errno, "rename template RAM files: %m");
	return 0;
}

static int template_build(FlEngine *e, const Image *img, Template *t, FlError *err)
{
	char base[IMG_ID_SIZE], build[700], holder[IMG_HOLDER_MAX], disk[IMG_PATH_MAX];
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	int r = image_base_layer(e, img, base, err);
	if (r < 0)
		return r;
	snprintf(build, sizeof(build), "%s.build", t->dir);
	fl_rm_rf(build);
	r = fl_mkdir_p(build, 0700);
	if (r < 0)
		return fl_error_set(err, r, "mkdir %s: %s", build, strerror(-r));
	snprintf(holder, sizeof(holder), "template-%s", strrchr(t->dir, '/') + 1);
	pthread_mutex_lock(&e->reg_lock);
	r = img_registry_new_overlay(e->reg, base, holder, 0, t->layer, err);
	if (r >= 0)
		r = img_registry_layer_path(e->reg, t->layer, disk, sizeof(disk), err);
	pthread_mutex_unlock(&e->reg_lock);
	if (r < 0)
		return fl_error_prefix(err, "template layer");
	/* So that a crash mid-build can release the layer (template_gc). */
	char idfile[800], line[IMG_ID_SIZE + 1];
	snprintf(idfile, sizeof(idfile), "%s/layer.id", build);
	snprintf(line, sizeof(line), "%s\n", t->layer);
	fl_save_file(idfile, line, strlen(line), NULL);

	char ram[800];
	snprintf(ram, sizeof(ram), "%s/ram", build);
	FlVmSpec spec = {
		.tap_fd = -1,
		.run_dir = build, .accel = e->cfg.accel, .vcpus = t->vcpus, .memory_mb = t->memory_mb,
		.kernel = img->kernel, .initrd = img->initrd, .cmdline = img->cmdline, .disk = disk,
		.ram_path = ram, .ram_shared = true, .boot = FL_BOOT_COLD, .tb_size_mb = e->cfg.tb_size_mb,
	};
	FlVm vm;
	r = fl_vm_spawn(&spec, &vm, err);
	if (r < 0)
		goto fail_layer;
	{
		_cleanup_(agent_client_freep) AgentClient *ac = NULL;
		r = agent_connect_sync(vm.agent_path, e->cfg.boot_timeout_ms, &ac, err);
		if (r < 0) {
			fl_error_prefix(err, "template boot of %s (console: %s)", img->name, vm.console_path);
			goto fail_vm;
		}
		/* Let the guest finish booting so that clones do not each redo
		 * the rest of it: systemd's jobs, then the network (the DHCP
		 * client's lease and script, IPv6 duplicate address detection
		 * and autoconfiguration), whose addresses (lifetimes aside) must
		 * be unchanged and none tentative over 5 checks (at least 1.5 s;
		 * each check forks, which costs more under TCG). Unsettled,
		 * every clone ran that work itself after its resume: about
		 * 20,000 freshly translated blocks (11 MiB of TCG buffer)
		 * competing with its first commands. Then flush the guest's
		 * caches. */
		AgentExecSpec settle = {
			.shell = "if command -v systemctl >/dev/null; then "
				 "timeout 240 systemctl is-system-running --wait >/dev/null 2>&1; fi\n"
				 "last=; quiet=0; n=0\n"
				 "while [ $quiet -lt 5 ] && [ $n -lt 100 ]; do\n"
				 "  now=$(ip -o addr show 2>/dev/null | while read -r l; do echo \"${l%%valid_lft*}\"; done); busy=\n"
				 "  case \"$now\" in *tentative*) busy=1;; esac\n"
				 "  [ -n \"$(ip -4 -o addr show scope global 2>/dev/null)\" ] || busy=1\n"
				 "  if [ -z \"$busy\" ] && [ \"$now\" = \"$last\" ]; then quiet=$((quiet + 1)); else quiet=0; fi\n"
				 "  last=$now; n=$((n + 1)); sleep 0.3\n"
				 "done\n"
				 "sync",
			.timeout_ms = 300000,
		};
		AgentExecResult res;
		r = agent_exec_sync(ac, &settle, -1, -1, -1, 310000, &res, err);
		if (r < 0)
			goto fail_vm;
	} /* the agent is disconnected before the save: clones start unconnected */
	char state[800];
	snprintf(state, sizeof(state), "%s/state", build);
	r = vm_save_state(vm.qmp_path, state, err);
	if (r < 0)
		goto fail_vm;
	if (img->late_root) {
		r = template_root(img, build, &vm, err);
		if (r < 0)
			goto fail_vm;
	}
	fl_vm_kill(&vm);
	pthread_mutex_lock(&e->reg_lock);
	r = img_registry_freeze(e->reg, t->layer, 0, err);
	pthread_mutex_unlock(&e->reg_lock);
	if (r < 0)
		goto fail_layer;
	/* Sockets and logs of the build VM are not part of the template. */
	const char *junk[] = {"qmp.sock", "agent.sock", "qemu.pid"};
	for (size_t i = 0; i < FL_ARRAY_SIZE(junk); i++) {
		char p[800];
		snprintf(p, sizeof(p), "%s/%s", build, junk[i]);
		unlink(p);
	}
	for (size_t i = 0; i < FL_ARRAY_SIZE(template_files); i++) {
		char p[800];
		snprintf(p, sizeof(p), "%s/%s", build, template_files[i]);
		chmod(p, 0400);
	}
	o = json_object_new_object();
	json_object_object_add(o, "rooted", json_object_new_boolean(img->late_root));
	json_object_object_add(o, "image", json_object_new_string(img->name));
	json_object_object_add(o, "inputs_hash", json_object_new_string(img->inputs_hash));
	json_object_object_add(o, "layer", json_object_new_string(t->layer));
	json_object_object_add(o, "memory_mb", json_object_new_int((int)t->memory_mb));
	json_object_object_add(o, "vcpus", json_object_new_int((int)t->vcpus));
	json_object_object_add(o, "accel", json_object_new_string(e->cfg.accel));
	json_object_object_add(o, "created_at", json_object_new_int64(fl_unix_now()));
	char meta[800];
	snprintf(meta, sizeof(meta), "%s/template.json", build);
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY);
	r = fl_save_file(meta, s, strlen(s), err);
	if (r < 0)
		goto fail_layer;
	fl_rm_rf(t->dir);
	if (rename(build, t->dir) < 0) {
		r = fl_error_set(err, -errno, "rename %s: %m", build);
		goto fail_layer;
	}
	t->rooted = img->late_root;
	return 0;

fail_vm:
	fl_vm_kill(&vm);
fail_layer:
	pthread_mutex_lock(&e->reg_lock);
	img_registry_unref(e->reg, t->layer, holder, NULL);
	img_registry_gc(e->reg, NULL, NULL);
	pthread_mutex_unlock(&e->reg_lock);
	fl_rm_rf(build);
	return r;
}

int template_get(FlEngine *e, const Image *img, unsigned memory_mb, unsigned vcpus, Template *t,
		 FlError *err)
{
	memset(t, 0, sizeof(*t));
	t->memory_mb = memory_mb;
	t->vcpus = vcpus;
	snprintf(t->dir, sizeof(t->dir), "%s/%s-%.12s-%um-%uc-%s-d%d", e->templates_dir, img->name,
		 img->inputs_hash, memory_mb, vcpus, e->cfg.accel, FL_DEVICE_SET);
	pthread_mutex_lock(&e->tmpl_lock);
	int r = template_load(t);
	if (r < 0)
		r = template_build(e, img, t, err);
	pthread_mutex_unlock(&e->tmpl_lock);
	return r;
}

/* Releases a template directory's layer and removes the directory. */
static void template_remove(FlEngine *e, const char *dir, const char *name)
{
	char path[1200], layer[IMG_ID_SIZE + 2] = "", holder[IMG_HOLDER_MAX];
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	snprintf(path, sizeof(path), "%s/template.json", dir);
	o = json_object_from_file(path);
	if (!o || json_str(o, "layer", layer, sizeof(layer)) < 0) {
		snprintf(path, sizeof(path), "%s/layer.id", dir);
		_cleanup_fclose_ FILE *f = fopen(path, "re");
		if (!f || !fgets(layer, sizeof(layer), f))
			layer[0] = 0;
		layer[strcspn(layer, "\n")] = 0;
	}
	snprintf(holder, sizeof(holder), "template-%s", name);
	if (strlen(layer) == IMG_ID_LEN) {
		pthread_mutex_lock(&e->reg_lock);
		img_registry_unref(e->reg, layer, holder, NULL);
		pthread_mutex_unlock(&e->reg_lock);
	}
	fl_rm_rf(dir);
}

void template_gc(FlEngine *e, bool (*in_use)(FlEngine *e, const char *dir))
{
	_cleanup_(closedirp) DIR *d = opendir(e->templates_dir);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char dir[1100];
		snprintf(dir, sizeof(dir), "%s/%s", e->templates_dir, de->d_name);
		size_t n = strlen(de->d_name);
		if (n > 6 && !strcmp(de->d_name + n - 6, ".build")) { /* an interrupted build */
			char name[300];
			snprintf(name, sizeof(name), "%.*s", (int)(n - 6), de->d_name);
			template_remove(e, dir, name);
			continue;
		}
		if (n > 3 && !strcmp(de->d_name + n - 3, ".id")) {
			/* base-<image>-<hash16>.id: drop the import once the image moved on */
			char image[FL_NAME_MAX + 1], hash[20];
			if (sscanf(de->d_name, "base-%64[^.]", image) != 1)
				continue;
			char *dash = strrchr(image, '-');
			if (!dash)
				continue;
			snprintf(hash, sizeof(hash), "%s", dash + 1);
			*dash = 0;
			Image img;
			if (image_load(e, image, &img, NULL) == 0 && !strncmp(img.inputs_hash, hash, strlen(hash)))
				continue;
			char id[IMG_ID_SIZE + 2] = "", holder[IMG_HOLDER_MAX];
			_cleanup_fclose_ FILE *f = fopen(dir, "re");
			if (f && fgets(id, sizeof(id), f)) {
				id[strcspn(id, "\n")] = 0;
				snprintf(holder, sizeof(holder), "image-%s-%s", image, hash);
				pthread_mutex_lock(&e->reg_lock);
				img_registry_unref(e->reg, id, holder, NULL);
				pthread_mutex_unlock(&e->reg_lock);
			}
			unlink(dir);
			continue;
		}
		char path[1200], image[FL_NAME_MAX + 1] = "", hash[80] = "";
		snprintf(path, sizeof(path), "%s/template.json", dir);
		_cleanup_(json_object_putp) struct json_object *o = json_object_from_file(path);
		if (o && (json_str(o, "image", image, sizeof(image)) < 0 || json_str(o, "inputs_hash", hash, sizeof(hash)) < 0))
			image[0] = 0;
		Image img;
		bool current = image[0] && image_load(e, image, &img, NULL) == 0 && !strcmp(img.inputs_hash, hash);
		if (!current && !in_use(e, dir))
			template_remove(e, dir, de->d_name);
	}
}
