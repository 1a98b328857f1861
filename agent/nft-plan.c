/* nft-plan: bundle endpoint → the table as data (nft-plan.h). Pure. */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nft-addr.h"
#include "nft-plan.h"

/* What each fixed rule matches, as nft writes it. */
/* clang-format off */
static const char *const fixed_match[DIR_COUNT][FIXED_COUNT] = {
	[DIR_INGRESS] = {
		"ct state established,related",
		"ct state invalid",
		"iif \"lo\"",
		"meta nfproto ipv6 meta l4proto ipv6-icmp icmpv6 type 133-136",
		"ct state new tcp flags & (fin | syn | rst | ack) != syn",
	},
	[DIR_EGRESS] = {
		"ct state established,related",
		"ct state invalid",
		"oif \"lo\"",
		"meta nfproto ipv6 meta l4proto ipv6-icmp icmpv6 type 133-136",
		"ct state new tcp flags & (fin | syn | rst | ack) != syn",
	},
};
/* clang-format on */

const char *nft_plan_fixed_match(enum direction dir, enum fixed_rule rule)
{
	return dir < DIR_COUNT && rule < FIXED_COUNT ? fixed_match[dir][rule] : "";
}

/* FNV-1a: stable across runs and machines, which is all a name needs;
 * plan_check_names() catches the astronomically rare collision. */
static uint64_t hash_id(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *s; s++) {
		h ^= (uint8_t)*s;
		h *= 0x100000001b3ULL;
	}
	return h;
}

void nft_set_name(const char *set_id, int family, char buf[NFT_SET_NAME_MAX])
{
	snprintf(buf, NFT_SET_NAME_MAX, "s_%016" PRIx64 "_%s", hash_id(set_id),
		 family == AF_INET ? "v4" : "v6");
}

/* ---- the bundle tag ---------------------------------------------------- */

void nft_tag_format(const struct nft_tag *t, char buf[NFT_TAG_MAX])
{
	snprintf(buf, NFT_TAG_MAX, "serial %" PRIu64 " revision %" PRId64 " bundle %s", t->serial,
		 t->revision, t->hash);
}

/* A decimal number of at most 19 digits (no sign, no leading space) and
 * the word after it. */
static const char *tag_number(const char *s, const char *word, uint64_t *out)
{
	uint64_t v = 0;
	size_t n = 0;

	for (; s[n] >= '0' && s[n] <= '9'; n++) {
		if (n == 19)
			return NULL;
		v = v * 10 + (uint64_t)(s[n] - '0');
	}
	if (!n || strncmp(s + n, word, strlen(word)) != 0)
		return NULL;
	*out = v;
	return s + n + strlen(word);
}

int nft_tag_parse(const char *s, struct nft_tag *out)
{
	struct nft_tag t = {0};
	uint64_t rev;
	bool neg;
	size_t i;

	if (strncmp(s, "serial ", 7) != 0 || !(s = tag_number(s + 7, " revision ", &t.serial)))
		return -EINVAL;
	neg = *s == '-';
	if (!(s = tag_number(s + neg, " bundle ", &rev)))
		return -EINVAL;
	t.revision = neg ? -(int64_t)rev : (int64_t)rev;
	for (i = 0; i < BUNDLE_HASH_HEX; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return -EINVAL;
		t.hash[i] = s[i];
	}
	if (s[i] != '\0')
		return -EINVAL;
	*out = t;
	return 0;
}

/* ---- the plan ---------------------------------------------------------- */

void nft_plan_release(struct nft_plan *p)
{
	free(p->sets);
	free(p->rules);
	memset(p, 0, sizeof(*p));
}

/* Number of addresses in r, saturated at UINT64_MAX. */
static uint64_t range_span(const struct addr_range *r, unsigned len)
{
	unsigned head = len > 8 ? len - 8 : 0;
	uint64_t lo = 0, hi = 0;

	if (nft_addr_order(r->lo.bytes, r->hi.bytes, len) == 0)
		return 1; /* a single address: the common case by far */
	if (memcmp(r->lo.bytes, r->hi.bytes, head) != 0)
		return UINT64_MAX;
	for (unsigned i = head; i < len; i++) {
		lo = lo << 8 | r->lo.bytes[i];
		hi = hi << 8 | r->hi.bytes[i];
	}
	if (hi < lo)
		return 0;
	if (hi - lo == UINT64_MAX)
		return UINT64_MAX;
	return hi - lo + 1;
}

void nft_plan_rule_comment(const struct nft_plan_rule *r, char buf[NFT_COMMENT_MAX])
{
	const char *s = r->id ? r->id : "fallback";
	size_t n = 0;

	for (; *s && n + 1 < NFT_COMMENT_MAX; s++) {
		char c = *s;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			  c == '.' || c == '_' || c == '-' || c == '/' || c == ':';
		buf[n++] = ok ? c : '_';
	}
	buf[n] = '\0';
}

bool nft_plan_rule_logs(const struct nft_plan_rule *r)
{
	return r->verdict != VERDICT_ACCEPT || r->observe;
}

void nft_plan_rule_prefix(const struct nft_plan_rule *r, char buf[NFT_PREFIX_MAX])
{
	struct nft_prefix pfx = {.verdict = r->verdict, .dir = r->dir, .position = r->pos};

	if (!nft_plan_rule_logs(r))
		buf[0] = '\0';
	else
		nft_prefix_format(&pfx, buf);
}

static int plan_push(struct nft_plan *p, const struct nft_plan_rule *r)
{
	if (p->n_rules == p->cap_rules) {
		size_t cap = p->cap_rules ? 2 * p->cap_rules : 64;
		struct nft_plan_rule *v = realloc(p->rules, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		p->rules = v;
		p->cap_rules = cap;
	}
	p->rules[p->n_rules++] = *r;
	return 0;
}

/* Adds r, after its observe twin when the bundle observes every accepted
 * connection and r accepts (nft-plan.h). */
static int plan_add_rule(struct nft_plan *p, const struct nft_plan_rule *r)
{
	if (p->observe && r->verdict == VERDICT_ACCEPT && r->kind != NFT_PLAN_FIXED) {
		struct nft_plan_rule twin = *r;
		int ret;

		twin.observe = true;
		ret = plan_push(p, &twin);
		if (ret < 0)
			return ret;
	}
	return plan_push(p, r);
}

static int port_check(const struct port_match *pm)
{
	switch (pm->proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		return pm->lo <= pm->hi ? 0 : -EINVAL;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		if (pm->icmp_type < -1 || pm->icmp_type > 255 || pm->icmp_code < -1 || pm->icmp_code > 255)
			return -EINVAL;
		return 0;
	default:
		return -EINVAL;
	}
}

/* One nft rule per (family, set, port); a rule with any peer needs no
 * family match, so it becomes one rule per port. */
static int plan_rules_for(struct nft_plan *p, enum direction dir, size_t pos, const struct bundle_rule *br,
			  struct nft_plan_set **by_set, char *err, size_t errsz)
{
	static const int families[] = {AF_INET, AF_INET6};
	struct nft_plan_rule r = {
	    .kind = NFT_PLAN_RULE, .dir = dir, .pos = (long)pos, .src = br, .id = br->id};
	size_t n_ports = br->any_port ? 1 : br->n_ports;
	int ret;

	if (br->action != ACTION_ALLOW &&
	    (br->action != ACTION_DENY || (br->mode != MODE_ENFORCE && br->mode != MODE_AUDIT))) {
		snprintf(err, errsz, "bundle rule %s: bad action or mode", br->id);
		return -EINVAL;
	}
	r.verdict = rule_verdict(br->action, br->mode);
	for (size_t i = 0; !br->any_port && i < br->n_ports; i++) {
		if (port_check(&br->ports[i]) < 0) {
			snprintf(err, errsz, "bundle rule %s: port match %zu not expressible", br->id, i);
			return -EINVAL;
		}
	}
	if (!br->any_port && br->n_ports == 0)
		return 0; /* matches no packet */

	if (br->any_peer) {
		for (size_t j = 0; j < n_ports; j++) {
			r.port = br->any_port ? NULL : &br->ports[j];
			ret = plan_add_rule(p, &r);
			if (ret < 0)
				return ret;
		}
		return 0;
	}
	for (size_t f = 0; f < BH_ARRAY_SIZE(families); f++) {
		r.family = families[f];
		for (size_t s = 0; s < br->n_sets; s++) {
			r.set = by_set[2 * br->sets[s] + f];
			for (size_t j = 0; j < n_ports; j++) {
				r.port = br->any_port ? NULL : &br->ports[j];
				/* ICMP is IPv4's, ICMPv6 IPv6's: the other family's
				 * rule could never match, and would cost every packet
				 * a look. (Membership never changes this: deltas
				 * stay deltas.) */
				if (r.port && ((r.family == AF_INET && r.port->proto == IPPROTO_ICMPV6) ||
					       (r.family == AF_INET6 && r.port->proto == IPPROTO_ICMP)))
					continue;
				ret = plan_add_rule(p, &r);
				if (ret < 0)
					return ret;
			}
		}
	}
	return 0;
}

static int cmp_set_name(const void *a, const void *b)
{
	const struct nft_plan_set *const *x = a, *const *y = b;

	return strcmp((*x)->name, (*y)->name);
}

static int plan_check_names(const struct nft_plan *p, char *err, size_t errsz)
{
	const struct nft_plan_set **v;
	int ret = 0;

	if (p->n_sets < 2)
		return 0;
	v = malloc(p->n_sets * sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < p->n_sets; i++)
		v[i] = &p->sets[i];
	qsort(v, p->n_sets, sizeof(*v), cmp_set_name);
	for (size_t i = 1; i < p->n_sets; i++) {
		if (strcmp(v[i - 1]->name, v[i]->name) == 0) {
			snprintf(err, errsz, "bundle sets %s and %s hash to one nft set name %s",
				 v[i - 1]->src->id, v[i]->src->id, v[i]->name);
			ret = -EINVAL;
			break;
		}
	}
	free(v);
	return ret;
}

static void plan_set_init(struct nft_plan_set *ps, const struct bundle_set *bs, int family, uint32_t id)
{
	const struct range_list *l = family == AF_INET ? &bs->v4 : &bs->v6;
	unsigned len = nft_addr_len(family);

	memset(ps, 0, sizeof(*ps));
	nft_set_name(bs->id, family, ps->name);
	ps->src = bs;
	ps->members = l;
	ps->family = family;
	ps->id = id;
	ps->interval = bs->kind == SET_RANGES;
	for (size_t i = 0; !ps->interval && i < l->n; i++)
		ps->interval = range_span(&l->v[i], len) > NFT_HOSTS_RANGE_MAX;
}

/* Sets first, in bundle set order, only those the endpoint's rules use. */
static int plan_sets(struct nft_plan *p, const struct bundle *b, const struct bundle_endpoint *ep,
		     struct nft_plan_set **by_set, bool *used, char *err, size_t errsz)
{
	for (int d = 0; d < DIR_COUNT; d++) {
		const struct bundle_chain *c = &ep->chains[d];

		for (size_t i = 0; i < c->n_rules; i++) {
			const struct bundle_rule *br = &c->rules[i];

			for (size_t s = 0; !br->any_peer && s < br->n_sets; s++) {
				if (br->sets[s] >= b->n_sets) {
					snprintf(err, errsz,
						 "bundle rule %s: set index %" PRIu32 " out of range", br->id,
						 br->sets[s]);
					return -EINVAL;
				}
				used[br->sets[s]] = true;
			}
		}
	}
	for (size_t s = 0; s < b->n_sets; s++) {
		const struct bundle_set *bs = &b->sets[s];

		if (!used[s])
			continue;
		if (bs->kind != SET_HOSTS && bs->kind != SET_RANGES) {
			snprintf(err, errsz, "bundle set %s: unknown kind", bs->id);
			return -EINVAL;
		}
		/* Both families, even without members: which sets and rules
		 * exist then depends on the rules alone, so a group that
		 * empties or gains its first IPv6 member is an element delta
		 * like any other membership change. A packet of the other
		 * family leaves such a rule at its first comparison. */
		plan_set_init(&p->sets[p->n_sets], bs, AF_INET, (uint32_t)p->n_sets + 1);
		by_set[2 * s] = &p->sets[p->n_sets++];
		plan_set_init(&p->sets[p->n_sets], bs, AF_INET6, (uint32_t)p->n_sets + 1);
		by_set[2 * s + 1] = &p->sets[p->n_sets++];
	}
	return plan_check_names(p, err, errsz);
}

/* The fixed rules (DESIGN §2 step 1): each counts, the invalid drops log,
 * as every drop does. */
static int plan_fixed_rules(struct nft_plan *p, enum direction dir)
{
	for (int f = 0; f < FIXED_COUNT; f++) {
		struct nft_plan_rule r = {
		    .kind = NFT_PLAN_FIXED, .dir = dir, .fixed = f, .id = fixed_rule_id(f)};
		int ret;

		if (f == FIXED_CT_INVALID || f == FIXED_TCP_PICKUP) {
			r.verdict = VERDICT_DROP;
			r.pos = NFT_POSITION_INVALID;
		}
		ret = plan_add_rule(p, &r);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static int plan_chain(struct nft_plan *p, enum direction dir, struct nft_plan_set **by_set, char *err,
		      size_t errsz)
{
	const struct bundle_chain *c = &p->ep->chains[dir];
	struct nft_plan_rule fb = {.kind = NFT_PLAN_FALLBACK,
				   .dir = dir,
				   .pos = NFT_POSITION_FALLBACK,
				   .verdict = c->fallback,
				   .id = c->fallback_reason};
	struct nft_plan_chain *pc = &p->chains[dir];
	int ret;

	pc->name = dir == DIR_INGRESS ? NFT_CHAIN_INGRESS : NFT_CHAIN_EGRESS;
	pc->hook = dir == DIR_INGRESS ? "input" : "output";
	pc->first_rule = p->n_rules;
	ret = plan_fixed_rules(p, dir);
	for (size_t i = 0; ret == 0 && i < c->n_rules; i++)
		ret = plan_rules_for(p, dir, i, &c->rules[i], by_set, err, errsz);
	if (ret < 0)
		return ret;
	if (c->fallback != VERDICT_ACCEPT && c->fallback != VERDICT_DROP && c->fallback != VERDICT_AUDIT) {
		snprintf(err, errsz, "%s chain: bad fallback verdict", direction_name(dir));
		return -EINVAL;
	}
	ret = plan_add_rule(p, &fb);
	pc->n_rules = p->n_rules - pc->first_rule;
	return ret;
}

int nft_plan_build(struct nft_plan *p, const struct bundle *b, const struct bundle_endpoint *ep,
		   const struct nft_tag *tag, char *err, size_t errsz)
{
	struct nft_plan_set **by_set = NULL;
	bool *used = NULL;
	int ret = 0;

	memset(p, 0, sizeof(*p));
	p->ep = ep;
	p->observe = b->observe == OBSERVE_ALL;
	if (tag) {
		p->has_tag = true;
		nft_tag_format(tag, p->tag);
	}
	if (b->n_sets) {
		/* Two slots per bundle set, v4 and v6; at most that many nft sets. */
		by_set = calloc(2 * b->n_sets, sizeof(*by_set));
		used = calloc(b->n_sets, sizeof(*used));
		p->sets = calloc(2 * b->n_sets, sizeof(*p->sets));
		if (!by_set || !used || !p->sets) {
			ret = -ENOMEM;
			goto err_free;
		}
	}
	ret = plan_sets(p, b, ep, by_set, used, err, errsz);
	for (int d = 0; ret == 0 && d < DIR_COUNT; d++)
		ret = plan_chain(p, d, by_set, err, errsz);
	if (ret < 0)
		goto err_free;
	free(used);
	free(by_set);
	return 0;

err_free:
	if (ret == -ENOMEM)
		snprintf(err, errsz, "out of memory");
	free(used);
	free(by_set);
	nft_plan_release(p);
	return ret;
}

static bool port_equal(const struct port_match *a, const struct port_match *b)
{
	if (!a || !b)
		return a == b;
	return a->proto == b->proto && a->lo == b->lo && a->hi == b->hi && a->icmp_type == b->icmp_type &&
	       a->icmp_code == b->icmp_code;
}

/* Ids that differ can still make one comment (nft_plan_rule_comment()). */
static bool same_comment(const struct nft_plan_rule *x, const struct nft_plan_rule *y)
{
	char cx[NFT_COMMENT_MAX], cy[NFT_COMMENT_MAX];

	if (x->id && y->id && strcmp(x->id, y->id) == 0)
		return true;
	nft_plan_rule_comment(x, cx);
	nft_plan_rule_comment(y, cy);
	return strcmp(cx, cy) == 0;
}

/* Compares what each nft rule is made of: family, set name, port match,
 * verdict, whether it is an observe rule, log prefix (direction and
 * position) and comment (rule id or fallback reason). */
bool nft_plan_same_shape(const struct nft_plan *a, const struct nft_plan *b)
{
	if (a->n_sets != b->n_sets || a->n_rules != b->n_rules)
		return false;
	for (size_t i = 0; i < a->n_sets; i++) {
		const struct nft_plan_set *x = &a->sets[i], *y = &b->sets[i];

		if (strcmp(x->name, y->name) != 0 || x->family != y->family || x->interval != y->interval)
			return false;
	}
	for (int d = 0; d < DIR_COUNT; d++) {
		if (a->chains[d].first_rule != b->chains[d].first_rule ||
		    a->chains[d].n_rules != b->chains[d].n_rules)
			return false;
	}
	for (size_t i = 0; i < a->n_rules; i++) {
		const struct nft_plan_rule *x = &a->rules[i], *y = &b->rules[i];

		if (x->kind != y->kind || x->fixed != y->fixed || x->dir != y->dir || x->pos != y->pos ||
		    x->family != y->family || x->verdict != y->verdict || x->observe != y->observe ||
		    !port_equal(x->port, y->port) || !x->set != !y->set)
			return false;
		if (x->set && strcmp(x->set->name, y->set->name) != 0)
			return false;
		if (!same_comment(x, y))
			return false;
	}
	return true;
}
