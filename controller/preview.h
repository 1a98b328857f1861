/* preview: `bulkhead policy preview FILE` — every flow the store holds of
 * a period, allowed and denied, judged again under a new document with the
 * evaluator against the current endpoints: what the document would newly
 * block, what it would newly allow, what stays as it is. Allowed flows are
 * reported only while a revision with "observe": "all" is in force, so the
 * reply says how much of the period was observed that way.
 *
 * The pure part (preview_observed_ms, preview_judge) takes data and
 * returns data; preview_run reads the store and runs off the loop (the
 * admin endpoint's worker). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "bulkhead/inventory.h"
#include "bulkhead/policy.h"
#include "store.h"

/* A revision as the preview needs it: from when it was in force, and
 * whether its document observes every accepted connection. */
struct preview_revision {
	int64_t from_ms; /* unix ms */
	bool observe_all;
};

/* How much of [since_ms, until_ms) a revision with observe all was in
 * force; revs oldest first, each in force until the next one's from_ms. */
int64_t preview_observed_ms(const struct preview_revision *revs, size_t n, int64_t since_ms,
			    int64_t until_ms);

/* Judges the store's report rows (store_query_flows, FLOW_QUERY_REPORT,
 * every verdict) under doc against inv: {"counts": {"newly_blocked",
 * "newly_allowed", "unchanged"}, "flows": [FLOW...]}, the flows newly
 * blocked first, then newly allowed, then unchanged, newest first within.
 * A flow is a (src, dst, protocol, port or ICMP type/code) seen in the
 * period: "was" what happened to it last ("deny": a drop is the newest
 * report of it; else "allow" or "audit" as the delivering end reported it)
 * with "was_rule", "now" what doc would do ("deny", "audit", "allow") with
 * the deciding "rule" and each end's verdict ("egress", "ingress": null
 * where the address is no endpoint now), both ends named as of inv and doc,
 * "count" (packets for a drop, connections for an allowed flow) and
 * "last". New reference. */
json_t *preview_judge(const struct policy_doc *doc, const struct inventory *inv, json_t *rows);

struct preview_request {
	const char *document, *file; /* the new document, and its name for errors */
	const struct inventory *inv; /* the current endpoints (held by the caller) */
	int64_t since_ms, until_ms;
};

/* The whole reply to a policy.preview (an admin reply: "ok", or "code"
 * and "error", and "errors" for an invalid document): reads the flows of
 * the period and the revisions in force meanwhile from s (the reader; any
 * thread), parses the document and judges. New reference. */
json_t *preview_run(struct store *s, const struct preview_request *rq);
