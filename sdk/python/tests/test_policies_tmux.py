# SPDX-License-Identifier: MIT
"""Policies (list, show, sandbox and token assignments; a command sent to a
reviewer by a policy) and tmux (sessions, send-keys, read) through the SDK.
The server's config (conftest.py) has a policy "guarded" that denies
shutdown/reboot and sends `touch /tmp/approve-me*` to a reviewer."""

import threading
import time

import pytest

import fluid


def test_policies(client, agent, agent_token):
    pols = {p.name: p for p in agent.list_policies()}
    assert {"default", "guarded"} <= set(pols)
    assert all(isinstance(p, fluid.Policy) for p in pols.values())
    assert pols["default"].default is True and pols["guarded"].default is False
    g = agent.get_policy("guarded")
    assert g.name == "guarded" and g.description == "sdk tests" and g.default is False
    assert "shutdown" in g.commands["deny"] and g.commands["approval"] == ["touch /tmp/approve-me*"]
    assert isinstance(g.limits, dict) and g.network.get("egress") == "nat"
    with pytest.raises(fluid.NotFound):
        agent.get_policy("no-such-policy")

    tp = agent.token_policy(agent_token.id)                   # its own token
    assert isinstance(tp, fluid.PolicyAssignment)
    assert (tp.token_id, tp.policy, tp.source) == (agent_token.id, "default", "default")
    assert isinstance(tp.effective, fluid.Policy) and tp.effective.name == "default"
    with pytest.raises(fluid.Forbidden):
        agent.set_token_policy(agent_token.id, "guarded")     # admin only
    assert client.set_token_policy(agent_token.id, "guarded").source == "token"
    assert client.token_policy(agent_token.id).policy == "guarded"
    assert client.set_token_policy(agent_token.id, None).policy == "default"


def test_sandbox_policy_and_command_approval(client, agent, reviewer, sandbox):
    sp = sandbox.policy()
    assert (sp.sandbox_id, sp.policy, sp.source) == (sandbox.id, "default", "default")
    with pytest.raises(fluid.Forbidden):
        agent.set_sandbox_policy(sandbox.id, "guarded")
    with pytest.raises(fluid.BadRequest):
        client.set_sandbox_policy(sandbox.id, "no-such-policy")
    sp = client.set_sandbox_policy(sandbox.id, "guarded")
    try:
        assert (sp.policy, sp.source, sp.effective.name) == ("guarded", "sandbox", "guarded")
        assert agent.sandbox_policy(sandbox.id).policy == "guarded"
        with pytest.raises(fluid.Forbidden) as ei:
            agent.exec(sandbox.id, "shutdown -h now")
        assert ei.value.status == 403

        # a command under an approval rule waits for a reviewer: a "command" approval
        box = {}

        def review():
            for _ in range(600):
                for a in reviewer.list_approvals(state="pending", kind="command",
                                                 sandbox_id=sandbox.id):
                    box["approval"] = reviewer.approve(a.id, "fine, touch it")
                    return
                time.sleep(0.1)

        t = threading.Thread(target=review, daemon=True)
        t.start()
        r = agent.exec(sandbox.id, "touch /tmp/approve-me-1 && echo touched")
        t.join(30)
        assert r.exit_code == 0 and r.stdout == "touched\n"
        a = box["approval"]
        assert a.kind == "command" and a.state == "approved" and "approve-me-1" in a.summary
        assert a.sandbox_id == sandbox.id and a.comment == "fine, touch it"

        # rejected: the command never runs, the caller gets Forbidden
        def refuse():
            for _ in range(600):
                for a in reviewer.list_approvals(state="pending", kind="command",
                                                 sandbox_id=sandbox.id):
                    box["rejected"] = reviewer.reject(a.id, "no")
                    return
                time.sleep(0.1)

        t = threading.Thread(target=refuse, daemon=True)
        t.start()
        with pytest.raises(fluid.Forbidden) as ei:
            agent.exec(sandbox.id, "touch /tmp/approve-me-2")
        t.join(30)
        assert "not approved" in ei.value.message and box["rejected"].id in ei.value.message
        assert agent.exec(sandbox.id, ["ls", "/tmp/approve-me-2"]).exit_code != 0
    finally:
        assert client.set_sandbox_policy(sandbox.id, None).source in ("token", "default")


def test_tmux(client, sandbox):
    sessions = client.tmux_sessions(sandbox.id)
    assert all(isinstance(s, fluid.TmuxSession) for s in sessions)
    fl = {s.name: s for s in sessions}["fluid"]                # made on first use
    assert fl.panes and isinstance(fl.panes[0], fluid.TmuxPane)
    assert fl.panes[0].pane_id.startswith("%")

    pane = sandbox.tmux_send_keys("echo tmux-$((6*7))", enter=True)
    assert pane.startswith("%")
    seen = ""
    for _ in range(100):
        got = sandbox.tmux_read()
        assert isinstance(got, fluid.PaneContent) and got.pane_id == pane
        seen = got.content
        if "tmux-42" in seen:
            break
        time.sleep(0.2)
    assert "tmux-42" in seen and not got.truncated

    s = client.create_tmux_session(sandbox.id, name="work", command="sh")
    assert s.name == "work" and s.panes
    p2 = client.tmux_send_keys(sandbox.id, "echo in-work-session", pane_id="work", enter=True)
    assert p2 != pane
    for _ in range(100):
        if "in-work-session" in client.tmux_read(sandbox.id, pane_id="work", lines=50).content:
            break
        time.sleep(0.2)
    assert "in-work-session" in client.tmux_read(sandbox.id, pane_id=p2).content
    assert client.tmux_send_keys(sandbox.id, "C-c", pane_id="work", literal=False) == p2
    assert "work" in {x.name for x in sandbox.tmux_sessions()}
    with pytest.raises(fluid.BadRequest):
        client.create_tmux_session(sandbox.id, name="bad name")
    with pytest.raises(fluid.FluidError):
        client.tmux_read(sandbox.id, pane_id="%999")
