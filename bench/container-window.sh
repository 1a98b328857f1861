#!/bin/bash
# container-window: how long a new container runs without its table
# (DESIGN §3, "No window without rules"), engine by engine, beside the time
# `ENGINE run` itself takes. One controller and one agent per engine
# (--insecure, loopback), a label policy, N containers started one after
# another on an --internal network; every figure over those N.
#
#   podman  The OCI hook (bulkhead-agent hook) holds the container back
#           until its table is in place: the container's first instruction
#           cannot run unprotected. Measured: hook entry -> hook return as
#           runc sees it (a wrapper around the hook), the hook's own count,
#           what table the namespace holds when the hook returns (read by
#           the wrapper, before runc goes on: the real table, the
#           quarantine, none), and when the create event came (its own
#           time stamp, and when the API's event stream delivered it)
#           against the hook's entry: where the agent gets the labels.
#   docker  (the engine source's half: container start event -> real table)
#
#   bench/container-window.sh [BUILD_DIR]     ENGINES="podman docker" N=50
set -u
BENCH=container-window
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
N=${N:-50}
ENGINES=${ENGINES:-podman docker}
CLI=$BUILD/cli/bulkhead AGENT=$BUILD/agent/bulkhead-agent CONTROLLER=$BUILD/controller/bulkhead-controller
[ -x "$AGENT" ] || die "$AGENT not built (ninja -C $BUILD)"
HINT="apt-get install python3 curl" need "$PYTHON" curl nsenter

# The label policy: every container is a client or a web server.
cat >"$TMP/policy.json" <<'JSON'
{"version": 1,
 "groups": {"web": {"labels": {"role": "web"}}, "clients": {"labels": {"role": "client"}}},
 "policies": [{"name": "web-in", "applies_to": "web", "ingress": [{"from": ["clients"], "ports": ["tcp/80"]}]}]}
JSON

# pct FILE COLUMN P...: the percentiles of a column of numbers.
pct() {
	"$PYTHON" - "$@" <<'PY'
import sys
f, col, ps = sys.argv[1], int(sys.argv[2]), [float(p) for p in sys.argv[3:]]
v = sorted(float(l.split()[col]) for l in open(f) if len(l.split()) > col)
q = lambda p: v[min(len(v) - 1, int(p * len(v)))] if v else float("nan")
print(" ".join("%.1f" % q(p) for p in ps))
PY
}

row() { printf '%-48s | %-9s | %-9s | %-9s | %-6s | %s\n' "$@"; }

# ---- podman ----

window_podman() {
	command -v podman >/dev/null && command -v runc >/dev/null ||
		{ echo "podman: not installed (tests/install-deps.sh): not measured"; return 0; }
	# The test world's podman helpers, in this run's directory.
	WORLD_PIDS=()
	PM_CLEANUP_NEXT=bench_cleanup
	# shellcheck source=tests/integration/podman.bash
	. "$ROOT/tests/integration/podman.bash"
	pm_init
	pm_image || die "podman import failed"
	pm_network w 198.18.60.0/24 2001:db8:60::/64 || die "podman network create failed"
	pm_service || die "podman system service did not come up"
	local port=$((20000 + $$ % 20000)) admin=ipc://$TMP/admin.sock hooksock=$TMP/run/hook.sock
	export BULKHEAD_ADMIN=$admin
	"$CONTROLLER" --listen "tcp://127.0.0.1:$port" --admin "$admin" --state-dir "$TMP/controller" --insecure \
		>"$TMP/controller.log" 2>&1 &
	PIDS+=("$!")
	"$AGENT" --node n1 --engine "podman:$PM_SOCK" --hook-socket "$hooksock" --state-dir "$TMP/agent" \
		--controller "tcp://127.0.0.1:$port" --insecure >"$TMP/agent.log" 2>&1 &
	PIDS+=("$!")
	"$CLI" policy apply "$TMP/policy.json" >/dev/null || die "policy apply failed"
	converged 1 20 || die "the agent did not come up (see $TMP/agent.log)"

	# The wrapper runc runs as the hook: times the hook, then looks at
	# the table the container will start with.
	cat >"$TMP/hook-wrap.sh" <<EOF
#!/bin/bash
t0=\$EPOCHREALTIME
tee "$TMP/state.\$\$" | "$AGENT" "\$@" 2>>"$TMP/hook.log"
rc=\$?
t1=\$EPOCHREALTIME
pid=\$(sed 's/.*"pid":\\([0-9]*\\).*/\\1/' "$TMP/state.\$\$")
id=\$(sed 's/.*"id":"\\([0-9a-f]*\\)".*/\\1/' "$TMP/state.\$\$")
t=\$(nsenter --net=/proc/\$pid/ns/net nft list table inet bulkhead 2>/dev/null)
case \$t in *"set bundle"*) kind=real ;; *quarantine*) kind=quarantine ;; *) kind=none ;; esac
echo "\$id \$t0 \$t1 \$rc \$kind" >>"$TMP/hook-times.txt"
rm -f "$TMP/state.\$\$"
exit \$rc
EOF
	chmod +x "$TMP/hook-wrap.sh"
	HOOK_WRAPPER=$TMP/hook-wrap.sh pm_hook "$hooksock"
	# Every create event as the API's stream delivers it.
	curl -sN --unix-socket "$PM_SOCK" 'http://d/v1.41/events?filters=%7B%22event%22%3A%5B%22create%22%5D%7D' |
		while IFS= read -r line; do echo "$EPOCHREALTIME $line"; done >"$TMP/events.txt" &
	PIDS+=("$!")
	sleep 0.5

	local i role t0 t1
	: >"$TMP/run-times.txt"
	for i in $(seq "$N"); do
		role=client
		[ $((i % 2)) = 0 ] && role=web
		t0=$EPOCHREALTIME
		pm run -d --name "$P-c$i" --label "role=$role" --network "$P-w" "$IMAGE" sleep 600 >/dev/null ||
			echo "container $i did not start: $(tail -1 "$TMP/hook.log")" >&2
		t1=$EPOCHREALTIME
		awk -v a="$t0" -v b="$t1" -v i="$i" 'BEGIN { printf "%d %.3f\n", i, (b - a) * 1000 }' >>"$TMP/run-times.txt"
	done
	sleep 1
	# Per container: hook ms, create stamp -> hook entry, delivered -> hook entry.
	"$PYTHON" - "$TMP/hook-times.txt" "$TMP/events.txt" >"$TMP/joined.txt" <<'PY'
import json, sys
hooks = {}
for l in open(sys.argv[1]):
    cid, t0, t1, rc, kind = l.split()
    hooks[cid] = (float(t0), float(t1), kind)
for l in open(sys.argv[2]):
    at, _, js = l.partition(" ")
    try:
        ev = json.loads(js)
    except ValueError:
        continue
    cid = ev.get("id") or ev.get("Actor", {}).get("ID")
    if cid not in hooks:
        continue
    t0, t1, kind = hooks[cid]
    stamp = ev.get("timeNano", 0) / 1e9
    print("%.3f %.3f %.3f %s" % ((t1 - t0) * 1000, (t0 - stamp) * 1000, (t0 - float(at)) * 1000, kind))
PY
	local hooks real quar none
	hooks=$(wc -l <"$TMP/hook-times.txt")
	real=$(grep -c ' real$' "$TMP/hook-times.txt")
	quar=$(grep -c ' quarantine$' "$TMP/hook-times.txt")
	none=$(grep -c ' none$' "$TMP/hook-times.txt")
	read -r h50 h99 hmax < <(pct "$TMP/joined.txt" 0 0.5 0.99 1)
	read -r r50 r99 rmax < <(pct "$TMP/run-times.txt" 1 0.5 0.99 1)
	read -r s50 s99 smin < <(pct "$TMP/joined.txt" 1 0.5 0.99 0)
	read -r d50 d99 dmin < <(pct "$TMP/joined.txt" 2 0.5 0.99 0)
	grep -o 'its table is in place after [0-9]* ms' "$TMP/hook.log" | awk '{print 0, $7}' >"$TMP/hook-own.txt"
	read -r o50 o99 omax < <(pct "$TMP/hook-own.txt" 1 0.5 0.99 1)
	echo "podman $(podman --version | awk '{print $3}') + runc, $N containers one after another (ms)"
	row "" p50 p99 max target met
	row "podman run -d (the whole command)" "$r50" "$r99" "$rmax" "" ""
	row "hook entry -> hook return (as runc sees it)" "$h50" "$h99" "$hmax" "" ""
	row "  of which the hook's own count" "$o50" "$o99" "$omax" "" ""
	row "create event stamp -> hook entry" "$s50" "$s99" "min $smin" "> 0" \
		"$("$PYTHON" -c "print('yes' if $smin > 0 else 'no')")"
	row "create event delivered -> hook entry" "$d50" "$d99" "min $dmin" "" ""
	row "unprotected: the container ran without a table" 0 0 0 "0" \
		"$([ "$none" = 0 ] && [ "$hooks" = "$N" ] && echo yes || echo no)"
	echo "at hook return: $real of $hooks containers had their real table, $quar the quarantine, $none none"
	echo "(negative 'delivered -> hook entry': the event reached the stream after the hook began; the hook waited for it)"
	pm_cleanup
}

# ---- docker ----

window_docker() {
	echo "docker: the container start event -> real table window comes with the engine source's half"
}

for e in $ENGINES; do
	"window_$e"
done
