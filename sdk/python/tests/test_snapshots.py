# SPDX-License-Identifier: MIT
"""Snapshots and checkpoints: create, list, restore, branch, delete."""

import pytest

import fluid


def test_snapshot_restore_branch_delete(client):
    with client.create_sandbox("tiny", agent_id="sdk-snap") as sb:
        sb.exec("echo v1 > /root/v", check=True)
        s1 = client.create_snapshot(sb.id, "s1")
        assert isinstance(s1, fluid.Snapshot)
        assert (s1.name, s1.memory, s1.sandbox_id, s1.kind) == ("s1", False, sb.id, "EXTERNAL")
        sb.exec("echo v2 > /root/v; mkdir -p /run/x; echo ram > /run/x/f", check=True)
        c2 = sb.snapshot("c2", memory=True)
        assert c2.memory is True and c2.parent == "s1"
        snaps = client.list_snapshots(sb.id)
        assert [s.name for s in snaps] == ["s1", "c2"] and snaps.total == 2 and snaps.head == "c2"

        restored = client.restore_snapshot(sb.id, "s1")
        assert restored.state == "RUNNING"
        assert sb.exec("cat /root/v").stdout == "v1\n"
        sb.restore("c2")
        assert sb.exec("cat /root/v /run/x/f").stdout == "v2\nram\n"   # RAM state back

        with client.branch(sb.id, "s1", name="sdk-branch") as br:
            assert br.boot == "branch" and br.sandbox_name == "sdk-branch"
            assert br.exec("cat /root/v").stdout == "v1\n"
        with pytest.raises(fluid.Conflict):
            sb.snapshot("s1")
        d = client.delete_snapshot(sb.id, "s1")
        assert d.get("deleted") == "s1"
        assert [s.name for s in sb.snapshots_list()] == ["c2"]
        with pytest.raises(fluid.NotFound):
            sb.restore("s1")
