#!/bin/bash
# packet-path: what a connection's first packet costs in an endpoint's
# table. New UDP flows/s and new TCP connections/s into an endpoint whose
# ingress allows the client in its last rule, with R = 0, 10, 100, 1,000
# rules and with 100,000 group members, in the verdict-map form
# (--dataplane nft-maps; the default picks it past 16 nft rules in a
# direction) and in the linear form (--dataplane nft-linear: a list of rules
# walked in order, the form before the maps), beside no table at all; plus
# iperf3 throughput on an established connection. Reports, never asserts.
#
#   bench/packet-path.sh [BUILD_DIR]
#       (root; iperf3; ROUNDS=5 SECONDS_EACH=2 RULES="0 10 100 1000"
#        MEMBERS=100000 THREADS=4 IPERF_SECONDS=2, IPERF_SECONDS=0: none)
#
# Every configuration has its own pair of namespaces (client and endpoint
# joined by a veth pair), its table loaded once by `bulkhead-agent --once`
# from a compiled bundle; rounds interleave the configurations, and each
# figure is the median of ROUNDS with its spread (min-max).
#
# - UDP: flow-rate sends datagrams from a raw socket, each from a source
#   address and port conntrack has not seen (64 addresses, every port), to
#   udp/9 where nothing listens; what the endpoint's UDP layer received
#   (its NoPorts counter) is what the table let through, per second.
# - TCP: THREADS threads connect to tcp/9 and reset each connection at
#   once (no TIME_WAIT), from THREADS addresses of the client; connections
#   accepted per second.
# - The endpoint's conntrack forgets a UDP flow after 1 s and a closed TCP
#   connection after 1 s (its own namespace's sysctls), and is flushed after
#   every measurement: the conntrack hash is one for all namespaces, so the
#   expired entries a measurement leaves (removed only as the garbage
#   collector comes by) would lengthen the next one's lookups.
# - Each round starts one configuration later than the last, so that no
#   configuration always follows the same one.
#
# The rules: R - 1 rules allow udp/9 and tcp/9 from label groups of one
# other endpoint each (the linear form looks at every one of them before
# the last), and the last allows the client's addresses (a network group).
# R = 0 is the fixed rules and the fallback (the endpoint is isolated by
# no policy: defaults allow). "members": R = 10 rules from 10 label groups
# of MEMBERS / 10 remote endpoints each (an IPv4 and an IPv6 address each),
# the client's addresses members of the last.
set -u
BENCH=packet-path
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
AGENT=$BUILD/agent/bulkhead-agent
BULKHEAD=$BUILD/cli/bulkhead
FLOW=$BUILD/bench/flow-rate
ROUNDS=${ROUNDS:-5}
SECONDS_EACH=${SECONDS_EACH:-2}
RULES=${RULES:-0 10 100 1000}
MEMBERS=${MEMBERS:-100000}
THREADS=${THREADS:-4}
IPERF_SECONDS=${IPERF_SECONDS:-2}
NSRC=64

HINT="apt-get install python3" need "$PYTHON"
for exe in "$AGENT" "$BULKHEAD" "$FLOW"; do
	[ -x "$exe" ] || die "$exe not built (ninja -C $BUILD)"
done
[ "$IPERF_SECONDS" = 0 ] || HINT="apt-get install iperf3" need iperf3
HINT="apt-get install conntrack" need conntrack

# Configurations: NAME FORM RULES MEMBERS (FORM -: no table).
CONFIGS="none - 0 0"
for form in maps linear; do
	for r in $RULES; do CONFIGS="$CONFIGS
$form-R$r $form $r 0"; done
	CONFIGS="$CONFIGS
$form-members $form 10 $MEMBERS"
done

# The world of one configuration: client 198.18.0.2 (TCP from
# 198.18.0.16.., UDP from 198.18.0.64.. spoofed), endpoint 198.18.0.1.
pair() { # I
	local c=$P-c$1 e=$P-e$1
	netns "c$1"
	netns "e$1"
	ip -n "$c" link add eth0 type veth peer name eth0 netns "$e" || die "veth"
	ip -n "$c" addr add 198.18.0.2/15 dev eth0
	for t in $(seq 0 $((THREADS - 1))); do ip -n "$c" addr add "198.18.0.$((16 + t))/15" dev eth0; done
	ip -n "$e" addr add 198.18.0.1/15 dev eth0
	ip -n "$c" link set eth0 up
	ip -n "$e" link set eth0 up
	ip netns exec "$c" sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
	ip netns exec "$e" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.eth0.rp_filter=0
}

# The policy, inventories and bundle of a configuration, into $TMP/cfgI/.
world() { # I RULES MEMBERS
	mkdir -p "$TMP/cfg$1"
	"$PYTHON" - "$TMP/cfg$1" "$P-e$1" "$2" "$3" "$THREADS" "$NSRC" <<'EOF' || die "generating config $1"
import json, sys
out, ns, rules, members, threads, nsrc = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
local = {"node": "n1", "endpoints": [{"name": "ep", "netns": "/run/netns/" + ns, "labels": {"app": "ep"},
                                      "addresses": ["198.18.0.1"]}]}
clients4 = ["198.18.0.%d" % (16 + t) for t in range(threads)] + ["198.18.0.%d" % (64 + i) for i in range(nsrc)]
remote = []
groups = {"ep": {"labels": {"app": "ep"}}}
ports = ["udp/9", "tcp/9", "tcp/5201"]
rule_list = []
if members:
    per = members // 10
    for i in range(members):
        remote.append({"name": "m%06d" % i, "labels": {"shard": "s%d" % (i // per)},
                       "addresses": ["198.%d.%d.%d" % (18 + (i + 256) // 65536, ((i + 256) // 256) % 256, (i + 256) % 256),
                                     "2001:db8:2::%x:%x" % (i // 65536, i % 65536)]})
    for j, a in enumerate(clients4):
        remote.append({"name": "client%d" % j, "labels": {"shard": "s9"}, "addresses": [a]})
    for k in range(10):
        groups["shard%d" % k] = {"labels": {"shard": "s%d" % k}}
        rule_list.append({"from": ["shard%d" % k], "ports": ports})
elif rules:
    for j in range(rules - 1):
        remote.append({"name": "o%04d" % j, "labels": {"other": "o%d" % j},
                       "addresses": ["198.18.%d.%d" % (200 + j // 250, 1 + j % 250)]})
        groups["other%d" % j] = {"labels": {"other": "o%d" % j}}
        rule_list.append({"from": ["other%d" % j], "ports": ports})
    groups["clients"] = {"cidrs": ["198.18.0.16/28", "198.18.0.64/26"]}
    rule_list.append({"from": ["clients"], "ports": ports})
pols = [{"name": "ep-in", "applies_to": "ep", "ingress": rule_list}] if rule_list else []
doc = {"version": 1, "groups": groups, "policies": pols}
for name, obj in (("local", local), ("remote", {"node": "n2", "endpoints": remote}), ("policy", doc)):
    with open("%s/%s.json" % (out, name), "w") as f:
        json.dump(obj, f)
EOF
	"$BULKHEAD" policy compile "$TMP/cfg$1/policy.json" --inventory "$TMP/cfg$1/local.json" \
		--inventory "$TMP/cfg$1/remote.json" --node n1 >"$TMP/cfg$1/bundle.json" 2>"$TMP/cfg$1/compile.err" ||
		die "compiling config $1: $(head -3 "$TMP/cfg$1/compile.err")"
}

load() { # I FORM
	local dp=nft-maps
	[ "$2" = linear ] && dp=nft-linear
	"$AGENT" --bundle "$TMP/cfg$1/bundle.json" --inventory "$TMP/cfg$1/local.json" --node n1 \
		--dataplane "$dp" --once >"$TMP/cfg$1/agent.log" 2>&1 || die "loading config $1: $(tail -2 "$TMP/cfg$1/agent.log")"
	# Conntrack is in the endpoint's namespace once the table is: its
	# timeouts there.
	ip netns exec "$P-e$1" sysctl -qw net.netfilter.nf_conntrack_udp_timeout=1 \
		net.netfilter.nf_conntrack_tcp_timeout_close=1 net.netfilter.nf_conntrack_tcp_timeout_time_wait=1 \
		net.netfilter.nf_conntrack_tcp_timeout_syn_recv=1 2>/dev/null
}

noports() { ip netns exec "$P-e$1" awk '/^Udp:/ {if (h) print $3; h = 1}' /proc/net/snmp; }

udp_rate() { # I: flows/s
	local before after took
	before=$(noports "$1")
	took=$(ip netns exec "$P-c$1" "$FLOW" udp 198.18.0.64 "$NSRC" 198.18.0.1 9 "$SECONDS_EACH" | awk '{print $4}')
	after=$(noports "$1")
	awk -v n=$((after - before)) -v t="$took" 'BEGIN {printf "%.0f\n", (t > 0 ? n / t : 0)}'
}

tcp_rate() { # I: connections/s
	ip netns exec "$P-c$1" "$FLOW" tcp 198.18.0.16 "$THREADS" 198.18.0.1 9 "$SECONDS_EACH" "$THREADS" |
		awk '{printf "%.0f\n", ($4 > 0 ? $2 / $4 : 0)}'
}

iperf_rate() { # I: Gbit/s (from the first TCP client address, which every table admits)
	ip netns exec "$P-c$1" iperf3 -c 198.18.0.1 -B 198.18.0.16 --connect-timeout 2000 -t "$IPERF_SECONDS" -J \
		2>/dev/null | "$PYTHON" -c '
import json, sys
try:
    print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9))
except Exception:
    print(0)'
}

# stats FILE: "median min max" of the numbers in FILE, one a line.
stats() { sort -g "$1" | awk '{v[NR] = $1} END {m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m, v[1], v[NR]}'; }

# --- set-up ------------------------------------------------------------------
i=0
while read -r name form rules members; do
	i=$((i + 1))
	pair "$i"
	if [ "$form" != - ]; then
		world "$i" "$rules" "$members"
		load "$i" "$form"
	fi
	ip netns exec "$P-e$i" "$FLOW" tcp-serve 198.18.0.1 9 >/dev/null 2>&1 &
	PIDS+=($!)
	if [ "$IPERF_SECONDS" != 0 ]; then
		ip netns exec "$P-e$i" iperf3 -s -B 198.18.0.1 >/dev/null 2>&1 &
		PIDS+=($!)
	fi
	echo "$i $name" >>"$TMP/configs"
done <<<"$CONFIGS"
sleep 1

# --- rounds ------------------------------------------------------------------
forget() { # I: the endpoint's conntrack empty again
	[ "$(sed -n "s/^$1 //p" "$TMP/configs")" = none ] && return # no table, no conntrack
	ip netns exec "$P-e$1" conntrack -F >/dev/null 2>&1
	sleep 0.2
}
n=$(wc -l <"$TMP/configs")
for r in $(seq "$ROUNDS"); do
	# shellcheck disable=SC2094 # forget reads configs too, never writes it
	{ tail -n +$(((r - 1) % n + 1)) "$TMP/configs"; head -n $(((r - 1) % n)) "$TMP/configs"; } |
		while read -r i name; do
			udp_rate "$i" >>"$TMP/udp-$name"
			forget "$i"
			tcp_rate "$i" >>"$TMP/tcp-$name"
			forget "$i"
			[ "$IPERF_SECONDS" = 0 ] || iperf_rate "$i" >>"$TMP/iperf-$name"
		done
done

# --- the table ---------------------------------------------------------------
row() { # NAME: "median min max" of each measurement
	local f
	for f in udp tcp iperf; do
		if [ -s "$TMP/$f-$1" ]; then stats "$TMP/$f-$1"; else echo "0 0 0"; fi
	done | tr '\n' ' '
}
echo "packet-path: new flows into one endpoint, by its table; $ROUNDS interleaved rounds of ${SECONDS_EACH} s each"
echo "  UDP: datagrams from new source addresses and ports to udp/9, received by the endpoint's UDP layer"
echo "  TCP: connections accepted on tcp/9 ($THREADS client threads, each reset at once)"
echo "  iperf3: one TCP stream for ${IPERF_SECONDS} s (established: the table's first packet is behind it)"
echo "  members: 10 rules from 10 label groups of $((MEMBERS / 10)) endpoints each (IPv4 and IPv6: $((2 * MEMBERS)) set members)"
echo
printf '%-16s %26s %7s  %26s %7s  %14s\n' "table" "UDP flows/s (min-max)" "of R=0" "TCP conns/s (min-max)" "of R=0" "iperf3 Gbit/s"
while read -r i name; do
	read -r um ul uh tm tl th im _ _ < <(row "$name")
	base=${name%%-*}
	read -r bu _ _ bt _ _ _ _ _ < <(row "$base-R0")
	[ "$name" = none ] && { bu=$um; bt=$tm; }
	printf '%-16s %10.0f (%6.0f-%6.0f) %6.0f%%  %10.0f (%6.0f-%6.0f) %6.0f%%  %14s\n' "$name" "$um" "$ul" "$uh" \
		"$(awk -v a="$um" -v b="$bu" 'BEGIN {print (b > 0 ? 100 * a / b : 0)}')" "$tm" "$tl" "$th" \
		"$(awk -v a="$tm" -v b="$bt" 'BEGIN {print (b > 0 ? 100 * a / b : 0)}')" "$im"
done <"$TMP/configs"
echo
# target NAME BASE PERCENT: NAME's UDP and TCP medians at least PERCENT of BASE's.
target() {
	local what=$1 base=$2 pct=$3 a b k
	for k in udp tcp; do
		[ -s "$TMP/$k-$what" ] && [ -s "$TMP/$k-$base" ] || continue
		read -r a _ _ < <(stats "$TMP/$k-$what")
		read -r b _ _ < <(stats "$TMP/$k-$base")
		awk -v w="$what" -v bs="$base" -v k="$k" -v a="$a" -v b="$b" -v p="$pct" 'BEGIN {
			r = b > 0 ? 100 * a / b : 0
			printf "  %-34s %5.0f%% of %-12s target >= %d%%  %s\n", w " " k, r, bs, p, (r >= p ? "yes" : "NO") }'
	done
}
echo "targets:"
target maps-R1000 maps-R0 90
target maps-members maps-R10 90
echo "  (for comparison)"
target linear-R1000 linear-R0 90
target linear-members linear-R10 90
exit 0
