/* bulkhead keygen: a CURVE key pair for the controller or an agent. */
#include <stdio.h>
#include <stdlib.h>

#include "bulkhead/keys.h"
#include "cli.h"
#include "verb.h"

int cmd_keygen(struct cli *cli, int argc, char **argv)
{
	struct verb_opts o;
	int ret = verb_parse_opts(argc, argv, &o, "f", 1, 1);
	if (ret)
		return ret;
	char pub[KEY_Z85_LEN + 1], *err = NULL;
	if (keys_write_pair(o.argv[0], o.force, pub, &err) < 0) {
		fprintf(stderr, "bulkhead: keygen: %s\n", err ? err : "failed");
		free(err);
		return EXIT_FAIL;
	}
	printf("public key %s\n  %s/" KEY_PUBLIC_FILE "\n  %s/" KEY_SECRET_FILE
	       " (keep it on this machine)\n",
	       pub, o.argv[0], o.argv[0]);
	return EXIT_OK;
}
