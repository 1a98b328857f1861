/* intake: the flow reports of the nodes — each FLOWS batch held to its
 * node and to the limits (flowcheck.h, the pure part), named (flownames.h),
 * stored once (store.h) and answered; and the retention, which deletes
 * what is older, a bounded chunk at a time. */
#pragma once

#include <stdint.h>

#include <jansson.h>

#include "compiler.h"
#include "node.h"
#include "store.h"

struct intake_options {
	int64_t retention_ms; /* flows older are pruned (hourly) and not stored; 0: kept forever */
	int64_t rate;	      /* records a node may have stored a second, on average over
			       * INTAKE_BURST_S; 0: no limit */
	int64_t quota;	      /* records a node may have stored at once; 0: no limit */
};

/* A node's rate allowance holds this many seconds' worth of records. */
#define INTAKE_BURST_S 60

struct intake;

/* Borrows everything. */
struct intake *intake_new(struct store *s, struct compiler *c, const struct intake_options *o);
void intake_free(struct intake *i);

/* A decoded FLOWS body of node n (edited in place): the FLOWS_ACK body to
 * send (new reference), or NULL when it could not be stored (the agent
 * sends it again). */
json_t *intake_flows(struct intake *i, struct node *n, json_t *body);
/* A FLOWS body of n's that did not decode (why): the rejection to send,
 * so that the agent stops sending it, or NULL when it does not name its
 * batch. Counted for `bulkhead flows`. */
json_t *intake_malformed(struct intake *i, struct node *n, const void *body, size_t len, const char *why);

/* The retention: at start, then hourly, a chunk at a time; call every few
 * hundred ms. */
void intake_tick(struct intake *i, int64_t now_mono_ms);

/* Adds the intake's counters to a status "counters" object. */
void intake_counters(struct intake *i, json_t *counters);
