/* status: the agent's status.json in its state directory, what it holds
 * for operators and tests: the bundle in force, every endpoint (present,
 * applied, error, counters, backoff), the controller link, the cache and
 * the flow spool. Written when something in it changed, the flow counters
 * (which change with every packet) at most once a second; without fsync
 * (it is informational: a stalled disk must not stall the loop), by an
 * atomic rename all the same. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

struct status;

/* dir NULL: nothing is written. */
struct status *status_new(const char *dir);
void status_free(struct status *st); /* accepts NULL */

/* Something shown changed: the next status_write() writes. */
void status_touch(struct status *st);

/* What the core holds, for one write. References are taken (NULL: the
 * member is null or left out, as said). */
struct status_facts {
	const char *node;
	const char *bundle; /* hash of the bundle in force, NULL: none */
	int64_t revision;
	const char *dataplane;
	json_t *endpoints;  /* array of endpoint_status_json() */
	json_t *controller; /* NULL: null */
	unsigned bundles_rejected, inventories_rejected;
	json_t *cache;	 /* NULL: left out */
	json_t *sources; /* array of the sources' own status; NULL: left out */
	json_t *refused; /* endpoint name -> why a source's report was refused; NULL: left out */
};

/* Whether a write is due: touched, or the flow counters changed and the
 * last write is a second old. flows: what the spool says now (borrowed). */
bool status_due(struct status *st, const json_t *flows, uint64_t now_ms);
/* Writes status.json from f and flows (taking their references). */
void status_write(struct status *st, struct status_facts *f, json_t *flows, uint64_t now_ms);
