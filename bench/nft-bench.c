/* nft-bench: times the agent's nftables programming against the nft
 * command doing the same, in one network namespace, interleaved. The
 * scripts beside it (program-ruleset.sh, element-delta.sh) make the
 * namespace and print the comparison table; this prints raw figures.
 *
 *   nft-bench ruleset NETNS REPS TEXT   whole table: nft_batch_build +
 *                                       nft_batch_send vs `nft -f TEXT`
 *   nft-bench delta NETNS REPS          one member more: nft_batch_build_update
 *                                       + send vs `nft add element`
 *   nft-bench load NETNS TEXT           loads the table once with libnftnl and
 *                                       writes the same ruleset as nft text
 *   nft-bench build - REPS              the user-space part of delta alone:
 *                                       nft_plan_build, nft_batch_build_update,
 *                                       and the bundle side of it: the DELTA
 *                                       applied to the bundle held
 *                                       (bundle_apply_delta + hash check) beside
 *                                       the JSON round trip it replaced, the
 *                                       controller's proto_delta_make, the new
 *                                       bundle's hash and compact text
 *
 * The ruleset: one endpoint, 100 ingress rules (one in five a logged
 * deny), each from one of 10 label-group sets on its own TCP port; every
 * set holds 500 IPv4 and 500 IPv6 hosts: 10,000 set members in all.
 * BENCH_HOSTS=N (ruleset, load and build, up to 13,000) makes that N of each
 * family per set: 10,000 gives 100,000 endpoints' addresses, 200,000
 * elements.
 *
 * Three contenders per repetition, in turn:
 *   libnftnl       build + send on a netlink socket already open in the
 *                  namespace, as a daemon holds it
 *   libnftnl-once  the same plus opening and closing that socket, as
 *                  `bulkhead-agent --once` does per endpoint. Closing a
 *                  NETLINK_NETFILTER socket waits for the kernel to free
 *                  what the last transaction replaced (nf_tables flushes
 *                  its destroy work on socket release), so this pays for
 *                  freeing the old table too.
 *   nft            the process from fork to exit, which includes that same
 *                  wait at its exit; it enters the namespace with setns()
 *                  before exec, so no `ip netns exec` cost is charged to it.
 * Before each timed run a socket is opened and closed in the namespace,
 * untimed, so no contender pays for what another one replaced. Prints "sample WHO MS" per
 * run and "result WHO median=MS min=MS n=N" per contender. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/netlink.h>

#include <libmnl/libmnl.h>

#include "bulkhead/bundle.h"
#include "bulkhead/proto.h"
#include "netns.h"
#include "nft-elements.h"
#include "nft-plan.h"
#include "nft.h"

#define BENCH_SETS	       10
#define BENCH_HOSTS_PER_FAMILY 500
/* IPv4 hosts of every set must fit 198.18.0.0/15. */
#define BENCH_HOSTS_MAX 13000
#define BENCH_RULES	100

struct bench_ruleset {
	struct bundle b;
	struct bundle_endpoint ep;
	struct bundle_set sets[BENCH_SETS];
	struct bundle_rule rules[BENCH_RULES];
	struct port_match ports[BENCH_RULES];
	uint32_t set_refs[BENCH_RULES];
	char ids[BENCH_SETS + BENCH_RULES][32];
	/* Set 0's IPv4 list has room for one more member (the delta). */
	struct addr_range *extra_slot;
};

/* The form every table is built in: BENCH_FORM=linear for the list of
 * rules, else verdict maps. */
static enum nft_form bench_form = NFT_FORM_MAPS;
/* Hosts of each family per set (BENCH_HOSTS). */
static int bench_hosts = BENCH_HOSTS_PER_FAMILY;

/* A batch that builds bench_form. */
static struct nft_batch *new_batch(void)
{
	struct nft_batch *nb = nft_batch_new(NFT_NFLOG_GROUP_DEFAULT);

	if (nb)
		nft_batch_set_form(nb, bench_form);
	return nb;
}

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static void host(struct addr_range *r, int family, const uint8_t *bytes)
{
	memset(r, 0, sizeof(*r));
	r->lo.family = r->hi.family = (uint8_t)family;
	memcpy(r->lo.bytes, bytes, family == AF_INET ? 4 : 16);
	r->hi = r->lo;
}

static int ruleset_init(struct bench_ruleset *rs)
{
	memset(rs, 0, sizeof(*rs));
	for (int k = 0; k < BENCH_SETS; k++) {
		struct bundle_set *s = &rs->sets[k];
		/* one spare slot in set 0 for the delta benchmark */
		size_t cap = (size_t)bench_hosts + (k == 0);
		struct addr_range *v4 = calloc(cap, sizeof(*v4));
		struct addr_range *v6 = calloc((size_t)bench_hosts, sizeof(*v6));

		if (!v4 || !v6)
			return -ENOMEM;
		for (int j = 0; j < bench_hosts; j++) {
			/* 198.18.0.0 + 1024k + 2j and 2001:db8:k::2j: never
			 * adjacent within a set; past 512 a set, the sets
			 * interleave (198.18.0.0 + k + 10j) to fit the /15. */
			uint32_t a =
			    htonl(bench_hosts <= 512 ? 0xc6120000u + 1024u * (uint32_t)k + 2u * (uint32_t)j
						     : 0xc6120000u + (uint32_t)k + BENCH_SETS * (uint32_t)j);
			uint8_t b6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, (uint8_t)k};

			b6[14] = (uint8_t)((2 * j) >> 8);
			b6[15] = (uint8_t)(2 * j);
			host(&v4[j], AF_INET, (const uint8_t *)&a);
			host(&v6[j], AF_INET6, b6);
		}
		snprintf(rs->ids[k], sizeof(rs->ids[k]), "g%02d", k);
		*s = (struct bundle_set){
		    .id = rs->ids[k],
		    .kind = SET_HOSTS,
		    .v4 = {.v = v4, .n = (size_t)bench_hosts, .cap = cap},
		    .v6 = {.v = v6, .n = (size_t)bench_hosts, .cap = (size_t)bench_hosts},
		};
		if (k == 0)
			rs->extra_slot = &v4[bench_hosts];
	}
	for (int i = 0; i < BENCH_RULES; i++) {
		char *id = rs->ids[BENCH_SETS + i];

		snprintf(id, 32, "bench/ingress/%d", i);
		rs->set_refs[i] = (uint32_t)(i % BENCH_SETS);
		rs->ports[i] = (struct port_match){
		    .proto = IPPROTO_TCP,
		    .lo = (uint16_t)(1000 + i),
		    .hi = (uint16_t)(1000 + i),
		    .icmp_type = -1,
		    .icmp_code = -1,
		};
		rs->rules[i] = (struct bundle_rule){
		    .id = id,
		    .policy = "bench",
		    .index = (uint32_t)i,
		    .action = i % 5 == 4 ? ACTION_DENY : ACTION_ALLOW,
		    .sets = &rs->set_refs[i],
		    .n_sets = 1,
		    .ports = &rs->ports[i],
		    .n_ports = 1,
		};
	}
	rs->ep.name = "bench";
	rs->ep.chains[DIR_INGRESS] = (struct bundle_chain){
	    .rules = rs->rules,
	    .n_rules = BENCH_RULES,
	    .fallback = VERDICT_DROP,
	    .fallback_reason = RULE_ID_DEFAULT_DENY,
	};
	rs->ep.chains[DIR_EGRESS] = (struct bundle_chain){
	    .fallback = VERDICT_ACCEPT,
	    .fallback_reason = RULE_ID_DEFAULTS,
	};
	rs->b = (struct bundle){
	    .node = "bench",
	    .endpoints = &rs->ep,
	    .n_endpoints = 1,
	    .sets = rs->sets,
	    .n_sets = BENCH_SETS,
	};
	return 0;
}

/* Frees what ruleset_init() allocated, also after it failed half-way. */
static void ruleset_release(struct bench_ruleset *rs)
{
	for (int k = 0; k < BENCH_SETS; k++) {
		free(rs->sets[k].v4.v);
		free(rs->sets[k].v6.v);
	}
}

/* The same ruleset with one more IPv4 member in set 0 (the list shares
 * the base's storage: the spare slot after its last member). */
static void ruleset_plus_one(const struct bench_ruleset *base, struct bench_ruleset *out, uint32_t nth)
{
	uint32_t a = htonl(0xc6130000u + nth); /* 198.19.0.0 + nth: after every base member */

	*out = *base;
	host(base->extra_slot, AF_INET, (const uint8_t *)&a);
	out->sets[0].v4.n = (size_t)bench_hosts + 1;
	out->b.sets = out->sets;
	out->b.endpoints = &out->ep;
}

static int open_nl(struct netns *ns, const char *path, struct mnl_socket **nl)
{
	struct netns_id id;
	int fd = netns_open(ns, path, &id);
	int r = fd < 0 ? fd : netns_mnl_open(ns, fd, NETLINK_NETFILTER, nl);

	if (fd >= 0)
		close(fd);

	if (r < 0)
		fprintf(stderr, "nft-bench: opening netlink in %s: %s\n", path, strerror(-r));
	return r;
}

static int send_on(struct mnl_socket *nl, struct nft_batch *nb)
{
	int r = nft_batch_send(nb, nl);

	if (r < 0)
		fprintf(stderr, "nft-bench: %s\n", nft_batch_error(nb));
	return r;
}

/* Waits until the kernel has released what earlier transactions in the
 * namespace replaced or deleted: closing a NETLINK_NETFILTER socket does
 * that. Run untimed before each contender, so none pays for another. */
static int settle(struct netns *ns, const char *path)
{
	struct mnl_socket *nl;
	int r = open_nl(ns, path, &nl);

	if (r == 0)
		mnl_socket_close(nl);
	/* The kernel finishes freeing in a work queue after the close (and
	 * after the exit of an nft process before us): let it, untimed. */
	usleep(5000);
	return r;
}

/* Sends on a socket of its own, as `bulkhead-agent --once` does. */
static int apply(struct netns *ns, const char *path, struct nft_batch *nb)
{
	struct mnl_socket *nl;
	int r = open_nl(ns, path, &nl);

	if (r == 0) {
		r = send_on(nl, nb);
		mnl_socket_close(nl);
	}
	return r;
}

/* Runs argv inside the namespace at path; 0 when it exited 0. */
static int run_in(const char *path, char *const argv[])
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		int null = open("/dev/null", O_WRONLY);

		if (fd < 0 || setns(fd, CLONE_NEWNET) < 0)
			_exit(126);
		if (null >= 0)
			dup2(null, STDOUT_FILENO);
		execvp(argv[0], argv);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "nft-bench: %s failed (status %d)\n", argv[0], status);
		return -EIO;
	}
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void report(const char *who, double *v, int n)
{
	double median;

	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	printf("result %s median=%.3f min=%.3f n=%d\n", who, median, v[0], n);
}

static int write_text(const struct bench_ruleset *rs, const char *file)
{
	char *text;
	FILE *f;
	int r = nft_render_text(&rs->b, &rs->ep, NFT_NFLOG_GROUP_DEFAULT, bench_form, &text);

	if (r < 0)
		return r;
	f = fopen(file, "we");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
		free(text);
		return -EIO;
	}
	free(text);
	return 0;
}

static void print_shape(const struct nft_batch *nb)
{
	struct nft_batch_stats st;

	nft_batch_stats(nb, &st);
	printf("shape rules=%d members=%d nft_sets=%zu nft_rules=%zu elements=%zu messages=%zu bytes=%zu\n",
	       BENCH_RULES, BENCH_SETS * 2 * bench_hosts, st.sets, st.rules, st.elements, st.messages,
	       st.bytes);
}

/* Timings of the three contenders, one slot per repetition. */
struct bench_times {
	double *daemon, *once, *cli;
};

static int times_alloc(struct bench_times *t, int reps)
{
	t->daemon = calloc((size_t)reps, sizeof(double));
	t->once = calloc((size_t)reps, sizeof(double));
	t->cli = calloc((size_t)reps, sizeof(double));
	return t->daemon && t->once && t->cli ? 0 : -ENOMEM;
}

static void times_report(struct bench_times *t, int reps, const char *cli_name)
{
	report("libnftnl", t->daemon, reps);
	report("libnftnl-once", t->once, reps);
	report(cli_name, t->cli, reps);
}

static void times_free(struct bench_times *t)
{
	free(t->daemon);
	free(t->once);
	free(t->cli);
}

static int bench_ruleset(struct netns *ns, const char *path, int reps, const char *text)
{
	char *nft_argv[] = {"nft", "-f", (char *)text, NULL};
	struct nft_batch *nb = new_batch();
	struct bench_times t = {0};
	struct bench_ruleset rs = {0};
	struct mnl_socket *nl;
	int r = -ENOMEM;

	if (!nb || times_alloc(&t, reps) < 0 || ruleset_init(&rs) < 0 || write_text(&rs, text) < 0)
		goto out;
	/* Warm-up, untimed: the first load also creates the table. */
	r = nft_batch_build(nb, &rs.b, &rs.ep);
	if (r == 0)
		r = apply(ns, path, nb);
	if (r == 0)
		r = run_in(path, nft_argv);
	if (r < 0)
		goto out;
	print_shape(nb);
	for (int i = 0; i < reps && r == 0; i++) {
		double t0, t1;

		r = open_nl(ns, path, &nl);
		if (r < 0)
			break;
		r = settle(ns, path);
		t0 = now_ms();
		if (r == 0)
			r = nft_batch_build(nb, &rs.b, &rs.ep);
		if (r == 0)
			r = send_on(nl, nb);
		t1 = now_ms();
		mnl_socket_close(nl);
		t.daemon[i] = t1 - t0;

		if (r == 0)
			r = settle(ns, path);
		t0 = now_ms();
		if (r == 0)
			r = nft_batch_build(nb, &rs.b, &rs.ep);
		if (r == 0)
			r = apply(ns, path, nb);
		t1 = now_ms();
		t.once[i] = t1 - t0;

		if (r == 0)
			r = settle(ns, path);
		t0 = now_ms();
		if (r == 0)
			r = run_in(path, nft_argv);
		t1 = now_ms();
		t.cli[i] = t1 - t0;
		printf("sample libnftnl %.3f\nsample libnftnl-once %.3f\nsample nft-f %.3f\n", t.daemon[i],
		       t.once[i], t.cli[i]);
	}
	if (r == 0)
		times_report(&t, reps, "nft-f");
out:
	if (r == -ENOMEM)
		fprintf(stderr, "nft-bench: out of memory\n");
	nft_batch_free(nb);
	times_free(&t);
	ruleset_release(&rs);
	return r;
}

/* One update base -> plus (timed by the caller) and back (untimed).
 * send_ms (may be NULL): how long the kernel's part took, from sending the
 * batch to the last acknowledgement read. */
static int delta_there_and_back(struct nft_batch *nb, const struct bench_ruleset *base,
				const struct bench_ruleset *plus, struct mnl_socket *nl, struct netns *ns,
				const char *path, double *send_ms)
{
	bool full = true;
	int r = nft_batch_build_update(nb, &base->b, &base->ep, &plus->b, &plus->ep, &full);
	double t0 = now_ms();

	if (r == 0 && full) {
		fprintf(stderr, "nft-bench: a one-member change was not a delta\n");
		return -EPROTO;
	}
	if (r == 0)
		r = nl ? send_on(nl, nb) : apply(ns, path, nb);
	if (send_ms)
		*send_ms = now_ms() - t0;
	return r;
}

/* The chain a member of set 0 goes to in the map form's ingress hosts
 * map: the goto the operator's one-liner gives a new member. */
struct find_chain {
	uint8_t key[4];
	char chain[NFT_NAME_MAX];
};

static int find_chain_cb(void *arg, const struct nft_elem_dest *dest, bool add, const struct nft_elem *e)
{
	struct find_chain *f = arg;

	(void)dest;
	(void)add;
	if (e->chain && e->key_len == 4 && memcmp(e->key, f->key, 4) == 0)
		snprintf(f->chain, sizeof(f->chain), "%s", e->chain);
	return 0;
}

static int member_chain(const struct bench_ruleset *rs, char chain[NFT_NAME_MAX], char map[NFT_NAME_MAX])
{
	struct nft_plan p;
	char err[256];
	struct find_chain f;

	memset(&f, 0, sizeof(f));
	int r = nft_plan_build(&p, &rs->b, &rs->ep, NULL, NFT_FORM_MAPS, err, sizeof(err));

	if (r < 0)
		return r;
	memcpy(f.key, rs->sets[0].v4.v[0].lo.bytes, 4);
	for (size_t i = 0; i < p.n_maps && r == 0; i++) {
		struct nft_elem_dest d = {.map = &p.maps[i]};

		if (p.maps[i].kind == NFT_MAP_HOSTS && p.maps[i].family == AF_INET) {
			r = nft_elements_all(&p, &d, find_chain_cb, &f);
			snprintf(map, NFT_NAME_MAX, "%s", p.maps[i].name);
		}
	}
	nft_plan_release(&p);
	if (r == 0 && !f.chain[0])
		r = -ENOENT;
	snprintf(chain, NFT_NAME_MAX, "%s", f.chain);
	return r;
}

static int bench_delta(struct netns *ns, const char *path, int reps)
{
	struct nft_batch *nb = new_batch();
	char set[NFT_NAME_MAX], elem[128], chain[NFT_NAME_MAX] = "";
	char *add_argv[] = {"nft", "add", "element", "inet", NFT_TABLE_NAME, set, elem, NULL};
	char *del_argv[] = {"nft", "delete", "element", "inet", NFT_TABLE_NAME, set, elem, NULL};
	struct bench_ruleset base = {0}, plus; /* plus shares base's storage */
	struct bench_times t = {0};
	struct mnl_socket *nl = NULL;
	double *kernel = calloc((size_t)reps, sizeof(*kernel));
	int r = -ENOMEM;

	if (!nb || !kernel || times_alloc(&t, reps) < 0 || ruleset_init(&base) < 0)
		goto out;
	/* The peer adds the member where the form keeps it: the linear
	 * form's set of the group, or the map form's hosts map with the goto
	 * every other member of the group has. */
	if (bench_form == NFT_FORM_LINEAR) {
		nft_set_name(base.sets[0].id, AF_INET, set);
		r = 0;
	} else {
		r = member_chain(&base, chain, set);
	}
	if (r == 0)
		r = nft_batch_build(nb, &base.b, &base.ep);
	if (r == 0)
		r = apply(ns, path, nb);
	if (r == 0)
		r = open_nl(ns, path, &nl);
	for (int i = 0; i < reps && r == 0; i++) {
		double t0, t1;

		/* A new member each time: 198.19.0.0 + n, after every base member. */
		ruleset_plus_one(&base, &plus, 3 * (uint32_t)i + 1);
		r = settle(ns, path);
		t0 = now_ms();
		if (r == 0)
			r = delta_there_and_back(nb, &base, &plus, nl, ns, path, &kernel[i]);
		t1 = now_ms();
		if (i == 0 && r == 0) {
			struct nft_batch_stats st;

			nft_batch_stats(nb, &st);
			printf("shape delta added=%zu removed=%zu messages=%zu bytes=%zu\n",
			       st.elements_added, st.elements_removed, st.messages, st.bytes);
		}
		if (r == 0)
			r = delta_there_and_back(nb, &plus, &base, nl, ns, path, NULL);
		t.daemon[i] = t1 - t0;

		ruleset_plus_one(&base, &plus, 3 * (uint32_t)i + 2);
		if (r == 0)
			r = settle(ns, path);
		t0 = now_ms();
		if (r == 0)
			r = delta_there_and_back(nb, &base, &plus, NULL, ns, path, NULL);
		t1 = now_ms();
		if (r == 0)
			r = delta_there_and_back(nb, &plus, &base, NULL, ns, path, NULL);
		t.once[i] = t1 - t0;

		/* The operator's one-liner, for a third new member. */
		if (chain[0])
			snprintf(elem, sizeof(elem), "{ 198.19.%u.%u : goto %s }", (3 * i + 3) / 256,
				 (3 * i + 3) % 256, chain);
		else
			snprintf(elem, sizeof(elem), "{ 198.19.%u.%u }", (3 * i + 3) / 256,
				 (3 * i + 3) % 256);
		if (r == 0)
			r = settle(ns, path);
		t0 = now_ms();
		if (r == 0)
			r = run_in(path, add_argv);
		t1 = now_ms();
		if (r == 0)
			r = run_in(path, del_argv);
		t.cli[i] = t1 - t0;
		printf("sample libnftnl %.3f\nsample libnftnl-once %.3f\nsample nft-add-element %.3f\n",
		       t.daemon[i], t.once[i], t.cli[i]);
	}
	if (r == 0) {
		times_report(&t, reps, "nft-add-element");
		report("libnftnl-send", kernel, reps);
	}
out:
	free(kernel);
	if (r == -ENOMEM)
		fprintf(stderr, "nft-bench: out of memory\n");
	if (nl)
		mnl_socket_close(nl);
	nft_batch_free(nb);
	times_free(&t);
	ruleset_release(&base);
	return r;
}

/* Milliseconds of the bundle work around a one-member delta. */
struct bundle_times {
	double agent;  /* the DELTA applied to the bundle held, its hash checked (agent/session.c) */
	double json;   /* the JSON round trip that did it before: bundle_to_json, proto_delta_apply,
			  bundle_from_json */
	double make;   /* the controller's proto_delta_make of the two bundles' JSON */
	double hash;   /* bundle_update_hash of the new bundle */
	double encode; /* bundle_encode (compact) of it, what the session child passes on */
};

/* The bundle side of a one-member delta, each part timed (the DELTA's sets
 * made first, by the controller's code). 0, or a negative errno. */
static int time_bundle_delta(struct bench_ruleset *base, struct bench_ruleset *plus, struct bundle_times *bt)
{
	json_t *from = NULL, *to = NULL, *sets = NULL, *cur = NULL, *next = NULL;
	struct bundle *b = NULL;
	struct diag d;
	double t0, t1, t2, t3;
	int r = -ENOMEM;

	diag_init(&d, "bench");
	if (bundle_update_hash(&base->b) < 0 || bundle_update_hash(&plus->b) < 0)
		goto out;
	from = bundle_to_json(&base->b);
	to = bundle_to_json(&plus->b);
	t0 = now_ms();
	sets = from && to ? proto_delta_make(from, to) : NULL;
	bt->make = now_ms() - t0;
	if (!sets)
		goto out;
	t0 = now_ms();
	r = bundle_update_hash(&plus->b);
	bt->hash = now_ms() - t0;
	t0 = now_ms();
	char *text = r == 0 ? bundle_encode(&plus->b, false) : NULL;
	bt->encode = now_ms() - t0;
	free(text);
	r = -ENOMEM;
	if (!text)
		goto out;
	t0 = now_ms();
	b = bundle_apply_delta(&base->b, sets, &d);
	b = bundle_hash_checked(b, plus->b.hash, &d);
	t1 = now_ms();
	bundle_free(b);
	t2 = now_ms();
	cur = bundle_to_json(&base->b);
	next = cur ? proto_delta_apply(cur, sets, &d) : NULL;
	if (next)
		json_object_set_new(next, "hash", json_string(plus->b.hash));
	b = next ? bundle_from_json(next, &d) : NULL;
	t3 = now_ms();
	r = b ? 0 : -EPROTO;
	bt->agent = t1 - t0;
	bt->json = t3 - t2;
	if (d.n)
		diag_print(&d, stderr);
out:
	bundle_free(b);
	json_decref(from);
	json_decref(to);
	json_decref(sets);
	json_decref(cur);
	json_decref(next);
	diag_release(&d);
	return r;
}

/* The user-space part of "delta" alone, no kernel: one plan of the
 * table, nft_batch_build_update (both tables' plans, their diff, the
 * batch), and the bundle side before it, each repetition with a new
 * member. */
static int bench_build(int reps)
{
	struct nft_batch *nb = new_batch();
	struct bench_ruleset base = {0}, plus;
	double plan_t = 0, upd_t = 0;
	struct bundle_times sum = {0};
	int r = nb && ruleset_init(&base) == 0 ? 0 : -ENOMEM;

	for (int i = 0; i < reps && r == 0; i++) {
		struct nft_plan p;
		char err[256];
		bool full;
		double t0, t1, t2;
		struct bundle_times bt = {0};

		ruleset_plus_one(&base, &plus, 3 * (uint32_t)i + 1);
		t0 = now_ms();
		r = nft_plan_build(&p, &plus.b, &plus.ep, NULL, bench_form, err, sizeof(err));
		t1 = now_ms();
		if (r == 0)
			nft_plan_release(&p);
		t2 = now_ms();
		if (r == 0)
			r = nft_batch_build_update(nb, &base.b, &base.ep, &plus.b, &plus.ep, &full);
		upd_t += now_ms() - t2;
		plan_t += t1 - t0;
		if (r == 0)
			r = time_bundle_delta(&base, &plus, &bt);
		sum.agent += bt.agent;
		sum.json += bt.json;
		sum.make += bt.make;
		sum.hash += bt.hash;
		sum.encode += bt.encode;
	}
	if (r == 0)
		printf("result plan mean=%.3f\nresult build-update mean=%.3f n=%d\n"
		       "result bundle-delta mean=%.3f\nresult bundle-delta-json mean=%.3f\n"
		       "result delta-make mean=%.3f\nresult bundle-hash mean=%.3f\nresult bundle-encode "
		       "mean=%.3f\n",
		       plan_t / reps, upd_t / reps, reps, sum.agent / reps, sum.json / reps, sum.make / reps,
		       sum.hash / reps, sum.encode / reps);
	nft_batch_free(nb);
	ruleset_release(&base);
	return r;
}

static int bench_load(struct netns *ns, const char *path, const char *text)
{
	struct bench_ruleset rs = {0};
	struct nft_batch *nb = new_batch();
	int r = -ENOMEM;

	if (nb && ruleset_init(&rs) == 0 && (r = write_text(&rs, text)) == 0 &&
	    (r = nft_batch_build(nb, &rs.b, &rs.ep)) == 0)
		r = apply(ns, path, nb);
	nft_batch_free(nb);
	ruleset_release(&rs);
	return r;
}

static void usage(void)
{
	fputs(
	    "usage: nft-bench ruleset NETNS REPS TEXT | delta NETNS REPS | load NETNS TEXT | build - REPS\n",
	    stderr);
}

int main(int argc, char **argv)
{
	struct netns *ns;
	int reps = 0, r;

	if (argc < 4) {
		usage();
		return 2;
	}
	if (strcmp(argv[1], "load") != 0) {
		reps = atoi(argv[3]);
		if (reps < 1 || reps > 100000) {
			usage();
			return 2;
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	nft_batch_tune_malloc(); /* as the agent does */
	if (getenv("BENCH_FORM") && strcmp(getenv("BENCH_FORM"), "linear") == 0)
		bench_form = NFT_FORM_LINEAR;
	if (getenv("BENCH_HOSTS") && strcmp(argv[1], "delta") != 0) {
		bench_hosts = atoi(getenv("BENCH_HOSTS"));
		if (bench_hosts < 1 || bench_hosts > BENCH_HOSTS_MAX) {
			fprintf(stderr, "nft-bench: BENCH_HOSTS: 1 to %d\n", BENCH_HOSTS_MAX);
			return 2;
		}
	}
	ns = netns_new();
	if (!ns) {
		perror("nft-bench: own namespace");
		return 1;
	}
	if (strcmp(argv[1], "ruleset") == 0 && argc == 5) {
		r = bench_ruleset(ns, argv[2], reps, argv[4]);
	} else if (strcmp(argv[1], "delta") == 0 && argc == 4) {
		r = bench_delta(ns, argv[2], reps);
	} else if (strcmp(argv[1], "build") == 0 && argc == 4) {
		r = bench_build(reps);
	} else if (strcmp(argv[1], "load") == 0 && argc == 4) {
		r = bench_load(ns, argv[2], argv[3]);
	} else {
		usage();
		r = -EINVAL;
	}
	netns_free(ns);
	return r < 0;
}
