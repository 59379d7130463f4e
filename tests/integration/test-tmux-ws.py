#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# A scripted client of GET /v1/sandboxes/{id}/terminal (WebSocket, standard
# library only; the framing is test-stream-ws.py's WS class). Used by
# tests/integration/test-tmux.sh; not a test on its own.
#
#   test-tmux-ws.py URL [--header 'Name: value'] [--timeout S] [--status-only] STEP...
#
# Prints the handshake's status line, then runs the steps in order after the
# {"type":"ready"} frame, printing one line per step result:
#   send:JSON          send a text frame
#   post:URL|JSON      HTTP POST JSON to URL (e.g. tmux send-keys); starts the clock
#   expect:TEXT        wait until the terminal's output since the last mark
#                      contains TEXT (escape sequences removed); prints the
#                      milliseconds since the last post
#   frame:TYPE         wait for a text frame {"type": TYPE}; prints it
#   mark               forget the output so far (expect looks at what follows)
#   sleep:S            read for S seconds
#   close              send a close frame and stop
# Exits 0 when every step succeeded within --timeout (per step), 1 otherwise.
import importlib.util
import json
import os
import re
import socket
import sys
import time
import urllib.request

_spec = importlib.util.spec_from_file_location(
    "stream_ws", os.path.join(os.path.dirname(os.path.abspath(__file__)), "test-stream-ws.py"))
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
WS = _mod.WS

# CSI, OSC, and two-byte escapes: what is left is the text a person sees.
ANSI = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[@-Z\\-_()*+][0-9A-Za-z]?")


def plain(b):
    return ANSI.sub(b"", b).replace(b"\r", b"").decode(errors="replace")


class Session:
    def __init__(self, ws, timeout):
        self.ws, self.timeout = ws, timeout
        self.out = b""
        self.frames = []
        self.closed = False
        self.t0 = time.monotonic()

    def pump(self, until):
        """Reads frames until until() is true or the step's time is up."""
        deadline = time.monotonic() + self.timeout
        while not until():
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return until()
            self.ws.sock.settimeout(left)
            try:
                opcode, data = self.ws.recv()
            except (socket.timeout, EOFError, OSError):
                if not isinstance(sys.exc_info()[1], socket.timeout):
                    self.closed = True
                continue
            if opcode == 2:
                self.out += data
            elif opcode == 1:
                f = json.loads(data.decode())
                self.frames.append(f)
                print("FRAME " + json.dumps(f), flush=True)
            elif opcode == 8:
                print("CLOSE %s" % (int.from_bytes(data[:2], "big") if len(data) >= 2 else ""), flush=True)
                self.closed = True
        return True


def main():
    args = sys.argv[1:]
    url = args.pop(0)
    headers, steps = [], []
    timeout, status_only = 20.0, False
    while args:
        a = args.pop(0)
        if a == "--header":
            headers.append(args.pop(0))
        elif a == "--timeout":
            timeout = float(args.pop(0))
        elif a == "--status-only":
            status_only = True
        else:
            steps.append(a)
    ws = WS(url, headers, timeout)
    print(ws.status_line, flush=True)
    if ws.status != 101:
        if ws.body:
            print(ws.body.decode(errors="replace"), flush=True)
        return 0 if status_only else 1
    if status_only:
        ws.close()
        return 0
    s = Session(ws, timeout)
    if not s.pump(lambda: any(f.get("type") in ("ready", "error") for f in s.frames)) or \
            s.frames[-1].get("type") != "ready":
        print("FAIL no ready frame", flush=True)
        return 1
    ok = True
    for st in steps:
        kind, _, arg = st.partition(":")
        if kind == "send":
            ws.send(arg)
            print("SENT " + arg, flush=True)
        elif kind == "post":
            u, _, body = arg.partition("|")
            s.t0 = time.monotonic()
            req = urllib.request.Request(u, data=body.encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=timeout) as r:
                print("POST %d %s" % (r.status, r.read().decode().strip()), flush=True)
        elif kind == "expect":
            if s.pump(lambda: arg in plain(s.out)):
                print("SEEN %s after %d ms" % (arg, (time.monotonic() - s.t0) * 1000), flush=True)
            else:
                print("FAIL not seen: %s; screen text: %r" % (arg, plain(s.out)[-600:]), flush=True)
                ok = False
                break
        elif kind == "frame":
            n = len(s.frames)
            if s.pump(lambda: any(f.get("type") == arg for f in s.frames[n:])):
                print("GOT " + arg, flush=True)
            else:
                print("FAIL no %s frame" % arg, flush=True)
                ok = False
                break
        elif kind == "mark":
            s.out = b""
            s.t0 = time.monotonic()
        elif kind == "sleep":
            end = time.monotonic() + float(arg)
            saved, s.timeout = s.timeout, float(arg)
            s.pump(lambda: time.monotonic() >= end)
            s.timeout = saved
        elif kind == "close":
            ws.close()
            print("CLOSED", flush=True)
            return 0 if ok else 1
        else:
            print("bad step " + st, file=sys.stderr)
            return 2
    ws.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
