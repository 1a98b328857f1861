/* conntrack: tightening cuts live connections (DESIGN §2). Step 1 of the
 * evaluation accepts every packet of a connection conntrack holds, so a
 * connection opened while a policy allowed it would outlive the policy.
 * When an endpoint's table is brought to a bundle that may stop allowing
 * something, the connections conntrack holds in its namespace are judged
 * by that bundle, through the reference evaluator (eval.h: one source of
 * truth, whatever form the nft plan takes), and those it no longer allows
 * are deleted in the same update: their next packet meets the new rules,
 * is dropped and reported. What it still allows is kept; what an audit
 * policy would cut is kept and reported as an audit flow.
 *
 * The pure part is conntrack_judge() (one entry, one bundle) and
 * conntrack_tightened() (can an update have stopped allowing anything?).
 * conntrack_cut() does the work for an endpoint through the dataplane
 * (dataplane.h: ct_dump, ct_delete), which the unit tests fake; the
 * netlink side is conntrack-nl.h. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bulkhead/addr.h"
#include "bulkhead/bundle.h"
#include "bulkhead/eval.h"

/* One direction of a connection, as conntrack writes it. */
struct ct_tuple {
	struct bh_addr src, dst;
	uint8_t proto;		      /* IPPROTO_* */
	bool has_ports;		      /* always for conntrack_has_ports(proto); GRE's keys too */
	uint16_t sport, dport;	      /* host order */
	uint8_t icmp_type, icmp_code; /* ICMP, ICMPv6 */
	uint16_t icmp_id;	      /* host order */
};

/* One connection conntrack holds. */
struct ct_entry {
	struct ct_tuple orig, reply;
	bool has_master; /* an expected (related) connection: judged as its master */
	struct ct_tuple master;
	bool has_zone;
	uint16_t zone;
	bool has_id; /* the kernel deletes only the entry with this id */
	uint32_t id;
	bool has_tcp_state;
	uint8_t tcp_state; /* enum tcp_conntrack (for logs: CLOSE, TIME_WAIT… count too) */
};

/* Whether p carries ports in conntrack's tuples. */
bool conntrack_has_ports(uint8_t proto);

enum ct_fate {
	CT_KEEP,  /* the bundle allows it (or it is loopback) */
	CT_CUT,	  /* the bundle drops it: delete the entry */
	CT_AUDIT, /* an audit policy would drop it: kept, reported */
};

struct ct_judgement {
	enum ct_fate fate;
	bool loopback;	    /* both ends are the endpoint's own: not judged */
	enum direction dir; /* the chain that judged it: egress when the endpoint opened it */
	struct packet pkt;  /* the connection's first packet as that chain saw it */
	struct eval_result res;
};

/* Judges ce by ep of b. local: the namespace's own addresses (every
 * scope), sorted by addr_cmp; loopback addresses count as local anyway.
 * The endpoint opened the connection when its original source is local
 * (its egress judges it), else it answered (its ingress). The packet is
 * the original direction's, its destination as the rules saw it: after
 * any DNAT, i.e. the reply's source. An expected connection is judged as
 * the master it belongs to (DESIGN §2 step 1: related packets of accepted
 * connections are accepted). */
void conntrack_judge(const struct bundle *b, const struct bundle_endpoint *ep, const struct bh_addr *local,
		     size_t n_local, const struct ct_entry *ce, struct ct_judgement *out);

/* Set relations between two bundles, remembered by their hashes: many
 * endpoints share one update's sets. */
struct conntrack_memo;
struct conntrack_memo *conntrack_memo_new(void);
void conntrack_memo_free(struct conntrack_memo *m); /* accepts NULL */

/* Whether some packet that (old_b, old_ep) accepts may be dropped or
 * audited by (b, ep): false only when the update provably just loosens
 * (every kept rule the same, allow rules added or their peer sets grown,
 * enforced deny rules removed or their peer sets shrunk, fallbacks no
 * stricter; a named port's table, its (address, port) pairs, counts as a
 * peer set: a destination renumbered is a pair gone), so no dump is
 * needed. Conservative: true when unsure. memo
 * may be NULL. */
bool conntrack_tightened(const struct bundle *old_b, const struct bundle_endpoint *old_ep,
			 const struct bundle *b, const struct bundle_endpoint *ep,
			 struct conntrack_memo *memo);

struct dataplane_ep;

struct conntrack_cut_stats {
	size_t entries;	  /* judged */
	size_t malformed; /* dump messages skipped */
	size_t doomed;	  /* judged to be cut */
	size_t deleted;	  /* of those, deleted (the others were gone already, or the delete failed) */
	size_t audit;	  /* kept: only an audit policy would cut them */
	size_t loopback;  /* kept: both ends are the endpoint's */
	uint64_t us;	  /* dump, judging and deletes took */
};

/* The cut in one namespace (dpe, named name in the log): every entry of
 * one dump judged by ep of b (local as for conntrack_judge()), those it
 * drops deleted, audit(arg, j) called for those an audit policy would cut
 * (may be NULL). 0, or a negative errno with why in err. */
BH_MUST_CHECK int conntrack_cut_ns(struct dataplane_ep *dpe, const char *name, const struct bundle *b,
				   const struct bundle_endpoint *ep, const struct bh_addr *local,
				   size_t n_local, void (*audit)(void *arg, const struct ct_judgement *j),
				   void *arg, struct conntrack_cut_stats *st, char *err, size_t errlen);

struct endpoint_state;

/* After e's table was brought to the bundle in force: unless the update
 * provably only loosened (old_b and old_ep say what the table held
 * before; NULL: unknown, as after a start or a repair, so everything is
 * judged), dumps the namespace's connections through the dataplane,
 * judges each by the bundle in force, deletes those it drops and reports
 * those it audits. Logged per endpoint, counted in status.json; a failure
 * is retried by conntrack_retry(). Nothing without a dataplane that
 * tracks connections, nor under the quarantine table (the real table
 * judges everything when it replaces it). */
void conntrack_cut(struct endpoint_state *e, const struct bundle *old_b,
		   const struct bundle_endpoint *old_ep);
/* Periodic: a cut that failed is tried again (everything judged). */
void conntrack_retry(struct endpoint_state *e);
