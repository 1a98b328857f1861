/* nft-plan: one bundle endpoint as the table inet bulkhead it becomes,
 * as plain data: sets (with the bundle's member lists), chains, and every
 * rule with what it matches, its verdict, NFLOG prefix and comment. Pure:
 * no libnftnl, no kernel. The batch (nft-batch.c) and the text
 * (nft-text.c) both walk one plan, so --print-ruleset shows exactly what
 * the agent loads. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bulkhead/bundle.h"
#include "nft-prefix.h"
#include "nft.h"

/* A hosts set is a hash of single addresses. The bundle's normalized lists
 * merge consecutive addresses into ranges, which the elements expand again;
 * a range longer than this is no run of endpoint addresses, and the set
 * becomes an interval set (same members) so that expansion stays linear in
 * the input. */
#define NFT_HOSTS_RANGE_MAX 256
/* A rule's comment: its id made safe to print (nft_plan_rule_comment()). */
#define NFT_COMMENT_MAX 128

/* One nft set: a bundle set's members of one family. */
struct nft_plan_set {
	char name[NFT_SET_NAME_MAX];
	const struct bundle_set *src;
	const struct range_list *members; /* src's list of this family */
	int family;			  /* AF_INET or AF_INET6 */
	bool interval;
	uint32_t id; /* NFTA_SET_ID within a transaction that creates it, from 1 */
};

enum nft_plan_kind {
	NFT_PLAN_FIXED,	   /* one of the rules every chain starts with */
	NFT_PLAN_RULE,	   /* made from a bundle rule */
	NFT_PLAN_FALLBACK, /* the chain's last rule: no bundle rule matched */
};

/* One nft rule. It matches a packet when every part that is set does:
 * family, the peer address in set, port; then counts it, logs it to NFLOG
 * (nft_plan_rule_prefix()) unless verdict is VERDICT_ACCEPT, and applies
 * the verdict (VERDICT_AUDIT accepts). Its comment is
 * nft_plan_rule_comment().
 *
 * An observe rule (bundle observe all) stands right before each rule or
 * fallback that accepts (VERDICT_ACCEPT), with the same match, kind,
 * position and id: it matches only a packet whose conntrack entry is not
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
	enum verdict verdict;
	bool observe;	/* the log-only twin of the accepting rule after it (above) */
	const char *id; /* rule id, fallback reason or fixed rule id, as the bundle has it (NULL: none) */
};

/* A base chain: hook input (ingress) or output (egress), priority 0,
 * policy accept (drops come from the fallback rule, which logs them). */
struct nft_plan_chain {
	const char *name;	    /* NFT_CHAIN_INGRESS, NFT_CHAIN_EGRESS */
	const char *hook;	    /* "input", "output" */
	size_t first_rule, n_rules; /* its rules in nft_plan.rules */
};

struct nft_plan {
	const struct bundle_endpoint *ep; /* borrowed, like the sets' members */
	struct nft_plan_set *sets;	  /* bundle set order, v4 before v6 */
	size_t n_sets;
	struct nft_plan_rule *rules; /* every chain's in turn, ingress first */
	size_t n_rules, cap_rules;
	struct nft_plan_chain chains[DIR_COUNT];
	bool observe; /* the bundle's observe all: accepting rules have their twins */
	bool has_tag;
	char tag[NFT_TAG_MAX]; /* nft_tag_format() of the tag given */
};

/* Plans ep of b, borrowing both (and their member lists) until
 * nft_plan_release(); tag NULL: none. Every set the rules reference gets
 * one nft set per family, members or not; a rule with peers becomes one
 * nft rule per family, peer set and port (no ICMP rule for IPv6, no ICMPv6
 * rule for IPv4), one without peers one per port; with the bundle's
 * observe all, each of those that accepts, and an accepting fallback,
 * comes right after its observe twin. 0, -ENOMEM, or -EINVAL
 * for a bundle nft cannot express, with the reason in err. p is zeroed on
 * failure. */
BH_MUST_CHECK int nft_plan_build(struct nft_plan *p, const struct bundle *b, const struct bundle_endpoint *ep,
				 const struct nft_tag *tag, char *err, size_t errsz);
void nft_plan_release(struct nft_plan *p);

/* Whether a and b make the same sets (names, families, kinds) and the
 * same rules, so that only set elements can differ (an element delta). */
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
