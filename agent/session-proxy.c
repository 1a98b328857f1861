/* The enforcer's side of the session child (session-privsep.h): the
 * session interface as messages to a child process, what the child sends
 * back checked as outside input, and the child's restarts. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bulkhead/escape.h"
#include "bulkhead/log.h"
#include "bulkhead/privs.h"
#include "bulkhead/utf8.h"
#include "bulkhead/vocab.h"
#include "bundle-file.h"
#include "chan.h"
#include "flows.h"
#include "session-privsep.h"
#include "spawner.h"
#include "spool.h"

#define FLOWS_PAYLOAD_MAX (CHAN_RECORD_MAX - CHAN_HEADER_LEN) /* one PS_FLOWS message */
/* Bytes waiting for the child past which logged packets are dropped
 * (counted, and reported as lost once the child takes them again). */
#define QUEUED_FLOWS_MAX (16u << 20)
/* Bytes waiting past which the child is taken for hung. */
#define QUEUED_MAX   ((size_t)4 * BUNDLE_FILE_MAX_BYTES)
#define HELD_MAX     (1u << 20) /* bytes of hit counts kept while no child runs */
#define STR16_MAX    1024	/* a name in a flow item (the wire's are far shorter) */
#define TUPLE_SLOTS  256
#define CHILD_SNDBUF (4 << 20)
/* From the child, in one second: more is a flood (a status is sent at
 * most ten times a second, a bundle when the controller sends one). */
#define FLOOD_MESSAGES 2000
#define FLOOD_BYTES    ((uint64_t)PS_BUNDLE_MAX * 4)
#define WATCH_MS       1000
#define STUCK_MS       10000 /* output waiting and none taken this long: the child hangs */
#define RESTART_MIN_MS 200
#define RESTART_MAX_MS 30000
#define STABLE_MS      60000 /* a child that ran this long starts the backoff afresh */
#define STOP_MS	       10000 /* the child's last window and spool at a stop */
#define COMPLAIN_MS    1000  /* one log line a second about what the child sent */

struct tuple_slot {
	const char *endpoint, *policy, *rule; /* the caller's pointers: a hint, checked by content */
	uint32_t eoff, poff, roff;	      /* the strings in the message (poff 0: NULL) */
	uint32_t gen;
	uint16_t id;
};

/* A PS_FLOWS message being written. */
struct flowbuf {
	struct chan_buf b;
	uint32_t gen; /* slots of another generation are empty */
	uint16_t n_tuples;
	struct tuple_slot slots[TUPLE_SLOTS];
};

struct held {
	uint8_t *p;
	size_t len;
	struct held *next;
};

struct lost {
	char *endpoint;
	uint64_t packets;
	struct lost *next;
};

struct proxy {
	struct session s;
	struct loop *loop;
	const struct session_options *o;
	struct session_children kids;
	const struct session_peer *peer;
	void *core;
	bool started, stopping;
	/* The child. */
	struct chan *chan; /* NULL: none runs */
	pid_t pid;
	uint64_t since_ms, delay_ms;
	const char *doomed; /* why the child goes, at the end of this round */
	struct loop_source *watch, *restart;
	uint64_t win_messages, win_bytes; /* from the child, this second */
	uint64_t out_seen, out_progress_ms;
	bool stopped; /* PS_STOPPED came */
	/* What the core said, for every new child. */
	const struct bundle *in_force; /* borrowed until the next call */
	int64_t revision;
	bool certain;
	char *endpoints_text;
	uint8_t *last_ack;
	size_t last_ack_len;
	/* What the child holds: its bundle in force, and the last it passed. */
	char child_in_force[BUNDLE_HASH_HEX + 1], child_sent[BUNDLE_HASH_HEX + 1];
	bool told;
	int64_t told_revision;
	bool told_certain;
	char told_hash[BUNDLE_HASH_HEX + 1];
	/* Flow data to the child. */
	struct flowbuf fb;
	bool flush_deferred;
	struct held *held, **held_tail;
	size_t held_bytes;
	struct lost *lost;
	/* The child's last word. */
	json_t *controller, *flows;
	/* Counters. */
	struct chan_stats gone; /* of the children before this one */
	uint64_t children, deaths, floods, refused, packets_dropped, hits_dropped;
	uint64_t deltas, resends; /* PS_DELTAs taken; the wholes asked for instead */
	uint64_t complain_ms, complaints_muted, dropped_logged;
};

static struct proxy *proxy_of(struct session *s)
{
	return (struct proxy *)s;
}

static void complain(struct proxy *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void complain(struct proxy *p, const char *fmt, ...)
{
	uint64_t now = (uint64_t)clock_mono_ms();
	if (p->complain_ms && now - p->complain_ms < COMPLAIN_MS) {
		p->complaints_muted++;
		return;
	}
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (p->complaints_muted)
		log_error("%s (and %" PRIu64 " more since the last such line)", buf, p->complaints_muted);
	else
		log_error("%s", buf);
	p->complain_ms = now;
	p->complaints_muted = 0;
}

/* ---- the child's life ---- */

static void reap(void *data, uint32_t events);

/* The child goes (why: for the log), once the current round is over:
 * its channel may be in the middle of a call. */
static void child_lost(struct proxy *p, const char *why)
{
	if (p->doomed || !p->chan)
		return;
	p->doomed = why;
	loop_defer(p->loop, reap, p);
}

static void add_stats(struct chan_stats *to, const struct chan_stats *s)
{
	to->messages_in += s->messages_in;
	to->bytes_in += s->bytes_in;
	to->messages_out += s->messages_out;
	to->bytes_out += s->bytes_out;
	to->malformed += s->malformed;
	to->oversized += s->oversized;
	to->truncated += s->truncated;
}

static void drop_child(struct proxy *p)
{
	if (!p->chan)
		return;
	add_stats(&p->gone, chan_stats(p->chan));
	chan_free(p->chan);
	p->chan = NULL;
	if (!p->stopping || !p->stopped) /* one told to stop that said so exits by itself */
		p->kids.kill(p->kids.arg);
	p->child_in_force[0] = p->child_sent[0] = '\0';
	p->told = false;
}

static int start_child(struct proxy *p);

static void on_restart(void *data, uint32_t events)
{
	struct proxy *p = data;
	loop_remove(p->loop, p->restart);
	p->restart = NULL;
	if (!p->chan && !p->stopping)
		(void)start_child(p);
}

static void schedule_restart(struct proxy *p)
{
	uint64_t now = (uint64_t)clock_mono_ms();
	if (!p->delay_ms || (p->since_ms && now - p->since_ms >= STABLE_MS))
		p->delay_ms = RESTART_MIN_MS;
	else
		p->delay_ms = p->delay_ms >= RESTART_MAX_MS / 2 ? RESTART_MAX_MS : p->delay_ms * 2;
	loop_remove(p->loop, p->restart);
	if (!(p->restart = loop_add_timer(p->loop, (unsigned)p->delay_ms, on_restart, p)))
		log_error("timer: %m; the session child is not started again");
}

static void reap(void *data, uint32_t events)
{
	struct proxy *p = data;
	const char *why = p->doomed;
	if (!why)
		return;
	p->doomed = NULL;
	drop_child(p);
	p->deaths++;
	if (p->stopping)
		return;
	schedule_restart(p);
	log_error("the session child (pid %d) %s; another in %" PRIu64 " ms (the bundle in force stays in "
		  "force)",
		  (int)p->pid, why, p->delay_ms);
	p->peer->changed(p->core);
}

/* ---- what the child sends ---- */

/* The child encodes what it decoded: the same bytes again, or it made
 * them up (what the enforcer takes has one spelling only). */
static bool canonical(const struct bundle *b, const uint8_t *text, size_t n)
{
	char *again = bundle_encode(b, false);
	if (!again)
		abort(); /* out of memory */
	bool same = strlen(again) == n && memcmp(again, text, n) == 0;
	free(again);
	return same;
}

/* A bundle the child passed (b NULL: it does not check, why in error):
 * for this node, then taken; otherwise refused and the core told. */
static void take_checked(struct proxy *p, struct bundle *b, int64_t revision, char *error, size_t size)
{
	if (b && strcmp(b->node, p->o->node) != 0) {
		snprintf(error, size, "the session passed a bundle for node \"%s\", not \"%s\"", b->node,
			 p->o->node);
		bundle_free(b);
		b = NULL;
	}
	if (!b) {
		p->refused++;
		complain(p, "%s; refused (the bundle in force stays)", ESCAPED(error));
		p->peer->bundles.rejected(p->core, BUNDLE_FROM_CONTROLLER, revision, error);
		return;
	}
	/* The child keeps it: named by its hash from now on. Before take(),
	 * which tells us the bundle in force at once (and may free b). */
	memcpy(p->child_sent, b->hash, sizeof(p->child_sent));
	p->peer->bundles.take(p->core, BUNDLE_FROM_CONTROLLER, b, revision);
}

static int on_bundle(struct proxy *p, struct chan_in *in)
{
	int64_t revision = (int64_t)chan_get_u64(in);
	size_t n;
	const uint8_t *text = chan_get_rest(in, &n);
	if (in->bad || revision < 0)
		return -EBADMSG;
	if (p->stopping)
		return 0;
	/* Decoded and checked as if it came from the controller itself. */
	struct diag d;
	diag_init(&d, "bundle");
	struct bundle *b = bundle_decode((const char *)text, n, &d);
	char error[512] = "";
	if (!b) {
		snprintf(error, sizeof(error), "the session passed a bundle that does not decode: %s%s%s",
			 d.n ? d.v[0].path : "", d.n ? ": " : "", d.n ? d.v[0].message : "");
	} else if (strcmp(b->node, p->o->node) == 0 && !canonical(b, text, n)) {
		snprintf(error, sizeof(error), "the session passed a bundle that is not in canonical form");
		bundle_free(b);
		b = NULL;
	}
	diag_release(&d);
	take_checked(p, b, revision, error, sizeof(error));
	return 0;
}

/* A DELTA's sets, applied here to the bundle in force, as the child did to
 * the same bundle; the result must have the hash the child names. */
static int on_delta(struct proxy *p, struct chan_in *in)
{
	int64_t revision = (int64_t)chan_get_u64(in);
	const char *base = chan_get_str(in, BUNDLE_HASH_HEX, NULL);
	const char *hash = chan_get_str(in, BUNDLE_HASH_HEX, NULL);
	size_t n;
	const uint8_t *text = chan_get_rest(in, &n);
	if (in->bad || revision < 0 || strlen(hash) != BUNDLE_HASH_HEX)
		return -EBADMSG;
	if (p->stopping)
		return 0;
	if (!p->in_force || strcmp(base, p->in_force->hash) != 0) {
		/* Made from another bundle than the one held: the whole, please. */
		struct chan_buf m = {0};
		chan_put_u64(&m, (uint64_t)revision);
		chan_send_take(p->chan, PS_RESEND, m.p, m.len);
		p->resends++;
		return 0;
	}
	json_error_t e;
	json_t *sets = json_loadb((const char *)text, n, JSON_REJECT_DUPLICATES, &e);
	struct diag d;
	diag_init(&d, "delta");
	struct bundle *b = json_is_array(sets) ? bundle_apply_delta(p->in_force, sets, &d) : NULL;
	b = bundle_hash_checked(b, hash, &d);
	char error[512] = "";
	if (!json_is_array(sets))
		snprintf(error, sizeof(error), "the session passed a delta that is not a list of sets");
	else if (!b)
		snprintf(error, sizeof(error), "the session passed a delta that does not check: %s%s%s",
			 d.n ? d.v[0].path : "", d.n ? ": " : "", d.n ? d.v[0].message : "");
	json_decref(sets);
	diag_release(&d);
	if (b)
		p->deltas++;
	take_checked(p, b, revision, error, sizeof(error));
	return 0;
}

static int on_rejected(struct proxy *p, struct chan_in *in)
{
	int64_t revision = (int64_t)chan_get_u64(in);
	const char *error = chan_get_str(in, PS_ERROR_MAX, NULL);
	if (!chan_in_done(in) || revision < 0 || !utf8_valid(error))
		return -EBADMSG;
	if (!p->stopping)
		p->peer->bundles.rejected(p->core, BUNDLE_FROM_CONTROLLER, revision, error);
	return 0;
}

static int on_status(struct proxy *p, struct chan_in *in)
{
	uint8_t changed = chan_get_u8(in);
	size_t n;
	const uint8_t *text = chan_get_rest(in, &n);
	if (in->bad || changed > 1)
		return -EBADMSG;
	json_error_t e;
	json_t *j = json_loadb((const char *)text, n, JSON_REJECT_DUPLICATES, &e);
	json_t *c = json_object_get(j, "controller"), *f = json_object_get(j, "flows");
	if (!json_is_object(j) || !c || !f || !(json_is_object(c) || json_is_null(c)) ||
	    !(json_is_object(f) || json_is_null(f))) {
		json_decref(j);
		return -EBADMSG;
	}
	json_decref(p->controller);
	json_decref(p->flows);
	p->controller = json_is_object(c) ? json_incref(c) : NULL;
	p->flows = json_is_object(f) ? json_incref(f) : NULL;
	json_decref(j);
	if (changed)
		p->peer->changed(p->core);
	return 0;
}

static const char *msg_name(uint16_t type)
{
	switch (type) {
	case PS_BUNDLE:
		return "bundle";
	case PS_REJECTED:
		return "rejection";
	case PS_STATUS:
		return "status";
	case PS_STOPPED:
		return "stop answer";
	case PS_DELTA:
		return "delta";
	}
	return "message";
}

static int child_message(void *data, uint16_t type, const uint8_t *m, size_t len)
{
	struct proxy *p = data;
	if (p->doomed)
		return -1;
	p->win_messages++;
	p->win_bytes += len;
	if (p->win_messages > FLOOD_MESSAGES || p->win_bytes > FLOOD_BYTES) {
		p->floods++;
		child_lost(p, "floods the enforcer");
		return -1;
	}
	struct chan_in in = chan_in(m, len);
	int r = 0;
	switch (type) {
	case PS_BUNDLE:
		r = on_bundle(p, &in);
		break;
	case PS_DELTA:
		r = on_delta(p, &in);
		break;
	case PS_REJECTED:
		r = on_rejected(p, &in);
		break;
	case PS_STATUS:
		r = on_status(p, &in);
		break;
	case PS_STOPPED:
		if (p->stopping) /* unasked, it means nothing */
			p->stopped = true;
		else
			r = -EBADMSG;
		break;
	}
	if (r < 0) {
		p->refused++;
		complain(p, "a malformed %s from the session child (%zu bytes); dropped", msg_name(type),
			 len);
	}
	return 0;
}

static ssize_t child_limit(void *data, uint16_t type)
{
	switch (type) {
	case PS_BUNDLE:
		return (ssize_t)PS_BUNDLE_MAX;
	case PS_DELTA:
		return (ssize_t)PS_DELTA_MAX;
	case PS_REJECTED:
		return PS_REJECTED_MAX;
	case PS_STATUS:
		return PS_STATUS_MAX;
	case PS_STOPPED:
		return 0;
	}
	return -1;
}

static void child_dropped(void *data, const char *reason)
{
	complain(data, "the session child sent %s; dropped", reason);
}

static void child_closed(void *data, int error)
{
	struct proxy *p = data;
	if (p->stopping) /* the answer to PS_STOP: stop() sees it */
		return;
	child_lost(p, error ? "broke its channel" : "exited");
}

static const struct chan_callbacks child_cb = {
    .limit = child_limit, .message = child_message, .dropped = child_dropped, .closed = child_closed};

/* ---- flow data to the child ---- */

static void flush_flows(struct proxy *p);

static void deferred_flush(void *data, uint32_t events)
{
	struct proxy *p = data;
	p->flush_deferred = false;
	flush_flows(p);
}

static void defer_flush(struct proxy *p)
{
	if (!p->flush_deferred) {
		p->flush_deferred = true;
		loop_defer(p->loop, deferred_flush, p);
	}
}

static void lose(struct proxy *p, const char *endpoint, uint64_t packets)
{
	struct lost *l;
	for (l = p->lost; l && strcmp(l->endpoint, endpoint) != 0; l = l->next)
		;
	if (!l) {
		l = xcalloc(1, sizeof(*l));
		l->endpoint = xstrdup(endpoint);
		l->next = p->lost;
		p->lost = l;
	}
	l->packets += packets;
	p->packets_dropped += packets;
}

static bool put_str16(struct chan_buf *b, const char *s)
{
	if (!s) {
		chan_put_u16(b, PS_STR16_NULL);
		return true;
	}
	size_t n = strlen(s);
	if (n > STR16_MAX)
		return false;
	chan_put_u16(b, (uint16_t)n);
	chan_put(b, s, n + 1);
	return true;
}

static bool same_str(const struct flowbuf *f, const char *s, uint32_t off)
{
	return s ? off && strcmp(s, (const char *)f->b.p + off) == 0 : !off;
}

/* The tuple of (endpoint, policy, rule) in the message, with room for an
 * item of item_len after it: its id, -ENOSPC (the message is full) or
 * -EINVAL (a name too long for an item). */
static int tuple_of(struct flowbuf *f, const char *endpoint, const char *policy, const char *rule,
		    size_t item_len)
{
	uintptr_t h = (uintptr_t)endpoint * 31 + (uintptr_t)policy;
	h = (h * 31 + (uintptr_t)rule) * 0x9e3779b97f4a7c15ull;
	struct tuple_slot *s = &f->slots[(h >> 56) & (TUPLE_SLOTS - 1)];
	if (s->gen == f->gen && s->endpoint == endpoint && s->policy == policy && s->rule == rule &&
	    same_str(f, endpoint, s->eoff) && same_str(f, policy, s->poff) && same_str(f, rule, s->roff)) {
		if (f->b.len + item_len > FLOWS_PAYLOAD_MAX)
			return -ENOSPC;
		return s->id;
	}
	size_t el = strlen(endpoint), pl = policy ? strlen(policy) : 0, rl = strlen(rule);
	if (el > STR16_MAX || pl > STR16_MAX || rl > STR16_MAX)
		return -EINVAL;
	size_t need = 1 + (2 + el + 1) + (2 + (policy ? pl + 1 : 0)) + (2 + rl + 1);
	if (f->b.len + need + item_len > FLOWS_PAYLOAD_MAX || f->n_tuples == UINT16_MAX)
		return -ENOSPC;
	chan_put_u8(&f->b, 'T');
	*s = (struct tuple_slot){
	    .endpoint = endpoint, .policy = policy, .rule = rule, .gen = f->gen, .id = f->n_tuples};
	s->eoff = (uint32_t)(f->b.len + 2);
	put_str16(&f->b, endpoint);
	s->poff = policy ? (uint32_t)(f->b.len + 2) : 0;
	put_str16(&f->b, policy);
	s->roff = (uint32_t)(f->b.len + 2);
	put_str16(&f->b, rule);
	return f->n_tuples++;
}

/* Room for an item of item_len (and its tuple): the tuple id, or
 * negative (the item cannot go). */
static int item_begin(struct proxy *p, const char *endpoint, const char *policy, const char *rule,
		      size_t item_len)
{
	int id = tuple_of(&p->fb, endpoint, policy, rule, item_len);
	if (id == -ENOSPC) {
		flush_flows(p);
		if (p->fb.b.len) /* kept: no child takes it now */
			return -ENOSPC;
		id = tuple_of(&p->fb, endpoint, policy, rule, item_len);
	}
	if (id >= 0)
		defer_flush(p);
	return id;
}

/* The message so far goes to the child, or, while none runs, waits for
 * the next one (hit counts; bounded). */
static void flush_flows(struct proxy *p)
{
	struct flowbuf *f = &p->fb;
	if (p->chan && !p->doomed) {
		/* What was dropped, the next thing the child hears. */
		while (p->lost && f->b.len + 1 + 2 + STR16_MAX + 1 + 16 <= FLOWS_PAYLOAD_MAX) {
			struct lost *l = p->lost;
			p->lost = l->next;
			chan_put_u8(&f->b, 'L');
			put_str16(&f->b, l->endpoint);
			chan_put_u64(&f->b, 0);
			chan_put_u64(&f->b, l->packets);
			free(l->endpoint);
			free(l);
		}
	}
	if (!f->b.len)
		return;
	if (p->chan && !p->doomed) {
		chan_send_take(p->chan, PS_FLOWS, f->b.p, f->b.len);
	} else if (p->held_bytes + f->b.len <= HELD_MAX) {
		struct held *h = xcalloc(1, sizeof(*h));
		h->p = f->b.p;
		h->len = f->b.len;
		*p->held_tail = h;
		p->held_tail = &h->next;
		p->held_bytes += h->len;
	} else {
		return; /* the message stays; what does not fit in it is dropped */
	}
	f->b = (struct chan_buf){0};
	chan_buf_reserve(&f->b, FLOWS_PAYLOAD_MAX);
	f->n_tuples = 0;
	f->gen++;
}

/* Whether the child takes logged packets now. */
static bool child_takes(const struct proxy *p)
{
	return p->chan && !p->doomed && !p->stopping && chan_queued(p->chan) < QUEUED_FLOWS_MAX;
}

#define PACKET_ITEM_LEN (1 + 2 + 8 + sizeof(struct ps_packet))

static void proxy_packet(struct session *s, const char *endpoint, const struct nflog_event *ev,
			 const char *policy, const char *rule, uint64_t now_ms)
{
	struct proxy *p = proxy_of(s);
	int id = child_takes(p) ? item_begin(p, endpoint, policy, rule, PACKET_ITEM_LEN) : -EAGAIN;
	if (id < 0) {
		if (!p->stopping)
			lose(p, endpoint, 1);
		return;
	}
	struct ps_packet k = {
	    .family = ev->family,
	    .proto = ev->proto,
	    .flags = (uint8_t)((ev->has_port ? PS_PACKET_PORT : 0) | (ev->has_icmp ? PS_PACKET_ICMP : 0) |
			       (ev->has_seq ? PS_PACKET_SEQ : 0)),
	    .icmp_type = ev->icmp_type,
	    .icmp_code = ev->icmp_code,
	    .verdict = (uint8_t)ev->prefix.verdict,
	    .dir = (uint8_t)ev->prefix.dir,
	    .port = ev->port,
	    .seq = ev->seq,
	    .position = (int32_t)ev->prefix.position,
	};
	memcpy(k.src, ev->src, 16);
	memcpy(k.dst, ev->dst, 16);
	struct chan_buf *b = &p->fb.b;
	chan_put_u8(b, 'P');
	chan_put_u16(b, (uint16_t)id);
	chan_put_u64(b, now_ms);
	chan_put(b, &k, sizeof(k));
}

static void proxy_packets_lost(struct session *s, const char *endpoint, uint64_t enobufs, uint64_t gap)
{
	struct proxy *p = proxy_of(s);
	if (!enobufs && !gap)
		return;
	size_t n = strlen(endpoint), item = 1 + 2 + n + 1 + 16;
	if (n <= STR16_MAX && child_takes(p) && p->fb.b.len + item > FLOWS_PAYLOAD_MAX)
		flush_flows(p);
	if (n > STR16_MAX || !child_takes(p) || p->fb.b.len + item > FLOWS_PAYLOAD_MAX) {
		if (!p->stopping)
			lose(p, endpoint, gap);
		return;
	}
	struct chan_buf *b = &p->fb.b;
	chan_put_u8(b, 'L');
	put_str16(b, endpoint);
	chan_put_u64(b, enobufs);
	chan_put_u64(b, gap);
	defer_flush(p);
}

#define HIT_ITEM_LEN (1 + 2 + 1 + 1 + 24)

static void proxy_hit(struct session *s, const char *endpoint, enum direction dir, const char *rule,
		      const char *policy, const char *verdict, uint64_t packets, uint64_t bytes,
		      uint64_t now_ms)
{
	struct proxy *p = proxy_of(s);
	int v = vocab_find(report_verdict_words, verdict);
	/* Without a child they wait for the next one (HELD_MAX). */
	int id = v >= 0 && !p->stopping ? item_begin(p, endpoint, policy, rule, HIT_ITEM_LEN) : -EINVAL;
	if (id < 0) {
		p->hits_dropped++;
		return;
	}
	struct chan_buf *b = &p->fb.b;
	chan_put_u8(b, 'H');
	chan_put_u16(b, (uint16_t)id);
	chan_put_u8(b, (uint8_t)v);
	chan_put_u8(b, (uint8_t)dir);
	chan_put_u64(b, packets);
	chan_put_u64(b, bytes);
	chan_put_u64(b, now_ms);
}

/* ---- what the core says ---- */

static void send_in_force(struct proxy *p)
{
	const struct bundle *b = p->in_force;
	const char *hash = b ? b->hash : NULL;
	if (!p->chan || p->doomed)
		return;
	if (p->told && p->told_revision == p->revision && p->told_certain == p->certain &&
	    strcmp(p->told_hash, hash ? hash : "") == 0)
		return;
	bool has_text = b && strcmp(hash, p->child_in_force) != 0 && strcmp(hash, p->child_sent) != 0;
	if (b && !has_text && strcmp(hash, p->child_in_force) != 0)
		p->child_sent[0] = '\0'; /* the child makes the one it passed its bundle in force */
	char *text = has_text ? bundle_encode(b, false) : NULL;
	if (has_text && !text)
		abort(); /* out of memory */
	size_t n = text ? strlen(text) : 0;
	struct chan_buf m = {0};
	chan_buf_reserve(&m, 32 + BUNDLE_HASH_HEX + n);
	chan_put_u64(&m, (uint64_t)p->revision);
	chan_put_u8(&m, p->certain);
	chan_put_str(&m, hash);
	chan_put_u8(&m, has_text);
	chan_put(&m, text, n);
	free(text);
	chan_send_take(p->chan, PS_IN_FORCE, m.p, m.len);
	snprintf(p->child_in_force, sizeof(p->child_in_force), "%s", hash ? hash : "");
	p->told = true;
	p->told_revision = p->revision;
	p->told_certain = p->certain;
	snprintf(p->told_hash, sizeof(p->told_hash), "%s", hash ? hash : "");
}

static void send_copy(struct proxy *p, uint16_t type, const uint8_t *m, size_t len)
{
	if (p->chan && !p->doomed)
		chan_send(p->chan, type, m, len);
}

static void proxy_in_force(struct session *s, const struct bundle *b, int64_t revision, bool certain)
{
	struct proxy *p = proxy_of(s);
	p->in_force = b;
	p->revision = revision;
	p->certain = certain;
	send_in_force(p);
}

static void send_endpoints(struct proxy *p)
{
	if (!p->endpoints_text || !p->chan || p->doomed)
		return;
	struct chan_buf m = {0};
	chan_put_str(&m, p->endpoints_text);
	chan_send_take(p->chan, PS_ENDPOINTS, m.p, m.len);
}

static void proxy_endpoints(struct session *s, json_t *list)
{
	struct proxy *p = proxy_of(s);
	char *text = json_dumps(list, JSON_COMPACT);
	json_decref(list);
	if (!text)
		abort();
	free(p->endpoints_text);
	p->endpoints_text = text;
	send_endpoints(p);
}

static void proxy_ack(struct session *s, int64_t revision, bool ok, const char *error, json_t *endpoints,
		      bool always)
{
	struct proxy *p = proxy_of(s);
	char *eps = json_dumps(endpoints, JSON_COMPACT);
	json_decref(endpoints);
	if (!eps)
		abort();
	struct chan_buf m = {0};
	chan_put_u64(&m, (uint64_t)revision);
	chan_put_u8(&m, ok);
	chan_put_u8(&m, always);
	chan_put_str(&m, error);
	chan_put_str(&m, eps);
	free(eps);
	free(p->last_ack);
	p->last_ack = m.p;
	p->last_ack_len = m.len;
	send_copy(p, PS_ACK, m.p, m.len);
}

/* ---- starting and watching the child ---- */

static int start_child(struct proxy *p)
{
	int fd;
	pid_t pid;
	int r = p->kids.spawn(p->kids.arg, &fd, &pid);
	if (r < 0) {
		if (r != -EPIPE && r != -ETIMEDOUT)
			schedule_restart(p);
		return r;
	}
	/* Room for the flow data of a busy round (CAP_NET_ADMIN may go
	 * past net.core.wmem_max). */
	int size = CHILD_SNDBUF;
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) < 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	p->chan = chan_new(p->loop, fd, &child_cb, p);
	if (!p->chan) {
		r = log_error_errno(-errno, "the session child's channel: %m");
		close(fd);
		p->kids.kill(p->kids.arg);
		schedule_restart(p);
		return r;
	}
	p->pid = pid;
	p->children++;
	p->since_ms = p->out_progress_ms = (uint64_t)clock_mono_ms();
	p->out_seen = 0;
	p->win_messages = p->win_bytes = 0;
	p->stopped = false;
	log_info("session child started (pid %d, user %s)", (int)pid, p->kids.user);
	/* Everything it must know before it says HELLO, then what waited. */
	send_in_force(p);
	send_endpoints(p);
	chan_send(p->chan, PS_START, NULL, 0);
	if (p->last_ack)
		send_copy(p, PS_ACK, p->last_ack, p->last_ack_len);
	while (p->held) {
		struct held *h = p->held;
		p->held = h->next;
		chan_send_take(p->chan, PS_FLOWS, h->p, h->len);
		free(h);
	}
	p->held_tail = &p->held;
	p->held_bytes = 0;
	flush_flows(p);
	p->peer->changed(p->core);
	return 0;
}

static void on_watch(void *data, uint32_t events)
{
	struct proxy *p = data;
	uint64_t now = (uint64_t)clock_mono_ms();
	p->win_messages = p->win_bytes = 0;
	if (p->packets_dropped != p->dropped_logged) {
		log_warn("%" PRIu64
			 " logged packet(s) not passed to the session child in the last second (%s); "
			 "reported as lost",
			 p->packets_dropped - p->dropped_logged, p->chan ? "it is behind" : "none runs");
		p->dropped_logged = p->packets_dropped;
	}
	if (!p->chan || p->doomed)
		return;
	uint64_t out = chan_stats(p->chan)->bytes_out;
	if (out != p->out_seen || !chan_queued(p->chan)) {
		p->out_seen = out;
		p->out_progress_ms = now;
	} else if (now - p->out_progress_ms >= STUCK_MS) {
		child_lost(p, "stopped reading");
	}
	if (chan_queued(p->chan) > QUEUED_MAX)
		child_lost(p, "fell too far behind");
}

static int proxy_start(struct session *s)
{
	struct proxy *p = proxy_of(s);
	p->started = true;
	if (!(p->watch = loop_add_timer(p->loop, WATCH_MS, on_watch, p)))
		log_error("timer: %m; a session child that floods or hangs is not noticed");
	int r = start_child(p);
	if (r == -EPIPE || r == -ETIMEDOUT)
		log_error("no controller session; enforcing the bundle in force only");
	return r == -EPIPE || r == -ETIMEDOUT ? r : 0;
}

static json_t *session_json(const struct proxy *p)
{
	struct chan_stats t = p->gone;
	if (p->chan)
		add_stats(&t, chan_stats(p->chan));
	return json_pack(
	    "{s:b,s:s,s:o,s:I,s:I,s:I,s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I},s:{s:I,s:I,s:I}}", "privsep", 1, "user",
	    p->kids.user, "pid", p->chan ? json_integer(p->pid) : json_null(), "started",
	    (json_int_t)p->children, "deaths", (json_int_t)p->deaths, "floods", (json_int_t)p->floods,
	    "from_child", "messages", (json_int_t)t.messages_in, "malformed", (json_int_t)t.malformed,
	    "oversized", (json_int_t)t.oversized, "truncated", (json_int_t)t.truncated, "refused",
	    (json_int_t)p->refused, "deltas", (json_int_t)p->deltas, "resends", (json_int_t)p->resends,
	    "to_child", "queued_bytes", (json_int_t)(p->chan ? chan_queued(p->chan) : 0), "packets_dropped",
	    (json_int_t)p->packets_dropped, "hits_dropped", (json_int_t)p->hits_dropped);
}

static void proxy_status(struct session *s, json_t **controller, json_t **flows)
{
	struct proxy *p = proxy_of(s);
	json_t *c = p->controller ? json_deep_copy(p->controller)
				  : json_pack("{s:s,s:b}", "endpoint", p->o->link->endpoint, "connected", 0);
	if (!c)
		abort();
	if (!p->chan || p->doomed)
		json_object_set_new(c, "connected", json_false());
	json_object_set_new(c, "session", session_json(p));
	*controller = c;
	*flows = json_incref(p->flows);
}

/* The child's last window and spool: it is told, and waited for. */
static void proxy_stop(struct session *s)
{
	struct proxy *p = proxy_of(s);
	loop_remove(p->loop, p->restart);
	loop_remove(p->loop, p->watch);
	p->restart = p->watch = NULL;
	flush_flows(p);
	p->stopping = true;
	if (p->chan && !p->doomed) {
		chan_send(p->chan, PS_STOP, NULL, 0);
		int64_t end = clock_mono_ms() + STOP_MS;
		bool gone = false;
		while (!p->stopped && !p->doomed && !gone) {
			int w = chan_flush(p->chan);
			int64_t left = end - clock_mono_ms();
			if (w < 0 || left <= 0)
				break;
			struct pollfd pfd = {.fd = chan_fd(p->chan), .events = POLLIN | (w ? POLLOUT : 0)};
			if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
				break;
			gone = chan_read(p->chan, CHAN_READ_BURST) < 0;
		}
		if (!p->stopped)
			log_error("the session child %s; its last flow window may be lost",
				  gone || p->doomed ? "ended before it said it had stopped"
						    : "did not stop in time");
	}
	drop_child(p);
	p->doomed = NULL;
	p->in_force = NULL;
}

static void proxy_free(struct session *s)
{
	struct proxy *p = proxy_of(s);
	loop_cancel_deferred(p->loop, p);
	loop_remove(p->loop, p->restart);
	loop_remove(p->loop, p->watch);
	chan_free(p->chan);
	if (p->kids.free)
		p->kids.free(p->kids.arg);
	chan_buf_free(&p->fb.b);
	while (p->held) {
		struct held *h = p->held;
		p->held = h->next;
		free(h->p);
		free(h);
	}
	while (p->lost) {
		struct lost *l = p->lost;
		p->lost = l->next;
		free(l->endpoint);
		free(l);
	}
	free(p->endpoints_text);
	free(p->last_ack);
	json_decref(p->controller);
	json_decref(p->flows);
	free(p);
}

static const struct session_ops proxy_ops = {
    .start = proxy_start,
    .in_force = proxy_in_force,
    .endpoints = proxy_endpoints,
    .ack = proxy_ack,
    .packet = proxy_packet,
    .packets_lost = proxy_packets_lost,
    .hit = proxy_hit,
    .status = proxy_status,
    .stop = proxy_stop,
    .free = proxy_free,
};

struct session *session_proxy_new_with(struct loop *loop, const struct session_options *o,
				       const struct session_children *children,
				       const struct session_peer *peer, void *core)
{
	struct proxy *p = xcalloc(1, sizeof(*p));
	p->s.ops = &proxy_ops;
	p->loop = loop;
	p->o = o;
	p->kids = *children;
	p->peer = peer;
	p->core = core;
	p->held_tail = &p->held;
	chan_buf_reserve(&p->fb.b, FLOWS_PAYLOAD_MAX);
	p->fb.gen = 1;
	return &p->s;
}

static int spawn(void *arg, int *fd, pid_t *pid)
{
	return spawner_spawn(arg, fd, pid);
}

static void kill_child(void *arg)
{
	spawner_kill(arg);
}

static void free_spawner(void *arg)
{
	spawner_free(arg);
}

struct session *session_proxy_new(struct loop *loop, const struct session_options *o, struct spawner *spawner,
				  const struct session_peer *peer, void *core)
{
	struct session_children c = {.spawn = spawn,
				     .kill = kill_child,
				     .free = free_spawner,
				     .user = spawner_user(spawner),
				     .arg = spawner};
	return session_proxy_new_with(loop, o, &c, peer, core);
}

/* ---- set-up, before the capabilities go ---- */

static int child_main(int fd, void *arg)
{
	struct session_options o = *(const struct session_options *)arg;
	o.state_dir = "."; /* the spawner made it the child's working directory */
	return session_child_main(fd, &o);
}

static bool exists_in(const char *dir, const char *name)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	struct stat st;
	return lstat(path, &st) == 0;
}

/* Gives the spool's files to uid:gid (see session_privsep_setup()). */
static int give_spool(const char *dir, bool privsep, uid_t uid, gid_t gid)
{
	static const struct {
		const char *name;
		bool dir;
	} files[] = {{SPOOL_DIR, true}, {FLOWS_QUARANTINE_FILE, false}};
	for (size_t i = 0; i < BH_ARRAY_SIZE(files); i++) {
		if (!privsep && !exists_in(dir, files[i].name))
			continue; /* the in-process session makes them */
		char path[4096], *err = NULL;
		snprintf(path, sizeof(path), "%s/%s", dir, files[i].name);
		if (privs_give_path(path, files[i].dir, uid, gid, &err) < 0) {
			log_error("--state-dir: %s", err ? err : "out of memory");
			free(err);
			return -1;
		}
	}
	return 0;
}

int session_privsep_setup(const struct session_options *o, const char *user, struct spawner **spawner)
{
	*spawner = NULL;
	uid_t uid = 0;
	gid_t gid = 0;
	char *err = NULL;
	const char *dir = o->state_dir;
	if (user && privs_lookup_user("--session-user", user, &uid, &gid, &err) < 0) {
		log_error("%s (or give --no-privsep)", err ? err : "--session-user: out of memory");
		free(err);
		return -1;
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		log_error("creating --state-dir %s: %m", dir);
		return -1;
	}
	/* The child may write in flows.d, never beside it: files of agents
	 * before the segments are taken over here, as root. */
	if (user && (exists_in(dir, FLOWS_OLD_JOURNAL_FILE) || exists_in(dir, FLOWS_OLD_SPOOL_FILE)))
		flows_free(flows_new(dir, (uint64_t)clock_wall_ms()));
	if (give_spool(dir, user != NULL, uid, gid) < 0)
		return -1;
	if (!user)
		return 0;
	/* The child looks its names up in it (search permission) and reads
	 * nothing else there: the other files are 0600, root's. */
	struct stat st;
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fstat(dfd, &st) < 0 ||
	    ((st.st_mode & 0001) == 0 && fchmod(dfd, (st.st_mode & 07777) | 0011) < 0)) {
		log_error("--state-dir %s: letting the session user through it: %m", dir);
		if (dfd >= 0)
			close(dfd);
		return -1;
	}
	struct spawner_options so = {.user = user, .dir_fd = dfd, .child_main = child_main, .arg = (void *)o};
	if (!(*spawner = spawner_new(&so, &err))) {
		log_error("privilege separation: %s", err ? err : "out of memory");
		free(err);
		return -1;
	}
	return 0;
}
