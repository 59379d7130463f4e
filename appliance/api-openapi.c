// SPDX-License-Identifier: MIT
/*
 * api-openapi: GET /v1/openapi.json serves docs/openapi.json, the OpenAPI 3
 * document of every endpoint in API.md, embedded in the binary at build
 * time; and `fluid routes`, which prints the routes this binary registers
 * ("METHOD PATTERN" per line, sorted) so tests/integration/test-openapi.sh
 * can check that the router and the document agree in both directions.
 *
 * DESIGN: the document is pulled in with the assembler's .incbin (no
 * generated source; appliance/openapi/module.mk makes the object depend on
 * the JSON file, which gcc's -MMD cannot see). It is served as is: the
 * repository's file is the single source of truth, and the router table is
 * the other; the test compares the two, so neither is generated from the
 * other.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <civetweb.h>

#include "http.h"

__asm__(".pushsection .rodata.fl_openapi,\"a\",@progbits\n"
	"fl_openapi_json_start:\n"
	".incbin \"docs/openapi.json\"\n"
	"fl_openapi_json_end:\n"
	".byte 0\n"
	".popsection\n");
extern const char fl_openapi_json_start[] __attribute__((visibility("hidden")));
extern const char fl_openapi_json_end[] __attribute__((visibility("hidden")));

int fl_cmd_routes(int argc, char **argv);

static int get_openapi(FlHttpReq *req)
{
	size_t len = (size_t)(fl_openapi_json_end - fl_openapi_json_start);
	req->responded = true;
	if (!req->conn)
		return 200;
	char clen[32];
	snprintf(clen, sizeof(clen), "%zu", len);
	mg_response_header_start(req->conn, 200);
	mg_response_header_add(req->conn, "Content-Type", "application/json", -1);
	mg_response_header_add(req->conn, "Content-Length", clen, -1);
	mg_response_header_send(req->conn);
	if (strcmp(req->method, "HEAD") != 0)
		mg_write(req->conn, fl_openapi_json_start, len);
	return 200;
}
FL_ROUTE(get_openapi, "GET", "/v1/openapi.json", FL_ROLE_AGENT);

static int route_cmp(const void *a, const void *b)
{
	const FlRoute *x = *(const FlRoute *const *)a, *y = *(const FlRoute *const *)b;
	int c = strcmp(x->pattern, y->pattern);
	return c ? c : strcmp(x->method, y->method);
}

int fl_cmd_routes(int argc, char **argv)
{
	const FlRoute *const *routes;
	size_t n = fl_http_routes(&routes);
	if (argc > 1) {
		fprintf(stderr, "usage: fluid routes\n\nPrints every API route this binary serves "
				"(METHOD PATTERN ROLE), for tests and docs.\n");
		return argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ? 0 : 2;
	}
	const FlRoute **sorted = calloc(n ? n : 1, sizeof(*sorted));
	if (!sorted)
		return 1;
	memcpy(sorted, routes, n * sizeof(*sorted));
	qsort(sorted, n, sizeof(*sorted), route_cmp);
	for (size_t i = 0; i < n; i++)
		printf("%s %s %s\n", sorted[i]->method, sorted[i]->pattern,
		       fl_role_name(sorted[i]->role));
	free(sorted);
	return 0;
}
