/* compiler: the controller's view of the world — the policy revision in
 * force and the endpoints every node reported — and the bundle each node
 * must enforce, recompiled when either changes. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "bulkhead/common.h"
#include "bulkhead/diag.h"
#include "bulkhead/inventory.h"
#include "bulkhead/policy.h"

struct compiler;

struct compiler *compiler_new(void);
void compiler_free(struct compiler *c);

/* The policy in force: takes ownership of doc. */
void compiler_set_policy(struct compiler *c, int64_t revision, struct policy_doc *doc);
int64_t compiler_revision(const struct compiler *c); /* 0: no policy yet */
const struct policy_doc *compiler_policy(const struct compiler *c);

/* A node's whole endpoint list (proto.h ENDPOINT objects). Checked like an
 * inventory file: on -EINVAL the problems are in diag and the node keeps its
 * previous list. Returns 1 when the list changed, 0 when it is the same. */
BH_MUST_CHECK int compiler_set_endpoints(struct compiler *c, const char *node, json_t *endpoints, struct diag *diag);
/* Drops node and its endpoints (they leave every group at the next
 * refresh); false when it never reported. */
bool compiler_forget_node(struct compiler *c, const char *node);
/* The list as last accepted (borrowed; NULL when the node never reported). */
json_t *compiler_endpoints(const struct compiler *c, const char *node);

/* Recompiles every known node's bundle if the policy or an endpoint list
 * changed since the last call. Returns true when anything was recompiled. */
bool compiler_refresh(struct compiler *c);

/* The bundle node must enforce now, as JSON (borrowed, valid until the next
 * refresh) and its hash; NULL when there is no policy yet. */
json_t *compiler_bundle(const struct compiler *c, const char *node, const char **hash);

/* Every node that ever reported, sorted (NULL-terminated, borrowed until the
 * next set_endpoints). */
const char *const *compiler_nodes(const struct compiler *c);

/* All endpoints, finished (borrowed until the next refresh). */
const struct inventory *compiler_inventory(const struct compiler *c);
/* The addresses more than one endpoint claims (inventory.h: conflicts):
 * [{"address", "endpoints": ["NODE/NAME", "NODE/NAME"]}]. New reference. */
json_t *compiler_conflicts(const struct compiler *c);
