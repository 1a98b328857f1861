/* hook-proto: the OCI hook's messages and the runtime's state (hook-proto.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "hook-proto.h"

static const char *const result_words[HOOK_RESULT_COUNT] = {
    [HOOK_ENFORCED] = "enforced",
    [HOOK_QUARANTINED] = "quarantined",
    [HOOK_UNMANAGED] = "unmanaged",
    [HOOK_ISOLATE] = "isolate",
};

const char *hook_result_name(enum hook_result r)
{
	return r < HOOK_RESULT_COUNT ? result_words[r] : "?";
}

bool hook_id_valid(const char *id)
{
	size_t n = 0;
	for (; id[n]; n++) {
		char c = id[n];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '+' || c == '-'))
			return false;
	}
	return n >= 1 && n <= HOOK_ID_MAX && strcmp(id, ".") != 0 && strcmp(id, "..") != 0;
}

/* An absolute path of printable ASCII that fits. */
static bool path_valid(const char *p)
{
	size_t n = strlen(p);
	if (n == 0 || n >= HOOK_PATH_MAX || p[0] != '/')
		return false;
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] > 0x7e)
			return false;
	return true;
}

static int encode(json_t *o, char *buf, size_t size, size_t *len)
{
	if (!o)
		return -ENOMEM;
	size_t n = json_dumpb(o, buf, size, JSON_COMPACT);
	json_decref(o);
	if (n == 0 || n > size)
		return -EMSGSIZE;
	*len = n;
	return 0;
}

int hook_request_encode(const struct hook_request *r, char *buf, size_t size, size_t *len)
{
	json_t *o = json_pack("{s:i,s:s,s:i,s:I}", "version", HOOK_PROTO_VERSION, "id", r->id, "pid", r->pid,
			      "timeout_ms", (json_int_t)r->timeout_ms);
	if (o && r->netns[0])
		json_object_set_new(o, "netns", json_string(r->netns));
	return encode(o, buf, size, len);
}

/* At most n - 1 bytes of s as a JSON string, without a UTF-8 sequence
 * left incomplete at its end (cut here or before). jansson refuses
 * invalid UTF-8 anywhere else: the member is then left out. */
static json_t *cut_string(const char *s, size_t n)
{
	size_t len = strnlen(s, n - 1), k = len;
	while (k > 0 && len - k < 3 && ((unsigned char)s[k - 1] & 0xc0) == 0x80)
		k--;
	if (k > 0) {
		unsigned char lead = (unsigned char)s[k - 1];
		size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
		if (len - (k - 1) < need)
			len = k - 1;
	}
	return json_stringn(s, len);
}

int hook_reply_encode(const struct hook_reply *r, char *buf, size_t size, size_t *len)
{
	json_t *o =
	    json_pack("{s:i,s:s}", "version", HOOK_PROTO_VERSION, "result", hook_result_name(r->result));
	if (o && r->endpoint[0])
		json_object_set_new(o, "endpoint", cut_string(r->endpoint, sizeof(r->endpoint)));
	if (o && r->bundle[0])
		json_object_set_new(o, "bundle", cut_string(r->bundle, sizeof(r->bundle)));
	if (o && r->reason[0])
		json_object_set_new(o, "reason", cut_string(r->reason, sizeof(r->reason)));
	return encode(o, buf, size, len);
}

static json_t *load_object(const char *buf, size_t len, const char *what, char *err, size_t errlen)
{
	json_error_t je;
	if (len > HOOK_MSG_MAX) {
		snprintf(err, errlen, "%s of %zu bytes: more than %u", what, len, HOOK_MSG_MAX);
		return NULL;
	}
	json_t *o = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	if (!o) {
		snprintf(err, errlen, "%s: not JSON: %s", what, je.text);
		return NULL;
	}
	if (!json_is_object(o)) {
		snprintf(err, errlen, "%s: not a JSON object", what);
		json_decref(o);
		return NULL;
	}
	json_t *v = json_object_get(o, "version");
	if (!json_is_integer(v) || json_integer_value(v) != HOOK_PROTO_VERSION) {
		snprintf(err, errlen, "%s: version is not %d", what, HOOK_PROTO_VERSION);
		json_decref(o);
		return NULL;
	}
	return o;
}

/* Copies the string member key of o (absent: "" when optional) into out. */
static bool take_string(json_t *o, const char *key, bool optional, char *out, size_t size, const char *what,
			char *err, size_t errlen)
{
	json_t *v = json_object_get(o, key);
	out[0] = '\0';
	if (!v && optional)
		return true;
	if (!json_is_string(v)) {
		snprintf(err, errlen, "%s: \"%s\" is %s", what, key, v ? "not a string" : "missing");
		return false;
	}
	if (json_string_length(v) >= size || strlen(json_string_value(v)) != json_string_length(v)) {
		snprintf(err, errlen, "%s: \"%s\" is longer than %zu bytes or holds a NUL", what, key,
			 size - 1);
		return false;
	}
	memcpy(out, json_string_value(v), json_string_length(v) + 1);
	return true;
}

int hook_request_decode(const char *buf, size_t len, struct hook_request *out, char *err, size_t errlen)
{
	struct hook_request r = {0};
	json_t *o = load_object(buf, len, "request", err, errlen);
	if (!o)
		return -EINVAL;
	json_t *pid = json_object_get(o, "pid"), *t = json_object_get(o, "timeout_ms");
	int ret = -EINVAL;
	if (!take_string(o, "id", false, r.id, sizeof(r.id), "request", err, errlen) ||
	    !take_string(o, "netns", true, r.netns, sizeof(r.netns), "request", err, errlen))
		goto out;
	if (!hook_id_valid(r.id)) {
		snprintf(err, errlen, "request: \"id\" is not a container id (1-%d of A-Z a-z 0-9 _ . + -)",
			 HOOK_ID_MAX);
		goto out;
	}
	if (r.netns[0] && !path_valid(r.netns)) {
		snprintf(err, errlen, "request: \"netns\" is not an absolute path of printable characters");
		goto out;
	}
	if (!json_is_integer(pid) || json_integer_value(pid) < 1 || json_integer_value(pid) > 0x3fffffff) {
		snprintf(err, errlen, "request: \"pid\" is not a process id");
		goto out;
	}
	if (!json_is_integer(t) || json_integer_value(t) < 1 || json_integer_value(t) > HOOK_TIMEOUT_MAX_MS) {
		snprintf(err, errlen, "request: \"timeout_ms\" is not in 1..%u", HOOK_TIMEOUT_MAX_MS);
		goto out;
	}
	r.pid = (int)json_integer_value(pid);
	r.timeout_ms = (unsigned)json_integer_value(t);
	*out = r;
	ret = 0;
out:
	json_decref(o);
	return ret;
}

int hook_reply_decode(const char *buf, size_t len, struct hook_reply *out, char *err, size_t errlen)
{
	struct hook_reply r = {0};
	char word[32];
	json_t *o = load_object(buf, len, "reply", err, errlen);
	if (!o)
		return -EINVAL;
	int ret = -EINVAL;
	if (!take_string(o, "result", false, word, sizeof(word), "reply", err, errlen) ||
	    !take_string(o, "endpoint", true, r.endpoint, sizeof(r.endpoint), "reply", err, errlen) ||
	    !take_string(o, "bundle", true, r.bundle, sizeof(r.bundle), "reply", err, errlen) ||
	    !take_string(o, "reason", true, r.reason, sizeof(r.reason), "reply", err, errlen))
		goto out;
	r.result = HOOK_RESULT_COUNT;
	for (int i = 0; i < HOOK_RESULT_COUNT; i++)
		if (strcmp(word, result_words[i]) == 0)
			r.result = i;
	if (r.result == HOOK_RESULT_COUNT) {
		snprintf(err, errlen, "reply: unknown result \"%.32s\"", word);
		goto out;
	}
	*out = r;
	ret = 0;
out:
	json_decref(o);
	return ret;
}

/* ---- the runtime's word ---- */

int hook_state_parse(const char *buf, size_t len, struct hook_state *out, char *err, size_t errlen)
{
	struct hook_state st = {0};
	json_error_t je;
	json_t *o = json_loadb(buf, len, 0, &je);
	int ret = -EINVAL;
	if (!json_is_object(o)) {
		snprintf(err, errlen, "the OCI state on stdin: %s", o ? "not a JSON object" : je.text);
		goto out;
	}
	json_t *pid = json_object_get(o, "pid");
	if (!take_string(o, "id", false, st.id, sizeof(st.id), "the OCI state", err, errlen) ||
	    !take_string(o, "bundle", false, st.bundle, sizeof(st.bundle), "the OCI state", err, errlen))
		goto out;
	if (!hook_id_valid(st.id)) {
		snprintf(err, errlen, "the OCI state: \"id\" is not a container id");
		goto out;
	}
	if (!path_valid(st.bundle)) {
		snprintf(err, errlen, "the OCI state: \"bundle\" is not an absolute path");
		goto out;
	}
	/* createRuntime runs once the container's process exists: without
	 * it there is no namespace to hand over. */
	if (!json_is_integer(pid) || json_integer_value(pid) < 1 || json_integer_value(pid) > 0x3fffffff) {
		snprintf(err, errlen,
			 "the OCI state: no \"pid\" (the hook belongs to the createRuntime stage)");
		goto out;
	}
	st.pid = (int)json_integer_value(pid);
	*out = st;
	ret = 0;
out:
	json_decref(o);
	return ret;
}

int hook_config_netns(const char *buf, size_t len, char path[HOOK_PATH_MAX], char *err, size_t errlen)
{
	json_error_t je;
	json_t *o = json_loadb(buf, len, 0, &je);
	int ret = 0;
	if (!json_is_object(o)) {
		snprintf(err, errlen, "config.json: %s", o ? "not a JSON object" : je.text);
		json_decref(o);
		return -EINVAL;
	}
	json_t *list = json_object_get(json_object_get(o, "linux"), "namespaces"), *ns;
	size_t i;
	path[0] = '\0';
	json_array_foreach (list, i, ns) {
		if (!json_is_string(json_object_get(ns, "type")) ||
		    strcmp(json_string_value(json_object_get(ns, "type")), "network") != 0)
			continue;
		json_t *p = json_object_get(ns, "path");
		if (!p)
			break; /* a new namespace the runtime makes: no path */
		if (!json_is_string(p) || !path_valid(json_string_value(p))) {
			snprintf(err, errlen,
				 "config.json: the network namespace's path is not an absolute path");
			ret = -EINVAL;
			break;
		}
		snprintf(path, HOOK_PATH_MAX, "%s", json_string_value(p));
		ret = 1;
		break;
	}
	json_decref(o);
	return ret;
}
