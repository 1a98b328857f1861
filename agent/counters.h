/* counters: rule hit counts of one endpoint's table, as growth.
 *
 * The kernel keeps a counter in every rule. Remembering each rule's last
 * reading by its handle turns readings into growth since the last one;
 * growth is summed per bundle rule (the rule's comment: several nft rules
 * come from one bundle rule). A whole-table replace starts every counter
 * at zero again, and the new table numbers its rules from 1 again, so the
 * same handles come back: the agent reads the old table just before the
 * replace and tells counters_table_replaced() once it is done. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "nft.h"

struct counters;

struct counters *counters_new(void);
void counters_free(struct counters *c); /* accepts NULL */

/* What one bundle rule (or a chain's fallback) counted since the last
 * reading. Borrowed for the call. */
struct counter_growth {
	enum direction dir;
	const char *rule; /* the rule's comment */
	uint64_t packets, bytes;
};
typedef void (*counters_fn)(void *arg, const struct counter_growth *g);

/* Takes one reading of the whole table (every rule the kernel holds) and
 * calls fn for each commented rule whose counters grew. A handle seen for
 * the first time counts from zero (a rule made since), except in the first
 * reading of a table this run did not make: there it only sets the
 * baseline, unless counters_load() gave one for that handle. Handles gone
 * from the table are forgotten; a counter that went down (reset by
 * someone) counts from zero. Growth beyond COUNTERS_GROWTH_MAX in one
 * reading is no traffic (someone wrote the counter): it is skipped. */
#define COUNTERS_GROWTH_MAX (1ull << 40)
void counters_update(struct counters *c, const struct nft_rule_counter *list, size_t n, counters_fn fn,
		     void *arg);

/* The agent replaced the whole table: every rule is new and at zero. */
void counters_table_replaced(struct counters *c);

/* Reads the table in nl's namespace (nft_read_counters) and updates. 0, or
 * a negative errno (nothing counted). */
BH_MUST_CHECK int counters_read(struct counters *c, struct mnl_socket *nl, counters_fn fn, void *arg);

/* The last reading, to carry over a clean restart: [[handle, packets,
 * bytes], ...]. New reference. */
json_t *counters_save(const struct counters *c);
/* Makes saved (as counters_save wrote it; outside input, checked) the
 * baseline of the first reading. -EINVAL when it is not that shape. */
BH_MUST_CHECK int counters_load(struct counters *c, const json_t *saved);
