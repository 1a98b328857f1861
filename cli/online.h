/* The CLI's verbs that talk to bulkhead-controller, and keygen. */
#pragma once

/* argv[0] is the verb ("status", "policy", ...). Returns the exit code, or
 * -1 when the verb is not one of these. */
int online_main(const char *admin, int argc, char **argv);
