/* SPDX-License-Identifier: MIT */
/*
 * policy: safety policies (docs/policies.md), pure logic with no I/O.
 *
 * A policy has command rules, file path rules, limits and a network egress
 * mode. This module parses a policy from JSON (the config's YAML is turned
 * into JSON by config.c), prints it back, splits shell command strings the
 * way a POSIX shell would into the simple commands it would run, and
 * decides:
 *
 *   commands: for every simple command of a command line, in this order,
 *     1. a "deny" pattern matches          -> DENY
 *     2. an "approval" pattern matches     -> APPROVAL
 *     3. an "allow" pattern matches        -> ALLOW
 *     4. nothing matched: DENY when the allow list is non-empty (allowlist
 *        mode), else ALLOW.
 *   A command the parser cannot resolve statically ("opaque": its name is
 *   an expansion such as $X or $(...), eval, source/., trap, alias, a shell
 *   reading its commands from stdin, a file or a here-doc, case/esac) gets
 *   the policy's "opaque" action (deny by default, or approval) whenever the
 *   policy has any command rule; with no command rules every command is
 *   allowed. The line's decision is the strictest of its commands
 *   (DENY > APPROVAL > ALLOW); the command and rule that caused it are
 *   reported. A line that cannot be parsed at all (unbalanced quotes, too
 *   long, too deep, too many words) is treated like an opaque command.
 *
 *   patterns: fnmatch(3) globs without FNM_PATHNAME ('*' also matches '/'
 *     and spaces). A pattern without a space is matched against the
 *     program name only; one with a space against "prog arg1 arg2 ..."
 *     (arguments joined by single spaces). The program is tried both as
 *     written and by its basename, so "rm" also matches "/bin/rm".
 *     Wrappers are looked through: env, sudo, doas, nice, ionice, nohup,
 *     timeout, stdbuf, setsid, taskset, chrt, chroot, exec, command,
 *     builtin, time, xargs, busybox, flock, strace/ltrace, unshare,
 *     nsenter, find -exec; the wrapped program is the command (the wrapper
 *     is checked too). `sh -c STRING` (and bash, dash, zsh, ksh, ash, su -c)
 *     is parsed recursively, at most FL_SHELL_MAX_DEPTH deep. A command
 *     whose arguments are not all known before it runs (xargs, find -exec
 *     {}, an argument that is an expansion or a glob) also matches a deny
 *     or approval pattern with arguments by the pattern's program alone.
 *
 *   paths: fl_policy_path_normalize() removes ".", ".." and "//" lexically;
 *     the caller resolves symlinks inside the guest (api-policies.c) and
 *     checks the real path with fl_policy_path_allowed(): the path must be
 *     equal to or below one of the read (or write) prefixes. An empty
 *     prefix list allows every path. Write implies read.
 *
 * Ownership: FlPolicy is immutable after fl_policy_from_json() and owned
 * by whoever holds it (the configuration); decisions point into it.
 */
#ifndef FL_POLICY_H
#define FL_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

#include "error.h"

#define FL_SHELL_MAX_LEN (64u * 1024) /* bytes in one command line */
#define FL_SHELL_MAX_DEPTH 8	      /* nesting of $(), ``, (), sh -c */
#define FL_SHELL_MAX_WORDS 4096	      /* words in one command line, all levels */
#define FL_SHELL_MAX_CMDS 1024	      /* simple commands in one line */

#define FL_POLICY_MAX_RULES 256
#define FL_POLICY_MAX_NET 64

typedef enum FlPolicyAction {
	FL_POLICY_ALLOW = 0,
	FL_POLICY_APPROVAL = 1,
	FL_POLICY_DENY = 2,
} FlPolicyAction;

const char *fl_policy_action_name(FlPolicyAction a);

typedef enum FlPolicyEgress {
	FL_EGRESS_NAT = 0, /* the default: full outbound through user networking */
	FL_EGRESS_NONE,
	FL_EGRESS_ALLOWLIST,
} FlPolicyEgress;

/* One egress destination: IPv4 network (host byte order) and port range. */
typedef struct FlPolicyNet {
	uint32_t addr;
	unsigned prefix;
	unsigned port_lo, port_hi;
} FlPolicyNet;

typedef struct FlPolicyRules {
	char **v;
	size_t n;
} FlPolicyRules;

typedef struct FlPolicy {
	char *name;
	char *description;
	struct {
		FlPolicyRules deny, approval, allow;
		FlPolicyAction opaque;	       /* DENY (default) or APPROVAL */
		unsigned approval_timeout_sec; /* how long a command waits for a reviewer */
		/* Terminal take-over, tmux send-keys and SSH access reach a shell
		 * the command rules never see: with any command rule they are
		 * refused unless this is set (docs/policies.md). */
		bool interactive;
	} commands;
	struct {
		FlPolicyRules read, write; /* normalised absolute prefixes */
	} files;
	struct {
		unsigned timeout_sec;	  /* default per-operation timeout */
		unsigned max_timeout_sec; /* larger requested timeouts are rejected (400) */
		uint64_t output_bytes;	  /* stdout/stderr bytes kept per command, 0 = all */
		uint64_t max_file_bytes;  /* largest file upload/download, 0 = no limit */
		unsigned max_sandboxes;	  /* live sandboxes created by one token, 0 = no limit */
		unsigned max_vcpus;	  /* 0 = the server's limit */
		unsigned max_memory_mb;	  /* 0 = the server's limit */
		uint64_t max_ttl_seconds; /* 0 = the server's limit */
	} limits;
	struct {
		FlPolicyEgress egress;
		FlPolicyNet *allow;
		size_t n_allow;
	} network;
} FlPolicy;

/*
 * Parses a policy object (docs/policies.md). Unknown keys, wrong types and
 * bad values are -EINVAL with err naming the key. *ret is new.
 */
int fl_policy_from_json(const char *name, struct json_object *obj, FlPolicy **ret, FlError *err);
/* The built-in permissive policy ("default" when the config names none). */
int fl_policy_new_default(const char *name, FlPolicy **ret);
/* The policy as JSON (new reference), in the shape fl_policy_from_json reads
 * plus "name". */
struct json_object *fl_policy_to_json(const FlPolicy *p);
void fl_policy_free(FlPolicy *p);
bool fl_policy_has_command_rules(const FlPolicy *p);

/* ---- shell parsing ---------------------------------------------------- */

typedef struct FlShellCmd {
	char **argv; /* words after assignments, quotes removed; NULL-terminated */
	size_t argc;
	bool opaque;	   /* not resolvable statically; reason says why */
	bool dynamic_args; /* arguments not known before it runs (xargs, $X, globs) */
	char reason[96];
	unsigned depth; /* nesting level it was found at */
} FlShellCmd;

typedef struct FlShellCmds {
	FlShellCmd *v;
	size_t n;
	bool truncated;	 /* the line hit a cap: treat as opaque */
	char error[128]; /* parse problem ("" if none) */
} FlShellCmds;

/*
 * Splits a shell command line into the simple commands it would run
 * (including those inside $(...), backticks, subshells, groups, process
 * substitutions and sh -c strings), with wrappers resolved. A syntax error
 * or a cap gives 0 with cmds->error set (callers treat the line as
 * opaque); only -ENOMEM is an error.
 */
int fl_shell_parse(const char *line, FlShellCmds *ret);
/* Same for an argv given directly (no shell involved). */
int fl_shell_parse_argv(const char *const *argv, FlShellCmds *ret);
void fl_shell_cmds_clear(FlShellCmds *c);

/* ---- decisions --------------------------------------------------------- */

typedef struct FlPolicyDecision {
	FlPolicyAction action;
	char rule[256];	   /* "deny: rm *", "allowlist: no rule matched", "opaque: ...", "" */
	char command[512]; /* the simple command it is about ("prog arg ..."), may be cut */
} FlPolicyDecision;

/*
 * Decides a command line (shell != NULL) or an argv. Returns 0 with *ret
 * filled, -ENOMEM.
 */
int fl_policy_check_command(const FlPolicy *p, const char *shell, const char *const *argv,
			    FlPolicyDecision *ret);

/*
 * Lexical normalisation of an absolute path: "//" -> "/", "." dropped,
 * ".." removes the previous component (never above "/"), no trailing "/".
 * -EINVAL for a relative path or one with control characters,
 * -ENAMETOOLONG when it does not fit.
 */
int fl_policy_path_normalize(const char *in, char *out, size_t len);
/* Is the normalised path inside the read (write = false) or write prefixes? */
bool fl_policy_path_allowed(const FlPolicy *p, const char *norm_path, bool write,
			    const char **ret_denied_by);

/* Parses "CIDR[:PORT[-PORT]]" (no port = any). 0 or -EINVAL. */
int fl_policy_parse_net(const char *s, FlPolicyNet *ret);
void fl_policy_format_net(const FlPolicyNet *n, char *buf, size_t len);

static inline void fl_policy_freep(FlPolicy **p)
{
	if (*p)
		fl_policy_free(*p);
}

#endif
