/* nft-text: a plan (nft-plan.h) as nft text, loadable with `nft -f`: what
 * --print-ruleset shows and bench/program-ruleset.sh loads beside the
 * batch. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nft-addr.h"
#include "nft-plan.h"

static void text_addr(FILE *f, int family, const uint8_t *bytes)
{
	char buf[INET6_ADDRSTRLEN];

	inet_ntop(family, bytes, buf, sizeof(buf));
	fputs(buf, f);
}

/* Prefix length when r is exactly one CIDR block, else -1. */
static int range_prefix_len(const struct addr_range *r, unsigned len)
{
	unsigned bits = len * 8, p = 0;

	while (p < bits) {
		unsigned byte = p / 8, bit = 7 - p % 8;

		if (((r->lo.bytes[byte] >> bit) & 1) != ((r->hi.bytes[byte] >> bit) & 1))
			break;
		p++;
	}
	for (unsigned q = p; q < bits; q++) {
		unsigned byte = q / 8, bit = 7 - q % 8;

		if (((r->lo.bytes[byte] >> bit) & 1) != 0 || ((r->hi.bytes[byte] >> bit) & 1) != 1)
			return -1;
	}
	return (int)p;
}

/* Element separator: four to a line, as nft list prints them. */
static void text_sep(FILE *f, size_t n)
{
	if (n == 0)
		fputc(' ', f);
	else if (n % 4)
		fputs(", ", f);
	else
		fputs(",\n\t\t\t     ", f);
}

/* An interval of addresses as nft writes it: a CIDR, LOW-HIGH, or one
 * address. */
static void text_interval(FILE *f, int family, const uint8_t *lo, const uint8_t *hi)
{
	struct addr_range r = {0};
	unsigned len = nft_addr_len(family);
	int plen;

	memcpy(r.lo.bytes, lo, len);
	memcpy(r.hi.bytes, hi, len);
	plen = range_prefix_len(&r, len);
	text_addr(f, family, lo);
	if (plen >= 0 && plen < (int)len * 8) {
		fprintf(f, "/%d", plen);
	} else if (plen < 0) {
		fputc('-', f);
		text_addr(f, family, hi);
	}
}

/* A set up to its first element: name, type (the family's address, then
 * suffix), flags and size. With no element (n), the set is closed there,
 * as nft rejects an empty element list, and the answer is false. */
static bool text_set_head(FILE *f, const struct nft_plan_set *ps, const char *suffix, size_t n)
{
	fprintf(f, "\tset %s {\n\t\ttype %s%s\n", ps->name, ps->family == AF_INET ? "ipv4_addr" : "ipv6_addr",
		suffix);
	if (ps->interval)
		fputs("\t\tflags interval\n", f);
	if (ps->size)
		fprintf(f, "\t\tsize %" PRIu32 "\n", ps->size);
	if (n == 0) {
		fputs("\t}\n", f);
		return false;
	}
	fputs("\t\telements = {", f);
	return true;
}

/* A named set: address . port pairs. */
static void text_named_set(FILE *f, const struct nft_plan_set *ps)
{
	unsigned alen = nft_addr_len(ps->family);

	if (!text_set_head(f, ps, " . inet_service", ps->n_keys))
		return;
	for (size_t i = 0; i < ps->n_keys; i++) {
		text_sep(f, i);
		text_addr(f, ps->family, ps->keys[i]);
		fprintf(f, " . %u", (unsigned)ps->keys[i][alen] << 8 | ps->keys[i][alen + 1]);
	}
	fputs(" }\n\t}\n", f);
}

/* Members as nft writes them: an interval set's ranges as CIDRs or
 * LOW-HIGH, a hash set's one address at a time. */
static void text_set(FILE *f, const struct nft_plan_set *ps)
{
	const struct range_list *l = ps->members;
	unsigned len = nft_addr_len(ps->family);
	size_t n = 0;

	if (ps->named) {
		text_named_set(f, ps);
		return;
	}
	if (!text_set_head(f, ps, "", l->n))
		return;
	for (size_t i = 0; i < l->n; i++) {
		const struct addr_range *r = &l->v[i];

		if (ps->interval) {
			text_sep(f, n++);
			text_interval(f, ps->family, r->lo.bytes, r->hi.bytes);
			continue;
		}
		uint8_t key[16];
		bool last = false;

		memcpy(key, r->lo.bytes, len);
		while (!last) {
			text_sep(f, n++);
			text_addr(f, ps->family, key);
			last = memcmp(key, r->hi.bytes, len) == 0 || nft_addr_increment(key, len);
		}
	}
	fputs(" }\n\t}\n", f);
}

/* What a rule of the bundle or a fallback matches, each part followed by
 * a space. */
static void text_match(FILE *f, const struct nft_plan_rule *pr)
{
	if (pr->family)
		fprintf(f, "meta nfproto %s ", pr->family == AF_INET ? "ipv4" : "ipv6");
	if (pr->set)
		fprintf(f, "%s %s @%s ", pr->family == AF_INET ? "ip" : "ip6",
			pr->dir == DIR_INGRESS ? "saddr" : "daddr", pr->set->name);
	if (pr->named) {
		fprintf(f, "meta l4proto %s %s daddr . th dport @%s ", proto_name(pr->port->proto),
			pr->family == AF_INET ? "ip" : "ip6", pr->named->name);
	} else if (pr->port) {
		const struct port_match *pm = pr->port;

		/* nft's name for ICMPv6 differs from the policy's. */
		fprintf(f, "meta l4proto %s ",
			pm->proto == IPPROTO_ICMPV6 ? "ipv6-icmp" : proto_name(pm->proto));
		if (pm->proto == IPPROTO_ICMP || pm->proto == IPPROTO_ICMPV6) {
			const char *kw = proto_name(pm->proto);

			if (pm->icmp_type >= 0)
				fprintf(f, "%s type %d ", kw, pm->icmp_type);
			if (pm->icmp_code >= 0)
				fprintf(f, "%s code %d ", kw, pm->icmp_code);
		} else if (pm->lo == pm->hi) {
			fprintf(f, "th dport %u ", pm->lo);
		} else if (!(pm->lo == 0 && pm->hi == 65535)) {
			fprintf(f, "th dport %u-%u ", pm->lo, pm->hi);
		}
	}
}

/* nft's name of a protocol of the map form's keys. */
static const char *text_proto(uint8_t proto)
{
	return proto == IPPROTO_ICMPV6 ? "ipv6-icmp" : proto_name(proto);
}

/* A map: its type, and its elements with the goto each. A map of
 * addresses lists one address or interval per line; the others four to a
 * line, as nft list prints them. */
static void text_map(FILE *f, const struct nft_plan *p, const struct nft_plan_map *m)
{
	bool addr = m->kind == NFT_MAP_HOSTS || m->kind == NFT_MAP_RANGES;

	fprintf(f, "\tmap %s {\n", m->name);
	if (addr)
		fprintf(f, "\t\ttype %s : verdict\n", m->family == AF_INET ? "ipv4_addr" : "ipv6_addr");
	else
		fputs("\t\ttype inet_proto . inet_service : verdict\n", f);
	if (m->kind != NFT_MAP_HOSTS)
		fputs("\t\tflags interval\n", f);
	if (m->size)
		fprintf(f, "\t\tsize %" PRIu32 "\n", m->size);
	if (!m->n_elems) {
		fputs("\t}\n", f); /* nft rejects an empty element list */
		return;
	}
	fputs("\t\telements = {", f);
	for (size_t i = 0; i < m->n_elems; i++) {
		const struct nft_plan_elem *e = &m->elems[i];

		text_sep(f, i);
		if (m->kind == NFT_MAP_HOSTS) {
			text_addr(f, m->family, e->lo);
		} else if (m->kind == NFT_MAP_RANGES) {
			text_interval(f, m->family, e->lo, e->hi);
		} else {
			unsigned lo = (unsigned)e->lo[1] << 8 | e->lo[2],
				 hi = (unsigned)e->hi[1] << 8 | e->hi[2];

			fprintf(f, "%s . %u", text_proto(e->lo[0]), lo);
			if (hi != lo)
				fprintf(f, "-%u", hi);
		}
		fprintf(f, " : goto %s", p->chains[e->target].name);
	}
	fputs(" }\n\t}\n", f);
}

static void text_rule(FILE *f, const struct nft_plan *p, const struct nft_plan_rule *pr, uint16_t group)
{
	char comment[NFT_COMMENT_MAX], prefix[NFT_PREFIX_MAX];

	fputs("\t\t", f);
	switch (pr->kind) {
	case NFT_PLAN_DISPATCH:
		fprintf(f, "meta nfproto %s %s %s vmap @%s\n", pr->family == AF_INET ? "ipv4" : "ipv6",
			pr->family == AF_INET ? "ip" : "ip6", pr->dir == DIR_INGRESS ? "saddr" : "daddr",
			p->maps[pr->map].name);
		return;
	case NFT_PLAN_LOOKUP:
		fprintf(f, "meta l4proto . th %s vmap @%s\n",
			p->maps[pr->map].kind == NFT_MAP_PORTS ? "dport" : "sport", p->maps[pr->map].name);
		return;
	case NFT_PLAN_GOTO:
		fprintf(f, "goto %s\n", p->chains[pr->target].name);
		return;
	case NFT_PLAN_FIXED:
		fprintf(f, "%s ", nft_plan_fixed_match(pr->dir, pr->fixed));
		break;
	default:
		text_match(f, pr);
	}
	/* An observe rule: a new connection's first packet, logged, no verdict. */
	fputs(pr->observe ? "ct status ! confirmed " : "counter ", f);
	if (nft_plan_rule_logs(pr)) {
		nft_plan_rule_prefix(pr, prefix);
		fprintf(f, "log prefix \"%s\" group %u snaplen %u ", prefix, group, NFT_NFLOG_SNAPLEN);
	}
	nft_plan_rule_comment(pr, comment);
	if (!pr->observe)
		fputs(pr->verdict == VERDICT_DROP ? "drop " : "accept ", f);
	fprintf(f, "comment \"%s\"\n", comment);
}

int nft_render_text(const struct bundle *b, const struct bundle_endpoint *ep, uint16_t nflog_group,
		    enum nft_form form, char **out)
{
	char err[256];
	struct nft_plan p;
	size_t size;
	char *text;
	FILE *f;
	int ret;

	ret = nft_plan_build(&p, b, ep, NULL, form, err, sizeof(err));
	if (ret < 0)
		return ret;
	f = open_memstream(&text, &size);
	if (!f) {
		nft_plan_release(&p);
		return -ENOMEM;
	}
	/* The same replace-in-one-transaction idiom as the batch. */
	fprintf(f, "table inet %s\ndelete table inet %s\n", NFT_TABLE_NAME, NFT_TABLE_NAME);
	fprintf(f, "table inet %s {\n", NFT_TABLE_NAME);
	for (size_t i = 0; i < p.n_sets; i++) {
		text_set(f, &p.sets[i]);
		fputc('\n', f);
	}
	for (size_t i = 0; i < p.n_maps; i++) {
		text_map(f, &p, &p.maps[i]);
		fputc('\n', f);
	}
	for (size_t d = 0; d < p.n_chains; d++) {
		const struct nft_plan_chain *c = &p.chains[d];

		fprintf(f, "\tchain %s {\n", c->name);
		if (c->kind == NFT_PLAN_BASE_CHAIN)
			fprintf(f, "\t\ttype filter hook %s priority 0; policy accept;\n", c->hook);
		for (size_t i = c->first_rule; i < c->first_rule + c->n_rules; i++)
			text_rule(f, &p, &p.rules[i], nflog_group);
		fprintf(f, "\t}\n%s", d + 1 < p.n_chains ? "\n" : "");
	}
	fputs("}\n", f);
	ret = ferror(f) ? -ENOMEM : 0;
	if (fclose(f) != 0)
		ret = -ENOMEM;
	nft_plan_release(&p);
	if (ret < 0) {
		free(text);
		return ret;
	}
	*out = text;
	return 0;
}
