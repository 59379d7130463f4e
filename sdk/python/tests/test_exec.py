# SPDX-License-Identifier: MIT
"""Exec: blocking, streamed (chunks before the command ends), binary output,
cancel on close, command records and output, background processes."""

import hashlib
import time

import pytest

import fluid


def test_exec_shell_env_cwd_stdin(client, sandbox):
    c = client.exec(sandbox.id, "echo $GREETING; pwd; echo oops >&2; exit 4",
                    env={"GREETING": "hello"}, cwd="/tmp")
    assert isinstance(c, fluid.Command)
    assert (c.stdout, c.stderr, c.exit_code, c.ok) == ("hello\n/tmp\n", "oops\n", 4, False)
    assert c.env == {"GREETING": "hello"} and c.sandbox_id == sandbox.id
    assert c.stdout_bytes == 11 and c.stdout_sha256 == hashlib.sha256(b"hello\n/tmp\n").hexdigest()
    assert sandbox.exec(["cat"], stdin="from stdin").stdout == "from stdin"
    assert client.exec(sandbox.id, argv=["/bin/echo", "a b"]).stdout == "a b\n"
    assert client.run(sandbox.id, "true").ok


def test_exec_check_and_timeout(client, sandbox):
    with pytest.raises(fluid.CommandFailed) as ei:
        sandbox.exec("echo bad >&2; exit 2", check=True)
    assert ei.value.command.exit_code == 2 and "bad" in str(ei.value)
    c = sandbox.exec("sleep 30", timeout_sec=1)
    assert c.timed_out and c.exit_code >= 128
    with pytest.raises(ValueError):
        client.exec(sandbox.id)


def test_exec_stream_yields_chunks_before_the_end(client, sandbox):
    t0 = time.monotonic()
    seen = []
    with client.exec_stream(sandbox.id, "echo a; sleep 2; echo b; echo e >&2; exit 3") as st:
        assert st.command_id
        for chunk in st:
            seen.append((time.monotonic() - t0, chunk.stream, chunk.data))
    out = [(s, d) for _, s, d in seen]
    assert ("stdout", b"a\n") in out and ("stdout", b"b\n") in out and ("stderr", b"e\n") in out
    ta = next(t for t, s, d in seen if d == b"a\n")
    tb = next(t for t, s, d in seen if d == b"b\n")
    assert tb - ta >= 1.5, seen          # "a" arrived while the command still ran
    r = st.result
    assert isinstance(r, fluid.ExecResult)
    assert r.exit_code == 3 and r.stdout == b"a\nb\n" and r.stderr == b"e\n"
    assert r.command_id == st.command_id
    rec = client.get_command(sandbox.id, r.command_id)
    assert rec.exit_code == 3 and rec.stdout == "a\nb\n"


def test_exec_stream_binary_and_wait(client, sandbox):
    r = sandbox.exec_stream("printf 'ok\\377\\001'; printf '\\303\\251' >&2").wait()
    assert r.exit_code == 0 and r.stdout == b"ok\xff\x01" and r.stderr == "é".encode()


def test_exec_stream_close_cancels(client, sandbox):
    # The command writes every second: the server notices the disconnect at
    # its next write (a silent command is only cancelled when it next writes,
    # see the SDK report) and kills the process group.
    st = sandbox.exec_stream("echo started; while true; do sleep 1; echo tick; done")
    first = next(iter(st))
    assert first.data == b"started\n"
    st.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if "while true" not in sandbox.exec("ps").stdout:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("cancelled command still running")


def test_commands_history_and_full_output(client, sandbox):
    c = sandbox.exec("head -c 100000 /dev/zero | tr '\\0' x")
    assert c.stdout_truncated and c.stdout_bytes == 100000 and len(c.stdout) == 65536
    full = client.command_output(sandbox.id, c.id)
    assert full == b"x" * 100000
    page = client.list_commands(sandbox.id, limit=2)
    assert page.total >= 2 and len(page) == 2 and all(isinstance(x, fluid.Command) for x in page)
    assert c.id in {x.id for x in client.list_commands(sandbox.id, limit=1000)}
    assert client.get_command(sandbox.id, c.id).stdout_bytes == 100000


def test_background_processes(client, sandbox):
    p = client.start_process(sandbox.id, "sleep 300")
    assert isinstance(p, fluid.Process) and p.bg is not None
    assert any(x.bg == p.bg and x.running for x in client.list_processes(sandbox.id))
    client.kill_process(sandbox.id, p.bg, signal=9)
    done = client.wait_process(sandbox.id, p.bg, timeout_sec=20)
    assert done.running is False and done.signal == 9
    q = client.start_process(sandbox.id, ["/bin/sh", "-c", "exit 5"])
    assert client.wait_process(sandbox.id, q.bg, timeout_sec=20).exit_code == 5
    with pytest.raises(fluid.NotFound):
        client.kill_process(sandbox.id, 99999)
