/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for QmpParser. Differential: the input is parsed once
 * in one piece and once split into chunks whose sizes come from the input
 * itself; both runs must deliver the same messages (compared by their
 * serialised form) and end with the same result. Every message must be a
 * JSON object. A small size cap is used so the -EMSGSIZE path is reached.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qmp.h"

typedef struct Digest {
	uint64_t hash;
	size_t count;
} Digest;

static void on_msg(struct json_object *msg, void *userdata)
{
	Digest *d = userdata;
	if (!json_object_is_type(msg, json_type_object))
		abort();
	const char *s = json_object_to_json_string_ext(msg, JSON_C_TO_STRING_PLAIN);
	for (; *s; s++)
		d->hash = (d->hash ^ (unsigned char)*s) * 1099511628211ull;
	d->hash = (d->hash ^ 0xff) * 1099511628211ull;
	d->count++;
}

static int run(const uint8_t *data, size_t size, size_t max, const uint8_t *splits,
	       size_t nsplits, Digest *d)
{
	QmpParser *p = qmp_parser_new(max);
	if (!p)
		abort();
	int r = 0;
	size_t off = 0, k = 0;
	while (off < size || (off == 0 && size == 0)) {
		size_t n = size - off;
		if (nsplits) {
			size_t want = (size_t)splits[k++ % nsplits] + 1;
			if (want < n)
				n = want;
		}
		int rr = qmp_parser_feed(p, (const char *)data + off, n, on_msg, d);
		if (rr < 0 && r == 0)
			r = rr;
		if (r < 0 && rr != r)
			abort(); /* errors must be sticky */
		off += n;
		if (size == 0)
			break;
	}
	/* Still failed, with the same error, after the input. */
	if (r < 0 && qmp_parser_feed(p, "{}", 2, on_msg, d) != r)
		abort();
	qmp_parser_free(p);
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* First byte: how many split sizes follow (0-15); then the sizes. */
	size_t nsplits = size ? data[0] & 15 : 0;
	if (size < 1 + nsplits)
		return 0;
	const uint8_t *splits = data + 1;
	const uint8_t *body = data + 1 + nsplits;
	size_t len = size - 1 - nsplits;
	size_t max = (data[0] & 16) ? 256 : 0;

	Digest a = { 14695981039346656037ull, 0 }, b = a;
	int ra = run(body, len, max, NULL, 0, &a);
	int rb = run(body, len, max, splits, nsplits, &b);
	if (ra != rb || a.count != b.count || a.hash != b.hash)
		abort();
	if (ra != 0 && ra != -EBADMSG && ra != -EMSGSIZE && ra != -ENOMEM)
		abort();
	return 0;
}
