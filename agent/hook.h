/* hook: `bulkhead-agent hook`, the OCI createRuntime hook (DESIGN §3, §5).
 * The runtime (runc, crun) runs it as root once the container's process
 * and namespaces exist and before its first instruction, with the OCI
 * state on stdin. It hands the container's id and network namespace (an
 * fd) to the agent's hook socket (source-hook.c) and waits until the
 * agent says the container's table is in place. When the agent cannot say
 * so in time (none listens, no controller, the labels unknown) the
 * namespace gets the quarantine table, from the agent or, failing that,
 * from the hook itself, and the container starts isolated: it exits 0
 * once a table is in place, and 1 (the runtime then refuses to start the
 * container) only when not even the quarantine could be put in. It never
 * waits longer than its timeout. */
#pragma once

#include <stdint.h>

#define HOOK_SOCKET_DEFAULT	"/run/bulkhead-agent/hook.sock"
#define HOOK_TIMEOUT_DEFAULT_MS 5000u

/* argv after "hook": [--socket PATH] [--timeout-ms N] [--nflog-group N]
 * [--verbose]. Returns the exit code. */
int hook_main(int argc, char **argv);
