// SPDX-License-Identifier: MIT
/*
 * cli-client: the CLI's HTTP client for the fluid API (plain HTTP/1.1 over
 * TCP, one request per connection, bounded response, one deadline).
 *
 * DESIGN: blocking from the caller's point of view but every socket step
 * waits with poll() against the deadline, so a hung server cannot hang the
 * CLI. Responses are capped at 64 MiB; chunked transfer is decoded.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include <json-c/json.h>

#include "cli.h"
#include "state.h"

#define CLIENT_MAX_RESPONSE (64u << 20)

void fl_client_response_clear(FlClientResponse *r)
{
	free(r->body);
	r->body = NULL;
	r->len = 0;
	r->status = 0;
}

const char *fl_client_url(const char *url)
{
	if (url && *url)
		return url;
	const char *e = getenv("FLUID_URL");
	return e && *e ? e : FL_DEFAULT_URL;
}

static char *read_token_file(const char *path)
{
	char *text = NULL;
	if (!path || fl_read_file(path, 4096, &text, NULL) < 0)
		return NULL;
	size_t n = strlen(text);
	while (n && isspace((unsigned char)text[n - 1]))
		text[--n] = 0;
	if (!n) {
		free(text);
		return NULL;
	}
	return text;
}

char *fl_client_token(const char *token_file)
{
	const char *e = getenv("FLUID_TOKEN");
	char path[4096];
	char *t;

	if (e && *e)
		return strdup(e);
	if ((t = read_token_file(token_file)))
		return t;
	if ((t = read_token_file(getenv("FLUID_TOKEN_FILE"))))
		return t;
	if ((e = getenv("FLUID_STATE_DIR")) && *e) {
		snprintf(path, sizeof(path), "%s/admin.token", e);
		if ((t = read_token_file(path)))
			return t;
	}
	if ((e = getenv("HOME")) && *e) {
		snprintf(path, sizeof(path), "%s/.config/fluid/token", e);
		if ((t = read_token_file(path)))
			return t;
	}
	return NULL;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int wait_fd(int fd, short events, uint64_t deadline)
{
	for (;;) {
		uint64_t now = mono_ms();
		if (now >= deadline)
			return -ETIMEDOUT;
		struct pollfd p = {.fd = fd, .events = events};
		int n = poll(&p, 1, (int)(deadline - now));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n > 0)
			return 0;
	}
}

/* Splits http://HOST[:PORT][/...] */
static int parse_url(const char *url, char *host, size_t hlen, char *port, size_t plen)
{
	if (strncmp(url, "http://", 7) != 0)
		return -EPROTONOSUPPORT;
	const char *h = url + 7, *end = h + strcspn(h, "/"), *colon;
	if (*h == '[') {
		const char *close = memchr(h, ']', (size_t)(end - h));
		if (!close)
			return -EINVAL;
		if ((size_t)(close - h - 1) >= hlen)
			return -EINVAL;
		memcpy(host, h + 1, (size_t)(close - h - 1));
		host[close - h - 1] = 0;
		colon = close[1] == ':' ? close + 1 : NULL;
	} else {
		colon = memchr(h, ':', (size_t)(end - h));
		const char *he = colon ? colon : end;
		if (he == h || (size_t)(he - h) >= hlen)
			return -EINVAL;
		memcpy(host, h, (size_t)(he - h));
		host[he - h] = 0;
	}
	if (colon) {
		size_t n = (size_t)(end - colon - 1);
		if (n == 0 || n >= plen)
			return -EINVAL;
		memcpy(port, colon + 1, n);
		port[n] = 0;
	} else {
		snprintf(port, plen, "80");
	}
	return 0;
}

static int connect_to(const char *host, const char *port, uint64_t deadline, int *ret_fd)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
	int r = getaddrinfo(host, port, &hints, &ai);
	if (r != 0)
		return r == EAI_SYSTEM ? -errno : -EHOSTUNREACH;
	int last = -ECONNREFUSED;
	for (struct addrinfo *a = ai; a; a = a->ai_next) {
		_cleanup_close_ int fd =
			socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			last = -errno;
			continue;
		}
		if (connect(fd, a->ai_addr, a->ai_addrlen) < 0) {
			if (errno != EINPROGRESS) {
				last = -errno;
				continue;
			}
			r = wait_fd(fd, POLLOUT, deadline);
			if (r < 0) {
				last = r;
				continue;
			}
			int soerr = 0;
			socklen_t sl = sizeof(soerr);
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
			if (soerr) {
				last = -soerr;
				continue;
			}
		}
		*ret_fd = TAKE_FD(fd);
		freeaddrinfo(ai);
		return 0;
	}
	freeaddrinfo(ai);
	return last;
}

/* Decodes a chunked body in place. Returns the new length or -EBADMSG. */
static ssize_t dechunk(char *b, size_t len)
{
	size_t in = 0, out = 0;
	for (;;) {
		char *end;
		if (in >= len)
			return -EBADMSG;
		unsigned long n = strtoul(b + in, &end, 16);
		char *crlf = memmem(b + in, len - in, "\r\n", 2);
		if (!crlf || end > crlf)
			return -EBADMSG;
		in = (size_t)(crlf - b) + 2;
		if (n == 0)
			return (ssize_t)out;
		if (n > len - in)
			return -EBADMSG;
		memmove(b + out, b + in, n);
		out += n;
		in += n + 2;
	}
}

int fl_client_request(const char *url, const char *method, const char *path, const char *token,
		      const char *body, size_t body_len, unsigned timeout_ms,
		      FlClientResponse *ret, FlError *err)
{
	char host[256], port[16];
	uint64_t deadline = mono_ms() + timeout_ms;
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *req = NULL, *buf = NULL;
	size_t len = 0, cap = 65536;
	int r;

	r = parse_url(url, host, sizeof(host), port, sizeof(port));
	if (r < 0)
		return fl_error_set(err, r, "bad server URL '%s' (expected http://HOST:PORT)", url);
	r = connect_to(host, port, deadline, &fd);
	if (r == -ECONNREFUSED)
		return fl_error_set(err, r, "no fluid server is running at %s (connection refused)",
				    url);
	if (r < 0)
		return fl_error_set(err, r, "cannot connect to %s: %s", url, strerror(-r));

	int n = asprintf(&req,
			 "%s %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: fluid/%s\r\n"
			 "Accept: application/json\r\nConnection: close\r\n%s%s%s"
			 "%s%zu\r\n\r\n",
			 method, path, host, port, FL_VERSION, token ? "Authorization: Bearer " : "",
			 token ? token : "", token ? "\r\n" : "",
			 body ? "Content-Type: application/json\r\nContent-Length: " : "Content-Length: ",
			 body ? body_len : 0);
	if (n < 0)
		return fl_error_set(err, -ENOMEM, "out of memory");
	const char *parts[2] = {req, body};
	size_t lens[2] = {(size_t)n, body ? body_len : 0};
	for (int i = 0; i < 2; i++) {
		size_t off = 0;
		while (off < lens[i]) {
			ssize_t k = send(fd, parts[i] + off, lens[i] - off, MSG_NOSIGNAL);
			if (k < 0 && errno == EAGAIN) {
				if ((r = wait_fd(fd, POLLOUT, deadline)) < 0)
					return fl_error_set(err, r, "%s: timed out sending", url);
				continue;
			}
			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0)
				return fl_error_set(err, -errno, "%s: send: %m", url);
			off += (size_t)k;
		}
	}

	buf = malloc(cap + 1);
	if (!buf)
		return fl_error_set(err, -ENOMEM, "out of memory");
	for (;;) {
		if (len == cap) {
			if (cap >= CLIENT_MAX_RESPONSE)
				return fl_error_set(err, -EMSGSIZE, "%s: response too large", url);
			char *nb = realloc(buf, cap * 2 + 1);
			if (!nb)
				return fl_error_set(err, -ENOMEM, "out of memory");
			buf = nb;
			cap *= 2;
		}
		ssize_t k = recv(fd, buf + len, cap - len, 0);
		if (k < 0 && errno == EAGAIN) {
			if ((r = wait_fd(fd, POLLIN, deadline)) < 0)
				return fl_error_set(err, r, "%s: no answer within %u ms", url,
						    timeout_ms);
			continue;
		}
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return fl_error_set(err, -errno, "%s: receive: %m", url);
		if (k == 0)
			break;
		len += (size_t)k;
	}
	buf[len] = 0;

	int status;
	if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1 || status < 100 || status > 999)
		return fl_error_set(err, -EBADMSG, "%s: not an HTTP response", url);
	char *hend = memmem(buf, len, "\r\n\r\n", 4);
	if (!hend)
		return fl_error_set(err, -EBADMSG, "%s: truncated HTTP response", url);
	*hend = 0;
	bool chunked = false;
	long long clen = -1;
	for (char *line = strstr(buf, "\r\n"); line && line < hend; line = strstr(line + 2, "\r\n")) {
		const char *h = line + 2;
		if (!strncasecmp(h, "Transfer-Encoding:", 18) && strcasestr(h, "chunked"))
			chunked = true;
		else if (!strncasecmp(h, "Content-Length:", 15))
			clen = strtoll(h + 15, NULL, 10);
	}
	char *b = hend + 4;
	size_t blen = len - (size_t)(b - buf);
	if (chunked) {
		ssize_t d = dechunk(b, blen);
		if (d < 0)
			return fl_error_set(err, -EBADMSG, "%s: bad chunked body", url);
		blen = (size_t)d;
	} else if (clen >= 0 && (size_t)clen < blen) {
		blen = (size_t)clen;
	}
	char *out = malloc(blen + 1);
	if (!out)
		return fl_error_set(err, -ENOMEM, "out of memory");
	memcpy(out, b, blen);
	out[blen] = 0;
	ret->status = status;
	ret->body = out;
	ret->len = blen;
	return 0;
}

void fl_cli_error(const char *fmt, ...)
{
	va_list ap;
	fputs("fluid: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

const char *fl_json_str(struct json_object *o, const char *key)
{
	struct json_object *v;
	if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

void fl_cli_print_json(struct json_object *o)
{
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
}

void fl_cli_api_error(const char *method, const char *path, int status, const char *body)
{
	struct json_object *o = json_tokener_parse(body && *body ? body : "{}");
	const char *msg = fl_json_str(o, "error");
	if (msg)
		fl_cli_error("%s %s: %s (HTTP %d)", method, path, msg, status);
	else
		fl_cli_error("%s %s: HTTP %d %.200s", method, path, status, body ? body : "");
	if (status == 401)
		fprintf(stderr, "hint: set FLUID_TOKEN or use --token-file\n");
	json_object_put(o);
}

int fl_cli_call(const char *url, const char *token, const char *method, const char *path,
		const char *body, unsigned timeout_ms, struct json_object **ret)
{
	FlClientResponse resp = {0};
	FlError err = {0};
	int r = fl_client_request(fl_client_url(url), method, path, token, body, body ? strlen(body) : 0,
				  timeout_ms, &resp, &err);
	if (r < 0) {
		fl_cli_error("%s", err.msg);
		return 255;
	}
	struct json_object *o = json_tokener_parse(resp.body && *resp.body ? resp.body : "{}");
	if (resp.status < 200 || resp.status >= 300) {
		fl_cli_api_error(method, path, resp.status, resp.body);
		json_object_put(o);
		fl_client_response_clear(&resp);
		return 1;
	}
	fl_client_response_clear(&resp);
	if (!o) {
		fl_cli_error("%s %s: the answer is not JSON", method, path);
		return 1;
	}
	if (ret)
		*ret = o;
	else
		json_object_put(o);
	return 0;
}
