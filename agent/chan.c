/* Framed messages over a SOCK_SEQPACKET socket (see chan.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bulkhead/log.h"
#include "chan.h"

#define CHAN_PAYLOAD_MAX (CHAN_RECORD_MAX - CHAN_HEADER_LEN)

struct chan_header {
	uint16_t type, flags;
	uint32_t len, total;
};

struct chan_out {
	uint16_t type;
	uint8_t *p;
	size_t len, off;
	bool started; /* its first record went */
	struct chan_out *next;
};

struct chan {
	int fd;
	int wfd; /* a dup of fd: epoll watches it for EPOLLOUT while output waits */
	struct loop *loop;
	struct loop_source *rsrc, *wsrc;
	const struct chan_callbacks *cb;
	void *data;
	struct chan_out *head, **tail;
	size_t queued;
	/* The message being put together from its records. */
	bool active, discarding;
	uint16_t type;
	uint32_t total, got;
	uint8_t *msg;
	uint8_t *rbuf; /* one record */
	struct chan_stats st;
};

/* ---- payloads ---- */

void chan_buf_reserve(struct chan_buf *b, size_t more)
{
	if (b->size - b->len >= more)
		return;
	size_t size = b->size ? b->size : 256;
	while (size - b->len < more)
		size *= 2;
	b->p = xrealloc(b->p, size);
	b->size = size;
}

void chan_buf_free(struct chan_buf *b)
{
	free(b->p);
	*b = (struct chan_buf){0};
}

void chan_put_str(struct chan_buf *b, const char *s)
{
	if (!s) {
		chan_put_u32(b, CHAN_NULL_STR);
		return;
	}
	size_t n = strlen(s);
	chan_put_u32(b, (uint32_t)n);
	chan_put(b, s, n + 1);
}

const char *chan_get_str(struct chan_in *in, size_t max, bool *is_null)
{
	uint32_t n = chan_get_u32(in);
	if (is_null)
		*is_null = false;
	if (in->bad)
		return NULL;
	if (n == CHAN_NULL_STR) {
		if (is_null)
			*is_null = true;
		else
			in->bad = true;
		return NULL;
	}
	if (n > max || in->len - in->off < (size_t)n + 1 || in->p[in->off + n] != '\0' ||
	    memchr(in->p + in->off, '\0', n)) {
		in->bad = true;
		return NULL;
	}
	const char *s = (const char *)in->p + in->off;
	in->off += (size_t)n + 1;
	return s;
}

const uint8_t *chan_get_rest(struct chan_in *in, size_t *n)
{
	*n = in->bad ? 0 : in->len - in->off;
	const uint8_t *p = in->bad ? NULL : in->p + in->off;
	in->off = in->len;
	return p;
}

/* ---- sending ---- */

static void on_writable(void *data, uint32_t events);

/* Watches for room in the socket exactly while output waits. */
static void watch_output(struct chan *c)
{
	if (!c->loop)
		return;
	if (c->head && !c->wsrc) {
		if (!(c->wsrc = loop_add_fd(c->loop, c->wfd, EPOLLOUT, on_writable, c)))
			log_error("watching the session channel for room: %m");
	} else if (!c->head && c->wsrc) {
		loop_remove(c->loop, c->wsrc);
		c->wsrc = NULL;
	}
}

static int write_queued(struct chan *c)
{
	while (c->head) {
		struct chan_out *o = c->head;
		size_t chunk = o->len - o->off;
		if (chunk > CHAN_PAYLOAD_MAX)
			chunk = CHAN_PAYLOAD_MAX;
		struct chan_header h = {
		    .type = o->type,
		    .flags =
			(uint16_t)((o->started ? 0 : CHAN_FIRST) | (o->off + chunk < o->len ? CHAN_MORE : 0)),
		    .len = (uint32_t)chunk,
		    .total = (uint32_t)o->len,
		};
		struct iovec iov[2] = {{&h, CHAN_HEADER_LEN}, {o->p + o->off, chunk}};
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = chunk ? 2 : 1};
		if (sendmsg(c->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK ? 1 : -errno;
		}
		o->started = true;
		o->off += chunk;
		c->queued -= chunk;
		c->st.bytes_out += chunk;
		if (o->off < o->len)
			continue;
		c->head = o->next;
		if (!c->head)
			c->tail = &c->head;
		c->st.messages_out++;
		free(o->p);
		free(o);
	}
	return 0;
}

int chan_flush(struct chan *c)
{
	int r = write_queued(c);
	watch_output(c);
	return r;
}

static void on_writable(void *data, uint32_t events)
{
	struct chan *c = data;
	if (chan_flush(c) < 0 && c->wsrc) {
		/* The peer is gone: the read side says so, and stops us. */
		loop_remove(c->loop, c->wsrc);
		c->wsrc = NULL;
	}
}

void chan_send_take(struct chan *c, uint16_t type, void *p, size_t len)
{
	if (len > UINT32_MAX) /* no message of ours comes near it */
		abort();
	struct chan_out *o = xcalloc(1, sizeof(*o));
	*o = (struct chan_out){.type = type, .p = p, .len = len};
	*c->tail = o;
	c->tail = &o->next;
	c->queued += len;
	(void)chan_flush(c);
}

void chan_send(struct chan *c, uint16_t type, const void *p, size_t len)
{
	void *copy = xmalloc(len);
	if (len)
		memcpy(copy, p, len);
	chan_send_take(c, type, copy, len);
}

size_t chan_queued(const struct chan *c)
{
	return c->queued;
}

/* ---- receiving ---- */

static void drop(struct chan *c, uint64_t *counter, const char *reason)
{
	(*counter)++;
	if (c->cb->dropped)
		c->cb->dropped(c->data, reason);
}

/* Forgets the message being put together. */
static void reset(struct chan *c)
{
	free(c->msg);
	c->msg = NULL;
	c->active = false;
	c->got = c->total = 0;
}

static int deliver(struct chan *c, uint16_t type, const uint8_t *p, size_t len)
{
	c->st.messages_in++;
	return c->cb->message(c->data, type, p, len) < 0 ? -ECANCELED : 0;
}

/* One record of n bytes in c->rbuf (the record was longer when trunc). */
static int take_record(struct chan *c, size_t n, bool trunc)
{
	struct chan_header h;
	if (n < CHAN_HEADER_LEN) {
		if (c->active)
			drop(c, &c->st.truncated, "a message cut short by a record too short for its header");
		reset(c);
		c->discarding = false;
		drop(c, &c->st.malformed, "a record too short for its header");
		return 0;
	}
	memcpy(&h, c->rbuf, sizeof(h));
	const uint8_t *payload = c->rbuf + CHAN_HEADER_LEN;
	bool more = h.flags & CHAN_MORE;
	if (trunc || h.len != n - CHAN_HEADER_LEN || h.flags & ~(CHAN_FIRST | CHAN_MORE)) {
		if (c->active)
			drop(c, &c->st.truncated, "a message whose next record was broken");
		reset(c);
		c->discarding = more; /* the rest of that message is skipped */
		if (trunc)
			drop(c, &c->st.oversized, "a record longer than the channel's record size");
		else
			drop(c, &c->st.malformed, "a record whose length or flags are wrong");
		return 0;
	}
	if (h.flags & CHAN_FIRST) {
		if (c->active)
			drop(c, &c->st.truncated, "a message that ended before its stated length");
		reset(c);
		c->discarding = false;
		ssize_t limit = c->cb->limit(c->data, h.type);
		if (limit < 0) {
			c->discarding = more;
			drop(c, &c->st.malformed, "a message of an unknown type");
			return 0;
		}
		if (h.total > (size_t)limit) {
			c->discarding = more;
			drop(c, &c->st.oversized, "a message longer than its type's limit");
			return 0;
		}
		if (h.len > h.total || (!more && h.len != h.total) || (more && h.len == h.total)) {
			c->discarding = more;
			drop(c, &c->st.malformed, "a record whose length does not fit its message's");
			return 0;
		}
		c->st.bytes_in += h.len;
		if (!more) /* a message in one record: no copy */
			return deliver(c, h.type, payload, h.len);
		c->msg = xmalloc(h.total);
		memcpy(c->msg, payload, h.len);
		c->active = true;
		c->type = h.type;
		c->total = h.total;
		c->got = h.len;
		return 0;
	}
	if (!c->active) {
		if (!c->discarding)
			drop(c, &c->st.malformed, "a continuation record without its message's first");
		c->discarding = more;
		return 0;
	}
	if (h.type != c->type || h.total != c->total || h.len > c->total - c->got ||
	    (!more && c->got + h.len != c->total) || (more && c->got + h.len == c->total)) {
		reset(c);
		c->discarding = more;
		drop(c, &c->st.malformed, "a continuation record that does not fit its message");
		return 0;
	}
	memcpy(c->msg + c->got, payload, h.len);
	c->got += h.len;
	c->st.bytes_in += h.len;
	if (more)
		return 0;
	uint8_t *msg = c->msg;
	c->msg = NULL;
	c->active = false;
	int r = deliver(c, c->type, msg, c->total);
	free(msg);
	return r;
}

int chan_read(struct chan *c, unsigned max)
{
	for (unsigned i = 0; i < max; i++) {
		struct iovec iov = {c->rbuf, CHAN_RECORD_MAX};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
		/* MSG_TRUNC: the record's real length (Linux >= 3.4). Any
		 * descriptors sent along are not taken (no control buffer). */
		ssize_t n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_TRUNC | MSG_CMSG_CLOEXEC);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ECONNRESET) /* it closed with our records unread */
				return -EPIPE;
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
		}
		if (n == 0)
			return -EPIPE; /* every record of ours has a header: this is the end */
		if (mh.msg_flags & MSG_CTRUNC)
			drop(c, &c->st.malformed, "a record with ancillary data");
		bool trunc = (size_t)n > CHAN_RECORD_MAX || (mh.msg_flags & MSG_TRUNC);
		int r = take_record(c, trunc ? CHAN_RECORD_MAX : (size_t)n, trunc);
		if (r < 0)
			return r;
	}
	return 1;
}

static void on_readable(void *data, uint32_t events)
{
	struct chan *c = data;
	int r = chan_read(c, CHAN_READ_BURST);
	if (r == -ECANCELED || r >= 0)
		return;
	/* The last thing done here: the callee may free c. */
	loop_remove(c->loop, c->rsrc);
	c->rsrc = NULL;
	c->cb->closed(c->data, r == -EPIPE ? 0 : r);
}

const struct chan_stats *chan_stats(const struct chan *c)
{
	return &c->st;
}

int chan_fd(const struct chan *c)
{
	return c->fd;
}

struct chan *chan_new(struct loop *loop, int fd, const struct chan_callbacks *cb, void *data)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return NULL;
	struct chan *c = xcalloc(1, sizeof(*c));
	c->fd = fd;
	c->wfd = -1;
	c->loop = loop;
	c->cb = cb;
	c->data = data;
	c->tail = &c->head;
	c->rbuf = xmalloc(CHAN_RECORD_MAX);
	if (loop) {
		c->wfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
		if (c->wfd < 0 || !(c->rsrc = loop_add_fd(loop, fd, EPOLLIN, on_readable, c))) {
			int e = errno;
			if (c->wfd >= 0)
				close(c->wfd);
			free(c->rbuf);
			free(c);
			errno = e;
			return NULL;
		}
	}
	return c;
}

void chan_free(struct chan *c)
{
	if (!c)
		return;
	if (c->loop) {
		loop_remove(c->loop, c->rsrc);
		loop_remove(c->loop, c->wsrc);
	}
	if (c->wfd >= 0)
		close(c->wfd);
	close(c->fd);
	while (c->head) {
		struct chan_out *o = c->head;
		c->head = o->next;
		free(o->p);
		free(o);
	}
	free(c->msg);
	free(c->rbuf);
	free(c);
}
