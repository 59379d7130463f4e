# SPDX-License-Identifier: MIT
"""fluid: Python SDK for the fluid sandbox appliance (standard library only).

    import fluid
    c = fluid.Client("http://127.0.0.1:8080")        # token from FLUID_TOKEN
    with c.create_sandbox("debian-12") as sb:        # destroyed on exit
        print(sb.exec("uname -a").stdout)

See sdk/python/README.md for the reference.
"""

from .client import Client, CommandFailed, FileDownload
from .errors import (BadRequest, Conflict, ConnectionFailed, FluidError, Forbidden,
                     NotFound, NotImplementedByServer, PayloadTooLarge, ServerError,
                     ServiceUnavailable, StreamBroken, Timeout, Unauthorized, error_for)
from .models import (AuditEvent, Change, Command, Diff, ExecResult, ExecStream, FileInfo,
                     FileWrite, Image, OutputChunk, Page, Playbook, Process, Sandbox, Snapshot,
                     Token)

__version__ = "0.1.0"

__all__ = [
    "Client", "CommandFailed", "FileDownload",
    "FluidError", "BadRequest", "Unauthorized", "Forbidden", "NotFound", "Conflict",
    "PayloadTooLarge", "ServerError", "NotImplementedByServer", "ServiceUnavailable", "Timeout",
    "ConnectionFailed", "StreamBroken", "error_for",
    "Sandbox", "Command", "OutputChunk", "ExecResult", "ExecStream", "Process", "FileInfo",
    "FileWrite", "Snapshot", "Image", "Diff", "Playbook", "Change", "AuditEvent", "Token", "Page",
]
