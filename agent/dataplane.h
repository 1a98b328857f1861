/* dataplane: what the agent does inside an endpoint's network namespace,
 * behind one small interface (DESIGN §3, dataplane). The core decides
 * what each endpoint's table must hold; a dataplane opens the namespace,
 * puts the table there, reads it back, counts and watches it:
 *
 *   dataplane-nft.c   table inet bulkhead through libnftnl/libmnl, NFLOG,
 *                     nftables events, the namespace's addresses (root)
 *   dataplane-null.c  builds every batch, touches no kernel state
 *                     (--dataplane null: many agents on one machine)
 *   tests/unit/test-agent-core.c  a fake that simulates namespaces
 *
 * Every implementation embeds struct dataplane (and struct dataplane_ep)
 * first and fills the ops; the core calls only the dataplane_*() wrappers
 * below. All calls run on the loop's thread; events come back through
 * struct dataplane_events, from the loop. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "bulkhead/addr.h"
#include "bulkhead/bundle.h"
#include "bulkhead/common.h"
#include "bulkhead/loop.h"
#include "conntrack.h"
#include "counters.h"
#include "drift.h"
#include "netns.h"
#include "nflog.h"
#include "nft.h"

struct dataplane;
struct dataplane_ep;

/* What happens in an endpoint's namespace that the core must hear of.
 * data is what dataplane_attach() was given. Any member may be NULL. */
struct dataplane_events {
	/* Another process changed the table (rep borrowed for the call). */
	void (*foreign)(void *data, const struct drift_report *rep);
	/* Events were lost: the table may have changed. dataplane_verify()
	 * says whether it did. */
	void (*lost)(void *data);
	/* The namespace's addresses changed (dataplane_addresses()). */
	void (*addresses)(void *data);
	/* A packet a rule logged (a drop or an audit), and the logged packets
	 * the kernel could not deliver since the last call. */
	void (*packet)(void *data, const struct nflog_event *ev);
	void (*packets_lost)(void *data, uint64_t enobufs, uint64_t gap);
};

/* One table to put in place: the whole of (b, ep), or, when old_b/old_ep
 * say what the table holds now, the smallest change to it (an element
 * delta where nft.h allows one). All borrowed for the call. */
struct dataplane_apply {
	const char *name; /* the endpoint, for logs */
	const struct bundle *old_b;
	const struct bundle_endpoint *old_ep; /* NULL: unknown, replace whole */
	const struct bundle *b;
	const struct bundle_endpoint *ep;
	const struct nft_tag *tag; /* which bundle the table says it holds */
	/* Someone keeps rewriting the table: one attempt, no replacing again
	 * when another commit comes in between (res->unsettled says so). */
	bool once;
	/* Around every whole-table replace that is committed: before it the
	 * old rules' counters are still there to read (hits), after it every
	 * counter starts from zero. NULL: nobody counts. */
	void (*replacing)(void *arg, bool done);
	/* Right after each commit of ours, before the table's event watch
	 * listens again: where another process's commit is told by the
	 * generation alone (tests race one there). NULL: nothing. */
	void (*sent)(void *arg);
	void *arg; /* replacing's and sent's */
};

struct dataplane_result {
	bool full;	       /* the last batch tried replaced the table whole */
	bool committed;	       /* the kernel holds it (false: built only) */
	unsigned full_commits; /* whole-table replaces committed */
	unsigned delta_commits;
	unsigned tampered; /* another process committed meanwhile and the table differed */
	bool unsettled;	   /* and still did after the last attempt: it is not what was sent */
	unsigned checks;   /* tables read back to compare */
	struct nft_batch_stats stats;
	char error[1024]; /* on failure: which object and why */
};

/* One connection of a conntrack dump, borrowed for the call. */
typedef void (*dataplane_ct_fn)(void *arg, const struct ct_entry *ce);

/* What a conntrack dump saw. */
struct dataplane_ct_dump {
	size_t entries;	  /* handed to fn */
	size_t malformed; /* messages that failed validation: skipped */
};

/* What dataplane_attach() opens beside the table's own socket. */
enum dataplane_flags {
	DATAPLANE_FLOWS = 1 << 0, /* logged packets (events.packet) and rule counters */
};

struct dataplane_ops {
	const char *name; /* "nft", "null": status.json's "dataplane" */
	void (*free)(struct dataplane *dp);
	int (*open)(struct dataplane *dp, const char *name, const char *path, struct dataplane_ep **out,
		    struct netns_id *id, char *err, size_t errlen);
	int (*adopt)(struct dataplane *dp, const char *name, const char *path, int fd,
		     struct dataplane_ep **out, struct netns_id *id, char *err, size_t errlen);
	int (*attach)(struct dataplane_ep *ep, unsigned flags, const struct dataplane_events *ev, void *data,
		      char *err, size_t errlen);
	void (*close)(struct dataplane_ep *ep);
	int (*identify)(struct dataplane *dp, const char *path, struct netns_id *id);
	int (*identify_fd)(struct dataplane *dp, int fd, struct netns_id *id);
	int (*read_tag)(struct dataplane_ep *ep, struct nft_tag *out);
	int (*apply)(struct dataplane_ep *ep, const struct dataplane_apply *req,
		     struct dataplane_result *res);
	int (*verify)(struct dataplane_ep *ep, const struct bundle *b, const struct bundle_endpoint *bep,
		      const struct nft_tag *tag, bool *read, char *why, size_t whylen);
	void (*quiet)(struct dataplane_ep *ep);
	int (*read_counters)(struct dataplane_ep *ep, struct counters *c, counters_fn fn, void *arg);
	bool (*addresses)(struct dataplane_ep *ep, const struct bh_addr **list, size_t *n);
	json_t *(*status)(struct dataplane_ep *ep);
	int (*watch_namespaces)(struct dataplane *dp, void (*fn)(void *data), void *data);
	/* Conntrack in the namespace (conntrack.h); NULL: none is tracked. */
	bool (*local_addresses)(struct dataplane_ep *ep, const struct bh_addr **list, size_t *n);
	int (*ct_dump)(struct dataplane_ep *ep, dataplane_ct_fn fn, void *arg, struct dataplane_ct_dump *st,
		       char *err, size_t errlen);
	int (*ct_delete)(struct dataplane_ep *ep, const struct ct_entry *v, size_t n, size_t *deleted,
			 char *err, size_t errlen);
};

struct dataplane {
	const struct dataplane_ops *ops;
};
struct dataplane_ep {
	struct dataplane *dp;
};

/* ---- the implementations ---- */

/* The nft dataplane: opens namespaces from the agent's own (netns.h) and
 * registers its sockets on loop. NULL with errno. */
struct dataplane *dataplane_nft_new(struct loop *loop, uint16_t nflog_group, enum nft_form form);
/* Builds every batch (the same work as nft but the kernel's), commits
 * nothing; namespaces are not opened and have no identity. */
struct dataplane *dataplane_null_new(uint16_t nflog_group);

/* ---- the interface ---- */

static inline void dataplane_free(struct dataplane *dp) /* accepts NULL */
{
	if (dp)
		dp->ops->free(dp);
}
static inline const char *dataplane_name(const struct dataplane *dp)
{
	return dp->ops->name;
}

/* Opens the namespace at path (outside input: a source's word) for the
 * endpoint name, and says which it is in *id (dev/ino of its nsfs file;
 * all zero: the dataplane has no namespaces, and none is shared). Nothing
 * else is opened yet, so the core can refuse a namespace another endpoint
 * holds first. 0; -ENOENT when nothing is there (yet: not an error, err
 * untouched); another negative errno with why in err. */
static inline BH_MUST_CHECK int dataplane_open(struct dataplane *dp, const char *name, const char *path,
					       struct dataplane_ep **out, struct netns_id *id, char *err,
					       size_t errlen)
{
	return dp->ops->open(dp, name, path, out, id, err, errlen);
}
/* dataplane_open(), but the namespace is fd (borrowed), which path names:
 * the OCI hook hands the namespace itself over, so no path is resolved
 * (none can be swapped meanwhile) and no /proc/PID/ns/net is opened (no
 * ptrace check). A dataplane that opens nothing opens path as usual. */
static inline BH_MUST_CHECK int dataplane_adopt(struct dataplane *dp, const char *name, const char *path,
						int fd, struct dataplane_ep **out, struct netns_id *id,
						char *err, size_t errlen)
{
	if (!dp->ops->adopt)
		return dp->ops->open(dp, name, path, out, id, err, errlen);
	return dp->ops->adopt(dp, name, path, fd, out, id, err, errlen);
}
/* Opens what works on the table (and, with DATAPLANE_FLOWS, what reads
 * logged packets and counters) and starts delivering ev to data. What
 * cannot be opened but the table's own socket is logged and done
 * without. 0, or a negative errno with why in err (then close ep). */
static inline BH_MUST_CHECK int dataplane_attach(struct dataplane_ep *ep, unsigned flags,
						 const struct dataplane_events *ev, void *data, char *err,
						 size_t errlen)
{
	return ep->dp->ops->attach(ep, flags, ev, data, err, errlen);
}
/* Closes every socket and the namespace; the table stays (fail-static).
 * Accepts NULL. */
static inline void dataplane_close(struct dataplane_ep *ep)
{
	if (ep)
		ep->dp->ops->close(ep);
}
/* What path names now, cheaply, without opening it: compared with the
 * identity dataplane_open() gave, it says the namespace went or was made
 * anew. 0 or a negative errno (-ENOENT: gone). */
static inline BH_MUST_CHECK int dataplane_identify(struct dataplane *dp, const char *path,
						   struct netns_id *id)
{
	return dp->ops->identify(dp, path, id);
}
/* Which namespace fd (borrowed) is, as dataplane_identify() would say of
 * a path to it. 0, -EINVAL (not a network namespace), -EOPNOTSUPP (this
 * dataplane has no namespaces). */
static inline BH_MUST_CHECK int dataplane_identify_fd(struct dataplane *dp, int fd, struct netns_id *id)
{
	return dp->ops->identify_fd ? dp->ops->identify_fd(dp, fd, id) : -EOPNOTSUPP;
}
/* Which bundle the table says it holds (nft.h: tag). 0, -ENOENT when no
 * table or tag, -EINVAL when the tag is not ours, another negative errno. */
static inline BH_MUST_CHECK int dataplane_read_tag(struct dataplane_ep *ep, struct nft_tag *out)
{
	return ep->dp->ops->read_tag(ep, out);
}
/* Puts req's table in place as one transaction. When someone else
 * commits in the namespace meanwhile, the dataplane makes sure what it
 * committed is what is there (reading back, replacing again a bounded
 * number of times: res->tampered; res->unsettled when it still was not
 * at the last, and the caller puts it back later). When the delta it was asked for fails
 * (res->full false), the table is as it was: the caller replaces it whole
 * (old_ep NULL). 0, or a negative errno with res->error. */
static inline BH_MUST_CHECK int dataplane_apply(struct dataplane_ep *ep, const struct dataplane_apply *req,
						struct dataplane_result *res)
{
	return ep->dp->ops->apply(ep, req, res);
}
/* After lost events: is the table still (b, bep) with tag? 1 yes, 0 no
 * (why says how; with b NULL: nothing to compare with), or a negative
 * errno. *read: the table was read back (else nothing was committed since
 * it was last known right, or b was NULL). */
static inline BH_MUST_CHECK int dataplane_verify(struct dataplane_ep *ep, const struct bundle *b,
						 const struct bundle_endpoint *bep, const struct nft_tag *tag,
						 bool *read, char *why, size_t whylen)
{
	return ep->dp->ops->verify(ep, b, bep, tag, read, why, whylen);
}
/* Stops telling the core about changes to the table until the next
 * apply: it is known to be wrong and waits for its repair (backoff.h), so
 * someone rewriting it in a loop no longer wakes the agent. */
static inline void dataplane_quiet(struct dataplane_ep *ep)
{
	if (ep->dp->ops->quiet)
		ep->dp->ops->quiet(ep);
}
/* Reads the table's rule counters into c and calls fn with what each
 * bundle rule's grew by (counters.h). -EOPNOTSUPP: this dataplane counts
 * nothing. */
static inline BH_MUST_CHECK int dataplane_read_counters(struct dataplane_ep *ep, struct counters *c,
							counters_fn fn, void *arg)
{
	return ep->dp->ops->read_counters ? ep->dp->ops->read_counters(ep, c, fn, arg) : -EOPNOTSUPP;
}
/* Whether dataplane_read_counters() can say anything. */
static inline bool dataplane_counts(const struct dataplane *dp)
{
	return dp->ops->read_counters != NULL;
}
/* The namespace's addresses, sorted, valid until the next event: false
 * when the dataplane does not read them (the source's word stands). */
static inline bool dataplane_addresses(struct dataplane_ep *ep, const struct bh_addr **list, size_t *n)
{
	*list = NULL;
	*n = 0;
	return ep->dp->ops->addresses && ep->dp->ops->addresses(ep, list, n);
}
/* Members to add to the endpoint's object in status.json (e.g. "nflog"),
 * or NULL. New reference. */
static inline json_t *dataplane_status(struct dataplane_ep *ep)
{
	return ep->dp->ops->status ? ep->dp->ops->status(ep) : NULL;
}
/* Calls fn(data) whenever namespaces may have come or gone (the mount
 * table changed), from the loop. 0, or a negative errno (logged: changes
 * then wait for the periodic check). Dataplanes without namespaces: 0. */
static inline int dataplane_watch_namespaces(struct dataplane *dp, void (*fn)(void *data), void *data)
{
	return dp->ops->watch_namespaces ? dp->ops->watch_namespaces(dp, fn, data) : 0;
}

/* Whether the dataplane can list and delete the connections conntrack
 * holds in a namespace (dataplane_ct_dump()). */
static inline bool dataplane_tracks(const struct dataplane *dp)
{
	return dp->ops->ct_dump != NULL && dp->ops->ct_delete != NULL;
}
/* Every address of the namespace, any scope and interface (loopback's
 * too), sorted: which end of a connection is the endpoint. Valid until
 * the next event; false when the dataplane does not read them. */
static inline bool dataplane_local_addresses(struct dataplane_ep *ep, const struct bh_addr **list, size_t *n)
{
	*list = NULL;
	*n = 0;
	return ep->dp->ops->local_addresses && ep->dp->ops->local_addresses(ep, list, n);
}
/* Calls fn for every connection conntrack holds in the namespace (both
 * families, every zone and state), from one dump; a message that fails
 * validation is skipped and counted. 0, or a negative errno with why in
 * err (-EOPNOTSUPP: the dataplane tracks nothing). */
static inline BH_MUST_CHECK int dataplane_ct_dump(struct dataplane_ep *ep, dataplane_ct_fn fn, void *arg,
						  struct dataplane_ct_dump *st, char *err, size_t errlen)
{
	*st = (struct dataplane_ct_dump){0};
	return ep->dp->ops->ct_dump ? ep->dp->ops->ct_dump(ep, fn, arg, st, err, errlen) : -EOPNOTSUPP;
}
/* Deletes the n entries of v (each by its original tuple, zone and id,
 * so a new connection on the same addresses and ports is left alone).
 * *deleted: how many the kernel deleted; one already gone is no error.
 * 0, or a negative errno with why in err (some may be deleted). */
static inline BH_MUST_CHECK int dataplane_ct_delete(struct dataplane_ep *ep, const struct ct_entry *v,
						    size_t n, size_t *deleted, char *err, size_t errlen)
{
	*deleted = 0;
	return ep->dp->ops->ct_delete ? ep->dp->ops->ct_delete(ep, v, n, deleted, err, errlen) : -EOPNOTSUPP;
}
