/* labelrules: which labels a node may report for its endpoints, from the
 * optional NODE.labels file beside NODE.key in the agent allow-list
 * (README "Security"). CURVE proves which node speaks; these rules bound
 * what it may claim, so a node cannot label its endpoints into another
 * tenant's groups.
 *
 * The file is one JSON object: label key → the values allowed, a list of
 * strings or "*" (any value). The key "*" stands for every key not named;
 * without it, a key not named is not allowed at all:
 *
 *   {"tenant": ["a"], "env": ["prod", "staging"], "*": "*"}
 *
 * Pure: no I/O (the allow-list in agents.c reads the file). */
#pragma once

#include <jansson.h>

#include "bulkhead/common.h"
#include "bulkhead/diag.h"

struct labelrules;

/* Parses a NODE.labels text; name ("n2.labels") is how messages refer to
 * it. NULL with every problem in diag (each at its JSON pointer). */
struct labelrules *labelrules_parse(const char *name, const char *text, size_t len, struct diag *diag);
void labelrules_free(struct labelrules *r);

/* Whether every label of every endpoint in a node's list (proto.h
 * ENDPOINT objects, unchecked) is allowed: 0, or -EPERM with one entry in
 * diag per label that is not, at /endpoints/I/labels/KEY. Malformed parts
 * are left to the list's own validation. */
BH_MUST_CHECK int labelrules_check(const struct labelrules *r, json_t *endpoints, struct diag *diag);
