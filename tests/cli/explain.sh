#!/usr/bin/env bash
# `bulkhead policy explain`: both sides of a path are named with the rule that
# decides; --probes answers JSON lines in order; bad probes are reported;
# named ports say how they resolved.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cli=$(realpath "${1:-$root/build/cli/bulkhead}")
ex=$root/examples/three-tier
invs=(--inventory "$ex/node-a.json" --inventory "$ex/node-b.json" --inventory "$ex/node-c.json")
pass=0 fail=0
check() { # NAME GOT WANT
  if [ "$2" = "$3" ]; then pass=$((pass + 1)); echo "ok - $1"
  else fail=$((fail + 1)); echo "not ok - $1"; printf '    got:  %s\n    want: %s\n' "$2" "$3"; fi
}

got=$("$cli" policy explain "$ex/policy.json" "${invs[@]}" --from node-a/api-1 --to node-b/db-1 --proto tcp --port 5432)
check "api to db: both sides and the deciding rules" "$got" "198.18.1.3 -> 198.18.2.4 tcp/5432
  egress  at node-a/api-1             accept by api-egress/egress/0
  ingress at node-b/db-1              accept by db-ingress/ingress/0
  result  delivered"

got=$("$cli" policy explain "$ex/policy.json" "${invs[@]}" --from node-a/web-1 --to node-b/db-1 --proto tcp --port 5432 -6 --json |
  /usr/bin/python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["delivered"], j["egress"]["reason"], j["ingress"]["reason"])')
check "web to db over IPv6 (-6, --json): dropped at both ends" "$got" "False default-deny default-deny"

got=$("$cli" policy explain "$ex/policy.json" "${invs[@]}" --from 203.0.113.200 --to node-a/web-1 --proto tcp --port 443 | tail -3)
check "outside source: no egress table; guest wifi excepted" "$got" "  egress  no Bulkhead endpoint: nothing enforced
  ingress at node-a/web-1             drop   by default-deny
  result  dropped"

got=$(printf '%s\n' '{"src":"203.0.113.10","dst":"198.18.1.2","proto":"tcp","port":443}' \
  '{"src":"198.18.3.4","dst":"198.18.3.3","proto":"tcp","port":5432}' '{"src":"198.18.1.2","proto":"tcp"}' |
  "$cli" policy explain "$ex/policy.json" "${invs[@]}" --probes - 2>/dev/null; echo "exit $?")
check "--probes: one answer per line, in order; a bad line answers an error and exits 2" "$got" \
'{"delivered":true,"verdict":"accept","egress":null,"ingress":{"endpoint":"node-a/web-1","verdict":"accept","reason":"web-ingress/ingress/0"}}
{"delivered":false,"verdict":"drop","egress":{"endpoint":"node-c/batch-1","verdict":"accept","reason":"defaults"},"ingress":{"endpoint":"node-c/db-2","verdict":"drop","reason":"default-deny"}}
{"error":"\"src\" and \"dst\" must be addresses of one family"}
exit 2'

"$cli" policy explain "$ex/policy.json" "${invs[@]}" --from node-a/nosuch --to node-b/db-1 --proto tcp >/dev/null 2>&1
check "unknown endpoint name exits 2" "$?" 2
"$cli" policy explain "$ex/policy.json" "${invs[@]}" --from node-a/web-1 --to node-b/db-1 --proto http >/dev/null 2>&1
check "unknown protocol exits 2" "$?" 2

# A contested address (tests/fixtures/eval/conflict.json): explain says what
# the conflict does, and the verdicts follow it: the deny rule still drops
# it, the allow by label no longer admits it.
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# split_scenario FIXTURE PREFIX: its policy and inventories, as
# $tmp/PREFIXpolicy.json and $tmp/PREFIXinv0.json, ...
split_scenario() {
	/usr/bin/python3 -c '
import json, sys
sc = json.load(open(sys.argv[1]))
out = sys.argv[2]
json.dump(sc["policy"], open(out + "policy.json", "w"))
for i, inv in enumerate(sc["inventory"]):
    json.dump(inv, open("%sinv%d.json" % (out, i), "w"))' "$1" "$tmp/$2"
}
split_scenario "$root/tests/fixtures/eval/conflict.json" ""
cinvs=(--inventory "$tmp/inv0.json" --inventory "$tmp/inv1.json")
got=$("$cli" policy explain "$tmp/policy.json" "${cinvs[@]}" --from 198.18.3.1 --to node-a/api-1 --proto tcp --port 443 2>/dev/null)
check "a contested source: a note, and the deny rule still drops it" "$got" "198.18.3.1 -> 198.18.3.2 tcp/443
  note    198.18.3.1 is claimed by node-a/quar-1 and node-b/rogue-2: no allow rule admits it through a label group; deny rules still match it
  egress  at node-a/quar-1            accept by defaults
  ingress at node-a/api-1             drop   by quarantine/ingress/0
  result  dropped"
got=$("$cli" policy explain "$tmp/policy.json" "${cinvs[@]}" --from 198.18.3.1 --to node-a/logs-1 --proto tcp --port 514 2>/dev/null | tail -2)
check "a contested source: the allow by label no longer admits it" "$got" "  ingress at node-a/logs-1            drop   by default-deny
  result  dropped"

# Named ports (tests/fixtures/eval/named-ports.json): explain says how each
# name the deciding rules use resolved, and where; answers without names
# are as they were.
split_scenario "$root/tests/fixtures/eval/named-ports.json" np-
ninvs=(--inventory "$tmp/np-inv0.json" --inventory "$tmp/np-inv1.json")
got=$("$cli" policy explain "$tmp/np-policy.json" "${ninvs[@]}" --from node-a/client-1 --to node-b/db-1 --proto tcp --port 9090 2>/dev/null)
check "named port, egress: the number on the destination" "$got" "198.18.1.10 -> 198.18.2.1 tcp/9090
  name    egress  tcp/http on node-b/db-1: 9090
  egress  at node-a/client-1          accept by client-egress/egress/0
  ingress at node-b/db-1              accept by defaults
  result  delivered"
got=$("$cli" policy explain "$tmp/np-policy.json" "${ninvs[@]}" --from node-a/client-1 --to node-a/api-1 --proto tcp --port 8080 2>/dev/null | sed -n 2,3p)
check "named port defined with another protocol, both sides" "$got" "  name    egress  tcp/http on node-a/api-1: defined as udp/8080, not tcp: matches nothing there
  name    ingress tcp/http on node-a/api-1: defined as udp/8080, not tcp: matches nothing there"
got=$("$cli" policy explain "$tmp/np-policy.json" "${ninvs[@]}" --from node-a/client-1 --to 198.18.9.9 --proto udp --port 53 2>/dev/null | sed -n 2p)
check "named port, egress to an address no endpoint has" "$got" "  name    egress  udp/dns: 198.18.9.9 is no endpoint's: matches nothing"
got=$("$cli" policy explain "$tmp/np-policy.json" "${ninvs[@]}" --from node-a/batch-1 --to 198.18.2.9 --proto tcp --port 8088 --json 2>/dev/null |
  /usr/bin/python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["egress"]["reason"], [(n["endpoint"], n["number"], n.get("contested")) for n in j["names"]])')
check "named port, contested: every claimant's number (--json)" "$got" \
  "batch-egress/egress/0 [('node-b/shared-1', 8080, True), ('node-b/shared-2', 8088, True)]"
got=$(echo '{"src":"198.18.1.20","dst":"198.18.1.2","proto":"tcp","port":9100}' |
  "$cli" policy explain "$tmp/np-policy.json" "${ninvs[@]}" --probes - 2>/dev/null)
check "--probes: names, one not defined on the destination" "$got" \
'{"delivered":false,"verdict":"drop","egress":{"endpoint":"node-a/batch-1","verdict":"accept","reason":"batch-egress/egress/1"},"ingress":{"endpoint":"node-a/web-2","verdict":"drop","reason":"default-deny"},"names":[{"dir":"egress","port":"tcp/http","endpoint":"node-a/web-2","number":8081},{"dir":"ingress","port":"tcp/http","endpoint":"node-a/web-2","number":8081},{"dir":"ingress","port":"tcp/metrics","endpoint":"node-a/web-2","number":null}]}'

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
