// SPDX-License-Identifier: MIT
/*
 * api-policies: safety policies at the API edge (api-policies.h has the
 * endpoints and the resolution rules; policy.c the decisions;
 * docs/policies.md the user's view).
 *
 * DESIGN: policies live in the read-only configuration; assignments in
 * PostgreSQL (db-policies.c). The gates run on the handler thread before
 * the engine or the guest is asked anything, and write one audit row per
 * decision. Path checks resolve symlinks through the guest agent one
 * component at a time (stat with follow=false; every reply is treated as
 * hostile input: bounded, validated), so a symlink that leads out of an
 * allowed prefix is denied; the transfer then uses the resolved path.
 * A guest that swaps a path component between the check and the transfer
 * (root inside the VM can) wins that race: the VM is the isolation
 * boundary, path rules catch mistakes and make intent visible. Bind
 * mounts at or below an allowed prefix (which need no symlink) are found
 * in the agent's /proc/self/mountinfo: a path that crosses one is denied.
 *
 * Sandboxes per token: creates of one token are counted as live sandboxes
 * it created (engine list x creator records) plus creates in flight,
 * which are reserved in a small process-wide table under a mutex (the one
 * piece of mutable state here), so concurrent creates cannot overshoot.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api-policies.h"
#include "approvals.h"
#include "auth.h"
#include "cleanup.h"
#include "db-policies.h"
#include "engine-service.h"
#include "fsutil.h"
#include "log.h"

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)

#define MAX_SYMLINKS 40
#define MAX_COMPONENTS 256

/* ---- resolution -------------------------------------------------------------- */

static int lookup_named(FlHttpReq *req, const char *name, const char *whose, const FlPolicy **ret)
{
	const FlPolicy *p = fl_config_policy(req->app->cfg, name);
	if (!p)
		return fl_http_fail(req, -EIO,
				    "policy '%s' assigned to %s is not in the configuration "
				    "(requests are refused rather than run under another policy)",
				    name, whose);
	*ret = p;
	return 0;
}

static int default_policy(FlHttpReq *req, FlPolicyRef *ret)
{
	ret->policy = fl_config_policy(req->app->cfg, NULL);
	snprintf(ret->source, sizeof(ret->source), "default");
	if (!ret->policy)
		return fl_http_fail(req, -EIO, "no default policy");
	return 0;
}

int fl_api_policy_of_token(FlHttpReq *req, const char *token_id, FlPolicyRef *ret)
{
	char name[FL_DB_POLICY_NAME_MAX] = "";
	FlError err = {0};
	memset(ret, 0, sizeof(*ret));
	if (!token_id)
		token_id = req->actor;
	if (!req->app->db || !token_id || !*token_id)
		return default_policy(req, ret);
	int r = fl_db_token_policy_get(req->app->db, token_id, name, &err);
	if (r == -ENOENT)
		return fl_http_fail(req, r, "no token '%s'", token_id);
	if (r < 0)
		return fl_http_fail(req, r, "policy lookup: %s", err.msg);
	if (!name[0])
		return default_policy(req, ret);
	snprintf(ret->source, sizeof(ret->source), "token");
	char whose[96];
	snprintf(whose, sizeof(whose), "token %s", token_id);
	return lookup_named(req, name, whose, &ret->policy);
}

int fl_api_policy_of_sandbox(FlHttpReq *req, const char *sandbox_id, FlPolicyRef *ret)
{
	char name[FL_DB_POLICY_NAME_MAX] = "", creator[FL_DB_ID_MAX] = "";
	FlError err = {0};
	memset(ret, 0, sizeof(*ret));
	if (!req->app->db)
		return default_policy(req, ret);
	int r = fl_db_sandbox_policy_get(req->app->db, sandbox_id, name, creator, &err);
	if (r < 0 && r != -ENOENT)
		return fl_http_fail(req, r, "policy lookup: %s", err.msg);
	if (name[0]) {
		snprintf(ret->source, sizeof(ret->source), "sandbox");
		snprintf(ret->creator, sizeof(ret->creator), "%s", creator);
		char whose[96];
		snprintf(whose, sizeof(whose), "sandbox %s", sandbox_id);
		return lookup_named(req, name, whose, &ret->policy);
	}
	if (creator[0]) {
		r = fl_api_policy_of_token(req, creator, ret);
		if (r == -ENOENT) /* the creator's token is gone: the default applies */
			r = default_policy(req, ret);
		snprintf(ret->creator, sizeof(ret->creator), "%s", creator);
		return r;
	}
	return default_policy(req, ret);
}

struct json_object *fl_api_policy_brief(FlHttpReq *req, const char *sandbox_id)
{
	FlPolicyRef ref;
	FlError saved = req->err;
	if (fl_api_policy_of_sandbox(req, sandbox_id, &ref) < 0) {
		req->err = saved;
		return NULL;
	}
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "name", json_object_new_string(ref.policy->name));
	json_object_object_add(o, "source", json_object_new_string(ref.source));
	return o;
}

/* ---- audit ---------------------------------------------------------------------- */

/* One row per decision. A deny that cannot be audited is still denied; an
 * allow that cannot be audited is refused (503): nothing runs unrecorded. */
static int audit_decision(FlHttpReq *req, const char *action, const char *sandbox_id, int status,
			  struct json_object *details)
{
	FlError err = {0};
	if (!req->app->db)
		return 0;
	FlAuditEvent ev = fl_audit_event(req, action, sandbox_id, details);
	ev.status = status;
	int r = fl_db_audit(req->app->db, &ev, NULL, &err);
	if (r < 0) {
		fl_log_warn("%s: audit: %s", action, err.msg);
		return fl_http_fail(req, -ENOTCONN, "audit log unavailable: %s", err.msg);
	}
	return 0;
}

static int deny(FlHttpReq *req, struct json_object *details, const char *fmt, const char *a,
		const char *b)
{
	json_object_put(req->err_details);
	req->err_details = json_object_get(details);
	return fl_http_fail(req, -EACCES, fmt, a, b);
}

/* ---- commands --------------------------------------------------------------------- */

static int ask_approval(FlHttpReq *req, const char *sandbox_id, const FlPolicy *p,
			const FlPolicyDecision *d, struct json_object *details)
{
	FlError err = {0};
	char summary[700];
	snprintf(summary, sizeof(summary), "Run `%s` in sandbox %s (policy %s, %s)", d->command,
		 sandbox_id, p->name, d->rule);
	FlApprovalAsk ask = {
		.kind = "command",
		.summary = summary,
		.sandbox_id = sandbox_id,
		.details = details,
		.requested_by = req->actor,
		.requested_role = req->role,
	};
	_cleanup_(json_object_putp) struct json_object *apr = NULL, *fin = NULL;
	if (!req->app->db)
		return deny(req, details,
			    "command needs approval (%s: %s), and approvals need the database",
			    d->rule, "none configured");
	int r = fl_approval_create(req->app, &ask, &apr, &err);
	if (r < 0)
		return fl_http_fail(req, r, "asking for approval: %s", err.msg);
	const char *id = json_object_get_string(json_object_object_get(apr, "id"));
	char aid[80];
	snprintf(aid, sizeof(aid), "%s", id ? id : "");
	json_object_object_add(details, "approval_id", json_object_new_string(aid));
	r = fl_approval_wait(req->app, aid, (int64_t)p->commands.approval_timeout_sec * 1000, &fin,
			     &err);
	const char *state =
		r >= 0 ? json_object_get_string(json_object_object_get(fin, "state")) : NULL;
	if (state && !strcmp(state, "pending")) {
		/* nobody decided in time: the command is refused, and its
		 * approval must not be approvable afterwards */
		FlError xe = {0};
		char why[96];
		snprintf(why, sizeof(why), "no decision within %u s: the command was refused",
			 p->commands.approval_timeout_sec);
		r = fl_approval_expire(req->app, aid, why, &xe);
		if (r >= 0) {
			state = "expired";
		} else if (r == -EBUSY) { /* decided at the last moment: that decision counts */
			json_object_put(TAKE_PTR(fin));
			r = fl_approval_wait(req->app, aid, 0, &fin, &err);
			state = r >= 0 ? json_object_get_string(json_object_object_get(fin, "state"))
				       : NULL;
		} else {
			fl_log_warn("policy: approval %s: %s", aid, xe.msg);
		}
	}
	bool ok = state && (!strcmp(state, "approved") || !strcmp(state, "applying") ||
			    !strcmp(state, "applied"));
	json_object_object_add(details, "approval_state",
			       json_object_new_string(state ? state : "unknown"));
	json_object_object_add(details, "decision",
			       json_object_new_string(ok ? "approved" : "denied"));
	int ar = audit_decision(req, "policy.command", sandbox_id, ok ? 0 : 403, details);
	if (!ok)
		return deny(req, details, "command not approved (approval %s: %s)", aid,
			    state && strcmp(state, "expired") ? state : "no decision in time");
	return ar;
}

int fl_api_policy_command(FlHttpReq *req, const char *sandbox_id, const char *shell,
			  const char *const *argv, const FlPolicy **ret_policy)
{
	FlPolicyRef ref;
	FlPolicyDecision d;
	int r = fl_api_policy_of_sandbox(req, sandbox_id, &ref);
	if (r < 0)
		return r;
	if (ret_policy)
		*ret_policy = ref.policy;
	if ((r = fl_policy_check_command(ref.policy, shell, argv, &d)) < 0)
		return fl_http_fail(req, r, "out of memory");
	_cleanup_(json_object_putp) struct json_object *det = json_object_new_object();
	if (!det)
		return fl_http_fail(req, -ENOMEM, "out of memory");
	json_object_object_add(det, "decision",
			       json_object_new_string(fl_policy_action_name(d.action)));
	json_object_object_add(det, "policy", json_object_new_string(ref.policy->name));
	json_object_object_add(det, "policy_source", json_object_new_string(ref.source));
	json_object_object_add(det, "rule", d.rule[0] ? json_object_new_string(d.rule) : NULL);
	json_object_object_add(det, "matched",
			       d.command[0] ? json_object_new_string(d.command) : NULL);
	char line[1024];
	if (shell) {
		snprintf(line, sizeof(line), "%s", shell);
	} else {
		size_t o = 0;
		line[0] = 0;
		for (size_t i = 0; argv[i] && o + 1 < sizeof(line); i++)
			o += (size_t)snprintf(line + o, sizeof(line) - o, "%s%s", i ? " " : "",
					      argv[i]);
	}
	json_object_object_add(det, "command", json_object_new_string(line));
	switch (d.action) {
	case FL_POLICY_ALLOW:
		return audit_decision(req, "policy.command", sandbox_id, 0, det);
	case FL_POLICY_DENY:
		audit_decision(req, "policy.command", sandbox_id, 403, det);
		return deny(req, det, "command denied by policy (%s; %s)", d.rule,
			    ref.policy->name);
	case FL_POLICY_APPROVAL:
		if ((r = audit_decision(req, "policy.command", sandbox_id, 202, det)) < 0)
			return r;
		return ask_approval(req, sandbox_id, ref.policy, &d, det);
	}
	return fl_http_fail(req, -EIO, "bad decision");
}

int fl_api_policy_interactive(FlHttpReq *req, const char *sandbox_id, const char *channel)
{
	FlPolicyRef ref;
	int r = fl_api_policy_of_sandbox(req, sandbox_id, &ref);
	if (r < 0)
		return r;
	if (!fl_policy_has_command_rules(ref.policy) || ref.policy->commands.interactive)
		return 0;
	_cleanup_(json_object_putp) struct json_object *det = json_object_new_object();
	json_object_object_add(det, "decision", json_object_new_string("deny"));
	json_object_object_add(det, "channel", json_object_new_string(channel));
	json_object_object_add(det, "policy", json_object_new_string(ref.policy->name));
	json_object_object_add(det, "rule", json_object_new_string("commands.interactive: false"));
	if ((r = audit_decision(req, "policy.interactive", sandbox_id, 403, det)) < 0)
		return r;
	return deny(req, det,
		    "%s: policy %s has command rules, and an interactive channel would bypass "
		    "them (set commands.interactive to allow it)",
		    channel, ref.policy->name);
}

/* ---- paths -------------------------------------------------------------------------- */

/* stat without following the last component; ENOENT is a result, not an error. */
static int guest_lstat(FlHttpReq *req, const char *sandbox_id, const char *path, bool *exists,
		       bool *is_link, char *target, size_t tlen)
{
	FlError err = {0};
	struct json_object *args = json_object_new_object();
	json_object_object_add(args, "path", json_object_new_string(path));
	json_object_object_add(args, "follow", json_object_new_boolean(0));
	_cleanup_(json_object_putp) struct json_object *st = NULL;
	int r = fl_engine_agent_call(fl_api_engine(req), sandbox_id, "stat", args, 30000, &st,
				     &err);
	*exists = *is_link = false;
	if (r == -ENOENT || r == -ENOTDIR)
		return 0;
	if (r < 0)
		return fl_api_fail(req, r, &err);
	*exists = true;
	const char *kind = json_object_get_string(json_object_object_get(st, "kind"));
	if (kind && !strcmp(kind, "symlink")) {
		struct json_object *t = json_object_object_get(st, "target");
		if (!json_object_is_type(t, json_type_string) ||
		    (size_t)json_object_get_string_len(t) >= tlen ||
		    strlen(json_object_get_string(t)) != (size_t)json_object_get_string_len(t) ||
		    !json_object_get_string_len(t))
			return fl_http_fail(req, -EPROTO,
					    "the guest sent a bad symlink target for %s", path);
		*is_link = true;
		snprintf(target, tlen, "%s", json_object_get_string(t));
	}
	return 0;
}

/*
 * The real path of norm (absolute, normalised) inside the guest: symlinks
 * resolved component by component; the part that does not exist yet is
 * appended lexically.
 */
static int guest_realpath(FlHttpReq *req, const char *sandbox_id, const char *norm, char *out,
			  size_t len)
{
	_cleanup_free_ char *rest = strdup(norm), *cur = calloc(1, PATH_MAX),
			    *cand = malloc(PATH_MAX), *target = malloc(PATH_MAX),
			    *tmp = malloc(2 * PATH_MAX + 2);
	unsigned links = 0, steps = 0;
	if (!rest || !cur || !cand || !target || !tmp)
		return fl_http_fail(req, -ENOMEM, "out of memory");
	const char *p = rest;
	while (*p) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		const char *e = strchr(p, '/');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (++steps > MAX_COMPONENTS * 4)
			return fl_http_fail(req, -ELOOP, "path resolution took too many steps");
		if (l == 1 && p[0] == '.') {
			p += l;
			continue;
		}
		if (l == 2 && p[0] == '.' && p[1] == '.') {
			char *s = strrchr(cur, '/');
			if (s)
				*s = 0;
			p += l;
			continue;
		}
		if (strlen(cur) + 1 + l + 1 > PATH_MAX)
			return fl_http_fail(req, -ENAMETOOLONG, "path too long");
		snprintf(cand, PATH_MAX, "%s/%.*s", cur, (int)l, p);
		bool exists, is_link;
		int r = guest_lstat(req, sandbox_id, cand, &exists, &is_link, target, PATH_MAX);
		if (r < 0)
			return r;
		p += l;
		if (!exists) {
			/* the rest does not exist yet: no symlinks in it */
			snprintf(tmp, 2 * PATH_MAX + 2, "%s%s", cand, p);
			return fl_policy_path_normalize(tmp, out, len) < 0
				       ? fl_http_fail(req, -ENAMETOOLONG, "path too long")
				       : 0;
		}
		if (!is_link) {
			memcpy(cur, cand, strlen(cand) + 1);
			continue;
		}
		if (++links > MAX_SYMLINKS)
			return fl_http_fail(req, -ELOOP, "too many levels of symbolic links");
		/* continue with target + the rest, from / or from cur */
		if (target[0] == '/')
			cur[0] = 0;
		if (strlen(target) + strlen(p) + 2 > 2 * PATH_MAX)
			return fl_http_fail(req, -ENAMETOOLONG, "path too long");
		snprintf(tmp, 2 * PATH_MAX + 2, "%s/%s", target, p);
		char *nrest = strdup(tmp);
		if (!nrest)
			return fl_http_fail(req, -ENOMEM, "out of memory");
		free(rest);
		rest = nrest;
		p = rest;
	}
	if (!cur[0])
		snprintf(cur, PATH_MAX, "/");
	if (strlen(cur) >= len)
		return fl_http_fail(req, -ENAMETOOLONG, "path too long");
	memcpy(out, cur, strlen(cur) + 1);
	return 0;
}

/* ---- mounts ------------------------------------------------------------------------ */

#define MOUNTINFO_MAX (512u * 1024)

/* The agent's /proc/self/mountinfo (at most MOUNTINFO_MAX bytes, NUL-terminated). */
static int guest_mountinfo(FlHttpReq *req, const char *sandbox_id, char **ret)
{
	FlError err = {0};
	FlStream *st = NULL;
	struct json_object *args = json_object_new_object();
	json_object_object_add(args, "path", json_object_new_string("/proc/self/mountinfo"));
	FlStreamSpec ss = {.op = "file_read", .args = args, .timeout_ms = 30000};
	int r = fl_engine_stream_open(fl_api_engine(req), sandbox_id, &ss, &st, &err);
	if (r < 0)
		return fl_api_fail(req, r, &err);
	_cleanup_free_ char *buf = malloc(MOUNTINFO_MAX + 1);
	_cleanup_free_ char *chunk = malloc(1u << 20);
	size_t len = 0;
	bool bad = !buf || !chunk;
	unsigned char hdr[5];
	while (!bad && fl_read_full(fl_stream_out_fd(st), hdr, 5) > 0) {
		uint32_t n = hdr[1] | hdr[2] << 8 | hdr[3] << 16 | (uint32_t)hdr[4] << 24;
		if (n > (1u << 20) || fl_read_full(fl_stream_out_fd(st), chunk, n) <= 0 ||
		    (hdr[0] == 1 && len + n > MOUNTINFO_MAX)) {
			bad = true;
			break;
		}
		if (hdr[0] == 1) {
			memcpy(buf + len, chunk, n);
			len += n;
		}
	}
	if (bad)
		fl_stream_cancel(st);
	r = fl_stream_finish(st, NULL, &err);
	if (bad)
		return fl_http_fail(req, -EPROTO,
				    "the guest's mount table is too large or malformed");
	if (r < 0)
		return fl_api_fail(req, r, &err);
	buf[len] = 0;
	*ret = TAKE_PTR(buf);
	return 0;
}

/* Decodes mountinfo's octal escapes (\040) in place. */
static void unescape_octal(char *s)
{
	char *o = s;
	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = 0;
}

static bool path_under(const char *path, const char *prefix)
{
	size_t l = strlen(prefix);
	if (!strcmp(prefix, "/"))
		return true;
	return !strncmp(path, prefix, l) && (path[l] == 0 || path[l] == '/');
}

typedef struct Mount {
	char *point, *root, *dev;
} Mount;

/*
 * Bind mounts at or below an allowed prefix can put any directory there
 * (mount --bind / /tmp/work/x) without a symlink. A mount is suspect when
 * it mounts a subtree (root field not "/") or its filesystem is mounted
 * elsewhere too (same major:minor). The access is allowed through a
 * prefix only if no suspect mount lies between that prefix and the path.
 * Returns true when allowed; *ret_mount names the mount otherwise.
 */
static bool mounts_ok(char *info, const FlPolicy *p, const char *rp, bool write, char *ret_mount,
		      size_t mlen)
{
	enum { MAX_MOUNTS = 4096 };
	_cleanup_free_ Mount *m = calloc(MAX_MOUNTS, sizeof(*m)); /* worker stacks are small */
	size_t n = 0;
	if (!m) {
		snprintf(ret_mount, mlen, "(out of memory)");
		return false;
	}
	for (char *save = NULL, *line = strtok_r(info, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		if (n == MAX_MOUNTS) { /* fail closed: a hidden mount could be past the cap */
			snprintf(ret_mount, mlen, "(more than %d mounts)", MAX_MOUNTS);
			return false;
		}
		char *f[6] = {0}, *s2 = NULL;
		size_t k = 0;
		for (char *t = strtok_r(line, " ", &s2); t && k < 6; t = strtok_r(NULL, " ", &s2))
			f[k++] = t;
		if (k < 5)
			continue;
		unescape_octal(f[3]);
		unescape_octal(f[4]);
		m[n++] = (Mount){.point = f[4], .root = f[3], .dev = f[2]};
	}
	const FlPolicyRules *lists[2] = {&p->files.write, write ? NULL : &p->files.read};
	bool any_ok = false;
	ret_mount[0] = 0;
	for (int l = 0; l < 2 && !any_ok; l++) {
		for (size_t i = 0; lists[l] && i < lists[l]->n && !any_ok; i++) {
			const char *pre = lists[l]->v[i];
			if (!path_under(rp, pre))
				continue;
			bool suspect = false;
			for (size_t j = 0; j < n && !suspect; j++) {
				if (!path_under(m[j].point, pre) || !path_under(rp, m[j].point) ||
				    !strcmp(m[j].point, "/"))
					continue;
				bool shared = false;
				for (size_t q = 0; q < n; q++)
					if (q != j && !strcmp(m[q].dev, m[j].dev))
						shared = true;
				if (strcmp(m[j].root, "/") || shared) {
					suspect = true;
					snprintf(ret_mount, mlen, "%s", m[j].point);
				}
			}
			any_ok = !suspect;
		}
	}
	return any_ok;
}

int fl_api_policy_path(FlHttpReq *req, const char *sandbox_id, const char *path, bool write,
		       char *real, size_t len, const FlPolicy **ret_policy)
{
	FlPolicyRef ref;
	char norm[PATH_MAX];
	const char *by = NULL;
	int r = fl_api_policy_of_sandbox(req, sandbox_id, &ref);
	if (r < 0)
		return r;
	if (ret_policy)
		*ret_policy = ref.policy;
	if (fl_policy_path_normalize(path, norm, sizeof(norm)) < 0)
		return fl_http_fail(req, -EINVAL, "invalid path");
	if (!ref.policy->files.read.n && !ref.policy->files.write.n) {
		if (strlen(path) >= len)
			return fl_http_fail(req, -ENAMETOOLONG, "path too long");
		snprintf(real, len, "%s", path);
		return 0; /* no file rules: nothing to decide, no row */
	}
	_cleanup_(json_object_putp) struct json_object *det = json_object_new_object();
	json_object_object_add(det, "path", json_object_new_string(path));
	json_object_object_add(det, "access", json_object_new_string(write ? "write" : "read"));
	json_object_object_add(det, "policy", json_object_new_string(ref.policy->name));
	if (!fl_policy_path_allowed(ref.policy, norm, write, &by)) {
		json_object_object_add(det, "decision", json_object_new_string("deny"));
		json_object_object_add(det, "rule", json_object_new_string(by));
		audit_decision(req, "policy.file", sandbox_id, 403, det);
		return deny(req, det, "path %s is outside the policy's %s prefixes", norm, by);
	}
	char rp[PATH_MAX];
	if ((r = guest_realpath(req, sandbox_id, norm, rp, sizeof(rp))) < 0)
		return r;
	json_object_object_add(det, "real_path", json_object_new_string(rp));
	if (!fl_policy_path_allowed(ref.policy, rp, write, &by)) {
		json_object_object_add(det, "decision", json_object_new_string("deny"));
		json_object_object_add(det, "rule", json_object_new_string(by));
		audit_decision(req, "policy.file", sandbox_id, 403, det);
		return deny(req, det, "path resolves to %s, outside the policy's %s prefixes", rp,
			    by);
	}
	_cleanup_free_ char *info = NULL;
	char mnt[PATH_MAX];
	if ((r = guest_mountinfo(req, sandbox_id, &info)) < 0)
		return r;
	if (!mounts_ok(info, ref.policy, rp, write, mnt, sizeof(mnt))) {
		json_object_object_add(det, "decision", json_object_new_string("deny"));
		json_object_object_add(det, "rule", json_object_new_string("bind mount"));
		json_object_object_add(det, "mount", json_object_new_string(mnt));
		audit_decision(req, "policy.file", sandbox_id, 403, det);
		return deny(req, det, "path %s crosses the bind mount %s inside an allowed prefix",
			    rp, mnt);
	}
	json_object_object_add(det, "decision", json_object_new_string("allow"));
	if ((r = audit_decision(req, "policy.file", sandbox_id, 0, det)) < 0)
		return r;
	if (strlen(rp) >= len)
		return fl_http_fail(req, -ENAMETOOLONG, "path too long");
	snprintf(real, len, "%s", rp);
	return 0;
}

/* ---- sandbox creation ----------------------------------------------------------------- */

static pthread_mutex_t inflight_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	char token[64];
	unsigned n;
} inflight[64];

static unsigned inflight_get(const char *token)
{
	for (size_t i = 0; i < FL_ARRAY_SIZE(inflight); i++)
		if (inflight[i].n && !strcmp(inflight[i].token, token))
			return inflight[i].n;
	return 0;
}

static bool inflight_add(const char *token, int delta)
{
	size_t free_slot = FL_ARRAY_SIZE(inflight);
	for (size_t i = 0; i < FL_ARRAY_SIZE(inflight); i++) {
		if (inflight[i].n && !strcmp(inflight[i].token, token)) {
			inflight[i].n = (unsigned)((int)inflight[i].n + delta);
			return true;
		}
		if (!inflight[i].n && free_slot == FL_ARRAY_SIZE(inflight))
			free_slot = i;
	}
	if (delta <= 0 || free_slot == FL_ARRAY_SIZE(inflight))
		return false;
	snprintf(inflight[free_slot].token, sizeof(inflight[free_slot].token), "%s", token);
	inflight[free_slot].n = (unsigned)delta;
	return true;
}

static int live_count(FlHttpReq *req, const char *token, uint64_t *ret)
{
	FlError err = {0};
	_cleanup_(json_object_putp) struct json_object *list = NULL, *ids = json_object_new_array();
	fl_engine_list(fl_api_engine(req), &list);
	for (size_t i = 0; list && i < json_object_array_length(list); i++) {
		struct json_object *rec = json_object_array_get_idx(list, i);
		const char *state = json_object_get_string(json_object_object_get(rec, "state"));
		if (state && (!strcmp(state, "DESTROYED") || !strcmp(state, "ERROR")))
			continue;
		json_object_array_add(ids, json_object_get(json_object_object_get(rec, "id")));
	}
	int r = fl_db_sandboxes_count_by_creator(req->app->db, token, ids, ret, &err);
	return r < 0 ? fl_http_fail(req, r, "counting sandboxes: %s", err.msg) : 0;
}

static int limit_fail(FlHttpReq *req, FlPolicyCreate *pc, int r, const char *what, uint64_t asked,
		      uint64_t max)
{
	_cleanup_(json_object_putp) struct json_object *det = json_object_new_object();
	json_object_object_add(det, "decision", json_object_new_string("deny"));
	json_object_object_add(det, "policy", json_object_new_string(pc->policy->name));
	json_object_object_add(det, "limit", json_object_new_string(what));
	json_object_object_add(det, "requested", json_object_new_int64((int64_t)asked));
	json_object_object_add(det, "max", json_object_new_int64((int64_t)max));
	audit_decision(req, "policy.sandbox", NULL, fl_http_status_from_errno(r), det);
	json_object_put(req->err_details);
	req->err_details = json_object_get(det);
	return fl_http_fail(req, r, "%s %llu is over the policy's limit of %llu (policy %s)", what,
			    (unsigned long long)asked, (unsigned long long)max, pc->policy->name);
}

int fl_api_policy_create(FlHttpReq *req, FlSandboxSpec *spec, bool ttl_given, FlPolicyCreate *pc)
{
	FlPolicyRef ref;
	memset(pc, 0, sizeof(*pc));
	int r = fl_api_policy_of_token(req, NULL, &ref);
	if (r < 0)
		return r;
	const FlPolicy *p = pc->policy = ref.policy;
	if (p->limits.max_vcpus && spec->vcpus > p->limits.max_vcpus)
		return limit_fail(req, pc, -EINVAL, "cpu", spec->vcpus, p->limits.max_vcpus);
	if (p->limits.max_vcpus && !spec->vcpus &&
	    req->app->cfg->limits.vcpus > p->limits.max_vcpus)
		spec->vcpus = p->limits.max_vcpus;
	if (p->limits.max_memory_mb && spec->memory_mb > p->limits.max_memory_mb)
		return limit_fail(req, pc, -EINVAL, "memory_mb", spec->memory_mb,
				  p->limits.max_memory_mb);
	if (p->limits.max_memory_mb && !spec->memory_mb &&
	    req->app->cfg->limits.memory_mb > p->limits.max_memory_mb)
		spec->memory_mb = p->limits.max_memory_mb;
	if (p->limits.max_ttl_seconds) {
		if (ttl_given &&
		    (spec->ttl_seconds == 0 || spec->ttl_seconds > p->limits.max_ttl_seconds))
			return limit_fail(req, pc, -EINVAL, "ttl_seconds", spec->ttl_seconds,
					  p->limits.max_ttl_seconds);
		if (!ttl_given &&
		    (!spec->ttl_seconds || spec->ttl_seconds > p->limits.max_ttl_seconds))
			spec->ttl_seconds = p->limits.max_ttl_seconds;
	}
	/* network: the request may ask for less than the policy allows, never more */
	const char *want = spec->network;
	switch (p->network.egress) {
	case FL_EGRESS_NONE:
		if (want && strcmp(want, "none")) {
			_cleanup_(json_object_putp) struct json_object *det =
				json_object_new_object();
			json_object_object_add(det, "policy", json_object_new_string(p->name));
			json_object_object_add(det, "network", json_object_new_string(want));
			json_object_object_add(det, "decision", json_object_new_string("deny"));
			audit_decision(req, "policy.sandbox", NULL, 403, det);
			return deny(req, det,
				    "network '%s' is not allowed by policy %s (egress: none)", want,
				    p->name);
		}
		spec->network = "none";
		break;
	case FL_EGRESS_ALLOWLIST:
		if (want && strcmp(want, "none") && strcmp(want, "allowlist")) {
			_cleanup_(json_object_putp) struct json_object *det =
				json_object_new_object();
			json_object_object_add(det, "policy", json_object_new_string(p->name));
			json_object_object_add(det, "network", json_object_new_string(want));
			json_object_object_add(det, "decision", json_object_new_string("deny"));
			audit_decision(req, "policy.sandbox", NULL, 403, det);
			return deny(req, det,
				    "network '%s' is not allowed by policy %s (egress: allowlist)",
				    want, p->name);
		}
		if (!want || !strcmp(want, "allowlist")) {
			spec->network = "allowlist";
			for (size_t i = 0; i < p->network.n_allow && i < FL_NET_ALLOW_MAX; i++)
				pc->allow[i] = (FlNetAllow){
					p->network.allow[i].addr, p->network.allow[i].prefix,
					p->network.allow[i].port_lo, p->network.allow[i].port_hi};
			pc->n_allow = p->network.n_allow < FL_NET_ALLOW_MAX ? p->network.n_allow
									    : FL_NET_ALLOW_MAX;
			spec->net_allow = pc->allow;
			spec->n_net_allow = pc->n_allow;
		}
		break;
	case FL_EGRESS_NAT:
		if (want && !strcmp(want, "allowlist"))
			return fl_http_fail(
				req, -EINVAL,
				"network \"allowlist\" takes its destinations from a policy; "
				"policy %s has egress: nat",
				p->name);
		break;
	}
	/* sandboxes per token: live ones it created plus creates in flight */
	if (p->limits.max_sandboxes && req->app->db && req->actor[0]) {
		uint64_t live = 0;
		if ((r = live_count(req, req->actor, &live)) < 0)
			return r;
		pthread_mutex_lock(&inflight_lock);
		uint64_t total = live + inflight_get(req->actor);
		bool ok = total < p->limits.max_sandboxes && inflight_add(req->actor, 1);
		pthread_mutex_unlock(&inflight_lock);
		if (!ok)
			return limit_fail(req, pc, -EUSERS, "sandboxes of this token", total + 1,
					  p->limits.max_sandboxes);
		pc->reserved = true;
		snprintf(pc->token, sizeof(pc->token), "%s", req->actor);
	}
	_cleanup_(json_object_putp) struct json_object *det = json_object_new_object();
	json_object_object_add(det, "decision", json_object_new_string("allow"));
	json_object_object_add(det, "policy", json_object_new_string(p->name));
	json_object_object_add(det, "policy_source", json_object_new_string(ref.source));
	json_object_object_add(det, "network",
			       json_object_new_string(spec->network ? spec->network : "nat"));
	if ((r = audit_decision(req, "policy.sandbox", NULL, 0, det)) < 0) {
		fl_api_policy_create_done(req, pc, NULL);
		return r;
	}
	return 0;
}

void fl_api_policy_create_done(FlHttpReq *req, FlPolicyCreate *pc, const char *sandbox_id)
{
	FlError err = {0};
	/* record the creator before releasing the reservation, so the count
	 * never misses the new sandbox */
	if (sandbox_id && req->app->db &&
	    fl_db_sandbox_policy_init(req->app->db, sandbox_id, req->actor, &err) < 0)
		fl_log_warn("sandbox %s: cannot record its creator: %s", sandbox_id, err.msg);
	if (pc->reserved) {
		pthread_mutex_lock(&inflight_lock);
		inflight_add(pc->token, -1);
		pthread_mutex_unlock(&inflight_lock);
		pc->reserved = false;
	}
}

/* ---- endpoints ------------------------------------------------------------------------- */

static int get_policies(FlHttpReq *req)
{
	const FlConfig *cfg = req->app->cfg;
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	struct json_object *a = json_object_new_array();
	for (size_t i = 0; i < cfg->n_policies; i++)
		json_object_array_add(a, fl_policy_to_json(cfg->policies[i]));
	json_object_object_add(o, "policies", a);
	json_object_object_add(o, "default", json_object_new_string(cfg->default_policy));
	return fl_http_send_json(req, 200, o);
}
FL_ROUTE(get_policies, "GET", "/v1/policies", FL_ROLE_AGENT);

static int get_policy(FlHttpReq *req)
{
	const char *name = fl_http_param(req, "name");
	const FlPolicy *p = fl_config_policy(req->app->cfg, name);
	if (!p)
		return fl_http_fail(req, -ENOENT, "no policy '%s'", name);
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	json_object_object_add(o, "policy", fl_policy_to_json(p));
	json_object_object_add(
		o, "default",
		json_object_new_boolean(!strcmp(p->name, req->app->cfg->default_policy)));
	return fl_http_send_json(req, 200, o);
}
FL_ROUTE(get_policy, "GET", "/v1/policies/{name}", FL_ROLE_AGENT);

/* A token may read its own policy; other tokens' only as admin. */
static int get_token_policy(FlHttpReq *req)
{
	const char *id = fl_http_param(req, "id");
	FlPolicyRef ref;
	if (req->role < FL_ROLE_ADMIN && strcmp(id, req->actor))
		return fl_http_fail(req, -EACCES, "only admins can see other tokens' policies");
	int r = fl_api_policy_of_token(req, id, &ref);
	if (r < 0)
		return r;
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	json_object_object_add(o, "token_id", json_object_new_string(id));
	json_object_object_add(o, "policy", json_object_new_string(ref.policy->name));
	json_object_object_add(o, "source", json_object_new_string(ref.source));
	json_object_object_add(o, "effective", fl_policy_to_json(ref.policy));
	return fl_http_send_json(req, 200, o);
}
FL_ROUTE(get_token_policy, "GET", "/v1/tokens/{id}/policy", FL_ROLE_AGENT);

/* {policy: name | null} -> the name (NULL = clear). */
static int read_policy_body(FlHttpReq *req, const char **ret)
{
	static const char *const allowed[] = {"policy", NULL};
	struct json_object *body = NULL, *v = NULL;
	int r = fl_http_read_json(req, &body);
	if (r < 0)
		return r;
	*ret = NULL;
	if ((r = fl_json_reject_unknown(body, allowed, &req->err)) < 0)
		goto out;
	if (!json_object_object_get_ex(body, "policy", &v)) {
		r = fl_http_fail(req, -EINVAL, "missing field 'policy' (a name, or null to clear)");
		goto out;
	}
	if (v && !json_object_is_type(v, json_type_string)) {
		r = fl_http_fail(req, -EINVAL, "field 'policy' must be a string or null");
		goto out;
	}
	if (v) {
		const char *name = json_object_get_string(v);
		if (!fl_config_policy(req->app->cfg, name)) {
			r = fl_http_fail(req, -EINVAL, "no policy '%.64s' in the configuration",
					 name);
			goto out;
		}
		*ret = fl_config_policy(req->app->cfg, name)->name; /* config-owned */
	}
out:
	json_object_put(body);
	return r;
}

static int put_token_policy(FlHttpReq *req)
{
	const char *id = fl_http_param(req, "id"), *name;
	FlError err = {0};
	if (!req->app->db)
		return fl_http_fail(req, -ENOTCONN,
				    "policy assignments need the database (none is configured)");
	int r = read_policy_body(req, &name);
	if (r < 0)
		return r;
	_cleanup_(json_object_putp) struct json_object *d = json_object_new_object();
	json_object_object_add(d, "token_id", json_object_new_string(id));
	json_object_object_add(d, "policy", name ? json_object_new_string(name) : NULL);
	FlAuditEvent ev = fl_audit_event(req, "policy.assign", NULL, d);
	if ((r = fl_db_token_policy_set(req->app->db, id, name, &ev, &err)) < 0)
		return fl_http_fail(req, r, "%s", err.msg);
	return get_token_policy(req);
}
FL_ROUTE(put_token_policy, "PUT", "/v1/tokens/{id}/policy", FL_ROLE_ADMIN);

static int get_sandbox_policy(FlHttpReq *req)
{
	char id[64];
	FlPolicyRef ref;
	int r = fl_api_sandbox_lookup(req, id, NULL);
	if (r < 0 || (r = fl_api_policy_of_sandbox(req, id, &ref)) < 0)
		return r;
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	json_object_object_add(o, "sandbox_id", json_object_new_string(id));
	json_object_object_add(o, "policy", json_object_new_string(ref.policy->name));
	json_object_object_add(o, "source", json_object_new_string(ref.source));
	json_object_object_add(o, "creator",
			       ref.creator[0] ? json_object_new_string(ref.creator) : NULL);
	json_object_object_add(o, "effective", fl_policy_to_json(ref.policy));
	return fl_http_send_json(req, 200, o);
}
FL_ROUTE(get_sandbox_policy, "GET", "/v1/sandboxes/{id}/policy", FL_ROLE_AGENT);

static int put_sandbox_policy(FlHttpReq *req)
{
	char id[64];
	const char *name;
	FlError err = {0};
	int r = fl_api_sandbox_lookup(req, id, NULL);
	if (r < 0)
		return r;
	if (!req->app->db)
		return fl_http_fail(req, -ENOTCONN,
				    "policy assignments need the database (none is configured)");
	if ((r = read_policy_body(req, &name)) < 0)
		return r;
	_cleanup_(json_object_putp) struct json_object *d = json_object_new_object();
	json_object_object_add(d, "policy", name ? json_object_new_string(name) : NULL);
	FlAuditEvent ev = fl_audit_event(req, "policy.assign", id, d);
	if ((r = fl_db_sandbox_policy_set(req->app->db, id, name, &ev, &err)) < 0)
		return fl_http_fail(req, r, "%s", err.msg);
	return get_sandbox_policy(req);
}
FL_ROUTE(put_sandbox_policy, "PUT", "/v1/sandboxes/{id}/policy", FL_ROLE_ADMIN);
