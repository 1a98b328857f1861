/* escape: how text that came from a peer (an agent's names, labels, errors
 * and version; what the controller relays of them) reaches a terminal or a
 * log. Control characters (C0, DEL, C1), invalid UTF-8, backslash and the
 * Unicode format characters that reorder or hide text (bidi overrides,
 * zero-width ones) are written as \n, \t, \r, \\, \xHH or \uHHHH; every other
 * byte, printable UTF-8 included, passes unchanged. So a name can neither
 * move the cursor, clear a screen nor start a new log line. */
#pragma once

#include <stddef.h>

/* What a log line shows of one peer string, escapes included. */
#define ESCAPE_BUF 1024

/* s escaped into buf (size >= 8), cut with "..." when it does not fit
 * (never inside an escape); returns buf. NULL reads as "(null)". */
const char *escape_text(char *buf, size_t size, const char *s);
/* The whole of s escaped, malloc()ed; NULL on ENOMEM. */
char *escape_dup(const char *s);

/* For one printf argument: a buffer that lives until the end of the
 * enclosing block (as systemd's FORMAT_TIMESPAN). */
#define ESCAPED(s) escape_text((char[ESCAPE_BUF]){0}, ESCAPE_BUF, (s))
