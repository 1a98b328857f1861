/* Fuzz target: what a compromised session child sends the enforcer
 * (agent/session-proxy.c over chan.c): records of any length and content
 * on the child's end of the socketpair, read by the proxy as the agent's
 * loop runs it, then a status read and a stop.
 *
 * The input is records, each a u16 length (host order) and that many
 * bytes, sent as one SOCK_SEQPACKET record each. A record's bytes are the
 * channel's own (header and payload), so the fuzzer reaches the framing
 * and every message decoder behind it. Any bundle the proxy hands the core
 * must have been decoded and be for node n1. The enforcer holds the bundle
 * BASE_TEXT, so that a delta (PS_DELTA) made from it is applied. */
#include <errno.h>
#include <linux/sockios.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bulkhead/log.h"
#include "session-privsep.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int proxy_end = -1, child_end = -1;

static int spawn(void *arg, int *fd, pid_t *pid)
{
	int sv[2];
	if (child_end >= 0 || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -EAGAIN; /* one child per input */
	proxy_end = *fd = sv[0];
	child_end = sv[1];
	*pid = 4242;
	return 0;
}

static void kill_child(void *arg)
{
}

static void take(void *core, enum bundle_origin from, struct bundle *b, int64_t revision)
{
	if (strcmp(b->node, "n1") != 0)
		abort();
	bundle_free(b);
}

static void rejected(void *core, enum bundle_origin from, int64_t revision, const char *error)
{
	if (!error)
		abort();
}

static void changed(void *core)
{
}

static const struct session_peer peer = {.bundles = {.take = take, .rejected = rejected}, .changed = changed};

/* The bundle in force: one hosts set and one named-port table, hash
 * 8b9f733f... (tests/fuzz/corpus/privsep-delta's deltas start from it). */
static const char BASE_TEXT[] =
    "{\"format\":1,\"node\":\"n1\",\"endpoints\":[],\"sets\":[{\"id\":\"web\",\"kind\":\"hosts\",\"ipv4\":["
    "\"198.18.0.1\"],\"ipv6\":[]}],\"named_ports\":[{\"id\":\"tcp/http\",\"v4\":[[\"198.18.0.1\",80]],"
    "\"v6\":[]}],\"hash\":\"8b9f733f38a1c35cb9af30cb502f5256a2d6682a3b3fdb3a0e999b64c1817166\"}";

/* The proxy has read everything sent (or the loop gives up). */
static void drained(void *data, uint32_t events)
{
	int n = 0;
	if (ioctl(proxy_end, SIOCINQ, &n) < 0 || n == 0)
		loop_quit(data, 0);
}

static void give_up(void *data, uint32_t events)
{
	loop_quit(data, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool once;
	if (!once) {
		log_setup("fuzz-privsep", false);
		if (!getenv("FUZZ_LOG") && !freopen("/dev/null", "w", stderr)) /* the proxy's complaints */
			abort();
		once = true;
	}
	static struct link_options link = {.endpoint = "tcp://127.0.0.1:1", .insecure = true};
	static struct session_options o = {.node = "n1", .flow_window_ms = 1000, .link = &link};
	static const struct session_children kids = {.spawn = spawn, .kill = kill_child, .user = "fuzz"};
	struct loop *loop = loop_new();
	struct session *s = session_proxy_new_with(loop, &o, &kids, &peer, NULL);
	struct diag d;
	diag_init(&d, "fuzz");
	struct bundle *base = bundle_decode(BASE_TEXT, strlen(BASE_TEXT), &d);
	diag_release(&d);
	if (!base)
		abort();
	session_in_force(s, base, 1, true);
	if (session_start(s) != 0 || child_end < 0)
		abort();
	int big = 4 << 20;
	setsockopt(child_end, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	for (size_t off = 0; off + 2 <= size;) {
		uint16_t n;
		memcpy(&n, data + off, 2);
		off += 2;
		if (n > size - off)
			n = (uint16_t)(size - off);
		if (send(child_end, data + off, n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
			break;
		off += n;
	}
	struct loop_source *t = loop_add_timer(loop, 1, drained, loop);
	struct loop_source *g = loop_add_timer(loop, 2000, give_up, loop);
	loop_run(loop);
	loop_remove(loop, t);
	loop_remove(loop, g);
	json_t *c = NULL, *f = NULL;
	session_status(s, &c, &f);
	json_decref(c);
	json_decref(f);
	close(child_end); /* the stop that follows does not wait */
	child_end = -1;
	session_stop(s);
	session_free(s);
	bundle_free(base);
	loop_free(loop);
	return 0;
}
