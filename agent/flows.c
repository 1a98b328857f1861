/* Denied-flow aggregation, batches cut to size, and what the spool cannot
 * read or the controller rejects (see flows.h; the spool is spool.c). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bulkhead/log.h"
#include "bulkhead/policy.h"
#include "flows.h"
#include "spool.h"
#include "state.h"

/* ---- the window: a hash table of aggregates ---- */

struct flow_key {
	uint8_t family, proto, dir, verdict;
	uint8_t src[16], dst[16];
	int32_t port;		      /* -1: none */
	int16_t icmp_type, icmp_code; /* -1: none */
};

struct flow {
	struct flow_key k;
	char *endpoint, *policy, *rule;
	uint64_t count, first, last;
	struct flow *next; /* bucket chain */
};

struct lost {
	char *endpoint;
	uint64_t enobufs, gap;
	struct lost *next;
};

/* A rule's hit count growth in this window (counters.h). */
struct hit {
	char *endpoint, *rule, *policy;
	const char *verdict; /* "allow", "deny", "audit" */
	uint8_t dir;
	uint64_t packets, bytes;
	struct hit *next;
};

struct flows {
	char *state_dir;
	uint64_t epoch, next_seq;

	struct flow **buckets;
	size_t n_buckets, n_flows, n_hits, n_lost;
	uint64_t window_start; /* 0: nothing recorded yet */
	struct lost *lost;
	struct hit *hits;
	uint64_t spool_lost; /* flows (packets) dropped from a full spool, not yet reported */

	struct spool *spool;
	bool stopped;

	struct {
		uint64_t events, batches, acked, resent, spool_dropped;
		uint64_t quarantined, quarantined_packets; /* rejected by the controller, or unreadable */
		uint64_t packets[3];			   /* logged packets by verdict (vocab.h order) */
		uint64_t lost_enobufs, lost_gap, lost_spool;
	} count;
};

/* a + b, no more than max (the wire schema's range, proto.h). */
static uint64_t add_capped(uint64_t a, uint64_t b, uint64_t max)
{
	return a >= max || b >= max - a ? max : a + b;
}

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

static uint64_t flow_hash(const struct flow_key *k, const char *endpoint, const char *rule)
{
	uint64_t h = hash_bytes(0xcbf29ce484222325ull, k, sizeof(*k));
	h = hash_bytes(h, endpoint, strlen(endpoint));
	return hash_bytes(h, rule, strlen(rule));
}

static void key_from_event(const struct nflog_event *ev, struct flow_key *k)
{
	memset(k, 0, sizeof(*k)); /* padding too: the key is hashed and compared as bytes */
	k->family = ev->family;
	k->proto = ev->proto;
	k->dir = (uint8_t)ev->prefix.dir;
	k->verdict = (uint8_t)ev->prefix.verdict;
	memcpy(k->src, ev->src, sizeof(k->src));
	memcpy(k->dst, ev->dst, sizeof(k->dst));
	k->port = ev->has_port ? ev->port : -1;
	k->icmp_type = ev->has_icmp ? ev->icmp_type : -1;
	k->icmp_code = ev->has_icmp ? ev->icmp_code : -1;
}

static void quarantine(struct flows *f, json_t *body, const char *line, size_t line_len, const char *reason);

/* ---- batches: a window's entries cut to size ---- */

/* ---- JSON text, written directly (jansson's pack and dump of each entry
 * cost five times as much: 0.35 s for a full window) ---- */

struct out {
	char *p;
	size_t len, cap;
};

static void out_add(struct out *o, const char *s, size_t n)
{
	if (o->len + n + 1 > o->cap) {
		o->cap = (o->len + n + 1) * 2;
		o->p = xrealloc(o->p, o->cap);
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
	o->p[o->len] = '\0';
}

static void out_lit(struct out *o, const char *s)
{
	out_add(o, s, strlen(s));
}

static void out_u64(struct out *o, uint64_t v)
{
	char num[24];
	out_add(o, num, (size_t)snprintf(num, sizeof(num), "%" PRIu64, v));
}

/* s as a JSON string (NULL: null). Names are plain ASCII as a rule; other
 * text is escaped by jansson, and bytes that are not UTF-8 become '?'. */
static void out_str(struct out *o, const char *s)
{
	if (!s) {
		out_lit(o, "null");
		return;
	}
	const unsigned char *c = (const unsigned char *)s;
	while (*c >= 0x20 && *c < 0x7f && *c != '"' && *c != '\\')
		c++;
	if (!*c) {
		out_add(o, "\"", 1);
		out_add(o, s, (size_t)((const char *)c - s));
		out_add(o, "\"", 1);
		return;
	}
	json_t *j = json_string(s);
	if (!j) {
		char *copy = xstrdup(s);
		for (char *p = copy; *p; p++)
			if ((unsigned char)*p >= 0x80)
				*p = '?';
		j = json_string(copy);
		free(copy);
	}
	char *text = j ? json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
	json_decref(j);
	if (!text)
		abort();
	out_lit(o, text);
	free(text);
}

/* A member's key, after a comma unless it is the object's first. */
static void out_key(struct out *o, const char *key)
{
	bool first = o->len && o->p[o->len - 1] == '{';
	out_add(o, first ? "\"" : ",\"", first ? 1 : 2);
	out_lit(o, key);
	out_add(o, "\":", 2);
}

/* One list of a batch body: its entries as JSON text, one after another
 * in one buffer, and the packets each reports (what is lost with it: a
 * flow's count, a loss's gap and spool). */
struct entries {
	struct out text;
	size_t *off, *len;
	uint64_t *packets;
	size_t n, cap, start; /* start: of the entry being written */
};

enum { L_FLOWS, L_LOST, L_HITS, L_COUNT };
static const char *const list_names[L_COUNT] = {"flows", "lost", "hits"};
/* Losses first: the first batch of a window says them. */
static const int list_order[L_COUNT] = {L_LOST, L_FLOWS, L_HITS};

static void entry_begin(struct entries *e)
{
	e->start = e->text.len;
	out_add(&e->text, "{", 1);
}

static void entry_end(struct entries *e, uint64_t packets)
{
	out_add(&e->text, "}", 1);
	if (e->n == e->cap) {
		e->cap = e->cap ? e->cap * 2 : 64;
		e->off = xrealloc(e->off, e->cap * sizeof(*e->off));
		e->len = xrealloc(e->len, e->cap * sizeof(*e->len));
		e->packets = xrealloc(e->packets, e->cap * sizeof(*e->packets));
	}
	e->off[e->n] = e->start;
	e->len[e->n] = e->text.len - e->start;
	e->packets[e->n++] = packets;
}

/* An entry that is JSON already (takes o). */
static void entries_add(struct entries *e, json_t *o, uint64_t packets)
{
	char *text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!text || text[0] != '{')
		abort();
	entry_begin(e);
	out_lit(&e->text, text + 1);
	e->text.len--; /* its '}' again at the end */
	free(text);
	entry_end(e, packets);
}

static void entries_clear(struct entries *e)
{
	free(e->text.p);
	free(e->off);
	free(e->len);
	free(e->packets);
	memset(e, 0, sizeof(*e));
}

/* One batch's share of the lists: [from, to) of each. */
struct cut {
	size_t from[L_COUNT], to[L_COUNT];
	uint64_t packets;
};

#define BATCH_HEAD_MAX 192 /* {"epoch":N,"seq":N,"start":N,"end":N,"flows":[],"lost":[],"hits":[]} */
_Static_assert(2 * FLOWS_BATCH_MAX <= PROTO_FLOWS_MAX, "a batch keeps well within the wire's lists");

/* The next batch from pos on (advanced): at most FLOWS_BATCH_MAX entries
 * and FLOWS_BATCH_BYTES, one entry at least; false when none are left. */
static bool batch_cut(const struct entries *lists, size_t *pos, struct cut *c)
{
	size_t n = 0, bytes = BATCH_HEAD_MAX;
	bool full = false;
	c->packets = 0;
	for (int k = 0; k < L_COUNT; k++) {
		int l = list_order[k];
		const struct entries *e = &lists[l];
		c->from[l] = pos[l];
		while (!full && pos[l] < e->n) {
			if (n && (n >= FLOWS_BATCH_MAX || bytes + e->len[pos[l]] + 1 > FLOWS_BATCH_BYTES)) {
				full = true;
				break;
			}
			bytes += e->len[pos[l]] + 1;
			c->packets += e->packets[pos[l]++];
			n++;
		}
		c->to[l] = pos[l];
	}
	return n > 0;
}

/* The body of batch (epoch, seq) holding c of lists; malloc()ed, its
 * length in *len. */
static char *batch_text(uint64_t epoch, uint64_t seq, uint64_t start, uint64_t end,
			const struct entries *lists, const struct cut *c, size_t *len)
{
	size_t cap = BATCH_HEAD_MAX;
	for (int l = 0; l < L_COUNT; l++)
		for (size_t i = c->from[l]; i < c->to[l]; i++)
			cap += lists[l].len[i] + 1;
	char *buf = xmalloc(cap + 1);
	size_t n = (size_t)snprintf(
	    buf, cap, "{\"epoch\":%" PRIu64 ",\"seq\":%" PRIu64 ",\"start\":%" PRIu64 ",\"end\":%" PRIu64,
	    epoch, seq, start, end);
	for (int l = 0; l < L_COUNT; l++) {
		n += (size_t)snprintf(buf + n, cap - n, ",\"%s\":[", list_names[l]);
		for (size_t i = c->from[l]; i < c->to[l]; i++) {
			if (i > c->from[l])
				buf[n++] = ',';
			memcpy(buf + n, lists[l].text.p + lists[l].off[i], lists[l].len[i]);
			n += lists[l].len[i];
		}
		buf[n++] = ']';
	}
	buf[n++] = '}';
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* Into the spool; what cannot be kept is counted, its packets reported as
 * lost with a later batch. Takes text. */
static int keep(struct flows *f, uint64_t epoch, uint64_t seq, char *text, size_t len, uint64_t packets,
		unsigned flags)
{
	int r = spool_add(f->spool, epoch, seq, text, len, flags);
	if (r >= 0)
		return r;
	f->spool_lost += packets;
	f->count.lost_spool += packets;
	f->count.spool_dropped++;
	log_error("flow spool full: a batch of %llu packet(s) dropped (reported as lost)",
		  (unsigned long long)packets);
	return r;
}

/* The packets a batch reports, counted and lost: what is lost with it. */
static uint64_t entry_packets(json_t *o, bool lost)
{
	json_int_t a = json_integer_value(json_object_get(o, lost ? "gap" : "count")),
		   b = lost ? json_integer_value(json_object_get(o, "spool")) : 0;
	return (a > 0 ? (uint64_t)a : 0) + (b > 0 ? (uint64_t)b : 0);
}

static uint64_t batch_packets(json_t *body)
{
	uint64_t n = 0;
	size_t i;
	json_t *o;
	json_array_foreach (json_object_get(body, "flows"), i, o)
		n += entry_packets(o, false);
	json_array_foreach (json_object_get(body, "lost"), i, o)
		n += entry_packets(o, true);
	return n;
}

/* ---- what agents before the segments left: flows.journal, flows.spool ---- */

#define OLD_FILE_MAX (128u << 20) /* what those files could hold, with room */

/* One line of an old file: as it is when it is within a batch's bounds;
 * else cut into batches, the first under its own name, the others under
 * (epoch, seq + k * 2^40) (seq never gets near 2^40, and the names are the
 * same should the files be taken over again after a crash). false when a
 * batch of it did not reach the disk. */
static bool take_old_line(struct flows *f, char *line, size_t len, const char *from)
{
	json_t *body = json_loadb(line, len, 0, NULL);
	json_t *epoch = json_object_get(body, "epoch"), *seq = json_object_get(body, "seq");
	if (!json_is_integer(epoch) || !json_is_integer(seq) || json_integer_value(epoch) < 0 ||
	    json_integer_value(seq) < 0 || !json_is_array(json_object_get(body, "flows"))) {
		char reason[64];
		snprintf(reason, sizeof(reason), "unreadable in %s", from);
		quarantine(f, body, line, len, reason);
		json_decref(body);
		return true;
	}
	uint64_t e = (uint64_t)json_integer_value(epoch), s = (uint64_t)json_integer_value(seq);
	size_t n = json_array_size(json_object_get(body, "flows")) +
		   json_array_size(json_object_get(body, "lost")) +
		   json_array_size(json_object_get(body, "hits"));
	bool on_disk = true;
	if (n <= FLOWS_BATCH_MAX && len <= FLOWS_BATCH_BYTES) {
		char *text = xmalloc(len + 1);
		memcpy(text, line, len);
		text[len] = '\0';
		on_disk = keep(f, e, s, text, len, batch_packets(body), SPOOL_UNCAPPED) == 0;
		json_decref(body);
		return on_disk;
	}
	struct entries lists[L_COUNT] = {0};
	for (int l = 0; l < L_COUNT; l++) {
		size_t i;
		json_t *o;
		json_array_foreach (json_object_get(body, list_names[l]), i, o)
			entries_add(&lists[l], json_incref(o),
				    l == L_HITS ? 0 : entry_packets(o, l == L_LOST));
	}
	uint64_t start = (uint64_t)json_integer_value(json_object_get(body, "start")),
		 end = (uint64_t)json_integer_value(json_object_get(body, "end"));
	size_t pos[L_COUNT] = {0};
	struct cut c;
	for (uint64_t k = 0; batch_cut(lists, pos, &c); k++) {
		size_t tlen;
		char *text = batch_text(e, s + (k << 40), start, end, lists, &c, &tlen);
		on_disk &= keep(f, e, s + (k << 40), text, tlen, c.packets, SPOOL_UNCAPPED) == 0;
	}
	log_info("flow batch %" PRIu64 "/%" PRIu64 " of %s: %zu entries, sent as several batches", e, s, from,
		 n);
	for (int l = 0; l < L_COUNT; l++)
		entries_clear(&lists[l]);
	json_decref(body);
	return on_disk;
}

/* Takes the batches of the old files over into the spool, the journal's
 * first (they are older); the files go once every batch is on disk. */
static void take_old_files(struct flows *f)
{
	static const char *const names[] = {FLOWS_OLD_JOURNAL_FILE, FLOWS_OLD_SPOOL_FILE};
	bool found = false, all = true;
	size_t lines = 0;
	for (size_t k = 0; k < BH_ARRAY_SIZE(names); k++) {
		char *text = NULL;
		size_t len = 0;
		int r = state_read(f->state_dir, names[k], OLD_FILE_MAX, &text, &len);
		if (r == -ENOENT)
			continue;
		found = true;
		if (r < 0) {
			log_error_errno(r, "reading %s/%s: %m; kept for the next start", f->state_dir,
					names[k]);
			all = false;
			continue;
		}
		while (len && text[len - 1] != '\n') /* a line cut short by a crash */
			len--;
		for (char *line = text, *nl; line < text + len; line = nl + 1) {
			nl = memchr(line, '\n', (size_t)(text + len - line));
			if (nl > line) {
				all &= take_old_line(f, line, (size_t)(nl - line), names[k]);
				lines++;
			}
		}
		free(text);
	}
	if (!found)
		return;
	spool_flush(f->spool);
	if (!all) {
		log_error("%s/%s and %s kept for the next start: not all of their batches reached %s",
			  f->state_dir, FLOWS_OLD_JOURNAL_FILE, FLOWS_OLD_SPOOL_FILE, SPOOL_DIR);
		return;
	}
	for (size_t k = 0; k < BH_ARRAY_SIZE(names); k++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", f->state_dir, names[k]);
		if (unlink(path) < 0 && errno != ENOENT)
			log_error("removing %s: %m", path);
	}
	log_info("flow spool: %zu batch(es) of %s and %s taken over into %s", lines, FLOWS_OLD_JOURNAL_FILE,
		 FLOWS_OLD_SPOOL_FILE, SPOOL_DIR);
}

/* A record the spool cannot read back: kept aside, counted. */
static void spool_bad(void *arg, const char *text, size_t len, const char *reason)
{
	struct flows *f = arg;
	json_t *body = json_loadb(text, len, 0, NULL);
	quarantine(f, body, text, len, reason);
	json_decref(body);
}

struct flows *flows_new(const char *state_dir, uint64_t epoch)
{
	struct flows *f = xcalloc(1, sizeof(*f));
	f->state_dir = state_dir ? xstrdup(state_dir) : NULL;
	f->epoch = epoch;
	f->next_seq = 1;
	f->n_buckets = 4096;
	f->buckets = xcalloc(f->n_buckets, sizeof(*f->buckets));
	f->spool = spool_new(state_dir, spool_bad, f);
	if (state_dir)
		take_old_files(f);
	return f;
}

static void window_clear(struct flows *f)
{
	for (size_t i = 0; i < f->n_buckets; i++) {
		for (struct flow *fl = f->buckets[i], *next; fl; fl = next) {
			next = fl->next;
			free(fl->endpoint);
			free(fl->policy);
			free(fl->rule);
			free(fl);
		}
		f->buckets[i] = NULL;
	}
	f->n_flows = f->n_hits = f->n_lost = 0;
	while (f->lost) {
		struct lost *l = f->lost;
		f->lost = l->next;
		free(l->endpoint);
		free(l);
	}
	while (f->hits) {
		struct hit *h = f->hits;
		f->hits = h->next;
		free(h->endpoint);
		free(h->rule);
		free(h->policy);
		free(h);
	}
	f->window_start = 0;
}

void flows_stop(struct flows *f)
{
	spool_stop(f->spool);
	f->stopped = true;
}

void flows_free(struct flows *f)
{
	if (!f)
		return;
	if (!f->stopped)
		flows_stop(f);
	window_clear(f);
	free(f->buckets);
	spool_free(f->spool);
	free(f->state_dir);
	free(f);
}

void flows_record(struct flows *f, const char *endpoint, const struct nflog_event *ev, const char *policy,
		  const char *rule, uint64_t now_ms)
{
	struct flow_key k;
	key_from_event(ev, &k);
	size_t slot = flow_hash(&k, endpoint, rule) & (f->n_buckets - 1);
	f->count.events++;
	if (ev->prefix.verdict < 3)
		f->count.packets[ev->prefix.verdict]++;
	if (!f->window_start)
		f->window_start = now_ms;
	for (struct flow *fl = f->buckets[slot]; fl; fl = fl->next) {
		if (memcmp(&fl->k, &k, sizeof(k)) == 0 && strcmp(fl->endpoint, endpoint) == 0 &&
		    strcmp(fl->rule, rule) == 0) {
			fl->count = add_capped(fl->count, 1, PROTO_FLOWS_COUNT_MAX);
			fl->last = now_ms;
			return;
		}
	}
	struct flow *fl = xcalloc(1, sizeof(*fl));
	fl->k = k;
	fl->endpoint = xstrdup(endpoint);
	fl->policy = policy ? xstrdup(policy) : NULL;
	fl->rule = xstrdup(rule);
	fl->count = 1;
	fl->first = fl->last = now_ms;
	fl->next = f->buckets[slot];
	f->buckets[slot] = fl;
	if (++f->n_flows >= FLOWS_WINDOW_MAX) /* a batch never outgrows the schema */
		flows_tick(f, now_ms, 0, true);
}

void flows_lost(struct flows *f, const char *endpoint, uint64_t enobufs, uint64_t gap)
{
	if (!enobufs && !gap)
		return;
	struct lost *l;
	for (l = f->lost; l && strcmp(l->endpoint, endpoint) != 0; l = l->next)
		;
	if (!l) {
		l = xcalloc(1, sizeof(*l));
		l->endpoint = xstrdup(endpoint);
		l->next = f->lost;
		f->lost = l;
		f->n_lost++;
	}
	l->enobufs = add_capped(l->enobufs, enobufs, PROTO_FLOWS_COUNT_MAX);
	l->gap = add_capped(l->gap, gap, PROTO_FLOWS_COUNT_MAX);
	f->count.lost_enobufs += enobufs;
	f->count.lost_gap += gap;
	log_warn("endpoint %s: the kernel could not deliver %llu logged packet(s)%s", endpoint,
		 (unsigned long long)gap, enobufs ? " (receive buffer overrun)" : "");
	if (!f->window_start)
		f->window_start = 1; /* a window with only losses still makes a batch */
}

void flows_hit(struct flows *f, const char *endpoint, enum direction dir, const char *rule,
	       const char *policy, const char *verdict, uint64_t packets, uint64_t bytes, uint64_t now_ms)
{
	struct hit *h;
	for (h = f->hits; h; h = h->next)
		if (h->dir == dir && strcmp(h->endpoint, endpoint) == 0 && strcmp(h->rule, rule) == 0)
			break;
	if (!h) {
		h = xcalloc(1, sizeof(*h));
		h->endpoint = xstrdup(endpoint);
		h->rule = xstrdup(rule);
		h->policy = policy ? xstrdup(policy) : NULL;
		h->verdict = verdict;
		h->dir = (uint8_t)dir;
		h->next = f->hits;
		f->hits = h;
		f->n_hits++;
	}
	/* Saturating at the wire schema's ranges, which the controller checks. */
	h->packets = add_capped(h->packets, packets, PROTO_FLOWS_COUNT_MAX);
	h->bytes = add_capped(h->bytes, bytes, PROTO_FLOWS_BYTES_MAX);
	if (!f->window_start)
		f->window_start = now_ms;
	if (f->n_hits >= FLOWS_WINDOW_MAX)
		flows_tick(f, now_ms, 0, true);
}

static void flow_entry(struct entries *e, const struct flow *fl)
{
	char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN], proto[8];
	inet_ntop(fl->k.family, fl->k.src, src, sizeof(src));
	inet_ntop(fl->k.family, fl->k.dst, dst, sizeof(dst));
	const char *pname = proto_name(fl->k.proto);
	if (fl->k.proto == IPPROTO_UDPLITE)
		pname = "udplite";
	else if (fl->k.proto == IPPROTO_DCCP)
		pname = "dccp";
	if (!pname) {
		snprintf(proto, sizeof(proto), "%u", fl->k.proto);
		pname = proto;
	}
	struct out *o = &e->text;
	entry_begin(e);
	out_key(o, "endpoint");
	out_str(o, fl->endpoint);
	out_key(o, "dir");
	out_str(o, direction_name(fl->k.dir));
	out_key(o, "src");
	out_str(o, src);
	out_key(o, "dst");
	out_str(o, dst);
	out_key(o, "proto");
	out_str(o, pname);
	out_key(o, "port");
	if (fl->k.port >= 0)
		out_u64(o, (uint64_t)fl->k.port);
	else
		out_lit(o, "null");
	out_key(o, "icmp_type");
	if (fl->k.icmp_type >= 0)
		out_u64(o, (uint64_t)fl->k.icmp_type);
	else
		out_lit(o, "null");
	out_key(o, "icmp_code");
	if (fl->k.icmp_code >= 0)
		out_u64(o, (uint64_t)fl->k.icmp_code);
	else
		out_lit(o, "null");
	out_key(o, "verdict");
	out_str(o, verdict_report_name((enum verdict)fl->k.verdict));
	out_key(o, "policy");
	out_str(o, fl->policy);
	out_key(o, "rule");
	out_str(o, fl->rule);
	out_key(o, "count");
	out_u64(o, fl->count);
	out_key(o, "first");
	out_u64(o, fl->first);
	out_key(o, "last");
	out_u64(o, fl->last);
	entry_end(e, fl->count);
}

static void lost_entry(struct entries *e, const char *endpoint, uint64_t enobufs, uint64_t gap,
		       uint64_t spool)
{
	struct out *o = &e->text;
	entry_begin(e);
	out_key(o, "endpoint");
	out_str(o, endpoint);
	out_key(o, "enobufs");
	out_u64(o, enobufs);
	out_key(o, "gap");
	out_u64(o, gap);
	out_key(o, "spool");
	out_u64(o, spool);
	entry_end(e, gap + spool);
}

static void hit_entry(struct entries *e, const struct hit *h)
{
	struct out *o = &e->text;
	entry_begin(e);
	out_key(o, "endpoint");
	out_str(o, h->endpoint);
	out_key(o, "dir");
	out_str(o, direction_name(h->dir));
	out_key(o, "rule");
	out_str(o, h->rule);
	out_key(o, "policy");
	out_str(o, h->policy);
	out_key(o, "verdict");
	out_str(o, h->verdict);
	out_key(o, "packets");
	out_u64(o, h->packets);
	out_key(o, "bytes");
	out_u64(o, h->bytes);
	entry_end(e, 0);
}

void flows_tick(struct flows *f, uint64_t now_ms, unsigned window_ms, bool force)
{
	/* Full: no list outgrows what a window holds (the spool's loss entry too). */
	bool full = f->n_flows >= FLOWS_WINDOW_MAX || f->n_hits >= FLOWS_WINDOW_MAX ||
		    f->n_lost + 1 >= FLOWS_WINDOW_MAX;
	bool due = f->window_start &&
		   (force || now_ms - f->window_start >= window_ms || full || f->window_start == 1);
	if (!due && !(f->spool_lost && (force || f->window_start == 0)))
		return;
	struct entries lists[L_COUNT] = {0};
	for (size_t i = 0; i < f->n_buckets; i++)
		for (struct flow *fl = f->buckets[i]; fl; fl = fl->next)
			flow_entry(&lists[L_FLOWS], fl);
	for (struct lost *l = f->lost; l; l = l->next)
		lost_entry(&lists[L_LOST], l->endpoint, l->enobufs, l->gap, 0);
	if (f->spool_lost) { /* what does not fit the schema's range goes with the next batch */
		uint64_t n = f->spool_lost < PROTO_FLOWS_COUNT_MAX ? f->spool_lost : PROTO_FLOWS_COUNT_MAX;
		lost_entry(&lists[L_LOST], NULL, 0, 0, n);
		f->spool_lost -= n;
	}
	for (struct hit *h = f->hits; h; h = h->next)
		hit_entry(&lists[L_HITS], h);
	uint64_t start = f->window_start > 1 ? f->window_start : now_ms;
	window_clear(f);
	/* A window past a batch's bounds goes as several, each its own
	 * (epoch, seq); should one be dropped, what it reports is lost with it. */
	size_t pos[L_COUNT] = {0};
	struct cut c;
	while (batch_cut(lists, pos, &c)) {
		uint64_t seq = f->next_seq++;
		size_t len;
		char *text = batch_text(f->epoch, seq, start, now_ms, lists, &c, &len);
		f->count.batches++;
		(void)keep(f, f->epoch, seq, text, len, c.packets, 0);
	}
	for (int l = 0; l < L_COUNT; l++)
		entries_clear(&lists[l]);
}

/* A batch body as the spool holds it, decoded; NULL (quarantined, gone
 * from the spool) when it is not one. */
static json_t *batch_decode(struct flows *f, struct spool_batch *b)
{
	json_t *body = json_loadb(b->text, b->len, 0, NULL);
	if (json_is_object(body) && json_is_array(json_object_get(body, "flows")) &&
	    json_integer_value(json_object_get(body, "epoch")) == (json_int_t)b->epoch &&
	    json_integer_value(json_object_get(body, "seq")) == (json_int_t)b->seq)
		return body;
	quarantine(f, body, b->text, b->len, "unreadable in the spool");
	json_decref(body);
	spool_done(f->spool, b);
	return NULL;
}

void flows_send(struct flows *f, uint64_t now_ms, flows_send_fn send, void *arg)
{
	spool_refill(f->spool);
	unsigned in_flight = 0;
	for (struct spool_batch *b = spool_head(f->spool); b; b = b->next)
		in_flight += b->in_flight && now_ms - b->sent_ms < FLOWS_RESEND_MS;
	size_t decoded = 0;
	for (struct spool_batch *b = spool_head(f->spool), *next; b && in_flight < FLOWS_IN_FLIGHT;
	     b = next) {
		next = b->next;
		if (b->in_flight && now_ms - b->sent_ms < FLOWS_RESEND_MS)
			continue;
		if (decoded && decoded + b->len > FLOWS_SEND_BYTES) /* the rest at the next tick */
			break;
		decoded += b->len;
		bool again = b->in_flight;
		json_t *body = batch_decode(f, b); /* (b is gone when NULL) */
		if (!body)
			continue;
		if (again)
			f->count.resent++;
		b->in_flight = true;
		b->sent_ms = now_ms;
		in_flight++;
		send(arg, body);
	}
	spool_sync(f->spool);
}

void flows_acked(struct flows *f, uint64_t epoch, uint64_t seq)
{
	struct spool_batch *b = spool_find(f->spool, epoch, seq);
	if (!b)
		return;
	f->count.acked++;
	spool_done(f->spool, b);
}

/* Keeps a batch the controller will not take (body, or the raw line when it
 * is not JSON) in the quarantine file, as {"time", "reason", "batch"|"line"};
 * counts what it carried as lost. */
static void quarantine(struct flows *f, json_t *body, const char *line, size_t line_len, const char *reason)
{
	uint64_t packets = body ? batch_packets(body) : 0;
	f->count.quarantined++;
	f->count.quarantined_packets += packets;
	json_t *epoch = json_object_get(body, "epoch"), *seq = json_object_get(body, "seq");
	char name[64] = "a flow batch";
	if (json_is_integer(epoch) && json_is_integer(seq))
		snprintf(name, sizeof(name), "flow batch %lld/%lld", (long long)json_integer_value(epoch),
			 (long long)json_integer_value(seq));
	if (!f->state_dir) {
		log_error("%s rejected (%s): %llu packet(s) lost", name, reason, (unsigned long long)packets);
		return;
	}
	json_t *entry =
	    json_pack("{s:I,s:s,s:O?}", "time", (json_int_t)clock_wall_ms(), "reason", reason, "batch", body);
	if (entry && !body)
		json_object_set_new(entry, "line",
				    json_stringn(line, line_len)); /* NULL (not UTF-8): left out */
	char *json = entry ? json_dumps(entry, JSON_COMPACT) : NULL;
	json_decref(entry);
	if (!json)
		abort();
	size_t len = strlen(json) + 1;
	char *text = xmalloc(len + 1);
	memcpy(text, json, len - 1);
	text[len - 1] = '\n';
	text[len] = '\0';
	free(json);
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", f->state_dir, FLOWS_QUARANTINE_FILE);
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	struct stat st;
	bool kept = false;
	if (fd >= 0 && fstat(fd, &st) == 0 && (uint64_t)st.st_size + len <= FLOWS_QUARANTINE_MAX) {
		kept = write(fd, text, len) == (ssize_t)len;
		if (!kept && ftruncate(fd, st.st_size) < 0) /* no half line */
			log_error("truncating %s: %m", path);
	}
	if (fd < 0)
		log_error("opening %s: %m", path);
	if (fd >= 0)
		close(fd);
	if (kept)
		log_error("%s rejected (%s): kept in %s; its %llu packet(s) are counted as lost", name,
			  reason, path, (unsigned long long)packets);
	else
		log_error("%s rejected (%s): not kept (%s is full or not writable); its %llu packet(s) are "
			  "counted as "
			  "lost",
			  name, reason, path, (unsigned long long)packets);
	free(text);
}

void flows_rejected(struct flows *f, uint64_t epoch, uint64_t seq, const char *reason)
{
	struct spool_batch *b = spool_find(f->spool, epoch, seq);
	if (!b)
		return;
	json_t *body = json_loadb(b->text, b->len, 0, NULL);
	quarantine(f, body, b->text, b->len, reason);
	json_decref(body);
	spool_done(f->spool, b);
}

void flows_resend_all(struct flows *f)
{
	for (struct spool_batch *b = spool_head(f->spool); b; b = b->next)
		b->in_flight = false;
}

json_t *flows_status(const struct flows *f)
{
	struct spool_counts c;
	spool_counts(f->spool, &c);
	json_t *o = json_pack(
	    "{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "events", (json_int_t)f->count.events,
	    "batches", (json_int_t)f->count.batches, "acked", (json_int_t)f->count.acked, "resent",
	    (json_int_t)f->count.resent, "spooled_in_memory", (json_int_t)c.mem_batches, "spooled_in_file",
	    (json_int_t)c.disk_batches, "spooled_to_file", (json_int_t)c.to_disk, "spool_dropped",
	    (json_int_t)f->count.spool_dropped, "quarantined", (json_int_t)f->count.quarantined,
	    "quarantined_packets", (json_int_t)f->count.quarantined_packets, "spool_bytes",
	    (json_int_t)c.disk_bytes, "spool_segments", (json_int_t)c.segments);
	json_object_update_new(o, json_pack("{s:I,s:I,s:I,s:{s:I,s:I,s:I}}", "packets_allowed",
					    (json_int_t)f->count.packets[VERDICT_ACCEPT], "packets_denied",
					    (json_int_t)f->count.packets[VERDICT_DROP], "packets_audited",
					    (json_int_t)f->count.packets[VERDICT_AUDIT], "lost", "enobufs",
					    (json_int_t)f->count.lost_enobufs, "gap",
					    (json_int_t)f->count.lost_gap, "spool",
					    (json_int_t)f->count.lost_spool));
	return o;
}
