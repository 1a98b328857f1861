/* Kubernetes label syntax and label selectors. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/policy.h"

static bool is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* A label name, or a non-empty value: [A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?
 * and at most 63 characters. */
static bool label_name_valid(const char *s, size_t len, const char **why)
{
	if (len == 0) {
		*why = "name part is empty";
		return false;
	}
	if (len > 63) {
		*why = "longer than 63 characters";
		return false;
	}
	if (!is_alnum(s[0]) || !is_alnum(s[len - 1])) {
		*why = "must begin and end with a letter or digit";
		return false;
	}
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!is_alnum(c) && c != '-' && c != '_' && c != '.') {
			*why = "only letters, digits, '-', '_' and '.' are allowed";
			return false;
		}
	}
	return true;
}

/* DNS subdomain (RFC 1123): lowercase parts of [a-z0-9-] separated by dots,
 * each beginning and ending with an alphanumeric, at most 253 in all. */
static bool dns_subdomain_valid(const char *s, size_t len, const char **why)
{
	if (len == 0) {
		*why = "prefix before '/' is empty";
		return false;
	}
	if (len > 253) {
		*why = "prefix longer than 253 characters";
		return false;
	}
	size_t start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && s[i] != '.') {
			char c = s[i];
			if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
				*why = "prefix must be a lowercase DNS subdomain";
				return false;
			}
			continue;
		}
		size_t plen = i - start;
		if (plen == 0 || s[start] == '-' || s[i - 1] == '-') {
			*why = "prefix must be a lowercase DNS subdomain";
			return false;
		}
		start = i + 1;
	}
	return true;
}

bool label_key_valid(const char *key, const char **why)
{
	const char *slash = strchr(key, '/');
	if (!slash)
		return label_name_valid(key, strlen(key), why);
	if (strchr(slash + 1, '/')) {
		*why = "at most one '/' (prefix/name)";
		return false;
	}
	return dns_subdomain_valid(key, (size_t)(slash - key), why) &&
	       label_name_valid(slash + 1, strlen(slash + 1), why);
}

bool label_value_valid(const char *value, const char **why)
{
	size_t len = strlen(value);
	return len == 0 || label_name_valid(value, len, why);
}

const char *label_set_get(const struct label_set *labels, const char *key)
{
	size_t lo = 0, hi = labels->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(key, labels->v[mid].key);
		if (c == 0)
			return labels->v[mid].value;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The values are sorted and unique (policy.h). */
static bool values_contain(const struct selector_expr *e, const char *value)
{
	return e->n_values && bsearch(&value, e->values, e->n_values, sizeof(*e->values), str_cmp) != NULL;
}

bool selector_matches(const struct selector *sel, const struct label_set *labels)
{
	for (size_t i = 0; i < sel->labels.n; i++) {
		const char *v = label_set_get(labels, sel->labels.v[i].key);
		if (!v || strcmp(v, sel->labels.v[i].value) != 0)
			return false;
	}
	for (size_t i = 0; i < sel->n_exprs; i++) {
		const struct selector_expr *e = &sel->exprs[i];
		const char *v = label_set_get(labels, e->key);
		bool ok = false;
		switch (e->op) {
		case SELECTOR_IN:
			ok = v && values_contain(e, v);
			break;
		case SELECTOR_NOT_IN:
			/* Kubernetes: a missing key satisfies NotIn. */
			ok = !v || !values_contain(e, v);
			break;
		case SELECTOR_EXISTS:
			ok = v != NULL;
			break;
		case SELECTOR_DOES_NOT_EXIST:
			ok = v == NULL;
			break;
		}
		if (!ok)
			return false;
	}
	return true;
}
