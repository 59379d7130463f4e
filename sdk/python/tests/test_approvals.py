# SPDX-License-Identifier: MIT
"""Approvals through the SDK against the real server: ask (question,
change), list, get, long-poll wait, approve/reject with a comment by a
reviewer (a second client whose token the admin made), the refusals an
agent token gets (Forbidden, audited), deciding twice (Conflict), the
README's blocking /api/v1/human/ask, the apply refusals (nothing is
applied without an approval, a playbook changed after the approval is
refused) and a real production apply (streamed and not) to the stand-in
production host of conftest.py."""

import http.server
import json
import os
import re
import threading
import time

import pytest

import fluid


def _later(seconds, fn, *args, **kw):
    """Runs fn(*args) in a thread after `seconds`; .result/.error afterwards."""
    box = {}

    def run():
        time.sleep(seconds)
        try:
            box["result"] = fn(*args, **kw)
        except Exception as e:  # reported by the test through box
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.box = box
    return t


def test_whoami(client, agent, reviewer, agent_token, reviewer_token):
    me = agent.whoami()
    assert isinstance(me, fluid.Whoami)
    assert (me.token_id, me.role, me.name) == (agent_token.id, "agent", "sdk-agent-approvals")
    r = reviewer.whoami()
    assert (r.token_id, r.role) == (reviewer_token.id, "reviewer")
    assert client.whoami().role == "admin"


def test_question_approved_by_reviewer(client, agent, reviewer, agent_token, reviewer_token):
    a = agent.request_approval("may I restart the web server?", details={"why": "config reload"})
    assert isinstance(a, fluid.Approval)
    assert re.fullmatch(r"apr_[0-9a-f]{32}", a.id)
    assert (a.kind, a.state, a.summary) == ("question", "pending", "may I restart the web server?")
    assert a.details == {"why": "config reload"} and a.playbook is None and a.apply is None
    assert (a.requested_by, a.requested_role) == (agent_token.id, "agent")
    assert a.pending and not a.decided and not a.approved and a.created_at

    got = agent.get_approval(a.id)
    assert got.id == a.id and got.state == "pending"
    page = agent.list_approvals(state="pending", kind="question")
    assert isinstance(page, fluid.Page) and page.total >= 1
    assert a.id in {x.id for x in page} and all(x.state == "pending" for x in page)
    assert all(isinstance(x, fluid.Approval) for x in page)
    assert len(agent.list_approvals(limit=1)) == 1

    # an agent token can never decide: 403, and the attempt is audited
    with pytest.raises(fluid.Forbidden) as ei:
        agent.approve(a.id, "I approve myself")
    assert ei.value.status == 403 and "reviewer" in ei.value.message
    with pytest.raises(fluid.Forbidden):
        agent.reject(a.id)
    with pytest.raises(fluid.Forbidden):
        agent.apply_approval(a.id)
    with pytest.raises(fluid.Forbidden):
        a.approve("bound to the agent's client")
    denied = client.audit(action="approval.approve.denied", limit=1000)
    assert any(e.details.get("approval_id") == a.id and e.actor == agent_token.id for e in denied)
    assert agent.get_approval(a.id).state == "pending"

    done = reviewer.approve(a.id, "go ahead, after 18:00")
    assert done.state == "approved" and done.approved and done.decided
    assert done.decided_by == reviewer_token.id and done.comment == "go ahead, after 18:00"
    assert done.decided_at
    assert a.refresh().state == "approved" and a.comment == "go ahead, after 18:00"
    ev = client.audit(action="approval.approve", limit=1000)
    assert any(e.details.get("approval_id") == a.id and e.actor == reviewer_token.id for e in ev)

    # deciding twice is a conflict, either way
    with pytest.raises(fluid.Conflict):
        reviewer.approve(a.id)
    with pytest.raises(fluid.Conflict):
        reviewer.reject(a.id, "too late")
    # a question has no playbook: nothing to apply
    with pytest.raises(fluid.Conflict) as ei:
        reviewer.apply_approval(a.id)
    assert "no playbook" in ei.value.message
    assert a.id in {x.id for x in reviewer.list_approvals(state="approved", limit=1000)}


def test_reject_and_errors(agent, reviewer, sandbox):
    a = agent.request_approval("delete the old logs?", sandbox_id=sandbox.id, kind="question")
    assert a.sandbox_id == sandbox.id
    assert a.id in {x.id for x in agent.list_approvals(sandbox_id=sandbox.id)}
    r = reviewer.reject(a.id, "keep them for the audit")
    assert r.state == "rejected" and r.rejected and not r.approved and r.decided
    assert r.comment == "keep them for the audit"
    with pytest.raises(fluid.Conflict):
        reviewer.approve(a.id)
    with pytest.raises(fluid.BadRequest):
        agent.request_approval("")
    with pytest.raises(fluid.BadRequest):
        agent.request_approval("x", kind="please")
    with pytest.raises(fluid.BadRequest):
        agent.request_approval("x", kind="change")               # neither change_id nor playbook
    with pytest.raises(fluid.BadRequest):
        agent.request_approval("x", change_id="chg_nope")
    with pytest.raises(fluid.NotFound):
        agent.get_approval("apr_" + "0" * 32)
    with pytest.raises(fluid.BadRequest):
        agent.list_approvals(state="maybe")
    with pytest.raises(fluid.BadRequest):
        agent.get_approval(a.id, wait=301)


def test_long_poll_wait_returns_on_decision(agent, reviewer, reviewer_token):
    a = agent.request_approval("long-poll me")
    # a pending approval: the long-poll answers after the wait, still pending
    t0 = time.monotonic()
    assert agent.get_approval(a.id, wait=1).state == "pending"
    assert 0.9 <= time.monotonic() - t0 < 30
    with pytest.raises(fluid.Timeout):
        agent.wait_approval(a.id, timeout=1.5)

    # the reviewer approves from another thread 2 s from now; the wait
    # returns as soon as that happens, not at its 120 s poll
    th = _later(2.0, reviewer.approve, a.id, "approved from another thread")
    t0 = time.monotonic()
    got = agent.wait_approval(a.id, timeout=240, poll=120)
    took = time.monotonic() - t0
    th.join(30)
    assert "error" not in th.box, th.box.get("error")
    assert got.state == "approved" and got.comment == "approved from another thread"
    assert got.decided_by == reviewer_token.id
    assert 1.5 <= took < 60, took


def test_request_with_wait_seconds(agent, reviewer):
    box = {}

    def review():
        # finds the approval while the agent's request is still blocked
        for _ in range(200):
            for x in reviewer.list_approvals(state="pending", kind="question", limit=1000):
                if x.summary == "ask and wait in one call":
                    box["approval"] = reviewer.reject(x.id, "not today")
                    return
            time.sleep(0.1)

    t = threading.Thread(target=review, daemon=True)
    t.start()
    t0 = time.monotonic()
    a = agent.request_approval("ask and wait in one call", wait_seconds=120)
    assert time.monotonic() - t0 < 60
    t.join(30)
    assert a.state == "rejected" and a.comment == "not today" and box["approval"].id == a.id
    # without a decision the call answers after wait_seconds, still pending
    t0 = time.monotonic()
    p = agent.request_approval("nobody answers", wait_seconds=1)
    assert p.pending and time.monotonic() - t0 >= 0.9
    reviewer.reject(p.id)


def test_ask_human(agent, reviewer, sandbox):
    def answer(comment, approve=True):
        for _ in range(300):
            for x in reviewer.list_approvals(state="pending", kind="question", limit=1000):
                if x.summary == f"human question ({comment})":
                    return (reviewer.approve if approve else reviewer.reject)(x.id, comment)
            time.sleep(0.1)

    th = _later(0.5, answer, "yes")
    h = agent.ask_human("human question (yes)", sandbox_id=sandbox.id, timeout_seconds=120)
    th.join(30)
    assert isinstance(h, fluid.HumanAnswer)
    assert (h.state, h.approved, h.comment, h.timed_out) == ("approved", True, "yes", False)
    assert isinstance(h.approval, fluid.Approval) and h.approval.kind == "question"
    assert h.approval.sandbox_id == sandbox.id and th.box["result"].id == h.approval.id

    th = _later(0.5, answer, "no", approve=False)
    h = agent.ask_human("human question (no)", timeout_seconds=120)
    th.join(30)
    assert (h.state, h.approved, h.comment, h.timed_out) == ("rejected", False, "no", False)

    # nobody answers: timed out, the approval still pending (keep waiting on it)
    h = agent.ask_human("human question (silence)", timeout_seconds=1)
    assert (h.state, h.approved, h.timed_out) == ("pending", False, True)
    assert agent.get_approval(h.approval.id).pending
    th = _later(1.0, reviewer.approve, h.approval.id, "late but yes")
    late = h.approval.wait(timeout=120)
    th.join(30)
    assert late.approved and late.comment == "late but yes"


def test_change_approval_pins_the_playbook(client, agent, reviewer):
    with agent.create_sandbox("tiny", agent_id="sdk-approvals") as sb:
        sb.snapshot("base")
        sb.exec("mkdir -p /etc/app && echo 'port = 8080' > /etc/app/app.conf", check=True)
        ch = agent.wait_change(agent.create_change(sb.id, "base", "live", name=f"apr-{sb.id}",
                                                   rehearse=False).id, timeout=300, poll=0.5)
        assert ch.playbook == f"apr-{sb.id}" and ch.state == "unverified"

        a = agent.request_approval("write the app config", change_id=ch.id, sandbox_id=sb.id)
        assert (a.kind, a.state, a.change_id, a.playbook) == ("change", "pending", ch.id, ch.playbook)
        assert re.fullmatch(r"[0-9a-f]{64}", a.playbook_sha256) and a.sandbox_id == sb.id
        # the change's sandbox is taken when none is given; kind explicit works too
        b = agent.request_approval("same, explicit kind", kind="change", change_id=ch.id)
        assert b.sandbox_id == sb.id and b.playbook_sha256 == a.playbook_sha256
        reviewer.reject(b.id, "duplicate")

        # nothing is applied before a reviewer approved it
        with pytest.raises(fluid.Conflict) as ei:
            reviewer.apply_approval(a.id)
        assert "pending" in ei.value.message
        with pytest.raises(fluid.Forbidden):
            agent.apply_stream(a.id)

        # a playbook edited after the approval is refused (and audited). (This
        # server has a production host, conftest.py: this playbook, made
        # from a sandbox, must never reach it, so it is edited before the
        # approval is ever applied.)
        client.add_task(ch.playbook, {"name": "sneaky", "module": "copy",
                                      "params": {"dest": "/etc/motd", "content": "pwned\n"}})
        ok = reviewer.approve(a.id, "config only, fine")
        assert ok.state == "approved" and ok.playbook_sha256 == a.playbook_sha256
        with pytest.raises(fluid.Conflict) as ei:
            reviewer.apply_approval(a.id)
        assert "changed after approval" in ei.value.message
        with pytest.raises(fluid.Conflict):
            reviewer.apply_stream(a.id, check=True)
        assert reviewer.get_approval(a.id).state == "approved"
        refused = client.audit(action="approval.apply.refused", limit=1000)
        assert any(e.details.get("approval_id") == a.id for e in refused)
        client.delete_playbook(ch.playbook)


def test_apply_to_production(server, client, agent, reviewer, reviewer_token):
    """A real apply: ansible-playbook over SSH to the stand-in production
    host of conftest.py (an sshd on 127.0.0.1 with a pinned host key), of a
    playbook that writes one file below the test's temporary dir."""
    target = os.path.join(server.prod_out, "applied.txt")
    client.create_playbook("sdk-apply", hosts="all", become=False, tasks=[
        {"name": "marker", "module": "copy",
         "params": {"dest": target, "content": "applied by fluid\n", "mode": "0644"}}])
    a = agent.request_approval("write the marker file", playbook="sdk-apply")
    assert a.kind == "change" and a.playbook == "sdk-apply"

    # a check run (--check --diff) of a pending approval changes nothing
    with reviewer.apply_stream(a.id, check=True) as st:
        lines = [c.text for c in st]
    res = st.result
    assert isinstance(res, fluid.ApplyOutcome) and res.check and res.ok, res.output
    assert res.state == "pending" and res.approval.pending
    assert res.result.check and res.result.hosts == ["prod-local"]
    assert any("PLAY RECAP" in line for line in lines) and "PLAY RECAP" in res.output
    assert not os.path.exists(target)

    reviewer.approve(a.id, "marker ok")
    with pytest.raises(fluid.BadRequest):
        reviewer.apply_approval(a.id, hosts=["no-such-host"])
    assert reviewer.get_approval(a.id).state == "approved"

    # the apply, its output streamed as ansible-playbook prints it
    with reviewer.apply_stream(a.id, hosts=["prod-local"]) as st:
        assert st.approval_id == a.id
        lines = [c.text for c in st]
    out = st.result
    assert out.ok and out.state == "applied" and out.exit_code == 0 and not out.error, out.output
    assert any(line.startswith("PLAY RECAP") for line in lines)
    done = out.approval
    assert done.state == "applied" and isinstance(done.apply, fluid.ApplyResult)
    assert done.apply.ok and done.apply.hosts == ["prod-local"]
    assert done.apply.recap["prod-local"]["changed"] == 1
    assert done.apply.recap["prod-local"]["failed"] == 0
    assert done.apply.applied_by == reviewer_token.id
    assert done.apply.playbook_sha256 == a.playbook_sha256
    with open(target) as f:
        assert f.read() == "applied by fluid\n"
    # applied at most once
    with pytest.raises(fluid.Conflict) as ei:
        reviewer.apply_approval(a.id)
    assert "applied already" in ei.value.message

    # a new approval, applied without streaming: nothing left to change
    b = agent.request_approval("the marker again", playbook="sdk-apply")
    reviewer.approve(b.id)
    out = reviewer.apply_approval(b.id)
    assert out.ok and out.state == "applied" and not out.check
    assert out.result.recap["prod-local"]["changed"] == 0
    assert "PLAY RECAP" in out.result.output_tail
    ev = client.audit(action="approval.apply.done", limit=1000)
    assert {a.id, b.id} <= {e.details.get("approval_id") for e in ev}
    client.delete_playbook("sdk-apply")


def test_error_429_maps_to_too_many_requests():
    e = fluid.error_for(429, {"error": "too many long-polls at once (48); retry", "code": 429})
    assert type(e) is fluid.TooManyRequests and e.status == 429


class _FakeApply(http.server.BaseHTTPRequestHandler):
    """Streams an apply like the server does; `full` False ends it early."""
    full = True

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        assert self.headers["Accept"] == "application/x-ndjson"
        lines = [{"stream": "stdout", "data": "PLAY [all]\n"},
                 {"stream": "stdout", "data": "PLAY RECAP\n"}]
        if _FakeApply.full:
            lines.append({"exit_code": 2, "ok": False, "error": "ansible-playbook exited 2",
                          "state": "failed",
                          "approval": {"id": "apr_" + "1" * 32, "state": "failed",
                                       "apply": {"ok": False, "exit_code": 2,
                                                 "recap": {"web": {"failed": 1}}}}})
        body = b"".join(json.dumps(x).encode() + b"\n" for x in lines)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("X-Approval-Id", "apr_" + "1" * 32)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def test_apply_stream_parsing():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeApply)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        c = fluid.Client(f"http://127.0.0.1:{srv.server_port}", "t")
        st = c.apply_stream("apr_" + "1" * 32)
        assert [x.text for x in st] == ["PLAY [all]\n", "PLAY RECAP\n"]
        r = st.result
        assert (r.ok, r.exit_code, r.state, r.error) == (False, 2, "failed", "ansible-playbook exited 2")
        assert r.approval.state == "failed" and r.result.recap == {"web": {"failed": 1}}
        assert r.output == "PLAY [all]\nPLAY RECAP\n" and st.approval_id == "apr_" + "1" * 32
        _FakeApply.full = False
        with pytest.raises(fluid.StreamBroken):
            c.apply_stream("apr_" + "1" * 32).wait()
    finally:
        _FakeApply.full = True
        srv.shutdown()
        srv.server_close()
