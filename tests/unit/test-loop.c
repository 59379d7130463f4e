// SPDX-License-Identifier: MIT
/*
 * Unit tests of common/loop.c: fd watches, timers in order, cancelling
 * from inside callbacks, cross-thread posts, and posts queued before quit
 * still running (so their waiters are released).
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "loop.h"

typedef struct Ctx {
	FlLoop *l;
	int order[16];
	int n;
	FlTimer *victim;
	FlWatch *watch;
	int reads;
} Ctx;

static void record(FlLoop *l, void *ud)
{
	Ctx *c = ud;
	c->order[c->n] = c->n + 1;
	c->n++;
}

static void t1(FlLoop *l, void *ud)
{
	Ctx *c = ud;
	c->order[c->n++] = 1;
	fl_loop_timer_cancel(l, c->victim); /* cancel a later timer from a callback */
}

static void t2(FlLoop *l, void *ud)
{
	Ctx *c = ud;
	c->order[c->n++] = 2;
}

static void t3(FlLoop *l, void *ud)
{
	Ctx *c = ud;
	c->order[c->n++] = 3;
	fl_loop_quit(l);
}

static void test_timers_in_order(void **state)
{
	Ctx c = {0};
	assert_int_equal(fl_loop_new(&c.l), 0);
	uint64_t now = fl_now_ms();
	FlTimer *victim;
	assert_int_equal(fl_loop_timer(c.l, now + 30, t3, &c, NULL), 0);
	assert_int_equal(fl_loop_timer(c.l, now + 20, t2, &c, &victim), 0);
	assert_int_equal(fl_loop_timer(c.l, now + 5, t1, &c, NULL), 0);
	c.victim = victim;
	assert_int_equal(fl_loop_run(c.l), 0);
	assert_int_equal(c.n, 2);
	assert_int_equal(c.order[0], 1);
	assert_int_equal(c.order[1], 3); /* t2 was cancelled */
	assert_true(fl_now_ms() >= now + 30);
	fl_loop_free(c.l);
}

static void on_readable(FlLoop *l, int fd, uint32_t ev, void *ud)
{
	Ctx *c = ud;
	char buf[16];
	assert_true(ev & EPOLLIN);
	assert_true(read(fd, buf, sizeof(buf)) > 0);
	if (++c->reads == 2) {
		fl_loop_unwatch(l, c->watch); /* removing itself is allowed */
		fl_loop_quit(l);
	}
}

static void *writer(void *arg)
{
	int fd = *(int *)arg;
	for (int i = 0; i < 2; i++) {
		usleep(10000);
		assert_int_equal(write(fd, "x", 1), 1);
	}
	return NULL;
}

static void test_watch_and_unwatch_in_callback(void **state)
{
	Ctx c = {0};
	int p[2];
	assert_int_equal(pipe(p), 0);
	assert_int_equal(fl_loop_new(&c.l), 0);
	assert_int_equal(fl_loop_watch(c.l, p[0], EPOLLIN, on_readable, &c, &c.watch), 0);
	pthread_t t;
	pthread_create(&t, NULL, writer, &p[1]);
	assert_int_equal(fl_loop_run(c.l), 0);
	pthread_join(t, NULL);
	assert_int_equal(c.reads, 2);
	fl_loop_free(c.l);
	close(p[0]);
	close(p[1]);
}

typedef struct Post {
	FlLoop *l;
	int runs;
	pthread_t runner;
	int on_loop;
} Post;

static void posted(FlLoop *l, void *ud)
{
	Post *p = ud;
	p->runs++;
	p->on_loop += fl_loop_on_thread(l);
}

static void *run_loop(void *arg)
{
	fl_loop_run(arg);
	return NULL;
}

static void test_posts_from_threads(void **state)
{
	Post p = {0};
	assert_int_equal(fl_loop_new(&p.l), 0);
	pthread_t t;
	pthread_create(&t, NULL, run_loop, p.l);
	for (int i = 0; i < 100; i++)
		assert_int_equal(fl_loop_post(p.l, posted, &p), 0);
	/* queued before quit: still run */
	fl_loop_quit(p.l);
	pthread_join(t, NULL);
	assert_int_equal(p.runs, 100);
	assert_int_equal(p.on_loop, 100);
	/* after quit, posts are refused */
	assert_int_equal(fl_loop_post(p.l, posted, &p), -ESHUTDOWN);
	fl_loop_free(p.l);
}

static void test_free_with_pending(void **state)
{
	Ctx c = {0};
	assert_int_equal(fl_loop_new(&c.l), 0);
	assert_int_equal(fl_loop_timer(c.l, fl_now_ms() + 100000, record, &c, NULL), 0);
	assert_int_equal(fl_loop_post(c.l, record, &c), 0);
	fl_loop_free(c.l); /* frees timers and posts without running them (ASan checks) */
	assert_int_equal(c.n, 0);
	fl_loop_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_timers_in_order),
		cmocka_unit_test(test_watch_and_unwatch_in_callback),
		cmocka_unit_test(test_posts_from_threads),
		cmocka_unit_test(test_free_with_pending),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
