/* agents: the controller's side of the agent protocol (proto.h) — the
 * ROUTER socket, CURVE authentication bound to node names (a ZAP handler
 * over the allow-list directory), one session per connected agent, and
 * getting every node the bundle it must enforce. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <zmq.h>

#include "compiler.h"
#include "store.h"

struct agents_options {
	const char *listen;	 /* e.g. tcp://0.0.0.0:7700 */
	bool insecure;		 /* no CURVE, no node binding */
	const char *public_key;	 /* the controller's pair, Z85 */
	const char *secret_key;
	const char *allow_dir;	 /* NODE.key files: agent public keys; NODE.labels: label rules */
	unsigned heartbeat_ms;
	int64_t flow_retention_ms; /* flows older are pruned (hourly) and not stored; 0: kept forever */
	int64_t flow_rate;	   /* flow and hit records a node may have stored a second, on
				    * average over AGENTS_FLOW_BURST_S; 0: no limit */
	int64_t flow_quota;	   /* records a node may have stored at once; 0: no limit */
	unsigned max_nodes;	   /* with insecure: HELLOs under new names past this many are refused; 0: no bound */
};

/* A node's rate allowance holds this many seconds' worth of records. */
#define AGENTS_FLOW_BURST_S 60

struct agents;

/* Binds the sockets. Borrows everything given. NULL with *err (malloc()ed). */
struct agents *agents_new(void *zctx, const struct agents_options *o, struct compiler *c, struct store *s,
			  char **err);
void agents_free(struct agents *a);

/* The sockets to poll for ZMQ_POLLIN: fills up to 2 items, returns how many. */
int agents_poll_items(struct agents *a, zmq_pollitem_t *items);
/* Handles whatever is waiting on them (bounded work per call). */
void agents_dispatch(struct agents *a);
/* One message as the ROUTER received it (its routing id, type and body
 * frames; user_id: the connection's ZAP User-Id, ignored with insecure):
 * decoded, and handled by its session. agents_dispatch() calls it for
 * every message read; the fuzzer (tests/fuzz/fuzz-controller.c) calls it
 * without a network. Borrows everything. */
void agents_handle(struct agents *a, const void *rid, size_t rid_len, const char *user_id, const void *type,
		   size_t type_len, const void *body, size_t body_len);
/* Heartbeats out, silent agents marked down; call every few hundred ms. */
void agents_tick(struct agents *a, int64_t now_ms);
/* Sends each connected node what it lacks (after the compiler changed). */
void agents_push(struct agents *a);

/* Drops a node: its session, its endpoints (they leave every group; the
 * other nodes' bundles are recompiled) and what the store keeps of them.
 * 0, -ENOENT (not known), -EBUSY (connected and not force), -EIO (the
 * store). *was_connected: whether its agent was connected; it is told to
 * say HELLO again when it speaks next, and comes back if it still runs. */
BH_MUST_CHECK int agents_forget(struct agents *a, const char *node, bool force, bool *was_connected);

/* Per-node state for `bulkhead status` (admin.h NODE objects) and the
 * counters; new references. */
json_t *agents_status_nodes(struct agents *a);
json_t *agents_counters(struct agents *a);

