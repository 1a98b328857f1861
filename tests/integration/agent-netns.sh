#!/bin/bash
# agent-netns: what an inventory's netns path may name, with real namespaces
# and packets. The controller and the agent run inside a namespace of their
# own ($P-node), so that "the agent's own namespace" is a test namespace.
#   - one network namespace is one endpoint: two endpoints whose paths
#     (/run/netns/X, /proc/PID/ns/net, a second bind mount) name one
#     namespace do not take turns in it; the one that holds it keeps it,
#     the other is refused with an error (status.json, ACK, bulkhead
#     status), and takes over when the holder goes;
#   - a FIFO, a regular file, a directory, a mount namespace and the agent's
#     own network namespace are refused, each with its error, while the
#     agent goes on serving the good endpoints;
#   - a namespace made anew at an endpoint's path gets its table when it is
#     mounted, not at the next periodic check (--recheck-ms 3600000 here, so
#     only the mount table's notice can do it).
# Usage: agent-netns.sh [BUILD_DIR]
set -u
. "$(dirname "$0")/world.bash"
BUILD=${1:-$LIB_ROOT/build}

world_init agentns || exit 1
world_daemons "$BUILD" n1 || exit 1
NODE=$P-node
ip netns add "$NODE" && ip -n "$NODE" link set lo up || exit 1
# x: one namespace, three endpoints; good: an ordinary endpoint; srv: an
# unmanaged server.
for e in "x 11 11" "good 12 12" "srv 13 13" "re 14 14"; do world_add_endpoint $e || exit 1; done
world_serve srv tcp:80 udp:53 || { not_ok "listeners in srv"; finish; exit 1; }
# A process inside x: /proc/PID/ns/net is a second path to x.
ip netns exec "$P-x" sleep 600 &
SLEEPER=$!
WORLD_PIDS+=("$SLEEPER")
mkfifo "$TMP/fifo"
echo "not a namespace" >"$TMP/file"

STATE=$TMP/state-n1
LOG=$TMP/agent-n1.log
# In $NODE: the controller on its loopback, the agent beside it.
node_controller_start() {
	ip netns exec "$NODE" "$CONTROLLER" --listen "tcp://127.0.0.1:$PORT" --admin "$BULKHEAD_ADMIN" \
		--state-dir "$TMP/controller" --keys "$TMP/keys/controller" --agent-keys "$TMP/keys/allowed" \
		--heartbeat-ms 200 >>"$TMP/controller.log" 2>&1 &
	WORLD_PIDS+=("$!")
}
# --cap-ptrace: /proc/$SLEEPER/ns/net is a root process's with every
# capability (privileges.sh shows the refusal without it).
node_agent_start() { # [ARG...]
	ip netns exec "$NODE" "$AGENT" --controller "tcp://127.0.0.1:$PORT" --node n1 --inventory "$TMP/n1.json" \
		--state-dir "$STATE" --keys "$TMP/keys/n1" --controller-key "$TMP/keys/controller/public.key" \
		--heartbeat-ms 200 --cap-ptrace "$@" >>"$LOG" 2>&1 &
	AGENT_PID=$!
	WORLD_PIDS+=("$AGENT_PID")
}
install_file() { cp "$1" "$2.tmp" && mv "$2.tmp" "$2"; }
# inventory NAME=NETNS:APP...
inventory() {
	local sep="" spec
	printf '{"node": "n1", "endpoints": ['
	for spec in "$@"; do
		local name=${spec%%=*} rest=${spec#*=}
		printf '%s{"name": "%s", "netns": "%s", "labels": {"app": "%s"}}' "$sep" "$name" "${rest%:*}" "${rest##*:}"
		sep=", "
	done
	printf ']}\n'
}
# a may send DNS to srv, b only HTTP; good only HTTP.
cat >"$TMP/policy.json" <<'JSON'
{"version": 1,
 "groups": {"a": {"labels": {"app": "a"}}, "b": {"labels": {"app": "b"}}, "good": {"labels": {"app": "good"}},
            "srv": {"cidrs": ["198.18.0.13/32", "2001:db8:1::13/128"]}},
 "policies": [
  {"name": "a-out", "applies_to": "a", "egress": [{"to": ["srv"], "ports": ["udp/53"]}]},
  {"name": "b-out", "applies_to": "b", "egress": [{"to": ["srv"], "ports": ["tcp/80"]}]},
  {"name": "good-out", "applies_to": "good", "egress": [{"to": ["srv"], "ports": ["tcp/80"]}]}]}
JSON
has_table() { ip netns exec "$1" nft list table inet bulkhead >/dev/null 2>&1; }
node_errors() { bh status --json 2>/dev/null | json_get "'\n'.join(j['nodes'][0]['errors'])"; }

# pod-b comes first in the file; pod-a still holds x (first by name).
SHARED_ERR="is already endpoint pod-a's: one network namespace is one endpoint"
inventory "pod-b=/proc/$SLEEPER/ns/net:b" "pod-a=/run/netns/$P-x:a" "good=/run/netns/$P-good:good" \
	"fifo=$TMP/fifo:a" "file=$TMP/file:a" "dir=$TMP:a" "mntns=/proc/$SLEEPER/ns/mnt:a" \
	"self=/run/netns/$NODE:a" "self2=/proc/self/ns/net:a" >"$TMP/n1.json"
node_controller_start
node_agent_start
bh policy apply "$TMP/policy.json" >/dev/null
check "the agent applies the bundle to good and to x's holder" \
	wait_for 20 agent_status_is 'e["good"]["applied"] == e["pod-a"]["applied"] == s["bundle"] != None' True
check "the agent is still running" kill -0 "$AGENT_PID"

# --- 11: what is not a network namespace, or is the agent's own ---
# refused NAME ERROR: the endpoint is not open and says why.
refused() { agent_status_is "e['$1']['present']" False && agent_status_is "e['$1']['error']" "$2"; }
errors_are() {
	refused fifo "$TMP/fifo $NOT_NS" && refused file "$TMP/file $NOT_NS" && refused dir "$TMP $NOT_NS" &&
		refused mntns "/proc/$SLEEPER/ns/mnt $NOT_NS" && refused self "/run/netns/$NODE $OWN_NS" &&
		refused self2 "/proc/self/ns/net $OWN_NS"
}
NOT_NS="is not a network namespace (an nsfs file such as /run/netns/NAME or /proc/PID/ns/net)"
OWN_NS="is the agent's own network namespace: refused (its table would firewall the node)"
check "a FIFO, a file, a directory, a mount namespace and the agent's own are refused, each with its error" \
	wait_for 5 errors_are
check "the agent's own namespace has no table" bash -c "! ip netns exec '$NODE' nft list table inet bulkhead >/dev/null 2>&1"
check "good is served: it reaches srv on tcp/80" can good tcp 198.18.0.13 80
check "good's table denies the rest: no udp/53" cannot good udp 198.18.0.13 53
# status_says LINE...: `bulkhead status` prints every LINE.
status_says() {
	local out line
	out=$(bh status 2>/dev/null) || return 1
	for line in "$@"; do grep -qxF "$line" <<<"$out" || return 1; done
}
check "bulkhead status shows each refusal (the ACK's errors)" wait_for 10 status_says \
	"n1: fifo: $TMP/fifo $NOT_NS" "n1: file: $TMP/file $NOT_NS" "n1: dir: $TMP $NOT_NS" \
	"n1: mntns: /proc/$SLEEPER/ns/mnt $NOT_NS" "n1: self: /run/netns/$NODE $OWN_NS" \
	"n1: self2: /proc/self/ns/net $OWN_NS"
# logged_once NAME...: each endpoint's error is in the log once.
logged_once() {
	local n
	for n in "$@"; do [ "$(grep -c "error: endpoint $n: " "$LOG")" = 1 ] || return 1; done
}
sleep 1 # a few more retries (every 500 ms)
check "each refusal, retried every 500 ms, is logged once" logged_once fifo file dir mntns self self2

# --- 1: one network namespace is one endpoint ---
check "pod-b (x by another path) is refused with the holder's name" \
	refused pod-b "namespace /proc/$SLEEPER/ns/net $SHARED_ERR"
check "bulkhead status shows pod-b's refusal" wait_for 10 status_says "n1: pod-b: namespace /proc/$SLEEPER/ns/net $SHARED_ERR"
updates() { agent_status '(e["pod-a"]["counters"]["full_updates"], e["pod-a"]["counters"]["tampering"], e["pod-b"]["counters"]["full_updates"])'; }
before=$(updates)
acks_before=$(grep -c "not applied everywhere" "$TMP/controller.log")
probes_ok=0 probes=0
for _ in 1 2 3 4 5; do
	cannot x tcp 198.18.0.13 80 && probes_ok=$((probes_ok + 1))
	can x udp 198.18.0.13 53 && probes_ok=$((probes_ok + 1))
	probes=$((probes + 2))
done
sleep 1
after=$(updates)
# (pod-a's full updates, pod-a's tampering, pod-b's full updates): on the
# old code each replace looked like tampering to the other, thousands a second.
check "over $probes probes, x's table is not rewritten: $before -> $after" \
	test "$before" = "$after" -a "${before#*, }" = "0, 0)"
check "every probe from x got the holder's verdict ($probes_ok of $probes)" test "$probes_ok" -eq "$probes"
acks=$(($(grep -c "not applied everywhere" "$TMP/controller.log") - acks_before))
check "meanwhile the agent did not tell the controller the same errors again and again ($acks ACKs)" test "$acks" -le 1
check "pod-b's refusal, retried every 500 ms, is logged once" logged_once pod-b

# A third path to x (a second bind mount), first by name: pod-a keeps it.
ip netns attach "$P-x2" "$SLEEPER" || not_ok "ip netns attach"
inventory "pod-b=/proc/$SLEEPER/ns/net:b" "pod-a=/run/netns/$P-x:a" "pod-0=/run/netns/$P-x2:b" \
	"good=/run/netns/$P-good:good" >"$TMP/next.json" && install_file "$TMP/next.json" "$TMP/n1.json"
check "pod-0, first by name, is refused too: the holder keeps its namespace" \
	wait_for 5 agent_status_is 'e["pod-0"]["error"]' "namespace /run/netns/$P-x2 $SHARED_ERR"
check "and x's table was not touched" agent_status_is "$(updates) == $before" True
check "x still gets pod-a's verdict" cannot x tcp 198.18.0.13 80

# The holder goes: the first refused one by name (pod-0) takes over.
inventory "pod-b=/proc/$SLEEPER/ns/net:b" "pod-0=/run/netns/$P-x2:b" "good=/run/netns/$P-good:good" \
	>"$TMP/next.json" && install_file "$TMP/next.json" "$TMP/n1.json"
check "without pod-a, pod-0 takes x over; pod-b stays refused, naming pod-0" wait_for 10 agent_status_is \
	'e["pod-0"]["present"] and e["pod-0"]["applied"] == s["bundle"] and not e["pod-0"]["error"] and e["pod-b"]["error"].endswith("already endpoint pod-0'"'"'s: one network namespace is one endpoint")' True
check "x now gets pod-0's verdict: tcp/80 passes" wait_for 5 can x tcp 198.18.0.13 80
check "and udp/53 does not" cannot x udp 198.18.0.13 53
only_error() { [ "$(node_errors)" = "$1" ]; }
check "the controller is told: every endpoint applied but pod-b" \
	wait_for 10 only_error "pod-b: namespace /proc/$SLEEPER/ns/net is already endpoint pod-0's: one network namespace is one endpoint"

# --- 17: a namespace made anew at an endpoint's path ---
kill "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null
inventory "re=/run/netns/$P-re:a" "good=/run/netns/$P-good:good" >"$TMP/next.json" && install_file "$TMP/next.json" "$TMP/n1.json"
node_agent_start --recheck-ms 3600000
check "re gets its table" wait_for 20 has_table "$P-re"
check "re is up to date" wait_for 20 agent_status_is 'e["re"]["applied"] == s["bundle"] != None' True
old_full=$(agent_status 'e["re"]["counters"]["full_updates"]')
start=$(date +%s%N)
ip netns del "$P-re"
world_add_endpoint re 14 14
if wait_for 10 has_table "$P-re"; then
	ok "a namespace made anew at re's path gets its table when mounted ($(( ($(date +%s%N) - start) / 1000000 )) ms from del to table seen, veth set-up included)"
else
	not_ok "a namespace made anew at re's path gets its table when mounted"
fi
check "and its rules: re may not reach srv on tcp/80" cannot re tcp 198.18.0.13 80
check "re may reach srv on udp/53" can re udp 198.18.0.13 53
check "status says re holds the bundle in its new namespace" \
	agent_status_is "e['re']['applied'] == s['bundle'] and e['re']['counters']['full_updates'] == $old_full + 1" True
check "the agent logged the replaced namespace" grep -qE "endpoint re: namespace /run/netns/$P-re (is gone|was replaced)" "$LOG"
check "and no error for the mount point it saw before the mount" bash -c "! grep -q 'error: endpoint re:' '$LOG'"
check "no crash or sanitizer report in the agent's log" bash -c "! grep -qE 'AddressSanitizer|runtime error|Segmentation' '$LOG'"

[ "$failed" -eq 0 ] || { echo "--- agent log"; cat "$LOG"; }
finish
