/* nft: turns one bundle endpoint into table inet bulkhead and loads it as
 * one nftables transaction (DESIGN §3, dataplane); reads what the kernel
 * holds of it. The entry points of the nft layers, in nftables' own order:
 * nft-plan.c (the table as data), nft-elements.c (set elements and their
 * diff), nft-batch.c (libnftnl batch, libmnl send), nft-text.c (nft text),
 * nft-read.c (counters, tag, read-back); nft-prefix.c (NFLOG prefixes). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bulkhead/bundle.h"
#include "bulkhead/common.h"
#include "nft-prefix.h"

struct mnl_socket;

#define NFT_TABLE_NAME	  "bulkhead"
#define NFT_CHAIN_INGRESS "ingress" /* hook input, priority 0 */
#define NFT_CHAIN_EGRESS  "egress"  /* hook output, priority 0 */
/* The ids of the rules every chain starts with (RULE_ID_*, vocab.h), by
 * the names callers knew them by. */
#define NFT_RULE_ESTABLISHED	     RULE_ID_ESTABLISHED
#define NFT_RULE_CT_INVALID	     RULE_ID_CT_INVALID
#define NFT_RULE_LOOPBACK	     RULE_ID_LOOPBACK
#define NFT_RULE_NEIGHBOUR_DISCOVERY RULE_ID_NEIGHBOUR_DISCOVERY

/* Name of the nft set holding the family's members of bundle set id:
 * "s_" + 16 hex digits of a hash of the id + "_v4"/"_v6". Stable across
 * bundles, so a membership change can become a set-element delta. */
#define NFT_SET_NAME_MAX 24
void nft_set_name(const char *set_id, int family, char buf[NFT_SET_NAME_MAX]);
/* Any chain, set or map name the agent makes fits in this (the map form's
 * longest: "ingress_c" + 16 hex digits + "_ports"). */
#define NFT_NAME_MAX 40

/* The two forms a table can take (nft-plan.h says how each decides):
 * each direction's rules as a few lookups in verdict maps (the default),
 * or as a list of rules walked in order (for comparison). */
enum nft_form {
	NFT_FORM_MAPS,
	NFT_FORM_LINEAR,
	/* Per endpoint (the agent's default, --dataplane nft): the linear form
	 * while each direction's walk is short, the maps past that. */
	NFT_FORM_AUTO,
};
/* NFT_FORM_AUTO: the longest linear walk (nft rules in one direction,
 * counted as peer sets x ports per bundle rule) kept in the linear form
 * (nft-plan.h says why). */
#define NFT_LINEAR_WALK_MAX 16
/* NFT_FORM_AUTO: past this many numbers that the named ports of an
 * endpoint's egress rules take on their destinations, the linear form
 * all the same: each number is a class of peers, a chain and a map, of
 * the map form (10,000 numbers: 8 s of the kernel's time to load), where
 * the linear form has one set per name. */
#define NFT_NAMED_NUMBERS_MAX 256

/* One endpoint's table as one transaction, built and ready to send:
 * BEGIN, add/delete/add table (replacing any old table atomically), the
 * tag (nft_batch_set_tag()), chains, sets and maps with their elements,
 * rules, END. Every object has its own sequence number, so a kernel error
 * names the object (and bundle rule) that caused it. */
struct nft_batch;

/* For a process that builds batches again and again (the agent, the
 * benchmarks): a delta builds the plans of the old and the new table and
 * frees them, a few MB for a big one; glibc would hand that memory back
 * after each and fault it in again on the next (half of a 10,000-member
 * delta's time, bench/nft-bench build). Keeps up to 64 MB of freed heap
 * instead; call once, before any thread. */
void nft_batch_tune_malloc(void);

/* NULL on ENOMEM. Builds NFT_FORM_MAPS until told otherwise. */
struct nft_batch *nft_batch_new(uint16_t nflog_group);
void nft_batch_free(struct nft_batch *nb); /* accepts NULL */
/* Every later build makes form. */
void nft_batch_set_form(struct nft_batch *nb, enum nft_form form);

/* Translates ep of b into nb, replacing whatever nb held. nb borrows b and
 * ep (to name objects in errors) until the next build or nft_batch_free().
 * 0, -ENOMEM, or -EINVAL for a bundle nft cannot express (see
 * nft_batch_error()). */
BH_MUST_CHECK int nft_batch_build(struct nft_batch *nb, const struct bundle *b,
				  const struct bundle_endpoint *ep);

/* Builds into nb the smallest transaction that turns the table built
 * from (old_b, old_ep) into the one from (b, ep), and says in *full which
 * it is:
 *
 * - A delta (*full false) when both make the same sets and maps (same
 *   names, families and kinds) and the same rules: same bundle rule ids,
 *   order, verdicts, ports and set references, same fallbacks
 *   (nft_plan_same_shape()). Then only set and map elements change:
 *   first every deletion, then every addition, in one transaction
 *   (BEGIN..END) that leaves tables, rules, their handles and counters
 *   alone, but for the map form's class chains: a class of peers that
 *   appears is a chain, its maps and elements added before the elements
 *   that go to it, one that goes is removed after them. Every referenced
 *   bundle set has its sets or maps per family even without members
 *   (nft_batch_build() makes them too), so a group that empties, or gains
 *   its first member of a family, is still a delta. An interval that
 *   changed in any way, or now goes to another chain, is deleted whole and
 *   added whole (start and end element), so intervals stay paired; so is
 *   an address that goes to another chain. With a tag, its element is
 *   replaced too (the old table must have the tag set). An empty delta is
 *   just BEGIN and END (and the tag).
 * - Otherwise (*full true) the full replace of nft_batch_build(); also when
 *   the old bundle cannot be expressed, for then nobody knows what the
 *   kernel holds.
 *
 * The delta assumes the kernel holds what (old_b, old_ep) built. Deleting
 * an element that is not there fails, and so the whole transaction: the
 * table stays as it was, and nft_batch_send() names the set. The caller
 * should then build and send the full replace. nb borrows b and ep as
 * nft_batch_build() does; old_b and old_ep only during the call.
 * 0, -ENOMEM or -EINVAL (see nft_batch_error()); *full untouched on
 * failure. */
BH_MUST_CHECK int nft_batch_build_update(struct nft_batch *nb, const struct bundle *old_b,
					 const struct bundle_endpoint *old_ep, const struct bundle *b,
					 const struct bundle_endpoint *ep, bool *full);

/* Sends the built batch on nl (a NETLINK_NETFILTER socket, bound, in the
 * endpoint's namespace) in one sendmsg and drains every acknowledgement.
 * 0 when the kernel committed the transaction; otherwise a negative errno
 * and nft_batch_error() says which object failed and why. The kernel
 * applies all of the batch or none of it.
 *
 * Keep nl open between batches: closing a NETLINK_NETFILTER socket waits
 * until the kernel has freed whatever earlier transactions in that
 * namespace replaced or deleted (nf_tables flushes its destroy work on
 * socket release), tens of milliseconds after replacing a large table
 * (bench/program-ruleset.sh measures it). */
BH_MUST_CHECK int nft_batch_send(struct nft_batch *nb, struct mnl_socket *nl);

/* nft_batch_send(), but the kernel commits the transaction only if the
 * namespace's ruleset is still at generation genid (nft_genid()), as nft
 * does: -ERESTART, and nothing applied, when anyone committed since.
 * genid 0 commits whatever the generation. */
BH_MUST_CHECK int nft_batch_send_at(struct nft_batch *nb, struct mnl_socket *nl, uint32_t genid);

/* The generation id of the ruleset in nl's namespace: nf_tables adds one
 * at every committed transaction (failed ones leave it), whoever commits.
 * 0 or a negative errno. */
BH_MUST_CHECK int nft_genid(struct mnl_socket *nl, uint32_t *out);

/* ---- which bundle a table holds ----------------------------------------
 * Every table the agent loads says which bundle it was built from, in a
 * set NFT_TAG_SET of one element whose comment is the tag, e.g.
 *   serial 1764633600123 revision 7 bundle 3f2a…(64 hex digits)
 * serial orders the bundles one agent enforced (newer is larger, across
 * restarts); revision is the controller's (0: a bundle file). A delta
 * replaces the element, so the tag is never older than the table. It is
 * what lets an agent restarted from an older cached bundle leave a newer
 * table alone. nft lists it as `set bundle { type mark; … }`. */
#define NFT_TAG_SET "bundle"
#define NFT_TAG_MAX 128
struct nft_tag {
	uint64_t serial;
	int64_t revision;
	char hash[BUNDLE_HASH_HEX + 1];
};
void nft_tag_format(const struct nft_tag *t, char buf[NFT_TAG_MAX]);
/* 0, or -EINVAL when s is not exactly what nft_tag_format() writes. */
BH_MUST_CHECK int nft_tag_parse(const char *s, struct nft_tag *out);
/* Every later build (whole or delta) writes t into the table; NULL: no
 * tag set at all (a delta then leaves any there alone). Copied. */
void nft_batch_set_tag(struct nft_batch *nb, const struct nft_tag *t);
/* Reads the tag of table inet bulkhead in nl's namespace. 0, -ENOENT when
 * there is no table or no tag, -EINVAL when the tag is not one of ours
 * (whatever is in the namespace is untrusted), or another negative errno. */
BH_MUST_CHECK int nft_tag_read(struct mnl_socket *nl, struct nft_tag *out);

/* Compares table inet bulkhead in nl's namespace with the one
 * nft_batch_build(nb, b, ep) makes (with nb's tag): table flags, chains,
 * sets and their elements, every rule and its expressions in order,
 * counter values aside. Leaves that whole-table batch built in nb, ready
 * to send when they differ; nft_batch_error() then says what differs.
 * *same and *genid (the generation that was read, which a commit from
 * the batch can be sent at) are written on success: 0, -EAGAIN when the
 * ruleset kept changing while it was read, or another negative errno.
 * Reads everything: for a check after lost events, not for every event. */
BH_MUST_CHECK int nft_batch_verify(struct nft_batch *nb, const struct bundle *b,
				   const struct bundle_endpoint *ep, struct mnl_socket *nl, uint32_t *genid,
				   bool *same);

/* What the last build or send failed on, e.g.
 * "rule ingress[4] (bundle rule db/ingress/0): kernel: ...", or "" when
 * nothing failed. Owned by nb, valid until the next build or send. */
const char *nft_batch_error(const struct nft_batch *nb);

/* Counts of the built batch, for logs and benchmarks. Elements are nft
 * set elements: an interval is a start and an end element (one only when
 * it runs to the top of the address space). */
struct nft_batch_stats {
	size_t messages; /* netlink messages, BEGIN and END included */
	size_t bytes;
	size_t sets, elements, chains, rules; /* objects the batch sends */
	/* elements split by what they do: a full build adds all of them to
	 * the new table (removing none: the old table goes whole); a delta
	 * removes and adds single elements. */
	size_t elements_added, elements_removed;
};
void nft_batch_stats(const struct nft_batch *nb, struct nft_batch_stats *out);

/* The same ruleset as nft text in form, loadable with `nft -f` (which
 * replaces the table the same way) and close to what `nft list table inet
 * bulkhead` shows. *out is malloc()ed, the caller frees it; untouched on
 * failure. 0, -ENOMEM or -EINVAL. */
BH_MUST_CHECK int nft_render_text(const struct bundle *b, const struct bundle_endpoint *ep,
				  uint16_t nflog_group, enum nft_form form, char **out);

/* ---- rule counters ---------------------------------------------------- */

/* One rule of table inet bulkhead with its counter, as the kernel holds it.
 * Borrowed by the callback for the duration of the call. */
struct nft_rule_counter {
	enum direction dir;
	uint64_t handle;     /* the kernel's; a rewritten rule gets a new one */
	const char *comment; /* bundle rule id, fallback reason or fixed rule id; NULL: none */
	uint64_t packets, bytes;
};
typedef void (*nft_counter_fn)(void *arg, const struct nft_rule_counter *c);

/* Dumps every rule of table inet bulkhead in nl's namespace (nl as for
 * nft_batch_send, blocking) and calls fn for each rule that has a counter;
 * no table reads as no rules. Nothing is trusted: a rule someone else
 * wrote is read as carefully as ours. 0 or a negative errno. */
BH_MUST_CHECK int nft_read_counters(struct mnl_socket *nl, nft_counter_fn fn, void *arg);
