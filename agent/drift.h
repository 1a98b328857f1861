/* drift: notices changes to an endpoint's table inet bulkhead that the
 * agent did not make (someone ran nft in the container's namespace), from
 * the nftables events of that namespace.
 *
 * nf_tables numbers every committed transaction (the ruleset's generation
 * id) and ends the events of each with a NEWGEN event carrying that id and
 * the port id of the socket that committed it. The watch reads events by
 * transaction: a transaction that touched our table is reported once its
 * NEWGEN is in, unless it is no newer than the generation the agent last
 * knew its table to be right at (drift_committed(), drift_checked()).
 *
 * The agent does not listen while it commits (drift_pause(),
 * drift_resume()): its own transactions are never seen as someone else's,
 * however big, and the kernel does not even build their events (unless
 * another socket on the machine listens: its listener mask is one per
 * netlink protocol, for every namespace). Reading the generation id
 * before and after the commit tells whether anyone else committed
 * meanwhile (dataplane-nft.c, commit()). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bulkhead/common.h"
#include "netns.h"

struct drift_report {
	unsigned foreign_changes; /* messages from other sockets touching our table */
	uint32_t last_portid;	  /* who made the last one */
	const char *last_what;	  /* "table deleted", "rule added", … */
	bool lost;		  /* events were lost (ENOBUFS): state unknown */
};

/* ---- pure core: events in, what they mean out ---- */

/* What the watch knows between reads. Zeroed: nothing known. */
struct drift_state {
	uint32_t known; /* the table was right as of this generation; 0: unknown */
	/* Changes to our table from others since the last NEWGEN. */
	unsigned pending;
	uint32_t pending_portid;
	const char *pending_what;
};

/* Takes one datagram of events (len bytes). Changes to table inet
 * bulkhead made by any socket but own_portid are counted into *out when
 * their transaction's NEWGEN arrives and is newer than st->known; a
 * transaction that left our table alone moves st->known on when it is the
 * very next one. Malformed messages are skipped. */
void drift_state_feed(struct drift_state *st, const void *buf, size_t len, uint32_t own_portid,
		      struct drift_report *out);
/* The agent's own transaction took the ruleset from generation before to
 * after, nobody else's in between. whole: it replaced the table whole, so
 * whatever was done to it before no longer matters. */
void drift_state_committed(struct drift_state *st, uint32_t before, uint32_t after, bool whole);
/* The table was read back at generation gen and is what it should be. */
void drift_state_checked(struct drift_state *st, uint32_t gen);
/* a is a later generation than b (ids wrap). */
bool drift_gen_after(uint32_t a, uint32_t b);

/* ---- the socket ---- */

struct drift;

/* Subscribes to nftables events in the namespace nsfd (netns_open).
 * NULL with errno. */
struct drift *drift_open(struct netns *ns, int nsfd);
void drift_free(struct drift *d);
int drift_fd(const struct drift *d);
/* Reads every pending event into *out (see drift_state_feed()). */
void drift_dispatch(struct drift *d, uint32_t own_portid, struct drift_report *out);
/* Stops and restarts delivery of events (multicast membership). Events
 * already queued stay queued. 0 or a negative errno. */
BH_MUST_CHECK int drift_pause(struct drift *d);
BH_MUST_CHECK int drift_resume(struct drift *d);
void drift_committed(struct drift *d, uint32_t before, uint32_t after, bool whole);
void drift_checked(struct drift *d, uint32_t gen);
/* The generation the table was last known right at; 0: unknown. */
uint32_t drift_known(const struct drift *d);
