/* One whole multi-part ZeroMQ message (see zmsg.h). */
#include <errno.h>

#include "bulkhead/zmsg.h"

int zmsg_recv(struct zmsg *m, void *sock, int max)
{
	if (max > ZMSG_PARTS_MAX)
		max = ZMSG_PARTS_MAX;
	m->kept = m->parts = 0;
	for (int more = 1; more;) {
		zmq_msg_t part;
		zmq_msg_init(&part);
		/* The first part may be missing; the others are there once it
		 * is (ZeroMQ delivers a message whole or not at all). */
		if (zmq_msg_recv(&part, sock, ZMQ_DONTWAIT) < 0) {
			int e = errno;
			zmq_msg_close(&part);
			if (m->parts == 0 && e == EAGAIN)
				return 0;
			zmsg_release(m);
			return e == EAGAIN ? -EIO : -e;
		}
		more = zmq_msg_more(&part);
		m->parts++;
		if (m->kept < max)
			m->part[m->kept++] = part;
		else
			zmq_msg_close(&part);
	}
	return 1;
}

void zmsg_release(struct zmsg *m)
{
	for (int i = 0; i < m->kept; i++)
		zmq_msg_close(&m->part[i]);
	m->kept = m->parts = 0;
}
