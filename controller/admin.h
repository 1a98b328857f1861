/* admin: the operator CLI's endpoint (protocol in bulkhead/admin.h), a
 * ROUTER on the loop: each request is answered when it is done, so a slow
 * one (a flow query over a large table, a large policy to validate, a
 * large document to show) runs on the worker's thread, on a read-only
 * connection to the store, while the loop serves the agents and the
 * other requests. Root-only when it is an ipc socket: its directory is
 * made 0700 and the socket file 0600; a directory that another user
 * controls (pathtrust.h) is refused. */
#pragma once

#include <stdint.h>

#include <jansson.h>
#include <zmq.h>

#include "bulkhead/loop.h"
#include "bulkhead/worker.h"
#include "compiler.h"
#include "sessions.h"
#include "store.h"

struct admin_options {
	const char *endpoint;
	int64_t flow_query_ms; /* how long one flow query may run; 0: no limit */
	struct worker *worker; /* NULL: every request answered at once, in the loop (tests) */
};

struct admin;

/* Binds the endpoint and joins loop l (NULL: admin_dispatch() reads it).
 * Borrows everything; the worker must be freed first. NULL with *err
 * (malloc()ed). */
struct admin *admin_new(struct loop *l, void *zctx, const struct admin_options *o, struct store *s,
			struct compiler *c, struct sessions *ss, char **err);
void admin_free(struct admin *a);
/* Answers the requests waiting (bounded); the loop calls it. */
void admin_dispatch(struct admin *a);

/* An error reply ({"ok": false, "code", "error"}); the message is made
 * valid UTF-8 (it may quote a peer, or be cut inside a character). */
json_t *admin_reply_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Applies a policy document as a new revision, now (also --policy at
 * start). Returns the reply for the CLI (new reference): admin.h
 * policy.apply. */
json_t *admin_apply_policy(struct store *s, struct compiler *c, const char *document, const char *file,
			   const char *comment);
