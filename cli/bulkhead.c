/* bulkhead: the operator's command (DESIGN §5). The offline verbs (policy
 * validate, compile, explain) are here; the ones that talk to the
 * controller, and keygen, are in online.c. */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/bundle.h"
#include "bulkhead/compile.h"
#include "bulkhead/eval.h"
#include "bulkhead/inventory.h"
#include "bulkhead/policy.h"
#include "bulkhead/admin.h"
#include "online.h"

enum exit_code {
	EXIT_OK = 0,
	EXIT_FAIL = 1,
	EXIT_USAGE = 2, /* usage error or invalid input */
};

static const char usage_text[] =
	"usage: bulkhead [--admin ENDPOINT] VERB ...\n"
	"       bulkhead policy validate FILE\n"
	"       bulkhead policy compile FILE --inventory INV [--inventory INV...] [--node NODE]\n"
	"       bulkhead policy explain FILE --inventory INV... --from ADDR|NODE/NAME --to ADDR|NODE/NAME\n"
	"                               --proto tcp|udp|sctp|icmp|icmpv6 [--port N] [--type T [--code C]]\n"
	"                               [-6] [--json]\n"
	"       bulkhead policy explain FILE --inventory INV... --probes FILE|-\n"
	"       bulkhead policy apply FILE [--comment TEXT] [--json]\n"
	"       bulkhead policy history | show [REV] | rollback REV  [--json]\n"
	"       bulkhead status [--wait[=SECONDS]] [--json]\n"
	"       bulkhead endpoints [--node NODE] [--json]\n"
	"       bulkhead flows [--since 10m] [--node N] [--group G] [--verdict deny|audit]\n"
	"                      [--limit N] [--follow | --rules] [--json]\n"
	"       bulkhead nodes forget NODE [--force] [--json]\n"
	"       bulkhead keygen DIR [--force]\n"
	"\n"
	"validate  check a policy document offline; exit 0 valid, 2 invalid (errors on stderr)\n"
	"compile   compile a policy against node inventories and print the bundles as JSON\n"
	"explain   which rules decide a packet, at its source (egress) and its destination\n"
	"          (ingress); --probes reads JSON lines {\"src\",\"dst\",\"proto\",\"port\"|\"type\",\"code\"}\n"
	"          and prints one JSON verdict per line\n"
	"apply     validate, then make the document the controller's newest revision\n"
	"history   the revisions, newest first (* = in force); show prints one; rollback\n"
	"          makes an old one the newest\n"
	"status    per node: connected, last heartbeat, applied revision, in sync, errors;\n"
	"          --wait: exit 0 once every connected node has applied the newest\n"
	"          revision, 1 on timeout (default 30 s)\n"
	"endpoints every endpoint the agents reported, with addresses and groups\n"
	"flows     the blocked-flow report: denied and audited flows, newest first, with\n"
	"          both ends named and the deciding rule; --follow prints new ones as\n"
	"          they arrive; --rules: packets per deciding rule (default --limit 50)\n"
	"forget    drop a decommissioned node: its endpoints leave every group, the other\n"
	"          nodes' bundles are recompiled; a connected node only with --force\n"
	"keygen    a CURVE key pair: DIR/public.key and DIR/secret.key (0600)\n"
	"\n"
	"The controller's admin endpoint: --admin, else $" ADMIN_ENV ", else\n"
	ADMIN_DEFAULT_ENDPOINT ".\n";

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);
	if (!p) {
		fprintf(stderr, "bulkhead: out of memory\n");
		abort();
	}
	return p;
}

/* ---- offline inputs: a policy and node inventories ---- */

struct offline {
	struct policy_doc *doc;
	struct inventory *inv;
	const char **nodes;      /* NULL-terminated */
	struct bundle **bundles; /* per node, compiled on first use */
};

static void offline_release(struct offline *o)
{
	for (size_t i = 0; o->bundles && o->nodes[i]; i++)
		bundle_free(o->bundles[i]);
	free(o->bundles);
	inventory_free(o->inv);
	policy_doc_free(o->doc);
}

/* Loads and validates both; every error goes to stderr. EXIT_OK or EXIT_USAGE. */
static int offline_load(struct offline *o, const char *policy_file, const char **inventories, size_t n)
{
	struct diag d;
	bool ok = true;
	memset(o, 0, sizeof(*o));
	diag_init(&d, policy_file);
	o->doc = policy_parse_file(policy_file, &d);
	diag_print(&d, stderr);
	diag_release(&d);
	ok &= o->doc != NULL;

	o->inv = inventory_new();
	if (!o->inv)
		abort();
	for (size_t i = 0; i < n; i++) {
		diag_init(&d, inventories[i]);
		if (inventory_load_file(o->inv, inventories[i], NULL, INVENTORY_NEED_ADDRESSES, &d) < 0)
			ok = false;
		diag_print(&d, stderr);
		diag_release(&d);
	}
	diag_init(&d, "inventory");
	if (ok && inventory_finish(o->inv, &d) < 0)
		ok = false;
	diag_print(&d, stderr);
	diag_release(&d);
	if (!ok)
		return EXIT_USAGE;
	for (size_t i = 0; i < o->inv->n_conflicts; i++) {
		char text[1024];
		inventory_conflict_text(&o->inv->conflicts[i], text, sizeof(text));
		fprintf(stderr, "warning: %s: %s\n", text, INVENTORY_CONFLICT_EFFECT);
	}
	o->nodes = inventory_nodes(o->inv);
	if (!o->nodes)
		abort();
	size_t n_nodes = 0;
	while (o->nodes[n_nodes])
		n_nodes++;
	o->bundles = xcalloc(n_nodes, sizeof(*o->bundles));
	return EXIT_OK;
}

static const struct bundle *offline_bundle(struct offline *o, const char *node)
{
	for (size_t i = 0; o->nodes[i]; i++) {
		if (strcmp(o->nodes[i], node) != 0)
			continue;
		if (!o->bundles[i] && !(o->bundles[i] = compile_bundle(o->doc, o->inv, node))) {
			fprintf(stderr, "bulkhead: compiling node %s: %s\n", node, strerror(ENOMEM));
			abort();
		}
		return o->bundles[i];
	}
	return NULL;
}

/* ---- policy validate ---- */

static int cmd_policy_validate(int argc, char **argv)
{
	if (argc != 1) {
		fprintf(stderr, "usage: bulkhead policy validate FILE\n");
		return EXIT_USAGE;
	}
	struct diag d;
	diag_init(&d, argv[0]);
	struct policy_doc *doc = policy_parse_file(argv[0], &d);
	if (!doc) {
		diag_print(&d, stderr);
		diag_release(&d);
		return EXIT_USAGE;
	}
	size_t n_rules = 0;
	for (size_t i = 0; i < doc->n_policies; i++)
		n_rules += doc->policies[i].rules[DIR_INGRESS].n + doc->policies[i].rules[DIR_EGRESS].n;
	printf("%s: valid: %zu groups, %zu policies, %zu rules\n", argv[0], doc->n_groups, doc->n_policies,
	       n_rules);
	policy_doc_free(doc);
	diag_release(&d);
	return EXIT_OK;
}

/* ---- policy compile ---- */

static int cmd_policy_compile(int argc, char **argv)
{
	static const struct option opts[] = {
		{"inventory", required_argument, NULL, 'i'},
		{"node", required_argument, NULL, 'n'},
		{0},
	};
	const char **inventories = xcalloc((size_t)argc, sizeof(*inventories));
	size_t n_inventories = 0;
	const char *node = NULL;
	struct offline o = {0};
	int c, ret = EXIT_USAGE;

	optind = 0;
	while ((c = getopt_long(argc, argv, "i:n:", opts, NULL)) != -1) {
		if (c == 'i')
			inventories[n_inventories++] = optarg;
		else if (c == 'n')
			node = optarg;
		else
			goto usage;
	}
	if (optind != argc - 1 || n_inventories == 0)
		goto usage;
	if ((ret = offline_load(&o, argv[optind], inventories, n_inventories)) != EXIT_OK)
		goto out;
	if (node && !offline_bundle(&o, node)) {
		fprintf(stderr, "bulkhead: node \"%s\" is in none of the inventories\n", node);
		ret = EXIT_USAGE;
		goto out;
	}

	json_t *out = node ? NULL : json_array();
	for (const char **n = o.nodes; *n; n++) {
		if (node && strcmp(node, *n) != 0)
			continue;
		json_t *j = bundle_to_json(offline_bundle(&o, *n));
		if (!j)
			abort();
		if (node)
			out = j;
		else
			json_array_append_new(out, j);
	}
	if (!node)
		out = json_pack("{s:o}", "bundles", out);
	ret = out && json_dumpf(out, stdout, JSON_INDENT(2)) == 0 ? EXIT_OK : EXIT_FAIL;
	putchar('\n');
	json_decref(out);
	goto out;
usage:
	fprintf(stderr, "usage: bulkhead policy compile FILE --inventory INV [--inventory INV...] [--node NODE]\n");
	ret = EXIT_USAGE;
out:
	offline_release(&o);
	free(inventories);
	return ret;
}

/* ---- policy explain ---- */

static bool proto_parse(const char *s, uint8_t *out)
{
	return s && proto_lookup(s, strlen(s), out);
}

/* An address, or NODE/NAME: that endpoint's first address of the family. */
static bool resolve_peer(struct offline *o, const char *s, int family, struct bh_addr *out)
{
	if (addr_parse(s, out) == 0)
		return true;
	const char *slash = strchr(s, '/');
	if (!slash)
		return false;
	char *node = strndup(s, (size_t)(slash - s));
	const struct endpoint *ep = node ? inventory_find(o->inv, node, slash + 1) : NULL;
	free(node);
	for (size_t i = 0; ep && i < ep->n_addrs; i++) {
		if (ep->addrs[i].family == family) {
			*out = ep->addrs[i];
			return true;
		}
	}
	return false;
}

static void explain_packet(struct offline *o, const struct packet *pkt, struct path_result *res,
			   const struct endpoint **src_ep, const struct endpoint **dst_ep)
{
	*src_ep = inventory_find_by_addr(o->inv, &pkt->src);
	*dst_ep = inventory_find_by_addr(o->inv, &pkt->dst);
	const struct bundle *sb = *src_ep ? offline_bundle(o, (*src_ep)->node) : NULL;
	const struct bundle *db = *dst_ep ? offline_bundle(o, (*dst_ep)->node) : NULL;
	eval_path(sb, sb ? bundle_find_endpoint(sb, (*src_ep)->name) : NULL, db,
		  db ? bundle_find_endpoint(db, (*dst_ep)->name) : NULL, pkt, res);
}

static json_t *side_json(bool present, const struct endpoint *ep, const struct eval_result *r)
{
	if (!present)
		return json_null();
	char name[256];
	snprintf(name, sizeof(name), "%s/%s", ep->node, ep->name);
	return json_pack("{s:s,s:s,s:s}", "endpoint", name, "verdict", verdict_name(r->verdict), "reason",
			 r->reason);
}

static json_t *explain_json(const struct path_result *res, const struct endpoint *src_ep,
			    const struct endpoint *dst_ep)
{
	return json_pack("{s:b,s:s,s:o,s:o}", "delivered", res->delivered, "verdict", verdict_name(res->verdict),
			 direction_name(DIR_EGRESS), side_json(res->has_egress, src_ep, &res->egress),
			 direction_name(DIR_INGRESS), side_json(res->has_ingress, dst_ep, &res->ingress));
}

static void explain_side_text(const char *dir, bool present, const struct endpoint *ep,
			      const struct eval_result *r)
{
	if (!present) {
		printf("  %-7s no Bulkhead endpoint: nothing enforced\n", dir);
		return;
	}
	char name[256];
	snprintf(name, sizeof(name), "%s/%s", ep->node, ep->name);
	printf("  %-7s at %-24s %-6s by %s\n", dir, name, verdict_name(r->verdict), r->reason);
}

/* A contested address decides differently by rule action: say so. */
static void explain_conflict(const struct offline *o, const struct bh_addr *a)
{
	const struct addr_conflict *c = inventory_conflict_of(o->inv, a);
	if (c) {
		char text[1024];
		inventory_conflict_text(c, text, sizeof(text));
		printf("  note    %s: %s\n", text, INVENTORY_CONFLICT_EFFECT);
	}
}

/* Reads probes as JSON lines; prints one verdict per line. */
static int explain_probes(struct offline *o, const char *file)
{
	FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "r");
	if (!f) {
		fprintf(stderr, "%s: cannot open: %s\n", file, strerror(errno));
		return EXIT_USAGE;
	}
	char *line = NULL;
	size_t cap = 0, lineno = 0;
	int ret = EXIT_OK;
	while (getline(&line, &cap, f) > 0) {
		lineno++;
		json_error_t jerr;
		json_t *j = json_loads(line, 0, &jerr), *out = NULL;
		struct packet pkt = {0};
		const char *why = NULL;
		json_t *port = json_object_get(j, "port"), *type = json_object_get(j, "type");
		json_t *code = json_object_get(j, "code");
		if (!j)
			why = jerr.text;
		else if (addr_parse(json_string_value(json_object_get(j, "src")) ?: "", &pkt.src) < 0 ||
			 addr_parse(json_string_value(json_object_get(j, "dst")) ?: "", &pkt.dst) < 0 ||
			 pkt.src.family != pkt.dst.family)
			why = "\"src\" and \"dst\" must be addresses of one family";
		else if (!proto_parse(json_string_value(json_object_get(j, "proto")), &pkt.proto))
			why = "\"proto\" must be tcp, udp, sctp, icmp or icmpv6";
		else if ((port && (!json_is_integer(port) || json_integer_value(port) < 0 ||
				   json_integer_value(port) > 65535)) ||
			 (type && (!json_is_integer(type) || json_integer_value(type) < 0 ||
				   json_integer_value(type) > 255)) ||
			 (code && (!json_is_integer(code) || json_integer_value(code) < 0 ||
				   json_integer_value(code) > 255)))
			why = "\"port\" is 0-65535, \"type\" and \"code\" 0-255";
		if (why) {
			fprintf(stderr, "%s:%zu: %s\n", file, lineno, why);
			ret = EXIT_USAGE;
			out = json_pack("{s:s}", "error", why);
		} else {
			pkt.dport = (uint16_t)json_integer_value(port);
			pkt.icmp_type = (uint8_t)json_integer_value(type);
			pkt.icmp_code = (uint8_t)json_integer_value(code);
			struct path_result res;
			const struct endpoint *src_ep, *dst_ep;
			explain_packet(o, &pkt, &res, &src_ep, &dst_ep);
			out = explain_json(&res, src_ep, dst_ep);
		}
		if (!out || json_dumpf(out, stdout, JSON_COMPACT) < 0)
			abort();
		putchar('\n');
		json_decref(out);
		json_decref(j);
	}
	free(line);
	if (f != stdin)
		fclose(f);
	return ret;
}

static int cmd_policy_explain(int argc, char **argv)
{
	static const struct option opts[] = {
		{"inventory", required_argument, NULL, 'i'}, {"probes", required_argument, NULL, 'P'},
		{"from", required_argument, NULL, 'f'},      {"to", required_argument, NULL, 't'},
		{"proto", required_argument, NULL, 'p'},     {"port", required_argument, NULL, 'o'},
		{"type", required_argument, NULL, 'y'},      {"code", required_argument, NULL, 'c'},
		{"json", no_argument, NULL, 'j'},            {0},
	};
	const char **inventories = xcalloc((size_t)argc, sizeof(*inventories));
	const char *probes = NULL, *from = NULL, *to = NULL, *proto = NULL;
	long port = 0, type = 0, code = 0;
	size_t n_inventories = 0;
	bool json = false;
	int family = AF_INET, c, ret = EXIT_USAGE;
	struct offline o = {0};

	optind = 0;
	while ((c = getopt_long(argc, argv, "i:6", opts, NULL)) != -1) {
		char *end = NULL;
		switch (c) {
		case 'i':
			inventories[n_inventories++] = optarg;
			break;
		case 'P':
			probes = optarg;
			break;
		case 'f':
			from = optarg;
			break;
		case 't':
			to = optarg;
			break;
		case 'p':
			proto = optarg;
			break;
		case 'o':
			port = strtol(optarg, &end, 10);
			if (*end || port < 0 || port > 65535)
				goto usage;
			break;
		case 'y':
			type = strtol(optarg, &end, 10);
			if (*end || type < 0 || type > 255)
				goto usage;
			break;
		case 'c':
			code = strtol(optarg, &end, 10);
			if (*end || code < 0 || code > 255)
				goto usage;
			break;
		case 'j':
			json = true;
			break;
		case '6':
			family = AF_INET6;
			break;
		default:
			goto usage;
		}
	}
	if (optind != argc - 1 || n_inventories == 0 || (!probes && (!from || !to || !proto)))
		goto usage;
	if ((ret = offline_load(&o, argv[optind], inventories, n_inventories)) != EXIT_OK)
		goto out;
	if (probes) {
		ret = explain_probes(&o, probes);
		goto out;
	}

	struct packet pkt = {.dport = (uint16_t)port, .icmp_type = (uint8_t)type, .icmp_code = (uint8_t)code};
	if (!proto_parse(proto, &pkt.proto)) {
		fprintf(stderr, "bulkhead: --proto: \"%s\": expected tcp, udp, sctp, icmp or icmpv6\n", proto);
		ret = EXIT_USAGE;
		goto out;
	}
	/* An address fixes the family for a NODE/NAME on the other side. */
	struct bh_addr tmp;
	if (addr_parse(from, &tmp) == 0 || addr_parse(to, &tmp) == 0)
		family = tmp.family;
	if (!resolve_peer(&o, from, family, &pkt.src) || !resolve_peer(&o, to, family, &pkt.dst) ||
	    pkt.src.family != pkt.dst.family) {
		fprintf(stderr, "bulkhead: --from and --to must be addresses of one family, or NODE/NAME of "
				"inventory endpoints with an address of that family\n");
		ret = EXIT_USAGE;
		goto out;
	}
	struct path_result res;
	const struct endpoint *src_ep, *dst_ep;
	explain_packet(&o, &pkt, &res, &src_ep, &dst_ep);
	if (json) {
		json_t *j = explain_json(&res, src_ep, dst_ep);
		json_dumpf(j, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(j);
	} else {
		char s[ADDR_STRLEN], d[ADDR_STRLEN], p[32];
		addr_format(&pkt.src, s);
		addr_format(&pkt.dst, d);
		struct port_match pm = {.proto = pkt.proto, .lo = pkt.dport, .hi = pkt.dport,
					.icmp_type = pkt.icmp_type, .icmp_code = pkt.icmp_code};
		port_match_format(&pm, p, sizeof(p));
		printf("%s -> %s %s\n", s, d, p);
		explain_conflict(&o, &pkt.src);
		explain_conflict(&o, &pkt.dst);
		explain_side_text(direction_name(DIR_EGRESS), res.has_egress, src_ep, &res.egress);
		explain_side_text(direction_name(DIR_INGRESS), res.has_ingress, dst_ep, &res.ingress);
		printf("  result  %s\n", res.verdict == VERDICT_DROP    ? "dropped"
				       : res.verdict == VERDICT_AUDIT ? "delivered, reported as audit"
								       : "delivered");
	}
	ret = EXIT_OK;
	goto out;
usage:
	fprintf(stderr, "%s", usage_text);
	ret = EXIT_USAGE;
out:
	offline_release(&o);
	free(inventories);
	return ret;
}

int main(int argc, char **argv)
{
	const char *admin = getenv(ADMIN_ENV) ? getenv(ADMIN_ENV) : ADMIN_DEFAULT_ENDPOINT;
	if (argc >= 3 && strcmp(argv[1], "--admin") == 0) {
		admin = argv[2];
		argv += 2;
		argc -= 2;
	} else if (argc >= 2 && strncmp(argv[1], "--admin=", 8) == 0) {
		admin = argv[1] + 8;
		argv++;
		argc--;
	}
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(usage_text, argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : EXIT_OK;
	}
	if (strcmp(argv[1], "policy") == 0 && argc >= 3) {
		if (strcmp(argv[2], "validate") == 0)
			return cmd_policy_validate(argc - 3, argv + 3);
		if (strcmp(argv[2], "compile") == 0)
			return cmd_policy_compile(argc - 2, argv + 2);
		if (strcmp(argv[2], "explain") == 0)
			return cmd_policy_explain(argc - 2, argv + 2);
	}
	int ret = online_main(admin, argc - 1, argv + 1);
	if (ret >= 0)
		return ret;
	fprintf(stderr, "bulkhead: unknown command \"%s%s%s\"\n", argv[1], argc >= 3 ? " " : "",
		argc >= 3 ? argv[2] : "");
	fputs(usage_text, stderr);
	return EXIT_USAGE;
}
