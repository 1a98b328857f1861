#!/bin/bash
# program-ruleset: programming a whole table (100 rules, 10,000 set
# members) with our libnftnl batch (nft_batch_build + nft_batch_send) vs
# `nft -f` of the same ruleset as text (nft_render_text), side by side in
# one namespace. Target: >= 3x faster than nft -f. Reports, never asserts.
#
#   bench/program-ruleset.sh [BUILD_DIR]     (root; REPS=15 by default)
set -u
BENCH=program-ruleset
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
REPS=${REPS:-15}
NFT_BENCH=$BUILD/bench/nft-bench

HINT="apt-get install nftables" need nft
[ -x "$NFT_BENCH" ] || die "$NFT_BENCH not built (ninja -C $BUILD)"
netns ns

# The same ruleset both ways: what libnftnl loads, nft lists identically
# after nft -f of the rendered text.
"$NFT_BENCH" load "/run/netns/$P-ns" "$TMP/ruleset.nft" || die "loading with libnftnl failed"
ip netns exec "$P-ns" nft -s list table inet bulkhead >"$TMP/ours.list"
ip netns exec "$P-ns" nft -f "$TMP/ruleset.nft" || die "nft -f of the rendered ruleset failed"
ip netns exec "$P-ns" nft -s list table inet bulkhead >"$TMP/theirs.list"
if cmp -s "$TMP/ours.list" "$TMP/theirs.list"; then
	same="identical"
else
	same="DIFFERENT (see diff below)"
fi

"$NFT_BENCH" ruleset "/run/netns/$P-ns" "$REPS" "$TMP/ruleset.nft" >"$TMP/out" || die "nft-bench failed"
shape=$(sed -n 's/^shape //p' "$TMP/out")

echo "program-ruleset: one table inet bulkhead, replaced whole, $REPS repetitions, one namespace"
echo "  ruleset: $shape"
echo "  libnftnl and nft -f rulesets as nft lists them: $same"
echo "  Bulkhead: nft_batch_build + nft_batch_send (one transaction) on a socket open in the namespace"
echo "  peer:     nft -f of the same ruleset (nft_render_text), process start to exit, entered by setns()"
echo
table_header
table_row "median, build + send" "$(result "$TMP/out" libnftnl median)" "$(result "$TMP/out" nft-f median)" ms 3
table_row "min, build + send" "$(result "$TMP/out" libnftnl min)" "$(result "$TMP/out" nft-f min)" ms 3
table_row "median, + socket open/close" "$(result "$TMP/out" libnftnl-once median)" \
	"$(result "$TMP/out" nft-f median)" ms -
table_row "min, + socket open/close" "$(result "$TMP/out" libnftnl-once min)" "$(result "$TMP/out" nft-f min)" ms -
echo
echo "  \"+ socket open/close\" is what bulkhead-agent --once pays per endpoint today: closing a"
echo "  netfilter socket waits until the kernel has freed the replaced table (nft -f pays the same at"
echo "  exit). A daemon that keeps one socket per namespace does not wait for it."
[ "$same" = identical ] || diff "$TMP/ours.list" "$TMP/theirs.list" | head -20
exit 0
