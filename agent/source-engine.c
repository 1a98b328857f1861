/* A container engine as an endpoint source (source-engine.h): the state
 * of every container the engine told of, kept from its events and
 * inspects, and reported as endpoints. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "bulkhead/escape.h"
#include "bulkhead/log.h"
#include "bulkhead/utf8.h"
#include "engine-http.h"
#include "netns.h"
#include "source-engine.h"

#define PING_TIMEOUT_MS	   5000
#define LIST_TIMEOUT_MS	   30000
#define INSPECT_TIMEOUT_MS 30000
#define RETRY_MIN_MS	   200
#define RETRY_MAX_MS	   5000
#define RECONCILE_MS	   30000
/* Inspects in flight at once (a full list starts one per container). */
#define INSPECTS_MAX 16
/* Events asked for again after a reconnect: from this long before the
 * last one seen (podman's are not always in time order). */
#define SINCE_MARGIN_NS 1000000000LL
/* The containers kept (created, running, exited but not removed). */
#define CONTAINERS_MAX	 65536
#define MOUNTINFO_MAX	 (16u << 20)
#define DOCKER_NETNS_DIR "/run/docker/netns"

enum conn_state {
	CONN_DOWN,   /* waiting to retry */
	CONN_PING,   /* GET /_ping */
	CONN_EVENTS, /* GET /events sent, no answer yet */
	CONN_UP,     /* the stream is open */
};

enum ctr_state {
	CTR_CREATED,
	CTR_STARTING, /* connected to a network, not started yet (Docker) */
	CTR_RUNNING,
	CTR_EXITED,
};

struct inspect_ctx;

struct ctr {
	char *id;
	char *name;
	enum ctr_state state;
	struct engine_labels ev_labels;	  /* from the create event */
	struct engine_container info;	  /* the last inspect (info.id NULL: none) */
	bool watched_start;		  /* its start was seen: quarantine until its table */
	char *early_netns;		  /* its namespace before its start (mount, hook) */
	bool isolated;			  /* seen starting under a name no endpoint may have: quarantined */
	const int *hook_fd;		  /* while a hook's report is published: its namespace */
	char *reported;			  /* the endpoint name it is reported under */
	char *notes;			  /* what was last logged of its labels */
	enum engine_verdict last_verdict; /* what was last logged */
	struct engine_http_req *inspect;
	struct inspect_ctx *inspect_ctx;
	bool inspect_again; /* asked again while one was in flight */
	bool queued;	    /* waits for an inspect slot */
	bool in_sync;	    /* the running full list waits for its inspect */
	struct ctr *next;
};

struct source_engine {
	struct source src;
	enum engine_kind kind;
	char *socket;
	struct engine_select select;
	char *select_key, *select_value;
	struct loop *loop;
	struct engine_http *http;
	bool once, stopping;

	enum conn_state conn;
	char api[16]; /* "/v1.41" */
	char version_header[32];
	bool podman_header;
	struct engine_http_req *ping, *events, *list;
	bool events_headers_done;
	long events_status;
	struct engine_lines lines;
	int64_t last_event_ns;	 /* the newest event seen */
	int64_t replay_until_ns; /* events up to this were seen before the reconnect */
	unsigned retry_ms;
	int64_t up_ms; /* when the open stream opened (0: none is) */
	struct loop_source *retry_timer, *reconcile_timer;
	/* Until the events request's headers come: an engine that accepts
	 * the request and never answers would leave the source connecting,
	 * with no list, for ever. */
	struct loop_source *events_timer;
	unsigned events_answer_ms;

	/* The full list in progress: set_all once every inspect is back. */
	bool syncing;
	unsigned sync_pending;
	bool synced; /* one full list reported */
	bool sync_failed;
	bool sync_again; /* an event was lost while a list ran: another after it */

	struct ctr *ctrs;
	size_t n_ctrs;
	unsigned inspects; /* in flight */

	/* Docker: namespaces made before their containers start. */
	char *netns_dir;
	int mounts_fd;
	struct loop_source *mounts_src;
	char **mounts; /* the sandbox namespaces last seen */
	size_t n_mounts;

	struct engine_hook_waiter *hooks; /* waiting for a name and labels */

	unsigned long long n_events, n_malformed, n_reconnects, n_early, n_anonymous;
	char last_error[256];
};

static struct source_engine *engine_of(struct source *s)
{
	return (struct source_engine *)s;
}

static const char *kind(const struct source_engine *e)
{
	return engine_kind_name(e->kind);
}

static void set_error(struct source_engine *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(struct source_engine *e, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->last_error, sizeof(e->last_error), fmt, ap);
	va_end(ap);
}

static void connect_start(struct source_engine *e);
static void inspect(struct source_engine *e, struct ctr *c);
static void sync_start(struct source_engine *e);
static void hooks_try(struct source_engine *e, struct ctr *c);

/* ---- containers ---- */

static struct ctr *ctr_find(struct source_engine *e, const char *id)
{
	for (struct ctr *c = e->ctrs; c; c = c->next)
		if (strcmp(c->id, id) == 0)
			return c;
	return NULL;
}

static struct ctr *ctr_get(struct source_engine *e, const char *id)
{
	struct ctr *c = ctr_find(e, id);
	if (c)
		return c;
	if (e->n_ctrs >= CONTAINERS_MAX) {
		log_warn("engine %s: more than %d containers; container %.12s not followed", kind(e),
			 CONTAINERS_MAX, id);
		return NULL;
	}
	c = xcalloc(1, sizeof(*c));
	c->id = xstrdup(id);
	c->last_verdict = ENGINE_NOT_RUNNING;
	c->next = e->ctrs;
	e->ctrs = c;
	e->n_ctrs++;
	return c;
}

static void set_str(char **p, const char *v)
{
	if (*p && v && strcmp(*p, v) == 0)
		return;
	free(*p);
	*p = v ? xstrdup(v) : NULL;
}

/* Stops reporting c (its endpoint leaves every group). */
static void unreport(struct source_engine *e, struct ctr *c)
{
	if (!c->reported)
		return;
	log_info("engine %s: container %s (%.12s): no longer an endpoint", kind(e), ESCAPED(c->reported),
		 c->id);
	char *name = c->reported;
	c->reported = NULL;
	source_remove(&e->src, name);
	free(name);
}

static void inspect_ctx_free(struct inspect_ctx *x);

static void ctr_free(struct source_engine *e, struct ctr *c)
{
	if (c->inspect) {
		engine_http_cancel(e->http, c->inspect);
		inspect_ctx_free(c->inspect_ctx);
		e->inspects--;
	}
	if (c->in_sync && e->sync_pending)
		e->sync_pending--;
	free(c->id);
	free(c->name);
	free(c->early_netns);
	free(c->reported);
	free(c->notes);
	engine_labels_release(&c->ev_labels);
	engine_container_release(&c->info);
	free(c);
}

static void sync_step(struct source_engine *e);

static void ctr_remove(struct source_engine *e, struct ctr *c)
{
	bool in_sync = c->in_sync;
	unreport(e, c);
	for (struct ctr **p = &e->ctrs; *p; p = &(*p)->next) {
		if (*p == c) {
			*p = c->next;
			e->n_ctrs--;
			break;
		}
	}
	ctr_free(e, c);
	if (in_sync)
		sync_step(e);
}

/* What c is now, as the engine last said: its inspect, or (before one)
 * what the events said, with the namespace attributed to it. */
static void ctr_view(const struct ctr *c, struct engine_container *out)
{
	if (c->info.id && (c->info.running || !c->early_netns)) {
		*out = c->info;
		return;
	}
	*out = (struct engine_container){
	    .id = c->id,
	    .name = c->name,
	    .running = c->early_netns != NULL,
	    .sandbox_key = c->early_netns,
	    .network_mode = c->info.id ? c->info.network_mode : NULL,
	    .labels = c->info.id ? c->info.labels : c->ev_labels,
	};
}

/* Learns where Docker keeps its namespace files. */
static void learn_netns_dir(struct source_engine *e, const char *sandbox_key)
{
	char dir[PATH_MAX], real[PATH_MAX];
	if (e->kind != ENGINE_DOCKER || !sandbox_key)
		return;
	snprintf(dir, sizeof(dir), "%s", sandbox_key);
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return;
	*slash = '\0';
	if (!realpath(dir, real) || (e->netns_dir && strcmp(e->netns_dir, real) == 0))
		return;
	log_info("engine %s: namespaces are made in %s", kind(e), real);
	set_str(&e->netns_dir, real);
}

/* Reports c as it is now, or stops reporting it. */
static void publish(struct source_engine *e, struct ctr *c)
{
	struct engine_container view;
	struct engine_endpoint ep;
	char why[256];
	ctr_view(c, &view);
	enum engine_verdict v = engine_endpoint_of(&view, e->kind, &e->select, &ep, why, sizeof(why));
	if (v != ENGINE_ENDPOINT) {
		if (v != c->last_verdict && v != ENGINE_NOT_RUNNING)
			log_info("engine %s: container %s (%.12s): %s", kind(e), ESCAPED(view.name), c->id,
				 why);
		c->last_verdict = v;
		unreport(e, c);
		/* Any other new container would hold the quarantine table until
		 * its own came: one whose name cannot be an endpoint's never gets
		 * its own, so it keeps that one (fail closed), not none. */
		if (v == ENGINE_BAD_NAME && view.name && c->watched_start && !c->isolated) {
			char proc[64];
			const char *netns = view.sandbox_key;
			if (!netns && view.pid > 0) {
				snprintf(proc, sizeof(proc), "/proc/%ld/ns/net", view.pid);
				netns = proc;
			}
			if (netns) {
				log_warn(
				    "engine %s: container %s (%.12s) started under a name no endpoint may "
				    "have: its namespace %s keeps the quarantine table",
				    kind(e), ESCAPED(view.name), c->id, ESCAPED(netns));
				c->isolated = true;
				source_quarantine(&e->src, netns);
			}
		}
		return;
	}
	c->last_verdict = v;
	if (ep.notes[0] && (!c->notes || strcmp(c->notes, ep.notes) != 0))
		log_info("engine %s: container %s: %s", kind(e), ESCAPED(ep.name), ESCAPED(ep.notes));
	set_str(&c->notes, ep.notes);
	if (c->reported && strcmp(c->reported, ep.name) != 0)
		unreport(e, c);
	if (!c->reported)
		log_info("engine %s: container %s (%.12s): endpoint, namespace %s%s", kind(e),
			 ESCAPED(ep.name), c->id, ESCAPED(ep.netns),
			 c->watched_start ? " (quarantined until its table comes)" : "");
	set_str(&c->reported, ep.name);
	struct source_endpoint se;
	engine_endpoint_view(&ep, &se);
	se.quarantine = c->watched_start;
	se.netns_fd = c->hook_fd;
	source_update(&e->src, &se);
	engine_endpoint_release(&ep);
}

/* ---- inspect ---- */

static void inspect_next(struct source_engine *e)
{
	for (struct ctr *c = e->ctrs; c && e->inspects < INSPECTS_MAX; c = c->next) {
		if (c->queued && !c->inspect) {
			c->queued = false;
			inspect(e, c);
		}
	}
}

static void sync_done_one(struct source_engine *e, struct ctr *c)
{
	if (!c->in_sync)
		return;
	c->in_sync = false;
	if (e->sync_pending)
		e->sync_pending--;
	sync_step(e);
}

/* The callbacks need the source and the container: one small record. */
struct inspect_ctx {
	struct source_engine *e;
	char *id;
};

static void inspect_ctx_free(struct inspect_ctx *x)
{
	free(x->id);
	free(x);
}

static void inspect_done(void *arg, long status, const char *body, size_t len, const char *error)
{
	struct inspect_ctx *x = arg;
	struct source_engine *e = x->e;
	struct ctr *c = ctr_find(e, x->id);
	inspect_ctx_free(x);
	e->inspects--;
	if (!c) {
		inspect_next(e);
		return;
	}
	c->inspect = NULL;
	c->inspect_ctx = NULL;
	if (status == 404) {
		/* Gone meanwhile: its destroy event says so too. */
		sync_done_one(e, c);
		ctr_remove(e, c);
		inspect_next(e);
		return;
	}
	if (status != 200) {
		char msg[256] = "";
		engine_error_message(body, len, msg, sizeof(msg));
		if (status)
			log_warn("engine %s: inspecting container %.12s: status %ld %s", kind(e), c->id,
				 status, ESCAPED(msg));
		else
			log_warn("engine %s: inspecting container %.12s: %s", kind(e), c->id, ESCAPED(error));
		if (c->in_sync)
			e->sync_failed = true;
		sync_done_one(e, c);
		inspect_next(e);
		return;
	}
	struct engine_container info = {0};
	char err[256] = "";
	int parsed = engine_inspect_parse(body, len, &info, err, sizeof(err));
	if (parsed == 0 && strcmp(info.id, c->id) != 0)
		snprintf(err, sizeof(err), "it is container %.12s's", info.id);
	if (parsed < 0 || strcmp(info.id, c->id) != 0) {
		engine_container_release(&info);
		e->n_malformed++;
		log_warn("engine %s: inspect of container %.12s refused: %s", kind(e), c->id, ESCAPED(err));
		sync_done_one(e, c);
		inspect_next(e);
		return;
	}
	engine_container_release(&c->info);
	c->info = info;
	set_str(&c->name, info.name);
	if (info.running) {
		c->state = CTR_RUNNING;
		learn_netns_dir(e, info.sandbox_key);
	} else if (c->state == CTR_RUNNING) {
		c->state = CTR_EXITED;
	}
	if (!info.running) {
		free(c->early_netns);
		c->early_netns = NULL;
	}
	bool again = c->inspect_again;
	c->inspect_again = false;
	publish(e, c);
	hooks_try(e, c);
	sync_done_one(e, c);
	if (again)
		inspect(e, c);
	inspect_next(e);
}

static const struct engine_http_cb inspect_cb = {.done = inspect_done};

static void inspect(struct source_engine *e, struct ctr *c)
{
	char path[256];
	if (c->inspect) {
		c->inspect_again = true;
		return;
	}
	if (e->inspects >= INSPECTS_MAX) {
		c->queued = true;
		return;
	}
	struct inspect_ctx *x = xcalloc(1, sizeof(*x));
	x->e = e;
	x->id = xstrdup(c->id);
	snprintf(path, sizeof(path), "%s/containers/%s/json", e->api, c->id);
	c->inspect = engine_http_get(e->http, path, ENGINE_INSPECT_MAX, INSPECT_TIMEOUT_MS, &inspect_cb, x);
	if (!c->inspect) {
		inspect_ctx_free(x);
		return;
	}
	c->inspect_ctx = x;
	e->inspects++;
}

/* ---- the full list ---- */

static void collect(struct source_engine *e, struct source_endpoint **v, size_t *n,
		    struct engine_endpoint **eps)
{
	size_t cap = e->n_ctrs ? e->n_ctrs : 1;
	*v = xcalloc(cap, sizeof(**v));
	*eps = xcalloc(cap, sizeof(**eps));
	*n = 0;
	for (struct ctr *c = e->ctrs; c; c = c->next) {
		struct engine_container view;
		char why[256];
		if (!c->reported)
			continue;
		ctr_view(c, &view);
		if (engine_endpoint_of(&view, e->kind, &e->select, &(*eps)[*n], why, sizeof(why)) !=
		    ENGINE_ENDPOINT)
			continue;
		engine_endpoint_view(&(*eps)[*n], &(*v)[*n]);
		(*v)[*n].quarantine = c->watched_start;
		(*n)++;
	}
}

/* Every inspect of the list is back: the list is what is reported. */
static void sync_step(struct source_engine *e)
{
	if (!e->syncing || e->list || e->sync_pending)
		return;
	e->syncing = false;
	struct source_endpoint *v;
	struct engine_endpoint *eps;
	size_t n;
	collect(e, &v, &n, &eps);
	if (!e->synced)
		log_info("engine %s: %zu container endpoint%s", kind(e), n, n == 1 ? "" : "s");
	e->synced = true;
	source_set_all(&e->src, v, n);
	for (size_t i = 0; i < n; i++)
		engine_endpoint_release(&eps[i]);
	free(eps);
	free(v);
	if (e->sync_again) {
		e->sync_again = false;
		sync_start(e);
	}
}

static void list_done(void *arg, long status, const char *body, size_t len, const char *error)
{
	struct source_engine *e = arg;
	struct engine_container *v = NULL;
	size_t n = 0;
	char err[256];
	e->list = NULL;
	if (status != 200) {
		char msg[256] = "";
		engine_error_message(body, len, msg, sizeof(msg));
		set_error(e, "listing containers: %s%s", status ? "" : error, msg);
		log_warn("engine %s: listing containers: status %ld %s%s", kind(e), status,
			 status ? "" : ESCAPED(error), ESCAPED(msg));
		e->syncing = false;
		e->sync_failed = true;
		return;
	}
	if (engine_list_parse(body, len, &v, &n, err, sizeof(err)) < 0) {
		e->n_malformed++;
		set_error(e, "list refused: %s", err);
		log_warn("engine %s: list of containers refused: %s", kind(e), ESCAPED(err));
		e->syncing = false;
		e->sync_failed = true;
		return;
	}
	/* Running here: inspected, and in the report. Running before, not
	 * here: exited meanwhile. */
	for (struct ctr *c = e->ctrs; c; c = c->next)
		c->in_sync = false;
	e->sync_pending = 0;
	for (size_t i = 0; i < n; i++) {
		if (!v[i].running)
			continue;
		struct ctr *c = ctr_get(e, v[i].id);
		if (!c)
			continue;
		/* Running now, not before, after the first list: it started
		 * while the agent could not see (an event lost, the stream
		 * down), in a namespace with no table: it waits for its own
		 * under quarantine, as one seen starting does. */
		if (e->synced && c->state != CTR_RUNNING)
			c->watched_start = true;
		set_str(&c->name, v[i].name);
		c->state = CTR_RUNNING;
		c->in_sync = true;
		e->sync_pending++;
	}
	for (struct ctr *c = e->ctrs, *next; c; c = next) {
		next = c->next;
		if (c->in_sync) {
			inspect(e, c);
			continue;
		}
		if (c->state == CTR_RUNNING) {
			c->state = CTR_EXITED;
			free(c->early_netns);
			c->early_netns = NULL;
			unreport(e, c);
		}
	}
	for (size_t i = 0; i < n; i++)
		engine_container_release(&v[i]);
	free(v);
	sync_step(e);
}

static const struct engine_http_cb list_cb = {.done = list_done};

static void sync_start(struct source_engine *e)
{
	char path[64];
	if (e->list)
		return;
	snprintf(path, sizeof(path), "%s/containers/json", e->api);
	e->syncing = true;
	e->sync_failed = false;
	e->list = engine_http_get(e->http, path, ENGINE_LIST_MAX, LIST_TIMEOUT_MS, &list_cb, e);
	if (!e->list)
		e->syncing = false;
}

static void on_reconcile(void *data, uint32_t events)
{
	struct source_engine *e = data;
	if (e->conn == CONN_UP && !e->syncing)
		sync_start(e);
}

/* ---- events ---- */

static void on_event(struct source_engine *e, const struct engine_event *ev)
{
	struct ctr *c;
	if (ev->time_ns && ev->time_ns <= e->replay_until_ns)
		return; /* seen before the reconnect */
	if (ev->time_ns > e->last_event_ns)
		e->last_event_ns = ev->time_ns;
	e->n_events++;
	switch (ev->action) {
	case ENGINE_EV_CREATE:
		if (!(c = ctr_get(e, ev->id)))
			return;
		if (ev->name)
			set_str(&c->name, ev->name);
		engine_labels_release(&c->ev_labels);
		for (size_t i = 0; i < ev->labels.n; i++) {
			c->ev_labels.v =
			    xrealloc(c->ev_labels.v, (c->ev_labels.n + 1) * sizeof(*c->ev_labels.v));
			c->ev_labels.v[c->ev_labels.n].key = xstrdup(ev->labels.v[i].key);
			c->ev_labels.v[c->ev_labels.n].value = xstrdup(ev->labels.v[i].value);
			c->ev_labels.n++;
		}
		if (c->state != CTR_RUNNING)
			c->state = CTR_CREATED;
		hooks_try(e, c);
		break;
	case ENGINE_EV_CONNECT:
	case ENGINE_EV_DISCONNECT:
		if (!(c = ctr_find(e, ev->id)))
			c = ev->action == ENGINE_EV_CONNECT ? ctr_get(e, ev->id) : NULL;
		if (!c)
			return;
		if (c->state == CTR_RUNNING) {
			inspect(e, c);
		} else if (ev->action == ENGINE_EV_CONNECT &&
			   (!ev->net_driver || strcmp(ev->net_driver, "host") != 0)) {
			/* Docker: its namespace is being made; its process
			 * has not run yet. */
			c->state = CTR_STARTING;
		}
		break;
	case ENGINE_EV_START:
		if (!(c = ctr_get(e, ev->id)))
			return;
		if (ev->name)
			set_str(&c->name, ev->name);
		c->state = CTR_RUNNING;
		c->watched_start = true;
		inspect(e, c);
		break;
	case ENGINE_EV_DIE:
		if (!(c = ctr_find(e, ev->id)))
			return;
		c->state = CTR_EXITED;
		c->info.running = false;
		c->isolated = false; /* its namespace goes with it */
		if (c->inspect)	     /* its answer may be from before */
			c->inspect_again = true;
		free(c->early_netns);
		c->early_netns = NULL;
		unreport(e, c);
		break;
	case ENGINE_EV_DESTROY:
		if ((c = ctr_find(e, ev->id)))
			ctr_remove(e, c);
		break;
	case ENGINE_EV_RENAME:
		if (!(c = ctr_find(e, ev->id)))
			return;
		if (ev->name)
			set_str(&c->name, ev->name);
		/* A new name is a new endpoint; the table it has stays until
		 * the controller compiles one for the name: no quarantine. */
		c->watched_start = false;
		if (c->state == CTR_RUNNING) {
			unreport(e, c);
			inspect(e, c);
		}
		break;
	case ENGINE_EV_OTHER:
		break;
	}
}

/* An event could not be read: it may have been a container's start, so
 * the list says what changed, now rather than at the next reconcile. */
static void event_lost(struct source_engine *e)
{
	if (e->conn != CONN_UP)
		return; /* the list comes when the stream is open */
	if (e->syncing)
		e->sync_again = true;
	else
		sync_start(e);
}

static void on_line(void *arg, const char *line, size_t len)
{
	struct source_engine *e = arg;
	struct engine_event ev;
	char err[256];
	int r = engine_event_parse(line, len, &ev, err, sizeof(err));
	if (r < 0) {
		e->n_malformed++;
		log_warn("engine %s: event refused: %s", kind(e), ESCAPED(err));
		event_lost(e);
		return;
	}
	if (r == 0) {
		on_event(e, &ev);
		engine_event_release(&ev);
	}
}

static void retry_later(struct source_engine *e);

static void events_header(void *arg, const char *line, size_t len)
{
	struct source_engine *e = arg;
	if (len >= 12 && strncmp(line, "HTTP/", 5) == 0) {
		const char *sp = memchr(line, ' ', len);
		e->events_status = sp ? strtol(sp + 1, NULL, 10) : 0;
		return;
	}
	if (!((len == 2 && line[0] == '\r') || (len == 1 && line[0] == '\n')) || e->events_headers_done)
		return;
	/* The end of the headers: the stream is open, so nothing that
	 * happens from now on is missed; the list comes after. */
	e->events_headers_done = true;
	loop_remove(e->loop, e->events_timer);
	e->events_timer = NULL;
	if (e->events_status != 200)
		return;
	if (e->conn != CONN_UP)
		log_info("engine %s: following events (API %s)", kind(e), e->api + 1);
	e->conn = CONN_UP;
	source_changed(&e->src);
	/* The wait before a reconnect starts over only once a stream has
	 * stayed open (events_done): one that ends as it opens is a failure
	 * like any other, and each opening costs a list and its inspects. */
	e->up_ms = clock_mono_ms();
	e->last_error[0] = '\0';
	sync_start(e);
}

static void events_data(void *arg, const char *data, size_t len)
{
	struct source_engine *e = arg;
	if (e->events_status != 200)
		return;
	unsigned long long overlong = e->lines.overlong;
	engine_lines_feed(&e->lines, data, len, on_line, e);
	if (e->lines.overlong != overlong) {
		e->n_malformed++;
		log_warn("engine %s: an event longer than %zu bytes skipped", kind(e), e->lines.max);
		event_lost(e);
	}
}

static void events_done(void *arg, long status, const char *body, size_t len, const char *error)
{
	struct source_engine *e = arg;
	e->events = NULL;
	loop_remove(e->loop, e->events_timer);
	e->events_timer = NULL;
	if (e->stopping)
		return;
	if (e->up_ms && clock_mono_ms() - e->up_ms >= RETRY_MAX_MS)
		e->retry_ms = 0;
	e->up_ms = 0;
	char msg[256] = "";
	if (status && status != 200)
		engine_error_message(body, len, msg, sizeof(msg));
	set_error(e, "event stream ended: %s%s", error ? error : "", msg);
	log_warn("engine %s: the event stream ended (%s%s%s); reconnecting", kind(e),
		 status == 200 ? "closed by the engine"
		 : error       ? ESCAPED(error)
			       : "",
		 msg[0] ? ": " : "", ESCAPED(msg));
	retry_later(e);
}

static const struct engine_http_cb events_cb = {
    .header = events_header, .data = events_data, .done = events_done};

static void on_events_silent(void *data, uint32_t events)
{
	struct source_engine *e = data;
	loop_remove(e->loop, e->events_timer);
	e->events_timer = NULL;
	if (!e->events || e->events_headers_done)
		return;
	engine_http_cancel(e->http, e->events);
	e->events = NULL;
	e->up_ms = 0;
	set_error(e, "the event stream was not answered within %u ms", e->events_answer_ms);
	log_warn("engine %s: the event stream was not answered within %u ms; reconnecting", kind(e),
		 e->events_answer_ms);
	retry_later(e);
}

static void events_start(struct source_engine *e)
{
	char path[1024], since[64] = "";
	static const char filters[] = "{\"type\":[\"container\",\"network\"],\"event\":[\"create\",\"start\","
				      "\"die\",\"died\",\"destroy\","
				      "\"remove\",\"rename\",\"connect\",\"disconnect\"]}";
	char *enc = engine_http_escape(filters);
	if (e->last_event_ns) {
		int64_t t = e->last_event_ns - SINCE_MARGIN_NS;
		if (t < 0)
			t = 0;
		snprintf(since, sizeof(since), "&since=%lld.%09lld", (long long)(t / 1000000000),
			 (long long)(t % 1000000000));
		e->replay_until_ns = e->last_event_ns;
	}
	snprintf(path, sizeof(path), "%s/events?filters=%s%s", e->api, enc ? enc : "", since);
	free(enc);
	engine_lines_reset(&e->lines);
	e->events_headers_done = false;
	e->events_status = 0;
	e->conn = CONN_EVENTS;
	e->events = engine_http_get(e->http, path, ENGINE_EVENT_MAX, 0, &events_cb, e);
	if (!e->events) {
		retry_later(e);
		return;
	}
	loop_remove(e->loop, e->events_timer);
	if (!(e->events_timer = loop_add_timer(e->loop, e->events_answer_ms, on_events_silent, e)))
		log_error("engine %s: timer: %m; an events request that is never answered is not given up",
			  kind(e));
}

/* ---- connecting ---- */

static void on_retry(void *data, uint32_t events)
{
	struct source_engine *e = data;
	loop_remove(e->loop, e->retry_timer);
	e->retry_timer = NULL;
	connect_start(e);
}

static void retry_later(struct source_engine *e)
{
	if (e->stopping)
		return;
	e->conn = CONN_DOWN;
	if (e->once)
		return; /* engine_start() says so */
	if (e->list) {
		engine_http_cancel(e->http, e->list);
		e->list = NULL;
	}
	e->syncing = false;
	e->sync_again = false; /* the list after the reconnect covers it */
	e->retry_ms = e->retry_ms ? e->retry_ms * 2 : RETRY_MIN_MS;
	if (e->retry_ms > RETRY_MAX_MS)
		e->retry_ms = RETRY_MAX_MS;
	e->n_reconnects++;
	source_changed(&e->src);
	loop_remove(e->loop, e->retry_timer);
	if (!(e->retry_timer = loop_add_timer(e->loop, e->retry_ms, on_retry, e)))
		log_error("engine %s: timer: %m; not reconnecting", kind(e));
}

static void ping_header(void *arg, const char *line, size_t len)
{
	struct source_engine *e = arg;
	char v[32];
	if (engine_header(line, len, "Api-Version", v, sizeof(v)))
		snprintf(e->version_header, sizeof(e->version_header), "%s", v);
	if (engine_header(line, len, "Libpod-Api-Version", v, sizeof(v)))
		e->podman_header = true;
}

static void ping_done(void *arg, long status, const char *body, size_t len, const char *error)
{
	struct source_engine *e = arg;
	unsigned minor;
	e->ping = NULL;
	if (status != 200) {
		if (!e->last_error[0] || e->n_reconnects <= 1)
			log_warn("engine %s: %s: %s", kind(e), e->socket,
				 status ? "GET /_ping answered with an error" : ESCAPED(error));
		set_error(e, "%s: %s", e->socket, status ? "GET /_ping failed" : error);
		retry_later(e);
		return;
	}
	if (engine_api_version(e->version_header, &minor) < 0 || minor < ENGINE_API_MIN_MINOR) {
		set_error(e, "API version \"%s\": 1.%d or later needed", e->version_header,
			  ENGINE_API_MIN_MINOR);
		log_error("engine %s: %s", kind(e), ESCAPED(e->last_error));
		retry_later(e);
		return;
	}
	if (e->kind == ENGINE_DOCKER && e->podman_header)
		log_warn("engine docker: %s is podman's API (--engine podman)", e->socket);
	snprintf(e->api, sizeof(e->api), "/v1.%u",
		 minor < ENGINE_API_MAX_MINOR ? minor : ENGINE_API_MAX_MINOR);
	if (e->once) {
		e->conn = CONN_UP;
		sync_start(e);
		return;
	}
	events_start(e);
}

static const struct engine_http_cb ping_cb = {.header = ping_header, .done = ping_done};

static void connect_start(struct source_engine *e)
{
	e->conn = CONN_PING;
	e->version_header[0] = '\0';
	e->podman_header = false;
	e->ping = engine_http_get(e->http, "/_ping", 4096, PING_TIMEOUT_MS, &ping_cb, e);
	if (!e->ping)
		retry_later(e);
}

/* ---- Docker: namespaces born before their containers start ---- */

static bool mount_known(struct source_engine *e, const char *path)
{
	for (size_t i = 0; i < e->n_mounts; i++)
		if (strcmp(e->mounts[i], path) == 0)
			return true;
	return false;
}

struct mount_scan {
	char **v;
	size_t n, cap;
};

static void mount_seen(void *arg, const char *path)
{
	struct mount_scan *m = arg;
	if (m->n == m->cap) {
		m->cap = m->cap ? 2 * m->cap : 16;
		m->v = xrealloc(m->v, m->cap * sizeof(*m->v));
	}
	m->v[m->n++] = xstrdup(path);
}

/* Whether path names, by its file name, the sandbox key of a container
 * already known (Docker's SandboxKey may say /var/run for /run). */
static bool namespace_known(struct source_engine *e, const char *path)
{
	const char *base = strrchr(path, '/');
	for (struct ctr *c = e->ctrs; c && base; c = c->next) {
		const char *k = c->info.sandbox_key ? c->info.sandbox_key : c->early_netns;
		const char *kb = k ? strrchr(k, '/') : NULL;
		if (kb && strcmp(kb, base) == 0)
			return true;
	}
	return false;
}

/* A namespace was just made: whose? */
static void namespace_born(struct source_engine *e, const char *path)
{
	struct ctr *only = NULL;
	unsigned candidates = 0, selected = 0;
	if (namespace_known(e, path))
		return;
	for (struct ctr *c = e->ctrs; c; c = c->next) {
		if (c->state != CTR_STARTING || c->early_netns)
			continue;
		candidates++;
		selected += engine_select_matches(&e->select, &c->ev_labels);
		only = c;
	}
	/* One whose create event was not seen (made before the agent came)
	 * has no name or labels yet: its start event tells them. */
	if (candidates == 1 && selected == 1 && only->name) {
		set_str(&only->early_netns, path);
		only->watched_start = true;
		e->n_early++;
		publish(e, only);
		return;
	}
	/* Several starting at once (or none heard of yet): which is whose
	 * is told by their start events. Meanwhile the namespace is
	 * quarantined, unless that could hit a container not selected. */
	if (!e->select.key || (candidates && selected == candidates)) {
		e->n_anonymous++;
		if (candidates == 1)
			log_info("engine %s: namespace %s made for container %.12s, whose create event was "
				 "not seen: quarantined until its start event names it",
				 kind(e), path, only->id);
		else if (candidates)
			log_info("engine %s: namespace %s made for one of %u containers starting at once: "
				 "quarantined until its container is known",
				 kind(e), path, candidates);
		else
			log_info("engine %s: namespace %s made for a container not known yet: quarantined "
				 "until it "
				 "is",
				 kind(e), path);
		source_quarantine(&e->src, path);
	}
}

static void on_mounts(void *data, uint32_t events)
{
	struct source_engine *e = data;
	const char *dir = e->netns_dir ? e->netns_dir : DOCKER_NETNS_DIR;
	struct mount_scan m = {0};
	char *text = xmalloc(MOUNTINFO_MAX);
	ssize_t len = 0;
	int fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t r;
		while (len < (ssize_t)MOUNTINFO_MAX &&
		       (r = read(fd, text + len, MOUNTINFO_MAX - (size_t)len)) > 0)
			len += r;
		close(fd);
	}
	engine_mounts_scan(text, (size_t)len, dir, mount_seen, &m);
	free(text);
	for (size_t i = 0; i < m.n; i++)
		if (!mount_known(e, m.v[i]))
			namespace_born(e, m.v[i]);
	for (size_t i = 0; i < e->n_mounts; i++)
		free(e->mounts[i]);
	free(e->mounts);
	e->mounts = m.v;
	e->n_mounts = m.n;
}

void source_engine_namespace_seen(struct source *s, const char *path)
{
	struct source_engine *e = engine_of(s);
	if (!mount_known(e, path))
		namespace_born(e, path);
}

static void mounts_start(struct source_engine *e)
{
	e->mounts_fd = netns_mounts_watch();
	if (e->mounts_fd < 0 ||
	    !(e->mounts_src = loop_add_fd(e->loop, e->mounts_fd, EPOLLPRI, on_mounts, e))) {
		log_error("engine %s: watching the mount table: %m; a container is quarantined from its "
			  "start event, "
			  "not before",
			  kind(e));
		if (e->mounts_fd >= 0)
			close(e->mounts_fd);
		e->mounts_fd = -1;
		return;
	}
	on_mounts(e, 0); /* what is there already is nobody's new namespace */
}

/* ---- the hook ---- */

const struct engine_container *source_engine_find(struct source *s, const char *id)
{
	struct source_engine *e = engine_of(s);
	struct ctr *c = ctr_find(e, id);
	static struct engine_container view;
	if (!c || !c->name)
		return NULL;
	ctr_view(c, &view);
	return &view;
}

static void hook_sw_done(struct source_waiter *sw, int result, const char *error)
{
	struct engine_hook_waiter *w =
	    (struct engine_hook_waiter *)((char *)sw - offsetof(struct engine_hook_waiter, sw));
	char *name = w->endpoint;
	w->endpoint = NULL;
	w->done(w, result, name, error); /* may free w */
	free(name);
}

/* The endpoint whose namespace is netns, if this source reports one. */
static struct ctr *netns_holder(struct source_engine *e, const char *netns)
{
	for (struct ctr *c = e->ctrs; c; c = c->next) {
		if (!c->reported)
			continue;
		const char *k = c->info.id && c->info.sandbox_key ? c->info.sandbox_key : c->early_netns;
		if (k && strcmp(k, netns) == 0)
			return c;
	}
	return NULL;
}

static void hook_enforce(struct source_engine *e, struct engine_hook_waiter *w, const char *name)
{
	w->endpoint = xstrdup(name);
	w->sw = (struct source_waiter){.endpoint = w->endpoint, .done = hook_sw_done};
	source_enforce(&e->src, &w->sw);
}

/* c's name and labels are known: report it for the hook w, and wait. */
static void hook_report(struct source_engine *e, struct ctr *c, struct engine_hook_waiter *w)
{
	struct ctr *h = netns_holder(e, w->netns);
	char why[256];
	if (h && h != c) {
		hook_enforce(e, w, h->reported);
		return;
	}
	set_str(&c->early_netns, w->netns);
	c->watched_start = true;
	if (c->state == CTR_CREATED || c->state == CTR_EXITED)
		c->state = CTR_STARTING;
	/* Opened from the hook's fd: no path resolved, no ptrace check. */
	c->hook_fd = w->netns_fd;
	publish(e, c);
	c->hook_fd = NULL;
	if (!c->reported) {
		struct engine_container view;
		struct engine_endpoint ep;
		ctr_view(c, &view);
		engine_endpoint_of(&view, e->kind, &e->select, &ep, why, sizeof(why));
		engine_endpoint_release(&ep);
		w->done(w, 1, NULL, why);
		return;
	}
	hook_enforce(e, w, c->reported);
}

static void hooks_try(struct source_engine *e, struct ctr *c)
{
	for (struct engine_hook_waiter **p = &e->hooks; *p;) {
		struct engine_hook_waiter *w = *p;
		if (strcmp(w->id, c->id) != 0 || !c->name) {
			p = &w->next;
			continue;
		}
		*p = w->next;
		w->next = NULL;
		hook_report(e, c, w);
	}
}

void source_engine_hook(struct source *s, struct engine_hook_waiter *w)
{
	struct source_engine *e = engine_of(s);
	struct ctr *c = ctr_find(e, w->id);
	w->endpoint = NULL;
	w->next = NULL;
	if (c && c->name) {
		hook_report(e, c, w);
		return;
	}
	w->next = e->hooks;
	e->hooks = w;
}

void source_engine_hook_cancel(struct source *s, struct engine_hook_waiter *w)
{
	struct source_engine *e = engine_of(s);
	for (struct engine_hook_waiter **p = &e->hooks; *p; p = &(*p)->next) {
		if (*p == w) {
			*p = w->next;
			w->next = NULL;
			return;
		}
	}
	if (w->endpoint) {
		source_cancel(&e->src, &w->sw);
		free(w->endpoint);
		w->endpoint = NULL;
	}
}

/* ---- the source ---- */

static bool once_over(void *arg)
{
	struct source_engine *e = arg;
	return e->synced || e->sync_failed || (e->conn == CONN_DOWN);
}

static int engine_start(struct source *s, struct loop *loop, bool once)
{
	struct source_engine *e = engine_of(s);
	e->loop = loop;
	e->once = once;
	e->http = engine_http_new(loop, e->socket);
	if (!e->http)
		return -ENOMEM;
	connect_start(e);
	if (once) {
		/* Nothing else runs yet: wait for the list here. */
		int r = engine_http_run(e->http, 15000, once_over, e);
		if (r < 0 || !e->synced) {
			log_error("engine %s: %s: no list of containers%s%s", kind(e), e->socket,
				  e->last_error[0] ? ": " : "", ESCAPED(e->last_error));
			return r < 0 ? r : -EIO;
		}
		return 0;
	}
	if (e->kind == ENGINE_DOCKER)
		mounts_start(e);
	if (!(e->reconcile_timer = loop_add_timer(loop, RECONCILE_MS, on_reconcile, e)))
		log_error("engine %s: timer: %m; the list is not compared again", kind(e));
	return 0;
}

static json_t *engine_status(struct source *s)
{
	struct source_engine *e = engine_of(s);
	size_t endpoints = 0;
	for (struct ctr *c = e->ctrs; c; c = c->next)
		endpoints += c->reported != NULL;
	static const char *const words[] = {"down", "ping", "connecting", "following"};
	/* The error holds the engine's own message and headers, cut to fit,
	 * and the socket is any path: JSON takes them only as UTF-8. */
	char *error = e->last_error[0] ? utf8_text(e->last_error) : NULL, *sock = utf8_text(e->socket);
	json_t *st = json_pack(
	    "{s:s,s:s,s:s,s:s?,s:b,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:s?}", "engine", kind(e), "socket", sock,
	    "state", words[e->conn], "api", e->api[0] ? e->api + 1 : NULL, "synced", e->synced, "containers",
	    (json_int_t)e->n_ctrs, "endpoints", (json_int_t)endpoints, "events", (json_int_t)e->n_events,
	    "malformed", (json_int_t)e->n_malformed, "reconnects", (json_int_t)e->n_reconnects,
	    "early_namespaces", (json_int_t)e->n_early, "anonymous_quarantines", (json_int_t)e->n_anonymous,
	    "retry_ms", (json_int_t)e->retry_ms, "error", error);
	free(error);
	free(sock);
	return st;
}

static void engine_free(struct source *s)
{
	struct source_engine *e = engine_of(s);
	e->stopping = true;
	while (e->ctrs) {
		struct ctr *c = e->ctrs;
		e->ctrs = c->next;
		ctr_free(e, c);
	}
	engine_http_free(e->http);
	if (e->loop) {
		loop_remove(e->loop, e->retry_timer);
		loop_remove(e->loop, e->reconcile_timer);
		loop_remove(e->loop, e->events_timer);
		loop_remove(e->loop, e->mounts_src);
	}
	if (e->mounts_fd >= 0)
		close(e->mounts_fd);
	for (size_t i = 0; i < e->n_mounts; i++)
		free(e->mounts[i]);
	free(e->mounts);
	engine_lines_release(&e->lines);
	free(e->netns_dir);
	free(e->socket);
	free(e->select_key);
	free(e->select_value);
	free(e);
}

static const struct source_ops docker_ops = {
    .kind = "docker",
    .start = engine_start,
    .free = engine_free,
    .status = engine_status,
};
static const struct source_ops podman_ops = {
    .kind = "podman",
    .start = engine_start,
    .free = engine_free,
    .status = engine_status,
};

int source_engine_parse(const char *arg, struct source_engine_options *o, const char **why)
{
	const char *colon = strchr(arg, ':');
	size_t n = colon ? (size_t)(colon - arg) : strlen(arg);
	memset(o, 0, sizeof(*o));
	if (n == 6 && strncmp(arg, "docker", 6) == 0) {
		o->kind = ENGINE_DOCKER;
	} else if (n == 6 && strncmp(arg, "podman", 6) == 0) {
		o->kind = ENGINE_PODMAN;
	} else {
		*why = "expected docker[:SOCKET] or podman[:SOCKET]";
		return -EINVAL;
	}
	if (colon) {
		if (colon[1] != '/' || strlen(colon + 1) >= 108) {
			*why = "the socket is an absolute path of at most 107 bytes (a unix socket's)";
			return -EINVAL;
		}
		o->socket = colon + 1;
	}
	return 0;
}

struct source *source_engine_new(const struct source_engine_options *o)
{
	struct source_engine *e = xcalloc(1, sizeof(*e));
	e->src.ops = o->kind == ENGINE_PODMAN ? &podman_ops : &docker_ops;
	e->kind = o->kind;
	e->socket = xstrdup(o->socket		       ? o->socket
			    : o->kind == ENGINE_PODMAN ? ENGINE_PODMAN_SOCKET
						       : ENGINE_DOCKER_SOCKET);
	if (o->select.key) {
		e->select_key = xstrdup(o->select.key);
		e->select_value = o->select.value ? xstrdup(o->select.value) : NULL;
		e->select = (struct engine_select){e->select_key, e->select_value};
	}
	e->events_answer_ms = o->events_answer_ms ? o->events_answer_ms : EVENTS_ANSWER_MS;
	e->mounts_fd = -1;
	engine_lines_init(&e->lines, ENGINE_EVENT_MAX);
	return &e->src;
}
