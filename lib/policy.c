/* Policy document parser and validator (DESIGN §2).
 *
 * One pass over the JSON records every problem with its JSON pointer and
 * keeps going, so an operator sees all errors at once. Named groups are read
 * before policies so references resolve regardless of key order. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/arena.h"
#include "bulkhead/policy.h"
#include "json_util.h"

struct parser {
	struct json_walk w;
	struct policy_doc *doc;
	/* Every named group key, valid or not: a reference to a group that
	 * exists but is invalid is not also reported as unknown. */
	const char **declared;
	size_t n_declared;
	const char **declared_sorted; /* the same, sorted, for is_declared */
	/* Candidates json_util_suggest may still compare: an unknown group
	 * costs a pass over every declared one, so a document of many unknown
	 * references and many groups gets suggestions for the first few only. */
	size_t suggest_budget;
};

#define SUGGEST_BUDGET 10000000

/* ---- label groups ---- */

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static const struct {
	const char *name;
	enum selector_op op;
} selector_ops[] = {
    {"In", SELECTOR_IN},
    {"NotIn", SELECTOR_NOT_IN},
    {"Exists", SELECTOR_EXISTS},
    {"DoesNotExist", SELECTOR_DOES_NOT_EXIST},
};

static bool parse_expression(struct parser *p, json_t *obj, struct selector_expr *out)
{
	static const char *const keys[] = {"key", "op", "values", NULL};
	if (!walk_expect_type(&p->w, obj, JSON_OBJECT))
		return false;
	size_t errors = p->w.diag->n;
	walk_check_keys(&p->w, obj, keys, NULL);

	json_t *jkey = json_object_get(obj, "key"), *jop = json_object_get(obj, "op");
	json_t *jvalues = json_object_get(obj, "values");
	size_t mark = jpath_push_key(&p->w.path, "key");
	if (!jkey) {
		walk_error(&p->w, "missing required key");
	} else if ((out->key = walk_take_string(&p->w, jkey))) {
		const char *why;
		if (!label_key_valid(out->key, &why))
			walk_error(&p->w, "invalid label key \"%s\": %s", out->key, why);
	}
	jpath_pop(&p->w.path, mark);

	bool have_op = false;
	mark = jpath_push_key(&p->w.path, "op");
	if (!jop) {
		walk_error(&p->w, "missing required key");
	} else if (walk_expect_type(&p->w, jop, JSON_STRING)) {
		for (size_t i = 0; i < BH_ARRAY_SIZE(selector_ops); i++) {
			if (strcmp(json_string_value(jop), selector_ops[i].name) == 0) {
				out->op = selector_ops[i].op;
				have_op = true;
			}
		}
		if (!have_op)
			walk_error(&p->w,
				   "unknown operator \"%s\" (expected In, NotIn, Exists or DoesNotExist)",
				   json_string_value(jop));
	}
	jpath_pop(&p->w.path, mark);

	bool wants_values = have_op && (out->op == SELECTOR_IN || out->op == SELECTOR_NOT_IN);
	mark = jpath_push_key(&p->w.path, "values");
	if (have_op && !wants_values && jvalues) {
		walk_error(&p->w, "operator %s takes no values", json_string_value(jop));
	} else if (wants_values && !jvalues) {
		walk_error(&p->w, "missing required key (operator %s needs values)", json_string_value(jop));
	} else if (jvalues && walk_expect_type(&p->w, jvalues, JSON_ARRAY)) {
		size_t n = json_array_size(jvalues);
		if (n == 0 && wants_values)
			walk_error(&p->w, "empty list: operator %s needs at least one value",
				   json_string_value(jop));
		out->values = arena_calloc(p->w.arena, n ? n : 1, sizeof(*out->values));
		if (!out->values)
			p->w.oom = true;
		for (size_t i = 0; out->values && i < n; i++) {
			size_t m2 = jpath_push_index(&p->w.path, i);
			const char *v = walk_take_string(&p->w, json_array_get(jvalues, i)), *why;
			if (v && !label_value_valid(v, &why))
				walk_error(&p->w, "invalid label value \"%s\": %s", v, why);
			else if (v)
				out->values[out->n_values++] = v;
			jpath_pop(&p->w.path, m2);
		}
		if (out->values) {
			qsort(out->values, out->n_values, sizeof(*out->values), str_cmp);
			size_t u = 0;
			for (size_t i = 0; i < out->n_values; i++) {
				if (u == 0 || strcmp(out->values[u - 1], out->values[i]) != 0)
					out->values[u++] = out->values[i];
			}
			out->n_values = u;
		}
	}
	jpath_pop(&p->w.path, mark);
	return p->w.diag->n == errors;
}

static bool parse_label_group(struct parser *p, json_t *obj, struct policy_group *g)
{
	bool ok = true;
	json_t *labels = json_object_get(obj, "labels"), *exprs = json_object_get(obj, "expressions");
	g->kind = GROUP_LABEL;
	if (labels) {
		size_t mark = jpath_push_key(&p->w.path, "labels");
		ok &= walk_labels(&p->w, labels, &g->selector.labels);
		jpath_pop(&p->w.path, mark);
	}
	if (exprs) {
		size_t mark = jpath_push_key(&p->w.path, "expressions");
		if (walk_expect_type(&p->w, exprs, JSON_ARRAY)) {
			size_t n = json_array_size(exprs);
			g->selector.exprs = arena_calloc(p->w.arena, n ? n : 1, sizeof(*g->selector.exprs));
			if (!g->selector.exprs)
				p->w.oom = true;
			for (size_t i = 0; g->selector.exprs && i < n; i++) {
				size_t m2 = jpath_push_index(&p->w.path, i);
				ok &= parse_expression(p, json_array_get(exprs, i), &g->selector.exprs[i]);
				jpath_pop(&p->w.path, m2);
			}
			g->selector.n_exprs = g->selector.exprs ? n : 0;
		} else {
			ok = false;
		}
		jpath_pop(&p->w.path, mark);
	}
	return ok;
}

/* ---- network groups ---- */

/* Parses one CIDR string at the current path into its range. */
static bool parse_cidr_item(struct parser *p, json_t *v, struct addr_range *out)
{
	if (!walk_expect_type(&p->w, v, JSON_STRING))
		return false;
	const char *s = json_string_value(v);
	struct bh_addr net;
	unsigned plen;
	int r = cidr_parse(s, &net, &plen);
	if (r == -EDOM) {
		char buf[ADDR_STRLEN];
		addr_format(&net, buf);
		walk_error(&p->w, "\"%s\": host bits set (did you mean %s/%u?)", s, buf, plen);
		return false;
	}
	if (r < 0) {
		walk_error(&p->w, "\"%s\": not an IPv4 or IPv6 address or CIDR", s);
		return false;
	}
	cidr_range(&net, plen, out);
	return true;
}

static struct range_list *family_list(struct policy_group *g, int family)
{
	return family == AF_INET ? &g->v4 : &g->v6;
}

/* A group's cidrs or except list within POLICY_MAX_NETWORK_ENTRIES;
 * reported at the current path when not. */
static bool network_list_fits(struct parser *p, json_t *list)
{
	if (json_array_size(list) <= POLICY_MAX_NETWORK_ENTRIES)
		return true;
	walk_error(&p->w, "%zu entries: at most %d (split the group, or use wider CIDRs)",
		   json_array_size(list), POLICY_MAX_NETWORK_ENTRIES);
	return false;
}

static bool parse_network_group(struct parser *p, json_t *obj, struct policy_group *g)
{
	bool ok = true, cidrs_fit = false; /* read: the excepts can be checked against them */
	json_t *cidrs = json_object_get(obj, "cidrs"), *except = json_object_get(obj, "except");
	g->kind = GROUP_NETWORK;
	range_list_init(&g->v4, p->w.arena);
	range_list_init(&g->v6, p->w.arena);

	size_t mark = jpath_push_key(&p->w.path, "cidrs");
	if (!cidrs) {
		walk_error(&p->w, "missing required key (\"except\" needs \"cidrs\")");
		ok = false;
	} else if (walk_expect_type(&p->w, cidrs, JSON_ARRAY)) {
		if (json_array_size(cidrs) == 0) {
			walk_error(&p->w, "empty list: a network group needs at least one CIDR");
			ok = false;
		}
		cidrs_fit = network_list_fits(p, cidrs);
		ok &= cidrs_fit;
		for (size_t i = 0; cidrs_fit && i < json_array_size(cidrs); i++) {
			size_t m2 = jpath_push_index(&p->w.path, i);
			struct addr_range r;
			if (parse_cidr_item(p, json_array_get(cidrs, i), &r)) {
				if (range_list_add(family_list(g, r.lo.family), &r) < 0)
					p->w.oom = true;
			} else {
				ok = false;
			}
			jpath_pop(&p->w.path, m2);
		}
	} else {
		ok = false;
	}
	jpath_pop(&p->w.path, mark);
	range_list_normalize(&g->v4);
	range_list_normalize(&g->v6);

	if (except) {
		/* Each except must lie inside the union of the cidrs, checked
		 * before any is subtracted; then all are cut out in one sweep. */
		struct range_list cuts4, cuts6;
		range_list_init(&cuts4, NULL);
		range_list_init(&cuts6, NULL);
		mark = jpath_push_key(&p->w.path, "except");
		if (walk_expect_type(&p->w, except, JSON_ARRAY) && network_list_fits(p, except)) {
			size_t n = json_array_size(except);
			for (size_t i = 0; i < n; i++) {
				size_t m2 = jpath_push_index(&p->w.path, i);
				struct addr_range r;
				json_t *item = json_array_get(except, i);
				if (!parse_cidr_item(p, item, &r)) {
					ok = false;
				} else {
					const struct addr_range *in =
					    range_list_find(family_list(g, r.lo.family), &r.lo);
					if ((!in || addr_cmp(&r.hi, &in->hi) > 0) && cidrs_fit) {
						walk_error(&p->w,
							   "\"%s\": not inside any of the group's cidrs",
							   json_string_value(item));
						ok = false;
					}
					if (range_list_add(r.lo.family == AF_INET ? &cuts4 : &cuts6, &r) < 0)
						p->w.oom = true;
				}
				jpath_pop(&p->w.path, m2);
			}
		} else {
			ok = false;
		}
		jpath_pop(&p->w.path, mark);
		if (ok && (range_list_subtract_list(&g->v4, &cuts4) < 0 ||
			   range_list_subtract_list(&g->v6, &cuts6) < 0))
			p->w.oom = true;
		range_list_release(&cuts4);
		range_list_release(&cuts6);
	}
	return ok;
}

/* A group object, named (name != NULL) or inline. Returns NULL when invalid
 * (the errors are recorded). */
static struct policy_group *parse_group(struct parser *p, json_t *obj, const char *name, const char *id,
					bool label_only)
{
	static const char *const keys[] = {"labels", "expressions", "cidrs", "except", "description", NULL};
	if (!walk_expect_type(&p->w, obj, JSON_OBJECT))
		return NULL;
	size_t errors = p->w.diag->n;
	walk_check_keys(&p->w, obj, keys, NULL);
	walk_description(&p->w, obj);

	bool has_label = json_object_get(obj, "labels") || json_object_get(obj, "expressions");
	bool has_net = json_object_get(obj, "cidrs") || json_object_get(obj, "except");
	struct policy_group *g = arena_alloc(p->w.arena, sizeof(*g));
	if (!g) {
		p->w.oom = true;
		return NULL;
	}
	g->name = name;
	g->id = id;
	if (has_label && has_net) {
		walk_error(&p->w, "a group is either a label group (labels, expressions) or a network group "
				  "(cidrs, except), not both");
		return NULL;
	}
	if (!has_label && !has_net) {
		walk_error(&p->w, "empty group: give \"labels\" and/or \"expressions\", or \"cidrs\" "
				  "(use {\"labels\": {}} to select every endpoint)");
		return NULL;
	}
	if (has_net && label_only) {
		walk_error(&p->w, "a network group cannot be a policy's applies_to; it needs a label group");
		return NULL;
	}
	bool ok = has_label ? parse_label_group(p, obj, g) : parse_network_group(p, obj, g);
	return ok && p->w.diag->n == errors ? g : NULL;
}

static bool is_declared(struct parser *p, const char *name)
{
	return p->n_declared && bsearch(&name, p->declared_sorted, p->n_declared, sizeof(*p->declared_sorted),
					str_cmp) != NULL;
}

static void parse_groups(struct parser *p, json_t *groups)
{
	size_t mark = jpath_push_key(&p->w.path, "groups");
	if (!walk_expect_type(&p->w, groups, JSON_OBJECT)) {
		jpath_pop(&p->w.path, mark);
		return;
	}
	size_t n = json_object_size(groups);
	p->doc->groups = arena_calloc(p->w.arena, n ? n : 1, sizeof(*p->doc->groups));
	/* NULL-terminated: it is also the candidate list for suggestions. */
	p->declared = arena_calloc(p->w.arena, n + 1, sizeof(*p->declared));
	if (!p->doc->groups || !p->declared) {
		p->w.oom = true;
		jpath_pop(&p->w.path, mark);
		return;
	}
	const char *key;
	json_t *v;
	json_object_foreach (groups, key, v) {
		size_t m2 = jpath_push_key(&p->w.path, key);
		char *name = arena_strdup(p->w.arena, key);
		if (!name) {
			p->w.oom = true;
			break;
		}
		p->declared[p->n_declared++] = name;
		if (!name_valid(key, NAME_MAX_LEN)) {
			walk_error(&p->w,
				   "invalid group name \"%s\": use 1-%d letters, digits, '.', '_' or '-', "
				   "beginning with a letter or digit",
				   key, NAME_MAX_LEN);
		} else {
			struct policy_group *g = parse_group(p, v, name, name, false);
			if (g)
				p->doc->groups[p->doc->n_groups++] = g;
		}
		jpath_pop(&p->w.path, m2);
	}
	jpath_pop(&p->w.path, mark);
	p->declared_sorted = arena_calloc(p->w.arena, p->n_declared + 1, sizeof(*p->declared_sorted));
	if (!p->declared_sorted) {
		p->w.oom = true;
		p->n_declared = 0;
		return;
	}
	if (p->n_declared) {
		memcpy(p->declared_sorted, p->declared, p->n_declared * sizeof(*p->declared));
		qsort(p->declared_sorted, p->n_declared, sizeof(*p->declared_sorted), str_cmp);
	}
}

static int group_ptr_cmp(const void *a, const void *b)
{
	return strcmp((*(struct policy_group *const *)a)->name, (*(struct policy_group *const *)b)->name);
}

const struct policy_group *policy_find_group(const struct policy_doc *doc, const char *name)
{
	size_t lo = 0, hi = doc->n_groups;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(name, doc->groups[mid]->name);
		if (c == 0)
			return doc->groups[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* A group reference (string) or inline group (object). NULL when invalid. */
static struct policy_group *parse_group_ref(struct parser *p, json_t *v, const char *inline_id,
					    bool label_only)
{
	if (json_is_string(v)) {
		const char *name = json_string_value(v);
		struct policy_group *g = (struct policy_group *)policy_find_group(p->doc, name);
		if (g) {
			if (label_only && g->kind == GROUP_NETWORK) {
				walk_error(&p->w, "\"%s\" is a network group; applies_to needs a label group",
					   name);
				return NULL;
			}
			return g;
		}
		if (!is_declared(p, name)) {
			const char *near = NULL;
			if (p->suggest_budget >= p->n_declared) {
				p->suggest_budget -= p->n_declared;
				near = json_util_suggest(name, p->declared);
			}
			if (near)
				walk_error(&p->w, "unknown group \"%s\" (did you mean \"%s\"?)", name, near);
			else
				walk_error(&p->w, "unknown group \"%s\"", name);
		}
		return NULL;
	}
	if (json_is_object(v))
		return parse_group(p, v, NULL, inline_id, label_only);
	walk_error(&p->w, "expected a group name or an inline group object, got %s",
		   json_util_type_name_a(json_typeof(v)));
	return NULL;
}

/* ---- rules and policies ---- */

static bool parse_action(struct parser *p, json_t *v, enum rule_action *out)
{
	if (!walk_expect_type(&p->w, v, JSON_STRING))
		return false;
	const char *s = json_string_value(v);
	int i = vocab_find(action_words, s);
	if (i >= 0)
		*out = (enum rule_action)i;
	else {
		walk_error(&p->w, "\"%s\": expected \"allow\" or \"deny\"", s);
		return false;
	}
	return true;
}

static void parse_rule(struct parser *p, json_t *obj, const char *policy, enum direction dir, size_t index,
		       struct policy_rule *out)
{
	static const char *const ingress_keys[] = {"action", "from", "ports", "description", NULL};
	static const char *const egress_keys[] = {"action", "to", "ports", "description", NULL};
	static const struct key_hint ingress_hints[] = {
	    {"to", "ingress rules name their peers in \"from\" (\"to\" is for egress rules)"}, {NULL, NULL}};
	static const struct key_hint egress_hints[] = {
	    {"from", "egress rules name their peers in \"to\" (\"from\" is for ingress rules)"},
	    {NULL, NULL}};
	const char *peer_key = dir == DIR_INGRESS ? "from" : "to";

	if (!walk_expect_type(&p->w, obj, JSON_OBJECT))
		return;
	walk_check_keys(&p->w, obj, dir == DIR_INGRESS ? ingress_keys : egress_keys,
			dir == DIR_INGRESS ? ingress_hints : egress_hints);
	walk_description(&p->w, obj);

	json_t *v = json_object_get(obj, "action");
	out->action = ACTION_ALLOW;
	if (v) {
		size_t mark = jpath_push_key(&p->w.path, "action");
		parse_action(p, v, &out->action);
		jpath_pop(&p->w.path, mark);
	}

	v = json_object_get(obj, peer_key);
	out->any_peer = v == NULL;
	if (v) {
		size_t mark = jpath_push_key(&p->w.path, peer_key);
		if (walk_expect_type(&p->w, v, JSON_ARRAY)) {
			size_t n = json_array_size(v);
			if (n == 0)
				walk_error(
				    &p->w,
				    "empty list matches nothing; leave \"%s\" out to match any address",
				    peer_key);
			out->peers = arena_calloc(p->w.arena, n ? n : 1, sizeof(*out->peers));
			if (!out->peers)
				p->w.oom = true;
			for (size_t i = 0; out->peers && i < n; i++) {
				size_t m2 = jpath_push_index(&p->w.path, i);
				char *id = arena_printf(p->w.arena, "%s/%s/%zu/%zu", policy ? policy : "?",
							direction_name(dir), index, i);
				struct policy_group *g =
				    id ? parse_group_ref(p, json_array_get(v, i), id, false) : NULL;
				if (g)
					out->peers[out->n_peers++] = g;
				jpath_pop(&p->w.path, m2);
			}
		}
		jpath_pop(&p->w.path, mark);
	}

	v = json_object_get(obj, "ports");
	out->any_port = v == NULL;
	if (v) {
		size_t mark = jpath_push_key(&p->w.path, "ports");
		if (walk_expect_type(&p->w, v, JSON_ARRAY)) {
			size_t n = json_array_size(v);
			if (n == 0)
				walk_error(&p->w,
					   "empty list matches nothing; leave \"ports\" out to match every "
					   "protocol and port");
			out->ports = arena_calloc(p->w.arena, n ? n : 1, sizeof(*out->ports));
			if (!out->ports)
				p->w.oom = true;
			for (size_t i = 0; out->ports && i < n; i++) {
				size_t m2 = jpath_push_index(&p->w.path, i);
				json_t *item = json_array_get(v, i);
				const char *why;
				if (!walk_expect_type(&p->w, item, JSON_STRING)) {
				} else if (port_match_parse(json_string_value(item),
							    &out->ports[out->n_ports], &why) < 0) {
					walk_error(&p->w, "\"%s\": %s", json_string_value(item), why);
				} else if (out->ports[out->n_ports].name &&
					   !(out->ports[out->n_ports].name =
						 arena_strdup(p->w.arena, out->ports[out->n_ports].name))) {
					p->w.oom = true;
				} else {
					out->n_ports++;
				}
				jpath_pop(&p->w.path, m2);
			}
		}
		jpath_pop(&p->w.path, mark);
	}
}

static void parse_policy(struct parser *p, json_t *obj, struct policy *pol)
{
	static const char *const keys[] = {"name", "description", "applies_to", "order",
					   "mode", "ingress",	  "egress",	NULL};
	if (!walk_expect_type(&p->w, obj, JSON_OBJECT))
		return;
	walk_check_keys(&p->w, obj, keys, NULL);
	walk_description(&p->w, obj);

	json_t *v = json_object_get(obj, "name");
	size_t mark = jpath_push_key(&p->w.path, "name");
	if (!v)
		walk_error(&p->w, "missing required key");
	else if ((pol->name = walk_take_string(&p->w, v)) && !name_valid(pol->name, NAME_MAX_LEN)) {
		walk_error(&p->w,
			   "invalid policy name \"%s\": use 1-%d letters, digits, '.', '_' or '-', beginning "
			   "with a letter or digit",
			   pol->name, NAME_MAX_LEN);
		pol->name = NULL;
	}
	jpath_pop(&p->w.path, mark);

	v = json_object_get(obj, "applies_to");
	mark = jpath_push_key(&p->w.path, "applies_to");
	if (!v) {
		walk_error(&p->w, "missing required key");
	} else {
		char *id = arena_printf(p->w.arena, "%s/applies_to", pol->name ? pol->name : "?");
		pol->applies_to = id ? parse_group_ref(p, v, id, true) : NULL;
	}
	jpath_pop(&p->w.path, mark);

	pol->order = POLICY_DEFAULT_ORDER;
	v = json_object_get(obj, "order");
	if (v) {
		mark = jpath_push_key(&p->w.path, "order");
		json_int_t order;
		if (!json_integral(v, &order))
			walk_error(&p->w, "expected an integer, got %s",
				   json_util_type_name_a(json_typeof(v)));
		else if (order < INT32_MIN || order > INT32_MAX)
			walk_error(&p->w, "%lld: order out of range (%d to %d)", (long long)order, INT32_MIN,
				   INT32_MAX);
		else
			pol->order = (int32_t)order;
		jpath_pop(&p->w.path, mark);
	}

	pol->mode = MODE_ENFORCE;
	v = json_object_get(obj, "mode");
	if (v) {
		mark = jpath_push_key(&p->w.path, "mode");
		if (walk_expect_type(&p->w, v, JSON_STRING)) {
			const char *s = json_string_value(v);
			int i = vocab_find(mode_words, s);
			if (i >= 0)
				pol->mode = (enum policy_mode)i;
			else
				walk_error(&p->w, "\"%s\": expected \"enforce\" or \"audit\"", s);
		}
		jpath_pop(&p->w.path, mark);
	}

	bool any_list = false;
	for (enum direction dir = 0; dir < DIR_COUNT; dir++) {
		const char *dname = direction_name(dir);
		v = json_object_get(obj, dname);
		if (!v)
			continue;
		any_list = true;
		mark = jpath_push_key(&p->w.path, dname);
		if (walk_expect_type(&p->w, v, JSON_ARRAY)) {
			struct rule_list *rl = &pol->rules[dir];
			size_t n = json_array_size(v);
			rl->present = true;
			rl->v = arena_calloc(p->w.arena, n ? n : 1, sizeof(*rl->v));
			if (!rl->v)
				p->w.oom = true;
			for (size_t i = 0; rl->v && i < n; i++) {
				size_t m2 = jpath_push_index(&p->w.path, i);
				parse_rule(p, json_array_get(v, i), pol->name, dir, i, &rl->v[i]);
				jpath_pop(&p->w.path, m2);
			}
			rl->n = rl->v ? n : 0;
		}
		jpath_pop(&p->w.path, mark);
	}
	if (!any_list)
		walk_error(&p->w, "policy has neither \"ingress\" nor \"egress\": it would do nothing");
}

static int policy_cmp(const void *a, const void *b)
{
	const struct policy *x = a, *y = b;
	if (x->order != y->order)
		return x->order < y->order ? -1 : 1;
	return strcmp(x->name, y->name);
}

struct name_ref {
	const char *name;
	size_t index;
};

static int name_ref_cmp(const void *a, const void *b)
{
	const struct name_ref *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	return c ? c : (x->index > y->index) - (x->index < y->index);
}

/* For every policy of arr, the index of the first one with the same
 * (valid) name, or its own index: sorted once, not compared pairwise.
 * Reads the names as parse_policy() will take them. NULL on ENOMEM. */
static size_t *first_of_same_name(json_t *arr)
{
	size_t n = json_array_size(arr), k = 0;
	size_t *first = malloc((n ? n : 1) * sizeof(*first));
	struct name_ref *refs = malloc((n ? n : 1) * sizeof(*refs));
	if (!first || !refs) {
		free(first);
		free(refs);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *v = json_object_get(json_array_get(arr, i), "name");
		first[i] = i;
		if (json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v) &&
		    name_valid(json_string_value(v), NAME_MAX_LEN))
			refs[k++] = (struct name_ref){json_string_value(v), i};
	}
	if (k)
		qsort(refs, k, sizeof(*refs), name_ref_cmp);
	for (size_t i = 1; i < k; i++) {
		if (strcmp(refs[i - 1].name, refs[i].name) == 0)
			first[refs[i].index] = first[refs[i - 1].index];
	}
	free(refs);
	return first;
}

static void parse_policies(struct parser *p, json_t *arr)
{
	size_t mark = jpath_push_key(&p->w.path, "policies");
	if (!walk_expect_type(&p->w, arr, JSON_ARRAY)) {
		jpath_pop(&p->w.path, mark);
		return;
	}
	size_t n = json_array_size(arr);
	struct policy *pols = arena_calloc(p->w.arena, n ? n : 1, sizeof(*pols));
	size_t *first = first_of_same_name(arr);
	if (!pols || !first) {
		free(first);
		p->w.oom = true;
		jpath_pop(&p->w.path, mark);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		size_t m2 = jpath_push_index(&p->w.path, i);
		parse_policy(p, json_array_get(arr, i), &pols[i]);
		/* Names are the policies' identity in rule ids and reports. */
		if (pols[i].name && first[i] != i) {
			size_t m3 = jpath_push_key(&p->w.path, "name");
			walk_error(&p->w, "duplicate policy name \"%s\" (first at /policies/%zu)",
				   pols[i].name, first[i]);
			jpath_pop(&p->w.path, m3);
		}
		jpath_pop(&p->w.path, m2);
	}
	free(first);
	p->doc->policies = pols;
	p->doc->n_policies = n;
}

static void parse_defaults(struct parser *p, json_t *obj)
{
	size_t mark = jpath_push_key(&p->w.path, "defaults");
	if (walk_expect_type(&p->w, obj, JSON_OBJECT)) {
		walk_check_keys(&p->w, obj, direction_words, NULL);
		for (enum direction dir = 0; dir < DIR_COUNT; dir++) {
			json_t *v = json_object_get(obj, direction_name(dir));
			if (!v)
				continue;
			size_t m2 = jpath_push_key(&p->w.path, direction_name(dir));
			parse_action(p, v, &p->doc->defaults[dir]);
			jpath_pop(&p->w.path, m2);
		}
	}
	jpath_pop(&p->w.path, mark);
}

static void parse_observe(struct parser *p, json_t *v)
{
	size_t mark = jpath_push_key(&p->w.path, "observe");
	if (walk_expect_type(&p->w, v, JSON_STRING)) {
		int i = vocab_find(observe_words, json_string_value(v));
		if (i >= 0)
			p->doc->observe = (enum observe)i;
		else
			walk_error(&p->w,
				   "\"%s\": expected \"denied\" (report denied and audited flows) or \"all\" "
				   "(every accepted new connection too)",
				   json_string_value(v));
	}
	jpath_pop(&p->w.path, mark);
}

struct policy_doc *policy_parse_json(json_t *root, struct diag *diag)
{
	static const char *const keys[] = {"version", "description", "defaults", "observe",
					   "groups",  "policies",    NULL};
	struct parser p = {.suggest_budget = SUGGEST_BUDGET};
	size_t errors = diag->n;

	struct arena *arena = arena_new();
	struct policy_doc *doc = arena ? arena_alloc(arena, sizeof(*doc)) : NULL;
	if (!doc) {
		arena_free(arena);
		diag_add(diag, "", "out of memory");
		return NULL;
	}
	doc->arena = arena;
	p.doc = doc;
	walk_init(&p.w, arena, diag);

	if (!json_is_object(root)) {
		diag_add(diag, "", "expected a policy document (a JSON object), got %s",
			 json_util_type_name_a(json_typeof(root)));
		goto err_free_doc;
	}
	walk_check_keys(&p.w, root, keys, NULL);
	walk_description(&p.w, root);

	json_t *v = json_object_get(root, "version");
	json_int_t version;
	size_t mark = jpath_push_key(&p.w.path, "version");
	if (!v)
		walk_error(&p.w, "missing required key (this Bulkhead reads version %d)", POLICY_VERSION);
	else if (!json_integral(v, &version))
		walk_error(&p.w, "expected an integer, got %s", json_util_type_name_a(json_typeof(v)));
	else if (version != POLICY_VERSION)
		walk_error(&p.w, "unsupported version %lld (this Bulkhead reads version %d)",
			   (long long)version, POLICY_VERSION);
	doc->version = POLICY_VERSION;
	jpath_pop(&p.w.path, mark);

	if ((v = json_object_get(root, "defaults")))
		parse_defaults(&p, v);
	if ((v = json_object_get(root, "observe")))
		parse_observe(&p, v);
	if ((v = json_object_get(root, "groups")))
		parse_groups(&p, v);
	if (doc->n_groups)
		qsort(doc->groups, doc->n_groups, sizeof(*doc->groups), group_ptr_cmp);
	if ((v = json_object_get(root, "policies")))
		parse_policies(&p, v);

	if (p.w.oom)
		diag_add(diag, "", "out of memory");
	if (diag->n != errors || diag->oom)
		goto err_free_doc;
	if (doc->n_policies)
		qsort(doc->policies, doc->n_policies, sizeof(*doc->policies), policy_cmp);
	return doc;

err_free_doc:
	policy_doc_free(doc);
	return NULL;
}

static void too_big(struct diag *diag)
{
	diag_add(diag, "", "larger than %d bytes (%d MiB), the most a policy document may be",
		 POLICY_MAX_BYTES, POLICY_MAX_BYTES >> 20);
}

struct policy_doc *policy_parse_string(const char *text, size_t len, struct diag *diag)
{
	if (len > (size_t)POLICY_MAX_BYTES) {
		too_big(diag);
		return NULL;
	}
	json_t *root = json_util_loadb(text, len, diag);
	if (!root)
		return NULL;
	struct policy_doc *doc = policy_parse_json(root, diag);
	json_decref(root);
	return doc;
}

int policy_read_file(const char *path, char **text, size_t *len, struct diag *diag)
{
	return json_util_read_file(path, POLICY_MAX_BYTES, "a policy document", text, len, diag);
}

struct policy_doc *policy_parse_file(const char *path, struct diag *diag)
{
	char *text;
	size_t len;
	if (policy_read_file(path, &text, &len, diag) < 0)
		return NULL;
	struct policy_doc *doc = policy_parse_string(text, len, diag);
	free(text);
	return doc;
}

void policy_doc_free(struct policy_doc *doc)
{
	if (doc)
		arena_free(doc->arena);
}
