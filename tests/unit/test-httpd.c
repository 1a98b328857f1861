/* lib/httpd.c: the HTTP server on the loop — answers now and later,
 * methods, the token (header, cookie, the page's /?token=), the Host of a
 * loopback server without one, a stop with requests waiting. A client
 * thread speaks HTTP over loopback while the test runs the loop. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bulkhead/httpd.h"
#include "bulkhead/loop.h"
#include "test.h"

struct server {
	struct loop *loop;
	struct httpd *h;
	struct httpd_request *later; /* answered by the timer */
	struct loop_source *timer;
	int handled;
};

static void handler(void *data, struct httpd_request *r)
{
	struct server *s = data;
	s->handled++;
	const char *path = httpd_path(r);
	if (strcmp(path, "/now") == 0) {
		const char *who = httpd_arg(r, "who");
		char *body;
		if (asprintf(&body, "hello %s", who ? who : "nobody") < 0)
			abort();
		httpd_respond(r, 200, "text/plain", body, strlen(body));
	} else if (strcmp(path, "/later") == 0 || strcmp(path, "/never") == 0) {
		s->later = r; /* answered from the loop, later (or at the stop) */
	} else {
		httpd_respond_error(r, 404, "no such page");
	}
}

static void on_timer(void *data, uint32_t events)
{
	struct server *s = data;
	if (s->later && strcmp(httpd_path(s->later), "/later") == 0) {
		httpd_header(s->later, "X-Test", "late");
		httpd_respond_static(s->later, 200, "text/plain", "later", 5);
		s->later = NULL;
	}
}

struct client {
	uint16_t port;
	const char *requests[8];
	char *replies[8];
	int efd;
	struct loop *loop;
};

/* One request on its own connection; the whole reply. */
static char *exchange(uint16_t port, const char *request)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		return strdup("connect failed");
	if (write(fd, request, strlen(request)) < 0)
		return strdup("write failed");
	char *buf = calloc(1, 65536);
	size_t n = 0;
	ssize_t r;
	while (n < 65535 && (r = read(fd, buf + n, 65535 - n)) > 0)
		n += (size_t)r;
	close(fd);
	return buf;
}

static void *client_main(void *data)
{
	struct client *c = data;
	for (int i = 0; c->requests[i]; i++)
		c->replies[i] = exchange(c->port, c->requests[i]);
	uint64_t one = 1;
	if (write(c->efd, &one, sizeof(one)) < 0)
		abort();
	return NULL;
}

static void on_client_done(void *data, uint32_t events)
{
	loop_quit(data, 0);
}

/* Runs the loop while a client thread sends requests; their replies. */
static void talk(struct server *s, struct client *c)
{
	c->port = httpd_port(s->h);
	c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	struct loop_source *src = loop_add_fd(s->loop, c->efd, EPOLLIN, on_client_done, s->loop);
	pthread_t t;
	pthread_create(&t, NULL, client_main, c);
	loop_run(s->loop);
	pthread_join(t, NULL);
	loop_remove(s->loop, src);
	close(c->efd);
}

static void server_start(struct server *s, const char *token, bool page_token)
{
	*s = (struct server){.loop = loop_new()};
	char *err = NULL;
	int e;
	s->h = httpd_new(
	    s->loop,
	    &(struct httpd_options){
		.listen = "127.0.0.1:0", .token = token, .what = "--http", .page_token = page_token},
	    handler, s, &e, &err);
	CHECK(s->h && !err);
	free(err);
	s->timer = loop_add_timer(s->loop, 30, on_timer, s);
}

static void server_stop(struct server *s)
{
	loop_remove(s->loop, s->timer);
	httpd_free(s->h);
	loop_free(s->loop);
}

static void client_free(struct client *c)
{
	for (int i = 0; i < 8; i++)
		free(c->replies[i]);
}

#define GET(path, extra) "GET " path " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" extra "\r\n"

TEST(answers_now_and_later_from_the_loop_with_the_security_headers)
{
	struct server s;
	server_start(&s, NULL, false);
	struct client c = {
	    .requests = {GET("/now?who=you", ""), GET("/later", ""), GET("/missing", ""),
			 "HEAD /now HTTP/1.1\r\nHost: localhost:80\r\nConnection: close\r\n\r\n"}};
	talk(&s, &c);
	CHECK(strncmp(c.replies[0], "HTTP/1.1 200", 12) == 0);
	CHECK(strstr(c.replies[0], "\r\n\r\nhello you"));
	CHECK(strstr(c.replies[0], "X-Content-Type-Options: nosniff"));
	CHECK(strstr(c.replies[0], "Content-Security-Policy: default-src 'none'; script-src 'self'"));
	CHECK(strstr(c.replies[0], "Cache-Control: no-store"));
	CHECK(strncmp(c.replies[1], "HTTP/1.1 200", 12) == 0);
	CHECK(strstr(c.replies[1], "X-Test: late"));
	CHECK(strstr(c.replies[1], "\r\n\r\nlater"));
	CHECK(strncmp(c.replies[2], "HTTP/1.1 404", 12) == 0);
	CHECK(strstr(c.replies[2], "{\"ok\":false,\"error\":\"no such page\"}"));
	CHECK(strncmp(c.replies[3], "HTTP/1.1 200", 12) == 0 && !strstr(c.replies[3], "hello"));
	CHECK(s.handled == 4);
	client_free(&c);
	server_stop(&s);
}

TEST(only_get_and_head_and_no_body)
{
	struct server s;
	server_start(&s, NULL, false);
	struct client c = {
	    .requests = {
		"POST /now HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
		"DELETE /now HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
		GET("/now", "Content-Length: 3\r\n") "abc",
	    }};
	talk(&s, &c);
	CHECK(strncmp(c.replies[0], "HTTP/1.1 405", 12) == 0 && strstr(c.replies[0], "Allow: GET, HEAD"));
	CHECK(strncmp(c.replies[1], "HTTP/1.1 405", 12) == 0);
	CHECK(strncmp(c.replies[2], "HTTP/1.1 413", 12) == 0);
	CHECK(s.handled == 0);
	client_free(&c);
	server_stop(&s);
}

TEST(without_a_token_the_host_must_be_loopback)
{
	struct server s;
	server_start(&s, NULL, false);
	struct client c = {
	    .requests = {
		"GET /now HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n",
		"GET /now HTTP/1.1\r\nHost: attacker.example:7780\r\nConnection: close\r\n\r\n",
		"GET /now HTTP/1.1\r\nHost: 10.0.0.1:7780\r\nConnection: close\r\n\r\n",
		"GET /now HTTP/1.1\r\nHost: [::1]:7780\r\nConnection: close\r\n\r\n",
		"GET /now HTTP/1.1\r\nHost: 127.0.0.9:1\r\nConnection: close\r\n\r\n",
		"GET /now HTTP/1.1\r\nHost: LOCALHOST\r\nConnection: close\r\n\r\n",
	    }};
	talk(&s, &c);
	CHECK(strncmp(c.replies[0], "HTTP/1.1 403", 12) == 0);
	CHECK(strncmp(c.replies[1], "HTTP/1.1 403", 12) == 0);
	CHECK(strncmp(c.replies[2], "HTTP/1.1 403", 12) == 0);
	CHECK(strncmp(c.replies[3], "HTTP/1.1 200", 12) == 0);
	CHECK(strncmp(c.replies[4], "HTTP/1.1 200", 12) == 0);
	CHECK(strncmp(c.replies[5], "HTTP/1.1 200", 12) == 0);
	CHECK(s.handled == 3);
	client_free(&c);
	server_stop(&s);
}

TEST(a_token_is_asked_of_every_request_by_header_or_cookie)
{
	struct server s;
	server_start(&s, "0123456789abcdef-token", true);
	struct client c = {.requests = {
			       GET("/now", ""),
			       GET("/now", "Authorization: Bearer 0123456789abcdef-tokem\r\n"),
			       GET("/now", "Authorization: Bearer 0123456789abcdef-token\r\n"),
			       GET("/?token=0123456789abcdef-token", ""),
			       GET("/?token=wrong", ""),
			       GET("/now", "Cookie: bulkhead_token=0123456789abcdef-token\r\n"),
			       /* a token opens any Host */
			       "GET /now HTTP/1.1\r\nHost: bulkhead.example\r\nConnection: close\r\n"
			       "Authorization: bearer 0123456789abcdef-token\r\n\r\n",
			   }};
	talk(&s, &c);
	CHECK(strncmp(c.replies[0], "HTTP/1.1 401", 12) == 0);
	CHECK(strstr(c.replies[0], "WWW-Authenticate: Bearer realm=\"bulkhead\""));
	CHECK(strncmp(c.replies[1], "HTTP/1.1 401", 12) == 0);
	CHECK(strncmp(c.replies[2], "HTTP/1.1 200", 12) == 0);
	CHECK(strncmp(c.replies[3], "HTTP/1.1 303", 12) == 0);
	CHECK(strstr(c.replies[3],
		     "Set-Cookie: bulkhead_token=0123456789abcdef-token; HttpOnly; SameSite=Strict"));
	CHECK(strstr(c.replies[3], "Location: /\r\n"));
	CHECK(strncmp(c.replies[4], "HTTP/1.1 401", 12) == 0);
	CHECK(strncmp(c.replies[5], "HTTP/1.1 200", 12) == 0);
	CHECK(strncmp(c.replies[6], "HTTP/1.1 200", 12) == 0);
	CHECK(s.handled == 3);
	client_free(&c);
	server_stop(&s);
}

TEST(stopping_answers_what_waits)
{
	struct server s;
	server_start(&s, NULL, false);
	uint16_t port = httpd_port(s.h);
	/* The request arrives, its handler keeps it, the loop stops. */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	const char *req = GET("/never", "");
	CHECK(write(fd, req, strlen(req)) == (ssize_t)strlen(req));
	for (int i = 0; i < 200 && !s.later; i++) {
		struct loop_source *t = loop_add_timer(s.loop, 5, on_client_done, s.loop);
		loop_run(s.loop);
		loop_remove(s.loop, t);
	}
	CHECK(s.later != NULL);
	server_stop(&s);
	char buf[4096] = "";
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	CHECK(n > 0 && strncmp(buf, "HTTP/1.1 503", 12) == 0);
	close(fd);
}

TEST(listen_addresses_and_what_needs_a_token)
{
	struct sockaddr_storage ss;
	socklen_t len;
	bool lo;
	const char *why;
	CHECK(httpd_listen_parse("127.0.0.1:7780", &ss, &len, &lo, &why) == 0 && lo &&
	      ss.ss_family == AF_INET);
	CHECK(httpd_listen_parse("127.8.9.10:1", &ss, &len, &lo, &why) == 0 && lo);
	CHECK(httpd_listen_parse("[::1]:7780", &ss, &len, &lo, &why) == 0 && lo && ss.ss_family == AF_INET6);
	CHECK(httpd_listen_parse("[::ffff:127.0.0.1]:7780", &ss, &len, &lo, &why) == 0 && lo);
	CHECK(httpd_listen_parse("0.0.0.0:7780", &ss, &len, &lo, &why) == 0 && !lo);
	CHECK(httpd_listen_parse("[::]:7780", &ss, &len, &lo, &why) == 0 && !lo);
	CHECK(httpd_listen_parse("198.18.0.1:0", &ss, &len, &lo, &why) == 0 && !lo);
	CHECK(httpd_listen_parse("localhost:7780", &ss, &len, &lo, &why) == -EINVAL);
	CHECK(httpd_listen_parse("::1:7780", &ss, &len, &lo, &why) == -EINVAL && strstr(why, "brackets"));
	CHECK(httpd_listen_parse("127.0.0.1", &ss, &len, &lo, &why) == -EINVAL);
	CHECK(httpd_listen_parse("127.0.0.1:65536", &ss, &len, &lo, &why) == -EINVAL);
	CHECK(httpd_listen_parse("127.0.0.1:-1", &ss, &len, &lo, &why) == -EINVAL);
	CHECK(httpd_listen_parse("127.0.0.1:", &ss, &len, &lo, &why) == -EINVAL);
	CHECK(httpd_listen_parse(":80", &ss, &len, &lo, &why) == -EINVAL);

	struct loop *l = loop_new();
	char *err = NULL;
	int e = 0;
	CHECK(!httpd_new(l, &(struct httpd_options){.listen = "0.0.0.0:0", .what = "--http"}, handler, NULL,
			 &e, &err));
	CHECK(err &&
	      strstr(err, "--http 0.0.0.0:0: not a loopback address: give a token (--http-token FILE)"));
	free(err);
	/* A port taken: the bind's errno, for the caller to tell apart. */
	struct httpd *first =
	    httpd_new(l, &(struct httpd_options){.listen = "127.0.0.1:0"}, handler, NULL, &e, &err);
	CHECK(first);
	char taken[64];
	snprintf(taken, sizeof(taken), "127.0.0.1:%u", httpd_port(first));
	CHECK(!httpd_new(l, &(struct httpd_options){.listen = taken}, handler, NULL, &e, &err));
	CHECK(e == EADDRINUSE && err && strstr(err, "Address already in use"));
	free(err);
	httpd_free(first);
	loop_free(l);
}

TEST(tokens_are_a_first_line_of_printable_characters)
{
	char *t = NULL;
	const char *why;
	CHECK(httpd_token_parse("0123456789abcdef\n", 17, &t, &why) == 0);
	CHECK_STR(t, "0123456789abcdef");
	free(t);
	CHECK(httpd_token_parse("0123456789abcdef-x \r\nsecond line", 32, &t, &why) == 0);
	CHECK_STR(t, "0123456789abcdef-x");
	free(t);
	CHECK(httpd_token_parse("short\n", 6, &t, &why) == -EINVAL);
	CHECK(httpd_token_parse("0123456789 abcdef\n", 18, &t, &why) == -EINVAL);
	CHECK(httpd_token_parse("0123456789abcdef\x01", 17, &t, &why) == -EINVAL);
	CHECK(httpd_token_parse("", 0, &t, &why) == -EINVAL);
}

int main(void)
{
	return test_main();
}
