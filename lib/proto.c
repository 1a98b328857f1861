/* Agent ↔ controller messages (see proto.h): decoding from untrusted peers,
 * encoding, and the set-element deltas between two bundles. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/bundle.h"
#include "bulkhead/proto.h"

static const char *const type_names[PROTO_TYPE_COUNT] = {
	[PROTO_HELLO] = "HELLO",	 [PROTO_BUNDLE] = "BUNDLE",	  [PROTO_DELTA] = "DELTA",
	[PROTO_ACK] = "ACK",		 [PROTO_ENDPOINTS] = "ENDPOINTS", [PROTO_HEARTBEAT] = "HEARTBEAT",
	[PROTO_FLOWS] = "FLOWS",	 [PROTO_RESYNC] = "RESYNC",	  [PROTO_REFUSED] = "REFUSED",
	[PROTO_FLOWS_ACK] = "FLOWS_ACK",
};

const char *proto_type_name(enum proto_type t)
{
	return t < PROTO_TYPE_COUNT ? type_names[t] : "?";
}

/* ---- shape checks ---- */

enum field_kind {
	F_STRING,
	F_HASH,	 /* 64 lower-case hex digits */
	F_COUNT, /* integer >= 0 */
	F_BOOL,
	F_OBJECT,
	F_OBJECTS, /* array of objects */
};

struct field {
	const char *name;
	enum field_kind kind;
	bool nullable; /* null or absent is fine */
};

#define END {NULL, 0, false}

static const struct field hello_fields[] = {
	{"node", F_STRING, false},     {"agent", F_STRING, false},      {"revision", F_COUNT, true},
	{"hash", F_HASH, true},	       {"endpoints", F_OBJECTS, false}, END,
};
static const struct field bundle_fields[] = {{"revision", F_COUNT, false}, {"bundle", F_OBJECT, false}, END};
static const struct field delta_fields[] = {
	{"revision", F_COUNT, false}, {"base", F_HASH, false}, {"hash", F_HASH, false}, {"sets", F_OBJECTS, false}, END,
};
static const struct field ack_fields[] = {
	{"revision", F_COUNT, false}, {"hash", F_HASH, true},	       {"ok", F_BOOL, false},
	{"error", F_STRING, true},    {"endpoints", F_OBJECTS, false}, END,
};
static const struct field ack_endpoint_fields[] = {
	{"name", F_STRING, false}, {"applied", F_HASH, true}, {"error", F_STRING, true}, END,
};
static const struct field endpoints_fields[] = {{"endpoints", F_OBJECTS, false}, END};
static const struct field heartbeat_fields[] = {{"revision", F_COUNT, true}, {"hash", F_HASH, true}, END};
static const struct field reason_fields[] = {{"reason", F_STRING, false}, END};
static const struct field flows_fields[] = {
	{"epoch", F_COUNT, false}, {"seq", F_COUNT, false},   {"start", F_COUNT, false},
	{"end", F_COUNT, false},   {"flows", F_OBJECTS, false}, {"lost", F_OBJECTS, false},
	{"hits", F_OBJECTS, true}, /* absent from agents before rule hit counts */
	END,
};
static const struct field hit_fields[] = {
	{"endpoint", F_STRING, false}, {"dir", F_STRING, false},     {"rule", F_STRING, false},
	{"policy", F_STRING, true},    {"verdict", F_STRING, false}, {"packets", F_COUNT, false},
	{"bytes", F_COUNT, false},     END,
};
static const struct field flow_fields[] = {
	{"endpoint", F_STRING, false}, {"dir", F_STRING, false},   {"src", F_STRING, false},
	{"dst", F_STRING, false},      {"proto", F_STRING, false}, {"port", F_COUNT, true},
	{"icmp_type", F_COUNT, true},  {"icmp_code", F_COUNT, true}, {"verdict", F_STRING, false},
	{"policy", F_STRING, true},    {"rule", F_STRING, false},  {"count", F_COUNT, false},
	{"first", F_COUNT, false},     {"last", F_COUNT, false},   END,
};
static const struct field lost_fields[] = {
	{"endpoint", F_STRING, true}, {"enobufs", F_COUNT, false}, {"gap", F_COUNT, false},
	{"spool", F_COUNT, false},    END,
};
static const struct field flows_ack_fields[] = {{"epoch", F_COUNT, false}, {"seq", F_COUNT, false}, END};
static const struct field set_delta_fields[] = {
	{"id", F_STRING, false}, {"ipv4", F_OBJECT, true}, {"ipv6", F_OBJECT, true}, END,
};

static const struct field *const type_fields[PROTO_TYPE_COUNT] = {
	[PROTO_HELLO] = hello_fields,	      [PROTO_BUNDLE] = bundle_fields,	  [PROTO_DELTA] = delta_fields,
	[PROTO_ACK] = ack_fields,	      [PROTO_ENDPOINTS] = endpoints_fields, [PROTO_HEARTBEAT] = heartbeat_fields,
	[PROTO_FLOWS] = flows_fields,	      [PROTO_RESYNC] = reason_fields,	  [PROTO_REFUSED] = reason_fields,
	[PROTO_FLOWS_ACK] = flows_ack_fields,
};

static bool is_hash(const char *s)
{
	if (strlen(s) != BUNDLE_HASH_HEX)
		return false;
	for (; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return false;
	return true;
}

/* Checks obj's members against fields; on failure writes "where: problem". */
static bool check_fields(json_t *obj, const struct field *fields, const char *where, char *err, size_t n)
{
	for (const struct field *f = fields; f->name; f++) {
		json_t *v = json_object_get(obj, f->name);
		if (!v || json_is_null(v)) {
			if (f->nullable)
				continue;
			snprintf(err, n, "%s: \"%s\" missing", where, f->name);
			return false;
		}
		bool ok = false;
		switch (f->kind) {
		case F_STRING:
			ok = json_is_string(v);
			break;
		case F_HASH:
			ok = json_is_string(v) && is_hash(json_string_value(v));
			break;
		case F_COUNT:
			ok = json_is_integer(v) && json_integer_value(v) >= 0;
			break;
		case F_BOOL:
			ok = json_is_boolean(v);
			break;
		case F_OBJECT:
			ok = json_is_object(v);
			break;
		case F_OBJECTS: {
			ok = json_is_array(v);
			size_t i;
			json_t *e;
			json_array_foreach(v, i, e) ok &= json_is_object(e);
			break;
		}
		}
		if (!ok) {
			static const char *const want[] = {
				[F_STRING] = "a string",	 [F_HASH] = "a SHA-256 in hex", [F_COUNT] = "an integer >= 0",
				[F_BOOL] = "true or false",	 [F_OBJECT] = "an object",	[F_OBJECTS] = "an array of objects",
			};
			snprintf(err, n, "%s: \"%s\" must be %s", where, f->name, want[f->kind]);
			return false;
		}
	}
	return true;
}

static bool check_strings(json_t *arr, const char *where, char *err, size_t n)
{
	if (!arr)
		return true;
	bool ok = json_is_array(arr);
	size_t i;
	json_t *e;
	json_array_foreach(arr, i, e) ok &= json_is_string(e);
	if (!ok)
		snprintf(err, n, "%s must be an array of strings", where);
	return ok;
}

/* obj's string key is one of words (NULL-terminated); else the error
 * "where: \"key\" must be \"a\", \"b\" or \"c\"". */
static bool check_word(json_t *obj, const char *key, const char *const *words, const char *where, char *err,
		       size_t n)
{
	const char *v = json_string_value(json_object_get(obj, key));
	size_t count = 0;
	for (; words[count]; count++)
		if (v && strcmp(v, words[count]) == 0)
			return true;
	int len = snprintf(err, n, "%s: \"%s\" must be ", where, key);
	for (size_t i = 0; i < count && len >= 0 && (size_t)len < n; i++)
		len += snprintf(err + len, n - (size_t)len, "%s\"%s\"", i == 0 ? "" : i + 1 == count ? " or " : ", ",
				words[i]);
	return false;
}

static const char *const directions[] = {"ingress", "egress", NULL};

static bool check_nested(enum proto_type t, json_t *body, char *err, size_t n)
{
	size_t i;
	json_t *e;
	char where[64];
	if (t == PROTO_ACK) {
		json_array_foreach(json_object_get(body, "endpoints"), i, e)
		{
			snprintf(where, sizeof(where), "endpoints[%zu]", i);
			if (!check_fields(e, ack_endpoint_fields, where, err, n))
				return false;
		}
	}
	if (t == PROTO_FLOWS) {
		json_array_foreach(json_object_get(body, "flows"), i, e)
		{
			snprintf(where, sizeof(where), "flows[%zu]", i);
			static const char *const verdicts[] = {"deny", "audit", NULL};
			if (!check_fields(e, flow_fields, where, err, n) ||
			    !check_word(e, "dir", directions, where, err, n) ||
			    !check_word(e, "verdict", verdicts, where, err, n))
				return false;
		}
		json_array_foreach(json_object_get(body, "lost"), i, e)
		{
			snprintf(where, sizeof(where), "lost[%zu]", i);
			if (!check_fields(e, lost_fields, where, err, n))
				return false;
		}
		json_array_foreach(json_object_get(body, "hits"), i, e)
		{
			snprintf(where, sizeof(where), "hits[%zu]", i);
			static const char *const verdicts[] = {"allow", "deny", "audit", NULL};
			if (!check_fields(e, hit_fields, where, err, n) ||
			    !check_word(e, "dir", directions, where, err, n) ||
			    !check_word(e, "verdict", verdicts, where, err, n))
				return false;
		}
	}
	if (t == PROTO_DELTA) {
		json_array_foreach(json_object_get(body, "sets"), i, e)
		{
			snprintf(where, sizeof(where), "sets[%zu]", i);
			if (!check_fields(e, set_delta_fields, where, err, n))
				return false;
			static const char *const fams[] = {"ipv4", "ipv6"};
			for (int f = 0; f < 2; f++) {
				json_t *fam = json_object_get(e, fams[f]);
				snprintf(where, sizeof(where), "sets[%zu].%s", i, fams[f]);
				if (fam && (!check_strings(json_object_get(fam, "add"), where, err, n) ||
					    !check_strings(json_object_get(fam, "remove"), where, err, n)))
					return false;
			}
		}
	}
	return true;
}

int proto_decode(const void *type, size_t type_len, const void *body, size_t body_len, struct proto_msg *out,
		 char *err, size_t err_size)
{
	memset(out, 0, sizeof(*out));
	int t;
	for (t = 0; t < PROTO_TYPE_COUNT; t++)
		if (strlen(type_names[t]) == type_len && memcmp(type_names[t], type, type_len) == 0)
			break;
	if (t == PROTO_TYPE_COUNT) {
		snprintf(err, err_size, "unknown message type \"%.*s\"", (int)(type_len > 32 ? 32 : type_len),
			 (const char *)type);
		return -EINVAL;
	}
	json_error_t jerr;
	json_t *root = json_loadb(body, body_len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		snprintf(err, err_size, "%s: body is not JSON: %s", type_names[t], jerr.text);
		return -EINVAL;
	}
	char where[32];
	snprintf(where, sizeof(where), "%s", type_names[t]);
	json_t *v = json_object_get(root, "v");
	if (!json_is_object(root)) {
		snprintf(err, err_size, "%s: body is not a JSON object", where);
	} else if (!json_is_integer(v) || json_integer_value(v) != PROTO_VERSION) {
		snprintf(err, err_size, "%s: protocol version %s, this side speaks %d", where,
			 json_is_integer(v) ? "other" : "missing", PROTO_VERSION);
	} else if (check_fields(root, type_fields[t], where, err, err_size) &&
		   check_nested(t, root, err, err_size)) {
		out->type = t;
		out->body = root;
		return 0;
	}
	json_decref(root);
	return -EINVAL;
}

void proto_msg_release(struct proto_msg *m)
{
	json_decref(m->body);
	m->body = NULL;
}

char *proto_encode(json_t *body, size_t *len)
{
	char *text = NULL;
	if (body && json_object_set_new(body, "v", json_integer(PROTO_VERSION)) == 0)
		text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	if (text && len)
		*len = strlen(text);
	return text;
}

json_t *proto_endpoints_inventory(const char *node, json_t *endpoints)
{
	/* "netns": null (an endpoint the agent does not program, as with
	 * --dataplane null) is an inventory's absent "netns". */
	json_t *copy = json_deep_copy(endpoints);
	size_t i;
	json_t *e;
	json_array_foreach(copy, i, e) if (json_is_null(json_object_get(e, "netns"))) json_object_del(e, "netns");
	return json_pack("{s:s,s:o}", "node", node, "endpoints", copy);
}

/* ---- deltas ---- */

static json_t *string_set_diff(json_t *a, json_t *b)
{
	/* Elements of a not in b, in a's order. Both arrays are sorted and
	 * unique in a canonical bundle, but a hash table keeps this honest for
	 * any order. */
	json_t *seen = json_object(), *out = json_array();
	size_t i;
	json_t *e;
	json_array_foreach(b, i, e) if (json_is_string(e)) json_object_set(seen, json_string_value(e), json_true());
	json_array_foreach(a, i, e) if (json_is_string(e) && !json_object_get(seen, json_string_value(e)))
		json_array_append(out, e);
	json_decref(seen);
	return out;
}

/* Whether two values are equal apart from the members named in skip. */
static bool equal_except(json_t *a, json_t *b, const char *const *skip)
{
	if (!json_is_object(a) || !json_is_object(b))
		return false;
	json_t *ca = json_copy(a), *cb = json_copy(b);
	for (const char *const *k = skip; *k; k++) {
		json_object_del(ca, *k);
		json_object_del(cb, *k);
	}
	bool eq = json_equal(ca, cb);
	json_decref(ca);
	json_decref(cb);
	return eq;
}

json_t *proto_delta_make(json_t *from, json_t *to)
{
	static const char *const skip_bundle[] = {"sets", "hash", NULL};
	static const char *const skip_set[] = {"ipv4", "ipv6", NULL};
	if (!equal_except(from, to, skip_bundle))
		return NULL;
	json_t *fs = json_object_get(from, "sets"), *ts = json_object_get(to, "sets");
	if (!json_is_array(fs) || !json_is_array(ts) || json_array_size(fs) != json_array_size(ts))
		return NULL;
	json_t *out = json_array();
	for (size_t i = 0; i < json_array_size(fs); i++) {
		json_t *f = json_array_get(fs, i), *t = json_array_get(ts, i);
		if (!equal_except(f, t, skip_set)) {
			json_decref(out);
			return NULL; /* a set came, went or changed kind: rules changed */
		}
		json_t *d = json_pack("{s:O}", "id", json_object_get(t, "id"));
		bool changed = false;
		static const char *const fams[] = {"ipv4", "ipv6"};
		for (int k = 0; k < 2; k++) {
			json_t *fe = json_object_get(f, fams[k]), *te = json_object_get(t, fams[k]);
			json_t *add = string_set_diff(te, fe), *rem = string_set_diff(fe, te);
			if (json_array_size(add) || json_array_size(rem)) {
				json_object_set_new(d, fams[k], json_pack("{s:o,s:o}", "add", add, "remove", rem));
				changed = true;
			} else {
				json_decref(add);
				json_decref(rem);
			}
		}
		if (changed)
			json_array_append(out, d);
		json_decref(d);
	}
	return out;
}

json_t *proto_delta_apply(json_t *base, json_t *sets, struct diag *diag)
{
	json_t *out = json_deep_copy(base);
	json_t *bsets = json_object_get(out, "sets");
	if (!json_is_array(bsets)) {
		diag_add(diag, "/sets", "the bundle held has no sets");
		json_decref(out);
		return NULL;
	}
	/* The held sets by id (the last of equal ids), looked up once per
	 * delta set rather than searched: a delta may touch every set. */
	json_t *by_id = json_object();
	size_t i;
	json_t *d;
	json_array_foreach(bsets, i, d) if (json_is_string(json_object_get(d, "id")))
		json_object_set(by_id, json_string_value(json_object_get(d, "id")), d);
	json_array_foreach(sets, i, d)
	{
		const char *id = json_string_value(json_object_get(d, "id"));
		json_t *target = id ? json_object_get(by_id, id) : NULL;
		if (target && !json_equal(json_object_get(target, "id"), json_object_get(d, "id")))
			target = NULL;
		if (!target) {
			char p[32];
			snprintf(p, sizeof(p), "/sets/%zu/id", i);
			diag_add(diag, p, "no set \"%s\" in the bundle held", id ? id : "?");
			continue;
		}
		static const char *const fams[] = {"ipv4", "ipv6"};
		for (int k = 0; k < 2; k++) {
			json_t *fd = json_object_get(d, fams[k]);
			if (!fd)
				continue;
			json_t *cur = json_object_get(target, fams[k]);
			if (!json_is_array(cur)) {
				cur = json_array();
				json_object_set_new(target, fams[k], cur);
			}
			json_t *kept = string_set_diff(cur, json_object_get(fd, "remove"));
			json_array_extend(kept, json_object_get(fd, "add"));
			json_object_set_new(target, fams[k], kept);
		}
	}
	json_decref(by_id);
	if (diag->n) {
		json_decref(out);
		return NULL;
	}
	return out;
}
