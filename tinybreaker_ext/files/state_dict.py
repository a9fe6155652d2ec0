"""Helpers that treat a plain dict of tensors and a lazy file view the same way: loaders take any
``Mapping[str, torch.Tensor]``, and a view answers ``shape``/``dtype``/``nbytes(key)`` without reading the tensor."""

from __future__ import annotations

from typing import Mapping

import torch

from ..errors import ModelFileError


def _header_value(state_dict: Mapping[str, torch.Tensor], key: str, attribute: str):
    answer = getattr(state_dict, attribute, None)  # a lazy view's method answers from the file header
    return answer(key) if callable(answer) else getattr(state_dict[key], attribute)


def shape_of(state_dict: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...]:
    return tuple(_header_value(state_dict, key, "shape"))


def required_shape(state_dict: Mapping[str, torch.Tensor], key: str, *, source: str, expected: str,
                   what: str = "the model") -> tuple[int, ...]:
    """``shape_of(state_dict, key)``; a missing tensor is a ModelFileError in the wording of ``build_with_weights``."""
    if key not in state_dict:
        raise ModelFileError(source, f"{what} is missing '{key}'", expected)
    return shape_of(state_dict, key)


def dtype_of(state_dict: Mapping[str, torch.Tensor], key: str) -> torch.dtype:
    return _header_value(state_dict, key, "dtype")


def nbytes_of(state_dict: Mapping[str, torch.Tensor], key: str) -> int:
    return _header_value(state_dict, key, "nbytes")


def with_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix`` with the prefix removed (reads tensors of a lazy view)."""
    sub = getattr(state_dict, "prefixed", None)
    if callable(sub):
        return sub(prefix)
    return {key[len(prefix):]: value for key, value in state_dict.items() if key.startswith(prefix)}


def find_signature_prefix(keys, first: str, second: str) -> str | None:
    """The prefix P under which both ``P+first`` and ``P+second`` exist (the shortest one), else None."""
    found = [key[: len(key) - len(first)] for key in keys if key.endswith(first)]
    found = [prefix for prefix in found if (prefix == "" or prefix.endswith(".")) and prefix + second in keys]
    return min(found, key=len) if found else None


def source_name(state_dict: Mapping[str, torch.Tensor]) -> str:
    """What to call a state dict in an error message: the file path of a lazy view, or a placeholder."""
    return str(getattr(state_dict, "path", None) or "<state dict>")
