"""TinyBreaker's Tiny Upscaler (docs/numerics.md "Tiny Upscaler", with its deliberate differences), host-independent:
the caller passes the VAE halves and the SD1 model as functions (``tiny_upscale``)."""

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
from .sampling.samplers import Denoiser, get_sampler
from .sampling.samplers_common import ProgressCallback
from .sampling.schedules import sd1_sigmas
from .sampling.stage import sample_stage
from .stage_params import StageParams

MIN_SCALE_BY, MAX_SCALE_BY = 1.0, 6.0  # exclusive, inclusive
EXTRA_NOISE_SEED_OFFSET = 100
VAE_TILE_PX, VAE_OVERLAP_PERCENT = 512, 100
PIXELS_PER_LATENT = 8

LatentFunction = Callable[[torch.Tensor], torch.Tensor]
ImageFunction = Callable[[torch.Tensor], torch.Tensor]  # images [B, 3, H, W] in [0, 1] → images in [0, 1]


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
            (top, bottom, left, right), (wt, wb, wl, wr) = tile.read, tile.write
            refined = refine_tile(canvas[..., top:bottom, left:right].clone(), step)
            canvas[..., wt:wb, wl:wr] = refined[..., wt - top:wb - top, wl - left:wr - left].to(
                device=canvas.device, dtype=canvas.dtype)
    return canvas


# ------------------------------------------------------------------------------------------------------- stages
def upscaled_size(width: int, height: int, scale_by: float) -> tuple[int, int]:
    """(width, height) = (round(W·k), round(H·k)), Python rounding as in the reference."""
    if isinstance(scale_by, bool) or not isinstance(scale_by, (int, float)) or not math.isfinite(scale_by) \
            or not MIN_SCALE_BY < scale_by <= MAX_SCALE_BY:
        raise ParameterError("upscale_by", f"got {scale_by!r}; expected a number above {MIN_SCALE_BY:g} and at "
                                           f"most {MAX_SCALE_BY:g}")
    return int(round(width * scale_by)), int(round(height * scale_by))


def resize_images(images: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Bilinear, align_corners=False, no antialiasing (the reference's interpolation)."""
    return F.interpolate(images.float(), size=(height, width), mode="bilinear", align_corners=False)


def add_extra_noise(raw_latent: torch.Tensor, amount: float, seed: int) -> torch.Tensor:
    """``raw + randn·amount`` with a CPU generator seeded ``seed + 100``, the same draw for every image
    (docs/numerics.md "Tiny Upscaler", step 3)."""
    if amount <= 0:
        return raw_latent
    noise = stage_noise((1,) + tuple(raw_latent.shape[1:]), seed + EXTRA_NOISE_SEED_OFFSET)
    return raw_latent + noise.to(raw_latent.device) * amount


def denoise_canvas(raw_latent: torch.Tensor, *, denoiser: Denoiser, sigmas: torch.Tensor, sampler: str, seed: int,
                   device: torch.device | str | None = None, geometry: TileGeometry = DEFAULT_GEOMETRY,
                   callback: ProgressCallback | None = None) -> torch.Tensor:
    """The cross-tiled refinement of a raw latent (each image on its own); returns a new raw latent on ``device``.
    Step 0's noise is drawn per tile from ``seed``, so equal-shaped tiles get the same pattern."""
    steps = len(sigmas) - 1
    device = torch.device(device) if device is not None else raw_latent.device
    result = raw_latent.detach().to(device=device, dtype=torch.float32).clone()
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
        x = sample_stage(denoiser, tile * SD1_SCALE, sigmas[step:step + 2], sampler=sampler, seeds=[seed],
                         sigma_max=sigma_max, add_noise=step == 0, callback=on_step)
        return x / SD1_SCALE

    with torch.no_grad():
        for index in range(result.shape[0]):
            run_sweeps(result[index:index + 1], steps, refine_tile, geometry)
    return result


def tiny_upscale(images: torch.Tensor, *, scale_by: float, encode_fn: LatentFunction, decode_fn: LatentFunction,
                 denoiser: Denoiser, stage: StageParams, device: torch.device | str | None = None,
                 geometry: TileGeometry = DEFAULT_GEOMETRY, callback: ProgressCallback | None = None,
                 stage_context: Callable[[str], ContextManager] | None = None, mode: str = "upscaler",
                 pre_upscale: ImageFunction | None = None) -> torch.Tensor:
    """Upscale images [B, 3, H, W] in [0, 1] to [B, 3, round(H·k), round(W·k)] (float32, CPU, [0, 1]); in the
    ``enhancer`` mode the result is scaled back to [B, 3, H, W] after the refine.
    ``encode_fn``: image tile in [0, 1] → RAW latent tile; ``decode_fn``: the reverse; ``denoiser(x, sigma[B])``:
    model-space x (= raw · SD1 scale) → denoised x0, CFG included (our embedded UNet, or a WebUI host's model).
    ``stage_context(name)`` wraps each phase, 'pre_upscale', 'encode', 'denoise', 'decode' (e.g. to place the module
    it needs on the device). ``callback(step, total, x, denoised)`` runs after every tile and may raise Cancelled.
    ``pre_upscale``: an upscale model (images → larger images, any factor) run first."""
    from .params import UPSCALE_MODES

    if mode not in UPSCALE_MODES:
        raise ParameterError("upscale_mode", f"got {mode!r}; expected one of {', '.join(UPSCALE_MODES)}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ParameterError("images", f"expected [B, 3, H, W] images, got shape {tuple(images.shape)}")
    original_height, original_width = images.shape[-2:]
    width, height = upscaled_size(original_width, original_height, scale_by)
    get_sampler(stage.sampler)  # an unsupported sampler fails before any work
    sigmas = stage.sigmas(sd1_sigmas())  # the default style's: 0.280 … 0.029, 4 steps, no final 0
    phase = stage_context or (lambda name: contextlib.nullcontext())
    with torch.no_grad():
        if pre_upscale is not None:
            with phase("pre_upscale"):
                enlarged = pre_upscale(images)
            if enlarged.ndim != 4 or enlarged.shape[:2] != images.shape[:2]:
                raise ParameterError("upscale_model", f"the upscale model gave shape {tuple(enlarged.shape)} for "
                                                      f"images of shape {tuple(images.shape)}")
            images = enlarged.float().clamp(0.0, 1.0)
        with phase("encode"):
            resized = resize_images(images, width, height)
            pad_w, pad_h = -width % PIXELS_PER_LATENT, -height % PIXELS_PER_LATENT  # whole latent pixels
            if pad_w or pad_h:
                resized = F.pad(resized, (0, pad_w, 0, pad_h), mode="replicate")
            latent = tiled_encode(encode_fn, resized, tile_px=VAE_TILE_PX, overlap_percent=VAE_OVERLAP_PERCENT)
        latent = add_extra_noise(latent, stage.extra_noise, stage.noise_seed)
        with phase("denoise"):
            latent = denoise_canvas(latent, denoiser=denoiser, sigmas=sigmas, sampler=stage.sampler,
                                    seed=stage.noise_seed, device=device, geometry=geometry, callback=callback)
        with phase("decode"):
            upscaled = tiled_decode(decode_fn, latent, tile_px=VAE_TILE_PX, overlap_percent=VAE_OVERLAP_PERCENT)
            upscaled = upscaled[..., :height, :width].clamp(0.0, 1.0).cpu()
    if mode == "enhancer":  # nearest-neighbour back to the original size, as ComfyUI-TinyBreaker v0.4 does
        return F.interpolate(upscaled, size=(original_height, original_width), mode="nearest")
    return upscaled


# ---------------------------------------------------------------------------------------- the checkpoint's VAE
_upscaler_vaes: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # cache: pipeline → TinyVAE


def upscaler_vae(pipeline):
    """The TAESD-SD1 encoder+decoder of a prototype1 checkpoint (``refiner.first_stage_model.*``), loaded once per
    pipeline; a clear error for the other TinyBreaker files, which have none."""
    from .files.classify import REFINER_FIRST_STAGE_PREFIX, FileKind
    from .models.taesd import load_tiny_vae

    kind = pipeline.checkpoint_info.kind
    if kind != FileKind.TINYBREAKER_PROTOTYPE1:
        problem = f"a {kind.value} has no upscaler VAE ({REFINER_FIRST_STAGE_PREFIX}*), so the Tiny Upscaler cannot run"
        raise ModelFileError(pipeline.checkpoint.path, problem,
                             "tinybreaker_prototype1 for upscaling, or turn the upscaler off")
    if pipeline not in _upscaler_vaes:
        _upscaler_vaes[pipeline] = load_tiny_vae(pipeline.checkpoint.prefixed(REFINER_FIRST_STAGE_PREFIX),
                                                 default_scale=SD1_SCALE, device="cpu", dtype=pipeline.dtype).eval()
    return _upscaler_vaes[pipeline]


def tiny_vae_encode_fn(vae) -> LatentFunction:
    """Image tile in [0, 1] → raw latent (TAESD gives model space of its own stored scale)."""
    return lambda images: vae.model_to_raw(vae.encode(images))


def tiny_vae_decode_fn(vae) -> LatentFunction:
    return lambda raw: vae.decode(vae.raw_to_model(raw))


def upscale_with_embedded_refiner(refiner, images: torch.Tensor, stage: StageParams, scale_by: float, *,
                                  placement=None, callback=None, geometry: TileGeometry = DEFAULT_GEOMETRY,
                                  mode: str = "upscaler", upscale_model=None) -> torch.Tensor:
    """The standalone upscaler: TAESD from the checkpoint, the embedded SD1 UNet + CLIP with the style's upscaler
    ``stage`` (its prompt and negative: the user's prompt is not used); images in [0, 1]. ``upscale_model``: an
    ``upscale_models.UpscaleModel`` run before the tile refine, or None."""
    from .placement import MovePlacement
    from .sampling.denoisers import CFGDenoiser, EpsDenoiser

    vae = upscaler_vae(refiner.pipeline)
    placement = placement or MovePlacement(refiner.pipeline.device)
    cond, uncond = refiner.encode(stage.prompt, placement), refiner.encode(stage.negative, placement)
    unet = refiner.unet
    denoiser = CFGDenoiser(EpsDenoiser(unet.eps, sd1_sigmas()), cond, uncond, stage.cfg)
    modules = {"encode": vae, "denoise": unet, "decode": vae}
    pre_upscale = None
    if upscale_model is not None:
        modules["pre_upscale"] = upscale_model.module
        pre_upscale = lambda batch: upscale_model.upscale(batch, placement.device)  # noqa: E731
    return tiny_upscale(images, scale_by=scale_by, encode_fn=tiny_vae_encode_fn(vae), decode_fn=tiny_vae_decode_fn(vae),
                        denoiser=denoiser, stage=stage, device=placement.device, geometry=geometry,
                        callback=callback, stage_context=lambda name: placement.use(modules[name]), mode=mode,
                        pre_upscale=pre_upscale)
