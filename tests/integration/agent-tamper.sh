#!/bin/bash
# agent-tamper: a container with CAP_NET_ADMIN in its own namespace that
# rewrites the agent's table in a loop (`nft flush table inet bulkhead`,
# again and again for several seconds) must not keep the node's agent
# busy. The agent puts the table back at once the first time, then backs
# off (0.5 s doubling to 30 s): over the loop its CPU time (utime + stime
# from /proc/PID/stat) stays a small part of the loop's, it repairs the
# table a bounded number of times, the ACK (`bulkhead status`) and
# status.json say it is backing off, and the table is still put back
# (real packets: the client is refused again).
# Usage: agent-tamper.sh [BUILD_DIR]
set -u
. "$(dirname "$0")/world.bash"
BUILD=${1:-$LIB_ROOT/build}
LOOP_S=${LOOP_S:-8}
RULES=${RULES:-2000}

world_init agtamper || exit 1
world_daemons "$BUILD" n1 || exit 1
for e in "t 11 11" "cl 12 12"; do world_add_endpoint $e || exit 1; done
world_serve t tcp:80 || { not_ok "listener in t"; finish; exit 1; }
STATE=$TMP/state-n1
# status.json of the one endpoint, t (e; c its counters)
status() { agent_status "$1" t; }
status_is() { agent_status_is "$1" "$2" t; }
LOG=$TMP/agent-n1.log

cat >"$TMP/n1.json" <<JSON
{"node": "n1", "endpoints": [{"name": "t", "netns": "/run/netns/$P-t", "labels": {"app": "t"}}]}
JSON
# t admits tcp/1000.. (RULES rules, so that each repair costs the agent
# real work) and nobody on tcp/80 (isolated, default deny).
"$PYTHON" - "$TMP/policy.json" "$RULES" <<'EOF' || { not_ok "generating the policy"; finish; exit 1; }
import json, sys
rules = [{"ports": ["tcp/%d" % (1000 + i)]} for i in range(int(sys.argv[2]))]
json.dump({"version": 1, "groups": {"t": {"labels": {"app": "t"}}},
           "policies": [{"name": "t-in", "applies_to": "t", "ingress": rules}]}, open(sys.argv[1], "w"))
EOF
# cpu_ticks PID: utime + stime, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
has_rules() { ip netns exec "$P-t" nft list chain inet bulkhead ingress 2>/dev/null | grep -q 'comment "t-in/ingress/0"'; }

controller_start
agent_start n1
PID=${AGENT_PID[n1]}
bh policy apply "$TMP/policy.json" >/dev/null || not_ok "policy apply"
check "the agent applies t's table" wait_for 20 status_is 'e["applied"] == s["bundle"] != None and c["full_updates"] >= 1' True
check "cl is refused by t on tcp/80" cannot cl tcp 198.18.0.11 80

repairs0=$(status 'c["full_updates"] + c["delta_updates"]')
tamper0=$(status 'c["tampering"]')
ticks0=$(cpu_ticks "$PID")
start=$(date +%s%N)
# The container's own loop, as fast as nft goes.
ip netns exec "$P-t" timeout "$LOOP_S" bash -c 'while :; do nft flush table inet bulkhead 2>/dev/null; done' &
LOOPER=$!
WORLD_PIDS+=("$LOOPER")
tamper_error="n1: t: table inet bulkhead keeps being changed by another process: putting it back backs off (waits of up to 30 s)"
ack_says() { bh status 2>/dev/null | grep -qxF "$tamper_error"; }
sleep 2
check "meanwhile bulkhead status shows the endpoint backing off (the ACK's error)" wait_for $((LOOP_S - 3)) ack_says
wait "$LOOPER"
wall_ms=$((($(date +%s%N) - start) / 1000000))
ticks1=$(cpu_ticks "$PID")
repairs=$(($(status 'c["full_updates"] + c["delta_updates"]') - repairs0))
tampering=$(($(status 'c["tampering"]') - tamper0))
hz=$(getconf CLK_TCK)
cpu_ms=$(((ticks1 - ticks0) * 1000 / hz))
echo "# over ${wall_ms} ms of flushing: the agent used ${cpu_ms} ms of CPU, repaired ${repairs} times, saw tampering ${tampering} times"

check "the agent is still running" kill -0 "$PID"
check "it noticed the tampering" test "$tampering" -ge 2
# Backoff 0, 0.5, 1, 2, 4, 8 s: at most 6 repairs in 8 s (each may take a
# few commits when the loop commits in between); without backoff, hundreds.
check "it repaired the table a bounded number of times ($repairs <= 20), not at every flush" test "$repairs" -le 20
check "and it did repair it during the loop ($repairs >= 2)" test "$repairs" -ge 2
# A tenth of the loop's time is generous: without backoff the agent spends
# most of a CPU rewriting the table.
check "its CPU time stayed low (${cpu_ms} ms <= $((wall_ms / 10)) ms)" test "$cpu_ms" -le $((wall_ms / 10))
check "status.json says it backs off for tampering" status_is 'e["backoff"]["reason"]' tampering
check "the log says when the backoff started" grep -q "putting it back backs off" "$LOG"
# The loop has stopped: the table is put back when the current wait ends.
check "the table is put back after the loop (within the 30 s cap)" wait_for 35 has_rules
check "cl is refused by t on tcp/80 again" cannot cl tcp 198.18.0.11 80
check "the node is in sync again" wait_for 10 bash -c "! bh status 2>/dev/null | grep -qF 'keeps being changed'"
check "no crash or sanitizer report in the agent's log" bash -c "! grep -qE 'AddressSanitizer|runtime error|Segmentation' '$LOG'"

[ "$failed" -eq 0 ] || { echo "--- agent log (last 40 lines)"; tail -40 "$LOG"; }
finish
