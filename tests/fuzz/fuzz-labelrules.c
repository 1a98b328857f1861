/* Fuzz target: NODE.labels files (controller/labelrules.h), as the
 * controller reads them from its agent allow-list, and endpoint lists held
 * to them. The input is the file's text, then a line "--" and an endpoint
 * list (ENDPOINT objects, as a HELLO carries them). A file that does not
 * parse says why; a list is refused exactly when one of its labels is not
 * allowed by the file as the header describes it (checked here against a
 * reading of the file of its own). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bulkhead/policy.h"
#include "labelrules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What the file says of key=value: allowed or not. */
static bool allowed(json_t *rules, const char *key, const char *value)
{
	json_t *spec = json_object_get(rules, key);
	if (!spec)
		spec = json_object_get(rules, "*");
	if (!spec)
		return false;
	if (json_is_string(spec))
		return true; /* "*": the file parsed, so it can be nothing else */
	size_t i;
	json_t *v;
	json_array_foreach (spec, i, v)
		if (strcmp(json_string_value(v), value) == 0)
			return true;
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data, *sep = NULL;
	for (size_t i = 0; i + 3 < size && !sep; i++)
		if (memcmp(text + i, "\n--\n", 4) == 0)
			sep = text + i;
	size_t len = sep ? (size_t)(sep - text) : size;
	struct diag d;
	diag_init(&d, "fuzz");
	struct labelrules *r = labelrules_parse("n1.labels", text, len, &d);
	if (!r) {
		if (d.n == 0)
			abort(); /* a refusal says why */
		diag_release(&d);
		return 0;
	}
	if (d.n != 0)
		abort();
	json_t *rules = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
	json_t *endpoints = sep ? json_loadb(sep + 4, size - len - 4, 0, NULL) : json_array();
	if (!json_is_object(rules))
		abort();
	/* The list as a whole, then each label alone. */
	bool any_refused = false;
	size_t i;
	json_t *ep;
	json_array_foreach (endpoints, i, ep) {
		const char *key, *why;
		json_t *v;
		json_object_foreach (json_object_get(ep, "labels"), key, v) {
			const char *value = json_string_value(v);
			if (!value || !label_key_valid(key, &why) || !label_value_valid(value, &why))
				continue; /* the list's own validation refuses it */
			bool ok = allowed(rules, key, value);
			any_refused |= !ok;
			json_t *one = json_pack("[{s:s,s:{s:s}}]", "name", "e", "labels", key, value);
			struct diag d1;
			diag_init(&d1, "fuzz");
			int rc = labelrules_check(r, one, &d1);
			if (rc != (ok ? 0 : -EPERM) || (rc < 0) != (d1.n > 0))
				abort();
			diag_release(&d1);
			json_decref(one);
		}
	}
	int rc = labelrules_check(r, endpoints, &d);
	if (rc != (any_refused ? -EPERM : 0) || (rc < 0) != (d.n > 0))
		abort();
	json_decref(endpoints);
	json_decref(rules);
	labelrules_free(r);
	diag_release(&d);
	return 0;
}
