# SPDX-License-Identifier: MIT
"""Exceptions raised by the fluid SDK.

Every API error has the body {"error": str, "code": int, "details": any};
the HTTP status picks the exception class, so callers can write
``except fluid.NotFound``. Transport failures (connection refused, reset,
socket timeout) raise :class:`ConnectionFailed` / :class:`Timeout`.
"""

from __future__ import annotations

from typing import Any, Optional


class FluidError(Exception):
    """Base class of every SDK error.

    Attributes: ``status`` (HTTP status, 0 for transport errors),
    ``message`` (the API's ``error``), ``details`` (the API's ``details``),
    ``method``/``path`` of the failed request and ``body`` (the raw answer).
    """

    def __init__(self, message: str, status: int = 0, details: Any = None,
                 method: str = "", path: str = "", body: Any = None):
        self.message = message
        self.status = status
        self.details = details
        self.method = method
        self.path = path
        self.body = body
        where = f" ({method} {path})" if method else ""
        super().__init__(f"{status} {message}{where}" if status else f"{message}{where}")

    @property
    def code(self) -> int:
        return self.status


class BadRequest(FluidError):
    """400: invalid input (unknown field, wrong type, bad name...)."""


class Unauthorized(FluidError):
    """401: no token or an unknown/revoked token."""


class Forbidden(FluidError):
    """403: the token's role may not do this (an agent approving), or a
    safety policy denied it."""


class NotFound(FluidError):
    """404: unknown sandbox, snapshot, file, command..."""


class Conflict(FluidError):
    """409: the object's state forbids it (not RUNNING, name taken, an
    approval decided already or not approved, ...)."""


class PayloadTooLarge(FluidError):
    """413: request body over the server's cap."""


class TooManyRequests(FluidError):
    """429: a limit of the server or of a safety policy (long-polls or
    applies at once, sandboxes per token); retry later."""


class ServerError(FluidError):
    """500 and other 5xx statuses without a class of their own."""


class NotImplementedByServer(FluidError):
    """501: the server knows the endpoint but cannot do it."""


class ServiceUnavailable(FluidError):
    """503: a dependency (database, engine) is down; nothing was done."""


class Timeout(FluidError):
    """504 from the server, or the client's own socket timeout."""


class ConnectionFailed(FluidError):
    """The server could not be reached or the connection broke."""


class StreamBroken(FluidError):
    """A streamed body (exec output, download) ended early."""


_BY_STATUS = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    429: TooManyRequests,
    501: NotImplementedByServer,
    503: ServiceUnavailable,
    504: Timeout,
}


def error_for(status: int, body: Any, method: str = "", path: str = "") -> FluidError:
    """Builds the exception for an HTTP error answer (body parsed or raw)."""
    message: Optional[str] = None
    details = None
    if isinstance(body, dict):
        message = body.get("error") if isinstance(body.get("error"), str) else None
        details = body.get("details")
    if message is None:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
        message = text.strip()[:500] or f"HTTP {status}"
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else FluidError
    return cls(message, status, details, method, path, body)
