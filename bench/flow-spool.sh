#!/bin/bash
# flow-spool: how long one flows_* call (agent/flows.h) holds the agent's
# loop while a full flow spool (64 MiB past memory) drains, and how long
# the controller takes to decode the largest flow batch an agent makes.
# `flow-spool` fills the spool with windows of WINDOW distinct flows (the
# controller away) until it drops, then drains it as the agent does (a
# 100 ms tick, every batch acknowledged at once) and prints each call's
# median, p99 and longest wall time and its longest CPU time (the same less
# disk and scheduling waits: on a busy machine the wall time is mostly
# other programs'); `flow-decode` closes a window of 65,535 flows with
# 63-character names (flows_tick: CPU time) and decodes its largest batch
# (proto_decode). The
# peer is another build (BASELINE=DIR, e.g. main's): the two programs are
# compiled from this tree's bench/*.c against its libraries. The spool goes
# in a directory under SPOOL_PARENT (default /var/tmp: a disk, not tmpfs).
# Nothing is asserted: the table reports.
#
#   bench/flow-spool.sh [BUILD_DIR]      WINDOW=1000 BASELINE=DIR SPOOL_PARENT=/var/tmp
set -u
BENCH=flow-spool
. "$(dirname "$0")/lib.sh"
WINDOW=${WINDOW:-1000}
BASELINE=${BASELINE:-}
SPOOL_PARENT=${SPOOL_PARENT:-/var/tmp}

# programs BUILD_DIR OUT: flow-spool and flow-decode for that build, in OUT.
programs() {
	local build=$1 out=$2 src p
	mkdir -p "$out"
	if [ -x "$build/bench/flow-spool" ] && [ -x "$build/bench/flow-decode" ]; then
		cp "$build/bench/flow-spool" "$build/bench/flow-decode" "$out/"
		return
	fi
	src=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["directories"]["source"])' \
		"$build/meson-info/meson-info.json") || die "$build: not a meson build directory"
	for p in flow-spool flow-decode; do
		cc -O2 -I"$src/include" -I"$src/agent" "$ROOT/bench/$p.c" "$build/agent/libagent.a" \
			"$build/lib/libbulkhead.a" -ljansson -o "$out/$p" || die "cannot build $p against $build"
	done
}

# run OUT: the two programs' output in OUT/spool.out and OUT/decode.out.
run() {
	local out=$1 dir
	dir=$(mktemp -d "$SPOOL_PARENT/bulkhead-flow-spool.XXXXXX")
	"$out/flow-spool" "$dir" "$WINDOW" >"$out/spool.out" 2>/dev/null
	rm -rf "$dir"
	dir=$(mktemp -d "$SPOOL_PARENT/bulkhead-flow-spool.XXXXXX")
	"$out/flow-decode" "$dir" 63 5 >"$out/decode.out" 2>/dev/null
	rm -rf "$dir"
}

# field OUT WHAT: a figure of a run.
field() {
	case $2 in
	stall) sed -n 's/^longest flows_\* call while draining: \([0-9.]*\) ms.*/\1/p' "$1/spool.out" ;;
	stall_cpu) sed -n 's/^longest flows_\* call while draining: .*(CPU: \([0-9.]*\) ms)/\1/p' "$1/spool.out" ;;
	close_cpu) sed -n 's/^closing the window (flows_tick): .*(CPU \([0-9.]*\) ms)/\1/p' "$1/decode.out" ;;
	bytes) sed -n 's/.*the largest: \([0-9]*\) bytes/\1/p' "$1/decode.out" ;;
	decode) sed -n 's/^decode: \([0-9.]*\) ms.*/\1/p' "$1/decode.out" ;;
	esac
}

programs "$BUILD" "$TMP/ours"
run "$TMP/ours"
peer=-
if [ -n "$BASELINE" ]; then
	programs "$BASELINE" "$TMP/peer"
	run "$TMP/peer"
	peer=$TMP/peer
fi
pf() { if [ "$peer" = - ]; then echo -; else field "$peer" "$1"; fi; }

echo "# $BUILD${BASELINE:+ against $BASELINE}, windows of $WINDOW flows, spool in $SPOOL_PARENT"
sed 's/^/# /' "$TMP/ours/spool.out" "$TMP/ours/decode.out"
[ "$peer" = - ] || sed 's/^/# peer: /' "$peer/spool.out" "$peer/decode.out"
table_header
table_row "longest call while draining" "$(field "$TMP/ours" stall)" "$(pf stall)" ms max:50
table_row "  its CPU time" "$(field "$TMP/ours" stall_cpu)" "$(pf stall_cpu)" ms max:50
table_row "closing a 65,535-flow window (CPU)" "$(field "$TMP/ours" close_cpu)" "$(pf close_cpu)" ms -
table_row "largest FLOWS body (MB)" "$(awk -v b="$(field "$TMP/ours" bytes)" 'BEGIN {print b / 1e6}')" \
	"$(if [ "$peer" = - ]; then echo -; else awk -v b="$(field "$peer" bytes)" 'BEGIN {print b / 1e6}'; fi)" MB -
table_row "  its decode (proto_decode)" "$(field "$TMP/ours" decode)" "$(pf decode)" ms max:50
