/* SPDX-License-Identifier: MIT */
/*
 * events: fluid's in-process publish/subscribe bus for per-sandbox live
 * events (command start/output/end, state changes). The WebSocket stream
 * GET /v1/sandboxes/{id}/stream (api-stream.c) is its main subscriber.
 *
 * Publishing (any thread, never blocks on a subscriber):
 *
 *     struct json_object *d = json_object_new_object();
 *     json_object_object_add(d, "command_id", json_object_new_string(cid));
 *     fl_events_publish(sandbox_id, "command.start", d);   // d is borrowed
 *     json_object_put(d);
 *
 * Event types used so far (docs/websocket.md is the list clients see):
 *   "state"           engine state changes (engine's on_event: its event name
 *                     goes in data.event when it is not itself the type)
 *   "command.start"   {command_id, command}
 *   "command.output"  {command_id, stream: "stdout"|"stderr", data}
 *   "command.end"     {command_id, exit_code, duration_ms, ...}
 * Any other dotted lower-case name is accepted ([a-z0-9._-]{1,63}).
 *
 * Each published event becomes one immutable JSON text, serialised once:
 *     {"seq": N, "sandbox_id": "...", "type": "...", "at": "RFC3339 UTC",
 *      "data": {...} | null}
 * seq is one process-wide counter (shared by all sandboxes, so not
 * contiguous per sandbox), strictly increasing in publish order: a
 * subscriber sees its events in the order they were published. Losses are
 * reported explicitly (fl_events_next() -> -ENOBUFS), not by seq gaps.
 *
 * Subscribers: each has a bounded queue (max_events and max_bytes). When a
 * publish would overflow it, the subscriber is marked overflowed: the event
 * is dropped, fl_events_next() reports -ENOBUFS once, where the loss happened
 * (after the events queued before it), with the number
 * of dropped events, and delivery continues with later events. Publishers
 * never wait for a consumer. A subscriber with sandbox_id NULL sees every
 * sandbox (for tests and future global streams).
 *
 * Waiting is on a real event: fl_events_fd() is an eventfd that becomes
 * readable when the queue is non-empty (or the subscriber is closed), so a
 * consumer can poll() it together with its socket; fl_events_next() with a
 * timeout blocks on it.
 *
 * The bus is process-wide (one per `fluid serve`), created lazily on first
 * use; limits: FL_EVENTS_MAX_SUBSCRIBERS subscribers, payloads over
 * FL_EVENTS_MAX_EVENT_BYTES serialised are truncated to a marker event
 * ({"truncated": true, "bytes": N} as data) rather than dropped silently.
 */
#ifndef FL_EVENTS_H
#define FL_EVENTS_H

#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

#define FL_EVENTS_MAX_SUBSCRIBERS 256
#define FL_EVENTS_MAX_EVENT_BYTES (256u * 1024u)
#define FL_EVENTS_DEFAULT_QUEUE_EVENTS 1024
#define FL_EVENTS_DEFAULT_QUEUE_BYTES (4u * 1024u * 1024u)

/*
 * Publishes an event for sandbox_id (required, <= 63 bytes) of the given
 * type. data is borrowed (may be NULL); the bus serialises it before
 * returning. Returns the event's seq (> 0), or -EINVAL (bad id/type),
 * -ENOMEM. With no subscriber for the sandbox this is cheap (no
 * serialisation happens).
 */
int64_t fl_events_publish(const char *sandbox_id, const char *type, struct json_object *data);

/* Same, for callers that already have the payload as JSON text (len bytes,
 * must be a valid JSON value; NULL = null). */
int64_t fl_events_publish_raw(const char *sandbox_id, const char *type, const char *data_json,
			      size_t len);

/* Engine hook: has the FlEngineConfig.on_event signature; userdata unused.
 * Publishes type "state" with the engine's data plus {"event": event}. */
void fl_events_engine_hook(const char *sandbox_id, const char *event, struct json_object *data,
			   void *userdata);

typedef struct FlEventSub FlEventSub;

typedef struct FlEventSubOpts {
	const char *sandbox_id; /* NULL = every sandbox */
	size_t max_events;      /* 0 = FL_EVENTS_DEFAULT_QUEUE_EVENTS */
	size_t max_bytes;       /* 0 = FL_EVENTS_DEFAULT_QUEUE_BYTES */
} FlEventSubOpts;

/* Subscribes. -EUSERS when FL_EVENTS_MAX_SUBSCRIBERS exist. Caller frees
 * with fl_events_unsubscribe(). */
int fl_events_subscribe(const FlEventSubOpts *opts, FlEventSub **ret);
/* Removes and frees the subscriber and its queued events. Accepts NULL. */
void fl_events_unsubscribe(FlEventSub *s);

/* eventfd readable while events are queued (or after fl_events_close()).
 * Owned by the subscriber; do not read or close it. */
int fl_events_fd(const FlEventSub *s);

/*
 * Takes the oldest queued event. timeout_ms: 0 = don't wait, < 0 = forever.
 * Returns 1 with *ret_json (malloc'd NUL-terminated JSON text, caller frees)
 * and *ret_len; 0 when none arrived in time; -ENOBUFS once after events
 * were dropped (*ret_dropped, may be NULL, gets how many; call again for
 * the next event); -ESHUTDOWN after fl_events_close().
 */
int fl_events_next(FlEventSub *s, int timeout_ms, char **ret_json, size_t *ret_len,
		   uint64_t *ret_dropped);

/* Wakes a consumer blocked in fl_events_next() (it gets -ESHUTDOWN);
 * callable from any thread. */
void fl_events_close(FlEventSub *s);

/* Counters for GET /metrics. */
typedef struct FlEventsStats {
	uint64_t published;   /* events accepted by fl_events_publish* */
	uint64_t delivered;   /* queued into a subscriber */
	uint64_t dropped;     /* lost to full subscriber queues */
	unsigned subscribers; /* current */
} FlEventsStats;
void fl_events_stats(FlEventsStats *ret);

#endif
