/* SPDX-License-Identifier: MIT */
/*
 * QmpParser: turns a byte stream from QEMU's monitor into complete JSON
 * objects, one callback per message.
 *
 * DESIGN: two stages. A small hand-written framer walks every byte once and
 * decides where each message starts and ends (tracking strings, escapes and
 * bracket depth); it also enforces what json-c alone would let through:
 * the size cap (counted from the opening '{', before anything is
 * buffered beyond it), the nesting cap, top-level values other than objects,
 * raw control bytes and NUL, characters that cannot appear outside strings
 * in JSON (json-c's lenient extensions such as NaN, comments and single
 * quotes) and UTF-8 that is not well formed (overlong forms, encoded
 * surrogates, code points above U+10FFFF, truncated sequences). Once the
 * framer has a complete candidate, json-c (strict mode) builds the object
 * and catches the remaining grammar errors (missing commas, bad escapes,
 * mismatched brackets, bad literals).
 *
 * A message that lies entirely inside one fed buffer is parsed in place;
 * only messages split across feeds are copied into an internal buffer,
 * which never grows beyond max_message bytes.
 *
 * Decisions: escaped "\u0000" inside strings is accepted (json-c keeps the
 * length; C-string readers see a truncated string). Lone escaped surrogates
 * ("\ud800") are accepted and replaced by json-c. Numbers follow json-c's
 * strict mode; out-of-range numbers saturate. Errors are sticky.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "qmp.h"

/* Deep enough for query-block on a long backing chain, small enough that
 * json-c's recursive free and serialisation stay cheap. */
#define QMP_MAX_DEPTH 256
#define QMP_MAX_MESSAGE_LIMIT (1u << 30)

enum frame_state {
	FS_BETWEEN,  /* whitespace between messages */
	FS_VALUE,    /* inside a message, outside any string */
	FS_STRING,   /* inside a string */
	FS_ESCAPE,   /* after a backslash in a string */
};

struct QmpParser {
	size_t max;
	int error; /* sticky, 0 or negative errno */

	enum frame_state state;
	unsigned depth;
	/* UTF-8 inside strings: continuation bytes still expected and the
	 * allowed range for the next one. */
	unsigned utf8_need;
	unsigned char utf8_lo, utf8_hi;

	size_t msg_len; /* bytes of the current message seen so far */
	char *buf;      /* holds the head of a message split across feeds */
	size_t buf_len, buf_cap;

	struct json_tokener *tok;
};

QmpParser *qmp_parser_new(size_t max_message)
{
	QmpParser *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->max = max_message ? max_message : QMP_MAX_MESSAGE_DEFAULT;
	if (p->max > QMP_MAX_MESSAGE_LIMIT)
		p->max = QMP_MAX_MESSAGE_LIMIT; /* json-c takes an int length */
	p->tok = json_tokener_new_ex(QMP_MAX_DEPTH + 1);
	if (!p->tok) {
		free(p);
		return NULL;
	}
	json_tokener_set_flags(p->tok, JSON_TOKENER_STRICT);
	return p;
}

void qmp_parser_free(QmpParser *p)
{
	if (!p)
		return;
	json_tokener_free(p->tok);
	free(p->buf);
	free(p);
}

static int fail(QmpParser *p, int r)
{
	p->error = r;
	free(p->buf);
	p->buf = NULL;
	p->buf_len = p->buf_cap = 0;
	return r;
}

static bool is_ws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Characters that may appear in a JSON value outside strings (structure,
 * numbers, and the letters of true/false/null). */
static bool is_value_char(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return true;
	switch (c) {
	case ',': case ':': case '-': case '+': case '.':
	case 'E': case 'e':
	case 't': case 'r': case 'u':
	case 'f': case 'a': case 'l': case 's':
	case 'n':
		return true;
	default:
		return false;
	}
}

/* Starts a multi-byte UTF-8 sequence at lead byte c. */
static bool utf8_start(QmpParser *p, unsigned char c)
{
	p->utf8_lo = 0x80;
	p->utf8_hi = 0xBF;
	if (c >= 0xC2 && c <= 0xDF) {
		p->utf8_need = 1;
	} else if (c >= 0xE0 && c <= 0xEF) {
		p->utf8_need = 2;
		if (c == 0xE0)
			p->utf8_lo = 0xA0; /* overlong */
		else if (c == 0xED)
			p->utf8_hi = 0x9F; /* UTF-16 surrogates */
	} else if (c >= 0xF0 && c <= 0xF4) {
		p->utf8_need = 3;
		if (c == 0xF0)
			p->utf8_lo = 0x90; /* overlong */
		else if (c == 0xF4)
			p->utf8_hi = 0x8F; /* above U+10FFFF */
	} else {
		return false;
	}
	return true;
}

static bool utf8_continue(QmpParser *p, unsigned char c)
{
	if (c < p->utf8_lo || c > p->utf8_hi)
		return false;
	p->utf8_need--;
	p->utf8_lo = 0x80;
	p->utf8_hi = 0xBF;
	return true;
}

static int buf_append(QmpParser *p, const char *data, size_t len)
{
	if (len == 0)
		return 0;
	if (p->buf_len + len > p->buf_cap) {
		size_t cap = p->buf_cap ? p->buf_cap : 4096;
		while (cap < p->buf_len + len)
			cap *= 2;
		if (cap > p->max)
			cap = p->max; /* msg_len <= max is checked before appending */
		char *n = realloc(p->buf, cap);
		if (!n)
			return -ENOMEM;
		p->buf = n;
		p->buf_cap = cap;
	}
	memcpy(p->buf + p->buf_len, data, len);
	p->buf_len += len;
	return 0;
}

/* Builds the object for a complete candidate and hands it out. */
static int emit(QmpParser *p, const char *text, size_t len, qmp_message_fn fn, void *userdata)
{
	json_tokener_reset(p->tok);
	struct json_object *obj = json_tokener_parse_ex(p->tok, text, (int)len);
	if (!obj || json_tokener_get_error(p->tok) != json_tokener_success ||
	    json_tokener_get_parse_end(p->tok) != len ||
	    !json_object_is_type(obj, json_type_object)) {
		json_object_put(obj);
		return -EBADMSG;
	}
	if (fn)
		fn(obj, userdata);
	json_object_put(obj);
	return 0;
}

int qmp_parser_feed(QmpParser *p, const char *data, size_t len, qmp_message_fn fn, void *userdata)
{
	if (p->error)
		return p->error;

	const unsigned char *s = (const unsigned char *)data;
	size_t i = 0;
	size_t start = 0; /* where the current message begins within data */

	while (i < len) {
		unsigned char c = s[i];

		switch (p->state) {
		case FS_BETWEEN:
			if (is_ws(c)) {
				i++;
				continue;
			}
			if (c != '{')
				return fail(p, -EBADMSG);
			p->state = FS_VALUE;
			p->depth = 1;
			p->msg_len = 0;
			start = i;
			break;
		case FS_VALUE:
			if (c == '{' || c == '[') {
				if (++p->depth > QMP_MAX_DEPTH)
					return fail(p, -EBADMSG);
			} else if (c == '}' || c == ']') {
				p->depth--;
			} else if (c == '"') {
				p->state = FS_STRING;
			} else if (!is_ws(c) && !is_value_char(c)) {
				return fail(p, -EBADMSG);
			}
			break;
		case FS_STRING:
			if (p->utf8_need) {
				if (!utf8_continue(p, c))
					return fail(p, -EBADMSG);
			} else if (c == '"') {
				p->state = FS_VALUE;
			} else if (c == '\\') {
				p->state = FS_ESCAPE;
			} else if (c < 0x20) {
				return fail(p, -EBADMSG);
			} else if (c >= 0x80) {
				if (!utf8_start(p, c))
					return fail(p, -EBADMSG);
			}
			break;
		case FS_ESCAPE:
			/* json-c checks which escapes are valid; the framer only
			 * needs to know that this byte does not end the string. */
			if (c < 0x20 || c >= 0x80)
				return fail(p, -EBADMSG);
			p->state = FS_STRING;
			break;
		}

		i++;
		if (++p->msg_len > p->max)
			return fail(p, -EMSGSIZE);

		if (p->state == FS_VALUE && p->depth == 0) {
			int r;
			if (p->buf_len == 0) {
				r = emit(p, data + start, i - start, fn, userdata);
			} else {
				r = buf_append(p, data + start, i - start);
				if (r >= 0)
					r = emit(p, p->buf, p->buf_len, fn, userdata);
				p->buf_len = 0;
				if (p->buf_cap > 65536) {
					/* Do not pin a large buffer for one big reply. */
					free(p->buf);
					p->buf = NULL;
					p->buf_cap = 0;
				}
			}
			if (r < 0)
				return fail(p, r);
			p->state = FS_BETWEEN;
		}
	}

	if (p->state != FS_BETWEEN) {
		/* Keep the head of the unfinished message for the next feed. */
		int r = buf_append(p, data + start, len - start);
		if (r < 0)
			return fail(p, r);
	}
	return 0;
}
