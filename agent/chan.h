/* chan: framed messages between the agent's two processes, the enforcer
 * and its session child (session-privsep.h), over one end of a
 * SOCK_SEQPACKET socketpair.
 *
 * A message is a type and a payload of any length up to the limit the
 * receiver sets for that type. It goes as one or more records of at most
 * CHAN_RECORD_MAX bytes, each a header (type, flags, this record's length,
 * the whole message's length) and a slice of the payload; the kernel keeps
 * record boundaries, the lengths say where a message ends. The receiver
 * takes nothing on trust: a record cut short or longer than its buffer, a
 * length that does not add up, a continuation without its start, an
 * unknown type or a message past its type's limit is dropped whole and
 * counted (chan_stats), and reading goes on with the next message. Nothing
 * is allocated before a message's stated length was checked.
 *
 * Sending never blocks: what the socket does not take waits in the
 * channel's queue (chan_queued() says how much) and goes when the socket
 * has room; the channel registers for that on the loop itself. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "bulkhead/common.h"
#include "bulkhead/loop.h"

#define CHAN_RECORD_MAX (64u << 10) /* bytes of one record, header included */
#define CHAN_HEADER_LEN 12	    /* u16 type, u16 flags, u32 len, u32 total (host order) */
#define CHAN_READ_BURST 64	    /* records one call of the loop's handler reads */

/* Record flags. */
#define CHAN_FIRST 1u /* the first record of a message */
#define CHAN_MORE  2u /* more records of this message follow */

struct chan_stats {
	uint64_t messages_in, bytes_in, messages_out, bytes_out;
	uint64_t malformed; /* records or messages whose framing was wrong (or unknown types) */
	uint64_t oversized; /* records past CHAN_RECORD_MAX, messages past their type's limit */
	uint64_t truncated; /* messages that ended before their stated length */
};

struct chan;

struct chan_callbacks {
	/* The largest payload a message of type may have; -1: no such type
	 * (the message is malformed). */
	ssize_t (*limit)(void *data, uint16_t type);
	/* A whole message (p valid during the call only). Returns 0 to go on
	 * reading, or a negative number to stop the burst at once (the
	 * callee may then free the channel, once the call has returned). */
	int (*message)(void *data, uint16_t type, const uint8_t *p, size_t len);
	/* Something the peer sent was dropped (reason, a static string);
	 * optional, for a rate-limited log line. */
	void (*dropped)(void *data, const char *reason);
	/* The peer closed its end, or the socket failed (error: 0 or a
	 * negative errno). Called last by the loop's handler: the callee may
	 * free the channel. */
	void (*closed)(void *data, int error);
};

/* Takes fd (a connected SOCK_SEQPACKET socket; made non-blocking) and
 * registers it on loop (NULL: the caller drives chan_read() and
 * chan_flush() itself). Borrows cb (static) and data. NULL with errno. */
struct chan *chan_new(struct loop *loop, int fd, const struct chan_callbacks *cb, void *data);
/* Closes the socket and frees what is queued. Accepts NULL. */
void chan_free(struct chan *c);
int chan_fd(const struct chan *c);

/* Queues a message (copied) and writes what the socket takes now. */
void chan_send(struct chan *c, uint16_t type, const void *p, size_t len);
/* The same, taking ownership of p (malloc()ed): no copy. */
void chan_send_take(struct chan *c, uint16_t type, void *p, size_t len);
/* Writes queued records while the socket takes them: 0 all written, 1
 * some wait, or a negative errno (-EPIPE: the peer is gone). */
int chan_flush(struct chan *c);
/* Bytes of messages not yet written to the socket. */
size_t chan_queued(const struct chan *c);

/* Reads at most max records, handing whole messages to cb->message: 1
 * when more may wait, 0 when none does, -EPIPE when the peer closed its
 * end, -ECANCELED when cb->message asked to stop, another negative errno
 * when the socket failed. (Without a loop; the loop's handler does the
 * same with CHAN_READ_BURST and calls cb->closed.) */
int chan_read(struct chan *c, unsigned max);

const struct chan_stats *chan_stats(const struct chan *c);

/* ---- payloads: a writer and a bounds-checked reader ---- */

/* A growing buffer (the writer aborts on out-of-memory, as xmalloc). */
struct chan_buf {
	uint8_t *p;
	size_t len, size;
};

void chan_buf_reserve(struct chan_buf *b, size_t more);
void chan_buf_free(struct chan_buf *b);

static inline void chan_put(struct chan_buf *b, const void *p, size_t n)
{
	chan_buf_reserve(b, n);
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
}
static inline void chan_put_u8(struct chan_buf *b, uint8_t v)
{
	chan_put(b, &v, 1);
}
static inline void chan_put_u16(struct chan_buf *b, uint16_t v)
{
	chan_put(b, &v, 2);
}
static inline void chan_put_u32(struct chan_buf *b, uint32_t v)
{
	chan_put(b, &v, 4);
}
static inline void chan_put_u64(struct chan_buf *b, uint64_t v)
{
	chan_put(b, &v, 8);
}
/* A string: u32 length (CHAN_NULL_STR for NULL), the bytes, a NUL. */
#define CHAN_NULL_STR UINT32_MAX
void chan_put_str(struct chan_buf *b, const char *s);

/* Reads a payload; a read past its end, or a string that is not what it
 * says, sets bad and returns zeros (or NULL), so a decoder checks bad
 * once, at the end. */
struct chan_in {
	const uint8_t *p;
	size_t len, off;
	bool bad;
};

static inline struct chan_in chan_in(const uint8_t *p, size_t len)
{
	return (struct chan_in){.p = p, .len = len};
}
static inline bool chan_get(struct chan_in *in, void *out, size_t n)
{
	if (in->bad || in->len - in->off < n) {
		in->bad = true;
		memset(out, 0, n);
		return false;
	}
	memcpy(out, in->p + in->off, n);
	in->off += n;
	return true;
}
static inline uint8_t chan_get_u8(struct chan_in *in)
{
	uint8_t v;
	chan_get(in, &v, 1);
	return v;
}
static inline uint16_t chan_get_u16(struct chan_in *in)
{
	uint16_t v;
	chan_get(in, &v, 2);
	return v;
}
static inline uint32_t chan_get_u32(struct chan_in *in)
{
	uint32_t v;
	chan_get(in, &v, 4);
	return v;
}
static inline uint64_t chan_get_u64(struct chan_in *in)
{
	uint64_t v;
	chan_get(in, &v, 8);
	return v;
}
/* A string of at most max bytes, NUL-terminated in the payload and with
 * no NUL inside (borrowed from it). *is_null (optional) says whether it was
 * CHAN_NULL_STR; NULL then, and bad unless is_null was given. */
const char *chan_get_str(struct chan_in *in, size_t max, bool *is_null);
/* The rest of the payload (borrowed), n bytes. */
const uint8_t *chan_get_rest(struct chan_in *in, size_t *n);
/* Whether the payload was read exactly, to its end, without a bad read. */
static inline bool chan_in_done(const struct chan_in *in)
{
	return !in->bad && in->off == in->len;
}
