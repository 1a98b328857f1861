/* The policy preview's pure part (controller/preview.h): how much of a
 * period observe all covered, and the flows of a period judged under a new
 * document — what happened to each last, what the document would do, and
 * which change that is. */
#include <string.h>

#include <jansson.h>

#include "preview.h"
#include "test.h"

TEST(observed_time_is_what_observe_all_revisions_covered)
{
	struct preview_revision revs[] = {
	    {.from_ms = 1000, .observe_all = false},
	    {.from_ms = 5000, .observe_all = true},
	    {.from_ms = 8000, .observe_all = false},
	    {.from_ms = 9000, .observe_all = true},
	};
	CHECK(preview_observed_ms(revs, 4, 0, 10000) == 3000 + 1000);
	CHECK(preview_observed_ms(revs, 4, 6000, 10000) == 2000 + 1000);
	CHECK(preview_observed_ms(revs, 4, 6000, 7000) == 1000);
	CHECK(preview_observed_ms(revs, 2, 0, 10000) == 5000); /* the newest is in force until the end */
	CHECK(preview_observed_ms(revs, 1, 0, 10000) == 0);
	CHECK(preview_observed_ms(NULL, 0, 0, 10000) == 0);
}

static const char *inventory_text =
    "{\"node\":\"n1\",\"endpoints\":[{\"name\":\"web1\",\"labels\":{\"role\":\"web\"},\"addresses\":[\"198."
    "18.0.11\"]},"
    "{\"name\":\"client1\",\"labels\":{\"role\":\"client\"},\"addresses\":[\"198.18.0.21\"]},"
    "{\"name\":\"other1\",\"labels\":{\"role\":\"other\"},\"addresses\":[\"198.18.0.22\"]}]}";

/* web1 takes tcp/80 from clients only. */
static const char *policy_text =
    "{\"version\":1,\"groups\":{\"web\":{\"labels\":{\"role\":\"web\"}},\"clients\":{\"labels\":{\"role\":"
    "\"client\"}}},\"policies\":[{\"name\":\"web-in\",\"applies_to\":\"web\",\"ingress\":[{\"from\":["
    "\"clients\"],"
    "\"ports\":[\"tcp/80\"]}]}]}";

static json_t *row(const char *dir, const char *src, const char *dst, int port, const char *verdict,
		   const char *rule, int64_t count, int64_t last, bool dst_inside)
{
	return json_pack("{s:s,s:s,s:s,s:s,s:i,s:n,s:n,s:s,s:s,s:I,s:I,s:o}", "direction", dir, "src", src,
			 "dst", dst, "proto", "tcp", "port", port, "icmp_type", "icmp_code", "verdict",
			 verdict, "rule", rule, "count", (json_int_t)count, "last", (json_int_t)last,
			 "dst_endpoint", dst_inside ? json_string("n1/web1") : json_null());
}

static json_t *find(json_t *out, const char *src, int port)
{
	size_t i;
	json_t *f;
	json_array_foreach (json_object_get(out, "flows"), i, f) {
		if (strcmp(json_string_value(json_object_get(f, "src")), src) == 0 &&
		    json_integer_value(json_object_get(f, "port")) == port)
			return f;
	}
	return NULL;
}

TEST(flows_are_judged_by_what_happened_last_and_what_the_document_does)
{
	struct diag d;
	diag_init(&d, "preview");
	struct policy_doc *doc = policy_parse_string(policy_text, strlen(policy_text), &d);
	struct inventory *inv = inventory_new();
	json_t *ij = json_loads(inventory_text, 0, NULL);
	CHECK(doc && inventory_load_json(inv, ij, NULL, INVENTORY_NEED_ADDRESSES, &d) == 0 &&
	      inventory_finish(inv, &d) == 0);
	json_decref(ij);
	json_t *rows = json_array();
	/* client1 -> web1:80, allowed: reported at both ends. */
	json_array_append_new(
	    rows, row("egress", "198.18.0.21", "198.18.0.11", 80, "allow", "defaults", 5, 100, true));
	json_array_append_new(
	    rows, row("ingress", "198.18.0.21", "198.18.0.11", 80, "allow", "old/ingress/0", 5, 90, true));
	/* other1 -> web1:80: let out by its egress (reported later, by another
	 * agent's clock), dropped at web1's ingress: it was blocked. */
	json_array_append_new(
	    rows, row("egress", "198.18.0.22", "198.18.0.11", 80, "allow", "defaults", 2, 300, true));
	json_array_append_new(
	    rows, row("ingress", "198.18.0.22", "198.18.0.11", 80, "deny", "default-deny", 2, 200, true));
	/* client1 -> web1:22: denied once, then allowed (a newer revision). */
	json_array_append_new(
	    rows, row("ingress", "198.18.0.21", "198.18.0.11", 22, "deny", "default-deny", 1, 50, true));
	json_array_append_new(
	    rows, row("ingress", "198.18.0.21", "198.18.0.11", 22, "allow", "ssh/ingress/0", 3, 60, true));
	/* web1 -> an outside address, allowed by its egress: delivered. */
	json_array_append_new(
	    rows, row("egress", "198.18.0.11", "203.0.113.9", 443, "allow", "defaults", 4, 70, false));

	json_t *out = doc ? preview_judge(doc, inv, rows) : NULL;
	CHECK(out != NULL);
	if (!out)
		goto done;
	json_t *c = json_object_get(out, "counts");
	CHECK(json_integer_value(json_object_get(c, "newly_blocked")) == 1);
	CHECK(json_integer_value(json_object_get(c, "newly_allowed")) == 0);
	CHECK(json_integer_value(json_object_get(c, "unchanged")) == 3);
	json_t *f = find(out, "198.18.0.21", 80);
	CHECK(f && strcmp(json_string_value(json_object_get(f, "change")), "unchanged") == 0);
	CHECK(f && strcmp(json_string_value(json_object_get(f, "was_rule")), "old/ingress/0") == 0);
	CHECK(f && strcmp(json_string_value(json_object_get(f, "rule")), "web-in/ingress/0") == 0);
	CHECK(f && strcmp(json_string_value(json_object_get(f, "src_endpoint")), "n1/client1") == 0);
	CHECK(f && strcmp(json_string_value(json_object_get(f, "dst_groups")), "web") == 0);
	f = find(out, "198.18.0.22", 80);
	CHECK(f && strcmp(json_string_value(json_object_get(f, "was")), "deny") == 0);
	CHECK(f && strcmp(json_string_value(json_object_get(f, "change")), "unchanged") == 0);
	CHECK(f && json_integer_value(json_object_get(f, "count")) == 2);
	f = find(out, "198.18.0.21", 22);
	CHECK(f && strcmp(json_string_value(json_object_get(f, "was")), "allow") == 0);
	CHECK(f && strcmp(json_string_value(json_object_get(f, "change")), "newly_blocked") == 0);
	CHECK(f && strcmp(json_string_value(json_object_get(f, "rule")), "default-deny") == 0);
	/* Newly blocked comes first. */
	CHECK(json_array_get(json_object_get(out, "flows"), 0) == f);
	f = find(out, "198.18.0.11", 443);
	CHECK(f && strcmp(json_string_value(json_object_get(f, "change")), "unchanged") == 0);
	CHECK(f && json_is_null(json_object_get(f, "ingress")) &&
	      json_is_null(json_object_get(f, "dst_endpoint")));
	json_decref(out);
done:
	json_decref(rows);
	inventory_free(inv);
	policy_doc_free(doc);
	diag_release(&d);
}

/* A document that names a port is judged on each destination's number. */
TEST(a_named_port_is_judged_on_the_destination_number)
{
	static const char inv_text[] =
	    "{\"node\":\"n1\",\"endpoints\":[{\"name\":\"web1\",\"labels\":{\"role\":\"web\"},\"addresses\":["
	    "\"198.18.0.11\"],\"ports\":{\"http\":\"tcp/8080\"}},{\"name\":\"client1\",\"labels\":{\"role\":"
	    "\"client\"},\"addresses\":[\"198.18.0.21\"]}]}";
	static const char doc_text[] =
	    "{\"version\":1,\"groups\":{\"clients\":{\"labels\":{\"role\":\"client\"}}},\"policies\":[{"
	    "\"name\":"
	    "\"web-in\",\"applies_to\":{\"labels\":{\"role\":\"web\"}},\"ingress\":[{\"from\":[\"clients\"],"
	    "\"ports\":[\"tcp/http\"]}]}]}";
	struct diag d;
	diag_init(&d, "preview");
	struct policy_doc *doc = policy_parse_string(doc_text, strlen(doc_text), &d);
	struct inventory *inv = inventory_new();
	json_t *ij = json_loads(inv_text, 0, NULL);
	CHECK(doc && inventory_load_json(inv, ij, NULL, INVENTORY_NEED_ADDRESSES, &d) == 0 &&
	      inventory_finish(inv, &d) == 0);
	json_decref(ij);
	json_t *rows = json_array();
	json_array_append_new(
	    rows, row("ingress", "198.18.0.21", "198.18.0.11", 8080, "deny", "default-deny", 1, 10, true));
	json_array_append_new(
	    rows, row("ingress", "198.18.0.21", "198.18.0.11", 80, "allow", "defaults", 1, 10, true));
	json_t *out = doc ? preview_judge(doc, inv, rows) : NULL;
	json_t *f = out ? find(out, "198.18.0.21", 8080) : NULL;
	CHECK(f && strcmp(json_string_value(json_object_get(f, "change")), "newly_allowed") == 0);
	CHECK(f && strcmp(json_string_value(json_object_get(f, "rule")), "web-in/ingress/0") == 0);
	f = out ? find(out, "198.18.0.21", 80) : NULL;
	CHECK(f && strcmp(json_string_value(json_object_get(f, "change")), "newly_blocked") == 0);
	json_decref(out);
	json_decref(rows);
	inventory_free(inv);
	policy_doc_free(doc);
	diag_release(&d);
}

int main(void)
{
	return test_main();
}
