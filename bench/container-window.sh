#!/bin/bash
# container-window: how long a new container runs without its table
# (DESIGN §3, "No window without rules"), engine by engine, beside the time
# `ENGINE run` itself takes. One controller and one agent per engine
# (--insecure, loopback), a label policy, REPS containers started one
# after another; every figure over those. Reports, never asserts.
#
#   podman  The OCI hook (bulkhead-agent hook) holds the container back
#           until its table is in place: its first instruction cannot run
#           unprotected. Measured: hook entry -> hook return as runc sees
#           it (a wrapper around the hook), the hook's own count, what
#           table the namespace holds when the hook returns (read by the
#           wrapper, before runc goes on: the real table, the quarantine,
#           none), and when the create event came (its own time stamp, and
#           when the API's event stream delivered it) against the hook's
#           entry: where the agent gets the labels. A podman world of the
#           bench's own (tests/integration/podman.bash).
#   docker  A dockerd of the bench's own (tests/integration/docker.bash:
#           its own data and exec roots, the host's firewall left alone);
#           each container waited for until its real table is in. For each
#           container, from Docker's start event (its timeNano), its
#           State.StartedAt (Docker's record of the process start) and the
#           agent's log (ms): start event -> quarantine table in place,
#           -> real table in place (negative: before the start event);
#           unprotected: from StartedAt to the first table (quarantine or
#           real) in its namespace, 0 when that was before.
#
#   bench/container-window.sh [BUILD_DIR]      ENGINES="podman docker" REPS=50
set -u
BENCH=container-window
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
REPS=${REPS:-50}
ENGINES=${ENGINES:-podman docker}
CLI=$BUILD/cli/bulkhead AGENT=$BUILD/agent/bulkhead-agent CONTROLLER=$BUILD/controller/bulkhead-controller
[ -x "$AGENT" ] || die "$AGENT not built (ninja -C $BUILD)"
# shellcheck source=tests/integration/docker.bash
. "$ROOT/tests/integration/docker.bash"
# shellcheck source=tests/integration/podman.bash
. "$ROOT/tests/integration/podman.bash"
WORLD_PIDS=()
all_cleanup() {
	pm_cleanup
	docker_cleanup
	bench_cleanup
}
trap all_cleanup EXIT

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
	local TMP=$TMP/podman # logs and state of this half
	mkdir -p "$TMP"
	# Every container a client or a web server.
	cat >"$TMP/policy.json" <<'JSON'
{"version": 1,
 "groups": {"web": {"labels": {"role": "web"}}, "clients": {"labels": {"role": "client"}}},
 "policies": [{"name": "web-in", "applies_to": "web", "ingress": [{"from": ["clients"], "ports": ["tcp/80"]}]}]}
JSON
	PM_CLEANUP_NEXT="docker_cleanup; bench_cleanup"
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
case \$t in *'comment "quarantine"'*) kind=quarantine ;; *"set bundle"*) kind=real ;; *) kind=none ;; esac
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
	for i in $(seq "$REPS"); do
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
	echo "podman $(podman --version | awk '{print $3}') + runc, $REPS containers one after another (ms)"
	row "" p50 p99 max target met
	row "podman run -d (the whole command)" "$r50" "$r99" "$rmax" "" ""
	row "hook entry -> hook return (as runc sees it)" "$h50" "$h99" "$hmax" "" ""
	row "  of which the hook's own count" "$o50" "$o99" "$omax" "" ""
	row "create event stamp -> hook entry" "$s50" "$s99" "min $smin" "> 0" \
		"$("$PYTHON" -c "print('yes' if $smin > 0 else 'no')")"
	row "create event delivered -> hook entry" "$d50" "$d99" "min $dmin" "" ""
	row "unprotected: the container ran without a table" 0 0 0 "0" \
		"$([ "$none" = 0 ] && [ "$hooks" = "$REPS" ] && echo yes || echo no)"
	echo "at hook return: $real of $hooks containers had their real table, $quar the quarantine, $none none"
	echo "(negative 'delivered -> hook entry': the event reached the stream after the hook began; the hook waited for it)"
	pm_cleanup
	stop_daemons
}

# ---- docker ----

window_docker() {
	local TMP=$TMP/docker # logs and state of this half
	mkdir -p "$TMP"
	HINT="apt-get install docker.io busybox-static python3" need "$PYTHON" "$DOCKERD" "$DOCKER_CLIENT" busybox

	docker_start || die "dockerd did not start"
	docker_image || die "importing the image failed"
	N=$(($$ % 200 + 20))
	NET=bhb$$
	docker_network "$NET" "198.19.$N.0/24" "2001:db8:d2:$N::/64" || die "creating the network failed"

	export BULKHEAD_ADMIN=ipc://$TMP/admin.sock
	PORT=$((20000 + $$ % 20000))
	cat >"$TMP/policy.json" <<'JSON'
{"version": 1, "groups": {"w": {"labels": {"app": "w"}}},
 "policies": [{"name": "w", "applies_to": "w", "ingress": [{"from": ["w"], "ports": ["tcp/80"]}]}]}
JSON
	"$BUILD/controller/bulkhead-controller" --listen "tcp://127.0.0.1:$PORT" --admin "$BULKHEAD_ADMIN" \
		--state-dir "$TMP/controller" --insecure >"$TMP/controller.log" 2>&1 &
	PIDS+=("$!")
	"$BUILD/agent/bulkhead-agent" --controller "tcp://127.0.0.1:$PORT" --insecure --node n1 \
		--engine "docker:$DSOCK" --state-dir "$TMP/agent" >"$TMP/agent.log" 2>&1 &
	PIDS+=("$!")
	"$BUILD/cli/bulkhead" policy apply "$TMP/policy.json" >/dev/null || die "policy apply failed"
	converged 1 20 || die "the agent did not converge"

	applied() { grep -q "endpoint $1: applied bundle" "$TMP/agent.log"; }
	T0=$(date +%s.%N)
	: >"$TMP/run.txt"
	for i in $(seq 0 "$REPS"); do # container 0 warms up, not counted
		name=bw$i
		t=$(date +%s%N)
		$DOCKER run -d --name "$name" --network "$NET" -l app=w "$IMAGE" sleep 100000 >/dev/null ||
			die "docker run failed"
		[ "$i" -gt 0 ] && echo "$name $((($(date +%s%N) - t) / 1000))" >>"$TMP/run.txt"
		for _ in $(seq 100); do applied "$name" && break; sleep 0.05; done
		applied "$name" || echo "$BENCH: $name: no table after 5 s" >&2
	done
	T1=$(date +%s.%N)
	curl -sS --unix-socket "$DSOCK" -G "http://d/v1.41/events" --data-urlencode "since=$T0" \
		--data-urlencode "until=$T1" --data-urlencode 'filters={"type":["container"],"event":["start"]}' \
		>"$TMP/events.jsonl"
	for i in $(seq "$REPS"); do
		$DOCKER inspect -f "bw$i {{.State.StartedAt}} {{.NetworkSettings.SandboxKey}}" "bw$i"
	done >"$TMP/inspect.txt"

	"$PYTHON" - "$TMP" "$REPS" <<'PY'
import datetime, json, re, sys
tmp, reps = sys.argv[1], int(sys.argv[2])
start = {}
for line in open(tmp + "/events.jsonl"):
    e = json.loads(line)
    start[e["Actor"]["Attributes"]["name"]] = e["timeNano"] / 1e6
started, key = {}, {}
for line in open(tmp + "/inspect.txt"):
    name, at, k = line.split()
    # RFC 3339 with nanoseconds: keep microseconds for datetime.
    m = re.match(r"(.*T\d\d:\d\d:\d\d)(\.\d+)?Z", at)
    frac = (m.group(2) or ".0")[:7]
    t = datetime.datetime.strptime(m.group(1) + frac, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc)
    started[name] = t.timestamp() * 1000
    key[k] = name
runs = {l.split()[0]: int(l.split()[1]) / 1000 for l in open(tmp + "/run.txt")}
# The agent logs UTC HH:MM:SS.mmm: the date is the start event's.
quarantine, real = {}, {}
line_re = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d\d\d) \S+ info: (endpoint (\S+): (quarantine table in place|applied bundle)|namespace (\S+): quarantine table in place)")
anchor = min(start.values()) if start else 0
day = datetime.datetime.fromtimestamp(anchor / 1000, datetime.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
for line in open(tmp + "/agent.log"):
    m = line_re.match(line)
    if not m:
        continue
    t = (day + datetime.timedelta(hours=int(m.group(1)), minutes=int(m.group(2)), seconds=int(m.group(3)), milliseconds=int(m.group(4)))).timestamp() * 1000
    if t < anchor - 12 * 3600e3:
        t += 86400e3
    if m.group(8):
        name = key.get(m.group(8))
        if name:
            quarantine.setdefault(name, t)
        continue
    name = m.group(6).rstrip(":")
    if m.group(7).startswith("quarantine"):
        quarantine.setdefault(name, t)
    else:
        real.setdefault(name, t)
names = ["bw%d" % i for i in range(1, reps + 1)]
def q(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p * len(v)))] if v else float("nan")
rows = []
def row(what, v, target=None, met=None):
    rows.append((what, q(v, 0.5), q(v, 0.99), max(v) if v else float("nan"), len(v), target or "", met or ""))
sq = [quarantine[n] - start[n] for n in names if n in quarantine and n in start]
sr = [real[n] - start[n] for n in names if n in real and n in start]
unprot = [max(0.0, min(quarantine.get(n, 1e18), real.get(n, 1e18)) - started[n]) for n in names if n in started and (n in quarantine or n in real)]
never = [n for n in names if n not in quarantine and n not in real]
row("docker run -d (for scale)", [runs[n] for n in names if n in runs])
row("start event -> quarantine", sq)
row("start event -> real table", sr)
p99 = q(unprot, 0.99)
row("unprotected (StartedAt -> table)", unprot, "<= 20", "yes" if unprot and p99 <= 20 and not never else "NO")
print("container-window (Docker): ms over %d containers (negative: before the start event)" % reps)
print("%-34s %9s %9s %9s %4s  %-7s %s" % ("", "p50", "p99", "max", "n", "target", "met"))
for r in rows:
    print("%-34s %9.1f %9.1f %9.1f %4d  %-7s %s" % r)
early = sum(1 for n in names if n in quarantine and n in started and quarantine[n] < started[n])
print("quarantine before the process started: %d of %d; real table before it: %d; no table at all: %d" % (
    early, len(names), sum(1 for n in names if n in real and n in started and real[n] < started[n]), len(never)))
PY
	stop_daemons
}

for e in $ENGINES; do
	"window_$e"
done
