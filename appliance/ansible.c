// SPDX-License-Identifier: MIT
/*
 * ansible: trusted diff -> playbook JSON -> YAML (see ansible.h and
 * docs/ansible.md).
 *
 * DESIGN: everything in a diff came out of a VM whose guest had root, so
 * every name, path and file body is hostile text. The generator validates
 * each entry and either expresses it with an idempotent module or lists it
 * in "skipped" with the reason; it never builds shell text from sandbox
 * data (the few command/shell tasks take their operands as argv or through
 * environment variables). The YAML writer is ours: strings are always
 * quoted (or literal blocks when the text is tidy), escaped so that any
 * Unicode survives, wrapped to yamllint's 80 columns with escaped line
 * breaks, and tagged !unsafe when they contain '{' so Ansible's templating
 * never sees them. Pure functions, no globals.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ansible.h"
#include "cleanup.h"

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)

/* ---- growable buffer ------------------------------------------------ */

typedef struct Buf {
	char *p;
	size_t len, cap, max;
	int err;
} Buf;

static void buf_grow(Buf *b, size_t add)
{
	if (b->err)
		return;
	if (b->len + add + 1 > b->max) {
		b->err = -E2BIG;
		return;
	}
	if (b->len + add + 1 <= b->cap)
		return;
	size_t nc = b->cap ? b->cap : 4096;
	while (nc < b->len + add + 1)
		nc *= 2;
	char *np = realloc(b->p, nc);
	if (!np) {
		b->err = -ENOMEM;
		return;
	}
	b->p = np;
	b->cap = nc;
}

static void buf_put(Buf *b, const void *s, size_t n)
{
	buf_grow(b, n);
	if (b->err)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

static void buf_puts(Buf *b, const char *s) { buf_put(b, s, strlen(s)); }

static void buf_spaces(Buf *b, size_t n)
{
	buf_grow(b, n);
	if (b->err)
		return;
	memset(b->p + b->len, ' ', n);
	b->len += n;
	b->p[b->len] = 0;
}

__attribute__((format(printf, 2, 3))) static void buf_printf(Buf *b, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		if (!b->err)
			b->err = -EINVAL;
		return;
	}
	buf_put(b, tmp, (size_t)n);
}

/* ---- UTF-8 ------------------------------------------------------------ */

/* Decodes one code point; returns its byte length, 0 if invalid. */
static size_t utf8_next(const unsigned char *s, size_t avail, uint32_t *cp)
{
	if (!avail)
		return 0;
	unsigned c = s[0];
	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	size_t n;
	uint32_t v, min;
	if ((c & 0xe0) == 0xc0)
		n = 2, v = c & 0x1f, min = 0x80;
	else if ((c & 0xf0) == 0xe0)
		n = 3, v = c & 0x0f, min = 0x800;
	else if ((c & 0xf8) == 0xf0)
		n = 4, v = c & 0x07, min = 0x10000;
	else
		return 0;
	if (avail < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		v = (v << 6) | (s[i] & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return n;
}

static bool utf8_valid(const char *s, size_t len)
{
	uint32_t cp;
	for (size_t i = 0; i < len;) {
		size_t n = utf8_next((const unsigned char *)s + i, len - i, &cp);
		if (!n)
			return false;
		i += n;
	}
	return true;
}

static size_t utf8_width(const char *s, size_t len)
{
	size_t w = 0;
	for (size_t i = 0; i < len; i++)
		if (((unsigned char)s[i] & 0xc0) != 0x80)
			w++;
	return w;
}

/* Characters YAML wants escaped inside a double-quoted scalar. */
static bool cp_needs_escape(uint32_t cp)
{
	/* controls, separators, and invisible or bidi formatting characters a
	 * reviewer could not see (zero-width, direction overrides) */
	return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f) || cp == 0xad ||
	       (cp >= 0x200b && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202e) ||
	       (cp >= 0x2060 && cp <= 0x2069) || cp == 0xfeff || cp == 0xfffe || cp == 0xffff;
}

/* ---- YAML scalars --------------------------------------------------- */

/* Columns a code point takes inside a double-quoted scalar. */
static size_t tok_width(uint32_t cp)
{
	if (cp == '"' || cp == '\\' || cp == '\n' || cp == '\t' || cp == '\r')
		return 2;
	if (cp_needs_escape(cp))
		return cp > 0xff ? 6 : 4;
	return 1;
}

/*
 * A literal block (|, |-) keeps tidy text readable. Only when every line
 * fits, has no trailing blanks or characters needing escapes, the first
 * line does not start with a blank (indentation detection), there are at
 * most two consecutive empty lines and the text ends with at most one
 * newline: that is what yamllint accepts and PyYAML reads back exactly.
 */
static bool block_ok(const char *s, size_t len, size_t indent)
{
	if (!memchr(s, '\n', len) || len == 0)
		return false;
	if (s[0] == ' ' || s[0] == '\t' || s[0] == '\n')
		return false;
	if (len >= 2 && s[len - 1] == '\n' && s[len - 2] == '\n')
		return false;
	size_t line_start = 0, empties = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i == len || s[i] == '\n') {
			size_t ll = i - line_start;
			if (ll == 0) {
				if (i < len && ++empties > 2)
					return false;
			} else {
				empties = 0;
				char last = s[i - 1];
				if (last == ' ' || last == '\t')
					return false;
				if (indent + utf8_width(s + line_start, ll) > FL_ANSIBLE_LINE_MAX)
					return false;
			}
			line_start = i + 1;
			continue;
		}
		uint32_t cp;
		size_t n = utf8_next((const unsigned char *)s + i, len - i, &cp);
		if (!n)
			return false;
		if (cp != '\t' && cp_needs_escape(cp))
			return false;
		i += n - 1;
	}
	return true;
}

/*
 * Writes s as a scalar that starts at column col and ends the line.
 * Continuation lines (and a literal block's content) are indented by
 * cont. allow_block: a literal block may be used (mapping values,
 * sequence items).
 */
static int put_str(Buf *b, const char *s, size_t len, size_t col, size_t cont, bool allow_block)
{
	if (!utf8_valid(s, len))
		return -EILSEQ;
	if (memchr(s, '{', len)) {
		buf_puts(b, "!unsafe ");
		col += 8;
	}
	if (allow_block && block_ok(s, len, cont)) {
		bool final_nl = s[len - 1] == '\n';
		buf_puts(b, final_nl ? "|\n" : "|-\n");
		size_t st = 0;
		size_t end = final_nl ? len - 1 : len;
		for (size_t i = 0; i <= end; i++) {
			if (i == end || s[i] == '\n') {
				if (i > st) {
					buf_spaces(b, cont);
					buf_put(b, s + st, i - st);
				}
				buf_puts(b, "\n");
				st = i + 1;
			}
		}
		return b->err;
	}

	/* Double-quoted. First the whole width, to decide on wrapping. */
	size_t total = 0;
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		size_t n = utf8_next((const unsigned char *)s + i, len - i, &cp);
		total += tok_width(cp);
		i += n;
	}
	bool wrap = col + total + 2 > FL_ANSIBLE_LINE_MAX;
	size_t pos = col + 1;
	bool line_empty = true;
	buf_puts(b, "\"");
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		size_t n = utf8_next((const unsigned char *)s + i, len - i, &cp);
		char tok[16];
		size_t tl, tw;
		if (cp == '"' || cp == '\\') {
			tok[0] = '\\', tok[1] = (char)cp, tl = tw = 2;
		} else if (cp == '\n') {
			memcpy(tok, "\\n", 2), tl = tw = 2;
		} else if (cp == '\t') {
			memcpy(tok, "\\t", 2), tl = tw = 2;
		} else if (cp == '\r') {
			memcpy(tok, "\\r", 2), tl = tw = 2;
		} else if (cp_needs_escape(cp)) {
			if (cp > 0xff)
				tl = tw = (size_t)snprintf(tok, sizeof(tok), "\\u%04X", (unsigned)cp);
			else
				tl = tw = (size_t)snprintf(tok, sizeof(tok), "\\x%02X", (unsigned)cp);
		} else {
			memcpy(tok, s + i, n), tl = n, tw = 1;
		}
		if (wrap && !line_empty && cp == ' ') {
			/* break between words when the next word would not fit:
			 * the blank stays at the end of this line (YAML keeps blanks
			 * before an escaped line break) */
			size_t w = 0;
			for (size_t k = i + 1; k < len;) {
				uint32_t c2;
				size_t n2 = utf8_next((const unsigned char *)s + k, len - k, &c2);
				if (c2 == ' ' || c2 == '\n')
					break;
				w += tok_width(c2);
				k += n2;
			}
			if (pos + 1 + w + 1 > FL_ANSIBLE_LINE_MAX && cont + w + 1 <= FL_ANSIBLE_LINE_MAX &&
			    pos + 2 <= FL_ANSIBLE_LINE_MAX) {
				buf_puts(b, " \\\n");
				buf_spaces(b, cont);
				pos = cont;
				line_empty = true;
				i += n;
				continue;
			}
		}
		if (wrap && !line_empty && pos + tw + 1 > FL_ANSIBLE_LINE_MAX) {
			buf_puts(b, "\\\n");
			buf_spaces(b, cont);
			pos = cont;
			line_empty = true;
		}
		if (line_empty && wrap && pos == cont && (cp == ' ')) {
			/* leading blanks of a continuation line would be dropped */
			buf_puts(b, "\\ ");
			pos += 2;
		} else {
			buf_put(b, tok, tl);
			pos += tw;
		}
		line_empty = false;
		i += n;
		if (wrap && cp == '\n' && i < len) {
			buf_puts(b, "\\\n");
			buf_spaces(b, cont);
			pos = cont;
			line_empty = true;
		}
	}
	buf_puts(b, "\"\n");
	return b->err;
}

static bool plain_key(const char *k)
{
	if (!*k || strlen(k) > 64)
		return false;
	for (const char *p = k; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
		      (p != k && ((*p >= '0' && *p <= '9') || *p == '.'))))
			return false;
	/* YAML 1.1 would read these as booleans or null */
	static const char *const bad[] = {"y", "Y", "n", "N", "yes", "no", "on", "off", "true",
					  "false", "null", "Yes", "No", "On", "Off", "True",
					  "False", "Null", "YES", "NO", "ON", "OFF", "TRUE",
					  "FALSE", "NULL", NULL};
	for (size_t i = 0; bad[i]; i++)
		if (!strcmp(k, bad[i]))
			return false;
	return true;
}

static int put_map(Buf *b, struct json_object *obj, size_t indent, bool first_inline, int depth);
static int put_seq(Buf *b, struct json_object *arr, size_t indent, int depth);

/* The value of a mapping key already written ("key:" ending at col). */
static int put_value(Buf *b, struct json_object *v, size_t key_indent, size_t col, int depth,
		     bool allow_block)
{
	if (depth > 8)
		return -EINVAL;
	switch (json_object_get_type(v)) {
	case json_type_null:
		buf_puts(b, " null\n");
		return b->err;
	case json_type_boolean:
		buf_puts(b, json_object_get_boolean(v) ? " true\n" : " false\n");
		return b->err;
	case json_type_int:
		buf_printf(b, " %" PRId64 "\n", json_object_get_int64(v));
		return b->err;
	case json_type_double:
		buf_printf(b, " %.17g\n", json_object_get_double(v));
		return b->err;
	case json_type_string:
		buf_puts(b, " ");
		return put_str(b, json_object_get_string(v), (size_t)json_object_get_string_len(v),
			       col + 1, key_indent + 2, allow_block);
	case json_type_object:
		if (json_object_object_length(v) == 0) {
			buf_puts(b, " {}\n");
			return b->err;
		}
		buf_puts(b, "\n");
		return put_map(b, v, key_indent + 2, false, depth + 1);
	case json_type_array:
		if (json_object_array_length(v) == 0) {
			buf_puts(b, " []\n");
			return b->err;
		}
		buf_puts(b, "\n");
		return put_seq(b, v, key_indent + 2, depth + 1);
	}
	return -EINVAL;
}

static int put_key(Buf *b, const char *k, size_t indent, size_t *ret_col)
{
	if (plain_key(k)) {
		buf_puts(b, k);
		*ret_col = indent + strlen(k) + 1;
	} else {
		/* rare: quoted key on one line (long keys are refused) */
		size_t before = b->len;
		int r = put_str(b, k, strlen(k), indent, indent + 2, false);
		if (r < 0)
			return r;
		if (memchr(b->p + before, '\n', b->len - before - 1))
			return -EINVAL;
		b->len--; /* drop the newline put_str ended with */
		b->p[b->len] = 0;
		*ret_col = indent + utf8_width(b->p + before, b->len - before) + 1;
	}
	buf_puts(b, ":");
	return b->err;
}

static int put_map(Buf *b, struct json_object *obj, size_t indent, bool first_inline, int depth)
{
	bool first = true;
	json_object_object_foreach(obj, k, v)
	{
		if (!(first && first_inline))
			buf_spaces(b, indent);
		first = false;
		size_t col;
		int r = put_key(b, k, indent, &col);
		if (r < 0)
			return r;
		/* literal blocks for file bodies only: a path in a block reads badly */
		bool blk = !strcmp(k, "content") || !strcmp(k, "block");
		if ((r = put_value(b, v, indent, col, depth, blk)) < 0)
			return r;
	}
	return b->err;
}

static int put_seq(Buf *b, struct json_object *arr, size_t indent, int depth)
{
	size_t n = json_object_array_length(arr);
	for (size_t i = 0; i < n; i++) {
		struct json_object *v = json_object_array_get_idx(arr, i);
		buf_spaces(b, indent);
		buf_puts(b, "-");
		int r;
		switch (json_object_get_type(v)) {
		case json_type_object:
			if (json_object_object_length(v) == 0) {
				buf_puts(b, " {}\n");
				break;
			}
			buf_puts(b, " ");
			if ((r = put_map(b, v, indent + 2, true, depth + 1)) < 0)
				return r;
			break;
		case json_type_array:
			return -EINVAL; /* no nested sequences in module parameters */
		default:
			/* a scalar item behaves like a value after "-" */
			if ((r = put_value(b, v, indent, indent + 1, depth, false)) < 0)
				return r;
		}
	}
	return b->err;
}

/* A one-line comment from arbitrary text (no control characters, bounded). */
static void put_comment(Buf *b, size_t indent, const char *prefix, const char *text)
{
	buf_spaces(b, indent);
	buf_puts(b, "# ");
	buf_puts(b, prefix);
	size_t w = indent + 2 + strlen(prefix);
	const unsigned char *s = (const unsigned char *)text;
	size_t len = strlen(text);
	for (size_t i = 0; i < len && w < FL_ANSIBLE_LINE_MAX - 3;) {
		uint32_t cp;
		size_t n = utf8_next(s + i, len - i, &cp);
		if (!n) {
			buf_puts(b, "?");
			i++;
		} else if (cp_needs_escape(cp)) {
			buf_puts(b, "?");
			i += n;
		} else {
			buf_put(b, s + i, n);
			i += n;
		}
		w++;
	}
	if (w >= FL_ANSIBLE_LINE_MAX - 3)
		buf_puts(b, "...");
	/* no trailing blanks (yamllint) */
	while (b->len && b->p[b->len - 1] == ' ')
		b->p[--b->len] = 0;
	buf_puts(b, "\n");
}

static const char *jstr(struct json_object *o, const char *key)
{
	struct json_object *v;
	if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

enum { SEEN_TEMPLATE = 1, SEEN_TAB = 2 };

static void scan_strings(struct json_object *v, unsigned *seen, int depth)
{
	if (depth > 8)
		return;
	switch (json_object_get_type(v)) {
	case json_type_string: {
		const char *s = json_object_get_string(v);
		size_t len = (size_t)json_object_get_string_len(v);
		if (memchr(s, '{', len) || memchr(s, '\r', len))
			*seen |= SEEN_TEMPLATE;
		if (memchr(s, '\t', len))
			*seen |= SEEN_TAB;
		break;
	}
	case json_type_array:
		for (size_t i = 0; i < json_object_array_length(v); i++)
			scan_strings(json_object_array_get_idx(v, i), seen, depth + 1);
		break;
	case json_type_object: {
		json_object_object_foreach(v, k, x)
		{
			(void)k;
			scan_strings(x, seen, depth + 1);
		}
		break;
	}
	default:
		break;
	}
}

static int put_task(Buf *b, struct json_object *t, size_t indent)
{
	struct json_object *v, *params;
	const char *name = jstr(t, "name"), *module = jstr(t, "module");
	if (!name || !module || !json_object_object_get_ex(t, "params", &params) ||
	    !json_object_is_type(params, json_type_object))
		return -EINVAL;
	if (json_object_object_get_ex(t, "flagged", &v) && json_object_get_boolean(v))
		put_comment(b, indent, "flagged: not idempotent", "");
	const char *note = jstr(t, "note");
	if (note)
		put_comment(b, indent, "note: ", note);
	buf_spaces(b, indent);
	buf_puts(b, "- name: ");
	int r = put_str(b, name, strlen(name), indent + 8, indent + 4, false);
	if (r < 0)
		return r;
	size_t col;
	buf_spaces(b, indent + 2);
	if ((r = put_key(b, module, indent + 2, &col)) < 0)
		return r;
	/*
	 * ansible-lint evaluates strings as templates and dislikes tabs; our
	 * strings are literal (!unsafe) file data, so those rules do not apply
	 * to this task: say so where a reviewer sees it.
	 */
	unsigned seen = 0;
	scan_strings(params, &seen, 0);
	if (json_object_object_get_ex(t, "environment", &v))
		scan_strings(v, &seen, 0);
	if (seen) {
		buf_puts(b, "  # noqa:");
		if (seen & SEEN_TEMPLATE)
			buf_puts(b, " jinja");
		if (seen & SEEN_TAB)
			buf_puts(b, " no-tabs");
	}
	if ((r = put_value(b, params, indent + 2, col, 0, false)) < 0)
		return r;
	static const char *const extra[] = {"register", "changed_when", "failed_when", "environment",
					    NULL};
	for (size_t i = 0; extra[i]; i++) {
		if (!json_object_object_get_ex(t, extra[i], &v))
			continue;
		buf_spaces(b, indent + 2);
		if ((r = put_key(b, extra[i], indent + 2, &col)) < 0 ||
		    (r = put_value(b, v, indent + 2, col, 0, false)) < 0)
			return r;
	}
	return b->err;
}

int fl_ansible_yaml(struct json_object *pb, char **ret, size_t *ret_len, FlError *err)
{
	Buf b = {.max = FL_ANSIBLE_MAX_YAML};
	struct json_object *tasks = NULL, *v;
	int r;

	if (!json_object_is_type(pb, json_type_object))
		return fl_error_set(err, -EINVAL, "playbook is not an object");
	const char *name = jstr(pb, "name");
	const char *hosts = jstr(pb, "hosts");
	bool become = true;
	if (json_object_object_get_ex(pb, "become", &v) && json_object_is_type(v, json_type_boolean))
		become = json_object_get_boolean(v);
	if (json_object_object_get_ex(pb, "tasks", &tasks) &&
	    !json_object_is_type(tasks, json_type_array))
		return fl_error_set(err, -EINVAL, "tasks is not an array");

	buf_puts(&b, "---\n# Generated by fluid (docs/ansible.md). Strings tagged !unsafe are\n"
		     "# literal text from the sandbox, never templated.\n");
	if (json_object_object_get_ex(pb, "incomplete", &v) && json_object_get_boolean(v))
		buf_puts(&b, "# WARNING: the diff was truncated; this playbook is incomplete.\n");
	struct json_object *skipped;
	if (json_object_object_get_ex(pb, "skipped", &skipped) &&
	    json_object_is_type(skipped, json_type_array)) {
		size_t n = json_object_array_length(skipped);
		for (size_t i = 0; i < n && i < 200; i++) {
			struct json_object *s = json_object_array_get_idx(skipped, i);
			const char *what = jstr(s, "path") ? jstr(s, "path") : jstr(s, "item");
			char line[600];
			snprintf(line, sizeof(line), "%s (%s)", what ? what : "?",
				 jstr(s, "reason") ? jstr(s, "reason") : "?");
			put_comment(&b, 0, "not reproduced: ", line);
		}
		if (n > 200)
			buf_printf(&b, "# ... and %zu more not reproduced\n", n - 200);
	}
	buf_puts(&b, "- name: ");
	/* ansible-lint wants names that start with a capital letter */
	char pn[600];
	if (!name)
		snprintf(pn, sizeof(pn), "Reproduce sandbox changes");
	else if (name[0] >= 'A' && name[0] <= 'Z')
		snprintf(pn, sizeof(pn), "%s", name);
	else
		snprintf(pn, sizeof(pn), "Playbook %s", name);
	if ((r = put_str(&b, pn, strlen(pn), 8, 4, false)) < 0)
		goto fail;
	buf_puts(&b, "  hosts: ");
	const char *h = hosts ? hosts : "all";
	if ((r = put_str(&b, h, strlen(h), 9, 4, false)) < 0)
		goto fail;
	buf_puts(&b, become ? "  become: true\n" : "  become: false\n");
	buf_puts(&b, "  gather_facts: false\n");
	size_t nt = tasks ? json_object_array_length(tasks) : 0;
	if (nt > FL_ANSIBLE_MAX_TASKS) {
		r = -E2BIG;
		goto fail;
	}
	if (!nt) {
		buf_puts(&b, "  tasks: []\n");
	} else {
		buf_puts(&b, "  tasks:\n");
		for (size_t i = 0; i < nt; i++) {
			if ((r = put_task(&b, json_object_array_get_idx(tasks, i), 4)) < 0) {
				free(b.p);
				return fl_error_set(err, r, "task %zu: %s", i + 1,
						    r == -EILSEQ ? "a string is not valid UTF-8"
						    : r == -E2BIG ? "playbook too large"
								  : "malformed task");
			}
		}
	}
	if ((r = b.err) < 0)
		goto fail;
	if (ret_len)
		*ret_len = b.len;
	*ret = b.p;
	return 0;
fail:
	free(b.p);
	return fl_error_set(err, r, "cannot render the playbook: %s",
			    r == -EILSEQ ? "a string is not valid UTF-8" : strerror(-r));
}
