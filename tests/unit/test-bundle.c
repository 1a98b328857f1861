/* Bundle codec: round trips, determinism, and decoding hostile input.
 * Usage: test-bundle [SCENARIO.json...] — each scenario's bundles (every
 * node) are also round-tripped. */
#include <errno.h>
#include <netinet/in.h>

#include "bulkhead/compile.h"
#include "bulkhead/proto.h"
#include "bulkhead/sha256.h"
#include "scenario.h"
#include "test.h"

static const char *policy_text =
    "{\"version\":1,\"defaults\":{\"egress\":\"deny\"},\"groups\":{"
    "\"web\":{\"labels\":{\"app\":\"web\"}},\"db\":{\"labels\":{\"app\":\"db\"}},"
    "\"office\":{\"cidrs\":[\"203.0.113.0/24\",\"2001:db8:10::/48\"],\"except\":[\"203.0.113.9\"]}},"
    "\"policies\":[{\"name\":\"db-in\",\"applies_to\":\"db\",\"order\":10,\"ingress\":["
    "{\"from\":[\"web\"],\"ports\":[\"tcp/5432\",\"icmp/8/0\"]},{\"action\":\"deny\",\"from\":[\"office\"]}],"
    "\"egress\":[{\"to\":[{\"cidrs\":[\"198.51.100.0/24\"]}],\"ports\":[\"udp/53\"]}]},"
    "{\"name\":\"audit-all\",\"applies_to\":{\"labels\":{}},\"mode\":\"audit\",\"ingress\":[{\"action\":"
    "\"deny\","
    "\"ports\":[\"sctp\"]}]}]}";

static const char *inventory_text =
    "{\"node\":\"n1\",\"endpoints\":[{\"name\":\"db-1\",\"labels\":{\"app\":\"db\"},\"addresses\":[\"198.18."
    "0.3\","
    "\"2001:db8::3\"]},{\"name\":\"web-1\",\"labels\":{\"app\":\"web\"},\"addresses\":[\"198.18.0.2\"]}]}";

static struct bundle *compile_text(const char *text)
{
	return scenario_compile(text, inventory_text, "n1", 0);
}

static struct bundle *compile_sample(void)
{
	return compile_text(policy_text);
}

static bool round_trips(const struct bundle *b)
{
	char *text = bundle_encode(b, false);
	struct diag d;
	diag_init(&d, "round-trip");
	struct bundle *back = text ? bundle_decode(text, strlen(text), &d) : NULL;
	char *again = back ? bundle_encode(back, false) : NULL;
	bool ok = again && strcmp(text, again) == 0 && strcmp(b->hash, back->hash) == 0;
	if (!ok)
		diag_print(&d, stderr);
	free(text);
	free(again);
	bundle_free(back);
	diag_release(&d);
	return ok;
}

/* bundle.h's definition, computed the plain way: the SHA-256 of jansson's
 * compact text without "hash". bundle_update_hash() writes that text
 * itself, straight into the digest, and bundle_encode() writes the compact
 * text with "hash" the same way: this holds both to jansson's. */
static bool hash_is_the_plain_one(struct bundle *b)
{
	json_t *root = b ? bundle_to_json(b) : NULL;
	char *text = NULL, *mine = NULL, *theirs = NULL, want[2 * SHA256_DIGEST_LEN + 1];
	bool ok = root && json_object_del(root, "hash") == 0 && (text = json_dumps(root, JSON_COMPACT));

	if (ok) {
		sha256_hex(text, strlen(text), want);
		ok = bundle_update_hash(b) == 0 && strcmp(b->hash, want) == 0;
		if (!ok)
			fprintf(stderr, "hash %s, jansson's text hashes to %s\n", b->hash, want);
	}
	json_decref(root);
	root = ok ? bundle_to_json(b) : NULL;
	theirs = root ? json_dumps(root, JSON_COMPACT) : NULL;
	mine = root ? bundle_encode(b, false) : NULL;
	if (ok && !(mine && theirs && strcmp(mine, theirs) == 0)) {
		fprintf(stderr, "bundle_encode wrote\n%s\njansson writes\n%s\n", mine ? mine : "NULL",
			theirs ? theirs : "NULL");
		ok = false;
	}
	free(text);
	free(mine);
	free(theirs);
	json_decref(root);
	return ok;
}

TEST(hash_is_the_sha256_of_the_compact_text_without_it)
{
	struct bundle *b = compile_sample();
	char before[sizeof(b->hash)];

	CHECK(b != NULL);
	if (!b)
		return;
	memcpy(before, b->hash, sizeof(before));
	CHECK(hash_is_the_plain_one(b));
	CHECK_STR(b->hash, before);
	bundle_free(b);
}

/* Every character JSON escapes, and the ones it does not, as jansson
 * writes them; a string that is not UTF-8 is refused as jansson does. */
TEST(hash_writes_strings_as_jansson_does)
{
	static const char *const names[] = {
	    "quote\"back\\slash",
	    "ctl\x01\x02\x1f\b\f\n\r\t",
	    "del\x7f/slash",
	    "utf8 \xc3\xa9 \xe2\x80\xa8 \xf0\x9f\x98\x80",
	    "",
	    "plain-name_1.2",
	};
	struct bundle *b = compile_sample();

	CHECK(b != NULL && b->n_endpoints > 0);
	if (!b || !b->n_endpoints)
		goto out;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		b->endpoints[0].name = names[i];
		b->endpoints[0].chains[DIR_INGRESS].fallback_reason =
		    names[sizeof(names) / sizeof(names[0]) - 1 - i];
		CHECK(hash_is_the_plain_one(b));
	}
	static const char *const not_utf8[] = {"\xff", "\xc0\x80", "\xed\xa0\x80", "\xe2\x80",
					       "\xf4\x90\x80\x80"};
	for (size_t i = 0; i < sizeof(not_utf8) / sizeof(not_utf8[0]); i++) {
		b->endpoints[0].name = not_utf8[i];
		CHECK(bundle_update_hash(b) == -EINVAL);
		json_t *root = bundle_to_json(b);
		CHECK(root == NULL);
		json_decref(root);
		CHECK(bundle_encode(b, false) == NULL);
	}
out:
	bundle_free(b);
}

/* Decodes the sample after edit() changed its JSON; returns the errors. */
static size_t decode_edited(void (*edit)(json_t *root), struct diag *d)
{
	struct bundle *b = compile_sample();
	json_t *root = bundle_to_json(b);
	edit(root);
	diag_init(d, "edited");
	struct bundle *back = bundle_from_json(root, d);
	size_t n = back ? 0 : d->n;
	bundle_free(back);
	json_decref(root);
	bundle_free(b);
	return n;
}

TEST(sample_round_trips)
{
	struct bundle *b = compile_sample();
	CHECK(b != NULL);
	if (b) {
		CHECK(b->n_endpoints == 2 && b->n_sets == 3);
		CHECK(round_trips(b));
	}
	bundle_free(b);
}

TEST(compile_is_deterministic)
{
	struct bundle *a = compile_sample(), *b = compile_sample();
	char *ta = a ? bundle_encode(a, true) : NULL, *tb = b ? bundle_encode(b, true) : NULL;
	CHECK(ta && tb && strcmp(ta, tb) == 0);
	CHECK(a && b && strcmp(a->hash, b->hash) == 0 && strlen(a->hash) == 64);
	free(ta);
	free(tb);
	bundle_free(a);
	bundle_free(b);
}

/* The sample with "observe": "all" in its document. */
static struct bundle *compile_observed(void)
{
	char *text = NULL;
	if (asprintf(&text, "{\"observe\":\"all\",%s", policy_text + 1) < 0)
		return NULL;
	struct bundle *b = compile_text(text);
	free(text);
	return b;
}

TEST(observe_all_is_carried_and_the_default_is_not_written)
{
	struct bundle *plain = compile_sample(), *all = compile_observed();
	CHECK(plain && all);
	if (!plain || !all)
		goto out;
	CHECK(plain->observe == OBSERVE_DENIED && all->observe == OBSERVE_ALL);
	json_t *jp = bundle_to_json(plain), *ja = bundle_to_json(all);
	/* The default leaves the bundle as it was before the key existed. */
	CHECK(json_object_get(jp, "observe") == NULL);
	CHECK_STR(json_string_value(json_object_get(ja, "observe")), "all");
	CHECK(strcmp(plain->hash, all->hash) != 0);
	/* Observing or not is never a set-element delta: a full bundle goes. */
	CHECK(proto_delta_make(jp, ja) == NULL && proto_delta_make(ja, jp) == NULL);
	json_decref(jp);
	json_decref(ja);
	CHECK(round_trips(all));
	CHECK(hash_is_the_plain_one(all));
	char *text = bundle_encode(all, false);
	struct diag d;
	diag_init(&d, "observed");
	struct bundle *back = bundle_decode(text, strlen(text), &d);
	CHECK(back && back->observe == OBSERVE_ALL);
	bundle_free(back);
	diag_release(&d);
	free(text);
out:
	bundle_free(plain);
	bundle_free(all);
}

static void edit_hash(json_t *root)
{
	json_object_set_new(root, "hash", json_string("00"));
}
/* The right hash and one more character: decoding compares a copy of
 * the claim (the tree is freed first), which must not cut it to size. */
static void edit_hash_longer(json_t *root)
{
	char longer[BUNDLE_HASH_HEX + 2];

	snprintf(longer, sizeof(longer), "%s0", json_string_value(json_object_get(root, "hash")));
	json_object_set_new(root, "hash", json_string(longer));
}
static void edit_member(json_t *root)
{
	/* Changing content without the hash must be caught. */
	json_t *sets = json_object_get(root, "sets");
	json_t *v4 = json_object_get(json_array_get(sets, 0), "ipv4");
	json_array_append_new(v4, json_string("198.18.9.9"));
}
static void edit_unknown_set(json_t *root)
{
	json_t *ep = json_array_get(json_object_get(root, "endpoints"), 0);
	json_t *rule = json_array_get(json_object_get(json_object_get(ep, "ingress"), "rules"), 0);
	json_object_set_new(rule, "peers", json_pack("[s]", "nosuch"));
}
static void edit_types(json_t *root)
{
	json_object_set_new(root, "node", json_integer(7));
	json_object_set_new(root, "format", json_integer(99));
	json_object_set_new(root, "surprise", json_true());
	json_t *ep = json_array_get(json_object_get(root, "endpoints"), 0);
	json_t *rule = json_array_get(json_object_get(json_object_get(ep, "ingress"), "rules"), 0);
	json_object_set_new(rule, "index", json_integer(-1));
	json_object_set_new(rule, "action", json_string("reject"));
	json_object_set_new(rule, "ports", json_pack("[s]", "tcp/99999"));
}
static void edit_family(json_t *root)
{
	json_t *sets = json_object_get(root, "sets");
	for (size_t i = 0; i < json_array_size(sets); i++)
		json_array_append_new(json_object_get(json_array_get(sets, i), "ipv4"),
				      json_string("2001:db8::1"));
}
static void edit_observe(json_t *root)
{
	json_object_set_new(root, "observe", json_string("everything"));
}
static void edit_not_object(json_t *root)
{
	json_object_set_new(root, "endpoints", json_pack("[i]", 3));
	json_object_set_new(root, "sets", json_string("x"));
}

TEST(decode_rejects_bad_hash_and_tampering)
{
	struct diag d;
	CHECK(decode_edited(edit_hash, &d) == 1);
	if (d.n)
		CHECK_STR(d.v[0].path, "/hash");
	diag_release(&d);
	CHECK(decode_edited(edit_member, &d) == 1);
	diag_release(&d);
	CHECK(decode_edited(edit_hash_longer, &d) == 1);
	if (d.n)
		CHECK_STR(d.v[0].path, "/hash");
	diag_release(&d);
}

TEST(decode_rejects_bad_fields)
{
	struct diag d;
	CHECK(decode_edited(edit_unknown_set, &d) >= 1);
	diag_release(&d);
	/* node type, format, unknown key, index, action, port. */
	CHECK(decode_edited(edit_types, &d) == 6);
	diag_release(&d);
	CHECK(decode_edited(edit_family, &d) == 3);
	diag_release(&d);
	CHECK(decode_edited(edit_not_object, &d) == 2);
	diag_release(&d);
	CHECK(decode_edited(edit_observe, &d) == 1);
	if (d.n)
		CHECK_STR(d.v[0].path, "/observe");
	diag_release(&d);
}

TEST(decode_rejects_garbage_text)
{
	const char *bad[] = {"", "null", "[]", "{", "{\"format\":1}", "\"x\""};
	for (size_t i = 0; i < BH_ARRAY_SIZE(bad); i++) {
		struct diag d;
		diag_init(&d, "garbage");
		struct bundle *b = bundle_decode(bad[i], strlen(bad[i]), &d);
		CHECK(b == NULL && d.n >= 1);
		bundle_free(b);
		diag_release(&d);
	}
}

/* Named ports (DESIGN §2): web-1 and web-2 call "http" 8080 and 8081;
 * db-1 resolves an ingress name, client-1's egress keeps names and tables. */
static const char *named_policy =
    "{\"version\":1,\"groups\":{\"web\":{\"labels\":{\"app\":\"web\"}}},\"policies\":["
    "{\"name\":\"db-in\",\"applies_to\":{\"labels\":{\"app\":\"db\"}},\"ingress\":[{\"ports\":[\"tcp/pg\","
    "\"tcp/nope\"]},{\"ports\":[\"udp/pg\"]}]},"
    "{\"name\":\"cl-out\",\"applies_to\":{\"labels\":{\"app\":\"client\"}},\"egress\":["
    "{\"action\":\"deny\",\"to\":[\"web\"],\"ports\":[\"tcp/admin\"]},{\"to\":[\"web\"],\"ports\":[\"tcp/"
    "http\","
    "\"udp/53\"]}]}]}";
static const char *named_inventory =
    "{\"node\":\"n1\",\"endpoints\":["
    "{\"name\":\"client-1\",\"labels\":{\"app\":\"client\"},\"addresses\":[\"198.18.0.9\"]},"
    "{\"name\":\"db-1\",\"labels\":{\"app\":\"db\"},\"addresses\":[\"198.18.0.3\"],\"ports\":{\"pg\":\"tcp/"
    "5432\"}},"
    "{\"name\":\"web-1\",\"labels\":{\"app\":\"web\"},\"addresses\":[\"198.18.0.1\",\"2001:db8::1\"],"
    "\"ports\":{\"http\":\"tcp/8080\"}},"
    "{\"name\":\"web-2\",\"labels\":{\"app\":\"web\"},\"addresses\":[\"198.18.0.2\"],\"ports\":{\"http\":"
    "\"tcp/8081\",\"admin\":\"tcp/9000\"}}]}";

static struct bundle *compile_named(void)
{
	return scenario_compile(named_policy, named_inventory, "n1", 0);
}

TEST(named_ports_compile_encode_and_round_trip)
{
	struct bundle *b = compile_named();
	CHECK(b != NULL);
	if (!b)
		return;
	CHECK(round_trips(b));
	CHECK(hash_is_the_plain_one(b));
	/* Egress tables: "tcp/admin#deny" for the deny rule, "tcp/http". */
	CHECK(b->n_named_ports == 2);
	if (b->n_named_ports == 2) {
		CHECK_STR(b->named_ports[0].id, "tcp/admin#deny");
		CHECK_STR(b->named_ports[1].id, "tcp/http");
		CHECK_STR(b->named_ports[1].name, "http");
		CHECK(b->named_ports[1].proto == IPPROTO_TCP && b->named_ports[1].n == 3);
		CHECK(b->named_ports[0].n == 1 && b->named_ports[0].v[0].port == 9000);
	}
	char *text = bundle_encode(b, false);
	CHECK(text &&
	      strstr(text, "\"named_ports\":[{\"id\":\"tcp/admin#deny\",\"v4\":[[\"198.18.0.2\",9000]],"
			   "\"v6\":[]},{\"id\":\"tcp/http\",\"v4\":[[\"198.18.0.1\",8080],[\"198.18.0.2\","
			   "8081]],\"v6\":[[\"2001:db8::1\",8080]]}]"));
	free(text);
	/* db-1's ingress: tcp/pg resolved to 5432, tcp/nope (undefined) left
	 * out, and the udp/pg rule (pg is tcp there) left out of the chain. */
	const struct bundle_endpoint *db = bundle_find_endpoint(b, "db-1");
	CHECK(db && db->chains[DIR_INGRESS].n_rules == 1);
	if (db && db->chains[DIR_INGRESS].n_rules == 1) {
		const struct bundle_rule *r = &db->chains[DIR_INGRESS].rules[0];
		CHECK_STR(r->id, "db-in/ingress/0");
		CHECK(r->n_ports == 1 && !r->ports[0].name && r->ports[0].lo == 5432 &&
		      r->ports[0].hi == 5432);
	}
	/* client-1's egress keeps names and points at the tables. */
	const struct bundle_endpoint *cl = bundle_find_endpoint(b, "client-1");
	CHECK(cl && cl->chains[DIR_EGRESS].n_rules == 2);
	if (cl && cl->chains[DIR_EGRESS].n_rules == 2) {
		const struct bundle_rule *deny = &cl->chains[DIR_EGRESS].rules[0];
		const struct bundle_rule *allow = &cl->chains[DIR_EGRESS].rules[1];
		CHECK(deny->n_ports == 1 && deny->ports[0].named_table == 0);
		CHECK_STR(deny->ports[0].name, "admin");
		CHECK(allow->n_ports == 2 && allow->ports[0].named_table == 1 && !allow->ports[1].name);
		CHECK_STR(allow->ports[0].name, "http");
	}
	bundle_free(b);
}

TEST(named_ports_table_element_changes_the_hash_only_when_there)
{
	/* The sample has no names: its bundle has no "named_ports" key. */
	struct bundle *plain = compile_sample(), *b = compile_named();
	json_t *jp = plain ? bundle_to_json(plain) : NULL;
	CHECK(jp && json_object_get(jp, "named_ports") == NULL);
	json_decref(jp);
	if (b && b->n_named_ports == 2) {
		char before[BUNDLE_HASH_HEX + 1];
		memcpy(before, b->hash, sizeof(before));
		b->named_ports[1].v[0].port = 8082;
		CHECK(bundle_update_hash(b) == 0 && strcmp(before, b->hash) != 0);
	}
	bundle_free(plain);
	bundle_free(b);
}

/* Decodes the named-port bundle after edit() changed its JSON. */
static size_t decode_named_edited(void (*edit)(json_t *root), struct diag *d)
{
	struct bundle *b = compile_named();
	json_t *root = b ? bundle_to_json(b) : NULL;
	diag_init(d, "edited");
	if (!root) {
		bundle_free(b);
		return 0;
	}
	edit(root);
	/* Rehash what was edited: the checks below must stand on their own. */
	json_object_del(root, "hash");
	char *text = json_dumps(root, JSON_COMPACT);
	char hash[BUNDLE_HASH_HEX + 1];
	sha256_hex(text, strlen(text), hash);
	free(text);
	json_object_set_new(root, "hash", json_string(hash));
	struct bundle *back = bundle_from_json(root, d);
	size_t n = back ? 0 : d->n;
	bundle_free(back);
	json_decref(root);
	bundle_free(b);
	return n;
}

static json_t *named_tables(json_t *root)
{
	return json_object_get(root, "named_ports");
}
static json_t *client_egress_rule(json_t *root, size_t i)
{
	json_t *ep = json_array_get(json_object_get(root, "endpoints"), 0); /* client-1 */
	return json_array_get(json_object_get(json_object_get(ep, "egress"), "rules"), i);
}
static void edit_nothing(json_t *root)
{
	(void)root;
}
static void edit_named_ingress(json_t *root)
{
	json_t *ep = json_array_get(json_object_get(root, "endpoints"), 1); /* db-1 */
	json_t *rule = json_array_get(json_object_get(json_object_get(ep, "ingress"), "rules"), 0);
	json_object_set_new(rule, "ports", json_pack("[s]", "tcp/pg"));
}
static void edit_named_no_table(json_t *root)
{
	json_object_set_new(client_egress_rule(root, 1), "ports", json_pack("[s]", "tcp/gopher"));
}
static void edit_named_wrong_action(json_t *root)
{
	/* The allow rule's tcp/admin needs "tcp/admin", not "tcp/admin#deny". */
	json_object_set_new(client_egress_rule(root, 1), "ports", json_pack("[s]", "tcp/admin"));
}
static void edit_named_port_range(json_t *root)
{
	json_t *t = json_array_get(named_tables(root), 1);
	json_array_append_new(json_object_get(t, "v4"), json_pack("[s,i]", "198.18.0.7", 0));
	json_array_append_new(json_object_get(t, "v4"), json_pack("[s,i]", "198.18.0.8", 65536));
	json_array_append_new(json_object_get(t, "v4"), json_pack("[s,s]", "198.18.0.8", "80"));
	json_array_append_new(json_object_get(t, "v4"), json_pack("[s,i,i]", "198.18.0.8", 80, 81));
	json_array_append_new(json_object_get(t, "v4"), json_pack("[s,i]", "2001:db8::7", 80));
	json_array_append_new(json_object_get(t, "v6"), json_string("2001:db8::7"));
}
static void edit_named_duplicates(json_t *root)
{
	json_t *t = json_array_get(named_tables(root), 1);
	json_array_append_new(json_object_get(t, "v4"), json_pack("[s,i]", "198.18.0.1", 8080));
	json_array_append_new(named_tables(root), json_deep_copy(json_array_get(named_tables(root), 0)));
}
static void edit_named_ids(json_t *root)
{
	json_t *tables = named_tables(root);
	const char *bad[] = {"tcp/8080", "icmp/echo", "tcp/HTTP", "http", "tcp/http#allow"};
	for (size_t i = 0; i < BH_ARRAY_SIZE(bad); i++)
		json_array_append_new(tables, json_pack("{s:s,s:[],s:[]}", "id", bad[i], "v4", "v6"));
	json_array_append_new(tables, json_pack("{s:s,s:[]}", "id", "udp/dns", "v4")); /* no v6 */
	json_object_set_new(json_array_get(tables, 0), "extra", json_true());
}
static void edit_named_empty(json_t *root)
{
	json_array_clear(named_tables(root));
}

TEST(named_ports_decode_refuses_what_a_hostile_peer_sends)
{
	struct diag d;
	CHECK(decode_named_edited(edit_nothing, &d) == 0);
	diag_release(&d);
	/* An ingress rule carries numbers only. */
	CHECK(decode_named_edited(edit_named_ingress, &d) == 1);
	if (d.n)
		CHECK_STR(d.v[0].path, "/endpoints/1/ingress/rules/0/ports/0");
	diag_release(&d);
	CHECK(decode_named_edited(edit_named_no_table, &d) == 1);
	diag_release(&d);
	CHECK(decode_named_edited(edit_named_wrong_action, &d) == 1);
	diag_release(&d);
	CHECK(decode_named_edited(edit_named_port_range, &d) == 6);
	diag_release(&d);
	/* A pair twice, a table twice. */
	CHECK(decode_named_edited(edit_named_duplicates, &d) == 2);
	diag_release(&d);
	/* Five bad ids, a missing "v6", an unknown key. */
	CHECK(decode_named_edited(edit_named_ids, &d) == 7);
	diag_release(&d);
	CHECK(decode_named_edited(edit_named_empty, &d) >= 1);
	if (d.n)
		CHECK_STR(d.v[0].path, "/named_ports");
	diag_release(&d);
}

/* Scenario files: every node's bundle round-trips and recompiles equal. */
static void run_scenario(const char *path)
{
	struct scenario sc;
	bool ok = scenario_load(path, &sc) == 0;
	const char **nodes = ok ? inventory_nodes(sc.inv) : NULL;
	for (const char **n = nodes; n && *n; n++) {
		struct bundle *a = compile_bundle(sc.doc, sc.inv, *n),
			      *b = compile_bundle(sc.doc, sc.inv, *n);
		char *ta = a ? bundle_encode(a, false) : NULL, *tb = b ? bundle_encode(b, false) : NULL;
		ok &= ta && tb && strcmp(ta, tb) == 0 && round_trips(a) && hash_is_the_plain_one(a);
		free(ta);
		free(tb);
		bundle_free(a);
		bundle_free(b);
	}
	char name[512];
	snprintf(name, sizeof(name), "round trip %s", strrchr(path, '/') ? strrchr(path, '/') + 1 : path);
	test_report(name, ok && nodes);
	if (nodes)
		scenario_release(&sc);
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		run_scenario(argv[i]);
	return test_main();
}
