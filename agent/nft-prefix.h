/* nft-prefix: what each logging rule of table inet bulkhead puts in its
 * NFLOG messages, written by the dataplane and read back by nflog.c. */
#pragma once

#include "bulkhead/common.h"

#define NFT_NFLOG_GROUP_DEFAULT 100
/* Bytes of each logged packet NFLOG copies: IPv6 + TCP headers with room
 * to spare; the denied-flow report needs headers only. */
#define NFT_NFLOG_SNAPLEN 128

/* NFLOG prefix of every logging rule: "bh:V:Dp"
 *   V  'D' the packet was dropped, 'A' audit: accepted, but an audit-mode
 *      policy would have dropped it, 'P' passed: the first packet of a new
 *      connection that an allow rule or an accepting fallback let in,
 *      logged only where the bundle observes every accepted connection
 *      (policy "observe": "all"; nft-plan.h, observe rules)
 *   D  'i' ingress chain, 'e' egress chain
 *   p  the decimal position of the deciding bundle rule in that direction's
 *      list (bundle_endpoint.chains[dir].rules[p]), '-' for the chain's
 *      fallback (bundle_chain.fallback_reason names it), or 'x' for the
 *      drop of packets conntrack calls invalid (RULE_ID_CT_INVALID)
 * e.g. "bh:D:i3", "bh:A:e-", "bh:D:ix", "bh:P:i0". Several nft rules made from one bundle rule
 * (one per family and port) share its prefix. The endpoint is the
 * namespace the NFLOG socket reads from, and the rule id comes from the
 * bundle the agent applied, so the prefix stays short: the kernel copies
 * it into every logged packet. */
#define NFT_PREFIX_MAX	      32
#define NFT_POSITION_FALLBACK (-1L)
#define NFT_POSITION_INVALID  (-2L) /* 'x': the chain's "ct state invalid" drop */

struct nft_prefix {
	enum verdict verdict; /* VERDICT_DROP, VERDICT_AUDIT or VERDICT_ACCEPT ('P') */
	enum direction dir;
	long position; /* rule index, or NFT_POSITION_FALLBACK */
};

void nft_prefix_format(const struct nft_prefix *p, char buf[NFT_PREFIX_MAX]);
/* 0, or -EINVAL when s is not a prefix of this format (an NFLOG message
 * from something else in the namespace). */
BH_MUST_CHECK int nft_prefix_parse(const char *s, struct nft_prefix *out);
