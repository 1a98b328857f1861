/* endpoint: one endpoint's life in the agent: its namespace opened
 * through the dataplane (and refused when another endpoint holds it), its
 * table brought to the bundle in force (an element delta, else the whole
 * table), put back when someone changes it, and its backoff (backoff.h)
 * when it keeps failing or keeps being changed.
 *
 * The core (agent.c) owns the endpoint table and the bundle in force and
 * shares them with every endpoint through struct endpoint_env; status.c
 * and hits.c read an endpoint's fields. Nothing else touches them. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "backoff.h"
#include "bundle-ref.h"
#include "counters.h"
#include "dataplane.h"
#include "netns.h"
#include "nft.h"
#include "session.h"
#include "source.h"

struct status;
struct endpoint_state;

/* What the core shares with its endpoints. Owned by the core. */
struct endpoint_env {
	struct dataplane *dp;
	struct session *session; /* NULL without a controller: no flows, no counters */
	struct status *status;
	uint64_t (*now_ms)(void);	  /* monotonic */
	struct endpoint_state *endpoints; /* the table, in name order */
	struct bundle_ref *current;	  /* the bundle to enforce; NULL: none */
	/* current is the cached bundle, which no controller or bundle file has
	 * confirmed since the start: it does not replace a newer table. */
	bool current_cached;
	uint64_t max_serial;	/* the largest bundle serial seen or given */
	json_t *saved_counters; /* hits.c: a clean exit's readings, by endpoint */
	bool endpoints_dirty;	/* the controller has not heard the latest list */
	bool ack_pending;	/* the last ACK said not ok, or an endpoint changed: ACK again */
	/* An endpoint waits for its backoff: the core must come back to it. */
	void (*wake)(void *core);
	void *core;
	/* conntrack.c: the set relations of the last update, shared by its endpoints */
	struct conntrack_memo *ct_memo;
};

struct endpoint_state {
	struct endpoint_env *env;
	const struct source *source; /* the one that reported it */
	char *name, *netns;
	bool present;		   /* namespace open and attached */
	struct dataplane_ep *dp;   /* while present */
	struct netns_id id;	   /* while present */
	struct counters *counters; /* while present, with a session: rule hit counts */
	bool counters_failed_logged;
	struct bundle_ref *applied; /* what its table holds, NULL: nothing known */
	bool force_full;	    /* the kernel's table may differ: replace it whole */
	bool has_tag;		    /* tag: which bundle the kernel's table says it holds */
	struct nft_tag tag;
	bool held;	     /* its table is newer than the cached bundle in force: left alone */
	int netns_fd;	     /* the OCI hook's namespace, opened from this until present; -1 */
	bool refused_shared; /* refused: another endpoint holds its namespace */
	bool not_in_bundle_logged;
	char *error;
	json_t *labels;	   /* from the source: reported to the controller */
	json_t *ports;	   /* named ports from the source, {"http": "tcp/8080"} */
	json_t *src_addrs; /* the source's addresses: used where the dataplane reads none */
	/* The source wants the quarantine table until the bundle in force
	 * has one for it (source_endpoint.quarantine). */
	bool quarantine;
	struct bundle_ref *quarantine_ref; /* its quarantine bundle, made when first needed */
	struct backoff backoff;
	unsigned tampering, full_updates, delta_updates, delta_fallbacks, failures;
	unsigned events_lost, checks; /* event overflows; tables read back to compare */
	struct {		      /* conntrack.c: live connections the bundle no longer allows */
		unsigned dumps;	      /* the namespace's connections judged */
		unsigned skipped;     /* updates that only loosened: nothing to judge */
		unsigned failures;    /* dumps or deletes that failed (retried) */
		uint64_t entries;     /* connections judged, over every dump */
		uint64_t cut;	      /* deleted */
		uint64_t audit;	      /* kept: only an audit policy would cut them */
		uint64_t malformed;   /* dump messages skipped */
		uint64_t last_us;     /* the last dump and delete took */
		bool retry;	      /* the last one failed: judge everything again */
	} ct;
	struct endpoint_state *next;
};

/* A new endpoint of source (not in the table yet, not open). */
struct endpoint_state *endpoint_new(struct endpoint_env *env, const struct source *source, const char *name);
/* Closes and frees. Accepts NULL. */
void endpoint_free(struct endpoint_state *e);

/* Takes what the source says now: a new namespace path closes the old
 * one (and ends any backoff: it is a new situation). */
void endpoint_set(struct endpoint_state *e, const struct source_endpoint *se);

/* Its namespace is fd (borrowed; the OCI hook's): the next open adopts a
 * copy of it instead of opening the path. */
void endpoint_take_fd(struct endpoint_state *e, int fd);
/* To be quarantined until its bundle entry is in place (as
 * source_endpoint.quarantine): the quarantine table goes in now (opening
 * the namespace first) unless its table is there. 0 when either is in
 * place; a negative errno with why. */
int endpoint_isolate(struct endpoint_state *e, char *why, size_t whylen);

/* Opens its namespace unless a backoff holds it back; true when present. */
bool endpoint_open(struct endpoint_state *e);
/* Closes its namespace (its table stays); what it held is forgotten. */
void endpoint_close(struct endpoint_state *e);
/* Closes it when its path is gone or names another namespace now. */
void endpoint_check_namespace(struct endpoint_state *e);

/* Brings its table to the bundle in force, if it is not there and no
 * backoff holds it back. */
void endpoint_sync(struct endpoint_state *e);
/* A new bundle is in force: a failure's backoff ends, and a tampering
 * streak lets the new table go at once. */
void endpoint_bundle_changed(struct endpoint_state *e);
/* Something that kept it from opening may have changed (the mount table,
 * a namespace released): try again at once, the streak kept. */
void endpoint_retry_open(struct endpoint_state *e);
/* Periodic: ends a tampering streak that has stayed quiet. */
void endpoint_tick(struct endpoint_state *e);

/* Work held back by a backoff is waiting. */
bool endpoint_waiting(const struct endpoint_state *e);
/* Its table holds the bundle in force (and is not known to differ). */
bool endpoint_enforced(const struct endpoint_state *e);
/* In the bundle in force, and not enforced. */
bool endpoint_behind(const struct endpoint_state *e);

/* {"name", "applied", "error"} for an ACK (NULL when the bundle in force
 * does not name it); *ok false when not enforced. New reference. */
json_t *endpoint_ack_json(const struct endpoint_state *e, bool *ok);
/* Its table is the quarantine table (quarantine.h). */
bool endpoint_quarantined(const struct endpoint_state *e);

/* {"name", "netns", "labels", "addresses"} for HELLO and ENDPOINTS, and
 * "ports" when it has named ports. */
json_t *endpoint_report_json(const struct endpoint_state *e);
/* The endpoint's object in status.json. */
json_t *endpoint_status_json(const struct endpoint_state *e);

/* The error an ACK shows for an endpoint whose table keeps being changed
 * while its repair backs off. */
#define ENDPOINT_TAMPERING_ERROR                                                                             \
	"table inet " NFT_TABLE_NAME " keeps being changed by another process: putting it back backs off "   \
	"(waits of up to 30 s)"
