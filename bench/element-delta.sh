#!/bin/bash
# element-delta: one new member of a label group, as a set-element delta
# built by nft_batch_build_update and sent as one transaction, vs the
# operator's `nft add element inet bulkhead SET { ADDR }`, side by side in
# one namespace holding the 10,000-member table of program-ruleset.sh.
# Target: >= 10x faster. Reports, never asserts.
#
#   bench/element-delta.sh [BUILD_DIR]     (root; REPS=200 by default)
set -u
BENCH=element-delta
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
REPS=${REPS:-200}
NFT_BENCH=$BUILD/bench/nft-bench

HINT="apt-get install nftables" need nft
[ -x "$NFT_BENCH" ] || die "$NFT_BENCH not built (ninja -C $BUILD)"
netns ns

"$NFT_BENCH" delta "/run/netns/$P-ns" "$REPS" >"$TMP/out" || die "nft-bench failed"
"$NFT_BENCH" build - "$REPS" >"$TMP/build" || die "nft-bench build failed"
shape=$(sed -n 's/^shape //p' "$TMP/out")
rules=$(ip netns exec "$P-ns" nft -a list table inet bulkhead | grep '# handle' | grep -Evc '^\s*(table|chain|set) ')

echo "element-delta: one IPv4 member more in one set of a 10,000-member table, $REPS repetitions, one namespace"
echo "  each run adds a new address, and is undone untimed before the next; table: $rules rules"
echo "  Bulkhead: nft_batch_build_update(old bundle, new bundle) + nft_batch_send on a socket open in"
echo "            the namespace; the update it built: $shape"
echo "  peer:     nft add element inet bulkhead SET { ADDR }, process start to exit, entered by setns()"
echo
table_header
table_row "median, build + send" "$(result "$TMP/out" libnftnl median)" \
	"$(result "$TMP/out" nft-add-element median)" ms 10
table_row "min, build + send" "$(result "$TMP/out" libnftnl min)" "$(result "$TMP/out" nft-add-element min)" ms 10
table_row "median, + socket open/close" "$(result "$TMP/out" libnftnl-once median)" \
	"$(result "$TMP/out" nft-add-element median)" ms -
echo
echo "  of which the kernel's transaction (send to the last acknowledgement): median $(result "$TMP/out" libnftnl-send median) ms;"
echo "  it re-validates every goto element of the table's verdict maps whenever one is added"
echo "  (agent/nft-plan-maps.c says why the member maps still hold gotos)"
echo "  of which user space alone (mean, no kernel): nft_batch_build_update $(sed -n 's/^result build-update mean=\([0-9.]*\).*/\1/p' "$TMP/build") ms," \
	"one table's plan $(sed -n 's/^result plan mean=//p' "$TMP/build") ms"
echo "  The build compares both bundles' rules and sets (shape unchanged: no rule is rewritten) and"
echo "  diffs every set's members; decoding the bundle is not included on either side."
echo "  Before the build, the agent applies the controller's DELTA to the bundle it holds and checks"
echo "  the new hash (bundle_apply_delta + bundle_hash_checked): $(sed -n 's/^result bundle-delta mean=//p' "$TMP/build") ms" \
	"(mean; the JSON round trip it replaced, in the same run: $(sed -n 's/^result bundle-delta-json mean=//p' "$TMP/build") ms)."
echo "  Around it: the controller's proto_delta_make $(sed -n 's/^result delta-make mean=//p' "$TMP/build") ms; the new bundle's hash" \
	"$(sed -n 's/^result bundle-hash mean=//p' "$TMP/build") ms and compact text $(sed -n 's/^result bundle-encode mean=//p' "$TMP/build") ms (means)."
exit 0
