/* Addresses, CIDRs and interval lists (see addr.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/addr.h"
#include "bulkhead/arena.h"

unsigned addr_bits(int family)
{
	return family == AF_INET ? 32 : 128;
}

int addr_cmp(const struct bh_addr *a, const struct bh_addr *b)
{
	if (a->family != b->family)
		return a->family < b->family ? -1 : 1;
	return memcmp(a->bytes, b->bytes, sizeof(a->bytes));
}

int addr_parse(const char *s, struct bh_addr *out)
{
	struct bh_addr a = {0};
	if (strchr(s, ':')) {
		if (inet_pton(AF_INET6, s, a.bytes) != 1)
			return -EINVAL;
		a.family = AF_INET6;
	} else {
		/* inet_pton accepts only the strict dotted quad, no octal or
		 * shortened forms: what we want from a policy file. */
		if (inet_pton(AF_INET, s, a.bytes) != 1)
			return -EINVAL;
		a.family = AF_INET;
	}
	*out = a;
	return 0;
}

/* A decimal octet at p; returns the end. */
static char *put_octet(char *p, unsigned v)
{
	if (v >= 100)
		*p++ = (char)('0' + v / 100);
	if (v >= 10)
		*p++ = (char)('0' + v / 10 % 10);
	*p++ = (char)('0' + v % 10);
	return p;
}

static char *put_dotted(char *p, const uint8_t *b)
{
	for (int i = 0; i < 4; i++) {
		if (i)
			*p++ = '.';
		p = put_octet(p, b[i]);
	}
	return p;
}

/* Text as glibc's inet_ntop() writes it, which bundles hash (a big one
 * formats 200,000 addresses; inet_ntop's printf was a sixth of decoding
 * it): the first longest run of two or more zero words as "::", words in
 * lowercase hex without leading zeros, and ::a.b.c.d / ::ffff:a.b.c.d for
 * the IPv4-compatible and -mapped forms. test-addr compares the two. */
void addr_format(const struct bh_addr *a, char buf[ADDR_STRLEN])
{
	static const char hex[] = "0123456789abcdef";
	unsigned w[8];
	int best = -1, best_len = 0, cur = -1;
	char *p = buf;

	if (a->family == AF_INET) {
		*put_dotted(p, a->bytes) = '\0';
		return;
	}
	for (int i = 0; i < 8; i++) {
		w[i] = (unsigned)a->bytes[2 * i] << 8 | a->bytes[2 * i + 1];
		if (w[i] == 0 && cur < 0)
			cur = i;
		if (cur >= 0 && (w[i] != 0 || i == 7)) {
			int len = (w[i] == 0 ? i + 1 : i) - cur;

			if (len > best_len) {
				best = cur;
				best_len = len;
			}
			cur = -1;
		}
	}
	if (best_len < 2)
		best = -1;
	for (int i = 0; i < 8; i++) {
		if (best >= 0 && i >= best && i < best + best_len) {
			if (i == best)
				*p++ = ':';
			continue;
		}
		if (i)
			*p++ = ':';
		if (i == 6 && best == 0 && (best_len == 6 || (best_len == 5 && w[5] == 0xffff))) {
			p = put_dotted(p, a->bytes + 12);
			break;
		}
		bool lead = true;
		for (int shift = 12; shift >= 0; shift -= 4) {
			unsigned d = w[i] >> shift & 15;

			if (d || !lead || shift == 0) {
				*p++ = hex[d];
				lead = false;
			}
		}
	}
	if (best >= 0 && best + best_len == 8)
		*p++ = ':';
	*p = '\0';
}

/* Clears (set=false) or sets the bits of a beyond prefix_len. */
static void addr_fill_host(struct bh_addr *a, unsigned prefix_len, bool set)
{
	unsigned bits = addr_bits(a->family);
	for (unsigned i = prefix_len; i < bits; i++) {
		uint8_t mask = (uint8_t)(0x80 >> (i % 8));
		if (set)
			a->bytes[i / 8] |= mask;
		else
			a->bytes[i / 8] &= (uint8_t)~mask;
	}
}

bool addr_is_zero_host(const struct bh_addr *a, unsigned prefix_len)
{
	struct bh_addr net = *a;
	addr_fill_host(&net, prefix_len, false);
	return addr_cmp(&net, a) == 0;
}

int cidr_parse(const char *s, struct bh_addr *net, unsigned *prefix_len)
{
	char buf[ADDR_STRLEN + 8];
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	if (alen == 0 || alen >= ADDR_STRLEN)
		return -EINVAL;
	memcpy(buf, s, alen);
	buf[alen] = '\0';

	struct bh_addr a;
	if (addr_parse(buf, &a) < 0)
		return -EINVAL;
	unsigned bits = addr_bits(a.family), plen = bits;
	if (slash) {
		const char *p = slash + 1;
		/* Digits only, no sign, no leading zeros, no spaces. */
		if (!*p || strlen(p) > 3 || (p[0] == '0' && p[1]))
			return -EINVAL;
		plen = 0;
		for (; *p; p++) {
			if (*p < '0' || *p > '9')
				return -EINVAL;
			plen = plen * 10 + (unsigned)(*p - '0');
		}
		if (plen > bits)
			return -EINVAL;
	}
	bool clean = addr_is_zero_host(&a, plen);
	addr_fill_host(&a, plen, false);
	*net = a;
	*prefix_len = plen;
	return clean ? 0 : -EDOM;
}

void cidr_range(const struct bh_addr *net, unsigned prefix_len, struct addr_range *out)
{
	out->lo = *net;
	addr_fill_host(&out->lo, prefix_len, false);
	out->hi = out->lo;
	addr_fill_host(&out->hi, prefix_len, true);
}

void range_format(const struct addr_range *r, char buf[RANGE_STRLEN])
{
	addr_format(&r->lo, buf);
	if (addr_cmp(&r->lo, &r->hi) != 0) {
		size_t n = strlen(buf);
		buf[n] = '-';
		addr_format(&r->hi, buf + n + 1);
	}
}

int range_parse(const char *s, struct addr_range *out)
{
	char buf[RANGE_STRLEN + 1];
	size_t len = strlen(s);
	if (len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, len + 1);
	char *dash = strchr(buf, '-');
	struct addr_range r;
	if (dash)
		*dash = '\0';
	if (addr_parse(buf, &r.lo) < 0)
		return -EINVAL;
	if (dash) {
		if (addr_parse(dash + 1, &r.hi) < 0)
			return -EINVAL;
		if (r.hi.family != r.lo.family || addr_cmp(&r.lo, &r.hi) > 0)
			return -EINVAL;
	} else {
		r.hi = r.lo;
	}
	*out = r;
	return 0;
}

bool range_contains(const struct addr_range *r, const struct bh_addr *a)
{
	return addr_cmp(&r->lo, a) <= 0 && addr_cmp(a, &r->hi) <= 0;
}

void range_list_init(struct range_list *l, struct arena *arena)
{
	memset(l, 0, sizeof(*l));
	l->arena = arena;
}

void range_list_release(struct range_list *l)
{
	if (!l->arena)
		free(l->v);
	range_list_init(l, l->arena);
}

int range_list_reserve(struct range_list *l, size_t n)
{
	struct addr_range *v;

	if (n <= l->cap)
		return 0;
	if (l->arena) {
		v = arena_calloc(l->arena, n, sizeof(*v));
		if (v && l->n)
			memcpy(v, l->v, l->n * sizeof(*v));
	} else {
		v = reallocarray(l->v, n, sizeof(*v));
	}
	if (!v)
		return -ENOMEM;
	l->v = v;
	l->cap = n;
	return 0;
}

int range_list_add(struct range_list *l, const struct addr_range *r)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 4;
		struct addr_range *v;
		if (l->arena) {
			/* The old block stays in the arena: doubling bounds the
			 * waste to the list's own size. */
			v = arena_calloc(l->arena, cap, sizeof(*v));
			if (v && l->n)
				memcpy(v, l->v, l->n * sizeof(*v));
		} else {
			v = realloc(l->v, cap * sizeof(*v));
		}
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = *r;
	return 0;
}

static int range_cmp_lo(const void *a, const void *b)
{
	return addr_cmp(&((const struct addr_range *)a)->lo, &((const struct addr_range *)b)->lo);
}

/* a + 1; false when a is the top of its family's space. */
static bool addr_next(const struct bh_addr *a, struct bh_addr *out)
{
	*out = *a;
	for (int i = (int)addr_bits(a->family) / 8 - 1; i >= 0; i--) {
		if (++out->bytes[i] != 0)
			return true;
	}
	return false;
}

/* a - 1; false when a is zero. */
static bool addr_prev(const struct bh_addr *a, struct bh_addr *out)
{
	*out = *a;
	for (int i = (int)addr_bits(a->family) / 8 - 1; i >= 0; i--) {
		if (out->bytes[i]-- != 0)
			return true;
	}
	return false;
}

void range_list_normalize(struct range_list *l)
{
	if (l->n > 1)
		qsort(l->v, l->n, sizeof(*l->v), range_cmp_lo);
	range_list_coalesce_sorted(l);
}

void range_list_coalesce_sorted(struct range_list *l)
{
	if (l->n < 2)
		return;
	size_t out = 0;
	for (size_t i = 1; i < l->n; i++) {
		struct addr_range *cur = &l->v[out];
		const struct addr_range *r = &l->v[i];
		struct bh_addr after;
		bool touches = cur->hi.family == r->lo.family &&
			       (addr_cmp(&r->lo, &cur->hi) <= 0 ||
				(addr_next(&cur->hi, &after) && addr_cmp(&after, &r->lo) == 0));
		if (touches) {
			if (addr_cmp(&r->hi, &cur->hi) > 0)
				cur->hi = r->hi;
		} else {
			l->v[++out] = *r;
		}
	}
	l->n = out + 1;
}

void range_list_sort_unique(struct range_list *l)
{
	if (l->n > 1)
		qsort(l->v, l->n, sizeof(*l->v), range_cmp_lo);
	range_list_unique_sorted(l);
}

void range_list_unique_sorted(struct range_list *l)
{
	if (l->n < 2)
		return;
	size_t out = 0;
	for (size_t i = 1; i < l->n; i++) {
		if (addr_cmp(&l->v[out].lo, &l->v[i].lo) != 0 || addr_cmp(&l->v[out].hi, &l->v[i].hi) != 0)
			l->v[++out] = l->v[i];
	}
	l->n = out + 1;
}

/* Appends lo..hi to the array out (room was made for it). */
static void range_put(struct addr_range *out, size_t *n, const struct bh_addr *lo, const struct bh_addr *hi)
{
	out[(*n)++] = (struct addr_range){*lo, *hi};
}

int range_list_subtract_list(struct range_list *l, struct range_list *cuts)
{
	range_list_normalize(cuts);
	if (l->n == 0 || cuts->n == 0)
		return 0;
	/* Each cut splits at most one range in two: n + m ranges at most.
	 * One array, not one per cut: memory stays linear in the input. */
	size_t cap = l->n + cuts->n, n = 0;
	if (cap < l->n)
		return -ENOMEM;
	struct addr_range *out =
	    l->arena ? arena_calloc(l->arena, cap, sizeof(*out)) : calloc(cap, sizeof(*out));
	if (!out)
		return -ENOMEM;
	/* One sweep: both lists are sorted and disjoint, so the first cut
	 * that can touch a range never moves back. */
	size_t j = 0;
	for (size_t i = 0; i < l->n; i++) {
		const struct addr_range *r = &l->v[i];
		while (j < cuts->n && addr_cmp(&cuts->v[j].hi, &r->lo) < 0)
			j++;
		struct bh_addr cur = r->lo;
		bool open = true;
		for (size_t k = j; open && k < cuts->n && addr_cmp(&cuts->v[k].lo, &r->hi) <= 0; k++) {
			const struct addr_range *c = &cuts->v[k];
			struct bh_addr before;
			if (addr_cmp(&c->lo, &cur) > 0 && addr_prev(&c->lo, &before))
				range_put(out, &n, &cur, &before);
			/* A cut reaching r's end (or the top of the space) closes r. */
			open = addr_cmp(&c->hi, &r->hi) < 0 && addr_next(&c->hi, &cur);
		}
		if (open)
			range_put(out, &n, &cur, &r->hi);
	}
	range_list_release(l);
	l->v = out;
	l->n = n;
	l->cap = cap;
	return 0;
}

int range_list_subtract(struct range_list *l, const struct addr_range *cut)
{
	/* Normalizing a list of one range writes nothing: cut stays const. */
	struct range_list one = {.v = (struct addr_range *)cut, .n = 1, .cap = 1};
	return range_list_subtract_list(l, &one);
}

const struct addr_range *range_list_find(const struct range_list *l, const struct bh_addr *a)
{
	size_t lo = 0, hi = l->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct addr_range *r = &l->v[mid];
		if (addr_cmp(a, &r->lo) < 0)
			hi = mid;
		else if (addr_cmp(a, &r->hi) > 0)
			lo = mid + 1;
		else
			return r;
	}
	return NULL;
}

bool range_list_contains(const struct range_list *l, const struct bh_addr *a)
{
	return range_list_find(l, a) != NULL;
}

bool range_list_equal(const struct range_list *a, const struct range_list *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++) {
		if (addr_cmp(&a->v[i].lo, &b->v[i].lo) || addr_cmp(&a->v[i].hi, &b->v[i].hi))
			return false;
	}
	return true;
}
