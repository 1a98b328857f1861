/* Policy language pieces: label syntax, selectors, port matches, and the
 * parsed model (order, ties, inline groups, except ranges, defaults). */
#include <netinet/in.h>
#include <stdarg.h>

#include "bulkhead/policy.h"
#include "test.h"

static struct policy_doc *parse(const char *text, struct diag *d)
{
	diag_init(d, "t.json");
	return policy_parse_string(text, strlen(text), d);
}

/* Parses text expecting exactly one error: path and message. */
static void expect_error(const char *text, const char *path, const char *message)
{
	struct diag d;
	struct policy_doc *doc = parse(text, &d);
	CHECK(doc == NULL);
	CHECK(d.n == 1);
	if (d.n >= 1) {
		CHECK_STR(d.v[0].path, path);
		CHECK_STR(d.v[0].message, message);
	}
	policy_doc_free(doc);
	diag_release(&d);
}

TEST(label_keys_follow_kubernetes_syntax)
{
	const char *why;
	const char *good[] = {
	    "app",     "App.Name_1", "kubernetes.io/metadata.name", "example.com/tenant", "a",
	    "x-y.z_w", "a.b-c.d/e"};
	const char *bad[] = {"",
			     "-app",
			     "app-",
			     "app name",
			     "Example.com/x",
			     "a//b",
			     "/x",
			     "x/",
			     "a_b.c/x",
			     "-a.com/x",
			     "a..b/x",
			     "toolongtoolongtoolongtoolongtoolongtoolongtoolongtoolongtoolong1"};
	for (size_t i = 0; i < BH_ARRAY_SIZE(good); i++)
		CHECK(label_key_valid(good[i], &why));
	for (size_t i = 0; i < BH_ARRAY_SIZE(bad); i++)
		CHECK(!label_key_valid(bad[i], &why));
	char longprefix[300];
	memset(longprefix, 'a', 254);
	strcpy(longprefix + 254, "/x");
	CHECK(!label_key_valid(longprefix, &why));
}

TEST(label_values_may_be_empty)
{
	const char *why;
	CHECK(label_value_valid("", &why));
	CHECK(label_value_valid("prod", &why));
	CHECK(label_value_valid("v1.2_3-x", &why));
	CHECK(!label_value_valid("a/b", &why));
	CHECK(!label_value_valid("-x", &why));
	CHECK(!label_value_valid("x ", &why));
}

static struct label_set labels_of(struct label *v, size_t n)
{
	/* Callers pass keys in sorted order, as the parser stores them. */
	return (struct label_set){v, n};
}

TEST(selector_labels_must_all_match)
{
	struct label want[] = {{"app", "db"}, {"env", "prod"}};
	struct selector sel = {.labels = {want, 2}};
	struct label have1[] = {{"app", "db"}, {"env", "prod"}, {"tier", "3"}};
	struct label have2[] = {{"app", "db"}, {"env", "dev"}};
	struct label have3[] = {{"app", "db"}};
	CHECK(selector_matches(&sel, &(struct label_set){have1, 3}));
	CHECK(!selector_matches(&sel, &(struct label_set){have2, 2}));
	CHECK(!selector_matches(&sel, &(struct label_set){have3, 1}));
	struct selector all = {0};
	CHECK(selector_matches(&all, &(struct label_set){NULL, 0}));
	CHECK(selector_matches(&all, &(struct label_set){have1, 3}));
}

TEST(selector_expressions_kubernetes_semantics)
{
	const char *vals[] = {"prod", "staging"};
	struct selector_expr in = {"env", SELECTOR_IN, vals, 2};
	struct selector_expr notin = {"env", SELECTOR_NOT_IN, vals, 2};
	struct selector_expr exists = {"env", SELECTOR_EXISTS, NULL, 0};
	struct selector_expr dne = {"env", SELECTOR_DOES_NOT_EXIST, NULL, 0};
	struct label prod[] = {{"env", "prod"}}, dev[] = {{"env", "dev"}}, none[] = {{"app", "x"}};
	struct label_set lp = labels_of(prod, 1), ld = labels_of(dev, 1), ln = labels_of(none, 1);
	struct selector s = {.n_exprs = 1};

	s.exprs = &in;
	CHECK(selector_matches(&s, &lp) && !selector_matches(&s, &ld) && !selector_matches(&s, &ln));
	s.exprs = &notin; /* a missing key satisfies NotIn */
	CHECK(!selector_matches(&s, &lp) && selector_matches(&s, &ld) && selector_matches(&s, &ln));
	s.exprs = &exists;
	CHECK(selector_matches(&s, &lp) && selector_matches(&s, &ld) && !selector_matches(&s, &ln));
	s.exprs = &dne;
	CHECK(!selector_matches(&s, &lp) && !selector_matches(&s, &ld) && selector_matches(&s, &ln));

	/* Labels and expressions together: all must hold. */
	struct label app[] = {{"app", "db"}};
	struct selector both = {.labels = {app, 1}, .exprs = &in, .n_exprs = 1};
	struct label dbprod[] = {{"app", "db"}, {"env", "prod"}},
		     webprod[] = {{"app", "web"}, {"env", "prod"}};
	CHECK(selector_matches(&both, &(struct label_set){dbprod, 2}));
	CHECK(!selector_matches(&both, &(struct label_set){webprod, 2}));
}

TEST(port_matches_parse)
{
	struct port_match m;
	const char *why;
	char buf[32];
	CHECK(port_match_parse("tcp", &m, &why) == 0 && m.proto == IPPROTO_TCP && m.lo == 0 && m.hi == 65535);
	CHECK(port_match_parse("udp/53", &m, &why) == 0 && m.lo == 53 && m.hi == 53);
	CHECK(port_match_parse("tcp/8000-8100", &m, &why) == 0 && m.lo == 8000 && m.hi == 8100);
	CHECK(port_match_parse("sctp/1-65535", &m, &why) == 0 && m.lo == 1 && m.hi == 65535);
	CHECK(port_match_parse("icmp/8", &m, &why) == 0 && m.proto == IPPROTO_ICMP && m.icmp_type == 8 &&
	      m.icmp_code == -1);
	CHECK(port_match_parse("icmpv6/128/0", &m, &why) == 0 && m.proto == IPPROTO_ICMPV6 &&
	      m.icmp_type == 128 && m.icmp_code == 0);
	CHECK(port_match_parse("icmp", &m, &why) == 0 && m.icmp_type == -1);
	port_match_format(&m, buf, sizeof(buf));
	CHECK_STR(buf, "icmp");
	CHECK(port_match_parse("tcp/8000-8100", &m, &why) == 0);
	port_match_format(&m, buf, sizeof(buf));
	CHECK_STR(buf, "tcp/8000-8100");
}

TEST(port_matches_reject)
{
	struct port_match m;
	const char *why = NULL;
	CHECK(port_match_parse("tcp/70000", &m, &why) < 0);
	CHECK_STR(why, "port out of range");
	CHECK(port_match_parse("tcp/0", &m, &why) < 0);
	CHECK_STR(why, "port out of range");
	CHECK(port_match_parse("tcp/90-80", &m, &why) < 0);
	CHECK_STR(why, "port range is backwards (low port greater than high)");
	CHECK(port_match_parse("icmp/256", &m, &why) < 0);
	CHECK_STR(why, "ICMP type out of range (0-255)");
	CHECK(port_match_parse("icmpv6/1/256", &m, &why) < 0);
	CHECK_STR(why, "ICMP code out of range (0-255)");
	CHECK(port_match_parse("http", &m, &why) < 0);
	CHECK(port_match_parse("tcp/", &m, &why) < 0);
	CHECK(port_match_parse("tcp/080", &m, &why) < 0);
	CHECK(port_match_parse("tcp/80-", &m, &why) < 0);
	CHECK(port_match_parse("tcp/80 ", &m, &why) < 0);
	CHECK(port_match_parse("udp/53/1", &m, &why) < 0);
	CHECK(port_match_parse("icmp/8/0/1", &m, &why) < 0);
	CHECK(port_match_parse("TCP/80", &m, &why) < 0);
	CHECK(port_match_parse("icmp/-1", &m, &why) < 0);
}

TEST(named_ports_parse_and_format)
{
	struct port_match m;
	const char *why = NULL;
	char buf[32];
	CHECK(port_match_parse("tcp/http", &m, &why) == 0 && m.proto == IPPROTO_TCP && m.name && m.lo == 0 &&
	      m.hi == 0);
	CHECK_STR(m.name, "http");
	port_match_format(&m, buf, sizeof(buf));
	CHECK_STR(buf, "tcp/http");
	CHECK(port_match_parse("udp/dns", &m, &why) == 0 && m.proto == IPPROTO_UDP);
	CHECK(port_match_parse("sctp/sig-1", &m, &why) == 0 && m.proto == IPPROTO_SCTP);
	CHECK_STR(m.name, "sig-1");
	/* IANA_SVC_NAME: a letter is enough; "8a" is a name, "80" a number. */
	CHECK(port_match_parse("tcp/8a", &m, &why) == 0 && m.name);
	CHECK(port_match_parse("tcp/80", &m, &why) == 0 && !m.name && m.lo == 80);
	CHECK(port_match_parse("tcp/http-8080", &m, &why) == 0 && m.name);
	CHECK(port_match_parse("tcp/abcdefghijklmno", &m, &why) == 0);
	/* A name is not a port number anywhere else. */
	uint8_t proto;
	uint16_t port;
	CHECK(named_port_parse("tcp/http", &proto, &port, &why) < 0);
}

TEST(named_ports_reject)
{
	struct port_match m;
	const char *why = NULL;
	CHECK(port_match_parse("tcp/HTTP", &m, &why) < 0);
	CHECK_STR(why, "a port name has only lowercase letters, digits and '-'");
	CHECK(port_match_parse("tcp/abcdefghijklmnop", &m, &why) < 0);
	CHECK_STR(why, "a port name is 1-15 characters");
	CHECK(port_match_parse("tcp/a--b", &m, &why) < 0);
	CHECK(port_match_parse("tcp/-ab", &m, &why) < 0);
	CHECK(port_match_parse("tcp/ab-", &m, &why) < 0);
	CHECK_STR(why, "a port name neither begins nor ends with '-', nor has \"--\"");
	CHECK(port_match_parse("icmp/echo", &m, &why) < 0);
	CHECK_STR(why, "a named port is tcp/NAME, udp/NAME or sctp/NAME (ICMP has types, not ports)");
	CHECK(port_match_parse("icmpv6/echo", &m, &why) < 0);
	CHECK(port_match_parse("http", &m, &why) < 0);
	CHECK_STR(why, "a named port needs its protocol: tcp/NAME, udp/NAME or sctp/NAME");
	CHECK(port_match_parse("tcp/8000-http", &m, &why) < 0);
	CHECK_STR(why, "a port range is LOW-HIGH in numbers; a named port stands alone");
	CHECK(port_match_parse("tcp/1-2a", &m, &why) < 0);
}

TEST(named_port_errors_name_the_place)
{
	expect_error(
	    "{\"version\":1,\"policies\":[{\"name\":\"p\",\"applies_to\":{\"labels\":{}},\"egress\":[{"
	    "\"ports\":[\"tcp/http\",\"tcp/Http\"]}]}]}",
	    "/policies/0/egress/0/ports/1",
	    "\"tcp/Http\": a port name has only lowercase letters, digits and '-'");
	expect_error(
	    "{\"version\":1,\"policies\":[{\"name\":\"p\",\"applies_to\":{\"labels\":{}},\"ingress\":[{"
	    "\"ports\":[\"icmpv6/ping\"]}]}]}",
	    "/policies/0/ingress/0/ports/0",
	    "\"icmpv6/ping\": a named port is tcp/NAME, udp/NAME or sctp/NAME (ICMP has types, not "
	    "ports)");
	expect_error(
	    "{\"version\":1,\"policies\":[{\"name\":\"p\",\"applies_to\":{\"labels\":{}},\"ingress\":[{"
	    "\"ports\":[\"tcp/80-http\"]}]}]}",
	    "/policies/0/ingress/0/ports/0",
	    "\"tcp/80-http\": a port range is LOW-HIGH in numbers; a named port stands alone");
	/* A valid document keeps the name, owned by the document. */
	struct diag d;
	const char *text = "{\"version\":1,\"policies\":[{\"name\":\"p\",\"applies_to\":{\"labels\":{}},"
			   "\"ingress\":[{\"ports\":[\"tcp/80\",\"sctp/sig\"]}]}]}";
	struct policy_doc *doc = parse(text, &d);
	CHECK(doc && doc->policies[0].rules[DIR_INGRESS].v[0].n_ports == 2);
	if (doc && doc->policies[0].rules[DIR_INGRESS].v[0].n_ports == 2) {
		const struct port_match *m = &doc->policies[0].rules[DIR_INGRESS].v[0].ports[1];
		CHECK(m->proto == IPPROTO_SCTP);
		CHECK_STR(m->name, "sig");
	}
	policy_doc_free(doc);
	diag_release(&d);
}

TEST(policies_sorted_by_order_then_name)
{
	struct diag d;
	struct policy_doc *doc =
	    parse("{\"version\":1,\"policies\":["
		  "{\"name\":\"zeta\",\"applies_to\":{\"labels\":{}},\"order\":5,\"ingress\":[]},"
		  "{\"name\":\"beta\",\"applies_to\":{\"labels\":{}},\"ingress\":[]},"
		  "{\"name\":\"alpha\",\"applies_to\":{\"labels\":{}},\"order\":5,\"ingress\":[]},"
		  "{\"name\":\"neg\",\"applies_to\":{\"labels\":{}},\"order\":-3,\"egress\":[]}]}",
		  &d);
	CHECK(doc != NULL);
	if (doc) {
		CHECK(doc->n_policies == 4);
		CHECK_STR(doc->policies[0].name, "neg");
		CHECK_STR(doc->policies[1].name, "alpha");
		CHECK_STR(doc->policies[2].name, "zeta");
		CHECK_STR(doc->policies[3].name, "beta");
		CHECK(doc->policies[3].order == POLICY_DEFAULT_ORDER);
		CHECK(doc->policies[0].rules[DIR_EGRESS].present &&
		      !doc->policies[0].rules[DIR_INGRESS].present);
	}
	policy_doc_free(doc);
	diag_release(&d);
}

TEST(network_group_cidrs_minus_except)
{
	struct diag d;
	struct policy_doc *doc =
	    parse("{\"version\":1,\"groups\":{\"office\":{\"cidrs\":[\"203.0.113.0/24\","
		  "\"2001:db8:10::/48\",\"203.0.113.128/25\"],\"except\":[\"203.0.113.9/32\","
		  "\"2001:db8:10::/64\"]}}}",
		  &d);
	CHECK(doc != NULL);
	const struct policy_group *g = doc ? policy_find_group(doc, "office") : NULL;
	CHECK(g && g->kind == GROUP_NETWORK);
	if (g) {
		char buf[RANGE_STRLEN];
		CHECK(g->v4.n == 2);
		range_format(&g->v4.v[0], buf);
		CHECK_STR(buf, "203.0.113.0-203.0.113.8");
		range_format(&g->v4.v[1], buf);
		CHECK_STR(buf, "203.0.113.10-203.0.113.255");
		CHECK(g->v6.n == 1);
		range_format(&g->v6.v[0], buf);
		CHECK_STR(buf, "2001:db8:10:1::-2001:db8:10:ffff:ffff:ffff:ffff:ffff");
	}
	policy_doc_free(doc);
	diag_release(&d);
}

TEST(inline_peers_get_stable_ids)
{
	struct diag d;
	struct policy_doc *doc =
	    parse("{\"version\":1,\"groups\":{\"web\":{\"labels\":{\"app\":\"web\"}}},"
		  "\"policies\":[{\"name\":\"p\",\"applies_to\":\"web\",\"egress\":[{\"to\":[\"web\","
		  "{\"cidrs\":[\"198.18.0.0/15\"]}]}]}]}",
		  &d);
	CHECK(doc != NULL);
	if (doc) {
		const struct policy_rule *r = &doc->policies[0].rules[DIR_EGRESS].v[0];
		CHECK(r->n_peers == 2 && !r->any_peer && r->any_port);
		CHECK_STR(r->peers[0]->id, "web");
		CHECK_STR(r->peers[1]->id, "p/egress/0/1");
		CHECK(r->peers[1]->name == NULL);
	}
	policy_doc_free(doc);
	diag_release(&d);
}

TEST(defaults_and_actions)
{
	struct diag d;
	struct policy_doc *doc = parse("{\"version\":1,\"defaults\":{\"egress\":\"deny\"}}", &d);
	CHECK(doc && doc->defaults[DIR_INGRESS] == ACTION_ALLOW && doc->defaults[DIR_EGRESS] == ACTION_DENY);
	policy_doc_free(doc);
	diag_release(&d);
}

TEST(observe_defaults_to_denied)
{
	struct diag d;
	struct policy_doc *doc = parse("{\"version\":1}", &d);
	CHECK(doc && doc->observe == OBSERVE_DENIED);
	policy_doc_free(doc);
	diag_release(&d);
	doc = parse("{\"version\":1,\"observe\":\"all\"}", &d);
	CHECK(doc && doc->observe == OBSERVE_ALL);
	policy_doc_free(doc);
	diag_release(&d);
	doc = parse("{\"version\":1,\"observe\":\"denied\"}", &d);
	CHECK(doc && doc->observe == OBSERVE_DENIED);
	policy_doc_free(doc);
	diag_release(&d);
	expect_error(
	    "{\"version\":1,\"observe\":\"ALL\"}", "/observe",
	    "\"ALL\": expected \"denied\" (report denied and audited flows) or \"all\" (every accepted new "
	    "connection too)");
}

TEST(errors_point_at_the_problem)
{
	expect_error("{\"version\":1,\"polices\":[]}", "/polices",
		     "unknown key \"polices\" (did you mean \"policies\"?)");
	expect_error("{}", "/version", "missing required key (this Bulkhead reads version 1)");
	expect_error("{\"version\":\"1\"}", "/version", "expected an integer, got a string");
	expect_error(
	    "{\"version\":1,\"groups\":{\"a/b\":{\"labels\":{}}}}", "/groups/a~1b",
	    "invalid group name \"a/b\": use 1-63 letters, digits, '.', '_' or '-', beginning with a "
	    "letter or digit");
	expect_error(
	    "{\"version\":1,\"groups\":{\"n\":{\"cidrs\":[\"10.0.0.0/8\"]}},\"policies\":[{\"name\":\"p\","
	    "\"applies_to\":\"n\",\"ingress\":[]}]}",
	    "/policies/0/applies_to", "\"n\" is a network group; applies_to needs a label group");
	expect_error(
	    "{\"version\":1,\"policies\":[{\"name\":\"p\",\"applies_to\":{\"labels\":{}},\"ingress\":[{"
	    "\"from\":[\"nosuch\"]}]}]}",
	    "/policies/0/ingress/0/from/0", "unknown group \"nosuch\"");
	expect_error(
	    "{\"version\":1,\"policies\":[{\"name\":\"p\",\"applies_to\":{\"labels\":{}},\"ingress\":[{"
	    "\"ports\":[\"tcp/80\",\"tcp/70000\"]}]}]}",
	    "/policies/0/ingress/0/ports/1", "\"tcp/70000\": port out of range");
	expect_error("{\"version\":1,\"policies\":[{\"name\":\"p\",\"applies_to\":{\"labels\":{}}}]}",
		     "/policies/0", "policy has neither \"ingress\" nor \"egress\": it would do nothing");
	expect_error("{\"version\":1,\"groups\":{\"g\":{\"expressions\":[{\"key\":\"env\",\"op\":\"Exists\","
		     "\"values\":[\"x\"]}]}}}",
		     "/groups/g/expressions/0/values", "operator Exists takes no values");
	expect_error(
	    "{\"version\":1,\"groups\":{\"g\":{\"cidrs\":[\"10.0.0.0/8\"],\"except\":[\"10.1.0.0/16\","
	    "\"11.0.0.0/8\"]}}}",
	    "/groups/g/except/1", "\"11.0.0.0/8\": not inside any of the group's cidrs");
	expect_error(
	    "{\"version\":1,\"groups\":{\"g\":{\"cidrs\":[\"10.0.0.0/8\"],\"except\":[\"2001:db8::/32\"]}}}",
	    "/groups/g/except/0", "\"2001:db8::/32\": not inside any of the group's cidrs");
	expect_error("[1]", "", "expected a policy document (a JSON object), got a list");
}

TEST(every_error_in_one_pass)
{
	struct diag d;
	struct policy_doc *doc =
	    parse("{\"version\":1,\"groups\":{\"a\":{\"labels\":{\"-x\":\"y\"}},\"b\":{}},"
		  "\"policies\":[{\"name\":\"p\",\"applies_to\":\"a\",\"mode\":\"x\",\"ingress\":[{"
		  "\"ports\":[\"tcp/0\"],\"from\":[\"zz\"]}]}]}",
		  &d);
	CHECK(doc == NULL);
	/* Bad label key, empty group, bad mode, bad port, unknown group; "a"
	 * is declared (if invalid) so applies_to adds nothing. */
	CHECK(d.n == 5);
	policy_doc_free(doc);
	diag_release(&d);
}

TEST(json_syntax_errors_name_line_and_column)
{
	struct diag d;
	struct policy_doc *doc =
	    parse("{\"version\": 1,\n \"groups\": {\n  \"a\": {\"labels\": {}},\n  \"a\": {}}}", &d);
	CHECK(doc == NULL && d.n == 1);
	if (d.n)
		CHECK(strstr(d.v[0].message, "line 4") != NULL &&
		      strstr(d.v[0].message, "duplicate") != NULL);
	diag_release(&d);
	doc = parse("{\"version\": 1,", &d);
	CHECK(doc == NULL && d.n == 1);
	diag_release(&d);
}

/* ---- documents at scale ---- */

/* A growing text buffer for generated documents. */
struct text {
	char *s;
	size_t n, cap;
};

static void put(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct text *t, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	while (t->n + (size_t)n + 1 > t->cap) {
		t->cap = t->cap ? 2 * t->cap : 4096;
		t->s = realloc(t->s, t->cap);
		if (!t->s)
			abort();
	}
	va_start(ap, fmt);
	vsnprintf(t->s + t->n, (size_t)n + 1, fmt, ap);
	va_end(ap);
	t->n += (size_t)n;
}

/* "The internet except n hosts": the group of audit finding 4. */
static char *internet_except(size_t n)
{
	struct text t = {0};
	put(&t, "{\"version\":1,\"groups\":{\"internet\":{\"cidrs\":[\"0.0.0.0/0\",\"::/0\"],\"except\":[");
	for (size_t i = 0; i < n; i++)
		put(&t, "%s\"2001:db8::%zx:%zx/128\"", i ? "," : "", i >> 15, (2 * i + 1) & 0xffff);
	put(&t, "]}}}");
	return t.s;
}

TEST(except_lists_are_cut_in_one_sweep)
{
	struct diag d;
	char *text = internet_except(POLICY_MAX_NETWORK_ENTRIES);
	struct policy_doc *doc = parse(text, &d);
	CHECK(doc != NULL && d.n == 0);
	const struct policy_group *g = doc ? policy_find_group(doc, "internet") : NULL;
	/* Every odd host out: a range before each, one after the last. */
	CHECK(g && g->v4.n == 1 && g->v6.n == POLICY_MAX_NETWORK_ENTRIES + 1);
	if (g) {
		char buf[RANGE_STRLEN];
		range_format(&g->v6.v[0], buf);
		CHECK_STR(buf, "::-2001:db8::");
		range_format(&g->v6.v[1], buf);
		CHECK_STR(buf, "2001:db8::2");
		range_format(&g->v6.v[POLICY_MAX_NETWORK_ENTRIES], buf);
		CHECK_STR(buf, "2001:db8::3:d40-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
	}
	policy_doc_free(doc);
	diag_release(&d);
	free(text);
}

TEST(a_group_holds_at_most_100000_cidrs_and_excepts)
{
	char *text = internet_except(POLICY_MAX_NETWORK_ENTRIES + 1);
	expect_error(text, "/groups/internet/except",
		     "100001 entries: at most 100000 (split the group, or use wider CIDRs)");
	free(text);
	struct text t = {0};
	put(&t, "{\"version\":1,\"groups\":{\"many\":{\"cidrs\":[");
	for (size_t i = 0; i <= POLICY_MAX_NETWORK_ENTRIES; i++)
		put(&t, "%s\"2001:db8::%zx:%zx\"", i ? "," : "", i >> 16, i & 0xffff);
	put(&t, "]}}}");
	expect_error(t.s, "/groups/many/cidrs",
		     "100001 entries: at most 100000 (split the group, or use wider CIDRs)");
	free(t.s);
}

TEST(a_document_is_at_most_64_mib)
{
	size_t len = POLICY_MAX_BYTES + 1;
	char *text = malloc(len);
	if (!text)
		abort();
	memset(text, ' ', len);
	struct diag d;
	diag_init(&d, "t.json");
	CHECK(policy_parse_string(text, len, &d) == NULL);
	CHECK(d.n == 1 &&
	      strcmp(d.v[0].message, "larger than 67108864 bytes (64 MiB), the most a policy document may "
				     "be") == 0);
	diag_release(&d);
	free(text);
}

TEST(duplicate_policy_names_among_100000_name_the_first)
{
	const size_t n = 100000;
	struct text t = {0};
	put(&t, "{\"version\":1,\"policies\":[");
	for (size_t i = 0; i < n; i++) {
		/* p5 again at 70000 and 99999, p3 again at 90000. */
		size_t name = i == 70000 || i == n - 1 ? 5 : i == 90000 ? 3 : i;
		put(&t, "%s{\"name\":\"p%zu\",\"applies_to\":{\"labels\":{}},\"ingress\":[]}", i ? "," : "",
		    name);
	}
	put(&t, "]}");
	struct diag d;
	struct policy_doc *doc = parse(t.s, &d);
	CHECK(doc == NULL);
	CHECK(d.n == 3);
	if (d.n == 3) {
		CHECK_STR(d.v[0].path, "/policies/70000/name");
		CHECK_STR(d.v[0].message, "duplicate policy name \"p5\" (first at /policies/5)");
		CHECK_STR(d.v[1].path, "/policies/90000/name");
		CHECK_STR(d.v[1].message, "duplicate policy name \"p3\" (first at /policies/3)");
		CHECK_STR(d.v[2].path, "/policies/99999/name");
		CHECK_STR(d.v[2].message, "duplicate policy name \"p5\" (first at /policies/5)");
	}
	diag_release(&d);
	free(t.s);
	/* An invalid name is no first occurrence; the next valid one is. */
	struct policy_doc *doc2 =
	    parse("{\"version\":1,\"policies\":[{\"name\":\"-x\",\"applies_to\":{\"labels\":{}},"
		  "\"ingress\":[]},{\"name\":\"x\",\"applies_to\":{\"labels\":{}},\"ingress\":[]},{"
		  "\"name\":\"x\",\"applies_to\":{\"labels\":{}},\"ingress\":[]}]}",
		  &d);
	CHECK(doc2 == NULL && d.n == 2);
	if (d.n == 2) {
		CHECK_STR(d.v[1].path, "/policies/2/name");
		CHECK_STR(d.v[1].message, "duplicate policy name \"x\" (first at /policies/1)");
	}
	diag_release(&d);
}

TEST(unknown_groups_among_many_get_suggestions_while_cheap)
{
	/* 20,000 groups and 20,000 unknown references: each suggestion
	 * compares every group, so only the first ones get one. */
	const size_t n = 20000;
	struct text t = {0};
	put(&t, "{\"version\":1,\"groups\":{");
	for (size_t i = 0; i < n; i++)
		put(&t, "%s\"group-%zu\":{\"labels\":{}}", i ? "," : "", i);
	put(&t, "},\"policies\":[{\"name\":\"p\",\"applies_to\":\"group-1\",\"ingress\":[{\"from\":[");
	for (size_t i = 0; i < n; i++)
		put(&t, "%s\"group-%zuX\"", i ? "," : "", i);
	put(&t, "]}]}]}");
	struct diag d;
	struct policy_doc *doc = parse(t.s, &d);
	CHECK(doc == NULL && d.n == n);
	if (d.n == n) {
		CHECK_STR(d.v[0].message, "unknown group \"group-0X\" (did you mean \"group-0\"?)");
		CHECK_STR(d.v[n - 1].message, "unknown group \"group-19999X\"");
	}
	diag_release(&d);
	free(t.s);
}

int main(void)
{
	return test_main();
}
