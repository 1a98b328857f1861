#!/usr/bin/env python3
"""Random worlds, policies and probes for the differential test.

  gen_world.py SEED OUTDIR [--world WORLD.json] [--prefix P] [--probes N] [--base B]
  gen_world.py compare OUTDIR

Generation (everything follows from SEED; same SEED, same files):
  world.json      the topology: nodes, endpoints, outside hosts, their
                  addresses, the ports the listeners serve. With --world
                  the topology of an earlier run is reused (same namespaces
                  and addresses) and only labels, policy and probes are new.
  world.tsv       one line per namespace: NS V4 V6 NODE|- (for the shell)
  serve.txt       the listener specs: tcp:80 udp:53 ...
  policy.json     a random valid policy document (DESIGN §2)
  inventory-NODE.json   per node, the format `bulkhead policy compile` and
                  the agent take; netns is /run/netns/PREFIX-NS
  probes.jsonl    the oracle's input (`bulkhead policy explain --probes`)
  batch-NS.jsonl  per source namespace, probe.py batch's input
  plan.jsonl      per probe: index, id, namespaces, a description

Probe ids start at --base; each probe's TCP/UDP source port (10000 + id) and
ICMP identifier are unique within a run, so no probe ever meets conntrack
state left behind by an earlier one.

compare OUTDIR reads plan.jsonl, oracle.jsonl (explain's answers) and
kernel-NS.jsonl (probe.py batch's answers), prints one "not ok" line per
probe where the kernel's outcome differs from the oracle's "delivered", one
"ok" line counting the rest (an "ok" line per probe with BULKHEAD_VERBOSE=1;
the label in these lines is $BULKHEAD_LABEL), and writes
counts ("PASSED FAILED") and mismatch-ns.txt (namespaces involved).

  gen_world.py rules OUTDIR

reads the same and counters-after-NS.json (`nft -j list table inet
bulkhead` of every table after the probes; less counters-before-NS.json,
read just before them) and checks that the kernel's rule counters
say which rule decided each probe, as the oracle does: a rule (by its id,
the comment of its nft rules, summed over a direction's chains) counted
packets exactly when the oracle gives it probes, never fewer, and exactly
as many when none of them is TCP (a TCP SYN may be sent again before the
probe gives up; a UDP datagram or an ICMP request is sent once, and its
answer is an established flow's). Writes rules-counts ("PASSED FAILED").

Endpoints carry named ports (inventory "ports", NAMED_PORTS: each its own
number for a name, or none, or the name with the other protocol) and one
rule port in four names one (NAMED_SPECS, both directions, and a name no
endpoint defines), so that a name resolved on the destination, per peer for
egress, is judged by the kernel and the oracle alike.

Policies come in two kinds, by the seed: random ones (every feature of
the language, anywhere), and stress ones (one in three) that pile up
overlap and order on one endpoint: network groups nested in each other
and cut by excepts, a deny of the inner one before an allow of the outer,
the same peers allowed again after a deny (shadowed rules), port ranges
that touch and nest, ICMP types with and without codes, label groups that
overlap each other.

Only the standard library.
"""
import ipaddress
import json
import os
import random
import sys

NODES = ["node-a", "node-b"]
PER_NODE = 4
TCP_PORTS = [22, 80, 443, 8080]
UDP_PORTS = [53, 123, 8080]
NET4 = ipaddress.ip_network("198.18.0.0/15")
NET6 = ipaddress.ip_network("2001:db8::/32")

LABELS = {
    "app": ["web", "api", "db", "cache"],
    "env": ["prod", "staging", "dev"],
    "tier": ["front", "back"],
    "example.com/team": ["red", "blue"],
    "canary": [""],  # an empty value: Exists holds, In [""] matches
}
RARE_KEYS = ["legacy", "example.com/owner"]  # no endpoint carries these

PORT_SPECS = [
    # Ranges end on, or just beside, the ports probed (TCP 22 80 443 8080, UDP 53 123 8080).
    "tcp/80", "tcp/443", "tcp/22", "tcp/8080", "tcp/8000-8100", "tcp/1-1024",
    "tcp/440-450", "tcp/23-79", "tcp/22-80", "tcp/81-442", "tcp/443-8080", "tcp/80-80",
    "tcp/8081-65535", "tcp/9999", "tcp",
    "udp/53", "udp/123", "udp/50-60", "udp/8080", "udp/100-9000", "udp/54", "udp/53-123",
    "udp/54-122", "udp/1-53", "udp",
    "icmp", "icmp/8", "icmp/8/0", "icmp/13", "icmp/0",
    "icmpv6", "icmpv6/128", "icmpv6/128/0",
    "sctp",
]
# Named ports (one rule port in four): resolved on the destination (DESIGN
# §2), each endpoint its own number or none (NAMED_PORTS); "tcp/gone" no
# endpoint defines.
NAMED_SPECS = ["tcp/web", "tcp/web", "tcp/adm", "udp/dns", "udp/dns", "udp/web", "tcp/gone"]

# What endpoints call their ports: a name to the numbers it may stand for
# (each endpoint draws its own; some define none, some the name with the
# other protocol, which the name's rules then do not match).
NAMED_PORTS = {
    "web": ["tcp/80", "tcp/8080", "tcp/443", "udp/8080"],
    "adm": ["tcp/22", "tcp/443"],
    "dns": ["udp/53", "udp/123", "tcp/80"],
}


# --- the world ------------------------------------------------------------

def gen_topology(seed):
    """Addresses come in runs: a node's endpoints often sit next to each
    other (and to an outside host), sometimes across an octet or a 16-bit
    boundary (198.18.4.255, 198.18.5.0; ...:ffff, ...:1:0), so that CIDRs,
    excepts and the interval sets they become are cut between neighbours."""
    rnd = random.Random("bulkhead-world-%s" % seed)
    used4, used6 = set(), set()
    lo4, hi4 = int(NET4.network_address) + 1, int(NET4.broadcast_address) - 1

    def v4_base():
        r = rnd.random()
        if r < 0.4:  # just below an octet boundary
            return rnd.randrange(lo4 + 256, hi4 - 256, 256) - rnd.randint(1, 3)
        if r < 0.6:  # just below a /20 boundary
            return rnd.randrange(lo4 + 4096, hi4 - 4096, 4096) - rnd.randint(1, 3)
        return rnd.randint(lo4, hi4 - 1024)

    def v6_base():
        net = int(ipaddress.ip_address("2001:db8:%x::" % rnd.randint(1, 0xffff)))
        r = rnd.random()
        if r < 0.4:  # just below a 16-bit boundary
            return net + rnd.randint(1, 0xfff) * 0x10000 - rnd.randint(1, 3)
        if r < 0.6:  # small host numbers
            return net + rnd.randint(1, 0x20)
        return net + rnd.getrandbits(64)

    def gap():
        return rnd.choice([1, 1, 1, 2, 3, rnd.randint(4, 300)])

    def place(cursor):
        a4, a6 = cursor
        while True:
            a4 += gap()
            a6 += gap()
            if a4 <= hi4 and a4 not in used4 and a6 not in used6:
                used4.add(a4)
                used6.add(a6)
                return (a4, a6)

    def host(ns, node, a):
        return {"ns": ns, "node": node, "name": ns, "v4": str(ipaddress.IPv4Address(a[0])),
                "v6": str(ipaddress.IPv6Address(a[1]))}

    hosts = []
    cursors = {}
    for node in NODES:
        cursor = (v4_base(), v6_base())
        for i in range(PER_NODE):
            cursor = place(cursor)
            hosts.append(host("%s%d" % (node[-1], i + 1), node, cursor))
        cursors[node] = cursor
    for i in range(rnd.randint(1, 2)):
        # Outside hosts: sometimes right after a node's endpoints, sometimes apart.
        if rnd.random() < 0.5:
            node = rnd.choice(NODES)
            cursors[node] = place(cursors[node])
            a = cursors[node]
        else:
            a = place((v4_base(), v6_base()))
        hosts.append(host("x%d" % (i + 1), None, a))
    return {"seed": seed, "nodes": NODES, "hosts": hosts, "tcp_ports": TCP_PORTS, "udp_ports": UDP_PORTS}


# --- the policy -----------------------------------------------------------

class PolicyGen:
    def __init__(self, rnd, world):
        self.rnd = rnd
        self.world = world
        self.addrs = [ipaddress.ip_address(h[f]) for h in world["hosts"] for f in ("v4", "v6")]

    def chance(self, p):
        return self.rnd.random() < p

    def labels_for_endpoint(self):
        labels = {}
        for key, values in LABELS.items():
            if self.chance(0.25 if key == "canary" else 0.75):
                labels[key] = self.rnd.choice(values)
        return labels

    def value(self, key):
        if key in LABELS and self.chance(0.85):
            return self.rnd.choice(LABELS[key])
        return self.rnd.choice(["other", "prod", "web", ""])

    def key(self):
        return self.rnd.choice(list(LABELS) + RARE_KEYS) if self.chance(0.15) else self.rnd.choice(list(LABELS))

    def label_group(self):
        g = {}
        n_labels = self.rnd.choice([0, 0, 1, 1, 1, 2])
        g["labels"] = {}
        for _ in range(n_labels):
            k = self.rnd.choice(list(LABELS))
            g["labels"][k] = self.value(k)
        exprs = []
        for _ in range(self.rnd.choice([0, 0, 1, 1, 2])):
            op = self.rnd.choice(["In", "NotIn", "Exists", "DoesNotExist"])
            e = {"key": self.key(), "op": op}
            if op in ("In", "NotIn"):
                vals = {self.value(e["key"]) for _ in range(self.rnd.randint(1, 3))}
                e["values"] = sorted(vals)
            exprs.append(e)
        if exprs:
            g["expressions"] = exprs
            if not g["labels"] and self.chance(0.5):
                del g["labels"]
        return g

    def prefix_around(self, addr, lo, hi):
        # Long prefixes half the time: they cut between neighbouring addresses.
        plen = self.rnd.randint(lo, hi) if self.chance(0.5) else self.rnd.randint(max(lo, hi - 3), hi)
        return ipaddress.ip_network("%s/%d" % (addr, plen), strict=False)

    def cidr(self):
        r = self.rnd.random()
        if r < 0.65:
            a = self.rnd.choice(self.addrs)
        elif r < 0.85:
            if self.chance(0.5):
                a = NET4[self.rnd.randint(0, NET4.num_addresses - 1)]
            else:
                a = ipaddress.ip_address(int(NET6.network_address) + self.rnd.getrandbits(96))
        else:
            return ipaddress.ip_network(self.rnd.choice(
                ["0.0.0.0/0", "::/0", "10.0.0.0/8", "203.0.113.0/24", "2001:db8::/32",
                 "198.18.0.0/15", "fd00::/8"]))
        if a.version == 4:
            return self.prefix_around(a, 15, 32)
        return self.prefix_around(a, self.rnd.choice([32, 48, 64, 96, 112]), 128)

    def except_in(self, net):
        inside = [a for a in self.addrs if a in net]
        if inside and self.chance(0.8):
            a = self.rnd.choice(inside)
        else:
            a = ipaddress.ip_address(int(net.network_address) +
                                     self.rnd.getrandbits(net.max_prefixlen - net.prefixlen)
                                     if net.prefixlen < net.max_prefixlen else int(net.network_address))
        lo = min(net.prefixlen + 1, net.max_prefixlen)
        return self.prefix_around(a, lo, net.max_prefixlen)

    def network_group(self):
        cidrs = []
        for _ in range(self.rnd.choice([1, 1, 2, 3])):
            c = self.cidr()
            if c not in cidrs:
                cidrs.append(c)
        g = {"cidrs": [str(c) for c in cidrs]}
        if self.chance(0.5):
            excepts = []
            for _ in range(self.rnd.choice([1, 1, 2])):
                e = self.except_in(self.rnd.choice(cidrs))
                if e not in excepts:
                    excepts.append(e)
            g["except"] = [str(e) for e in excepts]
        return g

    def peer(self, label_names, net_names):
        r = self.rnd.random()
        if r < 0.35 and label_names:
            return self.rnd.choice(label_names)
        if r < 0.6 and net_names:
            return self.rnd.choice(net_names)
        if r < 0.8:
            return self.label_group()
        return self.network_group()

    def rule(self, direction, label_names, net_names):
        rule = {}
        a = self.rnd.random()
        if a < 0.5:
            rule["action"] = "allow"
        elif a < 0.8:
            rule["action"] = "deny"
        # else: absent, allow by default
        if self.chance(0.7):
            key = "from" if direction == "ingress" else "to"
            rule[key] = [self.peer(label_names, net_names) for _ in range(self.rnd.choice([1, 1, 2, 3]))]
        if self.chance(0.7):
            ports = []
            for _ in range(self.rnd.choice([1, 1, 2, 3])):
                p = self.rnd.choice(NAMED_SPECS if self.chance(0.25) else PORT_SPECS)
                if p not in ports:
                    ports.append(p)
            rule["ports"] = ports
        return rule

    def nested_networks(self, groups):
        """Three network groups around one host address: a wide one, a
        narrower one inside it (with an except), and the host alone."""
        a = self.rnd.choice(self.addrs)
        if a.version == 4:
            wide, narrow = self.prefix_around(a, 15, 20), self.prefix_around(a, 24, 29)
        else:
            wide, narrow = self.prefix_around(a, 32, 64), self.prefix_around(a, 96, 124)
        names = []
        for kind, net in (("wide", wide), ("narrow", narrow), ("host", ipaddress.ip_network(a))):
            name = "st-%s-%d" % (kind, len(groups))
            g = {"cidrs": [str(net)]}
            if kind == "narrow" and self.chance(0.6):
                g["except"] = [str(self.except_in(net))]
            groups[name] = g
            names.append(name)
        return names

    def stress_policy(self, names, groups, label_names, net_names):
        """One policy, order 0, whose rules overlap in peers and ports."""
        while True:
            name = "st-" + "".join(self.rnd.choice("abcdefghjkmnpqrstuvwxyz") for _ in range(4))
            if name not in names:
                names.add(name)
                break
        # Overlapping label groups: one key each, and one on two keys.
        k1, k2 = self.rnd.sample(["app", "env", "tier"], 2)
        for g in ({"labels": {k1: self.value(k1)}}, {"labels": {k2: self.value(k2)}},
                  {"labels": {k1: self.value(k1), k2: self.value(k2)}}):
            n = "st-lg-%d" % len(groups)
            groups[n] = g
            label_names.append(n)
        pol = {"name": name, "order": 0, "applies_to": self.rnd.choice(label_names) if self.chance(0.5) else {"labels": {}}}
        if self.chance(0.3):
            pol["mode"] = "audit"
        touching = [["tcp/22-80", "tcp/81-443"], ["tcp/80", "tcp/79-81"], ["tcp/1-442", "tcp/443-8080"],
                    ["udp/53", "udp/50-60"], ["udp/53-123", "udp/124-9000"], ["tcp", "tcp/443"],
                    ["icmp/8/0", "icmp/8"], ["icmp/8", "icmp"], ["icmpv6/128/1", "icmpv6/128"],
                    ["icmp/13", "icmp/8/0"], ["sctp", "tcp/8080"]]
        for d in self.rnd.choice([["ingress"], ["egress"], ["ingress", "egress"]]):
            wide, narrow, host = self.nested_networks(groups)
            net_names += [wide, narrow, host]
            peer_key = "from" if d == "ingress" else "to"
            rules = []
            for _ in range(self.rnd.randint(6, 12)):
                r = {}
                pick = self.rnd.random()
                if pick < 0.5:
                    # deny the inner one, then allow the outer: order decides
                    r = {"action": "deny", peer_key: [self.rnd.choice([narrow, host])]}
                    rules.append(r)
                    r = {"action": "allow", peer_key: [self.rnd.choice([wide, narrow])]}
                elif pick < 0.7:
                    r = {"action": self.rnd.choice(["allow", "deny"]),
                         peer_key: [self.rnd.choice(label_names[-3:])]}
                elif pick < 0.85:
                    r = {"action": self.rnd.choice(["allow", "deny"])}  # any peer
                else:
                    r = {"action": self.rnd.choice(["allow", "deny"]),
                         peer_key: [self.rnd.choice([wide, narrow, host]), self.rnd.choice(label_names[-3:])]}
                if self.chance(0.75):
                    r["ports"] = list(self.rnd.choice(touching))
                    if self.chance(0.3):
                        r["ports"].reverse()
                rules.append(r)
            if self.chance(0.5) and rules:
                rules.append(dict(self.rnd.choice(rules)))  # shadowed: an earlier rule again
            pol[d] = rules
        return pol

    def policy(self):
        groups = {}
        label_names, net_names = [], []
        for i in range(self.rnd.randint(2, 5)):
            name = "lg-%d" % i
            groups[name] = self.label_group()
            label_names.append(name)
        if self.chance(0.3):
            groups["everyone"] = {"labels": {}}
            label_names.append("everyone")
        for i in range(self.rnd.randint(1, 3)):
            name = "net-%d" % i
            groups[name] = self.network_group()
            net_names.append(name)

        policies = []
        names = set()
        orders = [None, None, 1000, 100, 100, 50, 0, -7]
        for _ in range(self.rnd.randint(3, 7)):
            while True:
                name = "p-" + "".join(self.rnd.choice("abcdefghjkmnpqrstuvwxyz") for _ in range(4))
                if name not in names:
                    names.add(name)
                    break
            pol = {"name": name}
            pol["applies_to"] = (self.rnd.choice(label_names) if self.chance(0.6) else self.label_group())
            order = self.rnd.choice(orders)
            if order is not None:
                pol["order"] = order
            m = self.rnd.random()
            if m < 0.3:
                pol["mode"] = "audit"
            elif m < 0.5:
                pol["mode"] = "enforce"
            dirs = self.rnd.choice([["ingress"], ["egress"], ["ingress", "egress"]])
            for d in dirs:
                n = self.rnd.choice([0, 1, 2, 2, 3, 3, 4, 5])
                pol[d] = [self.rule(d, label_names, net_names) for _ in range(n)]
            policies.append(pol)

        if self.chance(1 / 3):
            policies.append(self.stress_policy(names, groups, label_names, net_names))
        doc = {"version": 1}
        r = self.rnd.random()
        if r < 0.8:
            doc["defaults"] = {}
            for d in ("ingress", "egress"):
                if self.chance(0.85):
                    doc["defaults"][d] = self.rnd.choice(["allow", "allow", "allow", "deny"])
        doc["groups"] = groups
        doc["policies"] = policies
        return doc


# --- probes ----------------------------------------------------------------

def gen_probes(rnd, world, n):
    hosts = world["hosts"]
    kinds = []
    for src in hosts:
        for dst in hosts:
            if src is dst:
                continue
            for fam in (4, 6):
                for p in world["tcp_ports"]:
                    kinds.append((src, dst, fam, "tcp", p, None))
                for p in world["udp_ports"]:
                    kinds.append((src, dst, fam, "udp", p, None))
                if fam == 4:
                    kinds.append((src, dst, fam, "icmp", 8, 0))
                    kinds.append((src, dst, fam, "icmp", 8, 0))
                    kinds.append((src, dst, fam, "icmp", 13, 0))
                else:
                    kinds.append((src, dst, fam, "icmpv6", 128, 0))
                    kinds.append((src, dst, fam, "icmpv6", 128, 0))
                    kinds.append((src, dst, fam, "icmpv6", 128, 1))
    # Without replacement while the space lasts (it holds well over 1000).
    picked = []
    while len(picked) < n:
        picked += rnd.sample(kinds, min(n - len(picked), len(kinds)))
    return picked


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def generate(argv):
    seed = argv[0]
    out = argv[1]
    opts = {"--world": None, "--prefix": "bhdf", "--probes": "600", "--base": "0"}
    rest = argv[2:]
    while rest:
        if rest[0] not in opts or len(rest) < 2:
            sys.exit(__doc__)
        opts[rest[0]] = rest[1]
        rest = rest[2:]
    prefix = opts["--prefix"]
    n_probes = int(opts["--probes"])
    base = int(opts["--base"])
    if 10000 + base + n_probes > 60000:
        sys.exit("gen_world.py: --base + --probes too large for unique source ports")
    os.makedirs(out, exist_ok=True)

    if opts["--world"]:
        with open(opts["--world"]) as f:
            world = json.load(f)
    else:
        world = gen_topology(seed)
    write_json(os.path.join(out, "world.json"), world)
    with open(os.path.join(out, "world.tsv"), "w") as f:
        for h in world["hosts"]:
            f.write("%s %s %s %s\n" % (h["ns"], h["v4"], h["v6"], h["node"] or "-"))
    with open(os.path.join(out, "serve.txt"), "w") as f:
        f.write(" ".join(["tcp:%d" % p for p in world["tcp_ports"]] +
                         ["udp:%d" % p for p in world["udp_ports"]]) + "\n")

    rnd = random.Random("bulkhead-policy-%s" % seed)
    gen = PolicyGen(rnd, world)
    labels = {h["ns"]: gen.labels_for_endpoint() for h in world["hosts"] if h["node"]}
    write_json(os.path.join(out, "policy.json"), gen.policy())
    # Named ports from a generator of their own, so that a seed's policy
    # and probes stay what they were without them.
    prnd = random.Random("bulkhead-ports-%s" % seed)
    named = {}
    for h in world["hosts"]:
        if h["node"]:
            named[h["ns"]] = {n: prnd.choice(v) for n, v in sorted(NAMED_PORTS.items()) if prnd.random() < 0.7}
    for node in world["nodes"]:
        eps = [{"name": h["name"], "netns": "/run/netns/%s-%s" % (prefix, h["ns"]),
                "labels": labels[h["ns"]], "addresses": [h["v4"], h["v6"]]}
               for h in world["hosts"] if h["node"] == node]
        for ep in eps:
            if named[ep["name"]]:
                ep["ports"] = named[ep["name"]]
        write_json(os.path.join(out, "inventory-%s.json" % node), {"node": node, "endpoints": eps})

    probes = gen_probes(rnd, world, n_probes)
    batches = {h["ns"]: [] for h in world["hosts"]}
    with open(os.path.join(out, "probes.jsonl"), "w") as po, open(os.path.join(out, "plan.jsonl"), "w") as pl:
        for i, (src, dst, fam, proto, port, code) in enumerate(probes):
            key = "v4" if fam == 4 else "v6"
            pid = base + i
            o = {"src": src[key], "dst": dst[key], "proto": proto}
            b = {"id": pid, "proto": "icmp" if proto.startswith("icmp") else proto, "addr": dst[key]}
            if code is None:
                o["port"] = port
                b["port"] = port
                b["sport"] = 10000 + pid
                what = "%s/%d" % (proto, port)
            else:
                o["type"], o["code"] = port, code
                b["type"], b["code"], b["ident"] = port, code, pid & 0xFFFF
                what = "%s type %d code %d" % (proto, port, code)
            po.write(json.dumps(o) + "\n")
            batches[src["ns"]].append(b)
            desc = "%s(%s) -> %s(%s) %s IPv%d" % (src["ns"], src[key], dst["ns"], dst[key], what, fam)
            pl.write(json.dumps({"i": i, "id": pid, "src_ns": src["ns"], "dst_ns": dst["ns"],
                                 "desc": desc}) + "\n")
    for ns, items in batches.items():
        with open(os.path.join(out, "batch-%s.jsonl" % ns), "w") as f:
            for b in items:
                f.write(json.dumps(b) + "\n")


# --- comparison -------------------------------------------------------------

def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def side_text(name, side):
    if side is None:
        return "%-7s no endpoint: nothing enforced" % name
    return "%-7s at %-12s %-6s by %s" % (name, side["endpoint"], side["verdict"], side["reason"])


def compare(out):
    verbose = os.environ.get("BULKHEAD_VERBOSE") == "1"
    label = os.environ.get("BULKHEAD_LABEL", out)
    plan = read_jsonl(os.path.join(out, "plan.jsonl"))
    oracle = read_jsonl(os.path.join(out, "oracle.jsonl"))
    kernel = {}
    for name in os.listdir(out):
        if name.startswith("kernel-") and name.endswith(".jsonl"):
            for r in read_jsonl(os.path.join(out, name)):
                kernel[r["id"]] = r
    passed = failed = 0
    stats = {"accept": 0, "drop": 0, "audit": 0}
    involved = []
    for p in plan:
        o = oracle[p["i"]] if p["i"] < len(oracle) else {"error": "no answer from the oracle"}
        k = kernel.get(p["id"])
        if "error" in o or k is None or "error" in k:
            why = o.get("error") if "error" in o else ("no kernel result" if k is None else k["error"])
            print("    mismatch: %s probe %d: %s: %s" % (label, p["i"], p["desc"], why))
            failed += 1
            involved += [p["src_ns"], p["dst_ns"]]
            continue
        want = o["delivered"]
        got = k["ok"]
        if want == got:
            passed += 1
            stats[o["verdict"]] += 1
            if verbose:
                print("    agree: %s probe %d: %s: %s (%s)" % (label, p["i"], p["desc"],
                                                         "delivered" if got else "dropped", o["verdict"]))
            continue
        failed += 1
        involved += [p["src_ns"], p["dst_ns"]]
        print("    mismatch: %s probe %d: %s: kernel %s, oracle %s" % (
            label, p["i"], p["desc"], "delivered" if got else "dropped",
            "delivered (%s)" % o["verdict"] if want else "dropped"))
        print("    " + side_text("egress", o["egress"]))
        print("    " + side_text("ingress", o["ingress"]))
        print("    kernel: %s after %.0f ms" % ("answered" if got else "no answer", k.get("ms", 0)))
    if not verbose:
        print("    %s: %d of %d probes agree (%d accepted, %d audited, %d dropped)" % (
            label, passed, len(plan), stats["accept"], stats["audit"], stats["drop"]))
    with open(os.path.join(out, "counts"), "w") as f:
        f.write("%d %d\n" % (passed, failed))
    with open(os.path.join(out, "mismatch-ns.txt"), "w") as f:
        seen = []
        for ns in involved:
            if ns not in seen:
                seen.append(ns)
                f.write(ns + "\n")


def rule_counts(out, when):
    """(NS, direction, rule id) -> packets its nft rules counted, from
    counters-WHEN-NS.json; the fixed rules are left out."""
    fixed = {"established", "ct-invalid", "loopback", "neighbour-discovery"}
    prefix = "counters-%s-" % when
    counts = {}
    for name in os.listdir(out):
        if not (name.startswith(prefix) and name.endswith(".json")):
            continue
        ns = name[len(prefix):-len(".json")]
        with open(os.path.join(out, name)) as f:
            objs = json.load(f)["nftables"]
        for o in objs:
            r = o.get("rule")
            if not r or "comment" not in r or r["comment"] in fixed:
                continue
            n = sum(e["counter"]["packets"] for e in r["expr"] if "counter" in e)
            key = (ns, r["chain"].split("_")[0], r["comment"])
            counts[key] = counts.get(key, 0) + n
    return counts


def rules(out):
    """The kernel's rule counters against the oracle's deciding rules."""
    label = os.environ.get("BULKHEAD_LABEL", out)
    plan = read_jsonl(os.path.join(out, "plan.jsonl"))
    oracle = read_jsonl(os.path.join(out, "oracle.jsonl"))
    want, tcp = {}, set()
    for p in plan:
        o = oracle[p["i"]] if p["i"] < len(oracle) else {}
        if "error" in o or not o:
            continue
        is_tcp = " tcp/" in p["desc"]
        sides = []
        if o.get("egress"):
            sides.append((p["src_ns"], "egress", o["egress"]["reason"]))
        if o.get("ingress") and not (o.get("egress") and o["egress"]["verdict"] == "drop"):
            sides.append((p["dst_ns"], "ingress", o["ingress"]["reason"]))
        for key in sides:
            want[key] = want.get(key, 0) + 1
            if is_tcp:
                tcp.add(key)
    before, have = rule_counts(out, "before"), rule_counts(out, "after")
    for key in sorted(k for k in before if before[k]):
        # Not a probe: the endpoint's own packet, counted before any was sent.
        print("    %s: %s %s rule %s counted %d packets before the probes (left out)" % (
            label, key[0], key[1], key[2], before[key]))
        have[key] = have.get(key, 0) - before[key]
    passed = failed = 0
    for key in sorted(set(want) | set(have)):
        w, h = want.get(key, 0), have.get(key, 0)
        if (w == 0) != (h == 0) or h < w or (key not in tcp and h != w):
            failed += 1
            print("    mismatch: %s: %s %s rule %s counted %d packets, the oracle gives it %d probes%s" % (
                label, key[0], key[1], key[2], h, w, " (some TCP)" if key in tcp else ""))
        else:
            passed += 1
    print("    %s: %d rules counted as the oracle decided, %d not" % (label, passed, failed))
    with open(os.path.join(out, "rules-counts"), "w") as f:
        f.write("%d %d\n" % (passed, failed))


def main(argv):
    if len(argv) == 3 and argv[1] == "compare":
        compare(argv[2])
    elif len(argv) == 3 and argv[1] == "rules":
        rules(argv[2])
    elif len(argv) >= 3:
        generate(argv[1:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
