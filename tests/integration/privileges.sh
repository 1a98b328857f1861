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
#     privileges; it applies a policy in a namespace and reports the flow
#     it denies, which the controller stores and serves (status, flows);
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
# every_thread PID NAME VALUE: the line reads VALUE in every thread of PID
# (capabilities are per thread: ZeroMQ's I/O threads must not keep more).
every_thread() {
	local t n=0
	for t in /proc/"$1"/task/*; do
		[ "$(field "$1/task/${t##*/}" "$2")" = "$3" ] || { echo "# thread ${t##*/}: $2 $(field "$1/task/${t##*/}" "$2"), not $3"; return 1; }
		n=$((n + 1))
	done
	[ "$n" -gt 1 ] # the daemons do run threads: the check saw them
}
mask() { local m=0 c; for c in "$@"; do m=$((m | (1 << c))); done; printf '%016x' "$m"; }
CAP_NET_ADMIN=12 CAP_SYS_PTRACE=19 CAP_SYS_ADMIN=21
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
for set in CapEff CapPrm CapBnd; do
	check "agent: $set exactly CAP_NET_ADMIN and CAP_SYS_ADMIN, in every thread" every_thread $A $set "$TWO"
done
for set in CapInh CapAmb; do check "agent: $set empty, in every thread" every_thread $A $set "$NONE"; done
check "agent: no new privileges, in every thread" every_thread $A NoNewPrivs 1

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

# --- /proc/PID/ns/net of a process with every capability ---
inventory "/proc/$SLEEPER/ns/net"
PTRACE_ERR="endpoint pod: opening namespace /proc/$SLEEPER/ns/net: Permission denied (a process's namespace by /proc needs CAP_SYS_PTRACE"
check "without CAP_SYS_PTRACE the agent cannot open it, and says what it needs" \
	wait_for 10 grep -qF "$PTRACE_ERR" "$TMP/agent-n1.log"
check "pod has no table" bash -c "! ip netns exec '$P-pod' nft list table inet bulkhead >/dev/null 2>&1"
kill "$A" && wait "$A" 2>/dev/null
AGENT_ARGS=(--cap-ptrace)
agent_start n1
A=${AGENT_PID[n1]}
check "--cap-ptrace: pod gets its table" wait_for 20 has_table pod
THREE=$(mask $CAP_NET_ADMIN $CAP_SYS_PTRACE $CAP_SYS_ADMIN)
for set in CapEff CapPrm CapBnd; do
	check "--cap-ptrace: $set is the two and CAP_SYS_PTRACE, in every thread" every_thread $A $set "$THREE"
done
check "--cap-ptrace: no new privileges" every_thread $A NoNewPrivs 1

check "no crash or sanitizer report in the daemons' logs" \
	bash -c "! grep -qE 'AddressSanitizer|LeakSanitizer|runtime error|Segmentation' '$TMP'/controller.log '$TMP'/agent-n1.log"
finish
