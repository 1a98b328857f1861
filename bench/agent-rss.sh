#!/bin/bash
# agent-rss: peak resident memory of bulkhead-agent bringing 100 endpoint
# namespaces up to date, each table referencing ~1,000 set members, with
# the nft dataplane and with --dataplane null; nft -f loading ONE of those
# tables stands beside it for scale. Target: <= 20 MB. Reports, never
# asserts.
#
#   bench/agent-rss.sh [BUILD_DIR]     (root; needs GNU time: apt-get install time)
#
# First with --once (bring every endpoint up to date, then exit), under
# GNU time; then as the daemon it is in production: linked to a controller
# (--insecure, loopback) with the same policy, so every namespace also has
# its NFLOG reader, nftables event watch, address watch and rule counters
# (a --dataplane null agent reports node n2's clients). Its VmRSS and VmHWM
# are read from /proc once it is up to date and has read its counters.
set -u
BENCH=agent-rss
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
AGENT=$BUILD/agent/bulkhead-agent
BULKHEAD=$BUILD/cli/bulkhead
CONTROLLER=$BUILD/controller/bulkhead-controller
GNU_TIME=${GNU_TIME:-/usr/bin/time}
ENDPOINTS=${ENDPOINTS:-100}
CLIENTS=${CLIENTS:-1000} # remote label-group members every table refers to

HINT="apt-get install nftables" need nft
HINT="apt-get install python3" need "$PYTHON"
[ -x "$GNU_TIME" ] || die "$GNU_TIME not found (apt-get install time)"
for exe in "$AGENT" "$BULKHEAD" "$CONTROLLER"; do
	[ -x "$exe" ] || die "$exe not built (ninja -C $BUILD)"
done

# Node n1: ENDPOINTS local endpoints in tiers t0..t9, each in its own
# namespace. Node n2: CLIENTS remote clients in shards s0..s9. Tier k
# admits shard k+j on port 8000+j for every j and denies its own shard
# ssh going out: 10 sets of CLIENTS/10 members in every table.
"$PYTHON" - "$TMP" "$P" "$ENDPOINTS" "$CLIENTS" <<'EOF' || die "generating the world failed"
import json, sys
tmp, prefix, n_ep, n_cl = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
local = {"node": "n1", "endpoints": [
    {"name": "ep%03d" % i, "netns": "/run/netns/%s-ep%03d" % (prefix, i),
     "labels": {"app": "svc", "tier": "t%d" % (i % 10)},
     "addresses": ["198.18.0.%d" % (10 + i), "2001:db8::%x" % (16 + i)]}
    for i in range(n_ep)]}
remote = {"node": "n2", "endpoints": [
    {"name": "c%04d" % i, "labels": {"app": "client", "shard": "s%d" % (i % 10)},
     "addresses": ["198.18.%d.%d" % (16 + i // 250, i % 250 + 1)]}
    for i in range(n_cl)]}
groups = {}
for k in range(10):
    groups["tier%d" % k] = {"labels": {"tier": "t%d" % k}}
    groups["shard%d" % k] = {"labels": {"shard": "s%d" % k}}
policies = []
for k in range(10):
    policies.append({
        "name": "tier%d" % k, "applies_to": "tier%d" % k,
        "ingress": [{"action": "allow", "from": ["shard%d" % ((k + j) % 10)], "ports": ["tcp/%d" % (8000 + j)]}
                    for j in range(10)],
        "egress": [{"action": "deny", "to": ["shard%d" % k], "ports": ["tcp/22"]}],
    })
doc = {"version": 1, "defaults": {"ingress": "allow", "egress": "allow"}, "groups": groups, "policies": policies}
for name, obj in (("local", local), ("remote", remote), ("policy", doc)):
    with open("%s/%s.json" % (tmp, name), "w") as f:
        json.dump(obj, f, indent=1)
EOF
"$BULKHEAD" policy compile "$TMP/policy.json" --inventory "$TMP/local.json" --inventory "$TMP/remote.json" \
	--node n1 >"$TMP/bundle.json" 2>"$TMP/compile.err" || die "compile failed: $(head -3 "$TMP/compile.err")"
for i in $(seq 0 $((ENDPOINTS - 1))); do
	netns "$(printf 'ep%03d' "$i")"
done

# rss LOG: "Maximum resident set size" of a GNU time -v log, in MB.
rss() { awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2 / 1024}' "$1"; }

# run NAME ARGS...: the agent once, under GNU time.
run_agent() {
	local name=$1
	shift
	mkdir -p "$TMP/state-$name"
	"$GNU_TIME" -v -o "$TMP/$name.time" "$AGENT" --bundle "$TMP/bundle.json" --inventory "$TMP/local.json" \
		--node n1 --state-dir "$TMP/state-$name" --once "$@" >"$TMP/$name.log" 2>&1
}

run_agent null --dataplane null || die "agent --dataplane null failed: $(tail -3 "$TMP/null.log")"
run_agent nft || die "agent --once failed: $(grep -v applied "$TMP/nft.log" | tail -3)"
tables=0
for i in $(seq 0 $((ENDPOINTS - 1))); do
	ip netns exec "$P-$(printf 'ep%03d' "$i")" nft list table inet bulkhead >/dev/null 2>&1 && tables=$((tables + 1))
done
ip netns exec "$P-ep000" nft list table inet bulkhead >"$TMP/ep000.list"
members=$(grep -o '198\.18\.[0-9]*\.[0-9]*' "$TMP/ep000.list" | sort -u | wc -l)
rules=$(grep -c ' comment "' "$TMP/ep000.list")

# The daemon, linked to a controller. Its tables are rebuilt (a whole
# replace at start), its counters read every second.
PORT=$((20000 + $$ % 20000))
export BULKHEAD_ADMIN=ipc://$TMP/admin.sock
"$CONTROLLER" --listen "tcp://127.0.0.1:$PORT" --admin "$BULKHEAD_ADMIN" --state-dir "$TMP/controller" \
	--insecure --policy "$TMP/policy.json" >"$TMP/controller.log" 2>&1 &
PIDS+=($!)
"$AGENT" --controller "tcp://127.0.0.1:$PORT" --insecure --node n2 --inventory "$TMP/remote.json" \
	--state-dir "$TMP/state-n2" --dataplane null >"$TMP/agent-n2.log" 2>&1 &
PIDS+=($!)
mkdir -p "$TMP/state-daemon"
"$AGENT" --controller "tcp://127.0.0.1:$PORT" --insecure --node n1 --inventory "$TMP/local.json" \
	--state-dir "$TMP/state-daemon" --counters-ms 1000 >"$TMP/daemon.log" 2>&1 &
DAEMON=$!
PIDS+=($!)
converged 2 60 || die "the agents did not converge (see $TMP)"
sleep 3 # counters read, heartbeats, flow windows: a steady state
daemon_rss=$(awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$DAEMON/status")
daemon_hwm=$(awk '/^VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$DAEMON/status")
daemon_fds=$(find "/proc/$DAEMON/fd" -mindepth 1 | wc -l)
daemon_members=$(ip netns exec "$P-ep000" nft list table inet bulkhead | grep -o '198\.18\.[0-9]*\.[0-9]*' | sort -u | wc -l)
stop_daemons

# The peer: nft -f of one endpoint's ruleset, in a namespace of its own.
"$AGENT" --print-ruleset --bundle "$TMP/bundle.json" --node n1 --inventory "$TMP/local.json" \
	>"$TMP/all.nft" 2>/dev/null || die "--print-ruleset failed"
awk 'index($0, "# endpoint ep000 ") == 1 {on = 1; next} /^# endpoint / {on = 0} on' "$TMP/all.nft" >"$TMP/ep000.nft"
netns peer
"$GNU_TIME" -v -o "$TMP/peer.time" ip netns exec "$P-peer" nft -f "$TMP/ep000.nft" || die "nft -f failed"

echo "agent-rss: bulkhead-agent --once over $ENDPOINTS namespaces ($tables tables loaded)"
echo "  each table: $rules nft rules, $members distinct set members; $CLIENTS remote members in all"
echo "  bundle: $(wc -c <"$TMP/bundle.json") bytes. Peak RSS from GNU time -v (Maximum resident set size)."
echo "  --once brings every endpoint up to date and exits; the daemon rows are the agent linked to a"
echo "  controller, every namespace with its NFLOG reader, event and address watches, after 3 s steady."
echo "  peer: nft -f of ONE endpoint's table (of the $ENDPOINTS), for scale"
echo
table_header
table_row "agent --once, nft dataplane" "$(rss "$TMP/nft.time")" "$(rss "$TMP/peer.time")" MB max:20
table_row "agent --once, --dataplane null" "$(rss "$TMP/null.time")" "$(rss "$TMP/peer.time")" MB max:20
table_row "agent daemon, steady (VmRSS)" "$daemon_rss" "$(rss "$TMP/peer.time")" MB max:20
table_row "agent daemon, peak (VmHWM)" "$daemon_hwm" "$(rss "$TMP/peer.time")" MB max:20
echo
echo "  daemon: $daemon_fds open fds (per namespace: nftables requests, events, NFLOG, addresses);"
echo "  ep000's table from the controller's bundle: $daemon_members distinct set members"
echo "  ratio: peer/Bulkhead, here below 1: the agent holds $ENDPOINTS tables' worth of state, nft one."
echo "  wall time: nft dataplane $(awk -F': ' '/Elapsed/ {print $2}' "$TMP/nft.time"), null" \
	"$(awk -F': ' '/Elapsed/ {print $2}' "$TMP/null.time")"
exit 0
