#!/bin/bash
# label-rules: a node's key proves who speaks, not what it may claim; the
# optional NODE.labels beside NODE.key in --agent-keys bounds the labels a
# node may report (README "Security"). Real daemons and packets: n1 is
# restricted to tenant=a; when it labels its endpoint tenant=b, its whole
# list is refused (logged, shown in status), the endpoint does not join
# tenant b's group and still cannot reach tenant b's database, while n2's
# tenant-b client can. The rules are re-read like the keys: loosened, the
# refused list is taken; tightened, the list in force is flagged; invalid,
# every list of the node is refused; and a restarted controller checks the
# lists it resumes.
# Usage: label-rules.sh [BUILD_DIR]
set -u
. "$(dirname "$0")/world.bash"
BUILD=${1:-$LIB_ROOT/build}

world_init lbl || exit 1
world_daemons "$BUILD" n1 n2 || exit 1
world_add_endpoint evil1 11 11 || exit 1 # on n1
world_add_endpoint good1 12 12 || exit 1 # on n1, tenant a
world_add_endpoint bdb 21 21 || exit 1   # on n2, tenant b's database
world_add_endpoint bcli 22 22 || exit 1  # on n2, tenant b's client
world_serve bdb tcp:5432 || exit 1

ep() { printf '{"name": "%s", "netns": "/run/netns/%s-%s", "labels": %s}' "$1" "$P" "$1" "$2"; }
n1_reports() { # EVIL1_TENANT: n1's inventory, replaced at once (the agent follows it)
	printf '{"node": "n1", "endpoints": [%s, %s]}\n' "$(ep evil1 "{\"tenant\": \"$1\", \"app\": \"shell\"}")" \
		"$(ep good1 '{"tenant": "a", "app": "web"}')" >"$TMP/n1.next" && mv "$TMP/n1.next" "$TMP/n1.json"
}
printf '{"node": "n2", "endpoints": [%s, %s]}\n' "$(ep bdb '{"tenant": "b", "app": "db"}')" \
	"$(ep bcli '{"tenant": "b", "app": "client"}')" >"$TMP/n2.json"
n1_reports a
rules() { printf '%s\n' "$1" >"$TMP/keys/allowed/n1.labels.next" && mv "$TMP/keys/allowed/n1.labels.next" "$TMP/keys/allowed/n1.labels"; }
rules '{"tenant": ["a"], "*": "*"}'

cat >"$TMP/policy.json" <<'JSON'
{"version": 1,
 "groups": {"tenant-b": {"labels": {"tenant": "b"}}},
 "policies": [{"name": "b-db-in", "applies_to": {"labels": {"tenant": "b", "app": "db"}},
               "ingress": [{"from": ["tenant-b"], "ports": ["tcp/5432"]}]}]}
JSON

controller_start
agent_start n1
agent_start n2
wait_for 10 connected_nodes_are "['n1', 'n2']"
check "policy applied" test "$(bh policy apply "$TMP/policy.json")" = "revision 1"
check "status --wait converges" bh status --wait=20 >/dev/null
tenant_b() { bh endpoints --json | json_get '",".join(e["node"] + "/" + e["name"] for e in j["endpoints"] if "tenant-b" in e["groups"])'; }
evil1_tenant() { bh endpoints --node n1 --json | json_get '[e["labels"]["tenant"] for e in j["endpoints"] if e["name"] == "evil1"][0]'; }
n1_errors() { bh status --json | json_get '"\n".join([n for n in j["nodes"] if n["node"] == "n1"][0]["errors"])'; }
n1_error_has() { [[ "$(n1_errors)" == *"$1"* ]]; }
evil1_is() { [ "$(evil1_tenant)" = "$1" ]; }
n1_in_sync() { bh status --json | json_get '[n for n in j["nodes"] if n["node"] == "n1"][0]["up_to_date"]'; }
check "tenant-b holds n2's two endpoints" test "$(tenant_b)" = "n2/bcli,n2/bdb"
check "n2's tenant-b client reaches the database" can bcli tcp 198.18.0.21 5432
check "evil1 (tenant a) cannot" cannot evil1 tcp 198.18.0.21 5432

# --- n1 claims tenant b for evil1: refused whole, the previous list kept ---
n1_reports b
check "the controller logs the refusal, naming the label and the rule" wait_for 10 grep -qE \
	'^n1: /endpoints/[01]/labels/tenant: endpoint evil1: label tenant=b: not allowed by n1.labels \(tenant: a\)$' \
	"$TMP/controller.log"
check "status shows it as n1's error" wait_for 5 n1_error_has \
	'endpoint list refused, the previous one kept: endpoint evil1: label tenant=b: not allowed by n1.labels (tenant: a)'
check "n1 is not in sync" test "$(n1_in_sync)" = False
bh status --wait=2 >/dev/null 2>"$TMP/wait.err"
check "status --wait fails, naming n1" grep -q 'not in sync after 2 s: n1' "$TMP/wait.err"
check "the list is counted as rejected" test "$(bh status --json | json_get 'j["counters"]["endpoint_lists_rejected"] > 0')" = True
check "evil1 keeps its previous labels (tenant a)" test "$(evil1_tenant)" = a
check "tenant-b still holds only n2's endpoints" test "$(tenant_b)" = "n2/bcli,n2/bdb"
check "evil1 still cannot reach tenant b's database" cannot evil1 tcp 198.18.0.21 5432
check "n2's tenant-b client still can" can bcli tcp 198.18.0.21 5432

# --- the rules loosened: the refused list is taken at once ---
rules '{"tenant": ["a", "b"], "*": "*"}'
check "loosened rules admit the list n1 reported" wait_for 10 evil1_is b
check "evil1 joins tenant-b" test "$(tenant_b)" = "n1/evil1,n2/bcli,n2/bdb"
check "n1's error is gone" test -z "$(n1_errors)"
check "status --wait converges again" bh status --wait=20 >/dev/null
check "evil1 reaches the database now (the rules allow it)" wait_for 5 can evil1 tcp 198.18.0.21 5432

# --- tightened again: the list in force is flagged, until n1 complies ---
rules '{"tenant": ["a"], "*": "*"}'
check "the list in force breaking the new rules is shown" wait_for 10 n1_error_has \
	"the endpoint list in force breaks the node's label rules (kept): endpoint evil1: label tenant=b"
check "and logged" grep -q 'node n1: its endpoint list in force breaks its label rules' "$TMP/controller.log"
n1_reports a
n1_ok_again() { evil1_is a && [ -z "$(n1_errors)" ]; }
check "n1 reporting tenant a again is accepted" wait_for 10 n1_ok_again
check "status --wait converges" bh status --wait=20 >/dev/null
check "evil1 is refused by the database again" wait_for 5 cannot evil1 tcp 198.18.0.21 5432

# --- an invalid rules file: every list of n1 refused, the place named ---
rules '{"tenant": "a"}'
n1_reports b
check "an invalid n1.labels is logged with its place" wait_for 10 grep -q \
	"$TMP/keys/allowed/n1.labels: /tenant: want a list of the values allowed" "$TMP/controller.log"
check "and n1's lists are refused" wait_for 10 n1_error_has "n1.labels is invalid or unreadable"
check "evil1 stays out of tenant-b" test "$(tenant_b)" = "n2/bcli,n2/bdb"
check "and cannot reach the database" cannot evil1 tcp 198.18.0.21 5432

# --- a restart resumes the stored list and checks it against the rules ---
rules '{"tenant": ["a", "b"], "*": "*"}'
check "valid rules again: n1's tenant-b list is taken" wait_for 10 evil1_is b
kill "$CONTROLLER_PID"
wait "$CONTROLLER_PID" 2>/dev/null
before=$(wc -l <"$TMP/controller.log")
rules '{"tenant": ["a"], "*": "*"}'
controller_start
# It checks the list it resumed; n1's HELLO (the same list) is refused too.
check "the restarted controller flags n1's stored list" wait_for 10 n1_error_has \
	"endpoint evil1: label tenant=b: not allowed by n1.labels (tenant: a)"
check "it logged that at start, from the stored list" \
	grep -q 'node n1: its endpoint list in force breaks its label rules' <(tail -n +$((before + 1)) "$TMP/controller.log")

check "no crash or sanitizer report in the daemons' logs" \
	bash -c "! grep -qE 'AddressSanitizer|runtime error|Segmentation' '$TMP'/*.log"
[ "$failed" -eq 0 ] || { for f in "$TMP"/*.log; do echo "--- $f"; tail -30 "$f"; done; }
finish
