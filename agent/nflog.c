/* NFLOG reader for one namespace (see nflog.h): binding a group with
 * libmnl, validating every attribute, and parsing the packet headers. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_log.h>

#include "bulkhead/log.h"
#include "nflog.h"

/* The kernel gathers up to this many packets into one datagram, or what
 * arrived within NFLOG_FLUSH_CS hundredths of a second: fewer wake-ups
 * under a flood, at most 10 ms of delay otherwise. */
#define NFLOG_QTHRESH  64
#define NFLOG_FLUSH_CS 1
#define NFLOG_NLBUFSIZ (128 << 10) /* the kernel's ceiling for one datagram */
/* Room for a burst while the agent is busy elsewhere. */
#define NFLOG_RCVBUF (16 << 20)

struct nflog {
	struct mnl_socket *nl;
	uint16_t group;
	bool seq_known;
	uint32_t next_seq;
	struct nflog_stats stats;
};

/* ---- parsing ---- */

static int attr_cb(const struct nlattr *attr, void *data)
{
	const struct nlattr **tb = data;
	int type = mnl_attr_get_type(attr);
	if (mnl_attr_type_valid(attr, NFULA_MAX) < 0)
		return MNL_CB_OK; /* newer kernels' attributes: not ours to judge */
	switch (type) {
	case NFULA_PACKET_HDR:
		if (mnl_attr_validate2(attr, MNL_TYPE_UNSPEC, sizeof(struct nfulnl_msg_packet_hdr)) < 0)
			return MNL_CB_ERROR;
		break;
	case NFULA_PREFIX:
		if (mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) < 0)
			return MNL_CB_ERROR;
		break;
	case NFULA_SEQ:
	case NFULA_SEQ_GLOBAL:
	case NFULA_MARK:
	case NFULA_IFINDEX_INDEV:
	case NFULA_IFINDEX_OUTDEV:
		if (mnl_attr_validate(attr, MNL_TYPE_U32) < 0)
			return MNL_CB_ERROR;
		break;
	case NFULA_TIMESTAMP:
		if (mnl_attr_validate2(attr, MNL_TYPE_UNSPEC, sizeof(struct nfulnl_msg_packet_timestamp)) < 0)
			return MNL_CB_ERROR;
		break;
	default:
		break;
	}
	if (tb[type])
		return MNL_CB_ERROR; /* the kernel never repeats one */
	tb[type] = attr;
	return MNL_CB_OK;
}

static bool is_port_proto(uint8_t p)
{
	return p == IPPROTO_TCP || p == IPPROTO_UDP || p == IPPROTO_SCTP || p == IPPROTO_UDPLITE ||
	       p == IPPROTO_DCCP;
}

/* The transport header at l4 (len bytes captured): port or ICMP fields. A
 * header cut short by the snap length leaves them unknown, not malformed. */
static void parse_l4(const uint8_t *l4, size_t len, struct nflog_event *ev)
{
	if (is_port_proto(ev->proto) && len >= 4) {
		ev->has_port = true;
		ev->port = (uint16_t)(l4[2] << 8 | l4[3]);
	} else if ((ev->proto == IPPROTO_ICMP || ev->proto == IPPROTO_ICMPV6) && len >= 2) {
		ev->has_icmp = true;
		ev->icmp_type = l4[0];
		ev->icmp_code = l4[1];
	}
}

static int parse_ipv4(const uint8_t *p, size_t len, struct nflog_event *ev)
{
	if (len < 20 || (p[0] >> 4) != 4)
		return -EINVAL;
	size_t ihl = (size_t)(p[0] & 0x0f) * 4;
	if (ihl < 20 || ihl > len)
		return -EINVAL;
	ev->family = AF_INET;
	ev->proto = p[9];
	memcpy(ev->src, p + 12, 4);
	memcpy(ev->dst, p + 16, 4);
	bool later_fragment = ((p[6] << 8 | p[7]) & 0x1fff) != 0;
	if (!later_fragment)
		parse_l4(p + ihl, len - ihl, ev);
	return 0;
}

static int parse_ipv6(const uint8_t *p, size_t len, struct nflog_event *ev)
{
	if (len < 40 || (p[0] >> 4) != 6)
		return -EINVAL;
	ev->family = AF_INET6;
	memcpy(ev->src, p + 8, 16);
	memcpy(ev->dst, p + 24, 16);
	uint8_t nh = p[6];
	size_t off = 40;
	/* Extension headers up to the transport header; a bounded walk. */
	for (int hops = 0; hops < 8; hops++) {
		size_t hlen;
		if (nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_DSTOPTS) {
			if (off + 2 > len)
				break;
			hlen = ((size_t)p[off + 1] + 1) * 8;
		} else if (nh == IPPROTO_AH) {
			if (off + 2 > len)
				break;
			hlen = ((size_t)p[off + 1] + 2) * 4;
		} else if (nh == IPPROTO_FRAGMENT) {
			if (off + 8 > len)
				break;
			if (((p[off + 2] << 8 | p[off + 3]) & 0xfff8) != 0) { /* not the first fragment */
				ev->proto = p[off];
				return 0;
			}
			hlen = 8;
		} else {
			break;
		}
		nh = p[off];
		off += hlen;
	}
	ev->proto = nh;
	if (off <= len)
		parse_l4(p + off, len - off, ev);
	return 0;
}

int nflog_parse(const struct nlmsghdr *nlh, struct nflog_event *out)
{
	memset(out, 0, sizeof(*out));
	if (NFNL_SUBSYS_ID(nlh->nlmsg_type) != NFNL_SUBSYS_ULOG ||
	    NFNL_MSG_TYPE(nlh->nlmsg_type) != NFULNL_MSG_PACKET)
		return -EINVAL;
	const struct nfgenmsg *g = mnl_nlmsg_get_payload(nlh);
	if (nlh->nlmsg_len < NLMSG_HDRLEN + sizeof(*g))
		return -EINVAL;
	const struct nlattr *tb[NFULA_MAX + 1] = {0};
	if (mnl_attr_parse(nlh, sizeof(*g), attr_cb, tb) < 0)
		return -EINVAL;
	/* First: a malformed packet still takes its place in the sequence. */
	if (tb[NFULA_SEQ]) {
		out->has_seq = true;
		out->seq = ntohl(mnl_attr_get_u32(tb[NFULA_SEQ]));
	}
	if (!tb[NFULA_PAYLOAD] || !tb[NFULA_PACKET_HDR])
		return -EINVAL;
	const uint8_t *pkt = mnl_attr_get_payload(tb[NFULA_PAYLOAD]);
	size_t len = mnl_attr_get_payload_len(tb[NFULA_PAYLOAD]);
	int r;
	if (g->nfgen_family == NFPROTO_IPV4)
		r = parse_ipv4(pkt, len, out);
	else if (g->nfgen_family == NFPROTO_IPV6)
		r = parse_ipv6(pkt, len, out);
	else
		r = -EINVAL;
	if (r < 0)
		return r;
	if (!tb[NFULA_PREFIX] || nft_prefix_parse(mnl_attr_get_str(tb[NFULA_PREFIX]), &out->prefix) < 0)
		return -ENOENT;
	return 0;
}

/* ---- the socket ---- */

static struct nlmsghdr *config_header(char *buf, uint16_t group, uint32_t seq)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	nlh->nlmsg_seq = seq;
	struct nfgenmsg *g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->nfgen_family = AF_UNSPEC;
	g->version = NFNETLINK_V0;
	g->res_id = htons(group);
	return nlh;
}

/* Sends one config request and waits for its acknowledgement. */
static int config_send(struct mnl_socket *nl, struct nlmsghdr *nlh)
{
	char buf[8192] __attribute__((aligned(NLMSG_ALIGNTO)));
	uint32_t portid = mnl_socket_get_portid(nl), seq = nlh->nlmsg_seq;
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
		if (n < 0)
			return -errno;
		int r = mnl_cb_run(buf, (size_t)n, seq, portid, NULL, NULL);
		if (r == MNL_CB_ERROR)
			return -errno;
		if (r == MNL_CB_STOP)
			return 0;
	}
}

struct nflog *nflog_open(struct netns *ns, int nsfd, uint16_t group)
{
	struct mnl_socket *nl;
	int r = netns_mnl_open(ns, nsfd, NETLINK_NETFILTER, &nl);
	if (r < 0) {
		errno = -r;
		return NULL;
	}
	char buf[256];
	uint32_t seq = (uint32_t)time(NULL);
	struct nlmsghdr *nlh = config_header(buf, group, seq++);
	struct nfulnl_msg_config_cmd cmd = {.command = NFULNL_CFG_CMD_BIND};
	mnl_attr_put(nlh, NFULA_CFG_CMD, sizeof(cmd), &cmd);
	r = config_send(nl, nlh);
	if (r == 0) {
		nlh = config_header(buf, group, seq++);
		struct nfulnl_msg_config_mode mode = {.copy_range = htonl(NFT_NFLOG_SNAPLEN),
						      .copy_mode = NFULNL_COPY_PACKET};
		mnl_attr_put(nlh, NFULA_CFG_MODE, sizeof(mode), &mode);
		mnl_attr_put_u16(nlh, NFULA_CFG_FLAGS, htons(NFULNL_CFG_F_SEQ));
		mnl_attr_put_u32(nlh, NFULA_CFG_NLBUFSIZ, htonl(NFLOG_NLBUFSIZ));
		mnl_attr_put_u32(nlh, NFULA_CFG_QTHRESH, htonl(NFLOG_QTHRESH));
		mnl_attr_put_u32(nlh, NFULA_CFG_TIMEOUT, htonl(NFLOG_FLUSH_CS));
		r = config_send(nl, nlh);
	}
	if (r < 0) {
		mnl_socket_close(nl);
		errno = -r;
		return NULL;
	}
	int fd = mnl_socket_get_fd(nl), size = NFLOG_RCVBUF;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	struct nflog *l = xcalloc(1, sizeof(*l));
	l->nl = nl;
	l->group = group;
	return l;
}

void nflog_free(struct nflog *l)
{
	if (!l)
		return;
	mnl_socket_close(l->nl);
	free(l);
}

int nflog_fd(const struct nflog *l)
{
	return mnl_socket_get_fd(l->nl);
}

const struct nflog_stats *nflog_stats(const struct nflog *l)
{
	return &l->stats;
}

static void account_seq(struct nflog *l, const struct nflog_event *ev)
{
	if (!ev->has_seq)
		return;
	/* A new instance counts from 0; anything ahead of the next expected
	 * number was lost on the way (the kernel could not queue it). */
	if (l->seq_known && ev->seq != l->next_seq) {
		uint32_t ahead = ev->seq - l->next_seq;
		if (ahead < (1u << 31))
			l->stats.gap += ahead;
	} else if (!l->seq_known && ev->seq != 0 && ev->seq < (1u << 31)) {
		l->stats.gap += ev->seq;
	}
	l->seq_known = true;
	l->next_seq = ev->seq + 1;
}

bool nflog_dispatch(struct nflog *l, unsigned max_msgs, nflog_fn fn, void *arg)
{
	static char buf[NFLOG_NLBUFSIZ + 4096] __attribute__((aligned(NLMSG_ALIGNTO)));
	for (unsigned i = 0; i < max_msgs; i++) {
		struct sockaddr_nl from;
		socklen_t from_len = sizeof(from);
		ssize_t len = recvfrom(mnl_socket_get_fd(l->nl), buf, sizeof(buf), MSG_DONTWAIT,
				       (struct sockaddr *)&from, &from_len);
		if (len < 0) {
			if (errno == ENOBUFS) {
				l->stats.enobufs++;
				continue;
			}
			if (errno != EAGAIN && errno != EINTR)
				log_warn("NFLOG group %u: %m", l->group);
			return false;
		}
		/* Only the kernel (port 0) logs packets: anything another
		 * process in the namespace sends this socket is forged. */
		if (from_len != sizeof(from) || from.nl_family != AF_NETLINK || from.nl_pid != 0) {
			l->stats.malformed++;
			continue;
		}
		int left = (int)len;
		for (const struct nlmsghdr *nlh = (const struct nlmsghdr *)buf; mnl_nlmsg_ok(nlh, left);
		     nlh = mnl_nlmsg_next(nlh, &left)) {
			if (nlh->nlmsg_type == NLMSG_ERROR || nlh->nlmsg_type == NLMSG_DONE ||
			    nlh->nlmsg_type == NLMSG_NOOP)
				continue;
			struct nflog_event ev;
			int r = nflog_parse(nlh, &ev);
			account_seq(l, &ev); /* a malformed one is not also a gap */
			if (r == -EINVAL) {
				l->stats.malformed++;
				continue;
			}
			if (r == -ENOENT) {
				l->stats.foreign++;
				continue;
			}
			l->stats.events++;
			fn(arg, &ev);
		}
	}
	return true;
}
