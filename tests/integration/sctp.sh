#!/bin/bash
# sctp: `sctp/PORT` rules proven with packets. This kernel has no SCTP
# sockets, but nftables matches SCTP headers and conntrack tracks SCTP: so
# crafted INIT chunks (tests/integration/sctp.py, raw sockets, a correct
# CRC32c) go from c1 to web1 through the fabric, IPv4 and IPv6, and web1
# answers each INIT that arrives with an INIT ACK. One controller, one agent
# (CURVE), web1 and c1 on node n1:
#   - web1's ingress: allow clients sctp/5000, deny clients sctp/5001, allow
#     clients tcp/5002 (so sctp/5002 falls to default-deny);
#   - c1's egress: deny web sctp/6000, allow the rest; c1's ingress isolated
#     (nothing allowed), so the INIT ACK reaches it only as the reply of a
#     connection conntrack holds;
#   - what arrives and what not, the allow rule's hits (`flows --rules`),
#     every drop in `bulkhead flows` (proto sctp, its port, its rule) and the
#     nft counters of the deny rules.
# Usage: sctp.sh [BUILD_DIR]
set -u
. "$(dirname "$0")/world.bash"
BUILD=${1:-$LIB_ROOT/build}
SCTP=$LIB_ROOT/tests/integration/sctp.py

world_init sctp || exit 1
world_daemons "$BUILD" n1 || exit 1
AGENT_ARGS=(--flow-window-ms 200 --counters-ms 300)
world_add_endpoint web1 11 11 || exit 1
world_add_endpoint c1 21 21 || exit 1
cat >"$TMP/n1.json" <<JSON
{"node": "n1", "endpoints": [
 {"name": "web1", "netns": "/run/netns/$P-web1", "labels": {"role": "web"}},
 {"name": "c1", "netns": "/run/netns/$P-c1", "labels": {"role": "client"}}]}
JSON
cat >"$TMP/policy.json" <<'JSON'
{"version": 1,
 "groups": {"web": {"labels": {"role": "web"}}, "clients": {"labels": {"role": "client"}}},
 "policies": [
  {"name": "web-in", "applies_to": "web", "ingress": [
     {"from": ["clients"], "ports": ["sctp/5000"]},
     {"action": "deny", "from": ["clients"], "ports": ["sctp/5001"]},
     {"from": ["clients"], "ports": ["tcp/5002"]}]},
  {"name": "c-out", "applies_to": "clients",
   "egress": [{"action": "deny", "to": ["web"], "ports": ["sctp/6000"]}, {"action": "allow"}],
   "ingress": []}]}
JSON

controller_start
agent_start n1
bh policy apply "$TMP/policy.json" >/dev/null
check "the agent applied the policy" bh status --wait=20 >/dev/null

ip netns exec "$P-web1" "$PYTHON" "$SCTP" listen "$TMP/ready" "$TMP/arrived" >"$TMP/listen.log" 2>&1 &
WORLD_PIDS+=($!)
check "web1 listens on a raw SCTP socket" wait_for 5 test -e "$TMP/ready"
touch "$TMP/arrived"

# init ADDR DPORT SPORT: c1 sends an INIT; true when its INIT ACK came back.
init() { ip netns exec "$P-c1" "$PYTHON" "$SCTP" init "$1" "$2" "$3" "$4"; }
answered() { init "$@" "$PASS_TIMEOUT"; }
unanswered() { init "$@" "$FAIL_TIMEOUT" >/dev/null; [ $? -eq 1 ]; }
refused_out() { init "$@" "$FAIL_TIMEOUT" >/dev/null; [ $? -eq 3 ]; } # EPERM: c1's own egress dropped it
arrived() { grep -qx "$1 $2 $3" "$TMP/arrived"; } # SRC DPORT SPORT
# flows_sum CONDITION: packets over the rows (r) of `bulkhead flows` matching.
flows_sum() { bh flows --limit 0 --json | json_get "sum(r['count'] for r in j['flows'] if $1)"; }
reported() { [ "$(flows_sum "$1")" = "$2" ]; }
row() { # ENDPOINT DIRECTION SRC PORT RULE
	echo "r['endpoint']=='$1' and r['direction']=='$2' and r['src']=='$3' and r['proto']=='sctp' and r['port']==$4 and r['verdict']=='deny' and r['rule']=='$5'"
}
rule_hits() { # RULE VERDICT: what its counters counted, as `flows --rules` says
	bh flows --rules --limit 0 --json | json_get "sum(r['hits'] or 0 for r in j['rules'] if r['rule']=='$1' and r['verdict']=='$2')"
}
hits_reach() { [ "$(rule_hits "$1" "$2")" = "$3" ]; }
hits_known() { [ -n "$(rule_hits "$1" "$2")" ]; }

wait_for 10 hits_known web-in/ingress/0 allow
allow0=$(rule_hits web-in/ingress/0 allow)

# ---- allowed: sctp/5000 ----
check "c1 -> web1 sctp/5000 (IPv4): the INIT arrives and its INIT ACK comes back" answered 198.18.0.11 5000 41000
check "  web1 saw it" arrived 198.18.0.21 5000 41000
check "c1 -> web1 sctp/5000 (IPv6): the INIT arrives and its INIT ACK comes back" answered 2001:db8:1::11 5000 41001
check "  web1 saw it" arrived 2001:db8:1::21 5000 41001
check "a second one from another port too" answered 198.18.0.11 5000 41002
# (An association that goes no further than INIT ACK is forgotten after 3 s: look now.)
check "web1's conntrack tracks it as SCTP" \
	bash -c "ip netns exec '$P-web1' conntrack -L -p sctp 2>/dev/null | grep -q 'sport=41002 dport=5000'"
check "the allow rule counted 3 hits (web-in/ingress/0)" wait_for 10 hits_reach web-in/ingress/0 allow $((allow0 + 3))
check "the INIT ACKs reached c1 as replies: its ingress dropped nothing" \
	test "$(flows_sum "r['endpoint']=='c1' and r['direction']=='ingress'")" = 0

# ---- denied at web1's ingress by a deny rule: sctp/5001 ----
check "c1 -> web1 sctp/5001 (IPv4): dropped" unanswered 198.18.0.11 5001 42000
check "c1 -> web1 sctp/5001 (IPv6): dropped" unanswered 2001:db8:1::11 5001 42001
check "  web1 saw neither" bash -c "! grep -q ' 5001 ' '$TMP/arrived'"
check "bulkhead flows: 1 IPv4 packet, sctp/5001, denied by web-in/ingress/1" \
	wait_for 10 reported "$(row web1 ingress 198.18.0.21 5001 web-in/ingress/1)" 1
check "bulkhead flows: 1 IPv6 packet, the same rule" \
	wait_for 10 reported "$(row web1 ingress 2001:db8:1::21 5001 web-in/ingress/1)" 1

# ---- sctp/5002: only tcp/5002 is allowed, so default-deny ----
check "c1 -> web1 sctp/5002: a tcp/5002 rule does not let SCTP in" unanswered 198.18.0.11 5002 43000
check "bulkhead flows: sctp/5002 denied by default-deny" \
	wait_for 10 reported "$(row web1 ingress 198.18.0.21 5002 default-deny)" 1

# ---- denied at c1's egress: sctp/6000 ----
check "c1 -> web1 sctp/6000: dropped on its way out (EPERM)" refused_out 198.18.0.11 6000 44000
check "  web1 never saw it" bash -c "! grep -q ' 6000 ' '$TMP/arrived'"
check "bulkhead flows: sctp/6000 denied at c1's egress by c-out/egress/0" \
	wait_for 10 reported "r['endpoint']=='c1' and r['direction']=='egress' and r['dst']=='198.18.0.11' and r['proto']=='sctp' and r['port']==6000 and r['rule']=='c-out/egress/0'" 1

# ---- web1 -> c1: c1's ingress is isolated ----
ip netns exec "$P-c1" "$PYTHON" "$SCTP" listen "$TMP/ready-c1" "$TMP/arrived-c1" >/dev/null 2>&1 &
WORLD_PIDS+=($!)
wait_for 5 test -e "$TMP/ready-c1"
check "web1 -> c1 sctp/5000: an INIT that is no reply is dropped at c1" \
	bash -c "ip netns exec '$P-web1' '$PYTHON' '$SCTP' init 198.18.0.21 5000 45000 '$FAIL_TIMEOUT'; [ \$? -eq 1 ]"
check "bulkhead flows: denied at c1's ingress by default-deny" \
	wait_for 10 reported "$(row c1 ingress 198.18.0.11 5000 default-deny)" 1

# ---- the deny rules' counters ----
check "the deny rules' hits equal the packets reported (web-in/ingress/1: 2)" \
	wait_for 10 hits_reach web-in/ingress/1 deny 2
check "(c-out/egress/0: 1)" wait_for 10 hits_reach c-out/egress/0 deny 1
check "nothing arrived at web1 but the three allowed INITs" test "$(wc -l <"$TMP/arrived")" = 3
finish
