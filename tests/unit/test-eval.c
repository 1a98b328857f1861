/* Evaluator scenarios: each tests/fixtures/eval/NAME.json holds a policy,
 * node inventories and probes with the verdict and deciding rule DESIGN §2
 * prescribes. Every probe is one test. Instead of inline "policy" and
 * "inventory", a scenario may name "policy_file" and "inventory_files"
 * (relative to itself), to hold the examples to what they claim.
 * Usage: test-eval FILE... */
#include <netinet/in.h>

#include "bulkhead/compile.h"
#include "bulkhead/eval.h"
#include "scenario.h"
#include "test.h"

static bool parse_packet(json_t *c, struct packet *pkt, const char **err)
{
	const char *src = json_string_value(json_object_get(c, "src"));
	const char *dst = json_string_value(json_object_get(c, "dst"));
	const char *proto = json_string_value(json_object_get(c, "proto"));
	memset(pkt, 0, sizeof(*pkt));
	if (!src || !dst || !proto || addr_parse(src, &pkt->src) < 0 || addr_parse(dst, &pkt->dst) < 0) {
		*err = "bad src/dst/proto";
		return false;
	}
	if (!proto_lookup(proto, strlen(proto), &pkt->proto)) {
		*err = "unknown proto";
		return false;
	}
	pkt->dport = (uint16_t)json_integer_value(json_object_get(c, "port"));
	pkt->icmp_type = (uint8_t)json_integer_value(json_object_get(c, "type"));
	pkt->icmp_code = (uint8_t)json_integer_value(json_object_get(c, "code"));
	pkt->established = json_is_true(json_object_get(c, "established"));
	pkt->loopback = json_is_true(json_object_get(c, "loopback"));
	return true;
}

static void run_file(const char *path)
{
	struct scenario sc;
	if (scenario_load(path, &sc) < 0) {
		test_report(path, false);
		return;
	}
	struct policy_doc *doc = sc.doc;
	struct inventory *inv = sc.inv;
	json_t *c;
	size_t i;
	json_array_foreach (json_object_get(sc.root, "cases"), i, c) {
		char name[512];
		const char *at = json_string_value(json_object_get(c, "at"));
		const char *dir = json_string_value(json_object_get(c, "dir"));
		const char *expect = json_string_value(json_object_get(c, "expect"));
		const char *reason = json_string_value(json_object_get(c, "reason"));
		const char *title = json_string_value(json_object_get(c, "name"));
		const char *err = NULL;
		snprintf(name, sizeof(name), "%s: %s", strrchr(path, '/') ? strrchr(path, '/') + 1 : path,
			 title ? title : "?");

		struct packet pkt;
		const char *slash = at ? strchr(at, '/') : NULL;
		if (!slash || !dir || !expect || !reason || !parse_packet(c, &pkt, &err)) {
			fprintf(stderr, "  malformed case %zu: %s\n", i,
				err ? err : "missing at/dir/expect/reason");
			test_report(name, false);
			continue;
		}
		char node[128];
		snprintf(node, sizeof(node), "%.*s", (int)(slash - at), at);
		struct bundle *b = compile_bundle(doc, inv, node);
		const struct bundle_endpoint *ep = b ? bundle_find_endpoint(b, slash + 1) : NULL;
		if (!ep) {
			fprintf(stderr, "  no endpoint %s\n", at);
			test_report(name, false);
			bundle_free(b);
			continue;
		}
		struct eval_result res;
		eval_packet(b, ep, strcmp(dir, "egress") == 0 ? DIR_EGRESS : DIR_INGRESS, &pkt, &res);
		bool pass = strcmp(verdict_name(res.verdict), expect) == 0 && strcmp(res.reason, reason) == 0;
		if (!pass)
			fprintf(stderr, "  got %s by %s, expected %s by %s\n", verdict_name(res.verdict),
				res.reason, expect, reason);
		test_report(name, pass);
		bundle_free(b);
	}
	scenario_release(&sc);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: test-eval SCENARIO.json...\n");
		return 2;
	}
	for (int i = 1; i < argc; i++)
		run_file(argv[i]);
	return test_main();
}
