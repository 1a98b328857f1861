/* Which labels a node may report (controller/labelrules.c): the NODE.labels
 * format, its errors at their JSON pointers, and the check of a reported
 * endpoint list against it. */
#include <errno.h>
#include <string.h>

#include <jansson.h>

#include "labelrules.h"
#include "test.h"

static struct labelrules *parse(const char *text, struct diag *d)
{
	diag_init(d, "n1.labels");
	return labelrules_parse("n1.labels", text, strlen(text), d);
}

/* The diag of checking one endpoint "web-1" with labels (JSON text). */
static int check(const char *rules, const char *labels, struct diag *d)
{
	struct diag pd;
	struct labelrules *r = parse(rules, &pd);
	diag_release(&pd);
	if (!r)
		return -999;
	char text[1024];
	snprintf(text, sizeof(text), "[{\"name\": \"web-1\", \"labels\": %s, \"addresses\": []}]", labels);
	json_t *eps = json_loads(text, 0, NULL);
	diag_init(d, "n1");
	int ret = labelrules_check(r, eps, d);
	json_decref(eps);
	labelrules_free(r);
	return ret;
}

static bool allowed(const char *rules, const char *labels)
{
	struct diag d;
	int r = check(rules, labels, &d);
	if (r != 0 && r != -EPERM)
		fprintf(stderr, "  rules %s did not parse\n", rules);
	diag_release(&d);
	return r == 0;
}

TEST(listed_values_only)
{
	const char *rules = "{\"tenant\": [\"a\", \"b\"], \"app\": \"*\"}";
	CHECK(allowed(rules, "{\"tenant\": \"a\"}"));
	CHECK(allowed(rules, "{\"tenant\": \"b\", \"app\": \"anything-at-all\"}"));
	CHECK(allowed(rules, "{}"));
	CHECK(!allowed(rules, "{\"tenant\": \"c\"}"));
	CHECK(!allowed(rules, "{\"tenant\": \"A\"}"));
	CHECK(!allowed(rules, "{\"tenant\": \"\"}"));
	CHECK(!allowed(rules, "{\"role\": \"admin\"}")); /* a key not named: no "*" */
}

TEST(star_stands_for_the_keys_not_named)
{
	CHECK(allowed("{\"tenant\": [\"a\"], \"*\": \"*\"}", "{\"tenant\": \"a\", \"role\": \"admin\"}"));
	CHECK(!allowed("{\"tenant\": [\"a\"], \"*\": \"*\"}", "{\"tenant\": \"b\", \"role\": \"admin\"}"));
	/* A key named with no value: forbidden, whatever "*" allows. */
	CHECK(!allowed("{\"quarantine\": [], \"*\": \"*\"}", "{\"quarantine\": \"false\"}"));
	CHECK(allowed("{\"*\": [\"x\"]}", "{\"one\": \"x\", \"two\": \"x\"}"));
	CHECK(!allowed("{\"*\": [\"x\"]}", "{\"one\": \"y\"}"));
	CHECK(allowed("{}", "{}"));
	CHECK(!allowed("{}", "{\"app\": \"web\"}"));
	/* DNS-prefixed keys are keys like any other. */
	CHECK(allowed("{\"example.com/tenant\": [\"a\"]}", "{\"example.com/tenant\": \"a\"}"));
	CHECK(!allowed("{\"example.com/tenant\": [\"a\"]}", "{\"tenant\": \"a\"}"));
}

TEST(the_message_names_the_endpoint_label_and_rule)
{
	struct diag d;
	CHECK(check("{\"tenant\": [\"a\"], \"*\": \"*\"}", "{\"app\": \"db\", \"tenant\": \"b\"}", &d) ==
	      -EPERM);
	CHECK(d.n == 1);
	CHECK_STR(d.v[0].path, "/endpoints/0/labels/tenant");
	CHECK_STR(d.v[0].message, "endpoint web-1: label tenant=b: not allowed by n1.labels (tenant: a)");
	diag_release(&d);
	CHECK(check("{\"tenant\": [\"a\"]}", "{\"role\": \"admin\"}", &d) == -EPERM);
	CHECK_STR(d.v[0].message,
		  "endpoint web-1: label role=admin: not allowed by n1.labels (no rule for key \"role\")");
	diag_release(&d);
	CHECK(check("{\"*\": [\"x\", \"y\"]}", "{\"role\": \"admin\"}", &d) == -EPERM);
	CHECK_STR(d.v[0].message,
		  "endpoint web-1: label role=admin: not allowed by n1.labels (other keys: x, y)");
	diag_release(&d);
}

TEST(out_of_syntax_is_left_to_the_lists_validation)
{
	/* Neither allowed nor named here: the inventory check refuses it and
	 * shows it safely; nothing from the peer reaches this message. */
	struct diag d;
	CHECK(check("{}", "{\"\\u001b[2J\": \"x\", \"ok\": \"\\u001b\"}", &d) == 0);
	CHECK(d.n == 0);
	diag_release(&d);
}

TEST(a_flood_of_refusals_is_named_twenty_times)
{
	struct diag pd;
	struct labelrules *r = parse("{}", &pd);
	diag_release(&pd);
	json_t *labels = json_object();
	for (int i = 0; i < 500; i++) {
		char key[32];
		snprintf(key, sizeof(key), "k%d", i);
		json_object_set_new(labels, key, json_string("v"));
	}
	json_t *eps = json_pack("[{s:s,s:o}]", "name", "web-1", "labels", labels);
	struct diag d;
	diag_init(&d, "n1");
	CHECK(labelrules_check(r, eps, &d) == -EPERM);
	CHECK(d.n == 21);
	CHECK(d.n == 21 && strcmp(d.v[20].message, "480 more labels not allowed by n1.labels") == 0);
	diag_release(&d);
	json_decref(eps);
	labelrules_free(r);
}

/* Every problem of a bad file, each at its place. */
static void expect_errors(const char *text, const char *const *want)
{
	struct diag d;
	struct labelrules *r = parse(text, &d);
	CHECK(!r);
	labelrules_free(r);
	size_t n = 0;
	for (; want[n]; n++) {
		char line[512];
		snprintf(line, sizeof(line), "%s: %s", n < d.n ? d.v[n].path : "",
			 n < d.n ? d.v[n].message : "");
		CHECK_STR(line, want[n]);
	}
	CHECK(d.n == n);
	diag_release(&d);
}

TEST(bad_files_are_refused_with_every_error)
{
	expect_errors("[\"tenant\"]",
		      (const char *const[]){": want an object: label key → [values allowed] or \"*\"", NULL});
	expect_errors(
	    "{\"tenant\": \"a\", \"Bad Key\": [\"x\"], \"app\": [\"ok\", 7, \"-no-\"]}",
	    (const char *const[]){
		"/tenant: want a list of the values allowed, or \"*\" for any value",
		"/Bad Key: \"Bad Key\": not a label key: only letters, digits, '-', '_' and '.' are allowed",
		"/app/1: want a string (a label value)",
		"/app/2: \"-no-\": not a label value: must begin and end with a letter or digit", NULL});
	struct diag d;
	CHECK(!parse("{\"tenant\": [\"a\"], \"tenant\": [\"b\"]}", &d)); /* a duplicate key */
	CHECK(d.n == 1 && strstr(d.v[0].message, "duplicate"));
	diag_release(&d);
	CHECK(!parse("{\"tenant\": ", &d));
	CHECK(d.n == 1 && strstr(d.v[0].message, "invalid JSON"));
	diag_release(&d);
}

int main(void)
{
	return test_main();
}
