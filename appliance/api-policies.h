/* SPDX-License-Identifier: MIT */
/*
 * api-policies: safety policies at the API edge (docs/policies.md).
 *
 *   GET /v1/policies                 {"policies": [Policy], "default": name}
 *   GET /v1/policies/{name}          {"policy": Policy}
 *   GET /v1/tokens/{id}/policy       {"token_id", "policy", "source", "effective": Policy}
 *   PUT /v1/tokens/{id}/policy       {policy: name|null}  (admin)
 *   GET /v1/sandboxes/{id}/policy    {"sandbox_id", "policy", "source", "creator", "effective"}
 *   PUT /v1/sandboxes/{id}/policy    {policy: name|null}  (admin)
 *
 * Resolution: a sandbox's own policy (set by an admin), else the policy of
 * the token that created it, else the default policy; a token's policy,
 * else the default. A name that is assigned but no longer in the
 * configuration fails the request (500): a policy is never loosened by
 * dropping it from the file. Without a database every caller and sandbox
 * has the default policy.
 *
 * The gates below are what api-commands.c, api-files.c and
 * api-sandboxes.c call before anything reaches the engine or the guest.
 * Each returns 0 (go ahead) or a negative errno with the request's error
 * (and details) set; each decision is an audit row ("policy.command",
 * "policy.file", "policy.sandbox"). Called on civetweb worker threads.
 */
#ifndef FL_API_POLICIES_H
#define FL_API_POLICIES_H

#include <stdbool.h>
#include <stdint.h>

#include "engine.h"
#include "http.h"
#include "policy.h"

typedef struct FlPolicyRef {
	const FlPolicy *policy; /* owned by the configuration */
	char source[16];	/* "sandbox", "token" or "default" */
	char creator[64];	/* sandboxes: the creating token id, "" if unknown */
} FlPolicyRef;

/* The effective policy of a sandbox / of a token (NULL = the caller's). */
int fl_api_policy_of_sandbox(FlHttpReq *req, const char *sandbox_id, FlPolicyRef *ret);
int fl_api_policy_of_token(FlHttpReq *req, const char *token_id, FlPolicyRef *ret);

/*
 * A command (shell line or argv) about to run in a sandbox: deny -> 403
 * with {"rule", "command", "policy"} in details; approval -> asks a
 * reviewer and waits up to the policy's approval timeout (approved: 0;
 * rejected or no decision: 403 with the approval id). *ret_policy (may be
 * NULL) gets the policy for the limits.
 */
int fl_api_policy_command(FlHttpReq *req, const char *sandbox_id, const char *shell,
			  const char *const *argv, const FlPolicy **ret_policy);

/*
 * An interactive channel into a sandbox (channel: "terminal", "tmux",
 * "ssh"): a way to type commands the command rules never see. Refused
 * (403, audited as "policy.interactive") when the sandbox's policy has
 * command rules and does not set commands.interactive; else 0.
 */
int fl_api_policy_interactive(FlHttpReq *req, const char *sandbox_id, const char *channel);

/*
 * A file path about to be read (write = false) or written/removed: checked
 * lexically, then resolved inside the guest (symlinks followed component by
 * component with the agent's stat) and checked again on the real path.
 * real (len bytes) gets the path to use: the resolved one when the policy
 * has file rules, the given one otherwise. 403 when denied.
 */
int fl_api_policy_path(FlHttpReq *req, const char *sandbox_id, const char *path, bool write,
		       char *real, size_t len, const FlPolicy **ret_policy);

/*
 * Sandbox creation: applies the caller's policy to the spec (vcpus,
 * memory, ttl, network egress and its allowlist, sandboxes per token).
 * spec->vcpus, memory_mb and ttl_seconds are the requested values (0 = default; ttl_given says
 * whether ttl came from the request). The network strings and allowlist
 * in spec point into storage of the returned reservation; call
 * fl_api_policy_create_done() after the create (ok or not).
 */
typedef struct FlPolicyCreate {
	FlNetAllow allow[FL_NET_ALLOW_MAX];
	size_t n_allow;
	char token[64];
	bool reserved;
	const FlPolicy *policy;
} FlPolicyCreate;

int fl_api_policy_create(FlHttpReq *req, FlSandboxSpec *spec, bool ttl_given, FlPolicyCreate *pc);
/* Releases the reservation; with sandbox_id (created) records its creator. */
void fl_api_policy_create_done(FlHttpReq *req, FlPolicyCreate *pc, const char *sandbox_id);

/* {"name", "source"} of a sandbox's effective policy, for the Sandbox
 * object; NULL when it cannot be resolved. New reference. */
struct json_object *fl_api_policy_brief(FlHttpReq *req, const char *sandbox_id);

#endif
