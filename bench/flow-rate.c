/* flow-rate: new flows into an endpoint as fast as they go, for
 * bench/packet-path.sh. Every packet or connection is a flow conntrack has
 * not seen, so each one walks the endpoint's ingress chain.
 *
 *   flow-rate udp SRC NSRC DST DPORT SECONDS
 *       UDP datagrams from a raw socket, each from its own source (NSRC
 *       addresses from SRC up, every source port 1024-65535 in turn), to
 *       DST:DPORT, for SECONDS. Prints "sent N in S s".
 *   flow-rate tcp-serve ADDR PORT
 *       accepts connections and closes each at once, until killed.
 *   flow-rate tcp SRC NSRC DST PORT SECONDS THREADS
 *       THREADS threads connect to DST:PORT, each from one of the NSRC
 *       addresses from SRC up (they must be the sender's), and reset the
 *       connection at once (no TIME_WAIT), for SECONDS. Prints
 *       "connected N in S s (F failed)".
 *
 * IPv4 or IPv6, as SRC and DST say. The receiver counts what got through
 * (its UDP NoPorts counter, the accepted connections). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <netinet/udp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BURST 64

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, s, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		*len = sizeof(*s4);
		return AF_INET;
	}
	if (inet_pton(AF_INET6, s, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		*len = sizeof(*s6);
		return AF_INET6;
	}
	fprintf(stderr, "flow-rate: \"%s\" is not an address\n", s);
	exit(2);
}

/* The address n after base (the last 32 bits count up). */
static void addr_add(struct sockaddr_storage *ss, uint32_t n)
{
	uint32_t v;

	if (ss->ss_family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

		s4->sin_addr.s_addr = htonl(ntohl(s4->sin_addr.s_addr) + n);
		return;
	}
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

	memcpy(&v, &s6->sin6_addr.s6_addr[12], 4);
	v = htonl(ntohl(v) + n);
	memcpy(&s6->sin6_addr.s6_addr[12], &v, 4);
}

static uint32_t csum_add(uint32_t sum, const void *data, size_t len)
{
	const uint8_t *p = data;

	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		sum += (uint32_t)p[len - 1] << 8;
	return sum;
}

static uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* One datagram: IP header (IPv4 with a checksum the kernel fills in), UDP
 * header and 16 bytes, its UDP checksum right (conntrack checks it). */
struct packet {
	uint8_t buf[80];
	size_t len;
};

static void build_udp(struct packet *pk, int family, const struct sockaddr_storage *src,
		      const struct sockaddr_storage *dst, uint16_t sport, uint16_t dport)
{
	static const char payload[16] = "bulkhead-flows!";
	size_t iplen = family == AF_INET ? sizeof(struct iphdr) : sizeof(struct ip6_hdr);
	struct udphdr *uh = (struct udphdr *)(pk->buf + iplen);
	uint16_t ulen = (uint16_t)(sizeof(*uh) + sizeof(payload));
	uint32_t sum = 0;

	memset(pk->buf, 0, sizeof(pk->buf));
	pk->len = iplen + ulen;
	uh->source = htons(sport);
	uh->dest = htons(dport);
	uh->len = htons(ulen);
	memcpy(uh + 1, payload, sizeof(payload));
	if (family == AF_INET) {
		struct iphdr *ip = (struct iphdr *)pk->buf;
		const struct sockaddr_in *s = (const void *)src, *d = (const void *)dst;

		ip->version = 4;
		ip->ihl = 5;
		ip->ttl = 64;
		ip->protocol = IPPROTO_UDP;
		ip->tot_len = htons((uint16_t)pk->len);
		ip->saddr = s->sin_addr.s_addr;
		ip->daddr = d->sin_addr.s_addr;
		sum = csum_add(sum, &ip->saddr, 8);
	} else {
		struct ip6_hdr *ip = (struct ip6_hdr *)pk->buf;
		const struct sockaddr_in6 *s = (const void *)src, *d = (const void *)dst;

		ip->ip6_flow = htonl(6u << 28);
		ip->ip6_plen = htons(ulen);
		ip->ip6_nxt = IPPROTO_UDP;
		ip->ip6_hlim = 64;
		ip->ip6_src = s->sin6_addr;
		ip->ip6_dst = d->sin6_addr;
		sum = csum_add(sum, &ip->ip6_src, 32);
	}
	sum += IPPROTO_UDP + ulen;
	sum = csum_add(sum, uh, ulen);
	uh->check = htons(csum_fold(sum));
	if (!uh->check)
		uh->check = 0xffff;
}

static int run_udp(char **argv)
{
	struct sockaddr_storage src, dst;
	socklen_t dlen, slen;
	int family = parse_addr(argv[0], &src, &slen);
	long nsrc = atol(argv[1]);
	uint16_t dport = (uint16_t)atoi(argv[3]);
	double seconds = atof(argv[4]);
	struct packet pk[BURST];
	struct iovec iov[BURST];
	struct mmsghdr msgs[BURST];
	long long sent = 0;
	uint32_t a = 0, port = 1024;
	int fd, one = 1;

	if (parse_addr(argv[2], &dst, &dlen) != family || nsrc < 1) {
		fprintf(stderr, "flow-rate: SRC and DST of one family, NSRC >= 1\n");
		return 2;
	}
	fd = socket(family, SOCK_RAW, IPPROTO_RAW);
	if (fd < 0 || (family == AF_INET && setsockopt(fd, IPPROTO_IP, IP_HDRINCL, &one, sizeof(one)) < 0)) {
		perror("flow-rate: raw socket");
		return 1;
	}
	for (int i = 0; i < BURST; i++)
		msgs[i] = (struct mmsghdr){
		    .msg_hdr = {.msg_name = &dst, .msg_namelen = dlen, .msg_iov = &iov[i], .msg_iovlen = 1}};
	double start = now_s(), end = start + seconds;
	while (now_s() < end) {
		for (int i = 0; i < BURST; i++) {
			struct sockaddr_storage s = src;

			addr_add(&s, a);
			build_udp(&pk[i], family, &s, &dst, (uint16_t)port, dport);
			iov[i] = (struct iovec){pk[i].buf, pk[i].len};
			if (++port > 65535) {
				port = 1024;
				a = (uint32_t)((a + 1) % (uint32_t)nsrc);
			}
		}
		int r = sendmmsg(fd, msgs, BURST, 0);
		if (r > 0)
			sent += r;
		else if (r < 0 && errno != EINTR && errno != ENOBUFS && errno != EAGAIN && errno != EPERM) {
			perror("flow-rate: send");
			return 1;
		}
	}
	double took = now_s() - start;
	printf("sent %lld in %.3f s\n", sent, took);
	return 0;
}

static int run_tcp_serve(char **argv)
{
	struct sockaddr_storage a;
	socklen_t len;
	int family = parse_addr(argv[0], &a, &len), one = 1;
	int fd = socket(family, SOCK_STREAM, 0);

	((struct sockaddr_in *)&a)->sin_port = htons((uint16_t)atoi(argv[1]));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, len) < 0 || listen(fd, 4096) < 0) {
		perror("flow-rate: listen");
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		int c = accept(fd, NULL, NULL);

		if (c >= 0)
			close(c);
	}
}

struct tcp_client {
	struct sockaddr_storage src, dst;
	socklen_t len;
	double end;
	long long ok, failed;
};

static void *tcp_client_run(void *arg)
{
	struct tcp_client *t = arg;
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	while (now_s() < t->end) {
		int fd = socket(t->dst.ss_family, SOCK_STREAM, 0);

		if (fd < 0) {
			t->failed++;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		if (bind(fd, (struct sockaddr *)&t->src, t->len) == 0 &&
		    connect(fd, (struct sockaddr *)&t->dst, t->len) == 0)
			t->ok++;
		else
			t->failed++;
		close(fd); /* a reset: no TIME_WAIT to run out of ports */
	}
	return NULL;
}

static int run_tcp(char **argv)
{
	struct sockaddr_storage src, dst;
	socklen_t len, dlen;
	int family = parse_addr(argv[0], &src, &len);
	long nsrc = atol(argv[1]), threads = atol(argv[5]);
	double seconds = atof(argv[4]);
	long long ok = 0, failed = 0;

	if (parse_addr(argv[2], &dst, &dlen) != family || nsrc < 1 || threads < 1 || threads > 64) {
		fprintf(stderr, "flow-rate: SRC and DST of one family, NSRC >= 1, 1-64 threads\n");
		return 2;
	}
	((struct sockaddr_in *)&dst)->sin_port = htons((uint16_t)atoi(argv[3]));
	struct tcp_client *t = calloc((size_t)threads, sizeof(*t));
	pthread_t *th = calloc((size_t)threads, sizeof(*th));
	double start = now_s();

	for (long i = 0; i < threads; i++) {
		t[i].src = src;
		addr_add(&t[i].src, (uint32_t)(i % nsrc));
		t[i].dst = dst;
		t[i].len = len;
		t[i].end = start + seconds;
		pthread_create(&th[i], NULL, tcp_client_run, &t[i]);
	}
	for (long i = 0; i < threads; i++) {
		pthread_join(th[i], NULL);
		ok += t[i].ok;
		failed += t[i].failed;
	}
	printf("connected %lld in %.3f s (%lld failed)\n", ok, now_s() - start, failed);
	free(t);
	free(th);
	return 0;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc == 7 && strcmp(argv[1], "udp") == 0)
		return run_udp(argv + 2);
	if (argc == 4 && strcmp(argv[1], "tcp-serve") == 0)
		return run_tcp_serve(argv + 2);
	if (argc == 8 && strcmp(argv[1], "tcp") == 0)
		return run_tcp(argv + 2);
	fprintf(stderr, "usage: flow-rate udp SRC NSRC DST DPORT SECONDS\n"
			"       flow-rate tcp-serve ADDR PORT\n"
			"       flow-rate tcp SRC NSRC DST PORT SECONDS THREADS\n");
	return 2;
}
