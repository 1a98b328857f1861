#!/usr/bin/env python3
"""Traffic for the integration tests: listeners and one-shot probes.

  probe.py serve READY_FILE tcp:80 udp:53 ...   answer every port until killed
  probe.py tcp ADDR PORT TIMEOUT                exit 0 when the listener answered
  probe.py udp ADDR PORT TIMEOUT
  probe.py icmp ADDR TYPE CODE TIMEOUT          echo (8/128) or timestamp (13)
                                                request; exit 0 on the reply
  probe.py batch FILE|- TIMEOUT                 many probes at once, one thread
                                                each; JSON lines in, JSON lines out

batch reads one probe per line, {"id": 7, "proto": "tcp"|"udp", "addr": A,
"port": P, "sport": S} or {"id": 8, "proto": "icmp", "addr": A, "type": T,
"code": C, "ident": I} (ICMPv6 when A is IPv6; "sport" and "ident" optional:
a fixed source port or ICMP identifier keeps every probe's conntrack tuple
apart), and prints, in input order, {"id": 7, "ok": true|false, "ms": ELAPSED}
per probe; "error" instead of "ok" when the probe could not be made or the
answer was impossible for a listener (a TCP reset: nothing listens there).

Listeners bind the IPv6 wildcard with IPV6_V6ONLY off, so one socket per
port answers IPv4 and IPv6. Only the standard library: no nc, socat or ping
needed on the machine.
"""
import json
import os
import selectors
import socket
import struct
import sys
import threading
import time


def serve(ready, specs):
    sel = selectors.DefaultSelector()
    for spec in specs:
        proto, port = spec.split(":")
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        s = socket.socket(socket.AF_INET6, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", int(port)))
        if proto == "tcp":
            s.listen(64)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, proto)
    with open(ready + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(ready + ".tmp", ready)
    while True:
        for key, _ in sel.select():
            s = key.fileobj
            try:
                if key.data == "tcp":
                    c, _ = s.accept()
                    c.setblocking(True)
                    c.settimeout(1)
                    c.sendall(b"ok\n")
                    c.close()
                else:
                    data, peer = s.recvfrom(2048)
                    s.sendto(b"ok", peer)
            except OSError:
                pass


def family_of(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


class ProbeError(Exception):
    """The probe could not be made, or got an answer no listener gives."""


def bound_socket(addr, kind, sport):
    s = socket.socket(family_of(addr), kind)
    if sport:
        try:
            s.bind(("", sport))
        except OSError as e:
            s.close()
            raise ProbeError("bind to source port %d: %s" % (sport, e))
    return s


def probe_tcp(addr, port, timeout, sport=None, strict=False):
    s = bound_socket(addr, socket.SOCK_STREAM, sport)
    s.settimeout(timeout)
    try:
        s.connect((addr, port))
        return s.recv(16).startswith(b"ok")
    except ConnectionRefusedError:
        if strict:
            raise ProbeError("connection refused: no listener on %s port %d" % (addr, port))
        return False
    except OSError:
        return False
    finally:
        s.close()


def probe_udp(addr, port, timeout, sport=None):
    s = bound_socket(addr, socket.SOCK_DGRAM, sport)
    s.settimeout(timeout)
    try:
        s.sendto(b"probe", (addr, port))
        data, _ = s.recvfrom(16)
        return data.startswith(b"ok")
    except OSError:
        return False
    finally:
        s.close()


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


REPLY = {(socket.AF_INET, 8): 0, (socket.AF_INET, 13): 14, (socket.AF_INET6, 128): 129}


def probe_icmp(addr, icmp_type, code, timeout, ident=None):
    fam = family_of(addr)
    want = REPLY.get((fam, icmp_type))
    if want is None:
        sys.exit("probe.py: no reply known for ICMP type %d" % icmp_type)
    if ident is None:
        ident = os.getpid() & 0xFFFF
    body = struct.pack("!HH", ident, 1)
    if icmp_type == 13:
        body += struct.pack("!III", 0, 0, 0)
    else:
        body += b"bulkhead-probe"
    if fam == socket.AF_INET:
        s = socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        hdr = struct.pack("!BBH", icmp_type, code, 0)
        pkt = struct.pack("!BBH", icmp_type, code, checksum(hdr + body)) + body
    else:
        # The kernel fills in the ICMPv6 checksum on raw ICMPv6 sockets.
        s = socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        pkt = struct.pack("!BBH", icmp_type, code, 0) + body
    s.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        s.sendto(pkt, (addr, 0))
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            s.settimeout(left)
            data, peer = s.recvfrom(2048)
            if fam == socket.AF_INET:
                data = data[(data[0] & 0x0F) * 4:]  # raw IPv4 sockets include the IP header
            if peer[0] != addr or len(data) < 8:
                continue
            if data[0] == want and struct.unpack("!H", data[4:6])[0] == ident:
                return True
    except OSError:
        return False
    finally:
        s.close()


def run_one(probe, timeout):
    start = time.monotonic()
    out = {"id": probe.get("id")}
    try:
        proto = probe["proto"]
        if proto == "tcp":
            ok = probe_tcp(probe["addr"], probe["port"], timeout, probe.get("sport"), strict=True)
        elif proto == "udp":
            ok = probe_udp(probe["addr"], probe["port"], timeout, probe.get("sport"))
        elif proto in ("icmp", "icmpv6"):
            if REPLY.get((family_of(probe["addr"]), probe["type"])) is None:
                raise ProbeError("no reply known for ICMP type %d" % probe["type"])
            ok = probe_icmp(probe["addr"], probe["type"], probe.get("code", 0), timeout, probe.get("ident"))
        else:
            raise ProbeError("unknown proto %r" % proto)
        out["ok"] = ok
    except (ProbeError, KeyError, OSError) as e:
        out["error"] = "%s: %s" % (type(e).__name__, e)
    out["ms"] = round((time.monotonic() - start) * 1000, 1)
    return out


def batch(path, timeout):
    f = sys.stdin if path == "-" else open(path)
    probes = [json.loads(line) for line in f if line.strip()]
    results = [None] * len(probes)

    def work(i):
        results[i] = run_one(probes[i], timeout)

    # One thread per probe: a dropped probe waits out its timeout, so the
    # whole batch takes about one timeout however many are dropped.
    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(probes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        print(json.dumps(r))


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    mode = argv[1]
    if mode == "serve":
        serve(argv[2], argv[3:])
    elif mode == "tcp":
        ok = probe_tcp(argv[2], int(argv[3]), float(argv[4]))
    elif mode == "udp":
        ok = probe_udp(argv[2], int(argv[3]), float(argv[4]))
    elif mode == "icmp":
        ok = probe_icmp(argv[2], int(argv[3]), int(argv[4]), float(argv[5]))
    elif mode == "batch":
        batch(argv[2], float(argv[3]))
        return
    else:
        sys.exit(__doc__)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main(sys.argv)
