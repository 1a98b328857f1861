/* The agent's flow spool (agent/flows.h, agent/spool.h): batches are
 * appended to segment files as they are made, so a crash (a real kill -9 of
 * a child here) loses none; a batch goes again under its own (epoch, seq)
 * after a restart unless it was acknowledged; acknowledged segments go; no
 * file is rewritten; a record cut short, a corrupt segment, a full disk and
 * a full spool are each handled and counted; the files of agents before
 * the segments are taken over; a window past a batch's bounds is sent as
 * several batches, each within the wire schema. A temporary state directory
 * stands for the agent's. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "flows.h"
#include "spool.h"
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
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "  could not remove %s\n", dir);
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

/* The segment files, in order: names into names[] (at most max), and
 * their total size. */
static size_t segments(char names[][32], size_t max, long *bytes)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", dir, SPOOL_DIR);
	DIR *d = opendir(path);
	size_t n = 0;
	if (bytes)
		*bytes = 0;
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (strlen(e->d_name) != 20 || strcmp(e->d_name + 16, ".seg") != 0)
			continue;
		if (n < max) {
			snprintf(names[n], 32, "%s", e->d_name);
			for (size_t i = n; i > 0 && strcmp(names[i - 1], names[i]) > 0; i--) { /* in order */
				char t[32];
				memcpy(t, names[i], 32);
				memcpy(names[i], names[i - 1], 32);
				memcpy(names[i - 1], t, 32);
			}
		}
		n++;
		if (bytes) {
			char p[192];
			snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
			struct stat st;
			if (stat(p, &st) == 0)
				*bytes += (long)st.st_size;
		}
	}
	if (d)
		closedir(d);
	return n;
}

static size_t n_segments(void)
{
	return segments(NULL, 0, NULL);
}

static char *segment_text(const char *name, size_t *len)
{
	char path[128], *text = NULL;
	snprintf(path, sizeof(path), "%s/%s/%s", dir, SPOOL_DIR, name);
	return state_read_path(path, 1u << 30, &text, len) == 0 ? text : NULL;
}

static void segment_write(const char *name, const char *text, size_t len)
{
	char sub[128];
	snprintf(sub, sizeof(sub), "%s/%s", dir, SPOOL_DIR);
	if (state_write(sub, name, text, len) < 0)
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

/* One batch of a single flow (port), made now. */
static void one_batch(struct flows *f, uint16_t port, uint64_t *now)
{
	record_packet(f, port, *now);
	flows_tick(f, *now + 1, 1, true);
	*now += 2;
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

static json_int_t port_of(const json_t *body)
{
	return member(json_array_get(json_object_get(body, "flows"), 0), "port");
}

static json_int_t status_of(struct flows *f, const char *key)
{
	json_t *st = flows_status(f);
	json_int_t v = member(st, key);
	json_decref(st);
	return v;
}

/* Sends, acknowledges all that was sent, and collects the first flow's
 * port of each batch into ports[] (at most max), until nothing more goes. */
static size_t drain_ports(struct flows *f, json_int_t *ports, size_t max, uint64_t now)
{
	size_t n = 0;
	for (int round = 0; round < 10000; round++) {
		flows_send(f, now, capture, NULL);
		if (!n_sent)
			break;
		for (size_t i = 0; i < n_sent; i++) {
			if (n < max)
				ports[n] = port_of(sent[i]);
			n++;
			flows_acked(f, (uint64_t)member(sent[i], "epoch"), (uint64_t)member(sent[i], "seq"));
		}
		release_sent();
	}
	return n;
}

/* A child makes batches of ports first..first+n-1 (epoch 111) and is
 * killed with SIGKILL, as a crashed agent is. */
static void crash_after(uint16_t first, int n)
{
	pid_t pid = fork();
	if (pid < 0)
		abort();
	if (pid == 0) {
		struct flows *f = flows_new(dir, 111);
		uint64_t now = 1000;
		for (int i = 0; i < n; i++)
			one_batch(f, (uint16_t)(first + i), &now);
		record_packet(f, 1, now); /* the window still open: lost */
		raise(SIGKILL);
		_exit(0);
	}
	int st;
	waitpid(pid, &st, 0);
	if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
		abort();
}

TEST(a_crash_loses_no_closed_window)
{
	make_dir();
	crash_after(9000, 3);
	CHECK(n_segments() == 1);
	struct flows *f = flows_new(dir, 222);
	CHECK(status_of(f, "spooled_in_memory") == 3);
	json_int_t ports[8];
	CHECK(drain_ports(f, ports, 8, 5000) == 3);
	CHECK(ports[0] == 9000 && ports[1] == 9001 && ports[2] == 9002); /* in their order */
	CHECK(n_segments() == 0); /* every batch acknowledged: its segment went */
	flows_free(f);
	CHECK(n_segments() == 0);
	remove_dir();
}

TEST(a_record_cut_short_by_a_crash_is_dropped_alone)
{
	make_dir();
	crash_after(9100, 3);
	char names[4][32];
	CHECK(segments(names, 4, NULL) == 1);
	size_t len;
	char *text = segment_text(names[0], &len);
	CHECK(text && len > 40);
	if (text)
		segment_write(names[0], text, len - 30); /* the last record torn */
	free(text);
	struct flows *f = flows_new(dir, 222);
	json_int_t ports[8];
	CHECK(drain_ports(f, ports, 8, 5000) == 2);
	CHECK(ports[0] == 9100 && ports[1] == 9101);
	CHECK(status_of(f, "quarantined") == 0); /* a torn end is no corruption */
	CHECK(n_segments() == 0);
	flows_free(f);
	remove_dir();
}

TEST(a_corrupt_segment_is_quarantined_and_the_rest_goes_in_order)
{
	make_dir();
	crash_after(9200, 5);
	char names[4][32];
	CHECK(segments(names, 4, NULL) == 1);
	size_t len;
	char *text = segment_text(names[0], &len);
	/* Batch 2's port changed behind its checksum; batch 4's header made garbage. */
	char *b2 = text ? strstr(text, "\"port\":9201") : NULL;
	char *b4 = text ? strstr(text, "\"port\":9203") : NULL;
	CHECK(b2 && b4);
	if (b2 && b4) {
		b2[10] = '9';
		while (b4 > text && b4[-1] != '\n')
			b4--;
		memcpy(b4, "B zzz", 5);
		segment_write(names[0], text, len);
	}
	free(text);
	struct flows *f = flows_new(dir, 222);
	json_int_t ports[8];
	/* 1 and 3 go; 2 is quarantined; 4 and what follows it (5) cannot be
	 * framed any more: quarantined as one unreadable piece. */
	CHECK(drain_ports(f, ports, 8, 5000) == 2);
	CHECK(ports[0] == 9200 && ports[1] == 9202);
	CHECK(status_of(f, "quarantined") == 2);
	char *q = slurp(FLOWS_QUARANTINE_FILE);
	CHECK(q && strstr(q, "a record with a wrong checksum in flows.d/") &&
	      strstr(q, "an unreadable record in flows.d/") && strstr(q, "\"port\\\":9209"));
	free(q);
	CHECK(n_segments() == 0);
	flows_free(f);
	remove_dir();
}

TEST(a_segment_of_another_version_is_left_alone)
{
	make_dir();
	char sub[128];
	snprintf(sub, sizeof(sub), "%s/%s", dir, SPOOL_DIR);
	mkdir(sub, 0700);
	segment_write("0000000000000005.seg", "bulkhead-flows 2\nB whatever\n", 27);
	struct flows *f = flows_new(dir, 7);
	uint64_t now = 10;
	one_batch(f, 1, &now);
	char names[4][32];
	CHECK(segments(names, 4, NULL) == 2);
	CHECK(strcmp(names[0], "0000000000000005.seg") == 0 && strcmp(names[1], "0000000000000006.seg") == 0);
	json_int_t ports[4];
	CHECK(drain_ports(f, ports, 4, now) == 1 && ports[0] == 1);
	CHECK(segments(names, 4, NULL) == 1 && strcmp(names[0], "0000000000000005.seg") == 0);
	CHECK(status_of(f, "quarantined") == 0);
	flows_free(f);
	remove_dir();
}

TEST(an_acknowledged_batch_is_not_sent_again_after_a_restart)
{
	make_dir();
	struct flows *f = flows_new(dir, 7);
	uint64_t now = 10;
	one_batch(f, 1, &now);
	one_batch(f, 2, &now);
	one_batch(f, 3, &now);
	flows_send(f, now, capture, NULL);
	CHECK(n_sent == 3);
	flows_acked(f, 7, 2); /* out of order: the segment stays for 1 and 3 */
	flows_acked(f, 7, 2); /* twice: nothing more */
	release_sent();
	CHECK(status_of(f, "acked") == 1 && n_segments() == 1);
	flows_free(f);

	f = flows_new(dir, 8);
	json_int_t ports[8];
	CHECK(drain_ports(f, ports, 8, now) == 2);
	CHECK(ports[0] == 1 && ports[1] == 3);
	CHECK(n_segments() == 0);
	flows_free(f);
	remove_dir();
}

/* Every segment file's earlier content is a prefix of its content now:
 * nothing is ever rewritten, only appended or removed whole. */
struct snapshot {
	char names[64][32];
	char *text[64];
	size_t len[64], n;
};

static void snapshot_take(struct snapshot *s)
{
	s->n = segments(s->names, 64, NULL);
	for (size_t i = 0; i < s->n && i < 64; i++)
		s->text[i] = segment_text(s->names[i], &s->len[i]);
}

static bool snapshot_grew(struct snapshot *before)
{
	struct snapshot now;
	snapshot_take(&now);
	bool ok = true;
	for (size_t i = 0; i < before->n && i < 64; i++)
		for (size_t j = 0; j < now.n && j < 64; j++)
			if (strcmp(before->names[i], now.names[j]) == 0 &&
			    (!now.text[j] || now.len[j] < before->len[i] ||
			     memcmp(now.text[j], before->text[i], before->len[i]) != 0))
				ok = false;
	for (size_t i = 0; i < before->n && i < 64; i++)
		free(before->text[i]);
	*before = now;
	return ok;
}

static void snapshot_free(struct snapshot *s)
{
	for (size_t i = 0; i < s->n && i < 64; i++)
		free(s->text[i]);
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

TEST(segments_rotate_are_never_rewritten_and_go_once_acknowledged)
{
	make_dir();
	struct flows *f = flows_new(dir, 9);
	uint64_t now = 100;
	struct snapshot snap;
	snapshot_take(&snap);
	while (n_segments() < 5) /* some 30 KB a window */
		record_window(f, &now);
	char names[64][32];
	long bytes;
	size_t n = segments(names, 64, &bytes);
	CHECK(snapshot_grew(&snap));
	for (size_t i = 0; i + 1 < n; i++) { /* closed ones: about a segment's size, no more */
		size_t len;
		char *text = segment_text(names[i], &len);
		CHECK(len <= SPOOL_SEGMENT_MAX && len > SPOOL_SEGMENT_MAX / 2);
		CHECK(text && strncmp(text, SPOOL_MAGIC, strlen(SPOOL_MAGIC)) == 0);
		free(text);
	}
	CHECK(status_of(f, "spool_segments") == (json_int_t)n && status_of(f, "spool_bytes") == bytes);
	/* Acknowledged in order: the oldest segments go first, the others
	 * only grow (done records). */
	uint64_t acked = 0, batches = (uint64_t)status_of(f, "batches");
	bool fewer = true;
	while (acked < batches) {
		flows_send(f, now, capture, NULL);
		size_t went = n_sent;
		for (size_t i = 0; i < n_sent; i++) {
			flows_acked(f, (uint64_t)member(sent[i], "epoch"), (uint64_t)member(sent[i], "seq"));
			acked++;
		}
		release_sent();
		CHECK(snapshot_grew(&snap));
		fewer &= n_segments() <= n + 1; /* (done records may open one more) */
		if (!went)
			break;
	}
	fprintf(stderr, "  # %llu of %llu acknowledged\n", (unsigned long long)acked,
		(unsigned long long)batches);
	CHECK(acked == batches && fewer);
	CHECK(n_segments() == 0 && status_of(f, "spool_bytes") == 0);
	snapshot_free(&snap);
	flows_free(f);
	remove_dir();
}

/* The sum of key over the objects of body's array list. */
static uint64_t sum_of(const json_t *body, const char *list, const char *key)
{
	uint64_t n = 0;
	size_t i;
	json_t *o;
	json_array_foreach (json_object_get(body, list), i, o)
		n += (uint64_t)member(o, key);
	return n;
}

/* Everything the spool holds, sent and acknowledged: the packets
 * delivered and the spool losses reported; false when a batch went out of
 * its order (seq not increasing within an epoch). */
static bool drain_all(struct flows *f, uint64_t *delivered, uint64_t *reported_lost, uint64_t now)
{
	bool ordered = true;
	json_int_t last_epoch = -1, last_seq = -1;
	for (int round = 0; round < 100000; round++) {
		flows_send(f, now, capture, NULL);
		if (!n_sent)
			break;
		for (size_t i = 0; i < n_sent; i++) {
			json_int_t e = member(sent[i], "epoch"), s = member(sent[i], "seq");
			ordered &= e != last_epoch || s > last_seq;
			last_epoch = e, last_seq = s;
			*delivered += sum_of(sent[i], "flows", "count");
			*reported_lost += sum_of(sent[i], "lost", "spool");
			flows_acked(f, (uint64_t)e, (uint64_t)s);
		}
		release_sent();
		flows_tick(f, now, 1, false); /* a reported loss makes a batch of its own */
		now += 100;
	}
	return ordered;
}

TEST(a_full_spool_overflows_to_disk_then_drops_and_says_how_much)
{
	make_dir();
	struct flows *f = flows_new(dir, 9);
	uint64_t now = 1000, recorded = 0;
	while (!status_of(f, "spooled_to_file"))
		recorded += record_window(f, &now);
	CHECK(status_of(f, "spooled_in_memory") > 0);
	while (!status_of(f, "spool_dropped"))
		recorded += record_window(f, &now);
	long bytes;
	segments(NULL, 0, &bytes);
	CHECK(bytes <= (long)SPOOL_DISK_MAX && bytes > (long)SPOOL_DISK_MAX - (1l << 20));
	/* One more window, dropped too (the spool is still full): what it
	 * would have reported of the first loss is carried with its own. */
	recorded += record_window(f, &now);
	uint64_t dropped = 2 * 600;

	uint64_t delivered = 0, reported_lost = 0;
	CHECK(drain_all(f, &delivered, &reported_lost, now + 10));
	CHECK(reported_lost == dropped);
	CHECK(delivered + reported_lost == recorded);
	CHECK(status_of(f, "spooled_in_memory") == 0 && status_of(f, "spooled_in_file") == 0);
	CHECK(n_segments() == 0);
	fprintf(stderr, "  # %llu packets recorded, %llu delivered, %llu reported lost\n",
		(unsigned long long)recorded, (unsigned long long)delivered,
		(unsigned long long)reported_lost);
	flows_free(f);
	remove_dir();
}

TEST(a_clean_restart_over_a_backlog_on_disk_keeps_the_order)
{
	make_dir();
	struct flows *f = flows_new(dir, 15);
	uint64_t now = 1000, recorded = 0;
	while (status_of(f, "spooled_in_file") < 50)
		recorded += record_window(f, &now);
	flows_free(f);
	f = flows_new(dir, 16);
	CHECK(status_of(f, "spooled_in_file") > 0); /* not all of it is read at start */
	uint64_t delivered = 0, reported_lost = 0;
	CHECK(drain_all(f, &delivered, &reported_lost, now));
	CHECK(delivered == recorded && reported_lost == 0);
	CHECK(n_segments() == 0);
	flows_free(f);
	remove_dir();
}

/* Writes fail past limit bytes of a file (EFBIG), as on a full disk. */
static struct rlimit fsize_before;
static void disk_full(rlim_t limit)
{
	signal(SIGXFSZ, SIG_IGN);
	getrlimit(RLIMIT_FSIZE, &fsize_before);
	struct rlimit r = {limit, fsize_before.rlim_max};
	if (setrlimit(RLIMIT_FSIZE, &r) < 0)
		abort();
}

static void disk_free(void)
{
	setrlimit(RLIMIT_FSIZE, &fsize_before);
}

TEST(a_full_disk_keeps_batches_in_memory_then_counts_what_it_drops)
{
	make_dir();
	struct flows *f = flows_new(dir, 11);
	uint64_t now = 1000, recorded = 0;
	recorded += record_window(f, &now); /* on disk */
	long first;
	segments(NULL, 0, &first);
	disk_full(4096);
	/* The disk takes nothing more: memory until it is full, then dropped. */
	while (!status_of(f, "spool_dropped"))
		recorded += record_window(f, &now);
	recorded += record_window(f, &now);
	CHECK(status_of(f, "spooled_to_file") == 0 && status_of(f, "spooled_in_file") == 0);
	json_int_t in_memory = status_of(f, "spooled_in_memory");
	CHECK(in_memory > 100);
	long bytes;
	CHECK(n_segments() == 1);
	segments(NULL, 0, &bytes);
	CHECK(bytes == first); /* the first batch, and no half record of another */
	disk_free();
	/* The disk takes them again: the memory-only batches go to it. */
	flows_send(f, now + 10000, capture, NULL);
	release_sent();
	segments(NULL, 0, &bytes);
	CHECK(bytes > (long)SPOOL_MEM_MAX / 2);
	flows_resend_all(f);
	uint64_t delivered = 0, reported_lost = 0;
	drain_all(f, &delivered, &reported_lost, now + 20000);
	flows_tick(f, now + 30000, 1, true);
	drain_all(f, &delivered, &reported_lost, now + 30000);
	CHECK(reported_lost == 2 * 600);
	CHECK(delivered + reported_lost == recorded);
	CHECK(n_segments() == 0);
	flows_free(f);
	remove_dir();
}

TEST(memory_only_batches_reach_the_disk_at_a_clean_stop)
{
	make_dir();
	struct flows *f = flows_new(dir, 12);
	uint64_t now = 1000;
	disk_full(10); /* not even a segment's first line */
	one_batch(f, 4001, &now);
	one_batch(f, 4002, &now);
	CHECK(status_of(f, "spooled_in_memory") == 2);
	disk_free();
	flows_free(f); /* (stop, then free) */
	f = flows_new(dir, 13);
	json_int_t ports[4];
	CHECK(drain_ports(f, ports, 4, now) == 2);
	CHECK(ports[0] == 4001 && ports[1] == 4002);
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
	/* A restart now: the quarantined ones do not come again. */
	flows_free(f);
	f = flows_new(dir, 13);
	flows_send(f, now + 2, capture, NULL);
	CHECK(n_sent == 4 && member(sent[0], "seq") == FLOWS_IN_FLIGHT + 1);
	for (size_t i = 0; i < n_sent; i++)
		flows_acked(f, (uint64_t)member(sent[i], "epoch"), (uint64_t)member(sent[i], "seq"));
	release_sent();
	CHECK(status_of(f, "spooled_in_memory") == 0 && n_segments() == 0);
	flows_free(f);
	CHECK(n_segments() == 0 && lines_of(FLOWS_QUARANTINE_FILE) == FLOWS_IN_FLIGHT);
	remove_dir();
}

TEST(old_files_are_taken_over_the_journal_first_and_a_cut_line_dropped)
{
	make_dir();
	put(FLOWS_OLD_SPOOL_FILE, "{\"epoch\":5,\"seq\":9,\"start\":1,\"end\":2,\"flows\":[],\"lost\":[]}\n");
	put(FLOWS_OLD_JOURNAL_FILE, "{\"epoch\":5,\"seq\":8,\"start\":1,\"end\":2,\"flows\":[],\"lost\":[]}\n"
				    "{\"epoch\":5,\"seq\":10,\"sta");
	struct flows *f = flows_new(dir, 6);
	CHECK(file_size(FLOWS_OLD_SPOOL_FILE) < 0 && file_size(FLOWS_OLD_JOURNAL_FILE) < 0);
	CHECK(n_segments() == 1); /* they are in the segments now */
	flows_send(f, 10, capture, NULL);
	CHECK(n_sent == 2);
	if (n_sent == 2)
		CHECK(member(sent[0], "seq") == 8 && member(sent[1], "seq") == 9); /* journal first */
	release_sent();
	flows_free(f); /* unacknowledged: they wait in the segments */
	f = flows_new(dir, 7);
	flows_send(f, 10, capture, NULL);
	CHECK(n_sent == 2 && member(sent[0], "seq") == 8);
	for (size_t i = 0; i < n_sent; i++)
		flows_acked(f, 5, (uint64_t)member(sent[i], "seq"));
	release_sent();
	flows_free(f);
	CHECK(n_segments() == 0);

	/* A crash after the take-over, before the old file went: its batches
	 * come twice, under the same names (the controller stores them once). */
	put(FLOWS_OLD_SPOOL_FILE,
	    "{\"epoch\":5,\"seq\":11,\"start\":1,\"end\":2,\"flows\":[],\"lost\":[]}\n");
	f = flows_new(dir, 8);
	flows_free(f);
	put(FLOWS_OLD_SPOOL_FILE,
	    "{\"epoch\":5,\"seq\":11,\"start\":1,\"end\":2,\"flows\":[],\"lost\":[]}\n");
	f = flows_new(dir, 9);
	flows_send(f, 10, capture, NULL);
	CHECK(n_sent == 2 && member(sent[0], "seq") == 11 && member(sent[1], "seq") == 11);
	for (size_t i = 0; i < n_sent; i++)
		flows_acked(f, 5, 11);
	release_sent();
	CHECK(n_segments() == 0);
	flows_free(f);
	remove_dir();
}

TEST(an_unreadable_old_spool_line_is_quarantined_not_sent)
{
	make_dir();
	put(FLOWS_OLD_SPOOL_FILE, "{\"epoch\":5,\"seq\":1,\"start\":1,\"end\":2,\"flows\":[],\"lost\":[]}\n"
				  "{\"epoch\":5,\"seq\":\"two\",\"flows\":[]}\n"
				  "not json at all\n"
				  "{\"epoch\":5,\"seq\":3,\"start\":1,\"end\":2,\"flows\":[],\"lost\":[]}\n");
	struct flows *f = flows_new(dir, 6);
	flows_send(f, 10, capture, NULL);
	CHECK(n_sent == 2 && member(sent[0], "seq") == 1 && member(sent[1], "seq") == 3);
	release_sent();
	CHECK(status_of(f, "quarantined") == 2 && lines_of(FLOWS_QUARANTINE_FILE) == 2);
	char *q = slurp(FLOWS_QUARANTINE_FILE);
	CHECK(q && strstr(q, "\"line\":\"not json at all\"") && strstr(q, "\"seq\":\"two\"") &&
	      strstr(q, "unreadable in flows.spool"));
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

/* A FLOWS body of n distinct flows, as an agent before the batch bounds
 * made them: one line. */
static char *old_big_batch(uint64_t seq, int n)
{
	json_t *flows = json_array();
	for (int i = 0; i < n; i++)
		json_array_append_new(
		    flows, json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:n,s:n,s:s,s:n,s:s,s:i,s:i,s:i}", "endpoint",
				     "web1", "dir", "ingress", "src", "198.18.0.1", "dst", "198.18.0.2",
				     "proto", "udp", "port", i, "icmp_type", "icmp_code", "verdict", "deny",
				     "policy", "rule", "default-deny", "count", 2, "first", 1, "last", 2));
	json_t *b = json_pack("{s:i,s:I,s:i,s:i,s:o,s:[{s:s,s:i,s:i,s:i}],s:[]}", "epoch", 5, "seq",
			      (json_int_t)seq, "start", 1, "end", 2, "flows", flows, "lost", "endpoint",
			      "web1", "enobufs", 1, "gap", 7, "spool", 0, "hits");
	char *text = json_dumps(b, JSON_COMPACT);
	json_decref(b);
	return text;
}

TEST(an_old_batch_past_the_bounds_is_taken_over_as_several)
{
	make_dir();
	char *big = old_big_batch(3, 10000);
	char *text = malloc(strlen(big) + 200);
	if (!text)
		abort();
	sprintf(text, "{\"epoch\":5,\"seq\":2,\"start\":1,\"end\":2,\"flows\":[],\"lost\":[]}\n%s\n", big);
	put(FLOWS_OLD_SPOOL_FILE, text);
	free(text);
	free(big);
	struct flows *f = flows_new(dir, 6);
	CHECK(file_size(FLOWS_OLD_SPOOL_FILE) < 0);
	uint64_t flows = 0, packets = 0, gap = 0, batches = 0;
	bool all_decode = true, named = true;
	for (int round = 0; round < 100; round++) {
		flows_send(f, 10, capture, NULL);
		if (!n_sent)
			break;
		for (size_t i = 0; i < n_sent; i++) {
			json_int_t seq = member(sent[i], "seq");
			/* seq 2, then 3 and its parts (3 + k * 2^40) */
			named &= batches == 0 ? seq == 2 : seq == 3 + ((json_int_t)(batches - 1) << 40);
			batches++;
			all_decode &= decodes(sent[i]);
			size_t n = json_array_size(json_object_get(sent[i], "flows")) +
				   json_array_size(json_object_get(sent[i], "lost"));
			CHECK(n <= FLOWS_BATCH_MAX);
			flows += json_array_size(json_object_get(sent[i], "flows"));
			packets += sum_of(sent[i], "flows", "count");
			gap += sum_of(sent[i], "lost", "gap");
			flows_acked(f, 5, (uint64_t)seq);
		}
		release_sent();
	}
	CHECK(batches >= 4 && named && all_decode);
	CHECK(flows == 10000 && packets == 20000 && gap == 7);
	flows_free(f);
	CHECK(n_segments() == 0);
	remove_dir();
}

TEST(what_the_agent_sends_keeps_to_the_wire_schema)
{
	struct flows *f = flows_new(NULL, 13);
	/* Counters that ran away (a kernel's, a bug's): capped, not refused. */
	flows_lost(f, "web1", UINT64_MAX / 2, UINT64_MAX / 2);
	flows_lost(f, "web1", UINT64_MAX / 2, UINT64_MAX / 2);
	flows_hit(f, "web1", DIR_INGRESS, "r1", NULL, "deny", UINT64_MAX, UINT64_MAX, 10);
	record_packet(f, 53, 10);
	/* Names written as JSON by hand: quotes, control characters and bytes
	 * that are not UTF-8 still make a body that decodes. */
	struct nflog_event ev = {.family = AF_INET6, .proto = 58, .has_icmp = true, .icmp_type = 128};
	ev.src[0] = 0x20, ev.src[1] = 0x01, ev.src[2] = 0x0d, ev.src[3] = 0xb8, ev.src[15] = 1;
	ev.dst[0] = 0x20, ev.dst[1] = 0x01, ev.dst[2] = 0x0d, ev.dst[3] = 0xb8, ev.dst[15] = 2;
	ev.prefix.verdict = VERDICT_AUDIT;
	ev.prefix.dir = DIR_EGRESS;
	flows_record(f, "we\"b\\1\x1b", &ev, "p\xc3\xa9", "r\xff\x01", 10);
	flows_tick(f, 20, 1, true);
	flows_send(f, 30, capture, NULL);
	CHECK(n_sent == 1);
	if (n_sent == 1) {
		CHECK(decodes(sent[0]));
		json_t *odd = json_array_get(json_object_get(sent[0], "flows"), 0);
		if (member(odd, "port") == 53)
			odd = json_array_get(json_object_get(sent[0], "flows"), 1);
		CHECK_STR(json_string_value(json_object_get(odd, "endpoint")), "we\"b\\1\x1b");
		CHECK_STR(json_string_value(json_object_get(odd, "policy")), "p\xc3\xa9");
		CHECK_STR(json_string_value(json_object_get(odd, "rule")), "r?\x01");
		CHECK_STR(json_string_value(json_object_get(odd, "src")), "2001:db8::1");
		CHECK(member(odd, "icmp_type") == 128 && member(odd, "icmp_code") == 0 &&
		      json_is_null(json_object_get(odd, "port")));
		json_t *lost = json_array_get(json_object_get(sent[0], "lost"), 0);
		json_t *hit = json_array_get(json_object_get(sent[0], "hits"), 0);
		CHECK(member(lost, "gap") == PROTO_FLOWS_COUNT_MAX &&
		      member(lost, "enobufs") == PROTO_FLOWS_COUNT_MAX);
		CHECK(member(hit, "packets") == PROTO_FLOWS_COUNT_MAX &&
		      member(hit, "bytes") == PROTO_FLOWS_BYTES_MAX);
	}
	release_sent();
	flows_free(f);
}

TEST(a_full_window_goes_as_batches_within_the_bounds)
{
	/* Half the wire's limits: room for names longer than this test's. */
	CHECK(2 * FLOWS_BATCH_BYTES <= proto_limits[PROTO_FLOWS].bytes);
	make_dir();
	struct flows *f = flows_new(dir, 14);
	/* More distinct flows than a window holds, within one tick, and hits. */
	for (uint32_t i = 0; i < 300; i++) {
		char rule[32];
		snprintf(rule, sizeof(rule), "web-in#%u", i);
		flows_hit(f, "web1", DIR_INGRESS, rule, "web-in", "allow", 5, 500, 10);
	}
	for (uint32_t i = 0; i < FLOWS_WINDOW_MAX + 10; i++) {
		struct nflog_event ev = {
		    .family = AF_INET, .proto = 17, .has_port = true, .port = (uint16_t)i};
		ev.src[0] = 198, ev.src[1] = 18, ev.src[2] = (uint8_t)(i >> 16), ev.src[3] = 1;
		ev.dst[0] = 198, ev.dst[1] = 18, ev.dst[3] = 2;
		ev.prefix.verdict = VERDICT_DROP;
		ev.prefix.dir = DIR_INGRESS;
		ev.prefix.position = -1;
		flows_record(f, "web1", &ev, NULL, "default-deny", 10);
	}
	flows_tick(f, 20, 1000, true);
	size_t batches = 0, flows = 0, hits = 0;
	bool all_decode = true, within = true, distinct = true;
	json_int_t last_seq = 0;
	for (int round = 0; round < 1000; round++) {
		flows_send(f, 30, capture, NULL);
		if (!n_sent)
			break;
		for (size_t i = 0; i < n_sent; i++) {
			batches++;
			size_t nf = json_array_size(json_object_get(sent[i], "flows")),
			       nh = json_array_size(json_object_get(sent[i], "hits"));
			flows += nf;
			hits += nh;
			all_decode &= decodes(sent[i]);
			char *text = json_dumps(sent[i], JSON_COMPACT);
			within &=
			    nf + nh + json_array_size(json_object_get(sent[i], "lost")) <= FLOWS_BATCH_MAX &&
			    text && strlen(text) <= FLOWS_BATCH_BYTES;
			free(text);
			distinct &= member(sent[i], "seq") > last_seq;
			last_seq = member(sent[i], "seq");
			flows_acked(f, (uint64_t)member(sent[i], "epoch"), (uint64_t)member(sent[i], "seq"));
		}
		release_sent();
	}
	fprintf(stderr, "  # %zu flows and %zu hits in %zu batches\n", flows, hits, batches);
	CHECK(flows == FLOWS_WINDOW_MAX + 10 && hits == 300);
	CHECK(batches >= (FLOWS_WINDOW_MAX + 310) / FLOWS_BATCH_MAX + 1);
	CHECK(all_decode && within && distinct);
	flows_free(f);
	remove_dir();
}

TEST(a_record_checks_its_frame_and_checksum)
{
	CHECK(spool_crc32c(0, "123456789", 9) == 0xe3069283u); /* CRC-32C's check value */
	char hdr[SPOOL_HEADER_LEN + 1];
	spool_record_header(hdr, 'B', 0x1234, 7, "{}", 2);
	CHECK(strlen(hdr) == SPOOL_HEADER_LEN);
	struct spool_record r;
	CHECK(spool_header_parse(hdr, &r) == 0 && r.kind == 'B' && r.epoch == 0x1234 && r.seq == 7 &&
	      r.len == 2);
	CHECK(spool_record_check(&r, hdr, "{}\n") == 0);
	CHECK(spool_record_check(&r, hdr, "{]\n") == -EBADMSG);
	CHECK(spool_record_check(&r, hdr, "{}x") == -EBADMSG);
	char bad[SPOOL_HEADER_LEN + 1];
	memcpy(bad, hdr, sizeof(bad));
	bad[0] = 'X';
	CHECK(spool_header_parse(bad, &r) == -EBADMSG);
	memcpy(bad, hdr, sizeof(bad));
	bad[20] = 'G';
	CHECK(spool_header_parse(bad, &r) == -EBADMSG);
	spool_record_header(hdr, 'D', 1, 2, "x", 1); /* a done record carries nothing */
	CHECK(spool_header_parse(hdr, &r) == -EBADMSG);
}

int main(void)
{
	return test_main();
}
