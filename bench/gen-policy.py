#!/usr/bin/env python3
"""Large policy documents (and an inventory to compile them with) for
bench/policy-scale.sh and the scale tests: each shape stresses one path of
the validator and the compiler.

  gen-policy.py except N POLICY INV    the internet except N /32 hosts (v4)
  gen-policy.py policies N POLICY INV  N policies, one rule each
  gen-policy.py groups N POLICY INV    N named label groups, one rule naming them all
  gen-policy.py peers N POLICY INV     one rule with N inline network peers
  gen-policy.py cidrs N POLICY INV     one network group of N /32 cidrs, each
                                       with a /32 except of its own neighbour's

The inventory is one node with a few endpoints, so `policy compile` has
something to compile for. Addresses come from 198.18.0.0/15, then
2001:db8::/32; nothing here touches a network."""
import json
import sys


def host(i):
    """The i-th address: 198.18.0.0/15 for the first 131,072, then 2001:db8::/32."""
    if i < 1 << 17:
        return "198.%d.%d.%d/32" % (18 + (i >> 16), (i >> 8) & 255, i & 255)
    i -= 1 << 17
    return "2001:db8::%x:%x/128" % (i >> 16, i & 0xffff)


def main():
    shape, n, policy_file, inv_file = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    groups = {"all": {"labels": {}}}
    policies = []
    if shape == "except":
        groups["internet"] = {"cidrs": ["0.0.0.0/0", "::/0"], "except": [host(2 * i + 1) for i in range(n)]}
        policies.append({"name": "out", "applies_to": "all",
                         "egress": [{"action": "allow", "to": ["internet"], "ports": ["tcp/443"]}]})
    elif shape == "policies":
        for i in range(n):
            policies.append({"name": "p%d" % i, "applies_to": "all", "order": i,
                             "ingress": [{"from": ["all"], "ports": ["tcp/%d" % (1 + i % 65535)]}]})
    elif shape == "groups":
        for i in range(n):
            groups["g%d" % i] = {"labels": {"app": "a%d" % i}}
        policies.append({"name": "in", "applies_to": "all",
                         "ingress": [{"from": ["g%d" % i for i in range(n)]}]})
    elif shape == "peers":
        policies.append({"name": "in", "applies_to": "all",
                         "ingress": [{"from": [{"cidrs": [host(i)]} for i in range(n)]}]})
    elif shape == "cidrs":
        groups["many"] = {"cidrs": [host(2 * i).replace("/32", "/31") for i in range(n)],
                          "except": [host(2 * i + 1) for i in range(n)]}
        policies.append({"name": "in", "applies_to": "all", "ingress": [{"from": ["many"]}]})
    else:
        sys.exit("unknown shape " + shape)
    with open(policy_file, "w") as f:
        json.dump({"version": 1, "groups": groups, "policies": policies}, f)
    with open(inv_file, "w") as f:
        json.dump({"node": "n1", "endpoints": [
            {"name": "e%d" % i, "labels": {"app": "a%d" % i}, "addresses": ["198.18.0.%d" % (i + 1)]}
            for i in range(4)]}, f)


main()
