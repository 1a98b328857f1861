#!/bin/bash
# admin-access: who may use the controller's admin socket (issue 10, item
# 14). The controller refuses to start when the socket's directory (or one
# above it) is another user's, or others may write in it: they could put
# their own socket in its place and be sent every policy. A sticky
# directory like /tmp is fine. A user who may not connect is told
# "permission denied" at once, not "no answer" after a timeout; and
# `status --wait` stops there instead of retrying. The CLI runs as nobody
# (setpriv); directories are chowned to nobody. No agents: --insecure, no
# traffic.
# Usage: admin-access.sh [BUILD_DIR]
set -u
. "$(dirname "$0")/world.bash"
BUILD=${1:-$LIB_ROOT/build}
CONTROLLER=$BUILD/controller/bulkhead-controller

world_init adm || exit 1
PORT=$((20000 + $$ % 20000))
NOBODY=$(id -u nobody)
# A copy of the CLI that nobody can run wherever the build is; $TMP lets
# nobody through to names it knows, but not list it.
chmod 711 "$TMP"
mkdir -m 755 "$TMP/bin" && cp "$BUILD/cli/bulkhead" "$TMP/bin/" || exit 1
CLI=$TMP/bin/bulkhead
as_nobody() { setpriv --reuid="$NOBODY" --regid="$(id -g nobody)" --clear-groups "$@"; }

# controller_refuses NAME DIR: bulkhead-controller exits 1 with the
# admin socket in DIR, saying why (the line with "refused"), no socket made.
controller_refuses() {
	local name=$1 dir=$2 log=$TMP/refused-$1.log
	timeout 10 "$CONTROLLER" --insecure --listen "tcp://127.0.0.1:$PORT" --admin "ipc://$dir/admin.sock" \
		--state-dir "$TMP/state" >"$log" 2>&1
	local rc=$?
	check "$name: the controller refuses to start (exit 1)" test "$rc" -eq 1
	check "$name: and says why" grep -qE "admin endpoint ipc://$dir/admin.sock: refused: .*$3" "$log"
	check "$name: no socket was made" test ! -e "$dir/admin.sock"
	[ "$failed" -eq 0 ] || cat "$log"
}

mkdir -m 700 "$TMP/nobodys" && chown nobody "$TMP/nobodys"
controller_refuses "a directory nobody owns" "$TMP/nobodys" "$TMP/nobodys: owned by uid $NOBODY, not by root or this user"

mkdir -m 770 "$TMP/group-writable"
controller_refuses "a group-writable directory" "$TMP/group-writable" "writable by its group \(mode 0770\) and not sticky"

mkdir -m 755 "$TMP/above" && chown nobody "$TMP/above" && mkdir -m 700 "$TMP/above/run"
controller_refuses "a directory inside one nobody owns" "$TMP/above/run" "$TMP/above: owned by uid $NOBODY"

ln -s "$TMP/above/run" "$TMP/link"
controller_refuses "a link to a directory nobody controls" "$TMP/link" "$TMP/above: owned by uid $NOBODY"

mkdir -m 700 "$TMP/mine" && ln -s "$TMP/mine" "$TMP/nobodys/link"
controller_refuses "a good directory through a link in nobody's" "$TMP/nobodys/link" "$TMP/nobodys: owned by uid $NOBODY"

# Accepted: a sticky world-writable directory (as /tmp), and the usual
# directory the controller makes itself.
mkdir -m 1777 "$TMP/sticky"
for dir in "$TMP/sticky" "$TMP/run"; do
	"$CONTROLLER" --insecure --listen "tcp://127.0.0.1:$PORT" --admin "ipc://$dir/admin.sock" \
		--state-dir "$TMP/state" >>"$TMP/controller.log" 2>&1 &
	CONTROLLER_PID=$!
	WORLD_PIDS+=("$CONTROLLER_PID")
	check "$dir: the controller starts and answers root" wait_for 10 "$CLI" --admin "ipc://$dir/admin.sock" status >/dev/null
	[ "$dir" = "$TMP/run" ] || { kill "$CONTROLLER_PID"; wait "$CONTROLLER_PID"; }
done
check "the directory it made is 0700" test "$(stat -c %a "$TMP/run")" = 700

# nobody may not connect: told so at once. A short timeout makes the old
# "no answer" quick to see, not a condition of the test.
export BULKHEAD_ADMIN=ipc://$TMP/run/admin.sock BULKHEAD_ADMIN_TIMEOUT_MS=1000
as_nobody "$CLI" status >"$TMP/nobody.out" 2>"$TMP/nobody.err"
check "status as nobody exits 1" test $? -eq 1
check "and says permission denied" grep -q "admin endpoint $BULKHEAD_ADMIN: permission denied" "$TMP/nobody.err"
check "not \"no answer\"" bash -c "! grep -q 'no answer' '$TMP/nobody.err'"
as_nobody "$CLI" status --wait=5 >/dev/null 2>"$TMP/nobody-wait.err"
check "status --wait as nobody exits 1" test $? -eq 1
check "after saying permission denied once (no retrying)" test "$(grep -c 'permission denied' "$TMP/nobody-wait.err")" = 1
as_nobody "$CLI" policy apply "$LIB_ROOT/examples/three-tier/policy.json" 2>"$TMP/nobody-apply.err"
check "policy apply as nobody: permission denied" grep -q "permission denied" "$TMP/nobody-apply.err"
check "and nothing was applied" test "$("$CLI" policy history --json | json_get 'len(j["revisions"])')" = 0

# The socket is 0600 in a 0700 directory; with the directory opened up to
# nobody, the socket's own mode still keeps it out.
chmod 711 "$TMP/run"
as_nobody "$CLI" endpoints 2>"$TMP/nobody-sock.err"
check "a reachable 0600 socket: permission denied too" grep -q "permission denied" "$TMP/nobody-sock.err"
chmod 700 "$TMP/run"

# A socket that is not there yet is still waited for (a controller
# starting): that is "no answer", and says there is no socket.
BULKHEAD_ADMIN_TIMEOUT_MS=300 "$CLI" --admin "ipc://$TMP/run/none.sock" status 2>"$TMP/none.err"
check "no socket at the path: no answer, and says there is none" grep -q "no socket there" "$TMP/none.err"
check "root still gets its answers" bash -c "'$CLI' status >/dev/null"

check "no crash or sanitizer report in the controller's logs" \
	bash -c "! grep -qE 'AddressSanitizer|runtime error|Segmentation' '$TMP'/*.log"
finish
