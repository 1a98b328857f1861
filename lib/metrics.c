/* The metrics registry and its text exposition (see metrics.h). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/log.h"
#include "bulkhead/metrics.h"

struct sample {
	char *labels[METRICS_LABELS_MAX];
	double v;
};

struct metric {
	enum metric_type type;
	char *name, *help;
	char *label_names[METRICS_LABELS_MAX];
	size_t n_labels;
	/* Sorted by label values; a family without labels has exactly one. */
	struct sample *samples;
	size_t n_samples, cap;
	/* METRIC_HISTOGRAM: counts per bucket (not cumulative; the last is
	 * +Inf's), their sum and count. */
	double *bounds;
	unsigned long long *buckets;
	size_t n_bounds;
	double sum;
	unsigned long long count;
	struct metric *next;
};

struct collector {
	void (*fn)(void *data, struct metrics *m);
	void *data;
	struct collector *next;
};

struct metrics {
	struct metric *first, **tail;
	struct collector *collectors, **collectors_tail;
};

struct metrics *metrics_new(void)
{
	struct metrics *m = xcalloc(1, sizeof(*m));
	m->tail = &m->first;
	m->collectors_tail = &m->collectors;
	return m;
}

static void samples_clear(struct metric *f)
{
	for (size_t i = 0; i < f->n_samples; i++)
		for (size_t k = 0; k < f->n_labels; k++)
			free(f->samples[i].labels[k]);
	f->n_samples = 0;
}

void metrics_free(struct metrics *m)
{
	if (!m)
		return;
	while (m->first) {
		struct metric *f = m->first;
		m->first = f->next;
		samples_clear(f);
		free(f->samples);
		for (size_t k = 0; k < f->n_labels; k++)
			free(f->label_names[k]);
		free(f->bounds);
		free(f->buckets);
		free(f->name);
		free(f->help);
		free(f);
	}
	while (m->collectors) {
		struct collector *c = m->collectors;
		m->collectors = c->next;
		free(c);
	}
	free(m);
}

/* ---- names ---- */

static bool name_char(char c, bool first, bool colon)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':') ||
	       (!first && c >= '0' && c <= '9');
}

static bool name_valid(const char *s, size_t len, bool colon)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!name_char(s[i], i == 0, colon))
			return false;
	return true;
}

static bool ends_with(const char *s, const char *tail)
{
	size_t a = strlen(s), b = strlen(tail);
	return a >= b && strcmp(s + a - b, tail) == 0;
}

static struct metric *find(const struct metrics *m, const char *name)
{
	for (struct metric *f = m->first; f; f = f->next)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

static bool family_name_ok(const struct metrics *m, enum metric_type type, const char *name)
{
	if (!name_valid(name, strlen(name), true) || strncmp(name, "bulkhead_", 9) != 0 || find(m, name))
		return false;
	/* A counter's name says so; nothing else may end like one. */
	if ((type == METRIC_COUNTER) != ends_with(name, "_total"))
		return false;
	/* A histogram's series take these suffixes. */
	if (type == METRIC_HISTOGRAM &&
	    (ends_with(name, "_bucket") || ends_with(name, "_sum") || ends_with(name, "_count")))
		return false;
	return true;
}

static struct metric *family_new(struct metrics *m, enum metric_type type, const char *name, const char *help)
{
	struct metric *f = xcalloc(1, sizeof(*f));
	f->type = type;
	f->name = xstrdup(name);
	f->help = xstrdup(help ? help : "");
	return f;
}

static void family_link(struct metrics *m, struct metric *f)
{
	*m->tail = f;
	m->tail = &f->next;
}

struct metric *metrics_add(struct metrics *m, enum metric_type type, const char *name, const char *help,
			   const char *labels)
{
	if (type == METRIC_HISTOGRAM || !family_name_ok(m, type, name))
		return NULL;
	struct metric *f = family_new(m, type, name, help);
	for (const char *p = labels; p && *p;) {
		size_t len = strcspn(p, ",");
		bool dup = false;
		for (size_t k = 0; k < f->n_labels; k++)
			dup |= strlen(f->label_names[k]) == len && strncmp(f->label_names[k], p, len) == 0;
		if (f->n_labels == METRICS_LABELS_MAX || !name_valid(p, len, false) ||
		    (len >= 2 && p[0] == '_' && p[1] == '_') || (len == 2 && strncmp(p, "le", 2) == 0) ||
		    dup) {
			for (size_t k = 0; k < f->n_labels; k++)
				free(f->label_names[k]);
			free(f->name);
			free(f->help);
			free(f);
			return NULL;
		}
		f->label_names[f->n_labels] = xmalloc(len + 1);
		memcpy(f->label_names[f->n_labels], p, len);
		f->label_names[f->n_labels++][len] = '\0';
		p += len;
		if (*p == ',')
			p++;
	}
	if (!f->n_labels) { /* its one sample, 0 until set */
		f->samples = xcalloc(1, sizeof(*f->samples));
		f->n_samples = f->cap = 1;
	}
	family_link(m, f);
	return f;
}

struct metric *metrics_add_histogram(struct metrics *m, const char *name, const char *help,
				     const double *bounds, size_t n_bounds)
{
	if (!family_name_ok(m, METRIC_HISTOGRAM, name))
		return NULL;
	for (size_t i = 0; i < n_bounds; i++)
		if (!isfinite(bounds[i]) || (i && bounds[i] <= bounds[i - 1]))
			return NULL;
	struct metric *f = family_new(m, METRIC_HISTOGRAM, name, help);
	f->bounds = xcalloc(n_bounds ? n_bounds : 1, sizeof(*f->bounds));
	if (n_bounds)
		memcpy(f->bounds, bounds, n_bounds * sizeof(*bounds));
	f->n_bounds = n_bounds;
	f->buckets = xcalloc(n_bounds + 1, sizeof(*f->buckets));
	family_link(m, f);
	return f;
}

/* ---- samples ---- */

static int labels_cmp(const struct metric *f, char *const *a, const char *const *b)
{
	for (size_t k = 0; k < f->n_labels; k++) {
		int c = strcmp(a[k], b[k]);
		if (c)
			return c;
	}
	return 0;
}

/* The sample with these label values, added (0) when new. */
static struct sample *sample_get(struct metric *f, const char *const *values)
{
	if (!f->n_labels)
		return &f->samples[0];
	size_t lo = 0, hi = f->n_samples;
	/* Collectors mostly set samples in order: try the end first. */
	if (hi && labels_cmp(f, f->samples[hi - 1].labels, values) < 0)
		lo = hi;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = labels_cmp(f, f->samples[mid].labels, values);
		if (c == 0)
			return &f->samples[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (f->n_samples == f->cap) {
		f->cap = f->cap ? 2 * f->cap : 8;
		f->samples = xrealloc(f->samples, f->cap * sizeof(*f->samples));
	}
	memmove(&f->samples[lo + 1], &f->samples[lo], (f->n_samples - lo) * sizeof(*f->samples));
	f->n_samples++;
	struct sample *s = &f->samples[lo];
	*s = (struct sample){0};
	for (size_t k = 0; k < f->n_labels; k++)
		s->labels[k] = xstrdup(values[k]);
	return s;
}

static struct sample *sample_va(struct metric *f, va_list ap)
{
	const char *values[METRICS_LABELS_MAX];
	for (size_t k = 0; k < f->n_labels; k++) {
		values[k] = va_arg(ap, const char *);
		if (!values[k])
			values[k] = "";
	}
	return sample_get(f, values);
}

void metric_set(struct metric *f, double v, ...)
{
	if (!f || f->type == METRIC_HISTOGRAM)
		return;
	va_list ap;
	va_start(ap, v);
	sample_va(f, ap)->v = v;
	va_end(ap);
}

void metric_add(struct metric *f, double v, ...)
{
	if (!f || f->type == METRIC_HISTOGRAM)
		return;
	va_list ap;
	va_start(ap, v);
	sample_va(f, ap)->v += v;
	va_end(ap);
}

void metric_observe(struct metric *f, double v)
{
	if (!f || f->type != METRIC_HISTOGRAM || isnan(v))
		return;
	size_t i = 0;
	while (i < f->n_bounds && v > f->bounds[i])
		i++;
	f->buckets[i]++;
	f->count++;
	f->sum += v;
}

void metric_clear(struct metric *f)
{
	if (f && f->n_labels)
		samples_clear(f);
}

void metrics_on_collect(struct metrics *m, void (*fn)(void *data, struct metrics *m), void *data)
{
	struct collector *c = xcalloc(1, sizeof(*c));
	c->fn = fn;
	c->data = data;
	*m->collectors_tail = c;
	m->collectors_tail = &c->next;
}

/* ---- the text format ---- */

/* A value as Go's ParseFloat reads it: integers exactly (up to 2^53),
 * others with every digit that counts. */
static void put_value(FILE *out, double v)
{
	if (isnan(v))
		fputs("NaN", out);
	else if (isinf(v))
		fputs(v > 0 ? "+Inf" : "-Inf", out);
	else if (v == floor(v) && fabs(v) < 9007199254740992.0)
		fprintf(out, "%.0f", v);
	else
		fprintf(out, "%.17g", v);
}

/* HELP text escapes backslash and newline; label values also '"'. */
static void put_escaped(FILE *out, const char *s, bool quote)
{
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\\\", out);
		else if (*s == '\n')
			fputs("\\n", out);
		else if (quote && *s == '"')
			fputs("\\\"", out);
		else
			fputc(*s, out);
	}
}

static void put_sample(FILE *out, const struct metric *f, const struct sample *s)
{
	fputs(f->name, out);
	if (f->n_labels) {
		fputc('{', out);
		for (size_t k = 0; k < f->n_labels; k++) {
			fprintf(out, "%s%s=\"", k ? "," : "", f->label_names[k]);
			put_escaped(out, s->labels[k], true);
			fputc('"', out);
		}
		fputc('}', out);
	}
	fputc(' ', out);
	put_value(out, s->v);
	fputc('\n', out);
}

static void put_histogram(FILE *out, const struct metric *f)
{
	unsigned long long cumulative = 0;
	for (size_t i = 0; i <= f->n_bounds; i++) {
		cumulative += f->buckets[i];
		fprintf(out, "%s_bucket{le=\"", f->name);
		put_value(out, i < f->n_bounds ? f->bounds[i] : INFINITY);
		fprintf(out, "\"} %llu\n", cumulative);
	}
	fprintf(out, "%s_sum ", f->name);
	put_value(out, f->sum);
	fprintf(out, "\n%s_count %llu\n", f->name, f->count);
}

static const char *type_name(enum metric_type t)
{
	return t == METRIC_COUNTER ? "counter" : t == METRIC_GAUGE ? "gauge" : "histogram";
}

char *metrics_render(struct metrics *m, size_t *len)
{
	for (struct collector *c = m->collectors; c; c = c->next)
		c->fn(c->data, m);
	char *text = NULL;
	size_t size = 0;
	FILE *out = open_memstream(&text, &size);
	if (!out)
		abort();
	for (const struct metric *f = m->first; f; f = f->next) {
		fprintf(out, "# HELP %s ", f->name);
		put_escaped(out, f->help, false);
		fprintf(out, "\n# TYPE %s %s\n", f->name, type_name(f->type));
		if (f->type == METRIC_HISTOGRAM)
			put_histogram(out, f);
		else
			for (size_t i = 0; i < f->n_samples; i++)
				put_sample(out, f, &f->samples[i]);
	}
	if (fclose(out) != 0)
		abort();
	*len = size;
	return text;
}
