#!/bin/bash
# differential: seeded random policies against random probes. For every
# probe, what the kernel does with the nftables rules bulkhead-agent loaded
# must equal what the reference evaluator says (`bulkhead policy explain
# --probes`): delivered (accept or audit at both ends) or dropped.
#
# tests/integration/gen_world.py draws, from the seed, a world of two nodes
# with four endpoints each plus one or two outside hosts (namespaces with no
# Bulkhead table), and per round a random valid policy (label groups with
# expressions, network groups with excepts, inline peers, order ties, audit
# and enforce, allow and deny, empty rule lists, random defaults, every kind
# of port, named ports in rules of both directions), fresh labels and named
# ports on the endpoints, and random probes (TCP, UDP, ICMP echo and
# timestamp, ICMPv6 echo; IPv4 and IPv6); one round in three adds a stress
# policy of overlap and order (nested network groups with excepts, deny of
# the inner before allow of the outer, shadowed rules, port ranges that
# touch, ICMP types with and without codes, overlapping label groups). Each
# round compiles the bundles, applies them with `bulkhead-agent --once` (the
# verdict-map form, --dataplane nft-maps; every eighth round the linear
# form, and every eighth the default, which picks one per endpoint), asks the oracle, sends every probe for real (one probe.py
# batch per source namespace, every probe in its own thread) and compares:
# what arrived, and which rule decided (every table's rule counters against
# the oracle's deciding rules, so the rule whose NFLOG prefix and hit count
# the kernel used is the oracle's).
#
# The seed is printed first; BULKHEAD_SEED=S reproduces a run. Round k uses
# seed S+k-1 on the world of seed S. Also: BULKHEAD_ROUNDS (16),
# BULKHEAD_PROBES per round (1000), BULKHEAD_PROBE_TIMEOUT (1.0 seconds),
# BULKHEAD_VERBOSE=1 (a line per probe), BULKHEAD_KEEP=1 (keep every
# generated file there).
#
# Its world (world.bash, DESIGN §7): one namespace per endpoint and outside
# host, each joined by a veth pair to a bridge inside a dedicated fabric
# namespace; addresses from 198.18.0.0/15 and 2001:db8::/32 only, a per-run
# prefix, removed on exit. The host's own interfaces and firewall are never
# touched.
#
# Needs root, iproute2, nft and python3. Usage: differential.sh [BUILD_DIR]
set -u
. "$(dirname "$0")/world.bash"
BUILD=${1:-${BUILD_DIR:-$LIB_ROOT/build}}
BULKHEAD=$BUILD/cli/bulkhead
AGENT=$BUILD/agent/bulkhead-agent
GEN=$LIB_ROOT/tests/integration/gen_world.py
ROUNDS=${BULKHEAD_ROUNDS:-16}
PROBES=${BULKHEAD_PROBES:-1000}
TIMEOUT=${BULKHEAD_PROBE_TIMEOUT:-1.0} # a reply inside one machine takes microseconds

bail() {
	not_ok "$*"
	finish
	exit 1
}

SEED=${BULKHEAD_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
case $SEED in
'' | *[!0-9]*)
	bail "BULKHEAD_SEED must be a non-negative integer, not \"$SEED\""
	;;
esac
echo "# seed $SEED (reproduce: BULKHEAD_SEED=$SEED $0)"
# Every probe of a run has its own TCP/UDP source port (10000 + its id).
if [ $(((ROUNDS + 1) * PROBES)) -gt 50000 ]; then
	bail "at most 50000 probes per run: (BULKHEAD_ROUNDS + 1) * BULKHEAD_PROBES = $(((ROUNDS + 1) * PROBES))"
fi

world_init differential || exit 1
world_need nft "$BULKHEAD" "$AGENT"
compared=0 # probes sent and compared

indent() { sed 's/^/    /'; }

# --- the world -----------------------------------------------------------
# world.tsv: NS V4 V6 NODE|-  (NODE - : an outside host, no Bulkhead table)
build_world() {
	local ns v4 v6 node
	while read -r ns v4 v6 node; do
		# Every test address is on-link: one bridge holds the whole world.
		world_add_ns "$ns" "$v4/15" "$v6/32" || return 1
	done <"$TMP/world/world.tsv"
}

start_listeners() {
	local ns rest
	while read -r ns rest; do
		# shellcheck disable=SC2046 # one listener spec per word
		ip netns exec "$P-$ns" "$PYTHON" "$PROBE" serve "$TMP/ready-$ns" $(cat "$TMP/world/serve.txt") \
			>"$TMP/serve-$ns.log" 2>&1 &
	done <"$TMP/world/world.tsv"
	while read -r ns rest; do
		for _ in $(seq 50); do
			[ -e "$TMP/ready-$ns" ] && break
			sleep 0.1
		done
		[ -e "$TMP/ready-$ns" ] || return 1
	done <"$TMP/world/world.tsv"
}

# run_probes DIR: every source namespace sends its batch, all at once.
run_probes() {
	local dir=$1 ns rest pids=()
	while read -r ns rest; do
		[ -s "$dir/batch-$ns.jsonl" ] || continue
		ip netns exec "$P-$ns" "$PYTHON" "$PROBE" batch "$dir/batch-$ns.jsonl" "$TIMEOUT" \
			>"$dir/kernel-$ns.jsonl" 2>"$dir/kernel-$ns.err" &
		pids+=($!)
	done <"$TMP/world/world.tsv"
	wait "${pids[@]}"
}

read_counters() { # DIR WHEN: every table with its counters, DIR/counters-WHEN-NS.json
	local ns n
	while read -r ns _ _ n; do
		[ "$n" = - ] && continue
		ip netns exec "$P-$ns" nft -j list table inet bulkhead >"$1/counters-$2-$ns.json" 2>/dev/null
	done <"$TMP/world/world.tsv"
}

ruleset() { # NS: its nft ruleset, indented, for a mismatch report
	local ns=$1 out
	if grep -q "^$ns .* -\$" "$TMP/world/world.tsv"; then
		echo "    -- $ns: outside host (no Bulkhead table)"
		return
	fi
	echo "    -- nft list ruleset in $P-$ns:"
	out=$(ip netns exec "$P-$ns" nft list ruleset 2>&1)
	indent <<<"$out" | sed 's/^/    /'
}

# round K: seed SEED+K-1, a fresh policy on the same world.
round() {
	local k=$1 seed=$((SEED + $1 - 1)) dir="$TMP/round$1" node invs=() p f n lines ns missing form=nft-maps
	[ $((k % 8)) = 0 ] && form=nft-linear
	[ $((k % 8)) = 4 ] && form=nft # the default: each endpoint's own choice
	"$PYTHON" "$GEN" "$seed" "$dir" --world "$TMP/world/world.json" --prefix "$P" \
		--probes "$PROBES" --base $((k * PROBES)) || {
		not_ok "seed $seed: gen_world.py"
		return
	}
	if "$BULKHEAD" policy validate "$dir/policy.json" >"$dir/validate.err" 2>&1; then
		ok "seed $seed: the generated policy is valid ($(sed -n 's/.*: valid: //p' "$dir/validate.err"))"
	else
		not_ok "seed $seed: the generated policy is valid"
		indent <"$dir/validate.err"
		return
	fi
	for node in $NODES; do
		invs+=(--inventory "$dir/inventory-$node.json")
	done
	for node in $NODES; do
		if ! "$BULKHEAD" policy compile "$dir/policy.json" "${invs[@]}" --node "$node" \
			>"$dir/bundle-$node.json" 2>"$dir/compile-$node.err"; then
			not_ok "seed $seed: compile the bundle of $node"
			indent <"$dir/compile-$node.err"
			return
		fi
		if ! "$AGENT" --bundle "$dir/bundle-$node.json" --inventory "$dir/inventory-$node.json" \
			--node "$node" --dataplane "$form" --once >"$dir/agent-$node.out" 2>&1; then
			not_ok "seed $seed: bulkhead-agent --once --dataplane $form applies the bundle of $node"
			indent <"$dir/agent-$node.out"
			return
		fi
		missing=$(while read -r ns _ _ n; do
			[ "$n" = "$node" ] || continue
			ip netns exec "$P-$ns" nft list table inet bulkhead >/dev/null 2>&1 || printf ' %s' "$ns"
		done <"$TMP/world/world.tsv")
		if [ -n "$missing" ]; then
			not_ok "seed $seed: bulkhead-agent --once exits 0 but left no table in$missing"
			indent <"$dir/agent-$node.out"
			return
		fi
		ok "seed $seed: bulkhead-agent --once --dataplane $form applies the bundle of $node"
	done
	if ! "$BULKHEAD" policy explain "$dir/policy.json" "${invs[@]}" --probes "$dir/probes.jsonl" \
		>"$dir/oracle.jsonl" 2>"$dir/oracle.err"; then
		not_ok "seed $seed: bulkhead policy explain --probes answers every probe"
		head -5 "$dir/oracle.err" | indent
		return
	fi
	lines=$(wc -l <"$dir/oracle.jsonl")
	n=$(wc -l <"$dir/probes.jsonl")
	if [ "$lines" != "$n" ]; then
		not_ok "seed $seed: the oracle answered $lines of $n probes"
		return
	fi

	# What the rules counted before any probe (a packet the endpoints sent
	# themselves) is not a probe's: the counter check leaves it out.
	read_counters "$dir" before
	run_probes "$dir"
	for f in "$dir"/kernel-*.err; do
		[ -s "$f" ] && { echo "    $(basename "$f"):"; indent <"$f"; }
	done
	read_counters "$dir" after
	BULKHEAD_LABEL="seed $seed" "$PYTHON" "$GEN" compare "$dir" || {
		not_ok "seed $seed: comparing the kernel with the oracle"
		return
	}
	# One check per round, so the suite's count stays comparable with the
	# other tests; the probe counts are in its name.
	read -r p f <"$dir/counts"
	compared=$((compared + p + f))
	if [ "$f" = 0 ]; then
		ok "seed $seed: the kernel agrees with the oracle on all $p probes"
	else
		not_ok "seed $seed: the kernel disagrees with the oracle on $f of $((p + f)) probes"
		echo "    seed $seed: the rulesets involved in a mismatch:"
		while read -r ns; do ruleset "$ns"; done <"$dir/mismatch-ns.txt"
	fi
	if BULKHEAD_LABEL="seed $seed" "$PYTHON" "$GEN" rules "$dir" && read -r p f <"$dir/rules-counts" && [ "$f" = 0 ]; then
		ok "seed $seed: the kernel's rule counters name the oracle's deciding rule ($p rules)"
	else
		not_ok "seed $seed: the kernel's rule counters disagree with the oracle's deciding rules"
	fi
}

# --- set-up --------------------------------------------------------------
start=$(date +%s)
"$PYTHON" "$GEN" "$SEED" "$TMP/world" --prefix "$P" --probes "$PROBES" --base 0 ||
	bail "gen_world.py $SEED"
if ! "$BULKHEAD" policy explain 2>&1 | grep -q -- --probes; then
	bail "bulkhead policy explain --probes is available (the oracle)"
fi
# Lists of names (no spaces in them), split into words where used.
NODES=$(awk '$4 != "-" {print $4}' "$TMP/world/world.tsv" | sort -u)
ALL_NS=$(awk '{print $1}' "$TMP/world/world.tsv")
OUTSIDE_NS=$(awk '$4 == "-" {print $1}' "$TMP/world/world.tsv")
build_world || bail "building the namespace world"
# shellcheck disable=SC2086 # a list of names
world_mld_quiet $ALL_NS || echo "# the endpoints still send MLD reports after 10 s"
start_listeners || bail "starting listeners"
echo "# world of seed $SEED:"
indent <"$TMP/world/world.tsv"

# Before any policy every probe of the first round gets its answer: the
# probes and listeners work, so a drop below means the rules dropped it.
run_probes "$TMP/world"
missing=$(cat "$TMP"/world/kernel-*.jsonl | "$PYTHON" -c '
import json, sys
bad = [json.loads(l) for l in sys.stdin if l.strip()]
bad = [r for r in bad if r.get("ok") is not True]
print(len(bad))
for r in bad[:10]:
    print("    ", json.dumps(r))
')
total=$(cat "$TMP"/world/batch-*.jsonl | wc -l)
if [ "$(head -1 <<<"$missing")" = 0 ] && [ "$total" = "$PROBES" ]; then
	ok "with no tables loaded all $total probes are answered"
else
	not_ok "with no tables loaded all $PROBES probes are answered: $(head -1 <<<"$missing") not answered"
	tail -n +2 <<<"$missing"
	stray=$(cat "$TMP"/world/kernel-*.err)
	[ -n "$stray" ] && indent <<<"$stray"
	finish
	exit 1
fi
for ns in $ALL_NS; do
	if ip netns exec "$P-$ns" nft list tables 2>/dev/null | grep -q .; then
		bail "$P-$ns starts with no nftables tables"
	fi
done

# --- rounds --------------------------------------------------------------
for k in $(seq "$ROUNDS"); do
	round "$k"
done

# The outside hosts never got a table.
outside_ok=1
for ns in $OUTSIDE_NS; do
	ip netns exec "$P-$ns" nft list tables 2>/dev/null | grep -q . && outside_ok=0
done
if [ $outside_ok = 1 ]; then
	ok "outside hosts have no nftables table"
else
	not_ok "outside hosts have no nftables table"
fi

echo "# $compared probes in $ROUNDS rounds, $(($(date +%s) - start)) s, seed $SEED"
if [ "$failed" != 0 ]; then
	echo "# reproduce: BULKHEAD_SEED=$SEED $0"
	echo "# round K offline: $GEN $SEED W && $GEN \$(($SEED + K - 1)) D --world W/world.json"
fi
finish
