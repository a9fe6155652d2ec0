"""TinyBreaker's stages encode (T5) → base (PixArt-Sigma) → transcode (docs/design.md "Data flow", steps 4 to 6).
Each is callable alone, takes a ``placement`` deciding where modules live while it runs, reports progress through
``callback(step, total, x, denoised)`` (which may raise ``Cancelled`` between steps), on model-space latents."""

from __future__ import annotations

import os
import threading
from functools import cached_property

import torch

from .errors import ModelFileError, ParameterError
from .files.classify import BASE_PREFIX, CHECKPOINT_KINDS, TRANSCODER_PREFIX, FileKind, open_model_file
from .models.pixart import compile_pixart, load_pixart
from .models.t5_encoder import choose_mode, load_t5_encoder
from .models.t5_tokenizer import DEFAULT_MIN_LENGTH, T5PromptTokenizer, find_t5_tokenizer
from .models.taesd import load_transcoder
from .placement import ModulePlacement, MovePlacement
from .sampling.denoisers import CFGDenoiser, EpsDenoiser
from .sampling.schedules import pixart_sigmas
from .sampling.stage import sample_stage
from .stage_params import StageParams
from .text_encoding import PromptEmbeddingCache, cache_key, encode_t5_prompt


class TinyBreakerPipeline:
    def __init__(self, checkpoint_path: str, t5_path: str, *, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, tokenizer_path: str | None = None,
                 tokenizer_search: dict | None = None, compile: bool = False):
        self.device = torch.device(device)
        self.compile = compile  # torch.compile PixArt's blocks (off by default: the first forward per size is slow)
        self.dtype = dtype
        self.checkpoint, self.checkpoint_info = open_model_file(checkpoint_path, CHECKPOINT_KINDS)
        self.t5_path = t5_path
        self.tokenizer_path = tokenizer_path
        self.tokenizer_search = dict(tokenizer_search or {})
        self.prompt_cache = PromptEmbeddingCache(max_entries=32)
        self.last_denoised: torch.Tensor | None = None
        self._t5 = None
        self._base_cache: tuple[tuple, torch.Tensor] | None = None
        self._lock = threading.Lock()

    # --- models, loaded on first use and kept in RAM --------------------------------------------------------------
    @cached_property
    def pixart(self):
        pixart = load_pixart(self.checkpoint.prefixed(BASE_PREFIX), device="cpu", dtype=self.dtype).eval()
        if self.compile:
            compile_pixart(pixart, self.device)
        return pixart

    @property
    def has_transcoder(self) -> bool:
        """False for a file with an SDXL refiner: it refines PixArt's latent as it is and stores no transcoder."""
        return len(self.checkpoint.prefixed(TRANSCODER_PREFIX)) > 0

    @cached_property
    def transcoder(self):
        if not self.has_transcoder:
            raise ModelFileError(self.checkpoint.path, f"is a {self.checkpoint_info.description} without a "
                                                       f"transcoder ({TRANSCODER_PREFIX}*)",
                                 "an SD1 TinyBreaker file (prototype0/1) to refine with an SD1 model")
        return load_transcoder(self.checkpoint.prefixed(TRANSCODER_PREFIX), device="cpu", dtype=self.dtype).eval()

    @cached_property
    def tokenizer(self) -> T5PromptTokenizer:
        return T5PromptTokenizer.from_dir(find_t5_tokenizer(self.tokenizer_path, **self.tokenizer_search))

    def t5(self, mode: str, placement: ModulePlacement | None = None):
        """The T5 encoder (a .safetensors or GGUF file) in placement ``mode``, computing in bfloat16 where the device
        runs it natively, else float32; loaded again only when the mode or that dtype changes."""
        from .models.t5_policy import resolve_compute_dtype

        if mode == "auto" and self.device.type == "cuda" and getattr(placement, "policy", "offload") != "gpu":
            # A resident 4.9 GB T5 would sit next to the host's UNet with no manager to evict it; stream instead.
            mode = "stream"
        mode = choose_mode(mode, self.device, os.path.getsize(self.t5_path))
        compute_dtype = resolve_compute_dtype(None, self.device)
        if self._t5 is None or (self._t5.mode, self._t5.compute_dtype) != (mode, compute_dtype):
            self._t5 = None  # release the previous placement's weights before loading the new ones
            file, _info = open_model_file(self.t5_path, FileKind.T5_ENCODER)
            with file:  # tensors already read stay valid once the handle is closed
                self._t5 = load_t5_encoder(file, mode=mode, device=self.device, compute_dtype=compute_dtype)
        return self._t5

    # --- stages -------------------------------------------------------------------------------------------------
    def encode(self, text: str, *, placement: ModulePlacement | None = None, t5_mode: str = "auto") -> torch.Tensor:
        """``[1, L, 4096]`` float32 on the CPU; cached, so an unchanged prompt never runs T5 again."""
        encoder = self.t5(t5_mode, placement)
        key = cache_key(encoder, self.tokenizer, text, DEFAULT_MIN_LENGTH)
        if placement is not None and key not in self.prompt_cache:
            placement.make_room(encoder.device_bytes())
        return encode_t5_prompt(encoder, self.tokenizer, text, cache=self.prompt_cache).cpu()

    def base(self, texts: list[str], negative_texts: list[str], stage: StageParams, sigmas: torch.Tensor, *,
             width: int, height: int, seeds: list[int], placement: ModulePlacement | None = None,
             t5_mode: str = "auto", callback=None) -> torch.Tensor:
        """SDXL model-space latents ``[len(seeds), 4, height/8, width/8]`` over the plan's ``sigmas`` (docs/design.md
        "Data flow", step 5). Image k equals a single image made with seed k: captions are zero-padded and masked."""
        for name, value in (("width", width), ("height", height)):
            if value < 16 or value % 16:
                raise ParameterError(name, f"{value} must be a positive multiple of 16 (PixArt works on 2×2 latent "
                                           "patches)")
        placement = placement or MovePlacement(self.device)
        key = (tuple(texts), tuple(negative_texts), stage.sampler, stage.cfg, tuple(sigmas.tolist()), width, height,
               tuple(seeds), str(self.device), str(self.dtype), str(self.t5_path))
        with self._lock:
            if self._base_cache is not None and self._base_cache[0] == key:
                return self._base_cache[1].clone()
        self.last_denoised = None
        conds, unconds = encode_per_image(lambda text: self.encode(text, placement=placement, t5_mode=t5_mode),
                                          texts, negative_texts, len(seeds))

        def on_step(step: int, total: int, x: torch.Tensor, denoised: torch.Tensor) -> None:
            self.last_denoised = denoised  # still on the device: copied only if Interrupt needs it
            if callback is not None:
                callback(step, total, x, denoised)

        shape = (len(seeds), 4, height // 8, width // 8)
        with placement.use(self.pixart) as pixart:
            denoiser = CFGDenoiser(EpsDenoiser(pixart.eps, pixart_sigmas()), conds, unconds, stage.cfg,
                                   accepts_context_mask=True, prepare_context=pixart.prepare_caption)
            latent = sample_stage(denoiser, torch.zeros(shape, device=placement.device), sigmas,
                                  sampler=stage.sampler, seeds=seeds, sigma_max=pixart_sigmas()[-1],
                                  callback=on_step).cpu()
        with self._lock:
            self._base_cache = (key, latent.clone())
        return latent

    def transcode(self, latent: torch.Tensor, *, placement: ModulePlacement | None = None) -> torch.Tensor:
        """SDXL model-space → SD1 model-space latent (float32, CPU)."""
        placement = placement or MovePlacement(self.device)
        with placement.use(self.transcoder) as transcoder, torch.no_grad():
            return transcoder(latent.to(placement.device)).float().cpu()

    def preview_image(self, denoised: torch.Tensor):
        """A PIL image of a base-stage estimate through the TAESDXL decoder (first image of the batch)."""
        from .image_files import pil_images

        decoder = self.transcoder.transd
        with torch.no_grad():
            weight = decoder[1].weight
            image = decoder(denoised[:1].to(device=weight.device, dtype=weight.dtype)).float()
        return pil_images(image)[0]


def encode_per_image(encode, texts: list[str], negative_texts: list[str], count: int):
    """(conds, unconds): each image's encoded prompt and negative; one text serves every image."""
    encoded = []
    for name, given in (("prompt", texts), ("negative", negative_texts)):
        if len(given) not in (1, count):
            raise ParameterError(name, f"got {len(given)} texts for {count} images")
        encoded.append([encode(text) for text in (list(given) * count if len(given) == 1 else given)])
    return encoded


_pipelines: dict[tuple, TinyBreakerPipeline] = {}


def get_pipeline(checkpoint_path: str, t5_path: str, *, device, dtype, **options) -> TinyBreakerPipeline:
    """The cached pipeline for these files; a different file set replaces it (one set of models in RAM)."""
    key = (checkpoint_path, t5_path, str(device), str(dtype), tuple(sorted((k, repr(v)) for k, v in options.items())))
    if key not in _pipelines:
        _pipelines.clear()
        _pipelines[key] = TinyBreakerPipeline(checkpoint_path, t5_path, device=device, dtype=dtype, **options)
    return _pipelines[key]


def release_pipelines() -> None:
    _pipelines.clear()


def held_bytes() -> tuple[int, int]:
    """(RAM, device bytes) of the cached pipeline's T5 weights and of its PixArt/transcoder in RAM: what the next
    job reuses, or frees when it replaces the pipeline. The memory preflight counts it as free. PixArt and the
    transcoder on a device are left out: a host's memory manager already counts them as its own loaded models."""
    ram = device = 0
    for pipeline in _pipelines.values():
        tensors = [] if pipeline._t5 is None else list(pipeline._t5.stored_tensors().values())
        for module in (pipeline.__dict__.get("pixart"), pipeline.__dict__.get("transcoder")):  # loaded ones only
            if module is not None:
                tensors += [t for t in list(module.parameters()) + list(module.buffers()) if t.device.type == "cpu"]
        for tensor in tensors:  # torch tensors and QuantizedTensors: nbytes is what each holds
            if tensor.device.type == "cpu":
                ram += tensor.nbytes
            else:
                device += tensor.nbytes
    return ram, device
