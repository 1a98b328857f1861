/* The container engines' API as it was recorded from the real Docker 20.10
 * and podman 4.3 of the test machine (tests/fixtures/engine/record.sh):
 * pings, lists, inspects and event streams parsed, what an endpoint is,
 * and what must be refused. No root, no engine. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine-json.h"
#include "test.h"

static char *slurp(const char *name, size_t *len)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s", ENGINE_FIXTURES, name);
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "  cannot open %s\n", path);
		return NULL;
	}
	char *buf = malloc(1 << 20);
	*len = fread(buf, 1, (1 << 20) - 1, f);
	buf[*len] = '\0';
	fclose(f);
	return buf;
}

static bool inspect_file(const char *name, struct engine_container *c)
{
	size_t len;
	char err[256];
	char *text = slurp(name, &len);
	int r = text ? engine_inspect_parse(text, len, c, err, sizeof(err)) : -1;
	if (r < 0)
		fprintf(stderr, "  %s: %s\n", name, text ? err : "missing");
	free(text);
	return r == 0;
}

static const char *label(const struct engine_labels *l, const char *key)
{
	return label_set_get(engine_labels_set(l), key);
}

/* ---- /_ping ---- */

static void ping(const char *file, bool podman)
{
	size_t len;
	char *text = slurp(file, &len), v[32] = "";
	bool found = false, libpod = false;
	unsigned minor = 0;
	for (char *line = text; line && *line;) {
		char *nl = strchr(line, '\n');
		size_t n = nl ? (size_t)(nl - line) + 1 : strlen(line);
		found |= engine_header(line, n, "api-version", v, sizeof(v));
		char w[32];
		libpod |= engine_header(line, n, "Libpod-Api-Version", w, sizeof(w));
		line += n;
	}
	CHECK(found);
	CHECK_STR(v, "1.41");
	CHECK(engine_api_version(v, &minor) == 0 && minor == 41);
	CHECK(libpod == podman);
	free(text);
}

TEST(ping_docker)
{
	ping("docker-ping.txt", false);
}

TEST(ping_podman)
{
	ping("podman-ping.txt", true);
}

TEST(api_version_syntax)
{
	unsigned m;
	CHECK(engine_api_version("1.25", &m) == 0 && m == 25);
	CHECK(engine_api_version("2.1", &m) < 0);
	CHECK(engine_api_version("1.", &m) < 0);
	CHECK(engine_api_version("1.41x", &m) < 0);
	CHECK(engine_api_version("1.4100", &m) < 0);
	CHECK(engine_api_version("", &m) < 0);
	char v[8];
	CHECK(!engine_header("Api-Versio: 1", 13, "Api-Version", v, sizeof(v)));
	CHECK(engine_header("API-VERSION:   1.41  \r\n", 23, "Api-Version", v, sizeof(v)));
	CHECK_STR(v, "1.41");
	CHECK(engine_header("Api-Version: 1.41234567890\r\n", 28, "Api-Version", v, sizeof(v)));
	CHECK(strlen(v) == sizeof(v) - 1); /* cut, never overrun */
}

/* ---- lists ---- */

static const struct engine_container *find(const struct engine_container *v, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i].name, name) == 0)
			return &v[i];
	return NULL;
}

TEST(list_docker_and_podman)
{
	static const char *const files[] = {"docker-containers.json", "podman-containers.json"};
	for (int k = 0; k < 2; k++) {
		size_t len, n = 0;
		char err[256];
		struct engine_container *v = NULL;
		char *text = slurp(files[k], &len);
		CHECK(text && engine_list_parse(text, len, &v, &n, err, sizeof(err)) == 0);
		const struct engine_container *web = find(v, n, "bhrec-web"),
					      *host = find(v, n, "bhrec-host");
		CHECK(web && web->running && strlen(web->id) == 64);
		CHECK(web && label(&web->labels, "app") && strcmp(label(&web->labels, "app"), "web") == 0);
		/* Docker's list says the network mode, podman's does not. */
		if (k == 0)
			CHECK(host && host->network_mode && strcmp(host->network_mode, "host") == 0);
		else
			CHECK(host && !host->network_mode);
		CHECK(!find(v, n, "bhrec-gone")); /* created, not running: not listed */
		for (size_t i = 0; i < n; i++)
			engine_container_release(&v[i]);
		free(v);
		free(text);
	}
}

/* ---- inspects: what an endpoint is ---- */

static enum engine_verdict judge(const char *file, struct engine_endpoint *ep, enum engine_kind kind)
{
	struct engine_container c;
	char why[256];
	memset(ep, 0, sizeof(*ep));
	if (!inspect_file(file, &c))
		return (enum engine_verdict) - 1;
	enum engine_verdict v = engine_endpoint_of(&c, kind, NULL, ep, why, sizeof(why));
	engine_container_release(&c);
	return v;
}

static void web_endpoint(const char *file, enum engine_kind kind, const char *netns_prefix)
{
	struct engine_endpoint ep;
	CHECK(judge(file, &ep, kind) == ENGINE_ENDPOINT);
	CHECK_STR(ep.name, "bhrec-web");
	CHECK(ep.netns && strncmp(ep.netns, netns_prefix, strlen(netns_prefix)) == 0);
	CHECK_STR(label(&ep.labels, "app"), "web");
	CHECK_STR(label(&ep.labels, "tier"), "front");
	CHECK_STR(label(&ep.labels, ENGINE_LABEL), engine_kind_name(kind));
	/* A path is no label value: the key is kept, its value is "". */
	CHECK_STR(label(&ep.labels, "com.docker.compose.project.working_dir"), "");
	CHECK(strstr(ep.notes, "com.docker.compose.project.working_dir") != NULL);
	CHECK(ep.n_ports == 1 && strcmp(ep.ports[0].name, "http") == 0 && ep.ports[0].proto == 6 &&
	      ep.ports[0].port == 8080);
	engine_endpoint_release(&ep);
}

TEST(inspect_docker)
{
	struct engine_endpoint ep;
	web_endpoint("docker-inspect-web.json", ENGINE_DOCKER, "/tmp/bhd/exec/netns/");
	CHECK(judge("docker-inspect-joined.json", &ep, ENGINE_DOCKER) == ENGINE_JOINS_ANOTHER);
	CHECK(judge("docker-inspect-host.json", &ep, ENGINE_DOCKER) == ENGINE_HOST_NETWORK);
	CHECK(judge("docker-inspect-gone.json", &ep, ENGINE_DOCKER) == ENGINE_NOT_RUNNING);
	/* Docker makes a namespace for --network none too. */
	CHECK(judge("docker-inspect-none.json", &ep, ENGINE_DOCKER) == ENGINE_ENDPOINT);
	CHECK(ep.netns && strncmp(ep.netns, "/tmp/bhd/exec/netns/", 20) == 0);
	CHECK_STR(label(&ep.labels, "app"), "batch");
	engine_endpoint_release(&ep);
}

TEST(inspect_podman)
{
	struct engine_endpoint ep;
	web_endpoint("podman-inspect-web.json", ENGINE_PODMAN, "/run/netns/netns-");
	/* podman gives the joined container the other's SandboxKey: the
	 * network mode says it is not a second endpoint. */
	CHECK(judge("podman-inspect-joined.json", &ep, ENGINE_PODMAN) == ENGINE_JOINS_ANOTHER);
	CHECK(judge("podman-inspect-host.json", &ep, ENGINE_PODMAN) == ENGINE_HOST_NETWORK);
	CHECK(judge("podman-inspect-gone.json", &ep, ENGINE_PODMAN) == ENGINE_NOT_RUNNING);
	/* No SandboxKey for --network none: the process's namespace. */
	CHECK(judge("podman-inspect-none.json", &ep, ENGINE_PODMAN) == ENGINE_ENDPOINT);
	CHECK(ep.netns && strncmp(ep.netns, "/proc/", 6) == 0 && strstr(ep.netns, "/ns/net"));
	engine_endpoint_release(&ep);
}

TEST(restart_is_a_new_namespace)
{
	static const char *const k[] = {"docker", "podman"};
	for (int i = 0; i < 2; i++) {
		struct engine_container a, b;
		char f1[64], f2[64];
		snprintf(f1, sizeof(f1), "%s-inspect-web.json", k[i]);
		snprintf(f2, sizeof(f2), "%s-inspect-restarted.json", k[i]);
		CHECK(inspect_file(f1, &a) && inspect_file(f2, &b));
		CHECK(strcmp(a.id, b.id) == 0);
		CHECK_STR(b.name, "bhrec-web2");
		CHECK(a.sandbox_key && b.sandbox_key && strcmp(a.sandbox_key, b.sandbox_key) != 0);
		engine_container_release(&a);
		engine_container_release(&b);
	}
}

TEST(missing_container)
{
	size_t len;
	char msg[128], err[256];
	struct engine_container c;
	char *text = slurp("docker-inspect-missing.json", &len);
	engine_error_message(text, len, msg, sizeof(msg));
	CHECK_STR(msg, "No such container: bhrec-nosuch");
	CHECK(engine_inspect_parse(text, len, &c, err, sizeof(err)) == -EINVAL);
	free(text);
	text = slurp("podman-inspect-missing.json", &len);
	engine_error_message(text, len, msg, sizeof(msg));
	CHECK(strstr(msg, "no such container") != NULL);
	free(text);
}

/* ---- events ---- */

struct stream {
	enum engine_kind kind;
	struct engine_event ev[64];
	size_t n, refused;
};

static void take(void *arg, const char *line, size_t len)
{
	struct stream *s = arg;
	char err[256];
	if (s->n == 64)
		return;
	int r = engine_event_parse(line, len, &s->ev[s->n], err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "  refused: %s\n", err);
		s->refused++;
	} else if (r == 0) {
		s->n++;
	}
}

/* Feeds the file in pieces of step bytes, as a stream comes. */
static void events_file(const char *file, size_t step, struct stream *s)
{
	size_t len;
	char *text = slurp(file, &len);
	struct engine_lines l;
	engine_lines_init(&l, ENGINE_EVENT_MAX);
	for (size_t off = 0; text && off < len; off += step)
		engine_lines_feed(&l, text + off, len - off < step ? len - off : step, take, s);
	engine_lines_release(&l);
	free(text);
}

static void release_stream(struct stream *s)
{
	for (size_t i = 0; i < s->n; i++)
		engine_event_release(&s->ev[i]);
}

static size_t count(const struct stream *s, enum engine_action a)
{
	size_t n = 0;
	for (size_t i = 0; i < s->n; i++)
		n += s->ev[i].action == a;
	return n;
}

TEST(events_docker)
{
	struct stream s = {0}, t = {0};
	events_file("docker-events.jsonl", 1 << 20, &s);
	events_file("docker-events.jsonl", 7, &t); /* cut anywhere: the same events */
	CHECK(s.refused == 0 && s.n == t.n && s.n > 10);
	CHECK(s.ev[0].action == ENGINE_EV_CREATE && strcmp(s.ev[0].name, "bhrec-web") == 0);
	CHECK_STR(label(&s.ev[0].labels, "app"), "web");
	CHECK(!label(&s.ev[0].labels, "image") && !label(&s.ev[0].labels, "name"));
	/* Docker: the network is the actor; the container an attribute. */
	CHECK(s.ev[1].action == ENGINE_EV_CONNECT && strcmp(s.ev[1].id, s.ev[0].id) == 0);
	CHECK_STR(s.ev[1].net_driver, "bridge");
	CHECK(s.ev[1].name == NULL);
	CHECK(s.ev[2].action == ENGINE_EV_START && s.ev[2].time_ns > s.ev[1].time_ns);
	bool renamed = false, host = false;
	for (size_t i = 0; i < s.n; i++) {
		if (s.ev[i].action == ENGINE_EV_RENAME) {
			renamed = true;
			CHECK_STR(s.ev[i].name, "bhrec-web2");
			CHECK_STR(s.ev[i].old_name, "bhrec-web");
		}
		host |= s.ev[i].action == ENGINE_EV_CONNECT && strcmp(s.ev[i].net_driver, "host") == 0;
		CHECK(strcmp(s.ev[i].id, t.ev[i].id) == 0 && s.ev[i].action == t.ev[i].action);
	}
	CHECK(renamed && host);
	CHECK(count(&s, ENGINE_EV_DIE) == 3 && count(&s, ENGINE_EV_DESTROY) == 3);
	release_stream(&s);
	release_stream(&t);
}

TEST(events_podman)
{
	struct stream s = {0};
	events_file("podman-events.jsonl", 13, &s);
	CHECK(s.refused == 0 && s.n > 10);
	CHECK(s.ev[0].action == ENGINE_EV_CREATE && strcmp(s.ev[0].name, "bhrec-web") == 0);
	CHECK_STR(label(&s.ev[0].labels, "bulkhead.io/port.http"), "tcp/8080");
	CHECK(!label(&s.ev[0].labels, "podId") && !label(&s.ev[0].labels, "containerExitCode"));
	/* podman: no network event at start; "remove" for Docker's destroy. */
	CHECK(s.ev[1].action == ENGINE_EV_START);
	bool renamed = false, disconnected = false;
	for (size_t i = 0; i < s.n; i++) {
		if (s.ev[i].action == ENGINE_EV_RENAME) {
			renamed = true;
			CHECK_STR(s.ev[i].name, "bhrec-web2");
			CHECK(s.ev[i].old_name == NULL);
		}
		if (s.ev[i].action == ENGINE_EV_DISCONNECT) {
			disconnected = true;
			CHECK(strcmp(s.ev[i].id, s.ev[0].id) == 0); /* the actor is the container */
			CHECK_STR(s.ev[i].name, "bhrec-web2");
		}
	}
	CHECK(renamed && disconnected);
	CHECK(count(&s, ENGINE_EV_DESTROY) == 3);
	release_stream(&s);
}

TEST(events_refused_or_ignored)
{
	struct engine_event ev;
	char err[256];
	static const char *const bad[] = {
	    "{",
	    "[]",
	    "{\"Type\":\"container\",\"Action\":\"start\"}",
	    "{\"Type\":\"container\",\"Action\":\"start\",\"Actor\":{\"ID\":\"XYZ\"}}",
	    "{\"Type\":\"container\",\"Action\":\"start\",\"Actor\":{\"ID\":\"abc\",\"Attributes\":{\"a\":1}}"
	    "}",
	    "{\"Type\":\"container\",\"Action\":\"start\",\"Actor\":{\"ID\":\"abc\",\"Attributes\":[]}}",
	    "{\"Type\":\"container\",\"Action\":\"rename\",\"Actor\":{\"ID\":\"abc\",\"Attributes\":{"
	    "\"oldName\":\"/a b\"}}}",
	    "{\"Type\":\"network\",\"Action\":\"connect\",\"Actor\":{\"ID\":\"abc\",\"Attributes\":{"
	    "\"container\":7}}}",
	    "{\"Type\":\"container\",\"Action\":\"die\",\"Actor\":{\"ID\":\"abc\",\"Attributes\":{\"name\":"
	    "\"\"}}}",
	};
	for (size_t i = 0; i < BH_ARRAY_SIZE(bad); i++) {
		int r = engine_event_parse(bad[i], strlen(bad[i]), &ev, err, sizeof(err));
		if (r != -EINVAL)
			fprintf(stderr, "  accepted: %s\n", bad[i]);
		CHECK(r == -EINVAL && err[0]);
	}
	static const char *const other[] = {
	    "{\"Type\":\"image\",\"Action\":\"pull\",\"Actor\":{\"ID\":\"\"}}",
	    "{\"Type\":\"container\",\"Action\":\"exec_start: sh\",\"Actor\":{\"ID\":\"abc\"}}",
	    "{\"Type\":\"network\",\"Action\":\"create\",\"Actor\":{\"ID\":\"abc\"}}",
	};
	for (size_t i = 0; i < BH_ARRAY_SIZE(other); i++)
		CHECK(engine_event_parse(other[i], strlen(other[i]), &ev, err, sizeof(err)) == 1);
	const char *died =
	    "{\"Type\":\"container\",\"Action\":\"died\",\"Actor\":{\"ID\":\"abc\"},\"time\":5}";
	CHECK(engine_event_parse(died, strlen(died), &ev, err, sizeof(err)) == 0);
	CHECK(ev.action == ENGINE_EV_DIE && ev.time_ns == 5000000000LL);
	engine_event_release(&ev);
}

static void count_line(void *arg, const char *line, size_t len)
{
	(*(unsigned *)arg)++;
	CHECK(strlen(line) == len);
}

TEST(lines_overlong_dropped)
{
	struct engine_lines l;
	unsigned n = 0;
	engine_lines_init(&l, 16);
	engine_lines_feed(&l, "short\n\n", 7, count_line, &n);
	CHECK(n == 1);
	engine_lines_feed(&l, "0123456789", 10, count_line, &n);
	engine_lines_feed(&l, "0123456789\nok\n", 14, count_line, &n); /* 20 bytes: dropped */
	CHECK(n == 2 && l.overlong == 1);
	engine_lines_feed(&l, "partial", 7, count_line, &n);
	engine_lines_reset(&l); /* the stream was cut */
	engine_lines_feed(&l, "x\n", 2, count_line, &n);
	CHECK(n == 3);
	engine_lines_release(&l);
}

/* ---- refusals ---- */

TEST(inspect_refused)
{
	struct engine_container c;
	char err[256];
	static const char *const bad[] = {
	    "",
	    "null",
	    "{\"Id\":\"abc\"}",
	    "{\"Id\":\"ABC\",\"Name\":\"/x\",\"State\":{\"Running\":true}}",
	    "{\"Id\":\"abc\",\"Name\":\"/\",\"State\":{\"Running\":true}}",
	    "{\"Id\":\"abc\",\"Name\":\"/x\",\"State\":{\"Running\":1}}",
	    "{\"Id\":\"abc\",\"Name\":\"/x\",\"State\":{\"Running\":true,\"Pid\":-1}}",
	    "{\"Id\":\"abc\",\"Name\":\"/"
	    "x\",\"State\":{\"Running\":true},\"Config\":{\"Labels\":{\"a\":false}}}",
	    "{\"Id\":\"abc\",\"Name\":\"/"
	    "x\",\"State\":{\"Running\":true},\"NetworkSettings\":{\"SandboxKey\":\"rel\"}}",
	    "{\"Id\":\"abc\",\"Name\":\"/x\",\"State\":{\"Running\":true},\"HostConfig\":[]}",
	    "{\"Id\":\"abc\",\"Id\":\"abd\",\"Name\":\"/x\",\"State\":{\"Running\":true}}",
	};
	for (size_t i = 0; i < BH_ARRAY_SIZE(bad); i++) {
		int r = engine_inspect_parse(bad[i], strlen(bad[i]), &c, err, sizeof(err));
		if (r != -EINVAL)
			fprintf(stderr, "  accepted: %s\n", bad[i]);
		CHECK(r == -EINVAL && err[0]);
	}
	const char *ok = "{\"Id\":\"abc\",\"Name\":\"/x\",\"State\":{\"Running\":true,\"Pid\":42},"
			 "\"Config\":{\"Labels\":null},\"NetworkSettings\":{\"SandboxKey\":\"\"}}";
	CHECK(engine_inspect_parse(ok, strlen(ok), &c, err, sizeof(err)) == 0);
	CHECK(c.pid == 42 && !c.sandbox_key && c.labels.n == 0);
	engine_container_release(&c);
}

TEST(endpoint_names_labels_ports)
{
	struct engine_endpoint ep;
	struct engine_select sel;
	const char *why;
	char w[256];
	char longname[80];
	memset(longname, 'a', 70);
	longname[70] = '\0';
	struct label lv[] = {
	    {ENGINE_LABEL, "forged"},
	    {"Bad Key", "x"},
	    {"bulkhead.io/port.dns", "udp/53"},
	    {"bulkhead.io/port.icmp", "icmp/8"},
	    {"bulkhead.io/port.web--x", "tcp/80"},
	    {"tier", "db"},
	};
	struct engine_container c = {
	    .id = "abc", .name = "db-1", .running = true, .pid = 7, .labels = {lv, BH_ARRAY_SIZE(lv)}};
	CHECK(engine_endpoint_of(&c, ENGINE_DOCKER, NULL, &ep, w, sizeof(w)) == ENGINE_ENDPOINT);
	CHECK_STR(ep.netns, "/proc/7/ns/net");
	CHECK_STR(label(&ep.labels, ENGINE_LABEL), "docker");
	CHECK(!label(&ep.labels, "Bad Key"));
	CHECK(ep.n_ports == 1 && strcmp(ep.ports[0].name, "dns") == 0 && ep.ports[0].port == 53);
	CHECK(strstr(ep.notes, "forged") || strstr(ep.notes, ENGINE_LABEL));
	CHECK(strstr(ep.notes, "icmp") && strstr(ep.notes, "web--x") && strstr(ep.notes, "Bad Key"));
	engine_endpoint_release(&ep);

	CHECK(engine_select_parse("tier=web", &sel, &why) == 0);
	CHECK(engine_endpoint_of(&c, ENGINE_DOCKER, &sel, &ep, w, sizeof(w)) == ENGINE_NOT_SELECTED);
	CHECK(engine_select_parse("tier", &sel, &why) == 0);
	CHECK(engine_endpoint_of(&c, ENGINE_DOCKER, &sel, &ep, w, sizeof(w)) == ENGINE_ENDPOINT);
	engine_endpoint_release(&ep);
	CHECK(engine_select_parse("=x", &sel, &why) < 0);
	CHECK(engine_select_parse("a b", &sel, &why) < 0);
	CHECK(engine_select_parse("tier=a/b", &sel, &why) < 0);

	c.name = longname;
	CHECK(engine_endpoint_of(&c, ENGINE_DOCKER, NULL, &ep, w, sizeof(w)) == ENGINE_BAD_NAME);
	c.name = "db-1";
	c.pid = 0;
	CHECK(engine_endpoint_of(&c, ENGINE_DOCKER, NULL, &ep, w, sizeof(w)) == ENGINE_NO_NAMESPACE);
}

/* ---- the mount table ---- */

static void seen(void *arg, const char *path)
{
	char *out = arg;
	strcat(out, path);
	strcat(out, ";");
}

TEST(mounts_docker_sandboxes)
{
	static const char text[] =
	    "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
	    "901 25 0:4 net:[4026532921] /run/docker/netns/18071797e27b rw shared:5 - nsfs nsfs rw\n"
	    "902 25 0:4 net:[4026532922] /run/docker/netns/default rw shared:5 - nsfs nsfs rw\n"
	    "903 25 0:4 net:[4026532923] /run/netns/netns-c6f590ea rw shared:5 - nsfs nsfs rw\n"
	    "904 25 0:4 net:[4026532924] /run/docker/netns/0123456789ab rw - tmpfs tmpfs rw\n"
	    "905 25 0:4 net:[4026532925] /tmp/my\\040dir/netns/abcdefabcdef rw - nsfs nsfs rw\n"
	    "906 25 0:4 net:[4026532926] /run/docker/netns/abcdefabcdef0 rw - nsfs nsfs rw";
	char out[512] = "";
	engine_mounts_scan(text, strlen(text), "/run/docker/netns", seen, out);
	CHECK_STR(out, "/run/docker/netns/18071797e27b;");
	out[0] = '\0';
	engine_mounts_scan(text, strlen(text), "/tmp/my dir/netns", seen, out);
	CHECK_STR(out, "/tmp/my dir/netns/abcdefabcdef;");
	out[0] = '\0';
	engine_mounts_scan("garbage", 7, "/run/docker/netns", seen, out);
	engine_mounts_scan("1 2 3", 5, "/run/docker/netns", seen, out);
	CHECK_STR(out, "");
}

int main(void)
{
	return test_main();
}
