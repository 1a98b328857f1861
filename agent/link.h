/* link: the agent's ZeroMQ DEALER to the controller (protocol: proto.h).
 * CURVE with the controller's key pinned, unless insecure. It lives in the
 * agent's epoll loop through ZMQ_FD, sends heartbeats, notices a silent
 * controller and hands every well-formed message to the agent; malformed
 * ones are counted and dropped here. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "bulkhead/keys.h"
#include "bulkhead/proto.h"
#include "bulkhead/loop.h"

struct link_options {
	const char *endpoint;
	bool insecure;
	char public_key[KEY_Z85_LEN + 1], secret_key[KEY_Z85_LEN + 1], server_key[KEY_Z85_LEN + 1];
	unsigned heartbeat_ms;
	void *zctx; /* the ZeroMQ context to use; NULL: one of the link's own (a
		     * fuzzer shares one: a context per link costs its threads) */
};

struct link_callbacks {
	/* A decoded message from the controller (borrowed). */
	void (*message)(void *data, const struct proto_msg *m);
	/* The controller is new or was silent: say HELLO. */
	void (*hello)(void *data);
	/* The body of our next HEARTBEAT (new reference). */
	json_t *(*heartbeat)(void *data);
};

struct link;

/* Connects (asynchronously) and registers on the loop; the caller sends
 * the first HELLO. NULL with errno. */
struct link *link_new(struct loop *loop, const struct link_options *o, const struct link_callbacks *cb,
		      void *data);
void link_free(struct link *l);

/* Sends a message; takes the reference to body. Never blocks: a message
 * that cannot be queued is dropped and counted (the protocol recovers). */
void link_send(struct link *l, enum proto_type t, json_t *body);

/* True when a message from the controller waits to be read (tests). */
bool link_input_waiting(struct link *l);

/* For status.json: endpoint, connected, counters. New reference. */
json_t *link_status(struct link *l);
