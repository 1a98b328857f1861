#!/bin/bash
# program-ruleset: programming a whole table (100 rules, 10,000 set
# members) with our libnftnl batch (nft_batch_build + nft_batch_send) vs
# `nft -f` of the same ruleset as text (nft_render_text), side by side in
# one namespace; then the same at 100,000 endpoints' addresses (10,000
# IPv4 and 10,000 IPv6 hosts in each of the 10 sets: 200,000 elements).
# Target: >= 3x faster than nft -f. Reports, never asserts.
#
#   bench/program-ruleset.sh [BUILD_DIR]     (root; REPS=15 BIG_REPS=5 by default;
#                                             BIG_REPS=0 skips the big size)
set -u
BENCH=program-ruleset
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
REPS=${REPS:-15}
BIG_REPS=${BIG_REPS:-5}
NFT_BENCH=$BUILD/bench/nft-bench

HINT="apt-get install nftables" need nft
[ -x "$NFT_BENCH" ] || die "$NFT_BENCH not built (ninja -C $BUILD)"
netns ns

# program HOSTS REPS: one size, HOSTS of each family per set; prints its table.
program() {
	local hosts=$1 reps=$2 same shape listeners0 listeners1
	ip netns exec "$P-ns" nft delete table inet bulkhead 2>/dev/null
	# The same ruleset both ways: what libnftnl loads, nft lists identically
	# after nft -f of the rendered text.
	BENCH_HOSTS=$hosts "$NFT_BENCH" load "/run/netns/$P-ns" "$TMP/ruleset.nft" || die "loading with libnftnl failed"
	ip netns exec "$P-ns" nft -s list table inet bulkhead >"$TMP/ours.list"
	ip netns exec "$P-ns" nft -f "$TMP/ruleset.nft" || die "nft -f of the rendered ruleset failed"
	ip netns exec "$P-ns" nft -s list table inet bulkhead >"$TMP/theirs.list"
	if cmp -s "$TMP/ours.list" "$TMP/theirs.list"; then
		same="identical"
	else
		same="DIFFERENT (see diff below)"
	fi

	listeners0=$(nft_listeners)
	BENCH_HOSTS=$hosts "$NFT_BENCH" ruleset "/run/netns/$P-ns" "$reps" "$TMP/ruleset.nft" >"$TMP/out" ||
		die "nft-bench failed"
	listeners1=$(nft_listeners)
	shape=$(sed -n 's/^shape //p' "$TMP/out")

	echo "program-ruleset: one table inet bulkhead, replaced whole, $reps repetitions, one namespace"
	echo "  ruleset: $shape"
	echo "  libnftnl and nft -f rulesets as nft lists them: $same"
	echo "  Bulkhead: nft_batch_build + nft_batch_send (one transaction) on a socket open in the namespace"
	echo "  peer:     nft -f of the same ruleset (nft_render_text), process start to exit, entered by setns()"
	listeners_note "$listeners0" "$listeners1"
	echo
	table_header
	table_row "median, build + send" "$(result "$TMP/out" libnftnl median)" "$(result "$TMP/out" nft-f median)" ms 3
	table_row "min, build + send" "$(result "$TMP/out" libnftnl min)" "$(result "$TMP/out" nft-f min)" ms 3
	table_row "median, + socket open/close" "$(result "$TMP/out" libnftnl-once median)" \
		"$(result "$TMP/out" nft-f median)" ms -
	table_row "min, + socket open/close" "$(result "$TMP/out" libnftnl-once min)" \
		"$(result "$TMP/out" nft-f min)" ms -
	[ "$same" = identical ] || diff "$TMP/ours.list" "$TMP/theirs.list" | head -20
}

program 500 "$REPS"
echo
echo "  \"+ socket open/close\" is what bulkhead-agent --once pays per endpoint today: closing a"
echo "  netfilter socket waits until the kernel has freed the replaced table (nft -f pays the same at"
echo "  exit). A daemon that keeps one socket per namespace does not wait for it."
if [ "$BIG_REPS" -gt 0 ]; then
	echo
	program 10000 "$BIG_REPS"
fi
exit 0
