/* flownames: names both ends of each denied flow an agent reports — the
 * endpoint (NODE/NAME) and its label groups, or for an address outside the
 * inventory the network groups that hold it — from the controller's view
 * at the time the batch arrives. */
#pragma once

#include <jansson.h>

#include "compiler.h"

/* Adds "src_endpoint", "src_groups", "dst_endpoint", "dst_groups" to every
 * flow of a FLOWS body (proto.h) from node: *_endpoint "NODE/NAME" or
 * null, *_groups a comma-separated list, maybe empty; and to every hit
 * "groups", its endpoint's label groups. */
void flownames_add(struct compiler *c, const char *node, json_t *body);
