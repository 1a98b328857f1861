/* nft: turns one bundle endpoint into table inet bulkhead and loads it as
 * one nftables transaction built with libnftnl and sent with libmnl. */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <netinet/in.h>

#include <libmnl/libmnl.h>
#include <libnftnl/batch.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>

#include "bulkhead/sha256.h"
#include "nft.h"

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

/* nft's datatype numbers for set keys (nftables src/datatype.h); nft list
 * needs them to print the elements as addresses. */
#define NFT_TYPE_IPADDR		 7
#define NFT_TYPE_IP6ADDR	 8
#define NFT_TYPE_MARK		 19
#define NFT_BYTEORDER_BIG_ENDIAN 2

/* Batch pages as nft sizes them; one message must fit in the overrun. */
#define NFT_BATCH_PAGE	  (128 * 1024)
#define NFT_BATCH_OVERRUN (64 * 1024)
/* Elements per NEWSETELEM message: the element list is one netlink
 * attribute, whose length is 16 bits. 256 IPv6 intervals stay well below. */
#define NFT_ELEMS_PER_MSG 256
/* A hosts set is a hash of single addresses. The bundle's normalized lists
 * merge consecutive addresses into ranges, which we expand again; a range
 * longer than this is no run of endpoint addresses, and the set becomes an
 * interval set (same members) so that expansion stays linear in the input. */
#define NFT_HOSTS_RANGE_MAX 256
/* Receive buffer per expected acknowledgement (skb truesize, rounded up). */
#define NFT_ACK_TRUESIZE 1024
#define NFT_RECV_BUF	 16384

/* ---- the plan: the ruleset as data ------------------------------------
 * Both the netlink emitter and the text emitter walk the same plan, so
 * --print-ruleset shows exactly what the agent loads. */

struct plan_set {
	char name[NFT_SET_NAME_MAX];
	const struct bundle_set *src;
	int family; /* AF_INET or AF_INET6 */
	bool interval;
	uint32_t id; /* NFTA_SET_ID within the transaction */
};

struct plan_rule {
	enum direction dir;
	long pos;		       /* bundle rule index, NFT_POSITION_FALLBACK */
	const struct bundle_rule *src; /* NULL for the fallback */
	int family;		       /* 0: any family */
	const struct plan_set *set;    /* NULL: any peer */
	const struct port_match *port; /* NULL: any protocol */
	enum verdict verdict;
};

struct plan {
	struct plan_set *sets;
	size_t n_sets;
	struct plan_rule *rules; /* ingress rules, then egress rules */
	size_t n_rules, cap_rules;
	size_t first_rule[DIR_COUNT + 1];
};

/* Rules every chain starts with (DESIGN §2 step 1), before the bundle's. */
enum fixed_rule {
	FIXED_ESTABLISHED,
	FIXED_INVALID,
	FIXED_LOOPBACK,
	FIXED_ND,
	FIXED_COUNT,
};

/* Each has a counter and this comment (its name among the hit counts);
 * the invalid drop logs, as every drop does. */
static const char *const fixed_id[FIXED_COUNT] = {
	[FIXED_ESTABLISHED] = NFT_RULE_ESTABLISHED,
	[FIXED_INVALID] = NFT_RULE_CT_INVALID,
	[FIXED_LOOPBACK] = NFT_RULE_LOOPBACK,
	[FIXED_ND] = NFT_RULE_NEIGHBOUR_DISCOVERY,
};

/* What each matches, as nft writes it. */
/* clang-format off */
static const char *const fixed_match[DIR_COUNT][FIXED_COUNT] = {
	[DIR_INGRESS] = {
		"ct state established,related",
		"ct state invalid",
		"iif \"lo\"",
		"meta nfproto ipv6 meta l4proto ipv6-icmp icmpv6 type 133-136",
	},
	[DIR_EGRESS] = {
		"ct state established,related",
		"ct state invalid",
		"oif \"lo\"",
		"meta nfproto ipv6 meta l4proto ipv6-icmp icmpv6 type 133-136",
	},
};
/* clang-format on */

static const char *chain_name(enum direction dir)
{
	return dir == DIR_INGRESS ? NFT_CHAIN_INGRESS : NFT_CHAIN_EGRESS;
}

static void plan_release(struct plan *p)
{
	free(p->sets);
	free(p->rules);
	memset(p, 0, sizeof(*p));
}

static unsigned family_bytes(int family)
{
	return family == AF_INET ? 4 : 16;
}

static const struct range_list *set_ranges(const struct bundle_set *s, int family)
{
	return family == AF_INET ? &s->v4 : &s->v6;
}

/* Adds one to a big-endian number; true when it wrapped (was all ones). */
static bool addr_increment(uint8_t *bytes, unsigned len)
{
	for (unsigned i = len; i-- > 0;) {
		if (++bytes[i] != 0)
			return false;
	}
	return true;
}

static bool addr_is_all_ones(const uint8_t *bytes, unsigned len)
{
	for (unsigned i = 0; i < len; i++) {
		if (bytes[i] != 0xff)
			return false;
	}
	return true;
}

/* Big-endian addresses of len bytes (4 or 16) as numbers: <0, 0, >0.
 * The element delta compares addresses in its inner loops, where a call
 * to memcmp() per comparison costs more than the rest of the work. */
static int addr_order(const uint8_t *a, const uint8_t *b, unsigned len)
{
	uint64_t x, y;

	if (len == 4) {
		uint32_t p, q;

		memcpy(&p, a, 4);
		memcpy(&q, b, 4);
		p = ntohl(p);
		q = ntohl(q);
		return (p > q) - (p < q);
	}
	memcpy(&x, a, 8);
	memcpy(&y, b, 8);
	if (x == y) {
		memcpy(&x, a + 8, 8);
		memcpy(&y, b + 8, 8);
	}
	x = be64toh(x);
	y = be64toh(y);
	return (x > y) - (x < y);
}

/* Number of addresses in r, saturated at UINT64_MAX. */
static uint64_t range_span(const struct addr_range *r, unsigned len)
{
	unsigned head = len > 8 ? len - 8 : 0;
	uint64_t lo = 0, hi = 0;

	if (addr_order(r->lo.bytes, r->hi.bytes, len) == 0)
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

void nft_prefix_format(const struct nft_prefix *p, char buf[NFT_PREFIX_MAX])
{
	char v = p->verdict == VERDICT_AUDIT ? 'A' : 'D';
	char d = p->dir == DIR_EGRESS ? 'e' : 'i';

	if (p->position == NFT_POSITION_INVALID)
		snprintf(buf, NFT_PREFIX_MAX, "bh:%c:%cx", v, d);
	else if (p->position < 0)
		snprintf(buf, NFT_PREFIX_MAX, "bh:%c:%c-", v, d);
	else
		snprintf(buf, NFT_PREFIX_MAX, "bh:%c:%c%ld", v, d, p->position);
}

int nft_prefix_parse(const char *s, struct nft_prefix *out)
{
	struct nft_prefix p;
	long pos = 0;

	if (strncmp(s, "bh:", 3) != 0 || (s[3] != 'D' && s[3] != 'A') || s[4] != ':')
		return -EINVAL;
	p.verdict = s[3] == 'A' ? VERDICT_AUDIT : VERDICT_DROP;
	if (s[5] == 'i')
		p.dir = DIR_INGRESS;
	else if (s[5] == 'e')
		p.dir = DIR_EGRESS;
	else
		return -EINVAL;
	s += 6;
	if (s[0] == '-' && s[1] == '\0') {
		p.position = NFT_POSITION_FALLBACK;
	} else if (s[0] == 'x' && s[1] == '\0') {
		p.position = NFT_POSITION_INVALID;
	} else {
		if (*s < '0' || *s > '9' || (s[0] == '0' && s[1] != '\0'))
			return -EINVAL;
		for (; *s; s++) {
			if (*s < '0' || *s > '9' || pos > (1L << 40))
				return -EINVAL;
			pos = pos * 10 + (*s - '0');
		}
		p.position = pos;
	}
	*out = p;
	return 0;
}

static int plan_add_rule(struct plan *p, const struct plan_rule *r)
{
	if (p->n_rules == p->cap_rules) {
		size_t cap = p->cap_rules ? 2 * p->cap_rules : 64;
		struct plan_rule *v = realloc(p->rules, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		p->rules = v;
		p->cap_rules = cap;
	}
	p->rules[p->n_rules++] = *r;
	return 0;
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

static int rule_verdict(const struct bundle_rule *r, enum verdict *out)
{
	if (r->action == ACTION_ALLOW)
		*out = VERDICT_ACCEPT;
	else if (r->action == ACTION_DENY && r->mode == MODE_ENFORCE)
		*out = VERDICT_DROP;
	else if (r->action == ACTION_DENY && r->mode == MODE_AUDIT)
		*out = VERDICT_AUDIT;
	else
		return -EINVAL;
	return 0;
}

/* One nft rule per (family, set, port); a rule with any peer needs no
 * family match, so it becomes one rule per port. */
static int plan_rules_for(struct plan *p, enum direction dir, size_t pos, const struct bundle_rule *br,
			  struct plan_set **by_set, char *err, size_t errsz)
{
	static const int families[] = {AF_INET, AF_INET6};
	struct plan_rule r = {.dir = dir, .pos = (long)pos, .src = br};
	size_t n_ports = br->any_port ? 1 : br->n_ports;
	int ret;

	if (rule_verdict(br, &r.verdict) < 0) {
		snprintf(err, errsz, "bundle rule %s: bad action or mode", br->id);
		return -EINVAL;
	}
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
	const struct plan_set *const *x = a, *const *y = b;

	return strcmp((*x)->name, (*y)->name);
}

static int plan_check_names(const struct plan *p, char *err, size_t errsz)
{
	const struct plan_set **v;
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

static void plan_set_init(struct plan_set *ps, const struct bundle_set *bs, int family, uint32_t id)
{
	const struct range_list *l = set_ranges(bs, family);
	unsigned len = family_bytes(family);

	memset(ps, 0, sizeof(*ps));
	nft_set_name(bs->id, family, ps->name);
	ps->src = bs;
	ps->family = family;
	ps->id = id;
	ps->interval = bs->kind == SET_RANGES;
	for (size_t i = 0; !ps->interval && i < l->n; i++)
		ps->interval = range_span(&l->v[i], len) > NFT_HOSTS_RANGE_MAX;
}

static int plan_build(struct plan *p, const struct bundle *b, const struct bundle_endpoint *ep, char *err,
		      size_t errsz)
{
	struct plan_set **by_set = NULL;
	bool *used = NULL;
	int ret = 0;

	memset(p, 0, sizeof(*p));
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

	/* Sets first, in bundle set order, only those this endpoint uses. */
	for (int d = 0; d < DIR_COUNT; d++) {
		const struct bundle_chain *c = &ep->chains[d];

		for (size_t i = 0; i < c->n_rules; i++) {
			const struct bundle_rule *br = &c->rules[i];

			for (size_t s = 0; !br->any_peer && s < br->n_sets; s++) {
				if (br->sets[s] >= b->n_sets) {
					snprintf(err, errsz,
						 "bundle rule %s: set index %" PRIu32 " out of range", br->id,
						 br->sets[s]);
					ret = -EINVAL;
					goto err_free;
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
			ret = -EINVAL;
			goto err_free;
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
	ret = plan_check_names(p, err, errsz);
	if (ret < 0)
		goto err_free;

	for (int d = 0; d < DIR_COUNT; d++) {
		const struct bundle_chain *c = &ep->chains[d];
		struct plan_rule fb = {.dir = d, .pos = NFT_POSITION_FALLBACK, .verdict = c->fallback};

		p->first_rule[d] = p->n_rules;
		for (size_t i = 0; i < c->n_rules; i++) {
			ret = plan_rules_for(p, d, i, &c->rules[i], by_set, err, errsz);
			if (ret < 0)
				goto err_free;
		}
		if (c->fallback != VERDICT_ACCEPT && c->fallback != VERDICT_DROP &&
		    c->fallback != VERDICT_AUDIT) {
			snprintf(err, errsz, "%s chain: bad fallback verdict", direction_name(d));
			ret = -EINVAL;
			goto err_free;
		}
		ret = plan_add_rule(p, &fb);
		if (ret < 0)
			goto err_free;
	}
	p->first_rule[DIR_COUNT] = p->n_rules;
	free(used);
	free(by_set);
	return 0;

err_free:
	if (ret == -ENOMEM)
		snprintf(err, errsz, "out of memory");
	free(used);
	free(by_set);
	plan_release(p);
	return ret;
}

/* The comment nft shows with a rule: the bundle rule id, or the reason of
 * the fallback. Reduced to characters that need no quoting anywhere,
 * because the id comes from the bundle, which is outside input. */
static void rule_comment(const struct bundle_endpoint *ep, const struct plan_rule *r, char *buf, size_t size)
{
	const char *s = r->src ? r->src->id : ep->chains[r->dir].fallback_reason;
	size_t n = 0;

	if (!s)
		s = "fallback";
	for (; *s && n + 1 < size; s++) {
		char c = *s;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			  c == '.' || c == '_' || c == '-' || c == '/' || c == ':';
		buf[n++] = ok ? c : '_';
	}
	buf[n] = '\0';
}

/* The prefix of a chain's "ct state invalid" drop. */
static void invalid_prefix(enum direction dir, char buf[NFT_PREFIX_MAX])
{
	struct nft_prefix pfx = {.verdict = VERDICT_DROP, .dir = dir, .position = NFT_POSITION_INVALID};

	nft_prefix_format(&pfx, buf);
}

static void rule_prefix(const struct plan_rule *r, char buf[NFT_PREFIX_MAX])
{
	struct nft_prefix pfx = {.verdict = r->verdict, .dir = r->dir, .position = r->pos};

	nft_prefix_format(&pfx, buf);
}

/* ---- netlink emitter -------------------------------------------------- */

enum obj_kind {
	OBJ_BATCH,
	OBJ_TABLE,
	OBJ_SET,
	OBJ_ELEMS,
	OBJ_CHAIN,
	OBJ_FIXED_RULE,
	OBJ_RULE,
	OBJ_TAG, /* the tag set, or its element */
};

/* What one message of the batch was; message i has sequence seq_base + i. */
struct nft_obj {
	enum obj_kind kind;
	uint32_t index; /* set, plan rule, fixed rule, chain index */
	uint32_t first; /* OBJ_ELEMS: first element of the chunk */
	uint16_t dir;
	uint16_t nlmsg_type;
};

struct nft_batch {
	uint16_t nflog_group;
	const struct bundle_endpoint *ep; /* borrowed, for error messages */
	struct plan plan;
	struct nftnl_batch *batch;
	struct nft_obj *objs;
	size_t n_objs, cap_objs;
	uint32_t seq_base;
	size_t n_acks; /* messages that asked for an ACK */
	const char *zeroed_page;
	uint8_t *genid; /* NFNL_BATCH_GENID of BEGIN, big-endian: 0 until a send sets it */
	bool has_tag;
	struct nft_tag tag;
	struct nft_batch_stats stats;
	char error[1024];
};

struct nft_batch *nft_batch_new(uint16_t nflog_group)
{
	struct nft_batch *nb = calloc(1, sizeof(*nb));

	if (!nb)
		return NULL;
	nb->nflog_group = nflog_group;
	return nb;
}

static void batch_reset(struct nft_batch *nb)
{
	plan_release(&nb->plan);
	if (nb->batch)
		nftnl_batch_free(nb->batch);
	nb->batch = NULL;
	free(nb->objs);
	nb->objs = NULL;
	nb->n_objs = nb->cap_objs = 0;
	nb->n_acks = 0;
	nb->zeroed_page = NULL;
	nb->genid = NULL;
	memset(&nb->stats, 0, sizeof(nb->stats));
	nb->error[0] = '\0';
	nb->ep = NULL;
}

void nft_batch_free(struct nft_batch *nb)
{
	if (!nb)
		return;
	batch_reset(nb);
	free(nb);
}

const char *nft_batch_error(const struct nft_batch *nb)
{
	return nb->error;
}

void nft_batch_stats(const struct nft_batch *nb, struct nft_batch_stats *out)
{
	*out = nb->stats;
}

/* Reserves the next sequence number for an object of kind. */
static int batch_obj(struct nft_batch *nb, const struct nft_obj *o, uint32_t *seq)
{
	if (nb->n_objs == nb->cap_objs) {
		size_t cap = nb->cap_objs ? 2 * nb->cap_objs : 256;
		struct nft_obj *v = realloc(nb->objs, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		nb->objs = v;
		nb->cap_objs = cap;
	}
	nb->objs[nb->n_objs] = *o;
	*seq = nb->seq_base + (uint32_t)nb->n_objs;
	nb->n_objs++;
	return 0;
}

/* libnftnl leaves attribute padding as malloc() left it, and all of it
 * goes to the kernel: zero each page of the batch once, when we start
 * writing into it. A page is one buffer of NFT_BATCH_PAGE +
 * NFT_BATCH_OVERRUN bytes whose first nftnl_batch_buffer_len() are used. */
static char *batch_buffer(struct nft_batch *nb)
{
	char *cur = nftnl_batch_buffer(nb->batch);
	const char *page = cur - nftnl_batch_buffer_len(nb->batch);

	if (page != nb->zeroed_page) {
		memset(cur, 0, (size_t)(page + NFT_BATCH_PAGE + NFT_BATCH_OVERRUN - cur));
		nb->zeroed_page = page;
	}
	return cur;
}

static struct nlmsghdr *batch_hdr(struct nft_batch *nb, uint16_t type, uint16_t flags,
				  const struct nft_obj *o)
{
	struct nft_obj obj = *o;
	uint32_t seq;

	obj.nlmsg_type = type;
	if (batch_obj(nb, &obj, &seq) < 0)
		return NULL;
	nb->n_acks++;
	return nftnl_nlmsg_build_hdr(batch_buffer(nb), type, NFPROTO_INET, flags | NLM_F_ACK, seq);
}

/* Closes the message just written; a new page when this one is full. */
static int batch_next(struct nft_batch *nb)
{
	nb->stats.messages++;
	return nftnl_batch_update(nb->batch) < 0 ? -ENOMEM : 0;
}

static int emit_table(struct nft_batch *nb, uint16_t type, uint16_t flags)
{
	struct nft_obj o = {.kind = OBJ_TABLE};
	struct nftnl_table *t = nftnl_table_alloc();
	struct nlmsghdr *nlh;

	if (!t)
		return -ENOMEM;
	nftnl_table_set_str(t, NFTNL_TABLE_NAME, NFT_TABLE_NAME);
	nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, NFPROTO_INET);
	nlh = batch_hdr(nb, type, flags, &o);
	if (!nlh) {
		nftnl_table_free(t);
		return -ENOMEM;
	}
	nftnl_table_nlmsg_build_payload(nlh, t);
	nftnl_table_free(t);
	return batch_next(nb);
}

/* The set as the head of an element message, or of NEWSET. with_id names
 * a set created in this same transaction by its NFTA_SET_ID as well; a
 * delta's sets exist already and go by name alone. */
static struct nftnl_set *set_alloc(const struct plan_set *ps, bool with_id)
{
	struct nftnl_set *s = nftnl_set_alloc();

	if (!s)
		return NULL;
	nftnl_set_set_str(s, NFTNL_SET_TABLE, NFT_TABLE_NAME);
	nftnl_set_set_str(s, NFTNL_SET_NAME, ps->name);
	nftnl_set_set_u32(s, NFTNL_SET_FAMILY, NFPROTO_INET);
	if (with_id)
		nftnl_set_set_u32(s, NFTNL_SET_ID, ps->id);
	return s;
}

/* Elements of one set on their way into NEWSETELEM or DELSETELEM
 * messages of at most NFT_ELEMS_PER_MSG elements each. */
struct elem_writer {
	struct nft_batch *nb;
	const struct plan_set *ps;
	uint32_t set_index;
	uint16_t type; /* NFT_MSG_NEWSETELEM or NFT_MSG_DELSETELEM */
	bool with_id;  /* the set is created in this transaction */
	struct nftnl_set *chunk;
	uint32_t in_chunk; /* elements in chunk */
	uint32_t done;	   /* elements already in messages */
};

static void elem_writer_init(struct elem_writer *w, struct nft_batch *nb, uint32_t set_index, uint16_t type,
			     bool with_id)
{
	*w = (struct elem_writer){
	    .nb = nb,
	    .ps = &nb->plan.sets[set_index],
	    .set_index = set_index,
	    .type = type,
	    .with_id = with_id,
	};
}

static int elem_writer_flush(struct elem_writer *w)
{
	struct nft_obj o = {.kind = OBJ_ELEMS, .index = w->set_index, .first = w->done};
	struct nlmsghdr *nlh;
	int ret;

	if (!w->chunk || !w->in_chunk)
		return 0;
	/* Additions may create; deletions of what is not there fail, which
	 * says the table is not what we think it is (see nft.h). */
	nlh = batch_hdr(w->nb, w->type, w->type == NFT_MSG_NEWSETELEM ? NLM_F_CREATE : 0, &o);
	if (!nlh)
		return -ENOMEM;
	nftnl_set_elems_nlmsg_build_payload(nlh, w->chunk);
	ret = batch_next(w->nb);
	if (ret < 0)
		return ret;
	if (w->type == NFT_MSG_DELSETELEM)
		w->nb->stats.elements_removed += w->in_chunk;
	else
		w->nb->stats.elements_added += w->in_chunk;
	w->nb->stats.elements += w->in_chunk;
	w->done += w->in_chunk;
	w->in_chunk = 0;
	nftnl_set_free(w->chunk);
	w->chunk = NULL;
	return 0;
}

/* Drops what was not flushed; after an error, or after the last flush. */
static void elem_writer_release(struct elem_writer *w)
{
	if (w->chunk) /* libnftnl's free functions do not take NULL */
		nftnl_set_free(w->chunk);
	w->chunk = NULL;
}

/* more: the end element of this interval follows, and goes into the same
 * message, so that the kernel never sees half an interval. */
static int elem_put(struct elem_writer *w, const uint8_t *key, uint32_t flags, bool open_end, bool more)
{
	unsigned len = family_bytes(w->ps->family);
	struct nftnl_set_elem *e;

	if (!w->chunk) {
		w->chunk = set_alloc(w->ps, w->with_id);
		if (!w->chunk)
			return -ENOMEM;
	}
	e = nftnl_set_elem_alloc();
	if (!e)
		return -ENOMEM;
	nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, key, len);
	if (flags)
		nftnl_set_elem_set_u32(e, NFTNL_SET_ELEM_FLAGS, flags);
	if (open_end) {
		/* Tells nft list that this interval runs to the top of the
		 * address space, where no end element can follow (as nft
		 * itself marks it). */
		struct nftnl_udata_buf *ud = nftnl_udata_buf_alloc(16);

		if (!ud ||
		    !nftnl_udata_put_u32(ud, NFTNL_UDATA_SET_ELEM_FLAGS, NFTNL_SET_ELEM_F_INTERVAL_OPEN)) {
			nftnl_udata_buf_free(ud);
			nftnl_set_elem_free(e);
			return -ENOMEM;
		}
		nftnl_set_elem_set(e, NFTNL_SET_ELEM_USERDATA, nftnl_udata_buf_data(ud),
				   nftnl_udata_buf_len(ud));
		nftnl_udata_buf_free(ud);
	}
	nftnl_set_elem_add(w->chunk, e);
	w->in_chunk++;
	if (w->in_chunk >= NFT_ELEMS_PER_MSG && !more)
		return elem_writer_flush(w);
	return 0;
}

/* An interval set holds lo..hi as a start element at lo and an end
 * element at hi + 1, except at the top of the address space, where the
 * start alone (marked open) runs to the end. Deleting an interval names
 * both elements again, end flag included. */
static int elem_put_range(struct elem_writer *w, const struct addr_range *r)
{
	unsigned len = family_bytes(w->ps->family);
	bool top = addr_is_all_ones(r->hi.bytes, len);
	uint8_t end[16];
	int ret;

	ret = elem_put(w, r->lo.bytes, 0, top && w->type == NFT_MSG_NEWSETELEM, !top);
	if (ret < 0 || top)
		return ret;
	memcpy(end, r->hi.bytes, len);
	addr_increment(end, len);
	return elem_put(w, end, NFT_SET_ELEM_INTERVAL_END, false, false);
}

/* The addresses of a hosts list in ascending order, each once, also when
 * ranges overlap: cur is the smallest address not yet visited, within
 * range i while i < n. */
struct addr_iter {
	const struct range_list *l;
	unsigned len;
	size_t i;
	uint8_t cur[16];
};

static void addr_iter_settle(struct addr_iter *it)
{
	while (it->i < it->l->n) {
		const struct addr_range *r = &it->l->v[it->i];

		if (addr_order(it->cur, r->lo.bytes, it->len) < 0)
			memcpy(it->cur, r->lo.bytes, it->len);
		if (addr_order(it->cur, r->hi.bytes, it->len) <= 0)
			return;
		it->i++;
	}
}

static void addr_iter_init(struct addr_iter *it, const struct range_list *l, unsigned len)
{
	*it = (struct addr_iter){.l = l, .len = len};
	addr_iter_settle(it);
}

static bool addr_iter_done(const struct addr_iter *it)
{
	return it->i >= it->l->n;
}

static void addr_iter_next(struct addr_iter *it)
{
	if (addr_increment(it->cur, it->len))
		it->i = it->l->n; /* wrapped: the top address was the last */
	else
		addr_iter_settle(it);
}

/* Moves it to the first address >= key. */
static void addr_iter_seek(struct addr_iter *it, const uint8_t *key)
{
	if (!addr_iter_done(it) && addr_order(it->cur, key, it->len) < 0) {
		memcpy(it->cur, key, it->len);
		addr_iter_settle(it);
	}
}

static int range_cmp(const struct addr_range *a, const struct addr_range *b, unsigned len)
{
	int c = addr_order(a->lo.bytes, b->lo.bytes, len);

	return c ? c : addr_order(a->hi.bytes, b->hi.bytes, len);
}

/* Writes the elements of a that b lacks: single addresses for a hash
 * set; for an interval set every range of a that b does not hold exactly
 * (a range that grew is deleted whole and added whole, so start and end
 * elements always stay paired). Both lists sorted by start, as
 * bundle_decode() and the compiler leave them. b NULL: all of a. */
static int elem_write_diff(struct elem_writer *w, const struct range_list *a, const struct range_list *b)
{
	static const struct range_list none;
	unsigned len = family_bytes(w->ps->family);
	int ret = 0;

	if (!b)
		b = &none;
	/* Most sets of a delta did not change: no walk for them. */
	if (a->n == b->n && (a->n == 0 || a->v == b->v || memcmp(a->v, b->v, a->n * sizeof(*a->v)) == 0))
		return 0;
	if (w->ps->interval) {
		size_t j = 0;

		for (size_t i = 0; ret == 0 && i < a->n; i++) {
			while (j < b->n && range_cmp(&b->v[j], &a->v[i], len) < 0)
				j++;
			if (j < b->n && range_cmp(&b->v[j], &a->v[i], len) == 0)
				continue;
			ret = elem_put_range(w, &a->v[i]);
		}
	} else {
		struct addr_iter ia, ib;

		addr_iter_init(&ia, a, len);
		addr_iter_init(&ib, b, len);
		for (; ret == 0 && !addr_iter_done(&ia); addr_iter_next(&ia)) {
			addr_iter_seek(&ib, ia.cur);
			if (!addr_iter_done(&ib) && addr_order(ib.cur, ia.cur, len) == 0)
				continue;
			ret = elem_put(w, ia.cur, 0, false, false);
		}
	}
	if (ret == 0)
		ret = elem_writer_flush(w);
	elem_writer_release(w);
	return ret;
}

/* Every element of a set created in this transaction. */
static int emit_elems(struct nft_batch *nb, uint32_t set_index)
{
	const struct plan_set *ps = &nb->plan.sets[set_index];
	struct elem_writer w;

	elem_writer_init(&w, nb, set_index, NFT_MSG_NEWSETELEM, true);
	return elem_write_diff(&w, set_ranges(ps->src, ps->family), NULL);
}

static int emit_set(struct nft_batch *nb, uint32_t set_index)
{
	const struct plan_set *ps = &nb->plan.sets[set_index];
	struct nft_obj o = {.kind = OBJ_SET, .index = set_index};
	struct nftnl_udata_buf *ud;
	struct nftnl_set *s;
	struct nlmsghdr *nlh;

	s = set_alloc(ps, true);
	ud = nftnl_udata_buf_alloc(64);
	if (!s || !ud || !nftnl_udata_put_u32(ud, NFTNL_UDATA_SET_KEYBYTEORDER, NFT_BYTEORDER_BIG_ENDIAN)) {
		nftnl_udata_buf_free(ud);
		if (s)
			nftnl_set_free(s);
		return -ENOMEM;
	}
	nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE, ps->family == AF_INET ? NFT_TYPE_IPADDR : NFT_TYPE_IP6ADDR);
	nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, family_bytes(ps->family));
	nftnl_set_set_u32(s, NFTNL_SET_FLAGS, ps->interval ? NFT_SET_INTERVAL : 0);
	nftnl_set_set_data(s, NFTNL_SET_USERDATA, nftnl_udata_buf_data(ud), nftnl_udata_buf_len(ud));
	nftnl_udata_buf_free(ud);
	nlh = batch_hdr(nb, NFT_MSG_NEWSET, NLM_F_CREATE, &o);
	if (!nlh) {
		nftnl_set_free(s);
		return -ENOMEM;
	}
	nftnl_set_nlmsg_build_payload(nlh, s);
	nftnl_set_free(s);
	nb->stats.sets++;
	return batch_next(nb);
}

/* The tag set's one element, and the NFTA_SET_ID of the set when the
 * transaction creates it (plan sets count from 1). */
static const uint8_t tag_key[4] = {0, 0, 0, 1}; /* 0x00000001 as nft lists it */
#define NFT_TAG_SET_ID UINT32_MAX

static struct nftnl_set *tag_set_alloc(bool created)
{
	struct nftnl_set *s = nftnl_set_alloc();

	if (!s)
		return NULL;
	nftnl_set_set_str(s, NFTNL_SET_TABLE, NFT_TABLE_NAME);
	nftnl_set_set_str(s, NFTNL_SET_NAME, NFT_TAG_SET);
	nftnl_set_set_u32(s, NFTNL_SET_FAMILY, NFPROTO_INET);
	if (created)
		nftnl_set_set_u32(s, NFTNL_SET_ID, NFT_TAG_SET_ID);
	return s;
}

/* The tag (nft.h): with created, the set and its element in a table this
 * transaction makes; otherwise the element of the existing set replaced
 * (a DELSETELEM without elements flushes the set). Not counted in the
 * stats, which describe the bundle's ruleset. */
static int emit_tag(struct nft_batch *nb, bool created)
{
	struct nft_obj o = {.kind = OBJ_TAG};
	char text[NFT_TAG_MAX];
	struct nftnl_set *s;
	struct nftnl_set_elem *e;
	struct nftnl_udata_buf *ud;
	struct nlmsghdr *nlh;
	int ret;

	if (!nb->has_tag)
		return 0;
	s = tag_set_alloc(created);
	if (!s)
		return -ENOMEM;
	if (created) {
		nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE, NFT_TYPE_MARK);
		nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, sizeof(tag_key));
		nlh = batch_hdr(nb, NFT_MSG_NEWSET, NLM_F_CREATE, &o);
		if (nlh)
			nftnl_set_nlmsg_build_payload(nlh, s);
	} else {
		nlh = batch_hdr(nb, NFT_MSG_DELSETELEM, 0, &o);
		if (nlh)
			nftnl_set_elems_nlmsg_build_payload(nlh, s);
	}
	nftnl_set_free(s);
	if (!nlh || (ret = batch_next(nb)) < 0)
		return -ENOMEM;

	nft_tag_format(&nb->tag, text);
	s = tag_set_alloc(created);
	e = nftnl_set_elem_alloc();
	ud = nftnl_udata_buf_alloc(NFT_USERDATA_MAXLEN);
	if (!s || !e || !ud || !nftnl_udata_put_strz(ud, NFTNL_UDATA_SET_ELEM_COMMENT, text)) {
		ret = -ENOMEM;
		goto err_free;
	}
	nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, tag_key, sizeof(tag_key));
	nftnl_set_elem_set(e, NFTNL_SET_ELEM_USERDATA, nftnl_udata_buf_data(ud), nftnl_udata_buf_len(ud));
	nftnl_set_elem_add(s, e);
	e = NULL;
	nlh = batch_hdr(nb, NFT_MSG_NEWSETELEM, NLM_F_CREATE, &o);
	if (!nlh) {
		ret = -ENOMEM;
		goto err_free;
	}
	nftnl_set_elems_nlmsg_build_payload(nlh, s);
	ret = batch_next(nb);
err_free:
	nftnl_udata_buf_free(ud);
	if (e)
		nftnl_set_elem_free(e);
	if (s)
		nftnl_set_free(s);
	return ret;
}

static int emit_chain(struct nft_batch *nb, enum direction dir)
{
	struct nft_obj o = {.kind = OBJ_CHAIN, .dir = dir};
	struct nftnl_chain *c = nftnl_chain_alloc();
	struct nlmsghdr *nlh;

	if (!c)
		return -ENOMEM;
	nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, NFT_TABLE_NAME);
	nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, chain_name(dir));
	nftnl_chain_set_u32(c, NFTNL_CHAIN_FAMILY, NFPROTO_INET);
	nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, "filter");
	nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM,
			    dir == DIR_INGRESS ? NF_INET_LOCAL_IN : NF_INET_LOCAL_OUT);
	nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, 0);
	/* Drops come from the chain's own fallback rule, which logs them. */
	nftnl_chain_set_u32(c, NFTNL_CHAIN_POLICY, NF_ACCEPT);
	nlh = batch_hdr(nb, NFT_MSG_NEWCHAIN, NLM_F_CREATE, &o);
	if (!nlh) {
		nftnl_chain_free(c);
		return -ENOMEM;
	}
	nftnl_chain_nlmsg_build_payload(nlh, c);
	nftnl_chain_free(c);
	nb->stats.chains++;
	return batch_next(nb);
}

/* Expression helpers: each returns false on ENOMEM. */
static bool add_expr(struct nftnl_rule *r, struct nftnl_expr *e)
{
	if (!e)
		return false;
	nftnl_rule_add_expr(r, e);
	return true;
}

static bool add_meta(struct nftnl_rule *r, uint32_t key, uint32_t reg)
{
	struct nftnl_expr *e = nftnl_expr_alloc("meta");

	if (e) {
		nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
		nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, reg);
	}
	return add_expr(r, e);
}

static bool add_payload(struct nftnl_rule *r, uint32_t base, uint32_t offset, uint32_t len)
{
	struct nftnl_expr *e = nftnl_expr_alloc("payload");

	if (e) {
		nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
		nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
		nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
		nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
	}
	return add_expr(r, e);
}

static bool add_cmp(struct nftnl_rule *r, uint32_t op, const void *data, uint32_t len)
{
	struct nftnl_expr *e = nftnl_expr_alloc("cmp");

	if (e) {
		nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
		nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
		nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
	}
	return add_expr(r, e);
}

static bool add_cmp_u8(struct nftnl_rule *r, uint8_t v)
{
	return add_cmp(r, NFT_CMP_EQ, &v, sizeof(v));
}

/* ct state & mask != 0 */
static bool add_ct_state(struct nftnl_rule *r, uint32_t mask)
{
	struct nftnl_expr *ct = nftnl_expr_alloc("ct");
	struct nftnl_expr *bw;
	uint32_t zero = 0;

	if (ct) {
		nftnl_expr_set_u32(ct, NFTNL_EXPR_CT_KEY, NFT_CT_STATE);
		nftnl_expr_set_u32(ct, NFTNL_EXPR_CT_DREG, NFT_REG_1);
	}
	if (!add_expr(r, ct))
		return false;
	bw = nftnl_expr_alloc("bitwise");
	if (bw) {
		nftnl_expr_set_u32(bw, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
		nftnl_expr_set_u32(bw, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
		nftnl_expr_set_u32(bw, NFTNL_EXPR_BITWISE_LEN, sizeof(uint32_t));
		nftnl_expr_set(bw, NFTNL_EXPR_BITWISE_MASK, &mask, sizeof(mask));
		nftnl_expr_set(bw, NFTNL_EXPR_BITWISE_XOR, &zero, sizeof(zero));
	}
	return add_expr(r, bw) && add_cmp(r, NFT_CMP_NEQ, &zero, sizeof(zero));
}

static bool add_lookup(struct nftnl_rule *r, const struct plan_set *ps)
{
	struct nftnl_expr *e = nftnl_expr_alloc("lookup");

	if (e) {
		nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
		nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, ps->name);
		nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SET_ID, ps->id);
	}
	return add_expr(r, e);
}

static bool add_counter(struct nftnl_rule *r)
{
	return add_expr(r, nftnl_expr_alloc("counter"));
}

static bool add_log(struct nftnl_rule *r, const char *prefix, uint16_t group)
{
	struct nftnl_expr *e = nftnl_expr_alloc("log");

	if (e) {
		nftnl_expr_set_str(e, NFTNL_EXPR_LOG_PREFIX, prefix);
		nftnl_expr_set_u16(e, NFTNL_EXPR_LOG_GROUP, group);
		nftnl_expr_set_u32(e, NFTNL_EXPR_LOG_SNAPLEN, NFT_NFLOG_SNAPLEN);
	}
	return add_expr(r, e);
}

static bool add_verdict(struct nftnl_rule *r, int verdict)
{
	struct nftnl_expr *e = nftnl_expr_alloc("immediate");

	if (e) {
		nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
		nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, (uint32_t)verdict);
	}
	return add_expr(r, e);
}

/* Transport protocol, then its destination port range or ICMP type/code,
 * as nft itself would emit them. */
static bool add_port(struct nftnl_rule *r, const struct port_match *pm)
{
	if (!add_meta(r, NFT_META_L4PROTO, NFT_REG_1) || !add_cmp_u8(r, pm->proto))
		return false;
	if (pm->proto == IPPROTO_ICMP || pm->proto == IPPROTO_ICMPV6) {
		if (pm->icmp_type >= 0 && pm->icmp_code >= 0) {
			uint8_t tc[2] = {(uint8_t)pm->icmp_type, (uint8_t)pm->icmp_code};

			return add_payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 2) &&
			       add_cmp(r, NFT_CMP_EQ, tc, sizeof(tc));
		}
		if (pm->icmp_type >= 0)
			return add_payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1) &&
			       add_cmp_u8(r, (uint8_t)pm->icmp_type);
		if (pm->icmp_code >= 0)
			return add_payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 1, 1) &&
			       add_cmp_u8(r, (uint8_t)pm->icmp_code);
		return true;
	}
	if (pm->lo == 0 && pm->hi == 65535)
		return true;
	/* Ports compare as big-endian bytes, as on the wire. */
	uint16_t lo = htons(pm->lo), hi = htons(pm->hi);

	if (!add_payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2))
		return false;
	if (pm->lo == pm->hi)
		return add_cmp(r, NFT_CMP_EQ, &lo, sizeof(lo));
	return add_cmp(r, NFT_CMP_GTE, &lo, sizeof(lo)) && add_cmp(r, NFT_CMP_LTE, &hi, sizeof(hi));
}

static struct nftnl_rule *rule_alloc(enum direction dir, const char *comment)
{
	struct nftnl_rule *r = nftnl_rule_alloc();

	if (!r)
		return NULL;
	nftnl_rule_set_str(r, NFTNL_RULE_TABLE, NFT_TABLE_NAME);
	nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain_name(dir));
	nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, NFPROTO_INET);
	if (comment) {
		struct nftnl_udata_buf *ud = nftnl_udata_buf_alloc(NFT_USERDATA_MAXLEN);

		if (!ud || !nftnl_udata_put_strz(ud, NFTNL_UDATA_RULE_COMMENT, comment)) {
			nftnl_udata_buf_free(ud);
			nftnl_rule_free(r);
			return NULL;
		}
		nftnl_rule_set_data(r, NFTNL_RULE_USERDATA, nftnl_udata_buf_data(ud),
				    nftnl_udata_buf_len(ud));
		nftnl_udata_buf_free(ud);
	}
	return r;
}

static int emit_rule_msg(struct nft_batch *nb, struct nftnl_rule *r, const struct nft_obj *o)
{
	struct nlmsghdr *nlh = batch_hdr(nb, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, o);

	if (!nlh)
		return -ENOMEM;
	nftnl_rule_nlmsg_build_payload(nlh, r);
	nb->stats.rules++;
	return batch_next(nb);
}

static int emit_fixed_rule(struct nft_batch *nb, enum direction dir, enum fixed_rule which)
{
	struct nft_obj o = {.kind = OBJ_FIXED_RULE, .dir = dir, .index = which};
	struct nftnl_rule *r = rule_alloc(dir, fixed_id[which]);
	char prefix[NFT_PREFIX_MAX];
	uint32_t lo_ifindex = 1;	  /* the loopback device is ifindex 1 in every netns */
	uint8_t nd_lo = 133, nd_hi = 136; /* router solicitation .. neighbour advert */
	bool ok;
	int ret;

	if (!r)
		return -ENOMEM;
	switch (which) {
	case FIXED_ESTABLISHED:
		ok = add_ct_state(r, NF_CT_STATE_BIT(IP_CT_ESTABLISHED) | NF_CT_STATE_BIT(IP_CT_RELATED)) &&
		     add_counter(r) && add_verdict(r, NF_ACCEPT);
		break;
	case FIXED_INVALID:
		invalid_prefix(dir, prefix);
		ok = add_ct_state(r, NF_CT_STATE_INVALID_BIT) && add_counter(r) &&
		     add_log(r, prefix, nb->nflog_group) && add_verdict(r, NF_DROP);
		break;
	case FIXED_LOOPBACK:
		ok = add_meta(r, dir == DIR_INGRESS ? NFT_META_IIF : NFT_META_OIF, NFT_REG_1) &&
		     add_cmp(r, NFT_CMP_EQ, &lo_ifindex, sizeof(lo_ifindex)) && add_counter(r) &&
		     add_verdict(r, NF_ACCEPT);
		break;
	case FIXED_ND:
	default:
		/* IPv6 only, as the reference evaluator has it. */
		ok = add_meta(r, NFT_META_NFPROTO, NFT_REG_1) && add_cmp_u8(r, NFPROTO_IPV6) &&
		     add_meta(r, NFT_META_L4PROTO, NFT_REG_1) && add_cmp_u8(r, IPPROTO_ICMPV6) &&
		     add_payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1) &&
		     add_cmp(r, NFT_CMP_GTE, &nd_lo, 1) && add_cmp(r, NFT_CMP_LTE, &nd_hi, 1) && add_counter(r) &&
		     add_verdict(r, NF_ACCEPT);
		break;
	}
	ret = ok ? emit_rule_msg(nb, r, &o) : -ENOMEM;
	nftnl_rule_free(r);
	return ret;
}

static int emit_rule(struct nft_batch *nb, uint32_t index)
{
	const struct plan_rule *pr = &nb->plan.rules[index];
	struct nft_obj o = {.kind = OBJ_RULE, .dir = pr->dir, .index = index};
	char comment[128], prefix[NFT_PREFIX_MAX];
	struct nftnl_rule *r;
	bool ok = true;
	int ret;

	rule_comment(nb->ep, pr, comment, sizeof(comment));
	r = rule_alloc(pr->dir, comment);
	if (!r)
		return -ENOMEM;
	if (pr->family) {
		/* nft adds this dependency itself; raw libnftnl must, or the
		 * address payload would be read from the wrong header. */
		ok = add_meta(r, NFT_META_NFPROTO, NFT_REG_1) &&
		     add_cmp_u8(r, pr->family == AF_INET ? NFPROTO_IPV4 : NFPROTO_IPV6);
	}
	if (ok && pr->set) {
		bool v4 = pr->family == AF_INET, src = pr->dir == DIR_INGRESS;
		uint32_t off = v4 ? (src ? 12 : 16) : (src ? 8 : 24);

		ok = add_payload(r, NFT_PAYLOAD_NETWORK_HEADER, off, v4 ? 4 : 16) && add_lookup(r, pr->set);
	}
	if (ok && pr->port)
		ok = add_port(r, pr->port);
	if (ok)
		ok = add_counter(r);
	if (ok && pr->verdict != VERDICT_ACCEPT) {
		rule_prefix(pr, prefix);
		ok = add_log(r, prefix, nb->nflog_group);
	}
	if (ok)
		ok = add_verdict(r, pr->verdict == VERDICT_DROP ? NF_DROP : NF_ACCEPT);
	ret = ok ? emit_rule_msg(nb, r, &o) : -ENOMEM;
	nftnl_rule_free(r);
	return ret;
}

/* BEGIN, into a fresh batch. */
static int batch_open(struct nft_batch *nb)
{
	struct nft_obj o = {.kind = OBJ_BATCH};
	uint32_t seq;
	int ret;

	nb->batch = nftnl_batch_alloc(NFT_BATCH_PAGE, NFT_BATCH_OVERRUN);
	if (!nb->batch)
		return -ENOMEM;
	/* Sequence numbers only have to be unique on this socket while the
	 * batch is in flight; the clock keeps them apart between runs. */
	nb->seq_base = (uint32_t)time(NULL) << 8;

	ret = batch_obj(nb, &o, &seq);
	if (ret < 0)
		return ret;
	/* The generation the transaction expects, filled in by the send:
	 * 0 asks for none. */
	struct nlmsghdr *nlh = nftnl_batch_begin(batch_buffer(nb), seq);
	struct nlattr *genid = mnl_nlmsg_get_payload_tail(nlh);

	mnl_attr_put_u32(nlh, NFNL_BATCH_GENID, 0);
	nb->genid = mnl_attr_get_payload(genid);
	return batch_next(nb);
}

/* END, and the batch's size. */
static int batch_close(struct nft_batch *nb)
{
	struct nft_obj o = {.kind = OBJ_BATCH};
	struct iovec *iov;
	uint32_t seq;
	int ret, n_iov;

	ret = batch_obj(nb, &o, &seq);
	if (ret < 0)
		return ret;
	nftnl_batch_end(batch_buffer(nb), seq);
	ret = batch_next(nb);
	if (ret < 0)
		return ret;
	n_iov = nftnl_batch_iovec_len(nb->batch);
	iov = calloc((size_t)n_iov, sizeof(*iov));
	if (!iov)
		return -ENOMEM;
	nftnl_batch_iovec(nb->batch, iov, (uint32_t)n_iov);
	for (int i = 0; i < n_iov; i++)
		nb->stats.bytes += iov[i].iov_len;
	free(iov);
	return 0;
}

static int batch_emit(struct nft_batch *nb)
{
	int ret = batch_open(nb);

	/* Create-if-missing then delete then create: replaces the table in
	 * one transaction whether or not it existed, as nft does. */
	if (ret == 0)
		ret = emit_table(nb, NFT_MSG_NEWTABLE, NLM_F_CREATE);
	if (ret == 0)
		ret = emit_table(nb, NFT_MSG_DELTABLE, 0);
	if (ret == 0)
		ret = emit_table(nb, NFT_MSG_NEWTABLE, NLM_F_CREATE);
	if (ret == 0)
		ret = emit_tag(nb, true);
	for (uint32_t i = 0; ret == 0 && i < nb->plan.n_sets; i++) {
		ret = emit_set(nb, i);
		if (ret == 0)
			ret = emit_elems(nb, i);
	}
	for (int d = 0; ret == 0 && d < DIR_COUNT; d++)
		ret = emit_chain(nb, d);
	for (int d = 0; ret == 0 && d < DIR_COUNT; d++) {
		for (int f = 0; ret == 0 && f < FIXED_COUNT; f++)
			ret = emit_fixed_rule(nb, d, f);
		for (size_t i = nb->plan.first_rule[d]; ret == 0 && i < nb->plan.first_rule[d + 1]; i++)
			ret = emit_rule(nb, (uint32_t)i);
	}
	if (ret == 0)
		ret = batch_close(nb);
	return ret;
}

/* Element deltas of plans of the same shape (plan_same_shape()): old's
 * sets and nb->plan's match index by index. Every deletion before any
 * addition. */
static int batch_emit_delta(struct nft_batch *nb, const struct plan *old)
{
	int ret = batch_open(nb);

	if (ret == 0)
		ret = emit_tag(nb, false);
	for (int pass = 0; pass < 2; pass++) {
		bool add = pass == 1;

		for (uint32_t i = 0; ret == 0 && i < nb->plan.n_sets; i++) {
			const struct plan_set *ps = &nb->plan.sets[i];
			const struct range_list *now = set_ranges(ps->src, ps->family);
			const struct range_list *was = set_ranges(old->sets[i].src, ps->family);
			struct elem_writer w;

			elem_writer_init(&w, nb, i, add ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM, false);
			ret = add ? elem_write_diff(&w, now, was) : elem_write_diff(&w, was, now);
		}
	}
	if (ret == 0)
		ret = batch_close(nb);
	return ret;
}

static bool port_equal(const struct port_match *a, const struct port_match *b)
{
	if (!a || !b)
		return a == b;
	return a->proto == b->proto && a->lo == b->lo && a->hi == b->hi && a->icmp_type == b->icmp_type &&
	       a->icmp_code == b->icmp_code;
}

/* Whether two plans make the same sets and the same rules, so that only
 * elements can differ. Compares what each nft rule is made of: family,
 * set name, port match, verdict, log prefix (direction and position) and
 * comment (bundle rule id or fallback reason). */
static bool plan_same_shape(const struct plan *a, const struct bundle_endpoint *a_ep, const struct plan *b,
			    const struct bundle_endpoint *b_ep)
{
	if (a->n_sets != b->n_sets || a->n_rules != b->n_rules)
		return false;
	for (size_t i = 0; i < a->n_sets; i++) {
		const struct plan_set *x = &a->sets[i], *y = &b->sets[i];

		if (strcmp(x->name, y->name) != 0 || x->family != y->family || x->interval != y->interval)
			return false;
	}
	for (int d = 0; d <= DIR_COUNT; d++) {
		if (a->first_rule[d] != b->first_rule[d])
			return false;
	}
	for (size_t i = 0; i < a->n_rules; i++) {
		const struct plan_rule *x = &a->rules[i], *y = &b->rules[i];
		char cx[128], cy[128];

		if (x->dir != y->dir || x->pos != y->pos || x->family != y->family ||
		    x->verdict != y->verdict || !port_equal(x->port, y->port) || !x->set != !y->set)
			return false;
		if (x->set && strcmp(x->set->name, y->set->name) != 0)
			return false;
		rule_comment(a_ep, x, cx, sizeof(cx));
		rule_comment(b_ep, y, cy, sizeof(cy));
		if (strcmp(cx, cy) != 0)
			return false;
	}
	return true;
}

/* Never keeps half a batch around to be sent. */
static void batch_fail(struct nft_batch *nb, int ret)
{
	char saved[sizeof(nb->error)];

	snprintf(saved, sizeof(saved), "building the batch: %s", strerror(-ret));
	batch_reset(nb);
	memcpy(nb->error, saved, sizeof(saved));
}

int nft_batch_build(struct nft_batch *nb, const struct bundle *b, const struct bundle_endpoint *ep)
{
	int ret;

	batch_reset(nb);
	nb->ep = ep;
	ret = plan_build(&nb->plan, b, ep, nb->error, sizeof(nb->error));
	if (ret < 0)
		return ret;
	ret = batch_emit(nb);
	if (ret < 0)
		batch_fail(nb, ret);
	return ret;
}

int nft_batch_build_update(struct nft_batch *nb, const struct bundle *old_b,
			   const struct bundle_endpoint *old_ep, const struct bundle *b,
			   const struct bundle_endpoint *ep, bool *full)
{
	char old_err[256];
	struct plan old;
	bool old_ok, same;
	int ret;

	batch_reset(nb);
	nb->ep = ep;
	ret = plan_build(&nb->plan, b, ep, nb->error, sizeof(nb->error));
	if (ret < 0)
		return ret;
	ret = plan_build(&old, old_b, old_ep, old_err, sizeof(old_err));
	if (ret == -ENOMEM) {
		batch_fail(nb, ret);
		return ret;
	}
	old_ok = ret == 0;
	same = old_ok && plan_same_shape(&old, old_ep, &nb->plan, ep);
	ret = same ? batch_emit_delta(nb, &old) : batch_emit(nb);
	if (old_ok)
		plan_release(&old);
	if (ret < 0) {
		batch_fail(nb, ret);
		return ret;
	}
	*full = !same;
	return 0;
}

/* Names the object behind sequence number seq, for error messages. */
static void describe_obj(const struct nft_batch *nb, uint32_t seq, char *buf, size_t size)
{
	const struct nft_obj *o;
	uint32_t i = seq - nb->seq_base;

	if (i >= nb->n_objs) {
		snprintf(buf, size, "message with unknown sequence %" PRIu32, seq);
		return;
	}
	o = &nb->objs[i];
	switch (o->kind) {
	case OBJ_BATCH:
		snprintf(buf, size, "transaction");
		break;
	case OBJ_TABLE:
		snprintf(buf, size, "%s table inet %s", o->nlmsg_type == NFT_MSG_DELTABLE ? "delete" : "add",
			 NFT_TABLE_NAME);
		break;
	case OBJ_SET:
		snprintf(buf, size, "set %s (bundle set %s)", nb->plan.sets[o->index].name,
			 nb->plan.sets[o->index].src->id);
		break;
	case OBJ_ELEMS:
		snprintf(buf, size, "%s elements from #%" PRIu32 " of set %s (bundle set %s)",
			 o->nlmsg_type == NFT_MSG_DELSETELEM ? "delete" : "add", o->first,
			 nb->plan.sets[o->index].name, nb->plan.sets[o->index].src->id);
		break;
	case OBJ_CHAIN:
		snprintf(buf, size, "chain %s", chain_name(o->dir));
		break;
	case OBJ_FIXED_RULE:
		snprintf(buf, size, "rule %s[%" PRIu32 "] (%s: %s)", chain_name(o->dir), o->index, fixed_id[o->index],
			 fixed_match[o->dir][o->index]);
		break;
	case OBJ_TAG:
		snprintf(buf, size, "%s of set %s (the bundle tag)",
			 o->nlmsg_type == NFT_MSG_NEWSET       ? "creation"
			 : o->nlmsg_type == NFT_MSG_DELSETELEM ? "flush"
							       : "element",
			 NFT_TAG_SET);
		break;
	case OBJ_RULE: {
		const struct plan_rule *pr = &nb->plan.rules[o->index];
		size_t nth = FIXED_COUNT + o->index - nb->plan.first_rule[pr->dir];

		if (pr->src)
			snprintf(buf, size, "rule %s[%zu] (bundle rule %s)", chain_name(pr->dir), nth,
				 pr->src->id);
		else
			snprintf(buf, size, "rule %s[%zu] (fallback %s)", chain_name(pr->dir), nth,
				 nb->ep && nb->ep->chains[pr->dir].fallback_reason
				     ? nb->ep->chains[pr->dir].fallback_reason
				     : verdict_name(pr->verdict));
		break;
	}
	}
}

/* Large batches need large socket buffers: the whole batch goes in one
 * sendmsg, and every object's ACK is queued before we read any. Root can
 * exceed the sysctl limits with the FORCE variants. */
static void socket_size(int fd, int opt, int force_opt, size_t want)
{
	int cur = 0;
	socklen_t len = sizeof(cur);

	if (want > INT32_MAX / 2)
		want = INT32_MAX / 2;
	if (getsockopt(fd, SOL_SOCKET, opt, &cur, &len) == 0 && (size_t)cur >= want)
		return;
	int v = (int)want;
	if (setsockopt(fd, SOL_SOCKET, force_opt, &v, sizeof(v)) < 0)
		(void)setsockopt(fd, SOL_SOCKET, opt, &v, sizeof(v));
}

/* The kernel's extended-ACK message, when it sent one. */
static const char *ack_message(const struct nlmsghdr *nlh, const struct nlmsgerr *err)
{
	const struct nlattr *attr;
	const char *start, *end = (const char *)nlh + nlh->nlmsg_len;
	size_t skip = sizeof(*err);

	if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS))
		return NULL;
	if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
		skip += err->msg.nlmsg_len >= sizeof(struct nlmsghdr)
			    ? err->msg.nlmsg_len - sizeof(struct nlmsghdr)
			    : 0;
	start = (const char *)err + skip;
	if (start >= end)
		return NULL;
	for (attr = (const struct nlattr *)start; mnl_attr_ok(attr, (int)(end - (const char *)attr));
	     attr = mnl_attr_next(attr)) {
		if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_MSG &&
		    mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0)
			return mnl_attr_get_str(attr);
	}
	return NULL;
}

int nft_batch_send(struct nft_batch *nb, struct mnl_socket *nl)
{
	return nft_batch_send_at(nb, nl, 0);
}

int nft_batch_send_at(struct nft_batch *nb, struct mnl_socket *nl, uint32_t genid)
{
	struct sockaddr_nl snl = {.nl_family = AF_NETLINK};
	int fd = mnl_socket_get_fd(nl), one = 1, n_iov, first_err = 0;
	uint32_t portid = mnl_socket_get_portid(nl);
	size_t acked = 0, errors = 0;
	char first_obj[256] = "", first_msg[256] = "";
	struct iovec *iov;
	struct msghdr msg;
	bool lost = false;
	ssize_t sent;
	char *buf;

	nb->error[0] = '\0';
	if (!nb->batch) {
		snprintf(nb->error, sizeof(nb->error), "no batch built");
		return -EINVAL;
	}
	/* Short ACKs (no copy of our message), with the kernel's reason. */
	(void)setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
	(void)setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
	socket_size(fd, SO_SNDBUF, SO_SNDBUFFORCE, nb->stats.bytes + 4096);
	socket_size(fd, SO_RCVBUF, SO_RCVBUFFORCE, nb->n_acks * NFT_ACK_TRUESIZE + 256 * 1024);

	n_iov = nftnl_batch_iovec_len(nb->batch);
	iov = calloc((size_t)n_iov, sizeof(*iov));
	buf = malloc(NFT_RECV_BUF);
	if (!iov || !buf) {
		free(iov);
		free(buf);
		snprintf(nb->error, sizeof(nb->error), "out of memory");
		return -ENOMEM;
	}
	nftnl_batch_iovec(nb->batch, iov, (uint32_t)n_iov);
	uint32_t be = htonl(genid);
	memcpy(nb->genid, &be, sizeof(be));
	msg = (struct msghdr){
	    .msg_name = &snl,
	    .msg_namelen = sizeof(snl),
	    .msg_iov = iov,
	    .msg_iovlen = (size_t)n_iov,
	};
	sent = sendmsg(fd, &msg, 0);
	free(iov);
	if (sent < 0) {
		int e = errno;

		free(buf);
		snprintf(nb->error, sizeof(nb->error), "sending the batch (%zu bytes): %s", nb->stats.bytes,
			 strerror(e));
		return -e;
	}
	if ((size_t)sent != nb->stats.bytes) {
		free(buf);
		snprintf(nb->error, sizeof(nb->error), "batch sent short (%zd of %zu bytes)", sent,
			 nb->stats.bytes);
		return -EIO;
	}

	/* nfnetlink runs the whole transaction inside sendmsg(), so every
	 * ACK is already queued: read until the queue is empty. */
	for (;;) {
		ssize_t len = recv(fd, buf, NFT_RECV_BUF, MSG_DONTWAIT);
		const struct nlmsghdr *nlh;
		int left;

		if (len < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ENOBUFS) {
				lost = true;
				continue;
			}
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				first_err = first_err ? first_err : -errno;
				snprintf(first_msg, sizeof(first_msg), "reading acknowledgements: %s",
					 strerror(errno));
			}
			break;
		}
		left = (int)len;
		for (nlh = (const struct nlmsghdr *)buf; mnl_nlmsg_ok(nlh, left);
		     nlh = mnl_nlmsg_next(nlh, &left)) {
			const struct nlmsgerr *err;

			if (nlh->nlmsg_pid != portid || nlh->nlmsg_type != NLMSG_ERROR)
				continue;
			if (nlh->nlmsg_len < NLMSG_HDRLEN + sizeof(*err))
				continue;
			err = mnl_nlmsg_get_payload(nlh);
			if (err->error == 0) {
				acked++;
				continue;
			}
			/* The first error is the cause; later ones are often
			 * its consequences (a rule naming a failed set). */
			if (errors++ == 0) {
				const char *m = ack_message(nlh, err);

				first_err = err->error < 0 ? err->error : -EPROTO;
				describe_obj(nb, nlh->nlmsg_seq, first_obj, sizeof(first_obj));
				snprintf(first_msg, sizeof(first_msg), "%s%s%s", strerror(-first_err),
					 m ? ": kernel: " : "", m ? m : "");
			}
		}
	}
	free(buf);

	if (errors == 1 && first_err == -ERESTART) {
		/* nfnetlink refused the whole batch before looking at it. */
		snprintf(nb->error, sizeof(nb->error),
			 "the ruleset changed since generation %" PRIu32
			 " (another process committed); nothing applied",
			 genid);
		return first_err;
	}
	if (errors) {
		if (errors > 1)
			snprintf(nb->error, sizeof(nb->error), "%s: %s (and %zu more errors)", first_obj,
				 first_msg, errors - 1);
		else
			snprintf(nb->error, sizeof(nb->error), "%s: %s", first_obj, first_msg);
		return first_err;
	}
	if (first_err) {
		snprintf(nb->error, sizeof(nb->error), "%s", first_msg);
		return first_err;
	}
	if (lost || acked != nb->n_acks) {
		/* Without every ACK we cannot know whether the kernel
		 * committed; the caller must treat the table as unknown. */
		snprintf(nb->error, sizeof(nb->error),
			 "%zu of %zu acknowledgements received%s; outcome unknown", acked, nb->n_acks,
			 lost ? " (receive buffer overrun)" : "");
		return lost ? -ENOBUFS : -EPROTO;
	}
	return 0;
}

/* ---- text emitter ----------------------------------------------------- */

static void text_addr(FILE *f, int family, const uint8_t *bytes)
{
	char buf[INET6_ADDRSTRLEN];

	inet_ntop(family, bytes, buf, sizeof(buf));
	fputs(buf, f);
}

/* Prefix length when r is exactly one CIDR block, else -1. */
static int range_prefix_len(const struct addr_range *r, unsigned len)
{
	unsigned bits = len * 8, p = 0;

	while (p < bits) {
		unsigned byte = p / 8, bit = 7 - p % 8;

		if (((r->lo.bytes[byte] >> bit) & 1) != ((r->hi.bytes[byte] >> bit) & 1))
			break;
		p++;
	}
	for (unsigned q = p; q < bits; q++) {
		unsigned byte = q / 8, bit = 7 - q % 8;

		if (((r->lo.bytes[byte] >> bit) & 1) != 0 || ((r->hi.bytes[byte] >> bit) & 1) != 1)
			return -1;
	}
	return (int)p;
}

/* Element separator: four to a line, as nft list prints them. */
static void text_sep(FILE *f, size_t n)
{
	if (n == 0)
		fputc(' ', f);
	else if (n % 4)
		fputs(", ", f);
	else
		fputs(",\n\t\t\t     ", f);
}

static void text_set(FILE *f, const struct plan_set *ps)
{
	const struct range_list *l = set_ranges(ps->src, ps->family);
	unsigned len = family_bytes(ps->family);
	size_t n = 0;

	fprintf(f, "\tset %s {\n\t\ttype %s\n", ps->name, ps->family == AF_INET ? "ipv4_addr" : "ipv6_addr");
	if (ps->interval)
		fputs("\t\tflags interval\n", f);
	if (l->n == 0) {
		fputs("\t}\n", f); /* nft rejects an empty element list */
		return;
	}
	fputs("\t\telements = {", f);
	for (size_t i = 0; i < l->n; i++) {
		const struct addr_range *r = &l->v[i];

		if (ps->interval) {
			int plen = range_prefix_len(r, len);

			text_sep(f, n++);
			text_addr(f, ps->family, r->lo.bytes);
			if (plen >= 0 && plen < (int)len * 8) {
				fprintf(f, "/%d", plen);
			} else if (plen < 0) {
				fputc('-', f);
				text_addr(f, ps->family, r->hi.bytes);
			}
			continue;
		}
		uint8_t key[16];
		bool last = false;

		memcpy(key, r->lo.bytes, len);
		while (!last) {
			text_sep(f, n++);
			text_addr(f, ps->family, key);
			last = memcmp(key, r->hi.bytes, len) == 0 || addr_increment(key, len);
		}
	}
	fputs(" }\n\t}\n", f);
}

static const char *l4_name(uint8_t proto)
{
	switch (proto) {
	case IPPROTO_TCP:
		return "tcp";
	case IPPROTO_UDP:
		return "udp";
	case IPPROTO_SCTP:
		return "sctp";
	case IPPROTO_ICMP:
		return "icmp";
	default:
		return "ipv6-icmp";
	}
}

static void text_rule(FILE *f, const struct bundle_endpoint *ep, const struct plan_rule *pr, uint16_t group)
{
	char comment[128], prefix[NFT_PREFIX_MAX];

	fputs("\t\t", f);
	if (pr->family)
		fprintf(f, "meta nfproto %s ", pr->family == AF_INET ? "ipv4" : "ipv6");
	if (pr->set)
		fprintf(f, "%s %s @%s ", pr->family == AF_INET ? "ip" : "ip6",
			pr->dir == DIR_INGRESS ? "saddr" : "daddr", pr->set->name);
	if (pr->port) {
		const struct port_match *pm = pr->port;

		fprintf(f, "meta l4proto %s ", l4_name(pm->proto));
		if (pm->proto == IPPROTO_ICMP || pm->proto == IPPROTO_ICMPV6) {
			const char *kw = pm->proto == IPPROTO_ICMP ? "icmp" : "icmpv6";

			if (pm->icmp_type >= 0)
				fprintf(f, "%s type %d ", kw, pm->icmp_type);
			if (pm->icmp_code >= 0)
				fprintf(f, "%s code %d ", kw, pm->icmp_code);
		} else if (pm->lo == pm->hi) {
			fprintf(f, "th dport %u ", pm->lo);
		} else if (!(pm->lo == 0 && pm->hi == 65535)) {
			fprintf(f, "th dport %u-%u ", pm->lo, pm->hi);
		}
	}
	fputs("counter ", f);
	if (pr->verdict != VERDICT_ACCEPT) {
		rule_prefix(pr, prefix);
		fprintf(f, "log prefix \"%s\" group %u snaplen %u ", prefix, group, NFT_NFLOG_SNAPLEN);
	}
	rule_comment(ep, pr, comment, sizeof(comment));
	fprintf(f, "%s comment \"%s\"\n", pr->verdict == VERDICT_DROP ? "drop" : "accept", comment);
}

int nft_render_text(const struct bundle *b, const struct bundle_endpoint *ep, uint16_t nflog_group,
		    char **out)
{
	char err[256];
	struct plan p;
	size_t size;
	char *text;
	FILE *f;
	int ret;

	ret = plan_build(&p, b, ep, err, sizeof(err));
	if (ret < 0)
		return ret;
	f = open_memstream(&text, &size);
	if (!f) {
		plan_release(&p);
		return -ENOMEM;
	}
	/* The same replace-in-one-transaction idiom as the batch. */
	fprintf(f, "table inet %s\ndelete table inet %s\n", NFT_TABLE_NAME, NFT_TABLE_NAME);
	fprintf(f, "table inet %s {\n", NFT_TABLE_NAME);
	for (size_t i = 0; i < p.n_sets; i++) {
		text_set(f, &p.sets[i]);
		fputc('\n', f);
	}
	for (int d = 0; d < DIR_COUNT; d++) {
		fprintf(f, "\tchain %s {\n\t\ttype filter hook %s priority 0; policy accept;\n",
			chain_name(d), d == DIR_INGRESS ? "input" : "output");
		for (int i = 0; i < FIXED_COUNT; i++) {
			fprintf(f, "\t\t%s counter ", fixed_match[d][i]);
			if (i == FIXED_INVALID) {
				char prefix[NFT_PREFIX_MAX];
				invalid_prefix(d, prefix);
				fprintf(f, "log prefix \"%s\" group %u snaplen %u drop", prefix, nflog_group,
					NFT_NFLOG_SNAPLEN);
			} else {
				fputs("accept", f);
			}
			fprintf(f, " comment \"%s\"\n", fixed_id[i]);
		}
		for (size_t i = p.first_rule[d]; i < p.first_rule[d + 1]; i++)
			text_rule(f, ep, &p.rules[i], nflog_group);
		fprintf(f, "\t}\n%s", d + 1 < DIR_COUNT ? "\n" : "");
	}
	fputs("}\n", f);
	ret = ferror(f) ? -ENOMEM : 0;
	if (fclose(f) != 0)
		ret = -ENOMEM;
	plan_release(&p);
	if (ret < 0) {
		free(text);
		return ret;
	}
	*out = text;
	return 0;
}

/* ---- rule counters ---------------------------------------------------- */

struct counter_dump {
	nft_counter_fn fn;
	void *arg;
};

/* The comment (of udata type want) in a rule's or element's userdata
 * (type-length-value, one byte each), bounds-checked here: libnftnl's
 * parser trusts the lengths. */
static bool udata_comment(const uint8_t *p, uint32_t len, uint8_t want, char *buf, size_t size)
{
	for (uint32_t off = 0; off + 2 <= len;) {
		uint8_t type = p[off], n = p[off + 1];

		if (off + 2u + n > len)
			return false;
		if (type == want) {
			if (n == 0 || n > size || p[off + 2 + n - 1] != '\0')
				return false;
			memcpy(buf, p + off + 2, n);
			return true;
		}
		off += 2u + n;
	}
	return false;
}

static int counter_rule_cb(const struct nlmsghdr *nlh, void *data)
{
	struct counter_dump *d = data;
	struct nftnl_rule *r = nftnl_rule_alloc();
	struct nft_rule_counter c = {0};
	char comment[256];
	bool counted = false;

	if (!r)
		return MNL_CB_ERROR;
	if (nftnl_rule_nlmsg_parse(nlh, r) < 0 || !nftnl_rule_is_set(r, NFTNL_RULE_CHAIN) ||
	    !nftnl_rule_is_set(r, NFTNL_RULE_HANDLE))
		goto out;
	const char *chain = nftnl_rule_get_str(r, NFTNL_RULE_CHAIN);
	if (strcmp(chain, NFT_CHAIN_INGRESS) == 0)
		c.dir = DIR_INGRESS;
	else if (strcmp(chain, NFT_CHAIN_EGRESS) == 0)
		c.dir = DIR_EGRESS;
	else
		goto out;
	c.handle = nftnl_rule_get_u64(r, NFTNL_RULE_HANDLE);
	if (nftnl_rule_is_set(r, NFTNL_RULE_USERDATA)) {
		uint32_t len = 0;
		const void *ud = nftnl_rule_get_data(r, NFTNL_RULE_USERDATA, &len);

		if (ud && udata_comment(ud, len, NFTNL_UDATA_RULE_COMMENT, comment, sizeof(comment)))
			c.comment = comment;
	}
	struct nftnl_expr_iter *it = nftnl_expr_iter_create(r);
	for (struct nftnl_expr *e = it ? nftnl_expr_iter_next(it) : NULL; e; e = nftnl_expr_iter_next(it)) {
		const char *name = nftnl_expr_get_str(e, NFTNL_EXPR_NAME);

		if (!name || strcmp(name, "counter") != 0)
			continue;
		c.packets += nftnl_expr_get_u64(e, NFTNL_EXPR_CTR_PACKETS);
		c.bytes += nftnl_expr_get_u64(e, NFTNL_EXPR_CTR_BYTES);
		counted = true;
	}
	nftnl_expr_iter_destroy(it);
	if (counted)
		d->fn(d->arg, &c);
out:
	nftnl_rule_free(r);
	return MNL_CB_OK;
}

/* A fresh sequence number for a request (unique on its socket). */
static uint32_t next_seq(void)
{
	static uint32_t seq;

	if (!seq)
		seq = (uint32_t)time(NULL) ^ 0x5eed0000u;
	return ++seq;
}

/* Sends the request nlh on nl and passes every answer to cb: a dump's
 * until NLMSG_DONE, any other request's first. 0, or a negative errno:
 * the kernel's (-ENOENT: no such table or set), -EINTR when a dump was
 * interrupted by a commit (NLM_F_DUMP_INTR), -ENOMEM when cb failed. */
static int nl_ask(struct mnl_socket *nl, const struct nlmsghdr *nlh, mnl_cb_t cb, void *arg)
{
	/* A dump message is at most a page or two: room for several. */
	char buf[32768] __attribute__((aligned(NLMSG_ALIGNTO)));
	uint32_t portid = mnl_socket_get_portid(nl), seq = nlh->nlmsg_seq;
	bool dump = (nlh->nlmsg_flags & NLM_F_DUMP) == NLM_F_DUMP;
	int fd = mnl_socket_get_fd(nl);

	/* Whatever an earlier request left unread (acknowledgements of a
	 * batch that failed part way) would fail the sequence check below. */
	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) >= 0 || errno == EINTR)
		;
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	for (;;) {
		ssize_t len = mnl_socket_recvfrom(nl, buf, sizeof(buf));
		int ret;

		if (len < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		/* Sequence and port id checked; NLMSG_DONE ends a dump. */
		errno = 0;
		ret = mnl_cb_run(buf, (size_t)len, seq, portid, cb, arg);
		if (ret == MNL_CB_STOP || (ret >= 0 && !dump))
			return 0;
		if (ret < 0)
			return -(errno ? errno : EPROTO);
	}
}

int nft_read_counters(struct mnl_socket *nl, nft_counter_fn fn, void *arg)
{
	char buf[8192] __attribute__((aligned(NLMSG_ALIGNTO))); /* one request */
	struct counter_dump d = {.fn = fn, .arg = arg};
	struct nftnl_rule *r = nftnl_rule_alloc();
	struct nlmsghdr *nlh;
	int ret;

	if (!r)
		return -ENOMEM;
	nlh = nftnl_rule_nlmsg_build_hdr(buf, NFT_MSG_GETRULE, NFPROTO_INET, NLM_F_DUMP, next_seq());
	nftnl_rule_set_str(r, NFTNL_RULE_TABLE, NFT_TABLE_NAME);
	nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, NFPROTO_INET);
	nftnl_rule_nlmsg_build_payload(nlh, r);
	nftnl_rule_free(r);
	ret = nl_ask(nl, nlh, counter_rule_cb, &d);
	return ret == -ENOENT ? 0 : ret; /* no table: no rules */
}

/* ---- generation id ---------------------------------------------------- */

static int gen_cb(const struct nlmsghdr *nlh, void *data)
{
	const struct nlattr *attr;

	if (NFNL_MSG_TYPE(nlh->nlmsg_type) != NFT_MSG_NEWGEN)
		return MNL_CB_OK;
	mnl_attr_for_each(attr, nlh, sizeof(struct nfgenmsg))
	{
		if (mnl_attr_get_type(attr) == NFTA_GEN_ID && mnl_attr_validate(attr, MNL_TYPE_U32) == 0) {
			*(uint32_t *)data = ntohl(mnl_attr_get_u32(attr));
			return MNL_CB_OK;
		}
	}
	return MNL_CB_OK;
}

int nft_genid(struct mnl_socket *nl, uint32_t *out)
{
	char buf[8192] __attribute__((aligned(NLMSG_ALIGNTO))); /* one request */
	struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETGEN, AF_UNSPEC, 0, next_seq());
	uint32_t id = 0;
	int ret = nl_ask(nl, nlh, gen_cb, &id);

	if (ret < 0)
		return ret;
	if (!id) /* nf_tables never uses 0 */
		return -EPROTO;
	*out = id;
	return 0;
}

/* ---- the bundle tag --------------------------------------------------- */

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

void nft_batch_set_tag(struct nft_batch *nb, const struct nft_tag *t)
{
	nb->has_tag = t != NULL;
	if (t)
		nb->tag = *t;
}

struct tag_read {
	unsigned n; /* elements seen */
	int ret;
	struct nft_tag tag;
};

static int tag_elem_cb(const struct nlmsghdr *nlh, void *data)
{
	struct tag_read *tr = data;
	struct nftnl_set *s = nftnl_set_alloc();
	struct nftnl_set_elems_iter *it;
	struct nftnl_set_elem *e;

	if (!s)
		return MNL_CB_ERROR;
	if (nftnl_set_elems_nlmsg_parse(nlh, s) < 0) {
		tr->ret = -EINVAL;
		goto out;
	}
	it = nftnl_set_elems_iter_create(s);
	for (e = it ? nftnl_set_elems_iter_next(it) : NULL; e; e = nftnl_set_elems_iter_next(it)) {
		uint32_t len = 0;
		const void *ud = nftnl_set_elem_get(e, NFTNL_SET_ELEM_USERDATA, &len);
		char text[NFT_TAG_MAX];

		if (tr->n++ || !ud ||
		    !udata_comment(ud, len, NFTNL_UDATA_SET_ELEM_COMMENT, text, sizeof(text)) ||
		    nft_tag_parse(text, &tr->tag) < 0)
			tr->ret = -EINVAL; /* one element, ours, or it is not a tag */
	}
	nftnl_set_elems_iter_destroy(it);
out:
	nftnl_set_free(s);
	return MNL_CB_OK;
}

int nft_tag_read(struct mnl_socket *nl, struct nft_tag *out)
{
	char buf[8192] __attribute__((aligned(NLMSG_ALIGNTO))); /* one request */
	struct nftnl_set *s = tag_set_alloc(false);
	struct tag_read tr = {0};
	struct nlmsghdr *nlh;
	int ret;

	if (!s)
		return -ENOMEM;
	nlh = nftnl_set_nlmsg_build_hdr(buf, NFT_MSG_GETSETELEM, NFPROTO_INET, NLM_F_DUMP, next_seq());
	nftnl_set_elems_nlmsg_build_payload(nlh, s);
	nftnl_set_free(s);
	ret = nl_ask(nl, nlh, tag_elem_cb, &tr);
	if (ret < 0)
		return ret;
	if (tr.ret < 0)
		return tr.ret;
	if (!tr.n)
		return -ENOENT;
	*out = tr.tag;
	return 0;
}

/* ---- verification ------------------------------------------------------
 * A table is compared with the batch that would build it by reducing both
 * to the same records, one per object, each the text libnftnl parses from
 * the netlink message: what nf_tables dumps and what the batch sends carry
 * the same attributes, apart from what the kernel adds (handles, use
 * counts, counter values), which the records leave out. Records are not
 * kept: rules go into a digest in order, everything else into an
 * order-free sum of digests, keyed with a secret drawn once per process so
 * nobody in the namespace can make a different table add up the same. */

struct image {
	struct sha256 rules;	    /* in chain and rule order */
	uint64_t objs[2], elems[2]; /* sums: table and chains and sets; elements */
	size_t n_rules, n_objs, n_elems;
	bool failed; /* out of memory */
};

static uint8_t image_key[16];

static void image_init(struct image *im)
{
	static bool keyed;

	if (!keyed) {
		FILE *f = fopen("/dev/urandom", "rb");
		size_t n = f ? fread(image_key, 1, sizeof(image_key), f) : 0;

		if (f)
			fclose(f);
		if (n != sizeof(image_key)) { /* no urandom: weaker, still changes per run */
			uint64_t t = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);

			memcpy(image_key, &t, sizeof(t));
		}
		keyed = true;
	}
	memset(im, 0, sizeof(*im));
	sha256_init(&im->rules);
	sha256_update(&im->rules, image_key, sizeof(image_key));
}

static void image_sum(uint64_t sum[2], const char *rec, size_t len)
{
	uint8_t d[SHA256_DIGEST_LEN];
	struct sha256 h;
	uint64_t v[2];

	sha256_init(&h);
	sha256_update(&h, image_key, sizeof(image_key));
	sha256_update(&h, rec, len);
	sha256_final(&h, d);
	memcpy(v, d, sizeof(v));
	sum[0] += v[0];
	sum[1] += v[1];
}

/* A record under construction; failed: out of memory. */
struct rec {
	char *buf;
	size_t len, cap;
	bool failed;
};

static void rec_add(struct rec *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rec_add(struct rec *r, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (r->failed)
		return;
	for (;;) {
		size_t room = r->cap - r->len;

		va_start(ap, fmt);
		n = vsnprintf(r->buf + r->len, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			r->failed = true;
			return;
		}
		if ((size_t)n < room) {
			r->len += (size_t)n;
			return;
		}
		size_t cap = 2 * r->cap + (size_t)n + 1;
		char *b = realloc(r->buf, cap);

		if (!b) {
			r->failed = true;
			return;
		}
		r->buf = b;
		r->cap = cap;
	}
}

static void rec_hex(struct rec *r, const char *what, const void *data, uint32_t len)
{
	const uint8_t *p = data;

	rec_add(r, " %s=", what);
	for (uint32_t i = 0; p && i < len; i++)
		rec_add(r, "%02x", p[i]);
}

/* Records take the attributes the agent sets or the kernel could change
 * under us; a missing one reads as 0 or "-". */
static void image_chain(struct image *im, struct rec *r, const struct nftnl_chain *c)
{
	const char *type = nftnl_chain_get_str(c, NFTNL_CHAIN_TYPE);

	r->len = 0;
	rec_add(r, "chain %s type=%s", nftnl_chain_get_str(c, NFTNL_CHAIN_NAME), type ? type : "-");
	if (nftnl_chain_is_set(c, NFTNL_CHAIN_HOOKNUM))
		rec_add(r, " hook=%" PRIu32 " prio=%" PRId32 " policy=%" PRIu32,
			nftnl_chain_get_u32(c, NFTNL_CHAIN_HOOKNUM), nftnl_chain_get_s32(c, NFTNL_CHAIN_PRIO),
			nftnl_chain_get_u32(c, NFTNL_CHAIN_POLICY));
	image_sum(im->objs, r->buf, r->len);
	im->failed |= r->failed;
	im->n_objs++;
}

static void image_set(struct image *im, struct rec *r, const struct nftnl_set *s)
{
	uint32_t len = 0;
	const void *ud = nftnl_set_get_data(s, NFTNL_SET_USERDATA, &len);

	r->len = 0;
	rec_add(r, "set %s flags=%" PRIu32 " key=%" PRIu32 "/%" PRIu32 " data=%" PRIu32 "/%" PRIu32,
		nftnl_set_get_str(s, NFTNL_SET_NAME), nftnl_set_get_u32(s, NFTNL_SET_FLAGS),
		nftnl_set_get_u32(s, NFTNL_SET_KEY_TYPE), nftnl_set_get_u32(s, NFTNL_SET_KEY_LEN),
		nftnl_set_get_u32(s, NFTNL_SET_DATA_TYPE), nftnl_set_get_u32(s, NFTNL_SET_DATA_LEN));
	rec_hex(r, "udata", ud, ud ? len : 0);
	image_sum(im->objs, r->buf, r->len);
	im->failed |= r->failed;
	im->n_objs++;
}

/* The payload of a string attribute, NULL when it is not one. */
static const char *attr_str(const struct nlattr *attr)
{
	return mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0 ? mnl_attr_get_str(attr) : NULL;
}

/* A message of set elements, read here rather than by libnftnl, whose
 * parser takes only what the kernel writes (element nests of type
 * NFTA_LIST_ELEM) and not what its own builder writes (types 1, 2, …).
 * Anything an element carries beyond key, flags and userdata goes into
 * its record as it is: ours carry nothing else. */
static void image_elems(struct image *im, struct rec *r, const struct nlmsghdr *nlh)
{
	const struct nlattr *attr, *list = NULL, *elem;
	const char *table = NULL, *set = NULL;

	if (nlh->nlmsg_len < NLMSG_HDRLEN + sizeof(struct nfgenmsg))
		return;
	mnl_attr_for_each(attr, nlh, sizeof(struct nfgenmsg))
	{
		switch (mnl_attr_get_type(attr)) {
		case NFTA_SET_ELEM_LIST_TABLE:
			table = attr_str(attr);
			break;
		case NFTA_SET_ELEM_LIST_SET:
			set = attr_str(attr);
			break;
		case NFTA_SET_ELEM_LIST_ELEMENTS:
			if (mnl_attr_validate(attr, MNL_TYPE_NESTED) == 0)
				list = attr;
			break;
		}
	}
	if (!table || strcmp(table, NFT_TABLE_NAME) != 0 || !list)
		return;
	mnl_attr_for_each_nested(elem, list)
	{
		const struct nlattr *a, *key = NULL, *ud = NULL, *v;
		uint32_t flags = 0;

		r->len = 0;
		rec_add(r, "elem %s", set ? set : "-");
		mnl_attr_for_each_nested(a, elem)
		{
			uint16_t type = mnl_attr_get_type(a);

			if (type == NFTA_SET_ELEM_KEY && !key)
				key = a;
			else if (type == NFTA_SET_ELEM_USERDATA && !ud)
				ud = a;
			else if (type == NFTA_SET_ELEM_FLAGS && mnl_attr_validate(a, MNL_TYPE_U32) == 0)
				flags = ntohl(mnl_attr_get_u32(a));
			else
				rec_hex(r, "other", mnl_attr_get_payload(a), mnl_attr_get_payload_len(a));
		}
		rec_add(r, " flags=%" PRIu32, flags);
		if (key && mnl_attr_validate(key, MNL_TYPE_NESTED) == 0) {
			mnl_attr_for_each_nested(v, key)
			{
				rec_hex(r, mnl_attr_get_type(v) == NFTA_DATA_VALUE ? "key" : "keyother",
					mnl_attr_get_payload(v), mnl_attr_get_payload_len(v));
			}
		}
		if (ud)
			rec_hex(r, "udata", mnl_attr_get_payload(ud), mnl_attr_get_payload_len(ud));
		image_sum(im->elems, r->buf, r->len);
		im->failed |= r->failed;
		im->n_elems++;
	}
}

static void image_rule(struct image *im, struct rec *r, struct nftnl_rule *rule)
{
	uint32_t len = 0;
	const void *ud = nftnl_rule_get_data(rule, NFTNL_RULE_USERDATA, &len);
	struct nftnl_expr_iter *it = nftnl_expr_iter_create(rule);
	char text[1024];

	if (!it) {
		im->failed = true;
		return;
	}
	r->len = 0;
	rec_add(r, "rule %s", nftnl_rule_get_str(rule, NFTNL_RULE_CHAIN));
	rec_hex(r, "udata", ud, ud ? len : 0);
	for (struct nftnl_expr *e = nftnl_expr_iter_next(it); e; e = nftnl_expr_iter_next(it)) {
		const char *name = nftnl_expr_get_str(e, NFTNL_EXPR_NAME);

		if (name && strcmp(name, "counter") == 0) { /* the values change; the counter is there */
			rec_add(r, " [counter]");
			continue;
		}
		if (name && strcmp(name, "lookup") == 0) { /* the kernel gives flags 0, the batch none */
			rec_add(r, " [lookup reg %" PRIu32 " set %s dreg %" PRIu32 " flags %" PRIu32 "]",
				nftnl_expr_get_u32(e, NFTNL_EXPR_LOOKUP_SREG),
				nftnl_expr_get_str(e, NFTNL_EXPR_LOOKUP_SET),
				nftnl_expr_is_set(e, NFTNL_EXPR_LOOKUP_DREG)
				    ? nftnl_expr_get_u32(e, NFTNL_EXPR_LOOKUP_DREG)
				    : UINT32_MAX,
				nftnl_expr_get_u32(e, NFTNL_EXPR_LOOKUP_FLAGS));
			continue;
		}
		int n = nftnl_expr_snprintf(text, sizeof(text), e, NFTNL_OUTPUT_DEFAULT, 0);

		/* Ours are short: a longer one is someone else's. */
		rec_add(r, " [%s %s%s]", name ? name : "-", n < 0 ? "" : text,
			n < 0 || (size_t)n >= sizeof(text) ? " (unreadable)" : "");
	}
	nftnl_expr_iter_destroy(it);
	uint32_t n = (uint32_t)r->len;

	sha256_update(&im->rules, &n, sizeof(n)); /* length-prefixed: records cannot run together */
	sha256_update(&im->rules, r->buf, r->len);
	im->failed |= r->failed;
	im->n_rules++;
}

/* One message of either side into the image; anything outside our table
 * is not part of it. */
static void image_msg(struct image *im, struct rec *r, const struct nlmsghdr *nlh)
{
	const char *table = NULL;

	switch (NFNL_MSG_TYPE(nlh->nlmsg_type)) {
	case NFT_MSG_NEWTABLE: {
		struct nftnl_table *t = nftnl_table_alloc();

		if (!t || nftnl_table_nlmsg_parse(nlh, t) < 0) {
			im->failed = !t;
		} else if ((table = nftnl_table_get_str(t, NFTNL_TABLE_NAME)) &&
			   strcmp(table, NFT_TABLE_NAME) == 0) {
			r->len = 0;
			rec_add(r, "table flags=%" PRIu32, nftnl_table_get_u32(t, NFTNL_TABLE_FLAGS));
			image_sum(im->objs, r->buf, r->len);
			im->failed |= r->failed;
			im->n_objs++;
		}
		if (t)
			nftnl_table_free(t);
		break;
	}
	case NFT_MSG_NEWCHAIN: {
		struct nftnl_chain *c = nftnl_chain_alloc();

		if (!c || nftnl_chain_nlmsg_parse(nlh, c) < 0)
			im->failed = !c;
		else if ((table = nftnl_chain_get_str(c, NFTNL_CHAIN_TABLE)) &&
			 strcmp(table, NFT_TABLE_NAME) == 0 && nftnl_chain_is_set(c, NFTNL_CHAIN_NAME))
			image_chain(im, r, c);
		if (c)
			nftnl_chain_free(c);
		break;
	}
	case NFT_MSG_NEWSET: {
		struct nftnl_set *s = nftnl_set_alloc();

		if (!s || nftnl_set_nlmsg_parse(nlh, s) < 0)
			im->failed = !s;
		else if ((table = nftnl_set_get_str(s, NFTNL_SET_TABLE)) &&
			 strcmp(table, NFT_TABLE_NAME) == 0 && nftnl_set_is_set(s, NFTNL_SET_NAME))
			image_set(im, r, s);
		if (s)
			nftnl_set_free(s);
		break;
	}
	case NFT_MSG_NEWSETELEM:
		image_elems(im, r, nlh);
		break;
	case NFT_MSG_NEWRULE: {
		struct nftnl_rule *rule = nftnl_rule_alloc();

		if (!rule || nftnl_rule_nlmsg_parse(nlh, rule) < 0)
			im->failed = !rule;
		else if ((table = nftnl_rule_get_str(rule, NFTNL_RULE_TABLE)) &&
			 strcmp(table, NFT_TABLE_NAME) == 0 && nftnl_rule_is_set(rule, NFTNL_RULE_CHAIN))
			image_rule(im, r, rule);
		if (rule)
			nftnl_rule_free(rule);
		break;
	}
	default:
		break;
	}
}

/* The table a whole-table batch builds (nft_batch_build()): its last
 * NEWTABLE and what follows. */
static int image_of_batch(const struct nft_batch *nb, struct image *im)
{
	int n_iov = nftnl_batch_iovec_len(nb->batch);
	struct iovec *iov = calloc((size_t)n_iov, sizeof(*iov));
	struct rec r = {0};

	if (!iov)
		return -ENOMEM;
	nftnl_batch_iovec(nb->batch, iov, (uint32_t)n_iov);
	for (int i = 0; i < n_iov; i++) {
		int left = (int)iov[i].iov_len;

		for (const struct nlmsghdr *nlh = iov[i].iov_base; mnl_nlmsg_ok(nlh, left);
		     nlh = mnl_nlmsg_next(nlh, &left)) {
			/* The delete and the first create of the table are the
			 * replace; only the last create is the table. */
			if (NFNL_MSG_TYPE(nlh->nlmsg_type) == NFT_MSG_NEWTABLE && i == 0 && im->n_objs == 0) {
				const struct nlmsghdr *next = nlh;
				int l2 = left;

				next = mnl_nlmsg_next(next, &l2);
				if (mnl_nlmsg_ok(next, l2) &&
				    NFNL_MSG_TYPE(next->nlmsg_type) == NFT_MSG_DELTABLE)
					continue;
			}
			image_msg(im, &r, nlh);
		}
	}
	free(iov);
	free(r.buf);
	return im->failed ? -ENOMEM : 0;
}

struct dump {
	struct image *im;
	struct rec *r;
	bool collect; /* GETSET: note the names of our table's sets */
	char (*sets)[NFT_SET_NAME_MAX];
	size_t n_sets, cap_sets;
	bool odd_set; /* a set name longer than any we make */
};

static int dump_note_set(struct dump *d, const struct nlmsghdr *nlh)
{
	struct nftnl_set *s = nftnl_set_alloc();
	const char *table, *name;
	int ret = 0;

	if (!s)
		return -ENOMEM;
	if (nftnl_set_nlmsg_parse(nlh, s) == 0 && (table = nftnl_set_get_str(s, NFTNL_SET_TABLE)) &&
	    strcmp(table, NFT_TABLE_NAME) == 0 && (name = nftnl_set_get_str(s, NFTNL_SET_NAME))) {
		if (strlen(name) >= NFT_SET_NAME_MAX) {
			d->odd_set = true; /* not ours, and makes the image differ already */
		} else {
			if (d->n_sets == d->cap_sets) {
				size_t cap = d->cap_sets ? 2 * d->cap_sets : 64;
				void *v = realloc(d->sets, cap * sizeof(*d->sets));

				if (!v) {
					ret = -ENOMEM;
					goto out;
				}
				d->sets = v;
				d->cap_sets = cap;
			}
			snprintf(d->sets[d->n_sets++], NFT_SET_NAME_MAX, "%s", name);
		}
	}
out:
	nftnl_set_free(s);
	return ret;
}

static int dump_cb(const struct nlmsghdr *nlh, void *data)
{
	struct dump *d = data;

	image_msg(d->im, d->r, nlh);
	if (d->collect && NFNL_MSG_TYPE(nlh->nlmsg_type) == NFT_MSG_NEWSET && dump_note_set(d, nlh) < 0)
		d->im->failed = true;
	if (d->im->failed) {
		errno = ENOMEM;
		return MNL_CB_ERROR;
	}
	return MNL_CB_OK;
}

/* Our table as the kernel holds it: the table by name, then every chain,
 * set, set's elements and rule of family inet that names it. -ENOENT
 * when there is no table. */
static int image_of_kernel(struct mnl_socket *nl, struct image *im)
{
	char buf[8192] __attribute__((aligned(NLMSG_ALIGNTO))); /* one request */
	struct rec r = {0};
	struct dump d = {.im = im, .r = &r};
	struct nlmsghdr *nlh;
	int ret;

	nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETTABLE, NFPROTO_INET, 0, next_seq());
	mnl_attr_put_strz(nlh, NFTA_TABLE_NAME, NFT_TABLE_NAME);
	ret = nl_ask(nl, nlh, dump_cb, &d);
	if (ret == 0) {
		nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETCHAIN, NFPROTO_INET, NLM_F_DUMP, next_seq());
		ret = nl_ask(nl, nlh, dump_cb, &d);
	}
	if (ret == 0) {
		nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETSET, NFPROTO_INET, NLM_F_DUMP, next_seq());
		mnl_attr_put_strz(nlh, NFTA_SET_TABLE, NFT_TABLE_NAME);
		d.collect = true;
		ret = nl_ask(nl, nlh, dump_cb, &d);
		d.collect = false;
	}
	for (size_t i = 0; ret == 0 && i < d.n_sets; i++) {
		nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETSETELEM, NFPROTO_INET, NLM_F_DUMP, next_seq());
		mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_TABLE, NFT_TABLE_NAME);
		mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_SET, d.sets[i]);
		ret = nl_ask(nl, nlh, dump_cb, &d);
	}
	if (ret == 0) {
		nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETRULE, NFPROTO_INET, NLM_F_DUMP, next_seq());
		mnl_attr_put_strz(nlh, NFTA_RULE_TABLE, NFT_TABLE_NAME);
		ret = nl_ask(nl, nlh, dump_cb, &d);
	}
	free(d.sets);
	free(r.buf);
	return ret;
}

/* What differs between two images, "" when nothing does. */
static void image_diff(struct image *want, struct image *have, char *buf, size_t size)
{
	uint8_t dw[SHA256_DIGEST_LEN], dh[SHA256_DIGEST_LEN];

	sha256_final(&want->rules, dw);
	sha256_final(&have->rules, dh);
	if (want->n_objs != have->n_objs || memcmp(want->objs, have->objs, sizeof(want->objs)) != 0)
		snprintf(buf, size, "its table, chains or sets differ (%zu objects, %zu expected)",
			 have->n_objs, want->n_objs);
	else if (want->n_elems != have->n_elems || memcmp(want->elems, have->elems, sizeof(want->elems)) != 0)
		snprintf(buf, size, "set elements differ (%zu, %zu expected)", have->n_elems, want->n_elems);
	else if (want->n_rules != have->n_rules || memcmp(dw, dh, sizeof(dw)) != 0)
		snprintf(buf, size, "rules differ (%zu, %zu expected)", have->n_rules, want->n_rules);
	else
		buf[0] = '\0';
}

int nft_batch_verify(struct nft_batch *nb, const struct bundle *b, const struct bundle_endpoint *ep,
		     struct mnl_socket *nl, uint32_t *genid, bool *same)
{
	struct image want, have;
	uint32_t g0 = 0, g1 = 0;
	int ret = nft_batch_build(nb, b, ep);

	if (ret < 0)
		return ret;
	image_init(&want);
	ret = image_of_batch(nb, &want);
	/* The reading is one state only if nobody committed in between. */
	for (int attempt = 0; ret == 0; attempt++) {
		image_init(&have);
		ret = nft_genid(nl, &g0);
		if (ret == 0)
			ret = image_of_kernel(nl, &have);
		if (ret == -ENOENT) /* no table: the empty image */
			ret = 0;
		if (ret == 0) {
			ret = nft_genid(nl, &g1);
		} else if (ret == -EINTR) { /* a dump saw a commit */
			ret = 0;
			g1 = g0 + 1;
		}
		if (ret < 0 || g0 == g1)
			break;
		if (attempt == 2)
			ret = -EAGAIN;
	}
	if (ret < 0) {
		snprintf(nb->error, sizeof(nb->error), "reading the table back: %s", strerror(-ret));
		return ret;
	}
	image_diff(&want, &have, nb->error, sizeof(nb->error));
	*same = nb->error[0] == '\0';
	*genid = g0;
	return 0;
}
