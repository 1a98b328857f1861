/* compiler: the controller's view of the world — the policy revision in
 * force and the endpoints every node reported — and the bundle each node
 * must enforce, recompiled only when its inputs change.
 *
 * A node's inputs are the policy, its own endpoint list, the members
 * (their addresses, and which of those another endpoint claims too) of
 * every label group its bundle holds a set of, and what every endpoint
 * numbers each named port its bundle holds a table of: an endpoint that
 * changes on one node recompiles that node and the nodes whose rules name
 * a group the endpoint was or is in, or a port name it defines, not every
 * node. Network groups are part of
 * the policy. A node whose inputs changed is "stale": it has no bundle
 * until it is compiled again, so nothing old is sent under a new revision.
 *
 * Per-node state lives in the node table (node.h). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "bulkhead/common.h"
#include "bulkhead/diag.h"
#include "bulkhead/inventory.h"
#include "bulkhead/policy.h"
#include "bulkhead/worker.h"
#include "node.h"

struct compiler;

/* Borrows the table. */
struct compiler *compiler_new(struct nodes *t);
void compiler_free(struct compiler *c);

/* Called (with data) whenever an input changes, so that whoever compiles
 * can schedule it; one at a time. */
void compiler_on_change(struct compiler *c, void (*fn)(void *data), void *data);

/* The policy in force: takes ownership of doc. */
void compiler_set_policy(struct compiler *c, int64_t revision, struct policy_doc *doc);
int64_t compiler_revision(const struct compiler *c); /* 0: no policy yet */
const struct policy_doc *compiler_policy(const struct compiler *c);

/* A node's whole endpoint list (proto.h ENDPOINT objects; the node is
 * added to the table when new). Checked like an inventory file: on
 * -EINVAL the problems are in diag and the node keeps its previous list.
 * Returns 1 when the list changed, 0 when it is the same. */
BH_MUST_CHECK int compiler_set_endpoints(struct compiler *c, const char *node, json_t *endpoints,
					 struct diag *diag);
/* Drops node's endpoints (they leave every group); the node stays in the
 * table. False when it never reported. */
bool compiler_forget_node(struct compiler *c, const char *node);
/* The list as last accepted (borrowed; NULL when the node never reported). */
json_t *compiler_endpoints(const struct compiler *c, const char *node);

/* Whether an input changed since staleness was last worked out (any
 * call below does that). */
bool compiler_changed(const struct compiler *c);

/* From now on compiler_compile() compiles on w's thread, a node a job,
 * reading the policy and the inventory as they were when the job was
 * queued (kept until it is done); a node whose inputs changed meanwhile is
 * compiled again. w must be freed before c. */
void compiler_use_worker(struct compiler *c, struct worker *w);

/* Compiles the stale nodes, done(data, node) after each. In place: in
 * name order until budget_ms (monotonic) has passed, at least one, and
 * returns how many are still stale. With a worker: queues every stale node
 * not queued yet and returns 0; done() is called on the loop's thread as
 * each is compiled. */
size_t compiler_compile(struct compiler *c, int64_t budget_ms, void (*done)(void *data, struct node *n),
			void *data);
/* Compiles every stale node now, in place. True when any was. */
bool compiler_refresh(struct compiler *c);
/* Nodes compiled so far, also those whose result came too late to be
 * taken (tests count them). */
uint64_t compiler_compilations(struct compiler *c);

/* The bundle node must enforce now, as JSON (borrowed, valid until it is
 * recompiled) and its hash; NULL when there is no policy yet, or its
 * inputs changed and it is not compiled again yet. */
json_t *compiler_bundle(struct compiler *c, const char *node, const char **hash);

/* All endpoints, finished (borrowed until an endpoint list changes). */
const struct inventory *compiler_inventory(struct compiler *c);
/* The inventory of the moment (finished), held for a reader on another
 * thread until compiler_inventory_release(); *inv is valid until then
 * (hold and release on the loop's thread). */
struct compiler_hold *compiler_inventory_hold(struct compiler *c, const struct inventory **inv);
void compiler_inventory_release(struct compiler_hold *h); /* accepts NULL */
/* The addresses more than one endpoint claims (inventory.h: conflicts):
 * [{"address", "endpoints": ["NODE/NAME", "NODE/NAME"]}]. New reference. */
json_t *compiler_conflicts(struct compiler *c);
