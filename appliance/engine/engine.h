/* SPDX-License-Identifier: MIT */
/*
 * engine: the sandbox engine. Owns every sandbox VM, template and snapshot.
 *
 * Calls are blocking and thread-safe: API handlers call them from their own
 * threads. Operations on one sandbox are serialised; operations on
 * different sandboxes run in parallel. The engine's loop thread owns the
 * guest-agent connections, QEMU exit watches and TTL timers; handler threads
 * never touch them directly but hand requests to the loop and wait.
 *
 * Sandbox records are JSON files under STATE/sandboxes/<id>/ written
 * atomically; a restart re-adopts running QEMU processes, finishes or rolls
 * back interrupted operations (docs/engine.md) and removes orphans.
 */
#ifndef FL_ENGINE_H
#define FL_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

#include "error.h"

typedef struct FlEngine FlEngine;

typedef struct FlEngineConfig {
	const char *state_dir;   /* created if missing */
	const char *image_dir;   /* holds <name>/image.json, vmlinuz, initrd.img, disk.qcow2 */
	const char *accel;       /* "kvm" or "tcg" */
	unsigned max_sandboxes;  /* 0 = 64 */
	unsigned default_memory_mb; /* 0 = the image's memory_mb */
	unsigned default_vcpus;  /* 0 = 1 */
	unsigned tb_size_mb;     /* TCG translation buffer per VM; 0 = 32 */
	unsigned boot_timeout_ms; /* cold boot to agent ready; 0 = 300000 */
	unsigned max_snapshots;  /* per sandbox; 0 = 64 */
	unsigned pool_size;      /* warm clones kept ready per image and shape; 0 = none */
	const char *tap_bridge;  /* bridge for network "tap" (fluid provision network); NULL = none */
	/* Optional: called (from any thread) after every state change. */
	void (*on_event)(const char *sandbox_id, const char *event, struct json_object *data,
			 void *userdata);
	void *userdata;
} FlEngineConfig;

#define FL_NET_ALLOW_MAX 64
/* One allowlist entry: IPv4 network addr/prefix (host byte order) and an
 * inclusive port range (0-65535 = any port). */
typedef struct FlNetAllow {
	uint32_t addr;
	unsigned prefix; /* 0-32 */
	unsigned port_lo, port_hi;
} FlNetAllow;

/* "A.B.C.D[/PREFIX][:PORT[-PORT]]" (no prefix = /32, no port = any). */
int fl_net_allow_parse(const char *s, FlNetAllow *ret, FlError *err);
/* Canonical "A.B.C.D/P:LO-HI" (buf of 40 bytes is enough). */
void fl_net_allow_format(const FlNetAllow *a, char *buf, size_t len);

typedef struct FlSandboxSpec {
	const char *base_image;  /* image name, e.g. "debian-12" (required unless branching) */
	const char *name;        /* optional; [A-Za-z0-9-]{1,63}, default sbx-<id prefix> */
	const char *agent_id;    /* optional labels for the API */
	const char *job_id;
	unsigned vcpus, memory_mb; /* 0 = defaults */
	uint64_t ttl_seconds;    /* 0 = no TTL */
	bool cold_boot;          /* boot: cold (bench baseline) instead of a template clone */
	bool no_start;           /* create only (state CREATED) */
	const char *network;     /* "nat" (default), "none", "allowlist" or "tap" */
	/* "allowlist": outbound TCP/UDP only to these destinations (enforced
	 * on the QEMU process by the host kernel, docs/engine.md "Networking"). */
	const struct FlNetAllow *net_allow;
	size_t n_net_allow;      /* at most FL_NET_ALLOW_MAX */
	const char *from_sandbox; /* branch: source sandbox id ... */
	const char *from_snapshot; /* ... and its snapshot name */
} FlSandboxSpec;

int fl_engine_new(const FlEngineConfig *cfg, FlEngine **ret, FlError *err);
/* Stops the loop thread and disconnects; VMs keep running. Accepts NULL. */
void fl_engine_free(FlEngine *e);

/* Sandbox record as JSON (new reference): {id, sandbox_name, base_image,
 * agent_id, job_id, state, network, vcpus, memory_mb, ttl_seconds,
 * created_at, updated_at, boot, snapshots:[...], head}. */
int fl_engine_create(FlEngine *e, const FlSandboxSpec *spec, struct json_object **ret,
		     FlError *err);
int fl_engine_get(FlEngine *e, const char *id, struct json_object **ret, FlError *err);
/* Array of records (new reference). */
int fl_engine_list(FlEngine *e, struct json_object **ret);
int fl_engine_start(FlEngine *e, const char *id, FlError *err);
int fl_engine_stop(FlEngine *e, const char *id, FlError *err);
int fl_engine_destroy(FlEngine *e, const char *id, FlError *err);

typedef struct FlExecSpec {
	const char *const *argv;
	const char *shell;
	const char *const *env;
	const char *cwd;
	const char *user;
	unsigned timeout_ms;     /* 0 = no timeout */
	const void *stdin_data;  /* may be NULL */
	size_t stdin_len;
} FlExecSpec;

typedef struct FlExecResult {
	int exit_code;
	int signal;
	bool timed_out;
	uint64_t duration_ms;
	uint64_t stdout_bytes, stderr_bytes;
} FlExecResult;

/* Output callback: runs on the engine loop thread; must not block.
 * stream 1 = stdout, 2 = stderr. */
typedef void (*fl_output_fn)(int stream, const void *buf, size_t len, void *userdata);

int fl_engine_exec(FlEngine *e, const char *id, const FlExecSpec *spec, fl_output_fn out,
		   void *userdata, FlExecResult *ret, FlError *err);

/*
 * Simple agent requests on a running sandbox ("stat", "list", "mkdir",
 * "remove", "rename", "bg_list", "bg_kill", "bg_wait", ... see
 * docs/agent-protocol.md). args is taken over; *ret gets the reply.
 */
int fl_engine_agent_call(FlEngine *e, const char *id, const char *op, struct json_object *args,
			 unsigned timeout_ms, struct json_object **ret, FlError *err);

/*
 * Streams: an agent operation with live input and output, for file
 * transfers of any size, exec with streamed output, and terminals.
 *
 * The caller writes the op's input (file contents, stdin, keystrokes) into
 * fl_stream_in_fd() and closes it for EOF (fl_stream_close_input), and reads
 * the op's output from fl_stream_out_fd() as records: one byte stream
 * number (1 stdout / file data, 2 stderr), a 4-byte little-endian length,
 * the bytes. The out fd reaches EOF when the op is done; fl_stream_finish()
 * then gives its final reply. A slow reader slows the guest down (bounded
 * buffers all the way), it never makes fluid buffer without limit.
 * Both fds are blocking pipes owned by the stream.
 */
typedef struct FlStream FlStream;

typedef struct FlStreamSpec {
	const char *op;            /* "file_read", "file_write", "bg_output", "exec", "pty" */
	struct json_object *args;  /* taken over; for "exec"/"pty": see below */
	const FlExecSpec *exec;    /* for "exec" and "pty" instead of args */
	bool input;                /* the op takes input from in_fd */
	unsigned rows, cols;       /* "pty" size */
	unsigned timeout_ms;       /* host-side; 0 = none */
} FlStreamSpec;

int fl_engine_stream_open(FlEngine *e, const char *id, const FlStreamSpec *spec, FlStream **ret,
			  FlError *err);
int fl_stream_in_fd(const FlStream *s);
int fl_stream_out_fd(const FlStream *s);
void fl_stream_close_input(FlStream *s);
/* Asks the agent to stop the op (kills an exec's process group); returns once
 * the engine loop has sent it, so the stream may be finished right after. */
void fl_stream_cancel(FlStream *s);
/* Resizes a "pty" stream's terminal. */
int fl_stream_resize(FlStream *s, unsigned rows, unsigned cols);
/* Waits for the end of the op, frees the stream. *ret (may be NULL) gets
 * the final reply; r < 0 when the op failed. */
int fl_stream_finish(FlStream *s, struct json_object **ret, FlError *err);

/* Snapshot (memory=false: disk only, consistent through fsfreeze) or
 * checkpoint (memory=true: disk + RAM). Names: [A-Za-z0-9._-]{1,64}. */
int fl_engine_snapshot(FlEngine *e, const char *id, const char *name, bool memory,
		       struct json_object **ret, FlError *err);
int fl_engine_restore(FlEngine *e, const char *id, const char *name, FlError *err);
int fl_engine_snapshot_delete(FlEngine *e, const char *id, const char *name, FlError *err);

/*
 * Inspectors, for diffs a reviewer can trust although the sandbox's guest
 * had root: a fresh clone of the sandbox's pristine template (no network)
 * with the frozen layers of the given snapshots hot-plugged read-only, as
 * disks of the inspector in that order. *ret: {"id": inspector id,
 * "disks": [{"snapshot", "device": "/dev/vdX"}]}. Run commands in it with
 * fl_engine_exec/stream/agent_call on its id (mount with -o ro,noload);
 * it is not listed, counts against no limit, and is destroyed by close (or
 * at the next start-up). At most 2 snapshots.
 */
int fl_engine_inspector_open(FlEngine *e, const char *id, const char *const *snapshots, size_t n,
			     struct json_object **ret, FlError *err);
int fl_engine_inspector_close(FlEngine *e, const char *inspector_id, FlError *err);

/* Status summary (new reference): accelerator, counts, templates. */
struct json_object *fl_engine_status(FlEngine *e);

/* Builds (or checks) the template of an image now; normally done on demand. */
int fl_engine_prepare_template(FlEngine *e, const char *image, unsigned memory_mb,
			       unsigned vcpus, FlError *err);

#endif
