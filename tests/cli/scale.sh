#!/usr/bin/env bash
# Large documents through `bulkhead policy validate` and `policy compile`
# under resource limits: what used to grow quadratically (audit findings 4
# and 12, and the compiler's reference collection) must stay far below them.
#   - "The internet except 10,000 hosts" under a 128 MiB address-space limit
#     (ulimit -v; it took 5 GB);
#   - 100,000 policies with duplicate names, 100,000 groups named in one
#     rule, 100,000 inline peers in one rule, 100,000 unknown references
#     among 100,000 groups, each under a 20 s CPU-time limit (ulimit -t;
#     they took 50 s, 105 s, 164 s and more than 120 s, and take 1-2 s).
# The limits are not timings: they sit 10-40 times above what the code
# needs. Under a sanitizer build (which reserves terabytes of address space
# and runs several times slower) they are left off and only the results
# are checked.
# Usage: scale.sh [CLI]
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cli=$(realpath "${1:-$root/build/cli/bulkhead}")
gen=$root/bench/gen-policy.py
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
report() { # ok|not-ok NAME [DETAIL]
  if [ "$1" = ok ]; then pass=$((pass + 1)); echo "ok - $2"
  else fail=$((fail + 1)); echo "not ok - $2"; [ -n "${3:-}" ] && sed 's/^/    /' <<<"$3"; fi
}
sanitized=false
# Not grep -q: under pipefail, ldd killed by SIGPIPE after the match would
# fail the pipeline now and then.
[[ $(ldd "$cli" 2>/dev/null) == *libasan* ]] && sanitized=true
limited() { # MEM_KIB CPU_S COMMAND...: the command under both limits (none when sanitized)
  local mem=$1 cpu=$2
  shift 2
  if $sanitized; then "$@"; else (ulimit -v "$mem" -t "$cpu"; exec "$@"); fi
}

# --- the internet except 10,000 hosts, in 128 MiB ---
/usr/bin/python3 "$gen" except 10000 "$tmp/except.json" "$tmp/inv.json"
got=$(limited 131072 20 "$cli" policy validate "$tmp/except.json" 2>&1); rc=$?
[ $rc -eq 0 ] && [ "$got" = "$tmp/except.json: valid: 2 groups, 1 policies, 1 rules" ] &&
  report ok "10,000 excepts: validate in 128 MiB" || report not-ok "10,000 excepts: validate in 128 MiB" "exit $rc: $got"
limited 131072 20 "$cli" policy compile "$tmp/except.json" --inventory "$tmp/inv.json" >"$tmp/except.out" 2>"$tmp/err"; rc=$?
got=$(/usr/bin/python3 -c '
import json, sys
s = [s for s in json.load(open(sys.argv[1]))["bundles"][0]["sets"] if s["id"] == "internet"][0]
print(len(s["ipv4"]), s["ipv4"][0], s["ipv4"][1], s["ipv4"][-1], len(s["ipv6"]))' "$tmp/except.out" 2>&1)
want="10001 0.0.0.0-198.18.0.0 198.18.0.2 198.18.78.32-255.255.255.255 1"
[ $rc -eq 0 ] && [ "$got" = "$want" ] && report ok "10,000 excepts: compile in 128 MiB, 10,001 ranges around the hosts" ||
  report not-ok "10,000 excepts: compile in 128 MiB" "exit $rc: $(cat "$tmp/err")
got:  $got
want: $want"

# --- 100,000 policies, two names again: the errors name the first ---
/usr/bin/python3 "$gen" policies 100000 "$tmp/pol.json" "$tmp/inv.json"
sed -i 's/"name": "p99999"/"name": "p17"/; s/"name": "p50000"/"name": "p4"/' "$tmp/pol.json"
got=$(limited 2097152 20 "$cli" policy validate "$tmp/pol.json" 2>&1); rc=$?
want="$tmp/pol.json: /policies/50000/name: duplicate policy name \"p4\" (first at /policies/4)
$tmp/pol.json: /policies/99999/name: duplicate policy name \"p17\" (first at /policies/17)"
[ $rc -eq 2 ] && [ "$got" = "$want" ] && report ok "100,000 policies: duplicate names, each naming its first" ||
  report not-ok "100,000 policies: duplicate names, each naming its first" "exit $rc: $(head -c 2000 <<<"$got")"

# --- 100,000 groups in one rule; 100,000 inline peers in one rule ---
for shape in groups peers; do
  /usr/bin/python3 "$gen" "$shape" 100000 "$tmp/$shape.json" "$tmp/inv.json"
  limited 2097152 20 "$cli" policy compile "$tmp/$shape.json" --inventory "$tmp/inv.json" >"$tmp/$shape.out" 2>"$tmp/err"; rc=$?
  got=$(/usr/bin/python3 -c '
import json, sys
b = json.load(open(sys.argv[1]))["bundles"][0]
print(len(b["sets"]), len(b["endpoints"][0]["ingress"]["rules"][0]["peers"]))' "$tmp/$shape.out" 2>&1)
  [ $rc -eq 0 ] && [ "$got" = "100000 100000" ] && report ok "100,000 $shape in one rule: compiled, every set once" ||
    report not-ok "100,000 $shape in one rule: compiled" "exit $rc: $(head -5 "$tmp/err")
got: $got"
done

# --- 100,000 unknown references among 100,000 groups ---
/usr/bin/python3 - "$tmp/unknown.json" <<'PY'
import json, sys
n = 100000
json.dump({"version": 1, "groups": {"g%d" % i: {"labels": {"a": "b"}} for i in range(n)},
           "policies": [{"name": "p", "applies_to": {"labels": {}},
                         "ingress": [{"from": ["x%d" % i for i in range(n)]}]}]}, open(sys.argv[1], "w"))
PY
limited 2097152 20 "$cli" policy validate "$tmp/unknown.json" >/dev/null 2>"$tmp/err"; rc=$?
got="$(wc -l <"$tmp/err") $(tail -1 "$tmp/err")"
[ $rc -eq 2 ] && [ "$got" = "100000 $tmp/unknown.json: /policies/0/ingress/0/from/99999: unknown group \"x99999\"" ] &&
  report ok "100,000 unknown groups among 100,000: every one reported" ||
  report not-ok "100,000 unknown groups among 100,000: every one reported" "exit $rc: $got"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
