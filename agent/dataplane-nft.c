/* The nft dataplane (dataplane.h): one table inet bulkhead per endpoint
 * namespace, loaded as one nftables transaction (nft.h), watched for
 * changes by others (drift.h), its logged packets (nflog.h), its rule
 * counters (counters.h) and the namespace's addresses (addrs.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <linux/netlink.h>

#include "bulkhead/log.h"
#include "addrs.h"
#include "conntrack-nl.h"
#include "dataplane.h"

/* Attempts at one commit when others keep committing in the namespace. */
#define COMMIT_ATTEMPTS 3
/* A commit of this many elements or more stops every endpoint's event
 * watch while it runs, not only its own (see commit()). */
#define PAUSE_ALL_ELEMENTS 4096
/* NFLOG datagrams read per wake-up of one endpoint (each holds up to 64
 * packets): a flood in one namespace does not starve the others. */
#define NFLOG_BURST 64
/* The kernel answers a conntrack request at once; a socket that says
 * nothing for this long has failed, and the loop must not wait on it. */
#define CT_TIMEOUT_S 5

struct nft_dp {
	struct dataplane dp;
	struct loop *loop;
	struct netns *ns;
	struct nft_batch *nb; /* one batch, built and sent for one endpoint at a time */
	uint16_t nflog_group;
	struct nft_ep *eps; /* every open endpoint, for pausing their watches */
	int mounts_fd;	    /* netns_mounts_watch(), -1 without */
	struct loop_source *mounts_src;
	void (*mounts_fn)(void *data);
	void *mounts_data;
};

struct nft_ep {
	struct dataplane_ep ep;
	struct nft_dp *dp;
	struct nft_ep *prev, *next; /* in dp->eps */
	char *name, *path;
	int nsfd;		/* the namespace, as opened once (netns_open) */
	struct mnl_socket *nft; /* requests; its port id marks our own events */
	struct mnl_socket *ct;	/* conntrack requests, opened at the first */
	struct drift *drift;
	bool quiet; /* drift paused until the next apply (dataplane_quiet()) */
	struct nflog *nflog;
	uint64_t nflog_enobufs, nflog_gap; /* already reported as lost */
	struct addrs *addrs;
	struct loop_source *drift_src, *nflog_src, *addrs_src;
	const struct dataplane_events *ev;
	void *data;
};

static struct nft_dp *nft_dp_of(struct dataplane *dp)
{
	return (struct nft_dp *)dp;
}

static struct nft_ep *nft_ep_of(struct dataplane_ep *ep)
{
	return (struct nft_ep *)ep;
}

/* ---- events ---- */

static void on_drift(void *data, uint32_t events)
{
	struct nft_ep *e = data;
	struct drift_report rep = {0};
	drift_dispatch(e->drift, mnl_socket_get_portid(e->nft), &rep);
	if (e->quiet)
		return; /* known to be wrong: its repair is waiting */
	if (rep.foreign_changes) {
		if (e->ev->foreign)
			e->ev->foreign(e->data, &rep);
	} else if (rep.lost && e->ev->lost) {
		e->ev->lost(e->data);
	}
}

static void endpoint_log_addrs(struct nft_ep *e)
{
	size_t n;
	const struct bh_addr *list = addrs_list(e->addrs, &n);
	char buf[1024] = "";
	for (size_t i = 0; i < n && strlen(buf) < sizeof(buf) - ADDR_STRLEN - 2; i++) {
		char s[ADDR_STRLEN];
		addr_format(&list[i], s);
		strcat(buf, i ? " " : "");
		strcat(buf, s);
	}
	log_info("endpoint %s: addresses %s", e->name, n ? buf : "(none)");
}

static void on_addrs(void *data, uint32_t events);

static bool addrs_start(struct nft_ep *e)
{
	e->addrs = addrs_open(e->dp->ns, e->nsfd);
	if (!e->addrs ||
	    !(e->addrs_src = loop_add_fd(e->dp->loop, addrs_fd(e->addrs), EPOLLIN, on_addrs, e))) {
		log_error("endpoint %s: following addresses in %s: %m", e->name, e->path);
		addrs_free(e->addrs);
		e->addrs = NULL;
		return false;
	}
	return true;
}

static void on_addrs(void *data, uint32_t events)
{
	struct nft_ep *e = data;
	int r = addrs_dispatch(e->addrs);
	if (r < 0) {
		/* Lost notifications: start over with a fresh dump. */
		log_warn("endpoint %s: address notifications lost; reloading", e->name);
		loop_remove(e->dp->loop, e->addrs_src);
		e->addrs_src = NULL;
		addrs_free(e->addrs);
		if (!addrs_start(e))
			return;
		r = 1;
	}
	if (r > 0) {
		endpoint_log_addrs(e);
		if (e->ev->addresses)
			e->ev->addresses(e->data);
	}
}

static void on_flow_event(void *data, const struct nflog_event *ev)
{
	struct nft_ep *e = data;
	if (e->ev->packet)
		e->ev->packet(e->data, ev);
}

static void on_nflog(void *data, uint32_t events)
{
	struct nft_ep *e = data;
	nflog_dispatch(e->nflog, NFLOG_BURST, on_flow_event, e);
	const struct nflog_stats *st = nflog_stats(e->nflog);
	if (e->ev->packets_lost)
		e->ev->packets_lost(e->data, st->enobufs - e->nflog_enobufs, st->gap - e->nflog_gap);
	e->nflog_enobufs = st->enobufs;
	e->nflog_gap = st->gap;
}

/* ---- one endpoint's namespace ---- */

static int nft_open(struct dataplane *dpv, const char *name, const char *path, struct dataplane_ep **out,
		    struct netns_id *id, char *err, size_t errlen)
{
	struct nft_dp *dp = nft_dp_of(dpv);
	if (!path) {
		snprintf(err, errlen, "the inventory gives no netns");
		return -EINVAL;
	}
	int fd = netns_open(dp->ns, path, id);
	if (fd == -ENOENT)
		return fd;
	if (fd < 0) {
		netns_open_error(fd, path, err, errlen);
		return fd;
	}
	struct nft_ep *e = xcalloc(1, sizeof(*e));
	e->ep.dp = dpv;
	e->dp = dp;
	e->name = xstrdup(name);
	e->path = xstrdup(path);
	e->nsfd = fd;
	e->next = dp->eps;
	if (dp->eps)
		dp->eps->prev = e;
	dp->eps = e;
	*out = &e->ep;
	return 0;
}

static int nft_adopt(struct dataplane *dpv, const char *name, const char *path, int fd,
		     struct dataplane_ep **out, struct netns_id *id, char *err, size_t errlen)
{
	struct nft_dp *dp = nft_dp_of(dpv);
	int own = netns_open_fd(dp->ns, fd, id);
	if (own < 0) {
		netns_open_error(own, path ? path : "(the hook's namespace)", err, errlen);
		return own;
	}
	struct nft_ep *e = xcalloc(1, sizeof(*e));
	e->ep.dp = dpv;
	e->dp = dp;
	e->name = xstrdup(name);
	e->path = xstrdup(path ? path : "(the hook's namespace)");
	e->nsfd = own;
	*out = &e->ep;
	return 0;
}

static int nft_attach(struct dataplane_ep *epv, unsigned flags, const struct dataplane_events *ev, void *data,
		      char *err, size_t errlen)
{
	struct nft_ep *e = nft_ep_of(epv);
	struct nft_dp *dp = e->dp;
	e->ev = ev;
	e->data = data;
	int r = netns_mnl_open(dp->ns, e->nsfd, NETLINK_NETFILTER, &e->nft);
	if (r < 0) {
		snprintf(err, errlen, "opening nftables in %s: %s", e->path, strerror(-r));
		return r;
	}
	e->drift = drift_open(dp->ns, e->nsfd);
	if (!e->drift || !(e->drift_src = loop_add_fd(dp->loop, drift_fd(e->drift), EPOLLIN, on_drift, e))) {
		log_error("endpoint %s: watching nftables events in %s: %m (tampering will go unnoticed)",
			  e->name, e->path);
		drift_free(e->drift);
		e->drift = NULL;
	}
	if (flags & DATAPLANE_FLOWS) {
		e->nflog = nflog_open(dp->ns, e->nsfd, dp->nflog_group);
		if (!e->nflog ||
		    !(e->nflog_src = loop_add_fd(dp->loop, nflog_fd(e->nflog), EPOLLIN, on_nflog, e))) {
			log_error(
			    "endpoint %s: reading NFLOG group %u in %s: %m (its denied flows go unreported)",
			    e->name, dp->nflog_group, e->path);
			nflog_free(e->nflog);
			e->nflog = NULL;
		}
	}
	if (addrs_start(e))
		endpoint_log_addrs(e);
	return 0;
}

static void nft_close(struct dataplane_ep *epv)
{
	struct nft_ep *e = nft_ep_of(epv);
	struct loop *loop = e->dp->loop;
	if (e->prev)
		e->prev->next = e->next;
	else
		e->dp->eps = e->next;
	if (e->next)
		e->next->prev = e->prev;
	loop_cancel_deferred(loop, e);
	loop_remove(loop, e->drift_src);
	drift_free(e->drift);
	loop_remove(loop, e->addrs_src);
	addrs_free(e->addrs);
	loop_remove(loop, e->nflog_src);
	nflog_free(e->nflog);
	if (e->nft)
		mnl_socket_close(e->nft);
	if (e->ct)
		mnl_socket_close(e->ct);
	close(e->nsfd);
	free(e->name);
	free(e->path);
	free(e);
}

static int nft_identify(struct dataplane *dp, const char *path, struct netns_id *id)
{
	return path ? netns_identify(path, id) : -ENOENT;
}

static int nft_identify_fd(struct dataplane *dp, int fd, struct netns_id *id)
{
	return netns_fd_identify(fd, id);
}

static int nft_read_tag(struct dataplane_ep *epv, struct nft_tag *out)
{
	return nft_tag_read(nft_ep_of(epv)->nft, out);
}

static void nft_quiet(struct dataplane_ep *epv)
{
	struct nft_ep *e = nft_ep_of(epv);
	if (e->drift && !e->quiet && drift_pause(e->drift) == 0)
		e->quiet = true;
}

/* Reads the table back and compares it with what (b, bep) builds with
 * tag: 1 same, 0 differs (nft_batch_error() says how; the whole-table
 * batch is built), or a negative errno. */
static int table_check(struct nft_ep *e, const struct bundle *b, const struct bundle_endpoint *bep,
		       const struct nft_tag *tag)
{
	uint32_t gen;
	bool same;
	nft_batch_set_tag(e->dp->nb, tag);
	int r = nft_batch_verify(e->dp->nb, b, bep, e->nft, &gen, &same);
	if (r < 0)
		return r;
	if (same && e->drift)
		drift_checked(e->drift, gen);
	return same;
}

static int nft_verify(struct dataplane_ep *epv, const struct bundle *b, const struct bundle_endpoint *bep,
		      const struct nft_tag *tag, bool *read, char *why, size_t whylen)
{
	struct nft_ep *e = nft_ep_of(epv);
	uint32_t known = e->drift ? drift_known(e->drift) : 0, gen;
	*read = false;
	if (known && nft_genid(e->nft, &gen) == 0 && gen == known)
		return 1; /* nothing committed since it was last known right */
	if (!b || !bep) {
		snprintf(why, whylen, "nothing to compare with");
		return 0;
	}
	*read = true;
	int r = table_check(e, b, bep, tag);
	if (r == 0)
		snprintf(why, whylen, "%s", nft_batch_error(e->dp->nb));
	return r;
}

/* Stops listening to the table's events for a commit of ours; false when
 * it was not listening. */
static bool drift_hold(struct nft_ep *e)
{
	return e->quiet || (e->drift && drift_pause(e->drift) == 0);
}

static void drift_release(struct nft_ep *e)
{
	e->quiet = false;
	if (drift_resume(e->drift) < 0) {
		log_error("endpoint %s: rejoining nftables events: %m; tampering will go unnoticed", e->name);
		loop_remove(e->dp->loop, e->drift_src);
		e->drift_src = NULL;
		drift_free(e->drift);
		e->drift = NULL;
	}
}

/* Events of another endpoint's namespace may have been missed while its
 * watch was paused for a big commit elsewhere: as if they were lost. */
static void on_missed(void *data, uint32_t events)
{
	struct nft_ep *e = data;
	if (!e->quiet && e->ev->lost)
		e->ev->lost(e->data);
}

struct paused {
	struct nft_ep *e;
	uint32_t gen; /* its namespace's generation when paused; 0: unknown */
};

/* Stops every other endpoint's event watch for a commit of many elements.
 * nf_tables builds an event for every element it commits as soon as any
 * socket on the machine listens to the nftables group, whatever its
 * namespace (the kernel keeps one listener mask per netlink family): with
 * the watches of the agent's other endpoints listening, 200,000 elements
 * cost 200,000 events that nobody reads. Returns the paused ones (the
 * caller frees). */
static struct paused *pause_others(struct nft_ep *self, size_t *n)
{
	size_t cap = 0;
	struct paused *v = NULL;
	*n = 0;
	for (struct nft_ep *o = self->dp->eps; o; o = o->next) {
		if (o == self || !o->drift || o->quiet)
			continue;
		if (*n == cap) {
			cap = cap ? 2 * cap : 16;
			v = xrealloc(v, cap * sizeof(*v));
		}
		uint32_t gen = 0;
		if (!o->nft || nft_genid(o->nft, &gen) < 0)
			gen = 0;
		if (drift_pause(o->drift) < 0)
			continue;
		v[(*n)++] = (struct paused){o, gen};
	}
	return v;
}

/* Listens again; whoever committed in a paused namespace meanwhile was not
 * heard, so that endpoint's table is checked as after lost events. */
static void resume_others(struct nft_dp *dp, struct paused *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct nft_ep *o = v[i].e;
		uint32_t gen = 0;
		drift_release(o);
		if (!o->drift)
			continue;
		if (!v[i].gen || nft_genid(o->nft, &gen) < 0 || gen != v[i].gen)
			loop_defer(dp->loop, on_missed, o);
	}
	free(v);
}

/* Sends the batch built in nb. Events are not listened to meanwhile
 * (drift.h), and the generation is read before and after: *clean when the
 * commit was the only one in between, so the table is exactly the batch.
 * When someone commits between the first reading and the commit, the
 * kernel refuses it (nft_batch_send_at()) and it goes again, whole: a
 * delta might build on a change we did not see. The last attempt commits
 * at any generation, so a namespace where others commit all the time
 * still gets its table (not clean: the caller reads it back).
 *
 * Why nothing done to the table while we do not listen goes unnoticed:
 * nf_tables numbers every commit in the namespace, one more each. The
 * kernel takes ours only at generation `before` (NFNL_BATCH_GENID), so
 * ours made before + 1. `after` is read once we listen again: equal to
 * before + 1, nobody committed from ours to the moment we listened, and
 * anything later reaches us as events; anything else, someone did, and
 * the caller reads the table back (nft_apply()). Not listening is what
 * spares the kernel building one event per element for us: it builds
 * them while any socket on the machine listens to nftables events (one
 * listener mask per protocol, not per namespace), hence pause_others()
 * too. */
static int commit(struct nft_ep *e, const struct dataplane_apply *req, bool *full, bool *clean)
{
	struct nft_batch *nb = e->dp->nb;
	*clean = false;
	for (int attempt = 1;; attempt++) {
		uint32_t before = 0, after = 0;
		struct nft_batch_stats st;
		struct paused *others = NULL;
		size_t n_others = 0;
		nft_batch_stats(nb, &st);
		if (st.elements >= PAUSE_ALL_ELEMENTS)
			others = pause_others(e, &n_others);
		if (attempt == COMMIT_ATTEMPTS || nft_genid(e->nft, &before) < 0)
			before = 0; /* commit at any generation; not clean */
		bool held = drift_hold(e);
		int r = nft_batch_send_at(nb, e->nft, before);
		if (r == 0 && req->sent)
			req->sent(req->arg);
		if (held)
			drift_release(e);
		if (others)
			resume_others(e->dp, others, n_others);
		if (r != -ERESTART || attempt == COMMIT_ATTEMPTS) {
			if (r == 0 && before && nft_genid(e->nft, &after) == 0 &&
			    after == (before + 1 ? before + 1 : 1)) {
				*clean = true;
				if (e->drift)
					drift_committed(e->drift, before, after, *full);
			}
			return r;
		}
		if (!*full) {
			r = nft_batch_build(nb, req->b, req->ep);
			if (r < 0)
				return r;
			*full = true;
			if (req->replacing)
				req->replacing(req->arg, false);
		}
	}
}

static int nft_apply(struct dataplane_ep *epv, const struct dataplane_apply *req,
		     struct dataplane_result *res)
{
	struct nft_ep *e = nft_ep_of(epv);
	struct nft_batch *nb = e->dp->nb;
	const struct bundle_endpoint *old = req->old_ep;
	*res = (struct dataplane_result){.full = true};
	/* Someone else committing at the same moment can leave the result
	 * uncertain: read back, and replace again if it differs. */
	for (int round = 0; round < (req->once ? 1 : COMMIT_ATTEMPTS); round++) {
		bool full = true, clean = true;
		nft_batch_set_tag(nb, req->tag);
		int r = old ? nft_batch_build_update(nb, req->old_b, old, req->b, req->ep, &full)
			    : nft_batch_build(nb, req->b, req->ep);
		/* A whole-table replace starts every counter again: the old
		 * rules' counts are taken first. */
		if (r == 0 && full && req->replacing)
			req->replacing(req->arg, false);
		if (r == 0)
			r = commit(e, req, &full, &clean);
		res->full = full;
		if (r < 0) {
			snprintf(res->error, sizeof(res->error), "%s", nft_batch_error(nb));
			return r;
		}
		res->committed = true;
		nft_batch_stats(nb, &res->stats);
		if (full) {
			res->full_commits++;
			if (req->replacing)
				req->replacing(req->arg, true);
		} else {
			res->delta_commits++;
		}
		if (clean || !e->drift)
			return 0;
		/* Another process committed too, perhaps while we were not
		 * listening: is the table still what we sent? */
		res->checks++;
		r = table_check(e, req->b, req->ep, req->tag);
		if (r == 1)
			return 0;
		if (r == 0) {
			res->tampered++;
			log_warn("endpoint %s: another process committed as the table was loaded, and it "
				 "differs: %s; putting it back",
				 req->name, nft_batch_error(nb));
		} else {
			log_warn("endpoint %s: another process committed as the table was loaded, and it "
				 "could not be read back (%s); loading it again",
				 req->name, strerror(-r));
		}
		old = NULL;
	}
	/* Replaced again and again, and someone committed after each: what
	 * is there now is not what we sent. */
	res->unsettled = true;
	return 0;
}

static int nft_counters(struct dataplane_ep *epv, struct counters *c, counters_fn fn, void *arg)
{
	return counters_read(c, nft_ep_of(epv)->nft, fn, arg);
}

static bool nft_addresses(struct dataplane_ep *epv, const struct bh_addr **list, size_t *n)
{
	struct nft_ep *e = nft_ep_of(epv);
	if (!e->addrs)
		return false;
	*list = addrs_list(e->addrs, n);
	return true;
}

static bool nft_local_addresses(struct dataplane_ep *epv, const struct bh_addr **list, size_t *n)
{
	struct nft_ep *e = nft_ep_of(epv);
	if (!e->addrs)
		return false;
	*list = addrs_all(e->addrs, n);
	return true;
}

/* The namespace's conntrack socket, opened there at the first use: most
 * updates never need it. */
static int ct_socket(struct nft_ep *e, char *err, size_t errlen)
{
	if (e->ct)
		return 0;
	int r = netns_mnl_open(e->dp->ns, e->nsfd, NETLINK_NETFILTER, &e->ct);
	if (r == 0) {
		struct timeval tv = {.tv_sec = CT_TIMEOUT_S};
		if (setsockopt(mnl_socket_get_fd(e->ct), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
			r = -errno;
			mnl_socket_close(e->ct);
			e->ct = NULL;
		}
	}
	if (r < 0)
		snprintf(err, errlen, "opening conntrack in %s: %s", e->path, strerror(-r));
	return r;
}

/* A socket that failed mid-exchange may hold half an answer: the next
 * use opens a new one. */
static void ct_drop(struct nft_ep *e)
{
	mnl_socket_close(e->ct);
	e->ct = NULL;
}

static int nft_ct_dump(struct dataplane_ep *epv, dataplane_ct_fn fn, void *arg, struct dataplane_ct_dump *st,
		       char *err, size_t errlen)
{
	struct nft_ep *e = nft_ep_of(epv);
	int r = ct_socket(e, err, errlen);
	if (r < 0)
		return r;
	r = conntrack_nl_dump(e->ct, fn, arg, &st->entries, &st->malformed);
	if (r < 0) {
		snprintf(err, errlen, "dumping conntrack in %s: %s", e->path, strerror(-r));
		ct_drop(e);
	}
	return r;
}

static int nft_ct_delete(struct dataplane_ep *epv, const struct ct_entry *v, size_t n, size_t *deleted,
			 char *err, size_t errlen)
{
	struct nft_ep *e = nft_ep_of(epv);
	int r = ct_socket(e, err, errlen);
	if (r < 0)
		return r;
	r = conntrack_nl_delete(e->ct, v, n, deleted);
	if (r < 0) {
		snprintf(err, errlen, "deleting conntrack entries in %s: %s (%zu of %zu deleted)", e->path,
			 strerror(-r), *deleted, n);
		if (r != -EINVAL && r != -EPERM)
			ct_drop(e);
	}
	return r;
}

static json_t *nft_status(struct dataplane_ep *epv)
{
	struct nft_ep *e = nft_ep_of(epv);
	if (!e->nflog)
		return NULL;
	const struct nflog_stats *st = nflog_stats(e->nflog);
	return json_pack("{s:{s:I,s:I,s:I,s:I,s:I}}", "nflog", "events", (json_int_t)st->events, "enobufs",
			 (json_int_t)st->enobufs, "gap", (json_int_t)st->gap, "malformed",
			 (json_int_t)st->malformed, "foreign", (json_int_t)st->foreign);
}

/* ---- the namespaces ---- */

static void on_mounts(void *data, uint32_t events)
{
	struct nft_dp *dp = data;
	dp->mounts_fn(dp->mounts_data);
}

/* Named namespaces are bind mounts: the mount table says at once when
 * one is made, removed or made anew at a path. */
static int nft_watch_namespaces(struct dataplane *dpv, void (*fn)(void *data), void *data)
{
	struct nft_dp *dp = nft_dp_of(dpv);
	dp->mounts_fn = fn;
	dp->mounts_data = data;
	dp->mounts_fd = netns_mounts_watch();
	int r = dp->mounts_fd;
	if (r >= 0 && !(dp->mounts_src = loop_add_fd(dp->loop, dp->mounts_fd, EPOLLPRI, on_mounts, dp)))
		r = -errno;
	if (r < 0) {
		log_error_errno(r, "watching the mount table: %m; a namespace made anew waits for %s",
				"the next check");
		if (dp->mounts_fd >= 0)
			close(dp->mounts_fd);
		dp->mounts_fd = -1;
	}
	return r < 0 ? r : 0;
}

static void nft_free(struct dataplane *dpv)
{
	struct nft_dp *dp = nft_dp_of(dpv);
	if (dp->mounts_fd >= 0) {
		loop_remove(dp->loop, dp->mounts_src);
		close(dp->mounts_fd);
	}
	nft_batch_free(dp->nb);
	netns_free(dp->ns);
	free(dp);
}

static const struct dataplane_ops nft_ops = {
    .name = "nft",
    .free = nft_free,
    .open = nft_open,
    .adopt = nft_adopt,
    .attach = nft_attach,
    .close = nft_close,
    .identify = nft_identify,
    .identify_fd = nft_identify_fd,
    .read_tag = nft_read_tag,
    .apply = nft_apply,
    .verify = nft_verify,
    .quiet = nft_quiet,
    .read_counters = nft_counters,
    .addresses = nft_addresses,
    .status = nft_status,
    .watch_namespaces = nft_watch_namespaces,
    .local_addresses = nft_local_addresses,
    .ct_dump = nft_ct_dump,
    .ct_delete = nft_ct_delete,
};

struct dataplane *dataplane_nft_new(struct loop *loop, uint16_t nflog_group, enum nft_form form)
{
	struct nft_dp *dp = xcalloc(1, sizeof(*dp));
	dp->dp.ops = &nft_ops;
	dp->loop = loop;
	dp->nflog_group = nflog_group;
	dp->mounts_fd = -1;
	dp->nb = nft_batch_new(nflog_group);
	if (!dp->nb)
		abort();
	nft_batch_set_form(dp->nb, form);
	dp->ns = netns_new();
	if (!dp->ns) {
		int saved = errno;
		nft_free(&dp->dp);
		errno = saved;
		return NULL;
	}
	return &dp->dp;
}
