"""Turns our errors into ones the host's API answers with a 4xx/5xx status and a readable message."""

from __future__ import annotations

from ..errors import ParameterError, TinyBreakerError


def request_error(error: Exception) -> Exception:
    """ParameterError → HTTP 422 (the request is wrong); other TinyBreakerErrors (missing or bad model files on the
    server) → HTTP 500 with the same one-line message. The UI shows the message either way."""
    if not isinstance(error, TinyBreakerError):
        return error
    try:
        from fastapi import HTTPException
    except ImportError:  # outside a WebUI (tests without fastapi)
        return error
    status = 422 if isinstance(error, ParameterError) else 500
    return HTTPException(status_code=status, detail=str(error))
