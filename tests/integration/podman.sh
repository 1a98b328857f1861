#!/bin/bash
# podman: real podman containers (runc, CNI, an --internal network on
# 198.18.50.0/24 and 2001:db8:50::/64) as endpoints of an agent with
# --engine podman and the OCI hook (--hook-socket; the hooks.d entry in a
# --hooks-dir of the test's own). Real packets, the container's own
# commands:
#   - labelled containers get the policy's verdicts (IPv4 and IPv6);
#   - no window: a container whose very first instruction tries a forbidden
#     connection is refused, one allowed on first try gets through (so its
#     real table, not the quarantine, was there before it ran), and the
#     hook said the table was in place: the create event gave the labels
#     in time, and nothing asked podman about the container while podman
#     held its lock;
#   - the denied flows are in `bulkhead flows` under the containers' names;
#   - restart (a new namespace), rename (podman's event has only the new
#     name), network connect/disconnect, stop (podman's "died") and
#     removal (the address leaves the groups), the engine's restart (a
#     container started meanwhile is quarantined, then gets its table);
#   - the hook with no agent running: the container starts quarantined;
#     the agent back: the running containers get their real tables;
#   - two agents on one host (one for a real dockerd of the test's own,
#     one for podman, nodes of their own) each with its hook socket: each
#     has its engine's containers (a Docker container's address joins the
#     podman node's sets), the podman agent answers podman's hooks; a
#     third on a socket that is taken does not start.
# Removes every container, network and image it made, and the firewall
# rule it may add (a dockerd's FORWARD policy), also on failure; CNI adds
# nothing to the host's firewall (checked).
# Usage: podman.sh [BUILD_DIR]
set -u
. "$(dirname "$0")/world.bash"
BUILD=$(realpath "${1:-$LIB_ROOT/build}")

world_init podman || exit 1
# shellcheck source=tests/integration/podman.bash
. "$(dirname "$0")/podman.bash"
# shellcheck source=tests/integration/docker.bash
. "$(dirname "$0")/docker.bash"
PM_CLEANUP_NEXT="docker_cleanup; world_cleanup"
pm_init
world_daemons "$BUILD" pod dock dock2 || exit 1
pm_image || pm_skip "podman import of busybox failed"
pm_network a 198.18.50.0/24 2001:db8:50::/64 || pm_skip "podman network create failed"
pm_network b 198.18.52.0/24 2001:db8:52::/64 || pm_skip "podman network create failed"
pm_service || pm_skip "podman system service did not answer"

NET=$P-a
WEB=198.18.50.10 WEB6=2001:db8:50::10 SINK=198.18.50.11
HOOK_SOCK=$TMP/run-pod/hook.sock
pm_hook "$HOOK_SOCK" --timeout-ms 4000
for n in pod dock dock2; do echo "{\"node\": \"$n\", \"endpoints\": []}" >"$TMP/$n.json"; done
cat >"$TMP/policy.json" <<'JSON'
{"version": 1,
 "groups": {"web": {"labels": {"role": "web"}}, "clients": {"labels": {"role": "client"}}},
 "policies": [
  {"name": "web-in", "applies_to": "web", "ingress": [{"from": ["clients"], "ports": ["tcp/80"]}]},
  {"name": "client-out", "applies_to": "clients", "egress": [{"to": ["web"], "ports": ["tcp/80"]}]}]}
JSON
up_to_date() { [ "$(bh status --json 2>/dev/null | json_get "[n['up_to_date'] for n in j['nodes'] if n['node']=='$1']")" = "[True]" ]; }
endpoint_listed() { bh endpoints --node pod --json 2>/dev/null | json_get "[e['name'] for e in j['endpoints']]" | grep -q "'$1'"; }
table_in() { nsenter --net="$(pm_ns "$1")" nft list table inet bulkhead 2>/dev/null; }
quarantined() { table_in "$1" | grep -q 'comment "quarantine"'; }
can_from() { pm exec "$P-$1" nc -w 2 "$2" "$3" </dev/null >/dev/null 2>&1; }
cannot_from() { ! can_from "$@"; }
not_listed() { ! endpoint_listed "$1"; }
has_table() { # NAME: its real table (tagged, not the quarantine)
	local t
	t=$(table_in "$P-$1") && [[ $t == *"set bundle"* ]] && [[ $t != *'comment "quarantine"'* ]]
}
left_web() { ! table_in "$P-web" | grep -q "$1"; }

# CNI's plugins (firewall, portmap) would add chains and rules to the
# host's filter and nat tables; pm_network leaves them out.
cni_rules() { (iptables-save; ip6tables-save) 2>/dev/null | grep -c CNI; }
CNI_BEFORE=$(cni_rules)

controller_start
AGENT_ARGS=(--engine "podman:$PM_SOCK" --hook-socket "$HOOK_SOCK" --flow-window-ms 200)
agent_start pod
bh policy apply "$TMP/policy.json" >/dev/null
check "the podman agent is connected and up to date" wait_for 20 up_to_date pod

# run NAME ROLE IP IP6 CMD...: an attached container; its output in OUT.
run() {
	local name=$1 role=$2 ip=$3 ip6=$4
	shift 4
	OUT=$(pm run --name "$P-$name" --label "role=$role" --label "com.example.team=shop" --network "$NET" \
		--ip "$ip" --ip6 "$ip6" "$IMAGE" "$@" 2>"$TMP/run-$name.err")
}
# first NAME ROLE IP IP6 ADDR PORT: a container whose first instruction is a
# connection; OUT is OPEN or BLOCKED.
first() {
	local name=$1 role=$2 ip=$3 ip6=$4 addr=$5 port=$6
	run "$name" "$role" "$ip" "$ip6" sh -c "nc -w 2 $addr $port </dev/null && echo OPEN || echo BLOCKED"
}
hook_said() { grep "$1" "$TMP/agent-pod.log" | grep -q "$2"; }

# --- the servers: web (role web) and sink (no policy applies to it) ---
pm run -d --name "$P-web" --label role=web --network "$NET" --ip "$WEB" --ip6 "$WEB6" "$IMAGE" \
	sh -c 'nc -ll -p 80 -e /bin/true & nc -ll -p 81 -e /bin/true & sleep 3600' >/dev/null
pm run -d --name "$P-sink" --label role=sink --network "$NET" --ip "$SINK" --ip6 2001:db8:50::11 "$IMAGE" \
	sh -c 'nc -ll -p 80 -e /bin/true & nc -ll -p 81 -e /bin/true & sleep 3600' >/dev/null
servers_up() { has_table web && has_table sink; }
check "web and sink run, each with its real table" wait_for 10 servers_up
check "web's hook waited for its table (create event's labels, no lock taken)" \
	hook_said "(endpoint $P-web)" "its table is in place"

# --- no window: the very first instruction ---
first good client 198.18.50.20 2001:db8:50::20 "$WEB" 80
check "a client whose first instruction connects to web tcp/80 gets through (its real table, not the quarantine)" \
	test "$OUT" = OPEN
check "... its hook returned once its table was in place" hook_said "(endpoint $P-good)" "its table is in place"
first bad client 198.18.50.21 2001:db8:50::21 "$SINK" 81
check "a client whose first instruction connects to sink tcp/81 is refused by its own egress table" \
	test "$OUT" = BLOCKED
first good6 client 198.18.50.22 2001:db8:50::22 "$WEB6" 80
check "... the same over IPv6: allowed on first try" test "$OUT" = OPEN
first other sink 198.18.50.23 2001:db8:50::23 "$WEB" 80
check "a container in no client group is refused by web's ingress" test "$OUT" = BLOCKED

# --- the policy's verdicts between running containers ---
pm run -d --name "$P-cli" --label role=client --network "$NET" --ip 198.18.50.30 --ip6 2001:db8:50::30 \
	"$IMAGE" sleep 3600 >/dev/null
check "client -> web tcp/80: allowed" can_from cli "$WEB" 80
check "client -> web tcp/81: denied (web's ingress)" cannot_from cli "$WEB" 81
check "client -> web tcp/80 over IPv6: allowed" can_from cli "$WEB6" 80
check "client -> sink tcp/80: denied (the client's egress)" cannot_from cli "$SINK" 80

# --- denied flows under the containers' names ---
flow_of() { # ENDPOINT DIRECTION PORT
	[ "$(bh flows --node pod --limit 0 --json 2>/dev/null | json_get "len([r for r in j['flows'] if r['endpoint']=='$P-$1' and r['direction']=='$2' and r['port']==$3 and r['verdict']=='deny'])")" -ge 1 ] 2>/dev/null
}
check "bulkhead flows: bad's first connection, egress, under its container name" wait_for 15 flow_of bad egress 81
check "bulkhead flows: other's, at web's ingress, under web's name" wait_for 15 flow_of web ingress 80
named_flow() { bh flows --node pod --limit 0 | grep -q "pod/$P-bad .*pod/$P-sink"; }
check "bulkhead flows names both ends by container: $P-bad -> $P-sink" named_flow

# --- restart: a new namespace, its table again before it runs ---
# The namespace's path, not its inode: the kernel hands a freed inode
# number out again, often to the very next namespace.
sandbox() { pm inspect "$P-$1" --format '{{.NetworkSettings.SandboxKey}}'; }
old_ns=$(sandbox web)
pm restart -t 0 "$P-web" >/dev/null
check "web restarted in a new namespace" test "$(sandbox web)" != "$old_ns"
check "... its table there again" wait_for 10 has_table web
check "... client -> web tcp/80 still allowed" wait_for 5 can_from cli "$WEB" 80
check "... and tcp/81 still denied" cannot_from cli "$WEB" 81

# --- rename: podman's event names only the new name ---
renamed() { endpoint_listed "$P-sink2" && not_listed "$P-sink"; }
pm rename "$P-sink" "$P-sink2"
check "sink renamed sink2: the controller's endpoints follow" wait_for 10 renamed

# --- network connect / disconnect: the address follows ---
in_web() { ! left_web "$1"; }
pm network connect --ip 198.18.52.30 "$P-b" "$P-cli" >/dev/null
check "cli connected to a second network: its address there joins web's client set" \
	wait_for 10 in_web 198.18.52.30
pm network disconnect "$P-b" "$P-cli" >/dev/null
check "... and disconnected: it leaves" wait_for 10 left_web 198.18.52.30

# --- stop ("died" in podman's own events, "die" in its compatible
# stream), then removal ("remove"): the address leaves the groups ---
check "cli (running) is an endpoint" endpoint_listed "$P-cli"
check "... its address in web's client set" in_web 198.18.50.30
pm stop -t 0 "$P-cli" >/dev/null
check "stopped: cli is no longer an endpoint" wait_for 10 not_listed "$P-cli"
check "... and its address left web's client set" wait_for 10 left_web 198.18.50.30
pm start "$P-cli" >/dev/null
check "started again: an endpoint again, its address back in web's set" wait_for 10 in_web 198.18.50.30
pm rm -f -t 0 "$P-cli" >/dev/null
check "removed: cli is no longer an endpoint" wait_for 10 not_listed "$P-cli"
check "... and its address left web's client set" wait_for 10 left_web 198.18.50.30

# --- the engine restarts; a container started meanwhile ---
pm_service_stop
first blind client 198.18.50.40 2001:db8:50::40 "$WEB" 80
check "the engine down: a new container's labels are unknown; it starts quarantined (its first try refused)" \
	test "$OUT" = BLOCKED
pm run -d --name "$P-late" --label role=client --network "$NET" --ip 198.18.50.41 --ip6 2001:db8:50::41 \
	"$IMAGE" sleep 3600 >/dev/null
check "... another, running, quarantined" quarantined "$P-late"
pm_service || echo "# the service did not come back"
check "the engine back: the agent finds late and gives it its real table" wait_for 20 has_table late
check "... late -> web tcp/80 allowed now" wait_for 10 can_from late "$WEB" 80

# --- two agents on one host, nodes of their own: one for a dockerd (of
# the test's own, docker.bash), one for podman; each its hook socket ---
PM_IMAGE=$IMAGE
docker_start || pm_skip "dockerd did not start"
docker_image || pm_skip "docker import of busybox failed"
DOCKER_IMAGE=$IMAGE IMAGE=$PM_IMAGE
docker_network "$P-d" 198.18.51.0/24 2001:db8:51::/64 || pm_skip "docker network create failed"
AGENT_ARGS=(--engine "docker:$DSOCK" --hook-socket "$TMP/run-dock/hook.sock")
agent_start dock
check "a second agent (Docker's) runs beside it on a socket of its own" wait_for 10 test -S "$TMP/run-dock/hook.sock"
$DOCKER run -d --name "$P-dcli" --network "$P-d" --ip 198.18.51.30 -l role=client "$DOCKER_IMAGE" sleep 3600 >/dev/null
docker_applied() { grep -q "endpoint $P-dcli: applied bundle" "$TMP/agent-dock.log"; }
check "a Docker container is the Docker agent's endpoint, its table in place" wait_for 15 docker_applied
check "... its address joins web's client set on the podman node" wait_for 10 in_web 198.18.51.30
check "... and it is not the podman agent's" eval '! grep -q "$P-dcli" "$TMP/agent-pod.log"'
first two client 198.18.50.50 2001:db8:50::50 "$WEB" 80
answered_by_pod() { grep -q "(endpoint $P-two): its table is in place" "$TMP/agent-pod.log" && ! grep -q "$P-two" "$TMP/agent-dock.log"; }
check "podman's hook is answered by the podman agent" answered_by_pod
check "... allowed on first try" test "$OUT" = OPEN
AGENT_ARGS=(--engine "docker:$DSOCK" --hook-socket "$HOOK_SOCK")
agent_start dock2
wait "${AGENT_PID[dock2]}"
check "a third agent on the podman agent's socket refuses to start" test $? = 1
check "... naming the podman agent" grep -q "another agent (pid ${AGENT_PID[pod]}) listens there" "$TMP/agent-dock2.log"

# --- no agent: the hook quarantines by itself ---
kill "${AGENT_PID[pod]}"
wait "${AGENT_PID[pod]}" 2>/dev/null
first alone client 198.18.50.60 2001:db8:50::60 "$WEB" 80
check "no agent running: the container starts, its first try refused (quarantined by the hook)" \
	test "$OUT" = BLOCKED
pm run -d --name "$P-alone2" --label role=client --network "$NET" --ip 198.18.50.61 --ip6 2001:db8:50::61 \
	"$IMAGE" sleep 3600 >/dev/null
check "... its namespace holds the quarantine table" quarantined "$P-alone2"
check "... loopback works inside" pm exec "$P-alone2" sh -c 'nc -ll -p 7 -e /bin/true & sleep 0.2; nc -w 2 127.0.0.1 7 </dev/null'

# --- the agent back, with containers running: the hook's quarantine
# replaced by the real table ---
AGENT_ARGS=(--engine "podman:$PM_SOCK" --hook-socket "$HOOK_SOCK" --flow-window-ms 200)
agent_start pod
check "the agent restarted: alone2's quarantine (the hook's) replaced by its real table" wait_for 20 has_table alone2
check "... alone2 -> web tcp/80 allowed now" wait_for 10 can_from alone2 "$WEB" 80
check "... and tcp/81 refused" cannot_from alone2 "$WEB" 81

check "containers running: no iptables chain or rule of CNI's added to the host" test "$(cni_rules)" = "$CNI_BEFORE"

finish
