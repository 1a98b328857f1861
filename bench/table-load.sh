#!/bin/bash
# table-load: `bulkhead-agent --once` loading one endpoint's table that
# refers to 100,000 label-group members (10 groups of 10,000 remote
# endpoints, each with an IPv4 and an IPv6 address: 200,000 set elements),
# vs `nft -f` of the very ruleset it renders (--print-ruleset), in the same
# namespace, interleaved. Wall time and peak RSS (GNU time -v), median and
# minimum of REPS runs. Each run starts from a namespace without the table.
# Beside it, the same agent forced to the verdict-map form (--dataplane
# nft-maps; ten rules are a short list, which the agent keeps a list):
# what the maps cost a load against the list form (issue 15's target: not
# worse by more than 20 %). Reports, never asserts.
#
#   bench/table-load.sh [BUILD_DIR]     (root; GNU time; MEMBERS=100000 REPS=5)
set -u
BENCH=table-load
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
AGENT=$BUILD/agent/bulkhead-agent
BULKHEAD=$BUILD/cli/bulkhead
GNU_TIME=${GNU_TIME:-/usr/bin/time}
MEMBERS=${MEMBERS:-100000}
REPS=${REPS:-5}

HINT="apt-get install nftables" need nft
HINT="apt-get install python3" need "$PYTHON"
[ -x "$GNU_TIME" ] || die "$GNU_TIME not found (apt-get install time)"
for exe in "$AGENT" "$BULKHEAD"; do
	[ -x "$exe" ] || die "$exe not built (ninja -C $BUILD)"
done

# Node n1: one endpoint admitting shard k on port 8000+k. Node n2: MEMBERS
# remote endpoints in shards s0..s9, addresses from 198.18.0.0/15 and
# 2001:db8::/32.
"$PYTHON" - "$TMP" "$P" "$MEMBERS" <<'EOF' || die "generating the world failed"
import json, sys
tmp, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
local = {"node": "n1", "endpoints": [{"name": "ep", "netns": "/run/netns/%s-ep" % prefix,
    "labels": {"app": "svc"}, "addresses": ["198.18.0.1", "2001:db8::1"]}]}
remote = {"node": "n2", "endpoints": [
    {"name": "c%06d" % i, "labels": {"shard": "s%d" % (i % 10)},
     "addresses": ["198.%d.%d.%d" % (18 + (i + 256) // 65536, ((i + 256) // 256) % 256, (i + 256) % 256),
                   "2001:db8:2::%x:%x" % (i // 65536, i % 65536)]}
    for i in range(n)]}
groups = {"svc": {"labels": {"app": "svc"}}}
for k in range(10):
    groups["shard%d" % k] = {"labels": {"shard": "s%d" % k}}
policy = {"version": 1, "groups": groups, "policies": [{"name": "svc", "applies_to": "svc",
    "ingress": [{"action": "allow", "from": ["shard%d" % k], "ports": ["tcp/%d" % (8000 + k)]} for k in range(10)]}]}
for name, obj in (("local", local), ("remote", remote), ("policy", policy)):
    with open("%s/%s.json" % (tmp, name), "w") as f:
        json.dump(obj, f)
EOF
"$BULKHEAD" policy compile "$TMP/policy.json" --inventory "$TMP/local.json" --inventory "$TMP/remote.json" \
	--node n1 >"$TMP/bundle.json" 2>"$TMP/compile.err" || die "compile failed: $(head -3 "$TMP/compile.err")"
"$AGENT" --print-ruleset --bundle "$TMP/bundle.json" --node n1 --inventory "$TMP/local.json" \
	>"$TMP/ruleset.nft" 2>/dev/null || die "--print-ruleset failed"
netns ep

# secs LOG / mb LOG: wall seconds and peak RSS (MB) of a GNU time -v log.
secs() { awk -F': ' '/Elapsed/ {n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; print s}' "$1"; }
mb() { awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2 / 1024}' "$1"; }
# cpu LOG: user + system seconds (what a busy machine's wall time blurs).
cpu() { awk -F': ' '/User time|System time/ {s += $2} END {print s}' "$1"; }
# stats FILE: "median min" of the numbers in FILE, one a line.
stats() { sort -g "$1" | awk '{v[NR] = $1} END {m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m, v[1]}'; }
clear_table() { ip netns exec "$P-ep" nft delete table inet bulkhead 2>/dev/null; sleep 0.2; }

listeners0=$(nft_listeners)
for i in $(seq "$REPS"); do
	clear_table
	"$GNU_TIME" -v -o "$TMP/agent.time" "$AGENT" --bundle "$TMP/bundle.json" --inventory "$TMP/local.json" \
		--node n1 --once >"$TMP/agent.log" 2>&1 || die "agent --once failed: $(tail -3 "$TMP/agent.log")"
	secs "$TMP/agent.time" >>"$TMP/agent.s"
	cpu "$TMP/agent.time" >>"$TMP/agent.cpu"
	mb "$TMP/agent.time" >>"$TMP/agent.mb"
	clear_table
	"$GNU_TIME" -v -o "$TMP/maps.time" "$AGENT" --bundle "$TMP/bundle.json" --inventory "$TMP/local.json" \
		--node n1 --once --dataplane nft-maps >"$TMP/maps.log" 2>&1 ||
		die "agent --once --dataplane nft-maps failed: $(tail -3 "$TMP/maps.log")"
	secs "$TMP/maps.time" >>"$TMP/maps.s"
	mb "$TMP/maps.time" >>"$TMP/maps.mb"
	clear_table
	"$GNU_TIME" -v -o "$TMP/nft.time" ip netns exec "$P-ep" nft -f "$TMP/ruleset.nft" || die "nft -f failed"
	secs "$TMP/nft.time" >>"$TMP/nft.s"
	cpu "$TMP/nft.time" >>"$TMP/nft.cpu"
	mb "$TMP/nft.time" >>"$TMP/nft.mb"
done
listeners1=$(nft_listeners)
elements=$(grep -o 'applied bundle .*elements)' "$TMP/agent.log" | head -1)
maps_elements=$(grep -o 'applied bundle .*elements)' "$TMP/maps.log" | head -1)

read -r a_med a_min < <(stats "$TMP/agent.s")
read -r n_med n_min < <(stats "$TMP/nft.s")
read -r ac_med _ < <(stats "$TMP/agent.cpu")
read -r nc_med _ < <(stats "$TMP/nft.cpu")
read -r am_med _ < <(stats "$TMP/agent.mb")
read -r nm_med _ < <(stats "$TMP/nft.mb")
read -r m_med _ < <(stats "$TMP/maps.s")
read -r mm_med _ < <(stats "$TMP/maps.mb")
echo "table-load: one endpoint's table, $MEMBERS group members in 10 label groups, IPv4 and IPv6; $REPS runs each"
echo "  agent: $elements"
echo "  agent --dataplane nft-maps: $maps_elements"
echo "  Bulkhead: bulkhead-agent --once (process start to exit); peer: nft -f of its --print-ruleset"
echo "  (process start to exit, through ip netns exec). Each run starts without the table."
listeners_note "$listeners0" "$listeners1"
echo
table_header
table_row "median wall time" "$(awk -v s="$a_med" 'BEGIN {print s * 1000}')" \
	"$(awk -v s="$n_med" 'BEGIN {print s * 1000}')" ms 3
table_row "min wall time" "$(awk -v s="$a_min" 'BEGIN {print s * 1000}')" \
	"$(awk -v s="$n_min" 'BEGIN {print s * 1000}')" ms 3
table_row "median CPU time (user + sys)" "$(awk -v s="$ac_med" 'BEGIN {print s * 1000}')" \
	"$(awk -v s="$nc_med" 'BEGIN {print s * 1000}')" ms -
table_row "median peak RSS" "$am_med" "$nm_med" MB -
echo
echo "  The verdict-map form (Bulkhead) against the list form (peer), both bulkhead-agent --once:"
table_row "median wall time, maps vs list" "$(awk -v s="$m_med" 'BEGIN {print s * 1000}')" \
	"$(awk -v s="$a_med" 'BEGIN {print s * 1000}')" ms 0.83
table_row "median peak RSS, maps vs list" "$mm_med" "$am_med" MB 0.83
exit 0
