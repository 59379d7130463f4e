# SPDX-License-Identifier: MIT
"""virsh_sandbox: the fluid.sh-compatible client."""

import pytest

import fluid
from virsh_sandbox import ApiException, VirshSandbox


def test_compat_client(server, monkeypatch):
    monkeypatch.setenv("FLUID_TOKEN", server.token)
    client = VirshSandbox(server.url)
    assert client.health.get_health().status == "ok"
    assert "tiny" in [v.name for v in client.vms.list_virtual_machines().vms]
    resp = client.sandbox.create_sandbox(source_vm_name="tiny", agent_id="compat-agent",
                                         vm_name="compat-one", auto_start=True, wait_for_ip=True)
    sb = resp.sandbox
    try:
        assert resp.ip_address == "10.0.2.15"
        assert (sb.state, sb.ip_address, sb.agent_id, sb.sandbox_name, sb.base_image) == \
            ("RUNNING", "10.0.2.15", "compat-agent", "compat-one", "tiny")
        assert sb.id and sb.created_at and sb.to_dict()["id"] == sb.id
        assert sb.not_a_field is None
        got = client.sandbox.get_sandbox(sb.id)
        assert got.sandbox.id == sb.id
        r = client.sandbox.run_sandbox_command(sb.id, "echo hi; exit 2")
        assert (r.command.stdout, r.command.exit_code) == ("hi\n", 2)
        snap = client.sandbox.create_snapshot(sb.id, name="ready", external=True)
        assert snap.snapshot.name == "ready"
        assert [s.name for s in client.sandbox.list_snapshots(sb.id).snapshots] == ["ready"]
        client.sandbox.restore_snapshot(sb.id, "ready")
        lst = client.sandbox.list_sandboxes(agent_id="compat-agent")
        assert lst.total == 1 and lst.sandboxes[0].id == sb.id
        assert client.command.list_commands(sb.id).total >= 1
        assert client.sandbox.get_sandbox_ip(sb.id).ip_address == "10.0.2.15"
        assert client.sandbox.stop_sandbox(sb.id).sandbox.state == "STOPPED"
        assert client.sandbox.start_sandbox(sb.id, wait_for_ip=True).ip_address == "10.0.2.15"
        with pytest.raises(ApiException) as ei:
            client.sandbox.create_sandbox(source_vm_name="tiny")      # agent_id is required
        assert isinstance(ei.value, fluid.BadRequest)
    finally:
        gone = client.sandbox.destroy_sandbox(sb.id)
    assert gone.state == "DESTROYED" and gone.sandbox_name == "compat-one"
    with pytest.raises(fluid.NotFound):
        client.sandbox.get_sandbox(sb.id)
