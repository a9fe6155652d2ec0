"""Finding and using the T5 v1.1 tokenizer with the reference's prompt rules (docs/numerics.md "T5 tokenization";
where it is looked for: docs/model-files.md "T5 tokenizer")."""

from __future__ import annotations

import json
import os
from typing import Callable

from ..errors import ModelFileError
from ..files.tokenizer_search import TokenizerKind, find_tokenizer
from ..limits import MAX_PROMPT_TOKENS
from ..prompt_weights import parse_weighted_segments

PAD_ID = 0
EOS_ID = 1
UNK_ID = 2
DEFAULT_MIN_LENGTH = 77  # ComfyUI's SD3 T5 tokenizer: EOS, then <pad> up to 77 tokens

# In-tree T5 tokenizer copies of the hosts, relative to the host's root folder.
HOST_TOKENIZER_SUBDIRS = (
    "ldm_patched/modules/t5_tokenizer",  # reForge (ComfyUI-derived backend)
    "backend/huggingface/stabilityai/stable-diffusion-3-medium-diffusers/tokenizer_3",  # Forge
    "backend/huggingface/stabilityai/stable-diffusion-3.5-large/tokenizer_3",  # Forge
    "backend/huggingface/black-forest-labs/FLUX.1-dev/tokenizer_2",  # Forge
    "comfy/text_encoders/t5_tokenizer",  # ComfyUI layout, for completeness
)


def host_tokenizer_dirs(host_root: str | os.PathLike) -> list[str]:
    """Candidate tokenizer folders inside a WebUI host checkout (existing or not)."""
    return [os.path.join(os.fspath(host_root), *sub.split("/")) for sub in HOST_TOKENIZER_SUBDIRS]


def is_t5_tokenizer_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a T5 tokenizer: a Unigram ``tokenizer.json`` with ``<pad>``=0 ``</s>``=1 ``<unk>``=2,
    or a ``spiece.model`` whose ``tokenizer_config.json`` names a T5 tokenizer class."""
    path = os.fspath(path)
    tokenizer_json = os.path.join(path, "tokenizer.json")
    if os.path.isfile(tokenizer_json):
        try:
            model = _read_json(tokenizer_json)["model"]
            specials = [model["vocab"][i][0] for i in (PAD_ID, EOS_ID, UNK_ID)]
            return model["type"] == "Unigram" and specials == ["<pad>", "</s>", "<unk>"]
        except (TypeError, IndexError, KeyError):
            return False
    if os.path.isfile(os.path.join(path, "spiece.model")):
        return "T5" in str(_read_json(os.path.join(path, "tokenizer_config.json")).get("tokenizer_class", ""))
    return False


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


# The T5 v1.1 vocabulary is the original T5 SentencePiece model; google-t5/t5-base ships it as tokenizer.json.
T5_TOKENIZER = TokenizerKind(
    what="T5 tokenizer", folder_name="t5_tokenizer", repo_id="google-t5/t5-base", filenames=("tokenizer.json",),
    is_valid=is_t5_tokenizer_dir,
    user_path_hint="the folder must hold a T5 tokenizer.json (or spiece.model + tokenizer_config.json)",
    hub_cache_folders=("google-t5/t5-base", "google/t5-v1_1-xxl", "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS/tokenizer",
                       "stabilityai/stable-diffusion-3-medium-diffusers/tokenizer_3",
                       "black-forest-labs/FLUX.1-dev/tokenizer_2"))


def find_t5_tokenizer(user_path: str | os.PathLike | None = None, models_dirs=(), host_dirs=(), **options) -> str:
    """The folder of a usable T5 tokenizer (``host_dirs``: see ``host_tokenizer_dirs``)."""
    return find_tokenizer(T5_TOKENIZER, user_path, models_dirs, host_dirs, **options)


def _older_tokenizers_json(data: dict) -> dict:
    """The same tokenizer in the form tokenizers < 0.14 reads: Metaspace with ``add_prefix_space`` instead of
    ``prepend_scheme``/``split``, and no ``byte_fallback`` flag when it is off."""

    def convert(node):
        if isinstance(node, dict):
            node = {key: convert(value) for key, value in node.items()}
            if node.get("type") == "Metaspace" and "prepend_scheme" in node:
                node["add_prefix_space"] = node.pop("prepend_scheme") != "never"
                node.pop("split", None)
            if node.get("type") == "Unigram" and node.get("byte_fallback") is False:
                node.pop("byte_fallback")
            return node
        if isinstance(node, list):
            return [convert(item) for item in node]
        return node

    return convert(data)


class T5PromptTokenizer:
    """T5 tokenisation with ComfyUI's weighting: one tokenisation per weighted segment, EOS once, pad to a minimum."""

    def __init__(self, encode: Callable[[str], list[int]], token_to_id: Callable[[str], int | None],
                 source: str = "tokenizer"):
        self._encode = encode
        found = [token_to_id(token) for token in ("<pad>", "</s>")]
        if found != [PAD_ID, EOS_ID]:
            raise ModelFileError(source, f"<pad>/</s> have ids {found}", f"T5 ids [{PAD_ID}, {EOS_ID}]")

    @classmethod
    def from_dir(cls, path: str | os.PathLike) -> "T5PromptTokenizer":
        """Load ``tokenizer.json`` with ``tokenizers`` (what T5TokenizerFast wraps); without it, ``spiece.model``
        with ``sentencepiece`` (same ids; converting it with transformers needs protobuf versions hosts may lack)."""
        path = os.fspath(path)
        tokenizer_json = os.path.join(path, "tokenizer.json")
        spiece_model = os.path.join(path, "spiece.model")
        if os.path.isfile(tokenizer_json):
            try:
                return cls._from_tokenizer_json(tokenizer_json)
            except ModelFileError:
                if not os.path.isfile(spiece_model):
                    raise
        if os.path.isfile(spiece_model):
            return cls._from_spiece_model(spiece_model)
        raise ModelFileError(path, "no tokenizer.json or spiece.model in this folder", "a T5 tokenizer folder")

    @classmethod
    def _from_tokenizer_json(cls, path: str) -> "T5PromptTokenizer":
        from tokenizers import Tokenizer
        try:
            tokenizer = Tokenizer.from_file(path)
        except Exception as error:  # tokenizers raises a bare Exception for malformed files
            try:  # a file saved by a newer tokenizers than the host pins (A1111: 0.13.3)
                tokenizer = Tokenizer.from_str(json.dumps(_older_tokenizers_json(_read_json(path))))
            except Exception:
                raise ModelFileError(path, f"cannot load the tokenizer ({error})", "a T5 tokenizer.json") from error
        tokenizer.no_truncation()  # the file may carry T5's 512 limit; the reference never truncates
        tokenizer.no_padding()
        return cls(lambda text: list(tokenizer.encode(text, add_special_tokens=False).ids), tokenizer.token_to_id,
                   source=os.path.abspath(path))

    @classmethod
    def _from_spiece_model(cls, path: str) -> "T5PromptTokenizer":
        try:
            import sentencepiece
        except ImportError as error:
            raise ModelFileError(path, "reading spiece.model needs the 'sentencepiece' package",
                                 "a tokenizer.json next to it") from error
        processor = sentencepiece.SentencePieceProcessor()
        if not processor.Load(path):
            raise ModelFileError(path, "cannot load the SentencePiece model", "a T5 spiece.model")

        def token_to_id(token: str) -> int | None:
            piece_id = processor.PieceToId(token)
            return piece_id if processor.IdToPiece(piece_id) == token else None

        return cls(lambda text: list(processor.EncodeAsIds(text)), token_to_id, source=os.path.abspath(path))

    def tokenize_with_weights(self, text: str, min_length: int = DEFAULT_MIN_LENGTH,
                              max_length: int | None = MAX_PROMPT_TOKENS) -> tuple[list[int], list[float]]:
        """``(ids, weights)``: segments tokenised separately, cut to ``max_length`` with the EOS (weight 1), then
        ``<pad>`` (weight 1) up to ``min_length`` (limits.py, "Prompt length"; the reference never cuts)."""
        ids: list[int] = []
        weights: list[float] = []
        for segment, weight in parse_weighted_segments(text):
            segment_ids = self._encode(segment)
            ids += segment_ids
            weights += [weight] * len(segment_ids)
        if max_length is not None:
            ids, weights = ids[:max_length - 1], weights[:max_length - 1]
        ids.append(EOS_ID)
        weights.append(1.0)
        padding = max(0, min_length - len(ids))
        return ids + [PAD_ID] * padding, weights + [1.0] * padding

    def count_tokens(self, text: str) -> int:
        """The length of ``text``'s sequence before any cut, EOS included."""
        return len(self.tokenize_with_weights(text, min_length=0, max_length=None)[0])


def empty_ids(length: int) -> list[int]:
    """The 'empty' sequence the weighting formula subtracts: ``[EOS, pad, pad, …]`` of ``length`` (≥ 1)."""
    return [EOS_ID] + [PAD_ID] * (max(1, length) - 1)
