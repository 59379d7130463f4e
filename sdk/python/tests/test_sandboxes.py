# SPDX-License-Identifier: MIT
"""Sandboxes: create with options, get, list (filters, paging), stop/start,
destroy, the context manager, images/health/status."""

import fluid


def test_health_status_images(client):
    assert client.health() == {"status": "ok"}
    st = client.status()
    assert "accelerator" in st or "engine" in st
    names = {i.name: i for i in client.images()}
    assert "tiny" in names and names["tiny"].default is True
    assert names["tiny"].state in ("TEMPLATE_READY", "AVAILABLE")


def test_create_with_options_get_list_stop_start_destroy(client):
    sb = client.create_sandbox("tiny", name="sdk-opts", agent_id="sdk-agent-opts", job_id="job-sdk",
                               cpu=1, memory_mb=256, ttl_seconds=900, network="none")
    try:
        assert isinstance(sb, fluid.Sandbox)
        assert (sb.state, sb.sandbox_name, sb.agent_id, sb.job_id) == ("RUNNING", "sdk-opts",
                                                                       "sdk-agent-opts", "job-sdk")
        assert (sb.cpu, sb.memory_mb, sb.ttl_seconds, sb.network, sb.base_image) == (1, 256, 900, "none", "tiny")
        assert sb.raw["id"] == sb.id
        assert client.get_sandbox(sb.id).id == sb.id
        assert client.get_sandbox("sdk-opts").id == sb.id        # by name
        assert client.sandbox_ip(sb.id) == "10.0.2.15"

        page = client.list_sandboxes(agent_id="sdk-agent-opts")
        assert page.total == 1 and [s.id for s in page] == [sb.id]
        assert client.list_sandboxes(job_id="job-sdk", base_image="tiny").total == 1
        assert client.list_sandboxes(name="sdk-opts").total == 1
        everything = client.list_sandboxes(state="RUNNING")
        one = client.list_sandboxes(state="RUNNING", limit=1, offset=0)
        assert len(one) == 1 and one.total == everything.total
        assert {s.id for s in client.iter_sandboxes(page_size=1, state="RUNNING")} == {s.id for s in everything}

        st = sb.stop()
        assert st.state == "STOPPED" and st.ip_address is None
        st = client.start_sandbox(sb.id)
        assert st.state == "RUNNING" and st.ip_address == "10.0.2.15"
        assert sb.refresh().state == "RUNNING"
        assert sb.exec("echo back").stdout == "back\n"
    finally:
        gone = client.destroy_sandbox(sb.id)
    assert gone["state"] == "DESTROYED" and gone["sandbox_name"] == "sdk-opts"
    try:
        client.get_sandbox(sb.id)
        raise AssertionError("destroyed sandbox still there")
    except fluid.NotFound:
        pass
    destroyed = client.list_sandboxes(state="DESTROYED", agent_id="sdk-agent-opts")
    assert [s.id for s in destroyed] == [sb.id]


def test_context_manager_destroys_and_created_state(client):
    with client.create_sandbox(auto_start=False, agent_id="sdk-ctx") as sb:
        assert sb.state == "CREATED" and sb.ip_address is None
        assert sb.base_image == "tiny"                     # the server's default image
        started = sb.start()
        assert started.state == "RUNNING"
        sid = sb.id
    try:
        client.get_sandbox(sid)
        raise AssertionError("context manager did not destroy the sandbox")
    except fluid.NotFound:
        pass


def test_context_manager_destroys_on_error(client):
    sid = None
    try:
        with client.create_sandbox("tiny", agent_id="sdk-ctx-err") as sb:
            sid = sb.id
            raise KeyError("boom")
    except KeyError:
        pass
    assert sid and client.list_sandboxes(agent_id="sdk-ctx-err").total == 0


def test_cold_boot(client):
    with client.create_sandbox("tiny", boot="cold", agent_id="sdk-cold") as sb:
        assert sb.boot == "cold" and sb.state == "RUNNING"
        assert sb.exec(["/bin/echo", "cold"]).stdout == "cold\n"
