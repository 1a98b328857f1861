/* Scenario files for the evaluator and codec tests (see scenario.h). */
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "bulkhead/compile.h"
#include "scenario.h"

struct bundle *scenario_compile_nodes(const char *policy, const char *const *inventories, size_t n,
				      const char *node, unsigned inventory_flags)
{
	struct diag d;
	diag_init(&d, "test");
	struct policy_doc *doc = policy_parse_string(policy, strlen(policy), &d);
	struct inventory *inv = inventory_new();
	bool loaded = doc != NULL;
	for (size_t i = 0; loaded && i < n; i++) {
		json_t *j = json_loads(inventories[i], 0, NULL);
		if (!j)
			fprintf(stderr, "test: inventory %zu is not JSON\n", i);
		loaded = j && inventory_load_json(inv, j, NULL, inventory_flags, &d) == 0;
		json_decref(j);
	}
	struct bundle *b = loaded && inventory_finish(inv, &d) == 0 ? compile_bundle(doc, inv, node) : NULL;
	diag_print(&d, stderr);
	inventory_free(inv);
	policy_doc_free(doc);
	diag_release(&d);
	return b;
}

struct bundle *scenario_compile(const char *policy, const char *inventory, const char *node,
				unsigned inventory_flags)
{
	return scenario_compile_nodes(policy, &inventory, 1, node, inventory_flags);
}

int scenario_load(const char *path, struct scenario *sc)
{
	memset(sc, 0, sizeof(*sc));
	json_error_t jerr;
	sc->root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (!sc->root) {
		fprintf(stderr, "%s: %s\n", path, jerr.text);
		return -1;
	}
	char base_dir[PATH_MAX], file[PATH_MAX * 2];
	snprintf(base_dir, sizeof(base_dir), "%s", path);
	dirname(base_dir);

	struct diag d;
	diag_init(&d, path);
	const char *policy_file = json_string_value(json_object_get(sc->root, "policy_file"));
	json_t *policy = json_object_get(sc->root, "policy");
	if (policy_file) {
		snprintf(file, sizeof(file), "%s/%s", base_dir, policy_file);
		sc->doc = policy_parse_file(file, &d);
	} else if (policy) {
		sc->doc = policy_parse_json(policy, &d);
	} else {
		diag_add(&d, "", "no \"policy\" or \"policy_file\"");
	}
	sc->inv = inventory_new();
	bool ok = sc->doc && sc->inv;
	json_t *item;
	size_t i;
	json_array_foreach (json_object_get(sc->root, "inventory"), i, item)
		ok &= sc->inv && inventory_load_json(sc->inv, item, NULL, INVENTORY_NEED_ADDRESSES, &d) == 0;
	json_array_foreach (json_object_get(sc->root, "inventory_files"), i, item) {
		snprintf(file, sizeof(file), "%s/%s", base_dir,
			 json_string_value(item) ? json_string_value(item) : "");
		ok &= sc->inv && inventory_load_file(sc->inv, file, NULL, INVENTORY_NEED_ADDRESSES, &d) == 0;
	}
	ok &= sc->inv && inventory_finish(sc->inv, &d) == 0;
	diag_print(&d, stderr);
	diag_release(&d);
	if (!ok) {
		scenario_release(sc);
		return -1;
	}
	return 0;
}

void scenario_release(struct scenario *sc)
{
	inventory_free(sc->inv);
	policy_doc_free(sc->doc);
	json_decref(sc->root);
	memset(sc, 0, sizeof(*sc));
}
