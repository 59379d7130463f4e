# SPDX-License-Identifier: MIT
"""examples/agent.py end to end: checkpoints, a failing step rolled back,
the change (diff + playbook), approval or the command history."""

import os
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
AGENT = os.path.join(ROOT, "examples", "agent.py")


def _reviewer(client, stop):
    """Approves every pending approval through the API (admin token), once
    the server has approvals."""
    while not stop.is_set():
        try:
            for a in client.list_approvals(state="pending"):
                client.approve(a["id"])
        except Exception:
            pass
        time.sleep(0.5)


def test_example_agent(server, client):
    stop = threading.Event()
    if client.has_route("/v1/approvals"):
        threading.Thread(target=_reviewer, args=(client, stop), daemon=True).start()
    env = dict(os.environ, FLUID_TOKEN=server.token)
    env.pop("OPENAI_BASE_URL", None)
    p = subprocess.run(
        [sys.executable, AGENT, "--url", server.url, "--task", "configure a motd and an app config",
         "--step", "mkdir -p /etc/app && echo 'port = 8080' > /etc/app/app.conf",
         "--step", "echo broken > /etc/motd; rm -f /etc/app/app.conf; exit 7",
         "--step", "echo 'welcome' > /etc/motd && cat /etc/app/app.conf"],
        env=env, capture_output=True, text=True, timeout=600)
    stop.set()
    out = p.stdout
    print(out)
    print(p.stderr, file=sys.stderr)
    assert p.returncode == 0, p.stderr
    assert "[step 1] ok" in out
    assert "[step 2] failed with exit code 7: rolled back to step-2" in out
    # step 3 sees the state from before step 2 (the config file was restored)
    assert "stdout: port = 8080" in out and "[step 3] ok" in out
    assert "change chg_" in out and ": unverified" in out
    assert "ansible.builtin.copy" in out and '"/etc/app/app.conf"' in out
    playbook = out.split("playbook agent-", 1)[1].split("approval", 1)[0]
    assert "welcome" in playbook and "broken" not in playbook      # the rolled-back step left nothing
    if client.has_route("/v1/approvals"):
        assert "reviewer's decision: approved" in out
    else:
        assert "no approvals endpoint" in out
        assert "command history of the sandbox:" in out and "exit 7" in out
    assert "destroyed" in out
    assert client.list_sandboxes(agent_id="example-agent").total == 0
