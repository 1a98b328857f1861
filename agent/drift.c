/* nftables event watch for one namespace (see drift.h). The kernel stamps
 * every event with the port id of the socket whose request caused it, so
 * our own transactions are told apart from anyone else's. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

#include "drift.h"
#include "bulkhead/log.h"
#include "nft.h"

struct drift {
	struct mnl_socket *nl;
};

struct drift *drift_open(struct netns *ns, const char *path)
{
	struct mnl_socket *nl;
	int r = netns_mnl_open_groups(ns, path, NETLINK_NETFILTER, 1u << (NFNLGRP_NFTABLES - 1), &nl);
	if (r < 0) {
		errno = -r;
		return NULL;
	}
	/* Room for a burst (a flush of a big table is one event per rule). */
	int size = 4 << 20;
	setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size));
	struct drift *d = xcalloc(1, sizeof(*d));
	d->nl = nl;
	return d;
}

void drift_free(struct drift *d)
{
	if (!d)
		return;
	mnl_socket_close(d->nl);
	free(d);
}

int drift_fd(const struct drift *d)
{
	return mnl_socket_get_fd(d->nl);
}

static const char *event_name(uint16_t msg)
{
	switch (msg) {
	case NFT_MSG_NEWTABLE:
		return "table added";
	case NFT_MSG_DELTABLE:
		return "table deleted";
	case NFT_MSG_NEWCHAIN:
		return "chain added";
	case NFT_MSG_DELCHAIN:
		return "chain deleted";
	case NFT_MSG_NEWRULE:
		return "rule added";
	case NFT_MSG_DELRULE:
		return "rule deleted";
	case NFT_MSG_NEWSET:
		return "set added";
	case NFT_MSG_DELSET:
		return "set deleted";
	case NFT_MSG_NEWSETELEM:
		return "set element added";
	case NFT_MSG_DELSETELEM:
		return "set element deleted";
	default:
		return NULL;
	}
}

/* Every object message of nf_tables carries its table's name as attribute
 * 1 (NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE, NFTA_SET_TABLE,
 * NFTA_SET_ELEM_LIST_TABLE). */
static bool event_is_ours(const struct nlmsghdr *nlh)
{
	const struct nfgenmsg *g = mnl_nlmsg_get_payload(nlh);
	if (nlh->nlmsg_len < NLMSG_HDRLEN + sizeof(*g) || g->nfgen_family != NFPROTO_INET)
		return false;
	const struct nlattr *attr;
	mnl_attr_for_each(attr, nlh, sizeof(*g))
	{
		if (mnl_attr_get_type(attr) != 1)
			continue;
		if (mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) < 0)
			return false;
		return strcmp(mnl_attr_get_str(attr), NFT_TABLE_NAME) == 0;
	}
	return false;
}

void drift_dispatch(struct drift *d, uint32_t own_portid, struct drift_report *out)
{
	char buf[16384] __attribute__((aligned(NLMSG_ALIGNTO)));
	for (;;) {
		ssize_t len = mnl_socket_recvfrom(d->nl, buf, sizeof(buf));
		if (len < 0) {
			if (errno == ENOBUFS) {
				out->lost = true;
				continue;
			}
			if (errno != EAGAIN && errno != EINTR)
				log_warn("nftables events: %m");
			return;
		}
		int left = (int)len;
		for (const struct nlmsghdr *nlh = (const struct nlmsghdr *)buf; mnl_nlmsg_ok(nlh, left);
		     nlh = mnl_nlmsg_next(nlh, &left)) {
			if (NFNL_SUBSYS_ID(nlh->nlmsg_type) != NFNL_SUBSYS_NFTABLES)
				continue;
			const char *what = event_name(NFNL_MSG_TYPE(nlh->nlmsg_type));
			if (!what || nlh->nlmsg_pid == own_portid || !event_is_ours(nlh))
				continue;
			out->foreign_changes++;
			out->last_portid = nlh->nlmsg_pid;
			out->last_what = what;
		}
	}
}
