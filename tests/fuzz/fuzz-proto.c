/* Fuzz target: agent/controller messages as either side receives them. The
 * input is "TYPE\nBODY". Decoding never crashes; a decoded message encodes
 * and decodes again; a DELTA's sets and named-port tables apply to a sample
 * bundle or are refused with a reason. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	if (!nl)
		return 0;
	size_t tlen = (size_t)(nl - data);
	struct proto_msg m;
	char err[256];
	if (proto_decode(data, tlen, nl + 1, size - tlen - 1, &m, err, sizeof(err)) < 0) {
		if (!err[0])
			abort();
		return 0;
	}
	const char *name = proto_type_name(m.type);
	size_t len;
	char *text = proto_encode(json_incref(m.body), &len);
	struct proto_msg again;
	if (!text || proto_decode(name, strlen(name), text, len, &again, err, sizeof(err)) < 0)
		abort();
	if (m.type == PROTO_DELTA) {
		json_t *base =
		    json_loads("{\"format\":1,\"node\":\"n1\",\"endpoints\":[],\"sets\":[{\"id\":\"web\","
			       "\"kind\":\"hosts\",\"ipv4\":[\"198.18.0.1\"],\"ipv6\":[]}],\"named_ports\":[{"
			       "\"id\":\"tcp/http\",\"v4\":[[\"198.18.0.1\",80]],\"v6\":[]}]}",
			       0, NULL);
		struct diag d;
		diag_init(&d, "fuzz");
		json_t *next = proto_delta_apply(base, json_object_get(m.body, "sets"), &d);
		if (!next && d.n == 0)
			abort();
		json_decref(next);
		json_decref(base);
		diag_release(&d);
	}
	proto_msg_release(&again);
	proto_msg_release(&m);
	free(text);
	return 0;
}
