/* pathtrust: whether anyone but this user and root can change what a
 * directory path names. Whoever may rename or replace an entry on the way
 * can swap the admin socket (and read the policies sent to it) or a key
 * file; ssh's StrictModes checks the same. */
#pragma once

#include "bulkhead/common.h"

/* 0 when dir and every directory above it, as given and as its symbolic
 * links resolve, is owned by root or the effective user and is writable by
 * no one else (unless sticky, like /tmp). Otherwise a negative errno (-EPERM
 * for a directory others control) with *err a malloc()ed message naming
 * the directory, its owner and mode. */
BH_MUST_CHECK int pathtrust_dir(const char *dir, char **err);
