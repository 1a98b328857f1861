/* fileio: the one way a file is read whole (a policy, an inventory, a key,
 * a bundle, the agent's state). Only a regular file of bounded size: a FIFO
 * or a device named where a file is expected is refused at once instead of
 * blocking the reader or feeding it without end. */
#pragma once

#include <stddef.h>

#include "bulkhead/common.h"

/* Reads path, a regular file (symbolic links followed) of at most max
 * bytes, into *text: malloc()ed, owned by the caller, with a NUL after its
 * *len bytes. 0, or a negative errno with *text and *len untouched: open(2)'s
 * (-ENOENT, -EACCES, ...), -EISDIR for a directory, -EINVAL for anything
 * else that is not a regular file (a FIFO, a device, a socket), -EFBIG when
 * it holds more than max bytes (also when it grew past max while read),
 * read(2)'s (-EIO), -ENOMEM. max is below SIZE_MAX / 2. */
BH_MUST_CHECK int fileio_read(const char *path, size_t max, char **text, size_t *len);

/* What fileio_read's error r means, for a message "PATH: ...": its own
 * errors in words ("not a regular file (a FIFO, a device or a socket)"),
 * the rest as strerror() says them. A static string. */
const char *fileio_strerror(int r);
