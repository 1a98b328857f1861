/* UTF-8 checks before strings go into JSON (see utf8.h). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/utf8.h"

/* The length of the well-formed sequence at s, 0 when there is none. */
static size_t utf8_seq(const unsigned char *s)
{
	if (s[0] < 0x80)
		return 1;
	size_t n;
	uint32_t cp, min;
	if ((s[0] & 0xe0) == 0xc0) {
		n = 2, cp = s[0] & 0x1f, min = 0x80;
	} else if ((s[0] & 0xf0) == 0xe0) {
		n = 3, cp = s[0] & 0x0f, min = 0x800;
	} else if ((s[0] & 0xf8) == 0xf0) {
		n = 4, cp = s[0] & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80) /* also stops at the terminating NUL */
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

bool utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		size_t n = utf8_seq(p);
		if (!n)
			return false;
		p += n;
	}
	return true;
}

char *utf8_escape(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	char *out = malloc(strlen(s) * 4 + 1), *o = out;
	if (!out)
		return NULL;
	while (*p) {
		size_t n = utf8_seq(p);
		if (n) {
			memcpy(o, p, n);
			o += n, p += n;
		} else {
			o += sprintf(o, "\\x%02x", *p++);
		}
	}
	*o = '\0';
	return out;
}

void utf8_cut(char *s)
{
	size_t len = strlen(s), lead = len;
	/* A character is at most 4 bytes: its lead and 3 continuation bytes. */
	while (lead > 0 && len - lead < 3 && ((unsigned char)s[lead - 1] & 0xc0) == 0x80)
		lead--;
	unsigned char c = lead ? (unsigned char)s[lead - 1] : 0;
	if (c < 0xc2 || c > 0xf4) /* not a lead byte */
		return;
	size_t want = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
	if (len - (lead - 1) < want)
		s[lead - 1] = '\0';
}

char *utf8_text(const char *s)
{
	char *t = strdup(s);
	if (!t)
		return NULL;
	utf8_cut(t);
	if (utf8_valid(t))
		return t;
	char *escaped = utf8_escape(t);
	free(t);
	return escaped;
}
