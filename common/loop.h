/* SPDX-License-Identifier: MIT */
/*
 * FlLoop: a tiny single-threaded event loop (epoll), in the spirit of redis'
 * ae and libuv. One thread runs fl_loop_run(); every callback runs on it.
 * Other threads hand work to it only through fl_loop_post() (an eventfd
 * wakes the loop) and wait for results themselves.
 */
#ifndef FL_LOOP_H
#define FL_LOOP_H

#include <stdint.h>

typedef struct FlLoop FlLoop;
typedef struct FlWatch FlWatch;
typedef struct FlTimer FlTimer;

/* revents: EPOLLIN/EPOLLOUT/EPOLLERR/EPOLLHUP bits. */
typedef void (*fl_watch_fn)(FlLoop *l, int fd, uint32_t revents, void *userdata);
typedef void (*fl_timer_fn)(FlLoop *l, void *userdata);
typedef void (*fl_post_fn)(FlLoop *l, void *userdata);

int fl_loop_new(FlLoop **ret);
void fl_loop_free(FlLoop *l); /* accepts NULL; frees remaining watches/timers/posts */

/* Runs until fl_loop_quit() is called (from any thread). */
int fl_loop_run(FlLoop *l);
void fl_loop_quit(FlLoop *l);

/* Watches fd for events (EPOLLIN|EPOLLOUT). Does not own fd. */
int fl_loop_watch(FlLoop *l, int fd, uint32_t events, fl_watch_fn fn, void *userdata,
		  FlWatch **ret);
int fl_loop_watch_set(FlLoop *l, FlWatch *w, uint32_t events);
void fl_loop_unwatch(FlLoop *l, FlWatch *w); /* accepts NULL; safe inside callbacks */

/* One-shot timer at an absolute CLOCK_MONOTONIC time in ms. */
int fl_loop_timer(FlLoop *l, uint64_t at_ms, fl_timer_fn fn, void *userdata, FlTimer **ret);
void fl_loop_timer_cancel(FlLoop *l, FlTimer *t); /* accepts NULL; safe inside callbacks */

/* Thread-safe: runs fn(userdata) on the loop thread soon. -ESHUTDOWN after quit. */
int fl_loop_post(FlLoop *l, fl_post_fn fn, void *userdata);

/* True when called on the loop's thread. */
int fl_loop_on_thread(const FlLoop *l);

uint64_t fl_now_ms(void);

#endif
