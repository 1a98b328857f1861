/* Bundle JSON codec and hash (see bundle.h). Decoding treats its input as
 * hostile: it arrives from the network or from a cache file. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/arena.h"
#include "bulkhead/bundle.h"
#include "bulkhead/sha256.h"
#include "json_util.h"

void bundle_free(struct bundle *b)
{
	if (b)
		arena_free(b->arena);
}

const struct bundle_endpoint *bundle_find_endpoint(const struct bundle *b, const char *name)
{
	size_t lo = 0, hi = b->n_endpoints;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(name, b->endpoints[mid].name);
		if (c == 0)
			return &b->endpoints[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

int bundle_named_addr_cmp(const void *a, const void *b)
{
	const struct bundle_named_addr *x = a, *y = b;
	int c = addr_cmp(&x->addr, &y->addr);
	return c ? c : (x->port > y->port) - (x->port < y->port);
}

bool bundle_named_port_contains(const struct bundle_named_port *t, const struct bh_addr *a, uint16_t port)
{
	struct bundle_named_addr key = {*a, port};
	size_t lo = 0, hi = t->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = bundle_named_addr_cmp(&key, &t->v[mid]);
		if (c == 0)
			return true;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return false;
}

/* ---- encoding ---- */

/* json_object_set_new that remembers a failure instead of leaking. */
static void put(json_t *obj, const char *key, json_t *v, bool *ok)
{
	if (!v || json_object_set_new(obj, key, v) < 0)
		*ok = false;
}

static void append(json_t *arr, json_t *v, bool *ok)
{
	if (!v || json_array_append_new(arr, v) < 0)
		*ok = false;
}

static json_t *ranges_to_json(const struct range_list *l, bool *ok)
{
	json_t *arr = json_array();
	for (size_t i = 0; arr && i < l->n; i++) {
		char buf[RANGE_STRLEN];
		range_format(&l->v[i], buf);
		append(arr, json_string(buf), ok);
	}
	return arr;
}

static json_t *rule_to_json(const struct bundle *b, const struct bundle_rule *r, bool *ok)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	put(o, "id", json_string(r->id), ok);
	put(o, "policy", json_string(r->policy), ok);
	put(o, "index", json_integer(r->index), ok);
	put(o, "action", json_string(action_name(r->action)), ok);
	put(o, "mode", json_string(mode_name(r->mode)), ok);
	if (!r->any_peer) {
		json_t *peers = json_array();
		for (size_t i = 0; peers && i < r->n_sets; i++)
			append(peers, json_string(b->sets[r->sets[i]].id), ok);
		put(o, "peers", peers, ok);
	}
	if (!r->any_port) {
		json_t *ports = json_array();
		for (size_t i = 0; ports && i < r->n_ports; i++) {
			char buf[32];
			port_match_format(&r->ports[i], buf, sizeof(buf));
			append(ports, json_string(buf), ok);
		}
		put(o, "ports", ports, ok);
	}
	return o;
}

/* {"id": "tcp/http", "v4": [["198.18.0.5", 8080]], "v6": [...]} */
static json_t *named_port_to_json(const struct bundle_named_port *t, bool *ok)
{
	json_t *o = json_object(), *v4 = json_array(), *v6 = json_array();
	for (size_t i = 0; v4 && v6 && i < t->n; i++) {
		char buf[ADDR_STRLEN];
		addr_format(&t->v[i].addr, buf);
		append(t->v[i].addr.family == AF_INET ? v4 : v6, json_pack("[s,i]", buf, (int)t->v[i].port),
		       ok);
	}
	if (!o) {
		json_decref(v4);
		json_decref(v6);
		return NULL;
	}
	put(o, "id", json_string(t->id), ok);
	put(o, "v4", v4, ok);
	put(o, "v6", v6, ok);
	return o;
}

static json_t *bundle_to_json_unhashed(const struct bundle *b)
{
	bool ok = true;
	json_t *root = json_object();
	if (!root)
		return NULL;
	put(root, "format", json_integer(BUNDLE_FORMAT), &ok);
	put(root, "node", json_string(b->node), &ok);
	if (b->observe == OBSERVE_ALL)
		put(root, "observe", json_string(observe_name(b->observe)), &ok);

	json_t *eps = json_array();
	for (size_t e = 0; eps && e < b->n_endpoints; e++) {
		const struct bundle_endpoint *be = &b->endpoints[e];
		json_t *o = json_object(), *addrs = json_array();
		if (!o) {
			ok = false;
			break;
		}
		put(o, "name", json_string(be->name), &ok);
		for (size_t i = 0; addrs && i < be->n_addrs; i++) {
			char buf[ADDR_STRLEN];
			addr_format(&be->addrs[i], buf);
			append(addrs, json_string(buf), &ok);
		}
		put(o, "addresses", addrs, &ok);
		for (enum direction dir = 0; dir < DIR_COUNT; dir++) {
			const struct bundle_chain *c = &be->chains[dir];
			json_t *co = json_object(), *rules = json_array();
			for (size_t i = 0; rules && i < c->n_rules; i++)
				append(rules, rule_to_json(b, &c->rules[i], &ok), &ok);
			if (co) {
				put(co, "rules", rules, &ok);
				put(co, "fallback", json_string(verdict_name(c->fallback)), &ok);
				put(co, "fallback_reason", json_string(c->fallback_reason), &ok);
			} else {
				json_decref(rules);
			}
			put(o, direction_name(dir), co, &ok);
		}
		append(eps, o, &ok);
	}
	put(root, "endpoints", eps, &ok);

	json_t *sets = json_array();
	for (size_t i = 0; sets && i < b->n_sets; i++) {
		const struct bundle_set *s = &b->sets[i];
		json_t *o = json_object();
		if (!o) {
			ok = false;
			break;
		}
		put(o, "id", json_string(s->id), &ok);
		put(o, "kind", json_string(s->kind == SET_HOSTS ? "hosts" : "ranges"), &ok);
		put(o, "ipv4", ranges_to_json(&s->v4, &ok), &ok);
		put(o, "ipv6", ranges_to_json(&s->v6, &ok), &ok);
		append(sets, o, &ok);
	}
	put(root, "sets", sets, &ok);

	if (b->n_named_ports) {
		json_t *tables = json_array();
		for (size_t i = 0; tables && i < b->n_named_ports; i++)
			append(tables, named_port_to_json(&b->named_ports[i], &ok), &ok);
		put(root, "named_ports", tables, &ok);
	}

	if (!ok) {
		json_decref(root);
		return NULL;
	}
	return root;
}

/* ---- the hash ----
 *
 * A bundle's hash is the SHA-256 of its compact JSON without "hash": what
 * jansson's json_dumps(bundle_to_json_unhashed(b), JSON_COMPACT) writes.
 * canon_*() write that very text straight into the digest, without the
 * tree and its 200,000 strings (a 100,000-member bundle: 56 ms to 12 ms);
 * bundle_encode() writes the compact text with them too.
 * They follow bundle_to_json_unhashed() key by key: a field added there
 * must be added here, and test-bundle compares the two texts for every
 * bundle it makes. */

struct canon {
	struct sha256 *h; /* where the text goes: a digest, */
	char *text;	  /* or else this growing string (malloc'd) */
	size_t len, cap;
	char buf[8192];
	size_t n;
	bool bad; /* a string jansson would refuse (not UTF-8) */
	bool oom;
};

static void canon_sink(struct canon *c, const char *s, size_t len)
{
	if (c->h) {
		sha256_update(c->h, s, len);
		return;
	}
	if (c->oom)
		return;
	if (len + 1 > c->cap - c->len) {
		size_t cap = c->cap ? c->cap : 65536;
		while (len + 1 > cap - c->len)
			cap *= 2;
		char *t = realloc(c->text, cap);
		if (!t) {
			c->oom = true;
			return;
		}
		c->text = t;
		c->cap = cap;
	}
	memcpy(c->text + c->len, s, len);
	c->len += len;
	c->text[c->len] = '\0';
}

static void canon_flush(struct canon *c)
{
	canon_sink(c, c->buf, c->n);
	c->n = 0;
}

static void canon_raw(struct canon *c, const char *s, size_t len)
{
	if (len > sizeof(c->buf) - c->n) {
		canon_flush(c);
		if (len > sizeof(c->buf)) {
			canon_sink(c, s, len);
			return;
		}
	}
	memcpy(c->buf + c->n, s, len);
	c->n += len;
}

static void canon_lit(struct canon *c, const char *s)
{
	canon_raw(c, s, strlen(s));
}

/* The length of the UTF-8 sequence at s (as jansson's utf8_check_first
 * and utf8_check_full accept it), 0 if there is none. */
static size_t utf8_len(const unsigned char *s)
{
	unsigned char u = s[0];
	size_t n;
	uint32_t cp;

	if (u < 0x80)
		return 1;
	if (u >= 0xc2 && u <= 0xdf) {
		n = 2;
		cp = u & 0x1f;
	} else if (u >= 0xe0 && u <= 0xef) {
		n = 3;
		cp = u & 0x0f;
	} else if (u >= 0xf0 && u <= 0xf4) {
		n = 4;
		cp = u & 0x07;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || (n == 3 && cp < 0x800) ||
	    (n == 4 && cp < 0x10000))
		return 0;
	return n;
}

/* The characters jansson writes as a backslash and a letter (the other
 * control characters as \\u00XX). */
static const char short_escape[0x80] = {
    ['"'] = '"', ['\\'] = '\\', ['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't',
};

/* A string as jansson writes it: quoted, with \\, \" and the control
 * characters escaped, everything else as it is. */
static void canon_str(struct canon *c, const char *s)
{
	const unsigned char *p = (const unsigned char *)s, *run = p;

	canon_raw(c, "\"", 1);
	while (*p) {
		size_t n = utf8_len(p);
		char esc[8];

		if (n == 0) {
			c->bad = true;
			return;
		}
		if (n > 1 || (*p >= 0x20 && *p != '"' && *p != '\\')) {
			p += n;
			continue;
		}
		canon_raw(c, (const char *)run, (size_t)(p - run));
		if (short_escape[*p]) {
			esc[0] = '\\';
			esc[1] = short_escape[*p];
			canon_raw(c, esc, 2);
		} else {
			snprintf(esc, sizeof(esc), "\\u%04X", *p);
			canon_raw(c, esc, 6);
		}
		run = ++p;
	}
	canon_raw(c, (const char *)run, (size_t)(p - run));
	canon_raw(c, "\"", 1);
}

/* ,"key": after the first member, "key": for it */
static void canon_key(struct canon *c, const char *key, bool first)
{
	if (!first)
		canon_raw(c, ",", 1);
	canon_str(c, key);
	canon_raw(c, ":", 1);
}

/* The comma before every item of a list but its first (item i). */
static void canon_comma(struct canon *c, size_t i)
{
	if (i)
		canon_raw(c, ",", 1);
}

static void canon_uint(struct canon *c, uint64_t v)
{
	char num[24];
	int n = snprintf(num, sizeof(num), "%" PRIu64, v);

	canon_raw(c, num, (size_t)n);
}

static void canon_ranges(struct canon *c, const struct range_list *l)
{
	canon_raw(c, "[", 1);
	for (size_t i = 0; i < l->n; i++) {
		char buf[RANGE_STRLEN];

		canon_comma(c, i);
		range_format(&l->v[i], buf);
		canon_str(c, buf);
	}
	canon_raw(c, "]", 1);
}

static void canon_rule(struct canon *c, const struct bundle *b, const struct bundle_rule *r)
{
	canon_key(c, "id", true);
	canon_str(c, r->id);
	canon_key(c, "policy", false);
	canon_str(c, r->policy);
	canon_key(c, "index", false);
	canon_uint(c, r->index);
	canon_key(c, "action", false);
	canon_str(c, action_name(r->action));
	canon_key(c, "mode", false);
	canon_str(c, mode_name(r->mode));
	if (!r->any_peer) {
		canon_key(c, "peers", false);
		canon_raw(c, "[", 1);
		for (size_t i = 0; i < r->n_sets; i++) {
			canon_comma(c, i);
			canon_str(c, b->sets[r->sets[i]].id);
		}
		canon_raw(c, "]", 1);
	}
	if (!r->any_port) {
		canon_key(c, "ports", false);
		canon_raw(c, "[", 1);
		for (size_t i = 0; i < r->n_ports; i++) {
			char buf[32];

			canon_comma(c, i);
			port_match_format(&r->ports[i], buf, sizeof(buf));
			canon_str(c, buf);
		}
		canon_raw(c, "]", 1);
	}
}

static void canon_endpoint(struct canon *c, const struct bundle *b, const struct bundle_endpoint *be)
{
	canon_key(c, "name", true);
	canon_str(c, be->name);
	canon_key(c, "addresses", false);
	canon_raw(c, "[", 1);
	for (size_t i = 0; i < be->n_addrs; i++) {
		char buf[ADDR_STRLEN];

		canon_comma(c, i);
		addr_format(&be->addrs[i], buf);
		canon_str(c, buf);
	}
	canon_raw(c, "]", 1);
	for (enum direction dir = 0; dir < DIR_COUNT; dir++) {
		const struct bundle_chain *ch = &be->chains[dir];

		canon_key(c, direction_name(dir), false);
		canon_lit(c, "{\"rules\":[");
		for (size_t i = 0; i < ch->n_rules; i++) {
			canon_comma(c, i);
			canon_raw(c, "{", 1);
			canon_rule(c, b, &ch->rules[i]);
			canon_raw(c, "}", 1);
		}
		canon_raw(c, "]", 1);
		canon_key(c, "fallback", false);
		canon_str(c, verdict_name(ch->fallback));
		canon_key(c, "fallback_reason", false);
		canon_str(c, ch->fallback_reason);
		canon_raw(c, "}", 1);
	}
}

static void canon_named_port(struct canon *c, const struct bundle_named_port *t)
{
	canon_key(c, "id", true);
	canon_str(c, t->id);
	for (int family = AF_INET, k = 0; k < 2; k++, family = AF_INET6) {
		bool first = true;

		canon_key(c, family == AF_INET ? "v4" : "v6", false);
		canon_raw(c, "[", 1);
		for (size_t i = 0; i < t->n; i++) {
			char buf[ADDR_STRLEN];

			if (t->v[i].addr.family != family)
				continue;
			canon_raw(c, first ? "[" : ",[", first ? 1 : 2);
			first = false;
			addr_format(&t->v[i].addr, buf);
			canon_str(c, buf);
			canon_raw(c, ",", 1);
			canon_uint(c, t->v[i].port);
			canon_raw(c, "]", 1);
		}
		canon_raw(c, "]", 1);
	}
}

/* The bundle's compact text; with_hash: with its "hash" (last, as
 * bundle_to_json() puts it), else without (what the hash is taken of). */
static void canon_bundle(struct canon *c, const struct bundle *b, bool with_hash)
{
	canon_raw(c, "{", 1);
	canon_key(c, "format", true);
	canon_uint(c, BUNDLE_FORMAT);
	canon_key(c, "node", false);
	canon_str(c, b->node);
	if (b->observe == OBSERVE_ALL) {
		canon_key(c, "observe", false);
		canon_str(c, observe_name(b->observe));
	}
	canon_key(c, "endpoints", false);
	canon_raw(c, "[", 1);
	for (size_t e = 0; e < b->n_endpoints; e++) {
		canon_comma(c, e);
		canon_raw(c, "{", 1);
		canon_endpoint(c, b, &b->endpoints[e]);
		canon_raw(c, "}", 1);
	}
	canon_raw(c, "]", 1);
	canon_key(c, "sets", false);
	canon_raw(c, "[", 1);
	for (size_t i = 0; i < b->n_sets; i++) {
		const struct bundle_set *s = &b->sets[i];

		canon_comma(c, i);
		canon_raw(c, "{", 1);
		canon_key(c, "id", true);
		canon_str(c, s->id);
		canon_key(c, "kind", false);
		canon_str(c, s->kind == SET_HOSTS ? "hosts" : "ranges");
		canon_key(c, "ipv4", false);
		canon_ranges(c, &s->v4);
		canon_key(c, "ipv6", false);
		canon_ranges(c, &s->v6);
		canon_raw(c, "}", 1);
	}
	canon_raw(c, "]", 1);
	if (b->n_named_ports) {
		canon_key(c, "named_ports", false);
		canon_raw(c, "[", 1);
		for (size_t i = 0; i < b->n_named_ports; i++) {
			canon_comma(c, i);
			canon_raw(c, "{", 1);
			canon_named_port(c, &b->named_ports[i]);
			canon_raw(c, "}", 1);
		}
		canon_raw(c, "]", 1);
	}
	if (with_hash) {
		canon_key(c, "hash", false);
		canon_str(c, b->hash);
	}
	canon_raw(c, "}", 1);
}

int bundle_update_hash(struct bundle *b)
{
	struct sha256 h;
	struct canon *c = calloc(1, sizeof(*c));
	uint8_t d[SHA256_DIGEST_LEN];

	if (!c)
		return -ENOMEM;
	sha256_init(&h);
	c->h = &h;
	canon_bundle(c, b, false);
	canon_flush(c);
	sha256_final(&h, d);
	bool bad = c->bad;

	free(c);
	if (bad)
		return -EINVAL;
	for (int i = 0; i < SHA256_DIGEST_LEN; i++)
		snprintf(b->hash + 2 * i, 3, "%02x", d[i]);
	return 0;
}

json_t *bundle_to_json(const struct bundle *b)
{
	json_t *root = bundle_to_json_unhashed(b);
	if (root && json_object_set_new(root, "hash", json_string(b->hash)) < 0) {
		json_decref(root);
		return NULL;
	}
	return root;
}

char *bundle_encode(const struct bundle *b, bool pretty)
{
	if (pretty) {
		json_t *root = bundle_to_json(b);
		char *text = root ? json_dumps(root, JSON_INDENT(2)) : NULL;
		json_decref(root);
		return text;
	}
	/* Compact: the hash's own writer, into a string (a 100,000-member
	 * bundle in 10 ms, not 45 through jansson's tree). */
	struct canon *c = calloc(1, sizeof(*c));
	char *text = NULL;

	if (!c)
		return NULL;
	canon_bundle(c, b, true);
	canon_flush(c);
	if (!c->bad && !c->oom)
		text = c->text;
	else
		free(c->text);
	free(c);
	return text;
}

/* ---- decoding ---- */

static const char *walk_required_string(struct json_walk *w, json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	size_t mark = jpath_push_key(&w->path, key);
	const char *s = NULL;
	if (!v)
		walk_error(w, "missing required key");
	else
		s = walk_take_string(w, v);
	jpath_pop(&w->path, mark);
	return s;
}

/* A string member that must be one of names[]; returns the index or -1. */
static int walk_enum(struct json_walk *w, json_t *obj, const char *key, const char *const *names)
{
	const char *s = walk_required_string(w, obj, key);
	if (!s)
		return -1;
	int i = vocab_find(names, s);
	if (i >= 0)
		return i;
	size_t mark = jpath_push_key(&w->path, key);
	walk_error(w, "unexpected value \"%s\"", s);
	jpath_pop(&w->path, mark);
	return -1;
}

/* One element of a set's list (a bundle's or a delta's): an address or
 * range of the family, a single address in a hosts set. */
static bool take_range(struct json_walk *w, json_t *item, int family, bool hosts, struct addr_range *r)
{
	if (!walk_expect_type(w, item, JSON_STRING))
		return false;
	if (range_parse(json_string_value(item), r) < 0 || r->lo.family != family) {
		walk_error(w, "\"%s\": not an %s address or range", json_string_value(item),
			   family == AF_INET ? "IPv4" : "IPv6");
		return false;
	}
	if (hosts && addr_cmp(&r->lo, &r->hi) != 0) {
		walk_error(w, "\"%s\": a hosts set holds single addresses", json_string_value(item));
		return false;
	}
	return true;
}

static void decode_ranges(struct json_walk *w, json_t *obj, const char *key, int family, bool hosts,
			  struct range_list *out)
{
	range_list_init(out, w->arena);
	json_t *arr = json_object_get(obj, key);
	size_t mark = jpath_push_key(&w->path, key);
	if (!arr) {
		walk_error(w, "missing required key");
	} else if (walk_expect_type(w, arr, JSON_ARRAY)) {
		if (range_list_reserve(out, json_array_size(arr)) < 0)
			w->oom = true;
		for (size_t i = 0; i < json_array_size(arr); i++) {
			size_t m2 = jpath_push_index(&w->path, i);
			struct addr_range r;
			if (take_range(w, json_array_get(arr, i), family, hosts, &r) &&
			    range_list_add(out, &r) < 0)
				w->oom = true;
			jpath_pop(&w->path, m2);
		}
	}
	jpath_pop(&w->path, mark);
	if (hosts)
		range_list_sort_unique(out);
	else
		range_list_normalize(out);
}

static int set_cmp(const void *a, const void *b)
{
	return strcmp(((const struct bundle_set *)a)->id, ((const struct bundle_set *)b)->id);
}

static void decode_sets(struct json_walk *w, json_t *arr, struct bundle *b)
{
	static const char *const keys[] = {"id", "kind", "ipv4", "ipv6", NULL};
	static const char *const kinds[] = {"hosts", "ranges", NULL};
	size_t n = json_array_size(arr);
	b->sets = arena_calloc(w->arena, n ? n : 1, sizeof(*b->sets));
	if (!b->sets) {
		w->oom = true;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		size_t mark = jpath_push_index(&w->path, i);
		json_t *o = json_array_get(arr, i);
		struct bundle_set *s = &b->sets[i];
		if (walk_expect_type(w, o, JSON_OBJECT)) {
			walk_check_keys(w, o, keys, NULL);
			s->id = walk_required_string(w, o, "id");
			int kind = walk_enum(w, o, "kind", kinds);
			s->kind = kind == 1 ? SET_RANGES : SET_HOSTS;
			decode_ranges(w, o, "ipv4", AF_INET, kind == 0, &s->v4);
			decode_ranges(w, o, "ipv6", AF_INET6, kind == 0, &s->v6);
		}
		if (!s->id)
			s->id = "";
		jpath_pop(&w->path, mark);
	}
	b->n_sets = n;
	qsort(b->sets, n, sizeof(*b->sets), set_cmp);
	for (size_t i = 1; i < n; i++) {
		if (strcmp(b->sets[i - 1].id, b->sets[i].id) == 0)
			walk_error(w, "set \"%s\" appears more than once", b->sets[i].id);
	}
}

/* One family's pairs of a table: [["198.18.0.5", 8080], ...], appended
 * to t->v (room for them is there). */
/* One [ADDRESS, PORT] pair of a named-port table (a bundle's or a
 * delta's), the address of the family. */
static bool take_named_pair(struct json_walk *w, json_t *item, int family, struct bundle_named_addr *e)
{
	json_t *a = json_array_get(item, 0), *p = json_array_get(item, 1);

	if (!json_is_array(item) || json_array_size(item) != 2 || !json_is_string(a) || !json_is_integer(p)) {
		walk_error(w, "expected [ADDRESS, PORT]");
	} else if (addr_parse(json_string_value(a), &e->addr) < 0 || e->addr.family != family) {
		walk_error(w, "\"%s\": not an %s address", json_string_value(a),
			   family == AF_INET ? "IPv4" : "IPv6");
	} else if (json_integer_value(p) < 1 || json_integer_value(p) > 65535) {
		walk_error(w, "%lld: port out of range (1-65535)", (long long)json_integer_value(p));
	} else {
		e->port = (uint16_t)json_integer_value(p);
		return true;
	}
	return false;
}

static void decode_named_pairs(struct json_walk *w, json_t *o, const char *key, int family,
			       struct bundle_named_port *t)
{
	json_t *arr = json_object_get(o, key);
	size_t mark = jpath_push_key(&w->path, key);
	if (!arr) {
		walk_error(w, "missing required key");
	} else if (walk_expect_type(w, arr, JSON_ARRAY)) {
		for (size_t i = 0; i < json_array_size(arr); i++) {
			size_t m2 = jpath_push_index(&w->path, i);
			if (take_named_pair(w, json_array_get(arr, i), family, &t->v[t->n]))
				t->n++;
			jpath_pop(&w->path, m2);
		}
	}
	jpath_pop(&w->path, mark);
}

/* "tcp/http" or "tcp/http#deny": the id of a table, and what it names. */
static bool named_id_parse(struct json_walk *w, const char *id, struct bundle_named_port *t)
{
	char base[BUNDLE_NAMED_ID_MAX];
	size_t n = strlen(id), sfx = strlen(BUNDLE_SET_DENY_SUFFIX);
	if (n > sfx && strcmp(id + n - sfx, BUNDLE_SET_DENY_SUFFIX) == 0)
		n -= sfx;
	struct port_match m;
	const char *why = "not PROTO/NAME";
	if (n < sizeof(base)) {
		memcpy(base, id, n);
		base[n] = '\0';
	}
	if (n >= sizeof(base) || port_match_parse(base, &m, &why) < 0 || !m.name) {
		walk_error(w, "\"%s\": not a named-port table id (PROTO/NAME or PROTO/NAME%s): %s", id,
			   BUNDLE_SET_DENY_SUFFIX, why);
		return false;
	}
	t->proto = m.proto;
	t->name = arena_strdup(w->arena, m.name);
	if (!t->name)
		w->oom = true;
	return t->name != NULL;
}

static int named_port_cmp(const void *a, const void *b)
{
	return strcmp(((const struct bundle_named_port *)a)->id, ((const struct bundle_named_port *)b)->id);
}

static void decode_named_ports(struct json_walk *w, json_t *arr, struct bundle *b)
{
	static const char *const keys[] = {"id", "v4", "v6", NULL};
	size_t n = json_array_size(arr);
	if (n == 0) {
		walk_error(w, "an empty list is left out");
		return;
	}
	b->named_ports = arena_calloc(w->arena, n, sizeof(*b->named_ports));
	if (!b->named_ports) {
		w->oom = true;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		size_t mark = jpath_push_index(&w->path, i);
		json_t *o = json_array_get(arr, i);
		struct bundle_named_port *t = &b->named_ports[i];
		if (walk_expect_type(w, o, JSON_OBJECT)) {
			walk_check_keys(w, o, keys, NULL);
			t->id = walk_required_string(w, o, "id");
			if (t->id) {
				size_t m2 = jpath_push_key(&w->path, "id");
				if (!named_id_parse(w, t->id, t))
					t->id = NULL;
				jpath_pop(&w->path, m2);
			}
			size_t cap = json_array_size(json_object_get(o, "v4")) +
				     json_array_size(json_object_get(o, "v6"));
			t->v = arena_calloc(w->arena, cap ? cap : 1, sizeof(*t->v));
			if (!t->v) {
				w->oom = true;
			} else {
				decode_named_pairs(w, o, "v4", AF_INET, t);
				decode_named_pairs(w, o, "v6", AF_INET6, t);
				qsort(t->v, t->n, sizeof(*t->v), bundle_named_addr_cmp);
				for (size_t k = 1; k < t->n; k++) {
					if (bundle_named_addr_cmp(&t->v[k - 1], &t->v[k]) == 0) {
						walk_error(w, "a pair appears more than once");
						break;
					}
				}
			}
		}
		if (!t->id)
			t->id = "";
		jpath_pop(&w->path, mark);
	}
	b->n_named_ports = n;
	qsort(b->named_ports, n, sizeof(*b->named_ports), named_port_cmp);
	for (size_t i = 1; i < n; i++) {
		/* "": an id already reported. */
		if (*b->named_ports[i].id && strcmp(b->named_ports[i - 1].id, b->named_ports[i].id) == 0)
			walk_error(w, "named-port table \"%s\" appears more than once", b->named_ports[i].id);
	}
}

/* Index of the element whose id is id in v, n elements of size bytes sorted
 * by id, the id a const char * at offset id_at (sets and named-port tables
 * alike). */
static bool find_by_id(const void *v, size_t n, size_t size, size_t id_at, const char *id, uint32_t *out)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const char *mid_id = *(const char *const *)((const char *)v + mid * size + id_at);
		int c = strcmp(id, mid_id);
		if (c == 0) {
			*out = (uint32_t)mid;
			return true;
		}
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return false;
}

static bool find_named_port(const struct bundle *b, const char *id, uint32_t *out)
{
	return find_by_id(b->named_ports, b->n_named_ports, sizeof(*b->named_ports),
			  offsetof(struct bundle_named_port, id), id, out);
}

/* A rule's named port: refused on ingress (the controller resolves those
 * to numbers); on egress, the table of its name for its action. */
static void decode_named_ref(struct json_walk *w, const struct bundle *b, enum direction dir,
			     enum rule_action action, struct port_match *m)
{
	char id[BUNDLE_NAMED_ID_MAX];
	if (dir == DIR_INGRESS) {
		walk_error(w,
			   "\"%s/%s\": an ingress rule carries numbers (its names are resolved by the "
			   "controller)",
			   proto_name(m->proto), m->name);
		return;
	}
	snprintf(id, sizeof(id), "%s/%s%s", proto_name(m->proto), m->name,
		 action == ACTION_DENY ? BUNDLE_SET_DENY_SUFFIX : "");
	if (!find_named_port(b, id, &m->named_table)) {
		walk_error(w, "no named-port table \"%s\" for this %s rule", id, action_name(action));
		return;
	}
	m->name = b->named_ports[m->named_table].name;
}

static bool find_set(const struct bundle *b, const char *id, uint32_t *out)
{
	return find_by_id(b->sets, b->n_sets, sizeof(*b->sets), offsetof(struct bundle_set, id), id, out);
}

static void decode_rule(struct json_walk *w, json_t *o, const struct bundle *b, enum direction dir,
			struct bundle_rule *r)
{
	static const char *const keys[] = {"id", "policy", "index", "action", "mode", "peers", "ports", NULL};
	if (!walk_expect_type(w, o, JSON_OBJECT))
		return;
	walk_check_keys(w, o, keys, NULL);
	r->id = walk_required_string(w, o, "id");
	r->policy = walk_required_string(w, o, "policy");
	json_t *v = json_object_get(o, "index");
	size_t mark = jpath_push_key(&w->path, "index");
	if (!v)
		walk_error(w, "missing required key");
	else if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > UINT32_MAX)
		walk_error(w, "expected a rule index (0 to %u)", UINT32_MAX);
	else
		r->index = (uint32_t)json_integer_value(v);
	jpath_pop(&w->path, mark);
	r->action = walk_enum(w, o, "action", action_words) == ACTION_DENY ? ACTION_DENY : ACTION_ALLOW;
	r->mode = walk_enum(w, o, "mode", mode_words) == MODE_AUDIT ? MODE_AUDIT : MODE_ENFORCE;
	if (r->id && r->policy) {
		char *want = arena_printf(w->arena, "%s/%s/%u", r->policy, direction_name(dir), r->index);
		mark = jpath_push_key(&w->path, "id");
		if (want && strcmp(want, r->id) != 0)
			walk_error(w, "rule id \"%s\" does not match policy, direction and index (\"%s\")",
				   r->id, want);
		jpath_pop(&w->path, mark);
	}

	v = json_object_get(o, "peers");
	r->any_peer = !v;
	mark = jpath_push_key(&w->path, "peers");
	if (v && walk_expect_type(w, v, JSON_ARRAY)) {
		size_t n = json_array_size(v);
		r->sets = arena_calloc(w->arena, n ? n : 1, sizeof(*r->sets));
		for (size_t i = 0; r->sets && i < n; i++) {
			size_t m2 = jpath_push_index(&w->path, i);
			json_t *item = json_array_get(v, i);
			if (walk_expect_type(w, item, JSON_STRING)) {
				if (find_set(b, json_string_value(item), &r->sets[r->n_sets]))
					r->n_sets++;
				else
					walk_error(w, "unknown set \"%s\"", json_string_value(item));
			}
			jpath_pop(&w->path, m2);
		}
		if (!r->sets)
			w->oom = true;
	}
	jpath_pop(&w->path, mark);

	v = json_object_get(o, "ports");
	r->any_port = !v;
	mark = jpath_push_key(&w->path, "ports");
	if (v && walk_expect_type(w, v, JSON_ARRAY)) {
		size_t n = json_array_size(v);
		r->ports = arena_calloc(w->arena, n ? n : 1, sizeof(*r->ports));
		for (size_t i = 0; r->ports && i < n; i++) {
			size_t m2 = jpath_push_index(&w->path, i);
			json_t *item = json_array_get(v, i);
			const char *why;
			struct port_match *m = &r->ports[r->n_ports];
			if (!walk_expect_type(w, item, JSON_STRING)) {
			} else if (port_match_parse(json_string_value(item), m, &why) < 0) {
				walk_error(w, "\"%s\": %s", json_string_value(item), why);
			} else {
				if (m->name)
					decode_named_ref(w, b, dir, r->action, m);
				r->n_ports++;
			}
			jpath_pop(&w->path, m2);
		}
		if (!r->ports)
			w->oom = true;
	}
	jpath_pop(&w->path, mark);
}

static void decode_chain(struct json_walk *w, json_t *o, const struct bundle *b, enum direction dir,
			 struct bundle_chain *c)
{
	static const char *const keys[] = {"rules", "fallback", "fallback_reason", NULL};
	if (!walk_expect_type(w, o, JSON_OBJECT))
		return;
	walk_check_keys(w, o, keys, NULL);
	int verdict = walk_enum(w, o, "fallback", verdict_words);
	c->fallback = verdict < 0 ? VERDICT_DROP : (enum verdict)verdict;
	int reason = walk_enum(w, o, "fallback_reason", fallback_reason_words);
	c->fallback_reason = fallback_reason_words[reason == 0 ? 0 : 1];

	json_t *rules = json_object_get(o, "rules");
	size_t mark = jpath_push_key(&w->path, "rules");
	if (!rules) {
		walk_error(w, "missing required key");
	} else if (walk_expect_type(w, rules, JSON_ARRAY)) {
		size_t n = json_array_size(rules);
		c->rules = arena_calloc(w->arena, n ? n : 1, sizeof(*c->rules));
		if (!c->rules)
			w->oom = true;
		for (size_t i = 0; c->rules && i < n; i++) {
			size_t m2 = jpath_push_index(&w->path, i);
			decode_rule(w, json_array_get(rules, i), b, dir, &c->rules[i]);
			jpath_pop(&w->path, m2);
		}
		c->n_rules = c->rules ? n : 0;
	}
	jpath_pop(&w->path, mark);
}

static int endpoint_cmp(const void *a, const void *b)
{
	return strcmp(((const struct bundle_endpoint *)a)->name, ((const struct bundle_endpoint *)b)->name);
}

static void decode_endpoint(struct json_walk *w, json_t *o, const struct bundle *b,
			    struct bundle_endpoint *be)
{
	static const char *const keys[] = {"name", "addresses", "ingress", "egress", NULL};
	be->name = ""; /* sorted with the rest even when invalid */
	if (!walk_expect_type(w, o, JSON_OBJECT))
		return;
	walk_check_keys(w, o, keys, NULL);
	be->name = walk_required_string(w, o, "name");
	if (be->name && !name_valid(be->name, NAME_MAX_LEN)) {
		size_t mark = jpath_push_key(&w->path, "name");
		walk_error(w, "invalid endpoint name \"%s\"", be->name);
		jpath_pop(&w->path, mark);
	}
	json_t *addrs = json_object_get(o, "addresses");
	size_t mark = jpath_push_key(&w->path, "addresses");
	if (addrs && walk_expect_type(w, addrs, JSON_ARRAY)) {
		size_t n = json_array_size(addrs);
		be->addrs = arena_calloc(w->arena, n ? n : 1, sizeof(*be->addrs));
		for (size_t i = 0; be->addrs && i < n; i++) {
			size_t m2 = jpath_push_index(&w->path, i);
			json_t *item = json_array_get(addrs, i);
			if (walk_expect_type(w, item, JSON_STRING)) {
				if (addr_parse(json_string_value(item), &be->addrs[be->n_addrs]) == 0)
					be->n_addrs++;
				else
					walk_error(w, "\"%s\": not an IPv4 or IPv6 address",
						   json_string_value(item));
			}
			jpath_pop(&w->path, m2);
		}
		if (!be->addrs)
			w->oom = true;
	}
	jpath_pop(&w->path, mark);
	for (enum direction dir = 0; dir < DIR_COUNT; dir++) {
		json_t *c = json_object_get(o, direction_name(dir));
		mark = jpath_push_key(&w->path, direction_name(dir));
		if (!c)
			walk_error(w, "missing required key");
		else
			decode_chain(w, c, b, dir, &be->chains[dir]);
		jpath_pop(&w->path, mark);
	}
	if (!be->name)
		be->name = "";
}

/* The hash a bundle says it has: longer than any real one when it is, so
 * that it matches none. */
typedef char bundle_claim[BUNDLE_HASH_HEX + 2];

/* bundle_from_json() but the hash check, which needs no JSON: the caller
 * may free root first (a big bundle's tree is as big as the bundle). */
static struct bundle *from_json(json_t *root, struct diag *diag, bundle_claim claim)
{
	static const char *const keys[] = {"format",	"node", "observe",     "hash",
					   "endpoints", "sets", "named_ports", NULL};
	size_t errors = diag->n;
	struct arena *arena = arena_new();
	struct bundle *b = arena ? arena_alloc(arena, sizeof(*b)) : NULL;
	if (!b) {
		arena_free(arena);
		diag_add(diag, "", "out of memory");
		return NULL;
	}
	b->arena = arena;
	struct json_walk w;
	walk_init(&w, arena, diag);

	if (!walk_expect_type(&w, root, JSON_OBJECT))
		goto err_free_bundle;
	walk_check_keys(&w, root, keys, NULL);
	json_t *v = json_object_get(root, "format");
	size_t mark = jpath_push_key(&w.path, "format");
	if (!v || !json_is_integer(v) || json_integer_value(v) != BUNDLE_FORMAT)
		walk_error(&w, "unsupported bundle format (this Bulkhead reads format %d)", BUNDLE_FORMAT);
	jpath_pop(&w.path, mark);
	b->node = walk_required_string(&w, root, "node");
	if (json_object_get(root, "observe"))
		b->observe = walk_enum(&w, root, "observe", observe_words) == OBSERVE_ALL ? OBSERVE_ALL
											  : OBSERVE_DENIED;
	const char *hash = walk_required_string(&w, root, "hash");
	snprintf(claim, sizeof(bundle_claim), "%s", hash ? hash : "");

	/* Sets first: rules refer to them by id. */
	v = json_object_get(root, "sets");
	mark = jpath_push_key(&w.path, "sets");
	if (!v)
		walk_error(&w, "missing required key");
	else if (walk_expect_type(&w, v, JSON_ARRAY))
		decode_sets(&w, v, b);
	jpath_pop(&w.path, mark);

	/* Named-port tables too (optional: only when there are some). */
	v = json_object_get(root, "named_ports");
	mark = jpath_push_key(&w.path, "named_ports");
	if (v && walk_expect_type(&w, v, JSON_ARRAY))
		decode_named_ports(&w, v, b);
	jpath_pop(&w.path, mark);

	v = json_object_get(root, "endpoints");
	mark = jpath_push_key(&w.path, "endpoints");
	if (!v) {
		walk_error(&w, "missing required key");
	} else if (walk_expect_type(&w, v, JSON_ARRAY)) {
		size_t n = json_array_size(v);
		b->endpoints = arena_calloc(arena, n ? n : 1, sizeof(*b->endpoints));
		if (!b->endpoints)
			w.oom = true;
		for (size_t i = 0; b->endpoints && i < n; i++) {
			size_t m2 = jpath_push_index(&w.path, i);
			decode_endpoint(&w, json_array_get(v, i), b, &b->endpoints[i]);
			jpath_pop(&w.path, m2);
		}
		b->n_endpoints = b->endpoints ? n : 0;
		qsort(b->endpoints, b->n_endpoints, sizeof(*b->endpoints), endpoint_cmp);
		for (size_t i = 1; i < b->n_endpoints; i++) {
			if (strcmp(b->endpoints[i - 1].name, b->endpoints[i].name) == 0)
				walk_error(&w, "endpoint \"%s\" appears more than once",
					   b->endpoints[i].name);
		}
	}
	jpath_pop(&w.path, mark);

	if (w.oom)
		diag_add(diag, "", "out of memory");
	if (diag->n != errors)
		goto err_free_bundle;
	return b;

err_free_bundle:
	bundle_free(b);
	return NULL;
}

struct bundle *bundle_hash_checked(struct bundle *b, const char *claim, struct diag *diag)
{
	if (!b)
		return NULL;
	int r = bundle_update_hash(b);

	if (r == -EINVAL) {
		diag_add(diag, "", "a string is not UTF-8");
	} else if (r < 0) {
		diag_add(diag, "", "out of memory");
	} else if (strcmp(claim, b->hash) != 0) {
		diag_add(diag, "/hash", "hash mismatch: content hashes to %s", b->hash);
	} else {
		return b;
	}
	bundle_free(b);
	return NULL;
}

struct bundle *bundle_from_json(json_t *root, struct diag *diag)
{
	bundle_claim claim;
	struct bundle *b = from_json(root, diag, claim);

	return bundle_hash_checked(b, claim, diag);
}

struct bundle *bundle_decode(const char *text, size_t len, struct diag *diag)
{
	bundle_claim claim;
	json_t *root = json_util_loadb(text, len, diag);
	if (!root)
		return NULL;
	struct bundle *b = from_json(root, diag, claim);
	json_decref(root); /* before the hash builds the canonical text */
	return bundle_hash_checked(b, claim, diag);
}

/* ---- a DELTA applied to the bundle held ----
 *
 * What proto_delta_apply() and bundle_from_json() give together, without
 * the JSON of every address in between: the held bundle is copied, each
 * SET-DELTA and NAMED-DELTA list is merged into its copy (removals found
 * by value, additions sorted and merged: linear in the list, not a sort of
 * it), each element checked as decoding checks it. A one-member delta to a
 * 100,000-member bundle: 60 ms of JSON before, a copy now. */

struct clone {
	struct arena *arena;
	bool oom;
};

static const char *clone_str(struct clone *c, const char *s)
{
	char *d = s ? arena_strdup(c->arena, s) : NULL;

	if (s && !d)
		c->oom = true;
	return d;
}

static void *clone_mem(struct clone *c, const void *v, size_t n, size_t size)
{
	void *d = arena_calloc(c->arena, n ? n : 1, size);

	if (!d)
		c->oom = true;
	else if (n)
		memcpy(d, v, n * size);
	return d;
}

static void clone_ranges(struct clone *c, struct range_list *l, const struct range_list *from)
{
	range_list_init(l, c->arena);
	if (range_list_reserve(l, from->n) < 0) {
		c->oom = true;
		return;
	}
	if (from->n)
		memcpy(l->v, from->v, from->n * sizeof(*l->v));
	l->n = from->n;
}

static void clone_rules(struct clone *c, struct bundle_chain *ch)
{
	ch->rules = clone_mem(c, ch->rules, ch->n_rules, sizeof(*ch->rules));
	ch->fallback_reason = clone_str(c, ch->fallback_reason);
	for (size_t i = 0; ch->rules && i < ch->n_rules; i++) {
		struct bundle_rule *r = &ch->rules[i];

		r->id = clone_str(c, r->id);
		r->policy = clone_str(c, r->policy);
		r->sets = clone_mem(c, r->sets, r->n_sets, sizeof(*r->sets));
		r->ports = clone_mem(c, r->ports, r->n_ports, sizeof(*r->ports));
		for (size_t k = 0; r->ports && k < r->n_ports; k++)
			r->ports[k].name = clone_str(c, r->ports[k].name);
	}
}

/* base, deep: nothing shared, so either can be freed first. */
static struct bundle *bundle_clone(const struct bundle *base)
{
	struct clone c = {.arena = arena_new()};
	struct bundle *b = c.arena ? arena_alloc(c.arena, sizeof(*b)) : NULL;

	if (!b) {
		arena_free(c.arena);
		return NULL;
	}
	*b = *base;
	b->arena = c.arena;
	b->node = clone_str(&c, base->node);
	b->endpoints = clone_mem(&c, base->endpoints, base->n_endpoints, sizeof(*b->endpoints));
	for (size_t e = 0; b->endpoints && e < b->n_endpoints; e++) {
		struct bundle_endpoint *be = &b->endpoints[e];

		be->name = clone_str(&c, be->name);
		be->addrs = clone_mem(&c, be->addrs, be->n_addrs, sizeof(*be->addrs));
		for (enum direction dir = 0; dir < DIR_COUNT; dir++)
			clone_rules(&c, &be->chains[dir]);
	}
	b->sets = clone_mem(&c, base->sets, base->n_sets, sizeof(*b->sets));
	for (size_t i = 0; b->sets && i < b->n_sets; i++) {
		b->sets[i].id = clone_str(&c, base->sets[i].id);
		clone_ranges(&c, &b->sets[i].v4, &base->sets[i].v4);
		clone_ranges(&c, &b->sets[i].v6, &base->sets[i].v6);
	}
	b->named_ports = clone_mem(&c, base->named_ports, base->n_named_ports, sizeof(*b->named_ports));
	for (size_t i = 0; b->named_ports && i < b->n_named_ports; i++) {
		struct bundle_named_port *t = &b->named_ports[i];

		t->id = clone_str(&c, t->id);
		t->name = clone_str(&c, t->name);
		t->v = clone_mem(&c, t->v, t->n, sizeof(*t->v));
	}
	if (c.oom || !b->endpoints || !b->sets || !b->named_ports) {
		arena_free(c.arena);
		return NULL;
	}
	return b;
}

static int range_lo_cmp(const void *a, const void *b)
{
	return addr_cmp(&((const struct addr_range *)a)->lo, &((const struct addr_range *)b)->lo);
}

static bool range_eq(const struct addr_range *a, const struct addr_range *b)
{
	return addr_cmp(&a->lo, &b->lo) == 0 && addr_cmp(&a->hi, &b->hi) == 0;
}

/* key's checked elements into out (malloc'd), sorted by start. */
static void delta_ranges_of(struct json_walk *w, json_t *fd, const char *key, int family, bool hosts,
			    struct range_list *out)
{
	json_t *arr = json_object_get(fd, key);
	size_t mark = jpath_push_key(&w->path, key);

	range_list_init(out, NULL);
	if (arr && walk_expect_type(w, arr, JSON_ARRAY)) {
		if (range_list_reserve(out, json_array_size(arr)) < 0)
			w->oom = true;
		for (size_t i = 0; !w->oom && i < json_array_size(arr); i++) {
			size_t m2 = jpath_push_index(&w->path, i);
			struct addr_range r;

			if (take_range(w, json_array_get(arr, i), family, hosts, &r) &&
			    range_list_add(out, &r) < 0)
				w->oom = true;
			jpath_pop(&w->path, m2);
		}
	}
	jpath_pop(&w->path, mark);
	if (out->n > 1)
		qsort(out->v, out->n, sizeof(*out->v), range_lo_cmp);
}

/* One family of a SET-DELTA on l: its removals out, its additions in, l
 * left as decode_ranges leaves a list (hosts: sorted and unique; ranges:
 * normalized). A removal is an element as held; one held nowhere changes
 * nothing (the hash check then tells). */
static void delta_ranges(struct json_walk *w, json_t *fd, int family, bool hosts, struct range_list *l)
{
	struct range_list add, rem;
	struct addr_range *out = NULL;
	size_t n = 0, j = 0, k = 0;

	delta_ranges_of(w, fd, "add", family, hosts, &add);
	delta_ranges_of(w, fd, "remove", family, hosts, &rem);
	if (!w->oom && !(out = arena_calloc(w->arena, l->n + add.n + 1, sizeof(*out))))
		w->oom = true;
	for (size_t i = 0; out && i < l->n; i++) {
		const struct addr_range *cur = &l->v[i];
		bool removed = false;

		while (j < rem.n && addr_cmp(&rem.v[j].lo, &cur->lo) < 0)
			j++;
		for (size_t x = j; x < rem.n && addr_cmp(&rem.v[x].lo, &cur->lo) == 0 && !removed; x++)
			removed = range_eq(&rem.v[x], cur);
		while (k < add.n && addr_cmp(&add.v[k].lo, &cur->lo) < 0)
			out[n++] = add.v[k++];
		if (!removed)
			out[n++] = *cur;
	}
	while (out && k < add.n)
		out[n++] = add.v[k++];
	if (out) {
		l->v = out;
		l->n = n;
		l->cap = l->n + add.n + 1;
		if (hosts)
			range_list_unique_sorted(l);
		else
			range_list_coalesce_sorted(l);
	}
	range_list_release(&add);
	range_list_release(&rem);
}

/* key's checked pairs, sorted (malloc'd; *n of them). */
static struct bundle_named_addr *delta_pairs_of(struct json_walk *w, json_t *fd, const char *key, int family,
						size_t *n)
{
	json_t *arr = json_object_get(fd, key);
	size_t mark = jpath_push_key(&w->path, key), len = json_is_array(arr) ? json_array_size(arr) : 0;
	struct bundle_named_addr *v = calloc(len ? len : 1, sizeof(*v));

	*n = 0;
	if (!v)
		w->oom = true;
	if (v && arr && walk_expect_type(w, arr, JSON_ARRAY)) {
		for (size_t i = 0; i < len; i++) {
			size_t m2 = jpath_push_index(&w->path, i);

			if (take_named_pair(w, json_array_get(arr, i), family, &v[*n]))
				(*n)++;
			jpath_pop(&w->path, m2);
		}
		qsort(v, *n, sizeof(*v), bundle_named_addr_cmp);
	}
	jpath_pop(&w->path, mark);
	return v;
}

/* One family of a NAMED-DELTA on table t, which stays sorted; a pair held
 * twice is refused, as decoding refuses it. */
static void delta_named(struct json_walk *w, json_t *fd, int family, struct bundle_named_port *t)
{
	size_t n_add, n_rem, n = 0, j = 0, k = 0;
	struct bundle_named_addr *add = delta_pairs_of(w, fd, "add", family, &n_add),
				 *rem = delta_pairs_of(w, fd, "remove", family, &n_rem), *out = NULL;

	if (add && rem && !(out = arena_calloc(w->arena, t->n + n_add + 1, sizeof(*out))))
		w->oom = true;
	for (size_t i = 0; out && i < t->n; i++) {
		while (j < n_rem && bundle_named_addr_cmp(&rem[j], &t->v[i]) < 0)
			j++;
		while (k < n_add && bundle_named_addr_cmp(&add[k], &t->v[i]) < 0)
			out[n++] = add[k++];
		if (!(j < n_rem && bundle_named_addr_cmp(&rem[j], &t->v[i]) == 0))
			out[n++] = t->v[i];
	}
	while (out && k < n_add)
		out[n++] = add[k++];
	for (size_t i = 1; out && i < n; i++) {
		if (bundle_named_addr_cmp(&out[i - 1], &out[i]) == 0) {
			walk_error(w, "a pair appears more than once");
			break;
		}
	}
	if (out) {
		t->v = out;
		t->n = n;
	}
	free(add);
	free(rem);
}

/* One entry of the DELTA's list on b. */
static void delta_entry(struct json_walk *w, json_t *d, struct bundle *b)
{
	static const char *const set_fams[] = {"ipv4", "ipv6"}, *const named_fams[] = {"v4", "v6"};
	json_t *named = json_object_get(d, "named_port");
	const char *key = named ? "named_port" : "id";
	const char *id = json_string_value(json_object_get(d, key));
	size_t mark = jpath_push_key(&w->path, key);
	uint32_t at = 0;
	bool found = id && (named ? find_named_port(b, id, &at) : find_set(b, id, &at));

	if (!found)
		walk_error(w, "no %s \"%s\" in the bundle held", named ? "named-port table" : "set",
			   id ? id : "?");
	jpath_pop(&w->path, mark);
	for (int k = 0; found && k < 2; k++) {
		int family = k ? AF_INET6 : AF_INET;
		const char *fam = named ? named_fams[k] : set_fams[k];
		json_t *fd = json_object_get(d, fam);

		if (!fd)
			continue;
		mark = jpath_push_key(&w->path, fam);
		if (walk_expect_type(w, fd, JSON_OBJECT)) {
			if (named) {
				delta_named(w, fd, family, &b->named_ports[at]);
			} else {
				struct bundle_set *s = &b->sets[at];

				delta_ranges(w, fd, family, s->kind == SET_HOSTS, k ? &s->v6 : &s->v4);
			}
		}
		jpath_pop(&w->path, mark);
	}
}

struct bundle *bundle_apply_delta(const struct bundle *base, json_t *sets, struct diag *diag)
{
	size_t errors = diag->n;
	struct bundle *b = bundle_clone(base);
	struct json_walk w;

	if (!b) {
		diag_add(diag, "", "out of memory");
		return NULL;
	}
	walk_init(&w, b->arena, diag);
	size_t mark = jpath_push_key(&w.path, "sets");

	if (walk_expect_type(&w, sets, JSON_ARRAY)) {
		for (size_t i = 0; !w.oom && i < json_array_size(sets); i++) {
			size_t m2 = jpath_push_index(&w.path, i);
			json_t *d = json_array_get(sets, i);

			if (walk_expect_type(&w, d, JSON_OBJECT))
				delta_entry(&w, d, b);
			jpath_pop(&w.path, m2);
		}
	}
	jpath_pop(&w.path, mark);
	if (w.oom)
		diag_add(diag, "", "out of memory");
	if (diag->n != errors) {
		bundle_free(b);
		return NULL;
	}
	b->hash[0] = '\0';
	return b;
}
