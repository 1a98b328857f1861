/* backoff: how long an endpoint waits before the agent tries again, when
 * its namespace cannot be opened, its table cannot be applied, or someone
 * keeps changing its table. Pure: times in, times out (monotonic ms), so
 * the unit tests drive it with a clock of their own.
 *
 * Failures wait BACKOFF_MIN_MS, then twice as long each time, up to
 * BACKOFF_MAX_MS; success or a new bundle ends the streak. Tampering is
 * put back at once the first time; another change before the table has
 * stayed as put back for BACKOFF_QUIET_MS waits BACKOFF_MIN_MS, doubling
 * to BACKOFF_MAX_MS. A process with CAP_NET_ADMIN in its own namespace
 * that rewrites the table in a loop so costs the agent one repair per
 * BACKOFF_MAX_MS, not one per rewrite. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define BACKOFF_MIN_MS	 500u
#define BACKOFF_MAX_MS	 30000u
#define BACKOFF_QUIET_MS 30000u

enum backoff_reason {
	BACKOFF_NONE = 0,
	BACKOFF_OPEN,	   /* the namespace could not be opened (refused) */
	BACKOFF_APPLY,	   /* the table could not be applied */
	BACKOFF_TAMPERING, /* another process changed the table again */
};

/* Zeroed: no streak. */
struct backoff {
	enum backoff_reason reason; /* of the streak; BACKOFF_NONE: none */
	unsigned streak;	    /* failures or changes in a row */
	uint64_t delay_ms;	    /* the current wait; 0: none (yet) */
	uint64_t next_ms;	    /* nothing is tried before this */
	uint64_t last_ms;	    /* the last failure, change or repair */
};

/* One more failure (or change by someone else) for why, at now. Returns
 * the wait before the next attempt (0: at once). A streak of another
 * reason, or a tampering streak that has been quiet for BACKOFF_QUIET_MS,
 * starts afresh. */
uint64_t backoff_fail(struct backoff *b, enum backoff_reason why, uint64_t now);
/* Nothing holds the next attempt back at now. */
bool backoff_due(const struct backoff *b, uint64_t now);
/* The table was put back at now: a tampering streak goes on until it has
 * stayed so for BACKOFF_QUIET_MS. */
void backoff_repaired(struct backoff *b, uint64_t now);
/* The tampering streak has been quiet long enough to end. */
bool backoff_quiet(const struct backoff *b, uint64_t now);
/* Ends the streak. true when it was backing off (delay_ms > 0): worth a
 * log line. */
bool backoff_reset(struct backoff *b);
/* "open", "apply", "tampering" (BACKOFF_NONE: NULL). */
const char *backoff_reason_name(enum backoff_reason why);
