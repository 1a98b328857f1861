#!/bin/bash
# apply-latency: time from `policy apply` to enforcement in every namespace,
# for K = 10, 50, 200 namespaces spread over 4 agents (one controller, CURVE),
# for a one-member change (one CIDR more in a network group every table
# refers to: set-element deltas) and a full policy change (every rule's port
# changes: chains rewritten). Beside it the peer doing the same change with
# nft in the same K namespaces, one after another, with the agents stopped:
# `nft add element` for the member, `nft -f` of each new table for the full
# change. Target: one-member change p99 <= 100 ms at K = 200. Reports,
# never asserts.
#
#   bench/apply-latency.sh [BUILD_DIR]    (root)
#   KS="10 50 200" AGENTS=4 REPS=100 FULL_REPS=30 PEER_REPS=5
#   AGENT_ARGS=--no-privsep: the controller session inside each agent (the
#   default runs it in the agent's session child, which passes every
#   bundle to the enforcer as text)
#
# "Enforced" is the moment every agent has acknowledged the revision: an
# agent acknowledges only after the kernel committed every namespace's
# transaction. The clock starts before the apply request is sent; the bench
# program polls the controller's status every millisecond.
set -u
BENCH=apply-latency
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
KS=${KS:-10 50 200}
AGENTS=${AGENTS:-4}
REPS=${REPS:-100}
FULL_REPS=${FULL_REPS:-30}
PEER_REPS=${PEER_REPS:-5}
AGENT=$BUILD/agent/bulkhead-agent
CONTROLLER=$BUILD/controller/bulkhead-controller
BULKHEAD=$BUILD/cli/bulkhead
APPLY_WAIT=$BUILD/bench/apply-wait

HINT="apt-get install nftables" need nft nsenter
HINT="apt-get install python3" need "$PYTHON"
for exe in "$AGENT" "$CONTROLLER" "$BULKHEAD" "$APPLY_WAIT"; do
	[ -x "$exe" ] || die "$exe not built (ninja -C $BUILD)"
done
# Even repetition counts end on policy A, the one each run starts from.
REPS=$(((REPS + 1) / 2 * 2)) FULL_REPS=$(((FULL_REPS + 1) / 2 * 2))
PORT=$((20000 + $$ % 20000))
export BULKHEAD_ADMIN=ipc://$TMP/admin.sock

# Policies A, B (one member more), C (every port changed): tier-policies.py.
"$PYTHON" "$ROOT/bench/tier-policies.py" "$TMP" || die "generating the policies failed"

# Keys: the controller's pair and one per node, allow-listed.
"$BULKHEAD" keygen "$TMP/keys/controller" >/dev/null || die "keygen failed"
mkdir -p "$TMP/keys/allowed"
for a in $(seq 1 "$AGENTS"); do
	"$BULKHEAD" keygen "$TMP/keys/n$a" >/dev/null
	cp "$TMP/keys/n$a/public.key" "$TMP/keys/allowed/n$a.key"
done

# Namespaces ep0..ep(Kmax-1), each with a veth pair of its own (this kernel
# has no dummy driver), d0 holding one IPv4 and one IPv6 address; endpoint i is on node n(i % AGENTS + 1), tier i % 5.
kmax=0
for k in $KS; do [ "$k" -gt "$kmax" ] && kmax=$k; done
for i in $(seq 0 $((kmax - 1))); do
	netns "ep$i"
	ip -n "$P-ep$i" link add d0 type veth peer name d1
	ip -n "$P-ep$i" link set d1 up
	ip -n "$P-ep$i" addr add "198.18.$((i / 200)).$((i % 200 + 10))/32" dev d0
	ip -n "$P-ep$i" addr add "2001:db8::$((i + 16))/128" dev d0 nodad
	ip -n "$P-ep$i" link set d0 up
done

inventories() { # K
	local a i sep
	for a in $(seq 1 "$AGENTS"); do
		{
			printf '{"node": "n%d", "endpoints": [' "$a"
			sep=""
			for i in $(seq $((a - 1)) "$AGENTS" $(($1 - 1))); do
				printf '%s\n {"name": "ep%d", "netns": "/run/netns/%s-ep%d", "labels": {"tier": "t%d"}}' \
					"$sep" "$i" "$P" "$i" $((i % 5))
				sep=,
			done
			printf ']}\n'
		} >"$TMP/n$a.json"
	done
}

start_daemons() { # K
	local a
	rm -rf "$TMP/controller" "$TMP"/state-*
	"$CONTROLLER" --listen "tcp://127.0.0.1:$PORT" --admin "$BULKHEAD_ADMIN" --state-dir "$TMP/controller" \
		--keys "$TMP/keys/controller" --agent-keys "$TMP/keys/allowed" --policy "$TMP/A.json" \
		>"$TMP/controller-$1.log" 2>&1 &
	PIDS+=($!)
	for a in $(seq 1 "$AGENTS"); do
		# shellcheck disable=SC2086 # AGENT_ARGS: words, e.g. --no-privsep
		"$AGENT" --controller "tcp://127.0.0.1:$PORT" --node "n$a" --inventory "$TMP/n$a.json" \
			--state-dir "$TMP/state-n$a" --keys "$TMP/keys/n$a" \
			--controller-key "$TMP/keys/controller/public.key" ${AGENT_ARGS:-} >"$TMP/agent-$1-n$a.log" 2>&1 &
		PIDS+=($!)
	done
}

# ms_since START: milliseconds since START ($EPOCHREALTIME).
ms_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.3f", (b - a) * 1000}'; }
median() { sort -n | awk '{v[NR] = $1} END {print NR ? v[int((NR + 1) / 2)] : 0}'; }

# nft text of each namespace's table under policy $1, one file per endpoint.
tables_text() { # POLICY K
	local a
	for a in $(seq 1 "$AGENTS"); do
		"$BULKHEAD" policy compile "$TMP/$1.json" $(for b in $(seq 1 "$AGENTS"); do echo --inventory "$TMP/n$b.json.addr"; done) \
			--node "n$a" >"$TMP/bundle-$1-n$a.json" || return 1
		"$AGENT" --print-ruleset --bundle "$TMP/bundle-$1-n$a.json" --node "n$a" --inventory "$TMP/n$a.json.addr" \
			2>/dev/null | awk -v dir="$TMP/nft-$1" '/^# endpoint / {f = dir "/" $3 ".nft"; next} {print > f}'
	done
}

# The compiler's view of each node (the agents discover the same addresses).
addressed_inventories() { # K
	local a
	for a in $(seq 1 "$AGENTS"); do
		"$PYTHON" - "$TMP/n$a.json" "$a" <<'EOF' >"$TMP/n$a.json.addr"
import json, sys
inv = json.load(open(sys.argv[1]))
inv["node"] = "n" + sys.argv[2]
for e in inv["endpoints"]:
    i = int(e["name"][2:])
    e["addresses"] = ["198.18.%d.%d" % (i // 200, i % 200 + 10), "2001:db8::%x" % (i + 16)]
print(json.dumps(inv))
EOF
	done
}

declare -A ROW
for k in $KS; do
	inventories "$k"
	start_daemons "$k"
	converged "$AGENTS" 60 || die "K=$k: the agents did not converge on policy A (see $TMP)"
	# Untimed check that an apply really reaches the kernel: B's extra CIDR
	# appears in the last namespace's table, and goes again with A.
	"$BULKHEAD" policy apply "$TMP/B.json" >/dev/null && converged "$AGENTS" 60 || die "K=$k: policy B did not converge"
	ip netns exec "$P-ep$((k - 1))" nft list table inet bulkhead | grep -q '198\.19\.99\.0/24' ||
		die "K=$k: policy B acknowledged but not in ep$((k - 1))'s table"
	"$BULKHEAD" policy apply "$TMP/A.json" >/dev/null && converged "$AGENTS" 60 || die "K=$k: policy A did not converge"

	"$APPLY_WAIT" "$BULKHEAD_ADMIN" "$AGENTS" "$REPS" "$TMP/A.json" "$TMP/B.json" >"$TMP/member-$k.out" ||
		die "K=$k: one-member runs failed (see $TMP)"
	"$APPLY_WAIT" "$BULKHEAD_ADMIN" "$AGENTS" "$FULL_REPS" "$TMP/A.json" "$TMP/C.json" >"$TMP/full-$k.out" ||
		die "K=$k: full-change runs failed (see $TMP)"
	ip netns exec "$P-ep$((k - 1))" nft list table inet bulkhead | grep -q 'dport 8080' ||
		die "K=$k: policy A not back in ep$((k - 1))'s table"
	stop_daemons # fail-static: the tables stay, the peer works on them

	# Peer, one-member change: nft add element in every namespace.
	set4=$(ip netns exec "$P-ep0" nft list table inet bulkhead |
		awk '$1 == "set" {s = $2} /198\.19\.0\.0\/24/ {print s; exit}')
	[ -n "$set4" ] || die "K=$k: no set holds the partners' CIDRs"
	: >"$TMP/peer-member-$k"
	for r in $(seq 1 "$PEER_REPS"); do
		t0=$EPOCHREALTIME
		for i in $(seq 0 $((k - 1))); do
			nsenter --net="/run/netns/$P-ep$i" nft add element inet bulkhead "$set4" '{ 198.19.99.0/24 }' ||
				die "nft add element failed in ep$i"
		done
		ms_since "$t0" >>"$TMP/peer-member-$k"
		echo >>"$TMP/peer-member-$k"
		for i in $(seq 0 $((k - 1))); do
			nsenter --net="/run/netns/$P-ep$i" nft delete element inet bulkhead "$set4" '{ 198.19.99.0/24 }'
		done
	done

	# Peer, full change: nft -f of every namespace's new table (C, then A).
	addressed_inventories "$k"
	rm -rf "$TMP/nft-A" "$TMP/nft-C" && mkdir -p "$TMP/nft-A" "$TMP/nft-C"
	tables_text A "$k" && tables_text C "$k" || die "K=$k: rendering the peer's rulesets failed"
	: >"$TMP/peer-full-$k"
	for r in $(seq 1 "$PEER_REPS"); do
		which=C
		[ $((r % 2)) = 0 ] && which=A
		t0=$EPOCHREALTIME
		for i in $(seq 0 $((k - 1))); do
			nsenter --net="/run/netns/$P-ep$i" nft -f "$TMP/nft-$which/ep$i.nft" || die "nft -f failed in ep$i"
		done
		ms_since "$t0" >>"$TMP/peer-full-$k"
		echo >>"$TMP/peer-full-$k"
	done
	ROW[$k]="$(result "$TMP/member-$k.out" apply median) $(result "$TMP/member-$k.out" apply p99)"
	ROW[$k]+=" $(median <"$TMP/peer-member-$k") $(result "$TMP/full-$k.out" apply median)"
	ROW[$k]+=" $(result "$TMP/full-$k.out" apply p99) $(median <"$TMP/peer-full-$k")"
done

echo "apply-latency: policy apply -> acknowledged by every agent, K namespaces over $AGENTS agents (CURVE)"
echo "  one-member change: one /24 more in a network group every table refers to ($REPS applies);"
echo "  full change: every rule's port changes, chains rewritten ($FULL_REPS applies)."
echo "  peer: with the agents stopped, nft in each of the same K namespaces one after another"
echo "  (nsenter; nft add element / nft -f of the new table), median of $PEER_REPS rounds."
echo "  Ratios are peer median / Bulkhead median."
echo
table_header
for k in $KS; do
	read -r m50 m99 pm f50 f99 pf <<<"${ROW[$k]}"
	target=-
	[ "$k" = 200 ] && target=max:100
	table_row "K=$k one member, p99" "$m99" "$pm" ms "$target"
	table_row "K=$k one member, median" "$m50" "$pm" ms -
	table_row "K=$k full change, p99" "$f99" "$pf" ms -
	table_row "K=$k full change, median" "$f50" "$pf" ms -
done
exit 0
