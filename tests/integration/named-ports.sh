#!/bin/bash
# named-ports: the Kubernetes named-port behaviours with real daemons and
# packets (DESIGN §2 "Named ports"). n2's endpoints name their ports in the
# inventory: web1 calls tcp/8080 "http", web2 calls tcp/9090 "http", db
# calls tcp/5432 "pg" and has no "http". Then:
#   - ingress on a named port: anyone reaches db on pg (5432), not 5433;
#   - from a namespace-label group on a named port: web1 and web2 admit the
#     frontend namespace's client on their own http, the backend's not;
#   - egress on a named port where two destinations give the name different
#     numbers: cli reaches web1 only on 8080 and web2 only on 9090;
#   - a name the destination does not define: cli's egress to db on http
#     matches nothing, so the drop is reported in `bulkhead flows`;
#   - web2 renumbering http to 9091 reaches cli's table as an element delta
#     (its rules, their handles and counters untouched) and moves what cli
#     reaches; and back to 9090 with n1's agent in the map form, where web2
#     changes class: elements again, the rules' chains untouched;
#   - api (no policy of its own) renumbering its rpc cuts cli's live
#     connection to the old number: the conntrack cut judges a table change
#     as a tightening;
#   - the kernel's tables (examples/named-ports, bench/nft-apply --verify)
#     read back as a fresh build makes them, after a renumbering delta too,
#     in both forms, and a pair someone else added is told apart.
# Usage: named-ports.sh [BUILD_DIR]
set -u
. "$(dirname "$0")/world.bash"
BUILD=${1:-$LIB_ROOT/build}

world_init nport || exit 1
world_need nft "$BUILD/bench/nft-apply"
world_daemons "$BUILD" n1 n2 || exit 1
world_add_endpoint cli 11 11 || exit 1   # n1, namespace frontend
world_add_endpoint other 12 12 || exit 1 # n1, namespace backend
world_add_endpoint web1 21 21 || exit 1  # n2
world_add_endpoint web2 22 22 || exit 1  # n2
world_add_endpoint db 23 23 || exit 1    # n2
world_add_endpoint api 24 24 || exit 1   # n2, no policy of its own
world_serve web1 tcp:8080 tcp:9090 tcp:9091 || exit 1
world_serve web2 tcp:8080 tcp:9090 tcp:9091 || exit 1
world_serve db tcp:5432 tcp:5433 tcp:8080 tcp:9090 || exit 1
world_serve api tcp:7001 || exit 1

ep() { # NAME LABELS [PORTS]
	printf '{"name": "%s", "netns": "/run/netns/%s-%s", "labels": %s%s}' "$1" "$P" "$1" "$2" \
		"${3:+, \"ports\": $3}"
}
printf '{"node": "n1", "endpoints": [%s, %s]}\n' "$(ep cli '{"app": "cli", "ns": "frontend"}')" \
	"$(ep other '{"app": "cli", "ns": "backend"}')" >"$TMP/n1.json"
n2_reports() { # WEB2_HTTP [API_RPC]: n2's inventory, replaced at once (the agent follows it)
	printf '{"node": "n2", "endpoints": [%s, %s, %s, %s]}\n' \
		"$(ep web1 '{"app": "web"}' '{"http": "tcp/8080"}')" \
		"$(ep web2 '{"app": "web"}' "{\"http\": \"tcp/$1\"}")" \
		"$(ep db '{"app": "db"}' '{"pg": "tcp/5432"}')" \
		"$(ep api '{"app": "api"}' "{\"rpc\": \"tcp/${2:-7000}\"}")" >"$TMP/n2.next" && mv "$TMP/n2.next" "$TMP/n2.json"
}
n2_reports 9090

cat >"$TMP/policy.json" <<'JSON'
{"version": 1,
 "defaults": {"ingress": "allow", "egress": "allow"},
 "groups": {"frontend": {"labels": {"ns": "frontend"}}, "api": {"labels": {"app": "api"}},
            "web": {"labels": {"app": "web"}}, "db": {"labels": {"app": "db"}}},
 "policies": [
  {"name": "db-in", "applies_to": "db", "ingress": [{"ports": ["tcp/pg"]}]},
  {"name": "web-in", "applies_to": "web", "ingress": [{"from": ["frontend"], "ports": ["tcp/http"]}]},
  {"name": "cli-out", "applies_to": {"labels": {"ns": "frontend"}},
   "egress": [{"to": ["web", "db"], "ports": ["tcp/http"]}, {"to": ["api"], "ports": ["tcp/rpc"]}]}]}
JSON

controller_start
agent_start n1
agent_start n2
wait_for 10 connected_nodes_are "['n1', 'n2']"
check "policy applied" test "$(bh policy apply "$TMP/policy.json")" = "revision 1"
check "status --wait converges" bh status --wait=20 >/dev/null

# --- ingress on a named port, resolved on the endpoint itself ---
check "other reaches db on pg (5432)" can other tcp 198.18.0.23 5432
check "other cannot reach db on 5433" cannot other tcp 198.18.0.23 5433
# --- from a namespace-label group, on the destination's own http ---
check "cli (frontend) reaches web1 on its http (8080)" can cli tcp 198.18.0.21 8080
check "cli reaches web2 on its http (9090)" can cli tcp 198.18.0.22 9090
check "other (backend) cannot reach web1 on 8080" cannot other tcp 198.18.0.21 8080
check "other cannot reach web2 on 9090" cannot other tcp 198.18.0.22 9090
# --- egress on a named port, two numbers: each only on its own ---
check "cli cannot reach web1 on web2's number (9090)" cannot cli tcp 198.18.0.21 9090
check "cli cannot reach web2 on web1's number (8080)" cannot cli tcp 198.18.0.22 8080
check "cli's egress holds the pairs as a concatenated set" bash -c \
	"ip netns exec $P-cli nft list table inet bulkhead | grep -q '198.18.0.22 . 9090'"
# --- a name the destination does not define: nothing matches, reported ---
check "cli cannot reach db on 8080 (db defines no http)" cannot cli tcp 198.18.0.23 8080
check "nor on 5432 (its pg)" cannot cli tcp 198.18.0.23 5432
db_denied() { [ "$(bh flows --limit 0 --json | json_get "sum(r['count'] for r in j['flows'] if r['src']=='198.18.0.11' and r['dst']=='198.18.0.23' and r['port']==8080 and r['verdict']=='deny')")" -ge 1 ] 2>/dev/null; }
check "bulkhead flows reports cli's denied flow to db:8080" wait_for 15 db_denied

# --- web2 renumbers http: cli's table changes by elements ---
STATE=$TMP/state-n1
handles() { ip netns exec "$P-cli" nft -a list table inet bulkhead | sed -n 's/.* # handle \([0-9]*\)$/\1/p' | tr '\n' ' '; }
H0=$(handles)
# updates: cli's full and delta update counts; check_was_delta FULL0 DELTA0:
# the updates since those counts were deltas, one at least.
updates() { agent_status 'c["full_updates"], c["delta_updates"]' cli | tr -d '(),'; }
check_was_delta() {
	local full1 delta1
	read -r full1 delta1 < <(updates)
	check "as a delta (full updates $1 -> $full1, deltas $2 -> $delta1)" \
		test "${full1:-x}" = "${1:-y}" -a "${delta1:-0}" -gt "${2:-0}"
}
read -r full0 delta0 < <(updates)
n2_reports 9091
renumbered() { ip netns exec "$P-cli" nft list table inet bulkhead | grep -q '198.18.0.22 . 9091'; }
check "web2's new number reaches cli's table" wait_for 15 renumbered
check "status --wait converges" bh status --wait=20 >/dev/null
check_was_delta "$full0" "$delta0"
check "the session child passed it to the enforcer as a delta too (PS_DELTA)" \
	test "$(agent_status 's["controller"]["session"]["from_child"]["deltas"] > 0')" = True
check "handles of cli's table, sets, chains and rules untouched" test -n "$H0" -a "$H0" = "$(handles)"
check "cli reaches web2 on 9091" can cli tcp 198.18.0.22 9091
check "cli no longer reaches web2 on 9090" cannot cli tcp 198.18.0.22 9090
check "web1 is still on 8080" can cli tcp 198.18.0.21 8080

# --- a live connection the renumbering no longer allows is cut by cli's agent ---
# api has no policy: only cli's egress (tcp/rpc, api's 7000) stands between them.
STREAM=$LIB_ROOT/tests/integration/stream.py
F=$TMP/f-rpc
mkdir -p "$F"
ip netns exec "$P-api" "$PYTHON" "$STREAM" serve tcp 7000 "$F" >"$F/server.log" 2>&1 &
WORLD_PIDS+=($!)
wait_for 5 test -e "$F/ready"
ip netns exec "$P-cli" "$PYTHON" "$STREAM" connect tcp 198.18.0.24 7000 "$F" >"$F/client.log" 2>&1 &
WORLD_PIDS+=($!)
recv() { json_get "j['recv']" <"$F/$1.json"; }
counts() { echo "$(recv server 2>/dev/null || echo 0)/$(recv client 2>/dev/null || echo 0)"; }
flowing() { local a b; a=$(counts); sleep 0.3; b=$(counts); [ "${b%/*}" -gt "${a%/*}" ] && [ "${b#*/}" -gt "${a#*/}" ]; }
stopped() { local a; sleep 0.3; a=$(counts); sleep 1.5; [ "$(counts)" = "$a" ]; }
cuts() { agent_status 'e["cli"]["conntrack"]["cut"]'; }
check "cli -> api tcp/7000 (api's rpc) flows" wait_for 5 flowing
cut0=$(cuts)
n2_reports 9091 7001
cut_more() { [ "$(cuts 2>/dev/null)" -gt "${cut0:-0}" ] 2>/dev/null; }
check "api renumbering rpc to 7001: cli's agent cuts the connection to 7000" wait_for 15 cut_more
check "and it carries nothing more" stopped
check "cli reaches api on 7001" can cli tcp 198.18.0.24 7001
touch "$F/stop"

# --- the same in the map form: web2 back to 9090 is a class change, by elements ---
kill "${AGENT_PID[n1]}"
wait "${AGENT_PID[n1]}" 2>/dev/null
AGENT_ARGS=(--dataplane nft-maps)
agent_start n1
maps() { ip netns exec "$P-cli" nft list table inet bulkhead 2>/dev/null | grep -q 'map egress_hosts_v4'; }
check "n1's agent restarted in the map form" wait_for 15 maps
check "status --wait converges" bh status --wait=20 >/dev/null
check "cli reaches web2 on 9091 through the maps" can cli tcp 198.18.0.22 9091
check "and not on 9090" cannot cli tcp 198.18.0.22 9090
# The base chain's and the rule's chain's rules stay; web2's class chain may change.
rule_handles() {
	ip netns exec "$P-cli" sh -c 'nft -a list chain inet bulkhead egress; nft -a list chain inet bulkhead egress_0' |
		sed -n 's/.* # handle \([0-9]*\)$/\1/p' | tr '\n' ' '
}
R0=$(rule_handles)
read -r full0 delta0 < <(updates)
n2_reports 9090
back() { [ "$(agent_status 'c["delta_updates"]' cli 2>/dev/null)" -gt "${delta0:-0}" ] 2>/dev/null; }
check "web2's number back at 9090 reaches cli's maps" wait_for 15 back
check "status --wait converges" bh status --wait=20 >/dev/null
check_was_delta "$full0" "$delta0"
check "the base chain's and the rule's chain's rules untouched" test -n "$R0" -a "$R0" = "$(rule_handles)"
check "cli reaches web2 on 9090 again" can cli tcp 198.18.0.22 9090
check "and no longer on 9091" cannot cli tcp 198.18.0.22 9091
check "web1 is still on 8080, only" bash -c "can() { ip netns exec $P-cli $PYTHON $PROBE tcp \$1 \$2 $PASS_TIMEOUT >/dev/null 2>&1; }; can 198.18.0.21 8080 && ! ip netns exec $P-cli $PYTHON $PROBE tcp 198.18.0.21 9090 $FAIL_TIMEOUT >/dev/null 2>&1"

# --- the kernel's table read back: as a fresh build makes it, after a delta too ---
APPLY=$BUILD/bench/nft-apply
EX=$LIB_ROOT/examples/named-ports
ip netns add "$P-chk"
sed 's|tcp/9090|tcp/9091|' "$EX/node-b.json" >"$TMP/ex-b2.json"
bh policy compile "$EX/policy.json" --inventory "$EX/node-a.json" --inventory "$EX/node-b.json" --node node-a \
	>"$TMP/ex1.json"
bh policy compile "$EX/policy.json" --inventory "$EX/node-a.json" --inventory "$TMP/ex-b2.json" --node node-a \
	>"$TMP/ex2.json"
for form in maps linear; do
	flag=
	[ $form = linear ] && flag=--linear
	"$APPLY" $flag --verify "/run/netns/$P-chk" client-1 - "$TMP/ex1.json" >"$TMP/chk.out" 2>&1
	check "$form: the example's client table reads back as built" grep -qx 'verify: same' "$TMP/chk.out"
	"$APPLY" $flag --verify "/run/netns/$P-chk" client-1 "$TMP/ex1.json" "$TMP/ex2.json" >"$TMP/chk.out" 2>&1
	check "$form: web-2 renumbered is a delta that reads back as a fresh build" \
		bash -c "grep -q '^update: delta' '$TMP/chk.out' && grep -qx 'verify: same' '$TMP/chk.out'"
done
nset=$(ip netns exec "$P-chk" nft list table inet bulkhead | sed -n 's/^\tset \(n_[0-9a-f]*_v4\) {$/\1/p')
ip netns exec "$P-chk" nft add element inet bulkhead "$nset" '{ 198.18.9.9 . 1 }'
# An empty delta, then the read-back: the pair is not the bundle's.
"$APPLY" --linear --verify "/run/netns/$P-chk" client-1 "$TMP/ex2.json" "$TMP/ex2.json" >"$TMP/chk.out" 2>&1
check "a pair added by someone else ($nset) is told apart" grep -q '^verify: differs' "$TMP/chk.out"

check "no crash or sanitizer report in the daemons' logs" \
	bash -c "! grep -qE 'AddressSanitizer|runtime error|Segmentation' '$TMP'/*.log"
[ "$failed" -eq 0 ] || { for f in "$TMP"/*.log; do echo "--- $f"; tail -30 "$f"; done; }
finish
