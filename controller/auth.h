/* auth: who an agent is, and what it may claim. The allow-list directory
 * holds NODE.key (the public key of NODE's agent) and NODE.labels (the
 * labels NODE may report, labelrules.h: the pure parser and check); it is
 * re-read when it changes. libzmq asks about every CURVE handshake over
 * ZAP (RFC 27): the answer's User-Id is the node the key is bound to,
 * which every later message of the connection carries. Without an
 * allow-list (--insecure) there is no ZAP and no label rule. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "bulkhead/common.h"
#include "bulkhead/diag.h"
#include "bulkhead/loop.h"
#include "node.h"

/* Re-read at least this often without a handshake to prompt it: a file
 * rewritten in place leaves the directory's mtime alone (re-reading 1000
 * nodes' files costs ~12 ms). */
#define AUTH_REREAD_IDLE_MS 10000

struct auth;

/* Binds the ZAP handler on zctx (before any CURVE socket is bound) for
 * allow_dir (NULL: --insecure), which the first auth_reload() reads.
 * rules_changed(data, node) is called for every node whose label rules
 * changed (every node at the first reading). Borrows everything. NULL
 * with *err (malloc()ed). */
struct auth *auth_new(struct loop *l, void *zctx, const char *allow_dir, struct nodes *t,
		      void (*rules_changed)(void *data, struct node *n), void *data, char **err);
void auth_free(struct auth *a);

/* Re-reads the directory when it changed, or when it was read longer
 * than max_age_ms ago. */
void auth_reload(struct auth *a, int64_t max_age_ms);

/* Whether node may report these endpoints' labels (its NODE.labels): 0,
 * or -EPERM with why in diag. */
BH_MUST_CHECK int auth_check_labels(struct auth *a, const char *node, json_t *endpoints, struct diag *d);

/* Whether node is in the allow-list (NODE.key), as last read: the known
 * nodes (DESIGN §4). False for every node with --insecure. */
bool auth_listed(const struct auth *a, const char *node);
/* Calls fn for every node in the allow-list (none with --insecure). */
void auth_each_listed(const struct auth *a, void (*fn)(void *data, const char *node), void *data);

/* Handshakes refused so far. */
uint64_t auth_refused(const struct auth *a);
