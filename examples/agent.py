#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""An example agent on the fluid Python SDK.

It takes a task and a list of shell steps, runs them in a fresh sandbox with
a checkpoint before each step, rolls a failing step back (restore of that
checkpoint) and goes on (or stops with --stop-on-failure). Then it turns the
work into a change (POST /v1/sandboxes/{id}/changes: trusted diff + Ansible
playbook + rehearsal on a fresh clone, --no-rehearse for images without
sshd and python3 such as tiny), asks a reviewer for
approval of that change (kind "change": the playbook is pinned by its
hash), waits for the decision and prints the playbook, the decision and the
reviewer's comment. A reviewer then applies it to production
(`fluid approvals apply ID`); an agent token never can.

    FLUID_TOKEN=<agent token> examples/agent.py --url http://127.0.0.1:8080 \\
        --task "install a motd" \\
        --step 'echo "hello" > /etc/motd' --step 'false' --step 'cat /etc/motd'

Exit status: 0 approved, 3 rejected, 4 no decision within
--approval-timeout, 1 no playbook could be built (or a step failed with
--stop-on-failure), 2 usage.

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


def build_change(client: fluid.Client, sb: fluid.Sandbox, rehearse: bool) -> fluid.Change:
    """diff + playbook (+ rehearsal) as one change job; waits for its end."""
    ch = client.create_change(sb.id, "base", "live", name=f"agent-{sb.id}", rehearse=rehearse)
    say(f"change {ch.id}: diff -> playbook{' -> rehearsal' if rehearse else ''} ...")
    ch = client.wait_change(ch.id, timeout=1800, poll=0.5)
    note = ""
    if ch.state == "unverified" and not rehearse:
        note = " (not rehearsed: --no-rehearse)"
    elif ch.error:
        note = f" ({ch.error})"
    say(f"change {ch.id}: {ch.state}{note}")
    return ch


def summarize_diff(client: fluid.Client, sb: fluid.Sandbox, diff_id: str) -> None:
    d = client.get_diff(sb.id, diff_id).diff_json
    for key in ("files_added", "files_modified", "files_removed"):
        paths = [f.get("path") for f in d.get(key, [])]
        if paths:
            say(f"    {key}: {', '.join(paths[:20])}{' ...' if len(paths) > 20 else ''}")
    for key in ("packages_added", "packages_removed", "services_changed", "users_added"):
        if d.get(key):
            say(f"    {key}: {', '.join(x.get('name', '?') for x in d[key])}")


def ask_for_approval(client: fluid.Client, sb: fluid.Sandbox, ch: fluid.Change, task: str,
                     results: list, timeout: int) -> fluid.Approval:
    """Asks for approval of the change and waits for the reviewer's decision."""
    details = {"agent": "example-agent", "sandbox_id": sb.id, "change_state": ch.state,
               "steps": [{"command": step, "outcome": outcome} for step, outcome in results]}
    approval = client.request_approval(summary=task, kind="change", change_id=ch.id,
                                       sandbox_id=sb.id, details=details)
    say(f"approval {approval.id} requested (kind {approval.kind}, playbook {approval.playbook}, "
        f"sha256 {(approval.playbook_sha256 or '')[:12]}); waiting for a reviewer ...")
    try:
        return client.wait_approval(approval.id, timeout=timeout)
    except fluid.Timeout:
        return client.get_approval(approval.id)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default=os.environ.get("FLUID_URL", "http://127.0.0.1:8080"))
    ap.add_argument("--token", default=None, help="default: $FLUID_TOKEN")
    ap.add_argument("--task", required=True, help="what the agent is asked to do")
    ap.add_argument("--step", action="append", default=[], help="a shell step (repeat)")
    ap.add_argument("--image", default=None, help="base image (default: the server's)")
    ap.add_argument("--stop-on-failure", action="store_true")
    ap.add_argument("--memory", action="store_true", help="checkpoints with RAM")
    ap.add_argument("--rehearse", dest="rehearse", action="store_true", default=True,
                    help="rehearse the playbook on a fresh clone (the default; needs an image "
                         "with sshd and python3, e.g. debian-12)")
    ap.add_argument("--no-rehearse", dest="rehearse", action="store_false",
                    help="diff + playbook only (images without sshd, e.g. tiny)")
    ap.add_argument("--approval-timeout", type=int, default=3600,
                    help="seconds to wait for the reviewer's decision")
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

        ch = build_change(client, sb, a.rehearse)
        if ch.diff_id:
            say("what changed (trusted diff):")
            summarize_diff(client, sb, ch.diff_id)
        if ch.state == "failed" or not ch.playbook:
            say(f"no playbook to approve (change {ch.state})")
            return 1
        say(f"playbook {ch.playbook}:")
        for line in client.export_playbook(ch.playbook).splitlines():
            say("    " + line)
        if a.stop_on_failure and any(o != "ok" for _, o in results):
            say("not asking for approval: a step failed (--stop-on-failure)")
            return 1

        decision = ask_for_approval(client, sb, ch, a.task, results, a.approval_timeout)
        if decision.pending:
            say(f"reviewer's decision: none within {a.approval_timeout} s "
                f"(approval {decision.id} is still pending)")
            return 4
        say(f"reviewer's decision: {decision.state}"
            + (f" by {decision.decided_by}" if decision.decided_by else "")
            + (f" at {decision.decided_at}" if decision.decided_at else ""))
        say(f"reviewer's comment: {decision.comment if decision.comment else '(none)'}")
        if decision.approved:
            say(f"next: a reviewer applies it to production (fluid approvals apply {decision.id})")
            return 0
        return 3
    finally:
        if a.keep:
            say(f"kept sandbox {sb.id}")
        else:
            sb.destroy()
            say(f"sandbox {sb.id} destroyed")


if __name__ == "__main__":
    sys.exit(main())
