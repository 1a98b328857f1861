/* CURVE key files, as `bulkhead keygen DIR` writes them: DIR/public.key
 * (0644) and DIR/secret.key (0600), each one Z85 key of 40 characters and a
 * newline. The controller's allow-list is a directory of NODE.key files,
 * each an agent's public key. */
#pragma once

#include <stdbool.h>

#include "bulkhead/common.h"

#define KEY_Z85_LEN	40
#define KEY_PUBLIC_FILE "public.key"
#define KEY_SECRET_FILE "secret.key"

/* Reads one Z85 key (optional trailing whitespace) from path, checked with
 * zmq_z85_decode. 0, or a negative errno (-EINVAL for a malformed key) with
 * *err a malloc()ed message naming the file and the problem. */
BH_MUST_CHECK int keys_read(const char *path, char out[KEY_Z85_LEN + 1], char **err);
/* Reads DIR/public.key and DIR/secret.key; refuses a secret key file that
 * group or others may read. */
BH_MUST_CHECK int keys_read_pair(const char *dir, char pub[KEY_Z85_LEN + 1], char sec[KEY_Z85_LEN + 1],
				 char **err);
/* Generates a pair into dir (made 0700 when missing); refuses to replace
 * existing keys unless force. */
BH_MUST_CHECK int keys_write_pair(const char *dir, bool force, char pub_out[KEY_Z85_LEN + 1], char **err);
