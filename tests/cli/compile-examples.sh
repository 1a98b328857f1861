#!/usr/bin/env bash
# `bulkhead policy compile` on every example: output is byte-identical across
# runs and whatever the order of the inventories, every bundle names its
# node and hash, and --node picks one bundle out of the whole.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cli=$(realpath "${1:-$root/build/cli/bulkhead}")
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
report() {
  if [ "$1" = ok ]; then pass=$((pass + 1)); echo "ok - $2"
  else fail=$((fail + 1)); echo "not ok - $2"; [ -n "${3:-}" ] && sed 's/^/    /' <<<"$3"; fi
}

for dir in "$root"/examples/*/; do
  ex=$(basename "$dir")
  invs=() rinvs=()
  for f in "$dir"node-*.json; do invs+=(--inventory "$f"); done
  for ((i = ${#invs[@]} - 1; i > 0; i -= 2)); do rinvs+=(--inventory "${invs[i]}"); done
  if ! "$cli" policy compile "$dir/policy.json" "${invs[@]}" >"$tmp/a.json" 2>"$tmp/err"; then
    report not-ok "$ex: compiles" "$(cat "$tmp/err")"; continue
  fi
  report ok "$ex: compiles"
  "$cli" policy compile "$dir/policy.json" "${invs[@]}" >"$tmp/b.json"
  "$cli" policy compile "$dir/policy.json" "${rinvs[@]}" >"$tmp/c.json"
  cmp -s "$tmp/a.json" "$tmp/b.json" && report ok "$ex: byte-identical on recompile" || report not-ok "$ex: byte-identical on recompile"
  cmp -s "$tmp/a.json" "$tmp/c.json" && report ok "$ex: inventory order does not matter" || report not-ok "$ex: inventory order does not matter"
  nodes=$(/usr/bin/python3 -c 'import json,sys; print(" ".join(b["node"] for b in json.load(open(sys.argv[1]))["bundles"]))' "$tmp/a.json")
  hashes_ok=$(/usr/bin/python3 -c 'import json,sys,re; print(all(re.fullmatch("[0-9a-f]{64}", b["hash"]) for b in json.load(open(sys.argv[1]))["bundles"]))' "$tmp/a.json")
  [ "$hashes_ok" = True ] && [ -n "$nodes" ] && report ok "$ex: a bundle with a hash for each of: $nodes" || report not-ok "$ex: bundles carry hashes"
  for n in $nodes; do
    "$cli" policy compile "$dir/policy.json" "${invs[@]}" --node "$n" >"$tmp/one.json"
    same=$(/usr/bin/python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); o=json.load(open(sys.argv[2])); print([b for b in a["bundles"] if b["node"]==sys.argv[3]]==[o])' "$tmp/a.json" "$tmp/one.json" "$n")
    [ "$same" = True ] && report ok "$ex: --node $n equals its part of the whole" || report not-ok "$ex: --node $n equals its part of the whole"
  done
done

"$cli" policy compile "$root/examples/three-tier/policy.json" --inventory "$root/examples/three-tier/node-a.json" --node nosuch >/dev/null 2>&1
[ $? -eq 2 ] && report ok "unknown --node exits 2" || report not-ok "unknown --node exits 2"
printf '{"node":"x","endpoints":[{"name":"a b","addresses":["1.2.3"]}]}' >"$tmp/badinv.json"
got=$(cd "$tmp" && "$cli" policy compile "$root/examples/three-tier/policy.json" --inventory badinv.json 2>&1 >/dev/null); rc=$?
want='badinv.json: /endpoints/0/name: invalid endpoint name "a b": use 1-63 letters, digits, '"'"'.'"'"', '"'"'_'"'"' or '"'"'-'"'"', beginning with a letter or digit
badinv.json: /endpoints/0/addresses/0: "1.2.3": not an IPv4 or IPv6 address'
[ $rc -eq 2 ] && [ "$got" = "$want" ] && report ok "invalid inventory: every error, exit 2" || report not-ok "invalid inventory: every error, exit 2" "exit $rc: $got"

# Two nodes claim one address: a warning naming both, exit 0; the address
# is out of the set allow rules use and in the one deny rules use (it fails
# closed; tests/fixtures/eval/conflict.json has the verdicts).
printf '{"node":"n1","endpoints":[{"name":"web-1","labels":{"tier":"web"},"addresses":["198.18.1.2"]},{"name":"db-1","labels":{"tier":"db"},"addresses":["198.18.1.9"]}]}' >"$tmp/c1.json"
printf '{"node":"n2","endpoints":[{"name":"rogue","labels":{"tier":"web"},"addresses":["198.18.1.9","198.18.2.2"]}]}' >"$tmp/c2.json"
printf '{"version":1,"groups":{"web":{"labels":{"tier":"web"}},"db":{"labels":{"tier":"db"}}},"policies":[{"name":"db-guard","applies_to":"db","order":10,"ingress":[{"action":"deny","from":["web"],"ports":["udp/53"]}]},{"name":"db-in","applies_to":"db","ingress":[{"from":["web"],"ports":["tcp/5432"]}]}]}' >"$tmp/cpolicy.json"
got=$("$cli" policy compile "$tmp/cpolicy.json" --inventory "$tmp/c1.json" --inventory "$tmp/c2.json" 2>&1 >"$tmp/conflict.json"); rc=$?
[ $rc -eq 0 ] && [ "$got" = "warning: 198.18.1.9 is claimed by n1/db-1 and n2/rogue: no allow rule admits it through a label group; deny rules still match it" ] &&
  report ok "an address claimed twice: a warning, exit 0" || report not-ok "an address claimed twice: a warning, exit 0" "exit $rc: $got"
sets=$(/usr/bin/python3 -c '
import json, sys
b = [b for b in json.load(open(sys.argv[1]))["bundles"] if b["node"] == "n1"][0]
sets = {s["id"]: s["ipv4"] for s in b["sets"]}
rules = {r["id"]: r["peers"] for r in b["endpoints"][0]["ingress"]["rules"]}
print(sets.get("web"), sets.get("web#deny"), rules)' "$tmp/conflict.json")
want="['198.18.1.2', '198.18.2.2'] ['198.18.1.2', '198.18.1.9', '198.18.2.2'] {'db-guard/ingress/0': ['web#deny'], 'db-in/ingress/0': ['web']}"
[ "$sets" = "$want" ] && report ok "the claimed address: out of the allow rule's set, in the deny rule's; the claimants' other addresses in both" ||
  report not-ok "the claimed address: out of the allow rule's set, in the deny rule's" "got:  $sets
want: $want"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
