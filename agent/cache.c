/* The state directory's bundle cache (see cache.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/log.h"
#include "bulkhead/utf8.h"
#include "bundle-file.h"
#include "cache.h"
#include "state.h"

/* A cache that could not be written is tried again this often. */
#define CACHE_RETRY_MS 5000

struct cache {
	char *dir, *node;
	/* What the cache holds. */
	char hash[BUNDLE_HASH_HEX + 1];
	int64_t revision;
	uint64_t serial;
	char *error; /* why the bundle in force is not in it */
	uint64_t retry_ms;
};

struct cache *cache_new(const char *dir, const char *node)
{
	struct cache *c = xcalloc(1, sizeof(*c));
	c->dir = dir ? xstrdup(dir) : NULL;
	c->node = xstrdup(node);
	return c;
}

void cache_free(struct cache *c)
{
	if (!c)
		return;
	free(c->dir);
	free(c->node);
	free(c->error);
	free(c);
}

/* The revision file: "REVISION SERIAL HASH" (or, from older agents,
 * "REVISION" alone). Its serial counts only when HASH is the bundle's. */
static void read_revision(struct cache *c, const struct bundle *b, int64_t *revision, uint64_t *serial)
{
	char *text, hash[BUNDLE_HASH_HEX + 2] = "";
	size_t len;
	long long rev = 0;
	unsigned long long ser = 0;
	*revision = 0;
	*serial = 0;
	if (state_read(c->dir, STATE_REVISION, 256, &text, &len) < 0)
		return;
	int n = sscanf(text, "%lld %llu %65s", &rev, &ser, hash);
	free(text);
	if (n == 1) {
		*revision = rev;
	} else if (n == 3 && strcmp(hash, b->hash) == 0) {
		*revision = rev;
		*serial = ser;
	} else {
		log_warn("%s/%s does not describe the cached bundle %.12s; its revision and age are unknown",
			 c->dir, STATE_REVISION, b->hash);
	}
}

int cache_load(struct cache *c, struct bundle **out, int64_t *revision, uint64_t *serial)
{
	char *text;
	size_t len;
	*out = NULL;
	if (!c->dir)
		return 0;
	int r = state_read(c->dir, STATE_BUNDLE, BUNDLE_FILE_MAX_BYTES, &text, &len);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return log_error_errno(r, "reading cached bundle in %s: %m", c->dir);
	struct bundle *b = bundle_file_decode("cached bundle", c->node, text, len);
	if (!b)
		return -EINVAL;
	read_revision(c, b, revision, serial);
	memcpy(c->hash, b->hash, sizeof(c->hash));
	c->revision = *revision;
	c->serial = *serial;
	*out = b;
	return 0;
}

void cache_store(struct cache *c, const struct bundle *b, int64_t revision, uint64_t serial, uint64_t now_ms)
{
	const char *file = STATE_BUNDLE;
	int r = 0;
	if (!c->dir || !b)
		return;
	if (strcmp(c->hash, b->hash) != 0) {
		char *text = bundle_encode(b, false);
		r = text ? state_write(c->dir, STATE_BUNDLE, text, strlen(text)) : -ENOMEM;
		free(text);
		if (r == 0) {
			memcpy(c->hash, b->hash, sizeof(c->hash));
			c->revision = 0;
			c->serial = 0; /* until the revision file says otherwise */
		}
	}
	if (r == 0) {
		char rev[128];
		snprintf(rev, sizeof(rev), "%lld %llu %s\n", (long long)revision, (unsigned long long)serial,
			 b->hash);
		file = STATE_REVISION;
		r = state_write(c->dir, STATE_REVISION, rev, strlen(rev));
	}
	c->retry_ms = now_ms + CACHE_RETRY_MS;
	if (r < 0) {
		char msg[1024];
		snprintf(
		    msg, sizeof(msg),
		    "bundle %.12s (revision %lld) is enforced but not cached: writing %s/%s: %s; a restart "
		    "without the controller would start from the older cache",
		    b->hash, (long long)revision, c->dir, file, strerror(-r));
		/* The state dir's name may not be UTF-8: the ACK and
		 * status.json, which carry this, must be. */
		char *text = utf8_text(msg);
		if (!text)
			abort();
		if (!c->error || strcmp(c->error, text) != 0)
			log_error("%s", text);
		free(c->error);
		c->error = text;
		return;
	}
	c->revision = revision;
	c->serial = serial;
	if (c->error) {
		log_info("bundle %.12s cached in %s after all", b->hash, c->dir);
		free(c->error);
		c->error = NULL;
	}
}

void cache_retry(struct cache *c, const struct bundle *b, int64_t revision, uint64_t serial, uint64_t now_ms)
{
	if (c->error && now_ms >= c->retry_ms)
		cache_store(c, b, revision, serial, now_ms);
}

const char *cache_error(const struct cache *c)
{
	return c->error;
}

json_t *cache_status(const struct cache *c)
{
	if (!c->dir)
		return NULL;
	return json_pack("{s:s?,s:I,s:s?}", "bundle", c->hash[0] ? c->hash : NULL, "revision",
			 (json_int_t)c->revision, "error", c->error);
}
