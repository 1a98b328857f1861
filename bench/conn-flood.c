/* conn-flood: new TCP connections as fast as they go, or at a steady rate,
 * for bench/observe.sh (what logging each accepted connection costs).
 *
 *   conn-flood serve PORT                   accept and close, until killed
 *   conn-flood ADDR PORT COUNT [RATE [PAR]] COUNT connections to ADDR:PORT
 *
 * A client keeps up to PAR (default 64) non-blocking connects in flight,
 * starts at most RATE a second (0 or absent: no pacing, paced every
 * millisecond otherwise), and ends each connection that completed with a
 * reset (SO_LINGER 0), so that no TIME_WAIT holds its port. Prints
 * "connected N failed F in S s (R/s)". IPv4 only. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int serve(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int one = 1, s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0 || setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(s, 4096) < 0) {
		perror("conn-flood serve");
		return 1;
	}
	for (;;) {
		int c = accept(s, NULL, NULL);
		if (c >= 0)
			close(c);
	}
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "serve") == 0)
		return serve(atoi(argv[2]));
	if (argc < 4 || argc > 6) {
		fprintf(stderr, "usage: conn-flood serve PORT | conn-flood ADDR PORT COUNT [RATE [PAR]]\n");
		return 2;
	}
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
	if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
		fprintf(stderr, "conn-flood: %s: not an IPv4 address\n", argv[1]);
		return 2;
	}
	long long count = atoll(argv[3]), rate = argc > 4 ? atoll(argv[4]) : 0;
	int par = argc > 5 ? atoi(argv[5]) : 64;
	if (count <= 0 || rate < 0 || par <= 0) {
		fprintf(stderr, "conn-flood: COUNT > 0, RATE >= 0, PAR > 0\n");
		return 2;
	}
	int ep = epoll_create1(0);
	if (ep < 0) {
		perror("epoll_create1");
		return 1;
	}
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	long long started = 0, connected = 0, failed = 0;
	int inflight = 0;
	double t0 = now_s();
	while (connected + failed < count) {
		/* Start what the rate and PAR allow. */
		long long allowed = rate ? (long long)((now_s() - t0) * (double)rate) + 1 : count;
		while (started < count && started < allowed && inflight < par) {
			int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
			if (s < 0) {
				perror("socket");
				return 1;
			}
			setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			started++;
			if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
				connected++;
				close(s);
				continue;
			}
			if (errno != EINPROGRESS) {
				failed++;
				close(s);
				continue;
			}
			struct epoll_event ev = {.events = EPOLLOUT, .data.fd = s};
			epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
			inflight++;
		}
		struct epoll_event evs[256];
		int n = epoll_wait(ep, evs, 256, 1);
		for (int i = 0; i < n; i++) {
			int s = evs[i].data.fd, err = 0;
			socklen_t len = sizeof(err);
			getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len);
			if (err)
				failed++;
			else
				connected++;
			close(s); /* leaves the epoll set with it */
			inflight--;
		}
	}
	double dt = now_s() - t0;
	printf("connected %lld failed %lld in %.3f s (%.0f/s)\n", connected, failed, dt,
	       dt > 0 ? (double)connected / dt : 0.0);
	return 0;
}
