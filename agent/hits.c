/* Rule hits and logged packets, named by bundle rule (see hits.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bulkhead/log.h"
#include "hits.h"
#include "state.h"

void hits_packet(struct endpoint_state *e, const struct nflog_event *ev)
{
	struct session *s = e->env->session;
	const char *policy = NULL, *rule = "unknown-rule";
	const struct bundle_endpoint *be = e->applied ? bundle_find_endpoint(e->applied->b, e->name) : NULL;
	if (!s)
		return;
	if (ev->prefix.position == NFT_POSITION_INVALID) {
		rule = RULE_ID_CT_INVALID; /* the same in every table */
	} else if (be) {
		const struct bundle_chain *c = &be->chains[ev->prefix.dir];
		if (ev->prefix.position == NFT_POSITION_FALLBACK) {
			rule = c->fallback_reason;
		} else if ((size_t)ev->prefix.position < c->n_rules) {
			rule = c->rules[ev->prefix.position].id;
			policy = c->rules[ev->prefix.position].policy;
		}
	}
	session_packet(s, e->name, ev, policy, rule, (uint64_t)clock_wall_ms());
}

/* Finds what rule (a comment: rule id or fallback reason) is in b. */
static bool rule_named(const struct bundle *b, const char *endpoint, enum direction dir, const char *rule,
		       const char **policy, const char **verdict)
{
	const struct bundle_endpoint *be = b ? bundle_find_endpoint(b, endpoint) : NULL;
	if (!be)
		return false;
	const struct bundle_chain *c = &be->chains[dir];
	for (size_t i = 0; i < c->n_rules; i++) {
		const struct bundle_rule *r = &c->rules[i];
		if (strcmp(r->id, rule) != 0)
			continue;
		*policy = r->policy;
		*verdict = verdict_report_name(rule_verdict(r->action, r->mode));
		return true;
	}
	if (strcmp(c->fallback_reason, rule) != 0)
		return false;
	*policy = NULL;
	*verdict = verdict_report_name(c->fallback);
	return true;
}

static void on_growth(void *data, const struct counter_growth *g)
{
	struct endpoint_state *e = data;
	struct session *s = e->env->session;
	const char *policy = NULL, *verdict = NULL;
	/* Of the rules every chain starts with, the invalid drop is reported
	 * (the others accept conntrack's own traffic, loopback and ND). */
	enum fixed_rule fixed = fixed_rule_find(g->rule);
	if (fixed == FIXED_CT_INVALID) {
		session_hit(s, e->name, g->dir, g->rule, NULL, verdict_report_name(VERDICT_DROP), g->packets,
			    g->bytes, (uint64_t)clock_wall_ms());
		return;
	}
	if (fixed != FIXED_COUNT)
		return;
	/* The bundle the table was built from; at start, before this run
	 * built it, the bundle in force (the one it most likely holds). */
	if (!rule_named(e->applied ? e->applied->b : NULL, e->name, g->dir, g->rule, &policy, &verdict) &&
	    !rule_named(e->env->current ? e->env->current->b : NULL, e->name, g->dir, g->rule, &policy,
			&verdict)) {
		log_debug("endpoint %s: counter of unknown rule \"%s\" not reported", e->name, g->rule);
		return;
	}
	session_hit(s, e->name, g->dir, g->rule, policy, verdict, g->packets, g->bytes,
		    (uint64_t)clock_wall_ms());
}

void hits_read(struct endpoint_state *e)
{
	if (!e->counters || !e->dp || !e->env->session)
		return;
	int r = dataplane_read_counters(e->dp, e->counters, on_growth, e);
	if (r < 0 && !e->counters_failed_logged)
		log_error_errno(r, "endpoint %s: reading rule counters: %m (hit counts go unreported)",
				e->name);
	e->counters_failed_logged = r < 0;
}

json_t *hits_load(const char *dir)
{
	char *text;
	size_t len;
	if (!dir || state_read(dir, STATE_COUNTERS, 64u << 20, &text, &len) < 0)
		return NULL;
	json_t *saved = json_loadb(text, len, 0, NULL);
	free(text);
	if (!json_is_object(saved)) {
		log_warn("%s/%s unreadable; rule hit counts start afresh", dir, STATE_COUNTERS);
		json_decref(saved);
		saved = NULL;
	}
	/* Used once: a later crash must not count from this baseline again,
	 * so without the unlink it is not used at all. */
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, STATE_COUNTERS);
	if (unlink(path) < 0) {
		log_error("removing %s: %m; rule hit counts start afresh", path);
		json_decref(saved);
		saved = NULL;
	}
	return saved;
}

void hits_restore(struct endpoint_state *e)
{
	json_t *all = e->env->saved_counters;
	json_t *saved = json_object_get(all, e->name);
	json_t *dev = json_object_get(saved, "dev"), *ino = json_object_get(saved, "ino");
	if (saved && json_is_integer(dev) && json_is_integer(ino) &&
	    (unsigned long)json_integer_value(dev) == e->id.dev &&
	    (unsigned long)json_integer_value(ino) == e->id.ino &&
	    counters_load(e->counters, json_object_get(saved, "readings")) < 0)
		log_warn("endpoint %s: saved rule counters unreadable; its hit counts start afresh", e->name);
	json_object_del(all, e->name);
}

void hits_save(const char *dir, const struct endpoint_state *list)
{
	if (!dir)
		return;
	json_t *out = json_object();
	for (const struct endpoint_state *e = list; e; e = e->next) {
		if (e->counters && e->present)
			json_object_set_new(out, e->name,
					    json_pack("{s:I,s:I,s:o}", "dev", (json_int_t)e->id.dev, "ino",
						      (json_int_t)e->id.ino, "readings",
						      counters_save(e->counters)));
	}
	char *text = json_dumps(out, JSON_COMPACT);
	json_decref(out);
	int r = text ? state_write(dir, STATE_COUNTERS, text, strlen(text)) : -ENOMEM;
	if (r < 0)
		log_error_errno(r, "writing %s/%s: %m", dir, STATE_COUNTERS);
	free(text);
}
