/* telemetry: the agent's Prometheus metrics (--metrics ADDR:PORT; README:
 * Metrics), read from the core (agent_facts()) when /metrics is scraped,
 * and each table update's duration as it happens. Labels are states,
 * verdicts and reasons, never an endpoint's name or address. */
#pragma once

#include "bulkhead/metrics.h"
#include "agent.h"

struct telemetry;

/* Borrows a, which must outlive it. */
struct telemetry *telemetry_new(struct agent *a);
void telemetry_free(struct telemetry *t); /* accepts NULL */
struct metrics *telemetry_metrics(struct telemetry *t);

/* An endpoint's state as the metrics count it (from its
 * endpoint_status_json() and the hash of the bundle in force, NULL:
 * none): "absent" (no namespace), "quarantined", "failing" (an error),
 * "enforced" (the bundle in force), "pending". Pure. */
const char *telemetry_endpoint_state(json_t *ep, const char *bundle);
