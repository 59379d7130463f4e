/* SPDX-License-Identifier: MIT */
/*
 * libqmp: a QMP (QEMU Machine Protocol) client built on json-c.
 *
 * Two layers:
 *  - QmpParser: a pure incremental parser. Bytes in, complete JSON messages
 *    out. Survives messages split at any byte and several messages per
 *    buffer; rejects oversized or malformed input with an error (and stays
 *    failed) instead of growing without bound.
 *  - QmpClient: a client over a unix socket. Non-blocking and loop-agnostic:
 *    the caller polls qmp_client_fd() for qmp_client_poll_events() and calls
 *    qmp_client_dispatch() when it is ready or when the deadline from
 *    qmp_client_next_deadline() passes. Blocking helpers (qmp_*_sync) run
 *    their own poll loop for tools and tests.
 *
 * DESIGN: a client belongs to one thread. Every command callback is called
 * exactly once: with the reply, with a QMP error, with -ETIMEDOUT, or with
 * the reason the connection ended (EOF at any point completes every pending
 * command): -ECONNRESET (EOF or reset), -EBADMSG/-EMSGSIZE (QEMU sent bad
 * or oversized JSON), -EPROTO (not a QMP server), -ETIMEDOUT (handshake),
 * -ECANCELED (qmp_client_free()). If a call that takes a callback returns an
 * error, the callback is never called. Callbacks run only from inside
 * qmp_client_dispatch() and qmp_client_free(); they may queue commands and
 * may free the client, but must not call dispatch or the *_sync helpers
 * (those return -EDEADLK there). The library never logs and never exits.
 *
 * Ownership: json objects handed to callbacks are borrowed for the duration
 * of the callback (json_object_get() to keep them). Arguments passed to
 * qmp_client_command() are taken over by the client (also when it fails).
 */
#ifndef FL_QMP_H
#define FL_QMP_H

#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

#include "error.h"

#define QMP_MAX_MESSAGE_DEFAULT (1u << 20)

/* ---- Parser ---------------------------------------------------------- */

typedef struct QmpParser QmpParser;

/* Called for each complete message (a JSON object). msg is borrowed. */
typedef void (*qmp_message_fn)(struct json_object *msg, void *userdata);

/* max_message: the largest message accepted, in bytes (0 = default). */
QmpParser *qmp_parser_new(size_t max_message);
void qmp_parser_free(QmpParser *p);

/*
 * Feeds len bytes. Calls fn for every message completed by them, in order.
 * Returns 0, or -EMSGSIZE (message larger than max), -EBADMSG (malformed:
 * not JSON, or a top-level value that is not an object). After an error the
 * parser stays failed and every further call returns the same error.
 */
int qmp_parser_feed(QmpParser *p, const char *buf, size_t len, qmp_message_fn fn, void *userdata);

/* ---- Client ---------------------------------------------------------- */

typedef struct QmpClient QmpClient;

/* A QMP error reply: class ("GenericError", ...) and description. */
typedef struct QmpReplyError {
	char klass[64];
	char desc[512];
} QmpReplyError;

/*
 * Command completion. r == 0: ret is the "return" member. r == -EREMOTEIO:
 * QEMU answered with an error, described by qerr. Other negative r: local
 * failure (-ETIMEDOUT, -ECONNRESET when the connection ended, -EPROTO).
 */
typedef void (*qmp_reply_fn)(QmpClient *c, int r, struct json_object *ret,
			     const QmpReplyError *qerr, void *userdata);

/* An asynchronous event; data may be NULL (the "timestamp" member is not
 * passed on). */
typedef void (*qmp_event_fn)(QmpClient *c, const char *event, struct json_object *data,
			     void *userdata);

/* Called once when the connection is ready (r == 0, after greeting and
 * qmp_capabilities) or has failed/ended (r < 0). After r < 0 the client is
 * dead: only qmp_client_free() is useful. */
typedef void (*qmp_state_fn)(QmpClient *c, int r, void *userdata);

typedef struct QmpClientOptions {
	size_t max_message;       /* 0 = QMP_MAX_MESSAGE_DEFAULT */
	unsigned max_pending;     /* commands in flight; 0 = 64 */
	unsigned handshake_timeout_ms; /* 0 = 5000 */
	qmp_state_fn on_state;
	qmp_event_fn on_event;
	void *userdata;
} QmpClientOptions;

/* Starts a non-blocking connect to a unix socket path. A socket that does
 * not exist or refuses gives -ENOENT/-ECONNREFUSED here (no retries); a
 * listener with a full backlog gives -EAGAIN. */
int qmp_client_new(const char *socket_path, const QmpClientOptions *opts, QmpClient **ret,
		   FlError *err);
/* Wraps an already connected socket (takes ownership of fd, also on
 * failure; it is made non-blocking and close-on-exec). */
int qmp_client_new_fd(int fd, const QmpClientOptions *opts, QmpClient **ret, FlError *err);
/* Closes the socket. Pending commands complete with -ECANCELED (callbacks
 * run from inside this call). Accepts NULL. */
void qmp_client_free(QmpClient *c);

int qmp_client_fd(const QmpClient *c);
/* POLLIN, plus POLLOUT while output is queued. */
short qmp_client_poll_events(const QmpClient *c);
/* Earliest deadline (CLOCK_MONOTONIC ms) for a pending timeout, or -1. */
int64_t qmp_client_next_deadline(const QmpClient *c);
/* Handles readiness (revents from poll, may be 0 for a timer tick). Returns
 * 0 while the connection lives, negative errno once it has ended (the fd
 * stays open until qmp_client_free(); poll_events() is then 0). Returns
 * -ECANCELED after a callback freed the client: c is gone. */
int qmp_client_dispatch(QmpClient *c, short revents);
int qmp_client_is_ready(const QmpClient *c);

/*
 * Queues a command. args (may be NULL) is taken over. pass_fd >= 0 is sent
 * with SCM_RIGHTS alongside the command (for getfd/add-fd); the caller keeps
 * its copy. timeout_ms == 0 means no timeout. Commands may be queued before
 * the handshake completes; they are sent after it. The timeout counts from
 * this call. Errors: -EINVAL (bad name, args not an object), -ENOTCONN
 * (connection ended), -EAGAIN (max_pending commands in flight), -EMSGSIZE
 * (command larger than max_message), -ENOBUFS (output queue full: 4 x
 * max_message unwritten bytes), -EBADF (pass_fd). A command carrying a
 * descriptor is written only once the previous one carrying a descriptor
 * has been answered (QEMU would drop the earlier, unclaimed descriptor).
 */
int qmp_client_command(QmpClient *c, const char *command, struct json_object *args, int pass_fd,
		       unsigned timeout_ms, qmp_reply_fn fn, void *userdata);

uint64_t qmp_now_ms(void); /* CLOCK_MONOTONIC in ms */

/* ---- Blocking helpers (tools and tests) --------------------------------- */

/* Connects and negotiates, waiting up to timeout_ms (0 = 5000) in all,
 * including for room in the listener's backlog (QEMU serves one monitor
 * client at a time; later ones queue). A missing socket fails at once
 * (-ENOENT/-ECONNREFUSED). Events are queued for qmp_wait_event_sync()
 * from the greeting on. */
int qmp_connect_sync(const char *socket_path, unsigned timeout_ms, QmpClient **ret, FlError *err);
/* Runs one command and waits for its reply. *ret_json (may be NULL) gets a
 * new reference to "return". QMP errors give -EREMOTEIO with the class and
 * description in err ("Class: desc"). timeout_ms == 0 waits until the
 * reply or the end of the connection. Events arriving meanwhile go to the
 * on_event handler (if any) and to the event queue. */
int qmp_call_sync(QmpClient *c, const char *command, struct json_object *args, int pass_fd,
		  unsigned timeout_ms, struct json_object **ret_json, FlError *err);
/* Waits for an event by name (events seen since the last wait are kept in a
 * small queue, so an event arriving during qmp_call_sync is not lost).
 * *ret_data (may be NULL) gets a new reference to its data or NULL.
 * The queue holds the last 32 events; each wait takes the oldest one with
 * that name and leaves the others. It starts with the first *_sync call on
 * a client made by qmp_client_new() (at once for qmp_connect_sync()). An
 * event queued before the connection ended is still returned; after that
 * the wait fails with the connection's error. timeout_ms == 0: no limit. */
int qmp_wait_event_sync(QmpClient *c, const char *event, unsigned timeout_ms,
			struct json_object **ret_data, FlError *err);

#endif
