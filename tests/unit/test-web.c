/* The controller's page (controller/web.h): the port filter as the page
 * and the API take it, and the assets built into the binary. */
#include <errno.h>
#include <string.h>

#include "web.h"
#include "test.h"

static struct flow_port port(const char *s, int *r)
{
	struct flow_port p;
	*r = web_port_parse(s, &p);
	return p;
}

TEST(ports_protocols_ranges_and_icmp_types)
{
	int r;
	struct flow_port p = port("5432", &r);
	CHECK(r == 0 && p.set && !p.proto && p.lo == 5432 && p.hi == 5432 && p.icmp_type == -1);
	p = port("tcp/5432", &r);
	CHECK(r == 0 && p.proto && strcmp(p.proto, "tcp") == 0 && p.lo == 5432 && p.hi == 5432);
	p = port("udp/8000-8100", &r);
	CHECK(r == 0 && strcmp(p.proto, "udp") == 0 && p.lo == 8000 && p.hi == 8100);
	p = port("sctp", &r);
	CHECK(r == 0 && strcmp(p.proto, "sctp") == 0 && p.lo == 0 && p.hi == 65535);
	p = port("icmp/8", &r);
	CHECK(r == 0 && strcmp(p.proto, "icmp") == 0 && p.icmp_type == 8 && p.icmp_code == -1);
	p = port("icmpv6/128/0", &r);
	CHECK(r == 0 && strcmp(p.proto, "icmpv6") == 0 && p.icmp_type == 128 && p.icmp_code == 0);
	p = port("0", &r);
	CHECK(r == 0 && p.lo == 0 && p.hi == 0);
	p = port("65535", &r);
	CHECK(r == 0 && p.lo == 65535);
}

TEST(bad_ports_are_refused)
{
	static const char *const bad[] = {
	    "",		  "65536",    "tcp/",	      "tcp/80-",   "tcp/90-80", "tcp/8/0",	"icmp/256",
	    "icmp/8/0/1", "icmp/8-9", "http",	      "TCP/80",	   "tcp/80 ",	"-1",		"tcp/+80",
	    "1e3",	  "tcp//80",  "000000000080", "udp/99999", "/80",	"tcp/80-90-100"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		int r;
		port(bad[i], &r);
		if (r != -EINVAL)
			fprintf(stderr, "  accepted \"%s\"\n", bad[i]);
		CHECK(r == -EINVAL);
	}
}

TEST(the_page_is_built_in)
{
	bool index = false, js = false, css = false;
	for (size_t i = 0; i < web_n_assets; i++) {
		const struct web_asset *a = &web_assets[i];
		CHECK(a->len > 100 && a->path[0] == '/');
		if (strcmp(a->path, "/index.html") == 0)
			index =
			    strncmp(a->type, "text/html", 9) == 0 && memmem(a->data, a->len, "/app.js", 7);
		js |= strcmp(a->path, "/app.js") == 0 && strncmp(a->type, "text/javascript", 15) == 0;
		css |= strcmp(a->path, "/app.css") == 0;
	}
	CHECK(index && js && css);
}

int main(void)
{
	return test_main();
}
