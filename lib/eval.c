/* Reference evaluator (DESIGN §2 evaluation) over a bundle. Kept as plain
 * as possible: it is the oracle the nftables dataplane is checked against. */
#include <netinet/in.h>
#include <string.h>

#include "bulkhead/eval.h"

bool eval_is_neighbour_discovery(const struct packet *pkt)
{
	/* Router solicitation/advertisement, neighbour solicitation/advertisement. */
	return pkt->proto == IPPROTO_ICMPV6 && pkt->src.family == AF_INET6 && pkt->icmp_type >= 133 &&
	       pkt->icmp_type <= 136;
}

/* A named port (DESIGN §2): resolved on the destination. In a bundle only
 * egress rules carry names (the compiler resolved ingress ones), and the
 * pair (destination, port) must be one of its table's: what the endpoint
 * owning that address calls the name, or, for a contested address, nothing
 * (allow) or any claimant's number (deny). */
static bool named_port_matches(const struct bundle *b, const struct port_match *m, enum direction dir,
			       const struct packet *pkt)
{
	if (dir != DIR_EGRESS || m->named_table >= b->n_named_ports)
		return false;
	return bundle_named_port_contains(&b->named_ports[m->named_table], &pkt->dst, pkt->dport);
}

static bool port_matches(const struct bundle *b, const struct port_match *m, enum direction dir,
			 const struct packet *pkt)
{
	if (m->proto != pkt->proto)
		return false;
	if (m->name)
		return named_port_matches(b, m, dir, pkt);
	switch (m->proto) {
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		if (m->icmp_type >= 0 && m->icmp_type != pkt->icmp_type)
			return false;
		return m->icmp_code < 0 || m->icmp_code == pkt->icmp_code;
	default:
		return pkt->dport >= m->lo && pkt->dport <= m->hi;
	}
}

static bool rule_matches(const struct bundle *b, const struct bundle_rule *r, enum direction dir,
			 const struct bh_addr *peer, const struct packet *pkt)
{
	bool peer_ok = r->any_peer;
	for (size_t i = 0; !peer_ok && i < r->n_sets; i++) {
		const struct bundle_set *s = &b->sets[r->sets[i]];
		peer_ok = range_list_contains(peer->family == AF_INET ? &s->v4 : &s->v6, peer);
	}
	if (!peer_ok)
		return false;
	if (r->any_port)
		return true;
	for (size_t i = 0; i < r->n_ports; i++) {
		if (port_matches(b, &r->ports[i], dir, pkt))
			return true;
	}
	return false;
}

void eval_packet(const struct bundle *b, const struct bundle_endpoint *ep, enum direction dir,
		 const struct packet *pkt, struct eval_result *out)
{
	*out = (struct eval_result){.verdict = VERDICT_ACCEPT};
	if (pkt->established) {
		out->reason = RULE_ID_ESTABLISHED;
		return;
	}
	if (pkt->loopback) {
		out->reason = RULE_ID_LOOPBACK;
		return;
	}
	if (eval_is_neighbour_discovery(pkt)) {
		out->reason = RULE_ID_NEIGHBOUR_DISCOVERY;
		return;
	}

	const struct bundle_chain *chain = &ep->chains[dir];
	const struct bh_addr *peer = dir == DIR_INGRESS ? &pkt->src : &pkt->dst;
	for (size_t i = 0; i < chain->n_rules; i++) {
		const struct bundle_rule *r = &chain->rules[i];
		if (!rule_matches(b, r, dir, peer, pkt))
			continue;
		out->rule = r;
		out->reason = r->id;
		out->verdict = rule_verdict(r->action, r->mode);
		return;
	}
	out->verdict = chain->fallback;
	out->reason = chain->fallback_reason;
}

void eval_path(const struct bundle *src_b, const struct bundle_endpoint *src_ep, const struct bundle *dst_b,
	       const struct bundle_endpoint *dst_ep, const struct packet *pkt, struct path_result *out)
{
	*out = (struct path_result){0};
	out->has_egress = src_b && src_ep;
	out->has_ingress = dst_b && dst_ep;
	if (out->has_egress)
		eval_packet(src_b, src_ep, DIR_EGRESS, pkt, &out->egress);
	if (out->has_ingress)
		eval_packet(dst_b, dst_ep, DIR_INGRESS, pkt, &out->ingress);
	/* Egress decides first: a packet its source drops never arrives. */
	enum verdict e = out->has_egress ? out->egress.verdict : VERDICT_ACCEPT;
	enum verdict i = out->has_ingress ? out->ingress.verdict : VERDICT_ACCEPT;
	if (e == VERDICT_DROP || i == VERDICT_DROP)
		out->verdict = VERDICT_DROP;
	else if (e == VERDICT_AUDIT || i == VERDICT_AUDIT)
		out->verdict = VERDICT_AUDIT;
	else
		out->verdict = VERDICT_ACCEPT;
	out->delivered = out->verdict != VERDICT_DROP;
}
