#!/usr/bin/env bash
# Bulkhead demo, the first command in README.md. On this machine it builds a
# small cluster out of network namespaces: three simulated nodes with the
# containers of examples/three-tier, CURVE keys, one bulkhead-controller and
# one bulkhead-agent per node. It applies the example policy, sends allowed
# and forbidden traffic, shows what the kernel did next to what the policy
# says, the blocked-flow report the agents sent up (`bulkhead flows`), the
# hits of every rule (`bulkhead flows --rules`), and `bulkhead status`. Everything it made is
# removed when it ends.
#
#   bash examples/demo.sh           run, show, clean up
#   bash examples/demo.sh --keep    stay up until Ctrl-C (then clean up)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
keep=false
[ "${1:-}" = --keep ] && keep=true

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
if [ "$(id -u)" -ne 0 ]; then
  echo "demo.sh: run as root (it creates network namespaces)" >&2
  exit 1
fi

bold "Installing what is missing (Debian packages) and building"
tests/install-deps.sh
[ -d build ] || meson setup build >/dev/null
ninja -C build >/dev/null
cli=$root/build/cli/bulkhead
agent=$root/build/agent/bulkhead-agent
controller=$root/build/controller/bulkhead-controller
py=$(command -v /usr/bin/python3 python3 | head -1)
ex=examples/three-tier

P=bhdemo$$
tmp=$(mktemp -d /tmp/bulkhead-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for ns in $(ip netns list | awk '{print $1}'); do
    case $ns in "$P"-*) ip netns pids "$ns" | xargs -r kill 2>/dev/null || true; ip netns del "$ns" ;; esac
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bold "Validating the policy"
"$cli" policy validate $ex/policy.json

bold "Building the cluster: a fabric bridge, three nodes, their containers"
ip netns add "$P-fab"
ip -n "$P-fab" link set lo up
ip -n "$P-fab" link add br0 type bridge mcast_snooping 0
ip -n "$P-fab" link set br0 up
port=0
for node in node-a node-b node-c; do
  # The example's inventory, with namespaces of this run.
  sed "s|/run/netns/|/run/netns/$P-|" $ex/$node.json >"$tmp/$node.json"
  while read -r name v4 v6; do
    port=$((port + 1))
    ns=$P-$name
    ip netns add "$ns"
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
    ip -n "$ns" link set lo up
    ip -n "$P-fab" link add "v$port" type veth peer name eth0 netns "$ns"
    ip -n "$P-fab" link set "v$port" master br0 up
    ip -n "$ns" addr add "$v4/15" dev eth0
    ip -n "$ns" addr add "$v6/32" dev eth0 nodad
    ip -n "$ns" link set eth0 up
    ip netns exec "$ns" "$py" tests/integration/probe.py serve "$tmp/ready-$name" tcp:80 tcp:443 tcp:8080 tcp:5432 \
      >/dev/null 2>&1 &
    pids+=($!)
    printf '  %-7s %-8s %-12s %s\n' "$node" "$name" "$v4" "$v6"
  done < <("$py" -c 'import json,sys
for e in json.load(open(sys.argv[1]))["endpoints"]: print(e["name"], *e["addresses"])' $ex/$node.json)
done

bold "CURVE keys: the controller's, one per node, and the allow-list binding each key to its node"
"$cli" keygen "$tmp/keys/controller" | sed 's/^/  controller: /' | head -1
mkdir -p "$tmp/keys/allowed"
for node in node-a node-b node-c; do
  "$cli" keygen "$tmp/keys/$node" >/dev/null
  cp "$tmp/keys/$node/public.key" "$tmp/keys/allowed/$node.key"
  echo "  $node: $(cat "$tmp/keys/$node/public.key") -> allowed/$node.key"
done

bold "Starting the controller and one agent per node"
port=$((20000 + $$ % 20000))
export BULKHEAD_ADMIN=ipc://$tmp/run/admin.sock
http=127.0.0.1:${BULKHEAD_HTTP_PORT:-7780}   # the blocked-flow page and /metrics
"$controller" --listen "tcp://127.0.0.1:$port" --admin "$BULKHEAD_ADMIN" --state-dir "$tmp/controller" \
  --keys "$tmp/keys/controller" --agent-keys "$tmp/keys/allowed" --http "$http" >"$tmp/controller.log" 2>&1 &
pids+=($!)
echo "  controller on tcp://127.0.0.1:$port, admin $BULKHEAD_ADMIN"
for node in node-a node-b node-c; do
  "$agent" --controller "tcp://127.0.0.1:$port" --node $node --inventory "$tmp/$node.json" \
    --state-dir "$tmp/state-$node" --keys "$tmp/keys/$node" \
    --controller-key "$tmp/keys/controller/public.key" --flow-window-ms 500 --counters-ms 500 >"$tmp/agent-$node.log" 2>&1 &
  pids+=($!)
  echo "  agent $node (pid ${pids[-1]})"
done
for _ in $(seq 50); do
  [ "$("$cli" endpoints --json 2>/dev/null | "$py" -c 'import json,sys; print(len(json.load(sys.stdin)["endpoints"]))' 2>/dev/null)" = 9 ] && break
  sleep 0.1
done

bold "bulkhead policy apply $ex/policy.json"
"$cli" policy apply $ex/policy.json --comment "demo: three-tier shop" | sed 's/^/  /'
"$cli" status --wait=20 | sed 's/^/  /' || { echo "agents did not converge; logs in $tmp"; exit 1; }

bold "bulkhead endpoints (as the agents found them in their namespaces)"
"$cli" endpoints | sed 's/^/  /'
invs=(--inventory "$tmp/node-a.json" --inventory "$tmp/node-b.json" --inventory "$tmp/node-c.json")

bold "Traffic: what the policy says (bulkhead policy explain) and what the kernel did"
printf '  %-8s %-8s %-10s %-10s %-9s %s\n' FROM TO PORT POLICY KERNEL "DECIDED BY (egress | ingress)"
flows="web-1 api-2 8080
api-1 db-1 5432
api-2 db-2 5432
web-1 db-1 5432
web-2 api-1 5432
batch-1 db-2 5432
batch-1 web-3 80
db-1 api-1 8080
web-3 api-2 8080"
address_of() { # NAME: its IPv4 address, from the inventories
  "$py" -c 'import json,sys
for f in sys.argv[2:]:
    for e in json.load(open(f))["endpoints"]:
        if e["name"] == sys.argv[1]: print(e["addresses"][0])' "$1" "$tmp"/node-?.json
}
agree=0 total=0
while read -r from to p; do
  src=$(address_of "$from") dst=$(address_of "$to")
  said=$("$cli" policy explain $ex/policy.json "${invs[@]}" --from "$src" --to "$dst" --proto tcp --port "$p" --json |
    "$py" -c 'import json,sys; j=json.load(sys.stdin)
side=lambda s: s["verdict"]+" "+s["reason"] if s else "-"
print("allow" if j["delivered"] else "deny", side(j["egress"]), "|", side(j["ingress"]))')
  if ip netns exec "$P-$from" "$py" tests/integration/probe.py tcp "$dst" "$p" 0.5 >/dev/null 2>&1; then did=delivered; else did=blocked; fi
  total=$((total + 1))
  { [ "${said%% *}" = allow ] && [ $did = delivered ]; } || { [ "${said%% *}" = deny ] && [ $did = blocked ]; } && agree=$((agree + 1))
  printf '  %-8s %-8s %-10s %-10s %-9s %s\n' "$from" "$to" "tcp/$p" "${said%% *}" "$did" "${said#* }"
done <<<"$flows"
echo "  kernel and policy agree on $agree of $total flows"

bold "Tamper-proof: flushing db-1's table by hand"
ip netns exec "$P-db-1" nft flush table inet bulkhead
sleep 0.3
if ip netns exec "$P-web-1" "$py" tests/integration/probe.py tcp 198.18.2.4 5432 0.5 >/dev/null 2>&1; then
  echo "  web-1 reached db-1: table NOT restored"
else
  echo "  web-1 still blocked from db-1; the agent says:"
  grep "changed by another process" "$tmp/agent-node-b.log" | tail -1 | sed 's/^/    /'
fi

bold "Forbidden traffic of other kinds: UDP, ICMP, IPv6"
ip netns exec "$P-batch-1" "$root/build/bench/udp-flood" 198.18.2.4 53 5 | sed 's/^/  batch-1 -> db-1 udp\/53: /'
ip netns exec "$P-web-3" "$py" tests/integration/probe.py icmp 198.18.2.4 8 0 0.5 >/dev/null 2>&1 || echo "  web-3 -> db-1 ping: blocked"
ip netns exec "$P-web-1" "$py" tests/integration/probe.py tcp "$("$py" -c 'import json,sys
for e in json.load(open(sys.argv[1]))["endpoints"]:
    if e["name"] == "db-1": print(e["addresses"][1])' "$tmp/node-b.json")" 5432 0.5 >/dev/null 2>&1 || echo "  web-1 -> db-1 tcp/5432 over IPv6: blocked"

bold "bulkhead flows: the blocked-flow report (newest first)"
# The agents send a window every half second; give the last one time to land.
for _ in $(seq 40); do
  [ "$("$cli" flows --json | "$py" -c 'import json,sys; print(sum(r["proto"]=="udp" for r in json.load(sys.stdin)["flows"]))')" != 0 ] && break
  sleep 0.25
done
sleep 1
"$cli" flows | sed 's/^/  /'

bold "bulkhead flows --rules: what every rule counted (HITS: the kernel's counters; REPORTED: denied-flow reports)"
"$cli" flows --rules | sed 's/^/  /'

bold "bulkhead status"
"$cli" status | sed 's/^/  /'

bold "The blocked-flow page: http://$http/ (Prometheus metrics: http://$http/metrics)"
if $keep; then
  echo; echo "Up; Ctrl-C to clean up. Namespaces: ip netns list | grep $P"
  while sleep 3600; do :; done
fi
