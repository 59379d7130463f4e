#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""An example agent on the fluid Python SDK.

It takes a task and a list of shell steps, runs them in a fresh sandbox with
a checkpoint before each step, rolls a failing step back (restore of that
checkpoint) and goes on (or stops with --stop-on-failure). Then it turns the
work into a change (trusted diff + Ansible playbook, rehearsed when asked),
asks a reviewer for approval and prints the playbook and the decision. Parts
the server does not have yet are reported as such; the sandbox's command
history is printed instead.

    FLUID_TOKEN=... examples/agent.py --url http://127.0.0.1:8080 \\
        --task "install a motd" \\
        --step 'echo "hello" > /etc/motd' --step 'false' --step 'cat /etc/motd'

Without --step, and when OPENAI_BASE_URL (an OpenAI-compatible endpoint,
e.g. http://127.0.0.1:11434/v1) and FLUID_AGENT_MODEL are set, the model is
asked for the steps (OPENAI_API_KEY is sent when set). No LLM is needed
otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "sdk", "python"))  # a checkout

import fluid  # noqa: E402


def say(*a) -> None:
    print(*a, flush=True)


def plan_with_llm(task: str) -> list:
    """Asks an OpenAI-compatible chat endpoint for shell steps (a JSON list)."""
    base = os.environ.get("OPENAI_BASE_URL", "").rstrip("/")
    model = os.environ.get("FLUID_AGENT_MODEL", "")
    if not base or not model:
        raise SystemExit("no --step given and no LLM configured (OPENAI_BASE_URL, FLUID_AGENT_MODEL)")
    body = {"model": model, "temperature": 0, "messages": [
        {"role": "system", "content": "You plan shell steps for a Linux machine where you are root. "
                                      "Answer only with a JSON array of shell command strings."},
        {"role": "user", "content": task}]}
    req = urllib.request.Request(base + "/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    if os.environ.get("OPENAI_API_KEY"):
        req.add_header("Authorization", "Bearer " + os.environ["OPENAI_API_KEY"])
    with urllib.request.urlopen(req, timeout=120) as r:
        text = json.load(r)["choices"][0]["message"]["content"].strip()
    if text.startswith("```"):
        text = text.strip("`").split("\n", 1)[1] if "\n" in text else text
    steps = json.loads(text)
    if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
        raise SystemExit(f"the model did not answer a JSON list of strings: {text[:200]}")
    return steps


def run_steps(sb: fluid.Sandbox, steps: list, stop_on_failure: bool, memory: bool) -> list:
    """Runs each step after a checkpoint; a failing step is rolled back."""
    results = []
    for i, step in enumerate(steps, 1):
        cp = f"step-{i}"
        sb.snapshot(cp, memory=memory)
        say(f"[step {i}/{len(steps)}] checkpoint {cp}; $ {step}")
        stream = sb.exec_stream(step, timeout_sec=600)
        for chunk in stream:
            for line in chunk.text.splitlines():
                say(f"    {chunk.stream}: {line}")
        code = stream.result.exit_code
        if code == 0:
            say(f"[step {i}] ok")
            results.append((step, "ok"))
            continue
        sb.restore(cp)
        say(f"[step {i}] failed with exit code {code}: rolled back to {cp}")
        results.append((step, f"rolled back (exit {code})"))
        if stop_on_failure:
            say("stopping after the failed step (--stop-on-failure)")
            break
    return results


def print_history(client: fluid.Client, sb: fluid.Sandbox) -> None:
    say("command history of the sandbox:")
    for c in client.list_commands(sb.id, limit=1000):
        cmd = c.command if isinstance(c.command, str) else " ".join(c.command or [])
        say(f"    {c.started_at}  exit {c.exit_code}  $ {cmd}")


def build_change(client: fluid.Client, sb: fluid.Sandbox, rehearse: bool):
    """diff + playbook (+ rehearsal) through the change pipeline, or through
    the diff and generate/ansible endpoints when there is no pipeline."""
    name = f"agent-{sb.id}"
    if client.has_route("/v1/sandboxes/{id}/changes"):
        ch = client.create_change(sb.id, "base", "live", name=name, rehearse=rehearse)
        say(f"change {ch.id}: diff -> playbook{' -> rehearsal' if rehearse else ''} ...")
        ch = client.wait_change(ch.id, timeout=1800)
        say(f"change {ch.id}: {ch.state}" + (f" ({ch.error})" if ch.error else ""))
        if ch.state == "failed" or not ch.playbook:
            return ch, None
        return ch, ch.playbook
    if client.has_route("/v1/sandboxes/{id}/diff"):
        say("the server has no change pipeline (POST /v1/sandboxes/{id}/changes): diff + playbook only, no rehearsal")
        client.diff(sb.id, "base", "live")
        return None, client.generate_playbook(sb.id, name=name).name
    say("the server has no diff endpoint: no playbook can be built")
    return None, None


def summarize_diff(client: fluid.Client, sb: fluid.Sandbox, diff_id: str) -> None:
    d = client.get_diff(sb.id, diff_id).diff_json
    for key in ("files_added", "files_modified", "files_removed"):
        paths = [f.get("path") for f in d.get(key, [])]
        if paths:
            say(f"    {key}: {', '.join(paths[:20])}{' ...' if len(paths) > 20 else ''}")
    for key in ("packages_added", "packages_removed", "services_changed", "users_added"):
        if d.get(key):
            say(f"    {key}: {', '.join(x.get('name', '?') for x in d[key])}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default=os.environ.get("FLUID_URL", "http://127.0.0.1:8080"))
    ap.add_argument("--token", default=None, help="default: $FLUID_TOKEN")
    ap.add_argument("--task", required=True, help="what the agent is asked to do")
    ap.add_argument("--step", action="append", default=[], help="a shell step (repeat)")
    ap.add_argument("--image", default=None, help="base image (default: the server's)")
    ap.add_argument("--stop-on-failure", action="store_true")
    ap.add_argument("--memory", action="store_true", help="checkpoints with RAM")
    ap.add_argument("--rehearse", action="store_true", help="rehearse the playbook on a fresh clone")
    ap.add_argument("--approval-timeout", type=int, default=600)
    ap.add_argument("--keep", action="store_true", help="keep the sandbox")
    a = ap.parse_args(argv)

    client = fluid.Client(a.url, a.token)
    steps = a.step or plan_with_llm(a.task)
    say(f"task: {a.task}")
    say(f"steps: {len(steps)}")

    sb = client.create_sandbox(a.image, agent_id="example-agent")
    say(f"sandbox {sb.id} ({sb.base_image}) is {sb.state}")
    try:
        sb.snapshot("base")
        results = run_steps(sb, steps, a.stop_on_failure, a.memory)
        say("summary:")
        for step, outcome in results:
            say(f"    {outcome:<24} $ {step}")

        ch, playbook = build_change(client, sb, a.rehearse)
        if ch is not None and ch.diff_id:
            say("what changed (trusted diff):")
            summarize_diff(client, sb, ch.diff_id)
        if playbook:
            say(f"playbook {playbook}:")
            for line in client.export_playbook(playbook).splitlines():
                say("    " + line)

        if not client.has_route("/v1/approvals"):
            say("approval: the server has no approvals endpoint yet (POST /v1/approvals); "
                "no reviewer decision to wait for")
            print_history(client, sb)
            return 1 if a.stop_on_failure and any(o != "ok" for _, o in results) else 0
        approval = client.request_approval(sandbox_id=sb.id, change_id=ch.id if ch else None,
                                           playbook=playbook, summary=a.task)
        say(f"approval {approval.get('id')} requested; waiting for a reviewer ...")
        decision = client.wait_approval(approval["id"], timeout=a.approval_timeout)
        say(f"reviewer's decision: {decision.get('state')}"
            + (f" by {decision.get('decided_by')}" if decision.get("decided_by") else "")
            + (f": {decision.get('comment')}" if decision.get("comment") else ""))
        return 0 if decision.get("state") == "approved" else 3
    finally:
        if a.keep:
            say(f"kept sandbox {sb.id}")
        else:
            sb.destroy()
            say(f"sandbox {sb.id} destroyed")


if __name__ == "__main__":
    sys.exit(main())
