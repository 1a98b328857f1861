/* Fuzz target: the agent's handling of what the controller sends (BUNDLE,
 * DELTA, RESYNC, FLOWS_ACK, ...) and of its own state files (the cached
 * bundle and its revision file, counters.json, the flow spool's segments
 * and the files of older versions it takes over), with the null dataplane
 * (every table planned, none loaded, no root needed): the agent core with
 * its controller session (session.c) and link (link.c), whose DEALER
 * reaches this file's ROUTER over inproc; the loop runs a round after each
 * message.
 *
 * Each input is a fresh agent (node n1) over an empty state directory in a
 * temporary directory (tmpfs when there is one). The input is records, each
 * a line starting with '@' and the lines that follow it up to the next
 * such line (without the newline before it):
 *
 *   @FILE NAME      the state directory's file NAME holds what follows
 *                   (flows.d/NAME: a spool segment; "inventory": the
 *                   agent's inventory file); read when the agent starts,
 *                   at its first other record or after a @RESTART
 *   @MSG TYPE       a message (TYPE, body frames) from the controller
 *   @BUNDLE REV     a BUNDLE of revision REV, the bundle being what
 *                   follows with the hash its content has (a mutated
 *                   bundle gets past the hash check)
 *   @DELTA REV      a DELTA of what follows (its "sets") against the bundle
 *                   the agent holds, naming the hash the result has
 *   @ACKALL REASON  a FLOWS_ACK for every batch in the spool's segments
 *                   (and older versions' files), rejecting it for REASON
 *                   when there is one
 *   @RESTART        the agent stops cleanly and starts again from its
 *                   state directory
 *
 * A bundle for n1 that verifies must be the one in force once it is taken
 * (status.json says so), and again after a restart from the cache. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

#include "bulkhead/bundle.h"
#include "bulkhead/log.h"
#include "bulkhead/loop.h"
#include "bulkhead/proto.h"
#include "agent.h"
#include "counters.h"
#include "dataplane.h"
#include "flows.h"
#include "session.h"
#include "source.h"
#include "spool.h"
#include "state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RECORDS_MAX 48

static const char inventory_text[] =
    "{\"node\":\"n1\",\"endpoints\":["
    "{\"name\":\"web-1\",\"netns\":\"/run/netns/web-1\",\"labels\":{\"app\":\"web\"},"
    "\"addresses\":[\"198.18.0.1\",\"2001:db8::1\"]},"
    "{\"name\":\"db-1\",\"netns\":\"/run/netns/"
    "db-1\",\"labels\":{\"app\":\"db\"},\"addresses\":[\"198.18.0.2\"]},"
    "{\"name\":\"spare\",\"labels\":{}}]}";

static char base_dir[256], state_dir[300], inventory_path[300];
static FILE *report; /* what this harness finds */
/* One context for the process (a context per input costs its threads),
 * and the controller's end of every agent's link. */
static void *zctx, *controller;
#define LINK_ENDPOINT "inproc://bulkhead-fuzz-agent"

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void cleanup(void)
{
	if (controller)
		zmq_close(controller);
	if (zctx)
		zmq_ctx_term(zctx);
	if (base_dir[0])
		nftw(base_dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void write_file(const char *path, const void *text, size_t len)
{
	FILE *f = fopen(path, "w");
	if (!f || fwrite(text, 1, len, f) != len || fclose(f) != 0)
		abort();
}

/* Empties the state directory. */
static void state_clear(void)
{
	nftw(state_dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	if (mkdir(state_dir, 0700) < 0)
		abort();
}

static void setup(void)
{
	if (base_dir[0])
		return;
	log_setup("fuzz-agent", false);
	/* The agent logs every bundle and batch: its log (stdio's stderr)
	 * goes nowhere unless asked for; the sanitizers and this file's own
	 * findings still reach fd 2. */
	report = fdopen(dup(2), "w");
	if (!report)
		abort();
	setvbuf(report, NULL, _IONBF, 0);
	if (!getenv("BULKHEAD_FUZZ_LOG") && !(stderr = fopen("/dev/null", "w")))
		abort();
	const char *tmp = getenv("BULKHEAD_FUZZ_DIR");
	struct stat st;
	if (!tmp)
		tmp = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0
			  ? "/dev/shm"
		      : getenv("TMPDIR") ? getenv("TMPDIR")
					 : "/tmp";
	snprintf(base_dir, sizeof(base_dir), "%s/bulkhead-fuzz-agent.XXXXXX", tmp);
	if (!mkdtemp(base_dir))
		abort();
	atexit(cleanup);
	snprintf(state_dir, sizeof(state_dir), "%s/state", base_dir);
	snprintf(inventory_path, sizeof(inventory_path), "%s/inventory.json", base_dir);
	int zero = 0;
	if (!(zctx = zmq_ctx_new()) || !(controller = zmq_socket(zctx, ZMQ_ROUTER)) ||
	    zmq_setsockopt(controller, ZMQ_LINGER, &zero, sizeof(zero)) < 0 ||
	    zmq_bind(controller, LINK_ENDPOINT) < 0)
		abort();
}

/* The routing id of the agent's connection, from what it sent last. */
static char agent_rid[256];
static size_t agent_rid_len;

/* What the agent sent: each message is one the controller reads. */
static void drain(void)
{
	for (;;) {
		zmq_msg_t part[4];
		int n = 0, more = 1;
		while (more) {
			zmq_msg_t m;
			zmq_msg_init(&m);
			if (zmq_msg_recv(&m, controller, ZMQ_DONTWAIT) < 0) {
				zmq_msg_close(&m);
				break;
			}
			more = zmq_msg_more(&m);
			if (n < 4)
				part[n++] = m;
			else
				abort();
		}
		if (!n)
			return;
		struct proto_msg msg;
		char err[256];
		if (n != 3 ||
		    proto_decode(zmq_msg_data(&part[1]), zmq_msg_size(&part[1]), zmq_msg_data(&part[2]),
				 zmq_msg_size(&part[2]), &msg, err, sizeof(err)) < 0) {
			fprintf(report, "fuzz-agent: the agent sent what the controller drops: %s\n",
				n == 3 ? err : "not 2 frames");
			abort();
		}
		if (!proto_sent_by_agent(msg.type))
			abort();
		proto_msg_release(&msg);
		if (zmq_msg_size(&part[0]) <= sizeof(agent_rid)) {
			agent_rid_len = zmq_msg_size(&part[0]);
			memcpy(agent_rid, zmq_msg_data(&part[0]), agent_rid_len);
		}
		for (int i = 0; i < n; i++)
			zmq_msg_close(&part[i]);
	}
}

/* ---- the agent ---- */

struct world {
	struct link_options link;
	struct session_options so;
	struct agent_options o;
	struct loop *loop;
	struct agent *agent;
	json_t *held;	    /* the bundle sent that the agent took last (NULL: none) */
	bool files_changed; /* state files written since: a restart may find others */
};

/* The bundle status.json says the agent enforces ("" for none). */
static void status_bundle(char out[BUNDLE_HASH_HEX + 1])
{
	char *text;
	size_t len;
	out[0] = '\0';
	if (state_read(state_dir, STATE_STATUS, 1 << 24, &text, &len) < 0)
		abort(); /* the agent writes it at every start */
	json_t *st = json_loadb(text, len, 0, NULL);
	free(text);
	if (!json_is_object(st))
		abort();
	snprintf(out, BUNDLE_HASH_HEX + 1, "%s", json_string_value(json_object_get(st, "bundle")) ?: "");
	json_decref(st);
}

/* A bundle that verified was sent: it is the one in force now. */
static void expect_held(struct world *w, const char *what)
{
	char now[BUNDLE_HASH_HEX + 1];
	status_bundle(now);
	const char *want = json_string_value(json_object_get(w->held, "hash"));
	if (strcmp(now, want) != 0) {
		fprintf(report, "fuzz-agent: %s: the agent enforces \"%s\", not the bundle %s it took\n",
			what, now, want);
		abort();
	}
}

static bool takes(json_t *bundle);

/* A round of the agent's loop: the link reads what waits, the core acts. */
static void pump(struct world *w)
{
	for (int i = 0; i < 2; i++)
		if (loop_run_once(w->loop) < 0)
			abort();
	drain();
}

static void agent_up(struct world *w)
{
	if (w->agent)
		return;
	w->loop = loop_new();
	struct dataplane *dp = dataplane_null_new(w->o.nflog_group);
	w->agent = w->loop && dp ? agent_new(&w->o, w->loop, dp) : NULL;
	if (!w->agent)
		abort();
	agent_set_session(w->agent, session_new(w->loop, &w->so, &agent_session_peer, w->agent));
	agent_add_source(w->agent, source_file_new(inventory_path, w->o.node));
	agent_rid_len = 0;
	agent_start(w->agent, false);
	pump(w); /* its HELLO names its connection */
	if (!agent_rid_len)
		abort();
	w->files_changed = false;
	/* Started from a cached bundle: what a DELTA goes against. */
	char *text, now[BUNDLE_HASH_HEX + 1];
	size_t len;
	status_bundle(now);
	if (w->held || !now[0] || state_read(state_dir, STATE_BUNDLE, 1 << 26, &text, &len) < 0)
		return;
	json_t *cached = json_loadb(text, len, 0, NULL);
	free(text);
	if (cached && takes(cached) && strcmp(json_string_value(json_object_get(cached, "hash")), now) == 0)
		w->held = json_incref(cached);
	json_decref(cached);
}

static void agent_down(struct world *w)
{
	if (!w->agent)
		return;
	drain();
	agent_stop(w->agent);
	agent_free(w->agent);
	loop_free(w->loop);
	w->agent = NULL;
	w->loop = NULL;
}

/* Sends a message to the agent and lets it act; false when its link drops
 * it (it does not decode). */
static bool deliver(struct world *w, const char *type, size_t type_len, const void *body, size_t body_len)
{
	struct proto_msg m;
	char err[256];
	bool decodes = proto_decode(type, type_len, body, body_len, &m, err, sizeof(err)) == 0;
	if (decodes)
		proto_msg_release(&m);
	agent_up(w);
	if (zmq_send(controller, agent_rid, agent_rid_len, ZMQ_SNDMORE) < 0 ||
	    zmq_send(controller, type, type_len, ZMQ_SNDMORE) < 0 ||
	    zmq_send(controller, body, body_len, 0) < 0)
		abort();
	pump(w);
	return decodes;
}

/* Takes the reference to body. */
static bool deliver_json(struct world *w, enum proto_type t, json_t *body)
{
	size_t len;
	char *text = proto_encode(body, &len);
	if (!text)
		abort();
	const char *type = proto_type_name(t);
	bool r = deliver(w, type, strlen(type), text, len);
	free(text);
	return r;
}

/* Gives bundle the hash of its content; false when it does not decode
 * for another reason (then it keeps the hash it had). */
static bool fix_hash(json_t *bundle)
{
	if (!json_is_object(bundle))
		return false;
	json_t *was = json_incref(json_object_get(bundle, "hash"));
	json_object_set_new(bundle, "hash", json_string(""));
	struct diag d;
	diag_init(&d, "fuzz");
	struct bundle *b = bundle_from_json(bundle, &d);
	static const char said[] = "hash mismatch: content hashes to ";
	bool fixed = !b && d.n == 1 && strcmp(d.v[0].path, "/hash") == 0 &&
		     strncmp(d.v[0].message, said, strlen(said)) == 0;
	if (fixed)
		json_object_set_new(bundle, "hash", json_string(d.v[0].message + strlen(said)));
	else if (was)
		json_object_set(bundle, "hash", was);
	else
		json_object_del(bundle, "hash");
	json_decref(was);
	bundle_free(b);
	diag_release(&d);
	return fixed;
}

/* Whether the agent must take bundle (it verifies, and it is n1's). */
static bool takes(json_t *bundle)
{
	struct diag d;
	diag_init(&d, "fuzz");
	struct bundle *b = bundle_from_json(bundle, &d);
	bool ok = b && strcmp(b->node, "n1") == 0;
	bundle_free(b);
	diag_release(&d);
	return ok;
}

static void on_bundle(struct world *w, long revision, const char *text, size_t len)
{
	json_t *bundle = json_loadb(text, len, 0, NULL);
	if (!bundle)
		return;
	bool fixed = fix_hash(bundle);
	bool taken = fixed && takes(bundle);
	if (deliver_json(w, PROTO_BUNDLE,
			 json_pack("{s:I,s:O}", "revision", (json_int_t)revision, "bundle", bundle)) &&
	    taken) {
		json_decref(w->held);
		w->held = json_incref(bundle);
		expect_held(w, "BUNDLE");
	}
	json_decref(bundle);
}

static void on_delta(struct world *w, long revision, const char *text, size_t len)
{
	json_t *sets = json_loadb(text, len, JSON_DECODE_ANY, NULL);
	if (!sets || !w->held) {
		json_decref(sets);
		return;
	}
	struct diag d;
	diag_init(&d, "fuzz");
	json_t *next = proto_delta_apply(w->held, sets, &d);
	diag_release(&d);
	bool taken = next && fix_hash(next) && takes(next);
	const char *hash = json_string_value(json_object_get(next, "hash"));
	if (deliver_json(
		w, PROTO_DELTA,
		json_pack("{s:I,s:O,s:s,s:O}", "revision", (json_int_t)revision, "base",
			  json_object_get(w->held, "hash"), "hash",
			  hash ? hash : "0000000000000000000000000000000000000000000000000000000000000000",
			  "sets", sets)) &&
	    taken) {
		json_decref(w->held);
		w->held = json_incref(next);
		expect_held(w, "DELTA");
	}
	json_decref(next);
	json_decref(sets);
}

static void ack_one(struct world *w, json_t *epoch, json_t *seq, const char *reason)
{
	json_t *ack = json_pack("{s:O,s:O}", "epoch", epoch, "seq", seq);
	if (reason)
		json_object_set_new(ack, "rejected", json_string(reason));
	deliver_json(w, PROTO_FLOWS_ACK, ack);
}

/* A FLOWS_ACK for each batch record of a spool segment. */
static void ack_segment(struct world *w, const char *name, const char *reason)
{
	char *text;
	size_t len;
	if (state_read(state_dir, name, SPOOL_DISK_MAX, &text, &len) < 0)
		return;
	size_t at = strlen(SPOOL_MAGIC);
	if (len < at || memcmp(text, SPOOL_MAGIC, at) != 0)
		at = len;
	while (at + SPOOL_HEADER_LEN <= len) {
		char hdr[SPOOL_HEADER_LEN + 1];
		memcpy(hdr, text + at, SPOOL_HEADER_LEN);
		hdr[SPOOL_HEADER_LEN] = '\0';
		struct spool_record r;
		if (spool_header_parse(hdr, &r) < 0)
			break;
		if (r.kind == 'B') {
			json_t *epoch = json_integer((json_int_t)r.epoch),
			       *seq = json_integer((json_int_t)r.seq);
			ack_one(w, epoch, seq, reason);
			json_decref(epoch);
			json_decref(seq);
		}
		at += SPOOL_HEADER_LEN + (size_t)r.len + 1;
	}
	free(text);
}

/* A FLOWS_ACK for each batch line of an older version's spool file. */
static void ack_file(struct world *w, const char *name, const char *reason)
{
	char *text;
	size_t len;
	if (state_read(state_dir, name, SPOOL_DISK_MAX, &text, &len) < 0)
		return;
	for (char *line = text, *end; (end = strchr(line, '\n')); line = end + 1) {
		json_t *b = json_loadb(line, (size_t)(end - line), 0, NULL);
		json_t *epoch = json_object_get(b, "epoch"), *seq = json_object_get(b, "seq");
		if (json_is_integer(epoch) && json_is_integer(seq))
			ack_one(w, epoch, seq, reason);
		json_decref(b);
	}
	free(text);
}

/* counters.json as the agent saved it: each endpoint's readings load. */
static void check_counters(const char *text, size_t len)
{
	json_t *saved = json_loadb(text, len, 0, NULL);
	const char *name;
	json_t *e;
	json_object_foreach (saved, name, e) {
		struct counters *c = counters_new();
		if (counters_load(c, json_object_get(e, "readings")) == 0) {
			json_t *back = counters_save(c);
			if (!json_is_array(back))
				abort();
			json_decref(back);
		}
		counters_free(c);
	}
	json_decref(saved);
}

static long number(const char *s, size_t len)
{
	if (len && s[0] == '-')
		return -number(s + 1, len - 1);
	long v = 0;
	for (size_t i = 0; i < len && s[i] >= '0' && s[i] <= '9' && v < (1L << 53); i++)
		v = v * 10 + (s[i] - '0');
	return v;
}

static void record(struct world *w, const char *head, size_t head_len, const char *body, size_t body_len)
{
	const char *sp = memchr(head, ' ', head_len);
	size_t op_len = sp ? (size_t)(sp - head) : head_len;
	const char *arg = sp ? sp + 1 : head + head_len;
	size_t arg_len = (size_t)(head + head_len - arg);
	if (op_len == 5 && memcmp(head, "@FILE", 5) == 0) {
		char name[64], path[400];
		static const char seg[] = SPOOL_DIR "/";
		const char *base =
		    arg_len > strlen(seg) && memcmp(arg, seg, strlen(seg)) == 0 ? arg + strlen(seg) : arg;
		size_t base_len = arg_len - (size_t)(base - arg);
		if (!base_len || arg_len >= sizeof(name) || memchr(base, '/', base_len) ||
		    memchr(arg, '\0', arg_len) || (base_len <= 2 && base[0] == '.'))
			return;
		snprintf(name, sizeof(name), "%.*s", (int)arg_len, arg);
		if (base != arg) {
			snprintf(path, sizeof(path), "%s/" SPOOL_DIR, state_dir);
			if (mkdir(path, 0700) < 0 && errno != EEXIST)
				abort();
		}
		if (strcmp(name, "inventory") == 0)
			snprintf(path, sizeof(path), "%s", inventory_path);
		else
			snprintf(path, sizeof(path), "%s/%s", state_dir, name);
		write_file(path, body, body_len);
		if (strcmp(name, STATE_COUNTERS) == 0)
			check_counters(body, body_len);
		w->files_changed = true;
	} else if (op_len == 4 && memcmp(head, "@MSG", 4) == 0) {
		deliver(w, arg, arg_len, body, body_len);
	} else if (op_len == 7 && memcmp(head, "@BUNDLE", 7) == 0) {
		on_bundle(w, number(arg, arg_len), body, body_len);
	} else if (op_len == 6 && memcmp(head, "@DELTA", 6) == 0) {
		agent_up(w);
		on_delta(w, number(arg, arg_len), body, body_len);
	} else if (op_len == 7 && memcmp(head, "@ACKALL", 7) == 0) {
		agent_up(w);
		char *reason = arg_len ? strndup(arg, arg_len) : NULL;
		ack_file(w, FLOWS_OLD_JOURNAL_FILE, reason);
		ack_file(w, FLOWS_OLD_SPOOL_FILE, reason);
		char dir[400];
		snprintf(dir, sizeof(dir), "%s/" SPOOL_DIR, state_dir);
		struct dirent **names = NULL;
		int n = scandir(dir, &names, NULL, alphasort);
		for (int i = 0; i < n; i++) {
			char name[300];
			snprintf(name, sizeof(name), SPOOL_DIR "/%s", names[i]->d_name);
			if (names[i]->d_name[0] != '.')
				ack_segment(w, name, reason);
			free(names[i]);
		}
		free(names);
		free(reason);
	} else if (op_len == 8 && memcmp(head, "@RESTART", 8) == 0) {
		bool changed = w->files_changed;
		agent_down(w);
		if (changed) { /* what it starts from is the files' */
			json_decref(w->held);
			w->held = NULL;
		}
		agent_up(w);
		/* The cache holds what it took last: an older bundle never comes back. */
		if (w->held && !changed)
			expect_held(w, "restart");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	setup();
	state_clear();
	write_file(inventory_path, inventory_text, strlen(inventory_text));
	struct world w = {
	    .link = {.endpoint = LINK_ENDPOINT, .insecure = true, .heartbeat_ms = 1000, .zctx = zctx},
	    .so = {.node = "n1", .state_dir = state_dir, .flow_window_ms = 1000},
	    .o = {.node = "n1",
		  .state_dir = state_dir,
		  .nflog_group = 1,
		  .counters_ms = 1000,
		  .recheck_ms = 500},
	};
	w.so.link = &w.link;
	const char *p = (const char *)data, *end = p + size;
	/* Records start at the beginning or at a line starting with '@'. */
	for (int n = 0; p < end && n < RECORDS_MAX; n++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *head_end = nl ? nl : end, *body = nl ? nl + 1 : end, *next = body;
		while (next < end && *next != '@') {
			const char *at = memchr(next, '\n', (size_t)(end - next));
			next = at ? at + 1 : end;
		}
		/* The body ends before the newline that precedes the next record. */
		const char *body_end = next < end && next > body ? next - 1 : next;
		if (*p == '@')
			record(&w, p, (size_t)(head_end - p), body, (size_t)(body_end - body));
		p = next;
	}
	agent_up(&w); /* its state files are read even with no message */
	agent_down(&w);
	json_decref(w.held);
	return 0;
}
