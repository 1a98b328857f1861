#!/usr/bin/env python3
"""The policies apply-latency.sh and fanout.sh apply, written to DIR/{A,B,C}.json.

Five tiers (label tier=t0..t4); each admits the next tier on tcp/8080 and
the network group "partners" (20 /24s, not adjacent: nft would merge them
into one range) on tcp/443.
  A  that policy
  B  partners has one /24 more (198.19.99.0/24): a one-member change
  C  every rule's port is different (8081, 444): a full change

  tier-policies.py DIR
"""
import json
import sys


def doc(extra_cidr, app_port, partner_port):
    cidrs = ["198.19.%d.0/24" % (2 * i) for i in range(20)] + ([extra_cidr] if extra_cidr else [])
    groups = {"partners": {"cidrs": cidrs}}
    for k in range(5):
        groups["t%d" % k] = {"labels": {"tier": "t%d" % k}}
    pols = [{"name": "t%d-in" % k, "applies_to": "t%d" % k,
             "ingress": [{"from": ["t%d" % ((k + 1) % 5)], "ports": ["tcp/%d" % app_port]},
                         {"from": ["partners"], "ports": ["tcp/%d" % partner_port]}]}
            for k in range(5)]
    return {"version": 1, "groups": groups, "policies": pols}


for name, d in (("A", doc(None, 8080, 443)), ("B", doc("198.19.99.0/24", 8080, 443)),
                ("C", doc(None, 8081, 444))):
    with open("%s/%s.json" % (sys.argv[1], name), "w") as f:
        json.dump(d, f, indent=1)
