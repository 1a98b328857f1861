/* httpd: a small HTTP server on a daemon's loop, for the controller's
 * page, JSON API and /metrics and the agent's /metrics. libmicrohttpd in
 * its "external" mode: its epoll fd is one more source of the loop and a
 * timer runs its timeouts, so every callback runs on the loop's thread
 * and may read what the loop owns; no thread of its own. GET and HEAD
 * only. Each request goes to one handler, which answers at once or later
 * (from the loop's thread, when a worker is done): meanwhile the
 * connection is suspended and nothing waits in the loop.
 *
 * Access: a loopback address may be served without a token; then the
 * Host header must name a loopback host (127.0.0.0/8, ::1, localhost), so
 * that a page the operator's browser loads from elsewhere cannot read the
 * API through a DNS name rebound to 127.0.0.1. Any other address needs a
 * token, and every request carries it: "Authorization: Bearer TOKEN", or
 * the cookie a browser gets from "/?token=TOKEN" (with page_token).
 * Tokens are compared in constant time. Plain HTTP: the token protects
 * against whoever may connect, not against whoever can read the traffic
 * (put TLS in front across networks you do not trust).
 *
 * Bounds: 64 connections (16 per client address), 32 KiB of request
 * line and headers each, 30 s idle. Every response says nosniff, no-store,
 * no framing and no referrer, with a Content-Security-Policy that allows
 * only the server's own scripts, styles and fetches. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <jansson.h>

#include "bulkhead/loop.h"

struct httpd_options {
	const char *listen; /* "ADDR:PORT": 127.0.0.1:7780, [::1]:7780, 0.0.0.0:9101; port 0: any */
	const char *token;  /* NULL: none, which only a loopback address allows */
	const char *what;   /* the option, for messages: "--http" */
	bool page_token;    /* GET /?token=TOKEN sets the cookie and redirects to / */
};

/* "ADDR:PORT" (an IPv4 address, or an IPv6 one in brackets; port
 * 0-65535) as a socket address; *loopback: 127.0.0.0/8 or ::1 (also as
 * ::ffff:127.x). 0, or -EINVAL with *why set. */
int httpd_listen_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len, bool *loopback,
		       const char **why);

/* A token as read from a --*-token FILE: its first line, which must be 16
 * to 4096 printable ASCII characters without spaces. 0 and *out
 * (malloc()ed), or -EINVAL with *why. */
int httpd_token_parse(const char *text, size_t len, char **out, const char **why);

struct httpd;
struct httpd_request;
typedef void (*httpd_fn)(void *data, struct httpd_request *r);

/* Binds and listens (refusing a non-loopback address without a token),
 * and joins loop l; fn(data, r) gets every request that passed the
 * checks. NULL with *err (malloc()ed; *errno_out the bind's errno, so
 * that the caller may tell EADDRINUSE apart). Borrows o's strings only
 * during the call. */
struct httpd *httpd_new(struct loop *l, const struct httpd_options *o, httpd_fn fn, void *data,
			int *errno_out, char **err);
/* Answers every request still waiting with 503, then stops. A request
 * handed out must not be used after. Accepts NULL. */
void httpd_free(struct httpd *h);
/* The port it listens on (the one the kernel chose for port 0). */
uint16_t httpd_port(const struct httpd *h);

/* The request's path ("/api/flows"), without the query. */
const char *httpd_path(const struct httpd_request *r);
/* A query argument's value, or NULL. Only while the handler runs. */
const char *httpd_arg(const struct httpd_request *r, const char *key);

/* Adds a response header (before one of the calls below). */
void httpd_header(struct httpd_request *r, const char *name, const char *value);
/* Answers r, in the handler or later from the loop's thread; r is not to
 * be used after. Takes body (malloc()ed). */
void httpd_respond(struct httpd_request *r, unsigned status, const char *type, char *body, size_t len);
/* The same with a body that outlives the server (built-in assets). */
void httpd_respond_static(struct httpd_request *r, unsigned status, const char *type, const void *body,
			  size_t len);
/* The same with JSON (takes the reference; NULL: 500). */
void httpd_respond_json(struct httpd_request *r, unsigned status, json_t *body);
/* {"ok": false, "error": message} with status. */
void httpd_respond_error(struct httpd_request *r, unsigned status, const char *message);
