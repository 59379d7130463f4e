// SPDX-License-Identifier: MIT
/*
 * approvals: the pure parts of approvals (approvals.h): ids, the state
 * machine, the playbook hash an approval pins, the PLAY RECAP parser and
 * the text cleaner for ansible-playbook's output. No I/O but getrandom;
 * tests/unit/test-approvals.c covers them. The database side is
 * db-approvals.c, the REST side api-approvals.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "approvals.h"
#include "cleanup.h"
#include "sha256.h"

bool fl_approval_id_valid(const char *id)
{
	if (!id || strlen(id) != FL_APPROVAL_ID_LEN || strncmp(id, "apr_", 4))
		return false;
	for (const char *p = id + 4; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

bool fl_approval_kind_valid(const char *k)
{
	return k && (!strcmp(k, "change") || !strcmp(k, "command") || !strcmp(k, "question"));
}

static const char *const states[] = {"pending", "approved", "rejected", "applying",
				     "applied", "failed",   NULL};

bool fl_approval_state_valid(const char *s)
{
	for (size_t i = 0; s && states[i]; i++)
		if (!strcmp(s, states[i]))
			return true;
	return false;
}

int fl_approval_new_id(char out[FL_APPROVAL_ID_LEN + 1])
{
	unsigned char rnd[16];
	size_t got = 0;
	while (got < sizeof(rnd)) {
		ssize_t n = getrandom(rnd + got, sizeof(rnd) - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		got += (size_t)n;
	}
	memcpy(out, "apr_", 4);
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(out + 4 + 2 * i, 3, "%02x", rnd[i]);
	return 0;
}

int fl_approval_transition_check(const char *id, const char *from, const char *to, FlError *err)
{
	static const struct {
		const char *from, *to;
	} steps[] = {
		{"pending", "approved"}, {"pending", "rejected"}, {"approved", "applying"},
		{"applying", "applied"}, {"applying", "failed"},
	};
	if (!fl_approval_state_valid(from) || !fl_approval_state_valid(to))
		return fl_error_set(err, -EINVAL, "unknown approval state");
	for (size_t i = 0; i < FL_ARRAY_SIZE(steps); i++)
		if (!strcmp(steps[i].from, from) && !strcmp(steps[i].to, to))
			return 0;
	const char *why;
	if (!strcmp(to, "approved") || !strcmp(to, "rejected"))
		why = "only pending approvals can be decided";
	else if (!strcmp(to, "applying"))
		why = !strcmp(from, "applying") ? "an apply is running"
		      : !strcmp(from, "applied")
			      ? "it was applied already; ask for a new approval to apply again"
		      : !strcmp(from, "failed")
			      ? "its apply failed; ask for a new approval to apply again"
			      : "only approved approvals can be applied";
	else
		why = "not a step of the approval state machine";
	return fl_error_set(err, -EBUSY, "approval %s%sis %s: %s", id ? id : "", id ? " " : "",
			    from, why);
}

static int by_src(const void *a, const void *b)
{
	struct json_object *x = *(struct json_object *const *)a,
			   *y = *(struct json_object *const *)b;
	struct json_object *sx = NULL, *sy = NULL;
	json_object_object_get_ex(x, "src", &sx);
	json_object_object_get_ex(y, "src", &sy);
	const char *p = sx ? json_object_get_string(sx) : "",
		   *q = sy ? json_object_get_string(sy) : "";
	return strcmp(p ? p : "", q ? q : "");
}

static void hash_field(FlSha256 *h, struct json_object *f, const char *key)
{
	struct json_object *v = NULL;
	const char *s =
		json_object_object_get_ex(f, key, &v) && json_object_is_type(v, json_type_string)
			? json_object_get_string(v)
			: "";
	fl_sha256_update(h, key, strlen(key));
	fl_sha256_update(h, "=", 1);
	fl_sha256_update(h, s, strlen(s));
	fl_sha256_update(h, "", 1); /* NUL separates fields: no two inputs share bytes */
}

int fl_approval_playbook_hash(const char *yaml, size_t yaml_len, struct json_object *files,
			      char out[FL_DB_HASH_HEX])
{
	static const char magic[] = "fluid-playbook-v1\n";
	size_t n = files && json_object_is_type(files, json_type_array)
			   ? json_object_array_length(files)
			   : 0;
	_cleanup_free_ struct json_object **v = n ? calloc(n, sizeof(*v)) : NULL;
	if (n && !v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		v[i] = json_object_array_get_idx(files, i);
	if (n)
		qsort(v, n, sizeof(*v), by_src);
	FlSha256 h;
	fl_sha256_init(&h);
	fl_sha256_update(&h, magic, sizeof(magic) - 1);
	char len[32];
	int l = snprintf(len, sizeof(len), "%zu\n", yaml_len);
	fl_sha256_update(&h, len, (size_t)l);
	fl_sha256_update(&h, yaml, yaml_len);
	for (size_t i = 0; i < n; i++) {
		fl_sha256_update(&h, "\nfile\n", 6);
		hash_field(&h, v[i], "src");
		hash_field(&h, v[i], "sha256");
		hash_field(&h, v[i], "content_b64");
	}
	fl_sha256_final_hex(&h, out);
	return 0;
}

/* "web-1 : ok=3 changed=1 unreachable=0 failed=0 skipped=0 rescued=0 ignored=0" */
static void recap_line(const char *s, size_t n, struct json_object *out)
{
	static const char *const keys[] = {"ok",      "changed", "unreachable", "failed",
					   "skipped", "rescued", "ignored",	NULL};
	char line[512];
	if (n >= sizeof(line))
		return;
	memcpy(line, s, n);
	line[n] = 0;
	char *colon = strstr(line, " : ");
	if (!colon)
		return;
	*colon = 0;
	char *host = line;
	while (*host == ' ')
		host++;
	size_t hl = strlen(host);
	while (hl && host[hl - 1] == ' ')
		host[--hl] = 0;
	if (!hl || hl > 255 || strpbrk(host, " \t"))
		return;
	struct json_object *h = json_object_new_object();
	int found = 0;
	char *save = NULL;
	for (char *tok = strtok_r(colon + 3, " \t", &save); tok;
	     tok = strtok_r(NULL, " \t", &save)) {
		char *eq = strchr(tok, '=');
		if (!eq)
			continue;
		*eq = 0;
		for (size_t k = 0; keys[k]; k++) {
			if (strcmp(tok, keys[k]))
				continue;
			char *end;
			errno = 0;
			long v = strtol(eq + 1, &end, 10);
			if (!errno && *end == 0 && end != eq + 1 && v >= 0 && v < 1000000000) {
				json_object_object_add(h, keys[k], json_object_new_int((int)v));
				found++;
			}
		}
	}
	if (found && json_object_object_length(out) < 1024)
		json_object_object_add(out, host, h);
	else
		json_object_put(h);
}

struct json_object *fl_approval_recap_parse(const char *text, size_t len)
{
	struct json_object *out = json_object_new_object();
	if (!out || !text)
		return out;
	/* the last PLAY RECAP wins (one per run) */
	const char *start = NULL;
	for (const char *p = text; p < text + len;) {
		const char *m = memmem(p, (size_t)(text + len - p), "PLAY RECAP", 10);
		if (!m)
			break;
		start = m;
		p = m + 10;
	}
	if (!start)
		return out;
	const char *p = memchr(start, '\n', (size_t)(text + len - start));
	while (p && p < text + len) {
		p++;
		const char *e = memchr(p, '\n', (size_t)(text + len - p));
		size_t n = e ? (size_t)(e - p) : (size_t)(text + len - p);
		if (n == 0 || !memmem(p, n, " : ", 3))
			break;
		recap_line(p, n, out);
		p = e;
	}
	return out;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	size_t len;
	uint32_t cp;
	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0)
		len = 2, cp = s[0] & 0x1f;
	else if ((s[0] & 0xf0) == 0xe0)
		len = 3, cp = s[0] & 0x0f;
	else if ((s[0] & 0xf8) == 0xf0)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

char *fl_approval_text_clean(const char *in, size_t len, size_t cap)
{
	size_t n = len < cap ? len : cap;
	char *out = malloc(n + 1);
	if (!out)
		return NULL;
	const unsigned char *s = (const unsigned char *)in;
	size_t i = 0, o = 0;
	while (i < len && o < n) {
		size_t k = utf8_seq(s + i, len - i);
		if (k == 0 ||
		    (k == 1 && ((s[i] < 0x20 && s[i] != '\n' && s[i] != '\t') || s[i] == 0x7f))) {
			out[o++] = '?';
			i++;
			continue;
		}
		if (o + k > n)
			break;
		memcpy(out + o, s + i, k);
		o += k;
		i += k;
	}
	out[o] = 0;
	return out;
}
