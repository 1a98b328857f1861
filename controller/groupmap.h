/* groupmap: who talks to whom, by group — the groups of the policy in
 * force as nodes, the flows between them as edges with their packets per
 * verdict (deny, audit, allow). Built from the store's group rows
 * (FLOW_QUERY_GROUPS: one per combination of both ends' groups and the
 * verdict), so it costs what the number of such combinations costs, not
 * the number of flows. A flow whose source is in groups A and B and whose
 * destination is in C counts on A→C and on B→C: an edge says how much
 * traffic went from members of one group to members of the other. An end
 * in no group is FLOW_GROUP_UNGROUPED (an endpoint) or FLOW_GROUP_OUTSIDE
 * (an outside address). Pure: any thread. */
#pragma once

#include <jansson.h>

#include "bulkhead/policy.h"

/* The groups of doc (NULL: none) as the map names them, on the loop's
 * thread (the policy is the loop's): [{"name", "kind": "label"|"network"}].
 * New reference. */
json_t *groupmap_groups(const struct policy_doc *doc);

/* The map from rows (store.h: a "groups" ROW each) and groups (from
 * groupmap_groups): {"groups": [{"name", "kind", "active": BOOL}...],
 * "edges": [{"src", "dst", "verdicts": {VERDICT: {"count", "pairs",
 * "last"}}, "count", "last"}...]}. groups: the policy's, then those the
 * rows name that it has not (kind "none" for FLOW_GROUP_*, "former" for a
 * group of an older revision), each once; active: some edge touches it.
 * edges: one per (src, dst) pair of group names, most packets first;
 * "pairs" counts distinct source and destination addresses per verdict.
 * New reference. */
json_t *groupmap_build(json_t *rows, json_t *groups);
