/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for QmpParser, and for QmpClient fed by a hostile QEMU.
 *
 * Parser mode (differential): the input is parsed once in one piece and
 * once split into chunks whose sizes come from the input itself; both runs
 * must deliver the same messages (compared by their serialised form) and
 * end with the same result. Every message must be a JSON object. A small
 * size cap is used so the -EMSGSIZE path is reached.
 *
 * Client mode (first byte & 0x20): the input is what the "server" sends on
 * a socketpair to a client with four commands queued (ids 2-5; the
 * handshake is id 1), one carrying a descriptor; then the server end
 * closes. Whatever the bytes, every command callback must run exactly
 * once, on_state at most twice (ready, then ended), and the client must end.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "qmp.h"

typedef struct Digest {
	uint64_t hash;
	size_t count;
} Digest;

static void on_msg(struct json_object *msg, void *userdata)
{
	Digest *d = userdata;
	if (!json_object_is_type(msg, json_type_object))
		abort();
	const char *s = json_object_to_json_string_ext(msg, JSON_C_TO_STRING_PLAIN);
	for (; *s; s++)
		d->hash = (d->hash ^ (unsigned char)*s) * 1099511628211ull;
	d->hash = (d->hash ^ 0xff) * 1099511628211ull;
	d->count++;
}

static int run(const uint8_t *data, size_t size, size_t max, const uint8_t *splits,
	       size_t nsplits, Digest *d)
{
	QmpParser *p = qmp_parser_new(max);
	if (!p)
		abort();
	int r = 0;
	size_t off = 0, k = 0;
	while (off < size || (off == 0 && size == 0)) {
		size_t n = size - off;
		if (nsplits) {
			size_t want = (size_t)splits[k++ % nsplits] + 1;
			if (want < n)
				n = want;
		}
		int rr = qmp_parser_feed(p, (const char *)data + off, n, on_msg, d);
		if (rr < 0 && r == 0)
			r = rr;
		if (r < 0 && rr != r)
			abort(); /* errors must be sticky */
		off += n;
		if (size == 0)
			break;
	}
	/* Still failed, with the same error, after the input. */
	if (r < 0 && qmp_parser_feed(p, "{}", 2, on_msg, d) != r)
		abort();
	qmp_parser_free(p);
	return r;
}

typedef struct ClientCounts {
	int replies[4];
	int state_calls;
	int last_state;
} ClientCounts;

static void on_reply(QmpClient *c, int r, struct json_object *ret, const QmpReplyError *qerr,
		     void *userdata)
{
	int *n = userdata;
	(*n)++;
	if (r == -EREMOTEIO && !qerr)
		abort();
	if (r == 0 && !ret)
		abort();
}

static void on_state(QmpClient *c, int r, void *userdata)
{
	ClientCounts *k = userdata;
	if (k->state_calls == 1 && k->last_state < 0)
		abort(); /* nothing after the end */
	k->state_calls++;
	k->last_state = r;
}

static void on_event(QmpClient *c, const char *event, struct json_object *data, void *userdata)
{
	if (!event)
		abort();
}

static void client_mode(const uint8_t *body, size_t len)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	ClientCounts k;
	memset(&k, 0, sizeof(k));
	QmpClientOptions o = { .max_message = 4096, .on_state = on_state, .on_event = on_event,
			       .userdata = &k };
	QmpClient *c = NULL;
	if (qmp_client_new_fd(sv[0], &o, &c, NULL) < 0)
		abort();
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		abort();
	for (int i = 0; i < 4; i++)
		if (qmp_client_command(c, i == 2 ? "getfd" : "query-status", NULL, i == 2 ? p[1] : -1,
				       0, on_reply, &k.replies[i]) < 0)
			abort();
	close(p[0]);
	close(p[1]);

	/* Everything fits in the socket buffer for inputs of fuzzing size. */
	size_t off = 0;
	while (off < len) {
		ssize_t n = send(sv[1], body + off, len - off, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	close(sv[1]);

	int r = 0;
	for (int i = 0; i < 10000 && r == 0; i++) {
		struct pollfd pfd = { .fd = qmp_client_fd(c), .events = qmp_client_poll_events(c) };
		int n = poll(&pfd, 1, 1000);
		r = qmp_client_dispatch(c, n > 0 ? pfd.revents : 0);
	}
	if (r == 0)
		abort(); /* the peer is gone: the client must have noticed */
	for (int i = 0; i < 4; i++)
		if (k.replies[i] != 1)
			abort();
	if (k.state_calls < 1 || k.state_calls > 2 || k.last_state >= 0)
		abort();
	qmp_client_free(c);
	for (int i = 0; i < 4; i++)
		if (k.replies[i] != 1)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size && (data[0] & 0x20)) {
		client_mode(data + 1, size - 1);
		return 0;
	}

	/* First byte: how many split sizes follow (0-15); then the sizes. */
	size_t nsplits = size ? data[0] & 15 : 0;
	if (size < 1 + nsplits)
		return 0;
	const uint8_t *splits = data + 1;
	const uint8_t *body = data + 1 + nsplits;
	size_t len = size - 1 - nsplits;
	size_t max = (data[0] & 16) ? 256 : 0;

	Digest a = { 14695981039346656037ull, 0 }, b = a;
	int ra = run(body, len, max, NULL, 0, &a);
	int rb = run(body, len, max, splits, nsplits, &b);
	if (ra != rb || a.count != b.count || a.hash != b.hash)
		abort();
	if (ra != 0 && ra != -EBADMSG && ra != -EMSGSIZE && ra != -ENOMEM)
		abort();
	return 0;
}
