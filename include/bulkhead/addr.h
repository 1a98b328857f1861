/* IPv4/IPv6 addresses, CIDRs and sorted interval lists of addresses. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "bulkhead/common.h"

/* An address as a big-endian 128-bit number; IPv4 uses bytes 0..3 and
 * leaves the rest zero, so memcmp orders addresses of one family. */
struct bh_addr {
	uint8_t family; /* AF_INET or AF_INET6 */
	uint8_t bytes[16];
};

/* Inclusive range lo..hi of one family. */
struct addr_range {
	struct bh_addr lo, hi;
};

/* Growable list of ranges. After range_list_normalize() it is sorted,
 * merged (no overlapping or adjacent ranges) and searchable. */
struct range_list {
	struct addr_range *v;
	size_t n, cap;
	struct arena *arena; /* storage owner; NULL: malloc, freed by release */
};

#define ADDR_STRLEN  46 /* INET6_ADDRSTRLEN */
#define RANGE_STRLEN (2 * ADDR_STRLEN + 1)

unsigned addr_bits(int family); /* 32 or 128 */
int addr_cmp(const struct bh_addr *a, const struct bh_addr *b);
bool addr_is_zero_host(const struct bh_addr *a, unsigned prefix_len);

/* "198.18.0.1", "2001:db8::1". 0 or -EINVAL. */
BH_MUST_CHECK int addr_parse(const char *s, struct bh_addr *out);
void addr_format(const struct bh_addr *a, char buf[ADDR_STRLEN]);

/* "198.18.0.0/15", or a bare address (a host prefix). Returns 0, -EINVAL
 * for bad syntax or prefix, -EDOM when bits beyond the prefix are set
 * (then *net still receives the address with those bits cleared, for the
 * error message). */
BH_MUST_CHECK int cidr_parse(const char *s, struct bh_addr *net, unsigned *prefix_len);
/* The range that net/prefix_len covers. */
void cidr_range(const struct bh_addr *net, unsigned prefix_len, struct addr_range *out);

/* "lo-hi", or "a" when lo == hi; the format bundles use. */
void range_format(const struct addr_range *r, char buf[RANGE_STRLEN]);
BH_MUST_CHECK int range_parse(const char *s, struct addr_range *out);
bool range_contains(const struct addr_range *r, const struct bh_addr *a);

struct arena;
void range_list_init(struct range_list *l, struct arena *arena);
void range_list_release(struct range_list *l); /* frees malloc'd storage */
BH_MUST_CHECK int range_list_add(struct range_list *l, const struct addr_range *r);
/* Room for n ranges in all, so that adding up to n allocates nothing more
 * (an arena's list otherwise leaves each outgrown block behind). 0 or
 * -ENOMEM. */
BH_MUST_CHECK int range_list_reserve(struct range_list *l, size_t n);
void range_list_normalize(struct range_list *l);
/* Sorts and drops exact duplicates but keeps adjacent ranges apart: the
 * form of a list of single addresses (hash sets). Searchable too. */
void range_list_sort_unique(struct range_list *l);
/* The second halves of those two, for a list already sorted by each
 * range's start (a merge of sorted lists): linear, no sort. */
void range_list_coalesce_sorted(struct range_list *l);
void range_list_unique_sorted(struct range_list *l);
/* Removes every range of cuts from a normalized list, which stays
 * normalized: cuts is normalized first (so reordered), then one sweep over
 * both, O((n + m) log m) time and n + m ranges of memory. 0 or -ENOMEM (l
 * untouched then). */
BH_MUST_CHECK int range_list_subtract_list(struct range_list *l, struct range_list *cuts);
/* The same for one range. */
BH_MUST_CHECK int range_list_subtract(struct range_list *l, const struct addr_range *r);
/* The range of a normalized list that holds a, or NULL (binary search). */
const struct addr_range *range_list_find(const struct range_list *l, const struct bh_addr *a);
/* Binary search; the list must be normalized. */
bool range_list_contains(const struct range_list *l, const struct bh_addr *a);
bool range_list_equal(const struct range_list *a, const struct range_list *b);
