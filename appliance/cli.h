/* SPDX-License-Identifier: MIT */
/*
 * cli: the `fluid` command line. main.c dispatches argv[1] through a table
 * to one fl_cmd_* function per command family (cli-<family>.c). Commands
 * print; nothing below them does. Each returns the process exit status.
 *
 * Client commands talk to a running server through fl_client_request()
 * (cli-client.c): URL from --url, FLUID_URL or http://127.0.0.1:8080, token
 * from FLUID_TOKEN or a token file (see fl_client_token()).
 */
#ifndef FL_CLI_H
#define FL_CLI_H

#include <stddef.h>

#include "error.h"

#define FL_DEFAULT_URL "http://127.0.0.1:8080"

int fl_cmd_serve(int argc, char **argv);
int fl_cmd_status(int argc, char **argv);
int fl_cmd_config(int argc, char **argv);
int fl_cmd_accel(int argc, char **argv);
int fl_cmd_token(int argc, char **argv);
int fl_cmd_hosts(int argc, char **argv);
int fl_cmd_diff(int argc, char **argv);
int fl_cmd_audit(int argc, char **argv);

/* Prints "fluid: <msg>" to stderr. */
__attribute__((format(printf, 1, 2))) void fl_cli_error(const char *fmt, ...);

typedef struct FlClientResponse {
	int status;   /* HTTP status */
	char *body;   /* NUL-terminated, owned */
	size_t len;
} FlClientResponse;

void fl_client_response_clear(FlClientResponse *r);

/* The server URL: url if non-NULL, else $FLUID_URL, else FL_DEFAULT_URL. */
const char *fl_client_url(const char *url);

/*
 * The API token: $FLUID_TOKEN, else the first readable of token_file,
 * $FLUID_TOKEN_FILE, $FLUID_STATE_DIR/admin.token, ~/.config/fluid/token.
 * Returns a new string or NULL when there is none.
 */
char *fl_client_token(const char *token_file);

/*
 * One HTTP/1.1 request to the server at url (http://HOST:PORT). body may be
 * NULL. Errors: -ECONNREFUSED (no server), -ETIMEDOUT, -EBADMSG (not HTTP),
 * other -errno; err says which URL.
 */
int fl_client_request(const char *url, const char *method, const char *path, const char *token,
		      const char *body, size_t body_len, unsigned timeout_ms,
		      FlClientResponse *ret, FlError *err);

/*
 * One JSON API call for CLI commands: 0 with *ret (the parsed body, "{}"
 * when empty; ret may be NULL) on 2xx. On an API error it prints the
 * server's message and returns 1; when the server cannot be reached, 255.
 */
struct json_object;
int fl_cli_call(const char *url, const char *token, const char *method, const char *path,
		const char *body, unsigned timeout_ms, struct json_object **ret);
/* Prints an API error answer (the server's "error" message when it has one). */
void fl_cli_api_error(const char *method, const char *path, int status, const char *body);
/* Pretty JSON on stdout (--json output). */
void fl_cli_print_json(struct json_object *o);
/* o[key] when it is a string, else NULL. */
const char *fl_json_str(struct json_object *o, const char *key);

#endif
