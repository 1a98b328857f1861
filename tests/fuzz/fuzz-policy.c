/* Fuzz target: policy documents. Whatever the bytes, parsing either fails
 * with at least one error or yields a document that compiles, whose bundle
 * round-trips through the codec. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/compile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char inventory_text[] =
    "{\"node\":\"n1\",\"endpoints\":[{\"name\":\"a\",\"labels\":{\"app\":\"web\",\"env\":\"prod\"},"
    "\"addresses\":[\"198.18.0.1\",\"2001:db8::1\"]},{\"name\":\"b\",\"labels\":{\"app\":\"db\"},"
    "\"addresses\":[\"198.18.0.2\"]}]}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct diag d;
	diag_init(&d, "fuzz");
	struct policy_doc *doc = policy_parse_string((const char *)data, size, &d);
	if (!doc) {
		if (d.n == 0)
			abort(); /* a rejection always says why */
		diag_release(&d);
		return 0;
	}
	struct inventory *inv = inventory_new();
	json_t *j = json_loads(inventory_text, 0, NULL);
	if (!inv || !j || inventory_load_json(inv, j, NULL, 0, &d) < 0 || inventory_finish(inv, &d) < 0)
		abort();
	struct bundle *b = compile_bundle(doc, inv, "n1");
	if (!b)
		abort();
	char *text = bundle_encode(b, false);
	struct bundle *back = text ? bundle_decode(text, strlen(text), &d) : NULL;
	if (!back || strcmp(back->hash, b->hash) != 0)
		abort();
	free(text);
	bundle_free(back);
	bundle_free(b);
	json_decref(j);
	inventory_free(inv);
	policy_doc_free(doc);
	diag_release(&d);
	return 0;
}
