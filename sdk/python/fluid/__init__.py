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
                     ServiceUnavailable, StreamBroken, Timeout, TooManyRequests, Unauthorized,
                     error_for)
from .models import (APPROVAL_KINDS, APPROVAL_STATES, ApplyOutcome, ApplyResult, ApplyStream,
                     Approval, AuditEvent, Change, Command, Diff, ExecResult, ExecStream,
                     FileInfo, FileWrite, HumanAnswer, Image, OutputChunk, Page, PaneContent,
                     Playbook, Policy, PolicyAssignment, Process, Sandbox, Snapshot, TmuxPane,
                     TmuxSession, Token, Whoami)

__version__ = "0.1.0"

__all__ = [
    "Client", "CommandFailed", "FileDownload",
    "FluidError", "BadRequest", "Unauthorized", "Forbidden", "NotFound", "Conflict",
    "PayloadTooLarge", "TooManyRequests", "ServerError", "NotImplementedByServer",
    "ServiceUnavailable", "Timeout",
    "ConnectionFailed", "StreamBroken", "error_for",
    "Sandbox", "Command", "OutputChunk", "ExecResult", "ExecStream", "Process", "FileInfo",
    "FileWrite", "Snapshot", "Image", "Diff", "Playbook", "Change", "AuditEvent", "Token", "Page",
    "Approval", "ApplyResult", "ApplyOutcome", "ApplyStream", "HumanAnswer", "APPROVAL_STATES",
    "APPROVAL_KINDS", "Whoami", "Policy", "PolicyAssignment", "TmuxSession", "TmuxPane",
    "PaneContent",
]
