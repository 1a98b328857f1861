/* bulkhead-agent: applies a node's bundle to its endpoints' namespaces
 * (DESIGN §3). Set-up only: options, objects, one pass over endpoints. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <linux/netlink.h>

#include <libmnl/libmnl.h>

#include "bulkhead/bundle.h"
#include "bulkhead/diag.h"
#include "bulkhead/inventory.h"
#include "netns.h"
#include "nft.h"

#define PROG "bulkhead-agent"
/* A bundle is outside input: refuse absurd sizes before reading them. */
#define BUNDLE_MAX_BYTES (256u << 20)

enum dataplane {
	DATAPLANE_NFT,
	DATAPLANE_NULL, /* build every batch, touch no kernel state */
};

struct options {
	const char *bundle_path;
	const char *inventory_path;
	const char *node;
	enum dataplane dataplane;
	uint16_t nflog_group;
	bool print_ruleset;
	bool once;
};

__attribute__((format(printf, 1, 2))) static void log_error(const char *fmt, ...)
{
	va_list ap;

	fputs(PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

#define log_info log_error

static void *xmalloc(size_t size)
{
	void *p = malloc(size ? size : 1);

	if (!p) {
		fputs(PROG ": out of memory\n", stderr);
		abort();
	}
	return p;
}

static void usage(FILE *out)
{
	fputs("usage: " PROG " --bundle FILE --inventory FILE --node NAME\n"
	      "                      [--dataplane nft|null] [--nflog-group N] [--print-ruleset] [--once]\n"
	      "\n"
	      "  --bundle FILE       the node's bundle (from `bulkhead policy compile` or the controller)\n"
	      "  --inventory FILE    local endpoints and their namespaces\n"
	      "  --node NAME         this node; must match the bundle\n"
	      "  --dataplane nft     load one table inet " NFT_TABLE_NAME " per endpoint (default)\n"
	      "  --dataplane null    build every batch but touch no kernel state\n"
	      "  --nflog-group N     NFLOG group for drops and audits (default 100)\n"
	      "  --print-ruleset     print each endpoint's ruleset as nft text and exit\n"
	      "                      (without --inventory: every endpoint of the bundle)\n"
	      "  --once              apply once and exit (the daemon loop is not built yet)\n",
	      out);
}

static int read_file(const char *path, char **text, size_t *len)
{
	struct stat st;
	FILE *f = fopen(path, "re");
	char *buf;
	size_t n;

	if (!f)
		return -errno;
	if (fstat(fileno(f), &st) < 0) {
		int e = errno;

		fclose(f);
		return -e;
	}
	if (!S_ISREG(st.st_mode) || (size_t)st.st_size > BUNDLE_MAX_BYTES) {
		fclose(f);
		return S_ISREG(st.st_mode) ? -EFBIG : -EINVAL;
	}
	buf = xmalloc((size_t)st.st_size + 1);
	n = fread(buf, 1, (size_t)st.st_size, f);
	if (ferror(f)) {
		free(buf);
		fclose(f);
		return -EIO;
	}
	fclose(f);
	buf[n] = '\0';
	*text = buf;
	*len = n;
	return 0;
}

static struct bundle *load_bundle(const char *path)
{
	struct bundle *b;
	struct diag d;
	size_t len = 0;
	char *text = NULL;
	int r;

	r = read_file(path, &text, &len);
	if (r < 0) {
		log_error("reading bundle %s: %s", path, strerror(-r));
		return NULL;
	}
	diag_init(&d, path);
	b = bundle_decode(text, len, &d);
	free(text);
	if (!b) {
		log_error("bundle %s rejected:", path);
		diag_print(&d, stderr);
	}
	diag_release(&d);
	return b;
}

static struct inventory *load_inventory(const char *path, const char *node)
{
	struct inventory *inv = inventory_new();
	struct diag d;

	if (!inv) {
		log_error("out of memory");
		return NULL;
	}
	diag_init(&d, path);
	if (inventory_load_file(inv, path, node, 0, &d) < 0 || inventory_finish(inv, &d) < 0) {
		log_error("inventory %s rejected:", path);
		diag_print(&d, stderr);
		diag_release(&d);
		inventory_free(inv);
		return NULL;
	}
	diag_release(&d);
	return inv;
}

static int print_ruleset(const struct bundle *b, const struct bundle_endpoint *ep, const struct endpoint *iep,
			 uint16_t group)
{
	char *text;
	int r = nft_render_text(b, ep, group, &text);

	if (r < 0) {
		log_error("endpoint %s: rendering ruleset: %s", ep->name, strerror(-r));
		return r;
	}
	printf("# endpoint %s%s%s\n%s", ep->name, iep && iep->netns ? " netns " : "",
	       iep && iep->netns ? iep->netns : "", text);
	free(text);
	return 0;
}

/* One endpoint, one transaction. Logs its own failure; returns 0 or < 0. */
static int apply_endpoint(const struct options *o, struct netns *ns, struct nft_batch *nb,
			  const struct bundle *b, const struct bundle_endpoint *ep,
			  const struct endpoint *iep)
{
	struct nft_batch_stats st;
	struct mnl_socket *nl;
	int r;

	r = nft_batch_build(nb, b, ep);
	if (r < 0) {
		log_error("endpoint %s: %s", ep->name, nft_batch_error(nb));
		return r;
	}
	nft_batch_stats(nb, &st);
	if (o->dataplane == DATAPLANE_NULL) {
		log_info("endpoint %s: built %zu rules, %zu sets, %zu elements (%zu bytes); null dataplane, "
			 "not sent",
			 ep->name, st.rules, st.sets, st.elements, st.bytes);
		return 0;
	}
	if (!iep->netns) {
		log_error("endpoint %s: inventory gives no netns", ep->name);
		return -EINVAL;
	}
	r = netns_mnl_open(ns, iep->netns, NETLINK_NETFILTER, &nl);
	if (r < 0) {
		log_error("endpoint %s: opening netlink in %s: %s", ep->name, iep->netns, strerror(-r));
		return r;
	}
	r = nft_batch_send(nb, nl);
	mnl_socket_close(nl);
	if (r < 0) {
		log_error("endpoint %s (%s): %s", ep->name, iep->netns, nft_batch_error(nb));
		return r;
	}
	log_info("endpoint %s: applied %zu rules, %zu sets, %zu elements", ep->name, st.rules, st.sets,
		 st.elements);
	return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
	/* clang-format off */
	static const struct option longopts[] = {
		{"bundle", required_argument, NULL, 'b'},
		{"inventory", required_argument, NULL, 'i'},
		{"node", required_argument, NULL, 'n'},
		{"dataplane", required_argument, NULL, 'd'},
		{"nflog-group", required_argument, NULL, 'g'},
		{"print-ruleset", no_argument, NULL, 'p'},
		{"once", no_argument, NULL, 'o'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	/* clang-format on */
	int c;

	*o = (struct options){.dataplane = DATAPLANE_NFT, .nflog_group = NFT_NFLOG_GROUP_DEFAULT};
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'b':
			o->bundle_path = optarg;
			break;
		case 'i':
			o->inventory_path = optarg;
			break;
		case 'n':
			o->node = optarg;
			break;
		case 'd':
			if (strcmp(optarg, "nft") == 0) {
				o->dataplane = DATAPLANE_NFT;
			} else if (strcmp(optarg, "null") == 0) {
				o->dataplane = DATAPLANE_NULL;
			} else {
				log_error("--dataplane: expected nft or null, not \"%s\"", optarg);
				return -EINVAL;
			}
			break;
		case 'g': {
			char *end;
			unsigned long v;

			errno = 0;
			v = strtoul(optarg, &end, 10);
			if (errno || *end || end == optarg || v > UINT16_MAX) {
				log_error("--nflog-group: expected 0..65535, not \"%s\"", optarg);
				return -EINVAL;
			}
			o->nflog_group = (uint16_t)v;
			break;
		}
		case 'p':
			o->print_ruleset = true;
			break;
		case 'o':
			o->once = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		log_error("unexpected argument \"%s\"", argv[optind]);
		return -EINVAL;
	}
	if (!o->bundle_path || !o->node || (!o->inventory_path && !o->print_ruleset)) {
		log_error("--bundle, --inventory and --node are required");
		usage(stderr);
		return -EINVAL;
	}
	if (!o->once && !o->print_ruleset) {
		log_error("the daemon loop does not exist yet: use --once or --print-ruleset");
		return -EINVAL;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct inventory *inv = NULL;
	struct nft_batch *nb = NULL;
	struct netns *ns = NULL;
	struct bundle *b = NULL;
	struct options o;
	size_t failed = 0, applied = 0;
	int ret = 1;

	if (parse_options(argc, argv, &o) < 0)
		return 2;

	b = load_bundle(o.bundle_path);
	if (!b)
		goto out;
	if (!b->node || strcmp(b->node, o.node) != 0) {
		log_error("bundle %s is for node \"%s\", not \"%s\"", o.bundle_path, b->node ? b->node : "",
			  o.node);
		goto out;
	}
	if (o.inventory_path) {
		inv = load_inventory(o.inventory_path, o.node);
		if (!inv)
			goto out;
	}

	if (o.print_ruleset) {
		for (size_t i = 0; i < b->n_endpoints; i++) {
			const struct bundle_endpoint *ep = &b->endpoints[i];
			const struct endpoint *iep = NULL;

			if (inv) {
				for (size_t j = 0; j < inv->n && !iep; j++) {
					if (strcmp(inv->v[j].node, o.node) == 0 &&
					    strcmp(inv->v[j].name, ep->name) == 0)
						iep = &inv->v[j];
				}
				if (!iep)
					continue;
			}
			if (print_ruleset(b, ep, iep, o.nflog_group) < 0)
				failed++;
		}
		ret = failed ? 1 : 0;
		goto out;
	}

	nb = nft_batch_new(o.nflog_group);
	if (!nb) {
		log_error("out of memory");
		goto out;
	}
	if (o.dataplane == DATAPLANE_NFT) {
		ns = netns_new();
		if (!ns) {
			log_error("opening own network namespace: %m");
			goto out;
		}
	}
	for (size_t i = 0; i < inv->n; i++) {
		const struct endpoint *iep = &inv->v[i];
		const struct bundle_endpoint *ep;

		if (strcmp(iep->node, o.node) != 0)
			continue;
		ep = bundle_find_endpoint(b, iep->name);
		if (!ep) {
			/* The controller has not compiled for it yet: leave
			 * whatever is in its namespace alone. */
			log_info("endpoint %s: not in the bundle, left alone", iep->name);
			continue;
		}
		if (apply_endpoint(&o, ns, nb, b, ep, iep) < 0)
			failed++;
		else
			applied++;
	}
	if (failed)
		log_error("%zu endpoint(s) failed, %zu applied", failed, applied);
	ret = failed ? 1 : 0;

out:
	nft_batch_free(nb);
	netns_free(ns);
	inventory_free(inv);
	bundle_free(b);
	return ret;
}
