/* Loads an evaluator scenario file (tests/fixtures/eval/NAME.json): its
 * policy ("policy" inline or "policy_file") and its finished inventory
 * ("inventory" inline and/or "inventory_files"), paths relative to the file. */
#pragma once

#include "bulkhead/bundle.h"
#include "bulkhead/inventory.h"
#include "bulkhead/policy.h"

struct scenario {
	json_t *root; /* the whole file, for "cases" */
	struct policy_doc *doc;
	struct inventory *inv;
};

/* The bundle of node for a policy and an inventory given as JSON text
 * (inventory_flags as inventory_load_json's); NULL with the problems
 * printed on stderr. */
struct bundle *scenario_compile(const char *policy, const char *inventory, const char *node,
				unsigned inventory_flags);
/* The same with several nodes' inventories, n of them. */
struct bundle *scenario_compile_nodes(const char *policy, const char *const *inventories, size_t n,
				      const char *node, unsigned inventory_flags);

/* 0, or -1 with the problems printed on stderr. */
int scenario_load(const char *path, struct scenario *sc);
void scenario_release(struct scenario *sc);
