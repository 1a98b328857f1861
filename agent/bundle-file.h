/* bundle-file: --bundle FILE as a bundle source (source.h): a compiled
 * bundle (bulkhead policy compile), read at start and again whenever it
 * changes. What does not decode, or is for another node, is refused and
 * the bundle in force stays. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "bulkhead/bundle.h"
#include "bulkhead/common.h"
#include "bulkhead/loop.h"
#include "source.h"

/* A bundle is outside input: refuse absurd sizes before reading them. */
#define BUNDLE_FILE_MAX_BYTES (256u << 20)

struct bundle_file;

/* Borrows intake/core for its lifetime. */
struct bundle_file *bundle_file_new(const char *path, const char *node, const struct bundle_intake *intake,
				    void *core);
void bundle_file_free(struct bundle_file *f); /* accepts NULL */

/* Reads the file and hands what it holds to the core. 0, or a negative
 * errno when it could not be read or was refused (logged, and told to the
 * core). */
BH_MUST_CHECK int bundle_file_read(struct bundle_file *f);
/* Reads it again whenever it changes. 0 or a negative errno (logged). */
int bundle_file_watch(struct bundle_file *f, struct loop *loop);

/* Decodes text (taken: freed) from source as a bundle for node: the
 * bundle, or NULL after logging why it was refused. */
struct bundle *bundle_file_decode(const char *source, const char *node, char *text, size_t len);
