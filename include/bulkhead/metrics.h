/* metrics: the one small registry of Prometheus metrics both daemons
 * use. A family (name, help, type, at most METRICS_LABELS_MAX label
 * names) is registered once; its samples are counted as things happen
 * (metric_add, metric_observe) or set from the daemon's state when a
 * scrape comes (a collector: metrics_on_collect). metrics_render() writes
 * the text exposition format, version 0.0.4: families in the order they
 * were registered, each with its HELP and TYPE lines, samples sorted by
 * their label values.
 *
 * Conventions (README: Metrics), checked at registration: names match
 * [a-zA-Z_:][a-zA-Z0-9_:]*, start with "bulkhead_", and a counter's ends
 * with "_total"; label names match [a-zA-Z_][a-zA-Z0-9_]* and do not start
 * with "__" ("le" is the histograms'). Label values are the daemon's
 * bounded words and names (a verdict, a node name), never addresses.
 *
 * Pure: no I/O, no clock, no lock (one thread: the loop's). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define METRICS_LABELS_MAX 2

enum metric_type {
	METRIC_COUNTER,
	METRIC_GAUGE,
	METRIC_HISTOGRAM,
};

struct metrics;
struct metric; /* one family, owned by its registry */

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m); /* accepts NULL */

/* Registers a counter or a gauge. labels: NULL, or the label names
 * separated by commas ("node", "version,daemon"). NULL when a name breaks
 * the conventions above or is taken (a programming error: the daemons
 * abort on it). */
struct metric *metrics_add(struct metrics *m, enum metric_type type, const char *name, const char *help,
			   const char *labels);
/* Registers a histogram without labels: bounds are the buckets' upper
 * bounds, ascending (+Inf is added). NULL as above, or when bounds are not
 * ascending. */
struct metric *metrics_add_histogram(struct metrics *m, const char *name, const char *help,
				     const double *bounds, size_t n_bounds);

/* The sample with these label values (as many as the family has label
 * names, after v) is set to v / grows by v. A family without labels has
 * its one sample from the start (0). f NULL: nothing. */
void metric_set(struct metric *f, double v, ...);
void metric_add(struct metric *f, double v, ...);
/* One observation of a histogram. f NULL: nothing. */
void metric_observe(struct metric *f, double v);
/* Forgets every sample of a family with labels (a collector sets those
 * that exist now: a node forgotten leaves the output). */
void metric_clear(struct metric *f);

/* fn(data, m) runs before every rendering, in the order added. */
void metrics_on_collect(struct metrics *m, void (*fn)(void *data, struct metrics *m), void *data);

/* Runs the collectors, then writes every family: malloc()ed, NUL-ended,
 * its length in *len. */
char *metrics_render(struct metrics *m, size_t *len);

/* The Content-Type of what metrics_render() writes. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
