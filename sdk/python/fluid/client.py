# SPDX-License-Identifier: MIT
"""The fluid API client (standard library only).

DESIGN: every call opens its own HTTP/1.1 connection (``http.client``), so a
Client can be shared between threads and a streaming exec or download never
blocks other calls. Idempotent calls (GET) are retried on connection errors
and 502/503 with a short backoff; other calls are retried only when the
connection could not be opened (nothing was sent). Uploads stream from a
file object in 64 KiB pieces (chunked transfer when the size is unknown),
downloads stream into one, so memory stays bounded whatever the file size.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import time
import urllib.parse
from typing import Any, BinaryIO, Dict, Iterator, List, Optional, Union

from . import errors
from .errors import FluidError
from .models import (ApplyOutcome, ApplyStream, Approval, AuditEvent, Change, Command, Diff,
                     ExecStream, FileInfo, FileWrite, HumanAnswer, Image, Page, PaneContent,
                     Playbook, Policy, PolicyAssignment, Process, Sandbox, Snapshot, TmuxSession,
                     Token, Whoami)

__all__ = ["Client"]

CHUNK = 64 * 1024
_RETRY_STATUSES = (502, 503)


def _q(v: str) -> str:
    return urllib.parse.quote(str(v), safe="")


def _clean(d: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


class _Response:
    def __init__(self, status: int, headers, body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        if not self.body:
            return None
        return json.loads(self.body)


class Client:
    """A connection to a fluid server.

    ``Client(url, token=None)``: ``token`` defaults to the ``FLUID_TOKEN``
    environment variable (``url`` to ``FLUID_URL``, then
    ``http://127.0.0.1:8080``). ``timeout`` is the socket timeout in seconds
    for ordinary calls (long operations such as exec, diff or an approval
    wait get their own), ``retries`` how often an idempotent call is
    retried.
    """

    def __init__(self, url: Optional[str] = None, token: Optional[str] = None, *,
                 timeout: float = 120.0, retries: int = 3, backoff: float = 0.3,
                 user_agent: str = "fluid-python"):
        url = url or os.environ.get("FLUID_URL") or "http://127.0.0.1:8080"
        u = urllib.parse.urlsplit(url if "://" in url else "http://" + url)
        if u.scheme not in ("http", "https"):
            raise ValueError(f"unsupported URL scheme {u.scheme!r}")
        self.url = url.rstrip("/")
        self._scheme = u.scheme
        self._host = u.hostname or "127.0.0.1"
        self._port = u.port or (443 if u.scheme == "https" else 80)
        self._prefix = u.path.rstrip("/")
        self.token = token if token is not None else os.environ.get("FLUID_TOKEN")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.user_agent = user_agent

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    # ------------------------------------------------------------------ transport
    def _conn(self, timeout: Optional[float]) -> http.client.HTTPConnection:
        t = self.timeout if timeout is None else timeout
        if self._scheme == "https":
            return http.client.HTTPSConnection(self._host, self._port, timeout=t, blocksize=CHUNK)
        return http.client.HTTPConnection(self._host, self._port, timeout=t, blocksize=CHUNK)

    def _path(self, path: str, query: Optional[Dict[str, Any]] = None) -> str:
        full = self._prefix + path
        if query:
            q = {}
            for k, v in query.items():
                if v is None:
                    continue
                q[k] = ("true" if v else "false") if isinstance(v, bool) else str(v)
            if q:
                full += "?" + urllib.parse.urlencode(q)
        return full

    def _headers(self, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        h = {"User-Agent": self.user_agent, "Accept": "application/json"}
        if self.token:
            h["Authorization"] = "Bearer " + self.token
        if extra:
            h.update(extra)
        return h

    def _open(self, method: str, path: str, *, query=None, body=None, headers=None,
              timeout=None, encode_chunked=False, retry: Optional[bool] = None):
        """Sends a request; returns (conn, response) with the body unread.

        Retries: a refused/failed connect is always retried (nothing was
        sent); other transport errors and 502/503 only when ``retry`` (GET by
        default). Error statuses raise the mapped exception.
        """
        full = self._path(path, query)
        if retry is None:
            retry = method in ("GET", "HEAD")
        attempt = 0
        while True:
            attempt += 1
            conn = self._conn(timeout)
            sent = False
            try:
                conn.connect()
                sent = True
                conn.request(method, full, body=body, headers=self._headers(headers),
                             encode_chunked=encode_chunked)
                resp = conn.getresponse()
            except socket.timeout as e:
                conn.close()
                if retry and attempt <= self.retries:
                    time.sleep(self.backoff * attempt)
                    continue
                raise errors.Timeout(f"no answer within {conn.timeout} s: {e}", 0, None, method, full)
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                rewindable = body is None or isinstance(body, (bytes, bytearray, str))
                if attempt <= self.retries and (not sent or (retry and rewindable)):
                    time.sleep(self.backoff * attempt)
                    continue
                raise errors.ConnectionFailed(f"{type(e).__name__}: {e}", 0, None, method, full)
            if resp.status >= 400:
                data = resp.read()
                conn.close()
                if retry and resp.status in _RETRY_STATUSES and attempt <= self.retries:
                    time.sleep(self.backoff * attempt)
                    continue
                try:
                    parsed = json.loads(data) if data else None
                except ValueError:
                    parsed = data
                raise errors.error_for(resp.status, parsed, method, full)
            return conn, resp

    def _call(self, method: str, path: str, body: Any = None, *, query=None, timeout=None,
              retry: Optional[bool] = None, expect_json=True) -> Any:
        data = None
        headers = None
        if body is not None:
            data = json.dumps(body).encode()
            headers = {"Content-Type": "application/json"}
        elif method in ("POST", "PUT", "PATCH"):
            data = b""
        conn, resp = self._open(method, path, query=query, body=data, headers=headers,
                                timeout=timeout, retry=retry)
        try:
            raw = resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise errors.ConnectionFailed(f"reading the answer: {e}", 0, None, method, path)
        finally:
            conn.close()
        if not expect_json:
            return raw
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise FluidError(f"answer is not JSON: {raw[:200]!r}", resp.status, None, method, path, raw)

    def request(self, method: str, path: str, body: Any = None, **kw) -> Any:
        """Raw escape hatch: a JSON call to any path (``/v1/...``); returns parsed JSON."""
        return self._call(method, path, body, **kw)

    # ------------------------------------------------------------------ server
    def health(self) -> Dict[str, Any]:
        return self._call("GET", "/v1/health")

    def status(self) -> Dict[str, Any]:
        """``GET /v1/status``: accelerator, capacity, versions, engine."""
        return self._call("GET", "/v1/status")

    def images(self) -> List[Image]:
        """Base images (``GET /v1/vms``)."""
        return [Image.from_dict(v) for v in self._call("GET", "/v1/vms").get("vms", [])]

    def routes(self) -> Dict[str, Any]:
        """The server's OpenAPI document (``GET /v1/openapi.json``)."""
        return self._call("GET", "/v1/openapi.json")

    def has_route(self, path: str) -> bool:
        """True when the server routes ``path`` (any method). ``{...}``
        placeholders are filled with a dummy id. Probes with a GET, which
        for a POST-only route is a harmless 405; only the router's own
        ``404 no such endpoint`` means the server lacks it."""
        import re
        probe = re.sub(r"\{[^}]*\}", "probe-0", path)
        try:
            self._call("GET", probe, retry=False)
        except errors.NotFound as e:
            return e.message != "no such endpoint"
        except FluidError as e:
            return e.status != 0
        return True

    # ------------------------------------------------------------------ sandboxes
    def _sandbox(self, d: Dict[str, Any]) -> Sandbox:
        return Sandbox.from_dict(d, self)

    def create_sandbox(self, image: Optional[str] = None, *, name: Optional[str] = None,
                       agent_id: Optional[str] = None, job_id: Optional[str] = None,
                       cpu: Optional[int] = None, memory_mb: Optional[int] = None,
                       ttl_seconds: Optional[int] = None, network: Optional[str] = None,
                       boot: Optional[str] = None, auto_start: Optional[bool] = None,
                       from_sandbox: Optional[str] = None, from_snapshot: Optional[str] = None,
                       timeout: float = 600.0) -> Sandbox:
        """Creates a sandbox (``POST /v1/sandboxes``).

        ``image`` is a base image (default: the server's ``images.default``);
        ``network`` ``"nat"`` or ``"none"``; ``boot="cold"`` boots instead of
        cloning the template; ``from_sandbox`` + ``from_snapshot`` branch a
        snapshot (the image and shape then come from it). ``auto_start=False``
        leaves it CREATED. Usable as a context manager that destroys it.
        """
        body = _clean({"base_image": image, "vm_name": name, "agent_id": agent_id,
                       "job_id": job_id, "cpu": cpu, "memory_mb": memory_mb,
                       "ttl_seconds": ttl_seconds, "network": network, "boot": boot,
                       "auto_start": auto_start, "from_sandbox": from_sandbox,
                       "from_snapshot": from_snapshot})
        d = self._call("POST", "/v1/sandboxes", body, timeout=timeout)
        return self._sandbox(d["sandbox"])

    def branch(self, sandbox_id: str, snapshot: str, *, name: Optional[str] = None,
               **kw) -> Sandbox:
        """A new sandbox from ``snapshot`` of ``sandbox_id``."""
        return self.create_sandbox(name=name, from_sandbox=sandbox_id, from_snapshot=snapshot, **kw)

    def get_sandbox(self, sandbox_id: str) -> Sandbox:
        return self._sandbox(self._call("GET", f"/v1/sandboxes/{_q(sandbox_id)}")["sandbox"])

    def list_sandboxes(self, *, agent_id=None, job_id=None, base_image=None, state=None,
                       name=None, limit: Optional[int] = None, offset: Optional[int] = None) -> Page:
        """One page of sandboxes; ``Page.total`` counts every match."""
        d = self._call("GET", "/v1/sandboxes", query={
            "agent_id": agent_id, "job_id": job_id, "base_image": base_image, "state": state,
            "vm_name": name, "limit": limit, "offset": offset})
        return Page([self._sandbox(s) for s in d.get("sandboxes", [])], d.get("total", 0))

    def iter_sandboxes(self, page_size: int = 100, **filters) -> Iterator[Sandbox]:
        """Every matching sandbox, fetched page by page."""
        offset = 0
        while True:
            page = self.list_sandboxes(limit=page_size, offset=offset, **filters)
            yield from page.items
            offset += len(page.items)
            if not page.items or offset >= page.total:
                return

    def start_sandbox(self, sandbox_id: str, timeout: float = 600.0) -> Sandbox:
        d = self._call("POST", f"/v1/sandboxes/{_q(sandbox_id)}/start", {"wait_for_ip": True},
                       timeout=timeout)
        return self._sandbox(d["sandbox"])

    def stop_sandbox(self, sandbox_id: str, timeout: float = 600.0) -> Sandbox:
        d = self._call("POST", f"/v1/sandboxes/{_q(sandbox_id)}/stop", timeout=timeout)
        return self._sandbox(d["sandbox"])

    def destroy_sandbox(self, sandbox_id: str, timeout: float = 600.0) -> Dict[str, Any]:
        """Destroys the sandbox; returns the server's answer (``state`` DESTROYED)."""
        return self._call("DELETE", f"/v1/sandboxes/{_q(sandbox_id)}", timeout=timeout)

    def sandbox_ip(self, sandbox_id: str) -> Optional[str]:
        return self._call("GET", f"/v1/sandboxes/{_q(sandbox_id)}/ip").get("ip_address")

    # ------------------------------------------------------------------ commands
    @staticmethod
    def _exec_body(command, argv, env, user, cwd, timeout_sec, stdin) -> Dict[str, Any]:
        if (command is None) == (argv is None):
            raise ValueError("give exactly one of command (a shell string) or argv (a list)")
        if isinstance(command, (list, tuple)):
            command, argv = None, list(command)
        return _clean({"command": command, "argv": list(argv) if argv is not None else None,
                       "env": env, "user": user, "cwd": cwd, "timeout_sec": timeout_sec,
                       "stdin": stdin})

    @staticmethod
    def _exec_timeout(timeout_sec: Optional[int]) -> Optional[float]:
        if timeout_sec == 0:
            return None  # no limit on the server either: wait forever
        return (timeout_sec or 600) + 60.0

    def exec(self, sandbox_id: str, command: Union[str, List[str], None] = None, *,
             argv: Optional[List[str]] = None, env: Optional[Dict[str, str]] = None,
             user: Optional[str] = None, cwd: Optional[str] = None,
             timeout_sec: Optional[int] = None, stdin: Optional[str] = None,
             check: bool = False) -> Command:
        """Runs a command and waits for it: a :class:`Command` with stdout,
        stderr (first 64 KiB each), exit_code. ``command`` is run by
        ``/bin/sh -c``; a list (or ``argv=``) is run directly. ``check=True``
        raises :class:`CommandFailed` on a non-zero exit code."""
        body = self._exec_body(command, argv, env, user, cwd, timeout_sec, stdin)
        d = self._call("POST", f"/v1/sandboxes/{_q(sandbox_id)}/run", body,
                       timeout=self._exec_timeout(timeout_sec))
        cmd = Command.from_dict(d["command"])
        if check and cmd.exit_code != 0:
            raise CommandFailed(cmd)
        return cmd

    run = exec

    def exec_stream(self, sandbox_id: str, command: Union[str, List[str], None] = None, *,
                    argv: Optional[List[str]] = None, env: Optional[Dict[str, str]] = None,
                    user: Optional[str] = None, cwd: Optional[str] = None,
                    timeout_sec: Optional[int] = None, stdin: Optional[str] = None) -> ExecStream:
        """Starts a command and returns an :class:`ExecStream`: iterate it
        for :class:`OutputChunk` objects as they are produced; ``.result``
        then has the exit code. Closing it early cancels the command."""
        body = self._exec_body(command, argv, env, user, cwd, timeout_sec, stdin)
        path = f"/v1/sandboxes/{_q(sandbox_id)}/exec"
        conn, resp = self._open("POST", path, body=json.dumps(body).encode(),
                                headers={"Content-Type": "application/json",
                                         "Accept": "application/x-ndjson"},
                                timeout=self._exec_timeout(timeout_sec), retry=False)
        return ExecStream(conn, resp, "POST", path)

    def list_commands(self, sandbox_id: str, *, limit: Optional[int] = None,
                      offset: Optional[int] = None) -> Page:
        d = self._call("GET", f"/v1/sandboxes/{_q(sandbox_id)}/commands",
                       query={"limit": limit, "offset": offset})
        return Page([Command.from_dict(c) for c in d.get("commands", [])], d.get("total", 0))

    def get_command(self, sandbox_id: str, command_id: str) -> Command:
        return Command.from_dict(self._call(
            "GET", f"/v1/sandboxes/{_q(sandbox_id)}/commands/{_q(command_id)}")["command"])

    def command_output(self, sandbox_id: str, command_id: str, stream: str = "stdout") -> bytes:
        """The full raw output of a command (not capped)."""
        return self._call("GET", f"/v1/sandboxes/{_q(sandbox_id)}/commands/{_q(command_id)}/output",
                          query={"stream": stream}, expect_json=False)

    # ------------------------------------------------------------------ background processes
    def start_process(self, sandbox_id: str, command: Union[str, List[str], None] = None, *,
                      argv=None, env=None, user=None, cwd=None,
                      timeout_sec: Optional[int] = None) -> Process:
        """Starts a background process; returns it (``bg`` is its id)."""
        body = self._exec_body(command, argv, env, user, cwd, timeout_sec, None)
        d = self._call("POST", f"/v1/sandboxes/{_q(sandbox_id)}/processes", body)
        return Process.from_dict(d["process"])

    def list_processes(self, sandbox_id: str) -> List[Process]:
        d = self._call("GET", f"/v1/sandboxes/{_q(sandbox_id)}/processes")
        return [Process.from_dict(p) for p in d.get("processes", [])]

    def kill_process(self, sandbox_id: str, bg: int, signal: int = 15) -> Dict[str, Any]:
        return self._call("POST", f"/v1/sandboxes/{_q(sandbox_id)}/processes/{int(bg)}/kill",
                          {"signal": signal})

    def wait_process(self, sandbox_id: str, bg: int, timeout_sec: int = 60) -> Process:
        """Waits until the process exited (:class:`Timeout` after ``timeout_sec``)."""
        d = self._call("GET", f"/v1/sandboxes/{_q(sandbox_id)}/processes/{int(bg)}/wait",
                       query={"timeout_sec": timeout_sec}, timeout=timeout_sec + 60.0)
        return Process.from_dict(d["process"])

    # ------------------------------------------------------------------ files
    def _file_query(self, path: str, **extra) -> Dict[str, Any]:
        q = {"path": path}
        q.update(extra)
        return q

    def upload(self, sandbox_id: str, path: str, source: Union[str, os.PathLike, BinaryIO, bytes],
               *, mode: Optional[int] = None, mkdirs: bool = False,
               timeout: Optional[float] = None) -> FileWrite:
        """Streams ``source`` (a local path, a binary file object or bytes)
        into ``path`` in the guest. A file object is read in 64 KiB pieces
        and sent chunked, never loaded whole. Answers bytes and sha256 of
        what the server received."""
        q = self._file_query(path, mode=(f"{mode:04o}" if mode is not None else None),
                             mkdirs=(True if mkdirs else None))
        api = f"/v1/sandboxes/{_q(sandbox_id)}/files"
        headers = {"Content-Type": "application/octet-stream"}
        close = None
        chunked = False
        if isinstance(source, (bytes, bytearray, memoryview)):
            body = bytes(source)
            headers["Content-Length"] = str(len(body))
        elif isinstance(source, (str, os.PathLike)):
            close = body = open(source, "rb")
            headers["Content-Length"] = str(os.fstat(body.fileno()).st_size)
        else:
            body = _Chunks(source)
            chunked = True
        try:
            conn, resp = self._open("PUT", api, query=q, body=body, headers=headers,
                                    timeout=timeout, encode_chunked=chunked, retry=False)
            try:
                d = json.loads(resp.read() or b"{}")
            finally:
                conn.close()
        finally:
            if close:
                close.close()
        return FileWrite.from_dict(d)

    def write_file(self, sandbox_id: str, path: str, data: Union[bytes, str], **kw) -> FileWrite:
        """Writes ``data`` (bytes, or str encoded as UTF-8) to ``path``."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        return self.upload(sandbox_id, path, data, **kw)

    def open_file(self, sandbox_id: str, path: str, timeout: Optional[float] = None) -> "FileDownload":
        """Opens a guest file for streamed reading: a file-like object with
        ``read(n)``, ``size`` and ``close()`` (also a context manager)."""
        api = f"/v1/sandboxes/{_q(sandbox_id)}/files"
        conn, resp = self._open("GET", api, query=self._file_query(path), timeout=timeout,
                                headers={"Accept": "application/octet-stream"})
        return FileDownload(conn, resp, api)

    def download(self, sandbox_id: str, path: str, dest: Union[str, os.PathLike, BinaryIO],
                 timeout: Optional[float] = None) -> int:
        """Streams ``path`` into ``dest`` (a local path or a binary file
        object); returns the byte count. A local path is written to a
        temporary file renamed into place when complete."""
        with self.open_file(sandbox_id, path, timeout=timeout) as src:
            if isinstance(dest, (str, os.PathLike)):
                tmp = f"{os.fspath(dest)}.part-{os.getpid()}"
                try:
                    with open(tmp, "wb") as f:
                        n = src.copy_to(f)
                    os.replace(tmp, dest)
                except BaseException:
                    try:
                        os.unlink(tmp)
                    except OSError:
                        pass
                    raise
                return n
            return src.copy_to(dest)

    def read_file(self, sandbox_id: str, path: str) -> bytes:
        """The whole file as bytes (use ``download``/``open_file`` for big ones)."""
        buf = io.BytesIO()
        self.download(sandbox_id, path, buf)
        return buf.getvalue()

    def list_files(self, sandbox_id: str, path: str) -> List[FileInfo]:
        d = self._call("GET", f"/v1/sandboxes/{_q(sandbox_id)}/files/list", query={"path": path})
        return [FileInfo.from_dict(e) for e in d.get("entries", [])]

    def delete_file(self, sandbox_id: str, path: str, recursive: bool = False) -> Dict[str, Any]:
        return self._call("DELETE", f"/v1/sandboxes/{_q(sandbox_id)}/files",
                          query={"path": path, "recursive": True if recursive else None})

    # ------------------------------------------------------------------ snapshots
    def create_snapshot(self, sandbox_id: str, name: str, memory: bool = False,
                        timeout: float = 600.0) -> Snapshot:
        """A snapshot (disk) or, with ``memory=True``, a checkpoint (disk + RAM)."""
        body = {"name": name}
        if memory:
            body["memory"] = True
        d = self._call("POST", f"/v1/sandboxes/{_q(sandbox_id)}/snapshots", body, timeout=timeout)
        return Snapshot.from_dict(d["snapshot"])

    def list_snapshots(self, sandbox_id: str) -> Page:
        """The snapshot tree as a list (``Page.total``); ``head`` is in ``Page.head``."""
        d = self._call("GET", f"/v1/sandboxes/{_q(sandbox_id)}/snapshots")
        page = Page([Snapshot.from_dict(s) for s in d.get("snapshots", [])], d.get("total", 0))
        page.head = d.get("head")  # type: ignore[attr-defined]
        return page

    def restore_snapshot(self, sandbox_id: str, name: str, timeout: float = 600.0) -> Sandbox:
        d = self._call("POST", f"/v1/sandboxes/{_q(sandbox_id)}/snapshots/{_q(name)}/restore",
                       timeout=timeout)
        return self._sandbox(d["sandbox"])

    def delete_snapshot(self, sandbox_id: str, name: str, timeout: float = 600.0) -> Dict[str, Any]:
        return self._call("DELETE", f"/v1/sandboxes/{_q(sandbox_id)}/snapshots/{_q(name)}",
                          timeout=timeout)

    # ------------------------------------------------------------------ diff, playbooks, changes
    def diff(self, sandbox_id: str, from_snapshot: str, to_snapshot: str = "live", *,
             ignore: Optional[List[str]] = None, timeout: float = 960.0) -> Diff:
        """The trusted diff between two snapshots (``to_snapshot="live"``:
        the current disk, through a temporary snapshot)."""
        body = _clean({"from_snapshot": from_snapshot, "to_snapshot": to_snapshot, "ignore": ignore})
        d = self._call("POST", f"/v1/sandboxes/{_q(sandbox_id)}/diff", body, timeout=timeout)
        return Diff.from_dict(d["diff"])

    def get_diff(self, sandbox_id: str, diff_id: str) -> Diff:
        return Diff.from_dict(self._call(
            "GET", f"/v1/sandboxes/{_q(sandbox_id)}/diffs/{_q(diff_id)}")["diff"])

    def generate_playbook(self, sandbox_id: str, *, name: Optional[str] = None,
                          hosts: Optional[str] = None) -> Playbook:
        """Generates (and stores) a playbook from the sandbox's newest diff."""
        d = self._call("POST", f"/v1/sandboxes/{_q(sandbox_id)}/generate/ansible",
                       _clean({"name": name, "hosts": hosts}))
        return Playbook.from_answer(d)

    def list_playbooks(self, *, limit: Optional[int] = None, offset: Optional[int] = None) -> Page:
        d = self._call("GET", "/v1/ansible/playbooks", query={"limit": limit, "offset": offset})
        return Page([Playbook.from_answer({"playbook": p}) for p in d.get("playbooks", [])],
                    d.get("total", 0))

    def get_playbook(self, name: str) -> Playbook:
        return Playbook.from_answer(self._call("GET", f"/v1/ansible/playbooks/{_q(name)}"))

    def create_playbook(self, name: str, *, hosts: Optional[str] = None,
                        become: Optional[bool] = None,
                        tasks: Optional[List[Dict[str, Any]]] = None) -> Playbook:
        d = self._call("POST", "/v1/ansible/playbooks",
                       _clean({"name": name, "hosts": hosts, "become": become, "tasks": tasks}))
        return Playbook.from_answer(d)

    def delete_playbook(self, name: str) -> None:
        self._call("DELETE", f"/v1/ansible/playbooks/{_q(name)}")

    def export_playbook(self, name: str) -> str:
        """The playbook's YAML text (``export_playbook_full`` adds the file blobs)."""
        return self.export_playbook_full(name).get("yaml", "")

    def export_playbook_full(self, name: str) -> Dict[str, Any]:
        return self._call("GET", f"/v1/ansible/playbooks/{_q(name)}/export")

    def add_task(self, playbook: str, task: Dict[str, Any]) -> Dict[str, Any]:
        return self._call("POST", f"/v1/ansible/playbooks/{_q(playbook)}/tasks", task)["task"]

    def update_task(self, playbook: str, task_id: str, task: Dict[str, Any]) -> Dict[str, Any]:
        return self._call("PUT", f"/v1/ansible/playbooks/{_q(playbook)}/tasks/{_q(task_id)}",
                          task)["task"]

    def delete_task(self, playbook: str, task_id: str) -> None:
        self._call("DELETE", f"/v1/ansible/playbooks/{_q(playbook)}/tasks/{_q(task_id)}")

    def reorder_tasks(self, playbook: str, task_ids: List[str]) -> List[Dict[str, Any]]:
        return self._call("PATCH", f"/v1/ansible/playbooks/{_q(playbook)}/tasks/reorder",
                          {"task_ids": list(task_ids)})["tasks"]

    def create_change(self, sandbox_id: str, from_snapshot: str, to_snapshot: str = "live", *,
                      name: Optional[str] = None, rehearse: Optional[bool] = None,
                      ignore: Optional[List[str]] = None) -> Change:
        """Starts the change pipeline (diff -> playbook -> rehearsal) as a
        job; returns at once (``state`` "running"). See :meth:`wait_change`."""
        body = _clean({"from_snapshot": from_snapshot, "to_snapshot": to_snapshot, "name": name,
                       "rehearse": rehearse, "ignore": ignore})
        d = self._call("POST", f"/v1/sandboxes/{_q(sandbox_id)}/changes", body)
        return Change.from_dict(d["change"])

    def get_change(self, change_id: str) -> Change:
        return Change.from_dict(self._call("GET", f"/v1/changes/{_q(change_id)}")["change"])

    def wait_change(self, change_id: str, timeout: float = 1800.0, poll: float = 1.0) -> Change:
        """Polls the change until it left ``running`` (:class:`Timeout` after ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while True:
            ch = self.get_change(change_id)
            if ch.done:
                return ch
            if time.monotonic() >= deadline:
                raise errors.Timeout(f"change {change_id} still {ch.state} after {timeout} s",
                                     0, None, "GET", f"/v1/changes/{change_id}")
            time.sleep(poll)

    # ------------------------------------------------------------------ approvals
    def _approval(self, d: Optional[Dict[str, Any]]) -> Approval:
        return Approval.from_dict(d, self)

    def request_approval(self, summary: str, *, change_id: Optional[str] = None,
                         sandbox_id: Optional[str] = None, kind: Optional[str] = None,
                         playbook: Optional[str] = None,
                         details: Optional[Dict[str, Any]] = None,
                         wait_seconds: Optional[int] = None) -> Approval:
        """Asks a human for approval (``POST /v1/approvals``).

        ``kind`` is "change" (a playbook for production: give ``change_id``,
        whose stored playbook is pinned, or ``playbook``), "question" or
        "command"; it defaults to "change" with ``change_id``/``playbook``,
        else "question". With ``wait_seconds`` (at most 300) the call
        long-polls: it returns as soon as a reviewer decides, or after the
        wait with the approval still pending.
        """
        body = _clean({"summary": summary, "kind": kind, "change_id": change_id,
                       "sandbox_id": sandbox_id, "playbook": playbook, "details": details,
                       "wait_seconds": wait_seconds})
        d = self._call("POST", "/v1/approvals", body,
                       timeout=(wait_seconds or 0) + self.timeout)
        return self._approval(d["approval"])

    def ask_human(self, question: str, *, sandbox_id: Optional[str] = None,
                  change_id: Optional[str] = None,
                  timeout_seconds: Optional[int] = None) -> HumanAnswer:
        """The product README's blocking call (``POST /api/v1/human/ask``):
        asks and waits until a reviewer decides or ``timeout_seconds``
        (server default 300, at most 900) pass. Check ``answer.approved``,
        ``answer.comment`` and ``answer.timed_out``."""
        body = _clean({"question": question, "sandbox_id": sandbox_id, "change_id": change_id,
                       "timeout_seconds": timeout_seconds})
        wait = 300 if timeout_seconds is None else timeout_seconds
        d = self._call("POST", "/api/v1/human/ask", body, timeout=wait + self.timeout)
        return HumanAnswer.from_dict(d, self)

    def list_approvals(self, *, state: Optional[str] = None, kind: Optional[str] = None,
                       sandbox_id: Optional[str] = None, limit: Optional[int] = None,
                       offset: Optional[int] = None) -> Page:
        """Approvals, newest first (a :class:`Page`; ``.total`` counts every match)."""
        d = self._call("GET", "/v1/approvals", query={
            "state": state, "kind": kind, "sandbox_id": sandbox_id, "limit": limit,
            "offset": offset})
        return Page([self._approval(a) for a in d.get("approvals", [])], d.get("total", 0))

    def get_approval(self, approval_id: str, wait: Optional[int] = None) -> Approval:
        """``GET /v1/approvals/{id}``; with ``wait`` (1-300 s) it long-polls
        while the approval is pending and answers as soon as it is decided."""
        d = self._call("GET", f"/v1/approvals/{_q(approval_id)}", query={"wait": wait or None},
                       timeout=(wait or 0) + self.timeout)
        return self._approval(d["approval"])

    def wait_approval(self, approval_id: str, timeout: float = 3600.0,
                      poll: int = 60) -> Approval:
        """Waits until the approval is decided (long-polls of up to ``poll``
        seconds each); raises :class:`Timeout` when it is still pending
        after ``timeout`` seconds. A 429 (too many long-polls on the server)
        is waited out and retried."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise errors.Timeout(f"approval {approval_id} still pending after {timeout} s",
                                     0, None, "GET", f"/v1/approvals/{approval_id}")
            want = max(1, min(poll, 300, int(left + 0.999)))
            t0 = time.monotonic()
            try:
                a = self.get_approval(approval_id, wait=want)
            except errors.TooManyRequests:
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
                continue
            if a.state != "pending":
                return a
            if time.monotonic() - t0 < want / 2:
                # answered early though still pending (a server shutting down
                # ends its long-polls): no busy loop
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    def approve(self, approval_id: str, comment: Optional[str] = None) -> Approval:
        """Approves a pending approval (reviewer or admin token: an agent
        token gets :class:`Forbidden`; an approval decided already
        :class:`Conflict`)."""
        d = self._call("POST", f"/v1/approvals/{_q(approval_id)}/approve",
                       _clean({"comment": comment}))
        return self._approval(d["approval"])

    def reject(self, approval_id: str, comment: Optional[str] = None) -> Approval:
        """Rejects a pending approval (same rules as :meth:`approve`)."""
        d = self._call("POST", f"/v1/approvals/{_q(approval_id)}/reject",
                       _clean({"comment": comment}))
        return self._approval(d["approval"])

    def apply_approval(self, approval_id: str, *, hosts: Optional[List[str]] = None,
                       check: bool = False, timeout: float = 3600.0) -> ApplyOutcome:
        """Runs the approved playbook on the production hosts (all configured
        ones, or ``hosts``) and waits for the end: an :class:`ApplyOutcome`
        (``ok``, ``approval`` now applied | failed, ``result`` with the recap
        and output tail). ``check=True`` is ansible-playbook ``--check
        --diff`` on a pending or approved approval, without a state change.
        Reviewer only (:class:`Forbidden` for agents); :class:`Conflict`
        unless approved, when the playbook changed since the approval, or
        when no production host is configured."""
        body = _clean({"hosts": list(hosts) if hosts else None, "check": True if check else None})
        d = self._call("POST", f"/v1/approvals/{_q(approval_id)}/apply", body, timeout=timeout)
        return ApplyOutcome.from_answer(d, self, check)

    def apply_stream(self, approval_id: str, *, hosts: Optional[List[str]] = None,
                     check: bool = False, timeout: float = 3600.0) -> ApplyStream:
        """Like :meth:`apply_approval` with the output streamed (NDJSON): iterate
        the :class:`ApplyStream` for lines as ansible-playbook prints them;
        ``.result`` is then the :class:`ApplyOutcome`."""
        body = _clean({"hosts": list(hosts) if hosts else None, "check": True if check else None})
        path = f"/v1/approvals/{_q(approval_id)}/apply"
        conn, resp = self._open("POST", path, body=json.dumps(body).encode(),
                                headers={"Content-Type": "application/json",
                                         "Accept": "application/x-ndjson"},
                                timeout=timeout, retry=False)
        return ApplyStream(conn, resp, "POST", path, self, check)

    def hosts(self) -> List[Dict[str, Any]]:
        """The configured production hosts (``GET /v1/hosts``, admin; no key material)."""
        return self._call("GET", "/v1/hosts").get("hosts", [])

    # ------------------------------------------------------------------ whoami, policies
    def whoami(self) -> Whoami:
        """The caller's own token: ``token_id``, ``role``, ``name``."""
        return Whoami.from_dict(self._call("GET", "/v1/whoami"))

    def list_policies(self) -> List[Policy]:
        """The configured safety policies (``Policy.default`` marks the default one)."""
        d = self._call("GET", "/v1/policies")
        return [Policy.from_dict(p, p.get("name") == d.get("default")) for p in d.get("policies", [])]

    def get_policy(self, name: str) -> Policy:
        d = self._call("GET", f"/v1/policies/{_q(name)}")
        return Policy.from_dict(d["policy"], bool(d.get("default")))

    def sandbox_policy(self, sandbox_id: str) -> PolicyAssignment:
        """A sandbox's effective policy (its own, else its creator's, else the default)."""
        return PolicyAssignment.from_dict(self._call("GET", f"/v1/sandboxes/{_q(sandbox_id)}/policy"))

    def set_sandbox_policy(self, sandbox_id: str, policy: Optional[str]) -> PolicyAssignment:
        """Assigns a policy to a sandbox (admin); ``None`` clears the assignment."""
        return PolicyAssignment.from_dict(self._call(
            "PUT", f"/v1/sandboxes/{_q(sandbox_id)}/policy", {"policy": policy}))

    def token_policy(self, token_id: str) -> PolicyAssignment:
        """A token's policy (its own token, or any as admin)."""
        return PolicyAssignment.from_dict(self._call("GET", f"/v1/tokens/{_q(token_id)}/policy"))

    def set_token_policy(self, token_id: str, policy: Optional[str]) -> PolicyAssignment:
        """Assigns a policy to a token (admin); ``None`` clears the assignment."""
        return PolicyAssignment.from_dict(self._call(
            "PUT", f"/v1/tokens/{_q(token_id)}/policy", {"policy": policy}))

    # ------------------------------------------------------------------ tmux
    def tmux_sessions(self, sandbox_id: str) -> List[TmuxSession]:
        """The sandbox's tmux sessions and their panes (the default session
        "fluid" is made on first use)."""
        d = self._call("GET", f"/v1/sandboxes/{_q(sandbox_id)}/tmux/sessions")
        return [TmuxSession.from_dict(s) for s in d.get("sessions", [])]

    def create_tmux_session(self, sandbox_id: str, name: Optional[str] = None,
                            command: Union[str, List[str], None] = None) -> TmuxSession:
        """A new tmux session running ``command`` (a shell string or an argv list;
        default the shell)."""
        body = _clean({"name": name, "command": list(command) if isinstance(command, (list, tuple))
                       else command})
        d = self._call("POST", f"/v1/sandboxes/{_q(sandbox_id)}/tmux/sessions", body)
        return TmuxSession.from_dict(d["session"])

    def tmux_send_keys(self, sandbox_id: str, keys: str, *, pane_id: Optional[str] = None,
                       enter: bool = False, literal: bool = True) -> str:
        """Types ``keys`` into a pane (default: the active pane of session
        "fluid"); ``enter`` presses Enter after them; ``literal=False`` sends
        tmux key names ("C-c", "Up Enter"). Returns the pane id ("%0")."""
        body = _clean({"sandbox_id": sandbox_id, "pane_id": pane_id, "keys": keys,
                       "enter": True if enter else None, "literal": None if literal else False})
        return self._call("POST", "/api/v1/tmux/panes/send-keys", body).get("pane_id", "")

    def tmux_read(self, sandbox_id: str, *, pane_id: Optional[str] = None,
                  lines: Optional[int] = None) -> PaneContent:
        """What a pane shows (plus ``lines`` of scrollback, at most 10000)."""
        body = _clean({"sandbox_id": sandbox_id, "pane_id": pane_id, "lines": lines})
        return PaneContent.from_dict(self._call("POST", "/api/v1/tmux/panes/read", body))

    # ------------------------------------------------------------------ audit, tokens
    def audit(self, *, sandbox_id: Optional[str] = None, action: Optional[str] = None,
              since: Optional[str] = None, after_id: Optional[int] = None,
              limit: Optional[int] = None) -> List[AuditEvent]:
        """Audit rows, oldest first (reviewer or admin token)."""
        d = self._call("GET", "/v1/audit", query={"sandbox_id": sandbox_id, "action": action,
                                                   "since": since, "after_id": after_id,
                                                   "limit": limit})
        return [AuditEvent.from_dict(e) for e in d.get("events", [])]

    def verify_audit(self) -> Dict[str, Any]:
        """Checks the audit hash chain: ``{"ok", "rows", "head", "problems", ...}``."""
        return self._call("GET", "/v1/audit/verify", timeout=max(self.timeout, 600.0))

    def create_token(self, role: str = "agent", name: Optional[str] = None) -> Token:
        """A new API token (admin only); the secret is in ``Token.token``."""
        return Token.from_dict(self._call("POST", "/v1/tokens", _clean({"role": role, "name": name})))

    def list_tokens(self) -> List[Token]:
        d = self._call("GET", "/v1/tokens")
        return [Token.from_dict(t) for t in d.get("tokens", [])]

    def revoke_token(self, token_id: str) -> None:
        self._call("DELETE", f"/v1/tokens/{_q(token_id)}")


class CommandFailed(FluidError):
    """``exec(..., check=True)`` of a command that exited non-zero."""

    def __init__(self, command: Command):
        self.command = command
        super().__init__(f"command exited {command.exit_code}: {command.stderr.strip()[:200]}")


class _Chunks:
    """Wraps a binary file object so http.client sends it chunked in 64 KiB reads."""

    def __init__(self, f):
        self._f = f

    def __iter__(self):
        while True:
            b = self._f.read(CHUNK)
            if not b:
                return
            yield b


class FileDownload(io.RawIOBase):
    """A streamed guest file (from :meth:`Client.open_file`)."""

    def __init__(self, conn, resp, path: str):
        super().__init__()
        self._conn = conn
        self._resp = resp
        self._path = path
        cl = resp.getheader("Content-Length")
        self.size: Optional[int] = int(cl) if cl is not None else None
        self.received = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        try:
            data = self._resp.read() if n is None or n < 0 else self._resp.read(n)
        except (OSError, http.client.HTTPException) as e:
            raise errors.StreamBroken(f"download broke after {self.received} bytes: {e}",
                                      0, None, "GET", self._path)
        self.received += len(data)
        if (not data or (n is None or n < 0)) and self.size is not None and self.received < self.size:
            raise errors.StreamBroken(f"download ended after {self.received} of {self.size} bytes",
                                      0, None, "GET", self._path)
        return data

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def copy_to(self, f: BinaryIO) -> int:
        start = self.received
        while True:
            data = self.read(CHUNK)
            if not data:
                return self.received - start
            f.write(data)

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._resp.close()
            finally:
                self._conn.close()
                self._conn = None
        super().close()
