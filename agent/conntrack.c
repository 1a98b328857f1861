/* Tightening cuts live connections (see conntrack.h): judging an entry by
 * a bundle, telling whether an update can have stopped allowing anything,
 * and the cut itself over the dataplane interface. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bulkhead/log.h"
#include "conntrack.h"
#include "endpoint.h"
#include "hits.h"
#include "status.h"

/* Cut connections named one by one in the log, per update; the rest are
 * counted. */
#define CT_LOG_MAX 8

bool conntrack_has_ports(uint8_t proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP ||
	       proto == IPPROTO_UDPLITE || proto == IPPROTO_DCCP;
}

/* ---- judging one entry ---- */

static bool is_loopback(const struct bh_addr *a)
{
	static const uint8_t v6_lo[16] = {[15] = 1};
	if (a->family == AF_INET)
		return a->bytes[0] == 127;
	return memcmp(a->bytes, v6_lo, 16) == 0;
}

static bool is_local(const struct bh_addr *a, const struct bh_addr *local, size_t n)
{
	if (is_loopback(a))
		return true;
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = addr_cmp(&local[mid], a);
		if (c == 0)
			return true;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

void conntrack_judge(const struct bundle *b, const struct bundle_endpoint *ep, const struct bh_addr *local,
		     size_t n_local, const struct ct_entry *ce, struct ct_judgement *out)
{
	const struct ct_tuple *t = ce->has_master ? &ce->master : &ce->orig;
	*out = (struct ct_judgement){.fate = CT_KEEP};
	struct packet *p = &out->pkt;
	p->src = t->src;
	p->proto = t->proto;
	/* The rules saw the destination after DNAT (the nat hooks run
	 * before priority 0): where the answers come from. A master's own
	 * reply is not in the entry; its original tuple stands. */
	p->dst = ce->has_master ? t->dst : ce->reply.src;
	if (conntrack_has_ports(t->proto))
		p->dport = ce->has_master ? t->dport : ce->reply.sport;
	if (t->proto == IPPROTO_ICMP || t->proto == IPPROTO_ICMPV6) {
		p->icmp_type = t->icmp_type;
		p->icmp_code = t->icmp_code;
	}
	bool src_local = is_local(&p->src, local, n_local);
	if (src_local && is_local(&p->dst, local, n_local)) {
		out->loopback = true; /* accepted by every chain (step 1) */
		return;
	}
	out->dir = src_local ? DIR_EGRESS : DIR_INGRESS;
	eval_packet(b, ep, out->dir, p, &out->res);
	out->fate = out->res.verdict == VERDICT_DROP	? CT_CUT
		    : out->res.verdict == VERDICT_AUDIT ? CT_AUDIT
							: CT_KEEP;
}

/* ---- can an update have stopped allowing anything? ---- */

/* Verdicts from strictest: a change towards the left tightens. */
static int rank(enum verdict v)
{
	return v == VERDICT_DROP ? 0 : v == VERDICT_AUDIT ? 1 : 2;
}

/* a + 1 within its family; false past the last address. */
static bool addr_succ(const struct bh_addr *a, struct bh_addr *out)
{
	*out = *a;
	for (int i = a->family == AF_INET ? 3 : 15; i >= 0; i--)
		if (++out->bytes[i] != 0)
			return true;
	return false;
}

/* Every address of b is in a. Both sorted and disjoint, as bundles hold
 * them (hosts sets: single addresses; range sets: merged). */
static bool covers(const struct range_list *a, const struct range_list *b)
{
	size_t j = 0;
	for (size_t i = 0; i < b->n; i++) {
		struct bh_addr need = b->v[i].lo;
		for (;;) {
			while (j < a->n && addr_cmp(&a->v[j].hi, &need) < 0)
				j++;
			if (j == a->n || addr_cmp(&a->v[j].lo, &need) > 0)
				return false;
			if (addr_cmp(&a->v[j].hi, &b->v[i].hi) >= 0)
				break;
			if (!addr_succ(&a->v[j].hi, &need))
				break;
			j++;
		}
	}
	return true;
}

enum {
	REL_KNOWN = 1 << 0,
	REL_GROWN = 1 << 1,  /* new ⊇ old */
	REL_SHRUNK = 1 << 2, /* new ⊆ old */
};

struct conntrack_memo {
	char old_hash[BUNDLE_HASH_HEX + 1], new_hash[BUNDLE_HASH_HEX + 1];
	uint8_t *rel; /* by set index in the new bundle */
	size_t n;
};

struct conntrack_memo *conntrack_memo_new(void)
{
	return xcalloc(1, sizeof(struct conntrack_memo));
}

void conntrack_memo_free(struct conntrack_memo *m)
{
	if (!m)
		return;
	free(m->rel);
	free(m);
}

static const struct bundle_set *find_set(const struct bundle *b, const char *id)
{
	size_t lo = 0, hi = b->n_sets;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(b->sets[mid].id, id);
		if (c == 0)
			return &b->sets[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* How new set ni of b relates to the set of the same id in old_b. */
static uint8_t set_relation(const struct bundle *old_b, const struct bundle *b, uint32_t ni,
			    struct conntrack_memo *m)
{
	if (m && ni < m->n && (m->rel[ni] & REL_KNOWN))
		return m->rel[ni];
	const struct bundle_set *ns = &b->sets[ni], *os = find_set(old_b, ns->id);
	uint8_t rel = REL_KNOWN;
	if (os && os->kind == ns->kind) {
		if (covers(&ns->v4, &os->v4) && covers(&ns->v6, &os->v6))
			rel |= REL_GROWN;
		if (covers(&os->v4, &ns->v4) && covers(&os->v6, &ns->v6))
			rel |= REL_SHRUNK;
	}
	if (m && ni < m->n)
		m->rel[ni] = rel;
	return rel;
}

static void memo_for(struct conntrack_memo *m, const struct bundle *old_b, const struct bundle *b)
{
	if (!m ||
	    (strcmp(m->old_hash, old_b->hash) == 0 && strcmp(m->new_hash, b->hash) == 0 && m->n == b->n_sets))
		return;
	memcpy(m->old_hash, old_b->hash, sizeof(m->old_hash));
	memcpy(m->new_hash, b->hash, sizeof(m->new_hash));
	free(m->rel);
	m->n = b->n_sets;
	m->rel = m->n ? xcalloc(m->n, 1) : NULL;
}

static bool same_port(const struct port_match *a, const struct port_match *b)
{
	if (!a->name != !b->name || (a->name && strcmp(a->name, b->name) != 0))
		return false;
	return a->proto == b->proto && a->lo == b->lo && a->hi == b->hi && a->icmp_type == b->icmp_type &&
	       a->icmp_code == b->icmp_code;
}

/* The order of a table's pairs (bundle.h): address, then port. */
static int named_cmp(const struct bundle_named_addr *x, const struct bundle_named_addr *y)
{
	int c = addr_cmp(&x->addr, &y->addr);
	return c ? c : (x->port > y->port) - (x->port < y->port);
}

/* Every pair of b is one of a's; both sorted and unique. */
static bool named_covers(const struct bundle_named_port *a, const struct bundle_named_port *b)
{
	size_t j = 0;
	for (size_t i = 0; i < b->n; i++) {
		while (j < a->n && named_cmp(&a->v[j], &b->v[i]) < 0)
			j++;
		if (j == a->n || named_cmp(&a->v[j], &b->v[i]) != 0)
			return false;
	}
	return true;
}

/* How the named-port table of new port r relates to that of old port o:
 * a renumbering takes a pair away as surely as a member leaving does. */
static uint8_t named_relation(const struct bundle *old_b, const struct port_match *o, const struct bundle *b,
			      const struct port_match *r)
{
	if (!r->name)
		return REL_KNOWN | REL_GROWN | REL_SHRUNK;
	if (o->named_table >= old_b->n_named_ports || r->named_table >= b->n_named_ports)
		return REL_KNOWN;
	const struct bundle_named_port *ot = &old_b->named_ports[o->named_table],
				       *nt = &b->named_ports[r->named_table];
	uint8_t rel = REL_KNOWN;
	if (strcmp(ot->id, nt->id) != 0)
		return rel;
	if (named_covers(nt, ot))
		rel |= REL_GROWN;
	if (named_covers(ot, nt))
		rel |= REL_SHRUNK;
	return rel;
}

/* Whether new rule r (of b) matches at least (want REL_GROWN), at most
 * (REL_SHRUNK) or exactly (both) what old rule o (of old_b) matched. */
static bool rule_kept(const struct bundle *old_b, const struct bundle_rule *o, const struct bundle *b,
		      const struct bundle_rule *r, uint8_t want, struct conntrack_memo *m)
{
	if (o->action != r->action || o->mode != r->mode || o->any_port != r->any_port ||
	    o->n_ports != r->n_ports)
		return false;
	for (size_t i = 0; i < r->n_ports; i++)
		if (!same_port(&o->ports[i], &r->ports[i]) ||
		    (named_relation(old_b, &o->ports[i], b, &r->ports[i]) & want) != want)
			return false;
	if (o->any_peer || r->any_peer) {
		/* Any address: grows into it, shrinks out of it. */
		if (o->any_peer && r->any_peer)
			return true;
		return r->any_peer ? want == REL_GROWN : want == REL_SHRUNK;
	}
	if (o->n_sets != r->n_sets)
		return false;
	for (size_t i = 0; i < r->n_sets; i++) {
		if (strcmp(old_b->sets[o->sets[i]].id, b->sets[r->sets[i]].id) != 0)
			return false;
		if ((set_relation(old_b, b, r->sets[i], m) & want) != want)
			return false;
	}
	return true;
}

/* The new chain is the old one with allow rules added or grown, enforced
 * deny rules removed or shrunk, audit deny rules untouched and a fallback
 * no stricter. Then no packet is stricter: the first old rule a packet
 * matched either drops it (nothing is stricter), or is kept and still
 * matches it, and what may now match before it only accepts. A greedy
 * walk: it may miss an alignment that exists (then a dump is done for
 * nothing), never accept one that does not. */
static bool chain_loosens(const struct bundle *old_b, const struct bundle_chain *oc, const struct bundle *b,
			  const struct bundle_chain *c, struct conntrack_memo *m)
{
	if (rank(c->fallback) < rank(oc->fallback))
		return false;
	size_t i = 0, j = 0;
	while (i < oc->n_rules || j < c->n_rules) {
		const struct bundle_rule *o = i < oc->n_rules ? &oc->rules[i] : NULL;
		const struct bundle_rule *r = j < c->n_rules ? &c->rules[j] : NULL;
		if (o && r) {
			enum verdict v = rule_verdict(r->action, r->mode);
			uint8_t want = v == VERDICT_ACCEPT ? REL_GROWN
				       : v == VERDICT_DROP ? REL_SHRUNK
							   : REL_GROWN | REL_SHRUNK;
			if (rule_kept(old_b, o, b, r, want, m)) {
				i++;
				j++;
				continue;
			}
		}
		if (r && rule_verdict(r->action, r->mode) == VERDICT_ACCEPT)
			j++; /* an allow rule added */
		else if (o && rule_verdict(o->action, o->mode) == VERDICT_DROP)
			i++; /* a deny rule removed */
		else
			return false;
	}
	return true;
}

bool conntrack_tightened(const struct bundle *old_b, const struct bundle_endpoint *old_ep,
			 const struct bundle *b, const struct bundle_endpoint *ep,
			 struct conntrack_memo *memo)
{
	if (!old_b || !old_ep)
		return true;
	memo_for(memo, old_b, b);
	for (int d = 0; d < DIR_COUNT; d++)
		if (!chain_loosens(old_b, &old_ep->chains[d], b, &ep->chains[d], memo))
			return true;
	return false;
}

/* ---- the cut ---- */

static uint64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

struct cut {
	const char *name;
	const struct bundle *b;
	const struct bundle_endpoint *ep;
	const struct bh_addr *local;
	size_t n_local;
	void (*audit)(void *arg, const struct ct_judgement *j);
	void *arg;
	struct ct_entry *doomed; /* to delete */
	size_t n_doomed, cap;
	struct conntrack_cut_stats *st;
};

static void describe(const struct ct_judgement *j, char *buf, size_t size)
{
	char src[ADDR_STRLEN], dst[ADDR_STRLEN], proto[16], port[16] = "";
	const struct packet *p = &j->pkt;
	addr_format(&p->src, src);
	addr_format(&p->dst, dst);
	if (proto_name(p->proto))
		snprintf(proto, sizeof(proto), "%s", proto_name(p->proto));
	else
		snprintf(proto, sizeof(proto), "proto %u", p->proto);
	if (conntrack_has_ports(p->proto))
		snprintf(port, sizeof(port), " port %u", p->dport);
	snprintf(buf, size, "%s %s -> %s%s (%s: %s)", proto, src, dst, port, direction_name(j->dir),
		 j->res.reason ? j->res.reason : "?");
}

static void on_entry(void *arg, const struct ct_entry *ce)
{
	struct cut *c = arg;
	struct ct_judgement j;
	conntrack_judge(c->b, c->ep, c->local, c->n_local, ce, &j);
	c->st->loopback += j.loopback;
	if (j.fate == CT_KEEP)
		return;
	char what[256];
	describe(&j, what, sizeof(what));
	if (j.fate == CT_AUDIT) {
		if (c->st->audit++ < CT_LOG_MAX)
			log_info("endpoint %s: connection %s kept: an audit policy would cut it", c->name,
				 what);
		if (c->audit)
			c->audit(c->arg, &j);
		return;
	}
	if (c->n_doomed < CT_LOG_MAX)
		log_info("endpoint %s: cutting connection %s", c->name, what);
	if (c->n_doomed == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 16;
		c->doomed = xrealloc(c->doomed, c->cap * sizeof(*c->doomed));
	}
	c->doomed[c->n_doomed++] = *ce;
}

int conntrack_cut_ns(struct dataplane_ep *dpe, const char *name, const struct bundle *b,
		     const struct bundle_endpoint *ep, const struct bh_addr *local, size_t n_local,
		     void (*audit)(void *arg, const struct ct_judgement *j), void *arg,
		     struct conntrack_cut_stats *st, char *err, size_t errlen)
{
	struct cut c = {.name = name,
			.b = b,
			.ep = ep,
			.local = local,
			.n_local = n_local,
			.audit = audit,
			.arg = arg,
			.st = st};
	struct dataplane_ct_dump dump;
	uint64_t t0 = mono_us();
	*st = (struct conntrack_cut_stats){0};
	int r = dataplane_ct_dump(dpe, on_entry, &c, &dump, err, errlen);
	st->entries = dump.entries;
	st->malformed = dump.malformed;
	st->doomed = c.n_doomed;
	if (r == 0 && c.n_doomed)
		r = dataplane_ct_delete(dpe, c.doomed, c.n_doomed, &st->deleted, err, errlen);
	if (c.n_doomed > CT_LOG_MAX && r == 0)
		log_info("endpoint %s: and %zu more connection%s cut", name, c.n_doomed - CT_LOG_MAX,
			 c.n_doomed - CT_LOG_MAX == 1 ? "" : "s");
	free(c.doomed);
	st->us = mono_us() - t0;
	return r;
}

struct audit_ctx {
	struct endpoint_state *e;
	const struct bundle_endpoint *ep;
};

/* An audit verdict never reaches NFLOG for a connection conntrack holds:
 * it is reported here, as the rule that would have cut it. */
static void report_audit(void *arg, const struct ct_judgement *j)
{
	struct audit_ctx *a = arg;
	struct nflog_event ev = {
	    .family = j->pkt.src.family,
	    .proto = j->pkt.proto,
	    .prefix = {.verdict = VERDICT_AUDIT, .dir = j->dir, .position = NFT_POSITION_FALLBACK},
	};
	memcpy(ev.src, j->pkt.src.bytes, sizeof(ev.src));
	memcpy(ev.dst, j->pkt.dst.bytes, sizeof(ev.dst));
	if (conntrack_has_ports(j->pkt.proto)) {
		ev.has_port = true;
		ev.port = j->pkt.dport;
	} else if (j->pkt.proto == IPPROTO_ICMP || j->pkt.proto == IPPROTO_ICMPV6) {
		ev.has_icmp = true;
		ev.icmp_type = j->pkt.icmp_type;
		ev.icmp_code = j->pkt.icmp_code;
	}
	if (j->res.rule)
		ev.prefix.position = (long)(j->res.rule - a->ep->chains[j->dir].rules);
	hits_packet(a->e, &ev);
}

static int cut_now(struct endpoint_state *e, const struct bundle *b, const struct bundle_endpoint *ep)
{
	char err[512] = "";
	struct conntrack_cut_stats st;
	struct audit_ctx a = {.e = e, .ep = ep};
	const struct bh_addr *local;
	size_t n_local;
	/* The endpoint's own addresses: what its namespace has, else what the
	 * bundle says it has (a dataplane that reads none). */
	if (!dataplane_local_addresses(e->dp, &local, &n_local)) {
		local = ep->addrs;
		n_local = ep->n_addrs;
	}
	int r =
	    conntrack_cut_ns(e->dp, e->name, b, ep, local, n_local, report_audit, &a, &st, err, sizeof(err));
	e->ct.dumps++;
	e->ct.entries += st.entries;
	e->ct.malformed += st.malformed;
	e->ct.audit += st.audit;
	e->ct.cut += st.deleted;
	e->ct.last_us = st.us;
	if (r < 0) {
		/* Said once; the periodic check tries again. */
		if (!e->ct.retry)
			log_error(
			    "endpoint %s: cutting the connections bundle %.12s no longer allows: %s; tried "
			    "again at every check",
			    e->name, b->hash, err[0] ? err : strerror(-r));
		e->ct.failures++;
	} else if (st.doomed || st.audit) {
		log_info("endpoint %s: bundle %.12s: %zu of %zu tracked connection%s cut, %zu kept for audit "
			 "(%.1f ms)",
			 e->name, b->hash, st.deleted, st.entries, st.entries == 1 ? "" : "s", st.audit,
			 st.us / 1000.0);
	} else {
		log_debug("endpoint %s: bundle %.12s: none of %zu tracked connections to cut (%.1f ms)",
			  e->name, b->hash, st.entries, st.us / 1000.0);
	}
	if (st.malformed)
		log_warn("endpoint %s: %zu conntrack message%s malformed, skipped", e->name, st.malformed,
			 st.malformed == 1 ? "" : "s");
	status_touch(e->env->status);
	return r;
}

void conntrack_cut(struct endpoint_state *e, const struct bundle *old_b, const struct bundle_endpoint *old_ep)
{
	struct endpoint_env *env = e->env;
	const struct bundle *b = e->applied ? e->applied->b : NULL;
	const struct bundle_endpoint *ep = b ? bundle_find_endpoint(b, e->name) : NULL;
	/* The quarantine table is a waiting room, not a policy: what it lets
	 * live on is judged by the real table when that comes, so nothing
	 * that table allows is cut. */
	if (!ep || !e->dp || !dataplane_tracks(env->dp) || endpoint_quarantined(e))
		return;
	if (!e->ct.retry && !conntrack_tightened(old_b, old_ep, b, ep, env->ct_memo)) {
		e->ct.skipped++;
		return;
	}
	bool retried = e->ct.retry;
	e->ct.retry = cut_now(e, b, ep) < 0;
	if (retried && !e->ct.retry)
		log_info(
		    "endpoint %s: the connections bundle %.12s no longer allows are cut, after %u failure%s",
		    e->name, b->hash, e->ct.failures, e->ct.failures == 1 ? "" : "s");
}

void conntrack_retry(struct endpoint_state *e)
{
	if (e->ct.retry && endpoint_enforced(e))
		conntrack_cut(e, NULL, NULL);
}
