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

    def policy(self) -> "PolicyAssignment":
        return self._c().sandbox_policy(self.id)

    def tmux_sessions(self) -> List["TmuxSession"]:
        return self._c().tmux_sessions(self.id)

    def tmux_send_keys(self, keys: str, **kw) -> str:
        return self._c().tmux_send_keys(self.id, keys, **kw)

    def tmux_read(self, **kw) -> "PaneContent":
        return self._c().tmux_read(self.id, **kw)

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


# ---------------------------------------------------------------------- approvals

APPROVAL_STATES = ("pending", "approved", "rejected", "applying", "applied", "failed")
APPROVAL_KINDS = ("change", "command", "question")


@dataclass
class ApplyResult:
    """The result of a production apply (or of a check run): ``Approval.apply``.

    ``recap`` maps each host to ``{ok, changed, unreachable, failed,
    skipped, rescued, ignored}``; ``output_tail`` is the last 16 KiB of the
    ansible-playbook output.
    """
    ok: bool = False
    exit_code: Optional[int] = None
    check: bool = False
    hosts: List[str] = field(default_factory=list)
    recap: Dict[str, Any] = field(default_factory=dict)
    output_tail: str = ""
    output_bytes: Optional[int] = None
    output_truncated: bool = False
    error: Optional[str] = None
    playbook_sha256: Optional[str] = None
    applied_by: Optional[str] = None
    started_at: Optional[str] = None
    ended_at: Optional[str] = None
    duration_ms: Optional[int] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d) -> Optional["ApplyResult"]:
        return _build(cls, d)


@dataclass
class Approval:
    """A human approval (docs/approvals.md).

    ``kind``: change | command | question. ``state``: pending -> approved |
    rejected; approved -> applying -> applied | failed. A ``change``
    approval pins its playbook (``playbook``, ``playbook_sha256``); ``apply``
    is the :class:`ApplyResult` of the production apply (None before one).
    Bound to the client that returned it: ``a.wait()``, ``a.approve()``...
    """
    id: str = ""
    kind: str = ""
    state: str = ""
    summary: str = ""
    details: Optional[Dict[str, Any]] = None
    sandbox_id: Optional[str] = None
    change_id: Optional[str] = None
    playbook: Optional[str] = None
    playbook_sha256: Optional[str] = None
    requested_by: Optional[str] = None
    requested_role: Optional[str] = None
    decided_by: Optional[str] = None
    comment: Optional[str] = None
    decided_at: Optional[str] = None
    created_at: Optional[str] = None
    updated_at: Optional[str] = None
    apply: Optional[ApplyResult] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _client: Optional["Client"] = field(default=None, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d, client=None) -> Optional["Approval"]:
        if d is None:
            return None
        a = _build(cls, d)
        a.apply = ApplyResult.from_dict(d.get("apply")) if isinstance(d.get("apply"), dict) else None
        a._client = client
        return a

    @property
    def pending(self) -> bool:
        return self.state == "pending"

    @property
    def decided(self) -> bool:
        """A reviewer approved or rejected it."""
        return self.state not in ("pending", "")

    @property
    def approved(self) -> bool:
        """A reviewer approved it (whatever happened to the apply since)."""
        return self.state in ("approved", "applying", "applied", "failed")

    @property
    def rejected(self) -> bool:
        return self.state == "rejected"

    def _c(self) -> "Client":
        if self._client is None:
            raise RuntimeError("this Approval is not bound to a Client")
        return self._client

    def refresh(self) -> "Approval":
        new = self._c().get_approval(self.id)
        for f in dataclasses.fields(self):
            if f.name != "_client":
                setattr(self, f.name, getattr(new, f.name))
        return self

    def wait(self, timeout: float = 3600.0) -> "Approval":
        return self._c().wait_approval(self.id, timeout=timeout)

    def approve(self, comment: Optional[str] = None) -> "Approval":
        return self._c().approve(self.id, comment)

    def reject(self, comment: Optional[str] = None) -> "Approval":
        return self._c().reject(self.id, comment)


@dataclass
class HumanAnswer:
    """The answer of ``ask_human`` (``POST /api/v1/human/ask``).

    ``approved`` is true when a reviewer approved; ``timed_out`` when nobody
    decided within the timeout (the approval is still pending: keep waiting
    with ``wait_approval(answer.approval.id)``).
    """
    approval: Optional[Approval] = None
    state: str = ""
    approved: bool = False
    comment: Optional[str] = None
    timed_out: bool = False
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d, client=None) -> "HumanAnswer":
        h = _build(cls, d)
        h.approval = Approval.from_dict(d.get("approval"), client)
        return h


@dataclass
class ApplyOutcome:
    """The end of an apply (``apply_approval`` or the last line of ``apply_stream``).

    ``approval`` is the approval afterwards (state applied | failed; for a
    check run unchanged), ``result`` the :class:`ApplyResult` (the
    approval's ``apply``, or the check run's result).
    """
    ok: bool = False
    exit_code: Optional[int] = None
    error: Optional[str] = None
    state: Optional[str] = None
    approval: Optional[Approval] = None
    result: Optional[ApplyResult] = None
    check: bool = False
    output: str = ""
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_answer(cls, d, client=None, check: bool = False) -> "ApplyOutcome":
        """From the JSON answer ``{approval, check?}`` or the NDJSON last line."""
        apr = Approval.from_dict(d.get("approval"), client)
        res = ApplyResult.from_dict(d["check"]) if isinstance(d.get("check"), dict) else None
        if res is None and apr is not None and not check:
            res = apr.apply
        o = cls(approval=apr, result=res, check=check, raw=d)
        o.state = d.get("state", apr.state if apr else None)
        o.ok = bool(d["ok"]) if "ok" in d else bool(res and res.ok)
        o.exit_code = d.get("exit_code", res.exit_code if res else None)
        o.error = d.get("error", res.error if res else None)
        return o


class ApplyStream:
    """Iterator over the output of a running production apply (NDJSON).

    Yields :class:`OutputChunk` lines (``stream`` "stdout": ansible-playbook's
    stdout and stderr together) as they are produced; afterwards ``result``
    is the :class:`ApplyOutcome` and ``result.output`` all the text.
    Closing the stream early does not stop the apply on the server (it runs
    to the end and is recorded): read the approval again for the result.
    """

    def __init__(self, conn, resp, method: str, path: str, client=None, check: bool = False):
        self._conn = conn
        self._resp = resp
        self._method = method
        self._path = path
        self._client = client
        self._check = check
        self.approval_id: Optional[str] = resp.getheader("X-Approval-Id")
        self.result: Optional[ApplyOutcome] = None
        self._out: List[str] = []

    def __iter__(self):
        import json
        from .errors import StreamBroken
        try:
            while True:
                try:
                    line = self._resp.readline()
                except OSError as e:
                    raise StreamBroken(f"apply stream broke: {e}", 0, None, self._method, self._path)
                if not line:
                    break
                line = line.strip()
                if not line:
                    continue
                msg = json.loads(line)
                if "stream" in msg:
                    data = msg.get("data", "")
                    self._out.append(data)
                    yield OutputChunk(msg["stream"], data.encode("utf-8"))
                elif "ok" in msg or "state" in msg or "approval" in msg:
                    self.result = ApplyOutcome.from_answer(msg, self._client, self._check)
                    self.result.output = "".join(self._out)
            if self.result is None:
                raise StreamBroken("apply stream ended without a result", 0, None,
                                   self._method, self._path)
        finally:
            self.close()

    def wait(self) -> ApplyOutcome:
        for _ in self:
            pass
        return self.result  # type: ignore[return-value]

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._resp.close()
            finally:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> "ApplyStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------- whoami, policies, tmux

@dataclass
class Whoami:
    """The caller's own token (``GET /v1/whoami``)."""
    token_id: Optional[str] = None
    role: str = ""
    name: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d) -> "Whoami":
        return _build(cls, d)


@dataclass
class Policy:
    """A safety policy (docs/policies.md): ``commands`` {deny, approval,
    allow, opaque, approval_timeout_sec}, ``files`` {read, write},
    ``limits`` {...}, ``network`` {egress, allow}. ``default`` tells whether
    it is the server's default policy."""
    name: str = ""
    description: Optional[str] = None
    commands: Dict[str, Any] = field(default_factory=dict)
    files: Dict[str, Any] = field(default_factory=dict)
    limits: Dict[str, Any] = field(default_factory=dict)
    network: Dict[str, Any] = field(default_factory=dict)
    default: Optional[bool] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d, default: Optional[bool] = None) -> Optional["Policy"]:
        p = _build(cls, d)
        if p is not None and default is not None:
            p.default = default
        return p


@dataclass
class PolicyAssignment:
    """The policy in force for a sandbox or a token: ``policy`` (its name),
    ``source`` (sandbox | token | default), ``effective`` (the :class:`Policy`),
    ``creator`` (a sandbox's creating token)."""
    policy: str = ""
    source: str = ""
    sandbox_id: Optional[str] = None
    token_id: Optional[str] = None
    creator: Optional[str] = None
    effective: Optional[Policy] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d) -> "PolicyAssignment":
        a = _build(cls, d)
        a.effective = Policy.from_dict(d.get("effective")) if isinstance(d.get("effective"), dict) else None
        return a


@dataclass
class TmuxPane:
    """A pane of a sandbox's tmux session (``pane_id`` like "%0")."""
    pane_id: str = ""
    session: Optional[str] = None
    window: Optional[int] = None
    index: Optional[int] = None
    active: Optional[bool] = None
    window_active: Optional[bool] = None
    command: Optional[str] = None
    width: Optional[int] = None
    height: Optional[int] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d) -> "TmuxPane":
        return _build(cls, d)


@dataclass
class TmuxSession:
    """A tmux session in a sandbox (the default one is named "fluid")."""
    name: str = ""
    windows: Optional[int] = None
    attached: Optional[int] = None
    created_at: Optional[str] = None
    panes: List[TmuxPane] = field(default_factory=list)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d) -> "TmuxSession":
        s = _build(cls, d)
        s.panes = [TmuxPane.from_dict(p) for p in d.get("panes") or []]
        return s


@dataclass
class PaneContent:
    """What a tmux pane shows (``tmux_read``): ``content`` cut at 1 MiB (``truncated``)."""
    pane_id: str = ""
    content: str = ""
    truncated: bool = False
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d) -> "PaneContent":
        return _build(cls, d)
