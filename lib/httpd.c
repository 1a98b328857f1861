/* The HTTP server on the loop (see httpd.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <dlfcn.h>
#include <stddef.h>

#include <microhttpd.h>

#include "bulkhead/httpd.h"
#include "bulkhead/log.h"
#include "bulkhead/ratelimit.h"
#include "bulkhead/sha256.h"

/* libmicrohttpd is loaded when a server is asked for (--http, --metrics),
 * not linked: it brings GnuTLS and a dozen libraries more, ~3 MB of RSS
 * in every daemon, also in those that serve nothing (bench/agent-rss.sh).
 * The calls below keep MHD's names and go through this table, typed from
 * microhttpd.h's own declarations. */
static struct {
	__typeof__(MHD_add_response_header) *add_response_header;
	__typeof__(MHD_create_response_from_buffer) *create_response_from_buffer;
	__typeof__(MHD_destroy_response) *destroy_response;
	__typeof__(MHD_get_daemon_info) *get_daemon_info;
	__typeof__(MHD_get_timeout) *get_timeout;
	__typeof__(MHD_is_feature_supported) *is_feature_supported;
	__typeof__(MHD_lookup_connection_value) *lookup_connection_value;
	__typeof__(MHD_queue_response) *queue_response;
	__typeof__(MHD_resume_connection) *resume_connection;
	__typeof__(MHD_run) *run;
	__typeof__(MHD_start_daemon) *start_daemon;
	__typeof__(MHD_stop_daemon) *stop_daemon;
	__typeof__(MHD_suspend_connection) *suspend_connection;
} mhd;

#define MHD_add_response_header		mhd.add_response_header
#define MHD_create_response_from_buffer mhd.create_response_from_buffer
#define MHD_destroy_response		mhd.destroy_response
#define MHD_get_daemon_info		mhd.get_daemon_info
#define MHD_get_timeout			mhd.get_timeout
#define MHD_is_feature_supported	mhd.is_feature_supported
#define MHD_lookup_connection_value	mhd.lookup_connection_value
#define MHD_queue_response		mhd.queue_response
#define MHD_resume_connection		mhd.resume_connection
#define MHD_run				mhd.run
#define MHD_start_daemon		mhd.start_daemon
#define MHD_stop_daemon			mhd.stop_daemon
#define MHD_suspend_connection		mhd.suspend_connection

/* Loads it once (never closed: the daemon serves until it exits). NULL,
 * or why not. */
static const char *load_mhd(void)
{
	static char why[256];
	static bool loaded;
	if (loaded || why[0])
		return why[0] ? why : NULL;
	void *lib = dlopen("libmicrohttpd.so.12", RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		snprintf(why, sizeof(why), "libmicrohttpd could not be loaded (%s)", dlerror());
		return why;
	}
	static const struct {
		const char *name;
		size_t offset;
	} syms[] = {
#define SYM(field) {"MHD_" #field, offsetof(__typeof__(mhd), field)}
	    SYM(add_response_header),
	    SYM(create_response_from_buffer),
	    SYM(destroy_response),
	    SYM(get_daemon_info),
	    SYM(get_timeout),
	    SYM(is_feature_supported),
	    SYM(lookup_connection_value),
	    SYM(queue_response),
	    SYM(resume_connection),
	    SYM(run),
	    SYM(start_daemon),
	    SYM(stop_daemon),
	    SYM(suspend_connection),
#undef SYM
	};
	for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
		void *fn = dlsym(lib, syms[i].name);
		if (!fn) {
			snprintf(why, sizeof(why), "libmicrohttpd has no %s", syms[i].name);
			dlclose(lib);
			memset(&mhd, 0, sizeof(mhd));
			return why;
		}
		memcpy((char *)&mhd + syms[i].offset, &fn, sizeof(fn));
	}
	loaded = true;
	return NULL;
}

#define CONNECTIONS_MAX	       64
#define CONNECTIONS_PER_IP_MAX 16
#define CONNECTION_MEMORY      (32 * 1024)
#define IDLE_S		       30
#define TICK_MS		       1000
#define HEADERS_MAX	       4
#define TOKEN_MIN	       16
#define TOKEN_MAX	       4096
#define COOKIE		       "bulkhead_token"

static const char csp[] = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
			  "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

struct httpd_request {
	struct httpd *h;
	struct MHD_Connection *conn;
	char *path;
	bool started;	/* the handler (or a check) has had it */
	bool suspended; /* waiting for httpd_respond() */
	bool body;	/* the client sent a body: refused */
	struct MHD_Response *response;
	unsigned status;
	char *headers[HEADERS_MAX][2];
	size_t n_headers;
	struct httpd_request *next, *prev; /* in h->waiting while suspended */
};

struct httpd {
	struct loop *loop;
	struct MHD_Daemon *d;
	int fd;
	uint16_t port;
	bool loopback;
	uint8_t token[SHA256_DIGEST_LEN]; /* its digest: compared in constant time */
	bool has_token, page_token;
	char *what;
	httpd_fn fn;
	void *data;
	struct loop_source *src, *timer;
	struct httpd_request *waiting;
	struct ratelimit log;
};

/* ---- addresses and tokens ---- */

int httpd_listen_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len, bool *loopback,
		       const char **why)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon = strrchr(s, ':');
	if (!colon || colon == s) {
		*why = "expected ADDRESS:PORT (127.0.0.1:7780, [::1]:7780, 0.0.0.0:7780)";
		return -EINVAL;
	}
	size_t hlen = (size_t)(colon - s);
	bool v6 = s[0] == '[';
	if (v6 && (hlen < 3 || s[hlen - 1] != ']')) {
		*why = "an IPv6 address goes in brackets: [::1]:7780";
		return -EINVAL;
	}
	if (v6) {
		s++;
		hlen -= 2;
	}
	if (hlen >= sizeof(host)) {
		*why = "not an IP address";
		return -EINVAL;
	}
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	const char *p = colon + 1;
	char *end;
	errno = 0;
	unsigned long port = strtoul(p, &end, 10);
	if (!*p || *end || errno || port > 65535 || *p == '-' || *p == '+' || *p == ' ') {
		*why = "the port must be a number 0-65535";
		return -EINVAL;
	}
	memset(ss, 0, sizeof(*ss));
	if (v6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
		if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) {
			*why = "not an IPv6 address";
			return -EINVAL;
		}
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)port);
		*len = sizeof(*a);
		*loopback = IN6_IS_ADDR_LOOPBACK(&a->sin6_addr) ||
			    (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) && a->sin6_addr.s6_addr[12] == 127);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;
		if (inet_pton(AF_INET, host, &a->sin_addr) != 1) {
			*why = strchr(host, ':') ? "an IPv6 address goes in brackets: [::1]:7780"
						 : "not an IP address (a name is not resolved)";
			return -EINVAL;
		}
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)port);
		*len = sizeof(*a);
		*loopback = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
	}
	return 0;
}

int httpd_token_parse(const char *text, size_t len, char **out, const char **why)
{
	size_t n = 0;
	while (n < len && text[n] != '\n')
		n++;
	while (n > 0 && (text[n - 1] == '\r' || text[n - 1] == ' ' || text[n - 1] == '\t'))
		n--;
	if (n < TOKEN_MIN || n > TOKEN_MAX) {
		*why = "the token (its first line) must be 16 to 4096 characters";
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++)
		if (text[i] < 0x21 || text[i] > 0x7e) {
			*why = "the token must be printable ASCII without spaces";
			return -EINVAL;
		}
	*out = xmalloc(n + 1);
	memcpy(*out, text, n);
	(*out)[n] = '\0';
	return 0;
}

static void digest(const char *s, uint8_t out[SHA256_DIGEST_LEN])
{
	struct sha256 h;
	sha256_init(&h);
	sha256_update(&h, s, strlen(s));
	sha256_final(&h, out);
}

/* Digests, so that neither the length nor where they differ shows in
 * the time taken. */
static bool token_matches(const struct httpd *h, const char *given)
{
	if (!given)
		return false;
	uint8_t d[SHA256_DIGEST_LEN];
	digest(given, d);
	volatile uint8_t diff = 0;
	for (size_t i = 0; i < SHA256_DIGEST_LEN; i++)
		diff |= d[i] ^ h->token[i];
	return diff == 0;
}

/* Whether the Host header names a loopback host (or is absent). */
static bool host_loopback(const char *host)
{
	if (!host)
		return true;
	char buf[256];
	size_t n = strlen(host);
	if (n >= sizeof(buf))
		return false;
	memcpy(buf, host, n + 1);
	if (buf[0] == '[') {
		char *close = strchr(buf, ']');
		if (!close || (close[1] && close[1] != ':'))
			return false;
		*close = '\0';
		struct in6_addr a;
		return inet_pton(AF_INET6, buf + 1, &a) == 1 && IN6_IS_ADDR_LOOPBACK(&a);
	}
	char *colon = strchr(buf, ':');
	if (colon)
		*colon = '\0';
	if (strcasecmp(buf, "localhost") == 0)
		return true;
	struct in_addr a;
	return inet_pton(AF_INET, buf, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

/* ---- requests ---- */

const char *httpd_path(const struct httpd_request *r)
{
	return r->path;
}

const char *httpd_arg(const struct httpd_request *r, const char *key)
{
	return r->suspended ? NULL : MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

void httpd_header(struct httpd_request *r, const char *name, const char *value)
{
	if (r->n_headers == HEADERS_MAX || r->response)
		return;
	r->headers[r->n_headers][0] = xstrdup(name);
	r->headers[r->n_headers][1] = xstrdup(value);
	r->n_headers++;
}

static void run_later(void *data, uint32_t events);

/* The response is ready: queued by the access handler (now, or when the
 * resumed connection comes back to it). */
static void set_response(struct httpd_request *r, unsigned status, const char *type,
			 struct MHD_Response *resp)
{
	if (!resp)
		abort();
	if (r->response) { /* answered twice: the first stands */
		MHD_destroy_response(resp);
		return;
	}
	static const char *const always[][2] = {
	    {"X-Content-Type-Options", "nosniff"}, {"Cache-Control", "no-store"},
	    {"X-Frame-Options", "DENY"},	   {"Referrer-Policy", "no-referrer"},
	    {"Content-Security-Policy", csp},
	};
	for (size_t i = 0; i < BH_ARRAY_SIZE(always); i++)
		MHD_add_response_header(resp, always[i][0], always[i][1]);
	if (type)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	for (size_t i = 0; i < r->n_headers; i++)
		MHD_add_response_header(resp, r->headers[i][0], r->headers[i][1]);
	r->response = resp;
	r->status = status;
	if (r->suspended) {
		struct httpd *h = r->h;
		if (r->prev)
			r->prev->next = r->next;
		else
			h->waiting = r->next;
		if (r->next)
			r->next->prev = r->prev;
		r->next = r->prev = NULL;
		r->suspended = false;
		MHD_resume_connection(r->conn);
		/* External mode: MHD takes it up at its next run. */
		loop_defer(h->loop, run_later, h);
	}
}

void httpd_respond(struct httpd_request *r, unsigned status, const char *type, char *body, size_t len)
{
	set_response(r, status, type, MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE));
}

void httpd_respond_static(struct httpd_request *r, unsigned status, const char *type, const void *body,
			  size_t len)
{
	set_response(r, status, type,
		     MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_PERSISTENT));
}

void httpd_respond_json(struct httpd_request *r, unsigned status, json_t *body)
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (!text) {
		httpd_respond_error(r, 500, "the reply could not be encoded");
		return;
	}
	httpd_respond(r, status, "application/json", text, strlen(text));
}

void httpd_respond_error(struct httpd_request *r, unsigned status, const char *message)
{
	json_t *o = json_pack("{s:b,s:s}", "ok", 0, "error", message);
	char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (!text)
		text = xstrdup("{\"ok\":false}");
	httpd_respond(r, status, "application/json", text, strlen(text));
}

static void request_free(struct httpd_request *r)
{
	if (r->response)
		MHD_destroy_response(r->response);
	for (size_t i = 0; i < r->n_headers; i++) {
		free(r->headers[i][0]);
		free(r->headers[i][1]);
	}
	free(r->path);
	free(r);
}

/* The checks every request passes before the handler: method, body,
 * token or host. True when it was answered here. */
static bool refused(struct httpd *h, struct httpd_request *r, const char *method)
{
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
		httpd_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
		httpd_respond_error(r, 405, "only GET and HEAD");
		return true;
	}
	if (r->body) {
		httpd_respond_error(r, 413, "no request body is taken");
		return true;
	}
	if (h->has_token) {
		const char *given = NULL, *auth = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
									      MHD_HTTP_HEADER_AUTHORIZATION);
		if (auth && strncasecmp(auth, "Bearer ", 7) == 0)
			given = auth + 7;
		else
			given = MHD_lookup_connection_value(r->conn, MHD_COOKIE_KIND, COOKIE);
		const char *in_url =
		    h->page_token && strcmp(r->path, "/") == 0
			? MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "token")
			: NULL;
		if (in_url && token_matches(h, in_url)) {
			/* The page's way in: the token goes into a cookie that
			 * scripts cannot read, and out of the address bar. */
			char *cookie;
			if (asprintf(&cookie, COOKIE "=%s; HttpOnly; SameSite=Strict; Path=/", in_url) < 0)
				abort();
			httpd_header(r, MHD_HTTP_HEADER_SET_COOKIE, cookie);
			httpd_header(r, MHD_HTTP_HEADER_LOCATION, "/");
			free(cookie);
			httpd_respond_static(r, 303, "text/plain; charset=utf-8", "see /\n", 6);
			return true;
		}
		if (!token_matches(h, given)) {
			httpd_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"bulkhead\"");
			httpd_respond_error(
			    r, 401,
			    h->page_token
				? "a token is required: Authorization: Bearer TOKEN, or open /?token=TOKEN"
				: "a token is required: Authorization: Bearer TOKEN");
			return true;
		}
		return false;
	}
	if (!host_loopback(MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST))) {
		httpd_respond_error(
		    r, 403,
		    "served on loopback without a token: the Host must be localhost, 127.0.0.1 "
		    "or [::1]");
		return true;
	}
	return false;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				 const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
	struct httpd *h = cls;
	struct httpd_request *r = *con_cls;
	if (!r) { /* the headers are in: the request begins */
		r = xcalloc(1, sizeof(*r));
		r->h = h;
		r->conn = conn;
		r->path = xstrdup(url);
		*con_cls = r;
		return MHD_YES;
	}
	if (*upload_size) {
		r->body = true;
		*upload_size = 0;
		return MHD_YES;
	}
	if (!r->started) {
		r->started = true;
		if (!refused(h, r, method))
			h->fn(h->data, r);
	}
	if (!r->response) {
		if (r->suspended) /* not answered yet */
			return MHD_YES;
		r->suspended = true;
		r->next = h->waiting;
		if (h->waiting)
			h->waiting->prev = r;
		h->waiting = r;
		MHD_suspend_connection(conn);
		return MHD_YES;
	}
	enum MHD_Result ok = MHD_queue_response(conn, r->status, r->response);
	MHD_destroy_response(r->response);
	r->response = NULL;
	return ok;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct httpd_request *r = *con_cls;
	if (r)
		request_free(r);
	*con_cls = NULL;
}

static void on_log(void *cls, const char *fmt, va_list ap)
{
	struct httpd *h = cls;
	char buf[512];
	vsnprintf(buf, sizeof(buf), fmt, ap);
	size_t n = strlen(buf);
	while (n && buf[n - 1] == '\n')
		buf[--n] = '\0';
	ratelimit_log(&h->log, LOG_LEVEL_WARN, "%s: %s", h->what, buf);
}

/* ---- the loop ---- */

static void run(struct httpd *h)
{
	MHD_run(h->d);
	/* Work MHD knows is ready without an event (a resumed connection,
	 * data left to process): another run before the loop sleeps. */
	MHD_UNSIGNED_LONG_LONG t;
	if (MHD_get_timeout(h->d, &t) == MHD_YES && t == 0)
		loop_defer(h->loop, run_later, h);
}

static void run_later(void *data, uint32_t events)
{
	run(data);
}

static void on_ready(void *data, uint32_t events)
{
	run(data);
}

static void on_tick(void *data, uint32_t events)
{
	run(data); /* idle connections' timeouts */
}

static struct httpd *fail(struct httpd *h, int e, int *errno_out, char **err, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static struct httpd *fail(struct httpd *h, int e, int *errno_out, char **err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(err, fmt, ap) < 0)
		abort();
	va_end(ap);
	if (errno_out)
		*errno_out = e;
	httpd_free(h);
	return NULL;
}

struct httpd *httpd_new(struct loop *l, const struct httpd_options *o, httpd_fn fn, void *data,
			int *errno_out, char **err)
{
	struct sockaddr_storage ss;
	socklen_t len;
	bool loopback;
	const char *why;
	const char *what = o->what ? o->what : "http";
	*err = NULL;
	if (errno_out)
		*errno_out = 0;
	if (httpd_listen_parse(o->listen, &ss, &len, &loopback, &why) < 0)
		return fail(NULL, EINVAL, errno_out, err, "%s %s: %s", what, o->listen, why);
	if (!loopback && !o->token)
		return fail(
		    NULL, EINVAL, errno_out, err,
		    "%s %s: not a loopback address: give a token (%s-token FILE) so that not everyone who "
		    "reaches it may read it",
		    what, o->listen, what);
	const char *unloaded = load_mhd();
	if (unloaded)
		return fail(NULL, ENOTSUP, errno_out, err, "%s: %s", what, unloaded);
	if (!MHD_is_feature_supported(MHD_FEATURE_EPOLL))
		return fail(NULL, ENOTSUP, errno_out, err, "%s: this libmicrohttpd has no epoll", what);
	struct httpd *h = xcalloc(1, sizeof(*h));
	h->loop = l;
	h->fd = -1;
	h->what = xstrdup(what);
	h->fn = fn;
	h->data = data;
	h->loopback = loopback;
	h->page_token = o->page_token;
	h->log = RATELIMIT_INIT(10000, 10);
	if (o->token) {
		digest(o->token, h->token);
		h->has_token = true;
	}
	/* Our own socket: a bind that fails says why, in our words. */
	int one = 1;
	h->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (h->fd < 0 || setsockopt(h->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    (ss.ss_family == AF_INET6 &&
	     setsockopt(h->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
	    bind(h->fd, (struct sockaddr *)&ss, len) < 0 || listen(h->fd, 64) < 0) {
		int e = errno;
		return fail(h, e, errno_out, err, "%s %s: %s", what, o->listen, strerror(e));
	}
	struct sockaddr_storage bound;
	socklen_t blen = sizeof(bound);
	if (getsockname(h->fd, (struct sockaddr *)&bound, &blen) == 0)
		h->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
							    : ((struct sockaddr_in *)&bound)->sin_port);
	unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG |
			 (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0);
	h->d = MHD_start_daemon(flags, 0, NULL, NULL, on_access, h, MHD_OPTION_EXTERNAL_LOGGER, on_log, h,
				MHD_OPTION_LISTEN_SOCKET, (MHD_socket)h->fd, MHD_OPTION_CONNECTION_LIMIT,
				(unsigned)CONNECTIONS_MAX, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
				(unsigned)CONNECTIONS_PER_IP_MAX, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
				(size_t)CONNECTION_MEMORY, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)IDLE_S,
				MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_END);
	if (!h->d)
		return fail(h, EIO, errno_out, err, "%s %s: libmicrohttpd did not start", what, o->listen);
	h->fd = -1; /* MHD's now: it closes it when it stops */
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
	if (!info || !(h->src = loop_add_fd(l, info->epoll_fd, EPOLLIN, on_ready, h)) ||
	    !(h->timer = loop_add_timer(l, TICK_MS, on_tick, h))) {
		int e = errno;
		return fail(h, e, errno_out, err, "%s: the loop: %s", what, strerror(e));
	}
	return h;
}

uint16_t httpd_port(const struct httpd *h)
{
	return h->port;
}

void httpd_free(struct httpd *h)
{
	if (!h)
		return;
	if (h->d) {
		/* MHD may not stop with connections suspended: each is
		 * answered, and run once to take the answer. */
		while (h->waiting)
			httpd_respond_error(h->waiting, 503, "the daemon is stopping");
		MHD_run(h->d);
		MHD_stop_daemon(h->d);
	}
	loop_cancel_deferred(h->loop, h);
	loop_remove(h->loop, h->src);
	loop_remove(h->loop, h->timer);
	if (h->fd >= 0)
		close(h->fd);
	free(h->what);
	free(h);
}
