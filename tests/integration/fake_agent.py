#!/usr/bin/python3
"""A hostile (or merely odd) agent for the controller's tests: speaks the
wire protocol (include/bulkhead/proto.h) over --insecure ZeroMQ, with
whatever names, versions and errors it is given.

  fake_agent.py ENDPOINT NODE [options]
    --agent-version V      HELLO's "agent" (default 0.1.0)
    --endpoints JSON       HELLO's endpoint list (default [])
    --ack-error TEXT       answer every BUNDLE/DELTA with an ACK carrying TEXT
    --ack-endpoint NAME    ... as the error of endpoint NAME too (repeatable)
    --seconds S            how long to keep the session (heartbeats every 0.2 s)
    --flood N --size B     then send N messages of B bytes (--type, default FLOWS)
    --until-refused        exit 0 at the first REFUSED, 1 if none came
    --ack                  answer every BUNDLE/DELTA with an ACK that says ok
    --dump FILE            append every BUNDLE/DELTA as a line "KIND BODY-JSON"
    --then-endpoints JSON  send ENDPOINTS with this list once --when-file exists
    --when-file PATH

Prints "REFUSED: reason", "RESYNC", "BUNDLE rev", "ACKED rev" lines. Uses
Debian's python3-zmq."""
import argparse
import json
import os
import sys
import time

import zmq


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("endpoint")
    ap.add_argument("node")
    ap.add_argument("--agent-version", default="0.1.0")
    ap.add_argument("--endpoints", default="[]")
    ap.add_argument("--ack-error")
    ap.add_argument("--ack-endpoint", action="append", default=[])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--flood", type=int, default=0)
    ap.add_argument("--size", type=int, default=0)
    ap.add_argument("--type", default="FLOWS")
    ap.add_argument("--until-refused", action="store_true")
    ap.add_argument("--ack", action="store_true")
    ap.add_argument("--dump")
    ap.add_argument("--then-endpoints")
    ap.add_argument("--when-file")
    a = ap.parse_args()

    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, 0)
    s.connect(a.endpoint)

    def send(kind, body):
        body["v"] = 1
        s.send_multipart([kind.encode(), json.dumps(body).encode()])

    def hello():
        send("HELLO", {"node": a.node, "agent": a.agent_version, "revision": None, "hash": None,
                       "endpoints": json.loads(a.endpoints)})

    hello()
    if a.flood:
        # Cheap for the controller to refuse once parsed (no "epoch"),
        # costly to hold: one long string of a.size bytes.
        head = b'{"v":1,"pad":"'
        body = head + b"x" * (a.size - len(head) - 2) + b'"}'
        for _ in range(a.flood):
            s.send_multipart([a.type.encode(), body], copy=False)
    end = time.time() + a.seconds
    next_beat = 0.0
    while time.time() < end:
        now = time.time()
        if now >= next_beat:
            send("HEARTBEAT", {"revision": None, "hash": None})
            next_beat = now + 0.2
        if a.then_endpoints and a.when_file and os.path.exists(a.when_file):
            send("ENDPOINTS", {"endpoints": json.loads(a.then_endpoints)})
            a.then_endpoints = None
        if not s.poll(50):
            continue
        kind, raw = s.recv_multipart()[:2]
        kind = kind.decode(errors="replace")
        body = json.loads(raw)
        if kind == "REFUSED":
            print("REFUSED:", body.get("reason"), flush=True)
            if a.until_refused:
                return 0
        elif kind == "RESYNC":
            print("RESYNC", flush=True)
            hello()
        elif kind in ("BUNDLE", "DELTA"):
            rev = body["revision"]
            h = body["bundle"]["hash"] if kind == "BUNDLE" else body["hash"]
            print(kind, rev, flush=True)
            if a.dump:
                with open(a.dump, "a") as f:
                    f.write("%s %s\n" % (kind, json.dumps(body)))
            if a.ack:
                send("ACK", {"revision": rev, "hash": h, "ok": True, "error": None, "endpoints": []})
            if a.ack_error is not None:
                send("ACK", {"revision": rev, "hash": h, "ok": False, "error": a.ack_error,
                             "endpoints": [{"name": n, "applied": None, "error": a.ack_error}
                                           for n in a.ack_endpoint]})
                print("ACKED", rev, flush=True)
    return 1 if a.until_refused else 0


if __name__ == "__main__":
    sys.exit(main())
