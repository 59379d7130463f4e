# SPDX-License-Identifier: MIT
"""Typed results of the fluid API.

Each dataclass keeps the fields documented in API.md / docs/api-notes.md and
the complete JSON object in ``raw`` (so fields added by newer servers are not
lost). ``from_dict`` ignores unknown keys and tolerates missing ones.
"""

from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client


def _build(cls, d: Optional[Dict[str, Any]]):
    if d is None:
        return None
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    kw = {k: v for k, v in d.items() if k in names and k != "raw"}
    obj = cls(**kw)
    obj.raw = d
    return obj


@dataclass
class Sandbox:
    """A sandbox (fluid.sh fields plus cpu, memory_mb, boot, head, snapshots).

    Bound to the client that returned it: ``sb.exec("id")``, ``sb.destroy()``...
    Used as a context manager it destroys the sandbox on exit.
    """
    id: str = ""
    job_id: Optional[str] = None
    agent_id: Optional[str] = None
    sandbox_name: Optional[str] = None
    base_image: Optional[str] = None
    network: Optional[str] = None
    ip_address: Optional[str] = None
    state: str = ""
    ttl_seconds: Optional[int] = None
    created_at: Optional[str] = None
    updated_at: Optional[str] = None
    cpu: Optional[int] = None
    memory_mb: Optional[int] = None
    boot: Optional[str] = None
    head: Optional[str] = None
    snapshots: Any = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _client: Optional["Client"] = field(default=None, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d, client=None) -> "Sandbox":
        s = _build(cls, d)
        s._client = client
        return s

    # -- convenience, all delegate to the client --------------------------------
    def _c(self) -> "Client":
        if self._client is None:
            raise RuntimeError("this Sandbox is not bound to a Client")
        return self._client

    def refresh(self) -> "Sandbox":
        new = self._c().get_sandbox(self.id)
        for f in dataclasses.fields(self):
            if f.name != "_client":
                setattr(self, f.name, getattr(new, f.name))
        return self

    def exec(self, command=None, **kw) -> "Command":
        return self._c().exec(self.id, command, **kw)

    def exec_stream(self, command=None, **kw) -> "ExecStream":
        return self._c().exec_stream(self.id, command, **kw)

    def start(self) -> "Sandbox":
        return self._c().start_sandbox(self.id)

    def stop(self) -> "Sandbox":
        return self._c().stop_sandbox(self.id)

    def destroy(self) -> Dict[str, Any]:
        return self._c().destroy_sandbox(self.id)

    def read_file(self, path: str) -> bytes:
        return self._c().read_file(self.id, path)

    def write_file(self, path: str, data, **kw) -> "FileWrite":
        return self._c().write_file(self.id, path, data, **kw)

    def upload(self, path: str, source, **kw) -> "FileWrite":
        return self._c().upload(self.id, path, source, **kw)

    def download(self, path: str, dest) -> int:
        return self._c().download(self.id, path, dest)

    def list_files(self, path: str) -> List["FileInfo"]:
        return self._c().list_files(self.id, path)

    def snapshot(self, name: str, memory: bool = False) -> "Snapshot":
        return self._c().create_snapshot(self.id, name, memory=memory)

    def snapshots_list(self) -> List["Snapshot"]:
        return self._c().list_snapshots(self.id)

    def restore(self, name: str) -> "Sandbox":
        return self._c().restore_snapshot(self.id, name)

    def branch(self, snapshot: str, **kw) -> "Sandbox":
        return self._c().branch(self.id, snapshot, **kw)

    def commands(self, **kw) -> List["Command"]:
        return self._c().list_commands(self.id, **kw)

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        from .errors import NotFound
        try:
            self.destroy()
        except NotFound:
            pass


@dataclass
class Command:
    """A command record: output capped at 64 KiB, sizes and sha256 of the full streams."""
    id: str = ""
    sandbox_id: str = ""
    command: Any = None
    env: Any = None
    stdout: str = ""
    stderr: str = ""
    exit_code: Optional[int] = None
    started_at: Optional[str] = None
    ended_at: Optional[str] = None
    signal: Optional[int] = None
    timed_out: bool = False
    duration_ms: Optional[int] = None
    stdout_bytes: Optional[int] = None
    stderr_bytes: Optional[int] = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    stdout_sha256: Optional[str] = None
    stderr_sha256: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d) -> "Command":
        return _build(cls, d)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass
class OutputChunk:
    """One piece of streamed output: ``stream`` is "stdout" or "stderr"."""
    stream: str
    data: bytes

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


@dataclass
class ExecResult:
    """The last line of a streamed exec."""
    exit_code: Optional[int] = None
    command_id: Optional[str] = None
    signal: Optional[int] = None
    timed_out: bool = False
    duration_ms: Optional[int] = None
    stdout_bytes: Optional[int] = None
    stderr_bytes: Optional[int] = None
    error: Optional[str] = None
    stdout: bytes = b""
    stderr: bytes = b""
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d) -> "ExecResult":
        return _build(cls, d)


class ExecStream:
    """Iterator over the output of a running command (NDJSON exec).

    Iterating yields :class:`OutputChunk` objects as the guest produces them.
    Afterwards ``result`` is the :class:`ExecResult` (``result.stdout`` /
    ``result.stderr`` hold everything that was yielded). Closing the stream
    early (``close()`` or leaving a ``with`` block) disconnects, which makes
    the server cancel the command.
    """

    def __init__(self, conn, resp, method: str, path: str):
        self._conn = conn
        self._resp = resp
        self._method = method
        self._path = path
        self.command_id: Optional[str] = resp.getheader("X-Command-Id")
        self.result: Optional[ExecResult] = None
        self._out: List[bytes] = []
        self._err: List[bytes] = []

    def __iter__(self):
        import json
        from .errors import StreamBroken
        try:
            while True:
                try:
                    line = self._resp.readline()
                except OSError as e:
                    raise StreamBroken(f"exec stream broke: {e}", 0, None, self._method, self._path)
                if not line:
                    break
                line = line.strip()
                if not line:
                    continue
                msg = json.loads(line)
                if "stream" in msg:
                    data = msg.get("data", "")
                    raw = (base64.b64decode(data) if msg.get("encoding") == "base64"
                           else data.encode("utf-8"))
                    (self._out if msg["stream"] == "stdout" else self._err).append(raw)
                    yield OutputChunk(msg["stream"], raw)
                elif "exit_code" in msg:
                    self.result = ExecResult.from_dict(msg)
                    self.result.stdout = b"".join(self._out)
                    self.result.stderr = b"".join(self._err)
            if self.result is None:
                raise StreamBroken("exec stream ended without an exit code", 0, None,
                                   self._method, self._path)
        finally:
            self.close()

    def wait(self) -> ExecResult:
        """Consumes the rest of the stream and returns the result."""
        for _ in self:
            pass
        return self.result  # type: ignore[return-value]

    def close(self) -> None:
        # the response holds its own reference to the socket: close both so
        # the server sees the disconnect (and cancels the command)
        if self._conn is not None:
            try:
                self._resp.close()
            finally:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> "ExecStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class Process:
    """A background process (``bg`` is the guest agent's id)."""
    bg: Optional[int] = None
    pid: Optional[int] = None
    running: Optional[bool] = None
    exit_code: Optional[int] = None
    signal: Optional[int] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d) -> "Process":
        return _build(cls, d)


@dataclass
class FileInfo:
    """An entry of ``list_files``."""
    name: str = ""
    kind: Optional[str] = None
    mode: Optional[int] = None
    size: Optional[int] = None
    uid: Optional[int] = None
    gid: Optional[int] = None
    mtime: Any = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d) -> "FileInfo":
        return _build(cls, d)


@dataclass
class FileWrite:
    """Answer of an upload: bytes received and their sha256."""
    path: str = ""
    bytes: int = 0
    sha256: str = ""
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d) -> "FileWrite":
        return _build(cls, d)


@dataclass
class Snapshot:
    """A snapshot (disk) or checkpoint (``memory`` true: disk + RAM)."""
    id: str = ""
    sandbox_id: str = ""
    name: str = ""
    kind: Optional[str] = None
    memory: bool = False
    parent: Optional[str] = None
    ref: Optional[str] = None
    created_at: Optional[str] = None
    consistent: Optional[bool] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d) -> "Snapshot":
        return _build(cls, d)


@dataclass
class Image:
    """A base image (``GET /v1/vms``)."""
    name: str = ""
    uuid: Optional[str] = None
    state: Optional[str] = None
    persistent: Optional[bool] = None
    disk_path: Optional[str] = None
    default: Optional[bool] = None
    memory_mb: Optional[int] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d) -> "Image":
        return _build(cls, d)


@dataclass
class Diff:
    """A trusted diff between two snapshots; ``diff_json`` has the changes."""
    id: str = ""
    sandbox_id: str = ""
    from_snapshot: Optional[str] = None
    to_snapshot: Optional[str] = None
    created_at: Optional[str] = None
    diff_json: Dict[str, Any] = field(default_factory=dict)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d) -> "Diff":
        return _build(cls, d)


@dataclass
class Playbook:
    """A stored playbook with its tasks."""
    id: Optional[str] = None
    name: str = ""
    hosts: Optional[str] = None
    become: Optional[bool] = None
    sandbox_id: Optional[str] = None
    diff_id: Optional[str] = None
    created_at: Optional[str] = None
    updated_at: Optional[str] = None
    task_count: Optional[int] = None
    flagged: Any = None
    files: Any = None
    skipped: Any = None
    incomplete: Any = None
    tasks: List[Dict[str, Any]] = field(default_factory=list)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_answer(cls, d) -> "Playbook":
        pb = _build(cls, d.get("playbook") or {})
        pb.tasks = d.get("tasks") or []
        pb.raw = d
        return pb


@dataclass
class Change:
    """A change job: diff -> playbook -> rehearsal.

    ``state``: running, then verified | unverified | failed (or interrupted).
    """
    id: str = ""
    sandbox_id: str = ""
    from_snapshot: Optional[str] = None
    to_snapshot: Optional[str] = None
    state: str = ""
    stage: Optional[str] = None
    rehearsal_stage: Optional[str] = None
    diff_id: Optional[str] = None
    playbook: Optional[str] = None
    flagged: Any = None
    skipped: Any = None
    rehearsal: Any = None
    residual: Any = None
    verified: Optional[bool] = None
    error: Optional[str] = None
    stages_ms: Any = None
    created_at: Optional[str] = None
    updated_at: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d) -> "Change":
        return _build(cls, d)

    @property
    def done(self) -> bool:
        return self.state not in ("running", "queued", "")


@dataclass
class AuditEvent:
    """A row of the hash-chained audit log."""
    id: Any = None
    at: Optional[str] = None
    actor: Any = None
    role: Optional[str] = None
    action: str = ""
    sandbox_id: Optional[str] = None
    status: Any = None
    details: Any = None
    prev_hash: Optional[str] = None
    hash: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d) -> "AuditEvent":
        return _build(cls, d)


@dataclass
class Token:
    """An API token (the secret ``token`` is only in the create answer)."""
    id: str = ""
    role: str = ""
    name: Optional[str] = None
    token: Optional[str] = None
    created_at: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d) -> "Token":
        return _build(cls, d)


@dataclass
class Page:
    """One page of a listing: ``items`` and ``total`` (all matches)."""
    items: list
    total: int

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]
