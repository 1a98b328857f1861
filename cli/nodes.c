/* bulkhead nodes forget: drop a decommissioned node from the controller. */
#include <stdio.h>

#include <jansson.h>

#include "cli.h"
#include "verb.h"

static void forget_text(json_t *reply, const void *node)
{
	printf("node %s forgotten%s\n", (const char *)node,
	       json_is_true(json_object_get(reply, "was_connected"))
		   ? " (it was connected: if its agent still runs, it says HELLO again and is back)"
		   : "");
	if (json_is_true(json_object_get(reply, "known")))
		printf("node %s stays known (listed by `bulkhead status`, waited for by `status --wait`) "
		       "while its "
		       "key is in the agent allow-list\n",
		       (const char *)node);
}

int cmd_nodes_forget(struct cli *cli, int argc, char **argv)
{
	struct verb_opts o;
	int ret = verb_parse_opts(argc, argv, &o, "jf", 1, 1);
	if (ret)
		return ret;
	if (!verb_node_arg_valid("", o.argv[0]))
		return EXIT_USAGE;
	return verb_reply(
	    cli, json_pack("{s:s,s:s,s:b}", "cmd", "nodes.forget", "node", o.argv[0], "force", o.force),
	    o.json, forget_text, o.argv[0]);
}
