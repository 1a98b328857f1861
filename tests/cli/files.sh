#!/usr/bin/env bash
# Every file read whole goes through one capped reader (lib/fileio.c): a
# FIFO, a device or a directory named where a file is expected is refused at
# once with a message naming the file (a FIFO used to block the reader
# forever: the CLI, the controller at start or when its allow-list changed,
# the agent's --bundle), a file past its cap is refused unread (the
# inventory's 64 MiB cap was defined and not enforced), an empty file is an
# invalid document. Each command runs under a timeout: a hang fails.
# No root needed. Usage: files.sh [BULKHEAD_CLI] (the daemons beside it in
# the build directory)
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cli=$(realpath "${1:-$root/build/cli/bulkhead}")
build=$(dirname "$(dirname "$cli")")
agent=$build/agent/bulkhead-agent controller=$build/controller/bulkhead-controller
ex=$root/examples/three-tier
inv="--inventory $ex/node-a.json --inventory $ex/node-b.json"
pass=0 fail=0
tmp=$(mktemp -d /tmp/bulkhead-files.XXXXXX)
ctl_pid=
trap '[ -n "$ctl_pid" ] && kill "$ctl_pid" 2>/dev/null; rm -rf "$tmp"' EXIT
# No controller: a file refused must be refused before any connection.
export BULKHEAD_ADMIN=ipc://$tmp/none/admin.sock BULKHEAD_ADMIN_TIMEOUT_MS=300
cd "$tmp" || exit 1

report() { # ok|not-ok NAME [DETAIL]
  if [ "$1" = ok ]; then pass=$((pass + 1)); echo "ok - $2"
  else fail=$((fail + 1)); echo "not ok - $2"; [ -n "${3:-}" ] && sed 's/^/    /' <<<"$3"; fi
}
# expect NAME WANT_EXIT WANT_STDERR_LINE COMMAND...: exit code and one line of stderr, exactly
expect() {
  local name=$1 want=$2 line=$3
  shift 3
  timeout 10 "$@" >out 2>err </dev/null
  local rc=$?
  if [ $rc -eq "$want" ] && grep -qxF -- "$line" err; then
    report ok "$name"
  else
    report not-ok "$name" "exit $rc (want $want; 124: it hung); want on stderr: $line
stderr: $(cat err)"
  fi
}

mkfifo fifo
mkdir dir
: >empty.json
truncate -s $((64 * 1024 * 1024 + 1)) big.json # sparse: refused on its size
not_regular='not a regular file (a FIFO, a device or a socket)'
empty="line 1, column 0: invalid JSON: '[' or '{' expected near end of file"

# --- policy files: validate, compile, explain, apply ---
for verb in validate compile explain apply; do
  case $verb in
  validate | apply) args=() ;;
  compile) args=($inv) ;;
  explain) args=($inv --from 198.18.1.2 --to 198.18.2.4 --proto tcp) ;;
  esac
  expect "policy $verb: a FIFO is refused at once" 2 "fifo: cannot read: $not_regular" \
    "$cli" policy $verb fifo "${args[@]}"
  expect "policy $verb: a device is refused" 2 "/dev/zero: cannot read: $not_regular" \
    "$cli" policy $verb /dev/zero "${args[@]}"
  expect "policy $verb: a directory is refused" 2 "dir: cannot read: Is a directory" \
    "$cli" policy $verb dir "${args[@]}"
  expect "policy $verb: a file past 64 MiB is refused" 2 \
    "big.json: larger than 67108864 bytes (64 MiB), the most a policy document may be" \
    "$cli" policy $verb big.json "${args[@]}"
  expect "policy $verb: an empty file is an invalid document" 2 "empty.json: $empty" \
    "$cli" policy $verb empty.json "${args[@]}"
done

# --- inventory files: compile, explain ---
for verb in compile explain; do
  args=()
  [ $verb = explain ] && args=(--from 198.18.1.2 --to 198.18.2.4 --proto tcp)
  expect "policy $verb --inventory: a FIFO is refused at once" 2 "fifo: cannot read: $not_regular" \
    "$cli" policy $verb "$ex/policy.json" --inventory fifo "${args[@]}"
  expect "policy $verb --inventory: a directory is refused" 2 "dir: cannot read: Is a directory" \
    "$cli" policy $verb "$ex/policy.json" --inventory dir "${args[@]}"
  expect "policy $verb --inventory: a file past 64 MiB is refused (the cap was not enforced)" 2 \
    "big.json: larger than 67108864 bytes (64 MiB), the most an inventory may be" \
    "$cli" policy $verb "$ex/policy.json" --inventory big.json "${args[@]}"
  expect "policy $verb --inventory: an empty file is an invalid document" 2 "empty.json: $empty" \
    "$cli" policy $verb "$ex/policy.json" --inventory empty.json "${args[@]}"
done

# --- the daemons ---
# "${daemon[@]}" COMMAND...: its exit code, its log lines on stderr without time and level
daemon=(bash -c 'set -o pipefail; "$@" 2>&1 >/dev/null | sed -E "s/^[0-9:.]+ [a-z-]+: [a-z]+: //" >&2' _)
expect "agent --bundle: a FIFO is refused at once" 1 "reading fifo: $not_regular" \
  "${daemon[@]}" "$agent" --print-ruleset --bundle fifo --node n1
expect "controller --policy: a FIFO is refused at once" 1 "--policy fifo: $not_regular" \
  "${daemon[@]}" "$controller" --state-dir st --insecure --listen "ipc://$tmp/l.sock" --admin "ipc://$tmp/a.sock" --policy fifo

# The allow-list: a FIFO as NODE.key and as NODE.labels. The controller
# reads them at start and when the directory changes: it must start, say
# why each is refused, and answer.
"$cli" keygen keys >/dev/null
mkdir allow
mkfifo allow/n1.key allow/n2.labels
cp keys/public.key allow/n2.key
"$controller" --state-dir st2 --listen "ipc://$tmp/l2.sock" --admin "ipc://$tmp/a2.sock" --keys keys \
  --agent-keys allow >ctl.log 2>&1 &
ctl_pid=$!
for _ in $(seq 50); do [ -S a2.sock ] && break; sleep 0.1; done
expect "controller --agent-keys: with a FIFO for a key and for label rules, it answers" 0 \
  "" sh -c 'BULKHEAD_ADMIN=ipc://$1/a2.sock BULKHEAD_ADMIN_TIMEOUT_MS=5000 "$2" status >/dev/null && echo >&2' _ "$tmp" "$cli"
grep -qF "agent key allow/n1.key: $not_regular" ctl.log &&
  grep -qF "allow/n2.labels: $not_regular; every endpoint list of node n2 is refused" ctl.log &&
  report ok "controller --agent-keys: the log names the FIFOs" ||
  report not-ok "controller --agent-keys: the log names the FIFOs" "$(cat ctl.log)"
kill "$ctl_pid" 2>/dev/null
wait "$ctl_pid" 2>/dev/null
ctl_pid=

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
