/* Daemon logging: one line per event on stderr (journald adds the time
 * when run as a service; we add it for terminals and test logs). */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>

#include "bulkhead/common.h"

void log_setup(const char *prog, bool verbose);
/* Every message goes to syslog too (LOG_DAEMON), as prog: for a process
 * whose stderr nobody reads (an OCI hook's, which the runtime drops). */
void log_to_syslog(void);
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define LOG_LEVEL_ERROR 0
#define LOG_LEVEL_WARN	1
#define LOG_LEVEL_INFO	2
#define LOG_LEVEL_DEBUG 3

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)

/* Logs an error with errno set from r (< 0), so %m names it; returns r. */
int log_error_errno(int r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The daemons abort on out-of-memory through these. */
void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);
char *xstrdup(const char *s);
