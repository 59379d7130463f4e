/* SPDX-License-Identifier: MIT */
/*
 * libagentc: host side of the fluid guest-agent protocol (build/libagentc.a).
 * Wire format: docs/agent-protocol.md. The guest is `fluid-agent`.
 *
 * Two layers, in the style of qmp/qmp.h:
 *  - AgentClient: one connection to one agent (the unix socket of the VM's
 *    virtserialport chardev, or a socket/pipe to a host-run agent in tests).
 *    Non-blocking and loop-agnostic: the caller polls agent_client_fd() for
 *    agent_client_poll_events(), and calls agent_client_dispatch() when it
 *    is ready or when agent_client_next_deadline() passes.
 *    Requests are AgentOp objects: a request with an optional input stream
 *    (stdin, file contents) and optional output streams (stdout/stderr, file
 *    contents), all flow controlled so memory stays bounded on both sides.
 *  - Blocking helpers (agent_*_sync) that run their own poll loop, for tools
 *    and tests.
 *
 * DESIGN: a client belongs to one thread. Every AgentOp's on_done is called
 * exactly once: with the reply (r == 0), with an error reported by the agent
 * (r == -errno from the guest, message in err), with -ETIMEDOUT (host-side
 * timeout), -ECANCELED (agent_client_free) or -ECONNRESET/-EPROTO when the
 * connection ends or the peer misbehaves. If a call that takes callbacks
 * returns an error, no callback of it is ever called. The library never logs
 * and never exits.
 *
 * Everything the guest sends is hostile: frame, header and payload sizes,
 * the number of streams and the bytes buffered per stream are capped; a
 * malformed or over-quota peer gets the connection closed (on_state with
 * -EPROTO/-EMSGSIZE), never a crash or unbounded memory.
 *
 * Connection: the socket may be connected long before the guest agent runs
 * (QEMU accepts the chardev connection at start). The client sends a hello
 * with a random nonce, discards every byte until the agent's sync+hello reply
 * carrying that nonce, and then is ready. A new connection (new client) is
 * needed after the socket drops, and after the agent says it lost the
 * session (it was restarted in the guest, which virtio-serial does not show
 * the host): on_state then reports -ECONNRESET. Background processes in the
 * guest survive reconnects; foreground execs, ptys, transfers and an
 * fsfreeze of the old connection do not.
 *
 * Ownership: json objects handed to callbacks are borrowed for the duration
 * of the callback (json_object_get() to keep them). json arguments passed in
 * are taken over by the client, also on error. An AgentOp belongs to the
 * client and stays valid until its on_done callback returns.
 */
#ifndef FL_AGENT_CLIENT_H
#define FL_AGENT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <json-c/json.h>

#include "error.h"

typedef struct AgentClient AgentClient;
typedef struct AgentOp AgentOp;

/* Stream numbers inside one op: input is 0, outputs are 1 and 2. */
#define AGENT_FD_STDIN 0
#define AGENT_FD_STDOUT 1
#define AGENT_FD_STDERR 2

/* Called once when the connection is ready (r == 0, hello answered) and once
 * when it has failed or ended (r < 0). After r < 0 only agent_client_free()
 * is useful. */
typedef void (*agent_state_fn)(AgentClient *c, int r, const FlError *err, void *userdata);

typedef struct AgentClientOptions {
	size_t max_header;        /* largest JSON header accepted; 0 = 1 MiB */
	size_t max_payload;       /* largest payload per frame; 0 = 256 KiB */
	size_t window;            /* bytes per output stream the agent may send
				   * ahead of our acknowledgement; 0 = 256 KiB */
	unsigned max_ops;         /* requests in flight; 0 = 64 */
	size_t max_outq;          /* bytes queued towards the agent; 0 = 2 MiB */
	unsigned hello_timeout_ms; /* 0 = none (wait until the agent answers) */
	agent_state_fn on_state;
	void *userdata;
	const uint8_t *test_nonce; /* tests/fuzzing only: fixed 16-byte nonce */
} AgentClientOptions;

/* Starts a non-blocking connect to a unix socket path and queues the hello. */
int agent_client_new(const char *socket_path, const AgentClientOptions *opts, AgentClient **ret,
		     FlError *err);
/* Wraps a connected stream fd (socket or pipe end; read+write). Takes the fd. */
int agent_client_new_fd(int fd, const AgentClientOptions *opts, AgentClient **ret, FlError *err);
/* Closes the connection. Ops in flight complete with -ECANCELED (their
 * callbacks run from inside this call). Accepts NULL. */
void agent_client_free(AgentClient *c);

int agent_client_fd(const AgentClient *c);
/* POLLIN, plus POLLOUT while output is queued or a connect is in progress. */
short agent_client_poll_events(const AgentClient *c);
/* Earliest deadline (CLOCK_MONOTONIC ms) of a pending timeout, or -1. */
int64_t agent_client_next_deadline(const AgentClient *c);
/* Handles readiness (revents from poll; 0 for a timer tick). Returns 0 while
 * the connection lives, negative errno once it has ended. */
int agent_client_dispatch(AgentClient *c, short revents);
bool agent_client_is_ready(const AgentClient *c);
/* The agent's hello reply ({"version", "protocol", "ops", ...}), borrowed;
 * NULL before ready. */
struct json_object *agent_client_hello(const AgentClient *c);

/* ---- Requests -------------------------------------------------------- */

typedef struct AgentOpHandlers {
	/* An intermediate event ("started" with "pid", "stat" before file
	 * data, ...). Optional. */
	void (*on_event)(AgentOp *op, const char *event, struct json_object *ev, void *userdata);
	/* Output bytes for stream fd (1 or 2); len == 0 means end of that
	 * stream. Credit is returned to the agent after the callback unless
	 * the op is paused. Optional (output is then discarded). */
	void (*on_data)(AgentOp *op, int fd, const void *buf, size_t len, void *userdata);
	/* The input stream can take more bytes (see agent_op_write). Optional. */
	void (*on_writable)(AgentOp *op, void *userdata);
	/* Exactly once. res: the final reply object (borrowed), NULL if r < 0. */
	void (*on_done)(AgentOp *op, int r, struct json_object *res, const FlError *err,
			void *userdata);
} AgentOpHandlers;

/*
 * Sends request `op` (e.g. "ping", "stat") with args (object or NULL, taken
 * over). timeout_ms == 0 means no host-side timeout. *ret (may be NULL) gets
 * the op handle. Returns -ENOTCONN before ready / after the end, -ENOBUFS
 * when too many ops are in flight or the output queue is full.
 */
int agent_op_start(AgentClient *c, const char *op, struct json_object *args, unsigned timeout_ms,
		   const AgentOpHandlers *h, void *userdata, AgentOp **ret, FlError *err);
/* Writes to the op's input stream (stdin, file contents). Takes as many bytes
 * as the agent's credit and our queue allow: returns that count (0: wait for
 * on_writable), -EPIPE once the input is closed or the connection is gone,
 * -EBADF for ops without input (exec without stdin_stream). Not to be
 * called after the op's on_done. */
ssize_t agent_op_write(AgentOp *op, const void *buf, size_t len);
/* Ends the input stream (EOF to stdin, end of file contents). */
int agent_op_close_input(AgentOp *op);
/* Stops (true) / resumes acknowledging output, so the agent stops sending
 * once the window is used: backpressure for slow consumers. */
void agent_op_pause(AgentOp *op, bool paused);
/* Asks the agent to abort the op (kills an exec's process group). on_done
 * still comes, from the agent's answer. */
int agent_op_cancel(AgentOp *op);
/* Sends a signal to an exec's/pty's process group. */
int agent_op_signal(AgentOp *op, int sig);
uint64_t agent_op_id(const AgentOp *op);
AgentClient *agent_op_client(const AgentOp *op);

/* ---- Typed request builders (argument objects for agent_op_start) ----- */

typedef struct AgentExecSpec {
	const char *const *argv; /* NULL-terminated, run directly (no shell) */
	const char *shell;       /* or a command line for /bin/sh -c */
	const char *const *env;  /* "NAME=value", NULL-terminated; may be NULL */
	const char *cwd;         /* NULL: the user's home */
	const char *user;        /* name or decimal uid; NULL: root */
	bool stdin_stream;       /* input comes through agent_op_write; else /dev/null */
	bool background;         /* start as a background process: the reply
				  * comes at once with {"bg": id, "pid"} */
	unsigned timeout_ms;     /* guest-side: kill the process group; 0 = none */
	bool pty;                /* run on a pseudo-terminal (output on fd 1) */
	unsigned rows, cols;     /* pty size (0 = 24x80) */
} AgentExecSpec;

/* Builds the "exec" (or, with spec->pty, "pty_open") arguments. */
int agent_exec_args(const AgentExecSpec *spec, struct json_object **ret, FlError *err);
/* Starts an exec/pty op from spec; results as in agent_op_start. The final
 * reply holds "exit_code" or "signal", "timed_out", "pid", "duration_ms". */
int agent_exec_start(AgentClient *c, const AgentExecSpec *spec, unsigned host_timeout_ms,
		     const AgentOpHandlers *h, void *userdata, AgentOp **ret, FlError *err);
/* Resizes a pty op's terminal. */
int agent_pty_resize(AgentOp *op, unsigned rows, unsigned cols);

typedef struct AgentExecResult {
	int exit_code;       /* valid when signal == 0 */
	int signal;          /* terminating signal or 0 */
	bool timed_out;      /* killed by the guest-side timeout */
	int pid;
	uint64_t duration_ms;
	uint64_t stdout_bytes, stderr_bytes;
} AgentExecResult;
/* Fills res from an exec's final reply. */
int agent_exec_result_parse(struct json_object *reply, AgentExecResult *res);

/* ---- Blocking helpers (tools and tests) --------------------------------- */

/* Connects and waits for the hello reply for up to timeout_ms. */
int agent_connect_sync(const char *socket_path, unsigned timeout_ms, AgentClient **ret,
		       FlError *err);
/* Waits until c is ready (for clients made with agent_client_new[_fd]). */
int agent_wait_ready_sync(AgentClient *c, unsigned timeout_ms, FlError *err);
/* One request, waits for its reply. *ret_json (may be NULL) gets a new
 * reference to the reply object. */
int agent_call_sync(AgentClient *c, const char *op, struct json_object *args,
		    unsigned timeout_ms, struct json_object **ret_json, FlError *err);
/* Runs a command. stdin_fd (or -1: none) is copied to its stdin; stdout and
 * stderr go to the given fds (or -1: discarded). Returns 0 when the command
 * ran (whatever its exit status, see res), -errno otherwise. */
int agent_exec_sync(AgentClient *c, const AgentExecSpec *spec, int stdin_fd, int stdout_fd,
		    int stderr_fd, unsigned timeout_ms, AgentExecResult *res, FlError *err);
/* Runs a command and collects at most max_out bytes of each of stdout and
 * stderr into malloc'ed NUL-terminated buffers (NULL pointers: discard).
 * Output beyond max_out is counted in res but dropped. in/in_len: stdin. */
int agent_exec_capture_sync(AgentClient *c, const AgentExecSpec *spec, const void *in,
			    size_t in_len, size_t max_out, char **ret_out, size_t *ret_out_len,
			    char **ret_err, size_t *ret_err_len, unsigned timeout_ms,
			    AgentExecResult *res, FlError *err);

typedef struct AgentFileAttrs {
	int mode;            /* permission bits, -1: 0644 for new files */
	const char *owner;   /* user name or uid, NULL: root / unchanged */
	const char *group;   /* group name or gid, NULL: owner's group */
	bool mkdirs;         /* create missing parent directories */
} AgentFileAttrs;

/* Copies local_fd (read to EOF) to guest_path (written atomically). */
int agent_file_put_sync(AgentClient *c, int local_fd, const char *guest_path,
			const AgentFileAttrs *attrs, unsigned timeout_ms, uint64_t *ret_bytes,
			FlError *err);
/* Writes a buffer to guest_path. */
int agent_file_put_buf_sync(AgentClient *c, const void *buf, size_t len, const char *guest_path,
			    const AgentFileAttrs *attrs, unsigned timeout_ms, FlError *err);
/* Copies guest_path to local_fd. */
int agent_file_get_sync(AgentClient *c, const char *guest_path, int local_fd,
			unsigned timeout_ms, uint64_t *ret_bytes, FlError *err);
/* Freezes every writable block-backed filesystem in the guest; the agent
 * thaws by itself after auto_thaw_ms (0 = agent default, 60 s) or when the
 * host disconnects. *ret_count: filesystems frozen. */
int agent_fsfreeze_sync(AgentClient *c, unsigned auto_thaw_ms, unsigned timeout_ms,
			unsigned *ret_count, FlError *err);
int agent_fsthaw_sync(AgentClient *c, unsigned timeout_ms, unsigned *ret_count, FlError *err);

typedef struct AgentIdentity {
	const char *hostname;    /* NULL: unchanged */
	const char *machine_id;  /* 32 hex digits; NULL: a fresh random one (made in
				  * the guest after the RNG reseed) */
	const void *entropy;     /* bytes for RNDADDENTROPY; NULL: 64 from getrandom() */
	size_t entropy_len;      /* <= 4096 */
	bool set_clock;          /* set the guest wall clock from host CLOCK_REALTIME */
	bool dhcp;               /* re-run the guest's DHCP client */
} AgentIdentity;
/* Refreshes the guest identity after a clone. *ret_json (may be NULL) gets
 * the reply ({"hostname", "machine_id", "dhcp": client or "none", ...}). */
int agent_identity_sync(AgentClient *c, const AgentIdentity *id, unsigned timeout_ms,
			struct json_object **ret_json, FlError *err);

uint64_t agent_now_ms(void); /* CLOCK_MONOTONIC in ms */

#endif
