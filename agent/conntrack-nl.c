/* conntrack's netlink through libmnl (see conntrack-nl.h): validating
 * every attribute of a dump, building dump and delete requests, and the
 * two blocking exchanges. */
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
#include <linux/netfilter/nfnetlink_conntrack.h>

#include "bulkhead/log.h"
#include "conntrack-nl.h"

/* Bytes read at a time; the kernel fills what it is given. */
#define CT_RECV_BUF (64u << 10)
/* Deletes sent before their acknowledgements are read: the socket's
 * receive buffer holds that many acks with room to spare. */
#define CT_DELETE_CHUNK	 64
#define CT_DUMP_ATTEMPTS 3

/* ---- parsing ---- */

/* What each attribute we read must be; 0: not ours to judge. */
enum kind {
	K_NONE,
	K_NESTED,
	K_U8,
	K_U16,
	K_U32,
	K_V6, /* 16 bytes */
};

struct level {
	const struct nlattr **tb;
	uint16_t max;
	const uint8_t *kinds;
};

static int level_cb(const struct nlattr *attr, void *data)
{
	struct level *l = data;
	uint16_t type = mnl_attr_get_type(attr);
	int ok = 0;
	if (type > l->max || l->kinds[type] == K_NONE)
		return MNL_CB_OK; /* newer kernels' attributes, or ones we do not read */
	switch (l->kinds[type]) {
	case K_NESTED:
		ok = mnl_attr_validate(attr, MNL_TYPE_NESTED);
		break;
	case K_U8:
		ok = mnl_attr_validate(attr, MNL_TYPE_U8);
		break;
	case K_U16:
		ok = mnl_attr_validate(attr, MNL_TYPE_U16);
		break;
	case K_U32:
		ok = mnl_attr_validate(attr, MNL_TYPE_U32);
		break;
	case K_V6:
		ok = mnl_attr_validate2(attr, MNL_TYPE_UNSPEC, 16);
		break;
	}
	if (ok < 0 || l->tb[type])
		return MNL_CB_ERROR; /* the kernel never repeats one */
	l->tb[type] = attr;
	return MNL_CB_OK;
}

static int parse_nested(const struct nlattr *nest, const uint8_t *kinds, uint16_t max,
			const struct nlattr **tb)
{
	struct level l = {.tb = tb, .max = max, .kinds = kinds};
	return mnl_attr_parse_nested(nest, level_cb, &l) < 0 ? -EINVAL : 0;
}

static const uint8_t tuple_kinds[CTA_TUPLE_MAX + 1] = {
    [CTA_TUPLE_IP] = K_NESTED, [CTA_TUPLE_PROTO] = K_NESTED, [CTA_TUPLE_ZONE] = K_U16};
static const uint8_t ip_kinds[CTA_IP_MAX + 1] = {
    [CTA_IP_V4_SRC] = K_U32, [CTA_IP_V4_DST] = K_U32, [CTA_IP_V6_SRC] = K_V6, [CTA_IP_V6_DST] = K_V6};
static const uint8_t proto_kinds[CTA_PROTO_MAX + 1] = {
    [CTA_PROTO_NUM] = K_U8,	   [CTA_PROTO_SRC_PORT] = K_U16,   [CTA_PROTO_DST_PORT] = K_U16,
    [CTA_PROTO_ICMP_ID] = K_U16,   [CTA_PROTO_ICMP_TYPE] = K_U8,   [CTA_PROTO_ICMP_CODE] = K_U8,
    [CTA_PROTO_ICMPV6_ID] = K_U16, [CTA_PROTO_ICMPV6_TYPE] = K_U8, [CTA_PROTO_ICMPV6_CODE] = K_U8};
static const uint8_t top_kinds[CTA_MAX + 1] = {[CTA_TUPLE_ORIG] = K_NESTED,
					       [CTA_TUPLE_REPLY] = K_NESTED,
					       [CTA_TUPLE_MASTER] = K_NESTED,
					       [CTA_PROTOINFO] = K_NESTED,
					       [CTA_ID] = K_U32,
					       [CTA_ZONE] = K_U16};
static const uint8_t protoinfo_kinds[CTA_PROTOINFO_MAX + 1] = {[CTA_PROTOINFO_TCP] = K_NESTED};
static const uint8_t tcpinfo_kinds[CTA_PROTOINFO_TCP_MAX + 1] = {[CTA_PROTOINFO_TCP_STATE] = K_U8};

static int parse_addrs(const struct nlattr *nest, int family, struct ct_tuple *t)
{
	const struct nlattr *tb[CTA_IP_MAX + 1] = {0};
	if (parse_nested(nest, ip_kinds, CTA_IP_MAX, tb) < 0)
		return -EINVAL;
	bool v4 = family == AF_INET;
	int src = v4 ? CTA_IP_V4_SRC : CTA_IP_V6_SRC, dst = v4 ? CTA_IP_V4_DST : CTA_IP_V6_DST;
	int other = v4 ? CTA_IP_V6_SRC : CTA_IP_V4_SRC, other_dst = v4 ? CTA_IP_V6_DST : CTA_IP_V4_DST;
	if (!tb[src] || !tb[dst] || tb[other] || tb[other_dst])
		return -EINVAL; /* addresses of the message's family, and only those */
	size_t len = v4 ? 4 : 16;
	t->src.family = t->dst.family = (uint8_t)family;
	memcpy(t->src.bytes, mnl_attr_get_payload(tb[src]), len);
	memcpy(t->dst.bytes, mnl_attr_get_payload(tb[dst]), len);
	return 0;
}

static int parse_proto(const struct nlattr *nest, int family, struct ct_tuple *t)
{
	const struct nlattr *tb[CTA_PROTO_MAX + 1] = {0};
	if (parse_nested(nest, proto_kinds, CTA_PROTO_MAX, tb) < 0 || !tb[CTA_PROTO_NUM])
		return -EINVAL;
	t->proto = mnl_attr_get_u8(tb[CTA_PROTO_NUM]);
	if (tb[CTA_PROTO_SRC_PORT] || tb[CTA_PROTO_DST_PORT]) {
		if (!tb[CTA_PROTO_SRC_PORT] || !tb[CTA_PROTO_DST_PORT])
			return -EINVAL;
		t->has_ports = true;
		t->sport = ntohs(mnl_attr_get_u16(tb[CTA_PROTO_SRC_PORT]));
		t->dport = ntohs(mnl_attr_get_u16(tb[CTA_PROTO_DST_PORT]));
	}
	if (conntrack_has_ports(t->proto) && !t->has_ports)
		return -EINVAL;
	int id = 0, type = 0, code = 0;
	if (t->proto == IPPROTO_ICMP && family == AF_INET) {
		id = CTA_PROTO_ICMP_ID, type = CTA_PROTO_ICMP_TYPE, code = CTA_PROTO_ICMP_CODE;
	} else if (t->proto == IPPROTO_ICMPV6 && family == AF_INET6) {
		id = CTA_PROTO_ICMPV6_ID, type = CTA_PROTO_ICMPV6_TYPE, code = CTA_PROTO_ICMPV6_CODE;
	} else if (t->proto == IPPROTO_ICMP || t->proto == IPPROTO_ICMPV6) {
		return -EINVAL; /* ICMP of the other family: conntrack makes none */
	}
	if (id) {
		if (!tb[id] || !tb[type] || !tb[code])
			return -EINVAL;
		t->icmp_id = ntohs(mnl_attr_get_u16(tb[id]));
		t->icmp_type = mnl_attr_get_u8(tb[type]);
		t->icmp_code = mnl_attr_get_u8(tb[code]);
	}
	return 0;
}

static int parse_tuple(const struct nlattr *nest, int family, struct ct_tuple *t)
{
	const struct nlattr *tb[CTA_TUPLE_MAX + 1] = {0};
	memset(t, 0, sizeof(*t));
	if (parse_nested(nest, tuple_kinds, CTA_TUPLE_MAX, tb) < 0 || !tb[CTA_TUPLE_IP] ||
	    !tb[CTA_TUPLE_PROTO])
		return -EINVAL;
	if (parse_addrs(tb[CTA_TUPLE_IP], family, t) < 0 || parse_proto(tb[CTA_TUPLE_PROTO], family, t) < 0)
		return -EINVAL;
	return 0;
}

int conntrack_nl_parse(const struct nlmsghdr *nlh, struct ct_entry *out)
{
	struct ct_entry ce = {0};
	if (nlh->nlmsg_len < NLMSG_HDRLEN + sizeof(struct nfgenmsg) ||
	    NFNL_SUBSYS_ID(nlh->nlmsg_type) != NFNL_SUBSYS_CTNETLINK ||
	    NFNL_MSG_TYPE(nlh->nlmsg_type) != IPCTNL_MSG_CT_NEW)
		return -EINVAL;
	const struct nfgenmsg *g = mnl_nlmsg_get_payload(nlh);
	int family = g->nfgen_family;
	if (family != AF_INET && family != AF_INET6)
		return -EINVAL;
	const struct nlattr *tb[CTA_MAX + 1] = {0};
	struct level l = {.tb = tb, .max = CTA_MAX, .kinds = top_kinds};
	if (mnl_attr_parse(nlh, sizeof(*g), level_cb, &l) < 0 || !tb[CTA_TUPLE_ORIG] || !tb[CTA_TUPLE_REPLY])
		return -EINVAL;
	if (parse_tuple(tb[CTA_TUPLE_ORIG], family, &ce.orig) < 0 ||
	    parse_tuple(tb[CTA_TUPLE_REPLY], family, &ce.reply) < 0 || ce.orig.proto != ce.reply.proto)
		return -EINVAL;
	if (tb[CTA_TUPLE_MASTER]) {
		if (parse_tuple(tb[CTA_TUPLE_MASTER], family, &ce.master) < 0)
			return -EINVAL;
		ce.has_master = true;
	}
	if (tb[CTA_ID]) {
		ce.has_id = true;
		ce.id = ntohl(mnl_attr_get_u32(tb[CTA_ID]));
	}
	if (tb[CTA_ZONE]) {
		ce.has_zone = true;
		ce.zone = ntohs(mnl_attr_get_u16(tb[CTA_ZONE]));
	}
	if (tb[CTA_PROTOINFO]) {
		const struct nlattr *pi[CTA_PROTOINFO_MAX + 1] = {0}, *tcp[CTA_PROTOINFO_TCP_MAX + 1] = {0};
		if (parse_nested(tb[CTA_PROTOINFO], protoinfo_kinds, CTA_PROTOINFO_MAX, pi) < 0)
			return -EINVAL;
		if (pi[CTA_PROTOINFO_TCP]) {
			if (parse_nested(pi[CTA_PROTOINFO_TCP], tcpinfo_kinds, CTA_PROTOINFO_TCP_MAX, tcp) <
			    0)
				return -EINVAL;
			if (tcp[CTA_PROTOINFO_TCP_STATE]) {
				ce.has_tcp_state = true;
				ce.tcp_state = mnl_attr_get_u8(tcp[CTA_PROTOINFO_TCP_STATE]);
			}
		}
	}
	*out = ce;
	return 0;
}

/* ---- requests ---- */

static struct nlmsghdr *put_header(void *buf, uint16_t type, uint16_t flags, uint8_t family, uint32_t seq)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | type;
	nlh->nlmsg_flags = flags;
	nlh->nlmsg_seq = seq;
	struct nfgenmsg *g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->nfgen_family = family;
	g->version = NFNETLINK_V0;
	g->res_id = 0;
	return nlh;
}

struct nlmsghdr *conntrack_nl_dump_msg(void *buf, uint32_t seq)
{
	return put_header(buf, IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, AF_UNSPEC, seq);
}

struct nlmsghdr *conntrack_nl_delete_msg(void *buf, const struct ct_entry *ce, uint32_t seq)
{
	const struct ct_tuple *t = &ce->orig;
	bool v4 = t->src.family == AF_INET;
	struct nlmsghdr *nlh =
	    put_header(buf, IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, v4 ? AF_INET : AF_INET6, seq);
	struct nlattr *tuple = mnl_attr_nest_start(nlh, CTA_TUPLE_ORIG);
	struct nlattr *ip = mnl_attr_nest_start(nlh, CTA_TUPLE_IP);
	mnl_attr_put(nlh, v4 ? CTA_IP_V4_SRC : CTA_IP_V6_SRC, v4 ? 4 : 16, t->src.bytes);
	mnl_attr_put(nlh, v4 ? CTA_IP_V4_DST : CTA_IP_V6_DST, v4 ? 4 : 16, t->dst.bytes);
	mnl_attr_nest_end(nlh, ip);
	struct nlattr *proto = mnl_attr_nest_start(nlh, CTA_TUPLE_PROTO);
	mnl_attr_put_u8(nlh, CTA_PROTO_NUM, t->proto);
	if (t->has_ports) {
		mnl_attr_put_u16(nlh, CTA_PROTO_SRC_PORT, htons(t->sport));
		mnl_attr_put_u16(nlh, CTA_PROTO_DST_PORT, htons(t->dport));
	}
	if (t->proto == IPPROTO_ICMP || t->proto == IPPROTO_ICMPV6) {
		bool icmp4 = t->proto == IPPROTO_ICMP;
		mnl_attr_put_u16(nlh, icmp4 ? CTA_PROTO_ICMP_ID : CTA_PROTO_ICMPV6_ID, htons(t->icmp_id));
		mnl_attr_put_u8(nlh, icmp4 ? CTA_PROTO_ICMP_TYPE : CTA_PROTO_ICMPV6_TYPE, t->icmp_type);
		mnl_attr_put_u8(nlh, icmp4 ? CTA_PROTO_ICMP_CODE : CTA_PROTO_ICMPV6_CODE, t->icmp_code);
	}
	mnl_attr_nest_end(nlh, proto);
	mnl_attr_nest_end(nlh, tuple);
	if (ce->has_zone)
		mnl_attr_put_u16(nlh, CTA_ZONE, htons(ce->zone));
	if (ce->has_id)
		mnl_attr_put_u32(nlh, CTA_ID, htonl(ce->id));
	return nlh;
}

/* ---- the exchanges ---- */

static uint32_t next_seq(void)
{
	static uint32_t seq;
	if (!seq)
		seq = (uint32_t)time(NULL);
	return ++seq;
}

/* The error an NLMSG_ERROR carries (0: an acknowledgement), or -EINVAL
 * when it is cut short. */
static int nl_error(const struct nlmsghdr *nlh)
{
	const struct nlmsgerr *err = mnl_nlmsg_get_payload(nlh);
	if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(*err)))
		return -EINVAL;
	return err->error <= 0 ? err->error : -err->error;
}

/* How many entries the namespace's conntrack holds (its own count, not
 * the host's): 0, -ENOENT when the kernel does not say, another negative
 * errno. */
static int count_entries(struct mnl_socket *nl, char *buf, uint32_t *count)
{
	uint32_t portid = mnl_socket_get_portid(nl), seq = next_seq();
	char req[CONNTRACK_NL_MSG_MAX];
	struct nlmsghdr *q = put_header(req, IPCTNL_MSG_CT_GET_STATS, NLM_F_REQUEST, AF_UNSPEC, seq);
	if (mnl_socket_sendto(nl, q, q->nlmsg_len) < 0)
		return -errno;
	for (;;) {
		ssize_t got = mnl_socket_recvfrom(nl, buf, CT_RECV_BUF);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		int len = (int)got;
		for (const struct nlmsghdr *nlh = (const void *)buf; mnl_nlmsg_ok(nlh, len);
		     nlh = mnl_nlmsg_next(nlh, &len)) {
			if (nlh->nlmsg_seq != seq || (nlh->nlmsg_pid && nlh->nlmsg_pid != portid))
				continue;
			if (nlh->nlmsg_type == NLMSG_ERROR) {
				int e = nl_error(nlh);
				return e < 0 ? e : -ENOENT;
			}
			if (NFNL_SUBSYS_ID(nlh->nlmsg_type) != NFNL_SUBSYS_CTNETLINK ||
			    nlh->nlmsg_len < NLMSG_HDRLEN + sizeof(struct nfgenmsg))
				return -ENOENT;
			static const uint8_t kinds[CTA_STATS_GLOBAL_MAX + 1] = {[CTA_STATS_GLOBAL_ENTRIES] =
										    K_U32};
			const struct nlattr *tb[CTA_STATS_GLOBAL_MAX + 1] = {0};
			struct level l = {.tb = tb, .max = CTA_STATS_GLOBAL_MAX, .kinds = kinds};
			if (mnl_attr_parse(nlh, sizeof(struct nfgenmsg), level_cb, &l) < 0 ||
			    !tb[CTA_STATS_GLOBAL_ENTRIES])
				return -ENOENT;
			*count = ntohl(mnl_attr_get_u32(tb[CTA_STATS_GLOBAL_ENTRIES]));
			return 0;
		}
	}
}

int conntrack_nl_dump(struct mnl_socket *nl, void (*fn)(void *arg, const struct ct_entry *ce), void *arg,
		      size_t *entries, size_t *malformed)
{
	uint32_t portid = mnl_socket_get_portid(nl), count = 0;
	char req[CONNTRACK_NL_MSG_MAX];
	char *buf = xmalloc(CT_RECV_BUF);
	/* A dump walks the host's whole conntrack hash (some 10 ms with
	 * 262,144 buckets) whatever the namespace holds: an empty one is
	 * asked first. */
	int r = count_entries(nl, buf, &count);
	if (r == 0 && count == 0) {
		free(buf);
		return 0;
	}
	r = 0;
	for (int attempt = 1;; attempt++) {
		uint32_t seq = next_seq();
		struct nlmsghdr *q = conntrack_nl_dump_msg(req, seq);
		bool done = false, intr = false;
		if (mnl_socket_sendto(nl, q, q->nlmsg_len) < 0) {
			r = -errno;
			break;
		}
		while (!done && r == 0) {
			ssize_t got = mnl_socket_recvfrom(nl, buf, CT_RECV_BUF);
			if (got < 0) {
				if (errno != EINTR)
					r = -errno;
				continue;
			}
			int len = (int)got;
			for (const struct nlmsghdr *nlh = (const void *)buf; mnl_nlmsg_ok(nlh, len);
			     nlh = mnl_nlmsg_next(nlh, &len)) {
				if (nlh->nlmsg_seq != seq || (nlh->nlmsg_pid && nlh->nlmsg_pid != portid))
					continue; /* what an earlier request left */
				if (nlh->nlmsg_flags & NLM_F_DUMP_INTR)
					intr = true;
				if (nlh->nlmsg_type == NLMSG_DONE) {
					done = true;
					break;
				}
				if (nlh->nlmsg_type == NLMSG_ERROR) {
					r = nl_error(nlh);
					if (r == 0)
						r = -EPROTO; /* a dump ends with DONE */
					break;
				}
				if (nlh->nlmsg_type < NLMSG_MIN_TYPE || intr)
					continue; /* an interrupted dump is read to its end, then again */
				struct ct_entry ce;
				if (conntrack_nl_parse(nlh, &ce) < 0) {
					(*malformed)++;
					continue;
				}
				(*entries)++;
				fn(arg, &ce);
			}
		}
		if (r < 0 || !intr || attempt == CT_DUMP_ATTEMPTS)
			break;
	}
	free(buf);
	return r;
}

int conntrack_nl_delete(struct mnl_socket *nl, const struct ct_entry *v, size_t n, size_t *deleted)
{
	uint32_t portid = mnl_socket_get_portid(nl);
	char *out = xmalloc(CT_DELETE_CHUNK * CONNTRACK_NL_MSG_MAX);
	char *buf = xmalloc(CT_RECV_BUF);
	int first = 0;
	*deleted = 0;
	for (size_t i = 0; i < n; i += CT_DELETE_CHUNK) {
		size_t m = n - i < CT_DELETE_CHUNK ? n - i : CT_DELETE_CHUNK, len = 0;
		uint32_t base = 0;
		bool *acked = xcalloc(m, sizeof(*acked));
		for (size_t k = 0; k < m; k++) {
			uint32_t seq = next_seq();
			if (k == 0)
				base = seq;
			struct nlmsghdr *q = conntrack_nl_delete_msg(out + len, &v[i + k], seq);
			len += NLMSG_ALIGN(q->nlmsg_len);
		}
		int r = mnl_socket_sendto(nl, out, len) < 0 ? -errno : 0;
		for (size_t left = m; r == 0 && left;) {
			ssize_t got = mnl_socket_recvfrom(nl, buf, CT_RECV_BUF);
			if (got < 0) {
				if (errno != EINTR)
					r = -errno;
				continue;
			}
			int rest = (int)got;
			for (const struct nlmsghdr *nlh = (const void *)buf; mnl_nlmsg_ok(nlh, rest);
			     nlh = mnl_nlmsg_next(nlh, &rest)) {
				uint32_t k = nlh->nlmsg_seq - base;
				if (nlh->nlmsg_type != NLMSG_ERROR || k >= m || acked[k] ||
				    (nlh->nlmsg_pid && nlh->nlmsg_pid != portid))
					continue;
				acked[k] = true;
				left--;
				int e = nl_error(nlh);
				if (e == 0)
					(*deleted)++;
				else if (e != -ENOENT && !first)
					first = e; /* ENOENT: gone already, as wanted */
			}
		}
		free(acked);
		if (r < 0) {
			if (!first)
				first = r;
			break; /* the socket itself failed: the rest would too */
		}
	}
	free(buf);
	free(out);
	return first;
}
