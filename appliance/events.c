// SPDX-License-Identifier: MIT
/*
 * events: the in-process publish/subscribe bus for per-sandbox live events
 * (see events.h for the API and the event JSON).
 *
 * DESIGN: one process-wide bus (the only mutable global here besides the
 * config: publishers are scattered across handler threads, the engine loop
 * and workers, and must not need a handle threaded through every call).
 * A single mutex guards the subscriber list, every subscriber's queue and
 * the sequence counter; it is held only for O(subscribers) pointer work,
 * never for serialisation or I/O. An event is serialised once, outside the
 * lock, into a refcounted immutable buffer with room reserved in front for
 * its "seq" prefix; under the lock it gets its seq and is appended to the
 * ring of every matching subscriber, so seq order equals queue order for
 * everyone. A full ring drops the event for that subscriber only and
 * counts it; the consumer learns about the gap from fl_events_next()
 * (-ENOBUFS) and from the seq numbers. Consumers wait on an eventfd that
 * is readable exactly while their ring is non-empty (or closed), so a
 * WebSocket pump can poll() it next to its socket: pushed, never polled.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "events.h"

#define SEQ_ROOM 32 /* `{"seq":` + 20 digits + `,` fits */

typedef struct Event {
	unsigned refs; /* atomic */
	size_t len;    /* bytes from start, without the NUL */
	size_t start;  /* offset of the text in buf */
	char buf[];    /* SEQ_ROOM bytes, then the rest of the object */
} Event;

struct FlEventSub {
	FlEventSub *next;
	char *sandbox_id; /* NULL = all */
	Event **ring;
	size_t cap, head, count;
	size_t bytes, max_bytes;
	uint64_t dropped; /* not yet reported */
	size_t gap_at;    /* queued events before the first unreported drop */
	bool closed;
	int efd;
};

static struct {
	pthread_mutex_t lock;
	FlEventSub *subs;
	unsigned n_subs;
	int64_t seq;
	uint64_t published, delivered, dropped;
} bus = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void event_unref(Event *ev)
{
	if (ev && __atomic_sub_fetch(&ev->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free(ev);
}

static bool valid_name(const char *s, bool lower_only)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
			  c == '_' || c == '-' || (!lower_only && c >= 'A' && c <= 'Z');
		if (!ok)
			return false;
	}
	return true;
}

static bool sub_matches(const FlEventSub *s, const char *sandbox_id)
{
	return !s->sandbox_id || !strcmp(s->sandbox_id, sandbox_id);
}

static bool anyone_listening(const char *sandbox_id)
{
	bool any = false;
	pthread_mutex_lock(&bus.lock);
	for (FlEventSub *s = bus.subs; s && !any; s = s->next)
		any = !s->closed && sub_matches(s, sandbox_id);
	pthread_mutex_unlock(&bus.lock);
	return any;
}

static void wake(int efd)
{
	uint64_t one = 1;
	ssize_t k = write(efd, &one, sizeof(one));
	(void)k; /* EAGAIN only when the counter is saturated: still readable */
}

static void drain(int efd)
{
	uint64_t v;
	ssize_t k = read(efd, &v, sizeof(v));
	(void)k;
}

/* Builds the event text after the seq prefix: the rest of the object. */
static Event *event_build(const char *sandbox_id, const char *type, const char *data, size_t dlen)
{
	struct timespec ts;
	struct tm tm;
	char at[40], head[256], trunc[96];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t k = strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(at + k, sizeof(at) - k, ".%03ldZ", ts.tv_nsec / 1000000);

	if (!data || dlen == 0) {
		data = "null";
		dlen = 4;
	} else if (dlen > FL_EVENTS_MAX_EVENT_BYTES) {
		dlen = (size_t)snprintf(trunc, sizeof(trunc), "{\"truncated\":true,\"bytes\":%zu}",
					dlen);
		data = trunc;
	}
	/* Ids and types are validated to [A-Za-z0-9._-]: no escaping needed. */
	int hl = snprintf(head, sizeof(head), "\"sandbox_id\":\"%s\",\"type\":\"%s\",\"at\":\"%s\",\"data\":",
			  sandbox_id, type, at);
	if (hl < 0 || (size_t)hl >= sizeof(head))
		return NULL;
	Event *ev = malloc(sizeof(*ev) + SEQ_ROOM + (size_t)hl + dlen + 2);
	if (!ev)
		return NULL;
	ev->refs = 1;
	char *p = ev->buf + SEQ_ROOM;
	memcpy(p, head, (size_t)hl);
	memcpy(p + hl, data, dlen);
	p[hl + dlen] = '}';
	p[hl + dlen + 1] = 0;
	ev->len = (size_t)hl + dlen + 1;
	ev->start = SEQ_ROOM;
	return ev;
}

/* Under bus.lock: writes the seq prefix in front of the reserved room. */
static void event_set_seq(Event *ev, int64_t seq)
{
	char pre[SEQ_ROOM + 1];
	int n = snprintf(pre, sizeof(pre), "{\"seq\":%" PRId64 ",", seq);
	ev->start = SEQ_ROOM - (size_t)n;
	memcpy(ev->buf + ev->start, pre, (size_t)n);
	ev->len += (size_t)n;
}

static int64_t publish_event(const char *sandbox_id, Event *ev)
{
	pthread_mutex_lock(&bus.lock);
	int64_t seq = ++bus.seq;
	event_set_seq(ev, seq);
	bus.published++;
	for (FlEventSub *s = bus.subs; s; s = s->next) {
		if (s->closed || !sub_matches(s, sandbox_id))
			continue;
		if (s->count == s->cap || s->bytes + ev->len > s->max_bytes) {
			if (s->dropped++ == 0)
				s->gap_at = s->count;
			bus.dropped++;
			if (s->count == 0)
				wake(s->efd); /* let the consumer see the gap */
			continue;
		}
		__atomic_add_fetch(&ev->refs, 1, __ATOMIC_RELAXED);
		s->ring[(s->head + s->count) % s->cap] = ev;
		if (s->count++ == 0 && !s->dropped)
			wake(s->efd);
		s->bytes += ev->len;
		bus.delivered++;
	}
	pthread_mutex_unlock(&bus.lock);
	event_unref(ev);
	return seq;
}

int64_t fl_events_publish_raw(const char *sandbox_id, const char *type, const char *data_json,
			      size_t len)
{
	if (!valid_name(sandbox_id, false) || !valid_name(type, true))
		return -EINVAL;
	if (!anyone_listening(sandbox_id)) {
		pthread_mutex_lock(&bus.lock);
		int64_t seq = ++bus.seq;
		bus.published++;
		pthread_mutex_unlock(&bus.lock);
		return seq;
	}
	Event *ev = event_build(sandbox_id, type, data_json, data_json ? len : 0);
	if (!ev)
		return -ENOMEM;
	return publish_event(sandbox_id, ev);
}

int64_t fl_events_publish(const char *sandbox_id, const char *type, struct json_object *data)
{
	if (!valid_name(sandbox_id, false) || !valid_name(type, true))
		return -EINVAL;
	if (!anyone_listening(sandbox_id))
		return fl_events_publish_raw(sandbox_id, type, NULL, 0);
	size_t len = 0;
	const char *s = NULL;
	if (data)
		s = json_object_to_json_string_length(data, JSON_C_TO_STRING_PLAIN, &len);
	if (data && !s)
		return -ENOMEM;
	return fl_events_publish_raw(sandbox_id, type, s, len);
}

void fl_events_engine_hook(const char *sandbox_id, const char *event, struct json_object *data,
			   void *userdata)
{
	if (!anyone_listening(sandbox_id ? sandbox_id : ""))
		return;
	struct json_object *o = json_object_new_object();
	if (!o)
		return;
	if (data && json_object_is_type(data, json_type_object)) {
		json_object_object_foreach(data, k, v)
			json_object_object_add(o, k, json_object_get(v));
	} else if (data) {
		json_object_object_add(o, "value", json_object_get(data));
	}
	json_object_object_add(o, "event", json_object_new_string(event ? event : ""));
	fl_events_publish(sandbox_id, "state", o);
	json_object_put(o);
}

int fl_events_subscribe(const FlEventSubOpts *opts, FlEventSub **ret)
{
	FlEventSubOpts def = {0};
	if (!opts)
		opts = &def;
	if (opts->sandbox_id && !valid_name(opts->sandbox_id, false))
		return -EINVAL;
	FlEventSub *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->efd = -1;
	s->cap = opts->max_events ? opts->max_events : FL_EVENTS_DEFAULT_QUEUE_EVENTS;
	s->max_bytes = opts->max_bytes ? opts->max_bytes : FL_EVENTS_DEFAULT_QUEUE_BYTES;
	s->ring = calloc(s->cap, sizeof(*s->ring));
	if (opts->sandbox_id)
		s->sandbox_id = strdup(opts->sandbox_id);
	s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!s->ring || (opts->sandbox_id && !s->sandbox_id) || s->efd < 0) {
		int r = s->efd < 0 ? -errno : -ENOMEM;
		fl_events_unsubscribe(s);
		return r;
	}
	pthread_mutex_lock(&bus.lock);
	if (bus.n_subs >= FL_EVENTS_MAX_SUBSCRIBERS) {
		pthread_mutex_unlock(&bus.lock);
		fl_events_unsubscribe(s);
		return -EUSERS;
	}
	s->next = bus.subs;
	bus.subs = s;
	bus.n_subs++;
	pthread_mutex_unlock(&bus.lock);
	*ret = s;
	return 0;
}

void fl_events_unsubscribe(FlEventSub *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&bus.lock);
	for (FlEventSub **pp = &bus.subs; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			bus.n_subs--;
			break;
		}
	}
	pthread_mutex_unlock(&bus.lock);
	for (size_t i = 0; s->ring && i < s->count; i++)
		event_unref(s->ring[(s->head + i) % s->cap]);
	free(s->ring);
	free(s->sandbox_id);
	if (s->efd >= 0)
		close(s->efd);
	free(s);
}

int fl_events_fd(const FlEventSub *s) { return s->efd; }

void fl_events_close(FlEventSub *s)
{
	pthread_mutex_lock(&bus.lock);
	s->closed = true;
	wake(s->efd);
	pthread_mutex_unlock(&bus.lock);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int fl_events_next(FlEventSub *s, int timeout_ms, char **ret_json, size_t *ret_len,
		   uint64_t *ret_dropped)
{
	uint64_t deadline = timeout_ms > 0 ? now_ms() + (uint64_t)timeout_ms : 0;

	for (;;) {
		Event *ev = NULL;
		pthread_mutex_lock(&bus.lock);
		if (s->closed) {
			pthread_mutex_unlock(&bus.lock);
			return -ESHUTDOWN;
		}
		if (s->dropped && s->gap_at == 0) {
			if (ret_dropped)
				*ret_dropped = s->dropped;
			s->dropped = 0;
			if (s->count == 0)
				drain(s->efd);
			pthread_mutex_unlock(&bus.lock);
			return -ENOBUFS;
		}
		if (s->count > 0) {
			ev = s->ring[s->head];
			s->ring[s->head] = NULL;
			s->head = (s->head + 1) % s->cap;
			s->count--;
			s->bytes -= ev->len;
			if (s->dropped)
				s->gap_at--;
			else if (s->count == 0)
				drain(s->efd);
		}
		pthread_mutex_unlock(&bus.lock);

		if (ev) {
			char *t = malloc(ev->len + 1);
			if (!t) {
				event_unref(ev);
				return -ENOMEM;
			}
			memcpy(t, ev->buf + ev->start, ev->len + 1);
			*ret_json = t;
			if (ret_len)
				*ret_len = ev->len;
			event_unref(ev);
			return 1;
		}
		if (timeout_ms == 0)
			return 0;
		int wait = -1;
		if (timeout_ms > 0) {
			uint64_t now = now_ms();
			if (now >= deadline)
				return 0;
			wait = (int)(deadline - now);
		}
		struct pollfd pfd = {.fd = s->efd, .events = POLLIN};
		int k = poll(&pfd, 1, wait);
		if (k < 0 && errno != EINTR)
			return -errno;
	}
}

void fl_events_stats(FlEventsStats *ret)
{
	pthread_mutex_lock(&bus.lock);
	ret->published = bus.published;
	ret->delivered = bus.delivered;
	ret->dropped = bus.dropped;
	ret->subscribers = bus.n_subs;
	pthread_mutex_unlock(&bus.lock);
}
