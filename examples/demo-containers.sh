#!/usr/bin/env bash
# Bulkhead demo on real containers: examples/demo.sh's story, with podman
# (or Docker) containers labelled as the three-tier shop instead of bare
# namespaces. On this machine, in a podman world of its own (storage,
# networks and hooks.d under a temporary directory; podman with runc; an
# --internal network on 198.18.70.0/24 and 2001:db8:70::/64; a busybox
# image imported from busybox-static), it starts one bulkhead-controller
# and one bulkhead-agent with --engine podman and the OCI hook, applies
# examples/three-tier/policy.json, then starts the shop's containers with
# `podman run --label tier=...`: each one's table is in place before its
# first instruction (the hook holds it back until then). With --docker: a
# dockerd of its own instead (tests/integration/docker.bash: its data,
# exec root and socket under the temporary directory, no iptables rules,
# no docker0; 198.18.71.0/24 and 2001:db8:71::/64), the agent with
# --engine docker, `docker run -l tier=...`: the agent puts the table in
# as Docker mounts the container's namespace, before its process runs. It sends allowed
# and forbidden traffic between the containers (the kernel's verdict beside
# what `bulkhead policy explain` says), starts a container whose very first
# instruction is a forbidden connection, flushes a table by hand to show it
# put back, and shows the blocked-flow report (`bulkhead flows`, under the
# containers' names), every rule's hits and `bulkhead status`. Everything it
# made (containers, network, image, firewall rule if any) is removed when it
# ends.
#
#   bash examples/demo-containers.sh           run, show, clean up (podman)
#   bash examples/demo-containers.sh --docker  the same with Docker
#   bash examples/demo-containers.sh --keep    stay up until Ctrl-C (then clean up)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
keep=false engine=podman
for a in "$@"; do
  case $a in
  --keep) keep=true ;;
  --docker) engine=docker ;;
  --podman) engine=podman ;;
  *) echo "usage: $0 [--docker|--podman] [--keep]" >&2; exit 2 ;;
  esac
done

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo-containers.sh: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root ($engine as root, network namespaces)"

bold "Installing what is missing (Debian packages: podman, docker.io, runc, busybox-static) and building"
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
if [ $engine = podman ]; then
  PM_CLEANUP_NEXT=cleanup
  # shellcheck source=tests/integration/podman.bash
  . tests/integration/podman.bash
  pm_init
  net=198.18.70
  c() { pm "$@"; }                     # the engine's client
  c_ns() { pm_ns "$1"; }               # a container's namespace
else
  # shellcheck source=tests/integration/docker.bash
  . tests/integration/docker.bash
  trap 'docker_cleanup; cleanup' EXIT
  net=198.18.71
  c() { $DOCKER "$@"; }
  c_ns() { ckey "$1"; }
fi
net6=2001:db8:${net##*.}
node=$engine-host
trap 'exit 130' INT TERM

bold "Validating the policy"
"$CLI" policy validate $ex/policy.json || exit 1

if [ $engine = podman ]; then
  bold "A podman world of the demo's own: image, network, API service"
  pm_image || die "podman import failed"
  pm_network shop $net.0/24 $net6::/64 || die "podman network create failed"
  pm_service || die "podman system service did not answer"
  echo "  image $IMAGE, network $P-shop (bridge ${PM_BRIDGE[shop]}), API $PM_SOCK"
  [ ${#PM_FWD[@]} -gt 0 ] && echo "  (the host's FORWARD policy drops: forwarding accepted on ${PM_BRIDGE[shop]} until the end)"
else
  bold "A dockerd of the demo's own: its socket, image and network"
  docker_start || die "dockerd did not start"
  docker_image || die "docker import failed"
  docker_network "$P-shop" $net.0/24 $net6::/64 || die "docker network create failed"
  echo "  dockerd on $DSOCK (--iptables=false, --bridge=none), image $IMAGE, network $P-shop"
  [ ${#DOCKER_FWD_RULES[@]} -gt 0 ] && echo "  (the host's FORWARD policy drops: forwarding accepted on the network's bridge until the end)"
fi

if [ $engine = podman ]; then
  bold "Starting the controller, and the agent for this podman host (--engine podman, the OCI hook)"
else
  bold "Starting the controller, and the agent for this Docker host (--engine docker)"
fi
port=$((20000 + $$ % 20000))
export BULKHEAD_ADMIN=ipc://$TMP/run/admin.sock
mkdir -p "$TMP/keys/allowed"
"$CLI" keygen "$TMP/keys/controller" >/dev/null
"$CLI" keygen "$TMP/keys/$node" >/dev/null
cp "$TMP/keys/$node/public.key" "$TMP/keys/allowed/$node.key"
"$controller" --listen "tcp://127.0.0.1:$port" --admin "$BULKHEAD_ADMIN" --state-dir "$TMP/controller" \
  --keys "$TMP/keys/controller" --agent-keys "$TMP/keys/allowed" >"$TMP/controller.log" 2>&1 &
pids+=($!)
hooksock=$TMP/run-agent/hook.sock
if [ $engine = podman ]; then
  engine_args=(--engine "podman:$PM_SOCK" --hook-socket "$hooksock")
else
  engine_args=(--engine "docker:$DSOCK")
fi
"$AGENT" --controller "tcp://127.0.0.1:$port" --node "$node" "${engine_args[@]}" \
  --state-dir "$TMP/state" --keys "$TMP/keys/$node" --controller-key "$TMP/keys/controller/public.key" \
  --flow-window-ms 500 --counters-ms 500 >"$TMP/agent.log" 2>&1 &
pids+=($!)
echo "  controller on tcp://127.0.0.1:$port; agent $node (pid ${pids[-1]}) on $engine's API"
if [ $engine = podman ]; then
  pm_hook "$hooksock" --timeout-ms 5000
  echo "  hooks.d entry: $(tr -d '\n' <"$PM_DIR/hooks.d/bulkhead.json" | sed 's/  */ /g')"
fi

# No container yet: wait for the agent's session, so that status below
# has a node to wait for.
for _ in $(seq 100); do
  "$CLI" status --json 2>/dev/null | "$py" -c 'import json,sys
sys.exit(not any(n["node"] == sys.argv[1] for n in json.load(sys.stdin)["nodes"]))' "$node" 2>/dev/null && break
  sleep 0.1
done

bold "bulkhead policy apply $ex/policy.json"
"$CLI" policy apply $ex/policy.json --comment "demo: three-tier shop on $engine" | sed 's/^/  /'
"$CLI" status --wait=20 | sed 's/^/  /' || die "the agent did not converge; logs in $TMP"

if [ $engine = podman ]; then
  bold "podman run: the shop's containers, labelled; each waits in its hook until its table is in place"
  said_of() { grep "(endpoint $1): " "$TMP/agent.log" | tail -1 | sed 's/.*(endpoint [^)]*): //'; }
  printf '  %-8s %-26s %-14s %s\n' NAME LABELS ADDRESS "HOOK (from the agent's log)"
else
  bold "docker run: the shop's containers, labelled; each one's table goes in as Docker mounts its namespace"
  said_of() { grep -E "endpoint $1: (quarantine table in place|applied bundle)" "$TMP/agent.log" | head -2 |
    sed 's/^\([0-9:.]*\) .*endpoint [^:]*: \(.*\)/\2 at \1/; s/^applied bundle.* at/its own table at/' |
    paste -sd ';' - | sed 's/;/, /'; }
  printf '  %-8s %-26s %-14s %s\n' NAME LABELS ADDRESS "AGENT (from its log)"
fi
servers='for p in 80 443 8080 5432; do nc -ll -p $p -e /bin/true & done; exec sleep 3600'
n=10
while read -r name labels; do
  n=$((n + 1))
  args=()
  for l in $labels; do args+=(--label "$l"); done
  c run -d --name "$name" "${args[@]}" --network "$P-shop" --ip "$net.$n" --ip6 "$net6::$n" \
    "$IMAGE" sh -c "$servers" >/dev/null || die "$engine run $name failed"
  [ $engine = docker ] && "$CLI" status --wait=20 >/dev/null
  printf '  %-8s %-26s %-14s %s\n' "$name" "$labels" "$net.$n" "$(said_of "$name")"
done <<'EOF'
web-1 app=shop tier=web
web-2 app=shop tier=web
api-1 app=shop tier=api
api-2 app=shop tier=api
db-1 app=shop tier=db
batch-1 app=reports
EOF
"$CLI" status --wait=20 >/dev/null

bold "bulkhead endpoints (the containers, as the agent found them: names and labels from $engine)"
"$CLI" endpoints | sed 's/^/  /'
"$CLI" endpoints --json | "$py" -c 'import json,sys
eps = [{"name": e["name"], "labels": e["labels"], "addresses": e["addresses"]} for e in json.load(sys.stdin)["endpoints"]]
json.dump({"node": sys.argv[1], "endpoints": eps}, sys.stdout)' "$node" >"$TMP/node.json"

bold "Traffic between the containers: what the policy says (bulkhead policy explain) and what the kernel did"
addr() { "$py" -c 'import json,sys
for e in json.load(open(sys.argv[1]))["endpoints"]:
    if e["name"] == sys.argv[2]: print(sorted(e["addresses"], key=lambda a: ":" in a)[int(sys.argv[3])])' "$TMP/node.json" "$1" "${2:-0}"; }
printf '  %-8s %-8s %-10s %-8s %-9s %s\n' FROM TO PORT POLICY KERNEL "DECIDED BY (egress | ingress)"
agree=0 total=0
while read -r from to p; do
  src=$(addr "$from") dst=$(addr "$to")
  said=$("$CLI" policy explain $ex/policy.json --inventory "$TMP/node.json" --from "$src" --to "$dst" --proto tcp --port "$p" --json |
    "$py" -c 'import json,sys; j=json.load(sys.stdin)
side=lambda s: s["verdict"]+" "+s["reason"] if s else "-"
print("allow" if j["delivered"] else "deny", side(j["egress"]), "|", side(j["ingress"]))')
  if c exec "$from" nc -w 1 "$dst" "$p" </dev/null >/dev/null 2>&1; then did=delivered; else did=blocked; fi
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
if c exec web-1 nc -w 1 "$(addr db-1 1)" 5432 </dev/null >/dev/null 2>&1; then
  echo "  web-1 -> db-1 tcp/5432 over IPv6: delivered (NOT expected)"
else
  echo "  web-1 -> db-1 tcp/5432 over IPv6: blocked, as over IPv4"
fi

bold "A container whose very first instruction is a forbidden connection"
# The allowed one: up to five tries a second apart, the output says which
# one got through.
tries="for i in 1 2 3 4 5; do nc -w 2 $(addr db-1) 5432 </dev/null 2>/dev/null && { echo reached db-1 on try \$i; exit; }; sleep 1; done; echo refused 5 times"
out=$(c run --name web-9 --label app=shop --label tier=web --network "$P-shop" --ip $net.40 --ip6 $net6::40 \
  "$IMAGE" sh -c "nc -w 2 $(addr db-1) 5432 </dev/null 2>/dev/null && echo reached db-1 || echo refused" 2>&1)
echo "  $engine run --label tier=web ... nc db-1 5432  ->  $out"
echo "  (web may only call api: its table was in place before its first instruction)"
out=$(c run --name api-9 --label app=shop --label tier=api --network "$P-shop" --ip $net.41 --ip6 $net6::41 \
  "$IMAGE" sh -c "$tries" 2>&1)
echo "  $engine run --label tier=api ... nc db-1 5432  ->  $out"
if [ $engine = podman ]; then
  echo "  (allowed on first try: its real table, not a quarantine, and db-1's set already holding its address)"
else
  echo "  (Docker gives a container its address after its namespace, and no hook holds it back: db-1's"
  echo "   set may learn the address just after the first SYN, dropped then and sent again by TCP)"
fi

bold "Tamper-proof: flushing db-1's table by hand (nsenter into the container's namespace)"
nsenter --net="$(c_ns db-1)" nft flush table inet bulkhead
sleep 0.3
if c exec web-1 nc -w 1 "$(addr db-1)" 5432 </dev/null >/dev/null 2>&1; then
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
  echo
  if [ $engine = podman ]; then
    echo "Up; Ctrl-C to clean up. Containers: podman --root $PM_DIR/root --runroot $PM_DIR/runroot ps"
  else
    echo "Up; Ctrl-C to clean up. Containers: $DOCKER ps"
  fi
  while sleep 3600; do :; done
fi
