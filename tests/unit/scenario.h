/* Loads an evaluator scenario file (tests/fixtures/eval/NAME.json): its
 * policy ("policy" inline or "policy_file") and its finished inventory
 * ("inventory" inline and/or "inventory_files"), paths relative to the file. */
#pragma once

#include "bulkhead/inventory.h"
#include "bulkhead/policy.h"

struct scenario {
	json_t *root; /* the whole file, for "cases" */
	struct policy_doc *doc;
	struct inventory *inv;
};

/* 0, or -1 with the problems printed on stderr. */
int scenario_load(const char *path, struct scenario *sc);
void scenario_release(struct scenario *sc);
