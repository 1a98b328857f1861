/* nft-addr: addresses as the nft layers handle them, big-endian bytes of
 * one family's length (4 or 16). Inline: the element diff compares and
 * steps addresses in its inner loops, where a call per comparison costs
 * more than the rest of the work. */
#pragma once

#include <arpa/inet.h>
#include <endian.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "bulkhead/addr.h"

static inline unsigned nft_addr_len(int family)
{
	return family == AF_INET ? 4 : 16;
}

/* Adds one; true when it wrapped (was all ones). */
static inline bool nft_addr_increment(uint8_t *bytes, unsigned len)
{
	for (unsigned i = len; i-- > 0;) {
		if (++bytes[i] != 0)
			return false;
	}
	return true;
}

/* The top of the address space. */
static inline bool nft_addr_is_top(const uint8_t *bytes, unsigned len)
{
	for (unsigned i = 0; i < len; i++) {
		if (bytes[i] != 0xff)
			return false;
	}
	return true;
}

/* <0, 0, >0 as numbers. */
static inline int nft_addr_order(const uint8_t *a, const uint8_t *b, unsigned len)
{
	uint64_t x, y;

	if (len == 4) {
		uint32_t p, q;

		memcpy(&p, a, 4);
		memcpy(&q, b, 4);
		p = ntohl(p);
		q = ntohl(q);
		return (p > q) - (p < q);
	}
	memcpy(&x, a, 8);
	memcpy(&y, b, 8);
	if (x == y) {
		memcpy(&x, a + 8, 8);
		memcpy(&y, b + 8, 8);
	}
	x = be64toh(x);
	y = be64toh(y);
	return (x > y) - (x < y);
}
