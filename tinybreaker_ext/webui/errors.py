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
    # Positional: starlette before 0.28 (A1111's) has no HTTPException.__str__, and Exception's shows only the
    # positional arguments; queue tools (agent-scheduler) record str() of the error as a failed task's result.
    return HTTPException(422, str(error))
