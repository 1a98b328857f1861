/* Fuzz target: what the agent reads back of its own state where someone
 * else may have written it — a table's tag (nft_tag_parse, from the set
 * element any process with CAP_NET_ADMIN in the namespace can write) on
 * the first line, and the rule counters a clean exit saved (counters_load,
 * counters.json's "readings") after it. A tag that parses is exactly what
 * nft_tag_format writes; readings that load are saved again as they were
 * and count growth from there, never more than the readings grew. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "counters.h"
#include "nft.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void tag(const char *text, size_t len)
{
	if (len >= NFT_TAG_MAX * 2)
		return;
	char s[NFT_TAG_MAX * 2], back[NFT_TAG_MAX];
	memcpy(s, text, len);
	s[len] = '\0';
	struct nft_tag t;
	if (nft_tag_parse(s, &t) < 0)
		return;
	nft_tag_format(&t, back);
	if (strcmp(s, back) != 0) {
		fprintf(stderr, "fuzz-agentstate: tag \"%s\" parsed, but it is written \"%s\"\n", s, back);
		abort();
	}
}

struct growth {
	uint64_t packets, bytes;
};

static void add(void *arg, const struct counter_growth *g)
{
	struct growth *sum = arg;
	sum->packets += g->packets;
	sum->bytes += g->bytes;
}

static void readings(const char *text, size_t len)
{
	json_t *saved = json_loadb(text, len, 0, NULL);
	struct counters *c = counters_new();
	if (counters_load(c, saved) == 0) {
		json_t *back = counters_save(c);
		if (json_array_size(back) != json_array_size(saved))
			abort();
		/* Every rule one packet and 100 bytes on: that much growth, no more. */
		size_t n = json_array_size(back);
		struct nft_rule_counter *now = calloc(n ? n : 1, sizeof(*now));
		bool dups = false; /* a file's: the kernel never repeats a handle */
		for (size_t i = 0; i < n; i++) {
			json_t *e = json_array_get(back, i);
			uint64_t h = (uint64_t)json_integer_value(json_array_get(e, 0)),
				 p = (uint64_t)json_integer_value(json_array_get(e, 1)),
				 b = (uint64_t)json_integer_value(json_array_get(e, 2));
			bool dup = i > 0 && h == (uint64_t)json_integer_value(json_array_get(json_array_get(back, i - 1), 0));
			if (i > 0 && h < (uint64_t)json_integer_value(json_array_get(json_array_get(back, i - 1), 0)))
				abort(); /* saved in handle order */
			now[i] = (struct nft_rule_counter){.dir = i % 2 ? DIR_EGRESS : DIR_INGRESS,
							   .handle = h,
							   .comment = "r",
							   .packets = p < UINT64_MAX ? p + 1 : p,
							   .bytes = b < UINT64_MAX - 100 ? b + 100 : b};
			dups |= dup;
		}
		struct growth sum = {0};
		counters_update(c, now, n, add, &sum);
		if (!dups && (sum.packets > n || sum.bytes > 100 * n))
			abort();
		free(now);
		json_decref(back);
	}
	counters_free(c);
	json_decref(saved);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data, *nl = memchr(text, '\n', size);
	size_t first = nl ? (size_t)(nl - text) : size;
	tag(text, first);
	if (nl)
		readings(nl + 1, size - first - 1);
	return 0;
}
