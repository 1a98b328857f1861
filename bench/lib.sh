# shellcheck shell=bash
# Shared by the benchmark scripts (sourced, not run): root check, build
# directory, namespaces with a per-run prefix removed by a trap, and the
# comparison table every benchmark prints.
#
# A script sets BENCH (its name) and then sources this file with the
# script's own arguments: bench/NAME.sh [BUILD_DIR].

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-${BUILD_DIR:-$ROOT/build}}
BUILD=$(cd "$BUILD" 2>/dev/null && pwd || echo "$BUILD")

if [ "$(id -u)" != 0 ]; then
	echo "$BENCH: needs root (network namespaces, nftables)" >&2
	exit 77
fi

P=bhb$$ # per-run prefix of every namespace name
TMP=$(mktemp -d "/tmp/bulkhead-$BENCH.XXXXXX")
PYTHON=${PYTHON:-$(command -v /usr/bin/python3 python3 | head -1)}
PIDS=() # daemons the script started: stopped before the namespaces go

stop_daemons() {
	local pid
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
	PIDS=()
}

bench_cleanup() {
	local ns
	stop_daemons
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
		case $ns in
		"$P"-*) ip netns del "$ns" 2>/dev/null ;;
		esac
	done
	rm -rf "$TMP"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

die() {
	echo "$BENCH: $*" >&2
	exit 1
}

need() {
	local tool
	for tool in "$@"; do
		command -v "$tool" >/dev/null || die "$tool not found${HINT:+ ($HINT)}"
	done
}

# netns NAME: a namespace $P-NAME with loopback up; nothing else in it.
netns() {
	ip netns add "$P-$1" || die "cannot create namespace $P-$1"
	ip -n "$P-$1" link set lo up
}

# converged N SECONDS: N nodes connected and up to date in the controller's
# status (at $BULKHEAD_ADMIN), within SECONDS. (`status --wait` waits for
# every known node as well, but says nothing of how many there are.)
converged() {
	local want=$1 tries=$(($2 * 10)) n
	while [ "$tries" -gt 0 ]; do
		n=$("$BUILD/cli/bulkhead" status --json 2>/dev/null | "$PYTHON" -c \
			'import json,sys; print(sum(n["connected"] and n["up_to_date"] for n in json.load(sys.stdin)["nodes"]))' 2>/dev/null)
		[ "$n" = "$want" ] && return 0
		sleep 0.1
		tries=$((tries - 1))
	done
	echo "$BENCH: ${n:-no} of $want nodes up to date after $2 s" >&2
	return 1
}

# result FILE WHO FIELD: a field (median, min, n) of nft-bench's result line.
result() {
	sed -n "s/^result $2 .*\\b$3=\\([0-9.]*\\).*/\\1/p" "$1"
}

# The table: rows of "WHAT|BULKHEAD|PEER|UNIT|TARGET" where TARGET is a
# minimum ratio peer/Bulkhead (times faster), "max:N" for an absolute
# ceiling on the Bulkhead figure, or "-" for a figure shown for context.
table_header() {
	printf '%-34s %12s %12s %8s %10s  %s\n' "" "Bulkhead" "peer" "ratio" "target" "met"
}

table_row() {
	local what=$1 ours=$2 peer=$3 unit=$4 target=$5
	awk -v what="$what" -v ours="$ours" -v peer="$peer" -v unit="$unit" -v target="$target" 'BEGIN {
		ratio = "-"; tgt = "-"; met = "-"
		if (ours + 0 > 0 && peer != "-" && peer + 0 > 0)
			ratio = sprintf("%.1fx", peer / ours)
		if (target ~ /^max:/) {
			limit = substr(target, 5)
			tgt = "<= " limit " " unit
			met = ours + 0 <= limit + 0 ? "yes" : "NO"
		} else if (target != "-") {
			tgt = ">= " target "x"
			met = (ours + 0 > 0 && peer / ours >= target) ? "yes" : "NO"
		}
		fmt = unit == "ms" ? "%.3f %s" : "%.1f %s"
		p = peer == "-" ? "-" : sprintf(fmt, peer, unit)
		printf "%-34s %12s %12s %8s %10s  %s\n", what, sprintf(fmt, ours, unit), p, ratio, tgt, met
	}'
}

# nft_listeners: how many sockets on the machine, in any network namespace,
# listen to nftables events (NFNLGRP_NFTABLES, group 7). While one does,
# every commit anywhere builds one event per object and set element it
# adds (the kernel keeps one listener mask per netlink protocol, not per
# namespace), so a big load costs more for Bulkhead and nft -f alike.
# Namespaces are reached through /proc/*/ns/net and /run/netns.
nft_listeners() {
	"$PYTHON" - <<'PY'
import glob, os, subprocess
seen, n = {}, 0
for p in glob.glob("/proc/[0-9]*/ns/net") + glob.glob("/run/netns/*"):
    try:
        seen.setdefault(os.stat(p).st_ino, p)
    except OSError:
        pass
for path in seen.values():
    try:
        out = subprocess.run(["nsenter", "--net=" + path, "cat", "/proc/net/netlink"],
                             capture_output=True, text=True, timeout=5).stdout
    except Exception:
        continue
    for line in out.splitlines()[1:]:
        f = line.split()
        if len(f) > 3 and f[1] == "12" and int(f[3], 16) & 0x40:
            n += 1
print(n)
PY
}

# listeners_note BEFORE AFTER: a line when nft_listeners saw any around the runs.
listeners_note() {
	if [ "$1" != 0 ] || [ "$2" != 0 ]; then
		echo "  NOTE: $1 (before) and $2 (after the runs) sockets on this machine listened to nftables events:"
		echo "  every commit built one event per element meanwhile; the figures include that."
	else
		echo "  No socket on this machine listened to nftables events before or after the runs."
	fi
}
