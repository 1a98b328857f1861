/* web: the controller's HTTP side (--http ADDR:PORT) on lib/httpd.c — the
 * blocked-flow page (static assets built into the binary: web-assets.c,
 * made from controller/web/ at build time), its JSON API under /api/, and
 * /metrics (telemetry.h).
 *
 *   GET /api/flows   ?since=1h&node=&group=&src_group=&dst_group=&verdict=
 *                     &port=&limit=200  → the store's report rows, newest first
 *   GET /api/groups  ?since=&node=&verdict=&port=  → groupmap.h's map
 *   GET /api/hits    ?since=&node=&verdict=  → packets per deciding rule
 *   GET /api/nodes   → {"revision", "nodes": [admin.h NODE...], "time"}
 *
 * Every answer is {"ok": true, ...} or {"ok": false, "error"} with 400
 * (a bad parameter, named), 404, 503 (the query ran past --flow-query-ms).
 * Flow queries run on the worker given, on a read-only connection of
 * their own, never in the loop; the rest is read from the loop's state at
 * once. Nothing of the request is trusted: each parameter is checked
 * (length, form) before it reaches the store, where it is a bound value. */
#pragma once

#include <stdint.h>

#include "bulkhead/loop.h"
#include "bulkhead/metrics.h"
#include "bulkhead/worker.h"
#include "compiler.h"
#include "sessions.h"
#include "store.h"

struct web_options {
	const char *listen;    /* "127.0.0.1:7780" */
	const char *token;     /* NULL: none (a loopback address only) */
	int64_t flow_query_ms; /* 0: no limit */
	struct worker *worker; /* the flow queries' thread; freed before web_free() */
};

struct web;

/* Binds (httpd.h's rules) and joins loop l. Borrows everything; m is
 * rendered on /metrics. NULL with *err (malloc()ed). */
struct web *web_new(struct loop *l, const struct web_options *o, struct store *s, struct compiler *c,
		    struct sessions *ss, struct metrics *m, char **err);
void web_free(struct web *w); /* accepts NULL */
uint16_t web_port(const struct web *w);

/* A port filter as the page and the API take it: "5432" (any protocol),
 * "tcp/5432", "tcp/8000-8100", "udp", "icmp/8", "icmp/8/0". 0, or -EINVAL.
 * p->proto points into a static name. Pure. */
int web_port_parse(const char *s, struct flow_port *p);

/* The assets (web-assets.c, generated). */
struct web_asset {
	const char *path, *type;
	const unsigned char *data;
	size_t len;
};
extern const struct web_asset web_assets[];
extern const size_t web_n_assets;
