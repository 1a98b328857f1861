#!/bin/bash
# observe: "observe": "all" end to end. One controller, two agents (CURVE),
# real packets:
#   - N accepted TCP connections client2 -> web1:80 are reported once each,
#     verdict allow, at web1's ingress (rule web-in/ingress/0) and at
#     client2's egress (its fallback, "defaults"); a stream of UDP datagrams
#     on one socket is one connection, reported once, not per packet;
#   - denials are reported as before, beside them; `bulkhead flows` without
#     --verdict stays the blocked-flow report; the allow rule's hit counter
#     still counts each connection once;
#   - bulkhead policy preview, on those flows: a document without the
#     tcp/80 allow newly blocks client2 -> web1:80 (exit 3, both ends named,
#     the rule that would decide), one that lets others in newly allows
#     other2 -> web1:80 (exit 0), the document in force changes nothing; it
#     says how much of the period was observed with observe all;
#   - the same document without observe: the table logs no accepted packet
#     (no "bh:P" prefix) and new connections are no longer reported; a
#     preview of a period with no observe all in force says allowed traffic
#     is unknown.
# Usage: observe.sh [BUILD_DIR]
set -u
. "$(dirname "$0")/world.bash"
BUILD=${1:-$LIB_ROOT/build}
FLOOD=$BUILD/bench/udp-flood

world_init observe || exit 1
world_daemons "$BUILD" n1 n2 || exit 1
AGENT_ARGS=(--flow-window-ms 200 --counters-ms 300)

world_add_endpoint web1 11 11 || exit 1
world_add_endpoint client2 21 21 || exit 1
world_add_endpoint other2 22 22 || exit 1
world_serve web1 tcp:80 udp:53 || exit 1
cat >"$TMP/n1.json" <<JSON
{"node": "n1", "endpoints": [{"name": "web1", "netns": "/run/netns/$P-web1", "labels": {"role": "web"}}]}
JSON
cat >"$TMP/n2.json" <<JSON
{"node": "n2", "endpoints": [
 {"name": "client2", "netns": "/run/netns/$P-client2", "labels": {"role": "client"}},
 {"name": "other2", "netns": "/run/netns/$P-other2", "labels": {"role": "other"}}]}
JSON
# policy.json without "observe", observed.json the same with "observe": "all".
cat >"$TMP/policy.json" <<'JSON'
{"version": 1,
 "groups": {"web": {"labels": {"role": "web"}}, "clients": {"labels": {"role": "client"}}},
 "policies": [
  {"name": "web-in", "applies_to": "web",
   "ingress": [{"from": ["clients"], "ports": ["tcp/80", "udp/53"]}]}]}
JSON
sed 's/^{"version": 1,/{"version": 1, "observe": "all",/' "$TMP/policy.json" >"$TMP/observed.json"

applied() { [ "$(bh status --json 2>/dev/null | json_get "sorted(n['node'] for n in j['nodes'] if n['connected'] and n['up_to_date'])")" = "['n1', 'n2']" ]; }

controller_start
agent_start n1
agent_start n2
bh policy apply "$TMP/observed.json" >/dev/null
check "both agents connected and up to date with observe all" wait_for 20 applied

# allowed COND: connections over every allowed flow row (r) matching.
allowed() { bh flows --verdict allow --limit 0 --json | json_get "sum(r['count'] for r in j['flows'] if $1)"; }
settles() { # COND WANT: reaches WANT within 15 s and stays there
	SETTLE_COND=$1 SETTLE_WANT=$2
	wait_for 15 settled && sleep 1 && settled
}
settled() { SETTLE_GOT=$(allowed "$SETTLE_COND") && [ "$SETTLE_GOT" = "$SETTLE_WANT" ]; }
hits() { bh flows --rules --limit 0 --json | json_get "sum(r['hits'] or 0 for r in j['rules'] if r['rule']=='$1')"; }

check "web1's table logs accepted new connections: ct status ! confirmed ... bh:P:i0" \
	bash -c "ip netns exec '$P-web1' nft list table inet bulkhead | grep -q 'ct status ! confirmed log prefix \"bh:P:i0\"'"

# The nft text of the same plan (--print-ruleset) says the same, and nft takes it.
cat >"$TMP/n1-offline.json" <<'JSON'
{"node": "n1", "endpoints": [{"name": "web1", "labels": {"role": "web"}, "addresses": ["198.18.0.11"]}]}
JSON
bh policy compile "$TMP/observed.json" --inventory "$TMP/n1-offline.json" --node n1 >"$TMP/n1-bundle.json" &&
	"$AGENT" --print-ruleset --bundle "$TMP/n1-bundle.json" --node n1 >"$TMP/n1.nft" 2>/dev/null
sed -i '/^# endpoint /d' "$TMP/n1.nft"
check "--print-ruleset: the twin before the allow rule, and nft -c -f accepts the text" \
	bash -c "grep -B0 -A1 'ct status ! confirmed log prefix \"bh:P:i0\"' '$TMP/n1.nft' | grep -q 'counter accept comment \"web-in/ingress/0\"' && ip netns exec '$FAB' nft -c -f '$TMP/n1.nft'"

hits_before=$(hits web-in/ingress/0)
for _ in 1 2 3 4 5; do can client2 tcp 198.18.0.11 80; done
hits_plus_5() { [ "$(hits web-in/ingress/0)" = $((hits_before + 5)) ]; }
hits_settle() { wait_for 10 hits_plus_5 && sleep 1 && hits_plus_5; }
check "the allow rule's counter counts each connection once, its twin nothing ($hits_before + 5)" hits_settle
ip netns exec "$P-client2" "$FLOOD" 198.18.0.11 53 20 >/dev/null
for _ in 1 2; do cannot other2 tcp 198.18.0.11 80; done

check "5 connections client2 -> web1:80: allow, web1's ingress, web-in/ingress/0, count 5" \
	settles "r['src']=='198.18.0.21' and r['dst']=='198.18.0.11' and r['proto']=='tcp' and r['port']==80 and r['verdict']=='allow' and r['node']=='n1' and r['endpoint']=='web1' and r['direction']=='ingress' and r['rule']=='web-in/ingress/0' and r['policy']=='web-in'" 5
check "the same 5 at client2's egress, decided by its fallback: defaults" \
	settles "r['src']=='198.18.0.21' and r['port']==80 and r['node']=='n2' and r['direction']=='egress' and r['rule']=='defaults' and r['policy'] is None" 5
check "20 UDP datagrams on one socket are one connection: count 1 at each end" \
	settles "r['src']=='198.18.0.21' and r['proto']=='udp' and r['port']==53" 2
check "both ends named: n2/client2 (clients) -> n1/web1 (web)" \
	test "$(bh flows --verdict allow --json | json_get "sorted(set((r['src_endpoint'], r['src_groups'], r['dst_endpoint'], r['dst_groups']) for r in j['flows'] if r['src']=='198.18.0.21'))")" = "[('n2/client2', 'clients', 'n1/web1', 'web')]"
check "the replies (established) are never reported" \
	test "$(bh flows --verdict allow --limit 0 --json | json_get "sum(1 for r in j['flows'] if r['src']=='198.18.0.11')")" = 0
deny_n() { bh flows --verdict deny --limit 0 --json | json_get "sum(r['count'] for r in j['flows'] if r['src']=='198.18.0.22' and r['port']==80)"; }
deny_is_2() { [ "$(deny_n)" = 2 ]; }
check "denials beside them as before: 2 from other2, default-deny" wait_for 10 deny_is_2
check "bulkhead flows without --verdict is still the blocked-flow report (no allow rows)" \
	test "$(bh flows --limit 0 --json | json_get "sorted(set(r['verdict'] for r in j['flows']))")" = "['deny']"
bh flows --verdict allow >"$TMP/allowed.txt"
check "the human report reads: n2/client2 (clients) -> n1/web1 (web) tcp/80 allow web-in/ingress/0 5" \
	grep -Eq ' n1  +n2/client2 \(clients\) +n1/web1 \(web\) +tcp/80 +allow +web-in/ingress/0 +5$' "$TMP/allowed.txt"
bh flows --rules --verdict allow >"$TMP/rules.txt"
check "--rules: the allow rule's reported connections beside its hits" \
	grep -Eq "^web-in +web-in/ingress/0 +allow +[0-9]+ +[0-9]+ +6 +1 " "$TMP/rules.txt"
check "the agent's status.json counts the logged packets like any other" \
	test "$(json_get "j['flows']['events'] > 0" <"$TMP/state-n1/status.json")" = True

# --- bulkhead policy preview on the flows of the period ---
# tighter: web1 keeps only udp/53; looser: others may reach tcp/80 too.
sed 's|"ports": \["tcp/80", "udp/53"\]|"ports": ["udp/53"]|' "$TMP/observed.json" >"$TMP/tighter.json"
sed 's|"clients": {"labels": {"role": "client"}}|&, "others": {"labels": {"role": "other"}}|; s|"from": \["clients"\]|"from": ["clients", "others"]|' \
	"$TMP/observed.json" >"$TMP/looser.json"
bh policy preview "$TMP/tighter.json" --since 10m --json >"$TMP/tighter.out"
check "preview of a tighter document: exit 3 (something would be newly blocked)" test $? -eq 3
pv() { json_get "$1" <"$TMP/tighter.out"; }
check "it newly blocks one flow, newly allows none, 2 unchanged (udp/53, other2's denied tcp/80)" \
	test "$(pv "(j['counts']['newly_blocked'], j['counts']['newly_allowed'], j['counts']['unchanged'])")" = "(1, 0, 2)"
check "the newly blocked flow: n2/client2 (clients) -> n1/web1 (web) tcp/80, was allow by web-in/ingress/0 x5, now deny by default-deny at web1's ingress" \
	test "$(pv "[(f['src_endpoint'], f['src_groups'], f['dst_endpoint'], f['dst_groups'], f['proto'], f['port'], f['was'], f['was_rule'], f['count'], f['now'], f['rule'], f['ingress']['endpoint'], f['egress']['verdict']) for f in j['flows'] if f['change']=='newly_blocked']")" \
	= "[('n2/client2', 'clients', 'n1/web1', 'web', 'tcp', 80, 'allow', 'web-in/ingress/0', 5, 'deny', 'default-deny', 'n1/web1', 'allow')]"
check "it says how much of the period was observed with observe all (some, not all of 10 m)" \
	test "$(pv "0 < j['observed_ms'] < j['until'] - j['since']")" = True
bh policy preview "$TMP/tighter.json" --since 10m >"$TMP/tighter.txt"
check "the text names the newly blocked flow, the old and the new rule" \
	grep -Eq 'n2/client2 \(clients\) +n1/web1 \(web\) +tcp/80 +allow x5 +web-in/ingress/0 +deny +default-deny$' "$TMP/tighter.txt"
check "the text says the share of the period observed, and the counts" \
	bash -c "grep -q '^Observed with \"observe\": \"all\" [0-9]*% of the period' '$TMP/tighter.txt' && grep -q '^Newly blocked: 1$' '$TMP/tighter.txt' && grep -q '^Unchanged: 2 ' '$TMP/tighter.txt'"
bh policy preview "$TMP/looser.json" --since 10m --json >"$TMP/looser.out"
check "preview of a looser document: exit 0" test $? -eq 0
check "it newly allows other2 -> web1:80 (was deny by default-deny x2, now allow by web-in/ingress/0)" \
	test "$(json_get "[(f['src_endpoint'], f['dst_endpoint'], f['port'], f['was'], f['was_rule'], f['count'], f['now'], f['rule']) for f in j['flows'] if f['change']=='newly_allowed']" <"$TMP/looser.out")" \
	= "[('n2/other2', 'n1/web1', 80, 'deny', 'default-deny', 2, 'allow', 'web-in/ingress/0')]"
bh policy preview "$TMP/observed.json" --json >"$TMP/same.out"
rc=$?
check "the document in force: nothing changes, exit 0" \
	test "$rc $(json_get "(j['counts']['newly_blocked'], j['counts']['newly_allowed'], j['counts']['unchanged'])" <"$TMP/same.out")" = "0 (0, 0, 3)"
echo '{"version": 1, "polices": []}' >"$TMP/typo.json"
bh policy preview "$TMP/typo.json" 2>"$TMP/typo.err"
rc=$?
check "an invalid document: exit 2, the error names the file and the place" \
	bash -c "[ $rc -eq 2 ] && grep -q 'typo.json: /polices: unknown key' '$TMP/typo.err'"
bh policy preview "$TMP/tighter.json" --since yesterday 2>/dev/null
check "--since yesterday: usage error, exit 2" test $? -eq 2

# --- back to the default: nothing accepted is logged any more ---
bh policy apply "$TMP/policy.json" >/dev/null
bh_wait() { bh status --wait=20 >/dev/null; }
check "the document without observe applied on both nodes" bh_wait
check "web1's table logs no accepted packet (no bh:P prefix)" \
	bash -c "! ip netns exec '$P-web1' nft list table inet bulkhead | grep -q 'bh:P'"
for _ in 1 2 3; do can client2 tcp 198.18.0.11 80; done
sleep 1.5
check "new connections are no longer reported: still 5 at web1's ingress" \
	settles "r['proto']=='tcp' and r['port']==80 and r['node']=='n1'" 5
sleep 1.5
bh policy preview "$TMP/tighter.json" --since 1s >"$TMP/unknown.txt"
rc=$?
check "a period with no observe all in force: the preview says allowed traffic is unknown (exit 0: nothing shown blocked)" \
	bash -c "[ $rc -eq 0 ] && grep -q 'allowed traffic is unknown' '$TMP/unknown.txt'"

finish
