#!/bin/bash
# container-window (Docker): how long a new Docker container runs without
# rules. A dockerd of the bench's own (tests/integration/docker.bash: its
# own data and exec roots, the host's firewall left alone), a controller
# and an agent with --engine docker on loopback, a policy that makes
# every container an endpoint of a group with rules; then REPS containers
# started one after another with `docker run -d`, each waited for until
# its real table is in. For each container, from Docker's start event
# (its timeNano), its State.StartedAt (Docker's record of the process
# start) and the agent's log (ms):
#   - start event -> quarantine table in place, -> real table in place
#     (negative: before the start event);
#   - unprotected: from StartedAt to the first table (quarantine or real)
#     in its namespace, 0 when that was before.
# Beside them, what `docker run -d` itself takes. Reports, never asserts.
#
#   bench/container-window.sh [BUILD_DIR]      REPS=50
set -u
BENCH=container-window
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/integration/docker.bash
. "$ROOT/tests/integration/docker.bash"
trap 'docker_cleanup; bench_cleanup' EXIT
REPS=${REPS:-50}

HINT="apt-get install docker.io busybox-static python3" need "$PYTHON" "$DOCKERD" "$DOCKER_CLIENT" busybox
[ -x "$BUILD/agent/bulkhead-agent" ] || die "$BUILD/agent/bulkhead-agent not built (ninja -C $BUILD)"

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
