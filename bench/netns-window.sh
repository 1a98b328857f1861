#!/bin/bash
# netns-window: how long a namespace made anew at an endpoint's path runs
# without its table. A helper makes a new network namespace, subscribes
# inside it to nftables events, bind-mounts it at the endpoint's path
# (/run/netns/NAME, as `ip netns add` does) and times from calling mount()
# to the event of the agent's transaction (its table is in place). REPS
# times, after `ip netns del` of the one before. The agent runs with its
# default --recheck-ms (500); with OLD_BUILD=DIR a second agent from that
# build (one that waits for its periodic check) is measured the same way,
# in the peer column. Reports, never asserts.
#
#   bench/netns-window.sh [BUILD_DIR]      REPS=50 OLD_BUILD=
set -u
BENCH=netns-window
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
REPS=${REPS:-50}
OLD_BUILD=${OLD_BUILD:-}

HINT="apt-get install python3" need "$PYTHON"
[ -x "$BUILD/agent/bulkhead-agent" ] || die "$BUILD/agent/bulkhead-agent not built (ninja -C $BUILD)"

NS=$P-ep
cat >"$TMP/inventory.json" <<JSON
{"node": "n1", "endpoints": [{"name": "ep", "netns": "/run/netns/$NS", "labels": {"app": "a"},
  "addresses": ["198.18.0.11"]}]}
JSON
cat >"$TMP/policy.json" <<'JSON'
{"version": 1, "groups": {"a": {"labels": {"app": "a"}}},
 "policies": [{"name": "a", "applies_to": "a", "ingress": [], "egress": []}]}
JSON
"$BUILD/cli/bulkhead" policy compile "$TMP/policy.json" --inventory "$TMP/inventory.json" --node n1 \
	>"$TMP/bundle.json" || die "compiling the bundle failed"

# One new namespace at $1, mounted; prints the ms from mount to our table.
cat >"$TMP/remount.py" <<'PY'
import ctypes, os, select, socket, sys, time
path = sys.argv[1]
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET, MS_BIND, NETLINK_NETFILTER, NFNLGRP_NFTABLES = 0x40000000, 4096, 12, 7
if libc.unshare(CLONE_NEWNET) != 0:
    sys.exit("unshare: %s" % os.strerror(ctypes.get_errno()))
events = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
events.bind((0, 1 << (NFNLGRP_NFTABLES - 1)))
os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
# From before the call: the agent, woken inside it, may be done before it
# returns to us.
t0 = time.monotonic()
if libc.mount(b"/proc/self/ns/net", path.encode(), None, MS_BIND, None) != 0:
    sys.exit("mount: %s" % os.strerror(ctypes.get_errno()))
if not select.select([events], [], [], 5.0)[0]:
    print("none")
else:
    print("%.2f" % ((time.monotonic() - t0) * 1000))
PY

# measure BUILD: REPS windows of an agent from BUILD, one per line, to stdout.
measure() {
	local build=$1 i state=$TMP/state-$RANDOM
	ip netns add "$NS" || die "cannot create namespace $NS"
	"$build/agent/bulkhead-agent" --node n1 --inventory "$TMP/inventory.json" --bundle "$TMP/bundle.json" \
		--state-dir "$state" >"$TMP/agent.log" 2>&1 &
	PIDS+=("$!")
	for i in $(seq 50); do
		ip netns exec "$NS" nft list table inet bulkhead >/dev/null 2>&1 && break
		sleep 0.1
	done
	for i in $(seq "$REPS"); do
		ip netns del "$NS"
		"$PYTHON" "$TMP/remount.py" "/run/netns/$NS" || die "the helper failed"
		sleep 0.$((RANDOM % 5 + 1)) # no lock-step with the agent's 500 ms check
	done
	stop_daemons
	ip netns del "$NS"
}
# stats FILE: "p50 p99 max none" in ms.
stats() {
	"$PYTHON" - "$1" <<'PY'
import sys
v = [l.strip() for l in open(sys.argv[1])]
t = sorted(float(x) for x in v if x != "none")
q = lambda p: t[min(len(t) - 1, int(p * len(t)))] if t else float("nan")
print("%.1f %.1f %.1f %d" % (q(0.5), q(0.99), t[-1] if t else float("nan"), len(v) - len(t)))
PY
}

measure "$BUILD" >"$TMP/new.txt"
read -r n50 n99 nmax nnone < <(stats "$TMP/new.txt")
o50=- o99=- omax=- onone=-
if [ -n "$OLD_BUILD" ]; then
	measure "$OLD_BUILD" >"$TMP/old.txt"
	read -r o50 o99 omax onone < <(stats "$TMP/old.txt")
fi
met=$("$PYTHON" -c "print('yes' if $n99 <= 50 and $nnone == 0 else 'no')")
ratio() { "$PYTHON" -c "import sys; a, b = sys.argv[1:]; print('%.0fx' % (float(b) / float(a)) if b != '-' and float(a) > 0 else '-')" "$1" "$2"; }
row() { printf '%-6s | %-10s | %-10s | %-7s | %-8s | %s\n' "$@"; }
echo "netns-window: namespace mounted -> its table in place, ms over $REPS re-creations (never: no table within 5 s)"
row "" Bulkhead "old (tick)" ratio target met
row p50 "$n50" "$o50" "$(ratio "$n50" "$o50")" "" ""
row p99 "$n99" "$o99" "$(ratio "$n99" "$o99")" "<= 50" "$met"
row max "$nmax" "$omax" "$(ratio "$nmax" "$omax")" "" ""
row never "$nnone" "$onone" "" 0 "$([ "$nnone" = 0 ] && echo yes || echo no)"
