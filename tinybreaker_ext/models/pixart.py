"""PixArt-Sigma transformer with native parameter names, configured from tensor shapes. Hand-written because
diffusers is absent on A1111 and its embeddings round differently (docs/numerics.md "PixArt-Sigma forward")."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelFileError, ParameterError
from ..files.state_dict import shape_of, source_name
from .pixart_keys import IGNORED_KEYS, detect_pixart_layout, full_key_name, pixart_block_count, source_keys

logger = logging.getLogger(__name__)

HEAD_DIM = 72  # PixArt-Sigma XL: 16 heads × 72; the head count is not stored in the file
LAYER_NORM_EPS = 1e-6
_POS_CACHE_SIZE = 4
MAX_PERIOD = 10000


# Sinusoids with the reference's float precision, not diffusers' (docs/numerics.md "Timestep and position embeddings")
def timestep_sinusoid(timesteps: torch.Tensor, dim: int = 256) -> torch.Tensor:
    """[B] timesteps -> [B, dim] float32 ``[cos(t·f_i), sin(t·f_i)]`` on the timesteps' device."""
    if dim % 2:
        raise ValueError(f"timestep embedding size must be even, got {dim}")
    half = dim // 2
    exponents = torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    frequencies = 1.0 / (MAX_PERIOD ** exponents)
    angles = timesteps.reshape(-1).to(torch.float32)[:, None] * frequencies[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def sincos_1d(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """[M] positions -> [M, dim] float64 ``[sin(p·ω_k), cos(p·ω_k)]`` with ``ω_k = 1 / 10000^(k/(dim/2))``."""
    half = dim // 2
    omega = 1.0 / (MAX_PERIOD ** (torch.arange(half, dtype=torch.float64) / half))
    angles = positions.reshape(-1).to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


def pixart_position_embedding(height: int, width: int, dim: int, base_size: int,
                              pe_interpolation: float) -> torch.Tensor:
    """[height·width, dim] float64 2-D sin-cos embedding of a token grid, row-major, ``[E(x), E(y)]``; positions
    span ``[0, base_size/pe_interpolation)`` on each axis whatever its length, computed in float32."""
    if dim % 4:
        raise ValueError(f"position embedding size must be a multiple of 4, got {dim}")
    grid_y = torch.arange(height, dtype=torch.float32) / (height / base_size) / pe_interpolation
    grid_x = torch.arange(width, dtype=torch.float32) / (width / base_size) / pe_interpolation
    pos_y, pos_x = torch.meshgrid(grid_y, grid_x, indexing="ij")  # [height, width] each
    return torch.cat([sincos_1d(pos_x, dim // 2), sincos_1d(pos_y, dim // 2)], dim=1)


@dataclass(frozen=True)
class PixArtConfig:
    hidden_size: int = 1152
    depth: int = 28
    num_heads: int = 16
    patch_size: int = 2
    in_channels: int = 4
    out_channels: int = 8
    caption_dim: int = 4096
    mlp_hidden: int = 4608
    timestep_dim: int = 256
    resolution: int = 1024

    @property
    def base_size(self) -> int:
        """Token-grid side the model was trained on (64 for the 1024 model)."""
        return self.resolution // 8 // self.patch_size

    @property
    def pe_interpolation(self) -> float:
        """Position-embedding scale (2.0 for the 1024 model)."""
        return self.resolution / 512

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> "PixArtConfig":
        """From a complete state dict's shapes, either layout (docs/model-files.md "Configs from tensor shapes")."""
        layout = detect_pixart_layout(state_dict)

        def shape(native_key: str) -> tuple[int, ...]:
            return shape_of(state_dict, source_keys(native_key, layout)[0])

        hidden, in_channels, patch, _ = shape("x_embedder.proj.weight")
        return cls(
            hidden_size=hidden,
            depth=pixart_block_count(state_dict, layout),
            num_heads=hidden // HEAD_DIM if hidden % HEAD_DIM == 0 else 1,  # 1: tiny test models
            patch_size=patch,
            in_channels=in_channels,
            out_channels=shape("final_layer.linear.weight")[0] // (patch * patch),
            caption_dim=shape("y_embedder.y_proj.fc1.weight")[1],
            mlp_hidden=shape("blocks.0.mlp.fc1.weight")[0],
            timestep_dim=shape("t_embedder.mlp.0.weight")[1],
        )


def _layer_norm(x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), eps=LAYER_NORM_EPS)


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


def _split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """[B, N, H·D] -> [B, H, N, D]"""
    batch, length, width = x.shape
    return x.view(batch, length, num_heads, width // num_heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    batch, heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * head_dim)


class Mlp(nn.Module):
    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (_split_heads(part, self.num_heads) for part in self.qkv(x).chunk(3, dim=-1))
        return self.proj(_merge_heads(F.scaled_dot_product_attention(q, k, v)))


class CrossAttention(nn.Module):
    """Image tokens attend to the caption tokens; ``key_mask`` lets captions of different lengths share one batch
    (docs/numerics.md "Caption length and masking")."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q_linear = nn.Linear(dim, dim)
        self.kv_linear = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def keys_values(self, caption: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """[B, L, D] caption tokens -> keys and values [B, H, L, D/H]: the same at every sampling step."""
        return tuple(_split_heads(part, self.num_heads) for part in self.kv_linear(caption).chunk(2, dim=-1))

    def forward(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        q = _split_heads(self.q_linear(x), self.num_heads)
        return self.proj(_merge_heads(F.scaled_dot_product_attention(q, keys, values, attn_mask=key_mask)))


class PixArtBlock(nn.Module):
    def __init__(self, config: PixArtConfig):
        super().__init__()
        dim = config.hidden_size
        self.scale_shift_table = nn.Parameter(torch.zeros(6, dim))
        self.attn = SelfAttention(dim, config.num_heads)
        self.cross_attn = CrossAttention(dim, config.num_heads)
        self.mlp = Mlp(dim, config.mlp_hidden, dim)

    def forward(self, x: torch.Tensor, time6: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, N, D], time6 [B, 6, D] (adaLN-single), the caption's keys/values for this block."""
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = (self.scale_shift_table[None] + time6).unbind(1)
        x = x + gate_a[:, None] * self.attn(_modulate(_layer_norm(x), shift_a[:, None], scale_a[:, None]))
        x = x + self.cross_attn(x, keys, values, key_mask)  # no norm, no gate: docs/numerics.md "PixArt-Sigma forward"
        return x + gate_m[:, None] * self.mlp(_modulate(_layer_norm(x), shift_m[:, None], scale_m[:, None]))


class FinalLayer(nn.Module):
    def __init__(self, config: PixArtConfig):
        super().__init__()
        self.scale_shift_table = nn.Parameter(torch.zeros(2, config.hidden_size))
        self.linear = nn.Linear(config.hidden_size, config.patch_size ** 2 * config.out_channels)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """Modulated by ``temb`` itself (not the adaLN-single output)."""
        shift, scale = (self.scale_shift_table[None] + temb[:, None]).unbind(1)
        return self.linear(_modulate(_layer_norm(x), shift[:, None], scale[:, None]))


def unpatchify(tokens: torch.Tensor, height: int, width: int, patch: int, channels: int) -> torch.Tensor:
    """[B, H·W, p·p·C] with per-token order (py, px, c) -> [B, C, H·p, W·p]."""
    batch = tokens.shape[0]
    x = tokens.reshape(batch, height, width, patch, patch, channels)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(batch, channels, height * patch, width * patch)


@dataclass(frozen=True)
class PreparedCaption:
    """Every block's cross-attention keys and values for one caption: the same at every sampling step, so
    preparing them once saves 7% of a 256 px forward's operations with a 120-token caption."""

    keys_values: tuple[tuple[torch.Tensor, torch.Tensor], ...]  # per block, each [B or 1, H, L, D/H]
    key_mask: torch.Tensor | None  # [B or 1, 1, 1, L] bool, True on the tokens to attend to

    def for_batch(self, batch: int) -> "PreparedCaption":
        if self.keys_values[0][0].shape[0] == batch:
            return self
        expand = lambda t: t.expand(batch, *t.shape[1:])  # noqa: E731  (a caption shared by every image)
        return PreparedCaption(tuple((expand(k), expand(v)) for k, v in self.keys_values),
                               None if self.key_mask is None else expand(self.key_mask))


class PixArtSigma(nn.Module):
    """PixArt-Sigma transformer; parameter names match the native PixArt checkpoint."""

    def __init__(self, config: PixArtConfig):
        super().__init__()
        self.config = config
        dim = config.hidden_size
        # ModuleDicts only give the parameters the native names (x_embedder.proj.weight, …)
        self.x_embedder = nn.ModuleDict({"proj": nn.Conv2d(config.in_channels, dim, config.patch_size,
                                                           stride=config.patch_size)})
        self.t_embedder = nn.ModuleDict({"mlp": nn.Sequential(nn.Linear(config.timestep_dim, dim), nn.SiLU(),
                                                              nn.Linear(dim, dim))})
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.y_embedder = nn.ModuleDict({"y_proj": Mlp(config.caption_dim, dim, dim)})
        self.blocks = nn.ModuleList(PixArtBlock(config) for _ in range(config.depth))
        self.final_layer = FinalLayer(config)
        self._position_cache: dict[tuple, torch.Tensor] = {}
        self.compiled_block: Callable | None = None  # set by `compile_pixart`

    @property
    def dtype(self) -> torch.dtype:
        return self.final_layer.linear.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.final_layer.linear.weight.device

    def position_embedding(self, height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """[1, height·width, D] for a token grid, cached per (height, width, device, dtype)."""
        key = (height, width, str(device), dtype)
        cached = self._position_cache.get(key)
        if cached is None:
            cfg = self.config
            table = pixart_position_embedding(height, width, cfg.hidden_size, cfg.base_size, cfg.pe_interpolation)
            cached = table[None].to(device=device, dtype=dtype)
            if len(self._position_cache) >= _POS_CACHE_SIZE:
                self._position_cache.pop(next(iter(self._position_cache)))
            self._position_cache[key] = cached
        return cached

    def prepare_caption(self, context: torch.Tensor, context_mask: torch.Tensor | None = None) -> PreparedCaption:
        """context [B, L, caption_dim] with any length L, context_mask None (every token counts, as in the
        reference) or [B, L] bool with False on padding tokens -> what every forward with this caption shares."""
        device, dtype = self.device, self.dtype
        caption = self.y_embedder["y_proj"](context.to(device, dtype))
        key_mask = None
        if context_mask is not None:
            key_mask = context_mask.to(device=device, dtype=torch.bool).reshape(-1, 1, 1, context.shape[1])
        return PreparedCaption(tuple(block.cross_attn.keys_values(caption) for block in self.blocks), key_mask)

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor | PreparedCaption,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, C, h, w] (h, w multiples of the patch), timestep [B] (or one value for all), context as
        `prepare_caption` takes it (with context_mask) or already prepared (its batch B or 1) -> [B, out_channels,
        h, w] in x's dtype; channels ``in_channels:`` are the learned variance."""
        cfg = self.config
        batch, _, latent_h, latent_w = x.shape
        if latent_h % cfg.patch_size or latent_w % cfg.patch_size:
            raise ParameterError("latent size", f"{latent_h}x{latent_w} is not a multiple of {cfg.patch_size}")
        height, width = latent_h // cfg.patch_size, latent_w // cfg.patch_size
        device, dtype = self.device, self.dtype

        timestep = timestep.reshape(-1).expand(batch) if timestep.numel() == 1 else timestep.reshape(-1)
        if not isinstance(context, PreparedCaption):
            context = self.prepare_caption(context, context_mask)
        caption = context.for_batch(batch)
        temb = self.t_embedder["mlp"](timestep_sinusoid(timestep.to(device), cfg.timestep_dim).to(dtype))
        time6 = self.t_block(temb).unflatten(1, (6, cfg.hidden_size))  # adaLN-single, shared by all blocks
        # [B, D, h, w] -> [B, h·w, D] row-major; contiguous, or every later token tensor stays channel-major
        # (elementwise results follow their first input's layout) and the linears fall back to slower products
        tokens = self.x_embedder["proj"](x.to(device, dtype)).flatten(2).transpose(1, 2).contiguous()
        tokens = tokens + self.position_embedding(height, width, device, dtype)
        run_block = self.compiled_block or _run_block
        for block, (keys, values) in zip(self.blocks, caption.keys_values):
            tokens = run_block(block, tokens, time6, keys, values, caption.key_mask)
        tokens = self.final_layer(tokens, temb)
        return unpatchify(tokens, height, width, cfg.patch_size, cfg.out_channels).to(x.dtype)

    def eps(self, x: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor | PreparedCaption,
            context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The predicted noise as ``sampling.denoisers.EpsDenoiser`` wants it: the first ``in_channels`` output
        channels (the rest is the learned variance, unused), float32; inputs are cast to the model's dtype."""
        return self(x.to(self.dtype), timestep, context, context_mask)[:, :self.config.in_channels].float()


def _run_block(block: PixArtBlock, tokens: torch.Tensor, time6: torch.Tensor, keys: torch.Tensor,
               values: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    return block(tokens, time6, keys, values, key_mask)


def _compile_probe(x: torch.Tensor) -> torch.Tensor:
    return x * 2 + 1


COMPILE_MIN_TORCH = (2, 5)  # from 2.5 dynamo lifts module parameters to graph inputs: one graph serves all blocks


def compile_pixart(model: PixArtSigma, device: torch.device | str | None = None) -> bool:
    """Runs the blocks through ``torch.compile``; returns False (reason logged, model left eager) on torch < 2.5 or
    without a working backend on ``device`` (default the model's; e.g. no C++ compiler, no Triton), found by a probe."""
    version = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2] if part.isdigit())
    if version < COMPILE_MIN_TORCH:
        logger.warning("PixArt: torch.compile needs torch %s or newer (found %s); running eagerly",
                       ".".join(map(str, COMPILE_MIN_TORCH)), torch.__version__)
        return False
    device = torch.device(device) if device is not None else model.device
    try:
        torch.compile(_compile_probe)(torch.ones(8, device=device, dtype=model.dtype))
    except Exception as error:  # the backend's failure types differ across versions and platforms
        logger.warning("PixArt: torch.compile does not work on %s here (%s: %s); running eagerly", device,
                       type(error).__name__, str(error).strip().splitlines()[0] if str(error).strip() else "")
        return False
    model.compiled_block = torch.compile(_run_block)
    return True


def load_pixart(state_dict: Mapping[str, torch.Tensor], *, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32) -> PixArtSigma:
    """From a native or diffusers state dict (plain dict or lazy file view). Built on the ``meta`` device and fed one
    tensor at a time as it is read, so the weights are never held twice; each travels to ``device`` in the file's
    dtype and is cast there (no float32 detour through host memory). Unknown keys are logged and skipped."""
    layout = detect_pixart_layout(state_dict)
    source = source_name(state_dict)
    present = set(state_dict.keys())
    with torch.device("meta"):  # parameter names depend on the depth alone
        native_keys = PixArtSigma(PixArtConfig(depth=max(1, pixart_block_count(state_dict, layout)))).state_dict()
    missing = [key for native in native_keys for key in source_keys(native, layout) if key not in present]
    if missing:
        shown = ", ".join(full_key_name(state_dict, key) for key in missing[:3])
        if len(missing) > 3:
            shown += f" and {len(missing) - 3} more"
        raise ModelFileError(source, f"PixArt-Sigma transformer is missing {shown}",
                             expected=f"complete {layout} PixArt-Sigma layout")
    config = PixArtConfig.from_state_dict(state_dict)
    with torch.device("meta"):
        model = PixArtSigma(config)
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    for key, shape in expected.items():
        stored_shapes = [shape_of(state_dict, k) for k in source_keys(key, layout)]  # concatenated along dim 0
        found = (sum(stored[0] for stored in stored_shapes),) + stored_shapes[0][1:]
        if found != shape:
            stored = "+".join(full_key_name(state_dict, k) for k in source_keys(key, layout))
            raise ModelFileError(source, f"{stored} has shape {list(found)}",
                                 expected=f"{list(shape)} for hidden size {config.hidden_size}")
    used = {key for native in expected for key in source_keys(native, layout)}.union(IGNORED_KEYS[layout])
    unused = sorted(present - used)
    if unused:
        logger.warning("%s: ignoring %d unknown PixArt key(s): %s", source, len(unused),
                       ", ".join(full_key_name(state_dict, key) for key in unused[:5])
                       + (" ..." if len(unused) > 5 else ""))

    tensors = {}
    for key in expected:  # one source tensor at a time, read only when it is needed
        sources = source_keys(key, layout)
        tensor = state_dict[sources[0]] if len(sources) == 1 else torch.cat([state_dict[k] for k in sources])
        tensors[key] = tensor.to(device).to(dtype)
    model.load_state_dict(tensors, strict=True, assign=True)
    return model.eval().requires_grad_(False)
