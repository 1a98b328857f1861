#!/bin/bash
# web: the controller's blocked-flow page and its JSON API (--http), with
# real denied and audited packets, read by headless Chromium (Debian's
# chromium, --dump-dom after the page's scripts ran):
#   - the API: flows with both ends named and their groups, the group map's
#     edges with counts per verdict, rule hits, nodes; filters by port,
#     source and destination group, verdict; bad parameters are 400 naming
#     the parameter; unknown paths 404;
#   - the page: the denied flows are table rows and red edges of the map,
#     audited ones yellow; a filter in the address (port, an edge's pair)
#     changes the rows; the assets come from the binary, nothing else;
#   - with "observe": "all", an allowed connection is an allow row and a
#     green edge;
#   - driven through the DevTools protocol (cdp.py): a click on a red edge
#     filters the table to its flows, a flow sent meanwhile appears without
#     a reload, clearing the pair brings every row back.
# Chromium runs in a namespace of the test's own with only a loopback
# interface; socat there carries its connections to the controller on the
# host's loopback, so the browser can reach nothing else.
# Usage: web.sh [BUILD_DIR]     WEB_SCREENSHOT=FILE also saves a screenshot
set -u
. "$(dirname "$0")/world.bash"
BUILD=${1:-$LIB_ROOT/build}
FLOOD=$BUILD/bench/udp-flood

world_init web || exit 1
if ! command -v chromium >/dev/null; then
	not_ok "chromium is not installed (tests/install-deps.sh)"
	finish
	exit 1
fi
world_daemons "$BUILD" n1 n2 || exit 1
HTTP_PORT=$((PORT + 1))
AGENT_ARGS=(--flow-window-ms 200)

world_add_endpoint web1 11 11 || exit 1
world_add_endpoint db1 12 12 || exit 1
world_add_endpoint client2 21 21 || exit 1
world_add_endpoint batch2 22 22 || exit 1
world_serve web1 tcp:80 || exit 1
cat >"$TMP/n1.json" <<JSON
{"node": "n1", "endpoints": [
 {"name": "web1", "netns": "/run/netns/$P-web1", "labels": {"role": "web"}},
 {"name": "db1", "netns": "/run/netns/$P-db1", "labels": {"role": "db"}}]}
JSON
cat >"$TMP/n2.json" <<JSON
{"node": "n2", "endpoints": [
 {"name": "client2", "netns": "/run/netns/$P-client2", "labels": {"role": "client"}},
 {"name": "batch2", "netns": "/run/netns/$P-batch2", "labels": {"role": "batch"}}]}
JSON
cat >"$TMP/policy.json" <<'JSON'
{"version": 1,
 "groups": {"web": {"labels": {"role": "web"}}, "db": {"labels": {"role": "db"}},
            "clients": {"labels": {"role": "client"}}, "batch": {"labels": {"role": "batch"}}},
 "policies": [
  {"name": "web-in", "applies_to": "web", "ingress": [{"from": ["clients"], "ports": ["tcp/80"]}]},
  {"name": "db-in", "applies_to": "db", "ingress": [{"from": ["web"], "ports": ["tcp/5432"]}]},
  {"name": "batch-out", "applies_to": "batch", "mode": "audit",
   "egress": [{"action": "deny", "to": ["web"], "ports": ["udp/9999"]}, {"action": "allow"}]}]}
JSON

controller_start --http "127.0.0.1:$HTTP_PORT"
agent_start n1
agent_start n2
bh policy apply "$TMP/policy.json" >/dev/null
connected() { [ "$(bh status --json 2>/dev/null | json_get "sorted(n['node'] for n in j['nodes'] if n['connected'] and n['up_to_date'])")" = "['n1', 'n2']" ]; }
check "both agents connected and up to date" wait_for 20 connected

# Denied: client2 -> db1 udp/53 (5), client2 -> web1 udp/9999 (3);
# audited at batch2's egress and denied at web1: batch2 -> web1 udp/9999 (4).
ip netns exec "$P-client2" "$FLOOD" 198.18.0.12 53 5 >/dev/null
ip netns exec "$P-client2" "$FLOOD" 198.18.0.11 9999 3 >/dev/null
ip netns exec "$P-batch2" "$FLOOD" 198.18.0.11 9999 4 >/dev/null
check "an allowed connection still goes through" can client2 tcp 198.18.0.11 80

URL=http://127.0.0.1:$HTTP_PORT
api() { curl -s --max-time 5 "$URL$1"; }
code() { curl -s --path-as-is -o /dev/null -w '%{http_code}' --max-time 5 "$URL$1"; }
stored() { [ "$(api '/api/flows?since=1h' | json_get "sum(r['count'] for r in j['flows'])")" = 16 ]; }
check "the API: every packet stored (5 + 3 denied, 4 audited and 4 denied)" wait_for 15 stored
check "the API: client2 -> db1 is one row, both ends named with their groups" \
	test "$(api '/api/flows?port=udp/53' | json_get "[(r['src_endpoint'], r['src_groups'], r['dst_endpoint'], r['dst_groups'], r['verdict'], r['rule'], r['count']) for r in j['flows']]")" \
	= "[('n2/client2', 'clients', 'n1/db1', 'db', 'deny', 'default-deny', 5)]"
check "the API: a source group and a verdict filter" \
	test "$(api '/api/flows?src_group=batch&verdict=audit' | json_get "[(r['rule'], r['count']) for r in j['flows']]")" = "[('batch-out/egress/0', 4)]"
check "the API: the map's edges, with counts per verdict" \
	test "$(api '/api/groups' | json_get "sorted((e['src'], e['dst'], v, c['count']) for e in j['edges'] for v, c in e['verdicts'].items())")" \
	= "[('batch', 'web', 'audit', 4), ('batch', 'web', 'deny', 4), ('clients', 'db', 'deny', 5), ('clients', 'web', 'deny', 3)]"
check "the API: the map's groups are the policy's" \
	test "$(api '/api/groups' | json_get "sorted(g['name'] for g in j['groups'])")" = "['batch', 'clients', 'db', 'web']"
check "the API: rule hits" test "$(api '/api/hits' | json_get "'default-deny' in [r['rule'] for r in j['rules']]")" = True
check "the API: nodes" test "$(api '/api/nodes' | json_get "[(n['node'], n['connected']) for n in j['nodes']]")" = "[('n1', True), ('n2', True)]"
for bad in "port=tcp/99999" "verdict=maybe" "since=yesterday" "limit=0" "limit=x" "node=$(printf 'a%.0s' {1..300})" "group=%01"; do
	check "the API: $bad is 400, naming it" test "$(api "/api/flows?$bad" | json_get "j['error'].split(':')[0]")" = "${bad%%=*}"
done
check "the API: an unknown path is 404" test "$(code /api/nope)/$(code /etc/passwd)/$(code /../index.html)" = 404/404/404
long=$(head -c 100000 /dev/zero | tr '\0' a)
check "the API: a 100 KB request line is refused" test "$(code "/api/flows?node=$long")" != 200
check "the API: 80 connections at once, then it still answers" sh -c "
	for i in \$(seq 80); do curl -s -o /dev/null --max-time 10 '$URL/api/groups' & done; wait
	test \"\$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 '$URL/api/nodes')\" = 200"
check "the API: POST is refused" test "$(curl -s -o /dev/null -w '%{http_code}' -X POST --max-time 5 "$URL/api/flows")" = 405

# --- the page in a browser that can reach only the controller ---
ip netns add "$P-browser"
ip -n "$P-browser" link set lo up
ip netns exec "$P-browser" socat TCP-LISTEN:7780,bind=127.0.0.1,reuseaddr,fork \
	EXEC:"nsenter --net=/proc/$$/ns/net socat STDIO TCP\:127.0.0.1\:$HTTP_PORT" 2>/dev/null &
WORLD_PIDS+=("$!")
browser() { # chromium ARG... (in the browser's namespace, a profile of the test's own)
	ip netns exec "$P-browser" timeout 60 chromium --headless --no-sandbox --disable-gpu --no-first-run --enable-logging=stderr \
		--disable-background-networking --disable-component-update --disable-sync \
		--user-data-dir="$TMP/chromium" --window-size=1500,1000 --virtual-time-budget=8000 "$@" 2>>"$TMP/chromium.log"
}
# page QUERY: the DOM once the page has loaded and drawn its data.
page() { browser --dump-dom "http://127.0.0.1:7780/$1" >"$TMP/dom.html"; cat "$TMP/dom.html"; }
# count PATTERN: lines of the last dump matching (one element a line, below).
rows() { /usr/bin/python3 -c '
import re, sys
dom = open(sys.argv[1]).read()
flows = re.search(r"<table id=\"flows\">.*?</table>", dom, re.S).group(0)
for tr in re.findall(r"<tr class=\"flow\"[^>]*>.*?</tr>", flows, re.S):
    cells = [re.sub(r"<[^>]+>", "", td) for td in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)]
    print(" | ".join(cells[1:]))' "$TMP/dom.html"; }
edges() { /usr/bin/python3 -c '
import re, sys
dom = open(sys.argv[1]).read()
for p in re.findall(r"<path [^>]*class=\"edge [^\"]*\"[^>]*>", dom):
    a = dict(re.findall(r"([\w-]+)=\"([^\"]*)\"", p))
    print(a["data-src"], a["data-dst"], a["data-verdict"], a["stroke"], a["data-count"])' "$TMP/dom.html" | sort; }
ip_ok() { test "$(ip netns exec "$P-browser" curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:7780/)" = 200; }
check "the browser's namespace reaches the controller through socat" wait_for 10 ip_ok
page "" >/dev/null
check "the page loaded its data (the script ran and filled the tables)" grep -q 'data-loaded="' "$TMP/dom.html"
rows >"$TMP/rows"
check "the denied flows are table rows: client2 -> db1 udp/53, denied by default-deny, 5 packets" \
	grep -qx "n1 | n2/client2 (clients) | n1/db1 (db) | udp/53 | deny | default-deny | 5" "$TMP/rows"
check "... client2 -> web1 udp/9999 denied, 3 packets" grep -qx "n1 | n2/client2 (clients) | n1/web1 (web) | udp/9999 | deny | default-deny | 3" "$TMP/rows"
check "... batch2 -> web1 audited at batch2 by batch-out's rule" grep -qx "n2 | n2/batch2 (batch) | n1/web1 (web) | udp/9999 | audit | batch-out/egress/0 | 4" "$TMP/rows"
check "four rows in all ($(wc -l <"$TMP/rows"))" test "$(wc -l <"$TMP/rows")" = 4
edges >"$TMP/edges"
check "the map: red edges clients -> db (5) and clients -> web (3)" \
	test "$(grep ' deny ' "$TMP/edges" | grep clients)" = "$(printf 'clients db deny #d32f2f 5\nclients web deny #d32f2f 3')"
check "the map: batch -> web is a red edge (4) and a yellow one (4)" \
	test "$(grep '^batch web' "$TMP/edges")" = "$(printf 'batch web audit #f9a825 4\nbatch web deny #d32f2f 4')"
check "the map: every group of the policy is a node" test "$(grep -o 'data-group="[^"]*"' "$TMP/dom.html" | sort | tr '\n' ' ')" = 'data-group="batch" data-group="clients" data-group="db" data-group="web" '
check "the nodes table: both nodes in sync" test "$(grep -o 'data-state="in sync"' "$TMP/dom.html" | wc -l)" = 2
check "the rule hits table has rows" grep -q '<tr class="hit">' "$TMP/dom.html"
page "?port=udp/53" >/dev/null
rows >"$TMP/rows-port"
check "a port filter changes the rows: only udp/53 left" test "$(cut -d'|' -f4 "$TMP/rows-port" | tr -d ' ' | sort -u)/$(wc -l <"$TMP/rows-port")" = "udp/53/1"
page "?src_group=batch&dst_group=web&pair_verdict=deny" >/dev/null
rows >"$TMP/rows-pair"
check "an edge's pair (what a click on batch -> web, deny, sets) filters the rows to it" \
	test "$(cat "$TMP/rows-pair")" = "n1 | n2/batch2 (batch) | n1/web1 (web) | udp/9999 | deny | default-deny | 4"
check "... and that edge is drawn selected" grep -q 'class="edge edge-deny selected"[^>]*data-src="batch"' "$TMP/dom.html"
page "?verdict=audit" >/dev/null
rows >"$TMP/rows-audit"
check "the verdict filter: one audited row" test "$(wc -l <"$TMP/rows-audit")/$(grep -c '| audit |' "$TMP/rows-audit")" = 1/1
check "the page broke no rule of its Content-Security-Policy (chromium's console)" \
	test -z "$(grep -iE 'Content Security Policy|Refused to|ERR_' "$TMP/chromium.log")"
# --- clicks and live refresh, through the DevTools protocol (cdp.py) ---
ip netns exec "$P-browser" chromium --headless --no-sandbox --disable-gpu --no-first-run \
	--disable-background-networking --disable-component-update --disable-sync \
	--user-data-dir="$TMP/chromium-cdp" --window-size=1500,1000 --remote-debugging-port=9222 \
	"http://127.0.0.1:7780/" 2>>"$TMP/chromium.log" &
CHROMIUM_PID=$!
WORLD_PIDS+=("$CHROMIUM_PID")
ROWS="[...document.querySelectorAll('#flows tr.flow')]"
ip netns exec "$P-browser" timeout 90 "$PYTHON" "$LIB_ROOT/tests/integration/cdp.py" 9222 \
	"wait:+document.body.dataset.loaded >= 1" \
	"eval:window.kept = 1; $ROWS.length" \
	"eval:document.querySelector('#map path.edge-deny[data-src=\"clients\"][data-dst=\"db\"]').dispatchEvent(new MouseEvent('click', {bubbles: true}))" \
	"wait:$ROWS.length === 1" \
	"eval:$ROWS.map(r => r.cells[2].textContent + ' > ' + r.cells[3].textContent + ' ' + r.cells[4].textContent)" \
	"eval:location.search" \
	"sh:ip netns exec $P-client2 $FLOOD 198.18.0.12 54 2" \
	"wait:$ROWS.length === 2" \
	"eval:$ROWS.map(r => r.cells[4].textContent + ' ' + r.cells[7].textContent).sort()" \
	"eval:window.kept === 1 && performance.getEntriesByType('navigation').length === 1" \
	"eval:document.getElementById('pair-clear').click()" \
	"wait:$ROWS.length === 5" \
	"eval:location.search" \
	"eval:performance.getEntriesByType('resource').filter(e => !e.name.startsWith('http://127.0.0.1:7780/')).map(e => e.name)" \
	>"$TMP/cdp.out" 2>"$TMP/cdp.err"
check "DevTools: the page scripted through the protocol ($(tail -c 300 "$TMP/cdp.err"))" test -s "$TMP/cdp.out" -a ! -s "$TMP/cdp.err"
line() { sed -n "$1p" "$TMP/cdp.out"; }
check "DevTools: four rows at first" test "$(line 1)" = 4
check "DevTools: a click on the red edge clients -> db leaves its one flow in the table" \
	test "$(line 3)" = '["n2/client2 (clients) > n1/db1 (db) udp/53"]'
check "DevTools: ... and the address keeps the pair ($(line 4))" test "$(line 4)" = '"?since=1h&src_group=clients&dst_group=db&pair_verdict=deny"'
check "DevTools: a flow sent meanwhile comes in without a reload" test "$(line 5)" = '["udp/53 5", "udp/54 2"]'
check "DevTools: ... the same document, never reloaded" test "$(line 6)" = true
check "DevTools: clearing the pair shows every flow again" test "$(line 8)" = '"?since=1h"'
check "DevTools: nothing was fetched from anywhere but the controller" test "$(line 9)" = '[]'
kill "$CHROMIUM_PID" 2>/dev/null
# --- allowed flows ("observe": "all"): green, like the store holds them ---
sed 's/^{"version": 1,/{"version": 1, "observe": "all",/' "$TMP/policy.json" >"$TMP/observe.json"
bh policy apply "$TMP/observe.json" >/dev/null
check "observe all: both agents up to date" wait_for 20 connected
can client2 tcp 198.18.0.11 80
allowed() { [ "$(api '/api/flows?verdict=allow&src_group=clients&dst_group=web' | json_get "sum(r['count'] for r in j['flows'] if r['port'] == 80)")" -ge 1 ] 2>/dev/null; }
check "observe all: the allowed connection client2 -> web1:80 is stored" wait_for 15 allowed
page "?verdict=allow" >/dev/null
rows >"$TMP/rows-allow"
check "observe all: the page lists it, verdict allow, with the rule that let it in" \
	grep -qx "n1 | n2/client2 (clients) | n1/web1 (web) | tcp/80 | allow | web-in/ingress/0 | 1" "$TMP/rows-allow"
edges >"$TMP/edges-allow"
check "observe all: clients -> web is a green edge" grep -q "^clients web allow #43a047 " "$TMP/edges-allow"
if [ -n "${WEB_SCREENSHOT:-}" ]; then
	browser --screenshot="$TMP/shot.png" "http://127.0.0.1:7780/" >/dev/null && cp "$TMP/shot.png" "$WEB_SCREENSHOT"
fi
finish
