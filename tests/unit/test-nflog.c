/* NFLOG message parsing (agent/nflog.h): what the kernel sends for IPv4 and
 * IPv6, TCP, UDP, SCTP, ICMP, ICMPv6, extension headers and fragments is
 * read exactly; prefixes that are not ours are told apart; every malformed
 * message is refused, never read past. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>

#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_log.h>

#include "nflog.h"
#include "test.h"

static char buf[4096] __attribute__((aligned(NLMSG_ALIGNTO)));

/* An NFULNL_MSG_PACKET message as the kernel builds it. */
static struct nlmsghdr *packet_msg(uint8_t family, const uint8_t *pkt, size_t len, const char *prefix,
				   long seq)
{
	memset(buf, 0, sizeof(buf));
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET;
	struct nfgenmsg *g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->nfgen_family = family;
	g->version = NFNETLINK_V0;
	g->res_id = htons(100);
	struct nfulnl_msg_packet_hdr ph = {.hw_protocol = htons(family == NFPROTO_IPV4 ? 0x0800 : 0x86dd)};
	mnl_attr_put(nlh, NFULA_PACKET_HDR, sizeof(ph), &ph);
	if (prefix)
		mnl_attr_put_strz(nlh, NFULA_PREFIX, prefix);
	if (seq >= 0)
		mnl_attr_put_u32(nlh, NFULA_SEQ, htonl((uint32_t)seq));
	if (pkt)
		mnl_attr_put(nlh, NFULA_PAYLOAD, len, pkt);
	return nlh;
}

/* IPv4 header (20 bytes + options) then l4 bytes. */
static size_t ipv4(uint8_t *p, uint8_t proto, const uint8_t *l4, size_t l4_len, unsigned opt_words,
		   uint16_t frag)
{
	size_t ihl = 20 + opt_words * 4;
	memset(p, 0, ihl);
	p[0] = (uint8_t)(0x40 | (ihl / 4));
	p[6] = (uint8_t)(frag >> 8);
	p[7] = (uint8_t)frag;
	p[8] = 64;
	p[9] = proto;
	uint8_t src[4] = {198, 18, 0, 22}, dst[4] = {198, 18, 0, 11};
	memcpy(p + 12, src, 4);
	memcpy(p + 16, dst, 4);
	memcpy(p + ihl, l4, l4_len);
	return ihl + l4_len;
}

static size_t ipv6(uint8_t *p, uint8_t nh, const uint8_t *rest, size_t rest_len)
{
	memset(p, 0, 40);
	p[0] = 0x60;
	p[6] = nh;
	p[7] = 64;
	inet_pton(AF_INET6, "2001:db8:1::21", p + 8);
	inet_pton(AF_INET6, "2001:db8:1::11", p + 24);
	memcpy(p + 40, rest, rest_len);
	return 40 + rest_len;
}

static const uint8_t udp_9999[8] = {0x30, 0x39, 0x27, 0x0f, 0, 8, 0, 0}; /* 12345 -> 9999 */

TEST(ipv4_udp_with_seq_and_a_deny_prefix)
{
	uint8_t pkt[128];
	size_t len = ipv4(pkt, IPPROTO_UDP, udp_9999, sizeof(udp_9999), 0, 0);
	struct nflog_event ev;
	CHECK(nflog_parse(packet_msg(NFPROTO_IPV4, pkt, len, "bh:D:i-", 41), &ev) == 0);
	CHECK(ev.family == AF_INET && ev.proto == IPPROTO_UDP);
	CHECK(ev.has_port && ev.port == 9999 && !ev.has_icmp);
	CHECK(ev.src[0] == 198 && ev.src[3] == 22 && ev.dst[3] == 11);
	CHECK(ev.has_seq && ev.seq == 41);
	CHECK(ev.prefix.verdict == VERDICT_DROP && ev.prefix.dir == DIR_INGRESS);
	CHECK(ev.prefix.position == NFT_POSITION_FALLBACK);
}

TEST(ipv4_options_shift_the_tcp_header_and_audit_prefixes_name_a_rule)
{
	uint8_t pkt[128], tcp[20] = {0x9c, 0x40, 0x00, 0x50};
	size_t len = ipv4(pkt, IPPROTO_TCP, tcp, sizeof(tcp), 2, 0);
	struct nflog_event ev;
	CHECK(nflog_parse(packet_msg(NFPROTO_IPV4, pkt, len, "bh:A:e3", -1), &ev) == 0);
	CHECK(ev.proto == IPPROTO_TCP && ev.has_port && ev.port == 80);
	CHECK(ev.prefix.verdict == VERDICT_AUDIT && ev.prefix.dir == DIR_EGRESS && ev.prefix.position == 3);
	CHECK(!ev.has_seq);
}

TEST(a_later_ipv4_fragment_has_no_port)
{
	uint8_t pkt[128];
	size_t len = ipv4(pkt, IPPROTO_UDP, udp_9999, sizeof(udp_9999), 0, 185); /* offset 185*8 */
	struct nflog_event ev;
	CHECK(nflog_parse(packet_msg(NFPROTO_IPV4, pkt, len, "bh:D:i0", 1), &ev) == 0);
	CHECK(ev.proto == IPPROTO_UDP && !ev.has_port);
}

TEST(icmp_and_sctp)
{
	uint8_t pkt[128], echo[8] = {8, 0}, sctp[12] = {0x13, 0x88, 0x0b, 0xb8};
	struct nflog_event ev;
	size_t len = ipv4(pkt, IPPROTO_ICMP, echo, sizeof(echo), 0, 0);
	CHECK(nflog_parse(packet_msg(NFPROTO_IPV4, pkt, len, "bh:D:i-", 0), &ev) == 0);
	CHECK(ev.proto == IPPROTO_ICMP && ev.has_icmp && ev.icmp_type == 8 && ev.icmp_code == 0 &&
	      !ev.has_port);
	len = ipv4(pkt, IPPROTO_SCTP, sctp, sizeof(sctp), 0, 0);
	CHECK(nflog_parse(packet_msg(NFPROTO_IPV4, pkt, len, "bh:D:i-", 0), &ev) == 0);
	CHECK(ev.proto == IPPROTO_SCTP && ev.has_port && ev.port == 3000);
}

TEST(ipv6_extension_headers_are_walked_to_icmpv6)
{
	/* hop-by-hop (8 bytes, next: destination options 16 bytes, next: ICMPv6) */
	uint8_t rest[64] = {0}, pkt[128];
	rest[0] = IPPROTO_DSTOPTS;
	rest[1] = 0;
	rest[8] = IPPROTO_ICMPV6;
	rest[9] = 1;
	rest[24] = 128; /* echo request */
	rest[25] = 0;
	size_t len = ipv6(pkt, IPPROTO_HOPOPTS, rest, 32);
	struct nflog_event ev;
	CHECK(nflog_parse(packet_msg(NFPROTO_IPV6, pkt, len, "bh:D:i-", 7), &ev) == 0);
	CHECK(ev.family == AF_INET6 && ev.proto == IPPROTO_ICMPV6);
	CHECK(ev.has_icmp && ev.icmp_type == 128 && ev.icmp_code == 0);
	CHECK(ev.src[0] == 0x20 && ev.src[15] == 0x21 && ev.dst[15] == 0x11);
}

TEST(ipv6_udp_and_a_cut_transport_header)
{
	uint8_t pkt[128];
	struct nflog_event ev;
	size_t len = ipv6(pkt, IPPROTO_UDP, udp_9999, sizeof(udp_9999));
	CHECK(nflog_parse(packet_msg(NFPROTO_IPV6, pkt, len, "bh:D:e1", 7), &ev) == 0);
	CHECK(ev.proto == IPPROTO_UDP && ev.has_port && ev.port == 9999 && ev.prefix.position == 1);
	/* The snap length cut the UDP header: no port, but not malformed. */
	len = ipv6(pkt, IPPROTO_UDP, udp_9999, 2);
	CHECK(nflog_parse(packet_msg(NFPROTO_IPV6, pkt, len, "bh:D:e1", 7), &ev) == 0);
	CHECK(ev.proto == IPPROTO_UDP && !ev.has_port);
	/* A later IPv6 fragment: protocol known, no port. */
	uint8_t frag[16] = {IPPROTO_UDP, 0, 0x05, 0x00};
	len = ipv6(pkt, IPPROTO_FRAGMENT, frag, sizeof(frag));
	CHECK(nflog_parse(packet_msg(NFPROTO_IPV6, pkt, len, "bh:D:e1", 7), &ev) == 0);
	CHECK(ev.proto == IPPROTO_UDP && !ev.has_port);
}

TEST(prefixes_that_are_not_ours)
{
	uint8_t pkt[128];
	size_t len = ipv4(pkt, IPPROTO_UDP, udp_9999, sizeof(udp_9999), 0, 0);
	struct nflog_event ev;
	CHECK(nflog_parse(packet_msg(NFPROTO_IPV4, pkt, len, "somebody else", 3), &ev) == -ENOENT);
	CHECK(ev.has_seq && ev.seq == 3); /* still counted for sequence gaps */
	CHECK(nflog_parse(packet_msg(NFPROTO_IPV4, pkt, len, NULL, 3), &ev) == -ENOENT);
	CHECK(nflog_parse(packet_msg(NFPROTO_IPV4, pkt, len, "bh:X:i-", 3), &ev) == -ENOENT);
	CHECK(nflog_parse(packet_msg(NFPROTO_IPV4, pkt, len, "bh:D:i007", 3), &ev) == -ENOENT);
	CHECK(nflog_parse(packet_msg(NFPROTO_IPV4, pkt, len, "bh:D:ixx", 3), &ev) == -ENOENT);
}

TEST(the_invalid_drop_has_its_own_prefix)
{
	uint8_t pkt[128];
	size_t len = ipv4(pkt, IPPROTO_UDP, udp_9999, sizeof(udp_9999), 0, 0);
	struct nflog_event ev;
	CHECK(nflog_parse(packet_msg(NFPROTO_IPV4, pkt, len, "bh:D:ex", 3), &ev) == 0);
	CHECK(ev.prefix.position == NFT_POSITION_INVALID && ev.prefix.dir == DIR_EGRESS &&
	      ev.prefix.verdict == VERDICT_DROP);
	char text[NFT_PREFIX_MAX];
	nft_prefix_format(&ev.prefix, text);
	CHECK_STR(text, "bh:D:ex");
}

TEST(an_observed_connection_has_the_pass_prefix)
{
	uint8_t pkt[128];
	size_t len = ipv4(pkt, IPPROTO_UDP, udp_9999, sizeof(udp_9999), 0, 0);
	struct nflog_event ev;
	char text[NFT_PREFIX_MAX];
	CHECK(nflog_parse(packet_msg(NFPROTO_IPV4, pkt, len, "bh:P:i4", 3), &ev) == 0);
	CHECK(ev.prefix.verdict == VERDICT_ACCEPT && ev.prefix.dir == DIR_INGRESS && ev.prefix.position == 4);
	nft_prefix_format(&ev.prefix, text);
	CHECK_STR(text, "bh:P:i4");
	CHECK(nflog_parse(packet_msg(NFPROTO_IPV4, pkt, len, "bh:P:e-", 3), &ev) == 0);
	CHECK(ev.prefix.verdict == VERDICT_ACCEPT && ev.prefix.position == NFT_POSITION_FALLBACK);
	/* The invalid drop is only ever a drop. */
	CHECK(nflog_parse(packet_msg(NFPROTO_IPV4, pkt, len, "bh:P:ix", 3), &ev) == -ENOENT);
	CHECK(nflog_parse(packet_msg(NFPROTO_IPV4, pkt, len, "bh:A:ix", 3), &ev) == -ENOENT);
}

TEST(malformed_messages_are_refused)
{
	uint8_t pkt[128];
	struct nflog_event ev;
	size_t len = ipv4(pkt, IPPROTO_UDP, udp_9999, sizeof(udp_9999), 0, 0);
	CHECK(nflog_parse(packet_msg(NFPROTO_IPV4, NULL, 0, "bh:D:i-", 1), &ev) == -EINVAL); /* no payload */
	CHECK(nflog_parse(packet_msg(NFPROTO_IPV4, pkt, 19, "bh:D:i-", 1), &ev) ==
	      -EINVAL); /* short header */
	CHECK(nflog_parse(packet_msg(NFPROTO_IPV6, pkt, len, "bh:D:i-", 1), &ev) == -EINVAL);	/* v4 as v6 */
	CHECK(nflog_parse(packet_msg(NFPROTO_UNSPEC, pkt, len, "bh:D:i-", 1), &ev) == -EINVAL); /* family */
	pkt[0] = 0x44; /* IHL 16 bytes */
	CHECK(nflog_parse(packet_msg(NFPROTO_IPV4, pkt, len, "bh:D:i-", 1), &ev) == -EINVAL);
	pkt[0] = 0x4f; /* IHL 60 bytes, longer than the capture */
	CHECK(nflog_parse(packet_msg(NFPROTO_IPV4, pkt, 28, "bh:D:i-", 1), &ev) == -EINVAL);
	pkt[0] = 0x45;

	/* A prefix without its NUL, a short sequence number, a repeated attribute. */
	struct nlmsghdr *nlh = packet_msg(NFPROTO_IPV4, pkt, len, NULL, -1);
	mnl_attr_put(nlh, NFULA_PREFIX, 7, "bh:D:i-");
	CHECK(nflog_parse(nlh, &ev) == -EINVAL);
	nlh = packet_msg(NFPROTO_IPV4, pkt, len, "bh:D:i-", -1);
	mnl_attr_put_u16(nlh, NFULA_SEQ, 1);
	CHECK(nflog_parse(nlh, &ev) == -EINVAL);
	nlh = packet_msg(NFPROTO_IPV4, pkt, len, "bh:D:i-", 1);
	mnl_attr_put_u32(nlh, NFULA_SEQ, 2);
	CHECK(nflog_parse(nlh, &ev) == -EINVAL);
	/* Another message type of the subsystem; a header cut short. */
	nlh = packet_msg(NFPROTO_IPV4, pkt, len, "bh:D:i-", 1);
	nlh->nlmsg_type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG;
	CHECK(nflog_parse(nlh, &ev) == -EINVAL);
	nlh = packet_msg(NFPROTO_IPV4, pkt, len, "bh:D:i-", 1);
	nlh->nlmsg_len = NLMSG_HDRLEN + 2;
	CHECK(nflog_parse(nlh, &ev) == -EINVAL);
	/* No packet header attribute. */
	memset(buf, 0, sizeof(buf));
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET;
	struct nfgenmsg *g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->nfgen_family = NFPROTO_IPV4;
	mnl_attr_put(nlh, NFULA_PAYLOAD, len, pkt);
	CHECK(nflog_parse(nlh, &ev) == -EINVAL);
}

int main(void)
{
	return test_main();
}
