/* conntrack-cut: what cutting live connections adds to an apply, measured
 * the way the agent does it (the nft dataplane's apply, then
 * conntrack_cut_ns(): one dump, every entry judged by the evaluator, the
 * doomed deleted). For bench/conntrack-cut.sh; not an operator tool.
 *
 *   conntrack-cut SERVER_NS CLIENT_NS EMPTY_NS ENDPOINT A CUT NOCUT TARGET PORT FILL ROUNDS
 *
 * ENDPOINT of bundle A is loaded into SERVER_NS; FILL UDP datagrams from
 * CLIENT_NS to TARGET ports 10000.. (which A allows) make FILL tracked
 * connections there. Each round, in alternating order:
 *   cut    A -> CUT, which stops allowing udp/PORT, where one connection
 *          (a datagram sent just before) is tracked: 1 of FILL+1 cut
 *   nocut  A -> NOCUT, which stops allowing something nothing uses: the
 *          same kind of apply (one port less), nothing to cut
 * each timed as the apply (commit) and the cut (dump, judging, delete),
 * then A put back untimed. And the cut alone in EMPTY_NS (a table with no
 * connection): what asking costs. Prints one line per sample:
 *   sample cut|nocut|empty apply_us=N cut_us=N entries=N deleted=N
 * Exit 0, 1 on a failure (said on stderr), 2 on usage. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bulkhead/bundle.h"
#include "bulkhead/diag.h"
#include "bulkhead/fileio.h"
#include "bulkhead/log.h"
#include "conntrack.h"
#include "dataplane.h"

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void fail(const char *what, const char *why)
{
	fprintf(stderr, "conntrack-cut: %s: %s\n", what, why);
	exit(1);
}

static struct bundle *load(const char *path)
{
	char *text;
	size_t n;
	struct diag d;
	if (fileio_read(path, 256u << 20, &text, &n) < 0)
		fail(path, "cannot read a bundle there");
	diag_init(&d, path);
	struct bundle *b = bundle_decode(text, n, &d);
	if (!b)
		diag_print(&d, stderr), fail(path, "not a bundle");
	diag_release(&d);
	free(text);
	return b;
}

static struct dataplane *dp;

static struct dataplane_ep *open_ep(const char *name, const char *path)
{
	static const struct dataplane_events none = {0};
	struct dataplane_ep *ep;
	struct netns_id id;
	char err[512] = "";
	if (dataplane_open(dp, name, path, &ep, &id, err, sizeof(err)) < 0 ||
	    dataplane_attach(ep, 0, &none, NULL, err, sizeof(err)) < 0)
		fail(path, err[0] ? err : "cannot open");
	return ep;
}

static uint64_t apply(struct dataplane_ep *ep, const char *name, const struct bundle *old_b,
		      const struct bundle *b)
{
	struct nft_tag tag = {.serial = 1, .revision = 1};
	memcpy(tag.hash, b->hash, sizeof(tag.hash));
	struct dataplane_apply req = {.name = name,
				      .old_b = old_b,
				      .old_ep = old_b ? bundle_find_endpoint(old_b, name) : NULL,
				      .b = b,
				      .ep = bundle_find_endpoint(b, name),
				      .tag = &tag};
	struct dataplane_result res;
	uint64_t t0 = now_us();
	if (dataplane_apply(ep, &req, &res) < 0)
		fail("apply", res.error);
	return now_us() - t0;
}

static uint64_t cut(struct dataplane_ep *ep, const char *name, const struct bundle *b,
		    struct conntrack_cut_stats *st)
{
	const struct bh_addr *local;
	size_t n_local;
	char err[512] = "";
	const struct bundle_endpoint *bep = bundle_find_endpoint(b, name);
	if (!dataplane_local_addresses(ep, &local, &n_local))
		local = bep->addrs, n_local = bep->n_addrs;
	if (conntrack_cut_ns(ep, name, b, bep, local, n_local, NULL, NULL, st, err, sizeof(err)) < 0)
		fail("cut", err);
	return st->us;
}

/* Datagrams from the client's namespace. */
static struct netns *ns;
static int client_fd = -1;

static int client_socket(void *arg)
{
	int *fd = arg;
	*fd = socket(AF_INET, SOCK_DGRAM, 0);
	return *fd < 0 ? -errno : 0;
}

static void send_to(const char *addr, unsigned port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	inet_pton(AF_INET, addr, &sin.sin_addr);
	if (sendto(client_fd, "x", 1, 0, (struct sockaddr *)&sin, sizeof(sin)) < 0)
		fail("sendto", strerror(errno));
}

static void sample(const char *what, uint64_t apply_us, const struct conntrack_cut_stats *st)
{
	printf("sample %s apply_us=%llu cut_us=%llu entries=%zu deleted=%zu\n", what,
	       (unsigned long long)apply_us, (unsigned long long)st->us, st->entries, st->deleted);
}

int main(int argc, char **argv)
{
	if (argc != 12) {
		fprintf(stderr,
			"usage: conntrack-cut SERVER_NS CLIENT_NS EMPTY_NS ENDPOINT A CUT NOCUT TARGET PORT "
			"FILL ROUNDS\n");
		return 2;
	}
	log_setup("conntrack-cut", false);
	const char *name = argv[4], *target = argv[8];
	unsigned port = (unsigned)atoi(argv[9]), fill = (unsigned)atoi(argv[10]);
	int rounds = atoi(argv[11]);
	struct bundle *a = load(argv[5]), *bc = load(argv[6]), *bn = load(argv[7]);
	struct loop *loop = loop_new();
	dp = dataplane_nft_new(loop, 100);
	ns = netns_new();
	if (!dp || !ns || !loop)
		fail("setup", strerror(errno));
	struct dataplane_ep *srv = open_ep(name, argv[1]), *empty = open_ep(name, argv[3]);
	struct netns_id id;
	int cfd = netns_open(ns, argv[2], &id);
	if (cfd < 0 || netns_run(ns, cfd, client_socket, &client_fd) < 0)
		fail(argv[2], "cannot open a socket there");
	apply(srv, name, NULL, a);
	apply(empty, name, NULL, a);
	for (unsigned i = 0; i < fill; i++)
		send_to(target, 10000 + i);
	usleep(200000);
	struct conntrack_cut_stats st;
	cut(srv, name, a, &st);
	fprintf(stderr, "conntrack-cut: %zu connections tracked in %s\n", st.entries, argv[1]);
	if (st.entries < fill)
		fail("fill", "fewer connections tracked than datagrams sent");
	for (int r = 0; r < rounds; r++) {
		for (int k = 0; k < 2; k++) {
			bool cutting = (k == 0) == (r % 2 == 0);
			const struct bundle *b = cutting ? bc : bn;
			send_to(target, port); /* the connection CUT no longer allows */
			usleep(20000);
			uint64_t ap = apply(srv, name, a, b);
			cut(srv, name, b, &st);
			sample(cutting ? "cut" : "nocut", ap, &st);
			if (st.deleted != (cutting ? 1u : 0u))
				fail("round", "not the one connection cut that was expected");
			apply(srv, name, b, a);
		}
		uint64_t ap = apply(empty, name, a, bn);
		cut(empty, name, bn, &st);
		sample("empty", ap, &st);
		apply(empty, name, bn, a);
	}
	dataplane_close(srv);
	dataplane_close(empty);
	dataplane_free(dp);
	netns_free(ns);
	loop_free(loop);
	bundle_free(a), bundle_free(bc), bundle_free(bn);
	close(client_fd);
	close(cfd);
	return 0;
}
