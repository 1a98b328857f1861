/* flows: the agent's denied-flow reports (DESIGN §3). Logged packets are
 * aggregated per window by (endpoint, direction, src, dst, protocol, port
 * or ICMP type/code, verdict, rule); each closed window becomes one or more
 * FLOWS batches (proto.h) of at most FLOWS_BATCH_MAX entries and
 * FLOWS_BATCH_BYTES, each named by its own (epoch, seq). Batches wait in a
 * bounded spool (spool.h: append-only segments in DIR/flows.d, the first
 * of them also in memory) until the controller acknowledges them. Every
 * batch is on disk as it is made, so a crash (kill -9) loses only the
 * window still open, and a clean exit nothing; the next start sends what
 * is left first, in the order it was made (one already acknowledged may go
 * again, and the controller, which stores each batch once, acknowledges it
 * again). What cannot be kept (a full spool) is counted and reported, never
 * silently dropped. A window also carries what the rules' kernel counters
 * grew by (hits). A batch the controller rejects (malformed: it would be
 * rejected again) leaves the spool for DIR/flows.quarantine, and what it
 * carried is counted as lost and logged. The files of agents before the
 * segments (DIR/flows.journal, DIR/flows.spool) are taken over at start. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "bulkhead/policy.h"
#include "bulkhead/proto.h"
#include "nflog.h"

#define FLOWS_OLD_SPOOL_FILE   "flows.spool"	  /* before the segments: taken over at start */
#define FLOWS_OLD_JOURNAL_FILE "flows.journal"	  /* likewise, and older than the spool file */
#define FLOWS_QUARANTINE_FILE  "flows.quarantine" /* batches the controller rejected */
#define FLOWS_QUARANTINE_MAX   (16u << 20)	  /* bytes it may grow to */
#define FLOWS_WINDOW_MAX       65536		  /* distinct flows (or hits) one window aggregates */
/* One batch: a window past these is sent as several, so that no message
 * holds the controller long (half the wire's limits, proto.h). */
#define FLOWS_BATCH_MAX	  4096	     /* entries (flows, losses and hits) */
#define FLOWS_BATCH_BYTES (1u << 20) /* bytes of its body */
#define FLOWS_IN_FLIGHT	  16	     /* batches sent and not yet acknowledged */
#define FLOWS_RESEND_MS	  5000	     /* unacknowledged that long: send again */
#define FLOWS_SEND_BYTES  (1u << 20) /* bytes of batches one flows_send() decodes (one batch at least) */

struct flows;

/* state_dir may be NULL (memory only). epoch names this run's batches. */
struct flows *flows_new(const char *state_dir, uint64_t epoch);
/* At a clean exit, after the last flows_tick(force): what the disk had
 * refused is written if it can be, and everything is synced. */
void flows_stop(struct flows *f);
/* Frees (accepts NULL); calls flows_stop() first when it was not. */
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
void flows_hit(struct flows *f, const char *endpoint, enum direction dir, const char *rule,
	       const char *policy, const char *verdict, uint64_t packets, uint64_t bytes, uint64_t now_ms);

/* Closes the window when it is due (window_ms since it opened) or full;
 * force closes it now. A window with nothing in it makes no batch. */
void flows_tick(struct flows *f, uint64_t now_ms, unsigned window_ms, bool force);

/* Sends what is due: batches not in flight, and those unacknowledged for
 * FLOWS_RESEND_MS, at most FLOWS_IN_FLIGHT at a time (and FLOWS_SEND_BYTES
 * a call). send() takes the reference to body. Once per flow tick: it also
 * reads waiting batches back from disk and starts the writeback of new
 * ones (spool.h: nothing waits for the disk). */
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
