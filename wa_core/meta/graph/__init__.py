"""Graph API access for the Embedded Signup back end.

- :mod:`wa_core.meta.graph.client`: :class:`GraphClient`, the synchronous client (retries, secrets).
- :mod:`wa_core.meta.graph.errors`: typed errors mapped from Meta's ``error.code``.
- :mod:`wa_dev.emulator`: an in-memory Graph emulator for tests and the demo
  (imported on demand; it pulls in Starlette and uvicorn).
"""

from __future__ import annotations

from wa_core.meta.graph.client import PHONE_NUMBER_FIELDS, GraphClient, SyncType
from wa_core.meta.graph.errors import (
    GraphError,
    GraphRequestError,
    PermissionDenied,
    RateLimited,
    RegisterLimit,
    SyncAlreadyRequested,
    SyncWindowExpired,
    TokenInvalid,
    TransientGraphError,
    error_from_response,
)

__all__ = [
    "PHONE_NUMBER_FIELDS",
    "GraphClient",
    "GraphError",
    "GraphRequestError",
    "PermissionDenied",
    "RateLimited",
    "RegisterLimit",
    "SyncAlreadyRequested",
    "SyncType",
    "SyncWindowExpired",
    "TokenInvalid",
    "TransientGraphError",
    "error_from_response",
]
