/* nft-elements: a plan's set members as nft set elements, and the element
 * diff between two plans of one shape. Pure: elements go to a callback,
 * which the batch (nft-batch.c) turns into messages and the tests into a
 * model of the kernel's set. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "nft-plan.h"

/* One element as the kernel takes it. A hash set holds each address as an
 * element. An interval set holds lo..hi as a start element at lo and an
 * end element at hi + 1, except at the top of the address space, where
 * the start alone runs to the end (nft marks it open); deleting an
 * interval names both elements again, end flag included. */
struct nft_elem {
	const uint8_t *key; /* nft_addr_len(set family) bytes, valid during the call */
	bool end;	    /* an interval's end element (NFT_SET_ELEM_INTERVAL_END) */
	bool top;	    /* an interval's start that runs to the top: no end follows */
	bool more;	    /* this interval's end element comes next: keep them together */
};

/* Called for each element; add false: a deletion. A negative return stops
 * the walk and is returned. */
typedef int (*nft_elem_fn)(void *arg, const struct nft_plan_set *ps, bool add, const struct nft_elem *e);

/* Every element of ps, in ascending order, as additions. */
BH_MUST_CHECK int nft_elements_all(const struct nft_plan_set *ps, nft_elem_fn fn, void *arg);

/* What turns the elements of old into those of now, plans of one shape
 * (nft_plan_same_shape()): every deletion, set by set in plan order, then
 * every addition, set by set. Deletions only of what old holds, additions
 * only of what old lacks or loses, so the kernel holding old's elements
 * takes them as one transaction. A hash set's changes are single
 * addresses; an interval set's range that changed in any way is deleted
 * whole and added whole, so start and end elements stay paired. ps is now's
 * set for both. */
BH_MUST_CHECK int nft_elements_delta(const struct nft_plan *old, const struct nft_plan *now, nft_elem_fn fn,
				     void *arg);
