/* bulkhead: the operator's command (DESIGN §5). This build has the offline
 * verbs: policy validate and policy compile. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/bundle.h"
#include "bulkhead/compile.h"
#include "bulkhead/inventory.h"
#include "bulkhead/policy.h"

enum exit_code {
	EXIT_OK = 0,
	EXIT_FAIL = 1,
	EXIT_USAGE = 2, /* usage error or invalid input */
};

static void usage(FILE *out)
{
	fprintf(out, "usage: bulkhead policy validate FILE\n"
		     "       bulkhead policy compile FILE --inventory INV [--inventory INV...] [--node NODE]\n"
		     "\n"
		     "validate  check a policy document offline; exit 0 valid, 2 invalid (errors on stderr)\n"
		     "compile   compile a policy against node inventories and print the bundles as JSON\n");
}

static int cmd_policy_validate(int argc, char **argv)
{
	if (argc != 1) {
		fprintf(stderr, "usage: bulkhead policy validate FILE\n");
		return EXIT_USAGE;
	}
	struct diag d;
	diag_init(&d, argv[0]);
	struct policy_doc *doc = policy_parse_file(argv[0], &d);
	if (!doc) {
		diag_print(&d, stderr);
		diag_release(&d);
		return EXIT_USAGE;
	}
	size_t n_rules = 0;
	for (size_t i = 0; i < doc->n_policies; i++)
		n_rules += doc->policies[i].rules[DIR_INGRESS].n + doc->policies[i].rules[DIR_EGRESS].n;
	printf("%s: valid: %zu groups, %zu policies, %zu rules\n", argv[0], doc->n_groups, doc->n_policies,
	       n_rules);
	policy_doc_free(doc);
	diag_release(&d);
	return EXIT_OK;
}

static int cmd_policy_compile(int argc, char **argv)
{
	static const struct option opts[] = {
		{"inventory", required_argument, NULL, 'i'},
		{"node", required_argument, NULL, 'n'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char **inventories = calloc((size_t)argc + 1, sizeof(*inventories));
	size_t n_inventories = 0;
	const char *node = NULL;
	int c, ret = EXIT_USAGE;
	struct policy_doc *doc = NULL;
	struct inventory *inv = NULL;
	if (!inventories)
		abort();

	optind = 0;
	while ((c = getopt_long(argc, argv, "i:n:h", opts, NULL)) != -1) {
		switch (c) {
		case 'i':
			inventories[n_inventories++] = optarg;
			break;
		case 'n':
			node = optarg;
			break;
		default:
			fprintf(stderr, "usage: bulkhead policy compile FILE --inventory INV [--inventory INV...] "
					"[--node NODE]\n");
			goto out;
		}
	}
	if (optind != argc - 1 || n_inventories == 0) {
		fprintf(stderr, "usage: bulkhead policy compile FILE --inventory INV [--inventory INV...] "
				"[--node NODE]\n");
		goto out;
	}
	const char *policy_file = argv[optind];

	struct diag d;
	diag_init(&d, policy_file);
	doc = policy_parse_file(policy_file, &d);
	if (!doc) {
		diag_print(&d, stderr);
		diag_release(&d);
		goto out;
	}
	diag_release(&d);

	inv = inventory_new();
	if (!inv)
		abort();
	bool inv_ok = true;
	for (size_t i = 0; i < n_inventories; i++) {
		diag_init(&d, inventories[i]);
		if (inventory_load_file(inv, inventories[i], NULL, INVENTORY_NEED_ADDRESSES, &d) < 0) {
			diag_print(&d, stderr);
			inv_ok = false;
		}
		diag_release(&d);
	}
	diag_init(&d, "inventory");
	if (inv_ok && inventory_finish(inv, &d) < 0) {
		diag_print(&d, stderr);
		inv_ok = false;
	}
	diag_release(&d);
	if (!inv_ok)
		goto out;

	const char **nodes = inventory_nodes(inv);
	if (!nodes)
		abort();
	if (node) {
		bool known = false;
		for (const char **n = nodes; *n; n++)
			known |= strcmp(*n, node) == 0;
		if (!known) {
			fprintf(stderr, "bulkhead: node \"%s\" is in none of the inventories\n", node);
			goto out;
		}
	}

	json_t *out = node ? NULL : json_array();
	ret = EXIT_FAIL;
	for (const char **n = nodes; *n; n++) {
		if (node && strcmp(node, *n) != 0)
			continue;
		struct bundle *b = compile_bundle(doc, inv, *n);
		json_t *j = b ? bundle_to_json(b) : NULL;
		bundle_free(b);
		if (!j) {
			fprintf(stderr, "bulkhead: compiling node %s: %s\n", *n, strerror(ENOMEM));
			json_decref(out);
			goto out;
		}
		if (node)
			out = j;
		else
			json_array_append_new(out, j);
	}
	if (!node) {
		json_t *wrap = json_pack("{s:o}", "bundles", out);
		out = wrap;
	}
	if (!out || json_dumpf(out, stdout, JSON_INDENT(2)) < 0) {
		json_decref(out);
		goto out;
	}
	putchar('\n');
	json_decref(out);
	ret = EXIT_OK;
out:
	inventory_free(inv);
	policy_doc_free(doc);
	free(inventories);
	return ret;
}

int main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : EXIT_OK;
	}
	if (strcmp(argv[1], "policy") == 0 && argc >= 3) {
		if (strcmp(argv[2], "validate") == 0)
			return cmd_policy_validate(argc - 3, argv + 3);
		if (strcmp(argv[2], "compile") == 0)
			return cmd_policy_compile(argc - 2, argv + 2);
	}
	fprintf(stderr, "bulkhead: unknown command \"%s%s%s\"\n", argv[1], argc >= 3 ? " " : "", argc >= 3 ? argv[2] : "");
	usage(stderr);
	return EXIT_USAGE;
}
