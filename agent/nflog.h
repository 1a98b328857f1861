/* nflog: the packets an endpoint's table drops or audits, read from NFLOG
 * inside its namespace (DESIGN §3, denied flows).
 *
 * Every logging rule of the table sends to one NFLOG group with a prefix
 * naming the deciding rule (nft.h). The reader binds that group in the
 * namespace (NFLOG instances are per namespace), asks for the first
 * NFT_NFLOG_SNAPLEN bytes of each packet and the instance's sequence
 * numbers, and turns each message into an nflog_event. Nothing is lost
 * silently: a receive-buffer overrun (ENOBUFS) and every hole in the
 * sequence numbers are counted. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "bulkhead/common.h"
#include "netns.h"
#include "nft-prefix.h"

struct nlmsghdr;

/* One logged packet. */
struct nflog_event {
	uint8_t family; /* AF_INET or AF_INET6 */
	uint8_t src[16], dst[16];
	uint8_t proto; /* IPPROTO_* of the transport header */
	bool has_port; /* TCP, UDP, SCTP (UDP-Lite, DCCP): destination port */
	uint16_t port;
	bool has_icmp; /* ICMP, ICMPv6: type and code */
	uint8_t icmp_type, icmp_code;
	struct nft_prefix prefix; /* verdict, direction, deciding rule */
	bool has_seq;
	uint32_t seq; /* the instance's sequence number */
};

struct nflog_stats {
	uint64_t events;    /* turned into nflog_events */
	uint64_t enobufs;   /* receive-buffer overruns reported by the kernel */
	uint64_t gap;	    /* events missing by sequence number */
	uint64_t malformed; /* messages that failed validation */
	uint64_t foreign;   /* well-formed, but not one of our prefixes */
};

/* Parses one NFULNL_MSG_PACKET message. 0; -ENOENT when it is well formed
 * but its prefix is not ours; -EINVAL when anything is malformed (bad
 * attribute, truncated or inconsistent headers). Pure: no socket, no state,
 * so the unit tests and the fuzzer drive it directly. */
BH_MUST_CHECK int nflog_parse(const struct nlmsghdr *nlh, struct nflog_event *out);

struct nflog;

/* Binds NFLOG group in the namespace nsfd (netns_open). NULL with errno
 * (EBUSY: some other program has bound the group there). */
struct nflog *nflog_open(struct netns *ns, int nsfd, uint16_t group);
void nflog_free(struct nflog *l); /* accepts NULL */
int nflog_fd(const struct nflog *l);

/* Reads every pending message (bounded: at most max_msgs datagrams, so
 * other fds get their turn under a flood) and calls fn for each event.
 * Returns true when the socket may have more. */
typedef void (*nflog_fn)(void *arg, const struct nflog_event *ev);
bool nflog_dispatch(struct nflog *l, unsigned max_msgs, nflog_fn fn, void *arg);

const struct nflog_stats *nflog_stats(const struct nflog *l);
