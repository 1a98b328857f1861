#!/bin/bash
# controller: one bulkhead-controller and three agents (three simulated
# nodes, three container namespaces each) over CURVE, with real traffic after
# every step: apply a policy, change it, roll it back, add a container on one
# node and see the other nodes admit it, kill -9 the controller and restart
# it, kill -9 an agent and restart it. `bulkhead status --wait` must converge
# each time, and fail naming the known nodes (the allow-list's) that are
# down, never connected ones too; an invalid policy and an agent speaking
# for another node are refused.
# Usage: controller.sh [BUILD_DIR]
set -u
. "$(dirname "$0")/world.bash"
BUILD=${1:-$LIB_ROOT/build}

world_init ctl || exit 1
world_daemons "$BUILD" n1 n2 n3 || exit 1

# node: endpoint name, host number, role
ENDPOINTS="n1:web1:11:web n1:client1:12:client n1:other1:13:other
n2:web2:21:web n2:db2:22:db n2:other2:23:other
n3:db3:31:db n3:client3:32:client n3:other3:33:other"

for e in $ENDPOINTS; do
	IFS=: read -r _ name h _ <<<"$e"
	world_add_endpoint "$name" "$h" "$h" || exit 1
done
for n in web1 web2; do world_serve "$n" tcp:80 || exit 1; done
for n in db2 db3; do world_serve "$n" tcp:5432 || exit 1; done

inventory() { # NODE [EXTRA "name:host:role"...]
	local node=$1 sep="" e n name h role
	shift
	printf '{"node": "%s", "endpoints": [' "$node"
	for e in $ENDPOINTS "$@"; do
		IFS=: read -r n name h role <<<"$e"
		[ "$n" = "$node" ] || [ "$n" = x ] || continue
		printf '%s\n  {"name": "%s", "netns": "/run/netns/%s-%s", "labels": {"role": "%s"}}' \
			"$sep" "$name" "$P" "$name" "$role"
		sep=,
	done
	printf ']}\n'
}
policy() { # WEB_FROM (JSON list of groups)
	cat <<JSON
{"version": 1,
 "groups": {"web": {"labels": {"role": "web"}}, "db": {"labels": {"role": "db"}},
            "clients": {"labels": {"role": "client"}}, "others": {"labels": {"role": "other"}}},
 "policies": [
  {"name": "web-in", "applies_to": "web", "ingress": [{"from": $1, "ports": ["tcp/80"]}]},
  {"name": "db-in", "applies_to": "db", "ingress": [{"from": ["web"], "ports": ["tcp/5432"]}]}]}
JSON
}

# keys: the controller's pair, one pair per node, the allow-list (world_daemons)
check "keygen made CURVE pairs" test -s "$TMP/keys/n3/secret.key"

converged() { bh status --wait=20 >"$TMP/status.out" 2>&1; }
status_is() { [ "$(bh status --json 2>/dev/null | json_get "$1")" = "$2" ]; } # EXPR WANT
connected() { status_is "sorted(n['node'] for n in j['nodes'] if n['connected'])" "$1"; } # "['n1', ...]"
socket_mode() { [ "$(stat -c %a "$TMP/run/admin.sock" 2>/dev/null)" = "$1" ]; }
web_from_clients() {
	check "$1: client1 (n1) reaches web2 (n2) on tcp/80" can client1 tcp 198.18.0.21 80
	check "$1: client3 (n3) reaches web1 (n1) over IPv6" can client3 tcp 2001:db8:1::11 80
	check "$1: other1 is refused by web2" cannot other1 tcp 198.18.0.21 80
	check "$1: web1 (n1) reaches db3 (n3) on tcp/5432" can web1 tcp 198.18.0.31 5432
	check "$1: client3 is refused by db2" cannot client3 tcp 198.18.0.22 5432
}

for n in n1 n2 n3; do inventory $n >"$TMP/$n.json"; done
controller_start
# Known nodes are the allow-list's: listed, and waited for, before they connect.
agent_start n1
check "n1 connects" wait_for 10 connected "['n1']"
check "status lists every known node, n2 and n3 (never connected) down" \
	status_is "[(n['node'], n['known'], n['connected']) for n in j['nodes']]" \
	"[('n1', True, True), ('n2', True, False), ('n3', True, False)]"
bh status >"$TMP/status-unseen.out" 2>&1
check "and prints them down" grep -qE '^n3 +down +- +- +no +0 +0' "$TMP/status-unseen.out"
bh status --wait=1 >/dev/null 2>"$TMP/wait.err"
check "status --wait fails (exit 1) while n2 and n3 have not connected" test $? -eq 1
check "naming them down" grep -q 'not in sync after 1 s: n2 (down), n3 (down)$' "$TMP/wait.err"
for n in n2 n3; do agent_start $n; done
check "the admin socket is root-only (0600)" wait_for 5 socket_mode 600

# --- an invalid policy is refused, nothing changes ---
policy '["clients", "nobody"]' >"$TMP/bad.json"
bh policy apply "$TMP/bad.json" 2>"$TMP/apply.err"
check "policy apply of an invalid document exits 2" test $? -eq 2
check "and names the error's place" grep -q 'bad.json: /policies/0/ingress/0/from/1: ' "$TMP/apply.err"

# --- revision 1 ---
policy '["clients"]' >"$TMP/p1.json"
check "policy apply prints the new revision" test "$(bh policy apply "$TMP/p1.json" --comment "first")" = "revision 1"
check "status --wait converges on revision 1" converged
check "status shows three nodes up" connected "['n1', 'n2', 'n3']"
web_from_clients "rev 1"

# --- a key added to the allow-list is a known node at once; removed, it is not ---
bh keygen "$TMP/keys/n4" >/dev/null
cp "$TMP/keys/n4/public.key" "$TMP/keys/allowed/n4.key"
check "a node whose key was just added is listed, down" wait_for 5 \
	status_is "[(n['known'], n['connected']) for n in j['nodes'] if n['node'] == 'n4']" "[(True, False)]"
bh status --wait=1 >/dev/null 2>"$TMP/wait-n4.err"
check "status --wait fails naming n4 (never connected) alone" grep -q 'not in sync after 1 s: n4 (down)$' "$TMP/wait-n4.err"
bh nodes forget n4 >/dev/null 2>"$TMP/forget-n4.err"
check "nodes forget n4 exits 2" test $? -eq 2
check "saying it is known by its key" grep -q 'n4 has nothing to forget: it is known while its key is in the agent allow-list' "$TMP/forget-n4.err"
rm "$TMP/keys/allowed/n4.key"
check "its key removed, n4 is no longer listed" wait_for 5 status_is "[n['node'] for n in j['nodes'] if n['node'] == 'n4']" "[]"
check "status --wait converges again" converged

# --- revision 2: others may reach web too ---
policy '["clients", "others"]' >"$TMP/p2.json"
check "a changed policy is revision 2" test "$(bh policy apply "$TMP/p2.json" --comment "open web")" = "revision 2"
check "status --wait converges on revision 2" converged
check "rev 2: other1 reaches web2" can other1 tcp 198.18.0.21 80
check "rev 2: client3 is still refused by db2" cannot client3 tcp 198.18.0.22 5432
check "policy apply of the same document makes no revision" \
	test "$(bh policy apply "$TMP/p2.json")" = "revision 2 (unchanged)"
check "invalid apply left revision 2 in force (history has 2)" \
	test "$(bh policy history --json | json_get 'len(j["revisions"])')" = 2

# --- rollback ---
check "rollback to 1 makes revision 3" test "$(bh policy rollback 1)" = "revision 3 (rollback to 1)"
check "status --wait converges on revision 3" converged
check "rev 3: other1 is refused by web2 again" cannot other1 tcp 198.18.0.21 80
check "policy show 3 is revision 1's document" cmp -s <(bh policy show 3) "$TMP/p1.json"

# --- a container added on n3 is admitted on n1 and n2 ---
world_add_endpoint client4 34 34
inventory n3 "x:client4:34:client" >"$TMP/n3.next" && mv "$TMP/n3.next" "$TMP/n3.json"
check "the new endpoint is listed with its group" \
	wait_for 10 bash -c "'$CLI' endpoints --node n3 --json | grep -q client4"
check "status --wait converges after the inventory change" converged
check "client4 (n3) reaches web1 (n1): n1's sets have it" wait_for 5 can client4 tcp 198.18.0.11 80
check "client4 (n3) reaches web2 (n2) over IPv6" can client4 tcp 2001:db8:1::21 80
check "client4 is refused by db3" cannot client4 tcp 198.18.0.31 5432
check "endpoints shows client4's group" \
	test "$(bh endpoints --json | json_get '[e["groups"] for e in j["endpoints"] if e["name"]=="client4"][0]')" = "['clients']"

# --- kill -9 the controller; rules stay; restart resumes ---
kill -9 "$CONTROLLER_PID"
wait "$CONTROLLER_PID" 2>/dev/null
check "controller down: client1 still reaches web2" can client1 tcp 198.18.0.21 80
check "controller down: other1 still refused" cannot other1 tcp 198.18.0.21 80
controller_start
# No waiting for the agents to connect first: --wait waits for every known node.
check "restarted controller: status --wait converges" converged
check "it resumed revision 3" test "$(bh status --json | json_get 'j["revision"]')" = 3
check "all three nodes had reconnected when it returned" connected "['n1', 'n2', 'n3']"
web_from_clients "after controller restart"

# --- kill -9 an agent; its rules stay; restart from the cache, then resync ---
kill -9 "${AGENT_PID[n2]}"
wait "${AGENT_PID[n2]}" 2>/dev/null
check "agent n2 killed: client1 still reaches web2" can client1 tcp 198.18.0.21 80
check "agent n2 silent: status shows it down" wait_for 5 connected "['n1', 'n3']"
bh status --wait=1 >/dev/null 2>"$TMP/wait-down.err"
check "status --wait fails (exit 1) while a known node is down" test $? -eq 1
check "naming it" grep -q 'not in sync after 1 s: n2 (down)$' "$TMP/wait-down.err"
policy '["clients", "others"]' >"$TMP/p4.json"
bh policy apply "$TMP/p4.json" >/dev/null
agent_start n2
check "agent n2 reconnects" wait_for 10 connected "['n1', 'n2', 'n3']"
check "agent n2 back: status --wait converges on revision 4" converged
check "rev 4 reached the restarted n2: other1 reaches web2" can other1 tcp 198.18.0.21 80
check "rev 4 on n1: other3 reaches web1" can other3 tcp 198.18.0.11 80

# --- an agent presenting n1's key for node n3 is refused ---
inventory n3 >"$TMP/n3-impostor.json"
"$AGENT" --controller "tcp://127.0.0.1:$PORT" --node n3 --inventory "$TMP/n3-impostor.json" \
	--state-dir "$TMP/state-impostor" --keys "$TMP/keys/n1" --controller-key "$TMP/keys/controller/public.key" \
	--dataplane null --heartbeat-ms 200 >>"$TMP/agent-impostor.log" 2>&1 &
IMPOSTOR=$!
WORLD_PIDS+=("$IMPOSTOR")
check "the controller logs the refusal" wait_for 5 grep -q 'refused HELLO for node "n3" from the key of node "n1"' "$TMP/controller.log"
check "the refusal is counted" test "$(bh status --json | json_get 'j["counters"]["agents_refused"] > 0')" = True
kill "$IMPOSTOR"
check "n3 still in sync after the impostor" converged

# --- unknown keys do not even get a session ---
bh keygen "$TMP/keys/stranger" >/dev/null
"$AGENT" --controller "tcp://127.0.0.1:$PORT" --node n9 --inventory "$TMP/n3-impostor.json" \
	--state-dir "$TMP/state-stranger" --keys "$TMP/keys/stranger" --controller-key "$TMP/keys/controller/public.key" \
	--dataplane null --heartbeat-ms 200 >>"$TMP/agent-stranger.log" 2>&1 &
STRANGER=$!
WORLD_PIDS+=("$STRANGER")
check "a key not in the allow-list is refused at the handshake" wait_for 5 grep -q 'refused an agent connection: unknown key' "$TMP/controller.log"
check "and n9 never appears in status" test "$(bh status --json | json_get '"n9" in [n["node"] for n in j["nodes"]]')" = False
kill "$STRANGER"

check "no crash or sanitizer report in the daemons' logs" \
	bash -c "! grep -qE 'AddressSanitizer|runtime error|Segmentation' '$TMP'/*.log"
[ "$failed" -eq 0 ] && { cat "$TMP/status.out"; } || { for f in "$TMP"/*.log; do echo "--- $f"; tail -40 "$f"; done; }
finish
