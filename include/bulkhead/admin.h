/* The admin protocol: how `bulkhead` talks to bulkhead-controller (DESIGN §5).
 *
 * ZeroMQ REQ (CLI) → ROUTER (controller: a slow request is answered when
 * it is done, the others meanwhile) on the admin endpoint, by default
 * ipc:///run/bulkhead/admin.sock (root-only: the controller makes the
 * directory 0700 and the socket 0600). One request, one reply, each a single
 * frame of JSON. Every request carries "v": ADMIN_VERSION and a "cmd".
 * The server is controller/admin.c, the client cli/admin.c.
 *
 * Replies: {"ok": true, ...} or
 *          {"ok": false, "code": 1|2, "error": "one line",
 *           "errors": ["FILE: /pointer: message", ...]}   ("errors" optional)
 * "code" is the exit code the CLI should use: 2 for invalid input (a policy
 * that does not validate, an unknown revision), 1 for anything else.
 *
 * Commands and their replies' members:
 *
 *  policy.apply    {"document": TEXT, "file": NAME-FOR-ERRORS, "comment": S?}
 *                  → {"revision": N, "unchanged": BOOL}
 *                  unchanged: the document equals the newest revision's, no
 *                  new revision was made (N is the newest).
 *  policy.history  {} → {"revisions": [{"revision": N, "time": UNIX-SECONDS,
 *                        "comment": S|null, "sha256": HEX, "current": BOOL}]}
 *                  newest first
 *  policy.show     {"revision": N?} (absent: newest)
 *                  → {"revision", "time", "comment", "document": TEXT}
 *  policy.rollback {"revision": N} → {"revision": NEW}: a new revision whose
 *                  document is N's (comment "rollback to N")
 *  status          {} → {"revision": NEWEST|null, "time": UNIX-MS-NOW,
 *                        "nodes": [NODE...], "counters": {NAME: N...}}
 *      NODE = {"node", "known": BOOL, "connected": BOOL, "last_heartbeat": UNIX-MS|null,
 *              "agent_version": S|null, "applied_revision": N|null,
 *              "applied_hash": HEX|null, "desired_hash": HEX|null,
 *              "up_to_date": BOOL, "endpoints": N,
 *              "errors": ["endpoint: message", ...]}
 *      up_to_date: applied_hash == desired_hash, the applied revision is the
 *      newest, the agent reported no error and its endpoint list is the one
 *      it reported (not refused, e.g. by its label rules: then "errors"
 *      says why); with no policy yet, the node holds no bundle either.
 *      known: in the agent allow-list, or with --insecure seen and not
 *      forgotten (DESIGN §4). Every known node is listed, also one never
 *      seen (connected false, nulls, up_to_date false), and every node the
 *      controller holds state of (known false: its key left the
 *      allow-list). `status --wait` polls this until every known or
 *      connected node is connected and up to date.
 *  endpoints       {"node": S?} → {"endpoints": [{"node", "name",
 *                  "netns": S|null, "labels": {..}, "addresses": [..],
 *                  "groups": [label groups it is a member of]}]}
 *                  sorted by (node, name)
 *  nodes.forget    {"node": S, "force": BOOL?} → {"node", "was_connected": BOOL,
 *                  "known": BOOL (still: its key is in the allow-list)}
 *                  drops a node: its session, its endpoints (they leave every
 *                  group, bundles are recompiled) and its stored list; a
 *                  connected node only with force (its agent, should it
 *                  still run, says HELLO again and is back). code 2: no such
 *                  node; 1: connected without force.
 *  flows           {"mode": "report"|"follow"|"rules"?, "since_seconds": N?,
 *                   "node": S?, "group": S?, "verdict": "deny"|"audit"?,
 *                   "limit": N?, "after_id": N?}
 *                  → {"flows"|"rules": [ROW...], "lost": [LOSS...],
 *                     "last_id": N, "time": UNIX-MS-NOW}
 *      report: one ROW per (node, endpoint, direction, src, dst, proto, port,
 *      ICMP type/code, verdict, policy, rule), summed over windows, newest
 *      first; follow: the stored windows after after_id, oldest first;
 *      rules: {"policy", "rule", "verdict", "count", "pairs", "first",
 *      "last"} per deciding rule, most packets first.
 *      ROW = {"id", "node", "endpoint", "direction", "first", "last" (unix
 *             ms), "src", "src_endpoint": "NODE/NAME"|null, "src_groups":
 *             "g1,g2", "dst", "dst_endpoint", "dst_groups", "proto", "port",
 *             "icmp_type", "icmp_code", "verdict", "policy", "rule", "count"}
 *      LOSS = {"node", "endpoint", "enobufs", "gap", "spool"}: events lost
 *             in the window asked for (proto.h LOST), summed
 */
#pragma once

#define ADMIN_VERSION	       1
#define ADMIN_DEFAULT_ENDPOINT "ipc:///run/bulkhead/admin.sock"
#define ADMIN_ENV	       "BULKHEAD_ADMIN"
/* Requests carry whole policy documents; replies whole listings. */
#define ADMIN_MAX_MSG (64 << 20)
