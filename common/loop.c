// SPDX-License-Identifier: MIT
/*
 * FlLoop implementation: epoll for fds, a sorted list of timers (few and
 * short-lived: per-operation deadlines and TTLs), an eventfd plus a mutex-
 * protected queue for cross-thread posts.
 *
 * DESIGN: watches and timers are freed lazily: unwatch/cancel mark them dead
 * and the loop frees them after the current dispatch round, so callbacks may
 * remove any watch or timer, including their own.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "loop.h"

struct FlWatch {
	int fd;
	bool dead;
	fl_watch_fn fn;
	void *userdata;
	FlWatch *next_dead;
};

struct FlTimer {
	uint64_t at;
	bool dead;
	fl_timer_fn fn;
	void *userdata;
	FlTimer *next;
};

typedef struct Post {
	fl_post_fn fn;
	void *userdata;
	struct Post *next;
} Post;

struct FlLoop {
	int epfd, evfd;
	pthread_t thread;
	bool running, quit;
	FlTimer *timers; /* sorted by at */
	FlWatch *dead_watches;
	pthread_mutex_t lock; /* guards posts, quit */
	Post *posts, **posts_tail;
};

uint64_t fl_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int fl_loop_new(FlLoop **ret)
{
	FlLoop *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	l->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->epfd < 0 || l->evfd < 0) {
		int r = -errno;
		if (l->epfd >= 0)
			close(l->epfd);
		if (l->evfd >= 0)
			close(l->evfd);
		free(l);
		return r;
	}
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &ev) < 0) {
		int r = -errno;
		close(l->epfd);
		close(l->evfd);
		free(l);
		return r;
	}
	pthread_mutex_init(&l->lock, NULL);
	l->posts_tail = &l->posts;
	*ret = l;
	return 0;
}

static void free_dead(FlLoop *l)
{
	while (l->dead_watches) {
		FlWatch *w = l->dead_watches;
		l->dead_watches = w->next_dead;
		free(w);
	}
	FlTimer **p = &l->timers;
	while (*p) {
		if ((*p)->dead) {
			FlTimer *t = *p;
			*p = t->next;
			free(t);
		} else {
			p = &(*p)->next;
		}
	}
}

void fl_loop_free(FlLoop *l)
{
	if (!l)
		return;
	for (FlTimer *t = l->timers; t; t = t->next)
		t->dead = true;
	free_dead(l);
	while (l->posts) {
		Post *p = l->posts;
		l->posts = p->next;
		free(p);
	}
	close(l->epfd);
	close(l->evfd);
	pthread_mutex_destroy(&l->lock);
	free(l);
}

int fl_loop_watch(FlLoop *l, int fd, uint32_t events, fl_watch_fn fn, void *userdata,
		  FlWatch **ret)
{
	FlWatch *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->fd = fd;
	w->fn = fn;
	w->userdata = userdata;
	struct epoll_event ev = {.events = events, .data.ptr = w};
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int r = -errno;
		free(w);
		return r;
	}
	if (ret)
		*ret = w;
	return 0;
}

int fl_loop_watch_set(FlLoop *l, FlWatch *w, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = w};
	return epoll_ctl(l->epfd, EPOLL_CTL_MOD, w->fd, &ev) < 0 ? -errno : 0;
}

void fl_loop_unwatch(FlLoop *l, FlWatch *w)
{
	if (!w || w->dead)
		return;
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, w->fd, NULL);
	w->dead = true;
	w->next_dead = l->dead_watches;
	l->dead_watches = w;
}

int fl_loop_timer(FlLoop *l, uint64_t at_ms, fl_timer_fn fn, void *userdata, FlTimer **ret)
{
	FlTimer *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->at = at_ms;
	t->fn = fn;
	t->userdata = userdata;
	FlTimer **p = &l->timers;
	while (*p && (*p)->at <= at_ms)
		p = &(*p)->next;
	t->next = *p;
	*p = t;
	if (ret)
		*ret = t;
	return 0;
}

void fl_loop_timer_cancel(FlLoop *l, FlTimer *t)
{
	(void)l;
	if (t)
		t->dead = true;
}

int fl_loop_post(FlLoop *l, fl_post_fn fn, void *userdata)
{
	Post *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->fn = fn;
	p->userdata = userdata;
	pthread_mutex_lock(&l->lock);
	if (l->quit) {
		pthread_mutex_unlock(&l->lock);
		free(p);
		return -ESHUTDOWN;
	}
	*l->posts_tail = p;
	l->posts_tail = &p->next;
	pthread_mutex_unlock(&l->lock);
	uint64_t one = 1;
	if (write(l->evfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		return -errno;
	return 0;
}

void fl_loop_quit(FlLoop *l)
{
	pthread_mutex_lock(&l->lock);
	l->quit = true;
	pthread_mutex_unlock(&l->lock);
	uint64_t one = 1;
	(void)!write(l->evfd, &one, sizeof(one));
}

int fl_loop_on_thread(const FlLoop *l)
{
	return l->running && pthread_equal(l->thread, pthread_self());
}

static void run_posts(FlLoop *l)
{
	uint64_t v;
	(void)!read(l->evfd, &v, sizeof(v));
	pthread_mutex_lock(&l->lock);
	Post *list = l->posts;
	l->posts = NULL;
	l->posts_tail = &l->posts;
	pthread_mutex_unlock(&l->lock);
	while (list) {
		Post *p = list;
		list = p->next;
		p->fn(l, p->userdata);
		free(p);
	}
}

int fl_loop_run(FlLoop *l)
{
	l->thread = pthread_self();
	l->running = true;
	for (;;) {
		pthread_mutex_lock(&l->lock);
		bool quit = l->quit;
		pthread_mutex_unlock(&l->lock);
		if (quit)
			break;
		int timeout = -1;
		for (FlTimer *t = l->timers; t; t = t->next) {
			if (t->dead)
				continue;
			uint64_t now = fl_now_ms();
			timeout = t->at <= now ? 0 : (int)(t->at - now);
			break;
		}
		struct epoll_event evs[32];
		int n = epoll_wait(l->epfd, evs, 32, timeout);
		if (n < 0 && errno != EINTR) {
			l->running = false;
			return -errno;
		}
		for (int i = 0; i < n; i++) {
			FlWatch *w = evs[i].data.ptr;
			if (!w)
				run_posts(l);
			else if (!w->dead)
				w->fn(l, w->fd, evs[i].events, w->userdata);
		}
		uint64_t now = fl_now_ms();
		for (FlTimer *t = l->timers; t && t->at <= now; t = t->next) {
			if (t->dead)
				continue;
			t->dead = true;
			t->fn(l, t->userdata);
		}
		free_dead(l);
	}
	/* Posts queued before quit still run (on this thread) so that their
	 * waiters are released. */
	run_posts(l);
	l->running = false;
	return 0;
}
