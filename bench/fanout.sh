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

HINT="apt-get install nftables" need nft
HINT="apt-get install python3" need "$PYTHON"
for exe in "$AGENT" "$CONTROLLER" "$BULKHEAD" "$APPLY_WAIT"; do
	[ -x "$exe" ] || die "$exe not built (ninja -C $BUILD)"
done
REPS=$(((REPS + 1) / 2 * 2)) # even: every run ends on policy A
PORT=$((20000 + $$ % 20000))
export BULKHEAD_ADMIN=ipc://$TMP/admin.sock
ulimit -n 65536 2>/dev/null

# Nodes n1..nN, endpoints a and b on each (tiers t0..t4), and the policies
# of apply-latency.sh (tier-policies.py): A; B = one partner /24 more; C =
# every port changed.
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
EOF
"$PYTHON" "$ROOT/bench/tier-policies.py" "$TMP" || die "generating the policies failed"

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

converged "$AGENTS" 120 || die "the agents did not converge on policy A (see $TMP)"

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
