/* The agent's core (see agent.h): the endpoint table, the bundle in
 * force, and reconciling them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/log.h"
#include "agent.h"
#include "bundle-file.h"
#include "cache.h"
#include "conntrack.h"
#include "endpoint.h"
#include "hits.h"
#include "quarantine.h"
#include "status.h"

#define TICK_MS 500
/* How often endpoints waiting for their backoff are looked at. */
#define BACKOFF_TICK_MS (BACKOFF_MIN_MS / 2)

struct agent {
	const struct agent_options *o;
	struct loop *loop;
	struct endpoint_env env; /* the endpoint table, the bundle in force */
	struct dataplane *dp;
	struct session *session; /* NULL without --controller */
	struct source **sources;
	size_t n_sources;
	struct bundle_file *bundle_file; /* NULL without --bundle */
	struct cache *cache;
	struct status *status;
	int64_t revision;  /* the controller's revision of the bundle in force; 0: none */
	bool certain_told; /* what the session was last told (session_in_force()) */
	unsigned bundles_rejected, inventories_rejected;
	struct source_waiter *waiters;
	json_t *refused; /* endpoint name -> why a source's report of it was refused */
	struct loop_source *tick_src, *counters_src, *backoff_src;
	bool started;
};

static uint64_t real_now_ms(void)
{
	return (uint64_t)clock_mono_ms();
}

static uint64_t now_ms(const struct agent *a)
{
	return a->env.now_ms();
}

/* ---- the controller ---- */

/* Some endpoint's table is newer than the bundle in force (see
 * endpoint_sync()). */
static bool holding_newer(const struct agent *a)
{
	for (const struct endpoint_state *e = a->env.endpoints; e; e = e->next)
		if (e->held)
			return true;
	return false;
}

/* Tells the session what the agent holds. */
static void tell_in_force(struct agent *a)
{
	if (!a->session)
		return;
	a->certain_told = !holding_newer(a);
	session_in_force(a->session, a->env.current ? a->env.current->b : NULL, a->revision, a->certain_told);
}

static json_t *endpoints_json(const struct agent *a)
{
	json_t *out = json_array();
	for (const struct endpoint_state *e = a->env.endpoints; e; e = e->next)
		json_array_append_new(out, endpoint_report_json(e));
	return out;
}

/* What every endpoint of the bundle in force holds; error for the whole,
 * else the cache's. always: send it even if it says what the last one
 * did (report() sends again only what is new). */
static void send_ack(struct agent *a, int64_t revision, const char *error, bool always)
{
	if (!a->session)
		return;
	json_t *eps = json_array();
	if (!error)
		error = cache_error(a->cache);
	bool ok = a->env.current && !error;
	for (struct endpoint_state *e = a->env.endpoints; e; e = e->next) {
		bool applied = false;
		json_t *one = endpoint_ack_json(e, &applied);
		if (!one)
			continue;
		ok &= applied;
		json_array_append_new(eps, one);
	}
	a->env.ack_pending = !ok;
	tell_in_force(a);
	session_ack(a->session, revision, ok, error, eps, always);
}

/* After anything that may have changed the endpoints or their tables. */
static void report(struct agent *a)
{
	if (!a->session)
		return;
	if (a->certain_told != !holding_newer(a))
		tell_in_force(a);
	if (a->env.endpoints_dirty) {
		session_endpoints(a->session, endpoints_json(a));
		a->env.endpoints_dirty = false;
	}
	if (a->env.ack_pending && a->env.current)
		send_ack(a, a->revision, NULL, false);
}

static json_t *sources_json(const struct agent *a)
{
	json_t *out = NULL;
	for (size_t i = 0; i < a->n_sources; i++) {
		struct source *s = a->sources[i];
		json_t *one = s->ops->status ? s->ops->status(s) : NULL;
		if (!one)
			continue;
		if (!out)
			out = json_array();
		json_array_append_new(out, one);
	}
	return out;
}

static void write_status(struct agent *a)
{
	json_t *controller = NULL, *flows = NULL;
	if (a->session)
		session_status(a->session, &controller, &flows);
	uint64_t now = now_ms(a);
	if (!status_due(a->status, flows, now)) {
		json_decref(controller);
		json_decref(flows);
		return;
	}
	json_t *eps = json_array();
	for (const struct endpoint_state *e = a->env.endpoints; e; e = e->next)
		json_array_append_new(eps, endpoint_status_json(e));
	struct status_facts f = {
	    .node = a->o->node,
	    .bundle = a->env.current ? a->env.current->b->hash : NULL,
	    .revision = a->revision,
	    .dataplane = dataplane_name(a->dp),
	    .endpoints = eps,
	    .controller = controller,
	    .bundles_rejected = a->bundles_rejected,
	    .inventories_rejected = a->inventories_rejected,
	    .cache = cache_status(a->cache),
	    .sources = sources_json(a),
	    .refused = json_object_size(a->refused) ? json_incref(a->refused) : NULL,
	};
	status_write(a->status, &f, flows, now);
}

/* ---- metrics ---- */

void agent_measure_applies(struct agent *a, struct metric *histogram)
{
	a->env.apply_seconds = histogram;
}

json_t *agent_facts(struct agent *a)
{
	json_t *controller = NULL, *flows = NULL;
	if (a->session)
		session_status(a->session, &controller, &flows);
	const struct bundle *b = a->env.current ? a->env.current->b : NULL;
	size_t rules = 0;
	for (size_t i = 0; b && i < b->n_endpoints; i++)
		for (int d = 0; d < DIR_COUNT; d++)
			rules += b->endpoints[i].chains[d].n_rules;
	json_t *eps = json_array();
	for (const struct endpoint_state *e = a->env.endpoints; e; e = e->next)
		json_array_append_new(eps, endpoint_status_json(e));
	json_t *o =
	    json_pack("{s:I,s:s?,s:I,s:o,s:o,s:o,s:I,s:I,s:I}", "revision", (json_int_t)a->revision, "bundle",
		      b ? b->hash : NULL, "rules", (json_int_t)rules, "controller",
		      controller ? controller : json_null(), "flows", flows ? flows : json_null(),
		      "endpoints", eps, "apply_failures", (json_int_t)a->env.apply_failures, "drift_repairs",
		      (json_int_t)a->env.drift_repairs, "bundles_rejected", (json_int_t)a->bundles_rejected);
	if (!o)
		abort();
	return o;
}

/* ---- waiters (source_enforce()) ---- */

static struct endpoint_state *find_endpoint(struct agent *a, const char *name)
{
	for (struct endpoint_state *e = a->env.endpoints; e; e = e->next)
		if (strcmp(e->name, name) == 0)
			return e;
	return NULL;
}

/* Tells every waiter whose endpoint is enforced, gone or failing. */
static void answer_waiters(struct agent *a)
{
	for (struct source_waiter **p = &a->waiters; *p;) {
		struct source_waiter *w = *p;
		struct endpoint_state *e = find_endpoint(a, w->endpoint);
		int result = 1;
		const char *error = NULL;
		if (!e) {
			result = -ENOENT;
			error = "no such endpoint";
		} else if (endpoint_enforced(e)) {
			result = 0;
		} else if (e->error && e->backoff.reason != BACKOFF_NONE) {
			result = -EIO;
			error = e->error;
		}
		if (result > 0) {
			p = &w->next;
			continue;
		}
		*p = w->next;
		w->next = NULL;
		w->done(w, result, error);
	}
}

/* ---- reconcile ---- */

static unsigned sync_all(struct agent *a)
{
	unsigned behind = 0;
	for (struct endpoint_state *e = a->env.endpoints; e; e = e->next) {
		if (!e->present)
			endpoint_open(e);
		endpoint_sync(e);
		behind += endpoint_behind(e);
	}
	answer_waiters(a);
	return behind;
}

static void after_change(struct agent *a)
{
	sync_all(a);
	report(a);
	write_status(a);
}

static void on_backoff_tick(void *data, uint32_t events)
{
	struct agent *a = data;
	bool waiting = false;
	for (struct endpoint_state *e = a->env.endpoints; e; e = e->next) {
		if (!endpoint_waiting(e))
			continue;
		if (!e->present)
			endpoint_open(e);
		endpoint_sync(e);
		waiting |= endpoint_waiting(e);
	}
	answer_waiters(a);
	report(a);
	write_status(a);
	if (!waiting) {
		loop_remove(a->loop, a->backoff_src);
		a->backoff_src = NULL;
	}
}

/* An endpoint waits for its backoff: come back to it even when the
 * periodic check is rare. */
static void wake(void *core)
{
	struct agent *a = core;
	if (a->backoff_src || !a->started)
		return;
	if (!(a->backoff_src = loop_add_timer(a->loop, BACKOFF_TICK_MS, on_backoff_tick, a)))
		log_error("timer: %m; backoffs end at the next periodic check");
}

void agent_tick(struct agent *a)
{
	struct endpoint_state *e;
	if (a->env.current)
		cache_retry(a->cache, a->env.current->b, a->env.current->revision, a->env.current->serial,
			    now_ms(a));
	for (e = a->env.endpoints; e; e = e->next) {
		endpoint_check_namespace(e);
		endpoint_tick(e);
	}
	after_change(a);
}

static void on_tick(void *data, uint32_t events)
{
	agent_tick(data);
}

/* The mount table changed: a namespace path may have gone, or name a new
 * namespace (a container restarted under its name), which must not wait
 * for the next tick to get its table; a refused path may name one now. */
static void on_mounts(void *data)
{
	struct agent *a = data;
	for (struct endpoint_state *e = a->env.endpoints; e; e = e->next)
		endpoint_retry_open(e);
	agent_tick(a);
}

static void on_counters_tick(void *data, uint32_t events)
{
	struct agent *a = data;
	for (struct endpoint_state *e = a->env.endpoints; e; e = e->next)
		if (e->present && e->applied)
			hits_read(e);
}

/* ---- bundles ---- */

/* A new serial, later than any bundle's this agent has seen. */
static uint64_t next_serial(struct agent *a)
{
	uint64_t s = (uint64_t)clock_wall_ms();
	if (s <= a->env.max_serial)
		s = a->env.max_serial + 1;
	a->env.max_serial = s;
	return s;
}

/* Makes b (owned) the bundle to enforce, as the controller's revision
 * (0: from a file), and caches it. Each bundle taken gets a new serial,
 * also when its content is the one in force: the controller or the file
 * has confirmed it, so it goes before what any table says it holds. */
static void set_bundle(struct agent *a, struct bundle *b, int64_t revision)
{
	struct bundle_ref *cur = a->env.current;
	bool same = cur && strcmp(cur->b->hash, b->hash) == 0;
	a->revision = revision;
	a->env.current_cached = false;
	if (same) {
		bundle_free(b);
	} else {
		log_info("bundle %.12s in force (%zu endpoints, %zu sets)", b->hash, b->n_endpoints,
			 b->n_sets);
		bundle_ref_put(cur);
		a->env.current = cur = bundle_ref_new(b);
		for (struct endpoint_state *e = a->env.endpoints; e; e = e->next)
			endpoint_bundle_changed(e);
	}
	cur->serial = next_serial(a);
	cur->revision = revision;
	tell_in_force(a);
	status_touch(a->status);
	cache_store(a->cache, cur->b, cur->revision, cur->serial, now_ms(a));
}

static void take_bundle(void *core, enum bundle_origin from, struct bundle *b, int64_t revision)
{
	struct agent *a = core;
	set_bundle(a, b, revision);
	if (!a->started)
		return; /* agent_start() goes on */
	sync_all(a);
	if (from == BUNDLE_FROM_CONTROLLER)
		send_ack(a, revision, NULL, true);
	report(a);
	write_status(a);
}

static void bundle_rejected(void *core, enum bundle_origin from, int64_t revision, const char *error)
{
	struct agent *a = core;
	a->bundles_rejected++;
	status_touch(a->status);
	if (from == BUNDLE_FROM_CONTROLLER)
		send_ack(a, revision, error, true);
	if (a->started)
		write_status(a);
}

static void session_changed(void *core)
{
	struct agent *a = core;
	status_touch(a->status);
}

const struct session_peer agent_session_peer = {
    .bundles = {.take = take_bundle, .rejected = bundle_rejected},
    .changed = session_changed,
};

static const struct bundle_intake file_intake = {.take = take_bundle, .rejected = bundle_rejected};

static void load_cached_bundle(struct agent *a)
{
	struct bundle *b;
	int64_t revision = 0;
	uint64_t serial = 0;
	int r = cache_load(a->cache, &b, &revision, &serial);
	if (r == -EINVAL)
		a->bundles_rejected++;
	if (r < 0 || !b)
		return;
	log_info("starting from the cached bundle %.12s (revision %lld)", b->hash, (long long)revision);
	a->env.current = bundle_ref_new(b);
	a->env.current->serial = serial;
	a->env.current->revision = revision;
	a->env.current_cached = true;
	a->revision = revision;
	if (serial > a->env.max_serial)
		a->env.max_serial = serial;
	status_touch(a->status);
}

/* ---- endpoint sources ---- */

static void unlink_endpoint(struct agent *a, struct endpoint_state *e)
{
	for (struct endpoint_state **p = &a->env.endpoints; *p; p = &(*p)->next) {
		if (*p == e) {
			*p = e->next;
			e->next = NULL;
			return;
		}
	}
}

static void drop_endpoint(struct agent *a, struct endpoint_state *e)
{
	log_info("endpoint %s: removed by its source (%s); no longer managed", e->name, e->source->ops->kind);
	unlink_endpoint(a, e);
	endpoint_free(e);
	status_touch(a->status);
	a->env.endpoints_dirty = true;
}

/* Adds or updates one endpoint; false when another source holds the name. */
static void source_quarantine_cb(void *core, struct source *s, const char *netns);

static bool update_endpoint(struct agent *a, struct source *s, const struct source_endpoint *se)
{
	struct endpoint_state *e = find_endpoint(a, se->name);
	if (e && e->source != s) {
		/* One name, one endpoint: whoever reported it first keeps it
		 * (at start, the inventory: it is read first). */
		char why[256];
		snprintf(why, sizeof(why), "reported by the %s source too: refused, the %s source's is kept",
			 s->ops->kind, e->source->ops->kind);
		json_t *old = json_object_get(json_object_get(a->refused, se->name), "error");
		if (!old || strcmp(json_string_value(old), why) != 0) {
			log_error("endpoint %s: %s", se->name, why);
			json_object_set_new(a->refused, se->name,
					    json_pack("{s:s,s:s}", "source", s->ops->kind, "error", why));
			status_touch(a->status);
			/* A new container must not run without rules: refused,
			 * it keeps the quarantine table (a name taken is no way
			 * around the policy). */
			if (se->quarantine && se->netns)
				source_quarantine_cb(a, s, se->netns);
		}
		return false;
	}
	if (json_object_get(a->refused, se->name)) {
		json_object_del(a->refused, se->name);
		status_touch(a->status);
	}
	if (!e) {
		e = endpoint_new(&a->env, s, se->name);
		/* Kept in name order: endpoints are opened in it, so which one
		 * gets a shared namespace at start is no accident of the
		 * source's order. */
		struct endpoint_state **p = &a->env.endpoints;
		while (*p && strcmp((*p)->name, e->name) < 0)
			p = &(*p)->next;
		e->next = *p;
		*p = e;
		log_info("endpoint %s: added (%s)", e->name, se->netns ? se->netns : "no netns");
	}
	endpoint_set(e, se);
	return true;
}

static void source_set_all_cb(void *core, struct source *s, const struct source_endpoint *v, size_t n)
{
	struct agent *a = core;
	/* Refusals of names the source no longer reports are over. */
	const char *name;
	json_t *why, *tmp;
	json_object_foreach_safe (a->refused, tmp, name, why) {
		bool listed = false;
		for (size_t i = 0; i < n && !listed; i++)
			listed = strcmp(v[i].name, name) == 0;
		if (!listed && strcmp(json_string_value(json_object_get(why, "source")), s->ops->kind) == 0) {
			json_object_del(a->refused, name);
			status_touch(a->status);
		}
	}
	/* Endpoints gone from the listing: close; their tables stay
	 * (fail-static) until the namespace goes. */
	for (struct endpoint_state *e = a->env.endpoints, *next; e; e = next) {
		next = e->next;
		if (e->source != s)
			continue;
		bool keep = false;
		for (size_t i = 0; i < n && !keep; i++)
			keep = strcmp(v[i].name, e->name) == 0;
		if (!keep)
			drop_endpoint(a, e);
	}
	for (size_t i = 0; i < n; i++)
		update_endpoint(a, s, &v[i]);
	if (a->started)
		after_change(a);
}

static void source_update_cb(void *core, struct source *s, const struct source_endpoint *se)
{
	struct agent *a = core;
	bool ok = update_endpoint(a, s, se);
	if (!a->started)
		return;
	if (ok)
		after_change(a);
	else
		write_status(a); /* the refusal */
}

static void source_remove_cb(void *core, struct source *s, const char *name)
{
	struct agent *a = core;
	struct endpoint_state *e = find_endpoint(a, name);
	if (!e || e->source != s) {
		if (e && json_object_get(a->refused, name)) { /* the refused one went */
			json_object_del(a->refused, name);
			status_touch(a->status);
		}
		return;
	}
	drop_endpoint(a, e);
	if (a->started)
		after_change(a);
}

static void source_rejected_cb(void *core, struct source *s)
{
	struct agent *a = core;
	a->inventories_rejected++;
	status_touch(a->status);
	if (a->started)
		write_status(a);
}

static void source_enforce_cb(void *core, struct source *s, struct source_waiter *w)
{
	struct agent *a = core;
	struct endpoint_state *e = find_endpoint(a, w->endpoint);
	w->next = a->waiters;
	a->waiters = w;
	if (e) {
		/* Whatever held it back, the container waits for it now. */
		if (e->backoff.reason == BACKOFF_OPEN || e->backoff.reason == BACKOFF_APPLY)
			backoff_reset(&e->backoff);
		if (!e->present)
			endpoint_open(e);
		endpoint_sync(e);
	}
	answer_waiters(a);
	report(a);
	write_status(a);
}

static void source_cancel_cb(void *core, struct source_waiter *w)
{
	struct agent *a = core;
	for (struct source_waiter **p = &a->waiters; *p; p = &(*p)->next) {
		if (*p == w) {
			*p = w->next;
			w->next = NULL;
			return;
		}
	}
}

/* Whether path (an endpoint's, not open) names the namespace id now. */
static bool names(struct agent *a, const char *path, const struct netns_id *id)
{
	struct netns_id at;
	return path && dataplane_identify(a->dp, path, &at) == 0 && at.dev == id->dev && at.ino == id->ino;
}

static int source_claim_cb(void *core, struct source *s, const struct source_claim *c, char *name,
			   size_t namelen)
{
	struct agent *a = core;
	struct netns_id id;
	/* A namespace that is an endpoint's already (a container joined to
	 * another's, a restart the agent saw first, an inventory's): that
	 * endpoint's table is the one to wait for. */
	if (dataplane_identify_fd(a->dp, c->netns_fd, &id) == 0 && (id.dev || id.ino)) {
		for (struct endpoint_state *e = a->env.endpoints; e; e = e->next) {
			bool holds =
			    e->present ? e->id.dev == id.dev && e->id.ino == id.ino : names(a, e->netns, &id);
			if (!holds)
				continue;
			if (!e->present)
				endpoint_take_fd(e, c->netns_fd);
			snprintf(name, namelen, "%s", e->name);
			return 0;
		}
	}
	return -ENOENT;
}

static int source_isolate_cb(void *core, struct source *s, const char *name, char *why, size_t whylen)
{
	struct agent *a = core;
	struct endpoint_state *e = find_endpoint(a, name);
	if (!e) {
		snprintf(why, whylen, "no endpoint %s", name);
		return -ENOENT;
	}
	int r = endpoint_isolate(e, why, whylen);
	answer_waiters(a);
	report(a);
	write_status(a);
	return r;
}

static void source_quarantine_cb(void *core, struct source *s, const char *netns)
{
	struct agent *a = core;
	struct dataplane_ep *ep = NULL;
	struct netns_id id;
	char err[1024];
	static const struct dataplane_events none = {0};
	int r = dataplane_open(a->dp, "(new namespace)", netns, &ep, &id, err, sizeof(err));
	if (r < 0) {
		if (r != -ENOENT)
			log_warn("namespace %s: not quarantined: %s", netns, err);
		return;
	}
	for (struct endpoint_state *e = a->env.endpoints; e; e = e->next) {
		if (e->present && (id.dev || id.ino) && e->id.dev == id.dev && e->id.ino == id.ino) {
			dataplane_close(ep); /* an endpoint holds it: its table is that one's business */
			return;
		}
	}
	r = dataplane_attach(ep, 0, &none, NULL, err, sizeof(err));
	if (r == 0)
		r = quarantine_put(ep, "(new namespace)", err, sizeof(err));
	dataplane_close(ep);
	if (r < 0)
		log_error("namespace %s: the quarantine table could not go in: %s", netns, err);
	else
		log_info("namespace %s: quarantine table in place (from the %s source)", netns, s->ops->kind);
}

static void source_changed_cb(void *core, struct source *s)
{
	struct agent *a = core;
	status_touch(a->status);
	if (a->started)
		write_status(a);
}

static const struct source_sink agent_sink = {
    .set_all = source_set_all_cb,
    .update = source_update_cb,
    .remove = source_remove_cb,
    .rejected = source_rejected_cb,
    .enforce = source_enforce_cb,
    .cancel = source_cancel_cb,
    .quarantine = source_quarantine_cb,
    .changed = source_changed_cb,
    .claim = source_claim_cb,
    .isolate = source_isolate_cb,
};

/* ---- life cycle ---- */

struct agent *agent_new(const struct agent_options *o, struct loop *loop, struct dataplane *dp)
{
	struct agent *a = xcalloc(1, sizeof(*a));
	a->o = o;
	a->loop = loop;
	a->dp = dp;
	a->status = status_new(o->state_dir);
	a->cache = cache_new(o->state_dir, o->node);
	a->refused = json_object();
	a->env = (struct endpoint_env){
	    .dp = dp,
	    .status = a->status,
	    .now_ms = o->now_ms ? o->now_ms : real_now_ms,
	    .wake = wake,
	    .core = a,
	    .ct_memo = conntrack_memo_new(),
	};
	if (o->bundle_path)
		a->bundle_file = bundle_file_new(o->bundle_path, o->node, &file_intake, a);
	return a;
}

void agent_set_session(struct agent *a, struct session *s)
{
	session_free(a->session);
	a->session = s;
	a->env.session = s;
}

void agent_add_source(struct agent *a, struct source *s)
{
	s->sink = &agent_sink;
	s->core = a;
	a->sources = realloc(a->sources, (a->n_sources + 1) * sizeof(*a->sources));
	if (!a->sources)
		abort();
	a->sources[a->n_sources++] = s;
}

unsigned agent_start(struct agent *a, bool once)
{
	/* Before the first look at any path: a namespace mounted while we
	 * start is noticed too. */
	if (!once)
		(void)dataplane_watch_namespaces(a->dp, on_mounts, a);
	/* Fail-static restart: the cached bundle goes back first, before
	 * anything newer is read (or, later, any controller answers). */
	load_cached_bundle(a);
	if (a->session)
		a->env.saved_counters = hits_load(a->o->state_dir);
	unsigned sources_failed = 0;
	for (size_t i = 0; i < a->n_sources; i++)
		sources_failed += a->sources[i]->ops->start(a->sources[i], a->loop, once) < 0;
	if (a->env.current)
		sync_all(a);
	bool bundle_ok = !a->bundle_file || bundle_file_read(a->bundle_file) == 0;
	unsigned behind = sync_all(a);
	a->started = true;
	status_touch(a->status);
	write_status(a);
	if (once) /* a rejected --bundle, none at all, a cache not written, a source that could not say
		   * what it has (an engine not answering) is a failure too */
		return behind + !bundle_ok + !a->env.current + (cache_error(a->cache) != NULL) +
		       sources_failed;

	if (a->bundle_file)
		(void)bundle_file_watch(a->bundle_file, a->loop);
	if (a->session) {
		tell_in_force(a);
		session_endpoints(a->session, endpoints_json(a));
		a->env.endpoints_dirty = false;
		(void)session_start(a->session);
	}
	if (!(a->tick_src =
		  loop_add_timer(a->loop, a->o->recheck_ms ? a->o->recheck_ms : TICK_MS, on_tick, a)))
		log_error("timer: %m; namespaces and retries are not checked");
	if (a->session && dataplane_counts(a->dp) &&
	    !(a->counters_src = loop_add_timer(a->loop, a->o->counters_ms, on_counters_tick, a)))
		log_error("timer: %m; rule hit counts are not reported");
	for (struct endpoint_state *e = a->env.endpoints; e; e = e->next)
		if (endpoint_waiting(e))
			wake(a);
	return behind;
}

void agent_stop(struct agent *a)
{
	if (a->session) { /* what the rules counted up to now, and where the next run goes on from */
		on_counters_tick(a, 0);
		hits_save(a->o->state_dir, a->env.endpoints);
		session_stop(a->session);
	}
	while (a->waiters) {
		struct source_waiter *w = a->waiters;
		a->waiters = w->next;
		w->next = NULL;
		w->done(w, -ECANCELED, "the agent stops");
	}
	loop_remove(a->loop, a->tick_src);
	loop_remove(a->loop, a->counters_src);
	loop_remove(a->loop, a->backoff_src);
	a->tick_src = a->counters_src = a->backoff_src = NULL;
	a->started = false;
}

void agent_free(struct agent *a)
{
	if (!a)
		return;
	loop_remove(a->loop, a->tick_src);
	loop_remove(a->loop, a->counters_src);
	loop_remove(a->loop, a->backoff_src);
	for (size_t i = 0; i < a->n_sources; i++)
		a->sources[i]->ops->free(a->sources[i]);
	free(a->sources);
	bundle_file_free(a->bundle_file);
	session_free(a->session);
	a->env.session = NULL;
	while (a->env.endpoints) {
		struct endpoint_state *e = a->env.endpoints;
		a->env.endpoints = e->next;
		endpoint_free(e);
	}
	json_decref(a->env.saved_counters);
	conntrack_memo_free(a->env.ct_memo);
	json_decref(a->refused);
	bundle_ref_put(a->env.current);
	cache_free(a->cache);
	status_free(a->status);
	dataplane_free(a->dp);
	free(a);
}
