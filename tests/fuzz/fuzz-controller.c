/* Fuzz target: the controller's handling of agents' messages, past
 * decoding — sessions, HELLO / ENDPOINTS / ACK / FLOWS / HEARTBEAT, label
 * rules, the compiler's refresh, the pushes of bundles and deltas, the
 * heartbeat tick and the flow store — as the controller's loop runs them
 * (sessions_handle(), then compiler_refresh, sessions_push_all, sessions_tick).
 *
 * Each input is fresh state: a new SQLite store in a temporary directory
 * (tmpfs when there is one), compiler and agents, over a fixed agent
 * allow-list. The input is lines; the first one sets options:
 *
 *   insecure rate=N quota=N retention=SECONDS max-nodes=N policy=K
 *
 * (any subset; without "insecure": CURVE semantics, the allow-list keys
 * n1, n2, n3 with n1.labels {"tenant":["a"],"app":"*"} and an invalid
 * n3.labels). Every other line is a message or a step:
 *
 *   S USER TYPE BODY   a message on session S ('0'-'3': connections that
 *                      read what the controller sends; '4'-'8': routing ids
 *                      nobody holds; '9': one longer than ROUTER allows)
 *                      whose key belongs to USER (a node name; "-": no
 *                      User-Id)
 *   !tick MS           the clock moves on MS ms; the tick runs
 *   !policy K          policy K (1-3) is applied
 *   !labels NODE TEXT  the allow-list's NODE.labels is now TEXT (none
 *                      when empty); the tick that re-reads it runs
 *   !forget NODE       bulkhead nodes forget NODE --force
 *   !ack S             session S acknowledges what it was sent last
 *   !rehello S         session S says its last HELLO again, holding what
 *                      it was sent last
 *   !status            bulkhead status
 *   !frames S F|F|...  session S's socket sends these frames (split at
 *                      '|'), read by the controller's loop (one round)
 *
 * What the controller sends must decode as the agent decodes it; every
 * BUNDLE must verify and be for the node the session said HELLO as; every
 * DELTA against a bundle sent before must produce the hash it names. */
#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

#include "bulkhead/admin.h"
#include "bulkhead/bundle.h"
#include "bulkhead/inventory.h"
#include "bulkhead/log.h"
#include "bulkhead/proto.h"
#include "bulkhead/loop.h"
#include "admin.h"
#include "compiler.h"
#include "node.h"
#include "sessions.h"
#include "store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SESSIONS  4  /* '0'-'3' are read back */
#define KNOWN_MAX 32 /* bundles remembered (by hash) to check deltas */
#define LINES_MAX 64

static const char *const policies[] = {
    /* 1: label groups, a network with an exception, deny and audit, a
     * named port (tcp/pg: db's ingress resolves it, web's egress tables it). */
    "{\"version\":1,\"defaults\":{\"ingress\":\"deny\",\"egress\":\"allow\"},\"groups\":{"
    "\"web\":{\"labels\":{\"app\":\"web\"}},\"db\":{\"labels\":{\"app\":\"db\"}},"
    "\"a\":{\"expressions\":[{\"key\":\"tenant\",\"op\":\"In\",\"values\":[\"a\"]}]},"
    "\"not-a\":{\"expressions\":[{\"key\":\"tenant\",\"op\":\"Exists\"},{\"key\":\"tenant\",\"op\":\"NotIn\","
    "\"values\":[\"a\"]}]},"
    "\"ops\":{\"cidrs\":[\"203.0.113.0/24\",\"2001:db8:100::/56\"],\"except\":[\"203.0.113.8/29\"]}},"
    "\"policies\":[{\"name\":\"iso\",\"applies_to\":\"a\",\"order\":100,\"ingress\":[{\"action\":\"deny\","
    "\"from\":[\"not-a\"]}],\"egress\":[{\"action\":\"deny\",\"to\":[\"not-a\"]}]},"
    "{\"name\":\"db\",\"applies_to\":\"db\",\"order\":150,\"mode\":\"audit\",\"ingress\":[{\"from\":[\"web\"]"
    ","
    "\"ports\":[\"tcp/5432\",\"tcp/pg\"]},{\"action\":\"deny\"}]},"
    "{\"name\":\"web\",\"applies_to\":\"web\",\"order\":200,\"ingress\":[{\"from\":[\"ops\"],\"ports\":"
    "[\"tcp/443\",\"udp/53\"]}],\"egress\":[{\"to\":[\"db\"],\"ports\":[\"tcp/5432\",\"tcp/pg\"]}]}]}",
    /* 2: the same rules, other network elements: a set delta from 1. */
    "{\"version\":1,\"defaults\":{\"ingress\":\"deny\",\"egress\":\"allow\"},\"groups\":{"
    "\"web\":{\"labels\":{\"app\":\"web\"}},\"db\":{\"labels\":{\"app\":\"db\"}},"
    "\"a\":{\"expressions\":[{\"key\":\"tenant\",\"op\":\"In\",\"values\":[\"a\"]}]},"
    "\"not-a\":{\"expressions\":[{\"key\":\"tenant\",\"op\":\"Exists\"},{\"key\":\"tenant\",\"op\":\"NotIn\","
    "\"values\":[\"a\"]}]},"
    "\"ops\":{\"cidrs\":[\"203.0.113.0/25\",\"2001:db8:100::/48\",\"192.0.2.7\"]}},"
    "\"policies\":[{\"name\":\"iso\",\"applies_to\":\"a\",\"order\":100,\"ingress\":[{\"action\":\"deny\","
    "\"from\":[\"not-a\"]}],\"egress\":[{\"action\":\"deny\",\"to\":[\"not-a\"]}]},"
    "{\"name\":\"db\",\"applies_to\":\"db\",\"order\":150,\"mode\":\"audit\",\"ingress\":[{\"from\":[\"web\"]"
    ","
    "\"ports\":[\"tcp/5432\",\"tcp/pg\"]},{\"action\":\"deny\"}]},"
    "{\"name\":\"web\",\"applies_to\":\"web\",\"order\":200,\"ingress\":[{\"from\":[\"ops\"],\"ports\":"
    "[\"tcp/443\",\"udp/53\"]}],\"egress\":[{\"to\":[\"db\"],\"ports\":[\"tcp/5432\",\"tcp/pg\"]}]}]}",
    /* 3: allow by default, one inline peer. */
    "{\"version\":1,\"defaults\":{\"ingress\":\"allow\",\"egress\":\"allow\"},\"policies\":[{\"name\":\"p\","
    "\"applies_to\":{\"labels\":{\"app\":\"db\"}},\"ingress\":[{\"action\":\"deny\",\"from\":[{\"labels\":"
    "{\"tenant\":\"b\"}}]}]}]}",
};

static const char *const allowed[] = {"n1", "n2", "n3"};
static const char n1_labels[] = "{\"tenant\":[\"a\"],\"app\":\"*\"}";
static const char n3_labels[] = "{\"tenant\": 5}";

static char base_dir[256], state_dir[300], keys_dir[300], template_db[400];
static void *zctx;   /* one for the process: a context per input costs its threads */
static FILE *report; /* what this harness finds */

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void cleanup(void)
{
	if (zctx)
		zmq_ctx_term(zctx);
	if (base_dir[0])
		nftw(base_dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void write_file(const char *dir, const char *name, const char *text, size_t len)
{
	char path[512], tmp[520];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	FILE *f = fopen(tmp, "w");
	if (!f || fwrite(text, 1, len, f) != len || fclose(f) != 0 || rename(tmp, path) < 0)
		abort();
}

static void remove_file(const char *dir, const char *name)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (unlink(path) < 0 && errno != ENOENT)
		abort();
}

/* The label rules every input starts from. */
static void labels_reset(void)
{
	write_file(keys_dir, "n1.labels", n1_labels, strlen(n1_labels));
	remove_file(keys_dir, "n2.labels");
	write_file(keys_dir, "n3.labels", n3_labels, strlen(n3_labels));
}

static void setup(void)
{
	if (base_dir[0])
		return;
	log_setup("fuzz-controller", false);
	/* The controller logs every message it drops: thousands of lines a
	 * second. Its log (stdio's stderr) goes nowhere unless asked for; the
	 * sanitizers and this file's own findings still reach fd 2. */
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
	snprintf(base_dir, sizeof(base_dir), "%s/bulkhead-fuzz-controller.XXXXXX", tmp);
	if (!mkdtemp(base_dir))
		abort();
	atexit(cleanup);
	snprintf(state_dir, sizeof(state_dir), "%s/state", base_dir);
	snprintf(keys_dir, sizeof(keys_dir), "%s/keys", base_dir);
	if (mkdir(keys_dir, 0700) < 0)
		abort();
	for (size_t i = 0; i < BH_ARRAY_SIZE(allowed); i++) {
		char pub[41], sec[41], name[32], line[48];
		if (zmq_curve_keypair(pub, sec) < 0)
			abort();
		snprintf(name, sizeof(name), "%s.key", allowed[i]);
		int n = snprintf(line, sizeof(line), "%s\n", pub);
		write_file(keys_dir, name, line, (size_t)n);
	}
	labels_reset();
	/* A database with the schema, copied for every input. */
	char dir[300], *err = NULL;
	snprintf(dir, sizeof(dir), "%s/template", base_dir);
	struct store *tmpl = store_open(dir, &err);
	if (!tmpl)
		abort();
	store_free(tmpl);
	snprintf(template_db, sizeof(template_db), "%s/" STORE_FILE, dir);
	if (mkdir(state_dir, 0700) < 0)
		abort();
	zctx = zmq_ctx_new();
	if (!zctx)
		abort();
}

static void copy_file(const char *from, const char *to)
{
	FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
	char buf[65536];
	size_t n;
	if (!in || !out)
		abort();
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		if (fwrite(buf, 1, n, out) != n)
			abort();
	if (ferror(in) || fclose(out) != 0)
		abort();
	fclose(in);
}

/* ---- what the controller sends, as the sessions receive it ---- */

struct known {
	char hash[BUNDLE_HASH_HEX + 1];
	json_t *bundle;
};

struct session {
	void *sock;
	char rid[4];
	char *node;	  /* its last HELLO that was not refused */
	char *user;	  /* the key of its last message */
	json_t *hello;	  /* that HELLO's body */
	int64_t revision; /* what it was sent last */
	char hash[BUNDLE_HASH_HEX + 1];
	bool refused; /* answered REFUSED since the last message */
};

struct world {
	struct sessions_options o;
	struct store *store;
	struct loop *loop; /* never run: the harness makes the turns */
	struct nodes *nodes;
	struct compiler *compiler;
	struct sessions *sessions;
	char listen[64];
	struct session s[SESSIONS];
	struct known known[KNOWN_MAX];
	size_t n_known;
	int64_t clock_ms; /* added to the monotonic clock */
	bool labels_changed;
};

static json_t *known_bundle(struct world *w, const char *hash)
{
	for (size_t i = 0; i < w->n_known; i++)
		if (strcmp(w->known[i].hash, hash) == 0)
			return w->known[i].bundle;
	return NULL;
}

static void known_add(struct world *w, const char *hash, json_t *bundle)
{
	if (known_bundle(w, hash) || w->n_known == KNOWN_MAX)
		return;
	snprintf(w->known[w->n_known].hash, sizeof(w->known[0].hash), "%s", hash);
	w->known[w->n_known++].bundle = json_incref(bundle);
}

/* A bundle the controller sent: it verifies, and it is the session's node's. */
static void check_bundle(struct world *w, struct session *s, json_t *bundle, const char *what)
{
	struct diag d;
	diag_init(&d, what);
	struct bundle *b = bundle_from_json(bundle, &d);
	if (!b) {
		fprintf(report, "fuzz-controller: the controller sent a %s that does not verify:\n", what);
		diag_print(&d, report);
		abort();
	}
	if (!s->node || strcmp(b->node, s->node) != 0) {
		fprintf(report, "fuzz-controller: session %s (node %s) was sent node %s's %s\n", s->rid,
			s->node ? s->node : "none", b->node, what);
		abort();
	}
	known_add(w, b->hash, bundle);
	bundle_free(b);
	diag_release(&d);
}

static void on_sent(struct world *w, struct session *s, const void *type, size_t type_len, const void *body,
		    size_t body_len)
{
	struct proto_msg m;
	char err[256];
	if (proto_decode(type, type_len, body, body_len, &m, err, sizeof(err)) < 0) {
		fprintf(report, "fuzz-controller: the controller sent a malformed message: %s\n", err);
		abort();
	}
	if (proto_sent_by_agent(m.type) && m.type != PROTO_HEARTBEAT)
		abort();
	if (m.type == PROTO_REFUSED)
		s->refused = true;
	if (m.type == PROTO_BUNDLE) {
		json_t *bundle = json_object_get(m.body, "bundle");
		check_bundle(w, s, bundle, "bundle");
		s->revision = json_integer_value(json_object_get(m.body, "revision"));
		snprintf(s->hash, sizeof(s->hash), "%s", json_string_value(json_object_get(bundle, "hash")));
	} else if (m.type == PROTO_DELTA) {
		const char *hash = json_string_value(json_object_get(m.body, "hash"));
		json_t *base = known_bundle(w, json_string_value(json_object_get(m.body, "base")));
		if (base) {
			struct diag d;
			diag_init(&d, "delta");
			json_t *next = proto_delta_apply(base, json_object_get(m.body, "sets"), &d);
			if (!next) {
				fprintf(report, "fuzz-controller: the controller's delta does not apply:\n");
				diag_print(&d, report);
				abort();
			}
			json_object_set(next, "hash", json_object_get(m.body, "hash"));
			check_bundle(w, s, next, "delta");
			json_decref(next);
			diag_release(&d);
		}
		s->revision = json_integer_value(json_object_get(m.body, "revision"));
		snprintf(s->hash, sizeof(s->hash), "%s", hash);
	}
	proto_msg_release(&m);
}

static void drain(struct world *w)
{
	for (int i = 0; i < SESSIONS; i++) {
		for (;;) {
			zmq_msg_t part[2];
			zmq_msg_init(&part[0]);
			zmq_msg_init(&part[1]);
			if (zmq_msg_recv(&part[0], w->s[i].sock, ZMQ_DONTWAIT) < 0) {
				zmq_msg_close(&part[0]);
				zmq_msg_close(&part[1]);
				break;
			}
			/* Two frames, always. */
			if (!zmq_msg_more(&part[0]) ||
			    zmq_msg_recv(&part[1], w->s[i].sock, ZMQ_DONTWAIT) < 0 || zmq_msg_more(&part[1]))
				abort();
			on_sent(w, &w->s[i], zmq_msg_data(&part[0]), zmq_msg_size(&part[0]),
				zmq_msg_data(&part[1]), zmq_msg_size(&part[1]));
			zmq_msg_close(&part[0]);
			zmq_msg_close(&part[1]);
		}
	}
}

/* One turn of the controller's loop after a message or a step. */
static void turn(struct world *w)
{
	compiler_refresh(w->compiler);
	sessions_push_all(w->sessions);
	sessions_tick(w->sessions, clock_mono_ms() + w->clock_ms);
	drain(w);
}

/* ---- the input ---- */

static const char *word(const char **p, const char *end, size_t *len)
{
	while (*p < end && **p == ' ')
		(*p)++;
	const char *start = *p;
	while (*p < end && **p != ' ')
		(*p)++;
	*len = (size_t)(*p - start);
	if (*p < end)
		(*p)++;
	return start;
}

static long number(const char *s, size_t len, long max)
{
	long v = 0;
	for (size_t i = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++)
		v = v * 10 + (s[i] - '0') > max ? max : v * 10 + (s[i] - '0');
	return v;
}

static void options(struct sessions_options *o, int *policy, const char *p, const char *end)
{
	*o = (struct sessions_options){.allow_dir = keys_dir, .heartbeat_ms = 1000};
	static char pub[41], sec[41];
	if (!pub[0] && zmq_curve_keypair(pub, sec) < 0)
		abort();
	o->public_key = pub;
	o->secret_key = sec;
	*policy = 0;
	while (p < end) {
		size_t len;
		const char *w = word(&p, end, &len);
		const char *eq = memchr(w, '=', len);
		size_t vlen = eq ? len - (size_t)(eq + 1 - w) : 0;
		if (len == 8 && memcmp(w, "insecure", 8) == 0)
			o->insecure = true;
		else if (eq && eq - w == 4 && memcmp(w, "rate", 4) == 0)
			o->flow_rate = number(eq + 1, vlen, 1000000);
		else if (eq && eq - w == 5 && memcmp(w, "quota", 5) == 0)
			o->flow_quota = number(eq + 1, vlen, 1000000);
		else if (eq && eq - w == 9 && memcmp(w, "retention", 9) == 0)
			o->flow_retention_ms = number(eq + 1, vlen, 100L * 365 * 86400) * 1000;
		else if (eq && eq - w == 9 && memcmp(w, "max-nodes", 9) == 0)
			o->max_nodes = (unsigned)number(eq + 1, vlen, 1000);
		else if (eq && eq - w == 6 && memcmp(w, "policy", 6) == 0)
			*policy = (int)number(eq + 1, vlen, 9);
	}
}

static void apply_policy(struct world *w, int k)
{
	if (k < 1 || k > (int)BH_ARRAY_SIZE(policies))
		return;
	json_t *r = admin_apply_policy(w->store, w->compiler, policies[k - 1], "fuzz", NULL);
	if (!json_is_true(json_object_get(r, "ok")))
		abort(); /* the embedded policies are valid */
	json_decref(r);
}

static const char *rid_of(char s, size_t *len)
{
	static char longer[300];
	if (s >= '0' && s <= '8') {
		static char rid[4][4] = {"s0", "s1", "s2", "s3"};
		static char other[5][4] = {"x4", "x5", "x6", "x7", "x8"};
		*len = 2;
		return s <= '3' ? rid[s - '0'] : other[s - '4'];
	}
	memset(longer, 'r', sizeof(longer));
	*len = sizeof(longer);
	return longer;
}

/* A HELLO the controller reads names the session's node from then on:
 * what it sends at once (the node's bundle) already goes there. The
 * node it named before; hello_end() puts it back when the HELLO was
 * refused. */
static char *hello_begin(struct session *s, json_t *hello)
{
	char *before = s->node;
	const char *node = json_string_value(json_object_get(hello, "node"));
	s->node = node ? xstrdup(node) : NULL;
	return before;
}

static void hello_end(struct session *s, json_t *hello, char *before)
{
	if (s->refused || !json_is_string(json_object_get(hello, "node"))) {
		free(s->node);
		s->node = before;
		return;
	}
	free(before);
	json_decref(s->hello);
	s->hello = json_incref(hello);
}

static void message(struct world *w, const char *p, const char *end)
{
	size_t slen, ulen, tlen;
	const char *sess = word(&p, end, &slen), *user = word(&p, end, &ulen), *type = word(&p, end, &tlen);
	if (slen != 1 || !ulen || !tlen)
		return;
	size_t rid_len;
	const char *rid = rid_of(sess[0], &rid_len);
	char *uid = ulen == 1 && user[0] == '-' ? NULL : strndup(user, ulen);
	/* A User-Id is what the ZAP handler answered: a node name of the
	 * allow-list, checked when it was read. */
	if (uid && !inventory_node_name_valid(uid)) {
		free(uid);
		return;
	}
	struct session *s = sess[0] >= '0' && sess[0] < '0' + SESSIONS ? &w->s[sess[0] - '0'] : NULL;
	json_t *hello = NULL;
	if (s) {
		free(s->user);
		s->user = uid ? xstrdup(uid) : NULL;
		s->refused = false;
		/* A HELLO the controller reads (a malformed one is dropped unanswered). */
		struct proto_msg m;
		char err[256];
		if (tlen == 5 && memcmp(type, "HELLO", 5) == 0 &&
		    proto_decode(type, tlen, p, (size_t)(end - p), &m, err, sizeof(err)) == 0) {
			hello = json_incref(m.body);
			proto_msg_release(&m);
		}
	}
	char *before = s && hello ? hello_begin(s, hello) : NULL;
	sessions_handle(w->sessions, rid, rid_len, uid, type, tlen, p, (size_t)(end - p));
	free(uid);
	drain(w);
	if (s && hello)
		hello_end(s, hello, before);
	json_decref(hello);
	turn(w);
}

/* A message the harness makes for session S (an agent that behaves). */
static void send_as(struct world *w, struct session *s, enum proto_type t, json_t *body)
{
	size_t len;
	char *text = proto_encode(json_incref(body), &len);
	if (!text)
		abort();
	const char *type = proto_type_name(t);
	s->refused = false;
	char *before = t == PROTO_HELLO ? hello_begin(s, body) : NULL;
	sessions_handle(w->sessions, s->rid, strlen(s->rid), s->user, type, strlen(type), text, len);
	free(text);
	drain(w);
	if (t == PROTO_HELLO)
		hello_end(s, body, before);
	json_decref(body);
	turn(w);
}

#define FRAMES_MAX 10

/* Frames as a peer's DEALER sends them, read by the controller's own
 * receive (on_router, zmsg_recv: any number of frames, empty ones) in a
 * round of its loop; the timers and deferred work that are due run too.
 * Inproc carries no User-Id: with CURVE semantics a HELLO this way is
 * refused. */
static void frames(struct world *w, struct session *s, const char *p, const char *end)
{
	const char *f[FRAMES_MAX], *fend[FRAMES_MAX];
	int n = 0;
	for (const char *q = p; n < FRAMES_MAX; n++) {
		const char *bar = memchr(q, '|', (size_t)(end - q));
		f[n] = q;
		fend[n] = bar ? bar : end;
		if (!bar) {
			n++;
			break;
		}
		q = bar + 1;
	}
	json_t *hello = NULL;
	struct proto_msg m;
	char err[256];
	if (n == 2 && fend[0] - f[0] == 5 && memcmp(f[0], "HELLO", 5) == 0 &&
	    proto_decode(f[0], 5, f[1], (size_t)(fend[1] - f[1]), &m, err, sizeof(err)) == 0) {
		hello = json_incref(m.body);
		proto_msg_release(&m);
	}
	for (int i = 0; i < n; i++)
		if (zmq_send(s->sock, f[i], (size_t)(fend[i] - f[i]), i + 1 < n ? ZMQ_SNDMORE : 0) < 0)
			abort();
	s->refused = false;
	char *before = hello ? hello_begin(s, hello) : NULL;
	if (loop_run_once(w->loop) < 0)
		abort();
	drain(w);
	if (hello)
		hello_end(s, hello, before);
	json_decref(hello);
	turn(w);
}

static void step(struct world *w, const char *p, const char *end)
{
	size_t len, alen;
	const char *op = word(&p, end, &len), *arg = word(&p, end, &alen);
	struct session *s =
	    alen == 1 && arg[0] >= '0' && arg[0] < '0' + SESSIONS ? &w->s[arg[0] - '0'] : NULL;
	if (len == 5 && memcmp(op, "!tick", 5) == 0) {
		w->clock_ms += number(arg, alen, 24L * 3600 * 1000);
		turn(w);
	} else if (len == 7 && memcmp(op, "!policy", 7) == 0) {
		apply_policy(w, (int)number(arg, alen, 9));
		turn(w);
	} else if (len == 7 && memcmp(op, "!labels", 7) == 0) {
		if (alen != 2 || arg[0] != 'n' || arg[1] < '1' || arg[1] > '3')
			return;
		char name[16];
		snprintf(name, sizeof(name), "%.2s.labels", arg);
		if (p < end)
			write_file(keys_dir, name, p, (size_t)(end - p));
		else
			remove_file(keys_dir, name);
		w->labels_changed = true;
		/* The directory changed: the next heartbeat's tick re-reads it. */
		w->clock_ms += 1000;
		turn(w);
	} else if (len == 7 && memcmp(op, "!forget", 7) == 0) {
		char *node = strndup(arg, alen);
		bool was_connected;
		int r = sessions_forget(w->sessions, node, true, &was_connected);
		if (r < 0 && r != -ENOENT)
			abort(); /* the store is in a temporary directory */
		free(node);
		turn(w);
	} else if (len == 4 && memcmp(op, "!ack", 4) == 0 && s && s->hash[0]) {
		send_as(w, s, PROTO_ACK,
			json_pack("{s:I,s:s,s:b,s:n,s:[]}", "revision", (json_int_t)s->revision, "hash",
				  s->hash, "ok", 1, "error", "endpoints"));
	} else if (len == 8 && memcmp(op, "!rehello", 8) == 0 && s && s->hello) {
		json_t *body = json_deep_copy(s->hello);
		json_object_del(body, "v");
		json_object_set_new(body, "revision", s->hash[0] ? json_integer(s->revision) : json_null());
		json_object_set_new(body, "hash", s->hash[0] ? json_string(s->hash) : json_null());
		send_as(w, s, PROTO_HELLO, body);
	} else if (len == 7 && memcmp(op, "!frames", 7) == 0 && s) {
		frames(w, s, p, end);
	} else if (len == 7 && memcmp(op, "!status", 7) == 0) {
		json_t *nodes = sessions_status_nodes(w->sessions),
		       *counters = sessions_counters(w->sessions);
		if (!json_is_array(nodes) || !json_is_object(counters))
			abort();
		json_decref(nodes);
		json_decref(counters);
	}
}

static void world_start(struct world *w, const char *p, const char *end)
{
	int policy;
	options(&w->o, &policy, p, end);
	/* Closed sockets keep their inproc names until libzmq reaps them. */
	static unsigned inputs;
	snprintf(w->listen, sizeof(w->listen), "inproc://agents-%u", inputs++);
	w->o.listen = w->listen;
	char db[400];
	snprintf(db, sizeof(db), "%s/" STORE_FILE, state_dir);
	remove_file(state_dir, STORE_FILE "-wal");
	remove_file(state_dir, STORE_FILE "-shm");
	copy_file(template_db, db);
	char *err = NULL;
	w->store = store_open(state_dir, &err);
	if (!w->store) {
		fprintf(report, "fuzz-controller: %s\n", err);
		abort();
	}
	w->loop = loop_new();
	w->nodes = nodes_new();
	w->compiler = compiler_new(w->nodes);
	apply_policy(w, policy);
	compiler_refresh(w->compiler);
	w->sessions =
	    w->loop ? sessions_new(w->loop, zctx, &w->o, w->nodes, w->compiler, w->store, &err) : NULL;
	if (!w->sessions) {
		fprintf(report, "fuzz-controller: %s\n", err);
		abort();
	}
	for (int i = 0; i < SESSIONS; i++) {
		struct session *s = &w->s[i];
		snprintf(s->rid, sizeof(s->rid), "s%d", i);
		s->sock = zmq_socket(zctx, ZMQ_DEALER);
		int zero = 0;
		if (!s->sock || zmq_setsockopt(s->sock, ZMQ_ROUTING_ID, s->rid, 2) < 0 ||
		    zmq_setsockopt(s->sock, ZMQ_LINGER, &zero, sizeof(zero)) < 0 ||
		    zmq_connect(s->sock, w->o.listen) < 0)
			abort();
	}
	/* The ROUTER takes the new connections when it looks at its socket
	 * (the tick does). */
	sessions_tick(w->sessions, clock_mono_ms() + w->clock_ms);
}

static void world_stop(struct world *w)
{
	for (int i = 0; i < SESSIONS; i++) {
		struct session *s = &w->s[i];
		zmq_close(s->sock);
		free(s->node);
		free(s->user);
		json_decref(s->hello);
	}
	for (size_t i = 0; i < w->n_known; i++)
		json_decref(w->known[i].bundle);
	sessions_free(w->sessions);
	compiler_free(w->compiler);
	nodes_free(w->nodes);
	loop_free(w->loop);
	store_free(w->store);
	if (w->labels_changed)
		labels_reset();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	setup();
	const char *p = (const char *)data, *end = p + size;
	const char *nl = memchr(p, '\n', size);
	struct world w = {0};
	world_start(&w, p, nl ? nl : end);
	p = nl ? nl + 1 : end;
	for (int lines = 0; p < end && lines < LINES_MAX; lines++) {
		nl = memchr(p, '\n', (size_t)(end - p));
		const char *eol = nl ? nl : end;
		if (eol > p && *p == '!')
			step(&w, p, eol);
		else if (eol > p)
			message(&w, p, eol);
		p = nl ? nl + 1 : end;
	}
	world_stop(&w);
	return 0;
}
