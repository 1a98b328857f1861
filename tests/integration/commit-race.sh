#!/bin/bash
# commit-race: a change another process commits right after one of the
# agent's own, while the agent is not listening to nftables events (it
# does not, during its commits), is noticed all the same: in the
# endpoint's namespace (read back, put back), in another endpoint's whose
# watch the big commit stopped too (as lost events), and just after (an
# event). The race is made exact by the dataplane's sent() hook, in the
# C program beside this script (commit-race.c): see there.
# Usage: commit-race.sh [BUILD_DIR]
set -u
. "$(dirname "$0")/world.bash"
BUILD=${1:-$LIB_ROOT/build}
RACE=$BUILD/tests/commit-race

world_init race || exit 1
world_need nft nsenter
[ -x "$RACE" ] || { not_ok "$RACE not built"; finish; exit 1; }
for e in a b; do
	ip netns add "$P-$e" || { not_ok "namespace $e"; finish; exit 1; }
done
"$RACE" "/run/netns/$P-a" "/run/netns/$P-b"
