/* The enforcer's side of the session child (agent/session-proxy.c, chan.c)
 * against a fake child: the test holds the child's end of the socketpair
 * and writes what a compromised child might. The channel's framing round
 * trip; every record or message that is too short, too long, cut off,
 * out of order, of an unknown type, or well framed with content that does
 * not check (a bundle that does not decode or is for another node, a
 * rejection that is not UTF-8, a status that is not an object) is dropped
 * and counted, and the proxy goes on reading; a bundle that checks
 * reaches the core decoded; a child that dies, floods or stops reading is
 * replaced after a backoff and told everything again; logged packets
 * become flow items, and those that find no child are reported as lost to
 * the next. */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bulkhead/compile.h"
#include "bulkhead/log.h"
#include "bulkhead/proto.h"
#include "chan.h"
#include "session-privsep.h"
#include "scenario.h"
#include "test.h"

/* ---- a bundle ---- */

static struct bundle *compile_for(const char *node, int port)
{
	char policy[256];
	snprintf(policy, sizeof(policy),
		 "{\"version\":1,\"policies\":[{\"name\":\"in\",\"applies_to\":{\"labels\":{}},"
		 "\"ingress\":[{\"ports\":[\"tcp/%d\"]}]}]}",
		 port);
	char inventory[256];
	snprintf(inventory, sizeof(inventory),
		 "{\"node\":\"%s\",\"endpoints\":[{\"name\":\"web\",\"labels\":{\"app\":\"x\"},"
		 "\"addresses\":[\"198.18.0.10\"]}]}",
		 node);
	return scenario_compile(policy, inventory, node, 0);
}

/* Node n1's bundle where web (198.18.0.10) admits the group clients, whose
 * members (on node n2) are 198.18.1.1 .. 198.18.1.n. */
static struct bundle *compile_members(int n)
{
	static const char policy[] =
	    "{\"version\":1,\"groups\":{\"clients\":{\"labels\":{\"app\":\"client\"}}},\"policies\":[{"
	    "\"name\":\"in\",\"applies_to\":{\"labels\":{\"app\":\"x\"}},\"ingress\":[{\"from\":["
	    "\"clients\"],\"ports\":[\"tcp/80\"]}]}]}";
	char n2[4096];
	size_t len = (size_t)snprintf(n2, sizeof(n2), "{\"node\":\"n2\",\"endpoints\":[");
	for (int i = 1; i <= n; i++)
		len += (size_t)snprintf(n2 + len, sizeof(n2) - len,
					"%s{\"name\":\"c%d\",\"labels\":{\"app\":\"client\"},\"addresses\":["
					"\"198.18.1.%d\"]}",
					i > 1 ? "," : "", i, i);
	snprintf(n2 + len, sizeof(n2) - len, "]}");
	const char *const inventories[] = {
	    "{\"node\":\"n1\",\"endpoints\":[{\"name\":\"web\",\"labels\":{\"app\":\"x\"},\"addresses\":["
	    "\"198.18.0.10\"]}]}",
	    n2};
	return scenario_compile_nodes(policy, inventories, 2, "n1", 0);
}

/* ---- the fake core ---- */

static struct {
	unsigned taken, rejected, changed;
	char taken_hash[BUNDLE_HASH_HEX + 1];
	int64_t taken_revision, rejected_revision;
	char rejected_error[600];
} core;

static void core_take(void *c, enum bundle_origin from, struct bundle *b, int64_t revision)
{
	core.taken++;
	snprintf(core.taken_hash, sizeof(core.taken_hash), "%s", b->hash);
	core.taken_revision = revision;
	bundle_free(b);
}

static void core_rejected(void *c, enum bundle_origin from, int64_t revision, const char *error)
{
	core.rejected++;
	core.rejected_revision = revision;
	snprintf(core.rejected_error, sizeof(core.rejected_error), "%s", error);
}

static void core_changed(void *c)
{
	core.changed++;
}

static const struct session_peer peer = {
    .bundles = {.take = core_take, .rejected = core_rejected},
    .changed = core_changed,
};

/* ---- the fake children: the test holds their end ---- */

struct got {
	uint16_t type;
	uint8_t *p;
	size_t len;
};

static struct kids {
	unsigned spawned, killed;
	int fd; /* the current child's end; -1: none */
	struct chan *chan;
	struct got got[256];
	size_t n_got;
	bool fail;
} kids = {.fd = -1};

static ssize_t kid_limit(void *data, uint16_t type)
{
	return 1 << 30;
}

static int kid_message(void *data, uint16_t type, const uint8_t *p, size_t len)
{
	if (kids.n_got < BH_ARRAY_SIZE(kids.got)) {
		struct got *g = &kids.got[kids.n_got++];
		g->type = type;
		g->p = malloc(len ? len : 1);
		memcpy(g->p, p, len);
		g->len = len;
	}
	return 0;
}

static void kid_closed(void *data, int error)
{
}

static const struct chan_callbacks kid_cb = {
    .limit = kid_limit, .message = kid_message, .closed = kid_closed};

static void forget_got(void)
{
	for (size_t i = 0; i < kids.n_got; i++)
		free(kids.got[i].p);
	kids.n_got = 0;
}

static int fake_spawn(void *arg, int *fd, pid_t *pid)
{
	if (kids.fail)
		return -EAGAIN;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	chan_free(kids.chan); /* the last one is killed first */
	kids.chan = chan_new(NULL, sv[1], &kid_cb, NULL);
	kids.fd = sv[1];
	kids.spawned++;
	forget_got();
	*fd = sv[0];
	*pid = 4000 + (pid_t)kids.spawned;
	return 0;
}

static void fake_kill(void *arg)
{
	kids.killed++;
}

static const struct session_children children = {.spawn = fake_spawn, .kill = fake_kill, .user = "tester"};

/* The child dies: its end closes. */
static void kid_dies(void)
{
	chan_free(kids.chan);
	kids.chan = NULL;
	kids.fd = -1;
}

/* What the proxy sent the current child so far. */
static void kid_reads(void)
{
	if (kids.chan)
		while (chan_read(kids.chan, 64) > 0)
			;
}

static const struct got *kid_got(uint16_t type, size_t nth)
{
	for (size_t i = 0; i < kids.n_got; i++)
		if (kids.got[i].type == type && nth-- == 0)
			return &kids.got[i];
	return NULL;
}

/* A raw record from the child: header fields as given, payload p. */
static void kid_record(uint16_t type, uint16_t flags, uint32_t len, uint32_t total, const void *p, size_t n)
{
	uint8_t buf[CHAN_RECORD_MAX + 4096];
	memcpy(buf, &type, 2);
	memcpy(buf + 2, &flags, 2);
	memcpy(buf + 4, &len, 4);
	memcpy(buf + 8, &total, 4);
	if (n)
		memcpy(buf + CHAN_HEADER_LEN, p, n);
	CHECK(send(kids.fd, buf, CHAN_HEADER_LEN + n, MSG_NOSIGNAL) == (ssize_t)(CHAN_HEADER_LEN + n));
}

static void kid_send(uint16_t type, const struct chan_buf *b)
{
	chan_send(kids.chan, type, b ? b->p : NULL, b ? b->len : 0);
	while (chan_flush(kids.chan) == 1)
		;
}

/* ---- driving the loop ---- */

struct until {
	struct loop *loop;
	bool (*cond)(void);
};

static void check_until(void *data, uint32_t events)
{
	struct until *u = data;
	if (u->cond())
		loop_quit(u->loop, 0);
}

static void give_up(void *data, uint32_t events)
{
	loop_quit(data, 1);
}

/* Runs the loop until cond holds (true), or for ms (false). */
static bool run_until(struct loop *l, bool (*cond)(void), unsigned ms)
{
	struct until u = {l, cond};
	struct loop_source *t = loop_add_timer(l, 5, check_until, &u);
	struct loop_source *g = loop_add_timer(l, ms, give_up, l);
	int r = loop_run(l);
	loop_remove(l, t);
	loop_remove(l, g);
	return r == 0;
}

static bool never(void)
{
	return false;
}

/* ---- the world ---- */

static struct link_options link_o = {.endpoint = "tcp://127.0.0.1:1", .insecure = true};
static struct session_options opts = {.node = "n1", .flow_window_ms = 1000, .link = &link_o};

struct world {
	struct loop *loop;
	struct session *s;
	struct bundle *b;
};

static void world_up(struct world *w)
{
	memset(&core, 0, sizeof(core));
	forget_got();
	kids.spawned = kids.killed = 0;
	kids.fail = false;
	w->loop = loop_new();
	w->s = session_proxy_new_with(w->loop, &opts, &children, &peer, NULL);
	w->b = compile_for("n1", 80);
	session_in_force(w->s, w->b, 3, true);
	session_endpoints(w->s, json_pack("[{s:s}]", "name", "web"));
	CHECK(session_start(w->s) == 0);
	CHECK(kids.spawned == 1);
	kid_reads();
}

static void world_down(struct world *w)
{
	session_free(w->s);
	loop_free(w->loop);
	bundle_free(w->b);
	kid_dies();
	forget_got();
}

/* status.json's controller.session.KEY (or .from_child.KEY) */
static long long session_count(struct session *s, const char *group, const char *key)
{
	json_t *c = NULL, *f = NULL;
	session_status(s, &c, &f);
	json_t *o = json_object_get(c, "session");
	if (group)
		o = json_object_get(o, group);
	long long v =
	    json_is_integer(json_object_get(o, key)) ? json_integer_value(json_object_get(o, key)) : -1;
	json_decref(c);
	json_decref(f);
	return v;
}

/* ---- the channel ---- */

static int collect(void *data, uint16_t type, const uint8_t *p, size_t len)
{
	struct got *g = data;
	g->type = type;
	g->p = malloc(len ? len : 1);
	memcpy(g->p, p, len);
	g->len = len;
	return 0;
}

static const struct chan_callbacks collect_cb = {
    .limit = kid_limit, .message = collect, .closed = kid_closed};

TEST(a_message_of_many_records_arrives_whole)
{
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
	struct got g = {0};
	struct chan *a = chan_new(NULL, sv[0], &collect_cb, NULL),
		    *b = chan_new(NULL, sv[1], &collect_cb, &g);
	size_t n = 3 * CHAN_RECORD_MAX + 17;
	uint8_t *big = malloc(n);
	for (size_t i = 0; i < n; i++)
		big[i] = (uint8_t)(i * 7);
	chan_send(a, 9, big, n);
	while (!g.p) {
		int w = chan_flush(a);
		CHECK(w >= 0);
		CHECK(chan_read(b, 64) >= 0);
	}
	CHECK(g.type == 9);
	CHECK(g.len == n && memcmp(g.p, big, n) == 0);
	CHECK(chan_stats(b)->messages_in == 1 && chan_stats(b)->malformed == 0);
	free(g.p);
	g = (struct got){0};
	chan_send(a, 10, NULL, 0); /* an empty message is a message */
	CHECK(chan_read(b, 64) >= 0);
	CHECK(g.type == 10 && g.len == 0);
	free(g.p);
	free(big);
	chan_free(a);
	chan_free(b);
}

/* ---- the proxy ---- */

TEST(a_new_child_hears_the_bundle_the_endpoints_then_start)
{
	struct world w;
	world_up(&w);
	CHECK(kids.n_got == 3);
	CHECK(kids.got[0].type == PS_IN_FORCE && kids.got[1].type == PS_ENDPOINTS &&
	      kids.got[2].type == PS_START);
	struct chan_in in = chan_in(kids.got[0].p, kids.got[0].len);
	CHECK(chan_get_u64(&in) == 3);
	CHECK(chan_get_u8(&in) == 1);
	CHECK_STR(chan_get_str(&in, 64, NULL), w.b->hash);
	CHECK(chan_get_u8(&in) == 1); /* with its text: the child holds nothing yet */
	size_t n;
	const uint8_t *text = chan_get_rest(&in, &n);
	struct diag d;
	diag_init(&d, "t");
	struct bundle *b = bundle_decode((const char *)text, n, &d);
	diag_release(&d);
	CHECK(b && strcmp(b->hash, w.b->hash) == 0);
	bundle_free(b);
	/* The same again says nothing new: not sent. */
	session_in_force(w.s, w.b, 3, true);
	kid_reads();
	CHECK(kids.n_got == 3);
	world_down(&w);
}

static void put_bundle(struct chan_buf *m, int64_t revision, const struct bundle *b)
{
	char *text = bundle_encode(b, false);
	chan_put_u64(m, (uint64_t)revision);
	chan_put(m, text, strlen(text));
	free(text);
}

static bool core_took(void)
{
	return core.taken > 0;
}

TEST(a_bundle_from_the_child_is_decoded_checked_and_taken)
{
	struct world w;
	world_up(&w);
	struct bundle *b = compile_for("n1", 81); /* not the one in force */
	struct chan_buf m = {0};
	put_bundle(&m, 7, b);
	kid_send(PS_BUNDLE, &m);
	chan_buf_free(&m);
	CHECK(run_until(w.loop, core_took, 2000));
	CHECK(core.taken == 1 && core.taken_revision == 7);
	CHECK_STR(core.taken_hash, b->hash);
	/* The core makes it the bundle in force: the child has it, no text. */
	forget_got();
	session_in_force(w.s, b, 7, true);
	kid_reads();
	const struct got *g = kid_got(PS_IN_FORCE, 0);
	CHECK(g != NULL);
	if (g) {
		struct chan_in in = chan_in(g->p, g->len);
		chan_get_u64(&in);
		chan_get_u8(&in);
		chan_get_str(&in, 64, NULL);
		CHECK(chan_get_u8(&in) == 0);
		CHECK(chan_in_done(&in));
	}
	bundle_free(b);
	world_down(&w);
}

static bool core_rejected_one(void)
{
	return core.rejected > 0;
}

/* PS_DELTA: revision, base, hash, and the sets that turn from into to. */
static void put_delta(struct chan_buf *m, int64_t revision, const struct bundle *from,
		      const struct bundle *to, const char *hash)
{
	json_t *a = bundle_to_json(from), *b = bundle_to_json(to);
	json_t *sets = proto_delta_make(a, b);
	char *text = json_dumps(sets, JSON_COMPACT);
	chan_put_u64(m, (uint64_t)revision);
	chan_put_str(m, from->hash);
	chan_put_str(m, hash ? hash : to->hash);
	chan_put(m, text, strlen(text));
	free(text);
	json_decref(sets);
	json_decref(a);
	json_decref(b);
}

static bool child_asked_resend(void)
{
	kid_reads();
	return kid_got(PS_RESEND, 0) != NULL;
}

/* A delta from the child is applied here to the bundle in force: taken
 * when the result has the hash the child names, refused when it does not;
 * made from another bundle than the one in force, the whole is asked for. */
TEST(a_delta_from_the_child_is_applied_to_the_bundle_in_force)
{
	struct world w;
	world_up(&w);
	struct bundle *two = compile_members(2), *three = compile_members(3), *four = compile_members(4);
	CHECK(two && three && four);
	if (!two || !three || !four)
		goto out;
	session_in_force(w.s, two, 4, true);
	kid_reads();
	struct chan_buf m = {0};
	put_delta(&m, 5, two, three, NULL);
	kid_send(PS_DELTA, &m);
	chan_buf_free(&m);
	CHECK(run_until(w.loop, core_took, 2000));
	CHECK(core.taken == 1 && core.taken_revision == 5);
	CHECK_STR(core.taken_hash, three->hash);

	/* The result is not what the child names. */
	memset(&m, 0, sizeof(m));
	put_delta(&m, 6, two, three, four->hash);
	kid_send(PS_DELTA, &m);
	chan_buf_free(&m);
	CHECK(run_until(w.loop, core_rejected_one, 2000));
	CHECK(core.taken == 1 && core.rejected_revision == 6);
	CHECK(strstr(core.rejected_error, "hash mismatch") != NULL);

	/* Sets that are no list, and an element no bundle holds. */
	static const char *const bad[] = {"{}", "[{\"id\":\"clients\",\"ipv4\":{\"add\":[\"nope\"]}}]"};
	for (size_t i = 0; i < BH_ARRAY_SIZE(bad); i++) {
		memset(&m, 0, sizeof(m));
		chan_put_u64(&m, 7 + i);
		chan_put_str(&m, two->hash);
		chan_put_str(&m, three->hash);
		chan_put(&m, bad[i], strlen(bad[i]));
		core.rejected = 0;
		kid_send(PS_DELTA, &m);
		chan_buf_free(&m);
		CHECK(run_until(w.loop, core_rejected_one, 2000));
		CHECK(core.taken == 1 && core.rejected_revision == (int64_t)(7 + i));
	}
	CHECK(session_count(w.s, "from_child", "refused") == 3);
	CHECK(session_count(w.s, "from_child", "deltas") == 1);

	/* Made from three, while two is in force: the whole, please. */
	forget_got();
	memset(&m, 0, sizeof(m));
	put_delta(&m, 9, three, four, NULL);
	kid_send(PS_DELTA, &m);
	chan_buf_free(&m);
	CHECK(run_until(w.loop, child_asked_resend, 2000));
	const struct got *g = kid_got(PS_RESEND, 0);
	if (g) {
		struct chan_in in = chan_in(g->p, g->len);
		CHECK(chan_get_u64(&in) == 9 && chan_in_done(&in));
	}
	CHECK(core.taken == 1 && session_count(w.s, "from_child", "resends") == 1);
out:
	session_in_force(w.s, w.b, 3, true);
	bundle_free(two);
	bundle_free(three);
	bundle_free(four);
	world_down(&w);
}

TEST(a_bundle_that_does_not_check_is_refused_and_the_core_told)
{
	struct world w;
	world_up(&w);
	/* For another node. */
	struct bundle *other = compile_for("n2", 80);
	struct chan_buf m = {0};
	put_bundle(&m, 8, other);
	kid_send(PS_BUNDLE, &m);
	chan_buf_free(&m);
	CHECK(run_until(w.loop, core_rejected_one, 2000));
	CHECK(core.taken == 0 && core.rejected_revision == 8);
	CHECK(strstr(core.rejected_error, "for node \"n2\"") != NULL);
	/* Its hash does not match its content. */
	char *text = bundle_encode(w.b, false);
	char *h = strstr(text, w.b->hash);
	CHECK(h != NULL);
	if (h)
		h[0] = h[0] == '0' ? '1' : '0';
	memset(&m, 0, sizeof(m));
	chan_put_u64(&m, 9);
	chan_put(&m, text, strlen(text));
	free(text);
	core.rejected = 0;
	kid_send(PS_BUNDLE, &m);
	chan_buf_free(&m);
	CHECK(run_until(w.loop, core_rejected_one, 2000));
	CHECK(core.taken == 0 && core.rejected_revision == 9);
	/* It checks, but is not spelled as the child's encoder spells it. */
	text = bundle_encode(w.b, true);
	memset(&m, 0, sizeof(m));
	chan_put_u64(&m, 10);
	chan_put(&m, text, strlen(text));
	free(text);
	core.rejected = 0;
	kid_send(PS_BUNDLE, &m);
	chan_buf_free(&m);
	CHECK(run_until(w.loop, core_rejected_one, 2000));
	CHECK(core.taken == 0 && core.rejected_revision == 10);
	CHECK(strstr(core.rejected_error, "canonical") != NULL);
	CHECK(session_count(w.s, "from_child", "refused") == 3);
	bundle_free(other);
	world_down(&w);
}

static struct session *counted_s;
static const char *counted_group, *counted_key;
static long long counted_want;
static bool counted(void)
{
	return session_count(counted_s, counted_group, counted_key) >= counted_want;
}

static bool wait_count(struct world *w, const char *group, const char *key, long long want)
{
	counted_s = w->s;
	counted_group = group;
	counted_key = key;
	counted_want = want;
	bool ok = run_until(w->loop, counted, 2000);
	if (!ok)
		fprintf(stderr, "  %s.%s: %lld, not %lld\n", group ? group : "", key,
			session_count(w->s, group, key), want);
	return ok;
}

static void put_status(struct chan_buf *m, const char *json)
{
	chan_put_u8(m, 0);
	chan_put(m, json, strlen(json));
}

static bool status_says_hello(void)
{
	json_t *c = NULL, *f = NULL;
	session_status(counted_s, &c, &f);
	bool ok = json_integer_value(json_object_get(c, "messages_received")) == 42;
	json_decref(c);
	json_decref(f);
	return ok;
}

TEST(malformed_oversized_and_truncated_messages_are_dropped_and_counted)
{
	struct world w;
	world_up(&w);
	counted_s = w.s;
	uint8_t junk[64] = {1, 2, 3, 4, 5};
	/* A record too short for its header. */
	CHECK(send(kids.fd, junk, 5, 0) == 5);
	/* A header whose length is not the record's. */
	kid_record(PS_STATUS, CHAN_FIRST, 40, 40, junk, 10);
	/* A continuation without its first record. */
	kid_record(PS_STATUS, CHAN_MORE, 10, 40, junk, 10);
	/* A type the enforcer does not take (one of its own). */
	kid_record(PS_IN_FORCE, CHAN_FIRST, 10, 10, junk, 10);
	/* Unknown flags. */
	kid_record(PS_STATUS, CHAN_FIRST | 0x80, 10, 10, junk, 10);
	CHECK(wait_count(&w, "from_child", "malformed", 5));
	/* A status longer than its limit, in records that follow: the rest
	 * of it is skipped, not taken for messages. */
	kid_record(PS_STATUS, CHAN_FIRST | CHAN_MORE, 10, PS_STATUS_MAX + 1, junk, 10);
	kid_record(PS_STATUS, CHAN_MORE, 10, PS_STATUS_MAX + 1, junk, 10);
	kid_record(PS_STATUS, 0, 10, PS_STATUS_MAX + 1, junk, 10);
	/* A record longer than any record of the channel. */
	static uint8_t big[CHAN_RECORD_MAX + 1000];
	kid_record(PS_STATUS, CHAN_FIRST, sizeof(big), sizeof(big), big, sizeof(big));
	CHECK(wait_count(&w, "from_child", "oversized", 2));
	CHECK(session_count(w.s, "from_child", "malformed") == 5);
	/* A message cut short: a new first record before its end. */
	kid_record(PS_STATUS, CHAN_FIRST | CHAN_MORE, 10, 30, junk, 10);
	kid_record(PS_STATUS, CHAN_FIRST, 0, 0, NULL, 0);
	CHECK(wait_count(&w, "from_child", "truncated", 1));
	/* Framed right, wrong inside: dropped and counted as refused. */
	struct chan_buf m = {0};
	put_status(&m, "[1, 2]"); /* not an object */
	kid_send(PS_STATUS, &m);
	chan_buf_free(&m);
	put_status(&m, "{\"controller\": 1, \"flows\": null}");
	kid_send(PS_STATUS, &m);
	chan_buf_free(&m);
	chan_put_u64(&m, 5); /* a rejection whose error is not UTF-8 */
	chan_put_str(&m, "bad \xff\xfe");
	kid_send(PS_REJECTED, &m);
	chan_buf_free(&m);
	chan_put_u64(&m, 5); /* one with bytes after its end */
	chan_put_str(&m, "fine");
	chan_put_u8(&m, 0);
	kid_send(PS_REJECTED, &m);
	chan_buf_free(&m);
	chan_put_u32(&m, 7); /* a bundle message too short for its revision */
	kid_send(PS_BUNDLE, &m);
	chan_buf_free(&m);
	CHECK(wait_count(&w, "from_child", "refused", 5));
	CHECK(core.rejected == 0 && core.taken == 0);
	/* And the channel still works: a good status is taken. */
	put_status(
	    &m,
	    "{\"controller\": {\"connected\": true, \"messages_received\": 42}, \"flows\": {\"events\": 1}}");
	kid_send(PS_STATUS, &m);
	chan_buf_free(&m);
	CHECK(run_until(w.loop, status_says_hello, 2000));
	CHECK(kids.spawned == 1); /* none of it was worth a restart */
	CHECK(session_count(w.s, "from_child", "malformed") == 5);
	CHECK(session_count(w.s, "from_child", "oversized") == 2);
	world_down(&w);
}

static bool second_child(void)
{
	return kids.spawned >= 2;
}

static bool third_child(void)
{
	return kids.spawned >= 3;
}

TEST(a_child_that_dies_is_replaced_and_told_everything_again)
{
	struct world w;
	world_up(&w);
	session_ack(w.s, 3, true, NULL, json_array(), true);
	kid_dies();
	CHECK(run_until(w.loop, second_child, 3000));
	CHECK(session_count(w.s, NULL, "deaths") == 1);
	kid_reads();
	/* The bundle again with its text (the new child holds nothing),
	 * the endpoints, START, and the last ACK. */
	CHECK(kids.n_got == 4);
	CHECK(kids.got[0].type == PS_IN_FORCE && kids.got[1].type == PS_ENDPOINTS &&
	      kids.got[2].type == PS_START && kids.got[3].type == PS_ACK);
	struct chan_in in = chan_in(kids.got[0].p, kids.got[0].len);
	chan_get_u64(&in);
	chan_get_u8(&in);
	chan_get_str(&in, 64, NULL);
	CHECK(chan_get_u8(&in) == 1);
	/* While it is down the status says so. */
	kid_dies();
	session_count(w.s, NULL, "deaths");
	CHECK(wait_count(&w, NULL, "deaths", 2));
	json_t *c = NULL, *f = NULL;
	session_status(w.s, &c, &f);
	CHECK(json_is_false(json_object_get(c, "connected")));
	CHECK(json_is_null(json_object_get(json_object_get(c, "session"), "pid")));
	json_decref(c);
	json_decref(f);
	/* The second death came soon after the first start: a longer wait. */
	run_until(w.loop, never, 300);
	CHECK(kids.spawned == 2);
	CHECK(run_until(w.loop, third_child, 3000));
	world_down(&w);
}

static bool kid_flushed(void)
{
	return !kids.chan || chan_flush(kids.chan) <= 0;
}

static bool flooded(void)
{
	return kids.spawned >= 2;
}

TEST(a_child_that_floods_is_replaced)
{
	struct world w;
	world_up(&w);
	struct chan_buf m = {0};
	put_status(&m, "{\"controller\": null, \"flows\": null}");
	for (int i = 0; i < 2500; i++) {
		chan_send(kids.chan, PS_STATUS, m.p, m.len);
		if (chan_queued(kids.chan)) /* the enforcer reads while we write */
			run_until(w.loop, kid_flushed, 1000);
	}
	chan_buf_free(&m);
	CHECK(run_until(w.loop, flooded, 3000));
	CHECK(session_count(w.s, NULL, "floods") == 1);
	world_down(&w);
}

/* ---- flow data ---- */

static struct nflog_event event(uint16_t port)
{
	struct nflog_event ev = {.family = AF_INET, .proto = IPPROTO_UDP, .has_port = true, .port = port};
	ev.src[0] = 198, ev.src[1] = 18, ev.src[3] = 2;
	ev.dst[0] = 198, ev.dst[1] = 18, ev.dst[3] = 10;
	ev.prefix.verdict = VERDICT_DROP;
	ev.prefix.dir = DIR_INGRESS;
	ev.prefix.position = NFT_POSITION_FALLBACK;
	return ev;
}

/* Counts the items of the PS_FLOWS messages the child got. */
struct items {
	unsigned tuples, packets, hits;
	uint64_t lost;
	char lost_endpoint[64];
	uint16_t last_port;
};

static bool count_items(struct items *it)
{
	memset(it, 0, sizeof(*it));
	for (size_t i = 0; i < kids.n_got; i++) {
		if (kids.got[i].type != PS_FLOWS)
			continue;
		struct chan_in in = chan_in(kids.got[i].p, kids.got[i].len);
		while (!in.bad && in.off < in.len) {
			uint8_t k = chan_get_u8(&in);
			uint16_t n;
			if (k == 'T') {
				for (int s = 0; s < 3; s++) {
					n = chan_get_u16(&in);
					if (n != PS_STR16_NULL)
						in.off += n + 1;
				}
				it->tuples++;
			} else if (k == 'P') {
				struct ps_packet p;
				chan_get_u16(&in);
				chan_get_u64(&in);
				chan_get(&in, &p, sizeof(p));
				it->packets++;
				it->last_port = p.port;
			} else if (k == 'H') {
				chan_get_u16(&in);
				chan_get_u8(&in);
				chan_get_u8(&in);
				chan_get_u64(&in);
				chan_get_u64(&in);
				chan_get_u64(&in);
				it->hits++;
			} else if (k == 'L') {
				n = chan_get_u16(&in);
				snprintf(it->lost_endpoint, sizeof(it->lost_endpoint), "%.*s", (int)n,
					 (const char *)in.p + in.off);
				in.off += n + 1;
				chan_get_u64(&in);
				it->lost += chan_get_u64(&in);
			} else {
				return false;
			}
		}
		if (in.bad)
			return false;
	}
	return true;
}

TEST(logged_packets_go_as_flow_items_one_message_a_round)
{
	struct world w;
	world_up(&w);
	forget_got();
	for (uint16_t i = 0; i < 3000; i++) {
		struct nflog_event ev = event(i);
		session_packet(w.s, "web", &ev, NULL, "default-deny", 1000 + i);
	}
	session_hit(w.s, "web", DIR_INGRESS, "in/ingress/0", "in", "allow", 5, 500, 2000);
	run_until(w.loop, never, 50);
	kid_reads();
	struct items it;
	CHECK(count_items(&it));
	CHECK(it.packets == 3000 && it.hits == 1 && it.lost == 0);
	CHECK(it.last_port == 2999);
	/* 3000 packets of ~60 bytes: a few full messages, each with its tuple. */
	CHECK(kid_got(PS_FLOWS, 2) != NULL && kid_got(PS_FLOWS, 4) == NULL);
	CHECK(it.tuples == 4); /* one per message, and the hit's */
	world_down(&w);
}

/* A child that takes nothing more (hung, or stopped on purpose) is
 * replaced once its channel has not moved for STUCK_MS (10 s). */
TEST(a_child_that_stops_reading_is_replaced)
{
	struct world w;
	world_up(&w);
	/* More than the socket holds: the rest waits in the channel. */
	for (uint32_t i = 0; i < 300000; i++) {
		struct nflog_event ev = event((uint16_t)i);
		session_packet(w.s, "web", &ev, NULL, "default-deny", 1000 + i);
		if (i % 5000 == 0)
			run_until(w.loop, never, 1);
	}
	run_until(w.loop, never, 10);
	CHECK(session_count(w.s, "to_child", "queued_bytes") > 0);
	CHECK(kids.spawned == 1 && session_count(w.s, NULL, "deaths") == 0);
	CHECK(run_until(w.loop, second_child, 15000));
	CHECK(session_count(w.s, NULL, "deaths") == 1);
	CHECK(kids.killed >= 1);
	world_down(&w);
}

TEST(packets_without_a_child_are_reported_lost_to_the_next)
{
	struct world w;
	world_up(&w);
	kids.fail = true; /* the next child cannot be made yet */
	kid_dies();
	CHECK(wait_count(&w, NULL, "deaths", 1));
	for (uint16_t i = 0; i < 10; i++) {
		struct nflog_event ev = event(i);
		session_packet(w.s, "web", &ev, NULL, "default-deny", 1000 + i);
	}
	session_hit(w.s, "web", DIR_INGRESS, "in/ingress/0", "in", "allow", 5, 500, 2000);
	CHECK(session_count(w.s, "to_child", "packets_dropped") == 10);
	kids.fail = false;
	CHECK(run_until(w.loop, second_child, 3000));
	run_until(w.loop, never, 20);
	kid_reads();
	struct items it;
	CHECK(count_items(&it));
	CHECK(it.packets == 0 && it.lost == 10 && it.hits == 1); /* the hit waited for it */
	CHECK_STR(it.lost_endpoint, "web");
	world_down(&w);
}

/* ---- stop ---- */

TEST(stop_waits_for_the_child_to_say_it_stopped)
{
	struct world w;
	world_up(&w);
	kid_send(PS_STOPPED, NULL); /* ahead of time: the test cannot answer while stop() waits */
	forget_got();
	session_stop(w.s);
	kid_reads();
	CHECK(kid_got(PS_STOP, 0) != NULL);
	CHECK(kids.killed == 0); /* it exits by itself (the spawner sees to it at the end) */
	world_down(&w);
}

/* A child that says it stopped when nobody asked is refused, and still
 * killed when it goes. */
TEST(an_unasked_stop_answer_is_refused_and_the_child_still_killed)
{
	struct world w;
	world_up(&w);
	kid_send(PS_STOPPED, NULL);
	run_until(w.loop, never, 20);
	CHECK(session_count(w.s, "from_child", "refused") == 1);
	kid_dies();
	CHECK(wait_count(&w, NULL, "deaths", 1));
	CHECK(kids.killed == 1);
	world_down(&w);
}

int main(void)
{
	log_setup("test-session-proxy", false);
	return test_main();
}
