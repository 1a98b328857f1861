/* node: the controller's one table of nodes — every node it knows (one
 * that reported endpoints, said HELLO, or that the store remembers), by
 * name, with what each part of the controller keeps of it. The struct is
 * shared by the controller's files; each group of fields below is written
 * only by the file named above it (as networkd's Link). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "bulkhead/bundle.h"
#include "bulkhead/ratelimit.h"
#include "bulkhead/sha256.h"
#include "flowcheck.h"
#include "store.h"

/* The longest ZeroMQ routing id a session keeps (libzmq's are 5 bytes;
 * a peer may choose its own, up to 255). */
#define NODE_RID_MAX 256

/* A label group a node's bundle holds the members of (or a named port it
 * holds the table of), and the digest of those members when it was
 * compiled (compiler.c). */
struct node_dep {
	size_t group; /* the compiler's index of the group (or name), in the policy compiled */
	uint8_t digest[SHA256_DIGEST_LEN];
};

struct node {
	char *name;

	/* compiler.c: what the node reported, and the bundle it must enforce */
	json_t *endpoints;	/* the list in force (checked); NULL: never reported */
	uint64_t endpoints_gen; /* changes with endpoints; never the same for two lists */
	json_t *bundle;		/* as last compiled; NULL: no policy, or never compiled */
	char hash[BUNDLE_HASH_HEX + 1];
	bool stale;	/* its inputs changed since: bundle is not to be sent */
	bool compiling; /* queued on the compiler's worker */
	uint64_t compiled_policy_gen, compiled_endpoints_gen;
	struct node_dep *deps;
	size_t n_deps;

	/* sessions.c: its agent's session */
	bool connected;
	uint8_t rid[NODE_RID_MAX]; /* the session's routing id */
	size_t rid_len;
	int64_t last_heard_ms; /* monotonic; 0: never */
	char *agent_version;
	json_t *errors; /* strings from its last ACK */
	bool ack_ok;
	/* Its last endpoint list was refused (the one before stays in force),
	 * or the one in force breaks its label rules: why, for status. */
	char *list_error;
	json_t *refused_list; /* tried again when its label rules change */
	struct ratelimit log; /* what it makes the controller log */

	/* push.c: what its agent holds, and what is on its way */
	int64_t held_revision; /* 0: nothing */
	char held_hash[BUNDLE_HASH_HEX + 1];
	json_t *held_bundle; /* its JSON when we sent it: the base for deltas */
	int64_t inflight_revision, inflight_since_ms;
	char inflight_hash[BUNDLE_HASH_HEX + 1];
	json_t *inflight_bundle;

	/* intake.c: its flow reports */
	struct flowcheck_bucket flow_bucket; /* its rate allowance */
	struct ratelimit drop_log[STORE_DROP_COUNT];
};

struct nodes;

struct nodes *nodes_new(void);
/* Frees every node. */
void nodes_free(struct nodes *t);

/* The node of that name, or NULL. */
struct node *nodes_find(const struct nodes *t, const char *name);
/* The node of that name, added when new: known from then on. */
struct node *nodes_add(struct nodes *t, const char *name);
/* Drops n from the table and frees it. */
void nodes_remove(struct nodes *t, struct node *n);

/* Every node in name order: nodes_at(t, i) for i < nodes_count(t). */
size_t nodes_count(const struct nodes *t);
struct node *nodes_at(const struct nodes *t, size_t i);
