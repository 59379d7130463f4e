#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# A tiny WebSocket client (RFC 6455, standard library only) used by
# tests/integration/test-stream.sh. Not a test on its own: tests/run only
# runs *.sh scripts, and this file is run by that script.
#
#   test-stream-ws.py URL [--header 'Name: value'] [--send JSON]... \
#       [--expect-type T]... [--timeout S] [--count N] [--status-only]
#
# Connects to URL (ws://host:port/path?query), prints the HTTP status line of
# the handshake on the first line, then each received text frame on its own
# line. --send frames are sent after the first received frame (the
# stream.open hello). Exits 0 when every --expect-type was seen within
# --timeout seconds (or after --count frames), 1 otherwise.
import base64
import hashlib
import json
import os
import socket
import struct
import sys
import time
import urllib.parse

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WS:
    def __init__(self, url, headers=(), timeout=10.0):
        u = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((u.hostname, u.port or 80), timeout=timeout)
        path = u.path + ("?" + u.query if u.query else "")
        key = base64.b64encode(os.urandom(16)).decode()
        req = [
            f"GET {path} HTTP/1.1",
            f"Host: {u.hostname}:{u.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ] + list(headers)
        self.sock.sendall(("\r\n".join(req) + "\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode(errors="replace").split("\r\n")
        self.status_line = lines[0]
        self.status = int(lines[0].split()[1]) if len(lines[0].split()) > 1 else 0
        self.headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.body = b""
        if self.status == 101:
            want = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
            if self.headers.get("sec-websocket-accept") != want:
                raise RuntimeError("bad Sec-WebSocket-Accept")
        else:
            n = int(self.headers.get("content-length", "0"))
            while len(self.buf) < n:
                chunk = self.sock.recv(4096)
                if not chunk:
                    break
                self.buf += chunk
            self.body = self.buf[:n]

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, payload, opcode=1):
        data = payload.encode() if isinstance(payload, str) else payload
        mask = os.urandom(4)
        hdr = bytes([0x80 | opcode])
        n = len(data)
        if n < 126:
            hdr += bytes([0x80 | n])
        elif n < 65536:
            hdr += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            hdr += bytes([0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(hdr + mask + masked)

    def recv(self):
        """Returns (opcode, payload bytes); answers pings."""
        while True:
            b0, b1 = self._read(2)
            opcode = b0 & 0x0F
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8))[0]
            if b1 & 0x80:
                mask = self._read(4)
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(self._read(n)))
            else:
                data = self._read(n)
            if opcode == 9:
                self.send(data, opcode=10)
                continue
            return opcode, data

    def close(self):
        try:
            self.send(struct.pack("!H", 1000), opcode=8)
        except OSError:
            pass
        self.sock.close()


def main():
    args = sys.argv[1:]
    url = args.pop(0)
    headers, sends, expect = [], [], []
    timeout, count, status_only = 10.0, 0, False
    while args:
        a = args.pop(0)
        if a == "--header":
            headers.append(args.pop(0))
        elif a == "--send":
            sends.append(args.pop(0))
        elif a == "--expect-type":
            expect.append(args.pop(0))
        elif a == "--timeout":
            timeout = float(args.pop(0))
        elif a == "--count":
            count = int(args.pop(0))
        elif a == "--status-only":
            status_only = True
        else:
            print("bad argument " + a, file=sys.stderr)
            return 2
    ws = WS(url, headers, timeout)
    print(ws.status_line, flush=True)
    if ws.status != 101:
        if ws.body:
            print(ws.body.decode(errors="replace"), flush=True)
        return 0 if status_only else 1
    if status_only:
        ws.close()
        return 0
    deadline = time.monotonic() + timeout
    seen, n = set(), 0
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ws.sock.settimeout(left)
            opcode, data = ws.recv()
            if opcode == 8:
                print("CLOSE", flush=True)
                break
            if opcode != 1:
                continue
            n += 1
            text = data.decode()
            print(text, flush=True)
            ev = json.loads(text)
            seen.add(ev.get("type"))
            if n == 1:
                for s in sends:
                    ws.send(s)
            if expect and all(t in seen for t in expect):
                break
            if count and n >= count:
                break
    except (socket.timeout, EOFError):
        pass
    ws.close()
    if expect:
        return 0 if all(t in seen for t in expect) else 1
    return 0 if (not count or n >= count) else 1


if __name__ == "__main__":
    sys.exit(main())
