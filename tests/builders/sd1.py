"""Tiny (and full-size meta) SD1 parts in the exact key layouts of the TinyBreaker file.

- UNet: ldm/CompVis names (``input_blocks.*``, ``middle_block.*``, ``output_blocks.*``, ``time_embed.*``, ``out.*``).
  Built as a diffusers ``UNet2DConditionModel`` and renamed with the inverse map below, written here independently
  of diffusers' own ldm->diffusers converter (which the loader uses), so a round trip proves both.
- CLIP text model: HF-transformers names under ``text_model.`` (as stored after ``refiner.conditioner.``).
- KL decoder: ldm names ``decoder.*`` + ``post_quant_conv.*``, generated from the ldm layout rules directly.
- A tiny byte-level BPE tokenizer in CLIP's vocab.json/merges.txt format.

All builders work outside pytest (live tests and benchmarks use them).
"""

from __future__ import annotations

import json
import os
import re
from typing import Sequence

import torch

SD15_UNET = dict(model_channels=320, channel_mult=(1, 2, 4, 4), num_res_blocks=2, attention_levels=(0, 1, 2),
                 context_dim=768, heads=8)
SD15_UNET_KEY_COUNT = 686  # model.diffusion_model.* keys of an SD1.5 single-file checkpoint
SD15_UNET_PARAMETERS = 859_520_964
CLIP_L = dict(hidden=768, layers=12, heads=12, intermediate=3072, vocab=49408, positions=77)
CLIP_L_PARAMETERS = 123_060_480
SD_VAE_DECODER = dict(ch=128, ch_mult=(1, 2, 4, 4), z=4, num_res_blocks=2)

# ----------------------------------------------------------------------------------------------------------- UNet

_RESNET_TO_LDM = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
                  "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_FIXED_TO_LDM = {"conv_in.": "input_blocks.0.0.", "time_embedding.linear_1.": "time_embed.0.",
                 "time_embedding.linear_2.": "time_embed.2.", "conv_norm_out.": "out.0.", "conv_out.": "out.2.",
                 "add_embedding.linear_1.": "label_emb.0.0.", "add_embedding.linear_2.": "label_emb.0.2."}  # SDXL


def _resnet_rest(rest: str) -> str:
    part, _, tail = rest.partition(".")
    return f"{_RESNET_TO_LDM[part]}.{tail}"


def diffusers_unet_key_to_ldm(key: str, *, levels: int, num_res_blocks: int, attention_levels: Sequence[int]) -> str:
    """One diffusers UNet2DConditionModel key -> its ldm/CompVis name (SD1 layout)."""
    per_level = num_res_blocks + 1
    for prefix, ldm in _FIXED_TO_LDM.items():
        if key.startswith(prefix):
            return ldm + key[len(prefix):]
    if m := re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"input_blocks.{1 + int(m[1]) * per_level + int(m[2])}.0.{_resnet_rest(m[3])}"
    if m := re.match(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
        return f"input_blocks.{1 + int(m[1]) * per_level + int(m[2])}.1.{m[3]}"
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"input_blocks.{(int(m[1]) + 1) * per_level}.0.op.{m[2]}"
    if m := re.match(r"mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"middle_block.{2 * int(m[1])}.{_resnet_rest(m[2])}"
    if m := re.match(r"mid_block\.attentions\.0\.(.+)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"output_blocks.{int(m[1]) * per_level + int(m[2])}.0.{_resnet_rest(m[3])}"
    if m := re.match(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
        return f"output_blocks.{int(m[1]) * per_level + int(m[2])}.1.{m[3]}"
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        level = levels - 1 - int(m[1])  # up block 0 is the lowest resolution
        slot = 2 if level in attention_levels else 1  # after the transformer when the block has one
        return f"output_blocks.{int(m[1]) * per_level + num_res_blocks}.{slot}.conv.{m[2]}"
    raise KeyError(f"no ldm name for diffusers key {key!r}")


def _perturb_norms(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Norm weights/biases start at exactly 1/0; make them distinct so a swapped mapping changes the output."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            if "norm" in name and param.ndim == 1:
                noise = torch.randn(param.shape, generator=generator) * 0.1
                param.copy_((1.0 if name.endswith("weight") else 0.0) + noise)


def tiny_sd1_unet_diffusers(*, model_channels: int = 32, channel_mult: Sequence[int] = (1, 2), num_res_blocks: int = 1,
                            attention_levels: Sequence[int] = (1,), context_dim: int = 32, heads: int = 8,
                            depth: int = 1, seed: int = 0, device: str | torch.device = "cpu"):
    """A random diffusers UNet2DConditionModel in SD1's layout (conv proj_in/proj_out, eps prediction)."""
    from diffusers import UNet2DConditionModel

    levels = range(len(channel_mult))
    config = dict(
        sample_size=8, in_channels=4, out_channels=4,
        down_block_types=["CrossAttnDownBlock2D" if lv in attention_levels else "DownBlock2D" for lv in levels],
        up_block_types=["CrossAttnUpBlock2D" if lv in attention_levels else "UpBlock2D" for lv in reversed(levels)],
        block_out_channels=[model_channels * mult for mult in channel_mult], layers_per_block=num_res_blocks,
        cross_attention_dim=context_dim, attention_head_dim=heads, transformer_layers_per_block=depth,
    )
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**config)
    if torch.device(device).type != "meta":
        _perturb_norms(unet, torch.Generator().manual_seed(seed + 1))
    return unet.eval()


def unet_to_ldm_state_dict(unet, *, num_res_blocks: int, attention_levels: Sequence[int],
                           dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    levels = len(unet.config.block_out_channels)
    return {diffusers_unet_key_to_ldm(key, levels=levels, num_res_blocks=num_res_blocks,
                                      attention_levels=attention_levels): value.to(dtype or value.dtype)
            for key, value in unet.state_dict().items()}


def sd1_unet_ldm_state_dict(*, model_channels: int = 32, channel_mult: Sequence[int] = (1, 2), num_res_blocks: int = 1,
                            attention_levels: Sequence[int] = (1,), context_dim: int = 32, heads: int = 8,
                            depth: int = 1, seed: int = 0,
                            dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """A tiny random SD1 UNet under exact ldm names (``refiner.diffusion_model.`` removed)."""
    unet = tiny_sd1_unet_diffusers(model_channels=model_channels, channel_mult=channel_mult,
                                   num_res_blocks=num_res_blocks, attention_levels=attention_levels,
                                   context_dim=context_dim, heads=heads, depth=depth, seed=seed)
    return unet_to_ldm_state_dict(unet, num_res_blocks=num_res_blocks, attention_levels=attention_levels, dtype=dtype)


def sd1_unet_full_meta_state_dict(dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    """The full SD1.5 UNet layout (ldm names, real shapes) on the meta device: no memory."""
    spec = SD15_UNET
    unet = tiny_sd1_unet_diffusers(model_channels=spec["model_channels"], channel_mult=spec["channel_mult"],
                                   num_res_blocks=spec["num_res_blocks"], attention_levels=spec["attention_levels"],
                                   context_dim=spec["context_dim"], heads=spec["heads"], device="meta")
    return unet_to_ldm_state_dict(unet, num_res_blocks=spec["num_res_blocks"],
                                  attention_levels=spec["attention_levels"], dtype=dtype)

# ------------------------------------------------------------------------------------------------------------ CLIP


def tiny_clip_text_model(*, hidden: int = 32, layers: int = 2, heads: int = 2, intermediate: int | None = None,
                         vocab: int | None = None, positions: int = 77, seed: int = 0,
                         device: str | torch.device = "cpu"):
    """A random ``transformers.CLIPTextModel`` (quick_gelu, eps 1e-5 as CLIP-L)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    vocab = vocab or TINY_CLIP_VOCAB_SIZE
    config = CLIPTextConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate or 4 * hidden,
                            num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=positions,
                            hidden_act="quick_gelu", layer_norm_eps=1e-5,
                            bos_token_id=vocab - 2, eos_token_id=vocab - 1, pad_token_id=vocab - 1)
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed)
        model = CLIPTextModel(config)
    if torch.device(device).type != "meta":
        _perturb_norms(model, torch.Generator().manual_seed(seed + 1))
    return model.eval()


def clip_text_state_dict_of(model, *, include_position_ids: bool = True,
                            dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """A CLIPTextModel's weights under the names of the file (``text_model.*``), whatever transformers nests."""
    out = {}
    for key, value in model.state_dict().items():
        key = key if key.startswith("text_model.") else "text_model." + key
        if key.endswith("embeddings.position_ids"):
            continue
        out[key] = value.to(dtype) if dtype is not None and value.is_floating_point() else value
    if include_position_ids:  # SD1 single files store it (transformers 4.30 saved it as a buffer)
        positions = model.config.max_position_embeddings
        device = next(model.parameters()).device
        out["text_model.embeddings.position_ids"] = torch.arange(positions, device=device).unsqueeze(0)
    return out


def clip_text_state_dict(*, hidden: int = 32, layers: int = 2, heads: int = 2, intermediate: int | None = None,
                         vocab: int | None = None, positions: int = 77, seed: int = 0,
                         include_position_ids: bool = True, device: str | torch.device = "cpu",
                         dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    model = tiny_clip_text_model(hidden=hidden, layers=layers, heads=heads, intermediate=intermediate, vocab=vocab,
                                 positions=positions, seed=seed, device=device)
    return clip_text_state_dict_of(model, include_position_ids=include_position_ids, dtype=dtype)


def clip_l_full_meta_state_dict(dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    """CLIP ViT-L/14 text model layout (as stored under ``refiner.conditioner.``) on the meta device."""
    spec = CLIP_L
    return clip_text_state_dict(hidden=spec["hidden"], layers=spec["layers"], heads=spec["heads"],
                                intermediate=spec["intermediate"], vocab=spec["vocab"], positions=spec["positions"],
                                device="meta", dtype=dtype)

# ----------------------------------------------------------------------------------------------------- KL decoder


class _LdmWeights:
    """Random ldm VAE tensors into one dict: ~1/sqrt(fan_in) conv weights keep activations O(1) through the stack;
    norms near 1, biases small. No layer is zero (ldm zero-initialises some output convs; a random file must not)."""

    def __init__(self, seed: int, device: str | torch.device, dtype: torch.dtype):
        self.generator = torch.Generator().manual_seed(seed)
        self.meta = torch.device(device).type == "meta"
        self.device, self.dtype = device, dtype
        self.sd: dict[str, torch.Tensor] = {}

    def tensor(self, shape, kind):
        if self.meta:
            return torch.empty(shape, device="meta", dtype=self.dtype)
        if kind == "weight":
            fan_in = max(1, int(torch.tensor(shape[1:]).prod())) if len(shape) > 1 else 1
            value = torch.randn(shape, generator=self.generator) / fan_in ** 0.5
        elif kind == "norm":
            value = 1.0 + 0.1 * torch.randn(shape, generator=self.generator)
        else:
            value = 0.1 * torch.randn(shape, generator=self.generator)
        return value.to(device=self.device, dtype=self.dtype)

    def conv(self, name, c_out, c_in, k):
        self.sd[f"{name}.weight"] = self.tensor((c_out, c_in, k, k), "weight")
        self.sd[f"{name}.bias"] = self.tensor((c_out,), "bias")

    def norm(self, name, c):
        self.sd[f"{name}.weight"] = self.tensor((c,), "norm")
        self.sd[f"{name}.bias"] = self.tensor((c,), "bias")

    def resblock(self, name, c_in, c_out):
        self.norm(f"{name}.norm1", c_in)
        self.conv(f"{name}.conv1", c_out, c_in, 3)
        self.norm(f"{name}.norm2", c_out)
        self.conv(f"{name}.conv2", c_out, c_out, 3)
        if c_in != c_out:
            self.conv(f"{name}.nin_shortcut", c_out, c_in, 1)

    def mid(self, name, c):
        self.resblock(f"{name}.mid.block_1", c, c)
        self.norm(f"{name}.mid.attn_1.norm", c)
        for part in ("q", "k", "v", "proj_out"):
            self.conv(f"{name}.mid.attn_1.{part}", c, c, 1)
        self.resblock(f"{name}.mid.block_2", c, c)


def kl_decoder_state_dict(*, ch: int = 32, ch_mult: Sequence[int] = (1, 2), z: int = 4, num_res_blocks: int = 2,
                          out_ch: int = 3, seed: int = 0, device: str | torch.device = "cpu",
                          dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """ldm ``Decoder`` + ``post_quant_conv`` (as under ``first_stage_model.``), from ldm's layout rules."""
    w = _LdmWeights(seed, device, dtype)
    w.conv("post_quant_conv", z, z, 1)
    block_in = ch * ch_mult[-1]
    w.conv("decoder.conv_in", block_in, z, 3)
    w.mid("decoder", block_in)
    for level in reversed(range(len(ch_mult))):
        block_out = ch * ch_mult[level]
        for index in range(num_res_blocks + 1):
            w.resblock(f"decoder.up.{level}.block.{index}", block_in, block_out)
            block_in = block_out
        if level != 0:
            w.conv(f"decoder.up.{level}.upsample.conv", block_in, block_in, 3)
    w.norm("decoder.norm_out", block_in)
    w.conv("decoder.conv_out", out_ch, block_in, 3)
    return w.sd


def kl_encoder_state_dict(*, ch: int = 32, ch_mult: Sequence[int] = (1, 2), z: int = 4, num_res_blocks: int = 2,
                          in_ch: int = 3, seed: int = 0, device: str | torch.device = "cpu",
                          dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """ldm ``Encoder`` (double_z: mean and log-variance) + ``quant_conv``, the half a WebUI's SD1 VAE also loads."""
    w = _LdmWeights(seed, device, dtype)
    w.conv("encoder.conv_in", ch, in_ch, 3)
    block_in = ch
    for level, mult in enumerate(ch_mult):
        block_out = ch * mult
        for index in range(num_res_blocks):
            w.resblock(f"encoder.down.{level}.block.{index}", block_in, block_out)
            block_in = block_out
        if level != len(ch_mult) - 1:
            w.conv(f"encoder.down.{level}.downsample.conv", block_in, block_in, 3)
    w.mid("encoder", block_in)
    w.norm("encoder.norm_out", block_in)
    w.conv("encoder.conv_out", 2 * z, block_in, 3)
    w.conv("quant_conv", 2 * z, 2 * z, 1)
    return w.sd


def kl_decoder_full_meta_state_dict(dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    return kl_decoder_state_dict(**SD_VAE_DECODER, device="meta", dtype=dtype)

# ------------------------------------------------------------------------------------------------------ tokenizer

TINY_CLIP_MERGES = ("c a", "ca t</w>", "d o", "do g</w>", "r e", "re d</w>")


def _bytes_to_unicode() -> list[str]:
    """CLIP/GPT-2's printable stand-in for each of the 256 bytes (the BPE alphabet).

    Written out because transformers moved its ``bytes_to_unicode`` between modules from 4.30 to 5.x.
    """
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for byte in range(256):
        if byte in printable:
            chars.append(chr(byte))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def tiny_clip_vocab(merges: Sequence[str] = TINY_CLIP_MERGES) -> dict[str, int]:
    """CLIP's vocabulary order: 256 byte symbols, the same with ``</w>``, one entry per merge, then BOS and EOS."""
    symbols = _bytes_to_unicode()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(merge.split()) for merge in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}


TINY_CLIP_VOCAB_SIZE = len(tiny_clip_vocab())


def write_tiny_clip_tokenizer(out_dir: str | os.PathLike, merges: Sequence[str] = TINY_CLIP_MERGES) -> str:
    """vocab.json + merges.txt that ``transformers.CLIPTokenizer`` loads; 'cat', 'dog', 'red' are single tokens."""
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(tiny_clip_vocab(merges), f, ensure_ascii=False)
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    return out_dir
