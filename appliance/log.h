/* SPDX-License-Identifier: MIT */
/*
 * log: the daemon's one log sink (stderr, one line per message, with a UTC
 * timestamp and level). The log level is the only mutable global besides
 * the read-only configuration; it is set once at start-up.
 *
 * fl_log_errno() returns its r argument so that the place where a decision
 * is made can log and return in one statement:
 *     return fl_log_errno(r, "cannot open %s", path);
 */
#ifndef FL_LOG_H
#define FL_LOG_H

typedef enum FlLogLevel {
	FL_LOG_ERROR = 0,
	FL_LOG_WARN = 1,
	FL_LOG_INFO = 2,
	FL_LOG_DEBUG = 3,
} FlLogLevel;

void fl_log_set_level(FlLogLevel level);
FlLogLevel fl_log_get_level(void);
/* Parses "error", "warn", "info", "debug". Returns 0 or -EINVAL. */
int fl_log_level_from_string(const char *s, FlLogLevel *ret);
const char *fl_log_level_to_string(FlLogLevel level);

__attribute__((format(printf, 2, 3))) void fl_log(FlLogLevel level, const char *fmt, ...);
/* Logs "msg: strerror(-r)" at error level and returns r. */
__attribute__((format(printf, 2, 3))) int fl_log_errno(int r, const char *fmt, ...);

#define fl_log_error(...) fl_log(FL_LOG_ERROR, __VA_ARGS__)
#define fl_log_warn(...) fl_log(FL_LOG_WARN, __VA_ARGS__)
#define fl_log_info(...) fl_log(FL_LOG_INFO, __VA_ARGS__)
#define fl_log_debug(...) fl_log(FL_LOG_DEBUG, __VA_ARGS__)

#endif
