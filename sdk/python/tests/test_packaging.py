# SPDX-License-Identifier: MIT
"""`pip install ./sdk/python` works offline (in-tree stdlib build backend)."""

import os
import subprocess
import sys
import zipfile

import pytest

SDK = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_wheel_contents(tmp_path):
    sys.path.insert(0, os.path.join(SDK, "_build"))
    try:
        import fluid_build
    finally:
        sys.path.pop(0)
    name = fluid_build.build_wheel(str(tmp_path))
    with zipfile.ZipFile(tmp_path / name) as z:
        names = set(z.namelist())
    assert {"fluid/__init__.py", "fluid/client.py", "virsh_sandbox/__init__.py",
            "fluid_sdk-0.1.0.dist-info/RECORD", "fluid_sdk-0.1.0.dist-info/METADATA"} <= names
    assert fluid_build.get_requires_for_build_wheel() == []
    assert fluid_build.build_sdist(str(tmp_path)).endswith(".tar.gz")


def test_pip_install_offline(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True)
    if r.returncode != 0:
        pytest.skip("pip is not installed")
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(tmp_path / "t"), SDK],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-c", "import fluid, virsh_sandbox; print(fluid.__file__)"],
                       cwd=str(tmp_path), env=dict(env, PYTHONPATH=str(tmp_path / "t")),
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith(str(tmp_path / "t")), r.stderr
