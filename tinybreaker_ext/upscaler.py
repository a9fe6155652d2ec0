"""TinyBreaker's Tiny Upscaler: (optional upscale model) → bilinear resize → tiled TAESD encode → extra noise on the
raw latent → one sampler step per full sweep of 128×128-latent tiles (in place, alternating direction) → tiled
decode → (``enhancer`` mode: nearest resize back to the original size) (docs/numerics.md "Tiny Upscaler").

Host-independent: the caller passes the VAE halves as functions on RAW latents and the SD1 model as a
``denoiser(x, sigma) -> x0`` with CFG included (our embedded UNet, or a WebUI host's model). Every image of a batch
is upscaled on its own with the same seeds, so image k of a batch equals a single image (the reference draws one
noise tensor over the whole batch instead; single images are identical).

Differences from the reference, on purpose: canvases smaller than one tile (which make the reference fail) use a
single tile the size of the canvas on that axis; target sizes that are not multiples of 8 pixels are encoded with
the right/bottom edge replicated to the next multiple of 8 and cropped back after decoding.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from dataclasses import dataclass
from typing import Callable, ContextManager

import torch
import torch.nn.functional as F

from .errors import ModelFileError, ParameterError
from .latent_formats import SD1_SCALE
from .models.tiled import tiled_decode, tiled_encode
from .sampling.noise import stage_noise
from .sampling.samplers import get_sampler
from .sampling.schedules import compute_sigmas, sd1_sigmas
from .sampling.stage import sample_stage
from .stage_params import StageParams

MIN_SCALE_BY, MAX_SCALE_BY = 1.0, 6.0  # exclusive, inclusive
EXTRA_NOISE_SEED_OFFSET = 100
VAE_TILE_PX, VAE_OVERLAP_PERCENT = 512, 100
PIXELS_PER_LATENT = 8

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LatentFunction = Callable[[torch.Tensor], torch.Tensor]
ImageFunction = Callable[[torch.Tensor], torch.Tensor]  # images [B, 3, H, W] in [0, 1] → images in [0, 1]
ProgressCallback = Callable[[int, int, torch.Tensor, torch.Tensor], None]


@dataclass(frozen=True)
class TileGeometry:
    """Sampling tiles in latent pixels: 128 (1024 px), overlap and extra context margin 1/8 of that each."""

    size: int = 128
    overlap: int = 16
    margin: int = 16

    def __post_init__(self):
        if self.size < 1 or not 0 <= self.overlap < self.size or self.margin < 0:
            raise ParameterError("tile geometry", f"size {self.size}, overlap {self.overlap}, margin {self.margin} "
                                                  "needs size ≥ 1, 0 ≤ overlap < size and margin ≥ 0")


DEFAULT_GEOMETRY = TileGeometry()
Box = tuple[int, int, int, int]  # top, bottom, left, right (ends exclusive), canvas coordinates


@dataclass(frozen=True)
class TilePlacement:
    read: Box  # what the sampler sees: the tile plus its context margin
    write: Box  # what of the result goes back onto the canvas

    @property
    def crop(self) -> Box:
        """The written part in the tile's own coordinates."""
        (rt, _, rl, _), (wt, wb, wl, wr) = self.read, self.write
        return wt - rt, wb - rt, wl - rl, wr - rl


# ------------------------------------------------------------------------------------------------------ geometry
def _axis_spans(length: int, geometry: TileGeometry, reverse: bool) -> list[tuple[int, int, int, int]]:
    """(read_start, read_end, write_start, write_end) per tile along one axis, in sweep order."""
    tile = min(geometry.size, length)
    step = geometry.size - geometry.overlap
    last = length - tile  # the last tile is snapped to the far edge
    spans = []
    if not reverse:  # margin after the tile; skip what the previous tile already wrote
        written_end = 0
        for start in (min(p, last) for p in range(0, last + step, step)):
            spans.append((start, start + tile + min(geometry.margin, last - start), max(start, written_end),
                          start + tile))
            written_end = start + tile
    else:  # margin before the tile; skip what the previous (later-in-canvas) tile already wrote
        written_start = length
        for start in (max(0, p) for p in range(last, -step, -step)):
            spans.append((start - min(geometry.margin, start), start + tile, start,
                          min(start + tile, written_start)))
            written_start = start
    return spans


def sweep_tiles(height: int, width: int, geometry: TileGeometry = DEFAULT_GEOMETRY, *,
                reverse: bool = False) -> list[TilePlacement]:
    """One sweep's tiles in processing order: row by row, top-left → bottom-right (or the reverse)."""
    if height < 1 or width < 1:
        raise ParameterError("image size", f"latent canvas {width}x{height} is empty")
    rows, cols = _axis_spans(height, geometry, reverse), _axis_spans(width, geometry, reverse)
    return [TilePlacement((rr0, rr1, cr0, cr1), (rw0, rw1, cw0, cw1))
            for rr0, rr1, rw0, rw1 in rows for cr0, cr1, cw0, cw1 in cols]


def run_sweeps(canvas: torch.Tensor, steps: int, refine_tile: Callable[[torch.Tensor, int], torch.Tensor],
               geometry: TileGeometry = DEFAULT_GEOMETRY) -> torch.Tensor:
    """In place: per step one full sweep (even steps forward, odd steps backward); ``refine_tile(tile, step)``
    returns the refined tile, whose uncropped part overwrites the canvas before the next tile is read."""
    height, width = canvas.shape[-2:]
    for step in range(steps):
        for tile in sweep_tiles(height, width, geometry, reverse=step % 2 == 1):
            top, bottom, left, right = tile.read
            refined = refine_tile(canvas[..., top:bottom, left:right].clone(), step)
            ct, cb, cl, cr = tile.crop
            wt, wb, wl, wr = tile.write
            canvas[..., wt:wb, wl:wr] = refined[..., ct:cb, cl:cr].to(device=canvas.device, dtype=canvas.dtype)
    return canvas


# ------------------------------------------------------------------------------------------------------- stages
def check_scale_by(scale_by) -> float:
    if isinstance(scale_by, bool) or not isinstance(scale_by, (int, float)) or not math.isfinite(scale_by) \
            or not MIN_SCALE_BY < scale_by <= MAX_SCALE_BY:
        raise ParameterError("upscale_by", f"got {scale_by!r}; expected a number above {MIN_SCALE_BY:g} and at "
                                           f"most {MAX_SCALE_BY:g}")
    return float(scale_by)


def upscaled_size(width: int, height: int, scale_by: float) -> tuple[int, int]:
    """(width, height) = (round(W·k), round(H·k)), Python rounding as in the reference."""
    scale_by = check_scale_by(scale_by)
    return int(round(width * scale_by)), int(round(height * scale_by))


def upscaler_sigmas(stage: StageParams) -> torch.Tensor:
    """The upscaler's step window on the SD1 schedule (default style: 0.280 … 0.029, 4 steps, no final 0)."""
    return compute_sigmas(sd1_sigmas(), sampler=stage.sampler, scheduler=stage.scheduler, steps=stage.steps,
                          steps_start=stage.steps_start, steps_end=stage.steps_end, steps_nfactor=stage.steps_nfactor)


def resize_images(images: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Bilinear, align_corners=False, no antialiasing (the reference's interpolation)."""
    return F.interpolate(images.float(), size=(height, width), mode="bilinear", align_corners=False)


def encode_resized(images: torch.Tensor, width: int, height: int, encode_fn: LatentFunction, *,
                   tile_px: int = VAE_TILE_PX) -> torch.Tensor:
    """Images [B, 3, h, w] in [0, 1] → raw latent of the images resized to ``width``×``height`` (padded up to
    whole latent pixels)."""
    resized = resize_images(images, width, height)
    pad_w, pad_h = -width % PIXELS_PER_LATENT, -height % PIXELS_PER_LATENT
    if pad_w or pad_h:
        resized = F.pad(resized, (0, pad_w, 0, pad_h), mode="replicate")
    return tiled_encode(encode_fn, resized, tile_px=tile_px, overlap_percent=VAE_OVERLAP_PERCENT)


def check_mode(mode: str) -> str:
    from .params import UPSCALE_MODES

    if mode not in UPSCALE_MODES:
        raise ParameterError("upscale_mode", f"got {mode!r}; expected one of {', '.join(UPSCALE_MODES)}")
    return mode


def pre_upscaled(images: torch.Tensor, pre_upscale: ImageFunction | None) -> torch.Tensor:
    """The upscale model's output (before the bilinear resize to the target size), checked to be images."""
    if pre_upscale is None:
        return images
    enlarged = pre_upscale(images)
    if enlarged.ndim != 4 or enlarged.shape[:2] != images.shape[:2]:
        raise ParameterError("upscale_model", f"the upscale model gave shape {tuple(enlarged.shape)} for images "
                                              f"of shape {tuple(images.shape)}")
    return enlarged.float().clamp(0.0, 1.0)


def scaled_back(images: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """The enhancer's last step: nearest-neighbour back to the original size, as ComfyUI-TinyBreaker v0.4 does."""
    return F.interpolate(images, size=(height, width), mode="nearest")


def add_extra_noise(raw_latent: torch.Tensor, amount: float, seed: int) -> torch.Tensor:
    """``raw + randn·amount`` with a CPU generator seeded ``seed + 100``, drawn per image
    (docs/numerics.md "Tiny Upscaler", step 3)."""
    if amount <= 0:
        return raw_latent
    noise = torch.cat([stage_noise((1,) + tuple(raw_latent.shape[1:]), seed + EXTRA_NOISE_SEED_OFFSET)
                       for _ in range(raw_latent.shape[0])])
    return raw_latent + noise.to(raw_latent.device) * amount


def denoise_canvas(raw_latent: torch.Tensor, *, denoiser: Denoiser, sigmas: torch.Tensor, sampler: str, seed: int,
                   latent_scale: float = SD1_SCALE, device: torch.device | str | None = None,
                   geometry: TileGeometry = DEFAULT_GEOMETRY, callback: ProgressCallback | None = None
                   ) -> torch.Tensor:
    """The cross-tiled refinement of a raw latent (each image on its own); returns a new raw latent on ``device``.

    Step i samples every tile with one step [σ_i, σ_{i+1}] of ``sampler``; only step 0 adds noise, drawn per tile
    from ``seed`` (equal-shaped tiles get the same pattern), as ``x = tile·scale + noise·σ0``.
    """
    get_sampler(sampler)  # an unknown sampler fails before any work
    steps = len(sigmas) - 1
    device = torch.device(device) if device is not None else raw_latent.device
    result = raw_latent.detach().to(device=device, dtype=torch.float32).clone()
    if steps < 1:
        return result
    sigmas = torch.as_tensor(sigmas, dtype=torch.float32).cpu()
    sigma_max = sd1_sigmas()[-1]
    height, width = result.shape[-2:]
    per_image = sum(len(sweep_tiles(height, width, geometry, reverse=step % 2 == 1)) for step in range(steps))
    total, done = per_image * result.shape[0], [0]

    def on_step(_step: int, _total: int, x: torch.Tensor, denoised: torch.Tensor) -> None:
        done[0] += 1
        if callback is not None:
            callback(done[0] - 1, total, x, denoised)

    def refine_tile(tile: torch.Tensor, step: int) -> torch.Tensor:
        x = sample_stage(denoiser, tile * latent_scale, sigmas[step:step + 2], sampler=sampler, seeds=[seed],
                         sigma_max=sigma_max, add_noise=step == 0, callback=on_step)
        return x / latent_scale

    with torch.no_grad():
        for index in range(result.shape[0]):
            run_sweeps(result[index:index + 1], steps, refine_tile, geometry)
    return result


def decode_upscaled(raw_latent: torch.Tensor, decode_fn: LatentFunction, width: int, height: int, *,
                    tile_px: int = VAE_TILE_PX) -> torch.Tensor:
    """Tiled decode, cropped to ``width``×``height`` and clamped: float32 images in [0, 1] on the CPU."""
    images = tiled_decode(decode_fn, raw_latent, tile_px=tile_px, overlap_percent=VAE_OVERLAP_PERCENT)
    return images[..., :height, :width].clamp(0.0, 1.0).cpu()


def tiny_upscale(images: torch.Tensor, *, scale_by: float, encode_fn: LatentFunction, decode_fn: LatentFunction,
                 denoiser: Denoiser, stage: StageParams, seed: int | None = None, extra_noise: float | None = None,
                 latent_scale: float = SD1_SCALE, device: torch.device | str | None = None,
                 geometry: TileGeometry = DEFAULT_GEOMETRY, callback: ProgressCallback | None = None,
                 stage_context: Callable[[str], ContextManager] | None = None, mode: str = "upscaler",
                 pre_upscale: ImageFunction | None = None) -> torch.Tensor:
    """Upscale images [B, 3, H, W] in [0, 1] to [B, 3, round(H·k), round(W·k)] (float32, CPU, [0, 1]); in the
    ``enhancer`` mode the result is scaled back to [B, 3, H, W] after the refine.

    ``encode_fn``: image tile in [0, 1] → RAW latent tile; ``decode_fn``: RAW latent tile → image tile in [0, 1];
    ``denoiser(x, sigma[B])``: model-space x (= raw · ``latent_scale``) → denoised x0, CFG included.
    ``seed``/``extra_noise`` default to the stage's ``noise_seed``/``extra_noise``. ``stage_context(name)``, for
    name in 'pre_upscale', 'encode', 'denoise', 'decode', wraps each phase (e.g. to place the module it needs on
    the device). ``callback(step, total, x, denoised)`` runs after every tile (x, denoised: that tile); it may raise
    Cancelled. ``pre_upscale``: an upscale model (images → larger images, any factor) run first; its output is
    resized to the target size as the images themselves would be.
    """
    scale_by = check_scale_by(scale_by)
    mode = check_mode(mode)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ParameterError("images", f"expected [B, 3, H, W] images, got shape {tuple(images.shape)}")
    get_sampler(stage.sampler)  # an unsupported sampler fails before any work
    sigmas = upscaler_sigmas(stage)
    seed = int(stage.noise_seed if seed is None else seed)
    extra_noise = float(stage.extra_noise if extra_noise is None else extra_noise)
    original_height, original_width = images.shape[-2:]
    width, height = upscaled_size(original_width, original_height, scale_by)
    phase = stage_context or (lambda name: contextlib.nullcontext())
    with torch.no_grad():
        if pre_upscale is not None:
            with phase("pre_upscale"):
                images = pre_upscaled(images, pre_upscale)
        with phase("encode"):
            latent = encode_resized(images, width, height, encode_fn)
        latent = add_extra_noise(latent, extra_noise, seed)
        with phase("denoise"):
            latent = denoise_canvas(latent, denoiser=denoiser, sigmas=sigmas, sampler=stage.sampler, seed=seed,
                                    latent_scale=latent_scale, device=device, geometry=geometry, callback=callback)
        with phase("decode"):
            upscaled = decode_upscaled(latent, decode_fn, width, height)
    return scaled_back(upscaled, original_width, original_height) if mode == "enhancer" else upscaled


# ---------------------------------------------------------------------------------------- the checkpoint's VAE
_upscaler_vaes: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # cache: pipeline → TinyVAE


def upscaler_vae(pipeline):
    """The TAESD-SD1 encoder+decoder of a prototype1 checkpoint (``refiner.first_stage_model.*``), loaded once per
    pipeline; a clear error for prototype0 and plain PixArt files, which have none."""
    from .files.classify import REFINER_FIRST_STAGE_PREFIX, FileKind
    from .models.taesd import load_tiny_vae

    kind = pipeline.checkpoint_info.kind
    if kind != FileKind.TINYBREAKER_PROTOTYPE1:
        what = "TinyBreaker prototype0" if kind == FileKind.TINYBREAKER_PROTOTYPE0 else "a plain PixArt-Sigma file"
        raise ModelFileError(pipeline.checkpoint.path, f"{what} has no upscaler VAE ({REFINER_FIRST_STAGE_PREFIX}*),"
                                                        " so the Tiny Upscaler cannot run",
                             "tinybreaker_prototype1 for upscaling, or turn the upscaler off")
    vae = _upscaler_vaes.get(pipeline)
    if vae is None:
        vae = load_tiny_vae(pipeline.checkpoint.prefixed(REFINER_FIRST_STAGE_PREFIX), default_scale=SD1_SCALE,
                            device="cpu", dtype=pipeline.dtype).eval()
        _upscaler_vaes[pipeline] = vae
    return vae


def tiny_vae_encode_fn(vae) -> LatentFunction:
    """Image tile in [0, 1] → raw latent (TAESD gives model space of its own stored scale)."""
    return lambda images: vae.model_to_raw(vae.encode(images))


def tiny_vae_decode_fn(vae) -> LatentFunction:
    return lambda raw: vae.decode(vae.raw_to_model(raw))


def upscale_with_embedded_refiner(refiner, images: torch.Tensor, stage: StageParams, scale_by: float, *,
                                  placement=None, callback=None, decoder: str = "fast",
                                  geometry: TileGeometry = DEFAULT_GEOMETRY, mode: str = "upscaler",
                                  upscale_model=None) -> torch.Tensor:
    """The standalone upscaler: TAESD from the checkpoint, the embedded SD1 UNet + CLIP with the style's upscaler
    ``stage`` (its prompt and negative: the user's prompt is not used); images in [0, 1]. ``upscale_model``: an
    ``upscale_models.UpscaleModel`` run before the tile refine, or None."""
    from .placement import MovePlacement
    from .sampling.denoisers import CFGDenoiser, EpsDenoiser
    from .standalone import DECODERS

    if decoder not in DECODERS:
        raise ParameterError("decoder", f"got {decoder!r}; expected one of {', '.join(DECODERS)}")
    scale_by = check_scale_by(scale_by)
    vae = upscaler_vae(refiner.pipeline)
    placement = placement or MovePlacement(refiner.pipeline.device)
    cond, uncond = refiner.encode(stage.prompt, placement), refiner.encode(stage.negative, placement)
    unet = refiner.unet
    denoiser = CFGDenoiser(EpsDenoiser(unet.eps, sd1_sigmas()), cond, uncond, stage.cfg)
    if decoder == "fast":
        decode_module, decode_fn = vae, tiny_vae_decode_fn(vae)
    else:
        decode_module = refiner.decoder("high_quality")
        decode_fn = lambda raw: decode_module.decode(raw, scale=1.0)  # noqa: E731 (raw latent: no scaling)
    modules = {"encode": vae, "denoise": unet, "decode": decode_module}
    pre_upscale = None
    if upscale_model is not None:
        modules["pre_upscale"] = upscale_model.module
        pre_upscale = lambda batch: upscale_model.upscale(batch, placement.device)  # noqa: E731
    return tiny_upscale(images, scale_by=scale_by, encode_fn=tiny_vae_encode_fn(vae), decode_fn=decode_fn,
                        denoiser=denoiser, stage=stage, device=placement.device, geometry=geometry,
                        callback=callback, stage_context=lambda name: placement.use(modules[name]), mode=mode,
                        pre_upscale=pre_upscale)


__all__ = ["DEFAULT_GEOMETRY", "TileGeometry", "TilePlacement", "add_extra_noise", "check_mode", "check_scale_by",
           "decode_upscaled", "denoise_canvas", "encode_resized", "pre_upscaled", "resize_images", "run_sweeps",
           "scaled_back", "sweep_tiles",
           "tiny_upscale", "tiny_vae_decode_fn", "tiny_vae_encode_fn", "upscale_with_embedded_refiner",
           "upscaled_size", "upscaler_sigmas", "upscaler_vae"]
