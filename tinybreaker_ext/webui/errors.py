"""Turns our errors into ones the host's API answers with a 4xx status and a readable one-line message."""

from __future__ import annotations

from ..errors import TinyBreakerError


def request_error(error: Exception) -> Exception:
    """Every TinyBreakerError is about what the request asked for (a field, a file it named, a size, a missing model
    or tokenizer for what it asked) → HTTP 422 with the one-line message; the UI shows it too. Anything else is a
    fault of the server and reaches the host's own handler (500) unchanged."""
    if not isinstance(error, TinyBreakerError):
        return error
    try:
        from fastapi import HTTPException
    except ImportError:  # outside a WebUI (tests without fastapi)
        return error
    return HTTPException(status_code=422, detail=str(error))
