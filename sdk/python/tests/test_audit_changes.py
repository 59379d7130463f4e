# SPDX-License-Identifier: MIT
"""Audit (list, verify), diff, generated playbooks, playbook CRUD, the
change pipeline and has_route."""

import pytest

import fluid


def test_audit_list_and_verify(client, sandbox):
    sandbox.exec("echo audited")
    events = client.audit(sandbox_id=sandbox.id, limit=50)
    assert events and all(isinstance(e, fluid.AuditEvent) for e in events)
    assert all(e.sandbox_id == sandbox.id for e in events)
    actions = {e.action for e in client.audit(sandbox_id=sandbox.id, limit=1000)}
    assert {"sandbox.create", "command.start", "command.end"} <= actions
    only = client.audit(action="sandbox.create", limit=5)
    assert only and {e.action for e in only} == {"sandbox.create"}
    v = client.verify_audit()
    assert v["ok"] is True and v["rows"] > 0 and not v["problems"]


def test_diff_playbook_and_change(client):
    with client.create_sandbox("tiny", agent_id="sdk-diff") as sb:
        sb.snapshot("base")
        sb.exec("mkdir -p /etc/app && echo hello > /etc/app/conf", check=True)
        d = client.diff(sb.id, "base", "live")
        assert isinstance(d, fluid.Diff) and d.id.startswith("dif_")
        added = {f["path"] for f in d.diff_json["files_added"]}
        assert {"/etc/app", "/etc/app/conf"} <= added
        assert any("echo hello" in c["cmd"] for c in d.diff_json["commands_run"])
        assert client.get_diff(sb.id, d.id).diff_json["files_added"] == d.diff_json["files_added"]

        pb = client.generate_playbook(sb.id, name="sdk-gen")
        assert isinstance(pb, fluid.Playbook) and pb.name == "sdk-gen" and pb.diff_id == d.id
        assert any(t["module"] == "ansible.builtin.copy" and t["params"]["dest"] == "/etc/app/conf"
                   for t in pb.tasks)
        yaml = client.export_playbook("sdk-gen")
        assert "/etc/app/conf" in yaml and "hello" in yaml
        assert "sdk-gen" in {p.name for p in client.list_playbooks(limit=1000)}

        ch = client.create_change(sb.id, "base", "live", name="sdk-change", rehearse=False)
        assert isinstance(ch, fluid.Change) and ch.id.startswith("chg_")
        ch = client.wait_change(ch.id, timeout=300, poll=0.5)
        assert ch.state == "unverified" and ch.playbook == "sdk-change" and ch.diff_id
        assert client.get_playbook("sdk-change").task_count >= 2
        client.delete_playbook("sdk-gen")
        client.delete_playbook("sdk-change")
        with pytest.raises(fluid.NotFound):
            client.get_playbook("sdk-gen")


def test_playbook_crud(client):
    pb = client.create_playbook("sdk-manual", hosts="web", become=True)
    try:
        assert pb.name == "sdk-manual" and pb.hosts == "web" and pb.tasks == []
        t1 = client.add_task("sdk-manual", {"name": "nginx", "module": "apt",
                                            "params": {"name": "nginx", "state": "present"}})
        t2 = client.add_task("sdk-manual", {"name": "motd", "module": "copy",
                                            "params": {"dest": "/etc/motd", "content": "hi\n"}})
        assert t1["module"] == "ansible.builtin.apt"
        t2 = client.update_task("sdk-manual", t2["id"], {"name": "motd2", "module": "copy",
                                                         "params": {"dest": "/etc/motd", "content": "hey\n"}})
        assert t2["name"] == "motd2"
        order = client.reorder_tasks("sdk-manual", [t2["id"], t1["id"]])
        assert [t["id"] for t in order] == [t2["id"], t1["id"]]
        full = client.export_playbook_full("sdk-manual")
        assert full["yaml"].index("motd2") < full["yaml"].index("nginx")
        client.delete_task("sdk-manual", t1["id"])
        assert [t["id"] for t in client.get_playbook("sdk-manual").tasks] == [t2["id"]]
        with pytest.raises(fluid.BadRequest):
            client.add_task("sdk-manual", {"name": "x", "module": "template", "params": {}})
    finally:
        client.delete_playbook("sdk-manual")


def test_has_route(client):
    assert client.has_route("/v1/sandboxes/{id}/changes")          # POST-only: probed as a 405
    assert client.has_route("/v1/changes/{id}")
    for path in ("/v1/approvals", "/v1/approvals/{id}", "/v1/approvals/{id}/approve",
                 "/v1/approvals/{id}/apply", "/api/v1/human/ask", "/v1/whoami", "/v1/policies",
                 "/v1/sandboxes/{id}/policy", "/v1/sandboxes/{id}/tmux/sessions",
                 "/api/v1/tmux/panes/send-keys", "/api/v1/tmux/panes/read"):
        assert client.has_route(path), path
    assert not client.has_route("/v1/definitely-not-a-route")
