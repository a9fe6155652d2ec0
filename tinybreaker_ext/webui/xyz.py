"""XYZ-plot axes for TinyBreaker's parameters. The axis writes an override on the copy of ``p`` that the grid
runs; ``script_logic.process`` validates it like any other input."""

from __future__ import annotations

from .. import params
from .script_logic import XYZ_OVERRIDES_ATTRIBUTE
from .styles_source import style_names

AXIS_PREFIX = "[TinyBreaker] "


def find_xyz_module():
    from modules import scripts

    for data in scripts.scripts_data:
        if data.script_class.__module__ in ("xyz_grid.py", "scripts.xyz_grid") and hasattr(data, "module"):
            return data.module
    return None


def apply_override(field_name: str):
    def apply(p, value, _values):
        overrides = dict(getattr(p, XYZ_OVERRIDES_ATTRIBUTE, None) or {})
        overrides[field_name] = value
        overrides.setdefault("enabled", True)  # an axis over a TinyBreaker value only makes sense with it on
        setattr(p, XYZ_OVERRIDES_ATTRIBUTE, overrides)

    return apply


def add_axes() -> bool:
    xyz = find_xyz_module()
    if xyz is None:
        return False
    existing = {option.label for option in xyz.axis_options}
    new_options = []
    for spec in params.xyz_fields():
        label = AXIS_PREFIX + spec.label.replace(" (0 = style)", "")
        choices = _choices(spec)
        new_options.append(xyz.AxisOption(label, spec.kind, apply_override(spec.name), choices=choices)
                           if choices else xyz.AxisOption(label, spec.kind, apply_override(spec.name)))
    for option in new_options:
        if option.label not in existing:
            xyz.axis_options.append(option)
    return True


def _choices(spec: params.FieldSpec):
    """The axis's value list: the style names as they are now, or the field's fixed choices."""
    if spec.name == "style":
        return style_names
    if spec.name == "upscale_model":
        from .api import upscale_model_choices

        return upscale_model_choices
    if spec.choices:
        return lambda: list(spec.choices)
    return None
