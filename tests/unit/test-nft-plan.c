/* The nft plan (agent/nft-plan.h): what table a bundle endpoint becomes,
 * checked as data, without libnftnl or root. Bundles come from small
 * policies through the compiler, as the controller makes them. */
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "bulkhead/compile.h"
#include "nft-plan.h"
#include "scenario.h"
#include "test.h"

/* The bundle of node "n" for policy and the inventory of node "n". */
static struct bundle *compile(const char *policy, const char *inventory)
{
	return scenario_compile(policy, inventory, "n", INVENTORY_NEED_ADDRESSES);
}

/* web-1 (app=web) and db-1 (app=db), each with an IPv4 and an IPv6 address;
 * lone-1 (app=lone) with IPv4 only. */
static const char inventory[] =
    "{\"node\":\"n\",\"endpoints\":["
    "{\"name\":\"db-1\",\"labels\":{\"app\":\"db\"},\"addresses\":[\"198.18.0.2\",\"2001:db8::2\"]},"
    "{\"name\":\"lone-1\",\"labels\":{\"app\":\"lone\"},\"addresses\":[\"198.18.0.9\"]},"
    "{\"name\":\"web-1\",\"labels\":{\"app\":\"web\"},\"addresses\":[\"198.18.0.1\",\"2001:db8::1\"]}]}";

struct planned {
	struct bundle *b;
	struct nft_plan p;
	char err[256];
	int ret;
};

static void plan_of(struct planned *pl, const char *policy, const char *endpoint, const struct nft_tag *tag)
{
	const struct bundle_endpoint *ep;

	memset(pl, 0, sizeof(*pl));
	pl->b = compile(policy, inventory);
	ep = pl->b ? bundle_find_endpoint(pl->b, endpoint) : NULL;
	pl->ret = ep ? nft_plan_build(&pl->p, pl->b, ep, tag, NFT_FORM_LINEAR, pl->err, sizeof(pl->err)) : -1;
}

static void planned_release(struct planned *pl)
{
	nft_plan_release(&pl->p);
	bundle_free(pl->b);
}

/* The bundle rules of chain dir: after the fixed rules, before the fallback. */
static const struct nft_plan_rule *rule_at(const struct nft_plan *p, enum direction dir, size_t i)
{
	return &p->rules[p->chains[dir].first_rule + FIXED_COUNT + i];
}

/* The comment and the NFLOG prefix of a rule (one call's worth each). */
static const char *comment(const struct nft_plan_rule *r)
{
	static char buf[NFT_COMMENT_MAX];

	nft_plan_rule_comment(r, buf);
	return buf;
}

static const char *prefix(const struct nft_plan_rule *r)
{
	static char buf[NFT_PREFIX_MAX];

	nft_plan_rule_prefix(r, buf);
	return buf;
}

static size_t n_bundle_rules(const struct nft_plan *p, enum direction dir)
{
	return p->chains[dir].n_rules - FIXED_COUNT - 1;
}

#define DB_POLICY(RULES)                                                                                     \
	"{\"version\":1,\"groups\":{\"web\":{\"labels\":{\"app\":\"web\"}},\"db\":{\"labels\":{\"app\":"     \
	"\"db\"}},"                                                                                          \
	"\"lone\":{\"labels\":{\"app\":\"lone\"}},\"none\":{\"labels\":{\"app\":\"nobody\"}},"               \
	"\"office\":{\"cidrs\":[\"203.0.113.0/24\",\"2001:db8:10::/48\"]}},"                                 \
	"\"policies\":[{\"name\":\"db\",\"applies_to\":\"db\",\"ingress\":[" RULES "]}]}"

TEST(chains_start_with_the_fixed_rules_and_end_with_the_fallback)
{
	struct planned pl;

	plan_of(&pl, DB_POLICY(""), "db-1", NULL);
	CHECK(pl.ret == 0);
	CHECK_STR(pl.p.chains[DIR_INGRESS].name, "ingress");
	CHECK_STR(pl.p.chains[DIR_INGRESS].hook, "input");
	CHECK_STR(pl.p.chains[DIR_EGRESS].name, "egress");
	CHECK_STR(pl.p.chains[DIR_EGRESS].hook, "output");
	CHECK(pl.p.n_sets == 0);
	CHECK(pl.p.n_rules == 2 * (FIXED_COUNT + 1));
	for (int d = 0; d < DIR_COUNT; d++) {
		const struct nft_plan_chain *c = &pl.p.chains[d];
		const char *dc = d == DIR_INGRESS ? "i" : "e";
		char want[NFT_PREFIX_MAX];

		CHECK(c->n_rules == FIXED_COUNT + 1);
		for (int f = 0; f < FIXED_COUNT; f++) {
			const struct nft_plan_rule *r = &pl.p.rules[c->first_rule + f];

			CHECK(r->kind == NFT_PLAN_FIXED && r->fixed == (enum fixed_rule)f &&
			      r->dir == (enum direction)d);
			CHECK_STR(comment(r), fixed_rule_id(f));
			CHECK(!r->set && !r->port && !r->family);
			/* Only the invalid drops log, like every drop: what
			 * conntrack calls invalid and TCP picked up in mid-stream. */
			bool invalid = f == FIXED_CT_INVALID || f == FIXED_TCP_PICKUP;
			snprintf(want, sizeof(want), "bh:D:%sx", dc);
			CHECK_STR(prefix(r), invalid ? want : "");
			CHECK(r->verdict == (invalid ? VERDICT_DROP : VERDICT_ACCEPT));
		}
		const struct nft_plan_rule *fb = &pl.p.rules[c->first_rule + FIXED_COUNT];

		CHECK(fb->kind == NFT_PLAN_FALLBACK && fb->pos == NFT_POSITION_FALLBACK);
		if (d == DIR_INGRESS) { /* isolated by an empty ingress list */
			CHECK(fb->verdict == VERDICT_DROP);
			CHECK_STR(comment(fb), RULE_ID_DEFAULT_DENY);
			CHECK_STR(prefix(fb), "bh:D:i-");
		} else { /* defaults: allow */
			CHECK(fb->verdict == VERDICT_ACCEPT);
			CHECK_STR(comment(fb), RULE_ID_DEFAULTS);
			CHECK_STR(prefix(fb), "");
		}
	}
	CHECK_STR(nft_plan_fixed_match(DIR_INGRESS, FIXED_LOOPBACK), "iif \"lo\"");
	CHECK_STR(nft_plan_fixed_match(DIR_EGRESS, FIXED_LOOPBACK), "oif \"lo\"");
	CHECK_STR(nft_plan_fixed_match(DIR_EGRESS, FIXED_CT_INVALID), "ct state invalid");
	CHECK(!pl.p.has_tag);
	planned_release(&pl);
}

TEST(allow_deny_and_audit_rules_with_peers_and_ports)
{
	struct planned pl;

	plan_of(&pl,
		DB_POLICY("{\"from\":[\"web\"],\"ports\":[\"tcp/5432\",\"udp/53\"]},"
			  "{\"action\":\"deny\",\"from\":[\"office\"]}"),
		"db-1", NULL);
	CHECK(pl.ret == 0);
	/* web and office, both families each. */
	CHECK(pl.p.n_sets == 4);
	/* Rule 0: 2 families x 1 set x 2 ports; rule 1: 2 families x any port. */
	CHECK(n_bundle_rules(&pl.p, DIR_INGRESS) == 6);
	CHECK(n_bundle_rules(&pl.p, DIR_EGRESS) == 0);
	for (size_t i = 0; i < 4; i++) {
		const struct nft_plan_rule *r = rule_at(&pl.p, DIR_INGRESS, i);

		CHECK(r->kind == NFT_PLAN_RULE && r->pos == 0 && r->verdict == VERDICT_ACCEPT);
		CHECK_STR(comment(r), "db/ingress/0");
		CHECK_STR(prefix(r), "");
		CHECK(r->family == (i < 2 ? AF_INET : AF_INET6));
		CHECK(r->set && r->set->family == r->family && strcmp(r->set->src->id, "web") == 0);
		CHECK(r->port && r->port->proto == (i % 2 ? IPPROTO_UDP : IPPROTO_TCP));
	}
	for (size_t i = 4; i < 6; i++) {
		const struct nft_plan_rule *r = rule_at(&pl.p, DIR_INGRESS, i);

		CHECK(r->pos == 1 && r->verdict == VERDICT_DROP && !r->port);
		CHECK_STR(prefix(r), "bh:D:i1");
		CHECK_STR(comment(r), "db/ingress/1");
		CHECK(r->set && strcmp(r->set->src->id, "office") == 0 && r->set->interval);
	}
	planned_release(&pl);

	/* An audit-mode policy's deny audits; a rule without peers needs no
	 * family and makes one rule per port. */
	plan_of(
	    &pl,
	    "{\"version\":1,\"policies\":[{\"name\":\"db\",\"mode\":\"audit\",\"applies_to\":{\"labels\":{}},"
	    "\"egress\":[{\"action\":\"deny\",\"ports\":[\"tcp/1-1024\",\"sctp\"]}]}]}",
	    "db-1", NULL);
	CHECK(pl.ret == 0);
	CHECK(pl.p.n_sets == 0);
	CHECK(n_bundle_rules(&pl.p, DIR_EGRESS) == 2);
	for (size_t i = 0; i < 2; i++) {
		const struct nft_plan_rule *r = rule_at(&pl.p, DIR_EGRESS, i);

		CHECK(r->verdict == VERDICT_AUDIT && !r->family && !r->set && r->port);
		CHECK_STR(prefix(r), "bh:A:e0");
	}
	CHECK(rule_at(&pl.p, DIR_EGRESS, 0)->port->lo == 1 &&
	      rule_at(&pl.p, DIR_EGRESS, 0)->port->hi == 1024);
	CHECK(rule_at(&pl.p, DIR_EGRESS, 1)->port->proto == IPPROTO_SCTP);
	/* Audit mode never opens what the defaults close: the fallback audits. */
	CHECK(pl.p.rules[pl.p.chains[DIR_EGRESS].first_rule + FIXED_COUNT + 2].verdict == VERDICT_AUDIT);
	planned_release(&pl);
}

TEST(icmp_only_for_ipv4_and_icmpv6_only_for_ipv6)
{
	struct planned pl;

	plan_of(&pl, DB_POLICY("{\"from\":[\"web\"],\"ports\":[\"icmp/8\",\"icmpv6/128/0\",\"tcp/22\"]}"),
		"db-1", NULL);
	CHECK(pl.ret == 0);
	/* IPv4: icmp/8, tcp/22; IPv6: icmpv6/128/0, tcp/22. */
	CHECK(n_bundle_rules(&pl.p, DIR_INGRESS) == 4);
	for (size_t i = 0; i < n_bundle_rules(&pl.p, DIR_INGRESS); i++) {
		const struct nft_plan_rule *r = rule_at(&pl.p, DIR_INGRESS, i);

		CHECK(r->port);
		if (r->port && r->family == AF_INET)
			CHECK(r->port->proto != IPPROTO_ICMPV6);
		if (r->port && r->family == AF_INET6)
			CHECK(r->port->proto != IPPROTO_ICMP);
	}
	CHECK(rule_at(&pl.p, DIR_INGRESS, 0)->port->proto == IPPROTO_ICMP);
	CHECK(rule_at(&pl.p, DIR_INGRESS, 0)->port->icmp_type == 8);
	CHECK(rule_at(&pl.p, DIR_INGRESS, 2)->port->proto == IPPROTO_ICMPV6);
	CHECK(rule_at(&pl.p, DIR_INGRESS, 2)->port->icmp_code == 0);
	planned_release(&pl);

	/* Without peers there is no family to choose: both stay. */
	plan_of(&pl, DB_POLICY("{\"ports\":[\"icmp\",\"icmpv6\"]}"), "db-1", NULL);
	CHECK(pl.ret == 0);
	CHECK(n_bundle_rules(&pl.p, DIR_INGRESS) == 2);
	planned_release(&pl);
}

TEST(empty_groups_still_have_a_set_per_family)
{
	struct planned pl;

	plan_of(&pl, DB_POLICY("{\"from\":[\"none\"]},{\"from\":[\"lone\"]}"), "db-1", NULL);
	CHECK(pl.ret == 0);
	/* none (no members) and lone (IPv4 only): two sets each, so that a
	 * first member, or a first IPv6 address, is an element delta. */
	CHECK(pl.p.n_sets == 4);
	for (size_t i = 0; i < pl.p.n_sets; i++) {
		const struct nft_plan_set *s = &pl.p.sets[i];
		bool lone4 = strcmp(s->src->id, "lone") == 0 && s->family == AF_INET;

		CHECK(s->family == (i % 2 ? AF_INET6 : AF_INET));
		CHECK(s->id == i + 1);
		CHECK(!s->interval);
		CHECK(s->members->n == (lone4 ? 1u : 0u));
	}
	CHECK(n_bundle_rules(&pl.p, DIR_INGRESS) == 4);
	planned_release(&pl);
}

TEST(set_names_and_kinds)
{
	struct planned pl;
	char n4[NFT_SET_NAME_MAX], n6[NFT_SET_NAME_MAX], other[NFT_SET_NAME_MAX];

	nft_set_name("web", AF_INET, n4);
	nft_set_name("web", AF_INET6, n6);
	nft_set_name("web#deny", AF_INET, other);
	CHECK(strlen(n4) == 2 + 16 + 3 && strncmp(n4, "s_", 2) == 0 && strcmp(n4 + 18, "_v4") == 0);
	CHECK(strncmp(n4, n6, 18) == 0 && strcmp(n6 + 18, "_v6") == 0);
	CHECK(strcmp(n4, other) != 0);

	plan_of(&pl, DB_POLICY("{\"from\":[\"web\",\"office\"]}"), "db-1", NULL);
	CHECK(pl.ret == 0 && pl.p.n_sets == 4);
	for (size_t i = 0; i < pl.p.n_sets; i++) {
		const struct nft_plan_set *s = &pl.p.sets[i];
		char want[NFT_SET_NAME_MAX];

		nft_set_name(s->src->id, s->family, want);
		CHECK_STR(s->name, want);
		CHECK(s->interval == (s->src->kind == SET_RANGES));
	}
	/* A hosts list with a run longer than any endpoint's becomes an
	 * interval set, so that its elements stay linear in the input. */
	struct bundle_set *web = NULL;
	for (size_t i = 0; i < pl.b->n_sets; i++)
		if (strcmp(pl.b->sets[i].id, "web") == 0)
			web = &pl.b->sets[i];
	CHECK(web && web->kind == SET_HOSTS && web->v4.n == 1);
	if (web && web->v4.n == 1) {
		struct nft_plan p2;
		char err[128];

		web->v4.v[0].hi.bytes[2] = 1; /* 198.18.0.1 - 198.18.1.1 */
		CHECK(nft_plan_build(&p2, pl.b, bundle_find_endpoint(pl.b, "db-1"), NULL, NFT_FORM_LINEAR,
				     err, sizeof(err)) == 0);
		for (size_t i = 0; i < p2.n_sets; i++)
			if (p2.sets[i].src == web)
				CHECK(p2.sets[i].interval == (p2.sets[i].family == AF_INET));
		CHECK(!nft_plan_same_shape(&pl.p, &p2));
		nft_plan_release(&p2);
	}
	planned_release(&pl);
}

TEST(the_bundle_tag)
{
	struct planned pl;
	struct nft_tag tag = {.serial = 1764633600123ULL, .revision = 7}, back;

	memset(tag.hash, 'a', BUNDLE_HASH_HEX);
	plan_of(&pl, DB_POLICY(""), "db-1", &tag);
	CHECK(pl.ret == 0 && pl.p.has_tag);
	CHECK(strncmp(pl.p.tag, "serial 1764633600123 revision 7 bundle aaaa", 43) == 0);
	CHECK(nft_tag_parse(pl.p.tag, &back) == 0);
	CHECK(back.serial == tag.serial && back.revision == 7 && strcmp(back.hash, tag.hash) == 0);
	planned_release(&pl);
}

TEST(same_shape_means_only_members_differ)
{
	static const char inv2[] =
	    "{\"node\":\"n\",\"endpoints\":["
	    "{\"name\":\"db-1\",\"labels\":{\"app\":\"db\"},\"addresses\":[\"198.18.0.2\"]},"
	    "{\"name\":\"web-1\",\"labels\":{\"app\":\"web\"},\"addresses\":[\"198.18.0.1\"]},"
	    "{\"name\":\"web-2\",\"labels\":{\"app\":\"web\"},\"addresses\":[\"198.18.0.3\",\"2001:db8::3\"]}"
	    "]}";
	struct planned a, c;
	struct bundle *b2 = compile(DB_POLICY("{\"from\":[\"web\"],\"ports\":[\"tcp/80\"]}"), inv2);
	struct nft_plan p2;
	char err[128];

	plan_of(&a, DB_POLICY("{\"from\":[\"web\"],\"ports\":[\"tcp/80\"]}"), "db-1", NULL);
	CHECK(a.ret == 0 && b2);
	CHECK(nft_plan_build(&p2, b2, bundle_find_endpoint(b2, "db-1"), NULL, NFT_FORM_LINEAR, err,
			     sizeof(err)) == 0);
	CHECK(nft_plan_same_shape(&a.p, &p2));
	CHECK(nft_plan_same_shape(&p2, &a.p));
	nft_plan_release(&p2);
	bundle_free(b2);

	plan_of(&c, DB_POLICY("{\"from\":[\"web\"],\"ports\":[\"tcp/81\"]}"), "db-1", NULL);
	CHECK(c.ret == 0 && !nft_plan_same_shape(&a.p, &c.p));
	planned_release(&c);
	plan_of(&c, DB_POLICY("{\"action\":\"deny\",\"from\":[\"web\"],\"ports\":[\"tcp/80\"]}"), "db-1",
		NULL);
	CHECK(c.ret == 0 && !nft_plan_same_shape(&a.p, &c.p));
	planned_release(&c);
	plan_of(&c, DB_POLICY("{\"from\":[\"db\"],\"ports\":[\"tcp/80\"]}"), "db-1", NULL);
	CHECK(c.ret == 0 && !nft_plan_same_shape(&a.p, &c.p));
	planned_release(&c);
	planned_release(&a);
}

/* web's IPv4 members made n single addresses from 198.18.0.0 (each a
 * range of one, as the compiler lists hosts); the list is the bundle's. */
static void web_hosts(struct bundle *b, size_t n)
{
	for (size_t i = 0; i < b->n_sets; i++) {
		struct range_list *l = &b->sets[i].v4;

		if (strcmp(b->sets[i].id, "web") != 0)
			continue;
		l->n = 0;
		for (size_t k = 0; k < n; k++) {
			struct addr_range r = {
			    .lo = {.family = AF_INET, .bytes = {198, 18, k >> 8, k & 255}}};

			r.hi = r.lo;
			CHECK(range_list_add(l, &r) == 0);
		}
	}
}

static const struct nft_plan_set *web4(const struct nft_plan *p)
{
	for (size_t i = 0; i < p->n_sets; i++)
		if (strcmp(p->sets[i].src->id, "web") == 0 && p->sets[i].family == AF_INET)
			return &p->sets[i];
	return NULL;
}

TEST(big_hosts_sets_are_sized_and_grow_by_deltas_within_their_size)
{
	struct planned pl;
	struct nft_plan p2;
	char err[128];
	const struct nft_plan_set *s;

	plan_of(&pl, DB_POLICY("{\"from\":[\"web\"],\"ports\":[\"tcp/80\"]}"), "db-1", NULL);
	CHECK(pl.ret == 0 && (s = web4(&pl.p)) && s->size == 0); /* a few: the resizable hash */
	nft_plan_release(&pl.p);
	const struct bundle_endpoint *ep = bundle_find_endpoint(pl.b, "db-1");
	/* 5,000 hosts: sized for twice as many, rounded up to 4,096. */
	web_hosts(pl.b, 5000);
	CHECK(nft_plan_build(&pl.p, pl.b, ep, NULL, NFT_FORM_LINEAR, err, sizeof(err)) == 0);
	s = web4(&pl.p);
	CHECK(s && !s->interval && s->n_elems == 5000 && s->size == 12288);
	/* Up to its size, a change of members is an element delta... */
	web_hosts(pl.b, 12288);
	CHECK(nft_plan_build(&p2, pl.b, ep, NULL, NFT_FORM_LINEAR, err, sizeof(err)) == 0);
	CHECK(nft_plan_same_shape(&pl.p, &p2));
	nft_plan_release(&p2);
	/* ...past it, the set (its cap) is made anew: the whole table. */
	web_hosts(pl.b, 12289);
	CHECK(nft_plan_build(&p2, pl.b, ep, NULL, NFT_FORM_LINEAR, err, sizeof(err)) == 0);
	CHECK(!nft_plan_same_shape(&pl.p, &p2));
	nft_plan_release(&p2);
	/* So is the fall below the threshold, to the resizable hash. */
	web_hosts(pl.b, 100);
	CHECK(nft_plan_build(&p2, pl.b, ep, NULL, NFT_FORM_LINEAR, err, sizeof(err)) == 0);
	CHECK(web4(&p2) && web4(&p2)->size == 0 && !nft_plan_same_shape(&pl.p, &p2));
	nft_plan_release(&p2);
	planned_release(&pl);
}

/* policy (a document: "{...}") with "observe": "all" in it; static. */
static const char *observed(const char *policy)
{
	static char buf[4096];

	snprintf(buf, sizeof(buf), "{\"observe\":\"all\",%s", policy + 1);
	return buf;
}

TEST(observe_all_logs_each_accepting_rule_first_by_a_twin)
{
	struct planned plain, pl;

	plan_of(&plain,
		DB_POLICY("{\"from\":[\"web\"],\"ports\":[\"tcp/5432\"]},"
			  "{\"action\":\"deny\",\"from\":[\"office\"]}"),
		"db-1", NULL);
	plan_of(&pl,
		observed(DB_POLICY("{\"from\":[\"web\"],\"ports\":[\"tcp/5432\"]},"
				   "{\"action\":\"deny\",\"from\":[\"office\"]}")),
		"db-1", NULL);
	CHECK(plain.ret == 0 && pl.ret == 0 && !plain.p.observe && pl.p.observe);
	/* Ingress: the allow rule's 2 nft rules (a family each) get a twin
	 * each, the deny rule's 2 and the default-deny none. */
	CHECK(pl.p.chains[DIR_INGRESS].n_rules == plain.p.chains[DIR_INGRESS].n_rules + 2);
	for (size_t i = 0; i < 4; i++) {
		const struct nft_plan_rule *r = rule_at(&pl.p, DIR_INGRESS, i);

		CHECK(r->kind == NFT_PLAN_RULE && r->pos == 0 && r->verdict == VERDICT_ACCEPT);
		CHECK(r->observe == (i % 2 == 0));
		CHECK(r->family == (i < 2 ? AF_INET : AF_INET6));
		CHECK_STR(comment(r), "db/ingress/0");
		CHECK_STR(prefix(r), i % 2 == 0 ? "bh:P:i0" : "");
		CHECK(nft_plan_rule_logs(r) == (i % 2 == 0));
	}
	for (size_t i = 4; i < 6; i++) {
		const struct nft_plan_rule *r = rule_at(&pl.p, DIR_INGRESS, i);

		CHECK(!r->observe && r->verdict == VERDICT_DROP);
		CHECK_STR(prefix(r), "bh:D:i1");
	}
	/* Egress: no rules, the defaults accept: the fallback's twin. The
	 * fixed rules (established, loopback, ND) never log what they accept. */
	const struct nft_plan_chain *e = &pl.p.chains[DIR_EGRESS];
	CHECK(e->n_rules == FIXED_COUNT + 2);
	for (int f = 0; f < FIXED_COUNT; f++)
		CHECK(!pl.p.rules[e->first_rule + f].observe);
	const struct nft_plan_rule *twin = &pl.p.rules[e->first_rule + FIXED_COUNT];
	const struct nft_plan_rule *fb = twin + 1;
	CHECK(twin->kind == NFT_PLAN_FALLBACK && twin->observe && twin->pos == NFT_POSITION_FALLBACK);
	CHECK_STR(prefix(twin), "bh:P:e-");
	CHECK_STR(comment(twin), RULE_ID_DEFAULTS);
	CHECK(fb->kind == NFT_PLAN_FALLBACK && !fb->observe && fb->verdict == VERDICT_ACCEPT);
	CHECK_STR(prefix(fb), "");
	/* Observing or not is a different table, never an element delta. */
	CHECK(!nft_plan_same_shape(&plain.p, &pl.p));
	CHECK(!nft_plan_same_shape(&pl.p, &plain.p));
	planned_release(&plain);
	planned_release(&pl);

	/* An audit (which accepts, and logs as audit) has no twin. */
	plan_of(&pl,
		"{\"version\":1,\"observe\":\"all\",\"policies\":[{\"name\":\"db\",\"mode\":\"audit\","
		"\"applies_to\":{\"labels\":{}},\"egress\":[{\"action\":\"deny\",\"ports\":[\"sctp\"]}]}]}",
		"db-1", NULL);
	CHECK(pl.ret == 0);
	CHECK(pl.p.chains[DIR_EGRESS].n_rules == FIXED_COUNT + 2);
	CHECK(rule_at(&pl.p, DIR_EGRESS, 0)->verdict == VERDICT_AUDIT &&
	      !rule_at(&pl.p, DIR_EGRESS, 0)->observe);
	CHECK_STR(prefix(rule_at(&pl.p, DIR_EGRESS, 0)), "bh:A:e0");
	planned_release(&pl);
}

TEST(the_automatic_form_keeps_short_lists_linear_and_maps_long_ones)
{
	/* 16 nft rules in a direction (8 rules of one peer set and two ports)
	 * stay a list; a ninth rule makes a walk of 18, and the maps. */
	char rules[2048] = "", policy[4096];
	struct bundle *b;
	struct nft_plan p;
	char err[256];

	for (int n = 1; n <= 9; n++) {
		snprintf(rules + strlen(rules), sizeof(rules) - strlen(rules),
			 "%s{\"action\":\"allow\",\"from\":[\"web\"],\"ports\":[\"tcp/%d\",\"udp/%d\"]}",
			 n > 1 ? "," : "", 1000 + n, 1000 + n);
		if (n < 8)
			continue;
		snprintf(policy, sizeof(policy), DB_POLICY("%s"), rules);
		b = compile(policy, inventory);
		CHECK(b != NULL);
		if (!b)
			return;
		CHECK(nft_plan_build(&p, b, bundle_find_endpoint(b, "db-1"), NULL, NFT_FORM_AUTO, err,
				     sizeof(err)) == 0);
		CHECK(p.form == (n == 8 ? NFT_FORM_LINEAR : NFT_FORM_MAPS));
		nft_plan_release(&p);
		/* The forms asked for by name are kept whatever the length. */
		CHECK(nft_plan_build(&p, b, bundle_find_endpoint(b, "db-1"), NULL, NFT_FORM_MAPS, err,
				     sizeof(err)) == 0);
		CHECK(p.form == NFT_FORM_MAPS);
		nft_plan_release(&p);
		CHECK(nft_plan_build(&p, b, bundle_find_endpoint(b, "db-1"), NULL, NFT_FORM_LINEAR, err,
				     sizeof(err)) == 0);
		CHECK(p.form == NFT_FORM_LINEAR);
		nft_plan_release(&p);
		bundle_free(b);
	}
}

TEST(what_nft_cannot_express_is_refused_with_the_reason)
{
	struct planned pl;
	struct nft_plan p2;
	char err[256];

	plan_of(&pl, DB_POLICY("{\"from\":[\"web\"]}"), "db-1", NULL);
	CHECK(pl.ret == 0);
	struct bundle_endpoint *ep = (struct bundle_endpoint *)bundle_find_endpoint(pl.b, "db-1");

	ep->chains[DIR_INGRESS].rules[0].sets[0] = 99;
	CHECK(nft_plan_build(&p2, pl.b, ep, NULL, NFT_FORM_LINEAR, err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, "db/ingress/0: set index 99 out of range") != NULL);
	CHECK(p2.rules == NULL && p2.n_rules == 0);
	ep->chains[DIR_INGRESS].rules[0].sets[0] = 0;
	ep->chains[DIR_EGRESS].fallback = (enum verdict)7;
	CHECK(nft_plan_build(&p2, pl.b, ep, NULL, NFT_FORM_LINEAR, err, sizeof(err)) == -EINVAL);
	CHECK_STR(err, "egress chain: bad fallback verdict");
	planned_release(&pl);
}

/* ---- named ports (egress) ----------------------------------------------- */

/* A bundle by hand (the compiler's side is another branch's): endpoint e
 * with egress rules
 *   0: allow to db (198.18.0.2, .3, 2001:db8::2) on tcp/http and tcp/5432
 *   1: deny (enforce) to anyone on udp/dns
 * with the tables "tcp/http": .2 → 8080, .3 → 9090, ::2 → 8080 and
 * "udp/dns#deny": 198.18.0.9 → 53. */
struct named_world {
	struct bundle b;
	struct bundle_endpoint ep;
	struct bundle_set set;
	struct bundle_rule rules[2];
	uint32_t refs[1];
	struct port_match ports[3];
	struct bundle_named_port np[2];
	struct bundle_named_addr http[3], dns[1];
};

static struct bh_addr addr_of(const char *s)
{
	struct bh_addr a;

	if (addr_parse(s, &a) < 0)
		abort();
	return a;
}

static void named_world(struct named_world *w)
{
	struct addr_range r;

	memset(w, 0, sizeof(*w));
	w->set.id = "db";
	w->set.kind = SET_HOSTS;
	range_list_init(&w->set.v4, NULL);
	range_list_init(&w->set.v6, NULL);
	r.lo = r.hi = addr_of("198.18.0.2");
	CHECK(range_list_add(&w->set.v4, &r) == 0);
	r.lo = r.hi = addr_of("198.18.0.3");
	CHECK(range_list_add(&w->set.v4, &r) == 0);
	r.lo = r.hi = addr_of("2001:db8::2");
	CHECK(range_list_add(&w->set.v6, &r) == 0);
	w->http[0] = (struct bundle_named_addr){addr_of("198.18.0.2"), 8080};
	w->http[1] = (struct bundle_named_addr){addr_of("198.18.0.3"), 9090};
	w->http[2] = (struct bundle_named_addr){addr_of("2001:db8::2"), 8080};
	w->dns[0] = (struct bundle_named_addr){addr_of("198.18.0.9"), 53};
	w->np[0] = (struct bundle_named_port){
	    .id = "tcp/http", .name = "http", .proto = IPPROTO_TCP, .v = w->http, .n = 3};
	w->np[1] = (struct bundle_named_port){
	    .id = "udp/dns#deny", .name = "dns", .proto = IPPROTO_UDP, .v = w->dns, .n = 1};
	w->ports[0] = (struct port_match){
	    .proto = IPPROTO_TCP, .icmp_type = -1, .icmp_code = -1, .name = "http", .named_table = 0};
	w->ports[1] = (struct port_match){
	    .proto = IPPROTO_TCP, .lo = 5432, .hi = 5432, .icmp_type = -1, .icmp_code = -1};
	w->ports[2] = (struct port_match){
	    .proto = IPPROTO_UDP, .icmp_type = -1, .icmp_code = -1, .name = "dns", .named_table = 1};
	w->rules[0] = (struct bundle_rule){.id = "app/egress/0",
					   .policy = "app",
					   .action = ACTION_ALLOW,
					   .mode = MODE_ENFORCE,
					   .sets = w->refs,
					   .n_sets = 1,
					   .ports = &w->ports[0],
					   .n_ports = 2};
	w->rules[1] = (struct bundle_rule){.id = "app/egress/1",
					   .policy = "app",
					   .index = 1,
					   .action = ACTION_DENY,
					   .mode = MODE_ENFORCE,
					   .any_peer = true,
					   .ports = &w->ports[2],
					   .n_ports = 1};
	w->ep.name = "e";
	w->ep.chains[DIR_INGRESS].fallback = VERDICT_DROP;
	w->ep.chains[DIR_INGRESS].fallback_reason = RULE_ID_DEFAULT_DENY;
	w->ep.chains[DIR_EGRESS].rules = w->rules;
	w->ep.chains[DIR_EGRESS].n_rules = 2;
	w->ep.chains[DIR_EGRESS].fallback = VERDICT_DROP;
	w->ep.chains[DIR_EGRESS].fallback_reason = RULE_ID_DEFAULT_DENY;
	w->b = (struct bundle){.node = "n",
			       .endpoints = &w->ep,
			       .n_endpoints = 1,
			       .sets = &w->set,
			       .n_sets = 1,
			       .named_ports = w->np,
			       .n_named_ports = 2};
}

static void named_world_release(struct named_world *w)
{
	range_list_release(&w->set.v4);
	range_list_release(&w->set.v6);
}

/* What decides an egress packet to dst, proto, dport: the rule's id. */
static const char *named_decides(const struct nft_plan *p, const char *dst, uint8_t proto, uint16_t dport)
{
	struct bh_addr a = addr_of(dst);
	struct nft_packet pkt = {.family = a.family, .l4proto = proto, .has_th = true};
	long i;

	memcpy(pkt.peer, a.bytes, a.family == AF_INET ? 4 : 16);
	pkt.th[0] = 0x9c;
	pkt.th[2] = (uint8_t)(dport >> 8);
	pkt.th[3] = (uint8_t)dport;
	i = nft_plan_decide(p, DIR_EGRESS, &pkt);
	return i < 0 ? "(none)" : p->rules[i].id ? p->rules[i].id : "(no id)";
}

/* named_world's egress, decided by plan p: each destination on its own
 * number, and only there; a name with the other protocol, or one the
 * destination does not define, matches nothing. */
static void check_named_decisions(const struct nft_plan *p)
{
	CHECK_STR(named_decides(p, "198.18.0.2", IPPROTO_TCP, 8080), "app/egress/0");
	CHECK_STR(named_decides(p, "198.18.0.2", IPPROTO_TCP, 9090), RULE_ID_DEFAULT_DENY);
	CHECK_STR(named_decides(p, "198.18.0.3", IPPROTO_TCP, 9090), "app/egress/0");
	CHECK_STR(named_decides(p, "198.18.0.3", IPPROTO_TCP, 8080), RULE_ID_DEFAULT_DENY);
	CHECK_STR(named_decides(p, "198.18.0.3", IPPROTO_TCP, 5432), "app/egress/0");
	CHECK_STR(named_decides(p, "2001:db8::2", IPPROTO_TCP, 8080), "app/egress/0");
	CHECK_STR(named_decides(p, "198.18.0.2", IPPROTO_UDP, 8080), RULE_ID_DEFAULT_DENY);
	CHECK_STR(named_decides(p, "198.18.0.9", IPPROTO_UDP, 53), "app/egress/1");
	CHECK_STR(named_decides(p, "198.18.0.9", IPPROTO_TCP, 53), RULE_ID_DEFAULT_DENY);
	CHECK_STR(named_decides(p, "198.18.0.8", IPPROTO_UDP, 53), RULE_ID_DEFAULT_DENY);
}

TEST(an_egress_named_port_looks_up_address_and_port_together)
{
	struct named_world w;
	struct nft_plan p;
	char err[256];

	named_world(&w);
	CHECK(nft_plan_build(&p, &w.b, &w.ep, NULL, NFT_FORM_LINEAR, err, sizeof(err)) == 0);
	/* db's two sets, then a named set per table and family. */
	CHECK(p.n_sets == 6);
	for (size_t i = 2; i < 6; i++) {
		const struct nft_plan_set *ns = &p.sets[i];

		CHECK(ns->named == &w.np[(i - 2) / 2] && !ns->src && !ns->members && !ns->interval);
		CHECK(ns->family == (i % 2 ? AF_INET6 : AF_INET));
		CHECK(strncmp(ns->name, "n_", 2) == 0);
	}
	CHECK(p.sets[2].n_keys == 2 && p.sets[3].n_keys == 1 && p.sets[4].n_keys == 1 &&
	      p.sets[5].n_keys == 0);
	/* 198.18.0.2 . 8080 as nft keys it: the address, the port in 4 bytes. */
	static const uint8_t k0[8] = {198, 18, 0, 2, 0x1f, 0x90, 0, 0};
	CHECK(memcmp(p.sets[2].keys[0], k0, 8) == 0);
	/* Rule 0: per family, db and http, db and 5432; rule 1: any peer,
	 * but a family each for its named set. Same id and log position. */
	CHECK(n_bundle_rules(&p, DIR_EGRESS) == 6);
	for (size_t i = 0; i < 6; i++) {
		const struct nft_plan_rule *r = rule_at(&p, DIR_EGRESS, i);

		CHECK(r->kind == NFT_PLAN_RULE && r->pos == (i < 4 ? 0 : 1));
		CHECK(r->family == (i % 4 < 2 && i < 4 ? AF_INET
				    : i < 4	       ? AF_INET6
				    : i == 4	       ? AF_INET
						       : AF_INET6));
		CHECK(!r->named == (i == 1 || i == 3));
		if (r->named)
			CHECK(r->named->family == r->family && r->named->named == &w.np[i < 4 ? 0 : 1]);
		CHECK((r->set != NULL) == (i < 4));
		CHECK_STR(comment(r), i < 4 ? "app/egress/0" : "app/egress/1");
		CHECK_STR(prefix(r), i < 4 ? "" : "bh:D:e1");
	}
	check_named_decisions(&p);
	nft_plan_release(&p);

	/* The map form decides alike. */
	CHECK(nft_plan_build(&p, &w.b, &w.ep, NULL, NFT_FORM_MAPS, err, sizeof(err)) == 0);
	check_named_decisions(&p);
	nft_plan_release(&p);

	/* The text nft loads. */
	char *text = NULL;

	CHECK(nft_render_text(&w.b, &w.ep, 5, NFT_FORM_LINEAR, &text) == 0);
	CHECK(text && strstr(text, "type ipv4_addr . inet_service\n\t\telements = { 198.18.0.2 . 8080, "
				   "198.18.0.3 . 9090 }"));
	CHECK(text && strstr(text, "meta nfproto ipv4 ip daddr @s_") &&
	      strstr(text, "meta l4proto tcp ip daddr . th dport @n_"));
	CHECK(text && strstr(text, "meta nfproto ipv6 meta l4proto udp ip6 daddr . th dport @n_"));
	free(text);
	named_world_release(&w);
}

TEST(a_renumbering_is_the_same_shape)
{
	struct named_world w;
	struct nft_plan a, c;
	char err[256];

	named_world(&w);
	for (int form = 0; form < 2; form++) {
		enum nft_form f = form ? NFT_FORM_MAPS : NFT_FORM_LINEAR;

		w.http[1].port = 9090;
		CHECK(nft_plan_build(&a, &w.b, &w.ep, NULL, f, err, sizeof(err)) == 0);
		w.http[1].port = 9091;
		CHECK(nft_plan_build(&c, &w.b, &w.ep, NULL, f, err, sizeof(err)) == 0);
		CHECK(nft_plan_same_shape(&a, &c));
		CHECK_STR(named_decides(&c, "198.18.0.3", IPPROTO_TCP, 9091), "app/egress/0");
		CHECK_STR(named_decides(&c, "198.18.0.3", IPPROTO_TCP, 9090), RULE_ID_DEFAULT_DENY);
		nft_plan_release(&c);
		/* Another table is another set (the maps: other elements). */
		w.np[0].id = "tcp/web";
		CHECK(nft_plan_build(&c, &w.b, &w.ep, NULL, f, err, sizeof(err)) == 0);
		CHECK(form == 1 || !nft_plan_same_shape(&a, &c));
		w.np[0].id = "tcp/http";
		nft_plan_release(&c);
		nft_plan_release(&a);
	}
	named_world_release(&w);
}

TEST(the_automatic_form_keeps_names_numbered_many_ways_linear)
{
	static struct bundle_named_addr many[NFT_NAMED_NUMBERS_MAX + 1];
	struct bundle_rule rules[9];
	struct named_world w;
	struct nft_plan p;
	char err[256];

	named_world(&w);
	/* 9 rules of 2 ports: a walk of 18, the maps... */
	for (size_t i = 0; i < 9; i++)
		rules[i] = w.rules[0];
	w.ep.chains[DIR_EGRESS].rules = rules;
	w.ep.chains[DIR_EGRESS].n_rules = 9;
	for (size_t i = 0; i < BH_ARRAY_SIZE(many); i++) {
		many[i].addr = addr_of("198.18.1.0");
		many[i].addr.bytes[3] = (uint8_t)i;
		many[i].addr.bytes[2] = (uint8_t)(1 + i / 256);
		many[i].port = (uint16_t)(10000 + i);
	}
	w.np[0].v = many;
	w.np[0].n = NFT_NAMED_NUMBERS_MAX;
	CHECK(nft_plan_build(&p, &w.b, &w.ep, NULL, NFT_FORM_AUTO, err, sizeof(err)) == 0);
	CHECK(p.form == NFT_FORM_MAPS);
	nft_plan_release(&p);
	/* ...but for http numbered one way too many: a class each. */
	w.np[0].n = NFT_NAMED_NUMBERS_MAX + 1;
	CHECK(nft_plan_build(&p, &w.b, &w.ep, NULL, NFT_FORM_AUTO, err, sizeof(err)) == 0);
	CHECK(p.form == NFT_FORM_LINEAR);
	nft_plan_release(&p);
	/* The same number many times over is one number. */
	for (size_t i = 0; i < BH_ARRAY_SIZE(many); i++)
		many[i].port = 8080;
	CHECK(nft_plan_build(&p, &w.b, &w.ep, NULL, NFT_FORM_AUTO, err, sizeof(err)) == 0);
	CHECK(p.form == NFT_FORM_MAPS);
	nft_plan_release(&p);
	/* A table index out of range is the check's to refuse. */
	w.ports[0].named_table = 7;
	CHECK(nft_plan_build(&p, &w.b, &w.ep, NULL, NFT_FORM_AUTO, err, sizeof(err)) == -EINVAL);
	named_world_release(&w);
}

TEST(a_big_named_set_is_sized_as_a_big_hosts_set_is)
{
	static struct bundle_named_addr big[5000];
	struct named_world w;
	struct nft_plan a, c;
	char err[256];

	named_world(&w);
	for (size_t i = 0; i < BH_ARRAY_SIZE(big); i++) {
		big[i].addr = addr_of("198.18.0.0");
		big[i].addr.bytes[2] = (uint8_t)(i / 256);
		big[i].addr.bytes[3] = (uint8_t)i;
		big[i].port = 8080;
	}
	w.np[0].v = big;
	w.np[0].n = 4000;
	CHECK(nft_plan_build(&a, &w.b, &w.ep, NULL, NFT_FORM_LINEAR, err, sizeof(err)) == 0);
	CHECK(a.sets[2].named && a.sets[2].n_keys == 4000 && a.sets[2].size == 0);
	nft_plan_release(&a);
	w.np[0].n = 4096;
	CHECK(nft_plan_build(&a, &w.b, &w.ep, NULL, NFT_FORM_LINEAR, err, sizeof(err)) == 0);
	CHECK(a.sets[2].size == 8192 && a.sets[3].size == 0);
	/* Renumbered, or grown within its size: a delta. */
	big[7].port = 9090;
	w.np[0].n = 5000;
	CHECK(nft_plan_build(&c, &w.b, &w.ep, NULL, NFT_FORM_LINEAR, err, sizeof(err)) == 0);
	CHECK(c.sets[2].size == 12288 && nft_plan_same_shape(&a, &c));
	nft_plan_release(&c);
	char *text = NULL;
	CHECK(nft_render_text(&w.b, &w.ep, 5, NFT_FORM_LINEAR, &text) == 0);
	CHECK(text && strstr(text, "type ipv4_addr . inet_service\n\t\tsize 12288\n"));
	free(text);
	nft_plan_release(&a);
	named_world_release(&w);
}

TEST(a_named_port_nft_cannot_express_is_refused)
{
	struct named_world w;
	struct nft_plan p;
	char err[256];

	named_world(&w);
	w.ports[0].named_table = 2; /* no such table */
	CHECK(nft_plan_build(&p, &w.b, &w.ep, NULL, NFT_FORM_LINEAR, err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, "app/egress/0: port match 0 not expressible") != NULL);
	w.ports[0].named_table = 1; /* a UDP table for a TCP name */
	CHECK(nft_plan_build(&p, &w.b, &w.ep, NULL, NFT_FORM_MAPS, err, sizeof(err)) == -EINVAL);
	w.ports[0].named_table = 0;
	/* Ingress names are the compiler's to resolve: a bundle with one is
	 * not what a controller sends. */
	w.ep.chains[DIR_INGRESS] = w.ep.chains[DIR_EGRESS];
	CHECK(nft_plan_build(&p, &w.b, &w.ep, NULL, NFT_FORM_LINEAR, err, sizeof(err)) == -EINVAL);
	named_world_release(&w);
}

int main(void)
{
	return test_main();
}
