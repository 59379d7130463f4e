// SPDX-License-Identifier: MIT
/*
 * Framing for the fluid agent protocol, shared by the static guest agent and
 * the host library: byte queues, frame encoding and the incremental framer.
 *
 * DESIGN: the framer buffers at most one frame (header + payload, both
 * capped before any allocation), so a hostile peer can make it hold no more
 * than max_header + max_payload + a prefix. Headers are parsed with a json-c
 * tokener limited in depth, and must be exactly one JSON object.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent-proto.h"

#define MAGIC_FRAME "FLA1"
#define MAGIC_SYNC "FLS1"

int agent_buf_reserve(AgentBuf *b, size_t extra)
{
	if (b->head > 0 && b->head + b->len + extra > b->cap) {
		memmove(b->data, b->data + b->head, b->len);
		b->head = 0;
	}
	if (b->len + extra <= b->cap)
		return 0;
	size_t ncap = b->cap ? b->cap : 4096;
	while (ncap < b->len + extra) {
		if (ncap > SIZE_MAX / 2)
			return -ENOMEM;
		ncap *= 2;
	}
	uint8_t *n = realloc(b->data, ncap);
	if (!n)
		return -ENOMEM;
	b->data = n;
	b->cap = ncap;
	return 0;
}

int agent_buf_append(AgentBuf *b, const void *p, size_t n)
{
	int r = agent_buf_reserve(b, n);
	if (r < 0)
		return r;
	if (n)
		memcpy(b->data + b->head + b->len, p, n);
	b->len += n;
	return 0;
}

void agent_buf_consume(AgentBuf *b, size_t n)
{
	if (n >= b->len) {
		b->head = b->len = 0;
		/* Give back memory after a burst (large transfers). */
		if (b->cap > 1024 * 1024) {
			free(b->data);
			b->data = NULL;
			b->cap = 0;
		}
		return;
	}
	b->head += n;
	b->len -= n;
}

void agent_buf_clear(AgentBuf *b)
{
	b->head = b->len = 0;
}

void agent_buf_free(AgentBuf *b)
{
	free(b->data);
	*b = (AgentBuf){0};
}

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = v & 0xff;
	p[1] = (v >> 8) & 0xff;
	p[2] = (v >> 16) & 0xff;
	p[3] = (v >> 24) & 0xff;
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int agent_frame_append(AgentBuf *out, struct json_object *hdr, const void *payload, size_t plen)
{
	size_t hlen;
	const char *s = json_object_to_json_string_length(hdr, JSON_C_TO_STRING_PLAIN, &hlen);
	if (!s)
		return -ENOMEM;
	if (hlen > UINT32_MAX || plen > UINT32_MAX)
		return -EMSGSIZE;
	int r = agent_buf_reserve(out, AGENT_FRAME_PREFIX + hlen + plen);
	if (r < 0)
		return r;
	uint8_t pre[AGENT_FRAME_PREFIX];
	memcpy(pre, MAGIC_FRAME, 4);
	put_le32(pre + 4, (uint32_t)hlen);
	put_le32(pre + 8, (uint32_t)plen);
	agent_buf_append(out, pre, sizeof(pre));
	agent_buf_append(out, s, hlen);
	agent_buf_append(out, payload, plen);
	return 0;
}

int agent_sync_append(AgentBuf *out, const uint8_t nonce[AGENT_NONCE_LEN])
{
	int r = agent_buf_reserve(out, AGENT_SYNC_LEN);
	if (r < 0)
		return r;
	agent_buf_append(out, MAGIC_SYNC, 4);
	agent_buf_append(out, nonce, AGENT_NONCE_LEN);
	return 0;
}

struct AgentFramer {
	size_t max_header, max_payload;
	uint8_t *buf; /* the frame being assembled */
	size_t have;  /* bytes of it received */
	size_t need;  /* bytes the current stage needs in total */
	uint32_t hlen, plen;
	int failed;
	bool hunting;
	bool hunt_any;
	uint8_t nonce[AGENT_NONCE_LEN];
	/* hunt: bytes of "FLS1"+nonce matched so far */
	size_t match;
	uint8_t cand[AGENT_SYNC_LEN];
	struct json_tokener *tok;
};

AgentFramer *agent_framer_new(size_t max_header, size_t max_payload)
{
	AgentFramer *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->max_header = max_header;
	f->max_payload = max_payload;
	f->buf = malloc(AGENT_FRAME_PREFIX + max_header + max_payload);
	f->tok = json_tokener_new_ex(32);
	if (!f->buf || !f->tok) {
		agent_framer_free(f);
		return NULL;
	}
	f->need = 4;
	return f;
}

void agent_framer_free(AgentFramer *f)
{
	if (!f)
		return;
	free(f->buf);
	if (f->tok)
		json_tokener_free(f->tok);
	free(f);
}

void agent_framer_reset(AgentFramer *f)
{
	f->have = 0;
	f->need = 4;
	f->failed = 0;
	f->hunting = false;
	f->match = 0;
}

void agent_framer_hunt(AgentFramer *f, const uint8_t *nonce)
{
	agent_framer_reset(f);
	f->hunting = true;
	f->hunt_any = nonce == NULL;
	if (nonce)
		memcpy(f->nonce, nonce, AGENT_NONCE_LEN);
}

bool agent_framer_hunting(const AgentFramer *f)
{
	return f->hunting;
}

bool agent_framer_partial(const AgentFramer *f)
{
	return !f->hunting && f->have > 0;
}

/* One byte of the hunt. Returns 1 when a matching sync frame completed. */
static int hunt_byte(AgentFramer *f, uint8_t c)
{
	for (;;) {
		uint8_t want;
		bool any = false;
		if (f->match < 4)
			want = (uint8_t)MAGIC_SYNC[f->match];
		else if (f->hunt_any)
			any = true, want = 0;
		else
			want = f->nonce[f->match - 4];
		if (any || c == want) {
			f->cand[f->match++] = c;
			if (f->match == AGENT_SYNC_LEN) {
				f->match = 0;
				return 1;
			}
			return 0;
		}
		if (f->match == 0)
			return 0;
		/* Mismatch: restart; "FLS1" has no self-overlap, so the only
		 * possible restart is at this byte. */
		f->match = 0;
	}
}

static int parse_header(AgentFramer *f, struct json_object **ret)
{
	json_tokener_reset(f->tok);
	const char *s = (const char *)f->buf + AGENT_FRAME_PREFIX;
	struct json_object *o = json_tokener_parse_ex(f->tok, s, (int)f->hlen);
	if (!o || json_tokener_get_error(f->tok) != json_tokener_success ||
	    json_tokener_get_parse_end(f->tok) != f->hlen || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return -EBADMSG;
	}
	*ret = o;
	return 0;
}

int agent_framer_feed(AgentFramer *f, const uint8_t *buf, size_t len, const AgentFramerOps *ops,
		      void *userdata)
{
	if (f->failed)
		return f->failed;
	size_t i = 0;
	while (i < len) {
		if (f->hunting) {
			while (i < len) {
				if (hunt_byte(f, buf[i++])) {
					f->hunting = false;
					f->have = 0;
					f->need = 4;
					if (ops->on_sync) {
						int r = ops->on_sync(userdata, f->cand + 4);
						if (r < 0)
							return r;
					}
					break;
				}
			}
			continue;
		}
		size_t n = f->need - f->have;
		if (n > len - i)
			n = len - i;
		memcpy(f->buf + f->have, buf + i, n);
		f->have += n;
		i += n;
		if (f->have < f->need)
			break;
		if (f->need == 4) {
			if (memcmp(f->buf, MAGIC_SYNC, 4) == 0) {
				f->need = AGENT_SYNC_LEN;
			} else if (memcmp(f->buf, MAGIC_FRAME, 4) == 0) {
				f->need = AGENT_FRAME_PREFIX;
			} else {
				return f->failed = -EBADMSG;
			}
			continue;
		}
		if (memcmp(f->buf, MAGIC_SYNC, 4) == 0) {
			f->have = 0;
			f->need = 4;
			if (ops->on_sync) {
				int r = ops->on_sync(userdata, f->buf + 4);
				if (r < 0)
					return r;
			}
			continue;
		}
		if (f->need == AGENT_FRAME_PREFIX) {
			f->hlen = get_le32(f->buf + 4);
			f->plen = get_le32(f->buf + 8);
			if (f->hlen == 0)
				return f->failed = -EBADMSG;
			if (f->hlen > f->max_header || f->plen > f->max_payload)
				return f->failed = -EMSGSIZE;
			f->need = AGENT_FRAME_PREFIX + (size_t)f->hlen + f->plen;
			continue;
		}
		/* A whole frame. */
		struct json_object *hdr = NULL;
		int r = parse_header(f, &hdr);
		if (r < 0)
			return f->failed = r;
		f->have = 0;
		f->need = 4;
		r = 0;
		if (ops->on_frame)
			r = ops->on_frame(userdata, hdr, f->buf + AGENT_FRAME_PREFIX + f->hlen, f->plen);
		json_object_put(hdr);
		if (r < 0)
			return r;
	}
	return 0;
}

void agent_hex(const uint8_t *in, size_t len, char *out)
{
	static const char d[] = "0123456789abcdef";
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = d[in[i] >> 4];
		out[2 * i + 1] = d[in[i] & 15];
	}
	out[2 * len] = 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int agent_unhex(const char *in, uint8_t *out, size_t len)
{
	if (!in || strlen(in) != 2 * len)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		int a = hexval(in[2 * i]), b = hexval(in[2 * i + 1]);
		if (a < 0 || b < 0)
			return -EINVAL;
		out[i] = (uint8_t)(a << 4 | b);
	}
	return 0;
}

int agent_json_get_i64(struct json_object *o, const char *key, int64_t *ret)
{
	struct json_object *v;
	if (!o || !json_object_object_get_ex(o, key, &v))
		return -ENOENT;
	if (!json_object_is_type(v, json_type_int))
		return -EINVAL;
	errno = 0;
	int64_t x = json_object_get_int64(v);
	if (errno)
		return -EINVAL;
	/* json-c saturates out-of-range values; reject the saturated ones. */
	if (x == INT64_MAX || x == INT64_MIN)
		return -ERANGE;
	*ret = x;
	return 0;
}

int agent_json_get_u64(struct json_object *o, const char *key, uint64_t *ret)
{
	int64_t x;
	int r = agent_json_get_i64(o, key, &x);
	if (r < 0)
		return r;
	if (x < 0)
		return -ERANGE;
	*ret = (uint64_t)x;
	return 0;
}

const char *agent_json_get_str(struct json_object *o, const char *key)
{
	struct json_object *v;
	if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

bool agent_json_get_bool(struct json_object *o, const char *key)
{
	struct json_object *v;
	if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_boolean))
		return false;
	return json_object_get_boolean(v);
}
