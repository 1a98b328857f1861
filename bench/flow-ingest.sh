#!/bin/bash
# flow-ingest: denied events per second one agent takes in from NFLOG with
# no loss, side by side with ulogd2 reading the same NFLOG traffic in the
# same namespace. Target: >= 100,000 events/s without loss, >= 2x ulogd2.
# Reports, never asserts.
#
#   bench/flow-ingest.sh [BUILD_DIR]     (root; apt-get install ulogd2)
#   RATES="50000 100000 200000 400000 600000 800000" SECONDS_EACH=3
#   AGENT_ARGS=--no-privsep: the controller session inside the agent, as
#   before its privilege separation (the default passes every event to the
#   session child; one it could not pass counts as lost here)
#
# One receiving namespace with the agent's table (UDP to it is denied and
# logged to NFLOG group 100), one sending namespace on a veth pair; a
# controller (--insecure, loopback) takes the agent's reports. For each rate
# udp-flood sends SECONDS_EACH seconds of datagrams; the kernel's counter of
# the logging rule says how many events NFLOG was asked to deliver.
#   Bulkhead: events the agent parsed and aggregated (status.json), and the
#             loss it detected (ENOBUFS, sequence gaps); the controller's
#             stored total is checked too.
#   ulogd2:   with the agent stopped (its table stays), ulogd -c on group
#             100 in the same namespace, with the same socket buffer (16 MiB)
#             and batching (64 packets / 10 ms), its stock stack
#             NFLOG > BASE > IFINDEX > IP2STR > PRINTPKT > LOGEMU writing
#             one line per packet; lines written = events taken in.
# "Lossless" = taken in == logged by the kernel.
set -u
BENCH=flow-ingest
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
RATES=${RATES:-50000 100000 200000 400000 600000 800000}
SECONDS_EACH=${SECONDS_EACH:-3}
AGENT=$BUILD/agent/bulkhead-agent
CONTROLLER=$BUILD/controller/bulkhead-controller
BULKHEAD=$BUILD/cli/bulkhead
FLOOD=$BUILD/bench/udp-flood

HINT="apt-get install nftables" need nft
HINT="apt-get install ulogd2" need ulogd
for exe in "$AGENT" "$CONTROLLER" "$BULKHEAD" "$FLOOD"; do
	[ -x "$exe" ] || die "$exe not built (ninja -C $BUILD)"
done
PORT=$((20000 + $$ % 20000))
export BULKHEAD_ADMIN=ipc://$TMP/admin.sock

netns recv
netns send
ip -n "$P-recv" link add eth0 type veth peer name eth0 netns "$P-send"
ip -n "$P-recv" addr add 198.18.0.2/24 dev eth0
ip -n "$P-send" addr add 198.18.0.1/24 dev eth0
ip -n "$P-recv" link set eth0 up
ip -n "$P-send" link set eth0 up
cat >"$TMP/node.json" <<JSON
{"node": "n1", "endpoints": [{"name": "recv", "netns": "/run/netns/$P-recv", "labels": {"role": "server"}}]}
JSON
cat >"$TMP/policy.json" <<'JSON'
{"version": 1, "groups": {"servers": {"labels": {"role": "server"}}},
 "policies": [{"name": "servers-in", "applies_to": "servers", "ingress": [{"ports": ["tcp/80"]}]}]}
JSON

"$CONTROLLER" --listen "tcp://127.0.0.1:$PORT" --admin "$BULKHEAD_ADMIN" --state-dir "$TMP/controller" \
	--insecure --policy "$TMP/policy.json" >"$TMP/controller.log" 2>&1 &
PIDS+=($!)
start_agent() {
	# shellcheck disable=SC2086 # AGENT_ARGS: words, e.g. --no-privsep
	"$AGENT" --controller "tcp://127.0.0.1:$PORT" --node n1 --inventory "$TMP/node.json" --state-dir "$TMP/state" \
		--insecure ${AGENT_ARGS:-} >>"$TMP/agent.log" 2>&1 &
	AGENT_PID=$!
	PIDS+=($!)
}
start_agent
converged 1 10 || die "the agent did not take the policy (see $TMP)"
ip netns exec "$P-recv" nft list table inet bulkhead >/dev/null 2>&1 || die "the agent did not load its table"

logged() { # packets the recv table's logging rules counted
	ip netns exec "$P-recv" nft -j list chain inet bulkhead ingress | "$PYTHON" -c '
import json, sys
print(sum(e["counter"]["packets"] for o in json.load(sys.stdin)["nftables"] if "rule" in o
          and any("log" in x for x in o["rule"]["expr"]) for e in o["rule"]["expr"] if "counter" in e))'
}
agent_nflog() { # events enobufs gap, from status.json; events the agent could not pass to its
	# session child (privilege separation: reported as lost) do not count as taken in
	"$PYTHON" -c 'import json,sys; j=json.load(open(sys.argv[1])); n=j["endpoints"][0].get("nflog", {})
d=((j.get("controller") or {}).get("session") or {}).get("to_child", {}).get("packets_dropped", 0)
print(n.get("events", 0) - d, n.get("enobufs", 0), n.get("gap", 0) + d)' "$TMP/state/status.json"
}
stored() { # packets the controller stored for udp/9
	"$BULKHEAD" flows --limit 0 --json | "$PYTHON" -c 'import json,sys
print(sum(r["count"] for r in json.load(sys.stdin)["flows"] if r["port"] == 9))'
}
agent_cpu() { # CPU seconds the agent and its descendants (session child, spawner) used so far
	"$PYTHON" - "$AGENT_PID" <<'PY'
import os, sys
kids = {}
for d in os.listdir("/proc"):
    if d.isdigit():
        try:
            st = open("/proc/%s/stat" % d).read()
        except OSError:
            continue
        kids.setdefault(int(st[st.rindex(")") + 2:].split()[1]), []).append(int(d))
def tree(p):
    yield p
    for c in kids.get(p, []):
        yield from tree(c)
ticks = 0
for p in tree(int(sys.argv[1])):
    try:
        v = open("/proc/%d/stat" % p).read()
    except OSError:
        continue
    v = v[v.rindex(")") + 2:].split()
    ticks += int(v[11]) + int(v[12])
print("%.2f" % (ticks / os.sysconf("SC_CLK_TCK")))
PY
}
flood() { # RATE: prints the achieved rate
	ip netns exec "$P-send" "$FLOOD" 198.18.0.2 9 $(($1 * SECONDS_EACH)) "$1" | sed -n 's/.*(\([0-9]*\)\/s)/\1/p'
}

declare -A B_IN B_LOST B_SENT B_K U_IN U_LOST U_SENT U_K
# --- Bulkhead ---
cpu0=$(agent_cpu) taken=0
for rate in $RATES; do
	sleep 1.5 # the last window is reported and status.json written
	k0=$(logged)
	read -r e0 n0 g0 < <(agent_nflog)
	B_SENT[$rate]=$(flood "$rate")
	sleep 2.5
	k1=$(logged)
	read -r e1 n1 g1 < <(agent_nflog)
	B_IN[$rate]=$((e1 - e0)) B_K[$rate]=$((k1 - k0))
	B_LOST[$rate]=$(((k1 - k0) - (e1 - e0))) taken=$((taken + e1 - e0))
	echo "# bulkhead at $rate/s: sent at ${B_SENT[$rate]}/s, kernel logged $((k1 - k0)), agent took $((e1 - e0)), detected lost $((g1 - g0)) (overruns $((n1 - n0)))"
done
sleep 2
cpu=$(awk -v a="$cpu0" -v b="$(agent_cpu)" 'BEGIN {printf "%.2f", b - a}')
total_kernel=$(logged)
total_stored=$(stored)
kill "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null

# --- ulogd2, same namespace, same table, the agent stopped ---
cat >"$TMP/ulogd.conf" <<CONF
[global]
logfile="$TMP/ulogd.log"
loglevel=3
plugin="/usr/lib/x86_64-linux-gnu/ulogd/ulogd_inppkt_NFLOG.so"
plugin="/usr/lib/x86_64-linux-gnu/ulogd/ulogd_raw2packet_BASE.so"
plugin="/usr/lib/x86_64-linux-gnu/ulogd/ulogd_filter_IFINDEX.so"
plugin="/usr/lib/x86_64-linux-gnu/ulogd/ulogd_filter_IP2STR.so"
plugin="/usr/lib/x86_64-linux-gnu/ulogd/ulogd_filter_PRINTPKT.so"
plugin="/usr/lib/x86_64-linux-gnu/ulogd/ulogd_output_LOGEMU.so"
stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,print1:PRINTPKT,emu1:LOGEMU
[log1]
group=100
netlink_socket_buffer_size=16777216
netlink_socket_buffer_maxsize=16777216
netlink_qthreshold=64
netlink_qtimeout=1
[emu1]
file="$TMP/ulogd-emu.log"
sync=0
CONF
ip netns exec "$P-recv" ulogd -c "$TMP/ulogd.conf" >"$TMP/ulogd.out" 2>&1 &
ULOGD=$!
PIDS+=($!)
sleep 1.5
kill -0 "$ULOGD" 2>/dev/null || die "ulogd did not start: $(tail -3 "$TMP/ulogd.log" "$TMP/ulogd.out" 2>/dev/null)"
lines() { [ -e "$TMP/ulogd-emu.log" ] && wc -l <"$TMP/ulogd-emu.log" || echo 0; }
for rate in $RATES; do
	k0=$(logged)
	l0=$(lines)
	U_SENT[$rate]=$(flood "$rate")
	sleep 2.5
	kill -HUP "$ULOGD" 2>/dev/null # reopen the log file: flushes what it buffered
	sleep 0.5
	k1=$(logged)
	l1=$(lines)
	U_IN[$rate]=$((l1 - l0)) U_K[$rate]=$((k1 - k0))
	U_LOST[$rate]=$(((k1 - k0) - (l1 - l0)))
	echo "# ulogd2 at $rate/s: sent at ${U_SENT[$rate]}/s, kernel logged $((k1 - k0)), ulogd wrote $((l1 - l0))"
done
stop_daemons

echo
echo "flow-ingest: denied events taken in from NFLOG, one namespace, $SECONDS_EACH s per rate"
echo "  Bulkhead: bulkhead-agent (NFLOG parse, aggregate per 1 s window, report to the controller)"
echo "  peer:     ulogd2 $(ulogd -V 2>&1 | head -1 | awk '{print $3}') (NFLOG > BASE > IFINDEX > IP2STR > PRINTPKT > LOGEMU), same"
echo "            socket buffer and batching, same namespace and table, the agent stopped"
echo "  lost = kernel-logged - taken in. The controller stored $total_stored of the agent's events"
echo "  (all rates; the kernel logged $total_kernel in that phase, scans and retries included)."
echo "  CPU the agent used in that phase (with its session child and spawner): $cpu s for $taken"
echo "  events taken in, $(awk -v c="$cpu" -v n="$taken" 'BEGIN {printf "%.2f", n ? c * 1e6 / n : 0}') s per million."
echo
printf '%-26s %14s %14s %12s %12s\n' "offered/s" "Bulkhead in/s" "Bulkhead lost" "ulogd in/s" "ulogd lost"
best_b=0 best_u=0
for rate in $RATES; do
	# Taken in per second of the run: the achieved rate times the share taken.
	b=$((B_SENT[$rate] * B_IN[$rate] / (B_K[$rate] > 0 ? B_K[$rate] : 1)))
	u=$((U_SENT[$rate] * U_IN[$rate] / (U_K[$rate] > 0 ? U_K[$rate] : 1)))
	printf '%-26s %14s %14s %12s %12s\n' "$rate (${B_SENT[$rate]}|${U_SENT[$rate]})" "$b" "${B_LOST[$rate]}" "$u" "${U_LOST[$rate]}"
	[ "${B_LOST[$rate]}" -eq 0 ] && [ "$b" -gt "$best_b" ] && best_b=$b
	[ "${U_LOST[$rate]}" -eq 0 ] && [ "$u" -gt "$best_u" ] && best_u=$u
done
echo "  (offered: asked (achieved by the Bulkhead run | by the ulogd2 run))"
echo
printf '%-34s %12s %12s %8s %10s  %s\n' "" "Bulkhead" "peer" "ratio" "target" "met"
awk -v b="$best_b" -v u="$best_u" 'BEGIN {
	printf "%-34s %12s %12s %8s %10s  %s\n", "lossless events/s (highest rate)", b, u,
		(u > 0 ? sprintf("%.1fx", b / u) : "-"), ">= 2x", ((u > 0 && b >= 2 * u) ? "yes" : "NO")
	printf "%-34s %12s %12s %8s %10s  %s\n", "", "", "", "", ">= 100000", ((b >= 100000) ? "yes" : "NO")
}'
echo "  (throughput: higher is better; ratio = Bulkhead / ulogd2)"
exit 0
