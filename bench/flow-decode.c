/* flow-decode: the largest FLOWS body an agent makes, and how long the
 * controller takes to decode it (proto_decode: size checks, parse, schema).
 * A window of FLOWS_WINDOW_MAX - 1 distinct IPv6 flows (one more closes it
 * as it is recorded) whose endpoint, policy
 * and rule names are NAME_LEN characters long (63: as long as an inventory
 * and a policy allow) is closed and sent; the largest batch it made is
 * decoded REPS times. Uses flows.h and proto.h alone, so that it builds
 * against older trees too (bench/flow-spool.sh BASELINE=DIR).
 *
 *   flow-decode DIR [NAME_LEN [REPS]]
 *
 * DIR: an empty directory (the agent's state dir: the spool). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "bulkhead/proto.h"
#include "flows.h"

static double clock_ms(clockid_t id)
{
	struct timespec t;
	clock_gettime(id, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static json_t *largest;
static size_t largest_len, batches;
static json_t *acks[4096];
static size_t n_acks;

static void capture(void *arg, json_t *body)
{
	(void)arg;
	char *text = json_dumps(body, JSON_COMPACT);
	size_t len = text ? strlen(text) : 0;
	free(text);
	batches++;
	if (n_acks < sizeof(acks) / sizeof(acks[0]))
		acks[n_acks++] = json_incref(body);
	if (len > largest_len) {
		json_decref(largest);
		largest = body;
		largest_len = len;
	} else {
		json_decref(body);
	}
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: flow-decode DIR [NAME_LEN [REPS]]\n");
		return 2;
	}
	int name_len = argc > 2 ? atoi(argv[2]) : 63, reps = argc > 3 ? atoi(argv[3]) : 5;
	if (name_len < 1 || name_len > 63)
		name_len = 63;
	char endpoint[64], policy[64], rule[80];
	memset(endpoint, 'e', (size_t)name_len), endpoint[name_len] = '\0';
	memset(policy, 'p', (size_t)name_len), policy[name_len] = '\0';
	snprintf(rule, sizeof(rule), "%s#12", policy);
	struct flows *f = flows_new(argv[1], 1700000000000ull);
	for (uint32_t i = 0; i + 1 < FLOWS_WINDOW_MAX; i++) {
		struct nflog_event ev = {
		    .family = AF_INET6, .proto = 17, .has_port = true, .port = (uint16_t)(i | 1)};
		static const uint8_t pre[8] = {0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff, 0xff, 0xff};
		memcpy(ev.src, pre, 8), memcpy(ev.dst, pre, 8);
		memset(ev.src + 8, 0xee, 8), memset(ev.dst + 8, 0xdd, 8);
		ev.src[14] = (uint8_t)(i >> 8), ev.src[15] = (uint8_t)i;
		ev.prefix.verdict = VERDICT_DROP;
		ev.prefix.dir = DIR_INGRESS;
		ev.prefix.position = 12;
		flows_record(f, endpoint, &ev, policy, rule, 1700000000000ull + i);
	}
	double close = clock_ms(CLOCK_MONOTONIC), close_cpu = clock_ms(CLOCK_THREAD_CPUTIME_ID);
	flows_tick(f, 1700000100000ull, 1000, true);
	close = clock_ms(CLOCK_MONOTONIC) - close, close_cpu = clock_ms(CLOCK_THREAD_CPUTIME_ID) - close_cpu;
	for (int round = 0; round < 10000; round++) {
		n_acks = 0;
		flows_send(f, 1700000100000ull, capture, NULL);
		if (!n_acks)
			break;
		for (size_t i = 0; i < n_acks; i++) {
			flows_acked(f, (uint64_t)json_integer_value(json_object_get(acks[i], "epoch")),
				    (uint64_t)json_integer_value(json_object_get(acks[i], "seq")));
			json_decref(acks[i]);
		}
	}
	flows_free(f);
	if (!largest)
		return 1;
	size_t len;
	char *text = proto_encode(largest, &len); /* as the agent's link sends it */
	double best = 1e9, best_cpu = 1e9;
	const char *verdict = "decoded";
	char err[256];
	for (int r = 0; r < reps; r++) {
		struct proto_msg m;
		double w = clock_ms(CLOCK_MONOTONIC), c = clock_ms(CLOCK_THREAD_CPUTIME_ID);
		int ok = proto_decode("FLOWS", 5, text, len, &m, err, sizeof(err));
		w = clock_ms(CLOCK_MONOTONIC) - w, c = clock_ms(CLOCK_THREAD_CPUTIME_ID) - c;
		if (ok < 0) {
			verdict = err;
			break;
		}
		proto_msg_release(&m);
		if (w < best)
			best = w;
		if (c < best_cpu)
			best_cpu = c;
	}
	printf("window of %u flows, names of %d characters: %zu batch(es); the largest: %zu bytes\n",
	       (unsigned)FLOWS_WINDOW_MAX - 1, name_len, batches, len);
	printf("closing the window (flows_tick): %.1f ms (CPU %.1f ms)\n", close, close_cpu);
	printf("decode: %.1f ms (CPU %.1f ms), best of %d: %s\n", best, best_cpu, reps, verdict);
	free(text);
	return 0;
}
