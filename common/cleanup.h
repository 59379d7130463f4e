/* SPDX-License-Identifier: MIT */
/*
 * Scope-based cleanup helpers shared by every part of fluid (libraries,
 * daemon, agent, tests). Modelled on systemd's _cleanup_ and TAKE_PTR.
 */
#ifndef FL_CLEANUP_H
#define FL_CLEANUP_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static inline void fl_freep(void *p) { free(*(void **)p); }
static inline void fl_closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}
static inline void fl_fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(fl_freep)
#define _cleanup_close_ _cleanup_(fl_closep)
#define _cleanup_fclose_ _cleanup_(fl_fclosep)

/* Declares a cleanup function "name##p" calling func(*p) when *p is non-NULL. */
#define FL_DEFINE_CLEANUP(type, func)                                          \
	static inline void func##p(type *p)                                    \
	{                                                                      \
		if (*p)                                                        \
			func(*p);                                              \
	}

#define TAKE_PTR(p)                                                            \
	({                                                                     \
		__typeof__(p) _tp = (p);                                       \
		(p) = NULL;                                                    \
		_tp;                                                           \
	})
#define TAKE_FD(fd)                                                            \
	({                                                                     \
		int _tf = (fd);                                                \
		(fd) = -1;                                                     \
		_tf;                                                           \
	})

#define FL_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
