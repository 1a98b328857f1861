#!/bin/bash
# peer: the controller against what a node sends it, over --insecure on
# loopback, with a fake agent (fake_agent.py) beside real ones:
# - terminal escapes and newlines in endpoint names, errors, versions and
#   node names reach neither `bulkhead status`/`endpoints` nor the log raw;
#   results for endpoints a node never reported are ignored, long errors cut;
# - --max-nodes bounds the nodes HELLOs make known; node names have one
#   syntax in the CLI, the controller and the agent;
# - `bulkhead nodes forget` drops a node, its endpoints (they leave the other
#   nodes' bundles) and what the store keeps; a connected one only with --force;
#   until then a node once seen is known (also after a restart): `status
#   --wait` waits for it and fails naming it while it is down;
# - status never calls a node in sync when there is no policy;
# - named ports the agents report reach the bundles that table them, a
#   renumbering as a delta, and the store keeps them across a restart;
# - many large messages from one peer: the controller's peak memory stays
#   bounded and a real agent stays up.
# Usage: peer.sh [BUILD_DIR]
set -u
. "$(dirname "$0")/world.bash"
BUILD=${1:-$LIB_ROOT/build}
CLI=$BUILD/cli/bulkhead AGENT=$BUILD/agent/bulkhead-agent CONTROLLER=$BUILD/controller/bulkhead-controller
FAKE="$PYTHON $LIB_ROOT/tests/integration/fake_agent.py"
ESC=$'\x1b'

world_init peer || exit 1
PORT=$((20000 + $$ % 20000))
EP=tcp://127.0.0.1:$PORT
export BULKHEAD_ADMIN=ipc://$TMP/run/admin.sock
# An answer takes milliseconds; no answer should not stall the waits for long.
export BULKHEAD_ADMIN_TIMEOUT_MS=2000
mkdir -p "$TMP/run"

start() { # STATE_DIR [ARG...]: an --insecure controller, log $TMP/controller.log
	local dir=$1
	shift
	"$CONTROLLER" --listen "$EP" --admin "$BULKHEAD_ADMIN" --state-dir "$TMP/$dir" --insecure "$@" \
		>>"$TMP/controller.log" 2>&1 &
	CONTROLLER_PID=$!
	WORLD_PIDS+=("$CONTROLLER_PID")
	wait_for 10 answers
}
answers() { # the controller runs and answers (quickly: it may have refused its options)
	kill -0 "$CONTROLLER_PID" 2>/dev/null || return 2
	BULKHEAD_ADMIN_TIMEOUT_MS=1000 bh status >/dev/null 2>&1
}
stop() { kill "$CONTROLLER_PID" 2>/dev/null; wait "$CONTROLLER_PID" 2>/dev/null; }
stop_agent() { kill "${AGENT_PID[$1]}" 2>/dev/null; wait "${AGENT_PID[$1]}" 2>/dev/null; }
real_agent() { # NODE HEARTBEAT_MS: --dataplane null, inventory $TMP/NODE.json
	"$AGENT" --controller "$EP" --insecure --node "$1" --inventory "$TMP/$1.json" --state-dir "$TMP/state-$1" \
		--dataplane null --heartbeat-ms "$2" >>"$TMP/agent-$1.log" 2>&1 &
	AGENT_PID[$1]=$!
	WORLD_PIDS+=("$!")
}
status_is() { [ "$(bh status --json 2>/dev/null | json_get "$1")" = "$2" ]; } # EXPR WANT
nodes_are() { [ "$(bh status --json 2>/dev/null | json_get "sorted(n['node'] for n in j['nodes'])")" = "$1" ]; }
up() { status_is "[n['connected'] for n in j['nodes'] if n['node'] == '$1'] == [True]" True; }
down() { status_is "[n['connected'] for n in j['nodes'] if n['node'] == '$1'] == [False]" True; }
no_raw() { ! grep -q "$ESC" "$1" && ! grep -qE "$2" "$1"; } # FILE LINE-START: no ESC, no injected line
converges() { bh status --wait=10 >/dev/null; }
forgets() { bh nodes forget "$1" >/dev/null; }
bundle_has() { grep -q "$2" "$TMP/state-$1/bundle.json" 2>/dev/null; } # NODE TEXT

# endpoints on node "n1" (web) and "n2"/"evil" (db); web accepts db on tcp/80
cat >"$TMP/n1.json" <<'JSON'
{"endpoints": [{"name": "web1", "labels": {"role": "web"}, "addresses": ["198.18.0.11"]}]}
JSON
cat >"$TMP/policy.json" <<'JSON'
{"version": 1, "groups": {"web": {"labels": {"role": "web"}}, "db": {"labels": {"role": "db"}}},
 "policies": [{"name": "web-in", "applies_to": "web", "ingress": [{"from": ["db"], "ports": ["tcp/80"]}]}]}
JSON
db='[{"name": "db1", "netns": null, "labels": {"role": "db"}, "addresses": ["198.18.0.22"]}]'

# ---- status without a policy (issue 10, finding 18) ----
start ctl-nopolicy
real_agent n1 200
check "a node connects to a controller without policy" wait_for 10 up n1
bh status >"$TMP/status-nopolicy.out" 2>&1
check "status: no policy, and the node is not called in sync (IN-SYNC -)" \
	bash -c "grep -q '^no policy applied yet' '$TMP/status-nopolicy.out' && grep -qE '^n1 +up +[0-9.]+s ago +- +- ' '$TMP/status-nopolicy.out'"
stop_agent n1
stop

# ---- hostile strings (finding 9) ----
start ctl-strings --policy "$TMP/policy.json"
$FAKE "$EP" "node$ESC[2J" --until-refused --seconds 5 >"$TMP/fake-name.out" 2>&1
check "a HELLO under a node name with ESC is refused" grep -q 'REFUSED: invalid node name' "$TMP/fake-name.out"
$FAKE "$EP" vers --agent-version $'0.1\x1b]0;pwned\x07\nerror: forged line' --until-refused --seconds 5 \
	>"$TMP/fake-version.out" 2>&1
check "a HELLO whose agent version holds escapes is refused" grep -q 'REFUSED: "agent" must be a version' "$TMP/fake-version.out"
$FAKE "$EP" vers2 --agent-version "$(printf 'v%.0s' {1..80})" --until-refused --seconds 5 >/dev/null 2>&1
check "so is a version of 80 characters" test $? -eq 0
$FAKE "$EP" badeps --seconds 1 \
	--endpoints '[{"name": "web\u001b[2J\nerror: forged endpoint line", "labels": {"app\u001b": "x\ny"}, "addresses": ["198.18.0.99"]}]' \
	>/dev/null 2>&1
check "an endpoint list with escapes in names and labels is rejected (counted)" \
	status_is "j['counters']['endpoint_lists_rejected'] >= 1" True
long=$(printf 'e%.0s' {1..3000})
$FAKE "$EP" evil --endpoints "$db" --seconds 4 --ack-error $'\x1b[2J\x1b[H\nevil: forged error line' \
	--ack-endpoint db1 --ack-endpoint ghost >"$TMP/fake-evil.out" 2>&1 &
FAKE_PID=$!
WORLD_PIDS+=("$FAKE_PID")
check "the fake agent gets its bundle and acknowledges it with errors" wait_for 10 grep -q ACKED "$TMP/fake-evil.out"
check "status holds the node's errors" wait_for 5 status_is "len([n for n in j['nodes'] if n['node'] == 'evil'][0]['errors'])" 2
bh status >"$TMP/status.out" 2>&1
bh endpoints >"$TMP/endpoints.out" 2>&1
bh status --json >"$TMP/status.json" 2>&1
check "status prints the errors escaped" grep -qF 'evil: db1: \x1b[2J\x1b[H\nevil: forged error line' "$TMP/status.out"
check "status has no raw escape and no forged line" no_raw "$TMP/status.out" '^evil: forged'
check "status --json has no raw escape" no_raw "$TMP/status.json" '^evil: forged'
check "endpoints has no raw escape" no_raw "$TMP/endpoints.out" '^error: forged'
check "an ACK result for an endpoint the node never reported is ignored (counted)" \
	status_is "j['counters']['ack_results_ignored'] >= 1 and not any('ghost' in e for n in j['nodes'] for e in n['errors'])" True
wait "$FAKE_PID"
$FAKE "$EP" evil --endpoints "$db" --seconds 3 --ack-error "$long" >"$TMP/fake-long.out" 2>&1
check "an error of 3000 bytes is cut at 1024 (counted)" \
	status_is "j['counters']['agent_errors_cut'] >= 1 and max(len(e) for n in j['nodes'] for e in n['errors']) < 1100" True
check "the controller log has no raw escape and no forged line" no_raw "$TMP/controller.log" '^(error|evil): forged'
check "the log quotes the refused name escaped" grep -qF 'refused HELLO for node "node\x1b[2J"' "$TMP/controller.log"
stop

# ---- node names, --max-nodes, nodes forget (finding 16) ----
start ctl-nodes --policy "$TMP/policy.json" --max-nodes 2
real_agent n1 200
$FAKE "$EP" n2 --endpoints "$db" --seconds 3 >/dev/null 2>&1 &
FAKE_PID=$!
WORLD_PIDS+=("$FAKE_PID")
check "n1 and n2 connect" wait_for 10 up n2
check "n1's bundle admits n2's db1 (198.18.0.22)" wait_for 10 bundle_has n1 198.18.0.22
$FAKE "$EP" n3 --until-refused --seconds 5 >"$TMP/fake-n3.out" 2>&1
check "a third node is refused past --max-nodes 2" grep -q 'REFUSED: .*--max-nodes' "$TMP/fake-n3.out"
check "the refusal is counted" status_is "j['counters']['nodes_refused'] >= 1" True
bh nodes forget n2 >"$TMP/forget.out" 2>&1
check "nodes forget refuses a connected node without --force (exit 1)" test $? -eq 1
check "and says why" grep -q 'is connected.*--force' "$TMP/forget.out"
wait "$FAKE_PID"
check "n2's agent gone: it is shown down" wait_for 5 down n2
bh status --wait=1 >/dev/null 2>"$TMP/wait-n2.err"
check "--insecure: n2, seen, is known: status --wait fails (exit 1) while it is down" test $? -eq 1
check "naming it" grep -q 'not in sync after 1 s: .*n2 (down)' "$TMP/wait-n2.err"
check "nodes forget n2 (down) succeeds" bh nodes forget n2
check "forgotten, it is not waited for: status --wait converges" converges
check "n2 left status" nodes_are "['n1']"
check "n2's endpoints left the listing" bash -c "! '$CLI' endpoints | grep -q db1"
check "n1's bundle no longer admits 198.18.0.22" wait_for 10 bash -c "! grep -q 198.18.0.22 '$TMP/state-n1/bundle.json'"
$FAKE "$EP" n3 --until-refused --seconds 2 >"$TMP/fake-n3b.out" 2>&1
check "with n2 forgotten a new node fits again" test $? -eq 1
bh nodes forget n9 2>/dev/null
check "nodes forget of an unknown node exits 2" test $? -eq 2
bh nodes forget 'bad name' 2>/dev/null
check "nodes forget of an invalid name exits 2" test $? -eq 2
bh endpoints --node "x$ESC[2J" 2>"$TMP/badnode.err"
check "endpoints --node with an invalid name exits 2" test $? -eq 2
check "and quotes it escaped" bash -c "grep -qF 'x\x1b[2J' '$TMP/badnode.err' && ! grep -q '$ESC' '$TMP/badnode.err'"
"$AGENT" --controller "$EP" --insecure --node 'bad/name' --inventory "$TMP/n1.json" --state-dir "$TMP/state-bad" \
	--dataplane null >"$TMP/agent-bad.out" 2>&1
check "bulkhead-agent --node with an invalid name exits 2" test $? -eq 2
stop
start ctl-nodes --policy "$TMP/policy.json" --max-nodes 2
check "after a restart n2 is still forgotten (n1 and n3 are known)" wait_for 10 nodes_are "['n1', 'n3']"
bh status --wait=2 >/dev/null 2>"$TMP/wait-n3.err"
check "n3, seen before the restart, is known until forgotten: status --wait fails naming it" \
	grep -q 'not in sync after 2 s: n3 (down)$' "$TMP/wait-n3.err"
check "nodes forget n3" forgets n3
check "then status --wait converges" converges
check "nodes forget --force drops a connected node" bh nodes forget n1 --force
check "its agent says HELLO again and is back" wait_for 10 up n1
stop_agent n1
stop

# ---- a node that holds a bundle the controller does not have (finding 18) ----
start ctl-empty
real_agent n1 200
check "n1 (holding revision 1 from before) connects to a controller without policy" wait_for 10 up n1
bh status >"$TMP/status-stale.out" 2>&1
check "status: n1 is not in sync, and says what it enforces" \
	bash -c "grep -qE '^n1 +up +[0-9.]+s ago +1 +no ' '$TMP/status-stale.out' && grep -q 'warning: node n1 enforces revision 1' '$TMP/status-stale.out'"
stop_agent n1
stop

# ---- named ports: what agents report reaches the bundles, changes as deltas, kept across a restart (issue 13) ----
cat >"$TMP/policy-np.json" <<'JSON'
{"version": 1, "groups": {"web": {"labels": {"role": "web"}}},
 "policies": [{"name": "cl-out", "applies_to": {"labels": {"role": "client"}},
               "egress": [{"to": ["web"], "ports": ["tcp/http"]}]}]}
JSON
web_at() { printf '[{"name": "web1", "netns": null, "labels": {"role": "web"}, "addresses": ["198.18.0.11"], "ports": {"http": "tcp/%s"}}]' "$1"; }
client='[{"name": "client1", "netns": null, "labels": {"role": "client"}, "addresses": ["198.18.0.12"]}]'
# The LAST message of KIND in FILE, as j; EXPR of it is WANT.
dumped() { [ "$(grep "^$2 " "$1" 2>/dev/null | tail -1 | cut -d' ' -f2- | json_get "$3")" = "$4" ]; } # FILE KIND EXPR WANT
start ctl-np --policy "$TMP/policy-np.json"
$FAKE "$EP" npw --endpoints "$(web_at 8080)" --then-endpoints "$(web_at 8081)" --when-file "$TMP/np-renumber" \
	--ack --seconds 8 >/dev/null 2>&1 &
NPW=$!
WORLD_PIDS+=("$NPW")
check "named ports: the web node is up" wait_for 10 up npw
$FAKE "$EP" npc --endpoints "$client" --ack --dump "$TMP/npc.dump" --seconds 8 >/dev/null 2>&1 &
NPC=$!
WORLD_PIDS+=("$NPC")
check "the client's bundle tables what web1 calls http (HELLO's \"ports\")" wait_for 10 dumped "$TMP/npc.dump" BUNDLE \
	"j['bundle']['named_ports']" "[{'id': 'tcp/http', 'v4': [['198.18.0.11', 8080]], 'v6': []}]"
check "and its rule names the port" dumped "$TMP/npc.dump" BUNDLE \
	"j['bundle']['endpoints'][0]['egress']['rules'][0]['ports']" "['tcp/http']"
touch "$TMP/np-renumber"
check "web1 renumbers http (ENDPOINTS): the client gets a DELTA of the table" wait_for 10 dumped "$TMP/npc.dump" DELTA \
	"j['sets']" "[{'named_port': 'tcp/http', 'v4': {'add': [['198.18.0.11', 8081]], 'remove': [['198.18.0.11', 8080]]}}]"
check "not a new bundle" test "$(grep -c '^BUNDLE ' "$TMP/npc.dump")" = 1
wait "$NPW" "$NPC"
stop
start ctl-np
rm -f "$TMP/npc.dump"
$FAKE "$EP" npc --endpoints "$client" --ack --dump "$TMP/npc.dump" --seconds 3 >/dev/null 2>&1 &
NPC=$!
WORLD_PIDS+=("$NPC")
check "after a restart, with web's node gone, the store kept its ports: 8081" wait_for 10 dumped "$TMP/npc.dump" BUNDLE \
	"j['bundle']['named_ports'][0]['v4']" "[['198.18.0.11', 8081]]"
wait "$NPC"
stop

# ---- many large messages from one peer (finding 8) ----
log_mark=$(wc -l <"$TMP/controller.log")
start ctl-flood --heartbeat-ms 500
real_agent n1 500
check "a real agent is up" wait_for 10 up n1
# 60 messages of 16 MB, each within what an agent may send (16 MiB; 32 MiB
# before flow batches were bounded): before, the controller queued them all
# (1.7 GB with 30 MB each).
$FAKE "$EP" flooder --flood 60 --size 16000000 --seconds 6 >/dev/null 2>&1 &
FAKE_PID=$!
WORLD_PIDS+=("$FAKE_PID")
answered=0 n1_up=0
for _ in 1 2 3 4 5 6 7 8; do
	sleep 0.5
	s=$(BULKHEAD_ADMIN_TIMEOUT_MS=5000 bh status --json 2>/dev/null) && answered=$((answered + 1))
	[ "$(json_get "[n['connected'] for n in j['nodes'] if n['node'] == 'n1'] == [True]" <<<"$s")" = True ] &&
		n1_up=$((n1_up + 1))
done
wait "$FAKE_PID"
hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$CONTROLLER_PID/status")
echo "# controller peak RSS during the flood: $((hwm / 1024)) MiB"
if ldd "$CONTROLLER" | grep -q libasan; then
	echo "# (a sanitizer build: its shadow memory and quarantine make the peak no measure)"
else
	check "the controller's peak RSS stays under 300 MiB (was 1.7 GB)" test "$hwm" -lt $((300 * 1024))
fi
check "status answered throughout the flood" test "$answered" -eq 8
check "and showed the real agent up every time" test "$n1_up" -eq 8
check "the flood's messages were dropped as malformed (counted)" status_is "j['counters']['messages_malformed'] > 0" True
check "the real agent was never marked down" bash -c "! tail -n +$log_mark '$TMP/controller.log' | grep -q 'node n1: silent'"
stop_agent n1
stop

check "no crash or sanitizer report in the daemons' logs" \
	bash -c "! grep -qE 'AddressSanitizer|runtime error|Segmentation' '$TMP'/*.log"
[ "$failed" -eq 0 ] || { for f in "$TMP"/*.log; do echo "--- $f"; tail -30 "$f" | cat -v; done; }
finish
