/* Naming both ends of a denied flow (see flownames.h). */
#include <stdio.h>
#include <string.h>

#include "bulkhead/addr.h"
#include "bulkhead/compile.h"
#include "bulkhead/inventory.h"
#include "flownames.h"

static void append(char *buf, size_t n, const char *name)
{
	size_t len = strlen(buf);
	snprintf(buf + len, n - len, "%s%s", len ? "," : "", name);
}

void flownames_end(const struct inventory *inv, const struct policy_doc *doc, const struct bh_addr *a,
		   char *endpoint, size_t endpoint_len, char *groups, size_t groups_len)
{
	const struct endpoint *ep = inv ? inventory_find_by_addr(inv, a) : NULL;
	endpoint[0] = groups[0] = '\0';
	if (ep)
		snprintf(endpoint, endpoint_len, "%s/%s", ep->node, ep->name);
	for (size_t g = 0; doc && g < doc->n_groups; g++) {
		const struct policy_group *pg = doc->groups[g];
		bool in = ep ? compile_group_selects(pg, ep)
			     : pg->kind == GROUP_NETWORK &&
				   range_list_contains(a->family == AF_INET ? &pg->v4 : &pg->v6, a);
		if (in)
			append(groups, groups_len, pg->name);
	}
}

static void name_one(const struct inventory *inv, const struct policy_doc *doc, json_t *flow,
		     const char *side)
{
	char key[32], endpoint[512] = "", groups[4096] = "";
	struct bh_addr a;
	const char *text = json_string_value(json_object_get(flow, side));
	if (text && addr_parse(text, &a) == 0)
		flownames_end(inv, doc, &a, endpoint, sizeof(endpoint), groups, sizeof(groups));
	snprintf(key, sizeof(key), "%s_endpoint", side);
	json_object_set_new(flow, key, endpoint[0] ? json_string(endpoint) : json_null());
	snprintf(key, sizeof(key), "%s_groups", side);
	json_object_set_new(flow, key, json_string(groups));
}

/* The label groups of node/name, for a rule's hits. */
static void name_hit(const struct inventory *inv, const struct policy_doc *doc, const char *node, json_t *hit)
{
	char groups[4096] = "";
	const char *name = json_string_value(json_object_get(hit, "endpoint"));
	const struct endpoint *ep = inv && name ? inventory_find(inv, node, name) : NULL;
	for (size_t g = 0; ep && doc && g < doc->n_groups; g++)
		if (compile_group_selects(doc->groups[g], ep))
			append(groups, sizeof(groups), doc->groups[g]->name);
	json_object_set_new(hit, "groups", json_string(groups));
}

void flownames_add(struct compiler *c, const char *node, json_t *body)
{
	const struct inventory *inv = compiler_inventory(c);
	const struct policy_doc *doc = compiler_policy(c);
	size_t i;
	json_t *flow;
	json_array_foreach (json_object_get(body, "flows"), i, flow) {
		name_one(inv, doc, flow, "src");
		name_one(inv, doc, flow, "dst");
	}
	json_array_foreach (json_object_get(body, "hits"), i, flow)
		name_hit(inv, doc, node, flow);
}
