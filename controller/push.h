/* push: getting each node the bundle the compiler made for it. Keeps what
 * the node's agent holds (its HELLO, its ACKs) and what is on its way, and
 * decides what to send next: nothing, a revision stamp (an empty DELTA), a
 * set delta against what it holds, or the whole bundle. No I/O: the
 * session sends what push_next() returns and says so with push_sent(). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "bulkhead/proto.h"
#include "node.h"

/* A bundle not acknowledged this long after it was sent is sent again. */
#define PUSH_INFLIGHT_TIMEOUT_MS 10000

/* The agent (HELLO) holds revision and hash (as its message has them:
 * an integer or null, a string or null); nothing is in flight any more.
 * want and want_hash (NULL: none) are what the node must enforce now: when
 * the agent holds that, its JSON is the base of the next delta. */
void push_hello(struct node *n, json_t *revision, json_t *hash, json_t *want, const char *want_hash);
/* An ACK: the agent holds revision and hash now. */
void push_acked(struct node *n, json_t *revision, json_t *hash);
/* The session ended: nothing is on its way. */
void push_lost(struct node *n);

/* What n lacks of want (hash, revision) at now_ms (monotonic):
 * PROTO_BUNDLE or PROTO_DELTA with its body in *body (new reference) and
 * *n_sets the delta's sets, or -1 when it holds want or want is on its way
 * and not overdue. */
int push_next(const struct node *n, json_t *want, const char *hash, int64_t revision, int64_t now_ms,
	      json_t **body, size_t *n_sets);
/* What push_next() returned was sent (sent: it was queued) at now_ms: in
 * flight until its ACK. */
void push_sent(struct node *n, bool sent, json_t *want, const char *hash, int64_t revision, int64_t now_ms);
/* Whether what is in flight waited longer than PUSH_INFLIGHT_TIMEOUT_MS. */
bool push_overdue(const struct node *n, int64_t now_ms);
