/* Escaping peer text (escape.h): what a terminal or a log line would act on
 * is written out, everything else passes unchanged, and a cut never splits
 * an escape; a string cut inside a character is cut back to a whole one. */
#include <stdio.h>
#include <string.h>

#include "bulkhead/common.h"
#include "bulkhead/escape.h"
#include "bulkhead/utf8.h"
#include "test.h"

TEST(escape_printable_ascii_unchanged)
{
	CHECK_STR(ESCAPED("node-a/web-1 (web) \"quoted\" 198.18.0.1"),
		  "node-a/web-1 (web) \"quoted\" 198.18.0.1");
	CHECK_STR(ESCAPED(""), "");
	CHECK_STR(ESCAPED(NULL), "(null)");
}

TEST(escape_controls)
{
	CHECK_STR(ESCAPED("a\x1b[2Jb"), "a\\x1b[2Jb");
	CHECK_STR(ESCAPED("line\nfake: error: x\r\t"), "line\\nfake: error: x\\r\\t");
	CHECK_STR(ESCAPED("\x01\x7f"), "\\x01\\x7f");
	CHECK_STR(ESCAPED("back\\slash"), "back\\\\slash");
}

TEST(escape_utf8)
{
	/* Printable UTF-8 passes; C1 controls (CSI is U+009B), bidi
	 * overrides and zero-width characters do not. */
	CHECK_STR(ESCAPED("caf\xc3\xa9 \xe2\x86\x92"), "caf\xc3\xa9 \xe2\x86\x92");
	CHECK_STR(ESCAPED("\xc2\x9b"
			  "2J"),
		  "\\u009b2J");
	CHECK_STR(ESCAPED("abc\xe2\x80\xae"
			  "def"),
		  "abc\\u202edef");
	CHECK_STR(ESCAPED("a\xe2\x80\x8b"
			  "b"),
		  "a\\u200bb");
	CHECK_STR(ESCAPED("\xef\xbb\xbf"), "\\ufeff");
}

TEST(escape_invalid_utf8)
{
	CHECK_STR(ESCAPED("\xff\xfe"), "\\xff\\xfe");
	CHECK_STR(ESCAPED("\xc0\xaf"), "\\xc0\\xaf");			/* overlong '/' */
	CHECK_STR(ESCAPED("\xed\xa0\x80"), "\\xed\\xa0\\x80");		/* a surrogate */
	CHECK_STR(ESCAPED("\xe2\x86"), "\\xe2\\x86");			/* cut short */
	CHECK_STR(ESCAPED("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80"); /* past U+10FFFF */
}

TEST(escape_cut_keeps_escapes_whole)
{
	char buf[10];
	CHECK_STR(escape_text(buf, sizeof(buf), "abcdefghi"), "abcdefghi");
	CHECK_STR(escape_text(buf, sizeof(buf), "abcdefghij"), "abcdef...");
	CHECK_STR(escape_text(buf, sizeof(buf),
			      "abcd\x1b"
			      "efgh"),
		  "abcd...");
	CHECK_STR(escape_text(buf, sizeof(buf), "ab\x1b"), "ab\\x1b");
}

TEST(escape_dup_is_whole)
{
	char long_text[3000];
	memset(long_text, '\x1b', sizeof(long_text) - 1);
	long_text[sizeof(long_text) - 1] = '\0';
	char *e = escape_dup(long_text);
	CHECK(e && strlen(e) == 4 * (sizeof(long_text) - 1) && !strchr(e, '\x1b'));
	free(e);
	e = escape_dup("\xc2\x9b");
	CHECK_STR(e, "\\u009b");
	free(e);
}

/* A message snprintf cut inside a character goes into JSON whole (the
 * agent's ACK and status.json, where json_pack refuses a broken string). */
TEST(utf8_cut_drops_an_incomplete_last_character)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"abc", "abc"},
	    {"", ""},
	    {"ab\xc3", "ab"},
	    {"ab\xc3\xa9", "ab\xc3\xa9"},
	    {"x\xe2\x82", "x"},
	    {"x\xe2\x82\xac", "x\xe2\x82\xac"},
	    {"\xf0\x9f\x98", ""},
	    {"y\xf0\x9f\x98\x80", "y\xf0\x9f\x98\x80"},
	    {"bad\xff", "bad\xff"}, /* not a cut: left for escaping */
	    {"\x80\x80\x80\x80", "\x80\x80\x80\x80"},
	};
	for (size_t i = 0; i < BH_ARRAY_SIZE(cases); i++) {
		char buf[32];
		snprintf(buf, sizeof(buf), "%s", cases[i].in);
		utf8_cut(buf);
		CHECK_STR(buf, cases[i].out);
	}
	/* What is left of a long message cut inside an é. */
	const char *long_msg = "bundle rejected: /\xc3\xa9\xc3\xa9\xc3\xa9";
	char msg[22];
	memcpy(msg, long_msg, sizeof(msg) - 1); /* as snprintf cuts it */
	msg[sizeof(msg) - 1] = '\0';
	CHECK(!utf8_valid(msg));
	utf8_cut(msg);
	CHECK_STR(msg, "bundle rejected: /\xc3\xa9");
}

int main(void)
{
	return test_main();
}
