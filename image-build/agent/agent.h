/* SPDX-License-Identifier: MIT */
/*
 * Internals of fluid-agent, the in-guest agent (a static binary). Shared by
 * fluid-agent.c (transport, loop, dispatch), agent-exec.c (exec, background
 * processes, ptys), agent-files.c and agent-system.c (fsfreeze, identity).
 *
 * DESIGN: single-threaded poll loop. Each request the host sends becomes an
 * Op when it lives longer than one reply (exec, pty, file transfers); Ops
 * belong to the current host connection and are cancelled when it goes.
 * Background processes (Bg) belong to the agent and survive reconnects.
 * Children are reaped through a signalfd(SIGCHLD); no fork per request
 * (vfork+exec only).
 */
#ifndef FL_AGENT_H
#define FL_AGENT_H

#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <json-c/json.h>

#include "agent-proto.h"
#include "cleanup.h"

FL_DEFINE_CLEANUP(DIR *, closedir)

#define AG_MAX_OPS 128
#define AG_MAX_BG 64
#define AG_OUTQ_SOFT (1024u * 1024)   /* stop producing data above this */
#define AG_OUTQ_HARD (16u * 1024 * 1024) /* host not reading at all: drop it */
#define AG_BG_RING (64u * 1024)

typedef struct Agent Agent;
typedef struct Op Op;

enum op_kind { OP_EXEC, OP_PTY, OP_FREAD, OP_FWRITE, OP_BGWAIT };

struct Op {
	Op *next;
	Agent *ag;
	uint64_t id;
	enum op_kind kind;
	bool internal;             /* identity's DHCP run: no output to host */
	bool orphan;               /* its session ended: reply to nobody */
	struct json_object *extra; /* fields merged into the final reply */

	/* input stream from the host (fd 0) */
	int in_fd;          /* stdin pipe / pty master / file; -1 when none */
	AgentBuf in;        /* received, not yet written to in_fd */
	uint64_t in_recv, in_acked, in_done;
	bool in_eof;        /* host sent end of input */
	bool in_wanted;     /* the op accepts input at all */

	/* output streams to the host (fd 1 and 2) */
	int out_fd[3];
	uint64_t credit[3];
	uint64_t sent[3];
	bool out_eof[3];    /* EOF frame queued (or stream absent) */

	/* processes */
	pid_t pid;
	bool exited;
	int status;
	bool timed_out;
	bool closing;       /* pty closed by the host: SIGHUP sent, SIGKILL at deadline */
	uint64_t start_ms, deadline_ms, grace_ms;
	uint64_t bg_target;

	/* files */
	char *path, *tmp_path;
	int mode, uid, gid;
	bool fsync;
};

typedef struct Bg {
	struct Bg *next;
	uint64_t id;
	pid_t pid;
	char *cmd;
	int fd[3];
	uint8_t *ring[3];
	size_t ring_len[3], ring_pos[3];
	uint64_t total[3];
	bool exited;
	int status;
	uint64_t start_ms, end_ms;
} Bg;

/* ---- fluid-agent.c: replies and the loop ---- */
uint64_t ag_now_ms(void);
void ag_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Final reply to request id: obj (taken, may be NULL) gets type/id/ok. */
void ag_reply(Agent *ag, uint64_t id, struct json_object *obj);
void ag_reply_err(Agent *ag, uint64_t id, int r, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void ag_event(Agent *ag, uint64_t id, const char *event, struct json_object *obj);
int ag_send_data(Agent *ag, uint64_t id, int fd, const void *buf, size_t len);
int ag_send_ack(Agent *ag, uint64_t id, int fd, uint64_t bytes);
bool ag_outq_room(const Agent *ag);
bool ag_connected(const Agent *ag);
Op *ag_op_new(Agent *ag, uint64_t id, enum op_kind kind);
void ag_op_finish(Op *op);      /* unlinks and frees */
Op *ag_op_find(Agent *ag, uint64_t id);
Op *ag_ops(Agent *ag);
Bg **ag_bg_list(Agent *ag);
uint64_t ag_next_bg_id(Agent *ag);
uint32_t ag_window(const Agent *ag);

/* ---- agent-exec.c ---- */
void exec_op_start(Agent *ag, uint64_t id, struct json_object *req, bool pty);
/* spawn for internal use: argv run as root with stdio on /dev/null */
int exec_internal(Agent *ag, uint64_t id, char **argv, unsigned timeout_ms,
		  struct json_object *extra);
void exec_on_child(Agent *ag, pid_t pid, int status);
void exec_op_progress(Op *op);   /* completion checks; may finish op */
void exec_op_timer(Op *op, uint64_t now);
void exec_op_cancel(Op *op, bool disconnect);
int exec_op_signal(Op *op, int sig);
int exec_op_close(Op *op);      /* cancel: SIGKILL; ptys SIGHUP first */
int exec_pty_resize(Op *op, unsigned rows, unsigned cols);
void bg_op(Agent *ag, uint64_t id, const char *op, struct json_object *req);
void bg_read(Bg *b, int fd);
void bg_wait_check(Agent *ag);

/* ---- agent-files.c ---- */
void file_op(Agent *ag, uint64_t id, const char *op, struct json_object *req);
void file_read_pump(Op *op);
int file_write_data(Op *op, const uint8_t *buf, size_t len);
void file_write_eof(Op *op);
void file_op_cancel(Op *op);

/* ---- agent-system.c ---- */
void sys_op(Agent *ag, uint64_t id, const char *op, struct json_object *req);
bool sys_frozen(void);
void sys_thaw_all(const char *why);
uint64_t sys_freeze_deadline(void);
void sys_timer(uint64_t now);
/* passwd/group lookups (no NSS in a static binary) */
typedef struct AgUser {
	uid_t uid;
	gid_t gid;
	char name[64];
	char home[256];
	char shell[256];
	int ngroups;
	gid_t groups[64];
} AgUser;
int sys_lookup_user(const char *spec, AgUser *ret);
int sys_lookup_group(const char *spec, gid_t *ret);

#endif
