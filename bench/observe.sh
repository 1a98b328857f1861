#!/bin/bash
# observe: what "observe": "all" costs. New TCP connections per second
# through one endpoint whose policy allows them, with "observe": "all"
# (each accepted connection's first packet logged to NFLOG, read, aggregated
# and reported by the agent) beside the default "observe": "denied" (nothing
# accepted is logged); then, with observe all, paced connection rates and
# whether the agent takes in every logged connection (lossless). Reports,
# never asserts.
#
#   bench/observe.sh [BUILD_DIR]
#   CONNS=30000 REPS=5 PAR=64 RATES="2000 5000 10000 20000" SECONDS_EACH=2
#
# One receiving namespace with the agent's table (tcp/80 allowed from
# anywhere; conn-flood serve accepts and closes), one sending namespace on
# a veth pair; a controller (--insecure, loopback) takes the agent's
# reports. conn-flood keeps PAR connects in flight and ends each with a
# reset. Taken in: the agent's NFLOG events (status.json); lost: connected
# - taken in, and the losses the agent detected (ENOBUFS, sequence gaps).
# Conntrack's close timeout is 1 s in the receiving namespace, and no run
# starts while the host's conntrack table is over a third full, so the
# shared table never fills.
set -u
BENCH=observe
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
CONNS=${CONNS:-30000}
REPS=${REPS:-5}
PAR=${PAR:-64}
RATES=${RATES:-2000 5000 10000 20000}
SECONDS_EACH=${SECONDS_EACH:-2}
AGENT=$BUILD/agent/bulkhead-agent
CONTROLLER=$BUILD/controller/bulkhead-controller
BULKHEAD=$BUILD/cli/bulkhead
FLOOD=$BUILD/bench/conn-flood

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
cat >"$TMP/denied.json" <<'JSON'
{"version": 1, "groups": {"servers": {"labels": {"role": "server"}}},
 "policies": [{"name": "servers-in", "applies_to": "servers", "ingress": [{"ports": ["tcp/80"]}]}]}
JSON
sed 's/^{"version": 1,/{"version": 1, "observe": "all",/' "$TMP/denied.json" >"$TMP/all.json"

"$CONTROLLER" --listen "tcp://127.0.0.1:$PORT" --admin "$BULKHEAD_ADMIN" --state-dir "$TMP/controller" \
	--insecure --policy "$TMP/denied.json" >"$TMP/controller.log" 2>&1 &
PIDS+=($!)
"$AGENT" --controller "tcp://127.0.0.1:$PORT" --node n1 --inventory "$TMP/node.json" --state-dir "$TMP/state" \
	--insecure >>"$TMP/agent.log" 2>&1 &
AGENT_PID=$!
PIDS+=($!)
converged 1 10 || die "the agent did not take the policy (see $TMP)"
ip netns exec "$P-recv" nft list table inet bulkhead >/dev/null 2>&1 || die "the agent did not load its table"
ip netns exec "$P-recv" sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_close=1 \
	net.netfilter.nf_conntrack_tcp_timeout_time_wait=1 || die "cannot set conntrack timeouts in $P-recv"
ip netns exec "$P-recv" "$FLOOD" serve 80 &
PIDS+=($!)
sleep 0.3

use() { # MODE: apply denied.json or all.json, wait until the agent has it
	"$BULKHEAD" policy apply "$TMP/$1.json" >/dev/null || die "policy apply $1"
	converged 1 10 || die "the agent did not take $1"
	ip netns exec "$P-recv" nft list table inet bulkhead | grep -q 'bh:P' && [ "$1" = denied ] &&
		die "observe denied, yet the table logs accepted packets"
	sleep 0.5
}
agent_cpu_ms() { # the agent's user + system CPU time so far
	awk -v hz="$(getconf CLK_TCK)" '{print int(($14 + $15) * 1000 / hz)}' "/proc/$AGENT_PID/stat"
}
agent_nflog() { # events enobufs gap, from status.json
	"$PYTHON" -c 'import json,sys; n=json.load(open(sys.argv[1]))["endpoints"][0].get("nflog", {})
print(n.get("events", 0), n.get("enobufs", 0), n.get("gap", 0))' "$TMP/state/status.json"
}
room() { # waits (up to 30 s) until the host's conntrack table is under a third full
	local i max
	max=$(cat /proc/sys/net/netfilter/nf_conntrack_max)
	for i in $(seq 300); do
		[ "$(cat /proc/sys/net/netfilter/nf_conntrack_count)" -lt $((max / 3)) ] && return 0
		sleep 0.1
	done
	die "the conntrack table stays over a third full"
}
flood() { # COUNT RATE: "connected failed rate"
	room
	ip netns exec "$P-send" "$FLOOD" 198.18.0.2 80 "$1" "$2" "$PAR" |
		sed -n 's/^connected \([0-9]*\) failed \([0-9]*\) in .* (\([0-9]*\)\/s)$/\1 \2 \3/p'
}
median() { tr ' ' '\n' | grep . | sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2)}'; }

# --- as fast as they go: denied beside all, interleaved ---
declare -A RUNS CPU
best=0 # the highest achieved rate with observe all at which the agent took in every connection
for rep in $(seq "$REPS"); do
	for mode in denied all; do
		use "$mode"
		read -r e0 _ _ < <(agent_nflog)
		c0=$(agent_cpu_ms)
		read -r ok bad rate < <(flood "$CONNS" 0)
		sleep 2
		read -r e1 n1 g1 < <(agent_nflog)
		CPU[$mode]="${CPU[$mode]:-} $(($(agent_cpu_ms) - c0))"
		RUNS[$mode]="${RUNS[$mode]:-} $rate"
		[ "$mode" = all ] && [ $((e1 - e0)) -ge "$ok" ] && [ "$rate" -gt "$best" ] && best=$rate
		echo "# $mode #$rep: $ok connected ($bad failed) at $rate/s; agent took $((e1 - e0)) events (overruns so far $n1, gaps $g1)"
	done
done
d=$(median <<<"${RUNS[denied]}")
a=$(median <<<"${RUNS[all]}")
cd_=$(median <<<"${CPU[denied]}")
ca=$(median <<<"${CPU[all]}")

# --- observe all, paced: does the agent take in every connection? ---
use all
declare -A R_OK R_IN R_LOST
for rate in $RATES; do
	sleep 1.5
	read -r e0 n0 g0 < <(agent_nflog)
	read -r ok _ got < <(flood $((rate * SECONDS_EACH)) "$rate")
	sleep 2.5
	read -r e1 n1 g1 < <(agent_nflog)
	R_OK[$rate]="$ok ($got/s)" R_IN[$rate]=$((e1 - e0)) R_LOST[$rate]=$((ok - (e1 - e0)))
	[ "${R_LOST[$rate]}" -le 0 ] && [ "$got" -gt "$best" ] && best=$got
	echo "# all at $rate/s: $ok connected at $got/s, agent took $((e1 - e0)), detected lost $((g1 - g0)) (overruns $((n1 - n0)))"
done
sleep 2
stored=$("$BULKHEAD" flows --verdict allow --limit 0 --json | "$PYTHON" -c 'import json,sys
print(sum(r["count"] for r in json.load(sys.stdin)["flows"] if r["port"] == 80))')
taken=$(agent_nflog | awk '{print $1}')

echo
echo "observe: new TCP connections through one endpoint (tcp/80 allowed), $CONNS per run, $PAR in flight,"
echo "  median of $REPS interleaved runs; peer = the same policy with the default \"observe\": \"denied\""
echo
table_header
table_row "new connections/s, observe all" "$a" "$d" "conn/s" -
table_row "agent CPU per run, observe all" "$ca" "$cd_" "ms" -
awk -v a="$a" -v d="$d" 'BEGIN { if (d > 0) printf "  observe all keeps %.0f%% of the rate without it\n", 100 * a / d }'
echo "  runs (conn/s): all${RUNS[all]}; denied${RUNS[denied]}"
echo "  agent CPU (ms per $CONNS connections and 2 s after): all${CPU[all]}; denied${CPU[denied]}"
echo
echo "observe all, paced ($SECONDS_EACH s per rate): connections the agent took in from NFLOG"
printf '%-12s %-22s %12s %10s\n' "offered/s" "connected (achieved)" "agent took" "lost"
for rate in $RATES; do
	printf '%-12s %-22s %12s %10s\n' "$rate" "${R_OK[$rate]}" "${R_IN[$rate]}" "${R_LOST[$rate]}"
done
echo "  highest achieved rate taken in without loss (these and the runs above): $best connections/s"
echo "  the controller stored $stored allowed connections to port 80 (the agent took $taken events in all)"
exit 0
