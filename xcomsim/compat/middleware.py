"""Starlette's ``BaseHTTPMiddleware`` internals that xcomsim's inline ``call_next`` builds on, on every
starlette a supported Airflow installs (0.48 with Airflow 3.1, 1.x with 3.2 and 3.3).

Starlette 1.0 gave ``_CachedRequest`` the ASGI ``send`` too (a request can send early hints);
0.48's takes ``scope`` and ``receive`` only.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any


@functools.cache
def request_takes_send() -> bool:
    """Whether starlette's ``_CachedRequest`` takes ``send`` (starlette 1.0+: Airflow 3.2+)."""
    from starlette.middleware.base import _CachedRequest

    return "send" in inspect.signature(_CachedRequest.__init__).parameters


def cached_request(scope: Any, receive: Any, send: Any) -> Any:
    """The request object ``BaseHTTPMiddleware.__call__`` makes for its ``dispatch``."""
    from starlette.middleware.base import _CachedRequest

    return _CachedRequest(scope, receive, send) if request_takes_send() else _CachedRequest(scope, receive)
