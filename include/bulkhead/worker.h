/* worker: one thread beside a daemon's event loop for work that may take
 * longer than the loop may wait (a flow query over a large table, parsing
 * a large policy, copying SQLite's WAL into its database). Jobs run one
 * at a time in the order given; each job's done() is called back on the
 * loop's thread when it has run. A job is a struct the caller embeds in
 * its own (container_of), and owns: done() frees it. */
#pragma once

#include <stdbool.h>

#include "bulkhead/loop.h"

struct worker_job {
	/* On the worker's thread: the work. It must not touch what the
	 * loop's thread uses meanwhile. */
	void (*run)(struct worker_job *j);
	/* On the loop's thread, after run (cancelled false), or instead of it
	 * when the worker stops first (cancelled true): the result, and
	 * frees the job. */
	void (*done)(struct worker_job *j, bool cancelled);
	/* Optional, on the loop's thread while run is running, when the
	 * worker is stopped: make run return soon. */
	void (*cancel)(struct worker_job *j);
	struct worker_job *next; /* the worker's */
};

struct worker;

/* Starts the thread; its results come back through an fd on l. NULL with
 * errno. */
struct worker *worker_new(struct loop *l);
/* Cancels the job running (its cancel()) and waits for it; every job not
 * delivered yet gets done(j, true). Accepts NULL. */
void worker_free(struct worker *w);

/* Queues j (which must have run and done). */
void worker_submit(struct worker *w, struct worker_job *j);