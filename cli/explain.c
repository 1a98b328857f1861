/* bulkhead policy explain: which rules decide a packet, at its source
 * (egress) and its destination (ingress), from a policy and inventories
 * read offline; one packet from the options, or many as JSON lines. */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bulkhead/compile.h"
#include "bulkhead/eval.h"
#include "bulkhead/log.h"
#include "cli.h"
#include "offline.h"

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

/* ---- named ports: how each name the deciding sides' rules use resolved ---- */

/* One resolution: the name on one endpoint (or on no endpoint). */
struct name_seen {
	enum direction dir;
	const struct port_match *m;    /* the rule's entry: proto and name */
	const struct endpoint *ep;     /* where it resolves; NULL: no endpoint has the address */
	const struct endpoint_port *p; /* what ep calls the name, of any protocol; NULL: undefined */
	bool contested;		       /* the destination is claimed twice */
};

struct names {
	struct name_seen *v;
	size_t n;
	json_t *seen; /* "DIR PROTO/NAME" already listed */
};

static void names_add(struct names *ns, enum direction dir, const struct port_match *m,
		      const struct endpoint *ep, bool contested)
{
	ns->v = xrealloc(ns->v, (ns->n + 1) * sizeof(*ns->v));
	ns->v[ns->n++] =
	    (struct name_seen){dir, m, ep, ep ? inventory_port_of(ep, m->name) : NULL, contested};
}

/* The names of the packet's protocol in the rules of the policies that
 * apply to ep in dir, each resolved as DESIGN §2 says: ingress on ep
 * itself, egress on every endpoint that claims the destination. */
static void names_collect(struct offline *o, const struct packet *pkt, enum direction dir,
			  const struct endpoint *ep, struct names *ns)
{
	const struct policy_doc *doc = o->doc;
	for (size_t i = 0; ep && i < doc->n_policies; i++) {
		const struct rule_list *rl = &doc->policies[i].rules[dir];
		if (!rl->present || !compile_group_selects(doc->policies[i].applies_to, ep))
			continue;
		for (size_t k = 0; k < rl->n; k++) {
			for (size_t p = 0; p < rl->v[k].n_ports; p++) {
				const struct port_match *m = &rl->v[k].ports[p];
				char key[64];
				snprintf(key, sizeof(key), "%d %s/%s", dir, proto_name(m->proto),
					 m->name ? m->name : "");
				if (!m->name || m->proto != pkt->proto || json_object_get(ns->seen, key))
					continue;
				json_object_set_new(ns->seen, key, json_true());
				if (dir == DIR_INGRESS) {
					names_add(ns, dir, m, ep, false);
					continue;
				}
				bool contested = inventory_addr_conflicted(o->inv, &pkt->dst);
				size_t before = ns->n;
				for (size_t c = 0; c < o->inv->n_claims; c++)
					if (addr_cmp(&o->inv->claims[c].addr, &pkt->dst) == 0)
						names_add(ns, dir, m, o->inv->claims[c].ep, contested);
				if (ns->n == before)
					names_add(ns, dir, m, NULL, false);
			}
		}
	}
}

/* "8080", "not defined", "defined as udp/8080, not tcp". */
static void name_result(const struct name_seen *s, char *buf, size_t size)
{
	if (!s->p)
		snprintf(buf, size, "not defined: matches nothing there");
	else if (s->p->proto != s->m->proto)
		snprintf(buf, size, "defined as %s/%u, not %s: matches nothing there",
			 proto_name(s->p->proto), s->p->port, proto_name(s->m->proto));
	else
		snprintf(buf, size, "%u%s", s->p->port,
			 s->contested
			     ? " (a contested address: allow rules do not match it by name, deny rules "
			       "match any claimant's number)"
			     : "");
}

static void names_text(const struct names *ns, const struct packet *pkt)
{
	for (size_t i = 0; i < ns->n; i++) {
		const struct name_seen *s = &ns->v[i];
		char port[32], result[160], where[300];
		port_match_format(s->m, port, sizeof(port));
		if (!s->ep) {
			char a[ADDR_STRLEN];
			addr_format(&pkt->dst, a);
			printf("  name    %-7s %s: %s is no endpoint's: matches nothing\n",
			       direction_name(s->dir), port, a);
			continue;
		}
		snprintf(where, sizeof(where), "%s/%s", s->ep->node, s->ep->name);
		name_result(s, result, sizeof(result));
		printf("  name    %-7s %s on %s: %s\n", direction_name(s->dir), port, where, result);
	}
}

/* [{"dir", "port": "tcp/http", "endpoint": "NODE/NAME"|null, "number": N|null,
 *   "defined_as": "udp/N" (only when another protocol's)}] */
static json_t *names_json(const struct names *ns)
{
	json_t *out = json_array();
	for (size_t i = 0; i < ns->n; i++) {
		const struct name_seen *s = &ns->v[i];
		char port[32], where[300], other[32];
		port_match_format(s->m, port, sizeof(port));
		if (s->ep)
			snprintf(where, sizeof(where), "%s/%s", s->ep->node, s->ep->name);
		bool same = s->p && s->p->proto == s->m->proto;
		json_t *o =
		    json_pack("{s:s,s:s,s:s?,s:o}", "dir", direction_name(s->dir), "port", port, "endpoint",
			      s->ep ? where : NULL, "number", same ? json_integer(s->p->port) : json_null());
		if (s->p && !same) {
			snprintf(other, sizeof(other), "%s/%u", proto_name(s->p->proto), s->p->port);
			json_object_set_new(o, "defined_as", json_string(other));
		}
		if (s->contested)
			json_object_set_new(o, "contested", json_true());
		json_array_append_new(out, o);
	}
	return out;
}

static void names_release(struct names *ns)
{
	free(ns->v);
	json_decref(ns->seen);
}

static void explain_packet(struct offline *o, const struct packet *pkt, struct path_result *res,
			   const struct endpoint **src_ep, const struct endpoint **dst_ep, struct names *ns)
{
	*src_ep = inventory_find_by_addr(o->inv, &pkt->src);
	*dst_ep = inventory_find_by_addr(o->inv, &pkt->dst);
	*ns = (struct names){.seen = json_object()};
	names_collect(o, pkt, DIR_EGRESS, *src_ep, ns);
	names_collect(o, pkt, DIR_INGRESS, *dst_ep, ns);
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
			    const struct endpoint *dst_ep, const struct names *ns)
{
	json_t *j =
	    json_pack("{s:b,s:s,s:o,s:o}", "delivered", res->delivered, "verdict", verdict_name(res->verdict),
		      direction_name(DIR_EGRESS), side_json(res->has_egress, src_ep, &res->egress),
		      direction_name(DIR_INGRESS), side_json(res->has_ingress, dst_ep, &res->ingress));
	/* Only where a rule names a port: the answers before names stay. */
	if (j && ns->n)
		json_object_set_new(j, "names", names_json(ns));
	return j;
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
			struct names ns;
			explain_packet(o, &pkt, &res, &src_ep, &dst_ep, &ns);
			out = explain_json(&res, src_ep, dst_ep, &ns);
			names_release(&ns);
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

/* A whole number from 0 to max. */
static bool number_parse(const char *s, long max, long *out)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*end || v < 0 || v > max)
		return false;
	*out = v;
	return true;
}

int cmd_policy_explain(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"inventory", required_argument, NULL, 'i'},
	    {"probes", required_argument, NULL, 'P'},
	    {"from", required_argument, NULL, 'f'},
	    {"to", required_argument, NULL, 't'},
	    {"proto", required_argument, NULL, 'p'},
	    {"port", required_argument, NULL, 'o'},
	    {"type", required_argument, NULL, 'y'},
	    {"code", required_argument, NULL, 'c'},
	    {"json", no_argument, NULL, 'j'},
	    {0},
	};
	const char **inventories = xcalloc((size_t)argc, sizeof(*inventories));
	const char *probes = NULL, *from = NULL, *to = NULL, *proto = NULL;
	long port = 0, type = 0, code = 0;
	size_t n_inventories = 0;
	bool json = false;
	int family = AF_INET, c, ret = EXIT_SHOW_USAGE;
	struct offline o = {0};

	optind = 0;
	while ((c = getopt_long(argc, argv, "i:6", opts, NULL)) != -1) {
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
			if (!number_parse(optarg, 65535, &port))
				goto out;
			break;
		case 'y':
			if (!number_parse(optarg, 255, &type))
				goto out;
			break;
		case 'c':
			if (!number_parse(optarg, 255, &code))
				goto out;
			break;
		case 'j':
			json = true;
			break;
		case '6':
			family = AF_INET6;
			break;
		default:
			goto out;
		}
	}
	if (optind != argc - 1 || n_inventories == 0 || (!probes && (!from || !to || !proto)))
		goto out;
	if ((ret = offline_load(&o, argv[optind], inventories, n_inventories)) != EXIT_OK)
		goto out;
	if (probes) {
		ret = explain_probes(&o, probes);
		goto out;
	}

	struct packet pkt = {.dport = (uint16_t)port, .icmp_type = (uint8_t)type, .icmp_code = (uint8_t)code};
	if (!proto_parse(proto, &pkt.proto)) {
		fprintf(stderr, "bulkhead: --proto: \"%s\": expected tcp, udp, sctp, icmp or icmpv6\n",
			proto);
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
	struct names ns;
	explain_packet(&o, &pkt, &res, &src_ep, &dst_ep, &ns);
	if (json) {
		json_t *j = explain_json(&res, src_ep, dst_ep, &ns);
		json_dumpf(j, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(j);
	} else {
		char s[ADDR_STRLEN], d[ADDR_STRLEN], p[32];
		addr_format(&pkt.src, s);
		addr_format(&pkt.dst, d);
		struct port_match pm = {.proto = pkt.proto,
					.lo = pkt.dport,
					.hi = pkt.dport,
					.icmp_type = pkt.icmp_type,
					.icmp_code = pkt.icmp_code};
		port_match_format(&pm, p, sizeof(p));
		printf("%s -> %s %s\n", s, d, p);
		explain_conflict(&o, &pkt.src);
		explain_conflict(&o, &pkt.dst);
		names_text(&ns, &pkt);
		explain_side_text(direction_name(DIR_EGRESS), res.has_egress, src_ep, &res.egress);
		explain_side_text(direction_name(DIR_INGRESS), res.has_ingress, dst_ep, &res.ingress);
		printf("  result  %s\n", res.verdict == VERDICT_DROP	? "dropped"
					 : res.verdict == VERDICT_AUDIT ? "delivered, reported as audit"
									: "delivered");
	}
	names_release(&ns);
	ret = EXIT_OK;
out:
	offline_release(&o);
	free(inventories);
	return ret;
}
