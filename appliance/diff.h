/* SPDX-License-Identifier: MIT */
/*
 * diff: the trusted diff's host half (docs/diff.md). Opens an inspector
 * (a pristine template clone with the two snapshot layers attached
 * read-only), pushes the static fluid-inspect into it, runs it on the two
 * read-only mounts, validates its JSON strictly, and stores Diff records.
 *
 * The sandbox itself is never asked anything: its agent, tools and kernel
 * may lie. Only the engine's own records (snapshot names and times) and
 * the inspector's output are used, and the latter is checked against the
 * schema in docs/diff.md (it came out of a VM).
 *
 * Calls block (an inspector boots and walks two filesystems: seconds to
 * minutes under TCG) and are thread-safe; fl_diff_compute runs the engine
 * calls on its own thread with a big stack (libqmp needs one). Returned
 * json objects are new references the caller puts.
 */
#ifndef FL_DIFF_H
#define FL_DIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

#include "engine.h"
#include "error.h"

#define FL_DIFF_MAX_OUTPUT (64u << 20)  /* inspector stdout accepted */
#define FL_DIFF_MAX_IGNORE 256          /* extra ignore patterns per request */
#define FL_DIFF_ID_LEN 36               /* "dif_" + 32 hex */

typedef struct FlDiffSpec {
	const char *sandbox_id;  /* canonical id */
	const char *from;        /* snapshot names */
	const char *to;
	const char *const *ignore; /* extra patterns (may be NULL) */
	size_t n_ignore;
	const char *inspect_bin; /* NULL: $FLUID_INSPECT, then fluid-inspect next to the executable */
	unsigned timeout_ms;     /* 0 = 15 minutes */
} FlDiffSpec;

/* What fl_diff_compute learned besides diff_json. */
typedef struct FlDiffInfo {
	int64_t from_created_at, to_created_at; /* unix seconds, from the engine record */
	uint64_t inspector_ms, total_ms;
} FlDiffInfo;

/*
 * Computes diff_json (without commands_run). Errors: -ENOENT unknown
 * sandbox or snapshot, -EINVAL bad names / same snapshot twice, -ENOEXEC no
 * fluid-inspect binary, -EPROTO the inspector's output was not a valid
 * diff (err says what), -ETIMEDOUT, others from the engine.
 */
int fl_diff_compute(FlEngine *e, const FlDiffSpec *spec, struct json_object **ret_diff_json,
		    FlDiffInfo *ret_info, FlError *err);

/* Parses and validates the inspector's output. -EPROTO with err on any deviation. */
int fl_diff_parse(const char *buf, size_t len, struct json_object **ret, FlError *err);
/* Validates a parsed diff_json (schema of docs/diff.md). */
int fl_diff_validate(struct json_object *diff_json, FlError *err);

/*
 * commands_run from command records (API Command objects, any order):
 * those whose started_at (RFC 3339) lies in [from, to + 1 s), oldest
 * first, as [{cmd, exit_code, at}]. New reference (never NULL on memory).
 */
struct json_object *fl_diff_commands_between(struct json_object *commands, int64_t from,
					     int64_t to);

/* A new Diff record {id, sandbox_id, from_snapshot, to_snapshot, created_at, diff_json};
 * diff_json is taken over. */
struct json_object *fl_diff_record(const char *sandbox_id, const char *from, const char *to,
				   struct json_object *diff_json);

/* STATE/sandboxes/<id>/diffs/<diff-id>.json (atomic). */
int fl_diff_store(const char *state_dir, struct json_object *record, FlError *err);
int fl_diff_load(const char *state_dir, const char *sandbox_id, const char *diff_id,
		 struct json_object **ret, FlError *err);
/* Records of a sandbox, newest first, without diff_json (summary counts instead). */
int fl_diff_list(const char *state_dir, const char *sandbox_id, struct json_object **ret,
		 FlError *err);
/* The newest record of a sandbox (with diff_json) or -ENOENT. */
int fl_diff_latest(const char *state_dir, const char *sandbox_id, struct json_object **ret,
		   FlError *err);

/* Human summary of a Diff record (or a bare diff_json) for the CLI; caller frees. */
char *fl_diff_summary(struct json_object *diff);

#endif
