/* SPDX-License-Identifier: MIT */
/*
 * tmux: running tmux in a sandbox's guest through the agent, for the tmux
 * REST endpoints (api-tmux.c) and terminals (api-terminal.c). See
 * docs/terminal.md.
 *
 * Every call is one agent exec of argv ["tmux", args...]: no shell, and
 * every argument the caller gives reaches tmux as exactly that string
 * (tmux's own treatment of a trailing ';' as a command separator is
 * escaped here, so user text can never start another tmux command). Output
 * is capped; everything the guest prints is treated as hostile (bounded,
 * parsed strictly, malformed lines dropped).
 *
 * Threads: blocking, called on civetweb worker threads.
 */
#ifndef FL_TMUX_H
#define FL_TMUX_H

#include <stdbool.h>
#include <stddef.h>
#include <json-c/json.h>

#include "engine.h"
#include "error.h"

#define FL_TMUX_DEFAULT_SESSION "fluid"
#define FL_TMUX_DEFAULT_COLS 200
#define FL_TMUX_DEFAULT_ROWS 50
#define FL_TMUX_NAME_MAX 32
#define FL_TMUX_PANE_MAX 64	   /* longest pane target accepted */
#define FL_TMUX_OUT_MAX (1u << 20) /* stdout kept from one tmux call */

/* Separates two tmux commands in one call's args (tmux's ";" argument). */
extern const char FL_TMUX_SEP[];

/* Session names: [A-Za-z0-9_-]{1,32}. */
bool fl_tmux_session_name_ok(const char *s);

/*
 * Validates a pane reference and writes the tmux target for it into out:
 * "%N" (a pane id), or "SESSION", "SESSION:W" or "SESSION:W.P" (W and P
 * decimal indexes) which become "=SESSION:..." (exact session match; tmux
 * would otherwise take a prefix). ret_session (may be NULL) gets the
 * session name, "" for a "%N" id. -EINVAL when invalid.
 */
int fl_tmux_pane_target(const char *pane, char out[FL_TMUX_PANE_MAX + 8],
			char ret_session[FL_TMUX_NAME_MAX + 1]);

typedef struct FlTmuxResult {
	int exit_code; /* -1 when tmux did not exit normally */
	char *out;     /* stdout, NUL-terminated, at most out_cap bytes */
	size_t out_len;
	bool out_truncated;
	char err[512]; /* start of stderr, control characters replaced */
} FlTmuxResult;

void fl_tmux_result_clear(FlTmuxResult *r);

/*
 * Runs tmux with args (NULL-terminated; FL_TMUX_SEP between commands) in
 * the sandbox. 0 when tmux ran (whatever its exit code: see ret), or the
 * engine's error. out_cap 0 = FL_TMUX_OUT_MAX.
 */
int fl_tmux_run(FlEngine *e, const char *sandbox_id, const char *const *args, size_t out_cap,
		FlTmuxResult *ret, FlError *err);

/*
 * The errno for a failed tmux command from its stderr, with err set to
 * tmux's message: -ENOENT (no such session/window/pane, no server),
 * -EEXIST (duplicate session), -EINVAL (tmux refused the arguments),
 * -EIO otherwise.
 */
int fl_tmux_error(const FlTmuxResult *res, FlError *err);
/* True when the failure means the session (or the whole server) is missing. */
bool fl_tmux_missing_session(const FlTmuxResult *res);

/*
 * Creates session name (cols x rows, command NULL = the default shell;
 * argv when command_argv is set) if it does not exist. 0 when it was
 * created, 1 when it existed, or a negative errno with err set.
 */
int fl_tmux_ensure_session(FlEngine *e, const char *sandbox_id, const char *name,
			   const char *command, const char *const *command_argv, FlError *err);

/*
 * Creates a session (name NULL: tmux picks one) and returns it in the
 * listing's shape (new reference in *ret_session). -EEXIST when a session
 * of that name exists. The listing is taken in the same tmux call, so a
 * session whose command exits at once is still reported.
 */
int fl_tmux_create(FlEngine *e, const char *sandbox_id, const char *name, const char *command,
		   const char *const *command_argv, struct json_object **ret_session, FlError *err);

/*
 * The sessions of the sandbox's tmux server with their panes (the shape of
 * GET /v1/sandboxes/{id}/tmux/sessions): a new array in *ret (empty when
 * no server runs). only: just that session (NULL = all).
 */
int fl_tmux_list(FlEngine *e, const char *sandbox_id, const char *only, struct json_object **ret,
		 FlError *err);

/* Guest text (pane contents) as a JSON string: valid UTF-8 kept (with
 * newlines and tabs), anything else becomes U+FFFD, NULs are dropped. */
struct json_object *fl_tmux_text_json(const char *p, size_t len);

/* Formats (for tests): parses list output; malformed lines are dropped. */
struct json_object *fl_tmux_parse_list(const char *out, size_t len, const char *only);

#endif
