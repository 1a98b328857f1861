/* nftables event watch for one namespace (see drift.h). The kernel stamps
 * every event with the port id of the socket whose request caused it, so
 * our own transactions are told apart from anyone else's even when we do
 * listen to them. */
#include <arpa/inet.h>
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
	struct drift_state st;
};

struct drift *drift_open(struct netns *ns, int nsfd)
{
	struct mnl_socket *nl;
	int r = netns_mnl_open_groups(ns, nsfd, NETLINK_NETFILTER, 1u << (NFNLGRP_NFTABLES - 1), &nl);
	if (r < 0) {
		errno = -r;
		return NULL;
	}
	/* Room for a burst (a flush of a big table is one event per rule);
	 * past it, events are lost and the table is read back. */
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
	mnl_attr_for_each (attr, nlh, sizeof(*g)) {
		if (mnl_attr_get_type(attr) != 1)
			continue;
		if (mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) < 0)
			return false;
		return strcmp(mnl_attr_get_str(attr), NFT_TABLE_NAME) == 0;
	}
	return false;
}

bool drift_gen_after(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) > 0;
}

/* The generation after gen (nf_tables skips 0 when the id wraps). */
static uint32_t gen_next(uint32_t gen)
{
	return gen + 1 ? gen + 1 : 1;
}

/* The id of a NEWGEN event; 0 when it has none that is readable. */
static uint32_t newgen_id(const struct nlmsghdr *nlh)
{
	const struct nlattr *attr;

	if (nlh->nlmsg_len < NLMSG_HDRLEN + sizeof(struct nfgenmsg))
		return 0;
	mnl_attr_for_each (attr, nlh, sizeof(struct nfgenmsg)) {
		if (mnl_attr_get_type(attr) == NFTA_GEN_ID && mnl_attr_validate(attr, MNL_TYPE_U32) == 0)
			return ntohl(mnl_attr_get_u32(attr));
	}
	return 0;
}

/* One transaction's events are complete: report them, or let the
 * generation it made count as known. */
static void end_transaction(struct drift_state *st, uint32_t gen, struct drift_report *out)
{
	if (st->pending) {
		/* gen 0 (unreadable): report, to be safe. */
		if (!gen || !st->known || drift_gen_after(gen, st->known)) {
			out->foreign_changes += st->pending;
			out->last_portid = st->pending_portid;
			out->last_what = st->pending_what;
		}
	} else if (gen && st->known && gen == gen_next(st->known)) {
		st->known = gen;
	}
	st->pending = 0;
}

void drift_state_feed(struct drift_state *st, const void *buf, size_t len, uint32_t own_portid,
		      struct drift_report *out)
{
	int left = len > INT32_MAX ? INT32_MAX : (int)len;

	for (const struct nlmsghdr *nlh = buf; mnl_nlmsg_ok(nlh, left); nlh = mnl_nlmsg_next(nlh, &left)) {
		if (NFNL_SUBSYS_ID(nlh->nlmsg_type) != NFNL_SUBSYS_NFTABLES)
			continue;
		uint16_t type = NFNL_MSG_TYPE(nlh->nlmsg_type);

		if (type == NFT_MSG_NEWGEN) {
			end_transaction(st, newgen_id(nlh), out);
			continue;
		}
		const char *what = event_name(type);

		if (!what || nlh->nlmsg_pid == own_portid || !event_is_ours(nlh))
			continue;
		st->pending++;
		st->pending_portid = nlh->nlmsg_pid;
		st->pending_what = what;
	}
}

void drift_state_committed(struct drift_state *st, uint32_t before, uint32_t after, bool whole)
{
	if (whole || (st->known && st->known == before))
		st->known = after;
}

void drift_state_checked(struct drift_state *st, uint32_t gen)
{
	if (!st->known || drift_gen_after(gen, st->known))
		st->known = gen;
}

void drift_dispatch(struct drift *d, uint32_t own_portid, struct drift_report *out)
{
	char buf[16384] __attribute__((aligned(NLMSG_ALIGNTO)));
	for (;;) {
		ssize_t len = mnl_socket_recvfrom(d->nl, buf, sizeof(buf));
		if (len < 0) {
			if (errno == ENOBUFS) {
				/* What was pending may be half a transaction. */
				out->lost = true;
				d->st.pending = 0;
				continue;
			}
			if (errno != EAGAIN && errno != EINTR)
				log_warn("nftables events: %m");
			return;
		}
		drift_state_feed(&d->st, buf, (size_t)len, own_portid, out);
	}
}

static int membership(struct drift *d, int opt)
{
	int group = NFNLGRP_NFTABLES;
	if (setsockopt(mnl_socket_get_fd(d->nl), SOL_NETLINK, opt, &group, sizeof(group)) < 0)
		return -errno;
	return 0;
}

int drift_pause(struct drift *d)
{
	return membership(d, NETLINK_DROP_MEMBERSHIP);
}

int drift_resume(struct drift *d)
{
	return membership(d, NETLINK_ADD_MEMBERSHIP);
}

void drift_committed(struct drift *d, uint32_t before, uint32_t after, bool whole)
{
	drift_state_committed(&d->st, before, after, whole);
}

void drift_checked(struct drift *d, uint32_t gen)
{
	drift_state_checked(&d->st, gen);
}

uint32_t drift_known(const struct drift *d)
{
	return d->st.known;
}
