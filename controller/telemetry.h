/* telemetry: the controller's Prometheus metrics (README: Metrics), read
 * from its state when /metrics is scraped — the policy in force, the
 * nodes, what the agents sent and what became of it. No per-address
 * label: labels are verdicts, results and kinds. */
#pragma once

#include "bulkhead/metrics.h"
#include "compiler.h"
#include "sessions.h"

struct telemetry;

/* A registry whose collector reads c and ss (borrowed; they must outlive
 * it). */
struct telemetry *telemetry_new(struct compiler *c, struct sessions *ss);
void telemetry_free(struct telemetry *t); /* accepts NULL */
/* Its registry (telemetry's). */
struct metrics *telemetry_metrics(struct telemetry *t);
