/* Small definitions shared by every part of Bulkhead. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define BH_MUST_CHECK __attribute__((warn_unused_result))
#define BH_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Traffic direction, seen from the endpoint that enforces it. */
enum direction {
	DIR_INGRESS = 0,
	DIR_EGRESS = 1,
	DIR_COUNT = 2,
};

enum rule_action {
	ACTION_ALLOW = 0,
	ACTION_DENY = 1,
};

enum policy_mode {
	MODE_ENFORCE = 0,
	MODE_AUDIT = 1,
};

const char *direction_name(enum direction dir);   /* "ingress" / "egress" */
const char *action_name(enum rule_action action); /* "allow" / "deny" */
const char *mode_name(enum policy_mode mode);     /* "enforce" / "audit" */

/* What happens to a packet: accepted, dropped, or accepted and reported
 * because an audit-mode policy would have dropped it. */
enum verdict {
	VERDICT_ACCEPT = 0,
	VERDICT_DROP = 1,
	VERDICT_AUDIT = 2,
};

const char *verdict_name(enum verdict verdict); /* "accept" / "drop" / "audit" */

/* Milliseconds: the wall clock (unix time, for what is shown, stored or
 * sent) and the monotonic clock (for intervals and timeouts). */
int64_t clock_wall_ms(void);
int64_t clock_mono_ms(void);

/* "30", "30s", "10m", "2h", "7d" in seconds (at most 100 years). 0, or
 * -EINVAL when s is not such a duration (*seconds untouched). */
BH_MUST_CHECK int duration_parse(const char *s, long *seconds);
