# SPDX-License-Identifier: MIT
"""Files: write/read, list, delete, mode/mkdirs, and a 50 MiB streamed round
trip with the same sha256 and bounded client memory."""

import hashlib
import io
import os
import tracemalloc

import pytest

import fluid

SIZE = 50 << 20


class RandomSource(io.RawIOBase):
    """SIZE pseudo-random bytes produced on the fly, hashed as they are read."""

    def __init__(self, size):
        self.left = size
        self.sha = hashlib.sha256()
        self.block = os.urandom(1 << 20)
        self.i = 0

    def readable(self):
        return True

    def read(self, n=-1):
        if self.left <= 0:
            return b""
        n = min(self.left, 1 << 20 if n is None or n < 0 else n)
        start = (self.i * 7919) % (len(self.block) - n + 1)
        self.i += 1
        out = self.block[start:start + n]
        self.left -= len(out)
        self.sha.update(out)
        return out


class HashSink:
    def __init__(self):
        self.sha = hashlib.sha256()
        self.n = 0

    def write(self, b):
        self.sha.update(b)
        self.n += len(b)
        return len(b)


def test_write_read_list_delete(client, sandbox):
    w = client.write_file(sandbox.id, "/root/hello.txt", "héllo\n")
    assert isinstance(w, fluid.FileWrite)
    assert w.bytes == 7 and w.sha256 == hashlib.sha256("héllo\n".encode()).hexdigest()
    assert client.read_file(sandbox.id, "/root/hello.txt") == "héllo\n".encode()
    sandbox.write_file("/root/d/e/conf", b"\x00\x01bin", mode=0o600, mkdirs=True)
    entries = sandbox.list_files("/root/d/e")
    assert [(e.name, e.mode, e.size, e.kind) for e in entries][0][:3] == ("conf", 0o600, 5)
    assert all(isinstance(e, fluid.FileInfo) for e in entries)
    assert sandbox.read_file("/root/d/e/conf") == b"\x00\x01bin"
    with pytest.raises(fluid.Conflict):
        client.delete_file(sandbox.id, "/root/d")
    client.delete_file(sandbox.id, "/root/d", recursive=True)
    with pytest.raises(fluid.NotFound):
        sandbox.read_file("/root/d/e/conf")
    with pytest.raises(fluid.BadRequest):
        sandbox.read_file("/root")


def test_upload_download_local_paths(client, sandbox, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(300_000))
    w = sandbox.upload("/root/f.bin", str(src))
    assert w.bytes == 300_000
    dst = tmp_path / "dst.bin"
    assert sandbox.download("/root/f.bin", str(dst)) == 300_000
    assert dst.read_bytes() == src.read_bytes()
    with client.open_file(sandbox.id, "/root/f.bin") as f:
        assert f.size == 300_000 and f.read(10) == src.read_bytes()[:10]


def test_50mib_round_trip_streamed(client, sandbox):
    src = RandomSource(SIZE)
    tracemalloc.start()
    try:
        w = client.upload(sandbox.id, "/root/big", src)          # chunked, from a file object
        up_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        sink = HashSink()
        n = client.download(sandbox.id, "/root/big", sink)
        down_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    want = src.sha.hexdigest()
    assert w.bytes == SIZE and w.sha256 == want
    assert n == SIZE and sink.n == SIZE and sink.sha.hexdigest() == want
    # bounded memory: a few MiB at most, never the file (50 MiB)
    assert up_peak < 8 << 20 and down_peak < 8 << 20, (up_peak, down_peak)
    c = sandbox.exec("sha256sum /root/big; rm /root/big")
    assert c.stdout.split()[0] == want
