/* Rule hit counts (agent/counters.h, flows.h): kernel counter readings
 * become growth per bundle rule, across rewrites (new handles), resets and
 * a clean restart's saved baseline, never counting a table of an earlier
 * run twice; the growth travels in the next flow batch as "hits". */
#include <errno.h>

#include <jansson.h>

#include "counters.h"
#include "flows.h"
#include "test.h"

struct got {
	char rule[64];
	enum direction dir;
	uint64_t packets, bytes;
};
static struct got got[16];
static size_t n_got;

static void record(void *arg, const struct counter_growth *g)
{
	(void)arg;
	if (n_got < 16) {
		snprintf(got[n_got].rule, sizeof(got[n_got].rule), "%s", g->rule);
		got[n_got].dir = g->dir;
		got[n_got].packets = g->packets;
		got[n_got].bytes = g->bytes;
		n_got++;
	}
}

static const struct got *find(const char *rule, enum direction dir)
{
	for (size_t i = 0; i < n_got; i++)
		if (strcmp(got[i].rule, rule) == 0 && got[i].dir == dir)
			return &got[i];
	return NULL;
}

#define RC(dir, handle, comment, packets, bytes)                                                             \
	{                                                                                                    \
		dir, handle, comment, packets, bytes                                                         \
	}

TEST(first_reading_of_an_old_table_is_only_a_baseline)
{
	struct counters *c = counters_new();
	struct nft_rule_counter old[] = {RC(DIR_INGRESS, 7, "p/ingress/0", 100, 6000)};
	n_got = 0;
	counters_update(c, old, 1, record, NULL);
	CHECK(n_got == 0); /* counted by an earlier run */
	struct nft_rule_counter later[] = {RC(DIR_INGRESS, 7, "p/ingress/0", 103, 6180)};
	counters_update(c, later, 1, record, NULL);
	CHECK(n_got == 1 && find("p/ingress/0", DIR_INGRESS) && got[0].packets == 3 && got[0].bytes == 180);
	counters_free(c);
}

TEST(growth_is_summed_per_rule_and_direction)
{
	struct counters *c = counters_new();
	n_got = 0;
	counters_update(c, NULL, 0, record, NULL); /* no table yet */
	/* Two nft rules (IPv4, IPv6) of one bundle rule, its egress twin, a
	 * fixed rule without comment, a rule that did not move. */
	struct nft_rule_counter r[] = {
	    RC(DIR_INGRESS, 10, "p/ingress/0", 4, 240), RC(DIR_INGRESS, 11, "p/ingress/0", 1, 80),
	    RC(DIR_EGRESS, 12, "p/ingress/0", 2, 120),	RC(DIR_INGRESS, 2, NULL, 50, 5000),
	    RC(DIR_INGRESS, 13, "default-deny", 0, 0),
	};
	counters_update(c, r, 5, record, NULL);
	const struct got *in = find("p/ingress/0", DIR_INGRESS), *out = find("p/ingress/0", DIR_EGRESS);
	CHECK(n_got == 2);
	CHECK(in && in->packets == 5 && in->bytes == 320); /* new rules count from zero */
	CHECK(out && out->packets == 2 && out->bytes == 120);
	CHECK(!find("default-deny", DIR_INGRESS));
	n_got = 0;
	counters_update(c, r, 5, record, NULL);
	CHECK(n_got == 0); /* nothing moved */
	counters_free(c);
}

TEST(rewrites_and_resets_count_from_zero)
{
	struct counters *c = counters_new();
	n_got = 0;
	counters_update(c, NULL, 0, record, NULL);
	struct nft_rule_counter a[] = {RC(DIR_INGRESS, 10, "p/ingress/0", 9, 900)};
	counters_update(c, a, 1, record, NULL);
	CHECK(n_got == 1 && got[0].packets == 9);
	/* The agent replaced the table: the new one numbers its rules from 1
	 * again, so handle 10 comes back, at zero, and climbs past the old
	 * reading: all of it is new. */
	counters_table_replaced(c);
	struct nft_rule_counter b[] = {RC(DIR_INGRESS, 10, "p/ingress/0", 12, 1200)};
	n_got = 0;
	counters_update(c, b, 1, record, NULL);
	CHECK(n_got == 1 && got[0].packets == 12 && got[0].bytes == 1200);
	/* Someone else rewrote a rule: a handle not seen counts from zero. */
	struct nft_rule_counter b2[] = {RC(DIR_INGRESS, 30, "p/ingress/0", 2, 200)};
	n_got = 0;
	counters_update(c, b2, 1, record, NULL);
	CHECK(n_got == 1 && got[0].packets == 2 && got[0].bytes == 200);
	/* Someone reset the counters: less than before counts from zero. */
	struct nft_rule_counter d[] = {RC(DIR_INGRESS, 30, "p/ingress/0", 1, 60)};
	n_got = 0;
	counters_update(c, d, 1, record, NULL);
	CHECK(n_got == 1 && got[0].packets == 1 && got[0].bytes == 60);
	/* Someone wrote an absurd counter: not traffic, not counted. */
	struct nft_rule_counter e[] = {RC(DIR_INGRESS, 30, "p/ingress/0", UINT64_MAX, 60),
				       RC(DIR_INGRESS, 31, "q/ingress/0", 1, 1)};
	n_got = 0;
	counters_update(c, e, 2, record, NULL);
	CHECK(n_got == 1 && find("q/ingress/0", DIR_INGRESS));
	counters_free(c);
}

TEST(a_saved_baseline_carries_a_clean_restart_over)
{
	struct counters *c = counters_new();
	counters_update(c, NULL, 0, record, NULL);
	struct nft_rule_counter a[] = {RC(DIR_INGRESS, 10, "p/ingress/0", 9, 900),
				       RC(DIR_EGRESS, 11, "defaults", 4, 300)};
	counters_update(c, a, 2, record, NULL);
	json_t *saved = counters_save(c);
	counters_free(c);

	/* The next run: what grew while no agent ran is counted, once. */
	c = counters_new();
	CHECK(counters_load(c, saved) == 0);
	struct nft_rule_counter b[] = {RC(DIR_INGRESS, 10, "p/ingress/0", 12, 1200),
				       RC(DIR_EGRESS, 11, "defaults", 4, 300),
				       RC(DIR_INGRESS, 99, "q/ingress/0", 5, 5)};
	n_got = 0;
	counters_update(c, b, 3, record, NULL);
	CHECK(n_got == 1 && find("p/ingress/0", DIR_INGRESS) && got[0].packets == 3 && got[0].bytes == 300);
	counters_free(c);
	json_decref(saved);

	c = counters_new();
	json_t *bad[] = {json_pack("{}"), json_pack("[[1,2]]"), json_pack("[[1,2,-3]]"),
			 json_pack("[[\"1\",2,3]]")};
	for (size_t i = 0; i < 4; i++) {
		CHECK(counters_load(c, bad[i]) == -EINVAL);
		json_decref(bad[i]);
	}
	counters_free(c);
}

static json_t *sent;

static void keep(void *arg, json_t *body)
{
	(void)arg;
	json_decref(sent);
	sent = body;
}

TEST(hits_travel_in_the_next_flow_batch)
{
	struct flows *f = flows_new(NULL, 1000);
	flows_hit(f, "web1", DIR_INGRESS, "web-in/ingress/0", "web-in", "allow", 3, 180, 5000);
	flows_hit(f, "web1", DIR_INGRESS, "web-in/ingress/0", "web-in", "allow", 2, 120, 5100);
	flows_hit(f, "web1", DIR_EGRESS, "defaults", NULL, "allow", 1, 90, 5100);
	flows_tick(f, 5100, 1000, false);
	flows_send(f, 5100, keep, NULL);
	CHECK(sent == NULL); /* the window is not over */
	flows_tick(f, 6000, 1000, false);
	flows_send(f, 6000, keep, NULL);
	CHECK(sent != NULL);
	json_t *hits = json_object_get(sent, "hits");
	CHECK(json_array_size(hits) == 2);
	size_t i;
	json_t *h;
	int matched = 0;
	json_array_foreach (hits, i, h) {
		const char *rule = json_string_value(json_object_get(h, "rule"));
		json_int_t p = json_integer_value(json_object_get(h, "packets"));
		json_int_t b = json_integer_value(json_object_get(h, "bytes"));
		if (rule && strcmp(rule, "web-in/ingress/0") == 0)
			matched += p == 5 && b == 300 &&
				   strcmp(json_string_value(json_object_get(h, "policy")), "web-in") == 0 &&
				   strcmp(json_string_value(json_object_get(h, "dir")), "ingress") == 0;
		if (rule && strcmp(rule, "defaults") == 0)
			matched += p == 1 && json_is_null(json_object_get(h, "policy")) &&
				   strcmp(json_string_value(json_object_get(h, "verdict")), "allow") == 0;
	}
	CHECK(matched == 2);
	CHECK(json_array_size(json_object_get(sent, "flows")) == 0);
	json_decref(sent);
	sent = NULL;
	flows_free(f);
}

int main(void)
{
	return test_main();
}
