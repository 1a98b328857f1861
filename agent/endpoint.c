/* One endpoint's life (see endpoint.h): namespace, table, changes by
 * others, backoff. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bulkhead/log.h"
#include "bulkhead/metrics.h"
#include "bulkhead/utf8.h"
#include "conntrack.h"
#include "endpoint.h"
#include "hits.h"
#include "quarantine.h"
#include "status.h"

static void touch(struct endpoint_state *e)
{
	status_touch(e->env->status);
}

struct endpoint_state *endpoint_new(struct endpoint_env *env, const struct source *source, const char *name)
{
	struct endpoint_state *e = xcalloc(1, sizeof(*e));
	e->env = env;
	e->source = source;
	e->name = xstrdup(name);
	e->labels = json_object();
	e->ports = json_object();
	e->src_addrs = json_array();
	e->netns_fd = -1;
	return e;
}

static void drop_fd(struct endpoint_state *e)
{
	if (e->netns_fd >= 0)
		close(e->netns_fd);
	e->netns_fd = -1;
}

void endpoint_take_fd(struct endpoint_state *e, int fd)
{
	drop_fd(e);
	e->netns_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (e->netns_fd < 0)
		log_warn("endpoint %s: keeping the hook's namespace: %m; its path is opened instead",
			 e->name);
}

void endpoint_close(struct endpoint_state *e)
{
	bool was = e->present;
	dataplane_close(e->dp);
	e->dp = NULL;
	counters_free(e->counters);
	e->counters = NULL;
	e->present = false;
	e->id = (struct netns_id){0};
	/* A namespace we no longer hold may come back new: assume nothing. */
	bundle_ref_put(e->applied);
	e->applied = NULL;
	e->has_tag = e->held = false;
	touch(e);
	if (!was)
		return;
	/* Its namespace is free: whoever was refused it may have it. */
	for (struct endpoint_state *o = e->env->endpoints; o; o = o->next)
		if (o != e && o->refused_shared)
			endpoint_retry_open(o);
}

void endpoint_free(struct endpoint_state *e)
{
	if (!e)
		return;
	endpoint_close(e);
	drop_fd(e);
	free(e->name);
	free(e->netns);
	free(e->error);
	json_decref(e->labels);
	json_decref(e->ports);
	json_decref(e->src_addrs);
	bundle_ref_put(e->quarantine_ref);
	free(e);
}

static bool same_str(const char *x, const char *y)
{
	return (!x && !y) || (x && y && strcmp(x, y) == 0);
}

void endpoint_set(struct endpoint_state *e, const struct source_endpoint *se)
{
	if (!same_str(e->netns, se->netns)) {
		if (e->netns || e->present)
			log_info("endpoint %s: namespace now %s", e->name, se->netns ? se->netns : "(none)");
		endpoint_close(e);
		drop_fd(e);
		free(e->netns);
		e->netns = se->netns ? xstrdup(se->netns) : NULL;
		backoff_reset(&e->backoff);
	}
	if (se->netns_fd) {
		endpoint_take_fd(e, *se->netns_fd);
		/* The path may name a new namespace now (a container restarted
		 * with the same one): the old one must not pass for it. */
		endpoint_check_namespace(e);
	}
	json_decref(e->labels);
	json_decref(e->ports);
	json_decref(e->src_addrs);
	e->labels = json_object();
	e->ports = json_object();
	e->src_addrs = json_array();
	for (size_t k = 0; se->labels && k < se->labels->n; k++)
		json_object_set_new(e->labels, se->labels->v[k].key, json_string(se->labels->v[k].value));
	for (size_t k = 0; k < se->n_ports; k++) {
		char buf[32];
		snprintf(buf, sizeof(buf), "%s/%u",
			 proto_name(se->ports[k].proto) ? proto_name(se->ports[k].proto) : "?",
			 se->ports[k].port);
		json_object_set_new(e->ports, se->ports[k].name, json_string(buf));
	}
	e->quarantine = se->quarantine;
	for (size_t k = 0; k < se->n_addrs; k++) {
		char buf[ADDR_STRLEN];
		addr_format(&se->addrs[k], buf);
		json_array_append_new(e->src_addrs, json_string(buf));
	}
	touch(e);
	e->env->endpoints_dirty = true;
}

/* As the ACK and status.json carry it: UTF-8 (json_pack refuses anything
 * else, and the agent aborted), a message cut short inside a character
 * cut back to a whole one. */
static void set_error(struct endpoint_state *e, const char *msg)
{
	free(e->error);
	e->error = NULL;
	if (msg && !(e->error = utf8_text(msg)))
		abort();
	touch(e);
}

/* Why the endpoint cannot be opened; logged when it is news, so a refusal
 * retried again and again is said once. */
static void fail(struct endpoint_state *e, const char *msg)
{
	char *was = e->error ? xstrdup(e->error) : NULL;
	set_error(e, msg);
	if (!was || strcmp(was, e->error) != 0)
		log_error("endpoint %s: %s", e->name, e->error);
	free(was);
}

/* One more failure of why: the next attempt waits. The streak's start is
 * logged, not every doubling. */
static void back_off(struct endpoint_state *e, enum backoff_reason why)
{
	bool was = e->backoff.reason == why && e->backoff.delay_ms > 0;
	uint64_t delay = backoff_fail(&e->backoff, why, e->env->now_ms());
	if (!delay)
		return;
	if (!was)
		log_warn("endpoint %s: retried with backoff, %u ms doubling to %u s, until it %s", e->name,
			 (unsigned)delay, BACKOFF_MAX_MS / 1000,
			 why == BACKOFF_OPEN ? "can be opened" : "is applied or a new bundle comes");
	touch(e);
	e->env->wake(e->env->core);
}

static void backoff_over(struct endpoint_state *e, const char *what)
{
	unsigned streak = e->backoff.streak;
	if (backoff_reset(&e->backoff))
		log_info("endpoint %s: %s after %u failure%s; no longer backing off", e->name, what, streak,
			 streak == 1 ? "" : "s");
	touch(e);
}

/* ---- what the dataplane reports ---- */

static bool tamper_deferred(const struct endpoint_state *e)
{
	return e->force_full && e->backoff.reason == BACKOFF_TAMPERING && e->backoff.delay_ms > 0;
}

/* One more change by someone else (how): the wait before the table is
 * put back; the start of a backoff is logged, not every doubling. */
static uint64_t tamper_streak(struct endpoint_state *e, const char *how)
{
	bool was = e->backoff.reason == BACKOFF_TAMPERING && e->backoff.delay_ms > 0;
	uint64_t delay = backoff_fail(&e->backoff, BACKOFF_TAMPERING, e->env->now_ms());
	if (delay && !was)
		log_warn(
		    "endpoint %s: %s, again: putting it back backs off, %u ms doubling to %u s, until it has "
		    "stayed put for %u s",
		    e->name, how, (unsigned)delay, BACKOFF_MAX_MS / 1000, BACKOFF_QUIET_MS / 1000);
	touch(e);
	return delay;
}

/* Its table is wrong and waits for its repair (backoff). */
static void repair_later(struct endpoint_state *e)
{
	e->force_full = true;
	/* It is known to be wrong: no need to hear how it changes meanwhile. */
	dataplane_quiet(e->dp);
	e->env->ack_pending = true;
	e->env->wake(e->env->core);
}

/* Its table was found changed by someone else: put back at once the first
 * time, with backoff when it happens again and again. */
static void tampered(struct endpoint_state *e, const char *how)
{
	e->tampering++;
	e->env->drift_repairs++;
	e->force_full = true;
	if (tamper_streak(e, how)) {
		repair_later(e);
		return;
	}
	log_warn("endpoint %s: %s; putting it back", e->name, how);
	endpoint_sync(e);
}

static void on_foreign(void *data, const struct drift_report *rep)
{
	struct endpoint_state *e = data;
	char how[256];
	snprintf(how, sizeof(how),
		 "table inet %s changed by another process (netlink port %u: %s, %u change%s)",
		 NFT_TABLE_NAME, rep->last_portid, rep->last_what, rep->foreign_changes,
		 rep->foreign_changes == 1 ? "" : "s");
	tampered(e, how);
}

static void on_lost(void *data)
{
	struct endpoint_state *e = data;
	char why[1024];
	bool read;
	/* Lost events say something was committed, not what: look before
	 * touching anything. */
	e->events_lost++;
	touch(e);
	if (tamper_deferred(e))
		return; /* its repair is on its way */
	const struct bundle_endpoint *bep = e->applied ? bundle_find_endpoint(e->applied->b, e->name) : NULL;
	int r = dataplane_verify(e->dp, e->applied ? e->applied->b : NULL, bep, e->has_tag ? &e->tag : NULL,
				 &read, why, sizeof(why));
	e->checks += read;
	if (r == 1) {
		if (read)
			log_info(
			    "endpoint %s: nftables events lost; its table was read back and is as the agent "
			    "left it",
			    e->name);
		else
			log_info("endpoint %s: nftables events lost, but nothing was committed since its "
				 "table was "
				 "last known right",
				 e->name);
		return;
	}
	if (!bep) { /* nothing to compare with */
		e->force_full = true;
		endpoint_sync(e);
		return;
	}
	if (r == 0) {
		char how[1200];
		snprintf(how, sizeof(how), "nftables events lost; table inet %s read back: %s",
			 NFT_TABLE_NAME, why);
		tampered(e, how);
		return;
	}
	log_warn(
	    "endpoint %s: nftables events lost, and its table could not be read back (%s); putting it back "
	    "to be sure",
	    e->name, strerror(-r));
	e->force_full = true;
	endpoint_sync(e);
}

static void on_addresses(void *data)
{
	struct endpoint_state *e = data;
	touch(e);
	e->env->endpoints_dirty = true;
}

static void on_packet(void *data, const struct nflog_event *ev)
{
	hits_packet(data, ev);
}

static void on_packets_lost(void *data, uint64_t enobufs, uint64_t gap)
{
	struct endpoint_state *e = data;
	if (e->env->session)
		session_packets_lost(e->env->session, e->name, enobufs, gap);
}

static const struct dataplane_events events = {
    .foreign = on_foreign,
    .lost = on_lost,
    .addresses = on_addresses,
    .packet = on_packet,
    .packets_lost = on_packets_lost,
};

/* ---- the namespace ---- */

/* Which bundle the namespace's table says it holds (from an earlier run). */
static void read_tag(struct endpoint_state *e)
{
	int r = dataplane_read_tag(e->dp, &e->tag);
	e->has_tag = r == 0;
	if (r == 0) {
		/* New serials go past it; an absurd one (someone else's) is not followed. */
		if (e->tag.serial < (UINT64_C(1) << 62) && e->tag.serial > e->env->max_serial)
			e->env->max_serial = e->tag.serial;
	} else if (r != -ENOENT) {
		log_warn("endpoint %s: reading which bundle its table holds: %s; taken as none", e->name,
			 strerror(-r));
	}
}

/* The endpoint whose namespace is id, if one holds it. */
static const struct endpoint_state *holder(const struct endpoint_state *e, const struct netns_id *id)
{
	if (!id->dev && !id->ino)
		return NULL; /* the dataplane has no namespaces */
	for (const struct endpoint_state *o = e->env->endpoints; o; o = o->next)
		if (o != e && o->present && o->id.dev == id->dev && o->id.ino == id->ino)
			return o;
	return NULL;
}

bool endpoint_open(struct endpoint_state *e)
{
	struct endpoint_env *env = e->env;
	char msg[1024];
	if (e->present)
		return true;
	if (e->backoff.reason == BACKOFF_OPEN && !backoff_due(&e->backoff, env->now_ms()))
		return false;
	struct netns_id id;
	struct dataplane_ep *ep = NULL;
	bool adopt = e->netns_fd >= 0;
	int r = adopt ? dataplane_adopt(env->dp, e->name, e->netns, e->netns_fd, &ep, &id, msg, sizeof(msg))
		      : dataplane_open(env->dp, e->name, e->netns, &ep, &id, msg, sizeof(msg));
	if (adopt && r < 0)
		drop_fd(e); /* not a namespace we can use: the path is tried next */
	if (r == -ENOENT) {
		/* Not there (yet): "namespace not present" says it all, and
		 * nothing is failing; it is opened as soon as it is there. */
		if (e->error)
			set_error(e, NULL);
		e->refused_shared = false;
		if (e->backoff.reason == BACKOFF_OPEN)
			backoff_reset(&e->backoff);
		return false;
	}
	if (r < 0) {
		fail(e, msg);
		back_off(e, BACKOFF_OPEN);
		return false;
	}
	/* One network namespace is one endpoint: two tables taking turns in
	 * it would each look like tampering to the other, forever. Whoever
	 * holds it keeps it; at start the first by name (the table's order). */
	const struct endpoint_state *h = holder(e, &id);
	if (h) {
		dataplane_close(ep);
		snprintf(msg, sizeof(msg), "namespace %s is already endpoint %s's: %s", e->netns, h->name,
			 "one network namespace is one endpoint");
		fail(e, msg);
		e->refused_shared = true;
		back_off(e, BACKOFF_OPEN);
		return false;
	}
	e->refused_shared = false;
	r = dataplane_attach(ep, env->session ? DATAPLANE_FLOWS : 0, &events, e, msg, sizeof(msg));
	if (r < 0) {
		dataplane_close(ep);
		fail(e, msg);
		back_off(e, BACKOFF_OPEN);
		return false;
	}
	e->dp = ep;
	e->id = id;
	e->present = true;
	drop_fd(e); /* the dataplane holds its own */
	read_tag(e);
	if (env->session && dataplane_counts(env->dp)) {
		e->counters = counters_new();
		hits_restore(e);
	}
	set_error(e, NULL); /* refused before, perhaps */
	if (e->backoff.reason == BACKOFF_OPEN)
		backoff_over(e, "opened");
	/* Whatever table the namespace holds, we did not make it this run. */
	e->force_full = true;
	if (e->netns && (id.dev || id.ino)) /* a dataplane without namespaces opens none */
		log_info("endpoint %s: namespace %s opened", e->name, e->netns);
	return true;
}

/* Namespaces come and go with their containers: a path that disappears or
 * now names another namespace means the old one is gone. Our sockets would
 * keep a dead namespace alive, so they are closed at once. */
void endpoint_check_namespace(struct endpoint_state *e)
{
	struct netns_id id;
	if (!e->present)
		return;
	int r = dataplane_identify(e->env->dp, e->netns, &id);
	if (r == 0 && id.dev == e->id.dev && id.ino == e->id.ino)
		return;
	log_info("endpoint %s: namespace %s %s", e->name, e->netns, r < 0 ? "is gone" : "was replaced");
	endpoint_close(e);
}

void endpoint_retry_open(struct endpoint_state *e)
{
	if (e->backoff.reason == BACKOFF_OPEN)
		e->backoff.next_ms = 0;
}

/* ---- the table ---- */

static void on_replacing(void *arg, bool done)
{
	struct endpoint_state *e = arg;
	if (!done)
		hits_read(e);
	else if (e->counters)
		counters_table_replaced(e->counters);
}

/* For the apply histogram: the real clock, not env->now_ms (which tests
 * stop). */
static uint64_t clock_mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Puts ref's table for bep in place (with tag), a delta from what the
 * table holds where one will do; what is logged, counted and backed off
 * after it is the same for every table. */
static void apply_table(struct endpoint_state *e, struct bundle_ref *ref, const struct bundle_endpoint *bep,
			const struct nft_tag *tag, uint64_t now)
{
	struct endpoint_env *env = e->env;
	bool quarantine = ref == e->quarantine_ref;
	struct dataplane_apply req = {
	    .name = e->name,
	    .old_b = e->applied && !e->force_full ? e->applied->b : NULL,
	    .b = ref->b,
	    .ep = bep,
	    .tag = tag,
	    .replacing = on_replacing,
	    .arg = e,
	    .once = e->backoff.reason == BACKOFF_TAMPERING && e->backoff.delay_ms > 0,
	};
	req.old_ep = req.old_b ? bundle_find_endpoint(req.old_b, e->name) : NULL;
	struct dataplane_result res;
	uint64_t t0 = clock_mono_us();
	int r = dataplane_apply(e->dp, &req, &res);
	if (r < 0 && req.old_ep && !res.full) {
		/* The kernel does not hold what the delta builds on (a change we
		 * did not see): the table is as it was; replace it whole now. */
		log_warn("endpoint %s: set delta to bundle %.12s failed (%s); replacing the table whole",
			 e->name, ref->b->hash, res.error);
		e->delta_fallbacks++;
		unsigned tampered_before = res.tampered, checks_before = res.checks;
		req.old_b = NULL;
		req.old_ep = NULL;
		r = dataplane_apply(e->dp, &req, &res);
		res.tampered += tampered_before;
		res.checks += checks_before;
	}
	metric_observe(env->apply_seconds, (double)(clock_mono_us() - t0) / 1e6);
	e->checks += res.checks;
	e->full_updates += res.full_commits;
	e->delta_updates += res.delta_commits;
	touch(e);
	if (r < 0) {
		char msg[1200];
		if (quarantine)
			snprintf(msg, sizeof(msg), "putting the quarantine table in: %s", res.error);
		else
			snprintf(msg, sizeof(msg), "applying bundle %.12s: %s", ref->b->hash, res.error);
		fail(e, msg);
		e->failures++;
		env->apply_failures++;
		/* A failed send leaves the old table whole (one transaction),
		 * but an unknown outcome means we cannot trust a delta next. */
		e->force_full = true;
		back_off(e, BACKOFF_APPLY);
		return;
	}
	if (quarantine)
		log_info("endpoint %s: quarantine table %s (until the bundle in force has its table)",
			 e->name, res.committed ? "in place" : "built");
	else
		log_info("endpoint %s: %s bundle %.12s (%s: %zu rules, %zu sets, %zu elements)%s%s%s",
			 e->name, res.committed ? "applied" : "built", ref->b->hash,
			 res.full ? "whole table" : "set delta", res.stats.rules, res.stats.sets,
			 res.stats.elements, res.committed ? "" : " [",
			 res.committed ? "" : dataplane_name(env->dp), res.committed ? "" : " dataplane]");
	/* What the table held before, for the cut below (its reference, put
	 * there); unknown when it may have been changed meanwhile, or when it
	 * was the quarantine table: that accepts what was open before it came,
	 * so the real table judges every connection. Also when someone else
	 * committed as it went in: their table held meanwhile. */
	struct bundle_ref *before = e->applied;
	const struct bundle_endpoint *before_ep =
	    before && before != e->quarantine_ref && !e->force_full && !res.tampered
		? bundle_find_endpoint(before->b, e->name)
		: NULL;
	e->applied = bundle_ref_get(ref);
	e->force_full = false;
	e->tag = *tag;
	e->has_tag = true;
	set_error(e, NULL);
	/* The new rules are in: connections they no longer allow go now, in
	 * the same update (a packet of theirs after the cut meets the rules). */
	if (res.committed)
		conntrack_cut(e, before_ep ? before->b : NULL, before_ep);
	bundle_ref_put(before);
	if (e->backoff.reason == BACKOFF_APPLY)
		backoff_over(e, "applied");
	static const char rewritten[] =
	    "table inet " NFT_TABLE_NAME " changed by another process as it was loaded";
	if (res.tampered) {
		e->tampering += res.tampered;
		e->env->drift_repairs += res.tampered;
		tamper_streak(e, rewritten);
	}
	backoff_repaired(&e->backoff, now);
	if (res.unsettled) {
		/* Someone rewrote it as fast as it went in: it goes in again
		 * when the backoff says so (the table may have nothing left to
		 * change, so no event would come). */
		if (!e->backoff.delay_ms)
			tamper_streak(e, rewritten);
		repair_later(e);
	}
}

/* Not in the bundle in force (or none is): a container that must not run
 * without rules gets the quarantine table meanwhile. */
static void quarantine_sync(struct endpoint_state *e)
{
	struct endpoint_env *env = e->env;
	if (!e->quarantine_ref)
		e->quarantine_ref = bundle_ref_new(quarantine_bundle(e->name));
	struct bundle_ref *q = e->quarantine_ref;
	if (e->applied == q && !e->force_full)
		return;
	uint64_t now = env->now_ms();
	if (!backoff_due(&e->backoff, now)) {
		env->wake(env->core);
		return;
	}
	struct nft_tag tag;
	quarantine_tag(q->b, &tag);
	apply_table(e, q, &q->b->endpoints[0], &tag, now);
}

bool endpoint_quarantined(const struct endpoint_state *e)
{
	return e->applied && e->applied == e->quarantine_ref;
}

int endpoint_isolate(struct endpoint_state *e, char *why, size_t whylen)
{
	e->quarantine = true;
	touch(e);
	/* Whatever held it back, a container waits for it now. */
	if (e->backoff.reason == BACKOFF_OPEN || e->backoff.reason == BACKOFF_APPLY)
		backoff_reset(&e->backoff);
	if (!e->present)
		endpoint_open(e);
	endpoint_sync(e);
	if (endpoint_quarantined(e) || endpoint_enforced(e))
		return 0;
	snprintf(why, whylen, "%s",
		 e->error      ? e->error
		 : !e->present ? "its namespace is not open"
			       : "not applied");
	return e->present ? -EIO : -ENOENT;
}

void endpoint_sync(struct endpoint_state *e)
{
	struct endpoint_env *env = e->env;
	struct bundle_ref *cur = env->current;
	if (!e->present)
		return;
	if (cur && e->applied == cur && !e->force_full)
		return;
	const struct bundle_endpoint *bep = cur ? bundle_find_endpoint(cur->b, e->name) : NULL;
	if (!bep) {
		if (e->quarantine) {
			quarantine_sync(e);
			return;
		}
		/* The controller has not compiled for it yet: leave its
		 * namespace alone. */
		if (cur && !e->not_in_bundle_logged)
			log_info("endpoint %s: not in bundle %.12s, left alone", e->name, cur->b->hash);
		e->not_in_bundle_logged = cur != NULL;
		return;
	}
	e->not_in_bundle_logged = false;
	/* Started from a cache older than what the table holds (the cache
	 * could not be written): an older bundle never replaces a newer one.
	 * The table stays as it is until the controller or a bundle file
	 * says what to enforce. */
	if (env->current_cached && e->has_tag && e->tag.serial > cur->serial &&
	    strcmp(e->tag.hash, cur->b->hash) != 0) {
		char msg[256];
		snprintf(msg, sizeof(msg),
			 "its table holds bundle %.12s (revision %lld), newer than the cached %.12s: "
			 "kept until the controller sends a bundle",
			 e->tag.hash, (long long)e->tag.revision, cur->b->hash);
		if (!e->held) {
			log_warn("endpoint %s: %s", e->name, msg);
			/* The ACK says it holds nothing certain: the controller sends its bundle. */
			env->ack_pending = true;
		}
		e->held = true;
		set_error(e, msg);
		return;
	}
	e->held = false;
	uint64_t now = env->now_ms();
	if (!backoff_due(&e->backoff, now)) {
		env->wake(env->core);
		return;
	}
	struct nft_tag tag = {.serial = cur->serial, .revision = cur->revision};
	memcpy(tag.hash, cur->b->hash, sizeof(tag.hash));
	apply_table(e, cur, bep, &tag, now);
}

void endpoint_bundle_changed(struct endpoint_state *e)
{
	if (e->backoff.reason == BACKOFF_APPLY)
		backoff_over(e, "a new bundle came");
	else if (e->backoff.reason == BACKOFF_TAMPERING)
		e->backoff.next_ms = 0; /* the new table goes now; the streak stays */
}

void endpoint_tick(struct endpoint_state *e)
{
	conntrack_retry(e);
	if (!backoff_quiet(&e->backoff, e->env->now_ms()) || tamper_deferred(e))
		return;
	if (backoff_reset(&e->backoff))
		log_info(
		    "endpoint %s: its table has stayed as put back for %u s; changes to it are put back at "
		    "once again",
		    e->name, BACKOFF_QUIET_MS / 1000);
	touch(e);
}

bool endpoint_waiting(const struct endpoint_state *e)
{
	switch (e->backoff.reason) {
	case BACKOFF_OPEN:
		return !e->present;
	case BACKOFF_APPLY:
	case BACKOFF_TAMPERING:
		if (!e->present)
			return false;
		if (e->env->current && bundle_find_endpoint(e->env->current->b, e->name))
			return e->force_full || e->applied != e->env->current;
		return e->quarantine && (!endpoint_quarantined(e) || e->force_full);
	case BACKOFF_NONE:
		break;
	}
	return false;
}

bool endpoint_enforced(const struct endpoint_state *e)
{
	/* force_full: its table is known or feared to differ (changed by
	 * someone, a repair that failed or waits). */
	return e->present && e->env->current && e->applied == e->env->current && !e->force_full;
}

bool endpoint_behind(const struct endpoint_state *e)
{
	const struct bundle_ref *cur = e->env->current;
	return cur && (!e->present || e->applied != cur) && bundle_find_endpoint(cur->b, e->name);
}

/* ---- reports ---- */

json_t *endpoint_ack_json(const struct endpoint_state *e, bool *ok)
{
	const struct bundle_ref *cur = e->env->current;
	if (!cur || !bundle_find_endpoint(cur->b, e->name))
		return NULL;
	bool applied = endpoint_enforced(e);
	const char *why = e->error	       ? e->error
			  : !e->present	       ? "namespace not present"
			  : tamper_deferred(e) ? ENDPOINT_TAMPERING_ERROR
					       : NULL;
	*ok = applied;
	return json_pack("{s:s,s:s?,s:s?}", "name", e->name, "applied", applied ? cur->b->hash : NULL,
			 "error", applied ? NULL : why);
}

static json_t *addresses_json(const struct endpoint_state *e, bool fallback)
{
	size_t n = 0;
	const struct bh_addr *list = NULL;
	if (!(e->dp && dataplane_addresses(e->dp, &list, &n)) && fallback)
		return json_incref(e->src_addrs);
	json_t *out = json_array();
	for (size_t i = 0; i < n; i++) {
		char s[ADDR_STRLEN];
		addr_format(&list[i], s);
		json_array_append_new(out, json_string(s));
	}
	return out;
}

json_t *endpoint_report_json(const struct endpoint_state *e)
{
	/* Where the namespace is not read, what the source says. */
	json_t *o = json_pack("{s:s,s:s?,s:O,s:o}", "name", e->name, "netns", e->netns, "labels", e->labels,
			      "addresses", addresses_json(e, true));
	/* Only when there are some: a controller from before named ports
	 * refuses a list with "ports" (upgrade controllers first). */
	if (o && json_object_size(e->ports))
		json_object_set(o, "ports", e->ports);
	return o;
}

json_t *endpoint_status_json(const struct endpoint_state *e)
{
	json_t *o =
	    json_pack("{s:s,s:s?,s:b,s:o,s:s?,s:b,s:s?,s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I}}", "name", e->name,
		      "netns", e->netns, "present", e->present, "addresses", addresses_json(e, false),
		      "applied", e->applied ? e->applied->b->hash : NULL, "held", e->held, "error", e->error,
		      "counters", "full_updates", (json_int_t)e->full_updates, "delta_updates",
		      (json_int_t)e->delta_updates, "delta_fallbacks", (json_int_t)e->delta_fallbacks,
		      "failures", (json_int_t)e->failures, "tampering", (json_int_t)e->tampering,
		      "events_lost", (json_int_t)e->events_lost, "checks", (json_int_t)e->checks);
	if (!o)
		abort();
	/* Live connections judged after updates that may tighten. */
	json_object_set_new(o, "conntrack",
			    json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:b}", "dumps",
				      (json_int_t)e->ct.dumps, "skipped", (json_int_t)e->ct.skipped,
				      "entries", (json_int_t)e->ct.entries, "cut", (json_int_t)e->ct.cut,
				      "audit", (json_int_t)e->ct.audit, "failures",
				      (json_int_t)e->ct.failures, "malformed", (json_int_t)e->ct.malformed,
				      "last_us", (json_int_t)e->ct.last_us, "retry", e->ct.retry));
	json_object_set_new(o, "quarantined", json_boolean(endpoint_quarantined(e)));
	if (json_object_size(e->ports))
		json_object_set(o, "ports", e->ports);
	/* Backing off: why, how many in a row, how long each wait is now. */
	json_object_set_new(o, "backoff",
			    e->backoff.reason != BACKOFF_NONE && e->backoff.delay_ms > 0
				? json_pack("{s:s,s:I,s:I,s:b}", "reason",
					    backoff_reason_name(e->backoff.reason), "streak",
					    (json_int_t)e->backoff.streak, "delay_ms",
					    (json_int_t)e->backoff.delay_ms, "waiting", endpoint_waiting(e))
				: json_null());
	json_t *more = e->dp ? dataplane_status(e->dp) : NULL;
	if (more) {
		json_object_update(o, more);
		json_decref(more);
	}
	return o;
}
