/* nft-apply: loads one endpoint of a bundle into a namespace the way the
 * agent does, either whole or as the update from an older bundle
 * (nft_batch_build_update), and says which it was. For the dataplane-delta
 * integration test and the benchmarks; not an operator tool.
 *
 *   nft-apply [--apply-old] [--fallback] [--linear] [--nflog-group N] NETNS ENDPOINT OLD|- NEW
 *
 * OLD "-": a full build of NEW. Otherwise the update OLD -> NEW, which
 * assumes the namespace holds OLD's table; --apply-old loads it first.
 * --fallback: when the kernel rejects a delta, send the full replace, as
 * the agent does. --linear: the form whose chains are lists of rules
 * (nft.h), instead of verdict maps. --verify: then read the table back
 * and compare it with a fresh build of NEW (nft_batch_verify), printing
 * "verify: same" or "verify: differs: WHAT" (exit 1). Prints one line per
 * transaction:
 *   old: full added=N removed=0 messages=N bytes=N
 *   update: delta added=N removed=N messages=N bytes=N
 *   update: full ...
 *   update: rejected: REASON
 *   fallback: full ...
 * Exit 0 when the last transaction committed, 1 otherwise, 2 on usage. */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/netlink.h>

#include <libmnl/libmnl.h>

#include "bulkhead/bundle.h"
#include "bulkhead/diag.h"
#include "bulkhead/fileio.h"
#include "netns.h"
#include "nft.h"

#define BUNDLE_MAX_BYTES (256u << 20)

static struct bundle *load_bundle(const char *path)
{
	struct bundle *b = NULL;
	struct diag d;
	char *text;
	size_t n;

	if (fileio_read(path, BUNDLE_MAX_BYTES, &text, &n) < 0) {
		fprintf(stderr, "nft-apply: %s: cannot read a bundle there\n", path);
		return NULL;
	}
	diag_init(&d, path);
	b = bundle_decode(text, n, &d);
	if (!b)
		diag_print(&d, stderr);
	diag_release(&d);
	free(text);
	return b;
}

static const struct bundle_endpoint *find_endpoint(const struct bundle *b, const char *name, const char *path)
{
	const struct bundle_endpoint *ep = bundle_find_endpoint(b, name);

	if (!ep)
		fprintf(stderr, "nft-apply: %s has no endpoint %s\n", path, name);
	return ep;
}

static void print_stats(const char *what, const char *kind, const struct nft_batch *nb)
{
	struct nft_batch_stats st;

	nft_batch_stats(nb, &st);
	printf("%s: %s added=%zu removed=%zu messages=%zu bytes=%zu\n", what, kind, st.elements_added,
	       st.elements_removed, st.messages, st.bytes);
}

static int send_batch(struct netns *ns, const char *path, struct nft_batch *nb, const char *what)
{
	struct mnl_socket *nl;
	int r;

	struct netns_id id;
	int fd = netns_open(ns, path, &id);

	r = fd < 0 ? fd : netns_mnl_open(ns, fd, NETLINK_NETFILTER, &nl);
	if (fd >= 0)
		close(fd);
	if (r < 0) {
		printf("%s: rejected: opening netlink in %s: %s\n", what, path, strerror(-r));
		return r;
	}
	r = nft_batch_send(nb, nl);
	mnl_socket_close(nl);
	if (r < 0)
		printf("%s: rejected: %s\n", what, nft_batch_error(nb));
	return r;
}

static int apply_full(struct netns *ns, const char *path, struct nft_batch *nb, const struct bundle *b,
		      const struct bundle_endpoint *ep, const char *what)
{
	if (nft_batch_build(nb, b, ep) < 0) {
		printf("%s: build failed: %s\n", what, nft_batch_error(nb));
		return -EINVAL;
	}
	print_stats(what, "full", nb);
	return send_batch(ns, path, nb, what);
}

/* The table read back against a fresh build of (b, ep). */
static int verify_table(struct netns *ns, const char *path, struct nft_batch *nb, const struct bundle *b,
			const struct bundle_endpoint *ep)
{
	struct mnl_socket *nl;
	struct netns_id id;
	uint32_t gen;
	bool same = false;
	int fd = netns_open(ns, path, &id), r;

	r = fd < 0 ? fd : netns_mnl_open(ns, fd, NETLINK_NETFILTER, &nl);
	if (fd >= 0)
		close(fd);
	if (r == 0) {
		r = nft_batch_verify(nb, b, ep, nl, &gen, &same);
		mnl_socket_close(nl);
	}
	if (r < 0) {
		printf("verify: failed: %s\n", strerror(-r));
		return r;
	}
	if (!same) {
		printf("verify: differs: %s\n", nft_batch_error(nb));
		return -EINVAL;
	}
	printf("verify: same\n");
	return 0;
}

static void usage(FILE *f)
{
	fputs("usage: nft-apply [--apply-old] [--fallback] [--linear] [--verify] [--nflog-group N] NETNS "
	      "ENDPOINT "
	      "OLD|- NEW\n",
	      f);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"apply-old", no_argument, NULL, 'a'},
	    {"fallback", no_argument, NULL, 'f'},
	    {"linear", no_argument, NULL, 'l'},
	    {"nflog-group", required_argument, NULL, 'g'},
	    {"verify", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	bool apply_old = false, fallback = false, full = false, linear = false, verify = false;
	const struct bundle_endpoint *old_ep = NULL, *ep;
	struct bundle *old_b = NULL, *b = NULL;
	const char *path, *name;
	struct nft_batch *nb = NULL;
	struct netns *ns = NULL;
	unsigned long group = NFT_NFLOG_GROUP_DEFAULT;
	int c, r, ret = 1;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'a':
			apply_old = true;
			break;
		case 'f':
			fallback = true;
			break;
		case 'l':
			linear = true;
			break;
		case 'v':
			verify = true;
			break;
		case 'g': {
			char *end;

			group = strtoul(optarg, &end, 10);
			if (*end || end == optarg || group > UINT16_MAX) {
				usage(stderr);
				return 2;
			}
			break;
		}
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (argc - optind != 4) {
		usage(stderr);
		return 2;
	}
	path = argv[optind];
	name = argv[optind + 1];

	b = load_bundle(argv[optind + 3]);
	if (!b || !(ep = find_endpoint(b, name, argv[optind + 3])))
		goto out;
	if (strcmp(argv[optind + 2], "-") != 0) {
		old_b = load_bundle(argv[optind + 2]);
		if (!old_b || !(old_ep = find_endpoint(old_b, name, argv[optind + 2])))
			goto out;
	}
	nb = nft_batch_new((uint16_t)group);
	ns = netns_new();
	if (!nb || !ns) {
		fprintf(stderr, "nft-apply: %s\n", nb ? strerror(errno) : "out of memory");
		goto out;
	}
	nft_batch_set_form(nb, linear ? NFT_FORM_LINEAR : NFT_FORM_MAPS);

	if (!old_b) {
		ret = apply_full(ns, path, nb, b, ep, "update") < 0;
		goto check;
	}
	if (apply_old && apply_full(ns, path, nb, old_b, old_ep, "old") < 0)
		goto out;
	if (nft_batch_build_update(nb, old_b, old_ep, b, ep, &full) < 0) {
		printf("update: build failed: %s\n", nft_batch_error(nb));
		goto out;
	}
	print_stats("update", full ? "full" : "delta", nb);
	r = send_batch(ns, path, nb, "update");
	if (r < 0 && fallback && !full)
		r = apply_full(ns, path, nb, b, ep, "fallback");
	ret = r < 0;

check:
	if (ret == 0 && verify)
		ret = verify_table(ns, path, nb, b, ep) < 0;
out:
	nft_batch_free(nb);
	netns_free(ns);
	bundle_free(old_b);
	bundle_free(b);
	return ret;
}
