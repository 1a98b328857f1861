/* Reference evaluator: DESIGN §2 evaluation over a bundle, one packet at a
 * time. The oracle the kernel dataplane is tested against. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "bulkhead/addr.h"
#include "bulkhead/bundle.h"

/* A packet at the endpoint: src and dst as on the wire. */
struct packet {
	struct bh_addr src, dst;
	uint8_t proto;	   /* IPPROTO_* */
	uint16_t dport;	   /* TCP, UDP, SCTP */
	uint8_t icmp_type; /* ICMP, ICMPv6 */
	uint8_t icmp_code;
	bool established; /* reply or related to an accepted connection */
	bool loopback;	  /* on the loopback interface */
};

struct eval_result {
	enum verdict verdict;
	const struct bundle_rule *rule; /* the deciding rule, or NULL */
	const char *reason;		/* rule id, or a RULE_ID_* (vocab.h) */
};

/* Verdict for pkt in direction dir at endpoint ep of bundle b (the peer is
 * pkt->src for ingress, pkt->dst for egress). */
void eval_packet(const struct bundle *b, const struct bundle_endpoint *ep, enum direction dir,
		 const struct packet *pkt, struct eval_result *out);

/* ICMPv6 neighbour discovery (router/neighbour solicitation and advert). */
bool eval_is_neighbour_discovery(const struct packet *pkt);

/* A packet's whole path: the source endpoint's egress, then the
 * destination endpoint's ingress. A side with no endpoint (an address
 * outside the inventory) has no table and accepts. */
struct path_result {
	bool has_egress, has_ingress;
	struct eval_result egress, ingress;
	enum verdict verdict; /* drop if either side drops, else audit if either audits */
	bool delivered;	      /* neither side dropped (audit delivers) */
};

void eval_path(const struct bundle *src_b, const struct bundle_endpoint *src_ep, const struct bundle *dst_b,
	       const struct bundle_endpoint *dst_ep, const struct packet *pkt, struct path_result *out);
