/* nft-plan-maps: the map form of a plan (nft-plan.h): each direction's
 * first-match rule list as a few lookups whose answer is, for every
 * packet, the first rule of the list that matches it. Pure.
 *
 * What a connection's first packet meets, per direction (ingress shown;
 * egress looks up the destination):
 *
 *   chain ingress (hook input)
 *     the fixed rules (established, invalid, loopback, neighbour discovery)
 *     ip saddr vmap @ingress_hosts_v4       label-group members → a chain
 *     ip6 saddr vmap @ingress_hosts_v6
 *     ip saddr vmap @ingress_ranges_v4      network-group intervals → a chain
 *     ip6 saddr vmap @ingress_ranges_v6
 *     goto <the chain of a peer in no group>
 *   chain ingress_c<hash>                   one per class of peers (below)
 *     meta l4proto . th dport vmap @ingress_c<hash>_ports    TCP, UDP, SCTP
 *     meta l4proto . th sport vmap @ingress_c<hash>_icmp     ICMP, ICMPv6
 *     goto ingress_<N> or ingress_fallback  what the maps leave
 *   chain ingress_<N>                       one per bundle rule N
 *     counter [log prefix "bh:D:i<N>" group G] accept|drop comment "<rule id>"
 *   chain ingress_fallback
 *     counter [log prefix "bh:D:i-" group G] accept|drop comment "default-deny"
 *
 * A verdict map answers with a goto; a packet a map has no key for goes on
 * to the next rule. Each packet passes at most two address lookups that
 * find something (a hash and an interval tree: neither grows with the
 * rules, and the hash not with the members) and two small protocol
 * lookups, then its rule's chain: the first match costs the same for 1 rule
 * as for 1,000. Every rule's chain has the counter, the NFLOG prefix and the
 * comment its one nft rule had in the linear form, so hit counts, audit
 * and the denied-flow reports do not change. The construction:
 *
 * 1. Peers become classes. Whether a rule's peer matches depends only on
 *    which of the direction's bundle sets hold the address: its
 *    signature. Label groups (hosts sets) hold single addresses; every
 *    member address gets its signature from every set that holds it.
 *    Network groups (ranges sets, their excepts already cut out by the
 *    compiler), and hosts-set runs longer than NFT_HOSTS_RANGE_MAX, are
 *    swept: every interval's start and end + 1 is a cut, so the address
 *    space falls into cells, maximal stretches held by one collection of
 *    ranges sets (overlapping groups split at every boundary of either).
 *    A member address inside a cell has the cell's sets in its signature
 *    too.
 * 2. A signature's decision. The rules whose peer the signature matches
 *    (any peer, or one of the rule's sets in the signature), in list
 *    order, are the only ones that can decide for such an address, and
 *    the first of them without ports (A) decides every packet no earlier
 *    one takes: the rules after it are shadowed. For each protocol, the
 *    port ranges (TCP, UDP, SCTP: the destination port; ICMP, ICMPv6: the
 *    16-bit type·code, a type alone its 256 codes) of the rules before A
 *    are swept as in 1: cut at every start and end + 1, each piece
 *    answered by the lowest rule position that covers it (a heap of the
 *    ranges open at the piece). That is the first match by construction:
 *    overlapping, touching and shadowed ranges of allow and deny rules
 *    alike end up as disjoint keys with one answer each. Pieces answered
 *    by A are left out (the class chain's last rule, goto A, takes what the
 *    maps miss) and neighbours with one answer are merged. Then:
 *    - no piece, no A: the fallback's chain (nothing matches);
 *    - no piece, A: A's own chain (no class chain needed);
 *    - otherwise a class chain as above. Every key starts with the
 *      protocol, so a packet never finds another protocol's key, and a
 *      TCP packet read as ICMP (or the other way) finds nothing.
 *    Signatures with one decision share it, and a decision's chain is
 *    named after a hash of what it decides: a delta keeps the chains of
 *    the classes that remain, adds the new, removes the gone.
 * 3. The address maps. Hosts map: every member address → the chain of its
 *    signature's decision. Ranges map: every cell → the chain of its
 *    sets' decision, neighbouring cells with one chain merged. What
 *    decides like a peer in no set is left out of both (a miss reaches the
 *    same goto), and so is a member that decides like its cell. A member
 *    is found in the hosts map with its whole signature; any other
 *    address is in no hosts set, so its cell decides, found in the ranges
 *    map or falling through to the last goto.
 *
 * Deltas stay deltas: which maps and rule chains exist depends on the
 * rules alone; a member joining or leaving a group, or a network group's
 * CIDRs changing, moves addresses between chains (elements of the address
 * maps), and a class that appears or goes is a chain with its two maps,
 * added or removed in the same transaction.
 *
 * What a delta costs the kernel: a transaction that adds a goto element
 * makes nf_tables re-validate the whole table, every goto element of every
 * verdict map (nft_table_validate, nft_setelem_validate: about a third of
 * a 10,000-member delta, bench/element-delta.sh), so a member's delta
 * grows with all the members. A hosts map of class numbers (a data map)
 * looked up in a small verdict map of classes (one rule, two lookups)
 * avoids that and works, but nft 1.0.6 (Debian 12) aborts listing such a
 * rule (netlink_parse_concat_expr: a map's answer as a lookup key; nft
 * 1.0.8 reads and writes "ip saddr map @hosts vmap @classes"), and every
 * `nft list` in an endpoint's namespace would: it waits for that nft
 * (commit 0e94bf6, reverted).
 *
 * Later features fit this form without changing it:
 * - Named ports (issue 13): an ingress rule's name resolves on the
 *   endpoint itself (the compiler's work), so it is a port number before
 *   step 2. An egress rule's name resolves on each destination: every
 *   (table, number) pair of the bundle_named_port tables the direction's
 *   rules use is a set of step 1 (dir_named()), which holds the addresses
 *   that give the name that number, as members; so a destination's
 *   signature says what it calls each name, and step 2 gives the rule's
 *   named entry that number (every number, for an address a deny table
 *   holds twice). An address that does not define the name has no such
 *   set, and the entry matches nothing for it. A destination whose number
 *   changes changes class: an element delta like a membership change.
 * - observe "all" (issue 14): an accepted connection's first packet passes
 *   exactly one rule chain (or the fallback's), so the log statement that
 *   reports it goes there, once per connection and with its rule id. */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nft-addr.h"
#include "nft-plan.h"

/* A hosts map holding this many is sized (nft-plan.h: nft_plan_map.size). */
#define HOSTS_SIZED_FROM 4096

/* ---- signatures ---------------------------------------------------------
 * A signature is a sorted list of the direction's set numbers (0..n_used),
 * kept once in a pool; the table finds it again by content. */

struct sig {
	uint32_t off, len; /* in the pool */
	uint64_t hash;
	long decision; /* index into decisions, -1 until computed */
};

struct sig_table {
	uint32_t *pool;
	size_t n_pool, cap_pool;
	struct sig *v;
	size_t n, cap;
	uint32_t *slots; /* open addressing: sig index + 1, 0 free */
	size_t n_slots;
};

static uint64_t fnv_u32s(const uint32_t *v, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < n; i++) {
		h ^= v[i];
		h *= 0x100000001b3ULL;
	}
	return h ^ (n * 0x9e3779b97f4a7c15ULL);
}

static void sig_table_release(struct sig_table *t)
{
	free(t->pool);
	free(t->v);
	free(t->slots);
}

static int sig_slots_grow(struct sig_table *t)
{
	size_t n = t->n_slots ? 2 * t->n_slots : 256;
	uint32_t *s = calloc(n, sizeof(*s));

	if (!s)
		return -ENOMEM;
	for (size_t i = 0; i < t->n; i++) {
		size_t k = t->v[i].hash & (n - 1);

		while (s[k])
			k = (k + 1) & (n - 1);
		s[k] = (uint32_t)i + 1;
	}
	free(t->slots);
	t->slots = s;
	t->n_slots = n;
	return 0;
}

/* The index of signature v[0..n) (sorted), added when new; -ENOMEM. */
static long sig_find(struct sig_table *t, const uint32_t *v, size_t n)
{
	uint64_t h = fnv_u32s(v, n);
	size_t k;

	if ((t->n + 1) * 2 > t->n_slots && sig_slots_grow(t) < 0)
		return -ENOMEM;
	for (k = h & (t->n_slots - 1); t->slots[k]; k = (k + 1) & (t->n_slots - 1)) {
		const struct sig *s = &t->v[t->slots[k] - 1];

		if (s->hash == h && s->len == n &&
		    (n == 0 || memcmp(t->pool + s->off, v, n * sizeof(*v)) == 0))
			return (long)t->slots[k] - 1;
	}
	if (t->n == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 64;
		struct sig *w = realloc(t->v, cap * sizeof(*w));

		if (!w)
			return -ENOMEM;
		t->v = w;
		t->cap = cap;
	}
	while (t->n_pool + n > t->cap_pool) {
		size_t cap = t->cap_pool ? 2 * t->cap_pool : 256;
		uint32_t *w = realloc(t->pool, cap * sizeof(*w));

		if (!w)
			return -ENOMEM;
		t->pool = w;
		t->cap_pool = cap;
	}
	if (n) /* the empty signature: maybe no pool yet */
		memcpy(t->pool + t->n_pool, v, n * sizeof(*v));
	t->v[t->n] = (struct sig){.off = (uint32_t)t->n_pool, .len = (uint32_t)n, .hash = h, .decision = -1};
	t->n_pool += n;
	t->slots[k] = (uint32_t)t->n + 1;
	return (long)t->n++;
}

/* ---- decisions ------------------------------------------------------------ */

/* One piece of a decision: protocol proto, values lo..hi (port, or ICMP
 * type << 8 | code) → bundle rule pos. */
struct piece {
	uint8_t proto;
	uint16_t lo, hi;
	uint32_t pos;
};

enum decision_kind {
	DECIDE_FALLBACK, /* nothing matches */
	DECIDE_RULE,	 /* rule any decides everything */
	DECIDE_CLASS,	 /* pieces, then any (or the fallback) */
};

struct decision {
	enum decision_kind kind;
	long any; /* the first matching rule without ports, -1: none */
	struct piece *pieces;
	size_t n_pieces;
	uint64_t key;	 /* DECIDE_CLASS: hash of the content, the chain's name */
	uint32_t target; /* the chain it goes to, once made */
};

/* A named port's number, as a set of a signature. */
struct named_num {
	uint32_t table; /* index into bundle.named_ports */
	uint16_t port;
};

/* What one direction's construction holds. */
struct dir_build {
	struct nft_plan *p;
	const struct bundle *b;
	enum direction dir;
	const struct bundle_chain *c;
	/* The bundle sets this direction's rules name, numbered 0..n_used. */
	uint32_t *local; /* bundle set index → local number + 1, 0: unused */
	uint32_t *used;	 /* local number → bundle set index */
	size_t n_used;
	uint32_t **rule_sets; /* per rule: its local set numbers */
	/* Named ports: each (table, number) pair that a used table holds is
	 * a set too, numbered n_used.., which holds the addresses that call
	 * the table's name that number; a member's signature so says which
	 * numbers it gives each name its rules use. */
	struct named_num *named; /* sorted by table, then port */
	size_t n_named;
	bool *named_used; /* by bundle named-port table */
	size_t n_named_used;
	size_t n_all; /* n_used + n_named: the size of a signature's alphabet */
	struct sig_table sigs;
	struct decision *decisions;
	size_t n_decisions, cap_decisions;
	uint32_t rule_chain0; /* chain of bundle rule 0; rule i is rule_chain0 + i */
	uint32_t fallback_chain;
	long none; /* the decision of a peer in no set */
	/* scratch */
	bool *mark; /* by local set number */
	struct piece *items;
	size_t cap_items;
};

static uint64_t fnv_bytes(uint64_t h, const void *data, size_t n)
{
	const uint8_t *p = data;

	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static uint64_t decision_hash(enum direction dir, long any, const struct piece *v, size_t n)
{
	uint64_t h = fnv_bytes(0xcbf29ce484222325ULL, &dir, sizeof(dir));

	h = fnv_bytes(h, &any, sizeof(any));
	for (size_t i = 0; i < n; i++) {
		uint8_t rec[9] = {v[i].proto,
				  (uint8_t)(v[i].lo >> 8),
				  (uint8_t)v[i].lo,
				  (uint8_t)(v[i].hi >> 8),
				  (uint8_t)v[i].hi,
				  (uint8_t)(v[i].pos >> 24),
				  (uint8_t)(v[i].pos >> 16),
				  (uint8_t)(v[i].pos >> 8),
				  (uint8_t)v[i].pos};

		h = fnv_bytes(h, rec, sizeof(rec));
	}
	return h;
}

/* Appends a value range of a port match to the items of protocol class
 * ports (TCP, UDP, SCTP) or ICMP; -ENOMEM. */
static int item_add(struct dir_build *db, size_t *n, uint8_t proto, unsigned lo, unsigned hi, uint32_t pos)
{
	if (*n == db->cap_items) {
		size_t cap = db->cap_items ? 2 * db->cap_items : 64;
		struct piece *v = realloc(db->items, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		db->items = v;
		db->cap_items = cap;
	}
	db->items[(*n)++] =
	    (struct piece){.proto = proto, .lo = (uint16_t)lo, .hi = (uint16_t)hi, .pos = pos};
	return 0;
}

static int items_of_port(struct dir_build *db, size_t *n, const struct port_match *pm, uint32_t pos)
{
	int t = pm->icmp_type, c = pm->icmp_code, ret = 0;

	switch (pm->proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		return item_add(db, n, pm->proto, pm->lo, pm->hi, pos);
	default: /* ICMP, ICMPv6 (nft_plan_check_rule() let no other through) */
		if (t >= 0 && c >= 0)
			return item_add(db, n, pm->proto, (unsigned)t << 8 | (unsigned)c,
					(unsigned)t << 8 | (unsigned)c, pos);
		if (t >= 0)
			return item_add(db, n, pm->proto, (unsigned)t << 8, (unsigned)t << 8 | 255, pos);
		if (c < 0)
			return item_add(db, n, pm->proto, 0, 65535, pos);
		/* A code of any type: 256 values apart. */
		for (unsigned x = 0; ret == 0 && x < 256; x++)
			ret = item_add(db, n, pm->proto, x << 8 | (unsigned)c, x << 8 | (unsigned)c, pos);
		return ret;
	}
}

static int cmp_item(const void *a, const void *b)
{
	const struct piece *x = a, *y = b;

	if (x->proto != y->proto)
		return x->proto < y->proto ? -1 : 1;
	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	return (x->pos > y->pos) - (x->pos < y->pos);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

/* A min-heap of the items open at a point, by rule position. */
struct heap {
	const struct piece **v;
	size_t n;
};

static void heap_push(struct heap *h, const struct piece *it)
{
	size_t i = h->n++;

	h->v[i] = it;
	while (i && h->v[(i - 1) / 2]->pos > h->v[i]->pos) {
		const struct piece *t = h->v[i];

		h->v[i] = h->v[(i - 1) / 2];
		h->v[(i - 1) / 2] = t;
		i = (i - 1) / 2;
	}
}

static void heap_pop(struct heap *h)
{
	size_t i = 0;

	h->v[0] = h->v[--h->n];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < h->n && h->v[l]->pos < h->v[m]->pos)
			m = l;
		if (r < h->n && h->v[r]->pos < h->v[m]->pos)
			m = r;
		if (m == i)
			return;
		const struct piece *t = h->v[i];

		h->v[i] = h->v[m];
		h->v[m] = t;
		i = m;
	}
}

/* Sweeps the items of one protocol, items[0..n) sorted by start: appends
 * to *out the pieces, each answered by the lowest position covering it,
 * neighbours with one answer merged. */
static int sweep_proto(const struct piece *items, size_t n, struct piece **out, size_t *n_out,
		       size_t *cap_out)
{
	uint32_t *cuts = malloc(2 * n * sizeof(*cuts));
	struct heap h = {.v = malloc(n * sizeof(*h.v))};
	size_t n_cuts = 0, next = 0;
	int ret = 0;

	if (!cuts || !h.v) {
		ret = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		cuts[n_cuts++] = items[i].lo;
		cuts[n_cuts++] = (uint32_t)items[i].hi + 1; /* 65536: past the end */
	}
	/* Sorted, unique: the pieces' starts. */
	if (n_cuts) /* qsort takes no NULL, even for none */
		qsort(cuts, n_cuts, sizeof(*cuts), cmp_u32);
	size_t u = 0;
	for (size_t i = 0; i < n_cuts; i++) {
		if (!u || cuts[u - 1] != cuts[i])
			cuts[u++] = cuts[i];
	}
	for (size_t k = 0; k + 1 < u; k++) {
		uint32_t at = cuts[k], end = cuts[k + 1] - 1;

		while (next < n && items[next].lo <= at)
			heap_push(&h, &items[next++]);
		while (h.n && h.v[0]->hi < at)
			heap_pop(&h);
		if (!h.n)
			continue;
		uint32_t pos = h.v[0]->pos;
		struct piece *last = *n_out ? &(*out)[*n_out - 1] : NULL;

		if (last && last->proto == items[0].proto && last->pos == pos &&
		    (uint32_t)last->hi + 1 == at) {
			last->hi = (uint16_t)end;
			continue;
		}
		if (*n_out == *cap_out) {
			size_t cap = *cap_out ? 2 * *cap_out : 16;
			struct piece *w = realloc(*out, cap * sizeof(*w));

			if (!w) {
				ret = -ENOMEM;
				goto out;
			}
			*out = w;
			*cap_out = cap;
		}
		(*out)[(*n_out)++] = (struct piece){
		    .proto = items[0].proto, .lo = (uint16_t)at, .hi = (uint16_t)end, .pos = pos};
	}
out:
	free(cuts);
	free(h.v);
	return ret;
}

static bool rule_matches_sig(const struct dir_build *db, size_t i)
{
	const struct bundle_rule *br = &db->c->rules[i];

	if (br->any_peer)
		return true;
	for (size_t s = 0; s < br->n_sets; s++) {
		if (db->mark[db->rule_sets[i][s]])
			return true;
	}
	return false;
}

static bool decision_equal(const struct decision *a, const struct decision *b)
{
	if (a->kind != b->kind || a->any != b->any || a->n_pieces != b->n_pieces)
		return false;
	for (size_t i = 0; i < a->n_pieces; i++) {
		const struct piece *x = &a->pieces[i], *y = &b->pieces[i];

		if (x->proto != y->proto || x->lo != y->lo || x->hi != y->hi || x->pos != y->pos)
			return false;
	}
	return true;
}

/* The decision of signature sig[0..n): computed, or found among those
 * made already (by content). Its index, or -ENOMEM. */
static long decide(struct dir_build *db, const uint32_t *sig, size_t n)
{
	struct piece *pieces = NULL;
	size_t n_items = 0, n_pieces = 0, cap_pieces = 0;
	long any = -1;
	int ret = 0;

	for (size_t i = 0; i < n; i++)
		db->mark[sig[i]] = true;
	for (size_t i = 0; ret == 0 && i < db->c->n_rules && any < 0; i++) {
		const struct bundle_rule *br = &db->c->rules[i];

		if (!rule_matches_sig(db, i))
			continue;
		if (br->any_port) {
			any = (long)i;
			break;
		}
		for (size_t j = 0; ret == 0 && j < br->n_ports; j++) {
			const struct port_match *pm = &br->ports[j];

			if (!pm->name) {
				ret = items_of_port(db, &n_items, pm, (uint32_t)i);
				continue;
			}
			/* The number this address gives the name (every one,
			 * for a contested address in a deny table). */
			for (size_t k = 0; ret == 0 && k < n; k++) {
				const struct named_num *nn;

				if (sig[k] < db->n_used)
					continue;
				nn = &db->named[sig[k] - db->n_used];
				if (nn->table == pm->named_table)
					ret = item_add(db, &n_items, pm->proto, nn->port, nn->port,
						       (uint32_t)i);
			}
		}
	}
	for (size_t i = 0; i < n; i++)
		db->mark[sig[i]] = false;
	if (ret < 0)
		return ret;
	if (n_items) /* qsort takes no NULL, even for none */
		qsort(db->items, n_items, sizeof(*db->items), cmp_item);
	for (size_t i = 0; ret == 0 && i < n_items;) {
		size_t j = i;

		while (j < n_items && db->items[j].proto == db->items[i].proto)
			j++;
		ret = sweep_proto(db->items + i, j - i, &pieces, &n_pieces, &cap_pieces);
		i = j;
	}
	if (ret < 0) {
		free(pieces);
		return ret;
	}
	/* A's ranges were never swept: what no earlier rule covers has no
	 * piece, and the class chain's last goto gives it to A. */
	struct decision d = {.any = any, .pieces = pieces, .n_pieces = n_pieces};

	d.kind = n_pieces ? DECIDE_CLASS : any >= 0 ? DECIDE_RULE : DECIDE_FALLBACK;
	if (d.kind == DECIDE_CLASS)
		d.key = decision_hash(db->dir, any, pieces, n_pieces);
	for (size_t k = 0; k < db->n_decisions; k++) {
		if (decision_equal(&db->decisions[k], &d)) {
			free(pieces);
			return (long)k;
		}
	}
	if (db->n_decisions == db->cap_decisions) {
		size_t cap = db->cap_decisions ? 2 * db->cap_decisions : 16;
		struct decision *w = realloc(db->decisions, cap * sizeof(*w));

		if (!w) {
			free(pieces);
			return -ENOMEM;
		}
		db->decisions = w;
		db->cap_decisions = cap;
	}
	db->decisions[db->n_decisions] = d;
	return (long)db->n_decisions++;
}

/* The decision of signature index s. */
static long sig_decision(struct dir_build *db, long s)
{
	struct sig *g = &db->sigs.v[s];

	if (g->decision < 0) {
		long d = decide(db, db->sigs.pool + g->off, g->len);

		if (d < 0)
			return d;
		db->sigs.v[s].decision = d; /* decide() may not move the table, but be plain */
	}
	return db->sigs.v[s].decision;
}

/* ---- cells and members ---------------------------------------------------- */

/* An interval end of a ranges set: at addr, set local starts (or, end, stops). */
struct event {
	uint8_t addr[16];
	uint32_t set;
	bool end; /* addr is one past the interval (never past the top) */
};

struct cell {
	uint8_t lo[16], hi[16];
	long sig;
};

/* A member address with one set that holds it. */
struct member {
	uint8_t addr[16];
	uint32_t set;
};

static unsigned sort_len; /* qsort has no argument: the family's address length */

static int cmp_event(const void *a, const void *b)
{
	const struct event *x = a, *y = b;
	int c = memcmp(x->addr, y->addr, sort_len);

	return c ? c : (int)x->end - (int)y->end;
}

/* Members in address order, then set order. Addresses are zero past the
 * family's length, so two big-endian halves order both families. */
static inline int member_order(const struct member *x, const struct member *y)
{
	uint64_t a, b;

	memcpy(&a, x->addr, 8);
	memcpy(&b, y->addr, 8);
	if (a != b)
		return be64toh(a) < be64toh(b) ? -1 : 1;
	memcpy(&a, x->addr + 8, 8);
	memcpy(&b, y->addr + 8, 8);
	if (a != b)
		return be64toh(a) < be64toh(b) ? -1 : 1;
	return (x->set > y->set) - (x->set < y->set);
}

/* Sorts members by member_order(). They come as runs already in order
 * (each set's list is sorted, and the sets come one after another), so a
 * natural merge sort takes a few passes over them where qsort takes
 * log2(n): a delta rebuilds every member's place, so this is most of its
 * time. */
static int members_sort(struct member *v, size_t n)
{
	struct member *tmp;
	size_t *runs, n_runs = 0;

	if (n < 2)
		return 0;
	tmp = malloc(n * sizeof(*tmp));
	runs = malloc((n + 1) * sizeof(*runs));
	if (!tmp || !runs) {
		free(tmp);
		free(runs);
		return -ENOMEM;
	}
	runs[n_runs++] = 0;
	for (size_t i = 1; i < n; i++) {
		if (member_order(&v[i - 1], &v[i]) > 0)
			runs[n_runs++] = i;
	}
	runs[n_runs] = n;
	struct member *src = v, *dst = tmp;

	while (n_runs > 1) {
		size_t k = 0;

		for (size_t r = 0; r < n_runs; r += 2) {
			size_t lo = runs[r], mid = runs[r + 1], hi = r + 2 <= n_runs ? runs[r + 2] : mid;
			size_t i = lo, j = mid, o = lo;

			if (r + 1 == n_runs) { /* an odd run out: copied as it is */
				mid = hi = runs[r + 1];
				j = hi;
			}
			while (i < mid && j < hi)
				dst[o++] = member_order(&src[j], &src[i]) < 0 ? src[j++] : src[i++];
			memcpy(dst + o, src + i, (mid - i) * sizeof(*dst));
			o += mid - i;
			memcpy(dst + o, src + j, (hi - j) * sizeof(*dst));
			runs[k++] = lo;
		}
		runs[k] = n;
		n_runs = k;
		struct member *t = src;

		src = dst;
		dst = t;
	}
	if (src != v)
		memcpy(v, src, n * sizeof(*v));
	free(tmp);
	free(runs);
	return 0;
}

static void addr_decrement(uint8_t *a, unsigned len)
{
	for (unsigned i = len; i-- > 0;) {
		if (a[i]-- != 0)
			return;
	}
}

/* What one family's address maps are built from. */
struct family_build {
	int family;
	unsigned len;
	struct event *events;
	size_t n_events, cap_events;
	struct member *members;
	size_t n_members, cap_members;
	struct cell *cells;
	size_t n_cells, cap_cells;
};

static void family_release(struct family_build *fb)
{
	free(fb->events);
	free(fb->members);
	free(fb->cells);
}

static int push(void **v, size_t *n, size_t *cap, size_t sz)
{
	if (*n < *cap)
		return 0;
	size_t c = *cap ? 2 * *cap : 256;
	void *w = realloc(*v, c * sz);

	if (!w)
		return -ENOMEM;
	*v = w;
	*cap = c;
	return 0;
}

static int cmp_named_num(const void *a, const void *b)
{
	const struct named_num *x = a, *y = b;

	if (x->table != y->table)
		return x->table < y->table ? -1 : 1;
	return (x->port > y->port) - (x->port < y->port);
}

/* The set number of (table, port), which dir_named() made. */
static uint32_t named_set_of(const struct dir_build *db, uint32_t table, uint16_t port)
{
	struct named_num key = {.table = table, .port = port};
	const struct named_num *nn = bsearch(&key, db->named, db->n_named, sizeof(*db->named), cmp_named_num);

	return (uint32_t)(db->n_used + (size_t)(nn - db->named));
}

/* The pairs of the family of every used named-port table, as members of
 * the sets of their numbers. */
static int family_collect_named(struct dir_build *db, struct family_build *fb)
{
	for (uint32_t t = 0; t < db->b->n_named_ports; t++) {
		const struct bundle_named_port *np = &db->b->named_ports[t];

		if (!db->named_used[t])
			continue;
		for (size_t i = 0; i < np->n; i++) {
			if (np->v[i].addr.family != fb->family)
				continue;
			if (push((void **)&fb->members, &fb->n_members, &fb->cap_members,
				 sizeof(*fb->members)) < 0)
				return -ENOMEM;
			struct member *m = &fb->members[fb->n_members++];

			memset(m, 0, sizeof(*m));
			memcpy(m->addr, np->v[i].addr.bytes, fb->len);
			m->set = named_set_of(db, t, np->v[i].port);
		}
	}
	return 0;
}

/* Every used set's members of the family, as events (ranges) and members
 * (hosts). */
static int family_collect(struct dir_build *db, struct family_build *fb)
{
	for (uint32_t l = 0; l < db->n_used; l++) {
		const struct bundle_set *bs = &db->b->sets[db->used[l]];
		const struct range_list *rl = fb->family == AF_INET ? &bs->v4 : &bs->v6;

		for (size_t i = 0; i < rl->n; i++) {
			const struct addr_range *r = &rl->v[i];

			if (bs->kind == SET_HOSTS && !nft_plan_long_range(r, fb->family)) {
				uint8_t a[16];
				bool last = false;

				memcpy(a, r->lo.bytes, fb->len);
				while (!last) {
					if (push((void **)&fb->members, &fb->n_members, &fb->cap_members,
						 sizeof(*fb->members)) < 0)
						return -ENOMEM;
					struct member *m = &fb->members[fb->n_members++];

					memset(m, 0, sizeof(*m));
					memcpy(m->addr, a, fb->len);
					m->set = l;
					last = nft_addr_order(a, r->hi.bytes, fb->len) == 0 ||
					       nft_addr_increment(a, fb->len);
				}
				continue;
			}
			if (nft_addr_order(r->lo.bytes, r->hi.bytes, fb->len) > 0)
				continue;
			for (int e = 0; e < 2; e++) {
				if (push((void **)&fb->events, &fb->n_events, &fb->cap_events,
					 sizeof(*fb->events)) < 0)
					return -ENOMEM;
				struct event *ev = &fb->events[fb->n_events];

				memset(ev, 0, sizeof(*ev));
				memcpy(ev->addr, e ? r->hi.bytes : r->lo.bytes, fb->len);
				ev->set = l;
				ev->end = e;
				if (e && nft_addr_increment(ev->addr, fb->len))
					continue; /* runs to the top: it never stops */
				fb->n_events++;
			}
		}
	}
	return family_collect_named(db, fb);
}

/* The sweep of step 1: cells, each with its signature. */
static int family_cells(struct dir_build *db, struct family_build *fb)
{
	uint32_t *count = calloc(db->n_used ? db->n_used : 1, sizeof(*count));
	uint32_t *active = malloc((db->n_used ? db->n_used : 1) * sizeof(*active));
	size_t n_active = 0;
	int ret = 0;

	if (!count || !active) {
		ret = -ENOMEM;
		goto out;
	}
	sort_len = fb->len;
	if (fb->n_events) /* qsort takes no NULL, even for none */
		qsort(fb->events, fb->n_events, sizeof(*fb->events), cmp_event);
	for (size_t i = 0; i < fb->n_events;) {
		const uint8_t *at = fb->events[i].addr;
		size_t j = i;

		for (; j < fb->n_events && memcmp(fb->events[j].addr, at, fb->len) == 0; j++) {
			uint32_t s = fb->events[j].set;

			if (fb->events[j].end)
				count[s]--;
			else
				count[s]++;
		}
		/* The sets open from here on, sorted (a handful, as a rule). */
		n_active = 0;
		for (uint32_t s = 0; s < db->n_used; s++) {
			if (count[s])
				active[n_active++] = s;
		}
		if (n_active) {
			long sig = sig_find(&db->sigs, active, n_active);

			if (sig < 0) {
				ret = (int)sig;
				goto out;
			}
			ret = push((void **)&fb->cells, &fb->n_cells, &fb->cap_cells, sizeof(*fb->cells));
			if (ret < 0)
				goto out;
			struct cell *c = &fb->cells[fb->n_cells++];

			memset(c, 0, sizeof(*c));
			memcpy(c->lo, at, fb->len);
			if (j < fb->n_events) {
				memcpy(c->hi, fb->events[j].addr, fb->len);
				addr_decrement(c->hi, fb->len);
			} else {
				memset(c->hi, 0xff, fb->len); /* open to the top */
			}
			c->sig = sig;
		}
		i = j;
	}
out:
	free(count);
	free(active);
	return ret;
}

/* The cell that holds a, or NULL. */
static const struct cell *cell_of(const struct family_build *fb, const uint8_t *a)
{
	size_t lo = 0, hi = fb->n_cells;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct cell *c = &fb->cells[mid];

		if (memcmp(a, c->lo, fb->len) < 0)
			hi = mid;
		else if (memcmp(a, c->hi, fb->len) > 0)
			lo = mid + 1;
		else
			return c;
	}
	return NULL;
}

static int map_push(struct nft_plan_map *m, size_t *cap, const uint8_t *lo, const uint8_t *hi, unsigned len,
		    uint32_t target)
{
	if (push((void **)&m->elems, &m->n_elems, cap, sizeof(*m->elems)) < 0)
		return -ENOMEM;
	struct nft_plan_elem *e = &m->elems[m->n_elems++];

	memset(e, 0, sizeof(*e));
	memcpy(e->lo, lo, len);
	memcpy(e->hi, hi, len);
	e->target = target; /* a decision until chains are made */
	return 0;
}

/* Step 3: the hosts and ranges maps of one family (hosts_map, ranges_map:
 * indices into p->maps, elements' targets still decisions). */
static int family_maps(struct dir_build *db, struct family_build *fb, uint32_t hosts_map, uint32_t ranges_map)
{
	size_t cap_hosts = 0, cap_ranges = 0;
	uint32_t *sig = malloc((db->n_all + 1) * sizeof(*sig));
	long *one_set = malloc((db->n_all + 1) * sizeof(*one_set));
	int ret = 0;

	if (!sig || !one_set) {
		free(sig);
		free(one_set);
		return -ENOMEM;
	}
	for (size_t l = 0; l <= db->n_all; l++)
		one_set[l] = -1;
	ret = family_collect(db, fb);
	if (ret == 0)
		ret = family_cells(db, fb);
	if (ret < 0)
		goto out;

	/* Ranges: each cell, but what decides like no set. */
	for (size_t i = 0; i < fb->n_cells; i++) {
		const struct cell *c = &fb->cells[i];
		long d = sig_decision(db, c->sig);
		struct nft_plan_map *m = &db->p->maps[ranges_map];

		if (d < 0) {
			ret = (int)d;
			goto out;
		}
		if (d == db->none)
			continue;
		if (m->n_elems) {
			struct nft_plan_elem *last = &m->elems[m->n_elems - 1];
			uint8_t next[16];

			memcpy(next, last->hi, fb->len);
			if (last->target == (uint32_t)d && !nft_addr_increment(next, fb->len) &&
			    memcmp(next, c->lo, fb->len) == 0) {
				memcpy(last->hi, c->hi, fb->len);
				continue;
			}
		}
		ret = map_push(m, &cap_ranges, c->lo, c->hi, fb->len, (uint32_t)d);
		if (ret < 0)
			goto out;
	}

	/* Hosts: each member address with its whole signature. */
	ret = members_sort(fb->members, fb->n_members);
	if (ret < 0)
		goto out;
	/* At most one element per member: no growing on the way. */
	if (fb->n_members) {
		struct nft_plan_map *hm0 = &db->p->maps[hosts_map];
		struct nft_plan_elem *w = realloc(hm0->elems, (hm0->n_elems + fb->n_members) * sizeof(*w));

		if (!w) {
			ret = -ENOMEM;
			goto out;
		}
		hm0->elems = w;
		cap_hosts = hm0->n_elems + fb->n_members;
	}
	for (size_t i = 0; i < fb->n_members;) {
		const uint8_t *a = fb->members[i].addr;
		const struct cell *c = cell_of(fb, a);
		size_t j = i, n = 0;

		for (; j < fb->n_members && nft_addr_order(fb->members[j].addr, a, fb->len) == 0; j++) {
			if (!n || sig[n - 1] != fb->members[j].set)
				sig[n++] = fb->members[j].set;
		}
		if (c) { /* merge the cell's sets in, keeping the order */
			const uint32_t *cs = db->sigs.pool + db->sigs.v[c->sig].off;
			size_t cn = db->sigs.v[c->sig].len, k = n;

			for (size_t x = 0; x < cn; x++) {
				size_t y = 0;

				while (y < n && sig[y] < cs[x])
					y++;
				if (y < n && sig[y] == cs[x])
					continue;
				sig[k++] = cs[x];
			}
			n = k;
			for (size_t x = 1; x < n; x++) { /* insertion sort: short lists */
				uint32_t v = sig[x];
				size_t y = x;

				for (; y > 0 && sig[y - 1] > v; y--)
					sig[y] = sig[y - 1];
				sig[y] = v;
			}
		}
		/* Most members are in one set and no cell: their decision is
		 * that set's, looked up once. */
		long s, d;

		if (n == 1 && !c && one_set[sig[0]] >= 0) {
			d = one_set[sig[0]];
		} else {
			s = sig_find(&db->sigs, sig, n);
			d = s < 0 ? s : sig_decision(db, s);
			if (n == 1 && !c && d >= 0)
				one_set[sig[0]] = d;
		}
		long dc = c ? sig_decision(db, c->sig) : db->none;

		if (d < 0 || dc < 0) {
			ret = (int)(d < 0 ? d : dc);
			goto out;
		}
		if (d != dc) {
			ret = map_push(&db->p->maps[hosts_map], &cap_hosts, a, a, fb->len, (uint32_t)d);
			if (ret < 0)
				goto out;
		}
		i = j;
	}
	struct nft_plan_map *hm = &db->p->maps[hosts_map];

	if (hm->n_elems >= HOSTS_SIZED_FROM)
		hm->size = (uint32_t)((2 * hm->n_elems + 4095) / 4096 * 4096);
out:
	free(sig);
	free(one_set);
	return ret;
}

/* ---- chains ---------------------------------------------------------------- */

static int cmp_decision_key(const void *a, const void *b)
{
	const struct decision *const *x = a, *const *y = b;

	return ((*x)->key > (*y)->key) - ((*x)->key < (*y)->key);
}

/* A class chain: its maps and rules (step 2's chain). */
static int class_chain(struct dir_build *db, struct decision *d)
{
	struct nft_plan *p = db->p;
	const char *dn = direction_name(db->dir);
	char name[NFT_NAME_MAX];
	uint32_t ci, mi;
	size_t cap = 0;
	int ret;

	snprintf(name, sizeof(name), "%s_c%016" PRIx64, dn, d->key);
	ret = nft_plan_add_chain(p, name, NFT_PLAN_CLASS_CHAIN, db->dir, &ci);
	if (ret < 0)
		return ret;
	p->chains[ci].key = d->key;
	p->chains[ci].first_rule = p->n_rules;
	d->target = ci;
	for (int icmp = 0; icmp < 2; icmp++) {
		struct nft_plan_rule r = {.kind = NFT_PLAN_LOOKUP, .dir = db->dir};
		bool any = false;

		for (size_t i = 0; i < d->n_pieces; i++)
			any |= (d->pieces[i].proto == IPPROTO_ICMP || d->pieces[i].proto == IPPROTO_ICMPV6) ==
			       icmp;
		if (!any)
			continue;
		snprintf(name, sizeof(name), "%s_c%016" PRIx64 "_%s", dn, d->key, icmp ? "icmp" : "ports");
		ret = nft_plan_add_map(p, name, icmp ? NFT_MAP_ICMP : NFT_MAP_PORTS, db->dir, 0, &mi);
		if (ret < 0)
			return ret;
		p->maps[mi].chain = ci;
		cap = 0;
		for (size_t i = 0; i < d->n_pieces; i++) {
			const struct piece *pc = &d->pieces[i];
			uint8_t lo[3] = {pc->proto, (uint8_t)(pc->lo >> 8), (uint8_t)pc->lo};
			uint8_t hi[3] = {pc->proto, (uint8_t)(pc->hi >> 8), (uint8_t)pc->hi};

			if ((pc->proto == IPPROTO_ICMP || pc->proto == IPPROTO_ICMPV6) != icmp)
				continue;
			ret = map_push(&p->maps[mi], &cap, lo, hi, 3, db->rule_chain0 + pc->pos);
			if (ret < 0)
				return ret;
		}
		r.map = mi;
		ret = nft_plan_add_rule(p, &r);
		if (ret < 0)
			return ret;
	}
	struct nft_plan_rule g = {.kind = NFT_PLAN_GOTO,
				  .dir = db->dir,
				  .target =
				      d->any >= 0 ? db->rule_chain0 + (uint32_t)d->any : db->fallback_chain};

	ret = nft_plan_add_rule(p, &g);
	p->chains[ci].n_rules = p->n_rules - p->chains[ci].first_rule;
	return ret;
}

/* Makes the chain of every decision (classes in the order of their
 * names) and turns the maps' decisions into chains. */
static int make_chains(struct dir_build *db, size_t first_map)
{
	struct nft_plan *p = db->p;
	struct decision **order = malloc((db->n_decisions ? db->n_decisions : 1) * sizeof(*order));
	size_t n = 0;
	int ret = 0;

	if (!order)
		return -ENOMEM;
	for (size_t i = 0; i < db->n_decisions; i++) {
		struct decision *d = &db->decisions[i];

		if (d->kind == DECIDE_FALLBACK)
			d->target = db->fallback_chain;
		else if (d->kind == DECIDE_RULE)
			d->target = db->rule_chain0 + (uint32_t)d->any;
		else
			order[n++] = d;
	}
	qsort(order, n, sizeof(*order), cmp_decision_key);
	for (size_t i = 0; i + 1 < n; i++) {
		if (order[i]->key == order[i + 1]->key) {
			free(order);
			return -EEXIST; /* two classes, one name: see the caller */
		}
	}
	/* The address maps' elements still name decisions. */
	size_t n_addr_maps = p->n_maps;

	for (size_t i = 0; ret == 0 && i < n; i++)
		ret = class_chain(db, order[i]);
	free(order);
	for (size_t m = first_map; ret == 0 && m < n_addr_maps; m++) {
		struct nft_plan_map *map = &p->maps[m];

		for (size_t i = 0; i < map->n_elems; i++)
			map->elems[i].target = db->decisions[map->elems[i].target].target;
	}
	return ret;
}

/* ---- one direction ---------------------------------------------------------- */

static void dir_release(struct dir_build *db)
{
	for (size_t i = 0; db->rule_sets && i < db->c->n_rules; i++)
		free(db->rule_sets[i]);
	free(db->rule_sets);
	free(db->local);
	free(db->used);
	free(db->mark);
	free(db->named);
	free(db->named_used);
	free(db->items);
	for (size_t i = 0; i < db->n_decisions; i++)
		free(db->decisions[i].pieces);
	free(db->decisions);
	sig_table_release(&db->sigs);
}

/* The named-port tables this direction's rules use, and the set of each
 * (table, number) pair they hold, numbered after the bundle sets. */
static int dir_named(struct dir_build *db)
{
	const struct bundle *b = db->b;
	size_t n = 0, u = 0;

	db->named_used = calloc(b->n_named_ports ? b->n_named_ports : 1, sizeof(*db->named_used));
	if (!db->named_used)
		return -ENOMEM;
	for (size_t i = 0; i < db->c->n_rules; i++) {
		const struct bundle_rule *br = &db->c->rules[i];

		for (size_t j = 0; !br->any_port && j < br->n_ports; j++) {
			if (br->ports[j].name && !db->named_used[br->ports[j].named_table]) {
				db->named_used[br->ports[j].named_table] = true;
				db->n_named_used++;
				n += b->named_ports[br->ports[j].named_table].n;
			}
		}
	}
	db->named = malloc((n ? n : 1) * sizeof(*db->named));
	if (!db->named)
		return -ENOMEM;
	for (uint32_t t = 0; t < b->n_named_ports; t++) {
		for (size_t i = 0; db->named_used[t] && i < b->named_ports[t].n; i++)
			db->named[db->n_named++] =
			    (struct named_num){.table = t, .port = b->named_ports[t].v[i].port};
	}
	if (db->n_named)
		qsort(db->named, db->n_named, sizeof(*db->named), cmp_named_num);
	for (size_t i = 0; i < db->n_named; i++) {
		if (!u || cmp_named_num(&db->named[u - 1], &db->named[i]) != 0)
			db->named[u++] = db->named[i];
	}
	db->n_named = u;
	db->n_all = db->n_used + db->n_named;
	return 0;
}

/* The sets this direction's rules name, numbered in bundle order. */
static int dir_sets(struct dir_build *db)
{
	const struct bundle *b = db->b;
	int ret;

	db->local = calloc(b->n_sets ? b->n_sets : 1, sizeof(*db->local));
	db->used = malloc((b->n_sets ? b->n_sets : 1) * sizeof(*db->used));
	db->rule_sets = calloc(db->c->n_rules ? db->c->n_rules : 1, sizeof(*db->rule_sets));
	if (!db->local || !db->used || !db->rule_sets)
		return -ENOMEM;
	for (size_t i = 0; i < db->c->n_rules; i++) {
		const struct bundle_rule *br = &db->c->rules[i];

		for (size_t s = 0; !br->any_peer && s < br->n_sets; s++)
			db->local[br->sets[s]] = 1;
	}
	for (size_t s = 0; s < b->n_sets; s++) {
		if (db->local[s]) {
			db->used[db->n_used] = (uint32_t)s;
			db->local[s] = (uint32_t)++db->n_used;
		}
	}
	ret = dir_named(db);
	if (ret < 0)
		return ret;
	db->mark = calloc(db->n_all ? db->n_all : 1, sizeof(*db->mark));
	if (!db->mark)
		return -ENOMEM;
	for (size_t i = 0; i < db->c->n_rules; i++) {
		const struct bundle_rule *br = &db->c->rules[i];
		size_t n = br->any_peer ? 0 : br->n_sets;

		db->rule_sets[i] = malloc((n ? n : 1) * sizeof(**db->rule_sets));
		if (!db->rule_sets[i])
			return -ENOMEM;
		for (size_t s = 0; s < n; s++)
			db->rule_sets[i][s] = db->local[br->sets[s]] - 1;
	}
	return 0;
}

/* The rule chains and the fallback's. */
static int dir_rule_chains(struct dir_build *db)
{
	struct nft_plan *p = db->p;
	const char *dn = direction_name(db->dir);
	char name[NFT_NAME_MAX];
	uint32_t ci;
	int ret = 0;

	for (size_t i = 0; ret == 0 && i <= db->c->n_rules; i++) {
		bool fb = i == db->c->n_rules;
		const struct bundle_rule *br = fb ? NULL : &db->c->rules[i];
		struct nft_plan_rule r = {.dir = db->dir};

		if (fb) {
			snprintf(name, sizeof(name), "%s_fallback", dn);
			r.kind = NFT_PLAN_FALLBACK;
			r.pos = NFT_POSITION_FALLBACK;
			r.verdict = db->c->fallback;
			r.id = db->c->fallback_reason;
		} else {
			snprintf(name, sizeof(name), "%s_%zu", dn, i);
			r.kind = NFT_PLAN_RULE;
			r.pos = (long)i;
			r.src = br;
			r.id = br->id;
			r.verdict = rule_verdict(br->action, br->mode);
		}
		ret = nft_plan_add_chain(p, name, fb ? NFT_PLAN_FALLBACK_CHAIN : NFT_PLAN_RULE_CHAIN, db->dir,
					 &ci);
		if (ret < 0)
			break;
		if (i == 0)
			db->rule_chain0 = ci;
		if (fb)
			db->fallback_chain = ci;
		p->chains[ci].pos = r.pos;
		p->chains[ci].first_rule = p->n_rules;
		ret = nft_plan_add_rule(p, &r); /* after its observe twin, if any */
		p->chains[ci].n_rules = p->n_rules - p->chains[ci].first_rule;
	}
	return ret;
}

/* What the base chain of the direction ends with, after its fixed rules. */
struct dir_out {
	bool has_maps;
	uint32_t maps[4]; /* hosts v4, hosts v6, ranges v4, ranges v6 */
	uint32_t none;	  /* the chain of a peer in no set */
};

static int dir_build(struct nft_plan *p, const struct bundle *b, enum direction dir, struct dir_out *out,
		     char *err, size_t errsz)
{
	static const int families[] = {AF_INET, AF_INET6};
	struct dir_build db = {.p = p, .b = b, .dir = dir, .c = &p->ep->chains[dir]};
	const char *dn = direction_name(dir);
	size_t first_map = p->n_maps;
	int ret;

	memset(out, 0, sizeof(*out));
	ret = dir_sets(&db);
	if (ret == 0)
		ret = dir_rule_chains(&db);
	if (ret == 0) {
		long none = decide(&db, NULL, 0);

		ret = none < 0 ? (int)none : 0;
		db.none = none;
	}
	/* The address maps exist whenever a rule names a set or a port,
	 * so that which maps exist depends on the rules alone. */
	out->has_maps = db.n_used > 0 || db.n_named_used > 0;
	for (size_t f = 0; ret == 0 && out->has_maps && f < 2; f++) {
		struct family_build fb = {.family = families[f], .len = nft_addr_len(families[f])};
		char name[NFT_NAME_MAX];

		snprintf(name, sizeof(name), "%s_hosts_v%d", dn, f ? 6 : 4);
		ret = nft_plan_add_map(p, name, NFT_MAP_HOSTS, dir, families[f], &out->maps[f]);
		if (ret == 0) {
			snprintf(name, sizeof(name), "%s_ranges_v%d", dn, f ? 6 : 4);
			ret = nft_plan_add_map(p, name, NFT_MAP_RANGES, dir, families[f], &out->maps[2 + f]);
		}
		if (ret == 0)
			ret = family_maps(&db, &fb, out->maps[f], out->maps[2 + f]);
		family_release(&fb);
	}
	if (ret == 0)
		ret = make_chains(&db, first_map);
	if (ret == 0)
		out->none = db.decisions[db.none].target;
	if (ret == -EEXIST) {
		snprintf(err, errsz, "%s chain: two classes of peers hash to one chain name", dn);
		ret = -EINVAL;
	}
	dir_release(&db);
	return ret;
}

static int base_chain(struct nft_plan *p, enum direction dir, const struct dir_out *o)
{
	struct nft_plan_chain *c = &p->chains[dir];
	int ret = 0;

	c->first_rule = p->n_rules;
	ret = nft_plan_fixed_rules(p, dir);
	for (int m = 0; ret == 0 && o->has_maps && m < 4; m++) {
		struct nft_plan_rule r = {.kind = NFT_PLAN_DISPATCH,
					  .dir = dir,
					  .family = m % 2 ? AF_INET6 : AF_INET,
					  .map = o->maps[m]};

		ret = nft_plan_add_rule(p, &r);
	}
	if (ret == 0) {
		struct nft_plan_rule g = {.kind = NFT_PLAN_GOTO, .dir = dir, .target = o->none};

		ret = nft_plan_add_rule(p, &g);
	}
	c->n_rules = p->n_rules - c->first_rule;
	return ret;
}

int nft_plan_maps_build(struct nft_plan *p, const struct bundle *b, char *err, size_t errsz)
{
	struct dir_out out[DIR_COUNT];
	int ret = 0;

	for (int d = 0; ret == 0 && d < DIR_COUNT; d++)
		ret = dir_build(p, b, d, &out[d], err, errsz);
	for (int d = 0; ret == 0 && d < DIR_COUNT; d++)
		ret = base_chain(p, d, &out[d]);
	return ret;
}
