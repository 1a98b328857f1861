/* apply-wait: the time from `policy apply` to every node having applied it.
 *
 *   apply-wait ADMIN_ENDPOINT NODES REPS FILE_A FILE_B
 *
 * Alternates the two policy documents REPS times (B, A, B, ...; A is
 * expected to be in force already). Each time it sends policy.apply over the
 * admin endpoint and then polls `status` every POLL_US until NODES nodes are
 * connected, up to date and at the new revision: an agent acknowledges a
 * revision only after the kernel accepted every namespace's transaction, so
 * that moment is enforcement everywhere. Prints one "sample MS" line per
 * repetition and "result apply median=MS p99=MS max=MS n=N" at the end. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "bulkhead/fileio.h"
#include "bulkhead/policy.h"
#include "admin.h"

#define POLL_US	   1000
#define GIVE_UP_MS 60000

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* A policy document, whole; NULL after saying why. */
static char *read_file(const char *path)
{
	char *text;
	size_t len;
	int r = fileio_read(path, POLICY_MAX_BYTES, &text, &len);
	if (r < 0)
		fprintf(stderr, "apply-wait: %s: %s\n", path, fileio_strerror(r));
	return r < 0 ? NULL : text;
}

/* How many nodes are connected, up to date and at revision rev. */
static int nodes_at(struct admin_conn *c, json_int_t rev)
{
	json_t *reply = admin_conn_call(c, json_pack("{s:s}", "cmd", "status"));
	if (!reply)
		exit(1);
	int n = 0;
	size_t i;
	json_t *node;
	json_array_foreach (json_object_get(reply, "nodes"), i, node) {
		if (json_is_true(json_object_get(node, "connected")) &&
		    json_is_true(json_object_get(node, "up_to_date")) &&
		    json_integer_value(json_object_get(node, "applied_revision")) == rev)
			n++;
	}
	json_decref(reply);
	return n;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: apply-wait ADMIN_ENDPOINT NODES REPS FILE_A FILE_B\n");
		return 2;
	}
	int want = atoi(argv[2]), reps = atoi(argv[3]);
	char *doc[2] = {read_file(argv[4]), read_file(argv[5])};
	if (!doc[0] || !doc[1] || want < 1 || reps < 1)
		return 2;

	struct admin_conn c = {0};
	if (admin_conn_open(&c, argv[1]) < 0)
		return 1;
	double *samples = calloc(reps, sizeof(*samples));
	for (int i = 0; i < reps; i++) {
		int which = (i + 1) % 2; /* B first: A is in force */
		double t0 = now_ms();
		json_t *reply =
		    admin_conn_call(&c, json_pack("{s:s, s:s, s:s}", "cmd", "policy.apply", "document",
						  doc[which], "file", argv[4 + which]));
		if (!reply || !json_is_true(json_object_get(reply, "ok"))) {
			fprintf(stderr, "apply-wait: policy.apply of %s failed\n", argv[4 + which]);
			return 1;
		}
		json_int_t rev = json_integer_value(json_object_get(reply, "revision"));
		json_decref(reply);
		int at;
		while ((at = nodes_at(&c, rev)) < want) {
			if (now_ms() - t0 > GIVE_UP_MS) {
				fprintf(stderr, "apply-wait: revision %lld reached %d of %d nodes in %d ms\n",
					(long long)rev, at, want, GIVE_UP_MS);
				return 1;
			}
			usleep(POLL_US);
		}
		samples[i] = now_ms() - t0;
		printf("sample %.3f\n", samples[i]);
	}
	qsort(samples, reps, sizeof(*samples), cmp_double);
	/* nearest-rank percentiles */
	int p99 = (int)((reps * 99 + 99) / 100) - 1;
	printf("result apply median=%.3f p99=%.3f max=%.3f n=%d\n", samples[reps / 2], samples[p99],
	       samples[reps - 1], reps);
	free(samples);
	free(doc[0]);
	free(doc[1]);
	admin_conn_close(&c);
	return 0;
}
