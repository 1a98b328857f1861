/* admin: the operator CLI's endpoint (REP, protocol in bulkhead/admin.h).
 * Root-only when it is an ipc socket: its directory is made 0700 and the
 * socket file 0600; a directory that another user controls (pathtrust.h)
 * is refused. */
#pragma once

#include <zmq.h>

#include "agents.h"
#include "compiler.h"
#include "store.h"

struct admin;

struct admin *admin_new(void *zctx, const char *endpoint, struct store *s, struct compiler *c, struct agents *ag,
			char **err);
void admin_free(struct admin *a);
void admin_poll_item(struct admin *a, zmq_pollitem_t *item);
/* Answers the requests waiting (bounded). */
void admin_dispatch(struct admin *a);

/* Applies a policy document as a new revision (also --policy at start).
 * Returns the reply for the CLI (new reference): admin.h policy.apply. */
json_t *admin_apply_policy(struct store *s, struct compiler *c, const char *document, const char *file,
			   const char *comment);
