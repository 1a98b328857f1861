/* lib/metrics.c: the registry's conventions and its text exposition. */
#include <math.h>

#include "bulkhead/metrics.h"
#include "test.h"

static char *render(struct metrics *m)
{
	size_t len;
	char *text = metrics_render(m, &len);
	CHECK(strlen(text) == len);
	return text;
}

TEST(families_in_order_with_help_type_and_sorted_samples)
{
	struct metrics *m = metrics_new();
	struct metric *c =
	    metrics_add(m, METRIC_COUNTER, "bulkhead_flows_total", "Flows.\nSecond \\ line", "verdict");
	struct metric *g = metrics_add(m, METRIC_GAUGE, "bulkhead_revision", "The revision.", NULL);
	struct metric *two = metrics_add(m, METRIC_GAUGE, "bulkhead_build_info", "Build.", "version,daemon");
	CHECK(c && g && two);
	metric_add(c, 2, "deny");
	metric_add(c, 1, "audit");
	metric_add(c, 3, "deny");
	metric_set(g, 42);
	metric_set(two, 1, "0.1.0", "a \"quoted\"\nname\\");
	char *text = render(m);
	CHECK_STR(text, "# HELP bulkhead_flows_total Flows.\\nSecond \\\\ line\n"
			"# TYPE bulkhead_flows_total counter\n"
			"bulkhead_flows_total{verdict=\"audit\"} 1\n"
			"bulkhead_flows_total{verdict=\"deny\"} 5\n"
			"# HELP bulkhead_revision The revision.\n"
			"# TYPE bulkhead_revision gauge\n"
			"bulkhead_revision 42\n"
			"# HELP bulkhead_build_info Build.\n"
			"# TYPE bulkhead_build_info gauge\n"
			"bulkhead_build_info{version=\"0.1.0\",daemon=\"a \\\"quoted\\\"\\nname\\\\\"} 1\n");
	free(text);
	metrics_free(m);
}

TEST(a_family_without_labels_has_its_sample_from_the_start)
{
	struct metrics *m = metrics_new();
	metrics_add(m, METRIC_COUNTER, "bulkhead_x_total", "X.", NULL);
	metrics_add(m, METRIC_GAUGE, "bulkhead_y", "Y.", "node");
	char *text = render(m);
	CHECK_STR(text, "# HELP bulkhead_x_total X.\n# TYPE bulkhead_x_total counter\nbulkhead_x_total 0\n"
			"# HELP bulkhead_y Y.\n# TYPE bulkhead_y gauge\n");
	free(text);
	metrics_free(m);
}

TEST(names_that_break_the_conventions_are_refused)
{
	struct metrics *m = metrics_new();
	CHECK(!metrics_add(m, METRIC_COUNTER, "bulkhead_flows", "no _total", NULL));
	CHECK(!metrics_add(m, METRIC_GAUGE, "bulkhead_flows_total", "a gauge named like a counter", NULL));
	CHECK(!metrics_add(m, METRIC_GAUGE, "flows", "no prefix", NULL));
	CHECK(!metrics_add(m, METRIC_GAUGE, "bulkhead_bad-name", "a dash", NULL));
	CHECK(!metrics_add(m, METRIC_GAUGE, "bulkhead_x", "label", "bad-label"));
	CHECK(!metrics_add(m, METRIC_GAUGE, "bulkhead_x", "label", "__reserved"));
	CHECK(!metrics_add(m, METRIC_GAUGE, "bulkhead_x", "label", "le"));
	CHECK(!metrics_add(m, METRIC_GAUGE, "bulkhead_x", "label", "a,b,c"));
	CHECK(!metrics_add(m, METRIC_GAUGE, "bulkhead_x", "label", "a,a"));
	CHECK(!metrics_add(m, METRIC_GAUGE, "bulkhead_x", "label", ",x"));
	CHECK(metrics_add(m, METRIC_GAUGE, "bulkhead_x", "ok", "a,b"));
	CHECK(!metrics_add(m, METRIC_GAUGE, "bulkhead_x", "taken", NULL));
	CHECK(!metrics_add_histogram(m, "bulkhead_h_count", "a series suffix", (double[]){1}, 1));
	CHECK(!metrics_add_histogram(m, "bulkhead_h_seconds", "not ascending", (double[]){1, 1}, 2));
	CHECK(
	    !metrics_add(m, METRIC_HISTOGRAM, "bulkhead_h_seconds", "histograms have their own call", NULL));
	metrics_free(m);
}

TEST(histogram_buckets_are_cumulative_with_inf_sum_and_count)
{
	struct metrics *m = metrics_new();
	struct metric *h = metrics_add_histogram(m, "bulkhead_apply_duration_seconds", "Apply.",
						 (double[]){0.01, 0.1, 1}, 3);
	metric_observe(h, 0.005);
	metric_observe(h, 0.01); /* le: at the bound counts in it */
	metric_observe(h, 0.5);
	metric_observe(h, 7);
	metric_observe(h, NAN); /* ignored */
	char *text = render(m);
	CHECK_STR(text, "# HELP bulkhead_apply_duration_seconds Apply.\n"
			"# TYPE bulkhead_apply_duration_seconds histogram\n"
			"bulkhead_apply_duration_seconds_bucket{le=\"0.01\"} 2\n"
			"bulkhead_apply_duration_seconds_bucket{le=\"0.10000000000000001\"} 2\n"
			"bulkhead_apply_duration_seconds_bucket{le=\"1\"} 3\n"
			"bulkhead_apply_duration_seconds_bucket{le=\"+Inf\"} 4\n"
			"bulkhead_apply_duration_seconds_sum 7.5149999999999997\n"
			"bulkhead_apply_duration_seconds_count 4\n");
	free(text);
	metrics_free(m);
}

static void collect(void *data, struct metrics *m)
{
	int *calls = data;
	(*calls)++;
}

struct nodes_fixture {
	struct metric *up;
	const char *const *nodes;
};

static void collect_nodes(void *data, struct metrics *m)
{
	struct nodes_fixture *x = data;
	metric_clear(x->up);
	for (size_t i = 0; x->nodes[i]; i++)
		metric_set(x->up, 1, x->nodes[i]);
}

TEST(collectors_run_before_each_rendering_and_clear_drops_what_left)
{
	struct metrics *m = metrics_new();
	int calls = 0;
	metrics_on_collect(m, collect, &calls);
	static const char *const three[] = {"n3", "n1", "n2", NULL}, *const one[] = {"n2", NULL};
	struct nodes_fixture x = {metrics_add(m, METRIC_GAUGE, "bulkhead_node_up", "Up.", "node"), three};
	metrics_on_collect(m, collect_nodes, &x);
	char *text = render(m);
	CHECK(calls == 1);
	CHECK(strstr(text, "bulkhead_node_up{node=\"n1\"} 1\nbulkhead_node_up{node=\"n2\"} 1\n"
			   "bulkhead_node_up{node=\"n3\"} 1\n"));
	free(text);
	x.nodes = one;
	text = render(m);
	CHECK(calls == 2);
	CHECK(!strstr(text, "n1") && !strstr(text, "n3") &&
	      strstr(text, "bulkhead_node_up{node=\"n2\"} 1\n"));
	free(text);
	metrics_free(m);
}

TEST(values_print_as_the_format_reads_them)
{
	struct metrics *m = metrics_new();
	struct metric *g = metrics_add(m, METRIC_GAUGE, "bulkhead_v", "V.", "k");
	metric_set(g, 9007199254740991.0, "a");
	metric_set(g, 0.25, "b");
	metric_set(g, -3, "c");
	metric_set(g, INFINITY, "d");
	metric_set(g, NAN, "e");
	metric_set(NULL, 1); /* nothing */
	char *text = render(m);
	CHECK(strstr(
	    text, "bulkhead_v{k=\"a\"} 9007199254740991\nbulkhead_v{k=\"b\"} 0.25\nbulkhead_v{k=\"c\"} -3\n"
		  "bulkhead_v{k=\"d\"} +Inf\nbulkhead_v{k=\"e\"} NaN\n"));
	free(text);
	metrics_free(m);
}

int main(void)
{
	return test_main();
}
