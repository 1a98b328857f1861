#!/usr/bin/env python3
"""Long-lived flows for tests/integration/conntrack-cut.sh and bench/.

  stream.py serve tcp|udp PORT DIR          one flow: the first TCP connection,
                                            or every datagram (echoed back)
  stream.py connect tcp|udp ADDR PORT DIR   the other end
  stream.py reset-serve PORT READY          accept and reset (SO_LINGER 0)
                                            every connection, until killed
  stream.py once ADDR PORT SPORT TIMEOUT    exit 0 when a TCP handshake from
                                            source port SPORT completes (a reset
                                            after it counts); then waits for the
                                            server to end or reset it

serve and connect write DIR/server.json or DIR/client.json (atomically,
every 50 ms): {"sent": BYTES, "recv": BYTES, "final": false}. Over TCP both
ends send 100 bytes every 20 ms (each end pushes on its own, so a cut is
tested from both sides); over UDP the client sends a 100-byte datagram
every 20 ms and the server echoes each. When DIR/stop appears, sending
stops: TCP shuts its side down and reads until the peer's end (at most
3 s), UDP reads for 0.5 s; then "final": true, with "eof" for TCP. A flow
that is allowed throughout then has each end's "recv" equal to the other's
"sent", byte for byte. Only the standard library.
"""
import json
import os
import select
import socket
import struct
import sys
import time

CHUNK = b"x" * 100
PERIOD = 0.02


def family_of(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def writer(path):
    last = [0.0]

    def write(state, force=False):
        now = time.monotonic()
        if not force and now - last[0] < 0.05:
            return
        last[0] = now
        with open(path + ".tmp", "w") as f:
            json.dump(state, f)
        os.rename(path + ".tmp", path)

    return write


def run_tcp(sock, d, name):
    write = writer(os.path.join(d, name + ".json"))
    st = {"sent": 0, "recv": 0, "final": False}
    sock.setblocking(False)
    stop = os.path.join(d, "stop")
    next_send = time.monotonic()
    while not os.path.exists(stop):
        now = time.monotonic()
        if now >= next_send:
            try:
                st["sent"] += sock.send(CHUNK)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as e:
                st["error"] = str(e)
                break
            next_send = now + PERIOD
        r, _, _ = select.select([sock], [], [], max(0.0, next_send - time.monotonic()))
        if r:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError as e:
                st["error"] = str(e)
                break
            if data == b"":
                st["peer_closed"] = True
                break
            if data:
                st["recv"] += len(data)
        write(st)
    # Our side is done: the peer reads to our end, we read to theirs.
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    deadline = time.monotonic() + 3
    st["eof"] = False
    while time.monotonic() < deadline:
        r, _, _ = select.select([sock], [], [], 0.1)
        if not r:
            continue
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError as e:
            st["error"] = str(e)
            break
        if not data:
            st["eof"] = True
            break
        st["recv"] += len(data)
    st["final"] = True
    write(st, True)


def run_udp_client(sock, d):
    write = writer(os.path.join(d, "client.json"))
    st = {"sent": 0, "recv": 0, "final": False}
    sock.setblocking(False)
    stop = os.path.join(d, "stop")
    next_send = time.monotonic()
    drain_until = None
    while True:
        now = time.monotonic()
        if drain_until is None and os.path.exists(stop):
            drain_until = now + 0.5
        if drain_until is not None and now >= drain_until:
            break
        if drain_until is None and now >= next_send:
            try:
                st["sent"] += sock.send(CHUNK)
            except OSError:
                pass  # dropped on the way out: what a cut is about
            next_send = now + PERIOD
        r, _, _ = select.select([sock], [], [], 0.01)
        if r:
            try:
                st["recv"] += len(sock.recv(65536))
            except OSError:
                pass
        write(st)
    st["final"] = True
    write(st, True)


def run_udp_server(sock, d):
    write = writer(os.path.join(d, "server.json"))
    st = {"sent": 0, "recv": 0, "final": False}
    stop = os.path.join(d, "stop")
    drain_until = None
    while True:
        now = time.monotonic()
        if drain_until is None and os.path.exists(stop):
            drain_until = now + 0.5
        if drain_until is not None and now >= drain_until:
            break
        r, _, _ = select.select([sock], [], [], 0.01)
        if r:
            data, peer = sock.recvfrom(65536)
            st["recv"] += len(data)
            try:
                st["sent"] += sock.sendto(data, peer)
            except OSError:
                pass
        write(st)
    st["final"] = True
    write(st, True)


def serve(proto, port, d):
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET6, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    if proto == "tcp":
        s.listen(4)
    open(os.path.join(d, "ready"), "w").close()
    if proto == "tcp":
        c, _ = s.accept()
        run_tcp(c, d, "server")
    else:
        run_udp_server(s, d)


def connect(proto, addr, port, d):
    if proto == "tcp":
        c = socket.create_connection((addr, port), timeout=5)
        run_tcp(c, d, "client")
    else:
        c = socket.socket(family_of(addr), socket.SOCK_DGRAM)
        c.connect((addr, port))
        run_udp_client(c, d)


def reset_serve(port, ready):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    s.listen(16)
    open(ready, "w").close()
    while True:
        c, _ = s.accept()
        time.sleep(0.2)  # the client sees its connect() succeed first, then waits
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()


def once(addr, port, sport, timeout):
    c = socket.socket(family_of(addr), socket.SOCK_STREAM)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    c.bind(("::" if ":" in addr else "0.0.0.0", sport))
    c.settimeout(timeout)
    try:
        c.connect((addr, port))
    except ConnectionResetError:
        return 0  # reset after the handshake (a refused SYN reads ECONNREFUSED)
    except OSError:
        return 1
    try:  # until the server's reset (or end), so that it comes while we wait
        c.recv(1)
    except OSError:
        pass
    return 0


def main(argv):
    mode = argv[1]
    if mode == "serve":
        serve(argv[2], int(argv[3]), argv[4])
    elif mode == "connect":
        connect(argv[2], argv[3], int(argv[4]), argv[5])
    elif mode == "reset-serve":
        reset_serve(int(argv[2]), argv[3])
    elif mode == "once":
        return once(argv[2], int(argv[3]), int(argv[4]), float(argv[5]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
