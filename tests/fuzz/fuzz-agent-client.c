// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for the host side of the agent protocol: the input is
 * what a hostile guest agent sends after a valid handshake, fed through a
 * socketpair into a real AgentClient with a few ops in flight (an exec with
 * stdin, a file read, a ping), in pieces whose sizes the input also picks.
 * The same bytes go through a bare AgentFramer. Any crash, leak, or
 * callback run twice is a bug; closing the connection is the right answer
 * to garbage.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent-client.h"
#include "agent-proto.h"

static const uint8_t NONCE[AGENT_NONCE_LEN] = {0xf1, 0x1d, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13};

typedef struct Rec {
	int done;
} Rec;

static void on_done(AgentOp *op, int r, struct json_object *res, const FlError *err, void *ud)
{
	Rec *x = ud;
	if (++x->done != 1)
		abort(); /* exactly once */
}

static void on_data(AgentOp *op, int fd, const void *buf, size_t len, void *ud)
{
	if (fd != 1 && fd != 2)
		abort();
	/* exercise the write path from inside callbacks */
	if (len > 3 && ((const uint8_t *)buf)[0] == 'w')
		agent_op_write(op, buf, len);
	if (len > 3 && ((const uint8_t *)buf)[0] == 'c')
		agent_op_cancel(op);
	if (len > 3 && ((const uint8_t *)buf)[0] == 'p')
		agent_op_pause(op, ((const uint8_t *)buf)[1] & 1);
}

static void on_writable(AgentOp *op, void *ud)
{
	agent_op_write(op, "more", 4);
}

static const AgentOpHandlers H = {.on_data = on_data, .on_writable = on_writable, .on_done = on_done};

static int fr_frame(void *ud, struct json_object *h, const uint8_t *p, size_t n) { return 0; }
static int fr_sync(void *ud, const uint8_t *n) { return 0; }

static void drain(int fd)
{
	uint8_t buf[65536];
	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* the framer alone, hunting and not */
	for (int mode = 0; mode < 2; mode++) {
		AgentFramer *f = agent_framer_new(4096, 8192);
		if (mode)
			agent_framer_hunt(f, NULL);
		AgentFramerOps ops = {.on_frame = fr_frame, .on_sync = fr_sync};
		agent_framer_feed(f, data, size, &ops, NULL);
		agent_framer_free(f);
	}

	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
		return 0;
	AgentClientOptions o = {.test_nonce = NONCE, .window = 8192, .max_header = 4096,
				.max_payload = 8192, .max_ops = 8, .max_outq = 65536};
	AgentClient *c;
	FlError e;
	if (agent_client_new_fd(sv[0], &o, &c, &e) < 0) {
		close(sv[1]);
		return 0;
	}
	AgentBuf b = {0};
	agent_sync_append(&b, NONCE);
	char hex[33];
	agent_hex(NONCE, AGENT_NONCE_LEN, hex);
	struct json_object *h = json_object_new_object();
	json_object_object_add(h, "type", json_object_new_string("hello"));
	json_object_object_add(h, "nonce", json_object_new_string(hex));
	json_object_object_add(h, "protocol", json_object_new_int(1));
	json_object_object_add(h, "window", json_object_new_int(4096));
	agent_frame_append(&b, h, NULL, 0);
	json_object_put(h);
	send(sv[1], agent_buf_head(&b), b.len, MSG_NOSIGNAL);
	agent_buf_free(&b);
	agent_client_dispatch(c, POLLIN | POLLOUT);

	Rec rx[3] = {{0}};
	if (agent_client_is_ready(c)) {
		AgentExecSpec s = {.shell = "x", .stdin_stream = true};
		agent_exec_start(c, &s, 0, &H, &rx[0], NULL, &e);
		agent_op_start(c, "file_read", NULL, 0, &H, &rx[1], NULL, &e);
		agent_op_start(c, "ping", NULL, 0, &H, &rx[2], NULL, &e);
	}
	/* feed in pieces: the first byte picks the piece size */
	size_t step = size ? (size_t)(data[0] % 64) * 37 + 1 : 1;
	size_t off = 0;
	int rounds = 0;
	while (off < size && agent_client_fd(c) >= 0 && rounds++ < 100000) {
		size_t n = size - off < step ? size - off : step;
		ssize_t w = send(sv[1], data + off, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w > 0)
			off += (size_t)w;
		agent_client_dispatch(c, POLLIN | POLLOUT);
		drain(sv[1]);
	}
	agent_client_dispatch(c, POLLIN | POLLOUT);
	agent_client_free(c);
	close(sv[1]);
	for (int i = 0; i < 3; i++)
		if (rx[i].done > 1)
			abort();
	return 0;
}
