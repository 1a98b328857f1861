#!/bin/bash
# flows-query: `bulkhead flows` over a million stored flow rows while three
# agents heartbeat every 200 ms (CURVE, --dataplane null) — the query runs
# off the controller's loop (issue 11): it completes (no --flow-query-ms
# cut), `bulkhead status` is answered while it runs, and no agent is ever
# marked down. Before, the query ran inside the loop: with a limit long
# enough for it to finish, every agent was marked down meanwhile.
# The rows are written straight into SQLite (as bench/flow-query.sh does).
# Usage: flows-query.sh [BUILD_DIR]
set -u
. "$(dirname "$0")/world.bash"
BUILD=${1:-$LIB_ROOT/build}
ROWS=${ROWS:-1000000}

world_init fq || exit 1
world_daemons "$BUILD" n1 n2 n3 || exit 1
export BULKHEAD_ADMIN_TIMEOUT_MS=300000 # the CLI waits for the whole report
AGENT_ARGS=(--dataplane null)

for n in 1 2 3; do
	echo "{\"endpoints\": [{\"name\": \"web$n\", \"labels\": {\"app\": \"web\"}, \"addresses\": [\"198.18.0.$n\"]}]}" \
		>"$TMP/n$n.json"
done

# The schema, then a million rows over 6 days (inside the retention), 4
# nodes, 65536 ports.
controller_start
check "the controller starts" wait_for 10 bh status
kill "$CONTROLLER_PID" && wait "$CONTROLLER_PID" 2>/dev/null
"$PYTHON" - "$TMP/controller/controller.db" "$ROWS" <<'PY' || not_ok "writing $ROWS rows"
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1])
rows, now, span = int(sys.argv[2]), int(time.time() * 1000), 6 * 86400 * 1000
db.execute("""WITH RECURSIVE i(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM i WHERE n + 1 < ?)
INSERT INTO flows (node, endpoint, direction, first, last, src, src_groups, dst, dst_endpoint, dst_groups, proto,
                   port, verdict, rule, count)
SELECT 'n' || (n % 4), 'web1', 'ingress', ? - ? + ? * n / ?, ? - ? + ? * n / ?,
       '198.19.' || (n / 256 % 256) || '.' || (n % 256), 'outside', '198.18.0.1', 'n1/web1', 'web', 'udp',
       n % 65536, 'deny', 'default-deny', 1 FROM i""", (rows, now, span, span, rows, now, span, span, rows))
db.commit()
PY
check "$ROWS rows stored" test "$("$PYTHON" -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT COUNT(*) FROM flows').fetchone()[0])" "$TMP/controller/controller.db")" = "$ROWS"

controller_start --flow-query-ms 300000
check "the controller resumes" wait_for 10 bh status
for n in n1 n2 n3; do agent_start "$n"; done
all_up() { [ "$(bh status --json 2>/dev/null | json_get "sorted(n['node'] for n in j['nodes'] if n['connected'])")" = "['n1', 'n2', 'n3']" ]; }
check "three agents are up" wait_for 20 all_up
sleep 1 # a few heartbeats

# query NAME ARG...: runs `bulkhead flows ARG...` while status is asked
# every 0.2 s; $TMP/NAME.out, .err, .status (one line per answer:
# "nodes up") and .rc.
query() {
	local name=$1 pid
	shift
	bh flows "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
	pid=$!
	: >"$TMP/$name.status"
	while kill -0 "$pid" 2>/dev/null; do
		BULKHEAD_ADMIN_TIMEOUT_MS=3000 bh status --json 2>/dev/null |
			json_get "sum(n['connected'] for n in j['nodes'])" >>"$TMP/$name.status"
		sleep 0.2
	done
	wait "$pid"
	echo $? >"$TMP/$name.rc"
}
answered_up() { # NAME: status answered at least once during the query, always with 3 nodes up
	[ -s "$TMP/$1.status" ] && ! grep -qv '^3$' "$TMP/$1.status"
}

log_mark=$(wc -l <"$TMP/controller.log")
t0=$(date +%s%N)
query report
t1=$(date +%s%N)
echo "# bulkhead flows over $ROWS rows: $(((t1 - t0) / 1000000)) ms, status answered $(wc -l <"$TMP/report.status") time(s) meanwhile"
check "bulkhead flows over $ROWS rows succeeds" test "$(cat "$TMP/report.rc")" = 0
check "and prints the newest 50 flows" test "$(grep -c ' default-deny ' "$TMP/report.out")" = 50
check "status was answered while it ran, with the three agents up" answered_up report
query rules --rules
check "bulkhead flows --rules over $ROWS rows succeeds" test "$(cat "$TMP/rules.rc")" = 0
check "and counts every row's packets" grep -qE "^- +default-deny +deny +0 +0 +$ROWS " "$TMP/rules.out"
check "status was answered while it ran too" answered_up rules
check "no agent was marked down meanwhile" \
	bash -c "! tail -n +$((log_mark + 1)) '$TMP/controller.log' | grep -q 'silent for'"
check "the three agents are still up" all_up

check "no crash or sanitizer report in the daemons' logs" \
	bash -c "! grep -qE 'AddressSanitizer|runtime error|Segmentation' '$TMP'/*.log"
[ "$failed" -eq 0 ] || { for f in "$TMP"/*.log; do echo "--- $f"; tail -20 "$f"; done; }
finish
