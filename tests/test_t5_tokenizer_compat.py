"""A tokenizer.json saved by a newer `tokenizers` must still load on A1111's pinned tokenizers 0.13.3."""

import json

from tinybreaker_ext.models import t5_tokenizer
from tinybreaker_ext.models.t5_tokenizer import T5PromptTokenizer


def test_new_metaspace_fields_become_the_old_ones(t5_tokenizer_dir):
    data = json.load(open(f"{t5_tokenizer_dir}/tokenizer.json", encoding="utf-8"))
    old = t5_tokenizer._older_tokenizers_json(data)
    metaspaces = [node for node in _nodes(old) if isinstance(node, dict) and node.get("type") == "Metaspace"]
    assert metaspaces and all(node["add_prefix_space"] is True for node in metaspaces)
    assert not any("prepend_scheme" in node or "split" in node for node in metaspaces)


def test_converted_file_tokenizes_exactly_like_the_original(t5_tokenizer_dir, tmp_path):
    data = json.load(open(f"{t5_tokenizer_dir}/tokenizer.json", encoding="utf-8"))
    (tmp_path / "tokenizer.json").write_text(json.dumps(t5_tokenizer._older_tokenizers_json(data)), encoding="utf-8")
    original, converted = T5PromptTokenizer.from_dir(t5_tokenizer_dir), T5PromptTokenizer.from_dir(tmp_path)
    for text in ("a red cat, (dog:1.2) on a table", "  spaced   words ", "", "(photo:0.8), cat!"):
        assert converted.tokenize_with_weights(text) == original.tokenize_with_weights(text)


def test_unreadable_json_falls_back_to_spiece_model(t5_tokenizer_dir, tmp_path):
    import shutil

    shutil.copy(f"{t5_tokenizer_dir}/spiece.model", tmp_path / "spiece.model")
    (tmp_path / "tokenizer.json").write_text("{not json", encoding="utf-8")
    fallback = T5PromptTokenizer.from_dir(tmp_path)
    expected = T5PromptTokenizer.from_dir(t5_tokenizer_dir).tokenize_with_weights("a red cat")
    assert fallback.tokenize_with_weights("a red cat") == expected


def _nodes(node):
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _nodes(value)
