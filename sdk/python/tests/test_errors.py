# SPDX-License-Identifier: MIT
"""Error mapping from the real server, and the client's retry rules
(against a tiny local fake server)."""

import http.server
import json
import socket
import threading

import pytest

import fluid
from fluid.errors import error_for


def test_not_found(client):
    with pytest.raises(fluid.NotFound) as ei:
        client.get_sandbox("nope")
    e = ei.value
    assert (e.status, e.code, e.message, e.details) == (404, 404, "no sandbox 'nope'", None)
    assert e.method == "GET" and e.path == "/v1/sandboxes/nope"
    assert isinstance(e, fluid.FluidError)


def test_bad_request(client, sandbox):
    with pytest.raises(fluid.BadRequest) as ei:
        client.create_sandbox("tiny", cpu=99)
    assert ei.value.status == 400 and "cpu" in ei.value.message
    with pytest.raises(fluid.BadRequest):
        client.get_sandbox("a..b")
    with pytest.raises(fluid.BadRequest) as ei:
        client.request("POST", f"/v1/sandboxes/{sandbox.id}/run", {"command": "id", "bogus": 1})
    assert ei.value.message == "unknown field 'bogus'"
    with pytest.raises(fluid.BadRequest):
        client.read_file(sandbox.id, "relative/path")


def test_conflict(client, sandbox):
    with pytest.raises(fluid.Conflict):
        client.create_sandbox("tiny", name=sandbox.sandbox_name)
    with client.create_sandbox(auto_start=False) as sb:
        with pytest.raises(fluid.Conflict) as ei:
            sb.exec("id")
        assert "not RUNNING" in ei.value.message


def test_payload_too_large(client):
    with pytest.raises(fluid.PayloadTooLarge):
        client.request("POST", "/v1/sandboxes", {"base_image": "x" * (2 << 20)})


def test_unauthorized(server):
    for token in ("", "not-a-token"):
        c = fluid.Client(server.url, token)
        with pytest.raises(fluid.Unauthorized) as ei:
            c.list_sandboxes()
        assert ei.value.status == 401
    assert fluid.Client(server.url, "").health() == {"status": "ok"}   # unauthenticated


def test_forbidden_agent_token(client, server):
    tok = client.create_token("agent", name="sdk-agent")
    assert isinstance(tok, fluid.Token) and tok.role == "agent" and tok.token
    agent = server.client(tok.token)
    assert agent.list_sandboxes().total >= 0                  # agents may do this
    with pytest.raises(fluid.Forbidden) as ei:
        agent.create_token("admin")                           # an admin endpoint
    assert ei.value.status == 403
    with pytest.raises(fluid.Forbidden):
        agent.verify_audit()                                  # reviewer or admin
    assert any(t.id == tok.id for t in client.list_tokens())
    client.revoke_token(tok.id)
    with pytest.raises(fluid.Unauthorized):
        agent.list_sandboxes()


def test_token_from_environment(server, monkeypatch):
    monkeypatch.setenv("FLUID_TOKEN", server.token)
    c = fluid.Client(server.url)
    assert c.token == server.token and c.list_sandboxes().total >= 0


def test_error_table():
    cases = {400: fluid.BadRequest, 401: fluid.Unauthorized, 403: fluid.Forbidden,
             404: fluid.NotFound, 409: fluid.Conflict, 413: fluid.PayloadTooLarge,
             503: fluid.ServiceUnavailable, 504: fluid.Timeout, 500: fluid.ServerError,
             418: fluid.FluidError}
    for status, cls in cases.items():
        e = error_for(status, {"error": "m", "code": status, "details": {"k": 1}})
        assert type(e) is cls and e.status == status and e.message == "m" and e.details == {"k": 1}
    e = error_for(502, b"<html>bad gateway</html>")
    assert isinstance(e, fluid.ServerError) and "bad gateway" in e.message


class _Fake(http.server.BaseHTTPRequestHandler):
    plan = []          # statuses to answer, in order; then 200
    hits = []

    def _answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        _Fake.hits.append((self.command, self.path))
        status = _Fake.plan.pop(0) if _Fake.plan else 200
        if status == 0:           # drop the connection without an answer
            self.close_connection = True
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        body = json.dumps({"status": "ok"} if status == 200 else
                          {"error": "db down", "code": status, "details": None}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *a):
        pass


@pytest.fixture
def fake():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Fake)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    _Fake.plan, _Fake.hits = [], []
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_retries_idempotent_only(fake):
    c = fluid.Client(fake, "t", retries=3, backoff=0.01)
    _Fake.plan = [503, 0, 503]
    assert c.health() == {"status": "ok"}                     # GET: retried through 503s and a drop
    assert len(_Fake.hits) == 4
    _Fake.plan, _Fake.hits = [503], []
    with pytest.raises(fluid.ServiceUnavailable):
        c.request("POST", "/v1/sandboxes", {})                 # POST: never replayed
    assert len(_Fake.hits) == 1
    _Fake.plan, _Fake.hits = [0], []
    with pytest.raises(fluid.ConnectionFailed):
        c.request("POST", "/v1/sandboxes", {})
    assert len(_Fake.hits) == 1
    _Fake.plan, _Fake.hits = [503] * 10, []
    with pytest.raises(fluid.ServiceUnavailable):
        c.health()
    assert len(_Fake.hits) == 4                                # 1 + retries


def test_connection_refused_and_timeout():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(fluid.ConnectionFailed):
        fluid.Client(f"http://127.0.0.1:{port}", "t", retries=1, backoff=0.01).health()
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)                       # accepts, never answers
    try:
        c = fluid.Client(f"http://127.0.0.1:{ls.getsockname()[1]}", "t", timeout=0.5, retries=0)
        with pytest.raises(fluid.Timeout):
            c.health()
    finally:
        ls.close()
