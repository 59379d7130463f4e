// SPDX-License-Identifier: MIT
/*
 * api-files: files inside a sandbox, streamed both ways, any size.
 *
 *   GET    /v1/sandboxes/{id}/files?path=P           the file's bytes
 *   PUT    /v1/sandboxes/{id}/files?path=P[&mode=0644][&mkdirs=true]
 *                                                    body = the bytes -> 201 {path, bytes, sha256}
 *   DELETE /v1/sandboxes/{id}/files?path=P[&recursive=true]
 *   GET    /v1/sandboxes/{id}/files/list?path=P      {"path", "entries", "truncated"}
 *
 * DESIGN: transfers are engine streams ("file_read"/"file_write") driven
 * on the handler thread: the request body is copied from civetweb into the
 * stream's input pipe as it arrives and the guest's data is copied to the
 * socket as it comes, so memory stays bounded (64 KiB buffers) whatever
 * the size, and a slow peer slows the guest, never fluid. The agent
 * writes to a temporary file and renames it at the end, so a failed or
 * interrupted upload leaves the old file in place. Paths must be absolute
 * and free of ".." segments (400): the guest is the caller's own, but a
 * path that means something other than it says is always a bug. The
 * safety policy's path rules and file size limit (api-policies.h) are
 * checked before the guest is asked anything else (403, 413).
 */
#include <civetweb.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api-policies.h"
#include "cleanup.h"
#include "engine-service.h"
#include "fsutil.h"
#include "log.h"

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)

#define XFER_TIMEOUT_MS (3600u * 1000)

static int path_param(FlHttpReq *req, char *buf, size_t len)
{
	const char *p = fl_http_query(req, "path", buf, len);
	if (!p || !*p)
		return fl_http_fail(req, -EINVAL, "query parameter 'path' is required (absolute, < %zu bytes)", len);
	if (p[0] != '/')
		return fl_http_fail(req, -EINVAL, "path must be absolute");
	for (const char *s = p; *s; s++)
		if ((unsigned char)*s < 0x20)
			return fl_http_fail(req, -EINVAL, "path contains control characters");
	/* no ".." segment anywhere */
	for (const char *s = p; (s = strstr(s, "..")); s += 2)
		if (s[-1] == '/' && (s[2] == '/' || s[2] == 0))
			return fl_http_fail(req, -EINVAL, "path must not contain '..' segments");
	return 0;
}

static int bool_param(FlHttpReq *req, const char *name, bool *ret)
{
	char buf[16];
	*ret = false;
	if (!fl_http_query(req, name, buf, sizeof(buf)))
		return 0;
	if (!strcmp(buf, "true") || !strcmp(buf, "1"))
		*ret = true;
	else if (strcmp(buf, "false") && strcmp(buf, "0"))
		return fl_http_fail(req, -EINVAL, "%s must be true or false", name);
	return 0;
}

static int agent_op(FlHttpReq *req, const char *id, const char *op, struct json_object *args,
		    struct json_object **ret)
{
	FlError err = {0};
	int r = fl_engine_agent_call(fl_api_engine(req), id, op, args, 60000, ret, &err);
	if (r == -ENOENT)
		return fl_http_fail(req, r, "%s", err.msg[0] ? err.msg : "no such file");
	return r < 0 ? fl_api_fail(req, r, &err) : 0;
}

/* ---- download --------------------------------------------------------------- */

static int get_file(FlHttpReq *req)
{
	char id[64], path[PATH_MAX], real[PATH_MAX];
	const FlPolicy *pol = NULL;
	int r = fl_api_sandbox_lookup(req, id, NULL);
	if (r < 0 || (r = path_param(req, path, sizeof(path))) < 0 ||
	    (r = fl_api_policy_path(req, id, path, false, real, sizeof(real), &pol)) < 0)
		return r;
	struct json_object *args = json_object_new_object();
	json_object_object_add(args, "path", json_object_new_string(real));
	json_object_object_add(args, "follow", json_object_new_boolean(1));
	_cleanup_(json_object_putp) struct json_object *st = NULL;
	if ((r = agent_op(req, id, "stat", args, &st)) < 0)
		return r;
	const char *kind = json_object_get_string(json_object_object_get(st, "kind"));
	if (!kind || strcmp(kind, "file"))
		return fl_http_fail(req, -EINVAL, "%s is a %s, not a regular file%s", path,
				    kind ? kind : "?", kind && !strcmp(kind, "dir") ? " (see files/list)" : "");
	int64_t size = json_object_get_int64(json_object_object_get(st, "size"));
	if (pol->limits.max_file_bytes && size > 0 && (uint64_t)size > pol->limits.max_file_bytes)
		return fl_http_fail(req, -EFBIG, "%s is %lld bytes, over the policy's limit of %llu (policy %s)",
				    path, (long long)size, (unsigned long long)pol->limits.max_file_bytes,
				    pol->name);

	args = json_object_new_object();
	json_object_object_add(args, "path", json_object_new_string(real));
	if (size > 0)
		json_object_object_add(args, "length", json_object_new_int64(size));
	FlStreamSpec ss = {.op = "file_read", .args = args, .timeout_ms = XFER_TIMEOUT_MS};
	FlStream *s = NULL;
	FlError err = {0};
	if ((r = fl_engine_stream_open(fl_api_engine(req), id, &ss, &s, &err)) < 0)
		return fl_api_fail(req, r, &err);
	mg_printf(req->conn,
		  "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
		  "Cache-Control: no-store\r\nConnection: close\r\nContent-Length: %lld\r\n\r\n",
		  (long long)size);
	req->responded = true;
	_cleanup_free_ char *buf = malloc(1u << 20);
	unsigned char hdr[5];
	int64_t sent = 0;
	bool broken = !buf;
	while (!broken && fl_read_full(fl_stream_out_fd(s), hdr, 5) > 0) {
		uint32_t n = hdr[1] | hdr[2] << 8 | hdr[3] << 16 | (uint32_t)hdr[4] << 24;
		if (n > (1u << 20) || fl_read_full(fl_stream_out_fd(s), buf, n) <= 0) {
			broken = true;
			break;
		}
		if (hdr[0] != 1)
			continue;
		if (sent + n > size) /* the file grew: never send more than announced */
			n = (uint32_t)(size - sent);
		if (n && mg_write(req->conn, buf, n) <= 0)
			broken = true;
		sent += n;
	}
	if (broken)
		fl_stream_cancel(s);
	r = fl_stream_finish(s, NULL, &err);
	if (r < 0 || sent != size) {
		/* Headers are gone: a short body (then the connection closes) is
		 * how HTTP says it failed. */
		fl_log_warn("GET file %s in %s: sent %lld of %lld bytes: %s", path, id,
			    (long long)sent, (long long)size, r < 0 ? err.msg : "short read");
	}
	return 200;
}
FL_ROUTE(get_file, "GET", "/v1/sandboxes/{id}/files", FL_ROLE_AGENT);

/* ---- upload ----------------------------------------------------------------- */

static int put_file(FlHttpReq *req)
{
	char id[64], path[PATH_MAX], modebuf[16], real[PATH_MAX];
	bool mkdirs;
	long mode = -1;
	const FlPolicy *pol = NULL;
	int r = fl_api_sandbox_lookup(req, id, NULL);
	if (r < 0 || (r = path_param(req, path, sizeof(path))) < 0 ||
	    (r = bool_param(req, "mkdirs", &mkdirs)) < 0)
		return r;
	if (path[strlen(path) - 1] == '/')
		return fl_http_fail(req, -EINVAL, "path names a directory");
	if ((r = fl_api_policy_path(req, id, path, true, real, sizeof(real), &pol)) < 0)
		return r;
	/* the announced size is checked before anything reaches the guest */
	uint64_t max_bytes = pol->limits.max_file_bytes;
	const char *clen = fl_http_header(req, "Content-Length");
	if (max_bytes && clen && strtoull(clen, NULL, 10) > max_bytes)
		return fl_http_fail(req, -EFBIG, "upload of %s bytes is over the policy's limit of %llu (policy %s)",
				    clen, (unsigned long long)max_bytes, pol->name);
	if (fl_http_query(req, "mode", modebuf, sizeof(modebuf))) {
		char *end;
		errno = 0;
		mode = strtol(modebuf, &end, 8);
		if (!modebuf[0] || *end || errno || mode < 0 || mode > 07777)
			return fl_http_fail(req, -EINVAL, "mode must be octal 0..7777");
	}
	struct json_object *args = json_object_new_object();
	json_object_object_add(args, "path", json_object_new_string(real));
	if (mode >= 0)
		json_object_object_add(args, "mode", json_object_new_int((int)mode));
	if (mkdirs)
		json_object_object_add(args, "mkdirs", json_object_new_boolean(1));
	FlStreamSpec ss = {.op = "file_write", .args = args, .input = true,
			   .timeout_ms = XFER_TIMEOUT_MS};
	FlStream *s = NULL;
	FlError err = {0};
	if ((r = fl_engine_stream_open(fl_api_engine(req), id, &ss, &s, &err)) < 0)
		return fl_api_fail(req, r, &err);

	_cleanup_free_ char *buf = malloc(65536);
	FlSha256 sha;
	uint64_t total = 0;
	bool input_failed = !buf, body_failed = false, too_big = false;
	fl_sha256_init(&sha);
	while (!input_failed) {
		int n = mg_read(req->conn, buf, 65536);
		if (n < 0)
			body_failed = true;
		if (n <= 0)
			break;
		fl_sha256_update(&sha, buf, (size_t)n);
		total += (uint64_t)n;
		if (max_bytes && total > max_bytes) {
			/* chunked bodies announce no size: stop at the limit */
			too_big = body_failed = true;
			break;
		}
		size_t off = 0;
		while (off < (size_t)n) {
			ssize_t k = write(fl_stream_in_fd(s), buf + off, (size_t)n - off);
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0) { /* the op ended early (its error comes from finish) */
				input_failed = true;
				break;
			}
			off += (size_t)k;
		}
	}
	if (body_failed) {
		/* never commit a partial upload: cancel (the agent drops its temp file) */
		fl_stream_cancel(s);
	}
	fl_stream_close_input(s);
	unsigned char hdr[5];
	while (buf && fl_read_full(fl_stream_out_fd(s), hdr, 5) > 0) {
		uint32_t n = hdr[1] | hdr[2] << 8 | hdr[3] << 16 | (uint32_t)hdr[4] << 24;
		while (n) {
			uint32_t k = n < 65536 ? n : 65536;
			if (fl_read_full(fl_stream_out_fd(s), buf, k) <= 0)
				break;
			n -= k;
		}
	}
	_cleanup_(json_object_putp) struct json_object *res = NULL;
	r = fl_stream_finish(s, &res, &err);
	if (too_big)
		return fl_http_fail(req, -EFBIG, "upload over the policy's limit of %llu bytes (policy %s); nothing was written",
				    (unsigned long long)max_bytes, pol->name);
	if (body_failed)
		return fl_http_fail(req, -EIO, "the request body ended early; nothing was written");
	if (r < 0)
		return r == -ENOENT ? fl_http_fail(req, r, "%s (use mkdirs=true to create parents)", err.msg)
				    : fl_api_fail(req, r, &err);
	char hex[65];
	fl_sha256_final_hex(&sha, hex);
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	json_object_object_add(o, "path", json_object_new_string(path));
	json_object_object_add(o, "bytes", json_object_new_int64((int64_t)total));
	json_object_object_add(o, "sha256", json_object_new_string(hex));
	return fl_http_send_json(req, 201, o);
}
FL_ROUTE(put_file, "PUT", "/v1/sandboxes/{id}/files", FL_ROLE_AGENT);

/* ---- delete / list ------------------------------------------------------------ */

static int delete_file(FlHttpReq *req)
{
	char id[64], path[PATH_MAX], real[PATH_MAX];
	bool recursive;
	int r = fl_api_sandbox_lookup(req, id, NULL);
	if (r < 0 || (r = path_param(req, path, sizeof(path))) < 0 ||
	    (r = bool_param(req, "recursive", &recursive)) < 0)
		return r;
	if (!strcmp(path, "/"))
		return fl_http_fail(req, -EINVAL, "refusing to remove /");
	if ((r = fl_api_policy_path(req, id, path, true, real, sizeof(real), NULL)) < 0)
		return r;
	struct json_object *args = json_object_new_object();
	json_object_object_add(args, "path", json_object_new_string(real));
	if (recursive)
		json_object_object_add(args, "recursive", json_object_new_boolean(1));
	if ((r = agent_op(req, id, "remove", args, NULL)) < 0)
		return r == -ENOTEMPTY ? fl_http_fail(req, r, "%s is a non-empty directory (recursive=true removes it)", path) : r;
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	json_object_object_add(o, "deleted", json_object_new_string(path));
	return fl_http_send_json(req, 200, o);
}
FL_ROUTE(delete_file, "DELETE", "/v1/sandboxes/{id}/files", FL_ROLE_AGENT);

static int get_file_list(FlHttpReq *req)
{
	char id[64], path[PATH_MAX], real[PATH_MAX];
	int r = fl_api_sandbox_lookup(req, id, NULL);
	if (r < 0 || (r = path_param(req, path, sizeof(path))) < 0 ||
	    (r = fl_api_policy_path(req, id, path, false, real, sizeof(real), NULL)) < 0)
		return r;
	struct json_object *args = json_object_new_object();
	json_object_object_add(args, "path", json_object_new_string(real));
	_cleanup_(json_object_putp) struct json_object *res = NULL;
	if ((r = agent_op(req, id, "list", args, &res)) < 0)
		return r;
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	struct json_object *entries = json_object_object_get(res, "entries");
	json_object_object_add(o, "path", json_object_new_string(path));
	json_object_object_add(o, "entries", entries ? json_object_get(entries) : json_object_new_array());
	json_object_object_add(o, "truncated", json_object_get(json_object_object_get(res, "truncated")));
	return fl_http_send_json(req, 200, o);
}
FL_ROUTE(get_file_list, "GET", "/v1/sandboxes/{id}/files/list", FL_ROLE_AGENT);
