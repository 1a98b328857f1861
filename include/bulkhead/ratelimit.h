/* ratelimit: what a peer can make a daemon log, at a bounded rate — a
 * burst of lines per interval, then silence, and on the next line written
 * how many were left out (as the kernel's printk_ratelimit and systemd's
 * log_ratelimit). So a flood of refused handshakes or malformed messages
 * costs a few lines, and the log still says it happened. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "bulkhead/common.h"

struct ratelimit {
	int64_t interval_ms;
	unsigned burst;	  /* lines per interval */
	int64_t begin_ms; /* the current interval's start (monotonic); 0: none yet */
	unsigned said;	  /* lines written in it */
	uint64_t missed;  /* lines left out since the last one written */
};

/* A limit of burst lines every interval_ms. */
#define RATELIMIT_INIT(interval, n) ((struct ratelimit){.interval_ms = (interval), .burst = (n)})

/* Whether a line may be written at now_ms (monotonic): true at most burst
 * times an interval. When true, *missed is how many were left out since
 * the last line written (and starts again from 0). Pure. */
bool ratelimit_pass(struct ratelimit *r, int64_t now_ms, uint64_t *missed);

/* log_msg() under limit r (on the monotonic clock): a line written after
 * some were left out ends with how many ("; 12 similar lines not logged"). */
void ratelimit_log(struct ratelimit *r, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
