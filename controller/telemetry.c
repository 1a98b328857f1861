/* The controller's metrics (see telemetry.h). */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bulkhead/log.h"
#include "telemetry.h"

struct telemetry {
	struct metrics *m;
	struct compiler *compiler;
	struct sessions *sessions;
	struct metric *revision, *rules, *groups, *endpoints, *nodes, *compilations;
	struct metric *packets, *lost, *dropped, *batches, *malformed, *refused, *bundles, *acks;
};

/* The sessions' counters (admin.h status "counters") behind each labelled
 * sample: the JSON key, then the label value. */
static const struct {
	const char *key, *label;
} batch_results[] = {
    {"flow_batches_stored", "stored"},	   {"flow_batches_resent", "resent"},
    {"flow_batches_not_stored", "failed"}, {"flow_batches_expired", "expired"},
    {"flow_batches_rejected", "rejected"},
};

static double counter(json_t *c, const char *key)
{
	return (double)json_integer_value(json_object_get(c, key));
}

static size_t rule_count(const struct policy_doc *doc)
{
	size_t n = 0;
	for (size_t i = 0; doc && i < doc->n_policies; i++)
		for (int d = 0; d < DIR_COUNT; d++)
			n += doc->policies[i].rules[d].n;
	return n;
}

static void collect(void *data, struct metrics *m)
{
	struct telemetry *t = data;
	const struct policy_doc *doc = compiler_policy(t->compiler);
	const struct inventory *inv = compiler_inventory(t->compiler);
	metric_set(t->revision, (double)compiler_revision(t->compiler));
	metric_set(t->rules, (double)rule_count(doc));
	metric_set(t->groups, doc ? (double)doc->n_groups : 0);
	metric_set(t->endpoints, inv ? (double)inv->n : 0);
	metric_set(t->compilations, (double)compiler_compilations(t->compiler));
	json_t *nodes = sessions_status_nodes(t->sessions);
	double connected = 0, down = 0, in_sync = 0;
	size_t i;
	json_t *n;
	json_array_foreach (nodes, i, n) {
		if (!json_is_true(json_object_get(n, "connected")))
			down++;
		else if (json_is_true(json_object_get(n, "up_to_date")))
			in_sync++;
		else
			connected++;
	}
	json_decref(nodes);
	metric_set(t->nodes, in_sync, "up_to_date");
	metric_set(t->nodes, connected, "behind");
	metric_set(t->nodes, down, "down");
	json_t *c = sessions_counters(t->sessions);
	metric_set(t->packets, counter(c, "flow_packets_denied"), "deny");
	metric_set(t->packets, counter(c, "flow_packets_audited"), "audit");
	metric_set(t->packets, counter(c, "flow_packets_allowed"), "allow");
	metric_set(t->lost, counter(c, "flow_events_lost"));
	metric_set(t->dropped, counter(c, "flow_records_dropped"));
	for (size_t k = 0; k < BH_ARRAY_SIZE(batch_results); k++)
		metric_set(t->batches, counter(c, batch_results[k].key), batch_results[k].label);
	metric_set(t->malformed, counter(c, "messages_malformed"));
	metric_set(t->refused, counter(c, "agents_refused") + counter(c, "nodes_refused"));
	metric_set(t->bundles, counter(c, "bundles_sent"), "full");
	metric_set(t->bundles, counter(c, "deltas_sent"), "delta");
	metric_set(t->acks, counter(c, "acks"));
	json_decref(c);
}

static struct metric *must(struct metric *f)
{
	if (!f)
		abort(); /* a name against the conventions: a programming error */
	return f;
}

void telemetry_free(struct telemetry *t)
{
	if (!t)
		return;
	metrics_free(t->m);
	free(t);
}

struct metrics *telemetry_metrics(struct telemetry *t)
{
	return t->m;
}

struct telemetry *telemetry_new(struct compiler *c, struct sessions *ss)
{
	struct metrics *m = metrics_new();
	struct telemetry *t = xcalloc(1, sizeof(*t));
	t->m = m;
	t->compiler = c;
	t->sessions = ss;
	struct metric *build = must(metrics_add(m, METRIC_GAUGE, "bulkhead_build_info",
						"The daemon and its version (always 1).", "daemon,version"));
	metric_set(build, 1, "controller", BULKHEAD_VERSION);
	t->revision = must(metrics_add(m, METRIC_GAUGE, "bulkhead_policy_revision",
				       "The policy revision in force (0: none yet).", NULL));
	t->rules = must(metrics_add(m, METRIC_GAUGE, "bulkhead_policy_rules",
				    "Rules in the policy in force, both directions of every policy.", NULL));
	t->groups = must(
	    metrics_add(m, METRIC_GAUGE, "bulkhead_policy_groups", "Groups in the policy in force.", NULL));
	t->endpoints = must(metrics_add(m, METRIC_GAUGE, "bulkhead_inventory_endpoints",
					"Endpoints the agents reported, every node's.", NULL));
	t->nodes = must(
	    metrics_add(m, METRIC_GAUGE, "bulkhead_nodes",
			"Known nodes by state: up_to_date (connected, holding the newest bundle), behind "
			"(connected, not yet or with errors), down.",
			"state"));
	t->compilations = must(metrics_add(m, METRIC_COUNTER, "bulkhead_compilations_total",
					   "Bundles compiled for a node.", NULL));
	t->packets =
	    must(metrics_add(m, METRIC_COUNTER, "bulkhead_flow_packets_total",
			     "Logged packets stored from the agents' flow reports, by verdict.", "verdict"));
	t->lost = must(metrics_add(
	    m, METRIC_COUNTER, "bulkhead_flow_events_lost_total",
	    "Logged packets the agents reported lost (receive buffer, sequence gaps, spool).", NULL));
	t->dropped = must(
	    metrics_add(m, METRIC_COUNTER, "bulkhead_flow_records_dropped_total",
			"Flow and hit records not stored (rate, quota, expired, foreign, rejected).", NULL));
	t->batches = must(metrics_add(m, METRIC_COUNTER, "bulkhead_flow_batches_total",
				      "Flow batches received, by what became of them.", "result"));
	t->malformed = must(metrics_add(m, METRIC_COUNTER, "bulkhead_agent_messages_malformed_total",
					"Agent messages dropped as malformed.", NULL));
	t->refused = must(metrics_add(m, METRIC_COUNTER, "bulkhead_agents_refused_total",
				      "Agent HELLOs refused (keys, names, the node bound).", NULL));
	t->bundles = must(metrics_add(m, METRIC_COUNTER, "bulkhead_bundles_sent_total",
				      "Bundles sent to agents, whole (full) or as a set delta.", "kind"));
	t->acks =
	    must(metrics_add(m, METRIC_COUNTER, "bulkhead_acks_total", "ACKs received from agents.", NULL));
	metrics_on_collect(m, collect, t);
	return t;
}
