"""The stages that finish an image without a WebUI: refine with the refiner embedded in the TinyBreaker checkpoint
(SD1 UNet + CLIP-L, or SDXL UNet + CLIP-L + CLIP-G), then decode with its VAE decoder. Used by the command line and
the benchmarks. Needs diffusers for the UNet and the KL decoder (the WebUI path does not)."""

from __future__ import annotations

from functools import cached_property

import torch

from .files.classify import (FIRST_STAGE_HQ_PREFIX, FIRST_STAGE_PREFIX, REFINER_CLIP_PREFIX,
                             REFINER_FIRST_STAGE_PREFIX, REFINER_UNET_PREFIX, FileKind)
from .latent_formats import SD1_SCALE, SDXL_SCALE
from .models.clip_text import encode_clip_prompt, load_clip_text
from .models.clip_tokenizer import find_clip_tokenizer, load_clip_tokenizer
from .models.kl_decoder import load_kl_decoder
from .errors import ModelFileError
from .models.sd1_refiner import SD1Refiner
from .models.sdxl_refiner import SDXLRefiner, encode_sdxl_prompt, load_sdxl_text_encoders
from .models.taesd import load_tiny_vae
from .models.tiled import tiled_decode
from .pipeline import TinyBreakerPipeline, encode_per_image
from .placement import ModulePlacement, MovePlacement
from .sampling.denoisers import CFGDenoiser, EpsDenoiser
from .sampling.schedules import sd1_sigmas
from .sampling.stage import sample_stage
from .stage_params import StageParams
from .text_encoding import PromptEmbeddingCache

DECODERS = ("high_quality", "fast")


class EmbeddedRefiner:
    """Refine and decode stages of a TinyBreaker checkpoint (prototype0, prototype1, or one with an SDXL refiner,
    which refines PixArt's latent as it is and decodes with its SDXL KL decoder)."""

    def __init__(self, pipeline: TinyBreakerPipeline, *, clip_tokenizer_path: str | None = None,
                 tokenizer_search: dict | None = None):
        self.pipeline = pipeline
        self.clip_tokenizer_path = clip_tokenizer_path
        self.tokenizer_search = dict(tokenizer_search or {})
        self._decoders: dict[str, torch.nn.Module] = {}
        self.embedding_cache = PromptEmbeddingCache(max_entries=16)

    @property
    def family(self) -> str:
        """"sd1" or "sdxl": the embedded refiner's family, which is also the latent space it refines."""
        return self.pipeline.checkpoint_info.refiner_family

    @cached_property
    def unet(self) -> SD1Refiner:
        refiner_class = SDXLRefiner if self.family == "sdxl" else SD1Refiner
        return refiner_class.from_state_dict(self.pipeline.checkpoint.prefixed(REFINER_UNET_PREFIX), device="cpu",
                                             dtype=self.pipeline.dtype).eval()

    @cached_property
    def text_encoder(self):
        """(text model(s), tokenizer): CLIP-L for SD1, the (CLIP-L, CLIP-G) pair for SDXL."""
        tokenizer = load_clip_tokenizer(find_clip_tokenizer(self.clip_tokenizer_path, **self.tokenizer_search))
        weights = self.pipeline.checkpoint.prefixed(REFINER_CLIP_PREFIX)
        if self.family == "sdxl":
            models = load_sdxl_text_encoders(weights, device="cpu", dtype=torch.float32)
            return tuple(model.eval() for model in models), tokenizer
        return load_clip_text(weights, device="cpu", dtype=torch.float32).eval(), tokenizer

    def encode(self, text: str, placement: ModulePlacement) -> torch.Tensor:
        def compute():
            models, tokenizer = self.text_encoder
            if self.family == "sdxl":
                with placement.use(models[0]) as clip_l, placement.use(models[1]) as clip_g:
                    return encode_sdxl_prompt(clip_l, clip_g, tokenizer, text).float().cpu()
            with placement.use(models) as clip:
                return encode_clip_prompt(clip, tokenizer, text).float().cpu()

        return self.embedding_cache.get_or_compute(text, compute)

    def refine(self, latent: torch.Tensor, texts: list[str], negative_texts: list[str], stage: StageParams,
               sigmas: torch.Tensor, *, seeds: list[int], placement: ModulePlacement | None = None,
               callback=None) -> torch.Tensor:
        """Model-space latent of the refiner's family in and out, the whole batch at once over the plan's
        ``sigmas`` (SD1's table, which is SDXL's too); an empty window (detail level 'none') returns it unchanged."""
        if len(sigmas) < 2:
            return latent
        placement = placement or MovePlacement(self.pipeline.device)
        # per image, any lengths: CFGDenoiser batches them
        cond, uncond = encode_per_image(lambda text: self.encode(text, placement), texts, negative_texts,
                                        latent.shape[0])
        with placement.use(self.unet) as unet:
            denoiser = CFGDenoiser(EpsDenoiser(unet.eps, sd1_sigmas()), cond, uncond, stage.cfg)
            return sample_stage(denoiser, latent.to(placement.device), sigmas, sampler=stage.sampler, seeds=seeds,
                                sigma_max=sd1_sigmas()[-1], callback=callback).cpu()

    def decoder(self, quality: str = "high_quality") -> torch.nn.Module:
        """The refiner family's decoder, as the file stores it: full KL ('high_quality') or TAESD ('fast', SD1 only)."""
        if quality not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}")
        if quality not in self._decoders:
            checkpoint = self.pipeline.checkpoint
            prototype0 = self.pipeline.checkpoint_info.kind == FileKind.TINYBREAKER_PROTOTYPE0
            if self.family == "sdxl" and quality != "high_quality":
                raise ModelFileError(checkpoint.path, "has an SDXL refiner and no TAESD decoder",
                                     "the 'high_quality' decoder for this file (leave --decoder at its default)")
            if quality == "high_quality":
                weights = checkpoint.prefixed(FIRST_STAGE_HQ_PREFIX if prototype0 else FIRST_STAGE_PREFIX)
                decoder = load_kl_decoder(weights, device="cpu", dtype=self.pipeline.dtype,
                                          scale=SDXL_SCALE if self.family == "sdxl" else SD1_SCALE)
            else:
                weights = checkpoint.prefixed(FIRST_STAGE_PREFIX if prototype0 else REFINER_FIRST_STAGE_PREFIX)
                # prototype0's first_stage_model also holds the TAESDXL encoder: keep only the decoder
                decoder = load_tiny_vae({key: weights[key] for key in weights if key.startswith("decoder.")},
                                        default_scale=SD1_SCALE, device="cpu", dtype=self.pipeline.dtype)
            self._decoders[quality] = decoder.eval()
        return self._decoders[quality]

    def decode(self, latent: torch.Tensor, *, quality: str = "high_quality",
               placement: ModulePlacement | None = None) -> torch.Tensor:
        """Images ``[B, 3, 8h, 8w]`` in [0, 1] (float32, CPU), decoded in 512-px tiles like the reference."""
        placement = placement or MovePlacement(self.pipeline.device)
        with placement.use(self.decoder(quality)) as decoder, torch.no_grad():
            return tiled_decode(decoder.decode, latent.to(placement.device)).clamp(0, 1).cpu()

