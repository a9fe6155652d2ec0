"""What a model file is, decided from its header keys alone (no tensor data is read); the signatures are in
docs/model-files.md "Classification by header"."""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from typing import Iterable

from tinybreaker_ext.errors import ModelFileError
from tinybreaker_ext.files.gguf_file import GGUF_T5_SIGNATURE, GGUFFile, GGUFHeader, is_gguf_file, read_gguf_header
from tinybreaker_ext.files.safetensors_file import (
    SafetensorsFile, SafetensorsHeader, SafetensorsView, read_safetensors_header, torch_dtype_for,
)
from tinybreaker_ext.files.state_dict import find_signature_prefix

# --- TinyBreaker checkpoint prefixes (docs/model-files.md "TinyBreaker checkpoints") ----------------------------------
BASE_PREFIX = "base.diffusion_model."
REFINER_UNET_PREFIX = "refiner.diffusion_model."
REFINER_CLIP_PREFIX = "refiner.conditioner."
FIRST_STAGE_PREFIX = "first_stage_model."
FIRST_STAGE_HQ_PREFIX = "first_stage_hqmodel."
REFINER_FIRST_STAGE_PREFIX = "refiner.first_stage_model."
TRANSCODER_PREFIX = "transcoder."
# An SDXL refiner (docs/model-files.md "TinyBreaker files with an SDXL refiner"): SDXL's UNet is the one with
# label_emb (pooled text + size conditioning; SD1's has none), its two text encoders are embedders 0 and 1.
SDXL_REFINER_MARKER = REFINER_UNET_PREFIX + "label_emb.0.0.weight"

PIXART_NATIVE = "native"
PIXART_DIFFUSERS = "diffusers"
PIXART_SIGNATURES = {
    PIXART_NATIVE: ("t_embedder.mlp.0.weight", "final_layer.scale_shift_table"),
    PIXART_DIFFUSERS: ("adaln_single.emb.timestep_embedder.linear_2.bias", "scale_shift_table"),
}
SDXL_TEXT_ENCODER_PREFIXES = (REFINER_CLIP_PREFIX + "embedders.0.", REFINER_CLIP_PREFIX + "embedders.1.")

T5_SIGNATURE = "encoder.block.0.layer.0.SelfAttention.q.weight"
T5_EMBEDDING_KEYS = ("shared.weight", "encoder.embed_tokens.weight")


class FileKind(enum.Enum):  # the value is what messages call the kind
    TINYBREAKER_PROTOTYPE0 = "TinyBreaker prototype0 checkpoint"
    TINYBREAKER_PROTOTYPE1 = "TinyBreaker prototype1 checkpoint"
    TINYBREAKER_SDXL = "TinyBreaker checkpoint with an SDXL refiner"
    T5_ENCODER = "T5 encoder"


# Only TinyBreaker files are checkpoints, in the finder's order of preference, as docs/model-files.md
# "Classification by header" says: prototype1 has the upscaler VAE; one with an SDXL refiner lacks the transcoder.
CHECKPOINT_KINDS = (FileKind.TINYBREAKER_PROTOTYPE1, FileKind.TINYBREAKER_PROTOTYPE0, FileKind.TINYBREAKER_SDXL)
ALL_KINDS_TEXT = "a TinyBreaker checkpoint or T5 encoder (.safetensors; T5 also .gguf)"


@dataclass(frozen=True)
class ModelFileInfo:
    """The result of classification: ``key_prefix``, where a T5 encoder's keys start; ``file_format``, "safetensors"
    or "gguf"."""

    path: str
    kind: FileKind
    description: str
    key_prefix: str = ""
    file_format: str = "safetensors"

    @property
    def is_tinybreaker(self) -> bool:
        return self.kind in CHECKPOINT_KINDS

    @property
    def refiner_family(self) -> str | None:
        """"sdxl" or "sd1": the family of the refiner a TinyBreaker file embeds (None for other files)."""
        if self.kind == FileKind.TINYBREAKER_SDXL:
            return "sdxl"
        return "sd1" if self.is_tinybreaker else None


def pixart_layout(keys: Iterable[str], prefix: str = "") -> str | None:
    """"native" or "diffusers" when the PixArt signature keys exist right under ``prefix``."""
    key_set = keys if isinstance(keys, (set, frozenset, dict)) else set(keys)
    for layout, (first, second) in PIXART_SIGNATURES.items():
        if prefix + first in key_set and prefix + second in key_set:
            return layout
    return None


# What an unrecognised file with a key starting with any of these looks like; the first match wins.
_LOOKS_LIKE = (
    (("model.diffusion_model.double_blocks.", "double_blocks.0."), "looks like a Flux model (double_blocks.*)"),
    (("model.diffusion_model.joint_blocks.", "joint_blocks.0."), "looks like an SD3 model (joint_blocks.*)"),
    (("conditioner.embedders.", "model.diffusion_model.label_emb.0.0.weight"),
     "looks like an SDXL checkpoint (model.diffusion_model.* + conditioner.embedders.*)"),
    (("model.diffusion_model.input_blocks.",), "looks like an SD1/SD2 checkpoint (model.diffusion_model.*)"),
    (("input_blocks.0.0.", "down_blocks.0.resnets."), "looks like a bare SD UNet (input_blocks.* / down_blocks.*)"),
    (("lora_unet_", "lora_te"), "looks like a LoRA"),
    (("transd.", "transe.", "transcoder.transd."), "looks like a bare tiny latent transcoder (transd.* / transe.*)"),
    (("taesd_encoder.", "taesd_decoder.", "encoder.layers.", "decoder.layers.", "encoder.0.", "decoder.1."),
     "looks like a tiny VAE (TAESD)"),
    (("decoder.conv_in.weight",), "looks like a full KL VAE (decoder.conv_in.*), not a tiny VAE"),
    (("text_model.encoder.layers.", "transformer.text_model."), "looks like a CLIP text encoder (text_model.*)"),
)


def _looks_like(keys: dict) -> str:
    """A one-phrase guess at what an unrecognised file is."""
    if not keys:
        return "contains no tensors"
    if any(".lora_down." in key or ".lora_A." in key for key in keys):
        return "looks like a LoRA"
    for layout, signature in PIXART_SIGNATURES.items():
        if find_signature_prefix(keys, *signature) is not None:
            return f"looks like a plain PixArt model ({layout} layout), without TinyBreaker's refiner and transcoder"
    for prefixes, phrase in _LOOKS_LIKE:
        if any(key.startswith(prefixes) for key in keys):
            return phrase
    if any(key.endswith(T5_SIGNATURE) for key in keys):
        return "has T5 encoder blocks but no shared.weight/encoder.embed_tokens.weight (incomplete T5 file?)"
    first_keys = ", ".join(sorted(keys)[:3])
    return f"unrecognised: {len(keys)} tensors, first keys {first_keys}"


def header_of(source) -> SafetensorsHeader | GGUFHeader:
    """The header of a path or of an open file or view (GGUF files by their magic); no tensor data is read."""
    if isinstance(source, (SafetensorsView, GGUFFile)):
        return source.header
    return read_gguf_header(source) if is_gguf_file(source) else read_safetensors_header(source)


def _classify_gguf(header: GGUFHeader) -> ModelFileInfo:
    """GGUF files are read for the T5 encoder only (llama.cpp's ``t5encoder`` naming, as in city96's files)."""
    names = header.tensors
    prefix = find_signature_prefix(names, *GGUF_T5_SIGNATURE)
    if prefix is None:
        architecture = header.metadata.get("general.architecture")
        what = f"a GGUF '{architecture}' model" if architecture and isinstance(architecture, str) else "a GGUF file"
        raise ModelFileError(header.path, f"is {what} without T5 encoder tensors ({GGUF_T5_SIGNATURE[0]}); "
                                          "only T5 encoders are read from GGUF files", ALL_KINDS_TEXT)
    if prefix + "enc.blk.1.attn_rel_b.weight" in names:
        raise ModelFileError(header.path, "looks like a UMT5 encoder (relative attention bias in every block), "
                                          "not T5 v1.1", ALL_KINDS_TEXT)
    quantization = header.file_type_name or names[prefix + GGUF_T5_SIGNATURE[0]].type_name
    where = f" under '{prefix}'" if prefix else ""
    return ModelFileInfo(header.path, FileKind.T5_ENCODER, f"T5 encoder (GGUF {quantization}){where}", prefix, "gguf")


def classify(source: str | os.PathLike | SafetensorsView | GGUFFile) -> ModelFileInfo:
    """The kind of a file (of a view: its whole file) from its header; one-line ModelFileError if broken or unknown."""
    header = header_of(source)
    if isinstance(header, GGUFHeader):
        return _classify_gguf(header)
    keys, path = header.tensors, header.path

    def fail(problem: str) -> ModelFileError:
        return ModelFileError(path, problem, ALL_KINDS_TEXT)

    if any(key.startswith(BASE_PREFIX) for key in keys):
        layout = pixart_layout(keys, BASE_PREFIX)
        if layout is None:
            raise fail(f"has {BASE_PREFIX}* but no PixArt-Sigma signature keys under it")
        if SDXL_REFINER_MARKER in keys:
            missing = [prefix for prefix in SDXL_TEXT_ENCODER_PREFIXES
                       if not any(key.startswith(prefix) for key in keys)]
            if missing:
                raise fail(f"has an SDXL refiner UNet ({REFINER_UNET_PREFIX}label_emb.*) but no {missing[0]}* "
                           "text encoder: not a complete TinyBreaker file with an SDXL refiner")
            kind = FileKind.TINYBREAKER_SDXL
        elif any(key.startswith(REFINER_FIRST_STAGE_PREFIX) for key in keys):
            kind = FileKind.TINYBREAKER_PROTOTYPE1
        elif any(key.startswith(FIRST_STAGE_HQ_PREFIX) for key in keys):
            kind = FileKind.TINYBREAKER_PROTOTYPE0
        else:
            raise fail(f"has a PixArt base ({BASE_PREFIX}*) but neither {FIRST_STAGE_HQ_PREFIX}* (prototype0) "
                       f"nor {REFINER_FIRST_STAGE_PREFIX}* (prototype1): not a complete TinyBreaker file")
        title = header.metadata.get("modelspec.title")
        suffix = f", '{title}'" if title else ""
        return ModelFileInfo(path, kind, f"{kind.value} (PixArt {layout} layout{suffix})")

    t5_prefix = next((p for p in (find_signature_prefix(keys, T5_SIGNATURE, embedding)
                                  for embedding in T5_EMBEDDING_KEYS) if p is not None), None)
    if t5_prefix is not None:
        if t5_prefix + "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight" in keys:
            raise fail("looks like a UMT5 encoder (relative attention bias in every block), not T5 v1.1")
        dtype_name = keys[t5_prefix + T5_SIGNATURE].dtype_name
        dtype = torch_dtype_for(dtype_name)
        details = dtype_name if dtype is None else str(dtype)[6:]
        if t5_prefix + "scaled_fp8" in keys or "scaled_fp8" in keys or any(
                key.endswith((".scale_weight", ".weight_scale")) for key in keys):
            details += ", scaled fp8"
        where = f" under '{t5_prefix}'" if t5_prefix else ""
        return ModelFileInfo(path, FileKind.T5_ENCODER, f"T5 encoder ({details}){where}", t5_prefix)

    raise fail(_looks_like(keys))


def expected_text(kinds: Iterable[FileKind]) -> str:
    labels = [kind.value for kind in FileKind if kind in kinds]
    joined = labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " or " + labels[-1]
    return f"a {joined} (.safetensors{' or .gguf' if FileKind.T5_ENCODER in kinds else ''})"


def open_model_file(path: str | os.PathLike,
                    expected: FileKind | Iterable[FileKind]) -> tuple[SafetensorsFile | GGUFFile, ModelFileInfo]:
    """Opens ``path`` (.safetensors, or GGUF by its magic) and checks it is one of the ``expected`` kinds; the caller
    closes the returned file. Raises a one-line ModelFileError naming the file, what it is, and what was expected."""
    kinds = frozenset([expected] if isinstance(expected, FileKind) else expected)
    file = None
    try:
        file = GGUFFile(path) if is_gguf_file(path) else SafetensorsFile(path)
        info = classify(file)
        if info.kind not in kinds:
            raise ModelFileError(info.path, f"is a {info.description}")
    except ModelFileError as error:
        if file is not None:
            file.close()
        raise ModelFileError(error.path, error.problem, expected_text(kinds)) from None
    return file, info

