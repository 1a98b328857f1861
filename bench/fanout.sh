#!/bin/bash
# fanout: one controller, 200 agents with --dataplane null (two endpoints
# each, 400 in all), CURVE: the time from `policy apply` until every agent
# has acknowledged, for a full policy change (every node's rules change)
# and a one-member change (one CIDR more in a network group every node's
# tables refer to). Target: 200 agents converged <= 1 s. Beside it, for
# scale, the work a central push of nft rulesets would do for the same
# nodes: `nft -c -f` (parse and check with the kernel, commit nothing, as
# --dataplane null commits nothing) of each node's ruleset one after another,
# in one namespace of the benchmark's. Reports, never asserts.
#
#   bench/fanout.sh [BUILD_DIR]     (root)
#   AGENTS=200 REPS=20 INSECURE=0 (1: no CURVE)
set -u
BENCH=fanout
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
AGENTS=${AGENTS:-200}
REPS=${REPS:-20}
INSECURE=${INSECURE:-0}
AGENT=$BUILD/agent/bulkhead-agent
CONTROLLER=$BUILD/controller/bulkhead-controller
BULKHEAD=$BUILD/cli/bulkhead
APPLY_WAIT=$BUILD/bench/apply-wait
PYTHON=${PYTHON:-$(command -v /usr/bin/python3 python3 | head -1)}

HINT="apt-get install nftables" need nft
HINT="apt-get install python3" need "$PYTHON"
for exe in "$AGENT" "$CONTROLLER" "$BULKHEAD" "$APPLY_WAIT"; do
	[ -x "$exe" ] || die "$exe not built (ninja -C $BUILD)"
done
REPS=$(((REPS + 1) / 2 * 2)) # even: every run ends on policy A
PORT=$((20000 + $$ % 20000))
export BULKHEAD_ADMIN=ipc://$TMP/admin.sock
PIDS=()
stop_daemons() {
	local pid
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
	PIDS=()
}
trap 'stop_daemons; bench_cleanup' EXIT
ulimit -n 65536 2>/dev/null

# Nodes n1..nN, endpoints a and b on each (tiers t0..t4), and the policies
# of apply-latency.sh: A; B = one partner /24 more; C = every port changed.
"$PYTHON" - "$TMP" "$AGENTS" <<'EOF' || die "generating the world failed"
import json, sys
tmp, agents = sys.argv[1], int(sys.argv[2])
for a in range(agents):
    eps = []
    for j, tag in enumerate("ab"):
        i = 2 * a + j
        eps.append({"name": "%s%d" % (tag, a), "labels": {"tier": "t%d" % (i % 5)},
                    "addresses": ["198.18.%d.%d" % (i // 200, i % 200 + 10), "2001:db8::%x" % (i + 16)]})
    json.dump({"node": "n%d" % a, "endpoints": eps}, open("%s/n%d.json" % (tmp, a), "w"))
def doc(extra_cidr, app_port, partner_port):
    cidrs = ["198.19.%d.0/24" % (2 * i) for i in range(20)] + ([extra_cidr] if extra_cidr else [])
    groups = {"partners": {"cidrs": cidrs}}
    for k in range(5):
        groups["t%d" % k] = {"labels": {"tier": "t%d" % k}}
    pols = [{"name": "t%d-in" % k, "applies_to": "t%d" % k,
             "ingress": [{"from": ["t%d" % ((k + 1) % 5)], "ports": ["tcp/%d" % app_port]},
                         {"from": ["partners"], "ports": ["tcp/%d" % partner_port]}]}
            for k in range(5)]
    return {"version": 1, "groups": groups, "policies": pols}
for name, d in (("A", doc(None, 8080, 443)), ("B", doc("198.19.99.0/24", 8080, 443)),
                ("C", doc(None, 8081, 444))):
    json.dump(d, open("%s/%s.json" % (tmp, name), "w"), indent=1)
EOF

if [ "$INSECURE" = 1 ]; then
	ctl_keys=(--insecure)
	security="--insecure"
else
	"$BULKHEAD" keygen "$TMP/keys/controller" >/dev/null || die "keygen failed"
	mkdir -p "$TMP/keys/allowed"
	for a in $(seq 0 $((AGENTS - 1))); do
		"$BULKHEAD" keygen "$TMP/keys/n$a" >/dev/null || die "keygen failed"
		cp "$TMP/keys/n$a/public.key" "$TMP/keys/allowed/n$a.key"
	done
	ctl_keys=(--keys "$TMP/keys/controller" --agent-keys "$TMP/keys/allowed")
	security="CURVE"
fi

"$CONTROLLER" --listen "tcp://127.0.0.1:$PORT" --admin "$BULKHEAD_ADMIN" --state-dir "$TMP/controller" \
	"${ctl_keys[@]}" --policy "$TMP/A.json" >"$TMP/controller.log" 2>&1 &
PIDS+=($!)
for a in $(seq 0 $((AGENTS - 1))); do
	agent_keys=(--insecure)
	[ "$INSECURE" = 1 ] || agent_keys=(--keys "$TMP/keys/n$a" --controller-key "$TMP/keys/controller/public.key")
	"$AGENT" --controller "tcp://127.0.0.1:$PORT" --node "n$a" --inventory "$TMP/n$a.json" \
		--state-dir "$TMP/state-n$a" --dataplane null "${agent_keys[@]}" >"$TMP/agent-n$a.log" 2>&1 &
	PIDS+=($!)
done

# Every agent connected and at the newest revision, 120 s at most.
converged() {
	local n tries=0
	while [ $tries -lt 1200 ]; do
		n=$("$BULKHEAD" status --json 2>/dev/null | "$PYTHON" -c \
			'import json,sys; print(sum(n["connected"] and n["up_to_date"] for n in json.load(sys.stdin)["nodes"]))' 2>/dev/null)
		[ "$n" = "$AGENTS" ] && return 0
		sleep 0.1
		tries=$((tries + 1))
	done
	echo "fanout: $n of $AGENTS agents up to date" >&2
	return 1
}
converged || die "the agents did not converge on policy A (see $TMP)"

"$APPLY_WAIT" "$BULKHEAD_ADMIN" "$AGENTS" "$REPS" "$TMP/A.json" "$TMP/C.json" >"$TMP/full.out" ||
	die "full-change runs failed"
"$APPLY_WAIT" "$BULKHEAD_ADMIN" "$AGENTS" "$REPS" "$TMP/A.json" "$TMP/B.json" >"$TMP/member.out" ||
	die "one-member runs failed"
rss=$(for pid in "${PIDS[@]:1}"; do awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null; done |
	sort -n | awk '{v[NR] = $1} END {printf "%.1f", v[int((NR + 1) / 2)] / 1024}')
ctl_rss=$(awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/${PIDS[0]}/status")
stop_daemons

# The peer: every node's ruleset under C, checked by nft -c -f in turn.
invs=()
for a in $(seq 0 $((AGENTS - 1))); do invs+=(--inventory "$TMP/n$a.json"); done
mkdir -p "$TMP/nft"
for a in $(seq 0 $((AGENTS - 1))); do
	"$BULKHEAD" policy compile "$TMP/C.json" "${invs[@]}" --node "n$a" >"$TMP/bundle.json" &&
		"$AGENT" --print-ruleset --bundle "$TMP/bundle.json" --node "n$a" --inventory "$TMP/n$a.json" \
			>"$TMP/nft/n$a.nft" 2>/dev/null || die "rendering n$a's ruleset failed"
done
netns peer
t0=$EPOCHREALTIME
for a in $(seq 0 $((AGENTS - 1))); do
	ip netns exec "$P-peer" nft -c -f "$TMP/nft/n$a.nft" || die "nft -c -f failed for n$a"
done
peer=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.3f", (b - a) * 1000}')

echo "fanout: one controller, $AGENTS agents (--dataplane null, $security, 2 endpoints each),"
echo "  policy apply -> every agent acknowledged; $REPS applies of each kind"
echo "  full change: every rule's port changes on every node; one member: one /24 more in a"
echo "  network group every node refers to. Peer, for scale: nft -c -f of each node's ruleset"
echo "  (full change), one after another (check only, commits nothing, like --dataplane null)."
echo "  RSS while idle after the runs: agent median $rss MB, controller $ctl_rss MB"
echo
table_header
table_row "full change, p99" "$(result "$TMP/full.out" apply p99)" "$peer" ms max:1000
table_row "full change, median" "$(result "$TMP/full.out" apply median)" "$peer" ms -
table_row "one member, p99" "$(result "$TMP/member.out" apply p99)" "$peer" ms max:1000
table_row "one member, median" "$(result "$TMP/member.out" apply median)" "$peer" ms -
exit 0
