#!/usr/bin/env bash
# The verb table (cli/main.c): every verb `bulkhead --help` lists is one
# that runs and has its own `--help`; a usage error prints that verb's
# usage from the same table; an unknown verb is refused with the list.
# Usage: verbs.sh [BULKHEAD_CLI]
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cli=$(realpath "${1:-$root/build/cli/bulkhead}")
pass=0 fail=0
tmp=$(mktemp -d /tmp/bulkhead-verbs.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export BULKHEAD_ADMIN=ipc://$tmp/none/admin.sock BULKHEAD_ADMIN_TIMEOUT_MS=300

report() { # ok|not-ok NAME [DETAIL]
  if [ "$1" = ok ]; then pass=$((pass + 1)); echo "ok - $2"
  else fail=$((fail + 1)); echo "not ok - $2"; [ -n "${3:-}" ] && sed 's/^/    /' <<<"$3"; fi
}
run() { "$cli" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null; }

run --help
rc=$?
[ $rc -eq 0 ] && [ ! -s "$tmp/err" ] && report ok "--help: exit 0, on stdout" || report not-ok "--help" "exit $rc"
# The verb paths: the lower-case words after "bulkhead" on each synopsis line.
mapfile -t paths < <(sed -nE 's/^(usage:|      ) bulkhead (([a-z]+ ?)+)( |$).*/\2/p' "$tmp/out" | sed 's/ $//' | sort -u)
[ ${#paths[@]} -ge 12 ] && report ok "--help lists ${#paths[@]} verbs" || report not-ok "--help lists the verbs" "${paths[*]}"

for p in "${paths[@]}"; do
  # shellcheck disable=SC2086
  run $p --help
  rc=$?
  if [ $rc -eq 0 ] && [ ! -s "$tmp/err" ] && head -1 "$tmp/out" | grep -q "^usage: bulkhead $p " &&
    [ "$(grep -c . "$tmp/out")" -ge 2 ]; then
    report ok "$p --help: its usage and help, exit 0"
  else
    report not-ok "$p --help" "exit $rc; stdout: $(cat "$tmp/out"); stderr: $(cat "$tmp/err")"
  fi
  # Its synopsis in --help is the one its usage errors print.
  want=$(sed -n "/^usage: bulkhead $p /,\$p" "$tmp/out" | sed '/^$/,$d' | sed '1s/^usage: /       /')
  if "$cli" --help | grep -qF -- "$(head -1 <<<"$want")"; then
    report ok "$p: the same synopsis in bulkhead --help"
  else
    report not-ok "$p: the same synopsis in bulkhead --help" "$want"
  fi
done

# A usage error prints the verb's usage from the table, exit 2.
for v in "status extra" "endpoints extra" "flows extra" "policy history extra" "policy show 1 2" \
  "policy rollback" "policy apply" "nodes forget" "keygen" "policy validate" "policy compile" "policy explain" \
  "policy preview"; do
  # shellcheck disable=SC2086
  run $v
  rc=$?
  p=${v% extra}; p=${p% 1 2}
  if [ $rc -eq 2 ] && grep -q "^usage: bulkhead $p " "$tmp/err" && [ ! -s "$tmp/out" ]; then
    report ok "$v: usage error, its usage on stderr, exit 2"
  else
    report not-ok "$v: usage error" "exit $rc; stderr: $(cat "$tmp/err")"
  fi
done

# An option the verb does not take: said, then its usage.
run endpoints --wait
rc=$?
[ $rc -eq 2 ] && [ "$(cat "$tmp/err")" = 'bulkhead: unknown option "--wait"
usage: bulkhead endpoints [--node NODE] [--json]' ] && report ok "an option of another verb is refused" ||
  report not-ok "an option of another verb is refused" "exit $rc; $(cat "$tmp/err")"

# Unknown verbs, and a group without its verb: refused with the whole usage.
for v in "frobnicate" "policy" "policy frobnicate" "nodes"; do
  # shellcheck disable=SC2086
  run $v
  rc=$?
  if [ $rc -eq 2 ] && [ "$(head -1 "$tmp/err")" = "bulkhead: unknown command \"$v\"" ] &&
    grep -q '^usage: bulkhead \[--admin ENDPOINT\] VERB' "$tmp/err"; then
    report ok "\"$v\": unknown command, exit 2"
  else
    report not-ok "\"$v\": unknown command" "exit $rc; $(head -3 "$tmp/err")"
  fi
done
run
rc=$?
[ $rc -eq 2 ] && grep -q '^usage: bulkhead' "$tmp/err" && report ok "no verb: the usage on stderr, exit 2" ||
  report not-ok "no verb" "exit $rc"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
