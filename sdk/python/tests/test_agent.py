# SPDX-License-Identifier: MIT
"""examples/agent.py end to end, as a subprocess with an agent token:
checkpoints, a failing step rolled back, the change (diff + playbook), an
approval of kind "change" that a reviewer (a second client, reviewer token
made by the admin) approves through the API from a thread, and the agent's
printed playbook, decision and comment. Then the same with a rejection,
and the optional planning through an OpenAI-compatible endpoint (a fake)."""

import http.server
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
AGENT = os.path.join(ROOT, "examples", "agent.py")

STEPS = ["mkdir -p /etc/app && echo 'port = 8080' > /etc/app/app.conf",
         "echo broken > /etc/motd; rm -f /etc/app/app.conf; exit 7",
         "echo 'welcome' > /etc/motd && cat /etc/app/app.conf"]


def _reviewer(reviewer, requester, decide, comment, stop, box):
    """Decides the first pending change approval the agent asked for."""
    while not stop.is_set():
        for a in reviewer.list_approvals(state="pending", kind="change", limit=1000):
            if a.requested_by == requester:
                box["asked"] = a
                box["decided"] = (reviewer.approve if decide == "approve" else reviewer.reject)(
                    a.id, comment)
                return
        time.sleep(0.2)


def _run_agent(server, token, decide, comment, reviewer, requester, task):
    stop = threading.Event()
    box = {}
    t = threading.Thread(target=_reviewer, args=(reviewer, requester, decide, comment, stop, box),
                         daemon=True)
    t.start()
    env = dict(os.environ, FLUID_TOKEN=token)
    env.pop("OPENAI_BASE_URL", None)
    argv = [sys.executable, AGENT, "--url", server.url, "--task", task, "--image", "tiny",
            "--no-rehearse", "--approval-timeout", "300"]
    for s in STEPS:
        argv += ["--step", s]
    try:
        p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    finally:
        stop.set()
        t.join(30)
    print(p.stdout)
    print(p.stderr, file=sys.stderr)
    return p, box


def test_example_agent_approved(server, client, reviewer, reviewer_token, agent_token):
    task = "configure a motd and an app config"
    p, box = _run_agent(server, agent_token.token, "approve", "looks right; ship it tonight",
                        reviewer, agent_token.id, task)
    out = p.stdout
    assert p.returncode == 0, p.stderr
    assert "[step 1] ok" in out
    assert "[step 2] failed with exit code 7: rolled back to step-2" in out
    # step 3 sees the state from before step 2 (the config file was restored)
    assert "stdout: port = 8080" in out and "[step 3] ok" in out
    assert "change chg_" in out and ": unverified (not rehearsed" in out
    assert "files_added: " in out and "/etc/app/app.conf" in out
    playbook = out.split("\nplaybook agent-", 1)[1].split("\napproval apr_", 1)[0]
    assert "ansible.builtin.copy" in playbook and '"/etc/app/app.conf"' in playbook
    assert "welcome" in playbook and "broken" not in playbook      # the rolled-back step left nothing

    asked, decided = box["asked"], box["decided"]
    assert asked.kind == "change" and asked.summary == task and asked.change_id
    assert asked.playbook and asked.playbook in out and len(asked.playbook_sha256) == 64
    assert asked.details["agent"] == "example-agent" and len(asked.details["steps"]) == 3
    assert asked.details["steps"][1]["outcome"] == "rolled back (exit 7)"
    assert f"approval {asked.id} requested (kind change, playbook {asked.playbook}" in out
    assert f"reviewer's decision: approved by {reviewer_token.id}" in out
    assert "reviewer's comment: looks right; ship it tonight" in out
    assert f"fluid approvals apply {asked.id}" in out
    assert decided.state == "approved" and client.get_approval(asked.id).state == "approved"
    assert out.rstrip().endswith("destroyed")
    assert client.list_sandboxes(agent_id="example-agent").total == 0


def test_example_agent_rejected(server, client, reviewer, agent_token):
    p, box = _run_agent(server, agent_token.token, "reject", "no motd changes this week",
                        reviewer, agent_token.id, "configure a motd (again)")
    assert p.returncode == 3, p.stderr
    assert "reviewer's decision: rejected" in p.stdout
    assert "reviewer's comment: no motd changes this week" in p.stdout
    assert box["decided"].state == "rejected"
    assert client.list_sandboxes(agent_id="example-agent").total == 0


class _FakeLLM(http.server.BaseHTTPRequestHandler):
    """An OpenAI-compatible /chat/completions answering a fenced JSON list."""
    seen = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _FakeLLM.seen.append((self.path, self.headers.get("Authorization"), body))
        answer = '```json\n["apt-get install -y nginx", "systemctl enable nginx"]\n```'
        out = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out.encode())

    def log_message(self, *a):
        pass


def test_example_agent_plans_with_an_llm(monkeypatch):
    spec = importlib.util.spec_from_file_location("example_agent", AGENT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeLLM)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        for k in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
            monkeypatch.delenv(k, raising=False)
        monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{srv.server_port}/v1/")
        monkeypatch.setenv("FLUID_AGENT_MODEL", "tiny-model")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        steps = mod.plan_with_llm("install nginx")
        assert steps == ["apt-get install -y nginx", "systemctl enable nginx"]
        path, auth, body = _FakeLLM.seen[-1]
        assert path == "/v1/chat/completions" and auth == "Bearer sk-test"
        assert body["model"] == "tiny-model" and body["messages"][-1]["content"] == "install nginx"
        monkeypatch.delenv("FLUID_AGENT_MODEL")
        with pytest.raises(SystemExit):
            mod.plan_with_llm("install nginx")
    finally:
        srv.shutdown()
        srv.server_close()
