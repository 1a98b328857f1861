#!/bin/bash
# dataplane-delta: proves that a membership change reaches the kernel as a
# set-element delta (nft_batch_build_update) that leaves chains, rule
# handles and counters alone, that a rule change replaces the table, and
# that a delta the kernel rejects leaves the old table whole. Real traffic
# decides; every delta's sets are compared with a fresh build's.
#
# Its world (world.bash, DESIGN §7): namespaces joined by veth pairs to a
# bridge inside a dedicated fabric namespace, addresses from 198.18.0.0/15
# and 2001:db8::/32 only, a per-run prefix, removed on exit.
#
# Needs root, iproute2, nft and python3. Usage: dataplane-delta.sh [BUILD_DIR]
set -u
. "$(dirname "$0")/world.bash"
BUILD=${1:-${BUILD_DIR:-$LIB_ROOT/build}}
BULKHEAD=$BUILD/cli/bulkhead
APPLY=$BUILD/bench/nft-apply

world_init delta || exit 1
world_need nft "$BULKHEAD" "$APPLY"

# --- the world -----------------------------------------------------------
# name v4 v6 (198.18.0.0/16 and 2001:db8:2::/64 on one bridge). srv holds
# the table under test; ext sits in the office network group.
ENDPOINTS="
srv   198.18.1.10 2001:db8:2::10
web1  198.18.1.11 2001:db8:2::11
web2  198.18.1.12 2001:db8:2::12
other 198.18.1.13 2001:db8:2::13
ext   198.18.3.5  2001:db8:2::305
"
v4() { awk -v n="$1" '$1 == n {print $2}' <<<"$ENDPOINTS"; }
v6() { awk -v n="$1" '$1 == n {print $3}' <<<"$ENDPOINTS"; }

build_world() {
	local name a4 a6
	while read -r name a4 a6; do
		[ -z "$name" ] && continue
		world_add_ns "$name" "$a4/16" "$a6/64" || return 1
	done <<<"$ENDPOINTS"
	# Namespaces without traffic, for comparing a delta with a fresh build.
	ip netns add "$P-chk1" && ip netns add "$P-chk2"
}

# inventory FILE NAME:LABELS... (local node n1, addresses from ENDPOINTS)
inventory() {
	local out=$1 first=1 spec name labels
	shift
	{
		printf '{"node": "n1", "endpoints": ['
		for spec in "$@"; do
			name=${spec%%:*}
			labels=${spec#*:}
			[ $first = 1 ] || printf ','
			first=0
			printf '\n {"name": "%s", "netns": "/run/netns/%s-%s", "labels": {"app": "%s"}, "addresses": ["%s", "%s"]}' \
				"$name" "$P" "$name" "$labels" "$(v4 "$name")" "$(v6 "$name")"
		done
		printf '\n]}\n'
	} >"$out"
}

# remote FILE GHOST [N]: endpoints of node n2, N (20) more members of
# web, and with GHOST 1 the first member of the otherwise empty ghost.
remote() {
	local out=$1 ghost=$2 n=${3:-20} i
	{
		printf '{"node": "n2", "endpoints": ['
		for i in $(seq 1 "$n"); do
			printf '\n {"name": "rweb%d", "labels": {"app": "web"}, "addresses": ["198.18.%d.%d", "2001:db8:8::%x"]},' \
				"$i" $((8 + i / 250)) $((i % 250 + 1)) "$i"
		done
		if [ "$ghost" = 1 ]; then
			printf '\n {"name": "rghost", "labels": {"app": "ghost"}, "addresses": ["198.18.9.1", "2001:db8:9::1"]},'
		fi
		printf '\n {"name": "rdb", "labels": {"app": "db"}, "addresses": ["198.18.8.200"]}'
		printf '\n]}\n'
	} >"$out"
}

# policy FILE WEB_PORTS OFFICE_CIDRS OFFICE_EXCEPT
policy() {
	cat >"$1" <<EOF
{
  "version": 1,
  "defaults": { "ingress": "allow", "egress": "allow" },
  "groups": {
    "srv":    { "labels": { "app": "srv" } },
    "web":    { "labels": { "app": "web" } },
    "ghost":  { "labels": { "app": "ghost" } },
    "office": { "cidrs": [$3], "except": [$4] }
  },
  "policies": [
    { "name": "srv-in", "applies_to": "srv",
      "ingress": [
        { "action": "allow", "from": ["web"], "ports": [$2] },
        { "action": "allow", "from": ["office"], "ports": ["tcp/443"] },
        { "action": "allow", "from": ["ghost"], "ports": ["tcp/22"] }
      ] }
  ]
}
EOF
}

# compile NAME POLICY LOCAL REMOTE: bundle $TMP/NAME.json for node n1
compile() {
	"$BULKHEAD" policy compile "$2" --inventory "$3" --inventory "$4" --node n1 \
		>"$TMP/$1.json" 2>"$TMP/$1.err"
}

WEB_PORTS='"tcp/80", "icmp/8", "icmpv6/128"'
OFFICE_A='"198.18.3.0/26", "2001:db8:2::300/120"'
EXCEPT_A='"198.18.3.5/32", "2001:db8:2::305/128"'

if ! build_world; then
	not_ok "building the namespace world"
	finish
	exit
fi
policy "$TMP/p1.json" "$WEB_PORTS" "$OFFICE_A" "$EXCEPT_A"
policy "$TMP/p-rule.json" "$WEB_PORTS, \"tcp/81\"" "$OFFICE_A" "$EXCEPT_A"
policy "$TMP/p-office.json" "$WEB_PORTS" '"198.18.3.0/25", "2001:db8:2::200/119"' \
	'"198.18.3.6/32", "2001:db8:2::306/128"'
inventory "$TMP/inv-old.json" srv:srv web1:web other:other ext:ext
inventory "$TMP/inv-new.json" srv:srv web1:web web2:web other:other ext:ext
inventory "$TMP/inv-swap.json" srv:srv web2:web other:other ext:ext
remote "$TMP/r0.json" 0
remote "$TMP/r1.json" 1
remote "$TMP/r-bulk.json" 0 700
# Interval edge cases: ranges from 0 and to the top of the address space
# (no end element), splits, merges of adjacent CIDRs, single addresses.
policy "$TMP/p-c.json" "$WEB_PORTS" '"0.0.0.0/0", "::/0"' '"198.18.0.0/15", "2001:db8::/32"'
policy "$TMP/p-d.json" "$WEB_PORTS" '"0.0.0.0/0", "::/0"' '"198.18.3.0/24", "255.255.255.255/32", "::/128"'
policy "$TMP/p-e.json" "$WEB_PORTS" '"198.18.3.0/24", "198.18.5.0/24", "0.0.0.0/32", "2001:db8:2::300/120"' \
	'"198.18.3.128/25"'
policy "$TMP/p-f.json" "$WEB_PORTS" \
	'"198.18.3.0/24", "198.18.4.0/24", "198.18.5.0/24", "255.255.255.0/24", "2001:db8:2::200/119"' \
	'"198.18.4.7/32", "2001:db8:2::3ff/128"'
if compile old "$TMP/p1.json" "$TMP/inv-old.json" "$TMP/r0.json" &&
	compile new "$TMP/p1.json" "$TMP/inv-new.json" "$TMP/r0.json" &&
	compile swap "$TMP/p1.json" "$TMP/inv-swap.json" "$TMP/r0.json" &&
	compile ghost "$TMP/p1.json" "$TMP/inv-old.json" "$TMP/r1.json" &&
	compile rule "$TMP/p-rule.json" "$TMP/inv-old.json" "$TMP/r0.json" &&
	compile office "$TMP/p-office.json" "$TMP/inv-old.json" "$TMP/r0.json" &&
	compile bulk "$TMP/p1.json" "$TMP/inv-old.json" "$TMP/r-bulk.json" &&
	compile c "$TMP/p-c.json" "$TMP/inv-old.json" "$TMP/r0.json" &&
	compile d "$TMP/p-d.json" "$TMP/inv-old.json" "$TMP/r0.json" &&
	compile e "$TMP/p-e.json" "$TMP/inv-old.json" "$TMP/r0.json" &&
	compile f "$TMP/p-f.json" "$TMP/inv-old.json" "$TMP/r0.json"; then
	ok "policies compile to bundles"
else
	not_ok "policies compile to bundles: $(cat "$TMP"/*.err | head -5)"
	finish
	exit
fi

# Only srv has a table and listens; the others only connect.
ip netns exec "$P-srv" "$PYTHON" "$PROBE" serve "$TMP/ready-srv" tcp:22 tcp:80 tcp:81 tcp:443 \
	>"$TMP/serve-srv.log" 2>&1 &
for _ in $(seq 50); do
	[ -e "$TMP/ready-srv" ] && break
	sleep 0.1
done
if [ ! -e "$TMP/ready-srv" ]; then
	not_ok "starting the listener"
	finish
	exit
fi

# flow WANT FROM PORT 4|6: TCP from FROM to srv
flow() {
	local want=$1 from=$2 port=$3 fam=$4 addr timeout got
	[ "$fam" = 6 ] && addr=$(v6 srv) || addr=$(v4 srv)
	[ "$want" = pass ] && timeout=$PASS_TIMEOUT || timeout=$FAIL_TIMEOUT
	if ip netns exec "$P-$from" "$PYTHON" "$PROBE" tcp "$addr" "$port" "$timeout" >/dev/null 2>&1; then
		got=pass
	else
		got=fail
	fi
	if [ "$got" = "$want" ]; then
		ok "$from -> srv tcp/$port IPv$fam: $want"
	else
		not_ok "$from -> srv tcp/$port IPv$fam: expected $want, got $got"
	fi
}

# apply LOG NS OLD|- NEW [options]: nft-apply for endpoint srv
apply() {
	local log=$1 ns=$2 old=$3 new=$4
	shift 4
	[ "$old" = - ] || old=$TMP/$old.json
	"$APPLY" "$@" "/run/netns/$P-$ns" srv "$old" "$TMP/$new.json" >"$TMP/$log.out" 2>&1
}

# The update line of an nft-apply run: "delta added=2 removed=0 ..."
update_of() { sed -n 's/^update: //p' "$TMP/$1.out" | head -1; }

# update_is LOG PREFIX WHAT RC: the nft-apply run LOG exited RC 0 (the
# kernel committed), and its update line starts with PREFIX
# (e.g. "delta added=2 removed=0 ").
update_is() {
	local log=$1 want=$2 what=$3 rc=$4 got
	got=$(update_of "$log")
	if [ "$rc" = 0 ] && [ "${got#"$want"}" != "$got" ]; then
		ok "$what ($got)"
	else
		not_ok "$what: exit $rc, got '$got' $(grep -h rejected "$TMP/$log.out")"
	fi
}

handles() { # the handles of the table, its sets, chains and rules, in order
	ip netns exec "$P-$1" nft -a list table inet bulkhead | sed -n 's/.* # handle \([0-9]*\)$/\1/p' | tr '\n' ' '
}

stateless() { ip netns exec "$P-$1" nft -s list table inet bulkhead; }

# Packets counted by srv's first web rule (IPv4).
web_counter() {
	ip netns exec "$P-srv" nft list chain inet bulkhead ingress |
		awk '/ip saddr @/ && /tcp dport 80|th dport 80/ && /srv-in\/ingress\/0/ {
			for (i = 1; i < NF; i++) if ($i == "packets") { print $(i + 1); exit } }'
}

# same_as_fresh NAME OLD NEW: OLD then the update to NEW in chk1 gives what
# a fresh build of NEW gives in chk2 (sets and elements included).
same_as_fresh() {
	local what=$1 old=$2 new=$3 kind
	if ! apply "$what-a" chk1 - "$old" || ! apply "$what-b" chk1 "$old" "$new" ||
		! apply "$what-c" chk2 - "$new"; then
		not_ok "$what: applying ($(grep -h rejected "$TMP/$what"-*.out | head -2))"
		return
	fi
	kind=$(update_of "$what-b")
	if diff <(stateless chk1) <(stateless chk2) >"$TMP/$what.diff"; then
		ok "$what: ${kind%% *} update equals a fresh build ($kind)"
	else
		not_ok "$what: ${kind%% *} update differs from a fresh build: $(head -8 "$TMP/$what.diff" | tr '\n' ' ')"
	fi
}

# --- before any table: everything flows ----------------------------------
flow pass web2 80 4

# --- the old bundle, whole -----------------------------------------------
if apply base srv - old && [ "$(update_of base | cut -d' ' -f1)" = full ]; then
	ok "old bundle loaded whole"
else
	not_ok "old bundle loaded whole: $(cat "$TMP/base.out")"
fi
flow pass web1 80 4
flow pass web1 80 6
flow fail web2 80 4
flow fail web2 80 6
H0=$(handles srv)
C0=$(web_counter)
check "web rule counted web1's connection (counter $C0)" test "${C0:-0}" -gt 0

# --- a peer joins the label group: a delta -------------------------------
apply add srv old new
update_is add "delta added=2 removed=0 " "web2 joining web is a delta adding its 2 addresses" $?
H1=$(handles srv)
check "handles of table, sets, chains and rules untouched by the delta ($(wc -w <<<"$H1") objects)" test -n "$H0" -a "$H0" = "$H1"
C1=$(web_counter)
check "counters untouched by the delta ($C0 -> $C1)" test "${C1:-x}" = "$C0"
flow pass web2 80 4
flow pass web2 80 6
flow pass web1 80 4
C2=$(web_counter)
check "counters keep counting ($C1 -> $C2)" test "${C2:-0}" -gt "${C1:-0}"
flow fail other 80 4
same_as_fresh "join" old new

# --- the member leaves: a delta, and it is refused again -----------------
apply remove srv new old
update_is remove "delta added=0 removed=2 " "web2 leaving web is a delta removing its 2 addresses" $?
check "rule handles untouched by the removal" test "$H0" = "$(handles srv)"
flow fail web2 80 4
flow fail web2 80 6
flow pass web1 80 6
same_as_fresh "leave" new old

# --- interval sets: the office network changes ---------------------------
flow fail ext 443 4 # excepted from office
apply office srv old office
update_is office "delta " "office CIDR change is a delta" $?
check "rule handles untouched by the interval delta" test "$H0" = "$(handles srv)"
flow pass ext 443 4 # now inside, and no longer excepted
flow pass ext 443 6
apply office-back srv office old
flow fail ext 443 6
same_as_fresh "office" old office
same_as_fresh "office-back" office old
for pair in old:c c:d d:e e:f f:c c:old d:f; do
	same_as_fresh "intervals ${pair/:/ -> }" "${pair%:*}" "${pair#*:}"
done

# --- many members at once: several element messages per set -------------
same_as_fresh "700 members join" old bulk
same_as_fresh "700 members leave" bulk old

# --- a group's first member: still a delta (empty sets exist) ------------
same_as_fresh "ghost" old ghost
update_is ghost-b "delta added=2 removed=0 " "an empty group's first member is a delta" 0

# --- a rule change: the full replace -------------------------------------
apply rule srv old rule
update_is rule "full " "a new port in a rule is a full replace" $?
check "the full replace made new rules (new handles)" test "$H0" != "$(handles srv)"
flow pass web1 81 4
same_as_fresh "rule" old rule

# --- a delta the kernel rejects leaves the old table whole -----------------
apply reset srv - old
WEBSET=$(ip netns exec "$P-srv" nft list chain inet bulkhead ingress |
	sed -n 's/.*ip saddr @\(s_[0-9a-f]*_v4\) .*srv-in\/ingress\/0.*/\1/p' | head -1)
# Someone removed web1 behind our back; the delta old -> swap deletes it.
ip netns exec "$P-srv" nft delete element inet bulkhead "$WEBSET" "{ $(v4 web1) }"
S0=$(stateless srv)
H2=$(handles srv)
if apply reject srv old swap; then
	not_ok "a delta deleting a missing element is rejected: $(cat "$TMP/reject.out")"
else
	ok "a delta deleting a missing element is rejected: $(grep rejected "$TMP/reject.out" | cut -c1-110)"
fi
check "the kernel's refusal names the object: the deletion from $WEBSET and its bundle set" \
	grep -Eq "rejected: delete elements from #[0-9]+ of set $WEBSET \(bundle set [^)]+\): No such file or directory" "$TMP/reject.out"
check "the rejected delta left the table whole (elements, rules, handles)" \
	test "$S0" = "$(stateless srv)" -a "$H2" = "$(handles srv)"
flow fail web2 80 4 # its addition went with the failed transaction
if apply fallback srv old swap --fallback && grep -q '^fallback: full' "$TMP/fallback.out"; then
	ok "--fallback sends the full replace after the rejected delta"
else
	not_ok "--fallback sends the full replace after the rejected delta: $(cat "$TMP/fallback.out")"
fi
flow pass web2 80 4
flow fail web1 80 4

finish
