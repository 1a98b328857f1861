/* Wire protocol codec (proto.h): every message type round-trips; hostile
 * frames are refused with a reason; set deltas turn one bundle into the
 * next exactly (the hash says so) and are refused when rules changed. */
#include <errno.h>
#include <stdlib.h>

#include "bulkhead/bundle.h"
#include "bulkhead/compile.h"
#include "bulkhead/inventory.h"
#include "bulkhead/proto.h"
#include "scenario.h"
#include "test.h"

#define HASH_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

static int decode(const char *type, const char *body, struct proto_msg *m, char *err)
{
	return proto_decode(type, strlen(type), body, strlen(body), m, err, 256);
}

static bool accepted(const char *type, const char *body)
{
	struct proto_msg m;
	char err[256];
	int r = decode(type, body, &m, err);
	if (r == 0)
		proto_msg_release(&m);
	else
		fprintf(stderr, "  refused %s %s: %s\n", type, body, err);
	return r == 0;
}

static bool refused(const char *type, const char *body, const char *want)
{
	struct proto_msg m;
	char err[256];
	int r = decode(type, body, &m, err);
	if (r == 0) {
		proto_msg_release(&m);
		return false;
	}
	if (!strstr(err, want)) {
		fprintf(stderr, "  %s: got \"%s\", want \"%s\"\n", type, err, want);
		return false;
	}
	return true;
}

TEST(every_type_round_trips)
{
	static const char *const bodies[PROTO_TYPE_COUNT] = {
	    [PROTO_HELLO] =
		"{\"node\":\"n1\",\"agent\":\"0.1\",\"revision\":null,\"hash\":null,\"endpoints\":[]}",
	    [PROTO_BUNDLE] = "{\"revision\":3,\"bundle\":{}}",
	    [PROTO_DELTA] =
		"{\"revision\":3,\"base\":\"" HASH_A "\",\"hash\":\"" HASH_A "\",\"sets\":[{\"id\":\"web\","
		"\"ipv4\":{\"add\":[\"198.18.0.1\"],\"remove\":[]}}]}",
	    [PROTO_ACK] = "{\"revision\":3,\"hash\":\"" HASH_A "\",\"ok\":false,\"error\":null,"
			  "\"endpoints\":[{\"name\":\"a\",\"applied\":null,\"error\":\"boom\"}]}",
	    [PROTO_ENDPOINTS] = "{\"endpoints\":[{\"name\":\"a\"}]}",
	    [PROTO_HEARTBEAT] = "{}",
	    [PROTO_FLOWS] =
		"{\"epoch\":1,\"seq\":1,\"start\":5,\"end\":6,\"lost\":[{\"endpoint\":\"a\","
		"\"enobufs\":0,\"gap\":2,\"spool\":0}],\"flows\":[{\"endpoint\":\"a\",\"dir\":\"ingress\","
		"\"src\":\"198.18.0.1\",\"dst\":\"198.18.0.2\",\"proto\":\"udp\",\"port\":53,"
		"\"verdict\":\"deny\",\"policy\":null,\"rule\":\"default-deny\",\"count\":3,"
		"\"first\":5,\"last\":6}],\"hits\":[{\"endpoint\":\"a\",\"dir\":\"egress\","
		"\"rule\":\"p/egress/0\",\"policy\":\"p\",\"verdict\":\"allow\",\"packets\":4,"
		"\"bytes\":240}]}",
	    [PROTO_FLOWS_ACK] = "{\"epoch\":1,\"seq\":1,\"rejected\":\"flows[0]: bad\"}",
	    [PROTO_RESYNC] = "{\"reason\":\"x\"}",
	    [PROTO_REFUSED] = "{\"reason\":\"x\"}",
	};
	for (int t = 0; t < PROTO_TYPE_COUNT; t++) {
		json_t *body = json_loads(bodies[t], 0, NULL);
		CHECK(body != NULL);
		size_t len;
		char *text = proto_encode(json_deep_copy(body), &len);
		struct proto_msg m;
		char err[256];
		const char *name = proto_type_name(t);
		CHECK(text && proto_decode(name, strlen(name), text, len, &m, err, sizeof(err)) == 0);
		if (text && m.body) {
			CHECK(m.type == (enum proto_type)t);
			json_object_del(m.body, "v");
			CHECK(json_equal(m.body, body));
			proto_msg_release(&m);
		}
		free(text);
		json_decref(body);
	}
}

TEST(hostile_frames_are_refused_with_a_reason)
{
	CHECK(refused("HELO", "{\"v\":1}", "unknown message type \"HELO\""));
	CHECK(refused("", "{\"v\":1}", "unknown message type"));
	CHECK(refused("HEARTBEAT", "", "not JSON"));
	CHECK(refused("HEARTBEAT", "{\"v\":1", "not JSON"));
	CHECK(refused("HEARTBEAT", "[1]", "not a JSON object"));
	CHECK(refused("HEARTBEAT", "{}", "version missing"));
	CHECK(refused("HEARTBEAT", "{\"v\":2}", "version other"));
	CHECK(refused("HEARTBEAT", "{\"v\":1,\"v\":1}", "not JSON")); /* duplicate keys */
	CHECK(refused("HEARTBEAT", "{\"v\":1,\"hash\":\"abc\"}", "\"hash\" must be a SHA-256"));
	CHECK(refused("HELLO", "{\"v\":1,\"agent\":\"x\",\"endpoints\":[]}", "\"node\" missing"));
	CHECK(refused("HELLO", "{\"v\":1,\"node\":7,\"agent\":\"x\",\"endpoints\":[]}",
		      "\"node\" must be a string"));
	CHECK(refused("HELLO", "{\"v\":1,\"node\":\"n\",\"agent\":\"x\",\"endpoints\":[1]}",
		      "array of objects"));
	CHECK(refused("HELLO", "{\"v\":1,\"node\":\"n\",\"agent\":\"x\",\"revision\":-1,\"endpoints\":[]}",
		      "integer >= 0"));
	CHECK(refused("ACK", "{\"v\":1,\"revision\":1,\"ok\":\"yes\",\"endpoints\":[]}", "true or false"));
	CHECK(refused("ACK", "{\"v\":1,\"revision\":1,\"ok\":true,\"endpoints\":[{\"applied\":null}]}",
		      "endpoints[0]: \"name\" missing"));
	CHECK(refused("DELTA",
		      "{\"v\":1,\"revision\":1,\"base\":\"" HASH_A "\",\"hash\":\"" HASH_A
		      "\",\"sets\":[{\"id\":\"x\","
		      "\"ipv6\":{\"add\":[1]}}]}",
		      "sets[0].ipv6 must be an array of strings"));
	CHECK(refused("RESYNC", "{\"v\":1}", "\"reason\" missing"));
	CHECK(refused("FLOWS",
		      "{\"v\":1,\"epoch\":1,\"seq\":1,\"start\":1,\"end\":1,\"lost\":[],\"flows\":[{}]}",
		      "flows[0]: \"endpoint\" missing"));
	CHECK(refused(
	    "FLOWS",
	    "{\"v\":1,\"epoch\":1,\"seq\":1,\"start\":1,\"end\":1,\"lost\":[],\"flows\":[{\"endpoint\":\"a\","
	    "\"dir\":\"in\",\"src\":\"198.18.0.1\",\"dst\":\"198.18.0.2\",\"proto\":\"udp\",\"verdict\":"
	    "\"deny\","
	    "\"rule\":\"r\","
	    "\"count\":1,\"first\":1,\"last\":1}]}",
	    "flows[0]: \"dir\" must be \"ingress\" or \"egress\""));
	CHECK(refused("FLOWS",
		      "{\"v\":1,\"epoch\":1,\"seq\":-3,\"start\":1,\"end\":1,\"lost\":[],\"flows\":[]}",
		      "\"seq\" must be an integer from 0 to 9007199254740992"));
	CHECK(refused(
	    "FLOWS",
	    "{\"v\":1,\"epoch\":1,\"seq\":1,\"start\":1,\"end\":1,\"lost\":[],\"flows\":[],\"hits\":[{"
	    "\"endpoint\":\"a\",\"dir\":\"ingress\",\"rule\":\"r\",\"verdict\":\"pass\",\"packets\":1,"
	    "\"bytes\":1}]}",
	    "hits[0]: \"verdict\" must be \"allow\", \"deny\" or \"audit\""));
	CHECK(refused(
	    "FLOWS",
	    "{\"v\":1,\"epoch\":1,\"seq\":1,\"start\":1,\"end\":1,\"lost\":[],\"flows\":[],\"hits\":[{"
	    "\"endpoint\":\"a\",\"dir\":\"ingress\",\"rule\":\"r\",\"verdict\":\"allow\",\"packets\":-1,"
	    "\"bytes\":1}]}",
	    "hits[0]: \"packets\" must be an integer from 0 to 1099511627776"));
	CHECK(refused("FLOWS",
		      "{\"v\":1,\"epoch\":1,\"seq\":1,\"start\":1,\"end\":1,\"lost\":[],\"flows\":[],"
		      "\"hits\":{}}",
		      "\"hits\" must be an array of at most 8192 objects"));
	CHECK(refused("FLOWS_ACK", "{\"v\":1,\"epoch\":1}", "\"seq\" missing"));
	/* Unknown members are room to grow, not errors. */
	CHECK(accepted("HEARTBEAT", "{\"v\":1,\"future\":[1,2]}"));
	CHECK(accepted("HEARTBEAT", "{\"v\":1,\"revision\":null}"));
}

/* A FLOWS body with one flow's members and the lost list as given. */
static char *flows_body(const char *flow, const char *lost)
{
	char *s = NULL;
	if (asprintf(
		&s,
		"{\"v\":1,\"epoch\":1700000000000,\"seq\":1,\"start\":1700000000000,\"end\":1700000001000,"
		"\"flows\":[{%s}],\"lost\":[%s]}",
		flow, lost) < 0)
		abort();
	return s;
}

#define FLOW_OF(src, dst, port, count)                                                                       \
	"\"endpoint\":\"a\",\"dir\":\"ingress\",\"src\":\"" src "\",\"dst\":\"" dst "\",\"proto\":\"udp\","  \
	"\"port\":" port ",\"verdict\":\"deny\",\"rule\":\"default-deny\",\"count\":" count                  \
	",\"first\":1700000000500,\"last\":1700000000900"
#define GOOD_FLOW FLOW_OF("198.18.0.1", "198.18.0.2", "53", "3")

static bool flows_refused(const char *flow, const char *lost, const char *want)
{
	char *body = flows_body(flow, lost);
	bool ok = refused("FLOWS", body, want);
	free(body);
	return ok;
}

TEST(flows_numbers_and_names_keep_to_their_ranges)
{
	char *body =
	    flows_body(GOOD_FLOW, "{\"endpoint\":\"a\",\"enobufs\":1,\"gap\":1099511627776,\"spool\":0}");
	CHECK(accepted("FLOWS", body)); /* 2^40: the largest count */
	free(body);
	/* Two of 2^62 overflowed the controller's sums: out of range now. */
	CHECK(flows_refused(GOOD_FLOW,
			    "{\"endpoint\":\"a\",\"enobufs\":0,\"gap\":4611686018427387904,\"spool\":0}",
			    "lost[0]: \"gap\" must be an integer from 0 to 1099511627776"));
	CHECK(flows_refused(FLOW_OF("198.18.0.1", "198.18.0.2", "53", "1099511627777"), "",
			    "flows[0]: \"count\" must be an integer from 0 to 1099511627776"));
	CHECK(flows_refused(FLOW_OF("198.18.0.1", "198.18.0.2", "65536", "1"), "",
			    "flows[0]: \"port\" must be an integer from 0 to 65535"));
	CHECK(flows_refused(FLOW_OF("not-an-address", "198.18.0.2", "53", "1"), "",
			    "flows[0]: \"src\" must be an IPv4 or IPv6 address"));
	CHECK(flows_refused(FLOW_OF("198.18.0.0/24", "198.18.0.2", "53", "1"), "",
			    "flows[0]: \"src\" must be an IPv4 or IPv6 address"));
	CHECK(flows_refused(FLOW_OF("198.18.0.1", "2001:db8::2", "53", "1"), "",
			    "flows[0]: \"src\" and \"dst\" must be of one address family"));
	char name[300], lost[512];
	memset(name, 'x', 254);
	name[254] = '\0';
	snprintf(lost, sizeof(lost), "{\"endpoint\":\"%s\",\"enobufs\":0,\"gap\":1,\"spool\":0}", name);
	CHECK(flows_refused(GOOD_FLOW, lost, "lost[0]: \"endpoint\" must be a string of at most 253 bytes"));
	/* Times: a year 10000 is no time. */
	CHECK(refused("FLOWS",
		      "{\"v\":1,\"epoch\":1,\"seq\":1,\"start\":1,\"end\":253402300800000,\"flows\":[],"
		      "\"lost\":[]}",
		      "FLOWS: \"end\" must be an integer from 0 to 253402300799999"));
	/* A list longer than a window holds. */
	json_t *big = json_pack("{s:i,s:i,s:i,s:i,s:i,s:[],s:o}", "v", 1, "epoch", 1, "seq", 1, "start", 1,
				"end", 1, "flows", "lost", json_array());
	for (int i = 0; i <= PROTO_FLOWS_MAX; i++)
		json_array_append_new(json_object_get(big, "lost"), json_object());
	char *text = json_dumps(big, JSON_COMPACT);
	CHECK(text && refused("FLOWS", text, "\"lost\" must be an array of at most 8192 objects"));
	free(text);
	json_decref(big);
	CHECK(refused("FLOWS_ACK", "{\"v\":1,\"epoch\":1,\"seq\":1,\"rejected\":7}",
		      "\"rejected\" must be a string"));
}

TEST(a_malformed_batch_can_still_be_named_for_its_rejection)
{
	int64_t epoch = 0, seq = 0;
	static const char bad[] = "{\"v\":1,\"epoch\":17,\"seq\":4,\"flows\":\"nonsense\"}";
	CHECK(proto_flows_key(bad, strlen(bad), &epoch, &seq) == 0 && epoch == 17 && seq == 4);
	static const char *const unnamed[] = {
	    "{\"v\":1,\"epoch\":17}",
	    "{\"v\":1,\"epoch\":17,\"seq\":-4}",
	    "{\"v\":2,\"epoch\":17,\"seq\":4}",
	    "{\"epoch\":17,\"seq\":4}",
	    "[1]",
	    "{\"v\":1,\"epoch\":17,\"seq\":4",
	    "{\"v\":1,\"epoch\":17,\"seq\":4.5}",
	    "{\"v\":1,\"epoch\":1e300,\"seq\":4}",
	};
	for (size_t i = 0; i < BH_ARRAY_SIZE(unnamed); i++) {
		epoch = seq = 99;
		CHECK(proto_flows_key(unnamed[i], strlen(unnamed[i]), &epoch, &seq) == -EINVAL &&
		      epoch == 99 && seq == 99);
	}
	/* Agents before rejections read a rejection as an acknowledgement:
	 * epoch and seq where they were, the rest is room to grow. */
	CHECK(accepted("FLOWS_ACK", "{\"v\":1,\"epoch\":17,\"seq\":4,\"rejected\":\"flows[0]: bad\"}"));
}

/* Bundle JSON of node n1, where db-1 (198.18.0.3, app=db) lives, under
 * policy, with the endpoints of node n2 as given (a JSON list's items). */
static json_t *n1_bundle(const char *policy, const char *n2_endpoints_json)
{
	char n2[4200];
	snprintf(n2, sizeof(n2), "{\"node\":\"n2\",\"endpoints\":[%s]}", n2_endpoints_json);
	const char *const inventories[] = {
	    "{\"node\":\"n1\",\"endpoints\":[{\"name\":\"db-1\",\"labels\":{\"app\":\"db\"},\"addresses\":["
	    "\"198.18.0.3\"]}]}",
	    n2};
	struct bundle *b = scenario_compile_nodes(policy, inventories, 2, "n1", INVENTORY_NEED_ADDRESSES);
	json_t *out = b ? bundle_to_json(b) : NULL;
	bundle_free(b);
	return out;
}

/* Bundle JSON of node n1 with web members as given. */
static json_t *bundle_with(const char *web_members_json, const char *web_ports)
{
	char policy[1024];
	snprintf(policy, sizeof(policy),
		 "{\"version\":1,\"groups\":{\"web\":{\"labels\":{\"app\":\"web\"}},\"db\":{\"labels\":{"
		 "\"app\":\"db\"}},"
		 "\"net\":{\"cidrs\":[\"198.51.100.0/24\"],\"except\":[\"198.51.100.7\"]}},"
		 "\"policies\":[{\"name\":\"db-in\",\"applies_to\":\"db\",\"ingress\":[{\"from\":[\"web\","
		 "\"net\"],"
		 "\"ports\":[\"%s\"]}]}]}",
		 web_ports);
	return n1_bundle(policy, web_members_json);
}

/* The agent's way to the next bundle: the delta applied to the decoded
 * bundle held (bundle_apply_delta), then held to the hash sent with it.
 * NULL when it refuses, the reasons in d. */
static struct bundle *agent_applies(json_t *from, json_t *sets, const char *hash, struct diag *d)
{
	struct bundle *base = bundle_from_json(from, d);
	struct bundle *b = base ? bundle_apply_delta(base, sets, d) : NULL;

	bundle_free(base);
	return b ? bundle_hash_checked(b, hash, d) : NULL;
}

/* The agent refuses sets applied to from (with from's own hash) with
 * one problem, at path. */
static bool agent_refuses_at(json_t *from, json_t *sets, const char *path)
{
	struct diag d;
	diag_init(&d, "delta");
	bool ok = sets &&
		  agent_applies(from, sets, json_string_value(json_object_get(from, "hash")), &d) == NULL &&
		  d.n == 1 && strcmp(d.v[0].path, path) == 0;
	if (!ok)
		diag_print(&d, stderr);
	diag_release(&d);
	return ok;
}

/* The delta from one bundle to the other gives the other: applied to the
 * JSON (proto_delta_apply, the reference) and applied by the agent. */
static bool delta_gives(json_t *from, json_t *to)
{
	json_t *sets = proto_delta_make(from, to);
	if (!sets)
		return false;
	const char *hash = json_string_value(json_object_get(to, "hash"));
	struct diag d;
	diag_init(&d, "delta");
	json_t *next = proto_delta_apply(from, sets, &d);
	bool ok = false;
	if (next) {
		json_object_set(next, "hash", json_object_get(to, "hash"));
		struct bundle *b = bundle_from_json(next, &d);
		ok = b && strcmp(b->hash, hash) == 0;
		bundle_free(b);
	}
	struct bundle *a = agent_applies(from, sets, hash, &d);
	char *got = a ? bundle_encode(a, false) : NULL, *want = json_dumps(to, JSON_COMPACT);
	ok = ok && got && want && strcmp(got, want) == 0;
	free(got);
	free(want);
	bundle_free(a);
	diag_print(&d, stderr);
	diag_release(&d);
	json_decref(next);
	json_decref(sets);
	return ok;
}

TEST(set_deltas_turn_one_bundle_into_the_next)
{
	const char *w1 = "{\"name\":\"web-1\",\"labels\":{\"app\":\"web\"},\"addresses\":[\"198.18.0.10\","
			 "\"2001:db8::10\"]}";
	const char *w2 = ",{\"name\":\"web-2\",\"labels\":{\"app\":\"web\"},\"addresses\":[\"198.18.0.5\"]}";
	char both[1024];
	snprintf(both, sizeof(both), "%s%s", w1, w2);
	json_t *none = bundle_with("", "tcp/5432"), *one = bundle_with(w1, "tcp/5432"),
	       *two = bundle_with(both, "tcp/5432"), *other_rules = bundle_with(w1, "tcp/5433");
	CHECK(none && one && two && other_rules);
	if (!none || !one || !two || !other_rules)
		return;
	CHECK(delta_gives(none, one));
	CHECK(delta_gives(one, two));
	CHECK(delta_gives(two, one));
	CHECK(delta_gives(two, none));
	CHECK(delta_gives(one, one)); /* empty delta: a revision stamp */
	json_t *sets = proto_delta_make(one, two);
	CHECK(json_array_size(sets) == 1);
	CHECK_STR(json_string_value(json_object_get(json_array_get(sets, 0), "id")), "web");
	json_decref(sets);
	/* Rules changed: no delta, the whole bundle is needed. */
	CHECK(proto_delta_make(one, other_rules) == NULL);

	/* A delta that names a set the base lacks is refused. */
	struct diag d;
	diag_init(&d, "delta");
	json_t *bad = json_loads("[{\"id\":\"nope\",\"ipv4\":{\"add\":[\"198.18.0.1\"]}}]", 0, NULL);
	CHECK(proto_delta_apply(one, bad, &d) == NULL && d.n == 1);
	diag_release(&d);
	CHECK(agent_refuses_at(one, bad, "/sets/0/id"));
	json_decref(bad);
	/* Elements the agent refuses, as decoding a bundle refuses them: not
	 * an address, the other family, a range in a hosts set; in a removal
	 * too. Each is named by its place. */
	static const struct {
		const char *sets, *path;
	} refusals[] = {
	    {"[{\"id\":\"web\",\"ipv4\":{\"add\":[\"198.18.0.1\",\"nope\"],\"remove\":[]}}]",
	     "/sets/0/ipv4/add/1"},
	    {"[{\"id\":\"web\",\"ipv4\":{\"add\":[\"2001:db8::1\"],\"remove\":[]}}]", "/sets/0/ipv4/add/0"},
	    {"[{\"id\":\"web\",\"ipv6\":{\"add\":[],\"remove\":[\"2001:db8::/64\"]}}]",
	     "/sets/0/ipv6/remove/0"},
	    {"[{\"id\":\"web\",\"ipv4\":{\"add\":[\"198.18.0.1\"]}},{\"id\":\"net\",\"ipv4\":7}]",
	     "/sets/1/ipv4"},
	};
	for (size_t i = 0; i < BH_ARRAY_SIZE(refusals); i++) {
		bad = json_loads(refusals[i].sets, 0, NULL);
		CHECK(agent_refuses_at(one, bad, refusals[i].path));
		json_decref(bad);
	}
	/* A delta applied to the wrong base fails the hash check. */
	sets = proto_delta_make(one, two);
	diag_init(&d, "delta");
	json_t *next = proto_delta_apply(none, sets, &d);
	if (next) {
		json_object_set(next, "hash", json_object_get(two, "hash"));
		struct bundle *b = bundle_from_json(next, &d);
		CHECK(b == NULL);
		bundle_free(b);
	}
	diag_release(&d);
	diag_init(&d, "delta");
	CHECK(agent_applies(none, sets, json_string_value(json_object_get(two, "hash")), &d) == NULL);
	CHECK(d.n == 1 && strstr(d.v[0].message, "hash mismatch"));
	diag_release(&d);
	json_decref(next);
	json_decref(sets);
	json_decref(none);
	json_decref(one);
	json_decref(two);
	json_decref(other_rules);
}

/* Bundle JSON of node n1, whose db-1 reaches web on tcp/http and denies
 * tcp/admin anywhere; the web members (on n2) as given. */
static json_t *named_bundle_with(const char *web_members_json)
{
	static const char policy[] =
	    "{\"version\":1,\"groups\":{\"web\":{\"labels\":{\"app\":\"web\"}}},\"policies\":[{\"name\":"
	    "\"db-out\",\"applies_to\":{\"labels\":{\"app\":\"db\"}},\"egress\":[{\"action\":\"deny\","
	    "\"ports\":[\"tcp/admin\"]},{\"to\":[\"web\"],\"ports\":[\"tcp/http\"]}]}]}";
	return n1_bundle(policy, web_members_json);
}

TEST(named_port_table_deltas_turn_one_bundle_into_the_next)
{
	static const char w1[] = "{\"name\":\"web-1\",\"labels\":{\"app\":\"web\"},\"addresses\":[\"198.18.0."
				 "10\",\"2001:db8::10\"],\"ports\":{\"http\":\"tcp/8080\"}}";
	static const char w1_renumbered[] = "{\"name\":\"web-1\",\"labels\":{\"app\":\"web\"},\"addresses\":["
					    "\"198.18.0.10\",\"2001:db8::10\"],\"ports\":{\"http\":\"tcp/"
					    "8081\",\"admin\":\"tcp/9000\"}}";
	static const char w2[] =
	    ",{\"name\":\"web-2\",\"labels\":{\"app\":\"web\"},\"addresses\":[\"198.18.0."
	    "5\"],\"ports\":{\"http\":\"tcp/80\"}}";
	char both[1024];
	snprintf(both, sizeof(both), "%s%s", w1, w2);
	json_t *none = named_bundle_with(""), *one = named_bundle_with(w1), *two = named_bundle_with(both),
	       *renumbered = named_bundle_with(w1_renumbered);
	CHECK(none && one && two && renumbered);
	if (!none || !one || !two || !renumbered)
		goto out;
	/* Tables "tcp/admin#deny" and "tcp/http", empty or not. */
	CHECK(json_array_size(json_object_get(none, "named_ports")) == 2);
	CHECK(delta_gives(none, one));
	CHECK(delta_gives(one, two));
	CHECK(delta_gives(two, none));
	CHECK(delta_gives(one, renumbered));
	CHECK(delta_gives(renumbered, one));
	/* web-1 renumbers http and gains admin: an element change in each
	 * table, after the set's (web's members are the same). */
	json_t *sets = proto_delta_make(one, renumbered);
	CHECK(json_array_size(sets) == 2);
	json_t *http = json_array_get(sets, 1), *admin = json_array_get(sets, 0);
	CHECK_STR(json_string_value(json_object_get(admin, "named_port")), "tcp/admin#deny");
	CHECK_STR(json_string_value(json_object_get(http, "named_port")), "tcp/http");
	json_t *want =
	    json_loads("{\"add\":[[\"198.18.0.10\",8081]],\"remove\":[[\"198.18.0.10\",8080]]}", 0, NULL);
	CHECK(json_equal(json_object_get(http, "v4"), want));
	json_decref(want);
	/* A delta travels in a DELTA message as the agent checks it. */
	char *text = json_dumps(sets, JSON_COMPACT), body[4096];
	snprintf(body, sizeof(body),
		 "{\"v\":1,\"revision\":2,\"base\":\"" HASH_A "\",\"hash\":\"" HASH_A "\",\"sets\":%s}",
		 text);
	CHECK(accepted("DELTA", body));
	free(text);
	json_decref(sets);

	/* A table that comes or goes (here: rules that name no port any
	 * more) is a full bundle. */
	json_t *no_tables = json_deep_copy(one);
	json_object_del(no_tables, "named_ports");
	CHECK(proto_delta_make(no_tables, one) == NULL && proto_delta_make(one, no_tables) == NULL);
	json_decref(no_tables);

	/* A delta that names a table the base lacks is refused, and one that
	 * says "id" for a table names a set. */
	struct diag d;
	diag_init(&d, "delta");
	json_t *bad = json_loads("[{\"named_port\":\"tcp/gopher\",\"v4\":{\"add\":[[\"198.18.0.1\",70]]}},"
				 "{\"id\":\"tcp/http\",\"v4\":{\"add\":[[\"198.18.0.1\",70]]}}]",
				 0, NULL);
	CHECK(proto_delta_apply(one, bad, &d) == NULL && d.n == 2);
	if (d.n == 2) {
		CHECK_STR(d.v[0].path, "/sets/0/named_port");
		CHECK_STR(d.v[1].path, "/sets/1/id");
	}
	diag_release(&d);
	diag_init(&d, "delta");
	CHECK(agent_applies(one, bad, json_string_value(json_object_get(one, "hash")), &d) == NULL &&
	      d.n == 2);
	if (d.n == 2) {
		CHECK_STR(d.v[0].path, "/sets/0/named_port");
		CHECK_STR(d.v[1].path, "/sets/1/id");
	}
	diag_release(&d);
	json_decref(bad);
	/* Elements a hostile controller sends that are no pairs. */
	CHECK(refused("DELTA",
		      "{\"v\":1,\"revision\":1,\"base\":\"" HASH_A "\",\"hash\":\"" HASH_A
		      "\",\"sets\":[{\"named_port\":\"tcp/http\",\"v4\":{\"add\":[\"198.18.0.1\"]}}]}",
		      "sets[0].v4 must be an array of [ADDRESS, PORT] pairs"));
	CHECK(refused("DELTA",
		      "{\"v\":1,\"revision\":1,\"base\":\"" HASH_A "\",\"hash\":\"" HASH_A
		      "\",\"sets\":[{\"named_port\":7}]}",
		      "sets[0]: \"named_port\" must be"));
	/* A pair the decoder refuses (port 0) fails when the bundle is read. */
	bad = json_loads("[{\"named_port\":\"tcp/http\",\"v4\":{\"add\":[[\"198.18.0.1\",0]]}}]", 0, NULL);
	diag_init(&d, "delta");
	json_t *next = proto_delta_apply(one, bad, &d);
	CHECK(next != NULL);
	struct bundle *b = next ? bundle_from_json(next, &d) : NULL;
	CHECK(b == NULL && d.n >= 1);
	bundle_free(b);
	json_decref(next);
	diag_release(&d);
	/* The agent refuses it, and a pair it holds added once more. */
	CHECK(agent_refuses_at(one, bad, "/sets/0/v4/add/0"));
	json_decref(bad);
	bad =
	    json_loads("[{\"named_port\":\"tcp/http\",\"v4\":{\"add\":[[\"198.18.0.10\",8080]]}}]", 0, NULL);
	diag_init(&d, "delta");
	CHECK(agent_applies(one, bad, json_string_value(json_object_get(one, "hash")), &d) == NULL &&
	      d.n == 1);
	if (d.n == 1)
		CHECK(strstr(d.v[0].message, "more than once") != NULL);
	diag_release(&d);
	json_decref(bad);
out:
	json_decref(none);
	json_decref(one);
	json_decref(two);
	json_decref(renumbered);
}

/* A bundle of node n1 made at random: web's members (on n2) with random
 * addresses of both families and random numbers for tcp/http, and the
 * network group net of random, overlapping and touching CIDRs with an
 * except; the rules the same every time, so any two are a delta apart. */
static json_t *random_bundle(unsigned *seed)
{
	char cidrs[512] = "", except[64], members[4096] = "";
	size_t n = 0, m = 0;
	int k = 1 + rand_r(seed) % 4;

	for (int i = 0; i < k; i++) {
		int bits = 26 + rand_r(seed) % 7, step = 1 << (32 - bits),
		    base = (rand_r(seed) % (256 / step)) * step;

		n += (size_t)snprintf(cidrs + n, sizeof(cidrs) - n, "%s\"198.51.100.%d/%d\"", i ? "," : "",
				      base, bits);
		if (i == 0) /* inside the first CIDR, as an except must be */
			snprintf(except, sizeof(except), "\"198.51.100.%d\"", base + rand_r(seed) % step);
	}
	for (int i = 0, w = rand_r(seed) % 6; i < w; i++) {
		int a = rand_r(seed) % 16;

		m += (size_t)snprintf(
		    members + m, sizeof(members) - m,
		    "%s{\"name\":\"web-%d\",\"labels\":{\"app\":\"web\"},\"addresses\":[\"198.18.0.%d\""
		    "%s],\"ports\":{\"http\":\"tcp/%d\"}}",
		    i ? "," : "", i, 16 + a, rand_r(seed) % 2 ? ",\"2001:db8::10\"" : "",
		    8080 + rand_r(seed) % 3);
	}
	char policy[2048];
	snprintf(policy, sizeof(policy),
		 "{\"version\":1,\"groups\":{\"web\":{\"labels\":{\"app\":\"web\"}},\"db\":{\"labels\":{"
		 "\"app\":\"db\"}},\"net\":{\"cidrs\":[%s],\"except\":[%s]}},\"policies\":[{\"name\":"
		 "\"db\",\"applies_to\":\"db\",\"ingress\":[{\"from\":[\"web\",\"net\"],\"ports\":[\"tcp/"
		 "5432\"]}],\"egress\":[{\"to\":[\"web\"],\"ports\":[\"tcp/http\"]}]}]}",
		 cidrs, except);
	return n1_bundle(policy, members);
}

/* Random pairs of bundles: the agent's delta gives what the reference
 * gives, set, ranges and named-port tables alike. */
TEST(random_deltas_give_the_next_bundle_both_ways)
{
	unsigned seed = 20261202;
	int pairs = 0, deltas = 0;

	for (int i = 0; i < 300; i++) {
		json_t *a = random_bundle(&seed), *b = random_bundle(&seed);
		json_t *sets = a && b ? proto_delta_make(a, b) : NULL;

		pairs += a && b;
		if (sets) {
			deltas++;
			if (!delta_gives(a, b)) {
				fprintf(stderr, "pair %d: the delta does not give the next bundle\n", i);
				CHECK(false);
			}
		}
		json_decref(sets);
		json_decref(a);
		json_decref(b);
	}
	/* Every pair is one: the rules never change. */
	CHECK(pairs == 300 && deltas == 300);
}

/* sets applied by the agent and by the reference give the same bundle
 * (the agent's hash is the one the reference's result must have), or
 * both refuse it. */
static bool agent_agrees(json_t *from, json_t *sets)
{
	struct diag d;
	diag_init(&d, "delta");
	struct bundle *base = bundle_from_json(from, &d);
	struct bundle *a = base ? bundle_apply_delta(base, sets, &d) : NULL;
	bool hashed = a && bundle_update_hash(a) == 0;
	json_t *next = proto_delta_apply(from, sets, &d);
	struct bundle *r = NULL;
	if (next && hashed) {
		json_object_set_new(next, "hash", json_string(a->hash));
		r = bundle_from_json(next, &d);
	}
	bool ok = a ? hashed && r != NULL : !next || !bundle_from_json(next, &d);
	bundle_free(base);
	bundle_free(a);
	bundle_free(r);
	json_decref(next);
	diag_release(&d);
	return ok;
}

/* A random element of the network group's list, or of web's. */
static json_t *random_range(unsigned *seed, bool hosts)
{
	char buf[64];
	int a = rand_r(seed) % 256;

	if (hosts)
		snprintf(buf, sizeof(buf), "198.18.0.%d", 16 + rand_r(seed) % 16);
	else if (rand_r(seed) % 2)
		snprintf(buf, sizeof(buf), "198.51.100.%d/%d", a & ~3, 30);
	else
		snprintf(buf, sizeof(buf), "198.51.100.%d-198.51.100.%d", a, a + rand_r(seed) % (256 - a));
	return json_string(buf);
}

/* Deltas no controller makes (elements added that overlap, touch or are
 * held already; elements removed that are not held), applied to random
 * bundles: the agent merges them as decoding the reference's result
 * does. */
TEST(random_odd_deltas_merge_as_decoding_does)
{
	unsigned seed = 1202;
	int agreed = 0;

	for (int i = 0; i < 300; i++) {
		json_t *from = random_bundle(&seed), *sets = json_array();
		for (int e = 0; e < 2; e++) {
			bool hosts = e == 0;
			json_t *held = NULL, *add = json_array(), *rem = json_array(), *d;
			size_t k;
			json_array_foreach (json_object_get(from, "sets"), k, d)
				if (strcmp(json_string_value(json_object_get(d, "id")),
					   hosts ? "web" : "net") == 0)
					held = json_object_get(d, "ipv4");
			for (int n = rand_r(&seed) % 4; n > 0; n--)
				json_array_append_new(add, random_range(&seed, hosts));
			for (int n = rand_r(&seed) % 3; n > 0; n--) {
				size_t h = json_array_size(held);
				json_array_append_new(
				    rem, h && rand_r(&seed) % 2
					     ? json_copy(json_array_get(held, (size_t)rand_r(&seed) % h))
					     : random_range(&seed, hosts));
			}
			json_array_append_new(sets,
					      json_pack("{s:s,s:{s:o,s:o}}", "id", hosts ? "web" : "net",
							"ipv4", "add", add, "remove", rem));
		}
		agreed += from && agent_agrees(from, sets);
		json_decref(sets);
		json_decref(from);
	}
	CHECK(agreed == 300);
}

/* Every body is sized by its type before it is parsed: in bytes, and in
 * JSON values (each costs the parser 40-90 bytes). */
TEST(bodies_are_sized_by_type_before_parsing)
{
	char err[256];
	struct proto_msg m;
	/* A HEARTBEAT is small: 5,000 bytes of padding is refused unread. */
	size_t n = 5000;
	char *big = malloc(n + 1);
	memset(big, ' ', n);
	memcpy(big, "{\"v\":1}", 7);
	big[n] = '\0';
	CHECK(proto_decode("HEARTBEAT", 9, big, n, &m, err, sizeof(err)) < 0 &&
	      strstr(err, "more than the 4096"));
	free(big);
	/* 100 values where 64 may be, even inside limits in bytes. */
	char many[512] = "{\"v\":1,\"x\":[";
	for (int i = 0; i < 100; i++)
		strcat(many, i ? ",0" : "0");
	strcat(many, "]}");
	CHECK(refused("HEARTBEAT", many, "JSON values or more, more than the 64"));
	/* Commas and brackets inside strings are not values. */
	CHECK(accepted("HEARTBEAT", "{\"v\":1,\"x\":\"[,,,,:::{{{\\\",,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,"
				    ",,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,\"}"));
	/* A HELLO's limit is 1 Mi values: a list of 2 Mi zeros is refused. */
	n = 4u << 20;
	big = malloc(n + 64);
	strcpy(big, "{\"v\":1,\"node\":\"n\",\"agent\":\"1\",\"endpoints\":[],\"pad\":[0");
	size_t len = strlen(big);
	while (len + 4 < n) {
		memcpy(big + len, ",0", 2);
		len += 2;
	}
	memcpy(big + len, "]}", 3);
	len += 2;
	CHECK(proto_decode("HELLO", 5, big, len, &m, err, sizeof(err)) < 0 && strstr(err, "JSON values"));
	free(big);
	/* The controller does not read what agents never send. */
	CHECK(proto_sent_by_agent(PROTO_HELLO) && proto_sent_by_agent(PROTO_FLOWS) &&
	      !proto_sent_by_agent(PROTO_BUNDLE) && !proto_sent_by_agent(PROTO_DELTA) &&
	      !proto_sent_by_agent(PROTO_RESYNC));
	CHECK(proto_type_parse("BUNDLE", 6) == PROTO_BUNDLE && proto_type_parse("BUNDL", 5) < 0);
	/* Every agent message fits the controller's socket. */
	for (int t = 0; t < PROTO_TYPE_COUNT; t++)
		CHECK(!proto_sent_by_agent(t) || proto_limits[t].bytes <= PROTO_MAX_AGENT_MSG);
	/* An unknown type is quoted printable (the reason is logged). */
	CHECK(refused("\x1b[2J", "{\"v\":1}", "unknown message type \"?[2J\""));
}

/* An endpoint list from a node is loaded as an inventory: its names,
 * labels and netns paths are checked, and node names have one syntax. */
static bool endpoints_load(const char *node, const char *endpoints)
{
	json_t *eps = json_loads(endpoints, 0, NULL), *doc = proto_endpoints_inventory(node, eps);
	struct inventory *inv = inventory_new();
	struct diag d;
	diag_init(&d, node);
	bool ok = inv && doc && inventory_load_json(inv, doc, node, INVENTORY_NEED_ADDRESSES, &d) == 0;
	diag_release(&d);
	inventory_free(inv);
	json_decref(doc);
	json_decref(eps);
	return ok;
}

/* An agent's named ports (optional "ports"): checked like the rest. */
TEST(node_endpoint_ports_are_checked)
{
	CHECK(endpoints_load("n1",
			     "[{\"name\":\"web-1\",\"ports\":{\"http\":\"tcp/8080\",\"dns\":\"udp/53\"},"
			     "\"addresses\":[]}]"));
	CHECK(
	    !endpoints_load("n1", "[{\"name\":\"web\",\"ports\":{\"HTTP\":\"tcp/8080\"},\"addresses\":[]}]"));
	CHECK(!endpoints_load("n1", "[{\"name\":\"web\",\"ports\":{\"http\":\"tcp/0\"},\"addresses\":[]}]"));
	CHECK(!endpoints_load("n1",
			      "[{\"name\":\"web\",\"ports\":{\"http\":\"tcp/80-90\"},\"addresses\":[]}]"));
	CHECK(!endpoints_load("n1", "[{\"name\":\"web\",\"ports\":{\"ping\":\"icmp/8\"},\"addresses\":[]}]"));
	CHECK(!endpoints_load("n1", "[{\"name\":\"web\",\"ports\":{\"http\":8080},\"addresses\":[]}]"));
	CHECK(!endpoints_load("n1", "[{\"name\":\"web\",\"ports\":[\"tcp/80\"],\"addresses\":[]}]"));
	CHECK(!endpoints_load("n1", "[{\"name\":\"web\",\"ports\":{\"a-very-long-port-name\":\"tcp/1\"},"
				    "\"addresses\":[]}]"));
	const char *why;
	CHECK(named_port_name_valid("h2c", &why) && named_port_name_valid("web-1", &why));
	CHECK(!named_port_name_valid("123", &why) && !named_port_name_valid("-a", &why) &&
	      !named_port_name_valid("a--b", &why) && !named_port_name_valid("", &why));
}

TEST(node_endpoint_lists_are_checked)
{
	CHECK(endpoints_load(
	    "n1", "[{\"name\":\"web-1\",\"netns\":\"/run/netns/web-1\",\"labels\":{\"app\":\"web\"},"
		  "\"addresses\":[\"198.18.0.1\"]}]"));
	CHECK(!endpoints_load("n1", "[{\"name\":\"web\\u001b[2J\",\"addresses\":[]}]"));
	CHECK(!endpoints_load("n1", "[{\"name\":\"web\",\"labels\":{\"app\":\"a\\nb\"},\"addresses\":[]}]"));
	CHECK(!endpoints_load(
	    "n1", "[{\"name\":\"web\",\"netns\":\"/run/netns/a\\u001b]0;x\\u0007\",\"addresses\":[]}]"));
	CHECK(!endpoints_load("n1", "[{\"name\":\"web\",\"addresses\":[\"198.18.0.1\\n\"]}]"));
	CHECK(!endpoints_load("n\x1b", "[]"));
	CHECK(inventory_node_name_valid("node-a.example_1") && !inventory_node_name_valid("") &&
	      !inventory_node_name_valid("-a") && !inventory_node_name_valid("a b") &&
	      !inventory_node_name_valid("a/b") && !inventory_node_name_valid("caf\xc3\xa9"));
	char long_name[300];
	memset(long_name, 'a', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	CHECK(!inventory_node_name_valid(long_name));
	long_name[253] = '\0';
	CHECK(inventory_node_name_valid(long_name));
}

int main(void)
{
	return test_main();
}
