/* The map form (agent/nft-plan-maps.c) decides every packet as the
 * ordered rule list does: random bundles, hundreds of thousands of random
 * packets, each judged by the reference evaluator (lib/eval.c) and by
 * walking the compiled table as the kernel walks it (nft_plan_decide():
 * the address maps, the class chains' protocol maps, the gotos), the
 * linear form too. Same deciding rule (so the same NFLOG prefix and the
 * same rule chain's counter), same verdict.
 *
 * The bundles stress overlap and order: few addresses in many sets (label
 * groups and network groups overlapping each other and cut by each
 * other's ends), allow and deny rules over the same peers, rules shadowed
 * by earlier ones, port ranges touching and nested, ICMP types and codes,
 * a code of any type, rules without peers or without ports, rules that
 * match nothing, audit mode, every fallback. Packets come from the sets'
 * edges (an address just inside and just outside every interval, ports at
 * every range's ends and beside them), of every protocol (ICMPv6 in IPv4
 * too, which the evaluator matches by protocol number), and from
 * loopback and neighbour discovery.
 *
 * Membership changes between two bundles of the same rules are element
 * deltas: old elements + the delta's = new elements, map by map. The seed
 * is printed on failure; BH_TEST_SEED=N repeats a run. */
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "bulkhead/eval.h"
#include "nft-addr.h"
#include "nft-elements.h"
#include "test.h"

static uint64_t rng_state;

static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

static unsigned below(unsigned n)
{
	return n ? (unsigned)(rnd() % n) : 0;
}

static bool chance(unsigned percent)
{
	return below(100) < percent;
}

static uint64_t seed(void)
{
	const char *s = getenv("BH_TEST_SEED");

	return s ? strtoull(s, NULL, 10) : 0x5eed2026ULL;
}

/* Addresses are small numbers n in one /24-ish corner of each family, and
 * now and then the very bottom or top of the space: n = 0..299 maps to
 * 198.18.0.0 + n and 2001:db8::n; 1000 and 1001 to the bottom and top. */
static struct bh_addr addr_n(int family, unsigned n)
{
	struct bh_addr a = {.family = (uint8_t)family};
	unsigned len = nft_addr_len(family);

	if (n == 1000)
		return a;
	if (n == 1001) {
		memset(a.bytes, 0xff, len);
		return a;
	}
	if (family == AF_INET) {
		a.bytes[0] = 198;
		a.bytes[1] = 18;
	} else {
		a.bytes[0] = 0x20;
		a.bytes[1] = 0x01;
		a.bytes[2] = 0x0d;
		a.bytes[3] = 0xb8;
	}
	a.bytes[len - 2] = (uint8_t)(n >> 8);
	a.bytes[len - 1] = (uint8_t)n;
	return a;
}

static void list_add(struct range_list *l, int family, unsigned lo, unsigned hi)
{
	struct addr_range r = {.lo = addr_n(family, lo), .hi = addr_n(family, hi)};

	if (range_list_add(l, &r) < 0)
		abort();
}

/* ---- random bundles --------------------------------------------------------- */

#define MAX_SETS  8
#define MAX_RULES 14
#define MAX_PORTS 4
#define MAX_NAMED 4  /* named-port tables */
#define MAX_PAIRS 48 /* pairs in one */

static const uint16_t port_edges[] = {0,  1,  21,  22,	23,  52,   53,	  54,	79,
				      80, 81, 442, 443, 444, 1024, 65534, 65535};
static const int icmp_types[] = {-1, 0, 8, 13, 128, 129, 255};
static const int icmp_codes[] = {-1, 0, 1, 255};

struct world {
	struct bundle b;
	struct bundle_endpoint ep;
	struct bundle_set sets[MAX_SETS];
	char set_ids[MAX_SETS][8];
	struct bundle_rule rules[DIR_COUNT][MAX_RULES];
	char rule_ids[DIR_COUNT][MAX_RULES][24];
	uint32_t refs[DIR_COUNT][MAX_RULES][3];
	struct port_match ports[DIR_COUNT][MAX_RULES][MAX_PORTS];
	struct bundle_named_port named[MAX_NAMED];
	struct bundle_named_addr pairs[MAX_NAMED][MAX_PAIRS];
	/* Addresses (as n) worth probing: members and every interval's edges. */
	unsigned probe[512];
	size_t n_probe;
};

static void probe_add(struct world *w, unsigned n)
{
	if (w->n_probe < BH_ARRAY_SIZE(w->probe))
		w->probe[w->n_probe++] = n;
}

static void random_members(struct world *w, struct bundle_set *s, int family)
{
	struct range_list *l = family == AF_INET ? &s->v4 : &s->v6;

	range_list_init(l, NULL);
	if (s->kind == SET_HOSTS) {
		unsigned n = below(12);

		for (unsigned i = 0; i < n; i++) {
			unsigned a = below(40);

			list_add(l, family, a, a);
			probe_add(w, a);
		}
		if (chance(3)) { /* a run too long for a hash: it joins the ranges */
			unsigned a = 40 + below(20);

			/* Apart from the single members: the evaluator's binary
			 * search needs a hosts list without overlaps, which a
			 * decoded bundle (single addresses) always is. */
			list_add(l, family, a, a + 256 + below(200));
			probe_add(w, a);
			probe_add(w, a - 1);
			probe_add(w, a + 256);
		}
		range_list_sort_unique(l);
		return;
	}
	unsigned n = 1 + below(3);

	for (unsigned i = 0; i < n; i++) {
		unsigned lo = below(60), hi = lo + below(30);

		if (chance(5))
			lo = 1000; /* from the bottom of the space */
		if (chance(5))
			hi = 1001; /* to the top */
		list_add(l, family, lo, hi);
		probe_add(w, lo == 1000 ? 0 : lo);
		probe_add(w, hi == 1001 ? 299 : hi);
		probe_add(w, lo && lo < 1000 ? lo - 1 : 0);
		probe_add(w, hi < 299 ? hi + 1 : 299);
	}
	/* Excepts cut out, as the compiler does. */
	if (chance(50)) {
		struct range_list cut;
		unsigned lo = below(60), hi = lo + below(4);

		range_list_init(&cut, NULL);
		list_add(&cut, family, lo, hi);
		probe_add(w, lo);
		probe_add(w, hi + 1);
		range_list_normalize(l);
		if (range_list_subtract_list(l, &cut) < 0)
			abort();
		range_list_release(&cut);
	}
	range_list_normalize(l);
}

static void random_port(struct port_match *pm)
{
	static const uint8_t protos[] = {IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP, IPPROTO_ICMP,
					 IPPROTO_ICMPV6};

	memset(pm, 0, sizeof(*pm));
	pm->proto = protos[below(5)];
	pm->icmp_type = pm->icmp_code = -1;
	if (pm->proto == IPPROTO_ICMP || pm->proto == IPPROTO_ICMPV6) {
		pm->icmp_type = (int16_t)icmp_types[below(BH_ARRAY_SIZE(icmp_types))];
		pm->icmp_code = (int16_t)icmp_codes[below(BH_ARRAY_SIZE(icmp_codes))];
		if (pm->icmp_type < 0 && pm->icmp_code >= 0 && !chance(20))
			pm->icmp_code = -1; /* a code of any type: now and then */
		return;
	}
	if (chance(15)) {
		pm->hi = 65535; /* the protocol alone */
		return;
	}
	uint16_t a = port_edges[below(BH_ARRAY_SIZE(port_edges))],
		 b = port_edges[below(BH_ARRAY_SIZE(port_edges))];

	pm->lo = a < b ? a : b;
	pm->hi = a < b ? b : a;
	if (chance(40))
		pm->hi = pm->lo;
}

/* Named-port tables: what random destinations (members or not, of both
 * families) call a name, now and then two numbers for one address (a
 * contested address in a deny table), sorted as the decoder leaves them. */
static const struct {
	const char *id, *name;
	uint8_t proto;
} named_kinds[MAX_NAMED] = {
    {"tcp/http", "http", IPPROTO_TCP},
    {"tcp/http#deny", "http", IPPROTO_TCP},
    {"udp/dns", "dns", IPPROTO_UDP},
    {"sctp/sig", "sig", IPPROTO_SCTP},
};

static int cmp_pair(const void *a, const void *b)
{
	const struct bundle_named_addr *x = a, *y = b;
	int c = addr_cmp(&x->addr, &y->addr);

	return c ? c : (x->port > y->port) - (x->port < y->port);
}

static void random_named(struct world *w, size_t t)
{
	struct bundle_named_port *np = &w->named[t];
	size_t n = below(MAX_PAIRS - 8), u = 0;

	np->id = named_kinds[t].id;
	np->name = named_kinds[t].name;
	np->proto = named_kinds[t].proto;
	np->v = w->pairs[t];
	for (size_t i = 0; i < n; i++) {
		unsigned a = below(60);
		uint16_t port = port_edges[below(BH_ARRAY_SIZE(port_edges))];

		np->v[i] = (struct bundle_named_addr){addr_n(chance(50) ? AF_INET : AF_INET6, a), port};
		probe_add(w, a);
		if (chance(10) && i + 1 < n) { /* a second number for the address */
			np->v[i + 1] = np->v[i];
			np->v[++i].port = port_edges[below(BH_ARRAY_SIZE(port_edges))];
		}
	}
	if (n)
		qsort(np->v, n, sizeof(*np->v), cmp_pair);
	for (size_t i = 0; i < n; i++) {
		if (!u || cmp_pair(&np->v[u - 1], &np->v[i]) != 0)
			np->v[u++] = np->v[i];
	}
	np->n = u;
}

static void random_world(struct world *w)
{
	size_t n_sets = 1 + below(MAX_SETS);

	memset(w, 0, sizeof(*w));
	for (size_t s = 0; s < n_sets; s++) {
		struct bundle_set *bs = &w->sets[s];

		snprintf(w->set_ids[s], sizeof(w->set_ids[s]), "g%zu", s);
		bs->id = w->set_ids[s];
		bs->kind = chance(60) ? SET_HOSTS : SET_RANGES;
		random_members(w, bs, AF_INET);
		random_members(w, bs, AF_INET6);
	}
	for (int d = 0; d < DIR_COUNT; d++) {
		struct bundle_chain *c = &w->ep.chains[d];
		size_t n = below(MAX_RULES + 1);

		c->rules = w->rules[d];
		c->n_rules = n;
		for (size_t i = 0; i < n; i++) {
			struct bundle_rule *r = &w->rules[d][i];

			snprintf(w->rule_ids[d][i], sizeof(w->rule_ids[d][i]), "p/%s/%zu", direction_name(d),
				 i);
			r->id = w->rule_ids[d][i];
			r->policy = "p";
			r->index = (uint32_t)i;
			r->action = chance(50) ? ACTION_ALLOW : ACTION_DENY;
			r->mode = chance(25) ? MODE_AUDIT : MODE_ENFORCE;
			r->any_peer = chance(20);
			r->sets = w->refs[d][i];
			r->n_sets = r->any_peer ? 0 : 1 + below(3);
			for (size_t k = 0; k < r->n_sets; k++)
				r->sets[k] = below((unsigned)n_sets);
			r->any_port = chance(25);
			r->ports = w->ports[d][i];
			r->n_ports = r->any_port ? 0 : chance(3) ? 0 : 1 + below(MAX_PORTS);
			for (size_t k = 0; k < r->n_ports; k++) {
				random_port(&r->ports[k]);
				/* Egress names a port now and then: the
				 * destination's own number. */
				if (d == DIR_EGRESS && chance(30)) {
					uint32_t t = below(MAX_NAMED);

					r->ports[k] = (struct port_match){.proto = named_kinds[t].proto,
									  .icmp_type = -1,
									  .icmp_code = -1,
									  .name = named_kinds[t].name,
									  .named_table = t};
				}
			}
		}
		c->fallback = (enum verdict)below(3);
		c->fallback_reason = c->fallback == VERDICT_ACCEPT ? RULE_ID_DEFAULTS : RULE_ID_DEFAULT_DENY;
	}
	for (size_t t = 0; t < MAX_NAMED; t++)
		random_named(w, t);
	w->ep.name = "e";
	w->b = (struct bundle){.node = "n",
			       .endpoints = &w->ep,
			       .n_endpoints = 1,
			       .sets = w->sets,
			       .n_sets = n_sets,
			       .named_ports = w->named,
			       .n_named_ports = MAX_NAMED};
	if (chance(30))
		w->b.observe = OBSERVE_ALL; /* log-only twins, which decide nothing */
}

static void world_release(struct world *w)
{
	for (size_t s = 0; s < w->b.n_sets; s++) {
		range_list_release(&w->sets[s].v4);
		range_list_release(&w->sets[s].v6);
	}
}

/* ---- random packets ------------------------------------------------------- */

static void random_packet(const struct world *w, enum direction dir, struct packet *pk, struct nft_packet *np)
{
	static const uint8_t protos[] = {IPPROTO_TCP,  IPPROTO_UDP,    IPPROTO_SCTP,
					 IPPROTO_ICMP, IPPROTO_ICMPV6, 47};
	int family = chance(50) ? AF_INET : AF_INET6;
	unsigned n = w->n_probe && chance(85) ? w->probe[below((unsigned)w->n_probe)] : below(300);
	struct bh_addr peer = addr_n(family, chance(2) ? 1000 + below(2) : n), self = addr_n(family, 7);

	memset(pk, 0, sizeof(*pk));
	memset(np, 0, sizeof(*np));
	pk->src = dir == DIR_INGRESS ? peer : self;
	pk->dst = dir == DIR_INGRESS ? self : peer;
	pk->proto = protos[below(BH_ARRAY_SIZE(protos))];
	if (family == AF_INET && pk->proto == IPPROTO_ICMPV6 && !chance(10))
		pk->proto = IPPROTO_ICMP;
	if (family == AF_INET6 && pk->proto == IPPROTO_ICMP && !chance(10))
		pk->proto = IPPROTO_ICMPV6;
	np->family = family;
	memcpy(np->peer, peer.bytes, nft_addr_len(family));
	np->l4proto = pk->proto;
	np->has_th = true;
	for (int i = 0; i < 4; i++)
		np->th[i] = (uint8_t)rnd();
	if (pk->proto == IPPROTO_ICMP || pk->proto == IPPROTO_ICMPV6) {
		static const uint8_t types[] = {0, 8, 13, 128, 129, 133, 136, 255, 7};
		static const uint8_t codes[] = {0, 1, 255, 3};

		pk->icmp_type = chance(80) ? types[below(BH_ARRAY_SIZE(types))] : (uint8_t)rnd();
		pk->icmp_code = chance(80) ? codes[below(BH_ARRAY_SIZE(codes))] : (uint8_t)rnd();
		np->th[0] = pk->icmp_type;
		np->th[1] = pk->icmp_code;
	} else {
		uint16_t p = port_edges[below(BH_ARRAY_SIZE(port_edges))];

		if (chance(30))
			p = (uint16_t)(p + 1);
		if (chance(10))
			p = (uint16_t)rnd();
		/* Egress: a number some table gives this destination, often. */
		if (dir == DIR_EGRESS && chance(40)) {
			const struct bundle_named_port *t = &w->named[below(MAX_NAMED)];

			for (size_t i = 0; i < t->n; i++) {
				if (addr_cmp(&t->v[i].addr, &peer) == 0 && chance(70)) {
					p = t->v[i].port;
					if (chance(80))
						pk->proto = np->l4proto = t->proto;
					break;
				}
			}
		}
		pk->dport = p;
		np->th[2] = (uint8_t)(p >> 8);
		np->th[3] = (uint8_t)p;
	}
	pk->loopback = np->loopback = chance(1);
}

/* ---- the comparison --------------------------------------------------------- */

/* What rule a decision is: "established", "default-deny", "p/ingress/3"...
 * as the evaluator names its reason. */
static const char *decided_id(const struct nft_plan *p, long i)
{
	if (i < 0)
		return "(policy accept)";
	return p->rules[i].id ? p->rules[i].id : "(none)";
}

static bool same_decision(const struct nft_plan *p, long i, const struct eval_result *er, enum direction dir)
{
	if (i < 0)
		return false;
	const struct nft_plan_rule *r = &p->rules[i];

	if (r->verdict != er->verdict || r->dir != dir)
		return false;
	switch (r->kind) {
	case NFT_PLAN_FIXED:
		return !er->rule && strcmp(er->reason, fixed_rule_id(r->fixed)) == 0;
	case NFT_PLAN_RULE:
		return er->rule == r->src && er->rule == &p->ep->chains[dir].rules[r->pos];
	case NFT_PLAN_FALLBACK:
		return !er->rule && r->pos == NFT_POSITION_FALLBACK && strcmp(er->reason, r->id) == 0;
	default:
		return false;
	}
}

/* The world's rules and the map form's text, for a failure's report. */
static void dump_world(const struct world *w)
{
	char *text = NULL;

	for (int d = 0; d < DIR_COUNT; d++) {
		const struct bundle_chain *c = &w->ep.chains[d];

		for (size_t i = 0; i < c->n_rules; i++) {
			const struct bundle_rule *r = &c->rules[i];
			char buf[32];

			fprintf(stderr, "    %s: %s %s", r->id, action_name(r->action), mode_name(r->mode));
			for (size_t k = 0; k < r->n_sets; k++)
				fprintf(stderr, " %s", w->b.sets[r->sets[k]].id);
			for (size_t k = 0; k < r->n_ports; k++) {
				port_match_format(&r->ports[k], buf, sizeof(buf));
				fprintf(stderr, " %s", buf);
			}
			fprintf(stderr, "%s%s\n", r->any_peer ? " any-peer" : "",
				r->any_port ? " any-port" : "");
		}
	}
	if (nft_render_text(&w->b, &w->ep, 100, NFT_FORM_MAPS, &text) == 0)
		fprintf(stderr, "%s", text);
	free(text);
}

static bool judge(const struct world *w, const struct nft_plan *maps, const struct nft_plan *linear,
		  unsigned packets, unsigned *compared)
{
	for (unsigned k = 0; k < packets; k++) {
		enum direction dir = chance(50) ? DIR_INGRESS : DIR_EGRESS;
		struct packet pk;
		struct nft_packet np;
		struct eval_result er;

		random_packet(w, dir, &pk, &np);
		eval_packet(&w->b, &w->ep, dir, &pk, &er);
		long m = nft_plan_decide(maps, dir, &np), l = nft_plan_decide(linear, dir, &np);

		/* The linear form leaves out ICMP rules for IPv6 and ICMPv6
		 * rules for IPv4 (one look less for every packet), so the odd
		 * packet that carries the other family's ICMP is the maps'
		 * alone to get right. */
		bool odd = (np.family == AF_INET && np.l4proto == IPPROTO_ICMPV6) ||
			   (np.family == AF_INET6 && np.l4proto == IPPROTO_ICMP);

		(*compared)++;
		if (same_decision(maps, m, &er, dir) && (odd || same_decision(linear, l, &er, dir)))
			continue;
		char a[ADDR_STRLEN];

		addr_format(dir == DIR_INGRESS ? &pk.src : &pk.dst, a);
		fprintf(stderr, "  %s packet, peer %s, proto %u, port %u, icmp %u/%u%s:\n",
			direction_name(dir), a, pk.proto, pk.dport, pk.icmp_type, pk.icmp_code,
			pk.loopback ? ", loopback" : "");
		fprintf(stderr, "    evaluator: %s by %s\n", verdict_name(er.verdict), er.reason);
		fprintf(stderr, "    maps: %s by %s; linear: %s by %s\n",
			m >= 0 ? verdict_name(maps->rules[m].verdict) : "-", decided_id(maps, m),
			l >= 0 ? verdict_name(linear->rules[l].verdict) : "-", decided_id(linear, l));
		dump_world(w);
		return false;
	}
	return true;
}

static int plan(struct nft_plan *p, const struct world *w, enum nft_form form)
{
	char err[256];
	int r = nft_plan_build(p, &w->b, &w->ep, NULL, form, err, sizeof(err));

	if (r < 0)
		fprintf(stderr, "  plan: %s\n", err);
	return r;
}

TEST(the_maps_decide_every_packet_as_the_rule_list_does)
{
	uint64_t s0 = seed();
	unsigned compared = 0, worlds = 1500;

	rng_state = s0 * 2 + 1;
	for (unsigned t = 0; t < worlds; t++) {
		struct world w;
		struct nft_plan maps, linear;

		random_world(&w);
		bool ok = plan(&maps, &w, NFT_FORM_MAPS) == 0 && plan(&linear, &w, NFT_FORM_LINEAR) == 0 &&
			  judge(&w, &maps, &linear, 250, &compared);
		if (!ok) {
			fprintf(stderr, "  world %u: BH_TEST_SEED=%llu\n", t, (unsigned long long)s0);
			CHECK(ok);
		}
		nft_plan_release(&maps);
		nft_plan_release(&linear);
		world_release(&w);
		if (!ok)
			return;
	}
	fprintf(stderr, "  %u packets compared in %u bundles\n", compared, worlds);
	CHECK(compared >= 300000);
}

/* The fixed rules (those the walk above never reaches with a new packet's
 * first packet, like the TCP pickup drop among them) are the same rules
 * in both forms: same order, verdict, log position and id. */
TEST(both_forms_start_with_the_same_fixed_rules)
{
	struct world w;
	struct nft_plan maps, linear;

	rng_state = seed() * 2 + 3;
	random_world(&w);
	CHECK(plan(&maps, &w, NFT_FORM_MAPS) == 0);
	CHECK(plan(&linear, &w, NFT_FORM_LINEAR) == 0);
	for (int d = 0; d < DIR_COUNT; d++) {
		const struct nft_plan_chain *a = &maps.chains[d], *b = &linear.chains[d];
		size_t n = 0;

		for (size_t i = 0; i < a->n_rules && i < b->n_rules; i++) {
			const struct nft_plan_rule *x = &maps.rules[a->first_rule + i],
						   *y = &linear.rules[b->first_rule + i];

			if (x->kind != NFT_PLAN_FIXED || y->kind != NFT_PLAN_FIXED)
				break;
			CHECK(x->fixed == y->fixed && x->verdict == y->verdict && x->pos == y->pos &&
			      strcmp(x->id, y->id) == 0);
			n++;
		}
		CHECK(n == FIXED_COUNT);
	}
	/* With observe all, every accepting rule's own chain logs a new
	 * connection first (its twin), then counts and accepts. */
	w.b.observe = OBSERVE_ALL;
	nft_plan_release(&maps);
	CHECK(plan(&maps, &w, NFT_FORM_MAPS) == 0);
	for (size_t c = DIR_COUNT; c < maps.n_chains; c++) {
		const struct nft_plan_chain *ch = &maps.chains[c];
		const struct nft_plan_rule *last = &maps.rules[ch->first_rule + ch->n_rules - 1];

		if (ch->kind != NFT_PLAN_RULE_CHAIN && ch->kind != NFT_PLAN_FALLBACK_CHAIN)
			continue;
		CHECK(ch->n_rules == (last->verdict == VERDICT_ACCEPT ? 2u : 1u) && !last->observe);
		if (ch->n_rules == 2)
			CHECK(maps.rules[ch->first_rule].observe);
	}
	nft_plan_release(&maps);
	nft_plan_release(&linear);
	world_release(&w);
}

/* ---- deltas ------------------------------------------------------------------ */

/* A model of the kernel's maps: every element by map name, key, end flag;
 * its goto. */
struct melem {
	char map[NFT_NAME_MAX];
	uint8_t key[NFT_NAMED_KEY_MAX], key_end[8];
	bool end;
	char chain[NFT_NAME_MAX];
};

struct model {
	struct melem *v;
	size_t n, cap;
	bool bad;
	const char *why;
};

static int melem_cmp(const void *a, const void *b)
{
	const struct melem *x = a, *y = b;
	int c = strcmp(x->map, y->map);

	if (!c)
		c = memcmp(x->key, y->key, sizeof(x->key));
	return c ? c : (int)x->end - (int)y->end;
}

static struct melem *model_find(struct model *m, const struct melem *e)
{
	for (size_t i = 0; i < m->n; i++) {
		if (melem_cmp(&m->v[i], e) == 0)
			return &m->v[i];
	}
	return NULL;
}

static int model_apply(void *arg, const struct nft_elem_dest *dest, bool add, const struct nft_elem *e)
{
	struct model *m = arg;
	struct melem x = {0};

	snprintf(x.map, sizeof(x.map), "%s", dest->map ? dest->map->name : dest->set->name);
	memcpy(x.key, e->key, e->key_len);
	if (e->key_end)
		memcpy(x.key_end, e->key_end, 8);
	x.end = e->end;
	if (e->chain)
		snprintf(x.chain, sizeof(x.chain), "%s", e->chain);
	struct melem *there = model_find(m, &x);

	if (!add) {
		if (!there) {
			m->bad = true;
			m->why = "deletes an element it does not hold";
			return 0;
		}
		*there = m->v[--m->n];
		return 0;
	}
	if (there) {
		m->bad = true;
		m->why = "adds an element it holds already";
		return 0;
	}
	if (m->n == m->cap) {
		m->cap = m->cap ? 2 * m->cap : 64;
		m->v = realloc(m->v, m->cap * sizeof(*m->v));
		if (!m->v)
			abort();
	}
	m->v[m->n++] = x;
	return 0;
}

/* Every address map's elements of p into m (the class maps come and go
 * with their chains, which the batch adds and removes whole), and every
 * set's (the linear form). */
static void model_load(struct model *m, const struct nft_plan *p)
{
	for (size_t i = 0; i < p->n_sets; i++) {
		struct nft_elem_dest d = {.set = &p->sets[i]};

		CHECK(nft_elements_all(p, &d, model_apply, m) == 0);
	}
	for (size_t i = 0; i < p->n_maps; i++) {
		struct nft_elem_dest d = {.map = &p->maps[i]};

		if (p->maps[i].kind == NFT_MAP_HOSTS || p->maps[i].kind == NFT_MAP_RANGES)
			CHECK(nft_elements_all(p, &d, model_apply, m) == 0);
	}
	if (m->n)
		qsort(m->v, m->n, sizeof(*m->v), melem_cmp);
}

/* The members of w moved about, destinations renumbered, the rules as
 * they are. */
static void mutate(struct world *w)
{
	for (size_t t = 0; t < MAX_NAMED; t++) {
		if (chance(50))
			random_named(w, t);
	}
	for (size_t s = 0; s < w->b.n_sets; s++) {
		if (chance(50))
			continue;
		for (int f = 0; f < 2; f++) {
			struct range_list *l = f ? &w->sets[s].v6 : &w->sets[s].v4;

			range_list_release(l);
			random_members(w, &w->sets[s], f ? AF_INET6 : AF_INET);
		}
	}
}

TEST(membership_changes_are_element_deltas)
{
	uint64_t s0 = seed();
	unsigned deltas = 0;

	rng_state = s0 * 2 + 7;
	for (unsigned t = 0; t < 600; t++) {
		struct world w, w2;
		struct nft_plan old, now;
		struct model m = {0}, want = {0};
		bool ok;

		random_world(&w);
		w2 = w;
		/* w2 shares w's rules; its sets are new lists. */
		for (size_t s = 0; s < w.b.n_sets; s++) {
			range_list_init(&w2.sets[s].v4, NULL);
			range_list_init(&w2.sets[s].v6, NULL);
			for (size_t i = 0; i < w.sets[s].v4.n; i++)
				CHECK(range_list_add(&w2.sets[s].v4, &w.sets[s].v4.v[i]) == 0);
			for (size_t i = 0; i < w.sets[s].v6.n; i++)
				CHECK(range_list_add(&w2.sets[s].v6, &w.sets[s].v6.v[i]) == 0);
		}
		for (int d = 0; d < DIR_COUNT; d++)
			w2.ep.chains[d].rules = w.rules[d];
		w2.b.sets = w2.sets;
		w2.b.endpoints = &w2.ep;
		w2.b.named_ports = w2.named;
		for (size_t k = 0; k < MAX_NAMED; k++)
			w2.named[k].v = w2.pairs[k];
		mutate(&w2);
		/* Both forms: the linear one's sets, named ones too. */
		enum nft_form form = t % 2 ? NFT_FORM_LINEAR : NFT_FORM_MAPS;

		ok = plan(&old, &w, form) == 0 && plan(&now, &w2, form) == 0;
		/* Which maps and rule chains exist depends on the rules alone;
		 * sized hosts maps aside (a few hundred members: never). The
		 * linear form's hosts set becomes an interval set with a long
		 * run (nft-plan.h): a new table, as it should be. */
		if (ok && form == NFT_FORM_LINEAR && !nft_plan_same_shape(&old, &now)) {
			bool flipped = false;

			for (size_t i = 0; i < old.n_sets && i < now.n_sets; i++)
				flipped |= old.sets[i].interval != now.sets[i].interval;
			ok = flipped;
			deltas++;
			goto next;
		}
		ok = ok && nft_plan_same_shape(&old, &now);
		if (ok) {
			model_load(&m, &old);
			ok = nft_elements_delta(&old, &now, model_apply, &m) == 0 && !m.bad;
			model_load(&want, &now);
			if (ok && m.n)
				qsort(m.v, m.n, sizeof(*m.v), melem_cmp);
			ok = ok && m.n == want.n;
			for (size_t i = 0; ok && i < m.n; i++)
				ok = melem_cmp(&m.v[i], &want.v[i]) == 0 &&
				     strcmp(m.v[i].chain, want.v[i].chain) == 0;
			deltas++;
		}
	next:
		if (!ok)
			fprintf(stderr, "  trial %u: %s; BH_TEST_SEED=%llu\n", t,
				m.bad ? m.why : "not the new elements", (unsigned long long)s0);
		CHECK(ok);
		free(m.v);
		free(want.v);
		nft_plan_release(&old);
		nft_plan_release(&now);
		world_release(&w2);
		world_release(&w);
		if (!ok)
			return;
	}
	CHECK(deltas == 600);
}

int main(void)
{
	return test_main();
}
