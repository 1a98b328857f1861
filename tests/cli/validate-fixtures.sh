#!/usr/bin/env bash
# `bulkhead policy validate` on every fixture: invalid ones must exit 2 and
# print exactly their .err file (file, JSON pointer, message); valid ones and
# the examples must exit 0. Usage: validate-fixtures.sh [BULKHEAD_CLI]
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cli=$(realpath "${1:-$root/build/cli/bulkhead}")
pass=0 fail=0

report() { # ok|not-ok NAME [DETAIL]
  if [ "$1" = ok ]; then pass=$((pass + 1)); echo "ok - $2"
  else fail=$((fail + 1)); echo "not ok - $2"; [ -n "${3:-}" ] && sed 's/^/    /' <<<"$3"; fi
}

for f in "$root"/tests/fixtures/policy/invalid/*.json "$root"/tests/fixtures/policy/invalid-semantic/*.json; do
  dir=$(dirname "$f") base=$(basename "$f" .json)
  # Run from the fixture's directory so the file name in messages is stable.
  got=$(cd "$dir" && "$cli" policy validate "$base.json" 2>&1 >/dev/null); rc=$?
  want=$(cat "$dir/$base.err")
  if [ $rc -eq 2 ] && [ "$got" = "$want" ]; then
    report ok "invalid: $base"
  else
    report not-ok "invalid: $base" "exit $rc; got: $got
expected: $want"
  fi
done

for f in "$root"/tests/fixtures/policy/valid/*.json "$root"/examples/*/policy.json; do
  out=$("$cli" policy validate "$f" 2>&1); rc=$?
  name=${f#$root/}
  if [ $rc -eq 0 ]; then report ok "valid: $name"; else report not-ok "valid: $name" "exit $rc: $out"; fi
done

# Usage errors exit 2 too.
"$cli" policy validate >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] && report ok "usage: validate without FILE exits 2" || report not-ok "usage: validate without FILE exits 2" "exit $rc"
"$cli" policy validate /nonexistent/p.json >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] && report ok "missing file exits 2" || report not-ok "missing file exits 2" "exit $rc"
got=$("$cli" policy validate /nonexistent/p.json 2>&1)
[ "$got" = "/nonexistent/p.json: cannot open: No such file or directory" ] && report ok "missing file is named" \
  || report not-ok "missing file is named" "$got"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
