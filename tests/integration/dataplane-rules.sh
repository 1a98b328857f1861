#!/bin/bash
# dataplane-rules: proves every rule kind of the nft dataplane with real
# TCP, UDP and ICMP traffic (IPv4 and IPv6) between network namespaces.
#
# Its world (world.bash, DESIGN §7): one namespace per endpoint, each joined
# by a veth pair to a bridge inside a dedicated fabric namespace; addresses
# from 198.18.0.0/15 and 2001:db8::/32 only, a per-run prefix, removed on
# exit. The host's own interfaces and firewall are never touched.
#
# Needs root, iproute2 and python3 (tests/integration/probe.py makes the
# traffic; nft is used when present). Usage: dataplane-rules.sh [BUILD_DIR]
set -u
. "$(dirname "$0")/world.bash"
BUILD=${1:-${BUILD_DIR:-$LIB_ROOT/build}}
BULKHEAD=$BUILD/cli/bulkhead
AGENT=$BUILD/agent/bulkhead-agent
NODE=n1

world_init rules || exit 1
world_need "$BULKHEAD" "$AGENT"

# --- the world -----------------------------------------------------------
# name  v4 host  v6 host  labels
ENDPOINTS="
web1   11 11 app=web,name=web1
web2   12 12 app=web,name=web2
db1    21 21 app=db
cache1 22 22 app=cache
svc1   23 23 app=svc
iso1   24 24 app=iso
aud1   25 25 app=aud
open1  26 26 app=open
open2  27 27 app=open,secret=yes
egr1   28 28 app=egr
ext1   65 41 role=ext
ext2   66 42 role=ext
"

v4() { echo "198.18.0.$(awk -v n="$1" '$1 == n {print $2}' <<<"$ENDPOINTS")"; }
v6() { echo "2001:db8:1::$(awk -v n="$1" '$1 == n {print $3}' <<<"$ENDPOINTS")"; }

build_world() {
	local name h4 h6 labels
	while read -r name h4 h6 labels; do
		[ -z "$name" ] && continue
		world_add_endpoint "$name" "$h4" "$h6" || return 1
	done <<<"$ENDPOINTS"
}

write_inventory() {
	local first=1 name h4 h6 labels kv
	{
		printf '{\n  "node": "%s",\n  "endpoints": [\n' "$NODE"
		while read -r name h4 h6 labels; do
			[ -z "$name" ] && continue
			[ $first = 1 ] || printf ',\n'
			first=0
			printf '    {"name": "%s", "netns": "/run/netns/%s-%s", "labels": {' "$name" "$P" "$name"
			local sep=""
			for kv in ${labels//,/ }; do
				printf '%s"%s": "%s"' "$sep" "${kv%%=*}" "${kv#*=}"
				sep=", "
			done
			printf '}, "addresses": ["198.18.0.%s", "2001:db8:1::%s"]}' "$h4" "$h6"
		done <<<"$ENDPOINTS"
		printf '\n  ]\n}\n'
	} >"$TMP/inventory.json"
}

write_policy() {
	cat >"$TMP/policy.json" <<'EOF'
{
  "version": 1,
  "defaults": { "ingress": "allow", "egress": "allow" },
  "groups": {
    "web":    { "labels": { "app": "web" } },
    "web2":   { "labels": { "name": "web2" } },
    "db":     { "labels": { "app": "db" } },
    "cache":  { "labels": { "app": "cache" } },
    "svc":    { "labels": { "app": "svc" } },
    "iso":    { "labels": { "app": "iso" } },
    "aud":    { "labels": { "app": "aud" } },
    "egr":    { "labels": { "app": "egr" } },
    "open":   { "labels": { "app": "open" } },
    "office": { "cidrs": ["198.18.0.64/26", "2001:db8:1::40/122"],
                "except": ["198.18.0.66/32", "2001:db8:1::42/128"] }
  },
  "policies": [
    { "name": "db-ingress", "applies_to": "db", "order": 100,
      "ingress": [
        { "action": "deny", "from": ["web2"] },
        { "action": "allow", "from": ["web"],
          "ports": ["tcp/5432", "tcp/8000-8100", "udp/53", "icmp/8", "icmpv6/128/0"] }
      ] },
    { "name": "cache-first", "applies_to": "cache", "order": 50,
      "ingress": [ { "action": "allow", "from": ["web2"], "ports": ["tcp/6379"] } ] },
    { "name": "cache", "applies_to": "cache", "order": 100,
      "ingress": [
        { "action": "deny", "from": ["web"], "ports": ["tcp/6379"] },
        { "action": "allow" }
      ] },
    { "name": "svc-office", "applies_to": "svc",
      "ingress": [ { "action": "allow", "from": ["office"], "ports": ["tcp/443"] } ] },
    { "name": "iso", "applies_to": "iso", "ingress": [] },
    { "name": "aud", "applies_to": "aud", "mode": "audit",
      "ingress": [ { "action": "deny", "from": ["web"] } ] },
    { "name": "egr", "applies_to": "egr",
      "egress": [
        { "action": "deny", "to": [ { "labels": { "secret": "yes" } } ] },
        { "action": "allow", "to": ["open"], "ports": ["tcp/80", "icmp/8", "icmpv6/128"] }
      ] }
  ]
}
EOF
}

PORTS="tcp:80 tcp:81 tcp:443 tcp:5432 tcp:5433 tcp:6379 tcp:6380 tcp:7999 tcp:8000 tcp:8100 tcp:8101 udp:53 udp:54 udp:80"

start_listeners() {
	local name rest
	while read -r name rest; do
		[ -z "$name" ] && continue
		# shellcheck disable=SC2086
		ip netns exec "$P-$name" "$PYTHON" "$PROBE" serve "$TMP/ready-$name" $PORTS \
			>"$TMP/serve-$name.log" 2>&1 &
	done <<<"$ENDPOINTS"
	while read -r name rest; do
		[ -z "$name" ] && continue
		for _ in $(seq 50); do
			[ -e "$TMP/ready-$name" ] && break
			sleep 0.1
		done
		[ -e "$TMP/ready-$name" ] || return 1
	done <<<"$ENDPOINTS"
}

# expect pass|fail FROM DESCRIPTION -- PROBE ARGS (without the timeout)
expect() {
	local want=$1 from=$2 what=$3 timeout got
	shift 4
	[ "$want" = pass ] && timeout=$PASS_TIMEOUT || timeout=$FAIL_TIMEOUT
	set -- "$@" "$timeout"
	if ip netns exec "$P-$from" "$PYTHON" "$PROBE" "$@" >/dev/null 2>&1; then
		got=pass
	else
		got=fail
	fi
	if [ "$got" = "$want" ]; then
		ok "$what: $want"
	else
		not_ok "$what: expected $want, got $got"
	fi
}

# tcp|udp WANT FROM TO PORT [4|6]
flow() {
	local proto=$1 want=$2 from=$3 to=$4 port=$5 fam=${6:-4} addr
	[ "$fam" = 6 ] && addr=$(v6 "$to") || addr=$(v4 "$to")
	expect "$want" "$from" "$from -> $to $proto/$port IPv$fam" -- "$proto" "$addr" "$port"
}

# icmp WANT FROM TO TYPE CODE 4|6
icmp() {
	local want=$1 from=$2 to=$3 type=$4 code=$5 fam=$6 addr
	[ "$fam" = 6 ] && addr=$(v6 "$to") || addr=$(v4 "$to")
	expect "$want" "$from" "$from -> $to icmp type $type code $code IPv$fam" -- icmp "$addr" "$type" "$code"
}

# --- set-up --------------------------------------------------------------
if ! build_world; then
	not_ok "building the namespace world"
	finish
	exit 1
fi
write_inventory
write_policy

if "$BULKHEAD" policy compile "$TMP/policy.json" --inventory "$TMP/inventory.json" --node "$NODE" \
	>"$TMP/bundle.json" 2>"$TMP/compile.err"; then
	ok "policy compiles to a bundle for $NODE"
else
	not_ok "policy compiles to a bundle for $NODE: $(head -5 "$TMP/compile.err")"
	finish
	exit 1
fi

if ! start_listeners; then
	not_ok "starting listeners"
	finish
	exit 1
fi

# Before any policy: everything flows (and proves the probes themselves).
flow tcp pass web1 db1 5433
icmp pass web1 open1 13 0 4 # timestamp requests are answered: the type 13 check below means something
icmp pass web1 open1 128 1 6 # so are echo requests with code 1

AGENT_ARGS=(--bundle "$TMP/bundle.json" --inventory "$TMP/inventory.json" --node "$NODE")
if "$AGENT" "${AGENT_ARGS[@]}" --dataplane null --once >"$TMP/null.out" 2>&1 &&
	! ip netns exec "$P-db1" nft list table inet bulkhead >/dev/null 2>&1; then
	ok "--dataplane null builds every batch and loads nothing"
else
	not_ok "--dataplane null builds every batch and loads nothing: $(tail -3 "$TMP/null.out")"
fi

if "$AGENT" "${AGENT_ARGS[@]}" --print-ruleset >"$TMP/ruleset.nft" 2>"$TMP/print.err" &&
	grep -q 'table inet bulkhead {' "$TMP/ruleset.nft"; then
	ok "--print-ruleset prints nft text"
else
	not_ok "--print-ruleset prints nft text: $(head -3 "$TMP/print.err")"
fi
if command -v nft >/dev/null; then
	# One endpoint's text, checked by nft itself inside a test namespace.
	awk -v want="# endpoint db1 " 'index($0, want) == 1 {on = 1; next} /^# endpoint / {on = 0} on' \
		"$TMP/ruleset.nft" >"$TMP/db1.nft"
	if ip netns exec "$P-fab" nft -c -f "$TMP/db1.nft" 2>"$TMP/nftc.err"; then
		ok "printed ruleset is accepted by nft -f"
	else
		not_ok "printed ruleset is accepted by nft -f: $(head -3 "$TMP/nftc.err")"
	fi
fi

if "$AGENT" "${AGENT_ARGS[@]}" --once >"$TMP/agent.out" 2>&1; then
	ok "bulkhead-agent --once applies every endpoint"
else
	not_ok "bulkhead-agent --once applies every endpoint: $(grep -v ': applied' "$TMP/agent.out" | head -5)"
fi
# Applying again replaces each table in one transaction.
if "$AGENT" "${AGENT_ARGS[@]}" --once >"$TMP/agent2.out" 2>&1 &&
	[ "$(ip netns exec "$P-db1" nft list tables | grep -c 'inet bulkhead')" = 1 ]; then
	ok "applying again replaces the table"
else
	not_ok "applying again replaces the table: $(grep -v ': applied' "$TMP/agent2.out" | head -5)"
fi

# --- allow and deny by label group, ports, port ranges, ICMP types ------
flow tcp pass web1 db1 5432 4
flow tcp pass web1 db1 5432 6
flow tcp fail web2 db1 5432 4 # deny web2 comes first: first match
flow tcp fail web2 db1 5432 6
flow tcp fail cache1 db1 5432 4 # not in web: isolated, default deny
flow tcp fail web1 db1 5433 4   # port not listed
flow tcp fail web1 db1 7999 4   # just below the range
flow tcp pass web1 db1 8000 4   # range ends
flow tcp pass web1 db1 8100 6
flow tcp fail web1 db1 8101 4 # just above the range
flow udp pass web1 db1 53 4
flow udp pass web1 db1 53 6
flow udp fail web1 db1 54 4
icmp pass web1 db1 8 0 4
icmp fail web1 db1 13 0 4 # ICMP type other than the allowed echo
icmp pass web1 db1 128 0 6
icmp fail web1 db1 128 1 6 # icmpv6/128/0 pins the code too
icmp fail cache1 db1 8 0 4
flow tcp pass db1 web1 80 4 # db1's egress is not isolated

# --- order: lower order first, then list order ---------------------------
flow tcp fail web1 cache1 6379 4 # policy cache: deny web tcp/6379
flow tcp pass web2 cache1 6379 4 # cache-first (order 50) allows web2 before that
flow tcp pass web1 cache1 6380 4 # later rule of the same policy: allow all
flow tcp pass ext1 cache1 6379 6

# --- network group: CIDR with except -----------------------------------
flow tcp pass ext1 svc1 443 4
flow tcp pass ext1 svc1 443 6
flow tcp fail ext2 svc1 443 4 # in the CIDR but excepted
flow tcp fail ext2 svc1 443 6
flow tcp fail web1 svc1 443 4 # outside the CIDR

# --- isolation by an empty ingress list ----------------------------------
flow tcp fail web1 iso1 80 4
flow tcp fail web1 iso1 80 6
icmp fail web1 iso1 8 0 4
flow tcp pass iso1 web1 80 6 # its own connections still work (replies, ND)
flow udp pass iso1 web1 53 4

# --- audit mode: would-be drops pass -------------------------------------
flow tcp pass web1 aud1 80 4 # audit deny rule
flow tcp pass cache1 aud1 80 6 # audit default deny
icmp pass web2 aud1 128 0 6

# --- egress --------------------------------------------------------------
flow tcp pass egr1 open1 80 6 # first IPv6 from egr1: needs neighbour discovery out
flow tcp pass egr1 open1 80 4
flow tcp fail egr1 open1 81 4 # port not allowed
flow udp fail egr1 open1 80 4 # protocol not allowed
flow tcp fail egr1 open2 80 4 # deny secret=yes comes first
flow tcp fail egr1 open2 80 6
icmp pass egr1 open1 8 0 4
icmp pass egr1 open1 128 0 6
flow tcp fail egr1 web1 80 4 # egress isolated
flow tcp pass web1 egr1 80 4 # its ingress is untouched

# --- counters and log prefixes -------------------------------------------
rules=$(ip netns exec "$P-aud1" nft list chain inet bulkhead ingress 2>/dev/null)
if grep -E 'counter packets [1-9][0-9]* .*log prefix "bh:A:i0"' <<<"$rules" >/dev/null; then
	ok "audit deny rule counted its packets and logs as bh:A:i0"
else
	not_ok "audit deny rule counted its packets and logs as bh:A:i0"
fi
rules=$(ip netns exec "$P-db1" nft list chain inet bulkhead ingress 2>/dev/null)
if grep -E 'counter packets [1-9][0-9]* .*log prefix "bh:D:i-".* drop' <<<"$rules" >/dev/null; then
	ok "default deny counted its drops and logs as bh:D:i-"
else
	not_ok "default deny counted its drops and logs as bh:D:i-"
fi

finish
