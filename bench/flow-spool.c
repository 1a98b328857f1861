/* flow-spool: how long one flows_* call (agent/flows.h) holds the agent's
 * loop while a full spool backlog drains. Fills the spool with windows of
 * WINDOW distinct flows until it drops (memory and disk full: the 64 MiB
 * backlog), optionally restarts (a clean stop and a start over that
 * backlog; the controller away meanwhile: batches sent, never answered),
 * then drains it as the agent does: a tick every 100 ms of
 * simulated time with a little live traffic, flows_tick, flows_send, every
 * batch sent acknowledged at once. Prints each call's count, median, p99
 * and maximum wall time. Uses flows.h alone, so that it builds against
 * older trees too (bench/flow-spool.sh BASELINE=DIR).
 *
 *   flow-spool DIR [WINDOW [restart]]
 *
 * DIR: an empty directory on the disk to measure (the agent's state dir). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "flows.h"

static double clock_ms(clockid_t id)
{
	struct timespec t;
	clock_gettime(id, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* Wall time (what the loop waits) and this thread's CPU time (the same
 * less the waits: disk, and other programs on a busy machine). */
static double wall0, cpu0;
static void start_call(void)
{
	wall0 = clock_ms(CLOCK_MONOTONIC);
	cpu0 = clock_ms(CLOCK_THREAD_CPUTIME_ID);
}

struct timing {
	const char *name;
	double *v;
	size_t n, cap;
	double cpu_max;
};

static void timing_add(struct timing *t)
{
	double wall = clock_ms(CLOCK_MONOTONIC) - wall0, cpu = clock_ms(CLOCK_THREAD_CPUTIME_ID) - cpu0;
	if (t->n == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 1024;
		t->v = realloc(t->v, t->cap * sizeof(*t->v));
		if (!t->v)
			abort();
	}
	t->v[t->n++] = wall;
	if (cpu > t->cpu_max)
		t->cpu_max = cpu;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void timing_print(struct timing *t)
{
	if (!t->n) {
		printf("%-24s %8s\n", t->name, "-");
		return;
	}
	qsort(t->v, t->n, sizeof(*t->v), cmp_double);
	printf("%-24s %8zu %10.3f %10.3f %10.3f %10.3f\n", t->name, t->n, t->v[t->n / 2],
	       t->v[(t->n * 99) / 100], t->v[t->n - 1], t->cpu_max);
}

static json_int_t status_of(struct flows *f, const char *key)
{
	json_t *st = flows_status(f);
	json_int_t v = json_integer_value(json_object_get(st, key));
	json_decref(st);
	return v;
}

/* One denied UDP packet of flow i (distinct source and port per i). */
static void record(struct flows *f, uint32_t i, uint64_t now)
{
	struct nflog_event ev = {
	    .family = AF_INET, .proto = 17, .has_port = true, .port = (uint16_t)(i & 0xffff)};
	ev.src[0] = 198, ev.src[1] = 18, ev.src[2] = (uint8_t)(i >> 16), ev.src[3] = (uint8_t)(i >> 8);
	ev.dst[0] = 198, ev.dst[1] = 19, ev.dst[2] = 1, ev.dst[3] = 2;
	ev.prefix.verdict = VERDICT_DROP;
	ev.prefix.dir = DIR_INGRESS;
	ev.prefix.position = -1;
	flows_record(f, "web-frontend-0001", &ev, NULL, "default-deny", now);
}

static json_t *sent[256];
static size_t n_sent;

static void capture(void *arg, json_t *body)
{
	(void)arg;
	if (n_sent < sizeof(sent) / sizeof(sent[0]))
		sent[n_sent++] = body;
	else
		json_decref(body);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: flow-spool DIR [WINDOW [restart]]\n");
		return 2;
	}
	const char *dir = argv[1];
	uint32_t window = argc > 2 ? (uint32_t)atoi(argv[2]) : 1000;
	bool restart = argc > 3 && strcmp(argv[3], "restart") == 0;
	struct timing fill_rec = {.name = "fill: flows_record"}, fill = {.name = "fill: flows_tick"},
		      fill_send = {.name = "fill: flows_send"}, start = {.name = "flows_new (backlog)"},
		      tick = {.name = "drain: flows_tick"}, send = {.name = "drain: flows_send"},
		      ack = {.name = "drain: flows_acked"}, rec = {.name = "drain: flows_record"};
	uint64_t now = 1000000, windows = 0;
	struct flows *f = flows_new(dir, 1000);
	while (!status_of(f, "spool_dropped") && windows < 100000) {
		for (uint32_t i = 0; i < window; i++) { /* (the window's last one closes a full window) */
			start_call();
			record(f, i + (uint32_t)windows * 7, now);
			timing_add(&fill_rec);
		}
		start_call();
		flows_tick(f, now + 1, 1000, true);
		timing_add(&fill);
		/* The controller is away: sent, never answered. */
		start_call();
		flows_send(f, now + 1, capture, NULL);
		timing_add(&fill_send);
		for (size_t i = 0; i < n_sent; i++)
			json_decref(sent[i]);
		n_sent = 0;
		now += 1000;
		windows++;
	}
	printf("# backlog: %llu windows of %u flows; in memory %lld batches, in the file %lld\n",
	       (unsigned long long)windows, window, (long long)status_of(f, "spooled_in_memory"),
	       (long long)status_of(f, "spooled_in_file"));
	if (restart) {
		flows_free(f);
		start_call();
		f = flows_new(dir, 2000);
		timing_add(&start);
	}
	double drain0 = clock_ms(CLOCK_MONOTONIC);
	uint64_t batches = 0, rounds = 0;
	for (; rounds < 1000000; rounds++) {
		now += 100;
		for (uint32_t i = 0; i < 20; i++) { /* live traffic meanwhile */
			start_call();
			record(f, 900000 + i, now);
			timing_add(&rec);
		}
		start_call();
		flows_tick(f, now, 1000, false);
		timing_add(&tick);
		start_call();
		flows_send(f, now, capture, NULL);
		timing_add(&send);
		for (size_t i = 0; i < n_sent; i++) {
			uint64_t ep = (uint64_t)json_integer_value(json_object_get(sent[i], "epoch")),
				 seq = (uint64_t)json_integer_value(json_object_get(sent[i], "seq"));
			json_decref(sent[i]);
			start_call();
			flows_acked(f, ep, seq);
			timing_add(&ack);
			batches++;
		}
		n_sent = 0;
		if (!status_of(f, "spooled_in_file") && status_of(f, "spooled_in_memory") <= 2)
			break;
	}
	double drain = clock_ms(CLOCK_MONOTONIC) - drain0;
	printf("# drained %llu batches in %llu ticks (%.0f ms of wall time)\n", (unsigned long long)batches,
	       (unsigned long long)rounds, drain);
	printf("%-24s %8s %10s %10s %10s %10s\n", "call (ms)", "calls", "median", "p99", "max", "max CPU");
	timing_print(&fill_rec);
	timing_print(&fill);
	timing_print(&fill_send);
	if (restart)
		timing_print(&start);
	timing_print(&rec);
	timing_print(&tick);
	timing_print(&send);
	timing_print(&ack);
	double worst = 0, worst_cpu = 0;
	struct timing *drain_calls[] = {&rec, &tick, &send, &ack};
	for (size_t i = 0; i < 4; i++) {
		if (drain_calls[i]->n && drain_calls[i]->v[drain_calls[i]->n - 1] > worst)
			worst = drain_calls[i]->v[drain_calls[i]->n - 1];
		if (drain_calls[i]->cpu_max > worst_cpu)
			worst_cpu = drain_calls[i]->cpu_max;
	}
	printf("longest flows_* call while draining: %.1f ms (CPU: %.1f ms)\n", worst, worst_cpu);
	flows_free(f);
	return 0;
}
