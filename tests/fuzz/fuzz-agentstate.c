/* Fuzz target: what the agent reads back of its own state where someone
 * else may have written it or a crash may have cut it — a table's tag
 * (nft_tag_parse, from the set element any process with CAP_NET_ADMIN in
 * the namespace can write) on the first line, the rule counters a clean
 * exit saved (counters_load, counters.json's "readings") after it, and,
 * after a line "--", a flow spool segment (spool.h) as the next start finds
 * it. A tag that parses is exactly what nft_tag_format writes; readings
 * that load are saved again as they were and count growth from there,
 * never more than the readings grew; every batch read back from a segment
 * is whole, and once each is done, none comes back at the next start. */
#include <ftw.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <sys/stat.h>
#include <unistd.h>

#include "bulkhead/log.h"
#include "counters.h"
#include "nft.h"
#include "spool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *report; /* what this harness finds: fd 2, which the sanitizers use too */

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
		fprintf(report, "fuzz-agentstate: tag \"%s\" parsed, but it is written \"%s\"\n", s, back);
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
			bool dup = i > 0 && h == (uint64_t)json_integer_value(
						     json_array_get(json_array_get(back, i - 1), 0));
			if (i > 0 &&
			    h < (uint64_t)json_integer_value(json_array_get(json_array_get(back, i - 1), 0)))
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

static char dir[256];

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void cleanup(void)
{
	if (dir[0])
		nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void count_bad(void *arg, const char *text, size_t len, const char *reason)
{
	(*(unsigned *)arg)++;
}

/* Every batch in memory, each marked done (read forward as they go). */
static unsigned take_all(struct spool *s)
{
	unsigned n = 0;
	for (;;) {
		struct spool_batch *b = spool_head(s);
		if (!b) {
			spool_refill(s);
			if (!(b = spool_head(s)))
				return n;
		}
		if (b->text[b->len] != '\0')
			abort();
		spool_done(s, b);
		n++;
	}
}

static void segment(const char *bytes, size_t len)
{
	if (!dir[0]) {
		const char *tmp = getenv("BULKHEAD_FUZZ_DIR");
		struct stat st;
		if (!tmp)
			tmp =
			    stat("/dev/shm", &st) == 0 && access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
		snprintf(dir, sizeof(dir), "%s/bulkhead-fuzz-agentstate.XXXXXX", tmp);
		if (!mkdtemp(dir))
			abort();
		atexit(cleanup);
	}
	char path[400];
	snprintf(path, sizeof(path), "%s/" SPOOL_DIR, dir);
	nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	if (mkdir(path, 0700) < 0)
		abort();
	snprintf(path, sizeof(path), "%s/" SPOOL_DIR "/0000000000000001.seg", dir);
	FILE *f = fopen(path, "w");
	if (!f || fwrite(bytes, 1, len, f) != len || fclose(f) != 0)
		abort();
	unsigned bad = 0;
	struct spool *s = spool_new(dir, count_bad, &bad);
	if (!s)
		abort();
	take_all(s);
	spool_stop(s);
	spool_free(s);
	/* Done is done: the next start finds nothing left. */
	s = spool_new(dir, count_bad, &bad);
	if (!s)
		abort();
	unsigned again = take_all(s);
	spool_stop(s);
	spool_free(s);
	if (again) {
		fprintf(report, "fuzz-agentstate: %u batch(es) came back after they were done\n", again);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!report) { /* the spool logs what it drops: stdio's stderr goes nowhere unless asked for */
		if (!(report = fdopen(dup(2), "w")))
			abort();
		setvbuf(report, NULL, _IONBF, 0);
		if (!getenv("BULKHEAD_FUZZ_LOG") && !(stderr = fopen("/dev/null", "w")))
			abort();
	}
	const char *text = (const char *)data, *end = text + size, *nl = memchr(text, '\n', size);
	size_t first = nl ? (size_t)(nl - text) : size;
	tag(text, first);
	if (!nl)
		return 0;
	const char *rest = nl + 1, *sep = NULL;
	for (const char *p = rest; p + 4 <= end && !sep; p++)
		if (memcmp(p, "\n--\n", 4) == 0)
			sep = p;
	readings(rest, (size_t)((sep ? sep : end) - rest));
	if (sep)
		segment(sep + 4, (size_t)(end - sep - 4));
	return 0;
}
