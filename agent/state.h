/* state: the agent's files in --state-dir: the cached last bundle (applied
 * at start, before any controller answers) and status.json (what the agent
 * holds, for operators and tests). */
#pragma once

#include <jansson.h>

#include "bulkhead/common.h"

/* Writes text to DIR/NAME atomically (temporary file, fsync, rename). */
BH_MUST_CHECK int state_write(const char *dir, const char *name, const char *text, size_t len);
/* The same without fsync, for what is only informational (status.json):
 * readers still see the old file or the new one whole, and a disk that
 * stalls does not stall the loop; a crash may leave it old or empty. */
BH_MUST_CHECK int state_write_nosync(const char *dir, const char *name, const char *text, size_t len);
/* Reads DIR/NAME (a regular file of at most max bytes) into a malloc()ed,
 * NUL-terminated buffer: fileio_read (fileio.h). 0, -ENOENT when absent,
 * -EFBIG when larger than max, -EINVAL when not a regular file. */
BH_MUST_CHECK int state_read(const char *dir, const char *name, size_t max, char **text, size_t *len);
/* Reads any file the same way (for --bundle). */
BH_MUST_CHECK int state_read_path(const char *path, size_t max, char **text, size_t *len);

#define STATE_BUNDLE   "bundle.json"
#define STATE_STATUS   "status.json"
#define STATE_REVISION "revision"      /* the controller's revision of the cached bundle */
#define STATE_COUNTERS "counters.json" /* rule counters read at a clean exit: the next run's baseline */
