/* The agent's core (see agent.h): endpoints, bundles, drift, addresses. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libmnl/libmnl.h>
#include <linux/netlink.h>

#include "bulkhead/bundle.h"
#include "bulkhead/escape.h"
#include "bulkhead/inventory.h"
#include "bulkhead/utf8.h"
#include "addrs.h"
#include "agent.h"
#include "counters.h"
#include "drift.h"
#include "flows.h"
#include "link.h"
#include "bulkhead/log.h"
#include "netns.h"
#include "nflog.h"
#include "nft.h"
#include "state.h"
#include "watch.h"

/* A bundle is outside input: refuse absurd sizes before reading them. */
#define BUNDLE_MAX_BYTES (256u << 20)
#define INVENTORY_MAX_BYTES (64u << 20)
#define TICK_MS 500
#define FLOW_TICK_MS 100
/* A cache that could not be written is tried again this often. */
#define CACHE_RETRY_MS 5000
/* Attempts at one commit when others keep committing in the namespace. */
#define COMMIT_ATTEMPTS 3
/* RESYNCs this soon after a HELLO answer messages sent before it. */
#define RESYNC_QUIET_MS 100
/* NFLOG datagrams read per wake-up of one endpoint (each holds up to 64
 * packets): a flood in one namespace does not starve the others. */
#define NFLOG_BURST 64

/* Bundles are shared by every endpoint that has applied them; the previous
 * one lives on while an endpoint still holds its table (for deltas). */
struct bundle_ref {
	struct bundle *b;
	unsigned refs;
	uint64_t serial;  /* this agent's order of bundles, written into tables (nft_tag) */
	int64_t revision; /* the controller's; 0: a bundle file */
};

static struct bundle_ref *bundle_ref_new(struct bundle *b)
{
	struct bundle_ref *r = xcalloc(1, sizeof(*r));
	r->b = b;
	r->refs = 1;
	return r;
}

static struct bundle_ref *bundle_ref_get(struct bundle_ref *r)
{
	if (r)
		r->refs++;
	return r;
}

static void bundle_ref_put(struct bundle_ref *r)
{
	if (r && --r->refs == 0) {
		bundle_free(r->b);
		free(r);
	}
}

struct endpoint_state {
	struct agent *agent;
	char *name, *netns;
	bool present; /* namespace open (always, with the null dataplane) */
	int nsfd;     /* while present: the namespace, as opened once (netns_open) */
	struct netns_id id;
	struct mnl_socket *nft; /* requests; its port id marks our own events */
	struct drift *drift;
	struct loop_source *drift_src, *nflog_src, *addrs_src;
	struct nflog *nflog; /* with a controller: the denied flows */
	uint64_t nflog_enobufs, nflog_gap; /* already reported as lost */
	struct counters *counters; /* with a controller: rule hit counts */
	bool counters_failed_logged;
	struct addrs *addrs;
	struct bundle_ref *applied; /* what its table holds, NULL: nothing known */
	bool force_full;            /* the kernel's table may differ: replace it whole */
	bool has_tag;		    /* tag: which bundle the kernel's table says it holds */
	struct nft_tag tag;
	bool held; /* its table is newer than the cached bundle in force: left alone */
	bool not_in_bundle_logged;
	char *error;
	json_t *labels;	   /* from the inventory: reported to the controller */
	json_t *inv_addrs; /* the inventory's "addresses": used with the null dataplane */
	unsigned tampering, full_updates, delta_updates, failures;
	unsigned events_lost, checks; /* event overflows; tables read back to compare */
	struct endpoint_state *next;
};

struct agent {
	const struct agent_options *o;
	struct loop *loop;
	struct netns *ns;
	struct nft_batch *nb;
	struct watch *watch;
	int watch_inventory, watch_bundle;
	int mounts_fd; /* netns_mounts_watch(), -1 without */
	struct loop_source *watch_src, *mounts_src;
	struct bundle_ref *current; /* the bundle to enforce */
	/* current is the cached bundle, which no controller or bundle file has
	 * confirmed since the start: it does not replace a newer table. */
	bool current_cached;
	uint64_t max_serial; /* the largest bundle serial seen or given */
	/* What the state dir's cache holds; cache_error: why the bundle in
	 * force is not in it (reported until a retry succeeds). */
	char cached_hash[BUNDLE_HASH_HEX + 1];
	int64_t cached_revision;
	uint64_t cached_serial;
	char *cache_error;
	int64_t cache_retry_ms; /* monotonic */
	char *last_ack;		/* the last ACK sent (JSON), to send again only when it changes */
	struct endpoint_state *endpoints;
	bool status_dirty;
	unsigned bundles_rejected, inventories_rejected;
	/* The controller link (NULL without --controller). */
	struct link *link;
	int64_t revision;	/* the controller's revision of the current bundle; 0: none */
	bool endpoints_dirty;	/* the controller has not heard the latest list */
	bool ack_pending;	/* the last ACK said not ok: send again when it changes */
	struct flows *flows;	/* with a controller: denied-flow batches */
	uint64_t last_hello_ms; /* monotonic */
	json_t *saved_counters; /* STATE_COUNTERS of a clean exit, by endpoint, until each is opened */
	json_t *flows_written;	/* the flow counters status.json holds */
	uint64_t flows_written_ms; /* monotonic */
};

/* ---- endpoints ---- */

static void endpoint_close(struct endpoint_state *e)
{
	struct loop *loop = e->agent->loop;
	if (e->drift) {
		loop_remove(loop, e->drift_src);
		drift_free(e->drift);
	}
	if (e->addrs) {
		loop_remove(loop, e->addrs_src);
		addrs_free(e->addrs);
	}
	if (e->nflog) {
		loop_remove(loop, e->nflog_src);
		nflog_free(e->nflog);
		e->nflog = NULL;
		e->nflog_enobufs = e->nflog_gap = 0; /* a new socket counts afresh */
	}
	if (e->nft)
		mnl_socket_close(e->nft);
	if (e->nsfd >= 0)
		close(e->nsfd);
	e->nsfd = -1;
	counters_free(e->counters);
	e->counters = NULL;
	e->drift = NULL;
	e->addrs = NULL;
	e->drift_src = e->nflog_src = e->addrs_src = NULL;
	e->nft = NULL;
	e->present = false;
	/* A namespace we no longer hold may come back new: assume nothing. */
	bundle_ref_put(e->applied);
	e->applied = NULL;
	e->has_tag = e->held = false;
	e->agent->status_dirty = true;
}

static void endpoint_free(struct endpoint_state *e)
{
	endpoint_close(e);
	free(e->name);
	free(e->netns);
	free(e->error);
	json_decref(e->labels);
	json_decref(e->inv_addrs);
	free(e);
}

/* A message for the ACK and status.json, which carry UTF-8 only (json_pack
 * refuses anything else, and the agent aborts on the NULL): one cut short
 * by snprintf inside a character loses the piece, anything else that is
 * not UTF-8 (a path) is escaped. malloc()ed. */
static char *agent_text(const char *msg)
{
	char *s = xstrdup(msg);
	utf8_cut(s);
	if (utf8_valid(s))
		return s;
	char *escaped = utf8_escape(s);
	free(s);
	if (!escaped)
		abort();
	return escaped;
}

static void endpoint_set_error(struct endpoint_state *e, const char *msg)
{
	free(e->error);
	e->error = msg ? agent_text(msg) : NULL;
	e->agent->status_dirty = true;
}

/* Why the endpoint cannot be opened or its table applied; logged when it
 * is news, so a refusal retried every tick is said once. */
static void endpoint_fail(struct endpoint_state *e, const char *msg)
{
	char *was = e->error ? xstrdup(e->error) : NULL;
	endpoint_set_error(e, msg);
	if (!was || strcmp(was, e->error) != 0)
		log_error("endpoint %s: %s", e->name, e->error);
	free(was);
}

static void endpoint_sync(struct endpoint_state *e);
static void report(struct agent *a);

/* Reads the endpoint's table back and compares it with what want builds
 * (and the tag it was given): 1 when it is that, 0 when it differs
 * (nft_batch_error() says how; the whole-table batch is built), or a
 * negative errno. */
static int endpoint_verify(struct endpoint_state *e, const struct bundle_ref *want)
{
	struct agent *a = e->agent;
	const struct bundle_endpoint *bep = bundle_find_endpoint(want->b, e->name);
	uint32_t gen;
	bool same;
	if (!bep)
		return -ENOENT;
	nft_batch_set_tag(a->nb, e->has_tag ? &e->tag : NULL);
	e->checks++;
	a->status_dirty = true;
	int r = nft_batch_verify(a->nb, want->b, bep, e->nft, &gen, &same);
	if (r < 0)
		return r;
	if (same && e->drift)
		drift_checked(e->drift, gen);
	return same;
}

static void on_drift(void *data, uint32_t events)
{
	struct endpoint_state *e = data;
	struct drift_report rep = {0};
	drift_dispatch(e->drift, mnl_socket_get_portid(e->nft), &rep);
	if (rep.foreign_changes) {
		e->tampering++;
		e->force_full = true;
		log_warn("endpoint %s: table inet %s changed by another process (netlink port %u: %s, %u "
			 "change%s); putting it back",
			 e->name, NFT_TABLE_NAME, rep.last_portid, rep.last_what, rep.foreign_changes,
			 rep.foreign_changes == 1 ? "" : "s");
		endpoint_sync(e);
		return;
	}
	if (!rep.lost)
		return;
	/* Lost events say something was committed, not what: look before
	 * touching anything. */
	e->events_lost++;
	e->agent->status_dirty = true;
	uint32_t known = drift_known(e->drift), gen;
	if (known && nft_genid(e->nft, &gen) == 0 && gen == known) {
		log_info("endpoint %s: nftables events lost, but nothing was committed since its table was "
			 "last known right",
			 e->name);
		return;
	}
	if (!e->applied) { /* nothing to compare with */
		e->force_full = true;
		endpoint_sync(e);
		return;
	}
	int r = endpoint_verify(e, e->applied);
	if (r == 1) {
		log_info(
		    "endpoint %s: nftables events lost; its table was read back and is as the agent left it",
		    e->name);
		return;
	}
	if (r == 0) {
		e->tampering++;
		log_warn("endpoint %s: nftables events lost; table inet %s read back: %s; putting it back",
			 e->name, NFT_TABLE_NAME, nft_batch_error(e->agent->nb));
	} else {
		log_warn(
		    "endpoint %s: nftables events lost, and its table could not be read back (%s); putting "
		    "it back to be sure",
		    e->name, strerror(-r));
	}
	e->force_full = true;
	endpoint_sync(e);
}

static void endpoint_log_addrs(struct endpoint_state *e)
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

static void on_addrs(void *data, uint32_t events)
{
	struct endpoint_state *e = data;
	int r = addrs_dispatch(e->addrs);
	if (r < 0) {
		/* Lost notifications: start over with a fresh dump. */
		log_warn("endpoint %s: address notifications lost; reloading", e->name);
		loop_remove(e->agent->loop, e->addrs_src);
		e->addrs_src = NULL;
		addrs_free(e->addrs);
		e->addrs = addrs_open(e->agent->ns, e->nsfd);
		if (!e->addrs || !(e->addrs_src = loop_add_fd(e->agent->loop, addrs_fd(e->addrs), EPOLLIN, on_addrs, e))) {
			log_error("endpoint %s: following addresses in %s: %m", e->name, e->netns);
			addrs_free(e->addrs);
			e->addrs = NULL;
			return;
		}
		r = 1;
	}
	if (r > 0) {
		endpoint_log_addrs(e);
		e->agent->status_dirty = true;
		e->agent->endpoints_dirty = true;
	}
}

/* One logged packet: named by the rule of the bundle the table holds. */
static void on_flow_event(void *data, const struct nflog_event *ev)
{
	struct endpoint_state *e = data;
	const char *policy = NULL, *rule = "unknown-rule";
	const struct bundle_endpoint *be = e->applied ? bundle_find_endpoint(e->applied->b, e->name) : NULL;
	if (ev->prefix.position == NFT_POSITION_INVALID) {
		rule = NFT_RULE_CT_INVALID; /* the same in every table */
	} else if (be) {
		const struct bundle_chain *c = &be->chains[ev->prefix.dir];
		if (ev->prefix.position == NFT_POSITION_FALLBACK) {
			rule = c->fallback_reason;
		} else if ((size_t)ev->prefix.position < c->n_rules) {
			rule = c->rules[ev->prefix.position].id;
			policy = c->rules[ev->prefix.position].policy;
		}
	}
	flows_record(e->agent->flows, e->name, ev, policy, rule, (uint64_t)clock_wall_ms());
}

static void on_nflog(void *data, uint32_t events)
{
	struct endpoint_state *e = data;
	(void)events;
	nflog_dispatch(e->nflog, NFLOG_BURST, on_flow_event, e);
	const struct nflog_stats *st = nflog_stats(e->nflog);
	flows_lost(e->agent->flows, e->name, st->enobufs - e->nflog_enobufs, st->gap - e->nflog_gap);
	e->nflog_enobufs = st->enobufs;
	e->nflog_gap = st->gap;
}

/* ---- rule hit counts ---- */

static const char *verdict_word(enum verdict v)
{
	return v == VERDICT_ACCEPT ? "allow" : v == VERDICT_AUDIT ? "audit" : "deny";
}

/* Finds what rule (a comment: rule id or fallback reason) is in b. */
static bool rule_named(const struct bundle *b, const char *endpoint, enum direction dir, const char *rule,
		       const char **policy, const char **verdict)
{
	const struct bundle_endpoint *be = b ? bundle_find_endpoint(b, endpoint) : NULL;
	if (!be)
		return false;
	const struct bundle_chain *c = &be->chains[dir];
	for (size_t i = 0; i < c->n_rules; i++) {
		const struct bundle_rule *r = &c->rules[i];
		if (strcmp(r->id, rule) != 0)
			continue;
		*policy = r->policy;
		*verdict = r->action == ACTION_ALLOW ? "allow" : r->mode == MODE_AUDIT ? "audit" : "deny";
		return true;
	}
	if (strcmp(c->fallback_reason, rule) != 0)
		return false;
	*policy = NULL;
	*verdict = verdict_word(c->fallback);
	return true;
}

static void on_counter_growth(void *data, const struct counter_growth *g)
{
	struct endpoint_state *e = data;
	const char *policy = NULL, *verdict = NULL;
	/* Of the rules every chain starts with, the invalid drop is reported
	 * (the others accept conntrack's own traffic, loopback and ND). */
	if (strcmp(g->rule, NFT_RULE_CT_INVALID) == 0) {
		flows_hit(e->agent->flows, e->name, g->dir, g->rule, NULL, "deny", g->packets, g->bytes,
			  (uint64_t)clock_wall_ms());
		return;
	}
	if (strcmp(g->rule, NFT_RULE_ESTABLISHED) == 0 || strcmp(g->rule, NFT_RULE_LOOPBACK) == 0 ||
	    strcmp(g->rule, NFT_RULE_NEIGHBOUR_DISCOVERY) == 0)
		return;
	/* The bundle the table was built from; at start, before this run
	 * built it, the cached bundle (the one it most likely holds). */
	if (!rule_named(e->applied ? e->applied->b : NULL, e->name, g->dir, g->rule, &policy, &verdict) &&
	    !rule_named(e->agent->current ? e->agent->current->b : NULL, e->name, g->dir, g->rule, &policy,
			&verdict)) {
		log_debug("endpoint %s: counter of unknown rule \"%s\" not reported", e->name, g->rule);
		return;
	}
	flows_hit(e->agent->flows, e->name, g->dir, g->rule, policy, verdict, g->packets, g->bytes,
		  (uint64_t)clock_wall_ms());
}

/* Reads the table's counters: what they grew by goes into the flow window. */
static void endpoint_read_counters(struct endpoint_state *e)
{
	if (!e->counters || !e->nft)
		return;
	int r = counters_read(e->counters, e->nft, on_counter_growth, e);
	if (r < 0 && !e->counters_failed_logged)
		log_error_errno(r, "endpoint %s: reading rule counters: %m (hit counts go unreported)", e->name);
	e->counters_failed_logged = r < 0;
}

/* A clean exit's last reading carries over to the next run, per endpoint
 * and namespace (a namespace made anew has new rules). */
static void load_saved_counters(struct agent *a)
{
	char *text;
	size_t len;
	if (!a->o->state_dir || !a->flows || state_read(a->o->state_dir, STATE_COUNTERS, 64u << 20, &text, &len) < 0)
		return;
	a->saved_counters = json_loadb(text, len, 0, NULL);
	free(text);
	if (!json_is_object(a->saved_counters)) {
		log_warn("%s/%s unreadable; rule hit counts start afresh", a->o->state_dir, STATE_COUNTERS);
		json_decref(a->saved_counters);
		a->saved_counters = NULL;
	}
	/* Used once: a later crash must not count from this baseline again,
	 * so without the unlink it is not used at all. */
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", a->o->state_dir, STATE_COUNTERS);
	if (unlink(path) < 0) {
		log_error("removing %s: %m; rule hit counts start afresh", path);
		json_decref(a->saved_counters);
		a->saved_counters = NULL;
	}
}

static void endpoint_counters_open(struct endpoint_state *e)
{
	struct agent *a = e->agent;
	e->counters = counters_new();
	json_t *saved = json_object_get(a->saved_counters, e->name);
	json_t *dev = json_object_get(saved, "dev"), *ino = json_object_get(saved, "ino");
	if (saved && json_is_integer(dev) && json_is_integer(ino) &&
	    (unsigned long)json_integer_value(dev) == e->id.dev && (unsigned long)json_integer_value(ino) == e->id.ino &&
	    counters_load(e->counters, json_object_get(saved, "readings")) < 0)
		log_warn("endpoint %s: saved rule counters unreadable; its hit counts start afresh", e->name);
	json_object_del(a->saved_counters, e->name);
}

static void save_counters(struct agent *a)
{
	if (!a->o->state_dir || !a->flows)
		return;
	json_t *out = json_object();
	for (struct endpoint_state *e = a->endpoints; e; e = e->next) {
		if (e->counters && e->present)
			json_object_set_new(out, e->name,
					    json_pack("{s:I,s:I,s:o}", "dev", (json_int_t)e->id.dev, "ino",
						      (json_int_t)e->id.ino, "readings", counters_save(e->counters)));
	}
	char *text = json_dumps(out, JSON_COMPACT);
	json_decref(out);
	int r = text ? state_write(a->o->state_dir, STATE_COUNTERS, text, strlen(text)) : -ENOMEM;
	if (r < 0)
		log_error_errno(r, "writing %s/%s: %m", a->o->state_dir, STATE_COUNTERS);
	free(text);
}

static void on_counters_tick(void *data, uint32_t events)
{
	struct agent *a = data;
	for (struct endpoint_state *e = a->endpoints; e; e = e->next)
		if (e->present && e->applied)
			endpoint_read_counters(e);
}

/* Which bundle the namespace's table says it holds (from an earlier run). */
static void endpoint_read_tag(struct endpoint_state *e)
{
	struct agent *a = e->agent;
	int r = nft_tag_read(e->nft, &e->tag);
	e->has_tag = r == 0;
	if (r == 0) {
		/* New serials go past it; an absurd one (someone else's) is not followed. */
		if (e->tag.serial < (UINT64_C(1) << 62) && e->tag.serial > a->max_serial)
			a->max_serial = e->tag.serial;
	} else if (r != -ENOENT) {
		log_warn("endpoint %s: reading which bundle its table holds: %s; taken as none", e->name,
			 strerror(-r));
	}
}

/* The endpoint whose namespace is id, if one holds it. */
static struct endpoint_state *namespace_holder(struct agent *a, const struct netns_id *id)
{
	for (struct endpoint_state *e = a->endpoints; e; e = e->next) {
		if (e->nsfd >= 0 && e->id.dev == id->dev && e->id.ino == id->ino)
			return e;
	}
	return NULL;
}

/* Opens the namespace's sockets; false when it is not there (yet) or
 * refused (the reason in e->error). */
static bool endpoint_open(struct endpoint_state *e)
{
	struct agent *a = e->agent;
	char msg[1024];
	if (a->o->null_dataplane) {
		e->present = true;
		return true;
	}
	if (!e->netns) {
		endpoint_fail(e, "the inventory gives no netns");
		return false;
	}
	struct netns_id id;
	int fd = netns_open(a->ns, e->netns, &id);
	if (fd == -ENOENT) {
		/* Not there (yet): "namespace not present" says it all. */
		if (e->error)
			endpoint_set_error(e, NULL);
		return false;
	}
	if (fd < 0) {
		endpoint_fail(e, netns_open_error(fd, e->netns, msg, sizeof(msg)));
		return false;
	}
	/* One network namespace is one endpoint: two tables taking turns in
	 * it would each look like tampering to the other, forever. Whoever
	 * holds it keeps it; at start the first by name (the list's order). */
	const struct endpoint_state *holder = namespace_holder(a, &id);
	if (holder) {
		close(fd);
		snprintf(msg, sizeof(msg), "namespace %s is already endpoint %s's: %s", e->netns, holder->name,
			 "one network namespace is one endpoint");
		endpoint_fail(e, msg);
		return false;
	}
	e->nsfd = fd;
	e->id = id;
	int r = netns_mnl_open(a->ns, e->nsfd, NETLINK_NETFILTER, &e->nft);
	if (r < 0) {
		snprintf(msg, sizeof(msg), "opening nftables in %s: %s", e->netns, strerror(-r));
		endpoint_fail(e, msg);
		close(e->nsfd);
		e->nsfd = -1;
		return false;
	}
	endpoint_read_tag(e);
	e->drift = drift_open(a->ns, e->nsfd);
	if (!e->drift || !(e->drift_src = loop_add_fd(a->loop, drift_fd(e->drift), EPOLLIN, on_drift, e)))
		log_error("endpoint %s: watching nftables events in %s: %m (tampering will go unnoticed)",
			  e->name, e->netns);
	if (a->flows) {
		e->nflog = nflog_open(a->ns, e->nsfd, a->o->nflog_group);
		if (!e->nflog || !(e->nflog_src = loop_add_fd(a->loop, nflog_fd(e->nflog), EPOLLIN, on_nflog, e))) {
			log_error("endpoint %s: reading NFLOG group %u in %s: %m (its denied flows go unreported)",
				  e->name, a->o->nflog_group, e->netns);
			nflog_free(e->nflog);
			e->nflog = NULL;
		}
	}
	if (a->flows)
		endpoint_counters_open(e);
	e->addrs = addrs_open(a->ns, e->nsfd);
	if (!e->addrs || !(e->addrs_src = loop_add_fd(a->loop, addrs_fd(e->addrs), EPOLLIN, on_addrs, e)))
		log_error("endpoint %s: following addresses in %s: %m", e->name, e->netns);
	else
		endpoint_log_addrs(e);
	e->present = true;
	endpoint_set_error(e, NULL); /* refused before, perhaps */
	/* Whatever table the namespace holds, we did not make it this run. */
	e->force_full = true;
	log_info("endpoint %s: namespace %s opened", e->name, e->netns);
	a->status_dirty = true;
	return true;
}

/* Sends the batch built in a->nb. Events are not listened to meanwhile
 * (drift.h), and the generation is read before and after: *clean when the
 * commit was the only one in between, so the table is exactly the batch.
 * When someone commits between the first reading and the commit, the
 * kernel refuses it (nft_batch_send_at()) and it goes again, whole: a
 * delta might build on a change we did not see. The last attempt commits
 * at any generation, so a namespace where others commit all the time
 * still gets its table (not clean: the caller reads it back). */
static int endpoint_commit(struct endpoint_state *e, const struct bundle_endpoint *bep, bool *full,
			   bool *clean)
{
	struct agent *a = e->agent;
	*clean = false;
	for (int attempt = 1;; attempt++) {
		uint32_t before = 0, after = 0;
		if (attempt == COMMIT_ATTEMPTS || nft_genid(e->nft, &before) < 0)
			before = 0; /* commit at any generation; not clean */
		bool paused = e->drift && drift_pause(e->drift) == 0;
		int r = nft_batch_send_at(a->nb, e->nft, before);
		if (paused && drift_resume(e->drift) < 0) {
			log_error("endpoint %s: rejoining nftables events: %m; tampering will go unnoticed",
				  e->name);
			loop_remove(a->loop, e->drift_src);
			e->drift_src = NULL;
			drift_free(e->drift);
			e->drift = NULL;
		}
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
			r = nft_batch_build(a->nb, a->current->b, bep);
			if (r < 0)
				return r;
			*full = true;
			endpoint_read_counters(e);
		}
	}
}

/* Brings the endpoint's table to the current bundle, if it is not there. */
static void endpoint_sync(struct endpoint_state *e)
{
	struct agent *a = e->agent;
	if (!a->current || !e->present)
		return;
	if (e->applied == a->current && !e->force_full)
		return;
	const struct bundle_endpoint *bep = bundle_find_endpoint(a->current->b, e->name);
	if (!bep) {
		/* The controller has not compiled for it yet: leave its
		 * namespace alone. */
		if (!e->not_in_bundle_logged)
			log_info("endpoint %s: not in bundle %.12s, left alone", e->name, a->current->b->hash);
		e->not_in_bundle_logged = true;
		return;
	}
	e->not_in_bundle_logged = false;
	/* Started from a cache older than what the table holds (the cache
	 * could not be written): an older bundle never replaces a newer one.
	 * The table stays as it is until the controller or a bundle file
	 * says what to enforce. */
	if (a->current_cached && e->has_tag && e->tag.serial > a->current->serial &&
	    strcmp(e->tag.hash, a->current->b->hash) != 0) {
		char msg[256];
		snprintf(msg, sizeof(msg),
			 "its table holds bundle %.12s (revision %lld), newer than the cached %.12s: "
			 "kept until the controller sends a bundle",
			 e->tag.hash, (long long)e->tag.revision, a->current->b->hash);
		if (!e->held) {
			log_warn("endpoint %s: %s", e->name, msg);
			/* The ACK says it holds nothing certain: the controller sends its bundle. */
			a->ack_pending = true;
		}
		e->held = true;
		endpoint_set_error(e, msg);
		return;
	}
	e->held = false;

	struct nft_tag tag = {.serial = a->current->serial, .revision = a->current->revision};
	memcpy(tag.hash, a->current->b->hash, sizeof(tag.hash));
	nft_batch_set_tag(a->nb, &tag);
	/* Someone else committing at the same moment can leave the result
	 * uncertain: read back, and replace again if it differs. */
	for (int round = 0; round < COMMIT_ATTEMPTS; round++) {
		const struct bundle_endpoint *old =
		    e->applied && !e->force_full ? bundle_find_endpoint(e->applied->b, e->name) : NULL;
		bool full = true, clean = true;
		int r = old ? nft_batch_build_update(a->nb, e->applied->b, old, a->current->b, bep, &full)
			    : nft_batch_build(a->nb, a->current->b, bep);
		/* A whole-table replace starts every counter again: take what the
		 * old rules counted first. */
		if (r == 0 && full)
			endpoint_read_counters(e);
		if (r == 0 && !a->o->null_dataplane)
			r = endpoint_commit(e, bep, &full, &clean);
		if (r < 0) {
			char msg[1024];
			snprintf(msg, sizeof(msg), "applying bundle %.12s: %s", a->current->b->hash,
				 nft_batch_error(a->nb));
			endpoint_fail(e, msg);
			e->failures++;
			/* A failed send leaves the old table whole (one transaction),
			 * but an unknown outcome means we cannot trust a delta next. */
			e->force_full = true;
			return;
		}
		struct nft_batch_stats st;
		nft_batch_stats(a->nb, &st);
		if (full && e->counters && !a->o->null_dataplane)
			counters_table_replaced(e->counters);
		if (full)
			e->full_updates++;
		else
			e->delta_updates++;
		log_info("endpoint %s: %s bundle %.12s (%s: %zu rules, %zu sets, %zu elements)%s", e->name,
			 a->o->null_dataplane ? "built" : "applied", a->current->b->hash,
			 full ? "whole table" : "set delta", st.rules, st.sets, st.elements,
			 a->o->null_dataplane ? " [null dataplane]" : "");
		bundle_ref_put(e->applied);
		e->applied = bundle_ref_get(a->current);
		e->force_full = false;
		e->tag = tag;
		e->has_tag = true;
		endpoint_set_error(e, NULL);
		if (clean || !e->drift)
			return;
		/* Another process committed too, perhaps while we were not
		 * listening: is the table still what we sent? */
		r = endpoint_verify(e, e->applied);
		if (r == 1)
			return;
		if (r == 0) {
			e->tampering++;
			log_warn("endpoint %s: another process committed as the table was loaded, and it "
				 "differs: %s; putting it back",
				 e->name, nft_batch_error(a->nb));
		} else {
			log_warn("endpoint %s: another process committed as the table was loaded, and it "
				 "could not be read back (%s); loading it again",
				 e->name, strerror(-r));
		}
		e->force_full = true;
		nft_batch_set_tag(a->nb, &tag);
	}
}

/* ---- inputs: inventory and bundle ---- */

static struct endpoint_state *find_endpoint(struct agent *a, const char *name)
{
	for (struct endpoint_state *e = a->endpoints; e; e = e->next) {
		if (strcmp(e->name, name) == 0)
			return e;
	}
	return NULL;
}

static bool same_str(const char *x, const char *y)
{
	return (!x && !y) || (x && y && strcmp(x, y) == 0);
}

static void load_inventory(struct agent *a)
{
	struct diag d;
	diag_init(&d, a->o->inventory_path);
	struct inventory *inv = inventory_new();
	if (!inv)
		abort();
	if (inventory_load_file(inv, a->o->inventory_path, a->o->node, 0, &d) < 0 ||
	    inventory_finish(inv, &d) < 0) {
		/* Keep the endpoints we have: a bad edit must not unmanage them. */
		log_error("inventory %s rejected; keeping the previous one:", a->o->inventory_path);
		diag_print(&d, stderr);
		a->inventories_rejected++;
		a->status_dirty = true;
		diag_release(&d);
		inventory_free(inv);
		return;
	}
	diag_release(&d);

	/* Endpoints gone from the inventory: close; their tables stay
	 * (fail-static) until the namespace goes. */
	for (struct endpoint_state **p = &a->endpoints; *p;) {
		struct endpoint_state *e = *p;
		bool keep = false;
		for (size_t i = 0; i < inv->n && !keep; i++)
			keep = strcmp(inv->v[i].name, e->name) == 0;
		if (keep) {
			p = &e->next;
			continue;
		}
		log_info("endpoint %s: removed from the inventory; no longer managed", e->name);
		*p = e->next;
		endpoint_free(e);
	}
	for (size_t i = 0; i < inv->n; i++) {
		const struct endpoint *ie = &inv->v[i];
		struct endpoint_state *e = find_endpoint(a, ie->name);
		if (e && !same_str(e->netns, ie->netns)) {
			log_info("endpoint %s: namespace now %s", e->name, ie->netns ? ie->netns : "(none)");
			endpoint_close(e);
			free(e->netns);
			e->netns = ie->netns ? xstrdup(ie->netns) : NULL;
		}
		if (!e) {
			e = xcalloc(1, sizeof(*e));
			e->agent = a;
			e->nsfd = -1;
			e->name = xstrdup(ie->name);
			e->netns = ie->netns ? xstrdup(ie->netns) : NULL;
			/* Kept in name order: endpoints are opened in it, so
			 * which one gets a shared namespace at start is no
			 * accident of the file's order. */
			struct endpoint_state **p = &a->endpoints;
			while (*p && strcmp((*p)->name, e->name) < 0)
				p = &(*p)->next;
			e->next = *p;
			*p = e;
			log_info("endpoint %s: added (%s)", e->name, e->netns ? e->netns : "no netns");
		}
		json_decref(e->labels);
		json_decref(e->inv_addrs);
		e->labels = json_object();
		e->inv_addrs = json_array();
		for (size_t k = 0; k < ie->labels.n; k++)
			json_object_set_new(e->labels, ie->labels.v[k].key, json_string(ie->labels.v[k].value));
		for (size_t k = 0; k < ie->n_addrs; k++) {
			char buf[ADDR_STRLEN];
			addr_format(&ie->addrs[k], buf);
			json_array_append_new(e->inv_addrs, json_string(buf));
		}
	}
	inventory_free(inv);
	a->status_dirty = true;
	a->endpoints_dirty = true;
}

/* Takes ownership of text. Returns the bundle, or NULL (logged). */
static struct bundle *decode_bundle(struct agent *a, const char *source, char *text, size_t len)
{
	struct diag d;
	diag_init(&d, source);
	struct bundle *b = bundle_decode(text, len, &d);
	free(text);
	if (!b) {
		log_error("bundle %s rejected; keeping the one in force:", source);
		diag_print(&d, stderr);
	} else if (strcmp(b->node, a->o->node) != 0) {
		log_error("bundle %s is for node \"%s\", not \"%s\"; keeping the one in force", source, b->node,
			  a->o->node);
		bundle_free(b);
		b = NULL;
	}
	diag_release(&d);
	if (!b) {
		a->bundles_rejected++;
		a->status_dirty = true;
	}
	return b;
}

/* Writes the bundle in force to the cache: bundle.json (unless it holds
 * it already), then the revision file "REVISION SERIAL HASH", which says
 * what bundle.json is. A failure is kept in cache_error, reported in
 * status.json and every ACK, and tried again. */
static void cache_write(struct agent *a)
{
	const char *dir = a->o->state_dir, *file = STATE_BUNDLE;
	const struct bundle_ref *cur = a->current;
	int r = 0;
	if (!dir || !cur)
		return;
	if (strcmp(a->cached_hash, cur->b->hash) != 0) {
		char *text = bundle_encode(cur->b, false);
		r = text ? state_write(dir, STATE_BUNDLE, text, strlen(text)) : -ENOMEM;
		free(text);
		if (r == 0) {
			memcpy(a->cached_hash, cur->b->hash, sizeof(a->cached_hash));
			a->cached_revision = 0;
			a->cached_serial = 0; /* until the revision file says otherwise */
		}
	}
	if (r == 0) {
		char rev[128];
		snprintf(rev, sizeof(rev), "%lld %llu %s\n", (long long)cur->revision,
			 (unsigned long long)cur->serial, cur->b->hash);
		file = STATE_REVISION;
		r = state_write(dir, STATE_REVISION, rev, strlen(rev));
	}
	a->status_dirty = true;
	a->cache_retry_ms = clock_mono_ms() + CACHE_RETRY_MS;
	if (r < 0) {
		char msg[1024];
		snprintf(
		    msg, sizeof(msg),
		    "bundle %.12s (revision %lld) is enforced but not cached: writing %s/%s: %s; a restart "
		    "without the controller would start from the older cache",
		    cur->b->hash, (long long)cur->revision, dir, file, strerror(-r));
		char *text = agent_text(msg);
		if (!a->cache_error || strcmp(a->cache_error, text) != 0)
			log_error("%s", text);
		free(a->cache_error);
		a->cache_error = text;
		return;
	}
	a->cached_revision = cur->revision;
	a->cached_serial = cur->serial;
	if (a->cache_error) {
		log_info("bundle %.12s cached in %s after all", cur->b->hash, dir);
		free(a->cache_error);
		a->cache_error = NULL;
	}
}

/* A new serial, later than any bundle's this agent has seen. */
static uint64_t next_serial(struct agent *a)
{
	uint64_t s = (uint64_t)clock_wall_ms();
	if (s <= a->max_serial)
		s = a->max_serial + 1;
	a->max_serial = s;
	return s;
}

/* Makes b (owned) the bundle to enforce, as the controller's revision
 * (0: from a file), and caches it. Each bundle taken gets a new serial,
 * also when its content is the one in force: the controller or the file
 * has confirmed it, so it goes before what any table says it holds. */
static void set_bundle(struct agent *a, struct bundle *b, int64_t revision)
{
	bool same = a->current && strcmp(a->current->b->hash, b->hash) == 0;
	a->revision = revision;
	a->current_cached = false;
	if (same) {
		bundle_free(b);
	} else {
		log_info("bundle %.12s in force (%zu endpoints, %zu sets)", b->hash, b->n_endpoints,
			 b->n_sets);
		bundle_ref_put(a->current);
		a->current = bundle_ref_new(b);
	}
	a->current->serial = next_serial(a);
	a->current->revision = revision;
	a->status_dirty = true;
	cache_write(a);
}

/* Returns false when the file could not be read or was rejected. */
static bool load_bundle_file(struct agent *a)
{
	char *text;
	size_t len;
	int r = state_read_path(a->o->bundle_path, BUNDLE_MAX_BYTES, &text, &len);
	if (r < 0) {
		log_error_errno(r, "reading bundle %s: %m; keeping the one in force", a->o->bundle_path);
		a->bundles_rejected++;
		a->status_dirty = true;
		return false;
	}
	struct bundle *b = decode_bundle(a, a->o->bundle_path, text, len);
	if (b)
		set_bundle(a, b, 0);
	return b != NULL;
}

/* The revision file: "REVISION SERIAL HASH" (or, from older agents,
 * "REVISION" alone). Its serial counts only when HASH is the bundle's. */
static void read_cached_revision(struct agent *a, const struct bundle *b, int64_t *revision, uint64_t *serial)
{
	char *text, hash[BUNDLE_HASH_HEX + 2] = "";
	size_t len;
	long long rev = 0;
	unsigned long long ser = 0;
	*revision = 0;
	*serial = 0;
	if (state_read(a->o->state_dir, STATE_REVISION, 256, &text, &len) < 0)
		return;
	int n = sscanf(text, "%lld %llu %65s", &rev, &ser, hash);
	free(text);
	if (n == 1) {
		*revision = rev;
	} else if (n == 3 && strcmp(hash, b->hash) == 0) {
		*revision = rev;
		*serial = ser;
	} else {
		log_warn("%s/%s does not describe the cached bundle %.12s; its revision and age are unknown",
			 a->o->state_dir, STATE_REVISION, b->hash);
	}
}

static void load_cached_bundle(struct agent *a)
{
	char *text;
	size_t len;
	if (!a->o->state_dir)
		return;
	int r = state_read(a->o->state_dir, STATE_BUNDLE, BUNDLE_MAX_BYTES, &text, &len);
	if (r == -ENOENT)
		return;
	if (r < 0) {
		log_error_errno(r, "reading cached bundle in %s: %m", a->o->state_dir);
		return;
	}
	struct bundle *b = decode_bundle(a, "cached bundle", text, len);
	if (!b)
		return;
	int64_t revision;
	uint64_t serial;
	read_cached_revision(a, b, &revision, &serial);
	log_info("starting from the cached bundle %.12s (revision %lld)", b->hash, (long long)revision);
	a->current = bundle_ref_new(b);
	a->current->serial = serial;
	a->current->revision = revision;
	a->current_cached = true;
	a->revision = revision;
	if (serial > a->max_serial)
		a->max_serial = serial;
	memcpy(a->cached_hash, b->hash, sizeof(a->cached_hash));
	a->cached_revision = revision;
	a->cached_serial = serial;
	a->status_dirty = true;
}

/* ---- status ---- */

/* The flow counters change with every packet: status.json follows them at
 * most once a second, when nothing else made it due sooner. */
#define STATUS_FLOWS_MS 1000

static void write_status(struct agent *a)
{
	if (!a->o->state_dir)
		return;
	json_t *flows = a->flows ? flows_status(a->flows) : NULL;
	if (!a->status_dirty && flows && !json_equal(flows, a->flows_written) &&
	    (uint64_t)clock_mono_ms() - a->flows_written_ms >= STATUS_FLOWS_MS)
		a->status_dirty = true;
	if (!a->status_dirty) {
		json_decref(flows);
		return;
	}
	json_t *eps = json_array();
	for (struct endpoint_state *e = a->endpoints; e; e = e->next) {
		json_t *addrs = json_array();
		size_t n = 0;
		const struct bh_addr *list = e->addrs ? addrs_list(e->addrs, &n) : NULL;
		for (size_t i = 0; i < n; i++) {
			char s[ADDR_STRLEN];
			addr_format(&list[i], s);
			json_array_append_new(addrs, json_string(s));
		}
		json_array_append_new(
		    eps,
		    json_pack("{s:s,s:s?,s:b,s:o,s:s?,s:b,s:s?,s:{s:I,s:I,s:I,s:I,s:I,s:I}}", "name", e->name,
			      "netns", e->netns, "present", e->present, "addresses", addrs, "applied",
			      e->applied ? e->applied->b->hash : NULL, "held", e->held, "error", e->error,
			      "counters", "full_updates", (json_int_t)e->full_updates, "delta_updates",
			      (json_int_t)e->delta_updates, "failures", (json_int_t)e->failures, "tampering",
			      (json_int_t)e->tampering, "events_lost", (json_int_t)e->events_lost, "checks",
			      (json_int_t)e->checks));
		if (e->nflog) {
			const struct nflog_stats *st = nflog_stats(e->nflog);
			json_object_set_new(json_array_get(eps, json_array_size(eps) - 1), "nflog",
					    json_pack("{s:I,s:I,s:I,s:I,s:I}", "events", (json_int_t)st->events,
						      "enobufs", (json_int_t)st->enobufs, "gap", (json_int_t)st->gap,
						      "malformed", (json_int_t)st->malformed, "foreign",
						      (json_int_t)st->foreign));
		}
	}
	json_t *st = json_pack("{s:s,s:s?,s:I,s:o,s:s,s:o,s:{s:I,s:I}}", "node", a->o->node, "bundle",
			       a->current ? a->current->b->hash : NULL, "revision", (json_int_t)a->revision, "controller",
			       a->link ? link_status(a->link) : json_null(), "dataplane",
			       a->o->null_dataplane ? "null" : "nft", "endpoints", eps, "rejected", "bundles",
			       (json_int_t)a->bundles_rejected, "inventories", (json_int_t)a->inventories_rejected);
	if (st && a->o->state_dir)
		json_object_set_new(st, "cache",
				    json_pack("{s:s?,s:I,s:s?}", "bundle",
					      a->cached_hash[0] ? a->cached_hash : NULL, "revision",
					      (json_int_t)a->cached_revision, "error", a->cache_error));
	if (st && flows) {
		json_object_set(st, "flows", flows);
		json_decref(a->flows_written);
		a->flows_written = flows; /* the reference flows held */
		a->flows_written_ms = (uint64_t)clock_mono_ms();
	} else {
		json_decref(flows);
	}
	char *text = st ? json_dumps(st, JSON_INDENT(2)) : NULL;
	json_decref(st);
	if (!text)
		abort();
	int r = state_write(a->o->state_dir, STATE_STATUS, text, strlen(text));
	if (r < 0)
		log_error_errno(r, "writing %s/%s: %m", a->o->state_dir, STATE_STATUS);
	free(text);
	a->status_dirty = false;
}

/* ---- the loop's handlers ---- */

static unsigned sync_all(struct agent *a)
{
	unsigned behind = 0;
	for (struct endpoint_state *e = a->endpoints; e; e = e->next) {
		if (!e->present)
			endpoint_open(e);
		endpoint_sync(e);
		if (a->current && (!e->present || e->applied != a->current) &&
		    bundle_find_endpoint(a->current->b, e->name))
			behind++;
	}
	return behind;
}

/* Namespaces come and go with their containers: a path that disappears or
 * now names another namespace means the old one is gone. Our sockets would
 * keep a dead namespace alive, so they are closed at once. */
static void check_namespaces(struct agent *a)
{
	if (a->o->null_dataplane)
		return;
	for (struct endpoint_state *e = a->endpoints; e; e = e->next) {
		if (!e->present)
			continue;
		struct netns_id id;
		int r = netns_identify(e->netns, &id);
		if (r == 0 && id.dev == e->id.dev && id.ino == e->id.ino)
			continue;
		log_info("endpoint %s: namespace %s %s", e->name, e->netns, r < 0 ? "is gone" : "was replaced");
		endpoint_close(e);
	}
}

static void send_flows(void *data, json_t *body)
{
	link_send(((struct agent *)data)->link, PROTO_FLOWS, body);
}

/* Closes the flow window when due and sends what waits. */
static void on_flow_tick(void *data, uint32_t events)
{
	struct agent *a = data;
	(void)events;
	uint64_t now = (uint64_t)clock_wall_ms();
	flows_tick(a->flows, now, a->o->flow_window_ms, false);
	flows_send(a->flows, now, send_flows, a);
}

static void on_tick(void *data, uint32_t events)
{
	struct agent *a = data;
	if (a->cache_error && clock_mono_ms() >= a->cache_retry_ms)
		cache_write(a);
	check_namespaces(a);
	sync_all(a);
	report(a);
	write_status(a);
}

/* The mount table changed: a namespace path may have gone, or name a new
 * namespace (a container restarted under its name), which must not wait
 * for the next tick to get its table. */
static void on_mounts(void *data, uint32_t events)
{
	on_tick(data, events);
}

static void on_watch(void *data, uint32_t events)
{
	struct agent *a = data;
	unsigned changed = 0;
	watch_dispatch(a->watch, &changed);
	if (a->watch_inventory >= 0 && (changed & (1u << a->watch_inventory)))
		load_inventory(a);
	if (a->watch_bundle >= 0 && (changed & (1u << a->watch_bundle)))
		(void)load_bundle_file(a);
	if (changed) {
		sync_all(a);
		report(a);
		write_status(a);
	}
}

/* ---- the controller (proto.h) ---- */

static json_t *endpoints_json(struct agent *a)
{
	json_t *out = json_array();
	for (struct endpoint_state *e = a->endpoints; e; e = e->next) {
		json_t *addrs;
		if (a->o->null_dataplane || !e->addrs) {
			/* No namespace read: what the inventory says. */
			addrs = json_incref(e->inv_addrs ? e->inv_addrs : json_array());
			if (!e->inv_addrs)
				json_decref(addrs);
		} else {
			addrs = json_array();
			size_t n;
			const struct bh_addr *list = addrs_list(e->addrs, &n);
			for (size_t i = 0; i < n; i++) {
				char s[ADDR_STRLEN];
				addr_format(&list[i], s);
				json_array_append_new(addrs, json_string(s));
			}
		}
		json_array_append_new(out, json_pack("{s:s,s:s?,s:O,s:o}", "name", e->name, "netns", e->netns, "labels",
						     e->labels ? e->labels : json_object(), "addresses", addrs));
	}
	return out;
}

/* Some endpoint's table is newer than the bundle in force (see
 * endpoint_sync()). */
static bool holding_newer(const struct agent *a)
{
	for (const struct endpoint_state *e = a->endpoints; e; e = e->next)
		if (e->held)
			return true;
	return false;
}

/* What the agent tells the controller it holds: nothing certain while a
 * table is newer than its bundle, so that the controller sends one. */
static json_t *held_json(struct agent *a, const char *key)
{
	if (holding_newer(a))
		return json_null();
	if (!strcmp(key, "revision"))
		return a->current && a->revision ? json_integer(a->revision) : json_null();
	return a->current ? json_string(a->current->b->hash) : json_null();
}

static void send_hello(void *data)
{
	struct agent *a = data;
	link_send(a->link, PROTO_HELLO,
		  json_pack("{s:s,s:s,s:o,s:o,s:o}", "node", a->o->node, "agent", BULKHEAD_VERSION, "revision",
			    held_json(a, "revision"), "hash", held_json(a, "hash"), "endpoints", endpoints_json(a)));
	a->endpoints_dirty = false;
	a->last_hello_ms = (uint64_t)clock_mono_ms();
	/* A new session may not have heard the last ACK. */
	free(a->last_ack);
	a->last_ack = NULL;
	/* A new session may be a new controller: every unacknowledged batch
	 * goes again after the HELLO (it stores each batch once). */
	if (a->flows)
		flows_resend_all(a->flows);
}

static json_t *heartbeat_body(void *data)
{
	struct agent *a = data;
	return json_pack("{s:o,s:o}", "revision", held_json(a, "revision"), "hash", held_json(a, "hash"));
}

/* What every endpoint of the current bundle holds; error for the whole,
 * else the cache's. always: send it even if it says what the last one
 * did (report() sends again only what is new). */
static void send_ack(struct agent *a, int64_t revision, const char *error, bool always)
{
	json_t *eps = json_array();
	if (!error)
		error = a->cache_error;
	bool ok = a->current && !error;
	for (struct endpoint_state *e = a->endpoints; a->current && e; e = e->next) {
		if (!bundle_find_endpoint(a->current->b, e->name))
			continue;
		bool applied = e->present && e->applied == a->current;
		const char *why = e->error ? e->error : e->present ? NULL : "namespace not present";
		ok &= applied;
		json_array_append_new(eps, json_pack("{s:s,s:s?,s:s?}", "name", e->name, "applied",
						     applied ? a->current->b->hash : NULL, "error", applied ? NULL : why));
	}
	json_t *body = json_pack("{s:I,s:o,s:b,s:s?,s:o}", "revision", (json_int_t)revision, "hash",
				 held_json(a, "hash"), "ok", ok, "error", error, "endpoints", eps);
	char *text = body ? json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	a->ack_pending = !ok;
	if (!always && text && a->last_ack && strcmp(text, a->last_ack) == 0) {
		free(text);
		json_decref(body);
		return;
	}
	free(a->last_ack);
	a->last_ack = text;
	link_send(a->link, PROTO_ACK, body);
}

/* A bundle from the controller: check, install, enforce, acknowledge. */
static void take_bundle(struct agent *a, int64_t revision, json_t *bundle_json, const char *what)
{
	struct diag d;
	diag_init(&d, what);
	struct bundle *b = bundle_from_json(bundle_json, &d);
	char error[512] = "";
	if (!b) {
		snprintf(error, sizeof(error), "%s rejected: %s%s%s", what, d.n ? d.v[0].path : "",
			 d.n ? ": " : "", d.n ? d.v[0].message : "");
	} else if (strcmp(b->node, a->o->node) != 0) {
		snprintf(error, sizeof(error), "%s is for node \"%s\", not \"%s\"", what, b->node, a->o->node);
		bundle_free(b);
		b = NULL;
	}
	diag_release(&d);
	if (!b) {
		char *text = agent_text(error); /* the bundle's own text, maybe cut */
		log_error("%s; keeping the one in force", text);
		a->bundles_rejected++;
		a->status_dirty = true;
		send_ack(a, revision, text, true);
		free(text);
		return;
	}
	set_bundle(a, b, revision);
	sync_all(a);
	send_ack(a, revision, NULL, true);
	write_status(a);
}

static void on_delta(struct agent *a, json_t *body)
{
	const char *base = json_string_value(json_object_get(body, "base"));
	if (!a->current || strcmp(base, a->current->b->hash) != 0) {
		log_info("delta against %.12s, which we do not hold: asking for the whole bundle", base);
		send_hello(a);
		return;
	}
	json_t *cur = bundle_to_json(a->current->b);
	struct diag d;
	diag_init(&d, "delta");
	json_t *next = cur ? proto_delta_apply(cur, json_object_get(body, "sets"), &d) : NULL;
	json_decref(cur);
	if (!next) {
		log_error("delta does not apply (%s); asking for the whole bundle", d.n ? d.v[0].message : "no memory");
		diag_release(&d);
		send_hello(a);
		return;
	}
	diag_release(&d);
	json_object_set(next, "hash", json_object_get(body, "hash"));
	/* The hash check in bundle_from_json proves the delta was right. */
	take_bundle(a, json_integer_value(json_object_get(body, "revision")), next, "delta");
	json_decref(next);
}

static void on_link_message(void *data, const struct proto_msg *m)
{
	struct agent *a = data;
	switch (m->type) {
	case PROTO_BUNDLE:
		take_bundle(a, json_integer_value(json_object_get(m->body, "revision")),
			    json_object_get(m->body, "bundle"), "bundle from the controller");
		break;
	case PROTO_DELTA:
		on_delta(a, m->body);
		break;
	case PROTO_HEARTBEAT:
		break;
	case PROTO_FLOWS_ACK:
		if (a->flows) {
			uint64_t epoch = (uint64_t)json_integer_value(json_object_get(m->body, "epoch")),
				 seq = (uint64_t)json_integer_value(json_object_get(m->body, "seq"));
			const char *rejected = json_string_value(json_object_get(m->body, "rejected"));
			if (rejected)
				flows_rejected(a->flows, epoch, seq, rejected);
			else
				flows_acked(a->flows, epoch, seq);
			a->status_dirty = true;
		}
		break;
	case PROTO_RESYNC:
		/* A restarted controller answers each message we had queued with
		 * a RESYNC; one HELLO on its way answers them all. */
		if ((uint64_t)clock_mono_ms() - a->last_hello_ms < RESYNC_QUIET_MS)
			break;
		log_info("controller asks for a resync: %s", ESCAPED(json_string_value(json_object_get(m->body, "reason"))));
		send_hello(a);
		break;
	case PROTO_REFUSED:
		log_error("controller refused this agent: %s",
			  ESCAPED(json_string_value(json_object_get(m->body, "reason"))));
		break;
	default:
		log_warn("controller sent an unexpected %s; dropped", proto_type_name(m->type));
		break;
	}
}

void agent_link_message(struct agent *a, const struct proto_msg *m)
{
	on_link_message(a, m);
}

/* After anything that may have changed the endpoints or their tables. */
static void report(struct agent *a)
{
	if (!a->link)
		return;
	if (a->endpoints_dirty) {
		link_send(a->link, PROTO_ENDPOINTS, json_pack("{s:o}", "endpoints", endpoints_json(a)));
		a->endpoints_dirty = false;
	}
	if (a->ack_pending && a->current)
		send_ack(a, a->revision, NULL, false);
}

/* ---- life cycle ---- */

struct agent *agent_new(const struct agent_options *o, struct loop *loop)
{
	struct agent *a = xcalloc(1, sizeof(*a));
	a->o = o;
	a->loop = loop;
	a->watch_inventory = a->watch_bundle = -1;
	a->mounts_fd = -1;
	a->nb = nft_batch_new(o->nflog_group);
	if (!a->nb)
		abort();
	/* Denied flows go to the controller; without one, nobody reads them. */
	if (o->link)
		a->flows = flows_new(o->state_dir, (uint64_t)clock_wall_ms());
	if (!o->null_dataplane) {
		a->ns = netns_new();
		if (!a->ns) {
			log_error("opening the agent's own network namespace: %m");
			agent_free(a);
			return NULL;
		}
	}
	return a;
}

void agent_free(struct agent *a)
{
	if (!a)
		return;
	if (a->flows) { /* what the rules counted up to now, and where the next run goes on from */
		on_counters_tick(a, 0);
		save_counters(a);
	}
	json_decref(a->saved_counters);
	json_decref(a->flows_written);
	while (a->endpoints) {
		struct endpoint_state *e = a->endpoints;
		a->endpoints = e->next;
		endpoint_free(e);
	}
	if (a->watch) {
		loop_remove(a->loop, a->watch_src);
		watch_free(a->watch);
	}
	if (a->mounts_fd >= 0) {
		loop_remove(a->loop, a->mounts_src);
		close(a->mounts_fd);
	}
	if (a->flows) { /* the last window, and every unacknowledged batch, to the spool file */
		flows_tick(a->flows, (uint64_t)clock_wall_ms(), a->o->flow_window_ms, true);
		flows_free(a->flows);
	}
	link_free(a->link);
	free(a->cache_error);
	free(a->last_ack);
	bundle_ref_put(a->current);
	nft_batch_free(a->nb);
	netns_free(a->ns);
	free(a);
}

static void watch_mounts(struct agent *a)
{
	a->mounts_fd = netns_mounts_watch();
	int r = a->mounts_fd;
	if (r >= 0 && !(a->mounts_src = loop_add_fd(a->loop, a->mounts_fd, EPOLLPRI, on_mounts, a)))
		r = -errno;
	if (r < 0) {
		log_error_errno(r, "watching the mount table: %m; a namespace made anew waits for %s", "the next check");
		if (a->mounts_fd >= 0)
			close(a->mounts_fd);
		a->mounts_fd = -1;
	}
}

unsigned agent_start(struct agent *a, bool once)
{
	/* Before the first look at any path: a namespace mounted while we
	 * start is noticed too. */
	if (!once && !a->o->null_dataplane)
		watch_mounts(a);
	/* Fail-static restart: the cached bundle goes back first, before
	 * anything newer is read (or, later, any controller answers). */
	load_cached_bundle(a);
	load_saved_counters(a);
	load_inventory(a);
	if (a->current)
		sync_all(a);
	bool bundle_ok = !a->o->bundle_path || load_bundle_file(a);
	unsigned behind = sync_all(a);
	a->status_dirty = true;
	write_status(a);
	if (once) /* a rejected --bundle, none at all, or a cache not written is a failure too */
		return behind + !bundle_ok + !a->current + (a->cache_error != NULL);

	a->watch = watch_new();
	if (!a->watch || !(a->watch_src = loop_add_fd(a->loop, watch_fd(a->watch), EPOLLIN, on_watch, a))) {
		log_error("watching files: %m; changes to them need a restart");
	} else {
		a->watch_inventory = watch_add(a->watch, a->o->inventory_path);
		if (a->watch_inventory < 0)
			log_error_errno(a->watch_inventory, "watching %s: %m", a->o->inventory_path);
		if (a->o->bundle_path) {
			a->watch_bundle = watch_add(a->watch, a->o->bundle_path);
			if (a->watch_bundle < 0)
				log_error_errno(a->watch_bundle, "watching %s: %m", a->o->bundle_path);
		}
	}
	if (a->o->link) {
		static const struct link_callbacks cb = {
			.message = on_link_message, .hello = send_hello, .heartbeat = heartbeat_body};
		a->link = link_new(a->loop, a->o->link, &cb, a);
		if (a->link)
			send_hello(a);
		else
			log_error("no controller link; enforcing the bundle in force only");
	}
	if (!loop_add_timer(a->loop, a->o->recheck_ms ? a->o->recheck_ms : TICK_MS, on_tick, a))
		log_error("timer: %m; namespaces and retries are not checked");
	if (a->flows && !loop_add_timer(a->loop, FLOW_TICK_MS, on_flow_tick, a))
		log_error("timer: %m; denied flows are not reported");
	if (a->flows && !a->o->null_dataplane && !loop_add_timer(a->loop, a->o->counters_ms, on_counters_tick, a))
		log_error("timer: %m; rule hit counts are not reported");
	return behind;
}
