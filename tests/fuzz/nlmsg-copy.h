/* For the fuzz targets whose input is one netlink message (nflog,
 * conntrack). */
#pragma once

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <linux/netlink.h>

/* A copy of exactly the input's size, aligned like a receive buffer, so
 * the sanitizers see any read past it; its length field set to the size,
 * as the receive loop (mnl_nlmsg_ok) guarantees. NULL for an input too
 * short or too long for one message. The caller frees it. */
static inline struct nlmsghdr *fuzz_nlmsg_copy(const uint8_t *data, size_t size)
{
	if (size < NLMSG_HDRLEN || size > 65536)
		return NULL;
	struct nlmsghdr *nlh =
	    aligned_alloc(NLMSG_ALIGNTO, (size + NLMSG_ALIGNTO - 1) & ~(size_t)(NLMSG_ALIGNTO - 1));
	if (!nlh)
		return NULL;
	memcpy(nlh, data, size);
	nlh->nlmsg_len = (uint32_t)size;
	return nlh;
}
