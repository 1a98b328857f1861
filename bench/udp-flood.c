/* udp-flood: a known number of UDP datagrams at a steady rate, for the
 * denied-flow tests and the NFLOG ingest benchmark.
 *
 *   udp-flood ADDR PORT COUNT [RATE_PER_S]
 *
 * Sends COUNT datagrams of 16 bytes to ADDR:PORT (IPv4 or IPv6), RATE_PER_S
 * per second (0 or absent: as fast as it can), paced every millisecond.
 * A datagram the local firewall refuses (EPERM: dropped by an egress rule)
 * was still an attempt and counts as sent. Prints "sent N in S s (R/s)". */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
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
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc < 4 || argc > 5) {
		fprintf(stderr, "usage: udp-flood ADDR PORT COUNT [RATE_PER_S]\n");
		return 2;
	}
	struct sockaddr_storage ss = {0};
	socklen_t sl;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	int port = atoi(argv[2]);
	long long count = atoll(argv[3]);
	double rate = argc == 5 ? atof(argv[4]) : 0;
	if (inet_pton(AF_INET, argv[1], &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		sl = sizeof(*s4);
	} else if (inet_pton(AF_INET6, argv[1], &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		sl = sizeof(*s6);
	} else {
		fprintf(stderr, "udp-flood: \"%s\" is not an address\n", argv[1]);
		return 2;
	}
	int fd = socket(ss.ss_family, SOCK_DGRAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&ss, sl) < 0) {
		perror("udp-flood: socket");
		return 1;
	}
	char payload[16] = "bulkhead-flood";
	struct iovec iov = {payload, sizeof(payload)};
	struct mmsghdr msgs[BURST];
	for (int i = 0; i < BURST; i++)
		msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov, .msg_iovlen = 1}};

	long long sent = 0;
	double start = now_s();
	while (sent < count) {
		/* Paced: as many as the rate allows by now, in bursts. */
		long long due = rate > 0 ? (long long)((now_s() - start) * rate) + 1 : count;
		if (due > count)
			due = count;
		if (sent >= due) {
			struct timespec ts = {0, 200000};
			nanosleep(&ts, NULL);
			continue;
		}
		int n = due - sent > BURST ? BURST : (int)(due - sent);
		int r = sendmmsg(fd, msgs, n, 0);
		if (r > 0) {
			sent += r;
		} else if (r < 0 && errno == EPERM) {
			sent++; /* refused by our own egress rule: one attempt */
		} else if (r < 0 && errno != EINTR && errno != ENOBUFS && errno != EAGAIN) {
			perror("udp-flood: send");
			return 1;
		}
	}
	double took = now_s() - start;
	printf("sent %lld in %.3f s (%.0f/s)\n", sent, took, took > 0 ? sent / took : 0);
	return 0;
}
