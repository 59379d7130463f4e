/* SPDX-License-Identifier: MIT */
/*
 * Framing shared by fluid-agent (guest) and libagentc (host). See
 * docs/agent-protocol.md for the wire format:
 *
 *   message frame:  "FLA1" u32le header_len u32le payload_len header payload
 *   sync frame:     "FLS1" nonce[16]
 *
 * The header is a JSON object. AgentFramer is a pure incremental parser:
 * bytes in, complete frames out, bounded by the caps given at creation.
 * In "hunt" mode it discards bytes until a sync frame (optionally with a
 * given nonce), which is how both sides skip stale bytes of an earlier
 * connection.
 */
#ifndef FL_AGENT_PROTO_H
#define FL_AGENT_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

#define AGENT_PROTOCOL 1
#define AGENT_NONCE_LEN 16
#define AGENT_FRAME_PREFIX 12
#define AGENT_SYNC_LEN (4 + AGENT_NONCE_LEN)
#define AGENT_DEFAULT_WINDOW (256u * 1024)
#define AGENT_DEFAULT_MAX_PAYLOAD (256u * 1024)
#define AGENT_CHUNK (64u * 1024) /* data frames carry at most this much */

/* A growable byte queue: append at the tail, consume at the head. */
typedef struct AgentBuf {
	uint8_t *data;
	size_t head, len, cap;
} AgentBuf;

int agent_buf_reserve(AgentBuf *b, size_t extra);
int agent_buf_append(AgentBuf *b, const void *p, size_t n);
void agent_buf_consume(AgentBuf *b, size_t n);
static inline const uint8_t *agent_buf_head(const AgentBuf *b) { return b->data + b->head; }
void agent_buf_clear(AgentBuf *b);
void agent_buf_free(AgentBuf *b);

/* Appends a message frame: the header object serialized, then payload. */
int agent_frame_append(AgentBuf *out, struct json_object *hdr, const void *payload, size_t plen);
/* Appends a sync frame. */
int agent_sync_append(AgentBuf *out, const uint8_t nonce[AGENT_NONCE_LEN]);

typedef struct AgentFramer AgentFramer;

typedef struct AgentFramerOps {
	/* A message frame. hdr is a parsed JSON object, borrowed. Return < 0
	 * to stop feeding (the value is returned by agent_framer_feed). */
	int (*on_frame)(void *userdata, struct json_object *hdr, const uint8_t *payload,
			size_t plen);
	/* A sync frame. Same return convention. */
	int (*on_sync)(void *userdata, const uint8_t nonce[AGENT_NONCE_LEN]);
} AgentFramerOps;

AgentFramer *agent_framer_new(size_t max_header, size_t max_payload);
void agent_framer_free(AgentFramer *f);
/* Drops any partial frame and discards input until a sync frame; with
 * nonce != NULL only a sync frame carrying that nonce ends the hunt. */
void agent_framer_hunt(AgentFramer *f, const uint8_t *nonce);
/* Drops any partial frame, back to parsing frames. */
void agent_framer_reset(AgentFramer *f);
bool agent_framer_hunting(const AgentFramer *f);
/* True while a frame is partially received. */
bool agent_framer_partial(const AgentFramer *f);
/*
 * Feeds bytes. Returns 0, a callback's negative value, or -EBADMSG (bad
 * magic, header not a JSON object), -EMSGSIZE (over the caps). After an
 * error the framer keeps failing until reset or hunt.
 */
int agent_framer_feed(AgentFramer *f, const uint8_t *buf, size_t len, const AgentFramerOps *ops,
		      void *userdata);

/* Hex helpers for nonces. out must hold 2*len+1. */
void agent_hex(const uint8_t *in, size_t len, char *out);
int agent_unhex(const char *in, uint8_t *out, size_t len);

/* Strict json helpers: return -EINVAL on wrong type / out of range. */
int agent_json_get_u64(struct json_object *o, const char *key, uint64_t *ret);
int agent_json_get_i64(struct json_object *o, const char *key, int64_t *ret);
const char *agent_json_get_str(struct json_object *o, const char *key);
bool agent_json_get_bool(struct json_object *o, const char *key);

#endif
