/* The session child's main (session-privsep.h): session.c, unchanged, in
 * a process of its own, with the enforcer's messages standing for the
 * core's calls and the core's callbacks going back as messages. The child
 * trusts the enforcer, but checks what it decodes all the same, so that a
 * bug shows as a log line and not as a crash. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/log.h"
#include "bulkhead/vocab.h"
#include "bundle-file.h"
#include "chan.h"
#include "session-privsep.h"

#define STATUS_MS    100  /* the link and spool counters go to the enforcer this often, when they changed */
#define FLUSH_MS     5000 /* at the end, what waits for the enforcer is given this long */
#define IN_FORCE_MAX (128 + 2 * (size_t)BUNDLE_FILE_MAX_BYTES)
#define JSON_MSG_MAX ((size_t)PROTO_MAX_MSG)
#define TUPLES_MAX   8192 /* a message of flow items has room for fewer */

struct child {
	const struct session_options *o;
	struct loop *loop;
	struct chan *chan;
	struct session *session;
	struct bundle *in_force; /* what the enforcer says it holds */
	struct bundle *sent;	 /* the last bundle passed to the enforcer, until it names it */
	int64_t sent_revision;	 /* ... and the revision it came with */
	struct loop_source *status_timer;
	char *status_sent; /* the last PS_STATUS's JSON */
	bool changed;	   /* the session said so since the last PS_STATUS */
	bool started, stopped;
};

/* ---- to the enforcer ---- */

static void send_status(struct child *c, bool force)
{
	json_t *controller = NULL, *flows = NULL;
	session_status(c->session, &controller, &flows);
	json_t *o = json_pack("{s:o,s:o}", "controller", controller ? controller : json_null(), "flows",
			      flows ? flows : json_null());
	char *text = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(o);
	if (!text)
		return;
	if (!force && !c->changed && c->status_sent && strcmp(text, c->status_sent) == 0) {
		free(text);
		return;
	}
	size_t n = strlen(text);
	if (n + 1 > PS_STATUS_MAX) {
		log_error("session status of %zu bytes: not sent", n);
		free(text);
		return;
	}
	struct chan_buf b = {0};
	chan_put_u8(&b, c->changed);
	chan_put(&b, text, n);
	chan_send_take(c->chan, PS_STATUS, b.p, b.len);
	free(c->status_sent);
	c->status_sent = text;
	c->changed = false;
}

static void on_status_timer(void *data, uint32_t events)
{
	send_status(data, false);
}

static void deferred_status(void *data, uint32_t events)
{
	send_status(data, false);
}

/* The bundle's canonical text to the enforcer (PS_BUNDLE); false when
 * there was no memory to encode it. */
static bool send_bundle(struct child *c, const struct bundle *b, int64_t revision)
{
	char *text = bundle_encode(b, false);
	if (!text) {
		log_error("bundle %.12s: encoding it for the enforcer: out of memory", b->hash);
		return false;
	}
	size_t n = strlen(text);
	struct chan_buf m = {0};
	chan_buf_reserve(&m, 8 + n);
	chan_put_u64(&m, (uint64_t)revision);
	chan_put(&m, text, n);
	free(text);
	chan_send_take(c->chan, PS_BUNDLE, m.p, m.len);
	return true;
}

/* Kept: the enforcer names it by its hash when it holds it. */
static void keep_sent(struct child *c, struct bundle *b, int64_t revision)
{
	bundle_free(c->sent);
	c->sent = b;
	c->sent_revision = revision;
}

static void take_bundle(void *core, enum bundle_origin from, struct bundle *b, int64_t revision)
{
	struct child *c = core;
	if (!send_bundle(c, b, revision)) {
		bundle_free(b);
		return;
	}
	keep_sent(c, b, revision);
}

/* A bundle made by a DELTA from the one in force: the DELTA's sets go,
 * which the enforcer applies to the bundle it holds (PS_DELTA). */
static void take_delta(void *core, enum bundle_origin from, struct bundle *b, int64_t revision,
		       const char *base, json_t *sets)
{
	struct child *c = core;
	char *text = json_dumps(sets, JSON_COMPACT);
	if (!text || strlen(text) > PROTO_MAX_MSG) {
		free(text);
		take_bundle(core, from, b, revision);
		return;
	}
	struct chan_buf m = {0};
	chan_put_u64(&m, (uint64_t)revision);
	chan_put_str(&m, base);
	chan_put_str(&m, b->hash);
	chan_put(&m, text, strlen(text));
	free(text);
	chan_send_take(c->chan, PS_DELTA, m.p, m.len);
	keep_sent(c, b, revision);
}

static void bundle_rejected(void *core, enum bundle_origin from, int64_t revision, const char *error)
{
	struct child *c = core;
	char cut[PS_ERROR_MAX + 1];
	snprintf(cut, sizeof(cut), "%s", error ? error : "rejected");
	struct chan_buf m = {0};
	chan_put_u64(&m, (uint64_t)revision);
	chan_put_str(&m, cut);
	chan_send_take(c->chan, PS_REJECTED, m.p, m.len);
}

static void session_changed(void *core)
{
	struct child *c = core;
	c->changed = true;
	loop_defer(c->loop, deferred_status, c);
}

static const struct session_peer child_peer = {
    .bundles = {.take = take_bundle, .take_delta = take_delta, .rejected = bundle_rejected},
    .changed = session_changed,
};

/* ---- from the enforcer ---- */

static int on_in_force(struct child *c, struct chan_in *in)
{
	int64_t revision = (int64_t)chan_get_u64(in);
	bool certain = chan_get_u8(in);
	bool none = false;
	const char *hash = chan_get_str(in, BUNDLE_HASH_HEX, &none);
	bool has_text = chan_get_u8(in);
	size_t n;
	const uint8_t *text = chan_get_rest(in, &n);
	if (in->bad || (has_text && none))
		return -EBADMSG;
	if (none) {
		bundle_free(c->in_force);
		c->in_force = NULL;
	} else if (has_text) {
		struct diag d;
		diag_init(&d, "bundle from the enforcer");
		struct bundle *b = bundle_decode((const char *)text, n, &d);
		if (!b || strcmp(b->hash, hash) != 0)
			log_error("the enforcer's bundle %.12s does not decode%s%s; holding none", hash,
				  d.n ? ": " : "", d.n ? d.v[0].message : "");
		diag_release(&d);
		if (b && strcmp(b->hash, hash) != 0) {
			bundle_free(b);
			b = NULL;
		}
		bundle_free(c->in_force);
		c->in_force = b;
	} else if (c->in_force && strcmp(c->in_force->hash, hash) == 0) {
		/* held already */
	} else if (c->sent && strcmp(c->sent->hash, hash) == 0) {
		bundle_free(c->in_force);
		c->in_force = c->sent;
		c->sent = NULL;
	} else {
		log_error("the enforcer holds bundle %.12s, which this session does not know; holding none",
			  hash);
		bundle_free(c->in_force);
		c->in_force = NULL;
	}
	session_in_force(c->session, c->in_force, revision, certain);
	return 0;
}

/* The enforcer holds another bundle than the one the child's PS_DELTA
 * was made from: the whole bundle goes, if it is still the last sent. */
static int on_resend(struct child *c, struct chan_in *in)
{
	int64_t revision = (int64_t)chan_get_u64(in);
	if (!chan_in_done(in))
		return -EBADMSG;
	if (c->sent && c->sent_revision == revision) {
		log_info("delta %" PRId64 ": the enforcer holds another base; sending the whole bundle",
			 revision);
		(void)send_bundle(c, c->sent, revision);
	}
	return 0;
}

static json_t *json_of(const char *text, const char *what)
{
	json_error_t e;
	json_t *j = text ? json_loads(text, 0, &e) : NULL;
	if (!j && text)
		log_error("%s from the enforcer: %s", what, e.text);
	return j;
}

static int on_endpoints(struct child *c, struct chan_in *in)
{
	const char *text = chan_get_str(in, JSON_MSG_MAX, NULL);
	if (!chan_in_done(in))
		return -EBADMSG;
	json_t *list = json_of(text, "endpoint list");
	if (!json_is_array(list)) {
		json_decref(list);
		return -EBADMSG;
	}
	session_endpoints(c->session, list);
	return 0;
}

static int on_ack(struct child *c, struct chan_in *in)
{
	int64_t revision = (int64_t)chan_get_u64(in);
	bool ok = chan_get_u8(in), always = chan_get_u8(in), no_error = false;
	const char *error = chan_get_str(in, JSON_MSG_MAX, &no_error);
	const char *eps = chan_get_str(in, JSON_MSG_MAX, NULL);
	if (!chan_in_done(in))
		return -EBADMSG;
	json_t *list = json_of(eps, "ACK");
	if (!json_is_array(list)) {
		json_decref(list);
		return -EBADMSG;
	}
	session_ack(c->session, revision, ok, error, list, always);
	return 0;
}

/* A str16 of the flow items: NULL when PS_STR16_NULL (*null set), or
 * when it is not one (in->bad). */
static const char *get_str16(struct chan_in *in, bool *null)
{
	uint16_t n = chan_get_u16(in);
	*null = false;
	if (in->bad)
		return NULL;
	if (n == PS_STR16_NULL) {
		*null = true;
		return NULL;
	}
	if (in->len - in->off < (size_t)n + 1 || in->p[in->off + n] != '\0' ||
	    memchr(in->p + in->off, '\0', n)) {
		in->bad = true;
		return NULL;
	}
	const char *s = (const char *)in->p + in->off;
	in->off += (size_t)n + 1;
	return s;
}

struct tuple {
	const char *endpoint, *policy, *rule;
};

static int on_flows(struct child *c, struct chan_in *in)
{
	static struct tuple tuples[TUPLES_MAX];
	size_t n = 0;
	bool null;
	while (!in->bad && in->off < in->len) {
		uint8_t kind = chan_get_u8(in);
		if (kind == 'T') {
			struct tuple t;
			t.endpoint = get_str16(in, &null);
			if (null)
				in->bad = true;
			t.policy = get_str16(in, &null);
			t.rule = get_str16(in, &null);
			if (null || n == TUPLES_MAX)
				in->bad = true;
			if (!in->bad)
				tuples[n++] = t;
		} else if (kind == 'P') {
			uint16_t id = chan_get_u16(in);
			uint64_t now = chan_get_u64(in);
			struct ps_packet p;
			chan_get(in, &p, sizeof(p));
			if (in->bad || id >= n || (p.family != AF_INET && p.family != AF_INET6) ||
			    p.dir >= DIR_COUNT || p.verdict > VERDICT_AUDIT)
				return -EBADMSG;
			struct nflog_event ev = {
			    .family = p.family,
			    .proto = p.proto,
			    .has_port = p.flags & PS_PACKET_PORT,
			    .port = p.port,
			    .has_icmp = p.flags & PS_PACKET_ICMP,
			    .icmp_type = p.icmp_type,
			    .icmp_code = p.icmp_code,
			    .prefix = {.verdict = p.verdict, .dir = p.dir, .position = p.position},
			    .has_seq = p.flags & PS_PACKET_SEQ,
			    .seq = p.seq,
			};
			memcpy(ev.src, p.src, 16);
			memcpy(ev.dst, p.dst, 16);
			session_packet(c->session, tuples[id].endpoint, &ev, tuples[id].policy,
				       tuples[id].rule, now);
		} else if (kind == 'H') {
			uint16_t id = chan_get_u16(in);
			uint8_t verdict = chan_get_u8(in), dir = chan_get_u8(in);
			uint64_t packets = chan_get_u64(in), bytes = chan_get_u64(in), now = chan_get_u64(in);
			if (in->bad || id >= n || dir >= DIR_COUNT || verdict > VERDICT_AUDIT)
				return -EBADMSG;
			session_hit(c->session, tuples[id].endpoint, dir, tuples[id].rule, tuples[id].policy,
				    verdict_report_name(verdict), packets, bytes, now);
		} else if (kind == 'L') {
			const char *endpoint = get_str16(in, &null);
			uint64_t enobufs = chan_get_u64(in), gap = chan_get_u64(in);
			if (in->bad || null)
				return -EBADMSG;
			session_packets_lost(c->session, endpoint, enobufs, gap);
		} else {
			return -EBADMSG;
		}
	}
	return in->bad ? -EBADMSG : 0;
}

static void stop(struct child *c)
{
	if (c->stopped)
		return;
	c->stopped = true;
	loop_remove(c->loop, c->status_timer);
	c->status_timer = NULL;
	session_stop(c->session);
}

static int on_message(void *data, uint16_t type, const uint8_t *p, size_t len)
{
	struct child *c = data;
	struct chan_in in = chan_in(p, len);
	int r = 0;
	if (c->stopped)
		return 0;
	switch (type) {
	case PS_IN_FORCE:
		r = on_in_force(c, &in);
		break;
	case PS_ENDPOINTS:
		r = on_endpoints(c, &in);
		break;
	case PS_ACK:
		r = on_ack(c, &in);
		break;
	case PS_FLOWS:
		r = on_flows(c, &in);
		break;
	case PS_START:
		if (c->started)
			break;
		c->started = true;
		(void)session_start(c->session);
		if (!(c->status_timer = loop_add_timer(c->loop, STATUS_MS, on_status_timer, c)))
			log_error(
			    "timer: %m; the enforcer hears of the controller link only when it changes");
		send_status(c, true);
		break;
	case PS_RESEND:
		r = on_resend(c, &in);
		break;
	case PS_STOP:
		stop(c);
		chan_send(c->chan, PS_STOPPED, NULL, 0);
		loop_quit(c->loop, 0);
		return -1;
	}
	if (r < 0)
		log_error("a malformed %u message from the enforcer; dropped", type);
	return 0;
}

static ssize_t limit(void *data, uint16_t type)
{
	switch (type) {
	case PS_IN_FORCE:
		return (ssize_t)IN_FORCE_MAX;
	case PS_ENDPOINTS:
	case PS_ACK:
		return (ssize_t)(2 * JSON_MSG_MAX);
	case PS_FLOWS:
		return CHAN_RECORD_MAX - CHAN_HEADER_LEN;
	case PS_RESEND:
		return 8;
	case PS_START:
	case PS_STOP:
		return 0;
	}
	return -1;
}

static void dropped(void *data, const char *reason)
{
	log_error("the enforcer sent %s; dropped", reason);
}

static void closed(void *data, int error)
{
	struct child *c = data;
	/* The enforcer is gone (or stopped without a word): keep the spool. */
	stop(c);
	loop_quit(c->loop, 0);
}

static const struct chan_callbacks chan_cb = {
    .limit = limit, .message = on_message, .dropped = dropped, .closed = closed};

/* What waits for the enforcer (the last status, PS_STOPPED), for a while. */
static void drain(struct chan *ch)
{
	int64_t end = clock_mono_ms() + FLUSH_MS;
	while (chan_flush(ch) == 1) {
		int64_t left = end - clock_mono_ms();
		if (left <= 0)
			return;
		struct pollfd pfd = {.fd = chan_fd(ch), .events = POLLOUT};
		if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
			return;
	}
}

int session_child_main(int fd, const struct session_options *o)
{
	struct child c = {.o = o};
	c.loop = loop_new();
	if (!c.loop) {
		log_error("session child: epoll: %m");
		return 1;
	}
	c.chan = chan_new(c.loop, fd, &chan_cb, &c);
	if (!c.chan) {
		log_error("session child: its channel: %m");
		loop_free(c.loop);
		return 1;
	}
	c.session = session_new(c.loop, o, &child_peer, &c);
	int r = loop_run(c.loop);
	stop(&c);
	drain(c.chan);
	session_free(c.session);
	chan_free(c.chan);
	loop_free(c.loop);
	bundle_free(c.in_force);
	bundle_free(c.sent);
	free(c.status_sent);
	return r < 0 ? 1 : 0;
}
