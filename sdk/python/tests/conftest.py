# SPDX-License-Identifier: MIT
"""A real fluid server for the SDK tests (session scoped).

Starts ``build/fluid serve`` on a free port with a private PostgreSQL cluster
(scripts/pg.sh) in a temporary state dir, QEMU under TCG, the tiny image as
default and pool_size 1. The image dir holds ``tiny`` and ``ubuntu-base``
(an alias of tiny) so the product README's example runs with its own image
name. At the end the server and the cluster are stopped and every QEMU whose
command line names the temporary dir is killed (nothing else).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SDK = os.path.dirname(HERE)
ROOT = os.path.dirname(os.path.dirname(SDK))
sys.path.insert(0, SDK)

import fluid  # noqa: E402

FLUID = os.path.join(ROOT, "build", "fluid")
PG = os.path.join(ROOT, "scripts", "pg.sh")


def _qemus_under(path: str):
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if "qemu-system" in cmd and path in cmd:
            yield int(pid)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _production_host(tmp: str):
    """A stand-in production host for the apply tests: an sshd of our own on
    127.0.0.1 (keys, authorized_keys and config in tmp/prod, its host key
    pinned in a known_hosts file), in a private mount namespace so that its
    privilege separation directory /run/sshd is a tmpfs of its own. Returns
    (Popen or None, the config's hosts: section, the dir the apply tests
    write into). The apply tests only ever run playbooks they made
    themselves, writing below tmp/prod/out."""
    d = os.path.join(tmp, "prod")
    out = os.path.join(d, "out")
    os.makedirs(out)
    port = _free_port()
    for k in ("host_key", "apply_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fluid-sdk-" + k,
                        "-f", os.path.join(d, k)], check=True)
    shutil.copy(os.path.join(d, "apply_key.pub"), os.path.join(d, "authorized_keys"))
    with open(os.path.join(d, "host_key.pub")) as f:
        hk = " ".join(f.read().split()[:2])
    with open(os.path.join(d, "known_hosts"), "w") as f:
        f.write(f"[127.0.0.1]:{port} {hk}\n")
    cfg = os.path.join(d, "sshd_config")
    with open(cfg, "w") as f:
        f.write(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {d}/host_key
AuthorizedKeysFile {d}/authorized_keys
PidFile none
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowUsers root
Subsystem sftp internal-sftp
""")
    hosts = f"""hosts:
  - name: prod-local
    address: 127.0.0.1
    port: {port}
    user: root
    ssh_key: {d}/apply_key
    known_hosts: {d}/known_hosts
"""
    sshd = None
    try:
        sshd = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             'mount -t tmpfs -o mode=0755 fluid-sdk-run /run && mkdir -m 0755 /run/sshd && '
             'exec /usr/sbin/sshd -D -e -f "$0"', cfg],
            stdout=open(os.path.join(d, "sshd.log"), "wb"), stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
        for _ in range(100):
            if sshd.poll() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
    except OSError:
        pass  # the apply tests then fail with the host unreachable
    return sshd, hosts, out


class Server:
    def __init__(self, url: str, token: str, state: str, tmp: str):
        self.url = url
        self.token = token
        self.state = state
        self.tmp = tmp
        self.prod_out = ""

    def client(self, token=None, **kw) -> fluid.Client:
        return fluid.Client(self.url, self.token if token is None else token, **kw)


@pytest.fixture(scope="session")
def server():
    if not os.access(FLUID, os.X_OK):
        pytest.fail("build/fluid missing (make build/fluid)")
    tiny = os.path.join(ROOT, "build", "images", "tiny")
    if not os.path.isfile(os.path.join(tiny, "image.json")):
        pytest.fail("tiny image missing (image-build/build-images --only tiny)")
    tmp = tempfile.mkdtemp(prefix="fluid-sdk-")
    os.chmod(tmp, 0o755)  # the PostgreSQL cluster's owner must reach it
    state = os.path.join(tmp, "state")
    images = os.path.join(tmp, "images")
    os.makedirs(images)
    real = os.path.realpath(tiny)
    os.symlink(real, os.path.join(images, "tiny"))
    os.symlink(real, os.path.join(images, "ubuntu-base"))
    sshd, hosts, prod_out = _production_host(tmp)
    with open(os.path.join(tmp, "config.yaml"), "w") as f:
        f.write(f"""server:
  listen: 127.0.0.1:0
state_dir: {state}
accelerator: tcg
images:
  dir: {images}
  default: tiny
  pool_size: 1
limits:
  max_sandboxes: 12
policies:
  guarded:
    description: sdk tests
    commands:
      deny: ["shutdown", "reboot"]
      approval: ["touch /tmp/approve-me*"]
      approval_timeout_sec: 120
{hosts}""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUID_") and k != "DATABASE_URL"}
    env["FLUID_STATE_DIR"] = state
    proc = None
    pg = False
    log = open(os.path.join(tmp, "serve.log"), "wb")
    try:
        r = subprocess.run([PG, "start"], env=env, capture_output=True, text=True, timeout=180)
        if r.returncode != 0:
            pytest.fail(f"scripts/pg.sh start failed: {r.stderr}")
        pg = True
        db = subprocess.run([PG, "url"], env=env, capture_output=True, text=True,
                            check=True).stdout.strip()
        senv = dict(env)
        del senv["FLUID_STATE_DIR"]
        senv["DATABASE_URL"] = db
        proc = subprocess.Popen([FLUID, "serve", "--config", os.path.join(tmp, "config.yaml")],
                                env=senv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        sj = os.path.join(state, "serve.json")
        for _ in range(600):
            if os.path.exists(sj) and os.path.getsize(sj) > 0:
                break
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        else:
            pass
        if not (os.path.exists(sj) and os.path.getsize(sj) > 0):
            log.flush()
            pytest.fail("fluid serve did not start: " + open(log.name).read()[-3000:])
        with open(sj) as f:
            url = json.load(f)["url"]
        with open(os.path.join(state, "admin.token")) as f:
            token = f.read().strip()
        srv = Server(url, token, state, tmp)
        srv.prod_out = prod_out
        srv.pg_url = db
        yield srv
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if pg:
            subprocess.run([PG, "stop"], env=env, capture_output=True, timeout=120)
        if sshd is not None and sshd.poll() is None:
            sshd.terminate()
            try:
                sshd.wait(timeout=30)
            except subprocess.TimeoutExpired:
                sshd.kill()
                sshd.wait()
        for pid in list(_qemus_under(tmp)):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        log.close()
        if os.environ.get("FLUID_SDK_KEEP_TMP"):
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def client(server) -> fluid.Client:
    return server.client()


@pytest.fixture(scope="session")
def sandbox(client):
    """One running tiny sandbox shared by the exec and file tests."""
    sb = client.create_sandbox("tiny", name="sdk-shared", agent_id="sdk-tests")
    yield sb
    try:
        sb.destroy()
    except fluid.FluidError:
        pass


@pytest.fixture(scope="session")
def agent_token(client):
    """An agent token made by the admin token (fluid.Token, secret in .token)."""
    return client.create_token("agent", name="sdk-agent-approvals")


@pytest.fixture(scope="session")
def reviewer_token(client):
    return client.create_token("reviewer", name="sdk-reviewer")


@pytest.fixture(scope="session")
def agent(server, agent_token) -> fluid.Client:
    """A client with an agent token (may ask, never decide)."""
    return server.client(agent_token.token)


@pytest.fixture(scope="session")
def reviewer(server, reviewer_token) -> fluid.Client:
    """A second client with a reviewer token (decides approvals)."""
    return server.client(reviewer_token.token)
