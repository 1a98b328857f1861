# Shared by the integration tests (source it): a per-run world of network
# namespaces per DESIGN §7, checks that count, and cleanup on any exit.
#
#   world_init NAME            prefix, temp dir, fabric namespace + bridge, traps
#   world_need PROGRAM...      each one is there, or "not ok" and exit
#   world_add_ns N A4/L A6/L   namespace $P-N on the bridge, eth0 with A4/L and A6/L
#   world_add_endpoint N V4 V6 the same with 198.18.0.V4/24 and 2001:db8:1::V6/64
#   world_mld_quiet N...       wait until the namespaces send no more MLD reports
#   world_serve N SPEC...      probe.py listeners in $P-N (tcp:80 udp:53 ...)
#   can NS PROTO ADDR ARG...   probe from $P-NS succeeds (probe.py args)
#   ok/not_ok/check/finish     counting and the closing "N passed, N failed"
#
# A controller and its agents (after world_init):
#   world_daemons BUILD NODE... CLI, AGENT, CONTROLLER, PORT, $BULKHEAD_ADMIN,
#                              bh; CURVE pairs for the controller and each
#                              NODE, allow-listed in $TMP/keys/allowed
#   controller_start [ARG...]  CONTROLLER_PID; log $TMP/controller.log
#   agent_start NODE [KEY]     AGENT_PID[NODE], inventory $TMP/NODE.json, with
#                              KEY's pair (default NODE's) and ${AGENT_ARGS[@]}
#   json_get EXPR              EXPR over the JSON on stdin as j
#   agent_status EXPR [EP]     EXPR over the agent's $STATE/status.json: s the
#                              document, e its endpoints by name (with EP: that
#                              endpoint, and c its counters); fails while not JSON
#   agent_status_is EXPR VALUE [EP]
#   connected_nodes_are LIST   the controller's connected nodes, sorted, are
#                              LIST (a Python list: "['n1', 'n2']")
#
# BULKHEAD_KEEP=1 keeps the temporary directory (logs, state) for a post-mortem.
# Only ever touches namespaces named with the per-run prefix; the host's
# interfaces and firewall are never touched.

LIB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PYTHON=${PYTHON:-$(command -v /usr/bin/python3 python3 | head -1)}
PROBE=$LIB_ROOT/tests/integration/probe.py
PASS_TIMEOUT=${PASS_TIMEOUT:-1.0}
FAIL_TIMEOUT=${FAIL_TIMEOUT:-0.5}
passed=0
failed=0
WORLD_PIDS=()

ok() { passed=$((passed + 1)); echo "ok - $*"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $*"; }
# check NAME COMMAND...: ok when the command succeeds.
check() { local name=$1; shift; if "$@"; then ok "$name"; else not_ok "$name"; fi; }
finish() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; }

world_cleanup() {
	local ns pids pid
	for pid in "${WORLD_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
		case $ns in
		"$P"-*)
			pids=$(ip netns pids "$ns" 2>/dev/null)
			# shellcheck disable=SC2086 # one pid per word
			[ -n "$pids" ] && kill $pids 2>/dev/null
			ip netns del "$ns" 2>/dev/null
			;;
		esac
	done
	if [ -n "${BULKHEAD_KEEP:-}" ]; then echo "# kept $TMP"; else rm -rf "$TMP"; fi
}

# world_init NAME: needs root; sets P (prefix), FAB, TMP.
world_init() {
	if [ "$(id -u)" != 0 ]; then
		echo "not ok - $1 needs root (network namespaces, nftables)"
		echo "0 passed, 1 failed"
		exit 1
	fi
	P=bh$1$$
	FAB=$P-fab
	TMP=$(mktemp -d "/tmp/bulkhead-$1.XXXXXX")
	trap world_cleanup EXIT
	trap 'exit 130' INT TERM
	ip netns add "$FAB" || return 1
	ip -n "$FAB" link set lo up
	ip -n "$FAB" link add br0 type bridge mcast_snooping 0 || return 1
	ip -n "$FAB" link set br0 up
	WORLD_PORTS=0
}

world_need() { # PROGRAM...
	local t
	for t in "$@"; do
		command -v "$t" >/dev/null && continue
		not_ok "prerequisites: $t not found"
		finish
		exit 1
	done
}

world_add_endpoint() { # NAME V4HOST V6HOST
	world_add_ns "$1" "198.18.0.$2/24" "2001:db8:1::$3/64"
}

world_add_ns() { # NAME V4/LEN V6/LEN
	local ns=$P-$1
	WORLD_PORTS=$((WORLD_PORTS + 1))
	ip netns add "$ns" || return 1
	# No duplicate address detection: addresses are usable at once. MLD
	# reports go out when their group is joined, not at random up to a
	# second later (see world_mld_quiet).
	ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
		net.ipv6.conf.default.mldv1_unsolicited_report_interval=0 \
		net.ipv6.conf.default.mldv2_unsolicited_report_interval=0
	ip -n "$ns" link set lo up
	ip -n "$FAB" link add "v$WORLD_PORTS" type veth peer name eth0 netns "$ns" || return 1
	ip -n "$FAB" link set "v$WORLD_PORTS" master br0 up
	ip -n "$ns" addr add "$2" dev eth0 || return 1
	ip -n "$ns" addr add "$3" dev eth0 nodad || return 1
	ip -n "$ns" link set eth0 up
}

# world_mld_quiet NAME...: wait (at most 10 s) until none of the namespaces
# has sent an MLD report for a second. A new interface joins its multicast
# groups with reports for a second or two after it comes up; they are
# ICMPv6 that conntrack leaves untracked, so a table loaded meanwhile judges
# them by its policy rules, and a test counting packets per rule would
# count them too.
world_mld_quiet() {
	local ns sent last="" quiet=0
	for _ in $(seq 50); do
		sent=$(for ns in "$@"; do
			# shellcheck disable=SC2016 # awk's own $1 and $2
			ip netns exec "$P-$ns" awk '$1 == "Icmp6OutMLDv2Reports" {print $2}' /proc/net/snmp6
		done | tr '\n' ' ')
		if [ "$sent" = "$last" ]; then
			quiet=$((quiet + 1))
			[ $quiet -ge 5 ] && return 0
		else
			quiet=0 last=$sent
		fi
		sleep 0.2
	done
	return 1
}

world_serve() { # NAME SPEC...
	local name=$1 ready="$TMP/ready-$1"
	shift
	ip netns exec "$P-$name" "$PYTHON" "$PROBE" serve "$ready" "$@" >/dev/null 2>&1 &
	WORLD_PIDS+=($!)
	for _ in $(seq 50); do [ -e "$ready" ] && return 0; sleep 0.1; done
	return 1
}

# can FROM PROTO ADDR ARGS...: the probe from $P-FROM got its answer.
can() {
	local from=$1 proto=$2
	shift 2
	ip netns exec "$P-$from" "$PYTHON" "$PROBE" "$proto" "$@" "$PASS_TIMEOUT" >/dev/null 2>&1
}
cannot() {
	local from=$1 proto=$2
	shift 2
	! ip netns exec "$P-$from" "$PYTHON" "$PROBE" "$proto" "$@" "$FAIL_TIMEOUT" >/dev/null 2>&1
}

# wait_for SECONDS COMMAND...: polls every 0.1 s until the command succeeds.
wait_for() {
	local limit=$1 i
	shift
	for ((i = 0; i < limit * 10; i++)); do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}

# ---- a controller and its agents, over CURVE on loopback ----

world_daemons() { # BUILD NODE...
	local n
	CLI=$1/cli/bulkhead AGENT=$1/agent/bulkhead-agent CONTROLLER=$1/controller/bulkhead-controller
	shift
	PORT=$((20000 + $$ % 20000))
	export BULKHEAD_ADMIN=ipc://$TMP/run/admin.sock
	mkdir -p "$TMP/run" "$TMP/keys/allowed"
	bh keygen "$TMP/keys/controller" >/dev/null || return 1
	for n in "$@"; do
		bh keygen "$TMP/keys/$n" >/dev/null || return 1
		cp "$TMP/keys/$n/public.key" "$TMP/keys/allowed/$n.key"
	done
}
bh() { "$CLI" "$@"; }

controller_start() { # [ARG...]
	"$CONTROLLER" --listen "tcp://127.0.0.1:$PORT" --admin "$BULKHEAD_ADMIN" --state-dir "$TMP/controller" \
		--keys "$TMP/keys/controller" --agent-keys "$TMP/keys/allowed" --heartbeat-ms 200 "$@" \
		>>"$TMP/controller.log" 2>&1 &
	CONTROLLER_PID=$!
	WORLD_PIDS+=("$CONTROLLER_PID")
}

declare -A AGENT_PID
AGENT_ARGS=()
agent_start() { # NODE [KEY_NODE]
	local node=$1 key=${2:-$1}
	"$AGENT" --controller "tcp://127.0.0.1:$PORT" --node "$node" --inventory "$TMP/$node.json" \
		--state-dir "$TMP/state-$node" --keys "$TMP/keys/$key" \
		--controller-key "$TMP/keys/controller/public.key" --heartbeat-ms 200 "${AGENT_ARGS[@]}" \
		>>"$TMP/agent-$node.log" 2>&1 &
	AGENT_PID[$node]=$!
	WORLD_PIDS+=("$!")
}

json_get() { # EXPR over the JSON on stdin as j
	/usr/bin/python3 -c 'import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1" 2>/dev/null
}

agent_status() { # EXPR [ENDPOINT]
	"$PYTHON" - "$STATE/status.json" "$@" <<'PY'
import json, sys
try:
    s = json.load(open(sys.argv[1]))
except Exception:
    sys.exit(1)
e = {x["name"]: x for x in s["endpoints"]}
c = None
if len(sys.argv) > 3:
    e = e[sys.argv[3]]
    c = e["counters"]
print(eval(sys.argv[2], {"s": s, "e": e, "c": c}))
PY
}
agent_status_is() { [ "$(agent_status "$1" "${@:3}" 2>/dev/null)" = "$2" ]; }
connected_nodes_are() {
	[ "$(bh status --json 2>/dev/null | json_get "sorted(n['node'] for n in j['nodes'] if n['connected'])")" = "$1" ]
}
