/* Logging at a bounded rate (see ratelimit.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "bulkhead/log.h"
#include "bulkhead/ratelimit.h"

bool ratelimit_pass(struct ratelimit *r, int64_t now_ms, uint64_t *missed)
{
	if (!r->begin_ms || now_ms - r->begin_ms >= r->interval_ms || now_ms < r->begin_ms) {
		r->begin_ms = now_ms ? now_ms : 1;
		r->said = 0;
	}
	if (r->said >= r->burst) {
		r->missed++;
		return false;
	}
	r->said++;
	*missed = r->missed;
	r->missed = 0;
	return true;
}

void ratelimit_log(struct ratelimit *r, int level, const char *fmt, ...)
{
	uint64_t missed;
	if (!ratelimit_pass(r, clock_mono_ms(), &missed))
		return;
	char *line = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&line, fmt, ap);
	va_end(ap);
	if (n < 0)
		abort();
	if (missed)
		log_msg(level, "%s; %llu similar line(s) not logged before this one", line,
			(unsigned long long)missed);
	else
		log_msg(level, "%s", line);
	free(line);
}
