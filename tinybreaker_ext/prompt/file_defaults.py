"""The generation defaults a TinyBreaker file carries in its safetensors metadata; the keys and how they rank
against styles, fields and inline arguments: docs/design.md "One plan"."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

from ..errors import ParameterError
from ..stage_params import STAGES
from .sizes import parse_aspect, scale_factor
from .styles import STAGE_FIELD_TYPES, stage_value, typed_ini_value

# image.batch_size is not a default: every front end gives its own batch size (txt2img's field, --batch).
IMAGE_KEYS = {"image.aspect_ratio": "aspect", "image.scale": "scale"}


@dataclass(frozen=True)
class FileDefaults:
    """``stages``: flat ``stage.field`` values (the style library's key names); ``aspect``/``scale``: the image size
    used when the request names none (the command line without --width/--height); ``warnings``: values skipped."""

    stages: dict[str, object] = field(default_factory=dict)
    aspect: str | None = None
    scale: str | None = None
    warnings: tuple[str, ...] = ()


def read_file_defaults(metadata: Mapping[str, str], source: str = "checkpoint") -> FileDefaults:
    """The usable defaults of ``metadata``, a safetensors ``__metadata__`` dict (docs/design.md "One plan")."""
    stages: dict[str, object] = {}
    image: dict[str, str] = {}
    warnings: list[str] = []
    for key, raw in metadata.items():
        parts = key.split(".")
        try:
            if len(parts) == 3 and parts[0] == "denoising" and parts[1] in STAGES and parts[2] in STAGE_FIELD_TYPES:
                kind = STAGE_FIELD_TYPES[parts[2]]
                stages[f"{parts[1]}.{parts[2]}"] = stage_value(parts[2], raw if kind is str else typed_ini_value(raw))
            elif key in IMAGE_KEYS:
                check = parse_aspect if key == "image.aspect_ratio" else scale_factor
                check(raw)
                image[IMAGE_KEYS[key]] = str(raw).strip()
        except ParameterError as error:
            warnings.append(f"{source}: metadata {key}={raw!r}: {error.problem} (ignored)")
    return FileDefaults(stages=stages, aspect=image.get("aspect"), scale=image.get("scale"),
                        warnings=tuple(warnings))


def checkpoint_file_defaults(path: str) -> FileDefaults:
    """The defaults in the metadata of the TinyBreaker file at ``path`` (its header only is read)."""
    from ..files.classify import header_of

    return read_file_defaults(header_of(path).metadata, source=os.path.basename(path))
