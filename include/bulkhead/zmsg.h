/* zmsg: one whole multi-part ZeroMQ message, received without waiting —
 * the one receive every socket of both daemons uses (the controller's
 * ROUTER, ZAP handler and admin endpoint, the agent's link). A peer
 * decides how many parts it sends: the first ZMSG_PARTS_MAX are kept, the
 * rest are read and dropped, and the count says how many there were, so
 * a caller that wants N parts can tell a message of N+1 from one of N. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <zmq.h>

#include "bulkhead/common.h"

#define ZMSG_PARTS_MAX 8

struct zmsg {
	zmq_msg_t part[ZMSG_PARTS_MAX];
	int kept;  /* parts held in part[] */
	int parts; /* parts the message had (parts > kept: the rest were dropped) */
};

/* Receives the next whole message from sock, keeping at most max parts
 * (<= ZMSG_PARTS_MAX): 1 when one was read (release it with
 * zmsg_release), 0 when none is waiting, or a negative errno. On 0 and on
 * errors m holds nothing. */
BH_MUST_CHECK int zmsg_recv(struct zmsg *m, void *sock, int max);
void zmsg_release(struct zmsg *m);

/* Part i (< m->kept). */
static inline const void *zmsg_data(struct zmsg *m, int i)
{
	return zmq_msg_data(&m->part[i]);
}
static inline size_t zmsg_size(struct zmsg *m, int i)
{
	return zmq_msg_size(&m->part[i]);
}
