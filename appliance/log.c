// SPDX-License-Identifier: MIT
/*
 * log: timestamped, levelled lines on stderr for the daemon.
 *
 * DESIGN: any thread may log (civetweb workers, the engine loop, the main
 * thread). Each message is formatted into a local buffer and written with a
 * single write(2), so lines from different threads never interleave. The
 * level is an atomic int so readers need no lock.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static _Atomic int log_level = FL_LOG_INFO;

static const char *const level_names[] = {
	[FL_LOG_ERROR] = "error",
	[FL_LOG_WARN] = "warn",
	[FL_LOG_INFO] = "info",
	[FL_LOG_DEBUG] = "debug",
};

void fl_log_set_level(FlLogLevel level) { atomic_store(&log_level, (int)level); }
FlLogLevel fl_log_get_level(void) { return (FlLogLevel)atomic_load(&log_level); }

const char *fl_log_level_to_string(FlLogLevel level)
{
	if ((unsigned)level >= sizeof(level_names) / sizeof(level_names[0]))
		return "unknown";
	return level_names[level];
}

int fl_log_level_from_string(const char *s, FlLogLevel *ret)
{
	for (unsigned i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (!strcmp(s, level_names[i])) {
			*ret = (FlLogLevel)i;
			return 0;
		}
	}
	if (!strcmp(s, "warning")) {
		*ret = FL_LOG_WARN;
		return 0;
	}
	return -EINVAL;
}

static void log_va(FlLogLevel level, int r, const char *fmt, va_list ap)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	size_t n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	n += snprintf(line + n, sizeof(line) - n, ".%03ldZ %-5s ", ts.tv_nsec / 1000000,
		      fl_log_level_to_string(level));
	if (n < sizeof(line)) {
		int m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
		if (m > 0)
			n += (size_t)m;
	}
	if (r < 0 && n < sizeof(line))
		n += snprintf(line + n, sizeof(line) - n, ": %s", strerror(-r));
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	/* One write so concurrent lines do not interleave; nothing to do on failure. */
	ssize_t w = write(STDERR_FILENO, line, n);
	(void)w;
}

void fl_log(FlLogLevel level, const char *fmt, ...)
{
	if ((int)level > atomic_load(&log_level))
		return;
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	log_va(level, 0, fmt, ap);
	va_end(ap);
	errno = saved;
}

int fl_log_errno(int r, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	log_va(FL_LOG_ERROR, r, fmt, ap);
	va_end(ap);
	errno = saved;
	return r;
}
