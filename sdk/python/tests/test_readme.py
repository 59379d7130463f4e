# SPDX-License-Identifier: MIT
"""The product README's SDK example, executed verbatim from sdk/python/README.md
(only the URL is replaced; the token comes from FLUID_TOKEN)."""

import os
import re

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def readme_block(marker: str = "readme-example") -> str:
    text = open(README, encoding="utf-8").read()
    m = re.search(r"<!-- " + marker + r" -->\n```python\n(.*?)```", text, re.S)
    assert m, f"README block {marker} missing"
    return m.group(1)


readme_example = readme_block


def test_readme_example_verbatim(server, client, monkeypatch):
    code = readme_example()
    assert 'VirshSandbox("http://localhost:8080")' in code
    monkeypatch.setenv("FLUID_TOKEN", server.token)
    seen = {}

    def run_agent(task, sandbox_id):
        seen["task"], seen["id"] = task, sandbox_id
        sb = client.get_sandbox(sandbox_id)
        seen["state"], seen["image"], seen["agent"] = sb.state, sb.base_image, sb.agent_id
        seen["out"] = sb.exec("echo agent at work").stdout

    code = code.replace("http://localhost:8080", server.url)
    exec(compile(code, README, "exec"), {"run_agent": run_agent, "__name__": "readme"})
    assert seen["state"] == "RUNNING" and seen["image"] == "ubuntu-base"
    assert seen["agent"] == "nginx-setup-agent" and seen["out"] == "agent at work\n"
    assert seen["task"].startswith("Install nginx")
    assert client.list_sandboxes(agent_id="nginx-setup-agent").total == 0   # destroyed in finally


def test_readme_quickstart(server, client, monkeypatch, capsys):
    monkeypatch.setenv("FLUID_TOKEN", server.token)
    code = readme_block("quickstart").replace("http://127.0.0.1:8080", server.url)
    exec(compile(code, README, "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert out.startswith("0 Linux\n0\n")
    assert "stdout working\n" in out and "stdout done\n" in out
    assert out.count("b'port = 8080\\n'") == 2
    assert client.list_sandboxes(agent_id="me").total == 0


def test_readme_approvals(server, agent_token, reviewer_token, monkeypatch, capsys):
    monkeypatch.setenv("FLUID_TOKEN", agent_token.token)
    monkeypatch.setenv("FLUID_REVIEWER_TOKEN", reviewer_token.token)
    code = readme_block("approvals").replace("http://127.0.0.1:8080", server.url)
    exec(compile(code, README, "exec"), {"__name__": "readme"})
    assert capsys.readouterr().out == ("question pending\n"
                                       "approved - ok, outside office hours\n"
                                       "agent: 403\n"
                                       "reviewer: 409\n"
                                       "True False pending\n")
