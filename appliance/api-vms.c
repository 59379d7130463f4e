// SPDX-License-Identifier: MIT
/*
 * api-vms: GET /v1/vms, the base images sandboxes are made from, in the
 * fluid.sh shape {"vms": [{name, uuid, state, persistent, disk_path}]}
 * plus fluid's details (memory, inputs hash, kernel, templates built).
 *
 * DESIGN: read-only scan of the image directory (<name>/image.json) and of
 * STATE/templates/ (one directory per image, shape and accelerator, named
 * <image>-<inputs hash prefix>-..., with the template's RAM file). state is "TEMPLATE_READY" when a template of
 * the image's current build exists (creates are clones), "AVAILABLE" when
 * the first create will build it, "BROKEN" when image.json is unreadable.
 * The uuid is derived from the image's inputs hash, so it changes exactly
 * when the image's content does.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cleanup.h"
#include "engine-service.h"

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)
FL_DEFINE_CLEANUP(DIR *, closedir)

static int cmp_names(const void *a, const void *b)
{
	struct json_object *x = *(struct json_object *const *)a, *y = *(struct json_object *const *)b;
	return strcmp(json_object_get_string(json_object_object_get(x, "name")),
		      json_object_get_string(json_object_object_get(y, "name")));
}

static struct json_object *templates_of(const char *state_dir, const char *name, const char *hash)
{
	char dir[PATH_MAX], prefix[200];
	struct json_object *arr = json_object_new_array();
	snprintf(dir, sizeof(dir), "%s/templates", state_dir);
	/* the engine names them <image>-<first 12 of the hash>-<shape>-<accel> */
	snprintf(prefix, sizeof(prefix), "%s-%.12s", name, hash);
	_cleanup_(closedirp) DIR *d = opendir(dir);
	struct dirent *de;
	while (arr && d && (de = readdir(d))) {
		size_t l = strlen(de->d_name);
		if (strncmp(de->d_name, prefix, strlen(prefix)) || (l > 6 && !strcmp(de->d_name + l - 6, ".build")))
			continue;
		char tj[PATH_MAX + 300];
		struct stat st;
		snprintf(tj, sizeof(tj), "%s/%s/ram", dir, de->d_name);
		if (stat(tj, &st) == 0 && S_ISREG(st.st_mode))
			json_object_array_add(arr, json_object_new_string(de->d_name));
	}
	return arr;
}

static int get_vms(FlHttpReq *req)
{
	const char *image_dir = fl_api_image_dir();
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	struct json_object *arr = json_object_new_array();
	if (!o || !arr) {
		json_object_put(arr);
		return fl_http_fail(req, -ENOMEM, "out of memory");
	}
	json_object_object_add(o, "vms", arr);
	_cleanup_(closedirp) DIR *d = image_dir && *image_dir ? opendir(image_dir) : NULL;
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (!fl_api_name_ok(de->d_name, 63))
			continue;
		char path[PATH_MAX + 300], disk[PATH_MAX + 300];
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s/image.json", image_dir, de->d_name);
		snprintf(disk, sizeof(disk), "%s/%s/disk.qcow2", image_dir, de->d_name);
		if (stat(path, &st) < 0)
			continue;
		_cleanup_(json_object_putp) struct json_object *img = json_object_from_file(path);
		struct json_object *vm = json_object_new_object();
		const char *hash = img ? json_object_get_string(json_object_object_get(img, "inputs_hash")) : NULL;
		char uuid[40] = "";
		if (hash && strlen(hash) >= 16 && fl_api_name_ok(hash, 64)) {
			/* a stable uuid-shaped id from the 64-bit inputs hash */
			snprintf(uuid, sizeof(uuid), "%.8s-%.4s-4%.3s-8%.1s00-000000000000", hash, hash + 8,
				 hash + 12, hash + 15);
		}
		struct json_object *tmpl = img && hash ? templates_of(req->app->cfg->state_dir, de->d_name, hash)
						       : json_object_new_array();
		const char *state = !img || !hash ? "BROKEN"
				    : json_object_array_length(tmpl) ? "TEMPLATE_READY" : "AVAILABLE";
		json_object_object_add(vm, "name", json_object_new_string(de->d_name));
		json_object_object_add(vm, "uuid", uuid[0] ? json_object_new_string(uuid) : NULL);
		json_object_object_add(vm, "state", json_object_new_string(state));
		json_object_object_add(vm, "persistent", json_object_new_boolean(1));
		json_object_object_add(vm, "disk_path", json_object_new_string(disk));
		json_object_object_add(vm, "inputs_hash", hash ? json_object_new_string(hash) : NULL);
		json_object_object_add(vm, "memory_mb",
				       img ? json_object_get(json_object_object_get(img, "memory_mb")) : NULL);
		json_object_object_add(vm, "kernel",
				       img ? json_object_get(json_object_object_get(img, "kernel")) : NULL);
		json_object_object_add(vm, "built_at",
				       img ? json_object_get(json_object_object_get(img, "built_at")) : NULL);
		json_object_object_add(vm, "default",
				       json_object_new_boolean(!strcmp(de->d_name, req->app->cfg->images.default_image)));
		json_object_object_add(vm, "templates", tmpl);
		json_object_array_add(arr, vm);
	}
	size_t n = json_object_array_length(arr);
	if (n > 1)
		json_object_array_sort(arr, cmp_names);
	json_object_object_add(o, "total", json_object_new_int64((int64_t)n));
	return fl_http_send_json(req, 200, o);
}
FL_ROUTE(get_vms, "GET", "/v1/vms", FL_ROLE_AGENT);
