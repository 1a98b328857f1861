/* nft-batch: what the other nft layers need of a built batch (nft.h is
 * the public API). */
#pragma once

#include <linux/netlink.h>

#include "nft.h"

/* Each message of the built batch in order, with the one after it in the
 * same buffer page (NULL at a page's end). */
typedef void (*nft_batch_msg_fn)(void *arg, const struct nlmsghdr *nlh, const struct nlmsghdr *next);
/* 0, or -ENOMEM. */
BH_MUST_CHECK int nft_batch_walk(const struct nft_batch *nb, nft_batch_msg_fn fn, void *arg);

/* Sets what nft_batch_error() says. */
void nft_batch_set_error(struct nft_batch *nb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
