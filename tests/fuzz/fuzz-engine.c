/* Fuzz target: what a container engine's API sends the agent (engine-json.h).
 * The first byte picks the parser, the rest is its input: 'i' an inspect,
 * 'l' a list, 'e' an event stream (split into lines as it comes, each line
 * parsed as an event), 'm' a mount table (/proc/self/mountinfo). Nothing
 * may crash, leak or read past the input. Seeds: corpus/engine-*. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine-json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_line(void *arg, const char *line, size_t len)
{
	struct engine_event ev;
	char err[256];
	if (engine_event_parse(line, len, &ev, err, sizeof(err)) == 0) {
		if (!ev.id || !*ev.id)
			abort(); /* an event always names its container */
		engine_event_release(&ev);
	}
}

static void on_mount(void *arg, const char *path)
{
	if (strncmp(path, "/run/docker/netns/", 18) != 0 || strlen(path) != 30)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const char *text = (const char *)data + 1;
	size_t len = size - 1;
	char err[256];
	char *copy = malloc(len + 1); /* the parsers get NUL-terminated text, as curl's buffers are */
	if (!copy)
		return 0;
	memcpy(copy, text, len);
	copy[len] = '\0';
	switch (data[0]) {
	case 'i': {
		struct engine_container c;
		struct engine_endpoint ep;
		char why[256];
		if (engine_inspect_parse(copy, len, &c, err, sizeof(err)) == 0) {
			if (engine_endpoint_of(&c, ENGINE_DOCKER, NULL, &ep, why, sizeof(why)) ==
			    ENGINE_ENDPOINT)
				engine_endpoint_release(&ep);
			engine_container_release(&c);
		}
		break;
	}
	case 'l': {
		struct engine_container *v;
		size_t n;
		if (engine_list_parse(copy, len, &v, &n, err, sizeof(err)) == 0) {
			for (size_t i = 0; i < n; i++)
				engine_container_release(&v[i]);
			free(v);
		}
		break;
	}
	case 'e': {
		struct engine_lines l;
		engine_lines_init(&l, 4096);
		/* In two pieces, cut where the input says. */
		size_t cut = len ? data[1] % len : 0;
		engine_lines_feed(&l, copy, cut, on_line, NULL);
		engine_lines_feed(&l, copy + cut, len - cut, on_line, NULL);
		engine_lines_release(&l);
		break;
	}
	case 'm':
		engine_mounts_scan(copy, len, "/run/docker/netns", on_mount, NULL);
		break;
	}
	free(copy);
	return 0;
}
