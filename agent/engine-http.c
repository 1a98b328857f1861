/* HTTP to a container engine's unix socket, libcurl's multi socket API on
 * the agent's loop (engine-http.h). */
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dlfcn.h>
#include <sys/epoll.h>

/* Calls go through the table below, not curl.h's type-checking macros. */
#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>

#include "bulkhead/log.h"
#include "engine-http.h"

#define CONNECT_TIMEOUT_MS 2000
#define MAX_SOCKETS	   64

/* One socket curl asked us to watch. */
struct http_sock {
	struct engine_http *h;
	curl_socket_t fd;
	int what; /* CURL_POLL_IN, _OUT, _INOUT */
	struct loop_source *src;
	struct http_sock *next;
};

struct engine_http_req {
	struct engine_http *h;
	CURL *easy;
	const struct engine_http_cb *cb;
	void *arg;
	char *body;
	size_t len, cap, max;
	bool overflow;
	bool cancelled; /* by the caller: no callback, freed when curl lets go */
	bool added;	/* to the multi handle (else waiting in h->queued) */
	char error[CURL_ERROR_SIZE];
	struct engine_http_req *next;
};

struct engine_http {
	struct loop *loop;
	char *socket;
	CURLM *multi;
	struct http_sock *socks;
	struct loop_source *timer;
	long timeout_ms;	      /* curl's last wish: -1 none */
	int depth;		      /* inside curl's calls: no curl_multi_* from callbacks */
	bool settling;		      /* in settle(): requests are added and freed after it */
	struct engine_http_req *reqs; /* every live request */
	bool reap_deferred;
};

/* libcurl is loaded when an engine is asked for, not linked: its two dozen
 * dependent libraries (TLS, LDAP, SSH, HTTP/2, IDN...) cost every agent
 * about 5 MB of RSS, also the agents that never talk to an engine
 * (bench/agent-rss.sh). The calls in this file keep curl's names and go
 * through this table. */
static struct {
	CURLcode (*global_init)(long flags);
	CURL *(*easy_init)(void);
	void (*easy_cleanup)(CURL *easy);
	CURLcode (*easy_setopt)(CURL *easy, CURLoption option, ...);
	CURLcode (*easy_getinfo)(CURL *easy, CURLINFO info, ...);
	const char *(*easy_strerror)(CURLcode code);
	char *(*easy_escape)(CURL *easy, const char *s, int len);
	void (*free)(void *p);
	CURLM *(*multi_init)(void);
	CURLMcode (*multi_cleanup)(CURLM *multi);
	CURLMcode (*multi_setopt)(CURLM *multi, CURLMoption option, ...);
	CURLMcode (*multi_add_handle)(CURLM *multi, CURL *easy);
	CURLMcode (*multi_remove_handle)(CURLM *multi, CURL *easy);
	CURLMcode (*multi_assign)(CURLM *multi, curl_socket_t fd, void *arg);
	CURLMcode (*multi_socket_action)(CURLM *multi, curl_socket_t fd, int mask, int *running);
	CURLMsg *(*multi_info_read)(CURLM *multi, int *left);
	const char *(*multi_strerror)(CURLMcode code);
} curl;

/* curl.h defines these three as function-like macros of themselves. */
#undef curl_easy_setopt
#undef curl_easy_getinfo
#undef curl_multi_setopt
#define curl_global_init	 curl.global_init
#define curl_easy_init		 curl.easy_init
#define curl_easy_cleanup	 curl.easy_cleanup
#define curl_easy_setopt	 curl.easy_setopt
#define curl_easy_getinfo	 curl.easy_getinfo
#define curl_easy_strerror	 curl.easy_strerror
#define curl_multi_init		 curl.multi_init
#define curl_multi_cleanup	 curl.multi_cleanup
#define curl_multi_setopt	 curl.multi_setopt
#define curl_multi_add_handle	 curl.multi_add_handle
#define curl_multi_remove_handle curl.multi_remove_handle
#define curl_multi_assign	 curl.multi_assign
#define curl_multi_socket_action curl.multi_socket_action
#define curl_multi_info_read	 curl.multi_info_read
#define curl_multi_strerror	 curl.multi_strerror

static char load_error[256];
static bool loaded;

static int load_libcurl(void)
{
	/* The soname of Debian's libcurl4 (OpenSSL), then its GnuTLS twin. */
	static const char *const names[] = {"libcurl.so.4", "libcurl-gnutls.so.4"};
	void *lib = NULL;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && !lib; i++)
		lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		snprintf(load_error, sizeof(load_error), "libcurl could not be loaded (%s)", dlerror());
		return -1;
	}
	static const struct {
		const char *name;
		size_t offset;
	} syms[] = {
#define SYM(field, name) {name, offsetof(__typeof__(curl), field)}
	    SYM(global_init, "curl_global_init"),
	    SYM(easy_init, "curl_easy_init"),
	    SYM(easy_cleanup, "curl_easy_cleanup"),
	    SYM(easy_setopt, "curl_easy_setopt"),
	    SYM(easy_getinfo, "curl_easy_getinfo"),
	    SYM(easy_strerror, "curl_easy_strerror"),
	    SYM(easy_escape, "curl_easy_escape"),
	    SYM(free, "curl_free"),
	    SYM(multi_init, "curl_multi_init"),
	    SYM(multi_cleanup, "curl_multi_cleanup"),
	    SYM(multi_setopt, "curl_multi_setopt"),
	    SYM(multi_add_handle, "curl_multi_add_handle"),
	    SYM(multi_remove_handle, "curl_multi_remove_handle"),
	    SYM(multi_assign, "curl_multi_assign"),
	    SYM(multi_socket_action, "curl_multi_socket_action"),
	    SYM(multi_info_read, "curl_multi_info_read"),
	    SYM(multi_strerror, "curl_multi_strerror"),
#undef SYM
	};
	for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
		void *fn = dlsym(lib, syms[i].name);
		if (!fn) {
			snprintf(load_error, sizeof(load_error), "libcurl has no %s", syms[i].name);
			dlclose(lib);
			return -1;
		}
		memcpy((char *)&curl + syms[i].offset, &fn, sizeof(fn));
	}
	return 0; /* never closed: handles live until exit */
}

void engine_http_global_init(void)
{
	if (loaded || load_error[0])
		return;
	if (load_libcurl() < 0) {
		memset(&curl, 0, sizeof(curl));
	} else if (curl_global_init(CURL_GLOBAL_NOTHING) != CURLE_OK) {
		snprintf(load_error, sizeof(load_error), "libcurl could not start");
	} else {
		loaded = true;
	}
	if (load_error[0])
		log_error("%s: the engine API will fail", load_error);
}

const char *engine_http_unavailable(void)
{
	return loaded ? NULL : load_error[0] ? load_error : "libcurl not loaded (engine_http_global_init)";
}

char *engine_http_escape(const char *s)
{
	if (!loaded)
		return NULL;
	char *enc = curl.easy_escape(NULL, s, 0);
	if (!enc)
		return NULL;
	char *copy = strdup(enc); /* ours to free(), not curl_free() */
	curl.free(enc);
	return copy;
}

static void drive(struct engine_http *h, curl_socket_t fd, int mask);

/* ---- the loop's side ---- */

static void on_sock(void *data, uint32_t events)
{
	struct http_sock *s = data;
	int mask = 0;
	if (events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP))
		mask |= CURL_CSELECT_IN;
	if (events & EPOLLOUT)
		mask |= CURL_CSELECT_OUT;
	if (events & EPOLLERR)
		mask |= CURL_CSELECT_ERR;
	drive(s->h, s->fd, mask);
}

static void watch(struct http_sock *s)
{
	uint32_t ev = 0;
	loop_remove(s->h->loop, s->src);
	s->src = NULL;
	if (s->what & CURL_POLL_IN)
		ev |= EPOLLIN;
	if (s->what & CURL_POLL_OUT)
		ev |= EPOLLOUT;
	if (ev && !(s->src = loop_add_fd(s->h->loop, s->fd, ev, on_sock, s)))
		log_error("engine API: watching a socket: %m");
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct engine_http *h = userp;
	struct http_sock *s = socketp, **p;
	if (what == CURL_POLL_REMOVE) {
		if (!s)
			return 0;
		loop_remove(h->loop, s->src);
		for (p = &h->socks; *p; p = &(*p)->next) {
			if (*p == s) {
				*p = s->next;
				break;
			}
		}
		free(s);
		return 0;
	}
	if (!s) {
		s = xcalloc(1, sizeof(*s));
		s->h = h;
		s->fd = fd;
		s->next = h->socks;
		h->socks = s;
		curl_multi_assign(h->multi, fd, s);
	}
	s->what = what;
	watch(s);
	return 0;
}

static void on_timer(void *data, uint32_t events)
{
	struct engine_http *h = data;
	loop_remove(h->loop, h->timer); /* one shot */
	h->timer = NULL;
	h->timeout_ms = -1;
	drive(h, CURL_SOCKET_TIMEOUT, 0);
}

static int on_timeout(CURLM *multi, long timeout_ms, void *userp)
{
	struct engine_http *h = userp;
	loop_remove(h->loop, h->timer);
	h->timer = NULL;
	h->timeout_ms = timeout_ms;
	if (timeout_ms < 0)
		return 0;
	if (timeout_ms == 0) {
		/* At once, but not from inside curl. */
		loop_defer(h->loop, on_timer, h);
		return 0;
	}
	if (!(h->timer = loop_add_timer(h->loop, (unsigned)timeout_ms, on_timer, h)))
		log_error("engine API: timer: %m");
	return 0;
}

/* ---- requests ---- */

static void req_free(struct engine_http_req *r)
{
	struct engine_http *h = r->h;
	for (struct engine_http_req **p = &h->reqs; *p; p = &(*p)->next) {
		if (*p == r) {
			*p = r->next;
			break;
		}
	}
	if (r->added)
		curl_multi_remove_handle(h->multi, r->easy);
	curl_easy_cleanup(r->easy);
	free(r->body);
	free(r);
}

static size_t on_header(char *data, size_t size, size_t n, void *userp)
{
	struct engine_http_req *r = userp;
	if (r->cancelled)
		return 0;
	if (r->cb->header)
		r->cb->header(r->arg, data, size * n);
	return size * n;
}

static size_t on_write(char *data, size_t size, size_t n, void *userp)
{
	struct engine_http_req *r = userp;
	size_t len = size * n;
	if (r->cancelled)
		return 0; /* ends the transfer */
	if (r->cb->data) {
		r->cb->data(r->arg, data, len);
		return r->cancelled ? 0 : len;
	}
	if (r->len + len > r->max) {
		r->overflow = true;
		return 0;
	}
	if (r->len + len + 1 > r->cap) {
		r->cap = 2 * (r->len + len + 1);
		r->body = xrealloc(r->body, r->cap);
	}
	memcpy(r->body + r->len, data, len);
	r->len += len;
	return len;
}

/* Hands every finished transfer to its caller, adds the queued ones and
 * frees the cancelled ones: outside curl's calls. */
static void settle(struct engine_http *h)
{
	CURLMsg *m;
	int left;
	if (h->settling)
		return;
	h->settling = true;
	while ((m = curl_multi_info_read(h->multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		struct engine_http_req *r = NULL;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		if (!r)
			continue;
		CURLcode res = m->data.result;
		long status = 0;
		if (res == CURLE_OK)
			curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
		curl_multi_remove_handle(h->multi, r->easy);
		r->added = false;
		if (!r->cancelled) {
			char why[CURL_ERROR_SIZE + 64];
			if (r->overflow)
				snprintf(why, sizeof(why), "answer larger than %zu bytes", r->max);
			else if (res != CURLE_OK)
				snprintf(why, sizeof(why), "%s",
					 r->error[0] ? r->error : curl_easy_strerror(res));
			else
				why[0] = '\0';
			if (r->overflow)
				status = 0;
			if (r->body)
				r->body[r->len] = '\0';
			r->cancelled = true; /* done once */
			r->cb->done(r->arg, status, r->body ? r->body : "", r->len, status ? NULL : why);
		}
		req_free(r);
	}
	for (struct engine_http_req *r = h->reqs, *next; r; r = next) {
		next = r->next;
		if (r->cancelled && !r->added) {
			req_free(r);
		} else if (!r->added) {
			CURLMcode mc = curl_multi_add_handle(h->multi, r->easy);
			r->added = mc == CURLM_OK;
			if (!r->added) {
				r->cancelled = true;
				r->cb->done(r->arg, 0, "", 0, curl_multi_strerror(mc));
			}
		}
	}
	h->settling = false;
}

static void drive(struct engine_http *h, curl_socket_t fd, int mask)
{
	int running;
	h->depth++;
	curl_multi_socket_action(h->multi, fd, mask, &running);
	h->depth--;
	if (!h->depth)
		settle(h);
}

static void on_settle(void *data, uint32_t events)
{
	struct engine_http *h = data;
	h->reap_deferred = false;
	settle(h);
}

/* Asks for settle() after the current loop round (a request started or
 * cancelled from a callback). */
static void settle_later(struct engine_http *h)
{
	if (!h->reap_deferred) {
		h->reap_deferred = true;
		loop_defer(h->loop, on_settle, h);
	}
}

struct engine_http_req *engine_http_get(struct engine_http *h, const char *path, size_t max,
					unsigned timeout_ms, const struct engine_http_cb *cb, void *arg)
{
	struct engine_http_req *r = xcalloc(1, sizeof(*r));
	char url[4096];
	r->h = h;
	r->cb = cb;
	r->arg = arg;
	r->max = max;
	r->easy = curl_easy_init();
	if (!r->easy) {
		log_error("engine API: libcurl could not make a handle");
		free(r);
		return NULL;
	}
	/* The host part is not used over a unix socket, but it is what the
	 * engine sees in Host:. */
	snprintf(url, sizeof(url), "http://localhost%s", path);
	CURL *e = r->easy;
	curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, h->socket);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_TIMEOUT_MS);
	if (timeout_ms)
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->error);
	curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	r->next = h->reqs;
	h->reqs = r;
	if (h->depth || h->settling) {
		settle_later(h); /* added after curl returns */
		return r;
	}
	CURLMcode mc = curl_multi_add_handle(h->multi, e);
	if (mc != CURLM_OK) {
		log_error("engine API: %s", curl_multi_strerror(mc));
		h->reqs = r->next;
		curl_easy_cleanup(e);
		free(r);
		return NULL;
	}
	r->added = true;
	return r;
}

void engine_http_cancel(struct engine_http *h, struct engine_http_req *r)
{
	if (!r)
		return;
	r->cancelled = true;
	if (h->depth || h->settling)
		settle_later(h); /* curl still holds it */
	else
		req_free(r);
}

unsigned engine_http_pending(const struct engine_http *h)
{
	unsigned n = 0;
	for (const struct engine_http_req *r = h->reqs; r; r = r->next)
		n += !r->cancelled;
	return n;
}

struct engine_http *engine_http_new(struct loop *loop, const char *socket)
{
	struct engine_http *h = xcalloc(1, sizeof(*h));
	h->loop = loop;
	h->socket = xstrdup(socket);
	h->timeout_ms = -1;
	h->multi = loaded ? curl_multi_init() : NULL;
	if (!h->multi) {
		log_error("engine API: %s", loaded ? "libcurl could not start" : engine_http_unavailable());
		free(h->socket);
		free(h);
		return NULL;
	}
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_timeout);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	return h;
}

void engine_http_free(struct engine_http *h)
{
	if (!h)
		return;
	while (h->reqs)
		req_free(h->reqs);
	curl_multi_cleanup(h->multi); /* removes its sockets through on_socket */
	while (h->socks) {
		struct http_sock *s = h->socks;
		h->socks = s->next;
		loop_remove(h->loop, s->src);
		free(s);
	}
	loop_remove(h->loop, h->timer);
	loop_cancel_deferred(h->loop, h);
	free(h->socket);
	free(h);
}

int engine_http_run(struct engine_http *h, unsigned timeout_ms, bool (*stop)(void *arg), void *arg)
{
	int64_t end = clock_mono_ms() + timeout_ms;
	while (!stop(arg)) {
		struct pollfd pfd[MAX_SOCKETS];
		nfds_t n = 0;
		int64_t left = end - clock_mono_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		for (struct http_sock *s = h->socks; s && n < MAX_SOCKETS; s = s->next) {
			pfd[n].fd = s->fd;
			pfd[n].events = (short)(((s->what & CURL_POLL_IN) ? POLLIN : 0) |
						((s->what & CURL_POLL_OUT) ? POLLOUT : 0));
			pfd[n].revents = 0;
			n++;
		}
		long wait = h->timeout_ms >= 0 && h->timeout_ms < left ? h->timeout_ms : left;
		if (wait > 100)
			wait = 100;
		int r = poll(pfd, n, (int)wait);
		if (r < 0 && errno != EINTR)
			return -errno;
		bool any = false;
		for (nfds_t i = 0; r > 0 && i < n; i++) {
			int mask = 0;
			if (pfd[i].revents & (POLLIN | POLLHUP))
				mask |= CURL_CSELECT_IN;
			if (pfd[i].revents & POLLOUT)
				mask |= CURL_CSELECT_OUT;
			if (pfd[i].revents & POLLERR)
				mask |= CURL_CSELECT_ERR;
			if (mask) {
				drive(h, pfd[i].fd, mask);
				any = true;
			}
		}
		if (!any)
			drive(h, CURL_SOCKET_TIMEOUT, 0);
		settle(h);
	}
	return 0;
}
