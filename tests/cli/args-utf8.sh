#!/usr/bin/env bash
# Every verb given an argument that is not UTF-8 (issue 10, item 13): an
# argument that goes into a request to the controller (JSON, UTF-8 only) is
# refused with exit 2 and a message naming it, before any connection; the
# others are used as they are. Never an abort (jansson refusing the string
# used to make json_pack return NULL and the CLI abort, exit 134).
# Usage: args-utf8.sh [BULKHEAD_CLI]
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cli=$(realpath "${1:-$root/build/cli/bulkhead}")
ex=$root/examples/three-tier
pass=0 fail=0
tmp=$(mktemp -d /tmp/bulkhead-args.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# No controller: a refused argument must not get as far as connecting.
export BULKHEAD_ADMIN=ipc://$tmp/run/admin.sock BULKHEAD_ADMIN_TIMEOUT_MS=300

bad=$(printf 'caf\xe9')       # Latin-1, not UTF-8
cp "$ex/policy.json" "$tmp/policy-$bad.json"

# expect NAME WANT_EXIT WANT_STDERR_PATTERN ARG...: exit code and stderr
# (pattern "-": nothing on stderr).
expect() {
  local name=$1 want=$2 pattern=$3
  shift 3
  "$cli" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
  local rc=$?
  if [ $rc -eq "$want" ] && { [ "$pattern" = - ] && [ ! -s "$tmp/err" ] || grep -qE -- "$pattern" "$tmp/err"; }; then
    pass=$((pass + 1)); echo "ok - $name"
  else
    fail=$((fail + 1)); echo "not ok - $name"; echo "    exit $rc (want $want); stderr:"; sed 's/^/    /' "$tmp/err"
  fi
}
refused='not valid UTF-8 \(requests are JSON'

# Into JSON: refused, exit 2, naming the argument (shown escaped).
expect "policy apply --comment" 2 "--comment \"caf\\\\xe9\": $refused" policy apply "$ex/policy.json" --comment "$bad"
expect "policy apply FILE" 2 "policy file name \".*policy-caf\\\\xe9.json\": $refused" policy apply "$tmp/policy-$bad.json"
expect "policy apply FILE --json" 2 "policy file name" policy apply "$tmp/policy-$bad.json" --json
expect "endpoints --node" 2 "--node \"caf\\\\xe9\": $refused" endpoints --node "$bad"
expect "flows --node" 2 "--node \"caf\\\\xe9\":? ($refused|is not a node name)" flows --node "$bad"
expect "flows --group" 2 "--group \"caf\\\\xe9\": $refused" flows --group "$bad"
expect "flows --follow --group" 2 "--group .*$refused" flows --follow --group "$bad"
expect "flows --rules --node" 2 "--node .*($refused|is not a node name)" flows --rules --node "$bad"

# Checked against a fixed list or a number: a usage error as any typo.
expect "flows --verdict" 2 '--verdict: deny, audit' flows --verdict "$bad"
expect "flows --since" 2 '--since: a duration' flows --since "$bad"
expect "flows --limit" 2 '--limit: a number' flows --limit "$bad"
expect "policy show REV" 2 'is not a revision number' policy show "$bad"
expect "policy rollback REV" 2 'is not a revision number' policy rollback "$bad"
expect "policy history ARG" 2 'usage: bulkhead policy history' policy history "$bad"
expect "status ARG" 2 'usage: bulkhead status' status "$bad"
expect "status --wait=" 2 '--wait=SECONDS' status --wait="$bad"
expect "an unknown verb" 2 'unknown command' "$bad"
expect "an unknown option" 2 'unknown option' endpoints "--$bad"

# Never in JSON: used as given.
expect "policy validate FILE" 0 - policy validate "$tmp/policy-$bad.json"
expect "policy compile FILE --node" 2 'is in none of the inventories' policy compile "$tmp/policy-$bad.json" \
  --inventory "$ex/node-a.json" --node "$bad"
cp "$ex/node-a.json" "$tmp/inv-$bad.json"
expect "policy compile --inventory" 0 - policy compile "$ex/policy.json" --inventory "$tmp/inv-$bad.json"
expect "policy explain --from" 2 '--from and --to must be' policy explain "$ex/policy.json" \
  --inventory "$ex/node-a.json" --from "$bad" --to 198.18.1.2 --proto tcp
expect "policy explain --proto" 2 'usage|--proto' policy explain "$ex/policy.json" \
  --inventory "$ex/node-a.json" --from 198.18.1.3 --to 198.18.1.2 --proto "$bad"
echo '{"src":"203.0.113.10","dst":"198.18.1.2","proto":"tcp","port":443}' >"$tmp/probes-$bad"
expect "policy explain --probes FILE" 0 - policy explain "$ex/policy.json" --inventory "$ex/node-a.json" \
  --probes "$tmp/probes-$bad"
expect "keygen DIR" 0 - keygen "$tmp/keys-$bad"
expect "--admin ENDPOINT" 1 'no answer from the controller' --admin "ipc://$tmp/$bad.sock" status

# The agent's node name goes into every message it sends (a node name is
# ASCII, so the name check refuses it).
echo '{"endpoints": []}' >"$tmp/inv.json"
cli=$(dirname "$cli")/../agent/bulkhead-agent
expect "bulkhead-agent --node" 2 '--node "caf\\xe9": not a node name' --controller tcp://127.0.0.1:1 --node "$bad" \
  --inventory "$tmp/inv.json" --state-dir "$tmp/agent" --insecure --dataplane null

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
