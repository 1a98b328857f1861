/* The agent's flow spool (agent/flows.h): a batch survives the agent's
 * crash through the journal and goes again under its own (epoch, seq); a
 * clean exit leaves it in the spool file instead; acknowledged batches
 * leave the journal (emptied, or rewritten once it is mostly garbage). A
 * temporary state directory stands for the agent's. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "flows.h"
#include "state.h"
#include "test.h"

static char dir[64];

static void make_dir(void)
{
	snprintf(dir, sizeof(dir), "/tmp/bulkhead-test-flows.XXXXXX");
	if (!mkdtemp(dir))
		abort();
}

static void remove_dir(void)
{
	static const char *const names[] = {FLOWS_SPOOL_FILE,	       FLOWS_JOURNAL_FILE, "." FLOWS_SPOOL_FILE ".tmp",
					    "." FLOWS_JOURNAL_FILE ".tmp", FLOWS_QUARANTINE_FILE};
	char path[128];
	for (size_t i = 0; i < BH_ARRAY_SIZE(names); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		unlink(path);
	}
	rmdir(dir);
}

static long file_size(const char *name)
{
	char path[128];
	struct stat st;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return stat(path, &st) < 0 ? -1 : (long)st.st_size;
}

static char *slurp(const char *name)
{
	char *text = NULL;
	size_t len = 0;
	return state_read(dir, name, 1u << 30, &text, &len) == 0 ? text : NULL;
}

static void put(const char *name, const char *text)
{
	if (state_write(dir, name, text, strlen(text)) < 0)
		abort();
}

/* One denied UDP packet to port, from 198.18.0.1 to 198.18.0.2. */
static void record_packet(struct flows *f, uint16_t port, uint64_t now)
{
	struct nflog_event ev = {.family = AF_INET, .proto = 17, .has_port = true, .port = port};
	ev.src[0] = 198, ev.src[1] = 18, ev.src[3] = 1;
	ev.dst[0] = 198, ev.dst[1] = 18, ev.dst[3] = 2;
	ev.prefix.verdict = VERDICT_DROP;
	ev.prefix.dir = DIR_INGRESS;
	ev.prefix.position = -1;
	flows_record(f, "web1", &ev, NULL, "default-deny", now);
}

static json_t *sent[2 * FLOWS_IN_FLIGHT];
static size_t n_sent;

static void capture(void *arg, json_t *body)
{
	(void)arg;
	if (n_sent < BH_ARRAY_SIZE(sent))
		sent[n_sent++] = body;
	else
		json_decref(body);
}

static void release_sent(void)
{
	for (size_t i = 0; i < n_sent; i++)
		json_decref(sent[i]);
	n_sent = 0;
}

static json_int_t member(const json_t *body, const char *key)
{
	return json_integer_value(json_object_get(body, key));
}

TEST(a_crash_loses_no_closed_window)
{
	make_dir();
	struct flows *f = flows_new(dir, 111);
	for (int i = 0; i < 3; i++)
		record_packet(f, 9999, 1000);
	flows_tick(f, 3000, 1000, false);
	CHECK(file_size(FLOWS_JOURNAL_FILE) > 0);
	/* What a kill -9 now would leave: the journal, no spool file. */
	char *journal = slurp(FLOWS_JOURNAL_FILE);
	CHECK(journal != NULL);
	flows_free(f); /* a clean exit moves the batch to the spool file ... */
	CHECK(file_size(FLOWS_SPOOL_FILE) > 0);
	CHECK(file_size(FLOWS_JOURNAL_FILE) == 0); /* ... and empties the journal */
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", dir, FLOWS_SPOOL_FILE);
	unlink(path);
	if (journal)
		put(FLOWS_JOURNAL_FILE, journal);
	free(journal);

	f = flows_new(dir, 222);
	CHECK(file_size(FLOWS_SPOOL_FILE) == 0); /* in memory again, and so in the journal */
	CHECK(file_size(FLOWS_JOURNAL_FILE) > 0);
	flows_send(f, 4000, capture, NULL);
	CHECK(n_sent == 1);
	if (n_sent == 1) {
		CHECK(member(sent[0], "epoch") == 111 && member(sent[0], "seq") == 1);
		json_t *row = json_array_get(json_object_get(sent[0], "flows"), 0);
		CHECK(member(row, "count") == 3 && member(row, "port") == 9999);
	}
	flows_acked(f, 111, 1);
	release_sent();
	flows_free(f);
	CHECK(file_size(FLOWS_SPOOL_FILE) == 0);
	remove_dir();
}

TEST(a_crash_cut_line_is_dropped_and_the_spool_file_follows_the_journal)
{
	make_dir();
	put(FLOWS_SPOOL_FILE, "{\"epoch\":5,\"seq\":9,\"start\":1,\"end\":2,\"flows\":[],\"lost\":[]}\n");
	put(FLOWS_JOURNAL_FILE, "{\"epoch\":5,\"seq\":8,\"start\":1,\"end\":2,\"flows\":[],\"lost\":[]}\n"
				"{\"epoch\":5,\"seq\":10,\"sta");
	struct flows *f = flows_new(dir, 6);
	flows_send(f, 10, capture, NULL);
	CHECK(n_sent == 2);
	if (n_sent == 2)
		CHECK(member(sent[0], "seq") == 8 && member(sent[1], "seq") == 9); /* journal first */
	release_sent();
	flows_acked(f, 5, 8);
	flows_acked(f, 5, 9);
	flows_free(f);
	CHECK(file_size(FLOWS_SPOOL_FILE) == 0);
	remove_dir();
}

TEST(acknowledged_batches_leave_the_journal)
{
	make_dir();
	struct flows *f = flows_new(dir, 7);
	/* Two batches; the first acknowledged: the journal keeps the second. */
	record_packet(f, 1, 10); /* (time 0 would read as "no window open") */
	flows_tick(f, 20, 1, true);
	record_packet(f, 2, 30);
	flows_tick(f, 40, 1, true);
	long both = file_size(FLOWS_JOURNAL_FILE);
	flows_acked(f, 7, 1);
	CHECK(file_size(FLOWS_JOURNAL_FILE) == both); /* a little garbage: kept */
	flows_acked(f, 7, 2);
	CHECK(file_size(FLOWS_JOURNAL_FILE) == 0); /* nothing in memory: emptied */

	/* Mostly garbage: rewritten to the batches still unacknowledged. */
	uint64_t seq = 2, now = 100;
	while (file_size(FLOWS_JOURNAL_FILE) < (long)FLOWS_JOURNAL_SLACK + 65536) {
		record_packet(f, 3, now);
		flows_tick(f, now + 1, 1, true);
		now += 2;
		seq++;
	}
	long full = file_size(FLOWS_JOURNAL_FILE);
	for (uint64_t s = 3; s < seq; s++) /* all but the newest */
		flows_acked(f, 7, s);
	/* Rewritten once the garbage passed the slack: what was acknowledged
	 * after that is the little garbage left. */
	long after = file_size(FLOWS_JOURNAL_FILE);
	CHECK(after > 0 && after < full / 10);
	char *journal = slurp(FLOWS_JOURNAL_FILE);
	char want[64];
	snprintf(want, sizeof(want), "\"seq\":%llu,", (unsigned long long)seq);
	CHECK(journal && strstr(journal, want) && !strstr(journal, "\"seq\":3,"));
	free(journal);
	flows_free(f);
	remove_dir();
}

static json_int_t status_of(struct flows *f, const char *key)
{
	json_t *st = flows_status(f);
	json_int_t v = member(st, key);
	json_decref(st);
	return v;
}

/* One window of 200 distinct flows (ports), 3 packets each. */
static uint64_t record_window(struct flows *f, uint64_t *now)
{
	for (int p = 1; p <= 200; p++)
		for (int k = 0; k < 3; k++)
			record_packet(f, (uint16_t)p, *now);
	flows_tick(f, *now + 1, 1, true);
	*now += 2;
	return 600;
}

/* The sum of key over the objects of body's array list. */
static uint64_t sum_of(const json_t *body, const char *list, const char *key)
{
	uint64_t n = 0;
	size_t i;
	json_t *o;
	json_array_foreach(json_object_get(body, list), i, o) n += (uint64_t)member(o, key);
	return n;
}

/* Everything the spool holds, sent and acknowledged in order: the packets
 * delivered and the spool losses reported. */
static void drain_all(struct flows *f, uint64_t *delivered, uint64_t *reported_lost, uint64_t now)
{
	for (int round = 0; round < 100000; round++) {
		flows_send(f, now, capture, NULL);
		if (!n_sent)
			return;
		for (size_t i = 0; i < n_sent; i++) {
			*delivered += sum_of(sent[i], "flows", "count");
			*reported_lost += sum_of(sent[i], "lost", "spool");
			flows_acked(f, (uint64_t)member(sent[i], "epoch"), (uint64_t)member(sent[i], "seq"));
		}
		release_sent();
		flows_tick(f, now, 1, false); /* a reported loss makes a batch of its own */
	}
}

TEST(a_full_spool_overflows_to_the_file_then_drops_and_says_how_much)
{
	make_dir();
	struct flows *f = flows_new(dir, 9);
	uint64_t now = 1000, recorded = 0;
	while (!status_of(f, "spooled_to_file"))
		recorded += record_window(f, &now);
	CHECK(status_of(f, "spooled_in_memory") > 0);
	CHECK(file_size(FLOWS_SPOOL_FILE) > 0);
	CHECK(file_size(FLOWS_JOURNAL_FILE) <= (long)FLOWS_SPOOL_MEM_MAX); /* only what is in memory */
	while (!status_of(f, "spool_dropped"))
		recorded += record_window(f, &now);
	CHECK(file_size(FLOWS_SPOOL_FILE) <= (long)FLOWS_SPOOL_FILE_MAX);
	/* One more window, dropped too (the spool is still full): what it
	 * would have reported of the first loss is carried with its own. */
	recorded += record_window(f, &now);
	uint64_t dropped = 2 * 600;

	uint64_t delivered = 0, reported_lost = 0;
	drain_all(f, &delivered, &reported_lost, now + 10);
	CHECK(reported_lost == dropped);
	CHECK(delivered + reported_lost == recorded);
	CHECK(status_of(f, "spooled_in_memory") == 0 && status_of(f, "spooled_in_file") == 0);
	CHECK(file_size(FLOWS_SPOOL_FILE) == 0 && file_size(FLOWS_JOURNAL_FILE) == 0);
	fprintf(stderr, "  # %llu packets recorded, %llu delivered, %llu reported lost\n",
		(unsigned long long)recorded, (unsigned long long)delivered, (unsigned long long)reported_lost);
	flows_free(f);
	remove_dir();
}

/* The lines of a file in the state directory. */
static size_t lines_of(const char *name)
{
	char *text = slurp(name);
	size_t n = 0;
	for (const char *c = text; c && *c; c++)
		n += *c == '\n';
	free(text);
	return n;
}

TEST(rejected_batches_leave_for_the_quarantine_and_the_rest_goes_on)
{
	make_dir();
	struct flows *f = flows_new(dir, 12);
	uint64_t now = 100;
	for (int b = 0; b < FLOWS_IN_FLIGHT + 4; b++) {
		record_packet(f, (uint16_t)(1000 + b), now);
		record_packet(f, (uint16_t)(1000 + b), now);
		flows_tick(f, now + 1, 1, true);
		now += 2;
	}
	flows_send(f, now, capture, NULL);
	CHECK(n_sent == FLOWS_IN_FLIGHT);
	/* Unanswered, the in-flight slots stay taken: nothing else goes. */
	size_t first = n_sent;
	flows_send(f, now + 1, capture, NULL);
	CHECK(n_sent == first);
	for (size_t i = 0; i < first; i++)
		flows_rejected(f, (uint64_t)member(sent[i], "epoch"), (uint64_t)member(sent[i], "seq"),
			       "flows[0]: \"src\" must be an IPv4 or IPv6 address");
	release_sent();
	CHECK(status_of(f, "quarantined") == FLOWS_IN_FLIGHT);
	CHECK(status_of(f, "quarantined_packets") == 2 * FLOWS_IN_FLIGHT);
	CHECK(lines_of(FLOWS_QUARANTINE_FILE) == FLOWS_IN_FLIGHT);
	char *q = slurp(FLOWS_QUARANTINE_FILE);
	CHECK(q && strstr(q, "\"reason\":\"flows[0]: \\\"src\\\" must be an IPv4 or IPv6 address\"") &&
	      strstr(q, "\"port\":1000,"));
	free(q);
	/* The rest goes now. */
	flows_send(f, now + 2, capture, NULL);
	CHECK(n_sent == 4 && member(sent[0], "seq") == FLOWS_IN_FLIGHT + 1);
	for (size_t i = 0; i < n_sent; i++)
		flows_acked(f, (uint64_t)member(sent[i], "epoch"), (uint64_t)member(sent[i], "seq"));
	release_sent();
	CHECK(status_of(f, "spooled_in_memory") == 0 && file_size(FLOWS_JOURNAL_FILE) == 0);
	flows_free(f);
	CHECK(file_size(FLOWS_SPOOL_FILE) == 0 && lines_of(FLOWS_QUARANTINE_FILE) == FLOWS_IN_FLIGHT);
	remove_dir();
}

TEST(an_unreadable_spool_line_is_quarantined_not_sent)
{
	make_dir();
	put(FLOWS_SPOOL_FILE, "{\"epoch\":5,\"seq\":1,\"start\":1,\"end\":2,\"flows\":[],\"lost\":[]}\n"
			      "{\"epoch\":5,\"seq\":\"two\",\"flows\":[]}\n"
			      "not json at all\n"
			      "{\"epoch\":5,\"seq\":3,\"start\":1,\"end\":2,\"flows\":[],\"lost\":[]}\n");
	struct flows *f = flows_new(dir, 6);
	flows_send(f, 10, capture, NULL);
	CHECK(n_sent == 2 && member(sent[0], "seq") == 1 && member(sent[1], "seq") == 3);
	release_sent();
	CHECK(status_of(f, "quarantined") == 2 && lines_of(FLOWS_QUARANTINE_FILE) == 2);
	char *q = slurp(FLOWS_QUARANTINE_FILE);
	CHECK(q && strstr(q, "\"line\":\"not json at all\"") && strstr(q, "\"seq\":\"two\""));
	free(q);
	flows_free(f);
	remove_dir();
}

/* Whether body decodes as a FLOWS message (the controller's check). */
static bool decodes(json_t *body)
{
	size_t len;
	char *text = proto_encode(json_incref(body), &len);
	struct proto_msg m;
	char err[256];
	bool ok = text && proto_decode("FLOWS", 5, text, len, &m, err, sizeof(err)) == 0;
	if (ok)
		proto_msg_release(&m);
	else
		fprintf(stderr, "  refused: %s\n", text ? err : "no text");
	free(text);
	return ok;
}

TEST(what_the_agent_sends_keeps_to_the_wire_schema)
{
	struct flows *f = flows_new(NULL, 13);
	/* Counters that ran away (a kernel's, a bug's): capped, not refused. */
	flows_lost(f, "web1", UINT64_MAX / 2, UINT64_MAX / 2);
	flows_lost(f, "web1", UINT64_MAX / 2, UINT64_MAX / 2);
	flows_hit(f, "web1", DIR_INGRESS, "r1", NULL, "deny", UINT64_MAX, UINT64_MAX, 10);
	record_packet(f, 53, 10);
	flows_tick(f, 20, 1, true);
	flows_send(f, 30, capture, NULL);
	CHECK(n_sent == 1);
	if (n_sent == 1) {
		CHECK(decodes(sent[0]));
		json_t *lost = json_array_get(json_object_get(sent[0], "lost"), 0);
		json_t *hit = json_array_get(json_object_get(sent[0], "hits"), 0);
		CHECK(member(lost, "gap") == PROTO_FLOWS_COUNT_MAX && member(lost, "enobufs") == PROTO_FLOWS_COUNT_MAX);
		CHECK(member(hit, "packets") == PROTO_FLOWS_COUNT_MAX && member(hit, "bytes") == PROTO_FLOWS_BYTES_MAX);
	}
	release_sent();
	flows_free(f);
}

TEST(a_window_closes_when_full_never_past_the_schema)
{
	make_dir(); /* a full window is more than the memory spool holds */
	struct flows *f = flows_new(dir, 14);
	/* More distinct flows than a batch may hold, within one tick. */
	for (uint32_t i = 0; i < FLOWS_WINDOW_MAX + 10; i++) {
		struct nflog_event ev = {.family = AF_INET, .proto = 17, .has_port = true, .port = (uint16_t)i};
		ev.src[0] = 198, ev.src[1] = 18, ev.src[2] = (uint8_t)(i >> 16), ev.src[3] = 1;
		ev.dst[0] = 198, ev.dst[1] = 18, ev.dst[3] = 2;
		ev.prefix.verdict = VERDICT_DROP;
		ev.prefix.dir = DIR_INGRESS;
		ev.prefix.position = -1;
		flows_record(f, "web1", &ev, NULL, "default-deny", 10);
	}
	flows_tick(f, 20, 1000, true);
	/* Two batches (the first bigger than the memory spool: it waits in the
	 * file and goes alone), each within the schema. */
	size_t batches = 0, flows = 0;
	bool all_decode = true;
	for (int round = 0; round < 10; round++) {
		flows_send(f, 30, capture, NULL);
		if (!n_sent)
			break;
		for (size_t i = 0; i < n_sent; i++) {
			batches++;
			flows += json_array_size(json_object_get(sent[i], "flows"));
			all_decode &= decodes(sent[i]);
			CHECK(json_array_size(json_object_get(sent[i], "flows")) <= FLOWS_WINDOW_MAX);
			flows_acked(f, (uint64_t)member(sent[i], "epoch"), (uint64_t)member(sent[i], "seq"));
		}
		release_sent();
	}
	CHECK(batches == 2 && flows == FLOWS_WINDOW_MAX + 10 && all_decode);
	release_sent();
	flows_free(f);
	remove_dir();
}

int main(void)
{
	return test_main();
}
