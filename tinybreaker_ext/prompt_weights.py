"""ComfyUI's prompt-weighting grammar (docs/numerics.md "Prompt weighting"), ported from ComfyUI's
``token_weights``/``parse_parentheses`` and ``SDTokenizer.tokenize_with_weights``' ``embedding:`` handling: ComfyUI is
not an importable library, and A1111's emphasis parser differs. Segment boundaries matter as much as the weights
(docs/numerics.md "T5 tokenization"). A weight ``(text:w)`` is anything ``float()`` reads, else ``:...`` stays text."""

from __future__ import annotations

import re

EMBEDDING_PREFIX = "embedding:"
NESTED_WEIGHT_FACTOR = 1.1

# Private placeholders for escaped parentheses, exactly as ComfyUI uses them.
_ESCAPED_CLOSE = "\0\1"
_ESCAPED_OPEN = "\0\2"
_EMBEDDING_SPLIT = re.compile(" {0}|\n{0}".format(EMBEDDING_PREFIX))


def parse_weighted_segments(text: str) -> list[tuple[str, float]]:
    """Split a prompt into ``(text, weight)`` segments, each tokenised on its own. Never raises; empty segments are
    left out, whitespace-only ones kept (they tokenise to nothing but keep the segmentation faithful)."""
    escaped = text.replace("\\)", _ESCAPED_CLOSE).replace("\\(", _ESCAPED_OPEN)
    return [(piece, weight) for segment, weight in _token_weights(escaped, 1.0)
            for piece in _without_embeddings(segment.replace(_ESCAPED_CLOSE, ")").replace(_ESCAPED_OPEN, "("))]


def _parse_parentheses(text: str) -> list[str]:
    """Top-level split into plain runs and ``(...)`` groups; an unclosed group runs to the end of the text."""
    result: list[str] = []
    current = ""
    nesting = 0
    for char in text:
        if char == "(":
            if nesting == 0:
                if current:
                    result.append(current)
                current = "("
            else:
                current += char
            nesting += 1
        elif char == ")":
            nesting -= 1
            if nesting == 0:
                result.append(current + ")")
                current = ""
            else:
                current += char
        else:
            current += char
    if current:
        result.append(current)
    return result


def _token_weights(text: str, current_weight: float) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    for item in _parse_parentheses(text):
        if len(item) >= 2 and item[0] == "(" and item[-1] == ")":
            inner = item[1:-1]
            weight = current_weight * NESTED_WEIGHT_FACTOR
            colon = inner.rfind(":")
            if colon > 0:
                try:
                    weight = float(inner[colon + 1:])
                    inner = inner[:colon]
                except ValueError:
                    pass
            out += _token_weights(inner, weight)
        else:
            out.append((item, current_weight))
    return out


def _without_embeddings(segment: str) -> list[str]:
    """The pieces of ``segment`` that ComfyUI tokenises, with every ``embedding:NAME`` directive removed."""
    first, *rest = _EMBEDDING_SPLIT.split(segment)
    words = [first] + [EMBEDDING_PREFIX + word for word in rest]
    pieces = [_leftover_after_embedding(word[len(EMBEDDING_PREFIX):].strip("\n"))
              if word.startswith(EMBEDDING_PREFIX) else word for word in words]
    return [piece for piece in pieces if piece]


def _leftover_after_embedding(directive: str) -> str:
    """What ComfyUI goes on tokenising after an embedding it cannot load (all of them, here)."""
    words = directive.split()
    if not words:  # ComfyUI raises IndexError on a bare "embedding:"; dropping it is the useful behaviour
        return ""
    name, leftover = words[0], " ".join(words[1:])
    stripped = name.strip(",")
    if len(stripped) < len(name):
        return "{} {}".format(name[len(stripped):], leftover)
    return leftover
