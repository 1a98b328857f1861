/* The OCI hook's messages and what it reads from the runtime
 * (agent/hook-proto.c): round trips, and every field of a hostile request
 * or reply refused; the OCI state and config.json as runc and podman
 * write them. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bulkhead/log.h"
#include "hook-proto.h"
#include "test.h"

static int decode_req(const char *s, struct hook_request *r, char *err)
{
	return hook_request_decode(s, strlen(s), r, err, 256);
}

TEST(request_and_reply_round_trip)
{
	struct hook_request r = {.pid = 4242, .timeout_ms = 4000}, back;
	char buf[HOOK_MSG_MAX], err[256];
	size_t len;
	snprintf(r.id, sizeof(r.id), "3d297e129565823c327e6d1fd48ace613d3c609aecc54ab481f73d448cd65802");
	snprintf(r.netns, sizeof(r.netns), "/run/netns/netns-2cf0edcc-d8e4-eea8-65ec-02cfed0fdcbc");
	CHECK(hook_request_encode(&r, buf, sizeof(buf), &len) == 0);
	CHECK(hook_request_decode(buf, len, &back, err, sizeof(err)) == 0);
	CHECK_STR(back.id, r.id);
	CHECK_STR(back.netns, r.netns);
	CHECK(back.pid == 4242 && back.timeout_ms == 4000);
	/* No netns: none. */
	r.netns[0] = '\0';
	CHECK(hook_request_encode(&r, buf, sizeof(buf), &len) == 0);
	CHECK(strstr(buf, "netns") == NULL || (size_t)(strstr(buf, "netns") - buf) > len);
	CHECK(hook_request_decode(buf, len, &back, err, sizeof(err)) == 0 && back.netns[0] == '\0');

	for (int res = 0; res < HOOK_RESULT_COUNT; res++) {
		struct hook_reply y = {.result = res}, yb;
		snprintf(y.endpoint, sizeof(y.endpoint), "web-1");
		snprintf(y.reason, sizeof(y.reason), "its table was not in place within 4000 ms");
		CHECK(hook_reply_encode(&y, buf, sizeof(buf), &len) == 0);
		CHECK(hook_reply_decode(buf, len, &yb, err, sizeof(err)) == 0);
		CHECK(yb.result == y.result);
		CHECK_STR(yb.endpoint, "web-1");
		CHECK_STR(yb.reason, y.reason);
		CHECK(yb.bundle[0] == '\0');
	}
}

TEST(a_reply_reason_is_cut_to_fit_and_never_inside_a_character)
{
	struct hook_reply y = {.result = HOOK_ISOLATE}, yb;
	char buf[HOOK_MSG_MAX], err[256];
	size_t len;
	/* A reason of 2-byte characters that ends exactly on the field's
	 * edge: the last one must go whole. */
	for (size_t i = 0; i + 2 < sizeof(y.reason); i += 2)
		memcpy(y.reason + i, "\xc3\xa9", 2);
	y.reason[sizeof(y.reason) - 1] = '\0';
	y.reason[sizeof(y.reason) - 2] = '\xc3'; /* a lead byte whose sequence was cut */
	CHECK(hook_reply_encode(&y, buf, sizeof(buf), &len) == 0);
	CHECK(hook_reply_decode(buf, len, &yb, err, sizeof(err)) == 0);
	CHECK(strlen(yb.reason) > 400 && strlen(yb.reason) % 2 == 0);
}

TEST(hostile_requests_are_refused_with_a_reason)
{
	static const struct {
		const char *msg, *why;
	} bad[] = {
	    {"", "not JSON"},
	    {"[1]", "not a JSON object"},
	    {"{\"id\":\"a\",\"pid\":1,\"timeout_ms\":5}", "version"},
	    {"{\"version\":2,\"id\":\"a\",\"pid\":1,\"timeout_ms\":5}", "version"},
	    {"{\"version\":1,\"pid\":1,\"timeout_ms\":5}", "\"id\" is missing"},
	    {"{\"version\":1,\"id\":7,\"pid\":1,\"timeout_ms\":5}", "\"id\" is not a string"},
	    {"{\"version\":1,\"id\":\"\",\"pid\":1,\"timeout_ms\":5}", "not a container id"},
	    {"{\"version\":1,\"id\":\"../etc\",\"pid\":1,\"timeout_ms\":5}", "not a container id"},
	    {"{\"version\":1,\"id\":\"a b\",\"pid\":1,\"timeout_ms\":5}", "not a container id"},
	    {"{\"version\":1,\"id\":\"a\\u0000b\",\"pid\":1,\"timeout_ms\":5}", "NUL"},
	    {"{\"version\":1,\"id\":\"a\",\"id\":\"b\",\"pid\":1,\"timeout_ms\":5}", "not JSON"},
	    {"{\"version\":1,\"id\":\"a\",\"pid\":0,\"timeout_ms\":5}", "pid"},
	    {"{\"version\":1,\"id\":\"a\",\"pid\":-3,\"timeout_ms\":5}", "pid"},
	    {"{\"version\":1,\"id\":\"a\",\"pid\":1.5,\"timeout_ms\":5}", "pid"},
	    {"{\"version\":1,\"id\":\"a\",\"pid\":1}", "timeout_ms"},
	    {"{\"version\":1,\"id\":\"a\",\"pid\":1,\"timeout_ms\":0}", "timeout_ms"},
	    {"{\"version\":1,\"id\":\"a\",\"pid\":1,\"timeout_ms\":600001}", "timeout_ms"},
	    {"{\"version\":1,\"id\":\"a\",\"pid\":1,\"timeout_ms\":5,\"netns\":\"run/netns/x\"}", "netns"},
	    {"{\"version\":1,\"id\":\"a\",\"pid\":1,\"timeout_ms\":5,\"netns\":\"/run/\\u001b[2J\"}",
	     "netns"},
	    {"{\"version\":1,\"id\":\"a\",\"pid\":1,\"timeout_ms\":5,\"netns\":[]}", "netns"},
	};
	struct hook_request r;
	char err[256];
	for (size_t i = 0; i < BH_ARRAY_SIZE(bad); i++) {
		err[0] = '\0';
		int rc = decode_req(bad[i].msg, &r, err);
		if (rc != -EINVAL || !strstr(err, bad[i].why)) {
			fprintf(stderr, "  %s: %d \"%s\"\n", bad[i].msg, rc, err);
			CHECK(false);
		}
	}
	/* A longest id and a request as long as allowed, no longer. */
	char msg[HOOK_MSG_MAX + 64], id[HOOK_ID_MAX + 2];
	memset(id, 'a', HOOK_ID_MAX);
	id[HOOK_ID_MAX] = '\0';
	snprintf(msg, sizeof(msg), "{\"version\":1,\"id\":\"%s\",\"pid\":1,\"timeout_ms\":5}", id);
	CHECK(decode_req(msg, &r, err) == 0);
	id[HOOK_ID_MAX] = 'a';
	id[HOOK_ID_MAX + 1] = '\0';
	snprintf(msg, sizeof(msg), "{\"version\":1,\"id\":\"%s\",\"pid\":1,\"timeout_ms\":5}", id);
	CHECK(decode_req(msg, &r, err) == -EINVAL);
	memset(msg, ' ', sizeof(msg));
	CHECK(hook_request_decode(msg, HOOK_MSG_MAX + 1, &r, err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, "more than") != NULL);
}

TEST(hostile_replies_are_refused)
{
	struct hook_reply y;
	char err[256];
	static const char *bad[] = {
	    "{\"version\":1}",
	    "{\"version\":1,\"result\":\"enforce\"}",
	    "{\"version\":1,\"result\":\"enforced\",\"endpoint\":5}",
	    "{\"version\":1,\"result\":\"enforced\",\"bundle\":"
	    "\"0123456789012345678901234567890123456789012345678901234567890123456789\"}",
	    "{\"result\":\"enforced\"}",
	};
	for (size_t i = 0; i < BH_ARRAY_SIZE(bad); i++)
		CHECK(hook_reply_decode(bad[i], strlen(bad[i]), &y, err, sizeof(err)) == -EINVAL);
}

TEST(the_oci_state_as_runc_passes_it)
{
	/* What runc 1.1 handed a createRuntime hook for podman 4.3. */
	static const char state[] =
	    "{\"ociVersion\":\"1.0.2-dev\",\"id\":"
	    "\"3d297e129565823c327e6d1fd48ace613d3c609aecc54ab481f73d448cd65802\","
	    "\"status\":\"creating\",\"pid\":17147,\"bundle\":\"/var/lib/containers/storage/"
	    "overlay-containers/"
	    "3d297e129565823c327e6d1fd48ace613d3c609aecc54ab481f73d448cd65802/userdata\",\"annotations\":{"
	    "\"io.container.manager\":\"libpod\",\"io.podman.annotations.autoremove\":\"TRUE\"}}";
	struct hook_state st;
	char err[256];
	CHECK(hook_state_parse(state, strlen(state), &st, err, sizeof(err)) == 0);
	CHECK(st.pid == 17147);
	CHECK(strncmp(st.id, "3d297e1295", 10) == 0);
	CHECK(strstr(st.bundle, "/userdata") != NULL);
	static const char *bad[] = {
	    "not json",
	    "{\"id\":\"x\",\"bundle\":\"/b\"}",		    /* no pid: not createRuntime */
	    "{\"id\":\"x\",\"pid\":0,\"bundle\":\"/b\"}",   /* a stopped container's */
	    "{\"id\":\"x y\",\"pid\":3,\"bundle\":\"/b\"}", /* not an id */
	    "{\"id\":\"x\",\"pid\":3,\"bundle\":\"b\"}",    /* not absolute */
	};
	for (size_t i = 0; i < BH_ARRAY_SIZE(bad); i++)
		CHECK(hook_state_parse(bad[i], strlen(bad[i]), &st, err, sizeof(err)) == -EINVAL);
}

TEST(the_network_namespace_path_of_config_json)
{
	char path[HOOK_PATH_MAX], err[256];
	static const char podman[] =
	    "{\"linux\":{\"namespaces\":[{\"type\":\"pid\"},{\"type\":\"network\",\"path\":"
	    "\"/run/netns/netns-2cf0edcc-d8e4-eea8-65ec-02cfed0fdcbc\"},{\"type\":\"mount\"}]}}";
	CHECK(hook_config_netns(podman, strlen(podman), path, err, sizeof(err)) == 1);
	CHECK_STR(path, "/run/netns/netns-2cf0edcc-d8e4-eea8-65ec-02cfed0fdcbc");
	/* --network none: the runtime makes the namespace. */
	static const char none[] = "{\"linux\":{\"namespaces\":[{\"type\":\"network\"}]}}";
	CHECK(hook_config_netns(none, strlen(none), path, err, sizeof(err)) == 0 && path[0] == '\0');
	/* --network host: no network namespace at all. */
	static const char host[] = "{\"linux\":{\"namespaces\":[{\"type\":\"pid\"}]}}";
	CHECK(hook_config_netns(host, strlen(host), path, err, sizeof(err)) == 0);
	static const char bad[] = "{\"linux\":{\"namespaces\":[{\"type\":\"network\",\"path\":\"x\"}]}}";
	CHECK(hook_config_netns(bad, strlen(bad), path, err, sizeof(err)) == -EINVAL);
	CHECK(hook_config_netns("[]", 2, path, err, sizeof(err)) == -EINVAL);
}

TEST(container_ids)
{
	CHECK(hook_id_valid("3d297e129565823c327e6d1fd48ace613d3c609aecc54ab481f73d448cd65802"));
	CHECK(hook_id_valid("my_container.1+x-y"));
	CHECK(!hook_id_valid(""));
	CHECK(!hook_id_valid(".."));
	CHECK(!hook_id_valid("a/b"));
	CHECK(!hook_id_valid("caf\xc3\xa9"));
}

int main(void)
{
	log_setup("test-hook-proto", false);
	return test_main();
}
