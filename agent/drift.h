/* drift: notices changes to an endpoint's table inet bulkhead that the
 * agent did not make (someone ran nft in the container's namespace), from
 * the nftables events of that namespace. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "bulkhead/common.h"
#include "netns.h"

struct drift;

struct drift_report {
	unsigned foreign_changes;  /* messages from other sockets touching our table */
	uint32_t last_portid;      /* who made the last one */
	const char *last_what;     /* "table deleted", "rule added", … */
	bool lost;                 /* events were lost (ENOBUFS): state unknown */
};

/* Subscribes to nftables events in the namespace at path. NULL with errno. */
struct drift *drift_open(struct netns *ns, const char *path);
void drift_free(struct drift *d);
int drift_fd(const struct drift *d);
/* Reads every pending event; changes to table inet bulkhead made by any
 * socket but own_portid (the agent's request socket in that namespace)
 * are counted into *out. */
void drift_dispatch(struct drift *d, uint32_t own_portid, struct drift_report *out);
