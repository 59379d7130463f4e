// SPDX-License-Identifier: MIT
/*
 * Unit tests of the event bus (appliance/events.c): publish order, the
 * per-sandbox filter, bounded queues that drop for a slow subscriber
 * without ever blocking the publisher, concurrent publishers, the eventfd
 * readiness a WebSocket pump polls, and close waking a blocked consumer.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "events.h"

static struct json_object *parse(const char *s)
{
	struct json_object *o = json_tokener_parse(s);
	assert_non_null(o);
	return o;
}

static int64_t get_i(struct json_object *o, const char *path1, const char *path2)
{
	struct json_object *v = NULL;
	assert_true(json_object_object_get_ex(o, path1, &v));
	if (path2)
		assert_true(json_object_object_get_ex(v, path2, &v));
	return json_object_get_int64(v);
}

static void test_order_and_shape(void **state)
{
	FlEventSub *s;
	assert_int_equal(fl_events_subscribe(&(FlEventSubOpts){.sandbox_id = "sb1"}, &s), 0);
	int64_t last = 0;
	for (int i = 0; i < 50; i++) {
		struct json_object *d = json_object_new_object();
		json_object_object_add(d, "i", json_object_new_int(i));
		int64_t seq = fl_events_publish("sb1", "command.output", d);
		json_object_put(d);
		assert_true(seq > last);
		last = seq;
	}
	int64_t prev = 0;
	for (int i = 0; i < 50; i++) {
		char *t = NULL;
		size_t len = 0;
		assert_int_equal(fl_events_next(s, 0, &t, &len, NULL), 1);
		assert_int_equal(strlen(t), len);
		struct json_object *o = parse(t);
		assert_int_equal(get_i(o, "data", "i"), i);
		assert_true(get_i(o, "seq", NULL) > prev);
		prev = get_i(o, "seq", NULL);
		struct json_object *v;
		assert_true(json_object_object_get_ex(o, "sandbox_id", &v));
		assert_string_equal(json_object_get_string(v), "sb1");
		assert_true(json_object_object_get_ex(o, "type", &v));
		assert_string_equal(json_object_get_string(v), "command.output");
		assert_true(json_object_object_get_ex(o, "at", &v));
		assert_int_equal(strlen(json_object_get_string(v)), 24); /* ....T..:..:..mmmZ */
		json_object_put(o);
		free(t);
	}
	char *t = NULL;
	assert_int_equal(fl_events_next(s, 0, &t, NULL, NULL), 0);
	fl_events_unsubscribe(s);
}

static void test_filter_and_null_data(void **state)
{
	FlEventSub *a, *all;
	assert_int_equal(fl_events_subscribe(&(FlEventSubOpts){.sandbox_id = "A"}, &a), 0);
	assert_int_equal(fl_events_subscribe(NULL, &all), 0);
	assert_true(fl_events_publish("B", "state", NULL) > 0);
	assert_true(fl_events_publish("A", "state", NULL) > 0);
	char *t;
	assert_int_equal(fl_events_next(a, 0, &t, NULL, NULL), 1);
	struct json_object *o = parse(t), *v;
	assert_true(json_object_object_get_ex(o, "data", &v));
	assert_null(v);
	json_object_put(o);
	free(t);
	assert_int_equal(fl_events_next(a, 0, &t, NULL, NULL), 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(fl_events_next(all, 0, &t, NULL, NULL), 1);
		free(t);
	}
	fl_events_unsubscribe(a);
	fl_events_unsubscribe(all);
}

static void test_invalid(void **state)
{
	assert_int_equal(fl_events_publish(NULL, "state", NULL), -EINVAL);
	assert_int_equal(fl_events_publish("", "state", NULL), -EINVAL);
	assert_int_equal(fl_events_publish("a\"b", "state", NULL), -EINVAL);
	assert_int_equal(fl_events_publish("ok", "Bad Type", NULL), -EINVAL);
	char longid[80];
	memset(longid, 'x', sizeof(longid) - 1);
	longid[sizeof(longid) - 1] = 0;
	assert_int_equal(fl_events_publish(longid, "state", NULL), -EINVAL);
	FlEventSub *s;
	assert_int_equal(fl_events_subscribe(&(FlEventSubOpts){.sandbox_id = "../x"}, &s), -EINVAL);
}

/* A subscriber that never reads: the publisher keeps going, the queue stays
 * at its bound, the consumer is told how many it lost, then sees newer ones. */
static void test_slow_subscriber_bounded(void **state)
{
	FlEventSub *slow, *fast;
	assert_int_equal(fl_events_subscribe(&(FlEventSubOpts){.sandbox_id = "sb", .max_events = 8}, &slow), 0);
	assert_int_equal(fl_events_subscribe(&(FlEventSubOpts){.sandbox_id = "sb"}, &fast), 0);
	FlEventsStats st0, st1;
	fl_events_stats(&st0);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < 100; i++) {
		char buf[32];
		int n = snprintf(buf, sizeof(buf), "{\"i\":%d}", i);
		assert_true(fl_events_publish_raw("sb", "x", buf, (size_t)n) > 0);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_true(t1.tv_sec - t0.tv_sec < 2); /* never blocked */
	fl_events_stats(&st1);
	assert_int_equal(st1.dropped - st0.dropped, 92);

	char *t;
	for (int i = 0; i < 8; i++) {
		assert_int_equal(fl_events_next(slow, 0, &t, NULL, NULL), 1);
		struct json_object *o = parse(t);
		assert_int_equal(get_i(o, "data", "i"), i);
		json_object_put(o);
		free(t);
	}
	uint64_t dropped = 0;
	assert_int_equal(fl_events_next(slow, 0, &t, NULL, &dropped), -ENOBUFS);
	assert_int_equal(dropped, 92);
	assert_int_equal(fl_events_next(slow, 0, &t, NULL, NULL), 0);
	/* fast got everything */
	for (int i = 0; i < 100; i++) {
		assert_int_equal(fl_events_next(fast, 0, &t, NULL, NULL), 1);
		free(t);
	}
	/* delivery resumes after a loss */
	assert_true(fl_events_publish_raw("sb", "x", "{\"i\":100}", 9) > 0);
	assert_int_equal(fl_events_next(slow, 0, &t, NULL, NULL), 1);
	free(t);
	fl_events_unsubscribe(slow);
	fl_events_unsubscribe(fast);
}

static void test_byte_bound(void **state)
{
	FlEventSub *s;
	assert_int_equal(fl_events_subscribe(&(FlEventSubOpts){.sandbox_id = "sb", .max_bytes = 4096}, &s), 0);
	char big[1024];
	memset(big, 'a', sizeof(big));
	big[0] = '"';
	big[sizeof(big) - 1] = '"';
	int ok = 0;
	for (int i = 0; i < 20; i++)
		assert_true(fl_events_publish_raw("sb", "x", big, sizeof(big)) > 0);
	char *t;
	int r;
	while ((r = fl_events_next(s, 0, &t, NULL, NULL)) == 1) {
		ok++;
		free(t);
	}
	assert_int_equal(r, -ENOBUFS);
	assert_true(ok >= 2 && ok <= 4);
	fl_events_unsubscribe(s);
}

static void test_oversized_event_truncated(void **state)
{
	FlEventSub *s;
	assert_int_equal(fl_events_subscribe(&(FlEventSubOpts){.sandbox_id = "sb", .max_bytes = 1u << 23}, &s), 0);
	size_t n = FL_EVENTS_MAX_EVENT_BYTES + 10;
	char *big = malloc(n);
	memset(big, 'a', n);
	big[0] = big[n - 1] = '"';
	assert_true(fl_events_publish_raw("sb", "x", big, n) > 0);
	free(big);
	char *t;
	assert_int_equal(fl_events_next(s, 0, &t, NULL, NULL), 1);
	struct json_object *o = parse(t);
	assert_int_equal(get_i(o, "data", "bytes"), (int64_t)n);
	json_object_put(o);
	free(t);
	fl_events_unsubscribe(s);
}

static void test_eventfd_readiness(void **state)
{
	FlEventSub *s;
	assert_int_equal(fl_events_subscribe(&(FlEventSubOpts){.sandbox_id = "sb"}, &s), 0);
	struct pollfd p = {.fd = fl_events_fd(s), .events = POLLIN};
	assert_int_equal(poll(&p, 1, 0), 0);
	fl_events_publish("sb", "a", NULL);
	fl_events_publish("sb", "b", NULL);
	assert_int_equal(poll(&p, 1, 0), 1);
	char *t;
	assert_int_equal(fl_events_next(s, 0, &t, NULL, NULL), 1);
	free(t);
	assert_int_equal(poll(&p, 1, 0), 1); /* one still queued */
	assert_int_equal(fl_events_next(s, 0, &t, NULL, NULL), 1);
	free(t);
	assert_int_equal(poll(&p, 1, 0), 0);
	fl_events_unsubscribe(s);
}

typedef struct {
	int id, n;
} PubArg;

static void *publisher(void *p)
{
	PubArg *a = p;
	for (int i = 0; i < a->n; i++) {
		char buf[64];
		int k = snprintf(buf, sizeof(buf), "{\"t\":%d,\"i\":%d}", a->id, i);
		if (fl_events_publish_raw("conc", "x", buf, (size_t)k) <= 0)
			abort();
	}
	return NULL;
}

typedef struct {
	FlEventSub *s;
	int total, got;
	int last[4];
	int bad;
} ConsArg;

static void *consumer(void *p)
{
	ConsArg *c = p;
	int64_t prev = 0;
	for (int i = 0; i < 4; i++)
		c->last[i] = -1;
	while (c->got < c->total) {
		char *t;
		int r = fl_events_next(c->s, 5000, &t, NULL, NULL);
		if (r != 1) {
			c->bad++;
			break;
		}
		struct json_object *o = json_tokener_parse(t), *d, *v;
		json_object_object_get_ex(o, "seq", &v);
		int64_t seq = json_object_get_int64(v);
		json_object_object_get_ex(o, "data", &d);
		json_object_object_get_ex(d, "t", &v);
		int th = json_object_get_int(v);
		json_object_object_get_ex(d, "i", &v);
		int i = json_object_get_int(v);
		if (seq <= prev || th < 0 || th > 3 || i != c->last[th] + 1)
			c->bad++;
		prev = seq;
		c->last[th] = i;
		c->got++;
		json_object_put(o);
		free(t);
	}
	return NULL;
}

/* Four publishers race; a blocking consumer sees each publisher's events in
 * its order, seq strictly increasing, nothing lost (the queue is big enough). */
static void test_concurrent_publishers(void **state)
{
	enum { N = 2000 };
	ConsArg c = {.total = 4 * N};
	assert_int_equal(fl_events_subscribe(&(FlEventSubOpts){.sandbox_id = "conc", .max_events = 4 * N}, &c.s), 0);
	pthread_t ct, pt[4];
	PubArg pa[4];
	assert_int_equal(pthread_create(&ct, NULL, consumer, &c), 0);
	for (int i = 0; i < 4; i++) {
		pa[i] = (PubArg){.id = i, .n = N};
		assert_int_equal(pthread_create(&pt[i], NULL, publisher, &pa[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(pt[i], NULL);
	pthread_join(ct, NULL);
	assert_int_equal(c.bad, 0);
	assert_int_equal(c.got, 4 * N);
	fl_events_unsubscribe(c.s);
}

static void *closer(void *p)
{
	struct timespec ts = {0, 50 * 1000 * 1000};
	nanosleep(&ts, NULL);
	fl_events_close(p);
	return NULL;
}

static void test_close_wakes(void **state)
{
	FlEventSub *s;
	assert_int_equal(fl_events_subscribe(&(FlEventSubOpts){.sandbox_id = "sb"}, &s), 0);
	pthread_t t;
	pthread_create(&t, NULL, closer, s);
	char *txt;
	assert_int_equal(fl_events_next(s, -1, &txt, NULL, NULL), -ESHUTDOWN);
	pthread_join(t, NULL);
	fl_events_unsubscribe(s);
}

static void test_timeout_and_engine_hook(void **state)
{
	FlEventSub *s;
	assert_int_equal(fl_events_subscribe(&(FlEventSubOpts){.sandbox_id = "sbx"}, &s), 0);
	char *t;
	assert_int_equal(fl_events_next(s, 30, &t, NULL, NULL), 0);
	struct json_object *rec = json_object_new_object();
	json_object_object_add(rec, "state", json_object_new_string("RUNNING"));
	fl_events_engine_hook("sbx", "started", rec, NULL);
	json_object_put(rec);
	assert_int_equal(fl_events_next(s, 1000, &t, NULL, NULL), 1);
	struct json_object *o = parse(t), *d, *v;
	assert_true(json_object_object_get_ex(o, "type", &v));
	assert_string_equal(json_object_get_string(v), "state");
	assert_true(json_object_object_get_ex(o, "data", &d));
	assert_true(json_object_object_get_ex(d, "event", &v));
	assert_string_equal(json_object_get_string(v), "started");
	assert_true(json_object_object_get_ex(d, "state", &v));
	assert_string_equal(json_object_get_string(v), "RUNNING");
	json_object_put(o);
	free(t);
	fl_events_unsubscribe(s);
}

static void test_subscriber_limit(void **state)
{
	static FlEventSub *subs[FL_EVENTS_MAX_SUBSCRIBERS + 1];
	FlEventsStats st;
	fl_events_stats(&st);
	unsigned have = st.subscribers, n = 0;
	int r = 0;
	while (n < FL_EVENTS_MAX_SUBSCRIBERS + 1 &&
	       (r = fl_events_subscribe(&(FlEventSubOpts){.max_events = 1}, &subs[n])) == 0)
		n++;
	assert_int_equal(r, -EUSERS);
	assert_int_equal(n + have, FL_EVENTS_MAX_SUBSCRIBERS);
	while (n)
		fl_events_unsubscribe(subs[--n]);
	fl_events_stats(&st);
	assert_int_equal(st.subscribers, have);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_order_and_shape),
		cmocka_unit_test(test_filter_and_null_data),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_slow_subscriber_bounded),
		cmocka_unit_test(test_byte_bound),
		cmocka_unit_test(test_oversized_event_truncated),
		cmocka_unit_test(test_eventfd_readiness),
		cmocka_unit_test(test_concurrent_publishers),
		cmocka_unit_test(test_close_wakes),
		cmocka_unit_test(test_timeout_and_engine_hook),
		cmocka_unit_test(test_subscriber_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
