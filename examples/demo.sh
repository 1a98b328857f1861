#!/usr/bin/env bash
# Bulkhead demo, the first command in README.md. Today it shows the policy
# language and the compiler: it installs what it needs, builds, validates the
# examples, shows how an invalid policy is reported, and compiles the
# three-tier example into per-node bundles. The daemons (agent, controller)
# join this demo as they land; see "What is not done yet" in README.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Installing build dependencies (Debian packages) when missing"
tests/install-deps.sh
step "Building"
[ -d build ] || meson setup build >/dev/null
ninja -C build >/dev/null
cli=build/cli/bulkhead

step "Validating the examples"
for f in examples/*/policy.json; do "$cli" policy validate "$f"; done

step "An invalid policy: every error, with its place (exit 2)"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/broken.json" <<'JSON'
{
  "version": 1,
  "groups": {
    "web": { "labels": { "app": "web" } },
    "office": { "cidrs": ["203.0.113.7/24"] }
  },
  "policies": [
    { "name": "db-ingress", "applies_to": "dbb",
      "ingress": [ { "from": ["web"], "ports": ["tcp/5432", "tcp/70000"], "to": ["office"] } ] }
  ]
}
JSON
(cd "$tmp" && "$root/$cli" policy validate broken.json) || echo "(exit $?)"

step "Compiling examples/three-tier for its three nodes"
invs=(--inventory examples/three-tier/node-a.json --inventory examples/three-tier/node-b.json
      --inventory examples/three-tier/node-c.json)
"$cli" policy compile examples/three-tier/policy.json "${invs[@]}" >"$tmp/bundles.json"
/usr/bin/python3 - "$tmp/bundles.json" <<'PY'
import json, sys
for b in json.load(open(sys.argv[1]))["bundles"]:
    print(f"node {b['node']}  hash {b['hash'][:16]}…  sets: {', '.join(s['id'] for s in b['sets']) or '-'}")
    for ep in b["endpoints"]:
        for d in ("ingress", "egress"):
            c = ep[d]
            peer = "from" if d == "ingress" else "to"
            rules = "; ".join(f"{r['action']} {','.join(r.get('ports', ['any']))} {peer} {'+'.join(r.get('peers', ['any']))}"
                              for r in c["rules"]) or "no rules"
            print(f"  {ep['name']:8} {d:7} {rules}; otherwise {c['fallback']} ({c['fallback_reason']})")
PY
echo
echo "Same input, same bytes: $("$cli" policy compile examples/three-tier/policy.json "${invs[@]}" | sha256sum | cut -c1-16)…" \
     "= $("$cli" policy compile examples/three-tier/policy.json "${invs[@]}" | sha256sum | cut -c1-16)…"

step "Not built yet"
cat <<'TXT'
The agent (nftables in each container namespace), the controller (ZeroMQ,
SQLite) and the blocked-flow report are the next pieces; until they land,
this demo cannot start daemons or send traffic. See README.md.
TXT
