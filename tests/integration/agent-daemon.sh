#!/bin/bash
# agent-daemon: bulkhead-agent as a daemon, with real traffic. It applies its
# bundle to every endpoint, follows a new bundle file and inventory, refuses
# bad ones and keeps what is in force, puts back a table someone changed,
# follows addresses, survives a namespace that vanishes, leaves its rules in
# place when killed, and starts again from its cached bundle.
# Usage: agent-daemon.sh [BUILD_DIR]
set -u
. "$(dirname "$0")/world.bash"
BUILD=${1:-$LIB_ROOT/build}
CLI=$BUILD/cli/bulkhead
AGENT=$BUILD/agent/bulkhead-agent

world_init agentd || exit 1
STATE=$TMP/state
LOG=$TMP/agent.log
for e in "a 11 11" "b 12 12" "c 13 13"; do world_add_endpoint $e || exit 1; done
world_serve c tcp:80 udp:53 || { not_ok "listeners in c"; finish; exit 1; }

inventory() { # NAME... (labels: a and d are clients)
	local sep="" n
	printf '{"node": "n1", "endpoints": ['
	for n in "$@"; do
		local h
		case $n in a) h=11 ;; b) h=12 ;; c) h=13 ;; d) h=14 ;; esac
		printf '%s{"name": "%s", "netns": "/run/netns/%s-%s", "labels": {"role": "%s"}, "addresses": ["198.18.0.%s", "2001:db8:1::%s"]}' \
			"$sep" "$n" "$P" "$n" "$([ "$n" = a ] || [ "$n" = d ] && echo client || echo other)" "$h" "$h"
		sep=", "
	done
	printf ']}\n'
}
policy() { # FROM: "clients" or "any"
	local from='"from": ["clients"], '
	[ "$1" = any ] && from=""
	cat <<JSON
{"version": 1,
 "groups": {"clients": {"labels": {"role": "client"}}, "server": {"labels": {"role": "other"}}},
 "policies": [{"name": "to-c", "applies_to": {"labels": {"role": "other"}},
               "ingress": [{$from"ports": ["tcp/80"]}]}]}
JSON
}
# compile POLICY_FROM NAME...: writes $TMP/next.json, prints its hash.
compile() {
	local from=$1
	shift
	policy "$from" >"$TMP/policy.json"
	inventory "$@" >"$TMP/compile-inv.json"
	"$CLI" policy compile "$TMP/policy.json" --inventory "$TMP/compile-inv.json" --node n1 >"$TMP/next.json" &&
		"$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["hash"])' "$TMP/next.json"
}
install_file() { cp "$1" "$2.tmp" && mv "$2.tmp" "$2"; } # atomic, as deployment tools do
agent_start() { "$AGENT" --node n1 --inventory "$TMP/inventory.json" --state-dir "$STATE" "$@" >>"$LOG" 2>&1 & AGENT_PID=$!; WORLD_PIDS+=("$AGENT_PID"); }
table_rules() { ip netns exec "$P-$1" nft list chain inet bulkhead ingress 2>/dev/null | grep -c 'log prefix\|accept\|drop'; }
rules_are() { [ "$(table_rules "$1")" = "$2" ]; } # evaluated at every poll of wait_for
has_table() { ip netns exec "$P-$1" nft list table inet bulkhead >/dev/null 2>&1; }

inventory a b c >"$TMP/inventory.json"
H1=$(compile clients a b c) && install_file "$TMP/next.json" "$TMP/bundle.json"
agent_start --bundle "$TMP/bundle.json"

check "agent applies its bundle to every endpoint" wait_for 10 agent_status_is 'all(x["applied"] == s["bundle"] for x in e.values()) and s["bundle"]' "$H1"
check "client a reaches c on tcp/80" can a tcp 198.18.0.13 80
check "client a reaches c over IPv6" can a tcp 2001:db8:1::13 80
check "b is refused by c (default deny)" cannot b tcp 198.18.0.13 80
check "status lists c's addresses from its namespace" agent_status_is 'e["c"]["addresses"]' "['198.18.0.13', '2001:db8:1::13']"

# --- drift: someone edits the table inside the container's namespace ---
rules_before=$(table_rules c)
# put_back WHAT COMMAND...: someone runs COMMAND in c's namespace; c's chain
# is as it was again within 5 s (how long it took is printed, not judged).
put_back() {
	local what=$1 start
	shift
	start=$(date +%s%N)
	ip netns exec "$P-c" "$@"
	if wait_for 5 rules_are c "$rules_before"; then
		ok "$what ($(( ($(date +%s%N) - start) / 1000000 )) ms; target 1000 ms)"
	else
		not_ok "$what"
	fi
}
put_back "a flushed chain is put back" nft flush chain inet bulkhead ingress
check "after the flush, b is refused again" cannot b tcp 198.18.0.13 80
put_back "a foreign accept rule inserted first is taken out" nft insert rule inet bulkhead ingress accept
check "after the foreign rule, b is refused again" cannot b tcp 198.18.0.13 80
put_back "a deleted table is put back" nft delete table inet bulkhead
check "tampering is counted" wait_for 3 agent_status_is 'e["c"]["counters"]["tampering"] >= 3' True
check "tampering is logged with who did it" grep -q "changed by another process (netlink port" "$LOG"
check "the agent's own updates are not taken for tampering" agent_status_is 'e["a"]["counters"]["tampering"]' 0

# --- addresses followed live ---
ip -n "$P-a" addr add 198.18.0.111/24 dev eth0
check "an added address is seen" wait_for 3 agent_status_is '"198.18.0.111" in e["a"]["addresses"]' True
ip -n "$P-a" addr del 198.18.0.111/24 dev eth0
check "a removed address is seen" wait_for 3 agent_status_is '"198.18.0.111" in e["a"]["addresses"]' False
# Keep IPv6 addresses over the flap (the kernel drops them by default).
ip netns exec "$P-a" sysctl -qw net.ipv6.conf.eth0.keep_addr_on_down=1
ip -n "$P-a" link set eth0 down
check "a link down takes its addresses" wait_for 3 agent_status_is 'e["a"]["addresses"]' "[]"
ip -n "$P-a" link set eth0 up
check "the link up brings them back" wait_for 3 agent_status_is 'len(e["a"]["addresses"])' 2

# --- a new bundle file ---
H2=$(compile any a b c) && install_file "$TMP/next.json" "$TMP/bundle.json"
check "a new bundle file is applied" wait_for 5 agent_status_is 'e["c"]["applied"]' "$H2"
check "under the new bundle b reaches c" can b tcp 198.18.0.13 80

# --- bad input keeps what is in force ---
echo '{"format": 1, "node": "n1", "endpoints": [' >"$TMP/bad.json" && install_file "$TMP/bad.json" "$TMP/bundle.json"
check "a malformed bundle is rejected and counted" wait_for 5 agent_status_is 's["rejected"]["bundles"]' 1
sed 's/"hash": "\(.\)/"hash": "0\1/' "$TMP/next.json" >"$TMP/bad.json" && install_file "$TMP/bad.json" "$TMP/bundle.json"
check "a bundle whose hash does not match is rejected" wait_for 5 agent_status_is 's["rejected"]["bundles"]' 2
inventory a b c | sed 's/"node": "n1"/"node": "n2"/' >"$TMP/n2-inv.json"
"$CLI" policy compile "$TMP/policy.json" --inventory "$TMP/n2-inv.json" --node n2 >"$TMP/bad.json" &&
	install_file "$TMP/bad.json" "$TMP/bundle.json"
check "a bundle for another node is rejected" wait_for 5 agent_status_is 's["rejected"]["bundles"]' 3
check "and the log says whose it is" grep -q 'is for node "n2", not "n1"' "$LOG"
check "the bundle in force stays" agent_status_is 's["bundle"]' "$H2"
check "and b still reaches c" can b tcp 198.18.0.13 80
echo '{"node": "n1", "endpoints": [{"name": "a b"}]}' >"$TMP/bad.json" && install_file "$TMP/bad.json" "$TMP/inventory.json"
check "a bad inventory is rejected; endpoints stay managed" wait_for 5 agent_status_is 's["rejected"]["inventories"] == 1 and len(e) == 3' True
check "the agent logged the inventory's errors with their place" grep -q 'inventory.json: /endpoints/0/name: invalid endpoint name "a b"' "$LOG"

# --- a new endpoint, then its namespace vanishes ---
world_add_endpoint d 14 14
inventory a b c d >"$TMP/next-inv.json" && install_file "$TMP/next-inv.json" "$TMP/inventory.json"
H3=$(compile any a b c d) && install_file "$TMP/next.json" "$TMP/bundle.json"
check "a new endpoint gets its table" wait_for 5 has_table d
check "status shows it applied" wait_for 5 agent_status_is 'e["d"]["applied"]' "$H3"
ip netns del "$P-d"
check "a vanished namespace is dropped" wait_for 5 agent_status_is 'e["d"]["present"]' False
check "the agent is still running" kill -0 "$AGENT_PID"

# --- fail-static: kill -9, then restart from the cache ---
kill -9 "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null
check "killed with -9, the rules stay: b still reaches c (bundle 3 allows any)" can b tcp 198.18.0.13 80
check "killed with -9, c's table is still there" has_table c
ip netns exec "$P-c" nft delete table inet bulkhead
agent_start # no --bundle: only the cache
check "restarted without --bundle, the cached bundle is applied" wait_for 5 has_table c
check "status shows the cached bundle in force" wait_for 5 agent_status_is 's["bundle"]' "$H3"
kill -TERM "$AGENT_PID"
wait "$AGENT_PID"
check "SIGTERM: clean exit" test $? -eq 0
check "SIGTERM: rules left in place" has_table c
# --- --once: exit status says whether the asked-for bundle is in force ---
"$AGENT" --node n1 --inventory "$TMP/inventory.json" --bundle "$TMP/bad.json" --once >>"$LOG" 2>&1
check "--once with a bundle for another node exits 1" test $? -eq 1
echo '{' >"$TMP/bad.json"
"$AGENT" --node n1 --inventory "$TMP/inventory.json" --bundle "$TMP/bad.json" --once >>"$LOG" 2>&1
check "--once with a malformed bundle exits 1" test $? -eq 1
"$AGENT" --node n1 --inventory "$TMP/inventory.json" --once >>"$LOG" 2>&1
check "--once with no bundle at all exits 1" test $? -eq 1
inventory a b c >"$TMP/inventory.json"
compile any a b c >/dev/null
"$AGENT" --node n1 --inventory "$TMP/inventory.json" --bundle "$TMP/next.json" --once >>"$LOG" 2>&1
check "--once with a good bundle exits 0" test $? -eq 0
check "no crash or sanitizer report in the agent's log" bash -c "! grep -qE 'AddressSanitizer|runtime error|Segmentation' '$LOG'"

[ "$failed" -eq 0 ] || { echo "--- agent log"; cat "$LOG"; }
finish
