/* Denied-flow aggregation and the batch spool (see flows.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bulkhead/log.h"
#include "bulkhead/policy.h"
#include "flows.h"
#include "state.h"

/* ---- the window: a hash table of aggregates ---- */

struct flow_key {
	uint8_t family, proto, dir, verdict;
	uint8_t src[16], dst[16];
	int32_t port;		       /* -1: none */
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

/* ---- the spool ---- */

struct batch {
	json_t *body;
	uint64_t epoch, seq, bytes, flows;
	bool in_flight;
	uint64_t sent_ms;
	struct batch *next;
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

	struct batch *head, *tail; /* oldest first */
	uint64_t mem_bytes, mem_batches;
	/* Every batch in memory is also a line of the journal, so that a
	 * crash (kill -9) loses none; acknowledged lines are garbage until the
	 * journal empties or is rewritten. */
	int journal_fd; /* -1: none (no state dir, or it failed) */
	uint64_t journal_garbage;
	uint64_t journal_rewrite_at; /* garbage that makes the next rewrite due */
	bool journal_failing;	     /* logged: an append failed */
	uint64_t file_bytes, file_batches; /* newer than every batch in memory */

	struct {
		uint64_t events, batches, acked, resent, spooled_to_file, spool_dropped;
		uint64_t quarantined, quarantined_packets; /* rejected by the controller, or unreadable */
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

static void spool_refill(struct flows *f);
static void quarantine(struct flows *f, json_t *body, const char *line, const char *reason);

/* The batches from b to the end of the list, a line each, as the spool
 * and the journal hold them, then extra (extra_len bytes, may be 0).
 * malloc()ed, its length in *len. */
static char *batch_lines(const struct batch *b, const char *extra, size_t extra_len, size_t *len)
{
	char *buf = NULL;
	FILE *out = open_memstream(&buf, len);
	if (!out)
		abort();
	for (; b; b = b->next) {
		char *line = json_dumps(b->body, JSON_COMPACT);
		if (line)
			fprintf(out, "%s\n", line);
		free(line);
	}
	if (extra_len)
		fwrite(extra, 1, extra_len, out);
	if (fclose(out) != 0)
		abort();
	return buf;
}

/* ---- the journal ---- */

static void journal_path(const struct flows *f, char *buf, size_t size)
{
	snprintf(buf, size, "%s/%s", f->state_dir, FLOWS_JOURNAL_FILE);
}

static void journal_open(struct flows *f)
{
	char path[4096];
	journal_path(f, path, sizeof(path));
	f->journal_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (f->journal_fd < 0)
		log_error("opening %s: %m; a crash would lose the flow batches in memory", path);
}

/* Appends lines (each ending in '\n'); false when they are not all there. */
static bool journal_append(struct flows *f, const char *text, size_t len)
{
	if (f->journal_fd < 0)
		return false;
	off_t before = lseek(f->journal_fd, 0, SEEK_END);
	for (size_t off = 0; off < len;) {
		ssize_t n = write(f->journal_fd, text + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (!f->journal_failing) /* once, not once per batch */
				log_error("appending to %s/%s: %m; a crash would lose the batches in memory",
					  f->state_dir, FLOWS_JOURNAL_FILE);
			f->journal_failing = true;
			if (before >= 0 && ftruncate(f->journal_fd, before) < 0) /* no half line */
				log_error("truncating %s/%s: %m", f->state_dir, FLOWS_JOURNAL_FILE);
			return false;
		}
		off += (size_t)n;
	}
	if (f->journal_failing)
		log_info("%s/%s is written again", f->state_dir, FLOWS_JOURNAL_FILE);
	f->journal_failing = false;
	return true;
}

/* After an acknowledgement: empty when memory is, rewritten when mostly
 * garbage. */
static void journal_compact(struct flows *f)
{
	if (f->journal_fd < 0)
		return;
	if (!f->mem_batches) {
		if (ftruncate(f->journal_fd, 0) < 0)
			log_error("emptying %s/%s: %m", f->state_dir, FLOWS_JOURNAL_FILE);
		f->journal_garbage = f->journal_rewrite_at = 0;
		return;
	}
	if (f->journal_garbage < FLOWS_JOURNAL_SLACK || f->journal_garbage < f->mem_bytes ||
	    f->journal_garbage < f->journal_rewrite_at)
		return;
	size_t len;
	char *buf = batch_lines(f->head, NULL, 0, &len);
	/* A new file by rename: the old one stays whole until then. */
	int r = state_write(f->state_dir, FLOWS_JOURNAL_FILE, buf, len);
	free(buf);
	if (r < 0) {
		/* Not again at every acknowledgement: once it doubled. */
		log_error_errno(r, "rewriting %s/%s: %m", f->state_dir, FLOWS_JOURNAL_FILE);
		f->journal_rewrite_at = f->journal_garbage * 2;
		return;
	}
	close(f->journal_fd);
	journal_open(f);
	f->journal_garbage = f->journal_rewrite_at = 0;
}

/* At start: what the journal of a run that crashed holds is older than
 * everything in the spool file, so it goes in front of it. false when that
 * failed: the journal must then stay as it is for the next start. */
static bool journal_recover(struct flows *f)
{
	char *journal = NULL, *spool = NULL;
	size_t jlen = 0, slen = 0;
	int r = state_read(f->state_dir, FLOWS_JOURNAL_FILE, FLOWS_SPOOL_FILE_MAX * 2u, &journal, &jlen);
	if (r == -ENOENT || (r == 0 && jlen == 0)) {
		free(journal);
		return true;
	}
	if (r < 0) {
		log_error_errno(r, "reading %s/%s: %m", f->state_dir, FLOWS_JOURNAL_FILE);
		return false;
	}
	while (jlen && journal[jlen - 1] != '\n') /* a line cut short by the crash */
		jlen--;
	r = state_read(f->state_dir, FLOWS_SPOOL_FILE, FLOWS_SPOOL_FILE_MAX * 2u, &spool, &slen);
	if (r < 0 && r != -ENOENT) {
		log_error_errno(r, "reading %s/%s: %m", f->state_dir, FLOWS_SPOOL_FILE);
		free(journal);
		return false;
	}
	char *both = xmalloc(jlen + slen + 1);
	memcpy(both, journal, jlen);
	if (slen)
		memcpy(both + jlen, spool, slen);
	r = state_write(f->state_dir, FLOWS_SPOOL_FILE, both, jlen + slen);
	bool ok = r == 0;
	if (r < 0) {
		log_error_errno(r, "writing %s/%s: %m", f->state_dir, FLOWS_SPOOL_FILE);
	} else {
		size_t n = 0;
		for (size_t i = 0; i < jlen; i++)
			n += journal[i] == '\n';
		log_info("flow journal: %zu batch(es) of a run that did not stop cleanly go first", n);
		char path[4096];
		journal_path(f, path, sizeof(path));
		if (unlink(path) < 0)
			log_error("removing %s: %m", path);
	}
	free(both);
	free(spool);
	free(journal);
	return ok;
}

struct flows *flows_new(const char *state_dir, uint64_t epoch)
{
	struct flows *f = xcalloc(1, sizeof(*f));
	f->state_dir = state_dir ? xstrdup(state_dir) : NULL;
	f->epoch = epoch;
	f->next_seq = 1;
	f->n_buckets = 4096;
	f->buckets = xcalloc(f->n_buckets, sizeof(*f->buckets));
	f->journal_fd = -1;
	/* A journal that could not be recovered is left for the next start,
	 * untouched: this run keeps its batches in memory only. */
	if (state_dir && journal_recover(f))
		journal_open(f);
	else if (state_dir)
		log_error("%s/%s kept for the next start; until then a crash would lose the batches in memory",
			  state_dir, FLOWS_JOURNAL_FILE);
	/* What an earlier run left unacknowledged goes first: count the
	 * file's batches, then take what fits into memory. */
	char *text = NULL;
	size_t len = 0;
	int r = state_dir ? state_read(state_dir, FLOWS_SPOOL_FILE, FLOWS_SPOOL_FILE_MAX * 2u, &text, &len) : -ENOENT;
	if (r < 0 && r != -ENOENT)
		log_error_errno(r, "reading %s/%s: %m; its batches are lost", state_dir, FLOWS_SPOOL_FILE);
	for (size_t i = 0; text && i < len; i++)
		f->file_batches += text[i] == '\n';
	f->file_bytes = len;
	free(text);
	if (f->file_batches) {
		log_info("flow spool: %llu unacknowledged batch(es) from an earlier run",
			 (unsigned long long)f->file_batches);
		spool_refill(f);
	}
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

/* Rewrites the spool file with the batches in memory followed by those
 * already in the file; empties it when there are none. */
static void spool_save(struct flows *f)
{
	if (!f->state_dir)
		return;
	char *old = NULL;
	size_t old_len = 0;
	if (f->file_batches && state_read(f->state_dir, FLOWS_SPOOL_FILE, FLOWS_SPOOL_FILE_MAX * 2u, &old, &old_len) < 0)
		old_len = 0;
	size_t len;
	char *buf = batch_lines(f->head, old, old_len, &len);
	int r = state_write(f->state_dir, FLOWS_SPOOL_FILE, buf, len);
	if (r < 0)
		log_error_errno(r, "writing %s/%s: %m", f->state_dir, FLOWS_SPOOL_FILE);
	else if (f->journal_fd >= 0 && ftruncate(f->journal_fd, 0) < 0) /* its batches are in the file now */
		log_error("emptying %s/%s: %m", f->state_dir, FLOWS_JOURNAL_FILE);
	free(buf);
	free(old);
}

void flows_free(struct flows *f)
{
	if (!f)
		return;
	spool_save(f);
	window_clear(f);
	free(f->buckets);
	if (f->journal_fd >= 0)
		close(f->journal_fd);
	while (f->head) {
		struct batch *b = f->head;
		f->head = b->next;
		json_decref(b->body);
		free(b);
	}
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
	log_warn("endpoint %s: the kernel could not deliver %llu logged packet(s)%s", endpoint,
		 (unsigned long long)gap, enobufs ? " (receive buffer overrun)" : "");
	if (!f->window_start)
		f->window_start = 1; /* a window with only losses still makes a batch */
}

void flows_hit(struct flows *f, const char *endpoint, enum direction dir, const char *rule, const char *policy,
	       const char *verdict, uint64_t packets, uint64_t bytes, uint64_t now_ms)
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

static json_t *flow_json(const struct flow *fl)
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
	json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s?,s:s,s:I,s:I,s:I}", "endpoint", fl->endpoint, "dir",
			      direction_name(fl->k.dir), "src", src, "dst", dst, "proto", pname, "verdict",
			      verdict_report_name(fl->k.verdict == VERDICT_AUDIT ? VERDICT_AUDIT : VERDICT_DROP), "policy", fl->policy,
			      "rule", fl->rule, "count", (json_int_t)fl->count, "first", (json_int_t)fl->first,
			      "last", (json_int_t)fl->last);
	json_object_set_new(o, "port", fl->k.port >= 0 ? json_integer(fl->k.port) : json_null());
	json_object_set_new(o, "icmp_type", fl->k.icmp_type >= 0 ? json_integer(fl->k.icmp_type) : json_null());
	json_object_set_new(o, "icmp_code", fl->k.icmp_code >= 0 ? json_integer(fl->k.icmp_code) : json_null());
	return o;
}

/* Appends one batch to the spool: memory while there is room, else the
 * file; a full file drops it and counts what it held (n_packets: its flows'
 * packets and the losses it was reporting), to be reported later. */
static void spool_add(struct flows *f, json_t *body, uint64_t seq, uint64_t n_packets)
{
	char *line = json_dumps(body, JSON_COMPACT);
	if (!line)
		abort();
	size_t bytes = strlen(line) + 1;
	if (f->mem_bytes + bytes <= FLOWS_SPOOL_MEM_MAX && !f->file_batches) {
		line[bytes - 1] = '\n';
		(void)journal_append(f, line, bytes); /* logged; it still goes in memory */
		struct batch *b = xcalloc(1, sizeof(*b));
		b->body = body;
		b->epoch = f->epoch;
		b->seq = seq;
		b->bytes = bytes;
		b->flows = n_packets;
		if (f->tail)
			f->tail->next = b;
		else
			f->head = b;
		f->tail = b;
		f->mem_bytes += bytes;
		f->mem_batches++;
		free(line);
		return;
	}
	bool stored = false;
	if (f->state_dir && f->file_bytes + bytes <= FLOWS_SPOOL_FILE_MAX) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", f->state_dir, FLOWS_SPOOL_FILE);
		int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		line[bytes - 1] = '\n';
		off_t before = fd >= 0 ? lseek(fd, 0, SEEK_END) : -1;
		if (before >= 0 && write(fd, line, bytes) == (ssize_t)bytes) {
			stored = true;
			f->file_bytes += bytes;
			f->file_batches++;
			f->count.spooled_to_file++;
		} else {
			log_error("spooling a flow batch to %s: %m", path);
			/* No half line for the next batch to stick to. */
			if (before >= 0 && ftruncate(fd, before) < 0)
				log_error("truncating %s: %m", path);
		}
		if (fd >= 0)
			close(fd);
	}
	if (!stored) {
		f->spool_lost += n_packets;
		f->count.spool_dropped++;
		log_error("flow spool full: a batch of %llu packet(s) dropped (reported as lost)",
			  (unsigned long long)n_packets);
	}
	free(line);
	json_decref(body);
}

/* Moves batches from the file back into memory once there is room. */
static void spool_refill(struct flows *f)
{
	if (!f->file_batches || f->mem_bytes > FLOWS_SPOOL_MEM_MAX / 2)
		return;
	char *text = NULL;
	size_t len = 0;
	int r = state_read(f->state_dir, FLOWS_SPOOL_FILE, FLOWS_SPOOL_FILE_MAX * 2u, &text, &len);
	if (r < 0) {
		log_error_errno(r, "reading back %s/%s: %m", f->state_dir, FLOWS_SPOOL_FILE);
		return;
	}
	struct batch *old_tail = f->tail;
	uint64_t old_mem_bytes = f->mem_bytes, old_mem_batches = f->mem_batches;
	char *line = text, *end;
	for (; *line && f->mem_bytes < FLOWS_SPOOL_MEM_MAX; line = end) {
		end = strchr(line, '\n');
		if (!end)
			break;
		*end++ = '\0';
		json_t *body = json_loads(line, 0, NULL);
		json_t *ep = json_object_get(body, "epoch"), *seq = json_object_get(body, "seq");
		if (!json_is_integer(ep) || !json_is_integer(seq) || !json_is_array(json_object_get(body, "flows"))) {
			quarantine(f, body, line, "unreadable in " FLOWS_SPOOL_FILE);
			json_decref(body);
			continue;
		}
		struct batch *b = xcalloc(1, sizeof(*b));
		b->body = body;
		b->epoch = (uint64_t)json_integer_value(ep);
		b->seq = (uint64_t)json_integer_value(seq);
		b->bytes = (uint64_t)(end - line);
		if (f->tail)
			f->tail->next = b;
		else
			f->head = b;
		f->tail = b;
		f->mem_bytes += b->bytes;
		f->mem_batches++;
	}
	/* Into the journal too, before they leave the file. */
	bool journaled = true;
	if (f->journal_fd >= 0) {
		size_t blen;
		char *buf = batch_lines(old_tail ? old_tail->next : f->head, NULL, 0, &blen);
		journaled = journal_append(f, buf, blen);
		free(buf);
	}
	const char *rest = line;
	r = journaled ? state_write(f->state_dir, FLOWS_SPOOL_FILE, rest, strlen(rest)) : -EIO;
	if (r < 0) {
		/* The file still holds them: forget the copies, try again later. */
		log_error_errno(r, "rewriting %s/%s: %m", f->state_dir, FLOWS_SPOOL_FILE);
		if (journaled && f->journal_fd >= 0) /* the journal's copies are duplicates now */
			f->journal_garbage += f->mem_bytes - old_mem_bytes;
		struct batch *b = old_tail ? old_tail->next : f->head;
		while (b) {
			struct batch *next = b->next;
			json_decref(b->body);
			free(b);
			b = next;
		}
		if (old_tail)
			old_tail->next = NULL;
		else
			f->head = NULL;
		f->tail = old_tail;
		f->mem_bytes = old_mem_bytes;
		f->mem_batches = old_mem_batches;
		rest = NULL;
	}
	/* What the file holds now, counted from it rather than by arithmetic. */
	if (rest) {
		f->file_bytes = strlen(rest);
		f->file_batches = 0;
		for (const char *c = rest; *c; c++)
			f->file_batches += *c == '\n';
	}
	free(text);
}

void flows_tick(struct flows *f, uint64_t now_ms, unsigned window_ms, bool force)
{
	/* Full: no list may outgrow the schema (the spool's loss entry too). */
	bool full = f->n_flows >= FLOWS_WINDOW_MAX || f->n_hits >= FLOWS_WINDOW_MAX || f->n_lost + 1 >= FLOWS_WINDOW_MAX;
	bool due = f->window_start && (force || now_ms - f->window_start >= window_ms || full || f->window_start == 1);
	if (!due && !(f->spool_lost && (force || f->window_start == 0)))
		return;
	json_t *list = json_array(), *lost = json_array();
	uint64_t packets = 0;
	for (size_t i = 0; i < f->n_buckets; i++)
		for (struct flow *fl = f->buckets[i]; fl; fl = fl->next) {
			json_array_append_new(list, flow_json(fl));
			packets += fl->count;
		}
	/* Should this batch be dropped, what it reports is lost with it. */
	uint64_t carried = packets + f->spool_lost;
	for (struct lost *l = f->lost; l; l = l->next)
		carried += l->gap;
	for (struct lost *l = f->lost; l; l = l->next)
		json_array_append_new(lost, json_pack("{s:s,s:I,s:I,s:I}", "endpoint", l->endpoint, "enobufs",
						      (json_int_t)l->enobufs, "gap", (json_int_t)l->gap, "spool", (json_int_t)0));
	if (f->spool_lost) { /* what does not fit the schema's range goes with the next batch */
		uint64_t n = f->spool_lost < PROTO_FLOWS_COUNT_MAX ? f->spool_lost : PROTO_FLOWS_COUNT_MAX;
		json_array_append_new(lost, json_pack("{s:n,s:I,s:I,s:I}", "endpoint", "enobufs", (json_int_t)0, "gap",
						      (json_int_t)0, "spool", (json_int_t)n));
		f->spool_lost -= n;
	}
	json_t *hits = json_array();
	for (struct hit *h = f->hits; h; h = h->next)
		json_array_append_new(hits, json_pack("{s:s,s:s,s:s,s:s?,s:s,s:I,s:I}", "endpoint", h->endpoint,
						      "dir", direction_name(h->dir), "rule",
						      h->rule, "policy", h->policy, "verdict", h->verdict, "packets",
						      (json_int_t)h->packets, "bytes", (json_int_t)h->bytes));
	uint64_t start = f->window_start > 1 ? f->window_start : now_ms;
	uint64_t seq = f->next_seq++;
	json_t *body = json_pack("{s:I,s:I,s:I,s:I,s:o,s:o,s:o}", "epoch", (json_int_t)f->epoch, "seq",
				 (json_int_t)seq, "start", (json_int_t)start, "end", (json_int_t)now_ms, "flows", list,
				 "lost", lost, "hits", hits);
	window_clear(f);
	f->count.batches++;
	spool_add(f, body, seq, carried);
}

void flows_send(struct flows *f, uint64_t now_ms, flows_send_fn send, void *arg)
{
	spool_refill(f);
	unsigned in_flight = 0;
	for (struct batch *b = f->head; b; b = b->next)
		in_flight += b->in_flight && now_ms - b->sent_ms < FLOWS_RESEND_MS;
	for (struct batch *b = f->head; b && in_flight < FLOWS_IN_FLIGHT; b = b->next) {
		if (b->in_flight && now_ms - b->sent_ms < FLOWS_RESEND_MS)
			continue;
		if (b->in_flight)
			f->count.resent++;
		b->in_flight = true;
		b->sent_ms = now_ms;
		in_flight++;
		send(arg, json_incref(b->body));
	}
}

/* Unlinks batch (epoch, seq) from memory (its journal line is garbage
 * now); NULL when it is not there. The caller frees it, then compacts. */
static struct batch *batch_take(struct flows *f, uint64_t epoch, uint64_t seq)
{
	struct batch **pp = &f->head, *prev = NULL;
	for (; *pp; prev = *pp, pp = &(*pp)->next) {
		struct batch *b = *pp;
		if (b->epoch != epoch || b->seq != seq)
			continue;
		*pp = b->next;
		if (f->tail == b)
			f->tail = prev;
		f->mem_bytes -= b->bytes;
		f->mem_batches--;
		f->journal_garbage += b->bytes;
		return b;
	}
	return NULL;
}

void flows_acked(struct flows *f, uint64_t epoch, uint64_t seq)
{
	struct batch *b = batch_take(f, epoch, seq);
	if (!b)
		return;
	f->count.acked++;
	json_decref(b->body);
	free(b);
	journal_compact(f);
}

/* The packets a batch reports, counted and lost: what is lost with it. */
static uint64_t batch_packets(json_t *body)
{
	uint64_t n = 0;
	size_t i;
	json_t *o;
	json_array_foreach(json_object_get(body, "flows"), i, o)
	{
		json_int_t c = json_integer_value(json_object_get(o, "count"));
		n += c > 0 ? (uint64_t)c : 0;
	}
	json_array_foreach(json_object_get(body, "lost"), i, o)
	{
		json_int_t g = json_integer_value(json_object_get(o, "gap")),
			   s = json_integer_value(json_object_get(o, "spool"));
		n += (g > 0 ? (uint64_t)g : 0) + (s > 0 ? (uint64_t)s : 0);
	}
	return n;
}

/* Keeps a batch the controller will not take (body, or the raw line when it
 * is not JSON) in the quarantine file, as {"time", "reason", "batch"|"line"};
 * counts what it carried as lost. */
static void quarantine(struct flows *f, json_t *body, const char *line, const char *reason)
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
	json_t *entry = json_pack("{s:I,s:s,s:O?}", "time", (json_int_t)clock_wall_ms(), "reason", reason,
				  "batch", body);
	if (entry && !body)
		json_object_set_new(entry, "line", json_string(line)); /* NULL (not UTF-8): left out */
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
		log_error("%s rejected (%s): kept in %s; its %llu packet(s) are counted as lost", name, reason, path,
			  (unsigned long long)packets);
	else
		log_error("%s rejected (%s): not kept (%s is full or not writable); its %llu packet(s) are counted as "
			  "lost",
			  name, reason, path, (unsigned long long)packets);
	free(text);
}

void flows_rejected(struct flows *f, uint64_t epoch, uint64_t seq, const char *reason)
{
	struct batch *b = batch_take(f, epoch, seq);
	if (!b)
		return;
	quarantine(f, b->body, NULL, reason);
	json_decref(b->body);
	free(b);
	journal_compact(f);
}

void flows_resend_all(struct flows *f)
{
	for (struct batch *b = f->head; b; b = b->next)
		b->in_flight = false;
}

json_t *flows_status(const struct flows *f)
{
	return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "events", (json_int_t)f->count.events,
			 "batches", (json_int_t)f->count.batches, "acked", (json_int_t)f->count.acked, "resent",
			 (json_int_t)f->count.resent, "spooled_in_memory", (json_int_t)f->mem_batches,
			 "spooled_in_file", (json_int_t)f->file_batches, "spooled_to_file",
			 (json_int_t)f->count.spooled_to_file, "spool_dropped", (json_int_t)f->count.spool_dropped,
			 "quarantined", (json_int_t)f->count.quarantined, "quarantined_packets",
			 (json_int_t)f->count.quarantined_packets);
}
