#!/bin/bash
# conflict: an address two endpoints claim fails closed, through the real
# daemons (controller and two agents over CURVE) and real packets. A
# quarantined endpoint on n1 is denied by the database's (n1) deny rule,
# placed before an allow for the whole cluster network. Then n2, with its own
# valid key, reports an endpoint claiming the quarantined endpoint's
# addresses: the deny rule must still drop them (a second claim must not take an
# address out of a deny set), while the allow rule by label that admitted
# them (logs from batch) stops admitting them. When the claim goes, the
# allow comes back.
# Usage: conflict.sh [BUILD_DIR]
set -u
. "$(dirname "$0")/world.bash"
BUILD=${1:-$LIB_ROOT/build}

world_init cfl || exit 1
world_daemons "$BUILD" n1 n2 || exit 1

world_add_endpoint quar 11 11 || exit 1
world_add_endpoint client 12 12 || exit 1
world_add_endpoint db 21 21 || exit 1
world_add_endpoint logs 22 22 || exit 1
world_serve db tcp:5432 || exit 1
world_serve logs tcp:514 || exit 1

# The claimant: a namespace of n2 whose interface carries quar's addresses.
# Both ends of its veth pair stay inside it, on no bridge, so nothing on the
# wire answers for those addresses but quar.
ip netns add "$P-rogue" || exit 1
ip -n "$P-rogue" link add r0 type veth peer name r1 || exit 1
ip -n "$P-rogue" addr add 198.18.0.11/32 dev r0
ip -n "$P-rogue" addr add 2001:db8:1::11/128 dev r0 nodad
ip -n "$P-rogue" link set r1 up
ip -n "$P-rogue" link set r0 up

endpoint() { # NAME LABELS
	printf '{"name": "%s", "netns": "/run/netns/%s-%s", "labels": %s}' "$1" "$P" "$1" "$2"
}
printf '{"node": "n1", "endpoints": [%s, %s, %s, %s]}\n' \
	"$(endpoint quar '{"role": "batch", "quarantine": "yes"}')" "$(endpoint client '{"role": "client"}')" \
	"$(endpoint db '{"role": "db"}')" "$(endpoint logs '{"role": "logs"}')" >"$TMP/n1.json"
n2_inventory() { # [ENDPOINT]
	printf '{"node": "n2", "endpoints": [%s]}\n' "${1:-}" >"$TMP/n2.next" && mv "$TMP/n2.next" "$TMP/n2.json"
}
n2_inventory
cat >"$TMP/policy.json" <<'JSON'
{"version": 1,
 "groups": {"quarantined": {"labels": {"quarantine": "yes"}}, "batch": {"labels": {"role": "batch"}},
            "db": {"labels": {"role": "db"}}, "logs": {"labels": {"role": "logs"}},
            "cluster": {"cidrs": ["198.18.0.0/15", "2001:db8::/32"]}},
 "policies": [
  {"name": "quarantine", "applies_to": "db", "order": 10, "ingress": [{"action": "deny", "from": ["quarantined"]}]},
  {"name": "db-in", "applies_to": "db", "order": 100, "ingress": [{"from": ["cluster"], "ports": ["tcp/5432"]}]},
  {"name": "logs-in", "applies_to": "logs", "ingress": [{"from": ["batch"], "ports": ["tcp/514"]}]}]}
JSON

converged() { bh status --wait=20 >"$TMP/status.out" 2>&1; }
conflicts() { [ "$(bh status --json 2>/dev/null | json_get '[(c["address"], c["endpoints"]) for c in j["conflicts"]]')" = "$1" ]; }

controller_start
agent_start n1
agent_start n2
wait_for 10 connected_nodes_are "['n1', 'n2']"
check "policy apply: revision 1" test "$(bh policy apply "$TMP/policy.json")" = "revision 1"
check "status --wait converges" converged

# --- no conflict ---
check "client reaches db (the cluster allow)" can client tcp 198.18.0.21 5432
check "quar is denied by db (the quarantine deny)" cannot quar tcp 198.18.0.21 5432
check "quar is denied by db over IPv6" cannot quar tcp 2001:db8:1::21 5432
check "quar reaches logs (the allow by label: batch)" can quar tcp 198.18.0.22 514

# --- n2 reports an endpoint claiming quar's addresses ---
n2_inventory "$(endpoint rogue '{"role": "other"}')"
n1_bundles() { grep -c 'node n1: bundle' "$TMP/controller.log"; }
bundles_before=$(n1_bundles)
check "status reports both claims of quar's addresses" wait_for 10 conflicts \
	"[('198.18.0.11', ['n1/quar', 'n2/rogue']), ('2001:db8:1::11', ['n1/quar', 'n2/rogue'])]"
check "status --wait converges with the conflict" converged
check "and warns what it does" grep -q \
	'warning: 198.18.0.11 is claimed by n1/quar and n2/rogue: no allow rule admits it through a label group; deny rules still match it' \
	"$TMP/status.out"
check "conflict: quar is still denied by db" cannot quar tcp 198.18.0.21 5432
check "conflict: quar is still denied by db over IPv6" cannot quar tcp 2001:db8:1::21 5432
check "conflict: client still reaches db" can client tcp 198.18.0.21 5432
check "conflict: the allow by label no longer admits quar at logs" cannot quar tcp 198.18.0.22 514
check "conflict: nor over IPv6" cannot quar tcp 2001:db8:1::22 514
check "n1 got the conflict as set-element deltas, no whole bundle (the set ids do not depend on conflicts)" \
	test "$(n1_bundles)" -eq "$bundles_before"

# --- the claim goes ---
n2_inventory
check "status: no conflict once the claim goes" wait_for 10 conflicts "[]"
check "status --wait converges" converged
check "quar reaches logs again" wait_for 5 can quar tcp 198.18.0.22 514
check "quar is still denied by db" cannot quar tcp 198.18.0.21 5432
check "n1 got that as set-element deltas too" test "$(n1_bundles)" -eq "$bundles_before"

check "no crash or sanitizer report in the daemons' logs" \
	bash -c "! grep -qE 'AddressSanitizer|runtime error|Segmentation' '$TMP'/*.log"
[ "$failed" -eq 0 ] || { for f in "$TMP"/*.log; do echo "--- $f"; tail -30 "$f"; done; }
finish
