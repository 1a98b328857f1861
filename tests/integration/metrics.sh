#!/bin/bash
# metrics: Prometheus text on the controller's /metrics (--http) and on the
# agent's --metrics, scraped over loopback:
#   - every family has HELP and TYPE, names follow the conventions
#     (bulkhead_ prefix, counters end in _total, seconds in _seconds), no
#     label carries an address, and the families the README lists are there;
#   - the counters move with the traffic the test sends: N denied UDP
#     datagrams are N more deny packets at the agent and at the controller,
#     a table flushed by hand is one more drift repair, table updates fill
#     the apply histogram;
#   - a non-loopback --http or --metrics without a token refuses to start;
#     with --http-token a request without the token is refused.
# Usage: metrics.sh [BUILD_DIR]
set -u
. "$(dirname "$0")/world.bash"
BUILD=${1:-$LIB_ROOT/build}
FLOOD=$BUILD/bench/udp-flood

world_init metrics || exit 1
world_daemons "$BUILD" n1 n2 || exit 1
HTTP_PORT=$((PORT + 1))
METRICS_PORT=$((PORT + 2))
AGENT_ARGS=(--flow-window-ms 200)

world_add_endpoint web1 11 11 || exit 1
world_add_endpoint client2 21 21 || exit 1
cat >"$TMP/n1.json" <<JSON
{"node": "n1", "endpoints": [{"name": "web1", "netns": "/run/netns/$P-web1", "labels": {"role": "web"}}]}
JSON
cat >"$TMP/n2.json" <<JSON
{"node": "n2", "endpoints": [{"name": "client2", "netns": "/run/netns/$P-client2", "labels": {"role": "client"}}]}
JSON
cat >"$TMP/policy.json" <<'JSON'
{"version": 1,
 "groups": {"web": {"labels": {"role": "web"}}, "clients": {"labels": {"role": "client"}}},
 "policies": [{"name": "web-in", "applies_to": "web", "ingress": [{"from": ["clients"], "ports": ["tcp/80"]}]}]}
JSON

controller_start --http "127.0.0.1:$HTTP_PORT"
# n1's agent has --metrics: it holds web1, where the denials are logged.
AGENT_ARGS=(--flow-window-ms 200 --metrics "127.0.0.1:$METRICS_PORT")
agent_start n1
AGENT_ARGS=(--flow-window-ms 200)
agent_start n2
bh policy apply "$TMP/policy.json" >/dev/null
connected() { [ "$(bh status --json 2>/dev/null | json_get "sorted(n['node'] for n in j['nodes'] if n['connected'] and n['up_to_date'])")" = "['n1', 'n2']" ]; }
check "both agents connected and up to date" wait_for 20 connected

CTL_URL=http://127.0.0.1:$HTTP_PORT/metrics
AGENT_URL=http://127.0.0.1:$METRICS_PORT/metrics
scrape() { curl -sf --max-time 5 "$1"; }
# value URL 'name{labels}': the sample's value (nothing when absent).
value() { scrape "$1" | awk -v k="$2" '$1 == k {print $2}'; }

# lint FILE: the exposition's rules, in Python; prints what is wrong.
lint() {
	/usr/bin/python3 - "$1" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
bad, types, helps, seen = [], {}, set(), set()
for line in text.splitlines():
    if line.startswith("# HELP "):
        helps.add(line.split()[2])
    elif line.startswith("# TYPE "):
        _, _, name, t = line.split()
        types[name] = t
        if t not in ("counter", "gauge", "histogram"):
            bad.append("type " + t)
    elif line:
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)$', line)
        if not m:
            bad.append("unparsable: " + line); continue
        name, labels, v = m.group(1), m.group(3) or "", m.group(4)
        float(v)
        base = re.sub(r'_(bucket|sum|count)$', '', name) if re.sub(r'_(bucket|sum|count)$', '', name) in types and types[re.sub(r'_(bucket|sum|count)$', '', name)] == "histogram" else name
        if base not in types or base not in helps:
            bad.append("no HELP/TYPE before " + name)
        seen.add(base)
        if re.search(r'\d+\.\d+\.\d+\.\d+|[0-9a-f]*:[0-9a-f]*:', re.sub(r'version="[^"]*"', '', labels)):
            bad.append("an address in a label: " + line)
for name, t in types.items():
    if not name.startswith("bulkhead_"):
        bad.append("no bulkhead_ prefix: " + name)
    if (t == "counter") != name.endswith("_total"):
        bad.append("counter and _total disagree: " + name)
    if "duration" in name and not name.endswith("_seconds"):
        bad.append("a duration not in _seconds: " + name)
print("\n".join(bad))
PY
}
# has FILE NAME TYPE: the family is declared with that type.
has() { grep -qx "# TYPE $2 $3" "$1"; }

check "the controller answers /metrics" scrape "$CTL_URL" >"$TMP/ctl.prom"
check "the agent answers --metrics /metrics" scrape "$AGENT_URL" >"$TMP/agent.prom"
scrape "$CTL_URL" >"$TMP/ctl.prom"
scrape "$AGENT_URL" >"$TMP/agent.prom"
check "the controller's text follows the conventions: $(lint "$TMP/ctl.prom" | head -3)" test -z "$(lint "$TMP/ctl.prom")"
check "the agent's text follows the conventions: $(lint "$TMP/agent.prom" | head -3)" test -z "$(lint "$TMP/agent.prom")"
for f in "bulkhead_build_info gauge" "bulkhead_policy_revision gauge" "bulkhead_policy_rules gauge" \
	"bulkhead_nodes gauge" "bulkhead_flow_packets_total counter" "bulkhead_flow_events_lost_total counter" \
	"bulkhead_flow_records_dropped_total counter"; do
	# shellcheck disable=SC2086 # name and type
	check "controller: $f" has "$TMP/ctl.prom" $f
done
for f in "bulkhead_build_info gauge" "bulkhead_apply_duration_seconds histogram" \
	"bulkhead_apply_failures_total counter" "bulkhead_endpoints gauge" "bulkhead_rules gauge" \
	"bulkhead_flow_packets_total counter" "bulkhead_flow_events_lost_total counter" \
	"bulkhead_flow_spool_batches gauge" "bulkhead_drift_repairs_total counter" \
	"bulkhead_controller_connected gauge" "bulkhead_bundle_revision gauge"; do
	# shellcheck disable=SC2086
	check "agent: $f" has "$TMP/agent.prom" $f
done
check "controller: build info names the daemon and version" grep -q '^bulkhead_build_info{daemon="controller",version="' "$TMP/ctl.prom"
check "controller: revision 1, both nodes up to date" \
	test "$(value "$CTL_URL" bulkhead_policy_revision)/$(value "$CTL_URL" 'bulkhead_nodes{state="up_to_date"}')" = 1/2
check "agent: revision 1, connected, web1 enforced, rules in force" \
	test "$(value "$AGENT_URL" bulkhead_bundle_revision)/$(value "$AGENT_URL" bulkhead_controller_connected)/$(value "$AGENT_URL" 'bulkhead_endpoints{state="enforced"}')" = 1/1/1
check "agent: the rule count is the bundle's (> 0)" test "$(value "$AGENT_URL" bulkhead_rules)" -gt 0
check "agent: table updates were timed" test "$(value "$AGENT_URL" bulkhead_apply_duration_seconds_count)" -ge 1
check "agent: every bucket up to +Inf holds the count" \
	test "$(value "$AGENT_URL" 'bulkhead_apply_duration_seconds_bucket{le="+Inf"}')" = "$(value "$AGENT_URL" bulkhead_apply_duration_seconds_count)"

# --- the counters move with traffic ---
a0=$(value "$AGENT_URL" 'bulkhead_flow_packets_total{verdict="deny"}')
c0=$(value "$CTL_URL" 'bulkhead_flow_packets_total{verdict="deny"}')
ip netns exec "$P-client2" "$FLOOD" 198.18.0.11 9999 9 >/dev/null
agent_moved() { [ "$(value "$AGENT_URL" 'bulkhead_flow_packets_total{verdict="deny"}')" = $((a0 + 9)) ]; }
ctl_moved() { [ "$(value "$CTL_URL" 'bulkhead_flow_packets_total{verdict="deny"}')" = $((c0 + 9)) ]; }
check "9 denied datagrams: the agent's deny packets grow by 9 (from $a0)" wait_for 15 agent_moved
check "... and the controller's, once stored (from $c0)" wait_for 15 ctl_moved
check "no flow batch failed or was rejected" test "$(value "$CTL_URL" 'bulkhead_flow_batches_total{result="rejected"}')/$(value "$CTL_URL" 'bulkhead_flow_batches_total{result="failed"}')" = 0/0
check "batches were stored" test "$(value "$CTL_URL" 'bulkhead_flow_batches_total{result="stored"}')" -ge 1
r0=$(value "$AGENT_URL" bulkhead_drift_repairs_total)
n0=$(value "$AGENT_URL" bulkhead_apply_duration_seconds_count)
ip netns exec "$P-web1" nft delete table inet bulkhead
repaired() { [ "$(value "$AGENT_URL" bulkhead_drift_repairs_total)" -gt "$r0" ] && [ "$(value "$AGENT_URL" bulkhead_apply_duration_seconds_count)" -gt "$n0" ]; }
check "a table deleted by hand: one more drift repair, one more timed update" wait_for 15 repaired
check "... and web1 is enforced again" wait_for 10 test "$(value "$AGENT_URL" 'bulkhead_endpoints{state="enforced"}')" = 1
kill "${AGENT_PID[n1]}"
down() { [ "$(value "$CTL_URL" 'bulkhead_nodes{state="down"}')" = 1 ]; }
check "an agent stopped: the controller counts one node down" wait_for 10 down

# --- tokens ---
out=$("$CONTROLLER" --state-dir "$TMP/c2" --insecure --admin "ipc://$TMP/run/c2.sock" --listen tcp://127.0.0.1:$((PORT + 3)) --http "0.0.0.0:$((PORT + 4))" 2>&1)
rc=$?
check "--http 0.0.0.0 without a token: exit 2, said why ($out)" test "$rc" = 2 -a -n "$(echo "$out" | grep 'http-token')"
out=$("$AGENT" --node n9 --inventory "$TMP/n1.json" --state-dir "$TMP/s9" --metrics "0.0.0.0:$((PORT + 4))" 2>&1)
rc=$?
check "--metrics 0.0.0.0 without a token: exit 2, said why" test "$rc" = 2 -a -n "$(echo "$out" | grep 'metrics-token')"
# A non-loopback address inside a namespace of the test's own.
ip netns add "$P-ctl"
ip -n "$P-ctl" link set lo up
ip -n "$P-ctl" link add v0 type veth peer name v1
ip -n "$P-ctl" addr add 198.18.0.250/32 dev v0
ip -n "$P-ctl" link set v1 up
ip -n "$P-ctl" link set v0 up
echo "a-token-of-the-test-0123456789" >"$TMP/token"
ip netns exec "$P-ctl" "$CONTROLLER" --state-dir "$TMP/c3" --insecure --admin "ipc://$TMP/run/c3.sock" \
	--listen tcp://127.0.0.1:7700 --http 198.18.0.250:7780 --http-token "$TMP/token" >>"$TMP/c3.log" 2>&1 &
WORLD_PIDS+=("$!")
in_ctl() { ip netns exec "$P-ctl" curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@"; }
up() { [ "$(in_ctl http://198.18.0.250:7780/metrics)" != 000 ]; }
wait_for 10 up
check "with --http-token: no token, 401" test "$(in_ctl http://198.18.0.250:7780/metrics)" = 401
check "with --http-token: a wrong token, 401" test "$(in_ctl -H 'Authorization: Bearer a-token-of-the-test-0123456788' http://198.18.0.250:7780/api/nodes)" = 401
check "with --http-token: the bearer token, 200" test "$(in_ctl -H 'Authorization: Bearer a-token-of-the-test-0123456789' http://198.18.0.250:7780/api/nodes)" = 200
finish
