/* flowcheck: what the controller keeps of a FLOWS batch (proto.h) before it
 * stores it — the pure part of taking a node's flow reports. The wire
 * schema has checked the batch's shape and ranges; here it is held to its
 * node and to the controller's limits:
 *   - a batch whose window ended before the retention is not kept (the
 *     node's clock is behind), nor a flow last seen before it: "expired";
 *   - times ahead of the controller's clock by more than a slack are set to
 *     the controller's time (retention would never delete them): "future",
 *     stored all the same;
 *   - flows and hits of an endpoint the node did not report are not kept:
 *     "foreign"; such an endpoint's losses count for the node as a whole;
 *   - flow and hit records past the node's rate allowance or its quota are
 *     not kept: "rate", "quota".
 * Everything not kept is counted (store_drops), to be stored beside the
 * batch and shown by `bulkhead flows`. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "store.h"

struct flowcheck_limits {
	int64_t now_ms;	       /* the controller's wall clock */
	int64_t keep_after_ms; /* windows ending before are expired; 0: none are */
	int64_t future_ms;     /* how far ahead of now_ms a time may be */
	int64_t rate_records;  /* records the node's rate allows now */
	int64_t quota_records; /* records its quota has room for */
};

/* Edits body in place (removes what is not kept, clamps times); endpoints
 * is the node's endpoint names as the keys of an object. Adds what was not
 * kept to drops; returns the records (flows and hits) kept. */
int64_t flowcheck_batch(json_t *body, json_t *endpoints, const struct flowcheck_limits *l,
			struct store_drops *drops);

/* Counts everything body reports (its flows and hits as records, their
 * packets and its losses' as packets) as not kept, for why: a batch the
 * node's rate has no room for at all. */
void flowcheck_drop_all(json_t *body, enum store_drop why, struct store_drops *drops);

/* A node's rate allowance: a bucket of records that fills at rate a second
 * up to burst, full at first use. */
struct flowcheck_bucket {
	double records;
	int64_t at_ms; /* monotonic; 0: never used */
};
/* The records the bucket holds at now_ms (monotonic). */
int64_t flowcheck_bucket_fill(struct flowcheck_bucket *b, int64_t now_ms, int64_t rate, int64_t burst);
/* Takes n records out (after they were stored). */
void flowcheck_bucket_take(struct flowcheck_bucket *b, int64_t n);
