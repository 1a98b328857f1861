/* Which labels a node may report (see labelrules.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/log.h"
#include "bulkhead/policy.h"
#include "labelrules.h"

struct rule {
	char *key;     /* "*": the keys not named */
	bool any;      /* "*": any value */
	char **values; /* sorted */
	size_t n_values;
};

struct labelrules {
	char *name;
	struct rule *v; /* sorted by key, "*" excepted */
	size_t n;
	struct rule *other; /* the "*" rule, or NULL */
};

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int rule_cmp(const void *a, const void *b)
{
	return strcmp(((const struct rule *)a)->key, ((const struct rule *)b)->key);
}

void labelrules_free(struct labelrules *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++) {
		for (size_t k = 0; k < r->v[i].n_values; k++)
			free(r->v[i].values[k]);
		free(r->v[i].values);
		free(r->v[i].key);
	}
	free(r->v);
	free(r->name);
	free(r);
}

/* One member: key → "*" or [values]. false when reported. */
static bool parse_rule(struct rule *out, const char *key, json_t *spec, struct diag *diag)
{
	struct jpath p;
	jpath_init(&p);
	jpath_push_key(&p, key);
	const char *why = NULL;
	bool ok = true;
	if (strcmp(key, "*") != 0 && !label_key_valid(key, &why)) {
		diag_add(diag, p.buf, "\"%s\": not a label key: %s", key, why);
		ok = false;
	}
	*out = (struct rule){.key = xstrdup(key)};
	if (json_is_string(spec) && strcmp(json_string_value(spec), "*") == 0) {
		out->any = true;
		return ok;
	}
	if (!json_is_array(spec)) {
		diag_add(diag, p.buf, "want a list of the values allowed, or \"*\" for any value");
		return false;
	}
	out->values = xcalloc(json_array_size(spec) + 1, sizeof(*out->values));
	size_t i;
	json_t *v;
	json_array_foreach (spec, i, v) {
		size_t mark = jpath_push_index(&p, i);
		if (!json_is_string(v)) {
			diag_add(diag, p.buf, "want a string (a label value)");
			ok = false;
		} else if (!label_value_valid(json_string_value(v), &why)) {
			diag_add(diag, p.buf, "\"%s\": not a label value: %s", json_string_value(v), why);
			ok = false;
		} else {
			out->values[out->n_values++] = xstrdup(json_string_value(v));
		}
		jpath_pop(&p, mark);
	}
	qsort(out->values, out->n_values, sizeof(*out->values), str_cmp);
	return ok;
}

struct labelrules *labelrules_parse(const char *name, const char *text, size_t len, struct diag *diag)
{
	json_error_t jerr;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		diag_add(diag, "", "line %d, column %d: invalid JSON: %s", jerr.line, jerr.column, jerr.text);
		return NULL;
	}
	if (!json_is_object(root)) {
		diag_add(diag, "", "want an object: label key → [values allowed] or \"*\"");
		json_decref(root);
		return NULL;
	}
	struct labelrules *r = xcalloc(1, sizeof(*r));
	r->name = xstrdup(name);
	r->v = xcalloc(json_object_size(root) + 1, sizeof(*r->v));
	bool ok = true;
	const char *key;
	json_t *spec;
	json_object_foreach (root, key, spec)
		ok &= parse_rule(&r->v[r->n++], key, spec, diag);
	json_decref(root);
	qsort(r->v, r->n, sizeof(*r->v), rule_cmp);
	/* "*" sorts before every label key (which starts with a letter or
	 * digit): it is the first rule when present. */
	if (r->n && strcmp(r->v[0].key, "*") == 0)
		r->other = &r->v[0];
	if (!ok) {
		labelrules_free(r);
		return NULL;
	}
	return r;
}

static const struct rule *rule_for(const struct labelrules *r, const char *key)
{
	size_t first = r->other ? 1 : 0;
	struct rule want = {.key = (char *)key};
	const struct rule *found = bsearch(&want, r->v + first, r->n - first, sizeof(*r->v), rule_cmp);
	return found ? found : r->other;
}

static bool rule_allows(const struct rule *rule, const char *value)
{
	return rule->any || bsearch(&value, rule->values, rule->n_values, sizeof(*rule->values), str_cmp);
}

/* "tenant: a, b" — what a rule allows, for a message (cut when long). */
static void rule_text(const struct rule *rule, const char *key, char *buf, size_t n)
{
	size_t len = (size_t)snprintf(buf, n, "%s: %s", key, rule->n_values ? "" : "no value");
	for (size_t i = 0; i < rule->n_values && len < n; i++)
		len += (size_t)snprintf(buf + len, n - len, "%s%s", i ? ", " : "", rule->values[i]);
	if (len >= n && n > 4)
		strcpy(buf + n - 4, "...");
}

/* Whether a name from a peer can be shown as it is (no escapes to hide). */
static bool plain(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') ||
		      (s[n] >= '0' && s[n] <= '9') || strchr("._-", s[n])))
			return false;
	return n && n <= 253;
}

/* A list may break the rules many times over: this many are named. */
#define CHECK_NAMED 20

int labelrules_check(const struct labelrules *r, json_t *endpoints, struct diag *diag)
{
	size_t refused = 0;
	size_t i;
	json_t *ep;
	json_array_foreach (endpoints, i, ep) {
		json_t *labels = json_object_get(ep, "labels");
		const char *name = json_string_value(json_object_get(ep, "name"));
		if (!json_is_object(labels))
			continue;
		const char *key;
		json_t *v;
		json_object_foreach (labels, key, v) {
			/* A key or value out of syntax is the list's own
			 * validation's to refuse (and to show safely). */
			const char *value = json_string_value(v), *why;
			if (!value || !label_key_valid(key, &why) || !label_value_valid(value, &why))
				continue;
			const struct rule *rule = rule_for(r, key);
			if (rule && rule_allows(rule, value))
				continue;
			if (++refused > CHECK_NAMED)
				continue;
			struct jpath p;
			jpath_init(&p);
			jpath_push_key(&p, "endpoints");
			jpath_push_index(&p, i);
			jpath_push_key(&p, "labels");
			jpath_push_key(&p, key);
			char allowed[256];
			if (!rule)
				snprintf(allowed, sizeof(allowed), "no rule for key \"%s\"", key);
			else
				rule_text(rule, rule == r->other ? "other keys" : key, allowed,
					  sizeof(allowed));
			diag_add(diag, p.buf, "endpoint %s: label %s=%s: not allowed by %s (%s)",
				 name && plain(name) ? name : "?", key, value, r->name, allowed);
		}
	}
	if (refused > CHECK_NAMED)
		diag_add(diag, "/endpoints", "%zu more labels not allowed by %s", refused - CHECK_NAMED,
			 r->name);
	return refused ? -EPERM : 0;
}
