# SPDX-License-Identifier: MIT
"""A tiny PEP 517/660 build backend (standard library only).

pip builds in an isolated environment and would first download setuptools
from an index; this backend needs nothing, so ``pip install ./sdk/python``
works offline. It packs the pure-Python packages listed in PACKAGES into a
py3-none-any wheel (or an sdist, or an editable wheel with a .pth file).
"""

import base64
import hashlib
import io
import os
import tarfile
import zipfile

NAME = "fluid_sdk"
DIST = "fluid-sdk"
VERSION = "0.1.0"
PACKAGES = ("fluid", "virsh_sandbox")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAG = "py3-none-any"


def _metadata() -> str:
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    return (f"Metadata-Version: 2.1\nName: {DIST}\nVersion: {VERSION}\n"
            "Summary: Python SDK for fluid: disposable KVM/QEMU sandboxes for AI agents\n"
            "License: MIT\nRequires-Python: >=3.8\n"
            "Description-Content-Type: text/markdown\n\n" + readme)


def _sources():
    for pkg in PACKAGES:
        for dirpath, dirs, files in os.walk(os.path.join(ROOT, pkg)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for f in sorted(files):
                if f.endswith(".py") or f == "py.typed":
                    full = os.path.join(dirpath, f)
                    yield full, os.path.relpath(full, ROOT).replace(os.sep, "/")


def _wheel(directory, files):
    """files: [(archive name, bytes)]; writes the wheel, returns its name."""
    info = f"{NAME}-{VERSION}.dist-info"
    files = list(files) + [
        (f"{info}/METADATA", _metadata().encode()),
        (f"{info}/WHEEL", f"Wheel-Version: 1.0\nGenerator: fluid_build\nRoot-Is-Purelib: true\nTag: {TAG}\n".encode()),
        (f"{info}/top_level.txt", "".join(p + "\n" for p in PACKAGES).encode()),
    ]
    record = []
    name = f"{NAME}-{VERSION}-{TAG}.whl"
    with zipfile.ZipFile(os.path.join(directory, name), "w", zipfile.ZIP_DEFLATED) as z:
        for arc, data in files:
            z.writestr(arc, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{arc},sha256={digest},{len(data)}")
        record.append(f"{info}/RECORD,,")
        z.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return name


def get_requires_for_build_wheel(config_settings=None):
    return []


get_requires_for_build_sdist = get_requires_for_build_editable = get_requires_for_build_wheel


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _wheel(wheel_directory, [(arc, open(full, "rb").read()) for full, arc in _sources()])


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return _wheel(wheel_directory, [(f"__editable__.{NAME}.pth", (ROOT + "\n").encode())])


def build_sdist(sdist_directory, config_settings=None):
    base = f"{NAME}-{VERSION}"
    name = base + ".tar.gz"
    extra = ["pyproject.toml", "README.md", "_build/fluid_build.py"]
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz", format=tarfile.PAX_FORMAT) as t:
        for rel in extra:
            t.add(os.path.join(ROOT, rel), f"{base}/{rel}")
        for full, arc in _sources():
            t.add(full, f"{base}/{arc}")
        data = _metadata().encode()
        ti = tarfile.TarInfo(f"{base}/PKG-INFO")
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
    return name
