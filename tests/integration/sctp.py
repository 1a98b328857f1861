#!/usr/bin/env python3
"""SCTP for a kernel without SCTP sockets: crafted INIT and INIT ACK
packets through raw sockets (IPPROTO_SCTP), which nftables matches by their
headers and conntrack tracks all the same.

  sctp.py listen READY_FILE LOG_FILE   log every INIT that arrives (IPv4 and
                                       IPv6) as "SRC DPORT SPORT", answer it
                                       with an INIT ACK; until killed
  sctp.py init ADDR DPORT SPORT TIMEOUT
                                       send one INIT from SPORT; exit 0 when
                                       its INIT ACK came back, 1 when not, 3
                                       when the namespace's own firewall
                                       refused to send it (EPERM)

Packets carry a correct CRC32c (conntrack drops one that is wrong as
invalid). Only the standard library.
"""
import os
import random
import select
import socket
import struct
import sys
import time

IPPROTO_SCTP = 132
CHUNK_INIT, CHUNK_INIT_ACK = 1, 2


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC_TABLE = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def packet(sport, dport, vtag, chunk_type, init_tag):
    """A common header and one INIT or INIT ACK chunk (no parameters)."""
    chunk = struct.pack("!BBHIIHHI", chunk_type, 0, 20, init_tag, 65536, 1, 1, random.getrandbits(32))
    body = struct.pack("!HHI", sport, dport, vtag) + b"\0\0\0\0" + chunk
    # RFC 4960 appendix B: the CRC32c goes in as the kernel writes it (little end first).
    return body[:8] + struct.pack("<I", crc32c(body)) + body[12:]


def parse(data):
    """(sport, dport, vtag, chunk type, initiate tag) of a valid INIT or
    INIT ACK, else None."""
    if len(data) < 32:
        return None
    sport, dport, vtag = struct.unpack("!HHI", data[:8])
    if struct.unpack("<I", data[8:12])[0] != crc32c(data[:8] + b"\0\0\0\0" + data[12:]):
        return None
    ctype, _, clen, init_tag = struct.unpack("!BBHI", data[12:20])
    if ctype not in (CHUNK_INIT, CHUNK_INIT_ACK) or clen < 20:
        return None
    return sport, dport, vtag, ctype, init_tag


def sockets():
    v4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_SCTP)
    v6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, IPPROTO_SCTP)
    return v4, v6


def receive(s):
    """(source address, SCTP bytes) of one packet; IPv4's come with their IP header."""
    data, addr = s.recvfrom(65535)
    if s.family == socket.AF_INET:
        data = data[(data[0] & 0x0F) * 4:]
    return addr[0], data


def listen(ready, log):
    socks = sockets()
    with open(ready, "w"):
        pass
    out = open(log, "a", buffering=1)
    while True:
        for s in select.select(socks, [], [])[0]:
            src, data = receive(s)
            p = parse(data)
            if not p or p[3] != CHUNK_INIT or p[2] != 0:
                continue
            sport, dport, _, _, init_tag = p
            out.write("%s %d %d\n" % (src, dport, sport))
            answer = packet(dport, sport, init_tag, CHUNK_INIT_ACK, random.getrandbits(32) | 1)
            s.sendto(answer, (src, 0))


def init(addr, dport, sport, timeout):
    v4, v6 = sockets()
    s = v6 if ":" in addr else v4
    want = socket.inet_pton(s.family, addr)
    tag = random.getrandbits(32) | 1
    try:
        s.sendto(packet(sport, dport, 0, CHUNK_INIT, tag), (addr, 0))
    except PermissionError:
        print("sctp.py: sending to %s: dropped on its way out (EPERM)" % addr)
        return 3
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0 or not select.select([s], [], [], left)[0]:
            return 1
        src, data = receive(s)
        p = parse(data)
        if (socket.inet_pton(s.family, src) == want and p and p[3] == CHUNK_INIT_ACK and
                p[0] == dport and p[1] == sport and p[2] == tag):
            return 0


def main(argv):
    if len(argv) == 4 and argv[1] == "listen":
        listen(argv[2], argv[3])
        return 0
    if len(argv) == 6 and argv[1] == "init":
        return init(argv[2], int(argv[3]), int(argv[4]), float(argv[5]))
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
