/* Fuzz target: conntrack dump messages as the agent reads them from the
 * kernel in an endpoint's namespace (conntrack-nl.h). The input is one
 * netlink message; its length field is set to the input's size, as the
 * receive loop (mnl_nlmsg_ok) guarantees. Parsing never reads past it and
 * never crashes, and what it accepts makes a delete request that fits. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <linux/netlink.h>

#include "conntrack-nl.h"
#include "nlmsg-copy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nlmsghdr *nlh = fuzz_nlmsg_copy(data, size);
	if (!nlh)
		return 0;
	struct ct_entry ce;
	if (conntrack_nl_parse(nlh, &ce) == 0) {
		static char out[CONNTRACK_NL_MSG_MAX] __attribute__((aligned(NLMSG_ALIGNTO)));
		if ((ce.orig.src.family != 2 && ce.orig.src.family != 10) ||
		    ce.orig.src.family != ce.reply.dst.family || ce.orig.proto != ce.reply.proto)
			abort();
		if (conntrack_nl_delete_msg(out, &ce, 1)->nlmsg_len > sizeof(out))
			abort();
	}
	free(nlh);
	return 0;
}
