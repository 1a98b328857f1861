/* The agent's metrics (see telemetry.h). */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bulkhead/log.h"
#include "telemetry.h"

static const char *const states[] = {"enforced", "pending", "quarantined", "failing", "absent"};

/* Seconds: a set delta takes milliseconds, a large table seconds. */
static const double apply_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

struct telemetry {
	struct metrics *m;
	struct agent *a;
	struct metric *revision, *rules, *endpoints, *apply_failures, *repairs, *packets, *lost,
	    *spool_batches, *spool_bytes, *connected, *rejected;
};

const char *telemetry_endpoint_state(json_t *ep, const char *bundle)
{
	const char *applied = json_string_value(json_object_get(ep, "applied"));
	if (!json_is_true(json_object_get(ep, "present")))
		return "absent";
	if (json_is_true(json_object_get(ep, "quarantined")))
		return "quarantined";
	if (json_string_value(json_object_get(ep, "error")))
		return "failing";
	if (bundle && applied && strcmp(applied, bundle) == 0)
		return "enforced";
	return "pending";
}

static double num(json_t *o, const char *key)
{
	return (double)json_integer_value(json_object_get(o, key));
}

static void collect(void *data, struct metrics *m)
{
	struct telemetry *t = data;
	json_t *f = agent_facts(t->a);
	const char *bundle = json_string_value(json_object_get(f, "bundle"));
	metric_set(t->revision, num(f, "revision"));
	metric_set(t->rules, num(f, "rules"));
	metric_set(t->apply_failures, num(f, "apply_failures"));
	metric_set(t->repairs, num(f, "drift_repairs"));
	metric_set(t->rejected, num(f, "bundles_rejected"));
	double by_state[BH_ARRAY_SIZE(states)] = {0};
	size_t i;
	json_t *ep;
	json_array_foreach (json_object_get(f, "endpoints"), i, ep) {
		const char *s = telemetry_endpoint_state(ep, bundle);
		for (size_t k = 0; k < BH_ARRAY_SIZE(states); k++)
			if (strcmp(states[k], s) == 0)
				by_state[k]++;
	}
	for (size_t k = 0; k < BH_ARRAY_SIZE(states); k++)
		metric_set(t->endpoints, by_state[k], states[k]);
	json_t *c = json_object_get(f, "controller");
	metric_set(t->connected, json_is_true(json_object_get(c, "connected")) ? 1 : 0);
	json_t *fl = json_object_get(f, "flows"), *lost = json_object_get(fl, "lost");
	metric_set(t->packets, num(fl, "packets_denied"), "deny");
	metric_set(t->packets, num(fl, "packets_audited"), "audit");
	metric_set(t->packets, num(fl, "packets_allowed"), "allow");
	metric_set(t->lost, num(lost, "enobufs"), "enobufs");
	metric_set(t->lost, num(lost, "gap"), "gap");
	metric_set(t->lost, num(lost, "spool"), "spool");
	metric_set(t->spool_batches, num(fl, "spooled_in_memory") + num(fl, "spooled_in_file"));
	metric_set(t->spool_bytes, num(fl, "spool_bytes"));
	json_decref(f);
}

static struct metric *must(struct metric *f)
{
	if (!f)
		abort(); /* a name against the conventions: a programming error */
	return f;
}

struct telemetry *telemetry_new(struct agent *a)
{
	struct telemetry *t = xcalloc(1, sizeof(*t));
	struct metrics *m = t->m = metrics_new();
	t->a = a;
	struct metric *build = must(metrics_add(m, METRIC_GAUGE, "bulkhead_build_info",
						"The daemon and its version (always 1).", "daemon,version"));
	metric_set(build, 1, "agent", BULKHEAD_VERSION);
	t->revision =
	    must(metrics_add(m, METRIC_GAUGE, "bulkhead_bundle_revision",
			     "The controller's policy revision of the bundle in force (0: none).", NULL));
	t->rules = must(metrics_add(m, METRIC_GAUGE, "bulkhead_rules",
				    "Rules in the bundle in force, every endpoint's chains.", NULL));
	t->endpoints =
	    must(metrics_add(m, METRIC_GAUGE, "bulkhead_endpoints",
			     "Endpoints by state: enforced (the bundle in force), pending, quarantined, "
			     "failing (an error), absent (no namespace).",
			     "state"));
	struct metric *h = must(metrics_add_histogram(m, "bulkhead_apply_duration_seconds",
						      "Time to bring one endpoint's table to a bundle.",
						      apply_bounds, BH_ARRAY_SIZE(apply_bounds)));
	agent_measure_applies(a, h);
	t->apply_failures = must(metrics_add(m, METRIC_COUNTER, "bulkhead_apply_failures_total",
					     "Table updates that failed (retried with backoff).", NULL));
	t->repairs =
	    must(metrics_add(m, METRIC_COUNTER, "bulkhead_drift_repairs_total",
			     "Tables found changed or removed by someone else, and put back.", NULL));
	t->rejected = must(metrics_add(m, METRIC_COUNTER, "bulkhead_bundles_rejected_total",
				       "Bundles refused (not for this node, undecodable, older).", NULL));
	t->packets =
	    must(metrics_add(m, METRIC_COUNTER, "bulkhead_flow_packets_total",
			     "Logged packets read from the endpoints' NFLOG, by verdict.", "verdict"));
	t->lost =
	    must(metrics_add(m, METRIC_COUNTER, "bulkhead_flow_events_lost_total",
			     "Logged packets lost: receive buffer overruns (enobufs), sequence gaps (gap), a "
			     "full spool (spool).",
			     "reason"));
	t->spool_batches = must(metrics_add(m, METRIC_GAUGE, "bulkhead_flow_spool_batches",
					    "Flow batches not yet acknowledged by the controller.", NULL));
	t->spool_bytes = must(metrics_add(m, METRIC_GAUGE, "bulkhead_flow_spool_bytes",
					  "Bytes of the flow spool's files.", NULL));
	t->connected = must(metrics_add(m, METRIC_GAUGE, "bulkhead_controller_connected",
					"1 while the controller answers, else 0.", NULL));
	metrics_on_collect(m, collect, t);
	return t;
}

void telemetry_free(struct telemetry *t)
{
	if (!t)
		return;
	agent_measure_applies(t->a, NULL);
	metrics_free(t->m);
	free(t);
}

struct metrics *telemetry_metrics(struct telemetry *t)
{
	return t->m;
}
