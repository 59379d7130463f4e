/* SPDX-License-Identifier: MIT */
/*
 * FlError: an optional human-readable message that travels with a -errno
 * return value. Callers may pass NULL when they only need the errno.
 * Callers wrap a message with context through fl_error_prefix().
 */
#ifndef FL_ERROR_H
#define FL_ERROR_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct FlError {
	int code;       /* negative errno, 0 when unset */
	char msg[512];
} FlError;

/* Sets err (if non-NULL) and returns r (a negative errno) for tail calls. */
__attribute__((format(printf, 3, 4))) static inline int
fl_error_set(FlError *err, int r, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
		err->code = r;
	}
	return r;
}

/* Prepends "context: " to an existing message. Returns err->code. */
__attribute__((format(printf, 2, 3))) static inline int
fl_error_prefix(FlError *err, const char *fmt, ...)
{
	if (!err)
		return 0;
	char prefix[256], old[sizeof(err->msg)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	snprintf(err->msg, sizeof(err->msg), "%s: %s", prefix, old);
	return err->code;
}

#endif
