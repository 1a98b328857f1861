/* Escaping peer text for terminals and logs (see escape.h). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/escape.h"

/* The longest escape of one character: "\uHHHH". */
#define ESCAPE_ONE_MAX 7

/* Length of the valid UTF-8 sequence at s (2-4), its code point in *cp;
 * 0 when the bytes there are not one (overlong, surrogate, past U+10FFFF,
 * cut short). */
static size_t utf8_sequence(const unsigned char *s, uint32_t *cp)
{
	size_t n;
	uint32_t c, min;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2, c = s[0] & 0x1f, min = 0x80;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 3, c = s[0] & 0x0f, min = 0x800;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4, c = s[0] & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80) /* also stops at the terminating NUL */
			return 0;
		c = c << 6 | (s[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return n;
}

/* Code points that a terminal acts on or that change how the text around
 * them reads: C1 controls, zero-width and joiner characters, bidi marks,
 * embeddings, overrides and isolates, the line and paragraph separators,
 * the byte order mark. */
static bool hidden_code_point(uint32_t c)
{
	return (c >= 0x80 && c <= 0x9f) || (c >= 0x200b && c <= 0x200f) || (c >= 0x2028 && c <= 0x202e) ||
	       (c >= 0x2060 && c <= 0x206f) || c == 0xfeff;
}

/* The escape (or the bytes) of the character at s into out (NUL-ended);
 * returns how many bytes of s it stands for. */
static size_t escape_one(const unsigned char *s, char out[ESCAPE_ONE_MAX + 1])
{
	uint32_t cp;
	size_t n;
	if (*s == '\\') {
		strcpy(out, "\\\\");
		return 1;
	}
	if (*s == '\n' || *s == '\t' || *s == '\r') {
		snprintf(out, ESCAPE_ONE_MAX + 1, "\\%c", *s == '\n' ? 'n' : *s == '\t' ? 't' : 'r');
		return 1;
	}
	if (*s >= 0x20 && *s < 0x7f) {
		out[0] = (char)*s;
		out[1] = '\0';
		return 1;
	}
	if (*s >= 0x80 && (n = utf8_sequence(s, &cp)) > 0) {
		if (hidden_code_point(cp)) {
			snprintf(out, ESCAPE_ONE_MAX + 1, "\\u%04x",
				 (unsigned)(cp & 0xffff)); /* all below U+10000 */
		} else {
			memcpy(out, s, n);
			out[n] = '\0';
		}
		return n;
	}
	snprintf(out, ESCAPE_ONE_MAX + 1, "\\x%02x", *s);
	return 1;
}

/* How long s is escaped. */
static size_t escaped_len(const unsigned char *p)
{
	size_t len = 0;
	while (*p) {
		char one[ESCAPE_ONE_MAX + 1];
		p += escape_one(p, one);
		len += strlen(one);
	}
	return len;
}

const char *escape_text(char *buf, size_t size, const char *s)
{
	static const char cut[] = "...";
	if (!s)
		s = "(null)";
	const unsigned char *p = (const unsigned char *)s;
	/* Cut only what does not fit, and then leave room for the mark. */
	size_t room = escaped_len(p) < size ? size - 1 : size - sizeof(cut);
	size_t len = 0;
	while (*p) {
		char one[ESCAPE_ONE_MAX + 1];
		size_t used = escape_one(p, one), n = strlen(one);
		if (len + n > room) {
			memcpy(buf + len, cut, sizeof(cut) - 1);
			len += sizeof(cut) - 1;
			break;
		}
		memcpy(buf + len, one, n);
		len += n;
		p += used;
	}
	buf[len] = '\0';
	return buf;
}

char *escape_dup(const char *s)
{
	if (!s)
		s = "(null)";
	/* Every byte escapes to at most 4 bytes ("\xHH"; "\uHHHH" stands for
	 * 2 or 3). */
	size_t size = strlen(s) * 4 + 1;
	char *buf = malloc(size);
	return buf ? (char *)escape_text(buf, size, s) : NULL;
}
