/* The compiler: policy + inventory → one bundle per node (DESIGN §1).
 * Deterministic: the same inputs give a byte-identical bundle. */
#pragma once

#include "bulkhead/bundle.h"
#include "bulkhead/inventory.h"
#include "bulkhead/policy.h"

/* The bundle for node: every endpoint of the inventory on that node (none is
 * fine), with the rules of the policies that apply to it and the sets those
 * rules reference, resolved against the whole inventory. NULL on ENOMEM.
 * The inventory must be finished (inventory_finish). */
struct bundle *compile_bundle(const struct policy_doc *doc, const struct inventory *inv, const char *node);

/* Whether endpoint ep is a member of label group g (network groups: never). */
bool compile_group_selects(const struct policy_group *g, const struct endpoint *ep);
