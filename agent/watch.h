/* watch: tells when a file changes, including by an editor's or a
 * deployment tool's rename over it (the directory is watched, not the
 * inode). The one file watcher of the agent's file sources (--inventory,
 * --bundle). */
#pragma once

#include "bulkhead/common.h"
#include "bulkhead/loop.h"

struct watch;

/* Watches path on loop: calls changed(data) from the loop each time the
 * file may have changed (written, replaced, removed, or events lost).
 * 0 and *out, or negative errno with the reason logged (the file's
 * changes then need a restart). */
BH_MUST_CHECK int watch_new(struct loop *loop, const char *path, void (*changed)(void *data), void *data,
			    struct watch **out);
/* Takes it off its loop. */
void watch_free(struct watch *w);
