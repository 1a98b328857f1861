/* hook-proto: what the OCI hook (bulkhead-agent hook, hook.c) and the
 * agent's hook socket (source-hook.c) say to each other, and what the
 * hook reads from the runtime. One request and one reply per connection,
 * each one SOCK_SEQPACKET message of JSON of at most HOOK_MSG_MAX bytes;
 * the request carries the container's network namespace as one fd
 * (SCM_RIGHTS). Pure: no I/O, so both ends and the unit tests share it.
 *
 *   request  {"version":1,"id":ID,"pid":PID,"netns":PATH,"timeout_ms":N}
 *            netns optional (the namespace's bind mount, when it has one)
 *   reply    {"version":1,"result":RESULT,"endpoint":NAME,"bundle":HASH,
 *             "reason":TEXT}   all but result optional
 *
 * The agent answers within timeout_ms, once the container's table is in
 * place or it is quarantined; the hook does the quarantine itself when no
 * answer comes, or when the answer says so. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "bulkhead/common.h"

#define HOOK_PROTO_VERSION  1
#define HOOK_MSG_MAX	    4096
#define HOOK_ID_MAX	    128 /* a container id: 1-128 of [A-Za-z0-9_.+-] */
#define HOOK_PATH_MAX	    1024
#define HOOK_NAME_MAX	    256
#define HOOK_REASON_MAX	    512
#define HOOK_TIMEOUT_MAX_MS 600000u

struct hook_request {
	char id[HOOK_ID_MAX + 1];
	char netns[HOOK_PATH_MAX]; /* "": none */
	int pid;		   /* > 0 */
	unsigned timeout_ms;	   /* 1..HOOK_TIMEOUT_MAX_MS: when the agent must have answered */
};

enum hook_result {
	HOOK_ENFORCED,	  /* the container's table is in place: start it */
	HOOK_QUARANTINED, /* the agent put the quarantine table in: start it isolated */
	HOOK_UNMANAGED,	  /* not an endpoint of this agent's (--select): start it as it is */
	HOOK_ISOLATE,	  /* the agent could not: the hook puts the quarantine table in */
	HOOK_RESULT_COUNT,
};

struct hook_reply {
	enum hook_result result;
	char endpoint[HOOK_NAME_MAX]; /* "": none */
	char bundle[65];	      /* the bundle hash in force, "": none */
	char reason[HOOK_REASON_MAX]; /* "": none */
};

const char *hook_result_name(enum hook_result r); /* "enforced", "quarantined", ... */
bool hook_id_valid(const char *id);

/* Encode into buf (size bytes), *len without a terminator. 0, or -EMSGSIZE
 * (too long; the strings of a reply are cut to fit their fields first). */
BH_MUST_CHECK int hook_request_encode(const struct hook_request *r, char *buf, size_t size, size_t *len);
BH_MUST_CHECK int hook_reply_encode(const struct hook_reply *r, char *buf, size_t size, size_t *len);
/* Decode what the peer sent (hostile: every field checked). 0, or -EINVAL
 * with why in err. */
BH_MUST_CHECK int hook_request_decode(const char *buf, size_t len, struct hook_request *out, char *err,
				      size_t errlen);
BH_MUST_CHECK int hook_reply_decode(const char *buf, size_t len, struct hook_reply *out, char *err,
				    size_t errlen);

/* ---- what the runtime hands the hook ---- */

/* The OCI state on the hook's stdin (runtime-spec state.md): id, pid,
 * bundle; status and annotations are not used. */
struct hook_state {
	char id[HOOK_ID_MAX + 1];
	int pid;
	char bundle[HOOK_PATH_MAX];
};
BH_MUST_CHECK int hook_state_parse(const char *buf, size_t len, struct hook_state *out, char *err,
				   size_t errlen);
/* The network namespace path of the bundle's config.json
 * (linux.namespaces[type=network].path) into path: 1 found, 0 none (the
 * runtime makes the namespace itself, or shares the host's), -EINVAL with
 * why in err. */
BH_MUST_CHECK int hook_config_netns(const char *buf, size_t len, char path[HOOK_PATH_MAX], char *err,
				    size_t errlen);
