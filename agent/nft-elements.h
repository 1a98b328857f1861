/* nft-elements: a plan's set and map members as nft set elements, and the
 * element diff between two plans of one shape. Pure: elements go to a
 * callback, which the batch (nft-batch.c) turns into messages and the
 * tests into a model of the kernel's sets. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "nft-plan.h"

/* Where an element goes: a set of the linear form, or a map of the map
 * form (one of the two is set). */
struct nft_elem_dest {
	const struct nft_plan_set *set;
	const struct nft_plan_map *map;
};

/* One element as the kernel takes it.
 * - A hash set or map holds each address as an element.
 * - An interval set or map of addresses (the kernel's tree) holds lo..hi
 *   as a start element at lo and an end element at hi + 1, except at the
 *   top of the address space, where the start alone runs to the end (nft
 *   marks it open); deleting an interval names both elements again, end
 *   flag included. A map's start element carries the goto; the end none.
 * - A named set (nft-plan.h) holds each address . port key as an
 *   element of nft_plan_named_key_len() bytes.
 * - A protocol and port map (NFT_MAP_PORTS, NFT_MAP_ICMP: concatenated
 *   intervals, the kernel's pipapo) holds lo..hi as one element with key
 *   and key_end, each the protocol in a 4-byte field then the 16-bit value
 *   in another: 8 bytes. */
struct nft_elem {
	const uint8_t *key;	/* key_len bytes, valid during the call */
	const uint8_t *key_end; /* NFT_MAP_PORTS, NFT_MAP_ICMP: the interval's last key; else NULL */
	unsigned key_len;
	bool end;	   /* an interval's end element (NFT_SET_ELEM_INTERVAL_END) */
	bool top;	   /* an interval's start that runs to the top: no end follows */
	bool more;	   /* this interval's end element comes next: keep them together */
	const char *chain; /* a map's element: goto this chain; NULL for a set's, or an end */
};

/* Called for each element; add false: a deletion. A negative return stops
 * the walk and is returned. */
typedef int (*nft_elem_fn)(void *arg, const struct nft_elem_dest *dest, bool add, const struct nft_elem *e);

/* Every element of the set or map dest, in ascending order, as additions;
 * a map's targets named from plan p. */
BH_MUST_CHECK int nft_elements_all(const struct nft_plan *p, const struct nft_elem_dest *dest, nft_elem_fn fn,
				   void *arg);

/* What turns the elements of old into those of now, plans of one shape
 * (nft_plan_same_shape()): every deletion, set by set (map by map) in plan
 * order, then every addition. Deletions only of what old holds, additions
 * only of what old lacks or loses, so the kernel holding old's elements
 * takes them as one transaction. A hash set's changes are single
 * addresses; an interval set's range that changed in any way is deleted
 * whole and added whole, so start and end elements stay paired. A map's
 * element whose chain changed (by name) is deleted and added again. The
 * map form's class maps are not walked: their chains come and go whole
 * (nft-batch.c). dest is now's for both. */
BH_MUST_CHECK int nft_elements_delta(const struct nft_plan *old, const struct nft_plan *now, nft_elem_fn fn,
				     void *arg);
