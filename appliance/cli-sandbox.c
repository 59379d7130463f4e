// SPDX-License-Identifier: MIT
/*
 * cli-sandbox: `fluid sandbox create|list|get|start|stop|exec|cp|snapshot|
 * restore|branch|destroy`, a client of the REST API. Human output by
 * default, --json prints the server's JSON for scripts.
 *
 * DESIGN: plain requests go through fl_client_request() (cli-client.c).
 * The two streaming commands have their own small HTTP/1.1 reader here:
 * `exec` reads the NDJSON lines of POST .../exec as they arrive (so output
 * shows while the command runs) and exits with the remote exit code;
 * `cp` streams a file to PUT .../files or from GET .../files with fixed
 * 64 KiB buffers, so any size moves in constant memory. Exit codes: the
 * remote command's for exec, 0 success, 1 API error, 2 usage, 255 when the
 * server cannot be reached or the stream breaks during exec.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "cli.h"

int fl_cmd_sandbox(int argc, char **argv);

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)

#define REQ_TIMEOUT_MS (15u * 60 * 1000)

typedef struct Ctx {
	const char *url;
	char *token;
	bool json;
} Ctx;

static void usage(FILE *f)
{
	fprintf(f,
		"usage: fluid sandbox COMMAND [OPTIONS]\n"
		"\n"
		"  create [--image NAME] [--name N] [--cpu N] [--memory MB] [--ttl SECONDS]\n"
		"         [--network nat|none] [--cold] [--no-start] [--agent-id ID]\n"
		"  list [--state S] [--agent-id ID] [--image NAME]\n"
		"  get ID\n"
		"  start ID | stop ID\n"
		"  exec [--timeout SECONDS] [--user U] [--env K=V]... [--cwd DIR] ID -- CMD [ARG...]\n"
		"         streams the output; exits with the command's exit code. A single CMD\n"
		"         word is run by /bin/sh -c, several are run directly (argv).\n"
		"  cp LOCAL ID:/PATH | cp ID:/PATH LOCAL   (LOCAL - = stdin/stdout)\n"
		"  snapshot [--memory] ID NAME\n"
		"  restore ID NAME\n"
		"  branch [--name N] ID SNAPSHOT\n"
		"  destroy ID...\n"
		"\n"
		"options: --json (print the API's JSON), --url URL, --token-file FILE\n"
		"(see `fluid status --help` for how the URL and token are found)\n");
}

/* ---- plain requests ----------------------------------------------------------- */

/* Sends a JSON request; 0 with *ret (parsed body) on 2xx, 1 on API errors,
 * 255 when the server cannot be reached. */
static int call(Ctx *c, const char *method, const char *path, struct json_object *body,
		struct json_object **ret)
{
	const char *b = body ? json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN) : NULL;
	return fl_cli_call(c->url, c->token, method, path, b, REQ_TIMEOUT_MS, ret);
}

static const char *s(struct json_object *o, const char *key)
{
	struct json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !v)
		return "-";
	const char *r = json_object_get_string(v);
	return r && *r ? r : "-";
}

static void print_sandbox(struct json_object *sb)
{
	printf("id:        %s\n", s(sb, "id"));
	printf("name:      %s\n", s(sb, "sandbox_name"));
	printf("state:     %s\n", s(sb, "state"));
	printf("image:     %s\n", s(sb, "base_image"));
	printf("network:   %s (guest address %s)\n", s(sb, "network"), s(sb, "ip_address"));
	printf("shape:     %s vCPU, %s MiB\n", s(sb, "cpu"), s(sb, "memory_mb"));
	printf("ttl:       %s s\n", s(sb, "ttl_seconds"));
	printf("agent_id:  %s\n", s(sb, "agent_id"));
	printf("created:   %s\n", s(sb, "created_at"));
	struct json_object *snaps;
	if (json_object_object_get_ex(sb, "snapshots", &snaps) && json_object_array_length(snaps)) {
		printf("snapshots: (head %s)\n", s(sb, "head"));
		for (size_t i = 0; i < json_object_array_length(snaps); i++) {
			struct json_object *sn = json_object_array_get_idx(snaps, i);
			bool mem = json_object_get_boolean(json_object_object_get(sn, "memory"));
			printf("  %-24s %s%s  parent %s\n", s(sn, "name"), s(sn, "created_at"),
			       mem ? " +RAM" : "", s(sn, "parent"));
		}
	}
}

/* Percent-encodes a path for a query string. */
static void urlenc(const char *in, char *out, size_t len)
{
	size_t o = 0;
	for (; *in && o + 4 < len; in++) {
		unsigned char ch = (unsigned char)*in;
		if (isalnum(ch) || strchr("/-_.~", ch))
			out[o++] = (char)ch;
		else
			o += (size_t)snprintf(out + o, len - o, "%%%02X", ch);
	}
	out[o] = 0;
}

static bool id_ok(const char *id)
{
	if (!id || !*id || strlen(id) > 63)
		return false;
	for (const char *p = id; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
			return false;
	return true;
}

/* ---- streaming HTTP ------------------------------------------------------------ */

typedef struct Conn {
	int fd;
	char buf[65536];
	size_t off, len;
	bool chunked;
	long long left; /* bytes left in this chunk / body; -1 unknown (read to EOF) */
	bool eof;
} Conn;

static int conn_fill(Conn *c)
{
	if (c->off < c->len)
		return 1;
	ssize_t n;
	do
		n = recv(c->fd, c->buf, sizeof(c->buf), 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	c->off = 0;
	c->len = (size_t)n;
	return n > 0;
}

/* One CRLF-terminated line (without it) into out. */
static int conn_line(Conn *c, char *out, size_t len)
{
	size_t o = 0;
	for (;;) {
		int r = conn_fill(c);
		if (r <= 0)
			return r < 0 ? r : -EPROTO;
		char ch = c->buf[c->off++];
		if (ch == '\n') {
			if (o && out[o - 1] == '\r')
				o--;
			out[o] = 0;
			return 0;
		}
		if (o + 1 >= len)
			return -EPROTO;
		out[o++] = ch;
	}
}

/* Reads body bytes (chunked or not). Returns bytes, 0 at the end, -errno. */
static ssize_t conn_read(Conn *c, char *out, size_t len)
{
	if (c->eof)
		return 0;
	if (c->chunked && c->left == 0) {
		char line[64];
		int r = conn_line(c, line, sizeof(line));
		if (r < 0)
			return r;
		if (!line[0] && (r = conn_line(c, line, sizeof(line))) < 0) /* CRLF after a chunk */
			return r;
		char *end;
		c->left = strtoll(line, &end, 16);
		if (end == line || c->left < 0)
			return -EPROTO;
		if (c->left == 0) {
			c->eof = true;
			return 0;
		}
	}
	if (!c->chunked && c->left == 0) {
		c->eof = true;
		return 0;
	}
	int r = conn_fill(c);
	if (r < 0)
		return r;
	if (r == 0) {
		c->eof = true;
		return c->chunked || c->left > 0 ? -EPROTO : 0;
	}
	size_t n = c->len - c->off;
	if (n > len)
		n = len;
	if (c->left >= 0 && (long long)n > c->left)
		n = (size_t)c->left;
	memcpy(out, c->buf + c->off, n);
	c->off += n;
	if (c->left > 0)
		c->left -= (long long)n;
	return (ssize_t)n;
}

static int send_all(int fd, const void *p, size_t len)
{
	size_t off = 0;
	while (off < len) {
		ssize_t n = send(fd, (const char *)p + off, len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		off += (size_t)n;
	}
	return 0;
}

/* Connects and sends the request head; the body (if any) follows by the caller. */
static int stream_open(Ctx *c, const char *method, const char *path, const char *ctype,
		       long long clen, const char *accept, Conn *conn)
{
	const char *url = fl_client_url(c->url);
	char host[256], port[16] = "80";
	if (strncmp(url, "http://", 7)) {
		fl_cli_error("bad server URL '%s' (expected http://HOST:PORT)", url);
		return -EINVAL;
	}
	const char *h = url + 7, *end = h + strcspn(h, "/");
	const char *colon = *h == '[' ? strstr(h, "]:") : memchr(h, ':', (size_t)(end - h));
	const char *hs = *h == '[' ? h + 1 : h;
	const char *he = *h == '[' ? strchr(h, ']') : (colon ? colon : end);
	if (!he || he <= hs || (size_t)(he - hs) >= sizeof(host)) {
		fl_cli_error("bad server URL '%s'", url);
		return -EINVAL;
	}
	memcpy(host, hs, (size_t)(he - hs));
	host[he - hs] = 0;
	if (colon)
		snprintf(port, sizeof(port), "%.*s", (int)(end - colon - (*h == '[' ? 2 : 1)),
			 colon + (*h == '[' ? 2 : 1));
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
	if (getaddrinfo(host, port, &hints, &ai) != 0) {
		fl_cli_error("cannot resolve %s", host);
		return -EHOSTUNREACH;
	}
	int fd = -1, r = -ECONNREFUSED;
	for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) < 0) {
			r = -errno;
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(ai);
	if (fd < 0) {
		fl_cli_error("no fluid server is running at %s (%s)", url, strerror(-r));
		return r;
	}
	_cleanup_free_ char *head = NULL;
	char lenhdr[64] = "";
	if (clen >= 0)
		snprintf(lenhdr, sizeof(lenhdr), "Content-Length: %lld\r\n", clen);
	int n = asprintf(&head,
			 "%s %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: fluid/%s\r\nAccept: %s\r\n"
			 "Connection: close\r\n%s%s%s%s%s%s",
			 method, path, host, port, FL_VERSION, accept, c->token ? "Authorization: Bearer " : "",
			 c->token ? c->token : "", c->token ? "\r\n" : "", ctype ? "Content-Type: " : "",
			 ctype ? ctype : "", ctype ? "\r\n" : "");
	if (n < 0 || send_all(fd, head, (size_t)n) < 0 || send_all(fd, lenhdr, strlen(lenhdr)) < 0 ||
	    send_all(fd, "\r\n", 2) < 0) {
		close(fd);
		fl_cli_error("%s: cannot send the request", url);
		return -EIO;
	}
	memset(conn, 0, sizeof(*conn));
	conn->fd = fd;
	return 0;
}

/* Reads the status line and headers. */
static int stream_response(Conn *conn, int *status)
{
	char line[8192];
	int r = conn_line(conn, line, sizeof(line));
	if (r < 0 || sscanf(line, "HTTP/1.%*d %d", status) != 1)
		return -EPROTO;
	conn->left = -1;
	for (;;) {
		if ((r = conn_line(conn, line, sizeof(line))) < 0)
			return r;
		if (!line[0])
			break;
		if (!strncasecmp(line, "Transfer-Encoding:", 18) && strcasestr(line, "chunked"))
			conn->chunked = true;
		else if (!strncasecmp(line, "Content-Length:", 15))
			conn->left = strtoll(line + 15, NULL, 10);
	}
	if (conn->chunked)
		conn->left = 0;
	return 0;
}

/* Reads a whole (error) body, bounded, and prints it as an API error. */
static void stream_fail(Conn *conn, const char *path, int status)
{
	char body[8192];
	size_t len = 0;
	ssize_t n;
	while (len < sizeof(body) - 1 && (n = conn_read(conn, body + len, sizeof(body) - 1 - len)) > 0)
		len += (size_t)n;
	body[len] = 0;
	fl_cli_api_error("request", path, status, body);
}

/* ---- commands --------------------------------------------------------------- */

static int cmd_create(Ctx *c, int argc, char **argv, const char *from_sb, const char *from_snap)
{
	static const struct option lo[] = {
		{"image", required_argument, NULL, 'i'}, {"name", required_argument, NULL, 'n'},
		{"cpu", required_argument, NULL, 'c'},   {"memory", required_argument, NULL, 'm'},
		{"ttl", required_argument, NULL, 't'},   {"network", required_argument, NULL, 'N'},
		{"cold", no_argument, NULL, 'C'},        {"no-start", no_argument, NULL, 'S'},
		{"agent-id", required_argument, NULL, 'a'}, {0}};
	_cleanup_(json_object_putp) struct json_object *body = json_object_new_object();
	int ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "+i:n:c:m:t:N:CSa:", lo, NULL)) != -1) {
		char *end;
		long long v;
		switch (ch) {
		case 'i':
			json_object_object_add(body, "base_image", json_object_new_string(optarg));
			break;
		case 'n':
			json_object_object_add(body, "vm_name", json_object_new_string(optarg));
			break;
		case 'N':
			json_object_object_add(body, "network", json_object_new_string(optarg));
			break;
		case 'a':
			json_object_object_add(body, "agent_id", json_object_new_string(optarg));
			break;
		case 'C':
			json_object_object_add(body, "boot", json_object_new_string("cold"));
			break;
		case 'S':
			json_object_object_add(body, "auto_start", json_object_new_boolean(0));
			break;
		case 'c':
		case 'm':
		case 't':
			errno = 0;
			v = strtoll(optarg, &end, 10);
			if (!*optarg || *end || errno || v < 0) {
				fl_cli_error("--%s needs a non-negative integer", ch == 'c' ? "cpu" : ch == 'm' ? "memory" : "ttl");
				return 2;
			}
			json_object_object_add(body, ch == 'c' ? "cpu" : ch == 'm' ? "memory_mb" : "ttl_seconds",
					       json_object_new_int64(v));
			break;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (from_sb) {
		if (json_object_object_get_ex(body, "base_image", NULL) ||
		    json_object_object_get_ex(body, "boot", NULL)) {
			fl_cli_error("a branch takes the image and boot of its snapshot");
			return 2;
		}
		json_object_object_add(body, "from_sandbox", json_object_new_string(from_sb));
		json_object_object_add(body, "from_snapshot", json_object_new_string(from_snap));
	}
	_cleanup_(json_object_putp) struct json_object *res = NULL;
	int r = call(c, "POST", "/v1/sandboxes", body, &res);
	if (r)
		return r;
	if (c->json)
		fl_cli_print_json(res);
	else
		print_sandbox(json_object_object_get(res, "sandbox"));
	return 0;
}

static int cmd_list(Ctx *c, int argc, char **argv)
{
	static const struct option lo[] = {{"state", required_argument, NULL, 's'},
					   {"agent-id", required_argument, NULL, 'a'},
					   {"image", required_argument, NULL, 'i'},
					   {0}};
	char path[1024] = "/v1/sandboxes?limit=1000", enc[300];
	int ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "+s:a:i:", lo, NULL)) != -1) {
		if (ch == '?') {
			usage(stderr);
			return 2;
		}
		urlenc(optarg, enc, sizeof(enc));
		size_t l = strlen(path);
		snprintf(path + l, sizeof(path) - l, "&%s=%s",
			 ch == 's' ? "state" : ch == 'a' ? "agent_id" : "base_image", enc);
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	_cleanup_(json_object_putp) struct json_object *res = NULL;
	int r = call(c, "GET", path, NULL, &res);
	if (r)
		return r;
	if (c->json) {
		fl_cli_print_json(res);
		return 0;
	}
	struct json_object *arr = json_object_object_get(res, "sandboxes");
	printf("%-18s %-20s %-9s %-12s %-5s %s\n", "ID", "NAME", "STATE", "IMAGE", "SNAPS", "CREATED");
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		struct json_object *sb = json_object_array_get_idx(arr, i);
		printf("%-18s %-20s %-9s %-12s %-5zu %s\n", s(sb, "id"), s(sb, "sandbox_name"),
		       s(sb, "state"), s(sb, "base_image"),
		       json_object_array_length(json_object_object_get(sb, "snapshots")), s(sb, "created_at"));
	}
	return 0;
}

static int cmd_simple(Ctx *c, const char *what, int argc, char **argv)
{
	char path[256];
	if (argc < 2 || !id_ok(argv[1]) || (strcmp(what, "destroy") && argc != 2)) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(what, "destroy")) {
		int rc = 0;
		for (int i = 1; i < argc; i++) {
			if (!id_ok(argv[i])) {
				fl_cli_error("invalid sandbox id '%s'", argv[i]);
				rc = 2;
				continue;
			}
			snprintf(path, sizeof(path), "/v1/sandboxes/%s", argv[i]);
			_cleanup_(json_object_putp) struct json_object *res = NULL;
			int r = call(c, "DELETE", path, NULL, &res);
			if (r) {
				rc = r;
				continue;
			}
			if (c->json)
				fl_cli_print_json(res);
			else
				printf("destroyed %s\n", s(res, "id"));
		}
		return rc;
	}
	_cleanup_(json_object_putp) struct json_object *res = NULL;
	int r;
	if (!strcmp(what, "get")) {
		snprintf(path, sizeof(path), "/v1/sandboxes/%s", argv[1]);
		r = call(c, "GET", path, NULL, &res);
	} else {
		snprintf(path, sizeof(path), "/v1/sandboxes/%s/%s", argv[1], what);
		_cleanup_(json_object_putp) struct json_object *body = json_object_new_object();
		r = call(c, "POST", path, body, &res);
	}
	if (r)
		return r;
	if (c->json)
		fl_cli_print_json(res);
	else
		print_sandbox(json_object_object_get(res, "sandbox"));
	return 0;
}

static int b64val(int ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	return ch == '+' ? 62 : ch == '/' ? 63 : -1;
}

static void write_b64(FILE *f, const char *in)
{
	uint32_t acc = 0;
	int bits = 0;
	for (; *in && *in != '='; in++) {
		int v = b64val((unsigned char)*in);
		if (v < 0)
			continue;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			fputc((int)(acc >> bits & 0xff), f);
		}
	}
}

static int cmd_exec(Ctx *c, int argc, char **argv)
{
	static const struct option lo[] = {{"timeout", required_argument, NULL, 't'},
					   {"user", required_argument, NULL, 'u'},
					   {"env", required_argument, NULL, 'e'},
					   {"cwd", required_argument, NULL, 'd'},
					   {0}};
	_cleanup_(json_object_putp) struct json_object *body = json_object_new_object();
	struct json_object *env = NULL;
	int ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "+t:u:e:d:", lo, NULL)) != -1) {
		char *end;
		long long v;
		switch (ch) {
		case 't':
			errno = 0;
			v = strtoll(optarg, &end, 10);
			if (!*optarg || *end || errno || v < 0) {
				fl_cli_error("--timeout needs seconds");
				return 2;
			}
			json_object_object_add(body, "timeout_sec", json_object_new_int64(v));
			break;
		case 'u':
			json_object_object_add(body, "user", json_object_new_string(optarg));
			break;
		case 'd':
			json_object_object_add(body, "cwd", json_object_new_string(optarg));
			break;
		case 'e':
			if (!strchr(optarg, '=')) {
				fl_cli_error("--env needs K=V");
				return 2;
			}
			if (!env) {
				env = json_object_new_array();
				json_object_object_add(body, "env", env);
			}
			json_object_array_add(env, json_object_new_string(optarg));
			break;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc && !strcmp(argv[optind], "--"))
		optind++; /* "--" before the id */
	if (argc - optind < 2 || !id_ok(argv[optind])) {
		usage(stderr);
		return 2;
	}
	const char *id = argv[optind++];
	if (!strcmp(argv[optind], "--"))
		optind++;
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	if (argc - optind == 1) {
		json_object_object_add(body, "command", json_object_new_string(argv[optind]));
	} else {
		struct json_object *a = json_object_new_array();
		for (int i = optind; i < argc; i++)
			json_object_array_add(a, json_object_new_string(argv[i]));
		json_object_object_add(body, "argv", a);
	}
	char path[256];
	snprintf(path, sizeof(path), "/v1/sandboxes/%s/exec", id);
	const char *b = json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN);
	Conn conn;
	int status;
	if (stream_open(c, "POST", path, "application/json", (long long)strlen(b), "application/x-ndjson", &conn) < 0)
		return 255;
	if (send_all(conn.fd, b, strlen(b)) < 0 || stream_response(&conn, &status) < 0) {
		fl_cli_error("the server closed the connection");
		close(conn.fd);
		return 255;
	}
	if (status != 200) {
		stream_fail(&conn, path, status);
		close(conn.fd);
		return 1;
	}
	/* NDJSON: split on newlines across reads */
	size_t cap = 1 << 16, len = 0;
	_cleanup_free_ char *line = malloc(cap);
	char buf[65536];
	int rc = 255;
	bool done = false;
	while (line && !done) {
		ssize_t n = conn_read(&conn, buf, sizeof(buf));
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n && !done; i++) {
			if (buf[i] != '\n') {
				if (len + 1 >= cap) {
					char *nl = realloc(line, cap * 2);
					if (!nl)
						break;
					line = nl;
					cap *= 2;
				}
				line[len++] = buf[i];
				continue;
			}
			line[len] = 0;
			len = 0;
			_cleanup_(json_object_putp) struct json_object *o = json_tokener_parse(line);
			struct json_object *v;
			if (!o)
				continue;
			if (c->json) {
				printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
				fflush(stdout);
			}
			if (json_object_object_get_ex(o, "stream", &v)) {
				FILE *f = !strcmp(json_object_get_string(v), "stderr") ? stderr : stdout;
				struct json_object *d = json_object_object_get(o, "data");
				struct json_object *enc = json_object_object_get(o, "encoding");
				if (c->json || !d)
					continue;
				if (enc && !strcmp(json_object_get_string(enc), "base64"))
					write_b64(f, json_object_get_string(d));
				else
					fwrite(json_object_get_string(d), 1, (size_t)json_object_get_string_len(d), f);
				fflush(f);
			} else if (json_object_object_get_ex(o, "exit_code", &v)) {
				struct json_object *err = json_object_object_get(o, "error");
				if (err && !c->json)
					fl_cli_error("%s", json_object_get_string(err));
				rc = v ? json_object_get_int(v) : 255;
				done = true;
			}
		}
	}
	close(conn.fd);
	if (!done)
		fl_cli_error("the output stream ended before the command's exit code");
	return rc;
}

/* Parses "ID:/path": 1 when it is remote. */
static int remote_spec(const char *arg, char *id, size_t idlen, const char **path)
{
	const char *colon = strchr(arg, ':');
	if (!colon || colon[1] != '/' || (size_t)(colon - arg) >= idlen || colon == arg)
		return 0;
	memcpy(id, arg, (size_t)(colon - arg));
	id[colon - arg] = 0;
	*path = colon + 1;
	return id_ok(id) ? 1 : -1;
}

static int cmd_cp(Ctx *c, int argc, char **argv)
{
	char id[64], enc[8192], path[8400];
	const char *rpath;
	if (argc != 3) {
		usage(stderr);
		return 2;
	}
	int src_remote = remote_spec(argv[1], id, sizeof(id), &rpath);
	int dst_remote = src_remote ? 0 : remote_spec(argv[2], id, sizeof(id), &rpath);
	if (src_remote < 0 || dst_remote < 0 || (src_remote && remote_spec(argv[2], (char[64]){0}, 64, &(const char *){0})) ||
	    (!src_remote && !dst_remote)) {
		fl_cli_error("cp needs exactly one side as ID:/absolute/path");
		return 2;
	}
	urlenc(rpath, enc, sizeof(enc));
	snprintf(path, sizeof(path), "/v1/sandboxes/%s/files?path=%s", id, enc);
	Conn conn;
	int status;
	char buf[65536];
	if (dst_remote) {
		const char *local = argv[1];
		_cleanup_close_ int fd = strcmp(local, "-") ? open(local, O_RDONLY | O_CLOEXEC) : dup(0);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) < 0) {
			fl_cli_error("%s: %s", local, strerror(errno));
			return 1;
		}
		long long clen = S_ISREG(st.st_mode) ? (long long)st.st_size : -1;
		if (clen < 0) {
			fl_cli_error("%s: only regular files can be copied (stdin must be a file)", local);
			return 2;
		}
		if (stream_open(c, "PUT", path, "application/octet-stream", clen, "application/json", &conn) < 0)
			return 255;
		long long sent = 0;
		while (sent < clen) {
			ssize_t n = read(fd, buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0 || send_all(conn.fd, buf, (size_t)n) < 0)
				break;
			sent += n;
		}
		if (stream_response(&conn, &status) < 0) {
			fl_cli_error("the server closed the connection");
			close(conn.fd);
			return 255;
		}
		if (status != 201 && status != 200) {
			stream_fail(&conn, path, status);
			close(conn.fd);
			return 1;
		}
		char body[4096];
		size_t len = 0;
		ssize_t n;
		while (len < sizeof(body) - 1 && (n = conn_read(&conn, body + len, sizeof(body) - 1 - len)) > 0)
			len += (size_t)n;
		body[len] = 0;
		close(conn.fd);
		if (c->json)
			fputs(body, stdout);
		else
			printf("copied %lld bytes to %s:%s\n", sent, id, rpath);
		return sent == clen ? 0 : 1;
	}
	const char *local = argv[2];
	if (stream_open(c, "GET", path, NULL, -1, "application/octet-stream", &conn) < 0)
		return 255;
	if (stream_response(&conn, &status) < 0) {
		fl_cli_error("the server closed the connection");
		close(conn.fd);
		return 255;
	}
	if (status != 200) {
		stream_fail(&conn, path, status);
		close(conn.fd);
		return 1;
	}
	long long want = conn.left, got = 0;
	char tmp[4200] = "";
	_cleanup_close_ int fd = -1;
	if (strcmp(local, "-")) {
		snprintf(tmp, sizeof(tmp), "%s.fluid-cp-XXXXXX", local);
		fd = mkostemp(tmp, O_CLOEXEC);
	} else {
		fd = dup(1);
	}
	if (fd < 0) {
		fl_cli_error("%s: %s", local, strerror(errno));
		close(conn.fd);
		return 1;
	}
	ssize_t n;
	while ((n = conn_read(&conn, buf, sizeof(buf))) > 0) {
		size_t off = 0;
		while (off < (size_t)n) {
			ssize_t k = write(fd, buf + off, (size_t)n - off);
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0)
				break;
			off += (size_t)k;
		}
		got += n;
	}
	close(conn.fd);
	if (n < 0 || (want >= 0 && got != want)) {
		fl_cli_error("download of %s:%s broke after %lld bytes", id, rpath, got);
		if (tmp[0])
			unlink(tmp);
		return 1;
	}
	if (tmp[0] && rename(tmp, local) < 0) {
		fl_cli_error("%s: %s", local, strerror(errno));
		unlink(tmp);
		return 1;
	}
	if (!c->json && strcmp(local, "-"))
		printf("copied %lld bytes from %s:%s\n", got, id, rpath);
	return 0;
}

static int cmd_snapshot(Ctx *c, int argc, char **argv)
{
	bool memory = false;
	int i = 1;
	if (i < argc && !strcmp(argv[i], "--memory"))
		memory = true, i++;
	if (argc - i != 2 || !id_ok(argv[i])) {
		usage(stderr);
		return 2;
	}
	char path[256];
	snprintf(path, sizeof(path), "/v1/sandboxes/%s/snapshots", argv[i]);
	_cleanup_(json_object_putp) struct json_object *body = json_object_new_object(), *res = NULL;
	json_object_object_add(body, "name", json_object_new_string(argv[i + 1]));
	if (memory)
		json_object_object_add(body, "memory", json_object_new_boolean(1));
	int r = call(c, "POST", path, body, &res);
	if (r)
		return r;
	if (c->json)
		fl_cli_print_json(res);
	else {
		struct json_object *sn = json_object_object_get(res, "snapshot");
		printf("snapshot %s of %s%s (parent %s)\n", s(sn, "name"), s(sn, "sandbox_id"),
		       memory ? " with RAM" : "", s(sn, "parent"));
	}
	return 0;
}

static int cmd_restore(Ctx *c, int argc, char **argv)
{
	if (argc != 3 || !id_ok(argv[1]) || !id_ok(argv[2]) ) {
		if (argc == 3 && id_ok(argv[1]) && strchr(argv[2], '.') && !strstr(argv[2], ".."))
			; /* snapshot names may contain dots */
		else {
			usage(stderr);
			return 2;
		}
	}
	char path[512];
	snprintf(path, sizeof(path), "/v1/sandboxes/%s/snapshots/%s/restore", argv[1], argv[2]);
	_cleanup_(json_object_putp) struct json_object *body = json_object_new_object(), *res = NULL;
	int r = call(c, "POST", path, body, &res);
	if (r)
		return r;
	if (c->json)
		fl_cli_print_json(res);
	else
		printf("restored %s to snapshot %s\n", argv[1], argv[2]);
	return 0;
}

int fl_cmd_sandbox(int argc, char **argv)
{
	Ctx c = {0};
	const char *token_file = NULL;
	int i, rc;
	/* global options may come before or after the subcommand */
	int n = 0;
	char **args = calloc((size_t)argc + 1, sizeof(char *));
	if (!args)
		return 1;
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--")) {
			for (; i < argc; i++)
				args[n++] = argv[i];
			break;
		}
		if (!strcmp(argv[i], "--json"))
			c.json = true;
		else if (!strcmp(argv[i], "--url") && i + 1 < argc)
			c.url = argv[++i];
		else if (!strncmp(argv[i], "--url=", 6))
			c.url = argv[i] + 6;
		else if (!strcmp(argv[i], "--token-file") && i + 1 < argc)
			token_file = argv[++i];
		else if (!strncmp(argv[i], "--token-file=", 13))
			token_file = argv[i] + 13;
		else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			free(args);
			return 0;
		} else
			args[n++] = argv[i];
	}
	if (n == 0) {
		usage(stderr);
		free(args);
		return 2;
	}
	c.token = fl_client_token(token_file);
	const char *cmd = args[0];
	if (!strcmp(cmd, "diff")) { /* `fluid sandbox diff ...` is `fluid diff ...` */
		char **fwd = calloc((size_t)argc + 1, sizeof(char *));
		int k = 0;
		if (fwd) {
			fwd[k++] = (char *)"diff";
			for (i = 1; i < argc; i++)
				if (argv[i] != cmd)
					fwd[k++] = argv[i];
		}
		rc = fwd ? fl_cmd_diff(k, fwd) : 1;
		free(fwd);
		free(c.token);
		free(args);
		return rc;
	}
	if (!strcmp(cmd, "create"))
		rc = cmd_create(&c, n, args, NULL, NULL);
	else if (!strcmp(cmd, "branch")) {
		/* branch [--name N] ID SNAPSHOT: the two positionals go last */
		if (n < 3) {
			usage(stderr);
			rc = 2;
		} else {
			char *from = args[n - 2], *snap = args[n - 1];
			args[n - 2] = NULL;
			rc = id_ok(from) ? cmd_create(&c, n - 2, args, from, snap) : 2;
		}
	} else if (!strcmp(cmd, "list"))
		rc = cmd_list(&c, n, args);
	else if (!strcmp(cmd, "get") || !strcmp(cmd, "start") || !strcmp(cmd, "stop") ||
		 !strcmp(cmd, "destroy"))
		rc = cmd_simple(&c, cmd, n, args);
	else if (!strcmp(cmd, "exec"))
		rc = cmd_exec(&c, n, args);
	else if (!strcmp(cmd, "cp"))
		rc = cmd_cp(&c, n, args);
	else if (!strcmp(cmd, "snapshot"))
		rc = cmd_snapshot(&c, n, args);
	else if (!strcmp(cmd, "restore"))
		rc = cmd_restore(&c, n, args);
	else {
		fl_cli_error("unknown sandbox command '%s' (see: fluid sandbox --help)", cmd);
		rc = 2;
	}
	free(c.token);
	free(args);
	return rc;
}
