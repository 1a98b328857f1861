/* What a container engine's API says, parsed and judged (engine-json.h).
 * Pure: no I/O, no logging. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "bulkhead/inventory.h"
#include "bulkhead/log.h"
#include "engine-json.h"

/* Bounds on what one container may carry: more is refused as malformed. */
#define LABELS_MAX   4096
#define STRING_MAX   (64u << 10)
#define ID_MAX	     128
#define NAME_LEN_MAX 255

const char *engine_kind_name(enum engine_kind k)
{
	return k == ENGINE_PODMAN ? "podman" : "docker";
}

static void fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ---- labels ---- */

void engine_labels_release(struct engine_labels *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free((char *)l->v[i].key);
		free((char *)l->v[i].value);
	}
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static int label_cmp(const void *a, const void *b)
{
	return strcmp(((const struct label *)a)->key, ((const struct label *)b)->key);
}

static void labels_add(struct engine_labels *l, const char *key, const char *value)
{
	l->v = xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
	l->v[l->n].key = xstrdup(key);
	l->v[l->n].value = xstrdup(value);
	l->n++;
}

static void labels_sort(struct engine_labels *l)
{
	if (l->n > 1)
		qsort(l->v, l->n, sizeof(*l->v), label_cmp);
}

/* A string of at most STRING_MAX bytes with no NUL in it. */
static bool string_ok(json_t *v)
{
	return json_is_string(v) && json_string_length(v) <= STRING_MAX &&
	       strlen(json_string_value(v)) == json_string_length(v);
}

/* obj's string members, but those named in skip; NULL obj: none. */
static int labels_take(json_t *obj, const char *const *skip, struct engine_labels *out, const char *what,
		       char *err, size_t errlen)
{
	const char *key;
	json_t *v;
	if (!obj || json_is_null(obj))
		return 0;
	if (!json_is_object(obj)) {
		fail(err, errlen, "%s: not an object", what);
		return -EINVAL;
	}
	if (json_object_size(obj) > LABELS_MAX) {
		fail(err, errlen, "%s: more than %d", what, LABELS_MAX);
		return -EINVAL;
	}
	json_object_foreach (obj, key, v) {
		bool skipped = false;
		for (size_t i = 0; skip && skip[i] && !skipped; i++)
			skipped = strcmp(key, skip[i]) == 0;
		if (skipped)
			continue;
		if (!string_ok(v) || strlen(key) > STRING_MAX) {
			fail(err, errlen, "%s: the value of a key is not a string", what);
			engine_labels_release(out);
			return -EINVAL;
		}
		labels_add(out, key, json_string_value(v));
	}
	labels_sort(out);
	return 0;
}

/* ---- containers ---- */

void engine_container_release(struct engine_container *c)
{
	free(c->id);
	free(c->name);
	free(c->network_mode);
	free(c->sandbox_key);
	engine_labels_release(&c->labels);
	memset(c, 0, sizeof(*c));
}

static bool id_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* A container name as the engine writes it ("/web"), without the '/':
 * printable ASCII but '/', 1-255. NULL when it is not. */
static char *name_take(json_t *v)
{
	if (!string_ok(v))
		return NULL;
	const char *s = json_string_value(v);
	if (*s == '/')
		s++;
	size_t n = strlen(s);
	if (n == 0 || n > NAME_LEN_MAX)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (s[i] <= ' ' || s[i] > '~' || s[i] == '/')
			return NULL;
	return xstrdup(s);
}

/* An optional string member: NULL when absent, null or "". */
static int opt_string(json_t *obj, const char *key, char **out, size_t max, const char *what, char *err,
		      size_t errlen)
{
	json_t *v = json_object_get(obj, key);
	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!string_ok(v) || json_string_length(v) > max) {
		fail(err, errlen, "%s: not a string of at most %zu bytes", what, max);
		return -EINVAL;
	}
	if (json_string_length(v))
		*out = xstrdup(json_string_value(v));
	return 0;
}

static int container_id(json_t *v, struct engine_container *c, char *err, size_t errlen)
{
	if (!string_ok(v) || !id_valid(json_string_value(v))) {
		fail(err, errlen, "Id: not 1-%d lowercase hex digits", ID_MAX);
		return -EINVAL;
	}
	c->id = xstrdup(json_string_value(v));
	return 0;
}

static json_t *load(const char *text, size_t len, size_t max, const char *what, char *err, size_t errlen)
{
	json_error_t e;
	if (len > max) {
		fail(err, errlen, "%s: larger than %zu bytes", what, max);
		return NULL;
	}
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &e);
	if (!root)
		fail(err, errlen, "%s: not JSON (line %d: %s)", what, e.line, e.text);
	return root;
}

static int inspect_take(json_t *root, struct engine_container *c, char *err, size_t errlen)
{
	json_t *state = json_object_get(root, "State"), *host = json_object_get(root, "HostConfig");
	json_t *config = json_object_get(root, "Config"), *net = json_object_get(root, "NetworkSettings");
	json_int_t pid = 0;
	if (container_id(json_object_get(root, "Id"), c, err, errlen) < 0)
		return -EINVAL;
	if (!(c->name = name_take(json_object_get(root, "Name")))) {
		fail(err, errlen, "container %.12s: Name: not a container name", c->id);
		return -EINVAL;
	}
	if (!json_is_object(state) || !json_is_boolean(json_object_get(state, "Running"))) {
		fail(err, errlen, "container %.12s: State.Running: not a boolean", c->id);
		return -EINVAL;
	}
	c->running = json_is_true(json_object_get(state, "Running"));
	json_t *p = json_object_get(state, "Pid");
	if (p && !json_is_null(p)) {
		if (!json_is_integer(p) || (pid = json_integer_value(p)) < 0 || pid > (1 << 22)) {
			fail(err, errlen, "container %.12s: State.Pid: not a process id", c->id);
			return -EINVAL;
		}
	}
	c->pid = (long)pid;
	if (host && !json_is_object(host)) {
		fail(err, errlen, "container %.12s: HostConfig: not an object", c->id);
		return -EINVAL;
	}
	if (host &&
	    opt_string(host, "NetworkMode", &c->network_mode, 512, "HostConfig.NetworkMode", err, errlen) < 0)
		return -EINVAL;
	if (net && !json_is_object(net)) {
		fail(err, errlen, "container %.12s: NetworkSettings: not an object", c->id);
		return -EINVAL;
	}
	if (net && opt_string(net, "SandboxKey", &c->sandbox_key, 4096, "NetworkSettings.SandboxKey", err,
			      errlen) < 0)
		return -EINVAL;
	if (c->sandbox_key && c->sandbox_key[0] != '/') {
		fail(err, errlen, "container %.12s: NetworkSettings.SandboxKey: not an absolute path", c->id);
		return -EINVAL;
	}
	if (config && !json_is_object(config)) {
		fail(err, errlen, "container %.12s: Config: not an object", c->id);
		return -EINVAL;
	}
	return labels_take(config ? json_object_get(config, "Labels") : NULL, NULL, &c->labels,
			   "Config.Labels", err, errlen);
}

int engine_inspect_parse(const char *text, size_t len, struct engine_container *out, char *err, size_t errlen)
{
	struct engine_container c = {0};
	memset(out, 0, sizeof(*out)); /* released safely whatever the answer */
	json_t *root = load(text, len, ENGINE_INSPECT_MAX, "inspect", err, errlen);
	if (!root)
		return -EINVAL;
	int r = json_is_object(root) ? inspect_take(root, &c, err, errlen) : -EINVAL;
	if (!json_is_object(root))
		fail(err, errlen, "inspect: not an object");
	json_decref(root);
	if (r < 0) {
		engine_container_release(&c);
		return r;
	}
	*out = c;
	return 0;
}

static int summary_take(json_t *o, struct engine_container *c, char *err, size_t errlen)
{
	json_t *names = json_object_get(o, "Names"), *host = json_object_get(o, "HostConfig");
	if (!json_is_object(o)) {
		fail(err, errlen, "an entry is not an object");
		return -EINVAL;
	}
	if (container_id(json_object_get(o, "Id"), c, err, errlen) < 0)
		return -EINVAL;
	if (!json_is_array(names) || !(c->name = name_take(json_array_get(names, 0)))) {
		fail(err, errlen, "container %.12s: Names: no container name", c->id);
		return -EINVAL;
	}
	json_t *state = json_object_get(o, "State");
	if (!string_ok(state)) {
		fail(err, errlen, "container %.12s: State: not a string", c->id);
		return -EINVAL;
	}
	c->running = strcmp(json_string_value(state), "running") == 0;
	if (json_is_object(host) &&
	    opt_string(host, "NetworkMode", &c->network_mode, 512, "HostConfig.NetworkMode", err, errlen) < 0)
		return -EINVAL;
	return labels_take(json_object_get(o, "Labels"), NULL, &c->labels, "Labels", err, errlen);
}

int engine_list_parse(const char *text, size_t len, struct engine_container **out, size_t *n, char *err,
		      size_t errlen)
{
	json_t *root = load(text, len, ENGINE_LIST_MAX, "list", err, errlen), *o;
	size_t i;
	if (!root)
		return -EINVAL;
	if (!json_is_array(root)) {
		fail(err, errlen, "list: not an array");
		json_decref(root);
		return -EINVAL;
	}
	struct engine_container *v = xcalloc(json_array_size(root) + 1, sizeof(*v));
	json_array_foreach (root, i, o) {
		if (summary_take(o, &v[i], err, errlen) < 0) {
			for (size_t k = 0; k <= i; k++)
				engine_container_release(&v[k]);
			free(v);
			json_decref(root);
			return -EINVAL;
		}
	}
	*n = json_array_size(root);
	*out = v;
	json_decref(root);
	return 0;
}

void engine_error_message(const char *text, size_t len, char *buf, size_t size)
{
	json_t *root = len <= ENGINE_INSPECT_MAX ? json_loadb(text, len, 0, NULL) : NULL;
	json_t *m = json_object_get(root, "message");
	snprintf(buf, size, "%s", string_ok(m) ? json_string_value(m) : "");
	json_decref(root);
}

/* ---- events ---- */

void engine_event_release(struct engine_event *ev)
{
	free(ev->id);
	free(ev->name);
	free(ev->old_name);
	free(ev->net_driver);
	engine_labels_release(&ev->labels);
	memset(ev, 0, sizeof(*ev));
}

static const struct {
	const char *word;
	enum engine_action action;
} container_actions[] = {
    {"create", ENGINE_EV_CREATE}, {"start", ENGINE_EV_START},	  {"die", ENGINE_EV_DIE},
    {"died", ENGINE_EV_DIE},	  {"destroy", ENGINE_EV_DESTROY}, {"remove", ENGINE_EV_DESTROY},
    {"rename", ENGINE_EV_RENAME},
};

/* The attributes of container events that are the engine's, not labels. */
static const char *const own_attributes[] = {
    "image", "name", "oldName", "exitCode", "signal", "podId", "containerExitCode", NULL,
};

static int event_take(json_t *root, struct engine_event *ev, char *err, size_t errlen)
{
	json_t *type = json_object_get(root, "Type"), *action = json_object_get(root, "Action");
	json_t *actor = json_object_get(root, "Actor");
	json_t *attrs = json_object_get(actor, "Attributes");
	if (!string_ok(type) || !string_ok(action)) {
		fail(err, errlen, "event: no Type or Action");
		return -EINVAL;
	}
	const char *t = json_string_value(type), *a = json_string_value(action);
	bool network = strcmp(t, "network") == 0;
	if (network) {
		if (strcmp(a, "connect") == 0)
			ev->action = ENGINE_EV_CONNECT;
		else if (strcmp(a, "disconnect") == 0)
			ev->action = ENGINE_EV_DISCONNECT;
	} else if (strcmp(t, "container") == 0) {
		for (size_t i = 0; i < BH_ARRAY_SIZE(container_actions); i++)
			if (strcmp(a, container_actions[i].word) == 0)
				ev->action = container_actions[i].action;
	}
	if (ev->action == ENGINE_EV_OTHER)
		return 1;
	if (!json_is_object(actor) || (attrs && !json_is_null(attrs) && !json_is_object(attrs))) {
		fail(err, errlen, "event %s %s: Actor: not an object", t, a);
		return -EINVAL;
	}
	json_t *id = json_object_get(actor, "ID");
	json_t *container = json_object_get(attrs, "container");
	if (network && container) /* Docker: the actor is the network */
		id = container;
	if (!string_ok(id) || !id_valid(json_string_value(id))) {
		fail(err, errlen, "event %s %s: no container id", t, a);
		return -EINVAL;
	}
	ev->id = xstrdup(json_string_value(id));
	if (network && container) {
		if (opt_string(attrs, "type", &ev->net_driver, 256, "event: type", err, errlen) < 0)
			return -EINVAL;
	} else {
		json_t *name = json_object_get(attrs, "name");
		if (name && !(ev->name = name_take(name))) {
			fail(err, errlen, "event %s %s: name: not a container name", t, a);
			return -EINVAL;
		}
	}
	if (ev->action == ENGINE_EV_RENAME) {
		json_t *old = json_object_get(attrs, "oldName");
		if (old && !(ev->old_name = name_take(old))) {
			fail(err, errlen, "event %s %s: oldName: not a container name", t, a);
			return -EINVAL;
		}
	}
	if (!network && labels_take(attrs, own_attributes, &ev->labels, "event: Attributes", err, errlen) < 0)
		return -EINVAL;
	json_t *nano = json_object_get(root, "timeNano"), *sec = json_object_get(root, "time");
	if (json_is_integer(nano) && json_integer_value(nano) > 0)
		ev->time_ns = (int64_t)json_integer_value(nano);
	else if (json_is_integer(sec) && json_integer_value(sec) > 0 &&
		 json_integer_value(sec) < (INT64_MAX / 1000000000))
		ev->time_ns = (int64_t)json_integer_value(sec) * 1000000000;
	return 0;
}

int engine_event_parse(const char *text, size_t len, struct engine_event *out, char *err, size_t errlen)
{
	struct engine_event ev = {0};
	json_t *root = load(text, len, ENGINE_EVENT_MAX, "event", err, errlen);
	if (!root)
		return -EINVAL;
	int r = -EINVAL;
	if (json_is_object(root))
		r = event_take(root, &ev, err, errlen);
	else
		fail(err, errlen, "event: not an object");
	json_decref(root);
	if (r != 0) {
		engine_event_release(&ev);
		memset(out, 0, sizeof(*out));
		return r;
	}
	*out = ev;
	return 0;
}

/* ---- /_ping ---- */

int engine_api_version(const char *value, unsigned *minor)
{
	if (strncmp(value, "1.", 2) != 0)
		return -EINVAL;
	const char *p = value + 2;
	unsigned v = 0;
	size_t digits = 0;
	for (; *p >= '0' && *p <= '9' && digits < 4; p++, digits++)
		v = v * 10 + (unsigned)(*p - '0');
	if (!digits || digits > 3 || *p)
		return -EINVAL;
	*minor = v;
	return 0;
}

bool engine_header(const char *line, size_t len, const char *name, char *buf, size_t size)
{
	size_t n = strlen(name);
	if (len <= n || line[n] != ':' || strncasecmp(line, name, n) != 0)
		return false;
	const char *v = line + n + 1, *end = line + len;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
		end--;
	size_t vlen = (size_t)(end - v);
	if (vlen >= size)
		vlen = size - 1;
	memcpy(buf, v, vlen);
	buf[vlen] = '\0';
	return true;
}

/* ---- the event stream ---- */

void engine_lines_init(struct engine_lines *l, size_t max)
{
	memset(l, 0, sizeof(*l));
	l->max = max;
}

void engine_lines_release(struct engine_lines *l)
{
	free(l->buf);
	memset(l, 0, sizeof(*l));
}

void engine_lines_reset(struct engine_lines *l)
{
	l->len = 0;
	l->skipping = false;
}

void engine_lines_feed(struct engine_lines *l, const char *data, size_t len,
		       void (*fn)(void *arg, const char *line, size_t len), void *arg)
{
	while (len) {
		const char *nl = memchr(data, '\n', len);
		size_t take = nl ? (size_t)(nl - data) : len;
		if (!l->skipping && l->len + take > l->max) {
			l->skipping = true;
			l->overlong++;
			l->len = 0;
		}
		if (!l->skipping) {
			if (l->len + take + 1 > l->cap) {
				l->cap = l->len + take + 1 < 4096 ? 4096 : 2 * (l->len + take + 1);
				l->buf = xrealloc(l->buf, l->cap);
			}
			memcpy(l->buf + l->len, data, take);
			l->len += take;
		}
		if (!nl)
			return;
		if (!l->skipping && l->len) {
			l->buf[l->len] = '\0';
			fn(arg, l->buf, l->len);
		}
		l->len = 0;
		l->skipping = false;
		data = nl + 1;
		len -= take + 1;
	}
}

/* ---- what an endpoint is ---- */

int engine_select_parse(const char *arg, struct engine_select *out, const char **why)
{
	static char key[512];
	const char *eq = strchr(arg, '=');
	size_t klen = eq ? (size_t)(eq - arg) : strlen(arg);
	if (klen == 0 || klen >= sizeof(key)) {
		*why = "expected LABEL or LABEL=VALUE";
		return -EINVAL;
	}
	memcpy(key, arg, klen);
	key[klen] = '\0';
	if (!label_key_valid(key, why))
		return -EINVAL;
	if (eq && !label_value_valid(eq + 1, why))
		return -EINVAL;
	/* One --select per process: the static copy lives as long. */
	out->key = key;
	out->value = eq ? eq + 1 : NULL;
	return 0;
}

bool engine_select_matches(const struct engine_select *sel, const struct engine_labels *labels)
{
	if (!sel || !sel->key)
		return true;
	const char *v = label_set_get(engine_labels_set(labels), sel->key);
	return v && (!sel->value || strcmp(v, sel->value) == 0);
}

void engine_endpoint_release(struct engine_endpoint *e)
{
	free(e->name);
	free(e->netns);
	engine_labels_release(&e->labels);
	for (size_t i = 0; i < e->n_ports; i++)
		free((char *)e->ports[i].name);
	free(e->ports);
	memset(e, 0, sizeof(*e));
}

void engine_endpoint_view(const struct engine_endpoint *e, struct source_endpoint *out)
{
	*out = (struct source_endpoint){
	    .name = e->name,
	    .netns = e->netns,
	    .labels = engine_labels_set(&e->labels),
	    .ports = e->ports,
	    .n_ports = e->n_ports,
	};
}

static void note(struct engine_endpoint *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct engine_endpoint *e, const char *fmt, ...)
{
	size_t used = strlen(e->notes);
	if (used + 8 >= sizeof(e->notes))
		return;
	if (used) {
		strcat(e->notes, "; ");
		used += 2;
	}
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->notes + used, sizeof(e->notes) - used, fmt, ap);
	va_end(ap);
}

static void endpoint_port(struct engine_endpoint *e, const char *name, const char *value)
{
	const char *why;
	uint8_t proto;
	uint16_t port;
	if (!named_port_name_valid(name, &why) || named_port_parse(value, &proto, &port, &why) < 0) {
		note(e, "named port %.64s left out: %s", name, why);
		return;
	}
	e->ports = xrealloc(e->ports, (e->n_ports + 1) * sizeof(*e->ports));
	e->ports[e->n_ports++] = (struct source_port){.name = xstrdup(name), .proto = proto, .port = port};
}

static void endpoint_labels(struct engine_endpoint *e, const struct engine_labels *in, enum engine_kind kind)
{
	const char *why;
	for (size_t i = 0; i < in->n; i++) {
		const char *key = in->v[i].key, *value = in->v[i].value;
		if (strncmp(key, ENGINE_PORT_LABEL_PREFIX, strlen(ENGINE_PORT_LABEL_PREFIX)) == 0) {
			/* The agent's own: ports, not labels. */
			endpoint_port(e, key + strlen(ENGINE_PORT_LABEL_PREFIX), value);
			continue;
		}
		if (strcmp(key, ENGINE_LABEL) == 0) {
			note(e, "label " ENGINE_LABEL " is the agent's: %s", engine_kind_name(kind));
			continue;
		}
		if (!label_key_valid(key, &why)) {
			note(e, "label %.64s left out: %s", key, why);
			continue;
		}
		if (!label_value_valid(value, &why)) {
			note(e, "label %.64s kept with the value \"\": %s", key, why);
			value = "";
		}
		labels_add(&e->labels, key, value);
	}
	labels_add(&e->labels, ENGINE_LABEL, engine_kind_name(kind));
	labels_sort(&e->labels);
}

enum engine_verdict engine_endpoint_of(const struct engine_container *c, enum engine_kind kind,
				       const struct engine_select *sel, struct engine_endpoint *out,
				       char *why, size_t whylen)
{
	const char *mode = c->network_mode;
	memset(out, 0, sizeof(*out));
	if (!c->running) {
		fail(why, whylen, "not running");
		return ENGINE_NOT_RUNNING;
	}
	if (mode && strcmp(mode, "host") == 0) {
		fail(why, whylen, "uses the node's own network namespace (--network host): not an endpoint");
		return ENGINE_HOST_NETWORK;
	}
	if (mode && strncmp(mode, "container:", 10) == 0) {
		fail(why, whylen,
		     "joins the network namespace of container %.12s (--network container:): its "
		     "endpoint is that container's",
		     mode + 10);
		return ENGINE_JOINS_ANOTHER;
	}
	if (!engine_select_matches(sel, &c->labels)) {
		fail(why, whylen, "not selected (--select %s%s%s)", sel->key, sel->value ? "=" : "",
		     sel->value ? sel->value : "");
		return ENGINE_NOT_SELECTED;
	}
	if (!c->name) {
		fail(why, whylen, "its name is not known yet");
		return ENGINE_BAD_NAME;
	}
	if (!inventory_endpoint_name_valid(c->name)) {
		fail(why, whylen, "its name is not an endpoint name: " INVENTORY_ENDPOINT_NAME_RULE);
		return ENGINE_BAD_NAME;
	}
	char proc[64];
	const char *netns = c->sandbox_key;
	if (!netns && c->pid > 0) {
		snprintf(proc, sizeof(proc), "/proc/%ld/ns/net", c->pid);
		netns = proc;
	}
	if (!netns) {
		fail(why, whylen, "neither a SandboxKey nor a process: no network namespace to name");
		return ENGINE_NO_NAMESPACE;
	}
	out->name = xstrdup(c->name);
	out->netns = xstrdup(netns);
	endpoint_labels(out, &c->labels, kind);
	return ENGINE_ENDPOINT;
}

/* ---- the mount table ---- */

/* mountinfo escapes ' ', '\t', '\n' and '\\' as \ooo. */
static void unescape(const char *s, size_t len, char *out, size_t size)
{
	size_t o = 0;
	for (size_t i = 0; i < len && o + 1 < size; i++) {
		if (s[i] == '\\' && len - i >= 4 && s[i + 1] >= '0' && s[i + 1] <= '3' && s[i + 2] >= '0' &&
		    s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
			out[o++] = (char)((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
			i += 3;
		} else {
			out[o++] = s[i];
		}
	}
	out[o] = '\0';
}

static bool sandbox_name(const char *s)
{
	if (strlen(s) != 12)
		return false;
	for (int i = 0; i < 12; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

void engine_mounts_scan(const char *text, size_t len, const char *dir,
			void (*fn)(void *arg, const char *path), void *arg)
{
	size_t dlen = strlen(dir);
	const char *end = text + len;
	while (text < end) {
		const char *nl = memchr(text, '\n', (size_t)(end - text));
		const char *eol = nl ? nl : end;
		/* Fields: ID PARENT MAJ:MIN ROOT MOUNTPOINT ...; " - FSTYPE SOURCE OPTS" */
		const char *f = text, *mp = NULL;
		size_t mplen = 0;
		for (int field = 0; field < 5 && f < eol; field++) {
			const char *sp = memchr(f, ' ', (size_t)(eol - f));
			const char *fe = sp ? sp : eol;
			if (field == 4) {
				mp = f;
				mplen = (size_t)(fe - f);
			}
			f = sp ? sp + 1 : eol;
		}
		const char *sep = mp ? memmem(f, (size_t)(eol - f), " - nsfs ", 8) : NULL;
		char path[4096];
		if (sep && mplen < sizeof(path)) {
			unescape(mp, mplen, path, sizeof(path));
			if (strncmp(path, dir, dlen) == 0 && path[dlen] == '/' &&
			    sandbox_name(path + dlen + 1))
				fn(arg, path);
		}
		text = eol + 1;
	}
}
