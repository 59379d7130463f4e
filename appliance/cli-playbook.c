// SPDX-License-Identifier: MIT
/*
 * cli-playbook: `fluid playbook ...`.
 *
 *   generate DIFF.json [--name N] [--hosts H] [--json] [--out DIR]
 *       offline: a diff_json (or a Diff object with one) -> YAML on stdout,
 *       or the playbook JSON with --json; --out DIR writes DIR/playbook.yml
 *       and DIR/files/<sha256> for every blob the diff carries.
 *   list | show NAME | export NAME | delete NAME | generate-from SANDBOX [--name N]
 *       through the server's API (docs/ansible.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ansible.h"
#include "base64.h"
#include "cleanup.h"
#include "cli.h"
#include "fsutil.h"

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)

static int write_file(const char *dir, const char *name, const void *data, size_t len, mode_t mode)
{
	char path[4096];
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
		return -ENAMETOOLONG;
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0)
		return -errno;
	return fl_write_all(fd, data, len);
}

static int generate_local(int argc, char **argv)
{
	static const struct option opts[] = {{"name", required_argument, NULL, 'n'},
					     {"hosts", required_argument, NULL, 'H'},
					     {"json", no_argument, NULL, 'j'},
					     {"out", required_argument, NULL, 'o'},
					     {NULL, 0, NULL, 0}};
	const char *name = NULL, *hosts = NULL, *out = NULL;
	bool as_json = false;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "n:H:jo:", opts, NULL)) != -1) {
		switch (c) {
		case 'n': name = optarg; break;
		case 'H': hosts = optarg; break;
		case 'j': as_json = true; break;
		case 'o': out = optarg; break;
		default: return 2;
		}
	}
	if (optind + 1 != argc) {
		fl_cli_error("usage: fluid playbook generate DIFF.json [--name N] [--hosts H] "
			     "[--json] [--out DIR]");
		return 2;
	}
	_cleanup_(json_object_putp) struct json_object *in = json_object_from_file(argv[optind]);
	if (!in) {
		fl_cli_error("%s: cannot read JSON: %s", argv[optind], json_util_get_last_err());
		return 1;
	}
	struct json_object *diff = in, *dj;
	if (json_object_object_get_ex(in, "diff", &dj))
		in = json_object_get(dj), json_object_put(diff), diff = in;
	if (json_object_object_get_ex(diff, "diff_json", &dj))
		diff = dj;
	FlAnsibleGenOptions go = {.name = name, .hosts = hosts};
	_cleanup_(json_object_putp) struct json_object *pb = NULL;
	FlError err = {0};
	int r = fl_ansible_generate(diff, &go, &pb, &err);
	if (r < 0) {
		fl_cli_error("%s", err.msg);
		return 1;
	}
	if (as_json) {
		puts(json_object_to_json_string_ext(pb, JSON_C_TO_STRING_PRETTY |
								JSON_C_TO_STRING_NOSLASHESCAPE));
		return 0;
	}
	_cleanup_free_ char *yaml = NULL;
	size_t len;
	if ((r = fl_ansible_yaml(pb, &yaml, &len, &err)) < 0) {
		fl_cli_error("%s", err.msg);
		return 1;
	}
	if (!out)
		return fl_write_all(STDOUT_FILENO, yaml, len) < 0 ? 1 : 0;
	char files_dir[4096];
	snprintf(files_dir, sizeof(files_dir), "%s/files", out);
	if ((mkdir(out, 0755) < 0 && errno != EEXIST) || (mkdir(files_dir, 0755) < 0 && errno != EEXIST)) {
		fl_cli_error("%s: %m", out);
		return 1;
	}
	if ((r = write_file(out, "playbook.yml", yaml, len, 0644)) < 0) {
		fl_cli_error("%s/playbook.yml: %s", out, strerror(-r));
		return 1;
	}
	struct json_object *files;
	int missing = 0;
	if (json_object_object_get_ex(pb, "files", &files)) {
		size_t n = json_object_array_length(files);
		for (size_t i = 0; i < n; i++) {
			struct json_object *f = json_object_array_get_idx(files, i), *v;
			const char *src = json_object_get_string(
				json_object_object_get_ex(f, "src", &v) ? v : NULL);
			if (!json_object_object_get_ex(f, "content_b64", &v)) {
				missing++;
				continue;
			}
			_cleanup_free_ char *data = NULL;
			size_t dl;
			if (!src || fl_base64_decode(json_object_get_string(v), &data, &dl) < 0 ||
			    (r = write_file(out, src, data, dl, 0644)) < 0) {
				fl_cli_error("%s: cannot write", src ? src : "?");
				return 1;
			}
		}
	}
	if (missing)
		fprintf(stderr, "fluid: %d file(s) under %s/files must still be fetched (content "
				"not in the diff)\n", missing, out);
	return 0;
}

/* ---- through the server ------------------------------------------------- */

static int api(const char *method, const char *path, const char *body, struct json_object **ret)
{
	_cleanup_free_ char *token = fl_client_token(NULL);
	FlClientResponse resp = {0};
	FlError err = {0};
	int r = fl_client_request(fl_client_url(NULL), method, path, token, body,
				  body ? strlen(body) : 0, 600000, &resp, &err);
	if (r < 0) {
		fl_cli_error("%s", err.msg);
		return 1;
	}
	struct json_object *j = resp.body && resp.len ? json_tokener_parse(resp.body) : NULL;
	if (resp.status >= 300) {
		struct json_object *m;
		fl_cli_error("%d: %s", resp.status,
			     j && json_object_object_get_ex(j, "error", &m) ? json_object_get_string(m)
									 : (resp.body ? resp.body : ""));
		json_object_put(j);
		fl_client_response_clear(&resp);
		return 1;
	}
	fl_client_response_clear(&resp);
	*ret = j;
	return 0;
}

int fl_cmd_playbook(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: fluid playbook generate DIFF.json [--json] [--out DIR]\n"
				"       fluid playbook list | show NAME | export NAME | delete NAME\n"
				"       fluid playbook generate-from SANDBOX [NAME]\n");
		return 2;
	}
	const char *sub = argv[1];
	if (!strcmp(sub, "generate"))
		return generate_local(argc - 1, argv + 1);
	_cleanup_(json_object_putp) struct json_object *j = NULL;
	char path[512];
	if (!strcmp(sub, "list") && argc == 2) {
		if (api("GET", "/v1/ansible/playbooks", NULL, &j))
			return 1;
		struct json_object *arr;
		if (json_object_object_get_ex(j, "playbooks", &arr))
			for (size_t i = 0; i < json_object_array_length(arr); i++) {
				struct json_object *p = json_object_array_get_idx(arr, i), *v;
				printf("%s\n", json_object_object_get_ex(p, "name", &v)
						       ? json_object_get_string(v) : "?");
			}
		return 0;
	}
	if (argc == 3 && fl_ansible_name_valid(argv[2]) &&
	    (!strcmp(sub, "show") || !strcmp(sub, "export") || !strcmp(sub, "delete"))) {
		snprintf(path, sizeof(path), "/v1/ansible/playbooks/%s%s", argv[2],
			 !strcmp(sub, "export") ? "/export" : "");
		if (api(!strcmp(sub, "delete") ? "DELETE" : "GET", path, NULL, &j))
			return 1;
		struct json_object *y;
		if (!strcmp(sub, "export") && json_object_object_get_ex(j, "yaml", &y))
			fputs(json_object_get_string(y), stdout);
		else if (j)
			puts(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY |
								       JSON_C_TO_STRING_NOSLASHESCAPE));
		return 0;
	}
	if (!strcmp(sub, "generate-from") && (argc == 3 || argc == 4) &&
	    fl_ansible_name_valid(argv[2]) && (argc == 3 || fl_ansible_name_valid(argv[3]))) {
		char body[128] = "{}";
		if (argc == 4)
			snprintf(body, sizeof(body), "{\"name\":\"%s\"}", argv[3]);
		snprintf(path, sizeof(path), "/v1/sandboxes/%s/generate/ansible", argv[2]);
		if (api("POST", path, body, &j))
			return 1;
		puts(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY |
							       JSON_C_TO_STRING_NOSLASHESCAPE));
		return 0;
	}
	fl_cli_error("unknown or malformed playbook command (fluid playbook for help)");
	return 2;
}
