#!/bin/bash
# flows: the denied-flow report end to end. One controller, two agents
# (CURVE), real packets:
#   - exact accounting: N denied attempts of known 5-tuples (UDP, TCP, ICMP,
#     IPv4 and IPv6, an audit verdict, an outside address named by its
#     network group) show up as exactly those aggregates and counts;
#   - kill -9 the controller while flows stream, restart it: the total is
#     exact, nothing lost and nothing counted twice;
#   - an agent stopped while the controller is down keeps its batches in its
#     spool file and delivers them after both are back; one killed with
#     kill -9 keeps them in its journal;
#   - a flood of 50,000 denied packets/s for 5 s: the report counts every
#     packet the kernel logged, or says exactly how many it lost;
#   - the agent's status.json follows its flow counters on their own;
#   - rule hit counts (flows --rules): N allowed connections are N hits of
#     the allow rule; a deny rule's hits equal the packets reported for it;
#     an agent's clean restart carries its counts over exactly.
# Usage: flows.sh [BUILD_DIR]    FLOOD_RATE=50000 FLOOD_SECONDS=5
set -u
. "$(dirname "$0")/world.bash"
BUILD=${1:-$LIB_ROOT/build}
FLOOD=$BUILD/bench/udp-flood
FLOOD_RATE=${FLOOD_RATE:-50000}
FLOOD_SECONDS=${FLOOD_SECONDS:-5}

world_init flows || exit 1
world_daemons "$BUILD" n1 n2 || exit 1
AGENT_ARGS=(--flow-window-ms 200 --counters-ms 300)

# n1: web1. n2: client2, other2. outside3 is in no inventory: the outside
# world, inside the network group "partners".
world_add_endpoint web1 11 11 || exit 1
world_add_endpoint client2 21 21 || exit 1
world_add_endpoint other2 22 22 || exit 1
world_add_endpoint outside3 31 31 || exit 1
world_serve web1 tcp:80 || exit 1
cat >"$TMP/n1.json" <<JSON
{"node": "n1", "endpoints": [{"name": "web1", "netns": "/run/netns/$P-web1", "labels": {"role": "web"}}]}
JSON
cat >"$TMP/n2.json" <<JSON
{"node": "n2", "endpoints": [
 {"name": "client2", "netns": "/run/netns/$P-client2", "labels": {"role": "client"}},
 {"name": "other2", "netns": "/run/netns/$P-other2", "labels": {"role": "other"}}]}
JSON
cat >"$TMP/policy.json" <<'JSON'
{"version": 1,
 "groups": {"web": {"labels": {"role": "web"}}, "clients": {"labels": {"role": "client"}},
            "others": {"labels": {"role": "other"}}, "partners": {"cidrs": ["198.18.0.30/31"]}},
 "policies": [
  {"name": "web-in", "applies_to": "web", "ingress": [{"from": ["clients"], "ports": ["tcp/80"]}]},
  {"name": "others-out", "applies_to": "others", "mode": "audit",
   "egress": [{"action": "deny", "to": ["web"], "ports": ["udp/9999"]}, {"action": "allow"}]}]}
JSON

connected() { [ "$(bh status --json 2>/dev/null | json_get "sorted(n['node'] for n in j['nodes'] if n['connected'] and n['up_to_date'])")" = "['n1', 'n2']" ]; }

controller_start
agent_start n1
agent_start n2
bh policy apply "$TMP/policy.json" >/dev/null
check "both agents connected and up to date" wait_for 20 connected

# flows_sum PYTHON-CONDITION: packets over every reported flow row (r) matching.
flows_sum() {
	bh flows --limit 0 --json | json_get "sum(r['count'] for r in j['flows'] if $1)"
}
# settles CONDITION WANT: the sum reaches WANT within 15 s, and stays there.
settles() {
	SETTLE_COND=$1 SETTLE_WANT=$2
	wait_for 15 settled && sleep 1 && settled
}
settled() { SETTLE_GOT=$(flows_sum "$SETTLE_COND") && [ "$SETTLE_GOT" = "$SETTLE_WANT" ]; }

# --- exact accounting ---
ip netns exec "$P-other2" "$FLOOD" 198.18.0.11 9999 7 >/dev/null
for _ in 1 2 3; do cannot other2 tcp 198.18.0.11 80; done
for _ in 1 2; do cannot outside3 icmp 198.18.0.11 8 0; done
ip netns exec "$P-client2" "$FLOOD" 2001:db8:1::11 7777 4 >/dev/null
check "7 UDP datagrams other2 -> web1:9999: one row, count 7, denied at web1's ingress by default-deny" \
	settles "r['src']=='198.18.0.22' and r['dst']=='198.18.0.11' and r['proto']=='udp' and r['port']==9999 and r['verdict']=='deny' and r['node']=='n1' and r['endpoint']=='web1' and r['direction']=='ingress' and r['rule']=='default-deny' and r['policy'] is None" 7
check "the same 7 at other2's egress: verdict audit, others-out/egress/0" \
	settles "r['src']=='198.18.0.22' and r['port']==9999 and r['verdict']=='audit' and r['node']=='n2' and r['direction']=='egress' and r['rule']=='others-out/egress/0' and r['policy']=='others-out'" 7
check "3 TCP connection attempts to port 80: count 3" \
	settles "r['src']=='198.18.0.22' and r['proto']=='tcp' and r['port']==80 and r['verdict']=='deny'" 3
check "2 ICMP echo requests from outside3: icmp type 8 code 0, count 2" \
	settles "r['src']=='198.18.0.31' and r['proto']=='icmp' and r['icmp_type']==8 and r['icmp_code']==0" 2
check "4 IPv6 UDP datagrams client2 -> web1:7777: count 4" \
	settles "r['src']=='2001:db8:1::21' and r['dst']=='2001:db8:1::11' and r['proto']=='udp' and r['port']==7777" 4
# TCP with SYN and FIN both set: conntrack calls it invalid at client2's
# egress, where the chain's invalid drop logs it like any other drop.
ip netns exec "$P-client2" /usr/bin/python3 - 198.18.0.21 198.18.0.11 81 3 <<'PY'
import socket, struct, sys
src, dst, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def csum(b):
    b += b"\0" * (len(b) % 2)
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
for i in range(n):
    hdr = struct.pack("!HHIIBBHHH", 40000 + i, port, 1, 0, 5 << 4, 0x03, 1024, 0, 0)  # SYN|FIN
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(hdr))
    hdr = hdr[:16] + struct.pack("!H", csum(pseudo + hdr)) + hdr[18:]
    try:
        raw.sendto(hdr, (dst, 0))
    except PermissionError:  # dropped on the way out: what this is about
        pass
PY
check "3 invalid TCP packets (SYN+FIN) from client2: dropped at its egress as ct-invalid, count 3" \
	settles "r['src']=='198.18.0.21' and r['rule']=='ct-invalid' and r['node']=='n2' and r['direction']=='egress' and r['verdict']=='deny' and r['policy'] is None" 3
check "both ends named: other2 with its group, web1 with its group" \
	test "$(bh flows --json | json_get "[(r['src_endpoint'], r['src_groups'], r['dst_endpoint'], r['dst_groups']) for r in j['flows'] if r['port']==9999 and r['verdict']=='deny'][0]")" = "('n2/other2', 'others', 'n1/web1', 'web')"
check "the outside address is named by its network group" \
	test "$(bh flows --json | json_get "[(r['src_endpoint'], r['src_groups']) for r in j['flows'] if r['src']=='198.18.0.31'][0]")" = "(None, 'partners')"
check "nothing the policy allows is reported (client2 -> web1 tcp/80)" \
	bash -c "can() { ip netns exec '$P-client2' '$PYTHON' '$PROBE' tcp 198.18.0.11 80 1.0 >/dev/null 2>&1; }; can && sleep 1 && [ \"\$('$CLI' flows --limit 0 --json | /usr/bin/python3 -c 'import json,sys; print(sum(1 for r in json.load(sys.stdin)[\"flows\"] if r[\"src\"]==\"198.18.0.21\" and r[\"port\"]==80))')\" = 0 ]"

bh flows >"$TMP/report.txt"
check "the human report is a table with a header" grep -q '^LAST SEEN  *NODE  *SOURCE  *DESTINATION  *PROTO  *VERDICT  *RULE  *COUNT$' "$TMP/report.txt"
check "a denial reads: n2/other2 (others) -> n1/web1 (web) udp/9999 deny default-deny 7" \
	grep -Eq ' n1  +n2/other2 \(others\) +n1/web1 \(web\) +udp/9999 +deny +default-deny +7$' "$TMP/report.txt"
check "an audit reads differently: AUDIT (passed), with its rule" \
	grep -Eq ' n2  +n2/other2 \(others\) +n1/web1 \(web\) +udp/9999 +AUDIT \(passed\) +others-out/egress/0 +7$' "$TMP/report.txt"
check "the outside world reads: 198.18.0.31 [partners]" grep -q '198.18.0.31 \[partners\] .* icmp/8/0 ' "$TMP/report.txt"
check "newest first" test "$(bh flows --json | json_get "all(a['last'] >= b['last'] for a, b in zip(j['flows'], j['flows'][1:]))")" = True
check "--verdict audit shows only audits" test "$(bh flows --verdict audit --json | json_get "sorted(set(r['verdict'] for r in j['flows']))")" = "['audit']"
check "--verdict deny shows only denials" test "$(bh flows --verdict deny --json | json_get "sorted(set(r['verdict'] for r in j['flows']))")" = "['deny']"
check "--node n2 shows only n2" test "$(bh flows --node n2 --json | json_get "sorted(set(r['node'] for r in j['flows']))")" = "['n2']"
check "--group partners: only flows with an end in partners" \
	test "$(bh flows --group partners --json | json_get "sorted(set(r['src'] for r in j['flows']))")" = "['198.18.0.31']"
check "--limit 2 gives 2 rows" test "$(bh flows --limit 2 --json | json_get "len(j['flows'])")" = 2
check "--since 1h keeps them, a future-less --since 0s drops them" \
	test "$(bh flows --since 1h --json | json_get "len(j['flows']) > 0")/$(bh flows --since 0s --json | json_get "len(j['flows'])")" = "True/0"
check "--rules: packets per rule, default-deny at web1 counted" \
	test "$(bh flows --rules --json | json_get "[r['count'] for r in j['rules'] if r['rule']=='others-out/egress/0'][0]")" = 7

# --- rule hit counts: the kernel's counters, every verdict ---
# rule_hits RULE VERDICT [ARGS]: what that rule's counters counted.
rule_hits() {
	bh flows --rules --limit 0 --json "${@:3}" | json_get "sum(r['hits'] or 0 for r in j['rules'] if r['rule']=='$1' and r['verdict']=='$2')"
}
hits_reach() { [ "$(rule_hits "$1" "$2")" = "$3" ]; }
hits_settle() { wait_for 10 hits_reach "$@" && sleep 1 && hits_reach "$@"; }
hits_known() { [ -n "$(rule_hits "$1" "$2")" ]; }
wait_for 5 hits_known web-in/ingress/0 allow
allow_before=$(rule_hits web-in/ingress/0 allow)
for _ in 1 2 3 4 5; do can client2 tcp 198.18.0.11 80; done
check "5 allowed connections client2 -> web1:80 are 5 more hits of web-in/ingress/0 (from $allow_before)" \
	hits_settle web-in/ingress/0 allow $((allow_before + 5))
check "an audit rule's hits equal the packets reported for it (others-out/egress/0: 7)" \
	hits_settle others-out/egress/0 audit 7
check "web1's default-deny: hits equal the packets reported for it" \
	test "$(bh flows --rules --node n1 --json | json_get "[(r['hits'], r['count']) for r in j['rules'] if r['rule']=='default-deny'][0]" | tr -d '( )' | awk -F, '$1 == $2 && $1 > 0 {print "same"}')" = same
check "the invalid drop's hits equal the packets reported for it (ct-invalid: 3)" \
	hits_settle ct-invalid deny 3
check "--rules --verdict allow: only allow rules" \
	test "$(bh flows --rules --verdict allow --json | json_get "sorted(set(r['verdict'] for r in j['rules']))")" = "['allow']"
# (web1's own egress "defaults" counts too: IPv6 multicast listener reports.)
check "--rules --group web: of the policies' rules, web1's only" \
	test "$(bh flows --rules --group web --verdict allow --json | json_get "sorted(set(r['rule'] for r in j['rules'] if r['policy']))")" = "['web-in/ingress/0']"
bh flows --rules >"$TMP/rules.txt"
check "the human --rules view: hits, bytes, reported" grep -q '^POLICY  *RULE  *VERDICT  *HITS  *BYTES  *REPORTED  *PAIRS  *LAST$' "$TMP/rules.txt"
check "an allow rule reads: web-in web-in/ingress/0 allow N hits, nothing reported" \
	grep -Eq "^web-in +web-in/ingress/0 +allow +$((allow_before + 5)) +[0-9]+ +- +- " "$TMP/rules.txt"
check "--verdict allow: no flows where nothing observes accepted connections" \
	test "$(bh flows --verdict allow --json | json_get "len(j['flows'])")" = 0
"$CONTROLLER" --state-dir "$TMP/unused" --insecure --flow-retention yesterday 2>"$TMP/retention.err"
check "--flow-retention yesterday: the controller says so and exits 2" \
	bash -c "[ $? -eq 2 ] && grep -q 'flow-retention: a duration' '$TMP/retention.err'"
bh flows --since 2m --verdict bogus >/dev/null 2>&1
check "--verdict bogus is a usage error (exit 2)" test $? -eq 2
bh flows --since yesterday >/dev/null 2>&1
check "--since yesterday is a usage error (exit 2)" test $? -eq 2

# --- --follow prints new windows as they arrive ---
bh flows --follow --json >"$TMP/follow.out" 2>&1 &
FOLLOW=$!
WORLD_PIDS+=("$FOLLOW")
sleep 1.5
ip netns exec "$P-other2" "$FLOOD" 198.18.0.11 4242 5 >/dev/null
check "--follow shows the new flow" wait_for 10 grep -q '"port": 4242\|"port":4242' "$TMP/follow.out"
kill "$FOLLOW" 2>/dev/null

# --- kill -9 the controller while flows stream ---
ip netns exec "$P-other2" "$FLOOD" 198.18.0.11 9998 3000 500 >"$TMP/stream.out" &
STREAM=$!
sleep 2
kill -9 "$CONTROLLER_PID"
wait "$CONTROLLER_PID" 2>/dev/null
sleep 1.5
controller_start
wait "$STREAM"
check "the stream sent 3000" grep -q '^sent 3000 ' "$TMP/stream.out"
check "controller killed mid-stream: exactly 3000 counted, none lost, none twice" \
	settles "r['port']==9998 and r['node']=='n1'" 3000

# --- an agent stopped while the controller is down keeps its spool ---
allow_before=$(rule_hits web-in/ingress/0 allow)
kill -9 "$CONTROLLER_PID"
wait "$CONTROLLER_PID" 2>/dev/null
status_events() { json_get "j['flows']['events']" <"$TMP/state-n1/status.json"; }
events_before=$(status_events)
ip netns exec "$P-other2" "$FLOOD" 198.18.0.11 9997 50 >/dev/null
# Nothing else changes in n1's status meanwhile: its flow counters alone
# must bring status.json up to date (they were written only along with
# something else).
events_reach() { [ "$(status_events)" = $((events_before + 50)) ]; }
check "status.json follows the flow counters: 50 more events with the controller away" wait_for 5 events_reach
sleep 1
kill "${AGENT_PID[n1]}"
wait "${AGENT_PID[n1]}" 2>/dev/null
check "the stopped agent left its unacknowledged batches in its spool segments" \
	bash -c "grep -qs 9997 '$TMP/state-n1/flows.d/'*.seg"
controller_start
agent_start n1
check "after both restart: the 50 arrive, exactly once" settles "r['port']==9997 and r['node']=='n1'" 50
check "the segment holding them is gone once acknowledged" wait_for 5 bash -c "! grep -qs 9997 '$TMP/state-n1/flows.d/'*.seg"
for _ in 1 2; do can client2 tcp 198.18.0.11 80; done
check "after n1's clean restart (its table rebuilt): 2 connections are exactly 2 more hits" \
	hits_settle web-in/ingress/0 allow $((allow_before + 2))

# --- an agent killed (kill -9) while the controller is down: its journal ---
kill -9 "$CONTROLLER_PID"
wait "$CONTROLLER_PID" 2>/dev/null
ip netns exec "$P-other2" "$FLOOD" 198.18.0.11 9996 40 >/dev/null
sleep 1 # several 200 ms windows: the batch is made
kill -9 "${AGENT_PID[n1]}"
wait "${AGENT_PID[n1]}" 2>/dev/null
check "the killed agent's spool segment holds its unacknowledged batch" \
	bash -c "grep -qs 9996 '$TMP/state-n1/flows.d/'*.seg"
controller_start
agent_start n1
check "after both restart: the 40 arrive, exactly once" settles "r['port']==9996 and r['node']=='n1'" 40

# --- a flood: every logged packet counted, or the loss stated exactly ---
# The kernel's own counter of web1's logging drop rules is the truth: what
# it counted is what NFLOG was asked to deliver.
logged() { # packets counted by web1's ingress logging rules
	ip netns exec "$P-web1" nft -j list chain inet bulkhead ingress | /usr/bin/python3 -c '
import json, sys
n = 0
for o in json.load(sys.stdin)["nftables"]:
    r = o.get("rule")
    if r and any("log" in e for e in r["expr"]):
        n += sum(e["counter"]["packets"] for e in r["expr"] if "counter" in e)
print(n)'
}
reported() { # packets reported at web1's ingress, and those reported lost
	bh flows --limit 0 --json | json_get "sum(r['count'] for r in j['flows'] if r['endpoint']=='web1' and r['direction']=='ingress'), sum(l['gap'] for l in j['lost'] if l['endpoint']=='web1')"
}
sleep 1
before_kernel=$(logged)
read -r before_counted before_lost < <(reported | tr -d '(),')
ip netns exec "$P-client2" "$FLOOD" 198.18.0.11 6000 $((FLOOD_RATE * FLOOD_SECONDS)) "$FLOOD_RATE" >"$TMP/flood.out"
sent=$(awk '{print $2}' "$TMP/flood.out")
after_kernel=$(logged)
kernel=$((after_kernel - before_kernel))
balanced() {
	read -r c l < <(reported | tr -d '(),')
	[ $((c - before_counted + l - before_lost)) -eq "$kernel" ]
}
check "flood: $(cat "$TMP/flood.out"); the kernel logged $kernel; counted + stated lost = logged" wait_for 20 balanced
read -r c l < <(reported | tr -d '(),')
echo "# flood: sent $sent, kernel logged $kernel, counted $((c - before_counted)), stated lost $((l - before_lost))"
if [ $((l - before_lost)) -gt 0 ]; then
	check "the human report states the loss" bash -c "'$CLI' flows 2>&1 >/dev/null | grep -q 'not counted above'"
fi

check "no crash or sanitizer report in the daemons' logs" \
	bash -c "! grep -qE 'AddressSanitizer|runtime error|Segmentation' '$TMP'/*.log"
[ "$failed" -eq 0 ] || { for f in "$TMP"/*.log; do echo "--- $f"; tail -30 "$f"; done; }
finish
