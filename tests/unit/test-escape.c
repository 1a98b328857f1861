/* Escaping peer text (escape.h): what a terminal or a log line would act on
 * is written out, everything else passes unchanged, and a cut never splits
 * an escape. */
#include "bulkhead/escape.h"
#include "test.h"

TEST(escape_printable_ascii_unchanged)
{
	CHECK_STR(ESCAPED("node-a/web-1 (web) \"quoted\" 198.18.0.1"), "node-a/web-1 (web) \"quoted\" 198.18.0.1");
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
	CHECK_STR(ESCAPED("\xc2\x9b" "2J"), "\\u009b2J");
	CHECK_STR(ESCAPED("abc\xe2\x80\xae" "def"), "abc\\u202edef");
	CHECK_STR(ESCAPED("a\xe2\x80\x8b" "b"), "a\\u200bb");
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
	CHECK_STR(escape_text(buf, sizeof(buf), "abcd\x1b" "efgh"), "abcd...");
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

int main(void)
{
	return test_main();
}
