# SPDX-License-Identifier: MIT
"""Compatibility with the virsh-sandbox / fluid.sh Python client.

Programs written for that client's ``VirshSandbox`` run against fluid
unchanged (apart from the URL and the token, which comes from the
``FLUID_TOKEN`` environment variable):

    from virsh_sandbox import VirshSandbox
    client = VirshSandbox("http://127.0.0.1:8080")
    sandbox = client.sandbox.create_sandbox(source_vm_name="debian-12",
                                            agent_id="me").sandbox
    client.sandbox.destroy_sandbox(sandbox.id)

Answers are plain attribute objects mirroring the fluid.sh JSON shapes
(``resp.sandbox.id``, ``resp.ip_address``...); ``to_dict()`` gives the
JSON back. Errors raise ``ApiException`` (a ``fluid.FluidError``).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import fluid
from fluid.errors import FluidError

__all__ = ["VirshSandbox", "ApiException", "Model"]

ApiException = FluidError


class Model:
    """A JSON object with attribute access (nested objects converted too);
    absent fields read as None."""

    def __init__(self, data: Dict[str, Any]):
        self._data = data
        for k, v in data.items():
            setattr(self, k, _wrap(v))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return None

    def to_dict(self) -> Dict[str, Any]:
        return self._data

    def __getitem__(self, k):
        return self._data[k]

    def __repr__(self) -> str:
        return f"Model({self._data!r})"


def _wrap(v: Any) -> Any:
    if isinstance(v, dict):
        return Model(v)
    if isinstance(v, list):
        return [_wrap(x) for x in v]
    return v


def _q(s: str) -> str:
    return fluid.client._q(s)


class SandboxApi:
    """fluid.sh's sandbox operations."""

    def __init__(self, c: fluid.Client):
        self._c = c

    def create_sandbox(self, source_vm_name: Optional[str] = None, agent_id: Optional[str] = None,
                       vm_name: Optional[str] = None, cpu: Optional[int] = None,
                       memory_mb: Optional[int] = None, ttl_seconds: Optional[int] = None,
                       auto_start: Optional[bool] = None, wait_for_ip: Optional[bool] = None,
                       **extra) -> Model:
        body = {"source_vm_name": source_vm_name, "agent_id": agent_id, "vm_name": vm_name,
                "cpu": cpu, "memory_mb": memory_mb, "ttl_seconds": ttl_seconds,
                "auto_start": auto_start, "wait_for_ip": wait_for_ip}
        body.update(extra)
        body = {k: v for k, v in body.items() if v is not None}
        return Model(self._c.request("POST", "/v1/sandboxes", body, timeout=600.0))

    def get_sandbox(self, id: str, include_commands: Optional[bool] = None) -> Model:
        return Model(self._c.request("GET", f"/v1/sandboxes/{_q(id)}",
                                     query={"include_commands": include_commands}))

    def list_sandboxes(self, **filters) -> Model:
        return Model(self._c.request("GET", "/v1/sandboxes", query=filters))

    def start_sandbox(self, id: str, wait_for_ip: Optional[bool] = None) -> Model:
        body = {} if wait_for_ip is None else {"wait_for_ip": wait_for_ip}
        return Model(self._c.request("POST", f"/v1/sandboxes/{_q(id)}/start", body, timeout=600.0))

    def stop_sandbox(self, id: str, force: Optional[bool] = None) -> Model:
        body = {} if force is None else {"force": force}
        return Model(self._c.request("POST", f"/v1/sandboxes/{_q(id)}/stop", body, timeout=600.0))

    def destroy_sandbox(self, id: str) -> Model:
        return Model(self._c.request("DELETE", f"/v1/sandboxes/{_q(id)}", timeout=600.0))

    def run_sandbox_command(self, id: str, command: str, user: Optional[str] = None,
                            timeout_sec: Optional[int] = None,
                            env: Optional[Dict[str, str]] = None) -> Model:
        body = {k: v for k, v in {"command": command, "user": user, "timeout_sec": timeout_sec,
                                  "env": env}.items() if v is not None}
        return Model(self._c.request("POST", f"/v1/sandboxes/{_q(id)}/run", body,
                                     timeout=(timeout_sec or 600) + 60.0))

    def create_snapshot(self, id: str, name: str, external: Optional[bool] = None) -> Model:
        body = {"name": name}
        if external is not None:
            body["external"] = external
        return Model(self._c.request("POST", f"/v1/sandboxes/{_q(id)}/snapshot", body,
                                     timeout=600.0))

    def list_snapshots(self, id: str) -> Model:
        return Model(self._c.request("GET", f"/v1/sandboxes/{_q(id)}/snapshots"))

    def restore_snapshot(self, id: str, name: str) -> Model:
        return Model(self._c.request("POST", f"/v1/sandboxes/{_q(id)}/snapshots/{_q(name)}/restore",
                                     timeout=600.0))

    def diff_snapshots(self, id: str, from_snapshot: str, to_snapshot: str) -> Model:
        return Model(self._c.request("POST", f"/v1/sandboxes/{_q(id)}/diff",
                                     {"from_snapshot": from_snapshot, "to_snapshot": to_snapshot},
                                     timeout=960.0))

    def get_sandbox_ip(self, id: str) -> Model:
        return Model(self._c.request("GET", f"/v1/sandboxes/{_q(id)}/ip"))


class CommandApi:
    def __init__(self, c: fluid.Client):
        self._c = c

    def list_commands(self, sandbox_id: str, limit: Optional[int] = None,
                      offset: Optional[int] = None) -> Model:
        return Model(self._c.request("GET", f"/v1/sandboxes/{_q(sandbox_id)}/commands",
                                     query={"limit": limit, "offset": offset}))


class HealthApi:
    def __init__(self, c: fluid.Client):
        self._c = c

    def get_health(self) -> Model:
        return Model(self._c.request("GET", "/v1/health"))


class VmsApi:
    def __init__(self, c: fluid.Client):
        self._c = c

    def list_virtual_machines(self) -> Model:
        return Model(self._c.request("GET", "/v1/vms"))


class VirshSandbox:
    """``VirshSandbox(host, tmux_host=None, token=None)``: the token defaults
    to ``FLUID_TOKEN`` (``tmux_host`` is accepted and ignored: fluid serves
    everything on one address)."""

    def __init__(self, host: str = "http://localhost:8080", tmux_host: Optional[str] = None,
                 token: Optional[str] = None, **kw):
        self.fluid = fluid.Client(host, token, **kw)
        self.sandbox = SandboxApi(self.fluid)
        self.command = CommandApi(self.fluid)
        self.health = HealthApi(self.fluid)
        self.vms = VmsApi(self.fluid)

    def __enter__(self) -> "VirshSandbox":
        return self

    def __exit__(self, *exc) -> None:
        pass
