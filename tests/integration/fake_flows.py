#!/usr/bin/python3
"""A scripted fake agent for the flow tests (flows-hostile.sh): speaks the wire
protocol (include/bulkhead/proto.h) over ZeroMQ without CURVE, to a
controller started with --insecure on loopback.

    fake_flows.py ENDPOINT NODE ENDPOINTS_JSON < MESSAGES

Reads MESSAGES, says HELLO for NODE with ENDPOINTS_JSON (a list of
ENDPOINT objects), then sends each line of MESSAGES ("TYPE BODY-JSON"; "v" is added, and a body
given as "@RAW:..." is sent as those bytes), and prints every answer but
heartbeats and bundles, one "TYPE BODY-JSON" line each. It waits until
every FLOWS it sent was answered (FLOWS_ACK), or 10 s.
"""
import json
import sys
import time

import zmq


def main():
    endpoint, node, endpoints = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)

    def send(kind, body):
        if isinstance(body, bytes):
            sock.send_multipart([kind.encode(), body])
        else:
            body["v"] = 1
            sock.send_multipart([kind.encode(), json.dumps(body).encode()])

    # Every message is read and encoded before HELLO: building a large one
    # after it would leave the session silent for longer than a heartbeat.
    waiting, messages = set(), []
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        kind, _, text = line.partition(" ")
        if text.startswith("@RAW:"):
            body = text[5:].encode()
            try:
                key = json.loads(body)
                waiting.add((key["epoch"], key["seq"]))
            except (ValueError, KeyError, TypeError):
                pass
        else:
            body = json.loads(text)
            if kind == "FLOWS":
                waiting.add((body["epoch"], body["seq"]))
            body["v"] = 1
            body = json.dumps(body).encode()
        messages.append((kind, body))
    send("HELLO", {"node": node, "agent": "fake", "revision": None, "hash": None, "endpoints": endpoints})
    for kind, body in messages:
        send(kind, body)
    deadline = time.time() + 10
    while waiting and time.time() < deadline:
        if not sock.poll(100):
            continue
        kind, body = sock.recv_multipart()
        kind, body = kind.decode(), json.loads(body)
        if kind in ("HEARTBEAT", "BUNDLE", "DELTA"):
            continue
        body.pop("v", None)
        print(kind, json.dumps(body, sort_keys=True), flush=True)
        if kind == "FLOWS_ACK":
            waiting.discard((body["epoch"], body["seq"]))
    if waiting:
        print("unanswered", sorted(waiting), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
