/* Fuzz target: NFLOG messages as the agent reads them from the kernel (a
 * hostile or buggy sender inside a container's namespace cannot forge
 * them, but the parser must hold for anything). The input is one netlink
 * message; its length field is set to the input's size, as the receive loop
 * (mnl_nlmsg_ok) guarantees. Parsing never reads past it and never crashes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <linux/netlink.h>

#include "nflog.h"
#include "nlmsg-copy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nlmsghdr *nlh = fuzz_nlmsg_copy(data, size);
	if (!nlh)
		return 0;
	struct nflog_event ev;
	int r = nflog_parse(nlh, &ev);
	if (r == 0 && ev.family != 2 && ev.family != 10)
		abort();
	free(nlh);
	return 0;
}
