/* A policy and node inventories read offline, and their bundles (see
 * offline.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/compile.h"
#include "bulkhead/log.h"
#include "cli.h"
#include "offline.h"

void offline_release(struct offline *o)
{
	for (size_t i = 0; o->bundles && o->nodes[i]; i++)
		bundle_free(o->bundles[i]);
	free(o->bundles);
	inventory_free(o->inv);
	policy_doc_free(o->doc);
}

int offline_load(struct offline *o, const char *policy_file, const char **inventories, size_t n)
{
	struct diag d;
	bool ok = true;
	memset(o, 0, sizeof(*o));
	diag_init(&d, policy_file);
	o->doc = policy_parse_file(policy_file, &d);
	diag_print(&d, stderr);
	diag_release(&d);
	ok &= o->doc != NULL;

	o->inv = inventory_new();
	if (!o->inv)
		abort();
	for (size_t i = 0; i < n; i++) {
		diag_init(&d, inventories[i]);
		if (inventory_load_file(o->inv, inventories[i], NULL, INVENTORY_NEED_ADDRESSES, &d) < 0)
			ok = false;
		diag_print(&d, stderr);
		diag_release(&d);
	}
	diag_init(&d, "inventory");
	if (ok && inventory_finish(o->inv, &d) < 0)
		ok = false;
	diag_print(&d, stderr);
	diag_release(&d);
	if (!ok)
		return EXIT_USAGE;
	for (size_t i = 0; i < o->inv->n_conflicts; i++) {
		char text[1024];
		inventory_conflict_text(&o->inv->conflicts[i], text, sizeof(text));
		fprintf(stderr, "warning: %s: %s\n", text, INVENTORY_CONFLICT_EFFECT);
	}
	o->nodes = inventory_nodes(o->inv);
	if (!o->nodes)
		abort();
	size_t n_nodes = 0;
	while (o->nodes[n_nodes])
		n_nodes++;
	o->bundles = xcalloc(n_nodes, sizeof(*o->bundles));
	return EXIT_OK;
}

const struct bundle *offline_bundle(struct offline *o, const char *node)
{
	for (size_t i = 0; o->nodes[i]; i++) {
		if (strcmp(o->nodes[i], node) != 0)
			continue;
		if (!o->bundles[i] && !(o->bundles[i] = compile_bundle(o->doc, o->inv, node))) {
			fprintf(stderr, "bulkhead: compiling node %s: %s\n", node, strerror(ENOMEM));
			abort();
		}
		return o->bundles[i];
	}
	return NULL;
}
