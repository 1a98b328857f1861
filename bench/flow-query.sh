#!/bin/bash
# flow-query: whether `bulkhead flows` over a large flow table holds the
# controller's heartbeats back (it runs off the loop since issue 11; run it
# with an older build to compare). A controller (--insecure, loopback, default heartbeat
# of 1 s) opens a database of ROWS flow rows over 7 days (4 nodes, written
# straight into SQLite); a fake agent (tests/integration/fake_agent.py's
# protocol) measures the longest gap between the controller's heartbeats
# while the CLI runs each query (each query has its own fake agent), and
# whether the controller marked it down meanwhile. The controller's limit
# is --flow-query-ms (default 8 s; before issue 11 the heartbeat, 1 s); 3 heartbeats (3 s) of
# silence mark a peer down. Nothing is asserted: the table reports.
#
#   bench/flow-query.sh [BUILD_DIR]      ROWS=1300000
set -u
BENCH=flow-query
. "$(dirname "$0")/lib.sh"
ROWS=${ROWS:-1300000}
CLI=$BUILD/cli/bulkhead
export BULKHEAD_ADMIN=ipc://$TMP/admin.sock
PORT=$((20000 + $$ % 20000))
STOP=$TMP/stop

start() {
	"$BUILD/controller/bulkhead-controller" --insecure --listen "tcp://127.0.0.1:$PORT" --state-dir "$TMP/state" \
		"$@" >>"$TMP/controller.log" 2>&1 &
	PIDS+=($!)
	for _ in $(seq 100); do "$CLI" status >/dev/null 2>&1 && return 0; sleep 0.1; done
	return 1
}

start || { echo "controller did not start"; exit 1; }
stop_daemons
"$PYTHON" - "$TMP/state/controller.db" "$ROWS" <<'PY'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1])
rows, now = int(sys.argv[2]), int(time.time() * 1000)
span = 7 * 86400 * 1000
def gen():
    for i in range(rows):
        t = now - span + span * i // rows
        yield (f"n{i % 4}", "web1", "ingress", t, t, f"198.18.{i // 65536 % 256}.{i // 256 % 256}", "outside",
               "198.18.0.11", "n/web1", "web", "udp", i % 65536, "deny", "default-deny", 1)
db.executemany("INSERT INTO flows (node, endpoint, direction, first, last, src, src_groups, dst, dst_endpoint,"
               " dst_groups, proto, port, verdict, rule, count) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", gen())
db.commit()
PY
start || { echo "controller did not restart"; exit 1; }

# The longest silence between heartbeats while COMMAND runs.
gap_during() { # COMMAND...
	"$PYTHON" - "tcp://127.0.0.1:$PORT" "$STOP" >"$TMP/gap" <<'PY' &
import json, os, sys, time, zmq
s = zmq.Context.instance().socket(zmq.DEALER)
s.setsockopt(zmq.LINGER, 0)
s.connect(sys.argv[1])
s.send_multipart([b"HELLO", json.dumps({"v": 1, "node": "bench", "agent": "bench", "revision": None,
                                        "hash": None, "endpoints": []}).encode()])
last, worst, end = None, 0.0, time.time() + 120
while time.time() < end and not os.path.exists(sys.argv[2]):
    if s.poll(50) and s.recv_multipart()[0] == b"HEARTBEAT":
        now = time.time()
        if last is not None:
            worst = max(worst, now - last)
        last = now
        s.send_multipart([b"HEARTBEAT", b'{"v": 1}'])
if last is not None:  # a silence that has not ended counts too
    worst = max(worst, time.time() - last)
print(f"{worst:.2f}")
PY
	local fake=$!
	sleep 2.5 # a few heartbeats first
	local t0 t1 rc down
	down=$(grep -c 'node bench: silent' "$TMP/controller.log")
	t0=$(date +%s%N)
	"$@" >/dev/null 2>"$TMP/err"
	rc=$?
	t1=$(date +%s%N)
	sleep 1.5
	touch "$STOP"
	wait "$fake"
	rm -f "$STOP"
	down=$(($(grep -c 'node bench: silent' "$TMP/controller.log") - down))
	printf '%-40s %8.2f %5s %12s %11s   %s\n' "bulkhead ${*:2}" "$(((t1 - t0) / 1000000))e-3" "$rc" \
		"$(cat "$TMP/gap")" "$([ "$down" -gt 0 ] && echo yes || echo no)" "$(head -c 60 "$TMP/err")"
}

echo "# $ROWS flow rows; heartbeat 1 s; a peer is down after 3 s of silence"
printf '%-40s %8s %5s %12s %11s   %s\n' query "time (s)" exit "max gap (s)" "marked down" stderr
gap_during "$CLI" flows
gap_during "$CLI" flows --since 10m
gap_during "$CLI" flows --node n1 --since 1h
gap_during "$CLI" flows --rules
stop_daemons
