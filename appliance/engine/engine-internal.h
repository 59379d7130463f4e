/* SPDX-License-Identifier: MIT */
/*
 * Internal structures of the sandbox engine, shared by engine.c (sandbox
 * lifecycle), engine-agent.c (the agent bridge on the loop thread),
 * engine-template.c (templates) and engine-store.c (records on disk).
 *
 * Locking: e->lock protects the sandbox table and every record field; it is
 * held only briefly (never across QEMU or agent waits). sb->op_lock
 * serialises long operations on one sandbox and is always taken before
 * e->lock. The registry has its own e->reg_lock. Agent connections belong
 * to the loop thread.
 */
#ifndef FL_ENGINE_INTERNAL_H
#define FL_ENGINE_INTERNAL_H

#include <dirent.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <json-c/json.h>

#include "agent-client.h"
#include "engine.h"
#include "fsutil.h"
#include "imgstore.h"
#include "loop.h"
#include "qmp.h"
#include "vm.h"

FL_DEFINE_CLEANUP(DIR *, closedir)
FL_DEFINE_CLEANUP(struct json_object *, json_object_put)
FL_DEFINE_CLEANUP(QmpClient *, qmp_client_free)
FL_DEFINE_CLEANUP(AgentClient *, agent_client_free)

#define FL_ID_LEN 16
#define FL_NAME_MAX 64

typedef enum SbState {
	SB_CREATED,
	SB_STARTING,
	SB_RUNNING,
	SB_STOPPED,
	SB_DESTROYED,
	SB_ERROR,
} SbState;

typedef struct Snapshot {
	char name[FL_NAME_MAX + 1];
	char parent[FL_NAME_MAX + 1]; /* snapshot the sandbox was on, "" = root */
	char layer[IMG_ID_SIZE];      /* frozen disk layer */
	bool memory;                  /* has a RAM state file (checkpoint) */
	int64_t created_at;
} Snapshot;

typedef struct AgentConn AgentConn;

typedef struct Sandbox {
	char id[FL_ID_LEN + 1];
	char name[FL_NAME_MAX + 1];
	char agent_id[129], job_id[129];
	char base_image[FL_NAME_MAX + 1];
	char network[16];               /* "nat", "none", "allowlist" */
	FlNetAllow net_allow[FL_NET_ALLOW_MAX]; /* "allowlist" */
	size_t n_net_allow;
	char ip[16];                   /* "tap": the guest's address from the bridge's DHCP */
	char boot[8];                  /* "clone" or "cold" */
	char template_dir[512];        /* template used by a clone, "" if cold */
	SbState state;
	unsigned vcpus, memory_mb;
	uint64_t ttl_seconds;
	int64_t created_at, updated_at; /* unix seconds */
	char active[IMG_ID_SIZE];      /* writable layer */
	char head[FL_NAME_MAX + 1];    /* snapshot the active layer sits on */
	Snapshot *snaps;
	size_t n_snaps;
	int pid;                       /* QEMU pid while running, 0 otherwise */
	int ssh_port;                  /* host 127.0.0.1 port forwarded to guest :22 */
	/* Journal of an interrupted operation (see docs/engine.md). */
	char pending[16];              /* "", "create", "snapshot", "restore", "destroy" */
	char pending_arg[FL_NAME_MAX + 1];
	char pending_layer[IMG_ID_SIZE];

	/* Runtime only. */
	char dir[512];
	FlVm vm;
	pthread_mutex_t op_lock;
	AgentConn *conn;               /* loop thread only */
	unsigned refs;                 /* guarded by e->lock */
	char pool_key[160];            /* warm-pool entry: its key; claimed: "" */
} Sandbox;

/* A kind of sandbox the warm pool keeps ready: image and shape. */
typedef struct PoolKey {
	char key[160];
	char image[FL_NAME_MAX + 1];
	char network[16];
	unsigned memory_mb, vcpus;
	bool standby;                  /* keeps standbys (engine.c) */
	unsigned building;
	int64_t retry_at;              /* after a failed build: back off */
} PoolKey;

#define FL_POOL_KEYS 8

struct FlEngine {
	FlEngineConfig cfg;
	char state_dir[512], image_dir[512];
	char sandboxes_dir[600], templates_dir[600], states_dir[600];
	FlLoop *loop;
	pthread_t loop_thread, janitor_thread;
	bool stopping;
	pthread_mutex_t lock;
	pthread_cond_t janitor_cond;
	Sandbox **sbs;
	size_t n_sbs;
	pthread_mutex_t reg_lock;
	ImgRegistry *reg;
	pthread_mutex_t tmpl_lock;     /* serialises template builds */
	pthread_t pool_thread;
	pthread_cond_t pool_cond;      /* with e->lock: pool demand changed */
	PoolKey pool[FL_POOL_KEYS];
	size_t n_pool;
};

/* FLUID_TRACE=1 prints the duration of each step of an operation. */
void fl_trace(const char *what, uint64_t *t);

/* engine-store.c */
const char *sb_state_name(SbState s);
int sb_state_parse(const char *s, SbState *ret);
struct json_object *sb_to_json(const Sandbox *sb, bool internal);
int sb_from_json(struct json_object *o, Sandbox *sb, FlError *err);
int sb_save(FlEngine *e, Sandbox *sb, FlError *err); /* caller holds e->lock */
/* fl_write_file_atomic (common/fsutil.h) with the error in err. */
int fl_save_file(const char *path, const void *data, size_t len, FlError *err);
int64_t fl_unix_now(void);
int fl_random_hex(char *buf, size_t nhex);
bool fl_name_valid(const char *s, size_t max, bool allow_dot);

/* engine-agent.c: every function here is called from a handler thread and
 * waits for the loop thread. */
int ea_connect(FlEngine *e, Sandbox *sb, unsigned timeout_ms, FlError *err);
void ea_disconnect(FlEngine *e, Sandbox *sb);
int ea_call(FlEngine *e, Sandbox *sb, const char *op, struct json_object *args,
	    unsigned timeout_ms, struct json_object **ret, FlError *err);
int ea_exec(FlEngine *e, Sandbox *sb, const FlExecSpec *spec, fl_output_fn out, void *ud,
	    FlExecResult *ret, FlError *err);

int ea_stream_open(FlEngine *e, Sandbox *sb, const FlStreamSpec *spec, FlStream **ret, FlError *err);
/* Ends the stream; *ret_e and *ret_sb say whose it was. */
int ea_stream_finish(FlStream *st, FlEngine **ret_e, Sandbox **ret_sb, struct json_object **ret,
		     FlError *err);

/* engine-template.c */
/* A template's files in dir: ram and state (pre-root for late-root
 * images), plus ram-rooted and state-rooted when rooted. */
typedef struct Template {
	char dir[600];
	char layer[IMG_ID_SIZE];
	bool rooted;
	unsigned memory_mb, vcpus;
} Template;

typedef struct Image {
	char name[FL_NAME_MAX + 1];
	char dir[600];
	char kernel[700], initrd[700], disk[700];
	char cmdline[1024];
	char inputs_hash[80];
	unsigned memory_mb;
	/* Late-root images: the agent starts before the root filesystem is
	 * mounted and mounts it on request ("root" op), so the template's RAM
	 * holds no state of any disk and combines with every layer. */
	bool late_root;
	char root_device[64], root_fstype[16];
} Image;

int image_load(FlEngine *e, const char *name, Image *ret, FlError *err);
/* The agent's "root" op arguments for img (new reference). */
struct json_object *image_root_args(const Image *img);
/* Imports (once) the image's disk as a base layer; ret_id gets its id. */
int image_base_layer(FlEngine *e, const Image *img, char ret_id[IMG_ID_SIZE], FlError *err);
/* Finds or builds the template for (image, memory, vcpus). */
int template_get(FlEngine *e, const Image *img, unsigned memory_mb, unsigned vcpus,
		 Template *ret, FlError *err);
/* QMP helper: saves device state (and RAM unless shared) of the VM behind
 * qmp_path into path; the VM is left paused. */
/* Removes templates of images that changed (unless a sandbox still uses
 * them) and interrupted template builds, releasing their layers. */
void template_gc(FlEngine *e, bool (*in_use)(FlEngine *e, const char *dir));
int vm_save_state(const char *qmp_path, const char *path, FlError *err);
int qmp_simple(const char *qmp_path, const char *cmd, struct json_object *args,
	       struct json_object **ret, FlError *err);

#endif
