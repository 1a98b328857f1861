/* watch: tells when a file changes, including by an editor's or a
 * deployment tool's rename over it (the directory is watched, not the
 * inode). */
#pragma once

#include "bulkhead/common.h"

struct watch;

/* NULL with errno. Add watch_fd() to the loop and call watch_dispatch()
 * when it is readable; it returns true when the file may have changed. */
struct watch *watch_new(void);
void watch_free(struct watch *w);
int watch_fd(const struct watch *w);
/* Watches path; returns a token for watch_dispatch's matches, or < 0. */
BH_MUST_CHECK int watch_add(struct watch *w, const char *path);
/* Reads pending events; sets bit token in *changed for each watched file
 * that was written, replaced or removed. */
void watch_dispatch(struct watch *w, unsigned *changed);
