/* Tightening cuts live connections (agent/conntrack.h), without root:
 * judging a conntrack entry by a compiled bundle (cut, keep, audit; which
 * chain; loopback, DNAT, expected connections, ICMP, IPv6), telling an
 * update that only loosens from one that may tighten (by hand, and a
 * property over random policies and their mutations: whenever no dump is
 * asked for, no packet is judged more strictly), and the ctnetlink codec
 * (conntrack-nl.h): dump messages as the kernel builds them read exactly,
 * every malformed one refused, delete requests that name the entry. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>

#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>

#include "bulkhead/compile.h"
#include "bulkhead/inventory.h"
#include "bulkhead/log.h"
#include "bulkhead/policy.h"
#include "conntrack-nl.h"
#include "conntrack.h"
#include "scenario.h"
#include "test.h"

/* ---- bundles ---- */

/* web (198.18.0.10, 2001:db8::10) and db (198.18.0.40) on n1. */
static const char inventory_text[] =
    "{\"node\":\"n1\",\"endpoints\":["
    "{\"name\":\"web\",\"labels\":{\"app\":\"web\"},\"addresses\":[\"198.18.0.10\",\"2001:db8::10\"]},"
    "{\"name\":\"db\",\"labels\":{\"app\":\"db\"},\"addresses\":[\"198.18.0.40\"]}]}";

static struct bundle *compile(const char *policy)
{
	return scenario_compile(policy, inventory_text, "n1", 0);
}

static const struct bundle_endpoint *web(const struct bundle *b)
{
	return b ? bundle_find_endpoint(b, "web") : NULL;
}

/* ---- entries ---- */

static struct bh_addr A(const char *s) {
	struct bh_addr a = {0};
	if (addr_parse(s, &a) < 0)
		abort();
	return a;
}

/* src:sport -> dst:dport of proto, answered from the same dst. */
static struct ct_entry
conn(uint8_t proto, const char *src, uint16_t sport, const char *dst, uint16_t dport)
{
	struct ct_entry ce = {.has_id = true, .id = 7};
	ce.orig = (struct ct_tuple){
	    .src = A(src), .dst = A(dst), .proto = proto, .has_ports = true, .sport = sport, .dport = dport};
	ce.reply = (struct ct_tuple){
	    .src = A(dst), .dst = A(src), .proto = proto, .has_ports = true, .sport = dport, .dport = sport};
	return ce;
}

static struct ct_entry echo(uint8_t proto, const char *src, const char *dst)
{
	struct ct_entry ce = {0};
	uint8_t req = proto == IPPROTO_ICMP ? 8 : 128, rep = proto == IPPROTO_ICMP ? 0 : 129;
	ce.orig =
	    (struct ct_tuple){.src = A(src), .dst = A(dst), .proto = proto, .icmp_type = req, .icmp_id = 9};
	ce.reply =
	    (struct ct_tuple){.src = A(dst), .dst = A(src), .proto = proto, .icmp_type = rep, .icmp_id = 9};
	return ce;
}

/* The namespace's own addresses, sorted. */
static struct bh_addr local[3];
static size_t n_local;

static void set_local(void)
{
	local[0] = A("198.18.0.10");
	local[1] = A("2001:db8::10");
	local[2] = A("fe80::10");
	n_local = 3;
}

static struct ct_judgement judge(const struct bundle *b, const struct ct_entry *ce)
{
	struct ct_judgement j;
	set_local();
	conntrack_judge(b, web(b), local, n_local, ce, &j);
	return j;
}

/* web accepts clients (198.18.0.20/31) on tcp/80 and udp/53; may open
 * only db tcp/5432; "others" (198.18.0.30) are denied by an audit policy
 * before anything else. */
static const char policy_text[] =
    "{\"version\":1,\"groups\":{\"clients\":{\"cidrs\":[\"198.18.0.20/31\",\"2001:db8::20/127\"]},"
    "\"others\":{\"cidrs\":[\"198.18.0.30/32\"]},\"db\":{\"labels\":{\"app\":\"db\"}}},"
    "\"policies\":["
    "{\"name\":\"rollout\",\"order\":10,\"mode\":\"audit\",\"applies_to\":{\"labels\":{\"app\":\"web\"}},"
    " \"ingress\":[{\"action\":\"deny\",\"from\":[\"others\"]}]},"
    "{\"name\":\"web\",\"applies_to\":{\"labels\":{\"app\":\"web\"}},"
    " \"ingress\":[{\"from\":[\"clients\"],\"ports\":[\"tcp/80\",\"udp/53\",\"icmp/8\",\"icmpv6/128\"]}],"
    " \"egress\":[{\"to\":[\"db\"],\"ports\":[\"tcp/5432\"]}]}]}";

TEST(an_answered_connection_is_judged_by_ingress_an_opened_one_by_egress)
{
	struct bundle *b = compile(policy_text);
	CHECK(b && web(b));
	if (!b)
		return;
	struct ct_entry ce = conn(IPPROTO_TCP, "198.18.0.21", 40000, "198.18.0.10", 80);
	struct ct_judgement j = judge(b, &ce);
	CHECK(j.fate == CT_KEEP && j.dir == DIR_INGRESS && !j.loopback);
	CHECK_STR(j.res.reason, "web/ingress/0");

	ce = conn(IPPROTO_TCP, "198.18.0.21", 40000, "198.18.0.10", 22); /* a port no rule opens */
	j = judge(b, &ce);
	CHECK(j.fate == CT_CUT && j.dir == DIR_INGRESS);
	CHECK_STR(j.res.reason, RULE_ID_DEFAULT_DENY);
	CHECK(j.pkt.dport == 22 && j.pkt.proto == IPPROTO_TCP);

	ce = conn(IPPROTO_UDP, "198.18.0.22", 5353, "198.18.0.10", 53); /* not a client */
	j = judge(b, &ce);
	CHECK(j.fate == CT_CUT && j.dir == DIR_INGRESS);

	ce = conn(IPPROTO_TCP, "198.18.0.10", 41000, "198.18.0.40", 5432);
	j = judge(b, &ce);
	CHECK(j.fate == CT_KEEP && j.dir == DIR_EGRESS);
	CHECK_STR(j.res.reason, "web/egress/0");

	ce = conn(IPPROTO_TCP, "198.18.0.10", 41000, "198.18.0.40", 22);
	j = judge(b, &ce);
	CHECK(j.fate == CT_CUT && j.dir == DIR_EGRESS);
	CHECK_STR(j.res.reason, RULE_ID_DEFAULT_DENY);
	bundle_free(b);
}

TEST(an_audit_policy_keeps_what_it_would_cut_and_says_which_rule)
{
	struct bundle *b = compile(policy_text);
	if (!b)
		return;
	struct ct_entry ce = conn(IPPROTO_TCP, "198.18.0.30", 40000, "198.18.0.10", 80);
	struct ct_judgement j = judge(b, &ce);
	CHECK(j.fate == CT_AUDIT && j.dir == DIR_INGRESS);
	CHECK_STR(j.res.reason, "rollout/ingress/0");
	CHECK(j.res.rule && j.res.rule == &web(b)->chains[DIR_INGRESS].rules[0]);
	bundle_free(b);
}

TEST(loopback_is_never_judged)
{
	struct bundle *b = compile(policy_text);
	if (!b)
		return;
	struct ct_entry ce = conn(IPPROTO_TCP, "198.18.0.10", 40000, "198.18.0.10", 9999);
	struct ct_judgement j = judge(b, &ce);
	CHECK(j.fate == CT_KEEP && j.loopback);
	ce = conn(IPPROTO_TCP, "127.0.0.1", 40000, "127.0.0.53", 53);
	CHECK(judge(b, &ce).loopback);
	ce = conn(IPPROTO_UDP, "::1", 40000, "::1", 53);
	CHECK(judge(b, &ce).loopback);
	bundle_free(b);
}

TEST(the_destination_is_judged_as_the_rules_saw_it_after_dnat)
{
	struct bundle *b = compile(policy_text);
	if (!b)
		return;
	/* web opened 10.96.0.1:80, which DNAT sent to db:5432 (allowed). */
	struct ct_entry ce = conn(IPPROTO_TCP, "198.18.0.10", 41000, "10.96.0.1", 80);
	ce.reply.src = A("198.18.0.40");
	ce.reply.sport = 5432;
	struct ct_judgement j = judge(b, &ce);
	CHECK(j.fate == CT_KEEP && j.dir == DIR_EGRESS);
	CHECK(addr_cmp(&j.pkt.dst, &ce.reply.src) == 0 && j.pkt.dport == 5432);
	/* and the other way: sent to db:80, which the policy does not open */
	ce.reply.sport = 80;
	CHECK(judge(b, &ce).fate == CT_CUT);
	bundle_free(b);
}

TEST(an_expected_connection_is_judged_as_its_master)
{
	struct bundle *b = compile(policy_text);
	if (!b)
		return;
	/* A data connection a client's allowed control connection expects. */
	struct ct_entry ce = conn(IPPROTO_TCP, "198.18.0.21", 20, "198.18.0.10", 30000);
	CHECK(judge(b, &ce).fate == CT_CUT);
	struct ct_entry master = conn(IPPROTO_TCP, "198.18.0.21", 40000, "198.18.0.10", 80);
	ce.has_master = true;
	ce.master = master.orig;
	struct ct_judgement j = judge(b, &ce);
	CHECK(j.fate == CT_KEEP && j.pkt.dport == 80);
	/* its master no longer allowed: it goes too */
	ce.master.src = A("198.18.0.22");
	CHECK(judge(b, &ce).fate == CT_CUT);
	bundle_free(b);
}

TEST(icmp_and_ipv6_connections_are_judged_too)
{
	struct bundle *b = compile(policy_text);
	if (!b)
		return;
	struct ct_entry ce = echo(IPPROTO_ICMP, "198.18.0.21", "198.18.0.10");
	struct ct_judgement j = judge(b, &ce);
	CHECK(j.fate == CT_KEEP && j.pkt.icmp_type == 8);
	ce = echo(IPPROTO_ICMP, "198.18.0.22", "198.18.0.10");
	CHECK(judge(b, &ce).fate == CT_CUT);
	ce = echo(IPPROTO_ICMPV6, "2001:db8::21", "2001:db8::10");
	CHECK(judge(b, &ce).fate == CT_KEEP);
	ce = conn(IPPROTO_TCP, "2001:db8::21", 40000, "2001:db8::10", 80);
	CHECK(judge(b, &ce).fate == CT_KEEP);
	ce = conn(IPPROTO_TCP, "2001:db8::99", 40000, "2001:db8::10", 80);
	CHECK(judge(b, &ce).fate == CT_CUT);
	/* opened from web's link-local address: its egress judges it */
	ce = conn(IPPROTO_TCP, "fe80::10", 40000, "fe80::99", 80);
	j = judge(b, &ce);
	CHECK(j.fate == CT_CUT && j.dir == DIR_EGRESS);
	bundle_free(b);
}

/* ---- tightening ---- */

/* web's ingress from clients (cidrs) on ports, and a deny from bad. */
static struct bundle *variant(const char *clients, const char *ports, const char *bad, const char *extra)
{
	char p[2048];
	snprintf(p, sizeof(p),
		 "{\"version\":1,\"groups\":{\"clients\":{\"cidrs\":[%s]},\"bad\":{\"cidrs\":[%s]}},"
		 "\"policies\":[{\"name\":\"web\",\"applies_to\":{\"labels\":{\"app\":\"web\"}},"
		 "\"ingress\":[{\"action\":\"deny\",\"from\":[\"bad\"]},{\"from\":[\"clients\"],\"ports\":[%"
		 "s]}%s]}]}",
		 clients, bad, ports, extra);
	return compile(p);
}

static bool tightens(const struct bundle *a, const struct bundle *b)
{
	return conntrack_tightened(a, web(a), b, web(b), NULL);
}

TEST(an_update_that_only_loosens_needs_no_dump_and_one_that_may_tighten_does)
{
	struct bundle *base = variant("\"198.18.0.20/30\"", "\"tcp/80\"", "\"198.18.0.30/31\"", "");
	struct bundle *same = variant("\"198.18.0.20/30\"", "\"tcp/80\"", "\"198.18.0.30/31\"", "");
	struct bundle *grown = variant("\"198.18.0.16/28\"", "\"tcp/80\"", "\"198.18.0.30/31\"", "");
	struct bundle *shrunk = variant("\"198.18.0.20/31\"", "\"tcp/80\"", "\"198.18.0.30/31\"", "");
	struct bundle *deny_shrunk = variant("\"198.18.0.20/30\"", "\"tcp/80\"", "\"198.18.0.30/32\"", "");
	struct bundle *deny_grown =
	    variant("\"198.18.0.20/30\"", "\"tcp/80\"", "\"198.18.0.30/31\",\"10.0.0.0/8\"", "");
	struct bundle *port = variant("\"198.18.0.20/30\"", "\"tcp/81\"", "\"198.18.0.30/31\"", "");
	struct bundle *added = variant("\"198.18.0.20/30\"", "\"tcp/80\"", "\"198.18.0.30/31\"",
				       ",{\"from\":[{\"cidrs\":[\"203.0.113.0/24\"]}]}");
	struct bundle *added_deny =
	    variant("\"198.18.0.20/30\"", "\"tcp/80\"", "\"198.18.0.30/31\"",
		    ",{\"action\":\"deny\",\"from\":[{\"cidrs\":[\"203.0.113.0/24\"]}]}");
	CHECK(base && same && grown && shrunk && deny_shrunk && deny_grown && port && added && added_deny);
	if (!(base && same && grown && shrunk && deny_shrunk && deny_grown && port && added && added_deny))
		return;
	CHECK(!tightens(base, same));
	CHECK(!tightens(base, grown));	     /* a member joins an allowed group */
	CHECK(tightens(base, shrunk));	     /* a member leaves it: a set delta that cuts */
	CHECK(!tightens(base, deny_shrunk)); /* fewer denied */
	CHECK(tightens(base, deny_grown));   /* more denied */
	CHECK(tightens(base, port));	     /* tcp/80 no longer open */
	CHECK(!tightens(base, added));	     /* an allow rule more */
	CHECK(tightens(added, base));	     /* and taken away */
	CHECK(
	    tightens(base, added_deny)); /* a deny rule more (here it changes nothing: judged all the same) */
	CHECK(!tightens(added_deny, base));			       /* and taken away: fewer denied */
	CHECK(conntrack_tightened(NULL, NULL, base, web(base), NULL)); /* unknown before: everything judged */
	struct conntrack_memo *m = conntrack_memo_new();	       /* the memo gives the same answers */
	CHECK(tightens(base, shrunk) == conntrack_tightened(base, web(base), shrunk, web(shrunk), m));
	CHECK(conntrack_tightened(base, web(base), shrunk, web(shrunk), m));
	CHECK(!conntrack_tightened(base, web(base), grown, web(grown), m));
	CHECK(!conntrack_tightened(base, web(base), grown, web(grown), m));
	conntrack_memo_free(m);
	bundle_free(base), bundle_free(same), bundle_free(grown), bundle_free(shrunk);
	bundle_free(deny_shrunk), bundle_free(deny_grown), bundle_free(port), bundle_free(added);
	bundle_free(added_deny);
}

TEST(audit_changes_and_stricter_defaults_count_as_tightening)
{
	static const char open_p[] = "{\"version\":1,\"policies\":[]}";
	static const char closed_p[] =
	    "{\"version\":1,\"defaults\":{\"ingress\":\"deny\",\"egress\":\"allow\"},"
	    "\"policies\":[]}";
	static const char audit_p[] =
	    "{\"version\":1,\"policies\":[{\"name\":\"r\",\"mode\":\"audit\",\"applies_to\":{\"labels\":{}},"
	    "\"ingress\":[{\"action\":\"deny\",\"ports\":[\"tcp/22\"]},{\"action\":\"allow\"}]}]}";
	struct bundle *o = compile(open_p), *c = compile(closed_p), *a = compile(audit_p);
	CHECK(o && c && a);
	if (!(o && c && a))
		return;
	CHECK(tightens(o, c));	/* defaults: allow -> deny */
	CHECK(!tightens(c, o)); /* and back */
	CHECK(tightens(o, a));	/* accept -> audit: reported, so judged */
	CHECK(tightens(a, c));	/* audit -> drop */
	bundle_free(o), bundle_free(c), bundle_free(a);
}

/* Egress to db on tcp/http, resolved on db (bundle.h): a bundle by hand,
 * whose http table says what db's addresses call http. */
struct named_bundle {
	struct bundle b;
	struct bundle_endpoint ep;
	struct bundle_set set;
	struct bundle_rule rule;
	uint32_t ref;
	struct port_match port;
	struct bundle_named_port np;
	struct bundle_named_addr pairs[2];
};

static void named_bundle(struct named_bundle *w, uint16_t db_port, bool second)
{
	struct addr_range r = {.lo = A("198.18.0.40"), .hi = A("198.18.0.40")};
	memset(w, 0, sizeof(*w));
	w->set = (struct bundle_set){.id = "db", .kind = SET_HOSTS};
	range_list_init(&w->set.v4, NULL);
	range_list_init(&w->set.v6, NULL);
	if (range_list_add(&w->set.v4, &r) < 0)
		abort();
	w->pairs[0] = (struct bundle_named_addr){A("198.18.0.40"), db_port};
	w->pairs[1] = (struct bundle_named_addr){A("198.18.0.41"), 8080};
	w->np = (struct bundle_named_port){
	    .id = "tcp/http", .name = "http", .proto = IPPROTO_TCP, .v = w->pairs, .n = second ? 2 : 1};
	w->port = (struct port_match){.proto = IPPROTO_TCP, .icmp_type = -1, .icmp_code = -1, .name = "http"};
	w->rule = (struct bundle_rule){.id = "web/egress/0",
				       .policy = "web",
				       .action = ACTION_ALLOW,
				       .mode = MODE_ENFORCE,
				       .sets = &w->ref,
				       .n_sets = 1,
				       .ports = &w->port,
				       .n_ports = 1};
	w->ep.name = "web";
	w->ep.chains[DIR_INGRESS] =
	    (struct bundle_chain){.fallback = VERDICT_DROP, .fallback_reason = RULE_ID_DEFAULT_DENY};
	w->ep.chains[DIR_EGRESS] = (struct bundle_chain){.rules = &w->rule,
							 .n_rules = 1,
							 .fallback = VERDICT_DROP,
							 .fallback_reason = RULE_ID_DEFAULT_DENY};
	w->b = (struct bundle){.node = "n1",
			       .endpoints = &w->ep,
			       .n_endpoints = 1,
			       .sets = &w->set,
			       .n_sets = 1,
			       .named_ports = &w->np,
			       .n_named_ports = 1};
}

TEST(a_named_port_renumbered_is_a_tightening_one_more_destination_is_not)
{
	struct named_bundle base, renumbered, more;
	named_bundle(&base, 5432, false);
	named_bundle(&renumbered, 5433, false);
	named_bundle(&more, 5432, true);
	/* Rules, sets and ports alike: only the table says db moved. */
	CHECK(conntrack_tightened(&base.b, &base.ep, &renumbered.b, &renumbered.ep, NULL));
	CHECK(conntrack_tightened(&renumbered.b, &renumbered.ep, &base.b, &base.ep, NULL));
	CHECK(!conntrack_tightened(&base.b, &base.ep, &more.b, &more.ep, NULL));
	CHECK(conntrack_tightened(&more.b, &more.ep, &base.b, &base.ep, NULL));
	CHECK(!conntrack_tightened(&base.b, &base.ep, &base.b, &base.ep, NULL));
	/* A rule that names another port is another rule. */
	more.np.n = 1;
	more.port.name = "web";
	CHECK(conntrack_tightened(&base.b, &base.ep, &more.b, &more.ep, NULL));
	range_list_release(&base.set.v4), range_list_release(&renumbered.set.v4),
	    range_list_release(&more.set.v4);
}

/* The same through the compiler: web may open db on tcp/pg, which db
 * defines (inventory "ports") as PG; 198.18.0.41 (no pg) is in db too. */
static struct bundle *named_compiled(const char *pg)
{
	char inv[1024];
	snprintf(inv, sizeof(inv),
		 "{\"node\":\"n1\",\"endpoints\":["
		 "{\"name\":\"web\",\"labels\":{\"app\":\"web\"},\"addresses\":[\"198.18.0.10\",\"2001:db8::"
		 "10\"]},"
		 "{\"name\":\"db\",\"labels\":{\"app\":\"db\"},\"addresses\":[\"198.18.0.40\"],"
		 "\"ports\":{\"pg\":\"%s\"}},"
		 "{\"name\":\"db2\",\"labels\":{\"app\":\"db\"},\"addresses\":[\"198.18.0.41\"]}]}",
		 pg);
	return scenario_compile(
	    "{\"version\":1,\"groups\":{\"db\":{\"labels\":{\"app\":\"db\"}}},"
	    "\"policies\":[{\"name\":\"web\",\"applies_to\":{\"labels\":{\"app\":\"web\"}},"
	    "\"egress\":[{\"to\":[\"db\"],\"ports\":[\"tcp/pg\"]}]}]}",
	    inv, "n1", 0);
}

TEST(an_egress_named_port_is_judged_on_the_destination_s_own_number)
{
	struct bundle *b = named_compiled("tcp/5432"), *moved = named_compiled("tcp/5433");
	CHECK(b && moved && web(b) && web(moved));
	if (!(b && moved && web(b) && web(moved)))
		return;
	struct ct_entry ce = conn(IPPROTO_TCP, "198.18.0.10", 40000, "198.18.0.40", 5432);
	struct ct_judgement j = judge(b, &ce);
	CHECK(j.fate == CT_KEEP && j.dir == DIR_EGRESS);
	CHECK_STR(j.res.reason, "web/egress/0");
	ce = conn(IPPROTO_TCP, "198.18.0.10", 40000, "198.18.0.40", 5433);
	CHECK(judge(b, &ce).fate == CT_CUT);
	/* db2 is in the group but has no pg: nothing to open there. */
	ce = conn(IPPROTO_TCP, "198.18.0.10", 40000, "198.18.0.41", 5432);
	CHECK(judge(b, &ce).fate == CT_CUT);
	/* db renumbered pg: the old connection is cut, the new number kept. */
	CHECK(conntrack_tightened(b, web(b), moved, web(moved), NULL));
	ce = conn(IPPROTO_TCP, "198.18.0.10", 40000, "198.18.0.40", 5432);
	CHECK(judge(moved, &ce).fate == CT_CUT);
	ce = conn(IPPROTO_TCP, "198.18.0.10", 40000, "198.18.0.40", 5433);
	CHECK(judge(moved, &ce).fate == CT_KEEP);
	bundle_free(b), bundle_free(moved);
}

/* ---- the property: no dump asked for, no packet judged more strictly ---- */

static unsigned rnd_state = 12345;
static unsigned rnd(unsigned n)
{
	rnd_state = rnd_state * 1103515245u + 12345u;
	return (rnd_state >> 16) % n;
}

static const char *const cidr_choices[] = {"198.18.1.0/30", "198.18.1.0/29", "198.18.1.2/31", "198.18.1.4/30",
					   "198.18.1.6/32", "198.18.1.0/31", "203.0.113.0/24"};
static const char *const port_choices[] = {"tcp/80", "tcp/81-90", "udp/53", "icmp/8", "tcp"};

struct rrule {
	bool deny, any_peer, any_port;
	unsigned peers, ports; /* bitmasks over groups, port_choices */
};
/* One policy of the document (two, in order, so that audit and enforce
 * rules interleave in a chain). */
struct rpart {
	bool audit, has_in, has_out;
	struct rrule in[4], out[3];
	size_t n_in, n_out;
};
struct rpolicy {
	unsigned cidrs[3]; /* groups g0..g2: bitmask over cidr_choices */
	bool deny_default;
	struct rpart part[2];
};

static void rrule_random(struct rrule *r)
{
	r->deny = rnd(3) == 0;
	r->any_peer = rnd(4) == 0;
	r->any_port = rnd(3) == 0;
	r->peers = 1 + rnd(7);
	r->ports = 1 + rnd(31);
}

static void rpolicy_random(struct rpolicy *p)
{
	memset(p, 0, sizeof(*p));
	for (int g = 0; g < 3; g++)
		p->cidrs[g] = 1 + rnd(127);
	p->deny_default = rnd(3) == 0;
	for (int k = 0; k < 2; k++) {
		struct rpart *q = &p->part[k];
		q->audit = rnd(3) == 0;
		q->has_in = rnd(4) != 0;
		q->has_out = rnd(2) == 0;
		q->n_in = rnd(5);
		q->n_out = rnd(4);
		for (size_t i = 0; i < q->n_in; i++)
			rrule_random(&q->in[i]);
		for (size_t i = 0; i < q->n_out; i++)
			rrule_random(&q->out[i]);
	}
}

/* A small change, loosening or not. */
static void rpolicy_mutate(struct rpolicy *p)
{
	struct rpart *q = &p->part[rnd(2)];
	struct rrule *list = rnd(2) ? q->in : q->out;
	size_t *n = list == q->in ? &q->n_in : &q->n_out, cap = list == q->in ? 4 : 3;
	switch (rnd(9)) {
	case 0: /* a rule added somewhere */
		if (*n < cap) {
			size_t at = rnd((unsigned)*n + 1);
			memmove(&list[at + 1], &list[at], (*n - at) * sizeof(*list));
			rrule_random(&list[at]);
			(*n)++;
		}
		break;
	case 1: /* a rule removed */
		if (*n) {
			size_t at = rnd((unsigned)*n);
			memmove(&list[at], &list[at + 1], (*n - at - 1) * sizeof(*list));
			(*n)--;
		}
		break;
	case 2: /* a group's members change */
	case 3:
		p->cidrs[rnd(3)] ^= 1u << rnd(7);
		break;
	case 4:
		if (*n)
			list[rnd((unsigned)*n)].deny ^= 1;
		break;
	case 5:
		if (*n)
			list[rnd((unsigned)*n)].ports = 1 + rnd(31);
		break;
	case 6:
		p->deny_default ^= 1;
		break;
	case 7:
		q->audit ^= 1;
		break;
	default:
		if (rnd(2))
			q->has_in ^= 1;
		else
			q->has_out ^= 1;
		break;
	}
	for (int g = 0; g < 3; g++)
		if (!p->cidrs[g])
			p->cidrs[g] = 1;
}

static void put(char **s, size_t *len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(*s + *len, 8192 - *len, fmt, ap);
	va_end(ap);
	*len += (size_t)n;
}

static void rules_text(char **s, size_t *len, const char *key, const struct rrule *v, size_t n)
{
	put(s, len, "[");
	for (size_t i = 0; i < n; i++) {
		const struct rrule *r = &v[i];
		put(s, len, "%s{\"action\":\"%s\"", i ? "," : "", r->deny ? "deny" : "allow");
		if (!r->any_peer) {
			put(s, len, ",\"%s\":[", key);
			bool first = true;
			for (int g = 0; g < 3; g++)
				if (r->peers & (1u << g)) {
					put(s, len, "%s\"g%d\"", first ? "" : ",", g);
					first = false;
				}
			put(s, len, "]");
		}
		if (!r->any_port) {
			put(s, len, ",\"ports\":[");
			bool first = true;
			for (size_t k = 0; k < BH_ARRAY_SIZE(port_choices); k++)
				if (r->ports & (1u << k)) {
					put(s, len, "%s\"%s\"", first ? "" : ",", port_choices[k]);
					first = false;
				}
			put(s, len, "]");
		}
		put(s, len, "}");
	}
	put(s, len, "]");
}

static struct bundle *rpolicy_compile(const struct rpolicy *p)
{
	char *s = xcalloc(1, 8192);
	size_t len = 0;
	put(&s, &len, "{\"version\":1,\"defaults\":{\"ingress\":\"%s\",\"egress\":\"%s\"},\"groups\":{",
	    p->deny_default ? "deny" : "allow", p->deny_default ? "allow" : "deny");
	for (int g = 0; g < 3; g++) {
		put(&s, &len, "%s\"g%d\":{\"cidrs\":[", g ? "," : "", g);
		bool first = true;
		for (size_t k = 0; k < BH_ARRAY_SIZE(cidr_choices); k++)
			if (p->cidrs[g] & (1u << k)) {
				put(&s, &len, "%s\"%s\"", first ? "" : ",", cidr_choices[k]);
				first = false;
			}
		put(&s, &len, "]}");
	}
	put(&s, &len, "},\"policies\":[");
	for (int k = 0; k < 2; k++) {
		const struct rpart *q = &p->part[k];
		put(&s, &len,
		    "%s{\"name\":\"p%d\",\"order\":%d,\"mode\":\"%s\",\"applies_to\":{\"labels\":{\"app\":"
		    "\"web\"}}",
		    k ? "," : "", k, 100 * (k + 1), q->audit ? "audit" : "enforce");
		if (q->has_in || !q->has_out) {
			put(&s, &len, ",\"ingress\":");
			rules_text(&s, &len, "from", q->in, q->n_in);
		}
		if (q->has_out) {
			put(&s, &len, ",\"egress\":");
			rules_text(&s, &len, "to", q->out, q->n_out);
		}
		put(&s, &len, "}");
	}
	put(&s, &len, "]}");
	struct bundle *b = compile(s);
	if (!b)
		fprintf(stderr, "  did not compile: %s\n", s);
	free(s);
	return b;
}

static int vrank(enum verdict v)
{
	return v == VERDICT_DROP ? 0 : v == VERDICT_AUDIT ? 1 : 2;
}

/* Some packet the old bundle judges less strictly than the new one. */
static bool stricter_somewhere(const struct bundle *a, const struct bundle *b)
{
	static const struct {
		uint8_t proto;
		uint16_t port;
	} kinds[] = {
	    {IPPROTO_TCP, 80}, {IPPROTO_TCP, 85}, {IPPROTO_TCP, 99}, {IPPROTO_UDP, 53}, {IPPROTO_ICMP, 0}};
	for (int d = 0; d < DIR_COUNT; d++)
		for (unsigned host = 0; host < 10; host++)
			for (size_t k = 0; k < BH_ARRAY_SIZE(kinds); k++) {
				char peer[32];
				snprintf(peer, sizeof(peer), host < 8 ? "198.18.1.%u" : "203.0.113.%u", host);
				struct packet pkt = {.proto = kinds[k].proto,
						     .dport = kinds[k].port,
						     .icmp_type = kinds[k].proto == IPPROTO_ICMP ? 8 : 0};
				pkt.src = d == DIR_INGRESS ? A(peer) : A("198.18.0.10");
				pkt.dst = d == DIR_INGRESS ? A("198.18.0.10") : A(peer);
				struct eval_result ra, rb;
				eval_packet(a, web(a), d, &pkt, &ra);
				eval_packet(b, web(b), d, &pkt, &rb);
				if (vrank(rb.verdict) < vrank(ra.verdict))
					return true;
			}
	return false;
}

TEST(whenever_no_dump_is_asked_for_no_packet_is_judged_more_strictly)
{
	unsigned pairs = 0, loosening = 0, wrong = 0, needless = 0;
	for (int round = 0; round < 1000; round++) {
		struct rpolicy p, q;
		rpolicy_random(&p);
		q = p;
		for (unsigned m = 1 + rnd(2); m; m--)
			rpolicy_mutate(&q);
		struct bundle *a = rpolicy_compile(&p), *b = rpolicy_compile(&q);
		if (a && b) {
			pairs++;
			bool t = conntrack_tightened(a, web(a), b, web(b), NULL);
			bool s = stricter_somewhere(a, b);
			loosening += !t;
			wrong += !t && s;
			needless += t && !s;
		}
		bundle_free(a);
		bundle_free(b);
	}
	fprintf(stderr, "  %u pairs: %u proven to loosen, %u judged for nothing, %u wrong\n", pairs,
		loosening, needless, wrong);
	CHECK(pairs >= 900);
	CHECK(loosening >= 100); /* the proof is exercised, not just "always dump" */
	CHECK(wrong == 0);
}

/* ---- ctnetlink ---- */

static char buf[4096] __attribute__((aligned(NLMSG_ALIGNTO)));

struct tspec {
	int family;
	const char *src, *dst;
	uint8_t proto;
	int sport, dport;	      /* -1: left out */
	int icmp_type, icmp_code, id; /* -1: left out */
	bool v6_attrs_in_v4;
};

static void put_tuple(struct nlmsghdr *nlh, int type, const struct tspec *t)
{
	struct nlattr *tuple = mnl_attr_nest_start(nlh, type);
	struct nlattr *ip = mnl_attr_nest_start(nlh, CTA_TUPLE_IP);
	struct bh_addr s = A(t->src), d = A(t->dst);
	bool v4 = s.family == AF_INET;
	mnl_attr_put(nlh, v4 ? CTA_IP_V4_SRC : CTA_IP_V6_SRC, v4 ? 4 : 16, s.bytes);
	mnl_attr_put(nlh, v4 ? CTA_IP_V4_DST : CTA_IP_V6_DST, v4 ? 4 : 16, d.bytes);
	if (t->v6_attrs_in_v4)
		mnl_attr_put(nlh, CTA_IP_V6_SRC, 16, A("2001:db8::1").bytes);
	mnl_attr_nest_end(nlh, ip);
	struct nlattr *pr = mnl_attr_nest_start(nlh, CTA_TUPLE_PROTO);
	mnl_attr_put_u8(nlh, CTA_PROTO_NUM, t->proto);
	if (t->sport >= 0)
		mnl_attr_put_u16(nlh, CTA_PROTO_SRC_PORT, htons((uint16_t)t->sport));
	if (t->dport >= 0)
		mnl_attr_put_u16(nlh, CTA_PROTO_DST_PORT, htons((uint16_t)t->dport));
	bool i6 = t->proto == IPPROTO_ICMPV6;
	if (t->id >= 0)
		mnl_attr_put_u16(nlh, i6 ? CTA_PROTO_ICMPV6_ID : CTA_PROTO_ICMP_ID, htons((uint16_t)t->id));
	if (t->icmp_type >= 0)
		mnl_attr_put_u8(nlh, i6 ? CTA_PROTO_ICMPV6_TYPE : CTA_PROTO_ICMP_TYPE, (uint8_t)t->icmp_type);
	if (t->icmp_code >= 0)
		mnl_attr_put_u8(nlh, i6 ? CTA_PROTO_ICMPV6_CODE : CTA_PROTO_ICMP_CODE, (uint8_t)t->icmp_code);
	mnl_attr_nest_end(nlh, pr);
	mnl_attr_nest_end(nlh, tuple);
}

/* A dump message as the kernel builds it: orig, reply (swapped), and what
 * follows; family 0 takes the source's. */
static struct nlmsghdr *entry_msg(const struct tspec *t, bool with_reply, bool tcp_close)
{
	memset(buf, 0, sizeof(buf));
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW;
	nlh->nlmsg_flags = NLM_F_MULTI;
	struct nfgenmsg *g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->nfgen_family = (uint8_t)(t->family ? t->family : A(t->src).family);
	g->version = NFNETLINK_V0;
	put_tuple(nlh, CTA_TUPLE_ORIG, t);
	if (with_reply) {
		struct tspec r = *t;
		r.src = t->dst, r.dst = t->src, r.sport = t->dport, r.dport = t->sport;
		if (t->icmp_type == 8)
			r.icmp_type = 0;
		put_tuple(nlh, CTA_TUPLE_REPLY, &r);
	}
	mnl_attr_put_u32(nlh, CTA_STATUS, htonl(0x0e));
	mnl_attr_put_u32(nlh, CTA_TIMEOUT, htonl(10));
	if (tcp_close) {
		struct nlattr *pi = mnl_attr_nest_start(nlh, CTA_PROTOINFO);
		struct nlattr *tcp = mnl_attr_nest_start(nlh, CTA_PROTOINFO_TCP);
		mnl_attr_put_u8(nlh, CTA_PROTOINFO_TCP_STATE, 7); /* TCP_CONNTRACK_CLOSE */
		mnl_attr_nest_end(nlh, tcp);
		mnl_attr_nest_end(nlh, pi);
	}
	mnl_attr_put_u32(nlh, CTA_ID, htonl(0xdeadbeef));
	mnl_attr_put_u32(nlh, CTA_USE, htonl(1));
	return nlh;
}

static const struct tspec tcp4 = {0, "198.18.0.21", "198.18.0.10", IPPROTO_TCP, 40000, 80, -1, -1, -1, false};

TEST(a_dump_message_is_read_exactly)
{
	struct ct_entry ce;
	CHECK(conntrack_nl_parse(entry_msg(&tcp4, true, true), &ce) == 0);
	CHECK(addr_cmp(&ce.orig.src, &(struct bh_addr){0}) != 0);
	struct bh_addr s = A("198.18.0.21"), d = A("198.18.0.10");
	CHECK(addr_cmp(&ce.orig.src, &s) == 0 && addr_cmp(&ce.orig.dst, &d) == 0);
	CHECK(addr_cmp(&ce.reply.src, &d) == 0 && ce.reply.sport == 80 && ce.reply.dport == 40000);
	CHECK(ce.orig.proto == IPPROTO_TCP && ce.orig.has_ports && ce.orig.sport == 40000 &&
	      ce.orig.dport == 80);
	CHECK(ce.has_id && ce.id == 0xdeadbeef && !ce.has_zone && !ce.has_master);
	CHECK(ce.has_tcp_state && ce.tcp_state == 7);

	struct tspec t6 = {0, "2001:db8::21", "2001:db8::10", IPPROTO_UDP, 5353, 53, -1, -1, -1, false};
	CHECK(conntrack_nl_parse(entry_msg(&t6, true, false), &ce) == 0);
	CHECK(ce.orig.src.family == AF_INET6 && ce.orig.dport == 53 && !ce.has_tcp_state);

	struct tspec icmp = {0, "198.18.0.21", "198.18.0.10", IPPROTO_ICMP, -1, -1, 8, 0, 77, false};
	CHECK(conntrack_nl_parse(entry_msg(&icmp, true, false), &ce) == 0);
	CHECK(ce.orig.icmp_type == 8 && ce.orig.icmp_code == 0 && ce.orig.icmp_id == 77 &&
	      !ce.orig.has_ports);
	CHECK(ce.reply.icmp_type == 0);

	struct tspec icmp6 = {0, "2001:db8::21", "2001:db8::10", IPPROTO_ICMPV6, -1, -1, 128, 0, 5, false};
	CHECK(conntrack_nl_parse(entry_msg(&icmp6, true, false), &ce) == 0);
	CHECK(ce.orig.icmp_type == 128 && ce.orig.icmp_id == 5);

	struct tspec gre = {0, "198.18.0.21", "198.18.0.10", 47, -1, -1, -1, -1, -1, false};
	CHECK(conntrack_nl_parse(entry_msg(&gre, true, false), &ce) == 0 && ce.orig.proto == 47);

	/* a zone and a master */
	struct nlmsghdr *nlh = entry_msg(&tcp4, true, false);
	mnl_attr_put_u16(nlh, CTA_ZONE, htons(3));
	put_tuple(nlh, CTA_TUPLE_MASTER, &tcp4);
	CHECK(conntrack_nl_parse(nlh, &ce) == 0);
	CHECK(ce.has_zone && ce.zone == 3 && ce.has_master && ce.master.dport == 80);

	/* an attribute from a newer kernel is not ours to judge */
	nlh = entry_msg(&tcp4, true, false);
	mnl_attr_put_u32(nlh, CTA_MAX + 5, 1);
	CHECK(conntrack_nl_parse(nlh, &ce) == 0);
}

TEST(every_malformed_dump_message_is_refused)
{
	struct ct_entry ce;
	CHECK(conntrack_nl_parse(entry_msg(&tcp4, false, false), &ce) == -EINVAL); /* no reply tuple */

	struct tspec t = tcp4;
	t.dport = -1; /* a TCP tuple without its ports */
	CHECK(conntrack_nl_parse(entry_msg(&t, true, false), &ce) == -EINVAL);
	t = tcp4;
	t.family = AF_INET6; /* v4 addresses in a v6 message */
	CHECK(conntrack_nl_parse(entry_msg(&t, true, false), &ce) == -EINVAL);
	t = tcp4;
	t.v6_attrs_in_v4 = true;
	CHECK(conntrack_nl_parse(entry_msg(&t, true, false), &ce) == -EINVAL);
	struct tspec icmp = {0, "198.18.0.21", "198.18.0.10", IPPROTO_ICMP, -1, -1, 8, 0, -1, false};
	CHECK(conntrack_nl_parse(entry_msg(&icmp, true, false), &ce) == -EINVAL); /* no id */
	struct tspec icmp6in4 = {0, "198.18.0.21", "198.18.0.10", IPPROTO_ICMPV6, -1, -1, 128, 0, 1, false};
	CHECK(conntrack_nl_parse(entry_msg(&icmp6in4, true, false), &ce) == -EINVAL);

	/* the same attribute twice */
	struct nlmsghdr *nlh = entry_msg(&tcp4, true, false);
	mnl_attr_put_u32(nlh, CTA_ID, htonl(1));
	CHECK(conntrack_nl_parse(nlh, &ce) == -EINVAL);
	/* an id of the wrong size */
	nlh = entry_msg(&tcp4, true, false);
	nlh->nlmsg_len -= MNL_ALIGN(MNL_ATTR_HDRLEN + 4) * 2; /* drop CTA_USE and CTA_ID */
	mnl_attr_put_u16(nlh, CTA_ID, 1);
	CHECK(conntrack_nl_parse(nlh, &ce) == -EINVAL);
	/* a v6 address of 4 bytes */
	memset(buf, 0, sizeof(buf));
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW;
	struct nfgenmsg *g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->nfgen_family = AF_INET6;
	for (int dir = CTA_TUPLE_ORIG; dir <= CTA_TUPLE_REPLY; dir++) {
		struct nlattr *tu = mnl_attr_nest_start(nlh, dir),
			      *ip = mnl_attr_nest_start(nlh, CTA_TUPLE_IP);
		mnl_attr_put_u32(nlh, CTA_IP_V6_SRC, 1);
		mnl_attr_put_u32(nlh, CTA_IP_V6_DST, 2);
		mnl_attr_nest_end(nlh, ip);
		struct nlattr *pr = mnl_attr_nest_start(nlh, CTA_TUPLE_PROTO);
		mnl_attr_put_u8(nlh, CTA_PROTO_NUM, 47);
		mnl_attr_nest_end(nlh, pr);
		mnl_attr_nest_end(nlh, tu);
	}
	CHECK(conntrack_nl_parse(nlh, &ce) == -EINVAL);
	/* directions of different protocols */
	nlh = entry_msg(&tcp4, false, false);
	struct tspec r = {0, "198.18.0.10", "198.18.0.21", IPPROTO_UDP, 80, 40000, -1, -1, -1, false};
	put_tuple(nlh, CTA_TUPLE_REPLY, &r);
	CHECK(conntrack_nl_parse(nlh, &ce) == -EINVAL);
	/* another message type, another subsystem, a family not IP, cut short */
	nlh = entry_msg(&tcp4, true, false);
	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE;
	CHECK(conntrack_nl_parse(nlh, &ce) == -EINVAL);
	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK_EXP << 8) | IPCTNL_MSG_CT_NEW;
	CHECK(conntrack_nl_parse(nlh, &ce) == -EINVAL);
	nlh = entry_msg(&tcp4, true, false);
	((struct nfgenmsg *)mnl_nlmsg_get_payload(nlh))->nfgen_family = AF_BRIDGE;
	CHECK(conntrack_nl_parse(nlh, &ce) == -EINVAL);
	nlh->nlmsg_len = NLMSG_HDRLEN + 2;
	CHECK(conntrack_nl_parse(nlh, &ce) == -EINVAL);
}

/* The attributes of a delete request, as the kernel reads them. */
static int collect_cb(const struct nlattr *attr, void *data)
{
	const struct nlattr **tb = data;
	tb[mnl_attr_get_type(attr)] = attr;
	return MNL_CB_OK;
}

TEST(a_delete_names_the_entry_by_tuple_zone_and_id)
{
	char out[CONNTRACK_NL_MSG_MAX] __attribute__((aligned(NLMSG_ALIGNTO)));
	struct ct_entry ce;
	struct nlmsghdr *nlh = entry_msg(&tcp4, true, false);
	mnl_attr_put_u16(nlh, CTA_ZONE, htons(3));
	CHECK(conntrack_nl_parse(nlh, &ce) == 0);
	nlh = conntrack_nl_delete_msg(out, &ce, 99);
	CHECK(nlh->nlmsg_len <= CONNTRACK_NL_MSG_MAX);
	CHECK(nlh->nlmsg_type == ((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE));
	CHECK(nlh->nlmsg_flags == (NLM_F_REQUEST | NLM_F_ACK) && nlh->nlmsg_seq == 99);
	CHECK(((struct nfgenmsg *)mnl_nlmsg_get_payload(nlh))->nfgen_family == AF_INET);
	const struct nlattr *tb[CTA_MAX + 1] = {0}, *tu[CTA_TUPLE_MAX + 1] = {0}, *ip[CTA_IP_MAX + 1] = {0},
					  *pr[CTA_PROTO_MAX + 1] = {0};
	CHECK(mnl_attr_parse(nlh, sizeof(struct nfgenmsg), collect_cb, tb) >= 0);
	CHECK(tb[CTA_TUPLE_ORIG] && !tb[CTA_TUPLE_REPLY] && tb[CTA_ZONE] && tb[CTA_ID]);
	if (!tb[CTA_TUPLE_ORIG] || !tb[CTA_ID] || !tb[CTA_ZONE])
		return;
	CHECK(ntohl(mnl_attr_get_u32(tb[CTA_ID])) == 0xdeadbeef &&
	      ntohs(mnl_attr_get_u16(tb[CTA_ZONE])) == 3);
	CHECK(mnl_attr_parse_nested(tb[CTA_TUPLE_ORIG], collect_cb, tu) >= 0 && tu[CTA_TUPLE_IP] &&
	      tu[CTA_TUPLE_PROTO]);
	CHECK(mnl_attr_parse_nested(tu[CTA_TUPLE_IP], collect_cb, ip) >= 0);
	CHECK(mnl_attr_parse_nested(tu[CTA_TUPLE_PROTO], collect_cb, pr) >= 0);
	CHECK(ip[CTA_IP_V4_SRC] &&
	      memcmp(mnl_attr_get_payload(ip[CTA_IP_V4_SRC]), A("198.18.0.21").bytes, 4) == 0);
	CHECK(ip[CTA_IP_V4_DST] &&
	      memcmp(mnl_attr_get_payload(ip[CTA_IP_V4_DST]), A("198.18.0.10").bytes, 4) == 0);
	CHECK(pr[CTA_PROTO_NUM] && mnl_attr_get_u8(pr[CTA_PROTO_NUM]) == IPPROTO_TCP);
	CHECK(pr[CTA_PROTO_SRC_PORT] && ntohs(mnl_attr_get_u16(pr[CTA_PROTO_SRC_PORT])) == 40000);
	CHECK(pr[CTA_PROTO_DST_PORT] && ntohs(mnl_attr_get_u16(pr[CTA_PROTO_DST_PORT])) == 80);

	/* ICMPv6: id, type and code, which the kernel needs to find it */
	struct tspec icmp6 = {0, "2001:db8::21", "2001:db8::10", IPPROTO_ICMPV6, -1, -1, 128, 0, 5, false};
	CHECK(conntrack_nl_parse(entry_msg(&icmp6, true, false), &ce) == 0);
	nlh = conntrack_nl_delete_msg(out, &ce, 100);
	memset(tb, 0, sizeof(tb)), memset(tu, 0, sizeof(tu)), memset(pr, 0, sizeof(pr));
	CHECK(mnl_attr_parse(nlh, sizeof(struct nfgenmsg), collect_cb, tb) >= 0 && tb[CTA_TUPLE_ORIG] &&
	      !tb[CTA_ZONE]);
	CHECK(mnl_attr_parse_nested(tb[CTA_TUPLE_ORIG], collect_cb, tu) >= 0 && tu[CTA_TUPLE_PROTO]);
	CHECK(mnl_attr_parse_nested(tu[CTA_TUPLE_PROTO], collect_cb, pr) >= 0);
	CHECK(pr[CTA_PROTO_ICMPV6_ID] && ntohs(mnl_attr_get_u16(pr[CTA_PROTO_ICMPV6_ID])) == 5);
	CHECK(pr[CTA_PROTO_ICMPV6_TYPE] && mnl_attr_get_u8(pr[CTA_PROTO_ICMPV6_TYPE]) == 128);
	CHECK(pr[CTA_PROTO_ICMPV6_CODE] && !pr[CTA_PROTO_SRC_PORT]);
}

int main(void)
{
	return test_main();
}
