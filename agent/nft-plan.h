/* nft-plan: one bundle endpoint as the table inet bulkhead it becomes,
 * as plain data: chains, sets and maps (with their elements), and every
 * rule with what it matches, its verdict, NFLOG prefix and comment. Pure:
 * no libnftnl, no kernel. The batch (nft-batch.c) and the text
 * (nft-text.c) both walk one plan, so --print-ruleset shows exactly what
 * the agent loads.
 *
 * Two forms of one bundle endpoint, which decide every packet alike:
 *
 * - NFT_FORM_MAPS (the default; nft-plan-maps.c): each direction's ordered
 *   rule list compiled into a few lookups, so what a connection's first
 *   packet costs depends neither on the number of rules nor on the number
 *   of group members. Peer address → its class (a hash map for label-group
 *   members, an interval map for network groups), class → protocol and
 *   port (interval maps), answering with a goto to the deciding rule's own
 *   chain, which counts, logs and gives the verdict. How overlapping rules
 *   become disjoint keys is written out in nft-plan-maps.c.
 * - NFT_FORM_LINEAR: each chain a list of rules walked until one matches
 *   (one nft rule per family, peer set and port); --dataplane nft-linear.
 *
 * NFT_FORM_AUTO (the agent's default) picks one per endpoint: the linear
 * form while each direction walks at most NFT_LINEAR_WALK_MAX rules, the
 * maps past that. A short list costs a packet no more than the maps' few
 * lookups, and its membership deltas are set-element deltas that the
 * kernel takes at once; a verdict map with goto elements makes the kernel
 * re-validate every element on each delta (bench/element-delta.sh: 0.34
 * ms linear, 5.2 ms maps, 10,000 members), which only a long list repays
 * (bench/packet-path.sh). An endpoint that crosses the line gets its table
 * replaced whole, as any change of shape does. Named ports numbered many
 * ways (NFT_NAMED_NUMBERS_MAX) keep the linear form too. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "bulkhead/bundle.h"
#include "nft-prefix.h"
#include "nft.h"

/* A hosts set is a hash of single addresses. A member range longer than
 * this is no run of endpoint addresses: the linear form makes its set an
 * interval set (same members), the map form puts it with the network
 * groups' ranges, so that expansion stays linear in the input. */
#define NFT_HOSTS_RANGE_MAX 256

/* A rule's comment: its id made safe to print (nft_plan_rule_comment()). */
#define NFT_COMMENT_MAX 128

/* A named-port set's key as nft takes it: the address (4 or 16 bytes),
 * then the port in a 4-byte field (big-endian, 2 bytes of zeros after). */
#define NFT_NAMED_KEY_MAX 20

/* One nft set of the linear form: a bundle set's members of one family,
 * or (named set) a bundle_named_port table's pairs of one family, a hash
 * of `ipv4_addr . inet_service` (ipv6_addr) that an egress rule naming a
 * port looks the destination address and port up in. */
struct nft_plan_set {
	char name[NFT_SET_NAME_MAX];
	const struct bundle_set *src;	       /* NULL for a named set */
	const struct range_list *members;      /* src's list of this family; NULL for a named set */
	const struct bundle_named_port *named; /* a named set's table; else NULL */
	/* A named set's keys (nft_plan_named_key_len() bytes each, zero
	 * past it), sorted by memcmp and unique; owned by the plan. */
	uint8_t (*keys)[NFT_NAMED_KEY_MAX];
	size_t n_keys;
	int family; /* AF_INET or AF_INET6 */
	bool interval;
	uint32_t id; /* NFTA_SET_ID within a transaction that creates it, from 1 */
	/* A hosts set with many members: the kernel's fixed-size hash, sized
	 * for this many elements (NFTA_SET_DESC_SIZE, also its cap), as the
	 * map form's hosts maps (nft_plan_map.size). 0: the resizable hash. */
	uint32_t size;
	uint64_t n_elems; /* addresses in members (not interval) */
};

/* The key length of a named set of family: 8 or 20. */
static inline unsigned nft_plan_named_key_len(int family)
{
	return family == AF_INET ? 8 : 20;
}

/* ---- maps (the map form) ----------------------------------------------- */

enum nft_map_kind {
	NFT_MAP_HOSTS,	/* peer address → chain; a hash (type ipv4_addr/ipv6_addr : verdict) */
	NFT_MAP_RANGES, /* peer address intervals → chain (flags interval) */
	NFT_MAP_PORTS,	/* meta l4proto . th dport intervals → chain: TCP, UDP, SCTP */
	NFT_MAP_ICMP,	/* meta l4proto . th sport (an ICMP header's type·code) intervals → chain */
};

/* One element: the keys lo..hi (inclusive; a hosts map's lo == hi) go to
 * chain target (an index into nft_plan.chains). Keys are big-endian bytes:
 * an address (nft_addr_len() of the map's family), or for PORTS and ICMP
 * the protocol number then the 16-bit value (port, or type << 8 | code);
 * the bytes past the key are zero (the diff compares all 16). */
struct nft_plan_elem {
	uint8_t lo[16], hi[16];
	uint32_t target;
};

struct nft_plan_map {
	char name[NFT_NAME_MAX];
	enum nft_map_kind kind;
	enum direction dir;
	int family;	/* HOSTS, RANGES: AF_INET or AF_INET6; else 0 */
	uint32_t chain; /* PORTS, ICMP: the class chain whose lookup it is */
	uint32_t id;	/* NFTA_SET_ID within a transaction that creates it */
	/* HOSTS with many members: the kernel's fixed-size hash, sized for
	 * this many elements (NFTA_SET_DESC_SIZE, also its cap), which loads
	 * without the resizable hash's rehashing. 0: the resizable hash. */
	uint32_t size;
	struct nft_plan_elem *elems; /* sorted by lo, disjoint */
	size_t n_elems;
};

/* ---- chains and rules --------------------------------------------------- */

enum nft_chain_kind {
	NFT_PLAN_BASE_CHAIN,	 /* hook input (ingress) or output (egress): fixed rules, then the rest */
	NFT_PLAN_RULE_CHAIN,	 /* maps: one bundle rule's counter, log and verdict */
	NFT_PLAN_FALLBACK_CHAIN, /* maps: the direction's fallback */
	NFT_PLAN_CLASS_CHAIN,	 /* maps: one class of peers: its protocol and port lookups */
};

enum nft_plan_kind {
	NFT_PLAN_FIXED,	   /* one of the rules every chain starts with */
	NFT_PLAN_RULE,	   /* made from a bundle rule */
	NFT_PLAN_FALLBACK, /* no bundle rule matched */
	NFT_PLAN_DISPATCH, /* maps: the peer address looked up in map (a verdict map) */
	NFT_PLAN_LOOKUP,   /* maps: protocol and port, or ICMP type and code, looked up in map */
	NFT_PLAN_GOTO,	   /* maps: goto chain target */
};

/* One nft rule. RULE and FALLBACK match a packet when every part that is
 * set does: family, the peer address in set, port (the map form's rule
 * chains set none); then count it, log it to NFLOG (nft_plan_rule_prefix())
 * unless verdict is VERDICT_ACCEPT, and apply the verdict (VERDICT_AUDIT
 * accepts). Its comment is nft_plan_rule_comment(). DISPATCH and LOOKUP go
 * where their map says, or on to the next rule when it has no element for
 * the packet; GOTO goes to target.
 *
 * An observe rule (bundle observe all) stands right before each rule or
 * fallback that accepts (VERDICT_ACCEPT), with the same match, kind,
 * position and id (in the map form: first in the deciding rule's own
 * chain): it matches only a packet whose conntrack entry is not
 * confirmed yet ("ct status ! confirmed": the first packet of a new
 * connection; a repeated one, such as a SYN resent or a one-way UDP
 * stream, finds its entry confirmed), logs it with verdict 'P' and no
 * counter, and has no verdict, so the packet goes on to its twin, which
 * counts and accepts it. So every accepted new connection is logged once
 * by the rule that decides it, hit counts stay the twin's, and a chain
 * without observe is exactly what it was. */
struct nft_plan_rule {
	enum nft_plan_kind kind;
	enum direction dir;
	enum fixed_rule fixed;		/* NFT_PLAN_FIXED: which */
	long pos;			/* bundle rule index, or NFT_POSITION_FALLBACK, NFT_POSITION_INVALID;
					 * 0 for the other fixed rules */
	const struct bundle_rule *src;	/* NFT_PLAN_RULE */
	int family;			/* 0: any family */
	const struct nft_plan_set *set; /* NULL: any peer; else the source (ingress) or destination */
	const struct port_match *port;	/* NULL: any protocol */
	/* A named port (port->name; egress): the destination address and
	 * port are a key of this named set (of the rule's family). */
	const struct nft_plan_set *named;
	enum verdict verdict;
	bool observe;	 /* the log-only twin of the accepting rule after it (above) */
	const char *id;	 /* rule id, fallback reason or fixed rule id, as the bundle has it (NULL: none) */
	uint32_t map;	 /* DISPATCH, LOOKUP: index into nft_plan.maps */
	uint32_t target; /* GOTO: index into nft_plan.chains */
};

struct nft_plan_chain {
	char name[NFT_NAME_MAX];
	enum nft_chain_kind kind;
	enum direction dir;
	const char *hook;	    /* BASE: "input", "output"; else NULL */
	size_t first_rule, n_rules; /* its rules in nft_plan.rules */
	long pos;		    /* RULE: the bundle rule's index */
	uint64_t key;		    /* CLASS: the hash of what it decides (its name) */
};

struct nft_plan {
	enum nft_form form;
	const struct bundle_endpoint *ep; /* borrowed, like the sets' members */
	struct nft_plan_set *sets;	  /* linear form: bundle set order, v4 before v6 */
	size_t n_sets;
	struct nft_plan_map *maps; /* map form: per direction its dispatch maps, then the class maps */
	size_t n_maps, cap_maps;
	/* chains[DIR_INGRESS] and chains[DIR_EGRESS] are the base chains;
	 * the map form's other chains follow, direction by direction: rule
	 * chains in bundle order, the fallback, the classes by name. */
	struct nft_plan_chain *chains;
	size_t n_chains, cap_chains;
	struct nft_plan_rule *rules; /* chain after chain */
	size_t n_rules, cap_rules;
	bool observe; /* the bundle's observe all: accepting rules have their twins */
	bool has_tag;
	char tag[NFT_TAG_MAX]; /* nft_tag_format() of the tag given */
};

/* Plans ep of b in form, borrowing both (and their member lists) until
 * nft_plan_release(); tag NULL: none. Linear form: every set the rules
 * reference gets one nft set per family, members or not; a rule with
 * peers becomes one nft rule per family, peer set and port (no ICMP rule
 * for IPv6, no ICMPv6 rule for IPv4), one without peers one per port; a
 * named port (egress) is one per family even without peers, each looking
 * up the named set of its family, which every named-port table the rules
 * use gets (pairs or not), as bundle sets do. Map
 * form: see nft-plan-maps.c. With the bundle's observe all, each rule or
 * fallback that accepts comes right after its observe twin. 0, -ENOMEM,
 * or -EINVAL for a bundle nft cannot express, with the reason in err. p
 * is zeroed on failure. */
BH_MUST_CHECK int nft_plan_build(struct nft_plan *p, const struct bundle *b, const struct bundle_endpoint *ep,
				 const struct nft_tag *tag, enum nft_form form, char *err, size_t errsz);
void nft_plan_release(struct nft_plan *p);

/* Whether the table of a can become the table of b by element changes
 * alone: same form, same sets and maps (names, families, kinds; a hosts
 * map of a that is sized holds b's elements), and the same chains and
 * rules, the map form's class chains aside (a delta adds and removes
 * those whole, nft-batch.c). */
bool nft_plan_same_shape(const struct nft_plan *a, const struct nft_plan *b);

/* The comment nft shows with r: its id, reduced to characters that need no
 * quoting anywhere (the id comes from the bundle, which is outside input). */
void nft_plan_rule_comment(const struct nft_plan_rule *r, char buf[NFT_COMMENT_MAX]);
/* Whether r logs (a drop, an audit, or an observe rule). */
bool nft_plan_rule_logs(const struct nft_plan_rule *r);
/* The NFLOG prefix r logs with, "" when it does not log. */
void nft_plan_rule_prefix(const struct nft_plan_rule *r, char buf[NFT_PREFIX_MAX]);

/* What fixed rule rule matches in chain dir, as nft writes it, e.g.
 * "ct state invalid". */
const char *nft_plan_fixed_match(enum direction dir, enum fixed_rule rule);

/* ---- the plan as a packet sees it -------------------------------------- */

/* A packet's first packet as the kernel's rules see it (after conntrack:
 * new, not invalid). */
struct nft_packet {
	int family;	  /* AF_INET, AF_INET6 */
	uint8_t peer[16]; /* the source (ingress) or destination (egress), nft_addr_len(family) bytes */
	uint8_t l4proto;
	bool has_th;   /* the transport header's first 4 bytes are there */
	uint8_t th[4]; /* those bytes: ports, or ICMP type, code and checksum */
	bool loopback; /* came in on (ingress) or goes out of (egress) lo */
};

/* The rule of chain dir that decides pkt, walking p as the kernel walks
 * the table: the index into p->rules of the rule that gives the verdict
 * (a fixed rule, a bundle rule's, or the fallback), or -1 when the base
 * chain's policy accepts (no rule gave a verdict; never in a plan that
 * builds). For tests, and for judging packets by the compiled form. */
long nft_plan_decide(const struct nft_plan *p, enum direction dir, const struct nft_packet *pkt);

/* ---- internal: shared by nft-plan.c and nft-plan-maps.c ---------------- */

BH_MUST_CHECK int nft_plan_add_rule(struct nft_plan *p, const struct nft_plan_rule *r);
/* The fixed rules (DESIGN §2 step 1) at the end of p's rules, both forms'
 * base chains' first: each counts, the invalid drops log, as every drop
 * does. */
BH_MUST_CHECK int nft_plan_fixed_rules(struct nft_plan *p, enum direction dir);
/* A new chain (zeroed but for what is given), its index in *out. */
BH_MUST_CHECK int nft_plan_add_chain(struct nft_plan *p, const char *name, enum nft_chain_kind kind,
				     enum direction dir, uint32_t *out);
/* A new map, its index in *out. */
BH_MUST_CHECK int nft_plan_add_map(struct nft_plan *p, const char *name, enum nft_map_kind kind,
				   enum direction dir, int family, uint32_t *out);
/* A member range too long to be expanded into single addresses. */
bool nft_plan_long_range(const struct addr_range *r, int family);
/* Checks a bundle rule of chain dir of b nft can express: action, mode,
 * ports; a named port only in egress, naming a table of b of its
 * protocol. 0 or -EINVAL with the reason in err. */
BH_MUST_CHECK int nft_plan_check_rule(const struct bundle *b, enum direction dir,
				      const struct bundle_rule *br, char *err, size_t errsz);
/* The map form's chains and maps for both directions, after the base
 * chains' fixed rules (nft-plan-maps.c). */
BH_MUST_CHECK int nft_plan_maps_build(struct nft_plan *p, const struct bundle *b, char *err, size_t errsz);
