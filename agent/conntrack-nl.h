/* conntrack-nl: conntrack's netlink (ctnetlink, NETLINK_NETFILTER) for
 * conntrack.h, through libmnl: one dump of every connection a namespace's
 * conntrack holds, and deleting some of them. The codec is pure (the unit
 * tests and the fuzzer drive conntrack_nl_parse() directly); every
 * attribute is validated before use and a message that does not hold
 * together is skipped and counted, never trusted. The socket calls block:
 * the kernel answers at once, and the agent does this only when an update
 * tightened a policy (conntrack_tightened()). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "bulkhead/common.h"
#include "conntrack.h"

struct mnl_socket;
struct nlmsghdr;

/* Room for one request of conntrack_nl_delete_msg() or _dump_msg(). */
#define CONNTRACK_NL_MSG_MAX 256

/* Parses one message of a dump (IPCTNL_MSG_CT_NEW): 0, or -EINVAL when
 * anything is malformed or missing (a tuple without addresses of the
 * message's family, ports or ICMP fields its protocol needs, an
 * attribute of the wrong size or given twice, the two directions of
 * different protocols). Attributes newer than these headers are ignored. */
BH_MUST_CHECK int conntrack_nl_parse(const struct nlmsghdr *nlh, struct ct_entry *out);

/* The request for a dump of every entry, both families, into buf. */
struct nlmsghdr *conntrack_nl_dump_msg(void *buf, uint32_t seq);
/* The request that deletes ce (by original tuple, zone and id, acked)
 * into buf (CONNTRACK_NL_MSG_MAX bytes). */
struct nlmsghdr *conntrack_nl_delete_msg(void *buf, const struct ct_entry *ce, uint32_t seq);

/* Dumps every entry on nl (a NETLINK_NETFILTER socket of the namespace)
 * and calls fn for each that parses; *entries and *malformed count. A
 * namespace whose conntrack says it holds nothing is not dumped.
 * A dump the kernel says was interrupted (the table changed under it) is
 * read to its end and started again, up to 3 times: entries may then be
 * seen twice, which judging allows. 0 or a negative errno. */
BH_MUST_CHECK int conntrack_nl_dump(struct mnl_socket *nl, void (*fn)(void *arg, const struct ct_entry *ce),
				    void *arg, size_t *entries, size_t *malformed);
/* Deletes the n entries of v, acknowledged one by one, in chunks that
 * the socket's buffer holds. *deleted counts those the kernel deleted; an
 * entry already gone (ENOENT) is no error. 0, or the first other error
 * as a negative errno (the rest are still tried). */
BH_MUST_CHECK int conntrack_nl_delete(struct mnl_socket *nl, const struct ct_entry *v, size_t n,
				      size_t *deleted);
