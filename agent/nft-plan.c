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

/* A named-port table's set: "n_" + the hash of its id, like a bundle
 * set's, so that a renumbering stays an element delta. */
static void named_set_name(const char *table_id, int family, char buf[NFT_SET_NAME_MAX])
{
	snprintf(buf, NFT_SET_NAME_MAX, "n_%016" PRIx64 "_%s", hash_id(table_id),
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
	const char *text = s;
	char again[NFT_TAG_MAX];
	struct nft_tag t = {0};
	uint64_t rev;
	bool neg;
	size_t i;

	if (strncmp(s, "serial ", 7) != 0 || !(s = tag_number(s + 7, " revision ", &t.serial)))
		return -EINVAL;
	neg = *s == '-';
	/* int64's range, its least value included (negated in unsigned). */
	if (!(s = tag_number(s + neg, " bundle ", &rev)) || rev > (uint64_t)INT64_MAX + neg)
		return -EINVAL;
	t.revision = neg ? (int64_t)(0 - rev) : (int64_t)rev;
	for (i = 0; i < BUNDLE_HASH_HEX; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return -EINVAL;
		t.hash[i] = s[i];
	}
	if (s[i] != '\0')
		return -EINVAL;
	/* Leading zeros and "-0" read as numbers too, but we never write them. */
	nft_tag_format(&t, again);
	if (strcmp(again, text) != 0)
		return -EINVAL;
	*out = t;
	return 0;
}

/* ---- the plan ---------------------------------------------------------- */

void nft_plan_release(struct nft_plan *p)
{
	for (size_t i = 0; i < p->n_maps; i++)
		free(p->maps[i].elems);
	for (size_t i = 0; i < p->n_sets; i++)
		free(p->sets[i].keys);
	free(p->maps);
	free(p->sets);
	free(p->chains);
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

bool nft_plan_long_range(const struct addr_range *r, int family)
{
	return range_span(r, nft_addr_len(family)) > NFT_HOSTS_RANGE_MAX;
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
	if (r->kind != NFT_PLAN_FIXED && r->kind != NFT_PLAN_RULE && r->kind != NFT_PLAN_FALLBACK)
		return false; /* the map form's dispatch, lookups and gotos */
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

/* Grows *v (of *cap elements of size sz) to hold one more. */
static int grow(void **v, size_t *cap, size_t n, size_t sz, size_t first)
{
	if (n < *cap)
		return 0;
	size_t c = *cap ? 2 * *cap : first;
	void *w = realloc(*v, c * sz);

	if (!w)
		return -ENOMEM;
	*v = w;
	*cap = c;
	return 0;
}

static int plan_push(struct nft_plan *p, const struct nft_plan_rule *r)
{
	if (grow((void **)&p->rules, &p->cap_rules, p->n_rules, sizeof(*p->rules), 64) < 0)
		return -ENOMEM;
	p->rules[p->n_rules++] = *r;
	return 0;
}

/* Adds r, after its observe twin when the bundle observes every accepted
 * connection and r is a rule or fallback that accepts (nft-plan.h). In
 * the map form that is the first rule of the deciding rule's own chain. */
int nft_plan_add_rule(struct nft_plan *p, const struct nft_plan_rule *r)
{
	if (p->observe && r->verdict == VERDICT_ACCEPT &&
	    (r->kind == NFT_PLAN_RULE || r->kind == NFT_PLAN_FALLBACK)) {
		struct nft_plan_rule twin = *r;
		int ret;

		twin.observe = true;
		ret = plan_push(p, &twin);
		if (ret < 0)
			return ret;
	}
	return plan_push(p, r);
}

int nft_plan_add_chain(struct nft_plan *p, const char *name, enum nft_chain_kind kind, enum direction dir,
		       uint32_t *out)
{
	struct nft_plan_chain *c;

	if (grow((void **)&p->chains, &p->cap_chains, p->n_chains, sizeof(*p->chains), 16) < 0)
		return -ENOMEM;
	c = &p->chains[p->n_chains];
	memset(c, 0, sizeof(*c));
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->kind = kind;
	c->dir = dir;
	*out = (uint32_t)p->n_chains++;
	return 0;
}

int nft_plan_add_map(struct nft_plan *p, const char *name, enum nft_map_kind kind, enum direction dir,
		     int family, uint32_t *out)
{
	struct nft_plan_map *m;

	if (grow((void **)&p->maps, &p->cap_maps, p->n_maps, sizeof(*p->maps), 8) < 0)
		return -ENOMEM;
	m = &p->maps[p->n_maps];
	memset(m, 0, sizeof(*m));
	snprintf(m->name, sizeof(m->name), "%s", name);
	m->kind = kind;
	m->dir = dir;
	m->family = family;
	*out = (uint32_t)p->n_maps++;
	/* After the linear form's sets (none in this form) and the tag's. */
	m->id = (uint32_t)p->n_maps;
	return 0;
}

static int port_check(const struct bundle *b, enum direction dir, const struct port_match *pm)
{
	if (pm->name) {
		/* The compiler resolves ingress names on the endpoint itself;
		 * an egress name must come with its table. */
		if (dir != DIR_EGRESS || pm->named_table >= b->n_named_ports ||
		    b->named_ports[pm->named_table].proto != pm->proto)
			return -EINVAL;
		return pm->proto == IPPROTO_TCP || pm->proto == IPPROTO_UDP || pm->proto == IPPROTO_SCTP
			   ? 0
			   : -EINVAL;
	}
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

int nft_plan_check_rule(const struct bundle *b, enum direction dir, const struct bundle_rule *br, char *err,
			size_t errsz)
{
	if (br->action != ACTION_ALLOW &&
	    (br->action != ACTION_DENY || (br->mode != MODE_ENFORCE && br->mode != MODE_AUDIT))) {
		snprintf(err, errsz, "bundle rule %s: bad action or mode", br->id);
		return -EINVAL;
	}
	for (size_t i = 0; !br->any_port && i < br->n_ports; i++) {
		if (port_check(b, dir, &br->ports[i]) < 0) {
			snprintf(err, errsz, "bundle rule %s: port match %zu not expressible", br->id, i);
			return -EINVAL;
		}
	}
	return 0;
}

/* One nft rule per (family, set, port); a rule with any peer needs no
 * family match, so it becomes one rule per port. */
static int plan_rules_for(struct nft_plan *p, enum direction dir, size_t pos, const struct bundle_rule *br,
			  struct nft_plan_set **by_set, struct nft_plan_set **by_named)
{
	static const int families[] = {AF_INET, AF_INET6};
	struct nft_plan_rule r = {.kind = NFT_PLAN_RULE,
				  .dir = dir,
				  .pos = (long)pos,
				  .src = br,
				  .id = br->id,
				  .verdict = rule_verdict(br->action, br->mode)};
	size_t n_ports = br->any_port ? 1 : br->n_ports;
	int ret;

	if (!br->any_port && br->n_ports == 0)
		return 0; /* matches no packet */

	if (br->any_peer) {
		for (size_t j = 0; j < n_ports; j++) {
			r.port = br->any_port ? NULL : &br->ports[j];
			if (r.port && r.port->name) {
				/* The destination's own number: a lookup in the
				 * named set of each family. */
				for (size_t f = 0; f < BH_ARRAY_SIZE(families); f++) {
					r.family = families[f];
					r.named = by_named[2 * r.port->named_table + f];
					ret = nft_plan_add_rule(p, &r);
					if (ret < 0)
						return ret;
				}
				r.family = 0;
				r.named = NULL;
				continue;
			}
			ret = nft_plan_add_rule(p, &r);
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
				r.named =
				    r.port && r.port->name ? by_named[2 * r.port->named_table + f] : NULL;
				ret = nft_plan_add_rule(p, &r);
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
				 v[i - 1]->src ? v[i - 1]->src->id : v[i - 1]->named->id,
				 v[i]->src ? v[i]->src->id : v[i]->named->id, v[i]->name);
			ret = -EINVAL;
			break;
		}
	}
	free(v);
	return ret;
}

/* A hosts set of this many elements or more is sized (nft_plan_set.size):
 * the resizable hash rehashes again and again as a big set loads (a third
 * of the kernel's time for 200,000 elements), the fixed one is made once. */
#define HOSTS_SET_SIZED_FROM 4096

static void plan_set_init(struct nft_plan_set *ps, const struct bundle_set *bs, int family, uint32_t id)
{
	const struct range_list *l = family == AF_INET ? &bs->v4 : &bs->v6;

	memset(ps, 0, sizeof(*ps));
	nft_set_name(bs->id, family, ps->name);
	ps->src = bs;
	ps->members = l;
	ps->family = family;
	ps->id = id;
	ps->interval = bs->kind == SET_RANGES;
	for (size_t i = 0; !ps->interval && i < l->n; i++) {
		ps->interval = nft_plan_long_range(&l->v[i], family);
		ps->n_elems += range_span(&l->v[i], nft_addr_len(family));
	}
	/* Twice the elements, so that a group can grow by element deltas
	 * before it outgrows the set (nft_plan_same_shape()). */
	if (!ps->interval && ps->n_elems >= HOSTS_SET_SIZED_FROM && ps->n_elems <= UINT32_MAX / 4)
		ps->size = (uint32_t)((2 * ps->n_elems + 4095) / 4096 * 4096);
}

static int cmp_named_key(const void *a, const void *b)
{
	return memcmp(a, b, NFT_NAMED_KEY_MAX);
}

/* A named set: the table's pairs of the family as keys, sorted, unique. */
static int plan_named_init(struct nft_plan_set *ps, const struct bundle_named_port *np, int family,
			   uint32_t id)
{
	unsigned alen = nft_addr_len(family);
	size_t n = 0, u = 0;

	memset(ps, 0, sizeof(*ps));
	named_set_name(np->id, family, ps->name);
	ps->named = np;
	ps->family = family;
	ps->id = id;
	for (size_t i = 0; i < np->n; i++)
		n += np->v[i].addr.family == family;
	if (!n)
		return 0;
	ps->keys = calloc(n, sizeof(*ps->keys));
	if (!ps->keys)
		return -ENOMEM;
	for (size_t i = 0; i < np->n; i++) {
		const struct bundle_named_addr *a = &np->v[i];

		if (a->addr.family != family)
			continue;
		memcpy(ps->keys[ps->n_keys], a->addr.bytes, alen);
		ps->keys[ps->n_keys][alen] = (uint8_t)(a->port >> 8);
		ps->keys[ps->n_keys][alen + 1] = (uint8_t)a->port;
		ps->n_keys++;
	}
	/* Whatever order the bundle kept, the diff needs this one. */
	qsort(ps->keys, ps->n_keys, sizeof(*ps->keys), cmp_named_key);
	for (size_t i = 0; i < ps->n_keys; i++) {
		if (!u || memcmp(ps->keys[u - 1], ps->keys[i], NFT_NAMED_KEY_MAX) != 0)
			memcpy(ps->keys[u++], ps->keys[i], NFT_NAMED_KEY_MAX);
	}
	ps->n_keys = u;
	/* Sized as a big hosts set is, and for the same reason. */
	ps->n_elems = u;
	if (u >= HOSTS_SET_SIZED_FROM && u <= UINT32_MAX / 4)
		ps->size = (uint32_t)((2 * u + 4095) / 4096 * 4096);
	return 0;
}

/* Checks every rule's set references and kinds; used[s]: rules of ep use
 * bundle set s; used_named[t]: named-port table t. */
static int plan_check_sets(const struct bundle *b, const struct bundle_endpoint *ep, bool *used,
			   bool *used_named, char *err, size_t errsz)
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
				if (b->sets[br->sets[s]].kind != SET_HOSTS &&
				    b->sets[br->sets[s]].kind != SET_RANGES) {
					snprintf(err, errsz, "bundle set %s: unknown kind",
						 b->sets[br->sets[s]].id);
					return -EINVAL;
				}
				if (used)
					used[br->sets[s]] = true;
			}
			if (nft_plan_check_rule(b, d, br, err, errsz) < 0)
				return -EINVAL;
			for (size_t j = 0; used_named && !br->any_port && j < br->n_ports; j++) {
				if (br->ports[j].name)
					used_named[br->ports[j].named_table] = true;
			}
		}
		if (c->fallback != VERDICT_ACCEPT && c->fallback != VERDICT_DROP &&
		    c->fallback != VERDICT_AUDIT) {
			snprintf(err, errsz, "%s chain: bad fallback verdict", direction_name(d));
			return -EINVAL;
		}
	}
	return 0;
}

/* The linear form's sets: in bundle set order, only those the endpoint's
 * rules use; then the named sets, in table order, likewise. */
static int plan_sets(struct nft_plan *p, const struct bundle *b, struct nft_plan_set **by_set,
		     const bool *used, struct nft_plan_set **by_named, const bool *used_named, char *err,
		     size_t errsz)
{
	for (size_t s = 0; s < b->n_sets; s++) {
		const struct bundle_set *bs = &b->sets[s];

		if (!used[s])
			continue;
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
	for (size_t t = 0; t < b->n_named_ports; t++) {
		if (!used_named[t])
			continue;
		/* Both families, pairs or not, as above. */
		for (int f = 0; f < 2; f++) {
			int ret = plan_named_init(&p->sets[p->n_sets], &b->named_ports[t],
						  f ? AF_INET6 : AF_INET, (uint32_t)p->n_sets + 1);

			if (ret < 0)
				return ret;
			by_named[2 * t + f] = &p->sets[p->n_sets++];
		}
	}
	return plan_check_names(p, err, errsz);
}

int nft_plan_fixed_rules(struct nft_plan *p, enum direction dir)
{
	for (int f = 0; f < FIXED_COUNT; f++) {
		struct nft_plan_rule r = {
		    .kind = NFT_PLAN_FIXED, .dir = dir, .fixed = f, .id = fixed_rule_id(f)};
		int ret;

		if (f == FIXED_CT_INVALID || f == FIXED_TCP_PICKUP) {
			r.verdict = VERDICT_DROP;
			r.pos = NFT_POSITION_INVALID;
		}
		ret = nft_plan_add_rule(p, &r);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/* A linear chain: the fixed rules, every bundle rule in turn, the fallback. */
static int plan_linear_chain(struct nft_plan *p, enum direction dir, struct nft_plan_set **by_set,
			     struct nft_plan_set **by_named)
{
	const struct bundle_chain *c = &p->ep->chains[dir];
	struct nft_plan_rule fb = {.kind = NFT_PLAN_FALLBACK,
				   .dir = dir,
				   .pos = NFT_POSITION_FALLBACK,
				   .verdict = c->fallback,
				   .id = c->fallback_reason};
	struct nft_plan_chain *pc = &p->chains[dir];
	int ret;

	pc->first_rule = p->n_rules;
	ret = nft_plan_fixed_rules(p, dir);
	for (size_t i = 0; ret == 0 && i < c->n_rules; i++)
		ret = plan_rules_for(p, dir, i, &c->rules[i], by_set, by_named);
	if (ret == 0)
		ret = nft_plan_add_rule(p, &fb);
	pc->n_rules = p->n_rules - pc->first_rule;
	return ret;
}

static int plan_linear(struct nft_plan *p, const struct bundle *b, const bool *used, const bool *used_named,
		       char *err, size_t errsz)
{
	struct nft_plan_set **by_set = NULL, **by_named = NULL;
	size_t n = b->n_sets + b->n_named_ports;
	int ret = 0;

	if (n) {
		/* Two slots per bundle set and named table, v4 and v6; at
		 * most that many nft sets. */
		by_set = calloc(2 * (b->n_sets ? b->n_sets : 1), sizeof(*by_set));
		by_named = calloc(2 * (b->n_named_ports ? b->n_named_ports : 1), sizeof(*by_named));
		p->sets = calloc(2 * n, sizeof(*p->sets));
		if (!by_set || !by_named || !p->sets) {
			free(by_set);
			free(by_named);
			return -ENOMEM;
		}
	}
	ret = plan_sets(p, b, by_set, used, by_named, used_named, err, errsz);
	for (int d = 0; ret == 0 && d < DIR_COUNT; d++)
		ret = plan_linear_chain(p, d, by_set, by_named);
	free(by_set);
	free(by_named);
	return ret;
}

/* NFT_FORM_AUTO's choice for ep (nft-plan.h). */
/* Whether the named-port tables ep's egress rules use give their names
 * more than NFT_NAMED_NUMBERS_MAX numbers in all: each number is a class
 * of peers of its own in the map form (a chain and a map), where the
 * linear form has one set per table. Indices not checked yet: out of
 * range ones are left to nft_plan_check_rule(). */
static bool many_numbers(const struct bundle *b, const struct bundle_endpoint *ep)
{
	const struct bundle_chain *c = &ep->chains[DIR_EGRESS];
	bool *seen = calloc(b->n_named_ports ? b->n_named_ports : 1, sizeof(*seen));
	uint8_t *ports = malloc(65536 / 8);
	size_t n = 0;

	for (size_t i = 0; seen && ports && i < c->n_rules && n <= NFT_NAMED_NUMBERS_MAX; i++) {
		const struct bundle_rule *r = &c->rules[i];

		for (size_t j = 0; !r->any_port && j < r->n_ports && n <= NFT_NAMED_NUMBERS_MAX; j++) {
			uint32_t t = r->ports[j].named_table;

			if (!r->ports[j].name || t >= b->n_named_ports || seen[t])
				continue;
			seen[t] = true;
			memset(ports, 0, 65536 / 8);
			for (size_t k = 0; k < b->named_ports[t].n && n <= NFT_NAMED_NUMBERS_MAX; k++) {
				uint16_t v = b->named_ports[t].v[k].port;

				n += !(ports[v / 8] & (1u << (v % 8)));
				ports[v / 8] |= (uint8_t)(1u << (v % 8));
			}
		}
	}
	free(seen);
	free(ports);
	return n > NFT_NAMED_NUMBERS_MAX;
}

static enum nft_form form_for(const struct bundle *b, const struct bundle_endpoint *ep)
{
	for (int d = 0; d < DIR_COUNT; d++) {
		size_t walk = 0;

		for (size_t i = 0; i < ep->chains[d].n_rules; i++) {
			const struct bundle_rule *r = &ep->chains[d].rules[i];

			walk += (r->n_sets ? r->n_sets : 1) * (r->n_ports ? r->n_ports : 1);
			if (walk > NFT_LINEAR_WALK_MAX)
				return many_numbers(b, ep) ? NFT_FORM_LINEAR : NFT_FORM_MAPS;
		}
	}
	return NFT_FORM_LINEAR;
}

int nft_plan_build(struct nft_plan *p, const struct bundle *b, const struct bundle_endpoint *ep,
		   const struct nft_tag *tag, enum nft_form form, char *err, size_t errsz)
{
	bool *used = NULL, *used_named = NULL;
	uint32_t idx;
	int ret = 0;

	memset(p, 0, sizeof(*p));
	if (form == NFT_FORM_AUTO)
		form = form_for(b, ep);
	p->ep = ep;
	p->form = form;
	p->observe = b->observe == OBSERVE_ALL;
	if (tag) {
		p->has_tag = true;
		nft_tag_format(tag, p->tag);
	}
	if ((b->n_sets && !(used = calloc(b->n_sets, sizeof(*used)))) ||
	    (b->n_named_ports && !(used_named = calloc(b->n_named_ports, sizeof(*used_named))))) {
		ret = -ENOMEM;
		goto err_free;
	}
	ret = plan_check_sets(b, ep, used, used_named, err, errsz);
	/* The base chains first, at the index of their direction. */
	for (int d = 0; ret == 0 && d < DIR_COUNT; d++) {
		ret = nft_plan_add_chain(p, d == DIR_INGRESS ? NFT_CHAIN_INGRESS : NFT_CHAIN_EGRESS,
					 NFT_PLAN_BASE_CHAIN, d, &idx);
		if (ret == 0)
			p->chains[idx].hook = d == DIR_INGRESS ? "input" : "output";
	}
	if (ret == 0 && form == NFT_FORM_LINEAR)
		ret = plan_linear(p, b, used, used_named, err, errsz);
	else if (ret == 0)
		ret = nft_plan_maps_build(p, b, err, errsz);
	if (ret < 0)
		goto err_free;
	free(used);
	free(used_named);
	return 0;

err_free:
	if (ret == -ENOMEM)
		snprintf(err, errsz, "out of memory");
	free(used);
	free(used_named);
	nft_plan_release(p);
	return ret;
}

static bool port_equal(const struct port_match *a, const struct port_match *b)
{
	if (!a || !b)
		return a == b;
	if (!a->name != !b->name || (a->name && strcmp(a->name, b->name) != 0))
		return false;
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

/* Compares what an nft rule is made of: family, set name, port match,
 * verdict, whether it is an observe rule, log prefix (direction and position), comment (rule id or
 * fallback reason), map and goto target (by name). */
static bool same_rule(const struct nft_plan *a, const struct nft_plan_rule *x, const struct nft_plan *b,
		      const struct nft_plan_rule *y)
{
	if (x->kind != y->kind || x->fixed != y->fixed || x->dir != y->dir || x->pos != y->pos ||
	    x->family != y->family || x->verdict != y->verdict || x->observe != y->observe ||
	    !port_equal(x->port, y->port) || !x->set != !y->set || !x->named != !y->named)
		return false;
	if (x->set && strcmp(x->set->name, y->set->name) != 0)
		return false;
	if (x->named && strcmp(x->named->name, y->named->name) != 0)
		return false;
	if ((x->kind == NFT_PLAN_DISPATCH || x->kind == NFT_PLAN_LOOKUP) &&
	    strcmp(a->maps[x->map].name, b->maps[y->map].name) != 0)
		return false;
	if (x->kind == NFT_PLAN_GOTO && strcmp(a->chains[x->target].name, b->chains[y->target].name) != 0)
		return false;
	return same_comment(x, y);
}

static bool same_chain(const struct nft_plan *a, const struct nft_plan_chain *x, const struct nft_plan *b,
		       const struct nft_plan_chain *y)
{
	if (strcmp(x->name, y->name) != 0 || x->kind != y->kind || x->dir != y->dir ||
	    x->n_rules != y->n_rules)
		return false;
	for (size_t i = 0; i < x->n_rules; i++) {
		if (!same_rule(a, &a->rules[x->first_rule + i], b, &b->rules[y->first_rule + i]))
			return false;
	}
	return true;
}

/* The chains that are not classes, and the maps that are not a class's,
 * in plan order. */
static size_t count_fixed_chains(const struct nft_plan *p)
{
	size_t n = 0;

	for (size_t i = 0; i < p->n_chains; i++)
		n += p->chains[i].kind != NFT_PLAN_CLASS_CHAIN;
	return n;
}

bool nft_plan_same_shape(const struct nft_plan *a, const struct nft_plan *b)
{
	size_t i, j;

	if (a->form != b->form || a->n_sets != b->n_sets)
		return false;
	for (i = 0; i < a->n_sets; i++) {
		const struct nft_plan_set *x = &a->sets[i], *y = &b->sets[i];

		if (strcmp(x->name, y->name) != 0 || x->family != y->family || x->interval != y->interval ||
		    !x->named != !y->named)
			return false;
		/* A sized set must hold the new elements; an unsized one grows. */
		if (!x->size != !y->size || (x->size && y->n_elems > x->size))
			return false;
	}
	/* Dispatch maps: same names and kinds; a sized hosts map must hold
	 * the new elements (an unsized one grows). Class maps come and go
	 * with their chains. */
	for (i = j = 0;; i++, j++) {
		while (i < a->n_maps && (a->maps[i].kind == NFT_MAP_PORTS || a->maps[i].kind == NFT_MAP_ICMP))
			i++;
		while (j < b->n_maps && (b->maps[j].kind == NFT_MAP_PORTS || b->maps[j].kind == NFT_MAP_ICMP))
			j++;
		if (i == a->n_maps || j == b->n_maps)
			break;
		const struct nft_plan_map *x = &a->maps[i], *y = &b->maps[j];

		if (strcmp(x->name, y->name) != 0 || x->kind != y->kind || x->family != y->family ||
		    x->dir != y->dir || !x->size != !y->size || (x->size && y->n_elems > x->size))
			return false;
	}
	if (i != a->n_maps || j != b->n_maps)
		return false;
	if (count_fixed_chains(a) != count_fixed_chains(b))
		return false;
	for (i = j = 0;; i++, j++) {
		while (i < a->n_chains && a->chains[i].kind == NFT_PLAN_CLASS_CHAIN)
			i++;
		while (j < b->n_chains && b->chains[j].kind == NFT_PLAN_CLASS_CHAIN)
			j++;
		if (i == a->n_chains || j == b->n_chains)
			break;
		if (!same_chain(a, &a->chains[i], b, &b->chains[j]))
			return false;
	}
	return i == a->n_chains && j == b->n_chains;
}

/* ---- the plan as a packet sees it -------------------------------------- */

/* Whether (pkt's peer, its destination port) is a key of named set ns. */
static bool packet_in_named(const struct nft_plan_set *ns, const struct nft_packet *pkt)
{
	uint8_t key[NFT_NAMED_KEY_MAX] = {0};
	unsigned alen = nft_addr_len(pkt->family);
	size_t lo = 0, hi = ns->n_keys;

	if (!pkt->has_th || pkt->family != ns->family)
		return false;
	memcpy(key, pkt->peer, alen);
	key[alen] = pkt->th[2];
	key[alen + 1] = pkt->th[3];
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = memcmp(key, ns->keys[mid], NFT_NAMED_KEY_MAX);

		if (c == 0)
			return true;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return false;
}

static bool packet_port_matches(const struct port_match *pm, const struct nft_packet *pkt)
{
	if (pm->proto != pkt->l4proto)
		return false;
	if (pm->name)
		return false; /* the rule's named set decides */
	if (pm->proto == IPPROTO_ICMP || pm->proto == IPPROTO_ICMPV6) {
		/* The batch loads type and code only when it compares them. */
		if ((pm->icmp_type >= 0 || pm->icmp_code >= 0) && !pkt->has_th)
			return false;
		return (pm->icmp_type < 0 || pm->icmp_type == pkt->th[0]) &&
		       (pm->icmp_code < 0 || pm->icmp_code == pkt->th[1]);
	}
	if (pm->lo == 0 && pm->hi == 65535)
		return true;
	if (!pkt->has_th)
		return false;
	unsigned port = (unsigned)pkt->th[2] << 8 | pkt->th[3];

	return port >= pm->lo && port <= pm->hi;
}

static bool packet_in_list(const struct range_list *l, const struct nft_packet *pkt)
{
	struct bh_addr a = {.family = (uint8_t)pkt->family};

	memcpy(a.bytes, pkt->peer, nft_addr_len(pkt->family));
	return range_list_contains(l, &a);
}

/* The element of m that holds key (klen bytes), or NULL. */
static const struct nft_plan_elem *map_find(const struct nft_plan_map *m, const uint8_t *key, unsigned klen)
{
	size_t lo = 0, hi = m->n_elems;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct nft_plan_elem *e = &m->elems[mid];

		if (memcmp(key, e->lo, klen) < 0)
			hi = mid;
		else if (memcmp(key, e->hi, klen) > 0)
			lo = mid + 1;
		else
			return e;
	}
	return NULL;
}

/* Where a map-form rule sends pkt: the chain index, or -1 to go on. */
static long rule_goes(const struct nft_plan *p, const struct nft_plan_rule *r, const struct nft_packet *pkt)
{
	const struct nft_plan_elem *e;
	uint8_t key[3];

	switch (r->kind) {
	case NFT_PLAN_GOTO:
		return r->target;
	case NFT_PLAN_DISPATCH:
		if (r->family != pkt->family)
			return -1;
		e = map_find(&p->maps[r->map], pkt->peer, nft_addr_len(pkt->family));
		return e ? (long)e->target : -1;
	case NFT_PLAN_LOOKUP:
		if (!pkt->has_th)
			return -1; /* the payload load breaks the rule */
		key[0] = pkt->l4proto;
		memcpy(key + 1, pkt->th + (p->maps[r->map].kind == NFT_MAP_PORTS ? 2 : 0), 2);
		e = map_find(&p->maps[r->map], key, 3);
		return e ? (long)e->target : -1;
	default:
		return -1;
	}
}

/* Whether a rule that gives a verdict matches pkt. */
static bool rule_matches(const struct nft_plan_rule *r, const struct nft_packet *pkt)
{
	if (r->kind == NFT_PLAN_FIXED) {
		switch (r->fixed) {
		case FIXED_LOOPBACK:
			return pkt->loopback;
		case FIXED_NEIGHBOUR_DISCOVERY:
			return pkt->family == AF_INET6 && pkt->l4proto == IPPROTO_ICMPV6 && pkt->has_th &&
			       pkt->th[0] >= 133 && pkt->th[0] <= 136;
		default:
			return false; /* conntrack's: a new packet, not invalid, a SYN if TCP */
		}
	}
	if (r->family && r->family != pkt->family)
		return false;
	if (r->set && !packet_in_list(r->set->members, pkt))
		return false;
	if (r->named)
		return r->port->proto == pkt->l4proto && packet_in_named(r->named, pkt);
	return !r->port || packet_port_matches(r->port, pkt);
}

long nft_plan_decide(const struct nft_plan *p, enum direction dir, const struct nft_packet *pkt)
{
	size_t chain = dir, hops = 0;

	if (dir >= DIR_COUNT || p->n_chains <= (size_t)dir)
		return -1;
	for (;;) {
		const struct nft_plan_chain *c = &p->chains[chain];
		long next = -1;

		for (size_t i = c->first_rule; i < c->first_rule + c->n_rules; i++) {
			const struct nft_plan_rule *r = &p->rules[i];

			if (r->observe) {
				continue; /* logs, decides nothing */
			} else if (r->kind == NFT_PLAN_FIXED || r->kind == NFT_PLAN_RULE ||
				   r->kind == NFT_PLAN_FALLBACK) {
				if (rule_matches(r, pkt))
					return (long)i;
				continue;
			}
			next = rule_goes(p, r, pkt);
			if (next >= 0)
				break;
		}
		/* The end of a chain gone to: back to the hook, whose policy accepts. */
		if (next < 0 || (size_t)next >= p->n_chains || ++hops > p->n_chains)
			return -1;
		chain = (size_t)next;
	}
}
