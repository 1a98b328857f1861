#!/bin/bash
# conntrack-cut: what cutting live connections costs an apply. One endpoint
# namespace with 10,000 tracked connections (UDP datagrams from a client
# namespace to 10,000 ports its policy allows; conntrack's UDP timeout
# raised there so they stay), and in each round, interleaved:
#   - an apply that stops allowing udp/30000, where one connection is
#     tracked: the table commit, then the cut (one conntrack dump, 10,001
#     entries judged by the evaluator, 1 deleted);
#   - the same kind of apply (one port less: tcp/9999, which nothing uses):
#     the same dump and judging, nothing to cut;
#   - that apply in a namespace that tracks nothing: the cut only asks the
#     kernel how many entries there are.
# Beside it, the operator's way: `conntrack -D -p udp --dport 30000`
# (conntrack-tools) in the namespace, process start to exit. Median and
# spread (10th-90th percentile) over the rounds. Reports, never asserts.
#
#   bench/conntrack-cut.sh [BUILD_DIR]     (root)   FILL=10000 ROUNDS=15
set -u
BENCH=conntrack-cut
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
FILL=${FILL:-10000}
ROUNDS=${ROUNDS:-15}
PROG=$BUILD/bench/conntrack-cut
BULKHEAD=$BUILD/cli/bulkhead

HINT="apt-get install conntrack" need conntrack
for exe in "$PROG" "$BULKHEAD"; do [ -x "$exe" ] || die "$exe not built (ninja -C $BUILD)"; done

netns srv
netns cli
netns empty
ip -n "$P-srv" link add eth0 type veth peer name eth0 netns "$P-cli" || die "veth"
ip -n "$P-srv" addr add 198.18.0.11/24 dev eth0
ip -n "$P-cli" addr add 198.18.0.21/24 dev eth0
ip -n "$P-srv" link set eth0 up
ip -n "$P-cli" link set eth0 up
ip netns exec "$P-srv" sysctl -qw net.netfilter.nf_conntrack_udp_timeout=3600 || die "sysctl"

cat >"$TMP/inv.json" <<JSON
{"node": "n1", "endpoints": [{"name": "web", "netns": "/run/netns/$P-srv", "labels": {"app": "web"},
  "addresses": ["198.18.0.11"]}]}
JSON
policy() { # PORTS...
	local ports
	ports=$(printf '"%s",' "$@")
	cat <<JSON
{"version": 1, "groups": {"clients": {"cidrs": ["198.18.0.21/32"]}},
 "policies": [{"name": "web", "applies_to": {"labels": {"app": "web"}},
               "ingress": [{"from": ["clients"], "ports": [${ports%,}]}]}]}
JSON
}
policy udp/10000-$((10000 + FILL - 1)) udp/30000 tcp/9999 >"$TMP/a.json"
policy udp/10000-$((10000 + FILL - 1)) tcp/9999 >"$TMP/cut.json"
policy udp/10000-$((10000 + FILL - 1)) udp/30000 >"$TMP/nocut.json"
for v in a cut nocut; do
	"$BULKHEAD" policy compile "$TMP/$v.json" --inventory "$TMP/inv.json" --node n1 >"$TMP/$v.bundle" ||
		die "compiling $v failed"
done

"$PROG" "/run/netns/$P-srv" "/run/netns/$P-cli" "/run/netns/$P-empty" web "$TMP/a.bundle" "$TMP/cut.bundle" \
	"$TMP/nocut.bundle" 198.18.0.11 30000 "$FILL" "$ROUNDS" >"$TMP/samples" 2>"$TMP/err" ||
	die "$(cat "$TMP/err")"
tracked=$(sed -n 's/.*: \([0-9]*\) connections tracked.*/\1/p' "$TMP/err")

# The peer: conntrack-tools on the same table (the agent left table A in
# place, which allows udp/30000 again), one connection re-made each round.
send_one() {
	ip netns exec "$P-cli" "$PYTHON" -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("198.18.0.11", 30000))'
}
for _ in $(seq "$ROUNDS"); do
	send_one
	sleep 0.02
	t0=$(date +%s%N)
	ip netns exec "$P-srv" conntrack -D -p udp --dport 30000 >/dev/null 2>&1 || die "conntrack -D deleted nothing"
	t1=$(date +%s%N)
	echo "sample peer apply_us=0 cut_us=$(((t1 - t0) / 1000)) entries=0 deleted=1" >>"$TMP/samples"
done

"$PYTHON" - "$TMP/samples" "$tracked" "$ROUNDS" <<'PY'
import re, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"sample (\w+) apply_us=(\d+) cut_us=(\d+) entries=(\d+) deleted=(\d+)", line)
    if m:
        k = m.group(1)
        rows.setdefault(k, []).append(tuple(int(x) for x in m.groups()[1:]))
def stats(v):
    v = sorted(v)
    q = lambda p: v[min(len(v) - 1, int(round(p * (len(v) - 1))))]
    return q(0.5) / 1000, q(0.1) / 1000, q(0.9) / 1000
def cell(v):
    med, lo, hi = stats(v)
    return "%8.2f ms  %6.2f-%-7.2f" % (med, lo, hi)
tracked, rounds = max([s[2] for s in rows.get("cut", [])] or [int(sys.argv[2])]), sys.argv[3]
print("conntrack-cut: one endpoint namespace, %d tracked connections, %s rounds, interleaved" % (tracked, rounds))
print("  cut:   apply A -> CUT (udp/30000 no longer allowed, one connection there): commit, dump, judge, delete 1")
print("  nocut: apply A -> NOCUT (tcp/9999 no longer allowed, nothing there): commit, dump, judge, delete none")
print("  empty: the NOCUT apply in a namespace tracking nothing (the cut asks the count, dumps nothing)")
print("  peer:  conntrack -D -p udp --dport 30000 in the namespace (conntrack-tools: dump, filter, delete),")
print("         process start to exit")
print()
print("%-36s %-26s %-26s %-26s %-26s" % ("median, 10th-90th percentile", "cut (1 of %d)" % tracked,
      "nocut (same apply, 0 cut)", "empty namespace", "peer: conntrack -D"))
def line(label, f, kinds=("cut", "nocut", "empty", "peer")):
    cells = []
    for k in kinds:
        v = [f(s) for s in rows.get(k, [])]
        cells.append(cell(v) if v and (k != "peer" or label.startswith("cut")) else "%-26s" % "-")
    print("%-36s %s" % (label, " ".join(cells)))
line("apply: the table commit", lambda s: s[0])
line("cut: dump, judge, delete", lambda s: s[1])
line("apply + cut", lambda s: s[0] + s[1])
per = [s[1] * 1000 / s[2] for s in rows.get("nocut", []) if s[2]]
if per:
    med, lo, hi = stats(per)
    print("%-36s %8.2f us  %6.2f-%-7.2f (the nocut cut over the connections it judged)" % ("cut, per tracked connection", med, lo, hi))
PY
