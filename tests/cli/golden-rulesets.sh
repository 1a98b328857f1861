#!/usr/bin/env bash
# Every example's rendered ruleset, endpoint by endpoint, against the golden
# files under tests/golden/EXAMPLE/NODE/ENDPOINT.nft: each example is
# compiled with the CLI, one bundle per node, and printed by
# `bulkhead-agent --print-ruleset` (nft_render_text: the plan the batch is
# built from, as nft text). A change to what the agent loads shows here as
# a diff. To accept one on purpose, regenerate and review `git diff`:
#
#   tests/cli/golden-rulesets.sh build --update
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(realpath "${1:-$root/build}")
update=false
[ "${2:-}" = --update ] && update=true
cli=$build/cli/bulkhead agent=$build/agent/bulkhead-agent golden=$root/tests/golden
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
report() {
  if [ "$1" = ok ]; then pass=$((pass + 1)); echo "ok - $2"
  else fail=$((fail + 1)); echo "not ok - $2"; [ -n "${3:-}" ] && sed 's/^/    /' <<<"$3"; fi
}

$update && rm -rf "$golden" && mkdir -p "$golden"
: >"$tmp/seen"
for dir in "$root"/examples/*/; do
  ex=$(basename "$dir") invs=()
  for f in "$dir"node-*.json; do invs+=(--inventory "$f"); done
  for f in "$dir"node-*.json; do
    node=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["node"])' "$f")
    if ! "$cli" policy compile "$dir/policy.json" "${invs[@]}" --node "$node" >"$tmp/bundle.json" 2>"$tmp/err" ||
      ! "$agent" --print-ruleset --bundle "$tmp/bundle.json" --node "$node" >"$tmp/out" 2>"$tmp/err"; then
      report not-ok "$ex $node: compiles and renders" "$(cat "$tmp/err")"; continue
    fi
    # One file per endpoint: each "# endpoint NAME" line starts one.
    rm -rf "$tmp/split"; mkdir -p "$tmp/split"
    awk -v d="$tmp/split" '/^# endpoint /{f = d "/" $3 ".nft"; next} {print > f}' "$tmp/out"
    for got in "$tmp"/split/*.nft; do
      [ -e "$got" ] || { report not-ok "$ex $node: has endpoints"; continue; }
      ep=$(basename "$got" .nft) want=$golden/$ex/$node/$ep.nft
      echo "$ex/$node/$ep.nft" >>"$tmp/seen"
      if $update; then
        mkdir -p "$(dirname "$want")" && cp "$got" "$want"
        report ok "$ex $node $ep: golden file written"
      elif [ ! -e "$want" ]; then
        report not-ok "$ex $node $ep: no golden file $want (regenerate: tests/cli/golden-rulesets.sh BUILD --update)"
      elif cmp -s "$got" "$want"; then
        report ok "$ex $node $ep: ruleset as in tests/golden"
      else
        report not-ok "$ex $node $ep: ruleset differs from tests/golden" "$(diff -u "$want" "$got" | head -40)"
      fi
    done
  done
done
# A golden file whose endpoint no example has any more is a test that no
# longer runs.
(cd "$golden" && find . -name '*.nft' | sed 's|^\./||' | sort) >"$tmp/have"
stale=$(sort "$tmp/seen" | comm -13 - "$tmp/have")
[ -z "$stale" ] && report ok "every golden file belongs to an example endpoint" ||
  report not-ok "golden files of no example endpoint" "$stale"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
