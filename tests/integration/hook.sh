#!/bin/bash
# hook: the OCI createRuntime hook (bulkhead-agent hook) and the agent's
# hook socket, run as runc runs the hook (the OCI state on stdin, the
# container's process already in its namespace, a bundle directory with a
# config.json), on namespaces of the test's own; no container engine. Real
# tables, real packets:
#   - a container in an endpoint's namespace: the hook returns once that
#     table is in place (tagged);
#   - one no source knows (no engine: its labels unknown): the hook puts
#     the quarantine table in itself; loopback works, nothing else;
#   - one whose bundle entry does not come in time (no controller): the
#     agent quarantines it; the controller back, its real table replaces
#     the quarantine, and the quarantine's drops are in `bulkhead flows`
#     under the endpoint's name, rule "quarantine";
#   - no agent at all: the hook quarantines, and leaves a table the agent
#     made alone; an agent that never answers: the hook returns after its
#     timeout, quarantined;
#   - fail closed: no namespace to open, or no state, and the hook exits 1
#     (the runtime does not start the container); the host's own namespace
#     (--network host) is left alone;
#   - two agents (two nodes) on one host, each its own socket, each
#     answering its own hooks; a third given a socket that is taken refuses
#     to start and says whose it is.
# Usage: hook.sh [BUILD_DIR]
set -u
. "$(dirname "$0")/world.bash"
BUILD=${1:-$LIB_ROOT/build}

world_init hook || exit 1
world_daemons "$BUILD" n1 n2 n3 || exit 1

# n1: web1 (web), client1 (client); web2 (web) joins later. n2: web9.
# new1..new3 are in no inventory; new1 is on the bridge too.
world_add_endpoint web1 11 11 || exit 1
world_add_endpoint client1 12 12 || exit 1
world_add_endpoint web2 14 14 || exit 1
world_add_endpoint web9 19 19 || exit 1
world_add_endpoint new1 13 13 || exit 1
for n in new2 new3; do
	ip netns add "$P-$n" && ip -n "$P-$n" link set lo up || exit 1
done
world_serve web1 tcp:80 || exit 1
world_serve web2 tcp:80 || exit 1
inventory_n1() { # NAMES...
	local sep="" n
	{
		echo '{"node": "n1", "endpoints": ['
		for n in "$@"; do
			case $n in web*) role=web ;; *) role=client ;; esac
			echo "$sep{\"name\": \"$n\", \"netns\": \"/run/netns/$P-$n\", \"labels\": {\"role\": \"$role\"}}"
			sep=,
		done
		echo ']}'
	} >"$TMP/n1.json.tmp" && mv "$TMP/n1.json.tmp" "$TMP/n1.json"
}
inventory_n1 web1 client1
cat >"$TMP/n2.json" <<JSON
{"node": "n2", "endpoints": [{"name": "web9", "netns": "/run/netns/$P-web9", "labels": {"role": "web"}}]}
JSON
echo '{"node": "n3", "endpoints": []}' >"$TMP/n3.json"
cat >"$TMP/policy.json" <<'JSON'
{"version": 1,
 "groups": {"web": {"labels": {"role": "web"}}, "clients": {"labels": {"role": "client"}}},
 "policies": [{"name": "web-in", "applies_to": "web", "ingress": [{"from": ["clients"], "ports": ["tcp/80"]}]}]}
JSON
S1=$TMP/run-n1/hook.sock S2=$TMP/run-n2/hook.sock

# A "container" in $P-NS: a process there, and a bundle whose config.json
# names the namespace by its bind mount, as podman's does.
declare -A CPID
container() { # NAME NS
	ip netns exec "$P-$2" sleep 600 &
	CPID[$1]=$!
	WORLD_PIDS+=("$!")
	local self i
	self=$(readlink /proc/self/ns/net)
	for i in $(seq 50); do
		[ "$(readlink "/proc/${CPID[$1]}/ns/net" 2>/dev/null)" != "$self" ] && break
		sleep 0.02
	done
	mkdir -p "$TMP/bundle-$1"
	echo "{\"linux\": {\"namespaces\": [{\"type\": \"pid\"}, {\"type\": \"network\", \"path\": \"/run/netns/$P-$2\"}]}}" \
		>"$TMP/bundle-$1/config.json"
}
# hook NAME SOCKET [ARGS...]: runs the hook for container NAME; its
# messages in $TMP/hook-NAME.log, its exit code in HOOK_RC.
hook() {
	local name=$1 sock=$2
	shift 2
	echo "{\"ociVersion\": \"1.0.2\", \"id\": \"ctr-$name\", \"status\": \"creating\", \"pid\": ${CPID[$name]}, \"bundle\": \"$TMP/bundle-$name\", \"annotations\": {}}" |
		timeout 30 "$AGENT" hook --socket "$sock" "$@" >"$TMP/hook-$name.log" 2>&1
	HOOK_RC=$?
	return 0
}
hook_ok() { [ "$HOOK_RC" = 0 ]; }
hook_said() { grep -q "$2" "$TMP/hook-$1.log"; }
table_of() { ip netns exec "$P-$1" nft list table inet bulkhead 2>/dev/null; }
quarantined() { table_of "$1" | grep -q 'comment "quarantine"'; }
tagged() { table_of "$1" | grep -q 'set bundle' && ! quarantined "$1"; }
up_to_date() { [ "$(bh status --json 2>/dev/null | json_get "[n['up_to_date'] for n in j['nodes'] if n['node']=='$1']")" = "[True]" ]; }
status_n1() { # PYTHON over the agent's status.json as s
	/usr/bin/python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' \
		"$TMP/state-n1/status.json" "$1" 2>/dev/null
}

controller_start
AGENT_ARGS=(--hook-socket "$S1" --flow-window-ms 200)
agent_start n1
bh policy apply "$TMP/policy.json" >/dev/null
check "n1 connected and up to date" wait_for 20 up_to_date n1
check "the hook socket is root's alone: 0600 in a 0700 directory" \
	test "$(stat -c %a "$S1") $(stat -c %a "$(dirname "$S1")")" = "600 700"

# --- an endpoint's namespace: the hook returns when its table is there ---
container c-web1 web1
hook c-web1 "$S1"
check "a container in web1's namespace: the hook exits 0" hook_ok
check "... saying web1's table is in place" hook_said c-web1 "(endpoint web1): its table is in place"
check "... and it is: web1's tagged table" tagged web1

# --- labels unknown: the hook quarantines by itself ---
check "before its hook, new1 reaches client1 (no policy applies to either)" can new1 icmp 198.18.0.12 8 0
container c-new1 new1
hook c-new1 "$S1"
check "a container no source knows (no engine): the hook exits 0" hook_ok
check "... and says it starts quarantined, labels unknown" hook_said c-new1 "starts quarantined.*unknown"
check "... the agent says so too" grep -q "container ctr-c-new1: the hook quarantines it" "$TMP/agent-n1.log"
check "its namespace holds the quarantine table" quarantined new1
check "... loopback still works inside it" ip netns exec "$P-new1" "$PYTHON" "$PROBE" icmp 127.0.0.1 8 0 1
check "... nothing else: new1 -> client1 is dropped" cannot new1 icmp 198.18.0.12 8 0
check "... and client1 -> new1" cannot client1 icmp 198.18.0.13 8 0

# --- the bundle entry does not come in time: the agent quarantines ---
kill "$CONTROLLER_PID"
wait "$CONTROLLER_PID" 2>/dev/null
inventory_n1 web1 client1 web2
container c-web2 web2
check "web2 is reported to the agent (no controller to compile for it)" \
	wait_for 10 status_n1 "any(e['name']=='web2' and e['present'] for e in s['endpoints'])"
hook c-web2 "$S1" --timeout-ms 1500
check "web2 not in any bundle within the timeout: the hook exits 0" hook_ok
check "... saying the agent quarantined endpoint web2" hook_said c-web2 "(endpoint web2) starts quarantined"
check "web2's namespace holds the quarantine table" quarantined web2
check "status.json says web2 is quarantined" status_n1 "[e['quarantined'] for e in s['endpoints'] if e['name']=='web2']==[True]"
check "client1 -> web2 tcp/80 is dropped while it is quarantined" cannot client1 tcp 198.18.0.14 80
controller_start
check "the controller back: web2's real table replaces the quarantine" wait_for 20 tagged web2
check "status.json: web2 no longer quarantined" \
	wait_for 5 status_n1 "[e['quarantined'] for e in s['endpoints'] if e['name']=='web2']==[False]"
check "client1 -> web2 tcp/80 passes now, as the policy says" can client1 tcp 198.18.0.14 80
quarantine_flow() {
	[ "$(bh flows --node n1 --limit 0 --json 2>/dev/null | json_get "len([r for r in j['flows'] if r['endpoint']=='web2' and r['rule']=='quarantine' and r['verdict']=='deny' and r['src']=='198.18.0.12' and r['port']==80])")" -ge 1 ] 2>/dev/null
}
check "the quarantine's drop is in bulkhead flows under web2, rule quarantine" wait_for 15 quarantine_flow

# --- no agent ---
kill "${AGENT_PID[n1]}"
wait "${AGENT_PID[n1]}" 2>/dev/null
container c-new2 new2
hook c-new2 "$S1"
check "no agent answers: the hook exits 0" hook_ok
check "... saying so, quarantined" hook_said c-new2 "starts quarantined.*no agent answers"
check "... and the quarantine table is there" quarantined new2
container c-web1b web1
hook c-web1b "$S1"
check "no agent, but the agent's table is in the namespace: left alone" hook_said c-web1b "is there already"
check "... web1's table still tagged" tagged web1

# An agent that never answers: the hook waits no longer than it was told.
"$PYTHON" - "$TMP/stuck.sock" <<'PY' &
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.bind(sys.argv[1]); s.listen(4)
open(sys.argv[1] + ".ready", "w").close()
conns = []
while True:
    c, _ = s.accept(); conns.append(c)   # never answers
PY
WORLD_PIDS+=("$!")
wait_for 5 test -e "$TMP/stuck.sock.ready"
container c-new3 new3
start=$(date +%s%N)
hook c-new3 "$TMP/stuck.sock" --timeout-ms 1000
elapsed=$((($(date +%s%N) - start) / 1000000))
echo "# the hook before an agent that never answers, --timeout-ms 1000: returned after $elapsed ms"
check "an agent that never answers: the hook returns (exit 0), quarantined" hook_ok
check "... saying the agent did not answer in time" hook_said c-new3 "did not answer within 1000 ms"
check "... and the quarantine table is there" quarantined new3

# --- fail closed, and the host left alone ---
echo '{"ociVersion": "1.0.2", "id": "gone", "pid": 999999999, "bundle": "/nonexistent"}' |
	timeout 10 "$AGENT" hook --socket "$S1" >"$TMP/hook-gone.log" 2>&1
check "no namespace to open (the process is gone): exit 1, the container is not started" test $? = 1
echo 'not json' | timeout 10 "$AGENT" hook --socket "$S1" >"$TMP/hook-bad.log" 2>&1
check "no OCI state: exit 1" test $? = 1
echo "{\"ociVersion\": \"1.0.2\", \"id\": \"host\", \"pid\": $$, \"bundle\": \"$TMP\"}" |
	timeout 10 "$AGENT" hook --socket "$S1" >"$TMP/hook-host.log" 2>&1
check "the host's own namespace (--network host): exit 0, no table" test $? = 0
check "... saying so" grep -q "shares the host's network namespace" "$TMP/hook-host.log"
"$AGENT" hook --timeout-ms 5 </dev/null >"$TMP/hook-usage.log" 2>&1
check "a bad option: exit 2" test $? = 2

# --- two agents on one host, each its own socket ---
AGENT_ARGS=(--hook-socket "$S1")
agent_start n1
AGENT_ARGS=(--hook-socket "$S2")
agent_start n2
both_up() { up_to_date n1 && up_to_date n2; }
check "both agents up to date" wait_for 20 both_up
container c-web9 web9
hook c-web9 "$S2"
check "n2's socket: its hook answered by n2, web9's table in place" hook_said c-web9 "(endpoint web9): its table is in place"
check "... in n2's log, not n1's" sh -c "grep -q 'ctr-c-web9' '$TMP/agent-n2.log' && ! grep -q 'ctr-c-web9' '$TMP/agent-n1.log'"
container c-web1c web1
hook c-web1c "$S1"
check "n1's socket: answered by n1" sh -c "grep -q '(endpoint web1): its table is in place' '$TMP/hook-c-web1c.log' && grep -q 'ctr-c-web1c' '$TMP/agent-n1.log'"
AGENT_ARGS=(--hook-socket "$S1")
agent_start n3
wait "${AGENT_PID[n3]}"
check "a third agent given n1's socket refuses to start (exit 1)" test $? = 1
check "... naming n1's pid" grep -q "another agent (pid ${AGENT_PID[n1]}) listens there" "$TMP/agent-n3.log"
hook c-web1c "$S1"
check "n1 still answers on its socket" hook_said c-web1c "its table is in place"

finish
