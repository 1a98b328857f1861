/* session: the controller's side of the agent protocol (proto.h) — the
 * ROUTER socket on the loop, one session per connected agent in the node
 * table, heartbeats both ways, and each message handed to its concern:
 * auth (who may speak for a node, which labels it may claim), the compiler
 * (its endpoints), push (what it holds; what it is sent next) and intake
 * (its flow reports).
 *
 * A node is marked down only after the controller has read everything that
 * was waiting for it when the node's silence began: its silence is
 * measured against the time up to which the socket's input has been read
 * (drained), not the clock, so no busy stretch of the loop and no flood
 * from another peer can make a live agent's queued heartbeat look like
 * silence. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "bulkhead/loop.h"
#include "compiler.h"
#include "node.h"
#include "store.h"

struct sessions_options {
	const char *listen;	/* e.g. tcp://0.0.0.0:7700 */
	bool insecure;		/* no CURVE, no node binding */
	const char *public_key; /* the controller's pair, Z85 */
	const char *secret_key;
	const char *allow_dir; /* NODE.key files: agent public keys; NODE.labels: label rules */
	unsigned heartbeat_ms;
	int64_t flow_retention_ms; /* intake.h: intake_options */
	int64_t flow_rate;
	int64_t flow_quota;
	/* With insecure: HELLOs under new names past this many are refused; 0: no bound. */
	unsigned max_nodes;
};

struct sessions;

/* Binds the sockets and joins the loop (the ROUTER, the ZAP handler, a
 * timer for the heartbeats), compiling and pushing as the compiler's
 * inputs change. Borrows everything given. NULL with *err (malloc()ed). */
struct sessions *sessions_new(struct loop *l, void *zctx, const struct sessions_options *o, struct nodes *t,
			      struct compiler *c, struct store *s, char **err);
void sessions_free(struct sessions *s);

/* One message as the ROUTER received it (its routing id, type and body
 * frames; user_id: the connection's ZAP User-Id, ignored with insecure):
 * decoded, and handled by its session. The ROUTER's handler calls it for
 * every message read; the fuzzer (tests/fuzz/fuzz-controller.c) calls it
 * without a network. Borrows everything. */
void sessions_handle(struct sessions *s, const void *rid, size_t rid_len, const char *user_id,
		     const void *type, size_t type_len, const void *body, size_t body_len);
/* Heartbeats out, silent agents marked down, the retention's chunks: the
 * timer calls it every heartbeat / 4. */
void sessions_tick(struct sessions *s, int64_t now_ms);
/* Sends each connected node what it lacks (after compiler_refresh()). */
void sessions_push_all(struct sessions *s);

/* Drops a node: its session, its endpoints (they leave every group; the
 * other nodes' bundles are recompiled) and what the store keeps of them.
 * 0, -ENOENT (not known), -EBUSY (connected and not force), -EIO (the
 * store). *was_connected: whether its agent was connected; it is told to
 * say HELLO again when it speaks next, and comes back if it still runs. */
BH_MUST_CHECK int sessions_forget(struct sessions *s, const char *node, bool force, bool *was_connected);

/* Whether node is known (DESIGN §4): in the allow-list, or with
 * --insecure seen and not forgotten. */
bool sessions_known(struct sessions *s, const char *node);

/* Per-node state for `bulkhead status` (admin.h NODE objects: every node
 * of the table and every known node, in name order) and the counters;
 * new references. */
json_t *sessions_status_nodes(struct sessions *s);
json_t *sessions_counters(struct sessions *s);
