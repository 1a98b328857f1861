/* Small definitions shared by every part of Bulkhead. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "bulkhead/vocab.h" /* the shared enums and their words */

#define BH_MUST_CHECK	 __attribute__((warn_unused_result))
#define BH_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Sets *err to a new message (NULL when out of memory; the caller frees it)
 * and returns r: for functions that answer 0 or negative errno and say why
 * in *err. */
int err_set(char **err, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Milliseconds: the wall clock (unix time, for what is shown, stored or
 * sent) and the monotonic clock (for intervals and timeouts). */
int64_t clock_wall_ms(void);
int64_t clock_mono_ms(void);

/* "30", "30s", "10m", "2h", "7d" in seconds (at most 100 years). 0, or
 * -EINVAL when s is not such a duration (*seconds untouched). */
BH_MUST_CHECK int duration_parse(const char *s, long *seconds);
