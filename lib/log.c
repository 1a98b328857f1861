/* Daemon logging and the one out-of-memory policy (abort). */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "bulkhead/log.h"

static const char *log_prog = "bulkhead";
static bool log_verbose, log_syslog;

void log_setup(const char *prog, bool verbose)
{
	log_prog = prog;
	log_verbose = verbose;
}

void log_to_syslog(void)
{
	openlog(log_prog, LOG_PID, LOG_DAEMON);
	log_syslog = true;
}

static void log_vmsg(int level, const char *fmt, va_list ap)
{
	static const char *const names[] = {"error", "warning", "info", "debug"};
	if (level == LOG_LEVEL_DEBUG && !log_verbose)
		return;
	int saved = errno;
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	char stamp[32];
	strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ld %s: %s: ", stamp, ts.tv_nsec / 1000000, log_prog, names[level]);
	va_list again;
	va_copy(again, ap);
	errno = saved; /* for %m */
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	if (log_syslog) {
		static const int priorities[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
		errno = saved;
		vsyslog(priorities[level], fmt, again);
	}
	va_end(again);
	errno = saved;
}

void log_msg(int level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

int log_error_errno(int r, const char *fmt, ...)
{
	va_list ap;
	errno = r < 0 ? -r : r;
	va_start(ap, fmt);
	log_vmsg(LOG_LEVEL_ERROR, fmt, ap);
	va_end(ap);
	return r;
}

static void out_of_memory(void)
{
	fprintf(stderr, "%s: out of memory\n", log_prog);
	abort();
}

void *xmalloc(size_t size)
{
	void *p = malloc(size ? size : 1);
	if (!p)
		out_of_memory();
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		out_of_memory();
	return p;
}

void *xrealloc(void *p, size_t size)
{
	void *q = realloc(p, size ? size : 1);
	if (!q)
		out_of_memory();
	return q;
}

char *xstrdup(const char *s)
{
	char *p = strdup(s);
	if (!p)
		out_of_memory();
	return p;
}
