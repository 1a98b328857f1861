/* Agent ↔ controller messages (see proto.h): decoding from untrusted peers,
 * encoding, and the set-element deltas between two bundles. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/addr.h"
#include "bulkhead/bundle.h"
#include "bulkhead/proto.h"

static const char *const type_names[PROTO_TYPE_COUNT] = {
    [PROTO_HELLO] = "HELLO",	     [PROTO_BUNDLE] = "BUNDLE",
    [PROTO_DELTA] = "DELTA",	     [PROTO_ACK] = "ACK",
    [PROTO_ENDPOINTS] = "ENDPOINTS", [PROTO_HEARTBEAT] = "HEARTBEAT",
    [PROTO_FLOWS] = "FLOWS",	     [PROTO_RESYNC] = "RESYNC",
    [PROTO_REFUSED] = "REFUSED",     [PROTO_FLOWS_ACK] = "FLOWS_ACK",
};

/* The largest body of each type, in bytes and in JSON values (see
 * proto.h). What an agent sends grows with its node: endpoint lists and
 * results with its endpoints (16 MiB: tens of thousands). A flow batch does
 * not: an agent cuts a window into batches of at most 4,096 entries and
 * 1 MiB (some 120,000 values: a flow counts 29), twice that is the limit (a
 * batch that large takes the controller some 40 ms to decode, 65,536 flows
 * took 0.5-0.9 s). Parsed, a value costs 40-90 bytes. What the controller
 * sends is trusted to its own size. */
const struct proto_limit proto_limits[PROTO_TYPE_COUNT] = {
    [PROTO_HELLO] = {16 << 20, 1 << 20},
    [PROTO_ENDPOINTS] = {16 << 20, 1 << 20},
    [PROTO_ACK] = {16 << 20, 1 << 20},
    [PROTO_HEARTBEAT] = {4096, 64},
    [PROTO_FLOWS] = {2 << 20, 256 << 10},
    [PROTO_BUNDLE] = {PROTO_MAX_MSG, SIZE_MAX},
    [PROTO_DELTA] = {PROTO_MAX_MSG, SIZE_MAX},
    [PROTO_RESYNC] = {4096, 64},
    [PROTO_REFUSED] = {4096, 64},
    [PROTO_FLOWS_ACK] = {4096, 64},
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
	F_ADDR,	   /* an IPv4 or IPv6 address */
	/* With a range (FLOWS, proto.h): one of the kinds above, bounded. */
	F_TIME,	   /* count, unix ms */
	F_SEQ,	   /* count */
	F_PACKETS, /* count of packets or events */
	F_BYTES,   /* count of bytes */
	F_PORT,	   /* count, 0..65535 */
	F_OCTET,   /* count, 0..255 */
	F_NAME,	   /* string, an endpoint name */
	F_RULE,	   /* string, a rule id, policy or protocol name */
	F_REASON,  /* string */
	F_ENTRIES, /* array of objects */
	F_KIND_COUNT,
};

/* Every kind's base kind (the type checked), its bound (0: none; a count's
 * largest value, a string's longest length in bytes, an array's most
 * items), and what it must be. */
static const struct kind {
	enum field_kind base;
	int64_t max;
	const char *want;
} kinds[F_KIND_COUNT] = {
    [F_STRING] = {F_STRING, 0, "a string"},
    [F_HASH] = {F_HASH, 0, "a SHA-256 in hex"},
    [F_COUNT] = {F_COUNT, 0, "an integer >= 0"},
    [F_BOOL] = {F_BOOL, 0, "true or false"},
    [F_OBJECT] = {F_OBJECT, 0, "an object"},
    [F_OBJECTS] = {F_OBJECTS, 0, "an array of objects"},
    [F_ADDR] = {F_ADDR, 0, "an IPv4 or IPv6 address"},
    [F_TIME] = {F_COUNT, PROTO_FLOWS_TIME_MAX, NULL},
    [F_SEQ] = {F_COUNT, PROTO_FLOWS_SEQ_MAX, NULL},
    [F_PACKETS] = {F_COUNT, PROTO_FLOWS_COUNT_MAX, NULL},
    [F_BYTES] = {F_COUNT, PROTO_FLOWS_BYTES_MAX, NULL},
    [F_PORT] = {F_COUNT, 65535, NULL},
    [F_OCTET] = {F_COUNT, 255, NULL},
    [F_NAME] = {F_STRING, PROTO_FLOWS_NAME_MAX, NULL},
    [F_RULE] = {F_STRING, PROTO_FLOWS_RULE_MAX, NULL},
    [F_REASON] = {F_STRING, PROTO_FLOWS_REASON_MAX, NULL},
    [F_ENTRIES] = {F_OBJECTS, PROTO_FLOWS_MAX, NULL},
};

struct field {
	const char *name;
	enum field_kind kind;
	bool nullable; /* null or absent is fine */
};

#define END                                                                                                  \
	{                                                                                                    \
		NULL, 0, false                                                                               \
	}

static const struct field hello_fields[] = {
    {"node", F_STRING, false}, {"agent", F_STRING, false},	{"revision", F_COUNT, true},
    {"hash", F_HASH, true},    {"endpoints", F_OBJECTS, false}, END,
};
static const struct field bundle_fields[] = {{"revision", F_COUNT, false}, {"bundle", F_OBJECT, false}, END};
static const struct field delta_fields[] = {
    {"revision", F_COUNT, false},
    {"base", F_HASH, false},
    {"hash", F_HASH, false},
    {"sets", F_OBJECTS, false},
    END,
};
static const struct field ack_fields[] = {
    {"revision", F_COUNT, false}, {"hash", F_HASH, true},	   {"ok", F_BOOL, false},
    {"error", F_STRING, true},	  {"endpoints", F_OBJECTS, false}, END,
};
static const struct field ack_endpoint_fields[] = {
    {"name", F_STRING, false},
    {"applied", F_HASH, true},
    {"error", F_STRING, true},
    END,
};
static const struct field endpoints_fields[] = {{"endpoints", F_OBJECTS, false}, END};
static const struct field heartbeat_fields[] = {{"revision", F_COUNT, true}, {"hash", F_HASH, true}, END};
static const struct field reason_fields[] = {{"reason", F_STRING, false}, END};
static const struct field flows_fields[] = {
    {"epoch", F_TIME, false},
    {"seq", F_SEQ, false},
    {"start", F_TIME, false},
    {"end", F_TIME, false},
    {"flows", F_ENTRIES, false},
    {"lost", F_ENTRIES, false},
    {"hits", F_ENTRIES, true}, /* absent from agents before rule hit counts */
    END,
};
static const struct field hit_fields[] = {
    {"endpoint", F_NAME, false},  {"dir", F_STRING, false},
    {"rule", F_RULE, false},	  {"policy", F_RULE, true},
    {"verdict", F_STRING, false}, {"packets", F_PACKETS, false},
    {"bytes", F_BYTES, false},	  END,
};
static const struct field flow_fields[] = {
    {"endpoint", F_NAME, false},  {"dir", F_STRING, false},	{"src", F_ADDR, false},
    {"dst", F_ADDR, false},	  {"proto", F_RULE, false},	{"port", F_PORT, true},
    {"icmp_type", F_OCTET, true}, {"icmp_code", F_OCTET, true}, {"verdict", F_STRING, false},
    {"policy", F_RULE, true},	  {"rule", F_RULE, false},	{"count", F_PACKETS, false},
    {"first", F_TIME, false},	  {"last", F_TIME, false},	END,
};
static const struct field lost_fields[] = {
    {"endpoint", F_NAME, true},
    {"enobufs", F_PACKETS, false},
    {"gap", F_PACKETS, false},
    {"spool", F_PACKETS, false},
    END,
};
static const struct field flows_ack_fields[] = {
    {"epoch", F_TIME, false},
    {"seq", F_SEQ, false},
    {"rejected", F_REASON, true}, /* absent from controllers before rejections */
    END,
};
static const struct field set_delta_fields[] = {
    {"id", F_STRING, false},
    {"ipv4", F_OBJECT, true},
    {"ipv6", F_OBJECT, true},
    END,
};
static const struct field named_delta_fields[] = {
    {"named_port", F_STRING, false},
    {"v4", F_OBJECT, true},
    {"v6", F_OBJECT, true},
    END,
};

static const struct field *const type_fields[PROTO_TYPE_COUNT] = {
    [PROTO_HELLO] = hello_fields,	  [PROTO_BUNDLE] = bundle_fields,
    [PROTO_DELTA] = delta_fields,	  [PROTO_ACK] = ack_fields,
    [PROTO_ENDPOINTS] = endpoints_fields, [PROTO_HEARTBEAT] = heartbeat_fields,
    [PROTO_FLOWS] = flows_fields,	  [PROTO_RESYNC] = reason_fields,
    [PROTO_REFUSED] = reason_fields,	  [PROTO_FLOWS_ACK] = flows_ack_fields,
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
		const struct kind *k = &kinds[f->kind];
		bool ok = false;
		struct bh_addr addr;
		switch (k->base) {
		case F_STRING:
			ok = json_is_string(v) && (!k->max || json_string_length(v) <= (size_t)k->max);
			break;
		case F_HASH:
			ok = json_is_string(v) && is_hash(json_string_value(v));
			break;
		case F_COUNT:
			ok = json_is_integer(v) && json_integer_value(v) >= 0 &&
			     (!k->max || json_integer_value(v) <= k->max);
			break;
		case F_BOOL:
			ok = json_is_boolean(v);
			break;
		case F_OBJECT:
			ok = json_is_object(v);
			break;
		case F_OBJECTS: {
			ok = json_is_array(v) && (!k->max || json_array_size(v) <= (size_t)k->max);
			size_t i;
			json_t *e;
			json_array_foreach (v, i, e)
				ok &= json_is_object(e);
			break;
		}
		case F_ADDR:
			ok = json_is_string(v) && json_string_length(v) < ADDR_STRLEN &&
			     addr_parse(json_string_value(v), &addr) == 0;
			break;
		default:
			break;
		}
		if (!ok && k->want)
			snprintf(err, n, "%s: \"%s\" must be %s", where, f->name, k->want);
		else if (!ok && k->base == F_COUNT)
			snprintf(err, n, "%s: \"%s\" must be an integer from 0 to %lld", where, f->name,
				 (long long)k->max);
		else if (!ok && k->base == F_STRING)
			snprintf(err, n, "%s: \"%s\" must be a string of at most %lld bytes", where, f->name,
				 (long long)k->max);
		else if (!ok)
			snprintf(err, n, "%s: \"%s\" must be an array of at most %lld objects", where,
				 f->name, (long long)k->max);
		if (!ok)
			return false;
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
	json_array_foreach (arr, i, e)
		ok &= json_is_string(e);
	if (!ok)
		snprintf(err, n, "%s must be an array of strings", where);
	return ok;
}

/* [ADDRESS, PORT] pairs: a named-port table's elements (bundle.h); the
 * bundle decoder checks what they hold. */
static bool check_pairs(json_t *arr, const char *where, char *err, size_t n)
{
	if (!arr)
		return true;
	bool ok = json_is_array(arr);
	size_t i;
	json_t *e;
	json_array_foreach (arr, i, e)
		ok &= json_is_array(e) && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
		      json_is_integer(json_array_get(e, 1));
	if (!ok)
		snprintf(err, n, "%s must be an array of [ADDRESS, PORT] pairs", where);
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
		len += snprintf(err + len, n - (size_t)len, "%s\"%s\"",
				i == 0		 ? ""
				: i + 1 == count ? " or "
						 : ", ",
				words[i]);
	return false;
}

/* A flow's two ends (already checked to be addresses) are of one family. */
static bool check_families(json_t *flow, const char *where, char *err, size_t n)
{
	struct bh_addr src, dst;
	if (addr_parse(json_string_value(json_object_get(flow, "src")), &src) == 0 &&
	    addr_parse(json_string_value(json_object_get(flow, "dst")), &dst) == 0 &&
	    src.family == dst.family)
		return true;
	snprintf(err, n, "%s: \"src\" and \"dst\" must be of one address family", where);
	return false;
}

static bool check_nested(enum proto_type t, json_t *body, char *err, size_t n)
{
	size_t i;
	json_t *e;
	char where[64];
	if (t == PROTO_ACK) {
		json_array_foreach (json_object_get(body, "endpoints"), i, e) {
			snprintf(where, sizeof(where), "endpoints[%zu]", i);
			if (!check_fields(e, ack_endpoint_fields, where, err, n))
				return false;
		}
	}
	if (t == PROTO_FLOWS) {
		json_array_foreach (json_object_get(body, "flows"), i, e) {
			snprintf(where, sizeof(where), "flows[%zu]", i);
			if (!check_fields(e, flow_fields, where, err, n) ||
			    !check_word(e, "dir", direction_words, where, err, n) ||
			    !check_word(e, "verdict", report_verdict_words, where, err, n) ||
			    !check_families(e, where, err, n))
				return false;
		}
		json_array_foreach (json_object_get(body, "lost"), i, e) {
			snprintf(where, sizeof(where), "lost[%zu]", i);
			if (!check_fields(e, lost_fields, where, err, n))
				return false;
		}
		json_array_foreach (json_object_get(body, "hits"), i, e) {
			snprintf(where, sizeof(where), "hits[%zu]", i);
			if (!check_fields(e, hit_fields, where, err, n) ||
			    !check_word(e, "dir", direction_words, where, err, n) ||
			    !check_word(e, "verdict", report_verdict_words, where, err, n))
				return false;
		}
	}
	if (t == PROTO_DELTA) {
		json_array_foreach (json_object_get(body, "sets"), i, e) {
			snprintf(where, sizeof(where), "sets[%zu]", i);
			bool named = json_object_get(e, "named_port") != NULL;
			if (!check_fields(e, named ? named_delta_fields : set_delta_fields, where, err, n))
				return false;
			static const char *const set_fams[] = {"ipv4", "ipv6"}, *const named_fams[] = {"v4",
												       "v6"};
			const char *const *fams = named ? named_fams : set_fams;
			bool (*check)(json_t *, const char *, char *, size_t) =
			    named ? check_pairs : check_strings;
			for (int f = 0; f < 2; f++) {
				json_t *fam = json_object_get(e, fams[f]);
				snprintf(where, sizeof(where), "sets[%zu].%s", i, fams[f]);
				if (fam && (!check(json_object_get(fam, "add"), where, err, n) ||
					    !check(json_object_get(fam, "remove"), where, err, n)))
					return false;
			}
		}
	}
	return true;
}

/* The JSON values (and object members) a body holds at most: every one
 * but the first follows a ',', ':', '[' or '{' outside a string. A cheap
 * count before parsing, which costs about 50-100 bytes a value. */
static size_t json_items(const char *s, size_t len)
{
	size_t n = 1;
	bool in_string = false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (in_string) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		} else if (c == '"') {
			in_string = true;
		} else if (c == ',' || c == ':' || c == '[' || c == '{') {
			n++;
		}
	}
	return n;
}

int proto_type_parse(const void *type, size_t type_len)
{
	for (int t = 0; t < PROTO_TYPE_COUNT; t++)
		if (strlen(type_names[t]) == type_len && memcmp(type_names[t], type, type_len) == 0)
			return t;
	return -1;
}

bool proto_sent_by_agent(enum proto_type t)
{
	return t == PROTO_HELLO || t == PROTO_ACK || t == PROTO_ENDPOINTS || t == PROTO_HEARTBEAT ||
	       t == PROTO_FLOWS;
}

int proto_decode(const void *type, size_t type_len, const void *body, size_t body_len, struct proto_msg *out,
		 char *err, size_t err_size)
{
	memset(out, 0, sizeof(*out));
	int t = proto_type_parse(type, type_len);
	if (t < 0) {
		/* Printable bytes only: the reason is logged. */
		char shown[33];
		size_t n = type_len < sizeof(shown) - 1 ? type_len : sizeof(shown) - 1;
		for (size_t i = 0; i < n; i++) {
			char c = ((const char *)type)[i];
			shown[i] = c >= 0x20 && c < 0x7f ? c : '?';
		}
		shown[n] = '\0';
		snprintf(err, err_size, "unknown message type \"%s\"", shown);
		return -EINVAL;
	}
	/* Sized before parsing: what a body may cost the receiver is bounded
	 * by its type, whatever the socket let through. */
	const struct proto_limit *lim = &proto_limits[t];
	if (body_len > lim->bytes) {
		snprintf(err, err_size, "%s: body of %zu bytes, more than the %zu a %s may have",
			 type_names[t], body_len, lim->bytes, type_names[t]);
		return -EINVAL;
	}
	size_t items = json_items(body, body_len);
	if (items > lim->items) {
		snprintf(err, err_size,
			 "%s: body of %zu JSON values or more, more than the %zu a %s may have",
			 type_names[t], items, lim->items, type_names[t]);
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

int proto_flows_key(const void *body, size_t body_len, int64_t *epoch, int64_t *seq)
{
	static const struct field key_fields[] = {{"epoch", F_TIME, false}, {"seq", F_SEQ, false}, END};
	json_t *root = json_loadb(body, body_len, JSON_REJECT_DUPLICATES, NULL);
	json_t *v = json_object_get(root, "v");
	char err[8];
	bool ok = json_is_object(root) && json_is_integer(v) && json_integer_value(v) == PROTO_VERSION &&
		  check_fields(root, key_fields, "FLOWS", err, sizeof(err));
	if (ok) {
		*epoch = json_integer_value(json_object_get(root, "epoch"));
		*seq = json_integer_value(json_object_get(root, "seq"));
	}
	json_decref(root);
	return ok ? 0 : -EINVAL;
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
	json_array_foreach (copy, i, e)
		if (json_is_null(json_object_get(e, "netns")))
			json_object_del(e, "netns");
	return json_pack("{s:s,s:o}", "node", node, "endpoints", copy);
}

/* ---- deltas ---- */

/* An element's key for set_diff: a set's string itself, a named-port
 * pair ["198.18.0.5",8080] as compact JSON. NULL for anything else. */
static char *element_key(json_t *e)
{
	if (json_is_string(e))
		return strdup(json_string_value(e));
	if (json_is_array(e))
		return json_dumps(e, JSON_COMPACT);
	return NULL;
}

static json_t *set_diff(json_t *a, json_t *b)
{
	/* Elements of a not in b, in a's order. Both arrays are sorted and
	 * unique in a canonical bundle, but a hash table keeps this honest for
	 * any order. */
	json_t *seen = json_object(), *out = json_array();
	size_t i;
	json_t *e;
	json_array_foreach (b, i, e) {
		char *k = element_key(e);
		if (k)
			json_object_set(seen, k, json_true());
		free(k);
	}
	json_array_foreach (a, i, e) {
		char *k = element_key(e);
		if (k && !json_object_get(seen, k))
			json_array_append(out, e);
		free(k);
	}
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

/* One kind of element lists, "sets" (a SET-DELTA per changed set, keyed
 * "id") or "named_ports" (a NAMED-DELTA per changed table, keyed
 * "named_port"), of from into to, appended to out. False when the lists
 * differ in anything but elements: a list, set or table came or went. */
struct element_lists {
	const char *member;	 /* of the bundle */
	const char *delta_key;	 /* the delta's name for the id */
	const char *const *skip; /* the element lists of one entry */
};

static const char *const set_fams[] = {"ipv4", "ipv6", NULL};
static const char *const named_fams[] = {"v4", "v6", NULL};
static const struct element_lists kinds_of_lists[] = {
    {"sets", "id", set_fams},
    {"named_ports", "named_port", named_fams},
};

static bool delta_lists(const struct element_lists *el, json_t *from, json_t *to, json_t *out)
{
	json_t *fs = json_object_get(from, el->member), *ts = json_object_get(to, el->member);
	if (!fs && !ts && strcmp(el->member, "sets") != 0)
		return true; /* optional, and absent from both */
	if (!json_is_array(fs) || !json_is_array(ts) || json_array_size(fs) != json_array_size(ts))
		return false;
	for (size_t i = 0; i < json_array_size(fs); i++) {
		json_t *f = json_array_get(fs, i), *t = json_array_get(ts, i);
		if (!equal_except(f, t, el->skip))
			return false; /* one came, went or changed kind: rules changed */
		json_t *d = json_pack("{s:O}", el->delta_key, json_object_get(t, "id"));
		bool changed = false;
		for (int k = 0; el->skip[k]; k++) {
			json_t *fe = json_object_get(f, el->skip[k]), *te = json_object_get(t, el->skip[k]);
			/* Most lists of a change are the same: compared, not hashed. */
			if (json_equal(fe, te))
				continue;
			json_t *add = set_diff(te, fe), *rem = set_diff(fe, te);
			if (json_array_size(add) || json_array_size(rem)) {
				json_object_set_new(d, el->skip[k],
						    json_pack("{s:o,s:o}", "add", add, "remove", rem));
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
	return true;
}

json_t *proto_delta_make(json_t *from, json_t *to)
{
	static const char *const skip_bundle[] = {"sets", "named_ports", "hash", NULL};
	if (!equal_except(from, to, skip_bundle))
		return NULL;
	json_t *out = json_array();
	for (size_t i = 0; i < BH_ARRAY_SIZE(kinds_of_lists); i++) {
		if (!delta_lists(&kinds_of_lists[i], from, to, out)) {
			json_decref(out);
			return NULL;
		}
	}
	return out;
}

/* The entries of a bundle's list member by id (the last of equal ids),
 * looked up once per delta entry rather than searched: a delta may touch
 * every set. New reference. */
static json_t *entries_by_id(json_t *list)
{
	json_t *by_id = json_object();
	size_t i;
	json_t *d;
	json_array_foreach (list, i, d)
		if (json_is_string(json_object_get(d, "id")))
			json_object_set(by_id, json_string_value(json_object_get(d, "id")), d);
	return by_id;
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
	json_t *by_id[2] = {entries_by_id(bsets), entries_by_id(json_object_get(out, "named_ports"))};
	size_t i;
	json_t *d;
	json_array_foreach (sets, i, d) {
		int kind = json_object_get(d, "named_port") ? 1 : 0;
		const struct element_lists *el = &kinds_of_lists[kind];
		json_t *key = json_object_get(d, el->delta_key);
		const char *id = json_string_value(key);
		json_t *target = id ? json_object_get(by_id[kind], id) : NULL;
		if (target && !json_equal(json_object_get(target, "id"), key))
			target = NULL;
		if (!target) {
			char p[32];
			snprintf(p, sizeof(p), "/sets/%zu/%s", i, el->delta_key);
			diag_add(diag, p, "no %s \"%s\" in the bundle held",
				 kind ? "named-port table" : "set", id ? id : "?");
			continue;
		}
		const char *const *fams = el->skip;
		for (int k = 0; k < 2; k++) {
			json_t *fd = json_object_get(d, fams[k]);
			if (!fd)
				continue;
			json_t *cur = json_object_get(target, fams[k]);
			if (!json_is_array(cur)) {
				cur = json_array();
				json_object_set_new(target, fams[k], cur);
			}
			json_t *kept = set_diff(cur, json_object_get(fd, "remove"));
			json_array_extend(kept, json_object_get(fd, "add"));
			json_object_set_new(target, fams[k], kept);
		}
	}
	json_decref(by_id[0]);
	json_decref(by_id[1]);
	if (diag->n) {
		json_decref(out);
		return NULL;
	}
	return out;
}
