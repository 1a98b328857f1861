#!/bin/bash
# agent-cache: the agent's state dir fills up. A new revision that revokes
# a flow is enforced but cannot be cached: the agent says so (status.json,
# and its ACK, so `bulkhead status` shows it). Restarted while the
# controller is away, it finds its cached bundle older than what the
# container's table holds and keeps the table: the revocation holds. When
# the controller is back, the agent takes its bundle and caches it. Real
# packets after every step. The state dir is a small tmpfs this test mounts
# under its own temporary directory and unmounts on exit.
# Usage: agent-cache.sh [BUILD_DIR]
set -u
. "$(dirname "$0")/world.bash"
BUILD=${1:-$LIB_ROOT/build}

world_init agentcache || exit 1
world_daemons "$BUILD" n1 || exit 1
STATE=$TMP/state-n1 # what agent_start gives n1
mkdir -p "$STATE"
mount -t tmpfs -o size=4m,mode=0700 bulkhead-test "$STATE" || { not_ok "mounting a tmpfs"; finish; exit 1; }
unmount_state() {
	local pid
	for pid in "${WORLD_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
	for pid in "${WORLD_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
	umount "$STATE" 2>/dev/null || umount -l "$STATE"
	world_cleanup
}
trap unmount_state EXIT

world_add_endpoint a 11 11 || exit 1
world_add_endpoint c 13 13 || exit 1
world_serve c tcp:80 || { not_ok "listener in c"; finish; exit 1; }
cat >"$TMP/n1.json" <<JSON
{"node": "n1", "endpoints": [
 {"name": "a", "netns": "/run/netns/$P-a", "labels": {"role": "client"}},
 {"name": "c", "netns": "/run/netns/$P-c", "labels": {"role": "server"}}]}
JSON
# policy FROM: c admits FROM on tcp/80; both revisions deny a network
# group of 6,000 hosts first, which makes the bundle a few hundred KB.
policy() {
	"$PYTHON" - "$1" <<'EOF'
import json, sys
hosts = ["198.19.%d.%d/32" % (i // 100, 2 * (i % 100) + 1) for i in range(6000)]
print(json.dumps({"version": 1,
    "groups": {"clients": {"labels": {"role": "client"}}, "server": {"labels": {"role": "server"}},
               "nobody": {"labels": {"role": "nobody"}}, "banned": {"cidrs": hosts}},
    "policies": [{"name": "to-c", "applies_to": "server", "ingress": [
        {"action": "deny", "from": ["banned"]},
        {"from": json.loads(sys.argv[1]), "ports": ["tcp/80"]}]}]}))
EOF
}
node_errors() { bh status --json 2>/dev/null | json_get '" | ".join(j["nodes"][0]["errors"])'; }
cache_failure_shown() { node_errors | grep -q 'is enforced but not cached: writing .*bundle.json: No space left on device'; }
in_sync_shown() { [ "$(bh status --json 2>/dev/null | json_get 'j["nodes"][0]["up_to_date"]')" = True ]; }
stop() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null; }

converged() { bh status --wait=20 >/dev/null 2>&1; }
connected() { [ "$(bh status --json 2>/dev/null | json_get '[n["node"] for n in j["nodes"] if n["connected"]]')" = "['n1']" ]; }

controller_start
agent_start n1
check "the agent connects" wait_for 10 connected
policy '["clients"]' >"$TMP/rev1.json"
bh policy apply "$TMP/rev1.json" >/dev/null || not_ok "applying revision 1"
check "revision 1 is applied and acknowledged" converged
check "revision 1: a reaches c on tcp/80" can a tcp 198.18.0.13 80
check "revision 1 is cached" \
	agent_status_is 's["bundle"] is not None and s["cache"]["bundle"] == s["bundle"] and s["cache"]["error"] is None' True
bundle_kb=$(($(stat -c %s "$STATE/bundle.json") / 1024))

# Fill the state dir: room left for status.json and the like, not for a bundle.
"$PYTHON" - "$STATE/fill" "$((bundle_kb / 3))" <<'EOF' || not_ok "filling the state dir"
import os, sys
path, leave_kb = sys.argv[1], int(sys.argv[2])
st = os.statvfs(os.path.dirname(path))
free = st.f_bavail * st.f_frsize
with open(path, "wb") as f:
    f.write(b"\0" * max(0, free - leave_kb * 1024))
EOF
policy '["nobody"]' >"$TMP/rev2.json" # nobody may reach c on tcp/80
bh policy apply "$TMP/rev2.json" >/dev/null || not_ok "applying revision 2"
check "revision 2 (a bundle of $bundle_kb KB) does not fit in the state dir: bulkhead status shows it" \
	wait_for 20 cache_failure_shown
check "and does not show the node in sync" test "$(bh status --json | json_get 'j["nodes"][0]["up_to_date"]')" = False
check "status.json says so too" wait_for 10 agent_status_is '"No space left on device" in (s["cache"]["error"] or "")' True
check "the cache still holds revision 1" agent_status_is 's["cache"]["revision"]' 1
check "revision 2 is enforced all the same: a is refused by c" cannot a tcp 198.18.0.13 80

# The controller goes away, the agent restarts from its cache (revision 1).
stop "$CONTROLLER_PID"
stop "${AGENT_PID[n1]}"
rm -f "$STATE/status.json"
agent_start n1
check "restarted without the controller, the agent is up" wait_for 20 agent_status_is 'e["c"]["present"]' True
check "the revocation holds: a is still refused by c" cannot a tcp 198.18.0.13 80
check "c's table is kept as newer than the cache" agent_status_is 'e["c"]["held"]' True
check "and says so" agent_status_is '"newer than the cached" in e["c"]["error"]' True
check "the agent logged it" grep -q 'newer than the cached .*kept until the controller sends a bundle' "$TMP/agent-n1.log"

# Room again, the controller back: its bundle goes in and into the cache.
rm -f "$STATE/fill"
controller_start
check "with the controller back, the node is in sync again" wait_for 30 in_sync_shown
check "no cache error is left" wait_for 10 agent_status_is 's["cache"]["error"] is None and s["cache"]["bundle"] == s["bundle"]' True
check "c holds the controller's bundle" agent_status_is 'e["c"]["applied"] == s["bundle"] and not e["c"]["held"]' True
check "a is still refused by c" cannot a tcp 198.18.0.13 80
check "no crash or sanitizer report in the agent's log" \
	bash -c "! grep -qE 'AddressSanitizer|runtime error|Segmentation' '$TMP/agent-n1.log'"

[ "$failed" -eq 0 ] || { echo "--- agent log (last 40 lines)"; tail -40 "$TMP/agent-n1.log"; }
finish
