/* session-privsep: the controller session in a child process without
 * privileges (OpenBSD bgpd's privilege separation), behind the session
 * interface (session.h).
 *
 * The agent runs as two processes (three with the spawner, spawner.h):
 *
 *   the enforcer   uid 0, CAP_NET_ADMIN and CAP_SYS_ADMIN: the core, the
 *                  dataplane, NFLOG and the counters, the cache and
 *                  status.json. It has no ZeroMQ socket and parses nothing
 *                  that comes from the network: its session is the proxy
 *                  (session-proxy.c), which passes every session call to
 *                  the child as a message over a socketpair (chan.h).
 *   the child      the session user (--session-user, default nobody), no
 *                  capability in any set, no new privileges: session.c
 *                  unchanged (ZeroMQ, CURVE, the JSON of the wire), the
 *                  flow windows and the spool, in its own event loop
 *                  (session-child.c).
 *
 * The child is considered compromised: every message it sends is outside
 * input to the enforcer, checked (types, lengths, strings) and dropped and
 * counted when wrong. A bundle crosses as its canonical text, no longer
 * than PS_BUNDLE_MAX, which the enforcer decodes and checks again as it
 * would the controller's (every field against the format, no unknown or
 * duplicate key, the hash, the node) and takes only if encoding it again
 * gives the same bytes; never as a structure the child built. A bundle the
 * child made from a DELTA crosses as that DELTA's sets (JSON), which the
 * enforcer applies itself to the bundle it holds (bundle_apply_delta,
 * every element checked) and takes only if the result has the hash the
 * child names; holding another, it asks for the whole (PS_RESEND). A
 * one-member change to a 100,000-member bundle is then a small message,
 * not 5 MB to decode. A child that dies,
 * floods the channel or stops reading is killed and started again with
 * backoff; meanwhile the enforcer keeps enforcing the bundle in force
 * (fail-static) and counts the logged packets it cannot pass on as lost.
 *
 * The messages, each a chan message whose payload is written with
 * chan_put_*() (host byte order: both ends are one binary on one host): */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "session.h"

enum privsep_msg {
	/* enforcer -> child */
	PS_IN_FORCE = 1, /* i64 revision, u8 certain, str hash (NULL: no bundle), u8 has_text; then
			    the bundle's canonical text (has_text 1), or the child holds it already */
	PS_ENDPOINTS,	 /* str: the endpoint list (JSON) */
	PS_ACK,		 /* i64 revision, u8 ok, u8 always, str error (NULL: none), str endpoints (JSON) */
	PS_FLOWS,	 /* items (below), to the end */
	PS_START,	 /* (empty) connect and say HELLO with what the messages before said */
	PS_STOP,	 /* (empty) the last window and the spool to disk, PS_STOPPED, exit */
	PS_RESEND,	 /* i64 revision: its PS_DELTA found another bundle in force; the whole, please */
	/* child -> enforcer */
	PS_BUNDLE = 64, /* i64 revision; then the bundle's canonical text */
	PS_REJECTED,	/* i64 revision, str error */
	PS_STATUS,	/* u8 changed; then {"controller": {...}, "flows": {...}} (JSON) */
	PS_STOPPED,	/* (empty) */
	PS_DELTA,	/* i64 revision, str base hash, str hash; then the DELTA's "sets" (JSON) */
};

/* Limits of what the child may send (payload bytes). */
#define PS_BUNDLE_MAX	(8 + PROTO_MAX_MSG) /* what the controller could send, decoded and encoded again */
#define PS_REJECTED_MAX (8 + 4 + PROTO_ERROR_MAX + 1)
#define PS_DELTA_MAX	(8 + 2 * (4 + BUNDLE_HASH_HEX + 1) + PROTO_MAX_MSG)
#define PS_STATUS_MAX	(64u << 10)
#define PS_ERROR_MAX	PROTO_ERROR_MAX

/* PS_FLOWS: a stream of items, each a u8 kind and its fields.
 *   'T' a tuple: str16 endpoint, str16 policy (0xffff: NULL), str16 rule.
 *       Tuples are numbered in the order they come, from 0, per message.
 *   'P' a logged packet (session_packet): u16 tuple, u64 now_ms, then
 *       struct ps_packet.
 *   'H' a rule's hits (session_hit): u16 tuple, str16 verdict, u8 dir,
 *       u64 packets, u64 bytes, u64 now_ms.
 *   'L' lost (session_packets_lost): str16 endpoint, u64 enobufs, u64 gap.
 * str16: u16 length, the bytes, a NUL. A message holds at most one
 * record's worth (CHAN_RECORD_MAX): one per loop round, or more when a
 * round logged more. */
#define PS_STR16_NULL 0xffffu
struct ps_packet {
	uint8_t family, proto, flags, icmp_type, icmp_code, verdict, dir, pad;
	uint16_t port;
	uint32_t seq;
	int32_t position;
	uint8_t src[16], dst[16];
};
#define PS_PACKET_PORT 1u /* flags */
#define PS_PACKET_ICMP 2u
#define PS_PACKET_SEQ  4u

struct spawner;

/* Where the proxy gets its children: the spawner (spawner.h), or a unit
 * test's fakes. */
struct session_children {
	/* A new child, the last one killed first: 0 with *fd (taken) our
	 * end of its channel and *pid, or a negative errno (logged; -EPIPE
	 * and -ETIMEDOUT: there will be no more). */
	int (*spawn)(void *arg, int *fd, pid_t *pid);
	void (*kill)(void *arg); /* the last child made, if it runs */
	void (*free)(void *arg); /* NULL: nothing to free */
	const char *user;	 /* for status.json and logs (borrowed) */
	void *arg;
};

/* The proxy: the session interface over a child that spawner makes
 * (taken: the proxy asks it for a child at session_start() and after
 * every death, and kills it when it floods). Borrows o, loop, peer and
 * core like session_new(). */
struct session *session_proxy_new(struct loop *loop, const struct session_options *o, struct spawner *spawner,
				  const struct session_peer *peer, void *core);

/* The same over children from elsewhere (copied; its arg is freed with
 * the proxy by children->free). */
struct session *session_proxy_new_with(struct loop *loop, const struct session_options *o,
				       const struct session_children *children,
				       const struct session_peer *peer, void *core);

/* Before the agent drops its capabilities (as root, single-threaded):
 * the flow spool in o->state_dir made ready for whoever will write it,
 * and with user the spawner that makes the children.
 *
 * With user (privilege separation): the old spool files of agents before
 * the segments (flows.journal, flows.spool) are taken over into
 * flows.d here, as root (the child may not write in the state directory
 * itself), then flows.d, the segments in it and flows.quarantine are
 * given to user: the child writes them and nothing else there. Without
 * user (--no-privsep): they are given back to root, as the in-process
 * session writes them.
 *
 * 0 with *spawner set (NULL without user), or -1 (logged). */
int session_privsep_setup(const struct session_options *o, const char *user, struct spawner **spawner);

/* The child's main, on its end of the socketpair (fd): session.c with
 * o (options as the enforcer parsed them; state_dir is the child's
 * current directory, ".") in its own loop, until PS_STOP or the enforcer
 * is gone. Returns the exit code. */
int session_child_main(int fd, const struct session_options *o);
