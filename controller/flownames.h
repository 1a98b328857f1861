/* flownames: names both ends of each denied flow an agent reports — the
 * endpoint (NODE/NAME) and its label groups, or for an address outside the
 * inventory the network groups that hold it — from the controller's view
 * at the time the batch arrives. */
#pragma once

#include <jansson.h>

#include "bulkhead/addr.h"
#include "bulkhead/inventory.h"
#include "bulkhead/policy.h"
#include "compiler.h"

/* One end, a: the endpoint of inv that holds it ("NODE/NAME" in endpoint,
 * "" when none), and the groups of doc that hold it, comma-separated (an
 * endpoint's label groups, an outside address's network groups). inv and
 * doc may be NULL. */
void flownames_end(const struct inventory *inv, const struct policy_doc *doc, const struct bh_addr *a,
		   char *endpoint, size_t endpoint_len, char *groups, size_t groups_len);

/* Adds "src_endpoint", "src_groups", "dst_endpoint", "dst_groups" to every
 * flow of a FLOWS body (proto.h) from node: *_endpoint "NODE/NAME" or
 * null, *_groups a comma-separated list, maybe empty; and to every hit
 * "groups", its endpoint's label groups. */
void flownames_add(struct compiler *c, const char *node, json_t *body);
