#!/bin/bash
# drift-overflow: an endpoint whose table is big enough that replacing it
# used to overflow the agent's own nftables event socket (8,000 rules: more
# events than its 4 MiB buffer holds). The agent replaces the table once and
# stays quiet: it does not listen to its own commits. Events lost to someone
# else's flood lead to reading the table back, not to a blind rewrite: left
# alone when it is intact, put back (and counted) when the same flood also
# tampered with it. Real packets check that the table is in force.
# Usage: drift-overflow.sh [BUILD_DIR]
set -u
. "$(dirname "$0")/world.bash"
BUILD=${1:-$LIB_ROOT/build}
CLI=$BUILD/cli/bulkhead
AGENT=$BUILD/agent/bulkhead-agent
RULES=${RULES:-8000}
FLOOD=${FLOOD:-200000} # elements of the foreign table that floods the events

world_init driftov || exit 1
STATE=$TMP/state
# status.json of the one endpoint, big (e; c its counters)
status() { agent_status "$1" big; }
status_is() { agent_status_is "$1" "$2" big; }
LOG=$TMP/agent.log
world_add_endpoint big 10 10 || exit 1
world_add_endpoint cl 11 11 || exit 1
world_serve big tcp:80 || { not_ok "listener in big"; finish; exit 1; }

# big admits tcp/1000.. from anyone, RULES rules; tcp/80 falls to its
# default deny.
"$PYTHON" - "$TMP" "$P" "$RULES" "$FLOOD" <<'EOF' || { not_ok "generating the policy"; finish; exit 1; }
import json, sys
tmp, prefix, n, flood = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rules = [{"action": "deny" if i % 5 == 0 else "allow", "ports": ["tcp/%d" % (1000 + i)]} for i in range(n)]
json.dump({"version": 1, "groups": {}, "policies": [
    {"name": "big", "applies_to": {"labels": {"app": "big"}}, "ingress": rules}]}, open(tmp + "/policy.json", "w"))
json.dump({"node": "n1", "endpoints": [{"name": "big", "netns": "/run/netns/%s-big" % prefix,
    "labels": {"app": "big"}, "addresses": ["198.18.0.10", "2001:db8:1::10"]}]}, open(tmp + "/inventory.json", "w"))
with open(tmp + "/flood.nft", "w") as f:
    f.write("table ip flood {\n set s {\n  type ipv4_addr\n  elements = {\n")
    f.write(",\n".join("10.%d.%d.%d" % (i >> 16 & 255, i >> 8 & 255, i & 255) for i in range(flood)))
    f.write("\n  }\n }\n}\n")
EOF
"$CLI" policy compile "$TMP/policy.json" --inventory "$TMP/inventory.json" --node n1 >"$TMP/bundle.json" ||
	{ not_ok "compiling the policy"; finish; exit 1; }

first_rule_is_ours() { # a bare "accept" put first is not
	ip netns exec "$P-big" nft list chain inet bulkhead ingress | sed -n 4p | grep -q 'comment "established"'
}
# flood [EXTRA]: someone loads a big table of their own in big's namespace,
# with EXTRA in the same transaction, while the agent is stopped: the
# kernel drops the events its socket has no room for.
flood() {
	local pid=$1 extra=${2:-}
	ip netns exec "$P-big" nft delete table ip flood 2>/dev/null
	sleep 0.5 # the agent takes that in while it runs
	kill -STOP "$pid"
	{ cat "$TMP/flood.nft"; [ -n "$extra" ] && echo "$extra"; } >"$TMP/flood-now.nft"
	ip netns exec "$P-big" nft -f "$TMP/flood-now.nft"
	local rc=$?
	if [ -n "$extra" ]; then # the tampering matters: it lets cl in
		check "while the agent is stopped, the foreign rule lets cl in" can cl tcp 198.18.0.10 80
	fi
	kill -CONT "$pid"
	return $rc
}

# An earlier run left the table in place: replacing it deletes and adds
# every rule, twice the events of a first load.
"$AGENT" --node n1 --inventory "$TMP/inventory.json" --bundle "$TMP/bundle.json" --once >>"$LOG" 2>&1
check "the table of $RULES rules loads (--once)" test $? -eq 0
"$AGENT" --node n1 --inventory "$TMP/inventory.json" --bundle "$TMP/bundle.json" --state-dir "$STATE" \
	>>"$LOG" 2>&1 &
AGENT_PID=$!
WORLD_PIDS+=("$AGENT_PID")
check "the daemon replaces it" wait_for 30 status_is 'c["full_updates"] >= 1' True
sleep 5 # what the agent does next, left to happen
check "over 5 s it replaced the table once, not again and again ($(status 'c' 2>/dev/null))" \
	status_is 'c["full_updates"]' 1
check "its own replace is not taken for tampering" status_is 'c["tampering"]' 0
check "and lost no events of it" status_is 'c["events_lost"]' 0
check "cl is refused on tcp/80 (default deny)" cannot cl tcp 198.18.0.10 80
check "the table says which bundle it holds" \
	bash -c "ip netns exec '$P-big' nft list set inet bulkhead bundle | grep -q 'revision 0 bundle $(status 's["bundle"]')'"

# --- someone else's flood, our table untouched: read back, left alone ---
flood "$AGENT_PID" || not_ok "loading the flood table"
check "a flood of someone else's events is lost and noticed" wait_for 30 status_is 'c["events_lost"] >= 1' True
check "the table is read back" wait_for 30 status_is 'c["checks"] >= 1' True
check "and, as it is intact, not replaced" status_is 'c["full_updates"]' 1
check "nor counted as tampering" status_is 'c["tampering"]' 0
check "the log says it was read back" grep -q 'events lost; its table was read back and is as the agent left it' "$LOG"

# --- the same flood, and a foreign accept rule in our table with it ---
flood "$AGENT_PID" "insert rule inet bulkhead ingress accept" || not_ok "loading the flood and the rule"
check "lost events again" wait_for 30 status_is 'c["events_lost"] >= 2' True
check "the foreign rule is found and taken out" wait_for 30 first_rule_is_ours
check "that is tampering, counted once" wait_for 10 status_is 'c["tampering"]' 1
check "and the table replaced once more" status_is 'c["full_updates"]' 2
check "the log names what differed" grep -q 'read back: rules differ' "$LOG"
check "cl is refused on tcp/80 again" cannot cl tcp 198.18.0.10 80
check "the agent is still running" kill -0 "$AGENT_PID"
check "no crash or sanitizer report in the agent's log" bash -c "! grep -qE 'AddressSanitizer|runtime error|Segmentation' '$LOG'"

[ "$failed" -eq 0 ] || { echo "--- agent log (last 40 lines)"; tail -40 "$LOG"; }
finish
