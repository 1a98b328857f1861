/* offline: what the offline verbs (policy compile, policy explain) work
 * on: a policy document and node inventories read from files, and each
 * node's bundle compiled from them when first asked for. */
#pragma once

#include <stddef.h>

#include "bulkhead/bundle.h"
#include "bulkhead/inventory.h"
#include "bulkhead/policy.h"

struct offline {
	struct policy_doc *doc;
	struct inventory *inv;
	const char **nodes;	 /* every node of the inventories, NULL-terminated */
	struct bundle **bundles; /* per node, compiled on first use */
};

/* Reads and validates the policy and the n inventories into o; every
 * error and conflict goes to stderr. EXIT_OK or EXIT_USAGE; o is to be
 * released either way. */
int offline_load(struct offline *o, const char *policy_file, const char **inventories, size_t n);
/* node's bundle (o owns it), or NULL when node is in no inventory. */
const struct bundle *offline_bundle(struct offline *o, const char *node);
void offline_release(struct offline *o);
