/* flows: the agent's denied-flow reports (DESIGN §3). Logged packets are
 * aggregated per window by (endpoint, direction, src, dst, protocol, port
 * or ICMP type/code, verdict, rule); each closed window becomes a FLOWS
 * batch (proto.h) named by (epoch, seq). Batches wait in a bounded spool —
 * memory first, then DIR/flows.spool — until the controller acknowledges
 * them, and a clean exit writes what is left to that file, so neither a
 * controller restart nor an agent restart loses a batch. Every batch in
 * memory is also appended to DIR/flows.journal when it is made, so a crash
 * (kill -9) loses only the window still open; the next start puts the
 * journal's batches first (one already acknowledged goes again, and the
 * controller, which stores each batch once, acknowledges it again). What
 * cannot be kept (a full spool) is counted and reported, never silently
 * dropped. A window also carries what the rules' kernel counters grew by
 * (hits). A batch the controller rejects (malformed: it would be rejected
 * again) leaves the spool for DIR/flows.quarantine, and what it carried is
 * counted as lost and logged. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "bulkhead/policy.h"
#include "bulkhead/proto.h"
#include "nflog.h"

#define FLOWS_SPOOL_FILE     "flows.spool"
#define FLOWS_JOURNAL_FILE   "flows.journal" /* the batches in memory, for a crash */
#define FLOWS_JOURNAL_SLACK  (1u << 20)      /* acknowledged bytes it may hold before a rewrite */
#define FLOWS_SPOOL_MEM_MAX  (8u << 20)  /* bytes of batches held in memory */
#define FLOWS_SPOOL_FILE_MAX (64u << 20) /* bytes of batches in the file */
#define FLOWS_QUARANTINE_FILE "flows.quarantine" /* batches the controller rejected */
#define FLOWS_QUARANTINE_MAX (16u << 20)	    /* bytes it may grow to */
#define FLOWS_WINDOW_MAX     PROTO_FLOWS_MAX /* distinct flows (or hits) in one window */
#define FLOWS_IN_FLIGHT      16          /* batches sent and not yet acknowledged */
#define FLOWS_RESEND_MS      5000        /* unacknowledged that long: send again */

struct flows;

/* state_dir may be NULL (memory only). epoch names this run's batches. */
struct flows *flows_new(const char *state_dir, uint64_t epoch);
/* Writes every unacknowledged batch to the spool file. */
void flows_free(struct flows *f);

/* One logged packet of endpoint, decided by rule (its id, or the chain's
 * fallback reason) of policy (NULL for a fallback). */
void flows_record(struct flows *f, const char *endpoint, const struct nflog_event *ev, const char *policy,
		  const char *rule, uint64_t now_ms);
/* Events of endpoint the kernel could not deliver since the last call. */
void flows_lost(struct flows *f, const char *endpoint, uint64_t enobufs, uint64_t gap);

/* What a rule of endpoint counted in the kernel since the last reading
 * (counters.h), reported with the window: rule is the bundle rule id or a
 * fallback reason, policy NULL for a fallback, verdict "allow", "deny" or
 * "audit" (a static string). */
void flows_hit(struct flows *f, const char *endpoint, enum direction dir, const char *rule, const char *policy,
	       const char *verdict, uint64_t packets, uint64_t bytes, uint64_t now_ms);

/* Closes the window when it is due (window_ms since it opened) or full;
 * force closes it now. A window with nothing in it makes no batch. */
void flows_tick(struct flows *f, uint64_t now_ms, unsigned window_ms, bool force);

/* Sends what is due: batches not in flight, and those unacknowledged for
 * FLOWS_RESEND_MS, at most FLOWS_IN_FLIGHT at a time. send() takes the
 * reference to body. */
typedef void (*flows_send_fn)(void *arg, json_t *body);
void flows_send(struct flows *f, uint64_t now_ms, flows_send_fn send, void *arg);
/* The controller stored batch (epoch, seq): forget it. */
void flows_acked(struct flows *f, uint64_t epoch, uint64_t seq);
/* The controller rejected batch (epoch, seq) for reason: it leaves the
 * spool for the quarantine file, counted and logged. */
void flows_rejected(struct flows *f, uint64_t epoch, uint64_t seq, const char *reason);
/* A new session (HELLO): everything unacknowledged goes again. */
void flows_resend_all(struct flows *f);

/* For status.json. New reference. */
json_t *flows_status(const struct flows *f);
