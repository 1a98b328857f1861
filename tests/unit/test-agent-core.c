/* The agent's core without root: agent.c and endpoint.c on a fake
 * dataplane (namespaces are a table of paths and identities, a "table" is
 * the tag and hash the fake was last given; batches are really built with
 * nft.c, which says delta or whole table), a fake controller session and
 * a fake endpoint source, on a clock of the test's own. Covers: the cached
 * bundle applied before the session starts; a delta, and the whole-table
 * replace at once when the delta fails; drift put back, with backoff when
 * it happens again and again; per-endpoint ACKs; a namespace replaced
 * under the agent; a failing endpoint's backoff in status.json; waiters
 * (the OCI hook's "tell me when it is enforced"); agent_stop() and
 * agent_free(); the pure backoff itself; and the live connections an
 * update no longer allows, cut through the fake's conntrack table (only
 * after updates that may tighten, audits reported and kept, a failed cut
 * tried again). */
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bulkhead/compile.h"
#include "agent.h"
#include "backoff.h"
#include "endpoint.h"
#include "quarantine.h"
#include "scenario.h"
#include "state.h"
#include "test.h"

/* ---- what happened, in order ---- */

static char journal[1 << 16];
static size_t journal_len;

static void note(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(journal + journal_len, sizeof(journal) - journal_len, fmt, ap);
	va_end(ap);
	if (n > 0 && journal_len + (size_t)n < sizeof(journal) - 1) {
		journal_len += (size_t)n;
		journal[journal_len++] = '\n';
		journal[journal_len] = '\0';
	}
}

static void journal_reset(void)
{
	journal_len = 0;
	journal[0] = '\0';
}

/* Where line (a prefix) first appears in the journal, or -1. */
static long at(const char *line)
{
	const char *p = strstr(journal, line);
	return p ? p - journal : -1;
}

static unsigned count(const char *line)
{
	unsigned n = 0;
	for (const char *p = journal; (p = strstr(p, line)); p++)
		n++;
	return n;
}

/* ---- the clock ---- */

static uint64_t now;
static uint64_t fake_now(void)
{
	return now;
}

/* ---- bundles ---- */

/* Node n1's bundle: every endpoint in names gets ingress from office
 * (cidrs) on port, in mode; eph is not in any bundle. */
static struct bundle *compile_mode(const char *cidrs, int port, const char *names, const char *mode)
{
	char policy[1024], inventory[1024] = "{\"node\":\"n1\",\"endpoints\":[";
	snprintf(policy, sizeof(policy),
		 "{\"version\":1,\"groups\":{\"office\":{\"cidrs\":[%s]}},\"policies\":[{\"name\":\"in\","
		 "\"mode\":\"%s\",\"applies_to\":{\"labels\":{}},\"ingress\":[{\"from\":[\"office\"],"
		 "\"ports\":[\"tcp/%d\"]}]}]}",
		 cidrs, mode, port);
	char list[256];
	snprintf(list, sizeof(list), "%s", names);
	int i = 0;
	for (char *save, *n = strtok_r(list, " ", &save); n; n = strtok_r(NULL, " ", &save), i++)
		snprintf(inventory + strlen(inventory), sizeof(inventory) - strlen(inventory),
			 "%s{\"name\":\"%s\",\"labels\":{\"app\":\"x\"},\"addresses\":[\"198.18.0.%d\"]}",
			 i ? "," : "", n, 10 + i);
	strcat(inventory, "]}");
	return scenario_compile(policy, inventory, "n1", 0);
}

static struct bundle *compile_for(const char *cidrs, int port, const char *names)
{
	return compile_mode(cidrs, port, names, "enforce");
}

#define OFFICE_A "\"203.0.113.0/24\""
#define OFFICE_B "\"203.0.113.0/24\",\"198.51.100.0/24\"" /* A and one member more: a delta */

/* ---- the fake dataplane ---- */

struct fake_ns {
	char path[64];
	struct netns_id id;
	bool refused;	/* not a network namespace */
	bool has_table; /* the agent loaded a table: */
	struct nft_tag tag;
	bool changed;	       /* someone changed it since */
	struct ct_entry ct[8]; /* its conntrack table */
	size_t n_ct;
};

static struct fake_ns nss[16];
static size_t n_nss;
static unsigned long next_ino = 100;

struct fake_ep {
	struct dataplane_ep ep;
	char *name;
	struct netns_id id;
	const struct dataplane_events *ev;
	void *data;
	bool quiet;
};

static struct fake_ep *open_eps[16];

static struct fake_dp {
	struct dataplane dp;
	struct nft_batch *nb;
	const char *fail_delta, *fail_apply; /* endpoint names */
	const char *overwritten;	     /* rewritten by someone as fast as it goes in */
	const char *raced;		     /* changed as it goes in, then put back */
	bool last_once;			     /* what the last apply was asked */
	bool fail_ct;			     /* conntrack dumps fail */
} fake;

static struct fake_ns *ns_at(const char *path)
{
	for (size_t i = 0; path && i < n_nss; i++)
		if (strcmp(nss[i].path, path) == 0)
			return &nss[i];
	return NULL;
}

static struct fake_ns *ns_of(const struct netns_id *id)
{
	for (size_t i = 0; i < n_nss; i++)
		if (nss[i].id.ino == id->ino)
			return &nss[i];
	return NULL;
}

/* A namespace made (anew) at path: a new identity, no table. */
static struct fake_ns *ns_make(const char *path)
{
	struct fake_ns *ns = ns_at(path);
	if (!ns) {
		ns = &nss[n_nss++];
		snprintf(ns->path, sizeof(ns->path), "%s", path);
	}
	*ns = (struct fake_ns){.id = {.dev = 4, .ino = next_ino++}};
	snprintf(ns->path, sizeof(ns->path), "%s", path);
	return ns;
}

static void ns_remove(const char *path)
{
	struct fake_ns *ns = ns_at(path);
	if (ns)
		ns->path[0] = '\0';
}

static struct fake_ep *open_ep(const char *name)
{
	for (size_t i = 0; i < BH_ARRAY_SIZE(open_eps); i++)
		if (open_eps[i] && strcmp(open_eps[i]->name, name) == 0)
			return open_eps[i];
	return NULL;
}

static int fake_open(struct dataplane *dp, const char *name, const char *path, struct dataplane_ep **out,
		     struct netns_id *id, char *err, size_t errlen)
{
	struct fake_ns *ns = ns_at(path);
	if (!ns)
		return -ENOENT;
	if (ns->refused) {
		snprintf(err, errlen, "%s is not a network namespace", path);
		return -EINVAL;
	}
	struct fake_ep *e = xcalloc(1, sizeof(*e));
	e->ep.dp = dp;
	e->name = xstrdup(name);
	e->id = ns->id;
	*id = ns->id;
	*out = &e->ep;
	return 0;
}

/* fds the test hands over as namespaces (the hook's), by fd number. */
static char fd_paths[64][64];

static int fake_adopt(struct dataplane *dp, const char *name, const char *path, int fd,
		      struct dataplane_ep **out, struct netns_id *id, char *err, size_t errlen)
{
	/* The agent adopts a copy: find what it copies by identity. */
	struct netns_id want;
	int r = dp->ops->identify_fd(dp, fd, &want);
	struct fake_ns *ns = r == 0 ? ns_of(&want) : NULL;
	if (!ns) {
		snprintf(err, errlen, "not a network namespace");
		return -EINVAL;
	}
	note("adopt %s ns%lu", name, ns->id.ino);
	struct fake_ep *e = xcalloc(1, sizeof(*e));
	e->ep.dp = dp;
	e->name = xstrdup(name);
	e->id = ns->id;
	*id = ns->id;
	*out = &e->ep;
	return 0;
}

/* An fd stands for the namespace made at path when the test handed it
 * over; the agent's copy (F_DUPFD) shares its open file, so identity goes
 * by what fstat says of the file: a pipe of the test's, remembered by inode. */
static unsigned long fd_inos[64];
static int fake_identify_fd(struct dataplane *dp, int fd, struct netns_id *id)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -EBADF;
	for (size_t i = 0; i < BH_ARRAY_SIZE(fd_inos); i++) {
		if (fd_inos[i] != st.st_ino || !fd_paths[i][0])
			continue;
		struct fake_ns *ns = ns_at(fd_paths[i]);
		if (!ns)
			return -EINVAL;
		*id = ns->id;
		return 0;
	}
	return -EINVAL;
}

/* An fd standing for the namespace at path (made if missing); the test closes it. */
static int hand_over(const char *path)
{
	int p[2];
	if (pipe(p) < 0)
		abort();
	close(p[1]);
	struct stat st;
	fstat(p[0], &st);
	if (!ns_at(path))
		ns_make(path);
	for (size_t i = 0; i < BH_ARRAY_SIZE(fd_inos); i++) {
		if (!fd_paths[i][0]) {
			fd_inos[i] = st.st_ino;
			snprintf(fd_paths[i], sizeof(fd_paths[i]), "%s", path);
			break;
		}
	}
	return p[0];
}

static int fake_attach(struct dataplane_ep *ep, unsigned flags, const struct dataplane_events *ev, void *data,
		       char *err, size_t errlen)
{
	struct fake_ep *e = (struct fake_ep *)ep;
	e->ev = ev;
	e->data = data;
	for (size_t i = 0; i < BH_ARRAY_SIZE(open_eps); i++) {
		if (!open_eps[i]) {
			open_eps[i] = e;
			break;
		}
	}
	note("open %s ns%lu", e->name, e->id.ino);
	return 0;
}

static void fake_close(struct dataplane_ep *ep)
{
	struct fake_ep *e = (struct fake_ep *)ep;
	for (size_t i = 0; i < BH_ARRAY_SIZE(open_eps); i++)
		if (open_eps[i] == e)
			open_eps[i] = NULL;
	note("close %s", e->name);
	free(e->name);
	free(e);
}

static int fake_identify(struct dataplane *dp, const char *path, struct netns_id *id)
{
	struct fake_ns *ns = ns_at(path);
	if (!ns)
		return -ENOENT;
	*id = ns->id;
	return 0;
}

static int fake_read_tag(struct dataplane_ep *ep, struct nft_tag *out)
{
	struct fake_ns *ns = ns_of(&((struct fake_ep *)ep)->id);
	if (!ns || !ns->has_table)
		return -ENOENT;
	*out = ns->tag;
	return 0;
}

static int fake_apply(struct dataplane_ep *ep, const struct dataplane_apply *req,
		      struct dataplane_result *res)
{
	struct fake_ep *e = (struct fake_ep *)ep;
	bool full = true;
	*res = (struct dataplane_result){.full = true};
	nft_batch_set_tag(fake.nb, req->tag);
	int r = req->old_ep ? nft_batch_build_update(fake.nb, req->old_b, req->old_ep, req->b, req->ep, &full)
			    : nft_batch_build(fake.nb, req->b, req->ep);
	res->full = full;
	if (r < 0) {
		snprintf(res->error, sizeof(res->error), "%s", nft_batch_error(fake.nb));
		return r;
	}
	note("apply %s %s %.8s ns%lu", e->name, full ? "full" : "delta", req->b->hash, e->id.ino);
	if (!full && fake.fail_delta && strcmp(fake.fail_delta, e->name) == 0) {
		snprintf(res->error, sizeof(res->error),
			 "delete elements from set s_1: No such file or directory");
		note("failed");
		return -ENOENT;
	}
	if (fake.fail_apply && strcmp(fake.fail_apply, e->name) == 0) {
		snprintf(res->error, sizeof(res->error), "rule ingress[0]: kernel: Operation not permitted");
		note("failed");
		return -EPERM;
	}
	struct fake_ns *ns = ns_of(&e->id);
	ns->has_table = true;
	ns->tag = *req->tag;
	ns->changed = false;
	fake.last_once = req->once;
	if (fake.overwritten && strcmp(fake.overwritten, e->name) == 0) {
		ns->changed = true;
		res->tampered = 1;
		res->unsettled = true;
		note("overwritten");
	}
	if (fake.raced && strcmp(fake.raced, e->name) == 0) {
		res->tampered = 1; /* read back, replaced again: settled, ours */
		note("raced");
	}
	e->quiet = false;
	res->committed = true;
	nft_batch_stats(fake.nb, &res->stats);
	if (full)
		res->full_commits++;
	else
		res->delta_commits++;
	return 0;
}

static int fake_verify(struct dataplane_ep *ep, const struct bundle *b, const struct bundle_endpoint *bep,
		       const struct nft_tag *tag, bool *read, char *why, size_t whylen)
{
	struct fake_ns *ns = ns_of(&((struct fake_ep *)ep)->id);
	*read = b != NULL;
	if (!b)
		return 0;
	note("verify %s", ((struct fake_ep *)ep)->name);
	bool same = ns->has_table && !ns->changed && strcmp(ns->tag.hash, b->hash) == 0;
	if (!same)
		snprintf(why, whylen, "rules differ");
	return same;
}

static void fake_quiet(struct dataplane_ep *ep)
{
	((struct fake_ep *)ep)->quiet = true;
}

/* A connection src:sport -> dst:dport (tcp) in the namespace at path. */
static void ct_add(const char *path, uint32_t id, const char *src, uint16_t sport, const char *dst,
		   uint16_t dport)
{
	struct fake_ns *ns = ns_at(path);
	struct ct_entry ce = {.has_id = true, .id = id};
	if (addr_parse(src, &ce.orig.src) < 0 || addr_parse(dst, &ce.orig.dst) < 0)
		abort();
	ce.orig.proto = IPPROTO_TCP;
	ce.orig.has_ports = true;
	ce.orig.sport = sport;
	ce.orig.dport = dport;
	ce.reply = (struct ct_tuple){.src = ce.orig.dst,
				     .dst = ce.orig.src,
				     .proto = IPPROTO_TCP,
				     .has_ports = true,
				     .sport = dport,
				     .dport = sport};
	ns->ct[ns->n_ct++] = ce;
}

static int fake_ct_dump(struct dataplane_ep *ep, dataplane_ct_fn fn, void *arg, struct dataplane_ct_dump *st,
			char *err, size_t errlen)
{
	struct fake_ep *e = (struct fake_ep *)ep;
	struct fake_ns *ns = ns_of(&e->id);
	note("ct dump %s %zu", e->name, ns->n_ct);
	if (fake.fail_ct) {
		snprintf(err, errlen, "dumping conntrack: No buffer space available");
		return -ENOBUFS;
	}
	for (size_t i = 0; i < ns->n_ct; i++) {
		fn(arg, &ns->ct[i]);
		st->entries++;
	}
	return 0;
}

static int fake_ct_delete(struct dataplane_ep *ep, const struct ct_entry *v, size_t n, size_t *deleted,
			  char *err, size_t errlen)
{
	struct fake_ep *e = (struct fake_ep *)ep;
	struct fake_ns *ns = ns_of(&e->id);
	for (size_t k = 0; k < n; k++) {
		for (size_t i = 0; i < ns->n_ct; i++) {
			if (ns->ct[i].id != v[k].id)
				continue;
			note("ct delete %s %u", e->name, v[k].id);
			ns->ct[i] = ns->ct[--ns->n_ct];
			(*deleted)++;
			break;
		}
	}
	return 0;
}

static void (*mounts_fn)(void *data);
static void *mounts_data;
static int fake_watch_namespaces(struct dataplane *dp, void (*fn)(void *data), void *data)
{
	mounts_fn = fn;
	mounts_data = data;
	return 0;
}

static void fake_free(struct dataplane *dp)
{
	nft_batch_free(fake.nb);
	fake.nb = NULL;
}

static const struct dataplane_ops fake_ops = {
    .name = "fake",
    .free = fake_free,
    .open = fake_open,
    .adopt = fake_adopt,
    .identify_fd = fake_identify_fd,
    .attach = fake_attach,
    .close = fake_close,
    .identify = fake_identify,
    .read_tag = fake_read_tag,
    .apply = fake_apply,
    .verify = fake_verify,
    .quiet = fake_quiet,
    .watch_namespaces = fake_watch_namespaces,
    .ct_dump = fake_ct_dump,
    .ct_delete = fake_ct_delete,
};

/* Someone changes ep's table; the dataplane tells the core (unless it
 * was asked to keep quiet, as the nft dataplane stops listening). */
static void tamper(const char *name)
{
	struct fake_ep *e = open_ep(name);
	ns_of(&e->id)->changed = true;
	if (e->quiet)
		return;
	struct drift_report rep = {.foreign_changes = 3, .last_portid = 4242, .last_what = "rule deleted"};
	e->ev->foreign(e->data, &rep);
}

/* ---- the fake session ---- */

struct fake_session {
	struct session s;
	const struct bundle *in_force;
	int64_t revision;
	bool certain;
	unsigned acks, endpoint_lists;
	json_t *last_ack_eps;
	bool last_ok;
	char last_error[512];
	int64_t last_ack_revision;
	bool stopped, freed_after_stop;
};

static struct fake_session *fs;

static int fs_start(struct session *s)
{
	struct fake_session *f = (struct fake_session *)s;
	note("start in_force=%.8s revision=%lld certain=%d", f->in_force ? f->in_force->hash : "-",
	     (long long)f->revision, f->certain);
	return 0;
}

static void fs_in_force(struct session *s, const struct bundle *b, int64_t revision, bool certain)
{
	struct fake_session *f = (struct fake_session *)s;
	f->in_force = b;
	f->revision = revision;
	f->certain = certain;
}

static void fs_endpoints(struct session *s, json_t *list)
{
	((struct fake_session *)s)->endpoint_lists++;
	json_decref(list);
}

static void fs_ack(struct session *s, int64_t revision, bool ok, const char *error, json_t *eps, bool always)
{
	struct fake_session *f = (struct fake_session *)s;
	f->acks++;
	f->last_ok = ok;
	f->last_ack_revision = revision;
	snprintf(f->last_error, sizeof(f->last_error), "%s", error ? error : "");
	json_decref(f->last_ack_eps);
	f->last_ack_eps = eps;
	note("ack %lld %s", (long long)revision, ok ? "ok" : "not-ok");
}

static void fs_packet(struct session *s, const char *endpoint, const struct nflog_event *ev,
		      const char *policy, const char *rule, uint64_t now_ms)
{
	char src[ADDR_STRLEN];
	struct bh_addr a = {.family = ev->family};
	memcpy(a.bytes, ev->src, sizeof(a.bytes));
	addr_format(&a, src);
	note("packet %s %s %s %s %s port %u", endpoint, verdict_report_name(ev->prefix.verdict),
	     direction_name(ev->prefix.dir), rule, src, ev->port);
}
static void fs_packets_lost(struct session *s, const char *endpoint, uint64_t enobufs, uint64_t gap)
{
}
static void fs_hit(struct session *s, const char *endpoint, enum direction dir, const char *rule,
		   const char *policy, const char *verdict, uint64_t packets, uint64_t bytes, uint64_t now_ms)
{
}
static void fs_status(struct session *s, json_t **controller, json_t **flows)
{
	*controller = NULL;
	*flows = NULL;
}
static void fs_stop(struct session *s)
{
	((struct fake_session *)s)->stopped = true;
	note("session stop");
}
static void fs_free(struct session *s)
{
	struct fake_session *f = (struct fake_session *)s;
	json_decref(f->last_ack_eps);
	f->last_ack_eps = NULL;
	f->freed_after_stop = f->stopped;
}

static const struct session_ops fs_ops = {
    .start = fs_start,
    .in_force = fs_in_force,
    .endpoints = fs_endpoints,
    .ack = fs_ack,
    .packet = fs_packet,
    .packets_lost = fs_packets_lost,
    .hit = fs_hit,
    .status = fs_status,
    .stop = fs_stop,
    .free = fs_free,
};

/* The controller sends b (owned) as revision. */
static void controller_sends(struct agent *a, struct bundle *b, int64_t revision)
{
	agent_session_peer.bundles.take(a, BUNDLE_FROM_CONTROLLER, b, revision);
}

/* The ACK's entry for endpoint name: "applied" or the error; NULL when
 * the ACK does not name it. */
static const char *ack_of(const char *name)
{
	size_t i;
	json_t *e;
	json_array_foreach (fs->last_ack_eps, i, e) {
		if (strcmp(json_string_value(json_object_get(e, "name")), name) != 0)
			continue;
		const char *err = json_string_value(json_object_get(e, "error"));
		return json_is_string(json_object_get(e, "applied")) ? "applied" : err ? err : "(neither)";
	}
	return NULL;
}

/* ---- the fake source ---- */

static struct source_endpoint listing[8];
static size_t n_listing;
static struct source fake_src;

static int src_start(struct source *s, struct loop *loop, bool once)
{
	note("source start");
	source_set_all(s, listing, n_listing);
	return 0;
}
static void src_free(struct source *s)
{
}
static const struct source_ops src_ops = {.kind = "fake", .start = src_start, .free = src_free};

static void list_endpoints(const char *names)
{
	static char buf[256], paths[8][64];
	snprintf(buf, sizeof(buf), "%s", names);
	n_listing = 0;
	for (char *save, *n = strtok_r(buf, " ", &save); n; n = strtok_r(NULL, " ", &save)) {
		snprintf(paths[n_listing], sizeof(paths[0]), "/run/netns/%s", n);
		listing[n_listing] = (struct source_endpoint){.name = n, .netns = paths[n_listing]};
		n_listing++;
	}
}

/* ---- a world ---- */

struct world {
	char dir[64];
	struct loop *loop;
	struct agent_options o;
	struct agent *a;
};

static void world_new(struct world *w, const char *endpoints)
{
	*w = (struct world){.o = {.node = "n1",
				  .nflog_group = 100,
				  .counters_ms = 1000,
				  .recheck_ms = 500,
				  .now_ms = fake_now}};
	snprintf(w->dir, sizeof(w->dir), "/tmp/bulkhead-test-core.XXXXXX");
	if (!mkdtemp(w->dir))
		abort();
	w->o.state_dir = w->dir;
	journal_reset();
	n_nss = 0;
	memset(open_eps, 0, sizeof(open_eps));
	memset(fd_paths, 0, sizeof(fd_paths));
	now = 1000000;
	fake = (struct fake_dp){.dp.ops = &fake_ops, .nb = nft_batch_new(100)};
	fs = xcalloc(1, sizeof(*fs));
	fs->s.ops = &fs_ops;
	fake_src = (struct source){.ops = &src_ops};
	list_endpoints(endpoints);
	w->loop = loop_new();
}

static void world_start(struct world *w)
{
	w->a = agent_new(&w->o, w->loop, &fake.dp);
	agent_set_session(w->a, &fs->s);
	agent_add_source(w->a, &fake_src);
	(void)agent_start(w->a, false);
}

static void world_free(struct world *w)
{
	agent_stop(w->a);
	agent_free(w->a);
	free(fs);
	fs = NULL;
	loop_free(w->loop);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", w->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "  could not remove %s\n", w->dir);
}

/* The world's status.json, as last written. */
static json_t *status_json(struct world *w)
{
	char *text;
	size_t len;
	if (state_read(w->dir, STATE_STATUS, 1 << 20, &text, &len) < 0)
		return NULL;
	json_t *j = json_loadb(text, len, 0, NULL);
	free(text);
	return j;
}

static json_t *status_endpoint(json_t *st, const char *name)
{
	size_t i;
	json_t *e;
	json_array_foreach (json_object_get(st, "endpoints"), i, e) {
		if (strcmp(json_string_value(json_object_get(e, "name")), name) == 0)
			return e;
	}
	return NULL;
}

static long long counter(struct world *w, const char *name, const char *key)
{
	json_t *st = status_json(w);
	json_t *c = json_object_get(status_endpoint(st, name), "counters");
	long long v =
	    json_is_integer(json_object_get(c, key)) ? json_integer_value(json_object_get(c, key)) : -1;
	json_decref(st);
	return v;
}

/* Writes b as the state directory's cache, revision rev. */
static void cache_holds(struct world *w, struct bundle *b, long long rev)
{
	char *text = bundle_encode(b, false), line[128];
	snprintf(line, sizeof(line), "%lld %llu %s\n", rev, 1000ull, b->hash);
	CHECK(state_write(w->dir, STATE_BUNDLE, text, strlen(text)) == 0);
	CHECK(state_write(w->dir, STATE_REVISION, line, strlen(line)) == 0);
	free(text);
}

/* ---- the tests ---- */

TEST(the_cached_bundle_is_applied_before_the_session_starts)
{
	struct world w;
	world_new(&w, "ep1 ep2");
	ns_make("/run/netns/ep1");
	ns_make("/run/netns/ep2");
	struct bundle *cached = compile_for(OFFICE_A, 80, "ep1 ep2");
	cache_holds(&w, cached, 7);
	world_start(&w);
	char apply1[64], start[64];
	snprintf(apply1, sizeof(apply1), "apply ep1 full %.8s", cached->hash);
	snprintf(start, sizeof(start), "start in_force=%.8s revision=7 certain=1", cached->hash);
	CHECK(at(apply1) >= 0);
	CHECK(at("apply ep2 full") >= 0);
	/* The session starts (and says HELLO) only after both tables went in,
	 * telling the controller it holds the cached revision. */
	CHECK(count("start ") == 1);
	CHECK(at(start) >= 0);
	CHECK(at("start ") > at(apply1));
	CHECK(at("start ") > at("apply ep2 full"));
	CHECK(at("source start") < at(apply1));

	/* The controller answers with revision 8, one member more: deltas. */
	struct bundle *next = compile_for(OFFICE_B, 80, "ep1 ep2");
	char delta[64];
	snprintf(delta, sizeof(delta), "apply ep1 delta %.8s", next->hash);
	controller_sends(w.a, next, 8);
	CHECK(at(delta) > at(start));
	CHECK(at("apply ep2 delta") > at(start));
	CHECK(fs->last_ack_revision == 8 && fs->last_ok);
	CHECK_STR(ack_of("ep1"), "applied");
	CHECK_STR(ack_of("ep2"), "applied");
	CHECK(fs->in_force && fs->revision == 8 && fs->certain);
	bundle_free(cached);
	world_free(&w);
}

TEST(a_table_newer_than_the_cache_is_kept_and_the_controller_told_nothing_certain)
{
	struct world w;
	world_new(&w, "ep1");
	struct fake_ns *ns = ns_make("/run/netns/ep1");
	struct bundle *cached = compile_for(OFFICE_A, 80, "ep1"), *newer = compile_for(OFFICE_B, 80, "ep1");
	cache_holds(&w, cached, 7);
	/* An earlier run enforced a newer bundle the cache could not keep. */
	ns->has_table = true;
	ns->tag = (struct nft_tag){.serial = 5000, .revision = 9};
	memcpy(ns->tag.hash, newer->hash, sizeof(ns->tag.hash));
	world_start(&w);
	CHECK(at("apply ep1") < 0);
	CHECK(at("start in_force=") >= 0 && strstr(journal, "certain=0") != NULL);
	/* The controller sends its bundle: that goes in. */
	controller_sends(w.a, newer, 9);
	CHECK(at("apply ep1 full") >= 0);
	CHECK(fs->certain && fs->last_ok);
	bundle_free(cached);
	world_free(&w);
}

TEST(a_failed_delta_is_followed_at_once_by_the_whole_table)
{
	struct world w;
	world_new(&w, "ep1 ep2");
	ns_make("/run/netns/ep1");
	ns_make("/run/netns/ep2");
	world_start(&w);
	controller_sends(w.a, compile_for(OFFICE_A, 80, "ep1 ep2"), 1);
	CHECK(count("apply ep1 full") == 1);
	/* ep1's kernel table lost an element behind the agent's back: the
	 * delta that deletes it fails, and the whole table goes at once, in
	 * the same handler, not at a later retry. */
	fake.fail_delta = "ep1";
	journal_reset();
	controller_sends(w.a, compile_for(OFFICE_B, 80, "ep1 ep2"), 2);
	CHECK(at("apply ep1 delta") >= 0);
	CHECK(at("failed") > at("apply ep1 delta"));
	CHECK(at("apply ep1 full") > at("failed"));
	CHECK(at("apply ep2 delta") >= 0 && count("apply ep2 full") == 0);
	CHECK(fs->last_ack_revision == 2 && fs->last_ok);
	CHECK_STR(ack_of("ep1"), "applied");
	agent_tick(w.a);
	CHECK(counter(&w, "ep1", "delta_fallbacks") == 1);
	CHECK(counter(&w, "ep1", "failures") == 0);
	CHECK(counter(&w, "ep1", "full_updates") == 2);
	CHECK(counter(&w, "ep2", "delta_updates") == 1);
	world_free(&w);
}

TEST(drift_is_put_back_at_once_then_with_backoff)
{
	struct world w;
	world_new(&w, "ep1");
	ns_make("/run/netns/ep1");
	world_start(&w);
	controller_sends(w.a, compile_for(OFFICE_A, 80, "ep1"), 1);
	/* First change: put back at once, whole. */
	journal_reset();
	tamper("ep1");
	CHECK(count("apply ep1 full") == 1);
	CHECK(!ns_of(&open_ep("ep1")->id)->changed);
	/* Again within the quiet period: the repair waits 500 ms, the
	 * dataplane stops reporting changes meanwhile, and the ACK says the
	 * table is not what it should be. */
	journal_reset();
	now += 1000;
	tamper("ep1");
	CHECK(count("apply ep1") == 0);
	CHECK(open_ep("ep1")->quiet);
	agent_tick(w.a);
	CHECK(!fs->last_ok);
	CHECK_STR(ack_of("ep1"), ENDPOINT_TAMPERING_ERROR);
	tamper("ep1"); /* not heard: quiet */
	now += 400;
	agent_tick(w.a);
	CHECK(count("apply ep1") == 0);
	now += 100;
	agent_tick(w.a);
	CHECK(count("apply ep1 full") == 1);
	CHECK(fs->last_ok);
	json_t *st = status_json(&w);
	json_t *bo = json_object_get(status_endpoint(st, "ep1"), "backoff");
	CHECK_STR(json_string_value(json_object_get(bo, "reason")), "tampering");
	CHECK(json_integer_value(json_object_get(bo, "delay_ms")) == 500);
	json_decref(st);
	/* The third waits twice as long. */
	journal_reset();
	now += 100;
	tamper("ep1");
	now += 999;
	agent_tick(w.a);
	CHECK(count("apply ep1") == 0);
	now += 1;
	agent_tick(w.a);
	CHECK(count("apply ep1 full") == 1);
	CHECK(counter(&w, "ep1", "tampering") == 3);
	/* Left alone for the quiet period, the streak ends: the next change
	 * is put back at once again. */
	now += BACKOFF_QUIET_MS;
	agent_tick(w.a);
	st = status_json(&w);
	CHECK(json_is_null(json_object_get(status_endpoint(st, "ep1"), "backoff")));
	json_decref(st);
	journal_reset();
	tamper("ep1");
	CHECK(count("apply ep1 full") == 1);
	world_free(&w);
}

TEST(a_table_rewritten_as_fast_as_it_goes_in_is_tried_again_after_the_backoff)
{
	struct world w;
	world_new(&w, "ep1");
	ns_make("/run/netns/ep1");
	world_start(&w);
	controller_sends(w.a, compile_for(OFFICE_A, 80, "ep1"), 1);
	/* Someone commits after every one of ours: the dataplane says the
	 * table is still not what it sent. No event may come (a flushed table
	 * has nothing left to flush), so the core must come back by itself. */
	fake.overwritten = "ep1";
	journal_reset();
	tamper("ep1");
	CHECK(count("apply ep1 full") == 1 && count("overwritten") == 1);
	CHECK(!fake.last_once); /* the first repair may try hard */
	agent_tick(w.a);
	CHECK(!fs->last_ok);
	CHECK_STR(ack_of("ep1"), ENDPOINT_TAMPERING_ERROR);
	CHECK(open_ep("ep1")->quiet);
	now += 500;
	agent_tick(w.a);
	CHECK(count("apply ep1 full") == 2);
	CHECK(fake.last_once); /* backing off: one attempt each time */
	/* It stops: the next attempt holds, and the ACK says so. */
	fake.overwritten = NULL;
	now += 1000;
	agent_tick(w.a);
	CHECK(count("apply ep1 full") == 3);
	CHECK(fs->last_ok);
	CHECK(!ns_of(&open_ep("ep1")->id)->changed);
	world_free(&w);
}

TEST(lost_events_read_the_table_back_and_replace_it_only_when_it_differs)
{
	struct world w;
	world_new(&w, "ep1");
	ns_make("/run/netns/ep1");
	world_start(&w);
	controller_sends(w.a, compile_for(OFFICE_A, 80, "ep1"), 1);
	journal_reset();
	struct fake_ep *e = open_ep("ep1");
	e->ev->lost(e->data);
	CHECK(at("verify ep1") >= 0 && count("apply ep1") == 0);
	ns_of(&e->id)->changed = true;
	e->ev->lost(e->data);
	CHECK(count("verify ep1") == 2 && count("apply ep1 full") == 1);
	agent_tick(w.a);
	CHECK(counter(&w, "ep1", "events_lost") == 2);
	CHECK(counter(&w, "ep1", "checks") == 2);
	CHECK(counter(&w, "ep1", "tampering") == 1);
	world_free(&w);
}

TEST(acks_say_per_endpoint_what_is_applied_and_why_not)
{
	struct world w;
	world_new(&w, "ep1 ep2 ep3 ep4");
	ns_make("/run/netns/ep1");
	ns_make("/run/netns/ep2")->refused = true;
	ns_make("/run/netns/ep4");
	/* ep3's namespace is not there; ep4 is not in the bundle. */
	world_start(&w);
	controller_sends(w.a, compile_for(OFFICE_A, 80, "ep1 ep2 ep3"), 3);
	CHECK(fs->last_ack_revision == 3 && !fs->last_ok);
	CHECK_STR(ack_of("ep1"), "applied");
	CHECK_STR(ack_of("ep2"), "/run/netns/ep2 is not a network namespace");
	CHECK_STR(ack_of("ep3"), "namespace not present");
	CHECK(ack_of("ep4") == NULL);
	CHECK(json_array_size(fs->last_ack_eps) == 3);
	/* ep3's namespace comes: the next check applies it and ACKs again. */
	ns_make("/run/netns/ep3");
	agent_tick(w.a);
	CHECK_STR(ack_of("ep3"), "applied");
	CHECK(!fs->last_ok); /* ep2 still refused */
	world_free(&w);
}

TEST(a_namespace_replaced_under_the_agent_gets_its_table)
{
	struct world w;
	world_new(&w, "ep1");
	struct fake_ns *old = ns_make("/run/netns/ep1");
	unsigned long old_ino = old->id.ino;
	world_start(&w);
	controller_sends(w.a, compile_for(OFFICE_A, 80, "ep1"), 1);
	char line[64];
	snprintf(line, sizeof(line), "apply ep1 full");
	CHECK(count(line) == 1);
	/* The container restarts: a new namespace at the same path, empty. */
	journal_reset();
	struct fake_ns *fresh = ns_make("/run/netns/ep1");
	CHECK(fresh->id.ino != old_ino);
	agent_tick(w.a);
	CHECK(at("close ep1") >= 0);
	snprintf(line, sizeof(line), "apply ep1 full %.8s ns%lu", fs->in_force->hash, fresh->id.ino);
	CHECK(at(line) > at("close ep1"));
	CHECK(fresh->has_table);
	CHECK(fs->last_ok);
	/* It goes away: closed, and shown not present. */
	ns_remove("/run/netns/ep1");
	agent_tick(w.a);
	CHECK(open_ep("ep1") == NULL);
	json_t *st = status_json(&w);
	CHECK(json_is_false(json_object_get(status_endpoint(st, "ep1"), "present")));
	json_decref(st);
	world_free(&w);
}

TEST(a_failing_endpoint_backs_off_until_it_applies_or_a_new_bundle_comes)
{
	struct world w;
	world_new(&w, "ep1 ep2");
	ns_make("/run/netns/ep1");
	ns_make("/run/netns/ep2");
	world_start(&w);
	fake.fail_apply = "ep1";
	controller_sends(w.a, compile_for(OFFICE_A, 80, "ep1 ep2"), 1);
	CHECK(count("apply ep1") == 1 && count("apply ep2") == 1);
	CHECK(!fs->last_ok);
	CHECK(ack_of("ep1") && strncmp(ack_of("ep1"), "applying bundle ", 16) == 0);
	/* Retries after 0.5 s, 1 s, 2 s, ... not at every check. */
	unsigned tries = 1;
	uint64_t waits[] = {500, 1000, 2000, 4000, 8000, 16000, 30000, 30000};
	for (size_t i = 0; i < BH_ARRAY_SIZE(waits); i++) {
		now += waits[i] - 1;
		agent_tick(w.a);
		CHECK(count("apply ep1") == tries);
		now += 1;
		agent_tick(w.a);
		CHECK(count("apply ep1") == ++tries);
	}
	json_t *st = status_json(&w);
	json_t *e1 = status_endpoint(st, "ep1"), *bo = json_object_get(e1, "backoff");
	CHECK_STR(json_string_value(json_object_get(bo, "reason")), "apply");
	CHECK(json_integer_value(json_object_get(bo, "delay_ms")) == 30000);
	CHECK(json_integer_value(json_object_get(bo, "streak")) == (json_int_t)tries);
	CHECK(json_integer_value(json_object_get(json_object_get(e1, "counters"), "failures")) ==
	      (json_int_t)tries);
	CHECK(json_is_null(json_object_get(status_endpoint(st, "ep2"), "backoff")));
	json_decref(st);
	/* A new bundle is tried at once. */
	controller_sends(w.a, compile_for(OFFICE_A, 81, "ep1 ep2"), 2);
	CHECK(count("apply ep1") == ++tries);
	/* It works again: the backoff ends. */
	fake.fail_apply = NULL;
	now += 500;
	agent_tick(w.a);
	CHECK(count("apply ep1") == ++tries);
	CHECK(fs->last_ok);
	st = status_json(&w);
	CHECK(json_is_null(json_object_get(status_endpoint(st, "ep1"), "backoff")));
	CHECK(json_is_null(json_object_get(status_endpoint(st, "ep1"), "error")));
	json_decref(st);
	world_free(&w);
}

TEST(a_namespace_that_cannot_be_opened_backs_off_and_a_mount_retries_it)
{
	struct world w;
	world_new(&w, "ep1 ep2");
	ns_make("/run/netns/ep1")->refused = true;
	ns_make("/run/netns/ep2")->refused = true;
	world_start(&w);
	controller_sends(w.a, compile_for(OFFICE_A, 80, "ep1 ep2"), 1);
	agent_tick(w.a);
	json_t *st = status_json(&w);
	json_t *bo = json_object_get(status_endpoint(st, "ep1"), "backoff");
	CHECK_STR(json_string_value(json_object_get(bo, "reason")), "open");
	json_decref(st);
	/* Fixed meanwhile, but the backoff holds the next try back... */
	ns_make("/run/netns/ep1");
	now += 100;
	agent_tick(w.a);
	CHECK(open_ep("ep1") == NULL);
	/* ...until it is due... */
	now += 400;
	agent_tick(w.a);
	CHECK(open_ep("ep1") != NULL);
	CHECK(open_ep("ep2") == NULL);
	/* ...or the mount table changes (a namespace mounted at its path). */
	now += 100;
	ns_make("/run/netns/ep2");
	CHECK(mounts_fn != NULL);
	if (mounts_fn)
		mounts_fn(mounts_data);
	CHECK(open_ep("ep2") != NULL);
	CHECK(fs->last_ok);
	world_free(&w);
}

static int waited_result = 99;
static char waited_error[256];
static void waited(struct source_waiter *wt, int result, const char *error)
{
	waited_result = result;
	snprintf(waited_error, sizeof(waited_error), "%s", error ? error : "");
	note("waiter %d", result);
}

TEST(a_source_can_wait_until_an_endpoint_is_enforced)
{
	struct world w;
	world_new(&w, "ep1");
	ns_make("/run/netns/ep1");
	world_start(&w);
	controller_sends(w.a, compile_for(OFFICE_A, 80, "ep1"), 1);
	/* A new container: reported, and held back until its table is in;
	 * the bundle in force does not name it yet. */
	ns_make("/run/netns/ep5");
	struct source_endpoint se = {.name = "ep5", .netns = "/run/netns/ep5"};
	source_update(&fake_src, &se);
	struct source_waiter wt = {.endpoint = "ep5", .done = waited};
	waited_result = 99;
	source_enforce(&fake_src, &wt);
	CHECK(waited_result == 99);
	controller_sends(w.a, compile_for(OFFICE_A, 80, "ep1 ep5"), 2);
	CHECK(waited_result == 0);
	CHECK(at("waiter 0") > at("apply ep5 full"));
	/* One for an endpoint that goes away is told so. */
	struct source_waiter gone = {.endpoint = "ep6", .done = waited};
	waited_result = 99;
	source_enforce(&fake_src, &gone);
	CHECK(waited_result == -ENOENT);
	/* One whose table cannot be applied is told why. */
	fake.fail_apply = "ep1";
	tamper("ep1");
	struct source_waiter failing = {.endpoint = "ep1", .done = waited};
	waited_result = 99;
	source_enforce(&fake_src, &failing);
	CHECK(waited_result == -EIO);
	CHECK(strstr(waited_error, "Operation not permitted") != NULL);
	/* One still waiting when the agent stops is told that. */
	ns_make("/run/netns/ep7");
	struct source_endpoint se7 = {.name = "ep7", .netns = "/run/netns/ep7"};
	source_update(&fake_src, &se7);
	struct source_waiter stopping = {.endpoint = "ep7", .done = waited};
	waited_result = 99;
	source_enforce(&fake_src, &stopping);
	CHECK(waited_result == 99);
	world_free(&w);
	CHECK(waited_result == -ECANCELED);
}

static bool quarantined(struct world *w, const char *name)
{
	json_t *st = status_json(w);
	bool q = json_is_true(json_object_get(status_endpoint(st, name), "quarantined"));
	json_decref(st);
	return q;
}

TEST(a_container_seen_starting_holds_the_quarantine_table_until_its_own_comes)
{
	struct world w;
	char line[128];
	struct bundle *q = quarantine_bundle("ep5");
	world_new(&w, "ep1");
	ns_make("/run/netns/ep1");
	world_start(&w);
	controller_sends(w.a, compile_for(OFFICE_A, 80, "ep1"), 1);
	/* Not in the bundle yet, seen starting: the quarantine table. */
	ns_make("/run/netns/ep5");
	struct source_endpoint se = {.name = "ep5", .netns = "/run/netns/ep5", .quarantine = true};
	source_update(&fake_src, &se);
	snprintf(line, sizeof(line), "apply ep5 full %.8s", q->hash);
	CHECK(at(line) >= 0);
	CHECK(ns_at("/run/netns/ep5")->tag.serial == 0); /* never newer than a cached bundle */
	CHECK(quarantined(&w, "ep5"));
	CHECK(ack_of("ep5") == NULL); /* the controller has not named it: nothing to acknowledge */
	/* Its own table replaces it, whole, once the controller has it. */
	struct bundle *b2 = compile_for(OFFICE_A, 80, "ep1 ep5");
	char real[128];
	snprintf(real, sizeof(real), "apply ep5 full %.8s", b2->hash);
	controller_sends(w.a, b2, 2);
	CHECK(at(real) > at(line));
	CHECK(!quarantined(&w, "ep5"));
	CHECK(ack_of("ep5") && strcmp(ack_of("ep5"), "applied") == 0);
	/* A namespace reported without quarantine (found running, an
	 * inventory's) is left alone until the bundle names it. */
	ns_make("/run/netns/ep6");
	struct source_endpoint se6 = {.name = "ep6", .netns = "/run/netns/ep6"};
	source_update(&fake_src, &se6);
	CHECK(at("apply ep6") < 0);
	CHECK(!ns_at("/run/netns/ep6")->has_table);
	world_free(&w);
	bundle_free(q);
}

TEST(quarantine_without_any_bundle)
{
	struct world w;
	world_new(&w, "");
	world_start(&w);
	/* No cache, no controller answer yet: fail closed all the same. */
	ns_make("/run/netns/ep5");
	struct source_endpoint se = {.name = "ep5", .netns = "/run/netns/ep5", .quarantine = true};
	source_update(&fake_src, &se);
	CHECK(at("apply ep5 full") >= 0);
	CHECK(quarantined(&w, "ep5"));
	/* Tampered with: put back like any table. */
	journal_reset();
	tamper("ep5");
	CHECK(at("apply ep5 full") >= 0);
	world_free(&w);
}

TEST(a_namespace_seen_before_its_container_is_quarantined_once)
{
	struct world w;
	world_new(&w, "ep1");
	ns_make("/run/netns/ep1");
	world_start(&w);
	controller_sends(w.a, compile_for(OFFICE_A, 80, "ep1"), 1);
	journal_reset();
	ns_make("/run/netns/newborn");
	source_quarantine(&fake_src, "/run/netns/newborn");
	CHECK(at("open (new namespace)") >= 0 &&
	      at("apply (new namespace) full") > at("open (new namespace)"));
	CHECK(at("close (new namespace)") > at("apply (new namespace) full"));
	CHECK(ns_at("/run/netns/newborn")->has_table && ns_at("/run/netns/newborn")->tag.serial == 0);
	/* One an endpoint holds is that endpoint's business; one not there
	 * is nothing to do. */
	journal_reset();
	source_quarantine(&fake_src, "/run/netns/ep1");
	source_quarantine(&fake_src, "/run/netns/nothing-here");
	CHECK(at("apply") < 0);
	world_free(&w);
}

static int src2_start(struct source *s, struct loop *loop, bool once)
{
	return 0;
}
static const struct source_ops src2_ops = {.kind = "second", .start = src2_start, .free = src_free};

TEST(a_name_two_sources_report_is_refused_and_shown)
{
	struct world w;
	struct source second = {.ops = &src2_ops};
	world_new(&w, "ep1");
	ns_make("/run/netns/ep1");
	ns_make("/run/netns/other");
	w.a = agent_new(&w.o, w.loop, &fake.dp);
	agent_set_session(w.a, &fs->s);
	agent_add_source(w.a, &fake_src);
	agent_add_source(w.a, &second);
	(void)agent_start(w.a, false);
	struct source_endpoint se = {.name = "ep1", .netns = "/run/netns/other"};
	source_update(&second, &se);
	json_t *st = status_json(&w);
	const char *why = json_string_value(
	    json_object_get(json_object_get(json_object_get(st, "refused"), "ep1"), "error"));
	CHECK(why && strstr(why, "second") && strstr(why, "fake source's is kept"));
	json_decref(st);
	CHECK(at("open ep1 ns") >= 0 && count("open ep1") == 1); /* the first one's namespace only */
	/* The refused source stops reporting it: the refusal is over. */
	source_set_all(&second, NULL, 0);
	st = status_json(&w);
	CHECK(!json_object_get(st, "refused"));
	json_decref(st);
	world_free(&w);
}

/* A container seen starting under a name another source's endpoint has
 * (an inventory's, another engine's): refused, and not left without any
 * table meanwhile: its namespace gets the quarantine table, as any new
 * container's does (whoever may start containers could otherwise run
 * one unprotected by naming it after an endpoint). Once. */
TEST(a_container_seen_starting_under_a_name_already_taken_is_quarantined)
{
	struct world w;
	struct source second = {.ops = &src2_ops};
	world_new(&w, "ep1");
	ns_make("/run/netns/ep1");
	ns_make("/run/netns/impostor");
	w.a = agent_new(&w.o, w.loop, &fake.dp);
	agent_set_session(w.a, &fs->s);
	agent_add_source(w.a, &fake_src);
	agent_add_source(w.a, &second);
	(void)agent_start(w.a, false);
	controller_sends(w.a, compile_for(OFFICE_A, 80, "ep1"), 1);
	journal_reset();
	struct source_endpoint se = {.name = "ep1", .netns = "/run/netns/impostor", .quarantine = true};
	source_update(&second, &se);
	CHECK(at("apply (new namespace) full") >= 0);
	CHECK(ns_at("/run/netns/impostor")->has_table && ns_at("/run/netns/impostor")->tag.serial == 0);
	journal_reset();
	source_update(&second, &se); /* reported again: said and done already */
	CHECK(count("apply") == 0);
	/* One found running (not seen starting) is refused and left alone. */
	ns_make("/run/netns/old");
	struct source_endpoint old = {.name = "ep1", .netns = "/run/netns/old"};
	source_set_all(&second, NULL, 0);
	journal_reset();
	source_update(&second, &old);
	CHECK(count("apply") == 0 && !ns_at("/run/netns/old")->has_table);
	world_free(&w);
}

TEST(stop_does_the_shutdown_work_and_free_only_frees)
{
	struct world w;
	world_new(&w, "ep1");
	ns_make("/run/netns/ep1");
	world_start(&w);
	controller_sends(w.a, compile_for(OFFICE_A, 80, "ep1"), 1);
	agent_stop(w.a);
	CHECK(fs->stopped);
	size_t before = journal_len;
	struct fake_session *f = fs;
	fs = NULL;
	f->stopped = true;
	agent_free(w.a);
	/* Freeing closed the namespace and nothing else: no apply, no ACK. */
	CHECK(strstr(journal + before, "apply") == NULL && strstr(journal + before, "ack") == NULL);
	CHECK(strstr(journal + before, "close ep1") != NULL);
	CHECK(f->freed_after_stop);
	free(f);
	loop_free(w.loop);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", w.dir);
	CHECK(system(cmd) == 0);
}

/* ---- the OCI hook's calls: claim, isolate ---- */

static struct source hook_src;
static int no_start(struct source *s, struct loop *loop, bool once)
{
	return 0;
}
static const struct source_ops hook_ops = {.kind = "hook", .start = no_start, .free = src_free};

static void world_with_hook(struct world *w, const char *endpoints)
{
	world_new(w, endpoints);
	hook_src = (struct source){.ops = &hook_ops};
	w->a = agent_new(&w->o, w->loop, &fake.dp);
	agent_set_session(w->a, &fs->s);
	agent_add_source(w->a, &fake_src);
	agent_add_source(w->a, &hook_src);
}

static int claim(const char *netns, int fd, char *name)
{
	struct source_claim c = {.netns = netns, .netns_fd = fd};
	return source_claim(&hook_src, &c, name, 64);
}

TEST(a_claim_finds_the_endpoint_that_holds_the_namespace)
{
	struct world w;
	char name[64] = "";
	world_with_hook(&w, "ep1 ep2");
	ns_make("/run/netns/ep1");
	(void)agent_start(w.a, false);
	controller_sends(w.a, compile_for(OFFICE_A, 80, "ep1 ep2"), 1);
	/* ep1's namespace is open: a container joined to it waits for ep1's table. */
	int fd = hand_over("/run/netns/ep1");
	CHECK(claim(NULL, fd, name) == 0);
	CHECK_STR(name, "ep1");
	close(fd);
	/* ep2's appears at its path, not seen yet: the claim finds it there,
	 * and its namespace is adopted from the fd. */
	fd = hand_over("/run/netns/ep2");
	CHECK(claim("/run/netns/ep2", fd, name) == 0);
	CHECK_STR(name, "ep2");
	close(fd);
	struct source_waiter wt = {.endpoint = "ep2", .done = waited};
	waited_result = 99;
	source_enforce(&hook_src, &wt);
	CHECK(waited_result == 0);
	CHECK(at("adopt ep2") >= 0 && at("apply ep2 full") > at("adopt ep2"));
	/* A namespace no endpoint holds is the engine's business. */
	fd = hand_over("/run/netns/other");
	CHECK(claim(NULL, fd, name) == -ENOENT);
	close(fd);
	world_free(&w);
}

TEST(a_source_hands_over_a_namespace_as_an_fd_and_isolation_quarantines)
{
	struct world w;
	char why[256];
	world_with_hook(&w, "ep1");
	ns_make("/run/netns/ep1");
	(void)agent_start(w.a, false);
	controller_sends(w.a, compile_for(OFFICE_A, 80, "ep1"), 1);
	/* As the engine reports a container the hook handed over: its
	 * namespace opened from the fd, not from the path. */
	int fd = hand_over("/run/netns/netns-abc");
	struct source_endpoint se = {.name = "ctr-1", .netns = "/run/netns/netns-abc", .netns_fd = &fd};
	source_update(&fake_src, &se);
	close(fd);
	CHECK(at("adopt ctr-1") >= 0 && at("open ctr-1") > at("adopt ctr-1"));
	/* Not named by the bundle in time: isolated, the quarantine table. */
	CHECK(source_isolate(&hook_src, "nobody", why, sizeof(why)) == -ENOENT);
	CHECK(source_isolate(&hook_src, "ctr-1", why, sizeof(why)) == 0);
	CHECK(at("apply ctr-1 full") > at("adopt ctr-1"));
	json_t *st = status_json(&w);
	CHECK(json_is_true(json_object_get(status_endpoint(st, "ctr-1"), "quarantined")));
	json_decref(st);
	/* One whose table is in place already is left as it is. */
	size_t before = journal_len;
	CHECK(source_isolate(&hook_src, "ep1", why, sizeof(why)) == 0);
	CHECK(strstr(journal + before, "apply ep1") == NULL);
	/* Its own table at last. */
	controller_sends(w.a, compile_for(OFFICE_B, 80, "ctr-1 ep1"), 2);
	st = status_json(&w);
	CHECK(json_is_false(json_object_get(status_endpoint(st, "ctr-1"), "quarantined")));
	json_decref(st);
	world_free(&w);
}

/* ---- backoff.c ---- */

TEST(backoff_doubles_from_half_a_second_to_thirty)
{
	struct backoff b = {0};
	uint64_t t = 1000, want[] = {500, 1000, 2000, 4000, 8000, 16000, 30000, 30000};
	for (size_t i = 0; i < BH_ARRAY_SIZE(want); i++) {
		CHECK(backoff_fail(&b, BACKOFF_APPLY, t) == want[i]);
		CHECK(!backoff_due(&b, t + want[i] - 1));
		CHECK(backoff_due(&b, t + want[i]));
		t += want[i];
	}
	CHECK(b.streak == BH_ARRAY_SIZE(want));
	CHECK(backoff_reset(&b));
	CHECK(backoff_due(&b, 0) && b.streak == 0);
	CHECK(!backoff_reset(&b)); /* nothing to say twice */
}

TEST(backoff_for_tampering_is_at_once_first_and_ends_after_a_quiet_period)
{
	struct backoff b = {0};
	CHECK(backoff_fail(&b, BACKOFF_TAMPERING, 1000) == 0);
	backoff_repaired(&b, 1000);
	CHECK(backoff_fail(&b, BACKOFF_TAMPERING, 2000) == 500);
	backoff_repaired(&b, 2500);
	CHECK(backoff_fail(&b, BACKOFF_TAMPERING, 2600) == 1000);
	backoff_repaired(&b, 3600);
	CHECK(!backoff_quiet(&b, 3600 + BACKOFF_QUIET_MS - 1));
	CHECK(backoff_quiet(&b, 3600 + BACKOFF_QUIET_MS));
	/* Quiet long enough: the next change is put back at once. */
	CHECK(backoff_fail(&b, BACKOFF_TAMPERING, 3600 + BACKOFF_QUIET_MS) == 0);
	/* Another reason starts its own streak. */
	CHECK(backoff_fail(&b, BACKOFF_OPEN, 40000) == 500);
	CHECK(b.streak == 1);
	CHECK_STR(backoff_reason_name(b.reason), "open");
}

/* The endpoint's "conntrack" member of status.json: key's value, or -1. */
static long long ct_counter(struct world *w, const char *name, const char *key)
{
	json_t *st = status_json(w);
	json_t *c = json_object_get(status_endpoint(st, name), "conntrack");
	long long v =
	    json_is_integer(json_object_get(c, key)) ? json_integer_value(json_object_get(c, key)) : -1;
	json_decref(st);
	return v;
}

static bool ct_retrying(struct world *w, const char *name)
{
	json_t *st = status_json(w);
	bool v =
	    json_is_true(json_object_get(json_object_get(status_endpoint(st, name), "conntrack"), "retry"));
	json_decref(st);
	return v;
}

TEST(an_update_that_tightens_cuts_the_connections_it_no_longer_allows_and_only_those)
{
	struct world w;
	world_new(&w, "ep1");
	ns_make("/run/netns/ep1");
	ct_add("/run/netns/ep1", 1, "198.51.100.7", 40000, "198.18.0.10", 80); /* office B */
	ct_add("/run/netns/ep1", 2, "203.0.113.5", 40001, "198.18.0.10", 80);  /* office A */
	ct_add("/run/netns/ep1", 3, "198.18.0.10", 50000, "192.0.2.1", 443);   /* ep1's own, egress */
	world_start(&w);
	/* A namespace this run never enforced: what it holds is unknown,
	 * so everything is judged; all is allowed. */
	controller_sends(w.a, compile_for(OFFICE_B, 80, "ep1"), 1);
	CHECK(at("apply ep1 full") >= 0 && at("ct dump ep1 3") > at("apply ep1 full"));
	CHECK(count("ct delete") == 0);

	/* Office B leaves the group: a set delta that cuts B's connection,
	 * after the new rules are in, in the same update (before the ACK). */
	journal_reset();
	controller_sends(w.a, compile_for(OFFICE_A, 80, "ep1"), 2);
	CHECK(at("apply ep1 delta") >= 0);
	CHECK(at("ct dump ep1 3") > at("apply ep1 delta"));
	CHECK(at("ct delete ep1 1") > at("ct dump ep1 3"));
	CHECK(count("ct delete") == 1);
	CHECK(at("ack 2 ok") > at("ct delete ep1 1"));

	/* B comes back: only loosens, nothing is dumped. */
	journal_reset();
	controller_sends(w.a, compile_for(OFFICE_B, 80, "ep1"), 3);
	CHECK(at("apply ep1 delta") >= 0 && count("ct dump") == 0);

	/* Port 80 closes: a whole new table; A's connection goes, ep1's own
	 * (egress, which no policy restricts) stays. */
	journal_reset();
	controller_sends(w.a, compile_for(OFFICE_B, 81, "ep1"), 4);
	CHECK(at("ct dump ep1 2") >= 0);
	CHECK(at("ct delete ep1 2") >= 0 && count("ct delete") == 1);
	CHECK(ns_at("/run/netns/ep1")->n_ct == 1 && ns_at("/run/netns/ep1")->ct[0].id == 3);
	agent_tick(w.a);
	CHECK(ct_counter(&w, "ep1", "dumps") == 3);
	CHECK(ct_counter(&w, "ep1", "skipped") == 1);
	CHECK(ct_counter(&w, "ep1", "cut") == 2);
	CHECK(ct_counter(&w, "ep1", "entries") == 8);
	CHECK(ct_counter(&w, "ep1", "failures") == 0);
	world_free(&w);
}

TEST(what_only_an_audit_policy_would_cut_is_kept_and_reported)
{
	struct world w;
	world_new(&w, "ep1");
	ns_make("/run/netns/ep1");
	ct_add("/run/netns/ep1", 1, "198.51.100.7", 40000, "198.18.0.10", 80);
	world_start(&w);
	controller_sends(w.a, compile_for(OFFICE_B, 80, "ep1"), 1);
	journal_reset();
	/* The same narrowing, in audit mode: it would cut B's connection. */
	controller_sends(w.a, compile_mode(OFFICE_A, 80, "ep1", "audit"), 2);
	CHECK(at("ct dump ep1 1") >= 0 && count("ct delete") == 0);
	CHECK(at("packet ep1 audit ingress default-deny 198.51.100.7 port 80") > at("ct dump ep1 1"));
	CHECK(ns_at("/run/netns/ep1")->n_ct == 1);
	agent_tick(w.a);
	CHECK(ct_counter(&w, "ep1", "audit") == 1 && ct_counter(&w, "ep1", "cut") == 0);
	world_free(&w);
}

TEST(a_cut_that_fails_is_tried_again_at_the_next_check)
{
	struct world w;
	world_new(&w, "ep1");
	ns_make("/run/netns/ep1");
	ct_add("/run/netns/ep1", 1, "198.51.100.7", 40000, "198.18.0.10", 80);
	world_start(&w);
	controller_sends(w.a, compile_for(OFFICE_B, 80, "ep1"), 1);
	fake.fail_ct = true;
	controller_sends(w.a, compile_for(OFFICE_A, 80, "ep1"), 2);
	CHECK(ns_at("/run/netns/ep1")->n_ct == 1);
	CHECK(ct_counter(&w, "ep1", "failures") == 1 && ct_retrying(&w, "ep1"));
	agent_tick(w.a); /* fails again: counted, not logged again */
	CHECK(ct_counter(&w, "ep1", "failures") == 2);
	fake.fail_ct = false;
	journal_reset();
	agent_tick(w.a); /* the table holds the bundle: the cut goes again */
	CHECK(at("ct dump ep1 1") >= 0 && at("ct delete ep1 1") >= 0);
	CHECK(ns_at("/run/netns/ep1")->n_ct == 0 && !ct_retrying(&w, "ep1"));
	journal_reset();
	agent_tick(w.a);
	CHECK(count("ct dump") == 0); /* once done, done */
	world_free(&w);
}

TEST(a_table_put_back_after_tampering_judges_every_connection)
{
	struct world w;
	world_new(&w, "ep1");
	ns_make("/run/netns/ep1");
	world_start(&w);
	controller_sends(w.a, compile_for(OFFICE_A, 80, "ep1"), 1);
	/* Someone flushed the table: meanwhile anything could connect. */
	ct_add("/run/netns/ep1", 9, "198.51.100.7", 40000, "198.18.0.10", 22);
	journal_reset();
	tamper("ep1");
	CHECK(at("apply ep1 full") >= 0);
	CHECK(at("ct delete ep1 9") > at("apply ep1 full"));
	world_free(&w);
}

/* Someone committed in the namespace while an update that only loosens
 * went in (the dataplane read it back and put its table in again): under
 * their table anything could connect, so every connection is judged,
 * not skipped as a loosening would be. */
TEST(a_table_someone_raced_as_it_went_in_judges_every_connection)
{
	struct world w;
	world_new(&w, "ep1");
	ns_make("/run/netns/ep1");
	world_start(&w);
	controller_sends(w.a, compile_for(OFFICE_A, 80, "ep1"), 1);
	ct_add("/run/netns/ep1", 9, "198.51.100.7", 40000, "198.18.0.10", 22);
	fake.raced = "ep1";
	journal_reset();
	controller_sends(w.a, compile_for(OFFICE_B, 80, "ep1"), 2); /* only loosens */
	fake.raced = NULL;
	CHECK(at("raced") > at("apply ep1"));
	CHECK(at("ct delete ep1 9") > at("raced"));
	world_free(&w);
}

TEST(the_quarantine_table_cuts_nothing_and_its_successor_judges_every_connection)
{
	struct world w;
	world_new(&w, "ep1");
	ns_make("/run/netns/ep1");
	world_start(&w);
	controller_sends(w.a, compile_for(OFFICE_A, 80, "ep1"), 1);
	/* Seen starting: opened connections before any table came. */
	ns_make("/run/netns/ep5");
	ct_add("/run/netns/ep5", 1, "203.0.113.5", 40000, "198.18.0.11", 80);  /* office A: allowed */
	ct_add("/run/netns/ep5", 2, "198.51.100.7", 40001, "198.18.0.11", 80); /* office B: not */
	journal_reset();
	struct source_endpoint se = {.name = "ep5", .netns = "/run/netns/ep5", .quarantine = true};
	source_update(&fake_src, &se);
	CHECK(at("apply ep5 full") >= 0 && quarantined(&w, "ep5"));
	CHECK(count("ct dump") == 0 && ns_at("/run/netns/ep5")->n_ct == 2);
	/* The real table: every connection judged by it (the quarantine
	 * table said nothing about them), only B's cut. */
	journal_reset();
	controller_sends(w.a, compile_for(OFFICE_A, 80, "ep1 ep5"), 2);
	CHECK(!quarantined(&w, "ep5"));
	CHECK(at("ct dump ep5 2") > at("apply ep5 full"));
	CHECK(at("ct delete ep5 2") > 0 && count("ct delete") == 1);
	CHECK(ns_at("/run/netns/ep5")->n_ct == 1 && ns_at("/run/netns/ep5")->ct[0].id == 1);
	world_free(&w);
}

int main(void)
{
	log_setup("test-agent-core", false);
	return test_main();
}
