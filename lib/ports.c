/* Port and protocol matches: "tcp", "tcp/80", "udp/8000-8100", "icmp/8",
 * "icmpv6/128/0", and named ports "tcp/http". */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "bulkhead/policy.h"

static bool proto_is_icmp(uint8_t proto)
{
	return proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6;
}

/* Decimal without sign or leading zeros, up to max; advances *s. -EINVAL
 * when no digit, -EILSEQ for a leading zero, -ERANGE above max. */
static int parse_number(const char **s, unsigned max, unsigned *out)
{
	const char *p = *s;
	unsigned v = 0;
	if (*p < '0' || *p > '9')
		return -EINVAL;
	if (p[0] == '0' && p[1] >= '0' && p[1] <= '9')
		return -EILSEQ;
	for (; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (unsigned)(*p - '0');
		if (v > max)
			return -ERANGE;
	}
	*s = p;
	*out = v;
	return 0;
}

/* After "PROTO/": a name rather than a number, a range or an ICMP
 * type/code when it holds anything but digits, '-' and '/' (Kubernetes: a
 * port is a number or a name, and a name has a letter). */
static bool port_text_is_name(const char *p)
{
	return p[strspn(p, "0123456789-/")] != '\0';
}

/* "8000-http": digits, then '-': the shape of a range, with a name for
 * its high end. Refused rather than read as the name "8000-http". */
static bool port_text_is_range_with_name(const char *p)
{
	size_t digits = strspn(p, "0123456789");
	return digits > 0 && p[digits] == '-';
}

int port_match_parse(const char *s, struct port_match *out, const char **why)
{
	const char *slash = strchr(s, '/');
	size_t nlen = slash ? (size_t)(slash - s) : strlen(s);
	struct port_match m = {.lo = 0, .hi = 65535, .icmp_type = -1, .icmp_code = -1};
	const char *ignored;
	if (!proto_lookup(s, nlen, &m.proto)) {
		*why = !slash && named_port_name_valid(s, &ignored)
			   ? "a named port needs its protocol: tcp/NAME, udp/NAME or sctp/NAME"
			   : "unknown protocol (expected tcp, udp, sctp, icmp or icmpv6)";
		return -EINVAL;
	}
	if (!slash) {
		*out = m;
		return 0;
	}

	const char *p = slash + 1;
	unsigned a, b;
	int r;
	if (port_text_is_name(p)) {
		if (proto_is_icmp(m.proto)) {
			*why = "a named port is tcp/NAME, udp/NAME or sctp/NAME (ICMP has types, not "
			       "ports)";
			return -EINVAL;
		}
		if (port_text_is_range_with_name(p)) {
			*why = "a port range is LOW-HIGH in numbers; a named port stands alone";
			return -EINVAL;
		}
		if (!named_port_name_valid(p, why))
			return -EINVAL;
		/* lo = hi = 0 matches no packet, should a reader miss the name. */
		m.lo = m.hi = 0;
		m.name = p;
		*out = m;
		return 0;
	}
	if (proto_is_icmp(m.proto)) {
		r = parse_number(&p, 255, &a);
		if (r < 0) {
			*why = r == -ERANGE   ? "ICMP type out of range (0-255)"
			       : r == -EILSEQ ? "number with a leading zero"
					      : "expected an ICMP type";
			return -EINVAL;
		}
		m.icmp_type = (int16_t)a;
		if (*p == '/') {
			p++;
			r = parse_number(&p, 255, &b);
			if (r < 0) {
				*why = r == -ERANGE   ? "ICMP code out of range (0-255)"
				       : r == -EILSEQ ? "number with a leading zero"
						      : "expected an ICMP code";
				return -EINVAL;
			}
			m.icmp_code = (int16_t)b;
		}
		if (*p) {
			*why = "expected icmp, icmp/TYPE or icmp/TYPE/CODE";
			return -EINVAL;
		}
		*out = m;
		return 0;
	}

	r = parse_number(&p, 65535, &a);
	if (r < 0 || a == 0) {
		*why = r == -EINVAL   ? "expected a port number"
		       : r == -EILSEQ ? "number with a leading zero"
				      : "port out of range";
		return -EINVAL;
	}
	b = a;
	if (*p == '-') {
		p++;
		r = parse_number(&p, 65535, &b);
		if (r < 0 || b == 0) {
			*why = r == -EINVAL   ? "expected a port number after '-'"
			       : r == -EILSEQ ? "number with a leading zero"
					      : "port out of range";
			return -EINVAL;
		}
		if (b < a) {
			*why = "port range is backwards (low port greater than high)";
			return -EINVAL;
		}
	}
	if (*p) {
		*why = "expected PROTO, PROTO/PORT or PROTO/LOW-HIGH";
		return -EINVAL;
	}
	m.lo = (uint16_t)a;
	m.hi = (uint16_t)b;
	*out = m;
	return 0;
}

void port_match_format(const struct port_match *p, char *buf, size_t size)
{
	const char *name = proto_name(p->proto);
	if (!name)
		name = "?";
	if (p->name) {
		snprintf(buf, size, "%s/%s", name, p->name);
	} else if (proto_is_icmp(p->proto)) {
		if (p->icmp_type < 0)
			snprintf(buf, size, "%s", name);
		else if (p->icmp_code < 0)
			snprintf(buf, size, "%s/%d", name, p->icmp_type);
		else
			snprintf(buf, size, "%s/%d/%d", name, p->icmp_type, p->icmp_code);
	} else if (p->lo == 0 && p->hi == 65535) {
		snprintf(buf, size, "%s", name);
	} else if (p->lo == p->hi) {
		snprintf(buf, size, "%s/%u", name, p->lo);
	} else {
		snprintf(buf, size, "%s/%u-%u", name, p->lo, p->hi);
	}
}

bool named_port_name_valid(const char *name, const char **why)
{
	size_t len = strlen(name);
	bool letter = false;
	if (len == 0 || len > 15) {
		*why = "a port name is 1-15 characters";
		return false;
	}
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		if (c >= 'a' && c <= 'z') {
			letter = true;
		} else if (c == '-') {
			if (i == 0 || i == len - 1 || name[i - 1] == '-') {
				*why = "a port name neither begins nor ends with '-', nor has \"--\"";
				return false;
			}
		} else if (c < '0' || c > '9') {
			*why = "a port name has only lowercase letters, digits and '-'";
			return false;
		}
	}
	if (!letter) {
		*why = "a port name has at least one letter";
		return false;
	}
	return true;
}

int named_port_parse(const char *s, uint8_t *proto, uint16_t *port, const char **why)
{
	struct port_match m;
	if (port_match_parse(s, &m, why) < 0)
		return -EINVAL;
	if (m.name || proto_is_icmp(m.proto) || m.lo != m.hi || m.lo == 0) {
		*why = "a named port is tcp/N, udp/N or sctp/N";
		return -EINVAL;
	}
	*proto = m.proto;
	*port = m.lo;
	return 0;
}
