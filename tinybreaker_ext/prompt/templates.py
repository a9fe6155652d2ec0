"""Style templates: the user's text where a style's template has its `$@` placeholder, in or without a conditional
`{. $@}` block (docs/numerics.md "Style templates")."""

from __future__ import annotations

PLACEHOLDER = "$@"


def apply_template(template: str | None, value: str) -> str:
    """`template` with `value` put in place of its first `$@`; `value` alone when there is no placeholder."""
    value = value or ""
    if not template or PLACEHOLDER not in template:
        return value

    prefix, _, suffix = template.partition(PLACEHOLDER)
    block_open, block_close = prefix.rfind("{"), suffix.find("}")
    if block_open == -1 or block_close == -1:
        return prefix + value + suffix

    # A `}` between the block's `{` and the placeholder, or any `{` after its `}`: the braces belong to something
    # else, and stay literally (the reference's exact check; docs/numerics.md "Style templates").
    if prefix.find("}", block_open) != -1 or suffix.find("{", block_close) != -1:
        return prefix + value + suffix

    if value:
        return prefix[:block_open] + prefix[block_open + 1:] + value + suffix[:block_close] + suffix[block_close + 1:]
    return prefix[:block_open] + suffix[block_close + 1:]


def refiner_text(refine: str, prompt: str) -> str:
    """What goes into the refiner prompt's template: `--refine` text (ending in '.') and a space before the prompt;
    `!text` alone replaces the prompt; no (or empty) `--refine` gives the prompt."""
    refine = (refine or "").strip()
    if not refine:
        return prompt
    replaces_prompt = refine.startswith("!")
    text = refine[1:].strip() if replaces_prompt else refine
    if text and not text.endswith("."):
        text += "."
    if replaces_prompt or not prompt:
        return text
    return f"{text} {prompt}"
