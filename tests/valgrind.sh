#!/usr/bin/env bash
# Valgrind over the tests whose memory ASan cannot see whole: jansson, SQLite
# and the CLI's compile path are not instrumented, so a freed JSON value read
# inside them shows here only. Usage: valgrind.sh [BUILD_DIR]
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath "${1:-$root/build}")
cd "$root"
pass=0 fail=0
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
names=()
# vg NAME COMMAND...: started in the background (valgrind is slow, one
# process per core), its result collected by report.
vg() {
  local name=$1; shift
  names+=("$name")
  ( if valgrind -q --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite "$@" \
      >/dev/null 2>"$out/${#names[@]}.err"; then echo ok; else echo failed; fi >"$out/${#names[@]}" ) &
  while [ "$(jobs -rp | wc -l)" -ge "$(nproc)" ]; do wait -n; done
}
if ! command -v valgrind >/dev/null; then
  echo "not ok - valgrind is not installed (tests/install-deps.sh)"; echo "0 passed, 1 failed"; exit 1
fi
for t in policy counters store flowcheck; do vg "test-$t" "$build/tests/test-$t"; done
vg "test-bundle" "$build/tests/test-bundle" tests/fixtures/eval/network.json
vg "replay-controller" "$build/tests/replay-controller" tests/fuzz/corpus/controller-*
vg "policy compile three-tier" "$build/cli/bulkhead" policy compile examples/three-tier/policy.json \
  --inventory examples/three-tier/node-a.json --inventory examples/three-tier/node-b.json
wait
for i in "${!names[@]}"; do
  if [ "$(cat "$out/$((i + 1))" 2>/dev/null)" = ok ]; then
    pass=$((pass + 1)); echo "ok - valgrind clean: ${names[$i]}"
  else
    fail=$((fail + 1)); echo "not ok - valgrind: ${names[$i]}"; sed 's/^/    /' "$out/$((i + 1)).err" | tail -30
  fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
