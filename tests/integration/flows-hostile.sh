#!/bin/bash
# flows-hostile: what an agent sends in its flow reports is held to the wire
# schema, to its node and to the controller's limits (issue 10: 6, 7, 9, 10,
# 18). A fake agent (fake_flows.py, no CURVE: the controller runs with
# --insecure on loopback) sends crafted FLOWS; a real agent (--dataplane
# null) starts with a spool of batches the controller rejects:
#   - numbers out of range (two lost.gap of 2^62 broke every `bulkhead
#     flows`), addresses that are not addresses, a body that does not
#     decode: the batch is rejected with a reason, `bulkhead flows` works
#     and says how many batches it rejected;
#   - flows of another node's endpoint are not stored, times in the year
#     9999 become the controller's time, a batch from a clock 8 days behind
#     is counted as expired: each reported with its reason;
#   - per-node rate (--flow-rate) and quota (--flow-quota, also across a
#     restart): what exceeds them is counted and reported;
#   - a flow query over 30,000 rows with --flow-query-ms 1 is stopped with a
#     clear answer, and the controller goes on answering;
#   - an agent whose spool (an old flows.spool, taken over at start) holds
#     20 batches the controller rejects (more than its 16 in-flight slots)
#     keeps them in flows.quarantine, counts them, and the batch after them
#     arrives.
# Usage: flows-hostile.sh [BUILD_DIR]
set -u
. "$(dirname "$0")/world.bash"
BUILD=${1:-$LIB_ROOT/build}
FAKE=$LIB_ROOT/tests/integration/fake_flows.py

world_init fh || exit 1
world_daemons "$BUILD" || exit 1
EP=tcp://127.0.0.1:$PORT

# The controller without CURVE (the fake agent has no key), heartbeats of 200 ms.
ctl_start() { # [ARG...]
	"$CONTROLLER" --insecure --listen "$EP" --admin "$BULKHEAD_ADMIN" --state-dir "$TMP/controller" \
		--heartbeat-ms 200 "$@" >>"$TMP/controller.log" 2>&1 &
	CONTROLLER_PID=$!
	WORLD_PIDS+=("$CONTROLLER_PID")
	wait_for 10 bash -c "'$CLI' status >/dev/null 2>&1"
}
ctl_stop() { kill "$CONTROLLER_PID" 2>/dev/null; wait "$CONTROLLER_PID" 2>/dev/null; }
endpoint() { # NAME ADDRESS: an ENDPOINTS list of one
	echo "[{\"name\": \"$1\", \"netns\": null, \"labels\": {\"app\": \"x\"}, \"addresses\": [\"$2\"]}]"
}
# fake NODE NAME ADDRESS < MESSAGES: its answers in $TMP/answers
fake() { "$PYTHON" "$FAKE" "$EP" "$1" "$(endpoint "$2" "$3")" >"$TMP/answers" 2>>"$TMP/fake.log"; }
now_ms() { date +%s%3N; }
# flows_msg SEQ END_MS FIRST_PORT N COUNT [ENDPOINT [LAST_MS [SRC]]]: a FLOWS line
flows_msg() {
	/usr/bin/python3 - "$@" <<'PY'
import json, sys
a = sys.argv[1:]
seq, end, port, n, count = map(int, a[:5])
ep = a[5] if len(a) > 5 else "web1"
last = int(a[6]) if len(a) > 6 else end
src = a[7] if len(a) > 7 else "198.18.0.1"
flows = [{"endpoint": ep, "dir": "ingress", "src": src, "dst": "198.18.0.11", "proto": "udp", "port": port + i,
          "verdict": "deny", "policy": None, "rule": "default-deny", "count": count, "first": last, "last": last}
         for i in range(n)]
print("FLOWS " + json.dumps({"epoch": 1000, "seq": seq, "start": end - 1000, "end": end, "flows": flows, "lost": []}))
PY
}
# answer SEQ: the FLOWS_ACK of batch SEQ, as JSON
answer() { awk -v s="\"seq\": $1}" '$1 == "FLOWS_ACK" && index($0, s) {sub(/^FLOWS_ACK /, ""); print}' "$TMP/answers"; }
rejected() { answer "$1" | json_get "j.get('rejected') or ''"; }
flows_json() { bh flows --limit 0 --json "$@"; }
dropped() { # NODE REASON FIELD
	flows_json --node "$1" | json_get "sum(d['$3'] for d in j['dropped'] if d['reason'] == '$2')"
}

ctl_start
check "the controller answers" bh status

# --- numbers, addresses and shapes: the schema's ranges (findings 6 and 9) ---
fake n2 db-1 198.18.0.12 </dev/null # another node's endpoint
now=$(now_ms)
{
	echo "FLOWS {\"epoch\": 1000, \"seq\": 1, \"start\": $((now - 1000)), \"end\": $now, \"flows\": [], \"lost\": [
	  {\"endpoint\": \"web1\", \"enobufs\": 0, \"gap\": 4611686018427387904, \"spool\": 0},
	  {\"endpoint\": \"web1\", \"enobufs\": 0, \"gap\": 4611686018427387904, \"spool\": 0}]}" | tr -d '\n'
	echo
	echo "FLOWS {\"epoch\": 1000, \"seq\": 1, \"start\": $((now - 1000)), \"end\": $now, \"flows\": [], \"lost\": [
	  {\"endpoint\": \"web1\", \"enobufs\": 0, \"gap\": 4611686018427387904, \"spool\": 0}]}" | tr -d '\n'
	echo
	flows_msg 2 "$now" 1111 1 5 | sed 's/"lost": \[\]/"lost": [{"endpoint": "web1", "enobufs": 0, "gap": 1099511627776, "spool": 0}, {"endpoint": "web1", "enobufs": 0, "gap": 1099511627776, "spool": 0}]/'
	flows_msg 3 "$now" 2222 1 2 web1 253402300799999
	flows_msg 4 "$now" 3333 1 7 db-1
	flows_msg 5 "$now" 4444 1 1 web1 "$now" 999.1.1.1
	flows_msg 6 "$((now - 8 * 86400 * 1000))" 5555 1 4
	echo 'FLOWS @RAW:{"v": 1, "epoch": 1000, "seq": 7, "flows": "nonsense"}'
} | fake n1 web1 198.18.0.11
check "every batch was answered" test "$(grep -c '^FLOWS_ACK' "$TMP/answers")" -ge 7
check "two lost.gap of 2^62: rejected, the reason names the field" \
	bash -c "grep -q 'lost\[0\]: \\\\\"gap\\\\\" must be an integer from 0 to 1099511627776' '$TMP/answers'"
check "an address that is no address: rejected (\"src\")" \
	test "$(rejected 5)" = 'flows[0]: "src" must be an IPv4 or IPv6 address'
check "a body that does not decode but names its batch: rejected" test -n "$(rejected 7)"
check "in-range batches are acknowledged, not rejected" test -z "$(rejected 2)$(rejected 3)$(rejected 4)$(rejected 6)"
flows_json >"$TMP/flows.json"
check "bulkhead flows works (the two 2^62 made it fail with \"integer overflow\")" flows_json
check "the two largest gaps the schema allows add up exactly (2^41)" \
	test "$(json_get "sum(l['gap'] for l in j['lost'] if l['node'] == 'n1')" <"$TMP/flows.json")" = 2199023255552
check "the valid flow is stored (port 1111, count 5)" \
	test "$(json_get "sum(r['count'] for r in j['flows'] if r['port'] == 1111)" <"$TMP/flows.json")" = 5
check "n1's flow of n2's endpoint db-1 is not stored" \
	test "$(json_get "len([r for r in j['flows'] if r['port'] == 3333])" <"$TMP/flows.json")" = 0
check "a flow dated in the year 9999 is stored at the controller's time" \
	test "$(json_get "[r['last'] <= $(now_ms) for r in j['flows'] if r['port'] == 2222]" <"$TMP/flows.json")" = "[True]"
check "a batch of a clock 8 days behind is not stored" \
	test "$(json_get "len([r for r in j['flows'] if r['port'] == 5555])" <"$TMP/flows.json")" = 0
check "3 batches rejected, counted once each (the one sent twice too)" test "$(dropped n1 rejected batches)" = 3
check "1 record of another node's endpoint (7 packets) counted" test "$(dropped n1 foreign packets)" = 7
check "1 record dated in the future counted" test "$(dropped n1 future records)" = 1
check "the expired batch counted: 1 batch, 4 packets" test "$(dropped n1 expired batches)/$(dropped n1 expired packets)" = 1/4
bh flows >/dev/null 2>"$TMP/warnings"
check "the report warns: rejected batches" grep -q 'node n1: 3 flow batch(es) rejected as malformed' "$TMP/warnings"
check "the report warns: the clock behind" grep -q "node n1: 1 flow record(s) (4 packets) older than the retention not stored (is the node's clock behind?)" "$TMP/warnings"
check "the report warns: the clock ahead" grep -q "node n1: 1 flow record(s) dated in the future" "$TMP/warnings"
check "the report warns: endpoints not the node's" grep -q "node n1: 1 flow record(s) (7 packets) of endpoints the node did not report" "$TMP/warnings"
check "the controller logged the rejections" grep -q 'node n1: flow batch 1000/1 rejected: ' "$TMP/controller.log"

# --- per-node rate and quota (finding 7) ---
ctl_stop
ctl_start --flow-rate 1 # a minute's worth: 60 rows, the batch's key one of them
flows_msg 1 "$(now_ms)" 1 100 1 web3 | fake n3 web3 198.18.0.13
check "--flow-rate 1: 59 of 100 records stored" \
	test "$(flows_json --node n3 | json_get "len(j['flows'])")" = 59
check "... and 41 (41 packets) counted as over the rate" test "$(dropped n3 rate records)/$(dropped n3 rate packets)" = 41/41
bh flows --node n3 >/dev/null 2>"$TMP/warnings"
check "the report warns: over the rate limit" grep -q 'node n3: 41 flow record(s) (41 packets) over its rate limit not stored' "$TMP/warnings"
ctl_stop
ctl_start --flow-quota 50
flows_msg 1 "$(now_ms)" 1 100 1 web4 | fake n4 web4 198.18.0.14
check "--flow-quota 50: 50 of 100 records stored" test "$(flows_json --node n4 | json_get "len(j['flows'])")" = 50
ctl_stop
ctl_start --flow-quota 50
flows_msg 2 "$(now_ms)" 1001 10 1 web4 | fake n4 web4 198.18.0.14
check "after a restart the quota still holds: 0 of 10 more stored" \
	test "$(flows_json --node n4 | json_get "len(j['flows'])")" = 50
check "... 60 records over the quota counted" test "$(dropped n4 quota records)" = 60

# --- a flow query cannot hold the controller's loop (finding 7) ---
ctl_stop
ctl_start --flow-query-ms 1
# (in batches of 3,750 flows: what an agent sends is at most 4,096 a batch)
for s in 1 2 3 4 5 6 7 8; do flows_msg "$s" "$(now_ms)" $((1 + (s - 1) * 3750)) 3750 1 web5; done | fake n5 web5 198.18.0.15
bh flows --limit 5 >/dev/null 2>"$TMP/cut.err"
check "--flow-query-ms 1 over 30,000 rows: bulkhead flows fails (exit 1)" test $? -eq 1
check "... and says the query was stopped and what to do" \
	grep -q 'reading flows: the query was stopped after 1 ms, .*narrow it' "$TMP/cut.err"
check "the controller goes on answering" bh status
ctl_stop
ctl_start --flow-query-ms 60000
check "with a longer limit the same query answers" test "$(bh flows --limit 5 --json | json_get "len(j['flows'])")" = 5

# --- rejected spool lines: quarantined, and the next batch arrives (finding 10) ---
mkdir -p "$TMP/state-nq"
/usr/bin/python3 - "$TMP/state-nq/flows.spool" "$(now_ms)" <<'PY'
import json, sys
path, now = sys.argv[1], int(sys.argv[2])
def batch(seq, direction, port):
    return {"epoch": 1000, "seq": seq, "start": now - 1000, "end": now, "lost": [], "hits": [],
            "flows": [{"endpoint": "web1", "dir": direction, "src": "198.18.0.1", "dst": "198.18.0.11", "proto": "udp",
                       "port": port, "verdict": "deny", "policy": None, "rule": "default-deny", "count": 3,
                       "first": now, "last": now}]}
with open(path, "w") as f:
    for seq in range(1, 21):
        f.write(json.dumps(batch(seq, "sideways", 7000 + seq)) + "\n")
    f.write(json.dumps(batch(21, "ingress", 4444)) + "\n")
PY
cat >"$TMP/nq.json" <<'JSON'
{"node": "nq", "endpoints": [{"name": "web1", "labels": {"app": "web"}, "addresses": ["198.18.0.11"]}]}
JSON
"$AGENT" --controller "$EP" --insecure --node nq --inventory "$TMP/nq.json" --state-dir "$TMP/state-nq" \
	--dataplane null --heartbeat-ms 200 >>"$TMP/agent-nq.log" 2>&1 &
AGENT_NQ=$!
WORLD_PIDS+=("$AGENT_NQ")
arrived() { [ "$(flows_json --node nq | json_get "sum(r['count'] for r in j['flows'] if r['port'] == 4444)")" = 3 ]; }
check "the batch after 20 rejected ones (more than the 16 in-flight slots) arrives" wait_for 20 arrived
quarantined() { [ "$(wc -l <"$TMP/state-nq/flows.quarantine" 2>/dev/null)" = 20 ]; }
# (Sent again after 5 s, those its send queue dropped while it connected.)
check "the 20 rejected batches are kept in the agent's flows.quarantine" wait_for 20 quarantined
check "... each with the controller's reason" \
	test "$(grep -c '"reason":"flows\[0\]: \\"dir\\" must be \\"ingress\\" or \\"egress\\""' "$TMP/state-nq/flows.quarantine")" = 20
status_quarantined() { [ "$(json_get "j['flows']['quarantined'], j['flows']['quarantined_packets']" <"$TMP/state-nq/status.json")" = "(20, 60)" ]; }
check "status.json counts them as lost: 20 batches, 60 packets" wait_for 5 status_quarantined
check "the agent logged them" grep -q 'flow batch 1000/1 rejected (flows\[0\]: "dir" must be "ingress" or "egress"): kept in' "$TMP/agent-nq.log"
check "the old flows.spool was taken over (it is gone)" test ! -e "$TMP/state-nq/flows.spool"
check "none is left in the spool" wait_for 5 bash -c "[ -z \"\$(ls '$TMP/state-nq/flows.d')\" ]"
check "the controller counted 20 rejected batches of nq" test "$(dropped nq rejected batches)" = 20
# Stopped before the directory goes: a clean exit writes its state.
kill "$AGENT_NQ"
wait "$AGENT_NQ" 2>/dev/null
ctl_stop

check "no crash or sanitizer report in the daemons' logs" \
	bash -c "! grep -qE 'AddressSanitizer|runtime error|Segmentation' '$TMP'/*.log"
[ "$failed" -eq 0 ] || { for f in "$TMP"/*.log; do echo "--- $f"; tail -30 "$f"; done; }
finish
