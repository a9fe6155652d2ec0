"""Tiny (and full-size meta) SDXL parts in the key layout of an SDXL single-file checkpoint, as a TinyBreaker file
with an SDXL refiner stores them (docs/model-files.md "TinyBreaker files with an SDXL refiner"):

- UNet: ldm names (``input_blocks.*`` …, plus ``label_emb.0.{0,2}`` for the pooled-text + size conditioning), built
  as a diffusers ``UNet2DConditionModel`` with SDXL's add-embedding and renamed with ``sd1.diffusers_unet_key_to_ldm``.
- Text encoder 0: CLIP ViT-L/14, HF-transformers names under ``embedders.0.transformer.text_model.``.
- Text encoder 1: OpenCLIP ViT-bigG/14 text tower, OpenCLIP names under ``embedders.1.model.`` (``token_embedding``,
  ``positional_embedding``, ``transformer.resblocks.N.{ln_1, attn.in_proj_weight, attn.out_proj, ln_2, mlp.c_fc,
  mlp.c_proj}``, ``ln_final``, ``text_projection`` [width, projection]), renamed here from a random
  ``transformers.CLIPTextModelWithProjection`` independently of diffusers' converter (which the loader uses).
- KL decoder: the SD VAE layout (``decoder.*`` + ``post_quant_conv.*``); SDXL's VAE has the same shapes.
"""

from __future__ import annotations

from typing import Sequence

import torch

from builders.sd1 import (_perturb_norms, clip_text_state_dict, clip_text_state_dict_of, tiny_clip_text_model,
                          unet_to_ldm_state_dict)

SDXL_UNET = dict(model_channels=320, channel_mult=(1, 2, 4), num_res_blocks=2, attention_levels=(1, 2),
                 depths=(2, 10), context_dim=2048, pooled_dim=1280)
SDXL_UNET_KEY_COUNT = 1680  # model.diffusion_model.* keys of SDXL base 1.0's single file
SDXL_UNET_PARAMETERS = 2_567_463_684
CLIP_G = dict(hidden=1280, layers=32, heads=20, intermediate=5120, vocab=49408, positions=77, projection=1280)
CLIP_L_SDXL = dict(hidden=768, layers=12, heads=12, intermediate=3072, vocab=49408, positions=77)
TIME_ID_DIM = 256  # SDXL's addition_time_embed_dim: each of the 6 size/crop numbers becomes 256 sinusoid features
HEAD_CHANNELS = 64  # SDXL: num_head_channels 64 at every level

TINY_CLIP_L_WIDTH = 32
TINY_CLIP_G_WIDTH = 32
TINY_SDXL_UNET = dict(model_channels=64, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(1,), depths=(2,),
                      context_dim=TINY_CLIP_L_WIDTH + TINY_CLIP_G_WIDTH, pooled_dim=TINY_CLIP_G_WIDTH)


def sdxl_unet_diffusers(*, model_channels: int, channel_mult: Sequence[int], num_res_blocks: int,
                        attention_levels: Sequence[int], depths: Sequence[int], context_dim: int, pooled_dim: int,
                        seed: int = 0, device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
    """A random diffusers UNet2DConditionModel in SDXL's layout (linear proj_in/out, 64-channel heads, text_time
    add-embedding). ``depths`` gives the transformer depth of each attention level, in order."""
    from diffusers import UNet2DConditionModel

    levels = range(len(channel_mult))
    channels = [model_channels * mult for mult in channel_mult]
    depth_of = dict(zip(attention_levels, depths))
    config = dict(
        sample_size=8, in_channels=4, out_channels=4,
        down_block_types=["CrossAttnDownBlock2D" if lv in attention_levels else "DownBlock2D" for lv in levels],
        up_block_types=["CrossAttnUpBlock2D" if lv in attention_levels else "UpBlock2D" for lv in reversed(levels)],
        block_out_channels=channels, layers_per_block=num_res_blocks, cross_attention_dim=context_dim,
        attention_head_dim=[max(1, c // HEAD_CHANNELS) for c in channels],
        transformer_layers_per_block=[depth_of.get(lv, 1) for lv in levels], use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=TIME_ID_DIM,
        projection_class_embeddings_input_dim=pooled_dim + 6 * TIME_ID_DIM,
    )
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**config)
    if torch.device(device).type != "meta":
        _perturb_norms(unet, torch.Generator().manual_seed(seed + 1))
    return unet.eval().to(dtype) if dtype is not None else unet.eval()


def sdxl_unet_ldm_state_dict(*, seed: int = 0, device: str | torch.device = "cpu",
                             dtype: torch.dtype = torch.float32, **spec) -> dict[str, torch.Tensor]:
    """An SDXL UNet under ldm names (``model.diffusion_model.`` removed); tiny unless ``spec`` says otherwise."""
    spec = {**TINY_SDXL_UNET, **spec}
    unet = sdxl_unet_diffusers(**spec, seed=seed, device=device)
    return unet_to_ldm_state_dict(unet, num_res_blocks=spec["num_res_blocks"],
                                  attention_levels=spec["attention_levels"], dtype=dtype)


def sdxl_unet_full_meta_state_dict(dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    return sdxl_unet_ldm_state_dict(**SDXL_UNET, device="meta", dtype=dtype)


# ----------------------------------------------------------------------------------------------------------- CLIP-G
def tiny_clip_g_model(*, hidden: int = TINY_CLIP_G_WIDTH, layers: int = 2, heads: int = 1,
                      intermediate: int | None = None, vocab: int | None = None, positions: int = 77,
                      projection: int | None = None, seed: int = 0, device: str | torch.device = "cpu"):
    """A random ``transformers.CLIPTextModelWithProjection`` as OpenCLIP's bigG text tower (GELU, eps 1e-5)."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from builders.sd1 import TINY_CLIP_VOCAB_SIZE

    vocab = vocab or TINY_CLIP_VOCAB_SIZE
    config = CLIPTextConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate or 4 * hidden,
                            num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=positions,
                            hidden_act="gelu", layer_norm_eps=1e-5, projection_dim=projection or hidden,
                            bos_token_id=vocab - 2, eos_token_id=vocab - 1, pad_token_id=0)
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed)
        model = CLIPTextModelWithProjection(config)
    if torch.device(device).type != "meta":
        _perturb_norms(model, torch.Generator().manual_seed(seed + 1))
    return model.eval()


_OPEN_CLIP_LAYER_PARTS = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "self_attn.out_proj": "attn.out_proj",
                          "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}


def open_clip_state_dict_of(model, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """A CLIPTextModelWithProjection's weights under OpenCLIP's names (as stored after ``embedders.1.model.``)."""
    hf = {(key if key.startswith(("text_model.", "text_projection")) else "text_model." + key): value
          for key, value in model.state_dict().items()}
    out = {"token_embedding.weight": hf["text_model.embeddings.token_embedding.weight"],
           "positional_embedding": hf["text_model.embeddings.position_embedding.weight"],
           "ln_final.weight": hf["text_model.final_layer_norm.weight"],
           "ln_final.bias": hf["text_model.final_layer_norm.bias"],
           "text_projection": hf["text_projection.weight"].T.contiguous(),
           "logit_scale": torch.tensor(4.6052, device=hf["text_projection.weight"].device)}
    for index in range(model.config.num_hidden_layers):
        hf_layer, block = f"text_model.encoder.layers.{index}.", f"transformer.resblocks.{index}."
        for hf_part, open_clip_part in _OPEN_CLIP_LAYER_PARTS.items():
            for kind in ("weight", "bias"):
                out[f"{block}{open_clip_part}.{kind}"] = hf[f"{hf_layer}{hf_part}.{kind}"]
        for kind, suffix in (("weight", "in_proj_weight"), ("bias", "in_proj_bias")):
            out[block + "attn." + suffix] = torch.cat([hf[f"{hf_layer}self_attn.{p}_proj.{kind}"]
                                                       for p in ("q", "k", "v")])
    return {key: value.to(dtype) if dtype is not None and value.is_floating_point() else value
            for key, value in out.items()}


def sdxl_conditioner_state_dict(*, seed: int = 0, clip_l: dict | None = None, clip_g: dict | None = None,
                                device: str | torch.device = "cpu",
                                dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Both SDXL text encoders under ``embedders.0.transformer.`` (CLIP-L, HF names) and ``embedders.1.model.``
    (bigG, OpenCLIP names), as after ``conditioner.`` of an SDXL single file; tiny unless specs are given."""
    clip_l = clip_l or dict(hidden=TINY_CLIP_L_WIDTH, heads=1)  # the loader's rule: hidden / 64 heads, at least 1
    clip_g = clip_g or {}
    sd = {"embedders.0.transformer." + key: value for key, value in
          clip_text_state_dict(**clip_l, seed=seed, device=device, dtype=dtype).items()}
    g_model = tiny_clip_g_model(**clip_g, seed=seed + 1, device=device)
    sd.update({"embedders.1.model." + key: value for key, value in open_clip_state_dict_of(g_model, dtype).items()})
    return sd


def sdxl_conditioner_full_meta_state_dict(dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    return sdxl_conditioner_state_dict(clip_l=CLIP_L_SDXL, clip_g=CLIP_G, device="meta", dtype=dtype)


__all__ = ["SDXL_UNET", "CLIP_G", "CLIP_L_SDXL", "TINY_SDXL_UNET", "sdxl_unet_ldm_state_dict",
           "sdxl_unet_full_meta_state_dict", "sdxl_conditioner_state_dict", "sdxl_conditioner_full_meta_state_dict",
           "tiny_clip_g_model", "open_clip_state_dict_of", "clip_text_state_dict_of", "tiny_clip_text_model"]
