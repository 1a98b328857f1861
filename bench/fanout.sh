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
#   AGENTS=200 REPS=20 INSECURE=0 (1: no CURVE) AGENT_ARGS= (e.g. --no-privsep)
# Memory and CPU per agent count all its processes: with privilege
# separation (the default), the session child and its spawner too.
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
		--state-dir "$TMP/state-n$a" --dataplane null "${agent_keys[@]}" ${AGENT_ARGS:-} >"$TMP/agent-n$a.log" 2>&1 &
	PIDS+=($!)
done

converged "$AGENTS" 120 || die "the agents did not converge on policy A (see $TMP)"

"$APPLY_WAIT" "$BULKHEAD_ADMIN" "$AGENTS" "$REPS" "$TMP/A.json" "$TMP/C.json" >"$TMP/full.out" ||
	die "full-change runs failed"
"$APPLY_WAIT" "$BULKHEAD_ADMIN" "$AGENTS" "$REPS" "$TMP/A.json" "$TMP/B.json" >"$TMP/member.out" ||
	die "one-member runs failed"
rss=$(for pid in "${PIDS[@]:1}"; do awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null; done |
	sort -n | awk '{v[NR] = $1} END {printf "%.1f", v[int((NR + 1) / 2)] / 1024}')
# Each agent with its descendants: median RSS and PSS (pages a fork shares
# count once), processes, and the CPU all of them used since they started.
read -r all_rss all_pss procs cpu < <("$PYTHON" - "${PIDS[@]:1}" <<'PY'
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
def field(p, f, name):
    try:
        for line in open("/proc/%d/%s" % (p, f)):
            if line.startswith(name):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
def ticks(p):
    try:
        st = open("/proc/%d/stat" % p).read()
    except OSError:
        return 0
    v = st[st.rindex(")") + 2:].split()
    return int(v[11]) + int(v[12])
rss, pss, n, cpu = [], [], 0, 0
for a in map(int, sys.argv[1:]):
    t = list(tree(a))
    n += len(t)
    rss.append(sum(field(p, "status", "VmRSS:") for p in t))
    pss.append(sum(field(p, "smaps_rollup", "Pss:") for p in t))
    cpu += sum(ticks(p) for p in t)
med = lambda v: sorted(v)[(len(v) - 1) // 2] / 1024
print("%.1f %.1f %d %.1f" % (med(rss), med(pss), n, cpu / os.sysconf("SC_CLK_TCK")))
PY
)
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
echo "  each agent with its session child and spawner: median RSS $all_rss MB, PSS $all_pss MB;"
echo "  $procs processes for $AGENTS agents; CPU they used since they started: $cpu s"
echo
table_header
table_row "full change, p99" "$(result "$TMP/full.out" apply p99)" "$peer" ms max:1000
table_row "full change, median" "$(result "$TMP/full.out" apply median)" "$peer" ms -
table_row "one member, p99" "$(result "$TMP/member.out" apply p99)" "$peer" ms max:1000
table_row "one member, median" "$(result "$TMP/member.out" apply median)" "$peer" ms -
exit 0
