/* addrs: the addresses of one endpoint, found inside its namespace with
 * libnl-3 and followed live: every global IPv4/IPv6 address of a
 * non-loopback interface that is up. */
#pragma once

#include "bulkhead/addr.h"
#include "netns.h"

struct addrs;

/* Dumps links and addresses in the namespace nsfd (netns_open) and
 * subscribes to their changes. NULL with errno. */
struct addrs *addrs_open(struct netns *ns, int nsfd);
void addrs_free(struct addrs *a);
int addrs_fd(const struct addrs *a);
/* Processes pending notifications. 1 when the address list changed, 0
 * when not, < 0 when the view may be stale (events lost): reopen. */
BH_MUST_CHECK int addrs_dispatch(struct addrs *a);
/* The current list, sorted; owned by a, valid until the next dispatch. */
const struct bh_addr *addrs_list(const struct addrs *a, size_t *n);
/* Every address of the namespace, any scope or interface, loopback's and
 * link-local ones too, sorted: what tells which end of a connection is
 * the endpoint (conntrack.h). Owned by a, valid until the next dispatch. */
const struct bh_addr *addrs_all(const struct addrs *a, size_t *n);
