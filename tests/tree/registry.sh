#!/usr/bin/env bash
# tests/meson.build is the one test registry: every test source and script
# in the tree is registered there, so tests/run (which runs the registry by
# suite) cannot miss one; and every integration test sources world.bash.
# Usage: registry.sh BUILD_DIR
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(realpath "${1:-$root/build}")
pass=0 fail=0
registered=$(meson introspect "$build" --tests | /usr/bin/python3 -c \
  'import json,sys; print("\n".join(t["name"] for t in json.load(sys.stdin)))')
if [ -z "$registered" ]; then
  echo "not ok - meson introspect $build --tests"; echo "0 passed, 1 failed"; exit 1
fi
# check WHAT: one check over the problems collected in $problems.
problems=
check() {
  if [ -z "$problems" ]; then pass=$((pass + 1)); echo "ok - $1"
  else fail=$((fail + 1)); echo "not ok - $1"; printf '%s' "$problems"; fi
  problems=
}
expect() { # TEST_NAME FILE
  grep -qxF "$1" <<<"$registered" || problems+="    $2 is not registered (as test '$1')"$'\n'
}
cd "$root"
for f in tests/unit/test-*.c; do
  [ "$f" = tests/unit/test-main.c ] && continue # the harness
  n=${f##*/test-}; expect "${n%.c}" "$f"
done
check "every unit test is registered in tests/meson.build"
for f in tests/fuzz/fuzz-*.c; do n=${f##*/fuzz-}; expect "replay-${n%.c}" "$f"; done
check "every fuzz target's corpus replay is registered"
for f in tests/cli/*.sh tests/tree/* tests/schema/check_schema.py tests/valgrind.sh; do
  n=${f##*/}; n=${n%.*}; [ "$n" = check_schema ] && n=schema; expect "$n" "$f"
done
check "every CLI, tree, schema and valgrind check is registered"
for f in tests/integration/*.sh; do n=${f##*/}; expect "${n%.sh}" "$f"; done
check "every integration test is registered"
# Every integration test builds its world with world.bash (per-run prefix,
# cleanup on exit).
for f in tests/integration/*.sh; do
  grep -q '^\. "$(dirname "$0")/world.bash"' "$f" || problems+="    $f does not source world.bash"$'\n'
done
check "every integration test sources world.bash"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
