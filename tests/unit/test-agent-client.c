// SPDX-License-Identifier: MIT
/*
 * Unit tests of libagentc against a scripted fake agent on a socketpair:
 * the hello/sync handshake through stale bytes, replies and errors, flow
 * control in both directions, timeouts, and a table of hostile frames that
 * must each close the connection with an error: every pending callback runs
 * exactly once, nothing crashes, nothing grows.
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "agent-client.h"
#include "agent-proto.h"

static const uint8_t NONCE[AGENT_NONCE_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

typedef struct Rec {
	int done;
	int r;
	char msg[512];
	uint64_t bytes[3];
	int eofs[3];
	int events;
	int writable;
	bool cancel_in_data;
} Rec;

typedef struct Fx {
	AgentClient *c;
	int peer;
	AgentFramer *fr;
	struct json_object *got[64];
	int ngot;
	int states;
	int state_r;
} Fx;

static void on_state(AgentClient *c, int r, const FlError *err, void *ud)
{
	Fx *f = ud;
	f->states++;
	f->state_r = r;
}

static void rec_done(AgentOp *op, int r, struct json_object *res, const FlError *err, void *ud)
{
	Rec *x = ud;
	x->done++;
	x->r = r;
	if (err)
		snprintf(x->msg, sizeof(x->msg), "%s", err->msg);
}

static void rec_data(AgentOp *op, int fd, const void *buf, size_t len, void *ud)
{
	Rec *x = ud;
	x->bytes[fd] += len;
	if (!len)
		x->eofs[fd]++;
	if (x->cancel_in_data)
		agent_op_cancel(op);
}

static void rec_event(AgentOp *op, const char *ev, struct json_object *o, void *ud)
{
	((Rec *)ud)->events++;
}

static void rec_writable(AgentOp *op, void *ud)
{
	((Rec *)ud)->writable++;
}

static const AgentOpHandlers H = {
	.on_event = rec_event, .on_data = rec_data, .on_writable = rec_writable, .on_done = rec_done};

static int fake_frame(void *ud, struct json_object *hdr, const uint8_t *p, size_t plen)
{
	Fx *f = ud;
	if (f->ngot < 64) {
		struct json_object *o = json_object_get(hdr);
		if (plen)
			json_object_object_add(o, "_plen", json_object_new_int64((int64_t)plen));
		f->got[f->ngot++] = o;
	}
	return 0;
}

static const AgentFramerOps fake_ops = {.on_frame = fake_frame};

/* Lets the client flush, then parses what reached the fake agent. */
static void pump(Fx *f)
{
	for (int i = 0; i < 4; i++) {
		if (agent_client_fd(f->c) >= 0)
			agent_client_dispatch(f->c, POLLIN | POLLOUT);
		uint8_t buf[65536];
		ssize_t n;
		while ((n = recv(f->peer, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
			agent_framer_feed(f->fr, buf, (size_t)n, &fake_ops, f);
	}
}

static void send_raw(Fx *f, const void *p, size_t n)
{
	assert_int_equal(send(f->peer, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

static void send_frame(Fx *f, const char *json, const void *payload, size_t plen)
{
	AgentBuf b = {0};
	struct json_object *o = json_tokener_parse(json);
	assert_non_null(o);
	agent_frame_append(&b, o, payload, plen);
	json_object_put(o);
	send_raw(f, agent_buf_head(&b), b.len);
	agent_buf_free(&b);
}

static void send_hello(Fx *f, unsigned window)
{
	AgentBuf b = {0};
	agent_sync_append(&b, NONCE);
	send_raw(f, agent_buf_head(&b), b.len);
	agent_buf_free(&b);
	char j[300];
	char hex[33];
	agent_hex(NONCE, AGENT_NONCE_LEN, hex);
	snprintf(j, sizeof(j), "{\"type\":\"hello\",\"nonce\":\"%s\",\"protocol\":1,\"window\":%u,\"max_payload\":262144}",
		 hex, window);
	send_frame(f, j, NULL, 0);
}

static void clear_got(Fx *f)
{
	for (int i = 0; i < f->ngot; i++)
		json_object_put(f->got[i]);
	f->ngot = 0;
}

static int fx_new(void **state, size_t window, unsigned agent_window)
{
	Fx *f = calloc(1, sizeof(*f));
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	f->peer = sv[1];
	f->fr = agent_framer_new(1 << 20, 1 << 20);
	agent_framer_hunt(f->fr, NULL);
	AgentClientOptions o = {.on_state = on_state, .userdata = f, .test_nonce = NONCE,
				.window = window, .max_header = 4096, .max_payload = 65536};
	FlError e;
	if (agent_client_new_fd(sv[0], &o, &f->c, &e) < 0)
		return -1;
	*state = f;
	if (agent_window) {
		pump(f);
		send_hello(f, agent_window);
		pump(f);
		if (!agent_client_is_ready(f->c))
			return -1;
		clear_got(f);
	}
	return 0;
}

static int setup_ready(void **state) { return fx_new(state, 8192, 4096); }
static int setup_raw(void **state) { return fx_new(state, 8192, 0); }

static int teardown(void **state)
{
	Fx *f = *state;
	agent_client_free(f->c);
	clear_got(f);
	agent_framer_free(f->fr);
	close(f->peer);
	free(f);
	return 0;
}

static const char *got_str(Fx *f, int i, const char *k)
{
	return agent_json_get_str(f->got[i], k);
}

static int64_t got_int(Fx *f, int i, const char *k)
{
	int64_t v = -1;
	agent_json_get_i64(f->got[i], k, &v);
	return v;
}

static void test_handshake_through_stale_bytes(void **state)
{
	Fx *f = *state;
	pump(f);
	/* the host sent sync + hello with its nonce */
	assert_int_equal(f->ngot, 1);
	assert_string_equal(got_str(f, 0, "type"), "hello");
	char hex[33];
	agent_hex(NONCE, AGENT_NONCE_LEN, hex);
	assert_string_equal(got_str(f, 0, "nonce"), hex);
	assert_false(agent_client_is_ready(f->c));
	/* stale output of an earlier session: junk, old frames, a foreign sync */
	send_raw(f, "\x00\xffjunkFLA1\x10\x00", 12);
	send_frame(f, "{\"type\":\"res\",\"id\":77,\"ok\":true}", NULL, 0);
	AgentBuf b = {0};
	uint8_t other[AGENT_NONCE_LEN] = {9};
	agent_sync_append(&b, other);
	send_raw(f, agent_buf_head(&b), b.len);
	agent_buf_free(&b);
	send_frame(f, "{\"type\":\"data\",\"id\":1,\"fd\":1}", "stale", 5);
	pump(f);
	assert_false(agent_client_is_ready(f->c));
	assert_int_equal(f->states, 0);
	send_hello(f, 4096);
	pump(f);
	assert_true(agent_client_is_ready(f->c));
	assert_int_equal(f->states, 1);
	assert_int_equal(f->state_r, 0);
	assert_non_null(agent_client_hello(f->c));
	/* a duplicate hello answer (to a resent hello) is harmless */
	send_hello(f, 4096);
	pump(f);
	assert_true(agent_client_is_ready(f->c));
	assert_int_equal(f->states, 1);
}

static void test_not_ready_no_callback(void **state)
{
	Fx *f = *state;
	Rec x = {0};
	FlError e = {0};
	assert_int_equal(agent_op_start(f->c, "ping", NULL, 0, &H, &x, NULL, &e), -ENOTCONN);
	assert_int_equal(agent_op_start(f->c, "ping", json_object_new_array(), 0, &H, &x, NULL, &e),
			 -EINVAL);
	pump(f);
	assert_int_equal(x.done, 0);
}

static void test_reply_and_error(void **state)
{
	Fx *f = *state;
	Rec a = {0}, b = {0};
	FlError e = {0};
	AgentOp *oa, *ob;
	assert_int_equal(agent_op_start(f->c, "ping", NULL, 0, &H, &a, &oa, &e), 0);
	struct json_object *args = json_object_new_object();
	json_object_object_add(args, "path", json_object_new_string("/nope"));
	assert_int_equal(agent_op_start(f->c, "stat", args, 0, &H, &b, &ob, &e), 0);
	pump(f);
	assert_int_equal(f->ngot, 2);
	assert_string_equal(got_str(f, 0, "type"), "req");
	assert_string_equal(got_str(f, 0, "op"), "ping");
	assert_string_equal(got_str(f, 1, "op"), "stat");
	assert_string_equal(got_str(f, 1, "path"), "/nope");
	char j[200];
	snprintf(j, sizeof(j), "{\"type\":\"res\",\"id\":%lld,\"ok\":false,\"errno\":2,\"error\":\"stat /nope: gone\"}",
		 (long long)got_int(f, 1, "id"));
	send_frame(f, j, NULL, 0);
	snprintf(j, sizeof(j), "{\"type\":\"event\",\"id\":%lld,\"event\":\"started\"}", (long long)got_int(f, 0, "id"));
	send_frame(f, j, NULL, 0);
	snprintf(j, sizeof(j), "{\"type\":\"res\",\"id\":%lld,\"ok\":true}", (long long)got_int(f, 0, "id"));
	send_frame(f, j, NULL, 0);
	pump(f);
	assert_int_equal(a.done, 1);
	assert_int_equal(a.r, 0);
	assert_int_equal(a.events, 1);
	assert_int_equal(b.done, 1);
	assert_int_equal(b.r, -ENOENT);
	assert_non_null(strstr(b.msg, "stat /nope: gone"));
	/* errno out of range becomes EPROTO, not a crash */
	Rec c = {0};
	assert_int_equal(agent_op_start(f->c, "ping", NULL, 0, &H, &c, NULL, &e), 0);
	pump(f);
	snprintf(j, sizeof(j), "{\"type\":\"res\",\"id\":%lld,\"ok\":false,\"errno\":-99999}",
		 (long long)got_int(f, f->ngot - 1, "id"));
	send_frame(f, j, NULL, 0);
	pump(f);
	assert_int_equal(c.r, -EPROTO);
	assert_true(agent_client_is_ready(f->c));
}

static void test_output_flow_control(void **state)
{
	Fx *f = *state;
	Rec x = {0};
	FlError e = {0};
	AgentOp *op;
	AgentExecSpec s = {.shell = "yes"};
	assert_int_equal(agent_exec_start(f->c, &s, 0, &H, &x, &op, &e), 0);
	pump(f);
	int64_t id = got_int(f, 0, "id");
	clear_got(f);
	char j[200];
	snprintf(j, sizeof(j), "{\"type\":\"data\",\"id\":%lld,\"fd\":1}", (long long)id);
	uint8_t chunk[1024] = {0};
	send_frame(f, j, chunk, sizeof(chunk));
	pump(f);
	assert_int_equal(x.bytes[1], 1024);
	assert_int_equal(f->ngot, 0); /* below window/4: no ack yet */
	send_frame(f, j, chunk, sizeof(chunk));
	pump(f);
	assert_int_equal(f->ngot, 1);
	assert_string_equal(got_str(f, 0, "type"), "ack");
	assert_int_equal(got_int(f, 0, "fd"), 1);
	assert_int_equal(got_int(f, 0, "bytes"), 2048);
	clear_got(f);
	/* paused: the agent may use its window, but gets nothing back */
	agent_op_pause(op, true);
	for (int i = 0; i < 8; i++)
		send_frame(f, j, chunk, sizeof(chunk));
	pump(f);
	assert_int_equal(x.bytes[1], 10 * 1024);
	assert_int_equal(f->ngot, 0);
	agent_op_pause(op, false);
	pump(f);
	assert_int_equal(f->ngot, 1);
	assert_int_equal(got_int(f, 0, "bytes"), 8192);
	clear_got(f);
	/* stderr and end of streams */
	snprintf(j, sizeof(j), "{\"type\":\"data\",\"id\":%lld,\"fd\":2}", (long long)id);
	send_frame(f, j, "err", 3);
	snprintf(j, sizeof(j), "{\"type\":\"data\",\"id\":%lld,\"fd\":1,\"eof\":true}", (long long)id);
	send_frame(f, j, NULL, 0);
	snprintf(j, sizeof(j), "{\"type\":\"data\",\"id\":%lld,\"fd\":2,\"eof\":true}", (long long)id);
	send_frame(f, j, NULL, 0);
	snprintf(j, sizeof(j), "{\"type\":\"res\",\"id\":%lld,\"ok\":true,\"exit_code\":3}", (long long)id);
	send_frame(f, j, NULL, 0);
	pump(f);
	assert_int_equal(x.bytes[2], 3);
	assert_int_equal(x.eofs[1], 1);
	assert_int_equal(x.eofs[2], 1);
	assert_int_equal(x.done, 1);
	assert_int_equal(x.r, 0);
}

static void test_input_credit(void **state)
{
	Fx *f = *state;
	Rec x = {0};
	FlError e = {0};
	AgentOp *op;
	AgentExecSpec s = {.shell = "cat", .stdin_stream = true};
	assert_int_equal(agent_exec_start(f->c, &s, 0, &H, &x, &op, &e), 0);
	static uint8_t big[10000];
	assert_int_equal(agent_op_write(op, big, sizeof(big)), 4096); /* the agent's window */
	assert_int_equal(agent_op_write(op, big, 1), 0);
	pump(f);
	int64_t id = got_int(f, 0, "id");
	uint64_t sent = 0;
	for (int i = 1; i < f->ngot; i++) {
		assert_string_equal(got_str(f, i, "type"), "data");
		assert_int_equal(got_int(f, i, "fd"), 0);
		sent += (uint64_t)got_int(f, i, "_plen");
	}
	assert_int_equal(sent, 4096);
	clear_got(f);
	char j[200];
	snprintf(j, sizeof(j), "{\"type\":\"ack\",\"id\":%lld,\"fd\":0,\"bytes\":1000}", (long long)id);
	send_frame(f, j, NULL, 0);
	pump(f);
	assert_int_equal(x.writable, 1);
	assert_int_equal(agent_op_write(op, big, sizeof(big)), 1000);
	assert_int_equal(agent_op_close_input(op), 0);
	assert_int_equal(agent_op_write(op, big, 1), -EPIPE);
	pump(f);
	assert_true(agent_json_get_bool(f->got[f->ngot - 1], "eof"));
	/* an op without input refuses writes */
	AgentOp *p2;
	Rec y = {0};
	assert_int_equal(agent_op_start(f->c, "ping", NULL, 0, &H, &y, &p2, &e), 0);
	assert_int_equal(agent_op_write(p2, big, 1), -EBADF);
}

static void test_timeout_then_late_frames(void **state)
{
	Fx *f = *state;
	Rec x = {0};
	FlError e = {0};
	assert_int_equal(agent_op_start(f->c, "ping", NULL, 30, &H, &x, NULL, &e), 0);
	pump(f);
	int64_t id = got_int(f, 0, "id");
	clear_got(f);
	assert_true(agent_client_next_deadline(f->c) > 0);
	struct timespec ts = {0, 60 * 1000 * 1000};
	nanosleep(&ts, NULL);
	pump(f);
	assert_int_equal(x.done, 1);
	assert_int_equal(x.r, -ETIMEDOUT);
	/* the host asked the agent to cancel it */
	assert_int_equal(f->ngot, 1);
	assert_string_equal(got_str(f, 0, "op"), "cancel");
	assert_int_equal(got_int(f, 0, "target"), id);
	/* late frames for the finished op are dropped, not fatal */
	char j[200];
	snprintf(j, sizeof(j), "{\"type\":\"data\",\"id\":%lld,\"fd\":1}", (long long)id);
	send_frame(f, j, "late", 4);
	snprintf(j, sizeof(j), "{\"type\":\"res\",\"id\":%lld,\"ok\":true}", (long long)id);
	send_frame(f, j, NULL, 0);
	pump(f);
	assert_true(agent_client_is_ready(f->c));
	assert_int_equal(x.done, 1);
}

static void test_free_cancels_pending(void **state)
{
	Fx *f = *state;
	Rec a = {0}, b = {0};
	FlError e = {0};
	assert_int_equal(agent_op_start(f->c, "ping", NULL, 0, &H, &a, NULL, &e), 0);
	assert_int_equal(agent_op_start(f->c, "ping", NULL, 0, &H, &b, NULL, &e), 0);
	agent_client_free(f->c);
	f->c = NULL;
	assert_int_equal(a.done, 1);
	assert_int_equal(a.r, -ECANCELED);
	assert_int_equal(b.done, 1);
	assert_int_equal(b.r, -ECANCELED);
}

static void test_eof_mid_frame(void **state)
{
	Fx *f = *state;
	Rec a = {0};
	FlError e = {0};
	assert_int_equal(agent_op_start(f->c, "ping", NULL, 0, &H, &a, NULL, &e), 0);
	send_raw(f, "FLA1\x40\x00\x00\x00\x00\x00\x00\x00{\"type\":", 20);
	shutdown(f->peer, SHUT_WR);
	pump(f);
	assert_int_equal(a.done, 1);
	assert_int_equal(a.r, -ECONNRESET);
	assert_int_equal(f->states, 2); /* ready, then the end */
	assert_true(f->state_r < 0);
	assert_int_equal(agent_client_fd(f->c), -1);
	assert_true(agent_client_dispatch(f->c, POLLIN) < 0);
}

static void test_callback_may_cancel(void **state)
{
	Fx *f = *state;
	Rec x = {.cancel_in_data = true};
	FlError e = {0};
	assert_int_equal(agent_op_start(f->c, "file_read", NULL, 0, &H, &x, NULL, &e), 0);
	pump(f);
	char j[200];
	snprintf(j, sizeof(j), "{\"type\":\"data\",\"id\":%lld,\"fd\":1}", (long long)got_int(f, 0, "id"));
	send_frame(f, j, "abc", 3);
	pump(f);
	assert_string_equal(got_str(f, f->ngot - 1, "op"), "cancel");
	assert_true(agent_client_is_ready(f->c));
}

/* ---- hostile frames: each must end the connection cleanly --------------- */

typedef struct Hostile {
	const char *name;
	const char *json; /* %1$lld: the pending op's id */
	size_t plen;
	int want;         /* expected error */
} Hostile;

static const Hostile hostile[] = {
	{"reply for an id never used", "{\"type\":\"res\",\"id\":999,\"ok\":true}", 0, -EPROTO},
	{"reply for id 0", "{\"type\":\"res\",\"id\":0,\"ok\":true}", 0, -EPROTO},
	{"negative id", "{\"type\":\"res\",\"id\":-1,\"ok\":true}", 0, -EPROTO},
	{"string id", "{\"type\":\"res\",\"id\":\"1\",\"ok\":true}", 0, -EPROTO},
	{"reply without ok", "{\"type\":\"res\",\"id\":%lld}", 0, -EPROTO},
	{"ok not boolean", "{\"type\":\"res\",\"id\":%lld,\"ok\":1}", 0, -EPROTO},
	{"payload on a reply", "{\"type\":\"res\",\"id\":%lld,\"ok\":true}", 10, -EPROTO},
	{"data on stdin", "{\"type\":\"data\",\"id\":%lld,\"fd\":0}", 10, -EPROTO},
	{"data on fd 3", "{\"type\":\"data\",\"id\":%lld,\"fd\":3}", 10, -EPROTO},
	{"data without fd", "{\"type\":\"data\",\"id\":%lld}", 10, -EPROTO},
	{"data beyond window", "{\"type\":\"data\",\"id\":%lld,\"fd\":1}", 9000, -EPROTO},
	{"ack never sent", "{\"type\":\"ack\",\"id\":%lld,\"fd\":0,\"bytes\":5}", 0, -EPROTO},
	{"ack for stdout", "{\"type\":\"ack\",\"id\":%lld,\"fd\":1,\"bytes\":5}", 0, -EPROTO},
	{"event without name", "{\"type\":\"event\",\"id\":%lld}", 0, -EPROTO},
	{"unknown type", "{\"type\":\"surprise\",\"id\":%lld}", 0, -EPROTO},
	{"no type", "{\"id\":%lld}", 0, -EPROTO},
	{"type not a string", "{\"type\":5,\"id\":%lld}", 0, -EPROTO},
	{"hello with another nonce", "{\"type\":\"hello\",\"nonce\":\"00000000000000000000000000000000\"}", 0, -EPROTO},
	{"hello without sync", "{\"type\":\"hello\",\"nonce\":\"0102030405060708090a0b0c0d0e0f10\"}", 0, -EPROTO},
	{"header too large", NULL, 5000, -EMSGSIZE},
	{"payload too large", NULL, 70000, -EMSGSIZE},
	{"not json", NULL, 1, -EPROTO},
	{"json array", NULL, 2, -EPROTO},
	{"bad magic", NULL, 3, -EPROTO},
	{"agent reset", "{\"type\":\"reset\",\"reason\":\"restarted\"}", 0, -ECONNRESET},
	{"foreign sync", NULL, 4, -EPROTO},
	{"data after eof", NULL, 6, -EPROTO},
	{"window overrun in pieces", NULL, 7, -EPROTO},
};

static void test_hostile_frames(void **state)
{
	for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
		const Hostile *h = &hostile[i];
		void *st;
		assert_int_equal(setup_ready(&st), 0);
		Fx *f = st;
		Rec x = {0}, y = {0};
		FlError e = {0};
		AgentExecSpec s = {.shell = "x", .stdin_stream = true};
		AgentOp *xop;
		assert_int_equal(agent_exec_start(f->c, &s, 0, &H, &x, &xop, &e), 0);
		assert_int_equal(agent_op_start(f->c, "ping", NULL, 0, &H, &y, NULL, &e), 0);
		pump(f);
		long long id = (long long)got_int(f, 0, "id");
		char j[400];
		if (h->json) {
			snprintf(j, sizeof(j), h->json, id);
			static uint8_t pl[9000];
			send_frame(f, j, pl, h->plen);
		} else if (h->plen == 5000) {
			/* declares a 5000-byte header: over max_header 4096 */
			uint8_t pre[12] = {'F', 'L', 'A', '1', 0x88, 0x13, 0, 0, 0, 0, 0, 0};
			send_raw(f, pre, 12);
			send_raw(f, "{\"type\":", 8);
		} else if (h->plen == 70000) {
			uint8_t pre[12] = {'F', 'L', 'A', '1', 2, 0, 0, 0, 0x70, 0x11, 0x01, 0};
			send_raw(f, pre, 12);
		} else if (h->plen == 1) {
			uint8_t pre[12] = {'F', 'L', 'A', '1', 3, 0, 0, 0, 0, 0, 0, 0};
			send_raw(f, pre, 12);
			send_raw(f, "{{{", 3);
		} else if (h->plen == 2) {
			send_frame(f, "[1,2]", NULL, 0);
		} else if (h->plen == 3) {
			send_raw(f, "HTTP/1.1 200 OK\r\n", 17);
		} else if (h->plen == 4) {
			AgentBuf b = {0};
			uint8_t other[AGENT_NONCE_LEN] = {7};
			agent_sync_append(&b, other);
			send_raw(f, agent_buf_head(&b), b.len);
			agent_buf_free(&b);
		} else if (h->plen == 6) {
			snprintf(j, sizeof(j), "{\"type\":\"data\",\"id\":%lld,\"fd\":1,\"eof\":true}", id);
			send_frame(f, j, NULL, 0);
			snprintf(j, sizeof(j), "{\"type\":\"data\",\"id\":%lld,\"fd\":1}", id);
			send_frame(f, j, "x", 1);
		} else if (h->plen == 7) {
			snprintf(j, sizeof(j), "{\"type\":\"data\",\"id\":%lld,\"fd\":2}", id);
			static uint8_t pl[2000];
			/* a paused consumer acks nothing; 5 * 2000 > 8192 */
			agent_op_pause(xop, true);
			for (int k = 0; k < 5; k++)
				send_frame(f, j, pl, sizeof(pl));
		}
		pump(f);
		if (x.done != 1 || y.done != 1 || x.r != h->want)
			fprintf(stderr, "hostile case '%s': done %d/%d r %d (%s)\n", h->name, x.done,
				y.done, x.r, x.msg);
		assert_int_equal(x.done, 1);
		assert_int_equal(y.done, 1);
		assert_int_equal(x.r, h->want);
		assert_int_equal(f->states, 2); /* ready, then the end */
		assert_int_equal(f->state_r, h->want);
		assert_int_equal(agent_client_fd(f->c), -1);
		assert_int_equal(agent_client_poll_events(f->c), 0);
		assert_int_equal(agent_op_start(f->c, "ping", NULL, 0, &H, &y, NULL, &e), -ENOTCONN);
		assert_int_equal(y.done, 1);
		teardown(&st);
	}
}

static void test_hello_timeout(void **state)
{
	Fx *f = calloc(1, sizeof(*f));
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	AgentClientOptions o = {.on_state = on_state, .userdata = f, .hello_timeout_ms = 30};
	FlError e;
	assert_int_equal(agent_client_new_fd(sv[0], &o, &f->c, &e), 0);
	struct timespec ts = {0, 50 * 1000 * 1000};
	nanosleep(&ts, NULL);
	assert_int_equal(agent_client_dispatch(f->c, 0), -ETIMEDOUT);
	assert_int_equal(f->states, 1);
	assert_int_equal(f->state_r, -ETIMEDOUT);
	agent_client_free(f->c);
	close(sv[1]);
	free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_handshake_through_stale_bytes, setup_raw, teardown),
		cmocka_unit_test_setup_teardown(test_not_ready_no_callback, setup_raw, teardown),
		cmocka_unit_test_setup_teardown(test_reply_and_error, setup_ready, teardown),
		cmocka_unit_test_setup_teardown(test_output_flow_control, setup_ready, teardown),
		cmocka_unit_test_setup_teardown(test_input_credit, setup_ready, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_then_late_frames, setup_ready, teardown),
		cmocka_unit_test_setup_teardown(test_free_cancels_pending, setup_ready, teardown),
		cmocka_unit_test_setup_teardown(test_eof_mid_frame, setup_ready, teardown),
		cmocka_unit_test_setup_teardown(test_callback_may_cancel, setup_ready, teardown),
		cmocka_unit_test(test_hostile_frames),
		cmocka_unit_test(test_hello_timeout),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
