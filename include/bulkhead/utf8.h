/* UTF-8 as JSON carries it: jansson refuses any other string, and a NULL
 * from json_pack is no error message. Strings from the command line, file
 * names and old state are checked (or shown escaped) before they go into
 * JSON. */
#pragma once

#include <stdbool.h>

/* Whether s is well-formed UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing past U+10FFFF), as jansson checks it. */
bool utf8_valid(const char *s);

/* A copy of s that is valid UTF-8: every byte that is not part of a
 * well-formed sequence reads \xNN. malloc()ed (caller frees); NULL when
 * out of memory. */
char *utf8_escape(const char *s);

/* Cuts s back to where its last character begins when that character is
 * incomplete, as in a string snprintf() cut short; anything else is left
 * as it is. */
void utf8_cut(char *s);

/* A copy of s that JSON can carry, for a message that may hold text cut
 * short or from outside: utf8_cut(), then utf8_escape() when anything is
 * still not UTF-8. malloc()ed; NULL when out of memory. */
char *utf8_text(const char *s);
