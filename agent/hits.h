/* hits: what an endpoint's rules saw, named by the bundle rule that
 * decided, for the controller's flow windows: each logged packet (NFLOG
 * prefix -> rule id) and what each rule's counter grew by (hit counts).
 * A clean exit's last counter readings carry over to the next run
 * (STATE_COUNTERS), per endpoint and namespace. */
#pragma once

#include <jansson.h>

#include "endpoint.h"
#include "nflog.h"

/* One packet the endpoint's table logged, to the session. */
void hits_packet(struct endpoint_state *e, const struct nflog_event *ev);
/* Reads the endpoint's counters (if it counts) and reports what grew. */
void hits_read(struct endpoint_state *e);

/* The readings a clean exit left in dir (removed once read: a crash later
 * must not count from them again), by endpoint; NULL when none. New
 * reference. */
json_t *hits_load(const char *dir);
/* Makes the endpoint's saved reading the baseline of its new counters,
 * when it is of the same namespace; used once. */
void hits_restore(struct endpoint_state *e);
/* Writes every open endpoint's last reading to dir. */
void hits_save(const char *dir, const struct endpoint_state *list);
