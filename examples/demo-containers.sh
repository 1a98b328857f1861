#!/usr/bin/env bash
# Bulkhead demo on real containers: examples/demo.sh's story, with podman
# containers labelled as the three-tier shop instead of bare namespaces.
# On this machine, in a podman world of its own (storage, networks and
# hooks.d under a temporary directory; podman with runc; an --internal
# network on 198.18.70.0/24 and 2001:db8:70::/64; a busybox image imported
# from busybox-static), it starts one bulkhead-controller and one
# bulkhead-agent with --engine podman and the OCI hook, applies
# examples/three-tier/policy.json, then starts the shop's containers with
# `podman run --label tier=...`: each one's table is in place before its
# first instruction (the hook holds it back until then). It sends allowed
# and forbidden traffic between the containers (the kernel's verdict beside
# what `bulkhead policy explain` says), starts a container whose very first
# instruction is a forbidden connection, flushes a table by hand to show it
# put back, and shows the blocked-flow report (`bulkhead flows`, under the
# containers' names), every rule's hits and `bulkhead status`. Everything it
# made (containers, network, image, firewall rule if any) is removed when it
# ends.
#
#   bash examples/demo-containers.sh           run, show, clean up
#   bash examples/demo-containers.sh --keep    stay up until Ctrl-C (then clean up)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
keep=false
[ "${1:-}" = --keep ] && keep=true

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo-containers.sh: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (podman as root, network namespaces)"

bold "Installing what is missing (Debian packages: podman, runc, busybox-static) and building"
tests/install-deps.sh || die "installing the dependencies failed"
[ -d build ] || meson setup build >/dev/null
ninja -C build >/dev/null || die "the build failed"
CLI=$root/build/cli/bulkhead AGENT=$root/build/agent/bulkhead-agent
controller=$root/build/controller/bulkhead-controller
py=$(command -v /usr/bin/python3 python3 | head -1)
ex=examples/three-tier

P=bhdemo$$
TMP=$(mktemp -d /tmp/bulkhead-demo-containers.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  rm -rf "$TMP"
}
PM_CLEANUP_NEXT=cleanup
# shellcheck source=tests/integration/podman.bash
. tests/integration/podman.bash
pm_init
trap 'exit 130' INT TERM

bold "Validating the policy"
"$CLI" policy validate $ex/policy.json || exit 1

bold "A podman world of the demo's own: image, network, API service"
pm_image || die "podman import failed"
pm_network shop 198.18.70.0/24 2001:db8:70::/64 || die "podman network create failed"
pm_service || die "podman system service did not answer"
echo "  image $IMAGE, network $P-shop (bridge ${PM_BRIDGE[shop]}), API $PM_SOCK"
[ ${#PM_FWD[@]} -gt 0 ] && echo "  (the host's FORWARD policy drops: forwarding accepted on ${PM_FWD[*]} until the end)"

bold "Starting the controller, and the agent for this podman host (--engine podman, the OCI hook)"
port=$((20000 + $$ % 20000))
export BULKHEAD_ADMIN=ipc://$TMP/run/admin.sock
mkdir -p "$TMP/keys/allowed"
"$CLI" keygen "$TMP/keys/controller" >/dev/null
"$CLI" keygen "$TMP/keys/podhost" >/dev/null
cp "$TMP/keys/podhost/public.key" "$TMP/keys/allowed/podhost.key"
"$controller" --listen "tcp://127.0.0.1:$port" --admin "$BULKHEAD_ADMIN" --state-dir "$TMP/controller" \
  --keys "$TMP/keys/controller" --agent-keys "$TMP/keys/allowed" >"$TMP/controller.log" 2>&1 &
pids+=($!)
hooksock=$TMP/run-agent/hook.sock
"$AGENT" --controller "tcp://127.0.0.1:$port" --node podhost --engine "podman:$PM_SOCK" --hook-socket "$hooksock" \
  --state-dir "$TMP/state" --keys "$TMP/keys/podhost" --controller-key "$TMP/keys/controller/public.key" \
  --flow-window-ms 500 --counters-ms 500 >"$TMP/agent.log" 2>&1 &
pids+=($!)
pm_hook "$hooksock" --timeout-ms 5000
echo "  controller on tcp://127.0.0.1:$port; agent podhost (pid ${pids[-1]}) on podman's API"
echo "  hooks.d entry: $(tr -d '\n' <"$PM_DIR/hooks.d/bulkhead.json" | sed 's/  */ /g')"

# No container yet: wait for the agent's session, so that status below
# has a node to wait for.
for _ in $(seq 100); do
  "$CLI" status --json 2>/dev/null | "$py" -c 'import json,sys
sys.exit(not any(n["node"] == "podhost" for n in json.load(sys.stdin)["nodes"]))' 2>/dev/null && break
  sleep 0.1
done

bold "bulkhead policy apply $ex/policy.json"
"$CLI" policy apply $ex/policy.json --comment "demo: three-tier shop on podman" | sed 's/^/  /'
"$CLI" status --wait=20 | sed 's/^/  /' || die "the agent did not converge; logs in $TMP"

bold "podman run: the shop's containers, labelled; each waits in its hook until its table is in place"
servers='for p in 80 443 8080 5432; do nc -ll -p $p -e /bin/true & done; exec sleep 3600'
printf '  %-8s %-26s %-14s %s\n' NAME LABELS ADDRESS "HOOK (from the agent's log)"
n=10
while read -r name labels; do
  n=$((n + 1))
  args=()
  for l in $labels; do args+=(--label "$l"); done
  pm run -d --name "$name" "${args[@]}" --network "$P-shop" --ip "198.18.70.$n" --ip6 "2001:db8:70::$n" \
    "$IMAGE" sh -c "$servers" >/dev/null || die "podman run $name failed"
  said=$(grep "(endpoint $name): " "$TMP/agent.log" | tail -1 | sed 's/.*(endpoint [^)]*): //')
  printf '  %-8s %-26s %-14s %s\n' "$name" "$labels" "198.18.70.$n" "$said"
done <<'EOF'
web-1 app=shop tier=web
web-2 app=shop tier=web
api-1 app=shop tier=api
api-2 app=shop tier=api
db-1 app=shop tier=db
batch-1 app=reports
EOF
"$CLI" status --wait=20 >/dev/null

bold "bulkhead endpoints (the containers, as the agent found them: names and labels from podman)"
"$CLI" endpoints | sed 's/^/  /'
"$CLI" endpoints --json | "$py" -c 'import json,sys
eps = [{"name": e["name"], "labels": e["labels"], "addresses": e["addresses"]} for e in json.load(sys.stdin)["endpoints"]]
json.dump({"node": "podhost", "endpoints": eps}, sys.stdout)' >"$TMP/podhost.json"

bold "Traffic between the containers: what the policy says (bulkhead policy explain) and what the kernel did"
addr() { "$py" -c 'import json,sys
for e in json.load(open(sys.argv[1]))["endpoints"]:
    if e["name"] == sys.argv[2]: print(sorted(e["addresses"], key=lambda a: ":" in a)[int(sys.argv[3])])' "$TMP/podhost.json" "$1" "${2:-0}"; }
printf '  %-8s %-8s %-10s %-8s %-9s %s\n' FROM TO PORT POLICY KERNEL "DECIDED BY (egress | ingress)"
agree=0 total=0
while read -r from to p; do
  src=$(addr "$from") dst=$(addr "$to")
  said=$("$CLI" policy explain $ex/policy.json --inventory "$TMP/podhost.json" --from "$src" --to "$dst" --proto tcp --port "$p" --json |
    "$py" -c 'import json,sys; j=json.load(sys.stdin)
side=lambda s: s["verdict"]+" "+s["reason"] if s else "-"
print("allow" if j["delivered"] else "deny", side(j["egress"]), "|", side(j["ingress"]))')
  if pm exec "$from" nc -w 1 "$dst" "$p" </dev/null >/dev/null 2>&1; then did=delivered; else did=blocked; fi
  total=$((total + 1))
  { [ "${said%% *}" = allow ] && [ $did = delivered ]; } || { [ "${said%% *}" = deny ] && [ $did = blocked ]; } && agree=$((agree + 1))
  printf '  %-8s %-8s %-10s %-8s %-9s %s\n' "$from" "$to" "tcp/$p" "${said%% *}" "$did" "${said#* }"
done <<'EOF'
web-1 api-2 8080
api-1 db-1 5432
web-1 db-1 5432
web-2 api-1 5432
batch-1 db-1 5432
batch-1 web-2 80
db-1 api-1 8080
EOF
echo "  kernel and policy agree on $agree of $total flows"
if pm exec web-1 nc -w 1 "$(addr db-1 1)" 5432 </dev/null >/dev/null 2>&1; then
  echo "  web-1 -> db-1 tcp/5432 over IPv6: delivered (NOT expected)"
else
  echo "  web-1 -> db-1 tcp/5432 over IPv6: blocked, as over IPv4"
fi

bold "A container whose very first instruction is a forbidden connection"
out=$(pm run --name web-9 --label app=shop --label tier=web --network "$P-shop" --ip 198.18.70.40 --ip6 2001:db8:70::40 \
  "$IMAGE" sh -c "nc -w 2 $(addr db-1) 5432 </dev/null 2>/dev/null && echo reached db-1 || echo refused" 2>&1)
echo "  podman run --label tier=web ... nc db-1 5432  ->  $out"
echo "  (web may only call api: its table was in place before its first instruction)"
out=$(pm run --name api-9 --label app=shop --label tier=api --network "$P-shop" --ip 198.18.70.41 --ip6 2001:db8:70::41 \
  "$IMAGE" sh -c "nc -w 2 $(addr db-1) 5432 </dev/null 2>/dev/null && echo reached db-1 || echo refused" 2>&1)
echo "  podman run --label tier=api ... nc db-1 5432  ->  $out (allowed on first try: its real table, not a quarantine)"

bold "Tamper-proof: flushing db-1's table by hand (nsenter into the container's namespace)"
nsenter --net="$(pm_ns db-1)" nft flush table inet bulkhead
sleep 0.3
if pm exec web-1 nc -w 1 "$(addr db-1)" 5432 </dev/null >/dev/null 2>&1; then
  echo "  web-1 reached db-1: table NOT restored"
else
  echo "  web-1 still blocked from db-1; the agent says:"
  grep "changed by another process" "$TMP/agent.log" | tail -1 | sed 's/^/    /'
fi

bold "bulkhead flows: the blocked-flow report, under the containers' names (newest first)"
for _ in $(seq 40); do
  [ "$("$CLI" flows --json | "$py" -c 'import json,sys; print(sum(r["endpoint"]=="web-9" for r in json.load(sys.stdin)["flows"]))')" != 0 ] && break
  sleep 0.25
done
sleep 1
"$CLI" flows 2>&1 | sed 's/^/  /'
echo "  (icmpv6/143 from fe80::: the containers' own MLD reports, which web's and db's isolated egress drops;"
echo "   a warning about records not stored: web-9 and api-9 had exited, and their last packets came after)"

bold "bulkhead flows --rules: what every rule counted"
"$CLI" flows --rules 2>/dev/null | sed 's/^/  /'

bold "bulkhead status"
"$CLI" status | sed 's/^/  /'

if $keep; then
  echo; echo "Up; Ctrl-C to clean up. Containers: podman --root $PM_DIR/root --runroot $PM_DIR/runroot ps"
  while sleep 3600; do :; done
fi
