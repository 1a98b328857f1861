/* The engine source (source-engine.c, engine-http.c) against a fake
 * engine: a thread that answers the Docker Engine API on a unix socket
 * from a table of containers the test changes, and streams the events the
 * test pushes; the core is a fake sink that writes down what it is told.
 * On the agent's real loop, with libcurl, without root. Covers: the list
 * at start (what is an endpoint, labels), events (start with quarantine,
 * die, rename, destroy), a malformed event, the stream cut and resumed
 * with since= and the list again, and the hook's "tell me when container
 * ID's table is in" before and after its create event. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "engine-http.h"
#include "source-engine.h"
#include "test.h"

/* ---- the fake engine ---- */

struct fake_ctr {
	char id[65], name[256], netns[128], labels[256], mode[80];
	bool running;
	bool bad_inspect; /* its inspect answers 200 with what is not one */
};

static struct {
	pthread_mutex_t lock;
	char path[108];
	int listen_fd;
	struct fake_ctr ctrs[8];
	size_t n;
	char pending[8192]; /* events to stream */
	int stream_fd;	    /* the open events stream, -1: none */
	bool cut;	    /* close the stream */
	bool close_streams; /* every events stream ends right after its headers */
	bool mute_streams;  /* every events request is read and never answered */
	char last_events_query[1024];
	const char *list_error; /* the list answers 500 with this body */
	unsigned pings, lists, inspects, streams;
} eng = {.lock = PTHREAD_MUTEX_INITIALIZER, .stream_fd = -1};

static void send_all(int fd, const char *s, size_t len)
{
	while (len) {
		ssize_t w = write(fd, s, len);
		if (w <= 0)
			return;
		s += w;
		len -= (size_t)w;
	}
}

static void reply(int fd, int status, const char *body)
{
	char head[256];
	snprintf(head, sizeof(head),
		 "HTTP/1.1 %d %s\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\nContent-Length: "
		 "%zu\r\n\r\n",
		 status, status == 200 ? "OK" : "Not Found", strlen(body));
	send_all(fd, head, strlen(head));
	send_all(fd, body, strlen(body));
}

static void ctr_json(const struct fake_ctr *c, char *out, size_t size, bool inspect)
{
	if (inspect)
		snprintf(
		    out, size,
		    "{\"Id\":\"%s\",\"Name\":\"/%s\",\"State\":{\"Running\":%s,\"Pid\":%d},"
		    "\"HostConfig\":{\"NetworkMode\":\"%s\"},\"NetworkSettings\":{\"SandboxKey\":\"%s\"},"
		    "\"Config\":{\"Labels\":{%s}}}",
		    c->id, c->name, c->running ? "true" : "false", c->running ? 4242 : 0, c->mode, c->netns,
		    c->labels);
	else
		snprintf(out, size, "{\"Id\":\"%s\",\"Names\":[\"/%s\"],\"State\":\"%s\",\"Labels\":{%s}}",
			 c->id, c->name, c->running ? "running" : "exited", c->labels);
}

static void *serve_one(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char req[4096];
	for (;;) {
		size_t len = 0;
		while (len < sizeof(req) - 1) {
			ssize_t r = read(fd, req + len, sizeof(req) - 1 - len);
			if (r <= 0) {
				close(fd);
				return NULL;
			}
			len += (size_t)r;
			req[len] = '\0';
			if (strstr(req, "\r\n\r\n"))
				break;
		}
		char path[2048] = "";
		sscanf(req, "GET %2047s", path);
		pthread_mutex_lock(&eng.lock);
		if (strcmp(path, "/_ping") == 0) {
			eng.pings++;
			reply(fd, 200, "OK");
		} else if (strncmp(path, "/v1.41/events", 13) == 0) {
			eng.streams++;
			snprintf(eng.last_events_query, sizeof(eng.last_events_query), "%s", path);
			if (eng.mute_streams) {
				pthread_mutex_unlock(&eng.lock);
				char sink[256];
				while (read(fd, sink, sizeof(sink)) > 0)
					; /* until the agent gives up */
				close(fd);
				return NULL;
			}
			const char *head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
					   "Transfer-Encoding: chunked\r\n\r\n";
			send_all(fd, head, strlen(head));
			if (eng.close_streams) {
				send_all(fd, "0\r\n\r\n", 5); /* the last chunk: over */
				pthread_mutex_unlock(&eng.lock);
				close(fd);
				return NULL;
			}
			eng.stream_fd = fd;
			pthread_mutex_unlock(&eng.lock);
			return NULL; /* the test's thread writes and closes it */
		} else if (strcmp(path, "/v1.41/containers/json") == 0 && eng.list_error) {
			eng.lists++;
			reply(fd, 500, eng.list_error);
		} else if (strcmp(path, "/v1.41/containers/json") == 0) {
			eng.lists++;
			char body[8192] = "[", one[1024];
			for (size_t i = 0; i < eng.n; i++) {
				if (!eng.ctrs[i].running)
					continue;
				ctr_json(&eng.ctrs[i], one, sizeof(one), false);
				if (body[1])
					strcat(body, ",");
				strcat(body, one);
			}
			strcat(body, "]");
			reply(fd, 200, body);
		} else {
			eng.inspects++;
			char one[1024] = "";
			for (size_t i = 0; i < eng.n; i++) {
				char want[128];
				snprintf(want, sizeof(want), "/v1.41/containers/%s/json", eng.ctrs[i].id);
				if (strcmp(path, want) == 0 && eng.ctrs[i].bad_inspect)
					snprintf(one, sizeof(one), "{\"Id\":\"%s\",\"Name\":7}",
						 eng.ctrs[i].id);
				else if (strcmp(path, want) == 0)
					ctr_json(&eng.ctrs[i], one, sizeof(one), true);
			}
			if (one[0])
				reply(fd, 200, one);
			else
				reply(fd, 404, "{\"message\":\"No such container\"}");
		}
		pthread_mutex_unlock(&eng.lock);
	}
}

static void *acceptor(void *arg)
{
	for (;;) {
		int fd = accept(eng.listen_fd, NULL, NULL);
		if (fd < 0)
			return NULL;
		pthread_t t;
		pthread_create(&t, NULL, serve_one, (void *)(intptr_t)fd);
		pthread_detach(t);
	}
}

static void engine_listen(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(eng.path, sizeof(eng.path), "/tmp/test-source-engine.%d.sock", (int)getpid());
	unlink(eng.path);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", eng.path);
	eng.listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (bind(eng.listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(eng.listen_fd, 16) < 0)
		abort();
	pthread_t t;
	pthread_create(&t, NULL, acceptor, NULL);
	pthread_detach(t);
}

static void ctr_add(const char *id, const char *name, bool running, const char *mode, const char *labels)
{
	pthread_mutex_lock(&eng.lock);
	struct fake_ctr *c = &eng.ctrs[eng.n++];
	memset(c, 0, sizeof(*c));
	snprintf(c->id, sizeof(c->id), "%s", id);
	snprintf(c->name, sizeof(c->name), "%s", name);
	snprintf(c->mode, sizeof(c->mode), "%s", mode);
	snprintf(c->labels, sizeof(c->labels), "%s", labels);
	snprintf(c->netns, sizeof(c->netns), "/run/docker/netns/%.12s", id);
	c->running = running;
	pthread_mutex_unlock(&eng.lock);
}

static struct fake_ctr *ctr(const char *id)
{
	for (size_t i = 0; i < eng.n; i++)
		if (strncmp(eng.ctrs[i].id, id, strlen(id)) == 0)
			return &eng.ctrs[i];
	return NULL;
}

/* Streams one event line (a chunk) on the open stream. */
static void event(const char *fmt, ...)
{
	char line[1024], chunk[1100];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	strcat(line, "\n");
	snprintf(chunk, sizeof(chunk), "%zx\r\n%s\r\n", strlen(line), line);
	pthread_mutex_lock(&eng.lock);
	if (eng.stream_fd >= 0)
		send_all(eng.stream_fd, chunk, strlen(chunk));
	pthread_mutex_unlock(&eng.lock);
}

static void stream_cut(void)
{
	pthread_mutex_lock(&eng.lock);
	if (eng.stream_fd >= 0)
		close(eng.stream_fd); /* no last chunk: the engine went away */
	eng.stream_fd = -1;
	pthread_mutex_unlock(&eng.lock);
}

#define ID_WEB	 "aaaa000000000000000000000000000000000000000000000000000000000001"
#define ID_HOST	 "aaaa000000000000000000000000000000000000000000000000000000000002"
#define ID_NEW	 "aaaa000000000000000000000000000000000000000000000000000000000003"
#define ID_HOOK	 "aaaa000000000000000000000000000000000000000000000000000000000004"
#define ID_SKIP	 "aaaa000000000000000000000000000000000000000000000000000000000005"
#define ID_LATE	 "aaaa000000000000000000000000000000000000000000000000000000000006"
#define ID_LONG	 "cccc000000000000000000000000000000000000000000000000000000000007"
#define ID_BLIND "dddd000000000000000000000000000000000000000000000000000000000008"
#define ID_BAD	 "eeee000000000000000000000000000000000000000000000000000000000009"

/* ---- the fake core ---- */

static char journal[1 << 15];

static void note(const char *fmt, ...)
{
	va_list ap;
	size_t len = strlen(journal);
	va_start(ap, fmt);
	vsnprintf(journal + len, sizeof(journal) - len, fmt, ap);
	va_end(ap);
	strncat(journal, "\n", sizeof(journal) - strlen(journal) - 1);
}

static bool has(const char *s)
{
	return strstr(journal, s) != NULL;
}

static struct source_waiter *enforcing;

static void sink_set_all(void *core, struct source *s, const struct source_endpoint *v, size_t n)
{
	char line[512] = "set_all";
	for (size_t i = 0; i < n; i++)
		snprintf(line + strlen(line), sizeof(line) - strlen(line), " %s", v[i].name);
	note("%s", line);
}

static void sink_update(void *core, struct source *s, const struct source_endpoint *ep)
{
	note("update %s %s q=%d app=%s engine=%s ports=%zu", ep->name, ep->netns, ep->quarantine,
	     label_set_get(ep->labels, "app") ? label_set_get(ep->labels, "app") : "-",
	     label_set_get(ep->labels, ENGINE_LABEL), ep->n_ports);
}

static void sink_remove(void *core, struct source *s, const char *name)
{
	note("remove %s", name);
}

static void sink_rejected(void *core, struct source *s)
{
}

static void sink_enforce(void *core, struct source *s, struct source_waiter *w)
{
	note("enforce %s", w->endpoint);
	enforcing = w;
}

static void sink_cancel(void *core, struct source_waiter *w)
{
	note("cancel %s", w->endpoint);
	enforcing = NULL;
}

static void sink_quarantine(void *core, struct source *s, const char *netns)
{
	note("quarantine %s", netns);
}

static void sink_changed(void *core, struct source *s)
{
}

static const struct source_sink sink = {
    .set_all = sink_set_all,
    .update = sink_update,
    .remove = sink_remove,
    .rejected = sink_rejected,
    .enforce = sink_enforce,
    .cancel = sink_cancel,
    .quarantine = sink_quarantine,
    .changed = sink_changed,
};

/* ---- running the loop until something was said ---- */

static struct loop *loop;
static const char *awaited;
static int64_t deadline;

static void on_poll(void *data, uint32_t events)
{
	if ((awaited && has(awaited)) || clock_mono_ms() > deadline)
		loop_quit(loop, 0);
}

/* Runs the loop until the journal says s (true), or 5 s pass (false). */
static bool until(const char *s)
{
	awaited = s;
	deadline = clock_mono_ms() + 5000;
	if (has(s))
		return true;
	struct loop_source *t = loop_add_timer(loop, 5, on_poll, NULL);
	loop_run(loop);
	loop_remove(loop, t);
	if (!has(s))
		fprintf(stderr, "  never said \"%s\"; said:\n%s", s, journal);
	return has(s);
}

static void settle(unsigned ms)
{
	awaited = NULL;
	deadline = clock_mono_ms() + ms;
	struct loop_source *t = loop_add_timer(loop, 5, on_poll, NULL);
	loop_run(loop);
	loop_remove(loop, t);
}

static int hook_result = 99;
static char hook_error[256];
static void hook_done(struct engine_hook_waiter *w, int result, const char *endpoint, const char *error)
{
	hook_result = result;
	snprintf(hook_error, sizeof(hook_error), "%s", error ? error : "");
	note("hook done %d", result);
}

TEST(an_engine_followed_from_its_list_through_its_events)
{
	engine_listen();
	ctr_add(ID_WEB, "web1", true, "net1", "\"app\":\"web\",\"bulkhead.io/port.http\":\"tcp/80\"");
	ctr_add(ID_HOST, "host1", true, "host", "\"app\":\"web\"");
	loop = loop_new();
	struct source_engine_options o = {.kind = ENGINE_DOCKER, .socket = eng.path};
	struct source *s = source_engine_new(&o);
	s->sink = &sink;
	CHECK(s->ops->start(s, loop, false) == 0);

	/* The list at start: the endpoint with its labels, not the host one. */
	CHECK(until("set_all"));
	CHECK(has("update web1 /run/docker/netns/aaaa00000000 q=0 app=web engine=docker ports=1"));
	CHECK(has("set_all web1\n"));
	CHECK(!has("host1"));
	CHECK(eng.pings == 1 && eng.streams == 1 && eng.lists == 1);

	/* A container starts: reported with quarantine. */
	ctr_add(ID_NEW, "new1", true, "net1", "\"app\":\"db\"");
	event(
	    "{\"Type\":\"container\",\"Action\":\"create\",\"Actor\":{\"ID\":\"%s\",\"Attributes\":{\"name\":"
	    "\"new1\",\"app\":\"db\"}},\"timeNano\":1000000000000}",
	    ID_NEW);
	event(
	    "{\"Type\":\"container\",\"Action\":\"start\",\"Actor\":{\"ID\":\"%s\",\"Attributes\":{\"name\":"
	    "\"new1\"}},\"timeNano\":1000000000001}",
	    ID_NEW);
	CHECK(until("update new1 /run/docker/netns/aaaa00000000 q=1 app=db"));
	/* Garbage on the stream is counted, the stream goes on. */
	event("{\"Type\":\"container\",\"Action\":\"start\",\"Actor\":{\"ID\":\"NOT HEX\"}}");
	/* Renamed: the old name goes, the new one comes (not quarantined). */
	snprintf(ctr(ID_NEW)->name, sizeof(ctr(ID_NEW)->name), "new2");
	event(
	    "{\"Type\":\"container\",\"Action\":\"rename\",\"Actor\":{\"ID\":\"%s\",\"Attributes\":{\"name\":"
	    "\"new2\",\"oldName\":\"/new1\"}},\"timeNano\":1000000000002}",
	    ID_NEW);
	CHECK(until("update new2"));
	CHECK(has("remove new1") && has("update new2 /run/docker/netns/aaaa00000000 q=0"));
	/* It dies, then is destroyed. */
	ctr(ID_NEW)->running = false;
	event("{\"Type\":\"container\",\"Action\":\"die\",\"Actor\":{\"ID\":\"%s\"},\"timeNano\":"
	      "1000000000003}",
	      ID_NEW);
	CHECK(until("remove new2"));
	json_t *st = s->ops->status(s);
	CHECK(json_integer_value(json_object_get(st, "malformed")) == 1);
	CHECK(json_integer_value(json_object_get(st, "events")) == 4);
	json_decref(st);

	/* The engine goes away and comes back: ping, events since a second
	 * before the last one, the list again. */
	journal[0] = '\0';
	ctr(ID_WEB)->running = false; /* it stopped meanwhile */
	stream_cut();
	CHECK(until("remove web1"));
	CHECK(until("set_all"));
	CHECK(has("set_all\n"));
	/* (Three lists: the malformed event asked for one.) */
	CHECK(eng.pings == 2 && eng.streams == 2 && eng.lists == 3);
	CHECK(strstr(eng.last_events_query, "since=999.000000003") != NULL);
	/* The events before the cut that come again are skipped. */
	journal[0] = '\0';
	ctr(ID_WEB)->running = true;
	event("{\"Type\":\"container\",\"Action\":\"start\",\"Actor\":{\"ID\":\"%s\"},\"timeNano\":"
	      "1000000000001}",
	      ID_NEW);
	event("{\"Type\":\"container\",\"Action\":\"start\",\"Actor\":{\"ID\":\"%s\"},\"timeNano\":"
	      "1000000000009}",
	      ID_WEB);
	CHECK(until("update web1"));
	CHECK(!has("new2"));

	/* The hook asks for a container before its create event. */
	journal[0] = '\0';
	struct engine_hook_waiter w = {.id = ID_HOOK, .netns = "/run/netns/netns-hook", .done = hook_done};
	source_engine_hook(s, &w);
	CHECK(!has("update") && hook_result == 99);
	CHECK(source_engine_find(s, ID_HOOK) == NULL);
	event(
	    "{\"Type\":\"container\",\"Action\":\"create\",\"Actor\":{\"ID\":\"%s\",\"Attributes\":{\"name\":"
	    "\"hooked\",\"app\":\"api\",\"podId\":\"\"}},\"timeNano\":1000000000010}",
	    ID_HOOK);
	CHECK(until("enforce hooked"));
	CHECK(has("update hooked /run/netns/netns-hook q=1 app=api engine=docker"));
	const struct engine_container *known = source_engine_find(s, ID_HOOK);
	CHECK(known && strcmp(known->name, "hooked") == 0);
	CHECK(enforcing && enforcing->done);
	if (enforcing)
		enforcing->done(enforcing, 0, NULL); /* the core: its table is in */
	CHECK(hook_result == 0);
	/* One the hook asks for after its create event, of the host's
	 * network: answered at once, not an endpoint. */
	event(
	    "{\"Type\":\"container\",\"Action\":\"create\",\"Actor\":{\"ID\":\"%s\",\"Attributes\":{\"name\":"
	    "\"skip\"}},\"timeNano\":1000000000011}",
	    ID_SKIP);
	settle(100);
	struct engine_container *sk = (struct engine_container *)source_engine_find(s, ID_SKIP);
	CHECK(sk != NULL);
	struct engine_hook_waiter w2 = {.id = ID_SKIP, .netns = "/run/netns/netns-skip", .done = hook_done};
	hook_result = 99;
	/* A --select the container does not match. */
	struct source_engine_options o2 = {
	    .kind = ENGINE_PODMAN, .socket = eng.path, .select = {"tier", NULL}};
	struct source *s2 = source_engine_new(&o2);
	s2->sink = &sink;
	CHECK(s2->ops->start(s2, loop, false) == 0);
	CHECK(until("set_all"));
	event(
	    "{\"Type\":\"container\",\"Action\":\"create\",\"Actor\":{\"ID\":\"%s\",\"Attributes\":{\"name\":"
	    "\"skip\"}},\"timeNano\":1000000000012}",
	    ID_SKIP);
	settle(100);
	source_engine_hook(s2, &w2);
	CHECK(hook_result == 1 && strstr(hook_error, "not selected"));
	/* A hook given up on: cancelled with the core. */
	struct engine_hook_waiter w3 = {.id = ID_HOOK, .netns = "/run/netns/netns-hook", .done = hook_done};
	source_engine_hook(s, &w3);
	CHECK(has("enforce hooked"));
	source_engine_hook_cancel(s, &w3);
	CHECK(has("cancel hooked"));

	s2->ops->free(s2);
	s->ops->free(s);
	loop_free(loop);
	unlink(eng.path);
}

/* The engine's error message is cut to fit, and may be cut inside a
 * character: status still shows the source and its error, whole
 * characters only (json_pack refused it: the engine left status.json). */
TEST(an_engine_error_cut_inside_a_character_is_shown)
{
	char body[1024] = "{\"message\":\"";
	for (int i = 0; i < 200; i++)
		strcat(body, "\u00e9"); /* 2 bytes each: past any buffer of 256 */
	strcat(body, "\"}");
	eng.list_error = body;
	engine_listen(); /* the test before unlinked its socket */
	loop = loop_new();
	unsigned lists = eng.lists;
	struct source_engine_options o = {.kind = ENGINE_DOCKER, .socket = eng.path};
	struct source *s = source_engine_new(&o);
	s->sink = &sink;
	CHECK(s->ops->start(s, loop, false) == 0);
	json_t *st = NULL;
	for (int i = 0; i < 100 && eng.lists == lists; i++)
		settle(50);
	for (int i = 0; i < 100; i++) {
		json_decref(st);
		st = s->ops->status(s);
		if (json_string_value(json_object_get(st, "error")))
			break;
		settle(50);
	}
	const char *err = json_string_value(json_object_get(st, "error"));
	CHECK(st != NULL);
	CHECK(err && strstr(err, "listing containers: \u00e9\u00e9"));
	json_decref(st);
	eng.list_error = NULL;
	s->ops->free(s);
	loop_free(loop);
	unlink(eng.path);
}

/* Created before the agent came (no create event; not in the list, which
 * has the running ones only), started after: Docker says `network
 * connect`, mounts its namespace, then says `start`. The namespace is
 * known before the container's name and labels are: quarantined whole
 * until they are, not reported under no name (that crashed the agent). */
TEST(a_namespace_born_for_a_container_whose_create_was_not_seen)
{
	pthread_mutex_lock(&eng.lock);
	if (eng.stream_fd >= 0)
		close(eng.stream_fd);
	eng.stream_fd = -1;
	eng.n = 0;
	pthread_mutex_unlock(&eng.lock);
	journal[0] = '\0';
	engine_listen();
	ctr_add(ID_LATE, "late1", false, "net1", "\"app\":\"web\"");
	loop = loop_new();
	struct source_engine_options o = {.kind = ENGINE_DOCKER, .socket = eng.path};
	struct source *s = source_engine_new(&o);
	s->sink = &sink;
	CHECK(s->ops->start(s, loop, false) == 0);
	CHECK(until("set_all"));
	event("{\"Type\":\"network\",\"Action\":\"connect\",\"Actor\":{\"ID\":\"%s\",\"Attributes\":{"
	      "\"container\":\"%s\",\"name\":\"net1\",\"type\":\"bridge\"}},\"timeNano\":2000000000000}",
	      "bbbb000000000000000000000000000000000000000000000000000000000001", ID_LATE);
	settle(100);
	source_engine_namespace_seen(s, "/run/docker/netns/aaaa00000000");
	CHECK(has("quarantine /run/docker/netns/aaaa00000000"));
	CHECK(!has("update"));
	/* Its start event names it: reported, quarantined until its table. */
	ctr(ID_LATE)->running = true;
	event(
	    "{\"Type\":\"container\",\"Action\":\"start\",\"Actor\":{\"ID\":\"%s\",\"Attributes\":{\"name\":"
	    "\"late1\"}},\"timeNano\":2000000000001}",
	    ID_LATE);
	CHECK(until("update late1 /run/docker/netns/aaaa00000000 q=1 app=web"));
	s->ops->free(s);
	loop_free(loop);
	unlink(eng.path);
}

/* A container started under a name that cannot be an endpoint's (64
 * characters: Docker takes it) must not run without rules: its namespace
 * gets the quarantine table, as any new container's does until its own
 * comes (it was left without any table: a way around every policy). */
TEST(a_container_started_under_a_name_no_endpoint_may_have_is_isolated)
{
	static const char long_name[] = "x123456789012345678901234567890123456789012345678901234567890123";
	pthread_mutex_lock(&eng.lock);
	if (eng.stream_fd >= 0)
		close(eng.stream_fd);
	eng.stream_fd = -1;
	eng.n = 0;
	pthread_mutex_unlock(&eng.lock);
	journal[0] = '\0';
	engine_listen();
	loop = loop_new();
	struct source_engine_options o = {.kind = ENGINE_DOCKER, .socket = eng.path};
	struct source *s = source_engine_new(&o);
	s->sink = &sink;
	CHECK(s->ops->start(s, loop, false) == 0);
	CHECK(until("set_all"));
	ctr_add(ID_LONG, long_name, true, "net1", "\"app\":\"web\"");
	event(
	    "{\"Type\":\"container\",\"Action\":\"create\",\"Actor\":{\"ID\":\"%s\",\"Attributes\":{\"name\":"
	    "\"%s\",\"app\":\"web\"}},\"timeNano\":3000000000000}",
	    ID_LONG, long_name);
	event(
	    "{\"Type\":\"container\",\"Action\":\"start\",\"Actor\":{\"ID\":\"%s\",\"Attributes\":{\"name\":"
	    "\"%s\"}},\"timeNano\":3000000000001}",
	    ID_LONG, long_name);
	CHECK(until("quarantine /run/docker/netns/cccc00000000"));
	CHECK(!has("update"));
	/* Said once, not at every inspect. */
	journal[0] = '\0';
	event("{\"Type\":\"network\",\"Action\":\"connect\",\"Actor\":{\"ID\":\"%s\",\"Attributes\":{"
	      "\"container\":\"%s\",\"name\":\"net2\",\"type\":\"bridge\"}},\"timeNano\":3000000000002}",
	      "bbbb000000000000000000000000000000000000000000000000000000000002", ID_LONG);
	settle(200);
	CHECK(!has("quarantine"));
	s->ops->free(s);
	loop_free(loop);
	unlink(eng.path);
}

/* An event the agent cannot read (malformed, or longer than it keeps: a
 * container's labels are the engine's to size) may have been the start of
 * a container: the list is asked for at once, not at the next reconcile,
 * and a container found running that was not running before started
 * while the agent could not see it: quarantined until its table comes,
 * like one seen starting (it was reported bare, and ran without rules
 * until the controller compiled its name). */
TEST(a_container_started_unseen_is_listed_at_once_and_quarantined)
{
	pthread_mutex_lock(&eng.lock);
	if (eng.stream_fd >= 0)
		close(eng.stream_fd);
	eng.stream_fd = -1;
	eng.n = 0;
	eng.lists = 0;
	pthread_mutex_unlock(&eng.lock);
	journal[0] = '\0';
	engine_listen();
	ctr_add(ID_WEB, "web1", true, "net1", "\"app\":\"web\"");
	loop = loop_new();
	struct source_engine_options o = {.kind = ENGINE_DOCKER, .socket = eng.path};
	struct source *s = source_engine_new(&o);
	s->sink = &sink;
	CHECK(s->ops->start(s, loop, false) == 0);
	CHECK(until("set_all"));
	CHECK(has("update web1 /run/docker/netns/aaaa00000000 q=0"));
	journal[0] = '\0';
	ctr_add(ID_BLIND, "blind1", true, "net1", "\"app\":\"db\"");
	event("{\"Type\":\"container\",\"Action\":\"start\",\"Actor\":{\"ID\":\"NOT HEX\"}}");
	CHECK(until("update blind1"));
	CHECK(has("update blind1 /run/docker/netns/dddd00000000 q=1 app=db"));
	CHECK(!has("update web1 /run/docker/netns/aaaa00000000 q=1")); /* running before: as it was */
	s->ops->free(s);
	loop_free(loop);
	unlink(eng.path);
}

/* An inspect the engine answers with what is not one is refused and
 * counted; what the last good one said stays as it was (the refused
 * answer's record was released uninitialised: on the stack, what the
 * previous inspect had left there, now the container's own, so its
 * strings were freed under it). */
TEST(an_inspect_that_is_not_one_leaves_what_was_known_alone)
{
	pthread_mutex_lock(&eng.lock);
	if (eng.stream_fd >= 0)
		close(eng.stream_fd);
	eng.stream_fd = -1;
	eng.n = 0;
	pthread_mutex_unlock(&eng.lock);
	journal[0] = '\0';
	engine_listen();
	ctr_add(ID_WEB, "web1", true, "net1", "\"app\":\"web\"");
	loop = loop_new();
	struct source_engine_options o = {.kind = ENGINE_DOCKER, .socket = eng.path};
	struct source *s = source_engine_new(&o);
	s->sink = &sink;
	CHECK(s->ops->start(s, loop, false) == 0);
	CHECK(until("set_all web1"));
	for (int round = 0; round < 3; round++) {
		/* A good inspect, then a bad one from the same place. */
		journal[0] = '\0';
		event("{\"Type\":\"network\",\"Action\":\"connect\",\"Actor\":{\"ID\":\"%s\",\"Attributes\":{"
		      "\"container\":\"%s\",\"name\":\"net1\",\"type\":\"bridge\"}},\"timeNano\":%d}",
		      "bbbb000000000000000000000000000000000000000000000000000000000003", ID_WEB,
		      4000 + 2 * round);
		CHECK(until("update web1 /run/docker/netns/aaaa00000000 q=0 app=web"));
		ctr(ID_WEB)->bad_inspect = true;
		event("{\"Type\":\"network\",\"Action\":\"connect\",\"Actor\":{\"ID\":\"%s\",\"Attributes\":{"
		      "\"container\":\"%s\",\"name\":\"net2\",\"type\":\"bridge\"}},\"timeNano\":%d}",
		      "bbbb000000000000000000000000000000000000000000000000000000000004", ID_WEB,
		      4001 + 2 * round);
		settle(100);
		ctr(ID_WEB)->bad_inspect = false;
	}
	json_t *st = s->ops->status(s);
	CHECK(json_integer_value(json_object_get(st, "malformed")) == 3);
	CHECK(json_integer_value(json_object_get(st, "endpoints")) == 1);
	json_decref(st);
	const struct engine_container *known = source_engine_find(s, ID_WEB);
	CHECK(known && strcmp(known->name, "web1") == 0 && known->sandbox_key &&
	      strcmp(known->sandbox_key, "/run/docker/netns/aaaa00000000") == 0);
	s->ops->free(s);
	loop_free(loop);
	unlink(eng.path);
}

static long long status_int(struct source *s, const char *key)
{
	json_t *st = s->ops->status(s);
	long long v = json_integer_value(json_object_get(st, key));
	json_decref(st);
	return v;
}

/* An engine that opens the event stream and ends it at once, again and
 * again (an events backend that fails): each reconnect lists and inspects
 * every container, so the wait between them grows as after any failure;
 * it is back to the shortest only once a stream has stayed open. (It went
 * back to 0.2 s at every opening: the agent listed and inspected all the
 * containers five times a second, for ever.) */
/* A fresh fake engine holding web1, whose events streams behave as asked,
 * and a Docker source started on a new loop against it. */
static struct source *engine_with_web1(bool close_streams, bool mute_streams, unsigned events_answer_ms)
{
	pthread_mutex_lock(&eng.lock);
	if (eng.stream_fd >= 0)
		close(eng.stream_fd);
	eng.stream_fd = -1;
	eng.n = 0;
	eng.close_streams = close_streams;
	eng.mute_streams = mute_streams;
	eng.streams = 0;
	eng.lists = 0;
	pthread_mutex_unlock(&eng.lock);
	journal[0] = '\0';
	engine_listen();
	ctr_add(ID_WEB, "web1", true, "net1", "\"app\":\"web\"");
	loop = loop_new();
	struct source_engine_options o = {
	    .kind = ENGINE_DOCKER, .socket = eng.path, .events_answer_ms = events_answer_ms};
	struct source *s = source_engine_new(&o);
	s->sink = &sink;
	CHECK(s->ops->start(s, loop, false) == 0);
	return s;
}

TEST(a_stream_that_ends_as_it_opens_is_reconnected_to_with_backoff)
{
	struct source *s = engine_with_web1(true, false, 0);
	int64_t give_up = clock_mono_ms() + 15000;
	while (status_int(s, "reconnects") < 4 && clock_mono_ms() < give_up)
		settle(20);
	CHECK(status_int(s, "reconnects") >= 4);
	CHECK(status_int(s, "retry_ms") >= 1600);
	pthread_mutex_lock(&eng.lock);
	eng.close_streams = false;
	pthread_mutex_unlock(&eng.lock);
	s->ops->free(s);
	loop_free(loop);
	unlink(eng.path);
}

TEST(an_events_request_never_answered_is_given_up_and_made_again)
{
	struct source *s = engine_with_web1(false, true, 300);
	int64_t give_up = clock_mono_ms() + 10000;
	while (status_int(s, "reconnects") < 2 && clock_mono_ms() < give_up)
		settle(20);
	CHECK(status_int(s, "reconnects") >= 2);
	pthread_mutex_lock(&eng.lock);
	CHECK(eng.streams >= 2);
	CHECK(eng.lists == 0); /* never "following": no list without the stream */
	pthread_mutex_unlock(&eng.lock);
	json_t *st = s->ops->status(s);
	const char *error = json_string_value(json_object_get(st, "error"));
	CHECK(error && strstr(error, "not answered within 300 ms"));
	json_decref(st);
	/* The engine answers again: the source follows it. */
	pthread_mutex_lock(&eng.lock);
	eng.mute_streams = false;
	pthread_mutex_unlock(&eng.lock);
	give_up = clock_mono_ms() + 10000;
	while (!strstr(journal, "web1") && clock_mono_ms() < give_up)
		settle(20);
	CHECK(strstr(journal, "web1") != NULL);
	s->ops->free(s);
	loop_free(loop);
	unlink(eng.path);
}

int main(void)
{
	engine_http_global_init();
	return test_main();
}
