"""The refiner parts read lazily from a tiny fp16 file laid out like the TinyBreaker checkpoint
(docs/model-files.md "TinyBreaker checkpoints")."""

from __future__ import annotations

import pytest
import torch

from builders.common import prefixed, save_safetensors
from builders.sd1 import clip_text_state_dict_of, kl_decoder_state_dict, sd1_unet_ldm_state_dict
from tinybreaker_ext.files.safetensors_file import SafetensorsFile
from tinybreaker_ext.models.clip_text import load_clip_text
from tinybreaker_ext.models.kl_decoder import load_kl_decoder
from tinybreaker_ext.models.sd1_refiner import SD1Refiner

pytest.importorskip("diffusers")


@pytest.mark.parametrize("decoder_prefix", ["first_stage_model.", "first_stage_hqmodel."], ids=["p1", "p0"])
def test_unet_clip_and_kl_decoder_load_from_their_prefixes_in_an_fp16_file(tmp_path, tiny_clip_model,
                                                                           decoder_prefix):
    unet = sd1_unet_ldm_state_dict(seed=1, dtype=torch.float16)
    clip = clip_text_state_dict_of(tiny_clip_model, dtype=torch.float16)
    decoder = kl_decoder_state_dict(seed=2, dtype=torch.float16)
    tensors = {**prefixed(unet, "refiner.diffusion_model."), **prefixed(clip, "refiner.conditioner."),
               **prefixed(decoder, decoder_prefix)}
    path = save_safetensors(tensors, tmp_path / "tinybreaker_tiny.safetensors")

    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    context = torch.randn(1, 77, 32, generator=torch.Generator().manual_seed(1))
    ids = torch.randint(0, 500, (1, 77), generator=torch.Generator().manual_seed(2))
    with SafetensorsFile(path) as file:
        refiner = SD1Refiner.from_state_dict(file.prefixed("refiner.diffusion_model."), device="cpu",
                                             dtype=torch.float32)
        text = load_clip_text(file.prefixed("refiner.conditioner."), device="cpu", dtype=torch.float32,
                              num_heads=2)
        kl = load_kl_decoder(file.prefixed(decoder_prefix), device="cpu", dtype=torch.float32)

    # Same results as from the in-memory fp16 tensors (the file view changes nothing).
    direct = SD1Refiner.from_state_dict(unet, device="cpu", dtype=torch.float32)
    t = torch.tensor([500.0])
    torch.testing.assert_close(refiner.eps(x, t, context), direct.eps(x, t, context))
    with torch.no_grad():
        torch.testing.assert_close(text(input_ids=ids)[0],
                                   load_clip_text(clip, device="cpu", dtype=torch.float32, num_heads=2)(ids)[0])
    latent = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(kl.decode(latent),
                               load_kl_decoder(decoder, device="cpu", dtype=torch.float32).decode(latent))
    assert refiner.dtype == torch.float32 and next(text.parameters()).dtype == torch.float32
