#!/usr/bin/env python3
"""A small Chrome DevTools Protocol client for the page tests: only the
standard library (a WebSocket client of its own, enough for CDP's text
frames).

  cdp.py PORT STEP...

connects to the first page target of a browser started with
--remote-debugging-port=PORT (on 127.0.0.1) and runs each STEP in order:

  eval:JS     prints the value of JS (awaited when it is a promise), JSON
  wait:JS     polls JS every 0.2 s until it is truthy (15 s at most)
  sh:COMMAND  runs COMMAND with sh -c (traffic between two steps)

Exit 0 when every step ran, 1 (saying which) when a wait timed out or JS
threw."""
import base64
import json
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.request


class WebSocket:
    def __init__(self, url):
        assert url.startswith("ws://")
        hostport, path = url[5:].split("/", 1)
        host, port = hostport.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise IOError("the handshake was cut")
            head += chunk
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise IOError("no upgrade: " + head.decode(errors="replace"))

    def send(self, text):
        data = text.encode()
        mask = os.urandom(4)
        n = len(data)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _read(self, n):
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise IOError("the connection was cut")
            out += chunk
        return out

    def recv(self):
        message = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8))[0]
            payload = self._read(n)
            opcode = b0 & 0x0F
            if opcode == 8:
                raise IOError("closed by the browser")
            if opcode in (0, 1, 2):
                message += payload
                if b0 & 0x80:
                    return message.decode()


def main():
    port, steps = sys.argv[1], sys.argv[2:]
    deadline = time.time() + 20
    while True:
        try:
            targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5))
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                break
        except OSError:
            pass
        if time.time() > deadline:
            print("no page target", file=sys.stderr)
            return 1
        time.sleep(0.2)
    ws = WebSocket(pages[0]["webSocketDebuggerUrl"])
    ids = iter(range(1, 1 << 30))

    def evaluate(js):
        i = next(ids)
        ws.send(json.dumps({"id": i, "method": "Runtime.evaluate",
                            "params": {"expression": js, "awaitPromise": True, "returnByValue": True}}))
        while True:
            reply = json.loads(ws.recv())
            if reply.get("id") == i:
                break
        result = reply.get("result", {})
        if "exceptionDetails" in result or "error" in reply:
            raise RuntimeError(json.dumps(result.get("exceptionDetails") or reply.get("error"))[:400])
        return result["result"].get("value")

    for step in steps:
        kind, _, arg = step.partition(":")
        if kind == "eval":
            print(json.dumps(evaluate(arg)), flush=True)
        elif kind == "wait":
            # The page may still be loading: an evaluation that throws
            # (no document yet, its context replaced by the navigation) is
            # "not yet", until the time is up.
            end = time.time() + 15
            while True:
                try:
                    if evaluate(arg):
                        break
                    why = "still false"
                except RuntimeError as e:
                    why = str(e)
                if time.time() > end:
                    print(f"timed out waiting for: {arg} ({why})", file=sys.stderr)
                    return 1
                time.sleep(0.2)
        elif kind == "sh":
            subprocess.run(["sh", "-c", arg], check=True, stdout=subprocess.DEVNULL)
        else:
            print(f"unknown step {step}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
