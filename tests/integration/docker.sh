#!/bin/bash
# docker: real Docker containers as endpoints (--engine docker), with real
# packets, against a dockerd of the test's own (docker.bash):
#   - running containers are endpoints with their labels and
#     bulkhead.io/engine=docker; one that joins another's namespace and
#     one on the host's network are not; --inventory merges, and a name
#     both report stays the inventory's, the engine's refused in
#     status.json;
#   - the policy's verdicts between containers, denied flows under the
#     containers' names;
#   - a container started after the policy: its first instruction, a
#     connection only its own egress forbids, is refused (the quarantine
#     table is in before its process runs); an allowed one connects;
#   - restart (a new namespace under the same name), rename, network
#     connect and disconnect, removal (its address leaves every set),
#     the agent restarted with containers running, dockerd restarted:
#     each ends with the right table in the right namespace;
#   - the host: no iptables chain of Docker's, its sysctls as they were.
# Usage: docker.sh [BUILD_DIR]
set -u
. "$(dirname "$0")/world.bash"
. "$(dirname "$0")/docker.bash"
BUILD=${1:-$LIB_ROOT/build}

world_init docker || exit 1
trap 'docker_cleanup; world_cleanup' EXIT
world_daemons "$BUILD" n1 || exit 1
IPT_BEFORE=$( (iptables-save; ip6tables-save) 2>/dev/null | grep -c -i docker)
docker_start || exit 1
check "dockerd adds no iptables chain or rule of its own to the host" \
	test "$( (iptables-save; ip6tables-save) 2>/dev/null | grep -c -i docker)" = "$IPT_BEFORE"
docker_image || exit 1
N=$(($$ % 200 + 20))
NET=bhd$$ NET2=bhd$$b
docker_network "$NET" "198.19.$N.0/24" "2001:db8:d0:$N::/64" || exit 1
docker_network "$NET2" "198.18.$N.0/24" "2001:db8:d1:$N::/64" || exit 1

run() { # NAME LABEL... -- ARGS...: a container on $NET, detached
	local name=$1 args=()
	shift
	while [ $# -gt 0 ] && [ "$1" != -- ]; do args+=(-l "$1"); shift; done
	shift
	$DOCKER run -d --name "$name" --network "$NET" "${args[@]}" "$@" >/dev/null
}
run web1 app=web bulkhead.io/port.http=tcp/80 -- --restart always "$IMAGE" nc -ll -p 80 -e /bin/ok || exit 1
run open1 app=open -- "$IMAGE" nc -ll -p 80 -e /bin/ok || exit 1
run client1 app=client -- --restart always "$IMAGE" sleep 100000 || exit 1
run other1 app=other -- "$IMAGE" sleep 100000 || exit 1
run clash1 app=web -- "$IMAGE" sleep 100000 || exit 1
$DOCKER run -d --name joined --network container:web1 -l app=web "$IMAGE" sleep 100000 >/dev/null || exit 1
$DOCKER run -d --name hostnet --network host -l app=web "$IMAGE" sleep 100000 >/dev/null || exit 1
WEB=$(cip web1) WEB6=$(cip6 web1) OPEN=$(cip open1)

# The inventory merges: a namespace of its own, and one whose name a
# container has too.
world_add_endpoint filens 41 41 || exit 1
world_add_endpoint clashns 42 42 || exit 1
cat >"$TMP/n1.json" <<JSON
{"node": "n1", "endpoints": [
 {"name": "filens", "netns": "/run/netns/$P-filens", "labels": {"app": "file"}},
 {"name": "clash1", "netns": "/run/netns/$P-clashns", "labels": {"app": "file"}}]}
JSON
# web accepts clients on tcp/80, nothing else; open accepts anyone on
# tcp/80; restricted containers may send nothing at all (their own
# egress: nothing else stops them reaching open).
cat >"$TMP/policy.json" <<'JSON'
{"version": 1,
 "groups": {"web": {"labels": {"app": "web"}}, "clients": {"labels": {"app": "client"}},
            "open": {"labels": {"app": "open"}}, "restricted": {"labels": {"app": "restricted"}}},
 "policies": [
  {"name": "web-in", "applies_to": "web", "ingress": [{"from": ["clients"], "ports": ["tcp/80"]}]},
  {"name": "open-in", "applies_to": "open", "ingress": [{"ports": ["tcp/80"]}]},
  {"name": "restricted-out", "applies_to": "restricted", "egress": []}]}
JSON

# --once: the list, then exit; 1 when the engine does not answer.
echo '{"node": "n1", "endpoints": [{"name": "web1", "labels": {"app": "web"}, "addresses": []}]}' >"$TMP/once.json"
bh policy compile "$TMP/policy.json" --inventory "$TMP/once.json" --node n1 >"$TMP/once-bundle.json"
once() { "$AGENT" --node n1 --engine "docker:$1" --once --dataplane null --bundle "$TMP/once-bundle.json" >>"$TMP/once.log" 2>&1; }
check "--once lists the containers and exits 0" once "$DSOCK"
check "--once exits 1 when the engine does not answer" eval '! once "$TMP/nothing.sock"'

AGENT_ARGS=(--engine "docker:$DSOCK" --flow-window-ms 200 --recheck-ms 200)
controller_start
agent_start n1
bh policy apply "$TMP/policy.json" >/dev/null

up_to_date() { bh status --wait=1 >/dev/null 2>&1; }
check "the agent is up to date" wait_for 30 up_to_date

# eps: the controller's endpoints of n1, as "name[labels]" sorted.
endpoints_are() {
	local got
	got=$(bh endpoints --json 2>/dev/null | json_get "' '.join(sorted(e['name'] for e in j['endpoints'] if e['node']=='n1'))")
	[ "$got" = "$1" ] || { LAST="$got"; return 1; }
}
LAST=
check "endpoints: the running containers with their own namespace and the inventory's" \
	wait_for 20 endpoints_are "clash1 client1 filens open1 other1 web1"
[ -n "$LAST" ] && echo "# endpoints: $LAST"
label_of() { # NAME KEY
	bh endpoints --json 2>/dev/null | json_get "[e['labels'].get('$2') for e in j['endpoints'] if e['name']=='$1'][0]"
}
check "a container's labels come along unchanged, with bulkhead.io/engine=docker" \
	test "$(label_of web1 app) $(label_of web1 bulkhead.io/engine) $(label_of filens bulkhead.io/engine)" = "web docker None"
status() { json_get "$1" <"$TMP/state-n1/status.json"; }
check "a name both sources report stays the inventory's; Docker's is refused, named in status.json" \
	test "$(status "j['refused']['clash1']['source']") $(label_of clash1 app)" = "docker file"
check "named ports from bulkhead.io/port.NAME labels reach the controller's endpoint" \
	test "$(status "[e['ports'] for e in j['endpoints'] if e['name']=='web1'][0]")" = "{'http': 'tcp/80'}"

# can_c FROM PROTO ADDR ARG...: a probe from container FROM's namespace.
can_c() {
	local from=$1 proto=$2
	shift 2
	nsenter --net="$(ckey "$from")" "$PYTHON" "$PROBE" "$proto" "$@" "$PASS_TIMEOUT" >/dev/null 2>&1
}
cannot_c() {
	local from=$1 proto=$2
	shift 2
	! nsenter --net="$(ckey "$from")" "$PYTHON" "$PROBE" "$proto" "$@" "$FAIL_TIMEOUT" >/dev/null 2>&1
}
verdicts() { # the policy between the running containers
	can_c "$1" tcp "$WEB" 80 && can_c "$1" tcp "$WEB6" 80 && cannot_c other1 tcp "$WEB" 80 &&
		cannot_c other1 tcp "$WEB6" 80
}
check "client1 reaches web1 on tcp/80 (IPv4, IPv6); other1 does not" verdicts client1

flows_of() { # PYTHON-CONDITION over rows r: the packets reported
	bh flows --limit 0 --json 2>/dev/null | json_get "sum(r['count'] for r in j['flows'] if $1)"
}
reported() { [ "$(flows_of "$1")" -ge 1 ] 2>/dev/null; }
check "other1's denied connections are reported under the containers' names" \
	wait_for 10 reported "r['src_endpoint']=='n1/other1' and r['dst_endpoint']=='n1/web1' and r['endpoint']=='web1' and r['rule']=='default-deny'"

# --- a container started after the policy: from its first packet ---
# Its first instruction connects to open1, which takes anyone: only its
# own table (the quarantine one, or its own) can refuse it.
$DOCKER run -d --name late-restricted --network "$NET" -l app=restricted "$IMAGE" \
	sh -c "nc -w 1 $OPEN 80 </dev/null | grep -q ok && echo CONNECTED; echo DONE; sleep 100000" >/dev/null
said() { $DOCKER logs "$1" 2>&1 | grep -q "$2"; }
wait_for 10 said late-restricted DONE
check "a restricted container's very first connection is refused (by its own egress alone)" \
	eval '! said late-restricted CONNECTED'
check "its namespace held the quarantine table before its own table came" \
	grep -q "endpoint late-restricted: quarantine table in place" "$TMP/agent-n1.log"
grep -q "container late-restricted .*quarantined until" "$TMP/agent-n1.log" &&
	grep -q "endpoint late-restricted: addresses (none)" "$TMP/agent-n1.log" &&
	echo "# (reported as Docker mounted its namespace: before its addresses, before its process)"
check "and it was reported under its name: quarantine or its egress' default deny" \
	wait_for 10 reported "r['endpoint']=='late-restricted' and r['direction']=='egress' and r['rule'] in ('quarantine','default-deny')"
check "open1 itself takes anyone (so the refusal was late-restricted's own)" can_c other1 tcp "$OPEN" 80
$DOCKER run -d --name late-client --network "$NET" -l app=client "$IMAGE" \
	sh -c "for i in 1 2 3 4 5 6 7 8 9 10; do nc -w 1 $WEB 80 </dev/null | grep -q ok && { echo CONNECTED \$i; break; }; sleep 0.3; done; sleep 100000" >/dev/null
check "an allowed container started after the policy connects (web1's ingress learnt its address)" \
	wait_for 15 said late-client CONNECTED
echo "# late-client connected on try $($DOCKER logs late-client 2>&1 | sed -n 's/^CONNECTED //p') (a first try" \
	"fails when web1's set has not got its address yet: Docker configures it after the namespace)"

# --- restart: a new namespace under the same name ---
OLDKEY=$(ckey web1)
$DOCKER restart -t 0 web1 >/dev/null
NEWKEY=$(ckey web1)
applied_in() { # NAME NETNS: the endpoint's table is applied in that namespace
	[ "$(status "[e['netns'] for e in j['endpoints'] if e['name']=='$1' and e['present'] and e['applied']==j['bundle']]")" = "['$2']" ]
}
check "web1 restarted: a new namespace ($NEWKEY), its table there" \
	wait_for 15 applied_in web1 "$NEWKEY"
[ "$OLDKEY" = "$NEWKEY" ] && not_ok "docker restart gave web1 the same namespace path"
table_in() { nsenter --net="$1" nft list table inet bulkhead >/dev/null 2>&1; }
check "the table is in web1's new namespace" table_in "$NEWKEY"
WEB=$(cip web1) WEB6=$(cip6 web1)
check "after the restart: client1 reaches web1, other1 does not" wait_for 10 verdicts client1

# --- rename ---
$DOCKER rename client1 client1b
check "client1 renamed client1b: the controller's endpoints follow" \
	wait_for 10 endpoints_are "clash1 client1b filens late-client late-restricted open1 other1 web1"
check "client1b (a client still) reaches web1" wait_for 10 verdicts client1b

# --- network connect / disconnect: addresses follow ---
addresses_of() { bh endpoints --json 2>/dev/null | json_get "' '.join(sorted([e for e in j['endpoints'] if e['name']=='$1'][0]['addresses']))"; }
has_address() { addresses_of "$1" | grep -qw -- "$2"; }
$DOCKER network connect "$NET2" other1
O2=$(cip other1 "$NET2")
check "other1 connected to a second network: its address $O2 reaches the controller" wait_for 10 has_address other1 "$O2"
$DOCKER network disconnect "$NET2" other1
check "and disconnected: the address leaves" wait_for 10 eval '! has_address other1 "$O2"'

# --- removal: the address leaves every set ---
run client2 app=client -- "$IMAGE" sleep 100000 || exit 1
C2=$(cip client2)
in_web_sets() { nsenter --net="$(ckey web1)" nft list table inet bulkhead 2>/dev/null | grep -qw -- "$1"; }
check "client2 started: its address $C2 is in web1's clients set" wait_for 10 in_web_sets "$C2"
$DOCKER rm -f client2 >/dev/null
check "client2 removed: its address left web1's sets" wait_for 10 eval '! in_web_sets "$C2"'
check "and the controller's endpoints" \
	wait_for 10 endpoints_are "clash1 client1b filens late-client late-restricted open1 other1 web1"

# --- the agent restarted with containers running ---
kill "${AGENT_PID[n1]}"
wait "${AGENT_PID[n1]}" 2>/dev/null
check "the agent stopped: the tables stay (fail-static)" verdicts client1b
agent_start n1
check "the agent back: up to date, same endpoints" wait_for 20 endpoints_are "clash1 client1b filens late-client late-restricted open1 other1 web1"
check "and the same verdicts" wait_for 10 verdicts client1b

# --- dockerd restarted: its containers stop; --restart always ones come back ---
docker_stop
gone() { endpoints_are "clash1 filens"; }
check "dockerd stopped: its containers' endpoints are gone, the inventory's stay" wait_for 20 gone
docker_start || exit 1
check "dockerd back: the agent reconnects, the restarted containers are endpoints again" \
	wait_for 30 endpoints_are "clash1 client1b filens web1"
check "web1's table is in its new namespace" wait_for 15 applied_in web1 "$(ckey web1)"
check "the agent counted the reconnect" test "$(status "j['sources'][0]['reconnects'] >= 1")" = True
WEB=$(cip web1) WEB6=$(cip6 web1)
run other2 app=other -- "$IMAGE" sleep 100000 || exit 1
verdicts2() { can_c client1b tcp "$WEB" 80 && cannot_c other2 tcp "$WEB" 80; }
check "and the verdicts hold for old and new containers" wait_for 15 verdicts2

check "the host's firewall is still without Docker's chains" \
	test "$( (iptables-save; ip6tables-save) 2>/dev/null | grep -c -i docker)" = "$IPT_BEFORE"
finish
