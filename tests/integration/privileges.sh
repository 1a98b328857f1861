#!/bin/bash
# privileges: what the running daemons keep of root's power (issue 11,
# item 5), read from /proc/PID/status of every thread, and that they still
# do their job with it.
#   - the controller, --user nobody: nobody's uid, gid and groups, no
#     capability in any set, no new privileges; it makes its state and
#     admin directories for nobody, and refuses to start (naming the path,
#     its owner and mode) with an admin directory, a key or a database it
#     could not use as nobody; no such user, or root, is refused too;
#   - the agent: uid 0, exactly CAP_NET_ADMIN and CAP_SYS_ADMIN (effective,
#     permitted, bounding), nothing inheritable or ambient, no new
#     privileges, one thread and no TCP socket (no ZeroMQ in it); it applies
#     a policy in a namespace and reports the flow it denies, which the
#     controller stores and serves (status, flows);
#   - its session child (privilege separation): nobody's uid, gid and
#     groups, no capability in any set, no new privileges, in every one of
#     its (ZeroMQ) threads, and the only process of the agent's with a
#     connection to the controller; the spawner that makes it: uid 0 with
#     CAP_SETUID, CAP_SETGID, CAP_SETPCAP and CAP_KILL only; the spool files
#     are nobody's, the state directory's others root's; a killed child is
#     started again while the rules stay, and the policy and flows go on,
#     as they do across a controller restart and an agent restart (which
#     takes the child and the spawner with it); no such --session-user is
#     refused at start;
#   - /proc/PID/ns/net of a process with every capability needs
#     CAP_SYS_PTRACE: refused without it, saying so; --cap-ptrace keeps it
#     (and only it) more, and the endpoint gets its table.
# Usage: privileges.sh [BUILD_DIR]
set -u
. "$(dirname "$0")/world.bash"
BUILD=${1:-$LIB_ROOT/build}

world_init priv || exit 1
world_daemons "$BUILD" n1 || exit 1
NOBODY=$(id -u nobody)
chmod 711 "$TMP" # nobody passes through to the names it is given
world_add_endpoint srv 11 11 || exit 1
world_add_endpoint cli 12 12 || exit 1
world_add_endpoint pod 13 13 || exit 1
world_serve srv tcp:80 udp:53 || exit 1
# A process with every capability in pod: /proc/PID/ns/net is its namespace.
ip netns exec "$P-pod" sleep 600 &
SLEEPER=$!
WORLD_PIDS+=("$SLEEPER")

ep() { printf '{"name": "%s", "netns": "%s", "labels": {"app": "%s"}}' "$1" "$2" "$1"; }
inventory() { # [POD_NETNS]
	local pod=""
	[ -n "${1:-}" ] && pod=", $(ep pod "$1")"
	printf '{"node": "n1", "endpoints": [%s, %s%s]}\n' "$(ep srv "/run/netns/$P-srv")" \
		"$(ep cli "/run/netns/$P-cli")" "$pod" >"$TMP/n1.next" && mv "$TMP/n1.next" "$TMP/n1.json"
}
inventory
cat >"$TMP/policy.json" <<'JSON'
{"version": 1,
 "policies": [{"name": "srv-in", "applies_to": {"labels": {"app": "srv"}},
               "ingress": [{"from": [{"labels": {"app": "cli"}}], "ports": ["tcp/80"]}]},
              {"name": "pod-in", "applies_to": {"labels": {"app": "pod"}}, "ingress": []}]}
JSON

# field PID NAME: that line of /proc/PID/status, tabs as spaces.
field() { awk -v f="$2:" '$1 == f {$1 = ""; sub(/^ /, ""); print}' "/proc/$1/status"; }
# every_thread PID NAME VALUE [THREADS]: the line reads VALUE in every
# thread of PID (capabilities are per thread: ZeroMQ's I/O threads must not
# keep more); THREADS: how many there are, default more than one (the
# daemons do run threads: the check saw them).
every_thread() {
	local t n=0
	for t in /proc/"$1"/task/*; do
		[ "$(field "$1/task/${t##*/}" "$2")" = "$3" ] || { echo "# thread ${t##*/}: $2 $(field "$1/task/${t##*/}" "$2"), not $3"; return 1; }
		n=$((n + 1))
	done
	if [ -n "${4:-}" ]; then [ "$n" -eq "$4" ]; else [ "$n" -gt 1 ]; fi
}
mask() { local m=0 c; for c in "$@"; do m=$((m | (1 << c))); done; printf '%016x' "$m"; }
CAP_KILL=5 CAP_SETGID=6 CAP_SETUID=7 CAP_SETPCAP=8 CAP_NET_ADMIN=12 CAP_SYS_PTRACE=19 CAP_SYS_ADMIN=21
NONE=$(mask)

# --- the controller refuses what nobody could not use, and says why ---
# refused NAME PATTERN [ARG...]: exit 1, the error line matches PATTERN.
refused() {
	local name=$1 pattern=$2 log=$TMP/refused.log
	shift 2
	timeout 10 "$CONTROLLER" --listen "tcp://127.0.0.1:$PORT" --admin "$BULKHEAD_ADMIN" --state-dir "$TMP/controller" \
		--keys "$TMP/keys/controller" --agent-keys "$TMP/keys/allowed" "$@" >"$log" 2>&1
	local rc=$?
	check "$name: the controller exits 1" test "$rc" -eq 1
	if grep -qE "error: $pattern" "$log"; then ok "$name: and says why"; else not_ok "$name: and says why"; cat "$log"; fi
	check "$name: no admin socket was made" test ! -S "$TMP/run/admin.sock"
}
U="user nobody \(uid $NOBODY\)"
refused "an admin directory root owns" \
	"--admin $TMP/run: $U cannot write in it: owned by root:root, mode 0755; chown nobody $TMP/run$" --user nobody
check "the missing state directory was made, nobody's and 0700" \
	test "$(stat -c '%U %a' "$TMP/controller")" = "nobody 700"
rmdir "$TMP/run"
chown nobody "$TMP/keys/controller"
refused "a secret key root owns" \
	"--keys $TMP/keys/controller: secret.key: $U cannot read it: owned by root:root, mode 0600; chown -R nobody $TMP/keys/controller$" \
	--user nobody
check "the missing admin directory was made, nobody's and 0700" test "$(stat -c '%U %a' "$TMP/run")" = "nobody 700"
chown -R nobody "$TMP/keys/controller"
touch "$TMP/controller/controller.db"
refused "a database root owns (left by a run as root)" \
	"--state-dir $TMP/controller: controller.db: $U cannot write it: owned by root:root, mode 0644; chown -R nobody $TMP/controller$" \
	--user nobody
rm "$TMP/controller/controller.db"
refused "no such user" "--user bulkhead-no-such-user-$$: no such user$" --user "bulkhead-no-such-user-$$"
refused "root" "--user root: that is root; name an unprivileged user" --user root

# --- running: the controller as nobody, the agent with two capabilities ---
controller_start --user nobody
agent_start n1
connected() { [ "$(bh status --json 2>/dev/null | json_get "[n['connected'] for n in j['nodes']]")" = "[True]" ]; }
running() { kill -0 "$CONTROLLER_PID" 2>/dev/null && [ -S "$TMP/run/admin.sock" ]; }
if wait_for 10 running && wait_for 20 connected; then
	ok "the controller runs as nobody and the agent connects to it"
else
	not_ok "the controller runs as nobody and the agent connects to it"
	cat "$TMP/controller.log"
	finish
	exit 1
fi

C=$CONTROLLER_PID A=${AGENT_PID[n1]}
check "controller: uid nobody (real, effective, saved, fs)" test "$(field $C Uid)" = "$NOBODY $NOBODY $NOBODY $NOBODY"
G=$(id -g nobody)
check "controller: gid nobody's" test "$(field $C Gid)" = "$G $G $G $G"
check "controller: nobody's groups only" test "$(field $C Groups | xargs)" = "$(id -G nobody)"
for set in CapEff CapPrm CapBnd CapInh CapAmb; do
	check "controller: $set empty, in every thread" every_thread $C $set "$NONE"
done
check "controller: no new privileges, in every thread" every_thread $C NoNewPrivs 1
check "agent: uid 0" test "$(field $A Uid)" = "0 0 0 0"
TWO=$(mask $CAP_NET_ADMIN $CAP_SYS_ADMIN)
# The agent itself has no ZeroMQ: one thread.
for set in CapEff CapPrm CapBnd; do
	check "agent: $set exactly CAP_NET_ADMIN and CAP_SYS_ADMIN, in its one thread" every_thread $A $set "$TWO" 1
done
for set in CapInh CapAmb; do check "agent: $set empty" every_thread $A $set "$NONE" 1; done
check "agent: no new privileges" every_thread $A NoNewPrivs 1 1

# --- the session child and the spawner (privilege separation) ---
# session_pid: the child's pid, as the agent's status.json shows it.
session_pid() { json_get "j['controller']['session']['pid']" <"$TMP/state-n1/status.json"; }
ppid() { field "$1" PPid; }
alive() { [ -d "/proc/$1" ] && [ "$(field "$1" State | cut -c1)" != Z ]; }
child_up() { local c; c=$(session_pid) && [ "$c" != None ] && alive "$c" && [ "$(ppid "$(ppid "$c")")" = "$1" ]; }
check "the agent's status names its session child, the grandchild of the agent" wait_for 10 child_up $A
S=$(session_pid)
SP=$(ppid "$S")
check "child: uid nobody (real, effective, saved, fs)" test "$(field $S Uid)" = "$NOBODY $NOBODY $NOBODY $NOBODY"
check "child: gid nobody's" test "$(field $S Gid)" = "$G $G $G $G"
check "child: nobody's groups only" test "$(field $S Groups | xargs)" = "$(id -G nobody)"
for set in CapEff CapPrm CapBnd CapInh CapAmb; do
	check "child: $set empty, in every thread" every_thread $S $set "$NONE"
done
check "child: no new privileges, in every thread" every_thread $S NoNewPrivs 1
check "spawner: uid 0" test "$(field $SP Uid)" = "0 0 0 0"
FOUR=$(mask $CAP_KILL $CAP_SETGID $CAP_SETUID $CAP_SETPCAP)
for set in CapEff CapPrm CapBnd; do
	check "spawner: $set exactly CAP_SETUID, CAP_SETGID, CAP_SETPCAP, CAP_KILL" every_thread $SP $set "$FOUR" 1
done
check "spawner: no new privileges" every_thread $SP NoNewPrivs 1 1
# to_controller PID: PID holds an established TCP connection to the controller.
to_controller() { ss -Htnp state established "( dport = :$PORT )" | grep -q "pid=$1,"; }
check "the child holds the connection to the controller" wait_for 10 to_controller $S
check "the agent holds no TCP socket to it" bash -c "! ss -Htnp state established '( dport = :$PORT )' | grep -q 'pid=$A,'"
check "nor any TCP socket at all" bash -c "! ss -Htanp | grep -q 'pid=$A,'"
check "nor does the spawner" bash -c "! ss -Htanp | grep -q 'pid=$SP,'"
owner() { stat -c %U "$TMP/state-n1/$1"; }
check "the spool (flows.d, flows.quarantine) is nobody's" test "$(owner flows.d) $(owner flows.quarantine)" = "nobody nobody"

# --- and they do their job ---
check "policy applied (as nobody, the controller stores it)" test "$(bh policy apply "$TMP/policy.json")" = "revision 1"
check "status --wait: the agent applied it" bh status --wait=20 >/dev/null
has_table() { ip netns exec "$P-$1" nft list table inet bulkhead >/dev/null 2>&1; }
check "srv has its table" has_table srv
check "cli reaches srv on tcp/80" wait_for 5 can cli tcp 198.18.0.11 80
check "not on udp/53" cannot cli udp 198.18.0.11 53
denied() { [ "$(bh flows --json | json_get "len([r for r in j['flows'] if r['dst'] == '198.18.0.11' and r['port'] == 53 and r['verdict'] == 'deny' and r['dst_endpoint'] == 'n1/srv'])")" = 1 ]; }
check "the denied flow is reported, stored and served (bulkhead flows)" wait_for 20 denied
check "status shows n1 connected and in sync" test "$(bh status --json | json_get "[(n['node'], n['connected'], n['up_to_date']) for n in j['nodes']]")" = "[('n1', True, True)]"
check "the controller's files are nobody's" \
	test "$(find "$TMP/controller" "$TMP/run" ! -user nobody | wc -l)" = 0
check "the agent's cache and status.json stay root's" \
	test "$(owner bundle.json) $(owner revision) $(owner status.json)" = "root root root"

# flows_on PORT: the controller serves denied udp packets to srv:PORT.
flows_on() { [ "$(bh flows --json | json_get "sum(r['count'] for r in j['flows'] if r['dst'] == '198.18.0.11' and r['port'] == $1) > 0")" = True ]; }
# deny_udp PORT: one denied datagram from cli to srv:PORT.
deny_udp() { cannot cli udp 198.18.0.11 "$1"; }

# --- a killed session child is started again; the rules stay meanwhile ---
kill -9 "$S"
check "the child killed: cli still reaches srv on tcp/80" can cli tcp 198.18.0.11 80
check "and still not on udp/53" deny_udp 53
# new_child OLD: another child than OLD runs under the agent.
new_child() { local c; c=$(session_pid) && [ "$c" != None ] && [ "$c" != "$1" ] && child_up $A; }
check "a new session child runs (the backoff's first wait)" wait_for 10 new_child "$S"
check "status counts the death" test "$(json_get "j['controller']['session']['deaths']" <"$TMP/state-n1/status.json")" = 1
S2=$(session_pid)
check "the new child is nobody's too, with no capability" \
	bash -c "[ '$(field "$S2" Uid)' = '$NOBODY $NOBODY $NOBODY $NOBODY' ] && [ '$(field "$S2" CapBnd)' = '$NONE' ]"
check "the agent is the same process" test "${AGENT_PID[n1]}" = "$A"
cat >"$TMP/policy2.json" <<'JSON'
{"version": 1,
 "policies": [{"name": "srv-in", "applies_to": {"labels": {"app": "srv"}},
               "ingress": [{"from": [{"labels": {"app": "cli"}}], "ports": ["tcp/80", "udp/53"]}]},
              {"name": "pod-in", "applies_to": {"labels": {"app": "pod"}}, "ingress": []}]}
JSON
check "a policy applied after the child's restart" test "$(bh policy apply "$TMP/policy2.json")" = "revision 2"
check "status --wait: the agent applied it" bh status --wait=20 >/dev/null
check "cli now reaches srv on udp/53" wait_for 5 can cli udp 198.18.0.11 53
deny_udp 5353
check "a flow denied after the child's restart is reported" wait_for 20 flows_on 5353

# --- the controller restarted: the child reconnects ---
kill -9 "$CONTROLLER_PID"
wait "$CONTROLLER_PID" 2>/dev/null
check "controller down: cli still reaches srv on tcp/80" can cli tcp 198.18.0.11 80
controller_start --user nobody
check "the agent reconnects to the restarted controller" wait_for 20 connected
deny_udp 5354
check "flows go on after the controller's restart" wait_for 20 flows_on 5354
check "the same session child throughout" test "$(session_pid)" = "$S2"

# --- /proc/PID/ns/net of a process with every capability ---
inventory "/proc/$SLEEPER/ns/net"
PTRACE_ERR="endpoint pod: opening namespace /proc/$SLEEPER/ns/net: Permission denied (a process's namespace by /proc needs CAP_SYS_PTRACE"
check "without CAP_SYS_PTRACE the agent cannot open it, and says what it needs" \
	wait_for 10 grep -qF "$PTRACE_ERR" "$TMP/agent-n1.log"
check "pod has no table" bash -c "! ip netns exec '$P-pod' nft list table inet bulkhead >/dev/null 2>&1"
kill "$A" && wait "$A" 2>/dev/null
check "the agent stopped: its session child and spawner are gone with it" \
	bash -c "! [ -d /proc/$S2 ] && ! [ -d /proc/$SP ]"
AGENT_ARGS=(--cap-ptrace)
agent_start n1
A=${AGENT_PID[n1]}
check "--cap-ptrace: pod gets its table" wait_for 20 has_table pod
check "the restarted agent has a new session child" wait_for 10 new_child "$S2"
deny_udp 5355
check "flows go on after the agent's restart" wait_for 20 flows_on 5355
THREE=$(mask $CAP_NET_ADMIN $CAP_SYS_PTRACE $CAP_SYS_ADMIN)
for set in CapEff CapPrm CapBnd; do
	check "--cap-ptrace: $set is the two and CAP_SYS_PTRACE" every_thread $A $set "$THREE" 1
done
check "--cap-ptrace: no new privileges" every_thread $A NoNewPrivs 1 1

# --- no such session user: refused at start, saying so ---
timeout 10 "$AGENT" --controller "tcp://127.0.0.1:$PORT" --node n1 --inventory "$TMP/n1.json" \
	--state-dir "$TMP/state-x" --insecure --session-user "bulkhead-no-such-user-$$" >"$TMP/agent-x.log" 2>&1
check "an agent with no such --session-user exits 1" test $? -eq 1
check "and says why" grep -q "error: --session-user bulkhead-no-such-user-$$: no such user" "$TMP/agent-x.log"

check "no crash or sanitizer report in the daemons' logs" \
	bash -c "! grep -qE 'AddressSanitizer|LeakSanitizer|runtime error|Segmentation' '$TMP'/controller.log '$TMP'/agent-n1.log"
check "no message of the child refused by the agent" bash -c "! grep -qE 'session child sent|malformed .* from the session child' '$TMP'/agent-n1.log"
finish
