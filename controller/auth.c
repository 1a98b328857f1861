/* The allow-list, ZAP and label rules (see auth.h). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <zmq.h>

#include "bulkhead/escape.h"
#include "bulkhead/fileio.h"
#include "bulkhead/inventory.h"
#include "bulkhead/keys.h"
#include "bulkhead/log.h"
#include "bulkhead/ratelimit.h"
#include "bulkhead/zmsg.h"
#include "auth.h"
#include "labelrules.h"

#define KEY_LEN 40
/* A handshake re-reads a directory older than this. */
#define REREAD_MS  1000
#define LABELS_MAX (1 << 20)
/* Where libzmq asks about CURVE handshakes (RFC 27). */
#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
/* Refused handshakes: a few lines every 10 s, the rest counted. */
#define REFUSED_LOG_MS	  10000
#define REFUSED_LOG_BURST 5

struct allow_entry {
	char key[KEY_LEN + 1];
	char *node;
	/* DIR/NODE.labels (labelrules.h): NULL when there is none; else its
	 * text (or why it could not be read) and its rules, NULL when it is
	 * invalid: then every list of the node is refused (fail closed). */
	char *labels_text;
	struct labelrules *labels;
};

struct auth {
	struct loop *loop;
	const char *dir; /* NULL: insecure */
	struct nodes *nodes;
	void (*rules_changed)(void *data, struct node *n);
	void *data;
	void *zap;
	struct loop_source *zap_src;
	struct allow_entry *allow;
	size_t n_allow;
	/* Nodes whose NODE.key cannot be read: known (DESIGN §4: the
	 * allow-list names them), and unable to connect. */
	char **keyless;
	size_t n_keyless;
	struct timespec mtime;
	int64_t read_ms; /* monotonic */
	char *said;	 /* the problems last logged, one per line */
	bool loaded;	 /* read at least once */
	uint64_t refused;
	struct ratelimit refused_log;
};

static void allow_free(struct allow_entry *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].node);
		free(v[i].labels_text);
		labelrules_free(v[i].labels);
	}
	free(v);
}

static const struct allow_entry *allow_entry_for(const struct allow_entry *v, size_t n, const char *node)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i].node, node) == 0)
			return &v[i];
	return NULL;
}

/* e's NODE.labels, if there is one; problems go to errs. */
static void read_labels(struct auth *a, struct allow_entry *e, FILE *errs)
{
	char path[4096], name[512];
	snprintf(path, sizeof(path), "%s/%s.labels", a->dir, e->node);
	snprintf(name, sizeof(name), "%s.labels", e->node);
	char *text;
	size_t len;
	int r = fileio_read(path, LABELS_MAX, &text, &len);
	if (r == -ENOENT)
		return;
	if (r < 0) {
		const char *why = r == -EFBIG ? "larger than 1 MiB" : fileio_strerror(r);
		fprintf(errs, "%s: %s; every endpoint list of node %s is refused\n", path, why, e->node);
		e->labels_text = xstrdup(why);
		return;
	}
	e->labels_text = text;
	struct diag d;
	diag_init(&d, path);
	e->labels = labelrules_parse(name, text, len, &d);
	if (!e->labels) {
		fprintf(errs, "%s: invalid; every endpoint list of node %s is refused until it is fixed\n",
			path, e->node);
		diag_print(&d, errs);
	}
	diag_release(&d);
}

/* Whether node's label rules differ between two allow-lists. */
static bool labels_changed(const struct allow_entry *was, size_t n_was, const struct allow_entry *now,
			   size_t n_now, const char *node)
{
	const struct allow_entry *o = allow_entry_for(was, n_was, node),
				 *e = allow_entry_for(now, n_now, node);
	if (!o || !e)
		return o != e;
	if (!o->labels_text || !e->labels_text)
		return o->labels_text != e->labels_text;
	return strcmp(o->labels_text, e->labels_text) != 0;
}

/* Re-reads the directory when it changed (a key added, removed or
 * renamed), and otherwise when it was read longer than max_age_ms ago (a
 * file rewritten in place leaves the directory's mtime alone), so agents
 * can be added and keys and label rules replaced without a restart. The
 * nodes whose label rules changed are handed to rules_changed. Each
 * problem is logged when it appears, not at every reading. */
void auth_reload(struct auth *a, int64_t max_age_ms)
{
	if (!a->dir)
		return;
	struct stat st;
	int64_t now = clock_mono_ms();
	bool dir_ok = stat(a->dir, &st) == 0;
	if (dir_ok && a->loaded && st.st_mtim.tv_sec == a->mtime.tv_sec &&
	    st.st_mtim.tv_nsec == a->mtime.tv_nsec && now - a->read_ms < max_age_ms)
		return;
	if (dir_ok)
		a->mtime = st.st_mtim;
	a->read_ms = now;
	struct allow_entry *was = a->allow;
	size_t n_was = a->n_allow;
	bool had = a->loaded;
	a->loaded = true;
	a->allow = NULL;
	a->n_allow = 0;
	char **keyless_was = a->keyless;
	size_t n_keyless_was = a->n_keyless;
	a->keyless = NULL;
	a->n_keyless = 0;

	char *said = NULL;
	size_t said_len = 0;
	FILE *errs = open_memstream(&said, &said_len);
	if (!errs)
		abort();
	struct dirent **names = NULL;
	int n = dir_ok ? scandir(a->dir, &names, NULL, alphasort) : -1;
	if (n < 0)
		fprintf(errs, "agent keys %s: %s; every agent is refused\n", a->dir, strerror(errno));
	a->allow = xcalloc(n > 0 ? (size_t)n : 1, sizeof(*a->allow));
	a->keyless = xcalloc(n > 0 ? (size_t)n : n_was + n_keyless_was + 1, sizeof(*a->keyless));
	/* Unreadable as a whole (replaced, its mode changed): nobody may
	 * connect, and the nodes it named are still known (down), not gone. */
	for (size_t i = 0; n < 0 && i < n_was; i++)
		a->keyless[a->n_keyless++] = xstrdup(was[i].node);
	for (size_t i = 0; n < 0 && i < n_keyless_was; i++)
		a->keyless[a->n_keyless++] = xstrdup(keyless_was[i]);
	for (size_t i = 0; i < n_keyless_was; i++)
		free(keyless_was[i]);
	free(keyless_was);
	for (int i = 0; i < n; i++) {
		const char *fn = names[i]->d_name;
		size_t len = strlen(fn);
		if (len > 4 && strcmp(fn + len - 4, ".key") == 0) {
			char path[4096], key[KEY_LEN + 1], *err = NULL;
			snprintf(path, sizeof(path), "%s/%s", a->dir, fn);
			char *node = strndup(fn, len - 4);
			if (!node)
				abort();
			if (!inventory_node_name_valid(node)) {
				fprintf(errs, "agent key %s/%s: \"%s\" is not a node name (%s); ignored\n",
					a->dir, ESCAPED(fn), ESCAPED(node), INVENTORY_NODE_NAME_RULE);
				free(node);
			} else if (keys_read(path, key, &err) < 0) {
				fprintf(errs, "agent key %s; node %s is known and cannot connect\n",
					err ? ESCAPED(err) : "unreadable", node);
				a->keyless[a->n_keyless++] = node;
			} else {
				struct allow_entry *e = &a->allow[a->n_allow++];
				memcpy(e->key, key, sizeof(e->key));
				e->node = node;
				read_labels(a, e, errs);
			}
			free(err);
		}
		free(names[i]);
	}
	free(names);
	if (fclose(errs) != 0)
		abort();
	if (!a->said || strcmp(a->said, said) != 0) {
		for (const char *line = said, *end; (end = strchr(line, '\n')); line = end + 1)
			log_error("%.*s", (int)(end - line), line);
	}
	free(a->said);
	a->said = said;
	if (!had || a->n_allow != n_was)
		log_info("agent keys: %zu node(s) allowed from %s", a->n_allow, a->dir);

	/* The nodes whose rules changed (every node at the first reading:
	 * the lists resumed from the store too). */
	for (size_t i = 0; i < nodes_count(a->nodes); i++) {
		struct node *nd = nodes_at(a->nodes, i);
		if (!had || labels_changed(was, n_was, a->allow, a->n_allow, nd->name))
			a->rules_changed(a->data, nd);
	}
	allow_free(was, n_was);
}

int auth_check_labels(struct auth *a, const char *node, json_t *endpoints, struct diag *d)
{
	if (!a->dir)
		return 0;
	const struct allow_entry *e = allow_entry_for(a->allow, a->n_allow, node);
	if (!e) {
		diag_add(d, "", "node %s is not in the agent allow-list %s (any more)", node, a->dir);
		return -EPERM;
	}
	if (!e->labels_text)
		return 0;
	if (!e->labels) {
		diag_add(d, "",
			 "%s/%s.labels is invalid or unreadable: every endpoint list of node %s is refused",
			 a->dir, node, node);
		return -EPERM;
	}
	return labelrules_check(e->labels, endpoints, d);
}

/* The node key is bound to, or NULL. */
static const char *node_of_key(struct auth *a, const char *key)
{
	auth_reload(a, REREAD_MS);
	const char *found = NULL;
	for (size_t i = 0; i < a->n_allow; i++) {
		if (strcmp(a->allow[i].key, key) != 0)
			continue;
		if (found) {
			ratelimit_log(&a->refused_log, LOG_LEVEL_ERROR,
				      "agent key %.8s… is listed for nodes %s and %s; refused", key, found,
				      a->allow[i].node);
			return NULL;
		}
		found = a->allow[i].node;
	}
	return found;
}

/* One ZAP request: version, request id, domain, address, identity,
 * mechanism and, for CURVE, the client's public key. The answer's user id
 * is the node the key is bound to. */
static void zap_handle(struct auth *a, struct zmsg *m)
{
	const char *status = "400", *text = "unknown key", *node = NULL;
	char z85[KEY_LEN + 1] = "";
	if (m->parts < 6) { /* only libzmq speaks here; REP must answer all the same */
		status = "500";
		text = "malformed ZAP request";
	} else if (m->parts == 7 && zmsg_size(m, 5) == 5 && memcmp(zmsg_data(m, 5), "CURVE", 5) == 0 &&
		   zmsg_size(m, 6) == 32) {
		zmq_z85_encode(z85, zmsg_data(m, 6), 32);
		node = node_of_key(a, z85);
		if (node) {
			status = "200";
			text = "OK";
		}
	} else if (m->parts >= 6) {
		text = "CURVE required";
	}
	if (!node) {
		a->refused++;
		ratelimit_log(&a->refused_log, LOG_LEVEL_WARN, "refused an agent connection: %s (key %.8s…)",
			      text, z85[0] ? z85 : "none");
	}
	zmq_send(a->zap, "1.0", 3, ZMQ_SNDMORE);
	zmq_send(a->zap, m->kept > 1 ? zmsg_data(m, 1) : "", m->kept > 1 ? zmsg_size(m, 1) : 0, ZMQ_SNDMORE);
	zmq_send(a->zap, status, 3, ZMQ_SNDMORE);
	zmq_send(a->zap, text, strlen(text), ZMQ_SNDMORE);
	zmq_send(a->zap, node ? node : "", node ? strlen(node) : 0, ZMQ_SNDMORE);
	zmq_send(a->zap, "", 0, 0);
}

static void on_zap(void *data, uint32_t events)
{
	struct auth *a = data;
	struct zmsg m;
	/* Handshakes wait on these answers: every one waiting. */
	while (zmsg_recv(&m, a->zap, ZMSG_PARTS_MAX) > 0) {
		zap_handle(a, &m);
		zmsg_release(&m);
	}
}

bool auth_listed(const struct auth *a, const char *node)
{
	if (!a->dir)
		return false;
	for (size_t i = 0; i < a->n_keyless; i++)
		if (strcmp(a->keyless[i], node) == 0)
			return true;
	return allow_entry_for(a->allow, a->n_allow, node) != NULL;
}

void auth_each_listed(const struct auth *a, void (*fn)(void *data, const char *node), void *data)
{
	for (size_t i = 0; a->dir && i < a->n_allow; i++)
		fn(data, a->allow[i].node);
	for (size_t i = 0; a->dir && i < a->n_keyless; i++)
		fn(data, a->keyless[i]);
}

uint64_t auth_refused(const struct auth *a)
{
	return a->refused;
}

struct auth *auth_new(struct loop *l, void *zctx, const char *allow_dir, struct nodes *t,
		      void (*rules_changed)(void *data, struct node *n), void *data, char **err)
{
	struct auth *a = xcalloc(1, sizeof(*a));
	a->loop = l;
	a->dir = allow_dir;
	a->nodes = t;
	a->rules_changed = rules_changed;
	a->data = data;
	a->refused_log = RATELIMIT_INIT(REFUSED_LOG_MS, REFUSED_LOG_BURST);
	*err = NULL;
	if (!allow_dir)
		return a;
	a->zap = zmq_socket(zctx, ZMQ_REP);
	if (!a->zap || zmq_bind(a->zap, ZAP_ENDPOINT) < 0 ||
	    !(a->zap_src = loop_add_zmq(l, a->zap, on_zap, a))) {
		if (asprintf(err, "ZAP handler %s: %s", ZAP_ENDPOINT, zmq_strerror(errno)) < 0)
			abort();
		auth_free(a);
		return NULL;
	}
	return a;
}

void auth_free(struct auth *a)
{
	if (!a)
		return;
	loop_remove(a->loop, a->zap_src);
	allow_free(a->allow, a->n_allow);
	for (size_t i = 0; i < a->n_keyless; i++)
		free(a->keyless[i]);
	free(a->keyless);
	free(a->said);
	if (a->zap) {
		/* libzmq releases an inproc name when it reaps the socket, later:
		 * unbound now, the next auth_new() in this context (the fuzzer
		 * makes one per input) can bind it at once. */
		zmq_unbind(a->zap, ZAP_ENDPOINT);
		zmq_close(a->zap);
	}
	free(a);
}
