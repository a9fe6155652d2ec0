"""Errors the user can act on. Each message is one line that names the file or field at fault."""

from __future__ import annotations

import os


class TinyBreakerError(Exception):
    """Base class: anything we raise on purpose, with a message meant for the user."""


class ModelFileError(TinyBreakerError, ValueError):
    """A model file is missing, unreadable, truncated, or not the kind that was expected."""

    def __init__(self, path: str | os.PathLike, problem: str, expected: str | None = None):
        self.path = os.fspath(path)
        self.problem = problem
        message = f"{self.path}: {problem}"
        if expected:
            message += f" (expected {expected})"
        super().__init__(message)


class ModelNotFoundError(TinyBreakerError, FileNotFoundError):
    """A required model or tokenizer file could not be found; says what and where we looked."""

    def __init__(self, what: str, searched: list[str] | tuple[str, ...] = (), hint: str = ""):
        self.what = what
        self.searched = list(searched)
        self.hint = hint
        message = f"{what} not found"
        if self.searched:
            message += " (looked in: " + ", ".join(self.searched) + ")"
        if hint:
            message += f"; {hint}"
        super().__init__(message)


class NotEnoughMemoryError(TinyBreakerError, MemoryError):
    """The chosen models and placement cannot fit the free RAM or device memory; says what would."""


class OutputError(TinyBreakerError):
    """The image cannot be written where the user asked."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = os.fspath(path)
        super().__init__(f"{self.path}: {problem}")


class ParameterError(TinyBreakerError, ValueError):
    """A generation parameter is invalid; names the field and what is allowed."""

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"TinyBreaker parameter '{field}': {problem}")


class Cancelled(TinyBreakerError):
    """Raised from a progress callback to stop a running stage between steps."""
